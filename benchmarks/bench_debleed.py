"""Debleed benchmarks: bleed-scene synthesis, KAMIR speed, per-stem SDR after a short training, real bleed.

1. **Synthesis**: examples per second of ``BleedData.on_after_batch_transfer`` (training mode: remix and
   gains, then the bleed) for each bleed kind, 4 tracks of 4 s at 22.05 kHz, batch 8, the room bank
   built beforehand; and the time to build the room bank, per room.
2. **KAMIR speed**: seconds of compute per minute of 4-track audio, one call on the whole minute and
   through ``musicfx debleed --method kamir``'s engine (files streamed in 30 s chunks), CPU and CUDA.
3. **Quality**: median SDR per stem (vocals, bass, drums, other) and overall on a fixed test set of mono
   22.05 kHz clips with linear bleed (and convolutive bleed, a second table), for the unprocessed
   microphones, KAMIR and each model (t-UNet, f-UNet, df-UNet, DI-CAE) after the same short CPU training,
   both musicfx's redesigns and the authors' models as published (``variant="paper"``,
   :mod:`musicfx.models.debleed_paper`, each with its paper loss, optimizer and learning rate).
   Test set: the SiSEC 2011 "Ultimate NZ Tour" stems (real recordings; other = guitar + synth) in 4 s clips
   every 2 s, and clips of the built-in generator's test songs (seed 2, as ``BleedData``'s test split);
   each clip gets its own bleed, drawn from a fixed seed with :class:`musicfx.synth.bleed.BleedSynth` (the
   seed's linear bleed: diagonal U(0.6, 1), off-diagonal U(0.05, 0.31)). SDR: museval's framewise SDR
   (1 s windows), each track scored on its own, the median over windows per clip, then the median over
   clips (per stem) or over every clip and stem (overall). Targets are the clean sources at unit gain
   (what the models learn); KAMIR cannot know a microphone's own gain (its leakage matrix has a unit
   diagonal), so it is also scored against the direct path ``A_ii s_i``.
4. **Real bleed**: Dagstuhl ChoirSet (one take, 15 microphones, no clean reference): the leakage score
   (:func:`musicfx.metrics.leakage.leakage_score`, mean inter-track coherence) before and after KAMIR and
   the best model, with the level change; the outputs are written to ``--listen-dir`` to listen to.

Models train on the built-in generator's songs (never the test songs) with linear bleed, each for the same
wall-clock budget on the CPU (or the same number of optimizer steps, ``--steps``, fairer on a shared
machine), from the recipes' architectures, loss and optimizer; 1 s examples, batch 4 (the recipes' 4 s x 8
is too slow for minutes on a CPU). The paper t-UNet's dense layers fix its input length: it is built for the
test clip's length and trains on clips of that length. A few minutes of CPU are a smoke test of learning,
not the models' quality.

Run::

    python benchmarks/bench_debleed.py [--budget 240] [--json debleed.json] [--listen-dir runs/bench-debleed]
    python benchmarks/bench_debleed.py --quick          # tiny models and sets: a smoke run of every part
    python benchmarks/bench_debleed.py --parts quality --test-bleed linear --steps 150 --models t_unet \
        t_unet_paper f_unet f_unet_paper df_unet df_unet_paper di_cae di_cae_paper   # redesign vs paper
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from common import (RECIPES, best_time, default_shared_data, fmt, instantiate, load_recipe, machine_info,
                    machine_line, markdown_table, require_folder)
from musicfx.errors import MusicfxError

RATE = 22050
#: The models' track order (the recipes') and the seed's column order.
TRACKS = ("vocals", "drums", "bass", "other")
COLUMNS = ("vocals", "bass", "drums", "other")
MODELS = ("t_unet", "f_unet", "df_unet", "di_cae")
PAPER_MODELS = tuple(f"{name}_paper" for name in MODELS)
LABELS = {"t_unet": "t-UNet", "f_unet": "f-UNet", "df_unet": "df-UNet", "di_cae": "DI-CAE"}
LABELS.update({f"{name}_paper": f"{label} (paper)" for name, label in list(LABELS.items())})
KINDS = ("linear", "convolutive", "room", "mixed")
SISEC = "sisec2011-nz-tour"
DAGSTUHL = "dagstuhl-choirset"
DAGSTUHL_TAKE = "DCS_LI_QuartetB_Take04"
VOICES = ("S1", "A2", "T2", "B2")
#: Bleed of test clip ``i`` is drawn from ``torch.Generator().manual_seed(BLEED_SEED + i)``.
BLEED_SEED = 20_000
#: Quick-run model sizes: the recipes' classes with tiny widths, for the smoke test.
QUICK_OVERRIDES: Dict[str, Dict[str, Any]] = {
    "t_unet": dict(widths=(8, 16, 32), head_width=16),
    "f_unet": dict(n_fft=256, hop_length=128, widths=(4, 8), bottleneck_width=8),
    "df_unet": dict(widths=(4, 8), bottleneck_width=8, dilations=(1, 2)),
    "di_cae": dict(n_fft=128, hop_length=64, widths=(4, 8), bottleneck=8),
    "t_unet_paper": dict(widths=(4, 8, 8), dense=(16,), pool=4),
    "f_unet_paper": dict(n_fft=255, hop_length=64, widths=(4, 8), bottleneck=8),
    "df_unet_paper": dict(widths=(4, 4, 4, 4), bottleneck=4, decoder_widths=(4, 4, 4, 4)),
    "di_cae_paper": dict(n_fft=128, hop_length=64, widths=(4, 8), bottleneck=8),
}


# ------------------------------------------------------------------------------------------- 1. synthesis
def bleed_data(kind: str, segment: float, batch_size: int, rooms: int, cache_dir: Path, **kwargs: Any):
    """A generator-backed BleedData at 22.05 kHz mono for ``kind`` (``mixed``: all three kinds)."""
    from musicfx.tasks.debleed import BleedData

    bleed = ["linear", "convolutive", "room"] if kind == "mixed" else kind
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BleedData(bleed=bleed, sample_rate=RATE, channels=1, segment=segment, batch_size=batch_size,
                         num_workers=0, rooms=rooms, cache_dir=str(cache_dir), **kwargs)


def bank_seconds_per_room(rooms: int, cache_dir: Path) -> float:
    """Wall time to compute a room bank of ``rooms`` rooms (4 sources x 4 microphones, 0.5 s), per room."""
    from musicfx.synth.rooms import RoomIRBank

    start = time.perf_counter()
    RoomIRBank(num_rooms=rooms, num_sources=4, num_microphones=4, sample_rate=RATE, seed=0, rt60=(0.2, 0.8),
               cache_dir=cache_dir, progress=False)
    return (time.perf_counter() - start) / rooms


def synthesis_throughput(kinds: Sequence[str], batch: int, seconds: float, rooms: int, repeats: int,
                         cache_dir: Path, device: torch.device) -> Dict[str, Dict[str, float]]:
    """Examples/s and ms per batch of ``on_after_batch_transfer`` in training mode, per bleed kind."""
    results: Dict[str, Dict[str, float]] = {}
    raw: Optional[Dict[str, Tensor]] = None
    for kind in kinds:
        data = bleed_data(kind, seconds, batch, rooms, cache_dir, generated_items=8, generated_duration=10.0)
        data.synth.to(device)
        data.trainer = SimpleNamespace(training=True)  # remix and gains apply, as while fitting
        data.setup("fit")
        batch_ = next(iter(data.train_dataloader()))
        if raw is None:
            raw = batch_
        # The same stems for every kind; this kind's own scene parameters.
        batch_ = {key: value.to(device) for key, value in batch_.items()}
        batch_["stems"] = raw["stems"].to(device)
        elapsed = best_time(lambda: data.on_after_batch_transfer(dict(batch_), 0), device, repeats)
        results[kind] = {"examples_per_s": batch / elapsed, "ms_per_batch": 1000 * elapsed}
    return results


# ---------------------------------------------------------------------------------------------- 2. KAMIR
def kamir_speed(seconds: float, rates: Sequence[int], devices: Sequence[torch.device], repeats: int,
                folder: Path) -> List[Dict[str, Any]]:
    """Seconds of KAMIR (paper settings) per minute of 4-track audio: whole-signal calls and the CLI engine."""
    import soundfile as sf

    from musicfx.baselines.kamir import KAMIR, kamir
    from musicfx.debleed import KAMIR_OVERLAP, KAMIR_SEGMENT, debleed_files

    rows = []
    for rate in rates:
        tracks = 0.1 * torch.randn(4, int(seconds * rate), generator=torch.Generator().manual_seed(rate))
        for device in devices:
            elapsed = best_time(lambda: kamir(tracks, rate, device=device), device, repeats)
            rows.append({"how": "kamir() on the whole signal", "rate": rate, "device": str(device),
                         "s_per_minute": elapsed * 60.0 / seconds})
        inputs = []
        for i, track in enumerate(tracks):
            inputs.append(folder / f"in{rate}" / f"track{i}.wav")
            inputs[-1].parent.mkdir(parents=True, exist_ok=True)
            sf.write(inputs[-1], track.numpy(), rate, subtype="FLOAT")
        outputs = [folder / f"out{rate}" / path.name for path in inputs]
        for device in devices:
            model = KAMIR(rate)

            def run() -> None:
                debleed_files(model, inputs, outputs, None, KAMIR_SEGMENT, KAMIR_OVERLAP, device=device,
                              progress=False)

            elapsed = best_time(run, device, repeats, warmup=0)
            rows.append({"how": f"musicfx debleed (files, {KAMIR_SEGMENT:g} s chunks)", "rate": rate,
                         "device": str(device), "s_per_minute": elapsed * 60.0 / seconds})
    return rows


# -------------------------------------------------------------------------------------------- 3. quality
def clip_offsets(duration: float, clip: float, step: float) -> List[float]:
    """Offsets (s) of ``clip``-second clips every ``step`` seconds that fit in ``duration``."""
    count = int(math.floor((duration - clip) / step + 1e-9)) + 1
    return [i * step for i in range(max(0, count))]


def nz_tour_clips(shared: Path, clip: float, step: float, max_clips: Optional[int]) -> Tuple[Tensor, List[str]]:
    """The NZ Tour stems as ``(clips, 4, 1, time)`` in :data:`TRACKS` order (other = guitar + synth)."""
    from musicfx.audio.io import read_audio

    folder = require_folder(shared / SISEC, "the SiSEC 2011 NZ Tour stems")
    stems = {name: read_audio(folder / f"{name}.wav", sample_rate=RATE, channels=1)[0]
             for name in ("vocals", "drums", "bass", "guitar", "synth")}
    stems["other"] = stems.pop("guitar") + stems.pop("synth")
    length = min(audio.shape[-1] for audio in stems.values())
    frames = int(round(clip * RATE))
    offsets = clip_offsets(length / RATE, clip, step)[:max_clips]
    clips = [torch.stack([stems[name][:, int(round(o * RATE)):int(round(o * RATE)) + frames] for name in TRACKS])
             for o in offsets]
    return torch.stack(clips), [f"nz-tour @{o:g}s" for o in offsets]


def generated_clips(count: int, clip: float) -> Tuple[Tensor, List[str]]:
    """Songs of the generator's test split (seed 2), one clip each, ``(count, 4, 1, time)``."""
    from musicfx.data.sources import GeneratedMusic

    source = GeneratedMusic(num_items=count, duration=clip, sample_rate=RATE, channels=1, seed=2, stems=TRACKS)
    frames = int(round(clip * RATE))
    return torch.stack([source.read(i, 0, frames) for i in range(count)]), [source.name(i) for i in range(count)]


