"""Evaluation metrics: museval-exact framewise SDR, uSDR, SI-SDR and their aggregation.

All are plain torch functions over ``(..., [sources,] channels, time)`` that run on any device; museval is
imported only by :class:`~musicfx.metrics.bss_eval.StreamingBSSEval` (its SIR / ISR / SAR decomposition).
"""
from musicfx.metrics import aggregate, bss_eval, leakage, sdr, streaming
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
from musicfx.metrics.bss_eval import StreamingBSSEval
from musicfx.metrics.streaming import StreamingMusevalSDR, StreamingUSDR

__all__ = [*sdr.__all__, *aggregate.__all__, *leakage.__all__, *streaming.__all__, *bss_eval.__all__]
