"""Onset detection by spectral flux, and the levels of the peaks that follow onsets.

FxNorm measures a stem's dynamics as the mean and spread of its onset peak levels (aubio's HFC detector
in the reference code). aubio is not a dependency here, so this module has the project's own detector:

1. *Onset strength*: the spectral flux of a log-compressed magnitude spectrogram, i.e. the mean over
   bins of the half-wave rectified frame-to-frame increase of ``log(1 + gamma |X|)`` (Dixon, "Onset
   detection revisited", DAFx 2006). The signal is peak-normalised first, so detection does not depend
   on its level.
2. *Peak picking with an adaptive threshold* (Böck, Krebs & Schedl, ISMIR 2012): a frame is an onset
   when its flux is the maximum of its neighbourhood, exceeds the moving median around it by ``delta``
   times the largest flux, and comes at least ``min_gap_ms`` after the previous onset.
3. *Refinement in time*: a frame only says that an onset lies somewhere inside its window (tens of
   milliseconds), so each onset is moved to the sample where a 1 ms energy envelope of the signal's
   first difference rises most steeply inside that window; clicks are then placed to within a sample
   or two.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from musicfx.audio.spectral import spectrogram


def _mono(x: torch.Tensor) -> torch.Tensor:
    """``(T,)`` or ``(C, T)`` -> float32 ``(T,)`` (channel mean)."""
    if x.dim() == 1:
        return x.float()
    if x.dim() == 2:
        return x.float().mean(0)
    raise ValueError(f"expected audio shaped (time,) or (channels, time), got {tuple(x.shape)}")


def onset_strength(
    x: torch.Tensor, n_fft: int = 1024, hop_length: int = 256, log_gain: float = 100.0
) -> torch.Tensor:
    """Spectral flux of the log-magnitude spectrogram, one value per STFT frame.

    Args:
        x: audio ``(time,)`` or ``(channels, time)`` (channels are averaged).
        n_fft: frame length.
        hop_length: frame step; frame ``t`` is centred on sample ``t * hop_length``.
        log_gain: ``gamma`` in ``log(1 + gamma |X|)``; larger values weigh quiet partials more.

    Returns:
        ``(frames,)`` non-negative flux, ``frames = 1 + time // hop_length``; frame 0 is 0.
    """
    mono = _mono(x)
    peak = mono.abs().max()
    if peak > 0:
        mono = mono / peak
    mag = spectrogram(mono, n_fft, hop_length)
    logmag = torch.log1p(log_gain * mag)
    rise = (logmag[:, 1:] - logmag[:, :-1]).clamp_min(0.0).mean(0)
    return F.pad(rise, (1, 0))


def _moving(values: torch.Tensor, before: int, after: int, how: str) -> torch.Tensor:
    """Moving ``max``/``median`` of ``values (N,)`` over ``[t - before, t + after]`` (edges replicate)."""
    padded = F.pad(values[None, None], (before, after), mode="replicate")[0, 0]
    windows = padded.unfold(0, before + after + 1, 1)
    if how == "max":
        return windows.max(-1).values
    return windows.median(-1).values


def pick_peaks(
    flux: torch.Tensor,
    frame_rate: float,
    delta: float = 0.07,
    max_window_ms: float = 30.0,
    median_window_ms: float = 100.0,
    min_gap_ms: float = 30.0,
) -> torch.Tensor:
    """Frames where ``flux`` has an onset.

    Args:
        flux: onset strength ``(frames,)``.
        frame_rate: frames per second.
        delta: how far above the local median a peak must rise, as a fraction of the largest flux.
        max_window_ms: a peak is the maximum over ``+-max_window_ms``.
        median_window_ms: the adaptive threshold is the median over ``+-median_window_ms``.
        min_gap_ms: onsets closer than this to the previous one are dropped.

    Returns:
        Frame indices ``(onsets,)`` int64, increasing.
    """
    if flux.numel() == 0 or float(flux.max()) <= 0.0:
        return torch.zeros(0, dtype=torch.long)
    reach = max(1, round(max_window_ms * 1e-3 * frame_rate))
    span = max(1, round(median_window_ms * 1e-3 * frame_rate))
    is_max = flux >= _moving(flux, reach, reach, "max")
    above = flux >= _moving(flux, span, span, "median") + delta * flux.max()
    candidates = torch.nonzero(is_max & above & (flux > 0)).flatten().tolist()
    gap = min_gap_ms * 1e-3 * frame_rate
    onsets = []
    for frame in candidates:
        if not onsets or frame - onsets[-1] >= gap:
            onsets.append(frame)
    return torch.tensor(onsets, dtype=torch.long)


def _rise_envelope(mono: torch.Tensor, sample_rate: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Squared first difference, its log energy over a trailing 1 ms window, and that window's length.

    The first difference emphasises the high frequencies where attacks live, like aubio's HFC.
    """
    length = max(2, round(1e-3 * sample_rate))
    diff = F.pad(mono[1:] - mono[:-1], (1, 0)).double().square()
    energy = F.pad(diff.cumsum(0), (1, 0))
    trailing = (energy[length:] - energy[:-length]) / length  # window ending at sample n + length - 1
    trailing = F.pad(trailing, (length - 1, 0))
    floor = float(trailing.max()) * 1e-10 + 1e-30
    return diff, torch.log(trailing.clamp_min(floor)).float(), length


