import copy

import numpy as np
import pytest
import torch

from yoloslim.data import DetectionDataset, load_data_config, load_samples
from yoloslim.data.testing import fake_images, write_yolo
from yoloslim.errors import DataError
from yoloslim.eval.coco import coco_map
from yoloslim.eval.evaluator import evaluate

GT = {
    "images": [
        {"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"},
        {"id": 2, "width": 100, "height": 100, "file_name": "b.jpg"},
    ],
    "annotations": [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 0,
            "bbox": [10, 10, 30, 30],
            "area": 900,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 2,
            "category_id": 1,
            "bbox": [50, 40, 20, 40],
            "area": 800,
            "iscrowd": 0,
        },
    ],
    "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
}


def _dets(shift=0.0):
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "score": 0.9,
            "bbox": [a["bbox"][0] + shift, a["bbox"][1], a["bbox"][2], a["bbox"][3]],
        }
        for a in GT["annotations"]
    ]


def test_perfect_detections_give_one():
    res = coco_map(GT, _dets())
    assert res["map"] == pytest.approx(1.0) and res["map50"] == pytest.approx(1.0)
    assert res["map75"] == pytest.approx(1.0)
    assert res["per_class"] == pytest.approx({"a": 1.0, "b": 1.0})
    assert res["images"] == 2 and res["detections"] == 2
    assert all(type(res[k]) is float for k in ("map", "map50", "map75"))


def test_map_by_size_splits_at_coco_areas():
    gt = copy.deepcopy(GT)  # both boxes are small (900 and 800 px^2)
    gt["annotations"].append(
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 0}
    )
    dets = _dets()  # the two small boxes found, the 100x100 (large) one missed
    res = coco_map(gt, dets)
    assert res["map_by_size"] == {"small": pytest.approx(1.0), "medium": None, "large": 0.0}
    found = coco_map(
        gt, dets + [{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [0, 0, 100, 100]}]
    )
    assert found["map_by_size"]["large"] == pytest.approx(1.0)
    # no detections: a size with ground truth is 0, one without is undefined
    assert coco_map(gt, [])["map_by_size"] == {"small": 0.0, "medium": None, "large": 0.0}
    # a crowd region is no box to find: a size with only crowds stays undefined either way
    crowd = {"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 1}
    gt["annotations"].append(crowd)
    assert coco_map(gt, [])["map_by_size"]["medium"] is None
    assert coco_map(gt, dets)["map_by_size"]["medium"] is None


def test_no_detections_give_zero():
    res = coco_map(GT, [])
    assert res["map"] == 0.0 and res["map50"] == 0.0
    assert res["per_class"] == {"a": 0.0, "b": 0.0}
    assert res["detections"] == 0


def test_shifted_boxes_in_between():
    # Each image holds one gt box and one detection (score 0.9), so a class's AP at an IoU
    # threshold t is 1 when the pair's IoU >= t and 0 otherwise; AP50-95 is the share of the
    # ten thresholds 0.50, 0.55, ..., 0.95 that the IoU reaches.
    # Shifted 4 px along x:
    #   a (30x30): overlap 26*30 = 780, union 900 + 900 - 780 = 1020, IoU 0.765
    #              -> reaches 0.50..0.75 (6 of 10): AP 0.6, AP50 1, AP75 1
    #   b (20x40): overlap 16*40 = 640, union 800 + 800 - 640 = 960, IoU 0.667
    #              -> reaches 0.50..0.65 (4 of 10): AP 0.4, AP50 1, AP75 0
    # mAP = (0.6 + 0.4) / 2 = 0.5, mAP50 = 1.0, mAP75 = (1 + 0) / 2 = 0.5: three different
    # values, so swapping or mixing the thresholds shows. (shift=5 would put b's IoU at
    # exactly 0.6, on a threshold.)
    res = coco_map(GT, _dets(shift=4.0))
    assert res["map"] == pytest.approx(0.5)
    assert res["map50"] == pytest.approx(1.0)
    assert res["map75"] == pytest.approx(0.5)
    assert res["per_class"] == pytest.approx({"a": 0.6, "b": 0.4})
    assert res["map"] == pytest.approx(np.mean(list(res["per_class"].values())))


def test_wrong_class_scores_zero_for_that_class():
    dets = _dets()
    dets[1]["category_id"] = 0  # image 2's box labelled "a": a false positive, "b" missed
    res = coco_map(GT, dets)
    assert res["per_class"]["b"] == 0.0
    assert 0.0 < res["per_class"]["a"] <= 1.0
    assert res["map"] == pytest.approx(np.mean(list(res["per_class"].values())))


def test_per_class_keys_follow_names_and_inputs_are_not_mutated():
    gt, dets = copy.deepcopy(GT), _dets()
    for a in gt["annotations"]:
        del a["id"], a["area"], a["iscrowd"]  # optional fields get defaults
    before = (copy.deepcopy(gt), copy.deepcopy(dets))
    res = coco_map(gt, dets, names=["cat", "dog"])
    assert list(res["per_class"]) == ["cat", "dog"]
    assert res["map"] == pytest.approx(1.0)
    assert (gt, dets) == before


def test_accepts_numpy_scalars():
    dets = [
        {**d, "image_id": np.int64(d["image_id"]), "score": np.float32(d["score"])} for d in _dets()
    ]
    dets[0]["bbox"] = np.array(dets[0]["bbox"], np.float32)
    assert coco_map(GT, dets)["map"] == pytest.approx(1.0)


def test_class_without_ground_truth_reports_none():
    gt = {**GT, "categories": [*GT["categories"], {"id": 2, "name": "c"}]}
    res = coco_map(gt, _dets())
    assert res["per_class"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0), "c": None}
    assert res["map"] == pytest.approx(1.0)  # COCO averages over classes with gt only
    # without detections too: a class with gt scores 0, one without stays undefined
    assert coco_map(gt, [])["per_class"] == {"a": 0.0, "b": 0.0, "c": None}


