"""The small base every task shares: an injected model, loss and optimizer, and checkpoint metadata.

Tasks subclass :class:`Task` once (no deeper chains). The model is a plain ``nn.Module`` and knows nothing
of Lightning; the task owns loss, metrics, optimizer and logging.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from musicfx.errors import ConfigError


def declared(model: nn.Module, name: str, given: Any, default: Any) -> Any:
    """What ``model`` declares as ``name`` (its sources, sample rate, channels), the task's ``given`` value
    when the model declares nothing, else ``default``.

    Raises:
        ConfigError: the task was given a value that differs from the model's.
    """
    own = getattr(model, name, None)
    if isinstance(own, (list, tuple)):
        own, given = tuple(own), tuple(given) if given is not None else None
    if own is None:
        return default if given is None else given
    if given is not None and given != own:
        raise ConfigError(
            f"model.init_args.{name} is {list(given) if isinstance(given, tuple) else given} but the network "
            f"(model.init_args.model) declares {list(own) if isinstance(own, tuple) else own}; "
            f"leave model.init_args.{name} out, the network's value is used"
        )
    return own


def record_hparam(owner: Any, name: str, value: Any) -> None:
    """Record the value ``name`` resolved to in ``owner``'s saved hyperparameters (checkpoint and logger):
    what the run used, not "unset". Lightning logs a module's and a datamodule's side by side and refuses
    keys that differ."""
    for store in (owner.hparams, getattr(owner, "_hparams_initial", None)):
        if store is not None and name in store:
            store[name] = value


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)


class Task(pl.LightningModule):
    """Base LightningModule.

    Args:
        model: the network, ``(batch, channels, time) -> (batch, channels, time)`` for waveform tasks.
        loss: training criterion ``(estimate, target) -> scalar``.
        optimizer: a callable ``params -> Optimizer`` (``class_path``/``init_args`` in a recipe).
        scheduler: optional callable ``optimizer -> LRScheduler``, stepped every optimizer step.
        sample_rate: the rate the model works at; inference resamples inputs to it. Default: the model's
            own ``sample_rate`` (a model declares what it needs, as Demucs models carry ``samplerate``),
            else 44100; given as well, it must equal the model's.
        channels: channels the model takes (1 or 2); inference maps files to it. Default: the model's
            ``channels``, else ``default_channels``.
    """

    #: Channels when neither the task nor the model says.
    default_channels: int = 1

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: Optional[LRSchedulerCallable] = None,
        sample_rate: Optional[int] = None,
        channels: Optional[int] = None,
    ) -> None:
        super().__init__()
        # Under the CLI this stores the recipe's class_path/init_args, so load_from_checkpoint rebuilds the
        # model and loss from the checkpoint alone; built from Python, the modules are pickled instead.
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.model = model
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.sample_rate: int = declared(model, "sample_rate", sample_rate, 44100)
        self.channels: int = declared(model, "channels", channels, self.default_channels)
        record_hparam(self, "sample_rate", self.sample_rate)
        record_hparam(self, "channels", self.channels)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model(audio)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def setup(self, stage: str) -> None:
        data = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        for name in ("sample_rate", "channels"):
            ours, theirs = getattr(self, name), getattr(data, name, None)
            if theirs is not None and theirs != ours:
                raise ConfigError(
                    f"model.init_args.{name} is {ours} but data.init_args.{name} is {theirs}; set both to the same value"
                )

    def _evaluate(self, batch: Any, batch_idx: int, stage: str) -> None:
        """Loss and metrics of a fixed validation or test batch, logged under ``stage`` (``"val"``, ``"test"``)."""
        raise NotImplementedError

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["musicfx"] = {
            "task": f"{type(self).__module__}.{type(self).__qualname__}",
            "sample_rate": self.sample_rate,
            "channels": self.channels,
        }

    @property
    def example_logger(self) -> Optional[object]:
        """The logger media goes to: rank zero only, and never during a sanity check or fast_dev_run."""
        trainer = self._trainer
        if trainer is None or trainer.sanity_checking or trainer.fast_dev_run or not trainer.is_global_zero:
            return None
        return trainer.logger
