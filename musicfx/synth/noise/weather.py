"""Weather noise: rain, wind and thunder."""
from __future__ import annotations

import torch
from torch import Tensor

from musicfx.rng import hash_uniform
from musicfx.synth.noise.dsp import _between, _check, _col, _combine, _combine_components, _control_grid, _db
from musicfx.synth.noise.dsp import _correlated_spectral_noise
from musicfx.synth.noise.dsp import _EPS, _freqs, _highpass, _impulse_train, _log_between, _lowpass, _num_bins
from musicfx.synth.noise.dsp import _one_pole, _params, _power_law, _resonance, _spectral_noise, _spread
from musicfx.synth.noise.dsp import _stereo_share, _taper, _to_audio_rate, _unit_rms

__all__ = ["weather_noise", "rain", "wind", "thunder"]

# Salts that give each component its own seeds.
_SALT_RAIN, _SALT_WIND, _SALT_THUNDER = 21, 22, 23


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
    return _combine_components(seeds, channels, num_frames, sample_rate, [
        (rain, _SALT_RAIN, _db(_between(p[:, 3], -10.0, 0.0)) * has_rain),
        (wind, _SALT_WIND, _db(_between(p[:, 4], -10.0, 0.0)) * has_wind),
        (thunder, _SALT_THUNDER, _db(_between(p[:, 5], -6.0, 3.0)) * has_thunder),
    ])
