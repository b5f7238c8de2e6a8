"""RandomConsole (random channel strips as augmentation) and MixingConsole (the differentiable console model)."""
from __future__ import annotations

import math
from typing import Dict, List

import pytest
import torch
from torch.utils.data import default_collate

from musicfx.audio import fx
from musicfx.models.console import MixingConsole, mel_filterbank
from musicfx.synth.console import RandomConsole, eq_band_layout

SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")


def _draws(console: RandomConsole, seeds: List[int]) -> Dict[str, torch.Tensor]:
    return default_collate([console.draw(torch.Generator().manual_seed(seed)) for seed in seeds])


def _stems(batch: int, stems: int = 4, channels: int = 2, frames: int = 4000, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, stems, channels, frames, generator=gen)


# --------------------------------------------------------------------------------------------- RandomConsole
def test_draw_is_deterministic_per_seed_and_in_range():
    console = RandomConsole(sample_rate=SR)
    first, again = console.draw(torch.Generator().manual_seed(5)), console.draw(torch.Generator().manual_seed(5))
    assert first.keys() == again.keys() == set(console.param_keys)
    for key in first:
        assert torch.equal(first[key], again[key]), key
    other = console.draw(torch.Generator().manual_seed(6))
    assert not torch.equal(first["gain_db"], other["gain_db"])

    p = _draws(console, list(range(400)))
    assert p["gain_db"].shape == (400, 4) and p["eq_freq_hz"].shape == (400, 4, 3)
    for key, bounds in [("gain_db", console.gain_db), ("pan", console.pan), ("threshold_db", console.threshold_db),
                        ("ratio", console.ratio), ("attack_ms", console.attack_ms), ("release_ms", console.release_ms),
                        ("rt60", console.rt60), ("wet", console.wet), ("eq_gain_db", console.eq_gain_db)]:
        values = p[key]
        assert values.min() >= bounds[0] - 1e-4 and values.max() <= bounds[1] + 1e-4, key
        assert values.max() - values.min() > 0.8 * (bounds[1] - bounds[0]), key  # spread over the range
    for k, (low, high) in enumerate(console.eq_ranges):
        assert p["eq_freq_hz"][..., k].min() >= low * 0.999 and p["eq_freq_hz"][..., k].max() <= high * 1.001
    peaks = p["eq_q"][..., 1]
    assert peaks.min() >= console.eq_q[0] - 1e-5 and peaks.max() <= console.eq_q[1] + 1e-5
    # Bernoulli rates over 1600 stems (standard error ~0.012 for p = 0.5)
    assert p["compress"].float().mean() == pytest.approx(0.5, abs=0.05)
    assert p["reverb"].float().mean() == pytest.approx(0.3, abs=0.05)
    assert p["swap"].float().mean() == pytest.approx(0.5, abs=0.05)
    assert (1 - p["keep"].float().mean()) == pytest.approx(0.1, abs=0.025)
    assert p["keep"].any(dim=1).all()


def test_eq_band_layout():
    kinds, ranges = eq_band_layout(4, 44100)
    assert kinds == ["lowshelf", "peak", "peak", "highshelf"]
    assert ranges[1][1] == pytest.approx(ranges[2][0])  # the peaks split the mid range
    assert eq_band_layout(1, 44100)[0] == ["peak"] and eq_band_layout(0, 44100) == ([], [])
    assert max(high for _, high in eq_band_layout(3, 16000)[1]) <= 0.45 * 16000


def test_forward_is_deterministic_and_batch_independent():
    console = RandomConsole(sample_rate=SR, compressor_prob=0.6, reverb_prob=0.5, rt60=(0.1, 0.3))
    stems = _stems(3)
    params = _draws(console, [11, 12, 13])
    seeds = torch.tensor([101, 102, 103], dtype=torch.int64)
    out = console(stems, params, seeds)
    assert out.shape == (3, 4, 2, 4000) and torch.isfinite(out).all()
    assert torch.equal(out, console(stems, params, seeds))
    # the same examples in another batch and order
    order = [2, 0]
    alone = console(stems[order], {k: v[order] for k, v in params.items()}, seeds[order])
    torch.testing.assert_close(alone, out[order], atol=2e-5, rtol=1e-4)
    # the seed matters where a stem has reverb
    assert params["reverb"].any()
    other = console(stems, params, seeds + 1)
    reverb = params["reverb"] & params["keep"]
    assert not torch.allclose(other[reverb], out[reverb])
    torch.testing.assert_close(other[~params["reverb"]], out[~params["reverb"]])


