"""Signal-to-distortion metrics in torch: batched, differentiable where it makes sense, on any device.

* :func:`museval_sdr` -- the "SDR" of museval v4 (BSS Eval images, ``win = hop = 1 s``) that MUSDB18
  results are reported in, per window, without museval's 512-tap distortion filters: for the SDR those
  filters cancel out (``e_spat + e_interf + e_artif == estimate - reference``), so the number is a
  framewise SNR over all channels.
* :func:`usdr` -- the "utterance SDR" of the Music Demixing challenges: one SNR over a whole song.
* :func:`si_sdr`, :func:`si_sdr_improvement` -- scale-invariant SDR as the denoising and speech
  enhancement literature reports it.
* :func:`snr` -- plain signal-to-noise ratio of an estimate against its reference.

Tensors are ``(..., [sources,] channels, time)``; every leading dimension is a batch dimension.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

from musicfx.metrics.reduction import REDUCTIONS, reduce

__all__ = [
    "museval_sdr",
    "window_frames",
    "usdr",
    "snr",
    "si_sdr",
    "si_sdr_improvement",
    "REDUCTIONS",
]

#: Values accepted by the ``reduction`` argument of :func:`si_sdr` and :func:`si_sdr_improvement`.


def _check_pair(estimate: torch.Tensor, reference: torch.Tensor, min_dim: int, layout: str) -> None:
    if estimate.shape != reference.shape:
        raise ValueError(
            f"estimate and reference must have the same shape {layout}, "
            f"got {tuple(estimate.shape)} and {tuple(reference.shape)}"
        )
    if estimate.dim() < min_dim:
        raise ValueError(f"expected tensors shaped {layout}, got {tuple(estimate.shape)}")
    if estimate.shape[-1] == 0:
        raise ValueError(f"expected at least one sample, got shape {tuple(estimate.shape)}")


def _float64_device(device: torch.device) -> torch.device:
    # Apple's MPS backend has no float64; the metrics need it to match museval to 1e-5 dB.
    return torch.device("cpu") if device.type == "mps" else device


def _ratio_db(signal_energy: torch.Tensor, error_energy: torch.Tensor) -> torch.Tensor:
    """``10 log10(signal / error)``, ``+inf`` where the error energy is exactly zero."""
    inf = torch.full_like(signal_energy, math.inf)
    return torch.where(error_energy == 0, inf, 10.0 * torch.log10(signal_energy / error_energy))


def window_frames(length: int, sample_rate: int, window: float = 1.0, hop: float = 1.0) -> Tuple[int, int, int]:
    """Window size, hop (in samples) and number of windows museval uses for a signal of ``length`` samples.

    museval converts seconds to samples with ``int(seconds * rate)``, keeps only whole windows (a
    trailing partial window is dropped) and uses one window over the whole signal when the signal is not
    longer than a window.

    Returns:
        ``(window_samples, hop_samples, windows)``.
    """
    win = int(window * sample_rate)
    step = int(hop * sample_rate)
    if win < 1 or step < 1:
        raise ValueError(
            f"window={window} s and hop={hop} s at {sample_rate} Hz must both be at least one sample"
        )
    if length < 1:
        raise ValueError(f"signal of {length} samples has no window to evaluate")
    windows = (length - win + step) // step if win < length else 1
    return win, step, windows


def _window_view(x: torch.Tensor, win: int, step: int) -> torch.Tensor:
    """``(..., time) -> (..., windows, samples)``; one window of the whole signal when it is short."""
    if x.shape[-1] <= win:
        return x.unsqueeze(-2)
    return x.unfold(-1, win, step)


def museval_sdr(
    estimates: torch.Tensor,
    references: torch.Tensor,
    sample_rate: int,
    window: float = 1.0,
    hop: float = 1.0,
) -> torch.Tensor:
    """Framewise SDR exactly as museval v4 reports it for MUSDB18 (``bss_eval`` images mode).

    Per window and source, over all channels: ``10 log10(sum(s^2) / sum((s_hat - s)^2))`` in float64.
    A window is NaN for every source when any reference or any estimate is silent in it (museval's
    test: the sum over channels is exactly zero at every sample of the window, so a stereo signal
    whose channels cancel exactly counts as silent too); it is ``+inf`` where the error is exactly
    zero. Windows follow :func:`window_frames`. Unlike museval, a source that is silent over the whole
    signal gives NaN windows rather than an exception, and estimates are not padded or cut to the
    references' length (pass equal lengths). Not differentiable (an evaluation metric; for a loss see
    :func:`si_sdr`).

    Args:
        estimates: ``(..., sources, channels, time)`` estimated source images.
        references: ``(..., sources, channels, time)`` true source images, same shape.
        sample_rate: sample rate of both, in Hz.
        window: window length in seconds (museval: 1.0).
        hop: hop between windows in seconds (museval: 1.0).

    Returns:
        ``(..., sources, windows)`` float64 SDR in dB, on the inputs' device (CPU for MPS inputs).
    """
    _check_pair(estimates, references, 3, "(..., sources, channels, time)")
    win, step, _ = window_frames(estimates.shape[-1], sample_rate, window, hop)
    device = _float64_device(estimates.device)
    estimates = estimates.detach().to(device)
    references = references.detach().to(device)

    # museval tests silence on the arrays it was given, before any cast: do the same.
    ref_active = _window_view(references.sum(dim=-2) != 0, win, step).any(dim=-1)
    est_active = _window_view(estimates.sum(dim=-2) != 0, win, step).any(dim=-1)
    window_silent = ~(ref_active & est_active).all(dim=-2, keepdim=True)  # (..., 1, windows)

    references = references.to(torch.float64)
    error = torch.sub(estimates, references)  # promoted to float64 on the fly, no float64 copy of estimates
    signal_energy = _window_view(references.square().sum(dim=-2), win, step).sum(dim=-1)
    error_energy = _window_view(error.square().sum(dim=-2), win, step).sum(dim=-1)
    sdr = _ratio_db(signal_energy, error_energy)
    return sdr.masked_fill(window_silent, math.nan)


def snr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Signal-to-noise ratio of ``estimate`` against ``reference`` over all channels and time.

    ``10 log10((sum(s^2) + eps) / (sum((s_hat - s)^2) + eps))``; ``+inf`` for a perfect estimate when
    ``eps == 0``. Computed in float64 (not differentiable: for a loss, see :func:`si_sdr`).

    Args:
        estimate: ``(..., channels, time)``.
        reference: ``(..., channels, time)``, same shape.
        eps: added to both energies (0: none).

    Returns:
        ``(...)`` float64 SNR in dB.
    """
    _check_pair(estimate, reference, 2, "(..., channels, time)")
    device = _float64_device(estimate.device)
    reference = reference.detach().to(device, torch.float64)
    error = torch.sub(estimate.detach().to(device), reference)
    signal_energy = reference.square().sum(dim=(-2, -1)) + eps
    error_energy = error.square().sum(dim=(-2, -1)) + eps
    return _ratio_db(signal_energy, error_energy)


