"""Counter-based random numbers computed with batched torch integer ops.

Scene *waveforms* are synthesized on the device for a whole batch at once, yet each example's noise must be
fixed by its own seed alone: the same whatever else is in the batch, in whatever order, on whichever device.
A stateful generator cannot give that without one generator per example, so every value here is a pure
function ``hash(seed, stream, counter)``: the splitmix64 finalizer applied to a key derived from the seed and
the stream, offset by the element's counter. Integer arithmetic wraps identically on CPU and CUDA, so the
bits are exact everywhere; the float conversion uses 24 bits, which float32 represents exactly.
"""
from __future__ import annotations

import math
from typing import Iterator, Tuple

import torch
from torch import Tensor

__all__ = ["mix64", "derive_seeds", "hash_bits", "hash_uniform", "hash_normal"]


def _signed(value: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    return value - (1 << 64) if value >= (1 << 63) else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)
_STREAM_MULTIPLIER = 0xD1B54A32D192ED03  # odd: distinct (stream, lane) pairs get distinct offsets
# Separate the key spaces of uniforms, the two Box-Muller inputs and derived seeds, so that no public call
# can reproduce another's numbers by a choice of stream.
_LANE_UNIFORM, _LANE_RADIUS, _LANE_ANGLE, _LANE_SEED = 0, 1, 2, 3

_UNIT = 1.0 / (1 << 24)


