"""Multitrack sources (songs made of named, aligned stems) and random stem chunks of them.

A :class:`MultitrackSource` is a list of songs; :meth:`~MultitrackSource.read` returns a window of any of
a song's stems as ``(stems, channels, time)``. The separation, debleed and automix tasks read raw stem chunks
through :class:`StemChunkDataset` and build their scenes on the device (:mod:`musicfx.synth.remix`, bleed,
mixing console).

Layouts
-------
* :class:`StemFolder`: any folder of song folders, each holding ``<stem>.<ext>`` files (``vocals.wav``,
  ``Bass.FLAC``, ...); any stem names, any extension in ``AUDIO_EXTENSIONS``, at any depth below ``root``.
* :class:`MUSDB18HQ`: ``root/train/<song>/{vocals,drums,bass,other}.wav`` and ``root/test/<song>/...``.
* :class:`MUSDB18`: ``root/train/<song>.stem.mp4`` and ``root/test/<song>.stem.mp4`` (needs ffmpeg once, to
  decode).
* :class:`GeneratedStems`: the built-in generator; no files.

For both MUSDB layouts the ``valid`` split is the official 14-track validation set, read from the
configuration the ``musdb`` package ships, and ``train`` is the official training set without it. A
``root/valid`` folder, when present, is used as the validation split instead (for data of your own laid out
like MUSDB). :func:`multitrack_source` picks the layout of a folder by itself.

Files are decoded once (resampled and converted to the requested channels) into the
:class:`~musicfx.data.cache.DecodedCache` and then read as memory-mapped chunks, so DataLoader workers only
copy the frames they use.
"""
from __future__ import annotations

import importlib.util
import math
import os
import warnings
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import (Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union,
                    runtime_checkable)

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from musicfx.audio.io import AUDIO_EXTENSIONS, atomic_path, convert_channels, read_stems
from musicfx.data.cache import PROGRESS_MIN_FILES, DecodedCache
from musicfx.data.generator import STEMS as GENERATOR_STEMS
from musicfx.data.generator import Score, draw_score, peak_gain, render
from musicfx.data.sampling import example_generator, rms_db
from musicfx.data.sources import hash_split, normalize_split
from musicfx.errors import DataError, MissingDependencyError

PathLike = Union[str, os.PathLike]

#: The four MUSDB18 targets, in the order Open-Unmix and Demucs list them.
DEFAULT_STEMS: Tuple[str, ...] = ("vocals", "drums", "bass", "other")
#: Streams of a MUSDB18 ``.stem.mp4``, in file order.
MUSDB_STREAMS: Tuple[str, ...] = ("mixture", "drums", "bass", "other", "vocals")
STEM_FILE_SUFFIX = ".stem.mp4"
_VALID_HINT = " (the official validation tracks); for other songs, put validation songs in root/valid/"
# Listing more names than this in a warning or error only buries the message.
_MAX_LISTED = 8

__all__ = [
    "DEFAULT_STEMS",
    "MUSDB18",
    "MUSDB18HQ",
    "MUSDB_STREAMS",
    "GeneratedStems",
    "MultitrackSource",
    "StemChunkDataset",
    "StemFolder",
    "multitrack_source",
    "musdb_validation_tracks",
]


@runtime_checkable
class MultitrackSource(Protocol):
    """Songs with named, aligned stems, each readable by chunk at ``sample_rate`` with ``channels`` channels."""

    sample_rate: int
    channels: int
    stems: Tuple[str, ...]

    def __len__(self) -> int:
        """Number of songs."""

    def num_frames(self, index: int) -> int:
        """Length of song ``index`` in frames (its longest stem)."""

    def read(self, index: int, start: int, length: int, stems: Optional[Sequence[str]] = None) -> Tensor:
        """(len(stems), channels, length) float32, zero past the ends; stems default to self.stems."""

    def name(self, index: int) -> str:
        """A human-readable identifier of song ``index``."""


# ------------------------------------------------------------------------------------------------ helpers
def _check_stems(stems: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(stems, str):  # a bare string would be read as one stem per letter
        stems = (stems,)
    stems = tuple(str(stem) for stem in stems)
    if not stems:
        raise ValueError("stems must name at least one stem")
    lowered = [stem.lower() for stem in stems]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"stem names must be distinct (ignoring case), got {stems}")
    return stems


def _check_format(sample_rate: int, channels: int) -> None:
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _copy_window(array: np.ndarray, start: int, out: np.ndarray) -> None:
    """Copy ``array[:, start:start + out.shape[-1]]`` into ``out`` (zeros already), clipped to the array."""
    length = out.shape[-1]
    begin, end = max(start, 0), min(start + length, array.shape[1])
    if begin < end:
        out[:, begin - start:end - start] = array[:, begin:end]


