"""Classical methods the trained models must beat: spectral gating (denoise), KAMIR (debleed), oracle
masks (separation upper bound)."""
from musicfx.baselines.kamir import KAMIR, kamir
from musicfx.baselines.oracle import ideal_binary_mask, ideal_ratio_mask
from musicfx.baselines.spectral_gate import SpectralGate, estimate_noise_psd, spectral_gate

__all__ = ["KAMIR", "SpectralGate", "estimate_noise_psd", "ideal_binary_mask", "ideal_ratio_mask", "kamir",
           "spectral_gate"]
