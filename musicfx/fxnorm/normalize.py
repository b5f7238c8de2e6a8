"""FxNorm effect normalization: move a wet stem's effects toward the dataset-average features.

The stages run in the paper's order (Martínez-Ramírez et al., ISMIR 2022; ``sony/FxNorm-automix``
``data_normalization.py``):

1. **reverb** (only with an impulse-response folder): the reference cannot remove reverb, so it gives
   every vocals and other stem some: a send through a band-pass made of two -30 dB shelves (low shelf at
   500-700 Hz, high shelf at 7-10 kHz, the "Abbey Road" send EQ) into a 100 % wet convolution reverb
   with a randomly chosen impulse response, added in parallel to the dry stem. Drums and bass get none.
   Here the shelf corners and the response are drawn from a generator seeded by ``seed`` and the stem
   name (reproducible per song), and the response is scaled to unit energy.
2. **eq**: the stem is brought to -30 LUFS, its average ``|STFT|`` (65536-point FFT) is compared with the
   target curve, and the ratio becomes a 1001-tap linear-phase FIR (frequency sampling with a Hamming
   window, as ``scipy.signal.firwin2``), applied with zero phase. Deviations: the input curve is smoothed
   like the target (the filter cannot resolve finer detail anyway), the correction is limited to
   ``+-eq_max_gain_db`` so a band the stem does not occupy is not lifted into audible noise, and the
   filter is applied once with its delay removed instead of ``filtfilt`` with square-rooted gains (the
   same magnitude, half the cost).
3. **compression**: the stem is peak-normalised to -10 dBFS and the mean level of its loudest onset
   peaks (above the 75th percentile) is measured. If it lies outside the target's ``mean +- std``,
   compressor settings are scanned in the reference's order (ratio outer, from the stem type's preset;
   threshold inner, from -10 down to -40 dB) and the first setting that brings it across the near edge of
   that range is kept. Deviations: (i) candidates are measured peak-normalised, like the target (the
   reference measures them without re-normalising, so its search in effect only lowers the loud peaks'
   absolute level, which the loudness stage then undoes), in both directions (compression can raise the
   statistic as well as lower it), and when the range is out of reach the closest setting is kept (the
   reference keeps its last, strongest one); the expander, off by default in the reference, is not
   offered. (ii) The grid is coarser: thresholds every 2.5 dB, the first sufficient one refined to 0.5 dB
   by bisection, and only two ratios, the preset and 20 (the reference steps ratios by 1 and thresholds
   by 0.5 dB: up to ~1000 compressor runs per channel; with a peak detector the ratio matters far less
   than the threshold). (iii) The compressor is :func:`musicfx.audio.fx.compressor` with a peak detector
   and a hard knee, stereo-linked (the reference compresses each channel on its own, which moves the
   stereo image). (iv) Candidates are measured at the onsets of the uncompressed stem, on its envelope at
   block rate (see :class:`_PeakSearch`); only the chosen setting is run on the audio.
4. **panning**: per STFT bin (2048 points), the stem is re-panned with constant power so that its
   inter-channel similarity equals ``pan_gain`` (0.9, the reference's empirical factor) times the target
   similarity, toward the side the stem already leans to (right for a centred stem, as in the reference),
   keeping each channel's phase; bins above 16 kHz (6 kHz for drums) and near-silent bins are left as
   they are. Mono stems are not panned.
5. **loudness**: gain to the stem type's mean LUFS.

Stems that are silent (peak below -50 dBFS) or shorter than 0.4 s come back unchanged.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from musicfx.audio.fx import compressor, compressor_gain_db, fft_reverb, fir_filter, parametric_eq
from musicfx.audio.io import AUDIO_EXTENSIONS, atomic_path, read_audio, write_audio
from musicfx.audio.loudness import normalize_loudness
from musicfx.audio.spectral import fft_frequencies, istft, stft
from musicfx.data.impulse_responses import read_impulse_responses
from musicfx.data.multitrack import find_songs
from musicfx.data.sources import list_audio_files
from musicfx.errors import DataError, MusicfxError
from musicfx.fxnorm.features import (
    DEFAULT_EQ_SMOOTH_HZ,
    EQ_SMOOTH_HZ,
    FxNormFeatures,
    eq_curve,
    smooth_curve,
    usable,
)
from musicfx.fxnorm.onsets import detect_onsets, onset_peak_levels, peak_statistics

PathLike = Union[str, os.PathLike]

#: Normalization stages in the order they are applied.
EFFECTS: Tuple[str, ...] = ("reverb", "eq", "compression", "panning", "loudness")
#: Compressor presets per stem type: (attack ms, release ms, starting ratio) of the reference.
COMPRESSOR_PRESETS: Mapping[str, Tuple[float, float, float]] = {
    "vocals": (7.5, 400.0, 4.0),
    "drums": (10.0, 180.0, 6.0),
    "bass": (10.0, 500.0, 5.0),
    "other": (15.0, 666.0, 4.0),
}
#: Highest re-panned frequency per stem type (drums keep their cymbals' image).
PAN_MAX_HZ: Mapping[str, float] = {"drums": 6000.0}
DEFAULT_PAN_MAX_HZ = 16000.0
#: Stem types that get the reverb send.
REVERB_STEMS: Tuple[str, ...] = ("vocals", "other")
#: Bumped whenever a stage changes what it writes, so cached dataset outputs are redone.
NORMALIZE_VERSION = 1
MANIFEST_NAME = ".fxnorm.json"


@dataclass(frozen=True)
class NormalizeOptions:
    """Settings of the normalization stages (defaults: the reference's).

    Args:
        eq_taps: length of the EQ-matching FIR (odd, so it has an integer delay).
        eq_max_gain_db: limit of the EQ correction at any frequency.
        threshold_range_db: highest and lowest compressor threshold searched.
        coarse_step_db: spacing of the threshold scan.
        threshold_step_db: resolution the first sufficient threshold of the scan is refined to.
        max_ratio: the compressor ratio tried after the stem type's preset.
        pan_gain: factor on the target similarity (< 1 pans a little wider than the average).
        send_shelf_db: gain of the reverb send's two shelves.
        send_low_hz, send_high_hz: ranges the send's low- and high-shelf corners are drawn from.
    """

    eq_taps: int = 1001
    eq_max_gain_db: float = 24.0
    threshold_range_db: Tuple[float, float] = (-10.0, -40.0)
    coarse_step_db: float = 2.5
    threshold_step_db: float = 0.5
    max_ratio: float = 20.0
    pan_gain: float = 0.9
    send_shelf_db: float = -30.0
    send_low_hz: Tuple[float, float] = (500.0, 700.0)
    send_high_hz: Tuple[float, float] = (7000.0, 10000.0)

    def __post_init__(self) -> None:
        if self.eq_taps < 3 or self.eq_taps % 2 == 0:
            raise ValueError(f"eq_taps must be odd and >= 3, got {self.eq_taps}")
        if not 0.0 < self.pan_gain <= 1.0:
            raise ValueError(f"pan_gain must be in (0, 1], got {self.pan_gain}")


# ---------------------------------------------------------------------------------------------- reverb


@functools.lru_cache(maxsize=4)
def _impulse_responses(folder: str, sample_rate: int) -> Tuple[torch.Tensor, ...]:
    """Every audio file under ``folder`` at ``sample_rate``, scaled to unit energy (cached per process)."""
    responses = []
    for path, ir in read_impulse_responses(folder, sample_rate):
        energy = float(ir.double().square().sum())
        if energy == 0.0:
            raise DataError(f"{path}: impulse response is silent")
        responses.append(ir / math.sqrt(energy / ir.shape[0]))
    return tuple(responses)


def add_reverb_send(
    audio: torch.Tensor, sample_rate: int, ir_folder: PathLike, seed: int = 0,
    options: Optional[NormalizeOptions] = None,
) -> torch.Tensor:
    """``audio + reverb(send_eq(audio))``: a band-passed, fully wet convolution reverb in parallel.

    Args:
        audio: ``(channels, time)``.
        sample_rate: in Hz.
        ir_folder: folder of impulse responses (any audio files, mono or with ``channels`` channels).
        seed: picks the response and the shelf corners.
        options: see :class:`NormalizeOptions`.

    Returns:
        ``(channels, time)``; the reverb tail past the end is cut.
    """
    options = options or NormalizeOptions()
    responses = _impulse_responses(str(Path(ir_folder).resolve()), sample_rate)
    generator = torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
    ir = responses[int(torch.randint(len(responses), (1,), generator=generator))]
    if ir.shape[0] not in (1, audio.shape[0]):
        ir = ir.mean(0, keepdim=True)
    draws = torch.rand(2, generator=generator, dtype=torch.float64)
    low = options.send_low_hz[0] + float(draws[0]) * (options.send_low_hz[1] - options.send_low_hz[0])
    high = options.send_high_hz[0] + float(draws[1]) * (options.send_high_hz[1] - options.send_high_hz[0])
    high = min(high, 0.45 * sample_rate)
    send = parametric_eq(
        audio.float(), sample_rate, [low, high], [options.send_shelf_db] * 2, [0.707, 0.707], ("lowshelf", "highshelf")
    )
    return audio.float() + fft_reverb(send, ir.float(), wet=1.0)


# -------------------------------------------------------------------------------------------------- EQ


def design_fir(gains: torch.Tensor, num_taps: int) -> torch.Tensor:
    """Linear-phase FIR whose magnitude follows ``gains``, by frequency sampling (as ``firwin2``).

    The desired magnitude is interpolated onto ``1 + 2 ** ceil(log2(num_taps))`` frequencies, turned into
    a zero-phase impulse response by an inverse real FFT, cut to ``num_taps`` samples around its centre
    and tapered by a Hamming window.

    Args:
        gains: ``(F,)`` linear magnitudes on ``F`` evenly spaced frequencies from 0 to Nyquist.
        num_taps: odd filter length.

    Returns:
        ``(num_taps,)`` float64 symmetric taps (group delay ``(num_taps - 1) / 2`` samples).
    """
    if num_taps % 2 == 0:
        raise ValueError(f"num_taps must be odd, got {num_taps}")
    grid = 1 + 2 ** math.ceil(math.log2(num_taps))
    desired = torch.nn.functional.interpolate(
        gains.double().reshape(1, 1, -1), size=grid, mode="linear", align_corners=True
    ).flatten()
    impulse = torch.fft.irfft(desired.to(torch.complex128), n=2 * (grid - 1))
    half = num_taps // 2
    centred = torch.cat([impulse[-half:], impulse[: half + 1]])
    return centred * torch.hamming_window(num_taps, periodic=False, dtype=torch.float64)


def match_eq(
    audio: torch.Tensor, target: np.ndarray, stem: str, features: FxNormFeatures, sample_rate: int,
    options: Optional[NormalizeOptions] = None,
) -> torch.Tensor:
    """EQ stage: bring the stem to ``eq_lufs`` and filter its average spectrum onto ``target``.

    Args:
        audio: ``(channels, time)``.
        target: ``(n_fft // 2 + 1,)`` target curve (``features.eq[stem]``).
        stem: stem type (picks the smoothing width).
        features: supplies the measurement settings.
        sample_rate: in Hz.
        options: see :class:`NormalizeOptions`.

    Returns:
        ``(channels, time)`` at about ``features.config.eq_lufs`` LUFS.
    """
    options = options or NormalizeOptions()
    levelled = normalize_loudness(audio.float(), sample_rate, features.config.eq_lufs)
    return fir_filter(levelled, eq_filter(levelled, target, stem, features, sample_rate, options), zero_phase=True)


def eq_filter(
    levelled: torch.Tensor, target: np.ndarray, stem: str, features: FxNormFeatures, sample_rate: int,
    options: Optional[NormalizeOptions] = None,
) -> torch.Tensor:
    """The EQ stage's filter: the FIR that moves ``levelled``'s average spectrum onto ``target``.

    Args:
        levelled: ``(channels, time)`` already at ``features.config.eq_lufs``; other arguments as
            :func:`match_eq`.

    Returns:
        ``(options.eq_taps,)`` float32 taps, to apply with ``fir_filter(..., zero_phase=True)``.
    """
    options = options or NormalizeOptions()
    config = features.config
    width = EQ_SMOOTH_HZ.get(stem, DEFAULT_EQ_SMOOTH_HZ)
    curve = smooth_curve(eq_curve(levelled, sample_rate, config.n_fft, lufs=None).double(), width,
                         sample_rate, config.n_fft)
    reference = torch.as_tensor(target, dtype=torch.float64)
    if reference.shape != curve.shape:
        raise ValueError(f"EQ target has {reference.shape[0]} bins, the features' n_fft gives {curve.shape[0]}")
    gain_db = 20.0 * torch.log10(reference.clamp_min(1e-12) / curve.clamp_min(1e-12))
    gain_db = gain_db.clamp(-options.eq_max_gain_db, options.eq_max_gain_db)
    return design_fir(torch.pow(10.0, gain_db / 20.0), options.eq_taps).float()


# ------------------------------------------------------------------------------------------ compression


class _PeakSearch:
    """Onset-peak statistics of a stem under candidate compressor settings, evaluated at block rate.

    With a peak detector, the compressor's gain depends only on the envelope ``max_c |x_c|``, and the
    statistic only on the envelope times the gain at the onsets. Both are computed on the envelope's
    maxima over ~0.7 ms blocks: the gain barely moves within a block (attack and release are 7.5 ms and
    longer), and the search runs ~30x faster than on the full-rate signal. The chosen setting is then
    applied to the audio at full rate.
    """

    def __init__(self, x: torch.Tensor, sample_rate: int, onsets: torch.Tensor, peak_db: float, percentile: float,
                 attack_ms: float, release_ms: float) -> None:
        self.block = max(1, sample_rate // 1378)  # 32 samples at 44.1 kHz
        envelope = x.abs().amax(0)
        pad = (-envelope.shape[0]) % self.block
        self.envelope = torch.nn.functional.pad(envelope, (0, pad)).reshape(-1, self.block).amax(-1)
        self.rate = sample_rate / self.block
        self.onsets = torch.unique(torch.div(onsets, self.block, rounding_mode="floor"))
        self.peak_db, self.percentile = peak_db, percentile
        self.attack_ms, self.release_ms = attack_ms, release_ms

    def mean(self, threshold: Optional[float] = None, ratio: float = 1.0) -> float:
        """Mean loud onset peak (dB) with the stem peak-normalised after compressing (none: ``threshold=None``)."""
        envelope = self.envelope
        if threshold is not None:
            gain_db = compressor_gain_db(envelope[None], self.rate, threshold, ratio, attack_ms=self.attack_ms,
                                         release_ms=self.release_ms, knee_db=0.0, detector="peak")
            envelope = envelope * torch.pow(10.0, gain_db.reshape(-1) / 20.0)
        scaled = envelope * (10.0 ** (self.peak_db / 20.0) / float(envelope.max()))
        return peak_statistics(onset_peak_levels(scaled, self.rate, self.onsets), self.percentile)[0]


def match_dynamics(
    audio: torch.Tensor, target: np.ndarray, stem: str, features: FxNormFeatures, sample_rate: int,
    options: Optional[NormalizeOptions] = None,
) -> torch.Tensor:
    """Compression stage: compress a stem until its loud onset peaks fall within the target's range.

    The feature is measured with the stem peak-normalised: it says how far the loud onsets sit below the
    loudest one. Compression changes it either way: pulling the loudest transients down raises it, a long
    release ducking the onsets that follow loud ones lowers it. So the search is empirical: settings are
    tried in the reference's order (ratio outer, from the stem type's preset; threshold inner, from gentle
    to strong) and the first one that brings the statistic across the near edge of ``mean +- std`` is kept,
    its threshold refined by bisection. When none does, the setting that came closest is kept, if any
    improves on the stem as it is.

    Args:
        audio: ``(channels, time)``.
        target: ``(2,)`` target mean and standard deviation of onset peak levels (dB).
        stem: stem type (picks the compressor preset; unknown types use ``other``'s).
        features: supplies the peak level and percentile the target was measured with.
        sample_rate: in Hz.
        options: see :class:`NormalizeOptions`.

    Returns:
        ``(channels, time)``: the stem peak-normalised to ``features.config.peak_db``, then possibly
        compressed (no make-up gain; the loudness stage sets the level).
    """
    x = audio.float() * (10.0 ** (features.config.peak_db / 20.0) / float(audio.abs().max()))
    setting = compressor_setting(x, target, stem, features, sample_rate, options)
    if setting is None:
        return x
    attack, release, _ = COMPRESSOR_PRESETS.get(stem, COMPRESSOR_PRESETS["other"])
    return compressor(x, sample_rate, setting[0], setting[1], attack_ms=attack, release_ms=release, knee_db=0.0,
                      detector="peak")


def compressor_setting(
    x: torch.Tensor, target: np.ndarray, stem: str, features: FxNormFeatures, sample_rate: int,
    options: Optional[NormalizeOptions] = None,
) -> Optional[Tuple[float, float]]:
    """The compression stage's choice (see :func:`match_dynamics`) for a stem already peak-normalised.

    Args:
        x: ``(channels, time)`` peak-normalised to ``features.config.peak_db``; other arguments as
            :func:`match_dynamics`.

    Returns:
        ``(threshold_db, ratio)`` of the compressor (attack and release: the stem type's preset in
        :data:`COMPRESSOR_PRESETS`), or ``None``: leave the stem uncompressed.
    """
    options = options or NormalizeOptions()
    config = features.config
    onsets = detect_onsets(x, sample_rate)
    if onsets.numel() == 0:
        return None
    attack, release, first_ratio = COMPRESSOR_PRESETS.get(stem, COMPRESSOR_PRESETS["other"])
    search = _PeakSearch(x, sample_rate, onsets, config.peak_db, config.percentile, attack, release)
    lower, upper = float(target[0]) - float(target[1]), float(target[0]) + float(target[1])
    start = search.mean()
    if lower <= start <= upper:
        return None
    from_above = start > upper

    def reached(mean: float) -> bool:
        return mean <= upper if from_above else mean >= lower

    def miss(mean: float) -> float:
        return max(lower - mean, mean - upper, 0.0)

    high, low = options.threshold_range_db
    coarse = np.arange(high, low - 1e-9, -options.coarse_step_db)
    coarse = coarse[coarse < config.peak_db]  # at or above the peak level a hard knee does nothing
    best: Optional[Tuple[float, float]] = None
    best_miss = miss(start)
    chosen: Optional[Tuple[float, float]] = None
    for ratio in dict.fromkeys((float(first_ratio), float(options.max_ratio))):
        previous: Optional[float] = None
        for threshold in map(float, coarse):
            mean = search.mean(threshold, ratio)
            if reached(mean):
                chosen = (_refine_threshold(search, reached, previous, threshold, ratio,
                                            options.threshold_step_db), ratio)
                break
            if miss(mean) < best_miss:
                best, best_miss = (threshold, ratio), miss(mean)
            previous = threshold
        if chosen is not None:
            break
    return chosen or best  # None: no setting gets closer than the stem as it is


def _refine_threshold(search: _PeakSearch, reached: Callable[[float], bool], failed: Optional[float], passed: float,
                      ratio: float, step: float) -> float:
    """Bisect between a coarse threshold that fell short (``failed``) and the next one that reached the
    range (``passed``) for the gentlest one that still does, to ``step`` dB."""
    if failed is None:
        return passed
    while failed - passed > step + 1e-9:
        middle = passed + step * round((failed - passed) / (2.0 * step))
        if reached(search.mean(middle, ratio)):
            passed = middle
        else:
            failed = middle
    return passed


# -------------------------------------------------------------------------------------------- panning


def _side(spec: torch.Tensor, sample_rate: int, n_fft: int) -> float:
    """+1 when the stem leans right (or is centred), -1 when it leans left, from 50 Hz to 2.5 kHz."""
    freqs = fft_frequencies(n_fft, sample_rate)
    band = (freqs >= 50.0) & (freqs < 2500.0)
    left, right = spec[0, band].abs().double(), spec[1, band].abs().double()
    lean = float((right.square() - left.square()).sum())
    return -1.0 if lean < 0.0 else 1.0


def match_panning(
    audio: torch.Tensor, target: np.ndarray, stem: str, features: FxNormFeatures, sample_rate: int,
    options: Optional[NormalizeOptions] = None,
) -> torch.Tensor:
    """Panning stage: re-pan every time-frequency bin to the target similarity, with constant power.

    A bin with magnitudes ``|L|, |R|`` keeps its energy ``E^2 = |L|^2 + |R|^2`` and gets magnitudes
    ``E sin(t), E cos(t)`` (louder on the stem's side) with ``sin(2 t) = pan_gain * target``, which is
    exactly that similarity.

    Args:
        audio: ``(channels, time)``; anything but stereo is returned unchanged.
        target: ``(pan_n_fft // 2 + 1,)`` target similarity (``features.panning[stem]``).
        stem: stem type (picks the highest re-panned frequency).
        features: supplies the panning FFT size.
        sample_rate: in Hz.
        options: see :class:`NormalizeOptions`.

    Returns:
        ``(channels, time)``.
    """
    if audio.shape[0] != 2:
        return audio
    options = options or NormalizeOptions()
    n_fft = features.config.pan_n_fft
    hop = n_fft // 4
    spec = stft(audio.float(), n_fft, hop)  # (2, F, frames)
    reference = torch.as_tensor(target, dtype=torch.float64)
    if reference.shape[0] != spec.shape[-2]:
        raise ValueError(f"panning target has {reference.shape[0]} bins, pan_n_fft gives {spec.shape[-2]}")
    similarity = (options.pan_gain * reference).clamp(0.0, 1.0)
    angle = (0.5 * torch.asin(similarity)).float()[:, None]  # (F, 1), in [0, pi/4]
    magnitude = spec.abs()
    energy = magnitude.square().sum(0)
    total = energy.sqrt()
    quiet, loud = total * torch.sin(angle), total * torch.cos(angle)
    new_left, new_right = (quiet, loud) if _side(spec, sample_rate, n_fft) > 0 else (loud, quiet)
    freqs = fft_frequencies(n_fft, sample_rate)[:, None]
    active = (freqs <= PAN_MAX_HZ.get(stem, DEFAULT_PAN_MAX_HZ)) & (energy > float(energy.max()) * 1e-10)
    # Each channel keeps its own phase (a silent bin gets phase 0).
    phase = torch.where(magnitude > 0, spec / magnitude.clamp_min(1e-30), torch.ones_like(spec))
    left = torch.where(active, phase[0] * new_left, spec[0])
    right = torch.where(active, phase[1] * new_right, spec[1])
    return istft(torch.stack([left, right]), n_fft, hop, audio.shape[-1])


# --------------------------------------------------------------------------------------------- driver


def normalize_stem(
    audio: torch.Tensor,
    stem: str,
    features: FxNormFeatures,
    sample_rate: int,
    ir_folder: Optional[PathLike] = None,
    effects: Sequence[str] = EFFECTS,
    options: Optional[NormalizeOptions] = None,
    seed: int = 0,
) -> torch.Tensor:
    """Normalise one stem's effects toward the features of its stem type, in the paper's order.

    Args:
        audio: ``(channels, time)`` at ``sample_rate``.
        stem: stem type, a key of ``features`` (``vocals``, ``drums``, ``bass``, ``other``).
        features: dataset-average targets (:func:`~musicfx.fxnorm.dataset.compute_features` or
            :meth:`FxNormFeatures.builtin() <musicfx.fxnorm.features.FxNormFeatures.builtin>`).
        sample_rate: must equal ``features.config.sample_rate``.
        ir_folder: impulse responses for the reverb stage; ``None`` skips it.
        effects: the stages to run, a subset of :data:`EFFECTS` (always applied in that order).
        options: see :class:`NormalizeOptions`.
        seed: reproducible choices of the reverb stage (impulse response, send EQ).

    Returns:
        float32 ``(channels, time)``. Silent or too-short stems come back unchanged.
    """
    unknown = [name for name in effects if name not in EFFECTS]
    if unknown:
        raise ValueError(f"unknown effects {unknown}; expected a subset of {EFFECTS}")
    if audio.dim() != 2:
        raise ValueError(f"expected one stem shaped (channels, time), got {tuple(audio.shape)}")
    if sample_rate != features.config.sample_rate:
        raise ValueError(
            f"features were measured at {features.config.sample_rate} Hz; resample the {sample_rate} Hz audio first"
        )
    options = options or NormalizeOptions()
    out = audio.float()
    if usable(out, sample_rate) is not None:
        return out
    for name in EFFECTS:
        if name not in effects:
            continue
        if name == "reverb":
            if ir_folder is not None and stem in REVERB_STEMS:
                out = add_reverb_send(out, sample_rate, ir_folder, seed ^ zlib.crc32(stem.encode()), options)
        elif name == "eq":
            out = match_eq(out, features.require(stem, "eq"), stem, features, sample_rate, options)
        elif name == "compression":
            out = match_dynamics(out, features.require(stem, "dynamics"), stem, features, sample_rate, options)
        elif name == "panning":
            out = match_panning(out, features.require(stem, "panning"), stem, features, sample_rate, options)
        else:
            out = normalize_loudness(out, sample_rate, float(features.require(stem, "loudness")[0]))
    return out


# --------------------------------------------------------------------------------------------- dataset


@dataclass
class NormalizeSummary:
    """What :func:`normalize_dataset` did, by song name."""

    normalized: List[str] = dataclasses.field(default_factory=list)
    cached: List[str] = dataclasses.field(default_factory=list)
    skipped_stems: List[str] = dataclasses.field(default_factory=list)  # silent or too short, copied as is


def _file_signature(path: Path) -> Dict[str, Union[str, int]]:
    info = path.stat()
    return {"name": path.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _ir_signature(ir_folder: Optional[PathLike]) -> Optional[List[Dict[str, Union[str, int]]]]:
    if ir_folder is None:
        return None

    folder = Path(ir_folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such impulse-response folder")
    files = list_audio_files(folder)
    if not files:
        raise DataError(f"{folder}: no impulse responses (audio files) in this folder")
    return [dict(_file_signature(path), name=path.relative_to(folder).as_posix()) for path in files]


@dataclass(frozen=True)
class _SongJob:
    name: str
    folder: Path
    stems: Dict[str, Path]
    others: Tuple[Path, ...]
    out: Path
    manifest: Dict[str, object]


def _song_jobs(root: Path, output: Path, stems: Sequence[str], params: Dict[str, object]) -> List[_SongJob]:
    songs = find_songs(root, stems)
    if not songs:
        raise DataError(f"{root}: no song folders holding any of {', '.join(stems)} (.wav, .flac, ...)")
    jobs = []
    for name, files in songs:
        folder = next(iter(files.values())).parent
        relative = folder.relative_to(root).as_posix()
        used = set(files.values())
        others = tuple(sorted(
            path for path in folder.iterdir()
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in AUDIO_EXTENSIONS
            and path not in used
        ))
        inputs = {stem: _file_signature(path) for stem, path in files.items()}
        inputs.update({f"copy:{path.name}": _file_signature(path) for path in others})
        out = output / (relative if relative != "." else root.name)
        manifest = json.loads(json.dumps(dict(params, inputs=inputs)))  # as it reads back from disk
        jobs.append(_SongJob(name, folder, dict(files), others, out, manifest))
    return jobs


def _outputs(job: _SongJob) -> List[Path]:
    return [job.out / f"{stem}.wav" for stem in job.stems] + [job.out / path.name for path in job.others]


def _read_manifest(folder: Path) -> Optional[Dict[str, object]]:
    try:
        return json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def _write_manifest(folder: Path, manifest: Mapping[str, object]) -> None:
    with atomic_path(folder / MANIFEST_NAME) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _normalize_song(
    job: _SongJob, features: FxNormFeatures, ir_folder: Optional[str], options: NormalizeOptions
) -> List[str]:
    """Normalise and write one song (worker side); returns notes about skipped stems."""
    job.out.mkdir(parents=True, exist_ok=True)
    # Marks the folder as ours before any output appears, so an interrupted run is redone, not refused.
    _write_manifest(job.out, dict(job.manifest, complete=False))
    rate = features.config.sample_rate
    seed = zlib.crc32(job.name.encode())
    notes = []
    for stem, path in job.stems.items():
        audio, _ = read_audio(path, sample_rate=rate)
        problem = usable(audio, rate)
        if problem is not None:
            notes.append(f"{path}: {problem}; written unchanged")
        else:
            audio = normalize_stem(audio, stem, features, rate, ir_folder=ir_folder, options=options, seed=seed)
        write_audio(job.out / f"{stem}.wav", audio, rate)
    for path in job.others:
        with atomic_path(job.out / path.name) as tmp:
            shutil.copyfile(path, tmp)
    _write_manifest(job.out, dict(job.manifest, complete=True))
    return notes


def _init_worker() -> None:
    torch.set_num_threads(1)  # the pool already keeps every core busy


def normalize_dataset(
    root: PathLike,
    output: PathLike,
    features: FxNormFeatures,
    stems: Optional[Sequence[str]] = None,
    workers: Optional[int] = None,
    ir_folder: Optional[PathLike] = None,
    progress: bool = True,
    overwrite: bool = False,
    options: Optional[NormalizeOptions] = None,
) -> NormalizeSummary:
    """Normalise every song of a dataset into a parallel folder tree.

    Each song folder ``root/<song>/`` becomes ``output/<song>/`` with one normalised ``<stem>.wav``
    (float WAV at the features' sample rate: normalised stems may peak above full scale) per stem found,
    copies of the song's other audio files (the mixture, which an automix model learns to produce), and a
    ``.fxnorm.json`` manifest of the features' digest, the settings and the input files' sizes and times.
    A song whose manifest matches and whose outputs all exist is skipped, so a rerun only redoes what
    changed. Outputs written by an earlier run with other features or settings are redone.

    Args:
        root: folder of song folders (see :func:`musicfx.data.multitrack.StemFolder` for the layout).
        output: where the normalised tree goes; must not be ``root`` or inside it.
        features: targets (one entry per stem type normalised).
        stems: stem types to normalise (default: every stem type in ``features``).
        workers: processes normalising songs in parallel (default: one per CPU; 0 or 1: this process).
        ir_folder: impulse responses for the reverb stage (``None``: no reverb stage).
        progress: show a progress bar.
        overwrite: replace files in ``output`` that fxnorm did not write.
        options: see :class:`NormalizeOptions`.

    Returns:
        :class:`NormalizeSummary`. Raises :class:`DataError` for a missing root, an output inside the
        root or a song without outputs' permission, before anything is written.
    """
    options = options or NormalizeOptions()
    root_path, out_path = Path(root).expanduser().resolve(), Path(output).expanduser().resolve()
    if not root_path.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    if out_path == root_path or root_path in out_path.parents:
        raise DataError(f"{output}: the output folder must not be the dataset folder or inside it")
    if out_path.exists() and not out_path.is_dir():
        raise DataError(f"{output}: exists and is not a folder")
    stems = tuple(stems) if stems is not None else features.stems
    for stem in stems:
        for name in ("eq", "dynamics", "panning", "loudness"):
            features.require(stem, name)
    params: Dict[str, object] = {
        "version": NORMALIZE_VERSION,
        "features": features.digest(),
        "options": dataclasses.asdict(options),
        "reverb": _ir_signature(ir_folder),
    }
    jobs = _song_jobs(root_path, out_path, stems, params)
    summary = NormalizeSummary()
    pending = []
    conflicts = []
    for job in jobs:
        manifest = _read_manifest(job.out)
        outputs = _outputs(job)
        if manifest == dict(job.manifest, complete=True) and all(path.is_file() for path in outputs):
            summary.cached.append(job.name)
            continue
        if manifest is None and not overwrite:
            conflicts.extend(path for path in outputs if path.exists())
        pending.append(job)
    if conflicts:
        listed = ", ".join(str(path) for path in conflicts[:3]) + (" ..." if len(conflicts) > 3 else "")
        raise MusicfxError(f"{len(conflicts)} output files exist and were not written by fxnorm ({listed}); "
                           "pass --overwrite (overwrite=True) to replace them")
    ir = str(Path(ir_folder).resolve()) if ir_folder is not None else None
    for notes in _run_jobs(pending, features, ir, options, workers, progress):
        for note in notes:
            warnings.warn(note, stacklevel=2)
        summary.skipped_stems.extend(notes)
    summary.normalized.extend(job.name for job in pending)
    return summary


def _run_jobs(jobs: Sequence[_SongJob], features: FxNormFeatures, ir_folder: Optional[str],
              options: NormalizeOptions, workers: Optional[int], progress: bool):
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(0, min(int(workers), len(jobs)))
    bar = dict(total=len(jobs), desc="fxnorm normalize", unit="song", disable=not progress)
    if workers <= 1:
        for job in tqdm(jobs, **bar):
            yield _normalize_song(job, features, ir_folder, options)
        return

    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        futures = [pool.submit(_normalize_song, job, features, ir_folder, options) for job in jobs]
        for future in tqdm(futures, **bar):
            yield future.result()
