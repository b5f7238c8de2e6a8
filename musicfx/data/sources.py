"""Sources: lists of audio items, each made of one or more aligned signals ("stems"), read by chunk.

A :class:`Source` is what :class:`~musicfx.data.sampling.ChunkDataset` draws random chunks from, whatever
the task: a folder of files (:class:`AudioFolder`, one stem ``"mix"``), a folder of noise recordings grouped
by category (:class:`NoiseFolder`), the two halves of the M&N dataset (:class:`MNDataset`), songs made of
stems (:mod:`musicfx.data.multitrack`: stem folders, MUSDB18, MUSDB18-HQ), or the built-in music generator
(:class:`GeneratedMusic`: the mix, stems, or both), which needs no files at all. Every source reads
``(stems, channels, time)``.

M&N layout
----------
:class:`MNDataset` reads the layout of the Music & Noise dataset of the MusicECAN paper::

    root/
      music/<category>/**/*.wav   clean music, one sub-folder per category: piano, drum kit, harp,
                                  cello, Chinese lute, trumpet, Chinese zither, multi-instrument, song
                                  (the folder names are free; they become the category names)
      noise/<category>/**/*.wav   noise, one sub-folder per category: electrical, crowd, weather,
                                  traffic, stationary (files directly in noise/ get category "noise")
      metadata/*.csv              optional file lists (or root/music.csv and root/noise.csv)

Any extension in ``AUDIO_EXTENSIONS`` is read, at any sample rate or channel count (files are resampled
and converted once, into the decoded cache). Without metadata, every file found is used and the split is
decided by a hash of its path relative to ``root`` (for example ``music/piano/0001.wav``): 90 % train,
5 % valid, 5 % test, the same on every machine and stable when files are added.

A metadata CSV has a header row and one row per file:

* a path column, named one of ``path``, ``file``, ``filename``, ``file_name``, ``filepath``, ``audio``,
  ``audio_path``, ``name`` (case-insensitive): relative to ``root``, to ``root/music`` or
  ``root/noise``, or to the CSV's folder; a bare file name is matched against the files found when it is
  unique;
* optionally ``category``, which overrides the sub-folder name;
* optionally ``split``: ``train``, ``valid`` (also ``val``, ``validation``, ``dev``) or ``test``; rows
  with no split are split by the path hash.

When the CSVs list files under ``music/`` (or ``noise/``), they define the music (noise) files: files
found on disk but not listed are left out, with a warning, and listed files that are absent are skipped
with a warning. A split with no music is an error; a split with no noise uses all noise files, with a
warning (small noise collections rarely cover three splits).
"""
from __future__ import annotations

import csv
import math
import os
import warnings
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np
import torch

from musicfx.audio.io import AUDIO_EXTENSIONS
from musicfx.data.cache import DecodedCache
from musicfx.data.generator import STEMS as GENERATOR_STEMS
from musicfx.data.generator import Score, draw_score, peak_gain, render
from musicfx.data.seeding import example_generator, hash_split, normalize_split
from musicfx.errors import DataError

PathLike = Union[str, os.PathLike]

#: The stem of a source whose items are single recordings (a file, a generated mix).
MIX = "mix"
_PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "audio", "audio_path", "name")


@runtime_checkable
class Source(Protocol):
    """Items (files, songs) of aligned ``stems``, each readable by chunk at ``sample_rate`` with ``channels``.

    A folder of recordings has one stem, :data:`MIX`; a multitrack song has one per instrument.
    """

    sample_rate: int
    channels: int
    stems: Tuple[str, ...]

    def __len__(self) -> int:
        """Number of items (files, songs)."""

    def num_frames(self, index: int) -> int:
        """Length of item ``index`` in frames at ``sample_rate`` (its longest stem)."""

    def read(self, index: int, start: int, length: int, stems: Optional[Sequence[str]] = None) -> torch.Tensor:
        """Frames ``[start, start + length)`` of item ``index``: float32 ``(len(stems), channels, length)``,
        zero past the ends (and for a stem the item lacks); ``stems`` default to ``self.stems``."""

    def name(self, index: int) -> str:
        """A human-readable identifier of item ``index``."""

    def category(self, index: int) -> str:
        """The item's category (``"piano"``, ``"crowd"``), or ``""``."""


