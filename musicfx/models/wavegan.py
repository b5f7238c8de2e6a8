"""WaveGAN-style generator and discriminator for adversarial waveform separation (the seed's GAN variant).

WaveGAN (Donahue, McAuley & Puckette, ICLR 2019) synthesises audio with 1-D convolutions of kernel 25 and
stride 4; its discriminator mirrors them with leaky ReLUs (slope 0.2), no batch normalisation, and *phase
shuffle* between layers, which randomly shifts each feature map by a few samples so the discriminator
cannot reject generated audio on the periodic artefacts of transposed convolutions. Separation needs a
mapping from a mix to stems rather than noise to audio, so the generator here is a 1-D U-Net built from
those layers: stride-4 convolutions down, stride-4 transposed convolutions up, skip connections at every
resolution, and a final 1x1 projection of (features, mix) to ``stems x channels`` waveforms (linear output:
no tanh, which would saturate loud stems). The discriminator is conditional: it judges stems *given* the
mix, the two concatenated along channels, and answers one logit per example.

How a task uses them (manual optimisation, two optimisers; the losses are in
:mod:`musicfx.losses.separation`):

* generator step: ``estimates = G(mix)``;
  ``loss_G = l1_weight * WaveformLoss("l1")(estimates, stems)``
  ``+ adv_weight * AdversarialLoss("lsgan").generator(D(estimates, mix))``
  ``+ mix_weight * MixtureConsistencyLoss()(estimates, mix)``;
* discriminator step: ``AdversarialLoss("lsgan").discriminator(D(stems, mix), D(estimates.detach(), mix))``.

The default adversarial objective is least squares (LSGAN), which gives non-vanishing gradients to a
generator whose outputs the discriminator rejects confidently; ``"hinge"`` is the alternative. The mixture
consistency term is the seed's cycle constraint: whatever the generator produces must add back up to the
mix. With a paired L1 term the GAN starts from a useful regressor instead of chasing the discriminator
from noise.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.audio.stems import MUSDB_STEMS
from musicfx.models.blocks import check_mix

__all__ = ["WaveGANDiscriminator", "WaveGANGenerator", "phase_shuffle"]


def phase_shuffle(x: Tensor, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Shift each example's feature map by a random whole number of samples in ``[-n, n]``.

    Output sample ``t`` is input sample ``t - k`` (a delay by ``k``); the samples shifted in at the edges are
    reflections of the signal (replicated edge samples when the map is too short to reflect), as in
    WaveGAN. Unlike WaveGAN, which draws one shift for the whole batch, each example draws its own shift, so
    an example's treatment does not depend on what else is in the batch.

    Args:
        x: feature maps ``(batch, channels, time)``.
        n: largest shift in samples (0 returns ``x``).
        generator: source of the shifts (its device is used for drawing); default: torch's global RNG.

    Returns:
        Shifted maps, same shape.
    """
    if n < 0:
        raise ValueError(f"phase shuffle radius must be >= 0, got {n}")
    if n == 0:
        return x
    batch, channels, length = x.shape
    device = generator.device if generator is not None else x.device
    shifts = torch.randint(-n, n + 1, (batch,), generator=generator, device=device).to(x.device)
    padded = F.pad(x, (n, n), mode="reflect" if length > n else "replicate")
    index = torch.arange(length, device=x.device)[None, :] + (n - shifts)[:, None]  # (B, T)
    return padded.gather(-1, index[:, None, :].expand(batch, channels, length))


def _same_padding(kernel_size: int, stride: int) -> Tuple[int, int]:
    """``(padding, output_padding)`` so that a stride-``s`` conv maps ``s * L`` samples to ``L`` and the
    transposed conv with the same kernel maps ``L`` back to ``s * L``."""
    if stride < 1 or kernel_size < stride:
        raise ValueError(f"need 1 <= stride <= kernel_size, got stride={stride}, kernel_size={kernel_size}")
    padding = (kernel_size - stride + 1) // 2
    return padding, stride + 2 * padding - kernel_size


