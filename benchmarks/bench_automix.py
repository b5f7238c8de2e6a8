"""Automix benchmarks: console augmentation throughput, FxNorm normalization time, and mix metrics.

* **console**: examples per second of :class:`~musicfx.synth.console.RandomConsole` (the training
  augmentation) and of the whole training scene, ``AutomixData.on_after_batch_transfer`` (the built-in
  generator's engineer mix plus the augmentation), for batches of 16 examples of 4 stereo 10 s stems at
  44.1 kHz, on the CPU and on CUDA when present.
* **normalize**: seconds of compute per minute of audio of FxNorm effect normalization
  (:func:`musicfx.fxnorm.normalize.normalize_stem`, built-in features, every stage but the optional
  reverb) on the real SiSEC 2011 "Ultimate NZ Tour" stems (vocals, drums, bass; other = guitar + synth),
  per stage and stem, and how far each stem's features are from the targets before and after.
* **metrics**: FxNorm's objective metrics (:func:`musicfx.metrics.mix.mix_metrics`: MAPE of loudness,
  spectral, panning and dynamic features against the reference mix) for the sum-of-stems baseline and for
  FxNorm-automix, Wave-U-Net and the mixing console, each trained from its recipe for the same wall-clock
  budget on the CPU at 22.05 kHz with short segments, on (1) the built-in generator's fixed test split
  (input: its dry stems; reference: the generator's engineer mix, as in training) and (2) the NZ Tour song
  (input: its stems, FxNorm-normalized; reference: its own mix, the sum of the original stems).

    python benchmarks/bench_automix.py [--parts console,normalize,metrics] [--budget 210] [--threads 1]
        [--json OUT] [--shared PATH] [--workdir DIR] [--devices cpu,cuda] [--quick]

``--quick`` shrinks everything (two training steps, tiny batches) for a smoke test.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch

import common
from musicfx.checkpoint import load_checkpoint
from musicfx.errors import MusicfxError

SISEC = "sisec2011-nz-tour"
#: The NZ Tour's five stems as MUSDB's four (the order of the automix recipes' ``stems``).
NZ_STEMS: Mapping[str, Tuple[str, ...]] = {
    "vocals": ("vocals",), "drums": ("drums",), "bass": ("bass",), "other": ("guitar", "synth"),
}
MODELS: Mapping[str, str] = {
    "FxNorm-automix": "automix/fxnorm.yaml",
    "Wave-U-Net": "automix/wave_u_net.yaml",
    "Mixing console": "automix/console.yaml",
}
BASELINE = "sum of the input stems"
GROUPS = ("loudness", "spectral", "panning", "dynamic", "overall")


@contextlib.contextmanager
def _working_folder(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(previous)


# ---------------------------------------------------------------------------------------------- console
def _training_data(**kwargs: Any):
    """An AutomixData whose batches always count as training batches (the console is on)."""
    from musicfx.tasks.automix import AutomixData

    class TrainingData(AutomixData):
        @property
        def training_batch(self) -> bool:
            return True

    return TrainingData(**kwargs)


def console_throughput(
    device: torch.device, batch: int, seconds: float, sample_rate: int, repeats: int
) -> Dict[str, float]:
    """Examples per second of the random console and of the whole training scene.

    Args:
        device: where the batch is synthesized.
        batch, seconds, sample_rate: the batch (4 stereo stems per example).
        repeats: timed calls; the best counts.

    Returns:
        ``{"RandomConsole": examples/s, "AutomixData scene": examples/s}``.
    """
    data = _training_data(sample_rate=sample_rate, segment=seconds, batch_size=batch, num_workers=0,
                          train_examples=batch, generated_items=max(2, batch // 4), generated_duration=2 * seconds)
    data.setup("fit")
    raw = next(iter(data.train_dataloader()))
    raw = {key: value.to(device) for key, value in raw.items()}
    params = {key: raw[key] for key in data.console.param_keys}
    stems, seeds = raw["stems"], raw["seed"]
    with torch.no_grad():
        console = common.best_time(lambda: data.console(stems, params, seeds), device, repeats)
        scene = common.best_time(lambda: data.on_after_batch_transfer(dict(raw), 0), device, repeats)
    return {"RandomConsole": batch / console, "AutomixData scene": batch / scene}


# -------------------------------------------------------------------------------------------- normalize
def nz_tour_stems(shared: Path, seconds: Optional[float] = None) -> Tuple[torch.Tensor, int]:
    """The NZ Tour stems in the automix order (vocals, drums, bass, other = guitar + synth).

    Returns:
        ``((4, 2, time), sample_rate)``; their sum is the song's mix.
    """
    from musicfx.audio.io import audio_info, read_audio

    folder = common.require_folder(shared / SISEC, "the SiSEC 2011 NZ Tour stems")
    rate = audio_info(folder / "vocals.wav").sample_rate
    frames = -1 if seconds is None else int(seconds * rate)
    stems = []
    for parts in NZ_STEMS.values():
        stems.append(sum(read_audio(folder / f"{name}.wav", frames=frames)[0] for name in parts))
    return torch.stack(stems), rate


def normalization_time(shared: Path, seconds: Optional[float], repeats: int) -> Dict[str, Any]:
    """Time FxNorm normalization of the NZ Tour stems, stage by stage, and measure what it changes.

    Returns:
        ``{"seconds": audio length, "stages": {stem: {stage: s}}, "per_minute": {stem: s per minute,
        "song": s per minute of the 4-stem song}, "distances": {stem: {"before", "after": {feature: d}}}}``.
    """
    from musicfx.fxnorm.features import FxNormFeatures, feature_distances
    from musicfx.fxnorm.normalize import normalize_stem

    stems, rate = nz_tour_stems(shared, seconds)
    features = FxNormFeatures.builtin()
    length = stems.shape[-1] / rate
    stages = ("eq", "compression", "panning", "loudness")
    timings: Dict[str, Dict[str, float]] = {}
    distances: Dict[str, Dict[str, Dict[str, float]]] = {}
    for name, audio in zip(NZ_STEMS, stems):
        timings[name] = {}
        out = audio
        for stage in stages:  # each stage on the previous one's output, as normalize_stem chains them
            given = out
            timings[name][stage] = common.best_time(
                lambda: normalize_stem(given, name, features, rate, effects=(stage,)), torch.device("cpu"),
                repeats, warmup=0)
            out = normalize_stem(given, name, features, rate, effects=(stage,))
        timings[name]["total"] = sum(timings[name].values())
        distances[name] = {"before": feature_distances(audio, name, features, rate),
                           "after": feature_distances(out, name, features, rate)}
    per_minute = {name: row["total"] * 60.0 / length for name, row in timings.items()}
    per_minute["song"] = sum(per_minute.values())
    return {"seconds": length, "stages": timings, "per_minute": per_minute, "distances": distances}


# ---------------------------------------------------------------------------------------------- training
def _train_arguments(recipe: Path, sample_rate: int, segment: float, batch: int, budget_s: float,
                     quick: bool, cache: Path) -> List[str]:
    spec = common.load_recipe(recipe)
    network = spec["model"]["init_args"]["model"]
    args = [
        "fit", "-c", str(recipe), "-c", str(common.RECIPES / "trainer/cpu.yaml"),
        "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=5",
        "--data.init_args.num_workers=0", f"--data.init_args.batch_size={batch}",
        f"--data.init_args.segment={segment}", f"--data.init_args.cache_dir={cache}",
        f"--data.init_args.sample_rate={sample_rate}", f"--model.init_args.sample_rate={sample_rate}",
        f"--model.init_args.loss.init_args.stereo.init_args.sample_rate={sample_rate}",
    ]
    if "sample_rate" in (network.get("init_args") or {}):
        args.append(f"--model.init_args.model.init_args.sample_rate={sample_rate}")
    if quick:
        args += ["--trainer.max_steps=2", "--data.init_args.generated_items=2",
                 "--data.init_args.generated_duration=2.0"]
    else:
        minutes, secs = divmod(int(round(budget_s)), 60)
        args += [f"--trainer.max_time=00:00:{minutes:02d}:{secs:02d}", "--trainer.max_epochs=1000"]
    return args


def _last_logged_loss(run_folder: Path) -> Optional[float]:
    """The last ``train/loss`` the CSV logger wrote (the recipes log every few steps)."""
    files = sorted(run_folder.glob("logs/version_*/metrics.csv"))
    if not files:
        return None
    value = None
    with open(files[-1]) as handle:
        for row in csv.DictReader(handle):
            if row.get("train/loss"):
                value = float(row["train/loss"])
    return value


def train_models(workdir: Path, sample_rate: int, segment: float, batch: int, budget_s: float,
                 quick: bool, quiet: bool) -> Dict[str, Dict[str, Any]]:
    """Train every automix recipe for the same wall-clock budget, through ``musicfx fit``.

    Returns:
        ``{model: {"checkpoint", "steps", "wall_s", "last_loss", "parameters"}}``.
    """
    from musicfx.cli import main

    runs: Dict[str, Dict[str, Any]] = {}
    for label, recipe in MODELS.items():
        folder = workdir / Path(recipe).stem
        args = _train_arguments(common.RECIPES / recipe, sample_rate, segment, batch, budget_s, quick,
                                workdir / "cache")
        start = time.perf_counter()
        # Lightning's summaries go to stderr, away from the tables on stdout (or nowhere with --quiet).
        with _working_folder(folder), contextlib.redirect_stdout(io.StringIO() if quiet else sys.stderr):
            code = main(args)
        if code != 0:
            raise MusicfxError(f"training {recipe} failed (exit {code})")
        wall = time.perf_counter() - start
        run_folder = folder / common.load_recipe(common.RECIPES / recipe)["trainer"]["default_root_dir"]
        checkpoint = run_folder / "checkpoints" / "last.ckpt"
        payload = load_checkpoint(checkpoint)
        parameters = sum(v.numel() for k, v in payload["state_dict"].items() if k.startswith("model."))
        runs[label] = {"checkpoint": str(checkpoint), "steps": int(payload["global_step"]), "wall_s": wall,
                       "last_loss": _last_logged_loss(run_folder), "parameters": parameters}
    return runs


# ------------------------------------------------------------------------------------------- evaluation
def _mean_groups(rows: Sequence[Mapping[str, float]]) -> Dict[str, float]:
    out = {}
    for group in GROUPS:
        values = [row[group] for row in rows if not math.isnan(row[group])]
        out[group] = float(sum(values) / len(values)) if values else math.nan
    return out


def generator_test_set(sample_rate: int, examples: int, seconds: float) -> List[Dict[str, torch.Tensor]]:
    """The built-in generator's fixed test split as automix examples: ``{"stems" (4, 2, T), "mix" (2, T)}``."""
    from musicfx.tasks.automix import AutomixData

    data = AutomixData(sample_rate=sample_rate, segment=seconds, batch_size=min(4, examples), num_workers=0,
                       test_examples=examples)
    data.setup("test")
    out = []
    for raw in data.test_dataloader():
        batch = data.on_after_batch_transfer(raw, 0)
        out.extend({"stems": s, "mix": m} for s, m in zip(batch["stems"], batch["mix"]))
    return out


