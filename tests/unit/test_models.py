import copy
import logging

import numpy as np
import pytest
import torch
from torch import nn

from yoloslim.bench.flops import count_params, model_profile
from yoloslim.errors import ConfigError, ModelError
from yoloslim.models import RepConv, arch_of, build_model, list_models, register_model
from yoloslim.models.arch import load_arch_yaml
from yoloslim.models.blocks import ConvBNAct, fuse_conv_bn
from yoloslim.models.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from yoloslim.models.head import make_anchors
from yoloslim.models.registry import get_arch
from yoloslim.models.testing import randomize_bn


def _randomize_bn(model):
    randomize_bn(model, seed=1)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_shapes(name):
    model = build_model(name, nc=3)
    x = torch.randn(2, 3, 64, 96)
    raw = model.train()(x)
    assert [r.shape for r in raw] == [(2, 4 * 17 + 3, 64 // s, 96 // s) for s in (8, 16, 32)]
    sum(r.mean() for r in raw).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    model.eval()
    with torch.no_grad():
        out = model(x)
    anchors = sum((64 // s) * (96 // s) for s in (8, 16, 32))
    assert out.shape == (2, anchors, 4 + 3)
    assert ((out[..., 4:] >= 0) & (out[..., 4:] <= 1)).all()
    assert (out[..., 2] >= out[..., 0]).all() and (out[..., 3] >= out[..., 1]).all()


@pytest.mark.parametrize(("name", "target"), [("damo-tiny", 8.5e6), ("damo-small", 16.3e6)])
def test_param_counts_match_damo_yolo(name, target):
    # DAMO-YOLO's model zoo lists T 8.5 M and S 16.3 M (rounded to 0.1 M); ours are within
    # 2 % of those (measured: 8,387,196 and 16,287,292), so a width slip of a few % shows
    p = model_profile(name, imgsz=320, nc=80)["params_deploy"]
    assert abs(p - target) / target <= 0.02


def test_nano_is_cpu_class():
    p = model_profile("damo-nano", imgsz=320, nc=80)
    assert 1e6 <= p["params_deploy"] <= 2e6
    assert p["gflops"] == pytest.approx(2 * p["gmacs"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_anchors_are_the_cell_centres(dtype):
    # built from the maps (so a traced graph takes its device from its input); must equal
    # the plain arange grid: x varies along W, y along H, strides per level
    shapes, strides = [(5, 7), (3, 4), (1, 2)], [8, 16, 32]
    maps = [torch.zeros(2, 3, h, w, dtype=dtype) for h, w in shapes]
    points, stride_t = make_anchors(maps, strides)
    want_p, want_s = [], []
    for (h, w), s in zip(shapes, strides, strict=True):
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        want_p.append(torch.stack([xx, yy], -1).reshape(-1, 2) * s)
        want_s.append(torch.full((h * w, 1), float(s)))
    assert points.dtype == stride_t.dtype == dtype
    assert torch.equal(points.float(), torch.cat(want_p))
    assert torch.equal(stride_t.float(), torch.cat(want_s))


@pytest.mark.parametrize(
    "cin,cout,stride,groups",
    [(8, 8, 1, 1), (8, 16, 1, 1), (8, 16, 2, 1), (8, 8, 1, 4), (8, 8, 1, 8), (8, 16, 2, 8)],
)
def test_repconv_fuse_equivalent(cin, cout, stride, groups):
    block = RepConv(cin, cout, 3, stride)
    # an arch's layers record ([out, in, groups]) can make a RepConv grouped: its fold failed
    # or, depthwise, was broadcast into a dense conv (audit50 reparam F4)
    for branch in (block.dense, block.one) if groups > 1 else ():
        old = branch.conv
        branch.conv = nn.Conv2d(
            cin, cout, old.kernel_size, stride, old.padding, groups=groups, bias=False
        )
    _randomize_bn(block)
    block.eval()
    x = torch.randn(2, cin, 17, 17)
    with torch.no_grad():
        ref = block(x)
        block.fuse()
        out = block(x)
    assert block.fused is not None and block.fused.groups == groups
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_a_repconv_of_branches_grouped_unlike_is_not_folded():
    block = RepConv(8, 8, 3)
    block.one.conv = nn.Conv2d(8, 8, 1, groups=2, bias=False)
    with pytest.raises(ModelError, match="groups=1 and its 1x1 conv groups=2"):
        block.fuse()


def test_a_checkpoint_that_cannot_fold_is_named_by_the_runtime(tmp_path):
    """review2 F5: predict/val's error line named the fold, not the file."""
    from yoloslim.runtime.backends import load_backend

    model = build_model("damo-nano", nc=2)
    block = next(m for m in model.modules() if isinstance(m, RepConv))
    c = block.one.conv
    block.one.conv = nn.Conv2d(c.in_channels, c.out_channels, 1, c.stride, groups=2, bias=False)
    path = save_checkpoint(tmp_path / "grouped.pt", model, imgsz=64)
    with pytest.raises(ModelError, match=r"grouped\.pt: RepConv: .* do not fold"):
        load_backend(path)


def test_conv_bn_fuse_equivalent():
    m = ConvBNAct(4, 6, 3)
    _randomize_bn(m)
    m.eval()
    x = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        ref = m(x)
        fused = fuse_conv_bn(m.conv, m.bn)
        torch.testing.assert_close(m.act(fused(x)), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_conv_bn_fuse_keeps_the_padding_mode(mode):
    conv, bn = nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode), nn.BatchNorm2d(4)
    _randomize_bn(bn)
    bn.eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fuse_conv_bn(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_detector_fuse_equivalent_raw_outputs():
    model = build_model("damo-nano", nc=3)
    _randomize_bn(model)
    model.eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        ref = model.forward_raw(x)
        fused = copy.deepcopy(model).fuse()
        out = fused.forward_raw(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert count_params(fused) < count_params(model)


def test_a_detector_fused_in_train_mode_is_the_eval_models_deploy_form():
    # audit45 reparam F3: it stayed in train mode, its output the raw training one
    model = build_model("damo-nano", nc=3)
    _randomize_bn(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = copy.deepcopy(model).eval()(x)
        fused = model.train().fuse()
        assert fused is model and not any(m.training for m in fused.modules())
        torch.testing.assert_close(fused(x), ref, atol=1e-4, rtol=1e-4)


def _shrink(model):
    """Simulate structured pruning of one CSP mid width (a conv and its consumers)."""
    stage = model.backbone.stages[2].body
    mid = stage.conv1.conv.out_channels
    keep = mid // 2
    stage.conv1.conv = nn.Conv2d(stage.conv1.conv.in_channels, keep, 1, bias=False)
    stage.conv1.bn = nn.BatchNorm2d(keep)
    old = stage.conv3.conv
    stage.conv3.conv = nn.Conv2d(old.in_channels - (mid - keep), old.out_channels, 1, bias=False)
    return model


def test_arch_round_trip_with_changed_channels(tmp_path):
    model = _shrink(build_model("damo-nano", names=["a", "b"]))
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    arch = arch_of(model)
    assert (
        arch["layers"]["backbone.stages.2.body.conv1.conv"][0]
        == model.backbone.stages[2].body.conv1.conv.out_channels
    )
    path = save_checkpoint(tmp_path / "p.pt", model, imgsz=64)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == FORMAT and ckpt["names"] == ["a", "b"]
    rebuilt, _ = load_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), ref)


def test_an_arch_files_layers_that_do_not_fit_name_the_file(tmp_path):
    # build_model, train --model and info said "arch: 'layers' does not match ..." naming no file
    import yaml

    from yoloslim.runtime.describe import describe

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**get_arch("damo-nano", 2), "layers": {"foo": [1, 2]}}))
    for build in (build_model, describe):
        with pytest.raises(ModelError, match=rf"^{path}: arch: 'layers' does not match .*'foo'"):
            build(path)


def test_an_arch_files_bad_layer_shapes_are_one_error_naming_file_and_layer(tmp_path, caplog):
    # audit44 models F2: a negative, string, short or mismatched entry was torch's traceback
    import yaml

    model = _shrink(build_model("damo-nano", names=["a", "b"]))
    conv, bn = "backbone.stages.1.down.dense.conv", "backbone.stages.1.down.dense.bn"
    good = arch_of(model)
    cases = {
        "neg": ({conv: [-5, 16]}, rf"layers\['{conv}'\]=\[-5, 16\] must be \[out, in\]"),
        "str": ({conv: ["a", 16]}, rf"layers\['{conv}'\]=\['a', 16\] must be"),
        "huge": ({conv: [2_000_000, 96]}, r"integers from 1 to 16384 \(65536 for a conv"),
        "short": ({conv: [24]}, rf"layers\['{conv}'\]=\[24\] is not the shape of its layer"),
        "unfit": ({conv: [32, 16], bn: [24]}, "its 'layers' do not fit together"),
    }
    for name, (edit, said) in cases.items():
        path = tmp_path / f"{name}.yaml"
        arch = {**good, "layers": {**good["layers"], **edit}}
        path.write_text(yaml.safe_dump(arch))
        with pytest.raises(ModelError, match=rf"^{path}: arch: .*{said}"):
            build_model(path)
    # audit44 models F1: a stage width edited in an arch file that carries 'layers' builds the
    # recorded widths: said, not silent
    path = tmp_path / "edited.yaml"
    good["backbone"]["stages"][2]["out"] += 16
    path.write_text(yaml.safe_dump(good))
    with caplog.at_level(logging.WARNING, logger="yoloslim"):
        built = build_model(path)
    assert f"{path}: its 'layers' record (a pruned model's shapes) sets the width" in caplog.text
    assert built.backbone.stages[2].down.dense.conv.out_channels == 48


def test_a_checkpoint_of_more_classes_than_the_width_limit_loads(tmp_path):
    # review F3: its class convs' [nc, in] were held to the width limit (16,384)
    path = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=20_000), imgsz=64)
    assert load_checkpoint(path)[0].nc == 20_000


def test_a_layers_groups_that_do_not_divide_its_channels_are_named(tmp_path):
    # review F13: nn.Conv2d's ValueError was a traceback
    import yaml

    arch = arch_of(_shrink(build_model("damo-nano", nc=2)))
    conv = "backbone.stages.1.down.dense.conv"
    arch["layers"][conv] = [*arch["layers"][conv][:2], 7]
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(arch))
    with pytest.raises(ModelError, match=rf"^{path}: arch: layers\['{conv}'\]=.*divisible"):
        build_model(path)


def test_describe_takes_a_checkpoint_whose_arch_is_a_name_or_whose_map_is_no_number(tmp_path):
    # audit44 models F5: read_checkpoint takes both, describe (and info) raised
    from yoloslim.runtime.describe import describe

    path = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    ck = torch.load(path, weights_only=True)
    torch.save({**ck, "arch": "damo-nano", "meta": {"map": "high"}}, tmp_path / "n.pt")
    d = describe(tmp_path / "n.pt")
    assert d["arch"] == "damo-nano" and d["map"] is None


def test_a_model_files_suffix_counts_in_any_case(tmp_path):
    # train --model ARCH.YAML said "unknown model" (its suffix compared as written), while
    # info read the same file; a .PT checkpoint was "an unknown artifact type" to info
    import yaml

    from yoloslim.models.checkpoint import trained_imgsz
    from yoloslim.nas.space import resolve_arch
    from yoloslim.runtime.describe import describe

    arch = tmp_path / "ARCH.YAML"
    arch.write_text(yaml.safe_dump(get_arch("damo-nano", 2)))
    assert build_model(str(arch)).nc == 2
    assert resolve_arch(str(arch))[0]["nc"] == 2
    ckpt = save_checkpoint(tmp_path / "BEST.PT", build_model(str(arch)), imgsz=64)
    assert trained_imgsz(str(ckpt)) == 64
    assert resolve_arch(str(ckpt))[0]["nc"] == 2
    assert describe(ckpt)["imgsz"] == 64
    from yoloslim.runtime.backends import check_artifact

    onnx = tmp_path / "MODEL.ONNX"
    onnx.write_bytes(b"")
    assert check_artifact(onnx) == onnx  # its kind known: onnxruntime runs it


def test_unknown_model_name():
    with pytest.raises(ModelError, match="unknown model 'damo-huge'"):
        build_model("damo-huge")


@pytest.mark.parametrize("kw", [{"nc": 0}, {"nc": -3}, {"nc": 2.5}, {"nc": True}, {"names": []}])
def test_bad_class_count(kw):
    with pytest.raises(ModelError, match="number of classes >= 1"):
        build_model("damo-nano", **kw)


def test_a_numpy_class_count_is_a_plain_int():
    """``nc`` from numpy (a label array's ``max() + 1``) builds, and the arch holds an int."""
    m = build_model("damo-nano", nc=np.int64(3))
    assert m.nc == 3 and type(arch_of(m)["nc"]) is int


def test_register_duplicate_or_empty_name_raises():
    with pytest.raises(ModelError, match="already registered"):
        register_model("damo-nano")(lambda: {})
    for name in ("", " ", None):
        with pytest.raises(ModelError, match="a model name must be a non-empty string"):
            register_model(name)
    assert "" not in list_models()


def test_a_registered_function_that_returns_no_arch_dict_is_named(monkeypatch):
    # it was "'int' object does not support item assignment" in build_model (audit48 api F5)
    from yoloslim.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_model("zz-not-a-dict")(lambda: 5)
    with pytest.raises(ModelError, match=r"^model 'zz-not-a-dict': its registered function "):
        build_model("zz-not-a-dict")


def test_bad_arch_keys():
    arch = build_model("damo-nano").spec
    bad = copy.deepcopy(arch)
    bad["neck"]["widht"] = 3
    with pytest.raises(ModelError, match="unknown key.*widht"):
        build_model(bad)
    bad = copy.deepcopy(arch)
    bad["backbone"]["stages"][1]["kernel"] = 4
    with pytest.raises(ModelError, match=r"stages\[1\].kernel"):
        build_model(bad)
    bad = copy.deepcopy(arch)
    bad["act"] = "gelu"
    with pytest.raises(ModelError, match=r"act='gelu' must be silu, relu or lrelu"):
        build_model(bad)
    bad = copy.deepcopy(arch)
    bad["backbone"]["stages"][2]["block"] = "dense"
    with pytest.raises(ModelError, match=r"stages\[2\].block='dense' must be conv, csp or res"):
        build_model(bad)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"model": 1}, p)  # as another tool's checkpoint: says yoloslim takes none
    with pytest.raises(ModelError, match=r"not a yoloslim checkpoint \(format=None, expected "
                       r"'yoloslim/1'\); .* another tool saved \(Ultralytics, for one\)"):  # fmt: skip
        load_checkpoint(p)
    q = tmp_path / "garbage.pt"
    q.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="garbage.pt"):
        load_checkpoint(q)
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(
        ModelError, match="garbage.pt: not a yoloslim checkpoint .not a PyTorch zip"
    ):
        load_checkpoint(q)
    pickled = tmp_path / "pickled.pt"
    torch.save({"a": ModelError("x")}, pickled)  # a class instance: needs unpickling
    with pytest.raises(ModelError, match="pickled Python objects.*Ultralytics") as err:
        load_checkpoint(pickled)
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)
    scripted = tmp_path / "scripted.pt"  # an export renamed: torch spoke of its 2.6 defaults
    torch.jit.save(torch.jit.script(torch.nn.ReLU()), scripted)
    with pytest.raises(ModelError, match=r"scripted.pt: .* \(a TorchScript file .*give the "):
        load_checkpoint(scripted)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": 1}, run / "best.pt")
    with pytest.raises(ModelError, match=r"is a folder.*did you mean .*best\.pt"):
        load_checkpoint(run)
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="exported artifact"):
        load_checkpoint(tmp_path / "m.onnx")
    (tmp_path / "arch.yaml").write_text("name: nas\n")  # what nas writes: untrained
    with pytest.raises(ModelError, match=r"architecture file .* train it first"):
        load_checkpoint(tmp_path / "arch.yaml")


