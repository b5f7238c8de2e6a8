"""Metrics: museval-exact SDR (against museval's stored scores and museval run live), uSDR, SI-SDR,
aggregation."""
from __future__ import annotations

import json
import math
from typing import Tuple

import numpy as np
import pytest
import torch

from musicfx.metrics import (
    SeparationScores,
    aggregate_tracks,
    aggregate_windows,
    museval_sdr,
    nanmedian,
    si_sdr,
    si_sdr_improvement,
    snr,
    usdr,
    window_frames,
)

RATE = 8000  # museval's cost is its 512-tap filter solve, not the signal length: a low rate keeps it quick


def _to_museval(x: torch.Tensor) -> np.ndarray:
    """(sources, channels, time) -> museval's (sources, time, channels)."""
    return x.transpose(-1, -2).numpy()


def _noisy_pair(sources: int, length: int, seed: int, noise: float = 0.3) -> Tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    references = torch.randn(sources, 2, length, generator=gen)
    estimates = references + noise * torch.randn(sources, 2, length, generator=gen)
    return estimates, references


# --- museval_sdr against museval ---------------------------------------------------------------------


def test_matches_museval_stored_scores(shared_data):
    """Rebuild museval's regression test (tests/test_regression.py of sigsep-mus-eval): random estimates
    from ``np.random.seed(0)`` for vocals and accompaniment of "Music Delta - 80s Rock"."""
    from musicfx.audio.io import ffmpeg_available, read_stems

    if not ffmpeg_available():
        pytest.skip("decoding .stem.mp4 needs ffmpeg")
    folder = shared_data / "musdb18-sample"
    stems, rate, names = read_stems(folder / "Music Delta - 80s Rock.stem.mp4")
    stored = json.loads((folder / "Music Delta - 80s Rock.museval.json").read_text())
    expected = {t["name"]: [f["metrics"]["SDR"] for f in t["frames"]] for t in stored["targets"]}

    stems = stems.to(torch.float64)  # musdb sums the accompaniment in float64
    index = {name: i for i, name in enumerate(names)}
    vocals = stems[index["vocals"]]
    accompaniment = stems[index["drums"]] + stems[index["bass"]] + stems[index["other"]]
    shape = (stems.shape[-1], stems.shape[-2])  # musdb's track.audio is (time, channels)
    state = np.random.RandomState(0)  # the same stream as np.random.seed(0); np.random.random(...)
    random_vocals = torch.from_numpy(state.random_sample(shape).T.copy())
    random_accompaniment = torch.from_numpy(state.random_sample(shape).T.copy())

    sdr = museval_sdr(
        torch.stack([random_vocals, random_accompaniment]), torch.stack([vocals, accompaniment]), rate
    )
    assert sdr.shape == (2, len(expected["vocals"])) == (2, 6)
    assert sdr.dtype == torch.float64
    # the JSON holds 5 decimals; we reproduce it to its rounding
    np.testing.assert_allclose(sdr[0].numpy(), expected["vocals"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(sdr[1].numpy(), expected["accompaniment"], atol=1e-4, rtol=0)


def test_matches_museval_live_with_silence_and_perfect_windows():
    museval = pytest.importorskip("museval")
    windows = 6
    estimates, references = _noisy_pair(2, windows * RATE + 300, seed=1)  # 300 samples of a 7th window
    w = lambda i: slice(i * RATE, (i + 1) * RATE)  # noqa: E731
    references[0, :, w(1)] = 0  # silent reference -> NaN for both sources
    estimates[1, :, w(2)] = 0  # silent estimate -> NaN for both sources
    estimates[1, :, 3 * RATE : 3 * RATE + RATE // 2] = 0  # half a window of silence is still scored
    references[1, 1, w(4)] = -references[1, 0, w(4)]  # channels cancel: museval calls this silent
    estimates[0, :, w(5)] = references[0, :, w(5)]  # perfect -> +inf

    ours = museval_sdr(estimates, references, RATE)
    theirs, *_ = museval.evaluate(_to_museval(references), _to_museval(estimates), win=RATE, hop=RATE)

    assert ours.shape == theirs.shape == (2, windows)
    expected_nan = np.zeros((2, windows), dtype=bool)
    expected_nan[:, [1, 2, 4]] = True
    np.testing.assert_array_equal(np.isnan(theirs), expected_nan)  # the scene is what we think it is
    np.testing.assert_array_equal(ours.isnan().numpy(), expected_nan)
    # A perfect window is exactly +inf for us; museval's filter decomposition leaves a rounding residue
    # there, so it reports +inf or a finite value far above any real score (369 dB on this scene).
    assert torch.isposinf(ours[0, 5])
    assert theirs[0, 5] > 250
    scored = ~expected_nan
    scored[0, 5] = False
    np.testing.assert_allclose(ours.numpy()[scored], theirs[scored], atol=1e-6, rtol=0)
    # half the window lost: error energy 0.5 + 0.5 * 0.3^2 of the signal's
    assert float(ours[1, 3]) == pytest.approx(-10 * math.log10(0.5 + 0.5 * 0.09), abs=0.3)
    scored[1, 3] = False
    assert np.all(np.abs(ours.numpy()[scored] - 10.46) < 0.5)  # 0.3 noise elsewhere: -20 log10(0.3)


@pytest.mark.parametrize(
    "length, window, hop",
    [(RATE // 2, 1.0, 1.0), (3 * RATE + 123, 1.0, 0.5)],
    ids=["shorter-than-window", "overlapping"],
)
def test_matches_museval_live_windowing(length: int, window: float, hop: float):
    museval = pytest.importorskip("museval")
    estimates, references = _noisy_pair(2, length, seed=2, noise=0.5)
    ours = museval_sdr(estimates, references, RATE, window, hop)
    theirs, *_ = museval.evaluate(
        _to_museval(references), _to_museval(estimates), win=int(window * RATE), hop=int(hop * RATE)
    )
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-6, rtol=0)


# --- museval_sdr on its own --------------------------------------------------------------------------


def test_window_count_follows_museval():
    assert window_frames(6 * 44100 + 44099, 44100) == (44100, 44100, 6)  # a trailing partial window is dropped
    assert window_frames(44100, 44100) == (44100, 44100, 1)
    assert window_frames(100, 44100) == (44100, 44100, 1)  # short: one window over everything
    assert window_frames(3 * 44100, 44100, 1.0, 0.5) == (44100, 22050, 5)
    with pytest.raises(ValueError):
        window_frames(100, 44100, window=0.0)


def test_museval_sdr_is_a_framewise_snr_and_batches():
    estimates, references = _noisy_pair(3, 4 * RATE + 17, seed=3)
    gains = torch.tensor([0.1, 0.5, 2.0]).view(3, 1, 1)
    estimates = references + gains * (estimates - references)  # known, distinct error levels
    sdr = museval_sdr(estimates, references, RATE)
    for j in range(3):
        for t in range(4):
            part = slice(t * RATE, (t + 1) * RATE)
            by_hand = snr(estimates[j, :, part], references[j, :, part])
            assert sdr[j, t] == pytest.approx(float(by_hand), abs=1e-9)
    assert sdr[0].mean() - sdr[1].mean() == pytest.approx(20 * math.log10(5), abs=0.3)

    batch = torch.stack([estimates, estimates.flip(0)]), torch.stack([references, references.flip(0)])
    batched = museval_sdr(*batch, RATE)
    assert batched.shape == (2, 3, 4)
    torch.testing.assert_close(batched[0], sdr, rtol=0, atol=0)
    torch.testing.assert_close(batched[1], sdr.flip(0), rtol=0, atol=0)


def test_museval_sdr_silence_is_per_item_of_a_batch():
    estimates, references = _noisy_pair(2, 2 * RATE, seed=4)
    silent = references.clone()
    silent[1, :, :RATE] = 0
    sdr = museval_sdr(torch.stack([estimates, estimates]), torch.stack([references, silent]), RATE)
    assert not sdr[0].isnan().any()
    assert sdr[1, :, 0].isnan().all() and not sdr[1, :, 1].isnan().any()


def test_museval_sdr_rejects_mismatched_shapes():
    estimates, references = _noisy_pair(2, RATE, seed=5)
    with pytest.raises(ValueError, match="same shape"):
        museval_sdr(estimates[..., :-1], references, RATE)
    with pytest.raises(ValueError, match="sources, channels, time"):
        museval_sdr(estimates[0], references[0], RATE)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_metrics_on_cuda_match_cpu():
    estimates, references = _noisy_pair(4, 5 * 44100 + 11, seed=6)
    estimates[2, :, 44100:88200] = 0
    cpu = museval_sdr(estimates, references, 44100)
    gpu = museval_sdr(estimates.cuda(), references.cuda(), 44100)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-9, equal_nan=True)
    torch.testing.assert_close(usdr(estimates.cuda(), references.cuda()).cpu(), usdr(estimates, references))
    torch.testing.assert_close(si_sdr(estimates.cuda(), references.cuda()).cpu(), si_sdr(estimates, references))
    torch.testing.assert_close(aggregate_windows(gpu).cpu(), aggregate_windows(cpu), equal_nan=True)


# --- uSDR, SNR ---------------------------------------------------------------------------------------


def test_usdr_is_the_song_level_ratio():
    estimates, references = _noisy_pair(4, 3 * RATE, seed=7, noise=0.2)
    estimates = estimates.unsqueeze(0).repeat(2, 1, 1, 1)
    references = references.unsqueeze(0).repeat(2, 1, 1, 1)
    values = usdr(estimates, references)
    assert values.shape == (2, 4) and values.dtype == torch.float64
    ref = references.double().numpy()
    err = (estimates.double() - references.double()).numpy()
    by_hand = 10 * np.log10(((ref**2).sum(axis=(-2, -1)) + 1e-7) / ((err**2).sum(axis=(-2, -1)) + 1e-7))
    np.testing.assert_allclose(values.numpy(), by_hand, rtol=0, atol=1e-10)
    assert values.mean() == pytest.approx(-20 * math.log10(0.2), abs=0.2)


def test_usdr_and_snr_limits():
    estimates, references = _noisy_pair(2, RATE, seed=8)
    assert torch.isposinf(snr(references, references)).all()
    perfect = usdr(references.unsqueeze(0), references.unsqueeze(0))
    assert torch.isfinite(perfect).all() and (perfect > 80).all()  # eps keeps it finite
    silent = torch.zeros_like(references)
    assert usdr(silent, silent).eq(0).all()  # (0 + eps) / (0 + eps)


# --- SI-SDR ------------------------------------------------------------------------------------------


def _orthogonal_noise(reference: torch.Tensor, snr_db: float, seed: int) -> torch.Tensor:
    """Zero-mean noise orthogonal to the zero-mean ``reference`` (channels folded) at ``snr_db``."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(reference.shape, generator=gen, dtype=torch.float64)
    noise = noise - noise.mean(dim=-1, keepdim=True)
    ref = reference - reference.mean(dim=-1, keepdim=True)
    noise = noise - (noise * ref).sum() / ref.square().sum() * ref
    return noise * (ref.square().sum() / noise.square().sum() / 10 ** (snr_db / 10)).sqrt()


def test_si_sdr_of_orthogonal_noise_is_its_snr():
    gen = torch.Generator().manual_seed(9)
    reference = torch.randn(2, 4000, generator=gen, dtype=torch.float64) + 0.3  # DC is removed
    for snr_db in (-5.0, 0.0, 7.5, 20.0):
        noise = _orthogonal_noise(reference, snr_db, seed=10)
        assert float(si_sdr(reference + noise, reference)) == pytest.approx(snr_db, abs=1e-6)
        # scale invariance: any gain on the estimate gives the same number
        assert float(si_sdr(0.25 * (reference + noise), reference)) == pytest.approx(snr_db, abs=1e-6)


def test_si_sdr_scaled_copy_and_stereo_folding():
    gen = torch.Generator().manual_seed(11)
    reference = torch.randn(3, 2, 4000, generator=gen)
    assert (si_sdr(3.0 * reference, reference) > 60).all()  # float32, eps-limited
    assert (si_sdr(3.0 * reference.double(), reference.double()) > 120).all()

    estimate = reference + 0.5 * torch.randn(3, 2, 4000, generator=gen)
    values = si_sdr(estimate, reference, zero_mean=False)
    assert values.shape == (3,)
    for b in range(3):  # both channels as one vector
        s, e = reference[b].flatten().double(), estimate[b].flatten().double()
        target = (e @ s) / (s @ s) * s
        by_hand = 10 * torch.log10(target.square().sum() / (e - target).square().sum())
        assert float(values[b]) == pytest.approx(float(by_hand), abs=1e-3)
    assert float(si_sdr(estimate, reference, reduction="mean")) == pytest.approx(float(si_sdr(estimate, reference).mean()))
    assert float(si_sdr(estimate, reference, reduction="sum")) == pytest.approx(float(si_sdr(estimate, reference).sum()))
    with pytest.raises(ValueError, match="reduction"):
        si_sdr(estimate, reference, reduction="median")


def test_si_sdr_is_differentiable_and_keeps_dtype():
    gen = torch.Generator().manual_seed(12)
    reference = torch.randn(2, 1, 2000, generator=gen)
    estimate = (reference + 0.3 * torch.randn(2, 1, 2000, generator=gen)).requires_grad_()
    loss = -si_sdr(estimate, reference, reduction="mean")
    loss.backward()
    assert estimate.grad is not None and torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0
    assert si_sdr(estimate.detach().half(), reference.half()).dtype == torch.float32


def test_si_sdr_improvement_known_value():
    gen = torch.Generator().manual_seed(13)
    reference = torch.randn(1, 8000, generator=gen, dtype=torch.float64)
    noise = _orthogonal_noise(reference, 0.0, seed=14)
    improvement = si_sdr_improvement(reference + noise / 4, reference, reference + noise)
    assert float(improvement) == pytest.approx(20 * math.log10(4), abs=1e-6)


# --- aggregation -------------------------------------------------------------------------------------


def test_nanmedian_matches_numpy():
    gen = torch.Generator().manual_seed(15)
    values = torch.randn(6, 4, 9, generator=gen, dtype=torch.float64)
    values[torch.rand(values.shape, generator=gen) < 0.3] = math.nan
    values[0, 0] = math.nan  # all NaN
    values[1, 1, :3] = math.inf
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(values.numpy(), axis=-1)
    np.testing.assert_array_equal(nanmedian(values).numpy(), expected)
    assert float(nanmedian(torch.tensor([1.0, 4.0, math.nan, 2.0, 10.0]))) == 3.0  # torch.nanmedian gives 2


def test_aggregate_windows_and_tracks():
    sdr = torch.tensor(
        [[[1.0, 3.0, math.nan, 10.0], [math.nan, math.nan, math.nan, math.nan]],
         [[2.0, math.inf, math.inf, math.nan], [4.0, 5.0, math.nan, 6.0]]]
    )  # (tracks=2, sources=2, windows=4)
    per_track = aggregate_windows(sdr)
    assert per_track[0, 0] == 3.0 and per_track[0, 1].isnan()
    assert per_track[1, 0] == math.inf and per_track[1, 1] == 5.0

    values = torch.tensor([[1.0, math.nan], [2.0, 4.0], [9.0, 6.0], [math.nan, 8.0]])  # (tracks, sources)
    torch.testing.assert_close(aggregate_tracks(values, "median"), torch.tensor([2.0, 6.0]))
    torch.testing.assert_close(aggregate_tracks(values, "mean"), torch.tensor([4.0, 6.0]))
    assert aggregate_tracks(torch.full((3, 1), math.nan)).isnan().all()
    with pytest.raises(ValueError, match="how"):
        aggregate_tracks(values, "max")


def test_separation_scores_table():
    scores = SeparationScores(["bass", "vocals"])
    gains = torch.tensor([0.1, 1.0]).view(2, 1, 1)
    for seed in range(3):
        estimates, references = _noisy_pair(2, 3 * RATE, seed=20 + seed)
        estimates = references + gains * (estimates - references) * (seed + 1)
        framewise = scores.add(estimates, references, RATE, names=[f"song{seed}"])
        assert framewise.shape == (1, 2, 3)
    scores.add_scores(torch.full((2, 3), math.nan), torch.tensor([50.0, 50.0]), names=["silent"])
    assert len(scores) == 4

    table = scores.table()
    per_track = scores.per_track()
    assert set(table) == {"bass", "vocals"} and set(per_track) == {"song0", "song1", "song2", "silent"}
    for source in ("bass", "vocals"):
        sdrs = [per_track[f"song{i}"][source]["SDR"] for i in range(3)]  # the NaN track is ignored
        usdrs = [per_track[name][source]["uSDR"] for name in per_track]
        assert table[source]["SDR_median"] == pytest.approx(float(np.median(sdrs)))
        assert table[source]["SDR_mean"] == pytest.approx(float(np.mean(sdrs)))
        assert table[source]["uSDR"] == pytest.approx(float(np.mean(usdrs)))
    # noise gain 0.1 vs 1.0: bass is 20 dB better than vocals
    assert table["bass"]["SDR_median"] - table["vocals"]["SDR_median"] == pytest.approx(20.0, abs=0.5)
    overall = scores.overall()
    assert overall["SDR_median"] == pytest.approx((table["bass"]["SDR_median"] + table["vocals"]["SDR_median"]) / 2)
    with pytest.raises(ValueError):
        SeparationScores(["bass"]).table()
