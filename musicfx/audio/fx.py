"""A batched, differentiable mixing console in torch: gain, pan, EQ, compressor and reverb.

Every effect takes audio shaped ``(..., channels, time)`` and per-example parameters that are floats or
tensors over the leading dimensions ``(...)``. Parameters align with the leading dimensions **from the
left** and are broadcast over the ones they lack: for ``x`` of shape ``(B, S, C, T)`` a ``(B,)`` parameter
applies one value per example to all its stems, a ``(B, S)`` parameter one value per stem, a float one
value to everything. (This is not torch's right-aligned broadcasting, which would pair a ``(B,)`` tensor
with the stems axis.) Band parameters of the equaliser add a trailing band axis: ``(..., K)``.

Everything is differentiable in the audio and in the parameters, so a network can predict them, and runs
in float32 (float64 for float64 input) with autocast disabled: filter responses near DC and the
compressor's decibel arithmetic lose too much in half precision. Nothing loops over samples or examples:
the EQ's biquads are frequency-sampled into an FIR applied by FFT convolution, the compressor's envelope
follower is a ``cummax`` plus a one-pole filter applied by FFT (see :func:`compressor_gain_db` for the
exact ballistics), the reverb is one FFT convolution.

Decibel conversions are :func:`musicfx.audio.spectral.db_to_amplitude` and
:func:`~musicfx.audio.spectral.amplitude_to_db`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from musicfx.audio.spectral import db_to_amplitude, fft_convolve, next_fast_len, power_to_db

__all__ = [
    "BIQUAD_KINDS",
    "gain",
    "pan",
    "pan_gains",
    "biquad_coefficients",
    "biquad_response",
    "biquad_decay_samples",
    "parametric_eq",
    "fir_filter",
    "gain_computer",
    "compressor_gain_db",
    "compressor",
    "fft_reverb",
]

FloatOrTensor = Union[float, Tensor]

#: Filter shapes of :func:`biquad_coefficients` (Robert Bristow-Johnson's "Audio EQ Cookbook").
BIQUAD_KINDS: Tuple[str, ...] = ("peak", "lowshelf", "highshelf", "lowpass", "highpass")

# A recursive filter's impulse response is cut where it has decayed to this fraction of its start: the
# frequency-sampled filters pad the signal by that many samples so the tail does not wrap around.
_DECAY_TOLERANCE = 1e-6
_LN_TOLERANCE = -math.log(_DECAY_TOLERANCE)
# Padding never exceeds this many seconds, whatever the poles (a pole on the unit circle never decays).
_MAX_PAD_SECONDS = 10.0
# Gain reduction below this (dB) counts as none; the release envelope works on its logarithm.
_MIN_REDUCTION_DB = 1e-6
# Largest ``time / release`` (in samples) the release envelope computes in float32 (see _release_envelope).
_FLOAT32_OFFSET_LIMIT = 1000.0


# ----------------------------------------------------------------------------------------------- helpers
def _dtype(*values: object) -> torch.dtype:
    """float64 when any tensor argument is float64, else float32."""
    return torch.float64 if any(isinstance(v, Tensor) and v.dtype == torch.float64 for v in values) else torch.float32


def _check_audio(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor shaped (..., channels, time), got {shape}")


def _lead(
    value: FloatOrTensor, lead: torch.Size, name: str, device: torch.device, dtype: torch.dtype, trailing: int = 0
) -> Tensor:
    """A parameter aligned with the leading dimensions ``lead`` from the left.

    Args:
        value: a float or a tensor shaped ``(P..., *tail)`` where ``P`` is a prefix of ``lead`` (each size
            equal or 1) and ``tail`` holds ``trailing`` extra dimensions (the EQ's band axis).
        lead: the audio's leading dimensions ``(...)``.

    Returns:
        Tensor shaped ``(P..., 1, ..., 1, *tail)`` with ``len(lead)`` dimensions before ``tail``, which
        broadcasts against ``lead`` the usual way.
    """
    tensor = torch.as_tensor(value, device=device)
    tensor = tensor.to(dtype) if not tensor.is_complex() else tensor
    if tensor.dim() < trailing:
        raise ValueError(f"{name} needs at least {trailing} trailing dimension(s), got shape {tuple(tensor.shape)}")
    core = tensor.shape[: tensor.dim() - trailing]
    tail = tensor.shape[tensor.dim() - trailing :]
    if len(core) > len(lead) or any(size not in (1, full) for size, full in zip(core, lead)):
        raise ValueError(
            f"{name} of shape {tuple(tensor.shape)} does not align with the leading dimensions {tuple(lead)} "
            f"(parameters match them from the left)"
        )
    return tensor.reshape((*core, *([1] * (len(lead) - len(core))), *tail))


def _min_float(value: FloatOrTensor) -> float:
    """Smallest value of a float or tensor, as a Python float (one device sync for a tensor)."""
    return float(value.detach().min()) if isinstance(value, Tensor) else float(value)


def _max_float(value: FloatOrTensor) -> float:
    """Largest value of a float or tensor, as a Python float (one device sync for a tensor)."""
    return float(value.detach().max()) if isinstance(value, Tensor) else float(value)


def _grid(n_fft: int, device: torch.device, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """``sin^2(w / 2)`` and ``sin(w)`` on the ``n_fft // 2 + 1`` bins of a one-sided spectrum.

    Filter responses are written in these rather than ``cos(w)``: ``1 - cos(w)`` loses all precision
    near DC in float32, ``2 sin^2(w / 2)`` does not.
    """
    half_angle = torch.arange(n_fft // 2 + 1, device=device, dtype=torch.float64) * (math.pi / n_fft)
    return torch.sin(half_angle).square().to(dtype), torch.sin(2.0 * half_angle).to(dtype)


def _filter_by_response(x: Tensor, n_fft: int, response: Tensor) -> Tensor:
    """Multiply the zero-padded ``n_fft``-point spectrum of ``x (..., time)`` by ``response`` and return
    the first ``time`` samples."""
    time = x.shape[-1]
    spectrum = torch.fft.rfft(x, n=n_fft, dim=-1)
    return torch.fft.irfft(spectrum * response, n=n_fft, dim=-1)[..., :time]


# ------------------------------------------------------------------------------------------- gain and pan
def gain(x: Tensor, gain_db: FloatOrTensor) -> Tensor:
    """Scale by a gain in decibels.

    Args:
        x: audio ``(..., channels, time)``.
        gain_db: float or tensor over the leading dimensions (left-aligned, see the module docstring).

    Returns:
        ``x * 10 ** (gain_db / 20)``, ``(..., channels, time)``.
    """
    _check_audio(x)
    dtype = _dtype(x, gain_db)
    with torch.autocast(device_type=x.device.type, enabled=False):
        g = db_to_amplitude(_lead(gain_db, x.shape[:-2], "gain_db", x.device, dtype))
        return x.to(dtype) * g[..., None, None]


def pan_gains(position: Tensor) -> Tuple[Tensor, Tensor]:
    """Constant-power (-3 dB centre) pan law.

    Args:
        position: pan in ``[-1, 1]`` (-1 hard left, 0 centre, 1 hard right), any shape; values outside are
            clamped.

    Returns:
        ``(left, right)`` gains ``cos(theta), sin(theta)`` with ``theta = (position + 1) pi / 4``: 1 and 0
        at -1, both ``1/sqrt(2)`` at 0, and ``left^2 + right^2 = 1`` everywhere.
    """
    theta = (position.clamp(-1.0, 1.0) + 1.0) * (math.pi / 4.0)
    return torch.cos(theta), torch.sin(theta)


def pan(x: Tensor, pan: FloatOrTensor) -> Tensor:
    """Pan mono audio, or balance stereo audio, with the constant-power law of :func:`pan_gains`.

    A mono signal is placed in the stereo field: ``(x cos theta, x sin theta)``, its power constant for
    every position. A stereo signal is *balanced*: its left channel is scaled by the left gain and its
    right by the right gain, so channels never move across (a hard-left balance silences the right
    channel). The same law serves both so that balancing a dual-mono signal equals panning the mono one;
    in particular a centred stereo signal comes out 3 dB down, like a centred mono one.

    Args:
        x: audio ``(..., channels, time)`` with 1 or 2 channels.
        pan: position in ``[-1, 1]``, float or tensor over the leading dimensions.

    Returns:
        Stereo audio ``(..., 2, time)``.
    """
    _check_audio(x)
    if x.shape[-2] not in (1, 2):
        raise ValueError(f"pan needs mono or stereo audio, got {x.shape[-2]} channels")
    dtype = _dtype(x, pan)
    with torch.autocast(device_type=x.device.type, enabled=False):
        position = _lead(pan, x.shape[:-2], "pan", x.device, dtype)[..., None]
        left, right = pan_gains(position)
        x = x.to(dtype)
        return torch.stack([x[..., 0, :] * left, x[..., -1, :] * right], dim=-2)


# ------------------------------------------------------------------------------------------------ biquads
_Sums = Tuple[Tensor, Tensor, Tensor]


def _biquad_sums(
    kind: str, freq_hz: Tensor, gain_db: Tensor, q: Tensor, sample_rate: float
) -> Tuple[_Sums, _Sums]:
    """A biquad as ``(p0 + p2, p0 - p2, p0 + p1 + p2)`` for its numerator and its denominator.

    The frequency response of ``p0 + p1 z^-1 + p2 z^-2``, times ``e^{jw}``, is
    ``(p0 + p1 + p2) - 2 (p0 + p2) sin^2(w/2) + j (p0 - p2) sin(w)``. The sums are derived in closed form
    from the cookbook formulas with ``1 - cos(w0)`` written ``2 sin^2(w0/2)``, so the DC sum, which is a
    tiny difference of numbers near 2 for low corner frequencies, keeps full float32 precision.
    """
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    k = 2.0 * torch.sin(0.5 * w0).square()  # 1 - cos(w0), exactly
    c = 1.0 - k
    alpha = torch.sin(w0) / (2.0 * q)
    if kind == "lowpass":
        return (k, torch.zeros_like(k), 2.0 * k), (torch.full_like(k, 2.0), 2.0 * alpha, 2.0 * k)
    if kind == "highpass":
        return (2.0 - k, torch.zeros_like(k), torch.zeros_like(k)), (torch.full_like(k, 2.0), 2.0 * alpha, 2.0 * k)
    amp = torch.pow(10.0, gain_db / 40.0)  # the cookbook's A: square root of the linear gain
    if kind == "peak":
        two = torch.full_like(k, 2.0)
        return (two, 2.0 * alpha * amp, 2.0 * k), (two, 2.0 * alpha / amp, 2.0 * k)
    beta = 2.0 * torch.sqrt(amp) * alpha
    if kind == "lowshelf":
        numerator = (2.0 * amp * ((amp + 1.0) - (amp - 1.0) * c), 2.0 * amp * beta, 4.0 * amp.square() * k)
        denominator = (2.0 * ((amp + 1.0) + (amp - 1.0) * c), 2.0 * beta, 4.0 * k)
        return numerator, denominator
    if kind == "highshelf":
        numerator = (2.0 * amp * ((amp + 1.0) + (amp - 1.0) * c), 2.0 * amp * beta, 4.0 * amp * k)
        denominator = (2.0 * ((amp + 1.0) - (amp - 1.0) * c), 2.0 * beta, 4.0 * amp * k)
        return numerator, denominator
    raise ValueError(f"unknown biquad kind {kind!r}; valid: {', '.join(BIQUAD_KINDS)}")


def _biquad_inputs(
    freq_hz: FloatOrTensor, gain_db: FloatOrTensor, q: FloatOrTensor, sample_rate: float
) -> Tuple[Tensor, Tensor, Tensor]:
    """The three parameters as broadcast tensors of one float dtype and device."""
    device = next((v.device for v in (freq_hz, gain_db, q) if isinstance(v, Tensor)), torch.device("cpu"))
    dtype = _dtype(freq_hz, gain_db, q)
    tensors = [torch.as_tensor(v, device=device).to(dtype) for v in (freq_hz, gain_db, q)]
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return tuple(torch.broadcast_tensors(*tensors))  # type: ignore[return-value]


def biquad_coefficients(
    kind: str, freq_hz: FloatOrTensor, gain_db: FloatOrTensor, q: FloatOrTensor, sample_rate: float
) -> Tuple[Tensor, Tensor]:
    """Biquad coefficients from the RBJ Audio EQ Cookbook.

    Args:
        kind: one of :data:`BIQUAD_KINDS`.
        freq_hz: centre (peak) or corner (shelves, low/high-pass) frequency, in ``(0, sample_rate / 2)``.
        gain_db: gain of the peak or of the shelf (ignored by low/high-pass).
        q: quality factor (> 0); shelves use the cookbook's Q form, ``1/sqrt(2)`` is the steepest shelf
            without overshoot.
        sample_rate: Hz.

    Returns:
        ``(b, a)``, each ``(..., 3)`` over the broadcast shape of the parameters, normalised so
        ``a[..., 0] == 1``; ``scipy.signal.lfilter(b, a, x)`` applies the filter.
    """
    freq_hz, gain_db, q = _biquad_inputs(freq_hz, gain_db, q, sample_rate)
    (nu, nd, ns), (du, dd, ds) = _biquad_sums(kind, freq_hz, gain_db, q, float(sample_rate))
    a0 = 0.5 * (du + dd)
    b = torch.stack([0.5 * (nu + nd), ns - nu, 0.5 * (nu - nd)], dim=-1)
    a = torch.stack([a0, ds - du, 0.5 * (du - dd)], dim=-1)
    return b / a0[..., None], a / a0[..., None]


def biquad_response(
    kind: str, freq_hz: FloatOrTensor, gain_db: FloatOrTensor, q: FloatOrTensor, sample_rate: float, n_fft: int
) -> Tensor:
    """Complex frequency response of a cookbook biquad on the bins of an ``n_fft``-point rFFT.

    Args:
        kind, freq_hz, gain_db, q, sample_rate: as in :func:`biquad_coefficients`.
        n_fft: FFT size.

    Returns:
        Complex ``(..., n_fft // 2 + 1)`` (complex64, or complex128 for float64 parameters), equal to
        ``scipy.signal.freqz(b, a, worN=n_fft // 2 + 1)`` to float precision.
    """
    freq_hz, gain_db, q = _biquad_inputs(freq_hz, gain_db, q, sample_rate)
    sums = _biquad_sums(kind, freq_hz, gain_db, q, float(sample_rate))
    half, sine = _grid(n_fft, freq_hz.device, freq_hz.dtype)
    (nu, nd, ns), (du, dd, ds) = [[s[..., None] for s in part] for part in sums]
    numerator = torch.complex(ns - 2.0 * nu * half, nd * sine)
    denominator = torch.complex(ds - 2.0 * du * half, dd * sine)
    return numerator / denominator


def biquad_decay_samples(
    kind: str, freq_hz: FloatOrTensor, gain_db: FloatOrTensor, q: FloatOrTensor, sample_rate: float
) -> int:
    """Samples until the slowest impulse response among the given biquads has decayed to ``1e-6``.

    This is the ``pad`` :func:`parametric_eq` uses by default; pass the worst case of a parameter range to
    fix the FFT sizes in advance. Capped at 10 s (a pole on the unit circle never decays).

    The envelope of a biquad's impulse response decays as ``r ** n`` with ``r`` the largest pole radius
    (roots of ``z^2 + a1 z + a2``): ``sqrt(a2)`` for complex poles, the larger real root otherwise.
    """
    freq_hz, gain_db, q = _biquad_inputs(freq_hz, gain_db, q, sample_rate)
    with torch.no_grad():
        _, a = biquad_coefficients(kind, freq_hz.double(), gain_db.double(), q.double(), sample_rate)
        a1, a2 = a[..., 1], a[..., 2]
        disc = a1.square() - 4.0 * a2
        radius = torch.where(
            disc < 0, a2.clamp_min(0.0).sqrt(), 0.5 * (a1.abs() + disc.clamp_min(0.0).sqrt())
        ).max()
    radius = float(radius)
    cap = int(_MAX_PAD_SECONDS * sample_rate)
    if radius >= 1.0:
        return cap
    if radius <= 0.0:
        return 2
    return min(cap, int(math.ceil(_LN_TOLERANCE / -math.log(radius))) + 2)


def parametric_eq(
    x: Tensor,
    sample_rate: int,
    freq_hz: FloatOrTensor,
    gain_db: FloatOrTensor,
    q: FloatOrTensor,
    kinds: Sequence[str],
    pad: Optional[int] = None,
) -> Tensor:
    """A cascade of K cookbook biquads, applied by frequency sampling.

    A cascade of IIR filters run sample by sample (``lfilter``) is sequential: on a GPU it crawls, and its
    gradient needs a second recursion. Instead the product of the K biquads' exact frequency responses is
    sampled on the ``N`` bins of a small FFT and inverted to an ``N``-tap FIR, which :func:`fir_filter`
    applies by one batched FFT convolution; a whole batch of differently parametrised equalisers costs
    one rFFT/irFFT pair over the audio, and the responses are computed on ``N`` points, not on the
    audio's length. Sampling a response on ``N`` bins *wraps its impulse response around* modulo ``N``
    (circular aliasing of the infinite IIR tail); ``N`` is at least ``pad``, the length over which the
    slowest band's response decays to ``1e-6`` of its start, so what wraps onto the first taps is below
    that. The result is ``lfilter`` with zero initial state, to float precision.

    Args:
        x: audio ``(..., channels, time)``.
        sample_rate: Hz.
        freq_hz: ``(..., K)`` centre/corner frequencies, leading dimensions left-aligned with ``x``'s (a
            1-D ``(K,)`` tensor or a list applies the same bands to everything).
        gain_db: ``(..., K)`` band gains (ignored by low/high-pass bands).
        q: ``(..., K)`` quality factors.
        kinds: the K band shapes, each one of :data:`BIQUAD_KINDS`.
        pad: length of the FIR in samples (rounded up to a fast FFT size); default from the poles of the
            given bands (one device sync), capped at 10 s. A fixed value keeps the FFT sizes independent of
            the parameters.

    Returns:
        Equalised audio ``(..., channels, time)``.
    """
    _check_audio(x)
    kinds = list(kinds)
    dtype = _dtype(x, freq_hz, gain_db, q)
    if not kinds:
        return x.to(dtype)
    lead = x.shape[:-2]
    # A (K,) parameter applies to everything, so the band axis is the only one it has.
    params = [
        _lead(torch.as_tensor(v, device=x.device), lead, name, x.device, dtype, trailing=1)
        for name, v in (("freq_hz", freq_hz), ("gain_db", gain_db), ("q", q))
    ]
    for name, tensor in zip(("freq_hz", "gain_db", "q"), params):
        if tensor.shape[-1] not in (1, len(kinds)):
            raise ValueError(f"{name} has {tensor.shape[-1]} bands but kinds names {len(kinds)}")
    freq_t, gain_t, q_t = torch.broadcast_tensors(*params)
    with torch.autocast(device_type=x.device.type, enabled=False):
        if pad is None:
            pad = max(
                biquad_decay_samples(kind, freq_t[..., k], gain_t[..., k], q_t[..., k], sample_rate)
                for k, kind in enumerate(kinds)
            )
        taps = next_fast_len(max(int(pad), 16))
        response: Optional[Tensor] = None
        for k, kind in enumerate(kinds):  # K is a handful of bands; each step is batched over everything
            band = biquad_response(kind, freq_t[..., k], gain_t[..., k], q_t[..., k], sample_rate, taps)
            response = band if response is None else response * band
        assert response is not None
        impulse = torch.fft.irfft(response, n=taps, dim=-1)  # (..., taps), leading dims as the parameters
        return fir_filter(x.to(dtype), impulse)


def fir_filter(x: Tensor, taps: Tensor, zero_phase: bool = False) -> Tensor:
    """Filter with an FIR by FFT convolution (:func:`musicfx.audio.spectral.fft_convolve`), same length out.

    Args:
        x: audio ``(..., channels, time)``.
        taps: impulse response ``(..., n)``, leading dimensions left-aligned with ``x``'s (``(n,)`` for one
            filter for everything); every channel gets the same filter.
        zero_phase: for a linear-phase (symmetric) FIR: advance the output by its group delay
            ``(n - 1) // 2`` samples so it lines up with the input (exactly zero phase for odd ``n``; half
            a sample late for even ``n``). Otherwise the filter is causal: the first ``time`` samples.

    Returns:
        Filtered audio ``(..., channels, time)``.
    """
    _check_audio(x)
    if taps.dim() < 1 or taps.shape[-1] < 1:
        raise ValueError(f"taps must be shaped (..., n) with n >= 1, got {tuple(taps.shape)}")
    dtype = _dtype(x, taps)
    time, n = x.shape[-1], taps.shape[-1]
    kernel = _lead(taps, x.shape[:-2], "taps", x.device, dtype, trailing=1)[..., None, :]
    full = fft_convolve(x.to(dtype), kernel, mode="full")
    start = (n - 1) // 2 if zero_phase else 0
    return full[..., start : start + time]


# ------------------------------------------------------------------------------------------- compressor
def gain_computer(
    level_db: Tensor, threshold_db: FloatOrTensor, ratio: FloatOrTensor, knee_db: FloatOrTensor = 6.0
) -> Tensor:
    """Static gain curve of a downward compressor with a quadratic soft knee (Giannoulis et al., 2012).

    Below ``threshold - knee/2`` the gain is 0 dB; above ``threshold + knee/2`` the output level is
    ``threshold + (level - threshold) / ratio``, i.e. the gain is ``-(level - threshold)(1 - 1/ratio)``;
    in between a quadratic joins the two with matching slopes. ``knee_db = 0`` is a hard knee.

    Args:
        level_db: detector level in dB, any shape.
        threshold_db, ratio (>= 1), knee_db (>= 0): floats or tensors broadcastable to ``level_db``.

    Returns:
        Gain in dB (<= 0), the shape of ``level_db``.
    """
    over = level_db - threshold_db
    slope = 1.0 / torch.as_tensor(ratio, dtype=level_db.dtype, device=level_db.device) - 1.0
    knee = torch.as_tensor(knee_db, dtype=level_db.dtype, device=level_db.device)
    # Branch-free: u runs from 0 to the knee width across the knee, so u^2 / (2 knee) is the quadratic
    # there and knee / 2 above it, where the linear part takes over; one pass instead of three selects.
    half = 0.5 * knee
    u = torch.minimum((over + half).clamp_min(0.0), knee)
    return slope * (u.square() / (2.0 * knee.clamp_min(1e-6)) + (over - half).clamp_min(0.0))


def _pole(time_ms: Tensor, sample_rate: int) -> Tuple[Tensor, Tensor]:
    """One-pole coefficient ``a = exp(-1 / (tau fs))`` and ``1 - a`` (computed without cancellation)."""
    exponent = -1000.0 / (time_ms.clamp_min(1e-3) * sample_rate)
    return torch.exp(exponent), -torch.expm1(exponent)


def _decay_samples(time_ms: FloatOrTensor, sample_rate: int) -> int:
    """Samples for a one-pole response with the largest of these time constants to decay to tolerance."""
    samples = _LN_TOLERANCE * _max_float(time_ms) * 1e-3 * sample_rate
    return min(int(_MAX_PAD_SECONDS * sample_rate), int(math.ceil(samples)) + 2)


def _one_pole(x: Tensor, time_ms: Tensor, sample_rate: int, pad: int) -> Tensor:
    """``y[n] = a y[n-1] + (1 - a) x[n]`` (zero initial state) by frequency sampling.

    Args:
        x: ``(..., time)``.
        time_ms: time constant(s) broadcastable to ``(..., 1)``.
        pad: zero padding against circular wrap-around (see :func:`_decay_samples`).
    """
    a, one_minus_a = _pole(time_ms, sample_rate)
    n_fft = next_fast_len(x.shape[-1] + pad)
    half, sine = _grid(n_fft, x.device, x.dtype)
    # 1 - a e^{-jw} = (1 - a) + 2 a sin^2(w/2) + j a sin(w), exact near DC even when a is close to 1.
    response = one_minus_a / torch.complex(one_minus_a + 2.0 * a * half, a * sine)
    return _filter_by_response(x, n_fft, response)


def _release_envelope(reduction_db: Tensor, release_ms: Tensor, sample_rate: int) -> Tensor:
    """``e[n] = max(r[n], a_r e[n-1])``: instant attack, exponential release, computed without a loop.

    Unrolled, ``e[n] = max_{m <= n} r[m] a_r^(n - m)``; in logarithms that is
    ``n log a_r + cummax_m(log r[m] - m log a_r)``. The offsets ``m / tau`` grow with the signal's length:
    while they stay below ``_FLOAT32_OFFSET_LIMIT`` float32 keeps the envelope to 1e-4 relative, beyond that
    (long files, short releases) the offsets and the running maximum are float64.
    """
    time = reduction_db.shape[-1]
    largest_offset = time * 1000.0 / (max(_min_float(release_ms), 1e-3) * sample_rate)
    work = torch.float64 if largest_offset > _FLOAT32_OFFSET_LIMIT else reduction_db.dtype
    log_a = (-1000.0 / (release_ms.clamp_min(1e-3) * sample_rate)).to(work)
    offset = torch.arange(time, device=reduction_db.device, dtype=work) * log_a
    log_r = torch.log(reduction_db.clamp_min(_MIN_REDUCTION_DB)).to(work)
    peak = torch.cummax(log_r - offset, dim=-1).values
    # The log envelope is bounded again once the offsets are added back: the exponential needs no float64.
    envelope = torch.exp((peak + offset).to(reduction_db.dtype))
    # Subtracting the floor makes "no reduction" exactly 0 dB rather than -1e-6 dB.
    return (envelope - _MIN_REDUCTION_DB).clamp_min(0.0)


def compressor_gain_db(
    x: Tensor,
    sample_rate: int,
    threshold_db: FloatOrTensor,
    ratio: FloatOrTensor,
    attack_ms: FloatOrTensor = 10.0,
    release_ms: FloatOrTensor = 100.0,
    knee_db: FloatOrTensor = 6.0,
    detector: str = "rms",
    rms_ms: float = 10.0,
) -> Tensor:
    """The time-varying gain (dB, before make-up) of :func:`compressor`.

    Signal chain, all batched:

    1. **Detector**, linked across channels: ``"rms"`` smooths the mean over channels of ``x^2`` with a
       one-pole of time constant ``rms_ms`` and takes ``10 log10``; ``"peak"`` takes ``20 log10`` of the
       maximum over channels of ``|x|``.
    2. **Gain computer** in dB: :func:`gain_computer`, giving a target gain reduction ``r[n] >= 0``.
    3. **Ballistics** on ``r`` (a "smooth decoupled" detector in the log domain, after Giannoulis, Massberg
       & Reiss, JAES 2012): a peak hold with exponential release ``e[n] = max(r[n], a_r e[n-1])``, then a
       one-pole attack smoother ``y[n] = a_a y[n-1] + (1 - a_a) e[n]``. The first stage is a ``cummax``
       (see :func:`_release_envelope`), the second a linear filter applied by FFT: no sample loop.

    What this approximates. The textbook branching follower switches one one-pole between the attack and
    release coefficients: ``y[n] = a y[n-1] + (1 - a) r[n]`` with ``a = a_a`` when ``r[n] > y[n-1]`` and
    ``a_r`` otherwise. On a step up both rise identically, with the attack time constant; on a step down to
    no reduction both fall with the release time constant, here smoothed by the attack filter as well
    (lagging by about the attack time: at most 0.6 dB apart for a 12 dB step, 5 ms attack, 100 ms release).
    They differ in what they release *toward*: here the hold decays toward 0 and is cut off by the current
    target, ``max(r, a_r e)``, where the branching follower decays toward the target, ``r + (e - r) a_r``.
    Two consequences: releasing to a non-zero reduction goes faster here, and a fluctuating target (a
    waveform's peaks, a modulated RMS level) is held at its peaks rather than averaged. On 200 Hz tone
    bursts 10-30 dB over the threshold the two reductions differ by 0.1-2 dB on average (peaks of 3-6 dB
    in the release phase), this one compressing more.

    Time constants are one-pole time constants: a step reaches ``1 - 1/e`` (63 %) of its final value after
    ``attack_ms`` (the release falls to ``1/e``, i.e. by 8.7 dB in relative terms, after ``release_ms``).

    Args:
        x: audio ``(..., channels, time)``.
        sample_rate: Hz.
        threshold_db: threshold in dBFS (level as measured by the detector: the RMS level for ``"rms"``, so
            a full-scale sine reads -3.01 dB; the peak level for ``"peak"``).
        ratio: compression ratio (>= 1).
        attack_ms, release_ms: time constants in milliseconds.
        knee_db: width of the soft knee (0 for a hard knee).
        detector: ``"rms"`` or ``"peak"``.
        rms_ms: averaging time constant of the RMS detector.
        (All level/time parameters: floats or tensors over the leading dimensions, left-aligned.)

    Returns:
        Gain in dB (<= 0), ``(..., time)``, the same for every channel.
    """
    _check_audio(x)
    if detector not in ("rms", "peak"):
        raise ValueError(f"detector must be 'rms' or 'peak', got {detector!r}")
    dtype = _dtype(x, threshold_db, ratio, attack_ms, release_ms, knee_db)
    lead, device = x.shape[:-2], x.device

    def param(value: FloatOrTensor, name: str) -> Tensor:
        return _lead(value, lead, name, device, dtype)[..., None]  # (..., 1) against (..., time)

    with torch.autocast(device_type=device.type, enabled=False):
        x = x.to(dtype)
        if detector == "rms":
            power = x.square().mean(dim=-2)
            rms_tau = torch.tensor(float(rms_ms), device=device, dtype=dtype)
            power = _one_pole(power, rms_tau, sample_rate, _decay_samples(rms_ms, sample_rate))
            level = power_to_db(power.clamp_min(0.0), eps=1e-16)
        else:
            level = 20.0 * torch.log10(x.abs().amax(dim=-2).clamp_min(1e-8))
        reduction = -gain_computer(level, param(threshold_db, "threshold_db"), param(ratio, "ratio"),
                                   param(knee_db, "knee_db"))
        envelope = _release_envelope(reduction, param(release_ms, "release_ms"), sample_rate)
        smoothed = _one_pole(envelope, param(attack_ms, "attack_ms"), sample_rate,
                             _decay_samples(attack_ms, sample_rate))
        return -smoothed


def compressor(
    x: Tensor,
    sample_rate: int,
    threshold_db: FloatOrTensor,
    ratio: FloatOrTensor,
    attack_ms: FloatOrTensor = 10.0,
    release_ms: FloatOrTensor = 100.0,
    knee_db: FloatOrTensor = 6.0,
    makeup_db: FloatOrTensor = 0.0,
    detector: str = "rms",
    rms_ms: float = 10.0,
) -> Tensor:
    """Feed-forward, stereo-linked downward compressor with soft knee and attack/release ballistics.

    A steady signal whose detector level ``L`` lies above ``threshold + knee/2`` comes out
    ``(L - threshold)(1 - 1/ratio)`` dB quieter (plus ``makeup_db``). See :func:`compressor_gain_db` for
    the detector, the gain computer and the ballistics (and how they approximate a branching envelope
    follower).

    Args:
        x: audio ``(..., channels, time)``.
        sample_rate: Hz.
        threshold_db, ratio, attack_ms, release_ms, knee_db, detector, rms_ms: see
            :func:`compressor_gain_db`.
        makeup_db: gain added after compression, dB.

    Returns:
        Compressed audio ``(..., channels, time)``; every channel gets the same gain.
    """
    gain_db = compressor_gain_db(
        x, sample_rate, threshold_db, ratio, attack_ms, release_ms, knee_db, detector=detector, rms_ms=rms_ms
    )
    dtype = gain_db.dtype
    with torch.autocast(device_type=x.device.type, enabled=False):
        makeup = _lead(makeup_db, x.shape[:-2], "makeup_db", x.device, dtype)[..., None]
        # exp rather than pow(10, .): the same value, a cheaper kernel over every sample
        return x.to(dtype) * torch.exp((gain_db + makeup) * (math.log(10.0) / 20.0))[..., None, :]


# ------------------------------------------------------------------------------------------------ reverb
def fft_reverb(x: Tensor, ir: Tensor, wet: FloatOrTensor = 0.3) -> Tensor:
    """Convolution reverb by FFT, with a linear dry/wet mix: ``(1 - wet) x + wet (x * ir)``.

    Use a wet-only response (no direct impulse), e.g.
    ``musicfx.synth.rooms.synthetic_rir(seeds, rt60, sample_rate, length, channels, direct=False)``,
    whose unit energy keeps the reverberant signal about as loud as the dry one.

    Args:
        x: audio ``(..., channels, time)``.
        ir: impulse responses ``(..., ir_channels, L)``, leading dimensions left-aligned with ``x``'s;
            ``ir_channels`` is 1 (the same response for every channel) or ``channels`` (one per channel,
            e.g. decorrelated left/right responses for a stereo reverb).
        wet: wet proportion in ``[0, 1]``, float or tensor over the leading dimensions.

    Returns:
        ``(..., channels, time)``: the reverb tail past the end of ``x`` is cut (the "same" length).
    """
    _check_audio(x)
    _check_audio(ir, "ir")
    if ir.shape[-2] not in (1, x.shape[-2]):
        raise ValueError(f"ir has {ir.shape[-2]} channels; audio with {x.shape[-2]} needs 1 or {x.shape[-2]}")
    dtype = _dtype(x, ir, wet)
    lead = x.shape[:-2]
    with torch.autocast(device_type=x.device.type, enabled=False):
        kernel = _lead(ir, lead, "ir", x.device, dtype, trailing=2)
        mix = _lead(wet, lead, "wet", x.device, dtype)[..., None, None]
        x = x.to(dtype)
        return (1.0 - mix) * x + mix * fft_convolve(x, kernel, mode="same")
