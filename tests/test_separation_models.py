"""Separation models (CNN soft mask, Open-Unmix, BS-RoFormer, WaveGAN) and their losses, at tiny sizes."""
from __future__ import annotations

import math
from typing import Dict

import pytest
import torch

from musicfx.data.generator import generate_stems
from musicfx.errors import AudioError
from musicfx.losses.separation import (
    AdversarialLoss,
    MagnitudeLoss,
    MaskBCELoss,
    MixtureConsistencyLoss,
    ideal_binary_mask,
)
from musicfx.losses.waveform import MultiResolutionSTFTLoss, SISDRLoss, WaveformLoss
from musicfx.losses.papers import BSRoFormerLoss, UnmixMagnitudeLoss
from musicfx.models.bs_roformer import BSRoFormer, RotaryEmbedding, band_split_widths
from musicfx.models.mel_band_roformer import MelBandRoFormer, mel_band_bins
from musicfx.models.cnn_mask import CNNSoftMask
from musicfx.models.open_unmix import OpenUnmix, wiener
from musicfx.models.wavegan import WaveGANDiscriminator, WaveGANGenerator, phase_shuffle

SR = 22050
STEMS = ("vocals", "bass", "drums", "other")


@pytest.fixture(scope="module")
def batch() -> Dict[str, torch.Tensor]:
    """Two stereo 0.5 s pieces from the built-in generator: stems (2, 4, 2, T) and their mix (2, 2, T)."""
    pieces = []
    for seed in (1, 2):
        stems = generate_stems(SR // 2, SR, 2, torch.Generator().manual_seed(seed))
        pieces.append(torch.stack([stems[name] for name in STEMS]))
    stems = torch.stack(pieces)
    return {"stems": stems, "mix": stems.sum(dim=1)}


def tiny_cnn(channels: int = 2, **kwargs) -> CNNSoftMask:
    return CNNSoftMask(channels=channels, n_fft=256, hop_length=64, conv_channels=(4, 4), hidden=(32,), **kwargs)


def tiny_umx(channels: int = 2, **kwargs) -> OpenUnmix:
    options = dict(sample_rate=SR, n_fft=256, hop_length=64, hidden_size=16, nb_layers=2, bandwidth=8000.0)
    options.update(kwargs)
    return OpenUnmix(channels=channels, **options)


def tiny_roformer(channels: int = 2, **kwargs) -> BSRoFormer:
    options = dict(sample_rate=SR, n_fft=256, hop_length=64, dim=16, depth=1, heads=2, dim_head=8, mask_mult=2)
    options.update(kwargs)
    return BSRoFormer(channels=channels, **options)


def tiny_mel_roformer(channels: int = 2, **kwargs) -> MelBandRoFormer:
    options = dict(sample_rate=SR, n_fft=256, hop_length=64, num_bands=16, dim=16, depth=1, heads=2, dim_head=8,
                   mask_mult=2)
    options.update(kwargs)
    return MelBandRoFormer(channels=channels, **options)


def tiny_generator(channels: int = 2) -> WaveGANGenerator:
    return WaveGANGenerator(channels=channels, widths=(8, 16, 16), kernel_size=25, stride=4)


# ---------------------------------------------------------------------------------------------- losses


def test_ideal_binary_mask_marks_the_dominant_stem():
    # (batch=1, stems, channels=1, freq=1, frames)
    two = torch.tensor([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0]]).reshape(1, 2, 1, 1, 3)
    assert ideal_binary_mask(two).flatten().tolist() == [1, 0, 0, 0, 1, 0]  # a tie gives 0 to both
    three = torch.tensor([[5.0, 2.0], [1.0, 2.0], [1.0, 1.0]]).reshape(1, 3, 1, 1, 2)
    # Bin 2: no stem is louder than the other two together.
    assert ideal_binary_mask(three).flatten().tolist() == [1, 0, 0, 0, 0, 0]
    complex_input = torch.polar(two, torch.full_like(two, 0.7))
    assert torch.equal(ideal_binary_mask(complex_input), ideal_binary_mask(two))


