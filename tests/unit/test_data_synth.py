"""Synthetic shapes dataset: determinism, layout, label consistency, argument checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from yoloslim.data import (
    DetectionDataset,
    check_dataset,
    load_data_config,
    load_samples,
    read_coco,
    synthesize,
)
from yoloslim.data.synth import SHAPES
from yoloslim.errors import ConfigError


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = synthesize(tmp_path / "a", images=6, imgsz=64, classes=3, seed=1)
    b = synthesize(tmp_path / "b", images=6, imgsz=64, classes=3, seed=1)
    c = synthesize(tmp_path / "c", images=6, imgsz=64, classes=3, seed=2)
    da, db, dc = _digest(a.parent), _digest(b.parent), _digest(c.parent)
    assert da == db
    assert set(da) == set(dc)
    changed = [k for k in da if k.startswith("images/") and da[k] != dc[k]]
    assert len(changed) == 6


def test_layout_and_yaml(tmp_path):
    path = synthesize(tmp_path / "ds", images=10, imgsz=48, classes=5, seed=0, val_fraction=0.3)
    root = path.parent
    assert path == root / "data.yaml"
    assert len(list((root / "images" / "train").glob("*.jpg"))) == 7
    assert len(list((root / "images" / "val").glob("*.jpg"))) == 3
    assert len(list((root / "labels" / "train").glob("*.txt"))) == 7
    assert (root / "annotations" / "instances_val.json").is_file()
    cfg = load_data_config(path)
    assert cfg.names == list(SHAPES[:5]) and cfg.format == "yolo"
    assert yaml.safe_load(path.read_text())["path"] == "."  # relocatable, byte-stable


def test_labels_sane_and_yolo_equals_coco(tmp_path):
    path = synthesize(tmp_path / "ds", images=12, imgsz=96, classes=8, seed=3)
    cfg = load_data_config(path)
    for split in ("train", "val"):
        yolo = load_samples(cfg, split)
        coco, names = read_coco(
            path.parent / "annotations" / f"instances_{split}.json",
            path.parent / "images" / split,
            cfg.names,
        )
        assert names == cfg.names
        assert [s.image_id for s in yolo] == [s.image_id for s in coco]
        for y, c in zip(yolo, coco, strict=True):
            assert (y.width, y.height) == (c.width, c.height) == (96, 96)
            assert 1 <= len(y.boxes) <= 8
            np.testing.assert_allclose(y.boxes, c.boxes, atol=1e-3)
            assert y.classes.tolist() == c.classes.tolist()
            sides = np.concatenate([y.boxes[:, 2] - y.boxes[:, 0], y.boxes[:, 3] - y.boxes[:, 1]])
            assert sides.min() >= 4 and sides.max() <= 96
            assert (y.boxes >= 0).all() and (y.boxes <= 96).all()


def test_shapes_contrast_with_background(tmp_path):
    """The pixels inside a box are not all background: the shape is visible."""
    path = synthesize(tmp_path / "ds", images=4, imgsz=128, classes=4, seed=5)
    cfg = load_data_config(path)
    ds = DetectionDataset(load_samples(cfg, "train"), 128, augment=False, names=cfg.names)
    for i in range(len(ds)):
        img, targets, _ = ds[i]
        arr = img.permute(1, 2, 0).numpy().astype(np.float32)
        for _, x1, y1, x2, y2 in targets.tolist():
            patch = arr[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))].reshape(-1, 3)
            assert patch.std(0).max() > 12  # shape + background, not a flat patch


def test_rerun_replaces_previous_synthetic_dataset(tmp_path):
    out = tmp_path / "ds"
    synthesize(out, images=8, imgsz=32, seed=0)
    path = synthesize(out, images=4, imgsz=32, seed=0)
    report = check_dataset(load_data_config(path))
    assert report["splits"]["train"]["images"] + report["splits"]["val"]["images"] == 4
    coco = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert len(coco["images"]) == report["splits"]["train"]["images"]


def test_rerun_replaces_an_interrupted_dataset(tmp_path, monkeypatch, interrupting):
    import yoloslim.data.synth as synth_mod

    out = tmp_path / "ds"
    real_render = synth_mod._render
    monkeypatch.setattr(synth_mod, "_render", interrupting(real_render, 3))
    with pytest.raises(KeyboardInterrupt):
        synthesize(out, images=6, imgsz=32, seed=0)
    monkeypatch.setattr(synth_mod, "_render", real_render)
    assert not (out / "data.yaml").exists() and any((out / "images" / "train").iterdir())
    # what a SIGKILL between a file's write and its rename leaves (it was taken for a user's)
    for left in ("images/train/.000004.jpg.w0hdpzcb.tmp", "labels/val/.000005.txt.k_3j9x1a.tmp",
                 "annotations/.instances_train.json.a1b2c3d4.tmp"):  # fmt: skip
        (out / left).parent.mkdir(parents=True, exist_ok=True)
        (out / left).write_bytes(b"cut short")
    path = synthesize(out, images=6, imgsz=32, seed=0)  # recognised and replaced
    assert sorted(p.name for p in out.iterdir()) == ["annotations", "data.yaml", "images", "labels"]
    assert _digest(path.parent) == _digest(
        synthesize(tmp_path / "fresh", images=6, imgsz=32).parent
    )


def test_refuses_foreign_non_empty_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(ConfigError, match="not empty"):
        synthesize(tmp_path, images=4, imgsz=32)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_a_bad_argument_leaves_the_earlier_dataset_whole(tmp_path):
    out = tmp_path / "ds"
    synthesize(out, images=4, imgsz=32, seed=0)
    before = _digest(out)
    with pytest.raises(ConfigError, match="seed=-1 must be"):
        synthesize(out, images=4, imgsz=32, seed=-1)
    assert _digest(out) == before


def test_a_rerun_never_writes_through_a_link_nor_deletes_a_users_file(tmp_path):
    out = tmp_path / "ds"
    synthesize(out, images=4, imgsz=32, seed=0)
    photos = tmp_path / "photos"
    (out / "images").rename(photos)
    (out / "images").symlink_to(photos)  # the user's own photos, linked in
    photo = (photos / "train" / "000000.jpg").read_bytes()
    with pytest.raises(ConfigError, match="is a link or a file"):
        synthesize(out, images=4, imgsz=32, seed=1)
    assert (photos / "train" / "000000.jpg").read_bytes() == photo
    (out / "images").unlink()
    synthesize(out, images=4, imgsz=32, seed=0)
    mine = out / "images" / "test" / "mine.jpg"  # the user adds a split of their own
    mine.parent.mkdir()
    mine.write_bytes(b"jpeg")
    with pytest.raises(ConfigError, match="is not part of the synthetic dataset"):
        synthesize(out, images=4, imgsz=32, seed=1)
    assert mine.read_bytes() == b"jpeg"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": 1}, "images"),
        ({"images": 2.5}, "images"),
        ({"imgsz": 16}, "imgsz"),
        ({"imgsz": 100_000}, r"imgsz=100000 must be in \[32, 8192\]"),  # was killed for memory
        ({"classes": 0}, "classes"),
        ({"classes": 9}, "classes"),
        ({"classes": True}, r"classes=True must be an integer"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": "0.2"}, r"val_fraction='0.2' must be a number"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        # numpy folds seed 2**32 * k + s onto seed s: its image 0 was seed 0's image k
        ({"seed": 2**32}, r"seed=4294967296 must be in \[0, 4294967295\]"),
    ],
)
def test_validates_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        synthesize(tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


def test_numpy_arguments_are_taken_as_plain_numbers(tmp_path):
    """A sweep's ``np.arange`` values work, and data.yaml holds plain numbers."""
    out = synthesize(tmp_path / "ds", images=np.int64(4), imgsz=np.int32(32),
                     classes=np.int64(2), val_fraction=np.float64(0.5))  # fmt: skip
    meta = yaml.safe_load(out.read_text())
    assert meta["nc"] == 2 and type(meta["nc"]) is int
    assert len(list((tmp_path / "ds" / "images" / "val").iterdir())) == 2


@pytest.mark.parametrize("name", ["data.yaml", "shapes.YML"])
def test_refuses_yaml_out(tmp_path, name):
    with pytest.raises(ConfigError, match=r"out is the dataset folder \(it will hold data\.yaml\)"):
        synthesize(tmp_path / "s9" / name, images=4, imgsz=64)
    assert not any(tmp_path.iterdir())


def test_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    path = synthesize("~/ys_synth", images=4, imgsz=64)
    assert path == tmp_path / "home" / "ys_synth" / "data.yaml" and path.is_file()
    assert len(list(path.parent.glob("images/*/*.jpg"))) == 4
    assert not any(cwd.iterdir())  # no literal "~" folder
