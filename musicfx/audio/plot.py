"""Spectrogram figures for comparing signals (noisy / estimate / clean) by eye and in W&B.

matplotlib is imported inside the functions, and figures are built with the object API on the Agg
canvas, never through ``pyplot``: ``import musicfx`` stays light, nothing needs a display, and
figures made in a training loop are not kept alive by pyplot's global figure registry.
"""
from __future__ import annotations

import math
import os

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from musicfx.audio.io import atomic_path
from musicfx.audio.spectral import fft_frequencies, power_to_db, spectrogram

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

PathLike = Union[str, os.PathLike]

#: Colour range below the loudest bin across all rows; quieter bins are clipped to the bottom colour.
DYNAMIC_RANGE_DB = 90.0
#: Time resolution beyond this many frames per row is invisible on screen and only slows drawing.
MAX_FRAMES = 1200
LOWEST_HZ = 20.0


def _analysis_sizes(sample_rate: int, length: int) -> Tuple[int, int]:
    """``(n_fft, hop)``: about 46 ms frames (2048 at 44.1 kHz), hop grown for long signals."""
    n_fft = 2 ** max(6, round(math.log2(0.046 * sample_rate)))
    hop = max(n_fft // 4, math.ceil(length / MAX_FRAMES))
    return n_fft, hop


def _as_mono_power(signal: torch.Tensor, sample_rate: int, name: str) -> Tuple[torch.Tensor, int, int]:
    """Power spectrogram ``(freq, frames)`` averaged over channels, with the ``(n_fft, hop)`` used."""
    signal = signal.detach().to("cpu", torch.float32)
    if signal.dim() == 1:
        signal = signal.unsqueeze(0)
    if signal.dim() != 2 or signal.shape[-1] == 0:
        raise ValueError(f"signal {name!r} must be shaped (channels, time) or (time,), got {tuple(signal.shape)}")
    n_fft, hop = _analysis_sizes(sample_rate, signal.shape[-1])
    power = spectrogram(signal, n_fft, hop, power=2.0).mean(0)
    return power, n_fft, hop


def spectrogram_figure(
    signals: Mapping[str, torch.Tensor],
    sample_rate: int,
    title: Optional[str] = None,
) -> "Figure":
    """One log-frequency dB spectrogram per named signal, stacked, on a shared colour scale.

    Args:
        signals: name -> audio ``(channels, time)`` or ``(time,)``, drawn top to bottom in order
            (channels are averaged in power). Any device or dtype; nothing is modified.
        sample_rate: in Hz, for the time and frequency axes.
        title: optional figure title.

    Returns:
        A ``matplotlib.figure.Figure`` on an Agg canvas: time in seconds on a shared axis, frequency on a
        log axis from 20 Hz to Nyquist, and one colour bar in dB (0 dB = the loudest bin of any row).
    """
    # why: matplotlib takes seconds to import, and only plotting needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not signals:
        raise ValueError("spectrogram_figure needs at least one signal")
    rows = [(name,) + _as_mono_power(audio, sample_rate, name) for name, audio in signals.items()]
    # One reference for all rows, so a denoised estimate looks quieter than its noisy input when it is.
    reference = max(float(power.max()) for _, power, _, _ in rows)
    reference = reference if reference > 0 else 1.0
    vmax = 0.0
    vmin = vmax - DYNAMIC_RANGE_DB

    figure = Figure(figsize=(10.0, 2.4 * len(rows) + (0.5 if title else 0.2)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    mesh = None
    for axis, (name, power, n_fft, hop) in zip(axes, rows):
        levels = power_to_db(power / reference).numpy()
        freqs = fft_frequencies(n_fft, sample_rate).numpy()
        keep = freqs >= min(LOWEST_HZ, freqs[1])  # bin 0 (DC) has no place on a log axis
        times = (torch.arange(power.shape[-1] + 1) * hop - hop / 2).clamp_min(0).numpy() / sample_rate
        mesh = axis.pcolormesh(
            times,
            _bin_edges(freqs[keep]),
            levels[keep],
            vmin=vmin,
            vmax=vmax,
            cmap="magma",
            shading="flat",
            rasterized=True,
        )
        axis.set_yscale("log")
        axis.set_ylim(max(LOWEST_HZ, float(freqs[keep][0])), sample_rate / 2.0)
        axis.set_ylabel(f"{name}\nfrequency (Hz)")
    axes[-1].set_xlabel("time (s)")
    figure.colorbar(mesh, ax=list(axes), label="level (dB)", pad=0.01)
    if title:
        figure.suptitle(title)
    return figure


def _bin_edges(centres: np.ndarray) -> np.ndarray:
    """Edges ``(bins + 1,)`` around positive bin centres: geometric midpoints, so bins tile a log axis."""
    mids = np.sqrt(centres[1:] * centres[:-1])
    first = centres[0] ** 2 / mids[0] if len(mids) else centres[0] / 2
    last = centres[-1] ** 2 / mids[-1] if len(mids) else centres[0] * 2
    return np.concatenate([[first], mids, [last]])


def save_spectrogram_png(
    path: PathLike,
    signals: Mapping[str, torch.Tensor],
    sample_rate: int,
    title: Optional[str] = None,
    dpi: int = 100,
) -> Path:
    """Draw :func:`spectrogram_figure` and write it to ``path`` as a PNG, atomically.

    The image goes to a temporary file beside ``path`` and is renamed over it, so a reader (a browser,
    a W&B upload) never sees half a file.

    Args:
        path: destination ``.png``; parent folders are created.
        signals, sample_rate, title: as in :func:`spectrogram_figure`.
        dpi: resolution; 100 gives a 1000-pixel-wide image.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    figure = spectrogram_figure(signals, sample_rate, title=title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return path
