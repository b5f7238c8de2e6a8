"""`musicfx denoise` on good and bad files: one clear error line, no traceback, nothing written."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicfx.cli import main


def _music(rate: int = 22050, seconds: float = 2.0, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 5)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    noisy = 0.2 * tone[:, None] + 0.05 * rng.standard_normal((t.size, channels))
    return noisy.astype(np.float32)


def _run(capsys, *args: str):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.err


def _assert_one_error_line(code: int, err: str, *needles: str) -> None:
    assert code == 1
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("musicfx: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_spectral_gate_denoises_file_and_folder(tmp_path, capsys) -> None:
    source = tmp_path / "song.flac"
    sf.write(source, _music(), 22050)
    code, _ = _run(capsys, "denoise", str(source), "-o", str(tmp_path / "out.wav"), "--method", "spectral-gate", "-q")
    assert code == 0
    out, rate = sf.read(tmp_path / "out.wav")
    assert rate == 22050 and out.shape == _music().shape
    code, _ = _run(capsys, "denoise", str(tmp_path), "-o", str(tmp_path / "folder_out"), "--method", "spectral-gate",
                   "-q", "--spectrogram")
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "folder_out").iterdir()) == ["out.png", "out.wav", "song.flac", "song.png"]


def test_model_checkpoint_denoises_any_rate_and_channels(trained_checkpoint, tmp_path, capsys) -> None:
    source = tmp_path / "in.wav"
    sf.write(source, _music(rate=48000, seconds=1.3, channels=2), 48000)
    code, err = _run(capsys, "denoise", str(source), "-o", str(tmp_path / "out"), "--ckpt", str(trained_checkpoint),
                     "--segment", "0.5", "-q", "--spectrogram")
    assert code == 0, err
    out, rate = sf.read(tmp_path / "out" / "in.wav")
    assert rate == 48000 and out.shape == (int(48000 * 1.3), 2) and np.isfinite(out).all()
    assert (tmp_path / "out" / "in.png").stat().st_size > 5000


@pytest.mark.parametrize("problem", ["corrupt", "missing", "silent", "nan", "short", "same_path", "exists"])
def test_bad_inputs(problem: str, tmp_path, capsys) -> None:
    source = tmp_path / "in.wav"
    data = _music()
    output = tmp_path / "out" / "in.wav"
    needle = str(source)
    if problem == "corrupt":
        source.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(range(256)) * 4)
    elif problem == "missing":
        needle = "no such file"
    elif problem == "silent":
        sf.write(source, np.zeros_like(data), 22050)
        needle = "silent"
    elif problem == "nan":
        data[5000, 1] = np.inf
        sf.write(source, data, 22050, subtype="FLOAT")
        needle = "NaN or infinite"
    elif problem == "short":
        sf.write(source, data[:50], 22050)
        needle = "too short"
    elif problem == "same_path":
        sf.write(source, data, 22050)
        output = source
        needle = "overwrite"
    elif problem == "exists":
        sf.write(source, data, 22050)
        output.parent.mkdir()
        sf.write(output, data[:100], 22050)
        needle = "--overwrite"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, err = _run(capsys, "denoise", str(source), "-o", str(output), "--method", "spectral-gate", "-q")
    _assert_one_error_line(code, err, needle)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing overwritten


def test_wrong_sample_rate_without_resampling(trained_checkpoint, tmp_path, capsys) -> None:
    source = tmp_path / "in.wav"
    sf.write(source, _music(rate=16000), 16000)
    code, err = _run(capsys, "denoise", str(source), "-o", str(tmp_path / "o.wav"), "--ckpt", str(trained_checkpoint),
                     "--no-resample", "-q")
    _assert_one_error_line(code, err, "16000 Hz", "22050 Hz")
    assert not (tmp_path / "o.wav").exists()


def test_missing_ffmpeg_for_stem_files(shared_data: Path, tmp_path, capsys, monkeypatch) -> None:
    import musicfx.audio.io as io

    monkeypatch.setattr(io.shutil, "which", lambda name: None)
    stem = shared_data / "musdb18-sample" / "Music Delta - 80s Rock.stem.mp4"
    code, err = _run(capsys, "denoise", str(stem), "-o", str(tmp_path / "o.wav"), "--method", "spectral-gate", "-q")
    _assert_one_error_line(code, err, "ffmpeg")
    assert not list(tmp_path.iterdir())


def test_missing_checkpoint(tmp_path, capsys) -> None:
    source = tmp_path / "in.wav"
    sf.write(source, _music(), 22050)
    code, err = _run(capsys, "denoise", str(source), "-o", str(tmp_path / "o.wav"), "--ckpt", str(tmp_path / "nope.ckpt"))
    _assert_one_error_line(code, err, "nope.ckpt")


def test_help_lists_commands(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "denoise"):
        assert command in out


@pytest.mark.skipif(shutil.which("musicfx") is None, reason="console script not installed")
def test_console_script_exists() -> None:
    import subprocess

    result = subprocess.run(["musicfx", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "musicfx" in result.stdout


def test_unwritable_output_format_is_an_error_not_a_folder(tmp_path, capsys) -> None:
    source = tmp_path / "in.wav"
    sf.write(source, _music(), 22050)
    code, err = _run(capsys, "denoise", str(source), "-o", str(tmp_path / "out.m4a"), "--method", "spectral-gate", "-q")
    _assert_one_error_line(code, err, ".m4a")
    assert not (tmp_path / "out.m4a").exists()


def test_folder_rerun_skips_its_own_outputs_and_hidden_files(tmp_path, capsys) -> None:
    sf.write(tmp_path / "a.wav", _music(), 22050)
    sf.write(tmp_path / ".hidden.wav", _music(), 22050)
    out = tmp_path / "cleaned"
    assert _run(capsys, "denoise", str(tmp_path), "-o", str(out), "--method", "spectral-gate", "-q")[0] == 0
    assert _run(capsys, "denoise", str(tmp_path), "-o", str(out), "--method", "spectral-gate", "-q", "--overwrite")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.wav"]


def test_track_names_and_output_names() -> None:
    from musicfx.audio.stems import track_name
    from musicfx.commands.common import output_name

    assert track_name("MUSDB/Song - Name.STEM.mp4") == "Song - Name"
    assert track_name("take.1.flac") == "take.1" and track_name(Path("a/b.wav")) == "b"
    assert output_name(Path("x/song.stem.mp4")) == "song.wav"
    assert output_name(Path("take1.flac")) == "take1.flac" and output_name(Path("a.m4a")) == "a.wav"


def test_a_failed_run_leaves_no_folder_it_created(tmp_path, capsys) -> None:
    source = tmp_path / "in.wav"
    sf.write(source, np.zeros((22050, 2), np.float32), 22050)
    existing = tmp_path / "existing"
    existing.mkdir()
    for output in (tmp_path / "new" / "deeper", existing):
        code, err = _run(capsys, "denoise", str(source), "-o", str(output), "--method", "spectral-gate", "-q")
        _assert_one_error_line(code, err, "silent")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "in.wav"] and not list(existing.iterdir())


@pytest.mark.parametrize("command", ["separate", "debleed"])
def test_a_real_checkpoint_of_another_task_is_one_line(command, trained_checkpoint, tmp_path, capsys) -> None:
    for name in ("vocals", "drums"):
        sf.write(tmp_path / f"{name}.wav", _music(), 22050)
    code, err = _run(capsys, command, str(tmp_path / "vocals.wav"), str(tmp_path / "drums.wav"), "-o",
                     str(tmp_path / "out"), "--ckpt", str(trained_checkpoint), "-q")
    _assert_one_error_line(code, err, str(trained_checkpoint), "DenoiseTask", "musicfx denoise")
    assert not (tmp_path / "out").exists()
