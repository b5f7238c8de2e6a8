"""Multitracks rendered through a SoundFont on the fly: realistic instruments with no download but the font.

:class:`RenderedStems` (the stems of separate, debleed and automix) and :class:`RenderedMusic` (one stem,
``"mix"``: denoise's clean music) are :class:`~musicfx.data.sources.Source` objects. Their songs are

* **procedural** (``midi=None``): song ``i`` is :func:`~musicfx.data.render.composer.compose_song` drawn
  from :func:`~musicfx.data.seeding.example_generator` ``(seed, i)``, ``duration`` seconds long;
* or **MIDI files** from a folder (``midi=PATH``; e.g. the Lakh MIDI dataset or Slakh's MIDI), split 90/5/5
  by a hash of each file's relative path, each cut into excerpts of ``duration`` seconds.

Each part (one instrument) is rendered alone and added into the stem :func:`~musicfx.data.render.scores.stem_of`
assigns it, so the stems sum exactly to the mix; the mix peaks at the song's target (0.5 to 0.9). Items are
rendered whole in the DataLoader worker that first reads them (at well over 20x real time per core, see
``benchmarks/bench_render.py``) and kept in a per-worker LRU cache of ``cache_mb`` megabytes, so the random
chunks a :class:`~musicfx.data.sampling.ChunkDataset` reads from one item cost one rendering (512 MB
hold all 64 default songs at 22.05 kHz mono, or 18 of them at 44.1 kHz stereo with four stems).

Bad input is caught when the source is built, before any training step: a missing or corrupt SoundFont or
binding is an error; MIDI files that cannot be parsed, hold no notes, or fill fewer than ``min_stems`` of the
requested stems (a drums-only file for MUSDB's four stems) are skipped with one warning; a program the font
lacks plays its family's first program (one warning); a folder with nothing usable is an error.
"""
from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from musicfx.data.render.composer import compose_song
from musicfx.data.render.fonts import load_synth, pick_backend, resolve_soundfont
from musicfx.data.render.midi import list_midi_files, read_midi
from musicfx.data.render.scores import MIX, Part, Song, check_stems, clean_notes, stem_of
from musicfx.data.seeding import example_generator, hash_split, normalize_split
from musicfx.data.sources import stem_positions
from musicfx.errors import DataError

PathLike = Union[str, os.PathLike]

#: ``scores`` value of the datamodules that selects the procedural composer.
PROCEDURAL = "procedural"
DEFAULT_STEMS: Tuple[str, ...] = ("vocals", "drums", "bass", "other")
# Seconds rendered before a MIDI excerpt starts, so notes struck just before it ring in naturally.
_PREROLL = 2.0
# Listing more files than this in one warning only buries it.
_MAX_LISTED = 5


