"""The built-in music generator: deterministic, musical (harmonic, not noise), fast, well-formed."""
from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch

from musicfx.data import GeneratedMusic, Source, generate_music, generate_stems
from musicfx.data.generator import STEMS, Tone, _envelope, _render_tone, draw_score, render

SR = 44100


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spectral_flatness(audio: torch.Tensor, n_fft: int = 2048) -> float:
    """Median over frames of geometric / arithmetic mean of the power spectrum (white noise: ~0.56)."""
    spec = torch.stft(audio.mean(0), n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft),
                      return_complex=True).abs().pow(2) + 1e-12
    return float((spec.log().mean(0).exp() / spec.mean(0)).median())


def _top_bins_energy(audio: torch.Tensor, fraction: float = 0.01) -> float:
    """Share of the energy in the strongest ``fraction`` of FFT bins (white noise: about 4.6 * fraction)."""
    power = torch.fft.rfft(audio.mean(0)).abs().pow(2)
    top = power.topk(max(1, int(fraction * power.numel()))).values
    return float(top.sum() / power.sum())


def _centroid(audio: torch.Tensor) -> float:
    power = torch.fft.rfft(audio.mean(0)).abs().pow(2)
    freqs = torch.fft.rfftfreq(audio.shape[-1], 1 / SR)
    return float((power * freqs).sum() / power.sum())


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_shapes_range_and_finite(channels):
    audio = generate_music(SR, SR, channels, _generator(3))
    assert audio.shape == (channels, SR) and audio.dtype == torch.float32
    assert bool(torch.isfinite(audio).all())
    assert 0.5 - 1e-4 <= float(audio.abs().max()) <= 0.9 + 1e-4
    assert float(audio.pow(2).mean().sqrt()) > 0.02  # never near-silent


def test_deterministic_per_seed_and_seeds_differ():
    first = generate_music(2 * SR, SR, 2, _generator(7))
    again = generate_music(2 * SR, SR, 2, _generator(7))
    other = generate_music(2 * SR, SR, 2, _generator(8))
    assert torch.equal(first, again)
    correlation = torch.corrcoef(torch.stack([first.flatten(), other.flatten()]))[0, 1]
    assert abs(float(correlation)) < 0.3


def test_stereo_is_panned_not_duplicated():
    audio = generate_music(2 * SR, SR, 2, _generator(1))
    left, right = audio
    assert not torch.allclose(left, right, atol=1e-3)
    assert float(torch.corrcoef(audio)[0, 1]) > 0.3  # still one scene: the channels share most content


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectrum_is_harmonic_not_noise(seed):
    mix = generate_music(3 * SR, SR, 1, _generator(seed))
    noise = torch.randn(1, 3 * SR, generator=_generator(seed))
    assert _spectral_flatness(noise) > 0.45
    assert _spectral_flatness(mix) < 0.05
    # Energy sits in a few spectral peaks (partials), not spread like noise's.
    assert _top_bins_energy(noise) < 0.1
    assert _top_bins_energy(mix) > 0.5


def test_stems_are_instruments_and_sum_to_the_mix():
    stems = generate_stems(3 * SR, SR, 2, _generator(5))
    assert tuple(stems) == STEMS
    mix = sum(stems.values())
    assert torch.allclose(mix, generate_music(3 * SR, SR, 2, _generator(5)), atol=1e-5)
    assert 0.5 - 1e-4 <= float(mix.abs().max()) <= 0.9 + 1e-4
    levels = {name: float(stem.pow(2).mean().sqrt()) for name, stem in stems.items()}
    for name, level in levels.items():  # every stem audible in the mix: within 20 dB of the loudest
        assert level > max(levels.values()) / 10, (name, levels)
    assert _centroid(stems["bass"]) < 600  # bass lives low
    assert _centroid(stems["bass"]) < _centroid(stems["other"]) < _centroid(stems["drums"])
    for name in ("vocals", "bass", "other"):  # tonal stems are strongly harmonic; drums are noisier
        assert _spectral_flatness(stems[name]) < 0.01
    assert _spectral_flatness(stems["drums"]) > _spectral_flatness(stems["bass"])


def test_single_stem_kind_is_normalised_on_its_own():
    vocals = generate_music(2 * SR, SR, 1, _generator(4), kind="vocals")
    assert 0.5 - 1e-4 <= float(vocals.abs().max()) <= 0.9 + 1e-4
    stem = generate_stems(2 * SR, SR, 1, _generator(4))["vocals"]
    scale = float(vocals.abs().max() / stem.abs().max())
    assert torch.allclose(vocals, stem * scale, atol=1e-5)


