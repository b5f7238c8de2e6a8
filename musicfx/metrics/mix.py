"""Objective automix metrics: how far a mix's loudness, spectrum, panning and dynamics are from a reference.

FxNorm-automix (Martínez-Ramírez et al., ISMIR 2022) evaluates a mixing model by the *mean absolute
percentage error* (MAPE, ``mean |ref - est| / |ref|``, as a fraction: 0.1 is 10 %) between features of the
estimated and the reference mix, per feature group, following its ``evaluate.py``:

* **loudness**: the running short-term loudness (EBU R128: 3 s BS.1770 windows every 100 ms, ungated,
  floored at -70 LUFS). The reference code compares integrated loudness and peak level instead; the
  paper describes a running loudness, which this follows.
* **spectral** (4096-point STFT, hop 1024, square-root Hann window, both mixes peak-normalised to
  -1 dBFS, per channel): centroid, bandwidth, contrast in a low (< 250 Hz), mid (250-2000 Hz, three octave
  bands averaged) and high (> 2 kHz) band, 85 % roll-off and flatness, with librosa's definitions
  (librosa itself is not a dependency). Each feature is a running mean over 40 frames (about 1 s; 800 for
  flatness, as the reference), then compared frame by frame.
* **panning**: the RMS over frequency of Avendano's stereo panning spectrum
  (:func:`musicfx.fxnorm.features.stereo_panning_spectrum`; 2048-point STFT, hop 1024) in the bands
  0-22.05 kHz (total), 0-250 Hz (low), 250-2500 Hz (mid) and 2.5-22.05 kHz (high), running mean over 40
  frames. Frames where the reference's total panning is exactly 0 (dual mono) are left out.
* **dynamic** (4096-sample frames, hop 1024, peak-normalised to -1 dBFS): RMS level, dynamic spread
  (mean of ``dB|x| - RMS dB``) and crest factor (peak dB - RMS dB), averaged over channels, running mean
  over 40 frames. As in the reference, the (negative) dB levels are compared as ``1 - value`` so that no
  reference value sits near 0. Deviation: the reference's "crest" divides the peak dB by the RMS dB; the
  crest factor proper is their difference (compared as ``1 + value``).

``overall`` is the mean of the four group errors.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Tuple, Union

import numpy as np
import torch

from musicfx.audio.loudness import LOUDNESS_OFFSET, default_channel_weights, k_weighting
from musicfx.audio.spectral import fft_frequencies, hann_window, stft
from musicfx.fxnorm.features import stereo_panning_spectrum

ArrayLike = Union[torch.Tensor, np.ndarray]

GROUPS: Tuple[str, ...] = ("loudness", "spectral", "panning", "dynamic")
#: Running-mean length in frames per feature (the reference's N = 40; 800 for flatness).
RUNNING_FRAMES: Mapping[str, int] = {"spectral/flatness": 800}
DEFAULT_RUNNING_FRAMES = 40
PANNING_BANDS_HZ: Mapping[str, Tuple[float, float]] = {
    "total": (0.0, 22050.0), "low": (0.0, 250.0), "mid": (250.0, 2500.0), "high": (2500.0, 22050.0),
}
SPECTRAL_FFT, SPECTRAL_HOP = 4096, 1024
PANNING_FFT, PANNING_HOP = 2048, 1024
DYNAMIC_FRAME, DYNAMIC_HOP = 4096, 1024
SHORT_TERM_SECONDS, SHORT_TERM_HOP_SECONDS = 3.0, 0.1
FLOOR_LUFS = -70.0


def mape(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean absolute percentage error as a fraction, ``mean(|ref - est| / max(|ref|, eps))`` (scikit-learn's)."""
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {estimate.shape}")
    if reference.size == 0:
        return math.nan
    denominator = np.maximum(np.abs(reference), np.finfo(np.float64).eps)
    return float(np.mean(np.abs(reference - estimate) / denominator))


