"""Electrical noise: mains hum, tape hiss, clicks and vinyl crackle, mixed at random levels."""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor

from musicfx.rng import hash_uniform
from musicfx.synth.noise.dsp import _between, _check, _combine_components, _correlated_spectral_noise, _db, _freqs
from musicfx.synth.noise.dsp import _highpass, _impulse_train, _log_between, _num_bins, _one_pole, _params, _unit_rms

__all__ = ["electrical_noise", "hum", "hiss", "clicks", "crackle"]

# Salts that give each component its own seeds.
_SALT_HUM, _SALT_HISS, _SALT_CLICKS, _SALT_CRACKLE = 11, 12, 13, 14


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
    hum_gain = _db(_between(p[:, 0], -12.0, 0.0))
    hiss_gain = _db(_between(p[:, 1], -20.0, 0.0)) * (p[:, 2] < 0.8)
    clicks_gain = _db(_between(p[:, 3], -12.0, 0.0)) * (p[:, 4] < 0.5)
    crackle_gain = _db(_between(p[:, 5], -20.0, -3.0)) * (p[:, 6] < 0.5)
    return _combine_components(seeds, channels, num_frames, sample_rate, [
        (hum, _SALT_HUM, hum_gain),
        (hiss, _SALT_HISS, hiss_gain),
        (clicks, _SALT_CLICKS, clicks_gain),
        (crackle, _SALT_CRACKLE, crackle_gain),
    ])
