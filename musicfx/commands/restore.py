"""``musicfx restore SESSION -o OUT``: a live multitrack session in, clean tracks, a balanced mix and a report out.

The chain (debleed -> denoise -> FxNorm normalization -> mix), its outputs and its measures are
:func:`musicfx.restore.restore`'s; this module only turns the flags into its arguments. Every stage works
without a trained model (KAMIR, the spectral gate, the built-in FxNorm features, the plain sum) and takes a
checkpoint instead where one is given.
"""
from __future__ import annotations

import argparse
import warnings

from musicfx.checkpoint import add_trust_argument
from musicfx.commands import common
from musicfx.restore import DEBLEED_METHODS, DENOISE_METHODS, MIX_METHODS, NORMALIZE_METHODS


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``restore`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "restore", help="debleed, denoise, normalize and mix a live multitrack session",
        description="Restore a live multitrack session (a folder with one audio file per microphone): debleed the "
        "tracks, denoise each, FxNorm-normalize them and mix. Writes OUT/tracks/, OUT/normalized/, OUT/mix.wav, "
        "OUT/report.json and OUT/report.png, all at once when everything succeeded.",
    )
    parser.add_argument("session", metavar="SESSION", help="folder holding one audio file per microphone")
    parser.add_argument("-o", "--output", required=True, help="output folder to create (not inside SESSION)")
    parser.add_argument("--debleed", default="kamir", metavar="|".join(DEBLEED_METHODS) + "|CKPT",
                        help="remove bleed between the tracks: kamir (default, no training), none, or a debleed "
                        "checkpoint")
    parser.add_argument("--denoise", default="spectral-gate", metavar="|".join(DENOISE_METHODS) + "|CKPT",
                        help="denoise each track: spectral-gate (default), none, or a denoise checkpoint")
    parser.add_argument("--normalize", default="builtin", metavar="|".join(NORMALIZE_METHODS) + "|FEATURES",
                        help="FxNorm effect normalization before mixing: builtin (default: the built-in generator's "
                        "statistics), a features file from `musicfx fxnorm features`, or none")
    parser.add_argument("--mix", default="sum", metavar="|".join(MIX_METHODS) + "|CKPT",
                        help="sum (default), console (the neutral mixing console: tracks summed per class, "
                        "centred), or an automix checkpoint")
    parser.add_argument("--device", default="auto", help="where checkpoints run: cpu, cuda, cuda:1 or auto (default)")
    add_trust_argument(parser)
    common.add_output_arguments(parser, overwrite_help="replace an existing OUT folder (once the new one is done)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``musicfx restore``; returns the exit status."""
    from musicfx.restore import restore

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = restore(args.session, args.output, debleed=args.debleed, denoise=args.denoise,
                         normalize=args.normalize, mix=args.mix, progress=not args.quiet, overwrite=args.overwrite,
                         device=common.resolve_device(args.device), trust=args.trust_checkpoint)
    common.report_warnings(caught)
    if not args.quiet:
        leak = report["leakage"]
        print(f"{args.session} -> {args.output}: {len(report['tracks'])} tracks, leakage {leak['before']:.3f} -> "
              f"{leak['after']:.3f}, " + ", ".join(f"{k} {v:.1f} s" for k, v in report["seconds"].items()))
    return 0
