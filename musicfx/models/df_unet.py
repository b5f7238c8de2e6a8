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

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.models.blocks import TrackDebleeder, declare_names
from musicfx.models.track_unet import TrackSetConv1d, TrackSetUNet

__all__ = ["DFUNet", "TrackSetConv1d"]


class DFUNet(TrackDebleeder, TrackSetUNet):
    """Waveform U-Net with dilated filters over all microphone tracks (see the module docstring).

    Default configuration: 2,052,833 parameters (any number of tracks: no weight depends on it).

    Args:
        num_tracks: microphone tracks ``M`` in and estimated clean tracks out.
        tracks, sample_rate: what the model declares to the task and the data (``None``: nothing).
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
        num_tracks: Optional[int] = None,
        widths: Sequence[int] = (16, 32, 64, 128),
        bottleneck_width: int = 256,
        dilations: Sequence[int] = (1, 2, 4, 16),
        kernel_size: int = 5,
        dropout: float = 0.1,
        negative_slope: float = 0.3,
        eps: float = 1e-5,
        tracks: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        if len(widths) < 1 or len(dilations) != len(widths):
            raise ValueError(f"need one dilation per level, got widths={widths}, dilations={dilations}")
        super().__init__(1, widths, bottleneck_width, kernel_size, dilations=dilations, dropout=dropout,
                         negative_slope=negative_slope)
        declare_names(self, "tracks", tracks, num_tracks, sample_rate)
        self.eps = eps
        # Zero correction at initialisation: the untrained model passes the tracks through.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

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
