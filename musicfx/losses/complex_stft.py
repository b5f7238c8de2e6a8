"""L1 (or MSE) between complex STFTs, the loss of the two-stage denoising U-Nets MusicECAN builds on."""
from __future__ import annotations

import torch
from torch import nn

from musicfx.audio.spectral import stft

__all__ = ["ComplexSTFTLoss"]

_WINDOWS = ("hann", "hamming")


class ComplexSTFTLoss(nn.Module):
    """Mean absolute (or squared) error of the real and imaginary parts of one STFT, in float32.

    Moliner & Valimaki's denoiser (ICASSP 2022), whose configuration MusicECAN's authors publish, trains with
    ``L1Loss`` on the stacked real and imaginary parts of a Hamming-windowed STFT (2048 / 512, no centring).

    Args:
        n_fft: FFT and window size.
        hop_length: hop in samples.
        window: ``"hamming"`` or ``"hann"`` (periodic).
        center: centre the frames (pad ``n_fft // 2`` on both sides) or not (the reference pads the end only).
        kind: ``"l1"`` or ``"mse"``.

    Shapes:
        estimate, target: ``(batch, ..., time)``; returns a scalar.
    """

    def __init__(
        self, n_fft: int = 2048, hop_length: int = 512, window: str = "hamming", center: bool = False, kind: str = "l1"
    ) -> None:
        super().__init__()
        if window not in _WINDOWS:
            raise ValueError(f"window must be one of {_WINDOWS}, got {window!r}")
        if kind not in ("l1", "mse"):
            raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
        self.n_fft, self.hop_length, self.center, self.kind = n_fft, hop_length, center, kind
        maker = torch.hamming_window if window == "hamming" else torch.hann_window
        self.register_buffer("window", maker(n_fft, periodic=True), persistent=False)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if estimate.shape != target.shape:
            raise ValueError(f"ComplexSTFTLoss: estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ")
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            x = torch.stack([estimate.float(), target.float()])
            if not self.center:
                # The reference appends one window of zeros so the last samples fall in a frame.
                x = nn.functional.pad(x, (0, self.n_fft))
            spec = torch.view_as_real(stft(x, self.n_fft, self.hop_length, self.window.to(x.device), center=self.center))
            error = spec[0] - spec[1]
            return error.abs().mean() if self.kind == "l1" else error.square().mean()

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop_length={self.hop_length}, center={self.center}, kind={self.kind!r}"
