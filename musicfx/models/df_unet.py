"""df-UNet: a full waveform U-Net over all microphone tracks with dilated filters.

Rajesh R & Padmanabhan Rajan's interference-reduction models (WASPAA 2023 and follow-ups; code at
github.com/its-rajesh). The WASPAA paper itself presents the CAEs and the t-UNet; the df-UNet appears in the
results table of github.com/its-rajesh/Audio-Bleeding-Removal (median SDR 11.54 dB overall, the best
non-oracle model) and is the backbone of the authors' later GIRNet, whose architecture figure is named
``dfUNetGE.png`` (df-UNet + graph encoder). This is a re-implementation in PyTorch; no code is copied.

What the authors' code fixes (GIRNet ``GAT.py`` and ``Audio-Bleeding-Removal/ChebGCN/iwaveunnet_ge.py``,
Keras; confirmed):
    * **Input and output.** The raw waveforms of the ``M`` tracks as one ``(M, time)`` image, the ``M`` clean
      waveforms out (no STFT, no phase to estimate), MSE loss, Adam; 22.05 kHz, 4 tracks.
    * **Encoder.** Four levels of two 4x4 convolutions (16, 32, 64, 128 filters) with **dilation rates 1, 2,
      4 and 16**, batch norm, LeakyReLU(0.3), max-pooling by 2 along time only, dropout 0.1; a 256-filter
      bottleneck.
    * **Decoder.** Transposed convolutions up-sampling time by 2, concatenated skips, two convolutions,
      LeakyReLU(0.3).

What "df" abbreviates is not spelled out anywhere we could read (the paper PDFs were not readable here);
the dilated filters are what set this U-Net apart from the authors' earlier ones, and the README row that
is now "f-UNet" was earlier called "S-iWaveUnet", so "f" may mean the *full* (encoder-decoder) U-Net as
opposed to the *truncated* t-UNet. Treat the expansion as unconfirmed.

What is changed here, and why:
    * **Tracks as a set.** The 4x4 kernels of the original mix neighbouring rows of the image, so each track
      sees the others through zero-padded, order-specific weights tied to four tracks (a dilation of 16
      across four rows only ever reaches padding). Here every layer is a :class:`TrackSetConv1d`: a dilated
      1-D convolution of each track (shared weights) plus one of the mean over the tracks, broadcast back.
      Every track sees all the others at every layer, the same weights serve any ``M``, and permuting the
      input tracks permutes the outputs.
    * **Odd kernels** (5, centred, ``padding = dilation * 2``) instead of 4, so "same" padding is symmetric.
    * **Skips before pooling** and a final 1x1 convolution, the usual U-Net layout, instead of skips after
      pooling and a last stride-2 transposed convolution with a LeakyReLU on the waveform.
    * **Residual output.** The network predicts a correction added to each (level-normalised) track; its last
      layer starts at zero, so the untrained model passes the tracks through, which is already close to
      the answer when the bleed is weaker than the direct sound.
    * **Level.** The tracks are divided by their joint RMS before the network and the output multiplied
      back (one gain for all tracks keeps their relative levels); the model is scale-equivariant in eval mode.
    * **Any length.** Time is zero-padded to a multiple of ``2 ** len(widths)`` and cropped back.

Size: :class:`DFUNet`.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.errors import AudioError

__all__ = ["DFUNet", "TrackSetConv1d"]


class TrackSetConv1d(nn.Module):
    """A 1-D convolution over time of every track, plus one of the track mean, broadcast to every track.

    ``y_m = conv_own(x_m) + conv_all(mean_k x_k)``: equivariant to permuting the tracks, any number of them.

    Args:
        in_channels: feature channels in.
        out_channels: feature channels out.
        kernel_size: odd kernel along time.
        dilation: dilation along time.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        padding = dilation * (kernel_size // 2)
        self.own = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation)
        self.all = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)

    def forward(self, x: Tensor, tracks: int) -> Tensor:
        """Args:
            x: ``(batch * tracks, in_channels, time)``, the tracks of an example contiguous.
            tracks: tracks per example.

        Returns:
            ``(batch * tracks, out_channels, time)``.
        """
        mean = x.view(-1, tracks, x.shape[1], x.shape[2]).mean(dim=1)
        shared = self.all(mean)
        own = self.own(x)
        return (own.view(-1, tracks, *own.shape[1:]) + shared.unsqueeze(1)).view_as(own)


