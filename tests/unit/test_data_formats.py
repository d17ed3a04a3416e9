"""Readers (YOLO, COCO, VOC), data.yaml parsing and the dataset report."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yoloslim.data import (
    check_dataset,
    load_data_config,
    load_samples,
    read_coco,
    read_voc,
    read_yolo,
)
from yoloslim.data.dataset import DetectionDataset
from yoloslim.data.testing import fake_images, voc_xml, write_coco, write_voc, write_yolo
from yoloslim.errors import DataError

NAMES = ["cat", "dog"]


def _splits(n_train: int = 4, n_val: int = 2):
    return {
        "train": fake_images(n_train, seed=0, prefix="t"),
        "val": fake_images(n_val, seed=1, width=40, height=56, prefix="v"),
    }


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _assert_matches(samples, images) -> None:
    assert len(samples) == len(images)
    by_name = {s.path.stem: s for s in samples}
    for img in images:
        s = by_name[img.name]
        assert (s.width, s.height) == (img.width, img.height)
        np.testing.assert_allclose(
            s.boxes, np.array(img.boxes, np.float32).reshape(-1, 4), atol=1e-3
        )
        assert s.classes.tolist() == list(img.classes)
        assert s.boxes.dtype == np.float32 and s.classes.dtype == np.int64


# --- YOLO -------------------------------------------------------------------------------


def test_read_yolo_matches_written_boxes(tmp_path):
    splits = _splits()
    write_yolo(tmp_path, splits, NAMES)
    samples = read_yolo(tmp_path / "images" / "train", NAMES)
    _assert_matches(samples, splits["train"])
    assert [s.image_id for s in samples] == list(range(len(samples)))


def test_read_yolo_explicit_labels_dir(tmp_path):
    splits = _splits()
    write_yolo(tmp_path, splits, NAMES)
    moved = tmp_path / "other_labels"
    (tmp_path / "labels" / "train").rename(moved)
    _assert_matches(
        read_yolo(tmp_path / "images" / "train", NAMES, labels_dir=moved), splits["train"]
    )


def test_read_yolo_follows_linked_subfolders_once(tmp_path):
    """``ln -s /mnt/extra images/train/extra`` (and the labels beside it) adds those images;
    a link back up the tree is walked once, not forever."""
    splits = _splits()
    write_yolo(tmp_path / "main", splits, NAMES)
    extra = {"train": fake_images(2, seed=5, prefix="x"), "val": []}
    write_yolo(tmp_path / "extra", extra, NAMES)
    for kind in ("images", "labels"):
        (tmp_path / "main" / kind / "train" / "extra").symlink_to(
            tmp_path / "extra" / kind / "train"
        )
    (tmp_path / "main" / "images" / "train" / "loop").symlink_to(
        tmp_path / "main" / "images" / "train"
    )
    samples = read_yolo(tmp_path / "main" / "images" / "train", NAMES)
    _assert_matches(samples, splits["train"] + extra["train"])


def test_read_yolo_leaves_hidden_files_and_folders_out(tmp_path, caplog):
    # audit43 data M2: a .ipynb_checkpoints copy was an unlabelled image (false positives in
    # val), macOS's ._t0.png an unreadable one, each warned about

    splits = _splits()
    write_yolo(tmp_path / "d", splits, NAMES)
    images = tmp_path / "d" / "images" / "train"
    first = sorted(images.iterdir())[0]
    (images / ".ipynb_checkpoints").mkdir()
    shutil.copy(first, images / ".ipynb_checkpoints" / first.name)
    (images / f"._{first.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    shutil.copy(first, images / f".hidden{first.suffix}")
    with caplog.at_level("WARNING", "yoloslim"):
        samples = read_yolo(images, NAMES)
    _assert_matches(samples, splits["train"])
    assert caplog.text == ""


@pytest.mark.parametrize(
    "line",
    # audit49 data F4: ``images\\train\\a.png`` lines (Darknet tools on Windows, CRLF)
    ["./images/train/{}.png\n", ".\\images\\train\\{}.png\r\n"],
    ids=["posix", "windows"],
)
def test_read_yolo_list_file(tmp_path, line):
    splits = _splits()
    write_yolo(tmp_path, splits, NAMES)
    lst = tmp_path / "train.txt"
    lst.write_text("".join(line.format(i.name) for i in splits["train"]))
    _assert_matches(read_yolo(lst, NAMES), splits["train"])


def test_a_list_line_naming_a_file_with_a_backslash_reads_that_file(tmp_path):
    splits = _splits()
    write_yolo(tmp_path, splits, NAMES)
    lst = tmp_path / "train.txt"
    # a file whose name holds a backslash is read as named where it exists
    first = sorted((tmp_path / "images" / "train").iterdir())[0]
    odd = tmp_path / "images" / "train" / "a\\b.png"
    shutil.copy(first, odd)
    lst.write_text("images/train/a\\b.png\n")
    assert [s.path for s in read_yolo(lst, NAMES)] == [odd]


def test_a_list_entry_through_a_parent_folder_finds_its_label(tmp_path):
    # audit43 data L4: images/x/../train/a.png looked for labels/x/../train/a.txt
    splits = _splits()
    write_yolo(tmp_path, splits, NAMES)
    (tmp_path / "images" / "x").mkdir()
    lst = tmp_path / "train.txt"
    lst.write_text("".join(f"images/x/../train/{i.name}.png\n" for i in splits["train"]))
    _assert_matches(read_yolo(lst, NAMES), splits["train"])
    # review F3: through a linked folder ".." leaves the link's target, as the OS reads it

    (tmp_path / "deep" / "a" / "b").mkdir(parents=True)
    (tmp_path / "deep" / "a" / "train").mkdir()
    first = sorted((tmp_path / "images" / "train").iterdir())[0]
    shutil.copy(first, tmp_path / "deep" / "a" / "train" / "z.png")
    (tmp_path / "images" / "lnk").symlink_to(tmp_path / "deep" / "a" / "b")
    lst.write_text("images/lnk/../train/z.png\n")
    (sample,) = read_yolo(lst, NAMES)
    assert sample.path.is_file() and sample.path.name == "z.png"


def test_empty_and_missing_label_files_are_background(tmp_path):
    splits = _splits()
    write_yolo(tmp_path, splits, NAMES)
    labels = tmp_path / "labels" / "train"
    (labels / "t0.txt").write_text("")
    (labels / "t1.txt").unlink()
    samples = {s.path.stem: s for s in read_yolo(tmp_path / "images" / "train", NAMES)}
    assert samples["t0"].boxes.shape == (0, 4) and samples["t0"].classes.shape == (0,)
    assert samples["t1"].boxes.shape == (0, 4)
    assert len(samples["t2"].boxes) > 0


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("0 0.5 1.2 0.1 0.1", r"outside \[0, 1\]"),
        ("0 -0.1 0.5 0.1 0.1", r"outside \[0, 1\]"),
        ("0 0.5 abc 0.1 0.1", "non-numeric"),
        ("2 0.5 0.5 0.1 0.1", "class id 2"),
        ("-1 0.5 0.5 0.1 0.1", "class id -1"),
        ("0.5 0.5 0.5 0.1 0.1", "class id 0.5 is not a whole number"),
        ("0 0.5 0.5 0.1", "expected 5 fields"),
        ("0 0.5 0.5 0.1 0.1 0.3", "expected 5 fields"),
        ("0 0.1 0.1 0.4 0.1 0.4 0.5 0.1", r"\(or a polygon .*got 8"),  # half a point
        ("0 0.1 0.1 0.4 0.1 0.4 1.5", r"outside \[0, 1\]"),  # a polygon out of the image
        ("0 0.5 nan 0.1 0.1", "non-finite"),
        ("0 0.5 0.5 0.2 0.2_0", "non-numeric"),  # float() took it as 0.2 (audit29 data L2)
        # a pose line in a data.yaml without kpt_shape: its visibility flags (audit29 data L1)
        ("0 0.5 0.5 0.2 0.2 0.1 0.1 2 0.2 0.2 2", "outside .*need kpt_shape in the data.yaml"),
        # COCO's 17 keypoints (56 fields, no polygon): said too (audit31 review2 L2)
        ("0 0.5 0.5 0.2 0.2" + " 0.1 0.1 2" * 17, "got 56; a pose dataset's lines"),
        # a polygon in pixels (not a pose line): no word of kpt_shape (audit30 review L2)
        ("0 2 3 40 3 40 50", r"outside \[0, 1\] \(by more than [0-9.e-]+\)$"),
    ],
)
def test_bad_yolo_label_names_file_and_line(tmp_path, row, match):
    write_yolo(tmp_path, _splits(), NAMES)
    label = tmp_path / "labels" / "train" / "t2.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n" + row + "\n")
    with pytest.raises(DataError, match=r"labels/train/t2\.txt:2: .*" + match):
        read_yolo(tmp_path / "images" / "train", NAMES)


def test_yolo_segmentation_labels_give_their_polygons_box(tmp_path):
    write_yolo(tmp_path, _splits(), NAMES)
    label = tmp_path / "labels" / "train" / "t2.txt"
    label.write_text("1 0.1 0.2 0.4 0.1 0.5 0.6 0.2 0.5\n0 0.5 0.5 0.2 0.2\n")
    s = next(x for x in read_yolo(tmp_path / "images" / "train", NAMES) if x.path.stem == "t2")
    w, h = s.width, s.height
    np.testing.assert_allclose(
        s.boxes,
        [[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.4 * h, 0.6 * w, 0.6 * h]],
        rtol=1e-5,
    )
    assert s.classes.tolist() == [1, 0]


def test_yolo_labels_without_area_are_left_out_with_a_warning_naming_them(tmp_path, caplog):
    write_yolo(tmp_path, _splits(), NAMES)
    label = tmp_path / "labels" / "train" / "t2.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0 0.1\n")
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        samples = read_yolo(tmp_path / "images" / "train", NAMES)
    s = next(x for x in samples if x.path.stem == "t2")
    assert s.classes.tolist() == [0]
    assert "1 label(s) of zero (or negative) width or height left out" in caplog.text
    assert "labels/train/t2.txt:2" in caplog.text


def test_a_yolo_error_names_its_line_past_a_form_feed(tmp_path):
    # audit43 data L1: lines were split at form feeds too, so line 2 was called line 3
    write_yolo(tmp_path, _splits(), NAMES)
    label = tmp_path / "labels" / "train" / "t2.txt"
    label.write_text("0 0.5 0.5 0.2 0.2 \f\n1 0.5 x 0.1 0.1\n")
    with pytest.raises(DataError, match=r"t2.txt:2: "):
        read_yolo(tmp_path / "images" / "train", NAMES)
    # review F5: a line separator within a line parts its boxes, as Ultralytics reads them
    label.write_text("0 0.5 0.5 0.2 0.2\u20281 0.25 0.25 0.1 0.1\n", encoding="utf-8")
    samples = {s.path.stem: s for s in read_yolo(tmp_path / "images" / "train", NAMES)}
    assert samples["t2"].classes.tolist() == [0, 1]


def test_yolo_coordinates_within_tolerance_are_clipped(tmp_path):
    write_yolo(tmp_path, _splits(), NAMES)
    (tmp_path / "labels" / "train" / "t0.txt").write_text("1 0.9 0.5 0.2005 1.0008\n")
    s = read_yolo(tmp_path / "images" / "train", NAMES)[0]
    assert s.classes.tolist() == [1]
    x1, y1, x2, y2 = s.boxes[0].tolist()
    assert y1 >= 0 and y2 <= s.height and x2 <= s.width


def test_corrupt_and_missing_images_skipped_with_one_warning(tmp_path, caplog):
    splits = _splits()
    write_yolo(tmp_path, splits, NAMES)
    (tmp_path / "images" / "train" / "t0.png").write_bytes(b"not an image at all")
    png = (tmp_path / "images" / "train" / "t1.png").read_bytes()
    (tmp_path / "images" / "train" / "t1.png").write_bytes(png[: len(png) // 2])  # truncated
    lst = tmp_path / "train.txt"
    names = ["t0", "t1", "t2", "t3", "missing"]
    lst.write_text("".join(f"images/train/{n}.png\n" for n in names))
    skipped: list[Path] = []
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        samples = read_yolo(lst, NAMES, skipped=skipped)
    assert sorted(s.path.stem for s in samples) == ["t2", "t3"]
    assert sorted(p.stem for p in skipped) == ["missing", "t0", "t1"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert (
        "3 unreadable" in msg
        and "t0.png" in msg
        and "t1.png" in msg
        and "missing.png (missing)" in msg
    )
    # image ids stay the list positions, so they do not shift when images are skipped
    assert [s.image_id for s in samples] == [2, 3]


def _as(path: Path, fmt: str, suffix: str) -> Path:
    """Re-save the image ``path`` in ``fmt`` under ``suffix`` (the PNG is removed)."""
    out = path.with_suffix(suffix)
    with Image.open(path) as im:
        im.convert("RGB").save(out, fmt)
    path.unlink()
    return out


@pytest.mark.parametrize(("fmt", "suffix"), [("JPEG", ".jpg"), ("BMP", ".bmp")])
def test_truncated_image_is_skipped_at_read_time(tmp_path, caplog, fmt, suffix):
    # PIL's verify() does not decode JPEG or BMP data: such a file used to pass the
    # probe and then kill training in the middle of an epoch
    write_yolo(tmp_path, _splits(), NAMES)
    folder = tmp_path / "images" / "train"
    bad = _as(folder / "t1.png", fmt, suffix)
    bad.write_bytes(bad.read_bytes()[:-20])  # the headers whole, the image data cut
    whole = _as(folder / "t2.png", fmt, suffix)
    padded = _as(folder / "t3.png", fmt, suffix)  # bytes after the JPEG EOI: still whole
    padded.write_bytes(padded.read_bytes() + b"\0" * 16)
    skipped: list[Path] = []
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        samples = read_yolo(folder, NAMES, skipped=skipped)
    assert skipped == [bad]
    assert sorted(s.path.name for s in samples) == ["t0.png", whole.name, padded.name]
    assert "1 unreadable" in caplog.text and "truncated" in caplog.text


def test_all_images_bad_is_an_error(tmp_path):
    write_yolo(tmp_path, _splits(n_train=2), NAMES)
    for p in (tmp_path / "images" / "train").iterdir():
        p.write_bytes(b"junk")
    with pytest.raises(DataError, match="all 2 images are unreadable"):
        read_yolo(tmp_path / "images" / "train", NAMES)


def test_no_images_is_an_error(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="no images found"):
        read_yolo(tmp_path / "images", NAMES)


# --- COCO -------------------------------------------------------------------------------


def test_read_coco_maps_sparse_category_ids(tmp_path):
    splits = _splits()
    write_coco(tmp_path, splits, NAMES, cat_ids=[7, 3])  # "dog" has the lower id
    samples, names = read_coco(tmp_path / "instances_train.json", tmp_path / "train")
    assert names == ["dog", "cat"]
    flipped = [
        type(i)(i.name, i.width, i.height, i.boxes, tuple(1 - c for c in i.classes))
        for i in splits["train"]
    ]
    _assert_matches(samples, flipped)
    assert sorted(s.image_id for s in samples) == [1, 2, 3, 4]
    # with names from data.yaml, categories are matched by name
    samples, names = read_coco(tmp_path / "instances_train.json", tmp_path / "train", NAMES)
    assert names == NAMES
    _assert_matches(samples, splits["train"])
    # ids written as numbers' strings (some exporters do): the same samples
    path = tmp_path / "instances_train.json"
    data = json.loads(path.read_text())
    for entry in data["images"]:
        entry["id"] = str(entry["id"])
    for a in data["annotations"]:
        a.update(image_id=str(a["image_id"]), category_id=f"{a['category_id']}")
    path.write_text(json.dumps(data))
    samples, _ = read_coco(path, tmp_path / "train", NAMES)
    _assert_matches(samples, splits["train"])


def test_read_coco_keeps_crowds_apart_as_ignore_regions_and_the_areas(tmp_path):
    yml = write_coco(tmp_path, _splits(), NAMES)
    path = tmp_path / "instances_train.json"
    data = json.loads(path.read_text())
    crowd = data["annotations"][0]
    crowd.update(iscrowd=1, area=12.5)
    data["annotations"][1]["area"] = 7.0
    data["annotations"][2].pop("area", None)  # no area: the box's
    path.write_text(json.dumps(data))
    samples, _ = read_coco(path, tmp_path / "train", NAMES)
    assert sum(len(s.boxes) for s in samples) == len(data["annotations"]) - 1
    (holder,) = [s for s in samples if s.image_id == crowd["image_id"]]
    x, y, w, h = crowd["bbox"]
    np.testing.assert_allclose(holder.ignore, [[x, y, x + w, y + h]], rtol=1e-6)
    name = {c["id"]: c["name"] for c in data["categories"]}[crowd["category_id"]]
    assert holder.ignore_classes.tolist() == [NAMES.index(name)]
    assert holder.ignore_areas.tolist() == [12.5]
    gt = DetectionDataset(samples, 64, augment=False, names=NAMES).coco_gt()["annotations"]
    assert [a["area"] for a in gt if a["iscrowd"]] == [12.5]
    assert 7.0 in [a["area"] for a in gt]
    b = data["annotations"][2]["bbox"]
    assert any(a["area"] == pytest.approx(b[2] * b[3]) for a in gt)
    assert check_dataset(load_data_config(yml))["splits"]["train"]["ignored"] == 1


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda d: d["annotations"][1].update(category_id=99),
            r"annotations\[1\] \(id=2\): unknown category_id 99",
        ),
        (
            lambda d: d["annotations"][1].update(image_id=99),
            r"annotations\[1\] \(id=2\): unknown image_id",
        ),
        (
            lambda d: d["annotations"][1].update(bbox=[1, 2, "x", 4]),
            r"annotations\[1\] \(id=2\): bbox \[1, 2, 'x', 4\] is not 4 numbers",
        ),
        (
            lambda d: d["annotations"][1].update(bbox=[1, 2, -3, 4]),
            r"annotations\[1\] \(id=2\): bbox",
        ),
        (lambda d: d["annotations"][1].pop("bbox"), r"annotations\[1\] \(id=2\): no 'bbox'$"),
        (
            lambda d: (
                d["annotations"][1].pop("bbox"),
                d["annotations"][1].update(segmentation=[]),
            ),
            r"annotations\[1\] \(id=2\): no 'bbox' \(a segmentation without a box",
        ),
        # ids as strings: a number's is read as it, another named
        (
            lambda d: d["annotations"][1].update(image_id="img_7"),
            r"annotations\[1\] \(id=2\): image_id 'img_7' is not an integer",
        ),
        (
            lambda d: d["images"][2].update(id="photo"),
            r"images\[2\]: id 'photo' is not an integer \(COCO's ids are integers\)",
        ),
        # audit43 data M1: "--1" and "¹" passed a digit test that int() refused: a traceback
        (
            lambda d: d["annotations"][1].update(image_id="--1"),
            r"annotations\[1\] \(id=2\): image_id '--1' is not an integer",
        ),
        (
            lambda d: d["images"][2].update(id="\u00b9"),
            r"images\[2\]: id '\u00b9' is not an integer",
        ),
        # L3: a string's characters and true were read as numbers
        (
            lambda d: d["annotations"][1].update(bbox="1234"),
            r"annotations\[1\] \(id=2\): bbox '1234' is not 4 numbers",
        ),
        (
            lambda d: d["annotations"][1].update(bbox=[True, 2, 3, 4]),
            r"annotations\[1\] \(id=2\): bbox \[True, 2, 3, 4\] is not 4 numbers",
        ),
        (
            lambda d: d["annotations"][1].update(area=True),
            r"annotations\[1\] \(id=2\): area True is not a number",
        ),
        (lambda d: d["categories"][0].update(name="bird"), "categories .* do not match names"),
        (
            lambda d: d["categories"][1].update(id="cat"),
            r"categories\[1\]: id 'cat' is not an integer \(COCO's ids are integers\)",
        ),
        (lambda d: d["categories"][1].pop("name"), r"categories\[1\] \(id=\d+\): no 'name'$"),
        (
            lambda d: d["categories"][1].update(id=d["categories"][0]["id"]),
            r"categories\[1\]: duplicate category id \d+ \(also categories\[0\]\)",
        ),
        (lambda d: d["categories"].append(3), r"categories\[\d\]: expected an object, got"),
        # merged exports that both count image ids from 1
        (
            lambda d: d["images"].append({**d["images"][0], "file_name": "other.png"}),
            r"images\[4\]: duplicate image id 1 \(also images\[0\]\)",
        ),
        # a category outside the names that an annotation uses is still a mismatch
        (
            lambda d: (
                d["categories"].append({"id": 0, "name": "animals"}),
                d["annotations"][0].update(category_id=0),
            ),
            "categories .* do not match names",
        ),
    ],
)
def test_bad_coco_names_file_and_annotation(tmp_path, edit, match):
    write_coco(tmp_path, _splits(), NAMES)
    path = tmp_path / "instances_train.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"instances_train\.json: " + match):
        read_coco(path, tmp_path / "train", NAMES)


def test_coco_split_listing_fewer_categories(tmp_path, caplog):
    """A split's json may list only the classes it holds: matched by name, the rest noted."""
    write_coco(tmp_path, _splits(), NAMES)
    path = tmp_path / "instances_train.json"
    data = json.loads(path.read_text())
    first = data["categories"][0]
    data["categories"] = data["categories"][1:]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != first["id"]]
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO, logger="yoloslim.data"):
        samples, names = read_coco(path, tmp_path / "train", NAMES)
    assert names == NAMES
    assert f"no category named {first['name']!r}" in caplog.text
    want = [NAMES.index(c["name"]) for c in data["categories"]]
    got = sorted({int(c) for s in samples for c in s.classes.tolist()})
    assert got == want  # each box under its name's index in NAMES, not its place in the file


