"""Separation training data: examples per second of musicfx's pipeline against Open-Unmix's and Demucs's.

All pipelines read the same stems: a temporary MUSDB18-HQ-like tree (``train/<song>/{vocals,drums,bass,
other}.wav``, 44.1 kHz stereo 16-bit) made from the real SiSEC 2011 "Ultimate NZ Tour" multitrack in
``shared/data`` (other = guitar + synth), replicated into ``--songs`` songs, each rotated to its own start
and with its own per-stem gains, so that there is something to remix. Each pipeline turns those files into
training mixes of ``--segment`` seconds, ``--batch`` per batch, through a ``DataLoader`` with 0 and 2
workers (the same settings for all: :func:`musicfx.data.sampling.make_loader`):

* **Open-Unmix**: ``openunmix.data.FixedSourcesTrackFolderDataset`` (target vocals, interferers drums, bass,
  other), ``random_track_mix=True`` (each interferer from a random song and offset), its ``gain`` and
  ``channelswap`` source augmentations; the workers return ``(mix, target)``.
* **musicfx, random mix** (compared with Open-Unmix): :class:`~musicfx.tasks.separate.SeparationData` with
  ``random_mix=True``: its :class:`~musicfx.data.sampling.ChunkDataset` in the workers (each stem from
  its own song and offset, read from the memory-mapped decoded cache), then, on the batch,
  :class:`~musicfx.synth.remix.RemixAugment` (shift, sign flip, channel swap, gain, remix) and the mix.
* **Demucs**: stems read the way ``demucs.wav.Wavset`` reads them (one file read per stem at an offset,
  normalized by the song's mixture mean and std), then ``demucs.augment`` on the batch, in Demucs's order:
  ``Shift``, ``FlipChannels``, ``FlipSign``, ``Scale``, ``Remix`` (groups of 4), and the mix.
* **musicfx** (compared with Demucs): the same as above with aligned stems (``random_mix=False``).

Each pipeline is timed whole (DataLoader, then the batch step in the main process on the CPU, as a CPU run
trains) and as the DataLoader alone (what feeds a GPU, where musicfx and Demucs do the batch step); the
augmentation chains are also timed alone on a batch already in memory. Pipelines are measured in turn
within each repeat (so a change in the machine's load hits all of them alike); each measurement times
``--batches`` batches after a warm-up, and tables show the median over ``--repeats``; a ratio is the median
over repeats of ours / peer measured back to back. On a busy machine with few cores, pass ``--threads 1``:
torch's intra-op threads then fight the other processes, and small ops in the main process slow down
several-fold (DataLoader workers always run one thread each).

The peers are not project dependencies; ``benchmarks/peers.sh`` installs them in ``.venv-peers``::

    bash benchmarks/peers.sh
    .venv-peers/bin/python benchmarks/bench_separation_data.py [--songs 8] [--segment 6] [--batch 8] \\
        [--workers 0 2] [--batches 8] [--repeats 5] [--threads N] [--markdown PATH] [--json PATH]

Without them the script measures musicfx only. Open-Unmix reads files with ``torchaudio``, which does not
import against the CPU torch here: when it does not, a stand-in module that reads with ``soundfile`` (the
way torchaudio's soundfile backend does) takes its name; the output says which was used.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import io
import json
import shlex
import statistics
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import soundfile
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

import common

SISEC = "sisec2011-nz-tour"
#: MUSDB18's four stems, made from the SiSEC 2011 stems: guitar and synth together are "other".
STEM_SOURCES: Dict[str, Tuple[str, ...]] = {
    "vocals": ("vocals",), "drums": ("drums",), "bass": ("bass",), "other": ("guitar", "synth"),
}
STEMS: Tuple[str, ...] = tuple(STEM_SOURCES)
SAMPLE_RATE = 44100
#: Demucs's and musicfx's remix group size (Demucs's default configuration).
GROUP_SIZE = 4
PEERS_HINT = (
    "Open-Unmix and Demucs are not importable here; install them with `bash benchmarks/peers.sh` and run "
    "this script with `.venv-peers/bin/python benchmarks/bench_separation_data.py` to compare"
)
#: Pipelines, in table order.
LABELS: Dict[str, str] = {
    "openunmix": "Open-Unmix FixedSourcesTrackFolderDataset (random_track_mix, gain, channelswap)",
    "musicfx-random-mix": "musicfx ChunkDataset(random_mix) + RemixAugment",
    "demucs": "Demucs Wavset-style reads + demucs.augment (Shift, FlipChannels, FlipSign, Scale, Remix)",
    "musicfx": "musicfx ChunkDataset + RemixAugment",
}
#: What is compared with what: (ours, peer).
COMPARISONS: Tuple[Tuple[str, str], ...] = (("musicfx-random-mix", "openunmix"), ("musicfx", "demucs"))
#: What is timed: the whole pipeline (DataLoader + batch step on the CPU), and the DataLoader alone.
MODES: Tuple[str, ...] = ("pipeline", "loader")


# ------------------------------------------------------------------------------------------------ peers
def _soundfile_torchaudio() -> types.ModuleType:
    """A module standing in for ``torchaudio`` with the calls ``openunmix.data`` makes, read by soundfile.

    Open-Unmix uses torchaudio only for I/O: ``info(path)`` (``sample_rate``, ``num_frames``,
    ``num_channels``), ``load(path, frame_offset, num_frames) -> (Tensor (channels, frames), rate)`` and
    ``get_audio_backend()``. These read the way torchaudio's own soundfile backend does (a seek, a float32
    read of just those frames, a transposed view), so Open-Unmix's per-example work is what it would be.
    """
    module = types.ModuleType("torchaudio", "musicfx benchmark stand-in: torchaudio's I/O calls by soundfile")
    module.__version__ = "soundfile-shim"

    def info(path: Any) -> types.SimpleNamespace:
        found = soundfile.info(str(path))
        return types.SimpleNamespace(sample_rate=found.samplerate, num_frames=found.frames,
                                     num_channels=found.channels)

    def load(path: Any, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
             channels_first: bool = True) -> Tuple[Tensor, int]:
        data, rate = soundfile.read(str(path), start=frame_offset, frames=num_frames, dtype="float32",
                                    always_2d=True)
        audio = torch.from_numpy(data)
        return (audio.t() if channels_first else audio), rate

    module.info = info
    module.load = load
    module.get_audio_backend = lambda: "soundfile"
    module.set_audio_backend = lambda backend: None
    return module


def torchaudio_backend() -> str:
    """Make ``import torchaudio`` work for Open-Unmix; return what it reads with."""
    existing = sys.modules.get("torchaudio")
    if existing is not None and getattr(existing, "__version__", "") == "soundfile-shim":
        return "soundfile (stand-in for torchaudio)"
    try:
        import torchaudio

        return f"torchaudio {torchaudio.__version__}"
    except Exception:  # noqa: BLE001 - the registry's torchaudio fails with OSError (libc10_cuda.so) here
        sys.modules["torchaudio"] = _soundfile_torchaudio()
        return "soundfile (stand-in for torchaudio)"


def peer_versions() -> Dict[str, Optional[str]]:
    """Installed versions of the peers whose modules import (``None``: not importable)."""
    versions: Dict[str, Optional[str]] = {}
    try:
        import demucs.augment  # noqa: F401

        versions["demucs"] = importlib.metadata.version("demucs")
    except ImportError:
        versions["demucs"] = None
    if importlib.util.find_spec("openunmix") is None:  # before the stand-in takes torchaudio's name
        versions["openunmix"] = None
        return versions
    try:
        torchaudio_backend()
        with contextlib.redirect_stderr(io.StringIO()):
            import openunmix.data  # noqa: F401
        versions["openunmix"] = importlib.metadata.version("openunmix")
    except ImportError:
        versions["openunmix"] = None
    return versions


# ------------------------------------------------------------------------------------------------ stems
def load_sisec(shared: Path, frames: int = -1) -> Tensor:
    """The SiSEC 2011 multitrack as MUSDB18's stems.

    Args:
        shared: the shared data folder.
        frames: read only the first ``frames`` (-1: all 18 s).

    Returns:
        float32 ``(4, 2, time)``: vocals, drums, bass, other (= guitar + synth), at 44.1 kHz.
    """
    from musicfx.audio.io import read_audio

    folder = common.require_folder(shared / SISEC, "the SiSEC 2011 multitrack")
    stems = []
    for sources in STEM_SOURCES.values():
        audio = [read_audio(folder / f"{name}.wav", sample_rate=SAMPLE_RATE, channels=2, frames=frames)[0]
                 for name in sources]
        stems.append(torch.stack(audio).sum(dim=0))
    return torch.stack(stems)


def song_variant(stems: Tensor, index: int, songs: int) -> Tuple[Tensor, int, Tensor]:
    """Song ``index`` of ``songs``: the stems rotated together so the song starts ``index / songs`` of the
    way in, each stem scaled by its own gain in [0.5, 1) (drawn from a generator seeded by ``index``).

    Returns:
        ``(stems (S, C, T), offset in frames, gains (S,))``.
    """
    gains = 0.5 + 0.5 * torch.rand(stems.shape[0], generator=torch.Generator().manual_seed(index))
    offset = index * stems.shape[-1] // max(songs, 1)
    return torch.roll(stems, -offset, dims=-1) * gains[:, None, None], offset, gains


def build_tree(shared: Path, root: Path, songs: int, seconds: Optional[float] = None) -> Path:
    """Write a MUSDB18-HQ-like tree of ``songs`` training songs (and one each in ``valid/`` and ``test/``,
    which only make the layout recognisable) from the SiSEC multitrack.

    Args:
        shared: the shared data folder.
        root: where to write (created).
        songs: training songs, each a :func:`song_variant`.
        seconds: cut songs to this length (``None``: the recording's 18 s).

    Returns:
        ``root``; songs are ``root/train/song_XX/<stem>.wav``, 16-bit like MUSDB18-HQ.
    """
    from musicfx.audio.io import write_audio

    stems = load_sisec(shared, -1 if seconds is None else int(round(seconds * SAMPLE_RATE)))
    folders = [root / "train" / f"song_{index:02d}" for index in range(songs)]
    folders += [root / "valid" / "song_valid", root / "test" / "song_test"]
    for index, folder in enumerate(folders):
        song = song_variant(stems, index, songs)[0]
        if index >= songs:
            song = song[..., :SAMPLE_RATE]
        folder.mkdir(parents=True, exist_ok=True)
        for name, audio in zip(STEMS, song):
            write_audio(folder / f"{name}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
    return root


# ------------------------------------------------------------------------------------------------ Demucs
class WavsetChunks(Dataset):
    """Random chunks of song folders read the way Demucs's ``demucs.wav.Wavset`` reads them.

    Per example: one read per stem file at the offset (``torchaudio.load(frame_offset, num_frames)`` in
    Demucs, soundfile here), the stems stacked and normalized by the song mixture's mean and standard
    deviation (Demucs's default ``normalize``). Wavset's channel conversion and resampling are no-ops on
    44.1 kHz stereo files. Wavset steps through each song at a fixed stride and the DataLoader shuffles;
    here each example id draws its song and offset uniformly, as the other pipelines do: the work is the
    same. (``demucs.wav`` itself does not import without Demucs's training dependencies, dora among them.)

    Args:
        folder: the song folders (``<song>/<stem>.wav``).
        stems: stem names, in order.
        frames: frames per example.
        num_examples: ``len(self)``.
        seed: seeds the positions.
    """

    def __init__(self, folder: Path, stems: Sequence[str], frames: int, num_examples: int, seed: int = 0) -> None:

        self.stems = tuple(stems)
        self.frames = int(frames)
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self.songs = sorted(path for path in folder.iterdir() if path.is_dir())
        self.lengths: List[int] = []
        self.stats: List[Tuple[float, float]] = []
        for song in self.songs:
            audio = [torch.from_numpy(soundfile.read(str(song / f"{s}.wav"), dtype="float32", always_2d=True)[0])
                     for s in self.stems]
            mono = torch.stack(audio).sum(dim=0).mean(dim=1)  # Wavset's statistics: the mixture, mono
            self.lengths.append(min(a.shape[0] for a in audio))
            self.stats.append((float(mono.mean()), float(mono.std())))

    def __len__(self) -> int:
        return self.num_examples

    def position(self, index: int) -> Tuple[int, int]:
        """The song and offset of example ``index``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        song = int(torch.randint(len(self.songs), (1,), generator=generator))
        spare = max(self.lengths[song] - self.frames, 0)
        return song, int(torch.randint(spare + 1, (1,), generator=generator))

    def __getitem__(self, index: int) -> Tensor:
        """float32 ``(stems, channels, frames)``, normalized."""

        song, offset = self.position(index)
        wavs = []
        for stem in self.stems:
            data, _ = soundfile.read(str(self.songs[song] / f"{stem}.wav"), start=offset, frames=self.frames,
                                     dtype="float32", always_2d=True)
            wavs.append(torch.from_numpy(data).t())
        example = torch.stack(wavs)
        mean, std = self.stats[song]
        example = (example - mean) / std
        return nn.functional.pad(example, (0, self.frames - example.shape[-1]))


def demucs_augment(shift: int, group_size: int = GROUP_SIZE) -> nn.Module:
    """Demucs's training augmentations as its solver chains them (default configuration, no repitch)."""
    from demucs import augment

    chain = nn.Sequential(
        augment.Shift(shift=shift, same=False), augment.FlipChannels(), augment.FlipSign(),
        augment.Scale(proba=1.0, min=0.25, max=1.25), augment.Remix(proba=1.0, group_size=group_size),
    )
    return chain.train()  # Demucs's augmentations act only in training mode


# ------------------------------------------------------------------------------------------------ pipelines
@dataclass
class Pipeline:
    """A training-data pipeline: a DataLoader and the work done on each batch once it is on the device.

    Attributes:
        key: short name (:data:`LABELS`).
        loader: ``(num_workers, num_examples) -> DataLoader``.
        step: ``batch -> mix (B, C, T)``: what happens to a batch before the model sees it.
        device_work: whether ``step`` does real work (Open-Unmix's only picks the mix out of the batch).
        augment: the augmentation module ``step`` applies, when it is musicfx's.
    """

    key: str
    loader: Callable[[int, int], DataLoader]
    step: Callable[[Any], Tensor]
    device_work: bool = True
    augment: Optional[nn.Module] = None


def musicfx_pipeline(root: Path, cache_dir: Path, segment: float, batch: int, random_mix: bool) -> Pipeline:
    """:class:`~musicfx.tasks.separate.SeparationData`'s training path (decodes into the cache now)."""
    from musicfx.data.sampling import ExampleSampler
    from musicfx.data.sampling import make_loader
    from musicfx.tasks.separate import SeparationData

    data = SeparationData(root=str(root), segment=segment, batch_size=batch, random_mix=random_mix,
                          cache_dir=str(cache_dir), remix_group_size=GROUP_SIZE)
    data.source("train")

    def loader(workers: int, examples: int) -> DataLoader:
        return make_loader(data.dataset("train", examples), batch, workers, ExampleSampler(examples))

    def step(raw: Dict[str, Tensor]) -> Tensor:
        # on_after_batch_transfer with a trainer in training augments; called here without one, it only
        # sums targets and mix, so the augmentation is applied first by hand.
        stems = data.augment(raw["stems"], raw["seed"])
        return data.on_after_batch_transfer({"stems": stems, "seed": raw["seed"]}, 0)["mix"]

    return Pipeline("musicfx-random-mix" if random_mix else "musicfx", loader, step, augment=data.augment)


def musicfx_shift(segment: float) -> int:
    """The random shift in frames :class:`SeparationData` reads beyond the segment (its default)."""
    from musicfx.tasks.separate import SeparationData

    return SeparationData(segment=segment).augment.shift


def openunmix_pipeline(root: Path, segment: float, batch: int) -> Pipeline:
    """Open-Unmix's track-folder dataset with random track mixing and its default augmentations."""
    from musicfx.data.sampling import make_loader

    torchaudio_backend()
    import openunmix.data as unmix

    with contextlib.redirect_stderr(io.StringIO()):  # its track scan draws a progress bar
        dataset = unmix.FixedSourcesTrackFolderDataset(
            root=str(root), split="train", target_file="vocals.wav",
            interferer_files=["drums.wav", "bass.wav", "other.wav"], seq_duration=segment, random_chunks=True,
            random_track_mix=True, source_augmentations=unmix.aug_from_str(["gain", "channelswap"]),
            sample_rate=float(SAMPLE_RATE),
        )

    def loader(workers: int, examples: int) -> DataLoader:
        # Its length is one example per song; draw as many as needed (its target song is the index).
        sampler = RandomSampler(dataset, replacement=True, num_samples=examples,
                                generator=torch.Generator().manual_seed(0))
        return make_loader(dataset, batch, workers, sampler)

    return Pipeline("openunmix", loader, lambda pair: pair[0], device_work=False)


def demucs_pipeline(root: Path, segment: float, batch: int, shift: int) -> Pipeline:
    """Wavset-style reads of ``segment`` + ``shift`` and Demucs's augmentation chain on the batch."""
    from musicfx.data.sampling import make_loader

    frames = int(round(segment * SAMPLE_RATE)) + shift
    chain = demucs_augment(shift)

    # Ids index positions; the sampler draws as many as a measurement needs.
    dataset = WavsetChunks(root / "train", STEMS, frames, num_examples=1 << 20)

    def loader(workers: int, examples: int) -> DataLoader:
        sampler = RandomSampler(dataset, num_samples=examples, generator=torch.Generator().manual_seed(0))
        return make_loader(dataset, batch, workers, sampler)

    return Pipeline("demucs", loader, lambda stems: chain(stems).sum(dim=1))


# ------------------------------------------------------------------------------------------------ timing
def time_pipeline(pipeline: Pipeline, workers: int, batch: int, batches: int, warmup: int,
                  with_step: bool = True) -> float:
    """Examples per second of ``pipeline`` over ``batches`` batches, after ``warmup`` untimed ones.

    A fresh loader each time: its workers start and fill their prefetch queues during the warm-up, so the
    timed batches are steady-state, and no idle workers of another pipeline are left behind.

    Args:
        with_step: apply the pipeline's batch step (on the CPU, in this process); ``False`` times the
            DataLoader alone, which is what feeds a GPU whose step costs next to nothing.
    """
    step = pipeline.step if with_step else (lambda raw: raw)
    loader = pipeline.loader(workers, (warmup + batches) * batch)
    iterator = iter(loader)
    with torch.no_grad():
        for _ in range(warmup):
            step(next(iterator))
        start = time.perf_counter()
        for _ in range(batches):
            step(next(iterator))
        elapsed = time.perf_counter() - start
    del iterator, loader
    return batches * batch / elapsed


def output_shape(pipeline: Pipeline, batch: int) -> Tuple[int, ...]:
    """The shape of the mixes ``pipeline`` makes (all pipelines must agree, or they do not compare)."""
    loader = pipeline.loader(0, batch)
    with torch.no_grad():
        return tuple(pipeline.step(next(iter(loader))).shape)


def median_time(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``run`` in seconds over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_augment(stems: Tensor, seeds: Tensor, ours: nn.Module, peer: Optional[nn.Module],
                  repeats: int) -> Dict[str, Any]:
    """The augmentation chains alone on one batch in memory: ``{name: seconds per batch}`` and the ratio.

    The chains are timed in turn, ``repeats`` rounds of 3 calls each; each gets the median.
    """
    runs: Dict[str, List[float]] = {"musicfx": []}
    chains: Dict[str, Callable[[], object]] = {"musicfx": lambda: ours(stems, seeds)}
    if peer is not None:
        runs["demucs"] = []
        chains["demucs"] = lambda: peer(stems)
    ratios = []
    with torch.no_grad():
        for _ in range(max(1, repeats)):
            for name, run in chains.items():
                runs[name].append(median_time(run, 3))
            if peer is not None:
                ratios.append(runs["demucs"][-1] / runs["musicfx"][-1])
    result: Dict[str, Any] = {name: statistics.median(times) for name, times in runs.items()}
    result["ratio"] = statistics.median(ratios) if ratios else None
    return result


# ------------------------------------------------------------------------------------------------ report
def _fmt_ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _columns(workers: Sequence[str]) -> List[Tuple[str, str, str]]:
    """``(mode, workers, header)`` of the table columns: the whole pipeline, then the DataLoader alone."""
    return [(mode, w, f"{w} workers" + ("" if mode == "pipeline" else ", loader only"))
            for mode in MODES for w in workers]


def report(results: Dict[str, Any]) -> str:
    """The markdown section: machine, command, settings and the tables."""
    settings = results["settings"]
    columns = _columns([str(w) for w in settings["workers"]])
    headers = [header for _, _, header in columns]
    pipelines = results["pipelines"]
    peers = ", ".join(f"{name} {version}" for name, version in results["peers"].items() if version)
    lines = [
        common.machine_line(results["machine"]),
        "",
        f"Command: `{results['command']}`",
        "",
        f"{settings['songs']} songs of {settings['song_seconds']:g} s made from `{SISEC}` (other = guitar + "
        f"synth), 44.1 kHz stereo 16-bit wav; segment {settings['segment']:g} s, batch {settings['batch']}, "
        f"shift {settings['shift'] / SAMPLE_RATE:g} s, remix groups of {GROUP_SIZE}; {settings['batches']} "
        f"batches timed after {settings['warmup']} (+ 2 per worker) warm-up ones, median of "
        f"{settings['repeats']} repeats. Peers: {peers or 'not installed'}; Open-Unmix reads with "
        f"{results['torchaudio']}.",
        "",
        "Examples per second. *Pipeline*: DataLoader, then the batch step (augmentation and mix) in the main "
        "process on the CPU, as a CPU run trains; *loader only*: the DataLoader alone, which is what feeds a "
        "GPU that does the batch step (Open-Unmix does everything in the loader: both are the same "
        "measurement):",
        "",
    ]
    rows = [[LABELS[key]] + [common.fmt(pipelines[mode][key][w]["median"], 1) for mode, w, _ in columns]
            for key in LABELS if key in pipelines["pipeline"]]
    lines.append(common.markdown_table(["pipeline"] + headers, rows))
    lines += ["", "Ratios, musicfx / peer, in examples per second (above 1: musicfx is faster):", ""]
    rows = [[f"{ours} / {peer}"] + [_fmt_ratio(results["ratios"][mode][f"{ours}/{peer}"][w]) for mode, w, _ in columns]
            for ours, peer in COMPARISONS if f"{ours}/{peer}" in results["ratios"]["pipeline"]]
    lines.append(common.markdown_table(["data pipeline"] + headers, rows) if rows else PEERS_HINT + ".")
    augment = results["augment"]
    shape = "x".join(str(d) for d in augment["shape"])
    lines += ["", f"Augmentation chain alone, one batch {shape} (batch, stems, channels, frames) in memory, CPU:", ""]
    rows = [["musicfx RemixAugment", common.fmt(augment["musicfx"] * 1e3, 1),
             common.fmt(settings["batch"] / augment["musicfx"], 1)]]
    if augment.get("demucs") is not None:
        rows.append(["demucs.augment chain", common.fmt(augment["demucs"] * 1e3, 1),
                     common.fmt(settings["batch"] / augment["demucs"], 1)])
        rows.append(["ratio musicfx / demucs", "", _fmt_ratio(augment["ratio"])])
    lines.append(common.markdown_table(["augmentation", "ms per batch", "examples/s"], rows))
    return "\n".join(lines) + "\n"


def _display_python() -> str:
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(common.REPO)) if executable.is_relative_to(common.REPO) else "python"
    except ValueError:
        return "python"


# ------------------------------------------------------------------------------------------------ main
def run(args: argparse.Namespace, workdir: Path) -> Dict[str, Any]:
    """Build the tree, the pipelines, and measure them; the results as a JSON-able dict."""
    machine = common.machine_info()  # the load before this run adds its own
    versions = peer_versions()
    have_peers = all(versions.values())
    backend = torchaudio_backend() if versions.get("openunmix") else "-"
    if not have_peers:
        print(PEERS_HINT + "; measuring musicfx only.", flush=True)
    root = build_tree(args.shared, workdir / "songs", args.songs, args.song_seconds)
    song_seconds = (args.song_seconds if args.song_seconds is not None
                    else soundfile.info(str(args.shared / SISEC / "vocals.wav")).duration)
    shift = musicfx_shift(args.segment)
    pipelines = [
        musicfx_pipeline(root, workdir / "cache", args.segment, args.batch, random_mix=True),
        musicfx_pipeline(root, workdir / "cache", args.segment, args.batch, random_mix=False),
    ]
    if have_peers:
        pipelines.insert(0, openunmix_pipeline(root, args.segment, args.batch))
        pipelines.insert(2, demucs_pipeline(root, args.segment, args.batch, shift))
    shapes = {pipeline.key: output_shape(pipeline, args.batch) for pipeline in pipelines}
    if len(set(shapes.values())) != 1:
        raise RuntimeError(f"the pipelines make mixes of different shapes, so they do not compare: {shapes}")
    # Every file is read once above (into the decoded cache and the page cache): timings start warm.

    names = [f"{ours}/{peer}" for ours, peer in COMPARISONS if peer in shapes]
    runs = {mode: {p.key: {str(w): [] for w in args.workers} for p in pipelines} for mode in MODES}
    ratios = {mode: {name: {str(w): [] for w in args.workers} for name in names} for mode in MODES}
    for repeat in range(args.repeats):
        for workers in args.workers:
            # Rotate the order so that no pipeline always runs right after the same other one.
            order = pipelines[repeat % len(pipelines):] + pipelines[: repeat % len(pipelines)]
            measured: Dict[str, Dict[str, float]] = {mode: {} for mode in MODES}
            for pipeline in order:
                warmup = args.warmup + 2 * workers
                speed = time_pipeline(pipeline, workers, args.batch, args.batches, warmup)
                measured["pipeline"][pipeline.key] = speed
                measured["loader"][pipeline.key] = (
                    time_pipeline(pipeline, workers, args.batch, args.batches, warmup, with_step=False)
                    if pipeline.device_work else speed
                )
            for mode in MODES:
                for key, speed in measured[mode].items():
                    runs[mode][key][str(workers)].append(speed)
                for name in names:
                    ours, peer = name.split("/")
                    ratios[mode][name][str(workers)].append(measured[mode][ours] / measured[mode][peer])
            print(f"repeat {repeat + 1}/{args.repeats}, {workers} workers, examples/s (loader only): "
                  + ", ".join(f"{key} {measured['pipeline'][key]:.1f} ({measured['loader'][key]:.1f})"
                              for key in measured["pipeline"]), flush=True)

    # One aligned batch, as the augmentation sees it.
    aligned = next(p for p in pipelines if p.key == "musicfx")
    raw = next(iter(aligned.loader(0, args.batch)))
    augment = bench_augment(raw["stems"], raw["seed"], aligned.augment,
                            demucs_augment(shift) if have_peers else None, args.repeats)
    augment["shape"] = list(raw["stems"].shape)

    return {
        "machine": machine,
        "command": args.command,
        "settings": {
            "songs": args.songs, "song_seconds": song_seconds, "segment": args.segment, "batch": args.batch,
            "workers": list(args.workers), "batches": args.batches, "warmup": args.warmup,
            "repeats": args.repeats, "shift": shift, "threads": torch.get_num_threads(),
            "load_average_1min_after": common.machine_info()["load_average_1min"],
        },
        "peers": versions,
        "torchaudio": backend,
        "mix_shape": list(next(iter(shapes.values()))),
        "pipelines": {mode: {key: {w: {"median": statistics.median(values), "runs": values}
                                   for w, values in by.items()} for key, by in runs[mode].items()}
                      for mode in MODES},
        "ratios": {mode: {name: {w: statistics.median(values) for w, values in by.items()}
                          for name, by in ratios[mode].items()} for mode in MODES},
        "augment": augment,
    }


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=common.default_shared_data(), help="the shared data folder")
    parser.add_argument("--songs", type=int, default=8, help="training songs made from the multitrack")
    parser.add_argument("--song-seconds", type=float, default=None, help="cut songs to this length (default 18 s)")
    parser.add_argument("--segment", type=float, default=6.0, help="seconds per example")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts")
    parser.add_argument("--batches", type=int, default=8, help="batches timed per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (plus 2 per worker)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the main process (0: default)")
    parser.add_argument("--workdir", type=Path, default=None, help="where songs and cache go (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a smoke test")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the markdown section here")
    args = parser.parse_args(None if argv is None else list(argv))
    args.command = " ".join([_display_python(), "benchmarks/bench_separation_data.py"]
                            + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)])
    if args.quick:
        args.songs, args.song_seconds, args.segment, args.batch = 2, 2.0, 1.0, GROUP_SIZE
        args.workers, args.batches, args.warmup, args.repeats = [0], 1, 1, 1
    if args.batch % GROUP_SIZE:
        parser.error(f"--batch must be a multiple of {GROUP_SIZE}: Demucs's Remix needs whole groups")
    if args.song_seconds is not None and args.song_seconds < args.segment + 0.5:
        parser.error("--song-seconds must exceed --segment by the 0.5 s shift")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    from musicfx.errors import MusicfxError

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        with contextlib.ExitStack() as stack:
            workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sep-")))
            results = run(args, workdir)
    except MusicfxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    section = report(results)
    print("\n" + section)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