@lru_cache(maxsize=1)
def musdb_validation_tracks() -> Tuple[str, ...]:
    """The official MUSDB18 validation tracks (14 names), from the ``musdb`` package's ``mus.yaml``.

    The file is read without importing ``musdb``, whose import needs ffmpeg.

    Raises:
        MissingDependencyError: ``musdb`` is not installed or its configuration cannot be read.
    """
    spec = importlib.util.find_spec("musdb")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MissingDependencyError(
            "the MUSDB18 train/valid split comes from the musdb package: pip install musdb"
        )
    config = Path(locations[0]) / "configs" / "mus.yaml"
    try:
        import yaml

        with open(config, encoding="utf-8") as file:
            tracks = yaml.safe_load(file)["validation_tracks"]
    except (OSError, KeyError, TypeError, ImportError) as error:
        raise MissingDependencyError(f"{config}: cannot read musdb's validation track list ({error})") from None
    return tuple(str(track) for track in tracks)


# -------------------------------------------------------------------------------------- cached songs
class _CachedSongs:
    """Songs whose stems are memory-mapped cache entries (``None``: a missing stem, read as silence)."""

    def __init__(self, stems: Sequence[str], sample_rate: int, channels: int, cache_dir: Optional[PathLike]) -> None:
        _check_format(sample_rate, channels)
        self.stems: Tuple[str, ...] = _check_stems(stems)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self._positions = {stem: index for index, stem in enumerate(self.stems)}
        self._cache = DecodedCache(cache_dir)
        self._names: List[str] = []
        self._entries: List[Tuple[Optional[Path], ...]] = []
        self._frames: List[int] = []

    def __len__(self) -> int:
        return len(self._names)

    def num_frames(self, index: int) -> int:
        return self._frames[index]

    def name(self, index: int) -> str:
        return self._names[index]

    def names(self) -> List[str]:
        """All song names, in item order."""
        return list(self._names)

    def read(self, index: int, start: int, length: int, stems: Optional[Sequence[str]] = None) -> Tensor:
        """Frames ``[start, start + length)`` of song ``index``.

        Args:
            index: song.
            start: first frame (may be negative).
            length: frames to read.
            stems: which stems, in this order; default ``self.stems``.

        Returns:
            float32 ``(len(stems), channels, length)``, zero outside a stem (and for a missing stem).
        """
        positions = self._stem_positions(stems)
        out = np.zeros((len(positions), self.channels, length), dtype=np.float32)
        entries = self._entries[index]
        for row, position in enumerate(positions):
            entry = entries[position]
            if entry is not None:
                _copy_window(self._cache.open(entry, self.channels), start, out[row])
        return torch.from_numpy(out)

    def _stem_positions(self, stems: Optional[Sequence[str]]) -> List[int]:
        if stems is None:
            return list(range(len(self.stems)))
        if isinstance(stems, str):
            stems = (stems,)
        unknown = [stem for stem in stems if stem not in self._positions]
        if unknown:
            raise ValueError(f"unknown stems {unknown}; this source holds {list(self.stems)}")
        return [self._positions[stem] for stem in stems]

    def _add_wav_songs(self, where: Path, songs: Sequence[Tuple[str, Mapping[str, Path]]], min_duration: float,
                       progress: Optional[bool]) -> None:
        """Decode the stem files of ``songs`` (``(name, {stem: file})``) into the cache and keep the long ones."""
        files = [path for _, found in songs for path in found.values()]
        prepared = iter(self._cache.prepare(files, self.sample_rate, self.channels, progress=progress))
        table = []
        for name, found in songs:
            decoded = {stem: next(prepared) for stem in found}
            table.append((name, tuple(decoded[stem][0] if stem in decoded else None for stem in self.stems),
                          max(frames for _, frames in decoded.values())))
        self._keep(where, table, min_duration)

    def _keep(self, where: Path, table: Sequence[Tuple[str, Tuple[Optional[Path], ...], int]],
              min_duration: float) -> None:
        """Keep the songs of ``table`` (``(name, entries, frames)``) at least ``min_duration`` long; warn about
        the short ones and about missing stems."""
        needed = int(math.ceil(min_duration * self.sample_rate))
        short = [name for name, _, frames in table if frames < needed]
        kept = [row for row in table if row[2] >= needed]
        if not kept:
            raise DataError(
                f"{where}: all {len(table)} songs are shorter than {min_duration:g} s "
                f"({_listing(short)}); use longer songs or a smaller min_duration"
            )
        if short:
            warnings.warn(f"{where}: dropped {len(short)} of {len(table)} songs shorter than {min_duration:g} s: "
                          f"{_listing(short)}", stacklevel=4)
        missing = [f"{name} ({', '.join(s for s, e in zip(self.stems, entries) if e is None)})"
                   for name, entries, _ in kept if any(entry is None for entry in entries)]
        if missing:
            warnings.warn(f"{where}: {len(missing)} songs lack some stems, which are read as silence: "
                          f"{_listing(missing)}", stacklevel=4)
        for name, entries, frames in kept:
            self._names.append(name)
            self._entries.append(entries)
            self._frames.append(frames)

    def duration(self) -> float:
        """Total length of all songs in seconds."""
        return sum(self._frames) / self.sample_rate


