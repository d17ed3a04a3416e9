import pytest
import torch

from yoloslim.torch_state import torch_threads


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_sets_then_restores(threads):
    other = 1 if threads != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == threads


def test_none_keeps_the_count_and_restores_a_change_inside(threads):
    other = 1 if threads != 1 else 2
    with torch_threads(None):
        assert torch.get_num_threads() == threads
        torch.set_num_threads(other)
    assert torch.get_num_threads() == threads


def test_restores_after_an_error(threads):
    other = 1 if threads != 1 else 2
    with pytest.raises(RuntimeError, match="boom"), torch_threads(other):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == threads


def test_as_a_decorator_each_call(threads):
    other = 1 if threads != 1 else 2

    @torch_threads(None)
    def sets(n):
        torch.set_num_threads(n)
        return torch.get_num_threads()

    assert sets(other) == other
    assert torch.get_num_threads() == threads
    assert sets(other) == other  # a second call works too (a fresh context each call)
    assert torch.get_num_threads() == threads
    assert sets.__name__ == "sets"


def test_float32_default_sets_then_restores_and_decorates():
    from yoloslim.torch_state import float32_default

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with float32_default():
            assert torch.get_default_dtype() is torch.float32

        @float32_default()
        def made():
            return torch.zeros(1).dtype

        assert made() is torch.float32
        assert torch.get_default_dtype() is torch.float64
    finally:
        torch.set_default_dtype(before)


def test_keeps_caller_state_runs_at_float32_and_gives_back_dtype_and_rng_even_on_error():
    import random

    import numpy as np

    from yoloslim.torch_state import keeps_caller_state

    @keeps_caller_state
    def draws(fail=False):
        random.random(), np.random.rand(), torch.rand(1)
        if fail:
            raise RuntimeError("boom")
        return torch.zeros(1).dtype

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
        assert draws() is torch.float32
        with pytest.raises(RuntimeError, match="boom"):
            draws(fail=True)
        assert torch.get_default_dtype() is torch.float64
        assert random.getstate() == states[0]
        assert (np.random.get_state()[1] == states[1]).all()
        assert torch.equal(torch.get_rng_state(), states[2])
        assert draws.__name__ == "draws"
    finally:
        torch.set_default_dtype(before)


def test_keeps_rng_state_gives_back_the_cuda_generators_in_use(monkeypatch):
    """audit51 api F4: the trainer's torch.manual_seed re-seeded a notebook's CUDA generator.
    No GPU here: torch.cuda's generator functions are stood in for, as a GPU machine has them."""
    from yoloslim.rng import keeps_rng_state

    cuda = {"state": ["caller's"], "set": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(cuda["state"]))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: cuda["set"].append(s))

    @keeps_rng_state
    def seeds(fail=False):
        cuda["state"] = ["the run's"]
        if fail:
            raise RuntimeError("boom")

    seeds()
    with pytest.raises(RuntimeError, match="boom"):
        seeds(fail=True)
    assert cuda["set"] == [["caller's"], ["the run's"]]  # each call gives back what it found
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # not started: untouched
    seeds()
    assert len(cuda["set"]) == 2


def test_a_callers_float64_default_dtype_changes_nothing_of_ours(tmp_path):
    # audit29 api M1: under torch.set_default_dtype(torch.float64) a loaded model had float64
    # weights and predict, export and train failed on float32 images
    import numpy as np

    import yoloslim as ys
    from yoloslim.models.checkpoint import save_checkpoint

    before = torch.get_default_dtype()
    torch.manual_seed(0)
    model = ys.build_model("damo-nano", nc=2).eval()
    save_checkpoint(tmp_path / "m.pt", model, imgsz=64)
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    want = ys.load(tmp_path / "m.pt", imgsz=64, conf=0.0).predict(image)[0]
    torch.set_default_dtype(torch.float64)
    try:
        assert next(ys.build_model("damo-nano", nc=2).parameters()).dtype is torch.float32
        pred = ys.load(tmp_path / "m.pt", imgsz=64, conf=0.0)
        assert next(pred.model.parameters()).dtype is torch.float32
        got = pred.predict(image)[0]
        assert torch.get_default_dtype() is torch.float64  # the caller's, back
    finally:
        torch.set_default_dtype(before)
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-4)
