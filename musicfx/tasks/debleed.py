"""Removing bleed from live multitrack recordings: :class:`DebleedTask` and :class:`BleedData`.

Data flow: DataLoader workers read raw stem chunks ``(tracks, channels, time)`` of songs plus each example's
bleed parameters (a mixing matrix, delays and room responses, or a simulated room) drawn on the CPU; on the
device :class:`~musicfx.synth.bleed.BleedSynth` renders what every microphone records (its own instrument
plus the others' bleed) and each microphone's target (its own instrument's direct signal), batched.

Models take and return mono tracks ``(B, M, T)``; stereo tracks are processed channel by channel (the
channels are folded into the batch).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from musicfx.audio.stems import MUSDB_STEMS
from musicfx.tasks.base import Task, _default_optimizer, declared, record_hparam
from musicfx.tasks.media import log_examples
from musicfx.tasks.multitrack import MultitrackData



def fold_channels(tracks: torch.Tensor) -> torch.Tensor:
    """``(B, M, C, T) -> (B * C, M, T)``: each channel becomes its own example of mono tracks."""
    batch, tracks_, channels, time = tracks.shape
    return tracks.transpose(1, 2).reshape(batch * channels, tracks_, time)


def unfold_channels(tracks: torch.Tensor, channels: int) -> torch.Tensor:
    """Inverse of :func:`fold_channels`: ``(B * C, M, T) -> (B, M, C, T)``."""
    folded, tracks_, time = tracks.shape
    return tracks.reshape(folded // channels, channels, tracks_, time).transpose(1, 2)


class DebleedTask(Task):
    """Train and run an interference (bleed) reduction model.

    Args:
        model: ``mics (B, M, T) -> clean tracks (B, M, T)``. A model with ``forward_train(mics)`` returning
            ``{"estimate": ..., "mixing_matrix": (B, M, M)}`` (t-UNet) also gets ``matrix_weight`` times the
            L1 error of its matrix against the batch's ``"mixing_matrix"``: :class:`BleedData` gives every
            scene's direct-path matrix, the true one for linear bleed and the instantaneous part of
            convolutive and room bleed (see :meth:`musicfx.synth.bleed.BleedSynth.mixing_matrix`). A model
            with ``native_target(mics, targets)`` whose ``forward_train`` returns ``"native"`` is trained with
            ``loss(native, native_target(mics, targets))`` instead (the paper variants'
            own domains, :mod:`musicfx.models.debleed_paper`).
        loss: criterion on ``(estimate, target)`` ``(B, M, T)``; default L1 on waveforms.
        tracks: track (instrument) names, in the model's order; default: the model's ``tracks`` (a debleed
            model declares them), else the four MUSDB18 stems; given as well, they must equal the model's. The
            data's ``stems`` follow them (or, set, must equal them).
        matrix_weight: weight of the mixing-matrix term.
        optimizer, scheduler: see :class:`~musicfx.tasks.base.Task`.
        sample_rate: what the model works at; default: what the model declares, else 44100 (see
            :class:`~musicfx.tasks.base.Task`).
        log_examples: validation examples logged as audio + spectrograms each validation.
    """

    predict_key = "mics"
    data_format = ("sample_rate",)  # the data's channels are folded into the batch: the model sees mono tracks
    data_names = ("tracks", "stems")

    def __init__(
        self,
        model: nn.Module,
        loss: Optional[nn.Module] = None,
        tracks: Optional[Sequence[str]] = None,
        matrix_weight: float = 1.0,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: Optional[LRSchedulerCallable] = None,
        sample_rate: Optional[int] = None,
        log_examples: int = 1,
    ) -> None:
        if loss is None:
            from musicfx.losses import WaveformLoss

            loss = WaveformLoss("l1")
        super().__init__(model, loss, optimizer, scheduler, sample_rate, channels=1)
        self.tracks: Tuple[str, ...] = tuple(declared(model, "tracks", tracks, MUSDB_STEMS, count="num_tracks"))
        record_hparam(self, "tracks", list(self.tracks))
        self.matrix_weight = matrix_weight
        self.num_logged_examples = log_examples

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        mics, targets = batch["mics"], batch["targets"]
        forward_train = getattr(self.model, "forward_train", None)
        matrix = batch.get("mixing_matrix")
        if forward_train is not None:
            outputs = forward_train(mics)
            estimate = outputs["estimate"]
        else:
            outputs, estimate = {}, self.model(mics)
        native_target = getattr(self.model, "native_target", None)
        if native_target is not None and "native" in outputs:
            # A paper variant trained in its own domain (matrix, magnitudes): musicfx.models.debleed_paper.
            main = self.loss(outputs["native"], native_target(mics, targets))
        else:
            main = self.loss(estimate, targets)
        loss = main
        if matrix is not None and "mixing_matrix" in outputs and self.matrix_weight > 0:
            matrix_error = (outputs["mixing_matrix"] - matrix).abs().mean()
            loss = loss + self.matrix_weight * matrix_error
            self.log("train/loss_matrix", matrix_error, batch_size=mics.shape[0])
        self.log("train/loss", loss, prog_bar=True, batch_size=mics.shape[0])
        return loss

    def _evaluate(self, batch: Dict[str, torch.Tensor], batch_idx: int, stage: str) -> None:
        from musicfx.metrics import museval_sdr, nanmedian

        mics, targets = batch["mics"].float(), batch["targets"].float()
        estimate = self.model(mics).float()
        size = mics.shape[0]
        self.log(f"{stage}/loss", self.loss(estimate, targets), batch_size=size, sync_dist=True)
        # (B, M, 1, T) are M mono "sources" for museval's framing; median over 1 s windows per track.
        sdr_out = nanmedian(museval_sdr(estimate.unsqueeze(2), targets.unsqueeze(2), self.sample_rate), dim=-1)
        sdr_in = nanmedian(museval_sdr(mics.unsqueeze(2), targets.unsqueeze(2), self.sample_rate), dim=-1)
        sdr_out, sdr_in = sdr_out.clamp(max=100.0), sdr_in.clamp(max=100.0)
        for index, name in enumerate(self.tracks):
            valid = torch.isfinite(sdr_out[:, index]) & torch.isfinite(sdr_in[:, index])
            if bool(valid.any()):
                count = int(valid.sum())
                self.log(f"{stage}/sdr_{name}", sdr_out[valid, index].mean(), batch_size=count, sync_dist=True)
                self.log(f"{stage}/sdr_{name}_unprocessed", sdr_in[valid, index].mean(), batch_size=count,
                         sync_dist=True)
        valid = torch.isfinite(sdr_out) & torch.isfinite(sdr_in)
        if bool(valid.any()):
            self.log(f"{stage}/sdr", sdr_out[valid].mean(), prog_bar=True, batch_size=size, sync_dist=True)
            self.log(f"{stage}/sdr_unprocessed", sdr_in[valid].mean(), batch_size=size, sync_dist=True)
            self.log(f"{stage}/sdri", (sdr_out - sdr_in)[valid].mean(), batch_size=size, sync_dist=True)
        logger = self.example_logger
        if batch_idx == 0 and logger is not None:
            for i in range(min(self.num_logged_examples, size)):
                for index, name in enumerate(self.tracks):
                    signals = {"microphone": mics[i, index:index + 1], "estimate": estimate[i, index:index + 1],
                               "target": targets[i, index:index + 1]}
                    log_examples(logger, f"{stage}/example_{i}_{name}", signals, self.sample_rate, self.global_step)

    @torch.no_grad()
    def debleed(
        self,
        tracks: torch.Tensor,
        sample_rate: int,
        segment: float = 10.0,
        overlap: float = 0.25,
        progress: bool = False,
    ) -> torch.Tensor:
        """Remove bleed from a whole multitrack recording of any length.

        Args:
            tracks: ``(M, time)`` mono tracks or ``(M, channels, time)``, at ``sample_rate``; ``M`` must be
                the number of tracks the model was trained on.
            sample_rate: rate of ``tracks``; resampled to the model's and back.
            segment, overlap: overlap-add chunking, in seconds and as a fraction of ``segment``.

        Returns:
            The cleaned tracks, same shape and rate as ``tracks``.
        """
        mono = tracks.dim() == 2
        if mono:
            tracks = tracks.unsqueeze(1)
        if tracks.shape[0] != len(self.tracks):
            raise ValueError(f"the model takes {len(self.tracks)} tracks ({', '.join(self.tracks)}), got {tracks.shape[0]}")
        channels = tracks.shape[1]
        # Channels of all tracks side by side as one (M * C)-channel signal: the overlap-add engine then
        # chunks every track in lockstep; the wrapper regroups them into mono examples for the model.
        flat = tracks.reshape(-1, tracks.shape[-1])

        def model(x: torch.Tensor) -> torch.Tensor:
            batch = x.shape[0]
            y = self.model(fold_channels(x.reshape(batch, len(self.tracks), channels, -1)))
            return unfold_channels(y, channels).reshape(batch, -1, x.shape[-1])

        out = self._infer(flat, sample_rate, segment, overlap, progress, model=model,
                          channels=flat.shape[0])
        out = out.reshape(tracks.shape)
        return out.squeeze(1) if mono else out


class BleedData(MultitrackData):
    """Songs' stems turned into bleeding microphone tracks on the device.

    Batches reaching the task are ``{"mics": (B', M, T), "targets": (B', M, T)}`` (``B' = B * channels``)
    and, for linear bleed, ``"mixing_matrix": (B', M, M)``. Training stems get a random gain per stem and
    are remixed across songs (``remix``) before the bleed is applied, so a few songs give many scenes.

    Args:
        bleed: ``"linear"``, ``"convolutive"``, ``"room"``, or a list of them drawn per example.
        diagonal, off_diagonal: ranges of the mixing matrix (own-source gain, bleed gains).
        max_delay_ms: largest bleed delay (convolutive).
        rt60: range of reverberation times of generated impulse responses and rooms (seconds).
        ir_length: impulse-response length in seconds.
        ir_folder: folder of measured impulse responses to use instead of generated ones (convolutive).
        rooms: number of simulated rooms in the cached impulse-response bank (room bleed).
        gain: range of the random per-stem gain applied before the bleed (training only).
        remix, remix_group_size: shuffle stems across songs within groups (training only).
        channels: channels read per stem (each is debled on its own: the model sees one channel per track).
        stems: the tracks, in order; default: the model's ``tracks`` (see
            :class:`~musicfx.tasks.multitrack.MultitrackData`).
        segment: example length in seconds.
        **kwargs: see :class:`~musicfx.tasks.multitrack.MultitrackData` (``root``, ``stems``, ``random_mix``)
            and :class:`~musicfx.tasks.data.ChunkData`.
    """

    rendered_one_per_stem = True  # a bleeding track is one microphone's instrument

    default_channels = 1
    model_format = ("sample_rate",)
    model_names = "tracks"

    def __init__(
        self,
        *,
        bleed: Union[str, Sequence[str]] = "linear",
        diagonal: Tuple[float, float] = (0.6, 1.0),
        off_diagonal: Tuple[float, float] = (0.05, 0.31),
        max_delay_ms: float = 20.0,
        rt60: Tuple[float, float] = (0.2, 0.8),
        ir_length: float = 0.5,
        ir_folder: Optional[str] = None,
        rooms: int = 64,
        gain: Tuple[float, float] = (0.5, 1.25),
        remix: bool = True,
        remix_group_size: int = 4,
        channels: int = 1,
        segment: float = 4.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(channels=channels, segment=segment, **kwargs)
        from musicfx.synth.remix import RemixAugment

        self.save_hyperparameters()
        kinds = bleed if isinstance(bleed, str) else list(bleed)
        self._room_bank = None
        if "room" in ([kinds] if isinstance(kinds, str) else kinds):
            self._room_bank = dict(num_rooms=rooms, seed=self.seed, rt60=tuple(rt60), cache_dir=self.cache_dir)
        self._ir_folder = ir_folder
        self._bleed_settings = dict(
            kind=kinds, diagonal=tuple(diagonal), off_diagonal=tuple(off_diagonal),
            max_delay_ms=max_delay_ms, rt60=tuple(rt60), ir_length=ir_length,
        )
        self.augment = RemixAugment(
            shift=0, group_size=remix_group_size, remix=remix, gain=tuple(gain), channel_swap=0.0, sign_flip=0.0
        )
        self.build_scene()

    def build_scene(self) -> None:
        from musicfx.data.impulse_responses import load_impulse_responses
        from musicfx.synth.bleed import BleedSynth

        # The synth never reads files: measured responses are loaded here, at the data's sample rate.
        responses = None if self._ir_folder is None else load_impulse_responses(
            self._ir_folder, self.sample_rate, max(1, round(self._bleed_settings["ir_length"] * self.sample_rate)))
        self.synth = BleedSynth(sample_rate=self.sample_rate, num_tracks=len(self.stems), room_bank=self._room_bank,
                                impulse_responses=responses, **self._bleed_settings)

    @property
    def draw(self):
        return self.synth.draw

    def scene(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        stems, seeds = batch["stems"], batch["seed"]
        if self.training_batch:
            stems = self.augment(stems, seeds)
        params = {key: value for key, value in batch.items() if key not in ("stems", "seed")}
        mics, targets = self.synth(stems, params, seeds)
        channels = stems.shape[2]
        out = {"mics": fold_channels(mics), "targets": fold_channels(targets)}
        matrix = self.synth.mixing_matrix(params) if hasattr(self.synth, "mixing_matrix") else None
        if matrix is not None:
            out["mixing_matrix"] = matrix.repeat_interleave(channels, dim=0)
        return out


__all__: List[str] = ["BleedData", "DebleedTask", "fold_channels", "unfold_channels"]
