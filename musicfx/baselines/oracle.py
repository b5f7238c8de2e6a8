"""Oracle time-frequency masks: the upper bound of mask-based separation, for reports.

The masks are computed from the true stems and applied to the mixture's STFT, so the estimates keep
the mixture's phase; no model that masks the mixture spectrogram (with the same STFT) can do better
than the ideal mask on average. After ``sigsep-mus-oracle`` (IRM1/IRM2, IBM): masks are per channel.
"""
from __future__ import annotations

from typing import Callable

import torch

from musicfx.audio.spectral import istft, magnitude, stft

__all__ = ["ideal_ratio_mask", "ideal_binary_mask", "ORACLES"]


def _check_shapes(mix: torch.Tensor, stems: torch.Tensor) -> None:
    if mix.dim() < 2 or stems.dim() != mix.dim() + 1 or stems.shape[:-3] != mix.shape[:-2] or (
        stems.shape[-2:] != mix.shape[-2:]
    ):
        raise ValueError(
            f"expected mix (..., channels, time) and stems (..., stems, channels, time), got "
            f"{tuple(mix.shape)} and {tuple(stems.shape)}"
        )


def _masked(
    mix: torch.Tensor,
    stems: torch.Tensor,
    n_fft: int,
    hop_length: int,
    mask_fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Apply ``mask_fn(|STFT(stems)|) -> (..., S, C, F, N)`` masks to the mixture's STFT and invert."""
    _check_shapes(mix, stems)
    length = mix.shape[-1]
    # Masks are ratios of small numbers: keep them in (at least) float32 under autocast.
    dtype = torch.float64 if mix.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=mix.device.type, enabled=False):
        spectrum = stft(mix.to(dtype), n_fft, hop_length)  # (..., C, F, N)
        masks = mask_fn(magnitude(stft(stems.to(dtype), n_fft, hop_length)))  # (..., S, C, F, N)
        return istft(masks * spectrum.unsqueeze(-4), n_fft, hop_length, length=length)


def ideal_ratio_mask(
    mix: torch.Tensor,
    stems: torch.Tensor,
    n_fft: int = 4096,
    hop_length: int = 1024,
    power: float = 1.0,
) -> torch.Tensor:
    """Separate ``mix`` with the ideal ratio mask ``|S_s|^p / sum_k |S_k|^p`` of the true stems.

    ``power=1`` is the magnitude ratio (IRM1), ``power=2`` the Wiener-like power ratio (IRM2). The masks
    sum to one in every bin (bins where every stem is silent are shared equally), so the estimates add
    up to the mixture.

    Args:
        mix: ``(..., channels, time)``.
        stems: ``(..., stems, channels, time)``, the true sources of ``mix``.
        n_fft, hop_length: STFT size and hop (Hann window).
        power: exponent on the magnitudes.

    Returns:
        ``(..., stems, channels, time)`` estimates, float32 (float64 for float64 input).
    """

    def ratio(magnitudes: torch.Tensor) -> torch.Tensor:
        weights = magnitudes.pow(power)
        total = weights.sum(dim=-4, keepdim=True)
        share = torch.full_like(total, 1.0 / magnitudes.shape[-4])
        return torch.where(total > 0, weights / total.clamp_min(torch.finfo(total.dtype).tiny), share)

    return _masked(mix, stems, n_fft, hop_length, ratio)


def ideal_binary_mask(
    mix: torch.Tensor,
    stems: torch.Tensor,
    n_fft: int = 4096,
    hop_length: int = 1024,
    power: float = 1.0,
) -> torch.Tensor:
    """Separate ``mix`` with the ideal binary mask: each bin goes wholly to the stem loudest in it.

    Args:
        mix: ``(..., channels, time)``.
        stems: ``(..., stems, channels, time)``, the true sources of ``mix``.
        n_fft, hop_length: STFT size and hop (Hann window).
        power: unused by the decision (the loudest stem is the same for any positive power); kept so
            both oracles share one signature.

    Returns:
        ``(..., stems, channels, time)`` estimates, float32 (float64 for float64 input).
    """
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")

    def binary(magnitudes: torch.Tensor) -> torch.Tensor:
        loudest = magnitudes.argmax(dim=-4, keepdim=True)
        index = torch.arange(magnitudes.shape[-4], device=magnitudes.device).view(-1, 1, 1, 1)
        return (loudest == index).to(magnitudes.dtype)

    return _masked(mix, stems, n_fft, hop_length, binary)


#: Oracles by the names the ``evaluate`` command takes.
ORACLES = {"irm": ideal_ratio_mask, "ibm": ideal_binary_mask}
