"""`musicfx mix`: a console checkpoint trained two steps through `musicfx fit`, the sum baseline, stem
discovery, peak safety, --params and --normalize, and one clear error line with nothing written for every
mistake."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx.api
import musicfx.cli
from musicfx.automix import CEILING_DB, ParameterAverage, ceiling_gain, find_stems
from musicfx.data.generator import generate_stems

REPO = Path(__file__).resolve().parents[1]
SR = 44100
STEMS = ("vocals", "drums", "bass", "other")
CEILING = 10.0 ** (CEILING_DB / 20.0)


@pytest.fixture(scope="module")
def console_checkpoint(tmp_path_factory) -> Path:
    """recipes/automix/console.yaml with a tiny console, trained two CPU steps through the CLI."""
    folder = tmp_path_factory.mktemp("console")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code = musicfx.cli.main([
            "fit", "-c", str(REPO / "recipes/automix/console.yaml"), "--trainer.accelerator=cpu",
            "--trainer.max_steps=2", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
            "--data.init_args.num_workers=0", "--data.init_args.batch_size=2", "--data.init_args.segment=0.5",
            "--data.init_args.generated_items=2", "--data.init_args.generated_duration=2.0",
            f"--data.init_args.cache_dir={folder / 'cache'}",
            "--model.init_args.model.init_args.hidden=16", "--model.init_args.model.init_args.n_mels=16",
            "--model.init_args.model.init_args.heads=2",
        ])
    finally:
        os.chdir(cwd)
    assert code == 0
    path = folder / "runs/automix-console/checkpoints/last.ckpt"
    assert path.is_file()
    return path


def _stems(seconds: float, seed: int = 0, scale: float = 0.5) -> Dict[str, torch.Tensor]:
    """Generated music as four stereo stems, ``(2, time)`` each, quiet enough to sum below the ceiling."""
    stems = generate_stems(int(seconds * SR), SR, 2, torch.Generator().manual_seed(seed))
    return {name: scale * stems[name] for name in STEMS}


def _write(folder: Path, stems: Dict[str, torch.Tensor], names: Dict[str, str] = None, rate: int = SR) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, audio in stems.items():
        name = (names or {}).get(stem, f"{stem}.wav")
        # FLAC holds integers: 24 bits keep the stems within 1e-7 of the float ones.
        sf.write(folder / name, audio.T.numpy(), rate, subtype="PCM_24" if name.lower().endswith(".flac") else "FLOAT")
    return folder


def _read(path: Path) -> torch.Tensor:
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy())


def _run(capsys, *args: str):
    code = musicfx.cli.main(["mix", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("musicfx: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------------------------- checkpoint
def test_console_checkpoint_mixes_like_the_task_and_writes_its_settings(console_checkpoint, tmp_path, capsys):
    stems = _stems(1.5)
    folder = _write(tmp_path / "song", stems, names={"vocals": "Vocals.WAV", "drums": "DRUMS.flac"})
    out, settings = tmp_path / "out" / "mix.wav", tmp_path / "out" / "settings.json"
    # One segment over the whole song (no overlap): the settings are exactly the model's for these stems.
    code, stdout, err = _run(capsys, str(folder), "-o", str(out), "--ckpt", str(console_checkpoint),
                             "--params", str(settings), "--segment", "1.5", "--overlap", "0", "--device", "cpu")
    assert code == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == ["mix.wav", "settings.json"]  # no temporary files
    assert "not scaled" in stdout and "musicfx: warning" not in err
    task = musicfx.load(console_checkpoint)
    stack = torch.stack([stems[name] for name in task.stems])
    expected = task.mix(stack, SR, segment=1.5, overlap=0.0)
    mix = _read(out)
    assert mix.shape == (2, stack.shape[-1]) and sf.info(out).samplerate == SR
    assert expected.abs().max() > 0.05
    torch.testing.assert_close(mix, expected, atol=1e-5, rtol=0)

    written = json.loads(settings.read_text())
    with torch.no_grad():
        direct = task.model.parameters_to_json(task.model.predict_parameters(stack[None]), task.stems)
    assert written["segments"] == 1 and written["missing_stems"] == [] and written["sample_rate"] == SR
    assert list(written["stems"]) == list(STEMS)
    for name in STEMS:
        ours, theirs = written["stems"][name], direct["stems"][name]
        assert ours["gain_db"] == pytest.approx(theirs["gain_db"], abs=0.011)
        assert ours["pan"] == pytest.approx(theirs["pan"], abs=0.0011)
        assert -24.0 <= ours["gain_db"] <= 24.0 and -1.0 <= ours["pan"] <= 1.0
        assert [band["kind"] for band in ours["eq"]] == ["lowshelf", "peak", "peak", "highshelf"]
        assert all(abs(band["gain_db"]) <= 12.0 for band in ours["eq"])
        assert [b["freq_hz"] for b in ours["eq"]] == [b["freq_hz"] for b in theirs["eq"]]
        compressor = ours["compressor"]
        assert -40.0 <= compressor["threshold_db"] <= 0.0 and 1.0 <= compressor["ratio"] <= 10.0
        assert compressor["threshold_db"] == pytest.approx(theirs["compressor"]["threshold_db"], abs=0.011)


def test_missing_and_unknown_stems_warn_and_silence_stands_in(console_checkpoint, tmp_path, capsys):
    stems = _stems(1.2, seed=1)
    folder = _write(tmp_path / "song", {k: v for k, v in stems.items() if k != "bass"})
    sf.write(folder / "mixture.wav", sum(stems.values()).T.numpy(), SR)
    out = tmp_path / "mix.flac"
    code, stdout, err = _run(capsys, str(folder), "-o", str(out), "--ckpt", str(console_checkpoint), "--segment",
                             "0.5", "--device", "cpu", "-q")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("musicfx: warning:")]
    assert len(warnings) == 2, err
    assert "no bass stem" in warnings[0] and "bass.wav" in warnings[0]
    assert "ignoring mixture.wav" in warnings[1]
    assert stdout == ""
    task = musicfx.load(console_checkpoint)
    silent = dict(stems, bass=torch.zeros_like(stems["bass"]))
    expected = task.mix(torch.stack([silent[name] for name in task.stems]), SR, segment=0.5)
    # FLAC holds 16-bit samples by default: equal up to that rounding.
    torch.testing.assert_close(_read(out), expected, atol=2.0 / 32768, rtol=0)


def test_params_averages_segments_weighted_by_level() -> None:
    average = ParameterAverage(num_stems=2)
    loud, quiet = torch.ones(1, 2, 2, 100), torch.ones(1, 2, 2, 100)
    quiet[:, 0] *= 0.25
    quiet[:, 1] = 0.0  # stem 1 silent in the second segment: its settings there do not count
    average.add({"gain_db": torch.tensor([[1.0, 2.0]]), "eq_gain_db": torch.tensor([[[3.0], [4.0]]])}, loud)
    average.add({"gain_db": torch.tensor([[6.0, -9.0]]), "eq_gain_db": torch.tensor([[[8.0], [-1.0]]])}, quiet)
    mean = average.mean()
    # Stem 0: weights 1 and 0.25 -> (1 + 0.25 * 6) / 1.25 = 2.
    torch.testing.assert_close(mean["gain_db"], torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(mean["eq_gain_db"], torch.tensor([[[4.0], [4.0]]]))
    assert average.segments == 2
    silent = ParameterAverage(num_stems=1)
    silent.add({"pan": torch.tensor([[0.2], [0.4]])}, torch.zeros(2, 1, 2, 10))
    torch.testing.assert_close(silent.mean()["pan"], torch.tensor([[0.3]]))  # never heard: the plain mean


# --------------------------------------------------------------------------------------- sum and peaks
def test_sum_of_quiet_stems_is_their_exact_sum(tmp_path, capsys):
    stems = _stems(1.0, seed=2, scale=0.3)
    mono = stems["bass"].mean(0, keepdim=True)
    folder = _write(tmp_path / "song", dict(stems, bass=mono))
    code, stdout, err = _run(capsys, str(folder), "-o", str(tmp_path / "sum.wav"), "--method", "sum")
    assert code == 0, err
    expected = stems["vocals"] + stems["drums"] + mono.expand(2, -1) + stems["other"]
    assert expected.abs().max() < CEILING
    torch.testing.assert_close(_read(tmp_path / "sum.wav"), expected, atol=1e-6, rtol=0)
    assert "not scaled" in stdout


@pytest.mark.parametrize("suffix, subtype", [(".wav", None), (".flac", "PCM_16")])
def test_loud_mix_is_scaled_down_by_one_gain_not_clipped(suffix: str, subtype: str, tmp_path, capsys):
    t = torch.arange(SR) / SR
    # Four in-phase stems whose sum peaks at 2.4 (+7.6 dBFS), with a quiet detail that a limiter would change.
    stems = {name: (0.6 * torch.sin(2 * math.pi * 110 * t) + 0.01 * torch.sin(2 * math.pi * 3000 * t)).expand(2, -1)
             for name in STEMS}
    folder = _write(tmp_path / "song", stems)
    out = tmp_path / f"mix{suffix}"
    args = [str(folder), "-o", str(out), "--method", "sum"] + (["--subtype", subtype] if subtype else [])
    code, stdout, err = _run(capsys, *args)
    assert code == 0, err
    mix = _read(out)
    raw = sum(stems.values())
    gain = ceiling_gain(float(raw.abs().max()), CEILING_DB)
    assert gain == pytest.approx(CEILING / float(raw.abs().max()))
    quantum = 1.0 / 32768 if subtype == "PCM_16" else 1e-6
    assert float(mix.abs().max()) <= CEILING + quantum
    assert float(mix.abs().max()) == pytest.approx(CEILING, abs=quantum)
    torch.testing.assert_close(mix, raw * gain, atol=quantum, rtol=0)  # one gain for the whole mix
    assert f"scaled by {20 * math.log10(gain):.2f} dB to {CEILING_DB:g} dBFS" in stdout


def test_normalize_sums_the_normalized_stems(tmp_path, capsys):
    from musicfx.fxnorm.features import FxNormFeatures
    from musicfx.fxnorm.normalize import normalize_stem

    stems = _stems(1.5, seed=3)
    folder = _write(tmp_path / "song", stems)
    out = tmp_path / "normalized_sum.wav"
    code, stdout, err = _run(capsys, str(folder), "-o", str(out), "--method", "sum", "--normalize", "-q")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["normalized_sum.wav", "song"]
    features = FxNormFeatures.builtin()
    expected = sum(normalize_stem(audio, name, features, SR) for name, audio in stems.items())
    gain = ceiling_gain(float(expected.abs().max()), CEILING_DB)
    torch.testing.assert_close(_read(out), expected * gain, atol=1e-5, rtol=0)
    # Normalization changed something: the loudness stage alone moves every stem to its target LUFS.
    assert not torch.allclose(expected, sum(stems.values()), atol=1e-3)


def test_find_stems_matches_names_ignoring_case(tmp_path):
    folder = tmp_path / "song"
    folder.mkdir()
    for name in ("VOCALS.wav", "Drums.FLAC", "notes.txt", ".hidden.wav", "keys.wav"):
        (folder / name).write_bytes(b"")
    found = find_stems(folder, STEMS)
    assert {k: v.name for k, v in found.found.items()} == {"vocals": "VOCALS.wav", "drums": "Drums.FLAC"}
    assert found.missing == ["bass", "other"] and [p.name for p in found.unknown] == ["keys.wav"]
    assert find_stems(folder, STEMS, exclude=[folder / "keys.wav"]).unknown == []


# -------------------------------------------------------------------------------------------------- errors
class _Model(torch.nn.Module):
    def forward(self, stems: torch.Tensor) -> torch.Tensor:
        return stems.sum(1)


class _Task:
    """Stands in for a loaded AutomixTask whose model predicts no settings (FxNormAutomix, Wave-U-Net)."""

    stems = STEMS
    sample_rate = SR
    channels = 2
    mode = "mix"

    def __init__(self, mode: str = "mix") -> None:
        self.model = _Model()
        self.mode = mode

    def mix(self, stems: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return stems.sum(0)


PROBLEMS = ["no_stems", "no_folder", "exists", "params_exists", "no_ckpt", "ckpt_with_sum", "params_with_sum",
            "params_not_console", "not_automix", "pretrain", "duplicate", "corrupt", "bad_suffix", "features_alone",
            "no_features_file", "silent", "stems_with_model", "positive_ceiling", "bad_subtype"]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_errors_write_nothing(problem: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(musicfx.api, "load", lambda checkpoint, device="cpu", trust=False: _Task())
    stems = {name: 0.1 * torch.ones(2, 4410) for name in STEMS}
    folder = _write(tmp_path / "song", stems)
    out = tmp_path / "mix.wav"
    args: List[str] = [str(folder), "-o", str(out), "--ckpt", "m.ckpt", "-q"]
    needles: Sequence[str] = ()
    if problem == "no_stems":
        for path in folder.iterdir():
            path.unlink()
        sf.write(folder / "piano.wav", np.zeros((100, 2)), SR)
        needles = ["vocals.wav, drums.wav, bass.wav, other.wav"]
    elif problem == "no_folder":
        args[0] = str(tmp_path / "nowhere")
        needles = ["nowhere", "no such folder"]
    elif problem == "exists":
        out.write_bytes(b"old")
        needles = ["mix.wav", "--overwrite"]
    elif problem == "params_exists":
        monkeypatch.setattr(musicfx.api, "load", lambda checkpoint, device="cpu", trust=False: _console_task())
        (tmp_path / "p.json").write_text("{}")
        args += ["--params", str(tmp_path / "p.json")]
        needles = ["p.json", "--overwrite"]
    elif problem == "no_ckpt":
        args = args[:3]
        needles = ["--ckpt", "--method sum"]
    elif problem == "ckpt_with_sum":
        args += ["--method", "sum"]
        needles = ["--ckpt"]
    elif problem == "params_with_sum":
        args = args[:3] + ["--method", "sum", "--params", str(tmp_path / "p.json")]
        needles = ["--params"]
    elif problem == "params_not_console":
        args += ["--params", str(tmp_path / "p.json")]
        needles = ["m.ckpt", "MixingConsole", "_Model"]
    elif problem == "not_automix":
        monkeypatch.setattr(musicfx.api, "load", lambda checkpoint, device="cpu", trust=False: object())
        needles = ["m.ckpt", "not an automix checkpoint"]
    elif problem == "pretrain":
        monkeypatch.setattr(musicfx.api, "load", lambda checkpoint, device="cpu", trust=False: _Task(mode="pretrain"))
        needles = ["m.ckpt", "pretrain"]
    elif problem == "duplicate":
        sf.write(folder / "Vocals.flac", np.zeros((100, 2)), SR)
        needles = ["vocals", "Vocals.flac", "vocals.wav"]
    elif problem == "corrupt":
        (folder / "drums.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(range(256)))
        needles = ["drums.wav"]
    elif problem == "bad_suffix":
        out = tmp_path / "mix.mp3"
        args[2] = str(out)
        needles = ["mix.mp3"]
    elif problem == "features_alone":
        args += ["--features", "builtin"]
        needles = ["--normalize"]
    elif problem == "no_features_file":
        args += ["--normalize", "--features", str(tmp_path / "f.npz")]
        needles = ["f.npz", "musicfx fxnorm features"]
    elif problem == "silent":
        _write(folder, {name: torch.zeros(2, 4410) for name in STEMS})
        needles = ["silent"]
    elif problem == "stems_with_model":
        args += ["--stems", "vocals", "guitar"]
        needles = ["--stems", "--method sum"]
    elif problem == "positive_ceiling":
        args += ["--ceiling-db", "1"]
        needles = ["--ceiling-db"]
    elif problem == "bad_subtype":
        args += ["--subtype", "PCM_99"]
        needles = ["PCM_99"]
    before = _snapshot(tmp_path)
    code, _, err = _run(capsys, *args)
    _one_error_line(code, err, *needles)
    assert _snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".musicfx")]


def test_warns_when_the_model_was_trained_on_normalized_stems(tmp_path, capsys, monkeypatch) -> None:
    # The checkpoint records its data module's arguments; one trained on normalized stems wants --normalize.
    checkpoint = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "datamodule_hyper_parameters": {"normalized_root": "/data/musdb-fxnorm"}}, checkpoint)
    monkeypatch.setattr(musicfx.api, "load", lambda path, device="cpu", trust=False: _Task())
    folder = _write(tmp_path / "song", {name: 0.1 * torch.ones(2, 4410) for name in STEMS})
    code, _, err = _run(capsys, str(folder), "-o", str(tmp_path / "mix.wav"), "--ckpt", str(checkpoint), "-q")
    assert code == 0, err
    assert err.startswith("musicfx: warning:") and "/data/musdb-fxnorm" in err and "--normalize" in err
    # The stand-in model sums the stems.
    torch.testing.assert_close(_read(tmp_path / "mix.wav"), torch.full((2, 4410), 0.4))


def _console_task() -> _Task:
    from musicfx.models.console import MixingConsole

    task = _Task()
    task.model = MixingConsole(num_stems=4, sample_rate=SR, hidden=8, n_mels=8, heads=2).eval()
    return task
