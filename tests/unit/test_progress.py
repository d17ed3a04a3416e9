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


def test_reading_a_large_split_shows_a_bar_only_when_asked(tmp_path, capfd, monkeypatch):
    from yoloslim import progress
    from yoloslim.data import load_data_config, load_samples

    data = synthesize(tmp_path / "d", images=6, imgsz=64, classes=2, seed=0, val_fraction=0.34)
    cfg = load_data_config(data)
    monkeypatch.setattr(progress, "TRACK_FROM", 3)  # this split's 4 images count as large
    quiet = load_samples(cfg, "train")
    assert capfd.readouterr().err == ""  # no bar unless a command asked for progress
    with progress.shown():
        shown = load_samples(cfg, "train")
        load_samples(cfg, "val")  # 2 images: under TRACK_FROM, no bar
    out, err = capfd.readouterr()
    assert out == ""
    assert err.count("checking the images of") == 1 and err.count("reading the labels of") == 1
    assert "4/4" in err and "images/val" not in err
    assert [s.path for s in shown] == [s.path for s in quiet]
    assert all((a.boxes == b.boxes).all() for a, b in zip(shown, quiet, strict=True))
    assert list(progress.tracked(range(5), 5, "x")) == list(range(5))  # outside: plain items
