"""``musicfx fxnorm``: FxNorm effect normalization of a multitrack dataset.

* ``musicfx fxnorm features ROOT -o features.npz [--stems ...] [--workers N]``: measure the dataset-average
  EQ, dynamics, panning and loudness of every stem type.
* ``musicfx fxnorm normalize ROOT -o OUT --features features.npz [--ir-folder DIR] [--overwrite]``: write
  every song's stems, normalised toward those features, into ``OUT`` (same song layout; reruns skip songs
  already done). ``--features builtin`` uses the features shipped for the built-in generator.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from musicfx.errors import MusicfxError

DEFAULT_STEMS = ("vocals", "drums", "bass", "other")  # musicfx.fxnorm.features.STEMS, without importing torch


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``fxnorm`` and its two steps to the ``musicfx`` command."""
    fxnorm = commands.add_parser(
        "fxnorm", help="FxNorm effect normalization of multitrack datasets (for automix)",
        description="Measure dataset-average effect features per stem type, and normalise stems toward them "
        "(FxNorm-automix, ISMIR 2022).",
    )
    steps = fxnorm.add_subparsers(dest="fxnorm_step", metavar="STEP", required=True)

    features = steps.add_parser(
        "features", help="measure average features of a dataset",
        description="Average EQ curve, onset-peak dynamics, stereo panning and loudness of every stem type over "
        "a folder of song folders (<song>/vocals.wav, ...).",
    )
    features.add_argument("root", help="dataset folder: song folders holding <stem>.wav files, at any depth")
    features.add_argument("-o", "--output", required=True, help="features file to write (.npz)")
    features.add_argument("--stems", nargs="+", default=list(DEFAULT_STEMS), help="stem types (default: %(default)s)")
    features.add_argument("--sample-rate", type=int, default=44100, help="analysis rate in Hz (default 44100)")
    features.add_argument("--workers", type=int, default=None, help="parallel processes (default: one per CPU)")
    features.add_argument("--single-pass", action="store_true",
                          help="measure every feature on the stems as they are (faster; the reference measures each "
                          "after normalising the effects before it)")
    features.add_argument("--overwrite", action="store_true", help="replace an existing features file")
    features.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    features.set_defaults(func=_features)

    normalize = steps.add_parser(
        "normalize", help="normalise a dataset's stems toward features",
        description="Write every song's stems, effect-normalised (reverb send, EQ, compression, panning, loudness), "
        "into OUT with the same song layout; songs already normalised with the same features are skipped.",
    )
    normalize.add_argument("root", help="dataset folder: song folders holding <stem>.wav files")
    normalize.add_argument("-o", "--output", required=True, help="output folder (not inside ROOT)")
    normalize.add_argument("--features", required=True,
                           help="features file from `musicfx fxnorm features`, or 'builtin'")
    normalize.add_argument("--ir-folder", help="impulse responses for the reverb stage (default: no reverb stage)")
    normalize.add_argument("--stems", nargs="+", default=None, help="stem types (default: those in the features)")
    normalize.add_argument("--workers", type=int, default=None, help="parallel processes (default: one per CPU)")
    normalize.add_argument("--overwrite", action="store_true", help="replace output files fxnorm did not write")
    normalize.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    normalize.set_defaults(func=_normalize)


def _features(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.is_dir():
        raise MusicfxError(f"{output}: is a folder; name the features file to write (e.g. features.npz)")
    if output.exists() and not args.overwrite:
        raise MusicfxError(f"{output}: exists; pass --overwrite to replace it")
    if not Path(args.root).is_dir():
        raise MusicfxError(f"{args.root}: no such dataset folder")
    from musicfx.fxnorm.dataset import compute_features

    features = compute_features(args.root, stems=args.stems, sample_rate=args.sample_rate, workers=args.workers,
                                progress=not args.quiet, sequential=not args.single_pass)
    features.save(output)
    if not args.quiet:
        for stem in features.stems:
            mean, std = features.dynamics[stem]
            print(f"{stem}: {features.counts.get(stem, 0)} stems, {features.loudness[stem]:.1f} LUFS, "
                  f"onset peaks {mean:.1f} +- {std:.1f} dB")
        print(f"wrote {output}")
    return 0


def _normalize(args: argparse.Namespace) -> int:
    if not Path(args.root).is_dir():
        raise MusicfxError(f"{args.root}: no such dataset folder")
    if args.ir_folder is not None and not Path(args.ir_folder).is_dir():
        raise MusicfxError(f"{args.ir_folder}: no such impulse-response folder")
    from musicfx.fxnorm.features import FxNormFeatures
    from musicfx.fxnorm.normalize import normalize_dataset

    features = FxNormFeatures.builtin() if args.features == "builtin" else FxNormFeatures.load(args.features)
    summary = normalize_dataset(args.root, args.output, features, stems=args.stems, workers=args.workers,
                                ir_folder=args.ir_folder, progress=not args.quiet, overwrite=args.overwrite)
    if not args.quiet:
        print(f"{len(summary.normalized)} songs normalised, {len(summary.cached)} already up to date -> {args.output}")
    return 0