def nz_tour_example(shared: Path, sample_rate: int, seconds: Optional[float]) -> Dict[str, torch.Tensor]:
    """The NZ Tour as one automix example: normalized stems in, the song's own mix as the reference."""
    from musicfx.audio.io import resample
    from musicfx.fxnorm.features import FxNormFeatures
    from musicfx.fxnorm.normalize import normalize_stem

    stems, rate = nz_tour_stems(shared, seconds)
    features = FxNormFeatures.builtin()
    normalized = torch.stack([normalize_stem(audio, name, features, rate) for name, audio in zip(NZ_STEMS, stems)])
    return {"stems": resample(normalized, rate, sample_rate), "mix": resample(stems.sum(0), rate, sample_rate)}


def score(examples: Sequence[Mapping[str, torch.Tensor]], runs: Mapping[str, Mapping[str, Any]],
          sample_rate: int) -> Dict[str, Dict[str, float]]:
    """Mean MAPE per feature group of the baseline and every trained model over ``examples``."""
    import musicfx
    from musicfx.metrics.mix import mix_metrics

    mixers = {BASELINE: None}
    mixers.update({label: musicfx.load(run["checkpoint"]) for label, run in runs.items()})
    table: Dict[str, Dict[str, float]] = {}
    for label, task in mixers.items():
        rows = []
        for example in examples:
            stems, reference = example["stems"], example["mix"]
            if task is None:
                estimate = stems.sum(0)
            else:
                estimate = task.mix(stems, sample_rate)
            rows.append(mix_metrics(estimate, reference, sample_rate))
        table[label] = _mean_groups(rows)
    return table


