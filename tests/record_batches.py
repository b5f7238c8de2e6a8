"""A callback the DDP test injects (``--trainer.callbacks+=record_batches.RecordBatches``): each rank writes
a fingerprint of every training batch it sees, so the test can check that ranks draw different examples."""
from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl


class RecordBatches(pl.Callback):
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.fingerprints: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        clean = batch["clean"].float()
        self.fingerprints.append([round(float(x), 6) for x in clean.flatten(1).abs().sum(1)])

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"precision": str(trainer.precision), "world": trainer.world_size,
                                    "batches": self.fingerprints}))
