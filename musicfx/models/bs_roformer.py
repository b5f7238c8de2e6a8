"""BS-RoFormer: band-split RoPE transformer for music source separation (Lu, Wang, Kong & Hung, "Music
Source Separation with Band-Split RoPE Transformer", ICASSP 2024 / arXiv:2309.02612), re-implemented, and
weight-compatible with the ``bs-roformer`` 0.3.x package (lucidrains/BS-RoFormer), the layout in which
Music-Source-Separation-Training shares its checkpoints (:meth:`BSRoFormer.from_bs_roformer`).

Why this model rather than HTDemucs as the strong separator: it is simpler (one STFT branch, no time-domain
U-Net, no cross-domain transformer), a single model estimates all stems at once, and it is the stronger of
the two anchors in DESIGN.md on MUSDB18-HQ without extra training data (9.8 dB vs HTDemucs' 9.0 dB SDR).

Pipeline:

1. Complex STFT of the mixture (:class:`musicfx.audio.spectral.STFT`; 2048 / 441 at 44.1 kHz); real and
   imaginary parts of every channel are features.
2. **Band split**: the bins are cut into ``K`` bands (:func:`band_split_widths`; the paper's "v7" split,
   62 bands at 44.1 kHz / 2048). Each band's features, ``bins x channels x 2``, go through RMSNorm + Linear
   to ``dim``: a tensor ``(batch, frames, bands, dim)``.
3. ``depth`` pairs of pre-norm transformers, the first attending over **time** (each band a sequence of
   frames), the second over **bands** (each frame a sequence of bands), each ``time_transformer_depth`` /
   ``freq_transformer_depth`` layers deep. Attention uses rotary position embeddings
   (:class:`RotaryEmbedding`) on queries and keys, a sigmoid gate per head (as the reference code) and
   :func:`torch.nn.functional.scaled_dot_product_attention`.
4. **Mask estimation**: per stem and per band an MLP (``dim -> mask_mult * dim``, tanh, ``-> 2 x out``,
   GLU) outputs the band's complex mask values, ``bins x channels x (real, imag)``.
5. The complex masks multiply the mixture STFT (complex multiplication, float32), then the inverse STFT.

Masks are complex and unbounded (a complex ratio mask may exceed 1 in magnitude where sources cancel in the
mix). :meth:`BSRoFormer.forward_complex_masks` returns them; :meth:`BSRoFormer.forward_masks` returns their
magnitude, non-negative but *not* bounded by 1: train this model on waveforms
(:class:`musicfx.losses.BSRoFormerLoss`, the paper's L1 + multi-resolution complex STFT), not against ideal
[0, 1] masks.

The shared machinery (:class:`BandRoFormer`) also serves :class:`musicfx.models.mel_band_roformer.MelBandRoFormer`,
whose bands overlap on the mel scale.
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.audio.spectral import ISTFT, STFT
from musicfx.audio.stems import MUSDB_STEMS
from musicfx.errors import ConfigError
from musicfx.models.blocks import MaskingSeparator

__all__ = ["BSRoFormer", "BandRoFormer", "RMSNorm", "RotaryEmbedding", "band_split_widths", "convert_bs_roformer_state"]

#: The paper's "v7" split: up to each edge (Hz) bands of this many bins (at 44.1 kHz with n_fft 2048).
V7_EDGES_HZ: Tuple[float, ...] = (1000.0, 2000.0, 4000.0, 8000.0, 16000.0)
V7_BINS_PER_BAND: Tuple[int, ...] = (2, 4, 12, 24, 48)
V7_TOP_BANDS = 2


def band_split_widths(
    n_fft: int,
    sample_rate: int,
    edges_hz: Sequence[float] = V7_EDGES_HZ,
    bins_per_band: Sequence[int] = V7_BINS_PER_BAND,
    top_bands: int = V7_TOP_BANDS,
) -> List[int]:
    """Widths (in bins) of contiguous bands covering the ``n_fft // 2 + 1`` bins exactly once.

    Below ``edges_hz[i]`` (and above the previous edge) the bands are ``bins_per_band[i]`` bins wide; a
    region's last band may run past its edge, and the next region starts where it ends. The bins above the
    last edge are split into ``top_bands`` bands of (nearly) equal width. At 44.1 kHz with ``n_fft=2048``
    the defaults give the paper's v7 split: 24 x 2, 12 x 4, 8 x 12, 8 x 24, 8 x 48, then 129 + 128 bins,
    62 bands.

    Args:
        n_fft: FFT size.
        sample_rate: in Hz.
        edges_hz: increasing region edges.
        bins_per_band: band width in each region (>= 1).
        top_bands: bands above the last edge (>= 1).

    Returns:
        Band widths, summing to ``n_fft // 2 + 1``.
    """
    if len(edges_hz) != len(bins_per_band):
        raise ValueError(f"one band width per edge: {len(edges_hz)} edges, {len(bins_per_band)} widths")
    if any(w < 1 for w in bins_per_band) or top_bands < 1:
        raise ValueError("band widths and top_bands must be >= 1")
    n_bins = n_fft // 2 + 1
    bin_hz = sample_rate / n_fft
    widths: List[int] = []
    start = 0
    for edge, width in zip(edges_hz, bins_per_band):
        stop = min(n_bins, math.ceil(edge / bin_hz))  # bins strictly below the edge
        while start < stop:
            step = min(width, n_bins - start)
            widths.append(step)
            start += step
    remaining = n_bins - start
    if remaining > 0:
        parts = min(top_bands, remaining)
        base, extra = divmod(remaining, parts)
        widths += [base + 1] * extra + [base] * (parts - extra)
    return widths


def _at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32, or float64 when it is float64 (half precision is upcast, double kept)."""
    return x if x.dtype == torch.float64 else x.float()


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021) on the last dimension, adjacent pairs rotated together.

    Features ``(2 i, 2 i + 1)`` of each head form pair ``i``; at position ``p`` it is rotated by
    ``p * base ** (-2 i / dim)``. Dot products of rotated queries and keys then depend on the relative
    position only. The pairing (adjacent, not first half / second half) is the one of
    ``rotary-embedding-torch``, which the reference BS-RoFormer uses: trained query / key projections only
    carry over with the same pairing. Angles are computed in float32 whatever the input precision.

    Args:
        dim: features per head (even).
        base: wavelength base.
    """

    inv_freq: Tensor

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got {dim}")
        self.dim = dim
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: Optional[Tensor] = None

    def rotations(self, length: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """``exp(i * position * inv_freq)``, complex ``(length, dim / 2)``; kept for the last length asked."""
        cached = self._cache
        if cached is None or cached.shape[0] != length or cached.device != device or cached.dtype != dtype:
            positions = torch.arange(length, device=device, dtype=torch.float32)
            angles = (positions[:, None] * self.inv_freq.to(device)[None, :]).to(dtype)
            cached = torch.polar(torch.ones_like(angles), angles)
            self._cache = cached
        return cached

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(..., length, dim)``.

        Returns:
            Rotated ``x``, same shape and dtype.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = _at_least_float32(x).contiguous()
            # A pair (x0, x1) as the complex x0 + i x1: the rotation is one complex product.
            pairs = torch.view_as_complex(y.unflatten(-1, (-1, 2)))
            rotated = torch.view_as_real(pairs * self.rotations(x.shape[-2], x.device, y.dtype)).flatten(-2)
        return rotated.to(x.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learnt gain, computed in float32.

    ``x / max(||x||, 1e-12) * sqrt(dim) * gain``: the reference's form. An all-zero input (a silent band)
    stays zero instead of being divided by an epsilon-sized RMS.

    Args:
        dim: size of the normalised last dimension.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim ** 0.5
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.normalize(_at_least_float32(x), dim=-1) * self.scale * self.weight
        return y.to(x.dtype)


class _Attention(nn.Module):
    """Pre-norm multi-head self-attention with rotary embeddings and a sigmoid gate per head."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.dropout = dropout
        self.norm = RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.gates = nn.Linear(dim, heads)
        self.out = nn.Linear(heads * dim_head, dim, bias=False)
        self.out_dropout = nn.Dropout(dropout)
        self.rotary = RotaryEmbedding(dim_head)

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(sequences, length, dim)``.

        Returns:
            Attention output (without the residual), same shape.
        """
        sequences, length, _ = x.shape
        x = self.norm(x)
        qkv = self.qkv(x).reshape(sequences, length, 3, self.heads, self.dim_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (sequences, heads, length, dim_head)
        q, k = self.rotary(q), self.rotary(k)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        attended = attended * self.gates(x).transpose(1, 2).unsqueeze(-1).sigmoid()
        out = self.out(attended.transpose(1, 2).reshape(sequences, length, self.heads * self.dim_head))
        return self.out_dropout(out)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            RMSNorm(dim), nn.Linear(dim, mult * dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(mult * dim, dim), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _TransformerLayer(nn.Module):
    """``x + attention(x)`` then ``x + feedforward(x)``, on ``(sequences, length, dim)``."""

    def __init__(
        self, dim: int, heads: int, dim_head: int, ff_mult: int, attn_dropout: float, ff_dropout: float
    ) -> None:
        super().__init__()
        self.attention = _Attention(dim, heads, dim_head, attn_dropout)
        self.feedforward = _FeedForward(dim, ff_mult, ff_dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(x)
        return x + self.feedforward(x)


class _Transformer(nn.Module):
    """``depth`` layers along one axis, optionally followed by an RMSNorm (the Mel-Band layout)."""

    def __init__(self, depth: int, norm_output: bool, **layer: Any) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_TransformerLayer(**layer) for _ in range(depth))
        self.norm: nn.Module = RMSNorm(layer["dim"]) if norm_output else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class _BandSplit(nn.Module):
    """Per band: RMSNorm + Linear from ``bins x channels x 2`` features to ``dim``."""

    def __init__(self, widths: Sequence[int], channels: int, dim: int) -> None:
        super().__init__()
        self.widths = list(widths)
        self.projections = nn.ModuleList(
            nn.Sequential(RMSNorm(w * channels * 2), nn.Linear(w * channels * 2, dim)) for w in self.widths
        )

    def forward(self, features: Tensor) -> Tensor:
        """Args:
            features: ``(batch, frames, sum(widths), channels * 2)``, the bins of band after band.

        Returns:
            ``(batch, frames, bands, dim)``.
        """
        bands = features.split(self.widths, dim=2)
        return torch.stack([proj(band.flatten(2)) for proj, band in zip(self.projections, bands)], dim=2)


class _MaskEstimator(nn.Module):
    """Per band an MLP with a GLU output, giving the band's ``bins x channels x 2`` mask values (one stem).

    ``depth`` linear layers (tanh between them, hidden width ``mult * dim``), then the GLU.
    """

    def __init__(self, widths: Sequence[int], channels: int, dim: int, mult: int, depth: int) -> None:
        super().__init__()
        self.widths = list(widths)
        self.channels = channels

        def mlp(width: int) -> nn.Sequential:
            sizes = [dim] + [mult * dim] * (depth - 1) + [2 * width * channels * 2]
            layers: List[nn.Module] = []
            for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                if index:
                    layers.append(nn.Tanh())
                layers.append(nn.Linear(size_in, size_out))
            return nn.Sequential(*layers, nn.GLU(-1))

        self.mlps = nn.ModuleList(mlp(w) for w in self.widths)

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(batch, frames, bands, dim)``.

        Returns:
            ``(batch, frames, sum(widths), channels * 2)``.
        """
        batch, frames = x.shape[:2]
        out = [
            mlp(x[:, :, index]).reshape(batch, frames, width, self.channels * 2)
            for index, (mlp, width) in enumerate(zip(self.mlps, self.widths))
        ]
        return torch.cat(out, dim=2)