def test_no_ground_truth_gives_none_and_warns(caplog):
    gt = {**GT, "annotations": []}
    with caplog.at_level("WARNING", logger="yoloslim.eval.coco"):
        res = coco_map(gt, _dets())
    assert res["map"] is None and res["map50"] is None and res["map75"] is None
    assert res["per_class"] == {"a": None, "b": None}
    assert "mAP is undefined" in caplog.text


@pytest.mark.parametrize(
    ("dets", "match"),
    [
        ([{"image_id": 99, "category_id": 0, "bbox": [1, 1, 5, 5], "score": 0.5}], "image_id=99"),
        ([{"image_id": 1, "category_id": 0, "bbox": [1, 1, 5, 5]}], r"detections\[0\]"),
        ([{"image_id": 1, "category_id": 0, "bbox": [1, 1], "score": 0.5}], r"detections\[0\]"),
        (
            [{"image_id": 1, "category_id": 0, "bbox": [1, 1, 5, 5], "score": float("nan")}],
            "non-finite",
        ),
        # a fractional id was truncated to class 0
        (
            [{"image_id": 1, "category_id": 0.7, "bbox": [1, 1, 5, 5], "score": 0.5}],
            "0.7 is not an integer id",
        ),
    ],
)
def test_bad_detections_raise(dets, match):
    with pytest.raises(DataError, match=match):
        coco_map(GT, dets)


@pytest.mark.parametrize("ids", [[7, 7], [0, 1]])
def test_annotation_ids_are_renumbered(ids):
    # a repeated id (0.505) or an id 0 (0.5) made the library drop or merge a box
    gt = copy.deepcopy(GT)
    for a, i in zip(gt["annotations"], ids, strict=True):
        a["id"] = i
    res = coco_map(gt, _dets())
    assert res["map"] == pytest.approx(1.0)
    assert res["per_class"] == pytest.approx({"a": 1.0, "b": 1.0})
    assert gt["annotations"][0]["id"] == ids[0]  # the caller's dict is left as it was