def _stem_files(folder: Path, stems: Sequence[str]) -> Dict[str, Path]:
    """``{stem: file}`` for the stem files directly in ``folder`` (names matched ignoring case).

    When a stem has several files (``vocals.wav`` and ``vocals.flac``), the extension listed first in
    ``AUDIO_EXTENSIONS`` wins, with a warning.
    """
    wanted = {stem.lower(): stem for stem in stems}
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
    candidates: Dict[str, List[Path]] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return {}
    for entry in entries:
        path = Path(entry.path)
        suffix = path.suffix.lower()
        if entry.name.startswith(".") or suffix not in rank or not entry.is_file():
            continue
        stem = wanted.get(path.stem.lower())
        if stem is not None:
            candidates.setdefault(stem, []).append(path)
    found = {}
    for stem, paths in candidates.items():
        paths.sort(key=lambda path: (rank[path.suffix.lower()], path.name))
        if len(paths) > 1:
            warnings.warn(f"{folder}: several files for stem {stem!r}; using {paths[0].name}", stacklevel=4)
        found[stem] = paths[0]
    return {stem: found[stem] for stem in stems if stem in found}


def find_songs(root: Path, stems: Sequence[str], recursive: bool = True) -> List[Tuple[str, Dict[str, Path]]]:
    """``(name, {stem: file})`` of every folder below ``root`` (or ``root`` itself) holding a stem file.

    A song's name is its folder's path relative to ``root`` (``root``'s own name for ``root``), so it is the
    same on every machine and can seed :func:`~musicfx.data.sources.hash_split`.
    """
    songs = []
    if recursive:
        for directory, folders, _ in os.walk(root, followlinks=True):
            folders[:] = sorted(folder for folder in folders if not folder.startswith("."))
            found = _stem_files(Path(directory), stems)
            if found:
                relative = Path(directory).relative_to(root).as_posix()
                songs.append((root.name if relative == "." else relative, found))
    else:
        for folder in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")):
            found = _stem_files(folder, stems)
            if found:
                songs.append((folder.name, found))
    return sorted(songs, key=lambda song: song[0])


def _no_songs(where: Path, stems: Sequence[str], what: str = "song folders") -> DataError:
    return DataError(
        f"{where}: no {what} found; a song is a folder holding files named {', '.join(stems)} "
        f"(extensions {' '.join(AUDIO_EXTENSIONS)}, any case)"
    )


