"""Open-Unmix (Stöter, Uhlich, Liutkus & Mitsufuji, JOSS 2019), re-implemented, with multichannel Wiener
filtering.

One network per target, as Open-Unmix trains them (one model per source; here they live in one module and
run side by side). Each network sees the mixture magnitude STFT (4096 / 1024 at 44.1 kHz), cropped to the
bins up to ``bandwidth`` (16 kHz), with all channels concatenated:

    crop -> (x + input_mean) * input_scale -> fc -> BatchNorm -> tanh -> 3-layer BLSTM (hidden / 2 per
    direction) -> concat(fc out, LSTM out) -> fc -> BatchNorm -> ReLU -> fc -> BatchNorm
    -> * output_scale + output_mean -> ReLU -> * mixture magnitude (all bins)

The output is an estimated magnitude spectrogram per target. Open-Unmix is trained with an MSE on these
magnitudes (:meth:`OpenUnmix.estimate_magnitudes` against the target stems' magnitudes, or
:class:`musicfx.losses.separation.MagnitudeLoss` on the waveforms :meth:`OpenUnmix.forward` returns).

Resynthesis: in training mode the estimates become ratio masks ``v_j / sum_k v_k`` applied to the complex
mixture (mixture phase; with a single target, ``min(v / |x|, 1)``), so any waveform loss can train the
model end to end. In eval mode they go through :func:`wiener` as Open-Unmix's ``Separator`` does: the
initial estimate (magnitudes with the mixture phase, or ratio masks with ``wiener_softmask``), then
``wiener_iterations`` steps of the expectation-maximisation multichannel Wiener filter of Open-Unmix's
``filtering.py`` / norbert, which estimates each source's power spectral density and spatial covariance and
re-filters the complex mixture, on windows of ``wiener_window`` frames.

Weight-compatible with ``openunmix`` 1.3.0: :meth:`OpenUnmix.from_openunmix` takes a ``Separator``, an
``OpenUnmix`` network or the per-target state dicts Open-Unmix publishes (umxhq, umxl, ...), and gives the
same spectrogram estimates and separated waveforms.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from musicfx.audio.spectral import ISTFT, STFT, fft_frequencies
from musicfx.audio.stems import MUSDB_STEMS
from musicfx.errors import ConfigError
from musicfx.models.blocks import MaskingSeparator

__all__ = ["OpenUnmix", "UnmixNetwork", "wiener"]


def _em_step(y: Tensor, x: Tensor, eps: float, regularization: float) -> Tensor:
    """One EM iteration of the multichannel Wiener filter.

    E-step: from the current source images, each source's power spectral density ``v_j(f, n)`` (mean power
    over channels) and spatial covariance ``R_j(f) = sum_n y_j y_j^H / sum_n v_j``. M-step: the mixture
    covariance ``C(f, n) = sum_j v_j R_j + regularization * I`` and the new images ``y_j = v_j R_j C^-1 x``.

    Args:
        y: current source images, complex ``(batch, sources, freq, frames, channels)``.
        x: mixture, complex ``(batch, freq, frames, channels)``.
        eps: floor of the normalising power.
        regularization: diagonal loading of ``C`` so silent bins stay invertible.

    Returns:
        New source images, same shape as ``y``.
    """
    channels = x.shape[-1]
    psd = (y.real.square() + y.imag.square()).mean(dim=-1)  # (B, S, F, N)
    weight = (psd.sum(dim=-1) + eps).to(y.dtype)  # (B, S, F)
    covariance = torch.einsum("bsfnc,bsfnd->bsfcd", y, y.conj()) / weight[..., None, None]  # (B, S, F, C, C)
    eye = torch.eye(channels, dtype=y.dtype, device=y.device)
    mix_cov = torch.einsum("bsfn,bsfcd->bfncd", psd.to(y.dtype), covariance) + regularization * eye
    # C^-1 x once per bin, then each source's gain v_j R_j applied to it: never materialises S gain matrices.
    solved = torch.linalg.solve(mix_cov, x.unsqueeze(-1))  # (B, F, N, C, 1)
    images = covariance.unsqueeze(3) @ solved.unsqueeze(1)  # (B, S, F, N, C, 1)
    return psd.to(y.dtype).unsqueeze(-1) * images.squeeze(-1)


def wiener(
    magnitude_estimates: Tensor,
    mix_stft: Tensor,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    eps: float = 1e-10,
    window: Optional[int] = None,
    scale_factor: float = 10.0,
) -> Tensor:
    """Multichannel Wiener filtering of a mixture STFT, initialised from magnitude estimates.

    Initialisation: with ``softmask`` the ratio masks ``v_j / (eps + sum_k v_k)`` times the mixture;
    otherwise the estimated magnitudes with the mixture's phase. With ``residual`` an extra source, the
    mixture minus the sum of the initial estimates, is appended (it models whatever the targets miss, e.g. the
    accompaniment of a vocals-only model). Then ``iterations`` EM steps (see :func:`_em_step`) with Open-Unmix's
    regularisation: a diagonal loading of ``sqrt(eps)`` on the mixture covariance, after the mixture and the
    estimates are divided by ``max(1, peak / scale_factor)`` (loud inputs scaled down, quiet ones left as
    they are), per example and per window. Computed in float32 / complex64 with autocast disabled.

    Args:
        magnitude_estimates: non-negative ``(batch, sources, channels, freq, frames)``.
        mix_stft: complex mixture ``(batch, channels, freq, frames)``.
        iterations: EM iterations; 0 returns the initialisation.
        softmask: initialise with ratio masks instead of magnitudes + mixture phase.
        residual: append the residual source (output then has ``sources + 1`` sources).
        eps: numerical floor; its square root is the diagonal loading.
        window: filter windows of this many frames independently (Open-Unmix's ``wiener_win_len``, 300
            there): spatial covariances and scaling are then local in time. ``None``: the whole signal.
        scale_factor: peak the mixture is scaled down to when it is louder.

    Returns:
        complex64 source STFTs ``(batch, sources [+ 1], channels, freq, frames)``.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 frame or None, got {window}")
    if not mix_stft.is_complex():
        raise ValueError("wiener expects a complex mixture STFT")
    shape = magnitude_estimates.shape
    if magnitude_estimates.dim() != 5 or shape[:1] + shape[2:] != mix_stft.shape:
        raise ValueError(
            f"magnitude_estimates {tuple(magnitude_estimates.shape)} must be (batch, sources, *mix_stft.shape[1:]) "
            f"for mix_stft {tuple(mix_stft.shape)}"
        )
    with torch.autocast(device_type=mix_stft.device.type, enabled=False):
        v = magnitude_estimates.float()
        x = mix_stft.to(torch.complex64)
        if softmask:
            y = x.unsqueeze(1) * (v / (v.sum(dim=1, keepdim=True) + eps))
        else:
            y = torch.polar(v, torch.angle(x).unsqueeze(1).expand_as(v))
        if residual:
            y = torch.cat([y, (x - y.sum(dim=1)).unsqueeze(1)], dim=1)
        if iterations == 0:
            return y
        frames = x.shape[-1]
        step = frames if window is None else window
        regularization = float(torch.sqrt(torch.tensor(eps, dtype=torch.float32)))
        chunks = []
        for start in range(0, frames, step):
            xc, yc = x[..., start: start + step], y[..., start: start + step]
            scale = (xc.abs().flatten(1).amax(dim=1) / scale_factor).clamp_min(1.0)  # (B,)
            xs = (xc / scale[:, None, None, None]).permute(0, 2, 3, 1)  # (B, F, N, C)
            ys = (yc / scale[:, None, None, None, None]).permute(0, 1, 3, 4, 2)  # (B, S, F, N, C)
            for _ in range(iterations):
                ys = _em_step(ys, xs, eps, regularization)
            chunks.append(ys.permute(0, 1, 4, 2, 3) * scale[:, None, None, None, None])
        return torch.cat(chunks, dim=-1)


