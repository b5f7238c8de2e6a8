"""The GPU check: everything one short GPU session should measure, in one process (at most 8 minutes on one
H100), so that whoever has a GPU for a few minutes answers all of it.

Parts (``--parts``, in this order):

* ``tests``: ``pytest -m gpu`` in a subprocess; pass/fail/skip counts.
* ``recipes``: every recipe in ``recipes/`` (found the way ``tests/test_recipes.py`` finds them) at its
  recipe size in bf16-mixed, built by the project's LightningCLI from ``-c recipe -c trainer/gpu.yaml -c
  trainer/bf16-mixed.yaml`` with its real datamodule, its default workers and its on-device synthesis:
  5 warm-up and 30 timed steps; steps/s, examples/s, peak GPU memory, the share of step time spent
  waiting for data (:class:`~musicfx.callbacks.DataWaitMonitor`, added by ``gpu.yaml``), the share of
  layer calls that really ran in bf16, and whether any loss or gradient was NaN or infinite.
* ``precision``: fp32 vs bf16-mixed vs 16-mixed step time for MusicECAN, Open-Unmix and BS-RoFormer.
* ``inference``: every denoise and separation recipe's model at recipe size (random weights: speed and
  memory do not depend on them) on 60 s of stereo music through the task's ``denoise``/``separate``
  (the inference engine's overlap-add): real-time factor and peak GPU memory.
* ``sdr``: :func:`musicfx.metrics.museval_sdr` on the GPU vs the CPU on 4 stereo stems of 5 minutes.

Every row has a time budget (the whole run stays under ``--budget`` seconds, 465 by default, so that the
process stays within 8 minutes); a failing row says why and the rest still run. The tables are printed
last; the full numbers go to ``OUT/gpu_check.json`` (rewritten atomically after every row, so a killed
run keeps what it measured) and the tables to ``OUT/gpu_check.md``. Exit status 1 on any failure or NaN.

``--dry-run`` runs the same code on the CPU at tiny sizes (the recipe tests' overrides, 1 warm-up and 1
timed step, 2 s of audio) on two representative recipes (``quickstart``, ``separate/wavegan``; the
precision comparison on ``quickstart``), in under a minute; ``tests/test_gpu_check.py`` runs it in the
default suite. ``--dry-run --recipes all`` rehearses every recipe (minutes on a laptop CPU).

    make gpu-check                                   # python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --dry-run
    python benchmarks/gpu_check.py --parts recipes --recipes separate/bs_roformer
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import lightning.pytorch as pl
import torch

# `common` beside this script, and musicfx from this checkout even where it is not installed (a GPU
# machine without a network).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

REPO = common.REPO
RECIPES = REPO / "recipes"
# Overlay folders hold partial configs that compose with a recipe (as in tests/test_recipes.py).
OVERLAY_FOLDERS = ("trainer", "logger", "data", "bleed")
GPU_OVERLAY = RECIPES / "trainer" / "gpu.yaml"
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
# The precision comparison: MusicECAN, Open-Unmix and BS-RoFormer at their recipes' sizes.
PRECISION_RECIPES = ("denoise/musicecan", "separate/open_unmix", "separate/bs_roformer")
# What --dry-run runs unless told otherwise: a denoiser (automatic optimization, STFT losses) and a
# separator trained adversarially (manual optimization, two optimizers), small enough for a minute.
DRY_RUN_RECIPES = ("quickstart", "separate/wavegan")
DRY_RUN_PRECISION_RECIPES = ("quickstart",)
PARTS = ("tests", "recipes", "precision", "inference", "sdr")
# Layers whose output dtype shows whether autocast reached them.
AUTOCAST_LAYERS = (
    torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
    torch.nn.LSTM, torch.nn.GRU, torch.nn.MultiheadAttention,
)
MUSIC_RATE = 44100
GIB = 2.0 ** 30


@dataclass(frozen=True)
class Plan:
    """Sizes and time budgets of one run: the real check on a GPU, or the dry run on the CPU.

    Args:
        device: ``"cuda"`` or ``"cpu"``.
        overrides: LightningCLI arguments added after the overlays (the dry run shrinks data here).
        warmup_steps, timed_steps: training batches per recipe row.
        precision_warmup, precision_steps: training batches per precision row.
        inference_seconds: length of the music the inference rows process.
        sdr_seconds: length of the stems of the SDR row.
        budget_s: the whole run, in seconds.
        part_budgets_s: each part's share of ``budget_s`` (time a part leaves unused goes to the next).
        recipe_cap_s: training time of one recipe or precision row at most (Lightning's ``max_time``).
        pytest_targets: what ``pytest -m gpu`` collects.
        torch_threads: intra-op threads while the check runs (``None``: torch's default). The dry run uses
            one: on a loaded CPU, more threads mostly spin.
    """

    device: str
    overrides: Tuple[str, ...]
    warmup_steps: int
    timed_steps: int
    precision_warmup: int
    precision_steps: int
    inference_seconds: float
    sdr_seconds: float
    budget_s: float
    part_budgets_s: Mapping[str, float]
    recipe_cap_s: float
    pytest_targets: Tuple[str, ...]
    torch_threads: Optional[int] = None


REAL = Plan(
    device="cuda", overrides=(), warmup_steps=5, timed_steps=30, precision_warmup=3, precision_steps=15,
    # 465 s from the start of the check, the rest of the 8 minutes for Python's start and the imports.
    inference_seconds=60.0, sdr_seconds=300.0, budget_s=465.0,
    part_budgets_s={"tests": 60.0, "recipes": 220.0, "precision": 85.0, "inference": 55.0, "sdr": 25.0},
    recipe_cap_s=25.0, pytest_targets=(),
)
# The recipe tests' overrides (tests/test_recipes.py), so the dry run builds exactly what they build.
DRY = Plan(
    device="cpu",
    overrides=(
        "--trainer.accelerator=cpu", "--data.init_args.num_workers=0", "--data.init_args.batch_size=2",
        "--data.init_args.segment=0.5",
    ),
    warmup_steps=1, timed_steps=1, precision_warmup=1, precision_steps=1, inference_seconds=2.0,
    sdr_seconds=2.0, budget_s=600.0,
    part_budgets_s={"tests": 60.0, "recipes": 360.0, "precision": 60.0, "inference": 60.0, "sdr": 60.0},
    recipe_cap_s=60.0, pytest_targets=("tests/test_metrics.py",), torch_threads=1,
)


# ------------------------------------------------------------------------------------------------ recipes
def discover_recipes() -> List[str]:
    """Every recipe in ``recipes/``, named by its path without ``.yaml`` (``separate/bs_roformer``)."""
    found = sorted(p for p in RECIPES.rglob("*.yaml") if p.parent.name not in OVERLAY_FOLDERS)
    return [p.relative_to(RECIPES).with_suffix("").as_posix() for p in found]


def recipe_path(name: str) -> Path:
    return RECIPES / f"{name}.yaml"


def recipe_task_class(name: str) -> type:
    """The LightningModule class a recipe names (``model.class_path``), imported, not built."""
    import importlib

    spec = common.load_recipe(recipe_path(name))
    module_name, _, class_name = spec["model"]["class_path"].rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def recipe_model_name(name: str) -> str:
    """The class name of a recipe's network (``model.init_args.model.class_path``), e.g. ``BSRoFormer``."""
    spec = common.load_recipe(recipe_path(name))
    return str(spec["model"]["init_args"]["model"]["class_path"]).rpartition(".")[2]


def cli_args(name: str, plan: Plan, precision: str, batches: Optional[int], max_seconds: Optional[float]) -> List[str]:
    """LightningCLI arguments (no subcommand) for a recipe on the plan's device in ``precision``.

    ``batches`` limits training to one epoch of that many batches (batches, not optimizer steps: a GAN
    steps two optimizers per batch); ``None`` builds the recipe without training settings.
    """
    if batches is not None and batches < 2:
        # The CLI reads limit_train_batches=1 as the float 1.0, which Lightning takes as "all batches".
        raise ValueError(f"train at least 2 batches (warm-up + timed), got {batches}")
    args = ["-c", str(recipe_path(name)), "-c", str(GPU_OVERLAY)]
    overlay = RECIPES / "trainer" / f"{precision}.yaml"
    args += ["-c", str(overlay)] if overlay.is_file() else [f"--trainer.precision={precision}"]
    args += list(plan.overrides)
    if batches is not None:
        args += [
            f"--trainer.limit_train_batches={batches}", "--trainer.max_epochs=1", "--trainer.max_steps=-1",
            "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        ]
    if max_seconds is not None:
        args.append(f"--trainer.max_time={_dhms(max_seconds)}")
    return args


def _dhms(seconds: float) -> str:
    """Lightning's ``max_time`` string, ``DD:HH:MM:SS``, at least one second."""
    total = max(1, int(seconds))
    return f"00:{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def build_cli(args: List[str]):
    """The trainer, model and datamodule exactly as ``musicfx fit`` builds them (``run=False``)."""
    from musicfx.cli import lightning_cli

    try:
        return lightning_cli(args, run=False)
    except SystemExit as error:  # jsonargparse prints the reason to stderr, then exits
        raise RuntimeError(f"the recipe did not parse (exit {error.code}; the reason is printed above)") from None


# ----------------------------------------------------------------------------------------------- probes
class FiniteProbe(pl.Callback):
    """Counts training batches whose loss, and optimizer steps whose gradient norm, were NaN or infinite.

    The counts stay on the device until :meth:`result`, so the probe adds no synchronisation to the steps.
    Lightning calls ``on_before_optimizer_step`` after unscaling, so under 16-mixed an infinite gradient
    is a step the loss scaler skips, not a failure.
    """

    def __init__(self) -> None:
        super().__init__()
        self.batches_without_loss = 0
        self._counts: Dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            self._add("grad_steps", ~torch.isfinite(torch.nn.utils.get_total_norm(grads)))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Manual optimization (the GAN) returns its loss the same way: {"loss": tensor}.
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            self._add("loss_batches", ~torch.isfinite(loss.detach()).all())
        else:
            self.batches_without_loss += 1

    def _add(self, name: str, bad: torch.Tensor) -> None:
        count = self._counts.get(name)
        self._counts[name] = bad.long() if count is None else count + bad.long()

    def result(self) -> Dict[str, int]:
        """``nonfinite_loss_batches``, ``nonfinite_grad_steps``, ``batches_without_loss``."""
        counts = {f"nonfinite_{name}": int(value.item()) for name, value in self._counts.items()}
        counts.setdefault("nonfinite_loss_batches", 0)
        counts.setdefault("nonfinite_grad_steps", 0)
        counts["batches_without_loss"] = self.batches_without_loss
        return counts


class DtypeProbe(pl.Callback):
    """Output dtypes of linear, convolution, recurrent and attention layers over one training batch (the
    first one after ``after_batches``): shows whether autocast really reached the model's heavy layers.

    Args:
        after_batches: training batches to let pass first (the warm-up).
    """

    def __init__(self, after_batches: int) -> None:
        super().__init__()
        self.after_batches = after_batches
        self.counts: Dict[str, int] = {}
        self._hooks: List[Any] = []
        self._seen = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._seen == self.after_batches:
            self._hooks = [
                module.register_forward_hook(self._record)
                for module in pl_module.modules() if isinstance(module, AUTOCAST_LAYERS)
            ]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._seen += 1
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _record(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        tensor = output[0] if isinstance(output, (tuple, list)) else output  # LSTM, attention: (output, state)
        if isinstance(tensor, torch.Tensor):
            name = str(tensor.dtype).replace("torch.", "")
            self.counts[name] = self.counts.get(name, 0) + 1

    def low_precision_share(self) -> Optional[float]:
        """Share of the recorded layer calls whose output was bfloat16 or float16 (Lightning's 16-mixed
        autocasts to bfloat16 on the CPU); ``None`` when nothing was recorded."""
        total = sum(self.counts.values())
        low = self.counts.get("bfloat16", 0) + self.counts.get("float16", 0)
        return low / total if total else None


# ------------------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    """One line of a table; ``status`` is ``ok``, ``FAIL: why`` or ``skipped: why``."""

    part: str
    name: str
    status: str = "ok"
    numbers: Dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None  # the traceback of a failure

    @property
    def failed(self) -> bool:
        return self.status.startswith("FAIL")


class Clock:
    """The run's time budget: each part ends at its cumulative share of the total, so time one part
    leaves unused goes to the next; nothing runs past the whole budget."""

    def __init__(self, plan: Plan, parts: Sequence[str]) -> None:
        self.start = time.perf_counter()
        self.plan = plan
        self._ends: Dict[str, float] = {}
        end = 0.0
        for part in PARTS:
            if part in parts:
                end += plan.part_budgets_s[part]
                self._ends[part] = min(end, plan.budget_s)

    def left(self, part: str) -> float:
        """Seconds left to ``part``."""
        return self._ends[part] - (time.perf_counter() - self.start)


def _device_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / GIB


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _failure(row: Row, error: BaseException) -> Row:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        first = "out of GPU memory"
    row.status = f"FAIL: {type(error).__name__}: {first}"[:160]
    row.error = "".join(traceback.format_exception(error))
    return row


# --------------------------------------------------------------------------------------------- training
def train_row(part: str, label: str, name: str, plan: Plan, precision: str, warmup: int, steps: int,
              max_seconds: float) -> Row:
    """Train recipe ``name`` for ``warmup + steps`` batches in ``precision`` and measure the last ``steps``."""
    from lightning.pytorch.callbacks import Checkpoint

    from musicfx.callbacks import DataWaitMonitor

    row = Row(part, label, numbers={"recipe": name, "precision": precision})
    device = torch.device(plan.device)
    cli = None
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch, contextlib.chdir(scratch):
            # In a scratch folder, the recipe's relative log and config paths land there and go with it.
            cli = build_cli(cli_args(name, plan, precision, warmup + steps, max_seconds))
            trainer, model = cli.trainer, cli.model
            monitors = [c for c in trainer.callbacks if isinstance(c, DataWaitMonitor)]
            if not monitors:
                raise RuntimeError(f"{GPU_OVERLAY.relative_to(REPO)} did not add a DataWaitMonitor")
            monitor = monitors[0]
            monitor.warmup_steps = warmup
            # Checkpoints would only cost time and disk here (a 35 M-parameter Adam state is 0.4 GB).
            trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, Checkpoint)]
            finite, dtypes = FiniteProbe(), DtypeProbe(after_batches=warmup)
            trainer.callbacks += [finite, dtypes]
            row.numbers["parameters_m"] = sum(p.numel() for p in model.parameters()) / 1e6
            row.numbers["batch_size"] = getattr(cli.datamodule, "batch_size", None)
            row.numbers["num_workers"] = getattr(cli.datamodule, "num_workers", None)
            _device_memory_reset(device)
            started = time.perf_counter()
            trainer.fit(model, datamodule=cli.datamodule)
            row.numbers["fit_s"] = time.perf_counter() - started
            row.numbers["peak_gpu_gib"] = _peak_gib(device)
            totals = monitor.totals()
            row.numbers["timed_steps"] = int(totals["steps"])
            if totals["steps"] > 0:
                row.numbers.update(
                    steps_per_sec=totals["steps_per_sec"], examples_per_sec=totals["examples_per_sec"],
                    data_wait_fraction=totals["wait_fraction"], step_ms=1000.0 / totals["steps_per_sec"],
                )
            row.numbers.update(finite.result())
            row.numbers["layer_dtypes"] = dict(dtypes.counts)
            row.numbers["low_precision_share"] = dtypes.low_precision_share()
            row.numbers["parameters_finite"] = all(bool(torch.isfinite(p).all()) for p in model.parameters())
            row.status = _training_verdict(row.numbers, precision, steps)
    except Exception as error:  # one recipe failing must not stop the others
        _failure(row, error)
    finally:
        del cli
        _release(device)
    return row


def _training_verdict(numbers: Mapping[str, Any], precision: str, steps: int) -> str:
    """``ok``, ``FAIL: ...`` for NaN/inf, or a note when the time budget cut the timed steps short."""
    if numbers["nonfinite_loss_batches"]:
        return f"FAIL: non-finite loss in {numbers['nonfinite_loss_batches']} batches"
    # Under 16-mixed an infinite gradient is a step the loss scaler skips (and then lowers its scale).
    if numbers["nonfinite_grad_steps"] and precision != "16-mixed":
        return f"FAIL: non-finite gradient in {numbers['nonfinite_grad_steps']} steps"
    if not numbers["parameters_finite"]:
        return "FAIL: non-finite parameters after training"
    if numbers["batches_without_loss"]:
        return f"FAIL: training_step returned no loss in {numbers['batches_without_loss']} batches"
    if numbers["timed_steps"] < steps:
        return f"partial: {numbers['timed_steps']} of {steps} timed steps in the time budget"
    return "ok"


def run_recipes(plan: Plan, names: Sequence[str], clock: Clock, record: Callable[[Row], None]) -> List[Row]:
    rows = []
    for name in names:
        # Building, data setup and teardown come on top of the training time that max_time caps.
        if clock.left("recipes") < 10:
            row = Row("recipes", name, status="skipped: out of the time budget")
        else:
            cap = min(plan.recipe_cap_s, clock.left("recipes") - 5)
            row = train_row("recipes", name, name, plan, "bf16-mixed", plan.warmup_steps, plan.timed_steps, cap)
        rows.append(row)
        record(row)
    return rows


def run_precision(plan: Plan, names: Sequence[str], clock: Clock, record: Callable[[Row], None]) -> List[Row]:
    rows = []
    for name in names:
        fp32_ms = None
        model = recipe_model_name(name)
        for precision in PRECISIONS:
            label = f"{model} ({name}) {precision}"
            if clock.left("precision") < 10:
                row = Row("precision", label, status="skipped: out of the time budget")
            else:
                cap = min(plan.recipe_cap_s, clock.left("precision") - 5)
                row = train_row("precision", label, name, plan, precision, plan.precision_warmup,
                                plan.precision_steps, cap)
            step_ms = row.numbers.get("step_ms")
            if precision == "32-true":
                fp32_ms = step_ms
            row.numbers["speedup_vs_fp32"] = fp32_ms / step_ms if fp32_ms and step_ms else None
            rows.append(row)
            record(row)
    return rows


# -------------------------------------------------------------------------------------------- inference
def stereo_music(seconds: float, channels: int = 2) -> torch.Tensor:
    """``(channels, seconds * 44100)`` of the built-in generator's music (no file needed)."""
    from musicfx.data.sources import GeneratedMusic

    source = GeneratedMusic(num_items=1, duration=seconds, sample_rate=MUSIC_RATE, channels=channels, seed=12)
    return source.read(0, 0, int(round(seconds * MUSIC_RATE)))[0]  # (sources = the mix, channels, time)


def inference_row(name: str, plan: Plan, music: torch.Tensor) -> Row:
    """Real-time factor and peak GPU memory of recipe ``name``'s model on ``music`` (random weights)."""
    row = Row("inference", name)
    device = torch.device(plan.device)
    cli = None
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch, contextlib.chdir(scratch):
            cli = build_cli(cli_args(name, plan, "32-true", None, None))
        task = cli.model.to(device).eval()
        run = task.denoise if hasattr(task, "denoise") else task.separate
        seconds = music.shape[-1] / MUSIC_RATE
        run(music[:, : int(min(seconds, 12.0) * MUSIC_RATE)], MUSIC_RATE)  # warm-up: kernels, allocator
        _device_memory_reset(device)
        started = time.perf_counter()
        out = run(music, MUSIC_RATE)
        common.synchronize(device)
        elapsed = time.perf_counter() - started
        outputs = list(out.values()) if isinstance(out, Mapping) else [out]
        row.numbers.update(
            audio_s=seconds, elapsed_s=elapsed, real_time_factor=elapsed / seconds, times_real_time=seconds / elapsed,
            peak_gpu_gib=_peak_gib(device), outputs=len(outputs), model_sample_rate=task.sample_rate,
        )
        if not all(bool(torch.isfinite(o).all()) and o.shape[-1] == music.shape[-1] for o in outputs):
            row.status = "FAIL: output not finite or not the input's length"
    except Exception as error:
        _failure(row, error)
    finally:
        del cli
        _release(device)
    return row


def run_inference(plan: Plan, names: Sequence[str], clock: Clock, record: Callable[[Row], None]) -> List[Row]:
    rows = []
    wanted = [n for n in names if _infers(n)]
    music = stereo_music(plan.inference_seconds) if wanted else None
    for name in wanted:
        if clock.left("inference") < 5:
            row = Row("inference", name, status="skipped: out of the time budget")
        else:
            row = inference_row(name, plan, music)
        rows.append(row)
        record(row)
    return rows


def _infers(name: str) -> bool:
    """Whether a recipe trains a denoiser or a separator (a task with ``denoise`` or ``separate``)."""
    try:
        cls = recipe_task_class(name)
    except Exception:  # a recipe that does not import shows up as a failing recipe row instead
        return False
    return hasattr(cls, "denoise") or hasattr(cls, "separate")


# -------------------------------------------------------------------------------------------------- SDR
def sdr_stems(seconds: float, sources: int = 4, channels: int = 2) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(estimates, references)``, each ``(sources, channels, time)`` at 44.1 kHz: noise with a slow
    loudness envelope, estimates at about 10 dB SDR, and one silent second so NaN windows are compared too."""
    generator = torch.Generator().manual_seed(0)
    frames = int(round(seconds * MUSIC_RATE))
    envelope = torch.rand(sources, 1, max(2, int(seconds)) + 1, generator=generator)
    envelope = torch.nn.functional.interpolate(envelope, size=frames, mode="linear", align_corners=False)
    references = torch.randn(sources, channels, frames, generator=generator) * envelope
    references[0, :, : min(frames, MUSIC_RATE)] = 0.0
    estimates = references + 0.3 * torch.randn(sources, channels, frames, generator=generator) * envelope
    return estimates, references


def run_sdr(plan: Plan, clock: Clock, record: Callable[[Row], None]) -> List[Row]:
    from musicfx.metrics import museval_sdr

    row = Row("sdr", f"4 stereo stems of {plan.sdr_seconds:g} s")
    device = torch.device(plan.device)
    try:
        if clock.left("sdr") < 3:
            row.status = "skipped: out of the time budget"
        else:
            estimates, references = sdr_stems(plan.sdr_seconds)
            started = time.perf_counter()
            cpu = museval_sdr(estimates, references, MUSIC_RATE)
            cpu_s = time.perf_counter() - started
            est, ref = estimates.to(device), references.to(device)
            museval_sdr(est[..., :MUSIC_RATE * 2], ref[..., :MUSIC_RATE * 2], MUSIC_RATE)  # warm-up
            _device_memory_reset(device)
            started = time.perf_counter()
            on_device = museval_sdr(est, ref, MUSIC_RATE)
            common.synchronize(device)
            device_s = time.perf_counter() - started
            on_device = on_device.cpu()
            same_nan = bool(torch.equal(cpu.isnan(), on_device.isnan()))
            finite = cpu.isfinite() & on_device.isfinite()
            max_diff = float((cpu[finite] - on_device[finite]).abs().max()) if finite.any() else None
            row.numbers.update(
                cpu_s=cpu_s, device_s=device_s, speedup=cpu_s / device_s if device_s > 0 else None,
                max_abs_diff_db=max_diff, same_nan_windows=same_nan, windows=int(cpu.shape[-1]),
                median_sdr_db=float(cpu.nanmedian()), peak_gpu_gib=_peak_gib(device),
            )
            if not same_nan or max_diff is None or max_diff > 1e-6:
                row.status = f"FAIL: device and CPU disagree (max |diff| {max_diff} dB, same NaNs: {same_nan})"
    except Exception as error:
        _failure(row, error)
    finally:
        _release(device)
    record(row)
    return [row]


# ------------------------------------------------------------------------------------------------ tests
def run_tests(plan: Plan, clock: Clock, record: Callable[[Row], None]) -> List[Row]:
    """``pytest -m gpu`` in a subprocess, counted from its JUnit XML report."""
    row = Row("tests", "pytest -m gpu " + " ".join(plan.pytest_targets))
    timeout = max(5.0, clock.left("tests"))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        report = Path(scratch) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                   f"--junitxml={report}", *plan.pytest_targets]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        try:
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
            row.numbers.update(_junit_counts(report))
            row.numbers["exit_code"] = done.returncode
            row.numbers["output_tail"] = (done.stdout + done.stderr)[-4000:]
            bad = row.numbers["failed"] + row.numbers["errors"]
            # Exit 5: nothing collected. Anything else than 0 with no failure counted is a crash.
            if bad or done.returncode not in (0, 5):
                row.status = f"FAIL: {bad} failed, pytest exit {done.returncode}"
        except subprocess.TimeoutExpired:
            row.status = f"FAIL: pytest -m gpu ran past {timeout:.0f} s"
        except (OSError, ElementTree.ParseError) as error:
            _failure(row, error)
    record(row)
    return [row]


def _junit_counts(report: Path) -> Dict[str, Any]:
    root = ElementTree.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    count = lambda key: sum(int(s.get(key, 0)) for s in suites)  # noqa: E731
    failing = [
        f"{case.get('classname')}::{case.get('name')}"
        for suite in suites for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    tests, failed, errors, skipped = count("tests"), count("failures"), count("errors"), count("skipped")
    return {"tests": tests, "passed": tests - failed - errors - skipped, "failed": failed, "errors": errors,
            "skipped": skipped, "failing": failing}


# ----------------------------------------------------------------------------------------------- report
def tables(rows: Sequence[Row]) -> str:
    """The markdown tables of all parts that ran."""
    by_part: Dict[str, List[Row]] = {}
    for row in rows:
        by_part.setdefault(row.part, []).append(row)
    out: List[str] = []
    f, pct = common.fmt, lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    for row in by_part.get("tests", []):
        n = row.numbers
        out.append(f"`{row.name.strip()}`: {n.get('passed', '-')} passed, {n.get('failed', '-')} failed, "
                   f"{n.get('errors', '-')} errors, {n.get('skipped', '-')} skipped ({row.status})")
    if "recipes" in by_part:
        out.append(common.markdown_table(
            ["recipe (bf16-mixed)", "steps/s", "examples/s", "peak GPU GiB", "data wait", "bf16 layers",
             "status"],
            [[r.name, f(r.numbers.get("steps_per_sec")), f(r.numbers.get("examples_per_sec"), 1),
              f(r.numbers.get("peak_gpu_gib")), pct(r.numbers.get("data_wait_fraction")),
              pct(r.numbers.get("low_precision_share")), r.status] for r in by_part["recipes"]],
        ))
    if "precision" in by_part:
        out.append(common.markdown_table(
            ["model precision", "ms/step", "x fp32", "peak GPU GiB", "low-precision layers", "status"],
            [[r.name, f(r.numbers.get("step_ms"), 1), f(r.numbers.get("speedup_vs_fp32")),
              f(r.numbers.get("peak_gpu_gib")), pct(r.numbers.get("low_precision_share")), r.status]
             for r in by_part["precision"]],
        ))
    if "inference" in by_part:
        out.append(common.markdown_table(
            ["inference (stereo music)", "audio s", "real-time factor", "x real time", "peak GPU GiB", "status"],
            [[r.name, f(r.numbers.get("audio_s"), 0), f(r.numbers.get("real_time_factor"), 4),
              f(r.numbers.get("times_real_time"), 1), f(r.numbers.get("peak_gpu_gib")), r.status]
             for r in by_part["inference"]],
        ))
    if "sdr" in by_part:
        out.append(common.markdown_table(
            ["museval_sdr", "CPU s", "device s", "speedup", "max abs diff dB", "status"],
            [[r.name, f(r.numbers.get("cpu_s")), f(r.numbers.get("device_s"), 3), f(r.numbers.get("speedup"), 1),
              "-" if r.numbers.get("max_abs_diff_db") is None else f"{r.numbers['max_abs_diff_db']:.1e}", r.status]
             for r in by_part["sdr"]],
        ))
    return "\n\n".join(out)


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` to ``path`` through a temporary file beside it and a rename."""
    from musicfx.audio.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as stream:
        json.dump(payload, stream, indent=2, default=_json_default, allow_nan=False)


def write_text_atomic(path: Path, text: str) -> None:
    from musicfx.audio.io import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN and infinities as strings: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (what the test suite runs)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu_check",
                        help="folder of gpu_check.json and gpu_check.md (default outputs/gpu_check)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default all)")
    parser.add_argument("--recipes", nargs="+", metavar="NAME",
                        help="recipes to train and run, e.g. separate/bs_roformer, or `all` (default: all;\n"
                        f"dry run: {' '.join(DRY_RUN_RECIPES)})")
    parser.add_argument("--precision-recipes", nargs="+", metavar="NAME",
                        help=f"recipes of the precision comparison (default: {' '.join(PRECISION_RECIPES)};\n"
                        f"dry run: {' '.join(DRY_RUN_PRECISION_RECIPES)})")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 465; dry run 600)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    plan = DRY if args.dry_run else REAL
    if args.budget is not None:
        scale = args.budget / plan.budget_s
        plan = Plan(**{**asdict(plan), "budget_s": args.budget,
                       "part_budgets_s": {k: v * scale for k, v in plan.part_budgets_s.items()}})
    if plan.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA GPU here; `--dry-run` rehearses the check on the CPU", file=sys.stderr)
        return 2
    known = discover_recipes()
    names = list(args.recipes or (DRY_RUN_RECIPES if args.dry_run else ["all"]))
    names = known if names == ["all"] else names
    precision_names = list(args.precision_recipes or (DRY_RUN_PRECISION_RECIPES if args.dry_run else PRECISION_RECIPES))
    unknown = [n for n in names + precision_names if n not in known]
    if unknown:
        print(f"gpu_check: error: unknown recipes {unknown}; known: {known}", file=sys.stderr)
        return 2
    # Lightning announces its accelerators once per Trainer, dozens of times here (its import, at the
    # top, set these loggers' level: lowering it now sticks).
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in quiet]
    threads = torch.get_num_threads()
    try:
        for logger in quiet:
            logger.setLevel(logging.WARNING)
        if plan.torch_threads is not None:
            torch.set_num_threads(plan.torch_threads)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            return _run(args, plan, names, precision_names)
    finally:
        torch.set_num_threads(threads)
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def _run(args: argparse.Namespace, plan: Plan, names: List[str], precision_names: List[str]) -> int:
    clock = Clock(plan, args.parts)
    info = common.machine_info()
    rows: List[Row] = []
    out_json = args.out / "gpu_check.json"

    def payload() -> Dict[str, Any]:
        return _clean({
            "machine": info, "dry_run": args.dry_run, "plan": asdict(plan), "recipes": names,
            "precision_recipes": precision_names,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "elapsed_s": time.perf_counter() - clock.start,
            "failures": [r.name for r in rows if r.failed],
            "rows": [asdict(r) for r in rows],
        })

    def record(row: Row) -> None:
        rows.append(row)
        print(f"[{time.perf_counter() - clock.start:6.1f} s] {row.part}: {row.name}: {row.status}", file=sys.stderr,
              flush=True)
        write_json_atomic(out_json, payload())

    print(common.machine_line(info), file=sys.stderr)
    for part in PARTS:
        if part not in args.parts:
            continue
        if part == "tests":
            run_tests(plan, clock, record)
        elif part == "recipes":
            run_recipes(plan, names, clock, record)
        elif part == "precision":
            run_precision(plan, precision_names, clock, record)
        elif part == "inference":
            run_inference(plan, names, clock, record)
        elif part == "sdr":
            run_sdr(plan, clock, record)
    write_json_atomic(out_json, payload())
    text = f"{common.machine_line(info)}\n\n{tables(rows)}\n"
    write_text_atomic(args.out / "gpu_check.md", text)
    print(text)
    failures = [r for r in rows if r.failed]
    if failures:
        print(f"gpu_check: {len(failures)} failed: {', '.join(r.name for r in failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
