"""Automix losses: the stereo (sum and difference) STFT loss of FxNorm-automix and a loudness term.

The FxNorm-automix paper (Martínez-Ramírez et al., ISMIR 2022) trains on a stereo loss after
Steinmetz et al. (2021): the mid (``L + R``) and side (``L - R``) signals of estimate and target are compared
by STFT (4096 / 1024) with a spectral-convergence term (loss "La") or a magnitude MSE (loss "Lb") plus a
log-magnitude L1, after an A-weighting pre-filter. Its code (``StereoLoss`` / ``StereoLoss2`` in
sony/FxNorm-automix ``common_losses.py``) filters in the time domain with auraloss' 101-tap FIR fit of the
A-weighting curve (plus a first-order low-pass).

Deviations from that code, and why auraloss is not reused as is:

* A-weighting is applied as an exact frequency-domain weight on the STFT: every bin is scaled by the IEC
  61672-1 A-weighting magnitude at its centre frequency (0 dB at 1 kHz). A 101-tap FIR fitted on a
  512-point grid is coarse below a few hundred Hz, exactly where the weighting matters most, and a
  frequency-domain weight needs no convolution at all. For filters short against the window the two are
  the same thing. The reference's extra low-pass (``"lp"``, ``1 + 0.85 z^-1``) is the same kind of per-bin
  weight, off by default and on with ``lowpass=0.85``.
* auraloss' ``SumAndDifferenceSTFTLoss`` halves ``(sum + diff) / 2``; here the two terms add, as in the
  reference. Spectral convergence is taken over the whole batch (as the reference and auraloss do) for
  ``reduction="mean"``, so a near-silent target (a silent chunk, a centred mix with almost no side signal)
  weighs by its energy instead of dividing by almost zero; ``reduction="none"`` gives each example its
  own loss.
* The STFT is normalised by ``sqrt(sum(window^2))`` (white noise of variance ``s^2`` has ``E|X|^2 = s^2`` at
  every bin, independent of ``n_fft``). This rescales only the MSE option, by a constant.

Properties worth knowing: the log-magnitude term is blind to any fixed frequency
weighting, A-weighting included, except where the weighted magnitude hits the floor ``eps`` (inaudibly
quiet bins, and the DC bin whose A-weight is 0, drop out); and since only magnitudes of ``L + R`` and
``L - R`` are compared, the loss cannot tell an estimate from its left/right swap or its polarity
inversion (both tested).
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from musicfx.audio.loudness import LOUDNESS_OFFSET, default_channel_weights, integrated_loudness, k_weighting
from musicfx.audio.spectral import fft_frequencies, hann_window, stft
from musicfx.metrics.reduction import check_reduction, reduce

__all__ = ["a_weighting", "StereoSTFTLoss", "LoudnessLoss", "AutomixLoss"]

# Pole frequencies (Hz) of the IEC 61672-1 A-weighting curve.
_A_F1 = 20.598997
_A_F2 = 107.65265
_A_F3 = 737.86223
_A_F4 = 12194.217






def _a_response(f: Tensor) -> Tensor:
    """Unnormalised magnitude ``R_A(f)`` of the analog A-weighting filter."""
    f2 = f.square()
    return (_A_F4**2 * f2.square()) / (
        (f2 + _A_F1**2) * torch.sqrt((f2 + _A_F2**2) * (f2 + _A_F3**2)) * (f2 + _A_F4**2)
    )


def a_weighting(frequencies: Tensor) -> Tensor:
    """IEC 61672-1 A-weighting as a linear magnitude gain, exactly 1 (0 dB) at 1 kHz.

    Args:
        frequencies: frequencies in Hz, any shape (float).

    Returns:
        Gains with the shape of ``frequencies`` (0 at 0 Hz); e.g. -19.1 dB at 100 Hz, +1.3 dB at
        2.5 kHz, -2.5 dB at 10 kHz.
    """
    f = frequencies.to(torch.float64)
    return (_a_response(f) / _a_response(torch.tensor(1000.0, dtype=torch.float64))).to(frequencies.dtype)


_a_weighting = a_weighting  # StereoSTFTLoss's ``a_weighting`` argument shadows the function's name


def _sum_and_difference(x: Tensor) -> Tensor:
    """``(..., 2, time)`` -> ``(..., 2, time)`` holding ``L + R`` and ``L - R``."""
    left, right = x.unbind(-2)
    return torch.stack([left + right, left - right], dim=-2)


class StereoSTFTLoss(nn.Module):
    """Sum-and-difference STFT loss with A-weighting (FxNorm-automix "La" / "Lb").

    For the mid (``L + R``) and side (``L - R``) signals of estimate and target, with ``X``, ``Y`` their
    A-weighted, normalised STFT magnitudes (floored at ``sqrt(eps)``):

    * ``magnitude="sc"``: spectral convergence ``||Y - X||_F / ||Y||_F`` (loss "La");
      ``magnitude="mse"``: ``mean((X - Y)^2)`` (loss "Lb");
    * plus ``log_magnitude_weight * mean(|ln X - ln Y|)``.

    The mid and side losses are added. With ``reduction="mean"`` the norms of the spectral convergence run
    over the whole batch (and the means over the batch too), as in the reference; with ``"none"`` every
    example is scored on its own. Everything runs in float32 with autocast off.

    Args:
        n_fft: FFT size (window = square root of a periodic Hann window, as in the reference).
        hop_length: STFT hop.
        sample_rate: in Hz; places the A-weighting curve on the bins.
        a_weighting: weight the magnitudes by the A-weighting curve.
        magnitude: ``"sc"`` (spectral convergence) or ``"mse"`` (magnitude mean squared error).
        log_magnitude_weight: weight of the log-magnitude L1 term (0 drops it).
        lowpass: coefficient ``c`` of the reference's first-order pre-filter ``1 + c z^-1`` applied after the
            A-weighting (its ``filter_type=["aw", "lp"]``, ``c = 0.85``), as a per-bin gain; 0 (default) disables.
        reduction: ``"mean"`` (over the batch, see above) or ``"none"`` (shape ``(...)`` of the input).
        eps: floor on the weighted power ``|X|^2`` (-100 dB re a full-scale white noise bin), which keeps
            the logarithm finite and lets inaudible bins drop out of the log term.
    """

    window: Tensor
    weights: Tensor

    def __init__(
        self,
        n_fft: int = 4096,
        hop_length: int = 1024,
        sample_rate: int = 44100,
        a_weighting: bool = True,
        magnitude: str = "sc",
        log_magnitude_weight: float = 1.0,
        reduction: str = "mean",
        eps: float = 1e-10,
        lowpass: float = 0.0,
    ) -> None:
        super().__init__()
        if magnitude not in ("sc", "mse"):
            raise ValueError(f"magnitude must be 'sc' or 'mse', got {magnitude!r}")
        if n_fft < 2 or hop_length < 1:
            raise ValueError(f"need n_fft >= 2 and hop_length >= 1, got {n_fft}, {hop_length}")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.sample_rate = sample_rate
        self.a_weighting = a_weighting
        self.magnitude = magnitude
        self.log_magnitude_weight = log_magnitude_weight
        self.reduction = reduction
        self.eps = eps
        window = hann_window(n_fft).sqrt()
        # Normalised so that a white-noise bin has the variance of the signal, whatever n_fft.
        self.register_buffer("window", window / window.square().sum().sqrt(), persistent=False)
        bins = fft_frequencies(n_fft, sample_rate).to(torch.float32)
        weights = _a_weighting(bins) if a_weighting else torch.ones_like(bins)
        if lowpass:
            # |1 + c e^{-jw}| at each bin: the FIR pre-filter's magnitude response.
            omega = 2.0 * math.pi * bins / sample_rate
            weights = weights * torch.sqrt(1.0 + 2.0 * lowpass * torch.cos(omega) + lowpass**2)
        self.lowpass = lowpass
        self.register_buffer("weights", weights, persistent=False)

    def magnitudes(self, x: Tensor) -> Tensor:
        """Weighted, floored STFT magnitudes of the mid and side signals.

        Args:
            x: stereo audio ``(..., 2, time)``.

        Returns:
            ``(..., 2, n_fft // 2 + 1, frames)``: mid then side.
        """
        spec = stft(_sum_and_difference(x.float()), self.n_fft, self.hop_length, window=self.window)
        power = (spec.real.square() + spec.imag.square()) * self.weights.square().unsqueeze(-1)
        return power.clamp_min(self.eps).sqrt()

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        """Args:
            estimate: stereo audio ``(..., 2, time)``.
            target: same shape.

        Returns:
            The loss, a scalar (``"mean"``) or ``(...)`` (``"none"``).
        """
        if estimate.shape != target.shape:
            raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ in shape")
        if estimate.dim() < 2 or estimate.shape[-2] != 2:
            raise ValueError(f"StereoSTFTLoss needs stereo audio (..., 2, time), got {tuple(estimate.shape)}")
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            x = self.magnitudes(estimate)
            x = x.reshape(-1, *x.shape[-3:])  # (items, mid/side, freq, frames)
            y = self.magnitudes(target).reshape(x.shape)
            per_item = self.reduction == "none"
            if self.magnitude == "sc":
                error, energy = (y - x).square().sum((-2, -1)), y.square().sum((-2, -1))
                term = (error / energy).sqrt() if per_item else (error.sum(0) / energy.sum(0)).sqrt()
            else:
                term = (y - x).square().mean((-2, -1))
                term = term if per_item else term.mean(0)
            if self.log_magnitude_weight:
                log_term = (x.log() - y.log()).abs().mean((-2, -1))
                term = term + self.log_magnitude_weight * (log_term if per_item else log_term.mean(0))
            return term.sum(-1).reshape(estimate.shape[:-2]) if per_item else term.sum()


def _ungated_loudness(audio: Tensor, sample_rate: int, floor: float) -> Tensor:
    """BS.1770 loudness without blocks or gates: K-weighted mean power over the whole signal, in LUFS.

    Args:
        audio: ``(..., channels, time)``.
        sample_rate: in Hz.
        floor: lower bound on the weighted power, so silence reads a finite, very low loudness.

    Returns:
        ``(...)`` LUFS.
    """
    weights = torch.tensor(default_channel_weights(audio.shape[-2]), dtype=torch.float32, device=audio.device)
    power = (k_weighting(audio, sample_rate).square().mean(-1) * weights).sum(-1)
    return LOUDNESS_OFFSET + 10.0 * torch.log10(power.clamp_min(floor))


class LoudnessLoss(nn.Module):
    """L1 distance in LU between the integrated loudness (ITU-R BS.1770-4) of estimate and target.

    The gated meter :func:`musicfx.audio.loudness.integrated_loudness` is differentiable: its gates are
    piecewise constant masks, so the gradient flows through the mean power of the blocks that pass, and a
    gain change of ``g`` dB moves the loss by exactly ``|g|``. Where the gated loudness is undefined for
    either signal (silent, below -70 LUFS, or shorter than one 400 ms block) that item falls back to the
    ungated K-weighted loudness of both signals (floored at ``floor_lufs``), so a silent estimate is still
    pulled up instead of producing ``inf`` / NaN.

    Args:
        sample_rate: in Hz.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(...)``).
        floor_lufs: the lowest loudness the fallback can read.
    """

    def __init__(self, sample_rate: int, reduction: str = "mean", floor_lufs: float = -120.0) -> None:
        super().__init__()
        check_reduction(reduction)
        self.sample_rate = sample_rate
        self.reduction = reduction
        self.floor_lufs = floor_lufs

    def loudness_difference(self, estimate: Tensor, target: Tensor) -> Tensor:
        """Signed loudness difference ``L(estimate) - L(target)`` in LU.

        Args:
            estimate: ``(..., channels, time)``.
            target: same shape.

        Returns:
            ``(...)`` float32.
        """
        if estimate.shape != target.shape:
            raise ValueError(f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ in shape")
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            estimate, target = estimate.float(), target.float()
            gated_est = integrated_loudness(estimate, self.sample_rate)
            gated_tgt = integrated_loudness(target, self.sample_rate)
            defined = torch.isfinite(gated_est) & torch.isfinite(gated_tgt)
            zero = torch.zeros_like(gated_est)
            # Zero the undefined branch before subtracting: inf - inf would put NaN into the gradient.
            gated = torch.where(defined, gated_est, zero) - torch.where(defined, gated_tgt, zero)
            if bool(defined.all()):
                return gated
            floor = 10.0 ** ((self.floor_lufs - LOUDNESS_OFFSET) / 10.0)
            ungated = _ungated_loudness(estimate, self.sample_rate, floor) - _ungated_loudness(
                target, self.sample_rate, floor
            )
            return torch.where(defined, gated, ungated)

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        """Args:
            estimate: ``(..., channels, time)``.
            target: same shape.

        Returns:
            ``|L(estimate) - L(target)|`` in LU, reduced.
        """
        return reduce(self.loudness_difference(estimate, target).abs(), self.reduction)


class AutomixLoss(nn.Module):
    """``stereo(estimate, target) + loudness_weight * loudness(estimate, target)``.

    Args:
        stereo: the stereo STFT loss (default: ``StereoSTFTLoss()`` at 44.1 kHz); its ``sample_rate`` and
            ``reduction`` are used for the loudness term too.
        loudness_weight: weight of :class:`LoudnessLoss` (in LU); 0 skips computing it.
    """

    def __init__(self, stereo: Optional[StereoSTFTLoss] = None, loudness_weight: float = 0.1) -> None:
        super().__init__()
        self.stereo = stereo if stereo is not None else StereoSTFTLoss()
        self.loudness_weight = loudness_weight
        self.loudness = LoudnessLoss(self.stereo.sample_rate, reduction=self.stereo.reduction)

    def components(self, estimate: Tensor, target: Tensor) -> Dict[str, Tensor]:
        """The weighted total and its unweighted parts, for logging.

        Args:
            estimate: stereo audio ``(..., 2, time)``.
            target: same shape.

        Returns:
            ``{"loss", "stereo", "loudness"}`` reduced like ``stereo``; ``"loudness"`` is only present when
            ``loudness_weight != 0``.
        """
        parts = {"stereo": self.stereo(estimate, target)}
        total = parts["stereo"]
        if self.loudness_weight:
            parts["loudness"] = self.loudness(estimate, target)
            total = total + self.loudness_weight * parts["loudness"]
        parts["loss"] = total
        return parts

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        """Args:
            estimate: stereo audio ``(..., 2, time)``.
            target: same shape.

        Returns:
            The combined loss, reduced like ``stereo``.
        """
        return self.components(estimate, target)["loss"]

