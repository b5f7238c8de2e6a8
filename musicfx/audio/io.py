"""Reading and writing audio files.

Everything here returns and takes ``float32`` tensors shaped ``(channels, time)`` (one file) or
``(stems, channels, time)`` (a multitrack ``.stem.mp4``). Errors the user can fix raise
:class:`~musicfx.errors.AudioError` or :class:`~musicfx.errors.MissingDependencyError` with a message
that names the file.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import julius
import numpy as np
import soundfile as sf
import soxr
import torch

from musicfx.audio.stems import MUSDB_STREAMS
from musicfx.errors import AudioError, MissingDependencyError

PathLike = Union[str, os.PathLike]

#: Extensions we look for when scanning folders (anything libsndfile reads, plus stems).
AUDIO_EXTENSIONS: Tuple[str, ...] = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3", ".opus", ".w64", ".caf")
STEM_EXTENSIONS: Tuple[str, ...] = (".stem.mp4", ".mp4", ".m4a")


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding the samples."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def is_stem_file(path: PathLike) -> bool:
    name = str(path).lower()
    return name.endswith(STEM_EXTENSIONS)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, expected an audio file")


def audio_info(path: PathLike) -> AudioInfo:
    """Sample rate, channels and length of ``path`` without decoding it."""
    path = Path(path)
    _check_exists(path)
    if is_stem_file(path):
        info = _stem_info(path)
        return AudioInfo(info[0], info[1], info[2])

    try:
        info = sf.info(str(path))
    except Exception as error:  # soundfile raises RuntimeError/LibsndfileError with a terse text
        raise AudioError(f"{path}: cannot read audio ({_short(error)})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: file holds no audio")
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames))


def read_audio(
    path: PathLike,
    sample_rate: Optional[int] = None,
    channels: Optional[int] = None,
    start: int = 0,
    frames: int = -1,
    check_finite: bool = True,
) -> Tuple[torch.Tensor, int]:
    """Decode an audio file.

    Args:
        path: any file libsndfile reads (wav, flac, ogg, aiff, mp3, ...).
        sample_rate: resample to this rate (soxr) when given and different from the file's.
        channels: convert to this many channels when given (see :func:`convert_channels`).
        start: first frame to read, in the file's own sample rate.
        frames: number of frames to read (``-1``: to the end), in the file's own sample rate.
        check_finite: raise :class:`AudioError` if the file holds NaN or infinite samples.

    Returns:
        ``(audio, sample_rate)`` with ``audio`` float32 shaped ``(channels, time)``.
    """
    path = Path(path)
    _check_exists(path)
    if is_stem_file(path):
        stems, rate, _ = read_stems(path)
        audio = stems[0]  # stream 0 of a stem file is the mixture
        end = None if frames < 0 else start + frames
        audio = audio[:, start:end]
    else:

        try:
            data, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        except Exception as error:
            raise AudioError(f"{path}: cannot read audio ({_short(error)})") from None
        audio = torch.from_numpy(np.ascontiguousarray(data.T))
    if audio.shape[-1] == 0:
        if start > 0:
            raise AudioError(f"{path}: start frame {start} is beyond the end of the file")
        raise AudioError(f"{path}: file holds no audio")
    if check_finite:
        ensure_finite(audio, str(path))
    if channels is not None:
        audio = convert_channels(audio, channels)
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return audio, int(rate)


def write_audio(
    path: PathLike,
    audio: torch.Tensor,
    sample_rate: int,
    subtype: Optional[str] = None,
    overwrite: bool = True,
) -> Path:
    """Write ``audio`` ``(channels, time)`` atomically: to a temporary file beside ``path``, then renamed.

    A crash mid-write never leaves a half-written file under ``path``. ``subtype`` is a soundfile
    subtype (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``); default: ``FLOAT`` for wav, the format's default
    otherwise.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise AudioError(f"{path}: exists; refusing to overwrite it")
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2:
        raise ValueError(f"expected audio shaped (channels, time), got {tuple(audio.shape)}")
    ensure_finite(audio, f"audio for {path}")
    data = audio.detach().to("cpu", torch.float32).numpy().T
    format_ = _format_for(path)
    if subtype is None and format_ == "WAV":
        subtype = "FLOAT"
    with atomic_path(path) as tmp:
        sf.write(tmp, data, int(sample_rate), subtype=subtype, format=format_)
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any error it is removed.

    Readers never see a half-written ``path``, and a crash leaves the previous file (if any) intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=str(path.parent))
    os.close(handle)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    formats = {"aif": "AIFF", "oga": "OGG", "opus": "OGG"}
    name = formats.get(ext, ext.upper())
    if name not in sf.available_formats():
        raise AudioError(f"{path}: cannot write '.{ext}' files; use .wav or .flac")
    return name


