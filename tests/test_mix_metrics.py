"""Automix objective metrics: MAPE of loudness, spectral, panning and dynamic features between mixes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musicfx.audio.io import read_audio
from musicfx.audio.loudness import integrated_loudness
from musicfx.metrics.mix import (
    GROUPS,
    dynamic_features,
    mape,
    mix_features,
    mix_metrics,
    running_mean,
    short_term_loudness,
    spectral_features,
)

SR = 44100


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nz_mix(shared_data):
    """Five seconds of the real 'Ultimate NZ Tour' mix (the sum of its stems), stereo."""
    folder = shared_data / "sisec2011-nz-tour"
    stems = [read_audio(folder / f"{name}.wav")[0] for name in ("vocals", "drums", "bass", "guitar", "synth")]
    return sum(stems)[:, 3 * SR: 8 * SR].contiguous()


def test_mape_and_running_mean():
    assert mape(np.array([10.0, -20.0]), np.array([11.0, -18.0])) == pytest.approx(0.1)
    assert mape(np.array([1.0]), np.array([1.0])) == 0.0
    np.testing.assert_allclose(running_mean(np.arange(6.0), 3), [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(running_mean(np.arange(3.0), 40), [1.0])  # shorter than the window


def test_identical_mixes_have_zero_error(nz_mix):
    metrics = mix_metrics(nz_mix, nz_mix.clone(), SR)
    assert set(GROUPS) | {"overall"} <= set(metrics)
    assert all(value == 0.0 for value in metrics.values()), metrics


def test_quieter_mix_has_loudness_error_only(nz_mix):
    quieter = nz_mix * 10 ** (-6 / 20)
    metrics = mix_metrics(quieter, nz_mix, SR)
    # 6 LU on a short-term loudness around -20 LUFS is about a 30 % error.
    reference = short_term_loudness(nz_mix, SR)
    assert metrics["loudness"] == pytest.approx(float(np.mean(6.02 / np.abs(reference.numpy()))), rel=0.02)
    assert metrics["loudness"] > 0.1
    # Spectral, panning and dynamic features are measured peak-normalised: a gain changes none of them.
    for group in ("spectral", "panning", "dynamic"):
        assert metrics[group] < 1e-6, (group, metrics[group])
    assert metrics["overall"] == pytest.approx(metrics["loudness"] / 4, rel=1e-3)


def test_mono_collapsed_mix_has_panning_error(nz_mix):
    mono = nz_mix.mean(0, keepdim=True).expand(2, -1)
    metrics = mix_metrics(mono, nz_mix, SR)
    assert metrics["panning"] == pytest.approx(1.0)  # no panning at all where the reference has some
    assert metrics["panning"] > 10 * max(metrics["loudness"], metrics["dynamic"])
    # A mono reference has no panning to compare: that group is NaN and left out of the overall.
    flipped = mix_metrics(nz_mix, mono, SR)
    assert math.isnan(flipped["panning"]) and not math.isnan(flipped["overall"])


def test_spectral_and_dynamic_features_of_known_signals():
    t = torch.arange(2 * SR) / SR
    sine = 0.5 * torch.sin(2 * math.pi * 1000.0 * t).expand(2, -1)
    noise = torch.randn(2, 2 * SR, generator=torch.Generator().manual_seed(0))
    f_sine, f_noise = spectral_features(sine, SR), spectral_features(noise, SR)
    inner = slice(4, -4)  # away from the padded edges
    assert np.median(f_sine["spectral/centroid"][:, inner]) == pytest.approx(1000.0, rel=0.05)  # leakage
    assert np.median(f_sine["spectral/rolloff"][:, inner]) == pytest.approx(1000.0, abs=25.0)
    assert np.median(f_sine["spectral/flatness"][:, inner]) < 1e-3
    # White noise: centroid at a quarter of the sample rate, flatness of an exponential power, e^-gamma.
    assert np.median(f_noise["spectral/centroid"][:, inner]) == pytest.approx(SR / 4, rel=0.02)
    assert np.median(f_noise["spectral/flatness"][:, inner]) == pytest.approx(math.exp(-0.5772), rel=0.05)
    assert np.median(f_sine["spectral/contrast_mid"]) > np.median(f_noise["spectral/contrast_mid"]) + 10.0
    # Crest factor: 3.01 dB for a sine, 0 dB for a square wave.
    square = torch.sign(torch.sin(2 * math.pi * 101.0 * t + 0.1)).expand(2, -1)
    assert np.median(dynamic_features(sine, SR)["dynamic/crest"]) == pytest.approx(3.01, abs=0.05)
    assert np.median(dynamic_features(square, SR)["dynamic/crest"]) == pytest.approx(0.0, abs=1e-6)


def test_short_term_loudness_of_a_steady_tone():
    t = torch.arange(5 * SR) / SR
    tone = 0.25 * torch.sin(2 * math.pi * 997.0 * t).expand(2, -1)
    series = short_term_loudness(tone, SR)
    assert series.shape == (21,)  # 3 s windows every 100 ms over 5 s
    assert torch.allclose(series, integrated_loudness(tone, SR).double(), atol=0.02)
    assert short_term_loudness(torch.zeros(2, SR), SR).max().item() == -70.0


def test_features_and_errors_reject_bad_shapes(nz_mix):
    with pytest.raises(ValueError, match="stereo"):
        mix_features(nz_mix[:1], SR)
    with pytest.raises(ValueError, match="same shape"):
        mix_metrics(nz_mix[:, :-10], nz_mix, SR)
    features = mix_features(nz_mix.numpy(), SR)  # numpy input works too
    assert features["spectral/centroid"].shape[0] == 2 and features["panning/low"].ndim == 1
