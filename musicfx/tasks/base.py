"""The small base every task shares: an injected model, loss and optimizer, and checkpoint metadata.

Tasks subclass :class:`Task` once (no deeper chains). The model is a plain ``nn.Module`` and knows nothing
of Lightning; the task owns loss, metrics, optimizer and logging.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from musicfx.errors import ConfigError


def declared(model: nn.Module, name: str, given: Any, default: Any, count: Optional[str] = None) -> Any:
    """What ``model`` declares as ``name`` (its sources, tracks, stems, sample rate, channels), the task's
    ``given`` value when the model declares nothing, else ``default``.

    Args:
        model: the network.
        name: the attribute (``"sources"``, ``"tracks"``, ``"stems"``, ``"sample_rate"``, ``"channels"``).
        given: the task's own argument of that name (``None``: not given).
        default: the value when neither says.
        count: for names, the model's attribute holding how many it takes (``"num_tracks"``); the names
            resolved must be that many.

    Raises:
        ConfigError: the task was given a value that differs from the model's, or names that are not as many
            as the model takes.
    """
    own = getattr(model, name, None)
    if isinstance(own, (list, tuple)) or isinstance(given, (list, tuple)):
        own = tuple(own) if own is not None else None
        given = tuple(given) if given is not None else None
    if own is None:
        value = default if given is None else given
    elif given is not None and given != own:
        raise ConfigError(
            f"model.init_args.{name} is {list(given) if isinstance(given, tuple) else given} but the network "
            f"(model.init_args.model) declares {list(own) if isinstance(own, tuple) else own}; "
            f"leave model.init_args.{name} out, the network's value is used"
        )
    else:
        value = own
    expected = getattr(model, count, None) if count is not None else None
    if expected is not None and value is not None and len(value) != expected:
        raise ConfigError(
            f"the network (model.init_args.model) takes {expected} {name} ({count}) but the {name} are "
            f"{list(value)}; declare them on the network (model.init_args.model.init_args.{name})"
        )
    return value


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
    #: The format attributes the datamodule must share with the task (a debleed model's channel is one track).
    data_format: Tuple[str, ...] = ("sample_rate", "channels")
    #: ``(task attribute, datamodule attribute)`` of the names the model declares and the data reads in the
    #: same order (debleed ``("tracks", "stems")``); ``None``: none checked here.
    data_names: Optional[Tuple[str, str]] = None

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

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Task":
        """Build a task from a recipe's ``model:`` section, as ``musicfx fit`` does.

        Its checkpoints then store that recipe (``class_path`` / ``init_args``) rather than pickled
        modules, so :func:`musicfx.load` rebuilds them as data (a task built from module objects pickles
        them, and loading that needs ``trust=True``).

        Args:
            config: ``{"class_path": ..., "init_args": {...}}``, or this class's ``init_args`` alone; the
                model and loss are nested ``{"class_path": ..., "init_args": {...}}`` dicts.

        Returns:
            The task, of the class ``class_path`` names (``cls`` without one).
        """
        from lightning.pytorch.cli import instantiate_module
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

        config = dict(config)
        class_path = config.pop("class_path", f"{cls.__module__}.{cls.__qualname__}")
        init_args = dict(config.pop("init_args", config))
        hparams = {"_class_path": class_path, **init_args}
        # The same context LightningCLI sets: save_hyperparameters stores the recipe, not the built modules.
        with _given_hyperparameters_context(hparams=hparams, instantiator="lightning.pytorch.cli.instantiate_module"):
            task = instantiate_module(cls, hparams)
        if not isinstance(task, Task):
            raise ConfigError(f"{class_path} is not a musicfx task")
        return task

    #: The entry of a dict batch that holds the model's input in :meth:`predict_step` ("noisy", "mix", ...).
    predict_key = ""

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model(audio)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """The bare network on a batch at its rate: a dict batch's :attr:`predict_key` entry, or the batch."""
        return self.model(batch[self.predict_key] if isinstance(batch, dict) else batch)

    def _infer(
        self,
        audio: torch.Tensor,
        sample_rate: int,
        segment: float,
        overlap: float,
        progress: bool,
        shifts: int = 0,
        model: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        channels: Optional[int] = None,
    ) -> torch.Tensor:
        """Run ``model`` (default: the network) over a whole recording with the one inference engine,
        :func:`musicfx.inference.apply_model`, at the model's rate and ``channels`` (default: its own)."""
        from musicfx.inference import apply_model  # the engine sits beside the tasks; imported when used

        return apply_model(self.model if model is None else model, audio, sample_rate, self.sample_rate,
                           self.channels if channels is None else channels, segment, overlap, device=self.device,
                           progress=progress, shifts=shifts)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def setup(self, stage: str) -> None:
        """Check the datamodule against what the model declares: :attr:`data_format` and :attr:`data_names`."""
        data = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        for name in self.data_format:
            ours, theirs = getattr(self, name), getattr(data, name, None)
            if theirs is not None and theirs != ours:
                raise ConfigError(
                    f"model.init_args.{name} is {ours} but data.init_args.{name} is {theirs}; set both to the same value"
                )
        if self.data_names is not None:
            ours, theirs = getattr(self, self.data_names[0]), getattr(data, self.data_names[1], None)
            if theirs is not None and tuple(theirs) != tuple(ours):
                # Leaving the data's names out helps only where the data follows the model's names.
                follows = getattr(data, "model_names", None) is not None
                raise ConfigError(
                    f"the model's {self.data_names[0]} are {list(ours)} but data.init_args.{self.data_names[1]} is "
                    f"{list(theirs)}; set both to the same names in the same order"
                    + (f", or leave data.init_args.{self.data_names[1]} out" if follows else "")
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
