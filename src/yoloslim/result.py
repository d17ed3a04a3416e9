"""The one result type every compression stage returns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoloslim.fileio import atomic_write_text

__all__ = ["Result", "short_repr"]


def short_repr(obj: Any, fields: dict[str, Any], artifacts: dict[str, Path]) -> str:
    """``Name(model=<Detector, 1.61 M params>, report={keys...}, artifacts={...})``: a
    result's repr without the module tree (hundreds of lines) or the whole report."""
    parts = []
    for name, value in fields.items():
        if callable(getattr(value, "parameters", None)):  # a torch module
            n = sum(p.numel() for p in value.parameters())
            value = f"<{type(value).__name__}, {n / 1e6:.2f} M params>"
        elif isinstance(value, dict):
            value = f"<keys: {', '.join(map(str, value))}>" if value else "{}"
        else:
            value = repr(value)
        parts.append(f"{name}={value}")
    parts.append(f"artifacts={ {k: str(v) for k, v in artifacts.items()} }")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass
class Result:
    """A stage's output: the new model (the input is never mutated) and a JSON-able report.

    Attributes:
        model: the resulting model (an ``nn.Module``) or artifact path.
        report: measurements and settings of the stage, plain JSON types only.
        artifacts: files the stage wrote, by role (e.g. ``{"onnx": Path(...)}``).
    """

    model: Any
    report: dict = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        return short_repr(self, {"model": self.model, "report": self.report}, self.artifacts)

    def to_json(self) -> str:
        return json.dumps(
            {"report": self.report, "artifacts": {k: str(v) for k, v in self.artifacts.items()}},
            indent=2,
            default=str,
        )

    def save_report(self, path: str | Path) -> Path:
        """Write the report as JSON (atomic rename); ``~`` is expanded.

        Raises:
            ConfigError: ``path`` is not a ``.json`` name, is a folder, or is a file the
                report must not replace (see :func:`check_report_target`).
        """
        path = Path(path).expanduser()
        check_report_target(path)
        return atomic_write_text(path, self.to_json() + "\n")


#: the records runs write into their folders and read back (a ``save_report`` over one
#: changes its layout: the run's next pass can no longer read it)
RUN_RECORD_NAMES = frozenset(
    {
        "export_report.json",
        "quant_report.json",
        "prune_report.json",
        "nas_report.json",
        "reparam_report.json",
        "compress.json",
        "budget.json",
        "detections.json",
        "quant_config.json",
        "stage.json",
        "inputs.json",
        "report.json",
    }
)


def check_report_target(path: Path) -> None:
    """ConfigError when a report saved at ``path`` would replace what it must not: a file
    of another kind (a checkpoint, a data.yaml: any name but ``*.json``), a folder, a file
    that holds no JSON, or a run's own record (:data:`RUN_RECORD_NAMES`)."""
    from yoloslim.errors import ConfigError

    if path.suffix.lower() != ".json":
        raise ConfigError(f"{path}: a report is JSON; name the file *.json")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; name a .json file")
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path} holds no JSON ({e}); it is not replaced") from e
    # report.json is a common name: only a bench report (its rows) is a run's record
    bench = isinstance(data, dict) and "rows" in data
    if path.name in RUN_RECORD_NAMES and (path.name != "report.json" or bench):
        raise ConfigError(
            f"{path} is a run's record ({path.name}), which it reads back; save the report "
            "under another name"
        )
