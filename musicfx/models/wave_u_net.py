"""Wave-U-Net (Stoller, Ewert & Dixon, ISMIR 2018) as the automix baseline: stems in, stereo mix out.

The FxNorm-automix paper's baseline is a Wave-U-Net with 5 levels and 24 features. This module builds the
original design at that size:

* input: every stem's channels stacked, ``S * 2`` waveforms (mono stems are duplicated to stereo);
* downsampling block ``i = 1..L``: ``Conv1d(kernel 15) -> F_i`` features + LeakyReLU (the skip output),
  then decimation by 2 (every other time step dropped); ``F_i = i * features`` (``growth="add"``: 24, 48,
  ..., features grow by 24 per level) or ``features * 2**(i-1)`` (``growth="double"``);
* bottleneck: ``Conv1d(kernel 15) -> F_{L+1}`` + LeakyReLU;
* upsampling block ``i = L..1``: linear-interpolation upsampling by 2 (no parameters), concatenation
  with the skip of level ``i``, ``Conv1d(kernel 5) -> F_i`` + LeakyReLU;
* output: concatenation with the input, ``Conv1d(kernel 1) -> 2`` channels, ``tanh``.

Output length: the original uses unpadded ("valid") convolutions, so its output is shorter than its input
and needs extra context. Here every convolution is zero-padded to keep its length ("same"), and the input is
padded at the end to a multiple of ``2 ** levels`` (reflected when the signal is long enough, zeros
otherwise) so every decimation is exact; the output is cropped back, so its length always equals the
input's.

Note: the released FxNorm-automix config for this baseline (``configs/ISMIR/wun_*``, the f90
Wave-U-Net-Pytorch code) differs from the paper's description: kernel 5 everywhere, doubling features,
GroupNorm + ReLU, fixed sinc resampling with stride 1 (so no decimation at all). Use ``growth="double"``
and ``down_kernel_size=up_kernel_size=5`` for the closest match in size; this module keeps the paper's
Wave-U-Net.

Mixed precision: the U-Net follows autocast; the output convolution runs in float32 because it is the path
that carries the input stems straight into the mix.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.models.fxnorm_automix import stems_to_stereo
from musicfx.models.blocks import declare_names

__all__ = ["WaveUNet"]


class _ConvAct(nn.Module):
    """Length-preserving ``Conv1d`` + LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, negative_slope: float) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel sizes must be odd to keep the length centred, got {kernel_size}")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class WaveUNet(nn.Module):
    """Wave-U-Net mixing ``num_stems`` stems into a stereo mix.

    Args:
        num_stems: input stems ``S``.
        stems, sample_rate: what the model declares to the task and the data (``None``: nothing).
        levels: downsampling levels ``L`` (5 for the FxNorm-automix baseline).
        features: features added per level (``F_c``, 24).
        growth: ``"add"`` (``F_i = i * features``, the paper) or ``"double"`` (``features * 2**(i-1)``).
        down_kernel_size: kernel of the downsampling and bottleneck convolutions (15).
        up_kernel_size: kernel of the upsampling convolutions (5).
        negative_slope: slope of the LeakyReLU.
    """

    def __init__(
        self,
        num_stems: Optional[int] = None,
        levels: int = 5,
        features: int = 24,
        growth: str = "add",
        down_kernel_size: int = 15,
        up_kernel_size: int = 5,
        negative_slope: float = 0.2,
        stems: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        super().__init__()
        num_stems = declare_names(self, "stems", stems, num_stems, sample_rate)
        if growth not in ("add", "double"):
            raise ValueError(f"growth must be 'add' or 'double', got {growth!r}")
        if levels < 1 or features < 1:
            raise ValueError(f"need levels, features >= 1, got {levels}, {features}")
        self.levels = levels
        widths = [features * (i + 1) if growth == "add" else features * 2**i for i in range(levels + 1)]
        self.widths = widths
        inputs = 2 * num_stems
        self.down = nn.ModuleList(
            _ConvAct(inputs if i == 0 else widths[i - 1], widths[i], down_kernel_size, negative_slope)
            for i in range(levels)
        )
        self.bottleneck = _ConvAct(widths[levels - 1], widths[levels], down_kernel_size, negative_slope)
        self.up = nn.ModuleList(
            _ConvAct(widths[i + 1] + widths[i], widths[i], up_kernel_size, negative_slope)
            for i in reversed(range(levels))
        )
        self.output = nn.Conv1d(widths[0] + inputs, 2, 1)

    def _pad(self, x: Tensor) -> Tensor:
        """Pad time at the end to a multiple of ``2 ** levels``."""
        pad = (-x.shape[-1]) % (2**self.levels)
        if pad == 0:
            return x
        mode = "reflect" if pad < x.shape[-1] else "constant"
        return F.pad(x, (0, pad), mode=mode)

    def forward(self, stems: Tensor) -> Tensor:
        """Mix the stems.

        Args:
            stems: ``(batch, num_stems, channels, time)``, ``channels`` 1 or 2, any ``time >= 1``.

        Returns:
            Stereo mix ``(batch, 2, time)`` in ``(-1, 1)``, float32.
        """
        stems = stems_to_stereo(stems, self.num_stems)
        length = stems.shape[-1]
        x = self._pad(stems.reshape(stems.shape[0], 2 * self.num_stems, length))
        skips: List[Tensor] = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = h[..., ::2]
        h = self.bottleneck(h)
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, scale_factor=2.0, mode="linear", align_corners=False)
            h = block(torch.cat([h, skip.to(h.dtype)], dim=1))
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = self.output(torch.cat([h.float(), x.float()], dim=1))
            return torch.tanh(out)[..., :length]
