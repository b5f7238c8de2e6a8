"""Restoring a live multitrack session: debleed -> denoise -> FxNorm normalization -> mix, file to file.

:func:`restore` takes a session folder of per-microphone tracks (two or more audio files directly in it,
mono or stereo, one sample rate and one length) and writes, atomically, into a new folder::

    OUT/tracks/<name>.wav       cleaned tracks: debleed and denoise only, at their own level and colour
    OUT/normalized/<name>.wav   what the mixer received (FxNorm-normalized toward the track's stem class)
    OUT/mix.wav                 the stereo mix, peak-safe (one gain down to -0.3 dBFS when needed)
    OUT/report.json             per track: leakage, noise floor, loudness before/after; each stage's time
    OUT/report.png              per track: spectrograms of an excerpt before and after

Every stage streams through :mod:`musicfx.inference` (memory does not depend on the session's length):

* **debleed** across all tracks in lockstep (:func:`musicfx.debleed.debleed_files`): KAMIR (30 s chunks,
  10 % cross-fade) or a debleed checkpoint (its tracks matched to the files by name, else in order);
* **denoise** each track: the spectral gate (its noise estimated per 30 s segment) or a denoise
  checkpoint;
* **normalize** each track toward the FxNorm features of its stem class
  (:func:`normalize_file`: the choices are made on a bounded excerpt, up to 60 s in
  six pieces spread over the track, then applied block by block). The class comes from the file name's
  tokens: ``vocal``/``vocals``/``voc``/``vox``/``sing``/``singer`` -> vocals; ``drum``/``drums``/``kick``/
  ``snare``/``hat``/``hihat``/``tom``/``overhead``/``oh``/``cymbal`` -> drums; ``bass`` -> bass; anything
  else -> other;
* **mix**: the plain sum (``sum``), the neutral mixing console (``console``: the untrained
  :class:`~musicfx.models.console.MixingConsole`, i.e. the tracks summed per class and centred), or an
  automix checkpoint, fed the tracks summed per stem class.

The measures are streamed too: the noise floor is the 10th percentile of 50 ms frame RMS (dBFS) over the
whole track, the loudness is BS.1770 integrated loudness with the K-filter run per 10 s block (a 1 s
lead-in from the previous block settles it), the leakage is :func:`musicfx.debleed.file_leakage`
(inter-track coherence in 10 s blocks). Only the spectrograms use an excerpt (5 s from the middle).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from musicfx.errors import AudioError, MusicfxError

PathLike = Union[str, "os.PathLike[str]"]

DEBLEED_METHODS = ("kamir", "none")
DENOISE_METHODS = ("spectral-gate", "none")
NORMALIZE_METHODS = ("builtin", "none")
MIX_METHODS = ("sum", "console")
#: Name tokens of each FxNorm stem class; a track matching none is ``other``.
CLASS_TOKENS: Dict[str, Tuple[str, ...]] = {
    "vocals": ("vocal", "vocals", "voc", "vox", "sing", "singer", "voice"),
    "drums": ("drum", "drums", "kick", "snare", "hat", "hihat", "hh", "tom", "toms", "overhead", "overheads",
              "oh", "cymbal", "ride", "crash"),
    "bass": ("bass",),
}
CLASSES = ("vocals", "drums", "bass", "other")
#: Frame length and percentile of the noise-floor estimate.
FLOOR_FRAME_SECONDS, FLOOR_PERCENTILE = 0.05, 10.0
#: Seconds read at a time by the measuring passes.
MEASURE_BLOCK_SECONDS = 10.0
#: Spectrogram excerpt, seconds.
PLOT_SECONDS = 5.0
#: Seconds read from each file at a time by the engine's stages.
BLOCK_SECONDS = 30.0
#: Chunking of the normalize stage: long segments, so the compressor's restart is rare and cross-faded.
NORMALIZE_SEGMENT, NORMALIZE_OVERLAP = 30.0, 0.1
#: Chunking of the denoise stage (the spectral gate estimates its noise per segment).
DENOISE_SEGMENT, DENOISE_OVERLAP = 30.0, 0.1
#: Seconds per mixer call (the engine's default; a mixing model sees 10 s at a time).
MIX_SEGMENT = 10.0


def track_class(name: str) -> str:
    """The FxNorm stem class of a track name, by its tokens (see :data:`CLASS_TOKENS`)."""
    # Words split at anything but letters, so "Vocal2", "02_kick" and "OH-L" give "vocal", "kick", "oh".
    tokens = {token for token in re.split(r"[^a-z]+", name.lower()) if token}
    for cls, words in CLASS_TOKENS.items():
        if tokens & set(words):
            return cls
    return "other"


# ------------------------------------------------------------------------------------------- session
@dataclass(frozen=True)
class Session:
    """A session folder's tracks: files, names, stem classes, rate, length and channel counts."""

    paths: Tuple[Path, ...]
    names: Tuple[str, ...]
    classes: Tuple[str, ...]
    sample_rate: int
    frames: int
    channels: Tuple[int, ...]