class BandRoFormer(MaskingSeparator, nn.Module):
    """Band-split RoPE transformer over any bands: the machinery BS-RoFormer and Mel-Band RoFormer share.

    ``band_bins`` lists, band after band, the STFT bins each band reads; bands may overlap (Mel-Band
    RoFormer), in which case a bin's mask is the mean of the masks of the bands that contain it. Contiguous
    bands covering every bin once (BS-RoFormer) skip the gather and the averaging.

    Args:
        sources: names of the ``S`` stems, all estimated by the one model.
        channels: audio channels.
        sample_rate: rate the model works at.
        n_fft, hop_length: the STFT.
        band_bins: ``(sum of band widths,)`` bin indices, band after band.
        band_widths: bins per band.
        dim, depth, heads, dim_head, ff_mult: the transformer (``depth`` time / band pairs).
        time_transformer_depth, freq_transformer_depth: layers of each time and band transformer.
        mask_mult, mask_depth: hidden expansion and linear layers of the mask-estimator MLPs.
        attn_dropout, ff_dropout: dropouts.
        norm_each_transformer: an RMSNorm closes every time and band transformer (Mel-Band layout);
            otherwise one final RMSNorm before the mask estimators (BS layout).
    """

    def __init__(
        self,
        sources: Sequence[str],
        channels: int,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        band_bins: Sequence[int],
        band_widths: Sequence[int],
        dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        ff_mult: int,
        time_transformer_depth: int,
        freq_transformer_depth: int,
        mask_mult: int,
        mask_depth: int,
        attn_dropout: float,
        ff_dropout: float,
        norm_each_transformer: bool,
    ) -> None:
        super().__init__()
        self.declare_format(sources, channels, sample_rate)
        for key, value in (("depth", depth), ("time_transformer_depth", time_transformer_depth),
                           ("freq_transformer_depth", freq_transformer_depth), ("mask_depth", mask_depth)):
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        n_bins = n_fft // 2 + 1
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.band_widths: List[int] = [int(w) for w in band_widths]
        if sum(self.band_widths) != len(band_bins) or min(self.band_widths) < 1:
            raise ValueError("band_widths must be >= 1 and sum to the number of band_bins")
        bins = torch.as_tensor(list(band_bins), dtype=torch.long)
        if bins.min() < 0 or bins.max() >= n_bins:
            raise ValueError(f"band bins must lie in [0, {n_bins}), got {bins.min().item()}..{bins.max().item()}")
        coverage = torch.bincount(bins, minlength=n_bins)
        if (coverage == 0).any():
            raise ValueError(f"bins {torch.nonzero(coverage == 0).flatten().tolist()} belong to no band")
        # Contiguous bands covering each bin once need neither the gather nor the averaging.
        self._identity_bands = bool(torch.equal(bins, torch.arange(n_bins)))
        self.register_buffer("band_bins", bins, persistent=False)
        self.register_buffer("bands_per_bin", coverage.float(), persistent=False)
        self.stft = STFT(n_fft, hop_length)
        self.istft = ISTFT(n_fft, hop_length)
        self.band_split = _BandSplit(self.band_widths, channels, dim)
        layer = dict(dim=dim, heads=heads, dim_head=dim_head, ff_mult=ff_mult, attn_dropout=attn_dropout,
                     ff_dropout=ff_dropout)
        self.layers = nn.ModuleList(
            nn.ModuleList([
                _Transformer(time_transformer_depth, norm_each_transformer, **layer),  # over time
                _Transformer(freq_transformer_depth, norm_each_transformer, **layer),  # over bands
            ])
            for _ in range(depth)
        )
        self.final_norm: nn.Module = nn.Identity() if norm_each_transformer else RMSNorm(dim)
        self.mask_estimators = nn.ModuleList(
            _MaskEstimator(self.band_widths, channels, dim, mask_mult, mask_depth) for _ in self.sources
        )

    @property
    def num_bands(self) -> int:
        return len(self.band_widths)

    def _complex_masks(self, spec: Tensor) -> Tensor:
        """Complex masks of a mixture STFT.

        Args:
            spec: complex ``(batch, channels, freq, frames)``.

        Returns:
            complex64 ``(batch, sources, channels, freq, frames)``.
        """
        batch, channels, bins, frames = spec.shape
        features = torch.view_as_real(spec).permute(0, 3, 2, 1, 4).reshape(batch, frames, bins, channels * 2)
        if not self._identity_bands:
            features = features.index_select(2, self.band_bins)
        x = self.band_split(features)  # (B, N, K, D)
        bands, dim = x.shape[2], x.shape[3]
        for time_transformer, band_transformer in self.layers:
            x = x.transpose(1, 2).reshape(batch * bands, frames, dim)
            x = time_transformer(x)
            x = x.reshape(batch, bands, frames, dim).transpose(1, 2).reshape(batch * frames, bands, dim)
            x = band_transformer(x)
            x = x.reshape(batch, frames, bands, dim)
        x = self.final_norm(x)
        masks = torch.stack([estimator(x) for estimator in self.mask_estimators], dim=1).float()  # (B,S,N,F',C*2)
        if not self._identity_bands:
            summed = masks.new_zeros(*masks.shape[:3], bins, channels * 2)
            summed.index_add_(3, self.band_bins, masks)
            masks = summed / self.bands_per_bin[:, None]
        masks = masks.reshape(batch, len(self.sources), frames, bins, channels, 2)
        return torch.view_as_complex(masks.permute(0, 1, 4, 3, 2, 5).contiguous())

    def forward_complex_masks(self, mix: Tensor) -> Tensor:
        """The complex masks the model applies to the mixture STFT.

        Args:
            mix: ``(batch, channels, time)``.

        Returns:
            complex64 ``(batch, sources, channels, n_fft // 2 + 1, frames)``.
        """
        return self._complex_masks(self.mix_spectrogram(mix))

    def forward_masks(self, mix: Tensor) -> Tensor:
        """Magnitudes of the complex masks: non-negative, *not* bounded by 1 (see the module docstring).

        Args:
            mix: ``(batch, channels, time)``.

        Returns:
            float32 ``(batch, sources, channels, n_fft // 2 + 1, frames)``.
        """
        return self.forward_complex_masks(mix).abs()

    def _estimate(self, spec: Tensor) -> Tensor:
        """The forward pass's complex masks (see :class:`MaskingSeparator`)."""
        return self._complex_masks(spec)

    def extra_repr(self) -> str:
        return (
            f"sources={self.sources}, channels={self.channels}, sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
            f"hop_length={self.hop_length}, bands={self.num_bands}"
        )

    @classmethod
    def _from_reference(cls, state_dict: Mapping[str, Tensor], options: Mapping[str, Any]) -> "BandRoFormer":
        """A model built with ``options`` holding a reference checkpoint's weights, in eval mode."""
        model = cls(**options)
        model.load_state_dict(convert_bs_roformer_state(state_dict, model.state_dict()))
        return model.eval()


