"""Bleed scenes (musicfx.synth.bleed)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from musicfx.audio.spectral import fft_convolve
from musicfx.data.impulse_responses import load_impulse_responses
from musicfx.errors import ConfigError, DataError
from musicfx.synth.bleed import BLEED_KINDS, BleedSynth
from musicfx.synth.rooms import RoomIRBank, direct_path_ir

SR = 8000
M = 3


def draws(synth: BleedSynth, *seeds: int):
    return default_collate([synth.draw(torch.Generator().manual_seed(seed)) for seed in seeds])


def clean(batch: int, channels: int = 1, frames: int = 2000, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, M, channels, frames, generator=torch.Generator().manual_seed(seed))


def test_linear_mics_are_a_times_sources_and_targets():
    synth = BleedSynth("linear", num_tracks=M, sample_rate=SR)
    params = draws(synth, 1, 2)
    a = params["gains"]
    eye = torch.eye(M, dtype=torch.bool)
    assert bool(((a[:, eye] >= 0.6) & (a[:, eye] <= 1.0)).all())
    assert bool(((a[:, ~eye] >= 0.05) & (a[:, ~eye] <= 0.31)).all())
    s = clean(2, channels=2)
    mics, targets = synth(s, params)
    for b in range(2):
        for c in range(2):
            expected = a[b].double() @ s[b, :, c].double()
            torch.testing.assert_close(mics[b, :, c].double(), expected, rtol=0, atol=1e-5)
    assert torch.equal(targets, s)  # the seed's target: the unscaled source
    assert torch.equal(synth.mixing_matrix(params), a)
    direct = BleedSynth("linear", num_tracks=M, sample_rate=SR, target="direct")
    _, scaled = direct(s, params)
    torch.testing.assert_close(scaled, s * torch.diagonal(a, dim1=1, dim2=2)[..., None, None])


def test_deterministic_and_independent_of_batch_composition():
    synth = BleedSynth(("linear", "convolutive"), num_tracks=M, sample_rate=SR, ir_length=0.1)
    params = draws(synth, 5, 6, 7, 8, 9, 10)
    kinds = params["kind"].tolist()
    assert set(kinds) == {0, 1}, kinds  # both kinds drawn (fixed seeds)
    s = clean(6)
    mics, targets = synth(s, params)
    order = [4, 1, 3]
    sub = {key: value[order] for key, value in params.items()}
    mics2, targets2 = synth(s[order], sub)
    torch.testing.assert_close(mics2, mics[order], rtol=0, atol=1e-5)
    assert torch.equal(targets2, targets[order])
    assert torch.equal(draws(synth, 7)["gains"], params["gains"][2:3])  # draws depend on the seed alone
    # Seeds passed explicitly (the datamodule's per-example seeds) replace the drawn ones.
    explicit = {key: value for key, value in params.items() if key != "bleed_seed"}
    mics3, _ = synth(s, explicit, params["bleed_seed"])
    assert torch.equal(mics3, mics)
    mics4, _ = synth(s, explicit, params["bleed_seed"] + 1)
    conv = params["kind"] == 1
    assert not torch.allclose(mics4[conv], mics[conv]) and torch.equal(mics4[~conv], mics[~conv])


def test_convolutive_delays_responses_and_targets():
    synth = BleedSynth("convolutive", num_tracks=M, sample_rate=SR, max_delay_ms=20.0, ir_length=0.1)
    params = draws(synth, *range(20))
    delays = params["delays"]
    eye = torch.eye(M, dtype=torch.bool)
    assert bool((delays[:, eye] == 0).all()) and int(delays.max()) <= 160 and int(delays[:, ~eye].min()) >= 0
    assert delays[:, ~eye].float().std() > 30  # spread over the range
    # Impulses as sources reveal each path: microphone i's response to source j starts at delays[i, j]
    # with amplitude A_ij (the synthetic response's direct sound is 1 at its sample 0).
    s = torch.zeros(20, M, 1, 1600)
    s[:, :, 0, 0] = 1.0
    mics, targets = synth(s, params)
    assert torch.equal(targets, s)
    for b in range(20):
        irs = synth.convolutive_irs({k: v[b : b + 1] for k, v in params.items()}, params["bleed_seed"][b : b + 1])[0]
        expected = torch.zeros(M, 1600)
        for i in range(M):
            for j in range(M):
                d = int(delays[b, i, j])
                n = min(irs.shape[-1], 1600 - d)
                expected[i, d : d + n] += params["gains"][b, i, j] * irs[i, j, :n]
        torch.testing.assert_close(mics[b, :, 0], expected, rtol=0, atol=1e-5)
    # The own path's direct sound is A_ii at delay 0, so the rest of microphone i is bleed and reverb.
    torch.testing.assert_close(mics[:, :, 0, 0], torch.diagonal(params["gains"], dim1=1, dim2=2) + (
        params["gains"] * (delays == 0) * ~eye).sum(-1), rtol=0, atol=1e-5)


def test_convolutive_with_recorded_impulse_responses(tmp_path):
    import soundfile as sf
    import numpy as np

    ir = np.zeros(400, dtype=np.float32)
    ir[10], ir[100] = 0.5, -0.25  # peak 0.5 at 10: aligned and scaled to 1 at 0, echo -0.5 at 90
    sf.write(tmp_path / "a.wav", ir, SR)
    irs = load_impulse_responses(tmp_path, SR, round(0.05 * SR))
    synth = BleedSynth("convolutive", num_tracks=M, sample_rate=SR, ir_length=0.05, impulse_responses=irs,
                       max_delay_ms=0.0)
    params = draws(synth, 3)
    s = torch.zeros(1, M, 1, 500)
    s[0, 0, 0, 0] = 1.0
    mics, _ = synth(s, params)
    a = params["gains"][0, :, 0]
    torch.testing.assert_close(mics[0, :, 0, 0], a, rtol=0, atol=1e-5)
    torch.testing.assert_close(mics[0, :, 0, 90], -0.5 * a, rtol=0, atol=1e-5)


def test_recorded_impulse_responses_errors(tmp_path):
    with pytest.raises(DataError, match="no impulse responses"):
        load_impulse_responses(tmp_path, SR, 100)
    with pytest.raises(ValueError, match="impulse_responses"):
        BleedSynth("convolutive", num_tracks=M, sample_rate=SR, impulse_responses=torch.ones(100))
    longer = BleedSynth("convolutive", num_tracks=M, sample_rate=SR, ir_length=0.01,
                        impulse_responses=torch.arange(200.0).view(2, 100))
    assert torch.equal(longer.file_irs, torch.arange(200.0).view(2, 100)[:, :80])


def test_room_kind_with_a_tiny_bank(tmp_path):
    bank = RoomIRBank(2, M, M, SR, seed=1, length=1200, max_order=3, progress=False, cache_dir=tmp_path)
    synth = BleedSynth("room", num_tracks=M, sample_rate=SR, room_bank=bank, target="direct")
    params = draws(synth, 1, 2, 3)
    assert set(params["room"].tolist()) <= {0, 1}
    s = clean(3, frames=3000)
    mics, targets = synth(s, params)
    room = params["room"]
    own = torch.diagonal(params["gains"], dim1=1, dim2=2)
    own_gain = torch.diagonal(bank.direct_gain[room], dim1=1, dim2=2)
    # Microphone i: every source through its room response, scaled so the own direct sound has gain A_ii.
    for b in range(3):
        expected = sum(fft_convolve(s[b, j, 0], bank.irs[room[b], :, j], mode="same") for j in range(M))
        torch.testing.assert_close(mics[b, :, 0], expected * (own[b] / own_gain[b])[:, None], rtol=0, atol=1e-4)
    # With only its own source and an impulse, a microphone's start is exactly the target (direct path);
    # reflections and other sources arrive later.
    impulse = torch.zeros(3, M, 1, 1500)
    impulse[:, :, 0, 0] = 1.0
    for i in range(M):
        only = torch.zeros_like(impulse)
        only[:, i] = impulse[:, i]
        mic, target = synth(only, params)
        delay = torch.diagonal(bank.direct_delay[room], dim1=1, dim2=2)[:, i]
        peak = target[:, i, 0].abs().argmax(-1)
        assert torch.equal(peak, delay.round().long())
        path = direct_path_ir(delay, own[:, i], 1500)
        torch.testing.assert_close(target[:, i, 0], path, rtol=0, atol=1e-5)
        torch.testing.assert_close(path.sum(-1), own[:, i], rtol=0.15, atol=0)  # ~unit DC gain, times A_ii
        early = int(delay.min()) + 2  # the floor reflection can follow within a few ms at 8 kHz
        torch.testing.assert_close(mic[:, i, 0, :early], target[:, i, 0, :early], rtol=0, atol=1e-2)
        assert (mic[:, i, 0] - target[:, i, 0]).abs().amax() > 0.01  # there is a room after all
    # The instantaneous (direct-path) matrix: its diagonal is A_ii, the rest follows the geometry.
    matrix = synth.mixing_matrix(params)
    torch.testing.assert_close(torch.diagonal(matrix, dim1=1, dim2=2), own)
    expected = bank.direct_gain[room] * (own / own_gain)[..., None]
    torch.testing.assert_close(matrix, expected)
    assert bool((matrix[:, ~torch.eye(M, dtype=torch.bool)] < own.min()).all())  # close miking
    with pytest.raises(ConfigError, match="room_bank"):
        BleedSynth("room", num_tracks=M, sample_rate=SR)
    with pytest.raises(ConfigError, match="sources"):
        BleedSynth("room", num_tracks=M + 1, sample_rate=SR, room_bank=bank)


def test_kind_weights_and_errors():
    synth = BleedSynth({"linear": 1.0, "convolutive": 3.0}, num_tracks=M, sample_rate=SR, ir_length=0.05)
    kinds = draws(synth, *range(200))["kind"]
    share = (kinds == BLEED_KINDS.index("convolutive")).float().mean()
    assert 0.65 < share < 0.85
    with pytest.raises(ValueError, match="unknown bleed kinds"):
        BleedSynth("reverb")
    with pytest.raises(ValueError, match="target"):
        BleedSynth(target="scaled")


def test_stereo_mixes_every_channel_alike_and_autocast():
    synth = BleedSynth(["linear", "convolutive"], num_tracks=M, sample_rate=SR, ir_length=0.05)
    params = draws(synth, 1, 2, 3, 4)
    mono = clean(4)
    stereo = torch.cat([mono, -0.5 * mono], dim=2)
    mics, targets = synth(stereo, params)
    torch.testing.assert_close(mics[:, :, 1], -0.5 * mics[:, :, 0], rtol=0, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half, _ = synth(mono.bfloat16(), params)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), mics[:, :, :1], rtol=0.02, atol=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(tmp_path):
    bank = RoomIRBank(2, M, M, SR, length=400, max_order=2, progress=False, cache_dir=tmp_path)
    synth = BleedSynth(["linear", "convolutive", "room"], num_tracks=M, sample_rate=SR, ir_length=0.05,
                       room_bank=bank)
    params = draws(synth, *range(6))
    s = clean(6)
    cpu = synth(s, params)
    gpu = synth.to("cuda")(s.cuda(), {k: v.cuda() for k, v in params.items()})
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-4)
