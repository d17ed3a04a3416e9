"""Dataset loader fixes from the audit of the readers (audit 10): each test failed before
its fix. Tiny generated images in tmp_path; behaviour only, never timings."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yoloslim.data import check_dataset, load_data_config, load_samples, read_coco, read_yolo
from yoloslim.data.sample import probe_images
from yoloslim.errors import DataError

NAMES = ["cat", "dog"]


def _png(path: Path, width: int = 64, height: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 40, np.uint8)).save(path)
    return path


def _yolo(root: Path, split: str, stem: str, rows: str = "0 0.5 0.5 0.25 0.25\n", **kw) -> Path:
    img = _png(root / "images" / split / f"{stem}.png", **kw)
    label = root / "labels" / split / f"{stem}.txt"
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text(rows)
    return img


def _yaml(root: Path, text: str) -> Path:
    (root / "data.yaml").write_text(text)
    return root / "data.yaml"


# --- 9: the probe is as strict as the loader --------------------------------------------


def _png_with_exif_after_idat(path: Path, orientation: int) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = exif.tobytes().removeprefix(b"Exif\x00\x00")
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + body))
    iend = data.rfind(b"IEND") - 4
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:iend] + chunk + data[iend:])


def test_png_exif_after_image_data_turns_the_probed_size_as_the_loader_does(tmp_path):
    from yoloslim.data.dataset import DetectionDataset

    img = tmp_path / "images" / "train" / "a.png"
    _png_with_exif_after_idat(img, 6)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.25\n")
    samples = read_yolo(tmp_path / "images" / "train", NAMES)
    assert (samples[0].width, samples[0].height) == (40, 80)  # displayed: turned upright
    img_t, targets, _ = DetectionDataset(samples, 64, augment=False, names=NAMES)[0]
    assert tuple(img_t.shape) == (3, 64, 64) and len(targets) == 1


def test_float_image_outside_the_loaders_ranges_is_skipped_by_the_probe(tmp_path, caplog):
    folder = tmp_path / "images" / "train"
    folder.mkdir(parents=True)
    Image.fromarray(np.linspace(0, 300, 32 * 32, dtype=np.float32).reshape(32, 32)).save(
        folder / "hot.tif"
    )
    Image.fromarray(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)).save(
        folder / "unit.tif"
    )
    with caplog.at_level(logging.WARNING):
        samples = read_yolo(folder, NAMES)
    assert [s.path.name for s in samples] == ["unit.tif"]
    assert "hot.tif" in caplog.text and "[0, 300]" in caplog.text


# --- 10: unreadable images: a few names and the count, with a hint ----------------------


def test_all_images_missing_names_a_few_with_the_count_and_a_hint(tmp_path):
    import json

    (tmp_path / "imgs").mkdir()
    coco = {
        "images": [{"id": i, "file_name": f"x{i:04d}.jpg"} for i in range(200)],
        "annotations": [],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    (tmp_path / "i.json").write_text(json.dumps(coco))
    with pytest.raises(DataError) as e:
        read_coco(tmp_path / "i.json", tmp_path / "imgs", NAMES)
    msg = str(e.value)
    assert "all 200 images are unreadable (200 missing" in msg
    assert "x0000.jpg" in msg and "x0199.jpg" not in msg and msg.count("x0") == 3
    assert "train_images" in msg and len(msg.replace(str(tmp_path), "")) < 350  # any tmp root


def test_skipped_images_warning_names_a_few(tmp_path, caplog):
    good = _png(tmp_path / "a.png")
    paths = [good] + [tmp_path / f"gone{i}.png" for i in range(50)]
    with caplog.at_level(logging.WARNING):
        sizes = probe_images(paths, "src", hint="check the folder")
    assert list(sizes) == [good]
    assert "skipping 50 unreadable image(s) (50 missing)" in caplog.text
    assert "gone2.png" in caplog.text and "gone3.png" not in caplog.text
    assert "check the folder" in caplog.text


# --- VOC: 1 (the id's image first), 3 (<size>), 7 (declared encodings) ------------------


def _voc(root: Path, stem: str, filename: str, box=(11, 11, 31, 30), size=None, head="") -> None:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    x1, y1, x2, y2 = box
    sz = f"<size><width>{size[0]}</width><height>{size[1]}</height></size>" if size else ""
    (root / "Annotations" / f"{stem}.xml").write_text(
        f"{head}<annotation><filename>{filename}</filename>{sz}<object><name>cat</name>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
        "</bndbox></object></annotation>"
    )


def test_voc_image_is_the_ids_own_when_filename_is_stale(tmp_path, caplog):
    from yoloslim.data import read_voc

    for n in ("0001", "0002"):
        _png(tmp_path / "JPEGImages" / f"{n}.jpg", 100, 80)
    _voc(tmp_path, "0001", "0001.jpg", (11, 11, 31, 30))
    _voc(tmp_path, "0002", "0001.jpg", (61, 11, 81, 30))  # copied from 0001.xml
    with caplog.at_level(logging.WARNING):
        samples = read_voc(tmp_path, NAMES)
    assert [(s.path.name, s.boxes.tolist()) for s in samples] == [
        ("0001.jpg", [[10.0, 10.0, 31.0, 30.0]]),
        ("0002.jpg", [[60.0, 10.0, 81.0, 30.0]]),
    ]
    assert "1 annotation(s) whose <filename> names another image" in caplog.text
    assert "0002.xml: <filename> '0001.jpg', read 0002.jpg" in caplog.text


def test_voc_two_annotations_on_one_image_are_refused_naming_both(tmp_path):
    from yoloslim.data import read_voc

    _png(tmp_path / "JPEGImages" / "0001.jpg", 100, 80)
    _voc(tmp_path, "0001", "0001.jpg")
    _voc(tmp_path, "0002", "0001.jpg")  # its own 0002.jpg does not exist
    with pytest.raises(DataError, match=r"0001\.xml and .*0002\.xml both resolve to image"):
        read_voc(tmp_path, NAMES)


def test_voc_size_differing_from_the_file_scales_a_uniform_resize_and_warns(tmp_path, caplog):
    from yoloslim.data import read_voc

    _png(tmp_path / "JPEGImages" / "half.jpg", 100, 50)
    _voc(tmp_path, "half", "half.jpg", (21, 21, 60, 40), size=(200, 100))
    _png(tmp_path / "JPEGImages" / "turned.jpg", 50, 100)  # a 90-degree swap: kept as is
    _voc(tmp_path, "turned", "turned.jpg", (21, 21, 40, 60), size=(100, 50))
    with caplog.at_level(logging.WARNING):
        samples = {s.path.stem: s.boxes.tolist() for s in read_voc(tmp_path, NAMES)}
    assert samples == {"half": [[10.0, 10.0, 30.0, 20.0]], "turned": [[20.0, 20.0, 40.0, 60.0]]}
    assert "2 image(s) differ in size" in caplog.text
    assert "half.xml (annotated 200x100, on disk 100x50)" in caplog.text
    assert "turned.xml (annotated 100x50, on disk 50x100)" in caplog.text
    assert "scaled" in caplog.text and "read as they are" in caplog.text


@pytest.mark.parametrize("codec", ["gb2312", "gbk", "big5", "cp1252"])
def test_voc_xml_in_a_declared_multibyte_encoding_is_read(tmp_path, codec):
    from yoloslim.data import read_voc

    name = "狗" if codec != "cp1252" else "café"
    _png(tmp_path / "JPEGImages" / "x.jpg", 100, 50)
    xml = tmp_path / "Annotations" / "x.xml"
    _voc(tmp_path, "x", "x.jpg", head=f'<?xml version="1.0" encoding="{codec}"?>\n')
    xml.write_bytes(xml.read_text().replace("<name>cat<", f"<name>{name}<").encode(codec))
    (s,) = read_voc(tmp_path, [name])
    assert s.classes.tolist() == [0] and s.boxes.tolist() == [[10.0, 10.0, 31.0, 30.0]]


def test_voc_xml_not_in_its_declared_encoding_names_file_and_line(tmp_path):
    from yoloslim.data import read_voc

    _png(tmp_path / "JPEGImages" / "x.jpg", 100, 50)
    xml = tmp_path / "Annotations" / "x.xml"
    _voc(tmp_path, "x", "x.jpg", head='<?xml version="1.0" encoding="gb2312"?>\n')
    xml.write_bytes(xml.read_bytes().replace(b"<name>cat<", b"<name>\xff\xff<"))
    with pytest.raises(DataError, match=r"x\.xml:2: not valid gb2312.*iconv"):
        read_voc(tmp_path, ["cat"])
    xml.write_text(xml.read_text(errors="replace").replace("gb2312", "no-such-codec"))
    with pytest.raises(DataError, match=r"x\.xml:1: declares encoding 'no-such-codec'"):
        read_voc(tmp_path, ["cat"])


# --- COCO: 3 (images[].width/height), 5 (one file under several ids), 7 (null lists) ------


def _coco(root: Path, images: list, annotations) -> Path:
    import json

    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    (root / "i.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats})
    )
    return root / "i.json"


def _ann(i: int, image_id: int, bbox: list, cat: int = 1) -> dict:
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": 0}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"annotations": None}, r"i\.json: key 'annotations' must be a list, got null"),
        ({"images": None}, r"i\.json: key 'images' must be a list, got null"),
        ({"images": {"1": "a.jpg"}}, r"i\.json: key 'images' must be a list, got dict"),
        ({"categories": None}, r"i\.json: key 'categories' must be a list, got null"),
    ],
)
def test_coco_null_or_non_list_keys_name_file_and_key(tmp_path, edit, match):
    import json

    _png(tmp_path / "imgs" / "a.jpg")
    jp = _coco(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [_ann(1, 1, [1, 1, 9, 9])])
    jp.write_text(json.dumps({**json.loads(jp.read_text()), **edit}))
    with pytest.raises(DataError, match=match):
        read_coco(jp, tmp_path / "imgs", NAMES)


def test_coco_size_differing_from_the_file_scales_a_uniform_resize_and_warns(tmp_path, caplog):
    _png(tmp_path / "imgs" / "a.jpg", 100, 50)
    _png(tmp_path / "imgs" / "b.jpg", 50, 100)
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},  # downscaled by 2
        {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50},  # turned: kept
    ]
    anns = [_ann(1, 1, [20, 20, 40, 20]) | {"area": 800}, _ann(2, 2, [20, 20, 20, 40])]
    with caplog.at_level(logging.WARNING):
        samples, _ = read_coco(_coco(tmp_path, images, anns), tmp_path / "imgs", NAMES)
    by = {s.path.name: s for s in samples}
    assert by["a.jpg"].boxes.tolist() == [[10.0, 10.0, 30.0, 20.0]]
    assert by["a.jpg"].areas.tolist() == [200.0]
    assert by["b.jpg"].boxes.tolist() == [[20.0, 20.0, 40.0, 60.0]]
    assert "2 image(s) differ in size" in caplog.text
    assert "a.jpg (annotated 200x100, on disk 100x50)" in caplog.text
    assert "b.jpg (annotated 100x50, on disk 50x100)" in caplog.text


def test_coco_file_under_several_ids_is_one_sample_with_all_annotations(tmp_path, caplog):
    _png(tmp_path / "imgs" / "a.jpg", 100, 50)
    _png(tmp_path / "imgs" / "b.jpg", 100, 50)
    images = [
        {"id": 1, "file_name": "a.jpg"},
        {"id": 2, "file_name": "b.jpg"},
        {"id": 7, "file_name": "./a.jpg"},
    ]
    anns = [
        _ann(1, 1, [1, 1, 10, 10]),
        _ann(2, 7, [50, 10, 20, 20], cat=2),
        _ann(3, 7, [1, 1, 10, 10]),  # an exact repeat of annotation 1
        _ann(4, 2, [5, 5, 10, 10]),
    ]
    with caplog.at_level(logging.WARNING):
        samples, _ = read_coco(_coco(tmp_path, images, anns), tmp_path / "imgs", NAMES)
    assert [s.image_id for s in samples] == [1, 2]
    a = samples[0]
    assert a.boxes.tolist() == [[1.0, 1.0, 11.0, 11.0], [50.0, 10.0, 70.0, 30.0]]
    assert a.classes.tolist() == [0, 1]
    assert "1 file_name(s) listed under several image ids" in caplog.text
    assert "a.jpg (ids 1, 7)" in caplog.text and "1 exact repeat(s) dropped" in caplog.text


def test_coco_file_under_ids_with_different_sizes_is_refused(tmp_path):
    _png(tmp_path / "imgs" / "a.jpg", 100, 50)
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
        {"id": 2, "file_name": "a.jpg", "width": 200, "height": 100},
    ]
    with pytest.raises(DataError, match=r"images\[1\] \(id 2\) and images\[0\] \(id 1\) name"):
        read_coco(_coco(tmp_path, images, []), tmp_path / "imgs", NAMES)


# --- 2: pose labels (kpt_shape) ---------------------------------------------------------


def _pose_line(k: int, d: int) -> str:
    kpts = " ".join(["0.5 0.5" + (" 2" if d == 3 else "")] * k)
    return f"0 0.625 0.5 0.25 0.4 {kpts}\n"  # box x 80..120, y 30..70 of 160x100


@pytest.mark.parametrize("shape", [(12, 2), (24, 3), (17, 3)])
def test_pose_labels_take_the_box_from_the_first_four_values(tmp_path, shape):
    _yolo(tmp_path, "train", "a", _pose_line(*shape), width=160, height=100)
    yaml = _yaml(
        tmp_path,
        f"train: images/train\nval: images/train\nnames: [cat, dog]\nkpt_shape: {list(shape)}\n",
    )
    cfg = load_data_config(yaml)
    assert cfg.kpt_shape == shape
    (s,) = load_samples(cfg, "train")
    np.testing.assert_allclose(s.boxes, [[80, 30, 120, 70]], atol=1e-3)


def test_pose_label_with_the_wrong_field_count_names_file_and_line(tmp_path):
    _yolo(tmp_path, "train", "a", _pose_line(12, 2) + _pose_line(11, 2), width=160, height=100)
    yaml = _yaml(
        tmp_path, "train: images/train\nval: images/train\nnames: [cat, dog]\nkpt_shape: [12, 2]\n"
    )
    with pytest.raises(
        DataError, match=r"a\.txt:2: expected 29 fields .*kpt_shape \[12, 2\].*got 27"
    ):
        load_samples(load_data_config(yaml), "train")


@pytest.mark.parametrize("raw", ["[17]", "[17, 4]", "[0, 3]", "[17.5, 3]", "[true, 2]", "17"])
def test_bad_kpt_shape_names_data_yaml_and_key(tmp_path, raw):
    _yolo(tmp_path, "train", "a")
    yaml = _yaml(
        tmp_path, f"train: images/train\nval: images/train\nnames: [cat]\nkpt_shape: {raw}\n"
    )
    with pytest.raises(
        DataError, match=r"data\.yaml: key 'kpt_shape' must be \[k, 2\] or \[k, 3\]"
    ):
        load_data_config(yaml)


# --- 12: messages and list suffixes -----------------------------------------------------


def test_coco_split_given_an_image_folder_says_a_json_is_needed(tmp_path):
    _png(tmp_path / "images" / "train" / "a.jpg")
    yaml = _yaml(
        tmp_path,
        "format: coco\ntrain: images/train\ntrain_images: images/train\n"
        "val: images/train\nval_images: images/train\nnames: [cat]\n",
    )
    with pytest.raises(DataError, match=r"key 'train': .*train is a folder; format: coco needs"):
        load_data_config(yaml)


def test_upper_case_txt_list_file_is_read(tmp_path):
    _yolo(tmp_path, "train", "a")
    (tmp_path / "TRAIN.TXT").write_text("images/train/a.png\n")
    yaml = _yaml(tmp_path, "train: TRAIN.TXT\nval: TRAIN.TXT\nnames: [cat]\n")
    assert [s.path.name for s in load_samples(load_data_config(yaml), "train")] == ["a.png"]


# --- 5: one image read twice ------------------------------------------------------------


def test_val_reads_each_image_once_and_train_keeps_repeats_with_a_warning(tmp_path, caplog):
    # overlapping folders and a source listed twice: val evaluates each image once; train keeps
    # them (listing a set again is how a YOLO data.yaml oversamples it) and says so
    for stem in ("a", "b"):
        _yolo(tmp_path, "train", stem)
    for stem in ("c", "d"):
        _yolo(tmp_path, "train/sub", stem)
    both = "[images/train, images/train/sub, images/train]"
    yaml = _yaml(tmp_path, f"train: {both}\nval: {both}\nnames: [cat]\n")
    cfg = load_data_config(yaml)
    with caplog.at_level(logging.WARNING):
        val = load_samples(cfg, "val")
    assert sorted(s.path.name for s in val) == ["a.png", "b.png", "c.png", "d.png"]
    assert sorted(s.image_id for s in val) == [0, 1, 2, 3]
    assert (
        "4 image(s) listed more than once (6 extra listing(s), in its sources or list files) read once"
        in (caplog.text)
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train = load_samples(cfg, "train")
    assert len(train) == 10 and sorted(s.image_id for s in train) == list(range(10))
    assert (
        "4 image(s) listed more than once (6 extra listing(s), in its sources or list files) kept"
        in caplog.text
    )


def test_repeated_list_entries_are_read_once_in_val(tmp_path, caplog):
    for stem in ("a", "b"):
        _yolo(tmp_path, "train", stem)
    (tmp_path / "val.txt").write_text(
        "images/train/a.png\nimages/train/b.png\n./images/train/a.png\n"
    )
    yaml = _yaml(tmp_path, "train: val.txt\nval: val.txt\nnames: [cat]\n")
    with caplog.at_level(logging.WARNING):
        samples = load_samples(load_data_config(yaml), "val")
    assert [s.path.name for s in samples] == ["a.png", "b.png"]
    assert "1 image(s) listed more than once" in caplog.text


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_a_link_under_another_name_is_another_image(tmp_path, caplog, link):
    # audit29 data M1: b.png a link of a.png, each with its own label file, was one image:
    # refused with different labels, read once with the same
    os = pytest.importorskip("os")
    a = _yolo(tmp_path, "val", "a", rows="0 0.3 0.3 0.2 0.2\n")
    b = tmp_path / "images" / "val" / "b.png"
    os.link(a, b) if link == "hard" else b.symlink_to(a)
    (tmp_path / "labels" / "val" / "b.txt").write_text("0 0.7 0.7 0.2 0.2\n")
    _yolo(tmp_path, "val", "c")
    os.link(tmp_path / "images" / "val" / "c.png", tmp_path / "images" / "val" / "d.png")
    (tmp_path / "labels" / "val" / "d.txt").write_text("0 0.5 0.5 0.25 0.25\n")  # c's labels
    yaml = _yaml(tmp_path, "train: images/val\nval: images/val\nnames: [cat]\n")
    with caplog.at_level(logging.WARNING):
        val = load_samples(load_data_config(yaml), "val")
    assert [s.path.name for s in val] == ["a.png", "b.png", "c.png", "d.png"]
    centres = [tuple(np.round((s.boxes[0, :2] + s.boxes[0, 2:]) / 2 / [64, 48], 2)) for s in val]
    assert centres[:2] == [(0.3, 0.3), (0.7, 0.7)]
    assert "listed more than once" not in caplog.text
    # the same file under the same name, through a linked folder, is still one image
    for kind in ("images", "labels"):
        (tmp_path / kind / "again").symlink_to(tmp_path / kind / "val")
    yaml = _yaml(tmp_path, "train: images/val\nval: [images/val, images/again]\nnames: [cat]\n")
    with caplog.at_level(logging.WARNING):
        assert len(load_samples(load_data_config(yaml), "val")) == 4
    assert "4 image(s) listed more than once" in caplog.text


def test_one_image_with_different_labels_in_two_coco_sources_is_refused(tmp_path):
    import json

    _png(tmp_path / "imgs" / "a.jpg")
    cats = [{"id": 1, "name": "cat"}]
    for name, box in (("one.json", [1, 1, 9, 9]), ("two.json", [20, 20, 9, 9])):
        (tmp_path / name).write_text(
            json.dumps(
                {
                    "images": [{"id": 1, "file_name": "a.jpg"}],
                    "annotations": [_ann(1, 1, box)],
                    "categories": cats,
                }
            )
        )
    yaml = _yaml(
        tmp_path,
        "format: coco\ntrain: [one.json, two.json]\ntrain_images: [imgs, imgs]\n"
        "val: one.json\nval_images: imgs\nnames: [cat]\n",
    )
    with pytest.raises(
        DataError, match=r"a\.jpg is listed in its sources or list files with different"
    ):
        load_samples(load_data_config(yaml), "train")


def test_images_sharing_a_label_file_are_warned_about(tmp_path, caplog):
    _yolo(tmp_path, "train", "a")
    _png(tmp_path / "images" / "train" / "a.jpg")
    with caplog.at_level(logging.WARNING):
        samples = read_yolo(tmp_path / "images" / "train", NAMES)
    assert len(samples) == 2
    assert "1 label file(s) serve more than one image" in caplog.text
    assert "a.txt (a.jpg, a.png)" in caplog.text


def test_train_and_val_sharing_images_is_warned_by_check_and_train(tmp_path, caplog):
    from yoloslim.train.trainer import _datasets

    for stem in ("a", "b", "c"):
        _yolo(tmp_path, "train", stem)
    (tmp_path / "val.txt").write_text("images/train/c.png\n")
    yaml = _yaml(tmp_path, "train: images/train\nval: val.txt\nnames: [cat]\n")
    cfg = load_data_config(yaml)
    with caplog.at_level(logging.WARNING):
        report = check_dataset(cfg)
    assert report["splits"]["val"]["shared_with_train"] == 1
    assert "1 of the 1 val images are train images too" in caplog.text
    assert "c.png" in caplog.text
    caplog.clear()

    class Cfg:
        imgsz, augment, seed, cache = 64, {}, 0, False

    with caplog.at_level(logging.WARNING):
        _datasets(cfg, Cfg(), yaml)
    assert "1 of the 1 val images are train images too" in caplog.text


def test_data_check_counts_a_byte_identical_copy_in_val_as_shared(tmp_path, caplog):
    # one photo copied into both split folders: two files, one image
    _yolo(tmp_path, "train", "a")
    copy = _yolo(tmp_path, "val", "copy")
    other = _yolo(tmp_path, "val", "other")
    Image.fromarray(np.full((48, 64, 3), 41, np.uint8)).save(other)  # another image
    assert copy.read_bytes() == (tmp_path / "images" / "train" / "a.png").read_bytes()
    assert other.stat().st_size == copy.stat().st_size  # the same size, not the same bytes
    yaml = _yaml(tmp_path, "train: images/train\nval: images/val\nnames: [cat]\n")
    with caplog.at_level(logging.WARNING):
        report = check_dataset(load_data_config(yaml))
    assert report["splits"]["val"]["shared_with_train"] == 1
    assert "1 of the 2 val images are train images too (the same file or a byte-identical" in (
        caplog.text
    )
    assert "copy.png" in caplog.text and "other.png" not in caplog.text


# --- 6: instances the training loader drops at imgsz ------------------------------------


def _tiny_objects(root: Path, n_tiny: int, n_big: int = 0) -> Path:
    """640x640 images with 13 px objects (1.3 px at imgsz 64), and optionally 200 px ones."""
    # apart (a repeated line is one object, the others left out)
    rows = "".join(f"0 {0.1 + 0.05 * i:g} 0.5 0.02 0.02\n" for i in range(n_tiny))
    rows += "".join(f"0 0.5 {0.2 + 0.35 * i:g} 0.3125 0.3125\n" for i in range(n_big))
    _yolo(root, "train", "a", rows, width=640, height=640)
    return _yaml(root, "train: images/train\nval: images/train\nnames: [cat]\n")


def test_training_set_whose_instances_all_vanish_at_imgsz_is_refused(tmp_path):
    from yoloslim.data.dataset import DetectionDataset

    samples = load_samples(load_data_config(_tiny_objects(tmp_path, 3)), "train")
    with pytest.raises(DataError, match=r"all 3 labelled instances .* under 2 px .* imgsz 64"):
        DetectionDataset(samples, 64, augment=True, names=["cat"])
    DetectionDataset(samples, 64, augment=False, names=["cat"])  # evaluation: not refused
    DetectionDataset(samples, 640, augment=True, names=["cat"])  # large enough


def test_training_set_losing_some_instances_at_imgsz_warns_with_the_share(tmp_path, caplog):
    from yoloslim.data.dataset import DetectionDataset

    samples = load_samples(load_data_config(_tiny_objects(tmp_path, 3, 1)), "train")
    with caplog.at_level(logging.WARNING):
        DetectionDataset(samples, 64, augment=True, names=["cat"])
    assert "3 of the 4 labelled instances (75.0%)" in caplog.text


def test_data_check_imgsz_counts_the_dropped_instances(tmp_path, caplog, capsys):
    from yoloslim.cli.main import main
    from yoloslim.errors import ConfigError

    yaml = _tiny_objects(tmp_path, 3, 1)
    cfg = load_data_config(yaml)
    assert "dropped_at_imgsz" not in check_dataset(cfg)["splits"]["train"]
    with caplog.at_level(logging.WARNING):
        report = check_dataset(cfg, imgsz=64)
    assert report["splits"]["train"]["dropped_at_imgsz"] == 3
    assert report["splits"]["train"]["instances"] == 4
    assert "3 of the 4 train instances (75.0%)" in caplog.text
    assert check_dataset(cfg, imgsz=640)["splits"]["train"]["dropped_at_imgsz"] == 0
    for size in (16, 100):  # 100: a size training refuses
        with pytest.raises(ConfigError, match=f"imgsz={size} must be a multiple of 32"):
            check_dataset(cfg, imgsz=size)
    assert main(["data", "check", str(yaml), "--imgsz", "64"]) == 0
    assert "dropped at imgsz 64" in capsys.readouterr().out


# --- 11: label files no image reads -----------------------------------------------------


def test_data_check_reports_label_files_that_match_no_image(tmp_path, caplog):
    _yolo(tmp_path, "train", "a")
    _yolo(tmp_path, "val", "v")
    folder = tmp_path / "images" / "train"
    Image.new("RGB", (32, 32)).save(folder / "d.jfif", "JPEG")
    Image.new("RGB", (32, 32)).save(folder / "e.gif")
    (folder / ".DS_Store").write_bytes(b"\0")
    labels = tmp_path / "labels" / "train"
    for stem in ("d", "e", "gone"):
        (labels / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (labels / "classes.txt").write_text("cat\n")
    yaml = _yaml(tmp_path, "train: images/train\nval: images/val\nnames: [cat]\n")
    with caplog.at_level(logging.WARNING):
        report = check_dataset(load_data_config(yaml))
    train = report["splits"]["train"]
    assert train["images"] == 1
    assert sorted(Path(p.split(" ")[0]).name for p in train["orphan_labels"]) == [
        "d.txt",
        "e.txt",
        "gone.txt",
    ]
    assert any(
        p.endswith("d.txt (image d.jfif: a suffix not read)") for p in train["orphan_labels"]
    )
    assert sorted(Path(p).name for p in train["unread_files"]) == ["d.jfif", "e.gif"]
    assert report["splits"]["val"]["orphan_labels"] == []
    assert "3 label file(s) of the train split match no image" in caplog.text
    assert "2 file(s) in the train image folders are skipped" in caplog.text


def test_a_repeated_list_entry_is_oversampling_in_train_for_yolo_and_voc_alike(tmp_path, caplog):
    # a YOLO list naming an image twice also said its label file served two images; a VOC
    # list's repeated id was read once, in train too
    for stem in ("a", "b"):
        _yolo(tmp_path / "y", "train", stem)
    (tmp_path / "y" / "list.txt").write_text("images/train/a.png\nimages/train/b.png\n" * 2)
    yaml = _yaml(tmp_path / "y", "train: list.txt\nval: list.txt\nnames: [cat]\n")
    with caplog.at_level(logging.WARNING):
        train = load_samples(load_data_config(yaml), "train")
    assert sorted(s.path.name for s in train) == ["a.png", "a.png", "b.png", "b.png"]
    assert "serve more than one image" not in caplog.text
    voc = tmp_path / "v"
    for n in ("0001", "0002"):
        _png(voc / "JPEGImages" / f"{n}.jpg", 100, 80)
        _voc(voc, n, f"{n}.jpg")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("0001\n0001\n0002\n")
    yaml = _yaml(
        voc,
        "format: voc\ntrain: ImageSets/Main/train.txt\nval: ImageSets/Main/train.txt\n"
        "names: [cat]\n",
    )
    cfg = load_data_config(yaml)
    assert [s.path.name for s in load_samples(cfg, "train")] == ["0001.jpg", "0001.jpg", "0002.jpg"]
    assert [s.path.name for s in load_samples(cfg, "val")] == ["0001.jpg", "0002.jpg"]


def test_copies_among_files_of_one_size_are_found_by_lookup_not_by_comparing_pairs(tmp_path):
    """Every val image was compared with every train file of its size: 8k x 2k same-size
    BMPs took 16 million comparisons (154 s at 32k x 8k). Now each val image looks its
    head digest up: the work grows with the number of files, not with their product."""
    import os
    import types
    from pathlib import Path

    from yoloslim.data.duplicates import shared_images

    looked_at = []

    class Counted(type(Path())):  # each lookup of a train file (its digest, its size) counts
        def __hash__(self):
            looked_at.append(1)
            return super().__hash__()

    def split(name, n):
        (tmp_path / name).mkdir()
        paths = [Counted(tmp_path / name / f"{i}.bmp") for i in range(n)]
        for p in paths:
            p.write_bytes(os.urandom(256))  # one size: a BMP set's
        return [types.SimpleNamespace(path=p) for p in paths]

    for n_train, n_val in ((40, 10), (160, 40)):
        looked_at.clear()
        train, val = split(f"t{n_train}", n_train), split(f"v{n_val}", n_val)
        for i in (3, 7):  # two val images are byte-identical copies of train images
            val[i].path.write_bytes(train[10 + i].path.read_bytes())
        found = shared_images(train, val, copies=True)
        assert sorted(found) == sorted([val[3].path, val[7].path])
        assert len(looked_at) <= 8 * (n_train + n_val)  # pairs: 400, then 6400


def test_labelled_images_of_a_suffix_not_read_are_warned_about(tmp_path, caplog):
    # audit30 journey M1: a labelled x.jfif or x.gif left the split without a word (only
    # data check's orphan count said it); a file sharing an image's stem is no such image
    _yolo(tmp_path, "val", "a")
    for stem, suffix in (("b", ".jfif"), ("c", ".gif")):
        Image.fromarray(np.full((48, 64, 3), 40, np.uint8)).save(
            tmp_path / "images" / "val" / f"{stem}{suffix}", format="JPEG" if stem == "b" else "GIF"
        )
        (tmp_path / "labels" / "val" / f"{stem}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (tmp_path / "images" / "val" / "a.json").write_text("{}")  # a's metadata: not an image
    (tmp_path / "images" / "val" / "d.gif").write_bytes(b"GIF89a")  # no label: not said
    with caplog.at_level(logging.WARNING):
        samples = read_yolo(tmp_path / "images" / "val", NAMES)
    assert [s.path.name for s in samples] == ["a.png"]
    said = [r.getMessage() for r in caplog.records if "suffix the readers skip" in r.message]
    assert len(said) == 1 and "2 labelled file(s)" in said[0]
    assert "b.jfif" in said[0] and "c.gif" in said[0] and "a.json" not in said[0]