class StemFolder(_CachedSongs):
    """Every folder below ``root`` that holds at least one ``<stem>.<ext>`` file is a song.

    Stem files are matched by name ignoring case, with any extension in ``AUDIO_EXTENSIONS``, at any
    sample rate and channel count (converted once, into the cache). A song lacking some stems reads them
    as silence (one warning lists them all); stems of different lengths are zero-padded to the longest.

    Args:
        root: the collection (or a single song folder).
        stems: stem names to read, in order.
        sample_rate: songs are resampled to this rate.
        channels: and converted to this many channels (mono is repeated, many-to-mono averages).
        tracks: only these songs: folder names or paths relative to ``root``; names not found are
            reported in a warning.
        min_duration: songs shorter than this (seconds) are dropped with a warning.
        split: only the songs that :func:`~musicfx.data.sources.hash_split` of their name puts in this split
            (``"train"``, ``"valid"``, ``"test"``); ``None``: all songs.
        cache_dir: decoded-audio cache; default ``$MUSICFX_CACHE`` or ``~/.cache/musicfx/decoded``.
        progress: progress bar while decoding; default: when many files need decoding.

    Raises:
        DataError: ``root`` is missing, holds no song, or no song is left after the filters.
        AudioError: a stem file cannot be decoded.
    """

    def __init__(
        self,
        root: PathLike,
        stems: Sequence[str] = DEFAULT_STEMS,
        sample_rate: int = 44100,
        channels: int = 2,
        tracks: Optional[Sequence[str]] = None,
        min_duration: float = 1.0,
        split: Optional[str] = None,
        cache_dir: Optional[PathLike] = None,
        progress: Optional[bool] = None,
    ) -> None:
        super().__init__(stems, sample_rate, channels, cache_dir)
        self.root = Path(root).expanduser()
        self.split = normalize_split(split) if split is not None else None
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such folder" if not self.root.exists()
                            else f"{self.root}: is a file, expected a folder of song folders")
        songs = find_songs(self.root, self.stems)
        if not songs:
            raise _no_songs(self.root, self.stems)
        if tracks is not None:
            songs = self._select_tracks(songs, tracks)
        if self.split is not None:
            total = len(songs)
            songs = [song for song in songs if hash_split(song[0]) == self.split]
            if not songs:
                raise DataError(
                    f"{self.root}: no songs in split {self.split!r} (of {total}); the 90/5/5 split by song name "
                    "leaves small collections with empty splits: lay the songs out as root/train/<song>, "
                    "root/valid/<song>, root/test/<song>"
                )
        self._add_wav_songs(self.root, songs, min_duration, progress)

    def _select_tracks(self, songs: List[Tuple[str, Dict[str, Path]]],
                       tracks: Sequence[str]) -> List[Tuple[str, Dict[str, Path]]]:
        if isinstance(tracks, str):
            tracks = (tracks,)
        wanted = set(tracks)
        selected = [song for song in songs if song[0] in wanted or Path(song[0]).name in wanted]
        matched = {song[0] for song in selected} | {Path(song[0]).name for song in selected}
        absent = sorted(wanted - matched)
        if absent:
            warnings.warn(f"{self.root}: {len(absent)} listed tracks not found: {_listing(absent)}", stacklevel=3)
        if not selected:
            raise DataError(f"{self.root}: none of the {len(wanted)} listed tracks is a song folder here")
        return selected

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.root)!r}, songs={len(self)}, stems={self.stems}, "
                f"sample_rate={self.sample_rate}, channels={self.channels}, hours={self.duration() / 3600:.2f})")


def _split_folder(root: Path, split: str) -> Tuple[Path, Optional[bool]]:
    """The folder holding ``split``'s songs, and whether to keep (True) or drop (False) the official
    validation tracks found there (None: keep all)."""
    if split == "test":
        return root / "test", None
    if split == "valid" and (root / "valid").is_dir():
        return root / "valid", None
    if split == "train" and (root / "valid").is_dir():
        return root / "train", None
    return root / "train", split == "valid"


def _check_musdb_root(root: Path, folder: Path, layout: str) -> None:
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected {layout} with train/ and test/)")
    if not folder.is_dir():
        raise DataError(f"{folder}: missing; {layout} holds train/ and test/ folders")


def _official_split(names: Sequence[str], keep_valid: Optional[bool]) -> List[str]:
    if keep_valid is None:
        return list(names)
    valid = set(musdb_validation_tracks())
    return [name for name in names if (name in valid) == keep_valid]


