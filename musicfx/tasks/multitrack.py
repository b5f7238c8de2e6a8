"""The data side shared by every multitrack task (separate, debleed, automix).

:class:`MultitrackData` owns what those tasks have in common: the songs (MUSDB18, MUSDB18-HQ, any folder
of stem folders, or the built-in generator, by :func:`~musicfx.data.multitrack.multitrack_source`), their
splits, and DataLoaders of raw stem chunks ``(stems, channels, time)`` with per-example seeds. Each task's
datamodule subclasses it once and turns the raw stems into its training scene on the device in
``on_after_batch_transfer`` (remix, bleed, mixing console).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

SPLIT_SEEDS = {"train": 0, "valid": 1, "test": 2}


def make_loader(dataset, batch_size: int, num_workers: int, sampler=None, prefetch_factor: int = 2) -> DataLoader:
    """The DataLoader every musicfx datamodule uses: no shuffling (examples are random by id already),
    persistent workers, pinned memory on CUDA machines, ``prefetch_factor`` batches in flight per worker
    (torch's default 2; raise it when DataWaitMonitor shows the GPU waiting), and whole batches only when
    training."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
        persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(), drop_last=sampler is not None,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )


class MultitrackData(pl.LightningDataModule):
    """Random chunks of multitrack songs, one ``(stems, channels, time)`` tensor per example.

    Args:
        root: MUSDB18 (``.stem.mp4``), MUSDB18-HQ (``train/``, ``test/`` wav folders) or a folder of song
            folders holding ``<stem>.wav`` files; ``None``: the built-in generator (no download).
        stems: stem names read from each song, in order (a missing stem is silence, with a warning).
        sample_rate, channels: what examples are made at (files are converted once, into the cache).
        segment: example length in seconds.
        batch_size, num_workers: DataLoader settings (per device).
        train_examples: examples per training epoch (over all devices).
        val_examples, test_examples: size of the fixed validation and test sets.
        random_mix: draw each stem of a training example from its own song and offset (Open-Unmix's
            ``random_track_mix``); validation and test examples always keep songs intact.
        silence_threshold_db: a chunk whose mixture is quieter than this is redrawn.
        seed: seeds every example; a seed reproduces the data of a run.
        cache_dir: where decoded audio is memory-mapped (default ``$MUSICFX_CACHE``).
        generated_items: songs per split of the built-in generator.
        generated_duration: seconds per generated song.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        stems: Sequence[str] = ("vocals", "drums", "bass", "other"),
        sample_rate: int = 44100,
        channels: int = 2,
        segment: float = 6.0,
        batch_size: int = 8,
        num_workers: int = 2,
        train_examples: int = 4096,
        val_examples: int = 32,
        test_examples: int = 64,
        random_mix: bool = False,
        silence_threshold_db: float = -60.0,
        seed: int = 0,
        cache_dir: Optional[str] = None,
        generated_items: int = 64,
        generated_duration: float = 20.0,
    ) -> None:
        super().__init__()
        if len(stems) == 0:
            raise ValueError("stems must name at least one stem")
        self.root = root
        self.stems = tuple(stems)
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment_frames = int(round(segment * sample_rate))
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_examples = train_examples
        self.val_examples = val_examples
        self.test_examples = test_examples
        self.random_mix = random_mix
        self.silence_threshold_db = silence_threshold_db
        self.seed = seed
        self.cache_dir = cache_dir
        self.generated_items = generated_items
        self.generated_duration = generated_duration
        self._sources: Dict[str, Any] = {}

    # ------------------------------------------------------------------------------- hooks for subclasses
    @property
    def extra_frames(self) -> int:
        """Frames read beyond the segment, for augmentations that crop (a random shift)."""
        return 0

    @property
    def draw(self) -> Optional[Callable[[torch.Generator], Dict[str, torch.Tensor]]]:
        """Per-example scene parameters drawn on the CPU (``generator -> {name: tensor}``), or ``None``."""
        return None

    # ------------------------------------------------------------------------------------------- sources
    def source(self, split: str):
        """The songs of ``split`` (``"train"``, ``"valid"`` or ``"test"``), built once."""
        from musicfx.data.multitrack import multitrack_source

        if split not in self._sources:
            kwargs: Dict[str, Any] = {}
            if self.root is None:
                kwargs = dict(
                    num_items=self.generated_items, duration=self.generated_duration,
                    seed=self.seed * 3 + SPLIT_SEEDS[split],
                )
            else:
                kwargs = dict(cache_dir=self.cache_dir)
            self._sources[split] = multitrack_source(
                self.root, split=split, stems=self.stems, sample_rate=self.sample_rate, channels=self.channels,
                **kwargs,
            )
        return self._sources[split]

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit"):
            self.source("train")
        if stage in (None, "fit", "validate"):
            self.source("valid")
        if stage in (None, "test", "predict"):
            self.source("test")

    # --------------------------------------------------------------------------------------- dataloaders
    def dataset(self, split: str, num_examples: int):
        """Stem chunks of ``split``; seeds differ per split, so evaluation never repeats training examples."""
        from musicfx.data.multitrack import StemChunkDataset

        training = split == "train"
        return StemChunkDataset(
            self.source(split), self.segment_frames + (self.extra_frames if training else 0), num_examples,
            seed=self.seed * 1000003 + SPLIT_SEEDS[split], random_mix=self.random_mix and training,
            silence_threshold_db=self.silence_threshold_db, draw=self.draw,
        )

    def train_dataloader(self) -> DataLoader:
        from musicfx.data.sampling import ExampleSampler

        dataset = self.dataset("train", self.train_examples)
        return make_loader(dataset, self.batch_size, self.num_workers, ExampleSampler(self.train_examples))

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.dataset("valid", self.val_examples), self.batch_size, self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return make_loader(self.dataset("test", self.test_examples), self.batch_size, self.num_workers)

    def predict_dataloader(self) -> DataLoader:
        """The fixed test examples, so ``musicfx predict`` returns the model's outputs for them."""
        return self.test_dataloader()

    @property
    def training_batch(self) -> bool:
        """Whether batches now come from the training loader (augmentations apply only then)."""
        # A LightningDataModule gets its Trainer as ``self.trainer`` (None outside a run).
        trainer = getattr(self, "trainer", None)
        return trainer is not None and bool(trainer.training)


def stems_from_batch(batch: Any) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``(stems (B, S, C, T), seeds (B,))`` of a raw multitrack batch, or ``(None, None)`` for anything else
    (a batch that was already turned into a scene, or a user's tensor in ``predict``)."""
    if isinstance(batch, dict) and "stems" in batch and "seed" in batch:
        return batch["stems"], batch["seed"]
    return None, None
