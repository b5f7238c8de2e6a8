"""``musicfx debleed TRACK... -o OUTDIR (--ckpt CKPT | --method kamir)``: remove the bleed between the tracks
of a live multitrack recording.

The inputs are the M microphone tracks of one recording (files, or one folder of them, taken in sorted
order); each becomes ``OUTDIR/<its file name>``. All tracks stream through the model together, in
lockstep (:func:`musicfx.inference.process_files`), so any length runs in constant memory. A trained
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
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

from musicfx.checkpoint import add_trust_argument
from musicfx.errors import AudioError, MusicfxError

if TYPE_CHECKING:
    import torch

#: Defaults of the chunking: models take 10 s with a quarter cross-faded; KAMIR estimates its leakage per
#: 30 s chunk (long enough for a stable estimate, short enough to follow musicians who move) and only
#: needs a short cross-fade between chunks.
MODEL_SEGMENT, MODEL_OVERLAP = 10.0, 0.25
KAMIR_SEGMENT, KAMIR_OVERLAP = 30.0, 0.1
KAMIR_DEFAULTS = {"n_fft": 8192, "iterations": 5, "min_leakage": 0.05}
#: Seconds per block when scoring leakage: blocks of 10 to 20 s bound the memory of long recordings.
LEAKAGE_BLOCK_SECONDS = 10.0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``debleed`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "debleed", help="remove bleed between the tracks of a multitrack recording",
        description="Remove microphone bleed between the tracks of one live multitrack recording, of any length, "
        "with a trained checkpoint or KAMIR. Writes OUTDIR/<file name> per track.",
    )
    parser.add_argument("inputs", nargs="+", help="the tracks of one recording (audio files), or one folder of them")
    parser.add_argument("-o", "--output", required=True, help="output folder (one file per track, same name)")
    parser.add_argument("--ckpt", help="debleed checkpoint written by `musicfx fit`")
    add_trust_argument(parser)
    parser.add_argument("--method", choices=("model", "kamir"), default="model",
                        help="a trained model (--ckpt, default) or KAMIR (no training, any number of tracks)")
    kamir = parser.add_argument_group("KAMIR (--method kamir)")
    kamir.add_argument("--n-fft", type=int, help=f"STFT size (default {KAMIR_DEFAULTS['n_fft']})")
    kamir.add_argument("--iterations", type=int, help=f"iterations (default {KAMIR_DEFAULTS['iterations']})")
    kamir.add_argument("--min-leakage", type=float,
                       help=f"floor of the leakage between tracks (default {KAMIR_DEFAULTS['min_leakage']})")
    parser.add_argument("--segment", type=float,
                        help=f"seconds per model call (default {MODEL_SEGMENT:g}; {KAMIR_SEGMENT:g} for KAMIR)")
    parser.add_argument("--overlap", type=float,
                        help=f"fraction of a segment cross-faded (default {MODEL_OVERLAP:g}; "
                        f"{KAMIR_OVERLAP:g} for KAMIR)")
    parser.add_argument("--batch-size", type=int, default=1, help="segments per model call")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-resample", action="store_true", help="fail instead of resampling to the model's rate")
    parser.add_argument("--leakage", action="store_true",
                        help="print the inter-track leakage score (mean coherence) before and after")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no per-file lines")
    parser.set_defaults(func=run)


# ------------------------------------------------------------------------------------------ track order
def _tokens(path: Path) -> List[str]:
    name = path.name[: -len(".stem.mp4")] if path.name.lower().endswith(".stem.mp4") else path.stem
    return [name.lower()] + [token for token in re.split(r"[^0-9a-z]+", name.lower()) if token]


def match_tracks(paths: Sequence[Path], names: Sequence[str]) -> Optional[List[int]]:
    """Which file holds each track, judged by file names alone.

    A file matches a track when its name without extension is the track's name, or contains it as a word
    (``vocals.wav``, ``02_Vocals.flac``, ``lead-vocals.wav`` all match ``vocals``; case is ignored).

    Args:
        paths: the files.
        names: the track names, in the model's order.

    Returns:
        ``order`` with ``paths[order[k]]`` holding track ``names[k]``, when every track matches exactly one
        file and every file exactly one track; otherwise ``None`` (take the files in the order given).
    """
    if len(paths) != len(names):
        return None
    tokens = [set(_tokens(path)) for path in paths]
    order: List[int] = []
    for name in names:
        hits = [i for i, words in enumerate(tokens) if name.lower() in words]
        if len(hits) != 1:
            return None
        order.append(hits[0])
    return order if len(set(order)) == len(order) else None


# ---------------------------------------------------------------------------------------------- outputs
def output_plan(inputs: Sequence[Path], output: Path, overwrite: bool) -> List[Path]:
    """``output/<file name>`` per input (``.wav`` instead of a suffix libsndfile cannot write).

    Raises:
        MusicfxError: ``output`` is a file, or two inputs share a name.
        AudioError: an output would replace an input, or exists without ``overwrite``.
    """
    import soundfile as sf

    if output.exists() and not output.is_dir():
        raise MusicfxError(f"{output}: exists and is not a folder (-o names the output folder)")
    writable = {f".{ext.lower()}" for ext in sf.available_formats()} | {".aif"}
    targets = []
    for path in inputs:
        name = path.name[: -len(".stem.mp4")] if path.name.lower().endswith(".stem.mp4") else path.stem
        targets.append(output / f"{name}{path.suffix if path.suffix.lower() in writable else '.wav'}")
    seen = {}
    for path, target in zip(inputs, targets):
        if target.name in seen:
            raise MusicfxError(
                f"inputs {seen[target.name]} and {path} would both be written to {target}; rename one of them"
            )
        seen[target.name] = path
    resolved_inputs = {p.resolve() for p in inputs}
    for target in targets:
        if target.resolve() in resolved_inputs:
            raise AudioError(f"{target}: output would overwrite an input file; choose another -o")
        if target.exists() and not overwrite:
            raise AudioError(f"{target}: exists; pass --overwrite to replace it")
    return targets


# ------------------------------------------------------------------------------------------- processing
def common_rate(inputs: Sequence[Path], infos: Sequence) -> int:
    """The sample rate all tracks share (``infos``: their :class:`~musicfx.audio.io.AudioInfo`).

    Raises:
        AudioError: naming the first track at another rate.
    """
    rate = infos[0].sample_rate
    for path, info in zip(inputs, infos):
        if info.sample_rate != rate:
            raise AudioError(
                f"{path}: sample rate {info.sample_rate} Hz differs from {inputs[0]}'s {rate} Hz; "
                "the tracks of one recording must share one rate"
            )
    return rate


#: A debleed model: mono tracks ``(batch, M, time) -> (batch, M, time)``.
TrackModel = Callable[["torch.Tensor"], "torch.Tensor"]


def per_channel(model: TrackModel) -> TrackModel:
    """Wrap a mono-track model ``(B, M, T) -> (B, M, T)`` to take ``(B, M, C, T)``, each channel on its own.

    Channels are folded into the batch exactly as :func:`musicfx.tasks.debleed.fold_channels` does (not
    imported: it would import Lightning, which KAMIR does not need).
    """

    def run(tracks: torch.Tensor) -> torch.Tensor:
        batch, count, channels, time = tracks.shape
        folded = model(tracks.transpose(1, 2).reshape(batch * channels, count, time))
        return folded.reshape(batch, channels, count, time).transpose(1, 2)

    return run


def debleed_files(
    model: TrackModel,
    inputs: Sequence[Path],
    outputs: Sequence[Path],
    model_sample_rate: Optional[int] = None,
    segment: float = MODEL_SEGMENT,
    overlap: float = MODEL_OVERLAP,
    batch_size: int = 1,
    device: Optional[torch.device] = None,
    resample_input: bool = True,
    progress: bool = True,
) -> List[Path]:
    """Stream the tracks of one recording through a debleed model into one file per track.

    Args:
        model: mono tracks ``(batch, M, time) -> (batch, M, time)`` at ``model_sample_rate``, ``M = len(inputs)``
            (a task's ``model``, or :class:`musicfx.baselines.kamir.KAMIR`).
        inputs: the M track files, in the model's order; one sample rate, any channel counts (mono tracks
            beside multichannel ones are duplicated up, see the module docstring).
        outputs: one file per input, written with that input's channel count, at the inputs' rate.
        model_sample_rate: the model's rate (``None``: the files' own).
        segment: seconds per model call (cut to the longest input); overlap: fraction cross-faded.
        batch_size, device, resample_input, progress: as for :func:`musicfx.inference.process_files`.

    Returns:
        ``outputs`` as paths; they appear only when every one of them was written.

    Raises:
        AudioError: unreadable, silent, non-finite or too short inputs; inputs at different rates, or with
            channel counts that cannot be brought to the widest (e.g. 2 and 3).
    """
    from musicfx.cli import _check_inputs
    from musicfx.inference import process_files

    inputs, outputs = [Path(p) for p in inputs], [Path(p) for p in outputs]
    infos = _check_inputs(inputs)
    rate = common_rate(inputs, infos)
    channels = max(info.channels for info in infos)
    longest = max(info.frames for info in infos) / rate
    segment = max(min(segment, longest), 1.0 / rate)
    kwargs = dict(segment=segment, overlap=overlap, batch_size=batch_size, device=device,
                  resample_input=resample_input, progress=progress)
    model_rate = rate if model_sample_rate is None else model_sample_rate
    fn = per_channel(model)
    if all(info.channels == channels for info in infos):
        return process_files(fn, inputs, outputs, model_rate, channels, None, **kwargs)
    # process_files writes every output with one channel count: write them all at the widest into a hidden
    # folder, bring each back to its input's count, and rename only when all succeeded.
    outputs[0].parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=str(outputs[0].parent), prefix=".musicfx-debleed-") as folder:
        wide = [Path(folder) / f"{i}-{path.name}" for i, path in enumerate(outputs)]
        process_files(fn, inputs, wide, model_rate, channels, None, **kwargs)
        narrow = []
        for path, info in zip(wide, infos):
            narrow.append(path if info.channels == channels else _convert_file(path, info.channels))
        for source, target in zip(narrow, outputs):
            os.replace(source, target)
    return outputs


def _convert_file(path: Path, channels: int, block_seconds: float = 30.0) -> Path:
    """Copy ``path`` to ``<path>.c<channels><suffix>`` with ``channels`` channels, block by block."""
    import numpy as np
    import soundfile as sf
    import torch

    from musicfx.audio.io import convert_channels

    target = path.with_name(f"{path.stem}.c{channels}{path.suffix}")
    with sf.SoundFile(str(path)) as source:
        with sf.SoundFile(str(target), "w", samplerate=source.samplerate, channels=channels,
                          format=source.format, subtype=source.subtype) as sink:
            for block in source.blocks(int(block_seconds * source.samplerate), dtype="float32", always_2d=True):
                audio = convert_channels(torch.from_numpy(np.ascontiguousarray(block.T)), channels)
                sink.write(np.ascontiguousarray(audio.numpy().T))
    return target


def file_leakage(paths: Sequence[Path], block_seconds: float = LEAKAGE_BLOCK_SECONDS) -> float:
    """:func:`musicfx.metrics.leakage.leakage_score` of a set of track files, in bounded memory.

    The tracks are scored together in consecutive blocks of ``block_seconds`` to twice that (the whole
    recording when shorter), at their own rate, mono tracks duplicated to the widest track's channels; the
    score is the mean over blocks weighted by their length.

    Args:
        paths: two or more files sharing one sample rate.
        block_seconds: shortest block.

    Returns:
        The score in [0, 1]: about 0 for independent tracks, higher with more bleed.
    """
    import torch

    from musicfx.audio.io import audio_info, convert_channels, read_audio
    from musicfx.metrics.leakage import leakage_score

    infos = [audio_info(path) for path in paths]
    rate = infos[0].sample_rate
    channels = max(info.channels for info in infos)
    frames = max(info.frames for info in infos)
    count = max(1, frames // max(1, int(block_seconds * rate)))
    edges = torch.linspace(0, frames, count + 1).round().long().tolist()
    total = 0.0
    for start, stop in zip(edges[:-1], edges[1:]):
        block = torch.zeros(len(paths), channels, stop - start)
        for i, (path, info) in enumerate(zip(paths, infos)):
            if start < info.frames:
                audio, _ = read_audio(path, start=start, frames=min(stop, info.frames) - start)
                block[i, :, : audio.shape[-1]] = convert_channels(audio, channels)
        total += leakage_score(block, rate) * (stop - start)
    return total / frames


# ------------------------------------------------------------------------------------------------ command
def _check_numbers(args: argparse.Namespace) -> None:
    kamir_flags = [flag for flag, value in (("--n-fft", args.n_fft), ("--iterations", args.iterations),
                                            ("--min-leakage", args.min_leakage)) if value is not None]
    if args.method == "kamir" and args.ckpt is not None:
        raise MusicfxError("pass either --ckpt CHECKPOINT or --method kamir, not both")
    if args.method == "model" and kamir_flags:
        raise MusicfxError(f"{', '.join(kamir_flags)} go with --method kamir")
    if args.method == "model" and args.ckpt is None:
        raise MusicfxError("pass --ckpt CHECKPOINT (a debleed model written by `musicfx fit`) or --method kamir")
    if args.segment is not None and not args.segment > 0:
        raise MusicfxError(f"--segment must be positive, got {args.segment}")
    if args.overlap is not None and not 0 <= args.overlap <= 0.5:
        raise MusicfxError(f"--overlap must be between 0 and 0.5, got {args.overlap}")
    if args.n_fft is not None and args.n_fft < 16:
        raise MusicfxError(f"--n-fft must be at least 16, got {args.n_fft}")
    if args.iterations is not None and args.iterations < 1:
        raise MusicfxError(f"--iterations must be at least 1, got {args.iterations}")
    if args.min_leakage is not None and not args.min_leakage >= 0:
        raise MusicfxError(f"--min-leakage must be >= 0, got {args.min_leakage}")
    if args.batch_size < 1:
        raise MusicfxError(f"--batch-size must be at least 1, got {args.batch_size}")


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
    from musicfx.api import _resolve_device, load
    from musicfx.cli import _audio_files, _check_inputs

    _check_numbers(args)
    output = Path(args.output)
    inputs = _audio_files(args.inputs, exclude=output)
    if len(inputs) < 2:
        raise MusicfxError(f"debleed needs the tracks of a recording, at least two files; got {len(inputs)} "
                           f"({', '.join(map(str, inputs))})")
    rate = common_rate(inputs, _check_inputs(inputs))
    planned = dict(zip(inputs, output_plan(inputs, output, args.overwrite)))
    device = _resolve_device(args.device)
    if args.method == "kamir":
        from musicfx.baselines.kamir import KAMIR

        settings = {key: getattr(args, key) if getattr(args, key) is not None else value
                    for key, value in KAMIR_DEFAULTS.items()}
        model, model_rate = KAMIR(rate, **settings), None
        segment, overlap = KAMIR_SEGMENT, KAMIR_OVERLAP
    else:
        task = load(args.ckpt, device=device, trust=args.trust_checkpoint)
        tracks = getattr(task, "tracks", None)
        if not tracks or not hasattr(task, "debleed"):
            raise MusicfxError(f"{args.ckpt}: not a debleed checkpoint (its task has no tracks)")
        inputs = _ordered_for_model(inputs, list(tracks), args.ckpt, args.quiet)
        model, model_rate = task.model, task.sample_rate
        segment, overlap = MODEL_SEGMENT, MODEL_OVERLAP
    targets = [planned[path] for path in inputs]
    before = file_leakage(inputs) if args.leakage else None
    created = not output.exists()
    try:
        debleed_files(
            model, inputs, targets, model_rate,
            segment=args.segment if args.segment is not None else segment,
            overlap=args.overlap if args.overlap is not None else overlap,
            batch_size=args.batch_size, device=device, resample_input=not args.no_resample, progress=not args.quiet,
        )
    except BaseException:
        # An error found while streaming (silence, NaN, Ctrl-C) leaves no file; leave no new empty folder either.
        if created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()
        raise
    if not args.quiet:
        for source, target in zip(inputs, targets):
            print(f"{source} -> {target}")
    if before is not None:
        after = file_leakage(targets)
        print(f"leakage (mean inter-track coherence, lower is less bleed): before {before:.3f}, after {after:.3f}")
    return 0
