"""The debleed models (t-UNet, f-UNet, df-UNet, DI-CAE): shapes, the A^-1 x path, invariances, learning."""
from __future__ import annotations

import math
from typing import Callable, Dict, Tuple

import pytest
import torch
from torch import Tensor, nn

from musicfx.audio.spectral import istft, stft
from musicfx.data.generator import STEMS, generate_stems
from musicfx.errors import AudioError
from musicfx.models.df_unet import DFUNet
from musicfx.models.di_cae import DICAE
from musicfx.models.f_unet import FUNet
from musicfx.models.t_unet import TUNet, unmix

# Small enough to train for a dozen steps in about a second each on one shared CPU core.
TINY: Dict[str, Callable[[int], nn.Module]] = {
    "t_unet": lambda tracks: TUNet(num_tracks=tracks, widths=(8, 16, 32), head_width=32),
    "f_unet": lambda tracks: FUNet(
        num_tracks=tracks, n_fft=128, hop_length=64, widths=(8, 16), bottleneck_width=16, dropout=0.0
    ),
    "df_unet": lambda tracks: DFUNet(
        num_tracks=tracks, widths=(8, 16), bottleneck_width=16, dilations=(1, 2), dropout=0.0
    ),
    "di_cae": lambda tracks: DICAE(num_tracks=tracks, n_fft=64, hop_length=32, widths=(8, 16), bottleneck=16),
}
MODELS = sorted(TINY)


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(name: str, tracks: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TINY[name](tracks)


def _moved(name: str, tracks: int = 4) -> nn.Module:
    """A model in eval mode moved off its initial (identity) point, so that checks on it are not trivial."""
    model = _build(name, tracks).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _bleed_matrix(batch: int, tracks: int, generator: torch.Generator) -> Tensor:
    """The seed's linear bleed: diagonal U(0.6, 1), off-diagonal U(0.05, 0.31), ``(batch, tracks, tracks)``."""
    off = 0.05 + 0.26 * torch.rand(batch, tracks, tracks, generator=generator)
    diag = 0.6 + 0.4 * torch.rand(batch, tracks, generator=generator)
    return off * (1.0 - torch.eye(tracks)) + torch.diag_embed(diag)


@pytest.fixture(scope="module")
def bleed_batch() -> Tuple[Tensor, Tensor, Tensor]:
    """Two 0.5 s, 8 kHz mono examples of the four generated stems, mixed by a random bleed matrix each:
    ``(mics (2, 4, 4000), sources (2, 4, 4000), matrix (2, 4, 4))``."""
    generator = torch.Generator().manual_seed(1234)
    sources = torch.stack([
        torch.cat([stems[name] for name in STEMS]) for stems in
        (generate_stems(4000, 8000, 1, generator) for _ in range(2))
    ])
    matrix = _bleed_matrix(2, 4, generator)
    return matrix @ sources, sources, matrix


# ---------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch, tracks, length", [(1, 2, 1), (3, 3, 37), (2, 4, 1001), (1, 5, 777)])
def test_any_length_and_track_count(name: str, batch: int, tracks: int, length: int) -> None:
    model = _build(name, tracks).eval()
    mics = torch.randn(batch, tracks, length)
    with torch.no_grad():
        out = model(mics)
    assert out.shape == (batch, tracks, length)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_wrong_shapes_are_user_errors(name: str) -> None:
    model = _build(name, 4).eval()
    with pytest.raises(AudioError, match="4"):
        model(torch.randn(1, 3, 100))
    with pytest.raises(AudioError):
        model(torch.randn(4, 100))
    with pytest.raises(AudioError, match="empty"):
        model(torch.randn(1, 4, 0))


@pytest.mark.parametrize("name", MODELS)
def test_forward_train_matches_forward(name: str) -> None:
    model = _build(name, 3).eval()
    mics = torch.randn(2, 3, 900)
    with torch.no_grad():
        outputs = model.forward_train(mics)
        plain = model(mics)
    expected_keys = {
        "t_unet": {"estimate", "mixing_matrix"},
        "f_unet": {"estimate", "mask"},
        "df_unet": {"estimate"},
        "di_cae": {"estimate", "magnitude"},
    }[name]
    assert set(outputs) == expected_keys
    torch.testing.assert_close(outputs["estimate"], plain)


def test_f_unet_estimate_is_the_masked_stft() -> None:
    model = _build("f_unet", 3).eval()
    mics = torch.randn(2, 3, 900)
    with torch.no_grad():
        out = model.forward_train(mics)
    mask = out["mask"]
    assert mask.shape == (2, 3, 65, 1 + 900 // 64)
    assert float(mask.min()) > 0 and float(mask.max()) < model.mask_limit
    expected = istft(stft(mics, 128, 64) * mask, 128, 64, 900)
    torch.testing.assert_close(out["estimate"], expected, rtol=1e-4, atol=1e-5)


def test_di_cae_magnitude_is_positive_and_in_stft_units() -> None:
    model = _build("di_cae", 2).eval()
    mics = torch.randn(1, 2, 640)
    quiet = model.forward_train(mics)["magnitude"].detach()
    loud = model.forward_train(100.0 * mics)["magnitude"].detach()
    assert quiet.shape == (1, 2, 33, 1 + 640 // 32)
    assert float(quiet.min()) > 0
    torch.testing.assert_close(loud, 100.0 * quiet, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shared", [True, False])
def test_di_cae_windows_and_overlap_average_invert_each_other(shared: bool) -> None:
    # With an identity in place of the autoencoder(s), every frame's three estimates are the frame itself:
    # the model must then return its input, which checks the windowing, averaging and per-track routing.
    model = DICAE(num_tracks=3, n_fft=64, hop_length=16, context=3, widths=(4, 8), bottleneck=4, shared=shared)
    model._clean = lambda windows, tracks: windows  # type: ignore[method-assign]
    mics = torch.randn(2, 3, 500)
    torch.testing.assert_close(model(mics), mics, rtol=1e-4, atol=1e-5)
    windows = model._windows(torch.arange(6.0).view(1, 2, 3))  # 2 bins, 3 frames
    assert windows.shape == (1, 5, 6)
    # Window 2 holds frames 0, 1, 2 in order, each as its 2 bins.
    torch.testing.assert_close(windows[0, 2], torch.tensor([0.0, 3.0, 1.0, 4.0, 2.0, 5.0]))


@pytest.mark.parametrize("name", ["f_unet", "df_unet"])
def test_u_net_parameter_names_are_those_of_saved_checkpoints(name: str) -> None:
    # f-UNet and df-UNet share one skeleton (models.track_unet); checkpoints saved before keep loading.
    keys = set(_build(name).state_dict())
    for key in ("encoders.1.conv2.own.weight", "encoders.1.conv2.all.weight", "encoders.0.norm1.running_mean",
                "bottleneck.conv1.own.bias", "ups.1.weight", "decoders.0.norm2.weight", "out.weight", "out.bias"):
        assert key in keys, key
    assert not any("window" in key for key in keys)


@pytest.mark.parametrize("name", ["f_unet", "df_unet", "t_unet"])
def test_untrained_model_passes_the_tracks_through(name: str) -> None:
    model = _build(name, 4).train()
    mics = torch.randn(2, 4, 1500)
    with torch.no_grad():
        out = model(mics)
    torch.testing.assert_close(out, mics, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_scale_equivariant(name: str) -> None:
    model = _moved(name)
    mics = torch.randn(2, 4, 1200)
    with torch.no_grad():
        small, large = model(mics), model(20.0 * mics)
    torch.testing.assert_close(large, 20.0 * small, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_permuting_tracks_permutes_the_output(name: str) -> None:
    model = _moved(name)
    mics = torch.randn(2, 4, 1100)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out, out_permuted = model(mics), model(mics[:, perm])
    assert not torch.allclose(out, mics, atol=1e-3)  # the check below is not about the identity
    torch.testing.assert_close(out_permuted, out[:, perm], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_runs_under_bf16_autocast(name: str) -> None:
    model = _moved(name)
    mics = torch.randn(1, 4, 1024)
    with torch.no_grad():
        reference = model(mics)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            out = model(mics)
    assert out.dtype == torch.float32
    error = (out - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt()
    assert float(error) < 0.1


# ---------------------------------------------------------------------------------------------- t-UNet path
def test_unmix_with_the_true_matrix_recovers_the_sources() -> None:
    generator = torch.Generator().manual_seed(7)
    sources = torch.randn(3, 4, 2000, generator=generator)
    matrix = _bleed_matrix(3, 4, generator)
    mics = matrix @ sources
    torch.testing.assert_close(unmix(mics, matrix), sources, rtol=1e-4, atol=2e-5)
    exact = unmix(mics.double(), matrix.double())
    assert exact.dtype == torch.float64
    assert float((exact - sources.double()).abs().max()) < 1e-5  # limited by the float32 mixing above
    # The model's forward applies exactly this solve to its matrix.
    model = _build("t_unet", 4).eval()
    model.mixing_matrix = lambda x: matrix  # type: ignore[method-assign]
    torch.testing.assert_close(model(mics), sources, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("tracks", [2, 4, 5])
def test_t_unet_matrix_stays_invertible_and_bounded(tracks: int) -> None:
    model = _build("t_unet", tracks).eval()
    with torch.no_grad():
        # An extreme head: every raw entry saturates its tanh bound.
        model.out.weight.normal_(0.0, 50.0)
        model.out.bias.fill_(3.0)
        mics = torch.randn(4, tracks, 800)
        matrix = model.mixing_matrix(mics)
        estimate = model(mics)
    assert matrix.shape == (4, tracks, tracks)
    assert not torch.allclose(matrix, torch.eye(tracks).expand_as(matrix), atol=0.1)
    assert bool((torch.linalg.det(matrix.double()) > 0).all())
    bound = math.exp(2 * (model.log_gain_limit + model.coupling))
    assert float(torch.linalg.cond(matrix.double()).max()) <= bound
    torch.testing.assert_close(matrix @ estimate, mics, rtol=1e-3, atol=1e-3)


def test_t_unet_matrix_follows_the_track_order() -> None:
    model = _build("t_unet", 4).eval()
    mics = torch.randn(2, 4, 1000)
    perm = torch.tensor([3, 1, 0, 2])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        matrix, permuted = model.mixing_matrix(mics), model.mixing_matrix(mics[:, perm])
    torch.testing.assert_close(permuted, matrix[:, perm][:, :, perm], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------- learning
def _l1(estimate: Tensor, target: Tensor) -> Tensor:
    return (estimate - target).abs().mean()


@pytest.mark.parametrize("name", MODELS)
def test_a_few_adam_steps_reduce_the_loss_on_linear_bleed(name: str, bleed_batch) -> None:
    mics, sources, matrix = bleed_batch
    model = _build(name, 4, seed=0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def evaluate() -> Tuple[float, float]:
        with torch.no_grad():
            out = model.forward_train(mics)
        matrix_error = float((out["mixing_matrix"] - matrix).pow(2).mean()) if "mixing_matrix" in out else 0.0
        return float(_l1(out["estimate"], sources)), matrix_error

    before, matrix_before = evaluate()
    # The t-UNet is cheap (its encoder is per track and its head works on M x M matrices): more steps.
    for _ in range(30 if name == "t_unet" else 12):
        out = model.forward_train(mics)
        loss = _l1(out["estimate"], sources)
        if "mixing_matrix" in out:  # the t-UNet's own target: the true matrix
            loss = loss + (out["mixing_matrix"] - matrix).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after, matrix_after = evaluate()
    assert after < 0.85 * before, f"{name}: L1 {before:.4f} -> {after:.4f}"
    if name == "t_unet":
        assert matrix_after < 0.5 * matrix_before, f"matrix MSE {matrix_before:.4f} -> {matrix_after:.4f}"
