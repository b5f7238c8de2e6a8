"""Impulse responses from disk: folders of recorded responses and the cached arrays of a simulated room bank.

The scene builders in :mod:`musicfx.synth` never read files: they take the tensors these functions return
(:class:`musicfx.synth.bleed.BleedSynth` takes ``impulse_responses``; :class:`musicfx.synth.rooms.RoomIRBank`
stores and finds its computed responses through :func:`load_arrays` and :func:`save_arrays`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from musicfx.audio.io import atomic_path, read_audio
from musicfx.data.sources import list_audio_files
from musicfx.errors import AudioError, DataError

__all__ = ["read_impulse_responses", "load_impulse_responses", "load_arrays", "save_arrays"]

PathLike = Union[str, os.PathLike]


def read_impulse_responses(folder: PathLike, sample_rate: int) -> List[Tuple[Path, Tensor]]:
    """Every audio file below ``folder``, resampled, as it is.

    Args:
        folder: a folder of impulse responses (any format :func:`musicfx.audio.io.read_audio` reads).
        sample_rate: Hz.

    Returns:
        ``(path, response)`` pairs in file order; each response ``(channels, length)`` float32.

    Raises:
        DataError: no audio file below ``folder``.
    """
    files = list_audio_files(folder)
    if not files:
        raise DataError(f"{folder}: no impulse responses (audio files) in this folder")
    return [(Path(path), read_audio(path, sample_rate=sample_rate)[0]) for path in files]


def load_impulse_responses(folder: PathLike, sample_rate: int, length: int) -> Tensor:
    """Every audio file below ``folder`` as a mono impulse response aligned on its direct sound.

    Each file (first channel), resampled, is cut so that its largest sample (taken as the direct sound)
    comes first, scaled to make that sample 1, and cut or zero-padded to ``length`` samples.

    Args:
        folder: a folder of impulse responses.
        sample_rate: Hz.
        length: samples per response.

    Returns:
        (N, length) float32.

    Raises:
        DataError: no audio file below ``folder``.
        AudioError: a file holds only zeros or cannot be read.
    """
    responses = read_impulse_responses(folder, sample_rate)
    irs = torch.zeros(len(responses), length)
    for row, (path, audio) in enumerate(responses):
        ir = audio[0]
        peak = int(ir.abs().argmax())
        if ir[peak] == 0:
            raise AudioError(f"{path}: impulse response is silent")
        ir = ir[peak : peak + length] / ir[peak]
        irs[row, : ir.shape[0]] = ir
    return irs


def load_arrays(files: Sequence[PathLike]) -> Optional[List[np.ndarray]]:
    """``.npy`` files written by :func:`save_arrays`, or ``None`` if any is absent, truncated or not one."""
    try:
        return [np.load(path, allow_pickle=False) for path in files]
    except (OSError, ValueError, EOFError):
        return None


def save_arrays(files: Sequence[PathLike], arrays: Sequence[np.ndarray], what: str) -> None:
    """Write ``arrays`` as ``.npy`` files, each atomically, creating their folders.

    Args:
        files: one path per array.
        arrays: what to store.
        what: names the cache in the error message (``"the room impulse response cache"``).

    Raises:
        DataError: a folder or file cannot be written.
    """
    for path, array in zip(files, arrays):
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as temporary, open(temporary, "wb") as file:
                np.save(file, array, allow_pickle=False)
        except OSError as error:
            raise DataError(
                f"{path.parent}: cannot write {what} ({error.strerror or error}); "
                "set MUSICFX_CACHE or pass cache_dir to a writable folder"
            ) from None
