"""`musicfx debleed`: KAMIR on real orchestral parts with synthetic bleed, track order and channel handling
with a stand-in model, one clear error line with nothing written for every mistake, and a checkpoint
trained by `musicfx fit` end to end."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx
import musicfx.api
import musicfx.cli
from musicfx.debleed import match_tracks

REPO = Path(__file__).resolve().parents[1]
PARTS = ("violin1", "cello", "flute1", "horn1")
SR = 44100


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    if "musicfx.commands.debleed" not in musicfx.cli.COMMAND_MODULES:
        monkeypatch.setattr(musicfx.cli, "COMMAND_MODULES", (*musicfx.cli.COMMAND_MODULES, "musicfx.commands.debleed"))


def _run(capsys, *args: str):
    code = musicfx.cli.main(["debleed", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("musicfx: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _snapshot(folder: Path) -> Dict[Path, bytes]:
    """Every file's bytes and every folder (an empty temporary folder left behind counts too)."""
    return {p: p.read_bytes() if p.is_file() else b"<dir>" for p in folder.rglob("*")}


def _sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((estimate - reference) ** 2)))


@pytest.fixture(scope="module")
def orchestra(shared_data, tmp_path_factory):
    """4 anechoic PHENICX parts (1 s, 44.1 kHz) and their linear bleed (unit diagonal, others U(0.2, 0.3))
    written as ``mics/<part>.wav``; returns ``(folder, {part: clean (time,)})``."""
    from musicfx.audio.io import read_audio

    sources = torch.stack([
        read_audio(shared_data / "phenicx-anechoic" / f"beethoven_{name}.wav")[0][0] for name in PARTS
    ])
    mixing = 0.2 + 0.1 * torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    mixing.fill_diagonal_(1.0)
    folder = tmp_path_factory.mktemp("orchestra") / "mics"
    folder.mkdir()
    for name, track in zip(PARTS, mixing @ sources):
        sf.write(folder / f"{name}.wav", track.numpy(), SR, subtype="FLOAT")
    return folder, {name: source.numpy() for name, source in zip(PARTS, sources)}


def test_kamir_removes_synthetic_bleed_from_real_parts(orchestra, tmp_path: Path, capsys) -> None:
    folder, clean = orchestra
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, str(folder), "-o", str(out), "--method", "kamir", "--leakage", "--device", "cpu")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.wav" for name in PARTS)
    for name in PARTS:
        before, rate = sf.read(folder / f"{name}.wav", dtype="float32")
        after, rate_out = sf.read(out / f"{name}.wav", dtype="float32")
        assert rate_out == rate == SR and after.shape == before.shape
        # Measured (one 1 s window): before -3.8 / -1.7 / 0.1 / 21.5 dB, after 26.2 / 32.8 / 26.8 / 36.1 dB.
        assert _sdr(after, clean[name]) > max(_sdr(before, clean[name]) + 10.0, 20.0), name
        assert f"{folder / name}.wav -> {out / name}.wav" in stdout
    leakage = [line for line in stdout.splitlines() if line.startswith("leakage")]
    assert len(leakage) == 1
    before, after = (float(word.rstrip(",")) for word in leakage[0].split()[-3::2])
    assert 0.6 < before < 0.95 and after < 0.5 * before, leakage  # measured 0.787 -> 0.109


def test_kamir_settings_reach_kamir(orchestra, tmp_path: Path, capsys) -> None:
    folder, clean = orchestra
    one = tmp_path / "one"
    code, _, err = _run(capsys, *sorted(map(str, folder.iterdir())), "-o", str(one), "--method", "kamir", "-q",
                        "--n-fft", "1024", "--iterations", "1", "--min-leakage", "0.5")
    assert code == 0, err
    # A leakage floor of 0.5 keeps too much of the others' power in each Wiener gain: far less improvement.
    after = _sdr(sf.read(one / "violin1.wav", dtype="float32")[0], clean["violin1"])
    assert after < 20.0


# --------------------------------------------------------------------------------------- stand-in model
class _Scale(torch.nn.Module):
    """Multiplies the track in position k by k + 1: shows which file reached which position."""

    def forward(self, mics: torch.Tensor) -> torch.Tensor:
        assert mics.dim() == 3 and mics.shape[1] == 4
        return mics * torch.arange(1, 5, dtype=mics.dtype)[:, None]


class _Task:
    tracks = ("vocals", "drums", "bass", "other")
    sample_rate = 22050
    channels = 1

    def __init__(self) -> None:
        self.model = _Scale()

    def debleed(self, tracks: torch.Tensor, sample_rate: int) -> torch.Tensor:  # marks a debleed task
        raise NotImplementedError


