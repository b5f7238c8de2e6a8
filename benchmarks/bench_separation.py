"""Separation benchmarks: `musicfx separate` speed and memory on CPU, and SDR on real multitracks.

Two sections (``--only`` picks some):

* **inference**: real-time factor and peak resident memory of ``musicfx separate`` on the CPU, one fresh
  process per (model, length), for the model of every ``recipes/separate/*.yaml`` at its recipe size
  (random weights: speed and memory do not depend on them), on 60 s and 10 min of stereo 44.1 kHz music
  (the built-in generator's, tiled into a 16-bit file). The time is the command's, after Python and torch
  have started: loading the checkpoint, decoding, resampling, the model, writing every stem. A case whose
  time, predicted from the model's real-time factor on the shorter file, exceeds ``--max-case-minutes`` is
  skipped and reported as such.
* **quality**: SDR per target -- museval v4's (1 s windows, median over windows; ``musicfx.metrics``) -- and
  the song-level uSDR on two real multitracks from ``shared/data``: MUSDB18's "Music Delta - 80s Rock"
  excerpt (``.stem.mp4``, 6.8 s) and SiSEC 2011's "Ultimate NZ Tour" (18 s, five stems; other = guitar +
  synth), for four stems (vocals, drums, bass, other) and for vocals vs accompaniment. Methods: the
  oracle masks computed from the true stems (ideal ratio masks of magnitudes, IRM1, and of powers, IRM2;
  the ideal binary mask, IBM; STFT 4096 / 1024) -- the upper bound of mask-based separation --, the
  mixture itself scaled by ``1 / sources`` (a floor), and each separation recipe's model
  trained for the same wall-clock budget (``--budget-minutes``) on the CPU on the built-in generator with
  reduced sizes (:data:`TRAINING`), then run by :func:`musicfx.evaluate.evaluate_model` -- what
  ``musicfx evaluate --musdb`` does. Everything is scored by :func:`musicfx.evaluate.evaluate_folders`.

Run::

    python benchmarks/bench_separation.py [--only inference quality] [--models cnn_mask wavegan ...]
        [--lengths 60 600] [--budget-minutes 3.5] [--shared PATH] [--workdir DIR] [--json OUT]
    python benchmarks/bench_separation.py --quick      # a smoke run with tiny models; the numbers mean nothing
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch

import common
from common import fmt, machine_info, machine_line, markdown_table

SECTIONS = ("inference", "quality")
MODELS = ("cnn_mask", "open_unmix", "bs_roformer", "wavegan")
FOUR_STEMS = ("vocals", "drums", "bass", "other")
PAIR = ("vocals", "accompaniment")
RATE = 44100
MUSDB_SAMPLE = "Music Delta - 80s Rock"
NZ_TOUR = "Ultimate NZ Tour"
NZ_STEMS = ("vocals", "drums", "bass", "guitar", "synth")

#: Tiny networks for ``--quick`` (model ``init_args`` overrides; ``discriminator`` for the GAN).
TINY: Dict[str, Dict[str, Dict[str, Any]]] = {
    "cnn_mask": {"model": {"conv_channels": [4, 4], "hidden": [16]}},
    "open_unmix": {"model": {"hidden_size": 16, "nb_layers": 1}},
    "bs_roformer": {"model": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "mask_mult": 1}},
    "wavegan": {"model": {"widths": [8, 16, 16]}, "discriminator": {"widths": [8, 16, 16]}},
}

#: What the quality section trains on the CPU, per recipe: network overrides (reduced from the recipe's sizes)
#: and data settings. On a 2-core CPU a batch of 44.1 kHz stereo stems costs seconds to render and to train
#: on, so those recipes get 1 s examples: a few CPU minutes then buy tens to hundreds of steps.
TRAINING: Dict[str, Dict[str, Any]] = {
    "cnn_mask": {"model": {}, "segment": 2.0, "batch_size": 8},
    "open_unmix": {"model": {"hidden_size": 128, "nb_layers": 2}, "segment": 1.0, "batch_size": 8},
    "bs_roformer": {"model": {"dim": 64, "depth": 2, "heads": 4, "dim_head": 32, "mask_mult": 2},
                    "segment": 1.0, "batch_size": 4},
    "wavegan": {"model": {"widths": [16, 32, 64, 128, 256]}, "discriminator": {"widths": [16, 32, 64, 128, 256]},
                "segment": 2.0, "batch_size": 8},
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each section does; ``--quick`` shrinks all of it."""

    lengths: Sequence[float] = (60.0, 600.0)
    segment: float = 10.0  # seconds per model call, the CLI's default
    max_case_minutes: float = 30.0
    budget_minutes: float = 3.5
    nz_seconds: Optional[float] = None  # None: the whole 18 s
    tiny: bool = False


