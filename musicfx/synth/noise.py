"""Noise scenes for the denoise task, synthesized on the device for a whole batch.

The dataset draws each example's scene *parameters* on the CPU (:meth:`NoiseSynth.draw`, with that
example's own ``torch.Generator``); the datamodule moves them to the device with the clean chunks and calls
:class:`NoiseSynth` in ``on_after_batch_transfer``. Waveforms come from counter-based hashes of a per-example
``noise_seed`` (:mod:`musicfx.rng`), so an example's noise depends on nothing but its parameters:
not on the batch it lands in, its position there, the rank or the worker (bit for bit on one device; across
devices up to float rounding).

Five procedural categories follow the MusicECAN noise classes: electrical (hiss, clicks, crackle, mains
hum), crowd (babble), weather (rain, wind, thunder), traffic (rumble and passing vehicles) and stationary
(white to brown). Every generator has the signature ``(seeds (B,), channels, num_frames, sample_rate) ->
(B, channels, num_frames)`` and returns unit-RMS noise. Filtering is done by multiplying spectra; most
noises are born in the frequency domain as complex Gaussian spectra, which is white noise's rFFT and saves
a forward transform (the noise is circular over the clip, which training does not notice).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from musicfx.rng import derive_seeds, hash_normal, hash_uniform

__all__ = [
    "NOISE_CATEGORIES",
    "GENERATORS",
    "NoiseSynth",
    "mix_at_snr",
    "snr_db",
    "synthesize",
    "electrical_noise",
    "crowd_noise",
    "weather_noise",
    "traffic_noise",
    "stationary_noise",
    "coloured_noise",
    "hum",
    "hiss",
    "clicks",
    "crackle",
    "rain",
    "wind",
    "thunder",
]

NOISE_CATEGORIES: Tuple[str, ...] = ("electrical", "crowd", "weather", "traffic", "stationary")

# (seeds (B,), channels, num_frames, sample_rate) -> (B, channels, num_frames) unit-RMS noise
NoiseGenerator = Callable[[Tensor, int, int, int], Tensor]

# Envelopes (syllables, gusts, vehicle passes, thunder) change slowly: they are computed on this grid and
# interpolated, instead of evaluating their formulas at every audio sample.
_CONTROL_RATE = 200.0
_SPEED_OF_SOUND = 343.0
# Power below this (about -100 dBFS) counts as silence: a silent file chunk is not used as noise, and a
# silent clean signal gets noise as if it were at this level, so that no example divides by zero.
_SILENCE_POWER = 1e-10
_EPS = 1e-20

# Salts that give each component of a category its own seeds.
_SALT_HUM, _SALT_HISS, _SALT_CLICKS, _SALT_CRACKLE = 11, 12, 13, 14
_SALT_RAIN, _SALT_WIND, _SALT_THUNDER = 21, 22, 23
_SALT_ENGINE = 41


# ----------------------------------------------------------------------------------------------- helpers
def _params(seeds: Tensor, count: int, stream: int = 0) -> Tensor:
    """Per-example scalar parameters: (B,) seeds -> (B, count) uniforms in [0, 1)."""
    return hash_uniform(seeds, (count,), stream)


def _between(u: Tensor, low: float, high: float) -> Tensor:
    return low + (high - low) * u


def _log_between(u: Tensor, low: float, high: float) -> Tensor:
    return low * (high / low) ** u


def _col(x: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1), to broadcast a per-example value over (channels, time) or (channels, bins)."""
    return x[:, None, None]


def _db(x: Tensor) -> Tensor:
    return 10.0 ** (x / 20.0)


def _num_bins(num_frames: int, sample_rate: int, max_hz: Optional[float] = None) -> int:
    """rFFT bins to synthesize: all of them, or those up to ``max_hz`` (the rest are zero)."""
    full = num_frames // 2 + 1
    if max_hz is None:
        return full
    return max(2, min(full, int(max_hz * num_frames / sample_rate) + 2))


def _freqs(num_bins: int, num_frames: int, sample_rate: float, device: torch.device) -> Tensor:
    """Centre frequencies in Hz of the first ``num_bins`` rFFT bins of a ``num_frames`` signal: (num_bins,)."""
    return torch.arange(num_bins, device=device, dtype=torch.float32) * (sample_rate / num_frames)


def _taper(freqs: Tensor, max_hz: float) -> Tensor:
    """Raised-cosine fade from 1 at ``max_hz / 2`` to 0 at ``max_hz``: (K,) -> (K,).

    Band-limited noises synthesize bins only up to ``max_hz``; the fade keeps that edge from showing as a
    wall in the spectrum.
    """
    ramp = ((freqs - 0.5 * max_hz) / (0.5 * max_hz)).clamp(0.0, 1.0)
    return torch.cos(0.5 * math.pi * ramp).square()


def _positive(freqs: Tensor) -> Tensor:
    """Frequencies with the DC bin moved to 1 mHz, so that ratios like cutoff / f stay finite (and the
    responses that divide by f vanish there)."""
    return freqs.clamp(min=1e-3)


def _butterworth(ratio: Tensor, order: int) -> Tensor:
    """``1 / sqrt(1 + ratio^(2 order))``, by multiplications: responses span B x bins, and a general power
    costs several times a product there."""
    square = ratio * ratio
    power = square
    for _ in range(order - 1):
        power = power * square
    return power.add_(1.0).rsqrt_()


def _lowpass(freqs: Tensor, cutoff: Tensor, order: int = 2) -> Tensor:
    """Butterworth magnitude response: (K,), (B,) -> (B, 1, K)."""
    return _butterworth(freqs / _col(cutoff), order)


def _highpass(freqs: Tensor, cutoff: Tensor, order: int = 2) -> Tensor:
    """Butterworth magnitude response, zero at DC: (K,), (B,) -> (B, 1, K)."""
    return _butterworth(_col(cutoff) / _positive(freqs), order)


def _resonance(freqs: Tensor, centre: Tensor, q: Tensor) -> Tensor:
    """Second-order band-pass magnitude, 1 at ``centre``: (K,), (B,), (B,) -> (B, 1, K)."""
    ratio = _positive(freqs) / _col(centre)
    return _butterworth(_col(q) * (ratio - ratio.reciprocal()), 1)


