"""The procedural noise categories: one registry, from which :data:`NOISE_CATEGORIES` derives.

A new category is a module of this package with a generator ``(seeds (B,), channels, num_frames,
sample_rate) -> (B, channels, num_frames)`` unit-RMS noise, and one entry here. Scenes store a category as
its index in this registry: append new entries, so that existing indices keep their meaning.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Tuple

from torch import Tensor

from musicfx.synth.noise.crowd import crowd_noise
from musicfx.synth.noise.dsp import NoiseGenerator
from musicfx.synth.noise.electrical import electrical_noise
from musicfx.synth.noise.stationary import stationary_noise
from musicfx.synth.noise.traffic import traffic_noise
from musicfx.synth.noise.weather import weather_noise

__all__ = ["GENERATORS", "NOISE_CATEGORIES", "NoiseGenerator", "synthesize"]

#: The one registry of procedural categories, in the order of the indices that scenes draw.
GENERATORS: Mapping[str, NoiseGenerator] = MappingProxyType({
    "electrical": electrical_noise,
    "crowd": crowd_noise,
    "weather": weather_noise,
    "traffic": traffic_noise,
    "stationary": stationary_noise,
})
NOISE_CATEGORIES: Tuple[str, ...] = tuple(GENERATORS)


def synthesize(category: str, seeds: Tensor, channels: int, num_frames: int, sample_rate: int) -> Tensor:
    """Noise of one named category for a batch of seeds.

    Args:
        category: one of :data:`NOISE_CATEGORIES`.
        seeds: (B,) int64.

    Returns:
        (B, channels, num_frames) unit RMS float32.
    """
    if category not in GENERATORS:
        raise ValueError(f"unknown noise category {category!r}; valid: {', '.join(NOISE_CATEGORIES)}")
    return GENERATORS[category](seeds, channels, num_frames, sample_rate)