def test_mask_bce_known_values():
    targets = torch.tensor([2.0, 1.0]).reshape(1, 2, 1, 1, 1)  # IBM: stem 0 = 1, stem 1 = 0
    half = torch.full((1, 2, 1, 1, 1), 0.5)
    assert MaskBCELoss.domain == "mask"  # SeparationTask feeds it masks and spectrograms, not waveforms
    assert MaskBCELoss()(half, targets).item() == pytest.approx(math.log(2.0), rel=1e-6)
    masks = torch.tensor([0.9, 0.2]).reshape(1, 2, 1, 1, 1)
    expected = (-math.log(0.9) - math.log(0.8)) / 2
    assert MaskBCELoss()(masks, targets).item() == pytest.approx(expected, rel=1e-6)
    per_example = MaskBCELoss(reduction="none")(torch.cat([half, masks]), torch.cat([targets, targets]))
    assert per_example.shape == (2,)
    assert per_example.tolist() == pytest.approx([math.log(2.0), expected], rel=1e-6)
    total = MaskBCELoss(reduction="sum")(torch.cat([half, masks]), torch.cat([targets, targets]))
    assert total.item() == pytest.approx(math.log(2.0) + expected, rel=1e-6)


def test_magnitude_loss_of_a_cosine_matches_the_hann_spectrum():
    # A cosine at bin k0 whose length makes the reflect padding continue it seamlessly: every frame's
    # periodic-Hann spectrum is N/4 at k0 and N/8 at k0 +- 1, 0 elsewhere.
    n_fft, k0 = 16, 2
    period = n_fft // k0
    t = torch.arange(period * 12 + 1, dtype=torch.float32)
    target = torch.cos(2 * math.pi * t / period).reshape(1, 1, 1, -1)
    silence = torch.zeros_like(target)
    bins = n_fft // 2 + 1
    l1 = MagnitudeLoss("l1", n_fft=n_fft, hop_length=4)(silence, target).item()
    mse = MagnitudeLoss("mse", n_fft=n_fft, hop_length=4)(silence, target).item()
    assert l1 == pytest.approx((n_fft / 4 + 2 * n_fft / 8) / bins, rel=1e-4)
    assert mse == pytest.approx(((n_fft / 4) ** 2 + 2 * (n_fft / 8) ** 2) / bins, rel=1e-4)
    assert MagnitudeLoss("l1", n_fft=n_fft, hop_length=4)(target, target).item() == pytest.approx(0.0, abs=1e-5)
    # Magnitudes are 1-homogeneous: twice the target is one target magnitude away.
    assert MagnitudeLoss("l1", n_fft=n_fft, hop_length=4)(2 * target, target).item() == pytest.approx(l1, rel=1e-4)
    per_example = MagnitudeLoss(n_fft=n_fft, hop_length=4, reduction="none")
    assert per_example(silence.repeat(3, 2, 2, 1), target.repeat(3, 2, 2, 1)).shape == (3,)


def test_adversarial_and_mixture_consistency_known_values():
    lsgan, hinge = AdversarialLoss("lsgan"), AdversarialLoss("hinge")
    assert lsgan.generator(torch.tensor([0.0, 1.0])).item() == pytest.approx(0.25)
    assert lsgan.discriminator(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(0.5)
    assert hinge.generator(torch.tensor([-2.0, 0.5])).item() == pytest.approx(0.75)
    assert hinge.discriminator(torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])).item() == pytest.approx(1.25)
    assert AdversarialLoss("lsgan", reduction="none").generator(torch.tensor([0.0, 1.0])).tolist() == [0.5, 0.0]
    mix = torch.randn(2, 2, 50)
    estimates = torch.stack([mix / 2, mix / 2 + 0.25, torch.full_like(mix, 0.25)], dim=1)
    assert MixtureConsistencyLoss()(estimates, mix).item() == pytest.approx(0.5, rel=1e-5)
    assert MixtureConsistencyLoss(reduction="sum")(estimates, mix).item() == pytest.approx(1.0, rel=1e-5)