QUICK = Sizes(lengths=(1.0, 3.0), segment=1.0, budget_minutes=0.0, nz_seconds=4.0, tiny=True)


#: The recipe each model is measured from: BS-RoFormer's one-GPU size (bs_roformer.yaml is the paper's,
#: one model per stem).
RECIPE_FILES = {"bs_roformer": "bs_roformer_small"}


def recipe_path(name: str) -> Path:
    return common.RECIPES / "separate" / f"{RECIPE_FILES.get(name, name)}.yaml"


# ------------------------------------------------------------------------------------------------ models
def build_task(name: str, model_overrides: Mapping[str, Any], discriminator_overrides: Mapping[str, Any]):
    """The :class:`~musicfx.tasks.separate.SeparationTask` of a recipe, with fresh random weights."""
    from musicfx.tasks.separate import SeparationTask

    spec = dict(common.load_recipe(recipe_path(name))["model"]["init_args"])
    kwargs: Dict[str, Any] = {
        "model": common.instantiate(spec["model"], **model_overrides),
        "loss": common.instantiate(spec["loss"]) if "loss" in spec else None,
        # None: the network declares them (recipes state them once, on the model).
        "sources": spec.get("sources"), "sample_rate": spec.get("sample_rate"), "channels": spec.get("channels"),
        "log_examples": 0,
    }
    if "discriminator" in spec:
        kwargs["discriminator"] = common.instantiate(spec["discriminator"], **discriminator_overrides)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
        return SeparationTask(**kwargs)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's start-up chatter (accelerators, tips) off, for a script that prints tables."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------- inference
def write_music_file(path: Path, seconds: float, seed: int = 0, piece_seconds: float = 20.0) -> Path:
    """A piece of the built-in generator's music (stereo 44.1 kHz), tiled to ``seconds``, written block by
    block as 16-bit PCM (a 10 min file never sits in memory)."""
    import soundfile as sf

    from musicfx.data.generator import generate_stems

    stems = generate_stems(int(piece_seconds * RATE), RATE, 2, torch.Generator().manual_seed(seed))
    piece = sum(stems.values())
    piece = (0.8 / float(piece.abs().max().clamp(min=1e-6)) * piece).T.numpy()
    frames = int(round(seconds * RATE))
    with sf.SoundFile(str(path), "w", samplerate=RATE, channels=2, subtype="PCM_16") as out:
        for start in range(0, frames, piece.shape[0]):
            out.write(piece[: min(piece.shape[0], frames - start)])
    return path


#: Runs the real CLI in a fresh interpreter; prints the command's time (after torch and Lightning are
#: imported) and the process's peak resident set in KiB. VmHWM rather than getrusage(RUSAGE_CHILDREN) in
#: the parent: Linux carries the parent's resident set over into a forked child's ru_maxrss, and
#: RUSAGE_CHILDREN keeps the largest child so far, so a shorter file run later could not read lower.
_PROBE = (
    "import resource, sys, time\n"
    "import torch, lightning.pytorch\n"
    "from musicfx.cli import main\n"
    "start = time.perf_counter()\n"
    "code = main(sys.argv[1:])\n"
    "elapsed = time.perf_counter() - start\n"
    "try:\n"
    "    peak = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
    "except (OSError, IndexError):\n"
    "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "print('PEAK_RSS_KB', peak)\n"
    "print('ELAPSED_S', elapsed)\n"
    "sys.exit(code)\n"
)


