"""Multitrack sources: songs made of named, aligned stems, read as ``(stems, channels, time)``.

They are :class:`~musicfx.data.sources.Source`\ s like any other; the separation, debleed and automix tasks
read raw stem chunks of them through :class:`~musicfx.data.sampling.ChunkDataset` and build their scenes on
the device (:mod:`musicfx.synth.remix`, bleed, mixing console).

Layouts
-------
* :class:`StemFolder`: any folder of song folders, each holding ``<stem>.<ext>`` files (``vocals.wav``,
  ``Bass.FLAC``, ...); any stem names, any extension in ``AUDIO_EXTENSIONS``, at any depth below ``root``.
* :class:`MUSDB18HQ`: ``root/train/<song>/{vocals,drums,bass,other}.wav`` and ``root/test/<song>/...``.
* :class:`MUSDB18`: ``root/train/<song>.stem.mp4`` and ``root/test/<song>.stem.mp4`` (needs ffmpeg once, to
  decode).
* :class:`~musicfx.data.sources.GeneratedMusic` with ``stems=DEFAULT_STEMS``: the built-in generator; no files.

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
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from musicfx.audio.io import AUDIO_EXTENSIONS, atomic_path, convert_channels, read_stems
from musicfx.data.cache import PROGRESS_MIN_FILES, DecodedCache
from musicfx.data.seeding import hash_split, normalize_split
from musicfx.data.sources import GeneratedMusic, Source, check_stems, copy_window, stem_positions
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
    "StemFolder",
    "multitrack_source",
    "musdb_validation_tracks",
]


# ------------------------------------------------------------------------------------------------ helpers
def _check_format(sample_rate: int, channels: int) -> None:
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


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
        self.stems: Tuple[str, ...] = check_stems(stems)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
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

    def category(self, index: int) -> str:
        return ""

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
        positions = stem_positions(self.stems, stems)
        out = np.zeros((len(positions), self.channels, length), dtype=np.float32)
        entries = self._entries[index]
        for row, position in enumerate(positions):
            entry = entries[position]
            if entry is not None:
                copy_window(self._cache.open(entry, self.channels), start, out[row])
        return torch.from_numpy(out)

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


def _official_split(names: Sequence[str], keep_valid: Optional[bool]) -> List[str]:
    if keep_valid is None:
        return list(names)
    valid = set(musdb_validation_tracks())
    return [name for name in names if (name in valid) == keep_valid]


class _MusdbLayout(_CachedSongs):
    """What MUSDB18 and MUSDB18-HQ share: ``root/train`` and ``root/test``, the official validation split."""

    layout = ""

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
        self._check_stem_names()
        self.root = Path(root).expanduser()
        self.split = normalize_split(split)
        folder, keep_valid = _split_folder(self.root, self.split)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such folder (expected {self.layout} with train/ and test/)")
        if not folder.is_dir():
            raise DataError(f"{folder}: missing; {self.layout} holds train/ and test/ folders")
        self._load(folder, keep_valid, min_duration, progress)

    def _check_stem_names(self) -> None:
        """Refuse stems the layout cannot hold."""

    def _load(self, folder: Path, keep_valid: Optional[bool], min_duration: float, progress: Optional[bool]) -> None:
        raise NotImplementedError

    def _no_split(self, folder: Path) -> DataError:
        return DataError(f"{folder}: none of the songs here is in MUSDB18's {self.split!r} split"
                         f"{_VALID_HINT if self.split == 'valid' else ''}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.root)!r}, split={self.split!r}, songs={len(self)}, "
                f"stems={self.stems}, sample_rate={self.sample_rate}, channels={self.channels})")


class MUSDB18HQ(_MusdbLayout):
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

    layout = "MUSDB18-HQ"

    def _load(self, folder: Path, keep_valid: Optional[bool], min_duration: float, progress: Optional[bool]) -> None:
        songs = find_songs(folder, self.stems, recursive=False)
        if not songs:
            raise _no_songs(folder, self.stems)
        names = set(_official_split([name for name, _ in songs], keep_valid))
        songs = [song for song in songs if song[0] in names]
        if not songs:
            raise self._no_split(folder)
        self._add_wav_songs(folder, songs, min_duration, progress)


class MUSDB18(_MusdbLayout):
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

    layout = "MUSDB18"

    def _check_stem_names(self) -> None:
        unknown = [stem for stem in self.stems if stem not in MUSDB_STREAMS]
        if unknown:
            raise DataError(f"MUSDB18 has no stems {unknown}; its streams are {list(MUSDB_STREAMS)}")

    def _load(self, folder: Path, keep_valid: Optional[bool], min_duration: float, progress: Optional[bool]) -> None:
        files = {path.name[:-len(STEM_FILE_SUFFIX)]: path for path in _stem_mp4_files(folder)}
        if not files:
            raise DataError(f"{folder}: no *{STEM_FILE_SUFFIX} files found")
        names = _official_split(sorted(files), keep_valid)
        if not names:
            raise self._no_split(folder)
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


def _stem_mp4_files(folder: Path) -> List[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir()
                  if path.name.lower().endswith(STEM_FILE_SUFFIX) and not path.name.startswith(".") and path.is_file())


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
) -> Source:
    """The songs of ``split`` under ``root``, whatever its layout.

    * ``root`` is ``None``: :class:`~musicfx.data.sources.GeneratedMusic` with ``generated_kwargs`` (``num_items``, ``duration``,
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
        **generated_kwargs: options of :class:`~musicfx.data.sources.GeneratedMusic`, only with ``root=None``.

    Raises:
        DataError: ``root`` is missing or holds no songs in a known layout.
        ValueError: generator options given with a ``root``.
    """
    if root is None:
        return GeneratedMusic(sample_rate=sample_rate, channels=channels, stems=stems, **generated_kwargs)
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