def bleed_scenes(stems: Tensor, kind: str) -> Dict[str, Tensor]:
    """Fixed bleed per clip: ``mics``, ``targets`` (sources) and ``direct`` (``A_ii s_i``), each (N, 4, T)."""
    from torch.utils.data import default_collate

    from musicfx.synth.bleed import BleedSynth

    synth = BleedSynth(kind=kind, num_tracks=len(TRACKS), sample_rate=RATE)
    params = default_collate([synth.draw(torch.Generator().manual_seed(BLEED_SEED + i)) for i in range(len(stems))])
    mics, targets = synth(stems, params)
    own = torch.diagonal(params["gains"], dim1=1, dim2=2)[..., None]
    return {"mics": mics[:, :, 0], "targets": targets[:, :, 0], "direct": targets[:, :, 0] * own}


def clip_sdr(estimates: Tensor, references: Tensor) -> Tensor:
    """(N, M, T) -> (N, M): museval SDR per 1 s window, each track on its own, median over windows."""
    from musicfx.metrics import museval_sdr, nanmedian

    n, m, t = estimates.shape
    windows = museval_sdr(estimates.reshape(n * m, 1, 1, t), references.reshape(n * m, 1, 1, t), RATE)
    return nanmedian(windows[:, 0].clamp(max=100.0), dim=-1).reshape(n, m)


