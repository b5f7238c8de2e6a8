"""Checkpoints are data, not code: a file that would run code when unpickled is refused everywhere a
checkpoint is read (``musicfx.load``, every ``--ckpt``, ``fit --ckpt_path``), unless trusted explicitly."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx
from musicfx.checkpoint import load_checkpoint
from musicfx.cli import main
from musicfx.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this writes ``marker``: what a malicious checkpoint would do (with worse code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _with_payload(source: dict, path: Path, marker: Path, legacy: bool = False) -> Path:
    payload = dict(source)
    payload["notes"] = _Payload(marker)  # Lightning ignores unknown top-level keys: loads fine when trusted
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    return tmp_path / "payload-ran"


@pytest.fixture()
def evil(tmp_path: Path, marker: Path) -> Path:
    """A minimal Lightning-like checkpoint carrying the payload (refused before anything is built)."""
    return _with_payload({"state_dict": {"w": torch.zeros(2)}, "global_step": 0}, tmp_path / "evil.ckpt", marker)


def _one_error_line(code: int, err: str, *needles: str) -> str:
    assert code == 1, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("musicfx: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_load_refuses_a_payload_and_never_runs_it(evil: Path, marker: Path) -> None:
    with pytest.raises(CheckpointError, match=r"refused: unpickling it would import builtins\.exec") as error:
        musicfx.load(evil)
    assert "--trust-checkpoint" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="refused"):
        musicfx.denoise(torch.zeros(1, 100), 22050, model=evil)
    assert not marker.exists()


def test_the_legacy_format_is_refused_too(tmp_path: Path, marker: Path) -> None:
    legacy = _with_payload({"state_dict": {}}, tmp_path / "legacy.ckpt", marker, legacy=True)
    with pytest.raises(CheckpointError, match=r"refused: unpickling it would import (builtins\.)?exec,"):
        load_checkpoint(legacy)
    assert not marker.exists()
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "plain.ckpt", _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(tmp_path / "plain.ckpt", mmap=True)["state_dict"]["w"], torch.ones(2))


@pytest.mark.parametrize("command", ["denoise", "separate", "debleed", "mix", "evaluate"])
def test_every_ckpt_command_refuses_a_payload(command: str, evil: Path, marker: Path, tmp_path: Path,
                                              capsys) -> None:
    song = tmp_path / "song.wav"
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(22050) / 22050)).astype(np.float32)
    sf.write(song, tone, 22050)
    stems = tmp_path / "stems"
    stems.mkdir()
    for name in ("vocals", "drums"):
        sf.write(stems / f"{name}.wav", np.stack([tone, tone], axis=1), 22050)
    (tmp_path / "musdb" / "test").mkdir(parents=True)
    args = {
        "denoise": ["denoise", str(song), "-o", str(tmp_path / "out.wav")],
        "separate": ["separate", str(song), "-o", str(tmp_path / "out")],
        "debleed": ["debleed", str(stems / "vocals.wav"), str(stems / "drums.wav"), "-o", str(tmp_path / "out")],
        "mix": ["mix", str(stems), "-o", str(tmp_path / "mix.wav")],
        "evaluate": ["evaluate", "--musdb", str(tmp_path / "musdb")],
    }[command]
    code = main([*args, "--ckpt", str(evil), "--device", "cpu", "-q"] if command != "mix" else
                [*args, "--ckpt", str(evil), "--device", "cpu"])
    _one_error_line(code, capsys.readouterr().err, "refused", "builtins.exec", "--trust-checkpoint")
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.wav").exists()


def _lightning_args() -> List[str]:
    return ["fit", "-c", str(REPO / "recipes/quickstart.yaml"), "--trainer.accelerator=cpu",
            "--trainer.limit_val_batches=0", "--trainer.max_time=null", "--data.init_args.num_workers=0",
            "--data.init_args.batch_size=2", "--data.init_args.segment=0.5"]


def test_fit_ckpt_path_refuses_a_payload_and_garbage_in_one_line(evil: Path, marker: Path, tmp_path: Path,
                                                                  capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main([*_lightning_args(), "--trainer.max_steps=1", f"--ckpt_path={evil}"])
    line = _one_error_line(code, capsys.readouterr().err, "refused", "builtins.exec")
    assert "--trust-checkpoint" not in line and "weights_only" not in line
    assert not marker.exists()
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x80\x04 this is not a checkpoint")
    for bad, needle in ((garbage, "not a readable checkpoint"), (tmp_path / "missing.ckpt", "no such checkpoint")):
        code = main([*_lightning_args(), "--trainer.max_steps=1", f"--ckpt_path={bad}"])
        line = _one_error_line(code, capsys.readouterr().err, str(bad), needle)
        assert "weights_only" not in line and "trust" not in line  # never advice to turn the protection off


def test_garbage_is_one_line_without_torch_advice(tmp_path: Path) -> None:
    for name, data in (("junk", b"not a checkpoint"), ("empty", b""), ("zip", b"PK\x03\x04junk")):
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match="not a readable checkpoint") as error:
            musicfx.load(path)
        assert "weights_only" not in str(error.value) and "\n" not in str(error.value)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        musicfx.load(tmp_path / "plain.pt")


def test_a_checkpoint_from_musicfx_fit_loads_and_resumes_as_data(trained_checkpoint: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    task = musicfx.load(trained_checkpoint)
    assert type(task).__name__ == "DenoiseTask" and not task.training
    # Resuming reads the file with weights_only=True, whatever Lightning's default.
    calls: List[object] = []
    original = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    code = main([*_lightning_args(), "--trainer.max_steps=4", f"--ckpt_path={trained_checkpoint}"])
    assert code == 0
    assert calls and all(value is True for value in calls), calls
    resumed = load_checkpoint(tmp_path / "runs" / "quickstart" / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 4


def test_trust_loads_the_payload_checkpoint(trained_checkpoint: Path, tmp_path: Path, marker: Path) -> None:
    source = load_checkpoint(trained_checkpoint)
    evil = _with_payload(source, tmp_path / "evil.ckpt", marker)
    task = musicfx.load(evil, trust=True)
    assert marker.read_text() == "ran"  # the opt-in did what it says: the file's code ran
    assert type(task).__name__ == "DenoiseTask"


def test_a_recipe_naming_classes_outside_musicfx_is_refused(trained_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(trained_checkpoint)
    checkpoint["hyper_parameters"]["model"]["class_path"] = "somepackage.Model"
    torch.save(checkpoint, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"hyper_parameters\.model\.class_path.*'somepackage\.Model'"):
        musicfx.load(tmp_path / "other.ckpt")


def test_a_task_built_in_python_is_refused_with_the_reason_and_loads_when_trusted(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    from musicfx.models import MusicECAN
    from musicfx.tasks.denoise import DenoiseTask

    task = DenoiseTask(model=MusicECAN(channels=1, widths=[4, 8], filter_widths=[4]), sample_rate=22050)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.strategy.connect(task)
    path = tmp_path / "python.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(CheckpointError, match="a task built in Python from module objects pickles them; build it "
                                              "with Task.from_config"):
        musicfx.load(path)
    loaded = musicfx.load(path, trust=True)
    torch.testing.assert_close(loaded.state_dict(), task.state_dict())


def test_a_task_built_from_config_in_python_saves_its_recipe_and_loads_as_data(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    from musicfx.tasks.base import Task

    network = {"class_path": "musicfx.models.MusicECAN", "init_args": {"channels": 1, "widths": [4, 8],
                                                                         "filter_widths": [4]}}
    task = Task.from_config({"class_path": "musicfx.tasks.denoise.DenoiseTask",
                             "init_args": {"model": network, "sample_rate": 22050}})
    assert type(task).__name__ == "DenoiseTask" and task.hparams["model"] == network
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "config.ckpt")
    loaded = musicfx.load(tmp_path / "config.ckpt")
    assert loaded.sample_rate == 22050 and type(loaded.model).__name__ == "MusicECAN"
    torch.testing.assert_close(loaded.state_dict(), task.state_dict())


def test_the_plain_types_a_checkpoint_may_hold_load_as_data(tmp_path: Path) -> None:
    from lightning.fabric.utilities.data import AttributeDict

    values = {"path": Path("/data/musdb"), "score": np.float64(3.5), "count": np.int64(7),
              "array": np.arange(4, dtype=np.float32), "dtype": np.dtype("f4")}
    torch.save({"state_dict": {}, "extra": values}, tmp_path / "plain.ckpt")
    loaded = load_checkpoint(tmp_path / "plain.ckpt")["extra"]
    assert loaded["path"] == Path("/data/musdb") and loaded["score"] == 3.5 and loaded["count"] == 7
    assert np.array_equal(loaded["array"], np.arange(4, dtype=np.float32)) and loaded["dtype"] == np.dtype("f4")
    # A dict subclass is an object whose class the file chooses: refused, naming it.
    torch.save({"state_dict": {}, "hparams": AttributeDict(lr=1e-3)}, tmp_path / "object.ckpt")
    with pytest.raises(CheckpointError, match=r"refused: .*AttributeDict.*--trust-checkpoint") as error:
        load_checkpoint(tmp_path / "object.ckpt")
    assert "weights_only" not in str(error.value)
    assert load_checkpoint(tmp_path / "object.ckpt", trust=True)["hparams"].lr == 1e-3


def test_an_automix_pretrained_front_end_is_read_as_data(evil: Path, marker: Path) -> None:
    from musicfx.models.fxnorm_automix import FxNormAutomix
    from musicfx.tasks.automix import AutomixTask

    tiny = dict(features=16, kernel_size=16, pool_size=16, bottleneck_features=16, skip_features=8,
                hidden_features=16, blocks=2, repeats=1, lstm_layers=1, se_expansion=2)
    with pytest.raises(CheckpointError, match=r"pretrained checkpoint .*refused: .*builtins\.exec") as error:
        AutomixTask(FxNormAutomix(**tiny), sample_rate=16000, pretrained=str(evil))
    assert "--trust-checkpoint" not in str(error.value)  # a recipe value has no opt-in
    assert not marker.exists()
