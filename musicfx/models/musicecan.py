"""MusicECAN: a music denoiser built from an ECA U-Net, a supervised attention module and a noise filter.

Cheng, Liu, Lian, Ye & Zhang, "MusicECAN: An Automatic Denoising Network for Music Recordings With
Efficient Channel Attention", IEEE/ACM TASLP 2024. No code is public; this is a re-implementation from the
paper's description and the authors' public project page.

What the paper and the authors' page fix:
    * two parts: an **ECA-U-SAM feature learning module** (a U-Net with Efficient Channel Attention whose
      output goes through a Supervised Attention Module) and a **noise filtering module** that produces the
      denoised music;
    * the configuration files and data loader in the authors' project-page repository
      (github.com/slliugit/slliugit.github.io) run on the two-stage U-Net code base of Moliner & Valimaki
      (ICASSP 2022, historical recordings): complex STFT (real and imaginary parts as channels), Hamming
      window 2048 (a Hann window here: same length and hop, slightly lower side lobes), hop 512, 44.1 kHz mono, U-Net depth 6 with stride-2 down-sampling along time and
      frequency, ELU activations, 10 cosine frequency-position channels, SAM between the stages, L1 ("mae")
      loss; Adam with lr 1e-4 and betas (0.5, 0.9), 2 s training segments, SNR drawn from U(2, 20) dB and a
      random gain from U(-6, 4) dB. ``recipes/denoise/musicecan.yaml`` keeps the STFT and the SNR/gain
      ranges close to these but trains with AdamW at 1e-3, which converged faster for this smaller network
      in our runs; the authors' optimizer is a command-line override (see docs/denoise.md).

What the paper leaves open, and what is chosen here:
    * **Widths and depth.** Moliner's widths (32 ... 512, dense blocks of three convs, six
      down-samplings) give tens of millions of parameters. Here each U-Net level is one residual block
      (two 3x3 convs + ECA); the feature learner has widths ``(16, 32, 48, 64, 96, 128)`` (five
      down-samplings: the bottleneck's receptive field already spans ~4 s and ~7.5 kHz at 44.1 kHz) and
      the noise filter ``(16, 32, 48, 64)``: 2.07 M parameters. The full-resolution width is 16, not 32,
      because the full-resolution maps (1024 bins x 86 frames per second) dominate the cost: widths
      ``(32, 48, 64, 96, 128)`` ran 3.7x slower on the development CPU (RTF 1.02 vs 0.28 on 2 s clips).
    * **Where ECA sits.** On the residual branch of every encoder, bottleneck and decoder block, before the
      addition (as in ECA-ResNet), so attention reweights what each block adds.
    * **Noise filtering module.** A second, shallower ECA U-Net that sees fresh features of the noisy
      spectrogram together with the SAM-gated features (MPRNet's stage-2 input) and outputs a *bounded
      complex mask* (magnitude ``tanh``-limited to ``[0, 1)``, free phase) applied to the noisy STFT. A mask
      can only remove or re-phase energy, which is what "filtering" out additive noise asks for; it is
      scale-equivariant and cannot hallucinate loud artefacts on unseen material. The SAM's intermediate
      estimate stays a residual (``conv(features) + input``), as in MPRNet.
    * **Stereo.** Channels are stacked as (real, imaginary) pairs, ``2 * channels`` input maps, so a stereo
      model can use inter-channel cues; the paper is mono only.
    * **Level.** The waveform is divided by its RMS before the STFT and the outputs multiplied back, so
      the network sees the same level whatever the recording's gain (Moliner trained with random gains
      instead).
    * **Nyquist bin.** Dropped (1024 of 1025 bins, so the frequency axis halves cleanly); the output has no
      energy at exactly ``sample_rate / 2``.
    * **Precision.** STFT, iSTFT, normalisation, the residual addition and the mask are computed in float32
      with autocast disabled; only the convolutions run in bf16/fp16 under mixed precision.

Size and speed of the default configuration: see :class:`MusicECAN`.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.audio.spectral import ISTFT, STFT
from musicfx.errors import AudioError
from musicfx.models.blocks import ResidualECABlock2d, SupervisedAttention2d

__all__ = ["MusicECAN", "ECAUNet2d"]


class ECAUNet2d(nn.Module):
    """A 2-D U-Net whose every block carries Efficient Channel Attention; features in, features out.

    Each level is one :class:`ResidualECABlock2d`; down-sampling is a stride-2 4x4 conv, up-sampling a
    stride-2 4x4 transposed conv, and skips are concatenated then fused by a 1x1 conv. Height and width of
    the input must be multiples of ``2 ** (len(widths) - 1)``.

    Args:
        widths: feature channels per level, shallowest first; ``len(widths) - 1`` down-samplings.
        eca_gamma: ``gamma`` of ECA's adaptive kernel size.
        eca_b: ``b`` of ECA's adaptive kernel size.
    """

    def __init__(self, widths: Sequence[int], eca_gamma: float = 2.0, eca_b: float = 1.0) -> None:
        super().__init__()
        if len(widths) < 1:
            raise ValueError("ECAUNet2d needs at least one level")
        self.widths = tuple(int(w) for w in widths)
        depth = len(self.widths) - 1
        self.act = nn.ELU()
        self.enc_blocks = nn.ModuleList(ResidualECABlock2d(w, eca_gamma, eca_b) for w in self.widths[:-1])
        self.downs = nn.ModuleList(
            nn.Conv2d(self.widths[i], self.widths[i + 1], 4, stride=2, padding=1) for i in range(depth)
        )
        self.bottleneck = ResidualECABlock2d(self.widths[-1], eca_gamma, eca_b)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(self.widths[i + 1], self.widths[i], 4, stride=2, padding=1)
            for i in range(depth)
        )
        self.fuses = nn.ModuleList(nn.Conv2d(2 * w, w, 1) for w in self.widths[:-1])
        self.dec_blocks = nn.ModuleList(ResidualECABlock2d(w, eca_gamma, eca_b) for w in self.widths[:-1])

    @property
    def multiple(self) -> int:
        """Height and width of the input must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(batch, widths[0], height, width)``.

        Returns:
            ``(batch, widths[0], height, width)``.
        """
        skips: List[Tensor] = []
        for block, down in zip(self.enc_blocks, self.downs):
            x = block(x)
            skips.append(x)
            x = self.act(down(x))
        x = self.bottleneck(x)
        for i in reversed(range(len(self.ups))):
            x = self.act(self.ups[i](x))
            x = self.act(self.fuses[i](torch.cat([x, skips[i]], dim=1)))
            x = self.dec_blocks[i](x)
        return x


def _frequency_encoding(n_bins: int, n_channels: int) -> Tensor:
    """Cosines of the normalised bin index at octave-spaced rates, ``(n_channels, n_bins, 1)``.

    Convolutions are translation-invariant along frequency; these maps tell them where they are, which
    matters for music, whose timbre and noise statistics depend on absolute frequency.
    """
    position = torch.arange(n_bins, dtype=torch.float64) / max(n_bins - 1, 1)
    rates = (2.0 ** torch.arange(n_channels, dtype=torch.float64)) * math.pi
    return torch.cos(rates[:, None] * position[None, :]).float().unsqueeze(-1)


class MusicECAN(nn.Module):
    """MusicECAN denoiser on complex STFTs (see the module docstring for the design and its sources).

    Default configuration: 2,074,668 parameters mono, 2,076,112 stereo. Real-time factor of
    :meth:`forward` on 10 s of mono 44.1 kHz audio under ``torch.inference_mode()``, measured on the
    2-core development CPU (torch 2.13, float32) while other jobs shared it: 0.38-0.58 with 2 threads,
    0.56-0.74 with 1 (3.8-7.4 s of compute for 10 s of audio).

    Args:
        channels: audio channels (1 mono, 2 stereo); input and output have this many.
        n_fft: STFT size; ``n_fft // 2`` must be divisible by ``2 ** (len(widths) - 1)`` and by
            ``2 ** (len(filter_widths) - 1)``.
        hop_length: STFT hop.
        widths: per-level widths of the feature-learning ECA U-Net.
        filter_widths: per-level widths of the noise-filtering ECA U-Net; its first width must equal
            ``widths[0]``.
        freq_encoding: number of cosine frequency-position channels appended to the input (0 disables).
        eca_gamma: ``gamma`` of ECA's adaptive kernel size.
        eca_b: ``b`` of ECA's adaptive kernel size.
        eps: floor of the RMS used to normalise the input level.
        sample_rate: the rate the model is trained and run at, declared for the task and the data (``None``:
            not declared, the task's ``sample_rate`` decides).
    """

    def __init__(
        self,
        channels: int = 1,
        n_fft: int = 2048,
        hop_length: int = 512,
        widths: Sequence[int] = (16, 32, 48, 64, 96, 128),
        filter_widths: Sequence[int] = (16, 32, 48, 64),
        freq_encoding: int = 10,
        eca_gamma: float = 2.0,
        eca_b: float = 1.0,
        eps: float = 1e-5,
        sample_rate: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if hop_length < 1 or hop_length > n_fft:
            raise ValueError(f"hop_length must be in [1, n_fft={n_fft}], got {hop_length}")
        if widths[0] != filter_widths[0]:
            raise ValueError(f"filter_widths[0] ({filter_widths[0]}) must equal widths[0] ({widths[0]})")
        self.channels = channels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_bins = n_fft // 2
        self.eps = eps
        spec_channels = 2 * channels
        self.feature_unet = ECAUNet2d(widths, eca_gamma, eca_b)
        self.filter_unet = ECAUNet2d(filter_widths, eca_gamma, eca_b)
        self._multiple = max(self.feature_unet.multiple, self.filter_unet.multiple)
        if self.n_bins % self._multiple:
            raise ValueError(
                f"n_fft // 2 = {self.n_bins} must be divisible by {self._multiple} for U-Nets of depth "
                f"{len(widths) - 1} and {len(filter_widths) - 1}"
            )
        in_maps = spec_channels + freq_encoding
        width = widths[0]
        self.act = nn.ELU()
        # Feature learning module (ECA-U-SAM).
        self.stem = nn.Conv2d(in_maps, width, 3, padding=1)
        self.sam = SupervisedAttention2d(width, spec_channels)
        # Noise filtering module.
        self.filter_stem = nn.Conv2d(in_maps, width, 3, padding=1)
        self.filter_fuse = nn.Conv2d(2 * width, width, 1)
        self.mask_head = nn.Conv2d(width, spec_channels, 3, padding=1)
        # Zero padding (not reflection) so that any length, even shorter than n_fft // 2, is valid.
        self.stft = STFT(n_fft, hop_length, pad_mode="constant", normalized=True)
        self.istft = ISTFT(n_fft, hop_length, normalized=True)
        self.register_buffer("freq_maps", _frequency_encoding(self.n_bins, freq_encoding), persistent=False)

    # ------------------------------------------------------------------ spectral front and back ends
    def _analyse(self, noisy: Tensor) -> Tuple[Tensor, Tensor, int]:
        """Normalise the level and take the STFT, padded to the U-Nets' multiple of frames.

        Args:
            noisy: ``(batch, channels, time)``.

        Returns:
            ``(spec, scale, n_frames)``: spectrogram ``(batch, 2 * channels, n_fft // 2, padded_frames)``
            float32, per-example RMS ``(batch, 1, 1)`` and the number of real frames.
        """
        batch, channels, length = noisy.shape
        x = noisy.float()
        scale = x.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(self.eps)
        x = (x / scale).reshape(batch * channels, length)
        z = self.stft(x)[:, : self.n_bins]
        n_frames = z.shape[-1]
        spec = torch.view_as_real(z).reshape(batch, channels, self.n_bins, n_frames, 2)
        spec = spec.permute(0, 1, 4, 2, 3).reshape(batch, 2 * channels, self.n_bins, n_frames)
        pad = (-n_frames) % self._multiple
        return F.pad(spec, (0, pad)), scale, n_frames

    def _synthesise(self, spec: Tensor, scale: Tensor, n_frames: int, length: int) -> Tensor:
        """Inverse of :meth:`_analyse`.

        Args:
            spec: ``(batch, 2 * channels, n_fft // 2, padded_frames)`` float32.
            scale: ``(batch, 1, 1)``.
            n_frames: real frames to keep.
            length: samples to return.

        Returns:
            ``(batch, channels, length)`` float32.
        """
        batch = spec.shape[0]
        spec = spec[..., :n_frames].reshape(batch, self.channels, 2, self.n_bins, n_frames)
        spec = spec.permute(0, 1, 3, 4, 2).reshape(batch * self.channels, self.n_bins, n_frames, 2)
        z = torch.view_as_complex(F.pad(spec, (0, 0, 0, 0, 0, 1)).contiguous())
        x = self.istft(z, length)
        return x.reshape(batch, self.channels, length) * scale

    def _apply_mask(self, raw: Tensor, spec: Tensor) -> Tensor:
        """Bounded complex mask: magnitude ``tanh(|m|)``, phase of ``m``, times the noisy STFT.

        Args:
            raw: mask logits ``(batch, 2 * channels, bins, frames)`` (pairs of real, imaginary).
            spec: noisy STFT, same shape, float32.

        Returns:
            Masked STFT, same shape, float32.
        """
        b, _, f, t = spec.shape
        m = raw.float().reshape(b, self.channels, 2, f, t)
        s = spec.reshape(b, self.channels, 2, f, t)
        norm = m.pow(2).sum(dim=2, keepdim=True).add(1e-8).sqrt()
        m = m * (torch.tanh(norm) / norm)
        real = m[:, :, 0] * s[:, :, 0] - m[:, :, 1] * s[:, :, 1]
        imag = m[:, :, 0] * s[:, :, 1] + m[:, :, 1] * s[:, :, 0]
        return torch.stack([real, imag], dim=2).reshape(b, 2 * self.channels, f, t)

    # ------------------------------------------------------------------ forward passes
    def _check(self, noisy: Tensor) -> None:
        if noisy.dim() != 3 or noisy.shape[1] != self.channels:
            raise AudioError(
                f"MusicECAN expects audio shaped (batch, {self.channels}, time), got {tuple(noisy.shape)}; "
                "convert the channels (musicfx.audio.io.convert_channels) or build the model with "
                f"channels={noisy.shape[1] if noisy.dim() == 3 else '?'}"
            )
        if noisy.shape[-1] < 1:
            raise AudioError("MusicECAN got empty audio (0 samples)")

    def _run(self, noisy: Tensor, with_intermediate: bool) -> Tuple[Tensor, List[Tensor]]:
        self._check(noisy)
        length = noisy.shape[-1]
        device_type = noisy.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            spec, scale, n_frames = self._analyse(noisy)
        freq = self.freq_maps.expand(spec.shape[0], -1, -1, spec.shape[-1])
        inputs = torch.cat([spec, freq], dim=1)
        features = self.feature_unet(self.act(self.stem(inputs)))
        # The SAM adds its residual to the float32 spectrogram, so the estimate is float32 under autocast.
        gated, intermediate = self.sam(features, spec)
        fresh = self.act(self.filter_stem(inputs))
        fused = self.act(self.filter_fuse(torch.cat([fresh, gated.to(fresh.dtype)], dim=1)))
        raw_mask = self.mask_head(self.filter_unet(fused))
        with torch.autocast(device_type=device_type, enabled=False):
            estimate = self._synthesise(self._apply_mask(raw_mask, spec), scale, n_frames, length)
            intermediates = (
                [self._synthesise(intermediate.float(), scale, n_frames, length)] if with_intermediate else []
            )
        return estimate, intermediates

    def forward_train(self, noisy: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """Denoise and also return the SAM's intermediate estimate, for deep supervision.

        Args:
            noisy: ``(batch, channels, time)``, any length.

        Returns:
            ``(estimate, [intermediate])``: the final denoised waveform ``(batch, channels, time)`` and a
            one-element list with the SAM's intermediate waveform ``(batch, channels, time)``; both float32
            and differentiable.
        """
        return self._run(noisy, with_intermediate=True)

    def forward(self, noisy: Tensor) -> Tensor:
        """Denoise.

        Args:
            noisy: ``(batch, channels, time)``, any length.

        Returns:
            The denoised waveform ``(batch, channels, time)``, float32.
        """
        return self._run(noisy, with_intermediate=False)[0]
