"""A resumed run continues the data stream: it draws the examples the uninterrupted run would have drawn next."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional

import lightning.pytorch as pl
import torch

from musicfx.callbacks import LastCheckpoint
from musicfx.data.sampling import ExampleSampler, ResumableLoader
from musicfx.tasks.denoise import DenoiseData


class _Probe(pl.LightningModule):
    """Trains one scalar and records a fingerprint of every clean chunk it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: List[List[float]] = []

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        self.seen.append([round(float(x), 5) for x in batch["clean"].flatten(1).abs().sum(1)])
        return self.weight * batch["clean"].mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _data() -> DenoiseData:
    # 4 batches per epoch, so the runs below cross an epoch boundary.
    return DenoiseData(sample_rate=8000, segment=0.1, batch_size=2, num_workers=0, train_examples=8,
                       generated_items=3, generated_duration=0.5)


def _fit(max_steps: int, root: Path, ckpt_path: Optional[str] = None) -> List[List[float]]:
    probe = _Probe()
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=max_steps, limit_val_batches=0, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(root),
        callbacks=[LastCheckpoint(every_n_train_steps=1000)],
    )
    trainer.fit(probe, datamodule=_data(), ckpt_path=ckpt_path)
    return probe.seen


def test_a_resumed_run_draws_what_the_uninterrupted_run_draws_next(tmp_path: Path) -> None:
    whole = _fit(7, tmp_path / "whole")
    assert len(whole) == 7 and len({tuple(batch) for batch in whole}) == 7  # distinct examples throughout
    first = _fit(3, tmp_path / "split")  # stops mid-epoch; LastCheckpoint saves step 3
    assert first == whole[:3]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rest = _fit(7, tmp_path / "split", ckpt_path=str(tmp_path / "split/checkpoints/last.ckpt"))
    assert rest == whole[3:]  # not the epoch's first examples again
    assert not [w for w in caught if "not resumable" in str(w.message)]


def test_loader_state_counts_consumed_batches_and_continues_the_stream() -> None:
    data = _data()
    data.setup("fit")
    loader = data.train_dataloader()
    assert isinstance(loader, ResumableLoader) and isinstance(loader.sampler, ExampleSampler)
    loader.sampler.set_epoch(1)
    seeds = [batch["seed"].tolist() for batch in loader]  # epoch 1: ids 8 .. 15
    for _ in range(3):
        loader.consume()
    assert loader.state_dict() == {"position": 8 + 3 * 2}
    fresh = _data()
    fresh.setup("fit")
    resumed = fresh.train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    resumed.sampler.set_epoch(5)  # whatever epoch Lightning counts, the stream continues
    first_pass = [batch["seed"].tolist() for batch in resumed]
    assert first_pass[0] == seeds[3] and len(first_pass) == 4  # ids 14, 15, then epoch 2's 16 .. 21
    for _ in range(2):
        resumed.consume()
    iter(resumed)  # the next pass starts after what the model used
    assert resumed.sampler.start() == 14 + 2 * 2 and list(resumed.sampler)[:2] == [18, 19]
    assert list(ExampleSampler(8, num_replicas=2, rank=1))[:2] == [1, 3]
