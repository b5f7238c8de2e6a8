"""Peak memory of ``musicfx evaluate`` against the song's length: does it stay flat?

Scene: one synthetic song per length, 4 stereo 44.1 kHz targets (drums, bass, other, vocals: tones and
noise bursts with silent gaps), estimates = the references plus a little of the other targets and white
noise, written as 16-bit wav folders (museval's layout) in blocks, so writing them takes little memory.
``--formats stem-mp4``: the references are instead one MUSDB18-style ``song.stem.mp4`` (mixture, drums, bass,
other, vocals; AAC, encoded by ffmpeg from files it reads as it goes): the real SiSEC 2011 "Ultimate NZ Tour"
stems of ``shared/data`` (other = guitar + synth) looped to the length; the estimates, written block by
block from the decoded references, are each target plus 5 % of the others and white noise.
Each case runs ``musicfx evaluate --references R --estimates E -q`` (the accompaniment is derived, so 5
targets are scored) in its own process and reports its peak RSS (``VmHWM``; ffmpeg decoders, one per
stream, are separate processes of a few MiB each and not counted). ``--baseline ROOT`` also runs another
checkout (e.g. the main branch before streaming) on the same files, side by side.

Run: ``python benchmarks/bench_evaluate_memory.py [--minutes 5 20] [--formats wav stem-mp4]
[--baseline /path/to/other/checkout] [--baseline-max-minutes 5] [--full] [--shared PATH]``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from common import PEAK_RSS_PROBE, default_shared_data, fmt, machine_info, machine_line, markdown_table, require_folder

REPO = Path(__file__).resolve().parents[1]
RATE = 44100
TARGETS = ("drums", "bass", "other", "vocals")
FORMATS = ("wav", "stem-mp4")
#: The NZ Tour's stems behind each MUSDB18 target.
NZ_PARTS = {"drums": ("drums",), "bass": ("bass",), "other": ("guitar", "synth"), "vocals": ("vocals",)}


def write_song(root: Path, minutes: float, seed: int = 0, block_seconds: int = 30) -> Path:
    """``root/{references,estimates}/song/<target>.wav`` of ``minutes``, written block by block.

    Returns:
        ``root``.
    """
    import soundfile as sf

    rng = np.random.default_rng(seed)
    frames = int(minutes * 60 * RATE)
    block = block_seconds * RATE
    names = [(kind, target) for kind in ("references", "estimates") for target in TARGETS]
    for kind, _ in names:
        (root / kind / "song").mkdir(parents=True, exist_ok=True)
    handles = {(kind, target): sf.SoundFile(str(root / kind / "song" / f"{target}.wav"), "w", RATE, 2, "PCM_16")
               for kind, target in names}
    try:
        for start in range(0, frames, block):
            n = min(block, frames - start)
            t = (start + np.arange(n)) / RATE
            refs = []
            for k, _ in enumerate(TARGETS):
                tone = 0.1 * np.sin(2 * np.pi * 110 * (k + 1) * t) * (np.sin(2 * np.pi * 0.05 * (k + 1) * t) > -0.5)
                signal = tone[:, None] + 0.02 * rng.standard_normal((n, 2))
                refs.append(signal)
            for k, target in enumerate(TARGETS):
                leak = 0.05 * sum(refs[j] for j in range(len(TARGETS)) if j != k)
                handles[("references", target)].write(refs[k].astype(np.float32))
                handles[("estimates", target)].write(
                    (refs[k] + leak + 0.01 * rng.standard_normal((n, 2))).astype(np.float32))
    finally:
        for handle in handles.values():
            handle.close()
    return root


def write_stem_song(root: Path, minutes: float, shared: Path, seed: int = 0, block_seconds: int = 30) -> Path:
    """``root/references/song.stem.mp4`` (the NZ Tour looped to ``minutes``) and ``root/estimates/song/<target>.wav``.

    The looped stems go to wav files block by block, ffmpeg encodes them as it reads them
    (:func:`musicfx.inference.mux_stem_file`), and the estimates are written from the decoded references
    block by block (:func:`musicfx.audio.io.read_stem_blocks`), so that building a 20-minute song takes
    little memory.

    Returns:
        ``root``.
    """
    import soundfile as sf

    from musicfx.audio.io import read_stem_blocks
    from musicfx.inference import mux_stem_file

    folder = require_folder(shared / "sisec2011-nz-tour", "SiSEC 2011 NZ Tour multitrack")
    parts = {name: sf.read(str(folder / f"{name}.wav"), dtype="float32", always_2d=True) for name in
             {part for names in NZ_PARTS.values() for part in names}}
    if any(rate != RATE for _, rate in parts.values()):
        raise RuntimeError(f"{folder}: expected {RATE} Hz stems")
    loop = {target: sum(parts[name][0] for name in names) for target, names in NZ_PARTS.items()}
    loop["mixture"] = sum(loop[target] for target in TARGETS)
    frames = int(minutes * 60 * RATE)
    plain = root / "plain"
    plain.mkdir(parents=True, exist_ok=True)
    for name, piece in loop.items():
        with sf.SoundFile(str(plain / f"{name}.wav"), "w", RATE, piece.shape[1], "FLOAT") as handle:
            for start in range(0, frames, piece.shape[0]):
                handle.write(piece[: min(piece.shape[0], frames - start)])
    stem = root / "references" / "song.stem.mp4"
    mux_stem_file(stem, plain / "mixture.wav", [plain / f"{t}.wav" for t in TARGETS], list(TARGETS))
    for path in plain.glob("*.wav"):
        path.unlink()
    rng = np.random.default_rng(seed)
    (root / "estimates" / "song").mkdir(parents=True, exist_ok=True)
    handles = {target: sf.SoundFile(str(root / "estimates" / "song" / f"{target}.wav"), "w", RATE, 2, "PCM_16")
               for target in TARGETS}
    try:
        for block in read_stem_blocks(stem, block_seconds * RATE, streams=[1, 2, 3, 4]):  # drums, bass, other, vocals
            refs = block.numpy().transpose(0, 2, 1)  # (targets, time, channels)
            for k, target in enumerate(TARGETS):
                leak = 0.05 * (refs.sum(0) - refs[k])
                handles[target].write(
                    np.clip(refs[k] + leak + 0.01 * rng.standard_normal(refs[k].shape), -1, 1).astype(np.float32))
    finally:
        for handle in handles.values():
            handle.close()
    return root


def peak_rss_mb(code_root: Path, root: Path, full: bool = False) -> float:
    """Peak RSS in MiB of ``musicfx evaluate`` on ``root``'s song, importing musicfx from ``code_root``.

    Raises:
        RuntimeError: the command failed (its output is included).
    """
    args = ["evaluate", "--references", str(root / "references"), "--estimates", str(root / "estimates"), "-q"]
    args += ["--full"] if full else []
    env = dict(os.environ, PYTHONPATH=str(code_root))
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_PROBE, *args], capture_output=True, text=True, check=False,
                            env=env, cwd=str(root))  # cwd: not a checkout, so PYTHONPATH picks the code
    lines = [line for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"musicfx {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return int(lines[-1].split()[1]) / 1024.0


def run(minutes: Sequence[float], baseline: Optional[Path], baseline_max: float, folder: Path,
        full: bool = False, formats: Sequence[str] = ("wav",), shared: Optional[Path] = None) -> List[Dict]:
    rows = []
    for kind in formats:
        for length in minutes:
            where = folder / f"{kind}-{length:g}min"
            if kind == "wav":
                root = write_song(where, length)
            else:
                root = write_stem_song(where, length, shared or default_shared_data())
            row = {"format": kind, "minutes": length, "this": peak_rss_mb(REPO, root, full), "baseline": None}
            if baseline is not None and length <= baseline_max:
                row["baseline"] = peak_rss_mb(baseline, root, full)
            print(f"  {kind}, {length:g} min: {row['this']:.0f} MiB" + (
                f", baseline {row['baseline']:.0f} MiB" if row["baseline"] is not None else ""), flush=True)
            rows.append(row)
            for path in sorted(root.rglob("*.wav")) + sorted(root.rglob("*.mp4")):  # 20-minute songs: 1.7 GB of disk
                path.unlink()
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 20.0], help="song lengths")
    parser.add_argument("--baseline", type=Path, help="another checkout to run on the same songs (its root)")
    parser.add_argument("--baseline-max-minutes", type=float, default=5.0,
                        help="run the baseline only up to this length (it may need ~1 GB per minute of song)")
    parser.add_argument("--full", action="store_true", help="score SIR/ISR/SAR too (museval: ~2 s per second)")
    parser.add_argument("--workdir", type=Path, help="where to write the songs (default: a temporary folder)")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=["wav"],
                        help="references as wav folders (synthetic song) and/or one .stem.mp4 (the NZ Tour looped)")
    parser.add_argument("--shared", type=Path, default=default_shared_data(), help="the shared recordings (stem-mp4)")
    args = parser.parse_args(argv)
    print(machine_line(machine_info()), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        rows = run(args.minutes, args.baseline, args.baseline_max_minutes, folder, args.full, args.formats,
                   args.shared)
    headers = ["references", "song", "peak RSS (this checkout)", "peak RSS (baseline)", "baseline / this"]
    table = [[row["format"], f"{row['minutes']:g} min", f"{row['this']:.0f} MiB",
              "-" if row["baseline"] is None else f"{row['baseline']:.0f} MiB",
              "-" if row["baseline"] is None else fmt(row["baseline"] / row["this"], 1) + "x"] for row in rows]
    print(markdown_table(headers, table))
    for kind in args.formats:
        same = [row for row in rows if row["format"] == kind]
        if len(same) > 1:
            print(f"{kind}: longest / shortest (this checkout): {same[-1]['this'] / same[0]['this']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
