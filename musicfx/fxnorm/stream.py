"""FxNorm normalization of a file of any length, in bounded memory.

:func:`~musicfx.fxnorm.normalize.normalize_stem` measures the whole stem (its average spectrum, onset
levels, loudness). Here those choices are made once, on a bounded excerpt of the file
(:func:`excerpt`: up to :data:`EXCERPT_SECONDS` seconds in evenly spaced pieces across the whole file),
and the resulting fixed processing (:class:`StreamNormalization`) is then applied segment by segment by
the streaming engine (:func:`musicfx.restore.normalize_file` runs it through
:func:`musicfx.inference.process_files`, 30 s segments cross-faded over 10 %):

* **eq**: the gain to ``eq_lufs`` and the matching FIR, both from the excerpt;
* **compression**: the peak-normalising gain (the excerpt's peak after EQ) and the compressor setting the
  search picks on the excerpt; the compressor itself runs per segment (its detector restarts at each
  segment start, inside the cross-fade);
* **panning** (stereo only): per STFT bin, per segment; which side a centred stem leans to is decided
  per segment;
* **loudness**: one gain, that brings the excerpt processed as above to the stem type's mean LUFS.

The reverb stage is not offered (restoration wants dry tracks). Silent or too short excerpts leave the
file unchanged (a copy).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import torch

from musicfx.audio.fx import compressor, fir_filter
from musicfx.audio.io import audio_info, read_audio
from musicfx.audio.loudness import loudness_gain_db
from musicfx.fxnorm.features import FxNormFeatures, usable
from musicfx.fxnorm.normalize import (
    COMPRESSOR_PRESETS, NormalizeOptions, compressor_setting, eq_filter, match_panning,
)

#: Longest excerpt the normalization choices are made on, seconds, and how many pieces it is taken in.
EXCERPT_SECONDS, EXCERPT_PIECES = 60.0, 6


def excerpt(path: Path, sample_rate: Optional[int] = None, seconds: Optional[float] = None,
            pieces: Optional[int] = None) -> Tuple[torch.Tensor, int]:
    """Up to ``seconds`` of a file: the whole file when shorter, else ``pieces`` evenly spaced pieces joined.

    Args:
        path: an audio file.
        sample_rate: resample to this rate (``None``: the file's).
        seconds: longest excerpt (default :data:`EXCERPT_SECONDS`); pieces: how many pieces it is cut into
            (default :data:`EXCERPT_PIECES`).

    Returns:
        ``(channels, time)`` and its rate.
    """
    seconds = EXCERPT_SECONDS if seconds is None else seconds
    pieces = EXCERPT_PIECES if pieces is None else pieces
    info = audio_info(path)
    length = int(seconds * info.sample_rate)
    if info.frames <= length:
        return read_audio(path, sample_rate=sample_rate)
    piece = length // pieces
    starts = torch.linspace(0, info.frames - piece, pieces).round().long().tolist()
    parts = [read_audio(path, sample_rate=sample_rate, start=start, frames=piece)[0] for start in starts]
    return torch.cat(parts, dim=-1), sample_rate or info.sample_rate


@dataclass(frozen=True)
class StreamNormalization:
    """Fixed processing chosen on an excerpt: ``loud * pan(compress(peak * fir(eq_gain * x)))``.

    Attributes:
        stem: stem type (picks the compressor preset and panning range).
        eq_gain, peak_gain, loud_gain: linear gains; taps: the EQ FIR (``None``: no EQ).
        setting: compressor ``(threshold_db, ratio)`` or ``None``.
        pan_target: the panning stage's target similarity, or ``None`` (mono or not asked).
        identity: the stem was unusable (silent, too short): nothing is changed.
    """

    stem: str
    eq_gain: float = 1.0
    taps: Optional[torch.Tensor] = None
    peak_gain: float = 1.0
    setting: Optional[Tuple[float, float]] = None
    pan_target: Optional[Any] = None
    loud_gain: float = 1.0
    identity: bool = False

    def apply(self, audio: torch.Tensor, sample_rate: int, features: FxNormFeatures,
              options: Optional[NormalizeOptions] = None) -> torch.Tensor:
        """Run the chain on ``(channels, time)`` at the features' rate."""
        if self.identity:
            return audio
        out = audio.float() * self.eq_gain
        if self.taps is not None:
            out = fir_filter(out, self.taps, zero_phase=True)
        return self._finish(out * self.peak_gain, sample_rate, features, options)

    def _finish(self, out: torch.Tensor, sample_rate: int, features: FxNormFeatures,
                options: Optional[NormalizeOptions]) -> torch.Tensor:
        """The chain after the EQ and the peak gain: compressor, panning, loudness."""
        if self.setting is not None:
            attack, release, _ = COMPRESSOR_PRESETS.get(self.stem, COMPRESSOR_PRESETS["other"])
            out = compressor(out, sample_rate, self.setting[0], self.setting[1], attack_ms=attack,
                             release_ms=release, knee_db=0.0, detector="peak")
        if self.pan_target is not None and out.shape[0] == 2:
            out = match_panning(out, self.pan_target, self.stem, features, sample_rate, options)
        return out * self.loud_gain


def plan(audio: torch.Tensor, stem: str, features: FxNormFeatures,
         options: Optional[NormalizeOptions] = None) -> StreamNormalization:
    """Choose the normalization of a stem from an excerpt of it.

    Args:
        audio: ``(channels, time)`` excerpt at ``features.config.sample_rate``.
        stem: stem type (``vocals``, ``drums``, ``bass``, ``other``); its features must exist.
        features: the targets.
        options: see :class:`~musicfx.fxnorm.normalize.NormalizeOptions`.
    """
    rate, config = features.config.sample_rate, features.config
    x = audio.float()
    if usable(x, rate) is not None:
        return StreamNormalization(stem, identity=True)
    eq_gain = 10.0 ** (float(loudness_gain_db(x, rate, config.eq_lufs)) / 20.0)
    levelled = x * eq_gain
    taps = eq_filter(levelled, features.require(stem, "eq"), stem, features, rate, options)
    out = fir_filter(levelled, taps, zero_phase=True)
    peak_gain = 10.0 ** (config.peak_db / 20.0) / max(float(out.abs().max()), 1e-12)
    out = out * peak_gain
    setting = compressor_setting(out, features.require(stem, "dynamics"), stem, features, rate, options)
    pan_target = features.require(stem, "panning") if x.shape[0] == 2 else None
    chosen = StreamNormalization(stem, eq_gain, taps, peak_gain, setting, pan_target)
    processed = chosen._finish(out, rate, features, options)  # the EQ'd excerpt is reused, not filtered again
    loud_gain = 10.0 ** (float(loudness_gain_db(processed, rate, float(features.require(stem, "loudness")[0]))) / 20.0)
    return StreamNormalization(stem, eq_gain, taps, peak_gain, setting, pan_target, loud_gain)
