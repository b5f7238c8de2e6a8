"""Random chunks of sources, the sampler that hands out example ids, and the DataLoader every datamodule uses.

Every example has an integer id, and everything random about it comes from
:func:`~musicfx.data.seeding.example_generator` ``(seed, id)``. Validation and test sets use ids ``0 .. n-1``
and are therefore fixed. For training, :class:`ExampleSampler` hands each DDP rank its own ids and moves to
fresh ids every epoch, so no two ranks, workers or epochs draw the same example, and the number of
DataLoader workers does not change what is drawn. :class:`ResumableLoader` saves the sampler's position in
the checkpoint, so a resumed run draws the examples the uninterrupted run would have drawn next.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from musicfx.data.seeding import example_generator, example_seed, splitmix64
from musicfx.data.sources import Source

def rms_db(audio: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Root-mean-square level in dB relative to full scale (1.0), over the last two dimensions.

    Args:
        audio: ``(..., channels, time)``; a 1-D tensor is taken as one channel.
        eps: floor on the mean square, so digital silence reads -100 dB instead of -inf.

    Returns:
        ``(...)``: a scalar for one ``(channels, time)`` chunk, ``(batch,)`` for a batch.
    """
    dims = (-1,) if audio.dim() == 1 else (-2, -1)
    return 10.0 * torch.log10(audio.float().pow(2).mean(dim=dims).clamp(min=eps))


class ExampleSampler(DistributedSampler):
    """Yields example ids ``epoch * examples_per_epoch + i`` for this rank's share of ``i``.

    Rank ``r`` of ``R`` gets ``i in range(r, examples_per_epoch, R)``, cut to the same length on every
    rank (the remainder is dropped, as DDP needs equal batch counts). Every (epoch, rank, position) thus
    maps to its own id.

    It subclasses :class:`~torch.utils.data.DistributedSampler` only so that Lightning leaves it in place
    under DDP (Lightning replaces samplers that are not); it does not call its ``__init__``, which needs an
    initialised process group.

    Args:
        examples_per_epoch: ids per epoch, over all ranks.
        num_replicas: world size; default: from ``torch.distributed`` when initialised, else 1.
        rank: this process's global rank; default: from ``torch.distributed`` when initialised, else 0.
    """

    def __init__(self, examples_per_epoch: int, num_replicas: Optional[int] = None, rank: Optional[int] = None) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas - 1}], got {rank}")
        if examples_per_epoch < num_replicas:
            raise ValueError(
                f"examples_per_epoch ({examples_per_epoch}) must be at least the number of ranks ({num_replicas})"
            )
        self.dataset = None
        self.examples_per_epoch = int(examples_per_epoch)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.shuffle = False  # ids are fresh every epoch; the examples behind them are already random
        self.seed = 0
        self.drop_last = True
        self.num_samples = self.examples_per_epoch // self.num_replicas
        self.total_size = self.num_samples * self.num_replicas
        # After a resume: the stream position the next pass starts at, whatever epoch Lightning counts.
        self.resume_at: Optional[int] = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def start(self) -> int:
        """Position of the pass's first id in this rank's stream: ``epoch * num_samples``, or, after a resume,
        where the interrupted run stopped (see :class:`ResumableLoader`)."""
        return self.resume_at if self.resume_at is not None else self.epoch * self.num_samples

    def example_id(self, position: int) -> int:
        """The id at ``position`` of this rank's stream: position ``epoch * num_samples + i`` is
        ``epoch * examples_per_epoch + rank + i * num_replicas``."""
        epoch, index = divmod(position, self.num_samples)
        return epoch * self.examples_per_epoch + self.rank + index * self.num_replicas

    def __iter__(self) -> Iterator[int]:
        first = self.start()
        return map(self.example_id, range(first, first + self.num_samples))

    def __len__(self) -> int:
        return self.num_samples


Draw = Callable[[torch.Generator], Dict[str, torch.Tensor]]