def stem_positions(available: Sequence[str], stems: Optional[Sequence[str]]) -> List[int]:
    """Positions in ``available`` of the ``stems`` asked for (all when ``None``).

    Raises:
        ValueError: a stem is not in ``available``.
    """
    if stems is None:
        return list(range(len(available)))
    if isinstance(stems, str):  # a bare string would be read as one stem per letter
        stems = (stems,)
    unknown = [stem for stem in stems if stem not in available]
    if unknown:
        raise ValueError(f"unknown stems {unknown}; this source holds {list(available)}")
    return [list(available).index(stem) for stem in stems]


def copy_window(array: np.ndarray, start: int, out: np.ndarray) -> None:
    """Copy ``array[:, start:start + out.shape[-1]]`` into ``out`` (zeros already), clipped to the array."""
    length = out.shape[-1]
    begin, end = max(start, 0), min(start + length, array.shape[1])
    if begin < end:
        out[:, begin - start:end - start] = array[:, begin:end]


def list_audio_files(root: PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> List[Path]:
    """Audio files below ``root`` (recursively), sorted by relative path; hidden files are skipped.

    Hidden files include macOS ``._name.wav`` resource forks, which carry an audio extension but no audio.
    A missing ``root`` gives an empty list.
    """
    root = Path(root).expanduser()
    suffixes = tuple(ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions)
    found = []
    for directory, folders, files in os.walk(root, followlinks=True):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        for file in files:
            if not file.startswith(".") and file.lower().endswith(suffixes):
                found.append(Path(directory) / file)
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


class AudioFolder:
    """Every audio file below ``root``, decoded once into the cache and read as memory-mapped chunks.

    Args:
        root: folder searched recursively (sorted, so the item order is the same everywhere).
        sample_rate: files are resampled to this rate (once, when cached).
        channels: files are converted to this many channels (mono is repeated, many-to-mono averages).
        extensions: file name endings to look for.
        cache_dir: decoded-audio cache; default ``$MUSICFX_CACHE`` or ``~/.cache/musicfx/decoded``.
        min_duration: items shorter than this (seconds) are dropped, with a warning saying how many.
        categories_from_subfolders: ``category(i)`` is the first sub-folder under ``root``.
        files: use these files instead of searching ``root``; relative paths are taken from ``root``.
        file_categories: with ``files``, the category of each file (overrides sub-folders).
        progress: show a progress bar while decoding; default: when more than 20 files need decoding.

    Raises:
        DataError: ``root`` or a listed file is missing, no audio file is found, or all are too short.
        AudioError: a file cannot be decoded or holds NaN/inf (the message names it).
    """

    def __init__(
        self,
        root: PathLike,
        sample_rate: int = 44100,
        channels: int = 1,
        extensions: Sequence[str] = AUDIO_EXTENSIONS,
        cache_dir: Optional[PathLike] = None,
        min_duration: float = 0.0,
        categories_from_subfolders: bool = False,
        files: Optional[Sequence[PathLike]] = None,
        file_categories: Optional[Sequence[str]] = None,
        progress: Optional[bool] = None,
    ) -> None:
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.root = Path(root).expanduser()
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.stems: Tuple[str, ...] = (MIX,)
        self.categories_from_subfolders = categories_from_subfolders
        if not self.root.exists():
            raise DataError(f"{self.root}: no such folder")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: is a file, expected a folder of audio files")
        paths = self._list_files(files, extensions)
        if file_categories is not None and (files is None or len(file_categories) != len(paths)):
            raise ValueError("file_categories needs files, one category per file")
        categories = list(file_categories) if file_categories is not None else [self._category_of(p) for p in paths]
        self._cache = DecodedCache(cache_dir)
        prepared = self._cache.prepare(paths, self.sample_rate, self.channels, progress=progress)
        keep = self._drop_short(paths, [frames for _, frames in prepared], min_duration)
        self.paths: List[Path] = [paths[i] for i in keep]
        self._categories = [categories[i] for i in keep]
        self._entries = [prepared[i][0] for i in keep]
        self._frames = [prepared[i][1] for i in keep]

    def _list_files(self, files: Optional[Sequence[PathLike]], extensions: Sequence[str]) -> List[Path]:
        if files is None:
            paths = list_audio_files(self.root, extensions)
            if not paths:
                raise DataError(
                    f"{self.root}: no audio files found (looked for {' '.join(extensions)} in all sub-folders)"
                )
            return paths
        paths = [Path(file) if Path(file).is_absolute() else self.root / file for file in files]
        for path in paths:
            if not path.is_file():
                raise DataError(f"{path}: listed audio file not found")
        if not paths:
            raise DataError(f"{self.root}: the list of files is empty")
        return paths

    def _category_of(self, path: Path) -> str:
        if not self.categories_from_subfolders:
            return ""
        parts = self._relative(path).parts
        return parts[0] if len(parts) > 1 else ""

    def _relative(self, path: Path) -> Path:
        try:
            return path.relative_to(self.root)
        except ValueError:  # a listed file outside root
            return path

    def _drop_short(self, paths: Sequence[Path], frames: Sequence[int], min_duration: float) -> List[int]:
        needed = int(math.ceil(min_duration * self.sample_rate))
        keep = [i for i, count in enumerate(frames) if count >= needed]
        if not keep:
            longest = max(frames) / self.sample_rate
            raise DataError(
                f"{self.root}: all {len(paths)} audio files are shorter than {min_duration:g} s, the length "
                f"needed (longest: {longest:.2f} s); use longer files or a shorter segment"
            )
        if len(keep) < len(paths):
            warnings.warn(
                f"{self.root}: dropped {len(paths) - len(keep)} of {len(paths)} audio files shorter than "
                f"{min_duration:g} s",
                stacklevel=3,
            )
        return keep

    def __len__(self) -> int:
        return len(self._entries)

    def num_frames(self, index: int) -> int:
        return self._frames[index]

    def read(self, index: int, start: int, length: int, stems: Optional[Sequence[str]] = None) -> torch.Tensor:
        """Frames ``[start, start + length)`` of file ``index``: float32 ``(1, channels, length)``, zero-padded."""
        out = np.zeros((len(stem_positions(self.stems, stems)), self.channels, length), dtype=np.float32)
        if len(out):
            copy_window(self._cache.open(self._entries[index], self.channels), start, out[0])
        return torch.from_numpy(out)

    def name(self, index: int) -> str:
        """The file's path relative to ``root`` (absolute for a listed file outside it)."""
        return self._relative(self.paths[index]).as_posix()

    def category(self, index: int) -> str:
        return self._categories[index]

    def categories(self) -> List[str]:
        """The distinct categories, sorted."""
        return sorted(set(self._categories))

    def duration(self) -> float:
        """Total length of all items in seconds."""
        return sum(self._frames) / self.sample_rate

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.root)!r}, items={len(self)}, sample_rate={self.sample_rate}, "
                f"channels={self.channels}, hours={self.duration() / 3600:.2f})")


