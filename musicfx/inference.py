"""Chunked overlap-add inference over recordings of any length, in constant memory.

:class:`OverlapAdd` is the one streaming core: push audio in blocks, get finished audio out; segments
overlap and are cross-faded with windows whose overlapping parts sum to one, so an identity model gives
back the input exactly and a real model leaves no seams. The model may return extra leading dimensions
(a separator turns ``(channels, time)`` into ``(stems, channels, time)``).

* :func:`apply_model` runs it over a tensor in memory;
* :func:`process_files` streams several files in lockstep through one model into several files
  (debleed: M tracks -> M tracks; automix: S stems -> 1 mix) so memory does not grow with length;
* :func:`process_file` (one file -> one file, e.g. denoise) and :func:`separate_file` (one mix ->
  S stem files) are its common cases;
* :func:`write_stem_file` writes a mixture and its stems as one ``.stem.mp4``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from musicfx.audio.io import atomic_path, convert_channels, ensure_finite
from musicfx.errors import AudioError, MissingDependencyError

ModelFn = Callable[[torch.Tensor], torch.Tensor]


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
) -> torch.Tensor:
    """Run a waveform model over a whole recording with overlap-add.

    Args:
        model: ``(batch, model_channels, time) -> (batch, model_channels, time)`` (a denoiser) or
            ``-> (batch, stems, model_channels, time)`` (a separator).
        audio: ``(channels, time)`` or ``(time,)`` at ``sample_rate``.
        segment: seconds per model call; overlap: fraction of ``segment`` cross-faded.

    Returns:
        ``audio``'s shape for a denoiser, ``(stems, *audio.shape)`` for a separator; at ``sample_rate``.
    """
    from musicfx.audio.io import resample

    squeeze = audio.dim() == 1
    if squeeze:
        audio = audio.unsqueeze(0)
    ensure_finite(audio, "input audio")
    device = device or _model_device(model)
    x = resample(audio.float().cpu(), sample_rate, model_sample_rate)
    seg = max(1, min(int(round(segment * model_sample_rate)), x.shape[-1]))
    engine = OverlapAdd(
        _channel_fn(model, model_channels, x.shape[0]), seg, min(int(round(overlap * seg)), seg // 2), batch_size, device
    )
    outs = []
    hop = seg * 4
    iterator = range(0, x.shape[-1], hop)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, unit="block", desc="processing")
    for start in iterator:
        outs.append(engine.push(x[:, start : start + hop]))
    outs.append(engine.flush())
    # Results from before the first model call are empty and shaped like the input: leave them out.
    y = torch.cat([out for out in outs if out.shape[-1]], dim=-1)[..., : x.shape[-1]]
    y = resample(y, model_sample_rate, sample_rate)[..., : audio.shape[-1]]
    if y.shape[-1] < audio.shape[-1]:
        y = torch.nn.functional.pad(y, (0, audio.shape[-1] - y.shape[-1]))
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
    """One input file read in blocks of ``(channels, n)`` at its own rate; decoded whole for stem files."""

    def __init__(self, path: Path) -> None:
        from musicfx.audio.io import audio_info, is_stem_file, read_audio

        self.path = path
        self._audio: Optional[torch.Tensor] = None
        if is_stem_file(path):
            # Stems decode whole through ffmpeg (and the header's length is off by the AAC padding).
            self._audio, self.rate = read_audio(path)
            self.channels, self.frames = self._audio.shape
        else:
            info = audio_info(path)
            self.rate, self.frames, self.channels = info.sample_rate, info.frames, info.channels

    def blocks(self, block_frames: int) -> Iterator[torch.Tensor]:
        if self._audio is not None:
            audio, self._audio = self._audio, None  # the iterator holds the only reference
            for start in range(0, audio.shape[-1], block_frames):
                yield audio[:, start : start + block_frames]
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

    def write(self, block: torch.Tensor) -> None:
        """Write ``(outputs, channels, n)``, cut at the longest input's length."""
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
    inputs: Sequence[Path],
    outputs: Sequence[Path],
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
) -> List[Path]:
    """Stream several files in lockstep through one model into several files.

    The inputs are read block by block together, converted to ``input_channels`` each, stacked to
    ``(n_in, C_in, time)``, resampled to the model's rate and run in overlapping segments; the ``n_out``
    outputs are resampled back and written at the inputs' rate. Memory is bound by ``block_seconds`` and
    ``segment``, not by the files' length. All outputs are written to temporary files beside their
    targets and renamed only when everything succeeded: on any error (NaN samples mid-file, a silent
    recording, Ctrl-C) none is left behind.

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
        segment: seconds per model call; overlap: fraction of ``segment`` cross-faded.
        batch_size: segments per model call; device: where the model runs.
        block_seconds: seconds read from each input at a time.
        min_seconds: shortest input accepted.
        progress: show a progress bar; subtype: soundfile subtype (default ``FLOAT`` for wav).

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
    device = device or _model_device(model)
    opened = _open_inputs(inputs, min_seconds)
    rate = opened[0].rate
    frames = max(item.frames for item in opened)
    if rate != model_sample_rate and not resample_input:
        raise AudioError(
            f"{inputs[0]}: sample rate {rate} Hz differs from the model's {model_sample_rate} Hz "
            "(drop --no-resample to resample automatically)"
        )
    channels = _input_channels(opened, input_channels)
    seg = int(round(segment * model_sample_rate))
    engine = OverlapAdd(model, seg, min(int(round(overlap * seg)), seg // 2), batch_size, device)
    to_model = _StreamResampler(rate, model_sample_rate, len(opened) * channels)
    from_model: Optional[_StreamResampler] = None
    progress_bar = None
    if progress:
        from tqdm.auto import tqdm

        name = inputs[0].name if len(inputs) == 1 else f"{inputs[0].name} (+{len(inputs) - 1})"
        progress_bar = tqdm(total=frames, unit="frame", unit_scale=True, desc=name, leave=False)

    def through_model(stacked: torch.Tensor, last: bool = False) -> torch.Tensor:
        """``(n_in, C_in, n)`` at the files' rate -> ``(n_out, C_out, m)`` back at the files' rate."""
        nonlocal from_model
        n_in, c_in, n = stacked.shape
        x = to_model(stacked.reshape(n_in * c_in, n), last=last)
        y = engine.push(x.reshape(n_in, c_in, x.shape[-1]))
        if last:
            y = torch.cat([y, engine.flush()], dim=-1) if y.shape[-1] else engine.flush()
        if engine.out_shape is None:
            return y[:0]  # nothing finished yet; the output's shape is not known
        if from_model is None:
            from_model = _StreamResampler(model_sample_rate, rate, int(np.prod(engine.out_shape)))
        y = from_model(y.reshape(int(np.prod(engine.out_shape)), y.shape[-1]), last=last)
        return y.reshape(*engine.out_shape, y.shape[-1])

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
                sink.write(through_model(stacked))
                if progress_bar is not None:
                    progress_bar.update(length)
            _check_silence(opened, peaks)
            # Drain the input resampler, then the overlap-add engine, then the output resampler.
            sink.write(through_model(torch.zeros(len(opened), channels, 0), last=True))
            sink.finish(engine.out_shape)
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


def process_file(
    model: ModelFn,
    input_path: Path,
    output_path: Path,
    model_sample_rate: int,
    model_channels: int,
    segment: float = 10.0,
    overlap: float = 0.25,
    batch_size: int = 1,
    device: Optional[torch.device] = None,
    block_seconds: float = 30.0,
    min_seconds: float = 0.05,
    resample_input: bool = True,
    progress: bool = True,
    subtype: Optional[str] = None,
) -> Path:
    """Stream ``input_path`` through ``model`` into ``output_path`` at the input's rate and channel count.

    ``model`` maps ``(batch, model_channels, time)`` to the same shape; a file with another channel count
    goes through the grouping / up-mix rule of :func:`apply_model`. The output is written to a temporary
    file beside ``output_path`` and renamed only when everything succeeded: on any error (NaN samples
    found mid-file, a silent file, Ctrl-C) nothing is left behind. See :func:`process_files`.

    Raises:
        AudioError: unreadable, too short, silent or non-finite input; a rate mismatch with
            ``resample_input=False``.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.resolve() == input_path.resolve():
        raise AudioError(f"{output_path}: output is the input file; refusing to overwrite it")
    holder: List[ModelFn] = []

    def single(x: torch.Tensor) -> torch.Tensor:
        # (batch, 1, channels, t): the channel mapping is built once the file's channel count is known.
        if not holder:
            holder.append(_channel_fn(model, model_channels, x.shape[2]))
        y = holder[0](x[:, 0])
        if y.shape != x[:, 0].shape:
            raise RuntimeError(f"model returned {tuple(y.shape)} for input {tuple(x[:, 0].shape)}")
        return y.unsqueeze(1)

    device = device or _model_device(model)
    return process_files(
        single, [input_path], [output_path], model_sample_rate, None, None, segment, overlap, batch_size,
        device, block_seconds, min_seconds, resample_input, progress, subtype,
    )[0]