@pytest.fixture()
def loads(monkeypatch) -> List[tuple]:
    calls: List[tuple] = []

    def fake_load(checkpoint, device="cpu", trust=False):
        calls.append((checkpoint, device))
        return _Task()

    monkeypatch.setattr(musicfx.api, "load", fake_load)
    return calls


def _tone(frequency: float, seconds: float, channels: int, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    audio = np.stack([0.2 * np.sin(2 * np.pi * frequency * (1 + 0.1 * c) * t) for c in range(channels)], axis=1)
    return audio.astype(np.float32)


def test_tracks_matched_by_name_keep_their_channels(loads, tmp_path: Path, capsys) -> None:
    session = tmp_path / "session"
    session.mkdir()
    files = {"02_Bass.wav": (110.0, 2), "drums.flac": (220.0, 1), "lead-vocals.wav": (330.0, 1), "other.wav": (440.0, 1)}
    for name, (frequency, channels) in files.items():
        sf.write(session / name, _tone(frequency, 1.5, channels), SR)
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, str(session), "-o", str(out), "--ckpt", "model.ckpt", "--segment", "0.5",
                             "--device", "cpu")
    assert code == 0, err
    assert loads == [("model.ckpt", torch.device("cpu"))]
    assert "tracks (matched by file name): vocals <- lead-vocals.wav, drums <- drums.flac, bass <- 02_Bass.wav, " \
           "other <- other.wav" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(files)  # no leftovers from the channel conversion
    for name, factor in (("lead-vocals.wav", 1), ("drums.flac", 2), ("02_Bass.wav", 3), ("other.wav", 4)):
        before, rate = sf.read(session / name, dtype="float32")
        after, rate_out = sf.read(out / name, dtype="float32")
        assert rate_out == rate and after.shape == before.shape, name  # the stereo bass stays stereo
        # Resampled to the model's 22.05 kHz and back; flac stores 16 bits.
        np.testing.assert_allclose(after[100:-100], factor * before[100:-100], atol=5e-3, err_msg=name)


def test_unmatched_names_go_in_the_order_given(loads, tmp_path: Path, capsys) -> None:
    names = ["d.wav", "b.wav", "c.wav", "a.wav"]
    for i, name in enumerate(names):
        sf.write(tmp_path / name, _tone(200.0 + 100 * i, 0.7, 1), SR, subtype="FLOAT")
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, *(str(tmp_path / n) for n in names), "-o", str(out), "--ckpt", "m.ckpt")
    assert code == 0, err
    assert "tracks (in the order given): vocals <- d.wav, drums <- b.wav, bass <- c.wav, other <- a.wav" in stdout
    ratio = np.abs(sf.read(out / "c.wav")[0]).max() / np.abs(sf.read(tmp_path / "c.wav")[0]).max()
    assert ratio == pytest.approx(3.0, rel=1e-2)


