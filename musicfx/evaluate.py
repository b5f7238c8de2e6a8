"""Scoring separated stems the way MUSDB18 results are reported.

* :func:`evaluate_folders` scores a folder of estimates (museval's layout, ``<track>/<target>.wav``)
  against references: MUSDB18-HQ-like wav folders or a MUSDB18 folder of ``.stem.mp4`` files.
* :func:`evaluate_model` separates every track of a MUSDB18 / MUSDB18-HQ split with a trained task (or
  an oracle mask, the upper bound) and scores it.

Per target, the SDR is museval v4's windowed SDR (1 s windows, computed by
:func:`musicfx.metrics.museval_sdr`, orders of magnitude faster than museval and equal to ~1e-5 dB),
median over windows, then median and mean over tracks; uSDR is the Music Demixing challenges' song-level
SDR, mean over tracks. ``full=True`` also computes museval's SIR / ISR / SAR (its v4 decomposition, equal to
``museval.evaluate`` to 1e-12 dB, in two passes over the blocks: :mod:`musicfx.metrics.bss_eval`) and writes
one JSON per track in museval's own layout, which the sigsep tools (``museval.EvalStore``,
sigsep-mus-board) read. Every track is read in blocks (wav files and ``.stem.mp4`` streams alike), so
memory does not grow with the song.
Caveat: with the numpy / scipy installed here, museval's SIR / ISR / SAR do not reproduce the scores it
stored for its own test track (off by several dB); the SDR (ours, in the JSON too) does, to 1e-5 dB.

Like museval, targets are scored in groups: all targets but ``accompaniment`` together, and ``vocals``
with ``accompaniment`` as a pair when both are present (the SDR is per target, but a window that is
silent in any source of a group is left out for the whole group, and SIR depends on the group).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import importlib.util
import itertools
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from musicfx.audio.stems import MUSDB_STREAMS, STEM_FILE_SUFFIX, track_name
from musicfx.errors import AudioError, DataError, MissingDependencyError

PathLike = Union[str, os.PathLike]

#: MUSDB18's stems, in the order of its ``.stem.mp4`` streams (after the mixture).
MUSDB_TARGETS: Tuple[str, ...] = MUSDB_STREAMS[1:]
#: museval's derived target: everything but the vocals.
ACCOMPANIMENT = "accompaniment"
_ACCOMPANIMENT_PARTS = ("drums", "bass", "other")
_TARGET_SUFFIXES = (".wav", ".flac")
_SUBSETS = ("train", "test", "valid")
_EXTRA_METRICS = ("SIR", "ISR", "SAR")
#: Seconds of audio scored per block: memory holds this much of every target, whatever the song's length.
_BLOCK_SECONDS = 10


@dataclass(frozen=True)
class _Track:
    """One track found on disk: a folder of ``<target>.wav`` files or one ``.stem.mp4`` file."""

    name: str
    subset: Optional[str]
    path: Path
    files: Dict[str, Path] = field(default_factory=dict)

    @property
    def is_stem_file(self) -> bool:
        return not self.files

    def targets(self) -> Tuple[str, ...]:
        """Targets a reference track can provide (``mixture`` is not one; ``accompaniment`` is derived)."""
        names = list(MUSDB_TARGETS) if self.is_stem_file else [t for t in self.files if t != "mixture"]
        if ACCOMPANIMENT not in names and all(part in names for part in _ACCOMPANIMENT_PARTS):
            names.append(ACCOMPANIMENT)
        return tuple(names)


def _target_files(folder: Path) -> Dict[str, Path]:
    files: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in _TARGET_SUFFIXES:
            if path.stem in files:
                raise DataError(f"{folder}: two files for target '{path.stem}' ({files[path.stem].name}, {path.name})")
            files[path.stem] = path
    return files


def find_tracks(root: PathLike, what: str = "tracks") -> Dict[str, _Track]:
    """Tracks under ``root``: ``<track>/<target>.wav`` folders or ``<track>.stem.mp4`` files, directly in
    ``root`` or one level down in subset folders (``root/test/<track>/...``); or ``root`` itself when it is
    one song's folder of ``<target>.wav`` files (the track is named after the folder).

    Args:
        root: the folder to scan.
        what: what the folder holds, for error messages ("references", "estimates").

    Returns:
        ``{track name: track}`` in name order.

    Raises:
        DataError: ``root`` is missing, holds no track, or holds two tracks of one name.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder ({what})")
    own = _target_files(root)
    if set(own) - {"mixture"}:
        return {root.resolve().name: _Track(root.resolve().name, None, root, own)}
    found: Dict[str, _Track] = {}

    def add(track: _Track) -> None:
        if track.name in found:
            raise DataError(f"{root}: track '{track.name}' appears twice ({found[track.name].path}, {track.path})")
        found[track.name] = track

    def scan(folder: Path, subset: Optional[str], depth: int) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_file() and entry.name.lower().endswith(STEM_FILE_SUFFIX):
                add(_Track(track_name(entry), subset, entry))
            elif entry.is_dir():
                files = _target_files(entry)
                if files:
                    add(_Track(entry.name, subset, entry, files))
                elif depth == 0:
                    scan(entry, entry.name, 1)

    scan(root, root.name if root.name in _SUBSETS else None, 0)
    if not found:
        raise DataError(
            f"{root}: no tracks found ({what}: expected <target>.wav files, <track>/<target>.wav folders or "
            "<track>.stem.mp4 files)"
        )
    return dict(sorted(found.items()))


