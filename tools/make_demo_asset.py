"""Rebuild ``musicfx/assets/demo_noisy.flac``, the noisy recording the quickstart denoises.

Music from the built-in generator, mixed with procedural electrical noise (mains hum, hiss, crackle) and
crowd babble at 5 dB SNR; 8 s, mono, 22.05 kHz, 16-bit FLAC. Deterministic: running it again gives the
same file. Usage: ``python tools/make_demo_asset.py``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from musicfx.audio.io import write_audio
from musicfx.data.generator import generate_music
from musicfx.synth.noise import mix_at_snr, synthesize

RATE = 22050
SECONDS = 8.0
OUT = Path(__file__).resolve().parents[1] / "musicfx" / "assets" / "demo_noisy.flac"


def main() -> None:
    frames = int(RATE * SECONDS)
    music = generate_music(frames, RATE, 1, torch.Generator().manual_seed(2026))
    seeds = torch.tensor([11])
    noise = synthesize("electrical", seeds, 1, frames, RATE) + 0.5 * synthesize("crowd", seeds + 1, 1, frames, RATE)
    noisy = mix_at_snr(music.unsqueeze(0), noise, 5.0)[0]
    noisy = noisy * (0.7 / noisy.abs().max())
    write_audio(OUT, noisy, RATE, subtype="PCM_16")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