@pytest.mark.parametrize(("key", "value"), [("category_id", 9), ("image_id", 5)])
def test_a_box_of_an_unlisted_category_or_image_counts_for_nothing(key, value):
    # COCOeval evaluates only the listed categories x images: with that box the only one,
    # mAP is undefined with or without a detection (no detection used to give 0.0)
    gt = {**GT, "annotations": [{**GT["annotations"][0], key: value}]}
    for dets in ([], _dets()[:1]):
        res = coco_map(gt, dets)
        assert res["map"] is None, dets
        assert res["per_class"] == {"a": None, "b": None}
        assert set(res["map_by_size"].values()) == {None}


def test_names_must_match_categories():
    with pytest.raises(DataError, match="names has 3 entries"):
        coco_map(GT, _dets(), names=["a", "b", "c"])


class _FakeDataset:
    """Two letterboxed images whose gt boxes the fake model 'predicts' exactly."""

    names = ["a", "b"]

    def __init__(self, flip: bool = False):
        self.flip = flip

    def __len__(self):
        return 2

    def __getitem__(self, i):
        ann = GT["annotations"][i]
        x, y, w, h = ann["bbox"]
        ratio, pad = 0.64, (0.0, 0.0)  # 100 px -> 64 px
        box = torch.tensor([x, y, x + w, y + h]) * ratio
        if self.flip:
            box = torch.stack([64 - box[2], box[1], 64 - box[0], box[3]])
        targets = torch.cat([torch.tensor([float(ann["category_id"])]), box])[None]
        meta = {
            "image_id": ann["image_id"],
            "orig_shape": (100, 100),
            "ratio": ratio,
            "pad": pad,
            "path": f"{i}.jpg",
            "flipped": self.flip,
        }
        img = torch.zeros(3, 64, 64, dtype=torch.uint8)
        img[0, 0, 0] = i  # lets the fake model know which image it sees
        return img, targets, meta

    def coco_gt(self):
        return GT


def _oracle(ds, as_numpy=False):
    def infer(x):
        assert x.dtype == torch.float32 and float(x.max()) <= 1.0
        out = torch.zeros(len(x), 5, 4 + 2)
        for j, img in enumerate(x):
            i = round(img[0, 0, 0].item() * 255)
            _, t, _ = ds[i]
            out[j, 0, :4] = t[0, 1:]
            out[j, 0, 4 + int(t[0, 0])] = 0.95
        return out.numpy() if as_numpy else out

    return infer


@pytest.mark.parametrize("flip", [False, True])
def test_evaluate_with_oracle_model(flip):
    ds = _FakeDataset(flip=flip)
    res = evaluate(_oracle(ds), ds, batch_size=2)
    assert res["map"] == pytest.approx(1.0, abs=1e-6)
    assert res["speed_ms_per_image"] >= 0
    assert res["images"] == 2 and res["detections"] == 2


def test_evaluate_numpy_output_batch_one_and_progress():
    ds = _FakeDataset()
    res = evaluate(_oracle(ds, as_numpy=True), ds, batch_size=1, progress=True)
    assert res["map"] == pytest.approx(1.0, abs=1e-6)


def test_evaluate_on_a_real_letterboxed_dataset(tmp_path):
    """Oracle predictions through the real letterbox, scale_boxes and coco_gt."""
    imgs = fake_images(5, width=80, height=48, nc=2, seed=3)
    cfg = load_data_config(write_yolo(tmp_path, {"train": imgs[:1], "val": imgs}, ["a", "b"]))
    ds = DetectionDataset(load_samples(cfg, "val"), 64, augment=False, names=cfg.names)
    # each image's targets, found by its pixels: evaluate() may call infer again on a batch
    targets = {ds[i][0].numpy().tobytes(): ds[i][1] for i in range(len(ds))}

    def infer(x):
        out = torch.zeros(len(x), 8, 4 + 2)
        for j in range(len(x)):
            t = targets[(x[j] * 255).round().to(torch.uint8).numpy().tobytes()]
            out[j, : len(t), :4] = t[:, 1:]
            out[j, torch.arange(len(t)), 4 + t[:, 0].long()] = 0.9
        return out

    res = evaluate(infer, ds, batch_size=2)
    assert res["map"] == pytest.approx(1.0, abs=1e-6)
    assert res["images"] == 5 and res["detections"] == sum(len(i.boxes) for i in imgs)