class ChunkDataset(Dataset):
    """Random chunks of several sources, one set per example id; every task's training examples.

    ``dataset[example_id]`` returns, for every key of ``sources``, a chunk ``(stems, channels,
    segment_frames)`` of one item of that source (a file, a song), chosen uniformly (or by
    ``source.item_weights()`` when the source has that method, as
    :class:`~musicfx.data.sources.NoiseFolder` does) at a uniform offset; items shorter than the segment are
    zero-padded at the end. With ``random_mix`` each stem comes from its own independently drawn item and
    offset (Open-Unmix's ``random_track_mix``), which multiplies the number of distinct mixtures.

    The first source is the clean signal: a chunk of it whose mixture (the sum of its stems) is quieter than
    ``silence_threshold_db`` is redrawn, up to ``max_tries`` times (after which the loudest draw is kept).
    Later sources (noise, say) may be quiet.

    Besides the chunks, an example holds ``"seed"`` (an int64 scalar for seeding the scene synthesis on the
    device) and the tensors returned by ``draw(generator)``. The seed, the draw and each source's chunk use
    separate streams split from :func:`~musicfx.data.seeding.example_generator` ``(seed, example_id)``, so
    changing the silence threshold or adding a source does not change the scene parameters.

    Args:
        sources: name -> :class:`~musicfx.data.sources.Source`; all must share one sample rate.
        segment_frames: chunk length in frames.
        num_examples: ``len(self)``; ids beyond it are still valid (:class:`ExampleSampler` uses them).
        seed: run seed (per split: :func:`~musicfx.data.seeding.split_seed`).
        silence_threshold_db: RMS level (dBFS) below which a chunk of the first source is redrawn;
            ``-inf`` (or ``max_tries=1``) disables rejection.
        max_tries: chunks drawn at most per example for the first source.
        draw: optional per-example parameter draw, ``generator -> {name: tensor}``.
        random_mix: draw each stem of a multi-stem source from its own item and offset.
    """

    def __init__(
        self,
        sources: Mapping[str, Source],
        segment_frames: int,
        num_examples: int,
        seed: int = 0,
        silence_threshold_db: float = -60.0,
        max_tries: int = 20,
        draw: Optional[Draw] = None,
        random_mix: bool = False,
    ) -> None:
        if not sources:
            raise ValueError("ChunkDataset needs at least one source")
        if segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
        if num_examples < 0:
            raise ValueError(f"num_examples must be >= 0, got {num_examples}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        rates = {key: source.sample_rate for key, source in sources.items()}
        if len(set(rates.values())) > 1:
            raise ValueError(f"sources must share one sample rate, got {rates}")
        for key, source in sources.items():
            if len(source) == 0:
                raise ValueError(f"source {key!r} holds no items")
        reserved = {"seed"} & set(sources)
        if reserved:
            raise ValueError(f"source names {sorted(reserved)} are reserved")
        self.sources = dict(sources)
        self.segment_frames = int(segment_frames)
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self.silence_threshold_db = float(silence_threshold_db)
        self.max_tries = int(max_tries)
        self.draw = draw
        self.random_mix = bool(random_mix)
        self._weights = {key: _item_weights(key, source) for key, source in self.sources.items()}
        self._frames = {key: [source.num_frames(i) for i in range(len(source))] for key, source in self.sources.items()}

    @property
    def sample_rate(self) -> int:
        return next(iter(self.sources.values())).sample_rate

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, example_id: Union[int, torch.Tensor]) -> Dict[str, torch.Tensor]:
        example_id = int(example_id)
        generator = example_generator(self.seed, example_id)
        # Sub-streams drawn up front, in a fixed order: the scene seed and parameters do not depend on the
        # sources, and no source's chunk depends on how many redraws another needed.
        scene_seed, draw_seed = torch.randint(0, 2**62, (2,), generator=generator).tolist()
        source_seeds = torch.randint(0, 2**62, (len(self.sources),), generator=generator).tolist()
        example: Dict[str, torch.Tensor] = {}
        for index, key in enumerate(self.sources):
            threshold = self.silence_threshold_db if index == 0 else -math.inf
            example[key] = self._chunk(key, torch.Generator().manual_seed(source_seeds[index]), threshold)
        example["seed"] = torch.tensor(scene_seed, dtype=torch.int64)
        if self.draw is not None:
            params = self.draw(torch.Generator().manual_seed(draw_seed))
            clash = set(params) & set(example)
            if clash:
                raise ValueError(f"draw() returned names that clash with the example's: {sorted(clash)}")
            example.update({name: torch.as_tensor(value) for name, value in params.items()})
        return example

    def _chunk(self, key: str, generator: torch.Generator, threshold_db: float) -> torch.Tensor:
        """A chunk of source ``key`` whose mixture is louder than ``threshold_db``, or the loudest of
        ``max_tries`` draws."""
        best: Optional[Tuple[float, torch.Tensor]] = None
        tries = self.max_tries if threshold_db > -math.inf else 1
        for _ in range(tries):
            chunk = self._draw_mixed(key, generator) if self.random_mix else self._draw_aligned(key, generator)
            if tries == 1:
                return chunk
            level = float(rms_db(chunk.sum(dim=0)))
            if level >= threshold_db:
                return chunk
            if best is None or level > best[0]:
                best = (level, chunk)
        return best[1]

    def _position(self, key: str, generator: torch.Generator) -> Tuple[int, int]:
        """An item (uniform, or by the source's weights) and a uniform offset in it."""
        frames, weights = self._frames[key], self._weights[key]
        if weights is None:
            item = int(torch.randint(0, len(frames), (1,), generator=generator))
        else:
            item = int(torch.multinomial(weights, 1, generator=generator))
        spare = frames[item] - self.segment_frames
        offset = int(torch.randint(0, spare + 1, (1,), generator=generator)) if spare > 0 else 0
        return item, offset

    def _draw_aligned(self, key: str, generator: torch.Generator) -> torch.Tensor:
        item, offset = self._position(key, generator)
        source = self.sources[key]
        return self._checked(key, source.read(item, offset, self.segment_frames), len(source.stems), item)

    def _draw_mixed(self, key: str, generator: torch.Generator) -> torch.Tensor:
        source, chunks = self.sources[key], []
        for stem in source.stems:
            item, offset = self._position(key, generator)
            chunks.append(self._checked(key, source.read(item, offset, self.segment_frames, (stem,)), 1, item))
        return torch.cat(chunks)

    def _checked(self, key: str, chunk: torch.Tensor, count: int, item: int) -> torch.Tensor:
        expected = (count, self.sources[key].channels, self.segment_frames)
        if tuple(chunk.shape) != expected:
            raise RuntimeError(f"source {key!r} returned {tuple(chunk.shape)} for item {item}, expected {expected}")
        return chunk


