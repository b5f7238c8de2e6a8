"""musicfx.audio.fx: every effect against its definition or a scipy/numpy reference, gradients, batching."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from musicfx.audio import fx

SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")


def _f64(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ gain/pan
def test_gain_is_exact_and_aligns_parameters_from_the_left():
    x = torch.randn(2, 3, 2, 50)
    per_stem = torch.tensor([[0.0, -6.0, 20.0], [3.0, 1.0, -40.0]])
    out = fx.gain(x, per_stem)
    expected = x * (10.0 ** (per_stem / 20.0))[..., None, None]
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=0.0)
    # A (B,) parameter applies to every stem of its example.
    per_example = torch.tensor([-6.0, 6.0])
    torch.testing.assert_close(fx.gain(x, per_example), x * (10.0 ** (per_example / 20.0))[:, None, None, None])
    assert torch.equal(fx.gain(x, 0.0), x)
    with pytest.raises(ValueError, match="align"):
        fx.gain(x, torch.zeros(3))  # (S,) alone is ambiguous: parameters match from the left


def test_pan_law_at_the_extremes_and_centre():
    x = torch.ones(3, 1, 10)
    out = fx.pan(x, torch.tensor([-1.0, 0.0, 1.0]))
    assert out.shape == (3, 2, 10)
    half = 1.0 / math.sqrt(2.0)
    expected = torch.tensor([[1.0, 0.0], [half, half], [0.0, 1.0]])
    torch.testing.assert_close(out[..., 0], expected, atol=1e-7, rtol=0)


def test_pan_keeps_power_constant_and_balances_stereo():
    positions = torch.linspace(-1.0, 1.0, 41)
    x = torch.randn(41, 1, 200)
    out = fx.pan(x, positions)
    torch.testing.assert_close(out.square().sum(dim=1), x[:, 0].square(), rtol=1e-5, atol=1e-7)
    # Stereo is balanced: hard left keeps the left channel and silences the right; dual mono == mono pan.
    stereo = torch.randn(1, 2, 200)
    left = fx.pan(stereo, -1.0)
    torch.testing.assert_close(left[:, 0], stereo[:, 0])
    assert left[:, 1].abs().max() < 1e-7
    torch.testing.assert_close(fx.pan(x.expand(41, 2, 200), positions), out)


# --------------------------------------------------------------------------------------------------- EQ
@pytest.mark.parametrize("kind", fx.BIQUAD_KINDS)
def test_biquad_response_matches_scipy_freqz(kind):
    for freq, gain_db, q in [(25.0, 9.0, 0.707), (1000.0, -9.0, 3.0), (6000.0, 4.0, 0.5)]:
        b, a = fx.biquad_coefficients(kind, _f64(freq), _f64(gain_db), _f64(q), SR)
        assert abs(float(a[0]) - 1.0) < 1e-12
        response = fx.biquad_response(kind, torch.tensor(freq), torch.tensor(gain_db), torch.tensor(q), SR, 4096)
        _, ref = scipy.signal.freqz(b.numpy(), a.numpy(), worN=np.linspace(0.0, np.pi, 2049))
        # float32 evaluation, yet accurate at 25 Hz too (the DC sums are derived without cancellation)
        np.testing.assert_allclose(response.numpy(), ref, rtol=0, atol=2e-6 * np.abs(ref).max())


def test_biquad_gains_where_the_cookbook_puts_them():
    def magnitude_db(kind: str, freq: float, at_hz: float, gain_db: float = 6.0) -> float:
        b, a = fx.biquad_coefficients(kind, _f64(freq), _f64(gain_db), _f64(0.707), SR)
        _, h = scipy.signal.freqz(b.numpy(), a.numpy(), worN=[2 * np.pi * at_hz / SR])
        return float(20 * np.log10(np.abs(h[0])))

    assert magnitude_db("peak", 1000.0, 1000.0) == pytest.approx(6.0, abs=1e-6)
    assert magnitude_db("lowshelf", 200.0, 0.0) == pytest.approx(6.0, abs=1e-6)
    assert magnitude_db("lowshelf", 200.0, SR / 2) == pytest.approx(0.0, abs=1e-3)
    assert magnitude_db("highshelf", 2000.0, SR / 2) == pytest.approx(6.0, abs=1e-6)
    assert magnitude_db("lowpass", 1000.0, 1000.0) == pytest.approx(-3.01, abs=0.01)  # Q = 1/sqrt(2)
    with pytest.raises(ValueError, match="unknown biquad kind"):
        fx.biquad_coefficients("notch", 100.0, 0.0, 1.0, SR)


def test_parametric_eq_matches_lfilter_cascade_per_stem():
    gen = torch.Generator().manual_seed(0)
    batch, stems, kinds = 2, 3, ["lowshelf", "peak", "highpass", "highshelf"]
    freq = torch.tensor([60.0, 900.0, 40.0, 5000.0]).repeat(batch, stems, 1)
    freq[0, 1, 1], freq[1, 2, 0] = 250.0, 150.0
    gain_db = torch.randn(batch, stems, 4, generator=gen) * 5.0
    q = torch.tensor([0.707, 2.0, 0.707, 0.9]).repeat(batch, stems, 1)
    x = torch.randn(batch, stems, 2, 6000, generator=gen, dtype=torch.float64)
    out = fx.parametric_eq(x.float(), SR, freq, gain_db, q, kinds)
    assert out.shape == x.shape and out.dtype == torch.float32
    for b in range(batch):
        for s in range(stems):
            ref = x[b, s].numpy()
            for k, kind in enumerate(kinds):
                num, den = fx.biquad_coefficients(
                    kind, freq[b, s, k].double(), gain_db[b, s, k].double(), q[b, s, k].double(), SR
                )
                ref = scipy.signal.lfilter(num.numpy(), den.numpy(), ref, axis=-1)
            # the whole signal, transient included: zero initial state like lfilter
            np.testing.assert_allclose(out[b, s].numpy(), ref, rtol=0, atol=2e-5 * np.abs(ref).max())


def test_parametric_eq_pads_against_circular_wrap():
    # A +12 dB 50 Hz peak with Q 10 rings for ~1.8 s (to 1e-6) at 16 kHz: far longer than the signal.
    b, a = fx.biquad_coefficients("peak", _f64(50.0), _f64(12.0), _f64(10.0), SR)
    pad = fx.biquad_decay_samples("peak", 50.0, 12.0, 10.0, SR)
    assert 20000 < pad < 40000
    x = torch.randn(1, 1, 3000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref = scipy.signal.lfilter(b.numpy(), a.numpy(), x[0, 0].numpy())
    good = fx.parametric_eq(x, SR, [50.0], [12.0], [10.0], ["peak"])[0, 0].numpy()
    short = fx.parametric_eq(x, SR, [50.0], [12.0], [10.0], ["peak"], pad=256)[0, 0].numpy()
    np.testing.assert_allclose(good, ref, atol=1e-5 * np.abs(ref).max())
    assert np.abs(short - ref).max() > 0.01 * np.abs(ref).max()  # the wrapped tail is what padding removes


def test_parametric_eq_shared_bands_and_flat_eq():
    x = torch.randn(4, 1, 3000)
    flat = fx.parametric_eq(x, SR, [100.0, 1000.0], [0.0, 0.0], [0.707, 1.0], ["lowshelf", "peak"])
    torch.testing.assert_close(flat, x, atol=1e-5, rtol=0)
    assert torch.equal(fx.parametric_eq(x, SR, torch.zeros(0), torch.zeros(0), torch.zeros(0), []), x)
    with pytest.raises(ValueError, match="bands"):
        fx.parametric_eq(x, SR, [100.0, 1000.0], [0.0, 0.0], [1.0, 1.0], ["peak"])


def test_fir_filter_causal_and_zero_phase():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 500, generator=gen, dtype=torch.float64)
    taps = torch.randn(2, 31, generator=gen, dtype=torch.float64)
    causal = fx.fir_filter(x, taps)
    centred = fx.fir_filter(x, taps, zero_phase=True)
    for b in range(2):
        for c in range(2):
            full = np.convolve(x[b, c].numpy(), taps[b].numpy())
            np.testing.assert_allclose(causal[b, c].numpy(), full[:500], atol=1e-10)
            np.testing.assert_allclose(centred[b, c].numpy(), full[15:515], atol=1e-10)
    # a symmetric FIR with delay compensation has zero phase: an impulse stays centred
    impulse = torch.zeros(1, 1, 101, dtype=torch.float64)
    impulse[..., 50] = 1.0
    symmetric = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    out = fx.fir_filter(impulse, symmetric, zero_phase=True)[0, 0]
    assert int(out.argmax()) == 50 and out[49] == pytest.approx(0.25) and out[51] == pytest.approx(0.25)


# -------------------------------------------------------------------------------------------- compressor
def test_gain_computer_curve():
    level = torch.tensor([-40.0, -23.0, -20.0, -17.0, -10.0, 0.0])
    g = fx.gain_computer(level, -20.0, 4.0, knee_db=6.0)
    slope = 1.0 / 4.0 - 1.0
    expected = [0.0, 0.0, slope * 6.0**2 / (2 * 6.0) / 4.0, slope * 3.0, slope * 10.0, slope * 20.0]
    torch.testing.assert_close(g, torch.tensor(expected), atol=1e-6, rtol=0)
    hard = fx.gain_computer(level, -20.0, 4.0, knee_db=0.0)
    torch.testing.assert_close(hard, slope * (level + 20.0).clamp_min(0.0))


@pytest.mark.parametrize("threshold_db,ratio,knee_db", [(-20.0, 4.0, 6.0), (-30.0, 2.0, 0.0), (-12.0, 8.0, 3.0)])
def test_compressor_static_curve_on_a_steady_sine(threshold_db, ratio, knee_db):
    t = torch.arange(SR) / SR
    amplitudes = torch.tensor([1.0, 0.5, 0.02])
    # 1 kHz: the RMS detector's ripple (at 2 kHz), which the peak hold keeps, stays under 0.03 dB
    x = amplitudes[:, None, None] * torch.sin(2 * math.pi * 1000.0 * t).expand(3, 2, SR)
    out = fx.compressor(x, SR, threshold_db, ratio, knee_db=knee_db)
    steady = slice(SR // 2, None)
    in_db = 10 * torch.log10(x[..., steady].square().mean(dim=(-2, -1)))
    out_db = 10 * torch.log10(out[..., steady].square().mean(dim=(-2, -1)))
    level = 20 * torch.log10(amplitudes / math.sqrt(2.0))  # the RMS detector's reading
    expected = -(level - threshold_db).clamp_min(0.0) * (1.0 - 1.0 / ratio)
    assert (level - threshold_db > knee_db / 2).any()  # the cases cover compression and none
    torch.testing.assert_close(out_db - in_db, expected, atol=0.05, rtol=0)
    # make-up gain adds exactly
    made_up = fx.compressor(x, SR, threshold_db, ratio, knee_db=knee_db, makeup_db=5.0)
    torch.testing.assert_close(made_up, out * 10 ** 0.25, rtol=1e-5, atol=1e-7)


def _reference_gain_db(x, threshold, ratio, attack, release, knee, detector, rms_ms=10.0):
    """The same ballistics, one sample at a time in float64."""
    x = x.astype(np.float64)
    if detector == "rms":
        coef, state = math.exp(-1000.0 / (rms_ms * SR)), 0.0
        power = (x**2).mean(axis=0)
        level = np.empty_like(power)
        for n, p in enumerate(power):
            state = coef * state + (1 - coef) * p
            level[n] = 10 * math.log10(max(state, 1e-16))
    else:
        level = 20 * np.log10(np.maximum(np.abs(x).max(axis=0), 1e-8))
    reduction = -fx.gain_computer(torch.from_numpy(level), threshold, ratio, knee).numpy()
    a_r, a_a = math.exp(-1000.0 / (release * SR)), math.exp(-1000.0 / (attack * SR))
    hold = smooth = 0.0
    out = np.empty_like(reduction)
    for n, r in enumerate(reduction):
        hold = max(r, a_r * hold)
        smooth = a_a * smooth + (1 - a_a) * hold
        out[n] = -smooth
    return out


@pytest.mark.parametrize("detector", ["rms", "peak"])
def test_compressor_ballistics_match_a_sample_loop(detector):
    rng = np.random.default_rng(0)
    envelope = np.repeat(rng.uniform(0.01, 1.0, 12), 500)  # level jumps every 31 ms
    x = (rng.standard_normal((2, 6000)) * envelope).astype(np.float32)
    x[1] *= 0.3
    got = fx.compressor_gain_db(torch.from_numpy(x), SR, -25.0, 4.0, 3.0, 60.0, 6.0, detector=detector)
    ref = _reference_gain_db(x, -25.0, 4.0, 3.0, 60.0, 6.0, detector)
    assert ref.min() < -10.0  # it does compress
    np.testing.assert_allclose(got.numpy(), ref, atol=2e-3, rtol=0)


def test_compressor_steps_agree_with_a_branching_follower():
    # A DC level is a clean step for the peak detector: 0.2 s at -6 dBFS (12 dB of reduction), then silence.
    x = np.zeros((1, SR // 2), dtype=np.float32)
    x[:, : SR // 5] = 0.5
    got = fx.compressor_gain_db(torch.from_numpy(x), SR, -22.0, 4.0, 5.0, 100.0, 0.0, detector="peak").numpy()
    a_a, a_r = math.exp(-1000.0 / (5.0 * SR)), math.exp(-1000.0 / (100.0 * SR))
    target = np.where(np.arange(SR // 2) < SR // 5, -(20 * math.log10(0.5) + 22.0) * 0.75, 0.0)
    state, branching = 0.0, np.empty_like(target)
    for n, r in enumerate(-target):
        coef = a_a if r > state else a_r
        state = coef * state + (1 - coef) * r
        branching[n] = -state
    attack_phase = slice(0, SR // 5)
    np.testing.assert_allclose(got[attack_phase], branching[attack_phase], atol=1e-3)
    assert np.abs(got - branching).max() < 0.6  # release lags by about the attack time


def test_compressor_is_stereo_linked():
    t = torch.arange(SR // 2) / SR
    tone = torch.sin(2 * math.pi * 300.0 * t)
    x = torch.stack([tone, 0.01 * tone])[None]  # loud left, quiet right
    out = fx.compressor(x, SR, -20.0, 4.0, detector="peak")
    steady = slice(SR // 4, None)
    gains = (out[0, :, steady].abs().amax(-1) / x[0, :, steady].abs().amax(-1))
    assert gains[0] < 0.3
    assert gains[0] == pytest.approx(float(gains[1]), rel=1e-3)


# ------------------------------------------------------------------------------------------------ reverb
def test_fft_reverb_is_a_direct_convolution_with_dry_wet():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 400, generator=gen, dtype=torch.float64)
    mono_ir = torch.randn(2, 1, 50, generator=gen, dtype=torch.float64)
    stereo_ir = torch.randn(2, 2, 50, generator=gen, dtype=torch.float64)
    wet = torch.tensor([0.25, 0.6], dtype=torch.float64)
    for ir in (mono_ir, stereo_ir):
        out = fx.fft_reverb(x, ir, wet)
        for b in range(2):
            for c in range(2):
                conv = np.convolve(x[b, c].numpy(), ir[b, c % ir.shape[1]].numpy())[:400]
                expected = (1 - wet[b].item()) * x[b, c].numpy() + wet[b].item() * conv
                np.testing.assert_allclose(out[b, c].numpy(), expected, atol=1e-10)
    with pytest.raises(ValueError, match="channels"):
        fx.fft_reverb(x, torch.randn(2, 3, 50, dtype=torch.float64))


def test_fft_reverb_with_synthetic_rooms():
    from musicfx.synth.rooms import synthetic_rir

    ir = synthetic_rir(torch.tensor([1, 2], dtype=torch.int64), torch.tensor([0.3, 0.8]), SR, SR, 2, direct=False)
    x = torch.randn(2, 2, SR)
    out = fx.fft_reverb(x, ir, 1.0)
    # a unit-energy wet response keeps white noise's power roughly
    ratio = out[..., SR // 2 :].square().mean() / x[..., SR // 2 :].square().mean()
    assert 0.7 < float(ratio) < 1.4


# -------------------------------------------------------------------------------- gradients and batching
def test_gradients_reach_every_parameter():
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 1, 4000, generator=gen) * 0.5).requires_grad_()
    gain_db = torch.tensor([1.0, -2.0], requires_grad=True)
    pan = torch.tensor([0.3, -0.2], requires_grad=True)
    freq = torch.tensor([[200.0, 2000.0]] * 2, requires_grad=True)
    band_gain = torch.tensor([[3.0, -3.0]] * 2, requires_grad=True)
    q = torch.tensor([[0.7, 1.5]] * 2, requires_grad=True)
    threshold = torch.tensor([-25.0, -20.0], requires_grad=True)
    ratio = torch.tensor([3.0, 5.0], requires_grad=True)
    attack = torch.tensor([5.0, 10.0], requires_grad=True)
    release = torch.tensor([50.0, 80.0], requires_grad=True)
    wet = torch.tensor([0.3, 0.5], requires_grad=True)
    ir = torch.randn(2, 1, 200, generator=gen).requires_grad_()

    y = fx.gain(x, gain_db)
    y = fx.parametric_eq(y, SR, freq, band_gain, q, ["lowshelf", "peak"])
    y = fx.compressor(y, SR, threshold, ratio, attack, release)
    y = fx.pan(y, pan)
    y = fx.fft_reverb(y, ir, wet)
    # A random projection, not the power: pan and a mono reverb conserve power by design.
    (y * torch.randn(y.shape, generator=gen)).sum().backward()
    for name, tensor in [("x", x), ("gain_db", gain_db), ("pan", pan), ("freq", freq), ("band_gain", band_gain),
                         ("q", q), ("threshold", threshold), ("ratio", ratio), ("attack", attack),
                         ("release", release), ("wet", wet), ("ir", ir)]:
        grad = tensor.grad
        assert grad is not None and torch.isfinite(grad).all(), name
        assert (grad.abs().reshape(grad.shape[0], -1).amax(-1) > 0).all(), name


def test_batched_equals_per_example_loop():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 2, 2, 3000, generator=gen)
    threshold = torch.tensor([[-30.0, -20.0], [-15.0, -25.0], [-40.0, -10.0]])
    ratio = torch.tensor([[2.0, 4.0], [8.0, 1.5], [3.0, 3.0]])
    attack = torch.tensor([[1.0, 5.0], [20.0, 2.0], [10.0, 3.0]])
    freq = torch.tensor([150.0, 3000.0]).repeat(3, 2, 1) * torch.rand(3, 2, 1, generator=gen).add(0.5)
    gains = torch.randn(3, 2, 2, generator=gen) * 4
    q = torch.full((3, 2, 2), 0.8)
    kinds = ["lowshelf", "highshelf"]
    comp = fx.compressor(x, SR, threshold, ratio, attack)
    eq = fx.parametric_eq(x, SR, freq, gains, q, kinds)
    for b in range(3):
        for s in range(2):
            one = x[b, s]
            torch.testing.assert_close(
                comp[b, s], fx.compressor(one, SR, threshold[b, s], ratio[b, s], attack[b, s]), atol=1e-5, rtol=1e-4
            )
            torch.testing.assert_close(
                eq[b, s], fx.parametric_eq(one, SR, freq[b, s], gains[b, s], q[b, s], kinds), atol=1e-5, rtol=1e-4
            )


def test_effects_run_in_float32_under_autocast():
    x = torch.randn(2, 2, 2000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fx.compressor(fx.parametric_eq(x.bfloat16(), SR, [500.0], [6.0], [1.0], ["peak"]), SR, -20.0, 4.0)
    assert y.dtype == torch.float32
    equalised = fx.parametric_eq(x.bfloat16().float(), SR, [500.0], [6.0], [1.0], ["peak"])
    reference = fx.compressor(equalised, SR, -20.0, 4.0)
    torch.testing.assert_close(y, reference)
