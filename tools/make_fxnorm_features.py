"""Rebuild ``musicfx/assets/fxnorm_generated.npz``: FxNorm features of the built-in generator's stems.

:meth:`musicfx.fxnorm.features.FxNormFeatures.builtin` loads the file, so effect normalization works with
no dataset. The songs are :class:`musicfx.data.sources.GeneratedMusic` (seeded, so the file is
reproducible up to floating-point differences between machines).

    python tools/make_fxnorm_features.py [--songs 32] [--duration 10] [--seed 20220] [--workers N]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "musicfx" / "assets" / "fxnorm_generated.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=32, help="generated songs (default 32)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per song (default 10)")
    parser.add_argument("--seed", type=int, default=20220, help="generator seed (default 20220)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    parser.add_argument("-o", "--output", type=Path, default=OUT, help=f"default {OUT}")
    args = parser.parse_args()

    from musicfx.data.sources import GeneratedMusic
    from musicfx.fxnorm.dataset import compute_features
    from musicfx.fxnorm.features import STEMS

    source = GeneratedMusic(num_items=args.songs, duration=args.duration, sample_rate=44100, channels=2,
                            seed=args.seed, stems=STEMS)
    start = time.perf_counter()
    features = compute_features(source, stems=STEMS, workers=args.workers)
    features.save(args.output)
    print(f"{args.output}: {args.songs} songs x {args.duration:g} s in {time.perf_counter() - start:.0f} s")
    for stem in STEMS:
        mean, std = features.dynamics[stem]
        print(f"  {stem:>7}: {features.loudness[stem]:6.1f} LUFS, onset peaks {mean:6.1f} +- {std:4.1f} dB, "
              f"mean similarity {features.panning[stem].mean():.3f}")


if __name__ == "__main__":
    main()
