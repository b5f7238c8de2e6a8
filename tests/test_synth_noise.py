"""Counter-based randomness and batched noise scenes (musicfx.rng, musicfx.synth.noise)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import default_collate

from musicfx.synth import noise as N
from musicfx.rng import derive_seeds, hash_bits, hash_normal, hash_uniform, mix64

SR = 16000
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def seeds(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def band_energy(x: torch.Tensor, sample_rate: int, low: float, high: float) -> torch.Tensor:
    """Fraction of each example's energy in [low, high) Hz: (B, C, T) -> (B,)."""
    power = torch.fft.rfft(x).abs().pow(2).sum(dim=1)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate)
    inside = (freqs >= low) & (freqs < high)
    return power[:, inside].sum(-1) / power.sum(-1)


def kurtosis(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1).double()
    x = x - x.mean(-1, keepdim=True)
    return (x.pow(4).mean(-1) / x.pow(2).mean(-1).pow(2)).float()


# ------------------------------------------------------------------------------------------ random
_M64 = (1 << 64) - 1


def _ref_mix(x: int) -> int:
    x &= _M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def test_mix64_is_splitmix64_finalizer_bit_for_bit():
    values = [0, 1, 2, 12345, (1 << 63) - 1, -1, -(1 << 63), 0x0123456789ABCDEF]
    got = mix64(torch.tensor(values, dtype=torch.int64)).tolist()
    want = [_ref_mix(v) for v in values]
    assert [g & _M64 for g in got] == want
    # splitmix64's published first output for seed 0 (state advanced by the golden gamma once)
    assert _ref_mix(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF


def test_hash_uniform_reproduces_pure_python_formula():
    s = seeds(0, 7, -3, 2**62 + 5)
    u = hash_uniform(s, (5,), stream=3)
    for b, seed in enumerate(s.tolist()):
        key = _ref_mix((_ref_mix(seed) + ((3 * 4 + 0 + 1) * 0xD1B54A32D192ED03)) & _M64)
        for i in range(5):
            word = _ref_mix(key + (i + 1) * 0x9E3779B97F4A7C15)
            assert u[b, i].item() == (word >> 40) / 2**24


def test_hash_uniform_statistics():
    u = hash_uniform(seeds(1, 2, 3, 4), (50_000,))
    assert u.dtype == torch.float32 and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.003
    assert abs(u.var().item() - 1 / 12) < 0.002
    counts = torch.histc(u, bins=20, min=0.0, max=1.0)
    expected = u.numel() / 20
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 45.0  # 19 degrees of freedom: p ~ 0.001
    # lag-1 autocorrelation along the counter
    x = u - 0.5
    assert abs((x[:, 1:] * x[:, :-1]).mean().item() / x.var().item()) < 0.01


def test_hash_normal_statistics():
    z = hash_normal(seeds(11, 12), (100_001,), stream=4)
    assert z.shape == (2, 100_001) and torch.isfinite(z).all()
    assert abs(z.mean().item()) < 0.01
    assert abs(z.std().item() - 1.0) < 0.01
    assert abs(kurtosis(z[None].flatten(1)).item() - 3.0) < 0.06
    assert abs(((z.double() ** 3).mean()).item()) < 0.03
    # Kolmogorov-Smirnov distance to the normal CDF
    ordered = z.flatten().double().sort().values
    cdf = 0.5 * (1 + torch.erf(ordered / math.sqrt(2)))
    ecdf = torch.arange(1, ordered.numel() + 1, dtype=torch.float64) / ordered.numel()
    assert (cdf - ecdf).abs().max().item() < 0.006


def test_hash_values_depend_only_on_own_seed():
    s = seeds(5, 99, -42, 5, 123456789)
    for fn in (hash_uniform, hash_normal):
        full = fn(s, (3, 1001), stream=2)
        for b in range(len(s)):
            alone = fn(s[b : b + 1], (3, 1001), stream=2)
            assert torch.equal(full[b], alone[0])
        reordered = fn(s.flip(0), (3, 1001), stream=2)
        assert torch.equal(reordered, full.flip(0))
    assert torch.equal(full[0], full[3])  # equal seeds, equal numbers


def test_hash_uniform_is_a_prefix_across_cpu_blocks():
    s = seeds(3, 4)
    long = hash_uniform(s, (300_000,))  # several blocks of 2**18 / 2 counters
    assert torch.equal(long[:, :1000], hash_uniform(s, (1000,)))
    assert torch.equal(long[:, 131_000:131_200], hash_uniform(s, (131_200,))[:, 131_000:])


def test_streams_seeds_and_kinds_are_independent():
    s = seeds(1)
    a = hash_uniform(s, (200_000,), stream=0)[0] - 0.5
    b = hash_uniform(s, (200_000,), stream=1)[0] - 0.5
    c = hash_uniform(seeds(2), (200_000,), stream=0)[0] - 0.5
    n = hash_normal(s, (200_000,), stream=0)[0]
    corr = lambda x, y: (x * y).mean().item() / (x.std() * y.std()).item()  # noqa: E731
    for x, y in ((a, b), (a, c), (a, n)):
        assert abs(corr(x, y)) < 0.012
    assert not torch.equal(hash_bits(s, 10, 0), hash_bits(s, 10, 1))
    d1, d2 = derive_seeds(seeds(1, 2), 1), derive_seeds(seeds(1, 2), 2)
    assert d1.dtype == torch.int64 and len(set(d1.tolist() + d2.tolist() + [1, 2])) == 6
    assert torch.equal(d1, derive_seeds(seeds(1, 2), 1))


def test_bad_seeds_rejected():
    with pytest.raises(ValueError, match="int64"):
        hash_uniform(torch.arange(3, dtype=torch.int32), (4,))


@pytest.mark.gpu
@CUDA
def test_hash_identical_on_cuda():
    s = seeds(1, -5, 2**40)
    for fn in (hash_uniform, hash_normal):
        cpu = fn(s, (2, 5000), 3)
        gpu = fn(s.cuda(), (2, 5000), 3).cpu()
        if fn is hash_uniform:
            assert torch.equal(cpu, gpu)
        else:
            torch.testing.assert_close(cpu, gpu, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------- noise
def test_categories_come_from_one_registry_in_a_fixed_order():
    # Scenes store a category as its index: the order is part of every seeded dataset.
    assert N.NOISE_CATEGORIES == ("electrical", "crowd", "weather", "traffic", "stationary")
    assert N.NOISE_CATEGORIES == tuple(N.GENERATORS)
    with pytest.raises(TypeError):
        N.GENERATORS["extra"] = N.stationary_noise  # type: ignore[index]


@pytest.mark.parametrize("category", N.NOISE_CATEGORIES)
@pytest.mark.parametrize("channels", [1, 2])
def test_category_is_finite_unit_rms_and_seeded(category, channels):
    s = seeds(1, 2, 3)
    x = N.synthesize(category, s, channels, SR, SR)
    assert x.shape == (3, channels, SR) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x.pow(2).mean(dim=(1, 2)), torch.ones(3), atol=1e-4, rtol=0)
    # different seeds, different noise
    flat = x.flatten(1)
    assert (flat[0] * flat[1]).mean().abs() < 0.5
    if channels == 2:
        corr = (x[:, 0] * x[:, 1]).mean(-1) / (x[:, 0].std(-1) * x[:, 1].std(-1))
        assert (corr < 0.999).all() and (corr > -0.5).all(), corr  # related but not identical channels


def test_unknown_category_rejected():
    with pytest.raises(ValueError, match="electrical"):
        N.synthesize("hail", seeds(1), 1, 1000, SR)


def test_electrical_has_mains_hum_and_harmonics():
    x = N.electrical_noise(seeds(*range(8)), 1, 2 * SR, SR)[:, 0]
    window = torch.hann_window(x.shape[-1], periodic=False)
    spectrum = torch.fft.rfft(x * window).abs()
    resolution = SR / x.shape[-1]  # 0.5 Hz

    def level(hz: float) -> torch.Tensor:
        k = round(hz / resolution)
        return spectrum[:, k - 2 : k + 3].amax(-1)

    def background(hz: float) -> torch.Tensor:
        k = round(hz / resolution)
        return spectrum[:, k - 40 : k + 41].median(-1).values

    mains = torch.where(level(50) > level(60), 50.0, 60.0)
    assert set(mains.tolist()) == {50.0, 60.0}  # both grids occur
    for b, f0 in enumerate(mains.tolist()):
        for harmonic, min_db in ((1, 20.0), (2, 8.0), (3, 8.0)):
            ratio_db = 20 * torch.log10(level(harmonic * f0)[b] / background(harmonic * f0)[b])
            assert ratio_db > min_db, (b, f0, harmonic, ratio_db)


def test_hum_spectrum_is_lines_at_mains_multiples():
    x = N.hum(seeds(4), 1, 2 * SR, SR)[0, 0]
    spectrum = torch.fft.rfft(x * torch.hann_window(x.numel(), periodic=False)).abs()
    peak_hz = spectrum.argmax().item() * SR / x.numel()
    f0 = 50.0 if min(abs(peak_hz % 50), 50 - peak_hz % 50) < 1 else 60.0
    assert min(abs(peak_hz / f0 - round(peak_hz / f0)), 1) < 0.02
    energy = spectrum.pow(2)
    freqs = torch.arange(energy.numel()) * SR / x.numel()
    near_lines = ((freqs / f0 - (freqs / f0).round()).abs() * f0) < 2.0
    assert energy[near_lines].sum() / energy.sum() > 0.99


def test_clicks_are_impulsive_and_crackle_too():
    s = seeds(*range(6))
    assert (kurtosis(N.clicks(s, 1, 2 * SR, SR)) > 30).all()
    assert (kurtosis(N.crackle(s, 1, 2 * SR, SR)) > 6).all()
    assert (kurtosis(N.stationary_noise(s, 1, 2 * SR, SR)) < 3.3).all()


def test_brown_noise_is_low_heavy_and_white_is_flat():
    s = seeds(*range(4))
    white = N.coloured_noise(s, 2, 2 * SR, SR, 0.0)
    pink = N.coloured_noise(s, 2, 2 * SR, SR, 1.0)
    brown = N.coloured_noise(s, 2, 2 * SR, SR, 2.0)

    def low_over_high_db(x):
        return 10 * torch.log10(band_energy(x, SR, 50, 200) / band_energy(x, SR, 2000, 8000))

    white_db, pink_db, brown_db = map(low_over_high_db, (white, pink, brown))
    # theory: white 150 Hz of band against 6 kHz -> -16.0 dB; pink log(4)/log(4) -> 0 dB;
    # brown (1/50 - 1/200) / (1/2000 - 1/8000) -> +16.0 dB
    assert (white_db - -16.0).abs().max() < 1.0
    assert pink_db.abs().max() < 1.0
    assert (brown_db - 16.0).abs().max() < 1.0
    assert (brown_db - white_db > 30).all()


def test_stationary_draws_its_colour_per_example():
    x = N.stationary_noise(seeds(*range(24)), 1, SR, SR)
    low_high_db = 10 * torch.log10(band_energy(x, SR, 50, 200) / band_energy(x, SR, 2000, 8000))
    assert low_high_db.min() < -14 and low_high_db.max() > 14  # white and brown both occur
    assert ((low_high_db > -10) & (low_high_db < 10)).any()  # and colours between


def test_traffic_wind_and_thunder_are_low_frequency_dominated():
    s = seeds(*range(6))
    assert (band_energy(N.traffic_noise(s, 2, 2 * SR, SR), SR, 0, 1000) > 0.75).all()
    assert (band_energy(N.wind(s, 2, 2 * SR, SR), SR, 0, 1000) > 0.9).all()
    assert (band_energy(N.thunder(s, 1, 2 * SR, SR), SR, 0, 400) > 0.95).all()
    white = N.coloured_noise(s, 1, 2 * SR, SR, 0.0)
    assert (band_energy(white, SR, 0, 1000) < 0.15).all()


def test_rain_is_broadband_with_high_frequencies():
    x = N.rain(seeds(*range(4)), 1, SR, SR)
    assert (band_energy(x, SR, 1000, 8000) > 0.3).all()


def _modulation_spectrum(x: torch.Tensor, sample_rate: int) -> tuple:
    """Spectrum of the relative amplitude envelope (rectified, 100 Hz frames, divided by its mean):
    (B, C, T) -> freqs (K,), power (B, K)."""
    hop = sample_rate // 100
    frames = x.abs().sum(1)[:, : x.shape[-1] // hop * hop].reshape(x.shape[0], -1, hop).mean(-1)
    frames = frames / frames.mean(-1, keepdim=True) - 1.0
    power = torch.fft.rfft(frames * torch.hann_window(frames.shape[-1])).abs().pow(2)
    return torch.fft.rfftfreq(frames.shape[-1], 0.01), power


def test_crowd_envelope_is_modulated_at_syllable_rate():
    s = seeds(*range(6))
    freqs, crowd = _modulation_spectrum(N.crowd_noise(s, 1, 8 * SR, SR), SR)
    _, white = _modulation_spectrum(N.coloured_noise(s, 1, 8 * SR, SR, 0.0), SR)

    def mean_in(power, low, high):
        return power[:, (freqs >= low) & (freqs < high)].mean(-1)

    syllable, fast = mean_in(crowd, 3, 6), mean_in(crowd, 10, 40)
    assert (syllable / fast > 10).all(), syllable / fast
    # the envelope moves far more than steady noise's at those rates
    assert (syllable > 30 * mean_in(white, 3, 6)).all(), syllable / mean_in(white, 3, 6)
    # and its strongest modulation above 1 Hz is a syllable rate
    above = freqs > 1.0
    peak_hz = freqs[above][crowd[:, above].argmax(-1)]
    assert ((peak_hz > 2.5) & (peak_hz < 7.0)).all(), peak_hz


def test_noise_independent_of_batch_composition_and_order():
    synth = N.NoiseSynth(SR)
    s = seeds(10, 20, 30, 40, 50, 60)
    cats = torch.tensor([0, 1, 2, 3, 4, 0])
    together = synth.procedural(s, cats, 2, SR // 2)
    order = torch.tensor([5, 3, 1, 0, 4, 2])
    shuffled = synth.procedural(s[order], cats[order], 2, SR // 2)
    torch.testing.assert_close(shuffled, together[order], atol=2e-5, rtol=1e-4)
    for b in (1, 4):
        alone = synth.procedural(s[b : b + 1], cats[b : b + 1], 2, SR // 2)
        torch.testing.assert_close(alone[0], together[b], atol=2e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------- NoiseSynth
def _batch(synth: N.NoiseSynth, n: int, first_seed: int = 0) -> dict:
    return default_collate([synth.draw(torch.Generator().manual_seed(first_seed + i)) for i in range(n)])


def _clean(n: int, channels: int, frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames) / SR
    tone = torch.sin(2 * math.pi * 440 * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * 2 * t))
    return 0.3 * tone + 0.05 * torch.randn(n, channels, frames, generator=g)


def test_draw_contents_and_reproducibility():
    synth = N.NoiseSynth(SR, snr_db=(0.0, 10.0), gain_db=(-3.0, 0.0))
    p = synth.draw(torch.Generator().manual_seed(3))
    assert set(p) == {"snr_db", "category", "use_file", "gain_db", "flip", "swap", "noise_seed"}
    assert set(p) == set(synth.param_keys)
    assert all(v.dim() == 0 for v in p.values())
    assert p["snr_db"].dtype == torch.float32 and 0 <= p["snr_db"] <= 10
    assert p["category"].dtype == torch.int64 and p["noise_seed"].dtype == torch.int64
    assert p["use_file"].dtype == p["flip"].dtype == p["swap"].dtype == torch.bool
    q = synth.draw(torch.Generator().manual_seed(3))
    assert all(torch.equal(p[k], q[k]) for k in p)
    r = synth.draw(torch.Generator().manual_seed(4))
    assert p["noise_seed"] != r["noise_seed"]


def test_category_weights_are_respected():
    synth = N.NoiseSynth(SR, categories={"electrical": 3.0, "traffic": 1.0})
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.stack([synth.draw(g)["category"] for _ in range(4000)]), minlength=5)
    assert counts[[1, 2, 4]].sum() == 0
    share = counts[0].item() / 4000
    assert abs(share - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 4000)
    uniform = N.NoiseSynth(SR, snr_db=(-5.0, 15.0), file_noise_prob=0.3, flip_prob=0.5, swap_prob=0.0)
    draws = default_collate([uniform.draw(g) for _ in range(2000)])
    counts = torch.bincount(draws["category"], minlength=5)
    assert (counts - 400).abs().max() < 4 * math.sqrt(2000 * 0.2 * 0.8)
    assert abs(draws["use_file"].float().mean().item() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 2000)
    assert abs(draws["flip"].float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / 2000)
    assert not draws["swap"].any()
    snr = draws["snr_db"]
    assert snr.min() >= -5.0 and snr.max() <= 15.0 and abs(snr.mean().item() - 5.0) < 0.6
    assert len(set(draws["noise_seed"].tolist())) == 2000


def test_module_has_no_parameters_and_checks_params():
    synth = N.NoiseSynth(SR)
    assert list(synth.parameters()) == [] and list(synth.buffers()) == []
    params = _batch(synth, 2)
    del params["noise_seed"]
    with pytest.raises(ValueError, match="noise_seed"):
        synth(torch.zeros(2, 1, 100), params)


def test_bad_arguments_rejected():
    with pytest.raises(ValueError, match="stationary"):
        N.NoiseSynth(SR, categories={"rain": 1.0})
    with pytest.raises(ValueError, match="not all zero"):
        N.NoiseSynth(SR, categories={"crowd": 0.0})
    with pytest.raises(ValueError, match="snr_db"):
        N.NoiseSynth(SR, snr_db=(10.0, 0.0))
    with pytest.raises(ValueError, match="file_noise_prob"):
        N.NoiseSynth(SR, file_noise_prob=1.5)


@pytest.mark.parametrize("channels", [1, 2])
def test_output_snr_equals_drawn_snr(channels):
    synth = N.NoiseSynth(SR, snr_db=(-5.0, 20.0), gain_db=(-6.0, 6.0))
    params = _batch(synth, 10)
    clean = _clean(10, channels, SR // 2)
    noisy, target = synth(clean, params)
    assert noisy.shape == target.shape == clean.shape
    assert torch.isfinite(noisy).all()
    measured = N.snr_db(target, noisy - target)
    torch.testing.assert_close(measured, params["snr_db"], atol=0.05, rtol=0)
    assert noisy.abs().max() <= 1.0 + 1e-6 and target.abs().max() <= 1.0 + 1e-6
    # same parameters, same scene
    again, _ = synth(clean, params)
    torch.testing.assert_close(again, noisy, atol=2e-5, rtol=1e-4)


def test_gain_flip_and_swap_are_applied_to_both():
    synth = N.NoiseSynth(SR)
    clean = _clean(4, 2, SR // 4)
    params = _batch(synth, 4)
    params["gain_db"] = torch.tensor([0.0, -6.0, -6.0, -12.0])
    params["flip"] = torch.tensor([False, True, False, True])
    params["swap"] = torch.tensor([False, False, True, True])
    params["category"] = torch.tensor([4, 4, 4, 4])
    noisy, target = synth(clean, params)
    gain = 10 ** (params["gain_db"] / 20) * torch.where(params["flip"], -1.0, 1.0)
    expected = clean * gain[:, None, None]
    expected[params["swap"]] = expected[params["swap"]].flip(1)
    torch.testing.assert_close(target, expected)
    # the noise went through the same transform: undo it and compare with the procedural noise itself
    residual = (noisy - target) / gain[:, None, None]
    residual[params["swap"]] = residual[params["swap"]].flip(1)
    raw = synth.procedural(params["noise_seed"], params["category"], 2, SR // 4)
    ratio = residual / raw
    assert (ratio > 0).all()  # same polarity everywhere
    torch.testing.assert_close(ratio.std(dim=(1, 2)), torch.zeros(4), atol=1e-3, rtol=0)


def test_peaks_are_limited_without_changing_snr():
    synth = N.NoiseSynth(SR, snr_db=(0.0, 0.0), gain_db=(6.0, 6.0))
    clean = 0.9 * torch.sign(torch.randn(3, 1, 4000, generator=torch.Generator().manual_seed(1)))
    params = _batch(synth, 3)
    noisy, target = synth(clean, params)
    peak = torch.maximum(noisy.abs().amax((1, 2)), target.abs().amax((1, 2)))
    torch.testing.assert_close(peak, torch.ones(3))
    torch.testing.assert_close(N.snr_db(target, noisy - target), torch.zeros(3), atol=0.05, rtol=0)


def test_file_noise_used_exactly_where_use_file():
    synth = N.NoiseSynth(SR, gain_db=(0.0, 0.0), flip_prob=0.0, swap_prob=0.0)
    frames = SR // 4
    params = _batch(synth, 6)
    params["use_file"] = torch.tensor([True, False, True, False, True, True])
    file_noise = torch.randn(6, 2, frames, generator=torch.Generator().manual_seed(9)) * 0.1
    file_noise[5] = 0.0  # a silent chunk falls back to procedural noise
    clean = _clean(6, 2, frames)
    noisy, target = synth(clean, params, file_noise=file_noise)
    residual = noisy - target
    raw = synth.procedural(params["noise_seed"], params["category"], 2, frames)

    def corr(a, b):
        a, b = a.flatten(), b.flatten()
        return ((a * b).mean() / (a.pow(2).mean() * b.pow(2).mean()).sqrt()).item()

    for b, used in enumerate([True, False, True, False, True, False]):
        source = file_noise[b] if used else raw[b]
        assert corr(residual[b], source) > 0.9999, b
        other = raw[b] if used else file_noise[b]
        if other.abs().sum() > 0:
            assert abs(corr(residual[b], other)) < 0.2
    torch.testing.assert_close(N.snr_db(target, residual), params["snr_db"], atol=0.05, rtol=0)


def test_silent_clean_and_silent_noise_stay_finite():
    synth = N.NoiseSynth(SR)
    params = _batch(synth, 2)
    params["use_file"] = torch.tensor([True, True])
    noisy, target = synth(torch.zeros(2, 1, 1000), params, file_noise=torch.zeros(2, 1, 1000))
    assert torch.isfinite(noisy).all() and (target == 0).all()
    assert 0 < noisy.abs().max() < 1e-3  # noise at the silence level, not blown up
    clean = _clean(2, 1, 1000)
    torch.testing.assert_close(N.mix_at_snr(clean, torch.zeros_like(clean), 10.0), clean)


def test_mix_at_snr_hits_float_and_per_example_targets():
    g = torch.Generator().manual_seed(2)
    clean, noise = torch.randn(3, 2, 5000, generator=g), 7 * torch.randn(3, 2, 5000, generator=g)
    for target in (6.0, torch.tensor([-5.0, 0.0, 30.0])):
        noisy = N.mix_at_snr(clean, noise, target)
        expected = torch.as_tensor(target).expand(3)
        torch.testing.assert_close(N.snr_db(clean, noisy - clean), expected, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="same shape"):
        N.mix_at_snr(clean, noise[..., :10], 0.0)


def test_runs_under_autocast():
    synth = N.NoiseSynth(SR)
    params = _batch(synth, 3)
    clean = _clean(3, 2, 4000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        noisy, target = synth(clean, params)
    assert noisy.dtype == torch.float32
    torch.testing.assert_close(N.snr_db(target, noisy - target), params["snr_db"], atol=0.05, rtol=0)


@pytest.mark.gpu
@CUDA
def test_cuda_matches_cpu():
    synth = N.NoiseSynth(SR)
    params = _batch(synth, 5)
    clean = _clean(5, 2, SR // 2)
    cpu_noisy, cpu_target = synth(clean, params)
    gpu_params = {k: v.cuda() for k, v in params.items()}
    with torch.autocast("cuda", dtype=torch.float16):
        gpu_noisy, gpu_target = synth(clean.cuda(), gpu_params)
    torch.testing.assert_close(gpu_target.cpu(), cpu_target)
    torch.testing.assert_close(gpu_noisy.cpu(), cpu_noisy, atol=1e-4, rtol=1e-3)