def run_separate(cli_args: Sequence[str]) -> Tuple[float, float]:
    """``(seconds, peak RSS in MiB)`` of ``musicfx <cli_args>`` in its own process.

    Raises:
        RuntimeError: the command failed (its output is included).
    """
    result = subprocess.run([sys.executable, "-c", _PROBE, *cli_args], capture_output=True, text=True, check=False)
    values = dict(line.split(maxsplit=1) for line in result.stdout.splitlines()
                  if line.startswith(("PEAK_RSS_KB", "ELAPSED_S")))
    if result.returncode != 0 or len(values) != 2:
        raise RuntimeError(f"musicfx {' '.join(cli_args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return float(values["ELAPSED_S"]), int(values["PEAK_RSS_KB"]) / 1024.0


def bench_inference(models: Sequence[str], sizes: Sizes, folder: Path, log=print) -> Dict[str, Dict[str, Any]]:
    """Real-time factor and peak RSS of ``musicfx separate`` per model and file length."""
    lengths = sorted(sizes.lengths)
    folder.mkdir(parents=True, exist_ok=True)
    files = {length: write_music_file(folder / f"music-{length:g}s.wav", length) for length in lengths}
    results: Dict[str, Dict[str, Any]] = {}
    for name in models:
        overrides = TINY[name] if sizes.tiny else {}
        task = build_task(name, overrides.get("model", {}), overrides.get("discriminator", {}))
        with _quiet_lightning():
            checkpoint = common.save_untrained_checkpoint(task, folder / f"{name}.ckpt")
        row: Dict[str, Any] = {"parameters": parameters(task.model), "sample_rate": task.sample_rate,
                               "channels": task.channels, "sources": list(task.sources), "cases": {}}
        rtf: Optional[float] = None
        for length in lengths:
            if rtf is not None and rtf * length > sizes.max_case_minutes * 60:
                row["cases"][f"{length:g}"] = {"skipped": f"predicted {rtf * length / 60:.0f} min at real-time "
                                                          f"factor {rtf:.2f}"}
                log(f"  {name}, {length:g} s: skipped (predicted {rtf * length / 60:.0f} min)")
                continue
            args = ["separate", str(files[length]), "-o", str(folder / "out"), "--ckpt", str(checkpoint),
                    "--device", "cpu", "--segment", f"{sizes.segment:g}", "--overwrite", "--quiet"]
            seconds, peak = run_separate(args)
            rtf = seconds / length
            row["cases"][f"{length:g}"] = {"seconds": seconds, "rtf": rtf, "peak_mb": peak}
            log(f"  {name}, {length:g} s: {seconds:.1f} s (real-time factor {rtf:.3f}), peak {peak:.0f} MiB")
        peaks = [case["peak_mb"] for case in row["cases"].values() if "peak_mb" in case]
        row["ratio_longest_to_shortest"] = peaks[-1] / peaks[0] if len(peaks) > 1 else None
        results[name] = row
    return results


# ----------------------------------------------------------------------------------------------- quality
def build_test_tree(shared: Path, root: Path, nz_seconds: Optional[float]) -> Path:
    """A MUSDB18-like ``test`` split under ``root``: the MUSDB18 excerpt (linked, ``.stem.mp4``) and the NZ Tour
    as ``mixture, vocals, drums, bass, other`` wavs (other = guitar + synth; mixture = their sum)."""
    from musicfx.audio.io import read_audio, write_audio

    sample = common.require_folder(shared / "musdb18-sample", "MUSDB18 excerpt") / f"{MUSDB_SAMPLE}.stem.mp4"
    nz = common.require_folder(shared / "sisec2011-nz-tour", "SiSEC 2011 NZ Tour multitrack")
    test = root / "test"
    test.mkdir(parents=True, exist_ok=True)
    link = test / sample.name
    if not link.exists():
        link.symlink_to(sample)
    frames = -1 if nz_seconds is None else int(nz_seconds * RATE)
    audio = {name: read_audio(nz / f"{name}.wav", frames=frames)[0] for name in NZ_STEMS}
    stems = {"vocals": audio["vocals"], "drums": audio["drums"], "bass": audio["bass"],
             "other": audio["guitar"] + audio["synth"]}
    track = test / NZ_TOUR
    for name, signal in dict(stems, mixture=sum(stems.values())).items():
        write_audio(track / f"{name}.wav", signal, RATE)
    return root


def _references(root: Path) -> Dict[str, Tuple[torch.Tensor, torch.Tensor, int]]:
    """``{track: (mix (C, T), stems (4, C, T) in FOUR_STEMS order, rate)}`` of the test tree."""
    from musicfx.audio.io import read_audio, read_stems

    tracks = {}
    streams, rate, names = read_stems(root / "test" / f"{MUSDB_SAMPLE}.stem.mp4")
    by_name = dict(zip(names, streams))
    tracks[MUSDB_SAMPLE] = (by_name["mixture"], torch.stack([by_name[n] for n in FOUR_STEMS]), rate)
    folder = root / "test" / NZ_TOUR
    stems = [read_audio(folder / f"{n}.wav")[0] for n in FOUR_STEMS]
    mix, rate = read_audio(folder / "mixture.wav")
    tracks[NZ_TOUR] = (mix, torch.stack(stems), rate)
    return tracks


def _write_estimates(folder: Path, track: str, names: Sequence[str], estimates: torch.Tensor, rate: int) -> None:
    from musicfx.audio.io import write_audio

    for name, audio in zip(names, estimates):
        write_audio(folder / "test" / track / f"{name}.wav", audio, rate)


def reference_methods(root: Path, estimates: Path) -> Dict[str, Dict[str, Path]]:
    """Estimates of the oracle masks and of the scaled mixture, written in museval's layout.

    Returns:
        ``{method: {"four": folder or None, "pair": folder}}``: estimates of the four stems and of vocals +
        accompaniment. The oracle of the pair is computed on the pair (a two-source mask model's bound), not
        summed from the four.
    """
    from functools import partial

    from musicfx.baselines.oracle import ideal_binary_mask, ideal_ratio_mask

    methods: Dict[str, Dict[str, Path]] = {}
    references = _references(root)
    oracles = (("oracle IRM1", "irm1", ideal_ratio_mask), ("oracle IRM2", "irm2", partial(ideal_ratio_mask, power=2.0)),
               ("oracle IBM", "ibm", ideal_binary_mask), ("mixture / sources", "mixture", None))
    for label, slug, oracle in oracles:
        four, pair = estimates / f"{slug}-four", estimates / f"{slug}-pair"
        for track, (mix, stems, rate) in references.items():
            frames = min(mix.shape[-1], stems.shape[-1])
            mix, stems = mix[:, :frames], stems[..., :frames]
            pair_stems = torch.stack([stems[0], stems[1:].sum(0)])
            if oracle is None:
                _write_estimates(four, track, FOUR_STEMS, mix.expand(4, -1, -1) / 4, rate)
                _write_estimates(pair, track, PAIR, mix.expand(2, -1, -1) / 2, rate)
            else:
                _write_estimates(four, track, FOUR_STEMS, oracle(mix, stems), rate)
                _write_estimates(pair, track, PAIR, oracle(mix, pair_stems), rate)
        methods[label] = {"four": four, "pair": pair}
    return methods


def _add_accompaniment(estimates: Path) -> None:
    """Write ``accompaniment.wav`` = drums + bass + other beside a four-stem model's estimates, as museval
    derives it, so the model is scored on vocals / accompaniment too."""
    from musicfx.audio.io import read_audio, write_audio

    for track in (estimates / "test").iterdir():
        parts = [read_audio(track / f"{name}.wav") for name in ("drums", "bass", "other")]
        write_audio(track / "accompaniment.wav", sum(audio for audio, _ in parts), parts[0][1])


def _last_loss(run: Path) -> Optional[float]:
    import csv

    value = None
    for path in sorted(run.glob("logs/version_*/metrics.csv")):
        with open(path) as handle:
            for row in csv.DictReader(handle):
                if row.get("train/loss"):
                    value = float(row["train/loss"])
    return value


def train_model(name: str, folder: Path, sizes: Sizes, log=print) -> Dict[str, Any]:
    """Train a recipe on the built-in generator for the wall-clock budget through ``musicfx fit`` (own process).

    Returns:
        ``{"checkpoint", "batches", "wall_s", "parameters", "last_loss", "settings"}``.
    """
    settings = TRAINING[name]
    recipe = recipe_path(name)
    args = ["fit", "-c", str(recipe), "-c", str(common.RECIPES / "trainer" / "cpu.yaml"),
            "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", "--trainer.log_every_n_steps=10",
            "--trainer.enable_progress_bar=false", "--data.init_args.num_workers=1"]
    network = dict(settings["model"])
    discriminator = dict(settings.get("discriminator", {}))
    segment, batch_size = settings["segment"], settings["batch_size"]
    if sizes.tiny:
        network, discriminator = dict(TINY[name]["model"]), dict(TINY[name].get("discriminator", {}))
        segment, batch_size = 0.5, 2
        args += ["--trainer.max_steps=2", "--data.init_args.num_workers=0", "--data.init_args.generated_items=2",
                 "--data.init_args.generated_duration=2.0"]
    else:
        minutes, seconds = divmod(int(round(sizes.budget_minutes * 60)), 60)
        # 16 generated songs per split rather than 64: the first read of a song renders it whole once (for its
        # level), which would spend a good part of a few minutes' budget at 44.1 kHz.
        args += [f"--trainer.max_time=00:00:{minutes:02d}:{seconds:02d}", "--trainer.max_steps=-1",
                 "--data.init_args.generated_items=16"]
    args += [f"--data.init_args.segment={segment:g}", f"--data.init_args.batch_size={batch_size}"]
    for key, value in network.items():
        args.append(f"--model.init_args.model.init_args.{key}={json.dumps(value)}")
    for key, value in discriminator.items():
        args.append(f"--model.init_args.discriminator.init_args.{key}={json.dumps(value)}")
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MUSICFX_CACHE=str(folder / "cache"), WANDB_MODE="offline")
    start = time.perf_counter()
    with open(folder / "fit.log", "w") as output:
        code = subprocess.run([sys.executable, "-m", "musicfx.cli", *args], cwd=folder, stdout=output,
                              stderr=subprocess.STDOUT, env=env, check=False).returncode
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"training {name} failed ({code}); see {folder / 'fit.log'}")
    run = folder / common.load_recipe(recipe)["trainer"]["default_root_dir"]
    checkpoint = run / "checkpoints" / "last.ckpt"
    payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
    batches = int(payload["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"])
    model_parameters = sum(v.numel() for k, v in payload["state_dict"].items() if k.startswith("model."))
    result = {"checkpoint": str(checkpoint), "batches": batches, "wall_s": wall, "parameters": model_parameters,
              "last_loss": _last_loss(run), "settings": {"network": network, "discriminator": discriminator,
                                                         "segment": segment, "batch_size": batch_size}}
    log(f"  trained {name}: {batches} batches in {wall:.0f} s, last loss {result['last_loss']}")
    return result


