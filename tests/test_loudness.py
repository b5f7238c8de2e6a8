"""Batched BS.1770-4 loudness (musicfx.audio.loudness) against pyloudnorm and the recommendation."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from musicfx.audio.io import read_audio, resample
from musicfx.audio.loudness import (
    default_channel_weights,
    fft_iir_filter,
    integrated_loudness,
    k_weighting,
    k_weighting_coefficients,
    loudness_gain_db,
    normalize_loudness,
)

pyloudnorm = pytest.importorskip("pyloudnorm")

NZ_STEMS = ("vocals", "drums", "bass", "guitar", "synth")
TOLERANCE_LU = 0.1


def reference_lufs(audio: torch.Tensor, sample_rate: int) -> float:
    """pyloudnorm's integrated loudness of one ``(channels, time)`` signal."""
    data = audio.double().numpy().T
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(data))


def _noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _sine(frequency: float, seconds: float, sample_rate: int, amplitude: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    return (amplitude * torch.sin(2 * math.pi * frequency * t)).float()


@pytest.fixture(scope="module")
def nz_stems(shared_data: Path) -> torch.Tensor:
    """The five NZ Tour stems, first 8 s, ``(5, 2, time)`` at 44.1 kHz."""
    folder = shared_data / "sisec2011-nz-tour"
    stems = [read_audio(folder / f"{name}.wav", frames=8 * 44100)[0] for name in NZ_STEMS]
    return torch.stack(stems)


# --- the filters ---------------------------------------------------------------------------------


def test_k_weighting_reproduces_the_recommendations_48k_coefficients() -> None:
    (shelf_b, shelf_a), (highpass_b, highpass_a) = k_weighting_coefficients(48000)
    # ITU-R BS.1770-4, Table 1 (pre-filter) and Table 2 (RLB filter).
    np.testing.assert_allclose(shelf_b, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-10)
    np.testing.assert_allclose(shelf_a, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-10)
    np.testing.assert_allclose(highpass_b, [1.0, -2.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(highpass_a, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-10)


def test_fft_iir_filter_matches_lfilter() -> None:
    x = _noise(3, 20000, seed=1).double()
    b, a = scipy.signal.butter(4, 0.01)  # poles close to the unit circle: a long impulse response
    expected = scipy.signal.lfilter(b, a, x.numpy(), axis=-1)
    np.testing.assert_allclose(fft_iir_filter(x, b, a).numpy(), expected, atol=1e-9)

    (shelf_b, shelf_a), (highpass_b, highpass_a) = k_weighting_coefficients(44100)
    cascade = scipy.signal.lfilter(highpass_b, highpass_a, scipy.signal.lfilter(shelf_b, shelf_a, x.numpy()))
    got = k_weighting(x.float(), 44100)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), cascade, atol=2e-6)


def test_fft_iir_filter_rejects_unstable_filters() -> None:
    with pytest.raises(ValueError, match="unstable"):
        fft_iir_filter(torch.zeros(100), [1.0], [1.0, -1.5])


@pytest.mark.parametrize("sample_rate", [44100, 48000, 96000])
def test_full_scale_997hz_sine_reads_minus_3_01(sample_rate: int) -> None:
    # BS.1770-4: a 0 dB FS 997 Hz sine in one front channel measures -3.01 LKFS.
    sine = _sine(997.0, 5.0, sample_rate)
    assert float(integrated_loudness(sine, sample_rate)) == pytest.approx(-3.01, abs=0.01)
    stereo = torch.stack([sine, torch.zeros_like(sine)])
    assert float(integrated_loudness(stereo, sample_rate)) == pytest.approx(-3.01, abs=0.01)


def test_gain_shifts_loudness_by_exactly_its_db() -> None:
    x = _noise(2, 44100 * 3, seed=2) * 0.1
    base = float(integrated_loudness(x, 44100))
    assert float(integrated_loudness(x * 0.5, 44100)) == pytest.approx(base + 20 * math.log10(0.5), abs=1e-3)


# --- agreement with pyloudnorm on real and synthetic audio ---------------------------------------


def test_matches_pyloudnorm_on_a_real_stereo_mix(nz_stems: torch.Tensor) -> None:
    mix = nz_stems.sum(0)
    ours = float(integrated_loudness(mix, 44100))
    assert ours == pytest.approx(reference_lufs(mix, 44100), abs=TOLERANCE_LU)
    assert -40.0 < ours < -5.0


def test_batch_equals_per_item_values_and_pyloudnorm(nz_stems: torch.Tensor) -> None:
    batch = integrated_loudness(nz_stems, 44100)
    assert batch.shape == (5,)
    for index in range(5):
        single = integrated_loudness(nz_stems[index], 44100)
        assert float(batch[index]) == pytest.approx(float(single), abs=1e-4)
        assert float(batch[index]) == pytest.approx(reference_lufs(nz_stems[index], 44100), abs=TOLERANCE_LU)
    # Stems differ in level by several LU, so a bug that mixed items up would show.
    assert float(batch.max() - batch.min()) > 3.0
    nested = integrated_loudness(nz_stems.reshape(1, 5, 2, -1), 44100)
    torch.testing.assert_close(nested[0], batch)


def test_matches_pyloudnorm_on_mono_orchestral_parts(shared_data: Path) -> None:
    files = sorted((shared_data / "phenicx-anechoic").glob("*.wav"))[:6]
    parts = torch.stack([read_audio(path)[0] for path in files])  # (6, 1, time), 1 s each
    ours = integrated_loudness(parts, 44100)
    for index, part in enumerate(parts):
        assert float(ours[index]) == pytest.approx(reference_lufs(part, 44100), abs=TOLERANCE_LU)


def test_matches_pyloudnorm_at_22050_on_a_real_recording(shared_data: Path) -> None:
    files = sorted((shared_data / "dagstuhl-choirset").glob("*_DYN.wav"))[:3]
    for path in files:
        audio, rate = read_audio(path)
        assert rate == 22050
        assert float(integrated_loudness(audio, rate)) == pytest.approx(reference_lufs(audio, rate), abs=TOLERANCE_LU)


def test_matches_pyloudnorm_at_48000(nz_stems: torch.Tensor) -> None:
    mix = resample(nz_stems.sum(0), 44100, 48000)
    ours = float(integrated_loudness(mix, 48000))
    assert ours == pytest.approx(reference_lufs(mix, 48000), abs=TOLERANCE_LU)
    # Resampling does not change how loud the music is.
    assert ours == pytest.approx(float(integrated_loudness(nz_stems.sum(0), 44100)), abs=0.05)


def test_matches_pyloudnorm_on_noise(shared_data: Path) -> None:
    dishes, rate = read_audio(shared_data / "noise" / "doing_the_dishes_16k.wav", frames=16000 * 10)
    assert float(integrated_loudness(dishes, rate)) == pytest.approx(reference_lufs(dishes, rate), abs=TOLERANCE_LU)
    white = _noise(2, 48000 * 3, seed=4) * 0.05
    assert float(integrated_loudness(white, 48000)) == pytest.approx(reference_lufs(white, 48000), abs=TOLERANCE_LU)


def test_fractional_block_hop_at_11025() -> None:
    # 100 ms is 1102.5 samples here, which takes the running-sum path.
    brown = torch.cumsum(_noise(1, 11025 * 4, seed=5), -1) * 1e-3
    brown = brown - brown.mean()
    assert float(integrated_loudness(brown, 11025)) == pytest.approx(reference_lufs(brown, 11025), abs=TOLERANCE_LU)


def test_gating_on_music_with_quiet_passages(nz_stems: torch.Tensor) -> None:
    mix = nz_stems.sum(0)[:, : 44100 * 4]
    silence = torch.zeros(2, 44100 * 3)
    quiet = mix * 10 ** (-35 / 20)  # far below the relative gate
    signal = torch.cat([mix, silence, quiet, silence, quiet], dim=-1)
    ours = float(integrated_loudness(signal, 44100))
    assert ours == pytest.approx(reference_lufs(signal, 44100), abs=TOLERANCE_LU)
    # Gating is what makes it so: the quiet parts are ignored, the music alone measures the same ...
    assert ours == pytest.approx(float(integrated_loudness(mix, 44100)), abs=0.15)
    # ... while the ungated mean square over the whole signal is far lower.
    ungated = -0.691 + 10 * math.log10(float(k_weighting(signal, 44100).square().mean(-1).sum()))
    assert ours - ungated > 3.0


def test_five_channel_weights_match_pyloudnorm() -> None:
    surround = _noise(5, 44100 * 2, seed=6) * torch.tensor([0.1, 0.1, 0.05, 0.2, 0.2]).unsqueeze(-1)
    expected = reference_lufs(surround, 44100)
    assert float(integrated_loudness(surround, 44100)) == pytest.approx(expected, abs=TOLERANCE_LU)
    assert default_channel_weights(5) == (1.0, 1.0, 1.0, 1.41, 1.41)


def test_six_channels_ignore_the_lfe() -> None:
    audio = _noise(6, 44100 * 2, seed=7) * 0.1
    louder_lfe = audio.clone()
    louder_lfe[3] *= 10
    torch.testing.assert_close(integrated_loudness(louder_lfe, 44100), integrated_loudness(audio, 44100))
    with pytest.raises(ValueError, match="7 channels"):
        integrated_loudness(_noise(7, 44100), 44100)
    with pytest.raises(ValueError, match="channel weights"):
        integrated_loudness(_noise(2, 44100), 44100, channel_weights=[1.0])


# --- undefined loudness, gains, gradients ------------------------------------------------------


def test_silence_and_short_signals_measure_minus_inf() -> None:
    assert float(integrated_loudness(torch.zeros(2, 44100), 44100)) == -math.inf
    assert float(integrated_loudness(_noise(2, 17639) * 0.1, 44100)) == -math.inf  # one sample short of 400 ms
    assert math.isfinite(float(integrated_loudness(_noise(2, 17640) * 0.1, 44100)))
    # Below the absolute gate (-70 LUFS) counts as silence too.
    assert float(integrated_loudness(_noise(2, 44100) * 1e-5, 44100)) == -math.inf


def test_normalize_reaches_per_item_targets_and_leaves_silence_alone(nz_stems: torch.Tensor) -> None:
    batch = torch.cat([nz_stems[:3], torch.zeros(1, 2, nz_stems.shape[-1])])
    targets = torch.tensor([-14.0, -23.0, -30.0, -20.0])
    out = normalize_loudness(batch, 44100, targets)
    assert out.shape == batch.shape
    measured = integrated_loudness(out, 44100)
    torch.testing.assert_close(measured[:3], targets[:3], atol=1e-3, rtol=0)
    assert torch.equal(out[3], batch[3])
    assert torch.isfinite(out).all()
    gains = loudness_gain_db(batch, 44100, -23.0)
    assert float(gains[3]) == 0.0
    torch.testing.assert_close(gains[:3], -23.0 - integrated_loudness(batch[:3], 44100))


def test_max_gain_limits_the_boost() -> None:
    quiet = _noise(1, 2, 44100, seed=8) * 1e-3
    gain = loudness_gain_db(quiet, 44100, -14.0, max_gain_db=12.0)
    assert float(gain) == 12.0
    out = normalize_loudness(quiet, 44100, -14.0, max_gain_db=12.0)
    torch.testing.assert_close(out, quiet * 10 ** (12 / 20))


def test_loudness_is_differentiable_even_with_a_silent_item() -> None:
    audio = torch.stack([_noise(2, 44100, seed=9) * 0.1, torch.zeros(2, 44100)]).requires_grad_()
    loudness = integrated_loudness(audio, 44100)
    loudness[0].backward()
    assert torch.isfinite(audio.grad).all()
    assert audio.grad[0].abs().sum() > 0 and audio.grad[1].abs().sum() == 0


def test_half_precision_under_cpu_autocast_is_measured_in_float32() -> None:
    audio = _noise(3, 2, 44100 * 2, seed=10) * 0.1
    expected = integrated_loudness(audio, 44100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = integrated_loudness(audio.bfloat16(), 44100)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=0.01, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_value_on_gpu_under_autocast() -> None:
    audio = _noise(3, 2, 44100 * 2, seed=10) * 0.1
    expected = integrated_loudness(audio, 44100)
    with torch.autocast("cuda", dtype=torch.float16):
        got = integrated_loudness(audio.cuda().half(), 44100)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.float().cpu(), expected, atol=0.01, rtol=0)
