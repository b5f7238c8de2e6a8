"""`.stem.mp4` references stream too: ffmpeg decodes one stream per target in blocks, the scores equal those
of the same audio as a wav folder, and a truncated file or a missing ffmpeg is one error line."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx.audio.io as audio_io
import musicfx.cli
import musicfx.evaluate as evaluate_module
from musicfx.audio.io import read_stem_blocks, read_stems
from musicfx.errors import AudioError
from musicfx.evaluate import evaluate_folders

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg to encode and decode .stem.mp4")

RATE = 44100
TARGETS = ("drums", "bass", "other", "vocals")  # MUSDB18's stream order after the mixture


@pytest.fixture(scope="module")
def stem_song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``song.stem.mp4``: 5.5 s, stereo, MUSDB18's five streams; the bass is silent across a 2 s block edge."""
    from musicfx.inference import write_stem_file

    rng = np.random.default_rng(0)
    t = np.arange(int(5.5 * RATE)) / RATE
    stems = []
    for k in range(len(TARGETS)):
        tone = 0.15 * np.sin(2 * np.pi * 110 * (k + 1) * t)[None] + 0.03 * rng.standard_normal((2, t.size))
        stems.append(tone)
    stems[1][:, int(1.5 * RATE) : int(2.5 * RATE)] = 0.0
    stems = torch.from_numpy(np.stack(stems).astype(np.float32))
    folder = tmp_path_factory.mktemp("stem-song")
    return write_stem_file(folder / "song.stem.mp4", stems.sum(0), stems, RATE, list(TARGETS))


def test_stem_blocks_are_the_whole_decode_cut_in_blocks(stem_song: Path) -> None:
    whole, rate, names = read_stems(stem_song)
    assert rate == RATE and names == ("mixture",) + TARGETS
    blocks = list(read_stem_blocks(stem_song, 10000, streams=[2, 4]))
    assert all(block.shape[:2] == (2, 2) for block in blocks)
    assert [block.shape[-1] for block in blocks[:-1]] == [10000] * (len(blocks) - 1)
    assert torch.equal(torch.cat(blocks, dim=-1), whole[[2, 4]])
    # A reader stopped early ends its decoders (no error, nothing left running).
    partial = read_stem_blocks(stem_song, 1000)
    assert next(partial).shape == (5, 2, 1000)
    partial.close()
    with pytest.raises(AudioError, match="no stream 5"):
        list(read_stem_blocks(stem_song, 1000, streams=[5]))


