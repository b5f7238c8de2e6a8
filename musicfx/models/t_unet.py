"""t-UNet: a truncated (encoder-only) U-Net that regresses the bleed mixing matrix; sources = A^-1 x.

Rajesh R & Padmanabhan Rajan, "Neural Networks for Interference Reduction in Multi-Track Recordings",
WASPAA 2023 (code: github.com/its-rajesh/IRMR, ``tUNet/train.py`` and ``tUNet/getSDR.py``, Keras). This is
a re-implementation in PyTorch from that code and the paper's abstract; no code is copied.

What the authors' code fixes (confirmed):
    * **Model of the bleed.** Linear, instantaneous: the microphone tracks are ``x = A s`` with ``A`` an
      ``M x M`` matrix (training data: diagonal ``U(0.6, 1)``, off-diagonal ``U(0.05, 0.31)``, mono MUSDB18-HQ
      at 22.05 kHz, 10 s clips, ``M = 4``). The network regresses ``A`` and the sources are
      ``A^-1 x`` (``np.linalg.inv(A) @ X``).
    * **Network.** The input is the ``(M, time)`` waveform image; five levels of a conv (16, 32, 64, 128, 512
      filters, kernel one track high and ``M`` samples wide, ReLU) each followed by max-pooling by 9 along
      time — the contracting half of a U-Net, hence "truncated" — then dense layers 512-128-64-32-``M*M``
      (ReLU) reshaped to ``A``.
    * **Training.** MSE between the predicted and the least-squares matrix ``X pinv(S)`` of each clip; Adam
      (lr 0.01), batch 64, 600 epochs.

What is changed here, and why:
    * **Any length, any number of tracks.** The Keras model flattens a fixed 220,500-sample, 4-track input
      into its dense layers. Here each encoder level yields length-free *pairwise statistics* of the tracks'
      feature maps — per feature channel, the correlation of tracks ``i`` and ``j`` and their log-energy
      ratio, averaged over time — which is what identifies a mixing matrix (``cov(x) = A cov(s) A^T`` in every
      band). The multi-level statistics play the role of the U-Net's skips into the regression head.
    * **Head.** The dense layers become *jointly exchangeable matrix layers* (Hartford et al., ICML 2018):
      1x1 convolutions over the ``(M, M)`` grid of pair features mixed with their transpose and their row,
      column and global means, plus a diagonal indicator. Entry ``(i, j)`` thus sees the whole ensemble, the
      same weights serve any ``M``, and permuting the tracks permutes ``A`` accordingly.
    * **Invertibility by construction.** Instead of a free (ReLU) matrix, the head predicts a bounded
      logarithm: ``A = expm(L)`` with ``|L_ii| < log_gain_limit`` and ``|L_ij| < coupling / (M - 1)``
      (tanh). Every ``expm(L)`` is invertible (``det = exp(tr L) > 0``) and
      ``cond_2(A) <= exp(2 ||L||_2) <= exp(2 (log_gain_limit + coupling))`` (about 6.5e3 with the defaults,
      whatever ``M``), so ``torch.linalg.solve`` in float32 stays accurate. The bleed matrices of the training
      recipe have a real logarithm inside these bounds: on 2,000 sampled matrices per ``M`` = 3, 4, 5,
      ``|L_ii| <= 0.73`` and ``|L_ij| <= 0.53`` (bounds 1.39 and ``3 / (M - 1)`` >= 0.75); for more than five
      tracks raise ``coupling``. With the last layer initialised to zero, ``A = I`` at initialisation: the
      untrained model passes the tracks through.
    * **Level.** The tracks are divided by their joint RMS before the encoder (one gain for all tracks, so
      their relative levels, which carry the bleed, are kept) and the solve is applied to the raw tracks, so
      the model is scale-equivariant.
    * **Kernels and pooling.** Kernel 5 (odd, centred) and pooling by 4 instead of 4 and 9: with statistics
      pooled over time, the fixed total down-sampling of the original is no longer needed, and pooling is
      skipped at levels shorter than the pool.

It can only undo *instantaneous* mixing; on convolutive bleed (delays, rooms) it gives the best
instantaneous demixing it has learned. Size: :class:`TUNet`.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.models.blocks import TrackDebleeder, declare_names

__all__ = ["TUNet", "ExchangeableMatrixLayer", "pair_statistics", "unmix"]


def unmix(mics: Tensor, matrix: Tensor) -> Tensor:
    """Sources ``A^-1 x`` of an instantaneous mixture, by ``torch.linalg.solve`` in float32.

    Args:
        mics: microphone tracks ``(batch, tracks, time)``.
        matrix: mixing matrix ``A`` ``(batch, tracks, tracks)`` with ``mics = A @ sources``.

    Returns:
        The sources ``(batch, tracks, time)``, float32 (float64 if either input is float64).
    """
    dtype = torch.float64 if torch.float64 in (mics.dtype, matrix.dtype) else torch.float32
    with torch.autocast(device_type=mics.device.type, enabled=False):
        return torch.linalg.solve(matrix.to(dtype), mics.to(dtype))


def pair_statistics(features: Tensor, eps: float = 1e-8) -> Tensor:
    """Time-averaged pairwise statistics of per-track feature maps, in float32.

    For every feature channel: the correlation of the (time-centred) maps of tracks ``i`` and ``j``, and the
    log-ratio of their energies (natural log, divided by 10 and clipped to +-3 so silent tracks stay finite).

    Args:
        features: ``(batch, tracks, channels, time)``.
        eps: energy floor, relative to the mean energy of the channel over the tracks.

    Returns:
        ``(batch, 2 * channels, tracks, tracks)``: correlations, then energy log-ratios.
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        h = features.float()
        h = h - h.mean(dim=-1, keepdim=True)
        batch, tracks, channels, time = h.shape
        flat = h.permute(0, 2, 1, 3).reshape(batch * channels, tracks, time)
        cov = torch.bmm(flat, flat.transpose(1, 2)).div_(time).view(batch, channels, tracks, tracks)
        energy = cov.diagonal(dim1=-2, dim2=-1)  # (batch, channels, tracks)
        floor = eps * energy.mean(dim=-1, keepdim=True) + 1e-20
        energy = energy + floor
        corr = cov / (energy.unsqueeze(-1) * energy.unsqueeze(-2)).sqrt()
        log_energy = energy.log()
        ratio = ((log_energy.unsqueeze(-1) - log_energy.unsqueeze(-2)) / 10.0).clamp(-3.0, 3.0)
        return torch.cat([corr, ratio], dim=1)


