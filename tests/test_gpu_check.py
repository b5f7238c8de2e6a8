"""benchmarks/gpu_check.py: its CPU dry run (so the GPU check never rots), its verdicts and its bookkeeping.

The dry run trains two representative recipes (quickstart, separate/wavegan) and runs the precision
comparison on quickstart; the real check on a GPU runs every recipe.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import math
import re
import sys
from pathlib import Path
from typing import Dict

import lightning.pytorch as pl
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Dict:
    out = tmp_path_factory.mktemp("gpu_check")
    code = gpu_check.main(["--dry-run", "--out", str(out)])
    report = json.loads((out / "gpu_check.json").read_text())
    return {"code": code, "out": out, "report": report, "md": (out / "gpu_check.md").read_text()}


def _rows(report: Dict, part: str) -> list:
    return [row for row in report["rows"] if row["part"] == part]


def test_dry_run_passes_and_writes_every_part(dry_run) -> None:
    report = dry_run["report"]
    assert dry_run["code"] == 0, report["failures"]
    assert report["dry_run"] and report["failures"] == []
    assert {row["part"] for row in report["rows"]} == set(gpu_check.PARTS)
    # Written atomically: nothing but the two results is left in the folder.
    assert sorted(p.name for p in dry_run["out"].iterdir()) == ["gpu_check.json", "gpu_check.md"]
    for heading in ("recipe (bf16-mixed)", "model precision", "inference (stereo music)", "museval_sdr"):
        assert heading in dry_run["md"]


def test_dry_run_tests_part_counts_pytest_results(dry_run) -> None:
    (row,) = _rows(dry_run["report"], "tests")
    numbers = row["numbers"]
    assert row["status"] == "ok" and numbers["exit_code"] == 0
    # Without CUDA every gpu test is collected and skipped: collected, counted, none failed.
    assert numbers["tests"] >= 1 and numbers["failed"] == numbers["errors"] == 0
    assert numbers["passed"] + numbers["skipped"] == numbers["tests"]


def test_dry_run_recipe_rows_are_sane(dry_run) -> None:
    rows = _rows(dry_run["report"], "recipes")
    assert [row["name"] for row in rows] == list(gpu_check.DRY_RUN_RECIPES)
    for row in rows:
        n = row["numbers"]
        assert row["status"] == "ok", row
        assert n["precision"] == "bf16-mixed" and n["timed_steps"] == gpu_check.DRY.timed_steps
        assert 0.0 <= n["data_wait_fraction"] <= 1.0
        assert n["steps_per_sec"] > 0 and n["examples_per_sec"] == pytest.approx(n["steps_per_sec"] * n["batch_size"])
        assert n["nonfinite_loss_batches"] == n["nonfinite_grad_steps"] == 0 and n["parameters_finite"]
        # Autocast reached the heavy layers of both models.
        assert n["low_precision_share"] == 1.0 and n["peak_gpu_gib"] is None


def test_dry_run_precision_rows_compare_with_fp32(dry_run) -> None:
    rows = _rows(dry_run["report"], "precision")
    assert [row["numbers"]["precision"] for row in rows] == list(gpu_check.PRECISIONS)
    assert all(row["status"] == "ok" for row in rows)
    fp32, bf16, fp16 = (row["numbers"] for row in rows)
    assert fp32["speedup_vs_fp32"] == 1.0 and fp32["low_precision_share"] == 0.0
    assert bf16["speedup_vs_fp32"] == pytest.approx(fp32["step_ms"] / bf16["step_ms"])
    assert fp16["low_precision_share"] == 1.0  # bfloat16 on the CPU: Lightning's 16-mixed falls back to it there


def test_dry_run_inference_and_sdr_rows(dry_run) -> None:
    rows = _rows(dry_run["report"], "inference")
    assert [row["name"] for row in rows] == list(gpu_check.DRY_RUN_RECIPES)  # a denoiser and a separator
    for row in rows:
        n = row["numbers"]
        assert row["status"] == "ok" and n["audio_s"] == gpu_check.DRY.inference_seconds
        assert n["real_time_factor"] == pytest.approx(n["elapsed_s"] / n["audio_s"])
    assert [row["numbers"]["outputs"] for row in rows] == [1, 2]
    (sdr,) = _rows(dry_run["report"], "sdr")
    n = sdr["numbers"]
    assert sdr["status"] == "ok" and n["same_nan_windows"] and n["max_abs_diff_db"] == 0.0
    assert 5.0 < n["median_sdr_db"] < 15.0  # the estimates are built at about 10 dB


def test_discovery_finds_what_the_recipe_tests_find() -> None:
    spec = importlib.util.spec_from_file_location("recipe_tests", REPO / "tests" / "test_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = [p.relative_to(REPO / "recipes").with_suffix("").as_posix() for p in module.RECIPES]
    assert gpu_check.discover_recipes() == expected
    assert set(gpu_check.PRECISION_RECIPES) <= set(expected) and set(gpu_check.DRY_RUN_RECIPES) <= set(expected)


def test_a_failing_recipe_is_a_failed_row_and_the_rest_still_run(tmp_path, monkeypatch) -> None:
    build = gpu_check.cli_args

    def broken(name, *args, **kwargs):
        extra = ["--data.init_args.no_such_setting=1"] if name == "quickstart" else []
        return build(name, *args, **kwargs) + extra

    monkeypatch.setattr(gpu_check, "cli_args", broken)
    code = gpu_check.main(["--dry-run", "--parts", "inference", "sdr", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 1 and report["failures"] == ["quickstart"]
    statuses = {row["name"]: row["status"] for row in report["rows"]}
    assert statuses["quickstart"].startswith("FAIL: RuntimeError: the recipe did not parse")
    assert statuses["separate/wavegan"] == "ok" and statuses["4 stereo stems of 2 s"] == "ok"


def test_rows_past_the_time_budget_are_skipped_not_failed(tmp_path) -> None:
    code = gpu_check.main(["--dry-run", "--parts", "recipes", "sdr", "--budget", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0
    assert [row["status"] for row in report["rows"]] == ["skipped: out of the time budget"] * 3


def test_unknown_recipe_is_refused(tmp_path, capsys) -> None:
    assert gpu_check.main(["--dry-run", "--recipes", "separate/nope", "--out", str(tmp_path)]) == 2
    assert "separate/nope" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_the_real_check_needs_cuda(tmp_path, capsys) -> None:
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "--dry-run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "numbers, precision, verdict",
    [
        ({"nonfinite_loss_batches": 1, "nonfinite_grad_steps": 0}, "bf16-mixed", "FAIL: non-finite loss"),
        ({"nonfinite_loss_batches": 0, "nonfinite_grad_steps": 2}, "bf16-mixed", "FAIL: non-finite gradient"),
        ({"nonfinite_loss_batches": 0, "nonfinite_grad_steps": 2}, "16-mixed", "ok"),  # the scaler skips them
        ({"nonfinite_loss_batches": 0, "nonfinite_grad_steps": 0, "parameters_finite": False}, "32-true",
         "FAIL: non-finite parameters"),
        ({"nonfinite_loss_batches": 0, "nonfinite_grad_steps": 0, "timed_steps": 7}, "bf16-mixed", "partial: 7 of 30"),
    ],
)
def test_verdicts(numbers, precision, verdict) -> None:
    full = {"parameters_finite": True, "batches_without_loss": 0, "timed_steps": 30, **numbers}
    assert gpu_check._training_verdict(full, precision, 30).startswith(verdict)


class _Diverging(pl.LightningModule):
    """A loss that turns NaN from the third batch on."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch[0]).square().mean()
        return loss * math.nan if batch_idx >= 2 else loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_finite_probe_counts_nan_losses_and_gradients() -> None:
    probe = gpu_check.FiniteProbe()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(10, 4)), batch_size=2)
    trainer = pl.Trainer(accelerator="cpu", max_steps=5, logger=False, callbacks=[probe],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_Diverging(), data)
    assert probe.result() == {"nonfinite_loss_batches": 3, "nonfinite_grad_steps": 3, "batches_without_loss": 0}


def _skips_without_cuda(decorator: str) -> bool:
    """``skipif(not torch.cuda.is_available(), ...)`` or an alias of it (``@CUDA``, ``@requires_cuda()``)."""
    return "not torch.cuda.is_available()" in decorator or re.fullmatch(r"[\w.]*cuda\w*(\(\))?", decorator) is not None


def test_every_test_that_skips_without_cuda_carries_the_gpu_marker() -> None:
    """`pytest -m gpu` (and so the GPU check) must see every CUDA test."""
    unmarked = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.name.startswith("test_"):
                continue
            decorators = [ast.unparse(d).lower() for d in node.decorator_list]
            if any(_skips_without_cuda(d) for d in decorators) and "pytest.mark.gpu" not in decorators:
                unmarked.append(f"{path.name}::{node.name}")
    assert unmarked == []
