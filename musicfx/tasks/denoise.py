"""Denoising recorded music: :class:`DenoiseTask` (LightningModule) and :class:`DenoiseData` (DataModule).

Data flow: DataLoader workers read raw clean-music chunks (and, when a noise folder is given, raw noise
chunks) plus per-example scene parameters drawn on the CPU; the batch moves to the device, where
:class:`~musicfx.synth.noise.NoiseSynth` builds the noisy mixtures batched in ``on_after_batch_transfer``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.utils.data import DataLoader

from musicfx.errors import ConfigError
from musicfx.tasks.base import Task, _default_optimizer
from musicfx.tasks.media import log_examples

PathList = Union[str, Sequence[str]]


class DenoiseTask(Task):
    """Train and run a music denoiser.

    Args:
        model: ``(batch, channels, time) -> (batch, channels, time)``. A model with ``forward_train`` returning
            ``(estimate, [intermediate estimates])`` (MusicECAN's supervised attention module) has every
            intermediate estimate supervised too, weighted by ``intermediate_weight``.
        loss: criterion ``(estimate, clean) -> scalar``; default multi-resolution STFT + L1.
        intermediate_weight: weight of the loss on each intermediate estimate.
        optimizer, scheduler: injected callables (see :class:`~musicfx.tasks.base.Task`).
        sample_rate, channels: what the model works at.
        log_examples: how many validation examples to log as audio + spectrogram each validation.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Optional[nn.Module] = None,
        intermediate_weight: float = 0.5,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: Optional[LRSchedulerCallable] = None,
        sample_rate: int = 44100,
        channels: int = 1,
        log_examples: int = 2,
    ) -> None:
        if loss is None:
            from musicfx.losses import L1STFTLoss

            loss = L1STFTLoss()
        super().__init__(model, loss, optimizer, scheduler, sample_rate, channels)
        self.intermediate_weight = intermediate_weight
        self.num_logged_examples = log_examples

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        noisy, clean = batch["noisy"], batch["clean"]
        forward_train = getattr(self.model, "forward_train", None)
        if forward_train is not None:
            estimate, intermediates = forward_train(noisy)
        else:
            estimate, intermediates = self.model(noisy), []
        main = self.loss(estimate, clean)
        loss = main
        for intermediate in intermediates:
            loss = loss + self.intermediate_weight * self.loss(intermediate, clean)
        self.log("train/loss", loss, prog_bar=True, batch_size=noisy.shape[0])
        if intermediates:
            self.log("train/loss_final", main, batch_size=noisy.shape[0])
        return loss

    def _evaluate(self, batch: Dict[str, torch.Tensor], batch_idx: int, stage: str) -> None:
        from musicfx.metrics import si_sdr, usdr

        noisy, clean = batch["noisy"], batch["clean"]
        estimate = self.model(noisy).float()
        size = noisy.shape[0]
        scores_in = si_sdr(noisy.float(), clean.float())
        scores_out = si_sdr(estimate, clean.float())
        self.log(f"{stage}/loss", self.loss(estimate, clean), batch_size=size, sync_dist=True)
        self.log(f"{stage}/si_sdr", scores_out.mean(), batch_size=size, sync_dist=True, prog_bar=True)
        self.log(f"{stage}/si_sdr_noisy", scores_in.mean(), batch_size=size, sync_dist=True)
        self.log(f"{stage}/si_sdri", (scores_out - scores_in).mean(), batch_size=size, sync_dist=True)
        sdr = usdr(estimate.unsqueeze(1), clean.float().unsqueeze(1)).squeeze(1)
        self.log(f"{stage}/sdr", sdr.clamp(max=100).mean(), batch_size=size, sync_dist=True)
        logger = self.example_logger
        if batch_idx == 0 and logger is not None:
            for i in range(min(self.num_logged_examples, size)):
                signals = {"noisy": noisy[i], "estimate": estimate[i], "clean": clean[i]}
                log_examples(logger, f"{stage}/example_{i}", signals, self.sample_rate, self.global_step)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        noisy = batch["noisy"] if isinstance(batch, dict) else batch
        return self.model(noisy)

    @torch.no_grad()
    def denoise(
        self,
        audio: torch.Tensor,
        sample_rate: int,
        segment: float = 10.0,
        overlap: float = 0.25,
        progress: bool = False,
    ) -> torch.Tensor:
        """Denoise a whole recording of any length.

        Args:
            audio: ``(channels, time)`` or ``(time,)`` at ``sample_rate``.
            sample_rate: rate of ``audio``; resampled to the model's and back.
            segment: seconds per model call (overlap-added with fades, so no seams).
            overlap: fraction of ``segment`` shared by neighbouring calls.

        Returns:
            The denoised recording, same shape and rate as ``audio``.
        """
        from musicfx.inference import apply_model

        return apply_model(
            self.model, audio, sample_rate, self.sample_rate, self.channels, segment, overlap, progress=progress
        )