def _ordered(targets: Iterable[str]) -> Tuple[str, ...]:
    """MUSDB's order first (drums, bass, other, vocals, accompaniment), then the rest by name."""
    known = MUSDB_TARGETS + (ACCOMPANIMENT,)
    targets = set(targets)
    return tuple(t for t in known if t in targets) + tuple(sorted(targets - set(known)))


def _load_track(track: _Track, targets: Sequence[str]) -> Tuple[Dict[str, torch.Tensor], int]:
    """Decode ``targets`` (``(channels, time)`` each) of a track; ``mixture`` may be asked for too."""
    from musicfx.audio.io import read_audio, read_stems

    audio: Dict[str, torch.Tensor] = {}
    needed = set(targets)
    if ACCOMPANIMENT in needed and ACCOMPANIMENT not in track.files:
        needed.discard(ACCOMPANIMENT)
        needed.update(_ACCOMPANIMENT_PARTS)
    if track.is_stem_file:
        stems, rate, names = read_stems(track.path)
        if len(names) != 5:
            raise AudioError(
                f"{track.path}: expected 5 streams (mixture, drums, bass, other, vocals), got {len(names)}"
            )
        audio = {name: stems[i] for i, name in enumerate(names) if name in needed}
    else:
        rate = 0
        for name in sorted(needed):
            if name not in track.files:
                raise DataError(f"{track.path}: no file for target '{name}'")
            audio[name], file_rate = read_audio(track.files[name])
            if rate and file_rate != rate:
                raise AudioError(f"{track.files[name]}: sample rate {file_rate} Hz differs from the track's {rate} Hz")
            rate = file_rate
    if ACCOMPANIMENT in targets and ACCOMPANIMENT not in audio:
        parts = [audio[part] for part in _ACCOMPANIMENT_PARTS]
        frames = min(part.shape[-1] for part in parts)
        audio[ACCOMPANIMENT] = sum(part[:, :frames] for part in parts)
    return audio, rate


