"""A training run's folder: what may be written into it, checkpoints with normal permissions,
``metrics.jsonl``, the clean-up after an interrupted run, and the result a run returns."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from yoloslim.errors import ConfigError
from yoloslim.fileio import appendable, atomic_write_text, naming, remove_stale_temps
from yoloslim.models.checkpoint import (
    arch_label,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from yoloslim.models.detector import Detector
from yoloslim.result import Result, short_repr
from yoloslim.sysinfo import first_process
from yoloslim.train.config import TrainConfig

__all__ = [
    "RunFolder",
    "no_last_pt",
    "TrainResult",
    "check_best",
    "check_out",
    "check_resume_data",
    "finished_result",
    "json_safe",
    "recorded_data",
    "run_result",
]

log = logging.getLogger(__name__)

# what a run folder holds; RUN_MARKERS say that a folder already holds a run
CHECKPOINTS = ("last.pt", "best.pt")
# (best.pt too: a new run that writes none, its val split holding no box, reported an
# earlier run's best.pt as its own)
RUN_MARKERS = ("last.pt", "metrics.jsonl", "best.pt")
RUN_FILES = (*CHECKPOINTS, "metrics.jsonl", "train_config.yaml", "distill_config.yaml")
SETTINGS_FILES = ("train_config.yaml", "distill_config.yaml")
#: the first line of a settings file a run writes: a file of that name without it is the
#: user's (a fresh run deleted or replaced it)
SETTINGS_HEADER = "# yoloslim: the settings of the run in this folder, written by it\n"


@dataclass
class TrainResult:
    """What :func:`train` returns: the best (EMA) model and a JSON-able report."""

    model: Detector
    report: dict = field(default_factory=dict)
    best: Path | None = None
    last: Path | None = None

    @property
    def artifacts(self) -> dict[str, Path]:
        """The checkpoints, by role (``best``, ``last``), as other stages' Results have them."""
        return {k: p for k, p in (("best", self.best), ("last", self.last)) if p is not None}

    def __repr__(self) -> str:
        return short_repr(self, {"model": self.model, "report": self.report}, self.artifacts)

    def to_json(self) -> str:
        return self._as_result().to_json()

    def save_report(self, path: str | Path) -> Path:
        """Write the report and the checkpoints' paths as JSON (atomic rename)."""
        return self._as_result().save_report(path)

    def _as_result(self) -> Result:
        return Result(self.model, self.report, self.artifacts)


def check_out(out: Path, resume: bool, exist_ok: bool) -> None:
    """Refuse an ``out`` that is a file, or that holds a run a fresh one would overwrite."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={str(out)!r} is an existing file; the run needs a folder")
    if resume or exist_ok:
        return
    found = [m for m in RUN_MARKERS if (out / m).exists()]
    if found and (out / "last.pt").exists():
        # a distillation resumes with its teacher: train --resume refuses it
        distilled = (out / "distill_config.yaml").exists()
        kind, command = ("a distillation", "distill ") if distilled else ("a training run", "")
        raise ConfigError(
            f"{out} holds {kind} ({found[0]}); resume it ({command}--resume {out}, "
            "resume=True), start afresh there, replacing it (--exist-ok, exist_ok=True), or "
            "choose another output folder"
        )
    if not found:  # a fresh run writes its settings files; one it did not write is kept
        for name in SETTINGS_FILES:
            path = out / name
            if path.is_file() and not _written_by_a_run(path):
                raise ConfigError(
                    f"{path} is not a settings file a yoloslim run wrote, and this run "
                    "writes one there: move it away (or give it as --config from elsewhere), "
                    "replace it (--exist-ok, exist_ok=True), or choose another output folder"
                )
    if found:  # stopped (or refused a write: a full disk) before its first last.pt
        raise ConfigError(
            f"{out} holds a training run that cannot be resumed ({', '.join(found)} but no "
            "last.pt); start afresh there, replacing it (--exist-ok, exist_ok=True), or choose "
            "another output folder"
        )


def _written_by_a_run(path: Path) -> bool:
    """Whether ``path`` starts with :data:`SETTINGS_HEADER`."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.readline() == SETTINGS_HEADER
    except OSError:
        return False


def check_resume_data(
    state: dict, data: str | Path, nc: int, out: Path, data_names: list[str] | None = None
) -> None:
    names = state.get("names", [])
    if nc != len(names):
        raise ConfigError(
            f"resume: data {data} has {nc} classes, the run in {out} has {len(names)} "
            f"({', '.join(map(str, names))})"
        )
    if data_names is not None and list(data_names) != [str(n) for n in names]:
        log.warning(
            "resume: the run in %s trained class names %s, data %s names them %s; it goes on "
            "under the data's names (its class i stays class i)",
            out,
            list(names),
            data,
            list(data_names),
        )


