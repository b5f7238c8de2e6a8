"""CNN soft-mask separator: the singing-voice model of the separation seed.

A convolutional network looks at ``context`` (9) overlapping magnitude frames of a 22.05 kHz STFT around
each frame and predicts, for that centre frame, a sigmoid mask per frequency bin and per source. It is
trained by binary cross-entropy against the ideal binary mask
(:class:`musicfx.losses.separation.MaskBCELoss`), so the sigmoid is the network's probability that the
source dominates the bin. The sources are resynthesised with the mixture phase.

Architecture (per audio channel; stereo channels are processed independently, as mono signals):

    log1p(|X|) -> per-bin affine -> [Conv2d 3x12 (time x freq) -> ReLU -> max-pool over frequency] x 2
    -> dense layer over the remaining (context - 4) frames x pooled bins -> ReLU -> dense -> sigmoid
    -> ``S x F`` mask values for the centre frame.

The convolutions are "valid" along time, so a window of 9 frames shrinks to 5 after the two 3-frame
kernels, and the first dense layer spans exactly those 5 frames. Written as a convolution whose kernel
covers the whole remaining window, the network slides over the whole spectrogram at once instead of being
evaluated 9-frame window by 9-frame window; the result is identical and each conv output is computed once
instead of up to 9 times. The edges of the spectrogram are zero-padded by ``context // 2`` frames.

**Masks and sources.** Each source has its own sigmoid output (its own head), including
``"accompaniment"``: the accompaniment mask is *not* forced to be ``1 - vocals``. With BCE against ideal
binary masks both heads learn complementary probabilities anyway, but separate heads let the inference
thresholds below trade interference against artefacts per source, and the same model serves more than two
sources.

**Inference thresholds.** The seed thresholds the soft masks at inference, with 0.1-0.2 for vocals and
0.75-0.85 for accompaniment. What we could check: searching the docs and pages corpora ("singing voice
separation convolutional neural network soft mask threshold 9 frames" and variants) found the closest
published relative, Lin et al., "Singing Voice Separation Using a Deep Convolutional Neural Network Trained
by Ideal Binary Mask and Cross Entropy" (Neural Computing and Applications 2018, arXiv:1812.01278):
pixel-wise IBM classification with cross-entropy and no Wiener post-processing. None of the retrievable
texts states how the seed applies its thresholds, so the rule here is our reading of the numbers: the
network outputs the probability ``p`` that a source dominates a bin, and a threshold is a *decision
threshold* that turns the probability into a binary mask:

    ``threshold_mode="binary"`` (default): applied mask = 1 where ``p >= threshold``, else 0.
    ``threshold_mode="floor"``: applied mask = ``p`` where ``p >= threshold``, else 0 (soft values kept,
    values below the threshold zeroed).

A low vocals threshold (0.15) keeps every bin where the voice is at all likely (BCE on IBMs makes vocal
probabilities small, vocals dominating few bins); a high accompaniment threshold (0.8) keeps only bins that
are confidently accompaniment. With complementary heads (``p_acc ~ 1 - p_voc``) the two binary masks
overlap only where ``0.15 <= p_voc <= 0.2`` and together cover every bin. Thresholds apply in ``eval()``
mode only (training uses :meth:`forward_masks`, which always returns the soft masks); ``None`` disables a
threshold. ``vocals_threshold`` applies to the source named ``"vocals"``, ``accompaniment_threshold`` to
``"accompaniment"``; other sources keep their soft mask.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.audio.spectral import ISTFT, STFT, magnitude
from musicfx.models.blocks import MaskingSeparator

__all__ = ["CNNSoftMask"]


class CNNSoftMask(MaskingSeparator, nn.Module):
    """Convolutional soft-mask separator on 9-frame magnitude contexts (see the module docstring).

    Default configuration: 4,825,796 parameters (any channel count: channels share the network).

    Args:
        sources: names of the ``S`` separated sources.
        channels: audio channels of the input and every output stem.
        sample_rate: rate the model works at (22.05 kHz in the seed); inputs must already be at this rate.
        n_fft: STFT size.
        hop_length: STFT hop.
        context: odd number of frames the network sees around each frame.
        conv_channels: output channels of the 3x12 convolutions (each shrinks the context by 2 frames).
        kernel_size: ``(time, freq)`` kernel of the convolutions.
        pool_sizes: max-pooling factor over frequency after each convolution.
        hidden: widths of the dense layers before the output layer.
        dropout: dropout after each hidden dense layer.
        vocals_threshold: inference threshold of the ``"vocals"`` mask (``None``: soft mask).
        accompaniment_threshold: inference threshold of the ``"accompaniment"`` mask (``None``: soft mask).
        threshold_mode: ``"binary"`` or ``"floor"`` (see the module docstring).
    """

    def __init__(
        self,
        sources: Sequence[str] = ("vocals", "accompaniment"),
        channels: int = 1,
        sample_rate: int = 22050,
        n_fft: int = 1024,
        hop_length: int = 256,
        context: int = 9,
        conv_channels: Sequence[int] = (32, 32),
        kernel_size: Tuple[int, int] = (3, 12),
        pool_sizes: Sequence[int] = (3, 3),
        hidden: Sequence[int] = (512,),
        dropout: float = 0.0,
        vocals_threshold: Optional[float] = 0.15,
        accompaniment_threshold: Optional[float] = 0.8,
        threshold_mode: str = "binary",
    ) -> None:
        super().__init__()
        self.declare_format(sources, channels, sample_rate)
        if context < 1 or context % 2 == 0:
            raise ValueError(f"context must be a positive odd number of frames, got {context}")
        if len(conv_channels) != len(pool_sizes):
            raise ValueError(f"one pool size per convolution: {len(conv_channels)} convs, {len(pool_sizes)} pools")
        if threshold_mode not in ("binary", "floor"):
            raise ValueError(f"threshold_mode must be 'binary' or 'floor', got {threshold_mode!r}")
        named = (("vocals_threshold", vocals_threshold), ("accompaniment_threshold", accompaniment_threshold))
        for name, value in named:
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] or None, got {value}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.context = context
        self.vocals_threshold = vocals_threshold
        self.accompaniment_threshold = accompaniment_threshold
        self.threshold_mode = threshold_mode
        n_bins = n_fft // 2 + 1
        self.n_bins = n_bins

        # log1p magnitudes span very different ranges per bin; a learnt per-bin affine (identity at init)
        # plays the role of Open-Unmix's input mean/scale.
        self.input_scale = nn.Parameter(torch.ones(n_bins))
        self.input_bias = nn.Parameter(torch.zeros(n_bins))

        kt, kf = kernel_size
        layers: List[nn.Module] = []
        in_ch, frames, bins = 1, context, n_bins
        for out_ch, pool in zip(conv_channels, pool_sizes):
            frames, bins = frames - kt + 1, (bins - kf + 1) // pool
            if frames < 1 or bins < 1:
                raise ValueError(
                    f"context={context} frames x {n_bins} bins is too small for {len(conv_channels)} "
                    f"convolutions of {kernel_size} with pooling {tuple(pool_sizes)}"
                )
            layers += [nn.Conv2d(in_ch, out_ch, (kt, kf)), nn.ReLU(), nn.MaxPool2d((1, pool))]
            in_ch = out_ch
        self.convs = nn.Sequential(*layers)
        widths = list(hidden)
        if not widths:
            raise ValueError("hidden needs at least one dense layer width")
        # Dense layer over the whole remaining (frames x bins) window, written as a conv sliding along time.
        self.dense_in = nn.Conv2d(in_ch, widths[0], (frames, bins))
        dense: List[nn.Module] = [nn.ReLU(), nn.Dropout(dropout)]
        for a, b in zip(widths[:-1], widths[1:]):
            dense += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        self.dense = nn.Sequential(*dense)
        self.head = nn.Linear(widths[-1], len(self.sources) * n_bins)
        self.stft = STFT(n_fft, hop_length)
        self.istft = ISTFT(n_fft, hop_length)

    def spectrogram_masks(self, spec: Tensor) -> Tensor:
        """Soft masks of a mixture spectrogram.

        Args:
            spec: complex ``(batch, channels, freq, frames)``.

        Returns:
            ``(batch, sources, channels, freq, frames)`` in ``[0, 1]``, float32.
        """
        batch, channels, bins, frames = spec.shape
        with torch.autocast(device_type=spec.device.type, enabled=False):
            mags = torch.log1p(magnitude(spec))  # (B, C, F, N)
            x = mags.transpose(-1, -2).reshape(batch * channels, 1, frames, bins)
            x = x * self.input_scale + self.input_bias
            half = self.context // 2
            x = F.pad(x, (0, 0, half, half))  # zero (silent) frames beyond both ends
        h = self.dense_in(self.convs(x))  # (B*C, hidden, frames, 1)
        h = self.dense(h.squeeze(-1).transpose(1, 2))  # (B*C, frames, hidden)
        logits = self.head(h).float()
        masks = torch.sigmoid(logits).reshape(batch, channels, frames, len(self.sources), bins)
        return masks.permute(0, 3, 1, 4, 2)

    def forward_masks(self, mix: Tensor) -> Tensor:
        """Soft masks (sigmoid probabilities that each source dominates each bin), never thresholded.

        Args:
            mix: ``(batch, channels, time)``.

        Returns:
            ``(batch, sources, channels, n_fft // 2 + 1, frames)`` in ``[0, 1]``, float32.
        """
        return self.spectrogram_masks(self.mix_spectrogram(mix))

    def thresholds(self) -> List[Optional[float]]:
        """The inference threshold of each source, in ``sources`` order (``None``: soft mask)."""
        named = {"vocals": self.vocals_threshold, "accompaniment": self.accompaniment_threshold}
        return [named.get(name) for name in self.sources]

    def apply_thresholds(self, masks: Tensor) -> Tensor:
        """Turn soft masks into the masks applied at inference (see ``threshold_mode``).

        Args:
            masks: ``(batch, sources, ...)`` in ``[0, 1]``.

        Returns:
            Same shape: for a thresholded source, 1 (``"binary"``) or the soft value (``"floor"``) where the
            mask is ``>= threshold`` and 0 elsewhere; other sources unchanged.
        """
        out = []
        for index, threshold in enumerate(self.thresholds()):
            soft = masks[:, index]
            if threshold is None:
                out.append(soft)
                continue
            keep = soft >= threshold
            out.append(keep.to(soft.dtype) if self.threshold_mode == "binary" else soft * keep)
        return torch.stack(out, dim=1)

    def _estimate(self, spec: Tensor) -> Tensor:
        """The forward pass's masks: soft, thresholded in eval mode (see :class:`MaskingSeparator`)."""
        masks = self.spectrogram_masks(spec)
        return masks if self.training else self.apply_thresholds(masks)

    def extra_repr(self) -> str:
        return (
            f"sources={self.sources}, channels={self.channels}, sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
            f"hop_length={self.hop_length}, context={self.context}, thresholds={self.thresholds()}, "
            f"threshold_mode={self.threshold_mode!r}"
        )
