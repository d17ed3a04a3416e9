"""Progress bars go to stderr: stdout stays for tables and JSON (benchmarks, ``| jq``)."""

import torch

import yoloslim as ys
from yoloslim.data.synth import synthesize
from yoloslim.nas import Budget, SearchSpace, search

SPACE = SearchSpace(
    widths=((8, 16), (8, 16), (16, 24), (16, 32), (24, 48)),
    depths=((0, 0), (1, 1), (1, 1), (1, 1), (1, 1)),
)


def test_training_validation_and_search_bars_stay_off_stdout(tmp_path, capfd):
    data = synthesize(tmp_path / "d", images=6, imgsz=64, classes=2, seed=0, val_fraction=0.34)
    cfg = ys.TrainConfig(epochs=1, batch=4, imgsz=64, workers=0, val_interval=1)
    torch.manual_seed(0)
    ys.train(SPACE.arch(SPACE.smallest(), 2), data, config=cfg, out=tmp_path / "r", progress=True)
    search(
        imgsz=64,
        budget=Budget(flops=1.0),
        space=SPACE,
        population=2,
        iterations=1,
        nc=2,
        init_repeats=1,
        top_k=1,
        progress=True,
    )
    out, err = capfd.readouterr()
    assert out == ""
    assert "epoch 1/1" in err and "nas best" in err


def test_a_piped_bar_is_wide_enough_for_the_losses(monkeypatch):
    from yoloslim.progress import PIPED_WIDTH, progress_console

    monkeypatch.delenv("COLUMNS", raising=False)
    progress_console.cache_clear()
    try:
        assert progress_console().width == PIPED_WIDTH  # pytest's stderr is not a terminal
    finally:
        progress_console.cache_clear()