def running_mean(values: np.ndarray, frames: int) -> np.ndarray:
    """Mean over every ``frames`` consecutive values along the last axis (fewer when the series is shorter).

    Returns ``(..., N - frames + 1)``.
    """
    values = np.asarray(values, np.float64)
    frames = max(1, min(int(frames), values.shape[-1]))
    sums = np.cumsum(np.concatenate([np.zeros(values.shape[:-1] + (1,)), values], axis=-1), axis=-1)
    return (sums[..., frames:] - sums[..., :-frames]) / frames


# ------------------------------------------------------------------------------------------- features


def _peak_normalize(mix: torch.Tensor, peak_db: float = -1.0) -> torch.Tensor:
    peak = float(mix.abs().max())
    return mix if peak == 0.0 else mix * (10.0 ** (peak_db / 20.0) / peak)


def short_term_loudness(
    audio: torch.Tensor, sample_rate: int, window: float = SHORT_TERM_SECONDS, hop: float = SHORT_TERM_HOP_SECONDS,
    floor_lufs: float = FLOOR_LUFS,
) -> torch.Tensor:
    """Running ungated BS.1770 loudness over ``window``-second windows every ``hop`` seconds (EBU R128's
    "short-term" loudness for the defaults).

    Args:
        audio: ``(..., channels, time)``.
        sample_rate: in Hz.
        window, hop: in seconds; a signal shorter than ``window`` gives one window over all of it.
        floor_lufs: lower bound of the result (silence would be ``-inf``).

    Returns:
        ``(..., windows)`` float64 LUFS.
    """
    channels, time = audio.shape[-2], audio.shape[-1]
    weights = torch.tensor(default_channel_weights(channels), dtype=torch.float64)
    power = k_weighting(audio, sample_rate).double().square()
    power = (power * weights[:, None]).sum(-2)  # (..., time)
    length = min(time, int(round(window * sample_rate)))
    step = max(1, int(round(hop * sample_rate)))
    sums = torch.nn.functional.pad(power.cumsum(-1), (1, 0))
    starts = torch.arange(0, time - length + 1, step)
    mean = (sums[..., starts + length] - sums[..., starts]) / length
    floor = 10.0 ** ((floor_lufs - LOUDNESS_OFFSET) / 10.0)
    return LOUDNESS_OFFSET + 10.0 * torch.log10(mean.clamp_min(floor))


def _contrast(mag: torch.Tensor, freqs: torch.Tensor, fmin: float = 250.0, n_bands: int = 4,
              quantile: float = 0.02) -> torch.Tensor:
    """librosa's spectral contrast of ``mag (F, N)``: ``(n_bands + 1, N)`` in dB (octave bands above
    ``fmin``; the last band reaches Nyquist)."""
    edges = [0.0] + [fmin * 2.0 ** k for k in range(n_bands + 1)]
    peaks, valleys = [], []
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        band = (freqs >= low) & (freqs <= high)
        index = torch.nonzero(band).flatten()
        if k > 0 and index.numel() and index[0] > 0:
            band[index[0] - 1] = True
        if k == n_bands and index.numel():
            band[index[-1] + 1:] = True
        count = int(band.sum())
        sub = mag[band]
        if k < n_bands:
            sub = sub[:-1]
        take = max(1, int(np.rint(quantile * count)))
        valleys.append(torch.topk(sub, take, dim=0, largest=False, sorted=False).values.mean(0))
        peaks.append(torch.topk(sub, take, dim=0, sorted=False).values.mean(0))

    def to_db(values: torch.Tensor) -> torch.Tensor:  # librosa.power_to_db(ref=1, amin=1e-10, top_db=80)
        db = 10.0 * torch.log10(values.clamp_min(1e-10))
        return torch.maximum(db, db.max() - 80.0)

    return to_db(torch.stack(peaks)) - to_db(torch.stack(valleys))


