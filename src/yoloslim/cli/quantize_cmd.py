"""``yoloslim quantize``."""

from __future__ import annotations

from pathlib import Path

import typer

from yoloslim.cli.common import (
    check_json_target,
    check_out_folder,
    config_file,
    console,
    err_console,
    handle_errors,
    layered,
    literal,
    option_given,
    print_table,
    warn,
    write_json,
)
from yoloslim.configs import load_mapping
from yoloslim.errors import ConfigError


@handle_errors
def quantize(
    ctx: typer.Context,
    model: Path = typer.Option(..., help="yoloslim checkpoint (.pt) or exported .onnx."),
    data: Path = typer.Option(..., help="data.yaml (train split calibrates, val measures)."),
    out: Path = typer.Option(
        Path("runs/quantize"), callback=check_out_folder, help="Output folder."
    ),
    backend: str = typer.Option("openvino", help="openvino (NNCF) or onnxruntime (QDQ)."),
    mode: str = typer.Option("static", help="static, or dynamic (onnxruntime only)."),
    calib: int = typer.Option(300, help="Calibration images from the train split."),
    method: str = typer.Option("minmax", help="minmax, entropy (onnxruntime) or percentile."),
    max_drop: float = typer.Option(
        None, help="Accuracy budget in mAP50-95 points: return sensitive layers to float."
    ),
    ignore: list[str] = typer.Option(
        None,
        "--ignore",
        help="Ignored-scope pattern (repeatable): 'decode', 'head_preds' or a regex on "
        "layer/node names; 'none' quantizes everything. Default: decode.",
    ),
    imgsz: int = typer.Option(None, help="Input size (default: the model's)."),
    float_variants: str = typer.Option(
        "", "--float-variants", help="Also write float artifacts: fp16, bf16 (comma-separated)."
    ),
    preset: str = typer.Option(None, help="NNCF preset: mixed (default) or performance."),
    no_latency: bool = typer.Option(False, "--no-latency", help="Skip latency measurement."),
    config: Path = typer.Option(None, help="YAML of QuantConfig fields (flags given override)."),
    json_path: Path = typer.Option(
        None, "--json", callback=check_json_target, help="Write the quant report as JSON."
    ),
) -> None:
    """INT8 post-training quantization; writes quant_report.json/.md and the artifacts."""
    from rich.table import Table

    from yoloslim.compress.quant_config import _FLOAT_VARIANTS
    from yoloslim.compress.quantize import QuantConfig, budget_warning
    from yoloslim.compress.quantize import quantize as run_quantize

    if ignore and "none" in ignore and len(ignore) > 1:
        raise ConfigError(
            f"--ignore none quantizes everything; it cannot go with other --ignore patterns "
            f"(got {list(ignore)})"
        )
    variants = [v.strip() for v in float_variants.split(",") if v.strip()]
    unknown = [v for v in variants if v.lower() not in _FLOAT_VARIANTS]
    if unknown:  # the library's error names its float_variants=[...], not this flag
        raise ConfigError(
            f"--float-variants {float_variants}: unknown {', '.join(unknown)}; give "
            f"{' or '.join(_FLOAT_VARIANTS)} (comma-separated for both)"
        )
    flags = dict(
        backend=backend,
        mode=mode,
        calib=calib,
        method=method,
        max_drop=max_drop,
        ignored_scope=([] if ignore == ["none"] else list(ignore)) if ignore else None,
        imgsz=imgsz,
        float_variants=variants or None,
    )
    params = {"ignored_scope": "ignore"}
    section = load_mapping(config, "QuantConfig") if config else None
    values = layered(ctx, section, flags, params)
    if (
        "bf16" in [v.lower() for v in variants]
        and str(values.get("backend")).lower() == "onnxruntime"
    ):
        # the library's error named its float_variants=['bf16'] (audit52 quant L1)
        raise ConfigError(
            f"--float-variants {float_variants} needs the openvino backend (got backend "
            "onnxruntime; ONNX Runtime's CPU provider has no bf16 convolutions)"
        )
    with config_file(config, ctx):  # a mistake in what the file gives (advanced: 3) names it
        advanced = layered(
            ctx,
            values.get("advanced"),
            {"preset": preset, "latency": False if no_latency else None},
            {"latency": "no_latency"},
            key="advanced",
        )
        if advanced:
            values["advanced"] = advanced
        cfg = QuantConfig.from_dict(values)
    if cfg.mode == "dynamic":  # the defaults are not told apart from the same values given
        given = [f"--{n} {values[n]}" for n in ("calib", "method") if option_given(ctx, n)]
        given += [
            f"{n}: {section[n]} (--config {config})"
            for n in ("calib", "method")
            if isinstance(section, dict) and n in section and not option_given(ctx, n)
        ]
        if given:
            raise ConfigError(
                f"{'; '.join(given)}: mode dynamic computes activation ranges at run time "
                "and calibrates on nothing; leave them out, or use --mode static"
            )
    with err_console.status(f"quantizing {literal(model)} ({cfg.backend}, {cfg.mode})"):
        res = run_quantize(model, data, config=cfg, out=out, progress=False)
    rep = res.report
    write_json(json_path, rep)  # first: whole whatever the printing below does
    table = Table(title=f"quantize {literal(model)} ({cfg.backend}, {rep['imgsz']} px)")
    for col in (
        "artifact",
        "mAP50-95 (%)",
        "mAP50 (%)",
        "median ms",
        "p90 ms",
        "MiB",
        "computed in (mAP / latency)",
    ):
        table.add_column(col)
    for role in ("float", "fp16", "bf16", "int8"):
        e = rep.get(role)
        if not e:
            continue
        lat = e.get("latency_ms") or {}
        table.add_row(
            role,
            f"{100 * e['map']:.2f}",
            f"{100 * e['map50']:.2f}",
            f"{lat['median']:.2f}" if lat else "-",
            f"{lat['p90']:.2f}" if lat else "-",
            str(e["size_mb"]),
            f"{e.get('map_precision', '-')} / {e.get('precision', '-')}",
        )
    print_table(table)
    kept = rep["layers_in_float"]
    aware = ", ".join(kept["accuracy_aware"])  # the model's layer names
    if not aware:  # "none" read as "the mode was off" when --max-drop was met at once
        aware = "no layer returned to float" if rep.get("accuracy_aware") else "off"
    console.print(
        f"kept float: {kept['scope_nodes']} scope nodes; accuracy-aware: {literal(aware)}"
    )
    warning = budget_warning(rep)
    if warning:
        warn(literal(warning))
    console.print(
        f"int8: {literal(res.model)}\nreport: {literal(Path(out) / 'quant_report.json')}",
        soft_wrap=True,
    )
