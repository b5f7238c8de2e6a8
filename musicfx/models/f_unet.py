"""f-UNet: a spectrogram U-Net over all microphone tracks that masks each track's STFT.

Rajesh R & Padmanabhan Rajan's interference-reduction models (WASPAA 2023 and follow-ups; code at
github.com/its-rajesh). The f-UNet is listed in the results table of github.com/its-rajesh/Audio-Bleeding-Removal
(median SDR vocals/bass/drums/other/overall 6.50/9.84/10.85/10.32/9.38 dB); it is not in the WASPAA paper's
released code. This is a re-implementation in PyTorch; no code is copied.

What the authors' code shows (``Audio-Bleeding-Removal/UNet/MusDBUNet.py``, Keras; confirmed):
    * **Input and output.** The STFT magnitudes of the four tracks stacked as a ``(4, 1024 bins, 416
      frames)`` volume in, the four clean magnitudes out, MSE loss, Adam.
    * **Network.** A U-Net of four levels (16, 32, 64, 128 filters) and a 256-filter bottleneck; each level
      two 3x3 convolutions (ReLU) applied to every track with shared weights (``Conv3D`` kernels one track
      deep), 2x2 max-pooling over frequency and time, dropout 0.3, transposed-convolution up-sampling,
      concatenated skips.

The repository does not say what the "f" abbreviates, nor how the phase is recovered: "frequency-domain"
matches this model (the project's design notes call it the spectrogram model); the authors' README row now
called "f-UNet" carried the numbers of an earlier waveform "S-iWaveUnet", so "f" may also mean *full*
(encoder-decoder) U-Net as opposed to the *truncated* t-UNet. See :mod:`musicfx.models.df_unet` for the
waveform U-Net.

What is changed here, and why:
    * **Tracks see each other.** With per-track kernels only, the original network never compares tracks
      (each track is denoised on its own, like the CAE). Here every convolution is a
      :class:`TrackSetConv2d`: a 3x3 convolution of each track (shared weights) plus one of the mean over
      the tracks, broadcast back. Bleed in track ``i`` is the direct sound of the other tracks, so seeing
      them is what makes the problem easier than denoising; the same weights serve any ``M``, and permuting
      the input tracks permutes the outputs.
    * **A bounded mask, not a magnitude.** The network outputs ``mask = mask_limit * sigmoid(logit)`` per
      track, time and frequency, applied to the track's complex STFT (so its phase is kept, as the authors
      did when resynthesising their CAE's magnitudes). The limit (default 2) lets the mask restore a source
      recorded below unit gain (the bleed recipe's direct gains are 0.6 to 1) while the output stays
      bounded; the last layer starts at ``mask = 1``, so the untrained model passes the tracks through.
    * **Log-compressed input.** ``log1p`` of the magnitude of the level-normalised tracks (one gain for all
      tracks, so relative levels survive): magnitudes span 100 dB, and a mask computed from normalised
      audio makes the model scale-equivariant.
    * **Batch norm and LeakyReLU(0.3)** after every convolution, as in the authors' later waveform U-Nets
      (the spectrogram U-Net has plain ReLUs): without normalisation this mask network barely moved in
      tens of Adam steps on linear bleed, with it the loss falls steadily from the first steps.
    * **Any length and size.** Frequency and frames are zero-padded to a multiple of ``2 ** len(widths)``
      (the Nyquist bin is kept) and cropped back; STFT and masking run in float32 under autocast.

Size: :class:`FUNet`.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.audio.spectral import ISTFT, STFT, magnitude
from musicfx.models.blocks import TrackDebleeder, declare_names
from musicfx.models.track_unet import TrackSetConv2d, TrackSetUNet

__all__ = ["FUNet", "TrackSetConv2d"]


class FUNet(TrackDebleeder, TrackSetUNet):
    """Spectrogram U-Net over all microphone tracks, one bounded mask per track (see the module docstring).

    Default configuration: 3,708,769 parameters (any number of tracks: no weight depends on it).

    Args:
        num_tracks: microphone tracks ``M`` in and estimated clean tracks out.
        tracks, sample_rate: what the model declares to the task and the data (``None``: nothing).
        n_fft: STFT size (samples; choose it with the sample rate, 2048 is 46 ms at 44.1 kHz).
        hop_length: STFT hop (samples).
        widths: channels of the U-Net levels, shallowest first; each level halves frequency and frames.
        bottleneck_width: channels of the bottleneck.
        dropout: dropout after each down-sampling and after each skip concatenation.
        mask_limit: the mask lies in ``(0, mask_limit)``.
        negative_slope: slope of the LeakyReLUs.
        eps: floor of the RMS used to normalise the input level.
    """

    def __init__(
        self,
        num_tracks: Optional[int] = None,
        n_fft: int = 2048,
        hop_length: int = 512,
        widths: Sequence[int] = (16, 32, 64, 128),
        bottleneck_width: int = 256,
        dropout: float = 0.3,
        mask_limit: float = 2.0,
        negative_slope: float = 0.3,
        eps: float = 1e-5,
        tracks: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        if hop_length < 1 or hop_length > n_fft:
            raise ValueError(f"hop_length must be in [1, n_fft={n_fft}], got {hop_length}")
        if len(widths) < 1:
            raise ValueError("FUNet needs at least one level")
        if mask_limit <= 1.0:
            raise ValueError(f"mask_limit must exceed 1 (the identity mask), got {mask_limit}")
        super().__init__(2, widths, bottleneck_width, kernel_size=3, dropout=dropout, skip_dropout=True,
                         negative_slope=negative_slope)
        declare_names(self, "tracks", tracks, num_tracks, sample_rate)
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.mask_limit = float(mask_limit)
        self.eps = eps
        self.stft = STFT(n_fft, hop_length)
        self.istft = ISTFT(n_fft, hop_length)
        # mask = mask_limit * sigmoid(bias) = 1 at initialisation: the untrained model passes the tracks through.
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, -math.log(self.mask_limit - 1.0))

    def forward_train(self, mics: Tensor) -> Dict[str, Tensor]:
        """Estimate the clean tracks and return the masks too.

        Args:
            mics: ``(batch, num_tracks, time)``, any length.

        Returns:
            ``{"estimate": (batch, num_tracks, time), "mask": (batch, num_tracks, n_fft // 2 + 1, frames)}``,
            float32; ``estimate`` is the inverse STFT of ``mask * stft(mics)`` (``musicfx.audio.spectral.stft``
            with this model's ``n_fft`` and ``hop_length``), so a task can also compare ``mask`` with an
            ideal ratio mask.
        """
        self._check(mics)
        batch, tracks, length = mics.shape
        device_type = mics.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            x = mics.float()
            scale = x.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(self.eps)
            spec = self.stft(x / scale)  # (batch, tracks, bins, frames)
            bins, frames = spec.shape[-2:]
            features = torch.log1p(magnitude(spec)).reshape(batch * tracks, 1, bins, frames)
            features = F.pad(features, (0, (-frames) % self.multiple, 0, (-bins) % self.multiple))
        logits = self._network(features, tracks)
        with torch.autocast(device_type=device_type, enabled=False):
            logits = logits.float()[..., :bins, :frames].reshape(batch, tracks, bins, frames)
            mask = self.mask_limit * torch.sigmoid(logits)
            estimate = self.istft(spec * mask, length) * scale
        return {"estimate": estimate, "mask": mask}