def no_last_pt(out: Path, where: str = "resume") -> ConfigError:
    """The error for a resume of ``out`` without a ``last.pt``: a run stopped before its
    first one was written (its settings files are there) is to be started again."""
    if (out / "last.pt").exists():  # a folder in its place: no --exist-ok hint (it would
        # delete the run's good best.pt and metrics)
        return ConfigError(f"{where}: {out / 'last.pt'} is not a file")
    started = out.is_dir() and (out / "train_config.yaml").exists()
    hint = (
        " (the run there stopped before its first last.pt was written: start it again, "
        "with exist_ok=True / --exist-ok)"
        if started
        else ""
    )
    return ConfigError(f"{where}: {out / 'last.pt'} does not exist{hint}")


def read_last(out: Path, where: str = "resume") -> dict:
    """The checkpoint dict of ``out/last.pt``, the run a resume continues; ConfigError,
    prefixed ``where``, when it is missing or holds no training state."""
    last = Path(out) / "last.pt"
    if not last.is_file():
        raise no_last_pt(Path(out), where)
    state = read_checkpoint(last)
    if "train_state" not in state:
        raise ConfigError(f"{where}: {last} has no training state")
    return state


def check_best(out: Path, state: dict | None = None, where: str = "resume") -> None:
    """Refuse a resume of ``out`` whose ``best.pt`` is not a checkpoint (cut short, a folder):
    a damaged one failed the run after its last epoch (audit42 corrupt F3); or, given
    ``state`` (``last.pt``'s dict), one of other classes or another architecture than it: not
    one run's two checkpoints (audit50 resume F1: another run's last.pt, copied in, resumed
    beside a best.pt of 4 classes where it had 3)."""
    best = Path(out) / "best.pt"
    if best.exists():
        if not best.is_file():
            raise ConfigError(f"{where}: {best} is not a file")
        ckpt = read_checkpoint(best, mmap=True)
        if state is None:
            return
        if list(ckpt["names"]) != list(state["names"]):
            differ = f"classes {list(ckpt['names'])} against {list(state['names'])}"
        elif ckpt["arch"] != state["arch"]:  # (other classes: another head too)
            differ = "another architecture"
        else:
            return
        raise ConfigError(
            f"{where}: {best} is not of the run in {best.with_name('last.pt')} ({differ}): one "
            "of them was copied in from another run; put back the run's own file"
        )


def recorded_data(out: Path, state: dict) -> str:
    """The data.yaml a run's ``last.pt`` records (the run resumes on it): absolute, or (runs
    saved before it was made absolute) relative to the folder the run was started from."""
    data = state.get("meta", {}).get("data")
    if not data:
        raise ConfigError(
            f"resume {out}: {out}/last.pt does not record its data.yaml; give it (--data, data=)"
        )
    if not Path(data).is_absolute() and not Path(data).is_file():
        raise ConfigError(
            f"resume {out}: last.pt records its data.yaml as {data!r}, relative to the "
            f"folder the run was started from, and there is no such file from {Path.cwd()}; "
            "run from that folder or give the data.yaml (--data, data=)"
        )
    if not Path(data).is_file():  # moved or deleted since: "data.yaml not found" alone
        raise ConfigError(
            f"resume {out}: the run's data.yaml {data} (recorded in its last.pt) is gone; "
            "give where it is now (--data, data=)"
        )
    return data


def json_safe(d: dict) -> dict:
    # numpy scalars would make last.pt unloadable with torch.load(weights_only=True)
    return json.loads(json.dumps(d, default=float))


