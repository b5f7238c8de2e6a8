"""``musicfx mix STEMS_DIR -o mix.wav --ckpt CKPT``: mix one song's stems into a stereo mix.

* ``--ckpt CKPT``: an automix checkpoint (:class:`~musicfx.tasks.automix.AutomixTask`: FxNorm-automix,
  Wave-U-Net or the mixing-console model). ``--method sum`` instead: the plain sum of the stems, FxNorm's
  baseline (with ``--normalize``: the sum of the normalized stems).
* ``STEMS_DIR`` holds one file per stem, named like the model's stems (``vocals.wav``, ``Drums.flac``...;
  case is ignored). A missing stem is mixed as silence, with a warning; other audio files are ignored, with
  a warning; a folder holding none of the stems is an error naming the files expected.
* The stems stream through the model in overlapping segments (:func:`musicfx.inference.process_files`):
  any length, constant memory, a progress bar.
* **Peak-safe**: the mix is first written as a float file beside the output, then its peak is measured; if
  it is above ``--ceiling-db`` (default :data:`CEILING_DB`, -0.3 dBFS) the whole mix is scaled down by one
  gain (no limiter, so no pumping or distortion) as it is copied to the output. Only a finished mix
  appears under the output's name.
* ``--params settings.json`` (models with ``predict_parameters``, i.e.
  :class:`~musicfx.models.console.MixingConsole`): the console settings, averaged over the song.
* ``--normalize [--features F.npz]``: FxNorm effect normalization of the stems before mixing
  (:func:`musicfx.fxnorm.normalize.normalize_stem`, toward ``F.npz`` or the built-in features).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence, Tuple

from musicfx.audio.stems import MUSDB_STEMS
from musicfx.automix import (
    CEILING_DB, ParameterAverage, StemFiles, find_stems, load_features, model_mixer, normalize_stem_files,
    stem_file_names, sum_mixer, write_mix,
)
from musicfx.checkpoint import add_trust_argument
from musicfx.commands import common
from musicfx.errors import MusicfxError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``mix`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "mix", help="mix a folder of stems into a stereo mix",
        description="Mix one song's stems (STEMS_DIR/vocals.wav, drums.wav, ...) into a stereo mix with a trained "
        "automix checkpoint, or sum them (--method sum). The output never peaks above --ceiling-db.",
    )
    parser.add_argument("stems_dir", metavar="STEMS_DIR",
                        help="folder holding one audio file per stem (<stem>.wav, ...)")
    parser.add_argument("-o", "--output", required=True, help="mix file to write (.wav, .flac, ...)")
    parser.add_argument("--ckpt", help="automix checkpoint written by `musicfx fit`")
    add_trust_argument(parser)
    parser.add_argument("--method", choices=("model", "sum"), default="model",
                        help="model (default, needs --ckpt) or sum: the plain sum of the stems (FxNorm's baseline)")
    parser.add_argument("--stems", nargs="+", help="stem names for --method sum (default: vocals drums bass other)")
    parser.add_argument("--params", help="also write the console model's settings (JSON), averaged over the song")
    parser.add_argument("--normalize", action="store_true", help="FxNorm-normalize the stems' effects before mixing")
    parser.add_argument("--features", help="features for --normalize: a file from `musicfx fxnorm features` "
                        "(default: the built-in features)")
    parser.add_argument("--ir-folder", help="impulse responses for the reverb stage of --normalize (default: none)")
    parser.add_argument("--ceiling-db", type=float, default=CEILING_DB,
                        help=f"highest sample peak of the output, dBFS (default {CEILING_DB})")
    parser.add_argument("--subtype", help="soundfile subtype of the output, e.g. PCM_16, PCM_24, FLOAT "
                        "(default: FLOAT for .wav, the format's default otherwise)")
    common.add_engine_arguments(parser)
    common.add_output_arguments(parser, overwrite_help="replace an existing output (and --params file)")
    parser.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------- run
def _check_arguments(args: argparse.Namespace) -> None:
    if args.method == "model" and args.ckpt is None:
        raise MusicfxError("pass --ckpt CHECKPOINT (an automix model written by `musicfx fit`), or --method sum")
    if args.method == "sum":
        if args.ckpt is not None:
            raise MusicfxError("--ckpt goes with --method model; --method sum needs no checkpoint")
        if args.params is not None:
            raise MusicfxError("--params writes a console model's settings; --method sum has none")
    elif args.stems is not None:
        raise MusicfxError("--stems goes with --method sum; a checkpoint mixes the stems it was trained on")
    if (args.features is not None or args.ir_folder is not None) and not args.normalize:
        raise MusicfxError("--features and --ir-folder go with --normalize")
    if args.ir_folder is not None and not Path(args.ir_folder).is_dir():
        raise MusicfxError(f"{args.ir_folder}: no such impulse-response folder (--ir-folder)")
    if args.ceiling_db > 0.0:
        raise MusicfxError(f"--ceiling-db must be at most 0 dBFS, got {args.ceiling_db:g}")
    common.check_engine_arguments(args)


def _check_output(args: argparse.Namespace, inputs: Sequence[Path]) -> Tuple[Path, Optional[Path]]:
    import soundfile as sf

    from musicfx.audio.io import _format_for

    output = Path(args.output)
    if output.is_dir():
        raise MusicfxError(f"{output}: is a folder; -o names the mix file to write (e.g. mix.wav)")
    if output.suffix.lower() in common.UNWRITABLE_AUDIO_SUFFIXES:
        raise MusicfxError(f"{output}: cannot write '{output.suffix}' files; name a .wav or .flac file")
    format_ = _format_for(output)
    if args.subtype is not None and not sf.check_format(format_, args.subtype.upper()):
        raise MusicfxError(f"{output}: cannot write subtype {args.subtype} in {format_} "
                           f"(choose from {', '.join(sf.available_subtypes(format_))})")
    common.check_targets([output], inputs, args.overwrite)
    params = Path(args.params) if args.params is not None else None
    if params is not None:
        if params.resolve() == output.resolve():
            raise MusicfxError(f"{params}: --params names the JSON file to write, not the mix")
        common.check_new_file(params, "--params", args.overwrite, inputs)
    return output, params


def _trained_on_normalized(checkpoint: str, trust: bool) -> Optional[str]:
    """The ``normalized_root`` a checkpoint's data module was given, if any (its recipe is in the file)."""
    from musicfx.checkpoint import load_checkpoint

    try:
        payload = load_checkpoint(checkpoint, trust=trust, mmap=True)
    except MusicfxError:  # load() already read it; this is only a hint
        return None
    hparams = payload.get("datamodule_hyper_parameters") or {}
    return hparams.get("normalized_root") if isinstance(hparams, dict) else None


