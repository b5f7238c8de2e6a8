"""``musicfx restore`` benchmarks: time and memory per minute of an 8-track session, quality per stage.

1. **Speed and memory**: ``musicfx restore`` (the defaults: KAMIR, spectral gate, built-in FxNorm, sum)
   on an 8-track, mono 44.1 kHz session, each run its own process (:data:`common.PEAK_RSS_PROBE`: the
   whole process's peak resident set, the report picture included): seconds per stage per minute of
   session and peak RSS, for a 1-minute and a 10-minute session. ``--baseline CHECKOUT`` runs another
   checkout's code on the same 1-minute session, interleaved with this one's (best of ``--repeats``), so
   a speed-up is measured side by side under the same load; the runs' CPU time (user + system) is
   reported too, as other processes on a shared machine stretch the wall time much more than it. The tracks are the five NZ Tour stems and
   three more mixed from them, through a linear bleed scene, looped to the asked length, with fresh white
   noise at -50 dBFS RMS.
2. **Quality, NZ Tour**: the five SiSEC 2011 "Ultimate NZ Tour" stems (mono, 44.1 kHz) through a
   :class:`musicfx.synth.bleed.BleedSynth` scene (linear and convolutive, seed 1, the seed's linear
   ranges) plus white noise at -50 dBFS RMS; SI-SDR of every cleaned track against its own source at its
   direct gain (KAMIR cannot see absolute gains), the mean over tracks, for the input, each stage alone and
   the chain; and the leakage (mean inter-track coherence) of each.
3. **Real bleed, Dagstuhl ChoirSet**: the take's microphones (22.05 kHz mono, 1 s; no clean reference):
   leakage before and after ``--debleed kamir`` (denoise and normalize off, as the leakage is a property of
   the cleaned tracks), for all 15 microphones and for the 4 dynamic ones (one per singer, the set KAMIR's
   model assumes), and a control: the same tracks each circularly shifted by a different offset, so no two
   share anything at the same instant. What the measure gives the control is its floor on this take
   (the estimator's bias from few frames), not bleed; the frames that carry each bin's energy
   (:func:`effective_frames`) say how large that bias is. For scale, the same on 16 s of the NZ Tour
   stems without and with linear bleed.

Run::

    nice python benchmarks/bench_restore.py [--minutes 1 10] [--baseline /path/to/other/checkout] [--json r.json]
    nice python benchmarks/bench_restore.py --quick     # 10 s and 40 s sessions, 2 s quality clips
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from musicfx.metrics.sdr import si_sdr  # noqa: E402
from musicfx.restore import restore  # noqa: E402
from musicfx.synth.bleed import BleedSynth  # noqa: E402

NZ = ("vocals", "drums", "bass", "guitar", "synth")
SPEED_TRACKS = NZ + ("room_left", "room_right", "keys_mic")
SR = 44100
NOISE = 0.003  # white noise, -50 dBFS RMS
STAGES = (("input", "none", "none"), ("debleed only", "kamir", "none"), ("denoise only", "none", "spectral-gate"),
          ("chain", "kamir", "spectral-gate"))


def _stems(shared: Path, seconds: float, start: float = 4.0) -> torch.Tensor:
    folder = common.require_folder(shared / "sisec2011-nz-tour", "the NZ Tour stems")
    return torch.stack([
        torch.tensor(sf.read(folder / f"{name}.wav", dtype="float32", start=int(start * SR),
                             frames=int(seconds * SR))[0].mean(1))[None] for name in NZ
    ])  # (5, 1, time)


def _bleed(clean: torch.Tensor, kind: str, noise: float = NOISE) -> tuple:
    synth = BleedSynth(num_tracks=clean.shape[0], sample_rate=SR, kind=kind, target="direct")
    params = synth.draw(torch.Generator().manual_seed(1))
    mics, targets = synth(clean[None], {key: value[None] for key, value in params.items()})
    return mics[0] + noise * torch.randn(mics[0].shape, generator=torch.Generator().manual_seed(2)), targets[0]


def _write(folder: Path, names: List[str], tracks: torch.Tensor) -> Path:
    folder.mkdir(parents=True)
    for name, audio in zip(names, tracks):
        sf.write(folder / f"{name}.wav", audio[0].numpy(), SR, subtype="FLOAT")
    return folder


# --------------------------------------------------------------------------------------- speed and memory
def write_session(shared: Path, folder: Path, seconds: float) -> Path:
    """An 8-track session of ``seconds``, written block by block (a 10-minute one never sits in memory).

    The 18 s of the NZ Tour stems plus three tracks mixed from them go through one linear bleed scene (an
    instantaneous mixing matrix, so the 18 s period loops seamlessly); each block gets fresh noise.
    """
    clean = _stems(shared, 18.0, start=0.0)
    extra = torch.stack([0.5 * clean[0] + 0.3 * clean[3], 0.6 * clean[1] + 0.2 * clean[2],
                         0.4 * clean[4] + 0.4 * clean[0]])
    period, _ = _bleed(torch.cat([clean, extra]), "linear", noise=0.0)  # (8, 1, 18 s)
    period = period[:, 0]
    folder.mkdir(parents=True)
    total, length = int(seconds * SR), period.shape[-1]
    generator = torch.Generator().manual_seed(2)
    files = [sf.SoundFile(str(folder / f"{name}.wav"), "w", SR, 1, subtype="FLOAT") for name in SPEED_TRACKS]
    try:
        for start in range(0, total, length):
            block = period[:, : min(length, total - start)]
            block = block + NOISE * torch.randn(block.shape, generator=generator)
            for handle, audio in zip(files, block):
                handle.write(audio.numpy())
    finally:
        for handle in files:
            handle.close()
    return folder


def run_restore(code_root: Path, session: Path, out: Path, threads: int, args: Sequence[str] = ()) -> Dict[str, Any]:
    """``musicfx restore SESSION -o OUT`` in its own process, importing musicfx from ``code_root``.

    Returns:
        ``wall`` seconds of the whole process, ``peak_rss_mb`` (VmHWM) and the report's per-stage ``seconds``.

    Raises:
        RuntimeError: the command failed (its output is included).
    """
    cli = ["restore", str(session), "-o", str(out), "--overwrite", "-q", *args]
    env = dict(os.environ, PYTHONPATH=str(code_root), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", common.PEAK_RSS_PROBE, *cli], capture_output=True, text=True,
                            check=False, env=env, cwd=str(session.parent))  # cwd: not a checkout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the child (user + system): on a shared machine other processes stretch the wall time,
    # much less the CPU time the work itself takes.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"musicfx {' '.join(cli)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    shutil.rmtree(out)
    return {"wall": wall, "cpu": cpu, "peak_rss_mb": int(lines[-1].split()[1]) / 1024.0, "seconds": report["seconds"]}


def _per_minute(run: Dict[str, Any], seconds: float) -> Dict[str, Any]:
    scale = 60.0 / seconds
    return {"wall_per_minute": run["wall"] * scale, "cpu_per_minute": run["cpu"] * scale, "peak_rss_mb": run["peak_rss_mb"],
            "per_minute": {stage: value * scale for stage, value in run["seconds"].items()}}


def speed(shared: Path, work: Path, lengths: Sequence[float], baseline: Optional[Path], repeats: int,
          threads: int, extra_args: Sequence[str] = ()) -> Dict[str, Any]:
    """Time and peak RSS of ``musicfx restore`` per session length (this checkout), and the baseline's
    time on the first length, interleaved with this checkout's (best of ``repeats`` each)."""
    rows: Dict[str, Any] = {"tracks": len(SPEED_TRACKS), "lengths": {}, "args": list(extra_args)}
    for index, seconds in enumerate(lengths):
        session = write_session(shared, work / f"session-{seconds:g}s", seconds)
        codes = {"this": common.REPO}
        if index == 0 and baseline is not None:
            codes["baseline"] = baseline
        best: Dict[str, Dict[str, Any]] = {}
        for _ in range(repeats if index == 0 else 1):
            for label, root in codes.items():
                run = run_restore(root, session, work / f"out-{label}", threads, extra_args)
                print(f"  {label}, {seconds:g} s session: {run['wall']:.1f} s ({run['cpu']:.1f} s CPU), peak RSS "
                      f"{run['peak_rss_mb']:.0f} MiB", flush=True)
                if label not in best or run["wall"] < best[label]["wall"]:
                    best[label] = run
        rows["lengths"][f"{seconds:g}"] = {label: _per_minute(run, seconds) for label, run in best.items()}
        shutil.rmtree(session)  # a 10-minute session is 850 MB of float WAV
    return rows


