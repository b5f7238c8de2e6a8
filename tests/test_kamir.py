"""KAMIR interference reduction (musicfx.baselines.kamir) and the leakage measure (musicfx.metrics.leakage)."""
from __future__ import annotations


import pytest
import torch

from musicfx.audio.io import read_audio
from musicfx.audio.spectral import stft
from musicfx.baselines.kamir import KAMIR, kamir
from musicfx.metrics.leakage import inter_track_coherence, leakage_score
from musicfx.metrics.sdr import museval_sdr, snr

SR = 44100
PARTS = ("violin1", "cello", "flute1", "horn1")


@pytest.fixture(scope="module")
def scene(shared_data):
    """4 anechoic orchestra parts (1 s) and a linear bleed: unit diagonal, off-diagonal U(0.2, 0.3)."""
    sources = torch.stack(
        [read_audio(shared_data / "phenicx-anechoic" / f"beethoven_{name}.wav", sample_rate=SR)[0][0] for name in PARTS]
    )
    mixing = 0.2 + 0.1 * torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    mixing.fill_diagonal_(1.0)
    return sources, mixing, mixing @ sources


@pytest.fixture(scope="module")
def processed(scene):
    return kamir(scene[2], SR)  # the paper's settings: n_fft 8192, overlap 0.9, 5 iterations, min leakage 0.05


def test_kamir_reduces_bleed_on_real_parts(scene, processed):
    sources, _, mics = scene
    out = processed
    assert out.shape == mics.shape and out.dtype == mics.dtype
    before = museval_sdr(mics[:, None], sources[:, None], SR)[:, 0]  # one 1 s window per part
    after = museval_sdr(out[:, None], sources[:, None], SR)[:, 0]
    # Measured: before [-3.8, -1.7, 0.1, 21.5] dB, after [26.2, 33.1, 26.8, 36.6] dB.
    assert bool((after > before + 10.0).all()), (before, after)
    assert float(after.mean()) > 25.0
    torch.testing.assert_close(after.double(), snr(out[:, None], sources[:, None]), rtol=0, atol=1e-3)


def test_kamir_estimates_the_leakage_matrix(scene):
    sources, mixing, mics = scene
    n_fft = 1024
    _, leakage = kamir(mics, SR, n_fft=n_fft, overlap=0.75, min_leakage=0.0, return_leakage=True)
    assert leakage.shape == (1, n_fft // 2 + 1, 4, 4)
    truth = mixing.square()  # power of voice j in microphone i relative to its own microphone (A_jj = 1)
    # Leakage is identifiable where voice j sounds: average its log over the bins of each voice's top 10 %.
    power = stft(sources, n_fft, n_fft // 4).abs().square().sum(-1)  # (voice, bins)
    loud = (power >= power.quantile(0.9, dim=1, keepdim=True)).T[:, None, :].float()  # (bins, 1, voice)
    estimate = ((leakage[0].clamp(min=1e-6).log() * loud).sum(0) / loud.sum(0)).exp()
    off = ~torch.eye(4, dtype=torch.bool)
    ratio = (estimate[off] / truth[off]).log().abs().exp()
    # Measured: within a factor 2.9 of the truth, off-diagonals 0.04-0.09 (the start was 1, 11-25x off).
    assert bool((ratio < 3.5).all()), (estimate, truth)
    assert torch.equal(torch.diagonal(leakage, dim1=-2, dim2=-1), torch.ones(1, n_fft // 2 + 1, 4))


def test_kamir_shapes_batching_and_identity():
    g = torch.Generator().manual_seed(1)
    tracks = torch.randn(2, 3, 4000, generator=g)
    model = KAMIR(8000, n_fft=512, overlap=0.75, iterations=2)
    batch = model(tracks)
    assert batch.shape == tracks.shape
    torch.testing.assert_close(batch[1], kamir(tracks[1], 8000, n_fft=512, overlap=0.75, iterations=2), rtol=0, atol=1e-5)
    # (M, C, T): channels are processed independently.
    stereo = kamir(tracks.transpose(0, 1), 8000, n_fft=512, overlap=0.75, iterations=2)
    torch.testing.assert_close(stereo.transpose(0, 1), batch, rtol=0, atol=1e-5)
    # A single track has nothing to leak into it: the Wiener gain is 1.
    alone = torch.randn(1, 4000, generator=g)
    torch.testing.assert_close(kamir(alone, 8000, n_fft=512), alone, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="overlap"):
        KAMIR(8000, overlap=1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kamir_cuda_matches_cpu():
    tracks = torch.randn(3, 8000, generator=torch.Generator().manual_seed(2))
    cpu = kamir(tracks, 8000, n_fft=1024)
    gpu = kamir(tracks, 8000, n_fft=1024, device="cuda")
    assert gpu.device == tracks.device
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------------------------- leakage
def test_coherence_of_independent_and_bleeding_noise():
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(4, SR, generator=g)
    coherence = inter_track_coherence(noise, SR)
    assert coherence.shape == (4, 4)
    torch.testing.assert_close(torch.diagonal(coherence), torch.ones(4))
    torch.testing.assert_close(coherence, coherence.T)
    independent = leakage_score(noise)
    assert independent < 0.03  # ~1 / frames of estimation bias
    # Bleed at A_ij = 0.25: theory for white noise gives a pairwise coherence of about 0.25.
    mixing = torch.full((4, 4), 0.25).fill_diagonal_(1.0)
    bleeding = leakage_score(mixing @ noise)
    assert 0.18 < bleeding < 0.35
    # A filtered copy is fully coherent; stereo input works.
    copy = torch.stack([noise[0], 0.5 * noise[0]])
    assert leakage_score(copy) > 0.99
    assert abs(leakage_score(noise.reshape(4, 2, SR // 2)) - independent) < 0.02


def test_kamir_lowers_the_leakage_score(scene, processed):
    sources, _, mics = scene
    clean, bled, after = leakage_score(sources), leakage_score(mics), leakage_score(processed)
    # Measured: 0.17 (music played together is somewhat coherent), 0.75 with bleed, 0.21 after KAMIR.
    assert bled > clean + 0.3
    assert after < bled - 0.3
