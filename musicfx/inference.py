"""Chunked overlap-add inference over recordings of any length, in constant memory.

:class:`OverlapAdd` is the one streaming core: push audio in blocks, get finished audio out; segments
overlap and are cross-faded with windows whose overlapping parts sum to one, so an identity model gives
back the input exactly and a real model leaves no seams. :func:`apply_model` runs it over a tensor;
:func:`process_file` streams a file through it (decode -> resample -> model -> resample -> encode) so
memory does not grow with the file's length.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, List, Optional

import numpy as np
import torch

from musicfx.audio.io import atomic_path, convert_channels, ensure_finite
from musicfx.errors import AudioError

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
    """Streaming overlap-add of a model over ``(channels, time)`` audio.

    Segments start every ``hop = segment - overlap`` samples. Each is faded in over its first ``overlap``
    samples (except the very first) and out over its last (except the final one), with complementary
    raised-cosine ramps, so the cross-faded sum has unit gain everywhere.

    Args:
        fn: model ``(batch, channels, segment) -> (batch, channels, segment)``.
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
        self.frames_in = 0
        self.frames_out = 0

    def _run(self, segments: List[torch.Tensor]) -> torch.Tensor:
        batch = torch.stack(segments).to(self.device)
        with torch.inference_mode():
            out = self.fn(batch)
        if out.shape != batch.shape:
            raise RuntimeError(f"model returned {tuple(out.shape)} for input {tuple(batch.shape)}")
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
                out[:, : self.overlap] += self._tail
            if last:
                pieces.append(out)
                self._tail = None
            else:
                pieces.append(out[:, : self.hop])
                self._tail = out[:, self.hop :]
        return torch.cat(pieces, dim=-1)

    def _process(self, segments: List[torch.Tensor], final: bool) -> List[torch.Tensor]:
        finished = []
        for i in range(0, len(segments), self.batch_size):
            batch = segments[i : i + self.batch_size]
            finished.append(self._emit(self._run(batch), final and i + self.batch_size >= len(segments)))
        return finished

    def push(self, block: torch.Tensor) -> torch.Tensor:
        """Feed ``(channels, n)`` samples; returns the finished samples ``(channels, m)``, maybe ``m = 0``."""
        self.frames_in += block.shape[-1]
        self._buffer = block if self._buffer is None else torch.cat([self._buffer, block], dim=-1)
        segments = []
        while self._buffer.shape[-1] >= self.segment:
            segments.append(self._buffer[:, : self.segment])
            self._buffer = self._buffer[:, self.hop :]
        out = self._process(segments, final=False)
        return self._count(out, block.shape[0])

    def flush(self) -> torch.Tensor:
        """Process what is left (zero-padded to a segment) and return the rest of the output."""
        if self._buffer is None:
            return torch.zeros(1, 0)
        channels = self._buffer.shape[0]
        left = self.frames_in - self.frames_out
        out: List[torch.Tensor] = []
        if left > 0:
            rest = self._buffer
            padded = torch.nn.functional.pad(rest, (0, self.segment - rest.shape[-1]))
            out = self._process([padded], final=True)
        self._tail = None
        result = torch.cat(out, dim=-1)[:, :left] if out else torch.zeros(channels, 0)
        self._buffer = None
        return self._count([result], channels)

    def _count(self, pieces: List[torch.Tensor], channels: int) -> torch.Tensor:
        out = torch.cat(pieces, dim=-1) if pieces else torch.zeros(channels, 0)
        self.frames_out += out.shape[-1]
        return out


