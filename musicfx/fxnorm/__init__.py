"""FxNorm effect normalization (Martínez-Ramírez et al., "Automatic music mixing with deep learning and
out-of-domain data", ISMIR 2022).

* :mod:`~musicfx.fxnorm.features`: EQ, dynamics, panning and loudness features per stem type
  (:class:`FxNormFeatures`); :mod:`~musicfx.fxnorm.dataset` averages them over a dataset
  (:func:`compute_features`).
* :mod:`~musicfx.fxnorm.normalize`: move stems toward them (:func:`normalize_stem`,
  :func:`normalize_dataset`).
* :mod:`~musicfx.fxnorm.onsets`: the spectral-flux onset detector the dynamics feature uses.
"""
from musicfx.fxnorm.dataset import compute_features
from musicfx.fxnorm.features import FxNormConfig, FxNormFeatures, feature_distances
from musicfx.fxnorm.normalize import EFFECTS, NormalizeOptions, normalize_dataset, normalize_stem
from musicfx.fxnorm.onsets import detect_onsets, onset_peak_levels

__all__ = [
    "EFFECTS",
    "FxNormConfig",
    "FxNormFeatures",
    "NormalizeOptions",
    "compute_features",
    "detect_onsets",
    "feature_distances",
    "normalize_dataset",
    "normalize_stem",
    "onset_peak_levels",
]
