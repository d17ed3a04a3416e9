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
    assert "train_images" in msg and len(msg) < 600


def test_skipped_images_warning_names_a_few(tmp_path, caplog):
    good = _png(tmp_path / "a.png")
    paths = [good] + [tmp_path / f"gone{i}.png" for i in range(50)]
    with caplog.at_level(logging.WARNING):
        sizes = probe_images(paths, "src", hint="check the folder")
    assert list(sizes) == [good]
    assert "skipping 50 unreadable image(s) (50 missing)" in caplog.text
    assert "gone2.png" in caplog.text and "gone3.png" not in caplog.text
    assert "check the folder" in caplog.text
