"""Reading and writing audio files (musicfx.audio.io)."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from musicfx.audio import io as audio_io
from musicfx.audio.io import (
    AudioInfo,
    audio_info,
    convert_channels,
    ensure_finite,
    is_stem_file,
    read_audio,
    read_stems,
    resample,
    write_audio,
)
from musicfx.errors import AudioError, MissingDependencyError, MusicfxError

STEM_FILE = "Music Delta - 80s Rock.stem.mp4"


def _music_like(channels: int = 2, frames: int = 8000, seed: int = 0) -> torch.Tensor:
    """A few sines plus a little noise, peaking below 1: distinct values on every channel."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float64) / 8000
    chord = 0.2 * torch.sin(2 * math.pi * 1330.0 * t)
    rows = [0.3 * torch.sin(2 * math.pi * (220.0 * (c + 1)) * t) + chord for c in range(channels)]
    audio = torch.stack(rows).float()
    return audio + 0.01 * torch.randn(channels, frames, generator=generator)


def _snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.square().sum() / (reference - estimate).square().sum()))


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, subtype, atol",
    [
        ("a.wav", None, 0.0),  # FLOAT by default: bit exact
        ("a.wav", "PCM_16", 1 / 32768),
        ("a.wav", "PCM_24", 1 / 2**23),
        ("a.flac", "PCM_16", 1 / 32768),
        ("a.flac", "PCM_24", 1 / 2**23),
        ("a.aiff", "PCM_16", 1 / 32768),
    ],
)
def test_lossless_round_trip(tmp_path: Path, name: str, subtype: str, atol: float) -> None:
    audio = _music_like()
    path = write_audio(tmp_path / name, audio, 8000, subtype=subtype)
    assert path == tmp_path / name
    back, rate = read_audio(path)
    assert rate == 8000 and back.dtype == torch.float32 and back.shape == audio.shape
    assert (back - audio).abs().max() <= atol
    assert audio_info(path) == AudioInfo(8000, 2, 8000)
    assert audio_info(path).duration == pytest.approx(1.0)