def test_coco_as_exporters_write_it(tmp_path, caplog):
    """Roboflow's unused project category (id 0), Windows file names, zero-size boxes."""
    splits = _splits()
    write_coco(tmp_path, splits, NAMES)
    path = tmp_path / "instances_train.json"
    data = json.loads(path.read_text())
    data["categories"].append({"id": 0, "name": "animals", "supercategory": "none"})
    (tmp_path / "train" / "sub").mkdir()
    first = data["images"][0]
    name = first["file_name"]
    (tmp_path / "train" / name).rename(tmp_path / "train" / "sub" / name)
    first["file_name"] = f"sub\\{name}"
    data["annotations"].append({**data["annotations"][0], "id": 99, "bbox": [5, 5, 0, 20]})
    data["images"].append(dict(data["images"][1]))  # the same image listed twice
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO, logger="yoloslim.data"):
        samples, names = read_coco(path, tmp_path / "train", NAMES)
    assert names == NAMES
    _assert_matches(samples, splits["train"])  # every image, every box, the empty one out
    assert "left out 1 category outside the data's names that no annotation uses: 'animals'" in (
        caplog.text
    )
    assert (
        "1 annotation(s) of zero (or negative) width or height left out (annotations["
        in caplog.text
    )
    # the project category named like a class (Roboflow, one-class projects): left out too
    data["categories"][-1]["name"] = "cat"
    path.write_text(json.dumps(data))
    _assert_matches(read_coco(path, tmp_path / "train", NAMES)[0], splits["train"])