def _channel_fn(fn: ModelFn, model_channels: int, file_channels: int) -> ModelFn:
    """Wrap ``fn`` so it takes ``(n, file_channels, t)`` and returns the same shape.

    A file with fewer channels than the model (mono into a stereo model) is duplicated up and the output
    averaged back. A file with more channels runs in groups of ``model_channels`` as separate examples —
    a mono model denoises each channel on its own, a stereo model takes channels (1, 2), (3, 4), ... and
    an odd last channel is paired with itself.
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
        y = fn(x[:, index].reshape(n * groups, model_channels, t)).reshape(n, groups * model_channels, t)
        return y[:, :file_channels]

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
        model: ``(batch, model_channels, time) -> (batch, model_channels, time)``.
        audio: ``(channels, time)`` or ``(time,)`` at ``sample_rate``.
        segment: seconds per model call; overlap: fraction of ``segment`` cross-faded.

    Returns:
        ``audio``'s shape, at ``sample_rate``.
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
    y = torch.cat(outs, dim=-1)[:, : x.shape[-1]]
    y = resample(y, model_sample_rate, sample_rate)[:, : audio.shape[-1]]
    if y.shape[-1] < audio.shape[-1]:
        y = torch.nn.functional.pad(y, (0, audio.shape[-1] - y.shape[-1]))
    return y[0] if squeeze else y


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
        return torch.from_numpy(np.ascontiguousarray(out.T)).reshape(block.shape[0], -1)


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

    The output is written to a temporary file beside ``output_path`` and renamed only when everything
    succeeded: on any error (NaN samples found mid-file, a silent file, Ctrl-C) nothing is left behind.

    Raises:
        AudioError: unreadable, too short, silent or non-finite input; a rate mismatch with
            ``resample_input=False``.
    """
    import soundfile as sf

    from musicfx.audio.io import _format_for, audio_info, is_stem_file, read_audio

    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.resolve() == input_path.resolve():
        raise AudioError(f"{output_path}: output is the input file; refusing to overwrite it")
    device = device or _model_device(model)
    blocks: Iterator[torch.Tensor]
    if is_stem_file(input_path):
        # Stems decode whole through ffmpeg (and the header's length is off by the AAC padding).
        audio, rate = read_audio(input_path)
        channels, frames = audio.shape
        blocks = iter([audio])
    else:
        info = audio_info(input_path)
        rate, frames, channels = info.sample_rate, info.frames, info.channels
        blocks = _read_blocks(input_path, int(block_seconds * rate))
    if frames < min_seconds * rate:
        raise AudioError(f"{input_path}: {frames / rate:.3f} s is too short (at least {min_seconds} s needed)")
    if rate != model_sample_rate and not resample_input:
        raise AudioError(
            f"{input_path}: sample rate {rate} Hz differs from the model's {model_sample_rate} Hz "
            "(drop --no-resample to resample automatically)"
        )
    seg = int(round(segment * model_sample_rate))
    engine = OverlapAdd(
        _channel_fn(model, model_channels, channels), seg, min(int(round(overlap * seg)), seg // 2), batch_size, device
    )
    to_model = _StreamResampler(rate, model_sample_rate, channels)
    from_model = _StreamResampler(model_sample_rate, rate, channels)
    progress_bar = None
    if progress:
        from tqdm.auto import tqdm

        progress_bar = tqdm(total=frames, unit="frame", unit_scale=True, desc=input_path.name, leave=False)
    format_ = _format_for(output_path)
    if subtype is None and format_ == "WAV":
        subtype = "FLOAT"
    written = 0
    peak = 0.0
    try:
        with atomic_path(output_path) as tmp, sf.SoundFile(
            tmp, "w", samplerate=rate, channels=channels, format=format_, subtype=subtype
        ) as out:

            def write(block: torch.Tensor) -> None:
                nonlocal written
                block = block[:, : frames - written]
                if block.shape[-1]:
                    out.write(block.numpy().T)
                    written += block.shape[-1]

            read = 0
            for block in blocks:
                ensure_finite(block, f"{input_path} (around {read / rate:.1f} s)")
                peak = max(peak, float(block.abs().max()))
                read += block.shape[-1]
                write(from_model(engine.push(to_model(block))))
                if progress_bar is not None:
                    progress_bar.update(block.shape[-1])
            if peak == 0.0:
                raise AudioError(f"{input_path}: the recording is silent (all samples are zero)")
            # Drain the input resampler, then the overlap-add engine, then the output resampler.
            tail = engine.push(to_model(torch.zeros(channels, 0), last=True))
            tail = torch.cat([tail, engine.flush()], dim=-1)
            write(from_model(tail, last=True))
            if written < frames:
                out.write(np.zeros((frames - written, channels), dtype=np.float32))
    finally:
        if progress_bar is not None:
            progress_bar.close()
    return output_path


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

