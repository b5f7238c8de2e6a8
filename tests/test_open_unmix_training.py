"""Open-Unmix trained as its reference: the statistics pass before training (stored in the checkpoint, not
redone on resume), each network's magnitude estimate against the target magnitude, ReduceLROnPlateau on the
validation loss each epoch."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator

import pytest
import torch

from musicfx.losses.papers import UnmixMagnitudeLoss
from musicfx.models.open_unmix import MagnitudeStatistics, OpenUnmix
from musicfx.tasks.separate import SeparationData, SeparationTask

SR = 16000
SOURCES = ("vocals", "accompaniment")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path) -> Iterator[None]:
    monkeypatch.setenv("MUSICFX_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        yield


def tiny_data() -> SeparationData:
    return SeparationData(
        sample_rate=SR, channels=1, segment=0.25, batch_size=2, num_workers=0, train_examples=4, val_examples=2,
        test_examples=2, targets={"vocals": ["vocals"], "accompaniment": ["drums", "bass", "other"]}, shift=0.0,
        generated_items=2, generated_duration=2.0,
    )


def tiny_task(statistics: int = 2) -> SeparationTask:
    model = OpenUnmix(SOURCES, channels=1, sample_rate=SR, n_fft=256, hop_length=128, hidden_size=16, nb_layers=1,
                      bandwidth=None, dropout=0.0)
    scheduler = lambda optimizer: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=80)  # noqa: E731
    return SeparationTask(model, UnmixMagnitudeLoss(), SOURCES, sample_rate=SR, channels=1, input_statistics=statistics,
                          scheduler=scheduler)


def test_magnitude_statistics_are_the_per_bin_mean_and_std():
    torch.manual_seed(0)
    mixes = [torch.randn(2, 2, 1000), torch.randn(3, 2, 700)]
    stats = MagnitudeStatistics(128, 32)
    for mix in mixes:
        stats.update(mix)
    mean, std = stats.compute()
    frames = torch.cat([
        torch.stft(m.reshape(-1, m.shape[-1]), 128, 32, window=torch.hann_window(128), return_complex=True)
        .abs().reshape(m.shape[0], 2, 65, -1).mean(dim=1).transpose(1, 2).reshape(-1, 65) for m in mixes
    ])
    torch.testing.assert_close(mean, frames.mean(dim=0))
    torch.testing.assert_close(std, frames.std(dim=0, unbiased=False).clamp_min(1e-4 * frames.std(0, unbiased=False).max()))
    with pytest.raises(ValueError, match="no mixtures"):
        MagnitudeStatistics(128, 32).compute()


def test_statistics_pass_sets_the_input_normalisation_and_is_kept_in_the_checkpoint(tmp_path: Path):
    import lightning.pytorch as pl

    torch.manual_seed(0)
    task = tiny_task()
    before = task.model.targets[0].input_scale.detach().clone()
    trainer = pl.Trainer(max_steps=1, limit_val_batches=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(task, datamodule=tiny_data())
    stats = task._input_statistics
    assert stats is not None and stats["mean"].shape == (129,)
    for network in task.model.targets:  # set from the data, then trained one step (lr 1e-3)
        expected = 1.0 / stats["std"]
        assert (network.input_scale.detach() - expected).abs().max() < 0.01 * expected.abs().max()
    assert not torch.allclose(task.model.targets[0].input_scale.detach(), before)
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)
    torch.testing.assert_close(saved["input_statistics"]["std"], stats["std"])
    resumed = tiny_task()
    resumed.on_load_checkpoint(saved)
    assert resumed._input_statistics is not None  # a resumed run does not redo the pass
    config = task.configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == "val/loss" and config["lr_scheduler"]["interval"] == "epoch"


def test_magnitude_domain_loss_trains_each_network_on_its_own_estimate():
    torch.manual_seed(0)
    task = tiny_task(statistics=0)
    mix, stems = torch.randn(2, 1, 4000) * 0.2, torch.randn(2, 2, 1, 4000) * 0.1
    loss, estimates = task._supervised_loss(mix, stems)
    assert estimates is None
    expected = (task.model.estimate_magnitudes(mix) - task.model.spectrogram(stems).abs()).square().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