class MagnitudeStatistics:
    """Per-bin mean and standard deviation of mono mixture magnitudes, accumulated batch by batch.

    Open-Unmix's statistics pass: before training, the training mixtures' magnitude spectrograms (channels
    averaged) give each bin's mean and (population) standard deviation, the networks' input normalisation;
    a standard deviation below ``1e-4`` of the largest is raised to it. Sums are kept in float64.

    Args:
        n_fft, hop_length: the model's STFT.
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        self.stft = STFT(n_fft, hop_length)
        self.count = 0
        self.total: Optional[Tensor] = None
        self.total_sq: Optional[Tensor] = None

    def update(self, mix: Tensor) -> None:
        """Args:
            mix: ``(batch, channels, time)`` mixtures.
        """
        with torch.no_grad():
            mag = self.stft.to(mix.device)(mix.float()).abs().mean(dim=1).double()  # (B, F, N)
            frames = mag.transpose(1, 2).reshape(-1, mag.shape[1])
            total, total_sq = frames.sum(dim=0), frames.square().sum(dim=0)
            self.total = total if self.total is None else self.total + total
            self.total_sq = total_sq if self.total_sq is None else self.total_sq + total_sq
            self.count += frames.shape[0]

    def merge(self, reduce_sum: Callable[[Tensor], Tensor]) -> None:
        """Sum the accumulators over processes (``reduce_sum``: e.g. an all-reduce), so that every process of
        a distributed run sets the same normalisation."""
        if self.total is None or self.total_sq is None:
            raise ValueError("no mixtures were given to the statistics pass")
        self.total, self.total_sq = reduce_sum(self.total), reduce_sum(self.total_sq)
        self.count = int(reduce_sum(torch.tensor(float(self.count), dtype=torch.float64, device=self.total.device)))

    def compute(self) -> Tuple[Tensor, Tensor]:
        """``(mean, std)``, each ``(n_fft // 2 + 1,)`` float32."""
        if self.total is None or self.total_sq is None or self.count == 0:
            raise ValueError("no mixtures were given to the statistics pass")
        mean = self.total / self.count
        std = (self.total_sq / self.count - mean.square()).clamp_min(0.0).sqrt()
        std = torch.maximum(std, 1e-4 * std.max())
        return mean.float(), std.float()


def bandwidth_bins(n_fft: int, sample_rate: int, bandwidth: Optional[float]) -> int:
    """Number of bins from DC up to and including the last bin at or below ``bandwidth`` Hz (all if None)."""
    freqs = fft_frequencies(n_fft, sample_rate)
    if bandwidth is None:
        return freqs.numel()
    return max(1, int((freqs <= bandwidth).sum()))


class UnmixNetwork(nn.Module):
    """The Open-Unmix network of one target: mixture magnitude in, target magnitude out.

    Args:
        n_bins: bins of the full spectrogram (``n_fft // 2 + 1``).
        max_bin: bins the network reads (the rest is still masked at the output).
        channels: audio channels, concatenated as features.
        hidden_size: width of the fc layers and of the BLSTM output.
        nb_layers: LSTM layers.
        bidirectional: BLSTM (offline) or LSTM (causal).
        dropout: dropout between LSTM layers.
    """

    def __init__(
        self,
        n_bins: int,
        max_bin: int,
        channels: int,
        hidden_size: int = 512,
        nb_layers: int = 3,
        bidirectional: bool = True,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        if bidirectional and hidden_size % 2:
            raise ValueError(f"a bidirectional LSTM needs an even hidden_size, got {hidden_size}")
        self.n_bins = n_bins
        self.max_bin = max_bin
        self.channels = channels
        self.hidden_size = hidden_size
        self.input_mean = nn.Parameter(torch.zeros(max_bin))
        self.input_scale = nn.Parameter(torch.ones(max_bin))
        self.fc1 = nn.Linear(max_bin * channels, hidden_size, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden_size)
        self.lstm = nn.LSTM(
            hidden_size,
            hidden_size // 2 if bidirectional else hidden_size,
            num_layers=nb_layers,
            bidirectional=bidirectional,
            dropout=dropout if nb_layers > 1 else 0.0,
        )
        self.fc2 = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden_size)
        self.fc3 = nn.Linear(hidden_size, n_bins * channels, bias=False)
        self.bn3 = nn.BatchNorm1d(n_bins * channels)
        self.output_scale = nn.Parameter(torch.ones(n_bins))
        # Output mean 1 makes the initial network an identity-ish mask (ReLU(~1) * mixture).
        self.output_mean = nn.Parameter(torch.ones(n_bins))

    def set_input_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Initialise the input normalisation from dataset statistics of mixture magnitudes.

        Args:
            mean: per-bin mean ``(n_bins,)`` or ``(max_bin,)``.
            std: per-bin standard deviation, same shape.
        """
        with torch.no_grad():
            self.input_mean.copy_(-mean[: self.max_bin].to(self.input_mean))
            self.input_scale.copy_(1.0 / std[: self.max_bin].to(self.input_scale).clamp_min(1e-8))

    def forward(self, mix_magnitude: Tensor) -> Tensor:
        """Args:
            mix_magnitude: ``(batch, channels, n_bins, frames)``.

        Returns:
            Estimated target magnitude, same shape, float32.
        """
        batch, channels, bins, frames = mix_magnitude.shape
        mix = mix_magnitude.float().permute(3, 0, 1, 2)  # (N, B, C, F): the LSTM runs along frames
        x = (mix[..., : self.max_bin] + self.input_mean) * self.input_scale
        x = self.fc1(x.reshape(frames * batch, channels * self.max_bin))
        x = torch.tanh(self.bn1(x).reshape(frames, batch, self.hidden_size))
        lstm_out, _ = self.lstm(x)
        x = torch.cat([x, lstm_out.to(x.dtype)], dim=-1).reshape(frames * batch, 2 * self.hidden_size)
        x = torch.relu(self.bn2(self.fc2(x)))
        x = self.bn3(self.fc3(x)).reshape(frames, batch, channels, bins).float()
        x = torch.relu(x * self.output_scale + self.output_mean)
        return (x * mix).permute(1, 2, 3, 0)


class OpenUnmix(MaskingSeparator, nn.Module):
    """Open-Unmix separator: one :class:`UnmixNetwork` per source, ratio masks or Wiener filtering.

    Default configuration (4 sources, stereo, 44.1 kHz, 1487 of 2049 bins read): 35,573,392 parameters
    (8,893,348 per target).

    Args:
        sources: names of the ``S`` targets.
        channels: audio channels.
        sample_rate: rate the model works at (the bandwidth crop depends on it).
        n_fft: STFT size.
        hop_length: STFT hop.
        hidden_size: width of each network (BLSTM: ``hidden_size // 2`` per direction).
        nb_layers: LSTM layers.
        bandwidth: highest frequency the networks read, in Hz (``None``: all bins).
        bidirectional: BLSTM (offline, Open-Unmix's default) or LSTM.
        dropout: dropout between LSTM layers.
        wiener_iterations: EM iterations of :func:`wiener` in eval mode (0: the initial estimate only).
        wiener_softmask: initialise the Wiener filter with ratio masks instead of magnitudes + mix phase.
        wiener_residual: model the residual (mix minus the targets) as an extra source during Wiener
            filtering; it is dropped from the output.
        wiener_window: frames filtered together in eval mode (Open-Unmix's ``wiener_win_len``); ``None``:
            the whole signal at once.
        max_bin: bins the networks read, overriding ``bandwidth`` (Open-Unmix's ``max_bin``).
        eps: floor of the training-mode ratio-mask denominator.
    """

    def __init__(
        self,
        sources: Sequence[str] = MUSDB_STEMS,
        channels: int = 2,
        sample_rate: int = 44100,
        n_fft: int = 4096,
        hop_length: int = 1024,
        hidden_size: int = 512,
        nb_layers: int = 3,
        bandwidth: Optional[float] = 16000.0,
        bidirectional: bool = True,
        dropout: float = 0.4,
        wiener_iterations: int = 1,
        wiener_softmask: bool = False,
        wiener_residual: bool = False,
        wiener_window: Optional[int] = 300,
        max_bin: Optional[int] = None,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.declare_format(sources, channels, sample_rate)
        if wiener_iterations < 0:
            raise ValueError(f"wiener_iterations must be >= 0, got {wiener_iterations}")
        if wiener_window is not None and wiener_window < 1:
            raise ValueError(f"wiener_window must be >= 1 frame or None, got {wiener_window}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_bins = n_fft // 2 + 1
        if max_bin is not None and not 1 <= max_bin <= self.n_bins:
            raise ValueError(f"max_bin must be in [1, {self.n_bins}], got {max_bin}")
        self.max_bin = max_bin if max_bin is not None else bandwidth_bins(n_fft, sample_rate, bandwidth)
        self.wiener_iterations = wiener_iterations
        self.wiener_softmask = wiener_softmask
        self.wiener_residual = wiener_residual
        self.wiener_window = wiener_window
        self.eps = eps
        self.targets = nn.ModuleList(
            UnmixNetwork(self.n_bins, self.max_bin, channels, hidden_size, nb_layers, bidirectional, dropout)
            for _ in self.sources
        )
        self.stft = STFT(n_fft, hop_length)
        self.istft = ISTFT(n_fft, hop_length)

    def input_statistics(self) -> MagnitudeStatistics:
        """An accumulator for :meth:`set_input_statistics` with this model's STFT (the statistics pass)."""
        return MagnitudeStatistics(self.n_fft, self.hop_length)

    def set_input_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Set every target network's input normalisation from dataset statistics (see :class:`MagnitudeStatistics`).

        Args:
            mean: per-bin mean ``(n_fft // 2 + 1,)``.
            std: per-bin standard deviation, same shape.
        """
        for network in self.targets:
            network.set_input_statistics(mean, std)

    def _magnitudes(self, spec: Tensor) -> Tensor:
        # The networks' input is not differentiated (the mixture is data), so a plain |X| is safe at 0.
        mix_mag = spec.detach().abs()
        return torch.stack([net(mix_mag) for net in self.targets], dim=1)

    def _ratio_masks(self, estimates: Tensor, spec: Tensor) -> Tensor:
        sources = estimates.shape[1]
        if sources == 1:
            return (estimates / (spec.abs().unsqueeze(1) + self.eps)).clamp(0.0, 1.0)
        # eps / S in every numerator: masks sum to exactly 1, and a bin no target claims is shared equally
        # instead of being dropped, so the mixture is always reconstructed.
        return (estimates + self.eps / sources) / (estimates.sum(dim=1, keepdim=True) + self.eps)

    def estimate_magnitudes(self, mix: Tensor) -> Tensor:
        """The networks' magnitude estimates, what Open-Unmix trains with an MSE.

        Args:
            mix: ``(batch, channels, time)``.

        Returns:
            ``(batch, sources, channels, n_fft // 2 + 1, frames)`` non-negative float32.
        """
        return self._magnitudes(self.mix_spectrogram(mix))

    def forward_masks(self, mix: Tensor) -> Tensor:
        """Ratio masks ``v_j / sum_k v_k`` (single target: ``min(v / |x|, 1)``) of the magnitude estimates.

        They sum to 1 over the targets (a bin where every estimate is 0 gets ``1 / S`` each).

        Args:
            mix: ``(batch, channels, time)``.

        Returns:
            ``(batch, sources, channels, n_fft // 2 + 1, frames)`` in ``[0, 1]``, float32.
        """
        spec = self.mix_spectrogram(mix)
        return self._ratio_masks(self._magnitudes(spec), spec)

    def filter(self, estimates: Tensor, spec: Tensor) -> Tensor:
        """Eval-mode resynthesis of magnitude estimates: Open-Unmix's Wiener filtering with this model's settings.

        Args:
            estimates: ``(batch, sources, channels, freq, frames)`` magnitudes.
            spec: complex mixture ``(batch, channels, freq, frames)``.

        Returns:
            complex64 ``(batch, sources, channels, freq, frames)`` (the residual source, if any, dropped).
        """
        return wiener(
            estimates, spec, self.wiener_iterations, self.wiener_softmask, self.wiener_residual,
            window=self.wiener_window,
        )[:, : len(self.sources)]

    def _estimate(self, spec: Tensor) -> Tensor:
        """The forward pass's estimates: the networks' magnitudes (see :class:`MaskingSeparator`)."""
        return self._magnitudes(spec)

    def _resynthesize(self, estimates: Tensor, spec: Tensor) -> Tensor:
        """Ratio masks with the mixture phase in training mode, Wiener filtering in eval mode."""
        if self.training:
            return self._ratio_masks(estimates, spec) * spec.unsqueeze(1)
        return self.filter(estimates, spec)

    def extra_repr(self) -> str:
        return (
            f"sources={self.sources}, channels={self.channels}, sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
            f"hop_length={self.hop_length}, max_bin={self.max_bin}, wiener_iterations={self.wiener_iterations}"
        )

    @classmethod
    def from_openunmix(
        cls,
        source: Any,
        sources: Optional[Sequence[str]] = None,
        sample_rate: Optional[int] = None,
        hop_length: Optional[int] = None,
        wiener_iterations: Optional[int] = None,
        wiener_softmask: Optional[bool] = None,
        wiener_residual: Optional[bool] = None,
        wiener_window: Any = "auto",
    ) -> "OpenUnmix":
        """A model holding Open-Unmix (``openunmix`` 1.x) weights, giving Open-Unmix's output.

        Args:
            source: an ``openunmix.model.Separator`` (its targets, in order, and its STFT and Wiener settings
                are kept), an ``openunmix.model.OpenUnmix`` network (one target), or a mapping target name ->
                state dict (the per-target ``.pth`` files Open-Unmix publishes, e.g. umxhq's
                ``vocals-b62c91ce.pth``) or -> ``OpenUnmix`` network, in output order.
            sources: target names (required for a single network; otherwise they must match the source's).
            sample_rate, hop_length: the STFT the weights were trained with (default: the Separator's, else
                44100 Hz and 1024); the FFT size, channels, widths and bandwidth come from the weights.
            wiener_iterations, wiener_softmask, wiener_residual: the eval-mode Wiener settings (default: the
                Separator's ``niter`` / ``softmask`` / ``residual``, else 1 iteration, magnitudes, no residual,
                as Open-Unmix's own loaders).
            wiener_window: frames filtered together (default: the Separator's ``wiener_win_len``, else 300).

        Returns:
            The converted model, in eval mode.
        """
        networks, settings = _openunmix_networks(source)
        if sources is not None:
            names = tuple(sources)
            if len(names) != len(networks):
                raise ConfigError(f"{len(names)} source names {list(names)} for {len(networks)} Open-Unmix targets")
        elif all(name is not None for name in networks):
            names = tuple(networks)  # type: ignore[arg-type]
        else:
            raise ConfigError("a single Open-Unmix network has no target name: pass sources=('vocals',) or similar")
        states = list(networks.values())
        shape = _openunmix_shape(states[0])
        for name, state in zip(names, states[1:]):
            if _openunmix_shape(state) != shape:
                raise ConfigError(f"Open-Unmix target {name!r} does not have the shape of target {names[0]!r}")
        n_bins, max_bin, channels, hidden_size, nb_layers, bidirectional = shape
        model = cls(
            sources=names,
            channels=channels,
            sample_rate=int(sample_rate if sample_rate is not None else settings.get("sample_rate", 44100)),
            n_fft=2 * (n_bins - 1),
            hop_length=int(hop_length if hop_length is not None else settings.get("hop_length", 1024)),
            hidden_size=hidden_size,
            nb_layers=nb_layers,
            bidirectional=bidirectional,
            max_bin=max_bin,
            wiener_iterations=int(wiener_iterations if wiener_iterations is not None
                                  else settings.get("wiener_iterations", 1)),
            wiener_softmask=bool(wiener_softmask if wiener_softmask is not None
                                 else settings.get("wiener_softmask", False)),
            wiener_residual=bool(wiener_residual if wiener_residual is not None
                                 else settings.get("wiener_residual", False)),
            wiener_window=settings.get("wiener_window", 300) if wiener_window == "auto" else wiener_window,
        )
        for network, state in zip(model.targets, states):
            network.load_state_dict(state)
        return model.eval()


def _openunmix_networks(source: Any) -> Tuple[Dict[Optional[str], Dict[str, Tensor]], Dict[str, Any]]:
    """The per-target state dicts and the Separator settings of an Open-Unmix object (duck-typed, no import)."""
    settings: Dict[str, Any] = {}
    if isinstance(source, nn.Module) and hasattr(source, "target_models"):  # openunmix.model.Separator
        stft = getattr(source, "stft", None)
        if hasattr(stft, "n_hop"):
            settings["hop_length"] = int(stft.n_hop)
        if hasattr(source, "sample_rate"):
            settings["sample_rate"] = int(float(source.sample_rate))
        settings.update(
            wiener_iterations=int(source.niter), wiener_softmask=bool(source.softmask),
            wiener_residual=bool(source.residual), wiener_window=source.wiener_win_len or None,
        )
        return {name: net.state_dict() for name, net in source.target_models.items()}, settings
    if isinstance(source, nn.Module):  # one openunmix.model.OpenUnmix network
        return {None: source.state_dict()}, settings
    if isinstance(source, Mapping):
        if "fc1.weight" in source:
            return {None: dict(source)}, settings
        out: Dict[Optional[str], Dict[str, Tensor]] = {}
        for name, value in source.items():
            state = value.state_dict() if isinstance(value, nn.Module) else value
            if not isinstance(state, Mapping) or "fc1.weight" not in state:
                raise ConfigError(f"Open-Unmix target {name!r} is not an Open-Unmix network or its state dict")
            out[str(name)] = dict(state)
        if not out:
            raise ConfigError("no Open-Unmix targets given")
        return out, settings
    raise ConfigError(f"cannot read Open-Unmix weights from a {type(source).__name__}")


def _openunmix_shape(state: Mapping[str, Tensor]) -> Tuple[int, int, int, int, int, bool]:
    """``(n_bins, max_bin, channels, hidden_size, nb_layers, bidirectional)`` of an Open-Unmix state dict."""
    try:
        n_bins = int(state["output_mean"].numel())
        max_bin = int(state["input_mean"].numel())
        hidden_size, features = (int(d) for d in state["fc1.weight"].shape)
    except KeyError as missing:
        raise ConfigError(f"not an Open-Unmix state dict: no {missing}") from None
    layers: List[str] = [key for key in state if key.startswith("lstm.weight_ih_l") and not key.endswith("_reverse")]
    bidirectional = "lstm.weight_ih_l0_reverse" in state
    if features % max_bin:
        raise ConfigError(f"fc1 reads {features} features, not a multiple of max_bin={max_bin}")
    return n_bins, max_bin, features // max_bin, hidden_size, len(layers), bidirectional
