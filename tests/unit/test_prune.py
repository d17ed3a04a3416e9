"""Pruning: channel counts, forward, reload, importance order, ignored layers, ONNX shapes, errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from yoloslim.compress.prune import PruneConfig, prune, restore_pruned
from yoloslim.compress.prune_depth import removable_blocks, remove_block
from yoloslim.compress.prune_width import CRITERIA, prune_width
from yoloslim.errors import ConfigError, ModelError
from yoloslim.models import build_model
from yoloslim.models.checkpoint import load_checkpoint
from yoloslim.models.testing import SMALL_ARCH

IMG = 64
ARCH = SMALL_ARCH


def cfg(**kw) -> PruneConfig:
    base = dict(imgsz=IMG, batch=4, finetune_epochs=0, latency=False, advanced={"round_to": None})
    base.update(kw)
    return PruneConfig(**base)


@pytest.fixture()
def model() -> nn.Module:
    torch.manual_seed(0)
    m = build_model(ARCH, names=["a", "b"]).eval()
    for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):  # non-trivial BN
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    return m


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from yoloslim.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    return synthesize(root, images=10, imgsz=IMG, classes=2, seed=3, val_fraction=0.2)


def _outputs(m: nn.Module) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return m.eval()(torch.rand(2, 3, IMG, IMG))


def test_channel_counts_forward_and_head_untouched(model, tmp_path):
    res = prune(model, None, config=cfg(ratio=0.5), out=tmp_path)
    m = res.model
    assert m.backbone.stages[0].down.conv.out_channels == 8
    assert m.backbone.stages[2].down.dense.conv.out_channels == 16
    for p, c in zip(m.head.cls_preds, m.head.reg_preds, strict=True):
        assert p.out_channels == 2 and c.out_channels == 4 * 17
        assert p.in_channels == 8  # the head stacks (width 16) were pruned too
    y = _outputs(m)
    assert y.shape == (2, (8 * 8 + 4 * 4 + 2 * 2), 4 + 2) and torch.isfinite(y).all()
    raw = m.train()(torch.rand(1, 3, IMG, IMG))
    assert [r.shape[1] for r in raw] == [68 + 2] * 3
    assert res.report["stages"]["pruned"]["params"] < 0.5 * res.report["stages"]["before"]["params"]
    for row in res.report["table"]:  # no latency export: the size of the FP32 weights
        stage = res.report["stages"][row["stage"]]
        assert row["size_mb"] == round(stage["params"] * 4 / 2**20, 3) > 0
        assert stage["size_source"].startswith("FP32 weights")
    # the input model is not modified
    assert model.backbone.stages[0].down.conv.out_channels == 16


def test_save_load_identical_outputs(model, tmp_path):
    res = prune(model, None, config=cfg(ratio=0.4, global_pruning=True, steps=2), out=tmp_path)
    loaded, ckpt = load_checkpoint(res.artifacts["checkpoint"])
    torch.testing.assert_close(_outputs(loaded), _outputs(res.model), rtol=0, atol=0)
    saved = json.loads((tmp_path / "prune_report.json").read_text())
    assert saved["stages"] == json.loads(json.dumps(res.report["stages"]))  # the report itself
    assert saved["checkpoint"] == str(res.artifacts["checkpoint"])
    raw = torch.load(res.artifacts["checkpoint"], weights_only=True)  # no pickled classes
    assert raw["arch"]["layers"]["backbone.stages.0.down.conv"][0] < 16


def test_pruning_a_checkpoint_again_into_its_own_folder_is_refused(model, tmp_path):
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    first = prune(model, None, config=cfg(ratio=0.3), out=tmp_path)
    assert torch.equal(torch.get_rng_state(), rng)  # prune seeds itself, then gives it back
    pruned = first.artifacts["checkpoint"]
    before = pruned.read_bytes()
    with pytest.raises(ConfigError, match=r"model=.*pruned.pt: this run writes .*give another out"):
        prune(pruned, None, config=cfg(ratio=0.3), out=tmp_path)
    assert pruned.read_bytes() == before
    again = prune(pruned, None, config=cfg(ratio=0.3), out=tmp_path / "again")
    assert again.report["stages"]["pruned"]["params"] < first.report["stages"]["pruned"]["params"]
    # a new prune into a folder holding a pruned model replaces it only when asked to
    with pytest.raises(ConfigError, match=r"again holds a pruned model \(pruned.pt\).*--exist-ok"):
        prune(model, None, config=cfg(ratio=0.5), out=tmp_path / "again")
    before = (tmp_path / "again" / "pruned.pt").read_bytes()
    prune(model, None, config=cfg(ratio=0.5), out=tmp_path / "again", exist_ok=True)
    assert (tmp_path / "again" / "pruned.pt").read_bytes() != before


def test_a_prune_that_finished_in_the_folder_meanwhile_is_not_replaced(
    model, tmp_path, monkeypatch
):
    # audit42 corrupt F1 (train's race): the check came before the folder's lock
    import yoloslim.compress.prune as prune_mod

    load = prune_mod._load_model
    out = tmp_path / "p"

    def another_prune_meanwhile(*args, **kwargs):
        got = load(*args, **kwargs)
        out.mkdir()
        (out / "pruned.pt").write_text("the other prune's")
        return got

    monkeypatch.setattr(prune_mod, "_load_model", another_prune_meanwhile)
    with pytest.raises(ConfigError, match=r"holds a pruned model \(pruned.pt\)"):
        prune(model, None, config=cfg(ratio=0.5), out=out)
    assert (out / "pruned.pt").read_text() == "the other prune's"


def test_a_checkpoint_of_a_fine_tuning_step_is_not_pruned_over_either(model, tmp_path):
    from yoloslim.models.checkpoint import save_checkpoint

    # stands in for the best.pt of an earlier run's fine-tuning between steps
    step = save_checkpoint(tmp_path / "finetune_step1" / "best.pt", model, imgsz=IMG)
    before = step.read_bytes()
    with pytest.raises(ConfigError, match=r"finetune_step1/best.pt: this run writes"):
        prune(step, None, config=cfg(ratio=0.3), out=tmp_path)
    assert step.read_bytes() == before


def test_prune_names_the_missing_extra_before_it_evaluates_anything(model, tiny_data, monkeypatch):
    import sys

    import yoloslim.compress.prune as prune_mod

    measured = []
    monkeypatch.setattr(prune_mod, "measure", lambda *a, **k: measured.append(1))
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    with pytest.raises(ConfigError, match=r"pip install 'yoloslim\[prune\]'"):
        prune(model, tiny_data, config=cfg(ratio=0.3))
    assert measured == []  # no validation pass before the error


def test_default_imgsz_is_the_checkpoints(model, tmp_path):
    from yoloslim.models.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "m.pt", model, imgsz=IMG)
    c = cfg(ratio=0.3)
    c = PruneConfig(**{**c.to_dict(), "imgsz": None})
    res = prune(path, None, config=c, out=tmp_path / "p")
    assert res.report["config"]["imgsz"] == IMG
    assert load_checkpoint(res.artifacts["checkpoint"])[1]["imgsz"] == IMG
    # a module has no training size: 320
    assert prune(model, None, config=c).report["config"]["imgsz"] == 320


def test_params_fall_with_the_ratio_and_steps_reach_the_one_shot_widths(model):
    def widths(m):
        return {n: c.out_channels for n, c in m.named_modules() if isinstance(c, nn.Conv2d)}

    rounded = cfg(advanced={"round_to": 8})  # small layers would round to zero channels
    params = [
        prune(model, None, config=PruneConfig(**{**rounded.to_dict(), "ratio": r})).report[
            "stages"
        ]["pruned"]["params"]
        for r in (0.3, 0.5, 0.7, 0.85, 0.95)
    ]
    assert params == sorted(params, reverse=True) and params[-1] < params[0]
    one = prune(model, None, config=cfg(ratio=0.5)).model
    three = prune(model, None, config=cfg(ratio=0.5, steps=3)).model
    assert widths(three) == widths(one)
    assert one.backbone.stages[2].down.dense.conv.out_channels == 16  # 32 halved


def test_global_pruning_removes_the_ratio_of_all_channels_in_one_step_or_several(model):
    # the share of all prunable conv channels (the head's prediction convs stay whole), each
    # layer capped by max_layer_ratio of its original width; Torch-Pruning's own global mode
    # skipped a group whose channels all ranked low, so 0.9 kept more than 0.5 did
    from yoloslim.compress.prune_width import conv_widths

    widths = conv_widths(model)
    prunable = [n for n in widths if not n.startswith(("head.cls_preds", "head.reg_preds"))]

    def kept(m) -> float:
        now = conv_widths(m)
        return sum(now[n] for n in prunable) / sum(widths[n] for n in prunable)

    shares = {}
    for ratio in (0.3, 0.5, 0.7, 0.9):
        m = copy.deepcopy(model)
        prune_width(m, criterion="l1", imgsz=IMG, ratio=ratio, global_pruning=True)
        shares[ratio] = kept(m)
        now = conv_widths(m)
        assert all(now[n] >= -(-widths[n] // 10) for n in widths)  # the 0.9 cap, never zero
    assert shares[0.3] > shares[0.5] > shares[0.7] >= shares[0.9]
    for ratio in (0.3, 0.5, 0.7):  # within one channel per layer of the requested share
        assert abs(shares[ratio] - (1 - ratio)) < len(prunable) / sum(widths[n] for n in prunable)
    steps = copy.deepcopy(model)
    for r in (0.25, 0.5):
        prune_width(steps, criterion="l1", imgsz=IMG, ratio=r, global_pruning=True, widths=widths)
    assert abs(kept(steps) - shares[0.5]) < len(prunable) / sum(widths[n] for n in prunable)
    # every BN scale is 1 here: the tied scores are cut a rank at a time (a cut by value
    # removed none of them at 0.3, and every channel down to the caps at 0.5)
    for ratio in (0.3, 0.5):
        m = copy.deepcopy(model)
        prune_width(m, criterion="bn-scale", imgsz=IMG, ratio=ratio, global_pruning=True)
        assert abs(kept(m) - (1 - ratio)) < len(prunable) / sum(widths[n] for n in prunable)


def test_importance_order_lowest_channels_removed(model):
    stem, nxt = model.backbone.stages[0].down, model.backbone.stages[1].down
    weak = [1, 4, 9, 13]
    with torch.no_grad():
        for i in weak:  # every weight of channels `weak` in the coupled group is ~0
            stem.conv.weight[i] *= 1e-4
            stem.bn.weight[i] *= 1e-4
            stem.bn.bias[i] *= 1e-4
            nxt.dense.conv.weight[:, i] *= 1e-4
            nxt.one.conv.weight[:, i] *= 1e-4
    for crit in ("l1", "l2"):
        m, _ = prune_width(copy.deepcopy(model), criterion=crit, imgsz=IMG, ratio=0.25)
        kept = [i for i in range(16) if i not in weak]
        torch.testing.assert_close(
            m.backbone.stages[0].down.conv.weight, stem.conv.weight[kept], rtol=0, atol=0
        )


def test_ignored_layers_keep_their_outputs(model):
    name = "neck.fuse_p3.conv3.conv"
    m = copy.deepcopy(model)
    prune_width(m, criterion="l2", imgsz=IMG, ratio=0.5, ignore=["neck.fuse_p3.conv3.*"])
    before, after = model.get_submodule(name), m.get_submodule(name)
    assert after.out_channels == before.out_channels == 16
    assert m.get_submodule("neck.fuse_p4.conv3.conv").out_channels == 8  # others are pruned


@pytest.mark.parametrize("criterion", sorted(set(CRITERIA) - {"taylor"}))
def test_every_data_free_criterion(model, criterion):
    m, _ = prune_width(copy.deepcopy(model), criterion=criterion, imgsz=IMG, ratio=0.3)
    assert torch.isfinite(_outputs(m)).all()


def test_flops_budget_met(model):
    res = prune(model, None, config=cfg(target_flops=0.004, global_pruning=True))
    assert res.report["stages"]["pruned"]["gflops"] <= 0.004
    assert res.report["schedule"]["steps"][0]["width"]["budget_met"] is True


def test_a_target_not_reached_and_a_depth_ratio_of_no_block_are_said(model, tiny_data, caplog):
    # both exited 0 with nothing said: budget_met false in the report, or pruned.pt the input
    with caplog.at_level("WARNING"):
        res = prune(model, None, config=cfg(target_flops=1e-6))
    assert res.report["schedule"]["steps"][0]["width"]["budget_met"] is False
    assert "the target (target_flops 1e-06) was not met: the pruned model has" in caplog.text
    # the words compress's record and summary repeat from the report (audit51 budget M-1)
    from yoloslim.compress.prune import target_warning

    said = target_warning(json.loads(json.dumps(res.report, default=str)))
    assert said and f"prune: {said}" in caplog.text
    assert target_warning(prune(model, None, config=cfg(target_flops=0.004)).report) is None
    caplog.clear()
    c = cfg(method="depth", depth_ratio=0.01, advanced={"calib_batches": 1})
    with caplog.at_level("WARNING"):
        prune(model, tiny_data, config=c)
    assert "depth_ratio 0.01 removed no residual block" in caplog.text


def test_taylor_and_depth(model, tiny_data, tmp_path):
    c = cfg(criterion="taylor", ratio=0.3, depth_ratio=0.25, advanced={"calib_batches": 1})
    res = prune(model, tiny_data, config=c, out=tmp_path)
    rep = res.report
    removed = sum(len(s["depth"]["removed"]) for s in rep["schedule"]["steps"])
    assert removed == int(len(removable_blocks(model)) * 0.25 + 0.5)  # to nearest, ties up
    assert "map" in rep["stages"]["pruned"]
    loaded, ckpt = load_checkpoint(res.artifacts["checkpoint"])
    torch.testing.assert_close(_outputs(loaded), _outputs(res.model), rtol=0, atol=0)
    depths = [s["depth"] for s in ckpt["arch"]["backbone"]["stages"]]
    assert depths == [len(getattr(s.body, "blocks", [])) for s in res.model.backbone.stages]
    assert ckpt["meta"]["history"][-1]["method"] == "depth + width"


def test_removed_blocks_are_named_as_in_the_model_given(model, tiny_data):
    # a removal renumbers the blocks after it: blocks.1 was then named blocks.0, once more
    c = cfg(ratio=0.2, depth_ratio=0.75, steps=2, advanced={"calib_batches": 1})
    res = prune(model, tiny_data, config=c)
    named = [r["block"] for s in res.report["schedule"]["steps"] for r in s["depth"]["removed"]]
    assert len(named) > 2 and len(set(named)) == len(named)
    assert set(named) <= set(removable_blocks(model))
    # the layer changes agree: the removed convs are the removed blocks' own, all of them
    gone = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    gone = {n for n in gone if any(n.startswith(b + ".") for b in named)}
    assert set(res.report["layers"]["removed"]) == gone
    assert all(r["loss_increase"] == 0 or str(r["loss_increase"]) != "-0.0" for s in
               res.report["schedule"]["steps"] for r in s["depth"]["removed"])  # fmt: skip
    assert not any("_yoloslim_origin" in vars(m) for m in res.model.modules())


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({}, "width"),
        ({"depth_ratio": 0.5}, "depth"),  # its method setting stays the default, width
        ({"method": "depth", "target_flops": 0.5}, "depth"),
        ({"target_params": 1.0, "depth_ratio": 0.5}, "depth + width"),
        ({"unstructured": 0.5}, "unstructured"),
        ({"ratio": 0.3, "unstructured": 0.5}, "width + unstructured"),
    ],
)
def test_what_a_prune_removes_is_named_as_such(kw, says):
    assert PruneConfig(**kw).pruned_by == says


def test_depth_removal_rebuilds_including_neck_concat(model, tmp_path):
    from yoloslim.models.checkpoint import save_checkpoint

    m = copy.deepcopy(model)
    remove_block(m, "neck.fuse_n4.blocks.0")  # GFPN concat: conv3 loses that block's slice
    remove_block(m, "backbone.stages.2.body.blocks.1")
    assert m.neck.fuse_n4.conv3.conv.in_channels == 8 * 2  # bypass + one block (mid 8)
    assert m.spec["backbone"]["stages"][2]["depth"] == 1 and m.spec["neck"]["depth"] == 2
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "d.pt", m, imgsz=IMG))
    torch.testing.assert_close(_outputs(loaded), _outputs(m), rtol=0, atol=0)
    assert len(loaded.neck.fuse_n4.blocks) == 1 and len(loaded.neck.fuse_p3.blocks) == 2


def test_removing_a_later_gfpn_block_is_skipping_it(model):
    # conv3 reads every block's output: without block 1, block 0's slot carries what block 1
    # was given, so block 1's weights fold onto it and removal equals the skip it was scored as
    x = torch.randn(2, model.neck.fuse_n4.conv1.conv.in_channels, 8, 8)
    stage = model.neck.fuse_n4
    skip = stage.blocks[1].register_forward_hook(lambda m, inp, out: inp[0])
    with torch.no_grad():
        skipped = stage(x)
    skip.remove()
    m = copy.deepcopy(model)
    remove_block(m, "neck.fuse_n4.blocks.1")
    with torch.no_grad():
        removed, whole = m.neck.fuse_n4(x), stage(x)
    assert (whole - skipped).abs().max() > 1e-2  # the block matters
    torch.testing.assert_close(removed, skipped, rtol=1e-5, atol=1e-5)


def test_blocks_are_scored_by_the_model_their_removal_leaves(model):
    from yoloslim.compress.prune_depth import _mean_loss, block_scores
    from yoloslim.train.loss import DetectionLoss

    torch.manual_seed(1)
    batch = (torch.randint(0, 255, (2, 3, IMG, IMG)), torch.tensor([[0, 1, 8, 8, 40, 40]]), [])
    crit = DetectionLoss(model.nc, model.reg_max, model.strides)
    base = _mean_loss(model, [batch], crit)
    first = "neck.fuse_n4.blocks.0"  # no exact fold: conv2's output has no slot of its own
    scores = block_scores(model, [batch], [first])
    m = copy.deepcopy(model)
    remove_block(m, first)
    assert scores[first] == pytest.approx(_mean_loss(m, [batch], crit) - base)


def test_depth_pruning_shows_a_bar_per_removal_and_removes_the_same_blocks(model, capsys):
    from yoloslim.compress.prune_depth import prune_depth

    torch.manual_seed(1)
    batch = (torch.randint(0, 255, (2, 3, IMG, IMG)), torch.tensor([[0, 1, 8, 8, 40, 40]]), [])
    n = len(removable_blocks(model))
    quiet = prune_depth(copy.deepcopy(model), [batch], count=2)
    capsys.readouterr()
    shown = prune_depth(copy.deepcopy(model), [batch], count=2, progress=True)
    err = capsys.readouterr().err
    assert shown == quiet  # the bar changes nothing removed
    # each removal scores every block left: n, then n - 1
    assert "depth pruning: removal 1 of 2" in err and f"{n}/{n}" in err
    assert "depth pruning: removal 2 of 2" in err and f"{n - 1}/{n - 1}" in err


def test_onnx_of_pruned_model_has_smaller_shapes(model, tmp_path):
    onnx = pytest.importorskip("onnx")
    from yoloslim.export import export

    pruned, _ = prune_width(copy.deepcopy(model), criterion="l2", imgsz=IMG, ratio=0.5)
    res = export(pruned, tmp_path, formats=["onnx"], imgsz=IMG)
    g = onnx.load(str(res.artifacts["onnx"])).graph
    shapes = [tuple(i.dims) for i in g.initializer if len(i.dims) == 4]
    fused = copy.deepcopy(model).fuse()
    before = [tuple(m.weight.shape) for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert (16, 3, 3, 3) in before and (8, 3, 3, 3) in shapes and (16, 3, 3, 3) not in shapes
    after_params = sum(int(torch.tensor(s).prod()) for s in shapes)
    assert after_params < 0.5 * sum(int(torch.tensor(s).prod()) for s in before)


def test_unstructured_sparsity_is_permanent_and_reported(model, tmp_path):
    res = prune(model, None, config=cfg(unstructured=0.6), out=tmp_path)
    rep = res.report
    assert rep["unstructured"]["trained_form"]["overall"] >= 0.55
    assert rep["stages"]["sparse"]["params"] == rep["stages"]["before"]["params"]
    assert "unchanged" in rep["note"]
    assert not any(hasattr(m, "weight_orig") for m in res.model.modules())
    loaded, _ = load_checkpoint(res.artifacts["checkpoint"])
    zeros = sum(int((m.weight == 0).sum()) for m in loaded.modules() if isinstance(m, nn.Conv2d))
    total = sum(m.weight.numel() for m in loaded.modules() if isinstance(m, nn.Conv2d))
    assert zeros / total >= 0.55


def test_finetune_after_pruning(model, tiny_data, tmp_path):
    c = cfg(ratio=0.3, finetune_epochs=1, advanced={"round_to": None, "finetune": {"workers": 0}})
    res = prune(model, tiny_data, config=c, out=tmp_path)
    assert {"before", "pruned", "finetuned"} <= set(res.report["stages"])
    loaded, ck = load_checkpoint(res.artifacts["checkpoint"])
    torch.testing.assert_close(_outputs(loaded), _outputs(res.model), rtol=0, atol=0)
    # pruned.pt says how good it is (the fine-tuned mAP), as a trained best.pt does, and what
    # made it; info shows both
    from yoloslim.cli.info_cmd import _rows
    from yoloslim.runtime.describe import describe

    finetuned = res.report["stages"]["finetuned"]
    assert (ck["meta"]["map"], ck["meta"]["map50"]) == (finetuned["map"], finetuned["map50"])
    rows = dict(_rows(describe(res.artifacts["checkpoint"])))
    assert rows["arch"].endswith(", pruned") and "mAP50-95" in rows
    assert "prune (method width, ratio 0.3, fine-tuned epochs 1)" in rows["history"]
    # the fine-tuning run's checkpoints are the pruned model too, and say so; the fine-tuning
    # is said once, by its own step (audit27 info L1: the prune step said it too)
    tuned = dict(_rows(describe(tmp_path / "finetune" / "best.pt")))
    assert tuned["arch"].endswith(", pruned")
    assert tuned["history"] == "prune (method width, ratio 0.3) -> train (epochs 1)"
    # and the fine-tuning run's report too: not "damo-nano" (audit47 train L1)
    from yoloslim.train import train as train_

    assert (
        train_(None, None, out=tmp_path / "finetune", resume=True).report["model"]
        == (tuned["arch"])
    )
    # a re-prune into the folder that fine-tunes no more removes that (older) run; a user's
    # own run named finetune/ is refused, before any work, and kept
    again = cfg(ratio=0.2, finetune_epochs=0)
    prune(model, tiny_data, config=again, out=tmp_path, exist_ok=True)
    assert not (tmp_path / "finetune").exists() and (tmp_path / "pruned.pt").is_file()
    from yoloslim.train import TrainConfig, train

    user = tmp_path / "user"
    mine = train(copy.deepcopy(model), tiny_data, config=TrainConfig(epochs=1, batch=2, workers=0,
                 imgsz=IMG), out=user / "finetune")  # fmt: skip
    before = (user / "finetune" / "best.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"finetune holds a training run that no prune into"):
        prune(model, tiny_data, config=c, out=user)
    with pytest.raises(ConfigError, match=r"finetune holds a training run that no prune into"):
        prune(model, tiny_data, config=c, out=user, exist_ok=True)  # no earlier prune there
    assert (user / "finetune" / "best.pt").read_bytes() == before and mine.model is not None


def test_external_module_and_restore(tmp_path):
    def net():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 5, 1),
        )

    res = prune(net(), None, config=cfg(ratio=0.5, ignore=("5",)), out=tmp_path)
    assert res.model[0].out_channels == 8 and res.model[5].out_channels == 5
    back = restore_pruned(net(), res.artifacts["checkpoint"])
    x = torch.rand(1, 3, IMG, IMG)
    torch.testing.assert_close(back(x), res.model.eval()(x))
    from yoloslim.errors import ModelError
    from yoloslim.models.checkpoint import load_checkpoint

    with pytest.raises(ModelError, match=r"pruned module's record: .*restore_pruned"):
        load_checkpoint(res.artifacts["checkpoint"])  # said only "not a yoloslim checkpoint"
    with pytest.raises(ConfigError, match="Detector"):
        prune(net(), None, config=cfg(ratio=0.5, finetune_epochs=1))


class _Pooled(nn.Module):
    """A depthwise conv and a Linear classifier, whose inputs pruning narrows."""

    def __init__(self, norm: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 16, 3, 2, 1)
        self.norm = nn.GroupNorm(1, 16) if norm else nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.dw(torch.relu(self.norm(self.c1(x)))).mean((2, 3)))


def test_external_module_with_depthwise_and_linear_layers_restores(tmp_path):
    res = prune(_Pooled(), None, config=cfg(ratio=0.5, ignore=("fc",)), out=tmp_path)
    assert res.model.dw.groups == res.model.dw.out_channels == 8
    assert res.model.fc.in_features == 8
    back = restore_pruned(_Pooled(), res.artifacts["checkpoint"])
    x = torch.rand(2, 3, IMG, IMG)
    torch.testing.assert_close(back(x), res.model.eval()(x))


def test_external_module_whose_resized_layers_cannot_be_recorded_is_refused(tmp_path):
    # a GroupNorm is resized with the conv before it; the record would not rebuild it
    with pytest.raises(ModelError, match=r"resized norm.weight \(GroupNorm\).*ignore"):
        prune(_Pooled(norm=True), None, config=cfg(ratio=0.5, ignore=("fc",)), out=tmp_path)
    assert not (tmp_path / "pruned.pt").exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.0}, "ratio"),
        ({"ratio": -0.2}, "ratio"),
        ({"criterion": "l3"}, "criterion"),
        ({"ratio": 0.5, "target_flops": 1.0}, "at most one"),
        ({"method": "depth", "ratio": 0.3}, "depth_ratio"),
        ({"method": "depth"}, "depth_ratio"),
        ({"depth_ratio": 1.5}, "depth_ratio"),
        ({"unstructured": 1.0}, "unstructured"),
        ({"steps": 0}, "steps"),
        ({"imgsz": 100}, "imgsz"),
        ({"ratio": "half"}, "ratio"),
        ({"advanced": {"round_to": 0}}, "round_to"),
        ({"advanced": {"round_to": "8"}}, r"advanced.round_to='8' must be an integer"),
        ({"advanced": {"sparsity_epochs": 1.5}}, r"advanced.sparsity_epochs=1.5 must be an int"),
        ({"advanced": {"calib_batches": True}}, r"advanced.calib_batches=True must be an int"),
        ({"advanced": {"sparsity_lr": "1e-3"}}, r"sparsity_lr='1e-3' must be a number \(YAML"),
        ({"global_pruning": "false"}, r"PruneConfig.global_pruning='false' must be true or"),
        ({"advanced": 3}, r"PruneConfig.advanced: expected a mapping, got int"),
        # fine-tuned 3 epochs while the report and the history said finetune_epochs=1
        (
            {"finetune_epochs": 1, "advanced": {"finetune": {"epochs": 3}}},
            r"advanced.finetune.epochs \(PruneConfig.finetune_epochs / finetune_between\): set "
            "by PruneConfig itself",
        ),
        ({"advanced": {"finetune": {"imgsz": 256}}}, r"finetune.imgsz \(PruneConfig.imgsz\)"),
        ({"seed": -1}, r"seed=-1 must be"),
    ],
)
def test_bad_values_raise(kw, match):
    with pytest.raises(ConfigError, match=match):
        PruneConfig(**kw)


def test_from_dict_rejects_unknown_keys():
    assert PruneConfig.from_dict({"ratio": 0.3, "criterion": "taylor"}).criterion.value == "taylor"
    with pytest.raises(ConfigError, match="ratoi"):
        PruneConfig.from_dict({"ratoi": 0.3})
    with pytest.raises(ConfigError, match="roundto"):
        PruneConfig.from_dict({"advanced": {"roundto": 8}})


def test_budget_larger_than_model_and_missing_data(model):
    with pytest.raises(ConfigError, match="target_flops"):
        prune(model, None, config=cfg(target_flops=100.0))
    with pytest.raises(ConfigError, match="target_params"):
        prune(model, None, config=cfg(target_params=50.0))
    with pytest.raises(ConfigError, match="data"):
        prune(model, None, config=cfg(criterion="taylor", ratio=0.3))
    with pytest.raises(ConfigError, match="--finetune-epochs 0 skips"):
        prune(model, None, config=cfg(ratio=0.3, finetune_epochs=2))


def test_a_missing_data_yaml_is_refused_before_the_run_folder_is_made(model, tmp_path):
    from yoloslim.errors import DataError

    with pytest.raises(DataError, match="nope.yaml: data.yaml not found"):
        prune(model, tmp_path / "nope.yaml", config=cfg(ratio=0.3), out=tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_config_must_be_a_prune_config(model):
    with pytest.raises(ConfigError, match="config must be a PruneConfig, got dict"):
        prune(model, None, config={"ratio": 0.3})


def test_cli_reports_bad_ratio(capsys):
    from yoloslim.cli.main import main

    assert main(["prune", "--model", "damo-nano", "--ratio", "1.5"]) == 2


def test_checkpoints_record_every_step_that_made_them(tmp_path):
    # a second prune used to replace the first's record, and train/distill wrote none
    import yoloslim as ys
    from yoloslim.models.checkpoint import read_checkpoint, with_history

    data = ys.synthesize(tmp_path / "d", images=6, imgsz=64, classes=2, seed=0, val_fraction=0.34)
    tcfg = ys.TrainConfig(epochs=1, imgsz=64, batch=4, workers=0)
    base = ys.train("damo-nano", data, config=tcfg, out=tmp_path / "t").best
    pcfg = ys.PruneConfig(ratio=0.3, imgsz=64, finetune_epochs=0, latency=False)
    once = ys.prune(base, data, config=pcfg, out=tmp_path / "p1").artifacts["checkpoint"]
    twice = ys.prune(once, data, config=pcfg, out=tmp_path / "p2").artifacts["checkpoint"]
    kd = ys.distill(twice, base, data, config=ys.DistillConfig(train=tcfg), out=tmp_path / "k")

    def steps(path):
        return [(e["stage"], Path(e["out"]).name) for e in read_checkpoint(path)["meta"]["history"]]

    assert steps(base) == [("train", "t")]
    assert steps(twice) == [("train", "t"), ("prune", "p1"), ("prune", "p2")]
    assert steps(kd.artifacts["best"]) == steps(twice) + [("distill", "k")]
    assert read_checkpoint(kd.artifacts["best"])["meta"]["history"][-1]["teacher"] == str(
        Path(base).absolute()
    )
    # a prune kept in memory says so too: an export of it records the step
    mem = ys.prune(once, data, config=pcfg).model
    assert [(e["stage"], e["out"]) for e in mem.history][-1] == ("prune", None)
    assert [e["stage"] for e in mem.history] == ["train", "prune", "prune"]
    onnx = ys.export(mem, tmp_path / "e", formats=["onnx"], verify=False).artifacts["onnx"]
    assert [h["stage"] for h in ys.describe(onnx)["history"]] == ["train", "prune", "prune"]
    # saving again into the same folder (each epoch, a resumed run) replaces its own entry
    again = with_history(read_checkpoint(base)["meta"]["history"], "train", tmp_path / "t")
    assert [e["stage"] for e in again] == ["train"]


def test_every_config_criterion_has_an_importance_and_no_importance_lacks_a_name():
    from yoloslim.compress.prune_config import Criterion

    assert {c.value for c in Criterion} == set(CRITERIA)


def test_a_width_halfway_between_two_multiples_keeps_the_larger():
    # Python's round() sends ties to the even multiple: at 0.25 a 16-channel layer kept 16
    # (none removed) while a 48-channel one kept 32 (a third removed)
    from yoloslim.compress.prune_width import _keep

    assert [_keep(w, 0.25, 8, 0.9) for w in (16, 48, 80)] == [16, 40, 64]
    assert [_keep(w, 0.5, 8, 0.9) for w in (24, 40, 96)] == [16, 24, 48]
    assert _keep(12, 0.5, 8, 0.9) == 8 and _keep(9, 0.5, None, 0.9) == 5


def test_settings_that_would_fail_later_are_refused_before_any_work(model, tiny_data, tmp_path):
    from yoloslim.data.synth import synthesize

    out = tmp_path / "run"
    # a pattern that names no module kept nothing whole, silently
    with pytest.raises(ConfigError, match=r"ignore \(--ignore\): 'neck.fuse_p9\*' matches no"):
        prune(model, None, config=cfg(ignore=("neck.fuse_p9*",)), out=out)
    # advanced.finetune was read only after the baseline's validation and the pruning: now
    # when the settings are made
    with pytest.raises(
        ConfigError, match=r"unknown key.*epochz.* in PruneConfig.advanced.finetune"
    ):
        cfg(finetune_epochs=1, advanced={"finetune": {"epochz": 3}})
    # a class count the data does not have: refused before the run folder is made
    three = synthesize(tmp_path / "three", images=4, imgsz=IMG, classes=3, seed=0)
    with pytest.raises(ModelError, match=r"has 2 classes but .*three/data.yaml has 3"):
        prune(model, three, config=cfg(), out=out)
    assert not out.exists()


def test_an_architecture_is_pruned_with_a_warning_that_its_weights_are_random(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="yoloslim"):
        prune(ARCH, None, config=cfg(ratio=0.3))
    assert any("weights are random" in r.getMessage() for r in caplog.records)


def test_a_record_of_the_first_format_still_restores(tmp_path):
    # /1 records held no Linear layers and no conv's groups: an unchanged Linear or grouped
    # conv in them was refused or rebuilt ungrouped once /2 recorded both
    from yoloslim.models.arch import layer_shapes

    class Grouped(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn = nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16)
            self.g, self.fc = nn.Conv2d(16, 16, 3, 1, 1, groups=4), nn.Linear(16, 5)

        def forward(self, x):
            return self.fc(self.g(self.bn(self.c1(x))).mean((2, 3)))

    torch.manual_seed(1)
    saved = Grouped().eval()
    record = {
        "format": "yoloslim-pruned-module/1",
        "layers": layer_shapes(saved, legacy=True),
        "state_dict": saved.state_dict(),
        "meta": {},
    }
    assert "fc" not in record["layers"] and record["layers"]["g"] == [16, 16]
    torch.save(record, tmp_path / "pruned.pt")
    torch.manual_seed(2)
    back = restore_pruned(Grouped(), tmp_path / "pruned.pt")
    assert back.g.groups == 4
    x = torch.rand(2, 3, IMG, IMG)
    torch.testing.assert_close(back(x), saved(x))


def test_a_ratio_above_the_layer_cap_and_a_prune_that_removes_nothing_are_said(model, caplog):
    import logging

    with caplog.at_level(logging.WARNING, "yoloslim"):
        capped = prune(model, None, config=cfg(ratio=0.95))
        at_cap = prune(model, None, config=cfg(ratio=0.9))
    assert "ratio 0.95 is above advanced.max_layer_ratio 0.9" in caplog.text
    # once (the width pruner said it too, in other words: audit24 prune L3)
    assert caplog.text.count("is above advanced.max_layer_ratio") == 1
    # what the caps allow: 0.95 gives the model 0.9 gives, as said
    assert (
        capped.report["stages"]["pruned"]["params"] == at_cap.report["stages"]["pruned"]["params"]
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, "yoloslim"):
        res = prune(model, None, config=cfg(ratio=0.5, ignore=("*",)))
    assert res.report["stages"]["pruned"]["params"] == res.report["stages"]["before"]["params"]
    assert "no channel or block was removed (ignore ['*'] may cover every layer)" in caplog.text


def test_a_prune_stopped_between_its_writes_leaves_no_earlier_report_beside(
    model, tmp_path, monkeypatch
):
    # a kill after the new pruned.pt, before its report: the old report (ratio 0.3) stayed
    # beside the new model (ratio 0.6)
    import yoloslim.compress.prune as prune_mod

    prune(model, None, config=cfg(ratio=0.3), out=tmp_path)
    assert (tmp_path / "prune_report.json").is_file()

    def killed(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(prune_mod, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        prune(model, None, config=cfg(ratio=0.6), out=tmp_path, exist_ok=True)
    assert (tmp_path / "pruned.pt").is_file() and not (tmp_path / "prune_report.json").exists()


def test_a_frozen_backbone_is_pruned_with_its_couplings_and_stays_frozen(tmp_path):
    # Torch-Pruning traces through autograd: a frozen backbone's couplings were missed, and
    # the pruned network failed (a channel mismatch) inside the FLOPs count
    model = build_model(SMALL_ARCH, nc=2)
    model.backbone.requires_grad_(False)
    res = prune(model, None, config=cfg(ratio=0.5), out=tmp_path)
    net = res.model.eval()
    assert net(torch.rand(1, 3, IMG, IMG)) is not None  # runs
    assert all(not p.requires_grad for p in net.backbone.parameters())  # frozen, as given
    assert all(p.requires_grad for p in net.head.parameters())
    widths = [m.out_channels for m in net.backbone.modules() if isinstance(m, nn.Conv2d)]
    before = [m.out_channels for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert sum(widths) < sum(before)  # the frozen backbone was pruned too
    assert all(not p.requires_grad for p in model.backbone.parameters())  # the input untouched


def test_unstructured_sparsity_leaves_an_ignored_parents_convs_whole(model, tmp_path):
    # --ignore backbone kept the backbone's channels but --unstructured zeroed its weights
    before = {n: p.clone() for n, p in model.backbone.named_parameters()}
    res = prune(model, None, config=cfg(unstructured=0.6, ignore=("backbone",)), out=tmp_path)
    after = dict(res.model.backbone.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in before.items())
    head = [m.weight for m in res.model.head.modules() if isinstance(m, nn.Conv2d)]
    assert sum(int((w == 0).sum()) for w in head) > 0  # the rest was sparsified


def test_prune_keeps_a_users_export_folders_and_says_a_distill_with_no_fine_tuning(
    model, tiny_data, tmp_path, caplog
):
    # export/before and export/after, where prune exports what it times, were replaced; and
    # --distill with --finetune-epochs 0 was recorded as distilled
    mine = tmp_path / "export" / "before"
    mine.mkdir(parents=True)
    (mine / "model.onnx").write_text("mine")
    with pytest.raises(ConfigError, match=r"export/before holds files no prune into .* made"):
        prune(model, None, config=cfg(ratio=0.3), out=tmp_path)
    assert (mine / "model.onnx").read_text() == "mine"
    with caplog.at_level("WARNING", logger="yoloslim"):
        res = prune(model, tiny_data, config=cfg(ratio=0.3, distill=True), out=tmp_path / "d")
    assert "this prune fine-tunes no epoch (finetune_epochs=0): nothing is distilled" in (
        caplog.text
    )
    assert res.model.history[-1]["distilled"] is False


def test_a_target_the_model_already_meets_is_refused_before_any_work(model, tmp_path, monkeypatch):
    # audit24 prune L1: refused only after the baseline's validation, leaving an empty --out
    import yoloslim.compress.prune as prune_mod

    def never(*a, **kw):
        raise AssertionError("measured (validated) before the target was checked")

    monkeypatch.setattr(prune_mod, "measure", never)
    for kw, match in (
        ({"target_params": 100.0}, r"target_params=100.0 is not below the model's"),
        ({"target_flops": 50.0}, r"target_flops=50.0 is not below the model's"),
    ):
        with pytest.raises(ConfigError, match=match):
            prune(model, None, config=cfg(**kw), out=tmp_path / "p")
        assert not (tmp_path / "p").exists()


def test_pruned_pt_records_the_size_it_was_trained_at(model, tmp_path):
    # audit24 prune L4: --imgsz 96 without fine-tuning wrote 96 for a 64-px model, so val and
    # train of pruned.pt took 96 by default
    from yoloslim.data.synth import synthesize
    from yoloslim.models.checkpoint import read_checkpoint, save_checkpoint

    data = synthesize(tmp_path / "d", images=4, imgsz=IMG, classes=2, seed=0, val_fraction=0.5)
    path = save_checkpoint(tmp_path / "m.pt", model, imgsz=IMG)
    prune(path, data, config=cfg(ratio=0.3, imgsz=96), out=tmp_path / "p")
    saved = read_checkpoint(tmp_path / "p" / "pruned.pt")
    # and its mAP, measured at 96, is not recorded as the 64-px model's
    assert saved["imgsz"] == IMG and "map" not in saved["meta"]
    prune(path, data, config=cfg(ratio=0.3), out=tmp_path / "q")  # its own size: the same
    saved = read_checkpoint(tmp_path / "q" / "pruned.pt")
    assert saved["imgsz"] == IMG and "map" in saved["meta"]


def test_a_prune_killed_while_exporting_is_run_again_by_the_same_command(
    model, tmp_path, monkeypatch
):
    # audit28 chaos H1: its export/before, with no prune_report.json yet, was refused as files
    # no prune made, with or without --exist-ok; only deleting export/ by hand went on
    import yoloslim.compress.prune as prune_mod

    def killed(before, after, work, cfg):
        (work / "before").mkdir(parents=True)
        (work / "before" / "model.onnx").write_text("half")
        raise KeyboardInterrupt  # the folder as a kill -9 would leave it: no report

    monkeypatch.setattr(prune_mod, "measure_latency_pair", killed)
    with pytest.raises(KeyboardInterrupt):
        prune(model, None, config=cfg(ratio=0.3, latency=True), out=tmp_path)
    assert not (tmp_path / "prune_report.json").exists()
    monkeypatch.undo()
    res = prune(model, None, config=cfg(ratio=0.3), out=tmp_path)  # the same folder goes on
    assert (tmp_path / "pruned.pt").is_file() and res.report["latency"] is None
    assert not (tmp_path / "export" / "before").exists()  # the killed one's, removed


def test_a_prune_without_out_names_no_timed_files_that_are_gone(model, tmp_path, monkeypatch):
    # audit29 api L3: out=None timed the models in a temporary folder, removed on return, and
    # the report's latency.artifacts named its files
    import yoloslim.compress.prune as prune_mod

    def timed(before, after, work, cfg):
        row = {"size_mb": 1.0, "size_source": "file", "latency_ms": {"median": 1.0, "p90": 1.0}}
        arts = {k: str(work / k / "model.onnx") for k in ("before", "after")}
        return {"before": row, "after": dict(row), "info": {"artifacts": arts}}

    monkeypatch.setattr(prune_mod, "measure_latency_pair", timed)
    kept = prune(model, None, config=cfg(ratio=0.3, latency=True), out=tmp_path)
    assert kept.report["latency"]["artifacts"]["after"].startswith(str(tmp_path))
    res = prune(model, None, config=cfg(ratio=0.3, latency=True), out=None)
    assert res.report["latency"]["artifacts"] is None


def test_prune_distill_fine_tuning_names_its_teacher(model, tiny_data, tmp_path, monkeypatch):
    # audit27 info L2: the fine-tuning checkpoints recorded the teacher as "a Detector";
    # audit50 chain F1: a checkpoint by the relative path typed
    from yoloslim.cli.info_cmd import _step
    from yoloslim.models.checkpoint import read_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", model, imgsz=IMG)
    monkeypatch.chdir(tmp_path)
    prune("m.pt", tiny_data, config=cfg(ratio=0.3, distill=True, finetune_epochs=1), out="run")
    steps = read_checkpoint(tmp_path / "run" / "finetune" / "last.pt")["meta"]["history"]
    assert steps[-1]["stage"] == "distill"
    assert steps[-1]["teacher"] == f"the model before this prune ({tmp_path / 'm.pt'})"
    assert _step({"stage": "prune", "target_params": 0.15, "target_flops": 0.2}) == (
        "prune (to 0.15 M params, to 0.2 GFLOPs)"  # was "to M params 0.15"
    )


def test_the_history_says_the_fine_tuning_between_steps(tmp_path):
    # audit30 review L4: 2 steps with an epoch between and one after said "fine-tuned epochs 1"
    from yoloslim.cli.info_cmd import _step
    from yoloslim.compress.prune import _history

    two = _history([], cfg(ratio=0.5, steps=2, finetune_between=1, finetune_epochs=1), tmp_path)
    assert two[-1]["finetune_between"] == 1
    assert _step(two[-1]) == (
        "prune (method width, ratio 0.5, fine-tuned epochs 1, fine-tuned epochs between steps 1)"
    )
    one = _history([], cfg(ratio=0.5, finetune_between=1, finetune_epochs=1), tmp_path)
    assert one[-1]["finetune_between"] is None  # one step: nothing between


def test_settings_this_prune_never_reads_are_warned_about(caplog):
    # audit30 configs L2: kept and recorded as if used, the weights identical to plain l2
    from yoloslim.compress.prune import _warn_unused

    with caplog.at_level("WARNING"):
        _warn_unused(
            cfg(
                criterion="l2",
                backend="onnxruntime",
                advanced={"sparsity_reg": 1e-3, "calib_batches": 2, "latency_rounds": 3},
            )
        )
    said = caplog.records[-1].getMessage()
    assert said.startswith(
        "advanced.sparsity_reg, advanced.calib_batches, advanced.latency_rounds, backend not "
        "used by this prune"
    )
    caplog.clear()
    with caplog.at_level("WARNING"):  # each read where it is used; defaults never said
        _warn_unused(cfg(criterion="taylor", advanced={"calib_batches": 2}))
        _warn_unused(cfg(criterion="bn-scale", advanced={"sparsity_epochs": 1, "sparsity_reg": 1}))
        _warn_unused(cfg(latency=True, backend="onnxruntime", advanced={"latency_rounds": 3}))
        _warn_unused(cfg())
    assert not caplog.records


@pytest.mark.parametrize("epochs", [1, 2, 6])
def test_the_fine_tuning_settings_give_no_warning_of_their_own(epochs, caplog):
    # audit31 fresh M2: prune's own close_mosaic=min(2, epochs) made 1-2 epochs of
    # fine-tuning warn that mosaic is never used, a setting the user never gave
    from yoloslim.compress.prune import _finetune_config
    from yoloslim.train.trainer import _warn_idle_settings

    tc = _finetune_config(cfg(), epochs)
    with caplog.at_level("WARNING"):
        _warn_idle_settings(tc, n_train=64, n_batches=64 // tc.batch)
    assert not caplog.records
    assert (tc.close_mosaic, tc.augment["mosaic"] > 0) == ((0, False) if epochs <= 2 else (2, True))
    # a user's own fine-tuning settings win, key by key (audit32 review3 M1: an augment key
    # replaced the whole dict, mosaic with it; a close_mosaic of theirs was overridden)
    mine = _finetune_config(cfg(advanced={"finetune": {"augment": {"mosaic": 0.5}}}), epochs)
    assert mine.augment["mosaic"] == 0.5
    flip = _finetune_config(cfg(advanced={"finetune": {"augment": {"hflip": 0.0}}}), epochs)
    assert flip.augment["hflip"] == 0.0 and flip.augment["mosaic"] == tc.augment["mosaic"]
    closed = _finetune_config(cfg(advanced={"finetune": {"close_mosaic": 1}}), epochs)
    assert closed.close_mosaic == 1 and closed.augment["mosaic"] > 0
