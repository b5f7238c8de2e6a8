"""Mixing a song's stem files into a peak-safe stereo mix: the library behind ``musicfx mix``.

* :func:`find_stems` matches a folder's files to stem names;
* :func:`model_mixer` / :func:`sum_mixer` wrap an automix model (or the plain sum) for the engine;
* :func:`write_mix` streams stem files through a mixer (:func:`musicfx.inference.process_files`: any
  length, constant memory) into a file whose sample peak is at most a ceiling, scaled by one gain;
* :class:`ParameterAverage` averages a console model's per-segment settings over a song;
* :func:`normalize_stem_files` FxNorm-normalizes stem files before mixing.
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from musicfx.errors import AudioError, MusicfxError

if TYPE_CHECKING:  # torch and numpy are imported where used, so `musicfx --help` stays light
    import numpy as np
    import torch

#: Default ceiling of the output's sample peak, dBFS. -0.3 dB is the usual mastering ceiling for
#: sample peaks: it keeps the overshoot between samples that a player's reconstruction filter (or a
#: later resampling) adds to most material, and the rounding of 16/24-bit output, below full scale, for
#: a level loss nobody hears. It is not a true-peak limit: for lossy encoding or broadcast (EBU R128:
#: -1 dBTP) pass ``--ceiling-db -1``.
CEILING_DB = -0.3
#: Seconds of audio read at a time when measuring and copying the finished mix.
BLOCK_SECONDS = 30.0


# ------------------------------------------------------------------------------------------------ stems
@dataclass
class StemFiles:
    """What a stems folder holds, matched against the expected stem names.

    Attributes:
        found: stem name -> file, in the expected order.
        missing: expected stems with no file.
        unknown: audio files that are no expected stem.
    """

    found: Dict[str, Path] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)
    unknown: List[Path] = field(default_factory=list)


def find_stems(folder: Path, stems: Sequence[str], exclude: Sequence[Path] = ()) -> StemFiles:
    """Match the audio files directly in ``folder`` to ``stems`` by file name, ignoring case.

    Args:
        folder: the song's stems folder (not searched recursively; hidden files are skipped).
        stems: expected stem names, e.g. a checkpoint's ``task.stems``.
        exclude: files to leave out (the outputs, when they are written into the folder: an earlier mix);
            an excluded file that is one of the stems is an error, since an output never replaces an input.

    Returns:
        :class:`StemFiles`.

    Raises:
        MusicfxError: ``folder`` is not a folder, holds two files for one stem, or none of the stems.
        AudioError: an excluded file (an output) is one of the stems.
    """
    from musicfx.audio.io import AUDIO_EXTENSIONS

    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "no such folder"
        raise MusicfxError(f"{folder}: {what} (STEMS_DIR is the folder holding {', '.join(stem_file_names(stems))})")
    excluded = {path.resolve() for path in exclude}
    wanted = {name.lower(): name for name in stems}
    result = StemFiles()
    candidates: Dict[str, List[Path]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or not path.name.lower().endswith(AUDIO_EXTENSIONS):
            continue
        name = path.name[: -len(path.suffix)].lower()
        if path.resolve() in excluded:
            if name in wanted:
                raise AudioError(f"{path}: output would overwrite the input stem {wanted[name]}; choose another -o")
            continue
        if name in wanted:
            candidates.setdefault(wanted[name], []).append(path)
        else:
            result.unknown.append(path)
    for name in stems:
        files = candidates.get(name, [])
        if len(files) > 1:
            names = ", ".join(path.name for path in files)
            raise MusicfxError(f"{folder}: {len(files)} files for the {name} stem ({names}); keep one")
        if files:
            result.found[name] = files[0]
        else:
            result.missing.append(name)
    if not result.found:
        raise MusicfxError(f"{folder}: holds none of the stems {', '.join(stem_file_names(stems))} "
                           "(any audio extension, case ignored)")
    return result


def stem_file_names(stems: Sequence[str]) -> List[str]:
    """The file names a message suggests for stems: ``vocals.wav``, ..."""
    return [f"{name}.wav" for name in stems]


# ------------------------------------------------------------------------------------------- parameters
class ParameterAverage:
    """Running average of per-segment console settings, weighted by each stem's level in the segment.

    The console model predicts settings for every segment it mixes, so they vary over a song. The summary
    is, per stem, the mean of its segments' settings weighted by the stem's RMS there: where a stem is
    silent its settings shape nothing audible and count for nothing. A stem silent everywhere (a missing
    stem) gets the plain mean.

    Args:
        num_stems: S.
    """

    def __init__(self, num_stems: int) -> None:
        self.num_stems = num_stems
        self.segments = 0
        self._weight: Optional["torch.Tensor"] = None
        self._weighted: Dict[str, "torch.Tensor"] = {}
        self._plain: Dict[str, "torch.Tensor"] = {}

    def add(self, params: Mapping[str, "torch.Tensor"], stems: "torch.Tensor") -> None:
        """Add a batch of segments.

        Args:
            params: settings ``(B, S)`` or ``(B, S, K)`` per key.
            stems: the segments' input stems ``(B, S, C, T)`` the settings were predicted from.
        """
        weights = stems.detach().double().square().mean(dim=(-2, -1)).sqrt().cpu()  # (B, S)
        total = weights.sum(0)
        self._weight = total if self._weight is None else self._weight + total
        for key, value in params.items():
            value = value.detach().double().cpu()
            w = weights.reshape(weights.shape + (1,) * (value.dim() - 2))
            weighted, plain = (w * value).sum(0), value.sum(0)
            if key in self._weighted:
                weighted, plain = weighted + self._weighted[key], plain + self._plain[key]
            self._weighted[key], self._plain[key] = weighted, plain
        self.segments += int(stems.shape[0])

    def mean(self) -> Dict[str, "torch.Tensor"]:
        """The averaged settings with a batch dimension of one: ``(1, S)`` / ``(1, S, K)`` float32."""
        import torch

        if self._weight is None:
            raise ValueError("no segment was added")
        out = {}
        for key, weighted in self._weighted.items():
            w = self._weight.reshape(self._weight.shape + (1,) * (weighted.dim() - 1))
            plain = self._plain[key] / self.segments
            out[key] = torch.where(w > 0, weighted / w.clamp_min(1e-30), plain).float().unsqueeze(0)
        return out


# --------------------------------------------------------------------------------------------- mixing
ModelFn = Callable[["torch.Tensor"], "torch.Tensor"]


def model_mixer(
    model: "torch.nn.Module", slots: Sequence[int], num_stems: int, average: Optional[ParameterAverage] = None
) -> ModelFn:
    """Wrap an automix model for :func:`~musicfx.inference.process_files` (S stem files -> one mix file).

    Args:
        model: ``(B, num_stems, C, T) -> (B, 2, T)``; with ``average``, a model with ``predict_parameters``
            and ``mix`` (its settings are recorded as it mixes, at no extra cost).
        slots: the model's stem index of each input file, in the files' order; the other slots get silence.
        num_stems: the model's stem count.
        average: where to record the console settings of every segment.

    Returns:
        ``(B, len(slots), C, T) -> (B, 1, 2, T)``.
    """
    index = list(slots)

    def mix(x: "torch.Tensor") -> "torch.Tensor":
        full = x.new_zeros(x.shape[0], num_stems, *x.shape[2:])
        full[:, index] = x
        if average is not None:
            params = model.predict_parameters(full)
            average.add(params, full)
            y = model.mix(full, params)
        else:
            y = model(full)
        if y.dim() != 3 or y.shape[1] != 2:
            raise RuntimeError(f"automix model returned {tuple(y.shape)}; expected (batch, 2, time)")
        return y.unsqueeze(1)

    return mix


def sum_mixer(x: "torch.Tensor") -> "torch.Tensor":
    """FxNorm's baseline for :func:`~musicfx.inference.process_files`: ``(B, S, 2, T) -> (B, 1, 2, T)``."""
    return x.sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class MixReport:
    """What :func:`write_mix` did: the raw mix's sample peak and the gain applied (both dB; gain <= 0)."""

    peak_db: float
    gain_db: float


