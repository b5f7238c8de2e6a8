"""`musicfx evaluate` scores songs block by block: the same numbers as from whole arrays, in memory that
does not grow with the song."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx.evaluate as evaluate_module
from musicfx.evaluate import evaluate_folders
from musicfx.metrics import museval_sdr, nanmedian, usdr
from musicfx.metrics.streaming import StreamingMusevalSDR, StreamingUSDR

TARGETS = ("drums", "bass", "other", "vocals")


@pytest.mark.parametrize("window,hop", [(1.0, 1.0), (1.0, 0.5), (0.7, 1.3)])
def test_streaming_metrics_equal_the_whole_signal(window: float, hop: float) -> None:
    generator = torch.Generator().manual_seed(0)
    rate = 100
    for length in (1, 57, 100, 101, 999, 1234):
        references = torch.randn(3, 2, length, generator=generator)
        estimates = references + 0.3 * torch.randn(3, 2, length, generator=generator)
        if length > 700:
            references[1, :, 120:260] = 0  # silent windows: NaN for every source
            estimates[:, :, 500:650] = references[:, :, 500:650]  # perfect windows: +inf
        sdr, song = StreamingMusevalSDR(3, rate, window, hop), StreamingUSDR(3)
        start = 0
        while start < length:
            size = int(torch.randint(1, 300, (), generator=generator))
            sdr.push(estimates[..., start : start + size], references[..., start : start + size])
            song.push(estimates[..., start : start + size], references[..., start : start + size])
            start += size
        whole = museval_sdr(estimates, references, rate, window, hop)
        streamed = sdr.result()
        assert streamed.shape == whole.shape
        assert torch.equal(streamed.isnan(), whole.isnan()) and torch.equal(streamed.isinf(), whole.isinf())
        torch.testing.assert_close(streamed.nan_to_num(posinf=0), whole.nan_to_num(posinf=0), atol=1e-9, rtol=0)
        torch.testing.assert_close(song.result(), usdr(estimates, references), atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="no audio"):
        StreamingMusevalSDR(1, rate).result()


def _write_song(root: Path, rate: int, seconds: float, seed: int = 0, channels: int = 2,
                estimate_seconds: Optional[float] = None) -> Dict[str, np.ndarray]:
    """references/song/<target>.wav and estimates/song/<target>.wav; returns the written references."""
    rng = np.random.default_rng(seed)
    frames = int(rate * seconds)
    est_frames = int(rate * (estimate_seconds or seconds))
    references = {}
    for kind in ("references", "estimates"):
        (root / kind / "song").mkdir(parents=True, exist_ok=True)
    for k, target in enumerate(TARGETS):
        t = np.arange(max(frames, est_frames)) / rate
        signal = 0.2 * np.sin(2 * np.pi * 110 * (k + 1) * t)[:, None] + 0.05 * rng.standard_normal((t.size, channels))
        signal = signal.astype(np.float32)
        if target == "bass":
            signal[int(2.5 * rate) : int(4.5 * rate)] = 0  # silent across a block boundary (2 s blocks)
        estimate = signal + (0.1 * (k + 1) * rng.standard_normal(signal.shape)).astype(np.float32)
        sf.write(root / "references" / "song" / f"{target}.wav", signal[:frames], rate, subtype="FLOAT")
        sf.write(root / "estimates" / "song" / f"{target}.wav", estimate[:est_frames], rate, subtype="FLOAT")
        references[target] = signal[:frames]
    accompaniment = sum(references[p] for p in ("drums", "bass", "other"))
    rng_acc = np.random.default_rng(seed + 1)
    sf.write(root / "estimates" / "song" / "accompaniment.wav",
             (accompaniment + 0.05 * rng_acc.standard_normal(accompaniment.shape)).astype(np.float32)[:est_frames],
             rate, subtype="FLOAT")
    return references


def test_evaluate_folders_streamed_equals_the_whole_track(tmp_path: Path, monkeypatch) -> None:
    rate = 8000
    # Estimates 0.4 s longer (scored on the common length), 2 s blocks that do not divide the 7.3 s.
    _write_song(tmp_path, rate, 7.3, estimate_seconds=7.7)
    monkeypatch.setattr(evaluate_module, "_BLOCK_SECONDS", 2)
    report = evaluate_folders(tmp_path / "references", tmp_path / "estimates", progress=False)
    assert report.targets == TARGETS + ("accompaniment",)

    # The whole-array computation, as museval groups the targets.
    read = {kind: {target: torch.from_numpy(sf.read(tmp_path / kind / "song" / f"{target}.wav",
                                                    dtype="float32", always_2d=True)[0].T.copy())
                   for target in TARGETS + (("accompaniment",) if kind == "estimates" else ())}
            for kind in ("references", "estimates")}
    read["references"]["accompaniment"] = sum(read["references"][p] for p in ("drums", "bass", "other"))
    frames = int(7.3 * rate)
    ref = torch.stack([read["references"][t][:, :frames] for t in report.targets])
    est = torch.stack([read["estimates"][t][:, :frames] for t in report.targets])
    four = [report.targets.index(t) for t in TARGETS]
    pair = [report.targets.index(t) for t in ("vocals", "accompaniment")]
    sdr_four = nanmedian(museval_sdr(est[four], ref[four], rate))
    sdr_pair = nanmedian(museval_sdr(est[pair], ref[pair], rate))
    expected_sdr = {"drums": sdr_four[0], "bass": sdr_four[1], "other": sdr_four[2], "vocals": sdr_pair[0],
                    "accompaniment": sdr_pair[1]}
    expected_usdr = dict(zip(report.targets, usdr(est, ref)))
    scores = report.tracks["song"]
    for target in report.targets:
        assert abs(scores[target]["SDR"] - float(expected_sdr[target])) < 1e-6, target
        assert abs(scores[target]["uSDR"] - float(expected_usdr[target])) < 1e-6, target
    assert np.isfinite([scores[t]["SDR"] for t in report.targets]).all()


_PEAK_PROBE = (
    "import sys\n"
    "from musicfx.evaluate import evaluate_folders\n"
    "evaluate_folders(sys.argv[1] + '/references', sys.argv[1] + '/estimates', progress=False)\n"
    "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])\n"
)


def _peak_rss_mb(root: Path) -> float:
    """Peak resident memory (Linux's VmHWM) of a fresh process scoring ``root``'s song."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")  # small ops: threads only contend
    result = subprocess.run([sys.executable, "-c", _PEAK_PROBE, str(root)], capture_output=True, text=True,
                            env=env, cwd=str(root), check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1]) / 1024.0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads peak memory from Linux's /proc")
