"""Evaluation metrics: museval-exact framewise SDR, uSDR, SI-SDR and their aggregation.

All are plain torch functions over ``(..., [sources,] channels, time)`` that run on any device;
museval itself is never imported.
"""
from musicfx.metrics import aggregate, leakage, sdr
from musicfx.metrics.aggregate import (
    AGGREGATIONS,
    SeparationScores,
    aggregate_tracks,
    aggregate_windows,
    nanmedian,
)
from musicfx.metrics.leakage import inter_track_coherence, leakage_score
from musicfx.metrics.sdr import (
    REDUCTIONS,
    museval_sdr,
    si_sdr,
    si_sdr_improvement,
    snr,
    usdr,
    window_frames,
)

__all__ = [*sdr.__all__, *aggregate.__all__, *leakage.__all__]