def test_default_wav_subtype_is_float(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.wav", _music_like(), 8000)
    assert soundfile.info(str(tmp_path / "a.wav")).subtype == "FLOAT"


def test_lossy_ogg_round_trip(tmp_path: Path) -> None:
    audio = _music_like(frames=16000)
    write_audio(tmp_path / "a.ogg", audio, 8000)
    assert soundfile.info(str(tmp_path / "a.ogg")).subtype == "VORBIS"
    back, rate = read_audio(tmp_path / "a.ogg")
    assert rate == 8000 and back.shape == audio.shape
    assert _snr_db(audio, back) > 15.0  # lossy, but the same music


def test_pcm16_clips_out_of_range_samples(tmp_path: Path) -> None:
    audio = torch.tensor([[0.5, 1.5, -1.7, 0.25]]).repeat(1, 50)
    write_audio(tmp_path / "a.wav", audio, 8000, subtype="PCM_16")
    back, _ = read_audio(tmp_path / "a.wav")
    torch.testing.assert_close(back[0, :4], torch.tensor([0.5, 1.0, -1.0, 0.25]), atol=1 / 32768, rtol=0)


def test_mono_tensor_is_written_as_one_channel(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.wav", torch.linspace(-0.5, 0.5, 1000), 16000)
    back, _ = read_audio(tmp_path / "a.wav")
    assert back.shape == (1, 1000)
    with pytest.raises(ValueError, match="channels, time"):
        write_audio(tmp_path / "b.wav", torch.zeros(1, 2, 100), 16000)


def test_read_a_range(tmp_path: Path) -> None:
    audio = _music_like(frames=8000)
    write_audio(tmp_path / "a.flac", audio, 8000, subtype="PCM_24")
    part, _ = read_audio(tmp_path / "a.flac", start=1000, frames=500)
    assert part.shape == (2, 500)
    assert (part - audio[:, 1000:1500]).abs().max() <= 1 / 2**23
    tail, _ = read_audio(tmp_path / "a.flac", start=7900)
    assert tail.shape == (2, 100)
    with pytest.raises(AudioError, match="a.flac"):
        read_audio(tmp_path / "a.flac", start=9000)  # past the end: nothing to read


# --- resampling and channels ---------------------------------------------------------------------


def _peak_hz(signal: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(signal * torch.hann_window(signal.shape[-1], dtype=signal.dtype))
    return float(spectrum.abs().argmax()) * sample_rate / signal.shape[-1]


@pytest.mark.parametrize("orig_sr, new_sr", [(44100, 16000), (16000, 48000), (48000, 44100)])
def test_resample_keeps_frequency_and_length_ratio(orig_sr: int, new_sr: int) -> None:
    t = torch.arange(orig_sr, dtype=torch.float64) / orig_sr  # 1 s
    sine = torch.sin(2 * math.pi * 1000.0 * t).float().repeat(2, 1)
    out = resample(sine, orig_sr, new_sr)
    assert out.dtype == torch.float32 and out.shape[0] == 2
    assert abs(out.shape[-1] - new_sr) <= 1
    assert _peak_hz(out[0], new_sr) == pytest.approx(1000.0, abs=1.0)
    # Amplitude survives: the middle of the output is still a unit sine.
    middle = out[0, new_sr // 4 : 3 * new_sr // 4]
    assert float(middle.abs().max()) == pytest.approx(1.0, abs=0.01)
    assert float(middle.square().mean()) == pytest.approx(0.5, abs=0.01)


def test_resample_with_gradient_uses_julius_and_agrees_with_soxr() -> None:
    t = torch.arange(44100, dtype=torch.float64) / 44100
    sine = torch.sin(2 * math.pi * 440.0 * t).float().unsqueeze(0)
    via_soxr = resample(sine, 44100, 22050)
    tracked = sine.clone().requires_grad_()
    via_julius = resample(tracked, 44100, 22050)
    assert via_julius.requires_grad
    middle = slice(2000, -2000)
    assert (via_julius[:, middle] - via_soxr[:, middle]).abs().max() < 1e-2
    assert resample(sine, 44100, 44100) is sine


def test_read_with_resampling_and_channel_conversion(tmp_path: Path) -> None:
    audio = _music_like(channels=2, frames=8000)
    write_audio(tmp_path / "a.wav", audio, 8000)
    mono, rate = read_audio(tmp_path / "a.wav", sample_rate=16000, channels=1)
    assert rate == 16000 and mono.shape == (1, 16000)
    expected = resample(audio.mean(0, keepdim=True), 8000, 16000)
    torch.testing.assert_close(mono, expected, atol=1e-5, rtol=0)


def test_convert_channels() -> None:
    stereo = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    torch.testing.assert_close(convert_channels(stereo, 1), torch.tensor([[2.0, 4.0]]))
    mono = torch.tensor([[0.5, -0.5]])
    torch.testing.assert_close(convert_channels(mono, 3), mono.repeat(3, 1))
    six = torch.arange(12.0).reshape(6, 2)
    torch.testing.assert_close(convert_channels(six, 2), six[:2])
    batched = torch.randn(4, 2, 10)
    assert convert_channels(batched, 1).shape == (4, 1, 10)
    assert convert_channels(stereo, 2) is stereo
    with pytest.raises(AudioError, match="4 channels from 2"):
        convert_channels(stereo, 4)


# --- atomic writes -------------------------------------------------------------------------------


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "song.wav"
    write_audio(target, _music_like(), 8000)
    assert sorted(p.name for p in target.parent.iterdir()) == ["song.wav"]


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "song.wav"
    original = _music_like(seed=1)
    write_audio(target, original, 8000)

    def crash(file, *args, **kwargs):
        Path(file).write_bytes(b"RIFF half a header")
        raise OSError("disk full")

    monkeypatch.setattr(soundfile, "write", crash)
    with pytest.raises(OSError, match="disk full"):
        write_audio(target, _music_like(seed=2), 8000)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["song.wav"]
    torch.testing.assert_close(read_audio(target)[0], original)


def test_overwrite_false_refuses(tmp_path: Path) -> None:
    target = tmp_path / "song.flac"
    write_audio(target, _music_like(seed=1), 8000)
    before = target.read_bytes()
    with pytest.raises(AudioError, match="song.flac"):
        write_audio(target, _music_like(seed=2), 8000, overwrite=False)
    assert target.read_bytes() == before
    write_audio(target, _music_like(seed=2), 8000, overwrite=True)
    assert target.read_bytes() != before


def test_refuses_to_write_nan_or_unknown_formats(tmp_path: Path) -> None:
    audio = _music_like()
    audio[1, 10] = float("nan")
    with pytest.raises(AudioError, match="1 NaN"):
        write_audio(tmp_path / "a.wav", audio, 8000)
    with pytest.raises(AudioError, match=r"\.xyz"):
        write_audio(tmp_path / "a.xyz", _music_like(), 8000)
    assert list(tmp_path.iterdir()) == []


# --- errors the user can fix ---------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    for call in (read_audio, audio_info):
        with pytest.raises(AudioError, match="nope.wav: no such file"):
            call(missing)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is a folder"):
        read_audio(tmp_path)
    with pytest.raises(AudioError, match=str(tmp_path.name)):
        audio_info(tmp_path)


def test_corrupt_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    for call in (read_audio, audio_info):
        with pytest.raises(AudioError, match="corrupt.wav: cannot read audio"):
            call(corrupt)


def test_zero_length_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros((0, 2), dtype=np.float32), 8000)
    for call in (read_audio, audio_info):
        with pytest.raises(AudioError, match="empty.wav: file holds no audio"):
            call(empty)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "bad.wav"
    data = np.full((100, 2), 0.1, dtype=np.float32)
    data[50, 1] = bad
    data[70, 0] = bad
    soundfile.write(str(path), data, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="bad.wav: holds 2 NaN or infinite samples"):
        read_audio(path)
    audio, _ = read_audio(path, check_finite=False)
    assert int((~torch.isfinite(audio)).sum()) == 2


def test_errors_are_musicfx_errors() -> None:
    assert issubclass(AudioError, MusicfxError) and issubclass(MissingDependencyError, MusicfxError)
    with pytest.raises(AudioError, match="the estimate: holds 1"):
        ensure_finite(torch.tensor([0.0, float("nan")]), "the estimate")


# --- multitrack stem files -----------------------------------------------------------------------


def test_is_stem_file() -> None:
    assert is_stem_file("a/Song.STEM.mp4") and is_stem_file("b.m4a")
    assert not is_stem_file("mix.wav")


@pytest.fixture(scope="module")
def stem_path(shared_data: Path) -> Path:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg/ffprobe not on PATH: cannot decode .stem.mp4")
    pytest.importorskip("stempeg")
    return shared_data / "musdb18-sample" / STEM_FILE


@pytest.fixture(scope="module")
def decoded_stems(stem_path: Path):
    return read_stems(stem_path)


def test_read_stems_gives_five_streams(decoded_stems) -> None:
    stems, rate, names = decoded_stems
    assert rate == 44100
    assert names == ("mixture", "drums", "bass", "other", "vocals")
    assert stems.dtype == torch.float32 and stems.shape[:2] == (5, 2)
    assert 6.5 * 44100 < stems.shape[-1] < 7.0 * 44100  # 6.8 s excerpt
    # Every stream holds sound, and the mixture is (up to AAC coding) the sum of the four stems.
    assert bool((stems.abs().amax(dim=(1, 2)) > 0.01).all())
    assert _snr_db(stems[0], stems[1:].sum(0)) > 20.0


def test_stem_file_through_read_audio_and_info(stem_path: Path, decoded_stems) -> None:
    stems, _, _ = decoded_stems
    mixture, rate = read_audio(stem_path, start=44100, frames=1000)
    assert rate == 44100
    torch.testing.assert_close(mixture, stems[0, :, 44100:45100])
    info = audio_info(stem_path)
    assert (info.sample_rate, info.channels) == (44100, 2)
    # The container's duration and the decoded length differ by AAC priming (a few hundred samples).
    assert abs(info.frames - stems.shape[-1]) < 1024


def test_stems_without_ffmpeg_raise_missing_dependency(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = shared_data / "musdb18-sample" / STEM_FILE
    monkeypatch.setattr(audio_io.shutil, "which", lambda name: None)
    for call in (read_stems, read_audio, audio_info):
        with pytest.raises(MissingDependencyError, match="ffmpeg") as error:
            call(path)
        assert STEM_FILE in str(error.value)


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    path = write_audio(tmp_path / "shared.wav", _music_like(), 8000)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