class MUSDB18HQ(_CachedSongs):
    """MUSDB18-HQ: ``root/train/<song>/<stem>.wav`` and ``root/test/<song>/<stem>.wav``.

    Args:
        root: the dataset folder.
        split: ``"train"`` (the official training tracks without the 14 validation tracks; those missing
            from disk are simply absent), ``"valid"`` (the official validation tracks, from the ``musdb``
            package's configuration) or ``"test"``. A ``root/valid`` folder, when present, is the valid
            split, and ``train`` is then all of ``root/train``.
        stems: stem names to read, in order (``mixture`` is one too, when the folders hold it).
        sample_rate, channels: what the songs are converted to (once, into the cache).
        cache_dir: decoded-audio cache.
        min_duration: songs shorter than this (seconds) are dropped with a warning.
        progress: progress bar while decoding; default: when many files need decoding.

    Raises:
        DataError: the layout is wrong or the split holds no song.
        MissingDependencyError: the ``musdb`` package (for the validation list) is absent.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        stems: Sequence[str] = DEFAULT_STEMS,
        sample_rate: int = 44100,
        channels: int = 2,
        cache_dir: Optional[PathLike] = None,
        min_duration: float = 0.0,
        progress: Optional[bool] = None,
    ) -> None:
        super().__init__(stems, sample_rate, channels, cache_dir)
        self.root = Path(root).expanduser()
        self.split = normalize_split(split)
        folder, keep_valid = _split_folder(self.root, self.split)
        _check_musdb_root(self.root, folder, "MUSDB18-HQ")
        songs = find_songs(folder, self.stems, recursive=False)
        if not songs:
            raise _no_songs(folder, self.stems)
        names = set(_official_split([name for name, _ in songs], keep_valid))
        songs = [song for song in songs if song[0] in names]
        if not songs:
            raise DataError(f"{folder}: none of the songs here is in MUSDB18's {self.split!r} split"
                            f"{_VALID_HINT if self.split == 'valid' else ''}")
        self._add_wav_songs(folder, songs, min_duration, progress)

    def __repr__(self) -> str:
        return (f"MUSDB18HQ({str(self.root)!r}, split={self.split!r}, songs={len(self)}, stems={self.stems}, "
                f"sample_rate={self.sample_rate}, channels={self.channels})")


class MUSDB18(_CachedSongs):
    """MUSDB18: ``root/train/<song>.stem.mp4`` and ``root/test/<song>.stem.mp4`` (mixture, drums, bass, other,
    vocals as five AAC streams).

    Each file is decoded once, with ffmpeg, into one cache entry per stream; later runs need no ffmpeg.

    Args:
        root: the dataset folder.
        split: ``"train"``, ``"valid"`` or ``"test"``, as for :class:`MUSDB18HQ`.
        stems: stem names to read, among ``MUSDB_STREAMS``.
        sample_rate, channels: what the songs are converted to (once, into the cache).
        cache_dir: decoded-audio cache.
        min_duration: songs shorter than this (seconds) are dropped with a warning.
        progress: progress bar while decoding; default: when many files need decoding.

    Raises:
        DataError: the layout is wrong, the split holds no song, or a stem is not a MUSDB18 stream.
        MissingDependencyError: ffmpeg (to decode) or ``musdb`` (for the validation list) is absent.
        AudioError: a file cannot be decoded.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        stems: Sequence[str] = DEFAULT_STEMS,
        sample_rate: int = 44100,
        channels: int = 2,
        cache_dir: Optional[PathLike] = None,
        min_duration: float = 0.0,
        progress: Optional[bool] = None,
    ) -> None:
        super().__init__(stems, sample_rate, channels, cache_dir)
        unknown = [stem for stem in self.stems if stem not in MUSDB_STREAMS]
        if unknown:
            raise DataError(f"MUSDB18 has no stems {unknown}; its streams are {list(MUSDB_STREAMS)}")
        self.root = Path(root).expanduser()
        self.split = normalize_split(split)
        folder, keep_valid = _split_folder(self.root, self.split)
        _check_musdb_root(self.root, folder, "MUSDB18")
        files = {path.name[:-len(STEM_FILE_SUFFIX)]: path for path in _stem_mp4_files(folder)}
        if not files:
            raise DataError(f"{folder}: no *{STEM_FILE_SUFFIX} files found")
        names = _official_split(sorted(files), keep_valid)
        if not names:
            raise DataError(f"{folder}: none of the songs here is in MUSDB18's {self.split!r} split"
                            f"{_VALID_HINT if self.split == 'valid' else ''}")
        table = []
        pending = [name for name in names if self._cached(files[name]) is None]
        show = len(pending) > PROGRESS_MIN_FILES if progress is None else progress
        for name in tqdm(pending, desc=f"decoding MUSDB18 into {self._cache.cache_dir}", unit="song",
                         disable=not show):
            self._decode(files[name])
        for name in names:
            entries, frames = self._cached(files[name]) or self._decode(files[name])
            table.append((name, tuple(entries[stem] for stem in self.stems), frames))
        self._keep(folder, table, min_duration)

    def _entries_for(self, path: Path) -> Dict[str, Path]:
        entry = self._cache.entry_path(path, self.sample_rate, self.channels)
        return {stream: entry.with_name(f"{entry.stem}-{stream}.npy") for stream in MUSDB_STREAMS}

    def _cached(self, path: Path) -> Optional[Tuple[Dict[str, Path], int]]:
        """The stream entries of ``path`` and its length, or None when any requested stream is not cached."""
        entries = self._entries_for(path)
        frames = 0
        for stem in self.stems:
            try:
                frames = max(frames, self._cache.open(entries[stem], self.channels).shape[1])
            except DataError:
                return None
        return entries, frames

    def _decode(self, path: Path) -> Tuple[Dict[str, Path], int]:
        """Decode all five streams of ``path`` into their cache entries (written atomically)."""
        audio, _, names = read_stems(path, sample_rate=self.sample_rate)
        if tuple(names) != MUSDB_STREAMS:
            raise DataError(f"{path}: holds {audio.shape[0]} audio streams, expected MUSDB18's 5 "
                            f"({', '.join(MUSDB_STREAMS)})")
        audio = convert_channels(audio, self.channels)
        entries = self._entries_for(path)
        for stream, data in zip(names, audio):
            try:
                with atomic_path(entries[stream]) as temporary, open(temporary, "wb") as file:
                    np.save(file, np.ascontiguousarray(data.numpy(), dtype=np.float32), allow_pickle=False)
            except OSError as error:
                raise DataError(f"{entries[stream]}: cannot write the decoded-audio cache for {path} "
                                f"({error.strerror or error}); set MUSICFX_CACHE to a writable folder") from None
        return entries, int(audio.shape[-1])

    def __repr__(self) -> str:
        return (f"MUSDB18({str(self.root)!r}, split={self.split!r}, songs={len(self)}, stems={self.stems}, "
                f"sample_rate={self.sample_rate}, channels={self.channels})")


