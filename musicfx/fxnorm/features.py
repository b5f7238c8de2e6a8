"""Dataset-average audio-effect features per stem type, the targets of FxNorm effect normalization.

FxNorm-automix (Martínez-Ramírez et al., ISMIR 2022) trains a mixing model on stems whose effects have been
*normalized*: every vocals stem is equalised, compressed, panned and levelled toward what an average
vocals stem of the dataset sounds like, so the model learns to mix rather than to undo each producer's
processing. This module measures those averages; :mod:`musicfx.fxnorm.normalize` applies them.

Features, per stem type (``vocals``, ``drums``, ``bass``, ``other`` by default; any names work):

* ``eq``: the average magnitude spectrum, ``mean |STFT|`` over frames and channels with a 65536-point FFT
  (hop 16384) after the stem is brought to -30 LUFS, averaged over stems and smoothed along frequency
  (the reference's first-order Savitzky-Golay filters of 401 bins for vocals/other and 151 bins for
  drums/bass, i.e. a moving average over 270 Hz and 102 Hz; expressed here in Hz so they keep their
  meaning at any FFT size).
* ``dynamics``: ``(mean, std)`` in dB of the onset peak levels above their 75th percentile, measured with
  the stem peak-normalised to -10 dBFS (:mod:`musicfx.fxnorm.onsets` replaces aubio's detector).
* ``panning``: the inter-channel similarity ``psi(f) = 2 |L||R| / (|L|^2 + |R|^2)`` of Avendano's stereo
  panning spectrum, averaged over frames per frequency bin of a 2048-point STFT and smoothed over 337 Hz.
  ``1 - psi`` is the magnitude of the panning spectrum (:func:`stereo_panning_spectrum`), whose sign
  says left or right.
* ``loudness``: the mean integrated loudness in LUFS (BS.1770, :mod:`musicfx.audio.loudness`).

Like the reference code, features are by default measured *in the normalization order*: the EQ curve
on the stems as they are, the dynamics after EQ normalization, the panning after EQ and compression,
the loudness after all three (``sequential=False`` measures everything on the stems as they are, in one
pass). Deviations from the reference, each for a reason given where it is made: the panning feature is
measured directly at the 2048-point resolution the panning stage uses (the reference measures at 65536
points and averages groups of 32 bins), frames are weighted by their energy so silence does not count as
"centred", and features are measured without the optional reverb send.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from musicfx.audio.io import atomic_path
from musicfx.audio.loudness import integrated_loudness, normalize_loudness
from musicfx.audio.spectral import stft
from musicfx.errors import DataError
from musicfx.fxnorm.onsets import detect_onsets, onset_peak_levels, peak_statistics

PathLike = Union[str, os.PathLike]

#: Bumped whenever what a feature file holds, or how a feature is measured, changes.
FEATURES_VERSION = 1
STEMS: Tuple[str, ...] = ("vocals", "drums", "bass", "other")
#: Feature names, in the order they are measured and normalised.
FEATURES: Tuple[str, ...] = ("eq", "dynamics", "panning", "loudness")
#: Moving-average width of the EQ curve per stem type, in Hz (reference: 401 / 151 bins at 0.67 Hz).
EQ_SMOOTH_HZ: Mapping[str, float] = {"vocals": 270.0, "other": 270.0, "drums": 102.0, "bass": 102.0}
DEFAULT_EQ_SMOOTH_HZ = 270.0
#: Below this peak level a stem counts as silent and is neither measured nor processed (reference: -50).
SILENCE_DB = -50.0


@dataclass(frozen=True)
class FxNormConfig:
    """How features are measured (and so how normalization must measure its inputs).

    Args:
        sample_rate: stems are resampled to this rate.
        n_fft: FFT size of the EQ curve; its hop is ``n_fft // 4``.
        eq_lufs: loudness the stem is brought to before its EQ curve is measured.
        pan_n_fft: FFT size of the panning spectrum; its hop is ``pan_n_fft // 4``.
        pan_smooth_hz: moving-average width of the panning curve (reference: 501 bins at 0.67 Hz).
        peak_db: peak level a stem is normalised to before its onset peaks are measured.
        percentile: only onset peaks above this percentile of their levels count.
    """

    sample_rate: int = 44100
    n_fft: int = 65536
    eq_lufs: float = -30.0
    pan_n_fft: int = 2048
    pan_smooth_hz: float = 337.0
    peak_db: float = -10.0
    percentile: float = 75.0

    def __post_init__(self) -> None:
        for name in ("n_fft", "pan_n_fft"):
            value = getattr(self, name)
            if value < 16 or value % 4:
                raise ValueError(f"{name} must be a multiple of 4 and >= 16, got {value}")
        if not 0.0 <= self.percentile < 100.0:
            raise ValueError(f"percentile must be in [0, 100), got {self.percentile}")


# ------------------------------------------------------------------------------------------ measures


def smooth_curve(curve: torch.Tensor, width_hz: float, sample_rate: int, n_fft: int) -> torch.Tensor:
    """Moving average along frequency with mirrored edges (a first-order Savitzky-Golay filter).

    Args:
        curve: ``(..., n_fft // 2 + 1)``.
        width_hz: window width; rounded to an odd number of bins, at least 1.
        sample_rate, n_fft: define the bin spacing.

    Returns:
        Smoothed curve, same shape.
    """
    bins = curve.shape[-1]
    width = int(round(width_hz * n_fft / sample_rate))
    width = min(width + 1 - width % 2, 2 * bins - 1)  # odd; reflect padding needs width // 2 < bins
    if width <= 1:
        return curve
    half = width // 2
    flat = curve.reshape(-1, 1, bins).double()
    padded = torch.nn.functional.pad(flat, (half, half), mode="reflect")[:, 0]
    sums = torch.nn.functional.pad(padded.cumsum(-1), (1, 0))  # running sums: O(bins) for any width
    return ((sums[:, width:] - sums[:, :-width]) / width).reshape(curve.shape).to(curve.dtype)


def eq_curve(
    audio: torch.Tensor, sample_rate: int, n_fft: int = 65536, lufs: Optional[float] = -30.0
) -> torch.Tensor:
    """Average magnitude spectrum of a stem brought to ``lufs``.

    Args:
        audio: ``(channels, time)``.
        sample_rate: in Hz.
        n_fft: FFT size (hop ``n_fft // 4``, Hann window).
        lufs: loudness the stem is normalised to first, so curves of loud and quiet stems compare
            (``None``: the audio is already there).

    Returns:
        ``(n_fft // 2 + 1,)`` float32 mean ``|STFT|`` over frames and channels.
    """
    levelled = audio.float() if lufs is None else normalize_loudness(audio.float(), sample_rate, lufs)
    spec = stft(levelled, n_fft, n_fft // 4).abs()
    return spec.mean(dim=(0, -1))


def stereo_panning_spectrum(
    audio: torch.Tensor, n_fft: int = 2048, hop_length: Optional[int] = None, eps: float = 1e-10
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Avendano's stereo panning spectrum (SPS) of a stereo signal.

    Per time-frequency bin, the similarity ``psi = 2 |L||R| / (|L|^2 + |R|^2)`` is 1 for a centred source
    and 0 for one panned hard to a side; ``sps = (1 - psi) * sign(|R| - |L|)`` is 0 in the centre, -1 hard
    left and +1 hard right (C. Avendano, "Frequency-domain source identification and manipulation in
    stereo mixes for enhancement, suppression and re-panning applications", WASPAA 2003). Silent bins
    count as centred.

    Args:
        audio: ``(..., 2, time)``.
        n_fft: FFT size.
        hop_length: frame step (default ``n_fft // 4``).
        eps: regulariser of the ratio, in squared magnitude.

    Returns:
        ``(similarity, sps, energy)``, each ``(..., n_fft // 2 + 1, frames)``; ``energy`` is
        ``|L|^2 + |R|^2``, the natural weight when averaging the other two.
    """
    if audio.dim() < 2 or audio.shape[-2] != 2:
        raise ValueError(f"the panning spectrum needs stereo audio (..., 2, time), got {tuple(audio.shape)}")
    spec = stft(audio, n_fft, hop_length or n_fft // 4)
    left, right = spec[..., 0, :, :].abs().double(), spec[..., 1, :, :].abs().double()
    energy = left.square() + right.square()
    similarity = (2.0 * left * right + eps) / (energy + eps)
    sps = (1.0 - similarity) * torch.sign(right - left)
    return similarity.float(), sps.float(), energy.float()


def panning_curve(audio: torch.Tensor, n_fft: int = 2048) -> torch.Tensor:
    """Energy-weighted mean similarity per frequency bin; 1 everywhere for mono audio.

    Weighting by energy keeps silent and near-silent frames (which measure as centred) from pulling a
    panned stem toward the centre.

    Args:
        audio: ``(channels, time)``.
        n_fft: FFT size of the panning spectrum.

    Returns:
        ``(n_fft // 2 + 1,)`` float32 in ``[0, 1]``.
    """
    if audio.shape[0] != 2:
        return torch.ones(n_fft // 2 + 1)
    similarity, _, energy = stereo_panning_spectrum(audio, n_fft)
    weight = energy.double()
    total = weight.sum(-1)
    mean = (similarity.double() * weight).sum(-1) / total.clamp_min(1e-30)
    return torch.where(total > 0, mean, torch.ones_like(mean)).float()


def onset_dynamics(
    audio: torch.Tensor, sample_rate: int, peak_db: float = -10.0, percentile: float = 75.0
) -> Optional[Tuple[float, float]]:
    """Mean and standard deviation of a stem's loudest onset peaks, with the stem peaking at ``peak_db``.

    Args:
        audio: ``(channels, time)``.
        sample_rate: in Hz.
        peak_db: peak normalisation level first applied (reference: -10 dBFS).
        percentile: see :func:`~musicfx.fxnorm.onsets.peak_statistics`.

    Returns:
        ``(mean_db, std_db)``, or ``None`` when the stem is silent or has no onset.
    """
    peak = float(audio.abs().max())
    if peak == 0.0:
        return None
    scaled = audio.float() * (10.0 ** (peak_db / 20.0) / peak)
    onsets = detect_onsets(scaled, sample_rate)
    if onsets.numel() == 0:
        return None
    return peak_statistics(onset_peak_levels(scaled, sample_rate, onsets), percentile)


def stem_loudness(audio: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness in LUFS (``-inf`` for silence or less than 400 ms)."""
    return float(integrated_loudness(audio.float(), sample_rate))


def measure_stem(
    audio: torch.Tensor, sample_rate: int, config: FxNormConfig, features: Sequence[str] = FEATURES
) -> Dict[str, np.ndarray]:
    """The raw (unsmoothed) features of one stem.

    Args:
        audio: ``(channels, time)`` at ``sample_rate``.
        sample_rate: in Hz.
        config: measurement settings.
        features: which of :data:`FEATURES` to measure.

    Returns:
        ``{name: float64 array}``: ``eq`` ``(n_fft // 2 + 1,)``, ``dynamics`` ``(2,)``, ``panning``
        ``(pan_n_fft // 2 + 1,)``, ``loudness`` ``(1,)``; a feature that cannot be measured (no onsets,
        no loudness) is left out.
    """

    out: Dict[str, np.ndarray] = {}
    for name in features:
        if name == "eq":
            out[name] = eq_curve(audio, sample_rate, config.n_fft, config.eq_lufs).double().numpy()
        elif name == "dynamics":
            stats = onset_dynamics(audio, sample_rate, config.peak_db, config.percentile)
            if stats is not None:
                out[name] = np.asarray(stats, dtype=np.float64)
        elif name == "panning":
            out[name] = panning_curve(audio, config.pan_n_fft).double().numpy()
        elif name == "loudness":
            value = stem_loudness(audio, sample_rate)
            if math.isfinite(value):
                out[name] = np.asarray([value], dtype=np.float64)
        else:
            raise ValueError(f"unknown feature {name!r}; expected one of {FEATURES}")
    return out


def usable(audio: torch.Tensor, sample_rate: int) -> Optional[str]:
    """Why a stem cannot be measured or normalised (silent, too short), or ``None`` if it can."""
    if audio.shape[-1] < int(0.4 * sample_rate):
        return f"shorter than 0.4 s ({audio.shape[-1]} samples)"
    peak = float(audio.abs().max())
    if peak == 0.0 or 20.0 * math.log10(peak) <= SILENCE_DB:
        return f"silent (peak below {SILENCE_DB:g} dBFS)"
    return None


# ------------------------------------------------------------------------------------------ container


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    sha = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        sha.update(key.encode())
        sha.update(str(value.dtype).encode())
        sha.update(value.tobytes())
    return sha.hexdigest()


@dataclass
class FxNormFeatures:
    """Dataset-average features per stem type: the targets of :func:`~musicfx.fxnorm.normalize.normalize_stem`.

    Attributes:
        eq: stem -> ``(n_fft // 2 + 1,)`` smoothed average magnitude spectrum at ``config.eq_lufs``.
        dynamics: stem -> ``(2,)`` mean and standard deviation (dB) of loud onset peaks at
            ``config.peak_db`` peak level.
        panning: stem -> ``(pan_n_fft // 2 + 1,)`` smoothed similarity per bin (1 = centred).
        loudness: stem -> mean integrated loudness in LUFS.
        counts: stem -> number of stems the features were averaged over.
        config: how they were measured.
        version: :data:`FEATURES_VERSION` of the code that wrote them.
    """

    eq: Dict[str, np.ndarray] = field(default_factory=dict)
    dynamics: Dict[str, np.ndarray] = field(default_factory=dict)
    panning: Dict[str, np.ndarray] = field(default_factory=dict)
    loudness: Dict[str, float] = field(default_factory=dict)
    counts: Dict[str, int] = field(default_factory=dict)
    config: FxNormConfig = field(default_factory=FxNormConfig)
    version: int = FEATURES_VERSION

    @property
    def stems(self) -> Tuple[str, ...]:
        """Stem types with a feature of any kind."""
        names: List[str] = []
        for table in (self.eq, self.dynamics, self.panning, self.loudness):
            names.extend(name for name in table if name not in names)
        return tuple(names)

    def require(self, stem: str, feature: str) -> np.ndarray:
        """The ``feature`` of ``stem`` as an array; :class:`DataError` naming what is missing."""
        table = {"eq": self.eq, "dynamics": self.dynamics, "panning": self.panning, "loudness": self.loudness}[feature]
        if stem not in table:
            have = ", ".join(sorted(table)) or "none"
            raise DataError(f"features hold no {feature} target for stem {stem!r} (have: {have})")
        return np.atleast_1d(np.asarray(table[stem], dtype=np.float64))

    # -------------------------------------------------------------------------------- persistence

    def _arrays(self) -> Dict[str, np.ndarray]:
        arrays: Dict[str, np.ndarray] = {}
        for name in ("eq", "dynamics", "panning"):
            for stem, value in getattr(self, name).items():
                arrays[f"{name}/{stem}"] = np.asarray(value, dtype=np.float32)
        for stem, value in self.loudness.items():
            arrays[f"loudness/{stem}"] = np.asarray([value], dtype=np.float64)
        for stem, value in self.counts.items():
            arrays[f"counts/{stem}"] = np.asarray([value], dtype=np.int64)
        arrays["config"] = np.frombuffer(json.dumps(dataclasses.asdict(self.config), sort_keys=True).encode(), np.uint8)
        arrays["version"] = np.asarray([self.version], dtype=np.int64)
        return arrays

    def digest(self) -> str:
        """SHA-256 of everything the features hold; equal digests normalise identically."""
        return _digest(self._arrays())

    def save(self, path: PathLike) -> Path:
        """Write an ``.npz`` file atomically (a crash never leaves a half-written file)."""
        path = Path(path)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **self._arrays())
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:  # a file object, or numpy would append ".npz" to the name
                handle.write(buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: PathLike) -> "FxNormFeatures":
        """Read features written by :meth:`save`; :class:`DataError` for a missing or foreign file."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such features file (make one with `musicfx fxnorm features`)")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except Exception as error:
            raise DataError(f"{path}: not a features file ({type(error).__name__}: {error})") from None
        return cls._from_arrays(arrays, str(path))

    @classmethod
    def _from_arrays(cls, arrays: Mapping[str, np.ndarray], where: str) -> "FxNormFeatures":
        if "version" not in arrays or "config" not in arrays:
            raise DataError(f"{where}: not an FxNorm features file (no version/config)")
        version = int(arrays["version"][0])
        if version != FEATURES_VERSION:
            raise DataError(
                f"{where}: features version {version}, this musicfx reads version {FEATURES_VERSION}; "
                "recompute them with `musicfx fxnorm features`"
            )
        config = FxNormConfig(**json.loads(bytes(arrays["config"]).decode()))
        features = cls(config=config, version=version)
        for key, value in arrays.items():
            if "/" not in key:
                continue
            name, stem = key.split("/", 1)
            if name in ("eq", "dynamics", "panning"):
                getattr(features, name)[stem] = np.asarray(value, dtype=np.float64)
            elif name == "loudness":
                features.loudness[stem] = float(value[0])
            elif name == "counts":
                features.counts[stem] = int(value[0])
        return features

    @classmethod
    def builtin(cls) -> "FxNormFeatures":
        """Features of the built-in generator's stems (32 songs x 10 s), shipped with the package.

        They make normalization usable with no dataset; rebuild with ``tools/make_fxnorm_features.py``.
        """
        asset = resources.files("musicfx").joinpath("assets/fxnorm_generated.npz")
        with resources.as_file(asset) as path:
            return cls.load(path)


# ------------------------------------------------------------------------------------------ distances


def feature_distances(
    audio: torch.Tensor, stem: str, features: FxNormFeatures, sample_rate: int,
    band_hz: Tuple[float, float] = (50.0, 16000.0),
) -> Dict[str, float]:
    """How far one stem is from the targets, per feature (0: on target).

    * ``eq``: mean absolute dB difference between its smoothed EQ curve and the target in ``band_hz``.
    * ``dynamics``: absolute difference of the mean onset peak level, in dB.
    * ``panning``: mean absolute difference of the similarity curve (0..1), same band.
    * ``loudness``: absolute difference in LU.

    Args:
        audio: ``(channels, time)`` at ``sample_rate`` (which must match ``features.config``).
        stem: stem type.
        features: targets.
        sample_rate: in Hz.
        band_hz: frequency band the curves are compared in.

    Returns:
        ``{feature: distance}`` for the features that can be measured on ``audio``.
    """
    config = features.config
    if sample_rate != config.sample_rate:
        raise ValueError(f"features were measured at {config.sample_rate} Hz, audio is at {sample_rate} Hz")
    raw = measure_stem(audio, sample_rate, config)
    out: Dict[str, float] = {}
    width = EQ_SMOOTH_HZ.get(stem, DEFAULT_EQ_SMOOTH_HZ)
    for name, value in raw.items():
        target = features.require(stem, name)
        if name in ("eq", "panning"):
            n_fft = config.n_fft if name == "eq" else config.pan_n_fft
            smooth = width if name == "eq" else config.pan_smooth_hz
            curve = smooth_curve(torch.from_numpy(value), smooth, sample_rate, n_fft).numpy()
            freqs = np.linspace(0.0, sample_rate / 2.0, curve.shape[0])
            band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
            if name == "eq":
                diff = 20.0 * np.log10(np.maximum(curve, 1e-12) / np.maximum(target, 1e-12))
            else:
                diff = curve - target
            out[name] = float(np.mean(np.abs(diff[band])))
        else:
            out[name] = float(abs(value[0] - target[0]))
    return out