def test_boxes_wholly_in_the_letterbox_padding_are_no_detections(tmp_path):
    # as predict drops them: val scored them as false positives, the highest here, and they
    # took places among max_det (audit48 eval F1)
    imgs = fake_images(4, width=80, height=48, nc=2, seed=3)  # 64 px: 13 px bands top, bottom
    cfg = load_data_config(write_yolo(tmp_path, {"train": imgs[:1], "val": imgs}, ["a", "b"]))
    ds = DetectionDataset(load_samples(cfg, "val"), 64, augment=False, names=cfg.names)
    items = [ds[i] for i in range(len(ds))]
    targets = {img.numpy().tobytes(): t for img, t, _ in items}
    most = max(len(t) for _, t, _ in items)

    def infer(x):
        out = torch.zeros(len(x), most + 2, 4 + 2)
        for j in range(len(x)):
            t = targets[(x[j] * 255).round().to(torch.uint8).numpy().tobytes()]
            out[j, : len(t), :4] = t[:, 1:]
            out[j, torch.arange(len(t)), 4 + t[:, 0].long()] = 0.9
            out[j, -2, :4] = torch.tensor([10.0, 0.0, 40.0, 12.0])  # in the top band
            out[j, -1, :4] = torch.tensor([20.0, 52.0, 50.0, 64.0])  # in the bottom band
            out[j, -2:, 4] = 0.99
        return out

    res = evaluate(infer, ds, batch_size=2, max_det=most)
    assert res["map"] == pytest.approx(1.0, abs=1e-6)
    assert res["detections"] == sum(len(i.boxes) for i in imgs)


def test_nms_runs_on_the_boxes_clipped_to_the_image():
    # as predict: a second box past the image's edge that clips onto the first was kept
    # beside it (IoU 0.625 unclipped), a false positive (audit49 cli F1)
    ds = _FakeDataset()
    oracle = _oracle(ds)

    def infer(x):
        out = oracle(x)
        out[:, 1, :4] = torch.tensor([-30.0, 10, 20, 40])
        out[:, 2, :4] = torch.tensor([-60.0, 10, 20, 40])
        out[:, 1:3, 5] = torch.tensor([0.9, 0.8])
        return out

    res = evaluate(infer, ds, batch_size=2)
    assert res["detections"] == 2 + 2  # each image's oracle box and one clipped box


def test_speed_leaves_out_each_batch_shapes_first_call(monkeypatch):
    # a runtime's first call at a shape sets up its kernels: 300 ms here, 2 ms after (on a
    # clock of the test's own, which only infer advances)
    import yoloslim.eval.evaluator as evaluator_mod

    ds, calls, clock = _FakeDataset(), [], [0.0]
    oracle = _oracle(ds)
    monkeypatch.setattr(evaluator_mod.time, "perf_counter", lambda: clock[0])

    def infer(x):
        calls.append(tuple(x.shape))
        clock[0] += 0.3 if calls.count(tuple(x.shape)) == 1 else 0.002
        return oracle(x)

    res = evaluate(infer, ds, batch_size=1)
    assert calls == [(1, 3, 64, 64)] * 3  # one untimed call, then one a batch
    assert res["map"] == pytest.approx(1.0, abs=1e-6)
    assert res["speed_ms_per_image"] == pytest.approx(2.0)


@pytest.fixture
def one_class_val(tmp_path):
    """A 2-class data.yaml whose val split only has class "a" boxes."""
    imgs = fake_images(3, width=64, height=48, nc=1, seed=4)
    return write_yolo(tmp_path, {"train": imgs[:1], "val": imgs}, ["a", "b"])


def test_validate_uses_the_size_a_module_was_trained_at(one_class_val, caplog):
    from yoloslim.eval.val import validate
    from yoloslim.models import build_model

    model = build_model("damo-nano", names=["a", "b"])
    model.imgsz = 64
    res = validate(model, one_class_val)
    assert res["imgsz"] == 64
    assert res["per_class"]["b"] is None  # no "b" box in the val split
    model.imgsz = None
    with caplog.at_level("WARNING", logger="yoloslim.eval.val"):
        assert validate(model, one_class_val, imgsz=32)["imgsz"] == 32  # explicit: no note
        assert not caplog.text
        assert validate(model, one_class_val)["imgsz"] == 320
    assert "evaluating at imgsz=320" in caplog.text