class RenderedStems:
    """Songs rendered through a SoundFont into named stems (see the module docstring).

    Args:
        num_items: procedural songs (ignored with ``midi``).
        duration: seconds per procedural song, or per MIDI excerpt.
        sample_rate: in Hz.
        channels: 1 (the stereo rendering averaged), 2, or more (mono repeated).
        seed: which procedural songs; use a different seed per split.
        stems: stem names, in order: roles (``vocals``, ``bass``, ``drums``, ``other``) and/or General MIDI
            families (``piano``, ``guitar``, ``strings``, ...); see :mod:`musicfx.data.render.scores`.
        soundfont: ``.sf2``/``.sf3`` path; default ``$MUSICFX_SOUNDFONT``, else Debian's FluidR3 GM.
        midi: a folder of MIDI files, or ``None`` for procedural songs.
        split: with ``midi``: ``train``, ``valid`` or ``test`` (90/5/5 by file path hash; a split left empty
            by few files uses every file, with a warning), or ``None`` for every file.
        one_per_stem: every stem is a single instrument (procedural: one accompaniment part; MIDI: the part
            with most notes per stem): for debleed, where a track is one microphone's instrument.
        effects: the font's reverb and chorus (FluidSynth only); off gives dry stems, as automix wants.
        backend: ``auto``, ``tinysoundfont`` or ``fluidsynth`` (see :mod:`musicfx.data.render.fonts`).
        min_stems: MIDI excerpts filling fewer of the requested stems are skipped (capped at ``len(stems)``).
        cache_mb: megabytes of rendered items each process keeps (an item takes
            ``len(stems) * channels * duration * sample_rate * 4`` bytes); 0 renders every read anew.
        max_note: notes are cut to this many seconds (a note-on without note-off would ring forever).
        max_files: read at most this many MIDI files of the split (the first, in path order; parsing takes
            ~10-50 ms a file, once, when the source is built), with a warning when there are more;
            ``None``: all (the Lakh MIDI dataset's 176,581 files take an hour or more to parse).

    Raises:
        DataError: the SoundFont is missing or corrupt, the MIDI folder holds no usable file.
        MissingDependencyError: the SoundFont binding (or ``mido``, for MIDI files) is not installed.
    """

    def __init__(
        self,
        num_items: int = 64,
        duration: float = 20.0,
        sample_rate: int = 44100,
        channels: int = 2,
        seed: int = 0,
        stems: Sequence[str] = DEFAULT_STEMS,
        soundfont: Optional[PathLike] = None,
        midi: Optional[PathLike] = None,
        split: Optional[str] = "train",
        one_per_stem: bool = False,
        effects: bool = False,
        backend: str = "auto",
        min_stems: int = 2,
        cache_mb: float = 512.0,
        max_note: float = 8.0,
        max_files: Optional[int] = 2000,
    ) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if duration <= 0:
            raise ValueError(f"duration must be positive, got {duration}")
        if sample_rate < 1000 or channels < 1:
            raise ValueError(f"need sample_rate >= 1000 and channels >= 1, got {sample_rate}, {channels}")
        self.stems: Tuple[str, ...] = check_stems(stems)
        self.num_items = int(num_items)
        self.duration = float(duration)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.seed = int(seed)
        self.one_per_stem = bool(one_per_stem)
        self.effects = bool(effects)
        self.cache_mb = max(0.0, float(cache_mb))
        self.max_note = float(max_note)
        self.min_stems = max(1, min(int(min_stems), len(self.stems)))
        # Fail here, before training, on a missing or corrupt font or binding; workers load their own copy.
        self.soundfont = resolve_soundfont(soundfont)
        self.backend = pick_backend(backend)
        load_synth(self.soundfont, self.sample_rate, self.backend, self.effects)
        self.midi = Path(midi).expanduser() if midi is not None else None
        self._frames = int(round(self.duration * self.sample_rate))
        self._songs: List[Song] = []
        self._excerpts: List[Tuple[int, float]] = []  # (song, start second) per item, with midi
        if self.midi is not None:
            self._load_midi(None if split is None else normalize_split(split), max_files)
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()

    # ------------------------------------------------------------------------------------------ MIDI
    def _load_midi(self, split: Optional[str], max_files: Optional[int]) -> None:
        files = list_midi_files(self.midi)
        chosen = [path for path in files
                  if split is None or hash_split(path.relative_to(self.midi).as_posix()) == split]
        if not chosen:
            warnings.warn(f"{self.midi}: no MIDI file falls in split {split!r} (of {len(files)}); using all files",
                          stacklevel=3)
            chosen = files
        if max_files is not None and len(chosen) > max_files:
            warnings.warn(f"{self.midi}: reading the first {max_files} of {len(chosen)} MIDI files of split "
                          f"{split!r}; raise data.init_args.render_options.max_files for more", stacklevel=3)
            chosen = chosen[:max_files]
        skipped: Dict[str, List[str]] = {"unreadable": [], "no notes": [], "too few stems": []}
        for path in tqdm(chosen, desc="reading MIDI", disable=len(chosen) < 50, leave=False):
            name = path.relative_to(self.midi).as_posix()
            try:
                song = read_midi(path, max_note=self.max_note, name=name)
            except DataError:
                skipped["unreadable"].append(name)
                continue
            if not song.parts:
                skipped["no notes"].append(name)
                continue
            if len({stem_of(part, self.stems) for part in song.parts} - {None}) < self.min_stems:
                skipped["too few stems"].append(name)
                continue
            index = len(self._songs)
            self._songs.append(song)
            count = max(1, int(math.floor(song.duration / self.duration + 0.5)))
            self._excerpts += [(index, k * self.duration) for k in range(count)]
        reasons = "; ".join(f"{len(names)} {reason} ({', '.join(names[:_MAX_LISTED])}"
                            f"{' ...' if len(names) > _MAX_LISTED else ''})"
                            for reason, names in skipped.items() if names)
        if not self._songs:
            raise DataError(f"{self.midi}: none of {len(chosen)} MIDI files of split {split!r} is usable: {reasons}; "
                            f"stems {list(self.stems)} need parts in at least {self.min_stems} of them")
        if reasons:
            warnings.warn(f"{self.midi}: skipped MIDI files: {reasons}", stacklevel=3)

    # ----------------------------------------------------------------------------------- the protocol
    def __len__(self) -> int:
        return len(self._excerpts) if self.midi is not None else self.num_items

    def num_frames(self, index: int) -> int:
        self._check(index)
        return self._frames

    def name(self, index: int) -> str:
        self._check(index)
        if self.midi is None:
            return f"rendered-seed{self.seed}-{index:05d}"
        song, start = self._excerpts[index]
        return f"{self._songs[song].name}@{start:g}s"

    def read(self, index: int, start: int, length: int, stems: Optional[Sequence[str]] = None) -> Tensor:
        """Frames ``[start, start + length)`` of item ``index``: float32 ``(len(stems), channels, length)``.

        Stems default to ``self.stems``; frames outside the item are zero.
        """
        rows = stem_positions(self.stems, stems)
        audio = self._rendered(index)
        out = np.zeros((len(rows), self.channels, length), dtype=np.float32)
        begin, end = max(start, 0), min(start + length, self._frames)
        if begin < end:
            out[:, :, begin - start:end - start] = audio[rows, :, begin:end]
        return torch.from_numpy(out)

    def category(self, index: int) -> str:
        self._check(index)
        return "rendered"

    def song(self, index: int) -> Song:
        """The score of item ``index`` (for a MIDI excerpt, shifted to start at 0)."""
        self._check(index)
        if self.midi is None:
            return compose_song(self.duration, example_generator(self.seed, index), self.name(index),
                                one_per_stem=self.one_per_stem)
        song_index, offset = self._excerpts[index]
        return _excerpt(self._songs[song_index], offset - _PREROLL, self.duration + _PREROLL, self.max_note)

    # ----------------------------------------------------------------------------------------- render
    def _rendered(self, index: int) -> np.ndarray:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        audio = self.render_item(index)
        budget = self.cache_mb * 2**20
        if audio.nbytes <= budget:
            self._cache[index] = audio
            while sum(item.nbytes for item in self._cache.values()) > budget:
                self._cache.popitem(last=False)
        return audio

    def render_item(self, index: int) -> np.ndarray:
        """Render item ``index`` whole: float32 ``(len(self.stems), channels, frames)``, mix peak-normalised."""
        song = self.song(index)
        preroll = 0 if self.midi is None else int(round(_PREROLL * self.sample_rate))
        frames = self._frames + preroll
        synth = load_synth(self.soundfont, self.sample_rate, self.backend, self.effects)
        stereo = np.zeros((len(self.stems), 2, frames), dtype=np.float32)
        for part in self._assign(song.parts):
            stem = stem_of(part, self.stems)
            stereo[self.stems.index(stem)] += synth.render(part, frames) * np.float32(10 ** (part.gain_db / 20))
        stereo = stereo[:, :, preroll:]
        peak = float(np.abs(stereo.sum(axis=0)).max())
        if peak > 0:
            stereo *= np.float32(song.target_peak / peak)
        if self.channels == 2:
            return stereo
        mono = stereo.mean(axis=1, keepdims=True)
        return np.ascontiguousarray(np.repeat(mono, self.channels, axis=1))

    def _assign(self, parts: Sequence[Part]) -> List[Part]:
        """The parts that sound: those some stem takes; with ``one_per_stem``, the busiest per stem."""
        taken = [part for part in parts if stem_of(part, self.stems) is not None]
        if not self.one_per_stem:
            return taken
        best: Dict[str, Part] = {}
        for part in taken:
            stem = stem_of(part, self.stems)
            if stem not in best or len(part.notes) > len(best[stem].notes):
                best[stem] = part
        return list(best.values())

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} rendered items")

    def __getstate__(self) -> Dict[str, object]:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()  # each worker renders its own
        return state

    def __repr__(self) -> str:
        scores = f"midi={str(self.midi)!r}" if self.midi is not None else f"num_items={self.num_items}"
        return (f"RenderedStems({scores}, items={len(self)}, duration={self.duration}, stems={self.stems}, "
                f"sample_rate={self.sample_rate}, channels={self.channels}, soundfont={str(self.soundfont)!r}, "
                f"backend={self.backend!r})")


