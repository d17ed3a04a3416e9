"""One epoch of :func:`yoloslim.train.train`: its data order, its steps, and its checkpoint."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from yoloslim.data import DetectionDataset, DetectionLoader, collate
from yoloslim.errors import TrainingError
from yoloslim.progress import progress_console
from yoloslim.sysinfo import processes_per_node
from yoloslim.train import distributed as dist_utils
from yoloslim.train.config import TrainConfig, loader_workers
from yoloslim.train.ema import ModelEMA
from yoloslim.train.loss import DetectionLoss
from yoloslim.train.run_folder import RunFolder, json_safe

if TYPE_CHECKING:
    from pathlib import Path

    from yoloslim.models.detector import Detector
    from yoloslim.train.trainer import TrainHook

__all__ = ["Fit", "epoch_loader", "lr_at", "warmup_steps"]

log = logging.getLogger(__name__)


def warmup_steps(cfg: TrainConfig, n_batches: int) -> int:
    """The warm-up's length in whole steps (at least one when there is a warm-up)."""
    return max(1, round(cfg.warmup_epochs * n_batches)) if cfg.warmup_epochs else 0


def lr_at(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr0`` to ``lr0 * lrf``, which
    the run's last step (``total - 1``) reaches."""
    if step < warmup:
        return cfg.lr0 * (step + 1) / warmup
    span = total - 1 - warmup  # steps from the first after warm-up to the last
    # one step after warm-up (or none): it is the last, the decayed end once warmed up
    t = (1.0 if warmup else 0.0) if span <= 0 else (step - warmup) / span
    return cfg.lr0 * (cfg.lrf + (1 - cfg.lrf) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def epoch_loader(
    dataset: DetectionDataset, cfg: TrainConfig, epoch: int, world: int, rank: int
) -> DetectionLoader:
    """The epoch's batches: a shuffle that depends on ``(seed, epoch)`` only, so a resumed
    run sees the batches an uninterrupted one would (one share per process under DDP)."""
    if world > 1:
        sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
    else:
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        sampler = torch.randperm(len(dataset), generator=g).tolist()
    return DetectionLoader(
        dataset,
        batch_size=cfg.batch // world,
        sampler=sampler,
        num_workers=loader_workers(cfg.workers),
        collate_fn=collate,
        drop_last=False,
    )


@dataclass
class Fit:
    """What an epoch trains: the model (``wrapped`` for DDP where several processes run),
    its loss, optimizer, gradient scaler, EMA and optional hook, and the schedule's size."""

    net: Detector
    wrapped: nn.Module
    trainable: nn.Module  # the model, and the hook's own modules when it has some
    criterion: DetectionLoss
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    hook: TrainHook | None
    cfg: TrainConfig
    device: torch.device
    fmt: torch.memory_format
    world: int
    n_batches: int
    out: Path

    @property
    def total_steps(self) -> int:
        return self.n_batches * self.cfg.epochs

    @property
    def warmup(self) -> int:
        return warmup_steps(self.cfg, self.n_batches)

    @property
    def extra(self) -> nn.Module | None:
        """The hook's own trainable modules (a distillation's align convs), if any."""
        return self.trainable[1] if isinstance(self.trainable, nn.ModuleList) else None

    @property
    def final_model(self) -> nn.Module:
        """The model that is validated and saved: the EMA's where there is one."""
        return self.ema.module if self.ema is not None else self.net

    def run_epoch(self, epoch: int, loader: DetectionLoader, progress: bool) -> tuple[dict, int]:
        """Train one epoch; returns its metrics row (losses averaged over this process's
        images, so a short last batch weighs what its images do; last lr, timing) and the
        number of images all processes saw."""
        self.wrapped.train()
        self.criterion.epoch = epoch
        if self.hook is not None:
            self.hook.epoch_start(self.net, epoch)
        sums = torch.zeros(3)
        extra_sums: dict[str, float] = {}
        lr, seen, objects = self.cfg.lr0, 0, 0  # seen: this process's images
        t_epoch = time.time()
        title = f"epoch {epoch + 1}/{self.cfg.epochs}"
        with epoch_progress(progress, title, self.n_batches) as pbar:
            task = pbar.add_task("train", total=self.n_batches, losses="") if pbar else None
            for i, (imgs, targets, _) in enumerate(loader):
                lr = lr_at(epoch * self.n_batches + i, self.total_steps, self.warmup, self.cfg)
                parts, extra = self.step(imgs, targets, lr, epoch, i)
                b = imgs.shape[0]
                sums += parts * b
                for k, v in extra.items():
                    extra_sums[k] = extra_sums.get(k, 0.0) + float(v) * b
                seen += b
                objects += len(targets)
                if pbar:
                    m = sums / seen
                    more = "".join(f" {k} {v / seen:.3f}" for k, v in extra_sums.items())
                    pbar.update(
                        task,
                        advance=1,
                        losses=f"box {m[0]:.3f} cls {m[1]:.3f} dfl {m[2]:.3f}{more} lr {lr:.2e}",
                    )
        epoch_s = time.time() - t_epoch
        n = max(seen, 1)
        if objects and not sums[0] and not sums[2]:
            # no anchor was positive all epoch: the boxes got no gradient (a random head's
            # boxes, many strides wide, give a small object none under the task-aligned rule)
            log.warning(
                "epoch %d: none of its %d objects got a positive anchor (box and DFL losses "
                "0): the boxes learn nothing; from random weights, more ATSS epochs "
                "(loss.static_assigner_epochs, now %s) or more epochs help",
                epoch + 1,
                objects,
                self.criterion.cfg.static_assigner_epochs,
            )
        row = {
            "epoch": epoch,
            "lr": lr,
            "box": float(sums[0] / n),
            "cls": float(sums[1] / n),
            "dfl": float(sums[2] / n),
            **{k: v / n for k, v in extra_sums.items()},
            "epoch_s": round(epoch_s, 2),
            "images_per_s": round(len(loader.dataset) / epoch_s, 2),
        }
        return row, seen * self.world

    def step(
        self, imgs: torch.Tensor, targets: torch.Tensor, lr: float, epoch: int, i: int
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """One optimizer step on a batch; returns the detection loss's parts (box, cls,
        dfl) and the hook's."""
        cfg = self.cfg
        for grp in self.optimizer.param_groups:
            grp["lr"] = lr
        imgs = imgs.to(self.device, non_blocking=True).float().div_(255)
        imgs = imgs.contiguous(memory_format=self.fmt)
        use_amp = self.scaler.is_enabled()
        ctx = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
        with ctx:
            raw = self.wrapped(imgs)
        raw = [r.float() for r in raw]
        targets = targets.to(self.device)
        loss, parts = self.criterion(raw, targets)
        extra_parts: dict[str, Any] = {}
        if self.hook is not None:
            extra_loss, extra_parts = self.hook.loss(imgs, raw, targets, epoch + i / self.n_batches)
            loss = loss + extra_loss
        if not torch.isfinite(loss):
            raise TrainingError(
                f"{self.out}: the loss is {loss.item()} at epoch {epoch}, batch {i}: training "
                f"diverged; lower lr0 (now {cfg.lr0}) or keep grad_clip on (now "
                f"{cfg.grad_clip}), and check the labels"
            )
        self.optimizer.zero_grad(set_to_none=True)
        # the loss is scaled by this process's batch (YOLO's convention: x batch), and DDP
        # averages the processes' gradients: x world gives the gradient one process of the
        # whole (global) batch would (it was 1/world of it: lr0/world for SGD, and
        # grad_clip met at another norm)
        scaled = loss * self.world if self.world > 1 else loss
        self.scaler.scale(scaled).backward()
        if self.world > 1 and self.extra is not None:
            # DDP averaged the model's gradients; the hook's modules (align convs) are not
            # in it, and unsynchronised they would differ per process, as would the
            # clipping factor computed over both
            dist_utils.average_gradients(self.extra)
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.trainable.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.net)
        return parts.cpu(), extra_parts

    def train_state(self, epoch: int, best_map: float, last_val: dict) -> dict:
        """What ``last.pt`` needs to resume after ``epoch``: the raw weights, the optimizer,
        the EMA, the hook's state, the mixed-precision loss scale (CUDA) and the counters."""
        state = {
            "epoch": epoch,
            "config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "best_map": best_map,
            "world": self.world,  # the data order depends on it: see the resume's warning
            # the processes on one node (of several: a resume is launched as the run was)
            "per_node": processes_per_node(self.world),
            "raw_state_dict": {
                k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()
            },
        }
        if self.hook is not None:
            state["hook"] = self.hook.state_dict()
        if self.scaler.is_enabled():  # its loss scale is state: a resume starting over diverges
            state["scaler"] = self.scaler.state_dict()
        if last_val:
            state["last_val"] = json_safe(last_val)
        return state

    def save(
        self,
        run: RunFolder,
        row: dict,
        best_map: float,
        last_val: dict,
        meta: dict,
        *,
        val_pending: bool = False,
    ) -> float:
        """Write ``best.pt`` on a new best mAP, ``last.pt``, then the metrics row of the epoch
        in ``row``; returns the best mAP so far.

        ``last.pt`` keeps the row too: a stop between the two leaves a ``last.pt`` past the
        last row, and the resume writes that row from it (:meth:`RunFolder.start`). (The row
        first would leave, after a stop in epoch 0, a ``metrics.jsonl`` without ``last.pt``:
        a folder neither resumable nor free.)

        ``val_pending``: the epoch's validation did not finish (``row`` has no mAP), so only
        ``last.pt`` is written, marked so: a resume validates the epoch first (then writes
        its row and, on a new best, ``best.pt``) instead of training it again."""
        state = self.train_state(row["epoch"], best_map, last_val)
        state["metrics_row"] = row
        if val_pending:
            state["val_pending"] = True
        meta = {"epoch": row["epoch"], "map": row.get("map"), "map50": row.get("map50"), **meta}
        steps = meta.get("history") or []
        if steps and isinstance(steps[-1], dict):  # this run's step: the epochs this file has
            # (its "epochs" is the run's plan; a stopped run's best.pt said 30 for 2 trained)
            meta["history"] = [*steps[:-1], {**steps[-1], "epochs_trained": row["epoch"] + 1}]
        if row.get("map") is not None and row["map"] > best_map:
            best_map = state["best_map"] = row["map"]
            run.save("best.pt", self.final_model, meta=meta)
        run.save("last.pt", self.final_model, meta=meta, train_state=state)
        if not val_pending:
            run.log_metrics(row)
        return best_map


def epoch_progress(enabled: bool, title: str, total: int):
    """A rich progress bar for an epoch's batches with the running losses, or a null context."""
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    # on a narrow terminal the losses (long with the kd_* terms) give way, not the epoch
    console = progress_console()
    room = max(16, console.width - len(title) - 2 - 20 - 2 * len(str(total)) - 1 - 7 - 4)
    return Progress(
        TextColumn(f"[bold]{title}", table_column=Column(no_wrap=True, min_width=len(title) + 2)),
        BarColumn(bar_width=20, table_column=Column(min_width=20)),
        MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=len(str(total)) * 2 + 1)),
        TimeRemainingColumn(table_column=Column(no_wrap=True, min_width=7)),
        TextColumn(
            "{task.fields[losses]}",
            table_column=Column(no_wrap=True, overflow="ellipsis", max_width=room),
        ),
        console=console,
    )