def _wav_folder(stems: torch.Tensor, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for index, target in enumerate(TARGETS):
        sf.write(folder / f"{target}.wav", stems[index + 1].T.numpy(), RATE, subtype="FLOAT")
    return folder


def test_stem_mp4_references_score_like_the_same_audio_as_wavs(stem_song: Path, tmp_path: Path, monkeypatch) -> None:
    decoded, _, _ = read_stems(stem_song)
    _wav_folder(decoded, tmp_path / "wav-references" / "song")
    rng = np.random.default_rng(1)
    estimates = tmp_path / "estimates" / "song"
    estimates.mkdir(parents=True)
    extra = RATE // 3  # estimates a third of a second longer: scored on the references' length
    written = {}
    for index, target in enumerate(TARGETS):
        reference = decoded[index + 1].T.numpy()
        estimate = np.concatenate([reference, np.zeros((extra, 2), np.float32)])
        written[target] = estimate + (0.02 * (index + 1) * rng.standard_normal(estimate.shape)).astype(np.float32)
    # The accompaniment is derived from the references' drums + bass + other on both sides.
    written["accompaniment"] = written["drums"] + written["bass"] + written["other"]
    for target, estimate in written.items():
        sf.write(estimates / f"{target}.wav", estimate, RATE, subtype="FLOAT")
    monkeypatch.setattr(evaluate_module, "_BLOCK_SECONDS", 2)  # 3 blocks, the last one partial
    wav = evaluate_folders(tmp_path / "wav-references", tmp_path / "estimates", progress=False)
    # The .stem.mp4 streams: decoding it whole would fail here.
    monkeypatch.setattr(audio_io, "read_stems", lambda *a, **k: pytest.fail("decoded whole"))
    stem = evaluate_folders(stem_song.parent, tmp_path / "estimates", progress=False)
    assert stem.targets == wav.targets == TARGETS + ("accompaniment",)
    for target in stem.targets:
        for metric in ("SDR", "uSDR"):
            ours, theirs = stem.tracks["song"][target][metric], wav.tracks["song"][target][metric]
            assert np.isfinite(ours) and abs(ours - theirs) < 1e-9, (target, metric, ours, theirs)


def _cli_error(capsys, monkeypatch, references: Path, estimates: Path) -> str:
    monkeypatch.setattr(musicfx.cli, "COMMAND_MODULES", ("musicfx.commands.evaluate",))
    code = musicfx.cli.main(["evaluate", "--references", str(references), "--estimates", str(estimates), "-q"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("musicfx: error:"), lines
    return lines[0]


@pytest.mark.parametrize("problem", ["truncated", "no_index", "garbage", "no_ffmpeg"])
def test_bad_stem_mp4_references_are_one_error_line(problem: str, stem_song: Path, tmp_path: Path, capsys,
                                                    monkeypatch) -> None:
    import subprocess

    references = tmp_path / "references"
    references.mkdir()
    stem = references / "song.stem.mp4"
    estimates = _wav_folder(read_stems(stem_song)[0], tmp_path / "estimates" / "song").parent
    if problem == "truncated":  # index first (as MUSDB18's files): it probes, then decodes half its duration
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(stem_song), "-map", "0", "-c", "copy",
                        "-movflags", "+faststart", str(tmp_path / "fast.mp4")], check=True)
        data = (tmp_path / "fast.mp4").read_bytes()
        stem.write_bytes(data[: len(data) // 2])
    elif problem == "no_index":  # ffmpeg writes the index last: cut off, nothing can be read
        data = stem_song.read_bytes()
        stem.write_bytes(data[: len(data) // 2])
    elif problem == "garbage":
        stem.write_bytes(b"not an mp4" * 100)
    else:
        shutil.copy(stem_song, stem)
        monkeypatch.setattr(audio_io.shutil, "which", lambda name: None)
    line = _cli_error(capsys, monkeypatch, references, estimates)
    assert "song.stem.mp4" in line
    expected = {"truncated": "truncated", "no_index": "Invalid data", "garbage": "Invalid data",
                "no_ffmpeg": "needs ffmpeg"}[problem]
    assert expected in line, line


def test_engine_streams_a_stem_mp4_mixture(stem_song: Path, tmp_path: Path, monkeypatch) -> None:
    # `musicfx separate song.stem.mp4` and `evaluate --musdb --ckpt` read stream 0 (the mixture) in blocks:
    # the stems equal those of the same mixture as a wav, and are as long as it decodes.
    from musicfx.inference import separate_file

    def two_way(batch: torch.Tensor) -> torch.Tensor:  # (batch, C, T) -> (batch, 2, C, T)
        return torch.stack([0.25 * batch, -batch], dim=1)

    mixture = read_stems(stem_song, streams=[0])[0][0]
    sf.write(tmp_path / "mixture.wav", mixture.T.numpy(), RATE, subtype="FLOAT")
    options = dict(segment=1.0, block_seconds=2.0, progress=False)
    wav_out = separate_file(two_way, tmp_path / "mixture.wav", [tmp_path / "w0.wav", tmp_path / "w1.wav"], RATE, 2,
                            **options)
    monkeypatch.setattr(audio_io, "read_stems", lambda *a, **k: pytest.fail("decoded whole"))
    stem_out = separate_file(two_way, stem_song, [tmp_path / "s0.wav", tmp_path / "s1.wav"], RATE, 2, **options)
    for ours, theirs in zip(stem_out, wav_out):
        ours_audio, theirs_audio = sf.read(ours, dtype="float32")[0], sf.read(theirs, dtype="float32")[0]
        assert ours_audio.shape == theirs_audio.shape == (mixture.shape[-1], 2)
        np.testing.assert_array_equal(ours_audio, theirs_audio)


def test_memory_benchmark_builds_a_musdb_style_song(shared_data: Path, tmp_path: Path, import_benchmark) -> None:
    bench = import_benchmark("bench_evaluate_memory")

    root = bench.write_stem_song(tmp_path, 0.05, shared_data, block_seconds=1)
    stems, rate, names = read_stems(root / "references" / "song.stem.mp4")
    assert rate == RATE and names == ("mixture",) + TARGETS and stems.shape[-1] >= 3 * RATE
    report = evaluate_folders(root / "references", root / "estimates", progress=False)
    for target in TARGETS:  # each estimate is its reference plus 5 % of the others and a little noise
        estimate = sf.read(root / "estimates" / "song" / f"{target}.wav", dtype="float32")[0]
        assert estimate.shape == (stems.shape[-1], 2)
        assert 0.0 < report.tracks["song"][target]["uSDR"] < 40.0, (target, report.tracks["song"][target])


def test_engine_refuses_a_truncated_stem_mp4(stem_song: Path, tmp_path: Path) -> None:
    import subprocess

    from musicfx.inference import separate_file

    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(stem_song), "-map", "0", "-c", "copy",
                    "-movflags", "+faststart", str(tmp_path / "fast.mp4")], check=True)
    data = (tmp_path / "fast.mp4").read_bytes()
    (tmp_path / "cut.stem.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated"):
        separate_file(lambda x: torch.stack([x, -x], dim=1), tmp_path / "cut.stem.mp4",
                      [tmp_path / "a.wav", tmp_path / "b.wav"], RATE, 2, segment=1.0, progress=False)
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "b.wav").exists()