def quality(shared: Path, work: Path, seconds: float) -> Dict[str, Any]:
    clean = _stems(shared, seconds)
    results: Dict[str, Any] = {}
    for kind in ("linear", "convolutive"):
        mics, targets = _bleed(clean, kind)
        session = _write(work / f"q-{kind}", list(NZ), mics)
        rows = {}
        for label, debleed, denoise in STAGES:
            out = work / f"q-{kind}-{label.replace(' ', '-')}"
            report = restore(session, out, debleed=debleed, denoise=denoise, normalize="none", progress=False,
                             plot=False)
            estimates = torch.stack([torch.tensor(sf.read(out / "tracks" / f"{n}.wav", dtype="float32")[0])[None]
                                     for n in NZ])
            floors = [t["noise_floor_dbfs"]["after"] for t in report["tracks"].values()]
            rows[label] = {"si_sdr": float(si_sdr(estimates, targets).mean()), "leakage": report["leakage"]["after"],
                           "noise_floor_dbfs": sum(floors) / len(floors)}
        results[kind] = rows
    return results


def _choir_session(files: Sequence[Path], folder: Path, shifted: bool) -> Path:
    """The tracks copied into ``folder``; ``shifted``: track ``i`` circularly shifted by ``i / len(files)`` of
    its length, so no two tracks hold the same instant (nothing in common but the voices' spectra)."""
    folder.mkdir(parents=True)
    for index, path in enumerate(files):
        audio, rate = sf.read(path, dtype="float32")
        if shifted:
            audio = np.roll(audio, index * audio.shape[0] // len(files), axis=0)
        sf.write(folder / path.name, audio, rate, subtype="FLOAT")
    return folder


def effective_frames(files: Sequence[Path], n_fft: int = 2048, hop: int = 512) -> float:
    """Mean over tracks and bins of ``(sum_t p)^2 / sum_t p^2`` (``p``: a bin's power per frame, at the leakage
    measure's STFT): how many frames carry a bin's energy. Coherence from ``K`` such frames is biased up by
    about ``1 / K`` for unrelated tracks."""
    from musicfx.audio.io import read_audio
    from musicfx.audio.spectral import stft

    power = stft(torch.stack([read_audio(path)[0].mean(0) for path in files]), n_fft, hop).abs().square()
    return float((power.sum(-1).square() / power.square().sum(-1).clamp_min(1e-30)).mean())


def choir(shared: Path, work: Path) -> Dict[str, Any]:
    """Leakage before and after KAMIR on the Dagstuhl take (all 15 microphones, the 4 dynamic ones) and on
    the time-shifted control of each set; and, for scale, on 16 s of the NZ Tour stems with no bleed and
    with linear bleed."""
    folder = common.require_folder(shared / "dagstuhl-choirset", "the Dagstuhl ChoirSet take")
    every = sorted(folder.glob("*.wav"))
    sessions = {}
    for label, files in (("all 15", every), ("4 dynamic (DYN)", [p for p in every if p.stem.endswith("_DYN")])):
        for shifted in (False, True):
            slug = f"choir-{len(files)}-{'shifted' if shifted else 'take'}"
            sessions[f"{label}{', shifted control' if shifted else ''}"] = _choir_session(files, work / slug, shifted)
    clean = _stems(shared, 16.0)
    sessions["NZ Tour 16 s, no bleed"] = _write(work / "nz-clean", list(NZ), clean)
    sessions["NZ Tour 16 s, linear bleed"] = _write(work / "nz-bleed", list(NZ), _bleed(clean, "linear", 0.0)[0])
    rows: Dict[str, Any] = {}
    for label, session in sessions.items():
        out = work / f"{session.name}-out"
        report = restore(session, out, debleed="kamir", denoise="none", normalize="none", progress=False, plot=False)
        inputs = sorted(session.glob("*.wav"))
        outputs = [out / "tracks" / path.name for path in inputs]
        levels = [10 * math.log10(float(np.square(sf.read(b)[0]).mean()) / float(np.square(sf.read(a)[0]).mean()))
                  for a, b in zip(inputs, outputs)]
        rows[label] = {"tracks": len(inputs), "sample_rate": report["sample_rate"],
                       "seconds": report["duration_seconds"], "leakage": report["leakage"],
                       "level_change_db": sum(levels) / len(levels),
                       "frames": {"before": effective_frames(inputs), "after": effective_frames(outputs)}}
    return rows


def _print_speed(result: Dict[str, Any]) -> None:
    lengths = result["lengths"]
    first = next(iter(lengths))
    runs = lengths[first]
    labels = list(runs)
    stages = list(dict.fromkeys(stage for run in runs.values() for stage in run["per_minute"]))
    note = f" ({' '.join(result['args'])})" if result["args"] else ""
    print(f"\n{result['tracks']}-track session, {float(first):g} s{note}: seconds per minute of session")
    header = ["stage"] + labels + (["baseline / this"] if "baseline" in runs else [])
    rows = []
    totals = {"whole process": "wall_per_minute", "whole process, CPU time": "cpu_per_minute"}
    for stage in stages + list(totals):
        values = [runs[label][totals[stage]] if stage in totals else runs[label]["per_minute"].get(stage)
                  for label in labels]
        # A stage one version does not time (the baseline had no "plot") is a dash.
        ratio = ([common.fmt(values[1] / values[0], 2) + "x" if values[0] and values[1] is not None else "-"]
                 if "baseline" in runs else [])
        rows.append([stage] + [common.fmt(v, 1) for v in values] + ratio)
    print(common.markdown_table(header, rows))
    print("\nPeak RSS of the whole process (this checkout)")
    peaks = [[f"{float(key):g} s", common.fmt(value["this"]["peak_rss_mb"], 0) + " MiB",
              common.fmt(value["this"]["wall_per_minute"], 1)] for key, value in lengths.items()]
    print(common.markdown_table(["session", "peak RSS", "s per minute"], peaks))
    if len(lengths) > 1:
        values = [value["this"]["peak_rss_mb"] for value in lengths.values()]
        print(f"longest / shortest session: peak RSS {values[-1] / values[0]:.2f}x")


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0],
                        help="lengths of the 8-track sessions (speed on the first, peak RSS on all)")
    parser.add_argument("--baseline", type=Path, help="another checkout (its root) to time on the first session")
    parser.add_argument("--repeats", type=int, default=2, help="runs per checkout on the first session (best kept)")
    parser.add_argument("--debleed-none-too", action="store_true",
                        help="also measure every session with --debleed none (memory without KAMIR's chunks)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the NZ Tour quality clip")
    parser.add_argument("--shared-data", type=Path, default=common.default_shared_data())
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", nargs="+", default=["speed", "quality", "choir"],
                        choices=["speed", "quality", "choir"])
    parser.add_argument("--workdir", type=Path, help="where to write the sessions (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lengths, clip = ([10.0, 40.0], 2.0) if args.quick else ([m * 60.0 for m in args.minutes], args.seconds)
    repeats = 1 if args.quick else args.repeats
    info = common.machine_info()
    print(common.machine_line(info), flush=True)
    result: Dict[str, Any] = {"machine": info}
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        work = Path(folder)
        if "speed" in args.parts:
            result["speed"] = speed(args.shared_data, work, lengths, args.baseline, repeats, args.threads)
            if args.debleed_none_too:
                result["speed_no_debleed"] = speed(args.shared_data, work / "no-debleed", lengths, None, 1,
                                                   args.threads, ["--debleed", "none"])
        if "quality" in args.parts:
            result["quality"] = quality(args.shared_data, work, clip)
        if "choir" in args.parts:
            result["choir"] = choir(args.shared_data, work)
    result["machine_after"] = common.machine_info()
    if args.json is not None:  # first: a long run's numbers survive a failure below
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(common.machine_line(info) + f" (load {result['machine_after']['load_average_1min']} at the end)")
    for key in ("speed", "speed_no_debleed"):
        if key in result:
            _print_speed(result[key])
    for kind, rows in result.get("quality", {}).items():
        print(f"\nNZ Tour, {kind} bleed + noise, {clip:g} s, 5 tracks")
        print(common.markdown_table(["tracks", "SI-SDR dB", "leakage", "noise floor dBFS"],
                                    [[label, common.fmt(r["si_sdr"]), common.fmt(r["leakage"], 4),
                                      common.fmt(r["noise_floor_dbfs"], 1)] for label, r in rows.items()]))
    if "choir" in result:
        print("\nDagstuhl ChoirSet (1 s, 22.05 kHz) and NZ Tour (16 s, 44.1 kHz): leakage before -> after KAMIR")
        print(common.markdown_table(
            ["tracks", "leakage before", "after KAMIR", "level change dB", "frames per bin before", "after"],
            [[label, common.fmt(r["leakage"]["before"], 4), common.fmt(r["leakage"]["after"], 4),
              common.fmt(r["level_change_db"], 1), common.fmt(r["frames"]["before"], 1),
              common.fmt(r["frames"]["after"], 1)] for label, r in result["choir"].items()]))
    return result


if __name__ == "__main__":
    main()