def summarize(scores: Tensor) -> Dict[str, float]:
    """(N, 4) clip SDRs in :data:`TRACKS` order -> median per stem over clips, and overall."""
    from musicfx.metrics import nanmedian

    summary = {name: float(nanmedian(scores[:, TRACKS.index(name)], dim=0)) for name in COLUMNS}
    summary["overall"] = float(nanmedian(scores.flatten(), dim=0))
    return summary


def train(name: str, budget: float, segment: float, batch_size: int, cache_dir: Path, quick: bool,
          steps: Optional[int] = None, clip: float = 4.0) -> Tuple[torch.nn.Module, Dict[str, float]]:
    """Train the recipe's model on generated songs with linear bleed for ``budget`` seconds of wall time, or
    ``steps`` optimizer steps when given."""
    import lightning.pytorch as pl

    from musicfx.tasks.debleed import DebleedTask

    recipe = load_recipe(RECIPES / "debleed" / f"{name}.yaml")
    init = recipe["model"]["init_args"]
    torch.manual_seed(0)
    overrides = dict(QUICK_OVERRIDES[name]) if quick else {}
    overrides["tracks"] = TRACKS  # the network declares its tracks: the bench's order, whatever the recipe's
    if name == "t_unet_paper":
        # Its dense layers fix the input length: the test clip's, and it trains on clips that long.
        overrides["length"] = int(round(clip * RATE))
        segment = clip
    model = instantiate(init["model"], **overrides)
    optimizer_spec = init["optimizer"]
    module_name, _, class_name = optimizer_spec["class_path"].rpartition(".")
    optimizer_cls = getattr(__import__(module_name, fromlist=[class_name]), class_name)
    optimizer_args = dict(optimizer_spec.get("init_args") or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = DebleedTask(model, instantiate(init["loss"]), tracks=TRACKS, sample_rate=RATE,
                           matrix_weight=init.get("matrix_weight", 1.0),
                           optimizer=lambda params: optimizer_cls(params, **optimizer_args))
        data = bleed_data("linear", segment, batch_size, 1, cache_dir, train_examples=10**7,
                          generated_items=8 if quick else 64, generated_duration=4.0 if quick else 20.0)
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_time=None if steps else {"seconds": budget},
            max_steps=steps or -1, max_epochs=-1, limit_val_batches=0,
            num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, gradient_clip_val=recipe["trainer"].get("gradient_clip_val"),
        )
        start = time.perf_counter()
        trainer.fit(task, datamodule=data)
        wall = time.perf_counter() - start
    info = {"steps": int(trainer.global_step), "wall_s": wall, "examples": int(trainer.global_step) * batch_size,
            "segment_s": segment,
            "parameters": sum(p.numel() for p in model.parameters())}
    return model.eval(), info


