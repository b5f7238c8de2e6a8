"""Does SoundFont-rendered training music transfer better to real recordings than the built-in generator?

For each task, one recipe's model is trained twice for the same number of steps (same batches, same seed),
once on the built-in generator (additive synthesis) and once on procedural songs rendered through a
SoundFont (``recipes/data/rendered.yaml``: ``--data.init_args.scores procedural``), and both are scored on
the real recordings of ``shared/data``:

* **denoise** -- the quickstart MusicECAN (``recipes/quickstart.yaml``, 22.05 kHz mono, 1 s examples):
  SI-SDR improvement over the noisy input on ``bench_denoise_quality.py``'s fixed test set (NZ Tour mixes
  and stems, PHENICX orchestra; real kitchen noise and the five procedural categories; 0 and 5 dB SNR);
* **separate** -- a small Open-Unmix (``recipes/separate/open_unmix.yaml``, hidden 128, 2 layers, 1 s
  examples, batch 8, 16 songs per split as in ``bench_separation.py``): museval SDR per target on the MUSDB18
  sample ("Music Delta - 80s Rock") and the NZ Tour (other = guitar + synth);
* **debleed** -- the t-UNet (``recipes/debleed/t_unet.yaml``, 22.05 kHz mono, 1 s examples, batch 4, linear
  bleed): median SDR of the four tracks with a fixed linear bleed (``bench_debleed.py``'s scenes) on NZ Tour
  clips (4 s every 2 s) and on PHENICX (violin 1, horn 1, double bass, flute 1 in the vocals, drums, bass,
  other slots: the t-UNet learns a mixing matrix, not instruments, but its slots did see those stems).

Training runs ``musicfx fit`` in its own process (one DataLoader worker), validation off, for a fixed number
of steps: on a shared machine a wall-clock budget buys whatever steps the neighbours leave, so the budget is
the steps, and the CPU seconds each training used (model and data loading together) are reported beside
the scores. A few hundred CPU steps are a smoke test of what the data teaches early, not the models' quality.

Run::

    nice python benchmarks/bench_rendered.py [--steps N] [--tasks denoise separate debleed] [--json r.json]
    python benchmarks/bench_rendered.py --quick      # two steps each, tiny sets: a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

import common
from common import fmt, machine_info, machine_line, markdown_table

TASKS = ("denoise", "separate", "debleed")
DATA = {"generator": [], "rendered": ["--data.init_args.scores=procedural"]}
RECIPE = {"denoise": "quickstart.yaml", "separate": "separate/open_unmix.yaml", "debleed": "debleed/t_unet.yaml"}
SETTINGS = {
    "denoise": [],
    "separate": ["--model.init_args.model.init_args.hidden_size=128", "--model.init_args.model.init_args.nb_layers=2",
                 "--data.init_args.segment=1.0", "--data.init_args.batch_size=8",
                 "--data.init_args.generated_items=16"],
    "debleed": ["--data.init_args.segment=1.0", "--data.init_args.batch_size=4"],
}
QUICK = {
    "denoise": ["--model.init_args.model.init_args.widths=[4,8]",
                "--model.init_args.model.init_args.filter_widths=[4]"],
    "separate": ["--model.init_args.model.init_args.hidden_size=16", "--model.init_args.model.init_args.nb_layers=1"],
    "debleed": ["--model.init_args.model.init_args.widths=[8,16,32]",
                "--model.init_args.model.init_args.head_width=16"],
}
#: Training steps per task: the same for both data, so the model sees the same number of batches.
STEPS = {"denoise": 150, "separate": 150, "debleed": 100}
PHENICX_SLOTS = ("violin1", "horn1", "doublebass", "flute1")  # into the t-UNet's vocals, drums, bass, other


def fit(task: str, data: str, folder: Path, steps: int, quick: bool, log=print) -> Dict[str, Any]:
    """Train ``task``'s recipe on ``data`` in a subprocess; the checkpoint, steps, wall and CPU time."""
    recipe = common.RECIPES / RECIPE[task]
    args = ["fit", "-c", str(recipe), "-c", str(common.RECIPES / "trainer" / "cpu.yaml"),
            "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
            "--trainer.val_check_interval=null", "--trainer.check_val_every_n_epoch=1000",
            "--data.init_args.num_workers=1", *SETTINGS[task], *DATA[data]]
    if quick:
        args += ["--trainer.max_steps=2", "--data.init_args.num_workers=0", "--data.init_args.segment=0.5",
                 "--data.init_args.batch_size=2", "--data.init_args.generated_items=2", *QUICK[task]]
        if task != "denoise":
            args.append("--data.init_args.generated_duration=2.0")
    else:
        args += ["--trainer.max_time=null", f"--trainer.max_steps={steps}", "--trainer.max_epochs=-1"]
    folder.mkdir(parents=True, exist_ok=True)
    # One intra-op thread: on a busy machine a second thread that gets descheduled stalls every op.
    env = dict(os.environ, MUSICFX_CACHE=str(folder / "cache"), WANDB_MODE="offline", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(common.REPO), os.environ.get("PYTHONPATH", "")]))
    start, used = time.perf_counter(), _children_cpu()
    with open(folder / "fit.log", "w") as output:
        code = subprocess.run([sys.executable, "-m", "musicfx.cli", *args], cwd=folder, stdout=output,
                              stderr=subprocess.STDOUT, env=env, check=False).returncode
    wall, cpu = time.perf_counter() - start, _children_cpu() - used
    if code != 0:
        raise RuntimeError(f"training {task} on {data} failed ({code}); see {folder / 'fit.log'}")
    checkpoint = folder / common.load_recipe(recipe)["trainer"]["default_root_dir"] / "checkpoints" / "last.ckpt"
    payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
    done = int(payload["global_step"])
    log(f"  {task} on {data}: {done} steps in {wall:.0f} s ({cpu:.0f} CPU s)")
    return {"checkpoint": str(checkpoint), "steps": done, "wall_s": wall, "cpu_s": cpu}


