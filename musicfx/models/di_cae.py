"""DI-CAE: a dynamic-input convolutional autoencoder that cleans each track's spectrogram frame by frame.

Rajesh R & Padmanabhan Rajan, "Neural Networks for Interference Reduction in Multi-Track Recordings",
WASPAA 2023 (code: github.com/its-rajesh/IRMR, ``CAE/``, and github.com/its-rajesh/Audio-Bleeding-Removal,
``DI_Bleed/``, Keras). The paper's first model treats interference as noise: each track is cleaned on its
own, from its time-frequency representation. This is a re-implementation in PyTorch; no code is copied.

What the authors' code fixes (confirmed):
    * **Dynamic input** (``DynamicInput.encode``): the magnitude STFT (librosa defaults: ``n_fft`` 2048, hop
      512, 22.05 kHz) is cut into windows of three consecutive groups of frames, the groups stacked along
      frequency: a ``(3 * 1025, frames_per_group)`` image per window (``frames_per_group`` 1 in IRMR, 3 in
      ``DI_Bleed``), one window per frame (hop 1). The clean magnitude is the target, arranged the same way.
    * **Autoencoder:** conv 2x1 (32 filters, ReLU, batch norm), conv 2x1 (64, ReLU, batch norm), flatten,
      dense 100 (ReLU), dense back to the flattened size (ReLU), reshape, transposed conv 2x1 (32, ReLU,
      batch norm), transposed conv 2x1 (1, ReLU, batch norm). MSE on magnitudes, Adam, batch 16-64.
    * **One model per stem** (vocals, bass, drums, other); the output magnitude is put back on the bleeding
      track's phase and inverted (``DynamicInput.decode`` keeps the first group of each window).

What is changed here, and why:
    * **Frames per group = 1** (IRMR's setting): each window is ``context`` consecutive frames
      (default 3), a ``(context * bins)``-long column, so the convolutions run along the stacked frequency
      axis as 1-D convolutions with kernel 2 — the same operation as the 2x1 kernels.
    * **Every estimate of a frame is used.** A frame appears in ``context`` windows; its estimate is the
      average of the three (the original keeps one). Windows are padded with silent frames at both ends,
      so the first and last frames get as many estimates as the others and any length works.
    * **Positive output by softplus**, not ReLU then batch norm: a magnitude cannot be negative, and a ReLU
      on the output has no gradient where it is off.
    * **Level.** Each track's magnitudes are divided by its RMS (times the window's energy, so a unit-RMS
      signal has magnitudes near 1) and the output multiplied back: the model is scale-equivariant.
    * **Shared or per-track weights.** ``shared=True`` (default) cleans every track with one autoencoder,
      which serves any instrument and any track count; ``shared=False`` builds one per track, as in the
      paper (tracks must then always come in the same order).

Size: the two dense layers hold almost all parameters, ``2 * 64 * (context * bins - 2) * bottleneck``; see
:class:`DICAE`.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.audio.spectral import ISTFT, STFT, magnitude
from musicfx.models.blocks import TrackDebleeder, declare_names

__all__ = ["DICAE", "FrameAutoencoder"]


class FrameAutoencoder(nn.Module):
    """The convolutional autoencoder of one window: ``(rows, 1, length)`` magnitudes in, same shape out.

    Args:
        length: window length, ``context * bins``.
        widths: channels of the two convolutions (kernel 2, stride 1).
        bottleneck: units of the dense bottleneck.
    """

    def __init__(self, length: int, widths: Sequence[int] = (32, 64), bottleneck: int = 100) -> None:
        super().__init__()
        if len(widths) != 2:
            raise ValueError(f"FrameAutoencoder has two convolutions; got widths={widths}")
        first, second = int(widths[0]), int(widths[1])
        self.inner = length - 2  # two valid convolutions with kernel 2
        if self.inner < 1:
            raise ValueError(f"window length {length} is too short for two convolutions with kernel 2")
        self.second = second
        self.encoder = nn.Sequential(
            nn.Conv1d(1, first, 2), nn.ReLU(), nn.BatchNorm1d(first),
            nn.Conv1d(first, second, 2), nn.ReLU(), nn.BatchNorm1d(second),
        )
        self.squeeze = nn.Sequential(nn.Linear(second * self.inner, bottleneck), nn.ReLU())
        self.expand = nn.Sequential(nn.Linear(bottleneck, second * self.inner), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(second, first, 2), nn.ReLU(), nn.BatchNorm1d(first),
            nn.ConvTranspose1d(first, 1, 2),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: normalised magnitudes ``(rows, 1, length)``.

        Returns:
            Estimated clean magnitudes ``(rows, 1, length)``, positive.
        """
        code = self.squeeze(self.encoder(x).flatten(1))
        hidden = self.expand(code).view(-1, self.second, self.inner)
        return F.softplus(self.decoder(hidden))