def test_invalid_coco_json_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "images": [\n    {"id": 1,}\n  ]\n}\n')
    with pytest.raises(DataError, match=r"bad\.json: line 3: invalid JSON"):
        read_coco(path, tmp_path)


@pytest.mark.parametrize("kind", ["coco", "list", "voc"])
def test_a_list_or_json_in_another_encoding_names_the_file_and_line(tmp_path, kind):
    # a Latin-1 COCO json, YOLO list of images or VOC image set was a UnicodeDecodeError's
    # traceback (audit46 data F1); YOLO label files, data.yaml and VOC XML said it already
    splits = _splits()
    if kind == "coco":
        write_coco(tmp_path, splits, NAMES)
        path = tmp_path / "instances_train.json"
        path.write_bytes(path.read_bytes().replace(b'"cat"', b'"caf\xe9"'))
        what = "COCO annotation file"
    elif kind == "list":
        write_yolo(tmp_path, splits, NAMES)
        path = tmp_path / "train.txt"
        path.write_bytes(b"./images/train/t0.png\n./images/train/caf\xe9.png\n")
        what = "list of images"
    else:
        write_voc(tmp_path, splits, NAMES)
        path = tmp_path / "ImageSets" / "Main" / "val.txt"
        path.write_bytes(path.read_bytes() + b"caf\xe9\n")
        what = "VOC image set"
    line = path.read_bytes()[: path.read_bytes().index(b"\xe9")].count(b"\n") + 1
    match = rf"{path.name}:{line}: the {what} is not UTF-8 \(invalid continuation byte"
    with pytest.raises(DataError, match=match):
        if kind == "coco":
            read_coco(path, tmp_path / "train", NAMES)
        elif kind == "list":
            read_yolo(path, NAMES)
        else:
            read_voc(path, NAMES)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"\xef\xbb\xbfa\n\xe9\n", ":2: .* at byte 5\\)"),  # after a byte order mark
        (b"a\rb\r\xe9\r", ":3: .* at byte 4\\)"),  # lines ended by \r alone
        (b"a\r\nb\r\nc\xe9", ":3: .* at byte 7\\)"),
    ],
)
def test_a_text_input_not_in_utf8_is_placed_by_line_and_byte(tmp_path, raw, where):
    # the line was counted by \n alone and the byte after the byte order mark (review L3)
    from yoloslim.data.sample import read_text

    path = tmp_path / "list.txt"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=r"list\.txt" + where):
        read_text(path, "list of images")
    path.write_bytes(b"\xef\xbb\xbfa\r\nb\rc\n")
    assert read_text(path, "list of images") == "a\nb\nc\n"


