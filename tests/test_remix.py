"""The Demucs-style stem augmentations of musicfx.synth.remix: determinism per example, statistics, and
that Remix trades stems between songs without losing any."""
from __future__ import annotations

import pytest
import torch

from musicfx.synth.remix import ChannelSwap, RandomGain, Remix, RemixAugment, Shift, SignFlip


def _seeds(batch: int, offset: int = 0) -> torch.Tensor:
    return torch.arange(offset, offset + batch, dtype=torch.int64) * 7919 + 12345


def _labelled(batch: int, stems: int, channels: int = 2, time: int = 16) -> torch.Tensor:
    """Every sample of stem s of example b holds 100 b + s (+ 0.5 on the right channel), so the origin of
    every output stem can be read off its value."""
    value = 100.0 * torch.arange(batch)[:, None, None, None] + torch.arange(stems)[None, :, None, None]
    value = value + 0.5 * (torch.arange(channels)[None, None, :, None] == 1)
    return value.expand(batch, stems, channels, time).clone()


PER_EXAMPLE = [Shift(5), SignFlip(0.5), ChannelSwap(0.5), RandomGain(0.25, 1.25),
               RemixAugment(shift=5, remix=False)]


@pytest.mark.parametrize("module", PER_EXAMPLE, ids=lambda m: type(m).__name__)
def test_per_example_augmentations_are_deterministic_and_batch_independent(module):
    torch.manual_seed(0)
    extra = 5 if isinstance(module, (Shift, RemixAugment)) else 0
    stems = torch.randn(6, 3, 2, 32 + extra)
    seeds = _seeds(6)
    out = module(stems, seeds)
    assert out.shape == (6, 3, 2, 32)
    assert torch.equal(out, module(stems.clone(), seeds.clone()))
    assert not torch.equal(out, stems[..., :32])  # something happened
    # Each example alone, and the batch reversed, give the same result as in the batch.
    for b in range(6):
        assert torch.equal(module(stems[b:b + 1], seeds[b:b + 1]), out[b:b + 1])
    assert torch.equal(module(stems.flip(0), seeds.flip(0)), out.flip(0))
    # Other seeds, other augmentations.
    assert not torch.equal(module(stems, _seeds(6, offset=100)), out)


def test_shift_crops_each_stem_at_its_own_offset():
    batch, stems, shift, length = 256, 4, 7, 20
    ramp = torch.arange(length + shift, dtype=torch.float32).expand(batch, stems, 2, length + shift).clone()
    out = Shift(shift)(ramp, _seeds(batch))
    offsets = out[..., 0, 0]
    assert out.shape == (batch, stems, 2, length)
    # Contiguous windows, the same offset on both channels of a stem.
    assert torch.equal(out, (offsets[..., None, None] + torch.arange(length, dtype=torch.float32)).expand_as(out))
    counts = torch.bincount(offsets.long().flatten(), minlength=shift + 1)
    assert counts.numel() == shift + 1 and bool((counts > 0).all())  # every offset in [0, shift] occurs
    expected = batch * stems / (shift + 1)
    assert bool(((counts - expected).abs() < 0.3 * expected).all())  # roughly uniform
    # Stems of one example move independently.
    assert float((offsets[:, 0] != offsets[:, 1]).float().mean()) > 0.7
    assert Shift(shift).augmented_length(length) == length + shift


def test_shift_zero_is_identity_and_too_short_input_fails():
    stems = torch.randn(2, 2, 2, 10)
    assert Shift(0)(stems, _seeds(2)) is stems
    with pytest.raises(ValueError, match="frames"):
        Shift(10)(stems, _seeds(2))