class _DoubleConv(nn.Module):
    """Two :class:`TrackSetConv1d`, each followed by batch norm and a LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, slope: float) -> None:
        super().__init__()
        self.conv1 = TrackSetConv1d(in_channels, out_channels, kernel_size, dilation)
        self.norm1 = nn.BatchNorm1d(out_channels)
        self.conv2 = TrackSetConv1d(out_channels, out_channels, kernel_size, dilation)
        self.norm2 = nn.BatchNorm1d(out_channels)
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: Tensor, tracks: int) -> Tensor:
        x = self.act(self.norm1(self.conv1(x, tracks)))
        return self.act(self.norm2(self.conv2(x, tracks)))


class DFUNet(nn.Module):
    """Waveform U-Net with dilated filters over all microphone tracks (see the module docstring).

    Default configuration: 2,052,833 parameters (any number of tracks: no weight depends on it).

    Args:
        num_tracks: microphone tracks ``M`` in and estimated clean tracks out.
        widths: channels of the encoder levels, shallowest first; each level halves the time resolution.
        bottleneck_width: channels of the bottleneck.
        dilations: dilation of the two convolutions of each encoder level (and of the matching decoder
            level); one per entry of ``widths``.
        kernel_size: odd kernel along time.
        dropout: dropout after each down-sampling.
        negative_slope: slope of the LeakyReLUs.
        eps: floor of the RMS used to normalise the input level.
    """

    def __init__(
        self,
        num_tracks: int = 4,
        widths: Sequence[int] = (16, 32, 64, 128),
        bottleneck_width: int = 256,
        dilations: Sequence[int] = (1, 2, 4, 16),
        kernel_size: int = 5,
        dropout: float = 0.1,
        negative_slope: float = 0.3,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_tracks < 1:
            raise ValueError(f"num_tracks must be >= 1, got {num_tracks}")
        if len(widths) < 1 or len(dilations) != len(widths):
            raise ValueError(f"need one dilation per level, got widths={widths}, dilations={dilations}")
        self.num_tracks = num_tracks
        self.widths = tuple(int(w) for w in widths)
        self.eps = eps
        levels = len(self.widths)
        inputs = (1,) + self.widths[:-1]
        self.encoders = nn.ModuleList(
            _DoubleConv(inputs[i], self.widths[i], kernel_size, dilations[i], negative_slope) for i in range(levels)
        )
        self.bottleneck = _DoubleConv(self.widths[-1], bottleneck_width, kernel_size, 1, negative_slope)
        uppers = self.widths[1:] + (bottleneck_width,)
        self.ups = nn.ModuleList(nn.ConvTranspose1d(uppers[i], self.widths[i], 2, stride=2) for i in range(levels))
        self.decoders = nn.ModuleList(
            _DoubleConv(2 * self.widths[i], self.widths[i], kernel_size, dilations[i], negative_slope)
            for i in range(levels)
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Conv1d(self.widths[0], 1, 1)
        # Zero correction at initialisation: the untrained model passes the tracks through.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def multiple(self) -> int:
        """Lengths are padded internally to a multiple of this."""
        return 2 ** len(self.widths)

    def _check(self, mics: Tensor) -> None:
        if mics.dim() != 3 or mics.shape[1] != self.num_tracks:
            raise AudioError(
                f"DFUNet expects microphone tracks shaped (batch, {self.num_tracks}, time), got "
                f"{tuple(mics.shape)}; build the model with num_tracks equal to the number of tracks"
            )
        if mics.shape[-1] < 1:
            raise AudioError("DFUNet got empty audio (0 samples)")

    def _network(self, x: Tensor, tracks: int) -> Tensor:
        """The U-Net on ``(batch * tracks, 1, padded_time)``; returns the correction, same shape."""
        skips: List[Tensor] = []
        for encoder in self.encoders:
            x = encoder(x, tracks)
            skips.append(x)
            x = self.dropout(F.max_pool1d(x, 2))
        x = self.bottleneck(x, tracks)
        for i in reversed(range(len(self.encoders))):
            x = self.decoders[i](torch.cat([self.ups[i](x), skips[i]], dim=1), tracks)
        return self.out(x)

    def forward_train(self, mics: Tensor) -> Dict[str, Tensor]:
        """The same as :meth:`forward`, as a dictionary like the other debleed models.

        Args:
            mics: ``(batch, num_tracks, time)``, any length.

        Returns:
            ``{"estimate": (batch, num_tracks, time)}``, float32.
        """
        return {"estimate": self.forward(mics)}

    def forward(self, mics: Tensor) -> Tensor:
        """Args:
            mics: microphone tracks ``(batch, num_tracks, time)``, any length.

        Returns:
            The estimated clean tracks ``(batch, num_tracks, time)``, float32.
        """
        self._check(mics)
        batch, tracks, length = mics.shape
        with torch.autocast(device_type=mics.device.type, enabled=False):
            x = mics.float()
            scale = x.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(self.eps)
            x = F.pad(x / scale, (0, (-length) % self.multiple))
        correction = self._network(x.reshape(batch * tracks, 1, x.shape[-1]), tracks)
        with torch.autocast(device_type=mics.device.type, enabled=False):
            estimate = x + correction.float().view(batch, tracks, -1)
            return estimate[..., :length] * scale
