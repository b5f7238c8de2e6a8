"""Losses for source separation: spectral magnitudes, ideal-binary-mask cross-entropy, adversarial
objectives and mixture consistency.

Waveforms are shaped ``(batch, stems, channels, time)``, spectrograms and masks ``(batch, stems, channels,
freq, frames)``. Every loss is computed in float32 with autocast disabled, so it has the same value under
``16-mixed`` / ``bf16-mixed`` as in full precision. ``reduction="none"`` returns one value per example,
``(batch,)``, like :class:`musicfx.losses.waveform.WaveformLoss`; waveform L1/MSE, multi-resolution STFT and
SI-SDR losses live there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.audio.spectral import magnitude, stft
from musicfx.metrics.reduction import check_reduction, reduce

__all__ = [
    "AdversarialLoss",
    "MagnitudeLoss",
    "MaskBCELoss",
    "MixtureConsistencyLoss",
    "ideal_binary_mask",
]






def _check_same_shape(estimate: Tensor, target: Tensor, what: str) -> None:
    if estimate.shape != target.shape:
        raise ValueError(f"{what}: estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ")


class MagnitudeLoss(nn.Module):
    """L1 or MSE between the STFT magnitudes of estimated and target waveforms.

    Args:
        kind: ``"l1"`` or ``"mse"``.
        n_fft: FFT size (periodic Hann window of the same length).
        hop_length: frame step.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(batch,)``, each the mean over stems, channels,
            bins and frames).

    Shapes:
        estimate, target: waveforms ``(batch, ..., time)``, e.g. ``(batch, stems, channels, time)``.
    """

    def __init__(self, kind: str = "l1", n_fft: int = 2048, hop_length: int = 512, reduction: str = "mean") -> None:
        super().__init__()
        if kind not in ("l1", "mse"):
            raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
        if n_fft < 2 or not 1 <= hop_length <= n_fft:
            raise ValueError(f"need n_fft >= 2 and 1 <= hop_length <= n_fft, got {n_fft} and {hop_length}")
        self.kind = kind
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.reduction = check_reduction(reduction)

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        _check_same_shape(estimate, target, "MagnitudeLoss")
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            est = magnitude(stft(estimate.float(), self.n_fft, self.hop_length))
            ref = magnitude(stft(target.float(), self.n_fft, self.hop_length))
            error = est - ref
            error = error.abs() if self.kind == "l1" else error.square()
            return reduce(error.flatten(1).mean(dim=1), self.reduction)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, n_fft={self.n_fft}, hop_length={self.hop_length}, reduction={self.reduction!r}"


def ideal_binary_mask(magnitudes: Tensor) -> Tensor:
    """The ideal binary mask: 1 where a stem dominates the bin, i.e. is louder than all other stems together.

    ``|S_i| > sum_{j != i} |S_j|``; for two stems this is the argmax (ties give 0 to both). With more than two
    stems a bin where no stem dominates is 0 for all of them, so the masks need not sum to 1.

    Args:
        magnitudes: stem spectrograms ``(batch, stems, channels, freq, frames)``, magnitudes or complex
            (the modulus is taken).

    Returns:
        float32 mask of 0s and 1s with the shape of ``magnitudes``.
    """
    if magnitudes.dim() < 2:
        raise ValueError(f"ideal_binary_mask expects (batch, stems, ...), got shape {tuple(magnitudes.shape)}")
    mags = magnitudes.abs().float()
    others = mags.sum(dim=1, keepdim=True) - mags
    return (mags > others).float()


class MaskBCELoss(nn.Module):
    """Binary cross-entropy of predicted masks against the ideal binary mask of the target stems.

    Each time-frequency bin is a binary classification per stem ("does this stem dominate?"), as in the
    CNN soft-mask singing-voice separators trained with cross-entropy on ideal binary masks.

    ``domain = "mask"`` tells :class:`~musicfx.tasks.separate.SeparationTask` to call it with the model's
    ``forward_masks(mix)`` and ``spectrogram(stems)`` instead of waveforms.

    Args:
        eps: masks are clipped to ``[eps, 1 - eps]`` so the log stays finite for saturated sigmoids.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(batch,)``, each the mean over all bins).

    Shapes:
        masks: ``(batch, stems, channels, freq, frames)`` in ``[0, 1]``.
        targets: stem spectrograms of the same shape, complex or magnitudes.
    """

    domain = "mask"

    def __init__(self, eps: float = 1e-7, reduction: str = "mean") -> None:
        super().__init__()
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.eps = eps
        self.reduction = check_reduction(reduction)

    def forward(self, masks: Tensor, targets: Tensor) -> Tensor:
        _check_same_shape(masks, targets, "MaskBCELoss")
        with torch.autocast(device_type=masks.device.type, enabled=False):
            labels = ideal_binary_mask(targets)
            # F.binary_cross_entropy refuses to run under autocast; autocast is off here and inputs are float32.
            bce = F.binary_cross_entropy(masks.float().clamp(self.eps, 1.0 - self.eps), labels, reduction="none")
            return reduce(bce.flatten(1).mean(dim=1), self.reduction)


class AdversarialLoss(nn.Module):
    """Least-squares (LSGAN) or hinge adversarial objectives on discriminator logits.

    * ``"lsgan"`` (Mao et al. 2017): discriminator ``((D(real) - 1)^2 + D(fake)^2) / 2``, generator
      ``(D(fake) - 1)^2 / 2``.
    * ``"hinge"`` (Lim & Ye 2017, used by MelGAN/HiFi-GAN-style audio GANs): discriminator
      ``relu(1 - D(real)) + relu(1 + D(fake))``, generator ``-D(fake)``.

    Both are averaged over the batch (``reduction="none"`` keeps ``(batch,)``).

    Args:
        kind: ``"lsgan"`` or ``"hinge"``.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """

    def __init__(self, kind: str = "lsgan", reduction: str = "mean") -> None:
        super().__init__()
        if kind not in ("lsgan", "hinge"):
            raise ValueError(f"kind must be 'lsgan' or 'hinge', got {kind!r}")
        self.kind = kind
        self.reduction = check_reduction(reduction)

    def generator(self, fake_logits: Tensor) -> Tensor:
        """Loss of the generator, which wants its outputs judged real.

        Args:
            fake_logits: discriminator outputs on generated stems, ``(batch,)``.

        Returns:
            Scalar (or ``(batch,)`` with ``reduction="none"``).
        """
        fake = fake_logits.float()
        loss = 0.5 * (fake - 1.0).square() if self.kind == "lsgan" else -fake
        return reduce(loss, self.reduction)

    def discriminator(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """Loss of the discriminator, which wants real stems scored high and generated ones low.

        Args:
            real_logits: outputs on reference stems, ``(batch,)``.
            fake_logits: outputs on generated stems (detached from the generator), ``(batch,)``.

        Returns:
            Scalar (or ``(batch,)`` with ``reduction="none"``).
        """
        real, fake = real_logits.float(), fake_logits.float()
        if self.kind == "lsgan":
            loss = 0.5 * ((real - 1.0).square() + fake.square())
        else:
            loss = F.relu(1.0 - real) + F.relu(1.0 + fake)
        return reduce(loss, self.reduction)

    def forward(self, fake_logits: Tensor) -> Tensor:
        """Same as :meth:`generator`, so the module can stand where a generator loss is expected."""
        return self.generator(fake_logits)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, reduction={self.reduction!r}"


class MixtureConsistencyLoss(nn.Module):
    """L1 between the sum of the estimated stems and the mixture they were separated from.

    The cycle constraint of adversarial separators: whatever the generator invents, its stems must add
    back up to the input.

    Args:
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(batch,)``, each the mean over channels and time).

    Shapes:
        estimates: ``(batch, stems, channels, time)``; mix: ``(batch, channels, time)``.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, estimates: Tensor, mix: Tensor) -> Tensor:
        if estimates.dim() != mix.dim() + 1 or estimates.shape[:1] + estimates.shape[2:] != mix.shape:
            raise ValueError(
                f"MixtureConsistencyLoss: estimates {tuple(estimates.shape)} must be (batch, stems, *mix.shape[1:]) "
                f"for mix {tuple(mix.shape)}"
            )
        error = (estimates.float().sum(dim=1) - mix.float()).abs()
        return reduce(error.flatten(1).mean(dim=1), self.reduction)