class BSRoFormer(BandRoFormer):
    """Band-split RoPE transformer separator (see the module docstring).

    Default configuration (4 stems, stereo, 44.1 kHz, 62 bands, dim 128, depth 6): 38,484,996 parameters,
    of which 33,206,304 are the four mask estimators (the band MLPs to up to 129 x 2 x 2 outputs dominate).

    Args:
        sources: names of the ``S`` stems, all estimated by the one model.
        channels: audio channels.
        sample_rate: rate the model works at (the band split depends on it).
        n_fft: STFT size.
        hop_length: STFT hop.
        dim: transformer width.
        depth: number of (time, band) transformer pairs.
        heads: attention heads.
        dim_head: features per head.
        ff_mult: feed-forward expansion.
        mask_mult: hidden expansion of the mask-estimator MLPs.
        attn_dropout: dropout on attention weights and the attention output.
        ff_dropout: dropout in the feed-forward layers.
        edges_hz, bins_per_band, top_bands: the band split (:func:`band_split_widths`).
        freqs_per_bands: explicit band widths (bins, low to high, summing to ``n_fft // 2 + 1``); overrides
            the three arguments above (the reference's ``freqs_per_bands``).
        time_transformer_depth, freq_transformer_depth: layers in each time / band transformer.
        mask_depth: linear layers of each mask-estimator MLP (the reference's ``mask_estimator_depth``).
    """

    def __init__(
        self,
        sources: Sequence[str] = MUSDB_STEMS,
        channels: int = 2,
        sample_rate: int = 44100,
        n_fft: int = 2048,
        hop_length: int = 441,
        dim: int = 128,
        depth: int = 6,
        heads: int = 8,
        dim_head: int = 64,
        ff_mult: int = 4,
        mask_mult: int = 4,
        attn_dropout: float = 0.1,
        ff_dropout: float = 0.1,
        edges_hz: Sequence[float] = V7_EDGES_HZ,
        bins_per_band: Sequence[int] = V7_BINS_PER_BAND,
        top_bands: int = V7_TOP_BANDS,
        freqs_per_bands: Optional[Sequence[int]] = None,
        time_transformer_depth: int = 1,
        freq_transformer_depth: int = 1,
        mask_depth: int = 2,
    ) -> None:
        if freqs_per_bands is None:
            widths = band_split_widths(n_fft, sample_rate, edges_hz, bins_per_band, top_bands)
        else:
            widths = [int(w) for w in freqs_per_bands]
            if sum(widths) != n_fft // 2 + 1:
                raise ValueError(f"freqs_per_bands sum to {sum(widths)}, n_fft={n_fft} has {n_fft // 2 + 1} bins")
        super().__init__(
            sources, channels, sample_rate, n_fft, hop_length, range(sum(widths)), widths, dim, depth, heads,
            dim_head, ff_mult, time_transformer_depth, freq_transformer_depth, mask_mult, mask_depth,
            attn_dropout, ff_dropout, norm_each_transformer=False,
        )

    @classmethod
    def from_bs_roformer(
        cls,
        state_dict: Mapping[str, Tensor],
        sources: Optional[Sequence[str]] = None,
        sample_rate: int = 44100,
        **config: Any,
    ) -> "BSRoFormer":
        """A model holding the weights of a ``bs_roformer.BSRoformer`` (``bs-roformer`` 0.3.x layout).

        Args:
            state_dict: the reference model's ``state_dict()`` (a Music-Source-Separation-Training checkpoint:
                a bare state dict, or one under ``"state_dict"`` / ``"model"``; ``module.`` prefixes are
                dropped).
            sources: stem names, in the checkpoint's stem order (default ``stem0``, ``stem1``, ...).
            sample_rate: rate the checkpoint works at (not part of the reference's config).
            **config: the reference constructor's arguments (a Music-Source-Separation-Training YAML's
                ``model:`` section): ``dim``, ``depth``, ``stereo``, ``num_stems``, ``freqs_per_bands``,
                ``stft_hop_length``, ... Absent ones take the reference's defaults; loss-only keys are
                ignored.

        Returns:
            The converted model in eval mode, giving the reference's output for the same input.
        """
        return cls._from_reference(state_dict, _reference_options(config, mel=False, sources=sources,
                                                                  sample_rate=sample_rate))


