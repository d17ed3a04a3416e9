"""Zero-shot NAS: the MAE-DET score, exact costs, budgets, the search and its outputs."""

import copy
import dataclasses
import importlib
import json
import math
import random
import re
import shutil
import types

import pytest
import torch
import yaml
from torch import nn

import yoloslim as ys
from yoloslim.bench.flops import model_profile
from yoloslim.cli.main import main
from yoloslim.data.synth import synthesize
from yoloslim.errors import ConfigError
from yoloslim.models import build_model
from yoloslim.models.registry import get_arch
from yoloslim.nas import (
    Budget,
    LatencySettings,
    SearchSpace,
    entropy_score,
    genome_of,
    measure_cost,
    search,
    search_from_dict,
)
from yoloslim.nas.budget import meta_detector

IMGSZ = 64
SPACE = SearchSpace(
    widths=((8, 16), (8, 32), (16, 48), (16, 64), (24, 96)),
    depths=((0, 0), (1, 2), (1, 2), (1, 2), (1, 2)),
)


def _arch(widths, depths, kernel=3, ratio=0.5, nc=2) -> dict:
    genome = tuple(
        (w, 0 if i == 0 else depths[i - 1], 3 if i == 0 else kernel, 1.0 if i == 0 else ratio)
        for i, w in enumerate(widths)
    )
    return SPACE.arch(genome, nc)


def _score(arch, seed=0, **kw) -> float:
    kw.setdefault("repeats", 1)
    kw.setdefault("batch", 2)
    return entropy_score(meta_detector(arch).backbone, IMGSZ, seed=seed, **kw)["score"]


# -- score --------------------------------------------------------------------------------------


def test_score_is_deterministic_for_a_seed():
    arch = _arch([16, 16, 32, 64, 96], [1, 1, 1, 1])
    assert _score(arch, seed=3) == _score(arch, seed=3)
    assert _score(arch, seed=3) != _score(arch, seed=4)


@pytest.mark.parametrize("method", ["gaussian", "analytic"])
def test_wider_and_deeper_score_higher_at_the_same_layout(method):
    base = _arch([16, 16, 32, 48, 64], [1, 1, 1, 1])
    wider = _arch([16, 32, 64, 96, 128], [1, 1, 1, 1])
    deeper = _arch([16, 16, 32, 48, 64], [2, 2, 2, 2])
    assert _score(wider, method=method) > _score(base, method=method)
    assert _score(deeper, method=method) > _score(base, method=method)


def test_stem_stage_score_matches_the_gaussian_analysis():
    # one 3x3 conv of N(0,1) weights on N(0,1) input: std ~ sqrt(fan_in) = sqrt(27)
    # (a little less at the zero-padded border), so S_0 = log(sqrt(27)) + log(C_0)
    arch = _arch([16, 16, 32, 48, 64], [1, 1, 1, 1])
    s = entropy_score(meta_detector(arch).backbone, 128, repeats=2)
    assert s["stages"][0] == pytest.approx(0.5 * math.log(27) + math.log(16), abs=0.05)
    # stage weights [0, 0, 1, 1, 6] by default
    assert s["score"] == pytest.approx(
        sum(a * v for a, v in zip([0, 0, 1, 1, 6], s["stages"], strict=True))
    )
    assert all(b > a for a, b in zip(s["stages"], s["stages"][1:], strict=False))


def test_analytic_score_is_the_closed_form_of_the_gaussian_one():
    # closed form: exactly log(sqrt(27)) + log(C_0) for the stem, no seed, no spread
    arch = _arch([16, 16, 32, 48, 64], [1, 1, 1, 1])
    bb = meta_detector(arch).backbone
    an = entropy_score(bb, 128, method="analytic")
    assert an["stages"][0] == pytest.approx(0.5 * math.log(27) + math.log(16), abs=1e-9)
    assert an["std"] == 0 and entropy_score(bb, 128, method="analytic", seed=5) == an
    # the Gaussian forward measures the same stds (less the zero-padded borders): within 3 %
    # per arch, and it ranks sampled archs the same way
    rng = random.Random(0)
    archs = [SPACE.arch(SPACE.sample(rng), 2) for _ in range(8)]
    g = [entropy_score(meta_detector(a).backbone, 128, repeats=2, batch=2)["score"] for a in archs]
    a = [entropy_score(meta_detector(a).backbone, 128, method="analytic")["score"] for a in archs]
    assert all(abs(x - y) < 0.03 * y for x, y in zip(g, a, strict=True))
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    concordant = sum((g[i] - g[j]) * (a[i] - a[j]) > 0 for i, j in pairs)
    assert concordant >= 0.9 * len(pairs)
    with pytest.raises(ConfigError, match="score method='entropy'"):
        entropy_score(bb, 128, method="entropy")


def test_score_rejects_mismatched_stage_weights():
    with pytest.raises(ConfigError, match="stage_weights"):
        entropy_score(meta_detector(get_arch("damo-nano", 2)).backbone, 64, stage_weights=[1, 1])


# -- costs --------------------------------------------------------------------------------------


def test_costs_equal_model_profile_exactly():
    rng = random.Random(0)
    archs = [get_arch("damo-nano", 3)] + [SearchSpace().arch(SearchSpace().sample(rng), 2)]
    for arch in archs:
        cost = measure_cost(arch, 128)
        prof = model_profile(build_model(arch), 128, nc=arch["nc"])
        assert cost.gflops == prof["gflops"]
        assert cost.params == prof["params"]
        assert cost.params_deploy == prof["params_deploy"]


def test_effectiveness_is_depth_over_geometric_mean_width():
    """DeepMAD's rho from the deploy model's own convs, stage by stage, equals the cost's."""
    for arch in (get_arch("damo-nano", 3), _arch([8, 16, 32, 48, 64], [2, 1, 2, 1], kernel=5)):
        model = build_model(arch).eval()
        model.fuse()
        logs, rhos = [], []
        for stage in model.backbone.stages:
            logs += [math.log(m.out_channels) for m in stage.modules() if isinstance(m, nn.Conv2d)]
            rhos.append(len(logs) / math.exp(sum(logs) / len(logs)))
        cost = measure_cost(arch, 64)
        assert cost.layers == len(logs)
        assert cost.effectiveness == pytest.approx(max(rhos), rel=1e-12)
    deeper = measure_cost(_arch([8, 16, 32, 48, 64], [2, 2, 2, 2]), 64).effectiveness
    base = measure_cost(_arch([8, 16, 32, 48, 64], [1, 1, 1, 1]), 64).effectiveness
    wider = measure_cost(_arch([16, 32, 48, 64, 96], [1, 1, 1, 1]), 64).effectiveness
    assert deeper > base > wider


# -- budgets ------------------------------------------------------------------------------------


