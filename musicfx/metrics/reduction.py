"""How losses and metrics reduce per-example values over the batch: ``"none"``, ``"mean"`` or ``"sum"``."""
from __future__ import annotations

from typing import Tuple

from torch import Tensor

__all__ = ["REDUCTIONS", "check_reduction", "reduce"]

REDUCTIONS: Tuple[str, ...] = ("none", "mean", "sum")


def check_reduction(reduction: str) -> str:
    """``reduction`` itself, or ValueError when it is not one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce(values: Tensor, reduction: str) -> Tensor:
    """Per-example ``values`` as they are (``"none"``), averaged (``"mean"``) or summed (``"sum"``)."""
    if check_reduction(reduction) == "none":
        return values
    return values.mean() if reduction == "mean" else values.sum()
