"""``musicfx separate IN... -o OUTDIR --ckpt CKPT``: split recordings into stems with a trained model.

Writes ``OUTDIR/<name>/<source>.wav`` per input (or ``OUTDIR/<name>.stem.mp4`` with ``--stem-mp4``),
streaming in constant memory (:func:`musicfx.inference.separate_file`,
:func:`musicfx.inference.separate_to_stem_file`), at each input's own rate and channel count. Like
``denoise``: nothing is written unless every input can be read, existing outputs are kept unless
``--overwrite``, inputs are never overwritten, and an error leaves no partial file.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Sequence, Tuple

from musicfx.commands import common
from musicfx.errors import AudioError, MissingDependencyError, MusicfxError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``separate`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "separate", help="separate audio files into stems",
        description="Separate recordings of any length into stems with a trained checkpoint.",
    )
    common.add_io_arguments(parser, "audio files or folders", "output folder (one sub-folder per input)",
                            "separation checkpoint written by `musicfx fit`")
    parser.add_argument("--config", metavar="YAML",
                        help="with --ckpt: a Music-Source-Separation-Training BS-RoFormer / Mel-Band RoFormer "
                             "checkpoint and its YAML config (bs-roformer 0.3.x layout)")
    parser.add_argument("--stem-mp4", action="store_true", help="write OUT/<name>.stem.mp4 (needs ffmpeg)")
    common.add_engine_arguments(parser, shifts=True)
    common.add_output_arguments(parser)
    parser.set_defaults(func=run)


def output_plan(
    inputs: Sequence[Path], output: Path, sources: Sequence[str], stem_mp4: bool, overwrite: bool
) -> List[Tuple[Path, List[Path]]]:
    """Per input, the files it becomes: ``[output/<name>.stem.mp4]`` or ``output/<name>/<source>.wav``.

    Raises:
        MusicfxError: ``output`` is a file, or two inputs share a name.
        AudioError: an output would replace an input, or exists without ``overwrite``.
    """
    if output.exists() and not output.is_dir():
        raise MusicfxError(f"{output}: exists and is not a folder (-o names the output folder)")
    plan = []
    for path in inputs:
        name = common.track_name(path)
        plan.append((path, [output / f"{name}.stem.mp4"] if stem_mp4 else
                     [output / name / f"{source}.wav" for source in sources]))
    # A clash shows in the first target of each input (the others share its folder).
    common.check_targets([targets[0] for _, targets in plan], inputs, overwrite, sources=inputs)
    common.check_targets([target for _, targets in plan for target in targets], inputs, overwrite)
    return plan


def _load_msst_task(ckpt: str, config: str, device: object) -> object:
    """A separation task around an MSST checkpoint (``--config``), as ``load`` gives for our own checkpoints."""
    from musicfx.models.msst import load_msst
    from musicfx.tasks.separate import SeparationTask

    model = load_msst(ckpt, config)
    task = SeparationTask(model, sources=model.sources, sample_rate=model.sample_rate, channels=model.channels)
    return task.to(device).eval()


def run(args: argparse.Namespace) -> int:
    """Run ``musicfx separate``; returns the exit status."""
    from musicfx.audio.io import ffmpeg_available
    from musicfx.inference import separate_file, separate_to_stem_file

    common.check_engine_arguments(args)
    output = Path(args.output)
    inputs = common.audio_files(args.inputs, exclude=output)
    infos = common.check_inputs(inputs)
    if args.ckpt is None:
        raise MusicfxError("pass --ckpt CHECKPOINT (a separation model written by `musicfx fit`)")
    if args.stem_mp4 and not ffmpeg_available():
        raise MissingDependencyError(
            "--stem-mp4 needs ffmpeg and ffprobe on PATH (Debian/Ubuntu: apt-get install ffmpeg; "
            "macOS: brew install ffmpeg); or drop --stem-mp4 to write wav stems"
        )
    if args.stem_mp4:
        for path, info in zip(inputs, infos):
            if info.channels > 2:
                raise AudioError(f"{path}: .stem.mp4 holds mono or stereo streams, not {info.channels} channels")
    device = common.resolve_device(args.device)
    task = (_load_msst_task(args.ckpt, args.config, device) if args.config
            else common.load_task(args.ckpt, device, "separate", args.trust_checkpoint))
    sources = list(task.sources)
    plan = output_plan(inputs, output, sources, args.stem_mp4, args.overwrite)
    options = dict(common.engine_options(args), device=device)
    with common.writing_into(output):
        for source, targets in plan:
            if args.stem_mp4:
                separate_to_stem_file(task.model, source, targets[0], sources, task.sample_rate, task.channels,
                                      **options)
            else:
                separate_file(task.model, source, targets, task.sample_rate, task.channels, **options)
            if not args.quiet:
                print(f"{source} -> {targets[0] if args.stem_mp4 else targets[0].parent}")
    return 0
