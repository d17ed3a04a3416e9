"""Render a benchmark report: rich table, markdown, JSON and a Pareto plot (mAP vs latency)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from yoloslim.errors import ConfigError
from yoloslim.extras import install_hint, installed
from yoloslim.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["COLUMNS", "table_rows", "to_markdown", "write_report", "rich_table"]

log = logging.getLogger(__name__)

COLUMNS = [
    "Model",
    "Precision",
    "Params (M)",
    "FLOPs (G)",
    "mAP (%)",
    "mAP50 (%)",
    "Latency (ms)",
    "p90 (ms)",
    "FPS",
    "Memory (MiB)",
    "Size (MiB)",
    "x speed",
    "x size",
]


WEIGHTS_SIZE_NOTE = (
    "For a .pt checkpoint, Size is the FP32 weights of its deploy form (params x 4 bytes), "
    "since the file may also hold optimizer and EMA state."
)


def _weights_sized(report: dict) -> bool:
    return any(r.get("size_source", "file") != "file" for r in report["rows"])


def _looped_note(report: dict) -> str | None:
    """Which rows ran a batch larger than 1 as that many batch-1 calls (graphs exported at a
    static batch of 1), when the run measured such a batch."""
    looped = [r["name"] for r in report["rows"] if r.get("static_batch")]
    if not looped or max(report["settings"]["batches"]) == 1:
        return None
    return (
        "Exported at batch 1 (no --dynamic), so a larger batch runs as that many batch-1 "
        "calls: " + ", ".join(looped) + "."
    )


def _nms_note(report: dict) -> str | None:
    """Which rows' latency includes NMS (exported with it in the graph), beside rows whose
    does not."""
    e2e = [r["name"] for r in report["rows"] if r.get("end_to_end")]
    if not e2e:
        return None
    return (
        "NMS in the graph: the latency of " + ", ".join(e2e) + " includes NMS (on random "
        "input, whose boxes are not a real image's), the other rows' does not; no mAP for it."
    )


def _notes(report: dict) -> list[str]:
    notes = (
        WEIGHTS_SIZE_NOTE if _weights_sized(report) else None,
        _looped_note(report),
        _nms_note(report),
    )
    return [n for n in notes if n]


def _fps(lat: dict) -> float | None:
    """Images per second at the latency's batch."""
    return lat.get("batch", 1) * 1000 / lat["median"] if lat["median"] else None


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def figure(x: float | None) -> str:
    """Two decimals, or three significant digits under 1: a model's params (M) or GFLOPs
    (small models at small sizes showed 0.00 and 0.01 for 0.0029 and 0.0098)."""
    if x is None:
        return "-"
    small = f"{x:.3g}"
    return small if abs(float(small)) < 1 else f"{x:.2f}"  # 0.9996: "1.00", not "1"