def test_validate_checks_imgsz_and_warns_on_other_class_names(one_class_val, caplog):
    from yoloslim.errors import ConfigError
    from yoloslim.eval.val import validate
    from yoloslim.models import build_model

    model = build_model("damo-nano", names=["dog", "cat"])
    with pytest.raises(ConfigError, match="imgsz=100 must be a multiple of 32"):
        validate(model, one_class_val, imgsz=100)
    with pytest.raises(ConfigError, match=r"iou=0 must be in \(0, 1\]"):
        validate(model, "no/such/data.yaml", iou=0)  # before the data is read
    with pytest.raises(ConfigError, match=r"conf=1.5 must be in \[0, 1\]"):
        validate(model, one_class_val, conf=1.5)
    with caplog.at_level("WARNING", logger="yoloslim.eval.val"):
        validate(model, one_class_val, imgsz=64)
    assert "['dog', 'cat']" in caplog.text and "['a', 'b']" in caplog.text


class _OracleModule(torch.nn.Module):
    """Predicts the ground truth of the val image it is shown (found by its pixels), computed
    in the dtype of its one parameter; ``rounding`` rounds the boxes through that dtype."""

    def __init__(self, data, rounding=None):
        super().__init__()
        cfg = load_data_config(data)
        ds = DetectionDataset(load_samples(cfg, "val"), 64, augment=False, names=cfg.names)
        self.images = torch.stack([ds[i][0] for i in range(len(ds))]).float() / 255
        self.targets = [ds[i][1] for i in range(len(ds))]
        self.names, self.nc, self.rounding = list(cfg.names), len(cfg.names), rounding
        self.one = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        assert x.dtype == self.one.dtype  # validate feeds the module's own dtype
        out = torch.zeros(len(x), 8, 4 + self.nc, dtype=x.dtype)
        for j, img in enumerate(x):
            i = int((self.images - img.float()).abs().flatten(1).mean(1).argmin())
            t = self.targets[i].to(x.dtype)
            boxes = t[:, 1:] if self.rounding is None else t[:, 1:].to(self.rounding).to(x.dtype)
            out[j, : len(t), :4] = boxes * self.one
            out[j, torch.arange(len(t)), 4 + t[:, 0].long()] = 0.9
        return out


@pytest.mark.parametrize(("dtype", "name"), [(torch.bfloat16, "bf16"), (torch.float64, "fp64")])
def test_validate_feeds_a_module_images_in_its_own_dtype(one_class_val, dtype, name):
    # the images went in as float32 whatever the module's dtype: a raw torch type error
    from yoloslim.eval.val import validate
    from yoloslim.models import build_model

    torch.manual_seed(0)
    model = build_model("damo-nano", names=["a", "b"]).to(dtype)
    res = validate(model, one_class_val, imgsz=64)
    assert res["precision"] == name
    assert res["detections"] > 0 and res["map"] is not None
    assert next(model.parameters()).dtype == dtype
    # the same predictions give the same mAP in any dtype: an oracle module scores 1.0 in
    # fp32 and fp64 alike; in bf16 its boxes are rounded to bf16's 8-bit mantissa, and the
    # mAP is that of the fp32 oracle given those rounded boxes (what a dtype changes)
    fp32 = validate(_OracleModule(one_class_val), one_class_val, imgsz=64)
    assert fp32["map"] == pytest.approx(1.0)
    res = validate(_OracleModule(one_class_val).to(dtype), one_class_val, imgsz=64)
    want = fp32 if dtype == torch.float64 else None
    if want is None:
        rounded = _OracleModule(one_class_val, rounding=torch.bfloat16)
        want = validate(rounded, one_class_val, imgsz=64)
    assert res["precision"] == name and res["detections"] == want["detections"]
    assert res["map"] == pytest.approx(want["map"], abs=1e-9)
    assert res["per_class"] == pytest.approx(want["per_class"], abs=1e-9)