def _stem_mp4_files(folder: Path) -> List[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir()
                  if path.name.lower().endswith(STEM_FILE_SUFFIX) and not path.name.startswith(".") and path.is_file())


# ------------------------------------------------------------------------------------------ generated
class GeneratedStems:
    """Songs of the built-in generator (:mod:`musicfx.data.generator`) as stems; needs no files.

    Song ``i`` is the score drawn from :func:`~musicfx.data.sampling.example_generator` ``(seed, i)``, the
    same piece as item ``i`` of :class:`~musicfx.data.sources.GeneratedMusic` with that seed: the stems of a
    song sum to its mix, which peaks between 0.5 and 0.9. :meth:`read` renders only the window asked for, so
    random chunks of long songs stay cheap; the song's gain is found by rendering it whole once per process.

    Args:
        num_items: number of songs.
        duration: seconds per song.
        sample_rate: in Hz.
        channels: 1, 2 (panned stereo) or more (mono repeated).
        seed: which songs; use a different seed per split.
        stems: stem names to read, in order, among ``vocals``, ``bass``, ``drums``, ``other``.
    """

    def __init__(
        self,
        num_items: int = 64,
        duration: float = 10.0,
        sample_rate: int = 44100,
        channels: int = 2,
        seed: int = 0,
        stems: Sequence[str] = DEFAULT_STEMS,
    ) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if duration <= 0:
            raise ValueError(f"duration must be positive, got {duration}")
        _check_format(sample_rate, channels)
        self.stems: Tuple[str, ...] = _check_stems(stems)
        unknown = [stem for stem in self.stems if stem not in GENERATOR_STEMS]
        if unknown:
            raise ValueError(f"the generator has no stems {unknown}; it makes {list(GENERATOR_STEMS)}")
        self.num_items = int(num_items)
        self.duration = float(duration)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.seed = int(seed)
        self._frames = int(round(self.duration * self.sample_rate))
        self._scores: "OrderedDict[int, Score]" = OrderedDict()
        self._gains: Dict[int, float] = {}

    def __len__(self) -> int:
        return self.num_items

    def num_frames(self, index: int) -> int:
        self._check(index)
        return self._frames

    def name(self, index: int) -> str:
        self._check(index)
        return f"generated-seed{self.seed}-{index:05d}"

    def read(self, index: int, start: int, length: int, stems: Optional[Sequence[str]] = None) -> Tensor:
        """Frames ``[start, start + length)`` of song ``index``: float32 ``(len(stems), channels, length)``."""
        if stems is None:
            stems = self.stems
        elif isinstance(stems, str):
            stems = (stems,)
        unknown = [stem for stem in stems if stem not in self.stems]
        if unknown:
            raise ValueError(f"unknown stems {unknown}; this source holds {list(self.stems)}")
        score = self._score(index)
        audio = render(score, self.sample_rate, self.channels, start, length, tuple(stems))
        return torch.stack([audio[stem] for stem in stems]) * self._gain(index, score)

    def _check(self, index: int) -> None:
        if not 0 <= index < self.num_items:
            raise IndexError(f"song {index} out of range for {self.num_items} generated songs")

    def _score(self, index: int) -> Score:
        self._check(index)
        score = self._scores.get(index)
        if score is None:
            score = self._scores[index] = draw_score(self.duration, example_generator(self.seed, index))
            if len(self._scores) > 256:  # scores are small, but num_items may be large
                self._scores.popitem(last=False)
        return score

    def _gain(self, index: int, score: Score) -> float:
        # One gain for all stems, from the whole mix: stems stay in proportion whichever subset is read.
        gain = self._gains.get(index)
        if gain is None:
            whole = render(score, self.sample_rate, self.channels, 0, self._frames)
            gain = self._gains[index] = peak_gain(sum(whole.values()), score.target_peak)
        return gain

    def __repr__(self) -> str:
        return (f"GeneratedStems(num_items={self.num_items}, duration={self.duration}, "
                f"sample_rate={self.sample_rate}, channels={self.channels}, seed={self.seed}, stems={self.stems})")


