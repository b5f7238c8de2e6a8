"""Signal helpers shared by the noise categories: per-example parameters from hashes, frequency
responses, noise born in the frequency domain, unit-RMS scaling and slow control envelopes.

Every helper works on a batch: per-example values are (B,) tensors, signals (B, channels, time). The
names keep their leading underscore: they are this package's internals, not part of its API.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from musicfx.rng import derive_seeds, hash_normal, hash_uniform

# (seeds (B,), channels, num_frames, sample_rate) -> (B, channels, num_frames) unit-RMS noise
NoiseGenerator = Callable[[Tensor, int, int, int], Tensor]

# Envelopes (syllables, gusts, vehicle passes, thunder) change slowly: they are computed on this grid and
# interpolated, instead of evaluating their formulas at every audio sample.
_CONTROL_RATE = 200.0
_EPS = 1e-20


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


def _combine_components(
    seeds: Tensor, channels: int, num_frames: int, sample_rate: int,
    parts: Sequence[Tuple[NoiseGenerator, int, Tensor]],
) -> Tensor:
    """:func:`_combine` of generated components, each seeded by ``derive_seeds(seeds, salt)``.

    Args:
        parts: ``(generator, salt, gain)`` triples, the gain (B,) linear.

    Returns:
        (B, channels, num_frames) unit-RMS sum.
    """
    return _combine([
        (generator(derive_seeds(seeds, salt), channels, num_frames, sample_rate), gain)
        for generator, salt, gain in parts
    ])


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