def _neutral(**overrides) -> RandomConsole:
    settings = dict(
        sample_rate=SR, gain_db=(0.0, 0.0), pan=(0.0, 0.0), eq_bands=0, compressor_prob=0.0, reverb_prob=0.0,
        channel_swap=0.0, stem_dropout=0.0,
    )
    settings.update(overrides)
    return RandomConsole(**settings)


def test_each_stage_does_what_it_says():
    stems = _stems(2, channels=1)
    seeds = torch.tensor([1, 2], dtype=torch.int64)
    centre = fx.pan(stems, 0.0)
    neutral = _neutral()
    p = _draws(neutral, [0, 1])
    torch.testing.assert_close(neutral(stems, p, seeds), centre)

    # gain and pan are exact
    console = _neutral(gain_db=(-6.0, 6.0), pan=(-1.0, 1.0))
    p = _draws(console, [0, 1])
    expected = fx.pan(fx.gain(stems, p["gain_db"]), p["pan"])
    torch.testing.assert_close(console(stems, p, seeds), expected)

    # swap flips left and right; dropout silences, and apply_dropout does the same to the originals
    console = _neutral(pan=(-1.0, -0.5), channel_swap=1.0, stem_dropout=0.5)
    p = _draws(console, [3, 4])
    out = console(stems, p, seeds)
    keep = p["keep"]
    assert (~keep).any() and keep.any()
    assert out[~keep].abs().max() == 0
    swapped = fx.pan(stems, p["pan"]).flip(-2)
    torch.testing.assert_close(out[keep], swapped[keep])
    assert (out[keep][:, 1].square().sum(-1) > out[keep][:, 0].square().sum(-1)).all()  # panned left, then swapped
    dropped = console.apply_dropout(stems, p)
    assert torch.equal(dropped[keep], stems[keep]) and dropped[~keep].abs().max() == 0

    # the compressor acts only on the flagged stems, and turns them down
    console = _neutral(compressor_prob=0.5, threshold_db=(-40.0, -35.0), ratio=(6.0, 8.0))
    p = _draws(console, [5, 6])
    out = console(stems, p, seeds)
    flagged = p["compress"]
    assert flagged.any() and (~flagged).any()
    torch.testing.assert_close(out[~flagged], centre[~flagged])
    assert (out[flagged].square().mean(dim=(-2, -1)) < 0.3 * centre[flagged].square().mean(dim=(-2, -1))).all()

    # reverb adds a decorrelated stereo tail to the flagged stems only
    console = _neutral(reverb_prob=0.5, rt60=(0.3, 0.4), wet=(0.5, 0.5))
    p = _draws(console, [7, 8])
    impulse = torch.zeros(2, 4, 1, 4000)
    impulse[..., 0] = 1.0
    out = console(impulse, p, seeds)
    flagged = p["reverb"]
    assert flagged.any() and (~flagged).any()
    assert out[~flagged][..., 1:].abs().max() == 0
    tails = out[flagged][..., 100:]
    assert (tails.square().sum(-1) > 1e-3).all()
    assert not torch.allclose(tails[:, 0], tails[:, 1])


