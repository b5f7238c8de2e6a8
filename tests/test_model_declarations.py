"""A debleed model declares its tracks and sample rate, a mixer its stems and sample rate, once: the task reads
them from the model (its own arguments are overrides that must agree), the datamodule follows or checks them at
setup, and checkpoints saved before models declared anything still load."""
from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict

import pytest
import torch

import musicfx
from musicfx.errors import ConfigError
from musicfx.models.blocks import declare_names
from musicfx.models.console import MixingConsole
from musicfx.models.debleed_paper import DFUNetPaper, DICAEPaper, FUNetPaper, TUNetPaper
from musicfx.models.df_unet import DFUNet
from musicfx.models.di_cae import DICAE
from musicfx.models.f_unet import FUNet
from musicfx.models.fxnorm_automix import FxNormAutomix
from musicfx.models.t_unet import TUNet
from musicfx.models.wave_u_net import WaveUNet
from musicfx.tasks.automix import AutomixData, AutomixTask
from musicfx.tasks.base import Task
from musicfx.tasks.debleed import BleedData, DebleedTask

pytestmark = pytest.mark.usefixtures("one_thread")

TRACKS = ["bass", "vocals", "drums"]  # not the default names, order or count
TINY_FXNORM = dict(features=16, kernel_size=16, pool_size=16, bottleneck_features=16, skip_features=8,
                   hidden_features=16, blocks=1, repeats=1, lstm_layers=1, se_expansion=2)


def _quiet(build, *args: Any, **kwargs: Any):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
        return build(*args, **kwargs)


def _follow(data, task) -> None:
    """What ``Trainer.fit`` does first: the datamodule's setup reads the model (through the task)."""
    data.trainer = SimpleNamespace(lightning_module=task, training=False)
    data._follow_model()


# ------------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("build", [TUNet, FUNet, DFUNet, DICAE, TUNetPaper, FUNetPaper, DFUNetPaper, DICAEPaper])
def test_debleed_models_declare_tracks_and_rate(build) -> None:
    model = build(tracks=TRACKS, sample_rate=16000)
    assert model.tracks == tuple(TRACKS) and model.num_tracks == 3 and model.sample_rate == 16000
    bare = build()
    assert bare.tracks is None and bare.sample_rate is None and bare.num_tracks == 4  # declares nothing
    with pytest.raises(ValueError, match="num_tracks is 4 but tracks names 3"):
        build(tracks=TRACKS, num_tracks=4)
    # The shared forward (models.blocks.TrackDebleeder) adds no forward_train: the task looks it up to choose
    # between the model's training outputs and its plain output.
    assert hasattr(bare, "forward_train") == ("forward_train" in vars(build))


@pytest.mark.parametrize("build", [FxNormAutomix, WaveUNet, MixingConsole])
def test_mixers_declare_stems(build) -> None:
    model = build(stems=TRACKS)
    assert model.stems == tuple(TRACKS) and model.num_stems == 3
    assert build().stems is None and build().num_stems == 4


def test_declared_names_are_distinct_and_enough() -> None:
    with pytest.raises(ValueError, match="TUNet: tracks must be distinct names"):
        TUNet(tracks=["bass", "bass"])
    with pytest.raises(ValueError, match="TUNet needs num_tracks >= 2, got 1"):
        TUNet(num_tracks=1)  # a mixing matrix needs two tracks
    model = torch.nn.Module()
    assert declare_names(model, "stems", None, 2, None) == 2
    assert model.stems is None and model.num_stems == 2 and model.sample_rate is None


