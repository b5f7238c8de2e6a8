"""The public Python surface: a light import, lazy names, clear errors from load()."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

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
    assert set(musicfx.__all__) >= {"load", "denoise", "separate", "DenoiseTask", "DenoiseData", "Task", "apply_model"}
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


class _RampSeparator(torch.nn.Module):
    """(batch, 1, time) -> (batch, 2, 1, time): a position-dependent split, so time shifts change it."""

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0.0, 1.0, mix.shape[-1])
        return torch.stack([mix * ramp, mix * (1 - ramp)], dim=1)


def test_separate_through_the_api_with_and_without_shifts(tmp_path) -> None:
    import soundfile as sf

    from musicfx.inference import separate_file
    from musicfx.tasks.separate import SeparationTask

    task = SeparationTask(_RampSeparator(), sources=("a", "b"), sample_rate=8000, channels=1).eval()
    audio = torch.randn(1, 8000 * 3, generator=torch.Generator().manual_seed(0))
    plain = musicfx.separate(audio, 8000, task, segment=1.0)
    assert set(plain) == {"a", "b"} and plain["a"].shape == audio.shape
    torch.testing.assert_close(plain["a"] + plain["b"], audio, atol=1e-5, rtol=0)
    shifted = musicfx.separate(audio, 8000, task, segment=1.0, shifts=2)
    assert float((shifted["a"] - plain["a"]).abs().max()) > 0.05
    torch.testing.assert_close(shifted["a"] + shifted["b"], audio, atol=1e-5, rtol=0)
    # The command's file path is the same engine: the same samples come out.
    sf.write(tmp_path / "mix.wav", audio.numpy().T, 8000, subtype="FLOAT")
    outs = separate_file(task.model, tmp_path / "mix.wav", [tmp_path / "a.wav", tmp_path / "b.wav"], 8000, 1,
                         segment=1.0, shifts=2, progress=False)
    torch.testing.assert_close(torch.from_numpy(sf.read(outs[0], dtype="float32")[0]), shifted["a"][0], atol=1e-5,
                               rtol=0)
