"""Callbacks recipes use."""
from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.data import extract_batch_size


class LastCheckpoint(ModelCheckpoint):
    """Keep ``last.ckpt`` current: every ``every_n_train_steps`` steps and whenever training stops (``max_steps``,
    ``max_time``, early stopping, Ctrl-C, an exception), so ``--ckpt_path last`` resumes from where the run
    really ended.

    Lightning's own ``save_last`` skips the save at the end of training once any last checkpoint was
    written, so a run stopped by ``max_time`` between two saves would lose those steps.

    Args:
        dirpath: folder of ``last.ckpt``; default ``<trainer.default_root_dir>/checkpoints`` (the recipe CLI
            fills it in before the run starts, so ``--ckpt_path last`` finds it; see :mod:`musicfx.tasks.rundir`).
        every_n_train_steps: how often to rewrite it during training.
        save_top_k: ranked checkpoints to keep besides ``last.ckpt`` (none by default).
        enable_version_counter: ``False`` keeps one ``last.ckpt`` (no ``last-v1.ckpt`` on a rerun).
        **kwargs: other :class:`~lightning.pytorch.callbacks.ModelCheckpoint` arguments.
    """

    def __init__(
        self,
        dirpath: Optional[str] = None,
        every_n_train_steps: int = 500,
        save_top_k: int = 0,
        enable_version_counter: bool = False,
        **kwargs: Any,
    ) -> None:
        # Explicit parameters, not kwargs.setdefault: the CLI fills **kwargs with ModelCheckpoint's own
        # defaults (save_last=None), which would override ours.
        kwargs["save_last"] = True
        super().__init__(
            dirpath=dirpath, every_n_train_steps=every_n_train_steps, save_top_k=save_top_k,
            enable_version_counter=enable_version_counter, **kwargs,
        )

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if self.dirpath is None:  # built in Python, outside the recipe CLI
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        super().setup(trainer, pl_module, stage)

    def _save_final(self, trainer: "pl.Trainer") -> None:
        if trainer.global_step > 0 and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._save_final(trainer)

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        if trainer.world_size > 1 and not isinstance(exception, KeyboardInterrupt):
            return  # one rank failed: saving needs every rank at a barrier, which would hang
        # Weights a failure left non-finite (a NaN loss stepped) would only make the resume fail again.
        finite = all(math.isfinite(float(p.detach().abs().max())) for p in pl_module.parameters() if p.numel())
        if finite and self.dirpath is not None:
            self._save_final(trainer)


# ------------------------------------------------------------------------------------------ DataWaitMonitor
class DataWaitMonitor(pl.Callback):
    """Log the share of training wall time spent waiting for batches, and examples per second.

    A training step's *wait* is the time from the end of the previous batch (``on_train_batch_end``) to
    the start of this one (``on_train_batch_start``): fetching from the DataLoader, the host-to-device
    copy and the CPU side of ``on_after_batch_transfer`` (the on-device scene synthesis is queued there;
    its GPU time counts as step time). Its *compute* runs from ``on_train_batch_start`` to
    ``on_train_batch_end``. Per ``logging_interval`` batches it logs ``perf/data_wait_fraction`` =
    wait / (wait + compute) and ``perf/examples_per_sec`` (on this device) to every logger.

    Lightning's :class:`~lightning.pytorch.callbacks.ThroughputMonitor` reports throughput but not the
    wait, and needs a per-task ``batch_size_fn``; this callback takes batch sizes from the batches
    (:func:`~lightning.pytorch.utilities.data.extract_batch_size`) and times both from one clock.

    The gap after a pause of the training loop (validation, the start of an epoch) is not counted as wait;
    a checkpoint written in ``on_train_batch_end`` after this callback runs is.

    Args:
        logging_interval: batches per logged value; ``None``: the trainer's ``log_every_n_steps``.
        warmup_steps: first training batches left out of the logs and totals (DataLoader workers
            starting, cuDNN autotuning).
        sync_cuda: wait for the GPU at every batch end, so GPU work still queued counts as compute and
            not as wait (costs the CPU running ahead by a step; ``False`` measures without it).
    """

    def __init__(self, logging_interval: Optional[int] = None, warmup_steps: int = 5, sync_cuda: bool = True) -> None:
        super().__init__()
        if logging_interval is not None and logging_interval < 1:
            raise ValueError(f"logging_interval must be at least 1, got {logging_interval}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.logging_interval = logging_interval
        self.warmup_steps = warmup_steps
        self.sync_cuda = sync_cuda
        self._seen = 0
        self._last_end: Optional[float] = None
        self._start: Optional[float] = None
        self._wait = 0.0
        self._interval = _WaitTotals()
        self._total = _WaitTotals()

    def totals(self) -> Dict[str, float]:
        """Everything measured since training started, past the warm-up: ``steps``, ``examples``,
        ``wall_s``, ``wait_s``, ``wait_fraction``, ``steps_per_sec``, ``examples_per_sec``."""
        return self._total.summary()

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._seen = 0
        self._interval = _WaitTotals()
        self._total = _WaitTotals()

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._last_end = None

    def on_validation_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._last_end = None

    def on_train_batch_start(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self._wait = 0.0 if self._last_end is None else now - self._last_end
        self._start = now

    def on_train_batch_end(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.sync_cuda and pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        start, self._last_end = self._start, now
        self._seen += 1
        if start is None or self._seen <= self.warmup_steps:
            return
        examples = extract_batch_size(batch)
        for totals in (self._interval, self._total):
            totals.add(self._wait, now - start, examples)
        interval = self.logging_interval or max(1, trainer.log_every_n_steps)
        if self._interval.steps >= interval:
            summary = self._interval.summary()
            self._interval = _WaitTotals()
            if trainer.is_global_zero:
                metrics = {
                    "perf/data_wait_fraction": summary["wait_fraction"],
                    "perf/examples_per_sec": summary["examples_per_sec"],
                }
                for logger in trainer.loggers:
                    logger.log_metrics(metrics, step=trainer.global_step)


class _WaitTotals:
    """Running sums of wait and compute time over training batches."""

    def __init__(self) -> None:
        self.steps = 0
        self.examples = 0
        self.wait_s = 0.0
        self.compute_s = 0.0

    def add(self, wait_s: float, compute_s: float, examples: int) -> None:
        self.steps += 1
        self.examples += examples
        self.wait_s += wait_s
        self.compute_s += compute_s

    def summary(self) -> Dict[str, float]:
        wall = self.wait_s + self.compute_s
        per_second = 1.0 / wall if wall > 0 else 0.0
        return {
            "steps": float(self.steps),
            "examples": float(self.examples),
            "wall_s": wall,
            "wait_s": self.wait_s,
            "wait_fraction": self.wait_s * per_second,
            "steps_per_sec": self.steps * per_second,
            "examples_per_sec": self.examples * per_second,
        }
