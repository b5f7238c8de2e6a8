"""The authors' debleed models (variant "paper"): shapes, their own training targets, and a few steps of
their published loss reduce it."""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from musicfx.errors import AudioError
from musicfx.models.debleed_paper import (
    DFUNetPaper, DICAEPaper, FUNetPaper, TUNetPaper, debleed_model, keras_init, least_squares_mixing, unmix,
)


def _bleed(batch: int = 2, tracks: int = 4, time: int = 4096, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sources = torch.randn(batch, tracks, time, generator=g) * 0.1
    matrix = torch.rand(batch, tracks, tracks, generator=g) * 0.26 + 0.05
    matrix = matrix + torch.diag_embed(torch.rand(batch, tracks, generator=g) * 0.4 + 0.6 - matrix.diagonal(dim1=1, dim2=2))
    return matrix @ sources, sources, matrix


def test_least_squares_mixing_recovers_the_linear_matrix() -> None:
    mics, sources, matrix = _bleed()
    assert torch.allclose(least_squares_mixing(mics, sources), matrix, atol=1e-4)


def _steps(model: nn.Module, loss_of: Callable[[], torch.Tensor], steps: int = 6, lr: float = 1e-3):
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_of()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _native_loss(model: nn.Module, mics: torch.Tensor, targets: torch.Tensor) -> Callable[[], torch.Tensor]:
    if hasattr(model, "native_target"):
        return lambda: nn.functional.mse_loss(model.forward_train(mics)["native"], model.native_target(mics, targets))
    return lambda: nn.functional.mse_loss(model(mics), targets)


@pytest.mark.parametrize(
    "build",
    [
        lambda: TUNetPaper(length=4096, widths=(8, 16, 32), pool=4, dense=(64, 32)),
        lambda: FUNetPaper(n_fft=255, hop_length=64, widths=(8, 16), bottleneck=16, dropout=0.0),
        lambda: DFUNetPaper(widths=(4, 8, 8, 8), bottleneck=8, decoder_widths=(8, 8, 4, 4), dropout=0.0),
        lambda: DICAEPaper(n_fft=128, hop_length=64, bottleneck=16),
    ],
    ids=["t_unet", "f_unet", "df_unet", "di_cae"],
)
def test_a_few_steps_reduce_the_papers_loss(build) -> None:
    torch.manual_seed(0)
    model = build()
    mics, targets, _ = _bleed(time=4096)
    lr = 1e-2 if isinstance(model, TUNetPaper) else 1e-3  # the t-UNet's published rate
    losses = _steps(model, _native_loss(model, mics, targets), lr=lr)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        assert model(mics).shape == mics.shape


def test_t_unet_paper_pads_short_clips_and_rejects_long_ones() -> None:
    model = TUNetPaper(length=4096, widths=(8, 16), pool=4, dense=(16,))
    assert model(torch.randn(1, 4, 1000)).shape == (1, 4, 1000)
    with pytest.raises(AudioError, match="at most 4096 samples"):
        model(torch.randn(1, 4, 5000))
    # The regression target is the matrix, entries >= 0 (ReLU output).
    assert (model.mixing_matrix(torch.randn(2, 4, 4096)) >= 0).all()


def test_t_unet_paper_inverts_the_papers_matrices_exactly_and_bounds_near_singular_ones() -> None:
    mics, sources, matrix = _bleed()
    # Every matrix of the paper's bleed is far better conditioned than the guard: inv(A) x exactly.
    assert torch.allclose(unmix(matrix, mics, 20.0), sources, atol=1e-5)
    # A nearly singular estimate (an early-training ReLU matrix): the gain stays below max_condition / sigma_max.
    singular = torch.diag(torch.tensor([0.3, 0.2, 0.1, 1e-4])).expand(2, 4, 4)
    guarded, plain = unmix(singular, mics, 20.0), unmix(singular, mics)
    assert plain.abs().max() > 1000 * mics.abs().max()
    assert guarded.norm(dim=1).max() <= 20.0 / 0.3 * mics.norm(dim=1).max() + 1e-4
    model = TUNetPaper(length=4096, widths=(8, 16), pool=4, dense=(16,), max_condition=20.0)
    model.mixing_matrix = lambda x: singular[: x.shape[0]]
    assert torch.allclose(model(mics), guarded)
    with pytest.raises(ValueError, match="max_condition"):
        TUNetPaper(length=4096, widths=(8, 16), pool=4, dense=(16,), max_condition=0.5)


@pytest.mark.parametrize(
    "build",
    [
        lambda: TUNetPaper(length=4096, widths=(8, 16), pool=4, dense=(16,)),
        lambda: FUNetPaper(n_fft=255, hop_length=64, widths=(4, 8), bottleneck=8),
        lambda: DFUNetPaper(widths=(4, 4, 4, 4), bottleneck=4, decoder_widths=(4, 4, 4, 4)),
        lambda: DICAEPaper(n_fft=64, hop_length=16, bottleneck=8),
    ],
    ids=["t_unet", "f_unet", "df_unet", "di_cae"],
)
def test_paper_models_start_as_keras_would(build) -> None:
    model = build()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert layers
    for layer in layers:
        assert layer.bias is None or not layer.bias.any()  # Keras: zero biases
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = (6.0 / (fan_in + fan_out)) ** 0.5  # Keras: Glorot uniform
        assert float(layer.weight.abs().max()) <= bound and float(layer.weight.abs().max()) > bound / 2


def test_keras_init_lets_the_t_unet_paper_see_its_input() -> None:
    # With PyTorch's default biases (+-0.5 on the first 1 x 4 convolution) a 0.01-amplitude waveform barely
    # moves the features; with Keras' zero biases the features scale with the input.
    torch.manual_seed(0)
    model = TUNetPaper(length=4096, widths=(8, 16), pool=4, dense=(16,))
    mics = 0.01 * torch.randn(1, 4, 4096)
    first = model.convs[0]
    assert torch.allclose(torch.relu(first(2 * mics.unsqueeze(1))), 2 * torch.relu(first(mics.unsqueeze(1))), atol=1e-7)
    assert keras_init(model) is model


def test_df_unet_paper_keeps_any_length_and_track_count() -> None:
    model = DFUNetPaper(num_tracks=3, widths=(4, 4, 4, 4), bottleneck=4, decoder_widths=(4, 4, 4, 4)).eval()
    assert model(torch.randn(2, 3, 1001)).shape == (2, 3, 1001)


@pytest.mark.parametrize("group", [1, 3])
def test_di_cae_paper_windows_decode_back_to_the_spectrogram(group: int) -> None:
    model = DICAEPaper(n_fft=64, hop_length=16, group=group, bottleneck=8)
    mag = torch.rand(2, 4, model.bins, 40)
    windows = model._windows(mag)
    assert windows.shape == (2, 4, 40 - 3 * group + 1, 3 * model.bins, group)
    assert torch.equal(model._decode(windows, 40), mag)


def test_di_cae_paper_has_one_autoencoder_per_stem() -> None:
    per_stem = DICAEPaper(n_fft=64, hop_length=16, bottleneck=8)
    shared = DICAEPaper(n_fft=64, hop_length=16, bottleneck=8, shared=True)
    assert len(per_stem.autoencoders) == 4 and len(shared.autoencoders) == 1


def test_factory_selects_the_variant() -> None:
    from musicfx.models import DFUNet

    assert isinstance(debleed_model("df_unet"), DFUNet)
    assert isinstance(debleed_model("df_unet", variant="paper"), DFUNetPaper)
    with pytest.raises(ValueError, match="variant"):
        debleed_model("df_unet", variant="published")


def test_debleed_task_trains_a_paper_variant_in_its_own_domain() -> None:
    from musicfx.tasks.debleed import DebleedTask

    model = TUNetPaper(length=4096, widths=(8, 16), pool=4, dense=(16,))
    task = DebleedTask(model, loss=nn.MSELoss(), sample_rate=22050, matrix_weight=0.0)
    task.log = lambda *args, **kwargs: None  # no trainer attached
    mics, targets, matrix = _bleed()
    loss = task.training_step({"mics": mics, "targets": targets}, 0)
    expected = nn.functional.mse_loss(model.mixing_matrix(mics), least_squares_mixing(mics, targets))
    assert torch.allclose(loss, expected)
