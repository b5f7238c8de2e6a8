"""Seeds and splits: the one place that says which random stream an example, a generated song or a split uses.

Every example has an integer id, and everything random about it comes from :func:`example_generator`
``(seed, id)``. A run's three splits use distinct seeds (:func:`split_seed`), so validation and test examples
never repeat training ones, and the built-in generator makes distinct songs per split (:func:`song_seed`).
Files are put in splits by a hash of their relative path (:func:`hash_split`), the same on every machine.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Tuple

import torch

from musicfx.errors import DataError

_MASK64 = (1 << 64) - 1

SPLITS: Tuple[str, ...] = ("train", "valid", "test")
#: Offset of each split in the run's seeds.
SPLIT_SEEDS: Dict[str, int] = {"train": 0, "valid": 1, "test": 2}
_SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid",
                  "validation": "valid", "dev": "valid", "test": "test", "eval": "test"}


def splitmix64(value: int) -> int:
    """The splitmix64 finaliser: a bijective 64-bit hash whose outputs for nearby inputs are unrelated."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def example_seed(seed: int, example_id: int) -> int:
    """A 64-bit seed for example ``example_id`` of a run seeded with ``seed`` (any Python ints)."""
    return splitmix64(splitmix64(seed & _MASK64) ^ (example_id & _MASK64))


def example_generator(seed: int, example_id: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for one example, seeded by a hash of ``(seed, example_id)``.

    Seeding a generator with ``seed + example_id`` would make run 1's example 0 equal run 0's example 1;
    hashing both makes every pair an unrelated stream.
    """
    return torch.Generator().manual_seed(example_seed(seed, example_id))


def normalize_split(split: str) -> str:
    """Map ``val``, ``validation``, ``dev``... to ``train``/``valid``/``test``."""
    value = _SPLIT_ALIASES.get(str(split).strip().lower())
    if value is None:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return value


def split_seed(seed: int, split: str) -> int:
    """The example seed of ``split`` in a run seeded with ``seed``."""
    return seed * 1000003 + SPLIT_SEEDS[normalize_split(split)]


def song_seed(seed: int, split: str) -> int:
    """Which built-in generator songs ``split`` uses in a run seeded with ``seed``."""
    return seed * 3 + SPLIT_SEEDS[normalize_split(split)]


def hash_split(relative_path: str, fractions: Tuple[float, float] = (0.90, 0.05)) -> str:
    """``"train"``, ``"valid"`` or ``"test"`` for a file, from a hash of its relative path.

    Stable across machines and Python versions (unlike ``hash()``), and adding files never moves others.
    """
    bucket = int(hashlib.sha1(relative_path.encode("utf-8")).hexdigest()[:8], 16) / 16**8
    if bucket < fractions[0]:
        return "train"
    return "valid" if bucket < fractions[0] + fractions[1] else "test"


__all__: List[str] = [
    "SPLITS",
    "SPLIT_SEEDS",
    "example_generator",
    "example_seed",
    "hash_split",
    "normalize_split",
    "song_seed",
    "split_seed",
    "splitmix64",
]
