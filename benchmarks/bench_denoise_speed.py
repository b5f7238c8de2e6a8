"""Speed and memory of the denoise task, measured in one run: data pipeline, training, inference, memory.

Four sections (``--only`` picks some):

* **pipeline**: synthesized training examples per second through the real pipeline -- the
  :class:`~musicfx.tasks.denoise.DenoiseData` train dataloader (built-in generator, its workers) and the
  batched scene synthesis of ``on_after_batch_transfer`` on the device -- with the quickstart recipe's
  settings and with the full recipe's (44.1 kHz, 4 s examples);
* **training**: optimizer steps per second of :class:`~musicfx.tasks.denoise.DenoiseTask` under a Lightning
  ``Trainer`` on one fixed batch, for the quickstart MusicECAN and the default one (CUDA: bf16-mixed);
* **inference**: real-time factor (processing time / audio duration) of ``process_file`` on a stereo
  44.1 kHz file, for both models (random weights: speed does not depend on them) and the spectral gate;
* **memory**: peak resident memory of ``musicfx denoise`` on a 10 s and a 10 min file, each case in its
  own process, to show that it does not grow with the length of the recording.

Run::

    python benchmarks/bench_denoise_speed.py [--only pipeline training inference memory] [--json OUT]
    python benchmarks/bench_denoise_speed.py --quick      # seconds: a smoke run with tiny sizes
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import torch

from common import (
    PEAK_RSS_PROBE,
    DEFAULT_RECIPE,
    QUICKSTART_RECIPE,
    best_time,
    fmt,
    instantiate,
    load_recipe,
    machine_info,
    machine_line,
    markdown_table,
    recipe_data_args,
    recipe_format,
    recipe_model,
    save_untrained_checkpoint,
    synchronize,
    usable_cores,
)

SECTIONS = ("pipeline", "training", "inference", "memory")
RATE = 44100


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each section does; ``--quick`` shrinks all of it."""

    pipeline_batches: int = 20
    pipeline_segment_scale: float = 1.0  # multiplies each recipe's example length
    pipeline_workers: Optional[int] = None  # None: the recipe's, capped at the usable cores
    pipeline_batch: Optional[int] = None  # None: the recipe's
    train_steps: int = 10
    train_warmup: int = 2
    quickstart_cpu_batch: Optional[int] = None  # None: the recipe's
    default_cpu_batch: int = 2  # the recipe's 16 x 4 s takes minutes per step on a small CPU
    train_segment_scale: float = 1.0
    inference_seconds: float = 60.0
    inference_segment: float = 10.0  # seconds per model call, the CLI's default
    memory_seconds: Sequence[float] = (10.0, 60.0, 600.0)
    memory_methods: Sequence[str] = ("model", "spectral-gate")


QUICK = Sizes(
    pipeline_batches=2, pipeline_segment_scale=0.25, pipeline_workers=0, pipeline_batch=2, train_steps=2,
    train_warmup=1, quickstart_cpu_batch=2, default_cpu_batch=1, train_segment_scale=0.125, inference_seconds=2.0,
    inference_segment=1.0,
    memory_seconds=(1.0, 4.0), memory_methods=("spectral-gate",),
)


def _devices(names: str) -> List[torch.device]:
    devices = []
    for name in names.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            print("(cuda not available: CPU only)")
            continue
        devices.append(torch.device(name))
    return devices


