"""``musicfx evaluate``: score separated stems the way MUSDB18 results are reported.

* ``musicfx evaluate --references DIR --estimates DIR [--targets ...] [--json OUT] [--full]
  [--museval-dir DIR] [-q]`` scores a folder of estimates (museval's layout) against references.
* ``musicfx evaluate --musdb ROOT [--split test] (--ckpt CKPT | --oracle irm|ibm) [--estimates-out DIR]``
  separates a MUSDB18 / MUSDB18-HQ split with a checkpoint (or an oracle mask) and scores it.

Prints a markdown table: per target, SDR median and mean over tracks (museval's windowed SDR, median
over 1 s windows per track) and uSDR.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from musicfx.checkpoint import add_trust_argument
from musicfx.errors import MusicfxError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "evaluate", help="score separated stems (museval SDR, uSDR)",
        description="Score separated stems against references (museval v4 SDR per 1 s window, median over "
        "windows, then median/mean over tracks; and uSDR), or separate and score a MUSDB18 split.",
    )
    folders = parser.add_argument_group("score estimates on disk")
    folders.add_argument("--references", help="<track>/<target>.wav folders or a MUSDB18 folder of .stem.mp4")
    folders.add_argument("--estimates", help="<track>/<target>.wav folders (museval's layout)")
    folders.add_argument("--targets", nargs="+", help="targets to score (default: those in both)")
    musdb = parser.add_argument_group("separate and score a MUSDB18 / MUSDB18-HQ split")
    musdb.add_argument("--musdb", help="MUSDB18 or MUSDB18-HQ root")
    musdb.add_argument("--split", default="test", help="split to evaluate (default: test)")
    musdb.add_argument("--ckpt", help="separation checkpoint written by `musicfx fit`")
    add_trust_argument(musdb)
    musdb.add_argument("--oracle", choices=("irm", "ibm"), help="score an oracle mask instead of a model")
    musdb.add_argument("--estimates-out", help="also write the estimates here (<split>/<track>/<source>.wav)")
    musdb.add_argument("--segment", type=float, default=10.0, help="seconds per model call (default 10)")
    musdb.add_argument("--overlap", type=float, default=0.25, help="fraction of a segment cross-faded")
    musdb.add_argument("--batch-size", type=int, default=1, help="segments per model call")
    musdb.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--json", help="write the scores (per track and summary) to this JSON file")
    parser.add_argument("--full", action="store_true", help="also SIR/ISR/SAR with museval itself (slow)")
    parser.add_argument("--museval-dir", help="write one museval JSON per track here (implies --full)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _check_arguments(args: argparse.Namespace) -> None:
    on_disk = args.references is not None or args.estimates is not None
    if on_disk and args.musdb is not None:
        raise MusicfxError("pass either --references/--estimates or --musdb, not both")
    if on_disk:
        if args.references is None or args.estimates is None:
            raise MusicfxError("pass both --references DIR and --estimates DIR")
        if args.ckpt is not None or args.oracle is not None or args.estimates_out is not None:
            raise MusicfxError("--ckpt, --oracle and --estimates-out go with --musdb, not with --estimates")
        for name, folder in (("--references", args.references), ("--estimates", args.estimates)):
            if not Path(folder).is_dir():
                raise MusicfxError(f"{folder}: no such folder ({name})")
    elif args.musdb is not None:
        if (args.ckpt is None) == (args.oracle is None):
            raise MusicfxError("with --musdb, pass --ckpt CHECKPOINT or --oracle irm|ibm (one of them)")
        if args.targets is not None:
            raise MusicfxError("--targets goes with --estimates; with --musdb the model's sources are scored")
        if not Path(args.musdb).is_dir():
            raise MusicfxError(f"{args.musdb}: no such folder (--musdb)")
    else:
        raise MusicfxError(
            "pass --references DIR --estimates DIR, or --musdb ROOT with --ckpt CHECKPOINT or --oracle irm|ibm"
        )


def run(args: argparse.Namespace) -> int:
    """Run ``musicfx evaluate``; returns the exit status."""
    import sys
    import warnings

    from musicfx.evaluate import evaluate_folders, evaluate_model

    _check_arguments(args)
    full = args.full or args.museval_dir is not None
    # Skipped tracks and length mismatches are worth one line each, not a warning with its source line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.musdb is None:
            report = evaluate_folders(
                Path(args.references), Path(args.estimates), targets=args.targets, full=full,
                json_dir=args.museval_dir, progress=not args.quiet,
            )
        else:
            task = None
            device = None
            if args.ckpt is not None:
                from musicfx.api import _resolve_device, load

                device = _resolve_device(args.device)
                task = load(args.ckpt, device=device, trust=args.trust_checkpoint)
            report = evaluate_model(
                task, Path(args.musdb), split=args.split, output_dir=args.estimates_out, oracle=args.oracle,
                segment=args.segment, overlap=args.overlap, batch_size=args.batch_size, device=device,
                full=full, json_dir=args.museval_dir, progress=not args.quiet,
            )
    package = str(Path(__file__).resolve().parents[1])
    for warning in caught:
        if str(Path(warning.filename).resolve()).startswith(package):
            print(f"musicfx: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    print(f"{len(report.tracks)} tracks")
    print(report.table())
    if args.json is not None:
        report.to_json(args.json)
        if not args.quiet:
            print(f"scores written to {args.json}")
    return 0
