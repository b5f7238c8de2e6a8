"""The public Python surface: a light import, lazy names, clear errors from load()."""
from __future__ import annotations

import subprocess
import sys

import pytest

import musicfx
from musicfx.errors import MusicfxError


def test_import_is_light() -> None:
    code = (
        "import sys, musicfx\n"
        "heavy = [m for m in ('wandb', 'museval', 'lightning', 'matplotlib', 'musdb', 'torch') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_lazy_public_names() -> None:
    assert set(musicfx.__all__) >= {"load", "denoise", "DenoiseTask", "DenoiseData", "Task", "apply_model"}
    assert musicfx.DenoiseTask.__name__ == "DenoiseTask"
    with pytest.raises(AttributeError):
        musicfx.not_a_thing  # noqa: B018


def test_load_errors_are_clear(tmp_path) -> None:
    with pytest.raises(MusicfxError, match="no such checkpoint"):
        musicfx.load(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MusicfxError, match="not a readable checkpoint"):
        musicfx.load(junk)


def test_spectral_gate_through_the_api() -> None:
    import torch

    t = torch.arange(22050) / 22050
    clean = 0.3 * torch.sin(2 * torch.pi * 440 * t).unsqueeze(0)
    noisy = clean + 0.05 * torch.randn(1, t.numel(), generator=torch.Generator().manual_seed(0))
    out = musicfx.denoise(noisy, 22050, method="spectral-gate")
    assert out.shape == noisy.shape
    assert float((out - clean).square().mean()) < float((noisy - clean).square().mean())
