"""``musicfx mix STEMS_DIR -o mix.wav --ckpt CKPT``: mix one song's stems into a stereo mix.

* ``--ckpt CKPT``: an automix checkpoint (:class:`~musicfx.tasks.automix.AutomixTask`: FxNorm-automix,
  Wave-U-Net or the mixing-console model). ``--method sum`` instead: the plain sum of the stems, FxNorm's
  baseline (with ``--normalize``: the sum of the normalized stems).
* ``STEMS_DIR`` holds one file per stem, named like the model's stems (``vocals.wav``, ``Drums.flac``...;
  case is ignored). A missing stem is mixed as silence, with a warning; other audio files are ignored, with
  a warning; a folder holding none of the stems is an error naming the files expected.
* The stems stream through the model in overlapping segments (:func:`musicfx.inference.process_files`):
  any length, constant memory, a progress bar.
* **Peak-safe**: the mix is first written as a float file beside the output, then its peak is measured; if
  it is above ``--ceiling-db`` (default :data:`CEILING_DB`, -0.3 dBFS) the whole mix is scaled down by one
  gain (no limiter, so no pumping or distortion) as it is copied to the output. Only a finished mix
  appears under the output's name.
* ``--params settings.json`` (models with ``predict_parameters``, i.e.
  :class:`~musicfx.models.console.MixingConsole`): the console settings, averaged over the song.
* ``--normalize [--features F.npz]``: FxNorm effect normalization of the stems before mixing
  (:func:`musicfx.fxnorm.normalize.normalize_stem`, toward ``F.npz`` or the built-in features).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from musicfx.checkpoint import add_trust_argument
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
#: Stem names of ``--method sum`` when ``--stems`` is not given (MUSDB18's).
DEFAULT_STEMS: Tuple[str, ...] = ("vocals", "drums", "bass", "other")
#: Seconds of audio read at a time when measuring and copying the finished mix.
BLOCK_SECONDS = 30.0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``mix`` subcommand to ``commands``."""
    parser = commands.add_parser(
        "mix", help="mix a folder of stems into a stereo mix",
        description="Mix one song's stems (STEMS_DIR/vocals.wav, drums.wav, ...) into a stereo mix with a trained "
        "automix checkpoint, or sum them (--method sum). The output never peaks above --ceiling-db.",
    )
    parser.add_argument("stems_dir", metavar="STEMS_DIR",
                        help="folder holding one audio file per stem (<stem>.wav, ...)")
    parser.add_argument("-o", "--output", required=True, help="mix file to write (.wav, .flac, ...)")
    parser.add_argument("--ckpt", help="automix checkpoint written by `musicfx fit`")
    add_trust_argument(parser)
    parser.add_argument("--method", choices=("model", "sum"), default="model",
                        help="model (default, needs --ckpt) or sum: the plain sum of the stems (FxNorm's baseline)")
    parser.add_argument("--stems", nargs="+", help="stem names for --method sum (default: vocals drums bass other)")
    parser.add_argument("--params", help="also write the console model's settings (JSON), averaged over the song")
    parser.add_argument("--normalize", action="store_true", help="FxNorm-normalize the stems' effects before mixing")
    parser.add_argument("--features", help="features for --normalize: a file from `musicfx fxnorm features` "
                        "(default: the built-in features)")
    parser.add_argument("--ir-folder", help="impulse responses for the reverb stage of --normalize (default: none)")
    parser.add_argument("--ceiling-db", type=float, default=CEILING_DB,
                        help=f"highest sample peak of the output, dBFS (default {CEILING_DB})")
    parser.add_argument("--subtype", help="soundfile subtype of the output, e.g. PCM_16, PCM_24, FLOAT "
                        "(default: FLOAT for .wav, the format's default otherwise)")
    parser.add_argument("--segment", type=float, default=10.0, help="seconds per model call (default 10)")
    parser.add_argument("--overlap", type=float, default=0.25, help="fraction of a segment cross-faded")
    parser.add_argument("--batch-size", type=int, default=1, help="segments per model call")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output (and --params file)")
    parser.add_argument("--no-resample", action="store_true", help="fail instead of resampling to the model's rate")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


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
        exclude: files to leave out (the output, when it is written into the folder).

    Returns:
        :class:`StemFiles`.

    Raises:
        MusicfxError: ``folder`` is not a folder, holds two files for one stem, or none of the stems.
    """
    from musicfx.audio.io import AUDIO_EXTENSIONS

    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "no such folder"
        raise MusicfxError(f"{folder}: {what} (STEMS_DIR is the folder holding {', '.join(_file_names(stems))})")
    excluded = {path.resolve() for path in exclude}
    wanted = {name.lower(): name for name in stems}
    result = StemFiles()
    candidates: Dict[str, List[Path]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.resolve() in excluded:
            continue
        if not path.name.lower().endswith(AUDIO_EXTENSIONS):
            continue
        name = path.name[: -len(path.suffix)].lower()
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
        raise MusicfxError(f"{folder}: holds none of the stems {', '.join(_file_names(stems))} "
                           "(any audio extension, case ignored)")
    return result


def _file_names(stems: Sequence[str]) -> List[str]:
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


def _load_features(name: Optional[str]) -> object:
    from musicfx.fxnorm.features import FxNormFeatures

    return FxNormFeatures.builtin() if name in (None, "builtin") else FxNormFeatures.load(name)


# ------------------------------------------------------------------------------------------------- run
def _check_arguments(args: argparse.Namespace) -> None:
    if args.method == "model" and args.ckpt is None:
        raise MusicfxError("pass --ckpt CHECKPOINT (an automix model written by `musicfx fit`), or --method sum")
    if args.method == "sum":
        if args.ckpt is not None:
            raise MusicfxError("--ckpt goes with --method model; --method sum needs no checkpoint")
        if args.params is not None:
            raise MusicfxError("--params writes a console model's settings; --method sum has none")
    elif args.stems is not None:
        raise MusicfxError("--stems goes with --method sum; a checkpoint mixes the stems it was trained on")
    if (args.features is not None or args.ir_folder is not None) and not args.normalize:
        raise MusicfxError("--features and --ir-folder go with --normalize")
    if args.ir_folder is not None and not Path(args.ir_folder).is_dir():
        raise MusicfxError(f"{args.ir_folder}: no such impulse-response folder (--ir-folder)")
    if args.ceiling_db > 0.0:
        raise MusicfxError(f"--ceiling-db must be at most 0 dBFS, got {args.ceiling_db:g}")
    if args.segment <= 0.0 or not 0.0 <= args.overlap <= 0.5:
        raise MusicfxError(f"need --segment > 0 and 0 <= --overlap <= 0.5, got {args.segment:g} and {args.overlap:g}")


def _check_output(args: argparse.Namespace, inputs: Sequence[Path]) -> Tuple[Path, Optional[Path]]:
    import soundfile as sf

    from musicfx.audio.io import _format_for
    from musicfx.cli import UNWRITABLE_AUDIO_SUFFIXES

    output = Path(args.output)
    if output.is_dir():
        raise MusicfxError(f"{output}: is a folder; -o names the mix file to write (e.g. mix.wav)")
    if output.suffix.lower() in UNWRITABLE_AUDIO_SUFFIXES:
        raise MusicfxError(f"{output}: cannot write '{output.suffix}' files; name a .wav or .flac file")
    format_ = _format_for(output)
    if args.subtype is not None and not sf.check_format(format_, args.subtype.upper()):
        raise MusicfxError(f"{output}: cannot write subtype {args.subtype} in {format_} "
                           f"(choose from {', '.join(sf.available_subtypes(format_))})")
    params = Path(args.params) if args.params is not None else None
    if params is not None and (params.is_dir() or params.resolve() == output.resolve()):
        raise MusicfxError(f"{params}: --params names the JSON file to write, not a folder or the mix")
    resolved = {path.resolve() for path in inputs}
    for path in (output, params):
        if path is None:
            continue
        if path.resolve() in resolved:
            raise AudioError(f"{path}: output would overwrite a stem; choose another -o")
        if path.exists() and not args.overwrite:
            raise AudioError(f"{path}: exists; pass --overwrite to replace it")
    return output, params


def _trained_on_normalized(checkpoint: str, trust: bool) -> Optional[str]:
    """The ``normalized_root`` a checkpoint's data module was given, if any (its recipe is in the file)."""
    from musicfx.checkpoint import load_checkpoint

    try:
        payload = load_checkpoint(checkpoint, trust=trust, mmap=True)
    except MusicfxError:  # load() already read it; this is only a hint
        return None
    hparams = payload.get("datamodule_hyper_parameters") or {}
    return hparams.get("normalized_root") if isinstance(hparams, dict) else None


