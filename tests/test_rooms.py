"""Room impulse responses (musicfx.synth.rooms)."""
from __future__ import annotations

import math

import pytest
import torch

from musicfx.synth.rooms import (
    SPEED_OF_SOUND,
    RoomIRBank,
    direct_path_ir,
    image_source_rir,
    sabine_absorption,
    synthetic_rir,
)
from musicfx.errors import ConfigError

SR = 16000


def seeds(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def decay_time(ir: torch.Tensor, sample_rate: int, low_db: float = -5.0, high_db: float = -35.0) -> float:
    """RT60 from the Schroeder energy decay curve, fitted between ``low_db`` and ``high_db`` (a T30)."""
    energy = ir.double().square().flip(-1).cumsum(-1).flip(-1)
    curve = 10 * torch.log10(energy / energy[0])
    inside = (curve <= low_db) & (curve >= high_db)
    t = torch.arange(ir.shape[-1], dtype=torch.float64)[inside] / sample_rate
    y = curve[inside]
    slope = ((t - t.mean()) * (y - y.mean())).sum() / (t - t.mean()).square().sum()
    return float(-60.0 / slope)


# ---------------------------------------------------------------------------------------- synthetic
def test_synthetic_rir_deterministic_and_batch_independent():
    rt60 = torch.tensor([0.3, 0.6, 0.9])
    a = synthetic_rir(seeds(1, 2, 3), rt60, SR, 4000, channels=2)
    b = synthetic_rir(seeds(3, 1), rt60[[2, 0]], SR, 4000, channels=2)
    assert a.shape == (3, 2, 4000) and a.dtype == torch.float32
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
    assert not torch.allclose(a[0, 0], a[0, 1])  # stereo channels are decorrelated
    assert not torch.allclose(a[0], synthetic_rir(seeds(4), rt60[:1], SR, 4000, channels=2)[0])


@pytest.mark.parametrize("rt60", [0.25, 0.5, 0.9])
def test_synthetic_rir_decay_matches_rt60(rt60: float):
    # Long enough that truncation does not bend the fitted part of the decay curve.
    ir = synthetic_rir(seeds(7), torch.tensor([rt60]), SR, int(1.5 * rt60 * SR), direct=False)[0, 0]
    measured = decay_time(ir[int(0.05 * SR):], SR)
    assert abs(measured - rt60) / rt60 < 0.2, measured


def test_synthetic_rir_structure_and_normalisation():
    ir = synthetic_rir(seeds(5, 6), torch.tensor([0.4, 0.4]), SR, 8000, channels=2, drr_db=6.0)
    assert torch.all(ir[..., 0] == 1.0)  # unit direct impulse; the tail fades in from zero
    reverberant = ir.clone()
    reverberant[..., 0] -= 1.0
    energy = reverberant.square().sum(-1)
    torch.testing.assert_close(energy, torch.full_like(energy, 10 ** -0.6), rtol=1e-4, atol=0)
    # Sparse early part: the strongest sample between 5 and 50 ms stands far above the typical sample.
    early = reverberant[..., int(0.005 * SR): int(0.05 * SR)].abs()
    assert torch.all(early.amax(-1) > 5 * early.median(-1).values)
    wet = synthetic_rir(seeds(5), torch.tensor([0.4]), SR, 8000, direct=False)
    torch.testing.assert_close(wet.square().sum(), torch.tensor(1.0), rtol=1e-4, atol=0)
    # The first millisecond is almost empty without the direct sound (the tail fades in).
    assert wet[..., : SR // 1000].abs().max() < 0.05 * wet.abs().max()


# ------------------------------------------------------------------------------------- image sources
# At 34300 Hz sound travels exactly 1 cm per sample, so whole-centimetre paths land on whole samples, where
# the windowed sinc is a single unit tap.
EXACT_SR = 34300


def test_image_source_direct_path_delay_and_amplitude():
    room, source, mic = [5.0, 4.0, 3.0], [1.0, 1.0, 1.5], [2.0, 1.0, 1.5]
    ir = image_source_rir(room, source, mic, EXACT_SR, absorption=0.0, max_order=0)
    assert int(ir.abs().argmax()) == 100  # 1 m / c * sr
    torch.testing.assert_close(ir[100], torch.tensor(1 / (4 * math.pi)), rtol=1e-5, atol=0)
    assert ir[:100].abs().max() == 0 and ir[101:].abs().max() < 1e-7  # fully absorbing walls: direct only

    # A fractional delay: the peak sits at the nearest sample, the interpolated amplitude sums right.
    ir = image_source_rir(room, source, [2.0, 1.5, 1.5], 16000, absorption=0.0, max_order=0)
    distance = math.sqrt(1.25)
    assert int(ir.abs().argmax()) == round(distance / SPEED_OF_SOUND * 16000)
    torch.testing.assert_close(ir.sum(), torch.tensor(1 / (4 * math.pi * distance)), rtol=2e-2, atol=0)


def test_image_source_first_order_reflections():
    room, source, mic = [5.0, 4.0, 3.0], [1.0, 1.0, 1.0], [2.0, 1.0, 1.0]
    alpha = 0.36  # beta = 0.8
    ir = image_source_rir(room, source, mic, EXACT_SR, absorption=alpha, max_order=1)
    # Mirror images in the six walls; path lengths (cm) and expected amplitudes beta / (4 pi r).
    images = [[-1.0, 1.0, 1.0], [9.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 7.0, 1.0], [1.0, 1.0, -1.0], [1.0, 1.0, 5.0]]
    expected = torch.zeros_like(ir)
    expected[100] = 1 / (4 * math.pi)
    for image in images:
        r = math.dist(image, mic)
        expected += 0.8 / (4 * math.pi * r) * _fractional_impulse(r * 100, ir.shape[0])
    torch.testing.assert_close(ir, expected, rtol=0, atol=2e-6)
    # The wall behind the source (x = 0): 3 m path, 300 samples, amplitude beta / (12 pi).
    torch.testing.assert_close(ir[300], torch.tensor(0.8 / (12 * math.pi)), rtol=1e-5, atol=0)


def _fractional_impulse(delay: float, length: int) -> torch.Tensor:
    return direct_path_ir(torch.tensor(delay), torch.tensor(1.0), length)


def test_image_source_sabine_and_batching():
    room = [6.0, 5.0, 3.0]
    alpha = sabine_absorption(room, 0.5)
    volume, surface = 90.0, 2 * (30 + 18 + 15)
    assert abs(alpha - 0.161 * volume / (surface * 0.5)) < 1e-3
    with pytest.raises(ConfigError, match="impossible"):
        sabine_absorption(room, 0.01)
    sources = torch.tensor([[1.0, 1.0, 1.0], [4.0, 3.0, 2.0]])
    mics = torch.tensor([[1.3, 1.0, 1.0], [4.0, 2.5, 2.0], [3.0, 3.0, 1.5]])
    both = image_source_rir(room, sources[None], mics[:, None], 16000, rt60=0.5, max_order=6, length=3000)
    assert both.shape == (3, 2, 3000)
    one = image_source_rir(room, sources[1], mics[2], 16000, rt60=0.5, max_order=6, length=3000)
    torch.testing.assert_close(both[2, 1], one, rtol=0, atol=1e-7)
    # Energy decays: a higher rt60 keeps more late energy.
    late = lambda rt: image_source_rir(room, sources[0], mics[2], 16000, rt60=rt, max_order=6, length=3000)[1500:]
    assert late(0.8).square().sum() > 2 * late(0.3).square().sum()
    with pytest.raises(ValueError, match="inside the room"):
        image_source_rir(room, [7.0, 1.0, 1.0], mics[0], 16000, rt60=0.5)


# ------------------------------------------------------------------------------------------- the bank
def test_room_bank_layout_cache_and_determinism(tmp_path, monkeypatch):
    kwargs = dict(sample_rate=8000, seed=3, length=800, max_order=4, progress=False, cache_dir=tmp_path)
    bank = RoomIRBank(2, 3, 3, **kwargs)
    assert len(bank) == 2 and bank.irs.shape == (2, 3, 3, 800) and bank.direct.shape == (2, 3, 3, 2)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(name.endswith(".npy") for name in files)
    # Close miking: each microphone's own source is its nearest and loudest direct path.
    distance = (bank.microphones[:, :, None] - bank.sources[:, None]).norm(dim=-1)
    own = torch.diagonal(distance, dim1=1, dim2=2)
    assert bool(((own >= 0.05) & (own <= 0.5 + 1e-9)).all())
    assert torch.equal(bank.direct_gain.argmax(-1), torch.arange(3).expand(2, 3))
    torch.testing.assert_close(bank.direct_delay.double(), distance / SPEED_OF_SOUND * 8000, rtol=1e-5, atol=0)
    # The direct path is where the response starts.
    first = (bank.irs.abs() > 1e-3 * bank.irs.abs().amax(-1, keepdim=True)).float().argmax(-1)
    assert bool(((first - bank.direct_delay).abs() < 45).all())  # within the sinc's half-length

    # Second build: read from the cache, not computed (computing would fail here).
    monkeypatch.setattr(RoomIRBank, "_compute", lambda self, progress: pytest.fail("cache missed"))
    again = RoomIRBank(2, 3, 3, **kwargs)
    assert torch.equal(again.irs, bank.irs) and torch.equal(again.direct, bank.direct)
    # Room r is the same whatever the size of the bank; another seed gives other rooms.
    monkeypatch.undo()
    bigger = RoomIRBank(3, 3, 3, **kwargs)
    assert torch.equal(bigger.irs[:2], bank.irs)
    other = RoomIRBank(2, 3, 3, **{**kwargs, "seed": 4})
    assert not torch.allclose(other.rooms, bank.rooms)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_synthetic_rir_cuda_matches_cpu():
    rt60 = torch.tensor([0.3, 0.7])
    cpu = synthetic_rir(seeds(1, 2), rt60, SR, 3000, channels=2)
    gpu = synthetic_rir(seeds(1, 2).cuda(), rt60.cuda(), SR, 3000, channels=2)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-6)
