"""Crowd noise: babble of a few formant-shaped noise voices, each at its own syllable rate."""
from __future__ import annotations

import torch
from torch import Tensor

from musicfx.synth.noise.dsp import _between, _check, _col, _control_grid, _db, _EPS, _freqs, _highpass, _lowpass
from musicfx.synth.noise.dsp import _num_bins, _pan_gains, _params, _resonance, _spectral_noise, _taper
from musicfx.synth.noise.dsp import _to_audio_rate, _unit_rms

__all__ = ["crowd_noise"]


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
