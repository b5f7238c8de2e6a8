"""The ``musicfx`` command.

* ``musicfx fit|validate|test|predict -c recipe.yaml [-c overlay.yaml ...]``: one LightningCLI in subclass
  mode serving every task (the recipe names the task, model, data and trainer).
* ``musicfx denoise IN... -o OUT --ckpt CKPT`` (or ``--method spectral-gate``): run on files.

Errors the user can fix (a missing file, silent input, a missing ffmpeg) print one line, no traceback,
and exit with status 1.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from musicfx.errors import AudioError, MusicfxError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# Task commands beyond ``denoise``: each module defines ``add_parser(commands)``, which adds its subparser
# and sets ``func``. Imported only to build the parser, so ``musicfx --help`` stays light.
COMMAND_MODULES: Tuple[str, ...] = (
    "musicfx.commands.separate",
    "musicfx.commands.evaluate",
    "musicfx.commands.debleed",
    "musicfx.commands.mix",
    "musicfx.commands.fxnorm",
)
# Audio formats people ask for that libsndfile cannot encode: an error, not a folder named "out.mp4/".
UNWRITABLE_AUDIO_SUFFIXES = (".mp3", ".mp4", ".m4a", ".aac", ".wma", ".webm", ".opus", ".alac")


def lightning_cli(argv: Optional[List[str]], run: bool = True):
    """The CLI every recipe goes through (``musicfx fit ...``, and ``benchmarks/gpu_check.py``).

    Args:
        argv: ``["fit", "-c", "recipe.yaml", ...]``; with ``run=False`` no subcommand (``["-c", ...]``):
            the trainer, model and datamodule are built and left to the caller. ``None``: ``sys.argv``.
        run: run the subcommand.
    """
    import lightning.pytorch as pl

    from musicfx.tasks.rundir import RecipeCLI
    from musicfx.tasks.base import Task

    return RecipeCLI(
        Task,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        run=run,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "Train or evaluate a musicfx task from a recipe."},
    )


def _run_lightning(argv: Optional[List[str]]) -> int:
    """Run LightningCLI on ``argv`` (``None``: on ``sys.argv``, which DDP launchers re-execute)."""
    lightning_cli(argv)
    return 0


def _audio_files(paths: Sequence[str], exclude: Optional[Path] = None) -> List[Path]:
    """Files named, and audio files found recursively in folders named (hidden files and anything under
    ``exclude``, the output folder, skipped so a second run does not take earlier outputs as inputs)."""
    from musicfx.audio.io import AUDIO_EXTENSIONS, STEM_EXTENSIONS

    excluded = exclude.resolve() if exclude is not None else None
    files: List[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file()
                and p.name.lower().endswith(AUDIO_EXTENSIONS + STEM_EXTENSIONS)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and not (excluded is not None and excluded in p.resolve().parents)
            )
            if not found:
                raise MusicfxError(f"{path}: folder holds no audio files")
            files.extend(found)
        elif not path.exists():
            raise AudioError(f"{path}: no such file")
        else:
            files.append(path)
    return files


def _output_paths(inputs: List[Path], output: str, overwrite: bool) -> List[Path]:
    """One output per input: ``-o`` is a file for a single input with an audio suffix, else a folder."""
    import soundfile as sf

    out = Path(output)
    writable = {f".{ext.lower()}" for ext in sf.available_formats()} | {".aif"}
    if len(inputs) == 1 and out.suffix.lower() in writable and not out.is_dir():
        targets = [out]
    elif out.suffix.lower() in UNWRITABLE_AUDIO_SUFFIXES and not out.is_dir():
        raise MusicfxError(
            f"{out}: cannot write '{out.suffix}' files; name a .wav or .flac file, or a folder without a suffix"
        )
    else:
        if out.exists() and not out.is_dir():
            raise MusicfxError(f"{out}: exists and is not a folder (several inputs need an output folder)")
        targets = []
        for path in inputs:
            suffix = path.suffix.lower() if path.suffix.lower() in writable else ".wav"
            name = path.name[: -len(".stem.mp4")] if path.name.lower().endswith(".stem.mp4") else path.stem
            targets.append(out / f"{name}{suffix}")
    if len(set(targets)) != len(targets):
        raise MusicfxError("two inputs share a file name; process them into different folders")
    resolved_inputs = {p.resolve() for p in inputs}
    for target in targets:
        if target.resolve() in resolved_inputs:
            raise AudioError(f"{target}: output would overwrite an input file; choose another -o")
        if target.exists() and not overwrite:
            raise AudioError(f"{target}: exists; pass --overwrite to replace it")
    return targets


def _check_inputs(inputs: List[Path]) -> list:
    """Fail before anything is written if any input cannot even be opened; returns their ``AudioInfo``."""
    from musicfx.audio.io import audio_info

    return [audio_info(path) for path in inputs]


def _denoise(args: argparse.Namespace) -> int:
    from musicfx.api import _resolve_device, load
    from musicfx.inference import process_file

    inputs = _audio_files(args.inputs, exclude=Path(args.output))
    targets = _output_paths(inputs, args.output, args.overwrite)
    infos = _check_inputs(inputs)
    device = _resolve_device(args.device)
    if args.method == "spectral-gate":
        from musicfx.baselines.spectral_gate import SpectralGate

        # The gate works at each file's own rate and channel count: nothing to resample or remap.
        runs = [(SpectralGate(sample_rate=info.sample_rate), info.sample_rate, info.channels) for info in infos]
    else:
        if args.ckpt is None:
            raise MusicfxError("pass --ckpt CHECKPOINT (or --method spectral-gate)")
        task = load(args.ckpt, device=device)
        runs = [(task.model, task.sample_rate, task.channels)] * len(inputs)
    for path, target, (model, rate, channels) in zip(inputs, targets, runs):
        process_file(
            model, path, target, rate, channels, segment=args.segment, overlap=args.overlap,
            batch_size=args.batch_size, device=device, resample_input=not args.no_resample,
            progress=not args.quiet,
        )
        if args.spectrogram:
            _save_before_after(path, target)
        if not args.quiet:
            print(f"{path} -> {target}")
    return 0


def _save_before_after(before: Path, after: Path, seconds: float = 30.0) -> Path:
    """Spectrogram picture of the first ``seconds`` of input and output, saved beside the output."""
    from musicfx.audio.io import audio_info, read_audio
    from musicfx.audio.plot import save_spectrogram_png

    y, rate = read_audio(after, frames=int(seconds * audio_info(after).sample_rate))
    # Only the first seconds of the input are decoded (``frames`` counts at the file's own rate).
    x, _ = read_audio(before, sample_rate=rate, frames=int(seconds * audio_info(before).sample_rate))
    frames = min(x.shape[-1], y.shape[-1])
    picture = after.with_suffix(".png")
    save_spectrogram_png(picture, {"before": x[:, :frames], "after": y[:, :frames]}, rate, title=after.name)
    return picture


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicfx",
        description="Denoise, debleed, separate and automix recorded music.",
        epilog="Training: musicfx fit -c recipes/quickstart.yaml  (also validate, test, predict; "
        "see `musicfx fit --help`).",
    )
    parser.add_argument("--version", action="version", version=f"musicfx {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        commands.add_parser(name, help=f"{name} a task from a recipe (LightningCLI; -c recipe.yaml)", add_help=False)

    denoise = commands.add_parser(
        "denoise", help="denoise audio files",
        description="Denoise recordings of any length with a trained checkpoint or the spectral gate.",
    )
    denoise.add_argument("inputs", nargs="+", help="audio files or folders")
    denoise.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    denoise.add_argument("--ckpt", help="checkpoint written by `musicfx fit`")
    denoise.add_argument("--method", choices=("model", "spectral-gate"), default="model")
    denoise.add_argument("--segment", type=float, default=10.0, help="seconds per model call (default 10)")
    denoise.add_argument("--overlap", type=float, default=0.25, help="fraction of a segment cross-faded")
    denoise.add_argument("--batch-size", type=int, default=1, help="segments per model call")
    denoise.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    denoise.add_argument("--overwrite", action="store_true", help="replace existing output files")
    denoise.add_argument("--no-resample", action="store_true", help="fail instead of resampling to the model's rate")
    denoise.add_argument("--spectrogram", action="store_true", help="also write a before/after picture (.png)")
    denoise.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    denoise.set_defaults(func=_denoise)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(commands)
    return parser


def _version() -> str:
    from musicfx import __version__

    return __version__


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            return _run_lightning(None if argv == sys.argv[1:] else argv)
        parser = _build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.func(args)
    except MusicfxError as error:
        print(f"musicfx: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("musicfx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