def _load_task(args: argparse.Namespace, device: object) -> object:
    task = common.load_task(args.ckpt, device, "mix", args.trust_checkpoint)
    if getattr(task, "mode", "mix") == "pretrain":
        raise MusicfxError(
            f"{args.ckpt}: a pretraining checkpoint (mode: pretrain) has no trained mixer; train one with "
            "recipes/automix/fxnorm.yaml --model.init_args.pretrained CKPT"
        )
    if args.params is not None and not (hasattr(task.model, "predict_parameters")
                                        and hasattr(task.model, "parameters_to_json")):
        raise MusicfxError(f"{args.ckpt}: --params needs a model that predicts console settings "
                           f"(musicfx.models.console.MixingConsole), not {type(task.model).__name__}")
    return task


def run(args: argparse.Namespace) -> int:
    """Run ``musicfx mix``; returns the exit status."""
    _check_arguments(args)
    folder = Path(args.stems_dir)
    task = None
    device = common.resolve_device(args.device)
    if args.method == "model":
        # The stem names come from the checkpoint, so it is loaded first (quick next to the mixing).
        if not folder.is_dir():
            find_stems(folder, MUSDB_STEMS)  # raises the folder error
        task = _load_task(args, device)
        stems: Tuple[str, ...] = tuple(task.stems)
    else:
        stems = tuple(args.stems or MUSDB_STEMS)
    found = find_stems(folder, stems, exclude=[Path(args.output)] + ([Path(args.params)] if args.params else []))
    inputs = list(found.found.values())
    infos = common.check_inputs(inputs)
    output, params_path = _check_output(args, inputs)
    features = None
    if args.normalize:
        features = load_features(args.features)
        for stem in found.found:
            for name in ("eq", "dynamics", "panning", "loudness"):
                features.require(stem, name)
    normalized_root = _trained_on_normalized(args.ckpt, args.trust_checkpoint) if task is not None and not args.normalize else None
    if normalized_root:
        common.warn(f"{args.ckpt} was trained on effect-normalized stems (data normalized_root {normalized_root}); "
                    "pass --normalize --features FEATURES.npz to mix stems normalized like those")
    if found.missing:
        common.warn(f"{folder}: no {', '.join(found.missing)} stem ({', '.join(stem_file_names(found.missing))}); "
                    "mixing silence in its place")
    if found.unknown:
        common.warn(f"{folder}: ignoring {', '.join(p.name for p in found.unknown)} (not one of the stems "
                    f"{', '.join(stems)})")

    average = None
    process = common.engine_options(args)
    with common.writing_into(output.parent), \
            tempfile.TemporaryDirectory(dir=str(output.parent), prefix=".musicfx-mix-") as workdir, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = found.found
        if features is not None:
            files = normalize_stem_files(files, Path(workdir), features, args.ir_folder, progress=not args.quiet)
        if task is not None:
            slots = [stems.index(name) for name in files]
            if params_path is not None:
                average = ParameterAverage(len(stems))
            mixer = model_mixer(task.model, slots, len(stems), average)
            report = write_mix(mixer, list(files.values()), output, task.sample_rate, task.channels,
                               args.ceiling_db, args.subtype, Path(workdir), device=device, **process)
        else:
            rate = infos[0].sample_rate
            report = write_mix(sum_mixer, list(files.values()), output, rate, 2, args.ceiling_db, args.subtype,
                               Path(workdir), device=None, **process)
        if params_path is not None:
            _write_params(params_path, task, average, stems, found, args)
    common.report_warnings(caught)
    if not args.quiet:
        scaled = (f"scaled by {report.gain_db:.2f} dB to {args.ceiling_db:g} dBFS" if report.gain_db < 0
                  else "not scaled")
        print(f"{folder} -> {output} (peak {report.peak_db:.2f} dBFS, {scaled})")
        if params_path is not None:
            print(f"settings -> {params_path}")
    return 0


def _write_params(path: Path, task: object, average: ParameterAverage, stems: Sequence[str], found: StemFiles,
                  args: argparse.Namespace) -> None:
    from musicfx.audio.io import atomic_path

    settings = task.model.parameters_to_json(average.mean(), list(stems))
    settings.update({
        "segments": average.segments,
        "segment_seconds": args.segment,
        "averaging": "per stem, the mean of the settings predicted for each segment, weighted by the stem's RMS "
                     "in that segment",
        "missing_stems": list(found.missing),
        "normalized": bool(args.normalize),
        "checkpoint": str(args.ckpt),
    })
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(settings, indent=2) + "\n")