@torch.no_grad()
def run_model(model: torch.nn.Module, mics: Tensor, batch: int = 1) -> Tensor:
    """The model on every clip, ``batch`` clips per call (DI-CAE needs ~0.5 GB per 4 s clip of 4 tracks)."""
    return torch.cat([model(mics[i:i + batch]).float() for i in range(0, len(mics), batch)])


def run_kamir(mics: Tensor) -> Tensor:
    """KAMIR with the paper's settings on every clip ``(N, M, T)``, one clip at a time."""
    from musicfx.baselines.kamir import kamir

    return torch.stack([kamir(clip, RATE) for clip in mics])


# ------------------------------------------------------------------------------------------- 4. Dagstuhl
def dagstuhl_sets(shared: Path) -> Dict[str, List[Path]]:
    """Microphone sets of the Dagstuhl take: all 15, the 4 dynamic close microphones, the 4 larynx ones."""
    folder = require_folder(shared / DAGSTUHL, "the Dagstuhl ChoirSet excerpt")
    every = sorted(folder.glob(f"{DAGSTUHL_TAKE}_*.wav"))
    if len(every) != 15:
        raise MusicfxError(f"{folder}: expected the 15 microphones of {DAGSTUHL_TAKE}, found {len(every)}")
    return {
        "all 15 microphones": every,
        "4 dynamic (DYN)": [folder / f"{DAGSTUHL_TAKE}_{voice}_DYN.wav" for voice in VOICES],
        "4 larynx (LRX)": [folder / f"{DAGSTUHL_TAKE}_{voice}_LRX.wav" for voice in VOICES],
    }