def spectral_features(mix: torch.Tensor, sample_rate: int) -> Dict[str, np.ndarray]:
    """Frame-wise spectral features per channel of a mix peak-normalised to -1 dBFS.

    Args:
        mix: ``(channels, time)``.
        sample_rate: in Hz.

    Returns:
        ``{"spectral/<name>": (channels, frames)}`` for centroid, bandwidth (Hz), contrast_low,
        contrast_mid, contrast_high (dB), rolloff (Hz) and flatness (0..1).
    """
    window = hann_window(SPECTRAL_FFT, dtype=torch.float64).sqrt()
    mag = stft(_peak_normalize(mix).double(), SPECTRAL_FFT, SPECTRAL_HOP, window=window).abs()  # (C, F, N)
    freqs = fft_frequencies(SPECTRAL_FFT, sample_rate).double()
    total = mag.sum(-2)
    safe = total.clamp_min(1e-30)
    centroid = (freqs[:, None] * mag).sum(-2) / safe
    spread = (mag / safe[:, None, :] * (freqs[:, None] - centroid[:, None, :]).square()).sum(-2)
    cumulative = mag.cumsum(-2)
    reached = cumulative >= 0.85 * cumulative[:, -1:, :]
    rolloff = freqs[reached.double().argmax(-2)]
    power = mag.square().clamp_min(1e-10)
    flatness = torch.exp(torch.log(power).mean(-2)) / power.mean(-2)
    contrast = torch.stack([_contrast(channel, freqs) for channel in mag])  # (C, 5, N)
    out = {
        "spectral/centroid": centroid, "spectral/bandwidth": spread.sqrt(),
        "spectral/contrast_low": contrast[:, 0], "spectral/contrast_mid": contrast[:, 1:4].mean(1),
        "spectral/contrast_high": contrast[:, -1], "spectral/rolloff": rolloff, "spectral/flatness": flatness,
    }
    return {key: value.numpy() for key, value in out.items()}


def panning_features(mix: torch.Tensor, sample_rate: int) -> Dict[str, np.ndarray]:
    """Frame-wise RMS of the stereo panning spectrum per band, of a mix peak-normalised to -1 dBFS.

    Args:
        mix: ``(2, time)``.
        sample_rate: in Hz.

    Returns:
        ``{"panning/<band>": (frames,)}`` for the bands of :data:`PANNING_BANDS_HZ`.
    """
    _, sps, _ = stereo_panning_spectrum(_peak_normalize(mix), PANNING_FFT, PANNING_HOP)
    sps = sps.double()
    out = {}
    for name, (low, high) in PANNING_BANDS_HZ.items():
        first = int(math.floor(low * PANNING_FFT / sample_rate))
        last = int(math.floor(min(high, sample_rate / 2.0) * PANNING_FFT / sample_rate))
        out[f"panning/{name}"] = sps[first:last].square().mean(0).sqrt().numpy()
    return out


def dynamic_features(mix: torch.Tensor, sample_rate: int) -> Dict[str, np.ndarray]:
    """Frame-wise RMS level, dynamic spread and crest factor (dB) of a mix peak-normalised to -1 dBFS,
    averaged over channels.

    Args:
        mix: ``(channels, time)``.
        sample_rate: in Hz (frames are fixed at 4096 samples, hop 1024, as the reference).

    Returns:
        ``{"dynamic/rms", "dynamic/spread", "dynamic/crest": (frames,)}``; a mix shorter than a frame is
        one frame.
    """
    x = _peak_normalize(mix).double()
    length = min(DYNAMIC_FRAME, x.shape[-1])
    frames = x.unfold(-1, length, DYNAMIC_HOP)  # (C, N, length)
    level = 20.0 * torch.log10(frames.abs().clamp_min(1e-8))
    rms = 10.0 * torch.log10(frames.square().mean(-1).clamp_min(1e-16))
    spread = (level - rms[..., None]).mean(-1)
    crest = level.amax(-1) - rms
    return {"dynamic/rms": rms.mean(0).numpy(), "dynamic/spread": spread.mean(0).numpy(),
            "dynamic/crest": crest.mean(0).numpy()}