# ------------------------------------------------------------------------------------------------- tasks
def test_debleed_task_reads_the_model() -> None:
    task = _quiet(DebleedTask, TUNet(tracks=TRACKS, sample_rate=16000, widths=(4,), head_width=4))
    assert task.tracks == tuple(TRACKS) and task.sample_rate == 16000 and task.channels == 1
    assert task.hparams["tracks"] == TRACKS and task.hparams["sample_rate"] == 16000
    # The task's arguments are overrides: agreeing is fine, disagreeing is one error naming both values.
    _quiet(DebleedTask, TUNet(tracks=TRACKS, widths=(4,), head_width=4), tracks=TRACKS)
    with pytest.raises(ConfigError, match=r"tracks is \['vocals', 'drums', 'bass'\] but the network .* declares "
                                          r"\['bass', 'vocals', 'drums'\]"):
        _quiet(DebleedTask, TUNet(tracks=TRACKS, widths=(4,), head_width=4), tracks=["vocals", "drums", "bass"])
    with pytest.raises(ConfigError, match="sample_rate is 22050 but the network .* declares 16000"):
        _quiet(DebleedTask, TUNet(tracks=TRACKS, sample_rate=16000, widths=(4,), head_width=4), sample_rate=22050)
    # A model that declares only a count still gets names from the task, as many as it takes.
    with pytest.raises(ConfigError, match=r"takes 3 tracks \(num_tracks\) but the tracks are \['vocals', 'drums', "
                                          r"'bass', 'other'\]"):
        _quiet(DebleedTask, TUNet(num_tracks=3, widths=(4,), head_width=4))
    assert _quiet(DebleedTask, TUNet(num_tracks=3, widths=(4,), head_width=4), tracks=TRACKS).tracks == tuple(TRACKS)


def test_automix_task_reads_the_model() -> None:
    task = _quiet(AutomixTask, FxNormAutomix(stems=TRACKS, sample_rate=22050, **TINY_FXNORM))
    assert task.stems == tuple(TRACKS) and task.sample_rate == 22050 and task.channels == 2
    assert task.loss.stereo.sample_rate == 22050  # the default loss follows the declared rate
    with pytest.raises(ConfigError, match="stems is .* but the network .* declares"):
        _quiet(AutomixTask, FxNormAutomix(stems=TRACKS, **TINY_FXNORM), stems=["vocals", "drums", "bass"])
    with pytest.raises(ConfigError, match=r"takes 4 stems \(num_stems\)"):
        _quiet(AutomixTask, FxNormAutomix(**TINY_FXNORM), stems=TRACKS)
    from musicfx.losses.automix import AutomixLoss, StereoSTFTLoss

    with pytest.raises(ConfigError, match="StereoSTFTLoss.* has sample_rate 44100 but the model works at 22050"):
        _quiet(AutomixTask, FxNormAutomix(sample_rate=22050, **TINY_FXNORM), loss=AutomixLoss(StereoSTFTLoss()))


# -------------------------------------------------------------------------------------------------- data
def _bleed(tmp_path: Path, **kwargs: Any) -> BleedData:
    settings: Dict[str, Any] = dict(segment=0.25, batch_size=2, num_workers=0, generated_items=2,
                                    generated_duration=1.0, train_examples=2, val_examples=2, test_examples=2,
                                    cache_dir=str(tmp_path / "cache"))
    settings.update(kwargs)
    return BleedData(**settings)


def test_bleed_data_follows_the_models_tracks_and_rate(tmp_path: Path) -> None:
    task = _quiet(DebleedTask, TUNet(tracks=TRACKS, sample_rate=8000, widths=(4,), head_width=4))
    data = _bleed(tmp_path)
    assert data.stems == ("vocals", "drums", "bass", "other") and data.sample_rate == 44100  # outside a run
    _follow(data, task)
    assert data.stems == tuple(TRACKS) and data.sample_rate == 8000
    data.setup("test")
    scene = data.on_after_batch_transfer(next(iter(data.test_dataloader())), 0)
    assert scene["mics"].shape == (2, 3, 2000) and scene["mixing_matrix"].shape == (2, 3, 3)
    assert task.model(scene["mics"]).shape == scene["targets"].shape


def test_bleed_data_given_other_stems_is_one_clear_error(tmp_path: Path) -> None:
    task = _quiet(DebleedTask, TUNet(tracks=TRACKS, sample_rate=8000, widths=(4,), head_width=4))
    _follow(_bleed(tmp_path, stems=TRACKS, sample_rate=8000), task)  # agreeing is fine
    with pytest.raises(ConfigError, match=r"the model's tracks are \['bass', 'vocals', 'drums'\] but "
                                          r"data.init_args.stems is \['vocals', 'bass', 'drums'\]"):
        _follow(_bleed(tmp_path, stems=["vocals", "bass", "drums"]), task)
    with pytest.raises(ConfigError, match="sample_rate is 8000 but data.init_args.sample_rate is 16000"):
        _follow(_bleed(tmp_path, sample_rate=16000), task)


