"""The separation task end to end: SeparationTask / SeparationData with each model family, GAN mode through a
real Trainer, targets grouping and augmentation, then a checkpoint trained two steps through `musicfx fit` on
a tiny MUSDB18-HQ tree, loaded with `musicfx.load`, and run by `musicfx separate` and `musicfx evaluate`."""
from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx.cli
from musicfx.errors import ConfigError
from musicfx.tasks.separate import SeparationData, SeparationTask

if TYPE_CHECKING:
    import lightning.pytorch as pl

REPO = Path(__file__).resolve().parents[1]
SR = 16000
VOCALS_ACCOMPANIMENT = {"vocals": ["vocals"], "accompaniment": ["drums", "bass", "other"]}
SOURCES = ("vocals", "accompaniment")
MUSDB_STEMS = ("vocals", "drums", "bass", "other")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path) -> Iterator[None]:
    monkeypatch.setenv("MUSICFX_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        # Lightning's hints for tiny runs (few workers, few batches, nn.Module hyperparameters) are noise here.
        warnings.filterwarnings("ignore", message=".*(num_workers|is an instance of `nn.Module`|log_every_n_steps"
                                "|LeafSpec|val_dataloader|does not have many workers).*")
        warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
        yield


def tiny_data(**overrides: object) -> SeparationData:
    """Built-in generator songs, 16 kHz mono, vocals vs accompaniment, 0.25 s examples."""
    options = dict(
        sample_rate=SR, channels=1, segment=0.25, batch_size=2, num_workers=0, train_examples=4, val_examples=2,
        test_examples=2, targets=VOCALS_ACCOMPANIMENT, shift=0.05, generated_items=2, generated_duration=2.0,
    )
    options.update(overrides)
    return SeparationData(**options)


@pytest.fixture(scope="module")
def batch() -> Dict[str, torch.Tensor]:
    """One fixed validation batch (no augmentation): mix (2, 1, 4000), stems (2, 2, 1, 4000)."""
    data = tiny_data()
    data.setup("validate")
    return data.on_after_batch_transfer(next(iter(data.val_dataloader())), 0)


def _trainer(**overrides: object) -> "pl.Trainer":
    """A quiet CPU Trainer: no logger, checkpoints, progress bar or validation unless overridden."""
    import lightning.pytorch as pl

    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    options.update(overrides)
    return pl.Trainer(**options)


def _supervised(task: SeparationTask, batch: Dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        return float(task._supervised_loss(batch["mix"], batch["stems"])[0])


def _fit_on(task: SeparationTask, batch: Dict[str, torch.Tensor], steps: int) -> None:
    from torch.utils.data import DataLoader

    # batch_size=None hands the same dict over at every step.
    _trainer(max_steps=steps).fit(task, train_dataloaders=DataLoader([batch] * steps, batch_size=None))


def _adam(lr: float) -> Callable[..., torch.optim.Optimizer]:
    return lambda params: torch.optim.Adam(params, lr=lr)


# ----------------------------------------------------------------------------------- loss falls, per family
def _cnn_task() -> SeparationTask:
    from musicfx.losses.separation import MaskBCELoss
    from musicfx.models.cnn_mask import CNNSoftMask

    model = CNNSoftMask(SOURCES, channels=1, sample_rate=SR, n_fft=256, hop_length=64, conv_channels=(4, 4),
                        hidden=(32,))
    return SeparationTask(model, MaskBCELoss(), SOURCES, optimizer=_adam(1e-2), sample_rate=SR, channels=1)


def _open_unmix_task() -> SeparationTask:
    from musicfx.losses.separation import MagnitudeLoss
    from musicfx.models.open_unmix import OpenUnmix

    model = OpenUnmix(SOURCES, channels=1, sample_rate=SR, n_fft=256, hop_length=128, hidden_size=16, nb_layers=1,
                      bandwidth=None, dropout=0.0)
    loss = MagnitudeLoss("mse", n_fft=256, hop_length=128)
    return SeparationTask(model, loss, SOURCES, optimizer=_adam(1e-2), sample_rate=SR, channels=1)


def _roformer_task() -> SeparationTask:
    from musicfx.losses.waveform import L1STFTLoss
    from musicfx.models.bs_roformer import BSRoFormer

    model = BSRoFormer(SOURCES, channels=1, sample_rate=SR, n_fft=256, hop_length=64, dim=16, depth=1, heads=2,
                       dim_head=8, mask_mult=2, attn_dropout=0.0, ff_dropout=0.0)
    loss = L1STFTLoss(fft_sizes=(128, 256), hop_sizes=(32, 64), win_lengths=(128, 256))
    return SeparationTask(model, loss, SOURCES, optimizer=_adam(3e-3), sample_rate=SR, channels=1)


def _gan_task() -> SeparationTask:
    from musicfx.losses.waveform import WaveformLoss
    from musicfx.models.wavegan import WaveGANDiscriminator, WaveGANGenerator

    generator = WaveGANGenerator(SOURCES, channels=1, sample_rate=SR, widths=(8, 16, 16))
    discriminator = WaveGANDiscriminator(sources=2, channels=1, widths=(8, 16, 16))
    return SeparationTask(generator, WaveformLoss("l1"), SOURCES, discriminator=discriminator,
                          optimizer=_adam(3e-3), discriminator_optimizer=_adam(1e-3), sample_rate=SR, channels=1)


# (task, optimizer steps): enough for each to drop its loss by well over 15 % on one fixed batch.
FAMILIES = {"cnn_mask_bce": (_cnn_task, 10), "open_unmix_magnitude": (_open_unmix_task, 6),
            "bs_roformer_l1_stft": (_roformer_task, 6), "wavegan_gan": (_gan_task, 12)}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_loss_falls_for_each_family(family: str, batch: Dict[str, torch.Tensor]) -> None:
    make, steps = FAMILIES[family]
    torch.manual_seed(0)
    task = make()
    before = _supervised(task, batch)
    _fit_on(task, batch, steps)
    after = _supervised(task, batch)
    assert after < 0.85 * before, (family, before, after)


# -------------------------------------------------------------------------------------------------- GAN mode
def test_gan_mode_steps_both_optimizers_in_one_training_step() -> None:
    torch.manual_seed(0)
    task = _gan_task()
    before = {name: p.detach().clone() for name, p in task.named_parameters()}
    trainer = _trainer(fast_dev_run=1)
    trainer.fit(task, datamodule=tiny_data())
    assert not task.automatic_optimization and len(trainer.optimizers) == 2
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 1  # one training batch
    generator_opt, discriminator_opt = trainer.optimizers
    assert {id(p) for g in generator_opt.param_groups for p in g["params"]} == {id(p) for p in task.model.parameters()}
    assert {id(p) for g in discriminator_opt.param_groups for p in g["params"]} == {
        id(p) for p in task.discriminator.parameters()}
    for prefix in ("model.", "discriminator."):
        changed = [not torch.equal(before[name], p) for name, p in task.named_parameters() if name.startswith(prefix)]
        assert changed and all(changed), f"{prefix} parameters did not all move: {changed}"
    for name in ("train/loss_discriminator", "train/loss_adversarial", "train/loss_consistency"):
        assert torch.isfinite(trainer.callback_metrics[name]), name


# ---------------------------------------------------------------------------------------------------- data
def test_targets_group_stems_and_the_mix_is_their_sum() -> None:
    data = tiny_data(targets={"accompaniment": ["drums", "bass", "other"], "vocals": ["vocals"],
                              "rhythm": ["drums", "bass"]})
    data.setup("validate")
    raw = next(iter(data.val_dataloader()))
    stems = raw["stems"]  # (B, 4, C, T) in data.stems order: vocals, drums, bass, other
    assert data.stems == MUSDB_STEMS and data.targets == ("accompaniment", "vocals", "rhythm")
    out = data.on_after_batch_transfer(dict(raw), 0)
    assert out["stems"].shape == (2, 3, 1, stems.shape[-1])
    torch.testing.assert_close(out["stems"][:, 0], stems[:, 1] + stems[:, 2] + stems[:, 3])
    torch.testing.assert_close(out["stems"][:, 1], stems[:, 0])
    torch.testing.assert_close(out["stems"][:, 2], stems[:, 1] + stems[:, 2])
    torch.testing.assert_close(out["mix"], stems.sum(dim=1))
    assert out["stems"][:, 0].abs().max() > 0.01 and out["stems"][:, 1].abs().max() > 0.01  # not silence

    identity = tiny_data(targets=None)
    identity.setup("validate")
    raw = next(iter(identity.val_dataloader()))
    assert identity.targets == MUSDB_STEMS
    assert torch.equal(identity.on_after_batch_transfer(dict(raw), 0)["stems"], raw["stems"])
    with pytest.raises(ConfigError, match="guitar"):
        tiny_data(targets={"vocals": ["vocals"], "guitar": ["guitar"]})


def test_augmentation_applies_to_training_batches_only() -> None:
    import lightning.pytorch as pl

    seen: Dict[str, List[Dict[str, torch.Tensor]]] = {"train": [], "val": []}

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))

        def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            seen["train"].append(batch)
            return self.weight * batch["mix"].mean()

        def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> None:
            seen["val"].append(batch)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = tiny_data(remix_group_size=2)
    # One epoch of two batches, a validation batch in the sanity check and one at the epoch's end.
    _trainer(max_epochs=1, limit_val_batches=1, num_sanity_val_steps=1).fit(Probe(), datamodule=data)
    assert len(seen["train"]) == 2 and len(seen["val"]) == 2

    # What the first training batch is without and with RemixAugment (shift, flips, swap, gain, remix).
    reference = tiny_data(remix_group_size=2)
    reference.setup("fit")
    raw = next(iter(reference.train_dataloader()))
    frames = reference.segment_frames
    assert raw["stems"].shape[-1] == frames + reference.extra_frames
    augmented = reference.augment(raw["stems"], raw["seed"])
    membership = reference._membership
    expected = torch.einsum("gs,bsct->bgct", membership, augmented)
    plain = torch.einsum("gs,bsct->bgct", membership, raw["stems"][..., :frames])
    train = seen["train"][0]
    assert train["stems"].shape == (2, 2, 1, frames)
    torch.testing.assert_close(train["stems"], expected)
    torch.testing.assert_close(train["mix"], augmented.sum(dim=1))
    assert not torch.allclose(train["stems"], plain, atol=1e-3)

    raw_val = next(iter(reference.val_dataloader()))
    for batch in seen["val"]:  # validation batches are the songs as they are, every time
        torch.testing.assert_close(batch["stems"], torch.einsum("gs,bsct->bgct", membership, raw_val["stems"]))
        torch.testing.assert_close(batch["mix"], raw_val["stems"].sum(dim=1))