def test_coco_missing_image_skipped(tmp_path, caplog):
    write_coco(tmp_path, _splits(), NAMES)
    (tmp_path / "train" / "t1.png").unlink()
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        samples, _ = read_coco(tmp_path / "instances_train.json", tmp_path / "train", NAMES)
    assert len(samples) == 3
    assert [r.levelno for r in caplog.records].count(logging.WARNING) == 1
    assert "t1.png (missing)" in caplog.text


# --- VOC --------------------------------------------------------------------------------


def test_read_voc_root_and_list_file(tmp_path):
    splits = _splits()
    write_voc(tmp_path, splits, NAMES)
    _assert_matches(read_voc(tmp_path / "ImageSets" / "Main" / "val.txt", NAMES), splits["val"])
    every = read_voc(tmp_path, NAMES)
    _assert_matches(every, splits["train"] + splits["val"])


def test_voc_image_found_by_stem_when_filename_names_no_file(tmp_path):
    """A <filename> without its extension, or naming the .jpg of an image since converted."""
    from PIL import Image

    splits = _splits()
    write_voc(tmp_path, splits, NAMES)
    first, second = (img.name for img in splits["val"])
    ann = tmp_path / "Annotations" / f"{first}.xml"
    ann.write_text(ann.read_text().replace(f"<filename>{first}.jpg<", f"<filename>{first}<"))
    assert f"<filename>{first}</filename>" in ann.read_text()
    jpg = tmp_path / "JPEGImages" / f"{second}.jpg"
    Image.open(jpg).save(jpg.with_suffix(".png"))
    jpg.unlink()
    samples = read_voc(tmp_path / "ImageSets" / "Main" / "val.txt", NAMES)
    assert [s.path.name for s in samples] == [f"{first}.jpg", f"{second}.png"]
    _assert_matches(samples, splits["val"])


