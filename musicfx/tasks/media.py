"""Logging audio examples and spectrogram pictures to whatever logger the trainer has.

W&B gets ``wandb.Audio``/``wandb.Image``, TensorBoard ``add_audio``/``add_figure``; any other logger with a
``log_dir`` (CSV) gets wav and png files under ``<log_dir>/media``, so examples are never silently dropped.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Optional

import torch


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def log_examples(
    logger: object,
    key: str,
    signals: Mapping[str, torch.Tensor],
    sample_rate: int,
    step: int,
) -> None:
    """Log one example: each named signal ``(channels, time)`` as audio, and one spectrogram picture of all.

    Args:
        logger: a Lightning logger (or ``None``: nothing happens).
        key: e.g. ``"val/example_0"``.
        signals: ordered mapping such as ``{"noisy": x, "estimate": y, "clean": s}``.
        sample_rate: of every signal.
        step: the trainer's global step.
    """
    if logger is None:
        return
    from musicfx.audio.plot import spectrogram_figure

    signals = {name: audio.detach().float().cpu() for name, audio in signals.items()}
    figure = spectrogram_figure(signals, sample_rate, title=f"{key} (step {step})")
    try:
        _log(logger, key, signals, figure, sample_rate, step)
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def _log(logger: object, key: str, signals: Mapping[str, torch.Tensor], figure, sample_rate: int, step: int) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        payload = {
            f"{key}/{name}": wandb.Audio(audio.T.numpy(), sample_rate=sample_rate, caption=name)
            for name, audio in signals.items()
        }
        payload[f"{key}/spectrogram"] = wandb.Image(figure)
        logger.experiment.log({**payload, "trainer/global_step": step})
        return
    if isinstance(logger, TensorBoardLogger):
        writer = logger.experiment
        for name, audio in signals.items():
            writer.add_audio(f"{key}/{name}", audio.mean(0, keepdim=True), step, sample_rate=sample_rate)
        writer.add_figure(f"{key}/spectrogram", figure, step)
        return
    log_dir: Optional[str] = getattr(logger, "log_dir", None)
    if log_dir is None:
        return
    from musicfx.audio.io import write_audio

    folder = Path(log_dir) / "media" / f"step{step:07d}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, audio in signals.items():
        write_audio(folder / f"{_safe(key)}_{_safe(name)}.wav", audio.clamp(-1, 1), sample_rate, subtype="PCM_16")
    figure.savefig(folder / f"{_safe(key)}_spectrogram.png", dpi=80)