def test_bad_budgets_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="at least one"):
        Budget()
    with pytest.raises(ConfigError, match="flops"):
        Budget(flops=-1.0)
    with pytest.raises(ConfigError, match="unknown key"):
        Budget.from_dict({"flop": 1.0})
    with pytest.raises(ConfigError, match=r"flops=1e-05 GFLOPs \(smallest"):
        search(imgsz=IMGSZ, budget=Budget(flops=1e-5), space=SPACE, nc=2, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused at once: no folder, no empty cache file
    with pytest.raises(ConfigError, match="params=0.001 M"):
        search(imgsz=IMGSZ, budget=Budget(params=0.001, layers=3), space=SPACE, nc=2)
    with pytest.raises(ConfigError, match=r"effectiveness=0.001 \(widest, shallowest"):
        search(imgsz=IMGSZ, budget=Budget(effectiveness=0.001), space=SPACE, nc=2)
    with pytest.raises(ConfigError, match="imgsz"):
        search(imgsz=100, budget=Budget(flops=1.0), space=SPACE)
    with pytest.raises(ConfigError, match="unknown key"):
        search_from_dict({"budget": {"flops": 1.0}, "iteratoins": 3})
    with pytest.raises(ConfigError, match="unknown key"):
        SearchSpace.from_dict({"width": [[8, 16]]})


def _small_search(**kw):
    kw.setdefault("budget", Budget(flops=0.03, params=0.25))
    kw.setdefault("iterations", 10)
    kw.setdefault("latency", LatencySettings(warmup=1, runs=3))
    return search(imgsz=IMGSZ, space=SPACE, population=4, nc=2, init_repeats=2, top_k=3, **kw)


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    out = tmp_path_factory.mktemp("nas")
    return _small_search(seed=1, out=out), out


def test_search_is_deterministic_and_meets_its_budgets(found):
    a, b = found[0], _small_search(seed=1)
    assert a.arch == b.arch and a.score == b.score
    assert [x["score"] for x in a.best] == [x["score"] for x in b.best]
    assert a.report["evaluated"] > 5
    for entry in a.best:
        assert entry["gflops"] <= 0.03 and entry["params_deploy"] <= 0.25e6
        assert entry["latency_ms"] > 0  # measured for the report
    scores = [x["score"] for x in a.best]
    assert scores == sorted(scores, reverse=True) and a.score == scores[0]


def test_neighbours_are_every_one_step_change_of_one_or_two_genes():
    g = genome_of(_arch([8, 16, 32, 32, 48], [1, 2, 1, 2]))
    ns = SPACE.neighbours(g)
    assert len(ns) == len(set(ns)) and g not in ns
    changed = []
    for n in ns:
        assert SPACE.contains(n)
        diff = [(i, j) for i in range(5) for j in range(4) if n[i][j] != g[i][j]]
        assert 1 <= len(diff) <= 2
        for i, j in diff:  # one step along that gene's choices
            choices = SPACE._choices(i)[j]
            assert abs(choices.index(n[i][j]) - choices.index(g[i][j])) == 1
        changed.append(len(diff))
    # the two-gene moves are every pair of single moves on different genes
    moves = [n for n, c in zip(ns, changed, strict=True) if c == 1]
    genes = [next((i, j) for i in range(5) for j in range(4) if m[i][j] != g[i][j]) for m in moves]
    pairs = sum(a != b for k, a in enumerate(genes) for b in genes[k + 1 :])
    assert changed.count(2) == pairs and len(moves) > 0
    # moving one block from stage 2 to stage 1 keeps the layer count: a two-gene move
    swap = tuple((w, d + (i == 1) - (i == 2), k, r) for i, (w, d, k, r) in enumerate(g))
    assert swap in ns


def test_polish_climbs_to_the_best_feasible_neighbour_and_reports_it():
    kw = dict(seed=1, score_method="analytic")  # closed form: cheap, so every neighbour is checked
    plain = _small_search(polish=0, **kw)
    res = _small_search(polish=1, **kw)
    p, budget = res.report["polish"], Budget(flops=0.03, params=0.25)
    assert plain.report["polish"]["evaluated"] == 0
    assert p["score_before"] == plain.score  # the same evolution ran first
    feasible = [
        a
        for a in (SPACE.arch(n, 2) for n in SPACE.neighbours(genome_of(plain.arch)))
        if not budget.violations(measure_cost(a, IMGSZ))
    ]
    top = max(
        entropy_score(meta_detector(a).backbone, IMGSZ, method="analytic")["score"]
        for a in feasible
    )
    assert res.score == p["score_after"] == max(plain.score, top)
    assert p["improved"] == int(top > plain.score) and p["evaluated"] > 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="polish="):
            _small_search(polish=bad)


def test_analytic_search_is_seed_free_in_its_score_and_reported():
    res = _small_search(seed=1, score_method="analytic")
    assert res.report["score_method"] == "analytic" and "closed form" in res.report["score"]
    # no random weights, no Gaussian input: the report does not claim settings it ignored
    assert res.report["init_repeats"] is None and res.report["score_batch"] is None
    best = meta_detector(res.arch).backbone
    assert res.score == entropy_score(best, IMGSZ, method="analytic")["score"]
    assert all(e["gflops"] <= 0.03 and e["params_deploy"] <= 0.25e6 for e in res.best)
    with pytest.raises(ConfigError, match="score_method='fast'"):
        _small_search(score_method="fast")


def test_effectiveness_budget_is_met_even_when_the_smallest_network_breaks_it():
    small = measure_cost(SPACE.arch(SPACE.smallest(), 2), IMGSZ).effectiveness
    wide = measure_cost(SPACE.arch(SPACE.widest_shallowest(), 2), IMGSZ).effectiveness
    assert wide < small
    rho = (wide + small) / 2  # the thin smallest network is over this bound
    res = _small_search(budget=Budget(effectiveness=rho), iterations=20)
    assert res.report["rejected"]["effectiveness"] > 0
    for entry in res.best:
        assert entry["effectiveness"] <= rho
        assert measure_cost(entry["arch"], IMGSZ).effectiveness == entry["effectiveness"]
    # only the smallest network fits these FLOPs, and it is too thin for rho: a clear error
    flops = measure_cost(SPACE.arch(SPACE.smallest(), 2), IMGSZ).gflops
    with pytest.raises(ConfigError, match="the budgets may conflict"):
        _small_search(budget=Budget(flops=flops, effectiveness=rho))


def test_a_budget_just_below_the_smallest_network_shows_both_apart():
    # at 4 digits both read 0.5407 M: copying the "smallest" as the budget was refused again
    cost = measure_cost(SPACE.arch(SPACE.smallest(), 2), IMGSZ)
    params = cost.params_deploy / 1e6
    with pytest.raises(ConfigError) as e:
        _small_search(budget=Budget(params=round(params * (1 - 1e-5), 9)))
    shown = re.search(r"params=([\d.]+) M \(smallest: ([\d.]+) M\)", str(e.value))
    assert shown and float(shown[1]) < float(shown[2]) == pytest.approx(params, rel=1e-9)


def test_latency_budget_rejects_slow_candidates_and_caches(monkeypatch):
    evaluator_mod = importlib.import_module("yoloslim.nas.evaluator")

    calls = []

    def fake_latency(arch, imgsz, settings):  # deterministic "latency": proportional to params
        calls.append(json.dumps(arch, sort_keys=True))
        return measure_cost(arch, imgsz).params_deploy / 1e4

    monkeypatch.setattr(evaluator_mod, "measure_latency_ms", fake_latency)
    _time_again_as(monkeypatch, lambda arch: measure_cost(arch, IMGSZ).params_deploy / 1e4)
    res = _small_search(budget=Budget(latency_ms=12.0, layers=40), iterations=6)
    assert all(e["latency_ms"] <= 12.0 and e["layers"] <= 40 for e in res.best)
    assert res.report["rejected"]["latency_ms"] > 0
    assert len(calls) == len(set(calls))  # one measurement per candidate
    confirmed = {"rounds": 5, "timed": 3, "from_cache": 0, "over_budget": 0}
    assert res.report["latency"]["confirmed"] == confirmed


def _time_again_as(monkeypatch, latency, calls=None):
    """The search's second timing of its best candidates (interleaved rounds) gives
    ``latency(arch)`` in every round."""
    evaluator_mod = importlib.import_module("yoloslim.nas.evaluator")

    def rounds(archs, imgsz, settings, n):
        if calls is not None:
            calls.extend(archs)
        return [[latency(arch)] * n for arch in archs]

    monkeypatch.setattr(evaluator_mod, "measure_rounds", rounds)