# ------------------------------------------------------------------------------------- checkpoint layout
#: The reference constructors' defaults (bs-roformer 0.3.10), used where a config leaves a key out.
_REFERENCE_DEFAULTS: Dict[str, Any] = dict(
    stereo=False, num_stems=1, time_transformer_depth=2, freq_transformer_depth=2, dim_head=64, heads=8,
    stft_n_fft=2048, stft_hop_length=512, stft_win_length=2048, stft_normalized=False, mlp_expansion_factor=4,
    linear_transformer_depth=0, skip_connection=False,
)
_BS_DEFAULTS: Dict[str, Any] = dict(attn_dropout=0.0, ff_dropout=0.0, mask_estimator_depth=2, freqs_per_bands=(
    (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)))
_MEL_DEFAULTS: Dict[str, Any] = dict(attn_dropout=0.1, ff_dropout=0.1, mask_estimator_depth=1, num_bands=60)
#: Keys that configure the reference's training loss or its implementation, not the network.
_IGNORED_KEYS = frozenset({
    "flash_attn", "dim_freqs_in", "stft_window_fn", "multi_stft_resolution_loss_weight",
    "multi_stft_resolutions_window_sizes", "multi_stft_hop_size", "multi_stft_normalized", "multi_stft_window_fn",
    "use_torch_checkpoint", "match_input_audio_length", "sample_rate",
})


