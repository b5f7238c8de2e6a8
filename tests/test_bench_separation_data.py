"""The separation data-pipeline benchmark: its stems, its stand-ins for the peers' readers, and smoke runs.

The comparison with Open-Unmix and Demucs runs only where ``benchmarks/peers.sh`` has installed them (in
``.venv-peers``, or in this Python); CI does not, and that test skips.
"""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# The scripts import their shared helpers as `common`, the way Python finds them when run as scripts.
sys.path.insert(0, str(BENCHMARKS))

import bench_separation_data as bench  # noqa: E402

SR = bench.SAMPLE_RATE


@pytest.fixture(scope="module")
def tree(shared_data, tmp_path_factory) -> Path:
    return bench.build_tree(shared_data, tmp_path_factory.mktemp("songs"), songs=3, seconds=2.0)


def _read(path: Path) -> torch.Tensor:
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    assert rate == SR
    return torch.from_numpy(data).t()


def test_tree_holds_the_sisec_stems_remixed(shared_data, tree):
    songs = sorted(p.name for p in (tree / "train").iterdir())
    assert songs == ["song_00", "song_01", "song_02"]
    assert sorted(p.name for p in (tree / "train" / "song_01").iterdir()) == sorted(f"{s}.wav" for s in bench.STEMS)
    assert (tree / "valid" / "song_valid" / "vocals.wav").is_file() and (tree / "test" / "song_test").is_dir()
    assert soundfile.info(str(tree / "train" / "song_01" / "other.wav")).subtype == "PCM_16"

    # "other" of song 1 is guitar + synth, rotated by a third of the song, times one gain in [0.5, 1).
    sisec = shared_data / bench.SISEC
    frames = 2 * SR
    reference = (_read(sisec / "guitar.wav") + _read(sisec / "synth.wav"))[:, :frames]
    reference = torch.roll(reference, -frames // 3, dims=-1)
    other = _read(tree / "train" / "song_01" / "other.wav")
    assert other.shape == (2, frames)
    gain = float((other * reference).sum() / (reference * reference).sum())
    assert 0.5 <= gain < 1.0
    assert float((other - gain * reference).norm() / other.norm()) < 5e-3  # 16-bit rounding only
    # Songs are different mixes: other gains and starts.
    assert not torch.allclose(_read(tree / "train" / "song_00" / "drums.wav"),
                              _read(tree / "train" / "song_01" / "drums.wav"), atol=1e-3)


def test_torchaudio_stand_in_reads_frames_like_soundfile(tmp_path):
    audio = torch.linspace(-0.5, 0.5, 2 * 1000).reshape(1000, 2)
    path = tmp_path / "ramp.wav"
    soundfile.write(str(path), audio.numpy(), 8000, subtype="FLOAT")
    shim = bench._soundfile_torchaudio()
    info = shim.info(path)
    assert (info.sample_rate, info.num_frames, info.num_channels) == (8000, 1000, 2)
    chunk, rate = shim.load(str(path), frame_offset=250, num_frames=100)
    assert rate == 8000 and chunk.shape == (2, 100) and chunk.dtype == torch.float32
    assert torch.equal(chunk, audio[250:350].t())
    whole, _ = shim.load(str(path))
    assert torch.equal(whole, audio.t())
    assert shim.get_audio_backend() == "soundfile"


def test_wavset_chunks_read_and_normalize_the_drawn_chunk(tree):
    frames = SR // 2
    dataset = bench.WavsetChunks(tree / "train", bench.STEMS, frames, num_examples=6, seed=3)
    assert len(dataset) == 6 and len(dataset.songs) == 3
    positions = [dataset.position(i) for i in range(6)]
    assert positions == [dataset.position(i) for i in range(6)]  # fixed by (seed, index)
    assert len(set(positions)) > 1
    song, offset = positions[4]
    assert 0 <= offset <= 2 * SR - frames
    files = [_read(dataset.songs[song] / f"{stem}.wav") for stem in bench.STEMS]
    mono_mix = torch.stack(files).sum(dim=0).mean(dim=0)
    expected = (torch.stack([f[:, offset:offset + frames] for f in files]) - mono_mix.mean()) / mono_mix.std()
    example = dataset[4]
    assert example.shape == (4, 2, frames)
    torch.testing.assert_close(example, expected, rtol=1e-4, atol=1e-4)


def _check_results(results: dict, keys: set) -> None:
    assert set(results["pipelines"]) == set(bench.MODES)
    for mode in bench.MODES:
        assert set(results["pipelines"][mode]) == keys
        for by_workers in results["pipelines"][mode].values():
            measured = by_workers["0"]
            assert len(measured["runs"]) == 1
            assert math.isfinite(measured["median"]) and measured["median"] > 0
    assert results["mix_shape"] == [4, 2, SR]  # batch 4 of 1 s stereo, whichever pipeline made it
    assert results["augment"]["shape"] == [4, 4, 2, SR + SR // 2]  # plus the 0.5 s shift
    assert results["augment"]["musicfx"] > 0


def test_musicfx_only_smoke(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "peer_versions", lambda: {"demucs": None, "openunmix": None})
    out = tmp_path / "results.json"
    code = bench.main(["--quick", "--shared", str(shared_data), "--json", str(out), "--workdir", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert bench.PEERS_HINT in printed and "| musicfx ChunkDataset + RemixAugment" in printed
    results = json.loads(out.read_text())
    _check_results(results, {"musicfx", "musicfx-random-mix"})
    assert results["ratios"] == {"pipeline": {}, "loader": {}} and results["augment"]["ratio"] is None
    assert (tmp_path / "cache").is_dir()  # decoded once into the run's own cache, not the user's


def _peer_python() -> str:
    venv = bench.common.REPO / ".venv-peers" / "bin" / "python"
    if venv.is_file():
        return str(venv)
    if importlib.util.find_spec("demucs") and importlib.util.find_spec("openunmix"):
        return sys.executable
    pytest.skip("Open-Unmix and Demucs are not installed (bash benchmarks/peers.sh)")


def test_comparison_smoke(shared_data, tmp_path):
    # A separate process: the torchaudio stand-in must not leak into this test session's modules.
    out = tmp_path / "results.json"
    command = [_peer_python(), str(BENCHMARKS / "bench_separation_data.py"), "--quick", "--shared",
               str(shared_data), "--json", str(out), "--markdown", str(tmp_path / "section.md")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=bench.common.REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    _check_results(results, set(bench.LABELS))
    assert all(results["peers"].values())
    for mode in bench.MODES:
        pipelines = results["pipelines"][mode]
        for ours, peer in bench.COMPARISONS:  # one repeat: the ratio is exactly ours / peer of that run
            expected = pipelines[ours]["0"]["median"] / pipelines[peer]["0"]["median"]
            assert results["ratios"][mode][f"{ours}/{peer}"]["0"] == pytest.approx(expected)
    # Open-Unmix's loader is its whole pipeline: one measurement fills both columns.
    assert results["pipelines"]["loader"]["openunmix"] == results["pipelines"]["pipeline"]["openunmix"]
    augment = results["augment"]
    assert augment["ratio"] > 0 and augment["demucs"] > 0
    section = (tmp_path / "section.md").read_text()
    assert "Machine:" in section and "musicfx / demucs" in section and results["command"] in section
