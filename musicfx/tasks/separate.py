"""Separating a mix into stems: :class:`SeparationTask` (LightningModule) and :class:`SeparationData`.

Data flow: DataLoader workers read raw stem chunks ``(stems, channels, time)`` of songs (MUSDB18,
MUSDB18-HQ, stem folders or the built-in generator); on the device, training batches are augmented the
Demucs way (random shift, sign flip, channel swap, gain, remix across songs in groups), stems are summed
into the requested targets (``accompaniment = drums + bass + other``) and into the mix.

The task trains any separator ``mix (B, C, T) -> stems (B, S, C, T)`` with an injected loss: waveform or
magnitude L1/MSE, multi-resolution STFT, SI-SDR, or binary cross-entropy against ideal binary masks for
masking models; with a ``discriminator`` it trains adversarially (manual optimization, both optimizers
stepping every batch) with a mixture-consistency term, the seed's WaveGAN mode; with a ``remixer`` (a second
generator, stems -> mix) and a mix discriminator as well it trains the seed's cycle-consistent GAN, both
cycles (mix -> stems -> mix, stems -> mix -> stems) in the loss, and can learn from unpaired pools of mixes
and of stems (``SeparationData(unpaired=True)``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from musicfx.audio.stems import MUSDB_STEMS
from musicfx.errors import ConfigError
from musicfx.tasks.base import Task, _default_optimizer, declared, record_hparam
from musicfx.tasks.media import log_examples
from musicfx.tasks.multitrack import MultitrackData



def _gan_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-4, betas=(0.5, 0.9))


class SeparationTask(Task):
    """Train and run a music source separator.

    Args:
        model: ``mix (B, C, T) -> stems (B, S, C, T)``, ``S = len(sources)``.
        loss: criterion on ``(estimates, references)`` waveforms ``(B, S, C, T)``; a loss with
            ``domain = "mask"`` (:class:`~musicfx.losses.separation.MaskBCELoss`) is given the model's
            ``forward_masks(mix)`` and the references' ``model.spectrogram(stems)`` instead.
            Default: L1 on waveforms.
        sources: target names, in the model's output order; must equal the data's targets. Default: the
            model's ``sources`` (a separator declares them), else the four MUSDB18 stems.
        discriminator: when given, adversarial training: ``discriminator(stems (B,S,C,T), mix (B,C,T)) ->
            logits (B,)``; the generator loss is ``loss + adversarial_weight * adversarial +
            consistency_weight * |sum(estimates) - mix|``.
        adversarial: ``"lsgan"`` or ``"hinge"``.
        adversarial_weight, consistency_weight: weights of the generator's adversarial and cycle terms.
        discriminator_optimizer: optimizer callable for the discriminator (Adam 1e-4, betas (0.5, 0.9)).
        gan_clip: gradient-norm clip of both networks in adversarial mode (Lightning's
            ``gradient_clip_val`` does not apply under manual optimization); 0 disables.
        remixer: cycle mode: the second generator ``stems (B,S,C,T) -> mix (B,C,T)``
            (:class:`~musicfx.models.wavegan.WaveGANRemixer`). Needs ``mix_discriminator`` and an unconditional
            ``discriminator`` (``conditional=False``: unpaired stems have no mix to condition on). Generator loss
            ``adversarial_weight * (adv(D_stems(G(mix))) + adv(D_mix(F(stems))))
            + cycle_weight * (|F(G(mix)) - mix| + |G(F(stems)) - stems|)
            + consistency_weight * |sum(G(mix)) - mix| + supervised_weight * loss(G(mix), stems)``, the last term
            only on paired batches; the generator optimizer steps both generators, the discriminator optimizer
            both discriminators. Training batches may be unpaired: ``{"mix": (B1,C,T), "unpaired_stems":
            (B2,S,C,T)}`` from :class:`SeparationData` with ``unpaired=True``.
        mix_discriminator: cycle mode: judges mixes, ``mix_discriminator(mix.unsqueeze(1)) -> logits (B,)``
            (a :class:`~musicfx.models.wavegan.WaveGANDiscriminator` with ``sources=1, conditional=False``).
        cycle_weight: weight of the two cycle terms (10 in CycleGAN).
        supervised_weight: weight of the paired loss in cycle mode (0: purely unpaired).
        optimizer, scheduler: the separator's (see :class:`~musicfx.tasks.base.Task`).
        sample_rate, channels: what the model works at; default: what the model declares.
        log_examples: validation examples logged as audio + spectrograms each validation.
        input_statistics: Open-Unmix's statistics pass: before training, this many training batches (-1: one
            epoch) give the per-bin mean and standard deviation of the mixture magnitudes, set as the model's
            input normalisation (``model.set_input_statistics``) and stored in the checkpoint; skipped when
            resuming. 0 disables it.
    """

    predict_key = "mix"
    data_names = ("sources", "targets")

    def __init__(
        self,
        model: nn.Module,
        loss: Optional[nn.Module] = None,
        sources: Optional[Sequence[str]] = None,
        discriminator: Optional[nn.Module] = None,
        adversarial: str = "lsgan",
        adversarial_weight: float = 0.01,
        consistency_weight: float = 1.0,
        discriminator_optimizer: OptimizerCallable = _gan_optimizer,
        gan_clip: float = 5.0,
        remixer: Optional[nn.Module] = None,
        mix_discriminator: Optional[nn.Module] = None,
        cycle_weight: float = 10.0,
        supervised_weight: float = 1.0,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: Optional[LRSchedulerCallable] = None,
        sample_rate: Optional[int] = None,
        channels: Optional[int] = None,
        log_examples: int = 1,
        input_statistics: int = 0,
    ) -> None:
        if loss is None:
            from musicfx.losses import WaveformLoss

            loss = WaveformLoss("l1")
        super().__init__(model, loss, optimizer, scheduler, sample_rate, channels)
        self.sources: Tuple[str, ...] = declared(model, "sources", sources, MUSDB_STEMS)
        record_hparam(self, "sources", list(self.sources))
        self.discriminator = discriminator
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.adversarial_weight = adversarial_weight
        self.consistency_weight = consistency_weight
        self.gan_clip = gan_clip
        self.num_logged_examples = log_examples
        self.remixer = remixer
        self.mix_discriminator = mix_discriminator
        self.cycle_weight = cycle_weight
        self.supervised_weight = supervised_weight
        if remixer is not None:
            if discriminator is None or mix_discriminator is None:
                raise ConfigError("cycle mode (model.init_args.remixer) needs both discriminator and mix_discriminator")
            if getattr(discriminator, "conditional", False):
                raise ConfigError(
                    "cycle mode needs an unconditional stem discriminator (discriminator init_args conditional: false): "
                    "unpaired stems have no mix to condition on"
                )
        self.input_statistics = input_statistics
        self._input_statistics: Optional[Dict[str, torch.Tensor]] = None
        if discriminator is not None:
            from musicfx.losses.separation import AdversarialLoss, MixtureConsistencyLoss

            self.adversarial = AdversarialLoss(adversarial)
            self.consistency = MixtureConsistencyLoss()
            self.automatic_optimization = False

    # ------------------------------------------------------------------------------------------ setup
    def on_fit_start(self) -> None:
        if self.input_statistics and self._input_statistics is None:
            self._statistics_pass()

    def _statistics_pass(self) -> None:
        """Open-Unmix's statistics pass over the training mixtures (see ``input_statistics``)."""
        if not hasattr(self.model, "input_statistics"):
            raise ConfigError(
                f"input_statistics needs a model with a statistics pass; {type(self.model).__name__} has none"
            )
        data = self.trainer.datamodule
        accumulator = self.model.input_statistics()
        limit = self.input_statistics
        if self.trainer.fast_dev_run:  # a smoke run reads as many batches here as anywhere else
            runs = int(self.trainer.fast_dev_run)
            limit = runs if limit < 0 else min(limit, runs)
        for index, batch in enumerate(data.train_dataloader()):
            if 0 <= limit <= index:
                break
            batch = data.on_after_batch_transfer(self._move(batch), 0)
            accumulator.update(batch["mix"])
        accumulator.merge(lambda total: self.trainer.strategy.reduce(total, reduce_op="sum"))
        mean, std = accumulator.compute()
        self.model.set_input_statistics(mean, std)
        self._input_statistics = {"mean": mean.cpu(), "std": std.cpu()}

    def _move(self, batch: Any) -> Any:
        return self.trainer.strategy.batch_to_device(batch, self.device)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._input_statistics is not None:
            checkpoint["input_statistics"] = self._input_statistics

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._input_statistics = checkpoint.get("input_statistics", self._input_statistics)

    def configure_optimizers(self) -> Any:
        if self.discriminator is None:
            config = super().configure_optimizers()
            if isinstance(config, dict) and isinstance(
                config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau
            ):
                # Open-Unmix's schedule: decay when the validation loss stops improving, checked each epoch.
                config["lr_scheduler"].update(interval="epoch", monitor="val/loss")
            return config
        if self.remixer is None:
            generator = self.optimizer_factory(self.model.parameters())
            discriminator = self.discriminator_optimizer_factory(self.discriminator.parameters())
        else:
            generator = self.optimizer_factory([*self.model.parameters(), *self.remixer.parameters()])
            discriminator = self.discriminator_optimizer_factory(
                [*self.discriminator.parameters(), *self.mix_discriminator.parameters()]
            )
        if self.scheduler_factory is None:
            return [generator, discriminator]
        return [generator, discriminator], [self.scheduler_factory(generator)]

    # --------------------------------------------------------------------------------------- training
    def _supervised_loss(self, mix: torch.Tensor, stems: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The injected loss, and the waveform estimates when it was computed from them."""
        domain = getattr(self.loss, "domain", "waveform")
        if domain == "mask":
            masks = self.model.forward_masks(mix)
            return self.loss(masks, self.model.spectrogram(stems)), None
        if domain == "magnitude":  # Open-Unmix: each network's own magnitude estimate against |STFT(target)|
            return self.loss(self.model.estimate_magnitudes(mix), self.model.spectrogram(stems).abs()), None
        estimates = self.model(mix)
        return self.loss(estimates, stems), estimates

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> Optional[torch.Tensor]:
        if self.remixer is not None:
            return self._cycle_step(batch["mix"], batch.get("stems"), batch.get("unpaired_stems"))
        if "stems" not in batch:
            raise ConfigError("unpaired batches (data unpaired: true) need cycle mode (model.init_args.remixer)")
        mix, stems = batch["mix"], batch["stems"]
        if self.discriminator is not None:
            return self._adversarial_step(mix, stems)
        loss, _ = self._supervised_loss(mix, stems)
        self.log("train/loss", loss, prog_bar=True, batch_size=mix.shape[0])
        return loss

    def _manual_step(self, optimizer: Any, loss: torch.Tensor, step_scheduler: bool = False) -> None:
        """One manual-optimization step of ``optimizer`` on ``loss``, clipped to ``gan_clip``; the generator's
        step also advances the learning-rate scheduler."""
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.gan_clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.gan_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        if step_scheduler:
            scheduler = self.lr_schedulers()
            if scheduler is not None:
                scheduler.step()

    def _adversarial_step(self, mix: torch.Tensor, stems: torch.Tensor) -> torch.Tensor:
        generator_opt, discriminator_opt = self.optimizers()
        estimates = self.model(mix)
        size = mix.shape[0]

        real, fake = self.discriminator(stems, mix), self.discriminator(estimates.detach(), mix)
        d_loss = self.adversarial.discriminator(real, fake)
        self._manual_step(discriminator_opt, d_loss)

        supervised = self.loss(estimates, stems)
        adversarial = self.adversarial.generator(self.discriminator(estimates, mix))
        consistency = self.consistency(estimates, mix)
        g_loss = supervised + self.adversarial_weight * adversarial + self.consistency_weight * consistency
        self._manual_step(generator_opt, g_loss, step_scheduler=True)

        self.log("train/loss", g_loss, prog_bar=True, batch_size=size)
        self.log_dict(
            {"train/loss_supervised": supervised, "train/loss_adversarial": adversarial,
             "train/loss_consistency": consistency, "train/loss_discriminator": d_loss},
            batch_size=size,
        )
        return g_loss

    def _cycle_step(
        self, mix: torch.Tensor, stems: Optional[torch.Tensor], unpaired: Optional[torch.Tensor]
    ) -> Optional[torch.Tensor]:
        """One step of the cycle-consistent GAN on a mix pool and a stem pool (the batch's own stems if paired)."""
        generator_opt, discriminator_opt = self.optimizers()
        pool = unpaired if unpaired is not None else stems
        if pool is None:
            raise ConfigError("a cycle-mode batch needs stems: 'stems' (paired) or 'unpaired_stems'")
        if mix.shape[0] == 0 or pool.shape[0] == 0:
            return None  # an epoch's last, one-example batch cannot be split into two pools
        separate, remix = self.model, self.remixer
        fake_stems = separate(mix)  # mix -> stems
        fake_mix = remix(pool)  # stems -> mix

        def judge_mix(x: torch.Tensor) -> torch.Tensor:
            return self.mix_discriminator(x.unsqueeze(1))

        d_stems = self.adversarial.discriminator(self.discriminator(pool), self.discriminator(fake_stems.detach()))
        d_mix = self.adversarial.discriminator(judge_mix(mix), judge_mix(fake_mix.detach()))
        d_loss = d_stems + d_mix
        self._manual_step(discriminator_opt, d_loss)

        adversarial = self.adversarial.generator(self.discriminator(fake_stems)) + self.adversarial.generator(
            judge_mix(fake_mix)
        )
        cycle_mix = (remix(fake_stems) - mix.float()).abs().mean()  # mix -> stems -> mix
        cycle_stems = (separate(fake_mix) - pool.float()).abs().mean()  # stems -> mix -> stems
        consistency = self.consistency(fake_stems, mix)
        g_loss = (self.adversarial_weight * adversarial + self.cycle_weight * (cycle_mix + cycle_stems)
                  + self.consistency_weight * consistency)
        size = mix.shape[0]
        logs = {"train/loss_adversarial": adversarial, "train/loss_cycle_mix": cycle_mix,
                "train/loss_cycle_stems": cycle_stems, "train/loss_consistency": consistency,
                "train/loss_discriminator_stems": d_stems, "train/loss_discriminator_mix": d_mix}
        if stems is not None and self.supervised_weight > 0:
            supervised = self.loss(fake_stems, stems)
            g_loss = g_loss + self.supervised_weight * supervised
            logs["train/loss_supervised"] = supervised
        self._manual_step(generator_opt, g_loss, step_scheduler=True)
        self.log("train/loss", g_loss, prog_bar=True, batch_size=size)
        self.log_dict(logs, batch_size=size)
        return g_loss

    # ------------------------------------------------------------------------------------- evaluation
    def _evaluate(self, batch: Dict[str, torch.Tensor], batch_idx: int, stage: str) -> None:
        from musicfx.metrics import museval_sdr, nanmedian, usdr

        mix, stems = batch["mix"], batch["stems"].float()
        estimates = self.model(mix).float()
        size = mix.shape[0]
        self.log(f"{stage}/loss", self._supervised_loss(mix, stems)[0], batch_size=size, sync_dist=True)
        # Per example and source: museval's median over 1 s windows (silent windows are NaN and skipped).
        sdr = nanmedian(museval_sdr(estimates, stems, self.sample_rate), dim=-1).clamp(max=100.0)
        song = usdr(estimates, stems).clamp(max=100.0)
        for index, name in enumerate(self.sources):
            self._log_finite_mean(f"{stage}/sdr_{name}", sdr[:, index])
            self.log(f"{stage}/usdr_{name}", song[:, index].mean(), batch_size=size, sync_dist=True)
        self._log_finite_mean(f"{stage}/sdr", sdr.flatten(), prog_bar=True)
        self.log(f"{stage}/usdr", song.mean(), batch_size=size, sync_dist=True)
        logger = self.example_logger
        if batch_idx == 0 and logger is not None:
            for i in range(min(self.num_logged_examples, size)):
                signals = {"mix": mix[i]}
                for index, name in enumerate(self.sources):
                    signals[f"{name} (estimate)"] = estimates[i, index]
                    signals[f"{name} (reference)"] = stems[i, index]
                log_examples(logger, f"{stage}/example_{i}", signals, self.sample_rate, self.global_step)

    def _log_finite_mean(self, name: str, values: torch.Tensor, prog_bar: bool = False) -> None:
        """Log the mean of the finite ``values`` (1-D), weighted by how many there are.

        An example whose windows are all silent has a NaN SDR and drops out of the epoch's mean. The metric is
        logged even when no value is finite (weight 0: the epoch's mean is then NaN, which a checkpoint
        callback ranks last), so a callback monitoring ``val/sdr`` always finds it; an untrained thresholded
        mask model, whose estimates are exactly zero, would otherwise stop the run.
        """
        finite = torch.isfinite(values)
        count = int(finite.sum())
        value = values[finite].mean() if count else values.new_zeros(())
        self.log(name, value, prog_bar=prog_bar, batch_size=count, sync_dist=True)

    # -------------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def separate(
        self,
        audio: torch.Tensor,
        sample_rate: int,
        segment: float = 10.0,
        overlap: float = 0.25,
        progress: bool = False,
        shifts: int = 0,
    ) -> Dict[str, torch.Tensor]:
        """Separate a whole recording of any length (the engine of ``musicfx separate``).

        Args:
            audio: ``(channels, time)`` or ``(time,)`` at ``sample_rate``; any channel count.
            sample_rate: rate of ``audio``; resampled to the model's and back.
            segment: seconds per model call (overlap-added with fades, so no seams).
            overlap: fraction of ``segment`` shared by neighbouring calls (at most 0.5).
            progress: show a progress bar.
            shifts: test-time shift augmentation: average over this many random shifts (0: none).

        Returns:
            ``{source: (channels, time)}`` (or ``(time,)`` for 1-D input), at ``audio``'s rate and length.
        """
        estimates = self._infer(audio, sample_rate, segment, overlap, progress, shifts)
        return {name: estimates[index] for index, name in enumerate(self.sources)}


class SeparationData(MultitrackData):
    """Songs' stems, augmented on the device and summed into targets and a mix.

    Batches reaching the task are ``{"mix": (B, C, T), "stems": (B, S, C, T)}`` with ``S = len(targets)``.
    Training batches are augmented by :class:`~musicfx.synth.remix.RemixAugment` (random shift, sign flip,
    channel swap, gain U(``gain``), remix across songs in groups of ``remix_group_size``); validation and
    test batches are the songs as they are, fixed by index.

    Args:
        targets: target name -> stems summed into it, e.g. ``{"vocals": ["vocals"], "accompaniment":
            ["drums", "bass", "other"]}``; default: every stem is its own target.
        shift: seconds of random shift per stem (Demucs: 0.5 at 44.1 kHz); 0 disables.
        remix, remix_group_size: shuffle stems across the songs of each group of this many examples.
        gain: range of the random per-stem gain.
        channel_swap, sign_flip: per-stem probabilities.
        **kwargs: see :class:`~musicfx.tasks.multitrack.MultitrackData` (``root``, ``stems``, ``random_mix``)
            and :class:`~musicfx.tasks.data.ChunkData`.
        unpaired: training batches become two separate pools for cycle-mode training: the first half of the
            examples gives mixes only, the other half stems only, ``{"mix": (B // 2, C, T), "unpaired_stems":
            (B - B // 2, S, C, T)}``; each half is augmented (and remixed) on its own, so no mix contains a chunk of
            the pool's stems. Validation and test batches stay paired (SDR needs references).
    """

    def __init__(
        self,
        *,
        targets: Optional[Mapping[str, Sequence[str]]] = None,
        shift: float = 0.5,
        remix: bool = True,
        remix_group_size: int = 4,
        gain: Tuple[float, float] = (0.25, 1.25),
        channel_swap: float = 0.5,
        sign_flip: float = 0.5,
        unpaired: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        groups = {name: [name] for name in self.stems} if targets is None else {k: list(v) for k, v in targets.items()}
        unknown = sorted({stem for members in groups.values() for stem in members} - set(self.stems))
        if unknown:
            raise ConfigError(f"targets name stems {unknown} that are not in stems {list(self.stems)}")
        self.targets: Tuple[str, ...] = tuple(groups)
        # (targets, stems) 0/1 matrix: one batched matmul sums the stems of every target.
        membership = torch.zeros(len(groups), len(self.stems))
        for row, members in enumerate(groups.values()):
            for stem in members:
                membership[row, self.stems.index(stem)] = 1.0
        self._membership = membership
        # Every stem its own target, in order: the stems are the targets, no sum needed.
        self._identity_targets = bool(torch.equal(membership, torch.eye(len(self.stems))))
        self._augment_settings = dict(group_size=remix_group_size, remix=remix, gain=tuple(gain),
                                      channel_swap=channel_swap, sign_flip=sign_flip)
        self.shift = shift
        self.unpaired = unpaired
        if unpaired and self.batch_size < 2:
            raise ConfigError("unpaired: true splits each batch into a mix pool and a stem pool; batch_size must be >= 2")
        self.build_scene()

    def build_scene(self) -> None:
        from musicfx.synth.remix import RemixAugment

        self.augment = RemixAugment(shift=int(round(self.shift * self.sample_rate)), **self._augment_settings)

    @property
    def extra_frames(self) -> int:
        return self.augment.shift

    def scene(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        stems, seeds = batch["stems"], batch["seed"]
        if self.training_batch and self.unpaired:
            half = stems.shape[0] // 2
            mixes = self.augment(stems[:half], seeds[:half])
            return {"mix": mixes.sum(dim=1), "unpaired_stems": self._targets(self.augment(stems[half:], seeds[half:]))}
        if self.training_batch:
            stems = self.augment(stems, seeds)
        return {"mix": stems.sum(dim=1), "stems": self._targets(stems)}

    def _targets(self, stems: torch.Tensor) -> torch.Tensor:
        """``(B, stems, C, T) -> (B, targets, C, T)``: each target is the sum of its stems."""
        if self._identity_targets:
            return stems
        membership = self._membership.to(device=stems.device, dtype=stems.dtype)
        return torch.einsum("gs,bsct->bgct", membership, stems)


__all__: List[str] = ["MUSDB_STEMS", "SeparationData", "SeparationTask"]