@pytest.mark.parametrize("inharmonicity", [0.0, 4e-4])
def test_tone_matches_a_direct_sum_of_sines(inharmonicity):
    """The fast synthesis (Chebyshev recurrence, closed-form glide) against float64 sines, one per partial."""
    tone = Tone(onset=0.0, hold=0.6, release=0.1, freq=220.0, glide_from=180.0, glide_time=0.1, attack=0.01,
                decay=0.1, sustain=0.8, damping=1.0, partial_damping=3.0, partials=(0.4, 0.2, 0.15, 0.1, 0.08, 0.07),
                phases=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6), inharmonicity=inharmonicity, vibrato_rate=5.0,
                vibrato_depth=0.01, vibrato_delay=0.2, amplitude=0.9, pan=0.0)
    frames = int(0.7 * SR)
    fast = _render_tone(tone, 0, frames, SR).double()
    # Instantaneous frequency integrated numerically (trapezoid on a 16x finer grid), then vibrato.
    fine = torch.arange(16 * frames, dtype=torch.float64) / (16 * SR)
    ratio = tone.glide_from / tone.freq
    freq = tone.freq * ratio ** (1 - (fine / tone.glide_time).clamp(max=1.0))
    cycles = torch.cat([torch.zeros(1), torch.cumsum((freq[1:] + freq[:-1]) / 2, 0) / (16 * SR)])[::16]
    t = fine[::16]
    fade = ((t - tone.vibrato_delay) / 0.2).clamp(0, 1)
    cycles += tone.freq * tone.vibrato_depth / (2 * math.pi * tone.vibrato_rate) * torch.sin(
        2 * math.pi * tone.vibrato_rate * t) * fade
    k = torch.arange(1, 7, dtype=torch.float64)
    stretch = k * torch.sqrt(1 + inharmonicity * k * k)
    stretch = torch.where(stretch / k - 1 < 1e-3, k, stretch)  # under 2 cents is rendered harmonic
    decay = torch.exp(-tone.partial_damping * t).clamp(min=0.1)
    phases = 2 * math.pi * (stretch[:, None] * cycles + torch.tensor(tone.phases, dtype=torch.float64)[:, None])
    partials = torch.sin(phases) * decay ** (k[:, None] - 1)
    expected = torch.tensor(tone.partials, dtype=torch.float64) @ partials * _envelope(tone, t.float()).double()
    expected *= tone.amplitude
    assert float((fast - expected).abs().max()) < 1e-4 * float(expected.abs().max())


def test_window_matches_the_whole_rendering():
    score = draw_score(3.0, _generator(9))
    whole = render(score, SR, 2)
    window = render(score, SR, 2, start=SR + 123, length=SR // 2)
    for stem in STEMS:
        assert torch.allclose(window[stem], whole[stem][:, SR + 123:SR + 123 + SR // 2], atol=1e-5)
    past_end = render(score, SR, 1, start=3 * SR - 100, length=300)["drums"]
    assert float(past_end[:, 100:].abs().max()) == 0.0  # zero beyond the piece


def test_speed_ten_seconds_stereo():
    generate_music(SR, SR, 2, _generator(0))  # warm-up
    best = float("inf")
    for seed in range(2):
        start = time.perf_counter()
        generate_music(10 * SR, SR, 2, _generator(seed))
        best = min(best, time.perf_counter() - start)
    # About 0.1 s on an idle core; the bound is loose for shared CI machines.
    assert best < 1.0


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        generate_music(100, SR, 1, _generator(0), kind="flute")
    with pytest.raises(ValueError, match="num_frames"):
        generate_music(0, SR, 1, _generator(0))
    with pytest.raises(ValueError, match="channels"):
        generate_stems(100, SR, 0, _generator(0))


def test_generated_music_source_reads_deterministic_windows():
    source = GeneratedMusic(num_items=3, duration=2.0, sample_rate=SR, channels=2, seed=11)
    assert isinstance(source, Source)
    assert len(source) == 3 and source.num_frames(0) == 2 * SR
    chunk = source.read(1, 5000, 10000)
    assert chunk.shape == (1, 2, 10000)  # (stems, channels, time): one stem, "mix"
    fresh = GeneratedMusic(num_items=3, duration=2.0, sample_rate=SR, channels=2, seed=11)
    assert torch.equal(fresh.read(1, 5000, 10000), chunk)  # no state carried between reads
    whole = source.read(1, 0, 2 * SR)
    assert 0.5 - 1e-4 <= float(whole.abs().max()) <= 0.9 + 1e-4
    assert torch.allclose(whole[..., 5000:15000], chunk, atol=1e-5)
    assert not torch.allclose(source.read(0, 5000, 10000), chunk)  # items differ
    other_seed = GeneratedMusic(num_items=3, duration=2.0, sample_rate=SR, channels=2, seed=12)
    assert not torch.allclose(other_seed.read(1, 5000, 10000), chunk)
    padded = source.read(2, 2 * SR - 10, 30)
    assert float(padded[..., 10:].abs().max()) == 0.0
    assert source.name(1) != source.name(2) and source.category(0) == "generated"
    with pytest.raises(IndexError):
        source.read(3, 0, 10)