def test_the_best_are_timed_again_and_those_over_the_latency_budget_dropped(monkeypatch):
    # one sample decides feasibility during the search; evolution then favours candidates
    # whose sample came out low. Here every sample is half the candidate's latency in rounds
    evaluator_mod = importlib.import_module("yoloslim.nas.evaluator")

    def true_ms(arch):
        return measure_cost(arch, IMGSZ).params_deploy / 1e4

    monkeypatch.setattr(evaluator_mod, "measure_latency_ms", lambda a, i, s: true_ms(a) / 2)
    timed = []
    _time_again_as(monkeypatch, true_ms, timed)
    free = _small_search(budget=Budget(layers=40), iterations=6)  # no latency budget
    limit = min(e["latency_ms"] for e in free.best) * 1.001  # the others are over it
    res = _small_search(budget=Budget(latency_ms=limit, layers=40), iterations=20)
    assert res.best and all(e["latency_ms"] <= limit for e in res.best)
    assert all(e["latency_ms"] == true_ms(e["arch"]) for e in res.best)  # the rounds' figure
    confirmed = res.report["latency"]["confirmed"]
    assert confirmed["over_budget"] >= 1
    assert confirmed["timed"] == len(res.best) + confirmed["over_budget"] == len(timed) - 3
    # none within it when timed again (the smallest network's sample passes, its rounds do
    # not): an error that says so, not an arch over the budget
    smallest = true_ms(SPACE.arch(SPACE.smallest(), 2))
    with pytest.raises(ConfigError, match=r"none of the \d+ best candidates stays within it"):
        _small_search(budget=Budget(latency_ms=smallest * 0.75))


def test_the_smallest_network_is_timed_again_before_a_latency_budget_is_refused(monkeypatch):
    # a busy machine's one sample of the smallest network (100x its latency) refuses no search
    evaluator_mod = importlib.import_module("yoloslim.nas.evaluator")
    monkeypatch.setattr(evaluator_mod, "measure_latency_ms", lambda a, i, s: 1000.0)

    def evaluator():
        settings = dict(stage_weights=(0, 0, 1, 1, 6), repeats=1, batch=1, seed=0, nc=2)
        settings["imgsz"] = IMGSZ
        budget = Budget(latency_ms=12.0)
        return evaluator_mod.Evaluator(
            space=SPACE, budget=budget, latency=LatencySettings(warmup=1, runs=3), **settings
        )

    rounds = []
    _time_again_as(monkeypatch, lambda arch: 10.0, rounds)
    ev = evaluator()
    evaluator_mod.check_smallest(ev)  # timed again: 10 ms, within the budget
    assert rounds == [SPACE.arch(SPACE.smallest(), 2)]
    # and the search goes by that timing: the smallest network takes part, and the cache
    # keeps it (the slow sample was kept: audit46 nas F3)
    assert ev(SPACE.smallest()) is not None
    assert ev.latency_cache.get(SPACE.arch(SPACE.smallest(), 2)) == 10.0
    _time_again_as(monkeypatch, lambda arch: 20.0)  # still over when timed again: refused
    with pytest.raises(ConfigError, match=r"smallest: 20 ms .*the fastest of 4 timings"):
        evaluator_mod.check_smallest(evaluator())


def test_latency_cache_file_is_reused_by_a_later_search_on_the_same_settings(
    monkeypatch, tmp_path, caplog
):
    evaluator_mod = importlib.import_module("yoloslim.nas.evaluator")
    calls = []

    def fake_latency(arch, imgsz, settings):
        calls.append(arch)
        return measure_cost(arch, imgsz).params_deploy / 1e4

    monkeypatch.setattr(evaluator_mod, "measure_latency_ms", fake_latency)
    _time_again_as(monkeypatch, lambda arch: measure_cost(arch, IMGSZ).params_deploy / 1e4)
    budget = Budget(latency_ms=12.0)
    first = _small_search(budget=budget, iterations=6, out=tmp_path)
    cache = tmp_path / "nas_latency_cache.jsonl"
    lines = cache.read_text().splitlines()
    measured = len(calls)  # and the best 3 timed again, each kept as a line of its own
    assert measured > 3 and len(lines) == 1 + measured + 3
    assert first.report["latency"]["measured"] == measured
    assert first.report["latency"]["from_cache"] == 0
    assert first.report["latency"]["cache"] == str(cache)
    # the same search again: nothing measured (nor timed again), the same result
    timed = []
    _time_again_as(monkeypatch, lambda arch: measure_cost(arch, IMGSZ).params_deploy / 1e4, timed)
    again = _small_search(budget=budget, iterations=6, out=tmp_path)
    assert len(calls) == measured and again.arch == first.arch and timed == []
    assert again.report["latency"]["from_cache"] == measured
    assert again.report["latency"]["measured"] == 0
    assert again.report["latency"]["confirmed"]["from_cache"] == 3
    assert [e["latency_ms"] for e in again.best] == [e["latency_ms"] for e in first.best]
    # other settings (here more timed runs) do not reuse those entries
    other = LatencySettings(warmup=1, runs=4)
    _small_search(budget=budget, iterations=6, out=tmp_path, latency=other)
    assert len(calls) == 2 * measured
    # a line cut short by a stop is skipped, and the next entry starts on a line of its own
    cache.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    torn = _small_search(budget=budget, iterations=6, latency_cache=cache)
    assert torn.report["latency"]["from_cache"] == 2 and "skipped a line" in caplog.text
    assert all(json.loads(line) for line in cache.read_text().splitlines()[4:])
    # False: no file at all
    _small_search(budget=budget, iterations=2, out=tmp_path / "none", latency_cache=False)
    assert not (tmp_path / "none" / "nas_latency_cache.jsonl").exists()
    # a path that cannot be written is said before the search, not after a measurement
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"latency cache .*afile/c.jsonl: cannot write it"):
        _small_search(budget=budget, iterations=2, latency_cache=tmp_path / "afile" / "c.jsonl")
    # a file that is not a cache is refused and left as it was
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes\n")
    with pytest.raises(ConfigError, match=r"notes.txt: line 1 is not a yoloslim latency cache"):
        _small_search(budget=budget, iterations=2, latency_cache=mine)
    assert mine.read_text() == "my notes\n"


def test_real_latency_is_measured_under_a_latency_budget():
    res = _small_search(
        budget=Budget(latency_ms=1e4), latency=LatencySettings(warmup=1, runs=2), iterations=2
    )
    assert all(0 < e["latency_ms"] <= 1e4 for e in res.best)
    assert res.report["latency"]["runtime"] == "torch"
    assert res.report["init_repeats"] == 2 and res.report["score_method"] == "gaussian"


# -- outputs ------------------------------------------------------------------------------------


def test_best_arch_round_trips_builds_and_trains_a_step(found, tmp_path):
    res, folder = found
    arch_yaml = folder / "arch.yaml"
    assert res.artifacts["arch"] == arch_yaml
    report = json.loads((folder / "nas_report.json").read_text())
    assert report["best"][0]["score"] == res.score and report["search_s"] > 0
    loaded = yaml.safe_load(arch_yaml.read_text())
    assert loaded == res.arch
    model = build_model(arch_yaml, nc=2)
    assert build_model(res.arch).spec["backbone"] == model.spec["backbone"]
    data = synthesize(
        tmp_path / "data", images=6, imgsz=IMGSZ, classes=2, seed=1, val_fraction=0.34
    )
    cfg = ys.TrainConfig(epochs=1, batch=4, imgsz=IMGSZ, workers=0, val_interval=1)
    torch.manual_seed(0)
    out = ys.train(str(arch_yaml), data, config=cfg, out=tmp_path / "run")
    assert out.best.exists()
    model, _ = ys.load_checkpoint(out.best)
    assert model.spec["backbone"] == res.arch["backbone"]