def test_quantize_and_bench_refuse_a_val_split_without_boxes(tmp_path):
    import yoloslim as ys
    from yoloslim.bench.measure import benchmark
    from yoloslim.errors import DataError

    data = ys.synthesize(tmp_path / "s", images=6, imgsz=64, classes=2, seed=0)
    for f in (tmp_path / "s" / "labels" / "val").iterdir():
        f.write_text("")
    with pytest.raises(DataError, match="val split has no labelled box"):
        ys.quantize(tmp_path / "none.onnx", data, out=tmp_path / "q")
    with pytest.raises(DataError, match="val split has no labelled box"):
        benchmark([tmp_path / "none.onnx"], data)
    # compress, before the stages ahead of its quantize ran for nothing (it pruned and
    # fine-tuned first)
    from yoloslim.models import build_model
    from yoloslim.models.checkpoint import save_checkpoint
    from yoloslim.pipeline import run_recipe

    ckpt = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - prune: {ratio: 0.3}\n  - quantize: {}\n")
    with pytest.raises(DataError, match="val split has no labelled box"):
        run_recipe(ckpt, data, recipe, out=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_only_detections_coco_can_score_are_kept_and_the_map_is_the_same():
    """Of each image and class COCOeval scores the best MAX_DETS; evaluate() keeps only
    those (ties at the last score all stay), and the mAP is exactly the untrimmed one's."""
    from yoloslim.eval.coco import MAX_DETS
    from yoloslim.eval.evaluator import _to_coco, scored_only

    g = torch.Generator().manual_seed(0)
    gt = {
        "images": [{"id": i, "width": 100, "height": 100} for i in range(3)],
        "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
        "annotations": [
            {"id": k, "image_id": k % 3, "category_id": k % 2, "bbox": [5.0 * k, 10, 20, 30]}
            for k in range(12)
        ],
    }
    full, kept = [], []
    for i in range(3):
        n = 260
        xy = torch.rand(n, 2, generator=g) * 70
        wh = 5 + torch.rand(n, 2, generator=g) * 25
        scores = torch.rand(n, generator=g).mul(20).round() / 20  # many ties, as INT8 gives
        classes = (torch.rand(n, generator=g) < 0.8).float()  # class 1: about 208, 0: 52
        det = torch.cat([xy, xy + wh, scores[:, None], classes[:, None]], 1)
        det = det[det[:, 4].argsort(descending=True, stable=True)]  # as postprocess orders
        trimmed = scored_only(det)
        for c in (0.0, 1.0):
            n_c, k_c = (det[:, 5] == c).sum(), (trimmed[:, 5] == c).sum()
            assert k_c == n_c if n_c <= MAX_DETS else MAX_DETS <= k_c < n_c
        full += _to_coco(det, {"image_id": i})
        kept += _to_coco(trimmed, {"image_id": i})
    assert len(kept) < len(full)
    a, b = coco_map(gt, full), coco_map(gt, kept)
    assert a.pop("detections") == len(full) and b.pop("detections") == len(kept)
    assert a == b and a["map"] > 0
    few = torch.tensor([[0.0, 0, 10, 10, 0.9, 0]])
    assert scored_only(few) is few  # nothing to trim: the same tensor


def test_a_model_of_the_datas_classes_in_another_order_is_scored_by_name(tmp_path, caplog):
    # val paired classes by index: the data's names in another order gave mAP 10.5 for 16.5
    from yoloslim.eval.val import validate

    imgs = fake_images(3, width=64, height=48, nc=2, seed=4)
    data = write_yolo(tmp_path, {"train": imgs[:1], "val": imgs}, ["a", "b"])
    oracle = _OracleModule(data)
    assert validate(oracle, data, imgsz=64)["map"] == pytest.approx(1.0)

    class Swapped(torch.nn.Module):  # its channel 0 is "b": names and scores in its order
        def __init__(self):
            super().__init__()
            self.inner, self.names, self.nc = oracle, ["b", "a"], 2
            self.one = oracle.one

        def forward(self, x):
            out = self.inner(x)
            return torch.cat([out[..., :4], out[..., 4:].flip(-1)], -1)

    with caplog.at_level("WARNING", logger="yoloslim"):
        res = validate(Swapped(), data, imgsz=64)
    assert res["map"] == pytest.approx(1.0)
    assert "the same classes in another order, matched by name" in caplog.text


def test_val_says_when_max_det_or_a_high_conf_lowers_the_map(tmp_path, caplog):
    from yoloslim.eval.val import validate

    imgs = fake_images(3, width=64, height=48, nc=2, seed=4)
    data = write_yolo(tmp_path, {"train": imgs[:1], "val": imgs}, ["a", "b"])
    most = max(len(i.boxes) for i in imgs)
    assert most > 1
    with caplog.at_level("WARNING", logger="yoloslim"):
        res = validate(_OracleModule(data), data, imgsz=64, max_det=1, conf=0.05)
    assert res["capped_images"] >= 1 and res["max_det"] == 1 and res["conf"] == 0.05
    assert res["capped_dense_images"] == res["capped_images"]  # each holds >= max_det/3 boxes
    said = " ".join(caplog.text.split())
    assert "holding many objects (a third of max_det=1 or more) gave max_det detections" in said
    assert "conf=0.05: mAP counts only the detections above it" in said
    assert validate(_OracleModule(data), data, imgsz=64)["capped_images"] == 0


def test_crowd_regions_do_not_make_an_image_dense():
    # audit50 eval F1: 1 box and 3 crowd regions at max_det 9 was a "dense" image
    from yoloslim.eval import evaluate

    class One:
        names = ["a"]

        def __len__(self):
            return 1

        def __getitem__(self, i):
            meta = {"image_id": 0, "orig_shape": (64, 64), "ratio": 1.0, "pad": (0, 0)}
            return torch.zeros(3, 64, 64, dtype=torch.uint8), torch.zeros(0, 5), meta

        def coco_gt(self):
            box = {"image_id": 0, "category_id": 0, "bbox": [30.0, 30.0, 30.0, 30.0]}
            anns = [{**box, "id": 1, "bbox": [1.0, 1.0, 10.0, 10.0], "area": 100.0, "iscrowd": 0}]
            anns += [{**box, "id": k, "area": 900.0, "iscrowd": 1} for k in (2, 3, 4)]
            img = {"id": 0, "width": 64, "height": 64}
            return {"images": [img], "annotations": anns, "categories": [{"id": 0, "name": "a"}]}

    xs = torch.arange(10.0) * 6
    boxes = torch.stack([xs.repeat(10), xs.repeat_interleave(10)], 1)
    pred = torch.cat([boxes, boxes + 4, torch.linspace(0.9, 0.1, 100)[:, None]], 1)[None]
    res = evaluate(lambda x: pred.expand(len(x), -1, -1), One(), max_det=9)
    assert res["capped_images"] == 1 and res["capped_dense_images"] == 0
    res = evaluate(lambda x: pred.expand(len(x), -1, -1), One(), max_det=3)  # 1 box: dense
    assert res["capped_dense_images"] == 1


def test_a_sparse_image_hitting_max_det_is_not_warned_about(one_class_val, caplog):
    # at conf 0.001 nearly every image gives max_det boxes: warning of each was noise
    from yoloslim.eval.val import validate

    class Many(torch.nn.Module):  # 30 boxes apart on every image, a few objects in each
        def __init__(self):
            super().__init__()
            self.names, self.nc, self.one = ["a", "b"], 2, torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            out = torch.zeros(len(x), 30, 6)
            for k in range(30):
                # in the image (y 8..56 at 64 px), not its letterbox's padding
                out[:, k, :4] = torch.tensor([2.0 * k, 20.0, 2.0 * k + 5, 25.0])
                out[:, k, 4] = 0.5
            return out * self.one

    most = max(len(s.boxes) for s in load_samples(load_data_config(one_class_val), "val"))
    assert most * 3 < 30  # no image holds a third of max_det
    with caplog.at_level("WARNING", logger="yoloslim"):
        res = validate(Many(), one_class_val, imgsz=64, max_det=30)
    assert res["capped_images"] == res["images"] and res["capped_dense_images"] == 0
    assert "gave max_det detections" not in caplog.text
