"""Where a recipe's run writes: checkpoints and logs under ``--trainer.default_root_dir``.

Recipes name no folder in their callbacks and loggers; :class:`RecipeCLI` puts every checkpoint callback
and logger that leaves its folder out under the trainer's root folder (``<root>/checkpoints``, ``<root>/logs``)
before anything is built, so ``--trainer.default_root_dir DIR`` moves the whole run, and ``--ckpt_path last``
finds the run's ``last.ckpt`` there.
"""
from __future__ import annotations

import os
from typing import Any, List

from lightning.pytorch.cli import LightningCLI

#: Callback classes whose ``dirpath`` is resolved under the root folder when a recipe leaves it out.
CHECKPOINT_CLASSES = ("ModelCheckpoint", "LastCheckpoint")


def _entries(value: Any) -> List[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def place_run_files(trainer: Any) -> None:
    """Fill in the folders a recipe's ``trainer`` config (a jsonargparse namespace) leaves unset.

    A checkpoint callback without ``dirpath`` writes to ``<default_root_dir>/checkpoints``; a logger with
    ``save_dir`` unset (``None``) logs under ``<default_root_dir>``. ``default_root_dir`` unset means the
    current folder, as for Lightning.
    """
    root = trainer.get("default_root_dir") or os.getcwd()
    for callback in _entries(trainer.get("callbacks")):
        init = getattr(callback, "init_args", None)
        name = str(getattr(callback, "class_path", "")).rsplit(".", 1)[-1]
        if init is not None and name in CHECKPOINT_CLASSES and init.get("dirpath") is None:
            init["dirpath"] = os.path.join(str(root), "checkpoints")
    for logger in _entries(trainer.get("logger")):
        init = getattr(logger, "init_args", None)
        if init is not None and "save_dir" in init and init.get("save_dir") is None:
            init["save_dir"] = str(root)


class RecipeCLI(LightningCLI):
    """The Lightning CLI with run folders resolved under ``trainer.default_root_dir`` (see the module)."""

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config
        if config.get("trainer") is not None:
            place_run_files(config["trainer"])


__all__ = ["CHECKPOINT_CLASSES", "RecipeCLI", "place_run_files"]
