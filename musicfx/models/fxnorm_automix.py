"""FxNorm-automix (Martínez-Ramírez et al., ISMIR 2022): a waveform model that mixes stems into a stereo mix.

Architecture, following the released code (sony/FxNorm-automix, ``common_networkbuilding_cafx_tdcn_lstm_mix``):

* **Adaptive front end.** All stems' channels are stacked, ``S * 2`` of them (4 stereo stems: the "8" of
  "8 -> 128"), and one learned ``Conv1d(S * 2 -> 128, kernel 64, no bias)`` maps them to a 128-channel
  representation ``p`` at the full sample rate: the filters mix stems and channels from the first layer
  on (the code's ``groups=n_stems`` is commented out). A smoothing depthwise ``Conv1d(128, kernel 128)``
  on ``|p|`` with a softplus gives a positive envelope, max-pooled by 64 into the latent sequence.
* **Latent mixer.** A Conv-TasNet temporal convolutional network (channel layer norm, 1x1 bottleneck to
  256, 4 repeats x 6 blocks with dilations 1..32 (hidden 128, kernel 3, PReLU, global layer norm,
  residual and 64-channel skip outputs), PReLU + 1x1 conv + softplus on the summed skips) followed by a
  3-layer bidirectional LSTM (64 units per direction) and a softplus: a positive mask of 128 channels at
  1/64 of the sample rate.
* **Synthesis back end.** The mask is upsampled (nearest, x64) and multiplies ``p``; a squeeze-excitation
  block (mean of ``|x|`` over time, ``Linear(128 -> 2048)``, ReLU, ``Linear(2048 -> 128)``, sigmoid;
  the reference *expands* by 16) rescales the channels; a transposed convolution with the front end's own
  kernel (tied weights, no new parameters) returns ``S * 2`` waveforms, which are summed over the stems and
  passed through ``tanh``.

Pretraining (the paper's first stage): :meth:`FxNormAutomix.forward_autoencoder` runs the front end and
back end only, with max-unpooling at the pooling indices instead of the latent mixer, and reconstructs the
stems; :meth:`FxNormAutomix.freeze_front_back` then freezes those weights if wanted (the reference only
re-initialises from them and keeps training everything).

Deviations from the released code, all deliberate:

* Its forward pass overwrites the latent mixer's output (``masking = self.maxunpool1d(x)`` upsamples the
  front end's envelope ``x``, not ``masking``), so the TCN and BLSTM never reach the output. Here the mask
  *is* the latent mixer's output, as the paper describes.
* The last temporal block's residual convolution, unused in the reference (33 k parameters that never get
  a gradient, which DistributedDataParallel rejects), is not built: 2,719,793 parameters instead of
  2,752,817 at the default settings.
* The back end is the exact adjoint of the front-end convolution (full transposed convolution, then the
  ``same`` crop); the reference crops the latent before the transposed convolution instead, which drops
  the edges' contributions.
* LSTM chrono initialisation (Tallec & Ollivier, 2018: forget-gate bias ``log(U(1, 31))``, input-gate
  bias its negative) is set on ``bias_ih`` only, with ``bias_hh = 0``; the reference draws both.
* Mono stems are duplicated to stereo, so one model takes ``C = 1`` or ``C = 2``; the input is zero-padded
  at the end to a multiple of the pooling size and the output cropped back, so any length works.

Mixed precision: the full-rate parts (front end, back end, squeeze-excitation) run in float32 with autocast
off, because they carry the audio itself; the LSTM also runs in float32; the TCN follows autocast.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from musicfx.models.blocks import declare_names

__all__ = [
    "AdaptiveFrontEnd",
    "FxNormAutomix",
    "LatentMixer",
    "SqueezeExcitation",
    "TemporalBlock",
    "TemporalConvNet",
    "stems_to_stereo",
]


def stems_to_stereo(stems: Tensor, num_stems: int) -> Tensor:
    """Check ``(batch, stems, channels, time)`` and bring mono stems to stereo (both channels equal).

    Args:
        stems: ``(batch, num_stems, 1 or 2, time)``.
        num_stems: the number of stems the model was built for.

    Returns:
        ``(batch, num_stems, 2, time)``.
    """
    if stems.dim() != 4:
        raise ValueError(f"expected stems shaped (batch, stems, channels, time), got {tuple(stems.shape)}")
    if stems.shape[1] != num_stems:
        raise ValueError(f"model built for {num_stems} stems got {stems.shape[1]} (shape {tuple(stems.shape)})")
    if stems.shape[2] == 1:
        return stems.expand(-1, -1, 2, -1)
    if stems.shape[2] != 2:
        raise ValueError(f"stems must be mono or stereo, got {stems.shape[2]} channels")
    return stems


def _no_autocast(x: Tensor) -> torch.autocast:
    return torch.autocast(device_type=x.device.type, enabled=False)


def _full_precision(x: Tensor) -> Tensor:
    """Half-precision tensors in float32; float32 and float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class AdaptiveFrontEnd(nn.Module):
    """Learned analysis filterbank, its positive envelope, and the tied synthesis (transposed) convolution.

    Args:
        in_channels: input waveforms (stems x channels).
        features: number of learned filters.
        kernel_size: filter length in samples.
    """

    def __init__(self, in_channels: int, features: int, kernel_size: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.encoder = nn.Conv1d(in_channels, features, kernel_size, bias=False)
        # Depthwise smoothing twice as long as the filters: a per-channel envelope follower.
        self.smoothing = nn.Conv1d(features, features, 2 * kernel_size, groups=features, bias=False)
        # "same" alignment for even kernels too: (k - 1) // 2 samples before, k // 2 after.
        self.left = (kernel_size - 1) // 2
        self.right = kernel_size // 2
        self.smoothing_pad = ((2 * kernel_size - 1) // 2, kernel_size)

    def encode(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(batch, in_channels, time)``.

        Returns:
            ``p``: ``(batch, features, time)``, float32.
        """
        with _no_autocast(x):
            return self.encoder(F.pad(_full_precision(x), (self.left, self.right)))

    def envelope(self, p: Tensor) -> Tensor:
        """Positive, smoothed magnitude of the filterbank output.

        Args:
            p: ``(batch, features, time)``.

        Returns:
            ``(batch, features, time)``, float32.
        """
        with _no_autocast(p):
            return F.softplus(self.smoothing(F.pad(_full_precision(p).abs(), self.smoothing_pad)))

    def decode(self, y: Tensor) -> Tensor:
        """The adjoint of :meth:`encode`: transposed convolution with the encoder's own kernel.

        Args:
            y: ``(batch, features, time)``.

        Returns:
            ``(batch, in_channels, time)``, float32.
        """
        with _no_autocast(y):
            full = F.conv_transpose1d(_full_precision(y), self.encoder.weight)
            return full[..., self.left : self.left + y.shape[-1]]


class TemporalBlock(nn.Module):
    """Conv-TasNet 1-D conv block: 1x1 conv, PReLU, gLN, dilated depthwise conv, PReLU, gLN, 1x1 outputs.

    Args:
        channels: residual-path channels (the bottleneck ``B``).
        hidden: channels inside the block (``H``).
        skip: skip-connection channels (``Sc``).
        kernel_size: depthwise kernel (``P``, odd).
        dilation: dilation of the depthwise conv.
        residual: build the residual output (the last block of the network has none).
    """

    def __init__(self, channels: int, hidden: int, skip: int, kernel_size: int, dilation: int, residual: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(channels, hidden, 1),
            nn.PReLU(),
            nn.GroupNorm(1, hidden, eps=1e-8),
            nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation, groups=hidden,
                      padding=(kernel_size - 1) * dilation // 2),
            nn.PReLU(),
            nn.GroupNorm(1, hidden, eps=1e-8),
        )
        self.skip_out = nn.Conv1d(hidden, skip, 1)
        self.res_out = nn.Conv1d(hidden, channels, 1) if residual else None

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Args:
            x: ``(batch, channels, frames)``.

        Returns:
            ``(x + residual, skip)``: ``(batch, channels, frames)`` (``x`` itself for the last block) and
            ``(batch, skip, frames)``.
        """
        h = self.block(x)
        out = x + self.res_out(h) if self.res_out is not None else x
        return out, self.skip_out(h)


class TemporalConvNet(nn.Module):
    """Conv-TasNet separator: layer norm, bottleneck, ``repeats x blocks`` dilated blocks, mask head.

    Args:
        features: input and output channels (``N``).
        bottleneck: residual-path channels (``B``).
        hidden: channels inside each block (``H``).
        skip: skip-connection channels (``Sc``).
        kernel_size: depthwise kernel (``P``).
        blocks: blocks per repeat (``X``), with dilations ``1, 2, ..., 2**(X-1)``.
        repeats: repeats (``R``).
    """

    def __init__(self, features: int, bottleneck: int, hidden: int, skip: int, kernel_size: int, blocks: int,
                 repeats: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, features, eps=1e-8)
        self.bottleneck = nn.Conv1d(features, bottleneck, 1)
        count = blocks * repeats
        self.blocks = nn.ModuleList(
            TemporalBlock(bottleneck, hidden, skip, kernel_size, 2 ** (i % blocks), residual=i < count - 1)
            for i in range(count)
        )
        self.head = nn.Sequential(nn.PReLU(), nn.Conv1d(skip, features, 1), nn.Softplus())

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(batch, features, frames)``.

        Returns:
            ``(batch, features, frames)``, positive.
        """
        h = self.bottleneck(self.norm(x))
        skips: Optional[Tensor] = None
        for block in self.blocks:
            h, skip = block(h)
            skips = skip if skips is None else skips + skip
        return self.head(skips)


class LatentMixer(nn.Module):
    """TCN then a bidirectional LSTM over the pooled latent sequence; a softplus makes the mask positive.

    Args:
        features: latent channels ``N`` (even: ``N / 2`` LSTM units per direction).
        bottleneck, hidden, skip, kernel_size, blocks, repeats: see :class:`TemporalConvNet`.
        lstm_layers: stacked BLSTM layers.
        lstm_dropout: dropout between LSTM layers.
    """

    def __init__(self, features: int, bottleneck: int, hidden: int, skip: int, kernel_size: int, blocks: int,
                 repeats: int, lstm_layers: int, lstm_dropout: float) -> None:
        super().__init__()
        if features % 2:
            raise ValueError(f"features must be even (half per LSTM direction), got {features}")
        self.tcn = TemporalConvNet(features, bottleneck, hidden, skip, kernel_size, blocks, repeats)
        self.lstm = nn.LSTM(features, features // 2, num_layers=lstm_layers, batch_first=True,
                            dropout=lstm_dropout if lstm_layers > 1 else 0.0, bidirectional=True)
        self.reset_lstm()

    def reset_lstm(self, max_timescale: float = 32.0) -> None:
        """Chrono initialisation: forget-gate biases ``log(U(1, T - 1))``, input-gate biases their negative.

        Args:
            max_timescale: ``T``, the longest dependency (in latent frames) the gates start out tuned to.
        """
        with torch.no_grad():
            for name, bias in self.lstm.named_parameters():
                if not name.startswith("bias"):
                    continue
                bias.zero_()
                if name.startswith("bias_ih"):
                    n = bias.shape[0] // 4  # gate order: input, forget, cell, output
                    bias[n : 2 * n].uniform_(1.0, max_timescale - 1.0).log_()
                    bias[:n] = -bias[n : 2 * n]

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: pooled latent ``(batch, features, frames)``.

        Returns:
            Positive mask ``(batch, features, frames)``, float32.
        """
        h = self.tcn(x)
        # Recurrences accumulate rounding over every step: keep them in float32.
        with _no_autocast(h):
            h, _ = self.lstm(_full_precision(h).transpose(1, 2))
            return F.softplus(h).transpose(1, 2)


class SqueezeExcitation(nn.Module):
    """Channel gates from the time-averaged magnitude, through an *expanding* two-layer MLP (as the reference).

    Args:
        channels: feature channels ``C``.
        expansion: hidden width ``expansion * C``.
    """

    def __init__(self, channels: int, expansion: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(channels, channels * expansion),
            nn.ReLU(),
            nn.Linear(channels * expansion, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(batch, channels, time)``.

        Returns:
            ``x`` with each channel scaled by its gate in ``(0, 1)``, same shape.
        """
        return x * self.net(x.abs().mean(-1)).unsqueeze(-1)


class FxNormAutomix(nn.Module):
    """The FxNorm-automix mixing network (see the module docstring for the architecture and deviations).

    Args:
        num_stems: input stems ``S``.
        stems, sample_rate: what the model declares to the task and the data (``None``: nothing).
        features: front-end filters / latent channels (``N``, 128).
        kernel_size: front-end filter length (``L``, 64; the smoothing conv is twice as long).
        pool_size: max-pooling factor between the sample rate and the latent sequence (64).
        bottleneck_features: TCN residual channels (``B``, 256).
        skip_features: TCN skip channels (``Sc``, 64).
        hidden_features: channels inside a TCN block (``H``, 128).
        tcn_kernel_size: TCN depthwise kernel (``P``, 3).
        blocks: TCN blocks per repeat (``X``, 6).
        repeats: TCN repeats (``R``, 4).
        lstm_layers: BLSTM layers (3).
        lstm_dropout: dropout between BLSTM layers (0.1).
        se_expansion: squeeze-excitation expansion ratio (16).
    """

    def __init__(
        self,
        num_stems: Optional[int] = None,
        features: int = 128,
        kernel_size: int = 64,
        pool_size: int = 64,
        bottleneck_features: int = 256,
        skip_features: int = 64,
        hidden_features: int = 128,
        tcn_kernel_size: int = 3,
        blocks: int = 6,
        repeats: int = 4,
        lstm_layers: int = 3,
        lstm_dropout: float = 0.1,
        se_expansion: int = 16,
        stems: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        super().__init__()
        num_stems = declare_names(self, "stems", stems, num_stems, sample_rate)
        if pool_size < 1 or kernel_size < 1:
            raise ValueError(f"need pool_size, kernel_size >= 1, got {pool_size}, {kernel_size}")
        self.pool_size = pool_size
        self.front_end = AdaptiveFrontEnd(2 * num_stems, features, kernel_size)
        self.mixer = LatentMixer(features, bottleneck_features, hidden_features, skip_features, tcn_kernel_size,
                                 blocks, repeats, lstm_layers, lstm_dropout)
        self.se = SqueezeExcitation(features, se_expansion)

    def _pad(self, stems: Tensor) -> Tuple[Tensor, int]:
        """Stack the stems' channels and zero-pad time to a multiple of ``pool_size``.

        Returns:
            ``((batch, 2 * stems, padded_time), original_time)``.
        """
        stems = stems_to_stereo(stems, self.num_stems)
        length = stems.shape[-1]
        x = stems.reshape(stems.shape[0], 2 * self.num_stems, length)
        return F.pad(x, (0, (-length) % self.pool_size)), length

    def forward(self, stems: Tensor) -> Tensor:
        """Mix the stems.

        Args:
            stems: ``(batch, num_stems, channels, time)``, ``channels`` 1 or 2, any ``time >= 1``.

        Returns:
            Stereo mix ``(batch, 2, time)`` in ``(-1, 1)``, float32.
        """
        x, length = self._pad(stems)
        p = self.front_end.encode(x)
        latent = F.max_pool1d(self.front_end.envelope(p), self.pool_size)
        mask = self.mixer(latent)
        with _no_autocast(p):
            y = self.se(torch.repeat_interleave(_full_precision(mask), self.pool_size, dim=-1) * p)
            per_stem = self.front_end.decode(y).view(x.shape[0], self.num_stems, 2, -1)
            return torch.tanh(per_stem.sum(1))[..., :length]

    def forward_autoencoder(self, stems: Tensor) -> Tensor:
        """Pretraining path: reconstruct the stems through the front end and back end only.

        The envelope is max-pooled and max-unpooled at the same indices (so only each window's peak
        survives), multiplies the filterbank output and goes back through the tied transposed convolution;
        no latent mixer, no squeeze-excitation, no ``tanh``, as in the reference's pretraining mode.

        Args:
            stems: ``(batch, num_stems, channels, time)``, ``channels`` 1 or 2.

        Returns:
            Reconstruction of the same shape (a mono stem comes back as the mean of the two channels the
            model reconstructs from its duplicated input), float32.

        Raises:
            ValueError: for a single stem ``(batch, channels, time)``: the front end's filters span all
                stems' channels at once, so it reconstructs the whole stack, as the reference pretrains it.
        """
        if stems.dim() == 3:
            raise ValueError(
                f"forward_autoencoder reconstructs the whole stem stack (batch, {self.num_stems}, channels, time): "
                f"the front end filters all stems' channels together; got a single signal {tuple(stems.shape)}"
            )
        x, length = self._pad(stems)
        p = self.front_end.encode(x)
        envelope = self.front_end.envelope(p)
        with _no_autocast(p):
            pooled, indices = F.max_pool1d(envelope, self.pool_size, return_indices=True)
            mask = F.max_unpool1d(pooled, indices, self.pool_size, output_size=envelope.shape[-1:])
            out = self.front_end.decode(mask * p).view(x.shape[0], self.num_stems, 2, -1)[..., :length]
        return out.mean(2, keepdim=True) if stems.shape[2] == 1 else out

    def front_back_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters pretrained by :meth:`forward_autoencoder`: the front end's filters and smoothing
        (the back end has none of its own: it reuses the filters)."""
        return self.front_end.parameters()

    def freeze_front_back(self, frozen: bool = True) -> None:
        """Stop (or restart) training the front and back end, e.g. after loading pretrained weights.

        Args:
            frozen: ``True`` sets ``requires_grad=False`` on :meth:`front_back_parameters`, ``False`` undoes it.
        """
        for parameter in self.front_back_parameters():
            parameter.requires_grad_(not frozen)