def _power_law(freqs: Tensor, alpha: Tensor, floor_hz: float = 10.0) -> Tensor:
    """Amplitude ``f^(-alpha/2)`` (power spectral density ``1/f^alpha``), flat below ``floor_hz``, zero at DC.

    Args:
        freqs: (K,) bin frequencies in Hz.
        alpha: (B,) exponents: 0 white, 1 pink, 2 brown.

    Returns:
        (B, 1, K) magnitude response, 1 at 1 kHz.
    """
    shaped = torch.exp(torch.log(freqs.clamp(min=floor_hz) / 1000.0) * (-0.5 * _col(alpha)))
    shaped[..., 0] = 0.0
    return shaped


def _one_pole(freqs: Tensor, tau: Tensor, sample_rate: float) -> Tensor:
    """Complex response of an exponential decay with time constant ``tau`` seconds: (K,), (B,) -> (B, 1, K).

    Filtering an impulse train by it turns each impulse into a short decaying burst.
    """
    pole = torch.exp(-1.0 / (_col(tau) * sample_rate))
    omega = (2.0 * math.pi / sample_rate) * freqs
    return 1.0 / (1.0 - pole * torch.polar(torch.ones_like(omega), -omega))


def _spread(x: Tensor, share: Tensor) -> Tensor:
    """Partially correlate channels (dim 1) of independent unit-variance signals, keeping unit variance.

    Each channel becomes ``sqrt(share)`` times the (rescaled) channel mean plus ``sqrt(1 - share)`` times
    its own deviation from it: the correlation between two channels is ``share - (1 - share) / (C - 1)``
    (``2 share - 1`` in stereo). Linear, so it works on spectra as well as on waveforms.

    Args:
        x: (B, C, ...) real or complex.
        share: (B,) in [0, 1].

    Returns:
        Tensor shaped like ``x``.
    """
    channels = x.shape[1]
    if channels == 1:
        return x
    share = share.reshape(-1, *([1] * (x.dim() - 1)))
    common = x.mean(dim=1, keepdim=True)
    own = x - common
    return (share * channels).sqrt() * common + ((1.0 - share) * channels / (channels - 1)).sqrt() * own


def _stereo_share(seeds: Tensor, stream: int) -> Tensor:
    """Per-example common share: inter-channel correlation from 0.1 to 0.9 in stereo."""
    return _between(_params(seeds, 1, stream)[:, 0], 0.55, 0.95)


def _spectral_noise(
    seeds: Tensor, lead: Tuple[int, ...], num_frames: int, response: Tensor, stream: int
) -> Tensor:
    """Gaussian noise with a given magnitude (or complex) response, synthesized in the frequency domain.

    Args:
        seeds: (B,) int64.
        lead: shape between batch and time, e.g. ``(channels,)``.
        num_frames: output length.
        response: (B or 1, *broadcastable to lead, K) response of the first K rFFT bins; higher bins are 0.
        stream: hash stream.

    Returns:
        (B, *lead, num_frames) float32.
    """
    bins = response.shape[-1]
    spectrum = hash_normal(seeds, (*lead, bins, 2), stream)
    return torch.fft.irfft(_shape_spectrum(spectrum, response), n=num_frames)


def _shape_spectrum(spectrum: Tensor, response: Tensor) -> Tensor:
    """Multiply a spectrum held as (..., K, 2) real pairs by a (..., K) response, real or complex.

    Returns:
        (..., K) complex.
    """
    if response.is_complex():
        return torch.view_as_complex(spectrum) * response
    # A real response scales both parts: cheaper than promoting it to complex.
    return torch.view_as_complex(spectrum.mul_(response[..., None]))


def _correlated_spectral_noise(
    seeds: Tensor, channels: int, num_frames: int, response: Tensor, stream: int
) -> Tensor:
    """:func:`_spectral_noise` over ``channels`` with a per-example inter-channel correlation: (B, C, T)."""
    bins = response.shape[-1]
    spectrum = _spread(hash_normal(seeds, (channels, bins, 2), stream), _stereo_share(seeds, stream + 1000))
    return torch.fft.irfft(_shape_spectrum(spectrum, response), n=num_frames)


def _unit_rms(x: Tensor) -> Tensor:
    """Scale each example to unit RMS over channels and time; silence stays silence. (B, C, T) -> same."""
    return x * _col(_inverse_rms(x))


def _inverse_rms(x: Tensor) -> Tensor:
    """1 / RMS over channels and time, finite for silence (a tiny floor under the power).

    Args:
        x: (B, C, T).

    Returns:
        (B,).
    """
    norm = torch.linalg.vector_norm(x, dim=(1, 2))
    return (norm.square() / (x.shape[1] * x.shape[2]) + _EPS).rsqrt()


def _combine(parts: Sequence[Tuple[Tensor, Tensor]]) -> Tensor:
    """Sum unit-RMS components with per-example gains (zero leaves one out), then normalize.

    Args:
        parts: pairs of (B, C, T) signal and (B,) linear gain.

    Returns:
        (B, C, T) unit-RMS sum.
    """
    total = torch.zeros_like(parts[0][0])
    for signal, gain in parts:
        total.addcmul_(signal, _col(gain * _inverse_rms(signal)))
    return _unit_rms(total)


def _control_grid(num_frames: int, sample_rate: int, device: torch.device) -> Tuple[Tensor, float]:
    """Times in seconds of the control grid, spanning the first to the last audio sample, and its rate.

    Returns:
        (Tc,) times and the grid's exact rate in Hz (close to ``_CONTROL_RATE``).
    """
    span = (num_frames - 1) / sample_rate
    count = max(2, math.ceil(span * _CONTROL_RATE) + 1)
    rate = (count - 1) / span if span > 0 else _CONTROL_RATE
    return torch.linspace(0.0, span, count, device=device), rate