def test_atomic_save_leaves_no_temp(tmp_path):
    model = build_model("damo-nano", nc=2)
    save_checkpoint(tmp_path / "a.pt", model, imgsz=64)
    save_checkpoint(tmp_path / "a.pt", model, imgsz=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_save_checkpoint_refuses_bad_imgsz_and_folder(tmp_path):
    model = build_model("damo-nano", nc=2)
    with pytest.raises(ConfigError, match=r"imgsz=100 must be a multiple of 32"):
        save_checkpoint(tmp_path / "bad.pt", model, imgsz=100)
    folder = tmp_path / "ck"
    folder.mkdir()
    with pytest.raises(ModelError, match=r"ck is a folder; give a file path such as .*model\.pt"):
        save_checkpoint(folder, model, imgsz=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no checkpoint, no temp file
    assert not any(folder.iterdir())


def test_a_detector_built_directly_taps_the_last_three_stages_as_build_model_does():
    from yoloslim.models import Detector
    from yoloslim.models.arch import validate_arch
    from yoloslim.models.registry import get_arch

    arch = copy.deepcopy(get_arch("damo-nano", nc=2))
    stages = arch["backbone"]["stages"]
    stages.insert(0, {**stages[0], "stride": 1})  # a sixth stage first, no out_indices given
    arch["backbone"].pop("out_indices", None)
    direct, built = Detector(arch), Detector(validate_arch(arch))
    assert direct.backbone.out_indices == built.backbone.out_indices == (3, 4, 5)


def test_prune_and_bench_count_a_plain_modules_params_as_export_folds_it():
    from yoloslim.compress.prune_width import profile

    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    # the BN folds into the conv: 8 * 3 * 9 weights + 8 biases, its own 16 parameters gone
    assert profile(m, 32)["params"] == model_profile(m, 32)["params_deploy"] == 224
    assert model_profile(m, 32)["params"] == 240 and any(
        isinstance(x, nn.BatchNorm2d) for x in m
    )  # the model itself is untouched


def _nano_arch():
    from yoloslim.models.registry import get_arch

    return copy.deepcopy(get_arch("damo-nano", nc=2))


def _edit(path: str, value):
    arch = _nano_arch()
    *keys, last = path.split(".")
    d = arch
    for k in keys:
        d = d[int(k)] if k.isdigit() else d[k]
    d[int(last) if last.isdigit() else last] = value
    return arch


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        # reversed taps built and decoded the stride-8 map at stride 32 (anchors far outside)
        ("backbone.out_indices", [4, 3, 2], r"out_indices=\[4, 3, 2\] .* increasing order"),
        ("backbone.out_indices", [2, 3, 3], "increasing order"),
        ("backbone.out_indices", 4, "must be 3 integers"),
        ("head.strides", [16, 32, 32], r"head.strides=\[16, 32, 32\] must each double"),
        ("head.strides", [8, 16], "must be 3 integers"),
        ("head.strides", "8,16,32", "must be 3 integers"),
        ("head.width", [32, 32], "head.width=.* must be 3 integers"),
        ("head.width", -8, r"head.width=-8 must be an integer >= 1"),
        ("neck.kernel", 4, "neck.kernel=4 must be the integer 1, 3, 5 or 7"),
        # 3.0 passed (3.0 in (1, 3, 5, 7)) and the conv refused it with a TypeError
        ("backbone.stages.1.kernel", 3.0, r"stages\[1\].kernel=3.0 must be the integer 1, 3"),
        ("neck.depth", -1, "neck.depth=-1 must be an integer >= 0"),
        ("neck.depth", "two", "neck.depth='two'"),
        ("neck.ratio", 0, r"neck.ratio=0 must be a number in \(0, 4\]"),
        ("backbone.stages.1.ratio", True, r"stages\[1\].ratio=True"),
        # a stage after the last tap fed nothing: never trained, and DDP failed on it
        ("backbone.out_indices", [1, 2, 3], r"leaves stage\(s\) \[4\] after the last one"),
        # a typo's size: an allocator's traceback, or minutes of building
        ("nc", 1_000_000_000, r"nc=1000000000 is over 100,000, the most"),
        ("backbone.stages.4.out", 10_000_000, r"stages\[4\].out=10000000 is over 16,384"),
        ("backbone.stages.2.depth", 1_000_000, r"stages\[2\].depth=1000000 is over 256"),
        ("head.reg_max", 1_000_000, r"head.reg_max=1000000 is over 256"),
        ("head.num_convs", 100_000, r"head.num_convs=100000 is over 64"),
        ("name", [1, 2], r"name=\[1, 2\] must be a non-empty string"),
    ],
)
def test_arch_mistakes_are_named_not_built(path, value, match, tmp_path):
    import yaml

    with pytest.raises(ModelError, match=match):
        build_model(_edit(path, value))
    f = tmp_path / "arch.yaml"
    f.write_text(yaml.safe_dump(_edit(path, value)))
    with pytest.raises(ModelError, match=r"arch\.yaml: arch: "):
        build_model(str(f))