def test_voc_difficult_objects_are_ignore_regions_unless_kept(tmp_path):
    splits = _splits()
    write_voc(tmp_path, splits, NAMES)
    img = splits["train"][0]
    extra = (
        "  <object><name>dog</name><difficult>1</difficult>"
        "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>\n"
    )
    (tmp_path / "Annotations" / f"{img.name}.xml").write_text(voc_xml(img, NAMES, extra))
    lst = tmp_path / "ImageSets" / "Main" / "train.txt"
    first = read_voc(lst, NAMES)[0]
    assert len(first.boxes) == len(img.boxes)
    np.testing.assert_allclose(first.ignore, [[1, 1, 9, 9]])  # 1-based inclusive -> [x-1, x]
    assert first.ignore_classes.tolist() == [1]
    kept = read_voc(lst, NAMES, keep_difficult=True)[0]
    assert len(kept.boxes) == len(img.boxes) + 1 and len(kept.ignore) == 0
    # a difficult object with a broken box is left out (it was skipped unread before); a
    # broken box of an object to learn is an error naming the file and line
    broken = extra.replace("<xmax>9</xmax>", "<xmax>1</xmax>")
    (tmp_path / "Annotations" / f"{img.name}.xml").write_text(voc_xml(img, NAMES, broken))
    assert len(read_voc(lst, NAMES)[0].ignore) == 0
    with pytest.raises(DataError, match=r"\.xml:\d+: box .* has xmax < xmin"):
        read_voc(lst, NAMES, keep_difficult=True)


