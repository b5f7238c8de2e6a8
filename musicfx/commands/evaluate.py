"""``musicfx evaluate``: score separated stems the way MUSDB18 results are reported.

* ``musicfx evaluate --references DIR --estimates DIR [--targets ...] [--json OUT [--overwrite]] [--full]
  [--museval-dir DIR] [-q]`` scores a folder of estimates (museval's layout, or one song's folder of
  ``<target>.wav`` files) against references.
* ``musicfx evaluate --musdb ROOT [--split test] (--ckpt CKPT | --oracle irm|ibm) [--estimates-out DIR]``
  separates a MUSDB18 / MUSDB18-HQ split with a checkpoint (or an oracle mask) and scores it.

Prints a markdown table: per target, SDR median and mean over tracks (museval's windowed SDR, median
over 1 s windows per track) and uSDR.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List

from musicfx.checkpoint import add_trust_argument
from musicfx.commands import common
from musicfx.errors import MusicfxError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "evaluate", help="score separated stems (museval SDR, uSDR)",
        description="Score separated stems against references (museval v4 SDR per 1 s window, median over "
        "windows, then median/mean over tracks; and uSDR), or separate and score a MUSDB18 split.",
    )
    folders = parser.add_argument_group("score estimates on disk")
    folders.add_argument("--references", help="<track>/<target>.wav folders, a MUSDB18 folder of .stem.mp4, or one "
                         "song's folder of <target>.wav files")
    folders.add_argument("--estimates", help="<track>/<target>.wav folders (museval's layout), or one song's folder "
                         "of <target>.wav files")
    folders.add_argument("--targets", nargs="+", help="targets to score (default: those in both)")
    musdb = parser.add_argument_group("separate and score a MUSDB18 / MUSDB18-HQ split")
    musdb.add_argument("--musdb", help="MUSDB18 or MUSDB18-HQ root")
    musdb.add_argument("--split", default="test", help="split to evaluate (default: test)")
    musdb.add_argument("--ckpt", help="separation checkpoint written by `musicfx fit`")
    add_trust_argument(musdb)
    musdb.add_argument("--oracle", choices=("irm", "ibm"), help="score an oracle mask instead of a model")
    musdb.add_argument("--estimates-out", help="also write the estimates here (<split>/<track>/<source>.wav)")
    common.add_engine_arguments(musdb, shifts=True, resample=False)
    parser.add_argument("--json", help="write the scores (per track and summary) to this JSON file")
    parser.add_argument("--full", action="store_true", help="also SIR/ISR/SAR with museval itself (slow)")
    parser.add_argument("--museval-dir", help="write one museval JSON per track here (implies --full)")
    common.add_output_arguments(parser, overwrite_help="replace an existing --json file")
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


def _inputs(args: argparse.Namespace) -> List[Path]:
    """The folders the command reads (a --json file must not land on anything in them)."""
    folders = [args.references, args.estimates] if args.musdb is None else [args.musdb]
    return [Path(folder) for folder in folders]


def run(args: argparse.Namespace) -> int:
    """Run ``musicfx evaluate``; returns the exit status."""
    import contextlib
    import warnings

    from musicfx.evaluate import evaluate_folders, evaluate_model

    _check_arguments(args)
    common.check_engine_arguments(args)
    if args.json is not None:
        common.check_new_file(Path(args.json), "--json", args.overwrite, _inputs(args))
    full = args.full or args.museval_dir is not None
    estimates_out = Path(args.estimates_out) if args.estimates_out is not None else None
    # Skipped tracks and length mismatches are worth one line each, not a warning with its source line.
    with contextlib.ExitStack() as stack:
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        if estimates_out is not None:  # a failed run leaves no empty folder behind
            stack.enter_context(common.writing_into(estimates_out))
        if args.musdb is None:
            report = evaluate_folders(
                Path(args.references), Path(args.estimates), targets=args.targets, full=full,
                json_dir=args.museval_dir, progress=not args.quiet,
            )
        else:
            task = None
            device = None
            if args.ckpt is not None:
                device = common.resolve_device(args.device)
                task = common.load_task(args.ckpt, device, "separate", args.trust_checkpoint)
            report = evaluate_model(
                task, Path(args.musdb), split=args.split, output_dir=args.estimates_out, oracle=args.oracle,
                segment=args.segment, overlap=args.overlap, batch_size=args.batch_size, device=device,
                full=full, json_dir=args.museval_dir, progress=not args.quiet, shifts=args.shifts,
            )
    common.report_warnings(caught)
    print(f"{len(report.tracks)} tracks")
    print(report.table())
    if args.json is not None:
        report.to_json(args.json)
        if not args.quiet:
            print(f"scores written to {args.json}")
    return 0
