"""DetectionDataset: letterbox meta, augmentation geometry, determinism, collate, loader."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from yoloslim.data import (
    AugmentConfig,
    DetectionDataset,
    build_dataloader,
    collate,
    load_data_config,
    load_samples,
)
from yoloslim.data.testing import fake_images, write_yolo
from yoloslim.data.transforms import PAD_VALUE, Affine, hsv_matrix, resize_exact, warp
from yoloslim.errors import ConfigError, DataError
from yoloslim.train import TrainConfig
from yoloslim.train.loop import epoch_loader

NAMES = ["a", "b"]
NO_COLOUR = dict(hsv=(0.0, 0.0, 0.0))


@pytest.fixture
def data(tmp_path):
    splits = {
        "train": fake_images(6, width=80, height=50, seed=3, prefix="t")
        + fake_images(2, width=30, height=70, seed=4, prefix="u"),
        "val": fake_images(3, width=50, height=90, seed=5, prefix="v"),
    }
    cfg = load_data_config(write_yolo(tmp_path, splits, NAMES))
    return tmp_path, cfg, load_samples(cfg, "train"), load_samples(cfg, "val")


def _boxes_back(targets: torch.Tensor, meta: dict, size: int) -> np.ndarray:
    b = targets[:, 1:].numpy().astype(np.float64)
    if meta["flipped"]:
        b[:, [0, 2]] = size - b[:, [2, 0]]
    pad = np.array(meta["pad"] * 2)
    return (b - pad) / meta["ratio"]


@pytest.mark.parametrize("imgsz", [64, 96, 160])
def test_letterbox_meta_maps_boxes_back(data, imgsz):
    _, cfg, train, val = data
    ds = DetectionDataset(train + val, imgsz, augment=False, names=cfg.names)
    for i, s in enumerate(ds.samples):
        img, targets, meta = ds[i]
        assert img.shape == (3, imgsz, imgsz) and img.dtype == torch.uint8
        assert targets.dtype == torch.float32 and targets.shape[1] == 5
        assert meta["orig_shape"] == (s.height, s.width) and meta["image_id"] == s.image_id
        assert meta["path"] == str(s.path) and not meta["flipped"]
        assert len(targets) == len(s.boxes)  # fixture boxes are >= 6 px, none dropped
        np.testing.assert_allclose(_boxes_back(targets, meta, imgsz), s.boxes, atol=1e-3)
        assert targets[:, 0].tolist() == s.classes.tolist()
        # centred, grey padding on the short side
        left, top = meta["pad"]
        nw, nh = round(s.width * meta["ratio"]), round(s.height * meta["ratio"])
        assert abs(left - (imgsz - nw) // 2) <= 1 and abs(top - (imgsz - nh) // 2) <= 1
        if left >= 1:
            assert (img[:, :, : int(left)] == PAD_VALUE).all()
        if top >= 1:
            assert (img[:, : int(top), :] == PAD_VALUE).all()


def _assert_boxes_on_white(img: torch.Tensor, targets: torch.Tensor) -> None:
    """Fixture boxes are white rectangles on a dark background: check alignment."""
    arr = img.permute(1, 2, 0).numpy().astype(int)
    for _, x1, y1, x2, y2 in targets.tolist():
        inner = arr[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
        if inner.size:
            assert inner.min() > 180, (x1, y1, x2, y2)
        # just outside the box (where inside the image) is not white
        cy = int((y1 + y2) / 2)
        for x in (int(x1) - 2, int(np.ceil(x2)) + 1):
            if 0 <= x < arr.shape[1]:
                assert arr[cy, x].min() < 180 or arr[cy, x].max() < 250, (x, cy)


def test_letterbox_pixels_align_with_boxes(data):
    _, cfg, train, _ = data
    ds = DetectionDataset(train, 128, augment=False, names=cfg.names)
    for i in range(len(ds)):
        img, targets, _ = ds[i]
        _assert_boxes_on_white(img, targets)


@pytest.mark.parametrize(
    "aug",
    [
        AugmentConfig(),
        AugmentConfig(mosaic=0.0),
        AugmentConfig(mosaic=1.0, hflip=1.0, scale=0.9, translate=0.5),
        AugmentConfig(mosaic=0.0, hflip=1.0, scale=0.9, translate=0.5),
    ],
)
def test_augmented_boxes_stay_inside_and_usable(data, aug):
    _, cfg, train, _ = data
    size = 96
    ds = DetectionDataset(train, size, augment=True, aug=aug, names=cfg.names)
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            img, t, meta = ds[i]
            assert img.shape == (3, size, size) and img.dtype == torch.uint8
            assert t.dtype == torch.float32 and t.shape[1] == 5
            assert (t[:, 1:] >= 0).all() and (t[:, 1:] <= size).all()
            assert ((t[:, 3] - t[:, 1]) >= 2).all() and ((t[:, 4] - t[:, 2]) >= 2).all()
            assert set(t[:, 0].tolist()) <= {0.0, 1.0}
            assert meta["ratio"] > 0


@pytest.mark.parametrize("mosaic", [0.0, 1.0])
def test_augmented_pixels_align_with_boxes(data, mosaic):
    _, cfg, train, _ = data
    aug = AugmentConfig(mosaic=mosaic, **NO_COLOUR)
    ds = DetectionDataset(train, 128, augment=True, aug=aug, names=cfg.names)
    n_boxes = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            img, targets, _ = ds[i]
            _assert_boxes_on_white(img, targets)
            n_boxes += len(targets)
    assert n_boxes > 20


def test_flip_only_mirrors_letterbox_and_meta_maps_back(data):
    _, cfg, train, _ = data
    aug = AugmentConfig(mosaic=0.0, hflip=1.0, scale=0.0, translate=0.0, **NO_COLOUR)
    flipped = DetectionDataset(train, 96, augment=True, aug=aug, names=cfg.names)
    plain = DetectionDataset(train, 96, augment=False, names=cfg.names)
    for i in range(len(train)):
        (a, ta, ma), (b, _, mb) = flipped[i], plain[i]
        assert ma["flipped"] and ma["ratio"] == pytest.approx(mb["ratio"])
        assert torch.equal(a, b.flip(-1))
        np.testing.assert_allclose(_boxes_back(ta, ma, 96), train[i].boxes, atol=1e-3)


def test_no_augmentation_when_disabled(data):
    _, cfg, train, _ = data
    off = DetectionDataset(
        train, 96, augment=True, aug=AugmentConfig(enabled=False), names=cfg.names
    )
    plain = DetectionDataset(train, 96, augment=False, names=cfg.names)
    for i in range(len(train)):
        assert torch.equal(off[i][0], plain[i][0]) and torch.equal(off[i][1], plain[i][1])


def test_per_item_rng_is_reproducible(data):
    _, cfg, train, _ = data
    a = DetectionDataset(train, 96, augment=True, names=cfg.names, seed=7)
    b = DetectionDataset(train, 96, augment=True, names=cfg.names, seed=7)
    c = DetectionDataset(train, 96, augment=True, names=cfg.names, seed=8)
    for i in (0, 3):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    assert not all(torch.equal(a[i][0], c[i][0]) for i in range(len(train)))
    first = [a[i][0] for i in range(len(train))]
    a.set_epoch(1)
    assert a.epoch == 1
    assert not all(torch.equal(x, a[i][0]) for i, x in enumerate(first))
    a.set_epoch(0)
    assert all(torch.equal(x, a[i][0]) for i, x in enumerate(first))


def test_cache_gives_same_items(data):
    _, cfg, train, _ = data
    for augment in (False, True):
        a = DetectionDataset(train, 96, augment=augment, names=cfg.names, cache=True)
        b = DetectionDataset(train, 96, augment=augment, names=cfg.names)
        for i in range(len(train)):
            assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])


def test_a_cache_that_would_not_fit_in_memory_is_refused_before_decoding(data, monkeypatch, caplog):
    import yoloslim.sysinfo as sysinfo
    from yoloslim.data.dataset import cache_bytes

    _, cfg, train, _ = data
    # Pillow's 4 bytes a pixel and 20 KiB an image (3 bytes undercounted up to 2x)
    need = sum(
        round(s.width * 96 / max(s.width, s.height))
        * round(s.height * 96 / max(s.width, s.height))
        * 4
        + 20 * 1024
        for s in train
    )
    assert cache_bytes(train, 96) == need
    assert cache_bytes(train + train, 96) == need  # an image listed twice is held once
    monkeypatch.setattr(sysinfo, "available_memory", lambda: need)  # all of it: too much
    with pytest.raises(DataError, match=r"cache: the decoded images need .* available"):
        DetectionDataset(train, 96, augment=False, names=cfg.names, cache=True)
    monkeypatch.setattr(sysinfo, "available_memory", lambda: int(need * 1.5))
    DetectionDataset(train, 96, augment=False, names=cfg.names, cache=True)
    assert "over half the memory available" in caplog.text
    DetectionDataset(train, 96, augment=False, names=cfg.names)  # no cache: no check


def test_collate_shapes():
    imgs = [torch.zeros(3, 32, 32, dtype=torch.uint8) for _ in range(3)]
    targets = [torch.tensor([[1.0, 1, 2, 10, 12]]), torch.zeros((0, 5)), torch.ones((2, 5))]
    metas = [{"image_id": k} for k in range(3)]
    out_imgs, out_t, out_m = collate(list(zip(imgs, targets, metas, strict=True)))
    assert out_imgs.shape == (3, 3, 32, 32) and out_imgs.dtype == torch.uint8
    assert out_t.shape == (3, 6) and out_t.dtype == torch.float32
    assert out_t[:, 0].tolist() == [0.0, 2.0, 2.0]
    assert out_t[0, 1:].tolist() == [1.0, 1, 2, 10, 12]
    assert out_m == metas
    _, empty, _ = collate([(imgs[0], torch.zeros((0, 5)), {})])
    assert empty.shape == (0, 6)


def _run_epochs(ds, workers, epochs=2):
    cfg = TrainConfig(batch=3, workers=workers, seed=5)
    out = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)  # what the trainer does before each epoch's loader
        for imgs, targets, metas in epoch_loader(ds, cfg, epoch, world=1, rank=0):
            out.append((imgs.clone(), targets.clone(), [m["image_id"] for m in metas]))
    return out


def test_training_batches_are_worker_count_independent_and_follow_the_epoch(data):
    _, cfg, train, _ = data
    ref = _run_epochs(DetectionDataset(train, 64, augment=True, names=cfg.names), workers=0)
    got = _run_epochs(DetectionDataset(train, 64, augment=True, names=cfg.names), workers=2)
    assert len(ref) == len(got) == 2 * 3
    for (ia, ta, ma), (ib, tb, mb) in zip(ref, got, strict=True):
        assert ma == mb and torch.equal(ia, ib) and torch.equal(ta, tb)
    assert ref[0][0].shape == (3, 3, 64, 64) and ref[0][1].shape[1] == 6
    # the two epochs differ in order and augmentation
    assert not torch.equal(got[0][0], got[3][0])


def test_training_order_depends_on_seed_and_epoch_only(data):
    _, cfg, train, _ = data

    def order(seed, epoch, earlier_epochs=0):
        ds = DetectionDataset(train, 64, augment=False, names=cfg.names)
        tc = TrainConfig(batch=2, workers=0, seed=seed)
        for e in range(earlier_epochs):
            ds.set_epoch(e)
            list(epoch_loader(ds, tc, e, world=1, rank=0))
        ds.set_epoch(epoch)
        loader = epoch_loader(ds, tc, epoch, world=1, rank=0)
        return [i for _, _, metas in loader for i in (m["image_id"] for m in metas)]

    assert order(1, 3) == order(1, 3, earlier_epochs=2)  # a resumed run sees the same order
    assert sorted(order(1, 3)) == list(range(len(train)))
    assert order(1, 3) != order(1, 4) and order(1, 3) != order(2, 3)


def test_build_dataloader_validates(data):
    _, cfg, train, _ = data
    ds = DetectionDataset(train, 64, augment=False, names=cfg.names)
    with pytest.raises(ConfigError, match="batch_size"):
        build_dataloader(ds, 0, workers=0)
    with pytest.raises(ConfigError, match="workers"):
        build_dataloader(ds, 2, workers=-1)
    loader = build_dataloader(ds, 4, workers=0)  # in order, the last batch short
    ids = [[m["image_id"] for m in b[2]] for b in loader]
    assert sum(ids, []) == list(range(len(train))) and all(len(b) == 4 for b in ids[:-1])


def test_coco_gt_in_original_pixels(data):
    _, cfg, train, val = data
    ds = DetectionDataset(val, 64, augment=False, names=cfg.names)
    gt = ds.coco_gt()
    assert gt["categories"] == [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]
    assert [im["id"] for im in gt["images"]] == [s.image_id for s in val]
    assert {(im["width"], im["height"]) for im in gt["images"]} == {(50, 90)}
    assert len(gt["annotations"]) == sum(len(s.boxes) for s in val)
    assert len({a["id"] for a in gt["annotations"]}) == len(gt["annotations"])
    first = gt["annotations"][0]
    x1, y1, x2, y2 = val[0].boxes[0].tolist()
    assert first["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert first["area"] == pytest.approx((x2 - x1) * (y2 - y1))
    assert first["iscrowd"] == 0 and first["category_id"] == int(val[0].classes[0])


def test_detections_on_ignore_regions_neither_count_nor_cost(tmp_path):
    # a COCO crowd / VOC difficult region: a detection on it is not a false positive, and the
    # region is not a box to find (COCOeval's crowd rule); the training targets leave it out
    from yoloslim.data.sample import Sample
    from yoloslim.eval.coco import coco_map

    Image.new("RGB", (100, 100)).save(tmp_path / "x.png")
    s = Sample(tmp_path / "x.png", [[10, 10, 40, 40]], [0], 100, 100, 7, [[50, 50, 95, 95]], [1])
    ds = DetectionDataset([s], 64, augment=False, names=["a", "b"])
    gt = ds.coco_gt()
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 1]
    found = {"image_id": 7, "category_id": 0, "bbox": [10, 10, 30, 30], "score": 0.5}
    on_crowd = {"image_id": 7, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.9}
    res = coco_map(gt, [found, on_crowd])
    assert res["map"] == pytest.approx(1.0) and res["per_class"]["b"] is None
    without = {
        **gt,
        "annotations": gt["annotations"][:1] + [{**gt["annotations"][1], "iscrowd": 0}],
    }
    assert coco_map(without, [found, on_crowd])["map"] < 1.0  # the same box as an object: missed
    _, targets, _ = ds[0]
    assert targets.shape[0] == 1  # only the object is a training target


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mosaic": 1.5}, "mosaic"),
        ({"hflip": -0.1}, "hflip"),
        ({"hsv": (0.1, 0.2)}, "hsv"),
        ({"scale": 1.0}, "scale"),
        ({"translate": 0.7}, "translate"),
        # a wrong type named its key nowhere ("'<=' not supported between float and str"),
        # or passed: a string is true, mosaic: true a probability of 1, '000' three zeros
        ({"mosaic": "0.5"}, r"mosaic='0.5' must be a number"),
        ({"scale": None}, r"scale=None must be a number"),
        ({"mosaic": True}, r"mosaic=True must be a number"),
        ({"hflip": "5e-1"}, r"hflip='5e-1' must be a number \(YAML reads 1e-3 as a string"),
        ({"translate": float("nan")}, r"translate=nan must be in \[0, 0.5\]"),
        ({"enabled": "false"}, r"enabled='false' must be true or false"),
        ({"enabled": 0}, r"enabled=0 must be true or false"),
        ({"hsv": "000"}, r"hsv='000' must be 3 numbers"),
        ({"hsv": None}, r"hsv=None must be 3 numbers"),
        ({"hsv": [0.1, True, 0.2]}, r"hsv=\[0.1, True, 0.2\] must be 3 numbers"),
        ({"hsv": [0.1, 1.5, 0.2]}, r"hsv=\(0.1, 1.5, 0.2\) must be 3 gains in \[0, 1\]"),
    ],
)
def test_augment_config_validates(kwargs, match):
    with pytest.raises(ConfigError, match=rf"AugmentConfig\.{match}"):
        AugmentConfig(**kwargs)


def test_dataset_validates(data):
    _, cfg, train, _ = data
    with pytest.raises(ConfigError, match="imgsz"):
        DetectionDataset(train, 16, augment=False, names=cfg.names)
    with pytest.raises(DataError, match="no samples"):
        DetectionDataset([], 64, augment=False, names=cfg.names)
    with pytest.raises(DataError, match="class ids"):
        DetectionDataset(train, 64, augment=False, names=["only"])
    ds = DetectionDataset(train, 64, augment=True, names=cfg.names)
    with pytest.raises(ConfigError, match="mosaic"):
        ds.set_mosaic(2.0)


def test_dataset_never_modifies_inputs(data):
    root, cfg, train, _ = data
    files = {p: hashlib.sha256(p.read_bytes()).digest() for p in root.rglob("*") if p.is_file()}
    boxes = [s.boxes.copy() for s in train]
    ds = DetectionDataset(train, 64, augment=True, names=cfg.names, cache=True)
    for i in range(len(ds)):
        ds[i]
    assert all(np.array_equal(b, s.boxes) for b, s in zip(boxes, train, strict=True))
    assert files == {p: hashlib.sha256(p.read_bytes()).digest() for p in files}


def test_image_changed_on_disk_is_a_data_error(data):
    _, cfg, train, _ = data
    ds = DetectionDataset(train, 64, augment=False, names=cfg.names)
    train[0].path.write_bytes(b"gone")
    with pytest.raises(DataError, match=train[0].path.name):
        ds[0]


def test_resize_exact_and_warp_are_exact_affine():
    from PIL import Image

    im = Image.new("RGB", (37, 23), (0, 0, 0))
    assert resize_exact(im, 2.0).size == (74, 46)
    assert resize_exact(im, 1 / 3).size == (12, 7)
    # a single white column at x in [10, 11) lands at [s*10 + t, s*11 + t)
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 10] = 255
    out = np.asarray(warp(Image.fromarray(arr), Affine(2.0, 2.0, 5.0, -3.0), 64))
    cols = np.nonzero(out[10, :, 0] > 128)[0]
    assert cols.min() >= 25 and cols.max() <= 26
    assert (out[:, :4] == PAD_VALUE).all()  # left of the source: grey


def test_hsv_matrix_identity_and_grey_axis():
    np.testing.assert_allclose(hsv_matrix(0.0, 1.0, 1.0), np.eye(3), atol=1e-9)
    grey = np.array([100.0, 100.0, 100.0])
    np.testing.assert_allclose(hsv_matrix(0.3, 0.2, 1.0) @ grey, grey, atol=1e-6)
    np.testing.assert_allclose(hsv_matrix(0.0, 1.0, 1.5) @ grey, 1.5 * grey, atol=1e-6)


def test_worker_errors_are_one_line(data):
    # torch re-raises a worker's error with the worker's traceback in the message; the CLI
    # prints errors as one line, so the loader keeps only the original message
    _, cfg, train, _ = data
    ds = DetectionDataset(train, 64, augment=False, names=cfg.names)
    train[0].path.write_bytes(b"changed after it was checked")
    loader = build_dataloader(ds, 2, workers=1)
    with pytest.raises(DataError) as err:
        list(loader)
    assert str(err.value).startswith(f"{train[0].path}: cannot load image: ")
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert "Caught DataError" in str(err.value.__cause__)  # the worker's text stays the cause


def test_exif_rotated_and_16_bit_images_are_read_as_displayed(tmp_path):
    from PIL import Image

    from yoloslim.data.sample import Sample, probe_images

    stored = np.zeros((40, 80, 3), np.uint8)  # 80 wide, 40 high as stored
    stored[:, :20] = 255  # a white band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: 40 wide, 80 high, band at the top
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
    deep = (np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 30) + 4000
    Image.fromarray(deep).save(tmp_path / "d.png")  # mode I;16
    sizes = probe_images([tmp_path / "r.jpg", tmp_path / "d.png"], tmp_path)
    assert sizes[tmp_path / "r.jpg"] == (40, 80)
    none, no_cls = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    rot = Sample(tmp_path / "r.jpg", none, no_cls, 40, 80, "r")
    deep_s = Sample(tmp_path / "d.png", none, no_cls, 64, 32, "d")
    ds = DetectionDataset([rot, deep_s], 80, augment=False, names=NAMES)
    upright = np.asarray(ds.load_image(0)[0])
    assert upright.shape == (80, 40, 3) and upright[:15].mean() > 200 > upright[30:].mean()
    grey = np.asarray(ds.load_image(1)[0])
    assert 0 < grey.mean() < 250  # scaled to 8 bits, not clipped to white


def test_orientation_outside_the_exif_block_is_probed_as_the_loader_turns_it(tmp_path):
    """XMP's tiff:Orientation (Adobe tools) and a PNG's ImageMagick "Raw profile type exif"
    text turn the image in the loader; the probe must record the same size, or training stops
    with a size mismatch. A TIFF opens turned already: its size is the displayed one."""
    from PIL import Image, PngImagePlugin

    from yoloslim.data.sample import Sample, probe_images

    stored = Image.fromarray(np.zeros((40, 80, 3), np.uint8))  # 80 wide, 40 high as stored
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    stored.save(tmp_path / "x.jpg", xmp=xmp.encode())
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = (b"Exif\x00\x00" + exif.tobytes()).hex()
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(raw) // 2:8d}\n{raw}\n", zip=True)
    stored.save(tmp_path / "p.png", pnginfo=info)
    stored.save(tmp_path / "t.tif", exif=exif.tobytes())
    paths = [tmp_path / n for n in ("x.jpg", "p.png", "t.tif")]
    sizes = probe_images(paths, tmp_path)
    none, no_cls = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    samples = [Sample(p, none, no_cls, *sizes[p], p.stem) for p in paths]
    ds = DetectionDataset(samples, 80, augment=False, names=NAMES)
    for i, p in enumerate(paths):
        h, w = np.asarray(ds.load_image(i)[0]).shape[:2]
        assert sizes[p] == (40, 80) and (w, h) == (40, 80), p.name


def test_available_memory_is_capped_by_the_cgroup_limit(tmp_path, monkeypatch):
    import yoloslim.sysinfo as sysinfo

    root = tmp_path / "cgroup"
    job = root / "slurm" / "job_7"  # the process's own cgroup, deep in the tree (v2)
    job.mkdir(parents=True)
    (tmp_path / "meminfo").write_text("MemTotal: 8000000 kB\nMemAvailable: 4000000 kB\n")
    (tmp_path / "self").write_text("\nodd line\n0::/slurm/job_7\n")  # odd lines skipped
    (job / "memory.max").write_text(f"{2**30}\n")  # 1 GiB for the job
    (job / "memory.current").write_text(f"{768 * 2**20}\n")  # 768 MiB in use ...
    (job / "memory.stat").write_text(f"anon 1\ninactive_file {512 * 2**20}\n")  # ... 512 cache
    monkeypatch.setattr(sysinfo, "_CGROUP", root)
    monkeypatch.setattr(sysinfo, "_SELF_CGROUP", tmp_path / "self")
    monkeypatch.setattr(sysinfo, "_MEMINFO", tmp_path / "meminfo")
    assert sysinfo.available_memory() == 768 * 2**20  # 1 GiB - (768 - 512) MiB
    (root / "slurm" / "memory.max").write_text(f"{512 * 2**20}\n")  # a tighter parent
    (root / "slurm" / "memory.current").write_text(f"{256 * 2**20}\n")
    assert sysinfo.available_memory() == 256 * 2**20
    for f in (job / "memory.max", root / "slurm" / "memory.max"):
        f.write_text("max\n")
    assert sysinfo.available_memory() == 4000000 * 1024  # no limit: the machine's


def test_augment_config_takes_numpy_numbers_as_plain_ones():
    """A sweep's numpy values worked before the type checks, and still do."""
    import numpy as np

    from yoloslim.data.dataset import AugmentConfig

    cfg = AugmentConfig(hsv=np.array([0.01, 0.5, 0.3]), mosaic=np.float32(0.5), enabled=np.bool_(0))
    assert (cfg.hsv, cfg.mosaic, cfg.enabled) == ((0.01, 0.5, 0.3), 0.5, False)
    assert type(cfg.mosaic) is float and type(cfg.enabled) is bool