def separate_file(
    model: ModelFn,
    input_path: Path,
    outputs: Sequence[Path],
    model_sample_rate: int,
    model_channels: int,
    segment: float = 10.0,
    overlap: float = 0.25,
    batch_size: int = 1,
    device: Optional[torch.device] = None,
    block_seconds: float = 30.0,
    min_seconds: float = 0.05,
    resample_input: bool = True,
    progress: bool = True,
    subtype: Optional[str] = None,
) -> List[Path]:
    """Separate one mixture file into ``len(outputs)`` stem files, streaming, in constant memory.

    Each stem is written at the input's rate and with its channel count; a file whose channel count
    differs from the model's goes through the grouping / up-mix rule of :func:`apply_model`. All stems
    appear only when everything succeeded.

    Args:
        model: ``(batch, model_channels, time) -> (batch, stems, model_channels, time)``,
            ``stems == len(outputs)``.
        input_path: the mixture (any format :func:`~musicfx.audio.io.read_audio` reads).
        outputs: one path per stem, in the model's stem order.
        model_sample_rate, model_channels: what the model expects.
        others: as for :func:`process_files`.

    Returns:
        ``outputs`` as paths.
    """
    holder: List[ModelFn] = []

    def separator(x: torch.Tensor) -> torch.Tensor:
        # (batch, 1, channels, t) -> (batch, stems, channels, t)
        if not holder:
            holder.append(_channel_fn(model, model_channels, x.shape[2]))
        y = holder[0](x[:, 0])
        if y.dim() != 4 or y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
            raise RuntimeError(
                f"separator returned {tuple(y.shape)} for input {tuple(x[:, 0].shape)}; "
                "expected (batch, stems, channels, time)"
            )
        return y

    device = device or _model_device(model)
    return process_files(
        separator, [Path(input_path)], list(outputs), model_sample_rate, None, None, segment, overlap,
        batch_size, device, block_seconds, min_seconds, resample_input, progress, subtype,
    )


