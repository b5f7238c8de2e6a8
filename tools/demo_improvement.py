"""Say how much the quickstart's model improved the demo, against its clean reference.

``make quickstart`` denoises ``musicfx/assets/demo_noisy.flac``; this compares the result with
``musicfx/assets/demo_clean.flac`` (written with it by ``tools/make_demo_asset.py``) by SI-SDR, next to the
noisy input and the classical spectral gate, and says plainly when the model lost to its input.
Usage: ``python tools/demo_improvement.py DENOISED.wav``; exit status 0 either way (it reports, it does
not judge the run).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from musicfx.audio.io import read_audio
from musicfx.baselines.spectral_gate import SpectralGate
from musicfx.metrics import si_sdr

ASSETS = Path(__file__).resolve().parents[1] / "musicfx" / "assets"


def _score(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    frames = min(estimate.shape[-1], reference.shape[-1])
    return float(si_sdr(estimate[..., :frames].mean(dim=0, keepdim=True), reference[..., :frames]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("denoised", type=Path, help="the model's output for the demo")
    parser.add_argument("--noisy", type=Path, default=ASSETS / "demo_noisy.flac")
    parser.add_argument("--clean", type=Path, default=ASSETS / "demo_clean.flac")
    args = parser.parse_args()

    torch.set_num_threads(1)
    clean, rate = read_audio(args.clean)
    noisy, noisy_rate = read_audio(args.noisy)
    denoised, denoised_rate = read_audio(args.denoised)
    if not rate == noisy_rate == denoised_rate:
        raise SystemExit(f"demo_improvement: rates differ ({rate}, {noisy_rate}, {denoised_rate} Hz)")
    with torch.no_grad():
        gated = SpectralGate(sample_rate=rate)(noisy)
    before, after, gate = _score(noisy, clean), _score(denoised, clean), _score(gated, clean)
    print(f"Demo SI-SDR against its clean reference: noisy input {before:.1f} dB, the model {after:.1f} dB "
          f"({after - before:+.1f} dB), the spectral gate {gate:.1f} dB ({gate - before:+.1f} dB).")
    if after <= before:
        print("The model did NOT improve the demo: it is no better than the noisy input (it has not trained "
              "long enough). Train longer (--trainer.max_steps, --trainer.max_time) or use the classical "
              "spectral gate meanwhile:\n"
              f"  musicfx denoise {args.noisy} -o {args.denoised.with_name('demo_spectral_gate.wav')} "
              "--method spectral-gate")
    elif after < gate:
        print("The model improved the demo, but less than the spectral gate (--method spectral-gate); "
              "train longer for more.")


if __name__ == "__main__":
    main()
