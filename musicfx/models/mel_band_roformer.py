"""Mel-Band RoFormer (Wang, Lu & Won, "Mel-Band RoFormer for Music Source Separation", arXiv:2310.01809),
re-implemented, and weight-compatible with ``bs_roformer.MelBandRoformer`` of the ``bs-roformer`` 0.3.x
package (:meth:`MelBandRoFormer.from_mel_band_roformer`).

BS-RoFormer (:mod:`musicfx.models.bs_roformer`) with another band split: ``num_bands`` bands that follow the
mel scale and **overlap**. Band ``k`` reads every STFT bin where the ``k``-th triangular filter of a Slaney
mel filter bank (the one ``librosa.filters.mel`` builds, 0 Hz to Nyquist) is non-zero; the first and the
last bin are given to the first and the last band so that every bin belongs to at least one band. Each
band's features go through RMSNorm + Linear as in BS-RoFormer; the mask estimators give every band its
bins' complex masks, and a bin covered by several bands takes the mean of their masks. In the reference
layout every time and band transformer ends with an RMSNorm (BS-RoFormer has one final RMSNorm instead),
and the mask MLPs have one hidden layer.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from torch import Tensor

from musicfx.audio.stems import MUSDB_STEMS
from musicfx.models.bs_roformer import BandRoFormer, _reference_options

__all__ = ["MelBandRoFormer", "mel_band_bins"]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per 6.4x)."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log_step = np.log(6.4) / 27.0
    above = hz >= 1000.0
    mel = np.where(above, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step, mel)
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * (200.0 / 3))


def mel_band_bins(n_fft: int, sample_rate: int, num_bands: int) -> Tuple[List[int], List[int]]:
    """The bins of each mel band: where a Slaney triangular filter from 0 Hz to Nyquist is non-zero.

    Args:
        n_fft: FFT size.
        sample_rate: in Hz.
        num_bands: number of mel filters.

    Returns:
        ``(bins, widths)``: the bin indices band after band (ascending within a band), and each band's count.
    """
    if num_bands < 2:
        raise ValueError(f"num_bands must be >= 2, got {num_bands}")
    n_bins = n_fft // 2 + 1
    fft_hz = np.arange(n_bins, dtype=np.float64) * (sample_rate / n_fft)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), num_bands + 2))
    spacing = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / spacing[:-1, None]
    falling = ramps[2:] / spacing[1:, None]
    member = np.minimum(rising, falling).astype(np.float32) > 0  # (bands, bins)
    member[0, 0] = member[-1, -1] = True  # DC and Nyquist lie on the outer filters' zero ends
    if not member.any(axis=0).all():
        missing = np.flatnonzero(~member.any(axis=0)).tolist()
        raise ValueError(f"with {num_bands} mel bands at n_fft={n_fft}, bins {missing[:8]} fall in no band")
    bins: List[int] = []
    widths: List[int] = []
    for row in member:
        found = np.flatnonzero(row).tolist()
        if not found:
            raise ValueError(f"{num_bands} mel bands are too many for n_fft={n_fft}: a band has no bin")
        bins += found
        widths.append(len(found))
    return bins, widths


class MelBandRoFormer(BandRoFormer):
    """Mel-band RoPE transformer separator (see the module docstring).

    Args:
        sources: names of the ``S`` stems, all estimated by the one model.
        channels: audio channels.
        sample_rate: rate the model works at (the mel bands depend on it).
        n_fft: STFT size.
        hop_length: STFT hop.
        num_bands: mel bands.
        dim: transformer width.
        depth: number of (time, band) transformer pairs.
        heads: attention heads.
        dim_head: features per head.
        ff_mult: feed-forward expansion.
        mask_mult: hidden expansion of the mask-estimator MLPs.
        mask_depth: linear layers of each mask-estimator MLP (the reference's ``mask_estimator_depth`` + 1).
        attn_dropout: dropout on attention weights and the attention output.
        ff_dropout: dropout in the feed-forward layers.
        time_transformer_depth, freq_transformer_depth: layers in each time / band transformer.
    """

    def __init__(
        self,
        sources: Sequence[str] = MUSDB_STEMS,
        channels: int = 2,
        sample_rate: int = 44100,
        n_fft: int = 2048,
        hop_length: int = 441,
        num_bands: int = 60,
        dim: int = 128,
        depth: int = 6,
        heads: int = 8,
        dim_head: int = 64,
        ff_mult: int = 4,
        mask_mult: int = 4,
        mask_depth: int = 2,
        attn_dropout: float = 0.1,
        ff_dropout: float = 0.1,
        time_transformer_depth: int = 1,
        freq_transformer_depth: int = 1,
    ) -> None:
        bins, widths = mel_band_bins(n_fft, sample_rate, num_bands)
        super().__init__(
            sources, channels, sample_rate, n_fft, hop_length, bins, widths, dim, depth, heads, dim_head, ff_mult,
            time_transformer_depth, freq_transformer_depth, mask_mult, mask_depth, attn_dropout, ff_dropout,
            norm_each_transformer=True,
        )

    @classmethod
    def from_mel_band_roformer(
        cls,
        state_dict: Mapping[str, Tensor],
        sources: Optional[Sequence[str]] = None,
        sample_rate: int = 44100,
        **config: Any,
    ) -> "MelBandRoFormer":
        """A model holding the weights of a ``bs_roformer.MelBandRoformer`` (``bs-roformer`` 0.3.x layout).

        Args:
            state_dict: the reference model's ``state_dict()`` or a training checkpoint holding it.
            sources: stem names in the checkpoint's stem order (default ``stem0``, ``stem1``, ...).
            sample_rate: rate the checkpoint works at, unless the config gives ``sample_rate``.
            **config: the reference constructor's arguments (a Music-Source-Separation-Training YAML's
                ``model:`` section); absent ones take the reference's defaults.

        Returns:
            The converted model in eval mode.
        """
        return cls._from_reference(state_dict, _reference_options(config, mel=True, sources=sources,
                                                                  sample_rate=sample_rate))
