"""Aggregating framewise SDRs into the numbers papers report.

MUSDB18 convention (museval, SiSEC 2018): per track the median over 1 s windows (NaN windows ignored),
then the median over tracks; the Music Demixing challenges report the mean over tracks of uSDR.
:class:`SeparationScores` collects both, per source, under explicit names.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch

from musicfx.metrics.sdr import museval_sdr, usdr

__all__ = ["nanmedian", "aggregate_windows", "aggregate_tracks", "SeparationScores", "AGGREGATIONS"]

#: Values accepted by ``how`` in :func:`aggregate_tracks`.
AGGREGATIONS = ("median", "mean")


def nanmedian(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Median over ``dim`` ignoring NaN, with numpy's semantics (``torch.nanmedian`` differs).

    An even count averages the two middle values (``torch.nanmedian`` returns the lower one); a slice
    that is all NaN gives NaN; ``+inf`` sorts above every number, so ``median([1, inf]) == inf``.

    Args:
        values: any shape, floating point.
        dim: dimension to reduce.

    Returns:
        ``values`` with ``dim`` removed.
    """
    if not values.is_floating_point():
        values = values.to(torch.float64)
    ordered = values.sort(dim=dim).values  # NaN sorts last
    count = (~values.isnan()).sum(dim=dim, keepdim=True)
    low = ((count - 1).clamp(min=0)) // 2
    high = count // 2
    median = (ordered.gather(dim, low) + ordered.gather(dim, high)) / 2
    median = median.masked_fill(count == 0, math.nan)
    return median.squeeze(dim)


def aggregate_windows(sdr: torch.Tensor) -> torch.Tensor:
    """One SDR per track and source: the median over windows, NaN windows ignored (museval's default).

    Args:
        sdr: ``(..., sources, windows)`` from :func:`~musicfx.metrics.museval_sdr`.

    Returns:
        ``(..., sources)``; NaN where every window is NaN.
    """
    return nanmedian(sdr, dim=-1)


def aggregate_tracks(values: torch.Tensor, how: str = "median") -> torch.Tensor:
    """One number per source over tracks, ignoring tracks whose value is NaN.

    Args:
        values: ``(tracks, sources)``, e.g. stacked :func:`aggregate_windows` results.
        how: ``"median"`` (MUSDB18 / museval convention) or ``"mean"``.

    Returns:
        ``(sources,)``; NaN for a source with no finite-or-infinite value at all.
    """
    if values.dim() != 2:
        raise ValueError(f"expected values shaped (tracks, sources), got {tuple(values.shape)}")
    if how == "median":
        return nanmedian(values, dim=0)
    if how == "mean":
        if not values.is_floating_point():
            values = values.to(torch.float64)
        return values.nanmean(dim=0)
    raise ValueError(f"how must be one of {AGGREGATIONS}, got {how!r}")


