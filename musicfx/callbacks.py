"""Callbacks recipes use."""
from __future__ import annotations

import math
import os
from typing import Any, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


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
