"""Classical methods the trained models must beat."""
from musicfx.baselines.spectral_gate import SpectralGate, estimate_noise_psd, spectral_gate

__all__ = ["SpectralGate", "estimate_noise_psd", "spectral_gate"]