def _to_audio_rate(envelope: Tensor, num_frames: int) -> Tensor:
    """Linear interpolation of a control signal onto the audio samples: (B, K, Tc) -> (B, K, num_frames)."""
    return F.interpolate(envelope, size=num_frames, mode="linear", align_corners=True)


def _impulse_train(
    seeds: Tensor,
    channels: int,
    num_frames: int,
    sample_rate: int,
    rate_hz: Tensor,
    max_rate_hz: float,
    range_db: float,
    stream: int,
) -> Tensor:
    """A Poisson process of impulses with random polarity and log-uniform amplitudes.

    Arrival times are cumulative sums of exponential gaps, so the hashing scales with the number of
    impulses, not of samples. Every example draws as many gaps as the fastest allowed rate could need
    (``max_rate_hz``, not the batch's fastest), which keeps an example's impulses independent of its batch.
    Every channel also gets one full-scale impulse at a random place, so that a rare process still sounds.

    Args:
        seeds: (B,) int64.
        rate_hz: (B,) impulses per second, at most ``max_rate_hz``.
        range_db: amplitudes span 0 to ``-range_db`` dB.

    Returns:
        (B, channels, num_frames) float32, mostly zeros.
    """
    expected = max_rate_hz * num_frames / sample_rate
    count = math.ceil(expected + 6.0 * math.sqrt(expected) + 10.0)
    u = hash_uniform(seeds, (channels, count, 2), stream)
    # Float64 times: a float32 sum of thousands of gaps would misplace late impulses by whole samples.
    gaps = -torch.log1p(-u[..., 0].double()) * (sample_rate / rate_hz.double())[:, None, None]
    times = gaps.cumsum(dim=-1)
    inside = times < num_frames
    index = times.clamp(max=num_frames - 1).long()
    sign = torch.where(u[..., 1] < 0.5, -1.0, 1.0)
    amplitude = sign * 10.0 ** (-range_db / 20.0 * torch.frac(2.0 * u[..., 1]))
    train = torch.zeros(seeds.shape[0], channels, num_frames, device=seeds.device)
    train.scatter_add_(2, index, torch.where(inside, amplitude, torch.zeros((), device=u.device)))
    place = hash_uniform(seeds, (channels, 2), stream + 1)
    position = (place[..., :1] * num_frames).long().clamp(max=num_frames - 1)
    return train.scatter(2, position, torch.where(place[..., 1:] < 0.5, -1.0, 1.0))


