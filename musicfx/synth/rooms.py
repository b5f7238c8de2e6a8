"""Room impulse responses: a fast statistical model, the image-source method and a cached bank of rooms.

* :func:`synthetic_rir` draws a batch of generic reverberant responses on the device (direct impulse,
  sparse early reflections, exponentially decaying Gaussian tail), deterministic per seed. It is what
  reverb effects and convolutive bleed scenes use when no recorded IRs are given.
* :func:`image_source_rir` is the image-source method of Allen & Berkley (1979) for a shoebox room: the
  geometry fixes every delay and gain, so direct paths and early reflections are physically consistent
  between microphones. Vectorised over the images; cost grows with ``max_order ** 3``.
* :class:`RoomIRBank` places sources and close microphones in random rooms, computes all the responses
  once and caches them on disk, for the ``room`` kind of bleed scene.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from musicfx.data.cache import default_cache_dir
from musicfx.data.impulse_responses import load_arrays, save_arrays
from musicfx.errors import ConfigError
from musicfx.rng import derive_seeds, hash_normal, hash_uniform

__all__ = [
    "SPEED_OF_SOUND",
    "SINC_TAPS",
    "synthetic_rir",
    "sabine_absorption",
    "image_source_rir",
    "direct_path_ir",
    "RoomIRBank",
]

#: Metres per second in air at about 20 degrees C.
SPEED_OF_SOUND = 343.0

# Decay of 60 dB in amplitude terms: exp(-_LN_1000 * t / rt60) reaches 10**-3 at t = rt60.
_LN_1000 = 3.0 * math.log(10.0)

# synthetic_rir: early reflections arrive in this window after the direct sound (seconds); the diffuse
# tail fades in over it, so the response is sparse at first and dense after ~50 ms, as in real rooms.
_EARLY_START, _EARLY_END = 0.005, 0.050
# Salts of the seeds of each component, so that the tail does not repeat the reflections' numbers.
_SALT_EARLY, _SALT_TAIL = 101, 102


# ---------------------------------------------------------------------------------------- synthetic
def _as_batch(value: Union[float, Tensor], batch: int, device: torch.device, name: str) -> Tensor:
    """A scalar or (B,) tensor as a (B,) float32 tensor on ``device``."""
    tensor = torch.as_tensor(value, dtype=torch.float32, device=device)
    if tensor.dim() == 0:
        tensor = tensor.expand(batch)
    if tensor.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {tuple(tensor.shape)}")
    return tensor


def _decay(time: Tensor, rt60: Tensor) -> Tensor:
    """Amplitude envelope falling 60 dB at ``rt60``: (B, ...) times, (B,) seconds -> (B, ...)."""
    return torch.exp(-_LN_1000 * time / rt60.view(-1, *([1] * (time.dim() - 1))))


def synthetic_rir(
    seeds: Tensor,
    rt60: Tensor,
    sample_rate: int,
    length: int,
    channels: int = 1,
    early_reflections: int = 8,
    direct: bool = True,
    drr_db: Union[float, Tensor] = 0.0,
) -> Tensor:
    """A batch of statistical room impulse responses, a pure function of each example's seed.

    Each response (per channel, drawn independently so that stereo responses are decorrelated) is:

    * the direct sound, a unit impulse at sample 0 (when ``direct``);
    * ``early_reflections`` single-sample reflections at uniform random times in 5-50 ms, with random signs
      and magnitudes ``U(0.3, 1) * sqrt(5 ms / t)`` times the decay envelope;
    * a diffuse tail of Gaussian noise under the envelope ``exp(-3 ln(10) t / rt60)`` (amplitude -60 dB at
      ``rt60``, i.e. energy decaying 60 dB in ``rt60`` seconds), faded in by a raised cosine over 0-50 ms.

    Normalisation: the reverberant part (reflections plus tail) of each channel is scaled to energy
    ``10 ** (-drr_db / 10)`` (sum of squares), so the direct-to-reverberant energy ratio is exactly
    ``drr_db`` and the direct impulse stays 1. Without the direct sound (``direct=False``, a "wet only"
    response for reverb effects) the reverberant part has unit energy whatever ``drr_db``, so convolving
    white noise keeps its power.

    Args:
        seeds: (B,) int64; the device of the result.
        rt60: (B,) reverberation times in seconds (or a scalar for all), > 0.
        sample_rate: Hz.
        length: samples per response.
        channels: independent responses per example.
        early_reflections: sparse reflections per channel (0 for none).
        direct: include the direct impulse at sample 0.
        drr_db: direct-to-reverberant energy ratio in dB, a scalar or (B,); used when ``direct``.

    Returns:
        (B, channels, length) float32 on the seeds' device.
    """
    if seeds.dim() != 1 or seeds.dtype != torch.int64:
        raise ValueError(f"seeds must be a 1-D int64 tensor, got shape {tuple(seeds.shape)} and {seeds.dtype}")
    if length < 1 or channels < 1 or sample_rate < 1 or early_reflections < 0:
        raise ValueError(
            f"need length, channels, sample_rate >= 1 and early_reflections >= 0, got {length}, {channels}, "
            f"{sample_rate}, {early_reflections}"
        )
    batch, device = seeds.shape[0], seeds.device
    rt60 = _as_batch(rt60, batch, device, "rt60")
    if not bool(torch.all(rt60 > 0)):
        raise ValueError(f"rt60 must be positive, got {rt60.tolist()}")
    with torch.autocast(device_type=device.type, enabled=False):
        time = torch.arange(length, device=device, dtype=torch.float32) / sample_rate
        # Diffuse tail.
        fade = (time / _EARLY_END).clamp(max=1.0)
        fade = torch.sin(0.5 * math.pi * fade).square()
        tail = hash_normal(derive_seeds(seeds, _SALT_TAIL), (channels, length))
        reverb = tail * (fade * _decay(time[None, :], rt60))[:, None, :]

        # Sparse early reflections, placed by index: (B, C, K) positions, gains.
        if early_reflections > 0:
            u = hash_uniform(derive_seeds(seeds, _SALT_EARLY), (3, channels, early_reflections))
            when = _EARLY_START + (_EARLY_END - _EARLY_START) * u[:, 0]
            index = (when * sample_rate).round().long().clamp(max=length - 1)
            sign = torch.where(u[:, 2] < 0.5, -1.0, 1.0)
            gain = sign * (0.3 + 0.7 * u[:, 1]) * torch.sqrt(_EARLY_START / when) * _decay(when, rt60)
            # Responses shorter than the early window pile the late reflections on the last sample; drop them.
            gain = gain * (when * sample_rate < length)
            reverb.scatter_add_(-1, index, gain)

        energy = reverb.square().sum(-1, keepdim=True).clamp(min=1e-20)
        if direct:
            target = 10.0 ** (-_as_batch(drr_db, batch, device, "drr_db") / 10.0)
            reverb = reverb * torch.sqrt(target[:, None, None] / energy)
            reverb[..., 0] += 1.0
        else:
            reverb = reverb * energy.rsqrt()
    return reverb


# ------------------------------------------------------------------------------------- image sources
#: Default length of the windowed-sinc fractional-delay filter, in taps (odd: centred on the delay).
SINC_TAPS = 81
# Images are rendered this many at a time: (pairs x images x taps) working tensors stay ~100 MB at most.
_IMAGE_BLOCK_ELEMENTS = 1 << 22


def sabine_absorption(room: Sequence[float], rt60: float, speed_of_sound: float = SPEED_OF_SOUND) -> float:
    """The uniform wall energy-absorption coefficient that gives ``rt60`` in a shoebox room by Sabine's formula.

    ``rt60 = 24 ln(10) V / (c S alpha)``, with ``V`` the volume and ``S`` the total wall surface.

    Args:
        room: (3,) dimensions in metres.
        rt60: seconds.

    Returns:
        ``alpha`` in (0, 1].

    Raises:
        ConfigError: ``rt60`` is shorter than the room can have even with fully absorbing walls.
    """
    lx, ly, lz = (float(v) for v in room)
    volume, surface = lx * ly * lz, 2.0 * (lx * ly + lx * lz + ly * lz)
    if rt60 <= 0:
        raise ConfigError(f"rt60 must be positive, got {rt60}")
    alpha = 24.0 * math.log(10.0) * volume / (speed_of_sound * surface * rt60)
    if alpha > 1.0:
        shortest = 24.0 * math.log(10.0) * volume / (speed_of_sound * surface)
        raise ConfigError(
            f"rt60={rt60:.3f} s is impossible in a {lx:g} x {ly:g} x {lz:g} m room by Sabine's formula "
            f"(at least {shortest:.3f} s); use a longer rt60 or a smaller room"
        )
    return alpha


def _axis_images(max_order: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-axis image terms: coordinate ``sign * s + 2 n L`` after ``|n - q| + |n|`` wall reflections.

    Returns:
        ``sign``, ``n`` and ``order``, each (2 (2K + 1),) float64, for ``n`` in [-K, K] and ``q`` in {0, 1}.
    """
    n = torch.arange(-max_order, max_order + 1, dtype=torch.float64)
    q = torch.tensor([0.0, 1.0], dtype=torch.float64)
    n, q = torch.meshgrid(n, q, indexing="ij")
    n, q = n.reshape(-1), q.reshape(-1)
    return 1.0 - 2.0 * q, n, (n - q).abs() + n.abs()


