"""Denoising quality on a fixed test set of real recordings: SI-SDR of the noisy input, the spectral gate
and trained checkpoints.

The test set never changes between runs, so numbers compare across checkpoints and commits:

* music: excerpts of real recordings from ``shared/data`` -- the SiSEC 2011 "Ultimate NZ Tour" multitrack
  (the mixture, i.e. the sum of its 5 stems, at four offsets, and each stem once) and PHENICX-Anechoic
  Beethoven (the whole orchestra, its sections and single parts; these recordings are 1 s long);
* noise: real kitchen noise (``noise/doing_the_dishes_16k.wav``, a different stretch per excerpt) and each
  of the five procedural categories of :mod:`musicfx.synth.noise` with fixed seeds;
* mixed at every SNR asked for (default 0 and 5 dB) with :func:`~musicfx.synth.noise.mix_at_snr`; the same
  noise excerpt serves every SNR, so SNRs differ only in level.

Everything is built at one rate and channel count (default: the first checkpoint's; 22.05 kHz mono
without one); each checkpoint's ``denoise`` maps that to its own rate and channels and back, so mono and
stereo models, or 22.05 and 44.1 kHz models, are scored on identical audio. SI-SDR is per excerpt
(channels folded into time), averaged with every excerpt counting once.

Run::

    python benchmarks/bench_denoise_quality.py --ckpt runs/quickstart/checkpoints/last.ckpt \
        [--ckpt NAME=other.ckpt ...] [--json quality.json] [--shared ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from common import default_shared_data, fmt, machine_info, machine_line, markdown_table, require_folder
from musicfx.checkpoint import load_checkpoint
from musicfx.errors import MusicfxError

#: The noise conditions: real kitchen noise first, then the procedural categories.
KITCHEN = "kitchen (real)"
KITCHEN_FILE = Path("noise") / "doing_the_dishes_16k.wav"
#: Stretch of the kitchen recording that excerpt ``i`` gets: it starts ``i * KITCHEN_STEP`` seconds in.
KITCHEN_STEP = 4.5
#: Procedural noise of excerpt ``i`` in category ``c`` (index into NOISE_CATEGORIES) uses this seed.
SEED_BASE = 10_000

SISEC = "sisec2011-nz-tour"
PHENICX = "phenicx-anechoic"
SISEC_STEMS = ("vocals", "drums", "bass", "guitar", "synth")
#: Offsets (s) of the four mixture excerpts and of each single stem's excerpt in the 18 s multitrack.
MIX_OFFSETS = (0.0, 4.0, 8.0, 12.0)
STEM_OFFSETS = {"vocals": 2.0, "drums": 6.0, "bass": 10.0, "guitar": 13.0, "synth": 5.0}
# PHENICX parts that play in the 1 s excerpt (flute2, trumpet1 and trumpet2 are silent there, at -84 dBFS).
STRINGS = ("violin1", "violin2", "violin3", "violin4", "viola1", "viola2", "cello", "doublebass")
WINDS = ("flute1", "oboe1", "oboe2", "clarinet1", "clarinet2", "bassoon1", "bassoon2")
HORNS = ("horn1", "horn2")
SINGLE_PARTS = ("violin1", "cello", "oboe1", "clarinet1", "bassoon1", "horn1")
#: An excerpt quieter than this (dBFS) means the data changed: the test set would silently change too.
SILENCE_DB = -60.0


@dataclass(frozen=True)
class Excerpt:
    """One clean music excerpt of the test set.

    Attributes:
        name: label in the JSON output.
        kind: ``"mix"``, ``"stem"`` or ``"orchestra"`` (rows of the by-kind table).
        files: paths relative to the data root, summed.
        start: offset in seconds.
        seconds: length in seconds, or None for the whole (short) file.
    """

    name: str
    kind: str
    files: Tuple[str, ...]
    start: float
    seconds: Optional[float]


def excerpt_list(seconds: float) -> List[Excerpt]:
    """The fixed, ordered list of music excerpts.

    Args:
        seconds: length of the multitrack excerpts (the orchestral recordings are 1 s whatever this is).
    """
    stems = tuple(f"{SISEC}/{name}.wav" for name in SISEC_STEMS)
    parts = lambda names: tuple(f"{PHENICX}/beethoven_{name}.wav" for name in names)  # noqa: E731
    excerpts = [Excerpt(f"nz-tour mix @{start:g}s", "mix", stems, start, seconds) for start in MIX_OFFSETS]
    excerpts += [
        Excerpt(f"nz-tour {name} @{start:g}s", "stem", (f"{SISEC}/{name}.wav",), start, seconds)
        for name, start in STEM_OFFSETS.items()
    ]
    excerpts += [
        Excerpt("beethoven tutti", "orchestra", parts(STRINGS + WINDS + HORNS), 0.0, None),
        Excerpt("beethoven strings", "orchestra", parts(STRINGS), 0.0, None),
        Excerpt("beethoven winds", "orchestra", parts(WINDS), 0.0, None),
        Excerpt("beethoven horns", "orchestra", parts(HORNS), 0.0, None),
    ]
    excerpts += [Excerpt(f"beethoven {name}", "orchestra", parts((name,)), 0.0, None) for name in SINGLE_PARTS]
    return excerpts


def spread(excerpts: Sequence[Excerpt], count: int) -> List[Excerpt]:
    """``count`` excerpts evenly spaced over the list (first and last included), for quick runs."""
    if count >= len(excerpts):
        return list(excerpts)
    if count == 1:
        return [excerpts[0]]
    step = (len(excerpts) - 1) / (count - 1)
    return [excerpts[int(round(i * step))] for i in range(count)]


class AudioCache:
    """Whole files decoded once at the benchmark's rate and channel count."""

    def __init__(self, root: Path, sample_rate: int, channels: int) -> None:
        self.root = root
        self.sample_rate = sample_rate
        self.channels = channels
        self._audio: Dict[str, torch.Tensor] = {}

    def __call__(self, relative: str) -> torch.Tensor:
        """``(channels, time)`` float32 of the file; resampled before cutting, so excerpts have no edge ringing."""
        from musicfx.audio.io import read_audio

        if relative not in self._audio:
            audio, _ = read_audio(self.root / relative, sample_rate=self.sample_rate, channels=self.channels)
            self._audio[relative] = audio
        return self._audio[relative]


