"""``musicfx denoise IN... -o OUT (--ckpt CKPT | --method spectral-gate)``: denoise recordings of any length.

``-o`` is the output file for one input with an audio suffix, else a folder that receives one file per
input (same name; ``.wav`` where the input's format cannot be written). Every file streams through the
engine (:func:`musicfx.inference.process_file`) in constant memory, at its own rate and channel count.
Nothing is written unless every input can be read, existing outputs are kept unless ``--overwrite``,
inputs are never overwritten, and an error leaves no partial file and no new empty folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Sequence

from musicfx.commands import common
from musicfx.errors import MusicfxError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``denoise`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "denoise", help="denoise audio files",
        description="Denoise recordings of any length with a trained checkpoint or the spectral gate.",
    )
    common.add_io_arguments(parser, "audio files or folders", "output file (one input) or folder",
                            "denoise checkpoint written by `musicfx fit`")
    parser.add_argument("--method", choices=("model", "spectral-gate"), default="model")
    common.add_engine_arguments(parser, shifts=True)
    parser.add_argument("--spectrogram", action="store_true", help="also write a before/after picture (.png)")
    common.add_output_arguments(parser)
    parser.set_defaults(func=run)


def output_paths(inputs: Sequence[Path], output: Path, overwrite: bool) -> List[Path]:
    """One output per input: ``output`` itself for a single input with an audio suffix, else
    ``output/<name><suffix>``.

    Raises:
        MusicfxError: an unwritable format, ``output`` a file where a folder is needed, clashing names.
        AudioError: an output would replace an input, or exists without ``overwrite``.
    """
    suffix = output.suffix.lower()
    if len(inputs) == 1 and suffix in common.writable_suffixes() and not output.is_dir():
        targets = [output]
    elif suffix in common.UNWRITABLE_AUDIO_SUFFIXES and not output.is_dir():
        raise MusicfxError(
            f"{output}: cannot write '{output.suffix}' files; name a .wav or .flac file, or a folder without a suffix"
        )
    else:
        if output.exists() and not output.is_dir():
            raise MusicfxError(f"{output}: exists and is not a folder (several inputs need an output folder)")
        targets = [output / common.output_name(path) for path in inputs]
    common.check_targets(targets, inputs, overwrite, sources=inputs)
    return targets


def _picture(target: Path) -> Path:
    return target.with_suffix(".png")


def run(args: argparse.Namespace) -> int:
    """Run ``musicfx denoise``; returns the exit status."""
    from musicfx.inference import process_file

    common.check_engine_arguments(args)
    if args.method == "model" and args.ckpt is None:
        raise MusicfxError("pass --ckpt CHECKPOINT (or --method spectral-gate)")
    if args.method == "spectral-gate" and args.ckpt is not None:
        raise MusicfxError("--ckpt goes with --method model; the spectral gate needs no checkpoint")
    output = Path(args.output)
    inputs = common.audio_files(args.inputs, exclude=output)
    targets = output_paths(inputs, output, args.overwrite)
    if args.spectrogram:
        for target in targets:
            common.check_new_file(_picture(target), "--spectrogram", args.overwrite, inputs)
    infos = common.check_inputs(inputs)
    device = common.resolve_device(args.device)
    if args.method == "spectral-gate":
        from musicfx.baselines.spectral_gate import SpectralGate

        # The gate works at each file's own rate and channel count: nothing to resample or remap.
        runs = [(SpectralGate(sample_rate=info.sample_rate), info.sample_rate, info.channels) for info in infos]
    else:
        task = common.load_task(args.ckpt, device, "denoise", args.trust_checkpoint)
        runs = [(task.model, task.sample_rate, task.channels)] * len(inputs)
    with common.writing_into(targets[0].parent):
        for path, target, (model, rate, channels) in zip(inputs, targets, runs):
            process_file(model, path, target, rate, channels, device=device, **common.engine_options(args))
            if args.spectrogram:
                save_before_after(path, target, _picture(target))
            if not args.quiet:
                print(f"{path} -> {target}")
    return 0


def save_before_after(before: Path, after: Path, picture: Path, seconds: float = 30.0) -> Path:
    """Spectrogram picture of the first ``seconds`` of input and output, written to ``picture``."""
    from musicfx.audio.io import audio_info, read_audio
    from musicfx.audio.plot import save_spectrogram_png

    y, rate = read_audio(after, frames=int(seconds * audio_info(after).sample_rate))
    # Only the first seconds of the input are decoded (``frames`` counts at the file's own rate).
    x, _ = read_audio(before, sample_rate=rate, frames=int(seconds * audio_info(before).sample_rate))
    frames = min(x.shape[-1], y.shape[-1])
    save_spectrogram_png(picture, {"before": x[:, :frames], "after": y[:, :frames]}, rate, title=after.name)
    return picture