def _to(batch: Mapping[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


# ---------------------------------------------------------------------------------------------- pipeline
def bench_pipeline(recipe: Mapping[str, Any], device: torch.device, sizes: Sizes) -> Dict[str, float]:
    """Examples per second of the train dataloader + on-device synthesis, steady state, and of each part.

    The first batch (worker start-up) is timed on its own and left out of the rates. The synthesis alone is
    re-timed on kept batches once the workers have stopped: timed inside the loop it would also measure
    the workers competing for the same cores.
    """
    from musicfx.tasks.denoise import DenoiseData

    args = recipe_data_args(recipe)
    args["segment"] = args.get("segment", 2.0) * sizes.pipeline_segment_scale
    workers = args.get("num_workers", 2) if sizes.pipeline_workers is None else sizes.pipeline_workers
    args["num_workers"] = min(workers, usable_cores())
    if sizes.pipeline_batch:
        args["batch_size"] = sizes.pipeline_batch
    data = DenoiseData(**args)
    data.setup("fit")
    loader = data.train_dataloader()
    iterator = iter(loader)
    start = time.perf_counter()
    data.on_after_batch_transfer(_to(next(iterator), device), 0)
    synchronize(device)
    first_batch = time.perf_counter() - start
    kept: List[Dict[str, torch.Tensor]] = []
    start = time.perf_counter()
    for index in range(sizes.pipeline_batches):
        batch = _to(next(iterator), device)
        data.on_after_batch_transfer(batch, 0)
        if index >= sizes.pipeline_batches - 3:
            kept.append(batch)
    synchronize(device)
    total = time.perf_counter() - start
    del iterator, loader  # stops the workers before the synthesis is timed alone
    batch_size = kept[0]["clean"].shape[0]
    synthesis = best_time(lambda: [data.on_after_batch_transfer(dict(b), 0) for b in kept], device, repeats=2)
    examples = sizes.pipeline_batches * batch_size
    seconds = data.segment_frames / data.sample_rate
    return {
        "sample_rate": data.sample_rate, "segment_s": seconds, "batch_size": batch_size,
        "workers": args["num_workers"], "first_batch_s": first_batch, "examples_per_s": examples / total,
        "x_real_time": examples * seconds / total,
        "synthesis_examples_per_s": len(kept) * batch_size / synthesis,
    }


# ---------------------------------------------------------------------------------------------- training
class _StepTimer:
    """Lightning callback: the wall-clock time at the end of every training batch (device synchronized)."""

    def __init__(self, device: torch.device) -> None:
        import lightning.pytorch as pl

        self.device = device
        self.ends: List[float] = []
        timer = self

        class Callback(pl.Callback):
            def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
                synchronize(timer.device)
                timer.ends.append(time.perf_counter())

        self.callback = Callback()


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up chatter (device summary, tips, known warnings) for a table-printing script."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            warnings.filterwarnings("ignore", message=".*validation_step.*val_dataloader.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        logger.setLevel(level)


def _task(recipe: Mapping[str, Any], model: torch.nn.Module):
    """A DenoiseTask with the recipe's loss, optimizer and settings (no scheduler: it costs nothing)."""
    from musicfx.tasks.denoise import DenoiseTask

    spec = dict(recipe["model"]["init_args"])
    optimizer = spec.get("optimizer")
    kwargs: Dict[str, Any] = {
        "model": model,
        "loss": instantiate(spec["loss"]) if "loss" in spec else None,
        "sample_rate": spec.get("sample_rate"),  # None: the network declares it
        "channels": spec.get("channels"),
        "log_examples": 0,
    }
    if "intermediate_weight" in spec:
        kwargs["intermediate_weight"] = spec["intermediate_weight"]
    if optimizer is not None:
        module_name, _, class_name = optimizer["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        kwargs["optimizer"] = functools.partial(cls, **(optimizer.get("init_args") or {}))
    return DenoiseTask(**kwargs)


def fixed_batch(recipe: Mapping[str, Any], batch_size: int, segment_scale: float) -> Dict[str, torch.Tensor]:
    """One real training batch (built-in music + synthesized noise), on the CPU."""
    from musicfx.tasks.denoise import DenoiseData

    args = recipe_data_args(recipe)
    args.update(batch_size=batch_size, num_workers=0, segment=args.get("segment", 2.0) * segment_scale)
    data = DenoiseData(**args)
    data.setup("fit")
    return data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)


def bench_training(
    recipe: Mapping[str, Any], device: torch.device, batch_size: int, steps: int, warmup: int, segment_scale: float
) -> Dict[str, Any]:
    """Optimizer steps per second of the recipe's task and model on one fixed batch."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    batch = fixed_batch(recipe, batch_size, segment_scale)
    model = recipe_model(recipe)
    with quiet_lightning():
        task = _task(recipe, model)
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    timer = _StepTimer(device)
    with quiet_lightning():
        trainer = pl.Trainer(
            accelerator=device.type, devices=1, precision=precision, max_steps=warmup + steps, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer.callback],
            gradient_clip_val=recipe.get("trainer", {}).get("gradient_clip_val"),
        )
        # The same batch every step: batch_size=None hands the dict over as it is.
        trainer.fit(task, train_dataloaders=DataLoader([batch] * (warmup + steps), batch_size=None))
    ends = timer.ends
    elapsed = ends[-1] - ends[warmup - 1]
    rate = steps / elapsed
    frames = batch["noisy"].shape[-1]
    return {
        "parameters": sum(p.numel() for p in model.parameters()), "batch_size": batch_size,
        "segment_s": frames / task.sample_rate, "precision": precision, "steps_per_s": rate,
        "examples_per_s": rate * batch_size,
    }


# --------------------------------------------------------------------------------------------- inference
def write_test_file(path: Path, seconds: float, sample_rate: int = RATE, channels: int = 2, seed: int = 0) -> Path:
    """A quiet 440 Hz sine plus white noise, written block by block (a 10 min file never sits in memory).

    16-bit PCM: what recordings usually are, and half the disk of float.
    """
    import soundfile as sf

    generator = torch.Generator().manual_seed(seed)
    frames = int(round(seconds * sample_rate))
    block = 10 * sample_rate
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=channels, subtype="PCM_16") as out:
        for start in range(0, frames, block):
            n = min(block, frames - start)
            t = torch.arange(start, start + n, dtype=torch.float64) / sample_rate
            sine = 0.1 * torch.sin(2 * math.pi * 440.0 * t).float()
            noise = 0.02 * torch.randn(channels, n, generator=generator)
            out.write((sine + noise).T.numpy())
    return path


def _gate_fn(sample_rate: int):
    from musicfx.baselines.spectral_gate import SpectralGate

    gate = SpectralGate(sample_rate)
    return lambda audio: gate(audio)


def bench_inference(
    recipes: Mapping[str, Mapping[str, Any]], device: torch.device, seconds: float, segment: float, folder: Path
) -> Dict[str, Dict[str, float]]:
    """Real-time factor of ``process_file`` on a stereo 44.1 kHz file of ``seconds``, ``segment`` s per call."""
    from musicfx.inference import process_file

    source = write_test_file(folder / f"inference-{seconds:g}s.wav", seconds)
    warm = write_test_file(folder / "warmup.wav", 1.0)
    runs: Dict[str, Any] = {}
    for name, recipe in recipes.items():
        spec = recipe_format(recipe)
        model = recipe_model(recipe).eval().to(device)
        runs[name] = (model, spec.get("sample_rate", RATE), spec.get("channels", 1))
    if device.type == "cpu":  # the gate is a CPU baseline; on CUDA only the models are timed
        runs["spectral gate"] = (_gate_fn(RATE), RATE, 2)
    results: Dict[str, Dict[str, float]] = {}
    for name, (fn, rate, channels) in runs.items():
        def run(path: Path = source) -> None:
            process_file(fn, path, folder / "out.wav", rate, channels, segment=segment, device=device, progress=False)

        run(warm)  # first-call costs (FFT plans, allocator) are not what a long file sees
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        elapsed = time.perf_counter() - start
        results[name] = {"model_rate": rate, "model_channels": channels, "seconds": elapsed, "rtf": elapsed / seconds}
    return results


# ------------------------------------------------------------------------------------------------ memory


def peak_memory_mb(cli_args: Sequence[str]) -> float:
    """Peak RSS in MiB of ``musicfx <cli_args>`` run in its own process.

    Raises:
        RuntimeError: the command failed (its output is included).
    """
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_PROBE, *cli_args], capture_output=True, text=True, check=False
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"musicfx {' '.join(cli_args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return int(lines[-1].split()[1]) / 1024.0


def bench_memory(
    quickstart: Mapping[str, Any], seconds: Sequence[float], methods: Sequence[str], folder: Path
) -> Dict[str, Dict[str, float]]:
    """Peak RSS of ``musicfx denoise`` per method and file length (stereo 44.1 kHz), and the ratio."""
    results: Dict[str, Dict[str, float]] = {}
    ckpt = None
    if "model" in methods:
        with quiet_lightning():
            task = _task(quickstart, recipe_model(quickstart))
            ckpt = save_untrained_checkpoint(task, folder / "quickstart.ckpt")
    files = {length: write_test_file(folder / f"memory-{length:g}s.wav", length, seed=1) for length in seconds}
    for method in methods:
        by_length: Dict[str, float] = {}
        for length, path in files.items():
            args = ["denoise", str(path), "-o", str(folder / "memory-out.wav"), "--overwrite", "--quiet",
                    "--device", "cpu"]
            # Our own checkpoint of a task built in Python (its model pickled): trusted explicitly.
            args += ["--ckpt", str(ckpt), "--trust-checkpoint"] if method == "model" else ["--method", "spectral-gate"]
            by_length[f"{length:g}"] = peak_memory_mb(args)
        values = list(by_length.values())
        results[method] = {"peak_mb": by_length, "ratio_longest_to_shortest": values[-1] / values[0]}
    return results


# ------------------------------------------------------------------------------------------------ report
def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def print_report(results: Dict[str, Any]) -> None:
    if "pipeline" in results:
        rows = [
            [name, f"{r['sample_rate']} Hz, {r['segment_s']:.2f} s", r["batch_size"], r["workers"],
             fmt(r["examples_per_s"], 1), fmt(r["x_real_time"], 0), fmt(r["synthesis_examples_per_s"], 1),
             fmt(r["first_batch_s"], 2)]
            for name, r in results["pipeline"].items()
        ]
        print("\n### Training examples per second (dataloader + on-device synthesis)\n")
        print(markdown_table(
            ["recipe", "examples", "batch", "workers", "examples/s", "x real time",
             "synthesis alone, examples/s", "first batch (s)"], rows))
    if "training" in results:
        rows = [
            [name, f"{r['parameters'] / 1e6:.3f} M", r["precision"], f"{r['batch_size']} x {r['segment_s']:.2f} s",
             fmt(r["steps_per_s"], 3), fmt(r["examples_per_s"], 2)]
            for name, r in results["training"].items()
        ]
        print("\n### DenoiseTask training steps per second (one fixed batch, Lightning Trainer)\n")
        print(markdown_table(["model", "parameters", "precision", "batch", "steps/s", "examples/s"], rows))
    if "inference" in results:
        seconds = results["inference_seconds"]
        rows = [
            [name, f"{r['model_rate']} Hz, {r['model_channels']} ch", fmt(r["seconds"], 1), fmt(r["rtf"], 3)]
            for name, r in results["inference"].items()
        ]
        print(f"\n### Inference: process_file on {_duration(seconds)} of stereo 44.1 kHz audio "
              f"({results['inference_segment']:g} s per model call)\n")
        print(markdown_table(["method", "runs at", "time (s)", "real-time factor"], rows))
    if "memory" in results:
        lengths = list(next(iter(results["memory"].values()))["peak_mb"])
        rows = [
            [method] + [fmt(r["peak_mb"][k], 0) for k in lengths] + [fmt(r["ratio_longest_to_shortest"], 3)]
            for method, r in results["memory"].items()
        ]
        print("\n### Peak memory (peak RSS, MiB) of `musicfx denoise`, stereo 44.1 kHz, one process per case\n")
        print(markdown_table(["method"] + [_duration(float(k)) for k in lengths] + ["ratio"], rows))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, numbers mean nothing")
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped when absent")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--inference-seconds", type=float, default=None, help="length of the inference file")
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps per case")
    parser.add_argument("--workdir", type=Path, default=None, help="where test files go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else Sizes()
    if args.inference_seconds:
        sizes = dataclasses.replace(sizes, inference_seconds=args.inference_seconds)
    if args.train_steps:
        sizes = dataclasses.replace(sizes, train_steps=args.train_steps)
    info = machine_info()
    print(machine_line(info))
    if args.quick:
        print("(--quick: tiny sizes, the numbers are not measurements)")
    recipes = {"quickstart": load_recipe(QUICKSTART_RECIPE), "default": load_recipe(DEFAULT_RECIPE)}
    devices = _devices(args.devices)
    results: Dict[str, Any] = {"machine": info, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="musicfx-bench-") as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for device in devices:
            label = device.type
            if "pipeline" in args.only:
                for name, recipe in recipes.items():
                    r = bench_pipeline(recipe, device, sizes)
                    results.setdefault("pipeline", {})[f"{name} ({label})"] = {"device": label, **r}
            if "training" in args.only:
                for name, recipe in recipes.items():
                    if device.type == "cuda":
                        batch = recipe_data_args(recipe).get("batch_size", 8)
                    elif name == "default":
                        batch = sizes.default_cpu_batch
                    else:
                        batch = sizes.quickstart_cpu_batch or recipe_data_args(recipe).get("batch_size", 8)
                    r = bench_training(recipe, device, batch, sizes.train_steps, sizes.train_warmup,
                                       sizes.train_segment_scale)
                    results.setdefault("training", {})[f"{name} MusicECAN ({label})"] = {"device": label, **r}
            if "inference" in args.only:
                r = bench_inference(recipes, device, sizes.inference_seconds, sizes.inference_segment, folder)
                results["inference_seconds"] = sizes.inference_seconds
                results["inference_segment"] = sizes.inference_segment
                for name, values in r.items():
                    results.setdefault("inference", {})[f"{name} ({label})"] = {"device": label, **values}
        if "memory" in args.only:
            results["memory"] = bench_memory(recipes["quickstart"], sizes.memory_seconds, sizes.memory_methods, folder)
    print_report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