class _TrackAudio:
    """A track's targets read in consecutive blocks, so that scoring holds a block, not the song.

    Folders of ``<target>.wav`` files are read block by block with soundfile, a ``.stem.mp4`` by ffmpeg
    (:func:`~musicfx.audio.io.read_stem_blocks`, one stream per target). ``accompaniment`` is derived from
    drums + bass + other when the track has no file for it.

    Attributes:
        rate: the track's sample rate.
        channels: ``{target: channels}``.
        lengths: frames of every file read (targets, and the parts of a derived accompaniment); for a
            ``.stem.mp4`` the header's duration, which AAC decoding may exceed by a few hundred frames.
        exact: whether ``lengths`` are exact (wav files) or the header's estimate (a ``.stem.mp4``, whose
            blocks simply end where its decoding ends).
    """

    def __init__(self, track: _Track, targets: Sequence[str]) -> None:
        from musicfx.audio.io import audio_info, stem_streams

        self.track = track
        self.targets = tuple(targets)
        self.derived = ACCOMPANIMENT in self.targets and ACCOMPANIMENT not in track.files
        needed = set(self.targets)
        if self.derived:
            needed.discard(ACCOMPANIMENT)
            needed.update(_ACCOMPANIMENT_PARTS)
        self.needed = tuple(sorted(needed))
        self.exact = not track.is_stem_file
        channels: Dict[str, int] = {}
        lengths: Dict[str, int] = {}
        if track.is_stem_file:
            streams = stem_streams(track.path)
            if streams != len(MUSDB_STREAMS):
                raise AudioError(
                    f"{track.path}: expected {len(MUSDB_STREAMS)} streams ({', '.join(MUSDB_STREAMS)}), got {streams}"
                )
            for name in self.needed:
                if name not in MUSDB_STREAMS:
                    raise DataError(f"{track.path}: no stream for target '{name}'")
            info = audio_info(track.path)  # stream 0; MUSDB18's streams share one rate, channels and length
            self.rate = info.sample_rate
            channels = {name: info.channels for name in self.needed}
            lengths = {name: info.frames for name in self.needed}
        else:
            self.rate = 0
            for name in self.needed:
                if name not in track.files:
                    raise DataError(f"{track.path}: no file for target '{name}'")
                info = audio_info(track.files[name])
                if self.rate and info.sample_rate != self.rate:
                    raise AudioError(
                        f"{track.files[name]}: sample rate {info.sample_rate} Hz differs from the track's {self.rate} Hz"
                    )
                self.rate = info.sample_rate
                channels[name], lengths[name] = info.channels, info.frames
        if self.derived:
            channels[ACCOMPANIMENT] = channels[_ACCOMPANIMENT_PARTS[0]]
            lengths[ACCOMPANIMENT] = min(lengths[part] for part in _ACCOMPANIMENT_PARTS)
        self.channels = {t: channels[t] for t in self.targets}
        self.lengths = lengths

    def blocks(self, block_frames: int) -> Iterator[Dict[str, torch.Tensor]]:
        """``{target: (channels, time)}`` blocks of ``block_frames`` (the last ones may be shorter)."""
        if self.track.is_stem_file:
            from musicfx.audio.io import read_stem_blocks

            streams = [MUSDB_STREAMS.index(name) for name in self.needed]
            for block in read_stem_blocks(self.track.path, block_frames, streams):
                yield self._with_accompaniment(dict(zip(self.needed, block)))
            return
        import soundfile as sf

        from musicfx.audio.io import ensure_finite

        with contextlib.ExitStack() as stack:
            files = {}
            for name in self.needed:
                try:
                    files[name] = stack.enter_context(sf.SoundFile(str(self.track.files[name])))
                except Exception as error:
                    raise AudioError(f"{self.track.files[name]}: cannot read audio ({error})") from None
            while True:
                block = {}
                for name, handle in files.items():
                    try:
                        data = handle.read(block_frames, dtype="float32", always_2d=True)
                    except Exception as error:
                        raise AudioError(f"{self.track.files[name]}: cannot read audio ({error})") from None
                    block[name] = torch.from_numpy(np.ascontiguousarray(data.T))
                    ensure_finite(block[name], str(self.track.files[name]))
                if all(x.shape[-1] == 0 for x in block.values()):
                    return
                yield self._with_accompaniment(block)

    def _with_accompaniment(self, block: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if self.derived:
            parts = [block[part] for part in _ACCOMPANIMENT_PARTS]
            frames = min(part.shape[-1] for part in parts)
            block[ACCOMPANIMENT] = sum(part[:, :frames] for part in parts)
        return {t: block[t] for t in self.targets}


def _museval_groups(targets: Sequence[str]) -> List[Tuple[List[str], List[str]]]:
    """museval's evaluation groups: ``(targets scored together, targets whose scores are kept)``."""
    if not ("vocals" in targets and ACCOMPANIMENT in targets):
        return [(list(targets), list(targets))]
    rest = [t for t in targets if t != ACCOMPANIMENT]
    kept = [t for t in rest if t != "vocals"]
    groups = [(rest, kept)] if kept else []
    return groups + [(["vocals", ACCOMPANIMENT], ["vocals", ACCOMPANIMENT])]


def _museval_version() -> str:
    try:
        from museval.version import _version

        return str(_version)
    except ImportError:
        return "unknown"


def _quantize(value: float) -> float:
    # museval stores 5 decimals and turns infinities into NaN.
    return math.nan if math.isinf(value) else round(value, 5)


def _finite_or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


@dataclass
class EvaluationReport:
    """Scores of one evaluation: per track and over all tracks.

    Attributes:
        targets: the targets scored, in order.
        tracks: ``{track: {target: {"SDR": window median, "uSDR": ..., ["SIR", "ISR", "SAR"]}}}``.
        summary: ``{target: {"SDR_median", "SDR_mean", "uSDR", ["SIR_median", "ISR_median",
            "SAR_median"]}}`` over tracks (MUSDB18's convention: median over tracks of the per-track
            window median; uSDR: mean over tracks).
        full: whether SIR / ISR / SAR were computed (museval).
    """

    targets: Tuple[str, ...]
    tracks: Dict[str, Dict[str, Dict[str, float]]]
    summary: Dict[str, Dict[str, float]]
    full: bool = False

    def table(self) -> str:
        """A markdown table, one row per target: SDR median, SDR mean, uSDR (and SIR/ISR/SAR medians)."""
        columns = [("SDR median", "SDR_median"), ("SDR mean", "SDR_mean"), ("uSDR", "uSDR")]
        if self.full:
            columns += [(f"{m} median", f"{m}_median") for m in _EXTRA_METRICS]
        lines = [
            "| target | " + " | ".join(title for title, _ in columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for target in self.targets:
            row = self.summary[target]
            lines.append(f"| {target} | " + " | ".join(f"{row[key]:.3f}" for _, key in columns) + " |")
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, object]:
        """JSON-ready dict; NaN and infinities become ``None``."""

        def clean(values: Dict[str, float]) -> Dict[str, Optional[float]]:
            return {key: _finite_or_none(value) for key, value in values.items()}

        return {
            "targets": list(self.targets),
            "tracks": {
                track: {target: clean(scores) for target, scores in per_target.items()}
                for track, per_target in self.tracks.items()
            },
            "summary": {target: clean(scores) for target, scores in self.summary.items()},
            "full": self.full,
        }

    def to_json(self, path: PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        from musicfx.audio.io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


class _Evaluator:
    """Scores tracks one by one and assembles an :class:`EvaluationReport`."""

    def __init__(self, targets: Sequence[str], full: bool, json_dir: Optional[Path]) -> None:
        from musicfx.metrics.aggregate import SeparationScores

        if json_dir is not None and not full:
            raise ValueError("museval JSON files hold SIR/ISR/SAR too: pass full=True with json_dir")
        self.targets = tuple(targets)
        self.full = full
        self.json_dir = Path(json_dir) if json_dir is not None else None
        self.scores = SeparationScores(self.targets)
        self.extra: Dict[str, Dict[str, Dict[str, float]]] = {}

    def add(
        self,
        name: str,
        subset: Optional[str],
        references: Dict[str, torch.Tensor],
        estimates: Dict[str, torch.Tensor],
        sample_rate: int,
        where: str,
    ) -> None:
        """Score one track held in memory: ``references`` / ``estimates`` map each target to
        ``(channels, time)``. The metrics run block by block (see :meth:`start`)."""
        lengths = [x.shape[-1] for x in list(references.values()) + list(estimates.values())]
        scorer = self.start(
            name, subset, sample_rate, where,
            {t: references[t].shape[0] for t in self.targets}, {t: estimates[t].shape[0] for t in self.targets},
            lengths,
        )
        block = _BLOCK_SECONDS * int(sample_rate)

        def blocks() -> Iterator[Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]]:
            for begin in range(0, scorer.frames, block):
                yield ({t: references[t][:, begin : begin + block] for t in self.targets},
                       {t: estimates[t][:, begin : begin + block] for t in self.targets})

        for references_block, estimates_block in blocks():
            scorer.push(references_block, estimates_block)
        scorer.finish(blocks)

    def start(
        self,
        name: str,
        subset: Optional[str],
        sample_rate: int,
        where: str,
        reference_channels: Dict[str, int],
        estimate_channels: Dict[str, int],
        lengths: Sequence[int],
        estimated: Sequence[int] = (),
    ) -> "_TrackScorer":
        """Begin scoring one track fed block by block (:meth:`_TrackScorer.push`, then ``finish``).

        Args:
            name, subset: the track's name and MUSDB subset (for the report and museval's JSON).
            sample_rate: of every file of the track.
            where: the track's path, for messages.
            reference_channels, estimate_channels: channels per target.
            lengths: frames of every reference and estimate whose length is known exactly; the first
                ``min(lengths)`` are scored (and no more than the blocks hold).
            estimated: lengths known from a header only (a ``.stem.mp4``): they count for the length-mismatch
                warning, and scoring ends where their blocks end.
        """
        for target in self.targets:
            if reference_channels[target] != estimate_channels[target]:
                raise AudioError(
                    f"{where}: the '{target}' estimate has {estimate_channels[target]} channels, "
                    f"the reference {reference_channels[target]}"
                )
        every = list(lengths) + list(estimated)
        if max(every) - min(every) > sample_rate:
            warnings.warn(
                f"{where}: estimates and references differ in length by {(max(every) - min(every)) / sample_rate:.1f}"
                f" s; scoring the first {min(every) / sample_rate:.1f} s",
                UserWarning,
                stacklevel=2,
            )
        frames = min(lengths) if lengths else None
        return _TrackScorer(self, name, subset, sample_rate, frames, reference_channels[self.targets[0]])

    def _finish_track(
        self,
        name: str,
        subset: Optional[str],
        order: Sequence[str],
        metrics: Dict[str, List[Optional[torch.Tensor]]],
        usdr_values: torch.Tensor,
    ) -> None:
        self.scores.add_scores(torch.stack(metrics["SDR"]), usdr_values, names=[name])
        if self.full:
            self.extra[name] = {
                target: {m: float(_nanmedian(metrics[m][i])) for m in _EXTRA_METRICS}
                for i, target in enumerate(self.targets)
            }
            if self.json_dir is not None:
                self._write_json(name, subset, order, metrics)

    def _write_json(
        self, name: str, subset: Optional[str], order: Sequence[str], metrics: Dict[str, List[Optional[torch.Tensor]]]
    ) -> Path:
        """One track's framewise scores in museval's JSON layout (``json_dir/<subset>/<track>.json``)."""
        from musicfx.audio.io import atomic_path

        targets = []
        for target in order:
            i = self.targets.index(target)
            windows = metrics["SDR"][i].shape[-1]
            frames = [
                {
                    "time": float(w),  # museval: window index * hop, hop = 1.0 s
                    "duration": 1.0,
                    "metrics": {m: _quantize(float(metrics[m][i][w])) for m in ("SDR", "SIR", "SAR", "ISR")},
                }
                for w in range(windows)
            ]
            targets.append({"name": target, "frames": frames})
        folder = self.json_dir / subset if subset else self.json_dir
        path = folder / f"{name}.json"
        with atomic_path(path) as tmp:
            # museval writes NaN tokens (simplejson, allow_nan) and its readers expect them.
            Path(tmp).write_text(json.dumps({"targets": targets, "museval_version": _museval_version()}, indent=2))
        return path

    def report(self) -> EvaluationReport:
        if len(self.scores) == 0:
            raise DataError("no track was evaluated")
        tracks = self.scores.per_track()
        summary = self.scores.table()
        if self.full:
            for track, per_target in self.extra.items():
                for target, values in per_target.items():
                    tracks[track][target].update(values)
            for target in self.targets:
                for metric in _EXTRA_METRICS:
                    values = torch.tensor([self.extra[track][target][metric] for track in self.extra])
                    summary[target][f"{metric}_median"] = float(_nanmedian(values))
        return EvaluationReport(self.targets, tracks, summary, self.full)


@functools.lru_cache(maxsize=None)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _release_freed_memory() -> None:
    """Give the memory a block freed back to the system.

    glibc keeps freed blocks of a few MB in its heap, where they fragment: measured here, the resident size
    of a 20-minute evaluation grew to 3.1 GB although no more than one block is alive at a time.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


#: A source of a track's blocks, ``(references, estimates)`` per step, that can be read again.
Blocks = Callable[[], Iterable[Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]]]


class _TrackScorer:
    """One track's metrics, fed in consecutive blocks: memory holds a block, not the song.

    The SDR (museval's windows) and uSDR stream exactly (:mod:`musicfx.metrics.streaming`). museval's
    SIR / ISR / SAR (``full``) fit distortion filters on the whole song, so they take a second pass over the
    same blocks (:class:`~musicfx.metrics.bss_eval.StreamingBSSEval`; :meth:`finish` reads them again).
    """

    def __init__(self, evaluator: _Evaluator, name: str, subset: Optional[str], sample_rate: int,
                 frames: Optional[int], channels: int) -> None:
        from musicfx.metrics.streaming import StreamingMusevalSDR, StreamingUSDR

        self.evaluator = evaluator
        self.name = name
        self.subset = subset
        self.sample_rate = int(sample_rate)
        self.frames = None if frames is None else int(frames)  # None: until the blocks end
        self.seen = 0
        targets = evaluator.targets
        self.groups = [
            ([targets.index(t) for t in group], group, kept, StreamingMusevalSDR(len(group), sample_rate))
            for group, kept in _museval_groups(targets)
        ]
        self.usdr = StreamingUSDR(len(targets))
        self.bss: List[object] = []
        if evaluator.full:
            if importlib.util.find_spec("museval") is None:  # its per-window decomposition scores SIR/ISR/SAR
                raise MissingDependencyError("SIR/ISR/SAR (--full) need museval: pip install museval")
            from musicfx.metrics.bss_eval import StreamingBSSEval

            self.bss = [StreamingBSSEval(len(group), channels, sample_rate) for _, group, _, _ in self.groups]

    def _stack(self, references: Dict[str, torch.Tensor], estimates: Dict[str, torch.Tensor],
               done: int) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """``(references, estimates)`` of a block as ``(targets, channels, count)`` float32, cut to the scored
        length (``done`` samples already seen); ``None`` past it."""
        targets = self.evaluator.targets
        count = min(([] if self.frames is None else [self.frames - done]) + [x.shape[-1] for x in references.values()]
                    + [x.shape[-1] for x in estimates.values()])
        if count <= 0:
            return None
        return (torch.stack([references[t][:, :count] for t in targets]).float(),
                torch.stack([estimates[t][:, :count] for t in targets]).float())

    def push(self, references: Dict[str, torch.Tensor], estimates: Dict[str, torch.Tensor]) -> None:
        """Add the next block: each target's ``(channels, time)``; samples past the scored length are dropped."""
        stacked = self._stack(references, estimates, self.seen)
        if stacked is None:
            return
        ref, est = stacked
        for (index, _, _, sdr), bss in itertools.zip_longest(self.groups, self.bss):
            sdr.push(est[index], ref[index])
            if bss is not None:
                bss.push(est[index], ref[index])
        self.usdr.push(est, ref)
        self.seen += ref.shape[-1]
        del ref, est, stacked
        _release_freed_memory()

    def finish(self, again: Optional[Blocks] = None) -> None:
        """Score what was pushed and add it to the evaluator's report.

        Args:
            again: the same blocks once more, for the second pass of ``full`` (unused without it).
        """
        targets = self.evaluator.targets
        if self.seen == 0:
            raise AudioError(f"{self.name}: no audio to score")
        extra: List[Dict[str, torch.Tensor]] = [{} for _ in self.groups]
        if self.bss:
            if again is None:
                raise ValueError("full scoring reads the blocks twice: pass them again to finish()")
            for bss in self.bss:
                bss.fit()
            done = 0
            for references, estimates in again():
                stacked = self._stack(references, estimates, done)
                if stacked is None:
                    break
                ref, est = stacked
                for (index, _, _, _), bss in zip(self.groups, self.bss):
                    bss.score(est[index], ref[index])
                done += ref.shape[-1]
                del ref, est, stacked
                _release_freed_memory()
            extra = [bss.result() for bss in self.bss]
        # Framewise scores per metric, in target order (SIR/ISR/SAR only with ``full``).
        metrics: Dict[str, List[Optional[torch.Tensor]]] = {
            m: [None] * len(targets) for m in ("SDR",) + _EXTRA_METRICS
        }
        order: List[str] = []
        for (index, group, kept, sdr), group_extra in zip(self.groups, extra):
            framewise = sdr.result()
            for target in kept:
                i, j = targets.index(target), group.index(target)
                metrics["SDR"][i] = framewise[j]
                for metric in _EXTRA_METRICS if self.evaluator.full else ():
                    metrics[metric][i] = group_extra[metric][j]
                order.append(target)
        self.evaluator._finish_track(self.name, self.subset, order, metrics, self.usdr.result())


def _nanmedian(values: torch.Tensor) -> torch.Tensor:
    from musicfx.metrics.aggregate import nanmedian

    return nanmedian(values.to(torch.float64), dim=-1)


def _progress(items: Sequence, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="track")


def _choose_targets(
    references: Dict[str, _Track], estimates: Dict[str, _Track], names: Sequence[str], targets: Optional[Sequence[str]]
) -> Tuple[str, ...]:
    if targets is not None:
        if not targets:
            raise DataError("no targets named")
        for name in names:
            for target in targets:
                if target not in references[name].targets():
                    raise DataError(f"{references[name].path}: no reference for target '{target}'")
                if target not in estimates[name].files:
                    raise DataError(f"{estimates[name].path}: no estimate for target '{target}'")
        return tuple(targets)
    per_track = [set(references[n].targets()) & set(estimates[n].files) for n in names]
    common = set.intersection(*per_track)
    if not common:
        ref_targets = sorted(set().union(*(references[n].targets() for n in names)))
        est_targets = sorted(set().union(*(estimates[n].files for n in names)))
        raise DataError(
            f"no target has both a reference and an estimate in every track (references: "
            f"{', '.join(ref_targets)}; estimates: {', '.join(est_targets)})"
        )
    partial = set().union(*per_track) - common
    if partial:
        warnings.warn(
            f"targets missing from some tracks are not scored: {', '.join(sorted(partial))}", UserWarning, stacklevel=3
        )
    # Targets on one side only: a forgotten estimate should not pass for a complete score.
    unestimated = set().union(*(set(references[n].files or MUSDB_TARGETS) - {"mixture"} for n in names))
    unestimated -= set().union(*(estimates[n].files for n in names))
    if unestimated:
        warnings.warn(f"no estimate for {', '.join(_ordered(unestimated))}: not scored", UserWarning, stacklevel=3)
    unreferenced = set().union(*(estimates[n].files for n in names)) - set().union(
        *(references[n].targets() for n in names))
    if unreferenced:
        warnings.warn(f"no reference for the estimates {', '.join(_ordered(unreferenced))}: not scored", UserWarning,
                      stacklevel=3)
    return _ordered(common)


def _score_track(evaluator: "_Evaluator", name: str, reference: _Track, estimate: _Track) -> None:
    """Read one track's references and estimates (``evaluator.targets``) and score them.

    Both sides are read in lockstep, one block of every target at a time (wav files and ``.stem.mp4``
    streams alike, see :class:`_TrackAudio`), so memory does not grow with the song.
    """
    ref_audio, est_audio = _TrackAudio(reference, evaluator.targets), _TrackAudio(estimate, evaluator.targets)
    if ref_audio.rate != est_audio.rate:
        raise AudioError(
            f"{estimate.path}: estimates at {est_audio.rate} Hz, references ({reference.path}) at {ref_audio.rate} Hz"
        )
    exact = [n for audio in (ref_audio, est_audio) if audio.exact for n in audio.lengths.values()]
    estimated = [n for audio in (ref_audio, est_audio) if not audio.exact for n in audio.lengths.values()]
    scorer = evaluator.start(
        name, estimate.subset or reference.subset, ref_audio.rate, str(estimate.path), ref_audio.channels,
        est_audio.channels, exact, estimated,
    )
    block = _BLOCK_SECONDS * ref_audio.rate
    for references_block, estimates_block in zip(ref_audio.blocks(block), est_audio.blocks(block)):
        scorer.push(references_block, estimates_block)
    # --full reads the track a second time (museval's filters need the whole song first).
    scorer.finish(lambda: zip(_TrackAudio(reference, evaluator.targets).blocks(block),
                              _TrackAudio(estimate, evaluator.targets).blocks(block)))


def evaluate_folders(
    references: PathLike,
    estimates: PathLike,
    targets: Optional[Sequence[str]] = None,
    full: bool = False,
    json_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> EvaluationReport:
    """Score a folder of separated stems against the true stems.

    Args:
        references: ``<track>/<target>.wav`` folders (MUSDB18-HQ-like; ``mixture.wav`` is not a
            target; ``accompaniment`` is derived from drums + bass + other) or ``.stem.mp4`` files
            (MUSDB18: drums, bass, other, vocals and the derived accompaniment), directly or in subset
            folders (``references/test/...``).
        estimates: ``<track>/<target>.wav`` (museval's layout), directly or in subset folders.
        targets: targets to score (default: those present in both for every track).
        full: also compute SIR / ISR / SAR with museval (slow; needs ``museval``).
        json_dir: with ``full``, write one museval JSON per track to ``json_dir/<subset>/<track>.json``.
        progress: show a progress bar.

    Returns:
        The :class:`EvaluationReport`.

    Raises:
        DataError: a missing folder, estimates for a track that has no reference, no common target.
        AudioError: unreadable files, mismatched sample rates or channel counts.
        MissingDependencyError: ``full`` without museval (or ``.stem.mp4`` references without ffmpeg).
    """
    reference_tracks = find_tracks(references, "references")
    estimate_tracks = find_tracks(estimates, "estimates")
    if len(reference_tracks) == 1 and len(estimate_tracks) == 1 and Path(estimates).resolve() == next(
            iter(estimate_tracks.values())).path.resolve():
        # One song's folder of estimates against one song: they pair whatever the folders are called.
        (name, track), = estimate_tracks.items()
        estimate_tracks = {next(iter(reference_tracks)): track}
    unknown = sorted(set(estimate_tracks) - set(reference_tracks))
    if unknown:
        raise DataError(f"{estimates}: estimates for tracks with no reference in {references}: {', '.join(unknown)}")
    skipped = sorted(set(reference_tracks) - set(estimate_tracks))
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(
            f"{len(skipped)} reference tracks have no estimates and are skipped: {shown}", UserWarning, stacklevel=2
        )
    names = list(estimate_tracks)
    for name in names:
        if estimate_tracks[name].is_stem_file:
            raise DataError(f"{estimate_tracks[name].path}: estimates must be <track>/<target>.wav folders")
    chosen = _choose_targets(reference_tracks, estimate_tracks, names, targets)
    evaluator = _Evaluator(chosen, full, Path(json_dir) if json_dir is not None else None)
    for name in _progress(names, progress, "evaluating"):
        _score_track(evaluator, name, reference_tracks[name], estimate_tracks[name])
    return evaluator.report()


def _split_tracks(musdb_root: Path, split: str) -> Tuple[Dict[str, _Track], str]:
    folder = musdb_root / split
    if not folder.is_dir():
        if not musdb_root.is_dir():
            raise DataError(f"{musdb_root}: no such folder (MUSDB18 root)")
        if musdb_root.name != split:
            raise DataError(f"{musdb_root}: no '{split}' folder (expected a MUSDB18 or MUSDB18-HQ root)")
        folder = musdb_root
    return find_tracks(folder, f"MUSDB18 {split} split"), split


def _mixture_input(track: _Track) -> Union[Path, List[Path]]:
    """What the engine reads as the track's mixture: its ``.stem.mp4`` (stream 0), ``mixture.wav``, or its
    stem files, summed as they are read (MUSDB18's mixtures are the sum of its stems)."""
    if track.is_stem_file:
        return track.path
    if "mixture" in track.files:
        return track.files["mixture"]
    parts = [track.files[t] for t in MUSDB_TARGETS if t in track.files]
    if not parts:
        raise DataError(f"{track.path}: no mixture and no stems")
    return parts


def _run_oracle(
    kind: str, mix: torch.Tensor, stems: torch.Tensor, sample_rate: int, segment: float = 30.0
) -> torch.Tensor:
    """Oracle estimates ``(S, C, T)`` computed by the engine in overlapping segments, so memory does not
    grow with the track's STFT (a whole-song STFT of four stereo stems takes gigabytes)."""
    from musicfx.baselines.oracle import ORACLES
    from musicfx.inference import apply_model

    oracle = ORACLES[kind]
    frames = min(mix.shape[-1], stems.shape[-1])
    stacked = torch.cat([mix[None, :, :frames], stems[..., :frames]], dim=0)  # (1 + S, C, T)
    count, channels = stacked.shape[:2]

    def masks(x: torch.Tensor) -> torch.Tensor:
        # (batch, (1 + S) * C, t) -> (batch, S, C, t): the mixture and the true stems side by side as channels.
        x = x.reshape(x.shape[0], count, channels, x.shape[-1])
        return oracle(x[:, 0], x[:, 1:])

    return apply_model(masks, stacked.reshape(count * channels, frames), sample_rate, sample_rate,
                       count * channels, segment=segment, overlap=0.125)


def evaluate_model(
    task: Optional[object],
    musdb_root: PathLike,
    split: str = "test",
    output_dir: Optional[PathLike] = None,
    oracle: Optional[str] = None,
    segment: float = 10.0,
    overlap: float = 0.25,
    batch_size: int = 1,
    device: Optional[torch.device] = None,
    full: bool = False,
    json_dir: Optional[PathLike] = None,
    progress: bool = True,
    shifts: int = 0,
) -> EvaluationReport:
    """Separate every track of a MUSDB18 / MUSDB18-HQ split and score the estimates.

    Args:
        task: a loaded separation task: ``task.model(mix (B, C, T)) -> (B, S, C, T)``,
            ``task.sources`` (the ``S`` names), ``task.sample_rate``, ``task.channels``. ``None`` with
            ``oracle``.
        musdb_root: MUSDB18 (``<split>/<track>.stem.mp4``) or MUSDB18-HQ
            (``<split>/<track>/{mixture,drums,bass,other,vocals}.wav``) root, or the split folder itself.
        split: ``"test"`` or ``"train"``.
        output_dir: also write the estimates to ``output_dir/<split>/<track>/<source>.wav`` (museval's
            layout, readable by :func:`evaluate_folders`).
        oracle: ``"irm"`` or ``"ibm"``: score that oracle mask (drums, bass, other, vocals) instead of
            a task.
        segment, overlap, batch_size, device, shifts: the engine's settings (see
            :func:`musicfx.inference.process_files`); the mixture streams from its file through the engine
            into estimate files (``output_dir`` or a temporary folder) that are then scored.
        full, json_dir: as for :func:`evaluate_folders`.
        progress: show a progress bar.

    Returns:
        The :class:`EvaluationReport`.
    """
    from musicfx.audio.io import write_audio
    from musicfx.inference import separate_file

    if (task is None) == (oracle is None):
        raise ValueError("pass either a task or oracle='irm'|'ibm'")
    if oracle is not None and oracle not in ("irm", "ibm"):
        raise ValueError(f"oracle must be 'irm' or 'ibm', got {oracle!r}")
    tracks, subset = _split_tracks(Path(musdb_root), split)
    sources = MUSDB_TARGETS if task is None else tuple(task.sources)
    evaluator = _Evaluator(sources, full, Path(json_dir) if json_dir is not None else None)
    with contextlib.ExitStack() as stack:
        scratch = None if output_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for name in _progress(list(tracks), progress, "separating"):
            track = tracks[name]
            available = track.targets()
            for source in sources:
                if source not in available:
                    raise DataError(f"{track.path}: no reference for source '{source}'")
            folder = (Path(output_dir) / subset if output_dir is not None else scratch) / name
            estimate = _Track(name, subset, folder, {source: folder / f"{source}.wav" for source in sources})
            if task is None:
                wanted = list(sources) + (["mixture"] if track.is_stem_file or "mixture" in track.files else [])
                references, rate = _load_track(track, wanted)
                mix = references.pop("mixture", None)
                if mix is None:  # MUSDB18's mixtures are the sum of its stems
                    frames = min(references[s].shape[-1] for s in sources)
                    mix = sum(references[s][:, :frames] for s in sources)
                estimates = _run_oracle(oracle, mix, torch.stack([references[s] for s in sources]), rate)
                for index, source in enumerate(sources):
                    write_audio(estimate.files[source], estimates[index], rate)
            else:
                # The same streaming engine as `musicfx separate`: the estimates go to files, then are scored.
                separate_file(
                    task.model, _mixture_input(track), list(estimate.files.values()), task.sample_rate,
                    task.channels, segment=segment, overlap=overlap, batch_size=batch_size, device=device,
                    progress=False, shifts=shifts,
                )
            _score_track(evaluator, name, track, estimate)
            if scratch is not None:
                shutil.rmtree(folder)
    return evaluator.report()
