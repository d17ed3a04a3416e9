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
        """Write the report as JSON (atomic rename); ``~`` is expanded."""
        return atomic_write_text(Path(path).expanduser(), self.to_json() + "\n")
