"""Overlap-add inference: exact for an identity model, seamless, constant memory, safe file handling."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from musicfx.errors import AudioError
from musicfx.inference import OverlapAdd, apply_model, process_file


@pytest.mark.parametrize("length", [7, 99, 100, 101, 1037, 5000])
@pytest.mark.parametrize("segment,overlap,batch", [(100, 25, 1), (100, 0, 2), (100, 50, 3), (64, 10, 1)])
def test_overlap_add_identity_is_exact(length: int, segment: int, overlap: int, batch: int) -> None:
    x = torch.randn(2, length)
    engine = OverlapAdd(lambda b: b, segment, overlap, batch)
    out = [engine.push(x[:, s : s + 37]) for s in range(0, length, 37)] + [engine.flush()]
    y = torch.cat(out, dim=-1)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_overlap_add_crossfades_instead_of_seams() -> None:
    # A model that adds a different constant to every call: the output must move smoothly between the
    # constants over each overlap instead of jumping at segment borders.
    calls = iter(range(1000))

    def offset_model(batch: torch.Tensor) -> torch.Tensor:
        return batch + torch.tensor([float(next(calls)) for _ in range(batch.shape[0])]).view(-1, 1, 1)

    x = torch.zeros(1, 1000)
    y = apply_model(offset_model, x, 100, 100, 1, segment=2.0, overlap=0.25)
    assert y.shape == x.shape
    assert float(y.diff(dim=-1).abs().max()) < 0.1  # a hard seam would jump by 1.0


def test_mono_model_runs_each_channel_and_keeps_shape() -> None:
    seen = []

    def model(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.shape[1])
        return batch * 0.5

    x = torch.randn(2, 3000)
    y = apply_model(model, x, 1000, 1000, 1, segment=1.0)
    assert set(seen) == {1}
    torch.testing.assert_close(y, x * 0.5, atol=1e-6, rtol=0)


def _sine(rate: int, seconds: float, channels: int = 2) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


def test_process_file_resamples_and_keeps_rate_channels_length(tmp_path) -> None:
    data = _sine(22050, 3.3)
    source = tmp_path / "in.wav"
    sf.write(source, data, 22050)
    out = process_file(lambda b: b, source, tmp_path / "out.wav", 44100, 1, segment=1.0, block_seconds=0.7, progress=False)
    back, rate = sf.read(out, dtype="float32")
    assert rate == 22050 and back.shape == data.shape
    assert np.abs(back - data)[2000:-2000].max() < 2e-3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]


def test_process_file_refuses_to_overwrite_input(tmp_path) -> None:
    source = tmp_path / "in.wav"
    sf.write(source, _sine(8000, 1.0), 8000)
    before = source.read_bytes()
    with pytest.raises(AudioError, match="overwrite"):
        process_file(lambda b: b, source, source, 8000, 1, progress=False)
    assert source.read_bytes() == before


@pytest.mark.parametrize("problem", ["nan", "silent", "short"])
def test_process_file_bad_input_writes_nothing(tmp_path, problem: str) -> None:
    data = _sine(8000, 2.0)
    if problem == "nan":
        data[12000, 0] = np.nan
    elif problem == "silent":
        data[:] = 0
    else:
        data = data[:100]
    source = tmp_path / "in.wav"
    sf.write(source, data, 8000, subtype="FLOAT")
    with pytest.raises(AudioError):
        process_file(lambda b: b, source, tmp_path / "out.wav", 8000, 1, segment=0.5, block_seconds=0.5, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["in.wav"]


def test_memory_does_not_grow_with_length(tmp_path, monkeypatch) -> None:
    # The model sees one segment per call and the engine never buffers more than a read block plus a
    # segment, whatever the file's length: memory is bound by the settings, not the recording.
    import musicfx.inference as inference

    buffered = []
    push = inference.OverlapAdd.push

    def recording_push(self, block):
        out = push(self, block)
        buffered.append(self._buffer.shape[-1] + block.shape[-1] + out.shape[-1])
        return out

    monkeypatch.setattr(inference.OverlapAdd, "push", recording_push)
    sizes = []

    def model(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(batch.numel())
        return batch

    rate = 8000
    peaks = {}
    for seconds in (5, 120):
        buffered.clear()
        path = tmp_path / f"{seconds}.wav"
        sf.write(path, _sine(rate, seconds, 1), rate)
        process_file(model, path, tmp_path / f"out{seconds}.wav", rate, 1, segment=1.0, block_seconds=2.0, progress=False)
        peaks[seconds] = max(buffered)
    assert max(sizes) <= rate
    assert peaks[120] <= 5 * rate  # vs 120 * rate samples in the file


@pytest.mark.parametrize("model_channels,file_channels", [(1, 1), (1, 2), (1, 5), (2, 1), (2, 2), (2, 3), (2, 4)])
def test_any_file_channels_with_any_model_channels(model_channels: int, file_channels: int) -> None:
    seen = set()

    def model(batch: torch.Tensor) -> torch.Tensor:
        seen.add(batch.shape[1])
        return batch * 2

    x = torch.randn(file_channels, 2500)
    y = apply_model(model, x, 1000, 1000, model_channels, segment=1.0)
    assert seen == {model_channels}
    torch.testing.assert_close(y, x * 2, atol=1e-5, rtol=0)


def _position_model(batch: torch.Tensor) -> torch.Tensor:
    """Not shift-invariant: scales each segment by a ramp over its own samples."""
    return batch * torch.linspace(0.5, 1.5, batch.shape[-1])


def test_shifts_zero_is_the_plain_path_and_shifts_average_over_positions() -> None:
    x = torch.randn(2, 5000, generator=torch.Generator().manual_seed(0))
    plain = apply_model(_position_model, x, 1000, 1000, 2, segment=1.0)
    torch.testing.assert_close(apply_model(_position_model, x, 1000, 1000, 2, segment=1.0, shifts=0), plain,
                               atol=0, rtol=0)
    shifted = apply_model(_position_model, x, 1000, 1000, 2, segment=1.0, shifts=4)
    assert shifted.shape == x.shape and torch.isfinite(shifted).all()
    assert float((shifted - plain).abs().max()) > 0.05  # other positions in the segment, other gains
    # Reproducible: the same seed gives the same shifts, another seed others.
    torch.testing.assert_close(apply_model(_position_model, x, 1000, 1000, 2, segment=1.0, shifts=4), shifted,
                               atol=0, rtol=0)
    assert not torch.equal(apply_model(_position_model, x, 1000, 1000, 2, segment=1.0, shifts=4, seed=1), shifted)


@pytest.mark.parametrize("shifts", [1, 3])
@pytest.mark.parametrize("block", [37, 1000, 7000])
def test_shifted_engine_moves_every_copy_back_exactly(shifts: int, block: int) -> None:
    # A model that commutes with time shifts gives the plain result: every delayed copy is realigned.
    from musicfx.inference import ShiftedOverlapAdd

    x = torch.randn(2, 5003)
    engine = ShiftedOverlapAdd(lambda: OverlapAdd(lambda b: 3 * b, 400, 100, 2), shifts, max_shift=250, seed=shifts)
    assert any(engine.offsets)
    out = [engine.push(x[:, s : s + block]) for s in range(0, x.shape[-1], block)] + [engine.flush()]
    torch.testing.assert_close(torch.cat(out, dim=-1), 3 * x, atol=1e-5, rtol=0)


def test_shifts_through_files_match_the_in_memory_path(tmp_path) -> None:
    data = _sine(8000, 2.5)
    source = tmp_path / "in.wav"
    sf.write(source, data, 8000, subtype="FLOAT")
    out = process_file(lambda b: 0.5 * b, source, tmp_path / "out.wav", 8000, 2, segment=0.5, shifts=2,
                       progress=False)
    back, _ = sf.read(out, dtype="float32")
    np.testing.assert_allclose(back, 0.5 * data, atol=1e-5)
    # The file path and the in-memory path are one engine: the same shifts give the same samples.
    plain = process_file(_position_model, source, tmp_path / "p.wav", 8000, 2, segment=0.5, shifts=2, progress=False)
    memory = apply_model(_position_model, torch.from_numpy(data.T.copy()), 8000, 8000, 2, segment=0.5, shifts=2)
    np.testing.assert_allclose(sf.read(plain, dtype="float32")[0], memory.numpy().T, atol=1e-5)