@functools.lru_cache(maxsize=8)
def _image_set(max_order: int) -> Tuple[Tensor, Tensor, Tensor]:
    """All images up to ``max_order`` reflections: ``sign`` (N, 3), ``n`` (N, 3), ``order`` (N,), float64.

    Cached: the set depends on the order alone. Callers must not modify the tensors in place.
    """
    sign, n, order = _axis_images(max_order)
    a = torch.arange(sign.shape[0])
    ix, iy, iz = (g.reshape(-1) for g in torch.meshgrid(a, a, a, indexing="ij"))
    total = order[ix] + order[iy] + order[iz]
    keep = total <= max_order
    ix, iy, iz = ix[keep], iy[keep], iz[keep]
    return (
        torch.stack([sign[ix], sign[iy], sign[iz]], dim=-1),
        torch.stack([n[ix], n[iy], n[iz]], dim=-1),
        total[keep],
    )


def _sinc_coefficients(frac: Tensor, taps: int) -> Tensor:
    """Hann-windowed sinc fractional-delay taps for delays ``floor + frac``: (..., ) -> (..., taps) float32.

    Tap ``k`` (from ``-taps // 2`` to ``taps // 2``) sits at sample ``floor + k``, ``k - frac`` samples from the
    exact delay. The Hann window spans ``taps + 1`` samples around the delay. Expanding ``sin`` and ``cos``
    of ``k - frac`` leaves one sine and cosine per image and only products per tap, which is what makes
    rendering tens of thousands of images cheap.
    """
    half = taps // 2
    k = torch.arange(-half, half + 1, dtype=torch.float32, device=frac.device)
    frac = frac.float()[..., None]
    offset = k - frac  # never 0 unless frac == 0 at k == 0
    parity = 1.0 - 2.0 * (k.remainder(2.0))  # (-1) ** k
    # sin(pi (k - f)) = -(-1)^k sin(pi f)
    numerator = -parity * torch.sin(math.pi * frac)
    sinc = torch.where(offset == 0, torch.ones_like(offset), numerator / (math.pi * offset))
    a = 2.0 * math.pi / (taps + 1)
    window = 0.5 * (1.0 + torch.cos(a * k) * torch.cos(a * frac) + torch.sin(a * k) * torch.sin(a * frac))
    return sinc * window


