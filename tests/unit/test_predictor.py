import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import yoloslim as ys
from yoloslim.errors import ConfigError, DataError, ModelError
from yoloslim.models import build_model
from yoloslim.models.checkpoint import save_checkpoint
from yoloslim.runtime import BatchingPredictor, Predictor


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("damo-nano", names=["a", "b"])
    g = torch.Generator().manual_seed(1)
    for conv in model.head.cls_preds:  # varied scores so that images give distinct detections
        conv.weight.data = torch.randn(conv.weight.shape, generator=g) * 0.5
        conv.bias.data.fill_(-1.0)
    return save_checkpoint(tmp_path_factory.mktemp("pred") / "m.pt", model, imgsz=64)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(
            0, 255, (int(rng.integers(40, 90)), int(rng.integers(40, 90)), 3), dtype=np.uint8
        )
        for _ in range(n)
    ]


def test_sources_give_the_same_detections(ckpt, tmp_path):
    pred = ys.load(ckpt, conf=0.05)
    arr = _images(1)[0]
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    by_array = pred.predict(arr)[0]
    by_pil = pred.predict(Image.fromarray(arr))[0]
    by_path = pred.predict(path)[0]
    by_folder = pred.predict(tmp_path)[0]
    assert len(by_array) > 0
    for d in (by_pil, by_path, by_folder):
        np.testing.assert_allclose(d.boxes, by_array.boxes)
    assert by_path.source == str(path) and by_array.shape == arr.shape[:2]
    h, w = arr.shape[:2]
    assert (by_array.boxes[:, [0, 2]] <= w).all() and (by_array.boxes[:, [1, 3]] <= h).all()
    assert isinstance(pred.model, torch.nn.Module)


def test_batching_predictor_never_mixes_results(ckpt):
    pred = Predictor(ckpt, conf=0.05)
    images = _images(24, seed=3)
    expected = [pred.predict(im)[0] for im in images]
    results: dict[int, object] = {}
    with BatchingPredictor(pred, max_batch=6, max_wait_ms=20) as batcher:
        buffer_id = id(batcher.buffer)

        def call(i):
            results[i] = batcher.predict_one(images[i])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert id(batcher.buffer) == buffer_id
        assert max(batcher.batch_sizes) > 1  # requests were really grouped
        assert sum(batcher.batch_sizes) == len(images)
    for i, exp in enumerate(expected):
        got = results[i]
        assert got.shape == exp.shape
        np.testing.assert_allclose(got.boxes, exp.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, exp.scores, atol=1e-5)


def test_bad_inputs(ckpt, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        Predictor(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="unknown artifact type"):
        Predictor(tmp_path / "model.h5")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    pred = Predictor(ckpt)
    with pytest.raises(DataError, match="broken.jpg"):
        pred.predict(bad)
    with pytest.raises(DataError, match="HxWx3"):
        pred.predict(np.zeros((10, 10), np.uint8))


def test_sixteen_bit_png_is_scaled_not_clipped(ckpt, tmp_path):
    from yoloslim.runtime.images import read_image

    arr8 = _images(1, seed=5)[0][..., 0]  # one grey channel
    path = tmp_path / "g16.png"
    Image.fromarray(arr8.astype(np.uint16) * 257).save(path)  # 16-bit, same picture
    assert Image.open(path).mode.startswith("I;16")
    np.testing.assert_array_equal(read_image(path), np.stack([arr8] * 3, axis=-1))
    pred = Predictor(ckpt, conf=0.05)
    expected = pred.predict(np.stack([arr8] * 3, axis=-1))[0]
    np.testing.assert_allclose(pred.predict(path)[0].boxes, expected.boxes, atol=1e-3)


def test_exif_orientation_is_applied(ckpt, tmp_path):
    from yoloslim.runtime.images import read_image

    arr = np.random.default_rng(6).integers(0, 255, (40, 72, 3), dtype=np.uint8)  # 72 x 40
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": shown 40 wide, 72 high
    Image.fromarray(arr).save(path, exif=exif)
    assert read_image(path).shape == (72, 40, 3)
    assert Predictor(ckpt).predict(path)[0].shape == (72, 40)


def test_folder_skips_unreadable_images_and_streams(ckpt, tmp_path, caplog, monkeypatch):
    import yoloslim.runtime.images as images

    for i, arr in enumerate(_images(3, seed=7)):
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
    (tmp_path / "1b_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    pred = Predictor(ckpt, conf=0.05)
    with caplog.at_level("WARNING", logger="yoloslim.runtime.images"):
        dets = pred.predict(tmp_path)
    assert [Path(d.source).name for d in dets] == ["0.png", "1.png", "2.png"]
    assert "1b_broken.jpg" in caplog.text and "skipped" in caplog.text
    # decoded lazily: taking the first batch of 2 reads 2 images, not the whole folder
    reads = []
    real = images.read_image
    monkeypatch.setattr(images, "read_image", lambda p: reads.append(p) or real(p))
    stream = pred.stream(tmp_path, batch=2)
    next(stream)
    assert len(reads) == 2
    stream.close()


def test_folder_without_a_readable_image_is_an_error(ckpt, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "b.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the 2 images could be read"):
        Predictor(ckpt).predict(tmp_path)


@pytest.mark.parametrize("imgsz", [100, 16])
def test_imgsz_must_be_a_multiple_of_32(ckpt, imgsz):
    with pytest.raises(ConfigError, match=f"imgsz={imgsz} must be a multiple of 32"):
        Predictor(ckpt, imgsz=imgsz)


def test_drawn_paths_are_unique_and_never_an_input(tmp_path):
    from yoloslim.runtime.draw import drawn_paths

    src = tmp_path / "src"
    src.mkdir()
    files = [src / n for n in ("a.jpg", "a.png", "b.jpg")]
    for f in files:
        f.write_bytes(b"x")
    out = drawn_paths(files, tmp_path / "out")
    assert [p.name for p in out.values()] == ["a_jpg.jpg", "a_png.jpg", "b.jpg"]
    with pytest.raises(ConfigError, match="would replace the input"):
        drawn_paths([src / "b.jpg"], src)
    link = tmp_path / "link"
    link.mkdir()
    (link / "b.jpg").symlink_to(src / "b.jpg")  # the same file under another name
    with pytest.raises(ConfigError, match="would replace the input"):
        drawn_paths([src / "b.jpg"], link)
    assert drawn_paths([src / "a.png"], src) == {src / "a.png": src / "a.jpg"}
    assert drawn_paths([src / "clip.mp4"], src, video=True)[src / "clip.mp4"].name == "clip.mp4"