def _children_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes (and their DataLoader workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load(checkpoint: str):
    import musicfx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return musicfx.load(checkpoint, device="cpu")


# ----------------------------------------------------------------------------------------------- denoise
def score_denoise(runs: Dict[str, Dict[str, Any]], shared: Path, quick: bool) -> Dict[str, Any]:
    import bench_denoise_quality as dq

    methods = dq.build_methods([f"{data}={run['checkpoint']}" for data, run in runs.items()], "cpu")
    del methods["spectral gate"]
    excerpts = dq.excerpt_list(4.0)
    noises = dq.noise_names()
    if quick:
        excerpts, noises = dq.spread(excerpts, 2), noises[:2]
    cache = dq.AudioCache(shared, 22050, 1)
    scores, _ = dq.evaluate(methods, excerpts, noises, (0.0, 5.0), cache, progress=False)
    summary = dq.summarize(scores, excerpts, noises, (0.0, 5.0))
    gains = {name: {noise: sum(values.values()) / len(values) for noise, values in per.items()}
             for name, per in summary["si_sdri"].items()}
    kinds = {name: {kind: value - summary["by_kind"]["noisy input"][kind] for kind, value in per.items()}
             for name, per in summary["by_kind"].items() if name != "noisy input"}
    return {"si_sdri_by_noise": gains, "si_sdri_by_music": kinds, "overall_si_sdri": summary["overall_si_sdri"]}


# ---------------------------------------------------------------------------------------------- separate
def score_separate(runs: Dict[str, Dict[str, Any]], shared: Path, folder: Path, quick: bool) -> Dict[str, Any]:
    import bench_separation as bs

    from musicfx.evaluate import evaluate_folders, evaluate_model

    root = bs.build_test_tree(shared, folder / "musdb", 4.0 if quick else None)
    out: Dict[str, Any] = {}
    for data, run in runs.items():
        estimates = folder / "estimates" / data
        evaluate_model(_load(run["checkpoint"]), root, output_dir=estimates, segment=10.0, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = evaluate_folders(root, estimates, targets=bs.FOUR_STEMS, progress=False)
        out[data] = bs._scores(report, bs.FOUR_STEMS)
    return out


# ----------------------------------------------------------------------------------------------- debleed
def phenicx_clips(shared: Path) -> torch.Tensor:
    """PHENICX parts in the t-UNet's slots: ``(1, 4, 1, time)`` at 22.05 kHz."""
    from musicfx.audio.io import read_audio

    folder = common.require_folder(shared / "phenicx-anechoic", "PHENICX-Anechoic")
    parts = [read_audio(folder / f"beethoven_{name}.wav", sample_rate=22050, channels=1)[0] for name in PHENICX_SLOTS]
    frames = min(part.shape[-1] for part in parts)
    return torch.stack([part[:, :frames] for part in parts])[None]


def score_debleed(runs: Dict[str, Dict[str, Any]], shared: Path, quick: bool) -> Dict[str, Any]:
    import bench_debleed as bd

    nz, _ = bd.nz_tour_clips(shared, 4.0, 2.0, 2 if quick else None)
    sets = {"NZ Tour": nz, "PHENICX": phenicx_clips(shared)}
    models = {data: _load(run["checkpoint"]).model.eval() for data, run in runs.items()}
    out: Dict[str, Any] = {}
    for name, stems in sets.items():
        scene = bd.bleed_scenes(stems, "linear")
        out[name] = {"microphones": bd.summarize(bd.clip_sdr(scene["mics"], scene["targets"]))}
        for data, model in models.items():
            estimates = bd.run_model(model, scene["mics"])
            out[name][data] = bd.summarize(bd.clip_sdr(estimates, scene["targets"]))
    return out


# ------------------------------------------------------------------------------------------------ report
def print_report(results: Dict[str, Any]) -> None:
    training = results["training"]
    rows = [[task, data, str(run["steps"]), fmt(run["cpu_s"], 0), fmt(run["wall_s"], 0)]
            for task, per in training.items() for data, run in per.items()]
    print("\n### Training (one process and one DataLoader worker each)\n")
    print(markdown_table(["task", "trained on", "steps", "CPU (s)", "wall (s)"], rows))
    if "denoise" in results:
        scores = results["denoise"]
        names = [name for name in scores["overall_si_sdri"] if name != "noisy input"]
        noises = list(next(iter(scores["si_sdri_by_noise"].values())))
        rows = [[noise] + [fmt(scores["si_sdri_by_noise"][n][noise]) for n in names] for noise in noises]
        kinds = list(next(iter(scores["si_sdri_by_music"].values())))
        rows += [[f"music: {kind}"] + [fmt(scores["si_sdri_by_music"][n][kind]) for n in names] for kind in kinds]
        rows.append(["**mean**"] + [fmt(scores["overall_si_sdri"][n]) for n in names])
        print("\n### Denoise (quickstart MusicECAN): SI-SDR improvement (dB), mean over 0 and 5 dB SNR\n")
        print(markdown_table(["noise / music", *[f"trained on {n}" for n in names]], rows))
    if "separate" in results:
        scores = results["separate"]
        names = list(scores)
        tracks = list(next(iter(scores.values())))
        rows = []
        for track in tracks:
            for target in next(iter(scores.values()))[track]:
                rows.append([track, target] + [fmt(scores[n][track][target]["SDR"]) for n in names])
        print("\n### Separate (small Open-Unmix): museval SDR (dB)\n")
        print(markdown_table(["track", "target", *[f"trained on {n}" for n in names]], rows))
    if "debleed" in results:
        scores = results["debleed"]
        rows = []
        for clipset, per in scores.items():
            columns = list(next(iter(per.values())))
            for column in columns:
                rows.append([clipset, column] + [fmt(per[method][column]) for method in per])
        methods = list(next(iter(scores.values())))
        print("\n### Debleed (t-UNet), linear bleed: median SDR (dB)\n")
        print(markdown_table(["clips", "track", *[m if m == "microphones" else f"trained on {m}" for m in methods]],
                             rows))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--steps", type=int, help=f"training steps of every task (default {STEPS})")
    parser.add_argument("--shared", type=Path, default=common.default_shared_data(), help="the real recordings")
    parser.add_argument("--workdir", type=Path, help="runs and estimates (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--quick", action="store_true", help="two steps per training, tiny sets: a smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    info = machine_info()
    print(machine_line(info))
    common.require_folder(args.shared, "the shared real recordings")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        steps = {task: args.steps or STEPS[task] for task in args.tasks}
        results: Dict[str, Any] = {"machine": info, "steps": steps, "quick": args.quick, "training": {}}
        for task in args.tasks:
            runs = {data: fit(task, data, work / task / data, steps[task], args.quick) for data in DATA}
            results["training"][task] = runs
            if task == "denoise":
                results[task] = score_denoise(runs, args.shared, args.quick)
            elif task == "separate":
                results[task] = score_separate(runs, args.shared, work / task, args.quick)
            else:
                results[task] = score_debleed(runs, args.shared, args.quick)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2, default=str))
        print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
