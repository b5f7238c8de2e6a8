"""The debleed models as their authors made them (``variant="paper"``), beside musicfx's redesigns.

Rajesh R & Padmanabhan Rajan, "Neural Networks for Interference Reduction in Multi-Track Recordings",
WASPAA 2023, and the same authors' follow-up code. Re-implemented in PyTorch from reading the authors'
Keras code (no code copied):

* t-UNet: github.com/its-rajesh/IRMR ``tUNet/train.py`` (model, loss, optimizer) and ``tUNet/getSDR.py``
  (how the matrix is used).
* DI-CAE: IRMR ``CAE/train.py``, ``CAE/DataGen.py`` and ``CAE/DynamicInput.py`` (one frame per group,
  kernels 2x1), and github.com/its-rajesh/Audio-Bleeding-Removal ``DI_Bleed/DI_BleedArchs_Separate/*/train.py``
  (three frames per group, kernels 2x2), one model per stem.
* f-UNet: Audio-Bleeding-Removal ``UNet/MusDBUNet.py`` and ``UNet/DataLoadMUSDB.py`` (the spectrogram U-Net).
* df-UNet: the encoder, bottleneck and decoder of Audio-Bleeding-Removal ``ChebGCN/iwaveunnet_ge.py`` and
  github.com/its-rajesh/GIRNet ``GAT.py`` (dilated 4x4 convolutions over the ``(tracks, time)`` waveform image)
  without the graph layer that GIRNet adds in the bottleneck.

Each model's ``forward(mics (B, M, T)) -> clean tracks (B, M, T)`` serves the task's validation and inference
like any debleed model. Training uses the paper's loss *in the paper's domain*: a model that defines
``native_target(mics, targets)`` returns ``{"estimate", "native"}`` from ``forward_train`` and
:class:`~musicfx.tasks.debleed.DebleedTask` applies its ``loss`` (the paper's MSE, ``torch.nn.MSELoss``) to
``(native, native_target(mics, targets))``: the mixing matrix for t-UNet, magnitude spectrograms for f-UNet,
the dynamic-input windows of magnitudes for DI-CAE; df-UNet's native domain is the waveform itself.

Where the authors' code is broken or silent, the choice made here is stated in each class. Every such
choice is the smallest one that makes the model run and train; nothing else is changed. The redesigns
(:mod:`musicfx.models.t_unet`, ``f_unet``, ``df_unet``, ``di_cae``) say what they change and why;
``docs/debleed.md`` compares both variants on the same bench.

Pick a variant by class (``class_path: musicfx.models.debleed_paper.TUNetPaper`` in a recipe) or with
:func:`debleed_model` (``debleed_model("t_unet", variant="paper")``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.audio.spectral import istft, magnitude, stft
from musicfx.errors import AudioError
from musicfx.models.blocks import TrackDebleeder, declare_names

__all__ = [
    "DFUNetPaper", "DICAEPaper", "FUNetPaper", "TUNetPaper", "VARIANTS", "debleed_model", "least_squares_mixing",
]


def least_squares_mixing(mics: Tensor, sources: Tensor) -> Tensor:
    """The least-squares mixing matrix of each example, ``X pinv(S)`` (the t-UNet's regression target).

    Args:
        mics: microphone tracks ``X`` ``(batch, tracks, time)``.
        sources: clean tracks ``S`` ``(batch, tracks, time)``.

    Returns:
        ``A`` ``(batch, tracks, tracks)`` float32 minimising ``||X - A S||``; a silent source gives a zero column.
    """
    with torch.autocast(device_type=mics.device.type, enabled=False):
        x, s = mics.double(), sources.double()
        # X pinv(S) = X S^T pinv(S S^T) for a wide S: a (tracks x tracks) pseudo-inverse instead of (time x tracks).
        gram = s @ s.transpose(1, 2)
        return ((x @ s.transpose(1, 2)) @ torch.linalg.pinv(gram, hermitian=True)).float()


# ----------------------------------------------------------------------------------------------- t-UNet
class TUNetPaper(TrackDebleeder, nn.Module):
    """The authors' t-UNet: a truncated U-Net that regresses the mixing matrix ``A``; sources ``A^-1 x``.

    As in IRMR ``tUNet/train.py``: the ``(tracks, time)`` waveform image (no normalisation) goes through five
    convolutions with kernels one track high and ``num_tracks`` samples wide (16, 32, 64, 128, 512 filters,
    ReLU, no padding), each followed by max-pooling by 9 along time; the flattened maps feed dense layers
    512-128-64-32-``M*M``, all ReLU (so ``A >= 0``), reshaped to ``A``. The loss is the MSE between ``A`` and
    the least-squares matrix ``X pinv(S)`` of the clip (:meth:`native_target`); Adam, lr 0.01, batch 64,
    600 epochs, 10 s clips at 22.05 kHz (220,500 samples), 4 tracks.

    Choices where the code is silent or cannot run as it is:
        * The dense layers need a fixed input length (``length``). Shorter inputs are zero-padded to it (a
          clip's matrix does not depend on its length); longer ones are an error: run the model through
          :meth:`musicfx.tasks.debleed.DebleedTask.debleed`, which chunks at the model's 10 s.
        * The sources are ``pinv(A) x`` instead of ``inv(A) x``: the same for an invertible ``A``, defined
          for the all-zero (ReLU) matrices an untrained model outputs.

    Default configuration: 3,528,736 parameters.

    Args:
        num_tracks: tracks ``M``.
        tracks, sample_rate: what the model declares to the task and the data (``None``: nothing).
        length: samples per clip (the fixed input size of the dense layers).
        widths: filters of the five convolutions.
        kernel_size: convolution width along time (the authors use ``num_tracks``); default ``num_tracks``.
        pool: max-pooling factor along time.
        dense: widths of the hidden dense layers.
    """

    def __init__(
        self,
        num_tracks: Optional[int] = None,
        length: int = 220500,
        widths: Sequence[int] = (16, 32, 64, 128, 512),
        kernel_size: Optional[int] = None,
        pool: int = 9,
        dense: Sequence[int] = (512, 128, 64, 32),
        tracks: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        super().__init__()
        num_tracks = declare_names(self, "tracks", tracks, num_tracks, sample_rate, minimum=2)  # bleed needs several tracks
        kernel = num_tracks if kernel_size is None else int(kernel_size)
        if kernel < 1 or pool < 1 or not widths:
            raise ValueError(f"need kernel_size >= 1, pool >= 1 and at least one level, got {kernel}, {pool}, {widths}")
        self.length = int(length)
        channels = (1,) + tuple(int(w) for w in widths)
        size = self.length
        for _ in widths:
            size = (size - kernel + 1) // pool
            if size < 1:
                raise ValueError(f"length {length} is too short for {len(widths)} levels of kernel {kernel} and pool {pool}")
        self.convs = nn.ModuleList(nn.Conv2d(channels[i], channels[i + 1], (1, kernel)) for i in range(len(widths)))
        self.pool = pool
        features = [channels[-1] * num_tracks * size] + [int(d) for d in dense]
        self.dense = nn.ModuleList(nn.Linear(features[i], features[i + 1]) for i in range(len(dense)))
        self.out = nn.Linear(features[-1], num_tracks * num_tracks)

    def mixing_matrix(self, mics: Tensor) -> Tensor:
        """Args:
            mics: ``(batch, num_tracks, time)``, ``time <= length``.

        Returns:
            ``A`` ``(batch, num_tracks, num_tracks)``, entries ``>= 0``.
        """
        self._check(mics)
        if mics.shape[-1] > self.length:
            raise AudioError(
                f"TUNetPaper takes at most {self.length} samples per call (its dense layers have a fixed size), got "
                f"{mics.shape[-1]}; run long recordings through DebleedTask.debleed, which chunks them"
            )
        h = F.pad(mics, (0, self.length - mics.shape[-1])).unsqueeze(1)  # (B, 1, M, length)
        for conv in self.convs:
            h = F.max_pool2d(F.relu(conv(h)), (1, self.pool))
        h = h.flatten(1)
        for layer in self.dense:
            h = F.relu(layer(h))
        return F.relu(self.out(h)).view(-1, self.num_tracks, self.num_tracks)

    def native_target(self, mics: Tensor, targets: Tensor) -> Tensor:
        """The regression target: ``X pinv(S)`` ``(batch, M, M)``."""
        return least_squares_mixing(mics, targets)

    def forward_train(self, mics: Tensor) -> Dict[str, Tensor]:
        """Returns ``{"estimate": (B, M, T), "native": A (B, M, M), "mixing_matrix": A}``."""
        matrix = self.mixing_matrix(mics)
        with torch.autocast(device_type=mics.device.type, enabled=False):
            estimate = torch.linalg.pinv(matrix.float()) @ mics.float()
        return {"estimate": estimate, "native": matrix, "mixing_matrix": matrix}

    def forward(self, mics: Tensor) -> Tensor:
        """Args:
            mics: ``(batch, num_tracks, time)``, ``time <= length``.

        Returns:
            ``pinv(A) mics`` ``(batch, num_tracks, time)``, float32.
        """
        return self.forward_train(mics)["estimate"]


# ----------------------------------------------------------------------------------------------- f-UNet
class _PaperDoubleConv2d(nn.Sequential):
    """Two 3x3 'same' convolutions with ReLU (Keras ``Conv3D`` kernels one track deep = 2-D per track)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU(),
        )


class FUNetPaper(TrackDebleeder, nn.Module):
    """The authors' spectrogram U-Net (the "f-UNet" row of their results), each track on its own.

    As in Audio-Bleeding-Removal ``UNet/MusDBUNet.py``: a ``(tracks, bins, frames)`` STFT volume, librosa's
    ``n_fft`` 2047 (1024 bins) and default hop (``2047 // 4 = 511``), 22.05 kHz; four levels of two 3x3
    convolutions (16, 32, 64, 128 filters, ReLU, applied to every track with the same weights: ``Conv3D``
    kernels one track deep), 2x2 max-pooling and dropout 0.3, a 256-filter bottleneck, 3x3 stride-2 transposed
    convolutions, concatenated skips, dropout 0.3, two convolutions; a 1x1 output convolution; MSE on the
    magnitudes (:meth:`native_target`); Adam (Keras defaults, lr 1e-3), batch 2, 100 epochs.

    Choices where the code is silent or cannot run as it is:
        * **Input: magnitudes.** The script trains on the saved complex STFTs, which Keras casts to float
          (keeping the real part); the authors' other spectrogram models take ``np.abs`` first. Magnitudes here.
        * **Linear output.** The script's output layer is a softmax over a single channel, which is 1
          everywhere and cannot learn; the authors' later version of the same U-Net ends in a linear 1x1
          convolution, as here.
        * **Phase.** Not in the script: the estimate is the output magnitude (negative values clipped to 0)
          on the microphone's phase, as the authors resynthesise their autoencoder's magnitudes.
        * Bins and frames are zero-padded to a multiple of 16 and cropped back, so any length works.

    Default configuration: 2,158,417 parameters.

    Args:
        num_tracks: tracks ``M``.
        tracks, sample_rate: what the model declares to the task and the data (``None``: nothing).
        n_fft, hop_length: STFT size and hop (samples).
        widths: filters of the four levels.
        bottleneck: filters of the bottleneck.
        dropout: dropout rate.
    """

    def __init__(
        self,
        num_tracks: Optional[int] = None,
        n_fft: int = 2047,
        hop_length: int = 511,
        widths: Sequence[int] = (16, 32, 64, 128),
        bottleneck: int = 256,
        dropout: float = 0.3,
        tracks: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        super().__init__()
        declare_names(self, "tracks", tracks, num_tracks, sample_rate)
        if not widths:
            raise ValueError("FUNetPaper needs at least one level")
        if hop_length < 1 or hop_length > n_fft:
            raise ValueError(f"hop_length must be in [1, n_fft={n_fft}], got {hop_length}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.widths = tuple(int(w) for w in widths)
        inputs = (1,) + self.widths[:-1]
        self.encoders = nn.ModuleList(_PaperDoubleConv2d(i, o) for i, o in zip(inputs, self.widths))
        self.bottleneck = _PaperDoubleConv2d(self.widths[-1], bottleneck)
        uppers = self.widths[1:] + (int(bottleneck),)
        # Keras 'same' transposed convolution, kernel 3, stride 2: exactly twice the size.
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(u, w, 3, stride=2, padding=1, output_padding=1) for u, w in zip(uppers, self.widths)
        )
        self.decoders = nn.ModuleList(_PaperDoubleConv2d(2 * w, w) for w in self.widths)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Conv2d(self.widths[0], 1, 1)

    @property
    def multiple(self) -> int:
        return 2 ** len(self.widths)

    def _spectra(self, x: Tensor) -> Tensor:
        return stft(x.float(), self.n_fft, self.hop_length)

    def native_target(self, mics: Tensor, targets: Tensor) -> Tensor:
        """The clean magnitudes ``(batch, M, bins, frames)``."""
        with torch.autocast(device_type=targets.device.type, enabled=False):
            return magnitude(self._spectra(targets))

    def forward_train(self, mics: Tensor) -> Dict[str, Tensor]:
        """Returns ``{"estimate": (B, M, T), "native": magnitudes (B, M, bins, frames)}``."""
        self._check(mics)
        batch, tracks, length = mics.shape
        with torch.autocast(device_type=mics.device.type, enabled=False):
            spec = self._spectra(mics)
            bins, frames = spec.shape[-2:]
            x = magnitude(spec).reshape(batch * tracks, 1, bins, frames)
            x = F.pad(x, (0, (-frames) % self.multiple, 0, (-bins) % self.multiple))
        skips: List[Tensor] = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.dropout(F.max_pool2d(x, 2))
        x = self.bottleneck(x)
        for i in reversed(range(len(self.encoders))):
            x = self.dropout(torch.cat([self.ups[i](x), skips[i]], dim=1))
            x = self.decoders[i](x)
        with torch.autocast(device_type=mics.device.type, enabled=False):
            mag = self.out(x).float()[..., :bins, :frames].reshape(batch, tracks, bins, frames)
            phase = torch.polar(torch.ones_like(mag), torch.angle(spec))
            estimate = istft(mag.clamp_min(0.0) * phase, self.n_fft, self.hop_length, length)
        return {"estimate": estimate, "native": mag}


# ---------------------------------------------------------------------------------------------- df-UNet
def _same_pads(kernel: int, dilation: int) -> Tuple[int, int]:
    """TensorFlow's 'same' padding of a stride-1 convolution: the extra sample goes after."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


class _SameConv2d(nn.Module):
    """A stride-1 2-D convolution with TensorFlow's 'same' padding (asymmetric for even kernels)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 4, dilation: int = 1) -> None:
        super().__init__()
        low, high = _same_pads(kernel, dilation)
        self.pads = (low, high, low, high)  # (time before, after, tracks before, after)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.pads))


class _SameConvTranspose2d(nn.Module):
    """A transposed convolution with TensorFlow's 'same' output size: ``(H, W) -> (H * sh, W * sw)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: Tuple[int, int]) -> None:
        super().__init__()
        self.stride = stride
        self.kernel = kernel
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2] * self.stride[0], x.shape[-1] * self.stride[1]
        top, left = (self.kernel - self.stride[0]) // 2, (self.kernel - self.stride[1]) // 2
        return self.conv(x)[..., top:top + height, left:left + width]


class DFUNetPaper(TrackDebleeder, nn.Module):
    """The authors' df-UNet: a waveform U-Net with dilated 4x4 filters over the ``(tracks, time)`` image.

    As in Audio-Bleeding-Removal ``ChebGCN/iwaveunnet_ge.py`` / GIRNet ``GAT.py`` without the graph layer: the
    raw waveforms of the tracks as one ``(M, time)`` image (22.05 kHz, 220,448 samples = 10 s cut to a multiple
    of 16), four encoder levels of two 4x4 'same' convolutions (16, 32, 64, 128 filters, dilation 1, 2, 4, 16
    in both directions, no activation between them), batch norm, LeakyReLU(0.3), max-pooling by 2 along time,
    dropout 0.1; a bottleneck of two 256-filter convolutions, batch norm, LeakyReLU; four decoder levels of a
    4x4 transposed convolution (stride 1 at the deepest level, 2 along time after), batch norm, LeakyReLU,
    concatenation with the encoder level's pooled output, two convolutions and a LeakyReLU (128, 64, 32, 32
    filters); a last stride-2 transposed convolution to one channel and a LeakyReLU(0.3) give the waveforms.
    MSE on the waveforms; Adam (Keras defaults, lr 1e-3), batch 1, 100 epochs.

    Choices where the code is silent: time is zero-padded to a multiple of 16 and cropped back, so any length
    works (the authors cut every clip to 220,448 samples); the graph layer of GIRNet is left out (the df-UNet
    row of the authors' table is the U-Net alone).

    Default configuration: 3,858,321 parameters.

    Args:
        num_tracks: tracks ``M`` (rows of the image; the weights do not depend on it).
        tracks, sample_rate: what the model declares to the task and the data (``None``: nothing).
        widths: filters of the four encoder levels.
        dilations: dilation of each encoder level.
        bottleneck: filters of the bottleneck.
        decoder_widths: filters of the decoder levels' convolutions, deepest first.
        kernel_size: kernel of every convolution.
        dropout: dropout after each encoder level.
        negative_slope: slope of the LeakyReLUs.
    """

    def __init__(
        self,
        num_tracks: Optional[int] = None,
        widths: Sequence[int] = (16, 32, 64, 128),
        dilations: Sequence[int] = (1, 2, 4, 16),
        bottleneck: int = 256,
        decoder_widths: Sequence[int] = (128, 64, 32, 32),
        kernel_size: int = 4,
        dropout: float = 0.1,
        negative_slope: float = 0.3,
        tracks: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        super().__init__()
        declare_names(self, "tracks", tracks, num_tracks, sample_rate)
        widths, dilations, decoder_widths = tuple(widths), tuple(dilations), tuple(decoder_widths)
        if not widths or len(dilations) != len(widths) or len(decoder_widths) != len(widths):
            raise ValueError(
                f"widths, dilations and decoder_widths need one entry per level, got {widths}, {dilations}, {decoder_widths}"
            )
        self.levels = len(widths)
        self.act = nn.LeakyReLU(negative_slope)
        self.dropout = nn.Dropout(dropout)
        self.encoders = nn.ModuleList()
        in_ch = 1
        for width, dilation in zip(widths, dilations):
            self.encoders.append(nn.Sequential(
                _SameConv2d(in_ch, width, kernel_size, dilation), _SameConv2d(width, width, kernel_size, dilation),
                nn.BatchNorm2d(width),
            ))
            in_ch = width
        self.bottleneck = nn.Sequential(
            _SameConv2d(in_ch, bottleneck, kernel_size), _SameConv2d(bottleneck, bottleneck, kernel_size),
            nn.BatchNorm2d(bottleneck),
        )
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        in_ch = bottleneck
        for level, out_ch in enumerate(decoder_widths):
            skip = widths[self.levels - 1 - level]
            up_width = skip  # the transposed convolution has the skip's width (128, 64, 32, 16)
            stride = (1, 1) if level == 0 else (1, 2)
            self.ups.append(nn.Sequential(
                _SameConvTranspose2d(in_ch, up_width, kernel_size, stride), nn.BatchNorm2d(up_width),
            ))
            self.decoders.append(nn.Sequential(
                _SameConv2d(up_width + skip, out_ch, kernel_size), _SameConv2d(out_ch, out_ch, kernel_size),
            ))
            in_ch = out_ch
        self.out = _SameConvTranspose2d(in_ch, 1, kernel_size, (1, 2))

    @property
    def multiple(self) -> int:
        return 2 ** self.levels

    def forward(self, mics: Tensor) -> Tensor:
        """Args:
            mics: ``(batch, num_tracks, time)``, any length.

        Returns:
            The estimated clean tracks ``(batch, num_tracks, time)``.
        """
        self._check(mics)
        length = mics.shape[-1]
        h = F.pad(mics, (0, (-length) % self.multiple)).unsqueeze(1)  # (B, 1, M, T)
        skips: List[Tensor] = []
        for encoder in self.encoders:
            h = self.dropout(F.max_pool2d(self.act(encoder(h)), (1, 2)))
            skips.append(h)
        h = self.act(self.bottleneck(h))
        for level, (up, decoder) in enumerate(zip(self.ups, self.decoders)):
            h = torch.cat([self.act(up(h)), skips[self.levels - 1 - level]], dim=1)
            h = self.act(decoder(h))
        return self.act(self.out(h)).squeeze(1)[..., :length]


# ----------------------------------------------------------------------------------------------- DI-CAE
class _PaperFrameAutoencoder(nn.Module):
    """The DI-CAE autoencoder of one window ``(rows, 1, 3 * bins, group)``, same shape out."""

    def __init__(self, height: int, group: int, widths: Sequence[int], bottleneck: int) -> None:
        super().__init__()
        first, second = (int(w) for w in widths)
        kernel = (2, 2) if group > 1 else (2, 1)
        self.inner = (height - 2 * (kernel[0] - 1), group - 2 * (kernel[1] - 1))
        if min(self.inner) < 1:
            raise ValueError(f"a {height} x {group} window is too small for two {kernel} convolutions")
        self.second = second
        # Keras order: convolution with ReLU, then batch norm.
        self.encoder = nn.Sequential(
            nn.Conv2d(1, first, kernel), nn.ReLU(), nn.BatchNorm2d(first),
            nn.Conv2d(first, second, kernel), nn.ReLU(), nn.BatchNorm2d(second),
        )
        size = second * self.inner[0] * self.inner[1]
        self.squeeze = nn.Sequential(nn.Linear(size, bottleneck), nn.ReLU())
        self.expand = nn.Sequential(nn.Linear(bottleneck, size), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(second, first, kernel), nn.ReLU(), nn.BatchNorm2d(first),
            nn.ConvTranspose2d(first, 1, kernel), nn.ReLU(), nn.BatchNorm2d(1),
        )

    def forward(self, x: Tensor) -> Tensor:
        code = self.squeeze(self.encoder(x).flatten(1))
        return self.decoder(self.expand(code).view(-1, self.second, *self.inner))


class DICAEPaper(TrackDebleeder, nn.Module):
    """The authors' DI-CAE: a convolutional autoencoder per stem on "dynamic input" windows of magnitudes.

    As in IRMR ``CAE/`` and Audio-Bleeding-Removal ``DI_Bleed/DI_BleedArchs_Separate/``: each track's STFT
    magnitude (librosa defaults: ``n_fft`` 2048, 22.05 kHz; hop 512) is cut into windows of three consecutive
    groups of ``group`` frames stacked along frequency, a ``(3 * bins, group)`` image, one window per frame
    (hop one frame, no padding). Autoencoder: two convolutions (32, 64 filters; 2x2 kernels, 2x1 when
    ``group`` is 1; ReLU then batch norm), flatten, dense 100 (ReLU), dense back (ReLU), two transposed
    convolutions (32, 1 filters; ReLU then batch norm). One model per stem (``shared=False``), trained on
    MSE between the windows of the output and of the clean magnitudes (:meth:`native_target`); Adam (Keras
    defaults, lr 1e-3), batch 16, 100 epochs. Decoding (``DynamicInput.decode``) keeps, for every frame, one
    estimate: the first window's first group, then the last frame of each next window's first group, then the
    last window's second and third groups. The estimate is put on the microphone's phase.

    Choices where the code is silent: clips with fewer than ``3 * group`` frames are zero-padded at the end
    (the authors' 10 s clips never are).

    Default configuration (``n_fft`` 2048, ``group`` 3): 39,548,199 parameters per stem.

    Args:
        num_tracks: tracks ``M``.
        tracks, sample_rate: what the model declares to the task and the data (``None``: nothing).
        n_fft, hop_length: STFT size and hop (samples).
        group: frames per group (3 in ``DI_Bleed``, 1 in IRMR).
        widths: filters of the two convolutions.
        bottleneck: units of the dense bottleneck.
        shared: one autoencoder for all tracks instead of one per stem (the paper: one per stem).
    """

    def __init__(
        self,
        num_tracks: Optional[int] = None,
        n_fft: int = 2048,
        hop_length: int = 512,
        group: int = 3,
        widths: Sequence[int] = (32, 64),
        bottleneck: int = 100,
        shared: bool = False,
        tracks: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        super().__init__()
        num_tracks = declare_names(self, "tracks", tracks, num_tracks, sample_rate)
        if group < 1 or len(tuple(widths)) != 2:
            raise ValueError(f"need group >= 1 and two widths, got {group}, {widths}")
        if hop_length < 1 or hop_length > n_fft:
            raise ValueError(f"hop_length must be in [1, n_fft={n_fft}], got {hop_length}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.group = group
        self.bins = n_fft // 2 + 1
        self.shared = shared
        count = 1 if shared else num_tracks
        self.autoencoders = nn.ModuleList(
            _PaperFrameAutoencoder(3 * self.bins, group, widths, bottleneck) for _ in range(count)
        )

    def _windows(self, mag: Tensor) -> Tensor:
        """``(batch, tracks, bins, frames) -> (batch, tracks, windows, 3 * bins, group)``."""
        span = 3 * self.group
        frames = mag.shape[-1]
        mag = F.pad(mag, (0, max(0, span - frames)))
        win = mag.unfold(-1, span, 1)  # (B, M, bins, windows, span)
        batch, tracks, bins, count, _ = win.shape
        win = win.reshape(batch, tracks, bins, count, 3, self.group)
        return win.permute(0, 1, 3, 4, 2, 5).reshape(batch, tracks, count, 3 * bins, self.group)

    def _decode(self, windows: Tensor, frames: int) -> Tensor:
        """One estimate per frame (see the class): ``(B, M, W, 3 * bins, group) -> (B, M, bins, frames)``."""
        batch, tracks, count = windows.shape[:3]
        g = self.group
        f = torch.arange(frames, device=windows.device)
        w = (f - (g - 1)).clamp(0, count - 1)
        offset = f - w  # position of frame f inside window w, in [0, 3g)
        q, c = offset // g, offset % g
        grouped = windows.view(batch, tracks, count, 3, self.bins, g)
        picked = grouped[:, :, w, q, :, c]  # advanced indices first: (frames, B, M, bins)
        return picked.permute(1, 2, 3, 0)

    def native_target(self, mics: Tensor, targets: Tensor) -> Tensor:
        """The clean magnitudes' windows ``(batch, tracks, windows, 3 * bins, group)``."""
        with torch.autocast(device_type=targets.device.type, enabled=False):
            return self._windows(magnitude(stft(targets.float(), self.n_fft, self.hop_length)))

    def forward_train(self, mics: Tensor) -> Dict[str, Tensor]:
        """Returns ``{"estimate": (B, M, T), "native": windows (B, M, W, 3 * bins, group)}``."""
        self._check(mics)
        batch, tracks, length = mics.shape
        with torch.autocast(device_type=mics.device.type, enabled=False):
            spec = stft(mics.float(), self.n_fft, self.hop_length)
            frames = spec.shape[-1]
            windows = self._windows(magnitude(spec))
        count, height = windows.shape[2], windows.shape[3]
        if self.shared:
            out = self.autoencoders[0](windows.reshape(-1, 1, height, self.group))
        else:
            out = torch.stack(
                [ae(windows[:, m].reshape(-1, 1, height, self.group)).view(batch, count, height, self.group)
                 for m, ae in enumerate(self.autoencoders)], dim=1,
            )
        out = out.reshape(batch, tracks, count, height, self.group)
        with torch.autocast(device_type=mics.device.type, enabled=False):
            mag = self._decode(out.float(), max(frames, 3 * self.group))[..., :frames]
            phase = torch.polar(torch.ones_like(mag), torch.angle(spec))
            estimate = istft(mag * phase, self.n_fft, self.hop_length, length)
        return {"estimate": estimate, "native": out}


# ------------------------------------------------------------------------------------------------ factory
VARIANTS: Dict[str, Dict[str, str]] = {
    "t_unet": {"redesign": "musicfx.models.t_unet.TUNet", "paper": "musicfx.models.debleed_paper.TUNetPaper"},
    "f_unet": {"redesign": "musicfx.models.f_unet.FUNet", "paper": "musicfx.models.debleed_paper.FUNetPaper"},
    "df_unet": {"redesign": "musicfx.models.df_unet.DFUNet", "paper": "musicfx.models.debleed_paper.DFUNetPaper"},
    "di_cae": {"redesign": "musicfx.models.di_cae.DICAE", "paper": "musicfx.models.debleed_paper.DICAEPaper"},
}


def debleed_model(architecture: str, variant: str = "redesign", **kwargs: Any) -> nn.Module:
    """Build a debleed model by name and variant.

    Args:
        architecture: ``"t_unet"``, ``"f_unet"``, ``"df_unet"`` or ``"di_cae"``.
        variant: ``"redesign"`` (musicfx's, the default) or ``"paper"`` (the authors' as published).
        **kwargs: the chosen class's arguments.

    Returns:
        The model, ``mics (B, M, T) -> clean tracks (B, M, T)``.
    """
    import importlib

    if architecture not in VARIANTS:
        raise ValueError(f"unknown debleed architecture {architecture!r}; choose one of {sorted(VARIANTS)}")
    if variant not in VARIANTS[architecture]:
        raise ValueError(f"unknown variant {variant!r}; choose 'redesign' or 'paper'")
    module, _, name = VARIANTS[architecture][variant].rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)
