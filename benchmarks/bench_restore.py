"""``musicfx restore`` benchmarks: time per minute of an 8-track session, quality per stage.

1. **Speed**: seconds per stage (debleed, denoise, normalize, mix, measure) to restore an 8-track session,
   reported per minute of session. The tracks are the five NZ Tour stems and three more made from them
   (looped to the asked length, each its own mix of the stems with bleed), mono 44.1 kHz; no report
   picture (matplotlib is not what is timed).
2. **Quality, NZ Tour**: the five SiSEC 2011 "Ultimate NZ Tour" stems (mono, 44.1 kHz) through a
   :class:`musicfx.synth.bleed.BleedSynth` scene (linear and convolutive, seed 1, the seed's linear
   ranges) plus white noise at -50 dBFS RMS; SI-SDR of every cleaned track against its own source at its
   direct gain (KAMIR cannot see absolute gains), the mean over tracks, for the input, each stage alone and
   the chain; and the leakage (mean inter-track coherence) of each.
3. **Real bleed, Dagstuhl ChoirSet**: the take's 15 microphones (22.05 kHz mono, 1 s; no clean reference):
   leakage before and after ``--debleed kamir`` (denoise and normalize off, as the leakage is a property of
   the cleaned tracks).

Run::

    nice python benchmarks/bench_restore.py [--minutes 1] [--json restore.json]
    nice python benchmarks/bench_restore.py --quick     # 10 s session, 2 s quality clips
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from musicfx.metrics.sdr import si_sdr  # noqa: E402
from musicfx.restore import restore  # noqa: E402
from musicfx.synth.bleed import BleedSynth  # noqa: E402

NZ = ("vocals", "drums", "bass", "guitar", "synth")
SR = 44100
STAGES = (("input", "none", "none"), ("debleed only", "kamir", "none"), ("denoise only", "none", "spectral-gate"),
          ("chain", "kamir", "spectral-gate"))


def _stems(shared: Path, seconds: float, start: float = 4.0) -> torch.Tensor:
    folder = common.require_folder(shared / "sisec2011-nz-tour", "the NZ Tour stems")
    return torch.stack([
        torch.tensor(sf.read(folder / f"{name}.wav", dtype="float32", start=int(start * SR),
                             frames=int(seconds * SR))[0].mean(1))[None] for name in NZ
    ])  # (5, 1, time)


def _bleed(clean: torch.Tensor, kind: str, noise: float = 0.003) -> tuple:
    synth = BleedSynth(num_tracks=clean.shape[0], sample_rate=SR, kind=kind, target="direct")
    params = synth.draw(torch.Generator().manual_seed(1))
    mics, targets = synth(clean[None], {key: value[None] for key, value in params.items()})
    return mics[0] + noise * torch.randn(mics[0].shape, generator=torch.Generator().manual_seed(2)), targets[0]


def _write(folder: Path, names: List[str], tracks: torch.Tensor) -> Path:
    folder.mkdir(parents=True)
    for name, audio in zip(names, tracks):
        sf.write(folder / f"{name}.wav", audio[0].numpy(), SR, subtype="FLOAT")
    return folder


def speed(shared: Path, work: Path, seconds: float) -> Dict[str, Any]:
    clean = _stems(shared, 18.0, start=0.0)
    repeats = int(seconds * SR) // clean.shape[-1] + 1
    looped = clean.repeat(1, 1, repeats)[..., : int(seconds * SR)]
    extra = torch.stack([0.5 * looped[0] + 0.3 * looped[3], 0.6 * looped[1] + 0.2 * looped[2],
                         0.4 * looped[4] + 0.4 * looped[0]])
    tracks, _ = _bleed(torch.cat([looped, extra]), "linear")
    names = list(NZ) + ["room_left", "room_right", "keys_mic"]
    session = _write(work / "speed-session", names, tracks)
    start = time.perf_counter()
    report = restore(session, work / "speed-out", progress=False, plot=False)
    total = time.perf_counter() - start
    per_minute = {stage: value * 60.0 / seconds for stage, value in report["seconds"].items()}
    return {"tracks": len(names), "seconds": seconds, "total_per_minute": total * 60.0 / seconds,
            "per_minute": per_minute}


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


def choir(shared: Path, work: Path) -> Dict[str, Any]:
    folder = common.require_folder(shared / "dagstuhl-choirset", "the Dagstuhl ChoirSet take")
    session = work / "choir"
    shutil.copytree(folder, session)
    report = restore(session, work / "choir-out", debleed="kamir", denoise="none", normalize="none", progress=False,
                     plot=False)
    return {"tracks": len(report["tracks"]), "sample_rate": report["sample_rate"],
            "seconds": report["duration_seconds"], "leakage": report["leakage"]}


def main(argv: List[str] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the 8-track speed session")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the NZ Tour quality clip")
    parser.add_argument("--shared-data", type=Path, default=common.default_shared_data())
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seconds, clip = (10.0, 2.0) if args.quick else (args.minutes * 60.0, args.seconds)
    info = common.machine_info()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        result = {"machine": info, "speed": speed(args.shared_data, work, seconds),
                  "quality": quality(args.shared_data, work, clip), "choir": choir(args.shared_data, work)}
    print(common.machine_line(info))
    s = result["speed"]
    print(f"\n8-track session, {s['seconds']:g} s: {s['total_per_minute']:.1f} s per minute of session")
    print(common.markdown_table(["stage", "s per minute"],
                                [[k, common.fmt(v, 1)] for k, v in s["per_minute"].items()]))
    for kind, rows in result["quality"].items():
        print(f"\nNZ Tour, {kind} bleed + noise, {clip:g} s, 5 tracks")
        print(common.markdown_table(["tracks", "SI-SDR dB", "leakage", "noise floor dBFS"],
                                    [[label, common.fmt(r["si_sdr"]), common.fmt(r["leakage"], 4),
                                      common.fmt(r["noise_floor_dbfs"], 1)] for label, r in rows.items()]))
    c = result["choir"]
    print(f"\nDagstuhl ChoirSet, {c['tracks']} microphones, {c['seconds']:g} s at {c['sample_rate']} Hz: leakage "
          f"{c['leakage']['before']:.4f} -> {c['leakage']['after']:.4f} (KAMIR)")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