def test_automix_data_follows_the_models_stems(tmp_path: Path) -> None:
    task = _quiet(AutomixTask, FxNormAutomix(stems=TRACKS, sample_rate=8000, **TINY_FXNORM))
    data = AutomixData(segment=0.25, batch_size=2, num_workers=0, generated_items=2, generated_duration=1.0,
                       train_examples=2, val_examples=2, test_examples=2, cache_dir=str(tmp_path / "cache"))
    _follow(data, task)
    assert data.stems == tuple(TRACKS) and data.console.num_stems == 3 and data.channels == 2
    # The generator's house balance is per stem name: it moved with the names.
    assert data._house_gain_db.tolist() == [0.0, 3.0, 0.0]
    data.setup("test")
    scene = data.on_after_batch_transfer(next(iter(data.test_dataloader())), 0)
    assert scene["stems"].shape == (2, 3, 2, 2000) and task.model(scene["stems"]).shape == scene["mix"].shape


# ------------------------------------------------------------------------------------------- checkpoints
def _save(task: Task, path: Path) -> Path:
    import lightning.pytorch as pl

    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


def test_a_debleed_checkpoint_saved_before_models_declared_tracks_loads(tmp_path: Path) -> None:
    # The recipe layout before: names and rate on the task, only a count on the network.
    network = {"class_path": "musicfx.models.t_unet.TUNet",
               "init_args": {"num_tracks": 3, "widths": [4, 8], "head_width": 4}}
    task = Task.from_config({"class_path": "musicfx.tasks.debleed.DebleedTask",
                             "init_args": {"model": network, "tracks": TRACKS, "sample_rate": 16000}})
    path = _save(task, tmp_path / "before.ckpt")
    stored = torch.load(path, weights_only=False)["hyper_parameters"]
    assert stored["model"] == network and stored["tracks"] == TRACKS and stored["sample_rate"] == 16000
    loaded = musicfx.load(path)
    assert loaded.tracks == tuple(TRACKS) and loaded.sample_rate == 16000 and loaded.model.num_tracks == 3
    torch.testing.assert_close(loaded.state_dict(), task.state_dict())
    mics = torch.randn(3, 4000)
    torch.testing.assert_close(loaded.debleed(mics, 16000, segment=0.25), task.eval().debleed(mics, 16000, segment=0.25))


def test_a_pickled_mixer_from_before_declarations_loads(tmp_path: Path) -> None:
    # A task built from Python pickles its network; one pickled before models declared names has no
    # ``stems``/``sample_rate`` attribute at all: the task's own values apply.
    model = FxNormAutomix(num_stems=3, **TINY_FXNORM)
    del model.stems, model.sample_rate
    task = _quiet(AutomixTask, model, stems=TRACKS, sample_rate=16000)
    path = _save(task, tmp_path / "pickled.ckpt")
    loaded = _quiet(musicfx.load, path, trust=True)
    assert loaded.stems == tuple(TRACKS) and loaded.sample_rate == 16000 and not hasattr(loaded.model, "stems")
    torch.testing.assert_close(loaded.state_dict(), task.state_dict())


def test_a_checkpoint_of_a_declaring_network_loads(tmp_path: Path) -> None:
    network = {"class_path": "musicfx.models.wave_u_net.WaveUNet",
               "init_args": {"stems": TRACKS, "sample_rate": 16000, "levels": 2, "features": 4}}
    task = _quiet(Task.from_config, {"class_path": "musicfx.tasks.automix.AutomixTask",
                                     "init_args": {"model": network, "loss": {"class_path": "musicfx.losses.WaveformLoss"}}})
    stored = torch.load(_save(task, tmp_path / "after.ckpt"), weights_only=False)["hyper_parameters"]
    assert stored["model"] == network  # the names live on the network only
    loaded = musicfx.load(tmp_path / "after.ckpt")
    assert loaded.stems == tuple(TRACKS) and loaded.model.stems == tuple(TRACKS) and loaded.sample_rate == 16000