def _load(checkpoint: str):
    from musicfx.api import load

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weights_only.*")
        return load(checkpoint)


def _scores(report: Any, targets: Sequence[str]) -> Dict[str, Dict[str, Dict[str, Optional[float]]]]:
    """``{track: {target: {"SDR", "uSDR"}}}`` of an :class:`~musicfx.evaluate.EvaluationReport`."""
    def clean(value: float) -> Optional[float]:
        return value if math.isfinite(value) else None

    return {track: {t: {"SDR": clean(per[t]["SDR"]), "uSDR": clean(per[t]["uSDR"])} for t in targets}
            for track, per in report.tracks.items()}


def bench_quality(models: Sequence[str], sizes: Sizes, shared: Path, folder: Path, log=print) -> Dict[str, Any]:
    """SDR / uSDR per track and target of the references and the trained models."""
    from musicfx.evaluate import evaluate_folders, evaluate_model

    root = build_test_tree(shared, folder / "musdb", sizes.nz_seconds)
    estimates = folder / "estimates"
    methods = reference_methods(root, estimates)
    training: Dict[str, Dict[str, Any]] = {}
    for name in models:
        run = train_model(name, folder / "train" / name, sizes, log)
        task = _load(run["checkpoint"])
        variants = {name: task}
        if name == "cnn_mask":
            # The recipe's thresholds turn the masks binary; the soft masks are shown beside them.
            soft = _load(run["checkpoint"])
            soft.model.vocals_threshold = soft.model.accompaniment_threshold = None
            variants[f"{name} (soft masks)"] = soft
        for label, variant in variants.items():
            out = estimates / label.replace(" ", "-").replace("(", "").replace(")", "")
            evaluate_model(variant, root, output_dir=out, segment=sizes.segment, progress=False)
            four = None
            if set(FOUR_STEMS) <= set(variant.sources):
                four = out
                _add_accompaniment(out)
            methods[label] = {"four": four, "pair": out}
        training[name] = run
    scores: Dict[str, Dict[str, Any]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # estimates a few frames longer than the .stem.mp4 references
        for label, where in methods.items():
            scores[label] = {}
            if where["four"] is not None:
                report = evaluate_folders(root, where["four"], targets=FOUR_STEMS, progress=False)
                scores[label]["four"] = _scores(report, FOUR_STEMS)
            report = evaluate_folders(root, where["pair"], targets=PAIR, progress=False)
            scores[label]["pair"] = _scores(report, PAIR)
    return {"scores": scores, "training": training, "tracks": [MUSDB_SAMPLE, NZ_TOUR],
            "nz_seconds": sizes.nz_seconds, "budget_minutes": sizes.budget_minutes}


# ------------------------------------------------------------------------------------------------ report
def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def inference_tables(results: Mapping[str, Any]) -> str:
    rows = []
    lengths: List[str] = []
    for name, row in results["inference"].items():
        lengths = list(row["cases"])
        cells = [name, f"{row['parameters'] / 1e6:.2f} M", f"{row['sample_rate'] / 1000:g} kHz, {row['channels']} ch"]
        for length in lengths:
            case = row["cases"][length]
            cells += ["skipped", "-"] if "skipped" in case else [fmt(case["rtf"], 3), fmt(case["peak_mb"], 0)]
        cells.append(fmt(row["ratio_longest_to_shortest"], 3))
        rows.append(cells)
    headers = ["model", "parameters", "runs at"]
    for length in lengths:
        headers += [f"RTF, {_duration(float(length))}", f"peak MiB, {_duration(float(length))}"]
    headers.append("memory ratio")
    return markdown_table(headers, rows)


def _score_row(values: Mapping[str, Mapping[str, Optional[float]]], targets: Sequence[str]) -> List[str]:
    sdrs = [values[t]["SDR"] for t in targets]
    usdrs = [values[t]["uSDR"] for t in targets]
    finite = [v for v in sdrs if v is not None]
    mean_usdr = [v for v in usdrs if v is not None]
    return ([fmt(v) for v in sdrs] + [fmt(sum(finite) / len(finite)) if len(finite) == len(sdrs) else "-"]
            + [fmt(sum(mean_usdr) / len(mean_usdr)) if mean_usdr else "-"])


def quality_tables(quality: Mapping[str, Any]) -> str:
    parts = []
    training = quality["training"]

    def steps(label: str) -> str:
        name = label.split(" ")[0]
        return str(training[name]["batches"]) if name in training else "-"

    for track in quality["tracks"]:
        for kind, targets in (("four", FOUR_STEMS), ("pair", PAIR)):
            rows = [[label, steps(label)] + _score_row(per[kind][track], targets)
                    for label, per in quality["scores"].items() if kind in per]
            headers = ["method", "steps"] + [f"{t} SDR" for t in targets] + ["mean SDR", "mean uSDR"]
            title = "four stems" if kind == "four" else "vocals / accompaniment"
            parts.append(f"#### {track}: {title}\n\n" + markdown_table(headers, rows))
    return "\n\n".join(parts)


def print_report(results: Mapping[str, Any]) -> None:
    if "inference" in results:
        print(f"\n### `musicfx separate` on CPU: real-time factor and peak memory "
              f"(stereo 44.1 kHz, --segment {results['segment']:g})\n")
        print(inference_tables(results))
    if "quality" in results:
        quality = results["quality"]
        print(f"\n### SDR (dB) after {quality['budget_minutes']:g} CPU minutes of training on the built-in generator\n")
        print(quality_tables(quality))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="recipes to measure")
    parser.add_argument("--quick", action="store_true", help="tiny models and files: a smoke run")
    parser.add_argument("--lengths", nargs="+", type=float, help="file lengths in seconds (default 60 600)")
    parser.add_argument("--max-case-minutes", type=float, help="skip an inference case predicted to take longer")
    parser.add_argument("--budget-minutes", type=float, help="training wall-clock budget per model (default 3.5)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads here (0: torch's default)")
    parser.add_argument("--shared", type=Path, default=common.default_shared_data(), help="the shared test data")
    parser.add_argument("--workdir", type=Path, help="where files and runs go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else Sizes()
    replace = {key: value for key, value in (("lengths", args.lengths), ("max_case_minutes", args.max_case_minutes),
                                             ("budget_minutes", args.budget_minutes)) if value is not None}
    sizes = dataclasses.replace(sizes, **replace)
    info = machine_info()
    print(machine_line(info))
    if args.quick:
        print("(--quick: tiny models and files, the numbers are not measurements)")
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    results: Dict[str, Any] = {"machine": info, "quick": args.quick, "segment": sizes.segment}
    try:
        with tempfile.TemporaryDirectory(prefix="musicfx-bench-separation-") as tmp:
            folder = args.workdir or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            if "inference" in args.only:
                results["inference"] = bench_inference(args.models, sizes, folder / "inference", log)
            if "quality" in args.only:
                results["quality"] = bench_quality(args.models, sizes, args.shared, folder / "quality", log)
    except Exception as error:  # a missing data folder or ffmpeg is one line, like the CLI's errors
        from musicfx.errors import MusicfxError

        if not isinstance(error, MusicfxError):
            raise
        print(f"bench_separation: error: {error}", file=sys.stderr)
        return 1
    print_report(results)
    if args.markdown:
        tables = []
        if "inference" in results:
            tables.append(inference_tables(results))
        if "quality" in results:
            tables.append(quality_tables(results["quality"]))
        args.markdown.write_text(machine_line(info) + "\n\n" + "\n\n".join(tables) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
