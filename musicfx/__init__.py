"""musicfx: PyTorch Lightning tasks for recorded music — denoise, debleed, separate, automix.

``import musicfx`` is light: the heavy modules (Lightning, W&B, museval) load on first use.

Example::

    import musicfx
    task = musicfx.load("runs/quickstart/checkpoints/last.ckpt")
    clean = task.denoise(audio, sample_rate)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": "musicfx.api",
    "denoise": "musicfx.api",
    "apply_model": "musicfx.inference",
    "Task": "musicfx.tasks.base",
    "DenoiseTask": "musicfx.tasks.denoise",
    "DenoiseData": "musicfx.tasks.denoise",
    "MusicfxError": "musicfx.errors",
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
