"""Losses as the separation papers and their reference code define them.

* :class:`BSRoFormerLoss`: BS-RoFormer's (Lu et al. 2023) L1 on waveforms plus a multi-resolution L1 on
  complex STFTs (windows 4096, 2048, 1024, 512, 256; hop 147), as the paper describes and the reference
  ``bs-roformer`` package computes it (the FFT size is at least 2048; the STFT term is the mean modulus of the
  complex difference).
* :class:`UnmixMagnitudeLoss`: Open-Unmix's (Stöter et al. 2019) MSE between each target network's own
  magnitude estimate and the target's magnitude (``domain = "magnitude"``: the separation task feeds it
  ``model.estimate_magnitudes(mix)`` and the targets' ``|model.spectrogram(stems)|``).

Shapes as in :mod:`musicfx.losses.separation`; computed in float32 with autocast disabled.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from musicfx.audio.spectral import hann_window, stft
from musicfx.losses.separation import _check_same_shape
from musicfx.metrics.reduction import check_reduction, reduce

__all__ = ["BSRoFormerLoss", "UnmixMagnitudeLoss"]


class BSRoFormerLoss(nn.Module):
    """``L1(waveforms) + stft_weight * sum_w mean|STFT_w(estimate) - STFT_w(target)|``.

    Args:
        windows: window lengths of the STFT resolutions (periodic Hann).
        hop_length: hop of every resolution.
        min_n_fft: FFT size floor (a window shorter than it is zero-padded to it, as the reference does).
        stft_weight: weight of the STFT sum (the reference's ``multi_stft_resolution_loss_weight``).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(batch,)``).

    Shapes:
        estimate, target: waveforms ``(batch, ..., time)``, e.g. ``(batch, stems, channels, time)``.
    """

    def __init__(
        self,
        windows: Sequence[int] = (4096, 2048, 1024, 512, 256),
        hop_length: int = 147,
        min_n_fft: int = 2048,
        stft_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if not windows or min(windows) < 2:
            raise ValueError(f"windows must be lengths >= 2, got {list(windows)}")
        self.windows: Tuple[int, ...] = tuple(int(w) for w in windows)
        self.hop_length = int(hop_length)
        self.min_n_fft = int(min_n_fft)
        self.stft_weight = float(stft_weight)
        self.reduction = check_reduction(reduction)

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        _check_same_shape(estimate, target, "BSRoFormerLoss")
        batch = estimate.shape[0]
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            estimate, target = estimate.float(), target.float()
            total = (estimate - target).abs().reshape(batch, -1).mean(dim=1)
            for length in self.windows:
                window = hann_window(length, estimate.device)
                n_fft = max(length, self.min_n_fft)
                difference = stft(estimate, n_fft, self.hop_length, window=window) - stft(
                    target, n_fft, self.hop_length, window=window
                )
                total = total + self.stft_weight * difference.abs().reshape(batch, -1).mean(dim=1)
        return reduce(total, self.reduction)


class UnmixMagnitudeLoss(nn.Module):
    """Open-Unmix's training loss: MSE between estimated and target magnitude spectrograms.

    Args:
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(batch,)``).

    Shapes:
        estimate, target: magnitudes ``(batch, sources, channels, freq, frames)``.
    """

    domain = "magnitude"

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        _check_same_shape(estimate, target, "UnmixMagnitudeLoss")
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            error = (estimate.float() - target.float()).square()
        return reduce(error.reshape(error.shape[0], -1).mean(dim=1), self.reduction)
