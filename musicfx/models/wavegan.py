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
from musicfx.errors import AudioError
from musicfx.models.blocks import check_mix

__all__ = ["WaveGANDiscriminator", "WaveGANGenerator", "WaveGANRemixer", "phase_shuffle"]


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


class _WaveUNet1d(nn.Module):
    """The WaveGAN-style 1-D U-Net both generators share: ``(B, in_channels, T) -> (B, out_channels, T)``.

    Stride-``stride`` convolutions down (leaky ReLU 0.2), stride-``stride`` transposed convolutions up (ReLU)
    with skips at every resolution, and a linear 1x1 projection of (features, input); the input is zero-padded
    to a multiple of ``stride ** len(widths)`` samples and the output cropped back.
    """

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int], kernel_size: int, stride: int) -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths needs at least one level")
        padding, output_padding = _same_padding(kernel_size, stride)
        self.stride = stride
        self.multiple = stride ** len(widths)
        widths = list(widths)
        self.down = nn.ModuleList()
        in_ch = in_channels
        for width in widths:
            self.down.append(nn.Conv1d(in_ch, width, kernel_size, stride, padding))
            in_ch = width
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            in_ch = widths[level] if level == len(widths) - 1 else 2 * widths[level]
            out_ch = widths[level - 1] if level > 0 else widths[0]
            self.up.append(nn.ConvTranspose1d(in_ch, out_ch, kernel_size, stride, padding, output_padding))
        self.out = nn.Conv1d(widths[0] + in_channels, out_channels, 1)

    def _unet(self, x: Tensor) -> Tensor:
        """``(B, in_channels, T) -> (B, out_channels, T)``, float32."""
        length = x.shape[-1]
        x = F.pad(x, (0, (-length) % self.multiple))
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
        return self.out(torch.cat([h, x.to(h.dtype)], dim=1))[..., :length].float()


class WaveGANGenerator(_WaveUNet1d):
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
        sources = tuple(sources)
        if not sources:
            raise ValueError("WaveGANGenerator needs at least one source")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        super().__init__(channels, len(sources) * channels, widths, kernel_size, stride)
        self.sources: Tuple[str, ...] = sources
        self.channels = channels
        self.sample_rate = sample_rate

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
        return self._unet(mix).reshape(batch, len(self.sources), channels, length)


class WaveGANRemixer(_WaveUNet1d):
    """The cycle's second generator: re-mixes stems into a mix, ``forward(stems (B, S, C, T)) -> (B, C, T)``.

    The same WaveGAN-style U-Net as :class:`WaveGANGenerator`, run the other way: the ``S * C`` stem channels in,
    ``C`` mix channels out. With ``sum_skip`` (default) the network's output is added to the plain sum of the
    stems, so it starts as the physical mix and learns what a real mix adds (level, bus processing); without it
    the mapping is learned from scratch as in CycleGAN.

    Args:
        sources: number of stems ``S``.
        channels: audio channels.
        widths, kernel_size, stride: as :class:`WaveGANGenerator`.
        sum_skip: add the stems' sum to the output.
    """

    def __init__(
        self,
        sources: int = 4,
        channels: int = 2,
        widths: Sequence[int] = (32, 64, 128, 256, 512),
        kernel_size: int = 25,
        stride: int = 4,
        sum_skip: bool = True,
    ) -> None:
        if sources < 1 or channels < 1:
            raise ValueError(f"sources and channels must be >= 1, got {sources} and {channels}")
        super().__init__(sources * channels, channels, widths, kernel_size, stride)
        self.sources = sources
        self.channels = channels
        self.sum_skip = sum_skip

    def forward(self, stems: Tensor) -> Tensor:
        """Args:
            stems: ``(batch, sources, channels, time)``.

        Returns:
            The mix ``(batch, channels, time)``, float32.
        """
        if stems.dim() != 4 or tuple(stems.shape[1:3]) != (self.sources, self.channels) or stems.shape[-1] < 1:
            raise AudioError(
                f"WaveGANRemixer expects stems shaped (batch, {self.sources}, {self.channels}, time), got "
                f"{tuple(stems.shape)}"
            )
        mix = self._unet(stems.flatten(1, 2))
        return mix + stems.float().sum(dim=1) if self.sum_skip else mix


class WaveGANDiscriminator(nn.Module):
    """WaveGAN discriminator: ``forward(stems (B, S, C, T), mix (B, C, T)) -> logits (B,)``.

    Stride-4 kernel-25 convolutions with leaky ReLU (0.2) and no normalisation, phase shuffle after every
    convolution but the last (training mode only), then a mean over time (so any length works) and a linear
    layer. Default configuration (4 stems, stereo): 4,361,505 parameters.

    Conditional by default (it judges stems *given* the mix they came from, the two concatenated along
    channels); ``conditional=False`` judges the stems alone, ``forward(stems)``, which unpaired (cycle) training
    needs: there the stems have no mix of their own. With ``sources=1`` it judges mixes, passed as ``(B, 1, C, T)``.

    Args:
        sources: number of stems ``S`` it judges.
        channels: audio channels.
        widths: output channels of the convolutions.
        kernel_size: kernel (25 in WaveGAN), ``>= stride``.
        stride: stride (4 in WaveGAN).
        shuffle: phase-shuffle radius in samples (2 in WaveGAN; 0 disables).
        conditional: also take the mix (``True``) or judge the stems alone (``False``).
    """

    def __init__(
        self,
        sources: int = 4,
        channels: int = 2,
        widths: Sequence[int] = (32, 64, 128, 256, 512),
        kernel_size: int = 25,
        stride: int = 4,
        shuffle: int = 2,
        conditional: bool = True,
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
        self.conditional = conditional
        self.convs = nn.ModuleList()
        in_ch = (sources + int(conditional)) * channels
        for width in widths:
            self.convs.append(nn.Conv1d(in_ch, width, kernel_size, stride, padding))
            in_ch = width
        self.head = nn.Linear(in_ch, 1)

    def forward(
        self, stems: Tensor, mix: Optional[Tensor] = None, generator: Optional[torch.Generator] = None
    ) -> Tensor:
        """Args:
            stems: real or generated stems ``(batch, sources, channels, time)``.
            mix: the mix they come from, ``(batch, channels, time)`` (conditional discriminators only).
            generator: source of the phase-shuffle shifts (default: torch's global RNG).

        Returns:
            Logits ``(batch,)``, float32 (higher: judged real).
        """
        expected = (self.sources, self.channels)
        if stems.dim() != 4 or tuple(stems.shape[1:3]) != expected:
            raise ValueError(
                f"WaveGANDiscriminator expects stems (batch, {self.sources}, {self.channels}, time), "
                f"got {tuple(stems.shape)}"
            )
        if self.conditional:
            if mix is None or mix.shape != stems.shape[:1] + stems.shape[2:]:
                raise ValueError(
                    f"this conditional WaveGANDiscriminator expects the mix (batch, {self.channels}, time) of stems "
                    f"{tuple(stems.shape)}, got {None if mix is None else tuple(mix.shape)}"
                )
            h = torch.cat([stems.flatten(1, 2), mix.to(stems.dtype)], dim=1)
        else:
            h = stems.flatten(1, 2)
        for index, conv in enumerate(self.convs):
            h = F.leaky_relu(conv(h), 0.2)
            if self.training and self.shuffle and index < len(self.convs) - 1:
                h = phase_shuffle(h, self.shuffle, generator)
        return self.head(h.mean(dim=-1)).squeeze(-1).float()