def load_excerpt(excerpt: Excerpt, cache: AudioCache) -> torch.Tensor:
    """The clean excerpt, ``(channels, time)``.

    Raises:
        DataError: a file is shorter than the excerpt, or the excerpt is silent.
    """
    from musicfx.data.sampling import rms_db
    from musicfx.errors import DataError

    rate = cache.sample_rate
    start = int(round(excerpt.start * rate))
    signals = [cache(name) for name in excerpt.files]
    available = min(signal.shape[-1] for signal in signals) - start
    length = available if excerpt.seconds is None else int(round(excerpt.seconds * rate))
    if length <= 0 or length > available:
        raise DataError(f"{excerpt.files[0]}: too short for excerpt {excerpt.name!r} ({excerpt.seconds} s)")
    audio = torch.stack([signal[:, start : start + length] for signal in signals]).sum(dim=0)
    level = float(rms_db(audio))
    if level < SILENCE_DB:
        raise DataError(f"{excerpt.name}: excerpt is silent ({level:.1f} dBFS); has the data changed?")
    return audio


def noise_names() -> List[str]:
    from musicfx.synth.noise import NOISE_CATEGORIES

    return [KITCHEN] + list(NOISE_CATEGORIES)


def make_noise(noise: str, index: int, channels: int, frames: int, cache: AudioCache) -> torch.Tensor:
    """The fixed noise of condition ``noise`` for excerpt ``index``, ``(channels, frames)`` at any level.

    Raises:
        DataError: the kitchen recording is too short for the excerpt's stretch.
    """
    from musicfx.errors import DataError
    from musicfx.synth.noise import NOISE_CATEGORIES, synthesize

    if noise == KITCHEN:
        recording = cache(str(KITCHEN_FILE))
        start = int(round(index * KITCHEN_STEP * cache.sample_rate))
        if start + frames > recording.shape[-1]:
            raise DataError(f"{KITCHEN_FILE}: too short for excerpt {index} ({frames} frames at {start})")
        return recording[:, start : start + frames]
    seed = SEED_BASE * (NOISE_CATEGORIES.index(noise) + 1) + index
    return synthesize(noise, torch.tensor([seed]), channels, frames, cache.sample_rate)[0]


# ------------------------------------------------------------------------------------------------ methods
Method = Callable[[torch.Tensor, int], torch.Tensor]


def _checkpoint_arg(text: str) -> Tuple[str, Path]:
    """``[LABEL=]PATH`` -> (label, path); the label defaults to ``<run>/<file>`` for ``run/checkpoints/x.ckpt``."""
    path = Path(text)
    label = None
    if not path.exists() and "=" in text:
        label, _, rest = text.partition("=")
        path = Path(rest)
    if label is None:
        parent = path.parent
        run = parent.parent.name if parent.name == "checkpoints" else parent.name
        label = f"{run}/{path.stem}" if run else path.stem
    return label, path