class DICAE(TrackDebleeder, nn.Module):
    """Dynamic-input convolutional autoencoder, each track cleaned on its own (see the module docstring).

    Default configuration (``n_fft`` 2048, 3 frames of context): 39,539,877 parameters with ``shared=True``,
    ``num_tracks`` times that with ``shared=False``.

    Args:
        num_tracks: microphone tracks ``M`` in and estimated clean tracks out.
        tracks, sample_rate: what the model declares to the task and the data (``None``: nothing).
        n_fft: STFT size (samples).
        hop_length: STFT hop (samples).
        context: consecutive frames per window.
        widths: channels of the two convolutions.
        bottleneck: units of the dense bottleneck.
        shared: one autoencoder for all tracks (``True``) or one per track, as in the paper (``False``).
        eps: floor of the RMS used to normalise each track's level.
    """

    def __init__(
        self,
        num_tracks: Optional[int] = None,
        n_fft: int = 2048,
        hop_length: int = 512,
        context: int = 3,
        widths: Sequence[int] = (32, 64),
        bottleneck: int = 100,
        shared: bool = True,
        eps: float = 1e-5,
        tracks: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        super().__init__()
        num_tracks = declare_names(self, "tracks", tracks, num_tracks, sample_rate)
        if hop_length < 1 or hop_length > n_fft:
            raise ValueError(f"hop_length must be in [1, n_fft={n_fft}], got {hop_length}")
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.context = context
        self.bins = n_fft // 2 + 1
        self.shared = shared
        self.eps = eps
        # Magnitude of a unit-RMS white signal: sqrt(sum(window^2)) for a periodic Hann window.
        self.magnitude_scale = math.sqrt(0.375 * n_fft)
        count = 1 if shared else num_tracks
        self.autoencoders = nn.ModuleList(
            FrameAutoencoder(context * self.bins, widths, bottleneck) for _ in range(count)
        )
        self.stft = STFT(n_fft, hop_length)
        self.istft = ISTFT(n_fft, hop_length)

    def _windows(self, mag: Tensor) -> Tensor:
        """``(rows, bins, frames)`` -> ``(rows, frames + context - 1, context * bins)``, silent frames padded."""
        pad = self.context - 1
        padded = F.pad(mag, (pad, pad))
        windows = padded.unfold(-1, self.context, 1)  # (rows, bins, windows, context)
        return windows.permute(0, 2, 3, 1).flatten(2)

    def _overlap_average(self, windows: Tensor, frames: int) -> Tensor:
        """Inverse of :meth:`_windows`: ``(rows, windows, context * bins)`` -> ``(rows, bins, frames)``,
        averaging the ``context`` estimates of each frame."""
        rows = windows.shape[0]
        groups = windows.view(rows, -1, self.context, self.bins)
        total = groups.new_zeros(rows, frames, self.bins)
        for g in range(self.context):
            # Window w holds frame w - (context - 1) + g in its group g.
            start = self.context - 1 - g
            total = total + groups[:, start:start + frames, g]
        return (total / self.context).transpose(1, 2)

    def _clean(self, windows: Tensor, tracks: int) -> Tensor:
        """Run the autoencoder(s) on ``(batch * tracks, windows, length)``; same shape out."""
        rows, count, length = windows.shape
        if self.shared:
            return self.autoencoders[0](windows.reshape(rows * count, 1, length)).view(rows, count, length)
        per_track = windows.view(-1, tracks, count, length)
        outputs = [
            ae(per_track[:, m].reshape(-1, 1, length)).view(-1, count, length) for m, ae in enumerate(self.autoencoders)
        ]
        return torch.stack(outputs, dim=1).view(rows, count, length)

    def forward_train(self, mics: Tensor) -> Dict[str, Tensor]:
        """Estimate the clean tracks and their magnitudes.

        Args:
            mics: ``(batch, num_tracks, time)``, any length.

        Returns:
            ``{"estimate": (batch, num_tracks, time), "magnitude": (batch, num_tracks, n_fft // 2 + 1,
            frames)}``, float32. ``magnitude`` is in the units of ``magnitude(stft(x, n_fft, hop_length))``
            (``musicfx.audio.spectral``), so a task can add the paper's MSE between it and the clean tracks'
            magnitudes; ``estimate`` is its inverse STFT with the microphones' phase.
        """
        self._check(mics)
        batch, tracks, length = mics.shape
        device_type = mics.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            x = mics.float()
            scale = x.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(self.eps) * self.magnitude_scale
            spec = self.stft(x)  # (batch, tracks, bins, frames)
            frames = spec.shape[-1]
            mag = magnitude(spec)
            windows = self._windows((mag / scale.unsqueeze(-1)).reshape(batch * tracks, self.bins, frames))
        cleaned = self._clean(windows, tracks)
        with torch.autocast(device_type=device_type, enabled=False):
            clean_mag = self._overlap_average(cleaned.float(), frames).view(batch, tracks, self.bins, frames)
            clean_mag = clean_mag * scale.unsqueeze(-1)
            # The microphone's phase (angle 0 where a bin is exactly silent).
            phase = torch.polar(torch.ones_like(mag), torch.angle(spec))
            estimate = self.istft(clean_mag * phase, length)
        return {"estimate": estimate, "magnitude": clean_mag}