def _render(delay: Tensor, gain: Tensor, length: int, taps: int) -> Tensor:
    """Sum of fractionally delayed, scaled impulses: (P, N) delays in samples and gains -> (P, length) float64.

    Taps that would fall before sample 0 or after the end are dropped (no global latency is added, so
    sample ``n`` of a response is time ``n / sample_rate``).
    """
    rows, count = delay.shape
    out = torch.zeros(rows, length, dtype=torch.float64, device=delay.device)
    half = taps // 2
    k = torch.arange(-half, half + 1, dtype=torch.int64, device=delay.device)
    step = max(1, _IMAGE_BLOCK_ELEMENTS // max(1, rows * taps))
    for start in range(0, count, step):
        d, g = delay[:, start : start + step], gain[:, start : start + step]
        whole = d.floor()
        index = whole.long()[..., None] + k  # (P, n, taps)
        values = g.float()[..., None] * _sinc_coefficients(d - whole, taps)
        inside = (index >= 0) & (index < length)
        values = values.masked_fill_(~inside, 0.0)
        index = index.clamp_(0, length - 1)
        out.scatter_add_(1, index.reshape(rows, -1), values.reshape(rows, -1).double())
    return out


def direct_path_ir(delay: Tensor, gain: Tensor, length: int, taps: int = SINC_TAPS) -> Tensor:
    """Impulse responses of a pure delay and gain, with the same fractional-delay filter as the image sources.

    Convolving a source with this gives exactly the direct-path component that :func:`image_source_rir`
    puts in a microphone signal.

    Args:
        delay: (...) delays in samples (>= 0).
        gain: (...) gains.
        length: samples per response.
        taps: windowed-sinc length.

    Returns:
        (..., length) float32 on ``delay``'s device.
    """
    delay, gain = torch.broadcast_tensors(delay.double(), gain.to(delay.device).double())
    shape = delay.shape
    out = _render(delay.reshape(-1, 1), gain.reshape(-1, 1), length, taps)
    return out.reshape(*shape, length).float()


def _check_position(name: str, position: Tensor, room: Tensor) -> None:
    if position.shape[-1] != 3:
        raise ValueError(f"{name} must have 3 coordinates in its last dimension, got shape {tuple(position.shape)}")
    if bool(((position <= 0) | (position >= room)).any()):
        raise ValueError(f"{name} {position.tolist()} must lie strictly inside the room {room.tolist()}")


def image_source_rir(
    room: Union[Sequence[float], Tensor],
    source: Union[Sequence[float], Tensor],
    microphone: Union[Sequence[float], Tensor],
    sample_rate: int,
    rt60: Optional[float] = None,
    absorption: Optional[float] = None,
    max_order: int = 10,
    length: Optional[int] = None,
    taps: int = SINC_TAPS,
    speed_of_sound: float = SPEED_OF_SOUND,
) -> Tensor:
    """Room impulse responses of a shoebox room by the image-source method (Allen & Berkley, 1979).

    Every image with at most ``max_order`` wall reflections contributes an impulse at its delay
    ``r / c`` (rendered by a Hann-windowed sinc of ``taps`` taps, so delays are exact to a fraction of a
    sample) with amplitude ``beta ** reflections / (4 pi r)``: free-field spreading, so the direct sound of a
    source 1 m away has amplitude ``1 / (4 pi)``. All walls share one pressure reflection coefficient
    ``beta = sqrt(1 - alpha)``, with ``alpha`` the energy absorption given directly or derived from ``rt60``
    by Sabine's formula (:func:`sabine_absorption`). The response ends with the last image of order
    ``max_order``: the decay is complete only up to the time the first missing images would arrive (roughly
    ``max_order`` times the smallest room dimension divided by c).

    Sources and microphones broadcast against each other in their leading dimensions, so one call renders
    every source-microphone pair of a room; all images are computed as tensors (no loop per image).

    Args:
        room: (3,) dimensions in metres.
        source: (..., 3) positions in metres, inside the room.
        microphone: (..., 3) positions, broadcastable against ``source``.
        sample_rate: Hz.
        rt60: reverberation time in seconds (exactly one of ``rt60`` and ``absorption``).
        absorption: energy absorption coefficient of the walls, in [0, 1].
        max_order: most wall reflections of an image.
        length: samples per response; default: up to the last image's arrival plus half the sinc.
        taps: fractional-delay filter length (odd).
        speed_of_sound: metres per second.

    Returns:
        (..., length) float32 (computed in float64).
    """
    if (rt60 is None) == (absorption is None):
        raise ValueError("give exactly one of rt60 and absorption")
    if max_order < 0 or taps < 1 or taps % 2 == 0:
        raise ValueError(f"max_order must be >= 0 and taps odd and positive, got {max_order} and {taps}")
    room_t = torch.as_tensor(room, dtype=torch.float64)
    if room_t.shape != (3,) or bool((room_t <= 0).any()):
        raise ValueError(f"room must be 3 positive dimensions in metres, got {room_t.tolist()}")
    alpha = sabine_absorption(room_t.tolist(), rt60, speed_of_sound) if rt60 is not None else float(absorption)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"absorption must lie in [0, 1], got {alpha}")
    beta = math.sqrt(1.0 - alpha)
    src = torch.as_tensor(source, dtype=torch.float64)
    mic = torch.as_tensor(microphone, dtype=torch.float64)
    _check_position("source", src, room_t)
    _check_position("microphone", mic, room_t)
    src, mic = torch.broadcast_tensors(src, mic)
    shape = src.shape[:-1]
    src, mic = src.reshape(-1, 3), mic.reshape(-1, 3)

    sign, n, order = _image_set(max_order)
    images = sign[None] * src[:, None, :] + 2.0 * n[None] * room_t  # (P, N, 3)
    distance = (images - mic[:, None, :]).norm(dim=-1).clamp(min=1e-3)  # (P, N)
    delay = distance * (sample_rate / speed_of_sound)
    gain = beta ** order[None] / (4.0 * math.pi * distance)
    if length is None:
        length = int(math.ceil(float(delay.max()))) + taps // 2 + 1
    return _render(delay, gain, int(length), taps).reshape(*shape, int(length)).float()