def ensure_finite(audio: torch.Tensor, what: str) -> None:
    """Raise :class:`AudioError` if ``audio`` holds NaN or infinite samples."""
    if not bool(torch.isfinite(audio).all()):
        bad = int((~torch.isfinite(audio)).sum())
        raise AudioError(f"{what}: holds {bad} NaN or infinite samples")


def convert_channels(audio: torch.Tensor, channels: int) -> torch.Tensor:
    """Map ``(..., in_channels, time)`` to ``channels``.

    Mono to many repeats the channel; many to mono averages; otherwise the first ``channels`` are kept
    when there are more, and it is an error to ask for more channels than a multichannel signal has.
    """
    have = audio.shape[-2]
    if have == channels:
        return audio
    if channels == 1:
        return audio.mean(dim=-2, keepdim=True)
    if have == 1:
        return audio.expand(*audio.shape[:-2], channels, audio.shape[-1]).contiguous()
    if have > channels:
        return audio[..., :channels, :]
    raise AudioError(f"cannot make {channels} channels from {have}")


def resample(audio: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample ``(..., time)`` from ``orig_sr`` to ``new_sr``.

    CPU tensors go through soxr (very high quality, fast); tensors on an accelerator stay there and use
    julius' sinc resampler so no copy to host is needed.
    """
    if orig_sr == new_sr:
        return audio
    if audio.device.type != "cpu" or audio.requires_grad:
        return julius.resample_frac(audio, int(orig_sr), int(new_sr))

    shape = audio.shape
    flat = audio.reshape(-1, shape[-1]).to(torch.float32).numpy().T  # soxr wants (time, channels)
    out = soxr.resample(np.ascontiguousarray(flat), int(orig_sr), int(new_sr), quality="VHQ")
    return torch.from_numpy(np.ascontiguousarray(out.T)).reshape(*shape[:-1], -1)


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def _require_ffmpeg(path: Path) -> None:
    if not ffmpeg_available():
        raise MissingDependencyError(
            f"{path}: decoding .stem.mp4 needs ffmpeg and ffprobe on PATH "
            "(Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg)"
        )


def _require_stempeg():
    try:
        import stempeg  # noqa: F401
    except ImportError:
        raise MissingDependencyError("reading .stem.mp4 needs stempeg: pip install 'musicfx[musdb]'") from None
    return stempeg


def _stem_info(path: Path) -> Tuple[int, int, int, int]:
    """(sample_rate, channels, frames, streams) of a stem file."""
    info = _probe_stems(path)
    rate = int(info.sample_rate(0))
    return rate, int(info.channels(0)), int(round(info.duration(0) * rate)), int(info.nb_audio_streams)


def stem_streams(path: PathLike) -> int:
    """How many audio streams a stem file holds (MUSDB18: 5), read from its header."""
    path = Path(path)
    _check_exists(path)
    return int(_probe_stems(path).nb_audio_streams)


def _probe_stems(path: Path) -> Any:
    """ffprobe's description of a stem file (a ``stempeg.Info``)."""
    _require_ffmpeg(path)
    stempeg = _require_stempeg()
    try:
        return stempeg.Info(str(path))
    except Exception as error:
        # ffprobe's own last line ("moov atom not found") says more than the wrapper's "see stderr".
        stderr = getattr(error, "stderr", None)
        lines = stderr.decode(errors="replace").strip().splitlines() if isinstance(stderr, bytes) else []
        reason = lines[-1].replace(f"{path}: ", "") if lines else _short(error)
        raise AudioError(f"{path}: cannot read stem file ({reason})") from None


#: A stem stream may decode this many frames short of its header's duration (AAC frames are 1024 samples,
#: and encoders round differently); more means the file was cut short.
_STEM_LENGTH_SLACK = 4096


def read_stem_blocks(
    path: PathLike, block_frames: int, streams: Optional[Sequence[int]] = None
) -> Iterator[torch.Tensor]:
    """Decode a multitrack ``.stem.mp4`` in consecutive blocks, in memory that does not grow with its length.

    One ffmpeg process per stream (the command stempeg runs, so the samples are stempeg's) writes float32
    PCM to a pipe, and the pipes are read one block at a time in lockstep. Streams that decode to different
    lengths are cut to the shortest, as stempeg does.

    Args:
        path: the stem file.
        block_frames: frames per block; the last block may be shorter.
        streams: audio stream indices to decode (MUSDB18: 0 the mixture, 1-4 drums, bass, other, vocals);
            default: every audio stream.

    Yields:
        float32 blocks shaped ``(len(streams), channels, time)`` at the file's sample rate (that of stream 0).

    Raises:
        MissingDependencyError: ffmpeg / ffprobe or stempeg (the probe) is missing.
        AudioError: an unreadable, corrupt or truncated file (decoding ends well before the duration its
            header announces), a stream index it does not have, streams of different channel counts, NaN.
    """
    path = Path(path)
    _check_exists(path)
    return _decode_stems(path, _probe_stems(path), block_frames, streams)


def _decode_stems(path: Path, info: Any, block_frames: int, streams: Optional[Sequence[int]]) -> Iterator[torch.Tensor]:
    """:func:`read_stem_blocks` once the file is probed (``info``: a ``stempeg.Info``)."""
    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    count = int(info.nb_audio_streams)
    if count == 0:
        raise AudioError(f"{path}: stem file holds no audio stream")
    streams = list(range(count)) if streams is None else [int(index) for index in streams]
    for index in streams:
        if not 0 <= index < count:
            raise AudioError(f"{path}: has {count} audio streams, no stream {index}")
    channel_counts = {int(info.channels(index)) for index in streams}
    if len(channel_counts) != 1:
        raise AudioError(f"{path}: its streams have different channel counts ({sorted(channel_counts)})")
    channels = channel_counts.pop()
    rate = int(info.sample_rate(0))
    try:
        announced: Optional[int] = min(int(round(float(info.duration(index)) * rate)) for index in streams)
    except (KeyError, TypeError, ValueError):  # no duration in the header: nothing to check the length against
        announced = None
    frame_bytes = 4 * channels
    with contextlib.ExitStack() as stack:
        decoders = []
        for index in streams:
            errors = stack.enter_context(tempfile.TemporaryFile())  # a file, so a chatty ffmpeg never blocks
            command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", f"0:a:{index}",
                       "-f", "f32le", "-ar", str(rate), "pipe:1"]
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
            stack.callback(_stop, process)  # also when the consumer stops reading early
            decoders.append((process, errors))
        decoded = 0
        ended = [False] * len(decoders)
        while not any(ended):
            pieces = []
            for number, (process, _) in enumerate(decoders):
                data = process.stdout.read(block_frames * frame_bytes)
                ended[number] = len(data) < block_frames * frame_bytes
                usable = len(data) - len(data) % frame_bytes
                pieces.append(np.frombuffer(data, dtype="<f4", count=usable // 4).reshape(-1, channels))
            frames = min(piece.shape[0] for piece in pieces)
            if frames:
                block = torch.from_numpy(np.stack([piece[:frames].T for piece in pieces]))
                ensure_finite(block, str(path))
                decoded += frames
                yield block
        for (process, errors), done in zip(decoders, ended):
            if done and process.wait() != 0:  # the others are cut off (longer streams, as stempeg cuts them)
                errors.seek(0)
                text = errors.read().decode(errors="replace").strip().splitlines()
                raise AudioError(f"{path}: cannot decode stem file ({text[-1] if text else 'ffmpeg failed'})")
    if decoded == 0:
        raise AudioError(f"{path}: stem file holds no audio")
    if announced is not None and decoded < announced - _STEM_LENGTH_SLACK:
        raise AudioError(
            f"{path}: decoded {decoded / rate:.2f} s of the {announced / rate:.2f} s its header announces "
            "(a truncated or corrupt file?)"
        )


def _stop(process: subprocess.Popen) -> None:
    """End an ffmpeg decoder that is no longer read (a consumer that stopped early) and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def read_stems(
    path: PathLike, sample_rate: Optional[int] = None, streams: Optional[Sequence[int]] = None
) -> Tuple[torch.Tensor, int, Tuple[str, ...]]:
    """Decode a multitrack ``.stem.mp4`` (native instruments stems, as MUSDB18 ships) whole.

    The samples are those of :func:`read_stem_blocks` (which streams the file instead), concatenated.

    Args:
        path: the stem file.
        sample_rate: resample to this rate when given and different from the file's.
        streams: audio stream indices to decode (default: all).

    Returns:
        ``(stems, sample_rate, names)``: ``stems`` float32 ``(streams, channels, time)``; MUSDB18's
        order is mixture, drums, bass, other, vocals, which ``names`` gives when there are 5 streams.
    """
    path = Path(path)
    _check_exists(path)
    info = _probe_stems(path)
    blocks = list(_decode_stems(path, info, 1 << 20, streams))
    stems = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1)
    del blocks
    rate = int(info.sample_rate(0))
    if sample_rate is not None and sample_rate != rate:
        stems = resample(stems, rate, sample_rate)
        rate = sample_rate
    names = MUSDB_STREAMS if stems.shape[0] == 5 else tuple(
        f"stream{i}" for i in range(stems.shape[0])
    )
    return stems, rate, names


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
