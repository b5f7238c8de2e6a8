"""The seed's cycle-consistent separation GAN: a remixer (second generator), unconditional discriminators,
unpaired pools from SeparationData, and a few steps that lower the cycle loss and move both generators."""
from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Callable, Dict, Iterator

import pytest
import torch

from musicfx.errors import ConfigError
from musicfx.models.wavegan import WaveGANDiscriminator, WaveGANGenerator, WaveGANRemixer
from musicfx.tasks.separate import SeparationData, SeparationTask

SR = 16000
SOURCES = ("vocals", "accompaniment")
VOCALS_ACCOMPANIMENT = {"vocals": ["vocals"], "accompaniment": ["drums", "bass", "other"]}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path) -> Iterator[None]:
    monkeypatch.setenv("MUSICFX_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
        warnings.filterwarnings("ignore", message=".*(num_workers|nn.Module|LeafSpec|log_every_n_steps).*")
        yield


def _data(**overrides: object) -> SeparationData:
    options = dict(
        sample_rate=SR, channels=1, segment=0.25, batch_size=4, num_workers=0, train_examples=8, val_examples=2,
        test_examples=2, targets=VOCALS_ACCOMPANIMENT, shift=0.0, generated_items=4, generated_duration=2.0,
    )
    options.update(overrides)
    return SeparationData(**options)


def _adam(lr: float) -> Callable[..., torch.optim.Optimizer]:
    return lambda params: torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))


def _cycle_task(supervised_weight: float = 0.0) -> SeparationTask:
    widths = (8, 16, 16)
    return SeparationTask(
        WaveGANGenerator(SOURCES, channels=1, sample_rate=SR, widths=widths),
        sources=SOURCES,
        discriminator=WaveGANDiscriminator(sources=2, channels=1, widths=widths, conditional=False),
        remixer=WaveGANRemixer(sources=2, channels=1, widths=widths),
        mix_discriminator=WaveGANDiscriminator(sources=1, channels=1, widths=widths, conditional=False),
        adversarial_weight=1.0, cycle_weight=10.0, supervised_weight=supervised_weight, gan_clip=0.0,
        optimizer=_adam(2e-3), discriminator_optimizer=_adam(2e-4), sample_rate=SR, channels=1,
    )


def _unpaired_batch() -> Dict[str, torch.Tensor]:
    data = _data(unpaired=True)
    data.setup("fit")
    data.trainer = SimpleNamespace(training=True)  # what a running Trainer looks like to training_batch
    return data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)


def test_remixer_and_unconditional_discriminators() -> None:
    stems = torch.randn(3, 2, 1, 1000)
    remixer = WaveGANRemixer(sources=2, channels=1, widths=(4, 4))
    assert remixer(stems).shape == (3, 1, 1000)
    plain = WaveGANRemixer(sources=2, channels=1, widths=(4, 4), sum_skip=False)
    plain.load_state_dict(remixer.state_dict())
    torch.testing.assert_close(remixer(stems) - plain(stems), stems.sum(dim=1))
    judge = WaveGANDiscriminator(sources=2, channels=1, widths=(4, 4), conditional=False)
    assert judge(stems).shape == (3,)
    with pytest.raises(ValueError, match="conditional"):
        WaveGANDiscriminator(sources=2, channels=1, widths=(4, 4))(stems)


def test_unpaired_data_gives_two_pools_from_different_examples() -> None:
    batch = _unpaired_batch()
    assert set(batch) == {"mix", "unpaired_stems"}
    assert batch["mix"].shape == (2, 1, 4000) and batch["unpaired_stems"].shape == (2, 2, 1, 4000)
    # No mix is the sum of any stem set of the other pool.
    pool_mixes = batch["unpaired_stems"].sum(dim=1)
    for mix in batch["mix"]:
        assert all((mix - other).abs().max() > 1e-3 for other in pool_mixes)
    with pytest.raises(ConfigError, match="batch_size"):
        _data(batch_size=1, unpaired=True)


def test_cycle_mode_needs_unconditional_stem_discriminator() -> None:
    with pytest.raises(ConfigError, match="unconditional"):
        SeparationTask(
            WaveGANGenerator(SOURCES, channels=1, widths=(4,)), sources=SOURCES,
            discriminator=WaveGANDiscriminator(sources=2, channels=1, widths=(4,)),
            remixer=WaveGANRemixer(sources=2, channels=1, widths=(4,)),
            mix_discriminator=WaveGANDiscriminator(sources=1, channels=1, widths=(4,), conditional=False),
        )


def _cycle_loss(task: SeparationTask, batch: Dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        mix, stems = batch["mix"], batch["unpaired_stems"]
        return float((task.remixer(task.model(mix)) - mix).abs().mean() + (task.model(task.remixer(stems)) - stems).abs().mean())


def test_unpaired_cycle_training_lowers_the_cycle_loss_and_moves_both_generators() -> None:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    batch = _unpaired_batch()  # two pools of two examples each
    torch.manual_seed(0)
    task = _cycle_task()
    before = {name: p.detach().clone() for name, p in task.named_parameters()}
    cycle_before = _cycle_loss(task, batch)
    steps = 12
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, max_steps=2 * steps)  # two optimizers: two steps per batch
    trainer.fit(task, train_dataloaders=DataLoader([batch] * steps, batch_size=None))
    cycle_after = _cycle_loss(task, batch)
    assert cycle_after < 0.85 * cycle_before, (cycle_before, cycle_after)
    for prefix in ("model.", "remixer.", "discriminator.", "mix_discriminator."):
        moved = [not torch.equal(before[name], p) for name, p in task.named_parameters() if name.startswith(prefix)]
        assert moved and any(moved), prefix
    assert all(not torch.equal(before[n], p) for n, p in task.named_parameters() if n.startswith("model.down"))
    assert all(not torch.equal(before[n], p) for n, p in task.named_parameters() if n.startswith("remixer.down"))
    for name in ("train/loss_cycle_mix", "train/loss_cycle_stems", "train/loss_discriminator_stems",
                 "train/loss_discriminator_mix"):
        assert torch.isfinite(trainer.callback_metrics[name]), name


def test_generator_optimizer_holds_both_generators() -> None:
    task = _cycle_task()
    generator, discriminator = task.configure_optimizers()
    gen_ids = {id(p) for g in generator.param_groups for p in g["params"]}
    assert gen_ids == {id(p) for p in [*task.model.parameters(), *task.remixer.parameters()]}
    disc_ids = {id(p) for g in discriminator.param_groups for p in g["params"]}
    assert disc_ids == {id(p) for p in [*task.discriminator.parameters(), *task.mix_discriminator.parameters()]}


def test_a_cycle_checkpoint_loads_and_separates(tmp_path) -> None:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    import musicfx

    batch = _unpaired_batch()
    task = _cycle_task()
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, max_steps=2)
    trainer.fit(task, train_dataloaders=DataLoader([batch], batch_size=None))
    path = tmp_path / "cycle.ckpt"
    trainer.save_checkpoint(path)
    loaded = musicfx.load(path, trust=True)  # built from module objects in Python: pickled, so trusted
    assert isinstance(loaded.remixer, WaveGANRemixer)
    stems = loaded.separate(torch.randn(1, 8000), SR)
    assert set(stems) == set(SOURCES) and stems["vocals"].shape == (1, 8000)
