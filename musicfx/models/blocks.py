"""Layers shared by the models: efficient channel attention, residual conv blocks, supervised attention.

Every layer here is a plain ``nn.Module`` that works on feature maps shaped ``(batch, channels, *spatial)``
(``ECA``) or ``(batch, channels, height, width)`` (the 2-D blocks), so a waveform model can use the
attention on ``(batch, channels, time)`` and a spectrogram model on ``(batch, channels, freq, frames)``.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from musicfx.errors import AudioError

__all__ = [
    "eca_kernel_size", "ECA", "MaskingSeparator", "ResidualECABlock2d", "SupervisedAttention2d", "TrackDebleeder",
    "check_mix", "check_tracks", "declare_names",
]


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """Adaptive kernel size of ECA: ``k = |log2(C) / gamma + b / gamma|`` made odd.

    Follows Wang et al. (CVPR 2020): truncate to an integer, then step up to the next odd number when even,
    so the 1-D convolution across channels stays centred. ``C = 32 -> 3``, ``128 -> 5``, ``2048 -> 7``.

    Args:
        channels: number of feature channels ``C`` (>= 1).
        gamma: slope of the channel-to-kernel mapping.
        b: offset of the mapping.

    Returns:
        The odd kernel size (>= 1).
    """
    if channels < 1:
        raise ValueError(f"ECA needs at least one channel, got {channels}")
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 == 1 else t + 1


class ECA(nn.Module):
    """Efficient Channel Attention: global average pooling, a 1-D conv across channels, a sigmoid gate.

    Unlike squeeze-excitation there is no bottleneck MLP: each channel's weight depends only on its ``k``
    neighbours, which costs ``k`` parameters and avoids the dimensionality reduction that ECA's authors
    found harmful.

    Args:
        channels: number of feature channels ``C``.
        gamma: ``gamma`` of :func:`eca_kernel_size`.
        b: ``b`` of :func:`eca_kernel_size`.
    """

    def __init__(self, channels: int, gamma: float = 2.0, b: float = 1.0) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = eca_kernel_size(channels, gamma, b)
        self.conv = nn.Conv1d(1, 1, self.kernel_size, padding=self.kernel_size // 2, bias=False)

    def attention(self, x: Tensor) -> Tensor:
        """The per-channel gate.

        Args:
            x: features ``(batch, channels, *spatial)``.

        Returns:
            Gate in ``(0, 1)``, shape ``(batch, channels)``.
        """
        pooled = x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x
        return torch.sigmoid(self.conv(pooled.unsqueeze(1)).squeeze(1))

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: features ``(batch, channels, *spatial)``.

        Returns:
            ``x`` with each channel scaled by its gate, same shape.
        """
        if x.shape[1] != self.channels:
            raise ValueError(f"ECA built for {self.channels} channels got input of shape {tuple(x.shape)}")
        gate = self.attention(x)
        return x * gate.view(*gate.shape, *([1] * (x.dim() - 2)))


