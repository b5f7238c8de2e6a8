"""Demucs-style stem augmentations, batched on the device: ``(batch, stems, channels, time)`` in and out.

Every module's ``forward(stems, seeds)`` takes the raw stems of a batch and the per-example scene seeds the
dataset drew (:class:`~musicfx.data.sampling.ChunkDataset`'s ``"seed"``). Random choices come from
:func:`~musicfx.rng.hash_uniform` of :func:`~musicfx.rng.derive_seeds` ``(seeds, salt)``,
one salt per module, so an example's shift, flips and gains depend on its own seed only: not on the other
examples of the batch, their order, the rank or the device. :class:`Remix` is the exception by nature: it
trades stems between the examples of a group, so its result depends on the group's seeds (all of them).

Every choice is made per stem (element ``[b, s]`` of a ``(B, S)`` draw), so the stems of an example get
independent augmentations, as in Demucs. The modules apply whenever called; the datamodule calls them on
training batches only.

:class:`RemixAugment` chains them in Demucs's order: shift, sign flip, channel swap, gain, remix.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from musicfx.rng import derive_seeds, hash_uniform, mix64

__all__ = ["ChannelSwap", "RandomGain", "Remix", "RemixAugment", "Shift", "SignFlip"]

# Salts give each augmentation its own stream of the example seed. They are far from the small salts other
# scene builders use, so an augmentation never repeats the numbers of a bleed or noise scene of that seed.
_SALT_SHIFT = 0x5E1F_0001
_SALT_SIGN = 0x5E1F_0002
_SALT_SWAP = 0x5E1F_0003
_SALT_GAIN = 0x5E1F_0004
_SALT_REMIX = 0x5E1F_0005


def _check(stems: Tensor, seeds: Tensor) -> Tensor:
    """Validate shapes; return the seeds on the stems' device."""
    if stems.dim() != 4:
        raise ValueError(f"expected stems shaped (batch, stems, channels, time), got {tuple(stems.shape)}")
    if seeds.dim() != 1 or seeds.shape[0] != stems.shape[0] or seeds.dtype != torch.int64:
        raise ValueError(f"expected seeds as an int64 tensor of shape ({stems.shape[0]},), "
                         f"got {tuple(seeds.shape)} {seeds.dtype}")
    return seeds.to(stems.device)


def _per_stem_uniform(seeds: Tensor, num_stems: int, salt: int) -> Tensor:
    """Uniforms in [0, 1), one per example and stem: (B,) -> (B, S). Entry ``[b, s]`` depends on
    ``seeds[b]``, ``s`` and ``salt`` only (not on ``S``)."""
    return hash_uniform(derive_seeds(seeds, salt), (num_stems,))


def _check_probability(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p}")
    return float(p)


class Shift(nn.Module):
    """Random time shift: each stem of each example is cropped at its own offset in ``[0, shift]``.

    Demucs's ``Shift`` with ``same=False``: stems of one example move independently, so the model cannot
    rely on their exact alignment (real multitracks are not sample-aligned either) and sees every chunk at
    many offsets. The dataset reads ``shift`` extra frames (:meth:`augmented_length`).

    Args:
        shift: largest offset in frames; 0 disables the module (identity).
    """

    def __init__(self, shift: int) -> None:
        super().__init__()
        if shift < 0:
            raise ValueError(f"shift must be >= 0, got {shift}")
        self.shift = int(shift)

    def augmented_length(self, length: int) -> int:
        """Frames to read for an output of ``length`` frames."""
        return length + self.shift

    def forward(self, stems: Tensor, seeds: Tensor) -> Tensor:
        """
        Args:
            stems: ``(B, S, C, T + shift)``.
            seeds: int64 ``(B,)``.

        Returns:
            ``(B, S, C, T)``: ``out[b, s] = stems[b, s, :, o:o + T]`` with ``o`` in ``[0, shift]``.
        """
        seeds = _check(stems, seeds)
        if self.shift == 0:
            return stems
        batch, num_stems, _, total = stems.shape
        length = total - self.shift
        if length < 1:
            raise ValueError(f"stems have {total} frames; Shift({self.shift}) needs more than {self.shift}")
        offsets = (_per_stem_uniform(seeds, num_stems, _SALT_SHIFT) * (self.shift + 1)).long().clamp_(max=self.shift)
        # A strided view of every window, (B, S, shift + 1, C, T): indexing copies only the chosen ones.
        windows = stems.unfold(-1, length, 1).movedim(-2, 2)
        b = torch.arange(batch, device=stems.device)[:, None]
        s = torch.arange(num_stems, device=stems.device)[None, :]
        return windows[b, s, offsets]

    def extra_repr(self) -> str:
        return f"shift={self.shift}"


