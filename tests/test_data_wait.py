"""DataWaitMonitor: the share of training time spent waiting for batches, and examples per second."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers.logger import Logger
from torch.utils.data import DataLoader, Dataset

from musicfx.callbacks import DataWaitMonitor

REPO = Path(__file__).resolve().parents[1]
BATCH = 4


class _SlowData(Dataset):
    """Examples that take ``delay`` seconds each to produce (in the main process: num_workers=0)."""

    def __init__(self, size: int, delay: float) -> None:
        self.size, self.delay = size, delay

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        time.sleep(self.delay)
        return {"x": torch.randn(8), "y": torch.randn(1)}


class _SlowStep(pl.LightningModule):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.delay = delay

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        time.sleep(self.delay)
        return torch.nn.functional.mse_loss(self.layer(batch["x"]), batch["y"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _SlowValidation(_SlowStep):
    def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> None:
        time.sleep(0.05)


class _ListLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.logged: List[Dict[str, float]] = []

    @property
    def name(self) -> str:
        return "list"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        self.logged.append(dict(metrics))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def _fit(data_delay: float, step_delay: float, steps: int = 9) -> tuple:
    monitor = DataWaitMonitor(logging_interval=3, warmup_steps=2)
    logger = _ListLogger()
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=steps, logger=logger, callbacks=[monitor], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, log_every_n_steps=3,
    )
    loader = DataLoader(_SlowData(BATCH * steps, data_delay / BATCH), batch_size=BATCH, num_workers=0)
    trainer.fit(_SlowStep(step_delay), loader)
    waits = [m for m in logger.logged if "perf/data_wait_fraction" in m]
    return monitor.totals(), waits


def test_slow_data_shows_as_waiting() -> None:
    totals, logged = _fit(data_delay=0.03, step_delay=0.0)
    # 9 steps, 2 warm-up: 7 measured, logged after 3 and 6 of them.
    assert len(logged) == 2 and totals["steps"] == 7 and totals["examples"] == 7 * BATCH
    for metrics in logged:
        assert 0.5 < metrics["perf/data_wait_fraction"] <= 1.0
        assert metrics["perf/examples_per_sec"] > 0
    assert totals["wait_fraction"] > 0.5
    # A batch costs at least the 30 ms of loading, so no more than ~33 steps/s.
    assert 0 < totals["steps_per_sec"] < 1 / 0.03
    assert totals["examples_per_sec"] == pytest.approx(totals["steps_per_sec"] * BATCH)


def test_slow_steps_show_as_computing() -> None:
    totals, logged = _fit(data_delay=0.0, step_delay=0.03)
    assert len(logged) == 2
    for metrics in logged:
        assert 0.0 <= metrics["perf/data_wait_fraction"] < 0.5
        assert metrics["perf/examples_per_sec"] > 0
    assert totals["wait_fraction"] < 0.5 and 0 < totals["steps_per_sec"] < 1 / 0.03


def test_validation_between_batches_is_not_counted_as_waiting() -> None:
    monitor = DataWaitMonitor(logging_interval=3, warmup_steps=0)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=8, logger=False, callbacks=[monitor], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, val_check_interval=2, limit_val_batches=2,
        num_sanity_val_steps=0,
    )
    train = DataLoader(_SlowData(BATCH * 8, 0.0), batch_size=BATCH)
    val = DataLoader(_SlowData(BATCH * 2, 0.0), batch_size=BATCH)
    trainer.fit(_SlowValidation(0.02), train, val)
    # Four validations of 0.1 s each between 8 steps of 20 ms: counted as waiting, they would dominate.
    assert monitor.totals()["steps"] == 8 and monitor.totals()["wait_fraction"] < 0.3


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="logging_interval"):
        DataWaitMonitor(logging_interval=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        DataWaitMonitor(warmup_steps=-1)


def test_gpu_overlay_appends_the_monitor_to_a_recipes_callbacks(capsys) -> None:
    from musicfx.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(REPO / "recipes/denoise/musicecan.yaml"), "-c", str(REPO / "recipes/trainer/gpu.yaml"),
              "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    # The recipe's own callbacks stay, the monitor comes after them.
    assert printed.index("musicfx.callbacks.LastCheckpoint") < printed.index("musicfx.callbacks.DataWaitMonitor")
    assert "LearningRateMonitor" in printed
