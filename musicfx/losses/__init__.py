"""Training losses: small modules with a ``reduction`` argument, usable as ``class_path`` in recipes."""
from musicfx.losses.waveform import L1STFTLoss, MultiResolutionSTFTLoss, SISDRLoss, WaveformLoss

__all__ = ["L1STFTLoss", "MultiResolutionSTFTLoss", "SISDRLoss", "WaveformLoss"]