def read_session(folder: PathLike) -> Session:
    """Find and check a session's tracks: the audio files directly in ``folder`` (hidden ones skipped).

    Raises:
        MusicfxError: not a folder, fewer than two tracks, two files with one name.
        AudioError: a track at another rate or length than the others, or with more than two channels
            (naming it).
    """
    from musicfx.audio.io import AUDIO_EXTENSIONS, audio_info
    from musicfx.audio.stems import track_name

    folder = Path(folder)
    if not folder.is_dir():
        raise MusicfxError(f"{folder}: {'is a file, not' if folder.exists() else 'no such'} session folder "
                           "(SESSION is a folder holding one audio file per microphone)")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.lower().endswith(AUDIO_EXTENSIONS))
    if len(paths) < 2:
        raise MusicfxError(f"{folder}: a session needs at least two tracks (one audio file per microphone), found "
                           f"{len(paths)}{': ' + paths[0].name if paths else ''}")
    names = [track_name(p) for p in paths]
    for name in set(names):
        clash = [p.name for p, n in zip(paths, names) if n == name]
        if len(clash) > 1:
            raise MusicfxError(f"{folder}: {', '.join(clash)} would share the output name {name}.wav; keep one")
    infos = [audio_info(p) for p in paths]
    _check_common(paths, [i.sample_rate for i in infos], "sample rate", " Hz")
    _check_common(paths, [i.frames for i in infos], "length", " samples")
    for path, info in zip(paths, infos):
        if info.channels > 2:
            raise AudioError(f"{path}: has {info.channels} channels; session tracks are mono or stereo")
    return Session(tuple(paths), tuple(names), tuple(track_class(n) for n in names), infos[0].sample_rate,
                   infos[0].frames, tuple(i.channels for i in infos))


def _check_common(paths: Sequence[Path], values: Sequence[int], what: str, unit: str) -> None:
    """All ``values`` equal, else one error naming the odd file (the one off the most common value)."""
    common = max(set(values), key=values.count)
    for path, value in zip(paths, values):
        if value != common:
            others = sum(v == common for v in values)
            raise AudioError(f"{path}: {what} {value}{unit} differs from the other tracks' {common}{unit} "
                             f"({others} of {len(values)}); the tracks of a session must share one {what}")


# ------------------------------------------------------------------------------------------ measures
@dataclass
class TrackStats:
    """Streamed measures of one track: sample peak, noise floor (dBFS) and integrated loudness (LUFS)."""

    peak: float
    noise_floor_db: float
    loudness_lufs: float


