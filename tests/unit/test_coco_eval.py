import pytest
import torch

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
    assert set(res["per_class"]) == {"a", "b"}
    assert res["per_class"]["a"] == pytest.approx(1.0)


def test_no_detections_give_zero():
    res = coco_map(GT, [])
    assert res["map"] == 0.0 and res["per_class"] == {"a": 0.0, "b": 0.0}


def test_shifted_boxes_in_between():
    res = coco_map(GT, _dets(shift=5.0))
    assert 0.0 < res["map"] < 1.0
    assert res["map50"] == pytest.approx(1.0)


class _FakeDataset:
    """Two letterboxed images whose gt boxes the fake model 'predicts' exactly."""

    names = ["a", "b"]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        ann = GT["annotations"][i]
        x, y, w, h = ann["bbox"]
        ratio, pad = 0.64, (0.0, 0.0)  # 100 px -> 64 px
        box = torch.tensor([x, y, x + w, y + h]) * ratio
        targets = torch.cat([torch.tensor([float(ann["category_id"])]), box])[None]
        meta = {
            "image_id": ann["image_id"],
            "orig_shape": (100, 100),
            "ratio": ratio,
            "pad": pad,
            "path": f"{i}.jpg",
        }
        img = torch.zeros(3, 64, 64, dtype=torch.uint8)
        img[0, 0, 0] = i  # lets the fake model know which image it sees
        return img, targets, meta

    def coco_gt(self):
        return GT


def test_evaluate_with_oracle_model():
    ds = _FakeDataset()

    def infer(x):
        out = torch.zeros(len(x), 5, 4 + 2)
        for j, img in enumerate(x):
            i = round(img[0, 0, 0].item() * 255)
            _, t, _ = ds[i]
            out[j, 0, :4] = t[0, 1:]
            out[j, 0, 4 + int(t[0, 0])] = 0.95
        return out

    res = evaluate(infer, ds, batch_size=2)
    assert res["map"] == pytest.approx(1.0, abs=1e-6)
    assert res["speed_ms_per_image"] >= 0