def _load_task(args: argparse.Namespace, device: object) -> object:
    from musicfx.api import load

    task = load(args.ckpt, device=device, trust=args.trust_checkpoint)
    stems = getattr(task, "stems", None)
    if not stems or not callable(getattr(task, "mix", None)):
        raise MusicfxError(f"{args.ckpt}: not an automix checkpoint (its task has no stems to mix)")
    if getattr(task, "mode", "mix") == "pretrain":
        raise MusicfxError(
            f"{args.ckpt}: a pretraining checkpoint (mode: pretrain) has no trained mixer; train one with "
            "recipes/automix/fxnorm.yaml --model.init_args.pretrained CKPT"
        )
    if args.params is not None and not (hasattr(task.model, "predict_parameters")
                                        and hasattr(task.model, "parameters_to_json")):
        raise MusicfxError(f"{args.ckpt}: --params needs a model that predicts console settings "
                           f"(musicfx.models.console.MixingConsole), not {type(task.model).__name__}")
    return task


def _warn(message: str) -> None:
    print(f"musicfx: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``musicfx mix``; returns the exit status."""
    import warnings

    from musicfx.api import _resolve_device
    from musicfx.cli import _check_inputs

    _check_arguments(args)
    folder = Path(args.stems_dir)
    task = None
    device = _resolve_device(args.device)
    if args.method == "model":
        # The stem names come from the checkpoint, so it is loaded first (quick next to the mixing).
        if not folder.is_dir():
            find_stems(folder, DEFAULT_STEMS)  # raises the folder error
        task = _load_task(args, device)
        stems: Tuple[str, ...] = tuple(task.stems)
    else:
        stems = tuple(args.stems or DEFAULT_STEMS)
    found = find_stems(folder, stems, exclude=[Path(args.output)] + ([Path(args.params)] if args.params else []))
    inputs = list(found.found.values())
    infos = _check_inputs(inputs)
    output, params_path = _check_output(args, inputs)
    features = None
    if args.normalize:
        features = _load_features(args.features)
        for stem in found.found:
            for name in ("eq", "dynamics", "panning", "loudness"):
                features.require(stem, name)
    normalized_root = _trained_on_normalized(args.ckpt, args.trust_checkpoint) if task is not None and not args.normalize else None
    if normalized_root:
        _warn(f"{args.ckpt} was trained on effect-normalized stems (data normalized_root {normalized_root}); "
              "pass --normalize --features FEATURES.npz to mix stems normalized like those")
    if found.missing:
        _warn(f"{folder}: no {', '.join(found.missing)} stem ({', '.join(_file_names(found.missing))}); "
              "mixing silence in its place")
    if found.unknown:
        _warn(f"{folder}: ignoring {', '.join(p.name for p in found.unknown)} (not one of the stems "
              f"{', '.join(stems)})")

    average = None
    process = dict(segment=args.segment, overlap=args.overlap, batch_size=args.batch_size,
                   resample_input=not args.no_resample, progress=not args.quiet)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=str(output.parent), prefix=".musicfx-mix-") as workdir, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = found.found
        if features is not None:
            files = normalize_stem_files(files, Path(workdir), features, args.ir_folder, progress=not args.quiet)
        if task is not None:
            slots = [stems.index(name) for name in files]
            if params_path is not None:
                average = ParameterAverage(len(stems))
            mixer = model_mixer(task.model, slots, len(stems), average)
            report = write_mix(mixer, list(files.values()), output, task.sample_rate, task.channels,
                               args.ceiling_db, args.subtype, Path(workdir), device=device, **process)
        else:
            rate = infos[0].sample_rate
            report = write_mix(sum_mixer, list(files.values()), output, rate, 2, args.ceiling_db, args.subtype,
                               Path(workdir), device=None, **process)
        if params_path is not None:
            _write_params(params_path, task, average, stems, found, args)
    for warning in caught:
        _warn(str(warning.message))
    if not args.quiet:
        scaled = (f"scaled by {report.gain_db:.2f} dB to {args.ceiling_db:g} dBFS" if report.gain_db < 0
                  else "not scaled")
        print(f"{folder} -> {output} (peak {report.peak_db:.2f} dBFS, {scaled})")
        if params_path is not None:
            print(f"settings -> {params_path}")
    return 0


def _write_params(path: Path, task: object, average: ParameterAverage, stems: Sequence[str], found: StemFiles,
                  args: argparse.Namespace) -> None:
    from musicfx.audio.io import atomic_path

    settings = task.model.parameters_to_json(average.mean(), list(stems))
    settings.update({
        "segments": average.segments,
        "segment_seconds": args.segment,
        "averaging": "per stem, the mean of the settings predicted for each segment, weighted by the stem's RMS "
                     "in that segment",
        "missing_stems": list(found.missing),
        "normalized": bool(args.normalize),
        "checkpoint": str(args.ckpt),
    })
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(settings, indent=2) + "\n")
