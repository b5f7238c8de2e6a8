"""The Python entry points: load a trained model, run it on audio."""
from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import torch

PathLike = Union[str, os.PathLike]


def resolve_device(device: Optional[Union[str, torch.device]]) -> torch.device:
    """``"auto"`` (or ``None``): CUDA when available, else the CPU; anything else as ``torch.device`` takes it."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load(checkpoint: PathLike, device: Optional[Union[str, torch.device]] = "cpu", trust: bool = False):
    """Load a trained task from a Lightning checkpoint, in eval mode, ready to run.

    Args:
        checkpoint: a ``.ckpt`` written by ``musicfx fit`` (or any Trainer running a musicfx task).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA when available) or a ``torch.device``.
        trust: also load a checkpoint that needs more than plain data (pickled Python objects, classes
            outside musicfx and torch), which can run code: only for files you trust (see
            :func:`musicfx.checkpoint.load_checkpoint`).

    Returns:
        The task (a ``LightningModule``): call it on ``(batch, channels, time)`` audio, or use its
        task-specific method, e.g. ``task.denoise(audio, sample_rate)``.

    Raises:
        CheckpointError: a missing or unreadable file, or (without ``trust``) one that is not plain data.
    """
    from musicfx.checkpoint import load_checkpoint, safe_globals
    from musicfx.tasks.base import Task

    path = Path(checkpoint)
    device = resolve_device(device)
    # Read as data first (tensors memory-mapped): refuses a file that would run code before Lightning sees it.
    payload = load_checkpoint(path, trust=trust, mmap=True)
    task_name = payload.get("musicfx", {}).get("task") or payload.get("hyper_parameters", {}).get("_class_path")
    cls = Task
    if task_name:
        module_name, _, class_name = task_name.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
    with warnings.catch_warnings(), torch.serialization.safe_globals(safe_globals()):
        # Rebuilding from the stored recipe re-runs save_hyperparameters on module objects; harmless.
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
        task = cls.load_from_checkpoint(path, map_location=device, weights_only=not trust)
    return task.eval().to(device)


def _task(model: Union[PathLike, torch.nn.Module], trust: bool = False) -> torch.nn.Module:
    return load(model, trust=trust) if isinstance(model, (str, os.PathLike)) else model


def denoise(
    audio: torch.Tensor,
    sample_rate: int,
    model: Optional[Union[PathLike, torch.nn.Module]] = None,
    method: str = "model",
    segment: float = 10.0,
    overlap: float = 0.25,
    shifts: int = 0,
    trust: bool = False,
) -> torch.Tensor:
    """Denoise a recording with a trained model or the classical spectral gate.

    Args:
        audio: ``(channels, time)`` or ``(time,)``.
        sample_rate: of ``audio``.
        model: a checkpoint path or a loaded task (``method="model"``).
        method: ``"model"`` or ``"spectral-gate"``.
        segment, overlap: chunking in seconds / fraction (see :func:`musicfx.inference.apply_model`).
        shifts: test-time shift augmentation (the model averaged over this many random shifts; 0: none).
        trust: load a checkpoint path that needs more than plain data (see :func:`load`).

    Returns:
        Denoised audio, same shape and rate as ``audio``.
    """
    if method == "spectral-gate":
        from musicfx.baselines.spectral_gate import spectral_gate

        return spectral_gate(audio, sample_rate)
    if method != "model":
        raise ValueError(f"method must be 'model' or 'spectral-gate', got {method!r}")
    if model is None:
        raise ValueError("pass model= (a checkpoint path or a loaded task), or method='spectral-gate'")
    return _task(model, trust).denoise(audio, sample_rate, segment=segment, overlap=overlap, shifts=shifts)


def separate(
    audio: torch.Tensor,
    sample_rate: int,
    model: Union[PathLike, torch.nn.Module],
    segment: float = 10.0,
    overlap: float = 0.25,
    shifts: int = 0,
    trust: bool = False,
) -> Dict[str, torch.Tensor]:
    """Separate a recording into stems with a trained separation model.

    Args:
        audio: ``(channels, time)`` or ``(time,)``.
        sample_rate: of ``audio``.
        model: a checkpoint path or a loaded separation task.
        segment, overlap: chunking in seconds / fraction (see :func:`musicfx.inference.apply_model`).
        shifts: test-time shift augmentation (the model averaged over this many random shifts; 0: none).
        trust: load a checkpoint path that needs more than plain data (see :func:`load`).

    Returns:
        ``{source: audio}``, each shaped and sampled like ``audio``.
    """
    return _task(model, trust).separate(audio, sample_rate, segment=segment, overlap=overlap, shifts=shifts)
