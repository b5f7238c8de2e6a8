"""Rebuild ``musicfx/assets/demo_noisy.flac``, the noisy recording the quickstart denoises, and
``musicfx/assets/demo_clean.flac``, its clean reference (what the quickstart's improvement is measured
against, by ``tools/demo_improvement.py``).

Music from the built-in generator, mixed with procedural electrical noise (mains hum, hiss, crackle) and
crowd babble at 5 dB SNR; 8 s, mono, 22.05 kHz, 16-bit FLAC; both files share one gain. Deterministic:
running it again gives the same files. Usage: ``python tools/make_demo_asset.py``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from musicfx.audio.io import write_audio
from musicfx.data.generator import generate_music
from musicfx.synth.noise import mix_at_snr, synthesize

RATE = 22050
SECONDS = 8.0
ASSETS = Path(__file__).resolve().parents[1] / "musicfx" / "assets"
NOISY = ASSETS / "demo_noisy.flac"
CLEAN = ASSETS / "demo_clean.flac"


def main() -> None:
    frames = int(RATE * SECONDS)
    music = generate_music(frames, RATE, 1, torch.Generator().manual_seed(2026))
    seeds = torch.tensor([11])
    noise = synthesize("electrical", seeds, 1, frames, RATE) + 0.5 * synthesize("crowd", seeds + 1, 1, frames, RATE)
    noisy = mix_at_snr(music.unsqueeze(0), noise, 5.0)[0]
    gain = 0.7 / noisy.abs().max()
    for path, audio in ((NOISY, noisy * gain), (CLEAN, music * gain)):
        write_audio(path, audio, RATE, subtype="PCM_16")
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
