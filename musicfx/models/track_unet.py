"""The U-Net skeleton the f-UNet (spectrograms, 2-D) and the df-UNet (waveforms, 1-D) share.

Every layer sees the tracks of an example as a set: :class:`TrackSetConv` convolves each track with shared
weights and adds a convolution of the mean over the tracks, broadcast back. The same weights serve any number
of tracks, and permuting the input tracks permutes the outputs. The skeleton is the usual U-Net: per level two
such convolutions (batch norm, LeakyReLU), the skip taken before max-pooling by 2, a bottleneck, then
transposed convolutions up-sampling by 2, the skip concatenated and two convolutions again; a final 1x1
convolution to one map per track.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TrackSetConv", "TrackSetConv1d", "TrackSetConv2d", "TrackSetUNet"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_UP = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}
_POOL = {1: F.max_pool1d, 2: F.max_pool2d}


def _check_dims(dims: int) -> int:
    if dims not in _CONV:
        raise ValueError(f"dims must be 1 (time) or 2 (frequency and time), got {dims}")
    return dims


class TrackSetConv(nn.Module):
    """A convolution of every track's feature map plus one of the track mean, broadcast to every track.

    ``y_m = conv_own(x_m) + conv_all(mean_k x_k)``: equivariant to permuting the tracks, any number of them.

    Args:
        dims: 1 (``(..., time)`` maps) or 2 (``(..., freq, frames)`` maps).
        in_channels: feature channels in.
        out_channels: feature channels out.
        kernel_size: odd kernel along each axis; "same" padding.
        dilation: dilation along each axis.
    """

    def __init__(self, dims: int, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        conv = _CONV[_check_dims(dims)]
        padding = dilation * (kernel_size // 2)
        self.own = conv(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation)
        self.all = conv(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)

    def forward(self, x: Tensor, tracks: int) -> Tensor:
        """Args:
            x: ``(batch * tracks, in_channels, *spatial)``, the tracks of an example contiguous.
            tracks: tracks per example.

        Returns:
            ``(batch * tracks, out_channels, *spatial)``.
        """
        mean = x.view(-1, tracks, *x.shape[1:]).mean(dim=1)
        shared = self.all(mean)
        own = self.own(x)
        return (own.view(-1, tracks, *own.shape[1:]) + shared.unsqueeze(1)).view_as(own)


class TrackSetConv1d(TrackSetConv):
    """:class:`TrackSetConv` along time: ``(batch * tracks, channels, time)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, dilation: int = 1) -> None:
        super().__init__(1, in_channels, out_channels, kernel_size, dilation)


class TrackSetConv2d(TrackSetConv):
    """:class:`TrackSetConv` over frequency and time: ``(batch * tracks, channels, freq, frames)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(2, in_channels, out_channels, kernel_size)


class _DoubleConv(nn.Module):
    """Two :class:`TrackSetConv`, each followed by batch norm and a LeakyReLU."""

    def __init__(
        self, dims: int, in_channels: int, out_channels: int, kernel_size: int, dilation: int, slope: float
    ) -> None:
        super().__init__()
        self.conv1 = TrackSetConv(dims, in_channels, out_channels, kernel_size, dilation)
        self.norm1 = _NORM[dims](out_channels)
        self.conv2 = TrackSetConv(dims, out_channels, out_channels, kernel_size, dilation)
        self.norm2 = _NORM[dims](out_channels)
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: Tensor, tracks: int) -> Tensor:
        x = self.act(self.norm1(self.conv1(x, tracks)))
        return self.act(self.norm2(self.conv2(x, tracks)))


class TrackSetUNet(nn.Module):
    """U-Net of :class:`TrackSetConv` layers, one input and one output map per track.

    Models extend it (their parameters keep the names ``encoders``, ``bottleneck``, ``ups``, ``decoders``,
    ``out``) and set the output layer's initialisation.

    Args:
        dims: 1 (waveforms) or 2 (spectrograms).
        widths: channels of the levels, shallowest first; each level halves every axis.
        bottleneck_width: channels of the bottleneck.
        kernel_size: odd kernel of every convolution.
        dilations: dilation of the two convolutions of each level (encoder and matching decoder); one per
            entry of ``widths``; default: 1 everywhere. The bottleneck is not dilated.
        dropout: dropout after each down-sampling.
        skip_dropout: also drop out after each skip concatenation.
        negative_slope: slope of the LeakyReLUs.
    """

    def __init__(
        self,
        dims: int,
        widths: Sequence[int],
        bottleneck_width: int,
        kernel_size: int,
        dilations: Sequence[int] = (),
        dropout: float = 0.0,
        skip_dropout: bool = False,
        negative_slope: float = 0.3,
    ) -> None:
        super().__init__()
        self.dims = _check_dims(dims)
        self.widths = tuple(int(w) for w in widths)
        levels = len(self.widths)
        dilations = tuple(dilations) or (1,) * levels
        if levels < 1 or len(dilations) != levels:
            raise ValueError(f"need at least one level and one dilation per level, got widths={widths}, "
                             f"dilations={dilations}")
        self.skip_dropout = skip_dropout
        inputs = (1,) + self.widths[:-1]
        self.encoders = nn.ModuleList(
            _DoubleConv(dims, inputs[i], self.widths[i], kernel_size, dilations[i], negative_slope)
            for i in range(levels)
        )
        self.bottleneck = _DoubleConv(dims, self.widths[-1], bottleneck_width, kernel_size, 1, negative_slope)
        uppers = self.widths[1:] + (bottleneck_width,)
        self.ups = nn.ModuleList(_UP[dims](uppers[i], self.widths[i], 2, stride=2) for i in range(levels))
        self.decoders = nn.ModuleList(
            _DoubleConv(dims, 2 * self.widths[i], self.widths[i], kernel_size, dilations[i], negative_slope)
            for i in range(levels)
        )
        self.dropout = nn.Dropout(dropout)
        self.out = _CONV[dims](self.widths[0], 1, 1)

    @property
    def multiple(self) -> int:
        """Every axis must be a multiple of this (models pad to it)."""
        return 2 ** len(self.widths)

    def _network(self, x: Tensor, tracks: int) -> Tensor:
        """The U-Net on ``(batch * tracks, 1, *spatial)``, every axis a multiple of :attr:`multiple`; returns
        ``(batch * tracks, 1, *spatial)``."""
        pool = _POOL[self.dims]
        skips: List[Tensor] = []
        for encoder in self.encoders:
            x = encoder(x, tracks)
            skips.append(x)
            x = self.dropout(pool(x, 2))
        x = self.bottleneck(x, tracks)
        for i in reversed(range(len(self.encoders))):
            x = torch.cat([self.ups[i](x), skips[i]], dim=1)
            if self.skip_dropout:
                x = self.dropout(x)
            x = self.decoders[i](x, tracks)
        return self.out(x)
