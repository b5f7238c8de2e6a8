"""``musicfx separate IN... -o OUTDIR --ckpt CKPT``: split recordings into stems with a trained model.

Writes ``OUTDIR/<name>/<source>.wav`` per input (or ``OUTDIR/<name>.stem.mp4`` with ``--stem-mp4``),
streaming in constant memory, at each input's own rate and channel count. Like ``denoise``: nothing is
written unless every input can be read, existing outputs are kept unless ``--overwrite``, inputs are
never overwritten, and an error leaves no partial file.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Sequence, Tuple

from musicfx.errors import AudioError, MusicfxError


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``separate`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "separate", help="separate audio files into stems",
        description="Separate recordings of any length into stems with a trained checkpoint.",
    )
    parser.add_argument("inputs", nargs="+", help="audio files or folders")
    parser.add_argument("-o", "--output", required=True, help="output folder (one sub-folder per input)")
    parser.add_argument("--ckpt", help="separation checkpoint written by `musicfx fit`")
    parser.add_argument("--config", metavar="YAML",
                        help="with --ckpt: a Music-Source-Separation-Training BS-RoFormer / Mel-Band RoFormer "
                             "checkpoint and its YAML config (bs-roformer 0.3.x layout)")
    parser.add_argument("--stem-mp4", action="store_true", help="write OUT/<name>.stem.mp4 (needs ffmpeg)")
    parser.add_argument("--segment", type=float, default=10.0, help="seconds per model call (default 10)")
    parser.add_argument("--overlap", type=float, default=0.25, help="fraction of a segment cross-faded")
    parser.add_argument("--batch-size", type=int, default=1, help="segments per model call")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-resample", action="store_true", help="fail instead of resampling to the model's rate")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _track_name(path: Path) -> str:
    return path.name[: -len(".stem.mp4")] if path.name.lower().endswith(".stem.mp4") else path.stem


def output_plan(
    inputs: Sequence[Path], output: Path, sources: Sequence[str], stem_mp4: bool, overwrite: bool
) -> List[Tuple[Path, List[Path]]]:
    """Per input, the files it becomes: ``[output/<name>.stem.mp4]`` or ``output/<name>/<source>.wav``.

    Raises:
        MusicfxError: ``output`` is a file, two inputs share a name, an output would replace an input,
            or an output exists without ``overwrite``.
    """
    if output.exists() and not output.is_dir():
        raise MusicfxError(f"{output}: exists and is not a folder (-o names the output folder)")
    names = [_track_name(path) for path in inputs]
    for name in set(names):
        if names.count(name) > 1:
            clashing = [str(p) for p, n in zip(inputs, names) if n == name]
            raise MusicfxError(
                f"inputs share the name '{name}' ({', '.join(clashing)}); separate them into different folders"
            )
    plan = []
    for path, name in zip(inputs, names):
        if stem_mp4:
            targets = [output / f"{name}.stem.mp4"]
        else:
            targets = [output / name / f"{source}.wav" for source in sources]
        plan.append((path, targets))
    resolved_inputs = {p.resolve() for p in inputs}
    for _, targets in plan:
        for target in targets:
            if target.resolve() in resolved_inputs:
                raise AudioError(f"{target}: output would overwrite an input file; choose another -o")
            if target.exists() and not overwrite:
                raise AudioError(f"{target}: exists; pass --overwrite to replace it")
    return plan


def _write_stem_mp4(
    task: object, source: Path, target: Path, args: argparse.Namespace, device: object
) -> None:
    """Separate into temporary wavs beside ``target``, then pack mixture and stems into one file."""
    import tempfile

    import torch

    from musicfx.audio.io import read_audio
    from musicfx.inference import separate_file, write_stem_file

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=str(target.parent), prefix=".musicfx-") as folder:
        stems_paths = [Path(folder) / f"{name}.wav" for name in task.sources]
        separate_file(
            task.model, source, stems_paths, task.sample_rate, task.channels, segment=args.segment,
            overlap=args.overlap, batch_size=args.batch_size, device=device,
            resample_input=not args.no_resample, progress=not args.quiet,
        )
        stems = [read_audio(path)[0] for path in stems_paths]
        mix, rate = read_audio(source)
        write_stem_file(target, mix, torch.stack(stems), rate, list(task.sources))


def _load_msst_task(ckpt: str, config: str, device: object) -> object:
    """A separation task around an MSST checkpoint (``--config``), as ``load`` gives for our own checkpoints."""
    from musicfx.models.msst import load_msst
    from musicfx.tasks.separate import SeparationTask

    model = load_msst(ckpt, config)
    task = SeparationTask(model, sources=model.sources, sample_rate=model.sample_rate, channels=model.channels)
    return task.to(device).eval()


def run(args: argparse.Namespace) -> int:
    """Run ``musicfx separate``; returns the exit status."""
    from musicfx.api import _resolve_device, load
    from musicfx.audio.io import ffmpeg_available
    from musicfx.cli import _audio_files, _check_inputs
    from musicfx.errors import MissingDependencyError
    from musicfx.inference import separate_file

    output = Path(args.output)
    inputs = _audio_files(args.inputs, exclude=output)
    infos = _check_inputs(inputs)
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
    device = _resolve_device(args.device)
    task = _load_msst_task(args.ckpt, args.config, device) if args.config else load(args.ckpt, device=device)
    sources = getattr(task, "sources", None)
    if not sources:
        raise MusicfxError(f"{args.ckpt}: not a separation checkpoint (its task has no sources)")
    plan = output_plan(inputs, output, list(sources), args.stem_mp4, args.overwrite)
    for source, targets in plan:
        if args.stem_mp4:
            _write_stem_mp4(task, source, targets[0], args, device)
        else:
            separate_file(
                task.model, source, targets, task.sample_rate, task.channels, segment=args.segment,
                overlap=args.overlap, batch_size=args.batch_size, device=device,
                resample_input=not args.no_resample, progress=not args.quiet,
            )
        if not args.quiet:
            print(f"{source} -> {targets[0] if args.stem_mp4 else targets[0].parent}")
    return 0