class SignFlip(nn.Module):
    """Per-stem polarity inversion with probability ``p`` (inaudible, but doubles the waveforms seen).

    Args:
        p: probability that a stem is inverted; 0 disables the module.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_probability(p)

    def forward(self, stems: Tensor, seeds: Tensor) -> Tensor:
        """``(B, S, C, T)`` -> ``(B, S, C, T)``, each stem times +1 or -1."""
        seeds = _check(stems, seeds)
        if self.p == 0.0:
            return stems
        flip = _per_stem_uniform(seeds, stems.shape[1], _SALT_SIGN) < self.p
        sign = 1.0 - 2.0 * flip.to(stems.dtype)
        return stems * sign[:, :, None, None]

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ChannelSwap(nn.Module):
    """Per-stem swap of the first two channels (left and right) with probability ``p``; mono is unchanged.

    Args:
        p: probability that a stem's channels are swapped; 0 disables the module.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_probability(p)

    def forward(self, stems: Tensor, seeds: Tensor) -> Tensor:
        """``(B, S, C, T)`` -> ``(B, S, C, T)``; with ``C > 2`` the channels after the second stay in place."""
        seeds = _check(stems, seeds)
        channels = stems.shape[2]
        if self.p == 0.0 or channels < 2:
            return stems
        swap = _per_stem_uniform(seeds, stems.shape[1], _SALT_SWAP) < self.p
        order = torch.arange(channels, device=stems.device)
        order[:2] = torch.tensor([1, 0], device=stems.device)
        return torch.where(swap[:, :, None, None], stems.index_select(2, order), stems)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class RandomGain(nn.Module):
    """Per-stem gain drawn uniformly from ``[low, high)`` (Demucs ``Scale``), applied with probability ``p``.

    Args:
        low, high: gain range (linear, not dB).
        p: probability that a stem is scaled; 0 (or ``low == high == 1``) disables the module.
    """

    def __init__(self, low: float = 0.25, high: float = 1.25, p: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}")
        self.low = float(low)
        self.high = float(high)
        self.p = _check_probability(p)

    def forward(self, stems: Tensor, seeds: Tensor) -> Tensor:
        """``(B, S, C, T)`` -> ``(B, S, C, T)``, each stem times its gain."""
        seeds = _check(stems, seeds)
        if self.p == 0.0 or self.low == self.high == 1.0:
            return stems
        draws = hash_uniform(derive_seeds(seeds, _SALT_GAIN), (2, stems.shape[1]))
        gain = self.low + (self.high - self.low) * draws[:, 0]
        if self.p < 1.0:
            gain = torch.where(draws[:, 1] < self.p, gain, torch.ones_like(gain))
        return stems * gain.to(stems.dtype)[:, :, None, None]

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}, p={self.p}"