class ExchangeableMatrixLayer(nn.Module):
    """A linear layer on a square grid of features whose rows and columns index the same set (the tracks).

    ``y_ij = W1 x_ij + W2 x_ji + W3 mean_k x_ik + W4 mean_k x_kj + W5 mean_kl x_kl + b``: equivariant to
    permuting the tracks (rows and columns together), for any number of tracks.

    Args:
        in_channels: features per entry in.
        out_channels: features per entry out.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(5 * in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: ``(batch, in_channels, tracks, tracks)``.

        Returns:
            ``(batch, out_channels, tracks, tracks)``.
        """
        rows = x.mean(dim=-1, keepdim=True).expand_as(x)
        cols = x.mean(dim=-2, keepdim=True).expand_as(x)
        total = x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
        return self.mix(torch.cat([x, x.transpose(-1, -2), rows, cols, total], dim=1))


class TUNet(TrackDebleeder, nn.Module):
    """Truncated U-Net regressing the mixing matrix ``A`` of ``mics = A @ sources``; returns ``A^-1 mics``.

    Default configuration: 556,609 parameters (any number of tracks: no weight depends on it).

    Args:
        num_tracks: microphone tracks ``M`` in and estimated sources out.
        tracks, sample_rate: what the model declares to the task and the data (``None``: nothing).
        widths: feature channels of the encoder levels, shallowest first.
        kernel_size: odd kernel of the encoder convolutions, along time.
        pool: max-pooling factor between levels (skipped at levels shorter than it).
        head_width: features per matrix entry in the exchangeable head.
        head_layers: exchangeable layers before the output layer.
        log_gain_limit: bound on ``|log A_ii|``-like diagonal terms of ``L`` (``A = expm(L)``).
        coupling: bound on the sum over a row of ``|L_ij|``, ``i != j``; each entry is bounded by
            ``coupling / (M - 1)``.
        eps: floor of the RMS used to normalise the input level.
    """

    def __init__(
        self,
        num_tracks: Optional[int] = None,
        widths: Sequence[int] = (16, 32, 64, 128, 256),
        kernel_size: int = 5,
        pool: int = 4,
        head_width: int = 64,
        head_layers: int = 2,
        log_gain_limit: float = 1.3862943611198906,  # log(4): diagonal gains within (1/4, 4)
        coupling: float = 3.0,
        eps: float = 1e-5,
        tracks: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
    ) -> None:
        super().__init__()
        declare_names(self, "tracks", tracks, num_tracks, sample_rate, minimum=2)  # bleed needs several tracks
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if len(widths) < 1 or pool < 1:
            raise ValueError(f"need at least one level and pool >= 1, got widths={widths}, pool={pool}")
        self.widths = tuple(int(w) for w in widths)
        self.pool = pool
        self.log_gain_limit = float(log_gain_limit)
        self.coupling = float(coupling)
        self.eps = eps
        channels = (1,) + self.widths
        self.convs = nn.ModuleList(
            nn.Conv1d(channels[i], channels[i + 1], kernel_size, padding=kernel_size // 2)
            for i in range(len(self.widths))
        )
        self.act = nn.LeakyReLU(0.1)
        in_features = 2 * sum(self.widths) + 1  # + the diagonal indicator
        layers: List[nn.Module] = []
        for i in range(head_layers):
            layers += [ExchangeableMatrixLayer(in_features if i == 0 else head_width, head_width), nn.LeakyReLU(0.1)]
        self.head = nn.Sequential(*layers)
        self.out = nn.Conv2d(head_width if head_layers else in_features, 1, 1)
        # A = expm(0) = I at initialisation: the untrained model is the identity.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _features(self, mics: Tensor) -> Tensor:
        """Pair statistics of every encoder level plus a diagonal indicator, ``(batch, C, tracks, tracks)``."""
        batch, tracks, time = mics.shape
        with torch.autocast(device_type=mics.device.type, enabled=False):
            x = mics.float()
            scale = x.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(self.eps)
            h = (x / scale).reshape(batch * tracks, 1, time)
        stats: List[Tensor] = []
        for level, conv in enumerate(self.convs):
            if level > 0 and h.shape[-1] >= self.pool:
                h = F.max_pool1d(h, self.pool, ceil_mode=True)
            h = conv(h)
            # Statistics of the pre-activation maps: linear band-passed tracks keep the sign that
            # correlations need (after a ReLU they would all be positive).
            stats.append(pair_statistics(h.view(batch, tracks, h.shape[1], h.shape[2])))
            h = self.act(h)
        eye = torch.eye(tracks, device=mics.device).expand(batch, 1, tracks, tracks)
        return torch.cat(stats + [eye], dim=1)

    def _matrix(self, raw: Tensor) -> Tensor:
        """``expm(L)`` from raw head outputs ``(batch, tracks, tracks)``, with ``L`` bounded (see the class)."""
        tracks = raw.shape[-1]
        with torch.autocast(device_type=raw.device.type, enabled=False):
            bounded = torch.tanh(raw.float())
            eye = torch.eye(tracks, device=raw.device)
            log_a = bounded * (eye * self.log_gain_limit + (1.0 - eye) * (self.coupling / (tracks - 1)))
            return torch.linalg.matrix_exp(log_a)

    def mixing_matrix(self, mics: Tensor) -> Tensor:
        """The estimated mixing matrix.

        Args:
            mics: microphone tracks ``(batch, num_tracks, time)``, any length.

        Returns:
            ``A`` ``(batch, num_tracks, num_tracks)`` float32, invertible, with ``mics ~= A @ sources``
            (row ``i``: how much of each source microphone ``i`` picks up).
        """
        self._check(mics)
        raw = self.out(self.head(self._features(mics))).squeeze(1)
        return self._matrix(raw)

    def forward_train(self, mics: Tensor) -> Dict[str, Tensor]:
        """Estimate the sources and return the matrix too, so a task can add a loss on it.

        Args:
            mics: ``(batch, num_tracks, time)``, any length.

        Returns:
            ``{"estimate": (batch, num_tracks, time), "mixing_matrix": (batch, num_tracks, num_tracks)}``,
            both float32 and differentiable; ``estimate = solve(mixing_matrix, mics)``.
        """
        matrix = self.mixing_matrix(mics)
        return {"estimate": unmix(mics, matrix), "mixing_matrix": matrix}
