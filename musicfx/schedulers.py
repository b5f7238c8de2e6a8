"""Learning-rate schedules a recipe can name (``scheduler: class_path: musicfx.schedulers.WarmupDecay``).

Tasks step their scheduler after every optimizer step, so every length here is in optimizer steps.
"""
from __future__ import annotations

import bisect
import math
from typing import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["PiecewiseConstantLR", "WarmupDecay"]

_DECAYS = ("none", "linear", "cosine")


class WarmupDecay(LambdaLR):
    """Linear warm-up, an optional plateau, then a linear or cosine decay of every group's learning rate.

    The factor applied to each group's initial learning rate at step ``s`` is ``(s + 1) / warmup_steps``
    during the warm-up, 1 during the next ``hold_steps``, then falls to ``final_factor`` over ``decay_steps``
    (``decay="linear"`` or ``"cosine"``) and stays there; ``decay="none"`` keeps 1 after the warm-up.

    Examples: transformer warm-up then cosine, ``WarmupDecay(opt, warmup_steps=5000, decay="cosine",
    decay_steps=200000)``; CycleGAN's constant then linear decay to 0, ``WarmupDecay(opt, hold_steps=N,
    decay="linear", decay_steps=N)``.

    Args:
        optimizer: the optimizer whose groups are scheduled.
        warmup_steps: steps of linear warm-up from ``1 / warmup_steps`` (0: none).
        hold_steps: steps at the full rate after the warm-up.
        decay: ``"none"``, ``"linear"`` or ``"cosine"``.
        decay_steps: length of the decay (required unless ``decay="none"``).
        final_factor: factor reached at the end of the decay.
        last_epoch: as :class:`torch.optim.lr_scheduler.LambdaLR` (``-1`` starts fresh).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int = 0,
        hold_steps: int = 0,
        decay: str = "none",
        decay_steps: int = 0,
        final_factor: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if decay not in _DECAYS:
            raise ValueError(f"decay must be one of {_DECAYS}, got {decay!r}")
        if warmup_steps < 0 or hold_steps < 0 or decay_steps < 0:
            raise ValueError("warmup_steps, hold_steps and decay_steps must be >= 0")
        if decay != "none" and decay_steps < 1:
            raise ValueError(f"decay={decay!r} needs decay_steps >= 1")
        if not 0.0 <= final_factor <= 1.0:
            raise ValueError(f"final_factor must be in [0, 1], got {final_factor}")
        self.warmup_steps = int(warmup_steps)
        self.hold_steps = int(hold_steps)
        self.decay = decay
        self.decay_steps = int(decay_steps)
        self.final_factor = float(final_factor)
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the initial learning rate at ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        step -= self.warmup_steps + self.hold_steps
        if step < 0 or self.decay == "none":
            return 1.0
        progress = min(step / self.decay_steps, 1.0)
        if self.decay == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_factor + (1.0 - self.final_factor) * shape


class PiecewiseConstantLR(LambdaLR):
    """A learning rate that is a fixed factor of the initial one on each interval of steps.

    ``factors[i]`` applies from step ``boundaries[i - 1]`` (0 for the first) up to ``boundaries[i]``; the last
    factor applies from the last boundary on, so ``len(factors) == len(boundaries) + 1``. FxNorm-automix's
    schedule (an epoch at rate 0 that warms Adam's moments up, then 1e-3 divided by 3, 10, 30, 100, 1000 at
    fixed epochs) is ``boundaries`` at those epochs times the steps per epoch.

    Args:
        optimizer: the optimizer whose groups are scheduled.
        boundaries: increasing step numbers where the factor changes.
        factors: the factor on each interval.
        last_epoch: as :class:`torch.optim.lr_scheduler.LambdaLR`.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, boundaries: Sequence[int], factors: Sequence[float], last_epoch: int = -1
    ) -> None:
        self.boundaries = [int(b) for b in boundaries]
        self.factors = [float(f) for f in factors]
        if len(self.factors) != len(self.boundaries) + 1:
            raise ValueError(
                f"need one more factor than boundaries, got {len(self.factors)} factors and {len(self.boundaries)} boundaries"
            )
        if any(b <= a for a, b in zip(self.boundaries, self.boundaries[1:])) or any(b < 0 for b in self.boundaries):
            raise ValueError(f"boundaries must be increasing and >= 0, got {self.boundaries}")
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the initial learning rate at ``step`` (0-based)."""
        return self.factors[bisect.bisect_right(self.boundaries, step)]
