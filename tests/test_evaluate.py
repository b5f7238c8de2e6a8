"""Oracle masks on real stems, folder / MUSDB evaluation against known SNRs and museval's own scores,
museval's JSON layout, and `musicfx evaluate`'s one-line errors."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx.cli
from musicfx.baselines.oracle import ideal_binary_mask, ideal_ratio_mask
from musicfx.errors import DataError
from musicfx.evaluate import evaluate_folders, evaluate_model
from musicfx.metrics import museval_sdr, nanmedian

SISEC = ("vocals", "drums", "bass", "guitar", "synth")
MUSDB_SAMPLE = "Music Delta - 80s Rock"


@pytest.fixture(scope="module")
def nz_tour(shared_data: Path) -> Dict[str, torch.Tensor]:
    """The first 6 s of the SiSEC "Ultimate NZ Tour" stems, (2, time) each at 44.1 kHz."""
    from musicfx.audio.io import read_audio

    folder = shared_data / "sisec2011-nz-tour"
    return {name: read_audio(folder / f"{name}.wav", frames=6 * 44100)[0] for name in SISEC}


def test_oracle_masks_separate_real_stems(nz_tour: Dict[str, torch.Tensor]) -> None:
    stems = torch.stack([nz_tour[name] for name in SISEC])
    mix = stems.sum(0)
    scores = {}
    for label, oracle, power in (("irm1", ideal_ratio_mask, 1.0), ("ibm", ideal_binary_mask, 1.0)):
        estimates = oracle(mix, stems, power=power)
        assert estimates.shape == stems.shape
        torch.testing.assert_close(estimates.sum(0), mix, atol=1e-5, rtol=0)  # masks share every bin out
        scores[label] = dict(zip(SISEC, nanmedian(museval_sdr(estimates, stems, 44100)).tolist()))
    # Measured: IRM1 vocals 9.57, drums 8.77, bass 6.13, guitar 7.37, synth 4.24 dB; IBM vocals 10.20,
    # drums 9.87, bass 6.37.
    assert scores["irm1"]["vocals"] > 9.0 and scores["irm1"]["drums"] > 8.2 and scores["irm1"]["bass"] > 5.5
    assert min(scores["irm1"].values()) > 3.5
    assert scores["ibm"]["vocals"] > 9.6 and scores["ibm"]["drums"] > 9.3 and scores["ibm"]["bass"] > 5.8


def test_oracle_masks_exact_cases() -> None:
    # One active stem takes the whole mixture; batch dims pass through.
    stems = torch.zeros(3, 2, 2, 4000)
    stems[:, 1] = torch.randn(3, 2, 4000)
    for oracle in (ideal_ratio_mask, ideal_binary_mask):
        estimates = oracle(stems.sum(1), stems, n_fft=512, hop_length=128)
        assert estimates.shape == (3, 2, 2, 4000)
        torch.testing.assert_close(estimates, stems, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="stems"):
        ideal_ratio_mask(torch.randn(2, 100), torch.randn(3, 1, 100))


def _noise_like(reference: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise scaled so that ``reference`` over it is exactly ``snr_db`` over the whole signal."""
    noise = rng.standard_normal(reference.shape)
    noise *= np.sqrt(np.sum(reference**2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return noise


def _write_track(folder: Path, signals: Dict[str, np.ndarray], rate: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in signals.items():
        sf.write(folder / f"{name}.wav", data, rate, subtype="DOUBLE")


def _known_snr_tree(tmp_path: Path, snrs: Dict[str, Dict[str, float]], rate: int = 8000, seconds: float = 5.0):
    """references/<track>/{drums,bass,vocals,mixture}.wav; estimates/test/<track>/... at the given SNRs."""
    rng = np.random.default_rng(1)
    frames = int(rate * seconds)
    for track, per_target in snrs.items():
        refs = {target: 0.1 * rng.standard_normal((frames, 2)) for target in per_target}
        refs_with_mix = dict(refs, mixture=sum(refs.values()))
        _write_track(tmp_path / "references" / track, refs_with_mix, rate)
        ests = {t: refs[t] + _noise_like(refs[t], snr, rng) for t, snr in per_target.items()}
        _write_track(tmp_path / "estimates" / "test" / track, ests, rate)
    return tmp_path / "references", tmp_path / "estimates"


def test_evaluate_folders_recovers_known_snrs(tmp_path: Path) -> None:
    snrs = {
        "song a": {"vocals": 10.0, "drums": 4.0, "bass": 15.0},
        "song b": {"vocals": 6.0, "drums": 8.0, "bass": 1.0},
    }
    references, estimates = _known_snr_tree(tmp_path, snrs)
    report = evaluate_folders(references, estimates, progress=False)
    assert report.targets == ("drums", "bass", "vocals")  # MUSDB order; mixture is no target
    for track, per_target in snrs.items():
        for target, snr in per_target.items():
            scores = report.tracks[track][target]
            assert abs(scores["SDR"] - snr) < 0.3  # stationary noise: every 1 s window near the song's SNR
            assert abs(scores["uSDR"] - snr) < 1e-4
    for target in ("drums", "bass", "vocals"):
        a, b = snrs["song a"][target], snrs["song b"][target]
        assert abs(report.summary[target]["uSDR"] - (a + b) / 2) < 1e-4
        assert abs(report.summary[target]["SDR_mean"] - (a + b) / 2) < 0.3
        assert abs(report.summary[target]["SDR_median"] - (a + b) / 2) < 0.3  # median of two = their mean
    table = report.table()
    assert table.splitlines()[0] == "| target | SDR median | SDR mean | uSDR |"
    assert len(table.splitlines()) == 2 + 3 and "| vocals |" in table
    out = report.to_json(tmp_path / "report" / "scores.json")
    saved = json.loads(out.read_text())
    assert saved["summary"]["bass"]["uSDR"] == pytest.approx(8.0, abs=1e-4)
    assert saved["tracks"]["song a"]["vocals"]["uSDR"] == pytest.approx(10.0, abs=1e-4)
    assert [p.name for p in out.parent.iterdir()] == ["scores.json"]


def test_evaluate_folders_targets_tracks_and_lengths(tmp_path: Path) -> None:
    references, estimates = _known_snr_tree(
        tmp_path, {"a": {"vocals": 10.0, "drums": 5.0}, "b": {"vocals": 12.0, "drums": 5.0}, "c": {"vocals": 3.0}}
    )
    # Track c has no drums, so only vocals are common to all tracks: drums is skipped with a warning.
    with pytest.warns(UserWarning, match="drums"):
        report = evaluate_folders(references, estimates, progress=False)
    assert report.targets == ("vocals",)
    with pytest.raises(DataError, match="drums"):
        evaluate_folders(references, estimates, targets=["vocals", "drums"], progress=False)
    # References without estimates are skipped with a warning.
    shutil.rmtree(estimates / "test" / "c")
    with pytest.warns(UserWarning, match="1 reference tracks have no estimates"):
        report = evaluate_folders(references, estimates, targets=["drums"], progress=False)
    assert sorted(report.tracks) == ["a", "b"]
    shutil.rmtree(references / "c")
    # A few samples too long: cut silently; 2 s too long: cut with a warning; same scores either way.
    vocals = estimates / "test" / "a" / "vocals.wav"
    data, rate = sf.read(vocals)
    sf.write(vocals, np.concatenate([data, data[:7]]), rate, subtype="DOUBLE")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = evaluate_folders(references, estimates, targets=["vocals"], progress=False)
    sf.write(vocals, np.concatenate([data, data[: 2 * rate]]), rate, subtype="DOUBLE")
    with pytest.warns(UserWarning, match="differ in length by 2.0 s"):
        long = evaluate_folders(references, estimates, targets=["vocals"], progress=False)
    assert short.tracks["a"]["vocals"] == pytest.approx(long.tracks["a"]["vocals"])
    # Estimates of a track that has no reference are an error.
    shutil.copytree(estimates / "test" / "a", estimates / "test" / "unknown")
    with pytest.raises(DataError, match="unknown"):
        evaluate_folders(references, estimates, progress=False)


def test_full_writes_museval_json(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("museval")
    from museval.aggregate import EvalStore, json2df

    rate = 8000
    rng = np.random.default_rng(3)
    # Mono: museval's cost grows with the square of the channel count.
    refs = {name: 0.1 * rng.standard_normal((3 * rate, 1)) for name in ("drums", "bass", "other", "vocals")}
    refs["vocals"][rate : 2 * rate] = 0.0  # a silent second: NaN in every target evaluated with vocals
    ests = {name: refs[name] + _noise_like(refs[name], 7.0, rng) for name in refs}
    acc = refs["drums"] + refs["bass"] + refs["other"]
    ests["accompaniment"] = acc + _noise_like(acc, 12.0, rng)
    _write_track(tmp_path / "refs" / "test" / "song", refs, rate)
    _write_track(tmp_path / "est" / "song", {k: ests[k] for k in ("drums", "vocals", "accompaniment")}, rate)
    report = evaluate_folders(
        tmp_path / "refs", tmp_path / "est", full=True, json_dir=tmp_path / "json", progress=False
    )
    assert report.targets == ("drums", "vocals", "accompaniment")
    assert "SIR median" in report.table()
    for target in report.targets:
        assert {"SDR", "uSDR", "SIR", "ISR", "SAR"} <= set(report.tracks["song"][target])

    written = json.loads((tmp_path / "json" / "test" / "song.json").read_text())
    museval_own = json.loads((shared_data / "musdb18-sample" / f"{MUSDB_SAMPLE}.museval.json").read_text())
    assert written.keys() == museval_own.keys()
    ours, theirs = written["targets"][0], museval_own["targets"][0]
    assert ours.keys() == theirs.keys()
    assert ours["frames"][0].keys() == theirs["frames"][0].keys()
    assert ours["frames"][0]["metrics"].keys() == theirs["frames"][0]["metrics"].keys()
    assert [t["name"] for t in written["targets"]] == ["drums", "vocals", "accompaniment"]  # museval's order
    assert [f["time"] for f in written["targets"][0]["frames"]] == [0.0, 1.0, 2.0]
    # museval's groups: drums with vocals (NaN where vocals are silent), vocals with accompaniment.
    frames = {t["name"]: [f["metrics"]["SDR"] for f in t["frames"]] for t in written["targets"]}
    assert np.isnan(frames["drums"][1]) and np.isnan(frames["vocals"][1]) and np.isnan(frames["accompaniment"][1])
    fast = museval_sdr(torch.tensor(np.stack([ests["drums"].T, ests["vocals"].T])),
                       torch.tensor(np.stack([refs["drums"].T, refs["vocals"].T])), rate)
    np.testing.assert_allclose(frames["drums"], fast[0].numpy(), atol=1e-3)
    # The sigsep tools read it back.
    frame = json2df(written, "song")
    assert set(frame["metric"]) == {"SDR", "SIR", "ISR", "SAR"} and len(frame) == 3 * 3 * 4
    store = EvalStore()
    store.add_eval_dir(tmp_path / "json")
    assert len(store.df) == 3 * 3 * 4
    with pytest.raises(ValueError, match="full=True"):
        evaluate_folders(tmp_path / "refs", tmp_path / "est", json_dir=tmp_path / "json2", progress=False)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to decode .stem.mp4")
def test_stem_mp4_references_match_museval_scores(shared_data: Path, tmp_path: Path) -> None:
    # museval's regression test: uniform random estimates (numpy seed 0) of vocals and accompaniment.
    from musicfx.audio.io import audio_info

    folder = shared_data / "musdb18-sample"
    info = audio_info(folder / f"{MUSDB_SAMPLE}.stem.mp4")
    random = np.random.RandomState(0)
    # museval draws (frames, 2) arrays; longer ones share their first rows, and evaluation cuts them to
    # the references' length, so the decoded length need not be known exactly.
    shape, rate = (info.frames + 4096, 2), info.sample_rate
    estimates = {"vocals": random.random_sample(shape), "accompaniment": random.random_sample(shape)}
    _write_track(tmp_path / MUSDB_SAMPLE, estimates, rate)
    report = evaluate_folders(folder, tmp_path, progress=False)
    museval_own = json.loads((folder / f"{MUSDB_SAMPLE}.museval.json").read_text())
    assert report.targets == ("vocals", "accompaniment")
    for target in museval_own["targets"]:
        expected = float(np.nanmedian([f["metrics"]["SDR"] for f in target["frames"]]))
        assert report.tracks[MUSDB_SAMPLE][target["name"]]["SDR"] == pytest.approx(expected, abs=1e-3)


@pytest.fixture()
def musdb_hq(nz_tour: Dict[str, torch.Tensor], tmp_path: Path) -> Path:
    """A one-track MUSDB18-HQ tree (test split) from 4 s of the NZ tour stems; other = guitar + synth."""
    cut = {name: audio[:, : 4 * 44100].T.numpy().astype(np.float64) for name, audio in nz_tour.items()}
    stems = {"drums": cut["drums"], "bass": cut["bass"], "other": cut["guitar"] + cut["synth"], "vocals": cut["vocals"]}
    _write_track(tmp_path / "musdb" / "test" / "nz tour", dict(stems, mixture=sum(stems.values())), 44100)
    return tmp_path / "musdb"


def test_evaluate_model_oracle_and_estimates_round_trip(musdb_hq: Path, tmp_path: Path) -> None:
    report = evaluate_model(None, musdb_hq, oracle="irm", output_dir=tmp_path / "est", progress=False)
    assert report.targets == ("drums", "bass", "other", "vocals")
    folder = musdb_hq / "test" / "nz tour"
    stems = torch.stack(
        [torch.from_numpy(sf.read(folder / f"{n}.wav", dtype="float32")[0].T.copy()) for n in report.targets]
    )
    direct = nanmedian(museval_sdr(ideal_ratio_mask(stems.sum(0), stems), stems, 44100))
    for i, target in enumerate(report.targets):
        assert report.tracks["nz tour"][target]["SDR"] == pytest.approx(float(direct[i]), abs=1e-3)
    assert report.tracks["nz tour"]["vocals"]["SDR"] > 9.0
    # The estimates it wrote are in museval's layout and score the same through evaluate_folders.
    assert sorted(p.name for p in (tmp_path / "est" / "test" / "nz tour").iterdir()) == [
        "bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    again = evaluate_folders(musdb_hq, tmp_path / "est", progress=False)
    for target in report.targets:
        assert again.summary[target]["SDR_median"] == pytest.approx(report.summary[target]["SDR_median"], abs=1e-3)


class _FractionSeparator(torch.nn.Module):
    """mix -> (0.3 mix, 0.7 mix) as (vocals, accompaniment)."""

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        return torch.stack([0.3 * mix, 0.7 * mix], dim=1)


class _FakeTask:
    sources = ("vocals", "accompaniment")
    sample_rate = 44100
    channels = 2
    model = _FractionSeparator()


def test_cli_evaluate_musdb_with_a_checkpoint(musdb_hq: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import musicfx.api

    monkeypatch.setattr(musicfx.api, "load", lambda checkpoint, device="cpu", trust=False: _FakeTask())
    code, out, err = _cli(capsys, monkeypatch, "--musdb", str(musdb_hq), "--ckpt", "fake.ckpt", "--segment", "1",
                          "--device", "cpu", "--estimates-out", str(tmp_path / "est"),
                          "--json", str(tmp_path / "s.json"), "-q")
    assert code == 0, err
    assert "| vocals |" in out and "| accompaniment |" in out
    written = sorted(p.name for p in (tmp_path / "est" / "test" / "nz tour").iterdir())
    assert written == ["accompaniment.wav", "vocals.wav"]
    folder = musdb_hq / "test" / "nz tour"
    read = {n: torch.from_numpy(sf.read(folder / f"{n}.wav", dtype="float32")[0].T.copy())
            for n in ("mixture", "drums", "bass", "other", "vocals")}
    refs = torch.stack([read["vocals"], read["drums"] + read["bass"] + read["other"]])
    expected = nanmedian(museval_sdr(torch.stack([0.3 * read["mixture"], 0.7 * read["mixture"]]), refs, 44100))
    scores = json.loads((tmp_path / "s.json").read_text())["tracks"]["nz tour"]
    assert scores["vocals"]["SDR"] == pytest.approx(float(expected[0]), abs=1e-3)
    assert scores["accompaniment"]["SDR"] == pytest.approx(float(expected[1]), abs=1e-3)


def _cli(capsys, monkeypatch, *args: str):
    monkeypatch.setattr(musicfx.cli, "COMMAND_MODULES", ("musicfx.commands.evaluate",))
    code = musicfx.cli.main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("musicfx: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_evaluate_prints_table_and_writes_json(tmp_path: Path, capsys, monkeypatch) -> None:
    references, estimates = _known_snr_tree(tmp_path, {"a": {"vocals": 9.0, "bass": 3.0}}, seconds=3.0)
    code, out, err = _cli(capsys, monkeypatch, "--references", str(references), "--estimates", str(estimates),
                          "--json", str(tmp_path / "scores.json"), "-q")
    assert code == 0, err
    assert "| target | SDR median | SDR mean | uSDR |" in out and "| vocals |" in out and "| bass |" in out
    summary = json.loads((tmp_path / "scores.json").read_text())["summary"]
    assert summary["vocals"]["uSDR"] == pytest.approx(9.0, abs=1e-4)


@pytest.mark.parametrize("problem", ["missing_references", "missing_estimates_flag", "no_mode", "both_ckpt_and_oracle",
                                     "no_common_targets", "unreadable", "unknown_track", "musdb_without_split"])
def test_cli_evaluate_errors(problem: str, tmp_path: Path, capsys, monkeypatch) -> None:
    references, estimates = _known_snr_tree(tmp_path, {"a": {"vocals": 9.0}}, seconds=2.0)
    args = ["--references", str(references), "--estimates", str(estimates), "-q"]
    needles = []
    if problem == "missing_references":
        args[1] = str(tmp_path / "nowhere")
        needles = ["nowhere", "no such folder"]
    elif problem == "missing_estimates_flag":
        args = ["--references", str(references)]
        needles = ["--estimates"]
    elif problem == "no_mode":
        args = []
        needles = ["--references", "--musdb"]
    elif problem == "both_ckpt_and_oracle":
        args = ["--musdb", str(references), "--ckpt", "x.ckpt", "--oracle", "irm"]
        needles = ["--ckpt", "--oracle"]
    elif problem == "no_common_targets":
        (estimates / "test" / "a" / "vocals.wav").rename(estimates / "test" / "a" / "drums.wav")
        needles = ["no target", "vocals", "drums"]
    elif problem == "unreadable":
        (estimates / "test" / "a" / "vocals.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
        needles = ["vocals.wav"]
    elif problem == "unknown_track":
        shutil.copytree(estimates / "test" / "a", estimates / "test" / "b")
        needles = ["no reference", "b"]
    elif problem == "musdb_without_split":
        args = ["--musdb", str(tmp_path), "--oracle", "irm"]
        needles = ["'test'"]
    code, _, err = _cli(capsys, monkeypatch, *args)
    _one_error_line(code, err, *needles)


def test_one_songs_folders_score_like_the_tree(tmp_path: Path, capsys, monkeypatch) -> None:
    # `--references song/ --estimates stems/song/`: one song's <target>.wav folders, paired whatever their names.
    references, estimates = _known_snr_tree(tmp_path, {"a": {"vocals": 9.0, "bass": 3.0}, "b": {"vocals": 5.0}})
    tree = evaluate_folders(references, estimates, progress=False)
    single = evaluate_folders(references / "a", estimates / "test" / "a", progress=False)
    assert list(single.tracks) == ["a"] and single.targets == ("bass", "vocals")  # the tree scores what all share
    assert single.tracks["a"]["vocals"] == tree.tracks["a"]["vocals"]
    assert single.tracks["a"]["bass"]["uSDR"] == pytest.approx(3.0, abs=1e-4)
    renamed = tmp_path / "separated-by-me"
    shutil.copytree(estimates / "test" / "a", renamed)
    assert evaluate_folders(references / "a", renamed, progress=False).tracks["a"] == single.tracks["a"]
    # One song's estimates against a whole tree pair by the folder's name.
    assert evaluate_folders(references, estimates / "test" / "b", progress=False).targets == ("vocals",)
    code, out, err = _cli(capsys, monkeypatch, "--references", str(references / "a"), "--estimates", str(renamed),
                          "-q")
    assert code == 0, err
    assert "1 tracks" in out and "| vocals |" in out and "| bass |" in out
