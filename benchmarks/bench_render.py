"""Rendering speed: SoundFont-rendered songs (each binding) beside the built-in generator, x real time per core.

Every row renders the same number of songs of the same length at 44.1 kHz stereo into four stems (vocals,
drums, bass, other), on one thread, and reports seconds of music per CPU second of this process (x real time
per core; on a shared machine the wall time, also printed, depends on the neighbours). Rows:

* the built-in generator (:mod:`musicfx.data.generator`, additive synthesis in torch): draw the score and
  render all four stems once;
* :class:`musicfx.data.rendered.RenderedStems` with each SoundFont binding that imports here
  (``tinysoundfont``, ``fluidsynth``): compose a procedural General MIDI song and render every part through
  the SoundFont (one part at a time), then sum the parts into stems and normalise;
* the time to load the SoundFont once per process (each DataLoader worker pays it once, or inherits it).

The target is 20x real time per core, so that a DataLoader worker keeps a GPU fed. Other bindings tried
are listed with why they are not used (see ``docs/rendered.md``).

Run::

    python benchmarks/bench_render.py [--songs 6] [--seconds 20] [--soundfont PATH] [--json render.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from common import fmt, machine_info, machine_line, markdown_table

RATE = 44100
STEMS = ("vocals", "drums", "bass", "other")
TARGET = 20.0


def generator_speed(songs: int, seconds: float) -> Dict[str, float]:
    """x real time of the built-in generator: score + all four stems, ``songs`` songs."""
    from musicfx.data.generator import draw_score, render
    from musicfx.data.sampling import example_generator

    start, cpu = time.perf_counter(), time.process_time()
    for index in range(songs):
        score = draw_score(seconds, example_generator(0, index))
        render(score, RATE, 2, 0, int(round(seconds * RATE)))
    return {"x_realtime": songs * seconds / (time.process_time() - cpu),
            "x_realtime_wall": songs * seconds / (time.perf_counter() - start)}


def rendered_speed(backend: str, songs: int, seconds: float, soundfont: Optional[str]) -> Dict[str, float]:
    """Load time and x real time of :class:`RenderedStems` with ``backend`` (cache off: every song rendered)."""
    from musicfx.data.render import fonts
    from musicfx.data.rendered import RenderedStems

    fonts._SYNTHS.clear()  # time the load too
    start = time.perf_counter()
    source = RenderedStems(num_items=songs, duration=seconds, sample_rate=RATE, channels=2, stems=STEMS,
                           soundfont=soundfont, backend=backend, cache_mb=0)
    load = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    parts = 0
    for index in range(songs):
        parts += len(source.song(index).parts)
        source.read(index, 0, 1)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"load_s": load, "x_realtime": songs * seconds / cpu, "x_realtime_wall": songs * seconds / wall,
            "parts_per_song": parts / songs}


def available_backends() -> List[str]:
    from musicfx.data.render.fonts import _import

    return [name for name in ("tinysoundfont", "fluidsynth") if _import(name) is not None]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=6, help="songs per row")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each song")
    parser.add_argument("--soundfont", default=None, help="default $MUSICFX_SOUNDFONT, else FluidR3 GM")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # per core: DataLoader workers run one thread each
    info = machine_info()
    print(machine_line(info))
    results: Dict[str, Any] = {"machine": info, "songs": args.songs, "seconds": args.seconds, "rows": {}}
    generator = generator_speed(args.songs, args.seconds)
    results["rows"]["built-in generator"] = generator
    rows = [["built-in generator (torch additive synthesis)", "-", fmt(generator["x_realtime"], 1),
             fmt(generator["x_realtime_wall"], 1), "1.00"]]
    for backend in available_backends():
        speed = rendered_speed(backend, args.songs, args.seconds, args.soundfont)
        results["rows"][backend] = speed
        rows.append([f"SoundFont, {backend} ({speed['parts_per_song']:.1f} parts per song)", fmt(speed["load_s"], 2),
                     fmt(speed["x_realtime"], 1), fmt(speed["x_realtime_wall"], 1),
                     fmt(speed["x_realtime"] / generator["x_realtime"], 2)])
    print(f"\n### Rendering speed, {args.songs} songs of {args.seconds:g} s, 44.1 kHz stereo, four stems, "
          f"one thread (target >= {TARGET:g}x)\n")
    print(markdown_table(["renderer", "font load (wall s)", "x real time per core (CPU)", "x real time (wall)",
                          "vs generator"], rows))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    slow = [name for name, row in results["rows"].items()
            if name != "built-in generator" and row["x_realtime"] < TARGET]
    if slow:
        print(f"\nbelow the {TARGET:g}x target: {', '.join(slow)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