def _voc_with(tmp_path, mutate):
    splits = _splits()
    write_voc(tmp_path, splits, NAMES)
    img = splits["train"][0]
    xml = tmp_path / "Annotations" / f"{img.name}.xml"
    xml.write_text(mutate(voc_xml(img, NAMES)))
    return xml


def test_voc_unknown_class_names_file_and_line(tmp_path):
    _voc_with(
        tmp_path,
        lambda x: x.replace("<name>cat</name>", "<name>bird</name>", 1).replace(
            "<name>dog</name>", "<name>bird</name>", 1
        ),
    )
    # the first <object> starts on line 4 and its <name> is on line 5
    with pytest.raises(DataError, match=r"Annotations/t0\.xml:5: class 'bird' not in names"):
        read_voc(tmp_path, NAMES)


def test_voc_non_numeric_coordinate_names_line(tmp_path):
    _voc_with(tmp_path, lambda x: x.replace("<ymax>", "<ymax>12a", 1).replace("12a", "x", 1))
    with pytest.raises(DataError, match=r"Annotations/t0\.xml:11: <ymax> is not a number"):
        read_voc(tmp_path, NAMES)


def test_voc_broken_xml_names_line(tmp_path):
    _voc_with(tmp_path, lambda x: x.replace("</bndbox>", "</bndbx>", 1))
    with pytest.raises(DataError, match=r"Annotations/t0\.xml:12: invalid XML"):
        read_voc(tmp_path, NAMES)


def test_voc_list_entry_without_annotation(tmp_path):
    write_voc(tmp_path, _splits(), NAMES)
    lst = tmp_path / "ImageSets" / "Main" / "train.txt"
    lst.write_text(lst.read_text() + "ghost\n")
    with pytest.raises(DataError, match=r"train\.txt:5: annotation .*ghost\.xml not found"):
        read_voc(lst, NAMES)


# --- all formats through data.yaml ----------------------------------------------------


@pytest.mark.parametrize("writer", [write_yolo, write_coco, write_voc])
def test_formats_agree_through_data_yaml(tmp_path, writer):
    splits = _splits()
    cfg = load_data_config(writer(tmp_path, splits, NAMES))
    assert cfg.names == NAMES and cfg.nc == 2
    assert cfg.format == {write_yolo: "yolo", write_coco: "coco", write_voc: "voc"}[writer]
    for split in ("train", "val"):
        _assert_matches(load_samples(cfg, split), splits[split])


# --- report and read-only guarantees ----------------------------------------------------