def usdr(estimates: torch.Tensor, references: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """The Music Demixing challenge "utterance SDR": one SNR per source over the whole song.

    ``10 log10((sum(s^2) + eps) / (sum((s_hat - s)^2) + eps))`` over all channels and samples, with the
    challenges' ``eps = 1e-7`` so that silent sources give a finite number.

    Args:
        estimates: ``(..., sources, channels, time)``.
        references: ``(..., sources, channels, time)``, same shape.
        eps: added to both energies.

    Returns:
        ``(..., sources)`` float64 uSDR in dB.
    """
    _check_pair(estimates, references, 3, "(..., sources, channels, time)")
    return snr(estimates, references, eps=eps)




def si_sdr(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    reduction: str = "none",
    zero_mean: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Scale-invariant SDR (Le Roux et al., ICASSP 2019), differentiable.

    The reference is scaled by the least-squares gain ``alpha = <s_hat, s> / <s, s>`` and
    ``SI-SDR = 10 log10(|alpha s|^2 / |s_hat - alpha s|^2)``. Channels are folded into the time axis:
    a stereo signal gets one gain and one number, so an error in either channel counts, as it does for
    museval's SDR and for uSDR; for mono this is the usual per-utterance SI-SDR.

    Args:
        estimate: ``(..., channels, time)``.
        reference: ``(..., channels, time)``, same shape.
        reduction: ``"none"`` (one value per signal), ``"mean"`` or ``"sum"`` over all of them.
        zero_mean: remove each channel's mean (DC) from both signals first, as is customary.
        eps: keeps the gain and the ratio finite for silent signals and perfect estimates.

    Returns:
        ``(...)`` SI-SDR in dB with ``reduction="none"``, else a scalar; float32 for half-precision
        inputs, the inputs' dtype otherwise.
    """
    _check_pair(estimate, reference, 2, "(..., channels, time)")
    dtype = torch.promote_types(torch.promote_types(estimate.dtype, reference.dtype), torch.float32)
    estimate = estimate.to(dtype)
    reference = reference.to(dtype)
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        reference = reference - reference.mean(dim=-1, keepdim=True)
    estimate = estimate.flatten(-2)
    reference = reference.flatten(-2)
    dot = (estimate * reference).sum(dim=-1, keepdim=True)
    reference_energy = reference.square().sum(dim=-1, keepdim=True)
    target = dot / (reference_energy + eps) * reference
    noise = estimate - target
    values = 10.0 * torch.log10((target.square().sum(dim=-1) + eps) / (noise.square().sum(dim=-1) + eps))
    return reduce(values, reduction)


def si_sdr_improvement(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    mixture: torch.Tensor,
    reduction: str = "none",
    zero_mean: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """SI-SDRi: SI-SDR of the estimate minus SI-SDR of the unprocessed input, both against the reference.

    Args:
        estimate: ``(..., channels, time)`` processed signal.
        reference: ``(..., channels, time)`` clean signal.
        mixture: ``(..., channels, time)`` input the estimate was made from (e.g. the noisy recording).
        reduction, zero_mean, eps: as for :func:`si_sdr`.

    Returns:
        ``(...)`` improvement in dB with ``reduction="none"``, else a scalar.
    """
    if mixture.shape != reference.shape:
        raise ValueError(
            f"mixture must have the reference's shape {tuple(reference.shape)}, got {tuple(mixture.shape)}"
        )
    improvement = si_sdr(estimate, reference, "none", zero_mean, eps) - si_sdr(
        mixture, reference, "none", zero_mean, eps
    )
    return reduce(improvement, reduction)