def test_an_arch_file_with_a_key_twice_or_no_text_is_refused_naming_it(tmp_path):
    import yaml

    text = yaml.safe_dump(_nano_arch(), sort_keys=False)
    twice = tmp_path / "twice.yaml"  # the second key won: a stage built 48 channels wide
    twice.write_text(text.replace("name:", "nc: 3\nname:", 1))
    with pytest.raises(ModelError, match=r"twice\.yaml: not valid YAML \(line \d+, column 1: "
                       r"found the key 'nc' twice\)"):  # fmt: skip
        build_model(str(twice))
    latin = tmp_path / "latin.yaml"  # a UnicodeDecodeError traceback
    latin.write_bytes(text.replace("name: ", "name: caf\xe9", 1).encode("latin-1"))
    with pytest.raises(ModelError, match=r"latin\.yaml: not a text file, so no arch"):
        build_model(str(latin))
    # a merge key (<<: *anchor) is YAML, and a key it brings may be given again
    merged = tmp_path / "merged.yaml"
    merged.write_text(
        "nc: 4\nbackbone:\n  stages:\n"
        "  - {block: conv, out: 16, depth: 0, kernel: 3, stride: 2, ratio: 1.0}\n"
        "  - &csp {block: csp, out: 24, depth: 1, kernel: 3, stride: 2, ratio: 0.5}\n"
        "  - {<<: *csp, out: 32}\n  - {<<: *csp, out: 48, kernel: 5}\n  - {<<: *csp, out: 64}\n"
        "  out_indices: [2, 3, 4]\nneck: {out: [32, 48, 64]}\nhead: {strides: [8, 16, 32]}\n"
    )
    stages = load_arch_yaml(merged)["backbone"]["stages"]
    assert [(st["out"], st["kernel"], st["block"]) for st in stages[2:]] == [
        (32, 3, "csp"), (48, 5, "csp"), (64, 3, "csp"),
    ]  # fmt: skip