class DenoiseData(pl.LightningDataModule):
    """Clean music chunks and noise, mixed into noisy/clean pairs on the device.

    Music comes from, in order of precedence: ``mn_root`` (the M&N layout, with its splits), ``music`` (one
    or more folders of clean recordings; ``val_music`` or a held-out ``val_fraction`` of files validates),
    or the built-in generator when neither is given. Noise is procedural in five categories, replaced with a
    real noise chunk for a ``file_noise_prob`` share of examples when ``noise`` (a folder, optionally with
    one sub-folder per category) or the M&N noise folder is available.

    Args:
        music: folder(s) of clean music, searched recursively.
        noise: folder of noise recordings.
        mn_root: root of an M&N-layout dataset (``music/<category>``, ``noise/<category>``).
        val_music: folder(s) for validation; default: a held-out share of ``music``.
        test_music: folder(s) for ``musicfx test``; default: the validation music (with other scenes).
        sample_rate, channels: what examples are made at (files are resampled / channel-converted once).
        segment: example length in seconds.
        batch_size, num_workers: DataLoader settings (per device).
        train_examples: examples per training epoch (over all devices).
        val_examples, test_examples: size of the fixed validation / test sets.
        snr_db: range of the SNR each example is mixed at.
        categories: weights of the procedural noise categories (default uniform).
        file_noise_prob: share of examples that use a real noise chunk when noise files are available.
        noise_category_weights: weights of the noise folder's category sub-folders (default uniform).
        gain_db: range of the random gain applied to each example (clean and noise alike).
        flip_prob, swap_prob: probabilities of a polarity flip and (stereo) a channel swap.
        val_fraction: share of ``music`` files held out for validation when ``val_music`` is not given.
        seed: seeds every example; a seed reproduces the data of a run.
        cache_dir: where decoded audio is memory-mapped (default ``$MUSICFX_CACHE`` or ``~/.cache/musicfx/decoded``).
        generated_items: number of distinct built-in songs per split.
        scores: clean music rendered through a SoundFont instead of the built-in generator (when no
            ``music``/``mn_root`` is given): ``"procedural"`` or a folder of MIDI files
            (see :mod:`musicfx.data.rendered`).
        soundfont: the ``.sf2``/``.sf3`` to render with (default ``$MUSICFX_SOUNDFONT``, else Debian's
            FluidR3 GM); giving one without ``scores`` renders procedural songs.
        render_options: more options of :class:`~musicfx.data.rendered.RenderedStems` (``max_files``,
            ``cache_mb``, ``backend``, ``effects``, ``min_stems``, ``max_note``).
    """

    def __init__(
        self,
        music: Optional[PathList] = None,
        noise: Optional[str] = None,
        mn_root: Optional[str] = None,
        val_music: Optional[PathList] = None,
        test_music: Optional[PathList] = None,
        sample_rate: int = 44100,
        channels: int = 1,
        segment: float = 2.0,
        batch_size: int = 8,
        num_workers: int = 2,
        train_examples: int = 1024,
        val_examples: int = 32,
        test_examples: int = 64,
        snr_db: Tuple[float, float] = (-5.0, 20.0),
        categories: Optional[Dict[str, float]] = None,
        file_noise_prob: float = 0.5,
        noise_category_weights: Optional[Dict[str, float]] = None,
        gain_db: Tuple[float, float] = (-6.0, 3.0),
        flip_prob: float = 0.5,
        swap_prob: float = 0.5,
        val_fraction: float = 0.1,
        seed: int = 0,
        cache_dir: Optional[str] = None,
        generated_items: int = 64,
        scores: Optional[str] = None,
        soundfont: Optional[str] = None,
        render_options: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        from musicfx.synth.noise import NoiseSynth

        self.save_hyperparameters()
        self.music = music
        self.noise = noise
        self.mn_root = mn_root
        self.val_music = val_music
        self.test_music = test_music
        self.noise_category_weights = noise_category_weights
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment_frames = int(round(segment * sample_rate))
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_examples = train_examples
        self.val_examples = val_examples
        self.test_examples = test_examples
        self.val_fraction = val_fraction
        self.seed = seed
        self.cache_dir = cache_dir
        self.generated_items = generated_items
        self.scores = "procedural" if scores is None and soundfont is not None else scores
        self.soundfont = soundfont
        self.render_options = dict(render_options or {})
        if self.scores is not None and (music is not None or mn_root is not None):
            raise ConfigError(f"give either music/mn_root or scores ({self.scores}) to train on, not both")
        self.synth = NoiseSynth(
            sample_rate, snr_db=tuple(snr_db), categories=categories, file_noise_prob=file_noise_prob,
            gain_db=tuple(gain_db), flip_prob=flip_prob, swap_prob=swap_prob,
        )
        self._sources: Dict[str, Dict[str, Any]] = {}
        self._music_split: Optional[Tuple[List[Path], List[Path]]] = None

    # ----------------------------------------------------------------------------------------- sources
    def _folder(self, paths: PathList, files: Optional[List[Path]] = None):
        from musicfx.data.sources import AudioFolder

        roots = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if len(roots) != 1 and files is None:
            from musicfx.data.sources import list_audio_files

            files = [f for root in roots for f in list_audio_files(root)]
        return AudioFolder(
            roots[0], sample_rate=self.sample_rate, channels=self.channels, cache_dir=self.cache_dir,
            min_duration=self.segment_frames / self.sample_rate, files=files,
        )

    def _split_files(self, paths: PathList) -> Tuple[List[Path], List[Path]]:
        """(train, valid) files of ``music``, listed once and shared by both splits."""
        if self._music_split is None:
            self._music_split = self._list_and_split(paths)
        return self._music_split

    def _list_and_split(self, paths: PathList) -> Tuple[List[Path], List[Path]]:
        from musicfx.data.sources import list_audio_files

        roots = [paths] if isinstance(paths, (str, Path)) else list(paths)
        files = [f for root in roots for f in list_audio_files(root)]
        if len(files) < 2:
            return files, files
        held_out = max(1, int(round(len(files) * self.val_fraction)))
        # Every n-th file (not a random draw) so the split is stable when files are added at the end.
        step = max(1, len(files) // held_out)
        val = files[step - 1 :: step][:held_out]
        train = [f for f in files if f not in set(val)]
        return train, val

    def _build_sources(self, split: str) -> Dict[str, Any]:
        from musicfx.data.sources import GeneratedMusic, MNDataset, NoiseFolder

        if split in self._sources:
            return self._sources[split]
        sources: Dict[str, Any] = {}
        noise = None
        if self.mn_root is not None:
            dataset = MNDataset(
                self.mn_root, split=split, sample_rate=self.sample_rate, channels=self.channels,
                cache_dir=self.cache_dir,
            )
            sources["clean"] = dataset.music
            noise = dataset.noise
        elif self.music is not None:
            if split == "test" and self.test_music is not None:
                sources["clean"] = self._folder(self.test_music)
            elif self.val_music is not None:
                sources["clean"] = self._folder(self.music if split == "train" else self.val_music)
            else:
                train, val = self._split_files(self.music)
                sources["clean"] = self._folder(self.music, train if split == "train" else val)
        elif self.scores is not None:
            from musicfx.data.rendered import rendered_source

            offset = {"train": 0, "valid": 1, "test": 2}[split]
            sources["clean"] = rendered_source(
                self.scores, split, self.sample_rate, self.channels, seed=self.seed * 3 + offset,
                num_items=self.generated_items, duration=max(10.0, 2 * self.segment_frames / self.sample_rate),
                soundfont=self.soundfont, **self.render_options,
            )
        else:
            offset = {"train": 0, "valid": 1, "test": 2}[split]
            sources["clean"] = GeneratedMusic(
                num_items=self.generated_items, duration=max(10.0, 2 * self.segment_frames / self.sample_rate),
                sample_rate=self.sample_rate, channels=self.channels, seed=self.seed * 3 + offset,
            )
        if self.noise is not None:
            noise = NoiseFolder(
                self.noise, sample_rate=self.sample_rate, channels=self.channels, cache_dir=self.cache_dir,
                category_weights=self.noise_category_weights,
            )
        if noise is not None and len(noise) > 0:
            sources["noise"] = noise
        self._sources[split] = sources
        return sources

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit"):
            self._build_sources("train")
        if stage in (None, "fit", "validate"):
            self._build_sources("valid")
        if stage in (None, "test"):
            self._build_sources("test")

    # ------------------------------------------------------------------------------------- dataloaders
    def _dataset(self, split: str, num_examples: int):
        from musicfx.data.sampling import ChunkDataset

        # Distinct seeds per split: validation and test scenes never repeat training scenes.
        split_seed = {"train": 0, "valid": 1, "test": 2}[split]
        return ChunkDataset(
            self._build_sources(split), self.segment_frames, num_examples,
            seed=self.seed * 1000003 + split_seed, draw=self.synth.draw,
        )

    def _loader(self, dataset, sampler=None) -> DataLoader:
        from musicfx.tasks.multitrack import make_loader

        return make_loader(dataset, self.batch_size, self.num_workers, sampler)

    def train_dataloader(self) -> DataLoader:
        from musicfx.data.sampling import ExampleSampler

        return self._loader(self._dataset("train", self.train_examples), ExampleSampler(self.train_examples))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("valid", self.val_examples))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test", self.test_examples))

    def predict_dataloader(self) -> DataLoader:
        """The fixed test scenes, so ``musicfx predict`` returns the model's estimates for them."""
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not (isinstance(batch, dict) and "clean" in batch and "noisy" not in batch):
            return batch
        params = {key: batch[key] for key in self.synth.param_keys}
        noisy, clean = self.synth(batch["clean"], params, batch.get("noise"))
        return {"noisy": noisy, "clean": clean}
