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


class EMA(pl.Callback):
    """An exponential moving average of the weights (Demucs, Music-Source-Separation-Training).

    Every ``every_n_steps`` optimizer steps, ``averaged = decay * averaged + (1 - decay) * weights`` for every
    floating-point parameter and buffer of the task (batch-norm statistics included). Validation and test run
    on the averaged weights (``evaluate_averaged``), and the checkpoint's ``state_dict`` holds them
    (``save_averaged``), so ``load_from_checkpoint``, ``musicfx separate --ckpt`` and ``musicfx evaluate`` use
    the average without knowing about this callback. The checkpoint's ``ema_state`` holds the other copy
    (the training weights when ``state_dict`` is averaged) plus the update count, and resuming with the
    callback in the trainer (``--ckpt_path last``) puts the training weights back and continues the average.

    One line in any recipe: ``--trainer.callbacks+=musicfx.callbacks.EMA`` (and
    ``--trainer.callbacks.decay=0.9999`` to change a value).

    Notes: the average is kept in float32 on the weights' device. Resuming *without* this callback from a
    checkpoint whose ``state_dict`` is averaged continues training from the averaged weights. With
    ``ModelCheckpoint(save_weights_only=True)`` Lightning calls no callback when saving, so those files hold the
    training weights.

    Args:
        decay: weight of the past average per update (0.999 ~ the last 1,000 updates).
        every_n_steps: optimizer steps between updates.
        start_step: optimizer steps before the first update; until then the average follows the weights.
        evaluate_averaged: run validation and test on the averaged weights.
        save_averaged: checkpoint ``state_dict`` = the averaged weights (``ema_state`` then keeps the training
            weights); otherwise the training weights (``ema_state`` keeps the average).
    """

    def __init__(
        self,
        decay: float = 0.999,
        every_n_steps: int = 1,
        start_step: int = 0,
        evaluate_averaged: bool = True,
        save_averaged: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if every_n_steps < 1 or start_step < 0:
            raise ValueError(f"need every_n_steps >= 1 and start_step >= 0, got {every_n_steps} and {start_step}")
        self.decay = float(decay)
        self.every_n_steps = int(every_n_steps)
        self.start_step = int(start_step)
        self.evaluate_averaged = evaluate_averaged
        self.save_averaged = save_averaged
        self.updates = 0
        self.averaged: Optional[Dict[str, torch.Tensor]] = None
        self._training_backup: Optional[Dict[str, torch.Tensor]] = None
        self._pending_training: Optional[Dict[str, torch.Tensor]] = None
        self._last_step = -1

    # ------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _tracked(pl_module: "pl.LightningModule") -> Dict[str, torch.Tensor]:
        """The task's floating-point state, by ``state_dict`` key (live tensors, not copies)."""
        state = pl_module.state_dict(keep_vars=True)
        return {key: value for key, value in state.items() if torch.is_tensor(value) and value.is_floating_point()}

    def _copy(self, pl_module: "pl.LightningModule") -> Dict[str, torch.Tensor]:
        return {key: value.detach().float().clone() for key, value in self._tracked(pl_module).items()}

    @staticmethod
    def _load(pl_module: "pl.LightningModule", values: Dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, tensor in EMA._tracked(pl_module).items():
                if key in values:
                    tensor.copy_(values[key].to(device=tensor.device, dtype=tensor.dtype))

    @property
    def swapped(self) -> bool:
        """Whether the task currently holds the averaged weights (during validation or test)."""
        return self._training_backup is not None

    def _swap_in(self, pl_module: "pl.LightningModule") -> None:
        if self.evaluate_averaged and self.averaged is not None and not self.swapped:
            self._training_backup = self._copy(pl_module)
            self._load(pl_module, self.averaged)

    def _swap_out(self, pl_module: "pl.LightningModule") -> None:
        if self._training_backup is not None:
            self._load(pl_module, self._training_backup)
            self._training_backup = None

    # -------------------------------------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._pending_training is not None:
            # Resumed from a checkpoint whose state_dict is the average: training goes on from its own weights.
            self._load(pl_module, self._pending_training)
            self._pending_training = None
        device = next((t.device for t in self._tracked(pl_module).values()), torch.device("cpu"))
        if self.averaged is None:
            self.averaged = self._copy(pl_module)
        else:
            self.averaged = {key: value.to(device) for key, value in self.averaged.items()}
        self._last_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_step or self.averaged is None:
            return  # no optimizer step in this batch (gradient accumulation)
        self._last_step = step
        if step % self.every_n_steps:
            return
        decay = 0.0 if step <= self.start_step else self.decay
        with torch.no_grad():
            for key, tensor in self._tracked(pl_module).items():
                average = self.averaged.get(key)
                if average is None:
                    continue
                average.mul_(decay).add_(tensor.detach().to(average.dtype), alpha=1.0 - decay)
        self.updates += 1

    def on_validation_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._swap_out(pl_module)

    def on_test_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._swap_in(pl_module)

    def on_test_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._swap_out(pl_module)

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        self._swap_out(pl_module)

    def on_save_checkpoint(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", checkpoint: Dict[str, Any]
    ) -> None:
        if self.averaged is None:
            return
        state = checkpoint["state_dict"]
        # The task holds the average while validating (a checkpoint saved then): its training weights are the backup.
        training = self._training_backup if self.swapped else {key: state[key] for key in self.averaged if key in state}
        averaged = {key: value.detach().cpu().clone() for key, value in self.averaged.items()}
        training = {key: value.detach().cpu().clone() for key, value in training.items()}
        for key in averaged:
            if key in state:
                state[key] = (averaged if self.save_averaged else training)[key].to(state[key].dtype)
        checkpoint["ema_state"] = {
            "decay": self.decay, "every_n_steps": self.every_n_steps, "updates": self.updates,
            "state_dict_is_averaged": self.save_averaged,
            "other": training if self.save_averaged else averaged,
        }

    def on_load_checkpoint(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", checkpoint: Dict[str, Any]
    ) -> None:
        ema_state = checkpoint.get("ema_state")
        if ema_state is None:
            return  # a checkpoint from a run without EMA: the average starts from the restored weights
        state = checkpoint["state_dict"]
        stored = {key: value.float() for key, value in state.items() if key in ema_state["other"]}
        if ema_state["state_dict_is_averaged"]:
            self.averaged, self._pending_training = stored, ema_state["other"]
        else:
            self.averaged = {key: value.float() for key, value in ema_state["other"].items()}
        self.updates = int(ema_state.get("updates", 0))


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
