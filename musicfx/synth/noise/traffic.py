"""Traffic noise: rumble and tyre noise swelling as vehicles pass, with a Doppler-shifted engine tone."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from musicfx.rng import derive_seeds, hash_uniform
from musicfx.synth.noise.dsp import _between, _check, _col, _combine, _control_grid, _correlated_spectral_noise, _db
from musicfx.synth.noise.dsp import _freqs, _log_between, _lowpass, _num_bins, _pan_gains, _params, _power_law
from musicfx.synth.noise.dsp import _resonance, _to_audio_rate
from musicfx.synth.rooms import SPEED_OF_SOUND

__all__ = ["traffic_noise"]

_SALT_ENGINE = 41


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
    cycles = torch.frac(engine_hz[:, None] * (time[None, :] - distance_audio / SPEED_OF_SOUND))
    engine_phase = 2.0 * math.pi * hash_uniform(derive_seeds(seeds, _SALT_ENGINE), (4,))
    tone = sum(
        (0.6**k) * torch.sin(2.0 * math.pi * (k + 1) * cycles + engine_phase[:, k : k + 1]) for k in range(4)
    )
    tone = tone * (closest[:, :1] / distance_audio)
    tone_pan = _pan_gains(position[:, :1, :].transpose(1, 2), channels)[:, :, 0, :]  # (B, Tc, C)
    tone = tone[:, None, :] * _to_audio_rate(tone_pan.transpose(1, 2), num_frames)
    has_tone = p[:, 7] < 0.5
    return _combine([(scene, torch.ones_like(p[:, 0])), (tone, _db(_between(p[:, 8], -18.0, -6.0)) * has_tone)])