class Remix(nn.Module):
    """Trade stems between songs: within each group of ``group_size`` consecutive examples, every stem is
    permuted across the group on its own (Demucs ``Remix``), so an example's stems come from different songs.

    Groups are formed within the batch on each device, never across devices: each stem stays with its own
    song with probability ``1 / group_size`` whatever the per-device batch size and the number of GPUs, so
    the training distribution does not change when a run is scaled out (and no communication is needed).
    A last partial group is remixed within itself. Each group's decision and permutations come from a hash
    of all its members' seeds.

    Args:
        group_size: examples per group (at least 1; 1 is the identity).
        p: probability that a group is remixed; 0 disables the module.
    """

    def __init__(self, group_size: int = 4, p: float = 1.0) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = int(group_size)
        self.p = _check_probability(p)

    def forward(self, stems: Tensor, seeds: Tensor) -> Tensor:
        """
        Args:
            stems: ``(B, S, C, T)``.
            seeds: int64 ``(B,)``.

        Returns:
            ``(B, S, C, T)``; within a group, ``out[:, s]`` is a permutation of ``stems[:, s]``.
        """
        seeds = _check(stems, seeds)
        if self.p == 0.0 or self.group_size == 1:
            return stems
        batch = stems.shape[0]
        full = batch - batch % self.group_size
        parts: List[Tensor] = []
        if full:
            parts.append(self._remix_groups(stems[:full], seeds[:full], self.group_size))
        if full < batch:
            parts.append(self._remix_groups(stems[full:], seeds[full:], batch - full))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _remix_groups(self, stems: Tensor, seeds: Tensor, size: int) -> Tensor:
        """Remix ``(G * size, S, C, T)`` as ``G`` groups of ``size`` consecutive examples."""
        if size == 1:
            return stems
        total, num_stems = stems.shape[:2]
        groups = total // size
        keys = self._group_keys(seeds.view(groups, size))
        draws = hash_uniform(keys, (1 + num_stems * size,))
        remix = draws[:, 0] < self.p
        # argsort of i.i.d. uniforms: a uniform random permutation of the group, one per stem.
        perm = torch.argsort(draws[:, 1:].view(groups, num_stems, size), dim=-1, stable=True)
        identity = torch.arange(size, device=stems.device).expand(groups, num_stems, size)
        perm = torch.where(remix[:, None, None], perm, identity).transpose(1, 2)  # (G, size, S)
        grouped = stems.view(groups, size, *stems.shape[1:])
        g = torch.arange(groups, device=stems.device)[:, None, None]
        s = torch.arange(num_stems, device=stems.device)[None, None, :]
        return grouped[g, perm, s].reshape(stems.shape)

    @staticmethod
    def _group_keys(seeds: Tensor) -> Tensor:
        """One key per group from all its members' seeds, in order: (G, size) -> (G,)."""
        members = derive_seeds(seeds.reshape(-1), _SALT_REMIX).view(seeds.shape)
        key = members[:, 0]
        for index in range(1, members.shape[1]):
            key = mix64(key ^ members[:, index])
        return key

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, p={self.p}"


class RemixAugment(nn.Module):
    """Demucs's training augmentations in Demucs's order: shift, sign flip, channel swap, gain, remix.

    Args:
        shift: largest random shift in frames (0: none); the datamodule reads ``shift`` extra frames
            (:attr:`extra_frames`, :meth:`augmented_length`).
        group_size: examples per remix group.
        remix: trade stems between the songs of a group.
        gain: ``(low, high)`` per-stem gain range, or ``None`` for no gain.
        channel_swap: probability of swapping a stem's left and right channels.
        sign_flip: probability of inverting a stem's polarity.
    """

    def __init__(
        self,
        shift: int = 0,
        group_size: int = 4,
        remix: bool = True,
        gain: Optional[Tuple[float, float]] = (0.25, 1.25),
        channel_swap: float = 0.5,
        sign_flip: float = 0.5,
    ) -> None:
        super().__init__()
        augmentations: List[nn.Module] = []
        if shift:
            augmentations.append(Shift(shift))
        if sign_flip:
            augmentations.append(SignFlip(sign_flip))
        if channel_swap:
            augmentations.append(ChannelSwap(channel_swap))
        if gain is not None:
            low, high = gain
            augmentations.append(RandomGain(low, high))
        if remix:
            augmentations.append(Remix(group_size))
        self.augmentations = nn.ModuleList(augmentations)
        self.shift = int(shift)

    @property
    def extra_frames(self) -> int:
        """Frames to read beyond the segment (for the shift)."""
        return self.shift

    def augmented_length(self, length: int) -> int:
        """Frames to read for an output of ``length`` frames."""
        return length + self.shift

    def forward(self, stems: Tensor, seeds: Tensor) -> Tensor:
        """
        Args:
            stems: ``(B, S, C, T + shift)``.
            seeds: int64 ``(B,)``.

        Returns:
            ``(B, S, C, T)``.
        """
        _check(stems, seeds)
        for augmentation in self.augmentations:
            stems = augmentation(stems, seeds)
        return stems
