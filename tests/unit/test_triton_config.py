"""Reading a Triton ``config.pbtxt`` back (what ``info`` and the export's check see)."""

from __future__ import annotations

from yoloslim.export.triton import parse_config_pbtxt

WRITTEN = """name: "model"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  {
    name: "images"
    data_type: TYPE_FP32
    dims: [ 3, 64, 64 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 2000
}
"""


def test_the_config_export_writes_is_read_back():
    cfg = parse_config_pbtxt(WRITTEN)
    assert cfg["name"] == "model" and cfg["max_batch_size"] == 16
    assert cfg["input"] == [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, 64, 64]}]
    assert cfg["dynamic_batching"]["preferred_batch_size"] == [4, 8]


def test_comments_in_a_hand_edited_config_are_skipped():
    # protobuf text format: '#' to the end of the line is a comment, except inside a string;
    # its words were read as keys and values, shifting every later key by one
    edited = "# hand edited\n" + WRITTEN.replace(
        "max_batch_size: 16", "# largest batch the server forms\nmax_batch_size: 16  # was 8"
    ).replace('name: "images"', "name: 'images' # single quotes too").replace(
        'platform: "onnxruntime_onnx"', 'platform: "onnxruntime_onnx"#no space before it'
    )
    assert parse_config_pbtxt(edited) == parse_config_pbtxt(WRITTEN)
    assert parse_config_pbtxt('name: "a # b" # c\nmax_batch_size: 2') == {
        "name": "a # b",
        "max_batch_size": 2,
    }