def test_archs_that_built_before_still_build(caplog):
    # a conv stage given blocks built none (warned about now, not refused: checkpoints of
    # it hold no weights for them), and tuples where lists are written
    arch = _edit("backbone.stages.0.depth", 3)
    with caplog.at_level("WARNING", logger="yoloslim.models.arch"):
        model = build_model(arch)
    assert "stages[0] is a conv stage (one strided 3x3 conv): its depth=3 is not built" in (
        caplog.text
    )
    assert count_params(model) == count_params(build_model(_nano_arch()))
    arch = _nano_arch()
    arch["backbone"]["out_indices"] = tuple(arch["backbone"]["out_indices"])
    arch["head"]["strides"] = tuple(arch["head"]["strides"])
    assert build_model(arch).head.strides == (8, 16, 32)
    assert arch_of(build_model(arch))["backbone"]["out_indices"] == [2, 3, 4]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_fusing_keeps_the_models_dtype(dtype):
    # the fused convs came out in float32: a dtype error at the next forward
    model = build_model("damo-nano", nc=2).eval()
    _randomize_bn(model)
    model = model.to(dtype)
    x = torch.rand(1, 3, 64, 64, dtype=dtype)
    with torch.no_grad():
        ref = model(x)
        model.fuse()
        out = model(x)
    assert {p.dtype for p in model.parameters()} == {dtype}
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05 if dtype == torch.bfloat16 else 1e-9)
    assert model_profile(model, 64)["gflops"] > 0