def test_a_stop_after_the_search_wrote_its_files_says_so(tmp_path, monkeypatch, capsys):
    # "interrupted" alone, after a warning that an earlier result is replaced when the
    # search ends (audit48 nas F4)
    import yoloslim.cli.nas_cmd as nas_cmd

    def stop(best):
        raise KeyboardInterrupt

    monkeypatch.setattr(nas_cmd, "_table", stop)
    out, js = tmp_path / "arch.yaml", tmp_path / "r.json"
    args = ["nas", "--imgsz", "64", "--budget-flops", "0.03", "--nc", "2", "--iterations", "2"]
    rc = main([*args, "--population", "2", "--score-method", "analytic", "--out", str(out),
               "--json", str(js)])  # fmt: skip
    said = "".join(capsys.readouterr().err.split())  # wrapped where the console is narrow
    assert rc == 130 and out.is_file() and js.is_file()
    want = f"the search had ended and written {out} and its nas_report.json, and --json {js}"
    assert "".join(want.split()) in said


def test_cli_nas_writes_arch_and_report(tmp_path):
    out = tmp_path / "found.yaml"
    args = ["nas", "--imgsz", "64", "--budget-flops", "0.03", "--nc", "2", "--iterations", "2"]
    rc = main([*args, "--population", "2", "--init-repeats", "1", "--out", str(out)])
    assert rc == 0
    assert out.exists() and (tmp_path / "nas_report.json").exists()
    build_model(out)
    # its header's command trains this very file (it said this.yaml)
    assert f"# train it: yoloslim train --model {out} --data " in out.read_text()
    # info describes the found arch: its cost at the search's size, and the search's score
    assert main(["info", str(out), "--json", str(tmp_path / "info.json")]) == 0
    described = json.loads((tmp_path / "info.json").read_text())[str(out)]
    best = json.loads((tmp_path / "nas_report.json").read_text())["best"][0]
    assert (described["kind"], described["imgsz"], described["nc"]) == ("arch", 64, 2)
    assert described["gflops"] == float(f"{best['gflops']:.6g}")
    assert (described["params"], described["params_deploy"]) == (
        best["params"],
        best["params_deploy"],
    )
    assert round(described["score"], 3) == round(best["score"], 3)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    assert main(["info", str(broken)]) == 2  # one line naming the file, not a traceback
    assert main(["nas", "--imgsz", "64", "--budget-flops", "0.00001", "--out", str(out)]) == 2
    wide = SearchSpace().arch(SearchSpace().widest_shallowest(), 2)
    rho = round(2 * measure_cost(wide, 64).effectiveness, 3)
    args = ["nas", "--imgsz", "64", "--budget-effectiveness", str(rho), "--nc", "2"]
    rc = main([*args, "--iterations", "2", "--population", "2", "--init-repeats", "1",
               "--out", str(out), "--json", str(tmp_path / "r.json")])  # fmt: skip
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["budget"]["effectiveness"] == rho
    assert all(b["effectiveness"] <= rho for b in report["best"])
    rc = main([*args, "--iterations", "2", "--population", "2", "--score-method", "analytic",
               "--out", str(out), "--json", str(tmp_path / "a.json")])  # fmt: skip
    assert rc == 0
    assert json.loads((tmp_path / "a.json").read_text())["score_method"] == "analytic"
    assert main([*args, "--score-method", "fast", "--out", str(out)]) == 2
    # it replaces its own arch.yaml (above), never another file, nor a report not its own
    data = tmp_path / "data.yaml"
    data.write_text("names: [a, b]\n")
    small = ["nas", "--imgsz", "64", "--budget-flops", "0.03", "--iterations", "1"]
    assert main([*small, "--out", str(data)]) == 2
    assert data.read_text() == "names: [a, b]\n"
    other = tmp_path / "other"
    other.mkdir()
    (other / "nas_report.json").write_text('{"map": 0.5}')
    assert main([*small, "--out", str(other)]) == 2
    assert not (other / "arch.yaml").exists()


# -- template and seeds -------------------------------------------------------------------------


@pytest.mark.parametrize("space", [SearchSpace(), SPACE], ids=["default", "small"])
def test_a_mutation_moves_one_or_two_genes_within_their_ranges(space):
    # a step clamped at a range's end, or a gene moved and moved back, returned the parent
    # itself: a fifth of the iterations (38 % near the smallest network) did nothing
    # (audit46 nas F1)
    rng = random.Random(0)
    starts = [space.smallest(), space.widest_shallowest()] + [space.sample(rng) for _ in range(50)]
    for genome in starts:
        for _ in range(40):
            child = space.mutate(genome, rng)
            moved = [
                (i, j)
                for i in range(5)
                for j, (a, b) in enumerate(zip(genome[i], child[i], strict=True))
                if a != b
            ]
            # none where the one gene drawn is a ratio of a stage too narrow for another
            # width (every ratio builds 8 channels there)
            narrow = any(not space.ratio_steps(i, g[0], g[3]) for i, g in enumerate(genome) if i)
            assert 1 <= len(moved) <= 2 or (not moved and narrow), (genome, child)
            for i in range(5):
                for value, choices in zip(child[i], space._choices(i), strict=True):
                    assert value in choices
            for i, j in moved:  # a width moves at most two steps, any other gene one
                choices = space._choices(i)[j]
                if j == 3:  # a ratio: to the next that builds another inner width (at the
                    # stage's width before or after its width moved, in the order drawn)
                    steps = {
                        r for w in (genome[i][0], child[i][0])
                        for r in space.ratio_steps(i, w, genome[i][3])
                    }  # fmt: skip
                    assert child[i][3] in steps
                    continue
                step = abs(choices.index(child[i][j]) - choices.index(genome[i][j]))
                assert step <= (2 if j == 0 else 1)


def test_a_width_range_without_a_multiple_of_the_step_is_refused():
    # (20, 23) at width_step 8 searched the stage at 20 channels alone, unsaid (audit46 nas F5)
    widths = [(16, 32), (20, 23), (32, 64), (64, 256), (96, 384)]
    with pytest.raises(
        ConfigError, match=r"widths\[1\]=\(20, 23\) holds no multiple of width_step=8"
    ):
        SearchSpace(widths=tuple(widths))
    widths[1] = (20, 20)  # one width, given as it is
    assert SearchSpace(widths=tuple(widths)).width_choices(1) == [20]


def test_template_space_rebuilds_its_arch_exactly():
    nano = get_arch("damo-nano", 3)
    space = SearchSpace.from_template(nano)
    genome = genome_of(nano)
    assert space.contains(genome)
    assert space.arch(genome, 3, name="damo-nano") == nano
    # the neck and head stay fixed while the backbone changes; the neck's inputs follow it
    other = space.arch(space.sample(random.Random(0)), 3)
    assert other["neck"]["out"] == nano["neck"]["out"]
    assert other["head"]["width"] == nano["head"]["width"]
    build_model(other)
    # the same through a mapping (recipes, --config), overrides kept
    assert SearchSpace.from_dict({"template": "damo-nano", "kernels": [3]}) == dataclasses.replace(
        SearchSpace.from_template(nano), kernels=(3,)
    )


def test_a_template_of_other_widths_kernels_and_ratios_is_a_genome_of_its_space():
    # a template's kernel or ratio outside the default choices refused its own network; a
    # 36-channel stage was refused with advice that could not help (audit52 nassearch F1)
    arch = get_arch("damo-nano", 3)
    stages = arch["backbone"]["stages"]
    stages[3]["kernel"], stages[4]["ratio"] = 7, 0.6
    space = SearchSpace.from_template(arch)
    assert 7 in space.kernels and 0.6 in space.ratios and space.contains(genome_of(arch))
    assert space.arch(genome_of(arch), 3, name=arch["name"])["backbone"] == arch["backbone"]
    assert SearchSpace.from_template("damo-nano") == dataclasses.replace(
        space, kernels=(3, 5), ratios=(0.25, 0.5, 0.75, 1.0)
    )  # a registered template's space is the default's choices
    # a 36-channel stage is off the width step: the refusal says the step that holds it
    stages[2]["out"] = 36
    with pytest.raises(ConfigError, match=r"widths \[36\] are not multiples of width_step=8: "
                       r"give space: \{width_step: 4\}"):  # fmt: skip
        search(imgsz=IMGSZ, space=SearchSpace.from_template(arch), budget=Budget(flops=1.0),
               init=arch, iterations=0, population=2, nc=3, score_method="analytic")  # fmt: skip
    found = search(imgsz=IMGSZ, space=SearchSpace.from_template(arch, width_step=4),
                   budget=Budget(flops=1.0), init=arch, iterations=0, population=2, nc=3,
                   score_method="analytic")  # fmt: skip
    assert found.report["init"][0]["name"]