def level_change_db(inputs: Sequence[Path], outputs: Sequence[Path]) -> float:
    """Mean over tracks of the output's RMS level relative to the input's, dB."""
    from musicfx.audio.io import read_audio

    changes = []
    for source, target in zip(inputs, outputs):
        before, after = read_audio(source)[0], read_audio(target)[0]
        changes.append(10 * math.log10(float(after.square().mean()) / float(before.square().mean())))
    return sum(changes) / len(changes)


def dagstuhl(shared: Path, listen_dir: Path, model: Optional[Tuple[str, torch.nn.Module]],
             n_ffts: Sequence[int]) -> List[Dict[str, Any]]:
    """Leakage before/after KAMIR (and the model on the 4-voice sets), outputs under ``listen_dir``."""
    from musicfx.baselines.kamir import KAMIR
    from musicfx.debleed import (KAMIR_OVERLAP, KAMIR_SEGMENT, MODEL_OVERLAP, MODEL_SEGMENT, debleed_files,
                                          file_leakage)

    rows = []
    for label, inputs in dagstuhl_sets(shared).items():
        before = file_leakage(inputs)
        methods: List[Tuple[str, Any, Optional[int], float, float]] = [
            (f"KAMIR n_fft {n}", KAMIR(RATE, n_fft=n), None, KAMIR_SEGMENT, KAMIR_OVERLAP) for n in n_ffts
        ]
        if model is not None and len(inputs) == len(TRACKS):
            methods.append((model[0], model[1], RATE, MODEL_SEGMENT, MODEL_OVERLAP))
        for method, fn, rate, segment, overlap in methods:
            slug = "-".join(f"{label} {method}".replace("(", "").replace(")", "").lower().split())
            outputs = [listen_dir / "dagstuhl" / slug / path.name for path in inputs]
            with torch.no_grad():
                debleed_files(fn, inputs, outputs, rate, segment, overlap, progress=False)
            rows.append({"set": label, "method": method, "before": before, "after": file_leakage(outputs),
                         "level_db": level_change_db(inputs, outputs), "folder": str(outputs[0].parent)})
    return rows


