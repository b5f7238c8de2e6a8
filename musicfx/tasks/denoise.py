"""Denoising recorded music: :class:`DenoiseTask` (LightningModule) and :class:`DenoiseData` (DataModule).

Data flow: DataLoader workers read raw clean-music chunks (and, when a noise folder is given, raw noise
chunks) plus per-example scene parameters drawn on the CPU; the batch moves to the device, where
:class:`~musicfx.synth.noise.NoiseSynth` builds the noisy mixtures batched in ``on_after_batch_transfer``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from musicfx.data.sources import AudioFolder, MNDataset, NoiseFolder, Source, list_audio_files
from musicfx.errors import ConfigError
from musicfx.tasks.base import Task, _default_optimizer
from musicfx.tasks.data import ChunkData
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
        sample_rate, channels: what the model works at; default: what the model declares (see
            :class:`~musicfx.tasks.base.Task`).
        log_examples: how many validation examples to log as audio + spectrogram each validation.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Optional[nn.Module] = None,
        intermediate_weight: float = 0.5,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: Optional[LRSchedulerCallable] = None,
        sample_rate: Optional[int] = None,
        channels: Optional[int] = None,
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


class DenoiseData(ChunkData):
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
        snr_db: range of the SNR each example is mixed at.
        categories: weights of the procedural noise categories (default uniform).
        file_noise_prob: share of examples that use a real noise chunk when noise files are available.
        noise_category_weights: weights of the noise folder's category sub-folders (default uniform).
        gain_db: range of the random gain applied to each example (clean and noise alike).
        flip_prob, swap_prob: probabilities of a polarity flip and (stereo) a channel swap.
        val_fraction: share of ``music`` files held out for validation when ``val_music`` is not given.
        **kwargs: see :class:`~musicfx.tasks.data.ChunkData` (``sample_rate``, ``channels``, ``segment``,
            ``batch_size``, ``num_workers``, ``train_examples``, ``val_examples``, ``seed``, ``cache_dir``...).
    """

    def __init__(
        self,
        *,
        music: Optional[PathList] = None,
        noise: Optional[str] = None,
        mn_root: Optional[str] = None,
        val_music: Optional[PathList] = None,
        test_music: Optional[PathList] = None,
        snr_db: Tuple[float, float] = (-5.0, 20.0),
        categories: Optional[Dict[str, float]] = None,
        file_noise_prob: float = 0.5,
        noise_category_weights: Optional[Dict[str, float]] = None,
        gain_db: Tuple[float, float] = (-6.0, 3.0),
        flip_prob: float = 0.5,
        swap_prob: float = 0.5,
        val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.music = music
        self.noise = noise
        self.mn_root = mn_root
        self.val_music = val_music
        self.test_music = test_music
        if self.scores is not None and (music is not None or mn_root is not None):
            raise ConfigError(f"give either music/mn_root or scores ({self.scores}) to train on, not both")
        self.noise_category_weights = noise_category_weights
        self.val_fraction = val_fraction
        self._synth_settings = dict(snr_db=tuple(snr_db), categories=categories, file_noise_prob=file_noise_prob,
                                    gain_db=tuple(gain_db), flip_prob=flip_prob, swap_prob=swap_prob)
        self._music_split: Optional[Tuple[List[Path], List[Path]]] = None
        self.build_scene()

    def build_scene(self) -> None:
        from musicfx.synth.noise import NoiseSynth

        self.synth = NoiseSynth(self.sample_rate, **self._synth_settings)

    @property
    def draw(self):
        return self.synth.draw

    # ----------------------------------------------------------------------------------------- sources
    def _folder(self, paths: PathList, files: Optional[List[Path]] = None) -> AudioFolder:
        roots = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if len(roots) != 1 and files is None:
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

    def build_sources(self, split: str) -> Dict[str, Source]:
        sources: Dict[str, Source] = {}
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
        else:
            sources["clean"] = self.generated(split)
        if self.noise is not None:
            noise = NoiseFolder(
                self.noise, sample_rate=self.sample_rate, channels=self.channels, cache_dir=self.cache_dir,
                category_weights=self.noise_category_weights,
            )
        if noise is not None and len(noise) > 0:
            sources["noise"] = noise
        return sources

    # ------------------------------------------------------------------------------------------ the scene
    def scene(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        # Sources read (stems, channels, time); music and noise recordings hold one stem.
        params = {key: batch[key] for key in self.synth.param_keys}
        noise = batch.get("noise")
        noisy, clean = self.synth(batch["clean"][:, 0], params, None if noise is None else noise[:, 0])
        return {"noisy": noisy, "clean": clean}