class ResidualECABlock2d(nn.Module):
    """Two 3x3 convolutions with ELU, channel attention on the residual branch, identity shortcut.

    ECA sits on the residual branch before the addition (as in ECA-ResNet), so the attention reweights
    what the block adds to the features rather than the features themselves.

    Args:
        channels: feature channels (input = output).
        eca_gamma: ``gamma`` of the attention's kernel size.
        eca_b: ``b`` of the attention's kernel size.
    """

    def __init__(self, channels: int, eca_gamma: float = 2.0, eca_b: float = 1.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.eca = ECA(channels, eca_gamma, eca_b)
        self.act = nn.ELU()

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(batch, channels, height, width)``.

        Returns:
            Same shape.
        """
        y = self.conv2(self.act(self.conv1(x)))
        return self.act(x + self.eca(y))


class SupervisedAttention2d(nn.Module):
    """Supervised Attention Module (Zamir et al., MPRNet, CVPR 2021) on 2-D feature maps.

    From the features of a first stage it makes an intermediate restored estimate (a residual on the
    degraded input, so the loss can supervise it), derives a per-pixel, per-channel attention map from that
    estimate and uses it to gate the features handed to the next stage: only what helped the estimate is
    passed on.

    Args:
        features: channels of the incoming feature maps.
        image_channels: channels of the degraded input and of the estimate.
        kernel_size: kernel of the three convolutions.
    """

    def __init__(self, features: int, image_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.to_features = nn.Conv2d(features, features, kernel_size, padding=pad)
        self.to_image = nn.Conv2d(features, image_channels, kernel_size, padding=pad)
        self.to_attention = nn.Conv2d(image_channels, features, kernel_size, padding=pad)

    def forward(self, features: Tensor, degraded: Tensor) -> Tuple[Tensor, Tensor]:
        """Args:
            features: first-stage features ``(batch, features, height, width)``.
            degraded: the degraded input ``(batch, image_channels, height, width)``.

        Returns:
            ``(gated_features, estimate)``: features for the next stage ``(batch, features, height, width)``
            and the intermediate estimate ``(batch, image_channels, height, width)``, in ``degraded``'s
            dtype or wider.
        """
        estimate = self.to_image(features) + degraded
        gate = torch.sigmoid(self.to_attention(estimate.to(features.dtype)))
        return self.to_features(features) * gate + features, estimate


def _check_input(x: Tensor, rows: int, model: str, what: str, hint: str) -> None:
    """A non-empty ``(batch, rows, time)`` input, or an AudioError naming ``model`` and both shapes."""
    if x.dim() != 3 or x.shape[1] != rows:
        raise AudioError(f"{model} expects {what} shaped (batch, {rows}, time), got {tuple(x.shape)}; {hint}")
    if x.shape[-1] < 1:
        raise AudioError(f"{model} got empty audio (0 samples)")


def check_mix(mix: Tensor, channels: int, model: str) -> None:
    """The input check every separator shares: a non-empty ``(batch, channels, time)`` mix.

    Raises:
        AudioError: naming ``model``, the expected and the actual shape.
    """
    _check_input(mix, channels, model, "a mix",
                 "convert the channels (musicfx.audio.io.convert_channels) or build the model with matching channels")


def check_tracks(mics: Tensor, num_tracks: int, model: str) -> None:
    """The input check every debleed model shares: non-empty microphone tracks ``(batch, num_tracks, time)``.

    Raises:
        AudioError: naming ``model``, the expected and the actual shape.
    """
    _check_input(mics, num_tracks, model, "microphone tracks",
                 "build the model with num_tracks equal to the number of tracks")


def declare_names(
    model: nn.Module, what: str, names: Optional[Sequence[str]], count: Optional[int], sample_rate: Optional[int],
    minimum: int = 1,
) -> int:
    """Set the names a multitrack model declares (``model.<what>``: a debleed model's ``tracks``, a mixer's
    ``stems``), how many it takes (``model.num_<what>``) and its ``sample_rate``; returns the count.

    A model declares what it needs, as a separator declares its ``sources``: the task and the datamodule read
    the names from the model (``musicfx.tasks.base.declared``). ``names=None`` declares none, so the task's own
    names apply (what checkpoints saved before models declared names hold); ``sample_rate=None`` likewise.

    Args:
        model: the model, after ``nn.Module.__init__``.
        what: ``"tracks"`` or ``"stems"``.
        names: the names, in the model's input order, or ``None``.
        count: how many the model takes; default ``len(names)``, else 4.
        sample_rate: the rate the model works at, or ``None``.
        minimum: the fewest it can take (t-UNet's matrix needs two tracks).

    Raises:
        ValueError: empty or repeated names, a ``count`` that is not ``len(names)``, or fewer than ``minimum``.
    """
    label = type(model).__name__
    declared = None if names is None else tuple(str(name) for name in names)
    if declared is not None and (not declared or len(set(declared)) != len(declared)):
        raise ValueError(f"{label}: {what} must be distinct names, at least one, got {list(declared)}")
    if declared is not None and count is not None and int(count) != len(declared):
        raise ValueError(f"{label}: num_{what} is {count} but {what} names {len(declared)}: {list(declared)}; "
                         f"leave num_{what} out")
    number = int(count) if count is not None else len(declared) if declared is not None else 4
    if number < minimum:
        raise ValueError(f"{label} needs num_{what} >= {minimum}, got {number}")
    setattr(model, what, declared)
    setattr(model, f"num_{what}", number)
    model.sample_rate = sample_rate
    return number


class MaskingSeparator:
    """What the spectrogram-masking separators share (CNN soft mask, Open-Unmix, band-split and mel-band
    RoFormer): what they declare (``sources``, ``channels``, ``sample_rate``, read by the task), the input check,
    the STFT front end and the forward pass ``mix -> STFT -> network -> resynthesis -> inverse STFT``.

    A mixin, first in the bases of an ``nn.Module`` (``class CNNSoftMask(MaskingSeparator, nn.Module)``) that
    calls :meth:`declare_format`, builds ``self.stft`` / ``self.istft``
    (:class:`~musicfx.audio.spectral.STFT`, :class:`~musicfx.audio.spectral.ISTFT`) and implements
    :meth:`_estimate` (and :meth:`_resynthesize` when it does not simply apply masks).
    """

    sources: Tuple[str, ...]
    channels: int
    sample_rate: int
    stft: nn.Module
    istft: nn.Module

    def declare_format(self, sources: Sequence[str], channels: int, sample_rate: int) -> None:
        """Set what the model declares.

        Raises:
            ValueError: no source, or fewer than one channel.
        """
        self.sources = tuple(sources)
        if not self.sources:
            raise ValueError(f"{type(self).__name__} needs at least one source")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels
        self.sample_rate = sample_rate

    def spectrogram(self, x: Tensor) -> Tensor:
        """The model's STFT.

        Args:
            x: waveform ``(..., time)``.

        Returns:
            complex64 ``(..., n_fft // 2 + 1, 1 + time // hop_length)``.
        """
        return self.stft(x)

    def mix_spectrogram(self, mix: Tensor) -> Tensor:
        """The checked mix's STFT.

        Args:
            mix: ``(batch, channels, time)``.

        Returns:
            complex64 ``(batch, channels, n_fft // 2 + 1, frames)``.

        Raises:
            AudioError: a mix of the wrong shape or an empty one, naming the model.
        """
        check_mix(mix, self.channels, type(self).__name__)
        return self.spectrogram(mix)

    def _estimate(self, spec: Tensor) -> Any:
        """The network on a mixture STFT ``(batch, channels, freq, frames)``, under the caller's autocast;
        by default masks ``(batch, sources, channels, freq, frames)``."""
        raise NotImplementedError

    def _resynthesize(self, estimate: Any, spec: Tensor) -> Tensor:
        """The sources' STFTs ``(batch, sources, channels, freq, frames)`` from :meth:`_estimate`'s output, in
        full precision; by default the masks times the mixture STFT."""
        return estimate * spec.unsqueeze(1)

    def forward(self, mix: Tensor) -> Tensor:
        """Separate the mix into all stems.

        Args:
            mix: ``(batch, channels, time)`` at ``sample_rate``.

        Returns:
            ``(batch, sources, channels, time)`` float32.
        """
        spec = self.mix_spectrogram(mix)
        estimate = self._estimate(spec)
        with torch.autocast(device_type=mix.device.type, enabled=False):
            return self.istft(self._resynthesize(estimate, spec), mix.shape[-1])


class TrackDebleeder:
    """What the debleed models share (t-UNet, f-UNet, df-UNet, DI-CAE and the authors' variants): the tracks
    and sample rate they declare (resolved by :func:`declare_names`, read by the task), the input check, and a
    forward pass that is :meth:`forward_train`'s estimate.

    A mixin, first in the bases of an ``nn.Module`` that calls ``declare_names(self, "tracks", ...)`` and
    implements ``forward_train(mics) -> {"estimate": ..., ...}`` or overrides :meth:`forward`. (No stub of
    ``forward_train`` here: the task looks the method up to decide whether the model has one.)
    """

    tracks: Optional[Tuple[str, ...]]
    num_tracks: int
    sample_rate: Optional[int]

    def _check(self, mics: Tensor) -> None:
        check_tracks(mics, self.num_tracks, type(self).__name__)

    def forward(self, mics: Tensor) -> Tensor:
        """Args:
            mics: microphone tracks ``(batch, num_tracks, time)``, any length.

        Returns:
            The estimated clean tracks ``(batch, num_tracks, time)``, float32.
        """
        return self.forward_train(mics)["estimate"]  # type: ignore[attr-defined]
