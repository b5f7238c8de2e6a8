"""Multi-stream inference: overlap-add with extra output dims, files in lockstep, separation, stem files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicfx.errors import AudioError, MissingDependencyError
from musicfx.inference import OverlapAdd, apply_model, process_files, separate_file, write_stem_file


def _tones(rate: int, seconds: float, channels: int, base: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    envelope = 1 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
    return np.stack(
        [0.2 * np.sin(2 * np.pi * (base + 37 * c) * t) * envelope for c in range(channels)], axis=1
    ).astype(np.float32)


def _three_way(batch: torch.Tensor) -> torch.Tensor:
    """(batch, C, T) -> (batch, 3, C, T): the input, twice it, and its negation."""
    return torch.stack([batch, 2 * batch, -batch], dim=1)


@pytest.mark.parametrize("length", [7, 100, 1037])
@pytest.mark.parametrize("segment,overlap,batch", [(100, 25, 1), (100, 50, 3), (64, 0, 2)])
def test_overlap_add_identity_with_stems_dim(length: int, segment: int, overlap: int, batch: int) -> None:
    x = torch.randn(2, length)
    engine = OverlapAdd(_three_way, segment, overlap, batch)
    out = [engine.push(x[:, s : s + 41]) for s in range(0, length, 41)] + [engine.flush()]
    y = torch.cat([o for o in out if o.shape[-1]], dim=-1)
    assert engine.out_shape == (3, 2)
    torch.testing.assert_close(y, torch.stack([x, 2 * x, -x]), atol=1e-6, rtol=0)


def test_overlap_add_multi_input_multi_output() -> None:
    # (n_in=3, C=2) in, (n_out=2, C=1) out: the sum and the difference of the first two inputs, mono.
    def model(batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([batch[:, 0] + batch[:, 1], batch[:, 0] - batch[:, 2]], dim=1).mean(dim=2, keepdim=True)

    x = torch.randn(3, 2, 999)
    engine = OverlapAdd(model, 128, 32, 2)
    y = torch.cat([engine.push(x[..., s : s + 300]) for s in range(0, 999, 300)] + [engine.flush()], dim=-1)
    expected = torch.stack([x[0] + x[1], x[0] - x[2]]).mean(dim=1, keepdim=True)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)


def test_overlap_add_rejects_changing_batch_or_length() -> None:
    engine = OverlapAdd(lambda b: b[..., :-1], 50, 10)
    with pytest.raises(RuntimeError, match="length last"):
        engine.push(torch.randn(1, 200))


@pytest.mark.parametrize("model_channels,file_channels", [(1, 1), (1, 3), (2, 1), (2, 2), (2, 3)])
def test_apply_model_separator_any_channels(model_channels: int, file_channels: int) -> None:
    seen = set()

    def separator(batch: torch.Tensor) -> torch.Tensor:
        seen.add(batch.shape[1])
        return torch.stack([0.25 * batch, 0.75 * batch], dim=1)

    x = torch.randn(file_channels, 2500)
    y = apply_model(separator, x, 1000, 1000, model_channels, segment=1.0)
    assert seen == {model_channels}
    assert y.shape == (2, file_channels, 2500)
    torch.testing.assert_close(y, torch.stack([0.25 * x, 0.75 * x]), atol=1e-5, rtol=0)
    mono = apply_model(separator, x[0], 1000, 1000, model_channels, segment=1.0)
    torch.testing.assert_close(mono, torch.stack([0.25 * x[0], 0.75 * x[0]]), atol=1e-5, rtol=0)


def test_apply_model_separator_resamples_back() -> None:
    x = torch.from_numpy(_tones(16000, 1.5, 2, 300.0).T.copy())
    y = apply_model(_three_way, x, 16000, 8000, 2, segment=0.5)
    assert y.shape == (3, 2, x.shape[-1])
    # Through 8 kHz and back a 300 Hz tone survives; compare away from the edges.
    torch.testing.assert_close(y[1, :, 500:-500], 2 * x[:, 500:-500], atol=2e-3, rtol=0)


def test_process_files_pads_shorter_inputs_to_the_longest(tmp_path: Path) -> None:
    rate = 8000
    datas = [_tones(rate, seconds, 2, base) for seconds, base in ((1.5, 200.0), (2.25, 300.0), (0.8, 450.0))]
    inputs = []
    for i, data in enumerate(datas):
        inputs.append(tmp_path / f"in{i}.wav")
        sf.write(inputs[-1], data, rate, subtype="FLOAT")
    outputs = [tmp_path / "out" / f"out{i}.wav" for i in range(3)]
    calls = []

    def mixer(batch: torch.Tensor) -> torch.Tensor:
        # (batch, 3, 2, t) -> (batch, 3, 2, t): each output is its input plus half the next one.
        calls.append(tuple(batch.shape))
        return batch + 0.5 * batch.roll(-1, dims=1)

    with pytest.warns(UserWarning, match="padded with silence"):
        process_files(mixer, inputs, outputs, rate, None, None, segment=0.5, block_seconds=0.4, progress=False)
    longest = max(len(d) for d in datas)
    padded = [np.pad(d, ((0, longest - len(d)), (0, 0))) for d in datas]
    for i, path in enumerate(outputs):
        out, out_rate = sf.read(path, dtype="float32")
        assert out_rate == rate and out.shape == (longest, 2)
        np.testing.assert_allclose(out, padded[i] + 0.5 * padded[(i + 1) % 3], atol=1e-5)
    assert {shape[1:3] for shape in calls} == {(3, 2)}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["out0.wav", "out1.wav", "out2.wav"]


def test_process_files_channel_conversion_and_resampling(tmp_path: Path) -> None:
    # Stems in, one mix out (automix's shape): mono and stereo files into a stereo model at another rate.
    rate = 16000
    mono, stereo = _tones(rate, 1.0, 1, 250.0), _tones(rate, 1.0, 2, 400.0)
    sf.write(tmp_path / "a.wav", mono, rate)
    sf.write(tmp_path / "b.wav", stereo, rate)

    def summing(batch: torch.Tensor) -> torch.Tensor:
        assert batch.shape[1:3] == (2, 2)
        return batch.sum(dim=1, keepdim=True)

    out = tmp_path / "mix.flac"
    process_files(summing, [tmp_path / "a.wav", tmp_path / "b.wav"], [out], 22050, 2, 1, segment=0.3, progress=False)
    mix, out_rate = sf.read(out, dtype="float32")
    assert out_rate == rate and mix.shape == (rate,)
    expected = mono[:, 0] + stereo.mean(axis=1)
    assert np.abs(mix - expected)[400:-400].max() < 5e-3  # through 22.05 kHz and back


def test_process_files_rate_mismatch_names_both(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", _tones(8000, 1.0, 1, 200.0), 8000)
    sf.write(tmp_path / "b.wav", _tones(16000, 1.0, 1, 200.0), 16000)
    with pytest.raises(AudioError) as error:
        process_files(lambda b: b, [tmp_path / "a.wav", tmp_path / "b.wav"], [tmp_path / "x.wav", tmp_path / "y.wav"],
                      8000, None, None, progress=False)
    message = str(error.value)
    assert "a.wav" in message and "b.wav" in message and "16000 Hz" in message and "8000 Hz" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]


def test_process_files_channel_count_mismatch(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", _tones(8000, 1.0, 1, 200.0), 8000)
    sf.write(tmp_path / "b.wav", _tones(8000, 1.0, 2, 200.0), 8000)
    with pytest.raises(AudioError, match="channels"):
        process_files(lambda b: b, [tmp_path / "a.wav", tmp_path / "b.wav"], [tmp_path / "x.wav", tmp_path / "y.wav"],
                      8000, None, None, progress=False)


@pytest.mark.parametrize("problem", ["model_error", "nan_in_second_input", "output_is_input", "wrong_output_count"])
def test_process_files_is_atomic(tmp_path: Path, problem: str) -> None:
    rate = 8000
    inputs = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for path, base in zip(inputs, (200.0, 300.0)):
        data = _tones(rate, 3.0, 1, base)
        if problem == "nan_in_second_input" and path.name == "b.wav":
            data[int(2.5 * rate), 0] = np.nan
        sf.write(path, data, rate, subtype="FLOAT")
    outputs = [tmp_path / "out" / "a.wav", tmp_path / "out" / "b.wav"]
    calls = []

    def model(batch: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if problem == "model_error" and len(calls) == 2:
            raise RuntimeError("boom on the second block")
        return batch[:, :1] if problem == "wrong_output_count" else batch

    expected = {"model_error": RuntimeError, "nan_in_second_input": AudioError, "output_is_input": AudioError,
                "wrong_output_count": ValueError}[problem]
    if problem == "output_is_input":
        outputs[1] = inputs[0]
    before = {p: p.read_bytes() for p in inputs}
    with pytest.raises(expected):
        process_files(model, inputs, outputs, rate, None, None, segment=1.0, block_seconds=1.0, progress=False)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p not in before]
    assert leftovers == []  # no output, no temporary file
    assert {p: p.read_bytes() for p in inputs} == before
    if problem == "model_error":
        assert len(calls) == 2  # the first block's output had been written to a temporary file


def test_process_files_all_silent_is_an_error_one_silent_a_warning(tmp_path: Path) -> None:
    rate = 8000
    sf.write(tmp_path / "a.wav", np.zeros((rate, 1), np.float32), rate)
    sf.write(tmp_path / "b.wav", _tones(rate, 1.0, 1, 200.0), rate)
    with pytest.warns(UserWarning, match="silent"):
        process_files(lambda b: b, [tmp_path / "a.wav", tmp_path / "b.wav"], [tmp_path / "x.wav", tmp_path / "y.wav"],
                      rate, None, None, progress=False)
    with pytest.raises(AudioError, match="silent"):
        process_files(lambda b: b, [tmp_path / "a.wav"], [tmp_path / "z.wav"], rate, None, None, progress=False)
    assert not (tmp_path / "z.wav").exists()


def test_memory_does_not_grow_with_length(tmp_path: Path, monkeypatch) -> None:
    # The engine holds at most a read block plus a segment of samples (times the streams), whatever the
    # length: a 60 s file peaks at the same number of held samples as a 6 s one.
    import musicfx.inference as inference

    held = []
    push = inference.OverlapAdd.push

    def recording_push(self, block):
        out = push(self, block)
        held.append(self._buffer.numel() + block.numel() + out.numel())
        return out

    monkeypatch.setattr(inference.OverlapAdd, "push", recording_push)
    rate = 8000
    peaks = {}
    for seconds in (6, 60):
        held.clear()
        path = tmp_path / f"{seconds}.wav"
        sf.write(path, _tones(rate, seconds, 1, 220.0), rate, subtype="FLOAT")
        separate_file(_three_way, path, [tmp_path / f"{seconds}_{i}.wav" for i in range(3)], rate, 1, segment=1.0,
                      block_seconds=2.0, progress=False)
        peaks[seconds] = max(held)
    assert peaks[60] <= 1.1 * peaks[6]  # vs 10x the samples in the file
    assert peaks[60] <= 4 * (2 + 1 + 1) * rate  # (1 in + 3 out streams) x (block + segment + tail)
    out, _ = sf.read(tmp_path / "60_1.wav", dtype="float32")
    assert out.shape == (60 * rate,)
    np.testing.assert_allclose(out, 2 * _tones(rate, 60, 1, 220.0)[:, 0], atol=1e-5)


def test_separate_file_stereo_model_on_mono_and_3_channel_files(tmp_path: Path) -> None:
    rate = 8000
    seen = set()

    def separator(batch: torch.Tensor) -> torch.Tensor:
        seen.add(batch.shape[1])
        # The left channel goes to stem 0, the right to stem 1: the channel mapping must keep them apart.
        left, right = torch.tensor([1.0, 0.0]).view(1, 2, 1), torch.tensor([0.0, 1.0]).view(1, 2, 1)
        return torch.stack([batch * left, batch * right], dim=1)

    for channels in (1, 3):
        data = _tones(rate, 1.2, channels, 200.0)
        source = tmp_path / f"mix{channels}.wav"
        sf.write(source, data, rate, subtype="FLOAT")
        outs = separate_file(separator, source, [tmp_path / f"s{channels}_{i}.wav" for i in range(2)], rate, 2,
                             segment=0.5, progress=False)
        stems = [sf.read(path, dtype="float32", always_2d=True)[0] for path in outs]
        assert all(stem.shape == data.shape for stem in stems)
        if channels == 1:  # duplicated to stereo, averaged back: half in each stem
            np.testing.assert_allclose(stems[0], 0.5 * data, atol=1e-5)
            np.testing.assert_allclose(stems[1], 0.5 * data, atol=1e-5)
        else:  # groups (0, 1) and (2, 2): channel 2 is paired with itself and comes back from stem 0
            np.testing.assert_allclose(stems[0][:, [0, 2]], data[:, [0, 2]], atol=1e-5)
            np.testing.assert_allclose(stems[0][:, 1], 0 * data[:, 1], atol=1e-6)
            np.testing.assert_allclose(stems[1][:, 1], data[:, 1], atol=1e-5)
    assert seen == {2}


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_write_stem_file_round_trip(tmp_path: Path) -> None:
    from musicfx.audio.io import read_stems

    rate = 44100
    gains = torch.tensor([0.05, 0.1, 0.2, 0.4]).view(4, 1, 1)
    noise = torch.randn(4, 2, rate, generator=torch.Generator().manual_seed(0)).clamp(-2.5, 2.5) / 2.5
    stems = gains * noise
    path = write_stem_file(tmp_path / "song.stem.mp4", stems.sum(0), stems, rate, ["drums", "bass", "other", "vocals"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.stem.mp4"]
    decoded, decoded_rate, names = read_stems(path)
    assert decoded_rate == rate and decoded.shape[:2] == (5, 2)
    assert names == ("mixture", "drums", "bass", "other", "vocals")
    rms = decoded.square().mean(dim=(1, 2)).sqrt()
    expected = torch.cat([stems.sum(0, keepdim=True), stems]).square().mean(dim=(1, 2)).sqrt()
    torch.testing.assert_close(rms, expected, rtol=0.1, atol=0)  # the streams in order, AAC-close


def test_write_stem_file_without_ffmpeg(tmp_path: Path, monkeypatch) -> None:
    import musicfx.audio.io as io

    monkeypatch.setattr(io.shutil, "which", lambda name: None)
    stems = torch.rand(2, 2, 1000)
    with pytest.raises(MissingDependencyError, match="ffmpeg"):
        write_stem_file(tmp_path / "x.stem.mp4", stems.sum(0), stems, 44100, ["a", "b"])
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_stem_mp4_output_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    # The stems go to files and ffmpeg muxes them from disk: nothing is read back whole, so the Python-side
    # peak (numpy buffers, which tracemalloc sees) for a 24 s song is that of a 4 s one. Reading the four
    # stereo streams back, as the writer once did, adds 6 MB at 24 s (measured: 0.8 MB flat at 6 and 60 s at
    # 16 kHz, against 3.8 and 38 MB for the read-back).
    import tracemalloc

    from musicfx.audio.io import read_stems
    from musicfx.inference import separate_to_stem_file

    rate = 8000
    peaks = {}
    for seconds in (4, 24):
        path = tmp_path / f"{seconds}.wav"
        sf.write(path, _tones(rate, seconds, 2, 220.0), rate, subtype="FLOAT")
        tracemalloc.start()
        try:
            separate_to_stem_file(_three_way, path, tmp_path / f"{seconds}.stem.mp4", ["a", "b", "c"], rate, 2,
                                  segment=1.0, block_seconds=2.0, progress=False)
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks[24] < peaks[4] + 1_000_000, peaks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["24.stem.mp4", "24.wav", "4.stem.mp4", "4.wav"]
    streams, decoded_rate, names = read_stems(tmp_path / "24.stem.mp4")
    assert decoded_rate == rate and streams.shape[:2] == (4, 2) and abs(streams.shape[-1] - 24 * rate) < 4096
    # Mixture, then the stems in order: x, 2x, -x (RMS away from the encoder's start-up transient).
    rms = streams[..., 4096:-4096].square().mean(dim=(1, 2)).sqrt()
    torch.testing.assert_close(rms / rms[0], torch.tensor([1.0, 1.0, 2.0, 1.0]), atol=0.05, rtol=0)
