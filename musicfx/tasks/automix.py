"""Mixing stems into a stereo mix: :class:`AutomixTask` (LightningModule) and :class:`AutomixData`.

FxNorm-automix's recipe (Martínez-Ramírez et al., ISMIR 2022): the model sees *effect-normalized* stems
(``musicfx fxnorm normalize``) and learns to produce the engineer's original mix from them, so at run time
any stems, dry or already processed, are normalized first and then mixed. A random mixing console on the
device augments the input stems (gain, EQ, compression, pan, reverb, channel swap, stem dropout); a dropped
stem is also left out of the target, so the target is always a mix of exactly the stems the model hears.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from musicfx.audio.stems import MUSDB_STEMS, STEM_FILE_SUFFIX, track_name
from musicfx.data.multitrack import multitrack_source
from musicfx.data.sources import Source
from musicfx.errors import ConfigError
from musicfx.tasks.base import Task, declared, record_hparam
from musicfx.tasks.media import log_examples
from musicfx.tasks.multitrack import MultitrackData

NORMALIZED_SUFFIX = "@normalized"


def _amsgrad(params) -> torch.optim.Optimizer:
    # The paper's optimizer: Adam with AMSGrad at 1e-3 (with gradient clipping at 0.2 in the recipes).
    return torch.optim.Adam(params, lr=1e-3, amsgrad=True)


class AutomixTask(Task):
    """Train and run an automatic mixing model.

    Args:
        model: ``stems (B, S, C, T) -> stereo mix (B, 2, T)``.
        loss: criterion on ``(estimate, target)`` mixes ``(B, 2, T)``; default: the paper's stereo STFT loss
            (sum and difference, A-weighted) plus a loudness term.
        stems: stem names, in the model's input order; default: the model's ``stems`` (a mixer declares them),
            else the four MUSDB18 stems; given as well, they must equal the model's. The data's ``stems`` follow
            them (or, set, must equal them).
        mode: ``"mix"`` trains the mixer; ``"pretrain"`` trains only the front and back end as an
            autoencoder of the stems (FxNorm-automix's first stage, with ``loss`` comparing the
            reconstructed ``(B, S, C, T)`` stems, e.g. L1; needs ``model.forward_autoencoder``).
        pretrained: checkpoint of a ``"pretrain"`` run whose front and back end initialise this model.
        freeze_front_back: keep the pretrained front and back end fixed while training the mixer.
        optimizer, scheduler: see :class:`~musicfx.tasks.base.Task`.
        sample_rate, channels: what the model works at (channels per input stem); default: what the model
            declares, else 44.1 kHz stereo.
        log_examples: validation examples logged as audio + spectrograms each validation.
    """

    default_channels = 2
    predict_key = "stems"
    data_names = ("stems", "stems")

    def __init__(
        self,
        model: nn.Module,
        loss: Optional[nn.Module] = None,
        stems: Optional[Sequence[str]] = None,
        mode: str = "mix",
        pretrained: Optional[str] = None,
        freeze_front_back: bool = False,
        optimizer: OptimizerCallable = _amsgrad,
        scheduler: Optional[LRSchedulerCallable] = None,
        sample_rate: Optional[int] = None,
        channels: Optional[int] = None,
        log_examples: int = 1,
    ) -> None:
        if mode not in ("mix", "pretrain"):
            raise ConfigError(f"mode must be 'mix' or 'pretrain', got {mode!r}")
        if mode == "pretrain" and not hasattr(model, "forward_autoencoder"):
            raise ConfigError(f"mode 'pretrain' needs a model with forward_autoencoder; {type(model).__name__} has none")
        if loss is None:
            from musicfx.losses.automix import AutomixLoss, StereoSTFTLoss

            loss = AutomixLoss(stereo=StereoSTFTLoss(sample_rate=declared(model, "sample_rate", sample_rate, 44100)))
        super().__init__(model, loss, optimizer, scheduler, sample_rate, channels)
        for part in loss.modules():
            # The STFT loss places its A-weighting by the rate: a loss at another rate weights the wrong bins.
            rate = getattr(part, "sample_rate", None)
            if isinstance(rate, int) and rate != self.sample_rate:
                raise ConfigError(
                    f"the loss ({type(part).__name__}, in model.init_args.loss) has sample_rate {rate} but the model "
                    f"works at {self.sample_rate}; set the loss's sample_rate to {self.sample_rate}"
                )
        self.stems: Tuple[str, ...] = tuple(declared(model, "stems", stems, MUSDB_STEMS, count="num_stems"))
        record_hparam(self, "stems", list(self.stems))
        self.mode = mode
        self.num_logged_examples = log_examples
        if pretrained is not None:
            self._load_front_back(pretrained)
        if freeze_front_back:
            if not hasattr(model, "freeze_front_back"):
                raise ConfigError(f"freeze_front_back needs a model with front and back end; {type(model).__name__} has none")
            model.freeze_front_back(True)

    def _load_front_back(self, path: str) -> None:
        from musicfx.checkpoint import load_checkpoint
        from musicfx.errors import CheckpointError, MusicfxError

        try:
            # Only weights are taken from it: read as data, with no opt-in (a recipe value is no place for one).
            state = load_checkpoint(path, hint=None)["state_dict"]
        except CheckpointError as error:
            raise CheckpointError(f"pretrained checkpoint {error}") from None
        # Only the front and back end (one tied module) carry over, as in the reference's two-stage training.
        weights = {key[len("model."):]: value for key, value in state.items() if key.startswith("model.front_end.")}
        own = self.model.state_dict()
        matching = {key: value for key, value in weights.items() if key in own and own[key].shape == value.shape}
        if not matching:
            raise MusicfxError(f"{path}: holds no front-end weights of {type(self.model).__name__}")
        self.model.load_state_dict(matching, strict=False)

    def _pretrain_loss(self, stems: torch.Tensor) -> torch.Tensor:
        # FxNorm-automix's front end filters all stems' channels together, so the autoencoder takes the
        # whole (B, S, C, T) stack and reconstructs it.
        return self.loss(self.model.forward_autoencoder(stems), stems)

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        stems, target = batch["stems"], batch["mix"]
        if self.mode == "pretrain":
            loss = self._pretrain_loss(stems)
        else:
            loss = self.loss(self.model(stems), target)
        self.log("train/loss", loss, prog_bar=True, batch_size=stems.shape[0])
        return loss

    def _evaluate(self, batch: Dict[str, torch.Tensor], batch_idx: int, stage: str) -> None:
        stems, target = batch["stems"], batch["mix"].float()
        size = stems.shape[0]
        if self.mode == "pretrain":
            self.log(f"{stage}/loss", self._pretrain_loss(stems), prog_bar=True, batch_size=size, sync_dist=True)
            return
        from musicfx.metrics.mix import mix_metrics

        estimate = self.model(stems).float()
        self.log(f"{stage}/loss", self.loss(estimate, target), prog_bar=True, batch_size=size, sync_dist=True)
        # FxNorm's baseline: the plain sum of the normalized stems, with each stem's channels made stereo.
        from musicfx.audio.io import convert_channels

        baseline = convert_channels(stems.float().sum(dim=1), 2)
        totals: Dict[str, float] = {}
        for i in range(size):
            for name, value in mix_metrics(estimate[i].cpu(), target[i].cpu(), self.sample_rate).items():
                totals[name] = totals.get(name, 0.0) + value / size
            for name, value in mix_metrics(baseline[i].cpu(), target[i].cpu(), self.sample_rate).items():
                totals[f"{name}_baseline"] = totals.get(f"{name}_baseline", 0.0) + value / size
        for name, value in totals.items():
            self.log(f"{stage}/{name}", value, batch_size=size, sync_dist=True)
        logger = self.example_logger
        if batch_idx == 0 and logger is not None:
            for i in range(min(self.num_logged_examples, size)):
                signals = {"sum of stems": baseline[i], "estimate": estimate[i], "target": target[i]}
                log_examples(logger, f"{stage}/example_{i}", signals, self.sample_rate, self.global_step)

    @torch.no_grad()
    def mix(
        self,
        stems: torch.Tensor,
        sample_rate: int,
        segment: float = 10.0,
        overlap: float = 0.25,
        progress: bool = False,
    ) -> torch.Tensor:
        """Mix whole stems of any length into a stereo mix (not peak-limited: see ``musicfx mix``).

        Args:
            stems: ``(S, channels, time)`` at ``sample_rate``, in the order of ``self.stems``; mono or
                stereo stems are converted to the model's channel count.
            sample_rate: rate of ``stems``; resampled to the model's and back.
            segment, overlap: overlap-add chunking, in seconds and as a fraction of ``segment``.

        Returns:
            ``(2, time)`` at ``sample_rate``.
        """
        from musicfx.audio.io import convert_channels

        if stems.dim() != 3 or stems.shape[0] != len(self.stems):
            raise ValueError(f"expected ({len(self.stems)}, channels, time) stems ({', '.join(self.stems)}), "
                             f"got {tuple(stems.shape)}")
        stems = convert_channels(stems, self.channels)
        count, channels = stems.shape[:2]

        def model(x: torch.Tensor) -> torch.Tensor:
            return self.model(x.reshape(x.shape[0], count, channels, -1))

        return self._infer(stems.reshape(count * channels, -1), sample_rate, segment, overlap, progress, model=model,
                           channels=count * channels)


__all__: List[str] = ["AutomixTask", "MUSDB_STEMS"]


class _WithNormalized:
    """A multitrack source whose songs carry both their original stems and their effect-normalized ones.

    Stems are ``original + [f"{name}@normalized" ...]``; songs are matched by folder name (the layout
    ``musicfx fxnorm normalize`` writes), and songs missing from either side are left out with a warning.
    """

    def __init__(self, original, normalized) -> None:
        import warnings

        from musicfx.errors import DataError

        self.sample_rate, self.channels = original.sample_rate, original.channels
        self.stems = tuple(original.stems) + tuple(f"{stem}{NORMALIZED_SUFFIX}" for stem in normalized.stems)
        self.original, self.normalized = original, normalized
        by_name = {_song_key(normalized.name(i)): i for i in range(len(normalized))}
        self._pairs = [(i, by_name[_song_key(original.name(i))]) for i in range(len(original))
                       if _song_key(original.name(i)) in by_name]
        if not self._pairs:
            raise DataError("no song of the original stems has normalized stems (match by song folder name); "
                            "run `musicfx fxnorm normalize ROOT -o NORMALIZED` first")
        if len(self._pairs) < len(original):
            warnings.warn(f"{len(original) - len(self._pairs)} songs have no normalized stems and are left out")

    def __len__(self) -> int:
        return len(self._pairs)

    def num_frames(self, index: int) -> int:
        first, second = self._pairs[index]
        return min(self.original.num_frames(first), self.normalized.num_frames(second))

    def read(self, index: int, start: int, length: int, stems: Optional[Sequence[str]] = None) -> torch.Tensor:
        first, second = self._pairs[index]
        stems = self.stems if stems is None else tuple(stems)
        out = torch.zeros(len(stems), self.channels, length)
        wanted_original = [s for s in stems if not s.endswith(NORMALIZED_SUFFIX)]
        wanted_normalized = [s[: -len(NORMALIZED_SUFFIX)] for s in stems if s.endswith(NORMALIZED_SUFFIX)]
        rows_original = [i for i, s in enumerate(stems) if not s.endswith(NORMALIZED_SUFFIX)]
        rows_normalized = [i for i, s in enumerate(stems) if s.endswith(NORMALIZED_SUFFIX)]
        if wanted_original:
            out[rows_original] = self.original.read(first, start, length, wanted_original)
        if wanted_normalized:
            out[rows_normalized] = self.normalized.read(second, start, length, wanted_normalized)
        return out

    def name(self, index: int) -> str:
        return self.original.name(self._pairs[index][0])

    def category(self, index: int) -> str:
        return self.original.category(self._pairs[index][0])


def _song_key(name: str) -> str:
    from pathlib import PurePath

    base = PurePath(name).name
    return track_name(base) if base.lower().endswith(STEM_FILE_SUFFIX) else base


class AutomixData(MultitrackData):
    """Effect-normalized stems in, the engineer's mix out, with a random console on the device.

    Batches reaching the task are ``{"stems": (B, S, 2, T), "mix": (B, 2, T)}``: the model's input stems
    (normalized, then through :class:`~musicfx.synth.console.RandomConsole` when training) and the target
    mix of the same stems (stems the console dropped are left out of it).

    Where the material comes from:

    * ``root`` and ``normalized_root``: the original multitrack (MUSDB18, MUSDB18-HQ or stem folders) and
      its effect-normalized copy written by ``musicfx fxnorm normalize``. Target: the sum of the original
      (wet) stems; input: the normalized stems of the same song and offset.
    * ``root`` alone: the stems as they are are both the input and the parts of the target (no
      normalization: a quick start on data that is not normalized yet).
    * neither: the built-in generator. Its stems are dry, which is what normalization aims at, so they
      are the input; the target is a mix by a second, milder random console (the "engineer") on top of a
      house balance (``house_gain_db``), drawn per example: the model learns that style of mixing.

    Args:
        root: original multitrack songs; ``None`` for the built-in generator.
        normalized_root: the effect-normalized copy of ``root``.
        stems: stem names, in the model's input order; default: the model's ``stems`` (see
            :class:`~musicfx.tasks.multitrack.MultitrackData`).
        console: apply the random console to training inputs (validation and test inputs are clean).
        gain_db, pan, eq_bands, eq_gain_db, compressor_prob, reverb_prob, channel_swap, stem_dropout:
            the random console's ranges and probabilities (see :class:`~musicfx.synth.console.RandomConsole`).
        house_gain_db: per-stem gains (dB) of the generator's target mix; stems not named get 0 dB.
        segment, batch_size: automix defaults (10 s examples, 4 per batch).
        **kwargs: see :class:`~musicfx.tasks.multitrack.MultitrackData` (``root``, ``stems``) and
            :class:`~musicfx.tasks.data.ChunkData`.
    """

    model_names = "stems"

    def __init__(
        self,
        *,
        normalized_root: Optional[str] = None,
        console: bool = True,
        gain_db: Tuple[float, float] = (-6.0, 6.0),
        pan: Tuple[float, float] = (-0.6, 0.6),
        eq_bands: int = 3,
        eq_gain_db: Tuple[float, float] = (-6.0, 6.0),
        compressor_prob: float = 0.5,
        reverb_prob: float = 0.3,
        channel_swap: float = 0.5,
        stem_dropout: float = 0.1,
        house_gain_db: Optional[Dict[str, float]] = None,
        segment: float = 10.0,
        batch_size: int = 4,
        **kwargs: Any,
    ) -> None:
        if normalized_root is not None and kwargs.get("root") is None:
            raise ConfigError("data.init_args.normalized_root needs root (the original stems) as well")
        if kwargs.get("random_mix"):
            raise ConfigError("random_mix makes no sense for automix: the target mix needs the stems of one song")
        super().__init__(segment=segment, batch_size=batch_size, **kwargs)
        self.save_hyperparameters()
        self.normalized_root = normalized_root
        self.use_console = console
        self._console_settings = dict(
            gain_db=tuple(gain_db), pan=tuple(pan), eq_bands=eq_bands, eq_gain_db=tuple(eq_gain_db),
            compressor_prob=compressor_prob, reverb_prob=reverb_prob, channel_swap=channel_swap,
            stem_dropout=stem_dropout,
        )
        self._house = {"vocals": 3.0, "other": -2.0} if house_gain_db is None else dict(house_gain_db)
        self.build_scene()

    def build_scene(self) -> None:
        from musicfx.synth.console import RandomConsole

        self._house_gain_db = torch.tensor([float(self._house.get(stem, 0.0)) for stem in self.stems])
        self.console = RandomConsole(num_stems=len(self.stems), sample_rate=self.sample_rate, **self._console_settings)
        self.engineer = None
        if self.root is None:
            self.engineer = RandomConsole(
                num_stems=len(self.stems), sample_rate=self.sample_rate, gain_db=(-2.0, 2.0), pan=(-0.4, 0.4),
                eq_bands=3, eq_gain_db=(-3.0, 3.0), compressor_prob=0.7, threshold_db=(-24.0, -12.0),
                ratio=(2.0, 4.0), reverb_prob=0.5, rt60=(0.3, 0.8), wet=(0.05, 0.2), channel_swap=0.0,
                stem_dropout=0.0,
            )

    # ------------------------------------------------------------------------------------------ sources
    def build_sources(self, split: str) -> Dict[str, Source]:
        sources = super().build_sources(split)
        if self.normalized_root is not None:
            normalized = multitrack_source(
                self.normalized_root, split=split, stems=self.stems, sample_rate=self.sample_rate,
                channels=self.channels, cache_dir=self.cache_dir,
            )
            sources["stems"] = _WithNormalized(sources["stems"], normalized)
        return sources

    @property
    def draw(self):
        console, engineer = self.console, self.engineer

        def draw(generator: torch.Generator) -> Dict[str, torch.Tensor]:
            # Separate streams: the engineer's settings do not change with the augmentation's ranges.
            first, second = torch.randint(0, 2**62, (2,), generator=generator).tolist()
            params = console.draw(torch.Generator().manual_seed(first))
            if engineer is not None:
                mix = engineer.draw(torch.Generator().manual_seed(second))
                params.update({f"engineer_{key}": value for key, value in mix.items()})
            return params

        return draw

    # ---------------------------------------------------------------------------------------- the scene
    def scene(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        from musicfx.audio.io import convert_channels
        from musicfx.rng import derive_seeds

        stems, seeds = batch["stems"], batch["seed"]
        count = len(self.stems)
        params = {key: batch[key] for key in self.console.param_keys}
        if self.normalized_root is not None:
            originals, inputs = stems[:, :count], stems[:, count:]
        else:
            originals, inputs = stems, stems
        if self.engineer is not None:
            engineered = {key[len("engineer_"):]: value for key, value in batch.items() if key.startswith("engineer_")}
            house = self._house_gain_db.to(stems.device)
            balanced = originals * torch.pow(10.0, house / 20.0).to(stems.dtype)[None, :, None, None]
            originals = self.engineer(balanced, engineered, derive_seeds(seeds, 0x4D1C))
        originals = convert_channels(originals, 2)
        if self.training_batch and self.use_console:
            inputs = self.console(inputs, params, seeds)
            originals = self.console.apply_dropout(originals, params)
        return {"stems": inputs, "mix": originals.sum(dim=1)}


__all__ += ["AutomixData"]