class SeparationScores:
    """Per-source separation scores over many tracks, under the names papers use.

    Each track contributes its window-median museval SDR and its uSDR per source. :meth:`table`
    returns, per source:

    * ``"SDR_median"``: median over tracks of the per-track median over 1 s windows (MUSDB18, SiSEC);
    * ``"SDR_mean"``: mean over tracks of that same per-track median;
    * ``"uSDR"``: mean over tracks of the song-level SDR (Music Demixing challenges).

    Example::

        scores = SeparationScores(["drums", "bass", "other", "vocals"])
        for estimates, references in loader:  # (batch, sources, channels, time)
            scores.add(estimates, references, sample_rate=44100)
        print(scores.table()["vocals"]["SDR_median"])

    Args:
        sources: source names, in the order of the ``sources`` dimension.
        window: museval window length in seconds.
        hop: museval hop in seconds.
    """

    def __init__(self, sources: Sequence[str], window: float = 1.0, hop: float = 1.0) -> None:
        if len(sources) == 0:
            raise ValueError("SeparationScores needs at least one source name")
        self.sources = tuple(sources)
        self.window = window
        self.hop = hop
        self.track_names: List[str] = []
        self._sdr: List[torch.Tensor] = []
        self._usdr: List[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._sdr)

    def add(
        self,
        estimates: torch.Tensor,
        references: torch.Tensor,
        sample_rate: int,
        names: Optional[Sequence[str]] = None,
    ) -> torch.Tensor:
        """Score one track ``(sources, channels, time)`` or a batch ``(batch, sources, channels, time)``.

        Args:
            estimates: estimated sources.
            references: true sources, same shape.
            sample_rate: in Hz.
            names: one name per track (default: running numbers).

        Returns:
            ``(batch, sources, windows)`` framewise SDR of what was added (``batch`` is 1 for one track).
        """
        if estimates.dim() == 3:
            estimates, references = estimates.unsqueeze(0), references.unsqueeze(0)
        if estimates.dim() != 4 or estimates.shape[1] != len(self.sources):
            raise ValueError(
                f"expected (batch, {len(self.sources)} sources, channels, time), got {tuple(estimates.shape)}"
            )
        framewise = museval_sdr(estimates, references, sample_rate, self.window, self.hop)
        self.add_scores(framewise, usdr(estimates, references), names)
        return framewise

    def add_scores(
        self, framewise_sdr: torch.Tensor, usdr_values: torch.Tensor, names: Optional[Sequence[str]] = None
    ) -> None:
        """Add precomputed scores, e.g. gathered from other processes.

        Args:
            framewise_sdr: ``(sources, windows)`` or ``(batch, sources, windows)``.
            usdr_values: ``(sources,)`` or ``(batch, sources)``.
            names: one name per track.
        """
        if framewise_sdr.dim() == 2:
            framewise_sdr, usdr_values = framewise_sdr.unsqueeze(0), usdr_values.unsqueeze(0)
        batch = framewise_sdr.shape[0]
        if framewise_sdr.shape[1] != len(self.sources) or tuple(usdr_values.shape) != (batch, len(self.sources)):
            raise ValueError(
                f"expected SDR (batch, {len(self.sources)}, windows) and uSDR (batch, {len(self.sources)}), "
                f"got {tuple(framewise_sdr.shape)} and {tuple(usdr_values.shape)}"
            )
        if names is None:
            names = [f"track{len(self) + i}" for i in range(batch)]
        if len(names) != batch:
            raise ValueError(f"got {len(names)} names for {batch} tracks")
        per_track = aggregate_windows(framewise_sdr).to("cpu", torch.float64)
        usdr_values = usdr_values.detach().to("cpu", torch.float64)
        for i in range(batch):
            self._sdr.append(per_track[i])
            self._usdr.append(usdr_values[i])
            self.track_names.append(str(names[i]))

    def per_track(self) -> Dict[str, Dict[str, Dict[str, float]]]:
        """``{track: {source: {"SDR": window median, "uSDR": ...}}}``."""
        return {
            name: {
                source: {"SDR": float(sdr[j]), "uSDR": float(usdr_[j])} for j, source in enumerate(self.sources)
            }
            for name, sdr, usdr_ in zip(self.track_names, self._sdr, self._usdr)
        }

    def table(self) -> Dict[str, Dict[str, float]]:
        """``{source: {"SDR_median": ..., "SDR_mean": ..., "uSDR": ...}}`` over the tracks added so far."""
        if not self._sdr:
            raise ValueError("no tracks were scored yet")
        sdr = torch.stack(self._sdr)
        usdr_ = torch.stack(self._usdr)
        median = aggregate_tracks(sdr, "median")
        mean = aggregate_tracks(sdr, "mean")
        usdr_mean = aggregate_tracks(usdr_, "mean")
        return {
            source: {"SDR_median": float(median[j]), "SDR_mean": float(mean[j]), "uSDR": float(usdr_mean[j])}
            for j, source in enumerate(self.sources)
        }

    def overall(self) -> Dict[str, float]:
        """Each column of :meth:`table` averaged over sources (the challenges' single "overall" number)."""
        table = self.table()
        columns = ("SDR_median", "SDR_mean", "uSDR")
        return {column: sum(row[column] for row in table.values()) / len(table) for column in columns}
