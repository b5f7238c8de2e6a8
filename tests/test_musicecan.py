"""MusicECAN and its shared layers: shapes, attention, deep supervision, learning, numerics."""
from __future__ import annotations

import math
from typing import Tuple

import pytest
import torch
from torch import Tensor

from musicfx.errors import AudioError
from musicfx.models import ECA, MusicECAN, eca_kernel_size

# Small enough to train for a few dozen steps in a few seconds on one CPU core.
TINY = dict(n_fft=256, hop_length=64, widths=(8, 16, 32), filter_widths=(8, 16), freq_encoding=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def _sines_in_noise(generator: torch.Generator, batch: int = 4, length: int = 4096) -> Tuple[Tensor, Tensor]:
    """A few enveloped sines per example (clean) and the same plus white noise at 0 dB SNR (noisy)."""
    sr = 16000
    t = torch.arange(length) / sr
    clean = torch.zeros(batch, 1, length)
    for b in range(batch):
        for _ in range(3):
            freq = 200 + 1800 * torch.rand(1, generator=generator)
            onset = 0.1 * torch.rand(1, generator=generator)
            tt = (t - onset).clamp_min(0)
            env = (t >= onset).float() * torch.exp(-tt / 0.15) * (1 - torch.exp(-tt / 0.01))
            clean[b, 0] += 0.3 * env * torch.sin(2 * math.pi * freq * t)
    noise = torch.randn(clean.shape, generator=generator)
    noise = noise * (clean.pow(2).mean(-1, keepdim=True) / noise.pow(2).mean(-1, keepdim=True)).sqrt()
    return clean + noise, clean


def _loss(estimate: Tensor, target: Tensor) -> Tensor:
    """L1 on the waveform plus L1 between STFT magnitudes (512 / 128)."""
    window = torch.hann_window(512)

    def mag(x: Tensor) -> Tensor:
        return torch.stft(x.flatten(0, 1), 512, 128, window=window, return_complex=True).abs()

    return (estimate - target).abs().mean() + (mag(estimate) - mag(target)).abs().mean()


@pytest.mark.parametrize(
    "channels, kernel",
    [(1, 1), (8, 3), (16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)],
)
def test_eca_kernel_size(channels: int, kernel: int) -> None:
    assert eca_kernel_size(channels) == kernel
    assert ECA(channels).conv.kernel_size == (kernel,)


def test_eca_gates_each_channel_by_its_pooled_neighbours() -> None:
    torch.manual_seed(0)
    eca = ECA(32)
    x = torch.randn(2, 32, 5, 7)
    pooled = x.mean(dim=(2, 3))
    w = eca.conv.weight.view(-1)  # 3 taps, zero padding at the channel edges
    padded = torch.nn.functional.pad(pooled, (1, 1))
    expected_gate = torch.sigmoid(w[0] * padded[:, :-2] + w[1] * padded[:, 1:-1] + w[2] * padded[:, 2:])
    torch.testing.assert_close(eca(x), x * expected_gate[:, :, None, None])
    # The same module works on 1-D feature maps (waveform models).
    y = torch.randn(2, 32, 11)
    torch.testing.assert_close(eca(y), y * eca.attention(y)[:, :, None])


@pytest.mark.parametrize("channels, length", [(1, 12345), (2, 44100), (1, 44100), (2, 12345)])
def test_output_matches_input_shape(channels: int, length: int) -> None:
    torch.manual_seed(0)
    config = {} if (channels, length) in {(1, 12345), (2, 44100)} else TINY  # the default model twice
    model = MusicECAN(channels=channels, **config)
    noisy = torch.randn(2, channels, length)
    with torch.inference_mode():
        estimate, intermediates = model.forward_train(noisy)
    assert estimate.shape == noisy.shape and estimate.dtype == torch.float32
    assert len(intermediates) == 1 and intermediates[0].shape == noisy.shape
    assert torch.isfinite(estimate).all() and torch.isfinite(intermediates[0]).all()


def test_short_and_silent_inputs() -> None:
    torch.manual_seed(0)
    model = MusicECAN(**TINY)
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 7)).shape == (1, 1, 7)
        silent = model(torch.zeros(2, 1, 3000))
    assert torch.isfinite(silent).all() and silent.abs().max() < 1e-4


