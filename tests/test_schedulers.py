"""musicfx.schedulers (warm-up, piecewise-constant steps) and the paper recipes' losses (complex-STFT L1,
the FxNorm low-pass pre-filter)."""
from __future__ import annotations

import math
from typing import List

import pytest
import torch

from musicfx.losses import ComplexSTFTLoss, StereoSTFTLoss
from musicfx.schedulers import PiecewiseConstantLR, WarmupDecay


def _rates(make, steps: int) -> List[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = make(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_then_hold_then_linear_decay() -> None:
    rates = _rates(lambda o: WarmupDecay(o, warmup_steps=4, hold_steps=2, decay="linear", decay_steps=4), 12)
    assert rates[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert rates[4:6] == pytest.approx([2.0, 2.0])
    assert rates[6:11] == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])
    assert rates[11] == 0.0


def test_cosine_decay_reaches_the_final_factor() -> None:
    rates = _rates(lambda o: WarmupDecay(o, decay="cosine", decay_steps=10, final_factor=0.1), 12)
    assert rates[0] == pytest.approx(2.0)
    assert rates[5] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert rates[10] == pytest.approx(0.2) and rates[11] == pytest.approx(0.2)


def test_piecewise_constant_follows_its_boundaries() -> None:
    rates = _rates(lambda o: PiecewiseConstantLR(o, [2, 5], [0.0, 1.0, 0.1]), 7)
    assert rates == pytest.approx([0.0, 0.0, 2.0, 2.0, 2.0, 0.2, 0.2])


def test_schedulers_reject_bad_settings() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="decay_steps"):
        WarmupDecay(optimizer, decay="linear")
    with pytest.raises(ValueError, match="one more factor"):
        PiecewiseConstantLR(optimizer, [1, 2], [1.0])
    with pytest.raises(ValueError, match="increasing"):
        PiecewiseConstantLR(optimizer, [3, 2], [1.0, 0.5, 0.1])


def test_complex_stft_loss_is_the_l1_of_real_and_imaginary_parts() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 1, 4096, generator=g)
    estimate = target + 0.1 * torch.randn(2, 1, 4096, generator=g)
    loss = ComplexSTFTLoss(n_fft=512, hop_length=128)
    window = torch.hamming_window(512, periodic=True)
    pad = torch.nn.functional.pad
    spec = lambda x: torch.view_as_real(torch.stft(pad(x.reshape(-1, 4096), (0, 512)), 512, 128, window=window,  # noqa: E731
                                                   center=False, return_complex=True))
    expected = (spec(estimate) - spec(target)).abs().mean()
    assert loss(estimate, target) == pytest.approx(float(expected), rel=1e-5)
    assert float(loss(target, target)) == 0.0
    # A phase error the magnitude cannot see is an error here.
    assert float(loss(-target, target)) > 0.1


def test_fxnorm_lowpass_weights_low_frequencies_up_and_high_ones_down() -> None:
    plain, lowpass = StereoSTFTLoss(n_fft=1024, hop_length=256), StereoSTFTLoss(n_fft=1024, hop_length=256, lowpass=0.85)
    ratio = lowpass.weights[1:] / plain.weights[1:]
    assert ratio[0] == pytest.approx(1.85, abs=1e-3) and ratio[-1] == pytest.approx(0.15, abs=1e-3)
    assert bool((ratio[1:] <= ratio[:-1] + 1e-6).all())  # monotone low-pass
