"""museval's BSS Eval v4 (SDR, ISR, SIR, SAR per window) over a signal fed in blocks, in two passes.

museval v4 fits its distortion filters once, on the whole signal, from the correlations of the references
with each other and with the estimates at lags ``0 .. filters_len - 1``; each window is then decomposed
with those filters. Scoring blocks separately would fit other filters (SIR / ISR / SAR change by dB), so
:class:`StreamingBSSEval` takes two passes: :meth:`~StreamingBSSEval.push` accumulates the lagged
correlations block by block (exactly the sums museval takes by FFT over the whole signal), :meth:`fit`
solves the filters, and :meth:`~StreamingBSSEval.score` decomposes the windows of a second pass over the
same blocks with museval's own per-window functions. Memory holds one block, the correlations and the
filters (``(S C filters_len)^2`` float64), never the signal. Needs ``museval`` (imported when used).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

__all__ = ["StreamingBSSEval"]

_METRICS = ("SDR", "ISR", "SIR", "SAR")


class StreamingBSSEval:
    """``museval.evaluate(references, estimates, win, hop)`` of blocks fed twice (v4, images mode).

    Args:
        sources: number of sources ``S``.
        channels: channels ``C`` of every source.
        sample_rate: in Hz.
        window: window length in seconds (museval for MUSDB: 1.0).
        hop: hop between windows in seconds (1.0).
        filters_len: museval's distortion filter length (512).
    """

    def __init__(self, sources: int, channels: int, sample_rate: int, window: float = 1.0, hop: float = 1.0,
                 filters_len: int = 512) -> None:
        self.sources, self.channels = int(sources), int(channels)
        self.win, self.step = int(window * sample_rate), int(hop * sample_rate)
        if self.win < 1 or self.step < 1:
            raise ValueError(f"window={window} s and hop={hop} s at {sample_rate} Hz must be at least one sample")
        self.taps = int(filters_len)
        count = self.sources * self.channels
        # lagged[a, b, m] = sum_t a(t) b(t - m) over the whole signal; a, b run over the reference channels
        # (s, c) and then the estimate channels.
        self._lagged = np.zeros((2 * count, 2 * count, self.taps))
        self._past = np.zeros((2 * count, self.taps - 1))
        self.length = 0
        self._filters: Optional[Tuple[np.ndarray, np.ndarray]] = None
        # Second pass: the same window bookkeeping as StreamingMusevalSDR.
        self._start = self._next = self._scored = 0
        self._buffer: Optional[np.ndarray] = None
        self._scores: List[np.ndarray] = []

    @staticmethod
    def _layout(estimates: torch.Tensor, references: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
        """``(S, C, t)`` tensors -> float64 ``(S, t, C)`` arrays, museval's layout."""
        return (references.detach().to("cpu", torch.float64).numpy().transpose(0, 2, 1),
                estimates.detach().to("cpu", torch.float64).numpy().transpose(0, 2, 1))

    def push(self, estimates: torch.Tensor, references: torch.Tensor) -> None:
        """First pass: add the next ``(sources, channels, time)`` block."""
        if self._filters is not None:
            raise RuntimeError("push() is the first pass; after fit(), feed the same blocks to score()")
        if estimates.shape != references.shape or estimates.shape[:2] != (self.sources, self.channels):
            raise ValueError(f"expected blocks shaped ({self.sources}, {self.channels}, time), "
                             f"got {tuple(estimates.shape)} and {tuple(references.shape)}")
        n = estimates.shape[-1]
        if n == 0:
            return
        signals = torch.cat([references, estimates]).detach().to("cpu", torch.float64).reshape(-1, n).numpy()
        history = np.concatenate([self._past, signals], axis=1)  # b(t - m) needs the last taps - 1 samples
        size = 1 << int(np.ceil(np.log2(history.shape[1] + n)))
        current = np.fft.rfft(signals, size)
        delayed = np.fft.rfft(history, size)
        # r[a, b, k] = sum_u a(u) history_b(u + k); a(t) b(t - m) sits at k = taps - 1 - m.
        lags = self.taps - 1 - np.arange(self.taps)
        for a in range(signals.shape[0]):
            r = np.fft.irfft(np.conj(current[a])[None] * delayed, size)
            self._lagged[a] += r[:, lags]
        self._past = history[:, -(self.taps - 1):] if self.taps > 1 else self._past
        self.length += n

    def fit(self) -> None:
        """Solve museval's distortion filters from the correlations of the first pass."""
        from museval import metrics
        from scipy.linalg import toeplitz

        if self.length == 0:
            raise ValueError("no audio was pushed")
        S, C, L = self.sources, self.channels, self.taps
        refs = S * C
        G = np.zeros((S, S, C, C, L, L))
        for i in range(S):
            for j in range(S):
                for c1 in range(C):
                    for c2 in range(C):
                        a, b = j * C + c2, i * C + c1
                        forward, backward = self._lagged[a, b], self._lagged[b, a]
                        G[j, i, c2, c1] = toeplitz(np.hstack((forward[0], backward[1:])), r=forward)
        eps = np.finfo(float).eps
        whole = metrics._reshape_G(G)
        whole += eps * np.eye(whole.shape[0])
        filters = np.zeros((S, S, C, L, C))
        own = np.zeros((S, C, L, C))
        for jest in range(S):
            # D[j, cj, :, c] = sum_t e_c(t) x_(j, cj)(t - m)
            D = np.stack([np.stack([self._lagged[refs + jest * C + c, j * C + cj] for c in range(C)], axis=-1)
                          for j in range(S) for cj in range(C)]).reshape(S, C, L, C)
            filters[jest] = _solve(whole, D.reshape(S * C * L, C)).reshape(S, C, L, C)
            single = metrics._reshape_G(G[jest, jest][None, None]) + eps * np.eye(C * L)
            own[jest] = _solve(single, D[jest].reshape(C * L, C)).reshape(C, L, C)
        self._filters = (filters, own)
        self._lagged = np.zeros(0)  # no longer needed

    def score(self, estimates: torch.Tensor, references: torch.Tensor) -> None:
        """Second pass: the same blocks again, in order; every window that completes is decomposed."""
        if self._filters is None:
            raise RuntimeError("call fit() after the first pass (push) and before score()")
        refs, ests = self._layout(estimates, references)
        block = np.concatenate([refs, ests], axis=0)  # (2 S, t, C)
        if self._buffer is not None and self._buffer.shape[1]:
            block = np.concatenate([self._buffer, block], axis=1)
        self._scored += refs.shape[1]
        end = self._start + block.shape[1]
        while self._next + self.win <= end and self.win < self.length:
            low = self._next - self._start
            self._scores.append(self._window(block[:, low : low + self.win]))
            self._next += self.step
        cut = min(self._next, end) - self._start
        self._buffer = block[:, cut:]
        self._start += cut

    def _window(self, window: np.ndarray) -> np.ndarray:
        from museval import metrics

        S = self.sources
        refs, ests = window[:S], window[S:]
        out = np.full((4, S), np.nan)
        if metrics._any_source_silent(refs) or metrics._any_source_silent(ests):
            return out
        filters, own = self._filters
        for j in range(S):
            parts = metrics._bss_decomp_mtifilt(refs, ests[j], j, filters[j], own[j])
            out[:, j] = metrics._bss_crit(*parts, False)
        return out

    def result(self) -> Dict[str, torch.Tensor]:
        """``{"SDR"|"ISR"|"SIR"|"SAR": (sources, windows)}`` float64, as ``museval.evaluate`` returns them.

        Raises:
            RuntimeError: the second pass did not see the whole signal.
        """
        if self._scored != self.length:
            raise RuntimeError(f"score() saw {self._scored} of the {self.length} samples pushed")
        if self.win >= self.length:
            # museval's one window over the whole (short) signal, all of it still buffered.
            scores = [self._window(self._buffer)]
        else:
            scores = self._scores
        stacked = np.stack(scores, axis=-1)  # (4, S, windows)
        return {name: torch.from_numpy(stacked[i].copy()) for i, name in enumerate(_METRICS)}


def _solve(G: np.ndarray, D: np.ndarray) -> np.ndarray:
    """museval's filter solve: ``solve(G + eps I, D)``, least squares when that is singular."""
    try:
        return np.linalg.solve(G, D)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(G, D, rcond=None)[0]
