"""musicfx.callbacks.EMA: the average is what validation sees and what the checkpoint holds; resume restores
both the training weights and the average."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from musicfx.callbacks import EMA

REPO = Path(__file__).resolve().parents[1]


class _Regression(pl.LightningModule):
    """A linear model with batch norm (a buffer the average must carry too); records what validation sees."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
        self.seen: List[Dict[str, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.seen.append({k: v.detach().clone() for k, v in self.state_dict().items()})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)


def _trainer(tmp_path: Path, callbacks, **kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu", max_steps=6, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(tmp_path), num_sanity_val_steps=0, enable_checkpointing=False,
    )
    options.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **options)


def _state(module: pl.LightningModule) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def _close(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_validation_sees_the_average_and_training_gets_its_weights_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, ema = _Regression(), EMA(decay=0.5)
    trainer = _trainer(tmp_path, [ema], val_check_interval=3, limit_val_batches=1)
    trainer.fit(model, _loader(), _loader(8))
    assert ema.updates == 6 and len(model.seen) == 2
    seen = {k: v for k, v in model.seen[-1].items() if v.is_floating_point()}
    assert _close(seen, ema.averaged)  # validation ran on the average ...
    assert not _close(_state(model), ema.averaged)  # ... and training kept its own weights
    assert not ema.swapped


def test_the_average_follows_the_update_rule(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, ema = _Regression(), EMA(decay=0.9, every_n_steps=2)
    snapshots: List[Dict[str, torch.Tensor]] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            snapshots.append(_state(pl_module))

    trainer = _trainer(tmp_path, [Record(), ema], limit_val_batches=0)
    initial = _state(model)
    trainer.fit(model, _loader())
    expected = initial
    for step, weights in enumerate(snapshots, start=1):
        if step % 2 == 0:
            expected = {k: 0.9 * expected[k] + 0.1 * weights[k] for k in expected}
    assert ema.updates == 3
    assert _close(expected, ema.averaged)


def test_accumulation_updates_once_per_optimizer_step(tmp_path: Path) -> None:
    model, ema = _Regression(), EMA(decay=0.5)
    _trainer(tmp_path, [ema], max_steps=3, accumulate_grad_batches=2, limit_val_batches=0).fit(model, _loader())
    assert ema.updates == 3


def test_checkpoint_holds_the_average_and_resume_restores_both(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, ema = _Regression(), EMA(decay=0.5)
    trainer = _trainer(tmp_path, [ema], limit_val_batches=0)
    trainer.fit(model, _loader())
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    training, averaged = _state(model), {k: v.clone() for k, v in ema.averaged.items()}

    checkpoint = torch.load(path, weights_only=False)
    saved = {k: v for k, v in checkpoint["state_dict"].items() if v.is_floating_point()}
    assert _close(saved, averaged)
    assert _close(checkpoint["ema_state"]["other"], training)
    assert checkpoint["ema_state"]["updates"] == 6

    # A plain load (inference) gets the average.
    plain = _Regression()
    plain.load_state_dict(checkpoint["state_dict"])
    assert _close(_state(plain), averaged)

    # Resuming with the callback: training restarts from its own weights, the average carries on.
    resumed_model, resumed = _Regression(), EMA(decay=0.5)
    seen: List[Dict[str, torch.Tensor]] = []

    class AtStart(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            seen.append(_state(pl_module))
            seen.append({k: v.clone() for k, v in resumed.averaged.items()})

    _trainer(tmp_path, [resumed, AtStart()], max_steps=8, limit_val_batches=0).fit(
        resumed_model, _loader(), ckpt_path=str(path)
    )
    assert _close(seen[0], training)
    assert _close(seen[1], averaged)
    assert resumed.updates == 8


def test_save_training_weights_keeps_the_average_in_ema_state(tmp_path: Path) -> None:
    model, ema = _Regression(), EMA(decay=0.5, save_averaged=False)
    trainer = _trainer(tmp_path, [ema], limit_val_batches=0)
    trainer.fit(model, _loader())
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    checkpoint = torch.load(tmp_path / "run.ckpt", weights_only=False)
    saved = {k: v for k, v in checkpoint["state_dict"].items() if v.is_floating_point()}
    assert _close(saved, _state(model))
    assert _close(checkpoint["ema_state"]["other"], ema.averaged)


def test_bad_decay_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="decay"):
        EMA(decay=1.0)


def test_one_line_adds_it_to_a_recipe(tmp_path: Path, monkeypatch) -> None:
    from musicfx.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["fit", "-c", str(REPO / "recipes/quickstart.yaml"), "-c", str(REPO / "recipes/trainer/cpu.yaml"),
            "--trainer.fast_dev_run=2", "--data.init_args.num_workers=0", "--data.init_args.batch_size=2",
            "--data.init_args.segment=0.5", "--trainer.callbacks+=musicfx.callbacks.EMA",
            "--trainer.callbacks.decay=0.9"]
    assert main(args) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_average_lives_on_the_gpu_and_is_saved_on_the_cpu(tmp_path: Path) -> None:
    model, ema = _Regression(), EMA(decay=0.5)
    trainer = _trainer(tmp_path, [ema], accelerator="gpu", devices=1, limit_val_batches=0)
    trainer.fit(model, _loader())
    assert all(value.is_cuda for value in ema.averaged.values())
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    checkpoint = torch.load(tmp_path / "run.ckpt", weights_only=False, map_location="cpu")
    assert all(not value.is_cuda for value in checkpoint["ema_state"]["other"].values())