def test_check_dataset_report(tmp_path):
    splits = _splits()
    path = write_yolo(tmp_path, splits, NAMES)
    (tmp_path / "labels" / "val" / "v0.txt").write_text("")
    (tmp_path / "images" / "train" / "t3.png").write_bytes(b"junk")
    report = check_dataset(load_data_config(path))
    train, val = report["splits"]["train"], report["splits"]["val"]
    assert train["images"] == 3 and train["skipped_images"] == [
        str(tmp_path / "images/train/t3.png")
    ]
    n = sum(len(i.boxes) for i in splits["train"][:3])
    assert train["instances"] == n == sum(train["per_class"].values())
    assert val["empty_images"] == 1 and val["skipped_images"] == []
    assert report["names"] == NAMES and report["format"] == "yolo"


def test_check_dataset_counts_missing_label_files_and_warns(tmp_path, caplog):
    path = write_yolo(tmp_path, _splits(), NAMES)
    (tmp_path / "labels" / "train" / "t0.txt").unlink()  # one missing: a background image
    (tmp_path / "labels" / "train" / "t1.txt").write_text("")  # one empty
    for label in (tmp_path / "labels" / "val").iterdir():  # a split without any label file
        label.unlink()
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        report = check_dataset(load_data_config(path))
    train, val = report["splits"]["train"], report["splits"]["val"]
    assert (train["empty_images"], train["missing_labels"]) == (2, 1)
    assert (val["images"], val["empty_images"], val["missing_labels"]) == (2, 2, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # train: one of its images has none, counted (audit29 data M2: it was said by data
    # check's count alone, and train and val read it as background without a word)
    assert len(warnings) == 2, warnings
    assert "1 of 4 images have no label file" in warnings[0]
    assert str(tmp_path / "labels" / "train" / "t0.txt") in warnings[0]
    assert "none of the 2 images has a label file" in warnings[1]
    assert str(tmp_path / "labels" / "val" / "v0.txt") in warnings[1]


def test_check_dataset_warns_when_a_split_has_no_instance(tmp_path, caplog):
    path = write_yolo(tmp_path, _splits(), NAMES)
    for label in (tmp_path / "labels" / "val").iterdir():
        label.write_text("")
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        report = check_dataset(load_data_config(path))
    assert report["splits"]["val"]["missing_labels"] == 0
    assert "the val split has 2 images but no instance" in caplog.text


@pytest.mark.parametrize("writer", [write_yolo, write_coco, write_voc])
def test_readers_never_modify_inputs(tmp_path, writer):
    path = writer(tmp_path, _splits(), NAMES)
    before = _hash_tree(tmp_path)
    cfg = load_data_config(path)
    samples = load_samples(cfg, "train") + load_samples(cfg, "val")
    check_dataset(cfg)
    assert _hash_tree(tmp_path) == before
    with pytest.raises(ValueError):
        samples[0].boxes[0, 0] = 5.0  # samples are read-only too


def test_boxes_wholly_outside_their_image_are_counted_in_a_warning(tmp_path, caplog):
    # they were dropped without a word (clipping leaves them empty)
    splits = _splits()
    write_coco(tmp_path, splits, NAMES)
    path = tmp_path / "instances_train.json"
    data = json.loads(path.read_text())
    first = data["images"][0]
    outside = [first["width"] + 5, 2, 10, 10]
    data["annotations"].append({**data["annotations"][0], "id": 99, "bbox": outside})
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        samples, _ = read_coco(path, tmp_path / "train", NAMES)
    _assert_matches(samples, splits["train"])
    assert (
        f"1 box(es) wholly outside their image left out (image id {first['id']} (1))" in caplog.text
    )

    write_voc(tmp_path / "voc", splits, NAMES)
    img = splits["val"][0]
    extra = (
        "  <object><name>dog</name><difficult>0</difficult><bndbox><xmin>2</xmin>"
        f"<ymin>{img.height + 3}</ymin><xmax>9</xmax><ymax>{img.height + 9}</ymax></bndbox></object>\n"
    )
    (tmp_path / "voc" / "Annotations" / f"{img.name}.xml").write_text(voc_xml(img, NAMES, extra))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        samples = read_voc(tmp_path / "voc" / "ImageSets" / "Main" / "val.txt", NAMES)
    _assert_matches(samples, splits["val"])
    assert f"1 box(es) wholly outside their image left out ({img.name}.xml (1))" in caplog.text


def test_boxes_reaching_past_their_image_are_cut_with_a_warning(tmp_path, caplog):
    # they were cut at the edge without a word, and mAP then differs from COCOeval's on the file
    write_coco(tmp_path, _splits(), NAMES)
    path = tmp_path / "instances_train.json"
    data = json.loads(path.read_text())
    first = data["images"][0]
    w, h = first["width"], first["height"]
    ann = data["annotations"][0]
    data["annotations"] += [
        {**ann, "id": 98, "image_id": first["id"], "bbox": [w - 10, 2, 30, 10]},  # 20 px past
        {**ann, "id": 99, "image_id": first["id"], "bbox": [0, 0, w + 0.5, h]},  # rounding
    ]
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        samples, _ = read_coco(path, tmp_path / "train", NAMES)
    said = "1 box(es) reaching more than 1 px past their image's edge cut at it (image id "
    assert said + f"{first['id']} (1)); they are trained and scored as cut" in caplog.text
    got = next(s for s in samples if s.image_id == first["id"]).boxes
    assert [w - 10, 2, w, 12] in got.tolist() and [0, 0, w, h] in got.tolist()
    caplog.clear()
    data["annotations"] = data["annotations"][:-2]
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        read_coco(path, tmp_path / "train", NAMES)
    assert "past their image" not in caplog.text


def test_yolo_duplicates_edges_and_tool_overshoot_are_said_not_silent(tmp_path, caplog):
    # audit23: a duplicated line capped recall (a perfect detector scored 0.901); a box past
    # the image was cut unsaid; a polygon point at -0.002 (CVAT, Roboflow) stopped the run
    write_yolo(tmp_path, _splits(), NAMES)
    label = tmp_path / "labels" / "train" / "t2.txt"
    label.write_text(
        "0 0.5 0.5 0.2 0.2\n"
        "0 0.50 0.5 0.2 0.2\n"  # the same box written otherwise: a duplicate
        "1 0.05 0.5 0.5 0.2\n"  # reaches past the left edge: cut, and said
        "1 -0.002 0.1 0.4 0.1 0.4 0.5 -0.002 0.5\n"  # a polygon a little past: taken
    )
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        samples = read_yolo(tmp_path / "images" / "train", NAMES)
    s = next(x for x in samples if x.path.stem == "t2")
    assert s.classes.tolist() == [0, 1, 1]
    assert s.boxes[1][0] == 0 and s.boxes[2][0] == 0  # both on the edge
    said = " ".join(caplog.text.split())
    assert "1 duplicate label line(s) left out, one copy kept (" in said
    assert "labels/train/t2.txt:2" in said
    assert "1 box(es) reaching more than 1 px past their image's edge cut at it" in said
    # data check's report counts them too (only the log said so): audit23 data L2
    label.write_text(label.read_text() + "0 0.5 0.5 0 0.2\n")  # and a box without width
    changed = check_dataset(load_data_config(tmp_path / "data.yaml"))["splits"]["train"]
    assert changed["labels_changed"] == {
        "zero_area_dropped": 1,
        "duplicates_dropped": 1,
        "clipped": 1,
        "outside_dropped": 0,
    }
    label.write_text("0 0.5 0.5 0.2 0.2\n0 1.02 0.5 0.1 0.1\n")  # past the tolerance
    with pytest.raises(DataError, match=r"t2\.txt:2: normalised .* \(by more than 0.01\)"):
        read_yolo(tmp_path / "images" / "train", NAMES)


def test_coco_iscrowd_as_a_string_and_repeated_annotations(tmp_path, caplog):
    # "iscrowd": "0" made the object an ignore region (bool("0") is True), without a word
    yaml_path = write_coco(tmp_path, _splits(), NAMES)
    path = tmp_path / "instances_train.json"
    data = json.loads(path.read_text())
    first = data["annotations"][0]
    first["iscrowd"] = "0"
    data["annotations"].append({**first, "id": 999})  # the same object again
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="yoloslim.data"):
        samples, _ = read_coco(path, tmp_path / "train", NAMES)
    assert sum(len(s.boxes) for s in samples) == len(data["annotations"]) - 1
    assert sum(len(s.ignore) for s in samples) == 0
    assert "1 annotation(s) repeating another of the same image" in caplog.text
    report = check_dataset(load_data_config(yaml_path))["splits"]
    assert report["train"]["labels_changed"]["duplicates_dropped"] == 1
    assert sum(report["val"]["labels_changed"].values()) == 0
    first["iscrowd"] = "false"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotations\[0\] \(id=.*\): iscrowd 'false' is not 0"):
        read_coco(path, tmp_path / "train", NAMES)


