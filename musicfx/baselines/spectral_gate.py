"""Classical single-channel denoising: a noise PSD estimated from the signal itself, then a Wiener gain.

The method, per channel:

1. STFT with a Hann window.
2. **Noise PSD** per frequency bin: the power is averaged over a short time window, and a low percentile
   over time of that smoothed power is taken, so frames where music plays in a bin are ignored as long as
   the bin is quiet some of the time. The percentile of noise alone sits below its mean; that bias is
   removed for Gaussian noise using the exact distribution of a smoothed periodogram of overlapping
   frames (the idea behind Martin's minimum-statistics bias compensation).
   A median across neighbouring bins then rejects narrow peaks (a note held through the whole excerpt)
   while keeping smooth coloured noise. Digitally silent frames are left out.
3. **Gain**: Wiener gain ``xi / (1 + xi)`` with the decision-directed a-priori SNR of Ephraim & Malah
   (1984), ``xi_l = a * G_{l-1}^2 * gamma_{l-1} + (1 - a) * max(gamma_l - 1, 0)``, floored at a minimum
   a-priori SNR (Cappe, 1994) and then at a gain floor.
4. The gain is smoothed over time and frequency with a small triangular kernel: isolated gain spikes are
   what sounds like "musical noise".
5. iSTFT back to the exact input length.

Everything is batched torch code: ``(..., channels, time)`` tensors on any device, no state kept between
calls, so :mod:`musicfx.inference` can run it chunk by chunk (pass ``noise_psd`` from
:func:`estimate_noise_psd` over the whole file to make the chunks share one noise estimate).

Defaults were chosen on real music (10 s of the SiSEC 2011 "Ultimate NZ Tour" mix, stereo 44.1 kHz) with
white noise and real kitchen noise added. SI-SDR, input -> output: white noise 0 dB -> 6.3 dB, 10 dB ->
11.8 dB; kitchen noise 0 dB -> 2.0 dB, 10 dB -> 10.6 dB; the clean mix itself comes out at 17.7 dB.
Speech-tuned settings (a = 0.98, 10th percentile, -20 dB floor) smeared attacks and gated dense music:
5.1, 8.9, 0.9, 8.2 and 12.3 dB on the same cases. A recording where music fills a bin all the time
(dense mixes, drones) is where a signal-derived noise estimate fails: pass ``noise_psd`` from a
noise-only excerpt there.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicfx.audio.spectral import istft, stft
from musicfx.errors import AudioError

__all__ = ["spectral_gate", "estimate_noise_psd", "SpectralGate"]

#: Frames this far below the loudest frame count as digital silence and are left out of the noise estimate.
_SILENCE_DB = -100.0
#: Floor of the noise PSD (in squared-amplitude units), so silence yields gains, not 0/0.
_PSD_FLOOR = 1e-20


def _check(audio: Tensor, n_fft: int, hop_length: int, noise_percentile: float) -> None:
    if audio.dim() < 1:
        raise AudioError("spectral_gate expects audio shaped (..., channels, time), got a scalar")
    if audio.shape[-1] < 1:
        raise AudioError("spectral_gate got empty audio (0 samples)")
    if not 0 < hop_length <= n_fft:
        raise ValueError(f"hop_length must be in [1, n_fft={n_fft}], got {hop_length}")
    if not 0.0 < noise_percentile < 100.0:
        raise ValueError(f"noise_percentile must be in (0, 100), got {noise_percentile}")


def _smoothing_frames(sample_rate: int, hop_length: int, ms: float) -> int:
    return max(1, int(round(ms * 1e-3 * sample_rate / hop_length)))


def _frame_correlation(n_fft: int, hop_length: int, frames: int) -> Tensor:
    """Correlation of the STFT coefficients of white noise in one bin across ``frames`` consecutive frames.

    ``c(d) = sum w[n] w[n + d * hop] / sum w^2`` for a Hann window ``w`` (a phase factor per lag aside,
    which leaves the distribution of the powers unchanged). Returns a ``(frames, frames)`` float64 matrix.
    """
    w = torch.hann_window(n_fft, dtype=torch.float64)
    energy = (w * w).sum()
    lags = torch.zeros(frames, dtype=torch.float64)
    for lag in range(frames):
        shift = lag * hop_length
        if shift < n_fft:
            lags[lag] = (w[shift:] * w[: n_fft - shift]).sum() / energy
    index = torch.arange(frames)
    return lags[(index[:, None] - index[None, :]).abs()]


@functools.lru_cache(maxsize=64)
def _percentile_bias(n_fft: int, hop_length: int, frames: int, percentile: float) -> float:
    """``q``-quantile over mean of the moving-average power of white Gaussian noise.

    The smoothed power in a bin is a quadratic form of correlated complex Gaussians, whose quantiles have
    no closed form; they are drawn from that exact distribution with a fixed local generator (2^16
    draws: the 5th percentile comes out within about 1 %). One frame has the exponential distribution.
    """
    if frames == 1:
        return -math.log1p(-percentile / 100.0)
    chol = torch.linalg.cholesky(_frame_correlation(n_fft, hop_length, frames) + 1e-12 * torch.eye(frames))
    generator = torch.Generator().manual_seed(0)
    draws = 1 << 16
    z = torch.complex(
        torch.randn(draws, frames, dtype=torch.float64, generator=generator),
        torch.randn(draws, frames, dtype=torch.float64, generator=generator),
    ) / 2.0**0.5
    coefficients = z @ chol.T.to(z.dtype)
    smoothed = coefficients.abs().square().mean(dim=-1)
    return float(torch.quantile(smoothed, percentile / 100.0))


def _masked_percentile(values: Tensor, valid: Tensor, q: float) -> Tensor:
    """Linear-interpolated ``q``-quantile over the last axis, counting only ``valid`` entries.

    Args:
        values: ``(rows, bins, frames)``.
        valid: ``(rows, 1, frames)`` bool.
        q: quantile in ``(0, 1)``.

    Returns:
        ``(rows, bins)``; 0 where a row has no valid frame.
    """
    # torch.quantile refuses inputs above 2^24 elements and has no mask. Only the smallest ``high + 1`` values
    # are needed (a low percentile: a few % of the frames), and a partial top-k is exact and several times
    # faster than sorting every frame.
    filled = values.masked_fill(~valid, float("inf"))
    count = valid.sum(dim=-1).to(values.dtype)  # (rows, 1)
    position = (count - 1).clamp_min(0) * q
    low = position.floor().long()
    high = (low + 1).clamp(max=values.shape[-1] - 1)
    high = torch.minimum(high, (count - 1).clamp_min(0).long())
    ordered = filled.topk(int(high.max()) + 1, dim=-1, largest=False, sorted=True).values
    frac = (position - low.to(values.dtype)).unsqueeze(-1)
    index = low.unsqueeze(-1).expand(-1, values.shape[1], 1)
    lower = ordered.gather(-1, index)
    upper = ordered.gather(-1, high.unsqueeze(-1).expand(-1, values.shape[1], 1))
    result = (lower + frac * (upper - lower)).squeeze(-1)
    return torch.where(count > 0, result, torch.zeros_like(result))


def _median_over_bins(psd: Tensor, width: int) -> Tensor:
    """Running median along frequency over ``width`` (odd) bins, edges replicated.  ``(rows, bins)``."""
    if width <= 1:
        return psd
    half = width // 2
    padded = F.pad(psd.unsqueeze(1), (half, half), mode="replicate").squeeze(1)
    return padded.unfold(-1, width, 1).median(dim=-1).values


def _noise_psd_from_power(
    power: Tensor,
    n_fft: int,
    hop_length: int,
    smoothing_frames: int,
    noise_percentile: float,
    median_bins: int,
) -> Tensor:
    """Noise PSD per bin from a power spectrogram ``(rows, bins, frames)`` -> ``(rows, bins)``."""
    frame_energy = power.sum(dim=1, keepdim=True)  # (rows, 1, frames)
    loudest = frame_energy.amax(dim=-1, keepdim=True)
    active = (frame_energy > loudest * 10.0 ** (_SILENCE_DB / 10.0)) & (frame_energy > 0)
    weight = active.to(power.dtype)
    frames = min(smoothing_frames, power.shape[-1])
    if frames > 1:
        rows, bins, n = power.shape
        kernel = torch.ones(1, 1, frames, dtype=power.dtype, device=power.device)
        pad = (frames // 2, frames - 1 - frames // 2)
        num = F.conv1d(F.pad((power * weight).reshape(rows * bins, 1, n), pad), kernel).reshape(rows, bins, n)
        den = F.conv1d(F.pad(weight, pad), kernel)  # (rows, 1, n)
        smoothed = num / den.clamp_min(1.0)
        # A window that is mostly silence says little about the noise.
        valid = active & (den > 0.5 * frames)
        valid = torch.where(valid.any(dim=-1, keepdim=True), valid, active)
    else:
        smoothed, valid = power, active
    q = noise_percentile / 100.0
    bias = _percentile_bias(n_fft, hop_length, frames, noise_percentile)
    psd = _masked_percentile(smoothed, valid, q) / bias
    return _median_over_bins(psd, median_bins)


def _median_bins(sample_rate: int, n_fft: int, hz: float) -> int:
    bins = int(round(hz * n_fft / sample_rate))
    return bins + 1 if bins % 2 == 0 else bins


def estimate_noise_psd(
    audio: Tensor,
    sample_rate: int,
    n_fft: int = 2048,
    hop_length: int = 512,
    noise_percentile: float = 5.0,
    noise_window_ms: float = 100.0,
    noise_median_hz: float = 200.0,
) -> Tensor:
    """Estimate the noise power spectral density of a recording from the recording itself.

    Args:
        audio: ``(..., channels, time)`` (or just ``(time,)``), any float dtype and device.
        sample_rate: sampling rate of ``audio`` in Hz.
        n_fft: STFT size (Hann window of this length).
        hop_length: STFT hop.
        noise_percentile: percentile over time (0-100) of the smoothed power taken as the noise level.
        noise_window_ms: length of the moving average applied to the power before the percentile.
        noise_median_hz: width of the running median across frequency (0 disables it).

    Returns:
        Noise PSD ``(..., channels, n_fft // 2 + 1)`` float32 in units of ``|torch.stft(x, window=hann)|^2``:
        for white noise of variance ``s2`` it is ``s2 * sum(hann ** 2)`` in every bin.
    """
    _check(audio, n_fft, hop_length, noise_percentile)
    lead, length = audio.shape[:-1], audio.shape[-1]
    # Reflection padding (stft's default) keeps the edge frames as loud as the signal; zeros would make them
    # look like low-noise frames.
    spec = stft(audio.reshape(-1, length).float(), n_fft, hop_length)
    psd = _noise_psd_from_power(
        spec.real.square() + spec.imag.square(),
        n_fft,
        hop_length,
        _smoothing_frames(sample_rate, hop_length, noise_window_ms),
        noise_percentile,
        _median_bins(sample_rate, n_fft, noise_median_hz),
    )
    return psd.reshape(*lead, psd.shape[-1])


def _decision_directed_gain(power: Tensor, noise_psd: Tensor, alpha: float, min_prior_snr: float) -> Tensor:
    """Wiener gain with the decision-directed a-priori SNR.

    Args:
        power: ``(rows, bins, frames)`` noisy power.
        noise_psd: ``(rows, bins)``.
        alpha: smoothing constant of the a-priori SNR (0.98 in Ephraim & Malah, for speech).
        min_prior_snr: floor of the a-priori SNR (linear).

    Returns:
        Gain ``(rows, bins, frames)`` in ``[0, 1)``.
    """
    posterior = power / noise_psd.clamp_min(_PSD_FLOOR).unsqueeze(-1)  # gamma, (rows, bins, frames)
    ml = (posterior - 1.0).clamp_min(0.0)
    gains = torch.empty_like(power)
    previous = ml[..., 0]  # G^2 * gamma of the frame before the first: its ML estimate
    for frame in range(power.shape[-1]):
        prior = (alpha * previous + (1.0 - alpha) * ml[..., frame]).clamp_min(min_prior_snr)
        gain = prior / (1.0 + prior)
        gains[..., frame] = gain
        previous = gain.square() * posterior[..., frame]
    return gains


def _smooth_gain(gain: Tensor, bins: int, frames: int) -> Tensor:
    """Separable triangular smoothing over ``2 * bins + 1`` bins and ``2 * frames + 1`` frames (edges replicated).

    The kernels are a few taps wide: a weighted sum of shifted views is ~10x faster on a CPU than
    ``conv2d`` with a one-channel kernel.
    """
    out = gain
    for dim, half in ((-2, bins), (-1, frames)):
        if half < 1:
            continue
        tri = torch.cat([torch.arange(1, half + 2), torch.arange(half, 0, -1)]).to(gain)
        tri = tri / tri.sum()
        size = out.shape[dim]
        padded = out.index_select(dim, torch.arange(-half, size + half, device=gain.device).clamp(0, size - 1))
        smoothed = padded.narrow(dim, 0, size) * tri[0]
        for k in range(1, 2 * half + 1):
            smoothed = smoothed + padded.narrow(dim, k, size) * tri[k]
        out = smoothed
    return out


def spectral_gate(
    audio: Tensor,
    sample_rate: int,
    n_fft: int = 2048,
    hop_length: int = 512,
    noise_percentile: float = 5.0,
    noise_window_ms: float = 100.0,
    noise_median_hz: float = 200.0,
    noise_scale: float = 1.0,
    dd_alpha: float = 0.9,
    min_prior_snr_db: float = -25.0,
    gain_floor_db: float = -15.0,
    smooth_hz: float = 25.0,
    smooth_ms: float = 12.0,
    noise_psd: Optional[Tensor] = None,
) -> Tensor:
    """Denoise with a self-estimated noise PSD and a decision-directed Wiener gain.

    Args:
        audio: ``(..., channels, time)`` (or just ``(time,)``), any float dtype and device.
        sample_rate: sampling rate of ``audio`` in Hz (converts the Hz / ms settings to bins / frames).
        n_fft: STFT size (Hann window).
        hop_length: STFT hop.
        noise_percentile: percentile over time of the smoothed power taken as the noise level.
        noise_window_ms: moving average applied to the power before the percentile.
        noise_median_hz: width of the running median of the noise PSD across frequency (0 disables).
        noise_scale: multiplies the noise PSD (> 1 removes more noise and more music).
        dd_alpha: decision-directed smoothing constant in ``[0, 1)``; higher is smoother and slower.
        min_prior_snr_db: floor of the a-priori SNR.
        gain_floor_db: lowest gain applied to any time-frequency bin.
        smooth_hz: half-width of the gain's triangular smoothing across frequency.
        smooth_ms: half-width of the gain's triangular smoothing across time.
        noise_psd: optional precomputed noise PSD ``(..., channels, n_fft // 2 + 1)`` (or broadcastable to
            it), e.g. from :func:`estimate_noise_psd` over a whole file or a noise-only excerpt; when given,
            nothing is estimated from ``audio``.

    Returns:
        Denoised audio, same shape, dtype and device as ``audio``.
    """
    _check(audio, n_fft, hop_length, noise_percentile)
    if not 0.0 <= dd_alpha < 1.0:
        raise ValueError(f"dd_alpha must be in [0, 1), got {dd_alpha}")
    lead, length = audio.shape[:-1], audio.shape[-1]
    x = audio.reshape(-1, length).float()
    spec = stft(x, n_fft, hop_length)
    power = spec.real.square() + spec.imag.square()
    if noise_psd is None:
        psd = _noise_psd_from_power(
            power,
            n_fft,
            hop_length,
            _smoothing_frames(sample_rate, hop_length, noise_window_ms),
            noise_percentile,
            _median_bins(sample_rate, n_fft, noise_median_hz),
        )
    else:
        n_bins = n_fft // 2 + 1
        if noise_psd.shape[-1] != n_bins:
            raise ValueError(f"noise_psd has {noise_psd.shape[-1]} bins, n_fft={n_fft} needs {n_bins}")
        psd = noise_psd.to(device=x.device, dtype=torch.float32).expand(*lead, n_bins).reshape(-1, n_bins)
    gain = _decision_directed_gain(power, psd * noise_scale, dd_alpha, 10.0 ** (min_prior_snr_db / 10.0))
    gain = gain.clamp_min(10.0 ** (gain_floor_db / 20.0))
    bin_hz = sample_rate / n_fft
    gain = _smooth_gain(
        gain, int(round(smooth_hz / bin_hz)), int(round(smooth_ms * 1e-3 * sample_rate / hop_length))
    )
    out = istft(spec * gain, n_fft, hop_length, length)
    return out.reshape(*lead, length).to(audio.dtype)


class SpectralGate(nn.Module):
    """:func:`spectral_gate` as a module, so it can stand where a trained denoiser would.

    It has no parameters; ``forward`` takes and returns ``(batch, channels, time)``. The arguments are
    those of :func:`spectral_gate` (``noise_psd`` excepted: a module is called on audio only).
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        n_fft: int = 2048,
        hop_length: int = 512,
        noise_percentile: float = 5.0,
        noise_window_ms: float = 100.0,
        noise_median_hz: float = 200.0,
        noise_scale: float = 1.0,
        dd_alpha: float = 0.9,
        min_prior_snr_db: float = -25.0,
        gain_floor_db: float = -15.0,
        smooth_hz: float = 25.0,
        smooth_ms: float = 12.0,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.noise_percentile = noise_percentile
        self.noise_window_ms = noise_window_ms
        self.noise_median_hz = noise_median_hz
        self.noise_scale = noise_scale
        self.dd_alpha = dd_alpha
        self.min_prior_snr_db = min_prior_snr_db
        self.gain_floor_db = gain_floor_db
        self.smooth_hz = smooth_hz
        self.smooth_ms = smooth_ms
        _check(torch.zeros(1), n_fft, hop_length, noise_percentile)

    def forward(self, audio: Tensor, sample_rate: Optional[int] = None) -> Tensor:
        """Args:
            audio: ``(batch, channels, time)`` (any ``(..., time)`` works).
            sample_rate: rate of ``audio`` when it differs from the one given at construction (one gate
                can then serve files at several rates).

        Returns:
            Denoised audio, same shape.
        """
        return spectral_gate(
            audio,
            self.sample_rate if sample_rate is None else sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            noise_percentile=self.noise_percentile,
            noise_window_ms=self.noise_window_ms,
            noise_median_hz=self.noise_median_hz,
            noise_scale=self.noise_scale,
            dd_alpha=self.dd_alpha,
            min_prior_snr_db=self.min_prior_snr_db,
            gain_floor_db=self.gain_floor_db,
            smooth_hz=self.smooth_hz,
            smooth_ms=self.smooth_ms,
        )

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
            f"noise_percentile={self.noise_percentile}, gain_floor_db={self.gain_floor_db}"
        )
