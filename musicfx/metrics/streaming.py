"""Separation metrics fed block by block, in memory that does not grow with the song.

museval's SDR windows are independent (:func:`~musicfx.metrics.museval_sdr` scores each window from its
own samples only) and uSDR is a ratio of two sums, so a song can be scored from consecutive blocks of
any size with the same numbers as from the whole arrays:

* :class:`StreamingMusevalSDR` keeps less than one window of audio between blocks and scores every
  window as soon as its last sample arrives;
* :class:`StreamingUSDR` keeps two float64 sums per source.

Example::

    sdr, song = StreamingMusevalSDR(sources=4, sample_rate=44100), StreamingUSDR(sources=4)
    for estimates, references in blocks:  # (sources, channels, block) each, consecutive in time
        sdr.push(estimates, references)
        song.push(estimates, references)
    framewise, usdr = sdr.result(), song.result()  # (4, windows), (4,)
"""
from __future__ import annotations

from typing import List, Optional

import torch

from musicfx.metrics.sdr import _check_pair, _float64_device, _ratio_db, museval_sdr

__all__ = ["StreamingMusevalSDR", "StreamingUSDR"]


class StreamingMusevalSDR:
    """:func:`~musicfx.metrics.museval_sdr` of a signal fed in consecutive blocks.

    Windows follow museval (``int(seconds * rate)`` samples, a trailing partial window dropped, one
    window over the whole signal when it is not longer than a window), so :meth:`result` equals
    ``museval_sdr`` of the concatenated blocks. Memory holds one block plus less than one window.

    Args:
        sources: number of sources ``S`` (the second-to-last-but-one dimension of each block).
        sample_rate: in Hz.
        window: window length in seconds (museval: 1.0).
        hop: hop between windows in seconds (museval: 1.0).
    """

    def __init__(self, sources: int, sample_rate: int, window: float = 1.0, hop: float = 1.0) -> None:
        self.sources = int(sources)
        self.sample_rate = int(sample_rate)
        self.window = window
        self.hop = hop
        self.win = int(window * sample_rate)
        self.step = int(hop * sample_rate)
        if self.win < 1 or self.step < 1:
            raise ValueError(
                f"window={window} s and hop={hop} s at {sample_rate} Hz must both be at least one sample"
            )
        self.length = 0  # samples pushed so far
        self._start = 0  # absolute index of the first buffered sample
        self._next = 0  # absolute index where the next window starts
        self._estimates: Optional[torch.Tensor] = None
        self._references: Optional[torch.Tensor] = None
        self._scores: List[torch.Tensor] = []

    def push(self, estimates: torch.Tensor, references: torch.Tensor) -> None:
        """Add the next ``(sources, channels, time)`` block of estimates and references."""
        _check_pair(estimates, references, 3, "(sources, channels, time)")
        if estimates.dim() != 3 or estimates.shape[0] != self.sources:
            raise ValueError(f"expected blocks shaped ({self.sources}, channels, time), got {tuple(estimates.shape)}")
        estimates, references = estimates.detach(), references.detach()
        self.length += estimates.shape[-1]
        if self._estimates is not None and self._estimates.shape[-1]:
            estimates = torch.cat([self._estimates, estimates], dim=-1)
            references = torch.cat([self._references, references], dim=-1)
        end = self._start + estimates.shape[-1]
        if self._next + self.win <= end:
            count = (end - self._next - self.win) // self.step + 1
            low = self._next - self._start
            high = low + (count - 1) * self.step + self.win
            # A slice of whole windows: museval_sdr frames it exactly as it frames the whole signal.
            self._scores.append(museval_sdr(estimates[..., low:high], references[..., low:high], self.sample_rate,
                                            self.window, self.hop))
            self._next += count * self.step
        # Keep only samples a later window still needs (none before the next window's start).
        cut = min(self._next, end) - self._start
        self._estimates, self._references = estimates[..., cut:], references[..., cut:]
        self._start += cut

    def result(self) -> torch.Tensor:
        """``(sources, windows)`` float64 framewise SDR in dB, as :func:`~musicfx.metrics.museval_sdr`.

        Raises:
            ValueError: nothing was pushed.
        """
        if self.length == 0:
            raise ValueError("no audio was pushed: a signal of 0 samples has no window to evaluate")
        if not self._scores:
            # Not longer than one window: museval scores the whole signal as one window, all still buffered.
            return museval_sdr(self._estimates, self._references, self.sample_rate, self.window, self.hop)
        return torch.cat(self._scores, dim=-1)


class StreamingUSDR:
    """:func:`~musicfx.metrics.usdr` of a song fed in consecutive blocks: two float64 sums per source.

    Args:
        sources: number of sources ``S``.
        eps: added to both energies (the challenges' ``1e-7``).
    """

    def __init__(self, sources: int, eps: float = 1e-7) -> None:
        self.sources = int(sources)
        self.eps = eps
        self._signal: Optional[torch.Tensor] = None
        self._error: Optional[torch.Tensor] = None

    def push(self, estimates: torch.Tensor, references: torch.Tensor) -> None:
        """Add the next ``(sources, channels, time)`` block of estimates and references."""
        _check_pair(estimates, references, 3, "(sources, channels, time)")
        if estimates.dim() != 3 or estimates.shape[0] != self.sources:
            raise ValueError(f"expected blocks shaped ({self.sources}, channels, time), got {tuple(estimates.shape)}")
        device = _float64_device(estimates.device)
        references = references.detach().to(device, torch.float64)
        error = torch.sub(estimates.detach().to(device), references)
        signal = references.square().sum(dim=(-2, -1))
        error = error.square().sum(dim=(-2, -1))
        self._signal = signal if self._signal is None else self._signal + signal
        self._error = error if self._error is None else self._error + error

    def result(self) -> torch.Tensor:
        """``(sources,)`` float64 uSDR in dB.

        Raises:
            ValueError: nothing was pushed.
        """
        if self._signal is None:
            raise ValueError("no audio was pushed")
        return _ratio_db(self._signal + self.eps, self._error + self.eps)
