"""The one result type every compression stage returns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoloslim.fileio import atomic_write_text

__all__ = ["Result"]


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

    def to_json(self) -> str:
        return json.dumps(
            {"report": self.report, "artifacts": {k: str(v) for k, v in self.artifacts.items()}},
            indent=2,
            default=str,
        )

    def save_report(self, path: str | Path) -> Path:
        """Write the report as JSON (atomic rename)."""
        return atomic_write_text(path, self.to_json() + "\n")