# -------------------------------------------------------------------------------------------- the bank
_BANK_VERSION = 1
# Sources keep this far from the walls (metres, at most a quarter of the dimension) and stand at most
# this high: players and amplifiers, not ceiling fixtures.
_WALL_MARGIN, _MAX_SOURCE_HEIGHT = 0.5, 2.0
# Microphones keep this far from the walls.
_MIC_MARGIN = 0.05
# Candidate source layouts drawn per room; the most spread out is kept.
_LAYOUT_CANDIDATES = 64
# Walls absorb at most this much energy when an rt60 is too short for a room by Sabine's formula.
_MAX_ABSORPTION = 0.99


def _room_generator(seed: int, index: int) -> torch.Generator:
    """A generator for room ``index`` alone: a room is the same whatever the size of the bank."""
    key = hashlib.sha1(f"musicfx-room:{int(seed)}:{int(index)}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & ((1 << 63) - 1))


def _uniform(generator: torch.Generator, low: Tensor, high: Tensor) -> Tensor:
    u = torch.rand(low.shape, generator=generator, dtype=torch.float64)
    return low + (high - low) * u


class RoomIRBank:
    """Impulse responses of random shoebox rooms with close-miked sources, computed once and cached.

    Room ``r`` (its own generator, seeded by ``seed`` and ``r``) gets dimensions uniform in ``room_size``, a
    reverberation time uniform in ``rt60`` (raised where Sabine's formula cannot reach it in that room, i.e.
    where the walls would have to absorb more than 99 %), ``num_sources`` sources kept 0.5 m from the walls
    and at most 2 m high (the most spread out of 64 random layouts), and ``num_microphones`` microphones:
    microphone ``i`` close to source ``i % num_sources`` (at a distance uniform in ``mic_distance``, in a
    uniformly random direction, as in close miking), so the other sources, placed apart, are farther. The
    responses (source ``j`` to microphone ``i``) come from :func:`image_source_rir`.

    The bank is cached as ``.npy`` files under ``cache_dir`` (default
    :func:`musicfx.data.cache.default_cache_dir`, i.e. ``$MUSICFX_CACHE``), named by a hash of every
    parameter, written atomically; a second construction with the same parameters loads them.

    Cost: at ``max_order=20`` (11 521 images per pair) 0.2-1 s of CPU per room of 4 x 4 pairs of half a
    second at 44.1 kHz (measured on a busy 2-core machine; growing as ``max_order ** 3`` and with the number
    of pairs), so 1000 rooms take 5-15 minutes, once. Memory:
    ``R * M * S * length * 4`` bytes (1000 rooms of 4 x 4 half-second responses at 44.1 kHz: 1.4 GB).

    Args:
        num_rooms: R.
        num_sources: S.
        num_microphones: M.
        sample_rate: Hz.
        seed: the bank's seed.
        room_size: (low, high) metres for each of the three dimensions.
        rt60: (low, high) seconds.
        length: samples per response; default: 0.5 s.
        cache_dir: where the bank is cached.
        progress: show a progress bar while computing.
        max_order: most wall reflections per image.
        mic_distance: (low, high) metres from each microphone to its own source.

    Attributes:
        irs: (R, M, S, length) float32: the response from source ``j`` to microphone ``i`` at ``[r, i, j]``.
        direct_delay: (R, M, S) float32 delay of the direct path in samples (distance / c * sample_rate).
        direct_gain: (R, M, S) float32 amplitude of the direct path, ``1 / (4 pi distance)``.
        direct: (R, M, S, 2) the two stacked: ``[..., 0]`` delay, ``[..., 1]`` gain.
        rooms: (R, 3) dimensions; sources (R, S, 3) and microphones (R, M, 3) positions in metres;
        rt60s: (R,) reverberation times used.
    """

    def __init__(
        self,
        num_rooms: int,
        num_sources: int,
        num_microphones: int,
        sample_rate: int,
        seed: int = 0,
        room_size: Sequence[Tuple[float, float]] = ((3.0, 10.0), (3.0, 10.0), (2.5, 4.0)),
        rt60: Tuple[float, float] = (0.2, 0.8),
        length: Optional[int] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        progress: bool = True,
        max_order: int = 20,
        mic_distance: Tuple[float, float] = (0.1, 0.5),
    ) -> None:
        if min(num_rooms, num_sources, num_microphones, sample_rate) < 1:
            raise ValueError(
                f"num_rooms, num_sources, num_microphones and sample_rate must be >= 1, got {num_rooms}, "
                f"{num_sources}, {num_microphones}, {sample_rate}"
            )
        size = torch.tensor([[float(low), float(high)] for low, high in room_size], dtype=torch.float64)
        if size.shape != (3, 2) or bool((size[:, 0] <= 1.0).any()) or bool((size[:, 1] < size[:, 0]).any()):
            raise ValueError(f"room_size must be three (low, high) pairs above 1 m, got {room_size}")
        if not 0 < rt60[0] <= rt60[1]:
            raise ValueError(f"rt60 must be a (low, high) pair of positive seconds, got {rt60}")
        if not 0 < mic_distance[0] <= mic_distance[1]:
            raise ValueError(f"mic_distance must be a (low, high) pair of positive metres, got {mic_distance}")
        self.num_rooms, self.num_sources, self.num_microphones = int(num_rooms), int(num_sources), int(num_microphones)
        self.sample_rate, self.seed, self.max_order = int(sample_rate), int(seed), int(max_order)
        self.room_size, self.rt60 = size, (float(rt60[0]), float(rt60[1]))
        self.mic_distance = (float(mic_distance[0]), float(mic_distance[1]))
        self.length = int(length) if length is not None else int(round(0.5 * sample_rate))
        self.rooms, self.rt60s, self.sources, self.microphones = self._layouts()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.cache_path = self.cache_dir / f"rooms-{self._key()}"
        loaded = self._load()
        if loaded is None:
            loaded = self._compute(progress)
            self._save(*loaded)
        self.irs, direct = loaded
        self.direct = direct
        self.direct_delay, self.direct_gain = direct[..., 0], direct[..., 1]

    def __len__(self) -> int:
        return self.num_rooms

    # ------------------------------------------------------------------------------------------ layout
    def _layouts(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Rooms (R, 3), rt60s (R,), sources (R, S, 3) and microphones (R, M, 3), from the seed alone."""
        rooms, rt60s, sources, mics = [], [], [], []
        for index in range(self.num_rooms):
            room, rt60, src, mic = self._layout(_room_generator(self.seed, index))
            rooms.append(room), rt60s.append(rt60), sources.append(src), mics.append(mic)
        return torch.stack(rooms), torch.tensor(rt60s, dtype=torch.float64), torch.stack(sources), torch.stack(mics)

    def _layout(self, generator: torch.Generator) -> Tuple[Tensor, float, Tensor, Tensor]:
        room = _uniform(generator, self.room_size[:, 0], self.room_size[:, 1])
        rt60 = float(_uniform(generator, torch.tensor(self.rt60[0]), torch.tensor(self.rt60[1])))
        volume = float(room.prod())
        surface = 2.0 * float(room[0] * room[1] + room[0] * room[2] + room[1] * room[2])
        shortest = 24.0 * math.log(10.0) * volume / (SPEED_OF_SOUND * surface * _MAX_ABSORPTION)
        rt60 = max(rt60, shortest)

        margin = torch.minimum(torch.full((3,), _WALL_MARGIN, dtype=torch.float64), room / 4)
        top = room - margin
        top[2] = min(float(top[2]), max(_MAX_SOURCE_HEIGHT, float(margin[2]) + 0.1))
        low = margin.expand(_LAYOUT_CANDIDATES, self.num_sources, 3)
        candidates = _uniform(generator, low, top.expand_as(low))
        if self.num_sources > 1:
            gaps = torch.cdist(candidates, candidates) + torch.eye(self.num_sources, dtype=torch.float64) * 1e9
            best = int(gaps.amin(dim=(1, 2)).argmax())
        else:
            best = 0
        src = candidates[best]

        direction = torch.randn(self.num_microphones, 3, generator=generator, dtype=torch.float64)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        distance = _uniform(
            generator,
            torch.full((self.num_microphones, 1), self.mic_distance[0], dtype=torch.float64),
            torch.full((self.num_microphones, 1), self.mic_distance[1], dtype=torch.float64),
        )
        own = src[torch.arange(self.num_microphones) % self.num_sources]
        mic = torch.minimum(torch.maximum(own + distance * direction, torch.full((3,), _MIC_MARGIN)), room - _MIC_MARGIN)
        return room, rt60, src, mic

    # ------------------------------------------------------------------------------------------- cache
    def _key(self) -> str:
        fields: Dict[str, Any] = {
            "version": _BANK_VERSION,
            "num_rooms": self.num_rooms,
            "num_sources": self.num_sources,
            "num_microphones": self.num_microphones,
            "sample_rate": self.sample_rate,
            "seed": self.seed,
            "room_size": self.room_size.tolist(),
            "rt60": list(self.rt60),
            "length": self.length,
            "max_order": self.max_order,
            "mic_distance": list(self.mic_distance),
            "taps": SINC_TAPS,
            "speed_of_sound": SPEED_OF_SOUND,
        }
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]

    def _files(self) -> Tuple[Path, Path]:
        return Path(f"{self.cache_path}-irs.npy"), Path(f"{self.cache_path}-direct.npy")

    def _load(self) -> Optional[Tuple[Tensor, Tensor]]:
        arrays = load_arrays(self._files())
        if arrays is None:  # absent or unreadable: compute again
            return None
        irs, direct = arrays
        shape = (self.num_rooms, self.num_microphones, self.num_sources)
        if irs.shape != (*shape, self.length) or direct.shape != (*shape, 2) or irs.dtype != np.float32:
            return None
        return torch.from_numpy(irs), torch.from_numpy(direct.astype(np.float32))

    def _save(self, irs: Tensor, direct: Tensor) -> None:
        save_arrays(self._files(), (irs.numpy(), direct.numpy()), "the room impulse response cache")

    # ----------------------------------------------------------------------------------------- compute
    def _compute(self, progress: bool) -> Tuple[Tensor, Tensor]:
        shape = (self.num_rooms, self.num_microphones, self.num_sources)
        irs = torch.empty(*shape, self.length, dtype=torch.float32)
        rooms = tqdm(range(self.num_rooms), desc="room impulse responses", unit="room", disable=not progress)
        for r in rooms:
            irs[r] = image_source_rir(
                self.rooms[r],
                self.sources[r][None, :, :],
                self.microphones[r][:, None, :],
                self.sample_rate,
                rt60=float(self.rt60s[r]),
                max_order=self.max_order,
                length=self.length,
            )
        distance = (self.microphones[:, :, None, :] - self.sources[:, None, :, :]).norm(dim=-1).clamp(min=1e-3)
        delay = distance * (self.sample_rate / SPEED_OF_SOUND)
        gain = 1.0 / (4.0 * math.pi * distance)
        direct = torch.stack([delay, gain], dim=-1).float()
        assert direct.shape == (*shape, 2)
        return irs, direct
