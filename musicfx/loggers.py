"""Logger defaults for recipes."""
from __future__ import annotations

import os
from typing import Any, Optional

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


class CSVLogger(_LightningCSVLogger):
    """Lightning's CSV logger writing to ``<save_dir>/<name>/version_<n>/metrics.csv``.

    Args:
        save_dir: default ``None``: the trainer's ``default_root_dir`` (filled in by the recipe CLI,
            :mod:`musicfx.tasks.rundir`), else the current folder.
        name: sub-folder of ``save_dir``.
        **kwargs: other :class:`lightning.pytorch.loggers.CSVLogger` arguments.
    """

    def __init__(self, save_dir: Optional[str] = None, name: str = "logs", **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir if save_dir is not None else ".", name=name, **kwargs)


def wandb_has_credentials() -> bool:
    """True when an API key is set or ``wandb login`` has stored one (``~/.netrc``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        with open(netrc) as handle:
            return "api.wandb.ai" in handle.read()
    except OSError:
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's W&B logger that runs offline when no API key is available instead of prompting.

    Args:
        offline: ``None`` (default): offline exactly when there are no credentials (or ``WANDB_MODE`` says
            so); ``True``/``False`` force it. Offline runs sync later with ``wandb sync <run folder>``.
        **kwargs: passed to :class:`lightning.pytorch.loggers.WandbLogger` (project, name, save_dir, ...).
    """

    def __init__(self, offline: Optional[bool] = None, log_model: bool = False, **kwargs: Any) -> None:
        if offline is None:
            offline = os.environ.get("WANDB_MODE") in ("offline", "dryrun") or not wandb_has_credentials()
        if kwargs.get("save_dir"):
            os.makedirs(kwargs["save_dir"], exist_ok=True)
        super().__init__(offline=offline, log_model=log_model, **kwargs)

    def finalize(self, status: str) -> None:
        super().finalize(status)
        # Close the run so its summary, config and media are written out now (offline runs especially):
        # a later `wandb sync` or a test reading the run folder then sees everything.
        if self._experiment is not None:
            import wandb

            self._experiment.finish(exit_code=0 if status == "success" else 1)
            wandb.setup()  # leave wandb ready for another run in this process
            self._experiment = None