def _item_weights(key: str, source: Source) -> Optional[torch.Tensor]:
    method = getattr(source, "item_weights", None)
    if method is None:
        return None
    weights = torch.as_tensor(method(), dtype=torch.float64).flatten()
    if weights.numel() != len(source):
        raise ValueError(f"source {key!r}: item_weights() has {weights.numel()} entries for {len(source)} items")
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()) or float(weights.sum()) <= 0:
        raise ValueError(f"source {key!r}: item_weights() must be finite, non-negative and not all zero")
    return weights


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


class ResumableLoader(DataLoader):
    """A training DataLoader whose position in the example stream is part of the checkpoint.

    Lightning saves :meth:`state_dict` with the fit loop and hands it back to :meth:`load_state_dict` on a
    resume. The position counts the batches that reached the model (the datamodule calls :meth:`consume`
    for each), not those the workers and Lightning fetched ahead. After a resume, each pass continues the
    stream where the previous one stopped, so the run draws exactly the examples the uninterrupted run
    would have drawn next (whether Lightning resumes mid-epoch or starts a new epoch) instead of replaying
    the epoch's first ones.

    Args:
        dataset, batch_size, **kwargs: as for :class:`~torch.utils.data.DataLoader`.
        sampler: the :class:`ExampleSampler` handing out example ids.
    """

    def __init__(self, dataset: Dataset, batch_size: int, sampler: ExampleSampler, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self.consumed = 0
        self._passes = 0

    def __iter__(self) -> Iterator[Any]:
        if self._passes and self.sampler.resume_at is not None:
            self.sampler.resume_at += self.consumed * self.batch_size  # continue after what was used
        self._passes += 1
        self.consumed = 0
        return super().__iter__()

    def consume(self) -> None:
        """Count one batch that reached the model."""
        self.consumed += 1

    def state_dict(self) -> Dict[str, int]:
        return {"position": self.sampler.start() + self.consumed * self.batch_size}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.sampler.resume_at = int(state["position"])
        self._passes = 0


def make_loader(dataset: Dataset, batch_size: int, num_workers: int,
                sampler: Optional[ExampleSampler] = None, prefetch_factor: int = 2) -> DataLoader:
    """The DataLoader every musicfx datamodule uses: no shuffling (examples are random by id already),
    persistent workers, pinned memory on CUDA machines, ``prefetch_factor`` batches in flight per worker
    (torch's default; raise it when ``DataWaitMonitor`` shows the GPU waiting), and whole batches only
    when training (with a sampler, the loader is a :class:`ResumableLoader`)."""
    settings: Dict[str, Any] = dict(num_workers=num_workers, persistent_workers=num_workers > 0,
                                    pin_memory=torch.cuda.is_available())
    if num_workers > 0:
        settings["prefetch_factor"] = prefetch_factor
    if sampler is not None:
        return ResumableLoader(dataset, batch_size, sampler, drop_last=True, **settings)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **settings)


__all__: List[str] = [
    "ChunkDataset",
    "ExampleSampler",
    "ResumableLoader",
    "make_loader",
    "usable_cores",
    "example_generator",
    "example_seed",
    "rms_db",
    "splitmix64",
]
