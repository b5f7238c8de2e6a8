"""What the ``musicfx`` commands share: engine flags, finding inputs, planning outputs, loading a task.

A command module defines ``add_parser(commands)`` (its subparser, with ``func`` set to its ``run``) and
keeps only what is its own; everything below is the one copy the commands use. Errors the user can fix
are raised as :class:`~musicfx.errors.MusicfxError`, which the CLI prints as one line.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

from musicfx.audio.stems import MUSDB_STEMS, track_name
from musicfx.checkpoint import add_trust_argument
from musicfx.errors import AudioError, MusicfxError

#: Engine defaults: 10 s per model call with a quarter cross-faded.
SEGMENT, OVERLAP = 10.0, 0.25
#: The largest overlap the engine cross-fades (each sample is shared by at most two segments).
MAX_OVERLAP = 0.5
# Audio formats people ask for that libsndfile cannot encode: an error, not a folder named "out.mp4/".
UNWRITABLE_AUDIO_SUFFIXES = (".mp3", ".mp4", ".m4a", ".aac", ".wma", ".webm", ".opus", ".alac")

__all__ = [
    "MAX_OVERLAP", "MUSDB_STEMS", "OVERLAP", "SEGMENT", "UNWRITABLE_AUDIO_SUFFIXES", "add_engine_arguments",
    "add_io_arguments", "add_output_arguments", "audio_files", "check_engine_arguments", "check_inputs",
    "check_new_file", "check_targets", "engine_options", "load_task", "output_name", "report_warnings",
    "resolve_device", "track_name", "warn", "writable_suffixes", "writing_into",
]


# -------------------------------------------------------------------------------------------- flags
def add_io_arguments(parser: argparse.ArgumentParser, inputs_help: str, output_help: str, ckpt_help: str) -> None:
    """The positional inputs, ``-o/--output`` (required), ``--ckpt`` and ``--trust-checkpoint``."""
    parser.add_argument("inputs", nargs="+", help=inputs_help)
    parser.add_argument("-o", "--output", required=True, help=output_help)
    parser.add_argument("--ckpt", help=ckpt_help)
    add_trust_argument(parser)


def add_engine_arguments(
    parser: argparse.ArgumentParser,
    segment: Optional[float] = SEGMENT,
    overlap: Optional[float] = OVERLAP,
    shifts: bool = False,
    resample: bool = True,
    segment_help: str = "",
    overlap_help: str = "",
) -> None:
    """``--segment --overlap --batch-size --device`` (+ ``--no-resample``, ``--shifts``) of the engine.

    Args:
        parser: the subcommand's parser.
        segment, overlap: defaults (``None``: the command picks one per method; say which in the helps).
        shifts: add ``--shifts N`` (test-time shift augmentation).
        resample: add ``--no-resample``.
        segment_help, overlap_help: replace the default's wording in the help.
    """
    parser.add_argument("--segment", type=float, default=segment,
                        help=f"seconds per model call ({segment_help or f'default {segment:g}'})")
    parser.add_argument("--overlap", type=float, default=overlap,
                        help=f"fraction of a segment cross-faded, 0 to {MAX_OVERLAP:g} "
                        f"({overlap_help or f'default {overlap:g}'})")
    parser.add_argument("--batch-size", type=int, default=1, help="segments per model call")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    if shifts:
        parser.add_argument("--shifts", type=int, default=0,
                            help="test-time augmentation: average the model over N random time shifts of up to "
                            "0.5 s (N times slower; reproducible; default 0: none)")
    if resample:
        parser.add_argument("--no-resample", action="store_true",
                            help="fail instead of resampling to the model's rate")


def add_output_arguments(parser: argparse.ArgumentParser, overwrite_help: str = "replace existing output files",
                         quiet_help: str = "no progress bars") -> None:
    """``--overwrite`` and ``-q/--quiet``."""
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet_help)


def check_engine_arguments(args: argparse.Namespace) -> None:
    """One line for an engine flag out of range (``None`` values are the command's defaults, not checked).

    Raises:
        MusicfxError: ``--segment`` not positive, ``--overlap`` outside [0, 0.5], ``--batch-size`` below 1,
            ``--shifts`` negative.
    """
    segment, overlap = getattr(args, "segment", None), getattr(args, "overlap", None)
    if segment is not None and not (segment > 0 and math.isfinite(segment)):
        raise MusicfxError(f"--segment must be a positive number of seconds, got {segment:g}")
    if overlap is not None and not 0 <= overlap <= MAX_OVERLAP:
        raise MusicfxError(f"--overlap must be between 0 and {MAX_OVERLAP:g} (the fraction of a segment "
                           f"cross-faded with the next), got {overlap:g}")
    if getattr(args, "batch_size", 1) < 1:
        raise MusicfxError(f"--batch-size must be at least 1, got {args.batch_size}")
    if getattr(args, "shifts", 0) < 0:
        raise MusicfxError(f"--shifts must be 0 or more, got {args.shifts}")


def engine_options(args: argparse.Namespace, segment: float = SEGMENT, overlap: float = OVERLAP) -> Dict[str, Any]:
    """The keyword arguments of :func:`musicfx.inference.process_files` the flags give (``segment`` and
    ``overlap``: used where the flags were left to the command's default)."""
    options: Dict[str, Any] = {
        "segment": args.segment if args.segment is not None else segment,
        "overlap": args.overlap if args.overlap is not None else overlap,
        "batch_size": args.batch_size,
        "progress": not args.quiet,
    }
    if hasattr(args, "no_resample"):
        options["resample_input"] = not args.no_resample
    if hasattr(args, "shifts"):
        options["shifts"] = args.shifts
    return options


# ------------------------------------------------------------------------------------------- inputs
def audio_files(paths: Sequence[str], exclude: Optional[Path] = None) -> List[Path]:
    """Files named, and audio files found recursively in folders named.

    Hidden files and anything under ``exclude`` (the output folder) are skipped, so a second run does not
    take earlier outputs as inputs.

    Raises:
        MusicfxError: a folder with no audio files, or the output folder named as an input folder.
        AudioError: a file that does not exist.
    """
    from musicfx.audio.io import AUDIO_EXTENSIONS, STEM_EXTENSIONS

    excluded = exclude.resolve() if exclude is not None else None
    files: List[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            if excluded is not None and path.resolve() == excluded:
                raise MusicfxError(f"{path}: the output folder is the input folder; name another folder with -o "
                                   "(outputs never replace inputs)")
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


def check_inputs(inputs: Sequence[Path]) -> list:
    """Fail before anything is written if any input cannot even be opened; returns their ``AudioInfo``."""
    from musicfx.audio.io import audio_info

    return [audio_info(path) for path in inputs]


# ------------------------------------------------------------------------------------------ outputs
def writable_suffixes() -> set:
    """Audio suffixes libsndfile writes (``.wav``, ``.flac``, ...), lower case."""
    import soundfile as sf

    return {f".{ext.lower()}" for ext in sf.available_formats()} | {".aif"}


def output_name(path: Path) -> str:
    """An input's output file name: its track name and suffix, ``.wav`` for a suffix libsndfile cannot write."""
    suffix = path.suffix if path.suffix.lower() in writable_suffixes() else ".wav"  # song.stem.mp4 -> song.wav
    return f"{track_name(path)}{suffix}"


def check_targets(targets: Sequence[Path], inputs: Sequence[Path], overwrite: bool,
                  sources: Optional[Sequence[Path]] = None) -> None:
    """Refuse outputs that clash, replace an input, or exist without ``--overwrite``.

    Args:
        targets: the files a run will write.
        inputs: the files it reads (never replaced, ``--overwrite`` or not).
        overwrite: whether existing (earlier output) files may be replaced.
        sources: the input each target comes from, for the message when two targets clash.

    Raises:
        MusicfxError: two targets share a path.
        AudioError: a target is an input, or exists without ``overwrite``.
    """
    seen: Dict[Path, Optional[Path]] = {}
    for index, target in enumerate(targets):
        source = sources[index] if sources is not None else None
        key = target.resolve()
        if key in seen:
            if seen[key] is not None and source is not None:
                raise MusicfxError(f"inputs {seen[key]} and {source} would both be written to {target}; "
                                   "rename one of them or process them into different folders")
            raise MusicfxError(f"two outputs would be written to {target}")
        seen[key] = source
    resolved_inputs = {path.resolve() for path in inputs}
    for target in targets:
        if target.resolve() in resolved_inputs:
            raise AudioError(f"{target}: output would overwrite an input file; choose another -o")
        if target.exists() and not overwrite:
            raise AudioError(f"{target}: exists; pass --overwrite to replace it")


def check_new_file(path: Path, flag: str, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """A side file a command writes (``--json``, ``--params``, a ``.png``): not a folder, not an input (an input
    file, or an audio file inside an input folder), and not replaced without ``--overwrite``.

    Raises:
        MusicfxError: naming ``path`` and ``flag``.
    """
    from musicfx.audio.io import AUDIO_EXTENSIONS, STEM_EXTENSIONS

    if path.is_dir():
        raise MusicfxError(f"{path}: is a folder; {flag} names the file to write")
    resolved = path.resolve()
    audio = path.name.lower().endswith(AUDIO_EXTENSIONS + STEM_EXTENSIONS)
    for item in inputs:
        item = Path(item).resolve()
        if resolved == item or (audio and path.exists() and item.is_dir() and item in resolved.parents):
            raise MusicfxError(f"{path}: {flag} would overwrite an input; choose another file")
    if path.exists() and not overwrite:
        raise MusicfxError(f"{path}: exists; pass --overwrite to replace it ({flag})")


@contextlib.contextmanager
def writing_into(folder: Path) -> Iterator[None]:
    """Create ``folder`` for a run's outputs; if the run fails, leave no folder it created behind.

    The folder (and missing parents) is created and probed for writing first, so an unwritable place
    fails before any work. On any error inside the block, folders the run created that are left empty
    (``folder`` itself, its new parents, new sub-folders directly in it) are removed; an ``OSError`` while
    writing becomes one line naming the file.

    Raises:
        MusicfxError: the folder cannot be created or written, or writing failed.
    """
    folder = Path(folder)
    missing: List[Path] = []
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        before = {entry.name for entry in folder.iterdir()}
        with tempfile.TemporaryFile(dir=str(folder)):
            pass
    except OSError as error:
        _remove_empty(missing)
        raise MusicfxError(f"{folder}: cannot write the output folder ({error.strerror or error})") from None
    try:
        yield
    except BaseException as error:
        created = [entry for entry in folder.iterdir() if entry.name not in before and entry.is_dir()]
        _remove_empty(created + missing)
        if isinstance(error, OSError) and not isinstance(error, MusicfxError):
            where = error.filename if error.filename is not None else folder
            raise MusicfxError(f"{where}: cannot write ({error.strerror or error})") from None
        raise


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove each folder (deepest first) when it holds nothing but empty folders."""
    for folder in folders:
        if not folder.is_dir():
            continue
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            folder.rmdir()


# -------------------------------------------------------------------------------------------- tasks
#: What each command needs of a checkpoint's task, and what to call it in a message.
_TASK_KINDS = {
    "denoise": (("denoise",), "a denoise"),
    "separate": (("sources",), "a separation"),
    "debleed": (("tracks", "debleed"), "a debleed"),
    "mix": (("stems", "mix"), "an automix"),
}


def load_task(checkpoint: str, device: Any, kind: str, trust: bool = False) -> Any:
    """Load a checkpoint's task for the ``kind`` command (``denoise``, ``separate``, ``debleed``, ``mix``);
    ``trust``: ``--trust-checkpoint`` (see :func:`musicfx.api.load`).

    Raises:
        MusicfxError: the file is missing or unreadable, or holds another task (naming the command that
            runs it).
    """
    from musicfx import api

    task = api.load(checkpoint, device=device, trust=trust)
    needs, what = _TASK_KINDS[kind]
    if not all(getattr(task, name, None) for name in needs):
        runs = [command for command, (attributes, _) in _TASK_KINDS.items()
                if command != kind and all(getattr(task, name, None) for name in attributes)]
        hint = f"; run it with musicfx {runs[0]}" if runs else ""
        raise MusicfxError(f"{checkpoint}: not {what} checkpoint (it holds a {type(task).__name__}{hint})")
    return task


def resolve_device(name: Optional[str]) -> Any:
    """``--device`` as a ``torch.device`` (``auto``: CUDA when available)."""
    from musicfx.api import resolve_device as resolve

    return resolve(name)


# ------------------------------------------------------------------------------------------ messages
def warn(message: str) -> None:
    """One ``musicfx: warning:`` line on stderr."""
    print(f"musicfx: warning: {message}", file=sys.stderr)


def report_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    """Print warnings recorded during a run: musicfx's own as one line each, others as Python shows them."""
    package = str(Path(__file__).resolve().parents[1])
    for warning in caught:
        if str(Path(warning.filename).resolve()).startswith(package):
            warn(str(warning.message))
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
