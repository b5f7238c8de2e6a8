"""Automix models (FxNorm-automix, Wave-U-Net) and losses (stereo STFT, loudness): shapes, structure,
hand-checkable loss values, mixed precision, and a few training steps that must reduce the loss."""
from __future__ import annotations

import math
from typing import Callable, Tuple

import pytest
import torch
from torch import Tensor, nn

from musicfx.data.generator import STEMS, generate_stems
from musicfx.losses.automix import AutomixLoss, LoudnessLoss, StereoSTFTLoss, a_weighting
from musicfx.models.fxnorm_automix import FxNormAutomix
from musicfx.models.wave_u_net import WaveUNet

SR = 16000
# Every part of FxNorm-automix, small enough for a few dozen CPU steps in about a second.
TINY_FX = dict(features=16, kernel_size=16, pool_size=16, bottleneck_features=16, skip_features=8,
               hidden_features=16, blocks=2, repeats=1, lstm_layers=2, se_expansion=2)
TINY_WUN = dict(levels=3, features=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def _seeded(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """Build a model from a fixed initialisation without touching the global RNG of other tests."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory()


def _noise(*shape: int, seed: int = 0, scale: float = 0.1) -> Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _mixing_batch(frames: int = SR // 2) -> Tuple[Tensor, Tensor]:
    """Two pieces of generated music as mono stems and, as target, their mix with known gains and pans.

    Returns:
        ``stems (2, 4, 1, frames)`` and ``target (2, 2, frames)``.
    """
    pieces = []
    for seed in (0, 1):
        stems = generate_stems(frames, SR, 1, torch.Generator().manual_seed(seed))
        pieces.append(torch.stack([stems[name] for name in STEMS]))
    stems = torch.stack(pieces)
    gains = torch.tensor([0.9, 0.5, 0.7, 0.4])
    pans = torch.tensor([0.5, 0.2, 0.5, 0.8]) * math.pi / 2  # constant-power: 0 = left, pi/2 = right
    matrix = torch.stack([torch.cos(pans), torch.sin(pans)], dim=-1) * gains[:, None]  # (stems, 2)
    return stems, (stems * matrix[None, :, :, None]).sum(1)


# ----------------------------------------------------------------------------------------- FxNorm-automix


def test_fxnorm_default_size_matches_the_reference() -> None:
    model = FxNormAutomix()
    # "8 -> 128, kernel 64": 4 stereo stems stacked into one convolution.
    assert tuple(model.front_end.encoder.weight.shape) == (128, 8, 64)
    assert tuple(model.front_end.smoothing.weight.shape) == (128, 1, 128)
    assert len(model.mixer.tcn.blocks) == 24
    assert [b.block[3].dilation[0] for b in model.mixer.tcn.blocks[:6]] == [1, 2, 4, 8, 16, 32]
    assert model.mixer.lstm.num_layers == 3 and model.mixer.lstm.bidirectional
    # The reference's 2,752,817 less the last block's residual conv (128 * 256 + 256) that it never uses.
    assert _count(model) == 2_752_817 - 33_024
    assert abs(_count(model) - 2.75e6) / 2.75e6 < 0.1


def test_fxnorm_default_size_forward_any_length() -> None:
    model = FxNormAutomix().eval()
    with torch.no_grad():
        mix = model(_noise(1, 4, 2, 4001))  # not a multiple of the pooling size
    assert mix.shape == (1, 2, 4001) and mix.dtype == torch.float32
    assert torch.isfinite(mix).all() and mix.abs().max() < 1


@pytest.mark.parametrize("frames", [1, 100, 8000])
@pytest.mark.parametrize("channels", [1, 2])
def test_fxnorm_shapes(frames: int, channels: int) -> None:
    model = _seeded(lambda: FxNormAutomix(**TINY_FX)).eval()
    stems = _noise(3, 4, channels, frames)
    with torch.no_grad():
        mix = model(stems)
        recon = model.forward_autoencoder(stems)
    assert mix.shape == (3, 2, frames)
    assert recon.shape == stems.shape
    assert torch.isfinite(mix).all() and torch.isfinite(recon).all()


def test_fxnorm_mono_stems_equal_duplicated_stereo() -> None:
    model = _seeded(lambda: FxNormAutomix(**TINY_FX)).eval()
    mono = _noise(2, 4, 1, 1000)
    with torch.no_grad():
        torch.testing.assert_close(model(mono), model(mono.expand(-1, -1, 2, -1)))


def test_fxnorm_wrong_inputs_raise() -> None:
    model = FxNormAutomix(**TINY_FX)
    with pytest.raises(ValueError, match="stems"):
        model(_noise(1, 3, 2, 100))
    with pytest.raises(ValueError, match="mono or stereo"):
        model(_noise(1, 4, 3, 100))
    with pytest.raises(ValueError, match="batch, stems"):
        model(_noise(4, 2, 100))
    with pytest.raises(ValueError, match="whole stem stack"):
        model.forward_autoencoder(_noise(4, 2, 100))


def test_fxnorm_back_end_is_the_adjoint_of_the_front_end() -> None:
    front = _seeded(lambda: FxNormAutomix(**TINY_FX)).front_end.double()
    x = torch.randn(2, 8, 300, dtype=torch.float64)
    z = torch.randn(2, 16, 300, dtype=torch.float64)
    # <E x, z> == <x, D z>: the back end is the transposed front-end convolution, with the same kernel.
    torch.testing.assert_close((front.encode(x).double() * z).sum(), (x * front.decode(z).double()).sum(),
                               rtol=1e-5, atol=1e-5)


def test_fxnorm_back_end_weights_are_tied() -> None:
    model = _seeded(lambda: FxNormAutomix(**TINY_FX))
    shaped_like_filters = [n for n, p in model.named_parameters() if p.shape == model.front_end.encoder.weight.shape]
    assert shaped_like_filters == ["front_end.encoder.weight"]  # no separate decoder kernel
    z = _noise(1, 16, 200, seed=1)
    before = model.front_end.decode(z)
    with torch.no_grad():
        model.front_end.encoder.weight.mul_(2.0)
    torch.testing.assert_close(model.front_end.decode(z), 2.0 * before)
    # The filters get gradient through both the analysis and the synthesis side.
    model.forward_autoencoder(_noise(1, 4, 2, 256)).square().sum().backward()
    assert model.front_end.encoder.weight.grad.abs().sum() > 0


def test_fxnorm_autoencoder_uses_only_front_and_back_end() -> None:
    model = _seeded(lambda: FxNormAutomix(**TINY_FX))
    stems = _noise(2, 4, 2, 512)
    model.forward_autoencoder(stems).square().mean().backward()
    assert all(p.grad is not None for p in model.front_back_parameters())
    assert all(p.grad is None for p in model.mixer.parameters())
    assert all(p.grad is None for p in model.se.parameters())


def test_fxnorm_freeze_front_back() -> None:
    model = _seeded(lambda: FxNormAutomix(**TINY_FX))
    stems = _noise(2, 4, 2, 512)
    model.freeze_front_back(True)
    assert not any(p.requires_grad for p in model.front_back_parameters())
    model(stems).square().mean().backward()
    assert all(p.grad is None for p in model.front_back_parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mixer.tcn.head.parameters())
    assert model.se.net[0].weight.grad.abs().sum() > 0
    model.freeze_front_back(False)
    assert all(p.requires_grad for p in model.parameters())
    model.zero_grad(set_to_none=True)
    model(stems).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())  # every parameter is used (DDP-safe)


def test_fxnorm_lstm_chrono_init() -> None:
    lstm = _seeded(lambda: FxNormAutomix(**TINY_FX)).mixer.lstm
    n = lstm.hidden_size
    forget, input_gate = lstm.bias_ih_l0[n : 2 * n], lstm.bias_ih_l0[:n]
    assert (forget >= 0).all() and (forget <= math.log(31.0) + 1e-6).all() and forget.std() > 0
    torch.testing.assert_close(input_gate, -forget)
    assert (lstm.bias_hh_l0 == 0).all()


# --------------------------------------------------------------------------------------------- Wave-U-Net


def test_wave_u_net_structure() -> None:
    model = WaveUNet()
    assert model.widths == [24, 48, 72, 96, 120, 144]  # 5 levels, +24 features per level, then the bottleneck
    assert [b.conv.kernel_size[0] for b in model.down] == [15] * 5
    assert [b.conv.kernel_size[0] for b in model.up] == [5] * 5
    assert model.down[0].conv.in_channels == 8 and model.output.out_channels == 2
    # Hand count: down 2904 + 17328 + 51912 + 103776 + 172920, bottleneck 259344,
    # up 158520 + 103776 + 60552 + 28848 + 8664, output (24 + 8) * 2 + 2.
    assert _count(model) == 968_610
    assert WaveUNet(growth="double").widths == [24, 48, 96, 192, 384, 768]


@pytest.mark.parametrize("frames", [1, 31, 33, 1000])
@pytest.mark.parametrize("channels", [1, 2])
def test_wave_u_net_output_length_equals_input(frames: int, channels: int) -> None:
    model = _seeded(lambda: WaveUNet()).eval()
    with torch.no_grad():
        mix = model(_noise(2, 4, channels, frames))
    assert mix.shape == (2, 2, frames) and torch.isfinite(mix).all()


def test_wave_u_net_output_layer_sees_the_stems() -> None:
    # With the U-Net silenced and the output conv set to a mixing matrix, the model is exactly
    # tanh(mixing matrix x stacked stems): checks the stem/channel stacking order and the input skip.
    model = WaveUNet(**TINY_WUN)
    gains = torch.tensor([0.9, 0.5, 0.7, 0.4])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        weight = model.output.weight  # (2, widths[0] + 8, 1); inputs come after the U-Net features
        for s, g in enumerate(gains):
            weight[0, model.widths[0] + 2 * s, 0] = g  # stem s, left -> left
            weight[1, model.widths[0] + 2 * s + 1, 0] = g  # stem s, right -> right
    stems = _noise(2, 4, 2, 777)
    expected = torch.tanh((stems * gains[None, :, None, None]).sum(1))
    torch.testing.assert_close(model(stems), expected)


# ----------------------------------------------------------------------------------- mixed precision, learning


@pytest.mark.parametrize("factory", [lambda: FxNormAutomix(**TINY_FX), lambda: WaveUNet(**TINY_WUN)],
                         ids=["fxnorm", "wave_u_net"])
def test_models_under_bf16_autocast(factory: Callable[[], nn.Module]) -> None:
    model = _seeded(factory).eval()
    stems = _noise(2, 4, 2, 2000)
    reference = model(stems)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mix = model(stems)
        loss = StereoSTFTLoss(512, 128, SR)(mix, reference.detach() * 0.5)
    loss.backward()
    assert mix.dtype == torch.float32 and loss.dtype == torch.float32
    assert (mix - reference).abs().max() < 0.02
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("factory", [lambda: FxNormAutomix(**TINY_FX), lambda: WaveUNet(**TINY_WUN)],
                         ids=["fxnorm", "wave_u_net"])
def test_models_learn_a_fixed_mix(factory: Callable[[], nn.Module]) -> None:
    stems, target = _mixing_batch()
    model = _seeded(factory)
    criterion = AutomixLoss(StereoSTFTLoss(512, 128, SR), loudness_weight=0.1)
    # The paper's optimiser: Adam with AMSGrad, lr 1e-3, gradient norm clipped at 0.2.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    losses = []
    for _ in range(20):
        loss = criterion(model(stems), target)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.2)
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


# ------------------------------------------------------------------------------------------------- losses


def test_a_weighting_matches_iec_61672_table() -> None:
    # Exact base-10 frequencies of the nominal 31.5 Hz, 100 Hz, 1 kHz, 2.5 kHz and 10 kHz bands.
    freqs = 1000.0 * 10.0 ** (torch.tensor([-15.0, -10.0, 0.0, 4.0, 10.0]) / 10.0)
    table_db = torch.tensor([-39.4, -19.1, 0.0, 1.3, -2.5])  # IEC 61672-1 Table 3
    torch.testing.assert_close(20 * torch.log10(a_weighting(freqs)), table_db, atol=0.06, rtol=0)
    assert a_weighting(torch.tensor([0.0])).item() == 0.0


@pytest.mark.parametrize("magnitude", ["sc", "mse"])
def test_stereo_loss_zero_for_identical_and_its_blind_spots(magnitude: str) -> None:
    loss = StereoSTFTLoss(1024, 256, SR, magnitude=magnitude, reduction="none")
    y = _noise(3, 2, 8000)
    assert loss(y, y).shape == (3,)
    assert torch.equal(loss(y, y), torch.zeros(3))
    # Only |L + R| and |L - R| are compared: a left/right swap or a polarity flip is invisible.
    torch.testing.assert_close(loss(y.flip(-2), y), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(loss(-y, y), torch.zeros(3), atol=1e-6, rtol=0)
    # Swapping channels in both signals changes nothing either.
    x = _noise(3, 2, 8000, seed=1)
    torch.testing.assert_close(loss(x.flip(-2), y.flip(-2)), loss(x, y))


@pytest.mark.parametrize("gain", [0.5, 2.0])
def test_stereo_loss_of_a_gain_change(gain: float) -> None:
    loss = StereoSTFTLoss(1024, 256, SR, reduction="none")
    y = _noise(2, 2, 8000)
    # Per signal (mid and side): SC = |1 - g| and log-magnitude L1 = |ln g| on every bin but DC, whose
    # A-weight is 0 (floored equally in both). Two signals: twice that.
    bins = 1024 // 2 + 1
    expected = 2 * (abs(1 - gain) + abs(math.log(gain)) * (bins - 1) / bins)
    torch.testing.assert_close(loss(gain * y, y), torch.full((2,), expected), rtol=1e-3, atol=0)
    mse = StereoSTFTLoss(1024, 256, SR, magnitude="mse", log_magnitude_weight=0.0)
    torch.testing.assert_close(mse(0.5 * y, y) / mse(2.0 * y, y), torch.tensor(0.25), rtol=1e-4, atol=0)


def test_stereo_loss_a_weighting_discounts_low_frequencies() -> None:
    t = torch.arange(8000) / SR
    y = _noise(1, 2, 8000)

    def error_ratio(weighted: bool) -> float:
        sc = StereoSTFTLoss(1024, 256, SR, a_weighting=weighted, log_magnitude_weight=0.0)
        low = sc(y + 0.05 * torch.sin(2 * math.pi * 40 * t), y)
        mid = sc(y + 0.05 * torch.sin(2 * math.pi * 2000 * t), y)
        return (low / mid).item()

    # A(40 Hz) - A(2 kHz) = -36.2 dB: the same error costs ~60x less at 40 Hz than at 2 kHz.
    assert error_ratio(True) < 0.05
    assert 0.5 < error_ratio(False) < 2.0


def test_stereo_loss_reductions_and_checks() -> None:
    x, y = _noise(3, 2, 4000, seed=1), _noise(3, 2, 4000)
    per_item = StereoSTFTLoss(512, 128, SR, reduction="none")(x, y)
    assert per_item.shape == (3,)
    # Identical examples: the batch-level spectral convergence equals each example's.
    same = StereoSTFTLoss(512, 128, SR)(x[:1].expand(3, -1, -1), y[:1].expand(3, -1, -1))
    torch.testing.assert_close(same, per_item[0])
    mse = StereoSTFTLoss(512, 128, SR, magnitude="mse")
    torch.testing.assert_close(mse(x, y), StereoSTFTLoss(512, 128, SR, magnitude="mse", reduction="none")(x, y).mean())
    # Unbatched input and extra leading dimensions work too.
    assert StereoSTFTLoss(512, 128, SR, reduction="none")(x[0], y[0]).shape == ()
    assert StereoSTFTLoss(512, 128, SR, reduction="none")(x.view(3, 1, 2, -1), y.view(3, 1, 2, -1)).shape == (3, 1)
    with pytest.raises(ValueError, match="stereo"):
        StereoSTFTLoss(512, 128, SR)(x[:, :1], y[:, :1])
    with pytest.raises(ValueError, match="magnitude"):
        StereoSTFTLoss(magnitude="l1")
    with pytest.raises(ValueError, match="reduction"):
        StereoSTFTLoss(reduction="sum")


def test_stereo_loss_batch_convergence_is_robust_to_a_silent_target() -> None:
    x, y = _noise(2, 2, 4000, seed=1), _noise(2, 2, 4000)
    y[1] = 0.0  # one silent target chunk
    x[1] *= 0.01  # and a quiet, wrong estimate for it
    per_item = StereoSTFTLoss(512, 128, SR, log_magnitude_weight=0.0, reduction="none")(x, y)
    batch = StereoSTFTLoss(512, 128, SR, log_magnitude_weight=0.0)(x, y)
    assert per_item[1] > 100  # on its own, a silent target divides by (almost) nothing
    # Over the batch it weighs by its (tiny) energy: the loss is about the first item's alone.
    torch.testing.assert_close(batch, per_item[0], rtol=1e-2, atol=0)


def test_loudness_loss_of_a_gain_change_and_its_gradient() -> None:
    loss = LoudnessLoss(SR, reduction="none")
    y = _noise(2, 2, 8000)  # 0.5 s: gated BS.1770 loudness is defined
    torch.testing.assert_close(loss(0.5 * y, y), torch.full((2,), 20 * math.log10(2)), rtol=1e-4, atol=1e-4)
    # Differentiable through the gates: a too-quiet estimate is told to get louder.
    gain = torch.tensor(0.5, requires_grad=True)
    LoudnessLoss(SR)(gain * y, y).backward()
    torch.testing.assert_close(gain.grad, torch.tensor(-20 / math.log(10) / 0.5), rtol=1e-3, atol=0)


def test_loudness_loss_falls_back_when_undefined() -> None:
    loss = LoudnessLoss(SR, reduction="none")
    short = _noise(2, 2, 3000)  # 0.19 s, shorter than one 400 ms block
    torch.testing.assert_close(loss(2.0 * short, short), torch.full((2,), 20 * math.log10(2)), rtol=1e-4, atol=1e-4)
    estimate = torch.zeros(2, 2, 8000, requires_grad=True)
    value = loss(estimate, _noise(2, 2, 8000))
    assert torch.isfinite(value).all() and (value > 50).all()  # silence against about -26 LUFS
    value.sum().backward()
    assert torch.isfinite(estimate.grad).all()


def test_automix_loss_combines_the_terms() -> None:
    x, y = _noise(2, 2, 8000, seed=1), _noise(2, 2, 8000)
    stereo = StereoSTFTLoss(512, 128, SR)
    parts = AutomixLoss(stereo, loudness_weight=0.1).components(x, y)
    torch.testing.assert_close(parts["loss"], parts["stereo"] + 0.1 * parts["loudness"])
    torch.testing.assert_close(parts["stereo"], stereo(x, y))
    torch.testing.assert_close(parts["loudness"], LoudnessLoss(SR)(x, y))
    assert "loudness" not in AutomixLoss(stereo, loudness_weight=0.0).components(x, y)
    assert AutomixLoss().stereo.n_fft == 4096 and AutomixLoss().loudness.sample_rate == 44100
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = AutomixLoss(stereo)(x.bfloat16(), y)
    assert mixed.dtype == torch.float32