# ---------------------------------------------------------------------------------------------- report
def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100.0 * value:.1f}"


def metric_table(table: Mapping[str, Mapping[str, float]], runs: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for label, groups in table.items():
        run = runs.get(label)
        steps = "-" if run is None else str(run["steps"])
        rows.append([label, steps] + [_percent(groups[group]) for group in GROUPS])
    return common.markdown_table(["mixer", "steps"] + [f"{g} MAPE %" for g in GROUPS], rows)


def print_console(results: Mapping[str, Mapping[str, float]], batch: int, seconds: float) -> None:
    print(f"\n### Console augmentation throughput ({batch} examples x 4 stereo stems x {seconds:g} s, 44.1 kHz)\n")
    rows = [[f"{workload} ({device})", f"{value:.2f}", f"{value * seconds:.1f}"]
            for device, by_workload in results.items() for workload, value in by_workload.items()]
    print(common.markdown_table(["workload", "examples/s", "x real time"], rows))


def print_normalize(result: Mapping[str, Any]) -> None:
    per_minute = 60.0 / result["seconds"]
    print(f"\n### FxNorm normalization time (NZ Tour, {result['seconds']:.1f} s stems; "
          "seconds per minute of audio, one thread)\n")
    stages = ("eq", "compression", "panning", "loudness", "total")
    rows = [[stem] + [f"{row[s] * per_minute:.2f}" for s in stages] for stem, row in result["stages"].items()]
    song = {s: sum(row[s] for row in result["stages"].values()) for s in stages}
    rows.append(["song (4 stems)"] + [f"{song[s] * per_minute:.2f}" for s in stages])
    print(common.markdown_table(["stem"] + list(stages), rows))
    print("\nDistance to the target features, before -> after (eq: mean |dB difference| of the curves, "
          "panning: mean |similarity difference|, both 50 Hz-16 kHz; dynamics: dB; loudness: LU)\n")
    features = ("eq", "dynamics", "panning", "loudness")
    rows = [[stem] + [f"{d['before'][f]:.2f} -> {d['after'][f]:.2f}" for f in features]
            for stem, d in result["distances"].items()]
    print(common.markdown_table(["stem"] + list(features), rows))


def print_metrics(report: Mapping[str, Any], runs: Mapping[str, Mapping[str, Any]], budget: str, sample_rate: int,
                  batch: int, segment: float, examples: int, test_seconds: float) -> None:
    print(f"\n### Training ({budget} each, CPU, {sample_rate} Hz, batch {batch} x {segment:g} s)\n")
    rows = [[label, f"{run['parameters']:,}", str(run["steps"]), f"{run['wall_s']:.0f}",
             common.fmt(run["last_loss"], 3)] for label, run in runs.items()]
    print(common.markdown_table(["model", "parameters", "steps", "wall s", "last train/loss"], rows))
    print(f"\n### Generator test split ({examples} examples x {test_seconds:g} s; reference: the engineer mix)\n")
    print(metric_table(report["generator"], runs))
    print("\n### NZ Tour (normalized stems in; reference: the song's own mix)\n")
    print(metric_table(report["nz_tour"], runs))


def run_metrics(args: argparse.Namespace) -> Dict[str, Any]:
    """Train the three models and score them and the baseline on both test sets; prints the tables."""
    segment = 0.5 if args.quick else args.segment
    batch = 2 if args.quick else args.batch
    examples = 2 if args.quick else args.test_examples
    test_seconds = 3.0 if args.quick else args.test_seconds
    with contextlib.ExitStack() as stack:
        workdir = args.workdir
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-automix-")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs = train_models(workdir, args.sample_rate, segment, batch, args.budget, args.quick, args.quiet)
            test_set = generator_test_set(args.sample_rate, examples, test_seconds)
            song = nz_tour_example(args.shared, args.sample_rate, 4.0 if args.quick else None)
            metrics = {"generator": score(test_set, runs, args.sample_rate),
                       "nz_tour": score([song], runs, args.sample_rate)}
    budget = "2 steps" if args.quick else f"{args.budget:g} s"
    print_metrics(metrics, runs, budget, args.sample_rate, batch, segment, examples, test_seconds)
    training = {label: {k: v for k, v in run.items() if k != "checkpoint"} for label, run in runs.items()}
    return {"training": training, "metrics": metrics}


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="console,normalize,metrics", help="comma-separated parts to run")
    parser.add_argument("--shared", type=Path, default=common.default_shared_data(), help="the shared recordings")
    parser.add_argument("--budget", type=float, default=210.0, help="training seconds per model (default 210)")
    parser.add_argument("--sample-rate", type=int, default=22050, help="training and evaluation rate")
    parser.add_argument("--segment", type=float, default=1.0, help="training segment, seconds")
    parser.add_argument("--batch", type=int, default=4, help="training batch size")
    parser.add_argument("--test-examples", type=int, default=16, help="generator test examples")
    parser.add_argument("--test-seconds", type=float, default=6.0, help="seconds per generator test example")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: see main())")
    parser.add_argument("--devices", default="cpu,cuda", help="console part: devices (cuda skipped when absent)")
    parser.add_argument("--workdir", type=Path, help="where training runs go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, two training steps: a smoke test")
    parser.add_argument("--quiet", action="store_true", help="no training logs")
    args = parser.parse_args(list(argv) or None)
    # One thread by default: on a shared 2-core machine two intra-op threads spin against the other jobs
    # (measured at load 6: a FxNorm-automix training step 4x slower with 2 threads than with 1).
    torch.set_num_threads(args.threads)
    if args.quiet:
        import logging

        logging.getLogger("lightning").setLevel(logging.WARNING)
    parts = set(args.parts.split(","))
    unknown = parts - {"console", "normalize", "metrics"}
    if unknown:
        print(f"musicfx: error: unknown parts {sorted(unknown)}", file=sys.stderr)
        return 1
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report: Dict[str, Any] = {"machine": common.machine_info(), "settings": settings}
    print(common.machine_line(report["machine"]))
    try:
        if "console" in parts:
            batch, seconds = (2, 1.0) if args.quick else (16, 10.0)
            report["console"] = {}
            for name in args.devices.split(","):
                if name == "cuda" and not torch.cuda.is_available():
                    continue
                report["console"][name] = console_throughput(torch.device(name), batch, seconds, 44100,
                                                             1 if args.quick else args.repeats)
            print_console(report["console"], batch, seconds)
        if "normalize" in parts:
            report["normalize"] = normalization_time(args.shared, 3.0 if args.quick else None,
                                                     1 if args.quick else args.repeats)
            print_normalize(report["normalize"])
        if "metrics" in parts:
            report.update(run_metrics(args))
    except MusicfxError as error:
        print(f"musicfx: error: {error}", file=sys.stderr)
        return 1
    report["machine_after"] = {"load_average_1min": round(os.getloadavg()[0], 2)}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
