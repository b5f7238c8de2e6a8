"""The one base every task's datamodule extends: sources per split, random chunks, loaders, the device scene.

Every task's training batch walks the same path (docs/architecture.md): files -> decoded cache -> random
chunks drawn in DataLoader workers by :class:`~musicfx.data.sampling.ChunkDataset` -> device -> the task's
scene, synthesized batched on the device in :meth:`ChunkData.scene` (noise at an SNR, a remix, bleed, a
mixing console) -> model -> loss. A subclass says which sources a split reads (:meth:`ChunkData.build_sources`)
and how raw chunks become the task's scene (:meth:`ChunkData.scene`); everything else is here.

Sample rate and channels are the model's: left unset (``None``), they are read from the task at setup, so a
recipe states them once, on the model; set, they are checked against it.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from musicfx.data.sampling import ChunkDataset, ExampleSampler, ResumableLoader, make_loader, usable_cores
from musicfx.data.seeding import song_seed, split_seed
from musicfx.data.sources import MIX, GeneratedMusic, Source
from musicfx.errors import ConfigError
from musicfx.tasks.base import record_hparam

Draw = Callable[[torch.Generator], Dict[str, torch.Tensor]]


class ChunkData(pl.LightningDataModule):
    """Random chunks of a task's sources, turned into the task's scene on the device.

    Args:
        sample_rate: what examples are made at (files are resampled once, into the cache); default: the
            model's (``default_sample_rate`` outside a run).
        channels: channels of the examples; default: the model's (``default_channels`` outside a run).
        segment: example length in seconds.
        batch_size: examples per batch (per device).
        num_workers: DataLoader worker processes (per device), capped at the cores this process may use
            minus one (the training loop needs one too).
        train_examples: examples per training epoch (over all devices).
        val_examples, test_examples: size of the fixed validation and test sets.
        silence_threshold_db: a chunk of the clean material quieter than this is redrawn.
        seed: seeds every example; a seed reproduces the data of a run.
        cache_dir: where decoded audio is memory-mapped (default ``$MUSICFX_CACHE`` or
            ``~/.cache/musicfx/decoded``).
        generated_items: songs per split of the built-in generator (used when no data path is given).
        generated_duration: seconds per generated song; default: ``max(10, 2 * segment)``.
        scores: train on music rendered through a SoundFont instead of the built-in generator (when no data
            path is given): ``"procedural"`` (composed General MIDI songs) or a folder of MIDI files; see
            :mod:`musicfx.data.rendered`. ``generated_items`` and ``generated_duration`` size the songs.
        soundfont: the ``.sf2``/``.sf3`` to render with (default ``$MUSICFX_SOUNDFONT``, else Debian's
            FluidR3 GM); giving one without ``scores`` renders procedural songs.
        render_options: more options of :class:`~musicfx.data.rendered.RenderedStems` (``max_files``,
            ``cache_mb``, ``backend``, ``effects``, ``min_stems``, ``max_note``).
    """

    #: Outside a run (no model to ask), examples are made at this rate and channel count.
    default_sample_rate: int = 44100
    default_channels: int = 1
    #: Which of the model's format attributes this data follows (a debleed model's channel is one track).
    model_format: Tuple[str, ...] = ("sample_rate", "channels")
    #: Rendered songs put one instrument in each stem (debleed: a track is one microphone's instrument).
    rendered_one_per_stem: bool = False

    def __init__(
        self,
        *,
        sample_rate: Optional[int] = None,
        channels: Optional[int] = None,
        segment: float = 2.0,
        batch_size: int = 8,
        num_workers: int = 2,
        train_examples: int = 1024,
        val_examples: int = 32,
        test_examples: int = 64,
        silence_threshold_db: float = -60.0,
        seed: int = 0,
        cache_dir: Optional[str] = None,
        generated_items: int = 64,
        generated_duration: Optional[float] = None,
        scores: Optional[str] = None,
        soundfont: Optional[str] = None,
        render_options: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        if segment <= 0:
            raise ConfigError(f"data.init_args.segment must be positive, got {segment}")
        self._format: Dict[str, Optional[int]] = {"sample_rate": sample_rate, "channels": channels}
        self.segment = float(segment)
        self.batch_size = batch_size
        self.num_workers = self._cap_workers(num_workers)
        self.train_examples = train_examples
        self.val_examples = val_examples
        self.test_examples = test_examples
        self.silence_threshold_db = silence_threshold_db
        self.seed = seed
        self.cache_dir = cache_dir
        self.generated_items = generated_items
        self.generated_duration = generated_duration
        self.scores = "procedural" if scores is None and soundfont is not None else scores
        self.soundfont = soundfont
        self.render_options = dict(render_options or {})
        self.random_mix = False
        self._sources: Dict[str, Dict[str, Source]] = {}
        self._train_loader: Optional[ResumableLoader] = None
        self._warned_generator = False

    # ------------------------------------------------------------------------------------------- format
    @property
    def sample_rate(self) -> int:
        return self._format["sample_rate"] or self.default_sample_rate

    @property
    def channels(self) -> int:
        return self._format["channels"] or self.default_channels

    @property
    def segment_frames(self) -> int:
        return int(round(self.segment * self.sample_rate))

    @staticmethod
    def _cap_workers(num_workers: int) -> int:
        cap = usable_cores() - 1
        if num_workers > cap:
            rank_zero_info(f"musicfx: {num_workers} DataLoader workers asked for, {usable_cores()} cores usable: "
                           f"using {cap}")
            return cap
        return num_workers

    def _follow_model(self) -> None:
        """Take the sample rate and channels the data left unset from the model; check the ones it set."""
        # A stand-in trainer (benchmarks set one to switch augmentation on) has no module: nothing to follow.
        task = getattr(getattr(self, "trainer", None), "lightning_module", None)
        changed = self._follow_names(task)
        for name in self.model_format:
            theirs = getattr(task, name, None)
            if theirs is None:
                continue
            ours = self._format[name]
            if ours is None:
                self._format[name], changed = int(theirs), True
                record_hparam(self, name, int(theirs))
            elif ours != theirs:
                raise ConfigError(
                    f"model.init_args.{name} is {theirs} but data.init_args.{name} is {ours}; "
                    f"set both to the same value, or leave data.init_args.{name} out"
                )
        if changed:
            self._sources.clear()
            self.build_scene()

    def _follow_names(self, task: Any) -> bool:
        """Take the names the data left unset (a multitrack data's stems) from the task, check the ones it set;
        whether any changed. This data follows no names."""
        return False

    # ----------------------------------------------------------------------------------- for subclasses
    def build_sources(self, split: str) -> Dict[str, Source]:
        """The sources a ``split`` example is drawn from, the clean material first (see ``ChunkDataset``)."""
        raise NotImplementedError

    def build_scene(self) -> None:
        """(Re)build the on-device scene synthesis for the current sample rate and channels."""

    def scene(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Turn a raw batch (chunks ``(B, stems, C, T)`` per source, ``"seed"`` and the draw) into what the
        task's model and loss take, batched on the device."""
        raise NotImplementedError

    @property
    def extra_frames(self) -> int:
        """Frames read beyond the segment for training examples, for augmentations that crop (a random shift)."""
        return 0

    @property
    def draw(self) -> Optional[Draw]:
        """Per-example scene parameters drawn on the CPU (``generator -> {name: tensor}``), or ``None``."""
        return None

    def generated(self, split: str, stems: Sequence[str] = (MIX,)) -> Source:
        """The built-in generator's songs for ``split`` (distinct songs per split); warns once per run.

        With ``scores`` (or a ``soundfont``), songs rendered through the SoundFont instead
        (:func:`~musicfx.data.rendered.rendered_source`).
        """
        duration = self.generated_duration or max(10.0, 2 * self.segment)
        if self.scores is not None:
            from musicfx.data.rendered import rendered_source  # imports the optional SoundFont binding

            return rendered_source(
                self.scores, split, self.sample_rate, self.channels, seed=song_seed(self.seed, split),
                num_items=self.generated_items, duration=duration, soundfont=self.soundfont, stems=stems,
                one_per_stem=self.rendered_one_per_stem, **self.render_options,
            )
        if not self._warned_generator:
            self._warned_generator = True
            rank_zero_warn(
                f"musicfx: no data path given, training on the built-in music generator ({self.generated_items} "
                f"generated songs per split); point the recipe at real data (see docs/data.md)"
            )
        return GeneratedMusic(num_items=self.generated_items, duration=duration, sample_rate=self.sample_rate,
                              channels=self.channels, seed=song_seed(self.seed, split), stems=stems)

    # ------------------------------------------------------------------------------------------ sources
    def sources(self, split: str) -> Dict[str, Source]:
        """The sources of ``split`` (``"train"``, ``"valid"`` or ``"test"``), built once."""
        if split not in self._sources:
            self._sources[split] = self.build_sources(split)
        return self._sources[split]

    def setup(self, stage: Optional[str] = None) -> None:
        self._follow_model()
        if stage in (None, "fit"):
            self.sources("train")
        if stage in (None, "fit", "validate"):
            self.sources("valid")
        if stage in (None, "test", "predict"):
            self.sources("test")

    # -------------------------------------------------------------------------------------- dataloaders
    def dataset(self, split: str, num_examples: int) -> ChunkDataset:
        """Chunks of ``split``; seeds differ per split, so evaluation never repeats training examples."""
        training = split == "train"
        return ChunkDataset(
            self.sources(split), self.segment_frames + (self.extra_frames if training else 0), num_examples,
            seed=split_seed(self.seed, split), silence_threshold_db=self.silence_threshold_db, draw=self.draw,
            random_mix=self.random_mix and training,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train", self.train_examples)
        self._train_loader = make_loader(dataset, self.batch_size, self.num_workers, ExampleSampler(self.train_examples))
        return self._train_loader

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

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not (isinstance(batch, dict) and "seed" in batch):
            return batch  # already a scene, or a user's tensor in ``predict``
        if self.training_batch and self._train_loader is not None:
            self._train_loader.consume()
        return self.scene(batch)


__all__ = ["ChunkData"]