class RunFolder:
    """The folder of one training run: its checkpoints and ``metrics.jsonl``."""

    def __init__(self, out: Path, cfg: TrainConfig, progress: bool):
        self.out, self.cfg, self.progress = out, cfg, progress
        self.metrics_path = out / "metrics.jsonl"

    def start(self, resumed_at: int | None, replace: bool, last_row: dict | None = None) -> None:
        """Prepare the folder: drop stale temp files, trim the metrics of a resumed run (and
        add ``last_row``, the row ``last.pt`` keeps, when a stop came before it was written)
        or (``replace``) delete another run's files. A fresh run also deletes the settings
        files of a run stopped before its first ``last.pt`` (a distill's
        ``distill_config.yaml`` stayed beside a later plain train's results)."""
        self.out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.out, RUN_FILES)
        ran = any((self.out / m).exists() for m in RUN_MARKERS)
        if resumed_at is not None:
            self.trim_metrics(resumed_at, last_row)
        elif replace or not ran:
            for name in RUN_FILES:
                (self.out / name).unlink(missing_ok=True)
            others = sorted(p.name for p in self.out.iterdir() if not p.name.startswith("."))
            if replace and ran and others:  # an export of the replaced run's weights, say
                log.warning(
                    "%s: the run there is replaced; kept %s, which the run did not write (made "
                    "from its weights? they stay beside the new run's)",
                    self.out,
                    ", ".join(others),
                )

    def save(self, name: str, model: nn.Module, **kwargs) -> None:
        save_checkpoint(self.out / name, model, imgsz=self.cfg.imgsz, **kwargs)

    def log_metrics(self, row: dict) -> None:
        path = appendable(self.metrics_path)  # a link's target is not appended to
        with naming(path), path.open("a") as f:  # a full disk: named
            f.write(json.dumps(row) + "\n")

    def trim_metrics(self, before_epoch: int, last_row: dict | None = None) -> None:
        """Drop rows of epochs that will be re-run (written after the last checkpoint); add
        ``last_row`` when its epoch has no row."""
        # bytes that are not UTF-8 (a damaged file) make lines that are not JSON, skipped below
        # (they were a UnicodeDecodeError's traceback: audit42 corrupt F2)
        data = self.metrics_path.read_bytes() if self.metrics_path.exists() else b""
        text = data.decode(errors="replace")
        if not text and last_row is None:
            return
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # cut short by the stop this run resumes from
                log.warning("%s:%d: skipped a line that is not JSON", self.metrics_path, n)
                continue
            epoch = row.get("epoch") if isinstance(row, dict) else None
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                log.warning("%s:%d: skipped a line that is no epoch's row", self.metrics_path, n)
                continue
            rows.append(row)
        keep = [r for r in rows if r["epoch"] < before_epoch]
        if last_row is not None and all(r.get("epoch") != last_row.get("epoch") for r in keep):
            keep.append(last_row)  # a stop came between last.pt and its row
        new = "".join(json.dumps(r) + "\n" for r in keep)
        if new.encode() != data:  # as it is: left alone (a finished run's resume changes nothing)
            atomic_write_text(self.metrics_path, new)


def finished_result(out: Path, state: dict, cfg: TrainConfig) -> TrainResult:
    """The result of resuming a run that already trained all its epochs: nothing trains (the
    last epoch's metrics row is written if a stop came between ``last.pt`` and it)."""
    ts = state["train_state"]
    # a warning, not info: the API's caller asked for training and gets none (the CLI's too);
    # under torchrun, said by the first process only
    if first_process():
        log.warning("%s already finished %d/%d epochs; nothing to do", out, cfg.epochs, cfg.epochs)
    if ts.get("metrics_row") is not None:
        RunFolder(out, cfg, False).trim_metrics(ts["epoch"] + 1, ts["metrics_row"])
    meta = state.get("meta", {})
    last = ts.get("last_val") or {k: meta[k] for k in ("map", "map50") if meta.get(k) is not None}
    return run_result(
        out,
        cfg,
        best_map=ts["best_map"],
        last=last,
        train_s=0.0,
        images_per_s=None,
        fallback=lambda: load_checkpoint(out / "last.pt")[0],
    )


def run_result(
    out: Path,
    cfg: TrainConfig,
    *,
    best_map: float,
    last: dict,
    train_s: float,
    images_per_s: float | None,
    fallback: Callable[[], nn.Module],
) -> TrainResult:
    """The run's TrainResult: the model of ``best.pt`` (else ``fallback()``) and the report."""
    best_path = out / "best.pt"
    has_best = best_path.exists()
    model = load_checkpoint(best_path)[0] if has_best else fallback()
    report = {
        # a pruned damo-nano is not reported as a damo-nano (audit47 train L1)
        "model": arch_label(
            getattr(model, "spec", {}).get("name", "custom"), getattr(model, "history", None)
        ),
        "epochs": cfg.epochs,
        "train_s": train_s,
        "images_per_s": images_per_s,
        "best_map": best_map if best_map >= 0 else None,
        "last": last,
        "out": str(out),
    }
    return TrainResult(model.eval(), report, best_path if has_best else None, out / "last.pt")