# ------------------------------------------------------------------------------------------- factory
def _has_stem_mp4(root: Path) -> bool:
    for directory, folders, files in os.walk(root, followlinks=True):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        if any(file.lower().endswith(STEM_FILE_SUFFIX) and not file.startswith(".") for file in files):
            return True
    return False


def _holds_song_folders(folder: Path) -> bool:
    """Whether ``folder`` has a sub-folder with audio files in it."""
    if not folder.is_dir():
        return False
    for child in folder.iterdir():
        if child.is_dir() and not child.name.startswith("."):
            if any(path.suffix.lower() in AUDIO_EXTENSIONS for path in child.iterdir() if path.is_file()):
                return True
    return False


def multitrack_source(
    root: Optional[PathLike],
    split: str = "train",
    stems: Sequence[str] = DEFAULT_STEMS,
    sample_rate: int = 44100,
    channels: int = 2,
    cache_dir: Optional[PathLike] = None,
    **generated_kwargs: Any,
) -> MultitrackSource:
    """The songs of ``split`` under ``root``, whatever its layout.

    * ``root`` is ``None``: :class:`GeneratedStems` with ``generated_kwargs`` (``num_items``, ``duration``,
      ``seed``); ``split`` does not change the songs, so pass a different ``seed`` per split.
    * ``*.stem.mp4`` files below ``root``: :class:`MUSDB18`.
    * ``root/train`` and ``root/test`` holding song folders: :class:`MUSDB18HQ`.
    * otherwise: a :class:`StemFolder`, split 90/5/5 by a hash of each song folder's name.

    Args:
        root: dataset folder, or ``None`` for the built-in generator.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        stems: stem names to read, in order.
        sample_rate, channels: what the songs are converted to.
        cache_dir: decoded-audio cache of the file sources.
        **generated_kwargs: options of :class:`GeneratedStems`, only with ``root=None``.

    Raises:
        DataError: ``root`` is missing or holds no songs in a known layout.
        ValueError: generator options given with a ``root``.
    """
    if root is None:
        return GeneratedStems(sample_rate=sample_rate, channels=channels, stems=stems, **generated_kwargs)
    if generated_kwargs:
        raise ValueError(f"{sorted(generated_kwargs)} apply to the built-in generator only (root=None), "
                         f"not to the dataset at {root}")
    path = Path(root).expanduser()
    split = normalize_split(split)
    if not path.exists():
        raise DataError(f"{path}: no such folder (expected MUSDB18, MUSDB18-HQ or a folder of song folders)")
    if not path.is_dir():
        raise DataError(f"{path}: is a file, expected a dataset folder")
    if _has_stem_mp4(path):
        return MUSDB18(path, split, stems, sample_rate, channels, cache_dir=cache_dir)
    if _holds_song_folders(path / "train") and _holds_song_folders(path / "test"):
        return MUSDB18HQ(path, split, stems, sample_rate, channels, cache_dir=cache_dir)
    return StemFolder(path, stems, sample_rate, channels, split=split, cache_dir=cache_dir)


# ----------------------------------------------------------------------------------------- chunks
Draw = Callable[[torch.Generator], Dict[str, Tensor]]