def test_memory_does_not_grow_with_the_song(tmp_path: Path) -> None:
    rate = 8000
    short, long_ = tmp_path / "short", tmp_path / "long"
    _write_song(short, rate, 12.0)
    _write_song(long_, rate, 120.0, seed=1)
    peak_short, peak_long = _peak_rss_mb(short), _peak_rss_mb(long_)
    # Scoring the whole arrays at once (before streaming) needed ~3 MiB more per second of this song.
    assert peak_long <= 1.2 * peak_short, (peak_short, peak_long)


@pytest.mark.parametrize("seconds,hop", [(3.3, 1.0), (0.6, 1.0), (2.5, 0.5)])
def test_streaming_bss_eval_equals_museval(seconds: float, hop: float) -> None:
    museval = pytest.importorskip("museval")
    from musicfx.metrics.bss_eval import StreamingBSSEval

    rate, rng = 2000, np.random.default_rng(4)
    frames = int(seconds * rate)
    t = np.arange(frames) / rate
    refs = np.stack([np.stack([np.sin(2 * np.pi * f * t), np.sin(3 * np.pi * f * t)], 1)
                     + 0.1 * rng.standard_normal((frames, 2)) for f in (110, 330)])
    ests = refs + 0.2 * refs[::-1] + 0.05 * rng.standard_normal(refs.shape)
    if seconds > 3:
        refs[0, rate : int(1.5 * rate)] = 0  # a silent window: NaN for both sources
    whole = dict(zip(("SDR", "ISR", "SIR", "SAR"), museval.evaluate(refs, ests, win=rate, hop=int(hop * rate))))
    references = torch.from_numpy(refs.transpose(0, 2, 1).copy())
    estimates = torch.from_numpy(ests.transpose(0, 2, 1).copy())
    bss = StreamingBSSEval(2, 2, rate, 1.0, hop, filters_len=64)
    with pytest.raises(RuntimeError, match="fit"):
        bss.score(estimates, references)
    cuts = sorted({min(c, frames) for c in (0, 700, 701, 2900, frames)})
    blocks = [(estimates[..., a:b], references[..., a:b]) for a, b in zip(cuts, cuts[1:])]
    for block in blocks:  # first pass: the correlations
        bss.push(*block)
    bss.fit()
    for block in blocks:  # second pass: the windows
        bss.score(*block)
    streamed = bss.result()
    # museval's filters are 512 taps; ours 64 here (cheaper): compare with museval run the same way.
    from museval import metrics

    sdr, isr, sir, sar, _ = metrics.bss_eval(refs, ests, window=rate, hop=int(hop * rate), filters_len=64)
    for name, value in zip(("SDR", "ISR", "SIR", "SAR"), (sdr, isr, sir, sar)):
        got = streamed[name].numpy()
        assert got.shape == value.shape and np.array_equal(np.isnan(got), np.isnan(value)), name
        np.testing.assert_allclose(got, value, atol=1e-6, rtol=0, err_msg=name)
    np.testing.assert_allclose(whole["SDR"], sdr, atol=1e-6)  # museval.evaluate is bss_eval v4


def test_full_scores_equal_museval_on_the_whole_track(tmp_path: Path, monkeypatch) -> None:
    museval = pytest.importorskip("museval")
    rate = 2000
    refs = _write_song(tmp_path, rate, 3.4, channels=1)
    monkeypatch.setattr(evaluate_module, "_BLOCK_SECONDS", 1)
    report = evaluate_folders(tmp_path / "references", tmp_path / "estimates", targets=["drums", "bass"],
                              full=True, progress=False)
    ests = {t: sf.read(tmp_path / "estimates" / "song" / f"{t}.wav", dtype="float32", always_2d=True)[0]
            for t in ("drums", "bass")}
    reference = np.stack([refs["drums"], refs["bass"]]).astype(np.float64)
    estimate = np.stack([ests["drums"], ests["bass"]]).astype(np.float64)
    _, isr, sir, sar = museval.evaluate(reference, estimate, win=rate, hop=rate)
    for j, target in enumerate(("drums", "bass")):
        for name, values in (("ISR", isr), ("SIR", sir), ("SAR", sar)):
            expected = float(nanmedian(torch.from_numpy(values[j])))
            assert abs(report.tracks["song"][target][name] - expected) < 1e-6, (target, name)