def test_eq_stage_matches_parametric_eq():
    console = _neutral(eq_bands=3, eq_gain_db=(-6.0, 6.0))
    stems = _stems(2, frames=3000)
    p = _draws(console, [9, 10])
    out = console(stems, p, torch.tensor([1, 2], dtype=torch.int64))
    expected = fx.pan(fx.parametric_eq(stems, SR, p["eq_freq_hz"], p["eq_gain_db"], p["eq_q"], console.eq_kinds), 0.0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_forward_rejects_bad_inputs():
    console = RandomConsole(sample_rate=SR)
    p = _draws(console, [0])
    seeds = torch.tensor([0], dtype=torch.int64)
    with pytest.raises(ValueError, match="stems must be"):
        console(_stems(1, stems=3), p, seeds)
    with pytest.raises(ValueError, match="lack"):
        console(_stems(1), {k: v for k, v in p.items() if k != "pan"}, seeds)
    with pytest.raises(ValueError, match="wet"):
        RandomConsole(wet=(0.5, 1.5))


# --------------------------------------------------------------------------------------------- MixingConsole
def _small_model(**overrides) -> MixingConsole:
    settings = dict(num_stems=4, sample_rate=SR, eq_bands=3, hidden=32, n_fft=512, hop_length=128, n_mels=32)
    settings.update(overrides)
    return MixingConsole(**settings)


def test_mel_filterbank():
    fb = mel_filterbank(SR, 512, 20)
    assert fb.shape == (20, 257)
    assert fb.max() <= 1.0 + 1e-6 and (fb.sum(dim=1) > 0).all()
    peaks = fb.argmax(dim=1)
    assert (peaks[1:] > peaks[:-1]).all()  # ordered by frequency


def test_untrained_model_is_a_neutral_mix():
    torch.manual_seed(0)
    model = _small_model()
    stems = _stems(2, frames=8000)
    params = model.predict_parameters(stems)
    assert params["gain_db"].abs().max() == 0 and params["pan"].abs().max() == 0
    assert params["eq_gain_db"].abs().max() == 0 and (params["ratio"] < 1.01).all()
    mix = model(stems)
    expected = fx.pan(stems.sum(dim=1), 0.0)
    assert mix.shape == (2, 2, 8000)
    assert float((mix - expected).detach().norm() / expected.norm()) < 0.01


def test_parameters_are_bounded_and_exported():
    model = _small_model(max_gain_db=12.0, threshold_range=(-30.0, -5.0), max_ratio=4.0)
    with torch.no_grad():
        model.head.weight.normal_(0.0, 50.0)  # drive every head into saturation
    params = model.predict_parameters(_stems(2, frames=4000))
    assert params["gain_db"].abs().max() <= 12.0 and params["pan"].abs().max() <= 1.0
    assert params["eq_gain_db"].abs().max() <= 12.0
    assert params["threshold_db"].min() >= -30.0 and params["threshold_db"].max() <= -5.0
    assert params["ratio"].min() >= 1.0 and params["ratio"].max() <= 4.0
    assert params["eq_freq_hz"].shape == (2, 4, 3)
    exported = model.parameters_to_json(params, ["vocals", "drums", "bass", "other"], index=1)
    vocals = exported["stems"]["vocals"]
    assert exported["sample_rate"] == SR
    assert vocals["gain_db"] == round(float(params["gain_db"][1, 0].detach()), 2)
    assert [band["kind"] for band in vocals["eq"]] == ["lowshelf", "peak", "highshelf"]
    assert set(vocals["compressor"]) == {"threshold_db", "ratio", "attack_ms", "release_ms", "knee_db"}
    import json

    json.dumps(exported)  # plain Python types only
    with pytest.raises(ValueError, match="stem names"):
        model.parameters_to_json(params, ["vocals"])


def test_a_few_adam_steps_learn_known_gains():
    torch.manual_seed(0)
    model = _small_model(eq_bands=2)
    frames = 8000  # 0.5 s at 16 kHz
    t = torch.arange(frames) / SR
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(2, 2, frames, generator=gen)
    lowpassed = fx.parametric_eq(noise[:, :1], SR, [300.0], [0.0], [0.7], ["lowpass"])
    highpassed = fx.parametric_eq(noise[:, 1:], SR, [3000.0], [0.0], [0.7], ["highpass"])
    stems = torch.stack([
        0.3 * torch.sin(2 * math.pi * 220.0 * t).expand(2, 1, frames),
        0.5 * lowpassed,
        0.2 * highpassed,
        0.2 * torch.sin(2 * math.pi * 1000.0 * t) * (1 + torch.sin(2 * math.pi * 3.0 * t)).expand(2, 1, frames),
    ], dim=1).repeat(1, 1, 2, 1)
    true_gains = torch.tensor([-6.0, 4.0, 0.0, -3.0])
    target = fx.pan(fx.gain(stems, true_gains.expand(2, 4)), 0.0).sum(dim=1)

    def loss_and_gains():
        mix = model(stems)
        loss = (mix - target).square().mean() / target.square().mean()
        return loss, model.predict_parameters(stems)["gain_db"].detach()

    def value(loss: torch.Tensor) -> float:
        return float(loss.detach())

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    start_loss, start_gains = loss_and_gains()
    for _ in range(25):
        loss, _ = loss_and_gains()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end_loss, end_gains = loss_and_gains()
    assert value(end_loss) < 0.3 * value(start_loss)
    start_error = (start_gains - true_gains).abs().mean()
    end_error = (end_gains - true_gains).abs().mean()
    assert end_error < 0.5 * start_error
    # and the encoder learned too (its gradient is zero only at the very first step)
    assert model.encoder[0].weight.grad is not None and model.encoder[0].weight.grad.abs().max() > 0


def test_model_runs_under_autocast_and_with_mono_stems():
    model = _small_model()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 0.1)
    stems = _stems(1, channels=1, frames=4000)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mix = model(stems)
        reference = model(stems)
    assert mix.dtype == torch.float32 and mix.shape == (1, 2, 4000) and torch.isfinite(mix).all()
    assert float((mix - reference).norm() / reference.norm()) < 0.05