def _over(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table_rows(report: dict) -> list[list[str]]:
    """One list of cells per artifact, in :data:`COLUMNS` order (mAP as percentages)."""
    out = []
    base = report["rows"][0] if report["rows"] else None
    for r in report["rows"]:
        lat = r["latency_ms"]
        out.append(
            [
                r["name"],
                str(r.get("precision") or "-"),
                figure(r["params"] / 1e6 if r.get("params") is not None else None),
                figure(r.get("gflops")),  # audit52 info F1
                _f(100 * r["map"] if r.get("map") is not None else None, ".1f"),
                _f(100 * r["map50"] if r.get("map50") is not None else None, ".1f"),
                _f(lat["median"], ".2f"),
                _f(lat["p90"], ".2f"),
                _f(_fps(lat), ".1f"),
                _f(r.get("model_mem_mb", r.get("peak_rss_mb")), ".0f"),
                _f(r["size_mb"], ".2f"),
                # from the row's own numbers: the JSON's ratios are rounded to 3 decimals
                # already, and rounded again they showed 0.1346 as 0.14
                _f(_over(base["latency_ms"]["median"], lat["median"]), ".2f"),
                _f(_over(r["size_mb"], base["size_mb"]), ".2f"),
            ]
        )
    return out


def to_markdown(report: dict) -> str:
    s, sysinfo = report["settings"], report["system"]
    lines = [
        "# yoloslim benchmark",
        "",
        f"Baseline: **{report['baseline']}**. FLOPs = 2 x multiply-adds at {s['imgsz']} px, batch 1. "
        + (
            f"mAP = COCO mAP50-95 on `{s['data']}`. "
            if s.get("data")
            else "No mAP (no data given). "
        )
        + f"Latency: median and p90 at batch {s['batches'][0]}; "
        f"FPS = images/s at that batch (batch x 1000 / median). Memory = peak RSS of the artifact's worker process at batch {s['batches'][0]} minus its RSS "
        "once the runtime library was imported, before the model was loaded (what loading and running this artifact "
        "adds, the runtime's one-time start-up included: compare it between rows of one runtime; peak_rss_mb in report.json is the whole process, memory_by_batch has every batch). "
        "Size = bytes on disk / 2^20 (an OpenVINO IR: .xml + .bin). A .pt checkpoint runs in its deploy form (re-parameterised), as the exports do.",
        *_notes(report),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(report)]
    lines += [
        "",
        "Throughput (images/s) by batch: "
        + "; ".join(
            f"{r['name']}: " + ", ".join(f"b{b} {v:.1f}" for b, v in r["throughput_ips"].items())
            for r in report["rows"]
        ),
    ]
    lines += ["", "## Reproduce", "", f"`{report['command']}`", "", "## Machine and runtimes", ""]
    lines += [
        f"- CPU: {sysinfo['cpu']}, {sysinfo['cores']} cores; ISA: "
        + ", ".join(k for k, v in sysinfo["isa"].items() if v),
        f"- OS: {sysinfo['os']}; Python {sysinfo['python']}",
        "- " + ", ".join(f"{k} {v}" for k, v in sysinfo["versions"].items()),
        f"- Threads: {s['threads']}; {s['method']}; {s['rounds']} rounds x "
        + ", ".join(
            f"{n} runs at batch {b}"
            for b, n in s.get(
                "runs_per_round_by_batch", {s["batches"][0]: s["runs_per_round"]}
            ).items()
        )
        + f"; {s['warmup']} warm-up runs excluded",
        "- Precision each runtime used: "
        + ", ".join(f"{r['name']}: {r['precision']}" for r in report["rows"]),
    ]
    return "\n".join(lines) + "\n"


def rich_table(report: dict):
    from rich.markup import escape
    from rich.table import Table

    # the artifacts' names (their paths, in the title, the rows and a note) are the user's:
    # printed as they are, never read as rich markup
    batch = report["settings"]["batches"][0]
    table = Table(
        title=f"yoloslim bench (baseline: {escape(str(report['baseline']))}; latency, FPS "
        f"and memory at batch {batch}; precision: what each computed in)",
        caption=escape(" ".join(_notes(report))) or None,
    )
    # FPS is the first batch's (images/s); the other batches show their throughput
    more = report["settings"]["batches"][1:]
    for c in COLUMNS + [f"img/s b{b}" for b in more]:
        table.add_column(c, justify="left" if c == "Model" else "right")
    for r, cells in zip(report["rows"], table_rows(report), strict=True):
        tp = r.get("throughput_ips") or {}
        name, *figures = cells
        table.add_row(escape(name), *figures, *(_f(tp.get(b, tp.get(str(b))), ".1f") for b in more))
    return table


def pareto_front(latency: list[float], score: list[float]) -> set[int]:
    """Indices of the rows no other row beats: none is at least as fast and at least as
    accurate while better in one of the two."""
    pairs = list(zip(latency, score, strict=True))
    return {
        i
        for i, (x, y) in enumerate(pairs)
        if not any(x2 <= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in pairs)
    }


def _pareto(report: dict) -> bytes | None:
    """``pareto.png``'s bytes: mAP against latency of the rows with a mAP (None without one,
    or without matplotlib: warned about)."""
    rows = [r for r in report["rows"] if r.get("map") is not None]
    if not rows:
        return None
    if not installed("matplotlib"):
        log.warning("no pareto.png: %s", install_hint("matplotlib", "plot"))
        return None
    # a Figure of its own, not pyplot: the caller's matplotlib backend and figures stay as they are
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.subplots()
    xs = [r["latency_ms"]["median"] for r in rows]
    ys = [100 * r["map"] for r in rows]
    front = pareto_front(xs, ys)
    dominated = [i for i in range(len(rows)) if i not in front]
    for group, style, label in (
        (sorted(front), dict(color="tab:blue"), "Pareto front"),
        (
            dominated,
            dict(facecolors="none", edgecolors="tab:gray"),
            "beaten: another row is as fast and as accurate, or better",
        ),
    ):
        if group:
            gx, gy = [xs[i] for i in group], [ys[i] for i in group]
            ax.scatter(gx, gy, zorder=3, label=label, **style)
    if len(front) > 1:  # the front: no row is both faster and more accurate than these
        fx, fy = zip(*sorted((xs[i], ys[i]) for i in front), strict=True)
        ax.step(fx, fy, where="post", color="tab:blue", alpha=0.4, linestyle="--")
    # labels beside their points, towards the middle of the plot, pushed apart where two
    # would overlap (rows of close latency and mAP)
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    x_mid = (x_lo + x_hi) / 2
    placed: list[
        tuple[float, float, float]
    ] = []  # (x in axis fractions, y in points, label offset)
    for i in sorted(range(len(rows)), key=lambda i: -ys[i]):
        at_x = (xs[i] - x_lo) / ((x_hi - x_lo) or 1)
        at_y = (ys[i] - y_lo) / ((y_hi - y_lo) or 1) * 260  # about the axes' height in points
        dy = 4.0
        while any(
            abs(at_x - px) < 0.3 and abs(at_y + dy - py - pdy) < 11 for px, py, pdy in placed
        ):
            dy -= 11
        placed.append((at_x, at_y, dy))
        right = xs[i] > x_mid
        ax.annotate(
            rows[i]["name"],
            (xs[i], ys[i]),
            textcoords="offset points",
            xytext=(-5 if right else 5, dy),
            ha="right" if right else "left",
            fontsize=8,
        )
    ax.margins(x=0.08, y=0.12)
    if dominated:
        ax.legend(fontsize=7, loc="best")
    ax.set_xlabel(f"latency (ms, median, batch {report['settings']['batches'][0]})")
    ax.set_ylabel("mAP50-95 (%)")
    ax.set_title("mAP vs latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    # the mark that tells bench's plot from a user's pareto.png (a PNG text chunk)
    fig.savefig(buf, format="png", metadata={"Source": PNG_SOURCE})
    return buf.getvalue()


PNG_SOURCE = "yoloslim bench"


def write_report(report: dict, out: str | Path, notes: str = "") -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` (``notes``, markdown, after the report) and
    ``pareto.png`` (when mAP was measured and matplotlib, the ``plot`` extra, is installed;
    else a warning) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "md": out / "report.md"}
    check_report_folder(out)  # a pareto.png there is bench's own (checked)
    texts = {
        "json": json.dumps(report, indent=2, default=str) + "\n",
        "md": to_markdown(report) + notes,
    }
    png = _pareto(report)  # drawn first (a second or so): a stop then changes nothing
    # an earlier bench's plot would contradict this report, even for a moment
    (out / "pareto.png").unlink(missing_ok=True)
    for key, text in texts.items():
        atomic_write_text(files[key], text)
    if png:
        files["png"] = atomic_write_bytes(out / "pareto.png", png)
    return files


def holds_report(folder: str | Path, report: dict) -> bool:
    """Whether ``folder``'s report.json holds ``report`` (as :func:`write_report` writes it):
    a copied run's kept one still named the original folder's files."""
    try:
        saved = json.loads((Path(folder) / "report.json").read_text())
    except (OSError, ValueError):
        return False
    return saved == json.loads(json.dumps(report, default=str))


def check_report_folder(out: str | Path) -> None:
    """ConfigError when ``out`` holds a ``report.json``, ``report.md`` or ``pareto.png`` that
    no bench wrote (a user's notes, a figure): write_report would replace or remove it."""
    out = Path(out)
    for name, ours in (("report.json", _is_bench_json), ("report.md", _is_bench_markdown)):
        f = out / name
        if f.is_file() and not ours(f.read_text(errors="replace")):
            raise ConfigError(
                f"{f} is not a bench report; it is not replaced, so move it or choose another "
                "report folder"
            )
    png = out / "pareto.png"
    if png.is_file() and not _is_bench_png(png):
        raise ConfigError(
            f"{png} is not a plot bench drew; it is not replaced, so move it or choose another "
            "report folder"
        )


def _is_bench_json(text: str) -> bool:
    """A bench report's shape: its settings, and rows that each hold a latency (a user's
    ``{"rows": [...]}`` is not one)."""
    try:
        report = json.loads(text)
    except ValueError:
        return False
    if not isinstance(report, dict):
        return False
    rows = report.get("rows")
    return (
        isinstance(report.get("settings"), dict)
        and isinstance(rows, list)
        and bool(rows)
        and all(isinstance(r, dict) and "latency_ms" in r for r in rows)
    )


def _is_bench_png(path: Path) -> bool:
    """Bench's plot: it carries :data:`PNG_SOURCE`; one an earlier yoloslim drew (matplotlib's
    mark only) counts where a bench report.json is beside it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or {})
    except (OSError, ValueError):
        return False
    if text.get("Source") == PNG_SOURCE:
        return True
    beside = path.parent / "report.json"
    return (
        str(text.get("Software", "")).startswith("Matplotlib")
        and beside.is_file()
        and _is_bench_json(beside.read_text(errors="replace"))
    )


def report_folder_record(path: str | Path) -> str | None:
    """What ``path`` is when it is the ``report.json`` of a report folder (a bench report beside
    its report.md, or a compress run's table): a ``--json`` elsewhere must not replace it, or
    the folder's other files describe another run. None otherwise."""
    p = Path(path).expanduser()
    if p.name != "report.json" or not p.is_file():
        return None
    run = compress_run_record(p.parent)  # first: a compress run's report.md is bench's too
    if run:
        return f"the bench table of the compress run in {p.parent} (beside its {run})"
    if (p.parent / "report.md").is_file() and _is_bench_markdown(
        (p.parent / "report.md").read_text(errors="replace")
    ):
        return f"the report of the bench run in {p.parent} (with its report.md)"
    return None


def compress_run_record(folder: str | Path) -> str | None:
    """The record that makes ``folder`` a compress run's (``compress.json``, ``budget.json``
    or ``inputs.json``), or None: its report files are that run's."""
    found = [
        n for n in ("compress.json", "budget.json", "inputs.json") if (Path(folder) / n).is_file()
    ]
    return found[0] if found else None


def _is_bench_markdown(text: str) -> bool:
    return text.startswith("# yoloslim benchmark")