def test_sources_must_equal_the_data_targets() -> None:
    from musicfx.models.wavegan import WaveGANGenerator

    model = WaveGANGenerator(MUSDB_STEMS, channels=1, sample_rate=SR, widths=(4, 4))
    task = SeparationTask(model, sources=MUSDB_STEMS, sample_rate=SR, channels=1)
    with pytest.raises(ConfigError) as error:
        _trainer(fast_dev_run=1).fit(task, datamodule=tiny_data())
    message = str(error.value)
    assert "['vocals', 'drums', 'bass', 'other']" in message and "['vocals', 'accompaniment']" in message
    assert "leave data.init_args.targets out" not in message  # separation data does not follow the model's names


# ------------------------------------------------------------------------------------------------ separate()
class _Fractions(torch.nn.Module):
    """mix (B, C, T) -> (0.2 mix, 0.8 mix) as (vocals, accompaniment): linear, so chunking must not show."""

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        return torch.stack([0.2 * mix, 0.8 * mix], dim=1)


def _chord(rate: int, seconds: float, channels: int) -> torch.Tensor:
    """A few sines below 2 kHz: survive resampling to 16 kHz and back unchanged (up to the filter)."""
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    tones = [0.2 * torch.sin(2 * torch.pi * (220.0 * (c + 1) + 97.0 * k) * t + k) for c in range(channels)
             for k in range(3)]
    return torch.stack([sum(tones[3 * c: 3 * c + 3]) for c in range(channels)]).float()