def test_rejects_wrong_channel_count() -> None:
    model = MusicECAN(channels=1, **TINY)
    with pytest.raises(AudioError, match="channels"):
        model(torch.randn(1, 2, 1000))


def test_default_size() -> None:
    assert sum(p.numel() for p in MusicECAN().parameters()) == 2_074_668


def test_sam_intermediate_is_supervisable() -> None:
    torch.manual_seed(0)
    model = MusicECAN(**TINY)
    noisy, clean = _sines_in_noise(torch.Generator().manual_seed(1), batch=2)
    estimate, (intermediate,) = model.forward_train(noisy)
    assert intermediate.requires_grad
    assert not torch.allclose(intermediate, estimate)
    _loss(intermediate, clean).backward()
    # The intermediate depends on the feature learner and the SAM, not on the noise filter downstream.
    for name, p in model.named_parameters():
        upstream = name.startswith(("stem.", "feature_unet.", "sam.to_image."))
        has_grad = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert has_grad == upstream, name


def test_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = MusicECAN(channels=2, **TINY)
    noisy, clean = _sines_in_noise(torch.Generator().manual_seed(2), batch=2)
    noisy, clean = noisy.repeat(1, 2, 1), clean.repeat(1, 2, 1)
    estimate, (intermediate,) = model.forward_train(noisy)
    (_loss(estimate, clean) + _loss(intermediate, clean)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_training_on_a_fixed_batch_reduces_the_loss() -> None:
    torch.manual_seed(0)
    model = MusicECAN(**TINY)
    noisy, clean = _sines_in_noise(torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    with torch.no_grad():
        initial = _loss(model(noisy), clean).item()
        doing_nothing = min(_loss(noisy, clean).item(), _loss(torch.zeros_like(clean), clean).item())
    for _ in range(30):
        estimate, (intermediate,) = model.forward_train(noisy)
        loss = _loss(estimate, clean) + 0.5 * _loss(intermediate, clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = _loss(model(noisy), clean).item()
    assert final < 0.7 * initial, (initial, final)
    # It learned to denoise: better than returning the input or silence.
    assert final < 0.7 * doing_nothing, (doing_nothing, final)


def test_golden_output() -> None:
    torch.manual_seed(0)
    model = MusicECAN()
    t = torch.arange(8000, dtype=torch.float32) / 44100
    chirp = torch.sin(2 * math.pi * 3001 * t * (1 + t))
    noisy = (0.5 * torch.sin(2 * math.pi * 440 * t) + 0.1 * chirp).view(1, 1, -1)
    with torch.inference_mode():
        out = model(noisy)
    expected_head = torch.tensor(GOLDEN_HEAD)
    torch.testing.assert_close(out[0, 0, 1000:1005], expected_head, rtol=1e-4, atol=1e-6)
    # The signed sum nearly cancels, so its tolerance is relative to the absolute sum.
    assert out.sum().item() == pytest.approx(GOLDEN_SUM, abs=1e-5 * GOLDEN_ABS_SUM)
    assert out.abs().sum().item() == pytest.approx(GOLDEN_ABS_SUM, rel=1e-4)


# Recorded with torch 2.13 (CPU) from the default configuration; a change means the architecture, the
# initialisation or the STFT conventions changed.
GOLDEN_HEAD = [0.03042218, 0.03053028, 0.02864887, 0.02493072, 0.01988015]
GOLDEN_SUM = 0.8439133
GOLDEN_ABS_SUM = 119.35944


def test_mixed_precision_matches_float32() -> None:
    torch.manual_seed(0)
    model = MusicECAN(**TINY)
    noisy, _ = _sines_in_noise(torch.Generator().manual_seed(3), batch=2)
    with torch.inference_mode():
        reference = model(noisy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed, (intermediate,) = model.forward_train(noisy * 1000.0)
    assert mixed.dtype == torch.float32 and intermediate.dtype == torch.float32
    assert torch.isfinite(mixed).all() and torch.isfinite(intermediate).all()
    # Level normalisation: a 60 dB louder input gives a 60 dB louder output, up to bf16 rounding.
    error = (mixed / 1000.0 - reference).pow(2).sum() / reference.pow(2).sum()
    assert 10 * math.log10(error.item()) < -20