def test_a_repconv_whose_branches_were_fused_first_still_fuses():
    block = RepConv(8, 8, 3).eval()
    _randomize_bn(block)
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        ref = block(x)
        block.dense.fuse()
        block.one.fuse()
        block.fuse()  # read the BN of an already fused branch: AttributeError
        torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)


def test_a_pruned_arch_built_for_other_classes_keeps_its_widths():
    from yoloslim.compress.prune_width import prune_width

    model = build_model("damo-nano", nc=3)
    prune_width(model, criterion="l1", imgsz=64, ratio=0.5)
    arch = arch_of(model)
    five = build_model(arch, nc=5)  # dropped every pruned width: the unpruned model
    width = model.head.cls_preds[0].in_channels  # pruned
    assert count_params(five) - count_params(model) == 2 * 3 * (width + 1)  # 2 more classes
    assert five.eval()(torch.rand(1, 3, 64, 64)).shape[-1] == 4 + 5


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("names", ["a"], "names has 1 entries but its arch has nc=2"),
        ("arch", None, "arch is NoneType, not a mapping"),
        ("imgsz", 100, "imgsz=100 is not a multiple of 32"),
        ("imgsz", "abc", "imgsz='abc' is not a multiple of 32"),
        ("state_dict", [], "state_dict is list, not a mapping"),
        ("names", None, "names=None is not a list of class names"),
        # audit18: tracebacks, or an arch.yaml path read from disk, or 447 lines of torch's
        ("meta", "not a dict", "meta is str, not a mapping"),
        ("meta", {"history": "oops"}, r"meta.history is not a list of steps"),
        ("arch", "/tmp/arch.yaml", r"arch='/tmp/arch.yaml' is not a mapping nor a registered"),
        (
            "arch",
            "damo-tiny",
            r"its weights do not fit its arch \(\d+ missing, \d+ not in the arch, \d+ of "
            r"another shape; first: backbone\.\S+ is \[\d+, \d+, 3, 3\], its arch builds",
        ),
    ],
)
def test_a_damaged_checkpoint_is_named_with_its_key(tmp_path, key, value, match):
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model("damo-nano", nc=2), imgsz=64)
    ckpt = torch.load(path, weights_only=True)
    ckpt[key] = value
    torch.save(ckpt, path)
    with pytest.raises(ModelError, match=rf"m\.pt: damaged checkpoint: {match}") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


def test_a_bit_flipped_in_a_checkpoint_is_refused_not_loaded_as_another_weight(tmp_path):
    # audit44 models F6: torch.load never checks the zip's CRCs
    path = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the weights' records
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)  # loads, with one weight changed
    with pytest.raises(ModelError, match=r"m\.pt: damaged: its record \S+ fails its CRC check"):
        load_checkpoint(path)


def test_a_checkpoint_with_weights_that_are_not_finite_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_model("damo-nano", nc=2), imgsz=64)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["head.cls_preds.0.weight"][0, 0] = float("nan")
    torch.save(ckpt, path)
    with pytest.raises(ModelError, match=r"m\.pt: its weights are not finite \(head.cls_preds.0"):
        load_checkpoint(path)
