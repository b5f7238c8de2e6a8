"""FxNorm features measured over a dataset: every stem of every song, in parallel, averaged per stem type.

Measuring happens in the normalization order (see :mod:`musicfx.fxnorm.features`): the later features
are measured on stems already normalised toward the earlier ones, so this module sits above both
:mod:`~musicfx.fxnorm.features` and :mod:`~musicfx.fxnorm.normalize`.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from musicfx.audio.io import read_audio
from musicfx.data.multitrack import find_songs
from musicfx.errors import DataError
from musicfx.fxnorm.features import (
    DEFAULT_EQ_SMOOTH_HZ,
    EQ_SMOOTH_HZ,
    FEATURES,
    STEMS,
    FxNormConfig,
    FxNormFeatures,
    measure_stem,
    smooth_curve,
    usable,
)
from musicfx.fxnorm.normalize import normalize_stem

__all__ = ["compute_features"]


@dataclass(frozen=True)
class _SongFiles:
    """A song as stem files (read in the worker)."""

    name: str
    stems: Dict[str, Path]


@dataclass(frozen=True)
class _SourceSong:
    """A song of a multitrack source (e.g. the built-in generator or MUSDB18 ``.stem.mp4``)."""

    source: Any
    index: int


def _song_list(root: Any, stems: Sequence[str], sample_rate: int) -> List[Union[_SongFiles, _SourceSong]]:
    """The songs of a folder (any depth; the :class:`~musicfx.data.multitrack.StemFolder` layout) or of a
    multitrack source object."""
    if hasattr(root, "read") and hasattr(root, "num_frames"):
        if getattr(root, "sample_rate", sample_rate) != sample_rate:
            raise ValueError(f"the source is at {root.sample_rate} Hz, features are measured at {sample_rate} Hz")
        missing = [stem for stem in stems if stem not in tuple(root.stems)]
        if missing:
            raise DataError(f"{root!r} holds no stems {missing}")
        return [_SourceSong(root, index) for index in range(len(root))]
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such dataset folder")
    songs = find_songs(folder, stems)
    if not songs:
        raise DataError(f"{folder}: no song folders holding any of {', '.join(stems)} (.wav, .flac, ...)")
    return [_SongFiles(name, dict(files)) for name, files in songs]


def _read_song(song: Union[_SongFiles, _SourceSong], stems: Sequence[str], sample_rate: int
               ) -> Iterable[Tuple[str, str, torch.Tensor]]:
    """``(stem, where, audio (channels, time))`` for each stem of a song that exists."""
    if isinstance(song, _SongFiles):
        for stem, path in song.stems.items():
            yield stem, str(path), read_audio(path, sample_rate=sample_rate)[0]
        return
    source, index = song.source, song.index
    wanted = [stem for stem in stems if stem in tuple(source.stems)]
    audio = source.read(index, 0, source.num_frames(index), wanted)
    for stem, stem_audio in zip(wanted, audio):
        yield stem, f"{source.name(index)}/{stem}", stem_audio


def _measure_song(
    song: Union[_SongFiles, _SourceSong], stems: Sequence[str], features: Sequence[str],
    before: "FxNormFeatures", effects: Sequence[str],
) -> Tuple[Dict[str, Dict[str, np.ndarray]], List[str]]:
    """Features of every stem of one song, after normalising ``effects`` (worker side)."""
    rate = before.config.sample_rate
    measured: Dict[str, Dict[str, np.ndarray]] = {}
    notes: List[str] = []
    for stem, where, audio in _read_song(song, stems, rate):
        problem = usable(audio, rate)
        if problem is not None:
            notes.append(f"{where}: {problem}; skipped")
            continue
        if effects:
            audio = normalize_stem(audio, stem, before, rate, effects=effects)
        measured[stem] = measure_stem(audio, rate, before.config, features)
    return measured, notes


def _init_worker() -> None:
    # One intra-op thread per process: the pool already keeps every core busy.
    torch.set_num_threads(1)


def _map_songs(
    songs: Sequence[Union[_SongFiles, _SourceSong]],
    args: Tuple[Any, ...],
    workers: int,
    progress: bool,
    description: str,
) -> Iterable[Tuple[Dict[str, Dict[str, np.ndarray]], List[str]]]:
    """:func:`_measure_song` over ``songs``, in this process or a pool, in song order."""
    bar = dict(total=len(songs), desc=description, unit="song", disable=not progress)
    if workers <= 1:
        for song in tqdm(songs, **bar):
            yield _measure_song(song, *args)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        futures = [pool.submit(_measure_song, song, *args) for song in songs]
        for future in tqdm(futures, **bar):
            yield future.result()


#: The normalization stage each feature's target is matched by.
_EFFECT_OF = {"eq": "eq", "dynamics": "compression", "panning": "panning", "loudness": "loudness"}


def compute_features(
    root: Any,
    stems: Sequence[str] = STEMS,
    sample_rate: int = 44100,
    workers: Optional[int] = None,
    progress: bool = True,
    sequential: bool = True,
    config: Optional[FxNormConfig] = None,
) -> FxNormFeatures:
    """Average FxNorm features of every stem type over a dataset.

    Args:
        root: a folder of song folders holding ``<stem>.<ext>`` files at any depth (MUSDB18-HQ, or the
            layout of :class:`~musicfx.data.multitrack.StemFolder`: names matched ignoring case, ``.wav``,
            ``.flac``, ...), or a multitrack source object such as
            :func:`~musicfx.data.multitrack.multitrack_source`'s (MUSDB18 ``.stem.mp4``, one split) or
            :class:`~musicfx.data.sources.GeneratedMusic`.
        stems: stem types to measure; a song missing one simply does not contribute to it.
        sample_rate: stems are resampled to this rate (ignored when ``config`` is given).
        workers: processes measuring songs in parallel (default: one per CPU; ``0`` or ``1``: in this
            process).
        progress: show a progress bar per pass.
        sequential: measure each feature after normalising the stages before it, as the reference does
            (four passes over the data); ``False``: one pass over the stems as they are.
        config: measurement settings (default: :class:`FxNormConfig` at ``sample_rate``).

    Returns:
        :class:`FxNormFeatures`. Silent or too-short stems are skipped with a warning;
        :class:`DataError` when a stem type ends up with no usable stem at all.
    """
    config = config or FxNormConfig(sample_rate=sample_rate)
    stems = tuple(stems)
    songs = _song_list(root, stems, config.sample_rate)
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(0, min(int(workers), len(songs)))
    passes = [(name,) for name in FEATURES] if sequential else [FEATURES]
    result = FxNormFeatures(config=config)
    done: List[str] = []
    for names in passes:
        effects = [_EFFECT_OF[name] for name in done]
        collected: Dict[str, Dict[str, List[np.ndarray]]] = {name: {} for name in names}
        label = "fxnorm features" + (f" ({names[0]})" if len(names) == 1 else "")
        for measured, notes in _map_songs(songs, (stems, names, result, effects), workers, progress, label):
            if not done:  # warn once, not once per pass
                for note in notes:
                    warnings.warn(note, stacklevel=2)
            for stem, values in measured.items():
                for name, value in values.items():
                    collected[name].setdefault(stem, []).append(value)
        for name in names:
            _store(result, name, collected[name], stems, root)
        done.extend(names)
    return result


def _store(result: FxNormFeatures, name: str, values: Dict[str, List[np.ndarray]], stems: Sequence[str],
           root: Any) -> None:
    """Average one feature over stems and smooth it, into ``result``."""
    config = result.config
    for stem in stems:
        if not values.get(stem):
            raise DataError(f"{root}: no usable {stem!r} stem to measure its {name} feature")
        mean = np.mean(np.stack(values[stem]), axis=0)
        result.counts[stem] = max(result.counts.get(stem, 0), len(values[stem]))
        if name == "eq":
            width = EQ_SMOOTH_HZ.get(stem, DEFAULT_EQ_SMOOTH_HZ)
            result.eq[stem] = smooth_curve(torch.from_numpy(mean), width, config.sample_rate, config.n_fft).numpy()
        elif name == "panning":
            smoothed = smooth_curve(torch.from_numpy(mean), config.pan_smooth_hz, config.sample_rate, config.pan_n_fft)
            result.panning[stem] = smoothed.clamp(0.0, 1.0).numpy()
        elif name == "dynamics":
            result.dynamics[stem] = mean
        else:
            result.loudness[stem] = float(mean[0])