def build_methods(checkpoints: Sequence[str], device: str) -> Dict[str, Method]:
    """Name -> ``(audio (channels, time), sample_rate) -> denoised audio``, the noisy input first."""
    import musicfx
    from musicfx.baselines.spectral_gate import spectral_gate

    methods: Dict[str, Method] = {
        "noisy input": lambda audio, rate: audio,
        "spectral gate": lambda audio, rate: spectral_gate(audio, rate),
    }
    for text in checkpoints:
        label, path = _checkpoint_arg(text)
        if label in methods:
            raise MusicfxError(f"two checkpoints are labelled {label!r}; name them with --ckpt LABEL=PATH")
        task = musicfx.load(path, device=device)
        methods[label] = lambda audio, rate, task=task: task.denoise(audio.to(task.device), rate).cpu()
    return methods


def checkpoint_format(checkpoint: str) -> Tuple[int, int]:
    """``(sample_rate, channels)`` a checkpoint's model works at, read without building the model."""
    _, path = _checkpoint_arg(checkpoint)
    if not path.is_file():
        raise MusicfxError(f"{path}: no such checkpoint")
    payload = load_checkpoint(path, mmap=True)
    try:
        meta = payload.get("musicfx") or payload.get("hyper_parameters", {})
        return int(meta["sample_rate"]), int(meta["channels"])
    except Exception as error:
        raise MusicfxError(f"{path}: cannot read the model's sample rate and channels ({error})") from None


# ------------------------------------------------------------------------------------------------ scoring
def evaluate(
    methods: Dict[str, Method],
    excerpts: Sequence[Excerpt],
    noises: Sequence[str],
    snrs: Sequence[float],
    cache: AudioCache,
    progress: bool = True,
) -> Tuple[Dict[str, torch.Tensor], Dict[str, float]]:
    """SI-SDR of every method on every (noise, SNR, excerpt).

    Returns:
        ``scores``: method -> float64 ``(noises, snrs, excerpts)`` in dB; ``seconds``: method -> total
        processing time.
    """
    from tqdm.auto import tqdm

    from musicfx.metrics import si_sdr
    from musicfx.synth.noise import mix_at_snr

    cleans = [load_excerpt(excerpt, cache) for excerpt in excerpts]
    shape = (len(noises), len(snrs), len(excerpts))
    scores = {name: torch.zeros(shape, dtype=torch.float64) for name in methods}
    seconds = {name: 0.0 for name in methods}
    bar = tqdm(total=shape[0] * shape[1] * shape[2], desc="scoring", unit="excerpt", disable=not progress)
    for n, noise_name in enumerate(noises):
        for e, clean in enumerate(cleans):
            noise = make_noise(noise_name, e, cache.channels, clean.shape[-1], cache)
            for s, snr in enumerate(snrs):
                noisy = mix_at_snr(clean, noise, float(snr))
                for name, method in methods.items():
                    start = time.perf_counter()
                    with torch.inference_mode():
                        estimate = method(noisy, cache.sample_rate)
                    seconds[name] += time.perf_counter() - start
                    scores[name][n, s, e] = float(si_sdr(estimate.float(), clean))
                bar.update(1)
    bar.close()
    return scores, seconds


def summarize(
    scores: Dict[str, torch.Tensor], excerpts: Sequence[Excerpt], noises: Sequence[str], snrs: Sequence[float]
) -> Dict[str, Dict]:
    """Means for the tables: by (noise, SNR), overall, by music kind, and the improvements over the input."""
    noisy = scores["noisy input"]
    kinds = sorted({excerpt.kind for excerpt in excerpts}, key=["mix", "stem", "orchestra"].index)
    summary: Dict[str, Dict] = {"si_sdr": {}, "si_sdri": {}, "overall": {}, "overall_si_sdri": {}, "by_kind": {}}

    def by_condition(values: torch.Tensor) -> Dict[str, Dict[str, float]]:
        return {
            noise: {f"{snr:g}": float(values[n, s].mean()) for s, snr in enumerate(snrs)}
            for n, noise in enumerate(noises)
        }

    for name, values in scores.items():
        gain = values - noisy
        summary["si_sdr"][name] = by_condition(values)
        summary["si_sdri"][name] = by_condition(gain)
        summary["overall"][name] = float(values.mean())
        summary["overall_si_sdri"][name] = float(gain.mean())
        summary["by_kind"][name] = {
            kind: float(values[..., [i for i, x in enumerate(excerpts) if x.kind == kind]].mean()) for kind in kinds
        }
    return summary