class WaveGANGenerator(nn.Module):
    """WaveGAN-style 1-D U-Net mapping a mix to stems: ``forward(mix (B, C, T)) -> (B, S, C, T)``.

    Default configuration (4 stems, stereo): 9,833,784 parameters; the input is zero-padded to a multiple
    of ``stride ** len(widths)`` (1024) samples and the output cropped back.

    Args:
        sources: names of the ``S`` stems.
        channels: audio channels.
        sample_rate: the rate the model was trained at (the model itself is rate-agnostic).
        widths: encoder widths, one per stride-``stride`` down-sampling level.
        kernel_size: kernel of every (transposed) convolution (25 in WaveGAN), ``>= stride``.
        stride: down/up-sampling factor per level (4 in WaveGAN).
    """

    def __init__(
        self,
        sources: Sequence[str] = MUSDB_STEMS,
        channels: int = 2,
        sample_rate: int = 44100,
        widths: Sequence[int] = (32, 64, 128, 256, 512),
        kernel_size: int = 25,
        stride: int = 4,
    ) -> None:
        super().__init__()
        self.sources: Tuple[str, ...] = tuple(sources)
        if not self.sources:
            raise ValueError("WaveGANGenerator needs at least one source")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if not widths:
            raise ValueError("widths needs at least one level")
        padding, output_padding = _same_padding(kernel_size, stride)
        self.channels = channels
        self.sample_rate = sample_rate
        self.stride = stride
        self.multiple = stride ** len(widths)
        widths = list(widths)
        self.down = nn.ModuleList()
        in_ch = channels
        for width in widths:
            self.down.append(nn.Conv1d(in_ch, width, kernel_size, stride, padding))
            in_ch = width
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            in_ch = widths[level] if level == len(widths) - 1 else 2 * widths[level]
            out_ch = widths[level - 1] if level > 0 else widths[0]
            self.up.append(nn.ConvTranspose1d(in_ch, out_ch, kernel_size, stride, padding, output_padding))
        self.out = nn.Conv1d(widths[0] + channels, len(self.sources) * channels, 1)

    def _check(self, mix: Tensor) -> None:
        check_mix(mix, self.channels, "WaveGANGenerator")

    def forward(self, mix: Tensor) -> Tensor:
        """Args:
            mix: ``(batch, channels, time)``.

        Returns:
            Stems ``(batch, sources, channels, time)``, float32.
        """
        self._check(mix)
        batch, channels, length = mix.shape
        x = F.pad(mix, (0, (-length) % self.multiple))
        skips: List[Tensor] = []
        h = x
        for conv in self.down:
            h = F.leaky_relu(conv(h), 0.2)
            skips.append(h)
        for index, deconv in enumerate(self.up):
            level = len(self.down) - 1 - index
            if index > 0:
                h = torch.cat([h, skips[level]], dim=1)
            h = F.relu(deconv(h))
        out = self.out(torch.cat([h, x.to(h.dtype)], dim=1))[..., :length].float()
        return out.reshape(batch, len(self.sources), channels, length)


class WaveGANDiscriminator(nn.Module):
    """Conditional WaveGAN discriminator: ``forward(stems (B, S, C, T), mix (B, C, T)) -> logits (B,)``.

    Stride-4 kernel-25 convolutions with leaky ReLU (0.2) and no normalisation, phase shuffle after every
    convolution but the last (training mode only), then a mean over time (so any length works) and a linear
    layer. Default configuration (4 stems, stereo): 4,361,505 parameters.

    Args:
        sources: number of stems ``S`` it judges.
        channels: audio channels.
        widths: output channels of the convolutions.
        kernel_size: kernel (25 in WaveGAN), ``>= stride``.
        stride: stride (4 in WaveGAN).
        shuffle: phase-shuffle radius in samples (2 in WaveGAN; 0 disables).
    """

    def __init__(
        self,
        sources: int = 4,
        channels: int = 2,
        widths: Sequence[int] = (32, 64, 128, 256, 512),
        kernel_size: int = 25,
        stride: int = 4,
        shuffle: int = 2,
    ) -> None:
        super().__init__()
        if sources < 1 or channels < 1:
            raise ValueError(f"sources and channels must be >= 1, got {sources} and {channels}")
        if not widths:
            raise ValueError("widths needs at least one convolution")
        if shuffle < 0:
            raise ValueError(f"shuffle must be >= 0, got {shuffle}")
        padding, _ = _same_padding(kernel_size, stride)
        self.sources = sources
        self.channels = channels
        self.shuffle = shuffle
        self.convs = nn.ModuleList()
        in_ch = (sources + 1) * channels
        for width in widths:
            self.convs.append(nn.Conv1d(in_ch, width, kernel_size, stride, padding))
            in_ch = width
        self.head = nn.Linear(in_ch, 1)

    def forward(self, stems: Tensor, mix: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Args:
            stems: real or generated stems ``(batch, sources, channels, time)``.
            mix: the mix they come from, ``(batch, channels, time)``.
            generator: source of the phase-shuffle shifts (default: torch's global RNG).

        Returns:
            Logits ``(batch,)``, float32 (higher: judged real).
        """
        expected = (self.sources, self.channels)
        if stems.dim() != 4 or tuple(stems.shape[1:3]) != expected or mix.shape != stems.shape[:1] + stems.shape[2:]:
            raise ValueError(
                f"WaveGANDiscriminator expects stems (batch, {self.sources}, {self.channels}, time) and mix "
                f"(batch, {self.channels}, time), got {tuple(stems.shape)} and {tuple(mix.shape)}"
            )
        h = torch.cat([stems.flatten(1, 2), mix.to(stems.dtype)], dim=1)
        for index, conv in enumerate(self.convs):
            h = F.leaky_relu(conv(h), 0.2)
            if self.training and self.shuffle and index < len(self.convs) - 1:
                h = phase_shuffle(h, self.shuffle, generator)
        return self.head(h.mean(dim=-1)).squeeze(-1).float()