# ---------------------------------------------------------------------------------------------------- main
def _print_quality(title: str, results: Dict[str, Dict[str, float]]) -> None:
    print(f"\n### {title}\n")
    rows = [[name] + [fmt(scores[column]) for column in COLUMNS + ("overall",)] for name, scores in results.items()]
    print(markdown_table(["method"] + list(COLUMNS) + ["overall"], rows))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared_data(), help="the real recordings")
    parser.add_argument("--parts", nargs="+", default=["synthesis", "kamir", "quality", "dagstuhl"],
                        choices=["synthesis", "kamir", "quality", "dagstuhl"])
    parser.add_argument("--budget", type=float, default=240.0, help="training seconds per model (default 240)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS + PAPER_MODELS)
    parser.add_argument("--steps", type=int, default=None,
                        help="train each model for this many optimizer steps instead of --budget seconds")
    parser.add_argument("--segment", type=float, default=1.0, help="training example length, s")
    parser.add_argument("--batch-size", type=int, default=4, help="training batch")
    parser.add_argument("--clip", type=float, default=4.0, help="test clip length, s")
    parser.add_argument("--generated-clips", type=int, default=8, help="test clips from generated songs")
    parser.add_argument("--max-nz-clips", type=int, default=None, help="at most this many NZ Tour clips")
    parser.add_argument("--test-bleed", nargs="+", default=["linear", "convolutive"], choices=["linear", "convolutive"])
    parser.add_argument("--rooms", type=int, default=8, help="rooms built for the bank timing")
    parser.add_argument("--synth-batch", type=int, default=8, help="batch of the synthesis timing")
    parser.add_argument("--synth-seconds", type=float, default=4.0, help="example length of the synthesis timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kamir-seconds", type=float, default=60.0, help="audio per KAMIR timing")
    parser.add_argument("--listen-dir", type=Path, default=Path("runs/bench-debleed"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--quick", action="store_true", help="tiny models, sets and timings: a smoke run")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.quick:
        args.budget, args.segment, args.batch_size, args.clip = min(args.budget, 3.0), 0.5, 2, 2.0
        args.generated_clips, args.max_nz_clips, args.rooms, args.repeats = 2, 2, 1, 1
        args.kamir_seconds, args.synth_batch, args.synth_seconds = 4.0, 2, 1.0
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = _run(args)
    except MusicfxError as error:
        print(f"bench_debleed: error: {error}", file=sys.stderr)
        return 1
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _run(args: argparse.Namespace) -> Dict[str, Any]:
    info = machine_info()
    print(machine_line(info))
    report: Dict[str, Any] = {"machine": info, "settings": {k: str(v) for k, v in vars(args).items()}}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory(prefix="bench-debleed-") as scratch:
        scratch_dir = Path(scratch)
        if "synthesis" in args.parts:
            per_room = bank_seconds_per_room(args.rooms, scratch_dir / "cache")
            report["bank_s_per_room"] = per_room
            report["synthesis"] = {}
            rows = []
            for device in devices:
                results = synthesis_throughput(KINDS, args.synth_batch, args.synth_seconds, args.rooms, args.repeats,
                                               scratch_dir / "cache", device)
                report["synthesis"][str(device)] = results
                rows += [[kind, str(device), fmt(r["examples_per_s"], 1), fmt(r["ms_per_batch"], 1)]
                         for kind, r in results.items()]
            print(f"\n### Bleed synthesis (BleedData.on_after_batch_transfer, training mode; 4 tracks x "
                  f"{args.synth_seconds:g} s at 22.05 kHz, batch {args.synth_batch})\n")
            print(markdown_table(["bleed kind", "device", "examples/s", "ms per batch"], rows))
            print(f"\nRoom bank: {per_room:.2f} s per room (4 sources x 4 microphones, 0.5 s responses, "
                  f"image sources up to order 20; {args.rooms} rooms built)")
        if "kamir" in args.parts:
            rows_k = kamir_speed(args.kamir_seconds, (22050, 44100), devices, args.repeats, scratch_dir / "kamir")
            report["kamir_speed"] = rows_k
            print(f"\n### KAMIR speed (n_fft 8192, overlap 0.9, 5 iterations; 4 tracks, {args.kamir_seconds:g} s)\n")
            print(markdown_table(["how", "rate (Hz)", "device", "s per minute of audio"],
                                 [[r["how"], r["rate"], r["device"], fmt(r["s_per_minute"])] for r in rows_k]))
        best: Optional[Tuple[str, torch.nn.Module]] = None
        if "quality" in args.parts:
            best = _quality(args, report, scratch_dir)
        if "dagstuhl" in args.parts:
            rows_d = dagstuhl(args.shared, args.listen_dir, best, (8192, 2048))
            report["dagstuhl"] = rows_d
            print("\n### Real bleed: Dagstuhl ChoirSet (1 s, 22.05 kHz), leakage score before -> after\n")
            print(markdown_table(["microphones", "method", "before", "after", "level change (dB)"],
                                 [[r["set"], r["method"], fmt(r["before"], 3), fmt(r["after"], 3), fmt(r["level_db"], 1)]
                                  for r in rows_d]))
            print(f"\nOutputs to listen to: {args.listen_dir / 'dagstuhl'}/")
    return report


def _quality(args: argparse.Namespace, report: Dict[str, Any], scratch: Path) -> Optional[Tuple[str, torch.nn.Module]]:
    """Part 3; returns the best model by overall SDR on linear bleed (label, module), if any was trained."""
    nz, nz_names = nz_tour_clips(args.shared, args.clip, args.clip / 2, args.max_nz_clips)
    generated, generated_names = generated_clips(args.generated_clips, args.clip)
    stems = torch.cat([nz, generated])
    subsets = {"nz-tour (real stems)": slice(0, len(nz)), "generator": slice(len(nz), len(stems))}
    report["test_set"] = {"clips": nz_names + generated_names, "clip_s": args.clip}
    trained: Dict[str, Tuple[torch.nn.Module, Dict[str, float]]] = {}
    for name in args.models:
        trained[name] = train(name, args.budget, args.segment, args.batch_size, scratch / "cache", args.quick,
                              args.steps, args.clip)
    report["training"] = {LABELS[name]: info for name, (_, info) in trained.items()}
    budget = f"{args.steps} optimizer steps" if args.steps else f"{args.budget:g} s of CPU wall time"
    print(f"\n### Training (linear bleed, generated songs, {args.segment:g} s x {args.batch_size} per step, "
          f"{budget} each)\n")
    print(markdown_table(["model", "parameters", "steps", "examples", "example (s)", "wall (s)"],
                         [[LABELS[n], f"{i['parameters']:,}", i["steps"], i["examples"], fmt(i["segment_s"], 1),
                           fmt(i["wall_s"], 0)] for n, (_, i) in trained.items()]))
    report["quality"] = {}
    best: Optional[Tuple[str, torch.nn.Module]] = None
    for kind in args.test_bleed:
        scene = bleed_scenes(stems, kind)
        outputs = {"unprocessed": scene["mics"], "KAMIR": run_kamir(scene["mics"])}
        for name, (model, _) in trained.items():
            outputs[LABELS[name]] = run_model(model, scene["mics"])
        scores = {method: clip_sdr(out, scene["targets"]) for method, out in outputs.items()}
        for method in ("unprocessed", "KAMIR"):
            scores[f"{method}, vs A_ii s_i"] = clip_sdr(outputs[method], scene["direct"])
        results = {method: summarize(value) for method, value in scores.items()}
        by_subset = {method: {subset: summarize(value[rows])["overall"] for subset, rows in subsets.items()}
                     for method, value in scores.items()}
        report["quality"][kind] = {"summary": results, "overall_by_subset": by_subset,
                                   "per_clip": {m: v.tolist() for m, v in scores.items()}}
        _print_quality(f"Median SDR (dB), {kind} bleed, {len(stems)} clips of {args.clip:g} s", results)
        print()
        print(markdown_table(["method"] + list(subsets),
                             [[m] + [fmt(v[s]) for s in subsets] for m, v in by_subset.items()]))
        if kind == "linear" and trained:
            name = max(trained, key=lambda n: results[LABELS[n]]["overall"])
            best = (LABELS[name], trained[name][0])
    return best


if __name__ == "__main__":
    sys.exit(main())