def _refine(mono: torch.Tensor, frames: torch.Tensor, sample_rate: int, n_fft: int, hop_length: int) -> torch.Tensor:
    """Move every onset frame to the steepest energy rise inside that frame's window.

    The rise is measured between consecutive 1 ms windows; the onset is the first sample of the winning
    window whose squared difference reaches half of that window's largest, i.e. where the attack starts.
    """
    if frames.numel() == 0:
        return frames
    diff, log_env, length = _rise_envelope(mono, sample_rate)
    rise = log_env - F.pad(log_env, (length, 0))[: log_env.shape[0]]
    time = mono.shape[0]
    refined = []
    for frame in frames.tolist():
        centre = frame * hop_length
        lo, hi = max(0, centre - n_fft // 2), min(time, centre + n_fft // 2)
        if hi <= lo:
            refined.append(min(centre, time - 1))
            continue
        end = lo + int(torch.argmax(rise[lo:hi]))
        start = max(0, end - length + 1)
        window = diff[start: end + 1]
        refined.append(start + int(torch.nonzero(window >= 0.5 * window.max())[0]))
    return torch.tensor(refined, dtype=torch.long)


def detect_onsets(
    x: torch.Tensor,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 256,
    delta: float = 0.07,
    min_gap_ms: float = 30.0,
    refine: bool = True,
) -> torch.Tensor:
    """Onsets of a signal, as sample indices.

    Args:
        x: audio ``(time,)`` or ``(channels, time)``; channels are averaged.
        sample_rate: in Hz.
        n_fft, hop_length: analysis frames of the spectral flux.
        delta: threshold above the local median, as a fraction of the largest flux (see
            :func:`pick_peaks`); raise it to keep only strong onsets.
        min_gap_ms: minimum distance between two onsets.
        refine: move each onset to the steepest rise of the signal inside its frame (else: frame
            centres, which lead true onsets by up to ``n_fft / 2`` samples).

    Returns:
        ``(onsets,)`` int64 sample indices, increasing, unique; empty for silence.
    """
    mono = _mono(x)
    if mono.numel() == 0 or float(mono.abs().max()) == 0.0:
        return torch.zeros(0, dtype=torch.long)
    flux = onset_strength(mono, n_fft, hop_length)
    frames = pick_peaks(flux, sample_rate / hop_length, delta=delta, min_gap_ms=min_gap_ms)
    if not refine:
        return (frames * hop_length).clamp_max(mono.shape[0] - 1)
    samples = _refine(mono, frames, sample_rate, n_fft, hop_length)
    return torch.unique(samples)  # two frames can refine onto the same attack


def onset_peak_levels(
    x: torch.Tensor,
    sample_rate: int,
    onsets: Optional[torch.Tensor] = None,
    window_ms: float = 100.0,
) -> torch.Tensor:
    """Level of the peak that follows each onset, in dBFS.

    Args:
        x: audio ``(time,)`` or ``(channels, time)``; the peak is taken over all channels.
        sample_rate: in Hz.
        onsets: sample indices from :func:`detect_onsets` (detected here when ``None``). Passing the
            onsets of the unprocessed signal measures a compressed version of it at the same attacks.
        window_ms: the peak is searched in ``[onset, onset + window_ms)``, cut at the next onset.

    Returns:
        ``(onsets,)`` float32 levels in dB (``-160`` dB for digital silence).
    """
    if onsets is None:
        onsets = detect_onsets(x, sample_rate)
    envelope = x.float().abs() if x.dim() == 1 else x.float().abs().amax(0)
    if onsets.numel() == 0:
        return torch.zeros(0)
    time = envelope.shape[0]
    window = max(1, round(window_ms * 1e-3 * sample_rate))
    starts = onsets.long().clamp(0, time - 1)
    ends = torch.cat([starts[1:], torch.tensor([time])]).clamp_max(starts + window)
    ends = torch.maximum(ends, starts + 1)
    index = starts[:, None] + torch.arange(window)[None, :]
    inside = index < ends[:, None]
    values = envelope[index.clamp_max(time - 1)] * inside
    peaks = values.amax(-1)
    return 20.0 * torch.log10(peaks.clamp_min(1e-8))


def peak_statistics(levels: torch.Tensor, percentile: float = 75.0) -> Tuple[float, float]:
    """Mean and standard deviation of the onset peaks above a percentile of their levels.

    FxNorm keeps only the loudest quarter of onset peaks (``percentile=75``), so quiet ghost notes and
    reverb tails do not decide a stem's dynamics; when no level lies strictly above the percentile (e.g.
    all equal), all are used.

    Args:
        levels: ``(onsets,)`` dB levels from :func:`onset_peak_levels`, not empty.
        percentile: in ``[0, 100)``.

    Returns:
        ``(mean_db, std_db)`` (population standard deviation, as numpy's default).
    """
    if levels.numel() == 0:
        raise ValueError("no onset levels to summarise")
    levels = levels.double()
    cut = torch.quantile(levels, percentile / 100.0)
    kept = levels[levels > cut]
    if kept.numel() == 0:
        kept = levels
    return float(kept.mean()), float(kept.std(unbiased=False))