def test_voc_difficult_written_as_true_is_difficult(tmp_path):
    # <difficult>true</difficult> was read as not difficult: the object was trained on
    splits = _splits()
    write_voc(tmp_path, splits, NAMES)
    img = splits["train"][0]
    lst = tmp_path / "ImageSets" / "Main" / "train.txt"
    for flag, hard in (("true", 1), ("1.0", 1), ("0", 0), ("False", 0)):
        extra = (
            f"  <object><name>dog</name><difficult>{flag}</difficult>"
            "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>\n"
        )
        (tmp_path / "Annotations" / f"{img.name}.xml").write_text(voc_xml(img, NAMES, extra))
        assert len(read_voc(lst, NAMES)[0].ignore) == hard, flag
    twice = voc_xml(img, NAMES, extra + extra)  # the same object twice: one kept, counted
    (tmp_path / "Annotations" / f"{img.name}.xml").write_text(twice)
    train = check_dataset(load_data_config(tmp_path / "data.yaml"))["splits"]["train"]
    assert train["labels_changed"]["duplicates_dropped"] == 1
    bad = extra.replace("False", "maybe")
    (tmp_path / "Annotations" / f"{img.name}.xml").write_text(voc_xml(img, NAMES, bad))
    with pytest.raises(DataError, match=r"\.xml:\d+: <difficult>maybe</difficult> is not 0 or 1"):
        read_voc(lst, NAMES)


def test_voc_annotations_folder_given_for_the_root_names_the_root(tmp_path):
    # audit26 readme M1: "train: Annotations" said only "VOC root without an Annotations/"
    write_voc(tmp_path, _splits(), NAMES)
    with pytest.raises(DataError, match=r"Annotations: VOC root without .* the VOC root is "):
        read_voc(tmp_path / "Annotations", NAMES)
