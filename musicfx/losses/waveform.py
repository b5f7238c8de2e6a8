"""Losses between waveforms shaped ``(batch, [stems,] channels, time)``."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from musicfx.metrics.reduction import reduce




class WaveformLoss(nn.Module):
    """L1 or MSE on the waveform, averaged per example.

    Args:
        kind: ``"l1"`` or ``"mse"``.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(batch,)``).
    """

    def __init__(self, kind: str = "l1", reduction: str = "mean") -> None:
        super().__init__()
        if kind not in ("l1", "mse"):
            raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
        self.kind = kind
        self.reduction = reduction

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        error = (estimate.float() - target.float())
        error = error.abs() if self.kind == "l1" else error.square()
        return reduce(error.flatten(1).mean(dim=1), self.reduction)


class MultiResolutionSTFTLoss(nn.Module):
    """auraloss' multi-resolution STFT loss (spectral convergence + log-magnitude L1), computed in float32.

    auraloss calls ``torch.stft``, which has no half-precision kernels on every device, so inputs are cast up
    and autocast is disabled inside: the loss is then identical under ``16-mixed`` / ``bf16-mixed``.

    Args:
        fft_sizes, hop_sizes, win_lengths: one entry per resolution.
        reduction: ``"mean"`` or ``"sum"`` (auraloss reduces over the batch itself).
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (128, 256, 512),
        win_lengths: Sequence[int] = (512, 1024, 2048),
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        # why: auraloss takes seconds to import (scipy), and only this loss needs it.
        import auraloss

        self.stft = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=list(fft_sizes), hop_sizes=list(hop_sizes), win_lengths=list(win_lengths), reduction=reduction
        )

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            # auraloss views its input, so a non-contiguous batch (channels folded into it) is copied first.
            return self.stft(
                estimate.float().flatten(0, -3).contiguous(), target.float().flatten(0, -3).contiguous()
            )


class L1STFTLoss(nn.Module):
    """The denoising default: multi-resolution STFT loss plus time-domain L1.

    Args:
        stft_weight: weight of :class:`MultiResolutionSTFTLoss`.
        l1_weight: weight of the waveform L1.
        fft_sizes, hop_sizes, win_lengths: STFT resolutions.
    """

    def __init__(
        self,
        stft_weight: float = 1.0,
        l1_weight: float = 1.0,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (128, 256, 512),
        win_lengths: Sequence[int] = (512, 1024, 2048),
    ) -> None:
        super().__init__()
        self.stft_weight = stft_weight
        self.l1_weight = l1_weight
        self.stft = MultiResolutionSTFTLoss(fft_sizes, hop_sizes, win_lengths)
        self.l1 = WaveformLoss("l1")

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.stft_weight * self.stft(estimate, target) + self.l1_weight * self.l1(estimate, target)


class SISDRLoss(nn.Module):
    """Negative scale-invariant SDR in dB, one per signal over its channels and time.

    A signal is the last two dimensions ``(channels, time)``: a ``(batch, channels, time)`` batch gives one
    value per example, a separator's ``(batch, stems, channels, time)`` one per stem (each stem gets its own
    scale), averaged per example before the reduction.

    Args:
        eps: numerical floor.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(batch,)``).
    """

    def __init__(self, eps: float = 1e-8, reduction: str = "mean") -> None:
        super().__init__()
        self.eps = eps
        self.reduction = reduction

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        batch = estimate.shape[0]
        estimate = estimate.float().flatten(-2)
        target = target.float().flatten(-2)
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        target = target - target.mean(dim=-1, keepdim=True)
        scale = (estimate * target).sum(-1, keepdim=True) / (target.square().sum(-1, keepdim=True) + self.eps)
        projection = scale * target
        ratio = projection.square().sum(-1) / ((estimate - projection).square().sum(-1) + self.eps)
        per_signal = -10 * torch.log10(ratio + self.eps)
        return reduce(per_signal.reshape(batch, -1).mean(dim=1), self.reduction)
