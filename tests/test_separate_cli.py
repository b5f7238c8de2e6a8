"""`musicfx separate` with a stand-in separator (``musicfx.api.load`` monkeypatched): outputs, channel and
rate handling, and one clear error line with nothing written for every mistake."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx.api
import musicfx.cli


class _FractionSeparator(torch.nn.Module):
    """(batch, 2, time) -> (batch, 2, 2, time): a quarter and three quarters of the mix."""

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        assert mix.shape[1] == 2
        return torch.stack([0.25 * mix, 0.75 * mix], dim=1)


class _Task:
    sources = ("vocals", "accompaniment")
    sample_rate = 22050
    channels = 2

    def __init__(self) -> None:
        self.model = _FractionSeparator()


@pytest.fixture()
def loads(monkeypatch) -> List[tuple]:
    """Register the command and make ``load`` return the stand-in; returns the calls it got."""
    calls: List[tuple] = []

    def fake_load(checkpoint, device="cpu", trust=False):
        calls.append((checkpoint, device))
        return _Task()

    monkeypatch.setattr(musicfx.cli, "COMMAND_MODULES", ("musicfx.commands.separate",))
    monkeypatch.setattr(musicfx.api, "load", fake_load)
    return calls


def _music(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (220 + 50 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


def _run(capsys, *args: str):
    code = musicfx.cli.main(["separate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("musicfx: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_separates_files_and_folders(loads, tmp_path: Path, capsys) -> None:
    songs = tmp_path / "songs"
    songs.mkdir()
    stereo = _music(22050, 1.3, 2)
    sf.write(songs / "a.wav", stereo, 22050, subtype="FLOAT")
    sf.write(songs / "b.flac", _music(16000, 0.9, 1), 16000)  # mono at another rate
    out = tmp_path / "stems"
    code, stdout, err = _run(capsys, str(songs), "-o", str(out), "--ckpt", "model.ckpt", "--segment", "0.5",
                             "--device", "cpu")
    assert code == 0, err
    assert loads == [("model.ckpt", torch.device("cpu"))]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "a", "a/accompaniment.wav", "a/vocals.wav", "b", "b/accompaniment.wav", "b/vocals.wav"]
    vocals, rate = sf.read(out / "a" / "vocals.wav", dtype="float32")
    accompaniment, _ = sf.read(out / "a" / "accompaniment.wav", dtype="float32")
    assert rate == 22050 and vocals.shape == stereo.shape
    np.testing.assert_allclose(vocals, 0.25 * stereo, atol=1e-5)
    np.testing.assert_allclose(accompaniment, 0.75 * stereo, atol=1e-5)
    mono, rate = sf.read(out / "b" / "vocals.wav", dtype="float32")
    assert rate == 16000 and mono.shape == (int(16000 * 0.9),)
    assert abs(np.abs(mono).max() - 0.25 * 0.3) < 5e-3  # up-mixed to stereo, resampled, and back
    assert f"{songs / 'a.wav'} -> {out / 'a'}" in stdout
    # A second run over the same folder with the output inside it takes no outputs as inputs.
    code, _, err = _run(capsys, str(songs), "-o", str(songs / "stems"), "--ckpt", "m", "-q")
    code, _, err = _run(capsys, str(songs), "-o", str(songs / "stems"), "--ckpt", "m", "-q", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in (songs / "stems").iterdir()) == ["a", "b"]


@pytest.mark.parametrize("problem", ["exists", "input_is_output", "no_ckpt", "corrupt", "missing", "same_name",
                                     "no_resample", "output_is_file", "not_a_separator"])
def test_errors_write_nothing(problem: str, loads, tmp_path: Path, capsys, monkeypatch) -> None:
    source = tmp_path / "song.wav"
    sf.write(source, _music(22050, 1.0, 2), 22050)
    out = tmp_path / "out"
    args = [str(source), "-o", str(out), "--ckpt", "m.ckpt", "-q"]
    needles: List[str] = []
    if problem == "exists":
        (out / "song").mkdir(parents=True)
        sf.write(out / "song" / "accompaniment.wav", _music(22050, 0.1, 2), 22050)
        needles = ["accompaniment.wav", "--overwrite"]
    elif problem == "input_is_output":
        # A file that is one of the outputs (out/song/vocals.wav), named as an input beside song.wav.
        (out / "song").mkdir(parents=True)
        shutil.copy(source, out / "song" / "vocals.wav")
        args = [str(source), str(out / "song" / "vocals.wav"), "-o", str(out), "--ckpt", "m", "--overwrite", "-q"]
        needles = ["vocals.wav", "overwrite an input"]
    elif problem == "no_ckpt":
        args = [str(source), "-o", str(out)]
        needles = ["--ckpt"]
    elif problem == "corrupt":
        source.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(range(256)))
        needles = [str(source)]
    elif problem == "missing":
        args[0] = str(tmp_path / "nope.wav")
        needles = ["nope.wav", "no such file"]
    elif problem == "same_name":
        (tmp_path / "other").mkdir()
        sf.write(tmp_path / "other" / "song.flac", _music(22050, 1.0, 2), 22050)
        args.insert(1, str(tmp_path / "other" / "song.flac"))
        needles = ["song"]
    elif problem == "no_resample":
        sf.write(source, _music(16000, 1.0, 2), 16000)
        args.append("--no-resample")
        needles = ["16000 Hz", "22050 Hz"]
    elif problem == "output_is_file":
        out.write_bytes(b"not a folder")
        needles = ["not a folder"]
    elif problem == "not_a_separator":
        monkeypatch.setattr(musicfx.api, "load", lambda checkpoint, device="cpu", trust=False: object())
        needles = ["m.ckpt", "separation"]
    before = _snapshot(tmp_path)
    code, _, err = _run(capsys, *args)
    _one_error_line(code, err, *needles)
    assert _snapshot(tmp_path) == before


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_stem_mp4_output(loads, tmp_path: Path, capsys) -> None:
    from musicfx.audio.io import read_stems

    source = tmp_path / "song.wav"
    sf.write(source, _music(44100, 1.0, 2), 44100)
    code, _, err = _run(capsys, str(source), "-o", str(tmp_path / "out"), "--ckpt", "m", "--stem-mp4", "-q")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["song.stem.mp4"]  # no temporary files left
    streams, rate, _ = read_stems(tmp_path / "out" / "song.stem.mp4")
    assert rate == 44100 and streams.shape[:2] == (3, 2)
    # Mixture, then the sources in order (RMS away from the AAC encoder's start-up transient).
    rms = streams[..., 4096:-4096].square().mean(dim=(1, 2)).sqrt()
    torch.testing.assert_close(rms, 0.3 / np.sqrt(2) * torch.tensor([1.0, 0.25, 0.75]), atol=0.005, rtol=0)


def test_stem_mp4_without_ffmpeg(loads, tmp_path: Path, capsys, monkeypatch) -> None:
    import musicfx.audio.io as io

    source = tmp_path / "song.wav"
    sf.write(source, _music(22050, 0.5, 2), 22050)
    monkeypatch.setattr(io.shutil, "which", lambda name: None)
    code, _, err = _run(capsys, str(source), "-o", str(tmp_path / "out"), "--ckpt", "m", "--stem-mp4")
    _one_error_line(code, err, "ffmpeg")
    assert not (tmp_path / "out").exists()
