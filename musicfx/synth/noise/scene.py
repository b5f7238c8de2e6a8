"""The noise scene: procedural or recorded noise mixed into clean music at a random SNR.

:meth:`NoiseSynth.draw` makes one example's parameters on the CPU; :meth:`NoiseSynth.forward` renders a
batch on the device.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from musicfx.synth.noise.categories import GENERATORS, NOISE_CATEGORIES
from musicfx.synth.noise.dsp import _EPS, _col, _db

__all__ = ["NoiseSynth", "mix_at_snr", "snr_db"]

# Power below this (about -100 dBFS) counts as silence: a silent file chunk is not used as noise, and a
# silent clean signal gets noise as if it were at this level, so that no example divides by zero.
_SILENCE_POWER = 1e-10


# ------------------------------------------------------------------------------------------------- mixing
def _power(x: Tensor) -> Tensor:
    """Mean square over the last two dims (channels, time): (..., C, T) -> (...)."""
    return x.float().pow(2).mean(dim=(-2, -1))


def snr_db(clean: Tensor, noise: Tensor) -> Tensor:
    """Signal-to-noise ratio in dB over channels and time.

    Args:
        clean: (..., C, T).
        noise: (..., C, T).

    Returns:
        (...) float32.
    """
    return 10.0 * torch.log10(_power(clean).clamp(min=_EPS) / _power(noise).clamp(min=_EPS))


def _noise_gain(clean: Tensor, noise: Tensor, snr: Union[float, Tensor]) -> Tensor:
    """Gain that puts ``noise`` at ``snr`` dB below ``clean``: (..., C, T) pair -> (..., 1, 1).

    A silent clean signal is treated as one at the silence level, and a silent noise gets a finite gain
    (it stays silent), so nothing here divides by zero.
    """
    clean_power = _power(clean).clamp(min=_SILENCE_POWER)
    noise_power = _power(noise).clamp(min=_EPS)
    snr = torch.as_tensor(snr, dtype=torch.float32, device=clean.device)
    gain = torch.sqrt(clean_power / (noise_power * 10.0 ** (snr / 10.0)))
    return gain[..., None, None]


def mix_at_snr(clean: Tensor, noise: Tensor, snr_db: Union[float, Tensor]) -> Tensor:
    """Add noise to clean audio at a given signal-to-noise ratio (powers over channels and time).

    Args:
        clean: (..., C, T).
        noise: (..., C, T), any level.
        snr_db: a float, or a tensor of the batch shape (...).

    Returns:
        (..., C, T) float32 ``clean + g * noise`` with ``10 log10(P(clean) / P(g * noise)) = snr_db``.
    """
    if clean.shape != noise.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and noise {tuple(noise.shape)} must have the same shape")
    clean, noise = clean.float(), noise.float()
    return clean + _noise_gain(clean, noise, snr_db) * noise


# ---------------------------------------------------------------------------------------------- the scene
def _check_range(name: str, bounds: Tuple[float, float]) -> Tuple[float, float]:
    low, high = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name} must be a finite (low, high) pair with low <= high, got {bounds}")
    return low, high


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


class NoiseSynth(torch.nn.Module):
    """Noisy/clean training pairs from clean music: procedural or recorded noise at a random SNR.

    :meth:`draw` makes one example's scene parameters on the CPU; :meth:`forward` renders a batch of them on
    the clean audio's device. Gain, polarity and channel order are randomized on the pair together, so the
    model learns to keep them. No learned parameters.

    Args:
        sample_rate: of the clean audio, Hz.
        snr_db: range of the uniform signal-to-noise ratio, dB.
        categories: weights of the procedural categories by name (missing names weigh 0); None for equal
            weights.
        file_noise_prob: chance that a recorded noise chunk, when the batch carries one, replaces the
            procedural noise.
        gain_db: range of the uniform gain applied to the pair, dB.
        flip_prob: chance of inverting the polarity of the pair.
        swap_prob: chance of swapping left and right (stereo only).
    """

    #: The names of :meth:`draw`'s parameters, which :meth:`forward` reads from a batch.
    param_keys: Tuple[str, ...] = ("snr_db", "category", "use_file", "gain_db", "flip", "swap", "noise_seed")

    def __init__(
        self,
        sample_rate: int,
        snr_db: Tuple[float, float] = (-5.0, 20.0),
        categories: Optional[Mapping[str, float]] = None,
        file_noise_prob: float = 0.5,
        gain_db: Tuple[float, float] = (-6.0, 3.0),
        flip_prob: float = 0.5,
        swap_prob: float = 0.5,
    ) -> None:
        super().__init__()
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.snr_db = _check_range("snr_db", snr_db)
        self.gain_db = _check_range("gain_db", gain_db)
        self.file_noise_prob = _check_probability("file_noise_prob", file_noise_prob)
        self.flip_prob = _check_probability("flip_prob", flip_prob)
        self.swap_prob = _check_probability("swap_prob", swap_prob)
        # A plain attribute, not a buffer: draws happen on the CPU even when the module sits on a GPU.
        self.category_weights = _category_weights(categories)

    def draw(self, generator: torch.Generator) -> Dict[str, Tensor]:
        """Scene parameters for one example.

        Args:
            generator: a CPU generator seeded for this example (the dataset's).

        Returns:
            0-d tensors: ``snr_db`` and ``gain_db`` (float32), ``category`` (int64 index into
            :data:`NOISE_CATEGORIES`), ``use_file``, ``flip``, ``swap`` (bool) and ``noise_seed`` (int64).
        """
        u = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
        category = torch.multinomial(self.category_weights, 1, generator=generator)[0]
        noise_seed = torch.randint(0, 2**63 - 1, (), generator=generator, dtype=torch.int64)
        snr_low, snr_high = self.snr_db
        gain_low, gain_high = self.gain_db
        return {
            "snr_db": torch.tensor(snr_low + (snr_high - snr_low) * u[0], dtype=torch.float32),
            "category": category.to(torch.int64),
            "use_file": torch.tensor(u[1] < self.file_noise_prob),
            "gain_db": torch.tensor(gain_low + (gain_high - gain_low) * u[2], dtype=torch.float32),
            "flip": torch.tensor(u[3] < self.flip_prob),
            "swap": torch.tensor(u[4] < self.swap_prob),
            "noise_seed": noise_seed,
        }

    def procedural(self, seeds: Tensor, categories: Tensor, channels: int, num_frames: int) -> Tensor:
        """Procedural noise for each example's category, one batched call per category present.

        Args:
            seeds: (B,) int64.
            categories: (B,) int64 indices into :data:`NOISE_CATEGORIES`.

        Returns:
            (B, channels, num_frames) unit-RMS float32 on the seeds' device.
        """
        present = torch.unique(categories).tolist()
        for index in present:
            if not 0 <= index < len(NOISE_CATEGORIES):
                raise ValueError(f"category index {index} out of range for {NOISE_CATEGORIES}")
        if len(present) == 1:
            return GENERATORS[NOISE_CATEGORIES[present[0]]](seeds, channels, num_frames, self.sample_rate)
        noise = torch.empty(seeds.shape[0], channels, num_frames, device=seeds.device)
        for index in present:
            rows = (categories == index).nonzero()[:, 0]
            noise[rows] = GENERATORS[NOISE_CATEGORIES[index]](seeds[rows], channels, num_frames, self.sample_rate)
        return noise

    @torch.no_grad()
    def forward(
        self, clean: Tensor, params: Mapping[str, Tensor], file_noise: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """Render a batch of scenes.

        Args:
            clean: (B, C, T) clean audio.
            params: (B,) tensors under :meth:`draw`'s keys (as the default collate stacks them), on any
                device.
            file_noise: optional (B, C, T) recorded noise chunks (any level); used where ``use_file`` is
                set and the chunk is not silent.

        Returns:
            ``noisy`` and ``target``, (B, C, T) in ``clean``'s dtype: the noisy mix at each example's SNR and
            the clean audio, both after the same gain, polarity flip and channel swap, and scaled down
            together where either would peak above 1.
        """
        if clean.dim() != 3:
            raise ValueError(f"clean must be (batch, channels, time), got shape {tuple(clean.shape)}")
        batch, channels, num_frames = clean.shape
        p = _batch_params(params, batch, clean.device)
        with torch.autocast(device_type=clean.device.type, enabled=False):
            target = clean.float()
            noise = self.procedural(p["noise_seed"], p["category"], channels, num_frames)
            if file_noise is not None:
                if file_noise.shape != clean.shape:
                    raise ValueError(f"file_noise {tuple(file_noise.shape)} must match clean {tuple(clean.shape)}")
                recorded = file_noise.float()
                use = p["use_file"].bool() & (_power(recorded) > _SILENCE_POWER)
                noise = torch.where(use[:, None, None], recorded, noise)
            noisy = target + _noise_gain(target, noise, p["snr_db"].float()) * noise
            factor = _col(_db(p["gain_db"].float()) * torch.where(p["flip"].bool(), -1.0, 1.0))
            noisy, target = noisy * factor, target * factor
            if channels == 2:
                swap = _col(p["swap"].bool())
                noisy = torch.where(swap, noisy.flip(1), noisy)
                target = torch.where(swap, target.flip(1), target)
            peak = torch.maximum(noisy.abs().amax(dim=(1, 2)), target.abs().amax(dim=(1, 2)))
            # Dividing by the peak where it exceeds 1 keeps the SNR and the pair's relation exact.
            scale = _col(peak.clamp(min=1.0).reciprocal())
            noisy, target = noisy * scale, target * scale
        return noisy.to(clean.dtype), target.to(clean.dtype)


def _category_weights(categories: Optional[Mapping[str, float]]) -> Tensor:
    """Category weights in :data:`NOISE_CATEGORIES` order: (5,) float64 on the CPU."""
    if categories is None:
        return torch.ones(len(NOISE_CATEGORIES), dtype=torch.float64)
    unknown = sorted(set(categories) - set(NOISE_CATEGORIES))
    if unknown:
        raise ValueError(f"unknown noise categories {unknown}; valid: {', '.join(NOISE_CATEGORIES)}")
    weights = torch.tensor([float(categories.get(name, 0.0)) for name in NOISE_CATEGORIES], dtype=torch.float64)
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"category weights must be finite, non-negative and not all zero, got {dict(categories)}"
        )
    return weights


def _batch_params(params: Mapping[str, Tensor], batch: int, device: torch.device) -> Dict[str, Tensor]:
    """The scene parameters of a batch, checked and moved to ``device``."""
    missing = [key for key in NoiseSynth.param_keys if key not in params]
    if missing:
        raise ValueError(f"scene parameters lack {missing}; NoiseSynth.draw makes {list(NoiseSynth.param_keys)}")
    out = {key: params[key].to(device) for key in NoiseSynth.param_keys}
    for key, value in out.items():
        if value.shape != (batch,):
            raise ValueError(f"params[{key!r}] must have shape ({batch},), got {tuple(value.shape)}")
    return out
