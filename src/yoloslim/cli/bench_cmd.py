"""``yoloslim bench``."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from yoloslim.cli.common import (
    check_json_target,
    check_out_folder,
    console,
    err_console,
    handle_errors,
    literal,
    print_table,
    same_path,
    write_json,
)


@handle_errors
def bench(
    artifacts: list[Path] = typer.Argument(
        ..., help="Artifacts (.pt, .torchscript, .onnx, .xml); the first is the baseline."
    ),
    data: Path = typer.Option(None, help="data.yaml for mAP (omit to skip accuracy)."),
    imgsz: int = typer.Option(
        None, help="Input size (default: the first fixed-size artifact's, else the first's)."
    ),
    batch: str = typer.Option(
        "1,8", help="Batch sizes, comma-separated: latency at the first, throughput at each."
    ),
    rounds: int = typer.Option(10, help="Interleaved rounds."),
    runs: int = typer.Option(
        10,
        help="Timed runs per round per artifact at the first --batch (a quarter of them, at "
        "least 2, at the others).",
    ),
    threads: int = typer.Option(None, help="Threads per runtime (default: each runtime's own)."),
    warmup: int = typer.Option(10, help="Untimed calls per worker before its timed runs."),
    ov_precision: str = typer.Option(
        None,
        help="OpenVINO .xml rows: compute in f32, bf16 or f16, latency and mAP alike "
        "(default: the plugin's choice, bf16 on AVX512-BF16/AMX CPUs).",
    ),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write the report JSON here too."
    ),
    report: Path = typer.Option(
        None,
        callback=check_out_folder,
        help="Folder for report.json, report.md and pareto.png (the plot needs --data).",
    ),
) -> None:
    """Measure every artifact side by side: params, FLOPs, size, latency, FPS, memory, mAP."""
    from yoloslim.bench.latency import LatencyConfig
    from yoloslim.bench.measure import benchmark
    from yoloslim.bench.report import (
        check_report_folder,
        compress_run_record,
        report_folder_record,
        rich_table,
        write_report,
    )
    from yoloslim.errors import ConfigError
    from yoloslim.fileio import first_missing, folder_lock, removed_if_left_empty

    try:
        # an empty item is a typo ('1,,2'), not one to drop without a word (audit47 bench F3)
        batches = [int(b) for b in batch.split(",")]
    except ValueError as e:
        raise ConfigError(f"--batch {batch!r}: expected comma-separated integers") from e
    cfg = LatencyConfig(
        rounds=rounds, runs_per_round=runs, threads=threads, warmup=warmup, ov_hint=ov_precision
    )
    run = compress_run_record(report) if report else None
    if run:  # its report.json/md and pareto.png are that run's, which its record lists
        raise ConfigError(
            f"--report {report}: is a compress run's folder (its {run}); its report is that "
            "run's (compress --resume writes it again): name another folder"
        )
    record = report_folder_record(json_path) if json_path else None
    if record and not (report and same_path(report, json_path.parent)):
        raise ConfigError(
            f"--json {json_path} is {record}; it is not replaced by this run's report: name "
            f"another file, or write that folder's files anew with --report {json_path.parent}"
        )
    with contextlib.ExitStack() as held:
        if report:
            # held from the check to the writing: a second bench (or a compress run) writing
            # into the folder meanwhile is refused, not mixed with this one's files
            held.enter_context(removed_if_left_empty(report, made=first_missing(report)))
            held.enter_context(folder_lock(report, "bench"))
            check_report_folder(report)  # before the measuring, not after
        with err_console.status(f"benchmarking {len(artifacts)} artifacts"):
            res = benchmark(artifacts, data, imgsz=imgsz, batches=batches, latency=cfg)
        write_json(json_path, res.report)  # first: whole whatever the printing below does
        if report:
            files = write_report(res.report, report)
    print_table(rich_table(res.report))
    if report:
        console.print("wrote " + literal(", ".join(str(p) for p in files.values())), soft_wrap=True)
