"""The one inference engine: chunked overlap-add over recordings of any length, in constant memory.

Every way of running a trained model on audio goes through here: ``musicfx denoise|separate|debleed|mix``,
``musicfx evaluate --ckpt``, the tasks' ``denoise()`` / ``separate()`` / ``debleed()`` / ``mix()`` and
:func:`musicfx.api.denoise`. The path is always the same (:class:`_Pipeline`): audio at its own rate ->
streaming resampler -> :class:`OverlapAdd` (or :class:`ShiftedOverlapAdd` for test-time shifts) ->
streaming resampler back; the entry points differ only in where the audio comes from and goes to.

* :class:`OverlapAdd` is the streaming core: push audio in blocks, get finished audio out; segments overlap
  and are cross-faded with windows whose overlapping parts sum to one, so an identity model gives back the
  input exactly and a real model leaves no seams. The model may return extra leading dimensions (a
  separator turns ``(channels, time)`` into ``(stems, channels, time)``).
* :func:`apply_model` runs a model over a tensor in memory (the tasks' methods and the Python API);
* :func:`process_files` streams several files in lockstep through one model into several files
  (debleed: M tracks -> M tracks; automix: S stems -> 1 mix), memory independent of the length;
* :func:`process_file` (one file -> one file, e.g. denoise) and :func:`separate_file` (one mix -> S stem
  files) are its common cases; :func:`separate_to_stem_file` writes one ``.stem.mp4`` instead;
* :func:`mux_stem_file` packs a mixture file and stem files into a ``.stem.mp4`` with ffmpeg reading the
  files as it encodes; :func:`write_stem_file` does it for tensors.

``shifts=N`` (Demucs' test-time augmentation) runs the model on N copies of the input, each delayed by a
random offset of up to :data:`MAX_SHIFT_SECONDS`, moves the outputs back and averages them; the offsets
come from ``seed``, so results are reproducible. ``shifts=0`` is the plain path.
"""
from __future__ import annotations

import contextlib
import math
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from musicfx.audio.io import atomic_path, convert_channels, ensure_finite
from musicfx.errors import AudioError, MissingDependencyError

ModelFn = Callable[[torch.Tensor], torch.Tensor]
PathLike = Union[str, Path]

#: Largest test-time shift, seconds (Demucs: half a second).
MAX_SHIFT_SECONDS = 0.5


def _fade_window(segment: int, overlap: int) -> torch.Tensor:
    """Window of ``segment`` samples: a raised-cosine rise over ``overlap``, flat, then the mirrored fall.

    Rise and fall are complementary (``sin^2 + cos^2 = 1``), so shifted copies sum to one over overlaps.
    """
    window = torch.ones(segment)
    if overlap > 0:
        t = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
        rise = torch.sin(0.5 * torch.pi * t).square().float()
        window[:overlap] = rise
        window[-overlap:] = rise.flip(0)
    return window