def _check(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> None:
    if channels < 1 or num_frames < 2 or sample_rate < 1:
        raise ValueError(
            f"noise needs channels >= 1, num_frames >= 2 and sample_rate >= 1, "
            f"got {channels}, {num_frames}, {sample_rate}"
        )
    if seeds.dim() != 1 or seeds.dtype != torch.int64:
        raise ValueError(f"seeds must be a 1-D int64 tensor, got shape {tuple(seeds.shape)} and {seeds.dtype}")


# --------------------------------------------------------------------------------------------- electrical
def hum(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Mains hum: 50 or 60 Hz (slightly off, as grids drift) with decaying, randomly phased harmonics.

    One period is tabulated per example and read with linear interpolation, so forty harmonics cost no
    more than one.

    Args:
        seeds: (B,) int64.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    _check(seeds, channels, num_frames, sample_rate)
    device = seeds.device
    harmonics, table_size = 40, 2048
    p = _params(seeds, 5 + 2 * channels)
    mains = torch.where(p[:, 0] < 0.5, 50.0, 60.0) * (1.0 + 0.002 * (2.0 * p[:, 1] - 1.0))
    decay = _between(p[:, 2], 0.1, 0.6)
    even_gain = _between(p[:, 3], 0.3, 1.0)
    order = torch.arange(1, harmonics + 1, device=device, dtype=torch.float32)
    amplitude = torch.exp(-decay[:, None] * (order - 1.0))
    amplitude = torch.where(order % 2 == 0, amplitude * even_gain[:, None], amplitude)
    # Harmonics past 0.45 of the sample rate would alias.
    amplitude = amplitude * (order * mains[:, None] < 0.45 * sample_rate)
    phase = 2.0 * math.pi * hash_uniform(seeds, (harmonics,), 1)
    grid = torch.arange(table_size, device=device, dtype=torch.float32) * (2.0 * math.pi / table_size)
    table = (amplitude[:, :, None] * torch.sin(order[None, :, None] * grid + phase[:, :, None])).sum(dim=1)
    # Two wrapped entries at the end spare a modulo for the right neighbour (and for a rounding to 1.0).
    table = torch.cat([table, table[:, :2]], dim=1)[:, None, :].expand(-1, channels, -1)
    # Each microphone hears the same hum up to 1 ms later and a little softer or louder.
    delay = _between(p[:, 5 : 5 + channels], 0.0, 1e-3).double()
    gain = _between(p[:, 5 + channels :], 0.8, 1.0)
    # Float64 phase: a float32 sample index times the frequency loses whole degrees after a few minutes.
    time = torch.arange(num_frames, device=device, dtype=torch.float64) / sample_rate
    start = p[:, 4].double()[:, None] - mains.double()[:, None] * delay  # (B, C) cycles
    cycles = mains.double()[:, None, None] * time + start[:, :, None]
    cycles = ((cycles - cycles.floor()) * table_size).float()
    index = cycles.long()
    weight = cycles - index
    wave = torch.lerp(table.gather(2, index), table.gather(2, index + 1), weight)
    return _unit_rms(wave * gain[:, :, None])


def hiss(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Tape/amplifier hiss: white noise high-passed at 1 to 5 kHz.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    _check(seeds, channels, num_frames, sample_rate)
    p = _params(seeds, 1)
    freqs = _freqs(_num_bins(num_frames, sample_rate), num_frames, sample_rate, seeds.device)
    response = _highpass(freqs, _log_between(p[:, 0], 1000.0, 5000.0), order=2)
    return _unit_rms(_correlated_spectral_noise(seeds, channels, num_frames, response, stream=1))


def _impulsive(
    seeds: Tensor,
    channels: int,
    num_frames: int,
    sample_rate: int,
    rate_hz: Tuple[float, float],
    tau_s: Tuple[float, float],
    highpass_hz: Tuple[float, float],
    range_db: float,
) -> Tensor:
    """Impulses that each ring down exponentially, high-passed: the shared body of clicks and crackle."""
    _check(seeds, channels, num_frames, sample_rate)
    p = _params(seeds, 3)
    rate = _log_between(p[:, 0], *rate_hz)
    train = _impulse_train(seeds, channels, num_frames, sample_rate, rate, rate_hz[1], range_db, stream=1)
    freqs = _freqs(_num_bins(num_frames, sample_rate), num_frames, sample_rate, seeds.device)
    response = _one_pole(freqs, _log_between(p[:, 1], *tau_s), sample_rate)
    response = response * _highpass(freqs, _log_between(p[:, 2], *highpass_hz), order=2)
    return _unit_rms(torch.fft.irfft(torch.fft.rfft(train) * response, n=num_frames))


def clicks(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Clicks and pops: 0.5 to 8 per second, 0.1 to 2 ms decays, high-passed at 100 to 800 Hz, amplitudes
    over 30 dB.

    Returns:
        (B, channels, num_frames) unit RMS, very impulsive (high kurtosis).
    """
    return _impulsive(
        seeds, channels, num_frames, sample_rate, rate_hz=(0.5, 8.0), tau_s=(1e-4, 2e-3),
        highpass_hz=(100.0, 800.0), range_db=30.0,
    )


def crackle(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Crackle (vinyl, bad contacts): 30 to 300 tiny ticks per second, 50 to 500 us decays, high-passed.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    return _impulsive(
        seeds, channels, num_frames, sample_rate, rate_hz=(30.0, 300.0), tau_s=(5e-5, 5e-4),
        highpass_hz=(500.0, 3000.0), range_db=40.0,
    )


def electrical_noise(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Electrical noise: mains hum always, plus hiss, clicks and crackle each present by chance.

    Levels relative to the unit-RMS components: hum -12 to 0 dB; hiss (80 %) -20 to 0 dB; clicks (50 %)
    -12 to 0 dB; crackle (50 %) -20 to -3 dB.

    Args:
        seeds: (B,) int64.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    _check(seeds, channels, num_frames, sample_rate)
    p = _params(seeds, 7)
    args = (channels, num_frames, sample_rate)
    hum_gain = _db(_between(p[:, 0], -12.0, 0.0))
    hiss_gain = _db(_between(p[:, 1], -20.0, 0.0)) * (p[:, 2] < 0.8)
    clicks_gain = _db(_between(p[:, 3], -12.0, 0.0)) * (p[:, 4] < 0.5)
    crackle_gain = _db(_between(p[:, 5], -20.0, -3.0)) * (p[:, 6] < 0.5)
    return _combine(
        [
            (hum(derive_seeds(seeds, _SALT_HUM), *args), hum_gain),
            (hiss(derive_seeds(seeds, _SALT_HISS), *args), hiss_gain),
            (clicks(derive_seeds(seeds, _SALT_CLICKS), *args), clicks_gain),
            (crackle(derive_seeds(seeds, _SALT_CRACKLE), *args), crackle_gain),
        ]
    )


# -------------------------------------------------------------------------------------------------- crowd
def _syllable_envelope(
    seeds: Tensor, num_frames: int, sample_rate: int, rate: Tensor, offset: Tensor, stream: int
) -> Tensor:
    """Positive envelope with syllable-rate bumps: narrow-band noise around ``rate`` Hz, offset, rectified.

    Args:
        rate: (B,) syllables per second.
        offset: (B,) added before rectification: higher means fewer pauses.

    Returns:
        (B, 1, num_frames) envelope.
    """
    times, control_rate = _control_grid(num_frames, sample_rate, seeds.device)
    count = times.numel()
    freqs = _freqs(count // 2 + 1, count, control_rate, seeds.device)
    response = torch.exp(-0.5 * ((freqs - _col(rate)) / 0.7) ** 2)
    wobble = _spectral_noise(seeds, (1,), count, response, stream)
    wobble = wobble * (wobble.pow(2).mean(dim=-1, keepdim=True) + _EPS).rsqrt()
    return _to_audio_rate(torch.relu(wobble + _col(offset)), num_frames)


def _pan_gains(u: Tensor, channels: int) -> Tensor:
    """Per-channel gains of sources placed at random: (B, V) uniforms -> (B, V, channels).

    Stereo uses the constant-power pan law; other layouts treat the channels as a line of microphones,
    with gains falling off away from the source's place on it.
    """
    if channels == 1:
        return torch.ones(*u.shape, 1, device=u.device)
    if channels == 2:
        angle = _between(u, 0.1, 0.9) * (0.5 * math.pi)
        return torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
    spread = torch.arange(channels, device=u.device, dtype=torch.float32) / (channels - 1)
    return 1.0 - 0.7 * (spread - u[..., None]).abs()


def crowd_noise(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Crowd babble: three to six noise "voices", each shaped by three formant resonances inside the speech
    band, amplitude-modulated at its own syllable rate (3 to 6 Hz) and placed in the stereo field.

    Args:
        seeds: (B,) int64.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    _check(seeds, channels, num_frames, sample_rate)
    voices = 6
    count = 3 + (_params(seeds, 1, stream=0)[:, 0] * 4).long().clamp(max=3)
    bins = _num_bins(num_frames, sample_rate, max_hz=12000.0)
    freqs = _freqs(bins, num_frames, sample_rate, seeds.device)
    edge = _taper(freqs, 12000.0)
    out = torch.zeros(seeds.shape[0], channels, num_frames, device=seeds.device)
    for voice in range(voices):
        p = _params(seeds, 12, stream=10 * voice + 1)
        band = edge * _highpass(freqs, _between(p[:, 0], 100.0, 200.0))
        band = band * _lowpass(freqs, _between(p[:, 1], 3000.0, 4500.0), order=3)
        formants = (
            0.1
            + _resonance(freqs, _between(p[:, 2], 300.0, 900.0), _between(p[:, 3], 3.0, 8.0))
            + _between(p[:, 4], 0.3, 0.8)[:, None, None]
            * _resonance(freqs, _between(p[:, 5], 900.0, 2400.0), _between(p[:, 6], 3.0, 8.0))
            + _between(p[:, 7], 0.1, 0.4)[:, None, None]
            * _resonance(freqs, _between(p[:, 8], 2400.0, 3400.0), _between(p[:, 9], 4.0, 10.0))
        )
        carrier = _unit_rms(_spectral_noise(seeds, (1,), num_frames, band * formants, stream=10 * voice + 2))
        envelope = _syllable_envelope(
            seeds, num_frames, sample_rate, _between(p[:, 10], 3.0, 6.0), _between(p[:, 11], -0.2, 0.6),
            stream=10 * voice + 3,
        )
        level = _db(_between(_params(seeds, 1, stream=10 * voice + 4)[:, 0], -8.0, 0.0)) * (voice < count)
        pan = _pan_gains(_params(seeds, 1, stream=10 * voice + 5), channels)[:, 0, :]
        out = out + (carrier * envelope) * (level[:, None] * pan)[:, :, None]
    return _unit_rms(out)


# ------------------------------------------------------------------------------------------------ weather
def rain(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Rain: dense droplets (impulses ringing briefly in a random band) over a pink background.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    _check(seeds, channels, num_frames, sample_rate)
    p = _params(seeds, 6)
    rate = _log_between(p[:, 0], 300.0, 5000.0)
    train = _impulse_train(seeds, channels, num_frames, sample_rate, rate, 5000.0, 30.0, stream=1)
    train = _spread(train, _stereo_share(seeds, 4))
    freqs = _freqs(_num_bins(num_frames, sample_rate), num_frames, sample_rate, seeds.device)
    droplet = _one_pole(freqs, _log_between(p[:, 1], 1e-4, 1e-3), sample_rate) * _resonance(
        freqs, _log_between(p[:, 2], 1500.0, 6000.0), _between(p[:, 3], 0.7, 2.0)
    )
    droplets = _unit_rms(torch.fft.irfft(torch.fft.rfft(train) * droplet, n=num_frames))
    background_response = _power_law(freqs, torch.ones_like(p[:, 0])) * _lowpass(
        freqs, _log_between(p[:, 4], 4000.0, 12000.0)
    )
    background = _correlated_spectral_noise(seeds, channels, num_frames, background_response, stream=3)
    return _combine([(droplets, torch.ones_like(p[:, 0])), (background, _db(_between(p[:, 5], -15.0, -3.0)))])


def _slow_noise(seeds: Tensor, num_frames: int, sample_rate: int, cutoff: Tensor, stream: int) -> Tensor:
    """Unit-variance control noise low-passed at ``cutoff`` Hz, at the audio rate: (B,) -> (B, 1, T)."""
    times, control_rate = _control_grid(num_frames, sample_rate, seeds.device)
    count = times.numel()
    freqs = _freqs(count // 2 + 1, count, control_rate, seeds.device)
    slow = _spectral_noise(seeds, (1,), count, _lowpass(freqs, cutoff, order=2), stream)
    slow = slow - slow.mean(dim=-1, keepdim=True)
    slow = slow * (slow.square().mean(dim=-1, keepdim=True) + _EPS).rsqrt()
    return _to_audio_rate(slow, num_frames)


def wind(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Wind: low-passed noise (cutoff 150 to 600 Hz) with a slow gusting envelope and a faint howl.

    Returns:
        (B, channels, num_frames) unit RMS, low-frequency dominated.
    """
    _check(seeds, channels, num_frames, sample_rate)
    p = _params(seeds, 6)
    freqs = _freqs(_num_bins(num_frames, sample_rate, max_hz=8000.0), num_frames, sample_rate, seeds.device)
    response = _lowpass(freqs, _log_between(p[:, 0], 150.0, 600.0), order=2) * _taper(freqs, 8000.0)
    response = response * _highpass(freqs, torch.full_like(p[:, 0], 20.0))
    response = response + _between(p[:, 1], 0.0, 0.3)[:, None, None] * _resonance(
        freqs, _log_between(p[:, 2], 300.0, 900.0), torch.full_like(p[:, 0], 6.0)
    )
    body = _correlated_spectral_noise(seeds, channels, num_frames, response, stream=1)
    gusts = _slow_noise(seeds, num_frames, sample_rate, _log_between(p[:, 3], 0.05, 0.5), stream=2)
    envelope = torch.exp(_col(_between(p[:, 4], 0.4, 1.2)) * gusts)
    return _unit_rms(body * envelope)


def thunder(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Thunder: brown rumble below 100 to 300 Hz in one to three bursts with slow attacks and 1 to 4 s decays.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    _check(seeds, channels, num_frames, sample_rate)
    events = 3
    p = _params(seeds, 2)
    q = hash_uniform(seeds, (5, events), stream=1)
    freqs = _freqs(_num_bins(num_frames, sample_rate, max_hz=2000.0), num_frames, sample_rate, seeds.device)
    response = _power_law(freqs, torch.full_like(p[:, 0], 2.0), floor_hz=20.0) * _lowpass(
        freqs, _log_between(p[:, 0], 100.0, 300.0), order=2
    )
    response = response * _taper(freqs, 2000.0)
    body = _correlated_spectral_noise(seeds, channels, num_frames, response, stream=2)
    times, _ = _control_grid(num_frames, sample_rate, seeds.device)
    span = (num_frames - 1) / sample_rate
    onset = _between(q[:, 0], -0.3, 0.9) * span
    attack = _between(q[:, 1], 0.05, 0.4)
    decay = _between(q[:, 2], 1.0, 4.0)
    # The first event always sounds, the others by chance, so that no clip is silence.
    sounds = torch.cat([torch.ones_like(q[:, 4, :1]), (q[:, 4, 1:] < 0.5).float()], dim=1)
    level = _db(_between(q[:, 3], -10.0, 0.0)) * sounds
    elapsed = (times[None, None, :] - onset[:, :, None]).clamp(min=0.0)
    bursts = (1.0 - torch.exp(-elapsed / attack[:, :, None])) * torch.exp(-elapsed / decay[:, :, None])
    envelope = (level[:, :, None] * bursts).sum(dim=1, keepdim=True) + 0.01 * _col(p[:, 1] + 0.5)
    return _unit_rms(body * _to_audio_rate(envelope, num_frames))


def weather_noise(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Weather: rain (70 %), wind (60 %) and thunder (25 %) at random levels; rain when none was drawn.

    Args:
        seeds: (B,) int64.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    _check(seeds, channels, num_frames, sample_rate)
    p = _params(seeds, 6)
    has_rain, has_wind, has_thunder = p[:, 0] < 0.7, p[:, 1] < 0.6, p[:, 2] < 0.25
    has_rain = has_rain | ~(has_wind | has_thunder)
    args = (channels, num_frames, sample_rate)
    return _combine(
        [
            (rain(derive_seeds(seeds, _SALT_RAIN), *args), _db(_between(p[:, 3], -10.0, 0.0)) * has_rain),
            (wind(derive_seeds(seeds, _SALT_WIND), *args), _db(_between(p[:, 4], -10.0, 0.0)) * has_wind),
            (thunder(derive_seeds(seeds, _SALT_THUNDER), *args), _db(_between(p[:, 5], -6.0, 3.0)) * has_thunder),
        ]
    )


# ------------------------------------------------------------------------------------------------ traffic
def traffic_noise(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Traffic: brownish low-frequency rumble and tyre noise, swelling as up to six vehicles pass.

    A vehicle at speed ``v`` passing at closest distance ``D`` at time ``t0`` is heard with amplitude
    ``D / d(t)``, ``d(t) = sqrt(D^2 + v^2 (t - t0)^2)``: a bell-shaped bump, panned from one side to the
    other as it passes. Half the scenes add an engine tone (30 to 120 Hz, four harmonics) on the first
    vehicle, Doppler-shifted through its emission time ``t - d(t) / c``.

    Args:
        seeds: (B,) int64.

    Returns:
        (B, channels, num_frames) unit RMS, low-frequency dominated.
    """
    _check(seeds, channels, num_frames, sample_rate)
    device, vehicles = seeds.device, 6
    p = _params(seeds, 9)
    freqs = _freqs(_num_bins(num_frames, sample_rate), num_frames, sample_rate, device)
    rumble_response = _power_law(freqs, _between(p[:, 0], 1.5, 2.5), floor_hz=20.0) * _lowpass(
        freqs, _log_between(p[:, 1], 80.0, 400.0), order=2
    )
    tyre_response = _resonance(freqs, _log_between(p[:, 2], 500.0, 1500.0), torch.full_like(p[:, 0], 0.7))
    rumble = _correlated_spectral_noise(seeds, channels, num_frames, rumble_response, stream=1)
    tyres = _correlated_spectral_noise(seeds, channels, num_frames, tyre_response, stream=3)
    body = _combine([(rumble, torch.ones_like(p[:, 0])), (tyres, _db(_between(p[:, 3], -20.0, -8.0)))])

    q = hash_uniform(seeds, (6, vehicles), stream=5)
    span = (num_frames - 1) / sample_rate
    passing = _between(q[:, 0], -0.1, 1.1) * span
    speed = _between(q[:, 1], 8.0, 25.0)
    closest = _between(q[:, 2], 3.0, 30.0)
    direction = torch.where(q[:, 3] < 0.5, -1.0, 1.0)
    density = _between(p[:, 4], 0.2, 1.0)
    # The first vehicle always passes (near the clip or not), the others by the scene's density.
    present = torch.cat([torch.ones_like(q[:, 5, :1]), (q[:, 5, 1:] < density[:, None]).float()], dim=1)
    gain = _db(_between(q[:, 4], -12.0, 0.0)) * present

    times, _ = _control_grid(num_frames, sample_rate, device)
    along = speed[:, :, None] * (times[None, None, :] - passing[:, :, None])  # (B, V, Tc) metres
    distance = torch.sqrt(closest[:, :, None] ** 2 + along**2)
    bumps = gain[:, :, None] * closest[:, :, None] / distance
    position = 0.5 + 0.5 * direction[:, :, None] * torch.tanh(along / closest[:, :, None])
    pan = _pan_gains(position.transpose(1, 2), channels)  # (B, Tc, V, C)
    floor = _between(p[:, 5], 0.05, 0.3)
    envelope = _col(floor) + torch.einsum("bvt,btvc->bct", bumps, pan)
    scene = body * _to_audio_rate(envelope, num_frames)

    # Engine tone of the first vehicle, evaluated at the audio rate because its phase must be exact.
    time = torch.arange(num_frames, device=device, dtype=torch.float32) / sample_rate
    along_audio = speed[:, :1] * (time[None, :] - passing[:, :1])
    distance_audio = torch.sqrt(closest[:, :1] ** 2 + along_audio**2)
    engine_hz = _log_between(p[:, 6], 30.0, 120.0)
    cycles = torch.frac(engine_hz[:, None] * (time[None, :] - distance_audio / _SPEED_OF_SOUND))
    engine_phase = 2.0 * math.pi * hash_uniform(derive_seeds(seeds, _SALT_ENGINE), (4,))
    tone = sum(
        (0.6**k) * torch.sin(2.0 * math.pi * (k + 1) * cycles + engine_phase[:, k : k + 1]) for k in range(4)
    )
    tone = tone * (closest[:, :1] / distance_audio)
    tone_pan = _pan_gains(position[:, :1, :].transpose(1, 2), channels)[:, :, 0, :]  # (B, Tc, C)
    tone = tone[:, None, :] * _to_audio_rate(tone_pan.transpose(1, 2), num_frames)
    has_tone = p[:, 7] < 0.5
    return _combine([(scene, torch.ones_like(p[:, 0])), (tone, _db(_between(p[:, 8], -18.0, -6.0)) * has_tone)])


# --------------------------------------------------------------------------------------------- stationary
def coloured_noise(
    seeds: Tensor, channels: int, num_frames: int, sample_rate: int, alpha: Union[float, Tensor]
) -> Tensor:
    """Noise with power spectral density ``1/f^alpha`` (0 white, 1 pink, 2 brown), flat below 10 Hz.

    Args:
        seeds: (B,) int64.
        alpha: exponent, one for all or (B,) per example.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    _check(seeds, channels, num_frames, sample_rate)
    alpha = torch.as_tensor(alpha, dtype=torch.float32, device=seeds.device).expand(seeds.shape[0])
    freqs = _freqs(_num_bins(num_frames, sample_rate), num_frames, sample_rate, seeds.device)
    return _unit_rms(_correlated_spectral_noise(seeds, channels, num_frames, _power_law(freqs, alpha), stream=1))


def stationary_noise(seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Stationary coloured noise: half the examples white, pink or brown exactly, half any ``alpha`` in [0, 2].

    Args:
        seeds: (B,) int64.

    Returns:
        (B, channels, num_frames) unit RMS.
    """
    p = _params(seeds, 3, stream=100)
    alpha = torch.where(p[:, 0] < 0.5, (p[:, 1] * 3).floor().clamp(max=2.0), 2.0 * p[:, 2])
    return coloured_noise(seeds, channels, num_frames, sample_rate, alpha)


GENERATORS: Dict[str, NoiseGenerator] = {
    "electrical": electrical_noise,
    "crowd": crowd_noise,
    "weather": weather_noise,
    "traffic": traffic_noise,
    "stationary": stationary_noise,
}


def synthesize(category: str, seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Noise of one named category for a batch of seeds.

    Args:
        category: one of :data:`NOISE_CATEGORIES`.
        seeds: (B,) int64.

    Returns:
        (B, channels, num_frames) unit RMS float32.
    """
    if category not in GENERATORS:
        raise ValueError(f"unknown noise category {category!r}; valid: {', '.join(NOISE_CATEGORIES)}")
    return GENERATORS[category](seeds, channels, num_frames, sample_rate)


# ------------------------------------------------------------------------------------------------- mixing
def _power(x: Tensor) -> Tensor:
    """Mean square over the last two dims (channels, time): (..., C, T) -> (...)."""
    return x.float().pow(2).mean(dim=(-2, -1))


def snr_db(clean: Tensor, noise: Tensor) -> Tensor:
    """Signal-to-noise ratio in dB over channels and time.

    Args:
        clean: (..., C, T).
        noise: (..., C, T).

    Returns:
        (...) float32.
    """
    return 10.0 * torch.log10(_power(clean).clamp(min=_EPS) / _power(noise).clamp(min=_EPS))


def _noise_gain(clean: Tensor, noise: Tensor, snr: Union[float, Tensor]) -> Tensor:
    """Gain that puts ``noise`` at ``snr`` dB below ``clean``: (..., C, T) pair -> (..., 1, 1).

    A silent clean signal is treated as one at the silence level, and a silent noise gets a finite gain
    (it stays silent), so nothing here divides by zero.
    """
    clean_power = _power(clean).clamp(min=_SILENCE_POWER)
    noise_power = _power(noise).clamp(min=_EPS)
    snr = torch.as_tensor(snr, dtype=torch.float32, device=clean.device)
    gain = torch.sqrt(clean_power / (noise_power * 10.0 ** (snr / 10.0)))
    return gain[..., None, None]


def mix_at_snr(clean: Tensor, noise: Tensor, snr_db: Union[float, Tensor]) -> Tensor:
    """Add noise to clean audio at a given signal-to-noise ratio (powers over channels and time).

    Args:
        clean: (..., C, T).
        noise: (..., C, T), any level.
        snr_db: a float, or a tensor of the batch shape (...).

    Returns:
        (..., C, T) float32 ``clean + g * noise`` with ``10 log10(P(clean) / P(g * noise)) = snr_db``.
    """
    if clean.shape != noise.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and noise {tuple(noise.shape)} must have the same shape")
    clean, noise = clean.float(), noise.float()
    return clean + _noise_gain(clean, noise, snr_db) * noise


# ---------------------------------------------------------------------------------------------- the scene
def _check_range(name: str, bounds: Tuple[float, float]) -> Tuple[float, float]:
    low, high = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name} must be a finite (low, high) pair with low <= high, got {bounds}")
    return low, high


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


class NoiseSynth(torch.nn.Module):
    """Noisy/clean training pairs from clean music: procedural or recorded noise at a random SNR.

    :meth:`draw` makes one example's scene parameters on the CPU; :meth:`forward` renders a batch of them on
    the clean audio's device. Gain, polarity and channel order are randomized on the pair together, so the
    model learns to keep them. No learned parameters.

    Args:
        sample_rate: of the clean audio, Hz.
        snr_db: range of the uniform signal-to-noise ratio, dB.
        categories: weights of the procedural categories by name (missing names weigh 0); None for equal
            weights.
        file_noise_prob: chance that a recorded noise chunk, when the batch carries one, replaces the
            procedural noise.
        gain_db: range of the uniform gain applied to the pair, dB.
        flip_prob: chance of inverting the polarity of the pair.
        swap_prob: chance of swapping left and right (stereo only).
    """

    #: The names of :meth:`draw`'s parameters, which :meth:`forward` reads from a batch.
    param_keys: Tuple[str, ...] = ("snr_db", "category", "use_file", "gain_db", "flip", "swap", "noise_seed")

    def __init__(
        self,
        sample_rate: int,
        snr_db: Tuple[float, float] = (-5.0, 20.0),
        categories: Optional[Mapping[str, float]] = None,
        file_noise_prob: float = 0.5,
        gain_db: Tuple[float, float] = (-6.0, 3.0),
        flip_prob: float = 0.5,
        swap_prob: float = 0.5,
    ) -> None:
        super().__init__()
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.snr_db = _check_range("snr_db", snr_db)
        self.gain_db = _check_range("gain_db", gain_db)
        self.file_noise_prob = _check_probability("file_noise_prob", file_noise_prob)
        self.flip_prob = _check_probability("flip_prob", flip_prob)
        self.swap_prob = _check_probability("swap_prob", swap_prob)
        # A plain attribute, not a buffer: draws happen on the CPU even when the module sits on a GPU.
        self.category_weights = _category_weights(categories)

    def draw(self, generator: torch.Generator) -> Dict[str, Tensor]:
        """Scene parameters for one example.

        Args:
            generator: a CPU generator seeded for this example (the dataset's).

        Returns:
            0-d tensors: ``snr_db`` and ``gain_db`` (float32), ``category`` (int64 index into
            :data:`NOISE_CATEGORIES`), ``use_file``, ``flip``, ``swap`` (bool) and ``noise_seed`` (int64).
        """
        u = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
        category = torch.multinomial(self.category_weights, 1, generator=generator)[0]
        noise_seed = torch.randint(0, 2**63 - 1, (), generator=generator, dtype=torch.int64)
        snr_low, snr_high = self.snr_db
        gain_low, gain_high = self.gain_db
        return {
            "snr_db": torch.tensor(snr_low + (snr_high - snr_low) * u[0], dtype=torch.float32),
            "category": category.to(torch.int64),
            "use_file": torch.tensor(u[1] < self.file_noise_prob),
            "gain_db": torch.tensor(gain_low + (gain_high - gain_low) * u[2], dtype=torch.float32),
            "flip": torch.tensor(u[3] < self.flip_prob),
            "swap": torch.tensor(u[4] < self.swap_prob),
            "noise_seed": noise_seed,
        }

    def procedural(self, seeds: Tensor, categories: Tensor, channels: int, num_frames: int) -> Tensor:
        """Procedural noise for each example's category, one batched call per category present.

        Args:
            seeds: (B,) int64.
            categories: (B,) int64 indices into :data:`NOISE_CATEGORIES`.

        Returns:
            (B, channels, num_frames) unit-RMS float32 on the seeds' device.
        """
        present = torch.unique(categories).tolist()
        for index in present:
            if not 0 <= index < len(NOISE_CATEGORIES):
                raise ValueError(f"category index {index} out of range for {NOISE_CATEGORIES}")
        if len(present) == 1:
            return GENERATORS[NOISE_CATEGORIES[present[0]]](seeds, channels, num_frames, self.sample_rate)
        noise = torch.empty(seeds.shape[0], channels, num_frames, device=seeds.device)
        for index in present:
            rows = (categories == index).nonzero()[:, 0]
            noise[rows] = GENERATORS[NOISE_CATEGORIES[index]](seeds[rows], channels, num_frames, self.sample_rate)
        return noise

    @torch.no_grad()
    def forward(
        self, clean: Tensor, params: Mapping[str, Tensor], file_noise: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """Render a batch of scenes.

        Args:
            clean: (B, C, T) clean audio.
            params: (B,) tensors under :meth:`draw`'s keys (as the default collate stacks them), on any
                device.
            file_noise: optional (B, C, T) recorded noise chunks (any level); used where ``use_file`` is
                set and the chunk is not silent.

        Returns:
            ``noisy`` and ``target``, (B, C, T) in ``clean``'s dtype: the noisy mix at each example's SNR and
            the clean audio, both after the same gain, polarity flip and channel swap, and scaled down
            together where either would peak above 1.
        """
        if clean.dim() != 3:
            raise ValueError(f"clean must be (batch, channels, time), got shape {tuple(clean.shape)}")
        batch, channels, num_frames = clean.shape
        p = _batch_params(params, batch, clean.device)
        with torch.autocast(device_type=clean.device.type, enabled=False):
            target = clean.float()
            noise = self.procedural(p["noise_seed"], p["category"], channels, num_frames)
            if file_noise is not None:
                if file_noise.shape != clean.shape:
                    raise ValueError(f"file_noise {tuple(file_noise.shape)} must match clean {tuple(clean.shape)}")
                recorded = file_noise.float()
                use = p["use_file"].bool() & (_power(recorded) > _SILENCE_POWER)
                noise = torch.where(use[:, None, None], recorded, noise)
            noisy = target + _noise_gain(target, noise, p["snr_db"].float()) * noise
            factor = _col(_db(p["gain_db"].float()) * torch.where(p["flip"].bool(), -1.0, 1.0))
            noisy, target = noisy * factor, target * factor
            if channels == 2:
                swap = _col(p["swap"].bool())
                noisy = torch.where(swap, noisy.flip(1), noisy)
                target = torch.where(swap, target.flip(1), target)
            peak = torch.maximum(noisy.abs().amax(dim=(1, 2)), target.abs().amax(dim=(1, 2)))
            # Dividing by the peak where it exceeds 1 keeps the SNR and the pair's relation exact.
            scale = _col(peak.clamp(min=1.0).reciprocal())
            noisy, target = noisy * scale, target * scale
        return noisy.to(clean.dtype), target.to(clean.dtype)


def _category_weights(categories: Optional[Mapping[str, float]]) -> Tensor:
    """Category weights in :data:`NOISE_CATEGORIES` order: (5,) float64 on the CPU."""
    if categories is None:
        return torch.ones(len(NOISE_CATEGORIES), dtype=torch.float64)
    unknown = sorted(set(categories) - set(NOISE_CATEGORIES))
    if unknown:
        raise ValueError(f"unknown noise categories {unknown}; valid: {', '.join(NOISE_CATEGORIES)}")
    weights = torch.tensor([float(categories.get(name, 0.0)) for name in NOISE_CATEGORIES], dtype=torch.float64)
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"category weights must be finite, non-negative and not all zero, got {dict(categories)}"
        )
    return weights


def _batch_params(params: Mapping[str, Tensor], batch: int, device: torch.device) -> Dict[str, Tensor]:
    """The scene parameters of a batch, checked and moved to ``device``."""
    missing = [key for key in NoiseSynth.param_keys if key not in params]
    if missing:
        raise ValueError(f"scene parameters lack {missing}; NoiseSynth.draw makes {list(NoiseSynth.param_keys)}")
    out = {key: params[key].to(device) for key in NoiseSynth.param_keys}
    for key, value in out.items():
        if value.shape != (batch,):
            raise ValueError(f"params[{key!r}] must have shape ({batch},), got {tuple(value.shape)}")
    return out