def mix_features(mix: ArrayLike, sample_rate: int) -> Dict[str, np.ndarray]:
    """Every feature :func:`mix_metrics` compares, frame by frame (before running means).

    Args:
        mix: stereo ``(2, time)`` tensor or array.
        sample_rate: in Hz.

    Returns:
        ``{"loudness/short_term": (windows,), "spectral/...": (2, frames), "panning/...": (frames,),
        "dynamic/...": (frames,)}`` as float64 arrays.
    """
    mix = torch.as_tensor(np.asarray(mix) if not isinstance(mix, torch.Tensor) else mix).float()
    if mix.dim() != 2 or mix.shape[0] != 2:
        raise ValueError(f"mix metrics need a stereo mix shaped (2, time), got {tuple(mix.shape)}")
    features = {"loudness/short_term": short_term_loudness(mix, sample_rate).numpy()}
    features.update(spectral_features(mix, sample_rate))
    features.update(panning_features(mix, sample_rate))
    features.update(dynamic_features(mix, sample_rate))
    return features


# -------------------------------------------------------------------------------------------- metrics


def _comparable(name: str, values: np.ndarray) -> np.ndarray:
    """Shift features whose values can be near zero, as the reference does, before taking ratios."""
    if name in ("dynamic/rms", "dynamic/spread"):
        return 1.0 - values  # dB levels <= 0
    if name in ("dynamic/crest", "spectral/centroid", "spectral/bandwidth", "spectral/rolloff"):
        return values + 1.0  # crest >= 0 dB; Hz quantities (the reference adds 1 Hz)
    return values


def mix_metrics(estimate: ArrayLike, reference: ArrayLike, sample_rate: int) -> Dict[str, float]:
    """MAPE between the features of an estimated and a reference stereo mix, per group and overall.

    Args:
        estimate: ``(2, time)`` mix to judge.
        reference: ``(2, time)`` reference mix, time-aligned with ``estimate`` and of the same length.
        sample_rate: in Hz.

    Returns:
        ``{"loudness", "spectral", "panning", "dynamic", "overall"}`` plus every feature's own error
        (``"spectral/centroid"``, ``"panning/low"``, ...), as fractions (0 for identical mixes). A group
        that cannot be measured (panning of a dual-mono reference) is NaN and left out of ``overall``.
    """
    est_shape, ref_shape = tuple(np.shape(estimate)), tuple(np.shape(reference))
    if est_shape != ref_shape:
        raise ValueError(f"estimate {est_shape} and reference {ref_shape} must have the same shape (align them first)")
    est, ref = mix_features(estimate, sample_rate), mix_features(reference, sample_rate)
    keep = ref["panning/total"] != 0.0  # dual-mono reference frames have no panning to match
    errors: Dict[str, float] = {}
    for name in ref:
        r, e = ref[name], est[name]
        if name.startswith("panning/"):
            r, e = r[keep], e[keep]
            if r.size == 0:
                errors[name] = math.nan
                continue
        frames = RUNNING_FRAMES.get(name, DEFAULT_RUNNING_FRAMES) if not name.startswith("loudness/") else 1
        r = _comparable(name, running_mean(r, frames))
        e = _comparable(name, running_mean(e, frames))
        errors[name] = mape(r, e)
    for group in GROUPS:
        values = [value for name, value in errors.items() if name.startswith(group + "/")]
        errors[group] = math.nan if any(math.isnan(v) for v in values) else float(np.mean(values))
    measured = [errors[group] for group in GROUPS if not math.isnan(errors[group])]
    errors["overall"] = float(np.mean(measured)) if measured else math.nan
    return errors
