"""Short-time Fourier transforms and decibel helpers on ``torch.stft``.

Every function takes any number of leading dimensions, ``(..., time)`` in and ``(..., freq, frames)``
out, so the same call serves a ``(channels, time)`` file and a ``(batch, stems, channels, time)``
batch. Spectra are always computed in at least float32: half-precision FFTs are only defined for
power-of-two sizes on CUDA and lose too much precision for masks and losses, so under autocast the
input is upcast rather than rejected.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

#: Windows already built, keyed by (length, device, dtype); creating one per call costs a kernel launch
#: and an allocation on GPU for every batch.
_WINDOWS: Dict[Tuple[int, torch.device, torch.dtype], torch.Tensor] = {}
_MAX_CACHED_WINDOWS = 64


def hann_window(length: int, device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A periodic Hann window, cached per ``(length, device, dtype)``.

    Periodic (not symmetric) so that hops of ``length / 2`` and ``length / 4`` overlap-add to a constant,
    which is what makes :func:`istft` invert :func:`stft` exactly.

    Args:
        length: window length in samples.
        device: where the window lives (default: CPU).
        dtype: a real floating dtype.

    Returns:
        Tensor ``(length,)``. Shared between callers: do not modify it in place.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (int(length), device, dtype)
    window = _WINDOWS.get(key)
    if window is None:
        if len(_WINDOWS) >= _MAX_CACHED_WINDOWS:
            _WINDOWS.clear()
        window = torch.hann_window(int(length), periodic=True, device=device, dtype=dtype)
        _WINDOWS[key] = window
    return window


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype a transform runs in: float64 stays, everything else becomes float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _resolve_window(
    window: Optional[torch.Tensor], n_fft: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    if window is None:
        return hann_window(n_fft, device, dtype)
    if window.dim() != 1 or window.shape[0] > n_fft:
        raise ValueError(f"window must be 1-D with at most n_fft={n_fft} samples, got shape {tuple(window.shape)}")
    return window.to(device=device, dtype=dtype)


def _framing(n_fft: int, hop_length: int, window: torch.Tensor, center: bool, normalized: bool) -> Dict[str, Any]:
    """The keyword arguments ``torch.stft`` and ``torch.istft`` share (one-sided spectra)."""
    return dict(n_fft=n_fft, hop_length=hop_length, win_length=window.shape[0], window=window, center=center,
                normalized=normalized, onesided=True)


def stft(
    x: torch.Tensor,
    n_fft: int,
    hop_length: int,
    window: Optional[torch.Tensor] = None,
    center: bool = True,
    pad_mode: str = "reflect",
    normalized: bool = False,
) -> torch.Tensor:
    """Complex one-sided STFT of a real signal.

    Args:
        x: real signal ``(..., time)``; half precision is computed in float32.
        n_fft: FFT size; the window is ``n_fft`` long unless ``window`` is given.
        hop_length: frame step in samples.
        window: optional real window ``(win_length,)`` with ``win_length <= n_fft`` (centred in the
            frame by ``torch.stft``); default: a periodic Hann window of ``n_fft`` samples.
        center: pad ``n_fft // 2`` samples on both sides so frame ``t`` is centred on sample
            ``t * hop_length``.
        pad_mode: padding used when ``center``; ``"reflect"`` falls back to ``"constant"`` (zeros) for
            signals too short to reflect (``time <= n_fft // 2``).
        normalized: scale by ``1 / sqrt(n_fft)`` (``torch.stft``'s ``normalized``).

    Returns:
        Complex tensor ``(..., n_fft // 2 + 1, frames)`` (complex64, or complex128 for float64 input),
        with ``frames = 1 + time // hop_length`` when ``center``.
    """
    if x.is_complex():
        raise ValueError("stft expects a real signal, got a complex tensor")
    if x.dim() == 0:
        raise ValueError("stft expects a tensor shaped (..., time), got a scalar")
    dtype = _compute_dtype(x.dtype)
    lead, time = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, time).to(dtype)
    if center and pad_mode == "reflect" and time <= n_fft // 2:
        pad_mode = "constant"  # reflection needs more samples than the padding it creates
    win = _resolve_window(window, n_fft, x.device, dtype)
    # Autocast would otherwise be free to run the FFT in half precision.
    with torch.autocast(device_type=x.device.type, enabled=False):
        spec = torch.stft(flat, pad_mode=pad_mode, return_complex=True,
                          **_framing(n_fft, hop_length, win, center, normalized))
    return spec.reshape(*lead, spec.shape[-2], spec.shape[-1])


def istft(
    X: torch.Tensor,
    n_fft: int,
    hop_length: int,
    length: int,
    window: Optional[torch.Tensor] = None,
    center: bool = True,
    normalized: bool = False,
) -> torch.Tensor:
    """Inverse of :func:`stft` by windowed overlap-add.

    Args:
        X: complex one-sided spectrum ``(..., n_fft // 2 + 1, frames)``.
        n_fft: FFT size used by the forward transform.
        hop_length: frame step used by the forward transform.
        length: number of output samples (the forward input's length), so no sample is lost or padded.
        window: the window used by the forward transform (default: periodic Hann of ``n_fft``).
        center: as in the forward transform.
        normalized: as in the forward transform.

    Returns:
        Real tensor ``(..., length)`` (float32, or float64 for complex128 input).
    """
    if not X.is_complex():
        raise ValueError("istft expects a complex spectrum shaped (..., freq, frames)")
    if X.dim() < 2:
        raise ValueError(f"istft expects (..., freq, frames), got shape {tuple(X.shape)}")
    if X.shape[-2] != n_fft // 2 + 1:
        raise ValueError(f"spectrum has {X.shape[-2]} bins; n_fft={n_fft} needs {n_fft // 2 + 1}")
    real_dtype = torch.float64 if X.dtype == torch.complex128 else torch.float32
    complex_dtype = torch.complex128 if real_dtype == torch.float64 else torch.complex64
    lead = X.shape[:-2]
    flat = X.reshape(-1, X.shape[-2], X.shape[-1]).to(complex_dtype)
    win = _resolve_window(window, n_fft, X.device, real_dtype)
    with torch.autocast(device_type=X.device.type, enabled=False):
        y = torch.istft(flat, length=int(length), **_framing(n_fft, hop_length, win, center, normalized))
    return y.reshape(*lead, y.shape[-1])


def magnitude(X: torch.Tensor, power: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """``|X| ** power`` of a complex spectrum, with a finite gradient at zero.

    Args:
        X: complex tensor of any shape.
        power: 1 for magnitude, 2 for power.
        eps: floor on ``|X|^2`` before the power is taken; ``torch.abs`` has an undefined gradient at
            ``0`` and ``sqrt`` an infinite one, which turns silent bins into NaN gradients.

    Returns:
        Real tensor with the shape of ``X``.
    """
    if not X.is_complex():
        raise ValueError("magnitude expects a complex spectrum")
    energy = X.real.square() + X.imag.square()
    if power == 2.0:
        return energy
    return energy.clamp_min(eps).pow(power / 2.0)


def spectrogram(
    x: torch.Tensor,
    n_fft: int,
    hop_length: int,
    power: float = 1.0,
    window: Optional[torch.Tensor] = None,
    center: bool = True,
) -> torch.Tensor:
    """``magnitude(stft(x)) ** power``.

    Args:
        x: real signal ``(..., time)``.
        n_fft, hop_length, window, center: as in :func:`stft`.
        power: 1 for magnitude, 2 for power.

    Returns:
        Real tensor ``(..., n_fft // 2 + 1, frames)``.
    """
    return magnitude(stft(x, n_fft, hop_length, window=window, center=center), power=power)


def fft_frequencies(n_fft: int, sample_rate: int) -> torch.Tensor:
    """Centre frequency in Hz of every bin of a one-sided ``n_fft`` spectrum, shape ``(n_fft // 2 + 1,)``."""
    return torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)


def frame_times(frames: int, hop_length: int, sample_rate: int) -> torch.Tensor:
    """Time in seconds of the centre of every frame of a centred STFT, shape ``(frames,)``."""
    return torch.arange(frames, dtype=torch.float64).mul(hop_length / sample_rate).float()


def amplitude_to_db(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``20 log10 |x|``, floored at ``20 log10 eps`` (-160 dB by default) so silence stays finite."""
    return 20.0 * torch.log10(x.abs().clamp_min(eps))


def power_to_db(x: torch.Tensor, eps: float = 1e-16) -> torch.Tensor:
    """``10 log10 x`` of a non-negative power, floored at ``10 log10 eps`` (-160 dB by default)."""
    return 10.0 * torch.log10(x.clamp_min(eps))


def db_to_amplitude(db: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`amplitude_to_db`: ``10 ** (db / 20)``."""
    return torch.pow(10.0, db / 20.0)


def db_to_power(db: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`power_to_db`: ``10 ** (db / 10)``."""
    return torch.pow(10.0, db / 10.0)


class _Transform(nn.Module):
    """What :class:`STFT` and :class:`ISTFT` share: the frame parameters and the window buffer."""

    window: torch.Tensor

    def __init__(
        self, n_fft: int = 2048, hop_length: Optional[int] = None, center: bool = True, normalized: bool = False
    ) -> None:
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length) if hop_length is not None else self.n_fft // 4
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"hop_length must be in [1, n_fft={self.n_fft}], got {self.hop_length}")
        self.center = center
        self.normalized = normalized
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, hop_length={self.hop_length}, center={self.center}"
                + (", normalized=True" if self.normalized else ""))


class STFT(_Transform):
    """:func:`stft` as a module: the spectral front end of every spectrogram model. Its periodic Hann window
    is a non-persistent buffer, so ``.to(device)`` moves it and checkpoints do not store it.

    Args:
        n_fft: FFT size.
        hop_length: frame step (default ``n_fft // 4``).
        center: see :func:`stft`.
        normalized: see :func:`stft`.
        pad_mode: see :func:`stft`; ``"constant"`` (zeros) makes any input length valid.

    Shapes:
        ``(..., time)`` -> complex ``(..., n_fft // 2 + 1, frames)``.
    """

    def __init__(
        self,
        n_fft: int = 2048,
        hop_length: Optional[int] = None,
        center: bool = True,
        normalized: bool = False,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__(n_fft, hop_length, center, normalized)
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stft(x, self.n_fft, self.hop_length, window=self.window, center=self.center, pad_mode=self.pad_mode,
                    normalized=self.normalized)

    def num_frames(self, length: int) -> int:
        """Frames produced for ``length`` input samples."""
        if self.center:
            return 1 + length // self.hop_length
        return 1 + (length - self.n_fft) // self.hop_length

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", pad_mode={self.pad_mode!r}" if self.pad_mode != "reflect" else "")


class ISTFT(_Transform):
    """:func:`istft` as a module, the inverse of :class:`STFT` with the same ``n_fft``, ``hop_length``,
    ``center`` and ``normalized``.

    Shapes:
        complex ``(..., n_fft // 2 + 1, frames)`` and ``length`` -> ``(..., length)``.
    """

    def forward(self, X: torch.Tensor, length: int) -> torch.Tensor:
        return istft(X, self.n_fft, self.hop_length, length, window=self.window, center=self.center,
                     normalized=self.normalized)


def next_fast_len(n: int) -> int:
    """Smallest ``m >= n`` whose only prime factors are 2, 3 and 5, a size every FFT backend is fast at."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < n:
                candidate <<= 1
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


#: FFT size of one block when a long signal is convolved with a short kernel (see :func:`fft_convolve`).
CONVOLVE_BLOCK_FFT = 1 << 14


def fft_convolve(x: torch.Tensor, kernel: torch.Tensor, mode: str = "full") -> torch.Tensor:
    """Linear convolution along the last axis by FFT, batched and differentiable in both arguments.

    The one convolution everything uses: room and reverb impulse responses, FIR equalisers, bleed paths.
    A signal many times longer than the kernel is convolved by overlap-add of cache-sized FFT blocks
    (:data:`CONVOLVE_BLOCK_FFT` points, or twice the kernel): one FFT of millions of points over a whole
    30-60 s signal is ~15x slower on a CPU, and the result is the same to float precision.

    Args:
        x: signal ``(..., time)``.
        kernel: impulse response ``(..., taps)``, broadcastable against ``x`` in the leading dimensions.
        mode: ``"full"`` (``time + taps - 1`` samples) or ``"same"`` (the first ``time`` samples, i.e. a
            causal filter keeping the input's length).

    Returns:
        ``(..., time + taps - 1)`` or ``(..., time)``; float32 (float64 when either input is float64).
    """
    if mode not in ("full", "same"):
        raise ValueError(f"mode must be 'full' or 'same', got {mode!r}")
    time, taps = x.shape[-1], kernel.shape[-1]
    full = time + taps - 1
    dtype = torch.float64 if torch.float64 in (x.dtype, kernel.dtype) else torch.float32
    block_fft = max(CONVOLVE_BLOCK_FFT, next_fast_len(2 * taps))
    with torch.autocast(device_type=x.device.type, enabled=False):
        if time >= 8 * block_fft:
            out = _block_convolve(x.to(dtype), kernel.to(dtype), block_fft)
        else:
            n_fft = next_fast_len(full)
            spectrum = torch.fft.rfft(x.to(dtype), n=n_fft, dim=-1) * torch.fft.rfft(kernel.to(dtype), n=n_fft, dim=-1)
            out = torch.fft.irfft(spectrum, n=n_fft, dim=-1)
    return out[..., : full if mode == "full" else time]


def _block_convolve(x: torch.Tensor, kernel: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Full linear convolution by overlap-add of ``n_fft``-point blocks; ``(..., >= time + taps - 1)``."""
    time, taps = x.shape[-1], kernel.shape[-1]
    step = n_fft - taps + 1
    blocks = torch.nn.functional.pad(x, (0, -time % step)).unfold(-1, step, step)  # (..., B, step)
    spectrum = torch.fft.rfft(blocks, n=n_fft) * torch.fft.rfft(kernel, n=n_fft).unsqueeze(-2)
    filtered = torch.fft.irfft(spectrum, n=n_fft)  # (..., B, n_fft): each block's full convolution
    lead, count = filtered.shape[:-2], filtered.shape[-2]
    length = (count - 1) * step + n_fft
    # Each block's tail adds onto the next blocks: one fold does every overlap-add.
    summed = torch.nn.functional.fold(filtered.reshape(-1, count, n_fft).transpose(1, 2), output_size=(1, length),
                                      kernel_size=(1, n_fft), stride=(1, step))
    return summed.reshape(*lead, length)
