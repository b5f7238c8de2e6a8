"""musicfx: PyTorch Lightning tasks for recorded music — denoise, debleed, separate, automix.

``import musicfx`` is light: the heavy modules (Lightning, W&B, museval) load on first use.

Example::

    import musicfx
    task = musicfx.load("runs/quickstart/checkpoints/last.ckpt")
    clean = task.denoise(audio, sample_rate)
    # likewise task.separate(...), task.debleed(...), task.mix(...) for the other tasks' checkpoints
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": "musicfx.api",
    "denoise": "musicfx.api",
    "separate": "musicfx.api",
    "apply_model": "musicfx.inference",
    "Task": "musicfx.tasks.base",
    "DenoiseTask": "musicfx.tasks.denoise",
    "DenoiseData": "musicfx.tasks.denoise",
    "SeparationTask": "musicfx.tasks.separate",
    "SeparationData": "musicfx.tasks.separate",
    "DebleedTask": "musicfx.tasks.debleed",
    "BleedData": "musicfx.tasks.debleed",
    "AutomixTask": "musicfx.tasks.automix",
    "AutomixData": "musicfx.tasks.automix",
    "MusicfxError": "musicfx.errors",
    "restore": "musicfx.restore",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'musicfx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