def print_tables(summary: Dict[str, Dict], noises: Sequence[str], snrs: Sequence[float]) -> None:
    methods = list(summary["overall"])
    processed = methods[1:]
    rows = [
        [noise, f"{snr:g}"] + [fmt(summary["si_sdr"][m][noise][f"{snr:g}"]) for m in methods]
        for noise in noises
        for snr in snrs
    ]
    rows.append(["**mean**", "all"] + [fmt(summary["overall"][m]) for m in methods])
    print("\n### SI-SDR (dB), mean over excerpts\n")
    print(markdown_table(["noise", "SNR (dB)"] + methods, rows))

    rows = [
        [noise, f"{snr:g}"] + [fmt(summary["si_sdri"][m][noise][f"{snr:g}"]) for m in processed]
        for noise in noises
        for snr in snrs
    ]
    rows.append(["**mean**", "all"] + [fmt(summary["overall_si_sdri"][m]) for m in processed])
    print("\n### SI-SDR improvement over the noisy input (dB)\n")
    print(markdown_table(["noise", "SNR (dB)"] + processed, rows))

    kinds = list(next(iter(summary["by_kind"].values())))
    rows = [[kind] + [fmt(summary["by_kind"][m][kind]) for m in methods] for kind in kinds]
    print("\n### SI-SDR (dB) by music, mean over all noises and SNRs\n")
    print(markdown_table(["music"] + methods, rows))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", default=[], metavar="[LABEL=]PATH",
                        help="checkpoint to score (repeatable); without one only the spectral gate is scored")
    parser.add_argument("--json", type=Path, help="write every number (per excerpt too) to this file")
    parser.add_argument("--shared", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the multitrack excerpts")
    parser.add_argument("--snr", type=float, nargs="+", default=[0.0, 5.0], help="SNRs in dB")
    parser.add_argument("--noise", nargs="+", default=None, help="noise conditions (default: all)")
    parser.add_argument("--max-excerpts", type=int, default=0,
                        help="score only N excerpts spread over the list, every kind of music included (smoke runs)")
    parser.add_argument("--sample-rate", type=int, default=None, help="default: the first checkpoint's, else 22050")
    parser.add_argument("--channels", type=int, default=None, help="default: the first checkpoint's, else 1")
    parser.add_argument("--device", default="cpu", help="where checkpoints run (cpu, cuda, auto)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        root = require_folder(args.shared or default_shared_data(), "shared data folder")
        for folder in (SISEC, PHENICX):
            require_folder(root / folder, f"real recordings ({folder})")
        noises = args.noise or noise_names()
        unknown = sorted(set(noises) - set(noise_names()))
        if unknown:
            raise MusicfxError(f"unknown noise {unknown}; choose from {noise_names()}")
        rate, channels = checkpoint_format(args.ckpt[0]) if args.ckpt else (22050, 1)
        rate, channels = args.sample_rate or rate, args.channels or channels
        excerpts = excerpt_list(args.seconds)
        if args.max_excerpts:
            excerpts = spread(excerpts, args.max_excerpts)
        info = machine_info()
        print(machine_line(info))
        cache = AudioCache(root, rate, channels)
        music_seconds = sum(load_excerpt(x, cache).shape[-1] for x in excerpts) / rate
        print(
            f"Test set: {len(excerpts)} music excerpts ({music_seconds:.0f} s) x {len(noises)} noises x "
            f"SNR {', '.join(f'{s:g}' for s in args.snr)} dB, at {rate} Hz, {channels} channel(s)"
        )
        methods = build_methods(args.ckpt, args.device)
        scores, seconds = evaluate(methods, excerpts, noises, args.snr, cache, progress=not args.quiet)
    except MusicfxError as error:
        print(f"bench_denoise_quality: error: {error}", file=sys.stderr)
        return 1
    summary = summarize(scores, excerpts, noises, args.snr)
    print_tables(summary, noises, args.snr)
    audio_seconds = music_seconds * len(noises) * len(args.snr)
    print("\nProcessing time: " + ", ".join(
        f"{name} {seconds[name]:.1f} s (RTF {seconds[name] / audio_seconds:.3f})" for name in list(methods)[1:]
    ))
    if args.json:
        report = {
            "machine": info,
            "settings": {"sample_rate": rate, "channels": channels, "seconds": args.seconds, "snr_db": args.snr,
                         "noises": noises, "checkpoints": args.ckpt, "device": args.device},
            "excerpts": [asdict(excerpt) for excerpt in excerpts],
            "scores": {name: values.tolist() for name, values in scores.items()},
            "scores_axes": ["noise", "snr_db", "excerpt"],
            "processing_seconds": seconds,
            **summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
