import threading

import numpy as np
import pytest
import torch
from PIL import Image

import yoloslim as ys
from yoloslim.errors import DataError, ModelError
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