def test_genomes_that_build_one_network_are_one_candidate():
    # 0.25 and 0.5 of an 8- or 16-channel stage are both 8: two genomes, one network, were
    # scored and reported as two candidates (audit52 nassearch F2)
    small = _arch([8, 16, 16, 32, 48], [1, 1, 1, 1], ratio=0.25)
    g = genome_of(small)
    twin = tuple((w, d, k, 0.5 if i == 1 else r) for i, (w, d, k, r) in enumerate(g))
    wider = tuple((w, d, k, 0.75 if i == 3 else r) for i, (w, d, k, r) in enumerate(g))
    stem5 = ((g[0][0], 0, 5, 1.0), *g[1:])  # the stem is a 3x3 conv whatever it says
    assert SPACE.canonical(twin) == g == SPACE.canonical(g) == SPACE.canonical(stem5)
    assert SPACE.canonical(wider) == wider  # 0.75 of 32 is 24, not 8: another network
    shapes = [
        {k: v.shape for k, v in build_model(SPACE.arch(x, 2)).state_dict().items()}
        for x in (twin, g, wider)
    ]
    assert shapes[0] == shapes[1] != shapes[2]
    from yoloslim.nas.evaluator import Evaluator

    ev = Evaluator(
        space=SPACE, budget=Budget(flops=1.0), imgsz=IMGSZ, nc=2, stage_weights=[1] * 5,
        repeats=1, batch=2, seed=0, latency=LatencySettings(), method="analytic",
    )  # fmt: skip
    assert ev(twin) is ev(g) and len(ev.seen) == 1 and ev(twin).genome == g
    assert ev(wider) is not ev(g) and len(ev.seen) == 2
    # a ratio steps to the next that builds another width: 0.25 of 16 (8) goes to 0.75 (12),
    # not to 0.5 (8 again), and every ratio's width is reached (review F5)
    assert SPACE.ratio_steps(1, 16, 0.25) == [0.75]
    assert SPACE.ratio_steps(1, 16, 0.75) == [0.25, 1.0]
    assert SPACE.ratio_steps(1, 8, 0.25) == []  # all four build 8 channels
    narrow = SearchSpace(widths=((16, 16),) * 5, ratios=(0.25, 0.5))  # one width for both
    parent = narrow.smallest()
    rng = random.Random(0)
    assert all(narrow.mutate(parent, rng) != parent for _ in range(300))  # review2 F3
    children = [SPACE.canonical(SPACE.mutate(g, rng)) for _ in range(200)]
    assert {c[1][3] for c in children if c[1][0] == 16} == {0.25, 0.75}  # never 0.5 there
    cur, seen = g, set()
    for _ in range(2000):  # a walk reaches every ratio of stage 1
        cur = SPACE.canonical(SPACE.mutate(cur, rng))
        seen.add(cur[1][3])
    assert seen == set(SPACE.ratios)


def test_template_errors_name_what_is_unsupported():
    arch = get_arch("damo-nano", 2)
    arch["head"]["width"] = [32, 48, 64]
    with pytest.raises(ConfigError, match="one head width"):
        SearchSpace.from_template(arch)
    with pytest.raises(ConfigError, match="unknown key"):
        SearchSpace.from_dict({"template": "damo-nano", "kernel": [3]})
    with pytest.raises(ConfigError, match="not a registered model"):
        SearchSpace.from_dict({"template": "damo-huge"})
    with pytest.raises(ConfigError, match=r"\['widthz'\] in space; allowed: .*'template'"):
        SearchSpace.from_dict({"template": "damo-nano", "widthz": 3})
    with pytest.raises(ConfigError, match="neck_out"):
        SearchSpace(neck_out=(16, 32))


SEED_ARCH = _arch([16, 16, 32, 48, 64], [1, 1, 1, 1])


def test_init_seeds_the_population_and_the_result_never_scores_lower():
    res = _small_search(budget=Budget(flops=0.05), init=SEED_ARCH, iterations=3)
    seed_score = res.report["init"][0]["score"]
    assert seed_score == _score(SEED_ARCH, repeats=2, batch=4)
    assert res.score >= seed_score
    assert res.report["init"][0]["gflops"] == measure_cost(SEED_ARCH, IMGSZ).gflops


def test_init_takes_a_checkpoint_but_not_a_pruned_one(tmp_path):
    from yoloslim.compress.prune import prune
    from yoloslim.compress.prune_config import PruneConfig
    from yoloslim.models.checkpoint import save_checkpoint

    net = build_model(SEED_ARCH)
    save_checkpoint(tmp_path / "seed.pt", net, imgsz=IMGSZ)
    res = _small_search(budget=Budget(flops=0.05), init=str(tmp_path / "seed.pt"), iterations=1)
    assert res.report["init"][0]["score"] == _score(SEED_ARCH, repeats=2, batch=4)
    cfg = PruneConfig(ratio=0.5, imgsz=IMGSZ, finetune_epochs=0, latency=False)
    save_checkpoint(tmp_path / "pruned.pt", prune(net, None, config=cfg).model, imgsz=IMGSZ)
    with pytest.raises(ConfigError, match=r"pruned.pt: its layer widths are not the ones"):
        _small_search(budget=Budget(flops=0.05), init=str(tmp_path / "pruned.pt"), iterations=1)


def test_bad_init_gives_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"GFLOPs > flops=0\.012"):
        _small_search(budget=Budget(flops=0.012), init=SEED_ARCH, iterations=1)
    outside = _arch([16, 16, 32, 48, 200], [1, 1, 1, 1])
    with pytest.raises(ConfigError, match=r"outside the search space: stages\[4\]\.out=200 not in"):
        _small_search(budget=Budget(flops=1.0), init=outside, iterations=1)
    with pytest.raises(ConfigError, match=r"not in .* \(search the space of its kind: --keep-neck"):
        _small_search(budget=Budget(flops=1.0), init=outside, iterations=1)
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="afile is a file, not a folder"):
        _small_search(budget=Budget(flops=1.0), iterations=1, out=tmp_path / "afile" / "a.yaml")
    with pytest.raises(ConfigError, match="not a registered model"):
        _small_search(budget=Budget(flops=1.0), init="damo-huge", iterations=1)
    with pytest.raises(ConfigError, match="does not exist"):
        _small_search(budget=Budget(flops=1.0), init=str(tmp_path / "none.yaml"), iterations=1)


@pytest.mark.parametrize("name", ["damo-nano", "damo-tiny", "damo-small"])
def test_a_registered_models_template_space_holds_its_own_backbone(name):
    # damo-tiny's last stage (512 channels) was over the default range: --init damo-tiny
    # --keep-neck, or space: {template: damo-tiny}, refused the template's own network
    from yoloslim.models.registry import get_arch
    from yoloslim.nas.space import genome_of

    space = SearchSpace.from_template(name)
    assert space.contains(genome_of(get_arch(name, 2)))
    widths = SearchSpace.from_template(name, widths=SearchSpace().widths).widths
    assert widths == SearchSpace().widths  # ranges given are taken as given