def _reference_options(
    config: Mapping[str, Any], mel: bool, sources: Optional[Sequence[str]], sample_rate: int
) -> Dict[str, Any]:
    """Our constructor's arguments for a reference config (bs-roformer 0.3.x / MSST ``model:`` section)."""
    known = set(_REFERENCE_DEFAULTS) | set(_MEL_DEFAULTS if mel else _BS_DEFAULTS) | _IGNORED_KEYS | {"dim", "depth"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"unknown {'MelBandRoformer' if mel else 'BSRoformer'} config keys {unknown}")
    if "dim" not in config or "depth" not in config:
        raise ConfigError("the reference config must give 'dim' and 'depth'")
    c = {**_REFERENCE_DEFAULTS, **(_MEL_DEFAULTS if mel else _BS_DEFAULTS), **config}
    unsupported = {
        "linear_transformer_depth": (c["linear_transformer_depth"], 0),
        "skip_connection": (c["skip_connection"], False),
        "stft_normalized": (c["stft_normalized"], False),
        "stft_win_length": (c["stft_win_length"], c["stft_n_fft"]),
    }
    for key, (value, expected) in unsupported.items():
        if value != expected:
            raise ConfigError(f"{key}={value!r} is not supported (only {expected!r})")
    if c.get("stft_window_fn") is not None:
        raise ConfigError("only the default Hann STFT window is supported (stft_window_fn must be None)")
    stems = int(c["num_stems"])
    names = tuple(sources) if sources is not None else tuple(f"stem{i}" for i in range(stems))
    if len(names) != stems:
        raise ConfigError(f"{len(names)} source names {list(names)} for num_stems={stems}")
    # The reference's MLP depth counts differently in its two models (BS: linear layers; Mel: hidden ones).
    mask_depth = int(c["mask_estimator_depth"]) + (1 if mel else 0)
    options: Dict[str, Any] = dict(
        sources=names, channels=2 if c["stereo"] else 1, sample_rate=int(config.get("sample_rate", sample_rate)),
        n_fft=int(c["stft_n_fft"]), hop_length=int(c["stft_hop_length"]), dim=int(c["dim"]), depth=int(c["depth"]),
        heads=int(c["heads"]), dim_head=int(c["dim_head"]), mask_mult=int(c["mlp_expansion_factor"]),
        attn_dropout=float(c["attn_dropout"]), ff_dropout=float(c["ff_dropout"]),
        time_transformer_depth=int(c["time_transformer_depth"]), freq_transformer_depth=int(c["freq_transformer_depth"]),
        mask_depth=mask_depth,
    )
    if mel:
        options["num_bands"] = int(c["num_bands"])
    else:
        options["freqs_per_bands"] = [int(w) for w in c["freqs_per_bands"]]
    return options


