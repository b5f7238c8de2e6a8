"""Stationary noise: white, pink, brown and any colour between."""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from musicfx.synth.noise.dsp import _check, _correlated_spectral_noise, _freqs, _num_bins, _params, _power_law
from musicfx.synth.noise.dsp import _unit_rms

__all__ = ["stationary_noise", "coloured_noise"]


def coloured_noise(
    seeds: Tensor, channels: int, num_frames: int, sample_rate: int, alpha: Union[float, Tensor]
) -> Tensor:
    """Noise with power spectral density ``1/f^alpha`` (0 white, 1 pink, 2 brown), flat below 10 Hz.

    Args:
        seeds: (B,) int64.
        alpha: exponent, one for all or (B,) per example.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    _check(seeds, channels, num_frames, sample_rate)
    alpha = torch.as_tensor(alpha, dtype=torch.float32, device=seeds.device).expand(seeds.shape[0])
    freqs = _freqs(_num_bins(num_frames, sample_rate), num_frames, sample_rate, seeds.device)
    return _unit_rms(_correlated_spectral_noise(seeds, channels, num_frames, _power_law(freqs, alpha), stream=1))


def stationary_noise(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Stationary coloured noise: half the examples white, pink or brown exactly, half any ``alpha`` in [0, 2].

    Args:
        seeds: (B,) int64.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    p = _params(seeds, 3, stream=100)
    alpha = torch.where(p[:, 0] < 0.5, (p[:, 1] * 3).floor().clamp(max=2.0), 2.0 * p[:, 2])
    return coloured_noise(seeds, channels, num_frames, sample_rate, alpha)