class StemChunkDataset(Dataset):
    """Random stem chunks of a multitrack source, one set per example id.

    ``dataset[example_id]`` is ``{"stems": (S, C, segment_frames), "seed": int64 scalar, **draw(generator)}``.
    With ``random_mix=False`` all stems come from one song at one offset (aligned, a real mix); with
    ``random_mix=True`` each stem comes from its own independently drawn song and offset (Open-Unmix's
    ``random_track_mix``), which multiplies the number of distinct mixtures. Songs are drawn uniformly,
    offsets uniformly; a song shorter than the segment is zero-padded at the end.

    A draw whose mixture (the sum of the stems) is quieter than ``silence_threshold_db`` is redrawn, up to
    ``max_tries`` times, after which the loudest draw is kept.

    As in :class:`~musicfx.data.sampling.ChunkDataset`, the scene seed, the ``draw`` parameters and the
    chunks use separate streams split from :func:`~musicfx.data.sampling.example_generator`
    ``(seed, example_id)``: changing the silence threshold or the source does not change the scene. Ids
    beyond ``len(self)`` are valid (:class:`~musicfx.data.sampling.ExampleSampler` uses them).

    Args:
        source: a :class:`MultitrackSource`.
        segment_frames: chunk length in frames.
        num_examples: ``len(self)``.
        seed: run seed.
        random_mix: draw each stem from its own song and offset.
        silence_threshold_db: RMS level (dBFS) of the mixture below which a draw is rejected; ``-inf``
            disables rejection.
        max_tries: draws at most per example.
        draw: optional per-example parameter draw, ``generator -> {name: tensor}``.
    """

    def __init__(
        self,
        source: MultitrackSource,
        segment_frames: int,
        num_examples: int,
        seed: int = 0,
        random_mix: bool = False,
        silence_threshold_db: float = -60.0,
        max_tries: int = 20,
        draw: Optional[Draw] = None,
    ) -> None:
        if segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
        if num_examples < 0:
            raise ValueError(f"num_examples must be >= 0, got {num_examples}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        if len(source) == 0:
            raise ValueError("the multitrack source holds no songs")
        self.source = source
        self.segment_frames = int(segment_frames)
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self.random_mix = bool(random_mix)
        self.silence_threshold_db = float(silence_threshold_db)
        self.max_tries = int(max_tries)
        self.draw = draw
        self._frames = [source.num_frames(i) for i in range(len(source))]

    @property
    def sample_rate(self) -> int:
        return self.source.sample_rate

    @property
    def stems(self) -> Tuple[str, ...]:
        return tuple(self.source.stems)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, example_id: Union[int, Tensor]) -> Dict[str, Tensor]:
        generator = example_generator(self.seed, int(example_id))
        # Fixed order, drawn up front: the scene does not depend on how many redraws the chunk needed.
        scene_seed, draw_seed, chunk_seed = torch.randint(0, 2**62, (3,), generator=generator).tolist()
        example: Dict[str, Tensor] = {
            "stems": self._chunk(torch.Generator().manual_seed(chunk_seed)),
            "seed": torch.tensor(scene_seed, dtype=torch.int64),
        }
        if self.draw is not None:
            params = self.draw(torch.Generator().manual_seed(draw_seed))
            clash = set(params) & set(example)
            if clash:
                raise ValueError(f"draw() returned names that clash with the example's: {sorted(clash)}")
            example.update({name: torch.as_tensor(value) for name, value in params.items()})
        return example

    def _chunk(self, generator: torch.Generator) -> Tensor:
        """Stems louder (as a mixture) than the threshold, or the loudest of ``max_tries`` draws."""
        tries = self.max_tries if self.silence_threshold_db > -math.inf else 1
        best: Optional[Tuple[float, Tensor]] = None
        for _ in range(tries):
            stems = self._draw_mixed(generator) if self.random_mix else self._draw_aligned(generator)
            level = float(rms_db(stems.sum(dim=0)))
            if level >= self.silence_threshold_db:
                return stems
            if best is None or level > best[0]:
                best = (level, stems)
        return best[1]

    def _position(self, generator: torch.Generator) -> Tuple[int, int]:
        """A uniform song and a uniform offset in it."""
        song = int(torch.randint(0, len(self._frames), (1,), generator=generator))
        spare = self._frames[song] - self.segment_frames
        offset = int(torch.randint(0, spare + 1, (1,), generator=generator)) if spare > 0 else 0
        return song, offset

    def _draw_aligned(self, generator: torch.Generator) -> Tensor:
        song, offset = self._position(generator)
        return self._checked(self.source.read(song, offset, self.segment_frames), len(self.stems), song)

    def _draw_mixed(self, generator: torch.Generator) -> Tensor:
        chunks = []
        for stem in self.stems:
            song, offset = self._position(generator)
            chunks.append(self._checked(self.source.read(song, offset, self.segment_frames, (stem,)), 1, song))
        return torch.cat(chunks)

    def _checked(self, chunk: Tensor, count: int, song: int) -> Tensor:
        expected = (count, self.source.channels, self.segment_frames)
        if tuple(chunk.shape) != expected:
            raise RuntimeError(f"{type(self.source).__name__} returned {tuple(chunk.shape)} for song {song}, "
                               f"expected {expected}")
        return chunk