def _excerpt(song: Song, start: float, duration: float, max_note: float) -> Song:
    """The notes of ``song`` sounding in ``[start, start + duration)``, shifted so that ``start`` is 0."""
    parts = []
    for part in song.parts:
        shifted = [type(note)(note.start - start, note.end - start, note.pitch, note.velocity)
                   for note in part.notes if note.end > start and note.start < start + duration]
        notes = clean_notes([type(n)(max(0.0, n.start), n.end, n.pitch, n.velocity) for n in shifted],
                            max_note, duration)
        if notes:
            parts.append(Part(part.name, part.program, part.is_drum, notes, part.role, part.pan, part.gain_db))
    return Song(f"{song.name}@{start:g}s", duration, tuple(parts), song.target_peak)


class RenderedMusic(RenderedStems):
    """Mixes of rendered songs: a :class:`RenderedStems` whose one stem, ``"mix"``, takes every part (the
    clean music of denoise). Arguments as for :class:`RenderedStems` but ``stems``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("stems", None)
        super().__init__(stems=(MIX,), **kwargs)


def rendered_source(scores: str, split: str, sample_rate: int, channels: int, seed: int, num_items: int,
                    duration: float, soundfont: Optional[PathLike] = None, stems: Optional[Sequence[str]] = None,
                    one_per_stem: bool = False, **kwargs: Any) -> Union[RenderedStems, RenderedMusic]:
    """The rendered source a datamodule asks for: stems (a multitrack task) or mixes (``stems=("mix",)``).

    Args:
        scores: ``"procedural"``, or a folder of MIDI files.
        split: ``train``, ``valid`` or ``test`` (MIDI files are split by path hash; procedural songs by ``seed``).
        sample_rate, channels, seed, num_items, duration, soundfont, one_per_stem: see :class:`RenderedStems`.
        stems: the task's stems, or ``("mix",)`` (or ``None``) for a :class:`RenderedMusic` of mixes.
        **kwargs: further :class:`RenderedStems` options.
    """
    midi = None if str(scores) == PROCEDURAL else scores
    options = dict(num_items=num_items, duration=duration, sample_rate=sample_rate, channels=channels, seed=seed,
                   soundfont=soundfont, midi=midi, split=split, one_per_stem=one_per_stem, **kwargs)
    if stems is None or tuple(stems) == (MIX,):
        return RenderedMusic(**options)
    return RenderedStems(stems=stems, **options)