def _shr(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64: torch's ``>>`` is arithmetic (copies the sign bit), splitmix needs zeros."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix64_(x: Tensor) -> Tensor:
    """:func:`mix64` in place. Shifts go through one scratch tensor: on a CPU each pass over memory costs
    about as much as the arithmetic, and new tensors for every shift double the passes."""
    scratch = torch.empty_like(x)
    for shift, multiplier in ((30, _MUL1), (27, _MUL2), (31, None)):
        torch.bitwise_right_shift(x, shift, out=scratch)
        x ^= scratch.bitwise_and_((1 << (64 - shift)) - 1)  # arithmetic shift -> logical shift
        if multiplier is not None:
            x *= multiplier
    return x


def mix64(x: Tensor) -> Tensor:
    """The splitmix64 finalizer: a bijection of 64-bit integers with full avalanche.

    Args:
        x: int64 tensor of any shape (not modified).

    Returns:
        int64 tensor of the same shape.
    """
    return _mix64_(x.clone())


def _check_seeds(seeds: Tensor) -> None:
    if seeds.dim() != 1 or seeds.dtype != torch.int64:
        raise ValueError(f"seeds must be a 1-D int64 tensor, got shape {tuple(seeds.shape)} and {seeds.dtype}")


def _keys(seeds: Tensor, stream: int, lane: int) -> Tensor:
    """One 64-bit key per seed, stream and lane, each bit depending on all three."""
    offset = _signed(((stream * 4 + lane + 1) * _STREAM_MULTIPLIER) % (1 << 64))
    return _mix64_(mix64(seeds) + offset)


def derive_seeds(seeds: Tensor, salt: int) -> Tensor:
    """New per-example seeds, unrelated to ``seeds`` and to those of any other ``salt``.

    Lets one scene seed drive several independent components (hum, hiss, clicks, ...).

    Args:
        seeds: int64 tensor of shape (B,).
        salt: which derived seed; any Python int.

    Returns:
        int64 tensor of shape (B,), on the seeds' device.
    """
    _check_seeds(seeds)
    return _keys(seeds, salt, _LANE_SEED)


# On a CPU the hash is bound by memory traffic: working through blocks that stay in cache is ~4x faster than
# whole-tensor passes. A GPU gains nothing from blocks, so it takes everything in one.
_CPU_BLOCK_ELEMENTS = 1 << 18


def _blocks(batch: int, num: int, device: torch.device) -> Iterator[Tuple[int, int]]:
    """Counter ranges ``[start, stop)`` to compute at a time."""
    step = num if device.type != "cpu" else max(1, _CPU_BLOCK_ELEMENTS // max(batch, 1))
    for start in range(0, num, step):
        yield start, min(num, start + step)


def _bits_range(key: Tensor, start: int, stop: int) -> Tensor:
    """Hashed words for counters ``start..stop-1`` of each key: (B,) -> (B, stop - start)."""
    counter = torch.arange(start + 1, stop + 1, dtype=torch.int64, device=key.device) * _GOLDEN
    return _mix64_(key[:, None] + counter[None, :])


def hash_bits(seeds: Tensor, num: int, stream: int = 0) -> Tensor:
    """``num`` hashed 64-bit words per seed (the raw material of :func:`hash_uniform`).

    Args:
        seeds: int64 tensor of shape (B,).
        num: words per seed.
        stream: independent sequence number.

    Returns:
        int64 tensor of shape (B, num): element ``[b, i]`` depends only on ``seeds[b]``, stream and i.
    """
    _check_seeds(seeds)
    key = _keys(seeds, stream, _LANE_UNIFORM)
    return _bits_range(key, 0, num)


def _to_unit_(bits: Tensor) -> Tensor:
    """Top 24 bits of each word as float32 in [0, 1)."""
    return _shr(bits, 40).to(torch.float32).mul_(_UNIT)


def hash_uniform(seeds: Tensor, shape: Tuple[int, ...], stream: int = 0) -> Tensor:
    """Uniform numbers in [0, 1), a pure function of (seed, stream, position).

    Args:
        seeds: int64 tensor of shape (B,).
        shape: shape of the numbers drawn for each seed.
        stream: independent sequence number; different streams give independent numbers.

    Returns:
        float32 tensor of shape (B, *shape) on the seeds' device, multiples of 2**-24.
    """
    _check_seeds(seeds)
    batch, num = seeds.shape[0], math.prod(shape)
    key = _keys(seeds, stream, _LANE_UNIFORM)
    out = torch.empty(batch, num, dtype=torch.float32, device=seeds.device)
    for start, stop in _blocks(batch, num, seeds.device):
        out[:, start:stop] = _to_unit_(_bits_range(key, start, stop))
    return out.reshape(batch, *shape)


def hash_normal(seeds: Tensor, shape: Tuple[int, ...], stream: int = 0) -> Tensor:
    """Standard normal numbers by Box-Muller from two hashed uniform streams.

    Both outputs of each Box-Muller pair are used (cosine for the first half of the positions, sine for the
    second), which halves the hashing work; the two are independent by construction.

    Args:
        seeds: int64 tensor of shape (B,).
        shape: shape of the numbers drawn for each seed.
        stream: independent sequence number (its numbers are unrelated to :func:`hash_uniform`'s stream
            of the same number).

    Returns:
        float32 tensor of shape (B, *shape) on the seeds' device; |values| < 5.8 (24-bit uniforms).
    """
    _check_seeds(seeds)
    batch, num = seeds.shape[0], math.prod(shape)
    half = (num + 1) // 2
    radius_key = _keys(seeds, stream, _LANE_RADIUS)
    angle_key = _keys(seeds, stream, _LANE_ANGLE)
    out = torch.empty(batch, 2 * half, dtype=torch.float32, device=seeds.device)
    for start, stop in _blocks(batch, half, seeds.device):
        # (bits + 1) / 2**24 lies in (0, 1]: the logarithm never sees zero.
        radius = _shr(_bits_range(radius_key, start, stop), 40).to(torch.float32).add_(1.0).mul_(_UNIT)
        radius = radius.log_().mul_(-2.0).sqrt_()
        angle = _to_unit_(_bits_range(angle_key, start, stop)).mul_(2.0 * math.pi)
        out[:, start:stop] = radius * torch.cos(angle)
        out[:, half + start : half + stop] = radius.mul_(torch.sin(angle))
    return out[:, :num].reshape(batch, *shape)