_KEY_RULES: Tuple[Tuple[str, str], ...] = (
    (r"^(layers\.\d+\.\d\.layers\.\d+)\.0\.norm\.gamma$", r"\1.attention.norm.weight"),
    (r"^(layers\.\d+\.\d\.layers\.\d+)\.0\.to_qkv\.weight$", r"\1.attention.qkv.weight"),
    (r"^(layers\.\d+\.\d\.layers\.\d+)\.0\.to_gates\.(weight|bias)$", r"\1.attention.gates.\2"),
    (r"^(layers\.\d+\.\d\.layers\.\d+)\.0\.to_out\.0\.weight$", r"\1.attention.out.weight"),
    (r"^(layers\.\d+\.\d\.layers\.\d+)\.1\.net\.0\.gamma$", r"\1.feedforward.net.0.weight"),
    (r"^(layers\.\d+\.\d\.layers\.\d+)\.1\.net\.(\d)\.(weight|bias)$", r"\1.feedforward.net.\2.\3"),
    (r"^(layers\.\d+\.\d)\.norm\.gamma$", r"\1.norm.weight"),
    (r"^final_norm\.gamma$", r"final_norm.weight"),
    (r"^band_split\.to_features\.(\d+)\.0\.gamma$", r"band_split.projections.\1.0.weight"),
    (r"^band_split\.to_features\.(\d+)\.1\.(weight|bias)$", r"band_split.projections.\1.1.\2"),
    (r"^mask_estimators\.(\d+)\.to_freqs\.(\d+)\.0\.(\d+)\.(weight|bias)$", r"mask_estimators.\1.mlps.\2.\3.\4"),
)
_ROTARY_KEY = re.compile(r"\.rotary_embed\.freqs$")


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> Dict[str, Tensor]:
    """A bare state dict from a training checkpoint (``state_dict`` / ``model`` entries, ``module.`` prefixes)."""
    state: Mapping[str, Any] = checkpoint
    for key in ("state_dict", "model"):
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping):
            state = inner
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        if isinstance(value, Tensor):
            out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def convert_bs_roformer_state(state_dict: Mapping[str, Any], target: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Rename a reference (bs-roformer 0.3.x) state dict to this module's layout.

    Args:
        state_dict: the reference's state dict (or a checkpoint holding it).
        target: the receiving model's ``state_dict()``, to check names and shapes against.

    Returns:
        A state dict ``target``'s model loads strictly.
    """
    converted: Dict[str, Tensor] = {}
    unknown: List[str] = []
    for key, value in unwrap_state_dict(state_dict).items():
        if _ROTARY_KEY.search(key):
            # Fixed rotary frequencies (not learnt), recomputed by RotaryEmbedding: only check they are those.
            expected = RotaryEmbedding(2 * value.numel()).inv_freq
            if not torch.allclose(value.float().cpu(), expected, rtol=1e-5, atol=0.0):
                raise ConfigError(f"{key}: rotary frequencies other than the default (theta 10000) are not supported")
            continue
        for pattern, replacement in _KEY_RULES:
            new, count = re.subn(pattern, replacement, key)
            if count:
                converted[new] = value
                break
        else:
            unknown.append(key)
    missing = sorted(set(target) - set(converted))
    if unknown or missing:
        raise ConfigError(
            f"checkpoint does not match the config: unexpected keys {unknown[:5]}{'...' if len(unknown) > 5 else ''}, "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}"
        )
    for key, value in converted.items():
        if key not in target:
            raise ConfigError(f"checkpoint key {key} has no place in the model built from the config")
        if tuple(value.shape) != tuple(target[key].shape):
            raise ConfigError(
                f"checkpoint tensor {key} is {tuple(value.shape)}, the config builds {tuple(target[key].shape)}"
            )
    return converted