def _blocks(path: Path, frames: int) -> Iterator["np.ndarray"]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as handle:
        while True:
            block = handle.read(frames, dtype="float32", always_2d=True)
            if not len(block):
                return
            yield block


def file_peak(path: Path) -> float:
    """Largest absolute sample of an audio file, read block by block (constant memory)."""
    import soundfile as sf

    frames = int(BLOCK_SECONDS * sf.info(str(path)).samplerate)
    return max((float(abs(block).max()) for block in _blocks(path, frames)), default=0.0)


def copy_with_gain(source: Path, target: Path, gain: float, subtype: Optional[str] = None) -> Path:
    """Copy an audio file to ``target`` (any writable format) times ``gain``, atomically, block by block.

    Args:
        source: file to copy.
        target: written through a temporary file beside it, renamed when complete.
        gain: linear factor.
        subtype: soundfile subtype (default: ``FLOAT`` for WAV, the format's default otherwise).
    """
    import soundfile as sf

    from musicfx.audio.io import _format_for, atomic_path

    format_ = _format_for(target)
    if subtype is None and format_ == "WAV":
        subtype = "FLOAT"
    info = sf.info(str(source))
    with atomic_path(target) as tmp:
        with sf.SoundFile(tmp, "w", samplerate=info.samplerate, channels=info.channels, format=format_,
                          subtype=subtype) as out:
            for block in _blocks(source, int(BLOCK_SECONDS * info.samplerate)):
                out.write(block * gain if gain != 1.0 else block)
    return target