def write_stem_file(
    path: Path,
    mix: torch.Tensor,
    stems: torch.Tensor,
    sample_rate: int,
    names: Sequence[str],
    bitrate: int = 256000,
) -> Path:
    """Write a mixture and its stems as one multi-stream ``.stem.mp4`` (AAC), atomically.

    Stream 0 is the mixture and streams ``1..S`` the stems, each titled with its name, the layout
    MUSDB18 and :func:`~musicfx.audio.io.read_stems` use. Samples beyond ``[-1, 1]`` clip (stempeg
    encodes through 16-bit PCM).

    Args:
        path: the file to write (``.stem.mp4`` or ``.mp4``).
        mix: ``(channels, time)``, mono or stereo.
        stems: ``(stems, channels, time)``.
        sample_rate: of both.
        names: one name per stem.
        bitrate: AAC bits per second per stream.

    Raises:
        MissingDependencyError: ffmpeg or stempeg is not installed.
        AudioError: non-finite audio, more than two channels, or an encoder failure.
    """
    from musicfx.audio.io import ffmpeg_available

    path = Path(path)
    if stems.dim() != 3 or mix.dim() != 2 or stems.shape[1:] != mix.shape:
        raise ValueError(f"expected mix (channels, time) and stems (stems, channels, time), got "
                         f"{tuple(mix.shape)} and {tuple(stems.shape)}")
    if len(names) != stems.shape[0]:
        raise ValueError(f"got {len(names)} names for {stems.shape[0]} stems")
    if mix.shape[0] > 2:
        raise AudioError(f"{path}: .stem.mp4 holds mono or stereo streams, not {mix.shape[0]} channels")
    if not ffmpeg_available():
        raise MissingDependencyError(
            f"{path}: writing .stem.mp4 needs ffmpeg and ffprobe on PATH "
            "(Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg)"
        )
    try:
        import stempeg
    except ImportError:
        raise MissingDependencyError("writing .stem.mp4 needs stempeg: pip install 'musicfx[musdb]'") from None
    data = torch.cat([mix.unsqueeze(0), stems], dim=0).detach().to("cpu", torch.float32)
    ensure_finite(data, f"audio for {path}")
    array = np.ascontiguousarray(data.numpy().transpose(0, 2, 1))  # stempeg: (streams, time, channels)
    writer = stempeg.StreamsWriter(codec="aac", bitrate=bitrate, stem_names=["mixture", *names])
    with atomic_path(path) as tmp:
        # ffmpeg picks the container from the extension, which the atomic temporary name lacks.
        with tempfile.TemporaryDirectory(dir=str(path.parent), prefix=".musicfx-") as folder:
            target = os.path.join(folder, "stems.mp4")
            try:
                stempeg.write_stems(target, array, sample_rate=int(sample_rate), writer=writer)
            except (RuntimeError, OSError) as error:
                raise AudioError(f"{path}: cannot encode stems ({error})") from None
            os.replace(target, tmp)
    return path


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
