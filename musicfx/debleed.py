"""Debleeding a live multitrack recording's files: the library behind ``musicfx debleed``.

* :func:`match_tracks` decides which file holds which of a model's tracks, by file name;
* :func:`debleed_files` streams the tracks of one recording through a debleed model (or KAMIR) in
  lockstep (:func:`musicfx.inference.process_files`), so any length runs in constant memory; tracks may
  differ in channel count (mono tracks are duplicated to the widest track's channels, every channel is
  debleeded as its own set of mono tracks, and each output is written with its input's channel count);
* :func:`file_leakage` scores the bleed between track files in bounded memory.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence

from musicfx.audio.stems import track_name
from musicfx.errors import AudioError

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


def _tokens(path: Path) -> List[str]:
    name = track_name(path)
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
    **options: Any,
) -> List[Path]:
    """Stream the tracks of one recording through a debleed model into one file per track.

    Args:
        model: mono tracks ``(batch, M, time) -> (batch, M, time)`` at ``model_sample_rate``, ``M = len(inputs)``
            (a task's ``model``, or :class:`musicfx.baselines.kamir.KAMIR`).
        inputs: the M track files, in the model's order; one sample rate, any channel counts (mono tracks
            beside multichannel ones are duplicated up, see the module docstring).
        outputs: one file per input, written with that input's channel count, at the inputs' rate.
        model_sample_rate: the model's rate (``None``: the files' own).
        segment: seconds per model call; overlap: fraction of a segment cross-faded.
        options: other keyword arguments of :func:`musicfx.inference.process_files` (batch_size, device,
            resample_input, progress, ...).

    Returns:
        ``outputs`` as paths; they appear only when every one of them was written.

    Raises:
        AudioError: unreadable, silent, non-finite or too short inputs; inputs at different rates, or with
            channel counts that cannot be brought to the widest (e.g. 2 and 3).
    """
    from musicfx.audio.io import audio_info
    from musicfx.inference import process_files

    inputs, outputs = [Path(p) for p in inputs], [Path(p) for p in outputs]
    infos = [audio_info(path) for path in inputs]
    rate = common_rate(inputs, infos)
    channels = max(info.channels for info in infos)
    kwargs = dict(options, segment=segment, overlap=overlap)
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