def ceiling_gain(peak: float, ceiling_db: float) -> float:
    """The linear gain that brings ``peak`` down to ``ceiling_db`` dBFS; 1 when it is already below."""
    ceiling = 10.0 ** (ceiling_db / 20.0)
    return 1.0 if peak <= ceiling else ceiling / peak


def write_mix(
    mixer: ModelFn,
    inputs: Sequence[Path],
    output: Path,
    model_sample_rate: int,
    input_channels: int,
    ceiling_db: float = CEILING_DB,
    subtype: Optional[str] = None,
    workdir: Optional[Path] = None,
    **process_kwargs: object,
) -> MixReport:
    """Mix stem files into one stereo file that peaks at most at ``ceiling_db`` dBFS.

    The raw mix is streamed into a float WAV in ``workdir`` (a temporary folder beside ``output`` by
    default), its peak is measured, and it is copied to ``output`` scaled by one gain when the peak is
    above the ceiling. ``output`` appears only complete; on any error nothing is left.

    Args:
        mixer: ``(B, len(inputs), input_channels, T) -> (B, 1, 2, T)`` (:func:`model_mixer`, :func:`sum_mixer`).
        inputs: stem files sharing one sample rate; the output has their rate and the longest one's length.
        output: the mix file.
        model_sample_rate: the rate ``mixer`` works at (inputs are resampled to it and back).
        input_channels: channels each input is converted to (mono stems are duplicated).
        ceiling_db: highest sample peak of the output, dBFS.
        subtype: soundfile subtype of ``output``.
        workdir: existing folder for the raw mix (must be on ``output``'s filesystem to avoid a copy).
        process_kwargs: passed to :func:`~musicfx.inference.process_files` (segment, overlap, batch_size,
            device, resample_input, progress).

    Returns:
        :class:`MixReport`.
    """
    import math

    from musicfx.inference import process_files

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(dir=str(output.parent), prefix=".musicfx-mix-")))
        raw = Path(workdir) / "raw_mix.wav"
        process_files(mixer, list(inputs), [raw], model_sample_rate, input_channels, 2, subtype="FLOAT",
                      **process_kwargs)
        peak = file_peak(raw)
        gain = ceiling_gain(peak, ceiling_db)
        copy_with_gain(raw, output, gain, subtype)
    to_db = lambda value: 20.0 * math.log10(value) if value > 0 else -math.inf  # noqa: E731
    return MixReport(peak_db=to_db(peak), gain_db=to_db(gain))


# ------------------------------------------------------------------------------------------ normalize
def normalize_stem_files(
    files: Mapping[str, Path],
    folder: Path,
    features: object,
    ir_folder: Optional[str] = None,
    progress: bool = True,
) -> Dict[str, Path]:
    """FxNorm-normalize stem files into ``folder`` (float WAV at the first file's rate).

    Each stem is read whole (normalization measures the whole stem: its average spectrum, onset levels,
    loudness), resampled to the features' rate, normalized toward the features of its stem name and
    resampled back.

    Args:
        files: stem name -> file; every name must have features.
        folder: where the normalized ``<stem>.wav`` files go.
        features: :class:`~musicfx.fxnorm.features.FxNormFeatures`.
        ir_folder: impulse responses for the reverb stage (``None``: no reverb stage).
        progress: show a progress bar over the stems.

    Returns:
        stem name -> normalized file.
    """
    from tqdm.auto import tqdm

    from musicfx.audio.io import audio_info, read_audio, resample, write_audio
    from musicfx.fxnorm.normalize import normalize_stem

    rate = audio_info(next(iter(files.values()))).sample_rate
    target_rate = features.config.sample_rate
    out: Dict[str, Path] = {}
    for stem, path in tqdm(list(files.items()), desc="fxnorm normalize", unit="stem", disable=not progress,
                           leave=False):
        audio, _ = read_audio(path, sample_rate=target_rate)
        # A song's stems get one seed (the reverb stage's choices), as `musicfx fxnorm normalize` does per song.
        normalized = normalize_stem(audio, stem, features, target_rate, ir_folder=ir_folder, seed=0)
        out[stem] = write_audio(folder / f"{stem}.wav", resample(normalized, target_rate, rate), rate)
    return out


def load_features(name: Optional[str]) -> object:
    """FxNorm features from a file written by ``musicfx fxnorm features``, or the built-in generator's
    statistics (``None`` or ``"builtin"``)."""
    from musicfx.fxnorm.features import FxNormFeatures

    return FxNormFeatures.builtin() if name in (None, "builtin") else FxNormFeatures.load(name)