def test_waveform_losses_accept_stem_batches(batch):
    stems = batch["stems"][..., :2048]
    noisy = stems + 0.1 * torch.randn(stems.shape, generator=torch.Generator().manual_seed(0))
    assert WaveformLoss("l1", reduction="none")(noisy, stems).shape == (2,)
    assert WaveformLoss()(stems, stems).item() == 0.0
    mrstft = MultiResolutionSTFTLoss((64, 128), (16, 32), (64, 128))
    assert mrstft(stems, stems).item() == pytest.approx(0.0, abs=1e-4)
    assert mrstft(noisy, stems).item() > 0.1
    # SISDRLoss flattens stems and channels together: one scale per example, not per stem.
    assert SISDRLoss(reduction="none")(noisy, stems).shape == (2,)


# ---------------------------------------------------------------------------------------------- CNN


@pytest.mark.parametrize("channels,length", [(1, 3001), (2, 4000)])
def test_cnn_shapes_and_masks(channels, length):
    torch.manual_seed(0)
    model = tiny_cnn(channels)
    mix = torch.randn(3, channels, length) * 0.3
    out = model(mix)
    assert out.shape == (3, 2, channels, length) and out.dtype == torch.float32
    masks = model.forward_masks(mix)
    assert masks.shape == (3, 2, channels, 129, 1 + length // 64)
    assert masks.min() >= 0 and masks.max() <= 1
    # Channels are separated independently: a channel's masks do not depend on the other channel.
    if channels == 2:
        swapped = model.forward_masks(mix.flip(1)).flip(2)
        torch.testing.assert_close(swapped, masks)


def test_cnn_sees_exactly_nine_frames():
    torch.manual_seed(0)
    model = tiny_cnn(1)
    spec = model.spectrogram(torch.randn(1, 1, 64 * 40))
    base = model.spectrogram_masks(spec)
    centre = 20
    far, near = spec.clone(), spec.clone()
    far[..., centre + 5] *= 3.0  # outside the 9-frame context of `centre`
    near[..., centre + 4] *= 3.0  # its last context frame
    torch.testing.assert_close(model.spectrogram_masks(far)[..., centre], base[..., centre])
    assert (model.spectrogram_masks(near)[..., centre] - base[..., centre]).abs().max() > 1e-6


def test_cnn_thresholds_as_documented():
    model = tiny_cnn(1)
    soft = torch.tensor([[0.1, 0.15, 0.5, 0.9], [0.7, 0.8, 0.85, 0.2]]).reshape(1, 2, 1, 1, 4)
    assert model.apply_thresholds(soft).flatten().tolist() == [0, 1, 1, 1, 0, 1, 1, 0]
    floor = tiny_cnn(1, threshold_mode="floor").apply_thresholds(soft).flatten()
    torch.testing.assert_close(floor, torch.tensor([0, 0.15, 0.5, 0.9, 0, 0.8, 0.85, 0]))
    unthresholded = tiny_cnn(1, vocals_threshold=None, accompaniment_threshold=None).apply_thresholds(soft)
    torch.testing.assert_close(unthresholded, soft)


def test_cnn_thresholds_change_the_output_in_eval_mode():
    torch.manual_seed(0)
    model = tiny_cnn(1).eval()
    mix = torch.randn(1, 1, 4001) * 0.3
    spec = model.spectrogram(mix)
    soft = model.forward_masks(mix)
    vocals = model(mix)[:, 0]
    binary = (soft[:, 0] >= 0.15).float()
    expected = torch.istft(binary[:, 0] * spec[:, 0], 256, 64, window=torch.hann_window(256), length=4001)
    torch.testing.assert_close(vocals[:, 0], expected, atol=1e-5, rtol=1e-4)
    model.vocals_threshold = 0.0  # every bin kept whole: the vocals output is the mix itself
    torch.testing.assert_close(model(mix)[:, 0], mix, atol=1e-5, rtol=1e-4)
    model.vocals_threshold = 1.01 - 1e-9  # nothing passes: silence
    assert model(mix)[:, 0].abs().max() == 0
    # Training mode applies the soft masks, whatever the thresholds.
    model.train()
    soft_out = torch.istft(soft[:, 0, 0] * spec[:, 0], 256, 64, window=torch.hann_window(256), length=4001)
    torch.testing.assert_close(model(mix)[:, 0, 0], soft_out, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- Open-Unmix


@pytest.mark.parametrize("channels,length", [(1, 3001), (2, 2500)])
def test_open_unmix_shapes_and_masks(channels, length):
    torch.manual_seed(0)
    model = tiny_umx(channels)
    assert model.max_bin == 93  # bins 0..92 lie at or below 8 kHz (86.1 Hz apart)
    mix = torch.randn(2, channels, length) * 0.3
    out = model(mix)
    assert out.shape == (2, 4, channels, length)
    masks = model.forward_masks(mix)
    assert masks.shape == (2, 4, channels, 129, 1 + length // 64)
    assert masks.min() >= 0 and masks.max() <= 1
    torch.testing.assert_close(masks.sum(dim=1), torch.ones_like(masks[:, 0]), atol=1e-4, rtol=0)
    # Training-mode output: ratio masks reconstruct the mixture.
    torch.testing.assert_close(out.sum(dim=1), mix, atol=1e-4, rtol=1e-3)
    model.eval()
    filtered = model(mix)
    assert filtered.shape == out.shape and torch.isfinite(filtered).all()
    single = tiny_umx(channels, sources=("vocals",)).forward_masks(mix)
    assert single.shape[1] == 1 and single.min() >= 0 and single.max() <= 1


def test_wiener_reconstructs_the_mixture_from_oracle_magnitudes(batch):
    model = tiny_umx(2, n_fft=512, hop_length=128)
    stems = batch["stems"][..., :8192]
    mix = stems.sum(dim=1)
    X, S = model.spectrogram(mix), model.spectrogram(stems)
    V = S.abs()

    def mix_error(Y: torch.Tensor) -> float:
        return ((Y.sum(dim=1) - X).abs().square().sum() / X.abs().square().sum()).item()

    def source_error(Y: torch.Tensor) -> float:
        return ((Y - S).abs().square().sum() / S.abs().square().sum()).item()

    assert mix_error(wiener(V, X, iterations=0, softmask=True)) < 1e-10
    for softmask in (False, True):
        assert mix_error(wiener(V, X, iterations=1, softmask=softmask)) < 1e-3
    # EM improves on magnitudes + mixture phase, and more so with two iterations than none.
    initial = source_error(wiener(V, X, iterations=0))
    one = source_error(wiener(V, X, iterations=1))
    assert one < 0.8 * initial
    # Open-Unmix's regularisation: loud mixtures are scaled down to a peak of 10, so any two loud levels are
    # filtered alike; quiet ones are not scaled up (the sqrt(eps) loading then weighs more).
    peak = X.abs().max()
    loud, louder = (wiener(V * g / peak, X * g / peak, iterations=1) / g for g in (1e3, 1e4))
    torch.testing.assert_close(loud, louder, atol=1e-3, rtol=1e-3)
    quiet = wiener(V * 1e-3 / peak, X * 1e-3 / peak, iterations=1) * 1e3
    assert (quiet - loud).abs().max() > 0.05 * loud.abs().max()
    # Windowed filtering (Open-Unmix's wiener_win_len) is filtering each window on its own.
    half = (X.shape[-1] + 1) // 2
    halves = torch.cat([wiener(V[..., s], X[..., s], iterations=1) for s in (slice(0, half), slice(half, None))], -1)
    torch.testing.assert_close(wiener(V, X, iterations=1, window=half), halves)
    assert (wiener(V, X, iterations=1) - halves).abs().max() > 1e-3 * halves.abs().max()
    with_residual = wiener(V[:, :2], X, iterations=0, softmask=False, residual=True)
    assert with_residual.shape[1] == 3
    assert mix_error(with_residual) < 1e-10


def test_open_unmix_eval_output_is_the_wiener_filtered_estimate(batch):
    """Eval mode runs Open-Unmix's Wiener filter on the networks' estimates; bypassing it fails this test."""
    torch.manual_seed(0)
    model = tiny_umx(2, sources=("vocals", "accompaniment"), wiener_iterations=1, wiener_window=8).eval()
    mix = batch["mix"][:1, :, :4096]
    with torch.no_grad():
        out = model(mix)
        spec = model.spectrogram(mix)
        estimates = model.estimate_magnitudes(mix)
        filtered = wiener(estimates, spec, iterations=1, window=8)
        initial = wiener(estimates, spec, iterations=0)
    expected = torch.istft(filtered.reshape(-1, 129, spec.shape[-1]), 256, 64, window=torch.hann_window(256),
                           length=mix.shape[-1]).reshape(out.shape)
    unfiltered = torch.istft(initial.reshape(-1, 129, spec.shape[-1]), 256, 64, window=torch.hann_window(256),
                             length=mix.shape[-1]).reshape(out.shape)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert (out - unfiltered).norm() > 1e-2 * out.norm()  # the EM step is not a no-op here
    model.wiener_iterations = 0
    with torch.no_grad():
        torch.testing.assert_close(model(mix), unfiltered, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- BS-RoFormer


def test_band_split_v7_and_full_coverage():
    widths = band_split_widths(2048, 44100)
    assert len(widths) == 62 and sum(widths) == 1025
    assert widths == [2] * 24 + [4] * 12 + [12] * 8 + [24] * 8 + [48] * 8 + [129, 128]
    for n_fft, sample_rate in ((256, 22050), (512, 16000), (4096, 48000), (64, 44100), (2048, 8000)):
        widths = band_split_widths(n_fft, sample_rate)
        assert sum(widths) == n_fft // 2 + 1 and min(widths) >= 1, (n_fft, sample_rate)


def test_band_split_routes_every_bin_to_exactly_one_band():
    torch.manual_seed(0)
    model = tiny_roformer(2)
    n_bins = 129
    features = torch.randn(1, 1, n_bins, 4, requires_grad=True)
    embedded = model.band_split(features)
    assert embedded.shape == (1, 1, model.num_bands, 16)
    owners = torch.zeros(n_bins, dtype=torch.long)
    for band in range(model.num_bands):
        (grad,) = torch.autograd.grad(embedded[:, :, band].sum(), features, retain_graph=True)
        reads = grad.abs().amax(dim=(0, 1, 3)) > 0  # the bins this band's embedding depends on
        owners += reads.long()
        assert reads.sum().item() == model.band_widths[band]
    assert owners.tolist() == [1] * n_bins


def test_rotary_embedding_encodes_relative_positions():
    rope = RotaryEmbedding(8)
    q = torch.randn(1, 8).expand(6, 8)
    k = torch.randn(1, 8).expand(6, 8)
    scores = rope(q) @ rope(k).T
    torch.testing.assert_close(scores.diagonal(1)[:-1], scores.diagonal(1)[1:])
    torch.testing.assert_close(scores.diagonal(0), (q[0] * k[0]).sum().expand(6))
    assert (scores.diagonal(2)[0] - scores.diagonal(0)[0]).abs() > 1e-4


@pytest.mark.parametrize("channels,length", [(1, 3001), (2, 2500)])
def test_bs_roformer_shapes(channels, length):
    torch.manual_seed(0)
    model = tiny_roformer(channels).eval()  # no dropout: calls agree
    mix = torch.randn(2, channels, length) * 0.3
    out = model(mix)
    assert out.shape == (2, 4, channels, length) and out.dtype == torch.float32
    complex_masks = model.forward_complex_masks(mix)
    assert complex_masks.shape == (2, 4, channels, 129, 1 + length // 64) and complex_masks.is_complex()
    torch.testing.assert_close(model.forward_masks(mix), complex_masks.abs())
    # The output is the inverse STFT of the complex-masked mixture.
    expected = torch.istft(
        (complex_masks * model.spectrogram(mix).unsqueeze(1)).reshape(-1, 129, complex_masks.shape[-1]),
        256, 64, window=torch.hann_window(256), length=length,
    ).reshape(out.shape)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_rotary_embedding_rotates_adjacent_pairs():
    rope = RotaryEmbedding(4, base=100.0)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]]).expand(3, 4)
    out = rope(x)
    torch.testing.assert_close(out[0], x[0])  # position 0: no rotation
    for position in (1, 2):
        # pair (0, 1) turns by p rad, pair (2, 3) by p / 100 ** (2 / 4) = p / 10 rad
        for (i, j), angle in (((0, 1), float(position)), ((2, 3), position / 10.0)):
            c, s = math.cos(angle), math.sin(angle)
            expected = torch.tensor([x[0, i] * c - x[0, j] * s, x[0, j] * c + x[0, i] * s])
            torch.testing.assert_close(out[position, [i, j]], expected)


@pytest.mark.parametrize("make", [tiny_roformer, tiny_mel_roformer], ids=["bs", "mel"])
def test_roformer_output_depends_on_the_rotary_embeddings(make, monkeypatch):
    """Removing RoPE (the identity in its place) changes the separation: the model really uses positions."""
    torch.manual_seed(0)
    model = make(2, sources=("vocals", "accompaniment")).eval()
    mix = torch.randn(1, 2, 2048) * 0.3
    with torch.no_grad():
        with_rope = model(mix)
        monkeypatch.setattr(RotaryEmbedding, "forward", lambda self, x: x)
        without = model(mix)
    assert (without - with_rope).norm() > 1e-2 * with_rope.norm()


def test_mel_bands_cover_every_bin_and_overlap():
    bins, widths = mel_band_bins(2048, 44100, 60)
    assert len(widths) == 60 and sum(widths) == len(bins)
    assert set(bins) == set(range(1025))  # every bin in a band
    assert len(bins) > 1025  # neighbouring triangular filters share bins
    assert widths[0] < widths[-1]  # mel: narrow bands low, wide bands high
    with pytest.raises(ValueError, match="no bin"):
        mel_band_bins(64, 44100, 60)


@pytest.mark.parametrize("channels,length", [(1, 3001), (2, 2500)])
def test_mel_band_roformer_shapes_and_averaged_masks(channels, length):
    torch.manual_seed(0)
    model = tiny_mel_roformer(channels).eval()
    mix = torch.randn(2, channels, length) * 0.3
    out = model(mix)
    assert out.shape == (2, 4, channels, length) and out.dtype == torch.float32
    masks = model.forward_complex_masks(mix)
    assert masks.shape == (2, 4, channels, 129, 1 + length // 64)
    expected = torch.istft((masks * model.spectrogram(mix).unsqueeze(1)).reshape(-1, 129, masks.shape[-1]),
                           256, 64, window=torch.hann_window(256), length=length).reshape(out.shape)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- WaveGAN


def test_phase_shuffle_shifts_with_reflection():
    x = torch.arange(10.0).reshape(1, 1, 10).repeat(64, 3, 1)
    out = phase_shuffle(x, 2, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x[:1], (2, 2), mode="reflect")[0, 0]
    seen = set()
    for row in out:
        assert torch.equal(row[0], row[1]) and torch.equal(row[0], row[2])  # one shift for all channels
        shifts = [k for k in range(-2, 3) if torch.equal(row[0], padded[2 - k: 12 - k])]
        assert len(shifts) == 1
        seen.add(shifts[0])
    assert seen == {-2, -1, 0, 1, 2}
    assert torch.equal(phase_shuffle(x, 0), x)
    again = phase_shuffle(x, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    short = phase_shuffle(torch.randn(2, 1, 2), 2, generator=torch.Generator().manual_seed(0))
    assert short.shape == (2, 1, 2)


@pytest.mark.parametrize("channels,length", [(1, 3001), (2, 1000)])
def test_wavegan_shapes(channels, length):
    torch.manual_seed(0)
    generator = tiny_generator(channels)
    discriminator = WaveGANDiscriminator(sources=4, channels=channels, widths=(8, 16, 16))
    mix = torch.randn(2, channels, length) * 0.3
    stems = generator(mix)
    assert stems.shape == (2, 4, channels, length)
    logits = discriminator(stems, mix, generator=torch.Generator().manual_seed(0))
    assert logits.shape == (2,)
    discriminator.eval()  # no phase shuffle: deterministic
    torch.testing.assert_close(discriminator(stems, mix), discriminator(stems, mix))
    discriminator.train()
    shuffled = [discriminator(stems, mix, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    assert max((a - shuffled[0]).abs().max().item() for a in shuffled[1:]) > 0


# ---------------------------------------------------------------------------------------------- training


def _vocals_accompaniment(stems: torch.Tensor) -> torch.Tensor:
    """(batch, 4, channels, time) MUSDB-ordered stems -> (batch, 2, channels, time) vocals, accompaniment."""
    return torch.stack([stems[:, 0], stems[:, 1:].sum(dim=1)], dim=1)


def _adam_steps(model: torch.nn.Module, loss_fn, steps: int, lr: float) -> list:
    """Losses before each of ``steps`` Adam steps and after the last."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(loss_fn().item())
    return losses


def test_cnn_learns_ideal_binary_masks(batch):
    torch.manual_seed(0)
    model = tiny_cnn(2)
    mix, stems = batch["mix"], batch["stems"]
    targets = model.spectrogram(_vocals_accompaniment(stems))
    loss = MaskBCELoss()
    losses = _adam_steps(model, lambda: loss(model.forward_masks(mix), targets), steps=8, lr=3e-3)
    assert losses[-1] < 0.9 * losses[0], losses


def test_open_unmix_learns_magnitudes(batch):
    torch.manual_seed(0)
    # Two targets (vocals, accompaniment) keep the CPU cost of the per-target BLSTMs down.
    model = tiny_umx(2, nb_layers=1, hop_length=128, sources=("vocals", "accompaniment"))
    mix, stems = batch["mix"], _vocals_accompaniment(batch["stems"])
    loss = MagnitudeLoss("mse", n_fft=256, hop_length=128)
    losses = _adam_steps(model, lambda: loss(model(mix), stems), steps=6, lr=1e-2)
    assert losses[-1] < 0.9 * losses[0], losses


def test_bs_roformer_learns_waveforms(batch):
    torch.manual_seed(0)
    model = tiny_roformer(2, attn_dropout=0.0, ff_dropout=0.0, sources=("vocals", "accompaniment"))
    mix, stems = batch["mix"][..., :2048], _vocals_accompaniment(batch["stems"][..., :2048])
    loss = WaveformLoss("l1")
    losses = _adam_steps(model, lambda: loss(model(mix), stems), steps=6, lr=3e-3)
    assert losses[-1] < 0.9 * losses[0], losses


def test_wavegan_generator_and_discriminator_steps(batch):
    torch.manual_seed(0)
    generator = tiny_generator(2)
    discriminator = WaveGANDiscriminator(sources=4, channels=2, widths=(8, 16, 16))
    mix, stems = batch["mix"], batch["stems"]
    l1, adversarial, consistency = WaveformLoss("l1"), AdversarialLoss("lsgan"), MixtureConsistencyLoss()
    def generator_loss() -> torch.Tensor:
        estimates = generator(mix)
        return l1(estimates, stems) + consistency(estimates, mix)

    losses = _adam_steps(generator, generator_loss, steps=8, lr=3e-3)
    assert losses[-1] < 0.9 * losses[0], losses

    # One adversarial round, as the task runs it with manual optimisation.
    g_opt = torch.optim.Adam(generator.parameters(), lr=1e-3)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    shuffle = torch.Generator().manual_seed(0)
    generator.zero_grad(set_to_none=True)
    fake = generator(mix)
    d_loss = adversarial.discriminator(discriminator(stems, mix, shuffle), discriminator(fake.detach(), mix, shuffle))
    d_opt.zero_grad()
    d_loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in discriminator.parameters())
    assert all(p.grad is None for p in generator.parameters())
    before = [p.detach().clone() for p in discriminator.parameters()]
    d_opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, discriminator.parameters()))
    discriminator.eval()
    with torch.no_grad():
        after = adversarial.discriminator(discriminator(stems, mix), discriminator(fake, mix))
    discriminator.train()
    assert torch.isfinite(after)
    g_loss = adversarial.generator(discriminator(fake, mix, shuffle)) + l1(fake, stems)
    g_opt.zero_grad()
    g_loss.backward()
    assert all(p.grad is not None for p in generator.parameters())
    g_opt.step()


def test_mel_band_roformer_learns_waveforms(batch):
    torch.manual_seed(0)
    model = tiny_mel_roformer(2, attn_dropout=0.0, ff_dropout=0.0, sources=("vocals", "accompaniment"))
    mix, stems = batch["mix"][..., :2048], _vocals_accompaniment(batch["stems"][..., :2048])
    loss = WaveformLoss("l1")
    losses = _adam_steps(model, lambda: loss(model(mix), stems), steps=6, lr=3e-3)
    assert losses[-1] < 0.9 * losses[0], losses


def test_bs_roformer_loss_is_waveform_l1_plus_complex_stft_l1(batch):
    stems = batch["stems"][:, :2, :, :4096]
    estimate = stems * 0.5 + 0.01 * torch.randn_like(stems)
    loss = BSRoFormerLoss(windows=(512, 256), hop_length=147, min_n_fft=256)
    expected = (estimate - stems).abs().mean()
    for window in (512, 256):
        def spec(x: torch.Tensor) -> torch.Tensor:
            return torch.stft(x.reshape(-1, x.shape[-1]), window, 147, window=torch.hann_window(window),
                              return_complex=True)
        expected = expected + (spec(estimate) - spec(stems)).abs().mean()
    assert loss(estimate, stems).item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss(stems, stems).item() == pytest.approx(0.0, abs=1e-6)
    assert BSRoFormerLoss(reduction="none")(estimate, stems).shape == (stems.shape[0],)


def test_unmix_magnitude_loss_is_the_mse_of_magnitudes():
    assert UnmixMagnitudeLoss.domain == "magnitude"
    estimate, target = torch.zeros(2, 2, 1, 3, 4), torch.full((2, 2, 1, 3, 4), 2.0)
    assert UnmixMagnitudeLoss()(estimate, target).item() == pytest.approx(4.0)
    assert UnmixMagnitudeLoss(reduction="sum")(estimate, target).item() == pytest.approx(8.0)


# ---------------------------------------------------------------------------------------------- precision, errors


def test_models_reject_the_wrong_channel_count():
    mono = torch.zeros(1, 1, 1000)
    for model in (tiny_cnn(2), tiny_umx(2), tiny_roformer(2), tiny_mel_roformer(2), tiny_generator(2)):
        with pytest.raises(AudioError, match="expects a mix shaped"):
            model(mono)


NO_DROPOUT = dict(attn_dropout=0.0, ff_dropout=0.0)


@pytest.mark.parametrize("make,options", [(tiny_cnn, dict(dropout=0.0)), (tiny_umx, dict(dropout=0.0)),
                                          (tiny_roformer, NO_DROPOUT), (tiny_mel_roformer, NO_DROPOUT)])
def test_masking_separators_apply_their_masks_to_the_mixture_stft(make, options, batch):
    """The shared forward pass (models.blocks.MaskingSeparator): in training mode every masking separator's
    output is exactly the inverse STFT of its masks times the mixture STFT."""
    torch.manual_seed(0)
    model = make(2, **options).train()  # no dropout: both passes see the same network
    mix = batch["mix"][:1, :, :3001]
    with torch.no_grad():
        spec = model.spectrogram(mix)
        masks = model.forward_complex_masks(mix) if hasattr(model, "forward_complex_masks") else model.forward_masks(mix)
        expected = model.istft(masks * spec.unsqueeze(1), mix.shape[-1])
        torch.testing.assert_close(model(mix), expected, rtol=0.0, atol=0.0)


def test_models_run_under_bf16_autocast(batch):
    torch.manual_seed(0)
    mix = batch["mix"][:1, :, :2048]
    models = [tiny_cnn(2), tiny_umx(2), tiny_roformer(2), tiny_mel_roformer(2), tiny_generator(2)]
    for model in models:
        model.eval()  # no dropout, so both runs see the same network (Open-Unmix: with Wiener filtering)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(mix)
        assert out.dtype == torch.float32 and torch.isfinite(out).all(), type(model).__name__
        reference = model(mix)
        # bf16 has 8 bits of mantissa: the outputs agree to a few percent of the signal level.
        assert (out - reference).abs().max() < 0.1 * reference.abs().max() + 1e-3, type(model).__name__