class NoiseFolder(AudioFolder):
    """Noise recordings grouped by category (the first sub-folder; files directly in ``root``: ``"noise"``).

    :meth:`item_weights` makes :class:`~musicfx.data.sampling.ChunkDataset` draw categories with
    ``category_weights`` (uniformly by default), then files uniformly within a category, so a category
    with many short files is not drawn more often than one long recording.

    Args:
        root, sample_rate, channels: as for :class:`AudioFolder`.
        category_weights: relative weight per category; categories left out get weight 0 (with a
            warning); a name that is not a category is an error.
        **kwargs: passed to :class:`AudioFolder` (``extensions``, ``cache_dir``, ``min_duration``,
            ``files``, ``file_categories``, ``progress``).
    """

    def __init__(
        self,
        root: PathLike,
        sample_rate: int = 44100,
        channels: int = 1,
        category_weights: Optional[Mapping[str, float]] = None,
        **kwargs,
    ) -> None:
        kwargs["categories_from_subfolders"] = True
        super().__init__(root, sample_rate, channels, **kwargs)
        self.category_weights = self._check_weights(category_weights)

    def _category_of(self, path: Path) -> str:
        return super()._category_of(path) or "noise"

    def _check_weights(self, weights: Optional[Mapping[str, float]]) -> Dict[str, float]:
        present = self.categories()
        if weights is None:
            return {category: 1.0 for category in present}
        unknown = sorted(set(weights) - set(present))
        if unknown:
            raise DataError(f"{self.root}: category_weights names {unknown}, but the categories are {present}")
        if any(not math.isfinite(w) or w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise DataError(
                f"{self.root}: category_weights must be finite, non-negative and not all zero: {dict(weights)}"
            )
        missing = [category for category in present if category not in weights]
        if missing:
            warnings.warn(f"{self.root}: categories {missing} have no weight in category_weights and are never drawn",
                          stacklevel=3)
        return {category: float(weights.get(category, 0.0)) for category in present}

    def item_weights(self) -> torch.Tensor:
        """Probability of drawing each item, ``(len(self),)`` float64, summing to 1."""
        counts = Counter(self._categories)
        total = sum(self.category_weights.values())
        return torch.tensor(
            [self.category_weights[c] / total / counts[c] for c in self._categories], dtype=torch.float64
        )


class MNDataset:
    """The M&N (Music & Noise) dataset: clean music and noise, each split into train/valid/test.

    See the module docstring for the folder layout and the metadata CSV format.

    Args:
        root: the dataset folder (holding ``music/`` and ``noise/``).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        sample_rate, channels: format the files are decoded to.
        cache_dir: decoded-audio cache.
        min_duration: music files shorter than this (seconds) are dropped with a warning.
        category_weights: noise category weights (see :class:`NoiseFolder`).
        extensions: file name endings to look for.

    Attributes:
        music: :class:`AudioFolder` of this split's music, categories from the metadata or sub-folders.
        noise: :class:`NoiseFolder` of this split's noise.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        sample_rate: int = 44100,
        channels: int = 1,
        cache_dir: Optional[PathLike] = None,
        min_duration: float = 0.0,
        category_weights: Optional[Mapping[str, float]] = None,
        extensions: Sequence[str] = AUDIO_EXTENSIONS,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.split = normalize_split(split)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such folder (expected the M&N dataset with music/ and noise/)")
        folders = {kind: self.root / kind for kind in ("music", "noise")}
        for kind, folder in folders.items():
            if not folder.is_dir():
                raise DataError(f"{folder}: missing; an M&N dataset holds music/<category>/ and noise/<category>/")
        found = {kind: list_audio_files(folder, extensions) for kind, folder in folders.items()}
        for kind, paths in found.items():
            if not paths:
                raise DataError(f"{folders[kind]}: no audio files found (looked for {' '.join(extensions)})")
        rows = self._metadata(found)
        files = {kind: self._select(kind, found[kind], rows[kind]) for kind in ("music", "noise")}
        music_files, music_categories = files["music"]
        if not music_files:
            raise DataError(
                f"{folders['music']}: no music in split {self.split!r} (of {len(found['music'])} files); with few "
                "files the 90/5/5 hash split can leave a split empty: add metadata/*.csv with a split column"
            )
        noise_files, noise_categories = files["noise"]
        if not noise_files:
            warnings.warn(f"{folders['noise']}: no noise in split {self.split!r}; using all noise files", stacklevel=2)
            noise_files, noise_categories = self._select(kind="noise", paths=found["noise"], rows=rows["noise"],
                                                         any_split=True)
        self.music = AudioFolder(folders["music"], sample_rate, channels, extensions, cache_dir, min_duration,
                                 categories_from_subfolders=True, files=music_files, file_categories=music_categories)
        self.noise = NoiseFolder(folders["noise"], sample_rate, channels, category_weights, extensions=extensions,
                                 cache_dir=cache_dir, files=noise_files, file_categories=noise_categories)

    def _metadata(self, found: Mapping[str, List[Path]]) -> Dict[str, Dict[Path, Tuple[str, str]]]:
        """``{kind: {file: (category, split)}}`` from the metadata CSVs ('' where a column is absent)."""
        tables = sorted((self.root / "metadata").glob("*.csv")) if (self.root / "metadata").is_dir() else []
        tables += [path for path in (self.root / "music.csv", self.root / "noise.csv") if path.is_file()]
        by_name: Dict[str, List[Path]] = {}
        for paths in found.values():
            for path in paths:
                by_name.setdefault(path.name, []).append(path)
        rows: Dict[str, Dict[Path, Tuple[str, str]]] = {"music": {}, "noise": {}}
        absent = 0
        for table in tables:
            for value, category, split in _read_table(table):
                path = self._resolve(value, table, by_name)
                if path is None:
                    absent += 1
                    continue
                try:
                    split = normalize_split(split) if split else ""
                except DataError as error:
                    raise DataError(f"{table}: {error}") from None
                rows[path.relative_to(self.root).parts[0]][path] = (category, split)
        if absent:
            warnings.warn(f"{self.root}: {absent} files listed in the metadata were not found and are skipped",
                          stacklevel=3)
        return rows

    def _resolve(self, value: str, table: Path, by_name: Mapping[str, List[Path]]) -> Optional[Path]:
        for base in (self.root, self.root / "music", self.root / "noise", table.parent):
            candidate = (base / value).resolve()
            if not candidate.is_file():
                continue
            for kind in ("music", "noise"):
                folder = (self.root / kind).resolve()
                if folder in candidate.parents:
                    return self.root / kind / candidate.relative_to(folder)
        matches = by_name.get(Path(value).name, [])
        return matches[0] if len(matches) == 1 else None

    def _select(self, kind: str, paths: Sequence[Path], rows: Mapping[Path, Tuple[str, str]],
                any_split: bool = False) -> Tuple[List[Path], List[str]]:
        """This split's files of ``kind`` and their categories."""
        if rows:
            unlisted = len(set(paths) - set(rows))
            if unlisted:
                warnings.warn(f"{self.root / kind}: {unlisted} files are not in the metadata and are left out",
                              stacklevel=3)
            paths = sorted(rows, key=lambda path: path.as_posix())
        selected, categories = [], []
        for path in paths:
            category, split = rows.get(path, ("", ""))
            relative = path.relative_to(self.root).as_posix()
            if any_split or (split or hash_split(relative)) == self.split:
                parts = path.relative_to(self.root / kind).parts
                default = parts[0] if len(parts) > 1 else ("noise" if kind == "noise" else "")
                selected.append(path)
                categories.append(category or default)
        return selected, categories

    def __repr__(self) -> str:
        return f"MNDataset({str(self.root)!r}, split={self.split!r}, music={len(self.music)}, noise={len(self.noise)})"


def _read_table(table: Path) -> List[Tuple[str, str, str]]:
    """``(path, category, split)`` per row of a metadata CSV."""
    try:
        with open(table, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            header = {name.strip().lower(): name for name in reader.fieldnames or []}
            column = next((header[name] for name in _PATH_COLUMNS if name in header), None)
            if column is None:
                raise DataError(
                    f"{table}: no file column; name one of {', '.join(_PATH_COLUMNS)} (found {list(header)})"
                )
            category, split = header.get("category"), header.get("split")
            return [
                ((row.get(column) or "").strip(), (row.get(category) or "").strip() if category else "",
                 (row.get(split) or "").strip() if split else "")
                for row in reader
                if (row.get(column) or "").strip()
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{table}: cannot read metadata CSV ({error})") from None


class GeneratedMusic:
    """The built-in music generator (:mod:`musicfx.data.generator`) as a source; needs no files.

    Item ``i`` is the piece drawn from :func:`~musicfx.data.seeding.example_generator` ``(seed, i)``, read as
    any of its stems (``vocals``, ``bass``, ``drums``, ``other``) and its mix (``"mix"``, their sum): a source
    of clean music for denoising reads ``stems=("mix",)``, a multitrack source reads the four stems.
    :meth:`read` renders only the requested window, so random chunks of long items stay cheap, and the
    result depends only on ``(seed, index, start, length)``. All stems of a piece share one gain, which
    brings the peak of its mix to between 0.5 and 0.9 (found by rendering the piece once per process).

    Args:
        num_items: number of distinct pieces.
        duration: length of each piece in seconds.
        sample_rate: in Hz.
        channels: 1, 2 (panned stereo) or more (mono repeated).
        seed: which pieces; use a different seed per split (:func:`~musicfx.data.seeding.song_seed`).
        stems: what an item holds, in order, among ``"mix"`` and the generator's four stems.
    """

    def __init__(self, num_items: int = 64, duration: float = 10.0, sample_rate: int = 44100, channels: int = 1,
                 seed: int = 0, stems: Sequence[str] = (MIX,)) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if duration <= 0:
            raise ValueError(f"duration must be positive, got {duration}")
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.stems: Tuple[str, ...] = check_stems(stems)
        unknown = [stem for stem in self.stems if stem != MIX and stem not in GENERATOR_STEMS]
        if unknown:
            raise ValueError(f"the generator has no stems {unknown}; it makes {[MIX, *GENERATOR_STEMS]}")
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

    def read(self, index: int, start: int, length: int, stems: Optional[Sequence[str]] = None) -> torch.Tensor:
        """Frames ``[start, start + length)`` of piece ``index``: float32 ``(len(stems), channels, length)``."""
        wanted = [self.stems[position] for position in stem_positions(self.stems, stems)]
        score = self._score(index)
        audio = render(score, self.sample_rate, self.channels, start, length,
                       GENERATOR_STEMS if MIX in wanted else tuple(wanted))
        if MIX in wanted:
            audio[MIX] = sum(audio[stem] for stem in GENERATOR_STEMS)
        return torch.stack([audio[stem] for stem in wanted]) * self._gain(index, score)

    def name(self, index: int) -> str:
        self._check(index)
        return f"generated-seed{self.seed}-{index:05d}"

    def category(self, index: int) -> str:
        self._check(index)
        return "generated"

    def _check(self, index: int) -> None:
        if not 0 <= index < self.num_items:
            raise IndexError(f"item {index} out of range for {self.num_items} generated items")

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
        return (f"GeneratedMusic(num_items={self.num_items}, duration={self.duration}, sample_rate={self.sample_rate}, "
                f"channels={self.channels}, seed={self.seed}, stems={self.stems})")


def check_stems(stems: Sequence[str]) -> Tuple[str, ...]:
    """``stems`` as a tuple of distinct names (ignoring case); a bare string is one stem."""
    if isinstance(stems, str):  # a bare string would be read as one stem per letter
        stems = (stems,)
    stems = tuple(str(stem) for stem in stems)
    if not stems:
        raise ValueError("stems must name at least one stem")
    lowered = [stem.lower() for stem in stems]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"stem names must be distinct (ignoring case), got {stems}")
    return stems