def test_separate_returns_each_stem_in_the_inputs_shape() -> None:
    task = SeparationTask(_Fractions(), sources=SOURCES, sample_rate=SR, channels=2).eval()
    audio = _chord(22050, 1.3, 2)  # another rate than the model's, several overlapping segments
    stems = task.separate(audio, 22050, segment=0.4, overlap=0.25)
    assert list(stems) == list(SOURCES)
    for name, fraction in zip(SOURCES, (0.2, 0.8)):
        assert stems[name].shape == audio.shape and stems[name].dtype == torch.float32
        # Away from the edges (resampling filters ring there) the stem is the fraction of the input.
        torch.testing.assert_close(stems[name][:, 500:-500], fraction * audio[:, 500:-500], atol=2e-3, rtol=0)
    mono = task.separate(audio[0], 22050, segment=0.4)
    assert mono["vocals"].shape == audio[0].shape

    # A real model: one segment at the model's rate without overlap is exactly one call of the network.
    torch.manual_seed(0)
    roformer = _roformer_task().eval()
    clip = _chord(SR, 0.5, 1)
    stems = roformer.separate(clip, SR, overlap=0.0)
    with torch.no_grad():
        direct = roformer.model(clip[None])[0]
    for index, name in enumerate(SOURCES):
        torch.testing.assert_close(stems[name], direct[index], atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------- a checkpoint from `musicfx fit`
def _write_song(folder: Path, seed: int, seconds: float = 1.5, rate: int = 44100) -> None:
    from musicfx.data.generator import generate_stems

    folder.mkdir(parents=True)
    stems = generate_stems(int(seconds * rate), rate, 2, torch.Generator().manual_seed(seed))
    for name in MUSDB_STEMS:
        sf.write(folder / f"{name}.wav", stems[name].T.numpy(), rate, subtype="FLOAT")
    sf.write(folder / "mixture.wav", sum(stems[name] for name in MUSDB_STEMS).T.numpy(), rate, subtype="FLOAT")


@pytest.fixture(scope="module")
def musdb_tree(tmp_path_factory) -> Path:
    """A MUSDB18-HQ-like tree: two training songs (one named like an official validation track, so it is the
    valid split) and one test song, 1.5 s of 44.1 kHz stereo each."""
    from musicfx.data.multitrack import musdb_validation_tracks

    root = tmp_path_factory.mktemp("musdb18hq")
    _write_song(root / "train" / "A Training Song", 1)
    _write_song(root / "train" / musdb_validation_tracks()[0], 2)
    _write_song(root / "test" / "The Test Song", 3)
    return root


@pytest.fixture(scope="module")
def fitted(musdb_tree: Path, tmp_path_factory) -> Path:
    """The folder of a CNN soft-mask run trained 2 steps by `musicfx fit` with the MUSDB18-HQ overlay, tiny."""
    folder = tmp_path_factory.mktemp("fit")
    # Soft masks: two steps do not take a mask past the recipe's thresholds, and a stem that is exactly silent
    # has no SDR to compare. (A null cannot be given as a nested command-line value; an overlay file can.)
    soft = folder / "soft_masks.yaml"
    soft.write_text("model:\n  init_args:\n    model:\n      init_args:\n"
                    "        vocals_threshold: null\n        accompaniment_threshold: null\n")
    previous, cache = os.getcwd(), os.environ.get("MUSICFX_CACHE")
    os.chdir(folder)
    os.environ["MUSICFX_CACHE"] = str(folder / "cache")
    try:
        code = musicfx.cli.main([
            "fit", "-c", str(REPO / "recipes/separate/cnn_mask.yaml"), "-c", str(REPO / "recipes/trainer/cpu.yaml"),
            "-c", str(REPO / "recipes/data/musdb18hq.yaml"), f"--data.init_args.root={musdb_tree}",
            "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.log_every_n_steps=1",
            "--data.init_args.num_workers=0",
            "--data.init_args.batch_size=2", "--data.init_args.segment=0.5", "--data.init_args.train_examples=4",
            "--data.init_args.val_examples=2", "--model.init_args.model.init_args.conv_channels=[4,4]",
            "--model.init_args.model.init_args.hidden=[16]", "-c", str(soft),
        ])
    finally:
        os.chdir(previous)
        if cache is None:
            os.environ.pop("MUSICFX_CACHE", None)
        else:
            os.environ["MUSICFX_CACHE"] = cache
    assert code == 0
    return folder / "runs" / "separate-cnn-mask"


def test_recipe_with_the_musdb_overlay_trains_and_validates_on_the_tree(fitted: Path, musdb_tree: Path) -> None:
    checkpoint = torch.load(fitted / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2
    assert checkpoint["datamodule_hyper_parameters"]["root"] == str(musdb_tree)
    with open(next(fitted.glob("logs/version_*/metrics.csv"))) as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(row["train/loss"]) for row in rows if row.get("train/loss")]
    usdrs = [float(row["val/usdr_vocals"]) for row in rows if row.get("val/usdr_vocals")]
    # Validation ran on the valid split (the song named like an official validation track) and was scored.
    assert len(losses) == 2 and all(np.isfinite(losses)) and len(usdrs) == 1 and np.isfinite(usdrs[0])
    # The recipe's ModelCheckpoint monitors val/sdr, logged for every validation.
    assert "val/sdr" in rows[0] and len(list(fitted.glob("checkpoints/best-*.ckpt"))) == 1


def test_load_and_separate_from_the_checkpoint(fitted: Path) -> None:
    import musicfx

    task = musicfx.load(fitted / "checkpoints" / "last.ckpt")
    assert isinstance(task, SeparationTask) and not task.training
    assert (task.sources, task.sample_rate, task.channels) == (SOURCES, 22050, 1)
    audio = _chord(44100, 1.2, 2)  # stereo at 44.1 kHz into a mono 22.05 kHz model
    stems = task.separate(audio, 44100)
    assert list(stems) == list(SOURCES)
    for stem in stems.values():
        assert stem.shape == audio.shape and torch.isfinite(stem).all() and stem.abs().max() > 1e-4
    clip = audio[:1, :22050]
    at_rate = task.separate(clip, 22050, overlap=0.0)
    with torch.no_grad():
        direct = task.model(clip[None])[0]
    torch.testing.assert_close(torch.stack([at_rate[name] for name in SOURCES]), direct, atol=1e-5, rtol=1e-4)


def test_cli_separate_and_evaluate_with_the_checkpoint(fitted: Path, musdb_tree: Path, tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    import musicfx
    from musicfx.metrics import museval_sdr, nanmedian

    monkeypatch.setattr(musicfx.cli, "COMMAND_MODULES", ("musicfx.commands.separate", "musicfx.commands.evaluate"))
    ckpt = str(fitted / "checkpoints" / "last.ckpt")
    task = musicfx.load(ckpt)
    song = musdb_tree / "test" / "The Test Song"
    mixture, rate = sf.read(song / "mixture.wav", dtype="float32")
    mixture = torch.from_numpy(mixture.T.copy())
    expected = task.separate(mixture, rate)

    code = musicfx.cli.main(["separate", str(song / "mixture.wav"), "-o", str(tmp_path / "out"), "--ckpt", ckpt,
                             "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    for name in SOURCES:
        written, written_rate = sf.read(tmp_path / "out" / "mixture" / f"{name}.wav", dtype="float32")
        assert written_rate == rate and written.T.shape == mixture.shape
        # The command resamples in a stream (soxr's ResampleStream), separate() the whole clip at once.
        torch.testing.assert_close(torch.from_numpy(written.T.copy()), expected[name], atol=1e-3, rtol=0)

    capsys.readouterr()
    code = musicfx.cli.main(["evaluate", "--musdb", str(musdb_tree), "--ckpt", ckpt, "--device", "cpu",
                             "--json", str(tmp_path / "scores.json"), "-q"])
    out = capsys.readouterr().out
    assert code == 0 and "1 tracks" in out and "| vocals |" in out and "| accompaniment |" in out
    scores = json.loads((tmp_path / "scores.json").read_text())["tracks"]["The Test Song"]
    references = {n: torch.from_numpy(sf.read(song / f"{n}.wav", dtype="float32")[0].T.copy()) for n in MUSDB_STEMS}
    refs = torch.stack([references["vocals"], references["drums"] + references["bass"] + references["other"]])
    sdr = nanmedian(museval_sdr(torch.stack([expected[n] for n in SOURCES]), refs, rate), dim=-1)
    for index, name in enumerate(SOURCES):
        assert scores[name]["SDR"] == pytest.approx(float(sdr[index]), abs=1e-3), name


# ------------------------------------------------------------------------------------------------ benchmark
@pytest.mark.slow
def test_bench_separation_quick(shared_data: Path, tmp_path: Path, capsys) -> None:
    """`benchmarks/bench_separation.py --quick` (about a minute and a half here): its tables and numbers."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_separation

    out = tmp_path / "separation.json"
    code = bench_separation.main(["--quick", "--models", "cnn_mask", "wavegan", "--shared", str(shared_data),
                                  "--workdir", str(tmp_path / "work"), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Machine: ") and "real-time factor and peak memory" in printed
    assert "#### Ultimate NZ Tour: four stems" in printed
    assert "#### Music Delta - 80s Rock: vocals / accompaniment" in printed
    report = json.loads(out.read_text())
    for name, row in report["inference"].items():
        cases = row["cases"]
        assert set(cases) == {"1", "3"} and all(case["rtf"] > 0 and case["peak_mb"] > 100 for case in cases.values())
        assert 0.7 < row["ratio_longest_to_shortest"] < 1.3, name  # 3x the audio, not more memory
    scores = report["quality"]["scores"]
    nz = "Ultimate NZ Tour"
    # The oracles separate the real stems well; the mixture scaled by 1 / sources is the floor.
    assert scores["oracle IRM2"]["pair"][nz]["vocals"]["SDR"] > 8.0
    assert scores["oracle IRM1"]["four"][nz]["drums"]["SDR"] > 6.0
    assert scores["mixture / sources"]["pair"][nz]["vocals"]["SDR"] < 0.0
    assert set(scores) >= {"cnn_mask", "cnn_mask (soft masks)", "wavegan"} and "four" not in scores["wavegan"]
    assert all(run["batches"] >= 1 for run in report["quality"]["training"].values())