def test_sign_flip_probability():
    batch, stems = 2000, 4
    ones = torch.ones(batch, stems, 2, 3)
    out = SignFlip(0.5)(ones, _seeds(batch))
    sign = out[..., 0, 0]
    assert set(sign.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(out, sign[..., None, None].expand_as(out))  # whole stem flipped
    assert abs(float((sign < 0).float().mean()) - 0.5) < 0.03
    assert torch.equal(SignFlip(0.0)(ones, _seeds(batch)), ones)
    assert torch.equal(SignFlip(1.0)(ones, _seeds(batch)), -ones)
    assert abs(float((SignFlip(0.2)(ones, _seeds(batch))[..., 0, 0] < 0).float().mean()) - 0.2) < 0.03


def test_channel_swap_probability_and_mono():
    batch, stems = 2000, 4
    labelled = _labelled(batch, stems, channels=2, time=3)
    out = ChannelSwap(0.5)(labelled, _seeds(batch))
    swapped = out[..., 0, 0] != labelled[..., 0, 0]
    assert torch.equal(out[swapped][:, 0], labelled[swapped][:, 1])
    assert torch.equal(out[swapped][:, 1], labelled[swapped][:, 0])
    assert torch.equal(out[~swapped], labelled[~swapped])
    assert abs(float(swapped.float().mean()) - 0.5) < 0.03
    mono = torch.randn(4, 2, 1, 8)
    assert torch.equal(ChannelSwap(1.0)(mono, _seeds(4)), mono)
    # Three channels: the first two swap, the third stays.
    three = torch.arange(3, dtype=torch.float32)[None, None, :, None].expand(2, 1, 3, 4)
    assert ChannelSwap(1.0)(three, _seeds(2))[0, 0, :, 0].tolist() == [1.0, 0.0, 2.0]
    # Sign flips and channel swaps use different streams of the same seed.
    flips = SignFlip(0.5)(torch.ones(batch, stems, 2, 1), _seeds(batch))[..., 0, 0] < 0
    assert 0.4 < float((flips == swapped).float().mean()) < 0.6


def test_random_gain_range_and_distribution():
    batch, stems = 2000, 4
    ones = torch.ones(batch, stems, 2, 3)
    out = RandomGain(0.25, 1.25)(ones, _seeds(batch))
    gain = out[..., 0, 0]
    assert torch.equal(out, gain[..., None, None].expand_as(out))
    assert float(gain.min()) >= 0.25 and float(gain.max()) < 1.25
    assert abs(float(gain.mean()) - 0.75) < 0.02  # U(0.25, 1.25): mean 0.75, sd 0.289
    assert abs(float(gain.std()) - 1 / 12 ** 0.5) < 0.02
    assert float((gain[:, 0] - gain[:, 1]).abs().mean()) > 0.2  # stems independent
    half = RandomGain(0.5, 0.5, p=0.5)(ones, _seeds(batch))[..., 0, 0]
    assert set(half.unique().tolist()) == {0.5, 1.0}
    assert abs(float((half == 0.5).float().mean()) - 0.5) < 0.03
    assert torch.equal(RandomGain(0.25, 1.25, p=0.0)(ones, _seeds(batch)), ones)


def _origin(out: torch.Tensor) -> torch.Tensor:
    """The example index each output stem came from, (B, S), for stems made by :func:`_labelled`."""
    return (out[..., 0, 0] // 100).long()


def test_remix_permutes_each_stem_within_groups():
    batch, stems, group = 400, 4, 4
    labelled = _labelled(batch, stems)
    out = Remix(group)(labelled, _seeds(batch))
    origin = _origin(out)
    # The stem index and the channels are untouched: only songs are traded.
    assert torch.equal(out[..., 0, 0] % 100, torch.arange(stems, dtype=torch.float32).expand(batch, stems))
    assert torch.equal(out[..., 1, :] - out[..., 0, :], torch.full_like(out[..., 0, :], 0.5))
    for start in range(0, batch, group):
        block = origin[start:start + group]
        for s in range(stems):  # each stem: a permutation of the group's examples
            assert sorted(block[:, s].tolist()) == list(range(start, start + group))
    stays = origin == torch.arange(batch)[:, None]
    assert abs(float(stays.float().mean()) - 1 / group) < 0.03  # uniform permutations
    # Stems of one example come from different songs.
    mixed = torch.tensor([len(set(row.tolist())) > 1 for row in origin])
    assert float(mixed.float().mean()) > 0.9


def test_remix_is_deterministic_per_group_and_handles_a_partial_group():
    batch, stems, group = 10, 4, 4
    labelled = _labelled(batch, stems)
    seeds = _seeds(batch)
    out = Remix(group)(labelled, seeds)
    assert torch.equal(out, Remix(group)(labelled.clone(), seeds.clone()))
    # A group's result depends on its own members only.
    assert torch.equal(Remix(group)(labelled[4:8], seeds[4:8]), out[4:8])
    origin = _origin(out)
    for s in range(stems):
        assert sorted(origin[8:, s].tolist()) == [8, 9]  # last partial group remixed within itself
    # Over many seeds the partial group of two does swap (each stem with probability 1/2).
    swaps = [bool((_origin(Remix(group)(labelled, _seeds(batch, k)))[8:] != torch.tensor([[8], [9]])).any())
             for k in range(20)]
    assert 10 <= sum(swaps) <= 20
    assert torch.equal(Remix(group, p=0.0)(labelled, seeds), labelled)
    assert torch.equal(Remix(1)(labelled, seeds), labelled)


def test_remix_probability_per_group():
    batch, stems, group = 800, 4, 4
    labelled = _labelled(batch, stems)
    origin = _origin(Remix(group, p=0.5)(labelled, _seeds(batch)))
    untouched = (origin == torch.arange(batch)[:, None]).view(-1, group * stems).all(dim=1)
    # A group is left alone with p = 0.5, plus the rare remix whose permutations are all identities.
    assert abs(float(untouched.float().mean()) - 0.5) < 0.08


def test_remix_augment_composition():
    batch, stems, shift, length = 8, 4, 6, 24
    augment = RemixAugment(shift=shift, group_size=4)
    assert augment.extra_frames == shift and augment.augmented_length(length) == length + shift
    assert [type(m).__name__ for m in augment.augmentations] == [
        "Shift", "SignFlip", "ChannelSwap", "RandomGain", "Remix"]
    stems = torch.randn(batch, stems, 2, length + shift)
    seeds = _seeds(batch)
    out = augment(stems, seeds)
    assert out.shape == (batch, 4, 2, length)
    assert torch.equal(out, augment(stems, seeds))
    # Energy moves only by the gains: every output stem is some input stem's window times a gain <= 1.25.
    assert float(out.abs().max()) <= 1.25 * float(stems.abs().max()) + 1e-6
    identity = RemixAugment(shift=0, remix=False, gain=None, channel_swap=0.0, sign_flip=0.0)
    assert len(identity.augmentations) == 0
    assert torch.equal(identity(stems, seeds), stems)


def test_half_precision_and_bad_input():
    stems = torch.randn(4, 2, 2, 12, dtype=torch.bfloat16)
    out = RemixAugment(shift=2)(stems, _seeds(4))
    assert out.dtype == torch.bfloat16 and out.shape == (4, 2, 2, 10)
    with pytest.raises(ValueError, match="batch, stems, channels, time"):
        SignFlip()(torch.randn(2, 2, 8), _seeds(2))
    with pytest.raises(ValueError, match="int64"):
        SignFlip()(torch.randn(2, 2, 2, 8), torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError):
        SignFlip(1.5)