def measure_file(path: Path, block_seconds: float = MEASURE_BLOCK_SECONDS) -> TrackStats:
    """Peak, noise floor and loudness of an audio file, read block by block (see the module docstring)."""
    import numpy as np
    import torch

    from musicfx.audio import loudness as bs1770
    from musicfx.inference import _read_blocks
    from musicfx.audio.io import audio_info

    rate = audio_info(path).sample_rate
    frame = max(1, int(FLOOR_FRAME_SECONDS * rate))
    hop = max(1, int(round(bs1770.STEP_SECONDS * rate)))
    lead = rate  # K-filter settling
    block = max(hop, int(block_seconds * rate) // hop * hop)
    peak, rms, energies = 0.0, [], []
    carry = torch.zeros(0)
    history: Optional[torch.Tensor] = None
    for audio in _read_blocks(path, block):
        peak = max(peak, float(audio.abs().max()))
        x = torch.cat([carry, audio], dim=-1) if carry.numel() else audio
        whole = x.shape[-1] // frame * frame
        rms.append(x[:, :whole].square().mean(0).reshape(-1, frame).mean(-1).sqrt())
        carry = x[:, whole:]
        context = audio if history is None else torch.cat([history, audio], dim=-1)
        weighted = bs1770.k_weighting(context, rate)[:, context.shape[-1] - audio.shape[-1]:]
        history = audio[:, -lead:]
        segments = weighted.shape[-1] // hop
        kept = weighted[:, : segments * hop].double()
        energies.append(kept.square().reshape(weighted.shape[0], segments, hop).sum(-1))
    frames_rms = torch.cat(rms) if rms else torch.zeros(0)
    floor = float(np.percentile(frames_rms.numpy(), FLOOR_PERCENTILE)) if frames_rms.numel() else 0.0
    energy = torch.cat(energies, dim=-1) if energies else torch.zeros(1, 0, dtype=torch.float64)
    lufs = -math.inf
    if energy.shape[-1] >= 4:
        weights = torch.tensor(bs1770.default_channel_weights(energy.shape[0]), dtype=torch.float64)
        power = (energy.unfold(-1, 4, 1).sum(-1) / (4 * hop) * weights[:, None]).sum(0)
        absolute = power > 10.0 ** ((bs1770.ABSOLUTE_GATE_LUFS - bs1770.LOUDNESS_OFFSET) / 10.0)
        if absolute.any():
            relative = power[absolute].mean() * 10.0 ** (bs1770.RELATIVE_GATE_LU / 10.0)
            gated = absolute & (power > relative)
            lufs = bs1770.LOUDNESS_OFFSET + 10.0 * math.log10(float(power[gated].mean()))
    to_db = lambda value: 20.0 * math.log10(value) if value > 0 else -math.inf  # noqa: E731
    return TrackStats(peak, to_db(floor), lufs)


# ------------------------------------------------------------------------------------------- models
def _checkpoint(path: str, stage: str, needs: Tuple[str, ...], what: str, device: Any,
                trust: bool = False) -> Any:
    """A checkpoint's task for a stage, or one error saying it holds another task."""
    from musicfx.api import load

    if not Path(path).is_file():
        raise MusicfxError(f"{path}: no such checkpoint (--{stage}: {' | '.join(_choices(stage))} or a "
                           "checkpoint file)")
    task = load(path, device=device, trust=trust)
    if not all(getattr(task, name, None) for name in needs):
        raise MusicfxError(f"{path}: not {what} checkpoint (it holds a {type(task).__name__}); --{stage} needs "
                           f"{what} model")
    return task


def _choices(stage: str) -> Tuple[str, ...]:
    return {"debleed": DEBLEED_METHODS, "denoise": DENOISE_METHODS, "normalize": NORMALIZE_METHODS + ("FEATURES",),
            "mix": MIX_METHODS}[stage]


def _class_mixer(model: Callable, slots: Sequence[int], num_stems: int) -> Callable:
    """``(B, tracks, C, T) -> (B, 1, 2, T)``: tracks summed into the model's stem slots, then mixed."""
    import torch

    index = torch.tensor(list(slots))

    def mix(x: "torch.Tensor") -> "torch.Tensor":
        stems = x.new_zeros(x.shape[0], num_stems, *x.shape[2:]).index_add_(1, index.to(x.device), x)
        y = model(stems)
        if y.dim() != 3 or y.shape[1] != 2:
            raise RuntimeError(f"mixer returned {tuple(y.shape)}; expected (batch, 2, time)")
        return y.unsqueeze(1)

    return mix


# ------------------------------------------------------------------------------------------- restore
def _check_output(session: Path, output: Path, overwrite: bool) -> None:
    source, target = session.resolve(), output.resolve()
    if target == source or source in target.parents:
        raise MusicfxError(f"{output}: is inside the session folder {session}; write the restoration elsewhere "
                           "(-o OUT outside SESSION)")
    if target in source.parents:
        raise MusicfxError(f"{output}: holds the session folder {session}; replacing it would delete the input")
    if output.exists() and not overwrite:
        raise MusicfxError(f"{output}: exists; pass --overwrite to replace it")
    if output.exists() and not output.is_dir():
        raise MusicfxError(f"{output}: exists and is not a folder (-o names the output folder)")


def restore(
    session: PathLike,
    output: PathLike,
    debleed: str = "kamir",
    denoise: str = "spectral-gate",
    normalize: str = "builtin",
    mix: str = "sum",
    progress: bool = True,
    overwrite: bool = False,
    device: Optional[Any] = None,
    plot: bool = True,
    trust: bool = False,
) -> Dict[str, Any]:
    """Restore a live multitrack session: clean tracks, normalized tracks, a mix and a report.

    Args:
        session: folder of per-microphone tracks (see :func:`read_session`).
        output: folder to create (see the module docstring for its contents); never inside ``session``.
        debleed: ``kamir``, ``none`` or a debleed checkpoint.
        denoise: ``spectral-gate``, ``none`` or a denoise checkpoint.
        normalize: ``builtin`` (the built-in generator's FxNorm statistics), a features file from
            ``musicfx fxnorm features``, or ``none``.
        mix: ``sum``, ``console`` (the neutral mixing console) or an automix checkpoint.
        progress: a progress bar per stage.
        overwrite: replace an existing ``output`` folder (only once the new one is complete).
        device: where checkpoints run (default: CPU).
        plot: draw ``OUT/report.png`` (a few seconds of matplotlib per track; off for batch runs and tests).
        trust: also load checkpoints holding more than plain data (see :func:`musicfx.api.load`).

    Returns:
        The report written to ``OUT/report.json``.

    Raises:
        MusicfxError: bad session, output or option (one line, before anything is written).
    """
    import torch

    session, output = Path(session), Path(output)
    info = read_session(session)
    _check_output(session, output, overwrite)
    device = torch.device("cpu") if device is None else torch.device(device)
    rate = info.sample_rate

    # Everything that can fail on the user's options fails here, before any work.
    debleeder, debleed_rate, order = _debleed_model(debleed, info, device, trust)
    denoiser, denoise_rate, denoise_channels = _denoise_model(denoise, rate, device, trust)
    features = _features(normalize, info)
    mixer, mix_rate, mix_channels = _mixer(mix, info, rate, device, trust)

    start = time.perf_counter()
    before = {path: measure_file(path) for path in info.paths}
    measuring = time.perf_counter() - start
    silent = [path for path in info.paths if before[path].peak == 0.0]
    if silent:
        raise AudioError(f"{silent[0]}: the track is silent (all samples are zero); leave it out of the session")

    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=str(output.parent), prefix=f".{output.name}.musicfx-restore-"))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 would make OUT private once renamed
    times: Dict[str, float] = {}
    from tqdm.auto import tqdm

    # One bar over the stages; the engine adds one per file inside each stage.
    stages = tqdm(total=5, desc="restore", unit="stage", disable=not progress)
    try:
        tracks_dir, norm_dir = work / "tracks", work / "normalized"
        for folder in (tracks_dir, norm_dir, work / "debleed"):
            folder.mkdir()
        cleaned = [tracks_dir / f"{name}.wav" for name in info.names]
        normalized = [norm_dir / f"{name}.wav" for name in info.names]
        engine = {"progress": progress, "block_seconds": BLOCK_SECONDS}

        stages.set_postfix_str("debleed")
        start = time.perf_counter()
        if debleeder is None:
            debleeded = list(info.paths)
        else:
            from musicfx.debleed import KAMIR_OVERLAP, KAMIR_SEGMENT, MODEL_OVERLAP, MODEL_SEGMENT, debleed_files

            debleeded = [work / "debleed" / f"{name}.wav" for name in info.names]
            ins, outs = [info.paths[i] for i in order], [debleeded[i] for i in order]
            kamir = debleed == "kamir"
            debleed_files(debleeder, ins, outs, debleed_rate, device=device,
                          segment=KAMIR_SEGMENT if kamir else MODEL_SEGMENT,
                          overlap=KAMIR_OVERLAP if kamir else MODEL_OVERLAP, **engine)
        times["debleed"] = time.perf_counter() - start
        stages.set_postfix_str("denoise")
        stages.update()

        start = time.perf_counter()
        from musicfx.inference import process_file

        for source, target in zip(debleeded, cleaned):
            if denoiser is None:
                _copy(source, target)
            else:
                channels = denoise_channels or _channels(source)
                process_file(denoiser, source, target, denoise_rate or rate, channels, device=device,
                             segment=DENOISE_SEGMENT, overlap=DENOISE_OVERLAP, **engine)
        times["denoise"] = time.perf_counter() - start
        stages.set_postfix_str("normalize")
        stages.update()
        shutil.rmtree(work / "debleed")

        start = time.perf_counter()
        if features is None:
            for source, target in zip(cleaned, normalized):
                _copy(source, target)
        else:
            for source, target, cls in zip(cleaned, normalized, info.classes):
                normalize_file(source, target, cls, features, segment=NORMALIZE_SEGMENT, **engine)
        times["normalize"] = time.perf_counter() - start
        stages.set_postfix_str("mix")
        stages.update()

        start = time.perf_counter()
        from musicfx.automix import write_mix

        mixed = write_mix(mixer, normalized, work / "mix.wav", mix_rate, mix_channels, workdir=work, device=device,
                          segment=MIX_SEGMENT, **engine)
        (work / "raw_mix.wav").unlink()
        times["mix"] = time.perf_counter() - start
        stages.set_postfix_str("measure")
        stages.update()

        start = time.perf_counter()
        after = {path: measure_file(path) for path in cleaned}
        leveled = {path: measure_file(path) for path in normalized}
        report = _report(info, cleaned, normalized, before, after, leveled, mixed, times,
                         dict(debleed=debleed, denoise=denoise, normalize=normalize, mix=mix))
        report["seconds"]["measure"] = round(measuring + time.perf_counter() - start, 3)  # inputs and outputs
        if plot:
            start = time.perf_counter()
            _plot(work / "report.png", info, cleaned, report)
            report["seconds"]["plot"] = round(time.perf_counter() - start, 3)
        (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        _move_into_place(work, output)
        stages.update()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        stages.close()
    return report


def normalize_file(path: Path, output: Path, stem: str, features: Any, options: Optional[Any] = None,
                   **process: Any) -> Any:
    """FxNorm-normalize one audio file into ``output`` (float WAV at the file's rate), in bounded memory.

    The choices are made on a bounded excerpt (:mod:`musicfx.fxnorm.stream`) and applied in segments of
    :data:`NORMALIZE_SEGMENT` seconds cross-faded over :data:`NORMALIZE_OVERLAP`, so the compressor's
    restart at each segment start falls inside a cross-fade.

    Args:
        path: the stem file (any length, rate and channel count).
        output: the file to write (atomically).
        stem: its stem type; features: the targets (:class:`~musicfx.fxnorm.features.FxNormFeatures`);
            options: the stages' settings (:class:`~musicfx.fxnorm.normalize.NormalizeOptions`).
        process: keyword arguments of :func:`musicfx.inference.process_files` (progress, ...).

    Returns:
        The processing chosen on the excerpt (:class:`~musicfx.fxnorm.stream.StreamNormalization`).
    """
    import torch

    from musicfx.fxnorm import stream
    from musicfx.inference import process_files

    rate = features.config.sample_rate
    audio, _ = stream.excerpt(path, rate)
    chosen = stream.plan(audio, stem, features, options)
    del audio

    def model(x: torch.Tensor) -> torch.Tensor:  # (batch, 1, channels, time)
        return torch.stack([chosen.apply(item[0], rate, features, options) for item in x]).unsqueeze(1)

    process.setdefault("segment", NORMALIZE_SEGMENT)
    process.setdefault("overlap", NORMALIZE_OVERLAP)
    process_files(model, [path], [output], rate, None, None, **process)
    return chosen


def _debleed_model(option: str, info: Session, device: Any,
                   trust: bool) -> Tuple[Optional[Callable], Optional[int], List[int]]:
    order = list(range(len(info.paths)))
    if option == "none":
        return None, None, order
    if option == "kamir":
        from musicfx.baselines.kamir import KAMIR
        from musicfx.debleed import KAMIR_DEFAULTS

        return KAMIR(info.sample_rate, **KAMIR_DEFAULTS), None, order
    from musicfx.debleed import match_tracks

    task = _checkpoint(option, "debleed", ("tracks", "debleed"), "a debleed", device, trust)
    tracks = list(task.tracks)
    if len(tracks) != len(info.paths):
        raise MusicfxError(f"{option}: the model debleeds {len(tracks)} tracks ({', '.join(tracks)}) but the session "
                           f"has {len(info.paths)}; use --debleed kamir (any number of tracks)")
    matched = match_tracks(list(info.paths), tracks)
    return task.model, task.sample_rate, matched if matched is not None else order


def _denoise_model(option: str, rate: int, device: Any,
                   trust: bool) -> Tuple[Optional[Callable], Optional[int], Optional[int]]:
    if option == "none":
        return None, None, None
    if option == "spectral-gate":
        from musicfx.baselines.spectral_gate import SpectralGate

        return SpectralGate(sample_rate=rate), rate, None
    task = _checkpoint(option, "denoise", ("denoise",), "a denoise", device, trust)
    return task.model, task.sample_rate, task.channels


def _features(option: str, info: Session) -> Optional[Any]:
    if option == "none":
        return None
    from musicfx.automix import load_features

    path = None if option == "builtin" else option
    if path is not None and not Path(path).is_file():
        raise MusicfxError(f"{path}: no such features file (--normalize: builtin, none or a file from "
                           "`musicfx fxnorm features`)")
    features = load_features(path)
    for cls in set(info.classes):
        for name in ("eq", "dynamics", "panning", "loudness"):
            features.require(cls, name)
    return features


def _mixer(option: str, info: Session, rate: int, device: Any, trust: bool) -> Tuple[Callable, int, int]:
    from musicfx.automix import sum_mixer

    if option == "sum":
        return sum_mixer, rate, 2
    if option == "console":
        from musicfx.models.console import MixingConsole

        console = MixingConsole(num_stems=len(CLASSES), sample_rate=rate).eval()
        return _class_mixer(console, [CLASSES.index(c) for c in info.classes], len(CLASSES)), rate, 2
    task = _checkpoint(option, "mix", ("stems", "mix"), "an automix", device, trust)
    if getattr(task, "mode", "mix") == "pretrain":
        raise MusicfxError(f"{option}: a pretraining checkpoint (mode: pretrain) has no trained mixer")
    stems = list(task.stems)
    slots = []
    for cls in info.classes:
        if cls not in stems and "other" not in stems:
            raise MusicfxError(f"{option}: the mixer takes {', '.join(stems)}; it has no slot for {cls} tracks")
        slots.append(stems.index(cls if cls in stems else "other"))
    return _class_mixer(task.model, slots, len(stems)), task.sample_rate, task.channels


def _channels(path: Path) -> int:
    from musicfx.audio.io import audio_info

    return audio_info(path).channels


def _copy(source: Path, target: Path) -> None:
    from musicfx.automix import copy_with_gain

    copy_with_gain(source, target, 1.0)


def _move_into_place(work: Path, output: Path) -> None:
    """Rename the finished folder to ``output``; an old ``output`` is moved aside first, deleted last."""
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.musicfx-old-{os.getpid()}")
        os.replace(output, old)
    try:
        os.replace(work, output)
    except BaseException:
        if old is not None:
            os.replace(old, output)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _report(info: Session, cleaned: Sequence[Path], normalized: Sequence[Path], before: Dict, after: Dict,
            leveled: Dict, mixed: Any, times: Dict[str, float], options: Dict[str, str]) -> Dict[str, Any]:
    from musicfx.debleed import file_leakage

    def number(value: float) -> Optional[float]:
        return round(value, 3) if math.isfinite(value) else None

    tracks = {}
    for path, name, cls, clean, norm in zip(info.paths, info.names, info.classes, cleaned, normalized):
        b, a, n = before[path], after[clean], leveled[norm]
        tracks[name] = {
            "file": path.name, "class": cls, "channels": info.channels[info.paths.index(path)],
            "noise_floor_dbfs": {"before": number(b.noise_floor_db), "after": number(a.noise_floor_db)},
            "loudness_lufs": {"before": number(b.loudness_lufs), "after": number(a.loudness_lufs),
                              "normalized": number(n.loudness_lufs)},
            "peak_dbfs": {"before": number(20 * math.log10(b.peak)) if b.peak > 0 else None},
        }
    return {
        "session": str(info.paths[0].parent), "sample_rate": info.sample_rate,
        "duration_seconds": round(info.frames / info.sample_rate, 3), "options": options,
        "leakage": {"before": round(file_leakage(list(info.paths)), 4), "after": round(file_leakage(list(cleaned)), 4),
                    "measure": "mean inter-track coherence (musicfx.metrics.leakage), lower is less bleed"},
        "noise_floor": f"{FLOOR_PERCENTILE:g}th percentile of {FLOOR_FRAME_SECONDS * 1000:g} ms frame RMS, dBFS",
        "mix": {"peak_dbfs": number(mixed.peak_db), "gain_db": number(mixed.gain_db)},
        "tracks": tracks,
        "seconds": {stage: round(value, 3) for stage, value in times.items()},
    }


def _plot(path: Path, info: Session, cleaned: Sequence[Path], report: Dict[str, Any]) -> None:
    """Spectrograms of a middle excerpt of every track, before and after, stacked in one PNG."""
    from musicfx.audio.io import read_audio
    from musicfx.audio.plot import save_spectrogram_png

    length = min(info.frames, int(PLOT_SECONDS * info.sample_rate))
    start = (info.frames - length) // 2
    signals = {}
    for source, clean, name in zip(info.paths, cleaned, info.names):
        floor = {key: "-inf" if value is None else f"{value:.1f}"
                 for key, value in report["tracks"][name]["noise_floor_dbfs"].items()}
        signals[f"{name} before\n(floor {floor['before']} dBFS)"] = read_audio(source, start=start, frames=length)[0]
        signals[f"{name} after\n(floor {floor['after']} dBFS)"] = read_audio(clean, start=start, frames=length)[0]
    leak = report["leakage"]
    save_spectrogram_png(path, signals, info.sample_rate,
                         title=f"musicfx restore: leakage {leak['before']:.3f} -> {leak['after']:.3f}")
