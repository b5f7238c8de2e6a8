"""The classical denoising baseline: it must remove noise, spare clean music, and be safe on edge cases."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from musicfx.baselines import SpectralGate, estimate_noise_psd, spectral_gate
from musicfx.errors import AudioError

SR = 44100


pytestmark = pytest.mark.usefixtures("one_thread")


def si_sdr(estimate: Tensor, reference: Tensor) -> Tensor:
    """Scale-invariant SDR in dB over the last axis (both signals made zero-mean first)."""
    estimate = estimate - estimate.mean(-1, keepdim=True)
    reference = reference - reference.mean(-1, keepdim=True)
    alpha = (estimate * reference).sum(-1, keepdim=True) / reference.pow(2).sum(-1, keepdim=True)
    target = alpha * reference
    return 10 * torch.log10(target.pow(2).sum(-1) / (estimate - target).pow(2).sum(-1))


def melody(generator: torch.Generator, seconds: float = 3.0, sr: int = SR) -> Tensor:
    """A random melody of harmonic notes (six partials, plucked envelopes, overlapping tails)."""
    t = torch.arange(int(sr * seconds)) / sr
    out = torch.zeros_like(t)
    pitches = [220.0, 247.0, 262.0, 294.0, 330.0, 349.0, 392.0, 440.0, 494.0, 523.0]
    step = 0.25
    for i in range(int(seconds / step)):
        f0 = pitches[int(torch.randint(len(pitches), (1,), generator=generator))]
        start, end = int(i * step * sr), min(len(t), int((i + 1.5) * step * sr))
        tt = t[start:end] - t[start]
        envelope = (1 - torch.exp(-tt / 0.005)) * torch.exp(-tt / 0.15)
        for h in range(1, 7):
            out[start:end] += envelope * torch.sin(2 * math.pi * f0 * h * tt) / h
    return out


def add_white_noise(clean: Tensor, snr_db: float, generator: torch.Generator) -> Tensor:
    noise = torch.randn(clean.shape, generator=generator)
    power_ratio = clean.pow(2).mean(-1, keepdim=True) / noise.pow(2).mean(-1, keepdim=True)
    gain = (power_ratio / 10 ** (snr_db / 10)).sqrt()
    return clean + gain * noise


@pytest.fixture(scope="module")
def clean() -> Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.stack([melody(g), melody(g)]).unsqueeze(1)  # (2, 1, time)


@pytest.mark.parametrize("snr_db", [0.0, 5.0])
def test_improves_si_sdr_on_white_noise(clean: Tensor, snr_db: float) -> None:
    noisy = add_white_noise(clean, snr_db, torch.Generator().manual_seed(int(snr_db) + 1))
    before, after = si_sdr(noisy, clean), si_sdr(spectral_gate(noisy, SR), clean)
    assert before.sub(snr_db).abs().max() < 0.2
    assert (after - before).min() > 3.0, (before, after)


def test_spares_clean_music(clean: Tensor) -> None:
    assert si_sdr(spectral_gate(clean, SR), clean).min() > 20.0


def test_real_mix_with_white_noise(shared_data: Path, clean: Tensor) -> None:
    import soundfile as sf

    stems = [sf.read(shared_data / "sisec2011-nz-tour" / f"{s}.wav", frames=4 * SR, dtype="float32")[0]
             for s in ("bass", "drums", "guitar", "synth", "vocals")]
    mix = torch.from_numpy(sum(stems)).T.unsqueeze(0)  # (1, 2, time)
    noisy = add_white_noise(mix, 0.0, torch.Generator().manual_seed(5))
    assert (si_sdr(spectral_gate(noisy, SR), mix) - si_sdr(noisy, mix)).min() > 3.0


@pytest.mark.parametrize("shape", [(2, 2, 12345), (3, 4000), (5000,), (1, 1, 100), (1, 1, 1)])
def test_shape_dtype_and_length_are_kept(shape) -> None:
    audio = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    out = spectral_gate(audio, SR)
    assert out.shape == audio.shape and out.dtype == audio.dtype
    assert torch.isfinite(out).all()
    half = spectral_gate(audio.half(), SR)
    assert half.dtype == torch.float16 and half.shape == audio.shape


def test_batch_items_are_independent(clean: Tensor) -> None:
    noisy = add_white_noise(clean, 5.0, torch.Generator().manual_seed(9))
    batched = spectral_gate(noisy, SR)
    torch.testing.assert_close(batched[1:], spectral_gate(noisy[1:], SR), rtol=1e-4, atol=1e-6)


def test_silence_gives_silence_without_nan() -> None:
    out = spectral_gate(torch.zeros(2, 2, SR), SR)
    assert torch.isfinite(out).all() and out.abs().max() == 0
    # Digital silence around a noisy note must not zero the noise estimate (frames left out).
    g = torch.Generator().manual_seed(4)
    audio = torch.cat([torch.zeros(1, 1, SR), add_white_noise(melody(g, 2.0).view(1, 1, -1), 5.0, g)], dim=-1)
    out = spectral_gate(audio, SR)
    assert torch.isfinite(out).all()
    assert out[..., SR + 4096:].pow(2).mean() < 0.8 * audio[..., SR + 4096:].pow(2).mean()


def test_noise_psd_of_white_noise_is_unbiased() -> None:
    variance = 0.01
    noise = variance**0.5 * torch.randn(2, 1, 5 * SR, generator=torch.Generator().manual_seed(7))
    psd = estimate_noise_psd(noise, SR)
    assert psd.shape == (2, 1, 1025)
    expected = variance * torch.hann_window(2048).pow(2).sum()
    ratio = psd[..., 10:-10] / expected
    assert ratio.mean().sub(1).abs() < 0.05 and ratio.std() < 0.15


def test_given_noise_psd_is_used(clean: Tensor) -> None:
    noisy = add_white_noise(clean, 5.0, torch.Generator().manual_seed(8))
    psd = estimate_noise_psd(noisy, SR)
    torch.testing.assert_close(spectral_gate(noisy, SR, noise_psd=psd), spectral_gate(noisy, SR))
    # A noise PSD far above the truth gates everything down to the floor.
    floored = spectral_gate(noisy, SR, noise_psd=psd * 1e6, gain_floor_db=-30.0)
    assert floored.pow(2).mean() < 2e-3 * noisy.pow(2).mean()


def test_module_wraps_the_function(clean: Tensor) -> None:
    noisy = add_white_noise(clean, 0.0, torch.Generator().manual_seed(3))
    gate = SpectralGate(sample_rate=SR, gain_floor_db=-12.0)
    assert len(list(gate.parameters())) == 0
    torch.testing.assert_close(gate(noisy), spectral_gate(noisy, SR, gain_floor_db=-12.0))
    # The rate given at call time wins (one gate serves files at several rates).
    torch.testing.assert_close(gate(noisy, 16000), spectral_gate(noisy, 16000, gain_floor_db=-12.0))


def test_bad_arguments() -> None:
    with pytest.raises(AudioError):
        spectral_gate(torch.tensor(0.0), SR)
    with pytest.raises(AudioError):
        spectral_gate(torch.zeros(1, 0), SR)
    with pytest.raises(ValueError):
        spectral_gate(torch.zeros(1, 100), SR, noise_percentile=0.0)
    with pytest.raises(ValueError):
        SpectralGate(hop_length=4096)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(clean: Tensor) -> None:
    noisy = add_white_noise(clean, 0.0, torch.Generator().manual_seed(6))
    gpu = spectral_gate(noisy.cuda(), SR)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), spectral_gate(noisy, SR), rtol=1e-3, atol=1e-4)