class OverlapAdd:
    """Streaming overlap-add of a model over ``(*in_shape, time)`` audio, e.g. ``(channels, time)``.

    Segments start every ``hop = segment - overlap`` samples. Each is faded in over its first ``overlap``
    samples (except the very first) and out over its last (except the final one), with complementary
    raised-cosine ramps, so the cross-faded sum has unit gain everywhere.

    The model keeps the batch and time dimensions and may change everything between them: a denoiser
    maps ``(batch, channels, segment)`` to the same shape, a separator to ``(batch, stems, channels,
    segment)``. Finished output is ``(*out_shape, time)``; :attr:`out_shape` is known after the first
    model call (empty results returned before it have the input's shape).

    Args:
        fn: model ``(batch, *in_shape, segment) -> (batch, *out_shape, segment)``.
        segment: samples per model call.
        overlap: samples shared by consecutive calls, ``0 <= overlap <= segment // 2``.
        batch_size: segments per model call.
        device: where ``fn`` runs; segments are moved there and results back to the CPU.
    """

    def __init__(
        self,
        fn: ModelFn,
        segment: int,
        overlap: int,
        batch_size: int = 1,
        device: Optional[torch.device] = None,
    ) -> None:
        if segment <= 0 or not 0 <= overlap <= segment // 2:
            raise ValueError(f"need 0 <= overlap <= segment/2, got overlap={overlap}, segment={segment}")
        self.fn = fn
        self.segment = segment
        self.overlap = overlap
        self.hop = segment - overlap
        self.batch_size = max(1, batch_size)
        self.device = device or torch.device("cpu")
        window = _fade_window(segment, overlap)
        self._fade_in = window.clone()
        self._fade_in[segment - overlap :] = 1.0
        self._fade_out = window.clone()
        self._fade_out[:overlap] = 1.0
        self._window = window
        self._buffer: Optional[torch.Tensor] = None  # input from the next segment's start on
        self._tail: Optional[torch.Tensor] = None  # faded-out end of the last segment, not yet emitted
        self.out_shape: Optional[Tuple[int, ...]] = None
        self.frames_in = 0
        self.frames_out = 0

    def _run(self, segments: List[torch.Tensor]) -> torch.Tensor:
        batch = torch.stack(segments).to(self.device)
        with torch.inference_mode():
            out = self.fn(batch)
        if out.dim() < 2 or out.shape[0] != batch.shape[0] or out.shape[-1] != batch.shape[-1]:
            raise RuntimeError(
                f"model returned {tuple(out.shape)} for input {tuple(batch.shape)}: "
                "expected the input's batch size first and its length last"
            )
        shape = tuple(out.shape[1:-1])
        if self.out_shape is not None and shape != self.out_shape:
            raise RuntimeError(f"model returned {tuple(out.shape)}, earlier calls gave (batch, {self.out_shape}, time)")
        self.out_shape = shape
        return out.float().cpu()

    def _emit(self, outputs: torch.Tensor, final: bool) -> torch.Tensor:
        pieces = []
        for i, out in enumerate(outputs):
            first = self._tail is None
            last = final and i == len(outputs) - 1
            if first and last:
                pieces.append(out)
                continue
            window = self._fade_out if first else (self._fade_in if last else self._window)
            out = out * window
            if not first:
                out[..., : self.overlap] += self._tail
            if last:
                pieces.append(out)
                self._tail = None
            else:
                pieces.append(out[..., : self.hop])
                self._tail = out[..., self.hop :]
        return torch.cat(pieces, dim=-1)

    def _process(self, segments: List[torch.Tensor], final: bool) -> List[torch.Tensor]:
        finished = []
        for i in range(0, len(segments), self.batch_size):
            batch = segments[i : i + self.batch_size]
            finished.append(self._emit(self._run(batch), final and i + self.batch_size >= len(segments)))
        return finished

    def push(self, block: torch.Tensor) -> torch.Tensor:
        """Feed ``(*in_shape, n)`` samples; returns the finished ``(*out_shape, m)``, maybe ``m = 0``."""
        self.frames_in += block.shape[-1]
        self._buffer = block if self._buffer is None else torch.cat([self._buffer, block], dim=-1)
        segments = []
        while self._buffer.shape[-1] >= self.segment:
            segments.append(self._buffer[..., : self.segment])
            self._buffer = self._buffer[..., self.hop :]
        out = self._process(segments, final=False)
        return self._count(out, tuple(block.shape[:-1]))

    def flush(self) -> torch.Tensor:
        """Process what is left (zero-padded to a segment) and return the rest of the output."""
        if self._buffer is None:
            return self._empty((1,))
        in_shape = tuple(self._buffer.shape[:-1])
        left = self.frames_in - self.frames_out
        out: List[torch.Tensor] = []
        if left > 0:
            rest = self._buffer
            padded = torch.nn.functional.pad(rest, (0, self.segment - rest.shape[-1]))
            out = self._process([padded], final=True)
        self._tail = None
        result = torch.cat(out, dim=-1)[..., :left] if out else self._empty(in_shape)
        self._buffer = None
        return self._count([result], in_shape)

    def _empty(self, in_shape: Tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(*(self.out_shape if self.out_shape is not None else in_shape), 0)

    def _count(self, pieces: List[torch.Tensor], in_shape: Tuple[int, ...]) -> torch.Tensor:
        out = torch.cat(pieces, dim=-1) if pieces else self._empty(in_shape)
        self.frames_out += out.shape[-1]
        return out


class ShiftedOverlapAdd:
    """Test-time shift augmentation around :class:`OverlapAdd` (Demucs' ``shifts``), streaming.

    ``shifts`` engines each see the input delayed by its own offset, drawn uniformly from
    ``[0, max_shift]`` samples with a generator seeded by ``seed``; each engine's output is moved back by
    its offset and the ``shifts`` outputs are averaged. A model whose segmentation or padding leaves a mark
    at fixed positions (most convolutional separators) is thereby averaged over positions. Same interface
    as :class:`OverlapAdd`; ``shifts`` times the model calls.

    Args:
        make_engine: returns a fresh :class:`OverlapAdd` (one per shifted copy).
        shifts: number of shifted copies, at least 1.
        max_shift: largest offset in samples.
        seed: seed of the offsets.
    """

    def __init__(
        self, make_engine: Callable[[], OverlapAdd], shifts: int = 1, max_shift: int = 0, seed: int = 0
    ) -> None:
        if shifts < 1 or max_shift < 0:
            raise ValueError(f"need shifts >= 1 and max_shift >= 0, got {shifts} and {max_shift}")
        generator = torch.Generator().manual_seed(seed)
        self.offsets: List[int] = torch.randint(0, max_shift + 1, (shifts,), generator=generator).tolist()
        self.engines = [make_engine() for _ in self.offsets]
        self._to_drop = list(self.offsets)  # delayed output still to drop from each engine's start
        self._ready: List[Optional[torch.Tensor]] = [None] * shifts  # finished, not yet averaged
        self._started = False

    @property
    def out_shape(self) -> Optional[Tuple[int, ...]]:
        return self.engines[0].out_shape

    def _collect(self, index: int, out: torch.Tensor) -> None:
        if not out.shape[-1]:
            return
        drop = min(self._to_drop[index], out.shape[-1])
        self._to_drop[index] -= drop
        out = out[..., drop:]
        ready = self._ready[index]
        self._ready[index] = out if ready is None else torch.cat([ready, out], dim=-1)

    def _average(self, in_shape: Tuple[int, ...]) -> torch.Tensor:
        frames = min(0 if ready is None else ready.shape[-1] for ready in self._ready)
        if frames == 0:
            return torch.zeros(*(self.out_shape if self.out_shape is not None else in_shape), 0)
        total = sum(ready[..., :frames] for ready in self._ready)
        self._ready = [ready[..., frames:] for ready in self._ready]
        return total / len(self.engines)

    def push(self, block: torch.Tensor) -> torch.Tensor:
        """Feed ``(*in_shape, n)`` samples; returns the finished, averaged ``(*out_shape, m)``."""
        for index, (engine, offset) in enumerate(zip(self.engines, self.offsets)):
            delayed = block
            if not self._started and offset:
                delayed = torch.cat([block.new_zeros(*block.shape[:-1], offset), block], dim=-1)
            self._collect(index, engine.push(delayed))
        self._started = True
        return self._average(tuple(block.shape[:-1]))

    def flush(self) -> torch.Tensor:
        """Process what is left and return the rest of the averaged output."""
        for index, engine in enumerate(self.engines):
            self._collect(index, engine.flush())
        return self._average((1,))


def _channel_fn(fn: ModelFn, model_channels: int, file_channels: int) -> ModelFn:
    """Wrap ``fn`` so it takes ``(n, file_channels, t)`` and returns ``(n, *extra, file_channels, t)``.

    ``fn`` maps ``(n, model_channels, t)`` to ``(n, *extra, model_channels, t)``: ``extra`` is empty for a
    denoiser and ``(stems,)`` for a separator. A file with fewer channels than the model (mono into a
    stereo model) is duplicated up and the output averaged back. A file with more channels runs in
    groups of ``model_channels`` as separate examples — a mono model processes each channel on its own, a
    stereo model takes channels (1, 2), (3, 4), ... and an odd last channel is paired with itself.
    """
    if model_channels == file_channels:
        return fn
    if file_channels < model_channels:

        def upmixed(x: torch.Tensor) -> torch.Tensor:
            return convert_channels(fn(convert_channels(x, model_channels)), file_channels)

        return upmixed
    groups = -(-file_channels // model_channels)
    index = torch.arange(groups * model_channels).clamp(max=file_channels - 1)

    def grouped(x: torch.Tensor) -> torch.Tensor:
        n, _, t = x.shape
        y = fn(x[:, index].reshape(n * groups, model_channels, t))  # (n * groups, *extra, model_channels, t)
        y = y.reshape(n, groups, *y.shape[1:])
        # Put the groups beside the channels they came from, then drop the duplicated odd channel.
        y = y.movedim(1, -3).flatten(-3, -2)
        return y[..., :file_channels, :]

    return grouped


@dataclass(frozen=True)
class Chunking:
    """How the engine cuts audio for a model.

    Attributes:
        segment: seconds per model call.
        overlap: fraction of ``segment`` cross-faded with the next, 0 to 0.5.
        batch_size: segments per model call.
        device: where the model runs.
        shifts: test-time shift augmentation (see :class:`ShiftedOverlapAdd`); 0: none.
        seed: of the shifts.
    """

    segment: float = 10.0
    overlap: float = 0.25
    batch_size: int = 1
    device: Optional[torch.device] = None
    shifts: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.segment > 0 and math.isfinite(self.segment)) or not 0 <= self.overlap <= 0.5:
            raise ValueError(f"need segment > 0 and 0 <= overlap <= 0.5, got segment={self.segment}, "
                             f"overlap={self.overlap}")
        if self.shifts < 0:
            raise ValueError(f"shifts must be >= 0, got {self.shifts}")


class _Pipeline:
    """The one streaming path: ``(*in_shape, n)`` blocks at the audio's rate -> model -> back at that rate.

    Blocks are resampled to the model's rate (soxr, streaming), run through the overlap-add engine in
    segments and the finished output is resampled back. Memory is bound by a block and a segment.

    Args:
        fn: ``(batch, *in_shape, segment) -> (batch, *out_shape, segment)`` at ``model_rate``.
        rate: the audio's rate; model_rate: the model's.
        in_shape: the dimensions before time, e.g. ``(channels,)`` or ``(files, channels)``.
        frames: the audio's length at ``rate`` when known: a recording shorter than a segment runs in one
            model call on its own length (a 3 s file is not padded to a 10 s segment).
        chunking: segment, overlap, batch size, device and shifts.
    """

    def __init__(
        self, fn: ModelFn, rate: int, model_rate: int, in_shape: Tuple[int, ...], frames: Optional[int],
        chunking: Chunking,
    ) -> None:
        seg = max(1, int(round(chunking.segment * model_rate)))
        overlap_frames = min(int(round(chunking.overlap * seg)), seg // 2)
        whole = None if frames is None else max(1, math.ceil(frames * model_rate / rate))
        if whole is not None and whole <= seg and not chunking.shifts:
            # The recording fits one segment: one model call on all of it, nothing to cross-fade.
            seg, overlap_frames = whole, 0
        self.rate, self.model_rate, self.in_shape = rate, model_rate, tuple(in_shape)

        def make_engine() -> OverlapAdd:
            return OverlapAdd(fn, seg, overlap_frames, chunking.batch_size, chunking.device)

        self.engine: Union[OverlapAdd, ShiftedOverlapAdd] = (
            ShiftedOverlapAdd(make_engine, chunking.shifts, int(MAX_SHIFT_SECONDS * model_rate), chunking.seed)
            if chunking.shifts else make_engine()
        )
        self._to_model = _StreamResampler(rate, model_rate, int(np.prod(self.in_shape)))
        self._from_model: Optional[_StreamResampler] = None

    @property
    def out_shape(self) -> Optional[Tuple[int, ...]]:
        """The model's output dimensions before time; known after its first call."""
        return self.engine.out_shape

    def push(self, block: torch.Tensor, last: bool = False) -> Optional[torch.Tensor]:
        """Feed ``(*in_shape, n)`` at ``rate`` (``last``: the end of the audio, drain everything).

        Returns:
            The finished ``(*out_shape, m)`` at ``rate``, or ``None`` before the model's first call.
        """
        size = int(np.prod(self.in_shape))
        x = self._to_model(block.reshape(size, block.shape[-1]), last=last)
        y = self.engine.push(x.reshape(*self.in_shape, x.shape[-1]))
        if last:
            rest = self.engine.flush()
            y = torch.cat([y, rest], dim=-1) if y.shape[-1] else rest
        shape = self.engine.out_shape
        if shape is None:
            return None
        if self._from_model is None:
            self._from_model = _StreamResampler(self.model_rate, self.rate, int(np.prod(shape)))
        y = self._from_model(y.reshape(int(np.prod(shape)), y.shape[-1]), last=last)
        return y.reshape(*shape, y.shape[-1])


def apply_model(
    model: ModelFn,
    audio: torch.Tensor,
    sample_rate: int,
    model_sample_rate: int,
    model_channels: int,
    segment: float = 10.0,
    overlap: float = 0.25,
    batch_size: int = 1,
    device: Optional[torch.device] = None,
    progress: bool = False,
    shifts: int = 0,
    seed: int = 0,
    block_seconds: float = 30.0,
) -> torch.Tensor:
    """Run a waveform model over a whole recording held in memory, through the streaming engine.

    Args:
        model: ``(batch, model_channels, time) -> (batch, model_channels, time)`` (a denoiser) or
            ``-> (batch, stems, model_channels, time)`` (a separator).
        audio: ``(channels, time)`` or ``(time,)`` at ``sample_rate``; any channel count (see
            :func:`_channel_fn`).
        sample_rate: rate of ``audio``; model_sample_rate: the model's (resampled there and back).
        model_channels: channels the model takes.
        segment: seconds per model call; overlap: fraction of ``segment`` cross-faded (at most half).
        batch_size: segments per model call; device: where the model runs (default: its parameters').
        progress: show a progress bar.
        shifts: test-time shift augmentation, 0 for none; seed: of the shifts.
        block_seconds: seconds fed to the engine at a time.

    Returns:
        ``audio``'s shape for a denoiser, ``(stems, *audio.shape)`` for a separator; at ``sample_rate``.
    """
    squeeze = audio.dim() == 1
    if squeeze:
        audio = audio.unsqueeze(0)
    ensure_finite(audio, "input audio")
    x = audio.detach().float().cpu()
    frames = x.shape[-1]
    chunking = Chunking(segment, overlap, batch_size, device or _model_device(model), shifts, seed)
    pipeline = _Pipeline(_channel_fn(model, model_channels, x.shape[0]), sample_rate, model_sample_rate,
                         (x.shape[0],), frames, chunking)
    block = max(1, int(block_seconds * sample_rate))
    starts: Any = range(0, frames, block)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, unit="block", desc="processing")
    outs = [pipeline.push(x[:, start : start + block]) for start in starts]
    outs.append(pipeline.push(x[:, :0], last=True))
    y = torch.cat([out for out in outs if out is not None], dim=-1)[..., :frames]
    if y.shape[-1] < frames:  # the resampler may end a few samples short
        y = torch.nn.functional.pad(y, (0, frames - y.shape[-1]))
    return y[..., 0, :] if squeeze else y


def _model_device(model: object) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device
    return torch.device("cpu")


class _StreamResampler:
    """soxr's streaming resampler on ``(channels, n)`` tensors; identity when rates match."""

    def __init__(self, in_rate: int, out_rate: int, channels: int) -> None:
        self.identity = in_rate == out_rate
        if not self.identity:
            import soxr

            self.stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32", quality="HQ")

    def __call__(self, block: torch.Tensor, last: bool = False) -> torch.Tensor:
        if self.identity:
            return block
        out = self.stream.resample_chunk(np.ascontiguousarray(block.numpy().T), last=last)
        return torch.from_numpy(np.ascontiguousarray(out.T)).reshape(block.shape[0], out.shape[0])


class _Input:
    """One input file read in blocks of ``(channels, n)`` at its own rate (a stem file: its stream 0, the
    mixture, decoded by ffmpeg as it is read)."""

    def __init__(self, path: Path) -> None:
        from musicfx.audio.io import audio_info, is_stem_file, read_stem_blocks

        self.path = path
        self.stem_file = is_stem_file(path)
        info = audio_info(path)
        self.rate, self.frames, self.channels = info.sample_rate, info.frames, info.channels
        if self.stem_file:
            # The header's length is off by the AAC padding: count the decoded frames of stream 0 ahead
            # (one extra decode, in constant memory), so outputs are exactly as long as the mixture decodes.
            self.frames = sum(block.shape[-1] for block in read_stem_blocks(path, 1 << 20, [0]))

    def blocks(self, block_frames: int) -> Iterator[torch.Tensor]:
        if self.stem_file:
            from musicfx.audio.io import read_stem_blocks

            for block in read_stem_blocks(self.path, block_frames, [0]):
                yield block[0]
            return
        yield from _read_blocks(self.path, block_frames)


def _lockstep(inputs: Sequence[_Input], block_frames: int) -> Iterator[List[Optional[torch.Tensor]]]:
    """One block per input per step (``None`` once that input has ended), until all have ended."""
    iterators = [item.blocks(block_frames) for item in inputs]
    while True:
        blocks = [next(iterator, None) for iterator in iterators]
        if all(block is None for block in blocks):
            return
        yield blocks


def _open_inputs(inputs: Sequence[Path], min_seconds: float) -> List[_Input]:
    """Open every input and check they can be streamed together (one rate; no input too short)."""
    opened = [_Input(path) for path in inputs]
    for item in opened:
        if item.frames < min_seconds * item.rate:
            raise AudioError(
                f"{item.path}: {item.frames / item.rate:.3f} s is too short (at least {min_seconds} s needed)"
            )
    first = opened[0]
    for item in opened[1:]:
        if item.rate != first.rate:
            raise AudioError(
                f"{item.path}: sample rate {item.rate} Hz differs from {first.path}'s {first.rate} Hz; "
                "files processed together must share one rate"
            )
    lengths = {item.frames for item in opened}
    if len(lengths) > 1:
        warnings.warn(
            f"inputs differ in length ({min(lengths) / first.rate:.3f} s to {max(lengths) / first.rate:.3f} s): "
            "the shorter ones are padded with silence to the longest",
            UserWarning,
            stacklevel=3,
        )
    return opened


def _input_channels(opened: Sequence[_Input], input_channels: Optional[int]) -> int:
    if input_channels is None:
        for item in opened[1:]:
            if item.channels != opened[0].channels:
                raise AudioError(
                    f"{item.path}: has {item.channels} channels but {opened[0].path} has {opened[0].channels}; "
                    "files processed together must have the same channel count"
                )
        return opened[0].channels
    for item in opened:
        if item.channels not in (1, input_channels) and item.channels < input_channels:
            raise AudioError(f"{item.path}: cannot make {input_channels} channels from its {item.channels}")
    return input_channels


class _Outputs:
    """The output files, opened on the first finished block (the model's output shape is known then)."""

    def __init__(
        self, paths: Sequence[Path], temps: Sequence[str], formats: Sequence[str], rate: int,
        channels: Optional[int], subtype: Optional[str], frames: int, stack: contextlib.ExitStack,
    ) -> None:
        self.paths, self.temps, self.formats = list(paths), list(temps), list(formats)
        self.rate, self.channels, self.subtype, self.frames, self._stack = rate, channels, subtype, frames, stack
        self.files: Optional[list] = None
        self.written = 0

    def open(self, out_shape: Tuple[int, ...]) -> None:
        import soundfile as sf

        if self.files is not None:
            return
        if len(out_shape) != 2 or out_shape[0] != len(self.paths):
            raise ValueError(
                f"model returned (batch, {', '.join(map(str, out_shape))}, time) but {len(self.paths)} output "
                f"files were given: expected (batch, {len(self.paths)}, channels, time)"
            )
        if self.channels is None:
            self.channels = out_shape[1]
        self.files = []
        for tmp, format_ in zip(self.temps, self.formats):
            subtype = "FLOAT" if self.subtype is None and format_ == "WAV" else self.subtype
            self.files.append(
                self._stack.enter_context(sf.SoundFile(
                    tmp, "w", samplerate=self.rate, channels=self.channels, format=format_, subtype=subtype
                ))
            )

    def write(self, block: Optional[torch.Tensor]) -> None:
        """Write ``(outputs, channels, n)`` (``None``: nothing finished yet), cut at the longest input's length."""
        if block is None:
            return
        block = block[..., : self.frames - self.written]
        if not block.shape[-1]:
            return
        self.open(tuple(block.shape[:-1]))
        block = convert_channels(block, self.channels)
        for path, file, audio in zip(self.paths, self.files, block):
            ensure_finite(audio, f"model output for {path} (around {self.written / self.rate:.1f} s)")
            file.write(np.ascontiguousarray(audio.numpy().T))
        self.written += block.shape[-1]

    def finish(self, out_shape: Optional[Tuple[int, ...]]) -> None:
        """Pad to the input's length (the resampler may end a few samples short)."""
        if self.files is None:
            self.open(out_shape or (len(self.paths), self.channels or 1))
        if self.written < self.frames:
            silence = np.zeros((self.frames - self.written, self.channels), dtype=np.float32)
            for file in self.files:
                file.write(silence)
            self.written = self.frames


def process_files(
    model: ModelFn,
    inputs: Sequence[PathLike],
    outputs: Sequence[PathLike],
    model_sample_rate: int,
    input_channels: Optional[int],
    output_channels: Optional[int],
    segment: float = 10.0,
    overlap: float = 0.25,
    batch_size: int = 1,
    device: Optional[torch.device] = None,
    block_seconds: float = 30.0,
    min_seconds: float = 0.05,
    resample_input: bool = True,
    progress: bool = True,
    subtype: Optional[str] = None,
    shifts: int = 0,
    seed: int = 0,
) -> List[Path]:
    """Stream several files in lockstep through one model into several files.

    The inputs are read block by block together, converted to ``input_channels`` each, stacked to
    ``(n_in, C_in, time)`` and fed to the engine (:class:`_Pipeline`); the ``n_out`` outputs are written
    at the inputs' rate. Memory is bound by ``block_seconds`` and ``segment``, not by the files' length.
    All outputs are written to temporary files beside their targets and renamed only when everything
    succeeded: on any error (NaN samples mid-file, a silent recording, Ctrl-C) none is left behind.

    Args:
        model: ``(batch, n_in, C_in, segment) -> (batch, n_out, C_out, segment)`` with
            ``n_out = len(outputs)``.
        inputs: audio files sharing one sample rate. Lengths may differ: the shorter ones are padded
            with silence to the longest (with a warning).
        outputs: ``n_out`` files to write, each as long as the longest input.
        model_sample_rate: the model's rate; inputs are resampled to it (unless ``resample_input`` is
            off, which makes a different rate an error) and outputs back from it.
        input_channels: channels each input is converted to (see
            :func:`~musicfx.audio.io.convert_channels`); ``None`` keeps the files' own count, which must
            then be the same for all.
        output_channels: channels of the written files; ``None``: the model's ``C_out``.
        segment: seconds per model call (never more than the longest input); overlap: fraction of
            ``segment`` cross-faded (at most half).
        batch_size: segments per model call; device: where the model runs.
        block_seconds: seconds read from each input at a time.
        min_seconds: shortest input accepted.
        progress: show a progress bar; subtype: soundfile subtype (default ``FLOAT`` for wav).
        shifts: test-time shift augmentation (0: none); seed: of the shifts.

    Returns:
        ``outputs`` as paths.

    Raises:
        AudioError: an unreadable, too short or non-finite input; all inputs silent; inputs at
            different rates (or different channel counts with ``input_channels=None``); a rate mismatch
            with the model with ``resample_input=False``; an output that is one of the inputs.
    """
    from musicfx.audio.io import _format_for

    inputs, outputs = [Path(p) for p in inputs], [Path(p) for p in outputs]
    if not inputs or not outputs:
        raise ValueError("process_files needs at least one input and one output")
    resolved_inputs = {p.resolve(): p for p in inputs}
    for path in outputs:
        if path.resolve() in resolved_inputs:
            raise AudioError(f"{path}: output is the input file; refusing to overwrite it")
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise AudioError(f"two outputs share one path ({', '.join(map(str, outputs))})")
    formats = [_format_for(path) for path in outputs]  # an unwritable format fails before any work
    chunking = Chunking(segment, overlap, batch_size, device or _model_device(model), shifts, seed)
    opened = _open_inputs(inputs, min_seconds)
    rate = opened[0].rate
    frames = max(item.frames for item in opened)
    if rate != model_sample_rate and not resample_input:
        raise AudioError(
            f"{inputs[0]}: sample rate {rate} Hz differs from the model's {model_sample_rate} Hz "
            "(drop --no-resample to resample automatically)"
        )
    channels = _input_channels(opened, input_channels)
    pipeline = _Pipeline(model, rate, model_sample_rate, (len(opened), channels), frames, chunking)
    progress_bar = None
    if progress:
        from tqdm.auto import tqdm

        name = inputs[0].name if len(inputs) == 1 else f"{inputs[0].name} (+{len(inputs) - 1})"
        progress_bar = tqdm(total=frames, unit="frame", unit_scale=True, desc=name, leave=False)
    peaks = [0.0] * len(opened)
    try:
        with contextlib.ExitStack() as stack:
            temps = [stack.enter_context(atomic_path(path)) for path in outputs]
            sink = _Outputs(outputs, temps, formats, rate, output_channels, subtype, frames, stack)
            read = 0
            for blocks in _lockstep(opened, int(block_seconds * rate)):
                length = max(block.shape[-1] for block in blocks if block is not None)
                stacked = torch.zeros(len(opened), channels, length)
                for i, (item, block) in enumerate(zip(opened, blocks)):
                    if block is None:
                        continue
                    ensure_finite(block, f"{item.path} (around {read / rate:.1f} s)")
                    peaks[i] = max(peaks[i], float(block.abs().max()))
                    stacked[i, :, : block.shape[-1]] = convert_channels(block, channels)
                read += length
                sink.write(pipeline.push(stacked))
                if progress_bar is not None:
                    progress_bar.update(length)
            _check_silence(opened, peaks)
            # Drain the input resampler, then the overlap-add engine, then the output resampler.
            sink.write(pipeline.push(torch.zeros(len(opened), channels, 0), last=True))
            sink.finish(pipeline.out_shape)
    finally:
        if progress_bar is not None:
            progress_bar.close()
    return outputs


def _check_silence(opened: Sequence[_Input], peaks: Sequence[float]) -> None:
    silent = [item.path for item, peak in zip(opened, peaks) if peak == 0.0]
    if len(silent) == len(opened):
        what = f"{opened[0].path}: the recording is"
        if len(opened) > 1:
            what = f"{opened[0].path} and the other inputs: all"
        raise AudioError(f"{what} silent (all samples are zero)")
    if silent:
        warnings.warn(f"silent inputs (all samples are zero): {', '.join(map(str, silent))}", UserWarning, stacklevel=3)


def _mixture_model(model: ModelFn, model_channels: int, separator: bool) -> ModelFn:
    """Wrap a denoiser or separator for :func:`process_files`: ``(batch, n_in, channels, t)`` in, the inputs
    summed into one mixture (one input: itself), channels mapped by :func:`_channel_fn`; out
    ``(batch, 1, channels, t)`` (denoiser) or ``(batch, stems, channels, t)`` (separator)."""
    holder: List[ModelFn] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        mixture = x[:, 0] if x.shape[1] == 1 else x.sum(dim=1)
        if not holder:  # the channel mapping is built once the files' channel count is known
            holder.append(_channel_fn(model, model_channels, mixture.shape[1]))
        y = holder[0](mixture)
        if separator:
            if y.dim() != 4 or y.shape[0] != mixture.shape[0] or y.shape[2:] != mixture.shape[1:]:
                raise RuntimeError(
                    f"separator returned {tuple(y.shape)} for input {tuple(mixture.shape)}; "
                    "expected (batch, stems, channels, time)"
                )
            return y
        if y.shape != mixture.shape:
            raise RuntimeError(f"model returned {tuple(y.shape)} for input {tuple(mixture.shape)}")
        return y.unsqueeze(1)

    return run


def process_file(
    model: ModelFn,
    input_path: PathLike,
    output_path: PathLike,
    model_sample_rate: int,
    model_channels: int,
    **options: Any,
) -> Path:
    """Stream ``input_path`` through ``model`` into ``output_path`` at the input's rate and channel count.

    ``model`` maps ``(batch, model_channels, time)`` to the same shape; a file with another channel count
    goes through the grouping / up-mix rule of :func:`_channel_fn`. The output is written to a temporary
    file beside ``output_path`` and renamed only when everything succeeded: on any error (NaN samples
    found mid-file, a silent file, Ctrl-C) nothing is left behind.

    Args:
        options: keyword arguments of :func:`process_files` (segment, overlap, batch_size, device,
            block_seconds, min_seconds, resample_input, progress, subtype, shifts, seed).

    Raises:
        AudioError: unreadable, too short, silent or non-finite input; a rate mismatch with
            ``resample_input=False``; ``output_path`` is ``input_path``.
    """
    if options.get("device") is None:
        options["device"] = _model_device(model)
    wrapped = _mixture_model(model, model_channels, separator=False)
    return process_files(wrapped, [input_path], [output_path], model_sample_rate, None, None, **options)[0]


def separate_file(
    model: ModelFn,
    input_path: Union[PathLike, Sequence[PathLike]],
    outputs: Sequence[PathLike],
    model_sample_rate: int,
    model_channels: int,
    **options: Any,
) -> List[Path]:
    """Separate one mixture file into ``len(outputs)`` stem files, streaming, in constant memory.

    Each stem is written at the input's rate and with its channel count; a file whose channel count
    differs from the model's goes through the grouping / up-mix rule of :func:`_channel_fn`. All stems
    appear only when everything succeeded.

    Args:
        model: ``(batch, model_channels, time) -> (batch, stems, model_channels, time)``,
            ``stems == len(outputs)``.
        input_path: the mixture (any format :func:`~musicfx.audio.io.read_audio` reads), or several
            files whose sum is the mixture (a song's stems, as MUSDB18-HQ folders without mixture.wav).
        outputs: one path per stem, in the model's stem order.
        model_sample_rate, model_channels: what the model expects.
        options: keyword arguments of :func:`process_files`.

    Returns:
        ``outputs`` as paths.
    """
    if options.get("device") is None:
        options["device"] = _model_device(model)
    inputs = [input_path] if isinstance(input_path, (str, Path)) else list(input_path)
    wrapped = _mixture_model(model, model_channels, separator=True)
    return process_files(wrapped, inputs, list(outputs), model_sample_rate, None, None, **options)


def separate_to_stem_file(
    model: ModelFn,
    input_path: PathLike,
    output: PathLike,
    names: Sequence[str],
    model_sample_rate: int,
    model_channels: int,
    bitrate: int = 256000,
    **options: Any,
) -> Path:
    """Separate one mixture into a ``.stem.mp4`` (the input as stream 0, then the stems), streaming.

    The stems are separated into float wavs in a hidden folder beside ``output`` and muxed with the input
    by :func:`mux_stem_file`; nothing is read whole, so memory does not grow with the length.

    Args:
        model, model_sample_rate, model_channels, options: as for :func:`separate_file`.
        input_path: the mixture, mono or stereo.
        output: the ``.stem.mp4`` to write (atomically).
        names: the stems' names, in the model's order.
        bitrate: AAC bits per second per stream.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=str(output.parent), prefix=".musicfx-") as folder:
        stems = [Path(folder) / f"{index}.wav" for index in range(len(names))]
        separate_file(model, input_path, stems, model_sample_rate, model_channels, **options)
        return mux_stem_file(output, input_path, stems, names, bitrate)


def _require_ffmpeg_for(path: Path) -> None:
    from musicfx.audio.io import ffmpeg_available

    if not ffmpeg_available():
        raise MissingDependencyError(
            f"{path}: writing .stem.mp4 needs ffmpeg and ffprobe on PATH "
            "(Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg)"
        )


def mux_stem_file(
    path: PathLike, mixture: PathLike, stems: Sequence[PathLike], names: Sequence[str], bitrate: int = 256000
) -> Path:
    """Encode a mixture file and stem files into one multi-stream ``.stem.mp4`` (AAC), atomically.

    Stream 0 is the mixture and streams ``1..S`` the stems, each titled with its name, the layout MUSDB18
    and :func:`~musicfx.audio.io.read_stems` use. ffmpeg reads the files as it encodes, so memory does not
    depend on their length. The files must share one sample rate and be mono or stereo; a ``.stem.mp4``
    mixture contributes its first stream.

    Args:
        path: the file to write (``.stem.mp4`` or ``.mp4``).
        mixture: the mixture file; stems: one file per stem; names: one name per stem.
        bitrate: AAC bits per second per stream.

    Raises:
        MissingDependencyError: ffmpeg is not installed.
        AudioError: more than two channels, or an encoder failure.
    """
    from musicfx.audio.io import audio_info

    path, sources = Path(path), [Path(mixture)] + [Path(stem) for stem in stems]
    if len(names) != len(stems):
        raise ValueError(f"got {len(names)} names for {len(stems)} stems")
    _require_ffmpeg_for(path)
    for source in sources:
        channels = audio_info(source).channels
        if channels > 2:
            raise AudioError(f"{source}: .stem.mp4 holds mono or stereo streams, not {channels} channels")
    command = ["ffmpeg", "-nostdin", "-y", "-loglevel", "error"]
    for source in sources:
        command += ["-i", str(source)]
    for index, name in enumerate(["mixture", *names]):
        command += ["-map", f"{index}:a:0"]
        for key in ("title", "handler", "handler_name"):  # players and ffmpeg versions read different tags
            command += [f"-metadata:s:a:{index}", f"{key}={name}"]
    command += ["-vn", "-c:a", "aac", "-b:a", str(int(bitrate)), "-f", "mp4"]
    with atomic_path(path) as tmp:
        try:
            subprocess.run(command + [tmp], check=True, capture_output=True)
        except subprocess.CalledProcessError as error:
            text = error.stderr.decode(errors="replace").strip().splitlines()
            raise AudioError(f"{path}: cannot encode stems ({text[-1] if text else error})") from None
    return path


def write_stem_file(
    path: PathLike,
    mix: torch.Tensor,
    stems: torch.Tensor,
    sample_rate: int,
    names: Sequence[str],
    bitrate: int = 256000,
) -> Path:
    """Write a mixture and its stems held in memory as one ``.stem.mp4`` (:func:`mux_stem_file`).

    Args:
        path: the file to write (``.stem.mp4`` or ``.mp4``).
        mix: ``(channels, time)``, mono or stereo.
        stems: ``(stems, channels, time)``.
        sample_rate: of both.
        names: one name per stem.
        bitrate: AAC bits per second per stream.

    Raises:
        MissingDependencyError: ffmpeg is not installed.
        AudioError: non-finite audio, more than two channels, or an encoder failure.
    """
    from musicfx.audio.io import write_audio

    path = Path(path)
    if stems.dim() != 3 or mix.dim() != 2 or stems.shape[1:] != mix.shape:
        raise ValueError(f"expected mix (channels, time) and stems (stems, channels, time), got "
                         f"{tuple(mix.shape)} and {tuple(stems.shape)}")
    if len(names) != stems.shape[0]:
        raise ValueError(f"got {len(names)} names for {stems.shape[0]} stems")
    if mix.shape[0] > 2:
        raise AudioError(f"{path}: .stem.mp4 holds mono or stereo streams, not {mix.shape[0]} channels")
    _require_ffmpeg_for(path)
    data = torch.cat([mix.unsqueeze(0), stems], dim=0).detach().to("cpu", torch.float32)
    ensure_finite(data, f"audio for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=str(path.parent), prefix=".musicfx-") as folder:
        files = [write_audio(Path(folder) / f"{index}.wav", audio, sample_rate) for index, audio in enumerate(data)]
        return mux_stem_file(path, files[0], files[1:], names, bitrate)


def _read_blocks(path: Path, block_frames: int) -> Iterator[torch.Tensor]:
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                data = f.read(block_frames, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    return
                yield torch.from_numpy(np.ascontiguousarray(data.T))
    except sf.LibsndfileError as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from None
