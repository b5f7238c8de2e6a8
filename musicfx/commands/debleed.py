"""``musicfx debleed TRACK... -o OUTDIR (--ckpt CKPT | --method kamir)``: remove the bleed between the tracks
of a live multitrack recording.

The inputs are the M microphone tracks of one recording (files, or one folder of them, taken in sorted
order); each becomes ``OUTDIR/<its file name>``. All tracks stream through the model together, in
lockstep (:func:`musicfx.debleed.debleed_files`), so any length runs in constant memory. A trained
model takes exactly the tracks it was trained on: files whose names match its track names (``vocals.wav``,
``02_Drums.flac``) are fed in the model's order, otherwise the files go in the order given; the mapping is
printed. KAMIR takes any number of tracks and runs in ~30 s chunks through the same engine.

Tracks may differ in channel count: mono tracks are duplicated to the widest track's channels, every
channel is debleeded as its own set of mono tracks (the models are mono), and each output is written with
its input's channel count. Like ``denoise``: nothing is written unless every input can be read, existing
outputs are kept unless ``--overwrite``, inputs are never overwritten, and an error leaves no partial file.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Sequence

from musicfx.commands import common
from musicfx.debleed import (
    KAMIR_DEFAULTS, KAMIR_OVERLAP, KAMIR_SEGMENT, MODEL_OVERLAP, MODEL_SEGMENT, common_rate, debleed_files,
    file_leakage, match_tracks,
)
from musicfx.errors import MusicfxError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``debleed`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "debleed", help="remove bleed between the tracks of a multitrack recording",
        description="Remove microphone bleed between the tracks of one live multitrack recording, of any length, "
        "with a trained checkpoint or KAMIR. Writes OUTDIR/<file name> per track.",
    )
    common.add_io_arguments(parser, "the tracks of one recording (audio files), or one folder of them",
                            "output folder (one file per track, same name)",
                            "debleed checkpoint written by `musicfx fit`")
    parser.add_argument("--method", choices=("model", "kamir"), default="model",
                        help="a trained model (--ckpt, default) or KAMIR (no training, any number of tracks)")
    kamir = parser.add_argument_group("KAMIR (--method kamir)")
    kamir.add_argument("--n-fft", type=int, help=f"STFT size (default {KAMIR_DEFAULTS['n_fft']})")
    kamir.add_argument("--iterations", type=int, help=f"iterations (default {KAMIR_DEFAULTS['iterations']})")
    kamir.add_argument("--min-leakage", type=float,
                       help=f"floor of the leakage between tracks (default {KAMIR_DEFAULTS['min_leakage']})")
    common.add_engine_arguments(
        parser, segment=None, overlap=None,
        segment_help=f"default {MODEL_SEGMENT:g}; {KAMIR_SEGMENT:g} for KAMIR",
        overlap_help=f"default {MODEL_OVERLAP:g}; {KAMIR_OVERLAP:g} for KAMIR",
    )
    parser.add_argument("--leakage", action="store_true",
                        help="print the inter-track leakage score (mean coherence) before and after")
    common.add_output_arguments(parser, quiet_help="no progress bar, no per-file lines")
    parser.set_defaults(func=run)


def output_plan(inputs: Sequence[Path], output: Path, overwrite: bool) -> List[Path]:
    """``output/<file name>`` per input (``.wav`` instead of a suffix libsndfile cannot write).

    Raises:
        MusicfxError: ``output`` is a file, or two inputs share a name.
        AudioError: an output would replace an input, or exists without ``overwrite``.
    """
    if output.exists() and not output.is_dir():
        raise MusicfxError(f"{output}: exists and is not a folder (-o names the output folder)")
    targets = [output / common.output_name(path) for path in inputs]
    common.check_targets(targets, inputs, overwrite, sources=inputs)
    return targets


def _check_numbers(args: argparse.Namespace) -> None:
    kamir_flags = [flag for flag, value in (("--n-fft", args.n_fft), ("--iterations", args.iterations),
                                            ("--min-leakage", args.min_leakage)) if value is not None]
    if args.method == "kamir" and args.ckpt is not None:
        raise MusicfxError("pass either --ckpt CHECKPOINT or --method kamir, not both")
    if args.method == "model" and kamir_flags:
        raise MusicfxError(f"{', '.join(kamir_flags)} go with --method kamir")
    if args.method == "model" and args.ckpt is None:
        raise MusicfxError("pass --ckpt CHECKPOINT (a debleed model written by `musicfx fit`) or --method kamir")
    if args.n_fft is not None and args.n_fft < 16:
        raise MusicfxError(f"--n-fft must be at least 16, got {args.n_fft}")
    if args.iterations is not None and args.iterations < 1:
        raise MusicfxError(f"--iterations must be at least 1, got {args.iterations}")
    if args.min_leakage is not None and not args.min_leakage >= 0:
        raise MusicfxError(f"--min-leakage must be >= 0, got {args.min_leakage}")
    common.check_engine_arguments(args)


def _ordered_for_model(inputs: List[Path], tracks: Sequence[str], ckpt: str, quiet: bool) -> List[Path]:
    """The inputs in the model's track order (by file name when they match, else as given); prints the mapping."""
    if len(inputs) != len(tracks):
        raise MusicfxError(
            f"{ckpt}: the model debleeds {len(tracks)} tracks ({', '.join(tracks)}) but {len(inputs)} files were "
            f"given ({', '.join(p.name for p in inputs)}); pass one file per track"
        )
    order = match_tracks(inputs, tracks)
    how = "matched by file name"
    if order is None:
        order, how = list(range(len(inputs))), "in the order given"
    if not quiet:
        pairs = ", ".join(f"{name} <- {inputs[i].name}" for name, i in zip(tracks, order))
        print(f"tracks ({how}): {pairs}")
    return [inputs[i] for i in order]


def run(args: argparse.Namespace) -> int:
    """Run ``musicfx debleed``; returns the exit status."""
    _check_numbers(args)
    output = Path(args.output)
    inputs = common.audio_files(args.inputs, exclude=output)
    if len(inputs) < 2:
        raise MusicfxError(f"debleed needs the tracks of a recording, at least two files; got {len(inputs)} "
                           f"({', '.join(map(str, inputs))})")
    rate = common_rate(inputs, common.check_inputs(inputs))
    planned = dict(zip(inputs, output_plan(inputs, output, args.overwrite)))
    device = common.resolve_device(args.device)
    if args.method == "kamir":
        from musicfx.baselines.kamir import KAMIR

        settings = {key: getattr(args, key) if getattr(args, key) is not None else value
                    for key, value in KAMIR_DEFAULTS.items()}
        model, model_rate = KAMIR(rate, **settings), None
        segment, overlap = KAMIR_SEGMENT, KAMIR_OVERLAP
    else:
        task = common.load_task(args.ckpt, device, "debleed", args.trust_checkpoint)
        inputs = _ordered_for_model(inputs, list(task.tracks), args.ckpt, args.quiet)
        model, model_rate = task.model, task.sample_rate
        segment, overlap = MODEL_SEGMENT, MODEL_OVERLAP
    targets = [planned[path] for path in inputs]
    before = file_leakage(inputs) if args.leakage else None
    with common.writing_into(output):
        debleed_files(model, inputs, targets, model_rate, device=device,
                      **common.engine_options(args, segment, overlap))
    if not args.quiet:
        for source, target in zip(inputs, targets):
            print(f"{source} -> {target}")
    if before is not None:
        after = file_leakage(targets)
        print(f"leakage (mean inter-track coherence, lower is less bleed): before {before:.3f}, after {after:.3f}")
    return 0