def test_match_tracks() -> None:
    names = ("vocals", "drums", "bass", "other")
    paths = [Path(p) for p in ("x/Other.wav", "x/01-drums.flac", "x/vocals.wav", "x/bass_di.wav")]
    assert match_tracks(paths, names) == [2, 1, 3, 0]
    assert match_tracks(paths[:3], names) is None
    assert match_tracks([Path("vocals.wav"), Path("vocals-2.wav"), Path("bass.wav"), Path("other.wav")], names) is None
    assert match_tracks([Path("drums_and_bass.wav"), Path("vocals.wav"), Path("x.wav"), Path("other.wav")], names) is None


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("problem", [
    "no_method", "ckpt_and_kamir", "kamir_flag_with_model", "one_track", "count", "rates", "exists",
    "input_is_output", "output_is_file", "missing", "same_name", "not_debleed", "overlap", "no_resample", "silent",
])
def test_errors_print_one_line_and_write_nothing(problem: str, loads, tmp_path: Path, capsys, monkeypatch) -> None:
    tracks = tmp_path / "tracks"
    tracks.mkdir()
    for i, name in enumerate(("vocals", "drums", "bass", "other")):
        sf.write(tracks / f"{name}.wav", _tone(200.0 + 50 * i, 0.5, 1), SR)
    out = tmp_path / "out"
    args = [str(tracks), "-o", str(out), "--ckpt", "m.ckpt", "-q"]
    needles: List[str] = []
    if problem == "no_method":
        args = [str(tracks), "-o", str(out)]
        needles = ["--ckpt", "--method kamir"]
    elif problem == "ckpt_and_kamir":
        args += ["--method", "kamir"]
        needles = ["not both"]
    elif problem == "kamir_flag_with_model":
        args += ["--n-fft", "1024"]
        needles = ["--n-fft", "--method kamir"]
    elif problem == "one_track":
        args = [str(tracks / "bass.wav"), "-o", str(out), "--method", "kamir"]
        needles = ["at least two"]
    elif problem == "count":
        (tracks / "other.wav").unlink()
        needles = ["m.ckpt", "4 tracks", "vocals, drums, bass, other", "3 files"]
    elif problem == "rates":
        sf.write(tracks / "other.wav", _tone(200.0, 0.5, 1, rate=48000), 48000)
        needles = ["other.wav", "48000 Hz", "44100 Hz"]
    elif problem == "exists":
        out.mkdir()
        sf.write(out / "drums.wav", _tone(100.0, 0.1, 1), SR)
        needles = ["drums.wav", "--overwrite"]
    elif problem == "input_is_output":
        args = [*(str(p) for p in sorted(tracks.iterdir())), "-o", str(tracks), "--method", "kamir", "--overwrite"]
        needles = ["overwrite an input"]
    elif problem == "output_is_file":
        out.write_bytes(b"not a folder")
        needles = ["not a folder"]
    elif problem == "missing":
        args = [str(tracks / "vocals.wav"), str(tmp_path / "nope.wav"), "-o", str(out), "--method", "kamir"]
        needles = ["nope.wav", "no such file"]
    elif problem == "same_name":
        (tmp_path / "more").mkdir()
        sf.write(tmp_path / "more" / "bass.wav", _tone(90.0, 0.5, 1), SR)
        args = [str(tracks / "bass.wav"), str(tmp_path / "more" / "bass.wav"), "-o", str(out), "--method", "kamir"]
        needles = ["bass.wav", "rename"]
    elif problem == "not_debleed":
        monkeypatch.setattr(musicfx.api, "load", lambda checkpoint, device="cpu", trust=False: object())
        needles = ["m.ckpt", "not a debleed checkpoint"]
    elif problem == "overlap":
        args += ["--overlap", "0.8"]
        needles = ["--overlap", "0.8"]
    elif problem == "no_resample":
        args.append("--no-resample")
        needles = ["44100 Hz", "22050 Hz"]
    elif problem == "silent":
        for path in tracks.iterdir():
            sf.write(path, np.zeros(SR // 2, dtype=np.float32), SR)
        args = [str(tracks), "-o", str(out), "--method", "kamir", "-q"]  # found while streaming: no progress bar
        needles = ["silent"]
    before = _snapshot(tmp_path)
    code, _, err = _run(capsys, *args)
    _one_error_line(code, err, *needles)
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------- end to end
def test_a_checkpoint_from_musicfx_fit_debleeds_files(orchestra, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = musicfx.cli.main([
        "fit", "-c", str(REPO / "recipes/debleed/t_unet.yaml"), "--trainer.accelerator=cpu", "--trainer.max_steps=2",
        "--trainer.limit_val_batches=0", "--data.init_args.num_workers=0", "--data.init_args.batch_size=2",
        "--data.init_args.segment=0.5", "--data.init_args.generated_items=2", "--data.init_args.generated_duration=2",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
    ])
    assert code == 0
    checkpoint = tmp_path / "runs/debleed-t-unet/checkpoints/last.ckpt"
    assert checkpoint.is_file()
    capsys.readouterr()
    folder, _ = orchestra
    out = tmp_path / "clean"
    code, stdout, err = _run(capsys, str(folder), "-o", str(out), "--ckpt", str(checkpoint), "--device", "cpu",
                             "--leakage")
    assert code == 0, err
    order = ", ".join(f"{track} <- {name}.wav" for track, name in zip(("vocals", "drums", "bass", "other"),
                                                                       sorted(PARTS)))
    assert f"tracks (in the order given): {order}" in stdout
    from musicfx.audio.io import read_audio

    mics = torch.stack([read_audio(folder / f"{name}.wav")[0] for name in sorted(PARTS)])  # (4, 1, time)
    expected = musicfx.load(checkpoint).debleed(mics, SR)  # the same model through the Python API
    for name, reference in zip(sorted(PARTS), expected):
        after, rate = sf.read(out / f"{name}.wav", dtype="float32", always_2d=True)
        assert rate == SR and after.shape == (SR, 1) and np.isfinite(after).all()
        # Streaming (the CLI) and in memory (the API) differ only by the resamplers' edges.
        error = after[200:-200, 0] - reference[0, 200:-200].numpy()
        assert np.sqrt(np.mean(error**2)) < 1e-3 * np.sqrt(np.mean(after**2)) + 1e-6, name
    assert any(line.startswith("leakage") for line in stdout.splitlines())
    assert os.listdir(out) and not any(name.startswith(".") for name in os.listdir(out))