def test_cli_nas_init_and_keep_neck(tmp_path):
    out = tmp_path / "found.yaml"
    args = ["nas", "--imgsz", "64", "--budget-flops", "0.2", "--nc", "2", "--iterations", "2"]
    rc = main(
        [*args, "--population", "2", "--init-repeats", "1", "--out", str(out)]
        + ["--init", "damo-nano", "--keep-neck"]
    )
    assert rc == 0
    found = yaml.safe_load(out.read_text())
    nano = get_arch("damo-nano", 2)
    assert found["neck"] == nano["neck"] and found["head"] == nano["head"]
    report = json.loads((tmp_path / "nas_report.json").read_text())
    assert report["init"][0]["name"] == "damo-nano"
    assert report["best"][0]["score"] >= report["init"][0]["score"]
    assert main([*args, "--keep-neck", "--out", str(out)]) == 2  # --keep-neck needs --init


def test_cli_nas_config_init_alone_keeps_its_neck_and_a_bad_budget_names_the_file(
    tmp_path, monkeypatch, capsys
):
    # init: damo-nano (one arch, not a list) with --keep-neck took its first letter, "d"
    from types import SimpleNamespace

    seen = []

    def search(d, out, progress):
        seen.append(d)
        return SimpleNamespace(report={"search_s": 0}, best=[], artifacts={"arch": out}, score=1)

    monkeypatch.setattr(ys.nas, "search_from_dict", search)
    cfg = tmp_path / "nas.yaml"
    cfg.write_text("imgsz: 64\nbudget: {flops: 0.5}\ninit: damo-nano\n")
    args = ["nas", "--config", str(cfg), "--keep-neck", "--out", str(tmp_path / "a.yaml")]
    assert main(args) == 0
    assert seen[0]["space"] == {"template": "damo-nano"} and seen[0]["init"] == "damo-nano"
    # budget: 0.5 (not a mapping) said so without naming the file it came from
    cfg.write_text("imgsz: 64\nbudget: 0.5\n")
    assert main(["nas", "--config", str(cfg), "--out", str(tmp_path / "a.yaml")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "budget: must be a mapping (key: value lines), got 0.5" in err
    assert f"(settings read from --config {cfg})" in err
    assert len(seen) == 1


def test_cli_nas_stopped_says_what_it_kept(tmp_path, monkeypatch, capsys):
    # audit43 nas F3: a stop said only "interrupted", after a warning that the earlier
    # search's arch.yaml would be replaced
    def search(d, out, progress):
        raise KeyboardInterrupt

    monkeypatch.setattr(ys.nas, "search_from_dict", search)
    out = tmp_path / "arch.yaml"
    args = ["nas", "--budget-flops", "0.5", "--imgsz", "64", "--out", str(out)]
    assert main(args) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert "interrupted; no arch.yaml written; a search does not resume" in err
    out.write_text("earlier")
    assert main(args) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert f"interrupted; {out} (and its nas_report.json) kept as they were" in err
    # --out a folder: its arch.yaml (audit46 nas F2: "nothing written")
    args[-1] = str(tmp_path / "d")
    assert main(args) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert "interrupted; no arch.yaml written; a search does not resume" in err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "arch.yaml").write_text("earlier")
    assert main(args) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert f"interrupted; {tmp_path / 'd' / 'arch.yaml'} (and its nas_report.json) kept" in err


def test_cli_nas_a_bad_option_beside_a_good_config_file_is_not_blamed_on_it(tmp_path, capsys):
    # audit43 nas F1: a bad option beside a valid file was blamed on the file
    cfg = tmp_path / "nas.yaml"
    cfg.write_text("imgsz: 64\nbudget: {flops: 0.5}\n")
    for bad in (["--population", "1"], ["--budget-flops", "-1"], ["--stage-weights", "0,0,0,0,0"]):
        assert main(["nas", "--config", str(cfg), *bad, "--out", str(tmp_path / "b.yaml")]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"ConfigError: {' '.join(bad)}" in err and "--config" not in err, err
    cfg.write_text("imgsz: 64\nbudget: {flops: 0.5}\npopulation: 1\n")  # the file's: said so
    assert main(["nas", "--config", str(cfg), "--out", str(tmp_path / "b.yaml")]) == 2
    assert f"(settings read from --config {cfg})" in capsys.readouterr().err
    assert not (tmp_path / "b.yaml").exists()


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_latency_on_the_deploy_runtimes(runtime, capfd):
    pytest.importorskip(runtime)
    settings = LatencySettings(runtime=runtime, warmup=1, runs=2)
    ms = ys.nas.measure_latency_ms(SEED_ARCH, IMGSZ, settings)
    assert math.isfinite(ms) and ms > 0
    # a search exports hundreds of candidates: the exporter's step lines would bury the bar
    printed = capfd.readouterr()
    assert "torch.onnx" not in printed.out + printed.err
    with pytest.raises(ConfigError, match="runtime='tflite'"):
        LatencySettings(runtime="tflite")


def test_api_misuse_is_a_config_error():
    with pytest.raises(ConfigError, match=r"space: block='conv' must be csp or res"):
        SearchSpace(block="conv")
    with pytest.raises(ConfigError, match=r"space: act='gelu' must be silu, relu or lrelu"):
        SearchSpace(act="gelu")
    with pytest.raises(ConfigError, match="space must be a SearchSpace, got str"):
        search(imgsz=IMGSZ, budget=Budget(flops=1.0), space="damo-nano")
    with pytest.raises(ConfigError, match="latency must be a LatencySettings, got dict"):
        search(imgsz=IMGSZ, budget=Budget(latency_ms=50), latency={"runtime": "torch"})
    space = SearchSpace.from_template("damo-nano")  # a name works as well as an arch dict
    assert space.neck_out is not None


def test_a_search_never_replaces_its_init_file_nor_mixes_with_another(found, tmp_path):
    from yoloslim.errors import ConfigError
    from yoloslim.fileio import folder_lock

    _, out = found
    # --init ARCH --out its own folder: the hand-edited arch.yaml was replaced
    edited = tmp_path / "arch.yaml"
    edited.write_text((out / "arch.yaml").read_text() + "# my notes\n")
    with pytest.raises(ConfigError, match=r"init=.*arch\.yaml: this run writes"):
        _small_search(seed=1, init=edited, out=tmp_path)
    assert edited.read_text().endswith("# my notes\n")
    # its own result, as written, re-seeds a search into the same folder (the default --out)
    again = tmp_path / "again"
    shutil.copytree(out, again)
    _small_search(seed=2, init=again / "arch.yaml", out=again)
    # a second search into a folder another one writes into is refused (both said done)
    with folder_lock(tmp_path / "busy", "nas"), pytest.raises(ConfigError, match="another"):
        _small_search(seed=1, out=tmp_path / "busy")


def test_a_cache_with_latencies_that_are_no_measurement_is_not_believed(tmp_path, caplog):
    # a NaN latency passed every budget (NaN > budget is False) and made the report invalid JSON
    from yoloslim.nas.latency import LatencyCache

    arch = SPACE.arch(SPACE.smallest(), 2)
    settings = LatencySettings(warmup=1, runs=3)
    cache = LatencyCache(tmp_path / "c.jsonl", IMGSZ, settings)
    cache.put(arch, 5.0)
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    entry = json.loads(lines[1])
    bad = [json.dumps({**entry, "latency_ms": v}) for v in (float("nan"), 0.0, -3.0)]
    for b in bad:
        (tmp_path / "c.jsonl").write_text("\n".join([lines[0], b]) + "\n")
        with caplog.at_level("WARNING"):
            assert LatencyCache(tmp_path / "c.jsonl", IMGSZ, settings).get(arch) is None
    assert "skipped a line that is not an entry" in caplog.text


def test_search_settings_out_of_range_and_seeds_of_another_kind_are_refused(tmp_path):
    from yoloslim.errors import ConfigError

    with pytest.raises(ConfigError, match=r"seed=.* must be an integer in \[0, 2\*\*32\)"):
        _small_search(seed=2**60)
    with pytest.raises(ConfigError, match="stage_weights=.* must be 5 finite numbers"):
        _small_search(stage_weights=[0, 0, 1, "x", 6])
    # a seed of residual blocks was rebuilt as CSP: its figures in the report were another net's
    seed = copy.deepcopy(SPACE.arch(SPACE.smallest(), 2))
    for stage in seed["backbone"]["stages"][1:]:
        stage["block"] = "res"
    with pytest.raises(ConfigError, match=r"init .*block 'res' \(the space's: 'csp'\)"):
        _small_search(init=seed)
    with pytest.raises(ConfigError, match="is the search's own arch.yaml"):
        _small_search(out=tmp_path / "o.yaml", latency_cache=tmp_path / "o.yaml")
    (tmp_path / "notes.txt").write_text("mine")  # taken for a folder: said plainly, kept
    with pytest.raises(ConfigError, match=r"notes.txt: is a file that is no \.yaml; name an"):
        _small_search(out=tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_two_arch_files_in_one_folder_do_not_share_a_report(found, tmp_path):
    # --out a.yaml then --out b.yaml in one folder: a.yaml's report was silently replaced
    from yoloslim.errors import ConfigError

    _, out = found
    assert json.loads((out / "nas_report.json").read_text())["arch_file"] == "arch.yaml"
    with pytest.raises(ConfigError, match=r"is the report of arch\.yaml"):
        _small_search(seed=1, out=out / "other.yaml")
    (tmp_path / "nas_report.json").mkdir()  # found only after the whole search, before
    with pytest.raises(ConfigError, match="nas_report.json is a folder"):
        _small_search(seed=1, out=tmp_path)


def test_a_copied_then_edited_arch_file_shows_no_score_of_the_search(tmp_path, capsys):
    # without the report beside it, info showed the header's score as the edited file's,
    # though the header's GFLOPs already disagreed with the file's
    kw = dict(budget=Budget(flops=0.03), iterations=2, score_method="analytic")
    first = _small_search(out=tmp_path / "a", **kw)
    copy = tmp_path / "copy" / "arch.yaml"
    copy.parent.mkdir()
    shutil.copyfile(tmp_path / "a" / "arch.yaml", copy)
    info = ys.describe(copy)  # a copy as written: the header is its own
    assert info["score"] == pytest.approx(first.score, abs=1e-3) and info["edited"] is False
    header, _, body = copy.read_text().partition("\n")
    arch = yaml.safe_load(body)
    arch["backbone"]["stages"][-1]["out"] *= 2
    copy.write_text(f"{header}\n{yaml.safe_dump(arch, sort_keys=False)}")
    info = ys.describe(copy)
    assert info["edited"] is True and info["score"] is None
    assert info["header_gflops"] < info["gflops"]
    assert main(["info", str(copy)]) == 0
    # the note as read across the lines it wraps to in the table (narrower where COLUMNS says)
    out = " ".join(re.sub(r"[│┃]", " ", capsys.readouterr().out).split())
    assert f"its header's {info['header_gflops']:g} GFLOPs are not the file's" in out


def test_an_edited_arch_file_is_kept_and_described_as_edited(tmp_path, capsys, caplog):
    from yoloslim.models.checkpoint import trained_imgsz

    kw = dict(budget=Budget(flops=0.03), iterations=2, score_method="analytic")
    first = _small_search(out=tmp_path, **kw)
    arch = tmp_path / "arch.yaml"
    # the result names its file and digest, as the report beside it does (--json wrote a
    # copy without them, which a later --init of the file took for an edited one)
    assert first.report == json.loads((tmp_path / "nas_report.json").read_text())
    assert first.report["arch_file"] == "arch.yaml" and first.report["arch_sha1"]
    assert ys.describe(arch)["score"] == pytest.approx(first.score, abs=1e-3)
    assert ys.describe(arch)["edited"] is False
    assert trained_imgsz(arch) == IMGSZ  # train --model arch.yaml trains at the search's size
    with caplog.at_level("WARNING", logger="yoloslim"):
        _small_search(out=tmp_path, **kw)  # as written: a search again may replace it
    # said before it searches (audit29 nas L2: it replaced the result without a word)
    assert (
        f"{arch} (and nas_report.json) is an earlier search's result (score {first.score:.3f}); "
        "this search replaces it when it ends"
    ) in caplog.text
    arch.write_text(arch.read_text().replace("name: nas", "name: mine"))
    edited = arch.read_text()
    info = ys.describe(arch)
    assert info["edited"] is True and info["score"] is None  # the score was of another file
    with pytest.raises(ConfigError, match=r"arch.yaml was edited since its search wrote it"):
        _small_search(out=tmp_path, **kw)
    assert arch.read_text() == edited
    # --json naming another search's report (beside its arch file) is refused before it runs
    args = ["nas", "--imgsz", str(IMGSZ), "--budget-flops", "0.03", "--iterations", "2"]
    args += ["--population", "2", "--score-method", "analytic", "--nc", "2"]
    code = main([*args, "--out", str(tmp_path / "b"), "--json", str(tmp_path / "nas_report.json")])
    assert code == 2 and "it is the report of" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    # a copy of its own report beside the arch file it replaces is fine, run after run
    mine = [*args, "--out", str(tmp_path / "c"), "--json", str(tmp_path / "c" / "copy.json")]
    assert main(mine) == 0 and main(mine) == 0
    # another search's arch file renamed into the folder is named as that, not as edited
    other = tmp_path / "c" / "other.yaml"
    other.write_text((tmp_path / "c" / "arch.yaml").read_text())
    with pytest.raises(ConfigError, match=r"nas_report.json is the report of arch.yaml"):
        _small_search(out=other, **kw)
    # an arch.yaml with the search's header and no report of its own beside it: whether it
    # was edited cannot be told, so it is kept (it was replaced, edits and all)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "arch.yaml").write_text(edited)
    with pytest.raises(ConfigError, match=r"arch.yaml has no nas_report.json of its own beside"):
        _small_search(out=lone, **kw)
    assert (lone / "arch.yaml").read_text() == edited
    # its report alone, the arch.yaml moved away: said too (audit30 review M2)
    (tmp_path / "c" / "arch.yaml").rename(tmp_path / "moved.yaml")
    caplog.clear()
    with caplog.at_level("WARNING", logger="yoloslim"):
        _small_search(out=tmp_path / "c", **kw)
    assert f"{tmp_path / 'c' / 'nas_report.json'} is an earlier search's result" in caplog.text


def test_a_stop_while_the_result_is_written_keeps_the_earlier_pair(tmp_path, monkeypatch):
    # the earlier report was removed first, the new arch.yaml moved in, then the report
    # written: a stop in between left an arch.yaml without one, refused next (audit48 nas F2)
    search_mod = importlib.import_module("yoloslim.nas.search")

    arch = SPACE.arch(SPACE.smallest(), 2)
    report = {"best": [{"score": 1.0, "gflops": 0.01}], "imgsz": 64}
    paths, _ = search_mod._write(tmp_path / "arch.yaml", arch, report)
    before = {p.name: p.read_bytes() for p in paths.values()}

    def stop(*a, **k):  # Ctrl-C while the report is made
        raise KeyboardInterrupt

    monkeypatch.setattr(search_mod, "json", types.SimpleNamespace(dumps=stop))
    with pytest.raises(KeyboardInterrupt):
        search_mod._write(tmp_path / "arch.yaml", arch, {**report, "imgsz": 96})
    assert {p.name: p.read_bytes() for p in paths.values()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.yaml", "nas_report.json"]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: LatencySettings(threads=True), r"latency threads=True must be an integer"),
        (lambda: LatencySettings(warmup=True), r"latency warmup=True must be an integer"),
        (lambda: SearchSpace(kernels=(True,)), r"kernels=\(True,\) must be a non-empty subset"),
        (lambda: SearchSpace(kernels=(3.0,)), r"kernels=\(3.0,\) must be a non-empty subset"),
        (lambda: SearchSpace(width_step=True), r"width_step=True must be an integer >= 1"),
        (lambda: SearchSpace(ratios=("a",)), r"ratios=\('a',\) must be non-empty, each a number"),
        (lambda: SearchSpace(neck_ratio="x"), r"neck_ratio='x' must be a number in \(0, 4\]"),
        (lambda: SearchSpace(depths=5), r"depths=5 must be a list of \(min, max\) pairs"),
        (lambda: SearchSpace(head_width=True), r"head_width=True must be an integer >= 1"),
        (lambda: _small_search(polish=True), r"polish=True must be an integer >= 0"),
        (
            lambda: _small_search(stage_weights=6),
            r"stage_weights=6 \(--stage-weights\) must be a list of 5",
        ),
        (lambda: _small_search(stage_weights=[0] * 5), r"at least one must be > 0"),
    ],
)
def test_settings_a_yaml_file_can_hold_by_mistake_are_refused(make, match):
    # booleans passed as 1 (kernel 1, one thread) and the others crashed with a TypeError
    with pytest.raises(ConfigError, match=match):
        make()


def test_numpy_integers_are_taken_as_ints():
    import numpy as np

    space = SearchSpace(widths=np.array(SPACE.widths), kernels=np.array([3]), ratios=np.ones(1))
    assert space.widths == SPACE.widths and type(space.widths[0][0]) is int
    assert space.kernels == (3,) and type(space.kernels[0]) is int and space.ratios == (1.0,)
    assert SearchSpace(kernels=[np.int64(5)]).kernels == (5,)
    assert LatencySettings(runs=np.int64(3)).runs == 3
    res = _small_search(iterations=np.int64(1), seed=np.uint8(1), score_method="analytic")
    assert res.report["iterations"] == 1 and type(res.report["seed"]) is int


def test_stage_weights_may_be_a_numpy_array(tmp_path):
    import numpy as np

    weights = np.array([0.0, 0.0, 1.0, 1.0, 6.0])
    res = _small_search(stage_weights=weights, iterations=1, score_method="analytic")
    assert res.report["stage_weights"] == [0.0, 0.0, 1.0, 1.0, 6.0]
    # int64 and float32 ones: the report's JSON failed after the whole search, leaving the
    # arch.yaml without its report
    for dtype in (np.int64, np.float32):
        out = tmp_path / np.dtype(dtype).name
        res = _small_search(
            stage_weights=weights.astype(dtype), iterations=1, score_method="analytic", out=out
        )
        saved = json.loads((out / "nas_report.json").read_text())
        assert saved["stage_weights"] == [0, 0, 1, 1, 6] and saved == res.report
    # a Budget of numpy numbers: "must be a finite number" said of a number
    assert Budget(flops=np.float32(0.5), layers=np.int64(30)) == Budget(flops=0.5, layers=30)


def test_a_name_or_out_or_progress_of_the_wrong_kind_is_refused_before_the_search():
    # name=5 wrote an arch nothing could build; out=5 was a TypeError from pathlib
    for kw, said in (
        ({"name": 5}, r"^name=5: must be a non-empty string"),
        ({"out": 5}, r"^out=5: expected the arch .yaml's or its folder's path"),
        ({"progress": "no"}, r"^progress='no' must be True or False"),
    ):
        with pytest.raises(ConfigError, match=said):
            _small_search(iterations=1, score_method="analytic", **kw)


def test_a_report_that_holds_no_mapping_is_not_replaced(tmp_path):
    (tmp_path / "nas_report.json").write_text('"my notes: best run"')
    with pytest.raises(ConfigError, match=r"nas_report.json exists and is no search report"):
        _small_search(out=tmp_path, iterations=1)


def test_the_budget_is_said_against_damo_nano_at_the_searchs_size():
    # edge-tiny's 0.5 GFLOPs is half damo-nano at 320 px and twice it at 160: the line says so
    from yoloslim.nas.evaluator import Evaluator
    from yoloslim.nas.search import _scale_line

    settings = dict(space=SPACE, stage_weights=(1,), repeats=1, batch=1, seed=0, nc=4)
    settings["latency"] = LatencySettings(warmup=1, runs=3)
    lines = {
        size: _scale_line(Evaluator(budget=Budget(flops=0.5, params=1.0), imgsz=size, **settings))
        for size in (160, 320)
    }
    for size, line in lines.items():
        nano = model_profile(build_model("damo-nano", nc=4).fuse(), imgsz=size)
        assert f"at {size} px and 4 classes, budget 0.5 GFLOPs " in line
        assert f"x damo-nano's {nano['gflops']:.3g})" in line
        assert f"({0.5 / nano['gflops']:.2f}x" in line
        assert f"1 M params ({1.0 / (nano['params_deploy'] / 1e6):.2f}x damo-nano's" in line
    assert "(0.51x damo-nano's" in lines[320] and "(2.03x damo-nano's" in lines[160]


def test_the_candidates_table_shows_the_genes_rows_differ_in(capsys):
    from yoloslim.cli.nas_cmd import _table

    def row(rank, kernel):
        genome = [{"out": 16, "depth": 1, "kernel": k, "ratio": 0.5} for k in (3, kernel)]
        cost = dict(gflops=0.1, params_deploy=5e5, layers=9, effectiveness=0.5, latency_ms=None)
        return dict(rank=rank, score=10.0 - rank, genome=genome, **cost)

    _table([row(1, 5), row(2, 3)])  # alike but for one kernel: two rows read the same before
    out = capsys.readouterr().out
    assert "kernels" in out and "3/5" in out and "3/3" in out
    assert "ratios of every row: 0.5/0.5" in " ".join(out.split())
    _table([row(1, 3), row(2, 3)])
    out = " ".join(capsys.readouterr().out.split())
    assert "kernels of every row: 3/3" in out and "ratios of every row: 0.5/0.5" in out


def test_training_an_arch_searched_for_other_classes_says_its_cost_changed(tmp_path, caplog):
    # nas's --nc 80 default: the budgets counted an 80-class head, and train quietly built
    # the data's; the report's FLOPs and params were not the trained model's
    from yoloslim.train.trainer import _warn_searched_for_other_classes

    _small_search(out=tmp_path, iterations=1, score_method="analytic")  # nc=2
    with caplog.at_level("WARNING", logger="yoloslim"):
        _warn_searched_for_other_classes(tmp_path / "arch.yaml", ["a", "b"])
        assert not caplog.text  # searched for the data's classes: nothing to say
        _warn_searched_for_other_classes(tmp_path / "arch.yaml", ["a", "b", "c"])
    assert "was searched for 2 classes" in caplog.text and "search with --nc 3" in caplog.text


def test_stage_weights_are_a_flag_too(tmp_path, capsys):
    # DAMO-YOLO's 320 px weights (0,0,1,1,16) were reachable only through --config
    args = ["nas", "--imgsz", str(IMGSZ), "--budget-flops", "0.03", "--iterations", "1"]
    args += ["--population", "2", "--score-method", "analytic", "--nc", "2"]
    assert main([*args, "--stage-weights", "0,0,1,1,16", "--out", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a" / "nas_report.json").read_text())
    assert report["stage_weights"] == [0, 0, 1, 1, 16]
    assert main([*args, "--stage-weights", "0,0,x", "--out", str(tmp_path / "b")]) == 2
    assert "--stage-weights '0,0,x': expected 5 comma-separated" in capsys.readouterr().err
