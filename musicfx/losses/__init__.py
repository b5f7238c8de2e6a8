"""Training losses: small modules with a ``reduction`` argument, usable as ``class_path`` in recipes."""
from musicfx.losses.automix import AutomixLoss, LoudnessLoss, StereoSTFTLoss
from musicfx.losses.complex_stft import ComplexSTFTLoss
from musicfx.losses.papers import BSRoFormerLoss, UnmixMagnitudeLoss
from musicfx.losses.separation import AdversarialLoss, MagnitudeLoss, MaskBCELoss, MixtureConsistencyLoss
from musicfx.losses.waveform import L1STFTLoss, MultiResolutionSTFTLoss, SISDRLoss, WaveformLoss

__all__ = [
    "AdversarialLoss", "AutomixLoss", "BSRoFormerLoss", "ComplexSTFTLoss", "L1STFTLoss", "LoudnessLoss", "MagnitudeLoss",
    "MaskBCELoss", "MixtureConsistencyLoss", "MultiResolutionSTFTLoss", "SISDRLoss", "StereoSTFTLoss",
    "UnmixMagnitudeLoss", "WaveformLoss",
]
