"""A random mixing console, as augmentation synthesized on the device: :class:`RandomConsole`.

It plays the role pymixconsole plays in FxNorm-automix and similar work (a random chain of channel-strip
effects per stem), rebuilt on :mod:`musicfx.audio.fx` so that a whole batch goes through in a handful of
batched ops on any device. As with :class:`~musicfx.synth.noise.NoiseSynth`, each example's settings are
drawn on the CPU by :meth:`RandomConsole.draw` (in the DataLoader worker, from that example's own
``torch.Generator``) and collated into ``(B, S)`` / ``(B, S, K)`` tensors; :meth:`RandomConsole.forward`
renders them. The reverb's impulse responses come from :func:`musicfx.synth.rooms.synthetic_rir`, seeded
per stem from the example's seed, so an example's output depends only on its parameters and seed, never on
the rest of the batch.

Channel strip, per stem, in order: gain, K-band parametric EQ (low shelf, peaks, high shelf), compressor
(on a random subset of stems), pan (mono stems are panned, stereo stems balanced, see
:func:`musicfx.audio.fx.pan`), reverb (on a random subset), left/right swap, dropout.

**Stem dropout** silences a stem in the console's output. It is meant to apply to the *target* as well:
the automix task feeds the console's (normalised) stems to the model and asks for the original mix, and a
target that still contains a stem the model never heard cannot be learned. So the task must build its
target from ``RandomConsole.apply_dropout(original_stems, params)``; the point of dropout is then to teach
the model to mix any subset of the stems (sessions without vocals, without drums, ...). At least one stem
of every example is kept.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Tuple

import torch
from torch import Tensor

from musicfx.audio import fx
from musicfx.synth.rooms import synthetic_rir
from musicfx.rng import derive_seeds

__all__ = ["RandomConsole", "eq_band_layout"]

Range = Tuple[float, float]

# Frequency ranges (Hz) the EQ bands are drawn from, log-uniformly: the shelves at the ends of the
# spectrum, the peaks splitting the range between them into equal log-width slots.
_LOW_SHELF_HZ: Range = (60.0, 300.0)
_HIGH_SHELF_HZ: Range = (3000.0, 12000.0)
_PEAKS_HZ: Range = (200.0, 5000.0)
# 1/sqrt(2) is the steepest shelf without overshoot in its response.
_SHELF_Q = 1.0 / math.sqrt(2.0)
# Salt of the per-stem reverb seeds (plus the stem index).
_SALT_REVERB = 7001


def eq_band_layout(bands: int, sample_rate: int) -> Tuple[List[str], List[Range]]:
    """Kinds and frequency ranges of a K-band console EQ.

    One band is a peak over the mid range; two are a low and a high shelf; more add peaks in between,
    each in its own slot of equal log width. Ranges are kept below 45 % of the sample rate.

    Args:
        bands: K >= 0.
        sample_rate: Hz.

    Returns:
        ``(kinds, ranges)``: K names from :data:`musicfx.audio.fx.BIQUAD_KINDS` and K ``(low, high)`` Hz.
    """
    if bands < 0:
        raise ValueError(f"eq_bands must be >= 0, got {bands}")
    nyquist_cap = 0.45 * sample_rate

    def capped(r: Range) -> Range:
        return (min(r[0], nyquist_cap), min(r[1], nyquist_cap))

    if bands == 0:
        return [], []
    if bands == 1:
        return ["peak"], [capped(_PEAKS_HZ)]
    peaks = bands - 2
    edges = torch.logspace(math.log10(_PEAKS_HZ[0]), math.log10(_PEAKS_HZ[1]), peaks + 1, dtype=torch.float64)
    kinds = ["lowshelf"] + ["peak"] * peaks + ["highshelf"]
    ranges = [capped(_LOW_SHELF_HZ)]
    ranges += [capped((float(edges[i]), float(edges[i + 1]))) for i in range(peaks)]
    ranges.append(capped(_HIGH_SHELF_HZ))
    return kinds, ranges


def _check_range(name: str, bounds: Range, low: float = -math.inf, positive: bool = False) -> Range:
    a, b = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(a) and math.isfinite(b) and a <= b and a >= low and (a > 0 or not positive)):
        need = " and positive" if positive else (f" and >= {low}" if math.isfinite(low) else "")
        raise ValueError(f"{name} must be a finite (low, high) pair with low <= high{need}, got {bounds}")
    return a, b


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


def _uniform(u: Tensor, bounds: Range) -> Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _log_uniform(u: Tensor, bounds: Range) -> Tensor:
    return torch.exp(math.log(bounds[0]) + (math.log(bounds[1]) - math.log(bounds[0])) * u)


class RandomConsole(torch.nn.Module):
    """Random per-stem channel strips, batched on the device (no learned parameters).

    Args:
        num_stems: S, stems per example.
        sample_rate: Hz.
        gain_db: range of the uniform stem gain, dB.
        pan: range of the uniform pan position (-1 left .. 1 right).
        eq_bands: K, bands of the EQ (see :func:`eq_band_layout`); 0 for none.
        eq_gain_db: range of the uniform band gains, dB.
        compressor_prob: chance that a stem is compressed.
        threshold_db: range of the uniform compressor threshold (RMS detector), dBFS.
        ratio: range of the uniform compression ratio.
        reverb_prob: chance that a stem gets reverb.
        rt60: range of the uniform reverberation time, seconds; the impulse responses are
            ``rt60[1]`` seconds long (the slowest decays by 60 dB).
        wet: range of the uniform wet proportion of the reverb.
        channel_swap: chance that a stem's left and right are swapped at the end.
        stem_dropout: chance that a stem is silenced (see the module docstring for the target).
        eq_q: range of the log-uniform Q of the peak bands (shelves use ``1/sqrt(2)``).
        attack_ms: range of the log-uniform compressor attack, ms.
        release_ms: range of the log-uniform compressor release, ms.
        knee_db: compressor knee width, dB.

    Speed: a batch of 16 examples of 4 stereo 10 s stems at 44.1 kHz (default settings) costs about
    5.5 CPU-seconds on one core of the development machine, about 3 examples per second per core
    (compressor 2.6 s, EQ 1.5 s, reverb 1.1 s, the rest under 1 s).
    """

    #: Keys of :meth:`draw`'s parameters, which :meth:`forward` reads from a batch.
    param_keys: Tuple[str, ...] = (
        "gain_db", "pan", "eq_freq_hz", "eq_gain_db", "eq_q", "compress", "threshold_db", "ratio", "attack_ms",
        "release_ms", "reverb", "rt60", "wet", "swap", "keep",
    )

    def __init__(
        self,
        num_stems: int = 4,
        sample_rate: int = 44100,
        gain_db: Range = (-6.0, 6.0),
        pan: Range = (-0.6, 0.6),
        eq_bands: int = 3,
        eq_gain_db: Range = (-6.0, 6.0),
        compressor_prob: float = 0.5,
        threshold_db: Range = (-30.0, -10.0),
        ratio: Range = (1.5, 6.0),
        reverb_prob: float = 0.3,
        rt60: Range = (0.2, 1.2),
        wet: Range = (0.05, 0.3),
        channel_swap: float = 0.5,
        stem_dropout: float = 0.1,
        eq_q: Range = (0.5, 2.0),
        attack_ms: Range = (1.0, 30.0),
        release_ms: Range = (30.0, 300.0),
        knee_db: float = 6.0,
    ) -> None:
        super().__init__()
        if num_stems < 1:
            raise ValueError(f"num_stems must be >= 1, got {num_stems}")
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.num_stems = int(num_stems)
        self.sample_rate = int(sample_rate)
        self.gain_db = _check_range("gain_db", gain_db)
        self.pan = _check_range("pan", pan, low=-1.0)
        if self.pan[1] > 1.0:
            raise ValueError(f"pan must lie in [-1, 1], got {pan}")
        self.eq_kinds, self.eq_ranges = eq_band_layout(int(eq_bands), self.sample_rate)
        self.eq_gain_db = _check_range("eq_gain_db", eq_gain_db)
        self.eq_q = _check_range("eq_q", eq_q, positive=True)
        self.compressor_prob = _check_probability("compressor_prob", compressor_prob)
        self.threshold_db = _check_range("threshold_db", threshold_db)
        self.ratio = _check_range("ratio", ratio, low=1.0)
        self.attack_ms = _check_range("attack_ms", attack_ms, positive=True)
        self.release_ms = _check_range("release_ms", release_ms, positive=True)
        self.knee_db = float(knee_db)
        self.reverb_prob = _check_probability("reverb_prob", reverb_prob)
        self.rt60 = _check_range("rt60", rt60, positive=True)
        self.wet = _check_range("wet", wet, low=0.0)
        if self.wet[1] > 1.0:
            raise ValueError(f"wet must lie in [0, 1], got {wet}")
        self.channel_swap = _check_probability("channel_swap", channel_swap)
        self.stem_dropout = _check_probability("stem_dropout", stem_dropout)
        self.ir_length = max(1, int(math.ceil(self.rt60[1] * self.sample_rate)))
        self._eq_pad = self._worst_eq_pad()

    @property
    def eq_bands(self) -> int:
        return len(self.eq_kinds)

    def _worst_eq_pad(self) -> int:
        """EQ padding for the slowest-decaying band the ranges allow (lowest frequency, highest Q, largest
        gain), fixed so that the FFT size never depends on the batch."""
        if not self.eq_kinds:
            return 0
        pads = []
        for kind, (low, _) in zip(self.eq_kinds, self.eq_ranges):
            q = self.eq_q[1] if kind == "peak" else _SHELF_Q
            for gain in self.eq_gain_db:
                pads.append(fx.biquad_decay_samples(kind, low, gain, q, self.sample_rate))
        return max(pads)

    # ------------------------------------------------------------------------------------------ drawing
    def draw(self, generator: torch.Generator) -> Dict[str, Tensor]:
        """One example's console settings, drawn on the CPU.

        Args:
            generator: a CPU generator seeded for this example.

        Returns:
            ``(S,)`` tensors: ``gain_db``, ``pan``, ``threshold_db``, ``ratio``, ``attack_ms``,
            ``release_ms``, ``rt60``, ``wet`` (float32) and ``compress``, ``reverb``, ``swap``, ``keep``
            (bool); ``(S, K)`` float32 tensors ``eq_freq_hz``, ``eq_gain_db``, ``eq_q``. Settings of
            effects a stem does not get (e.g. ``threshold_db`` where ``compress`` is false) are drawn all
            the same, so every example consumes the generator identically.
        """
        stems, bands = self.num_stems, self.eq_bands
        u = torch.rand(stems, 12, generator=generator, dtype=torch.float64)
        band_u = torch.rand(stems, bands, 3, generator=generator, dtype=torch.float64)
        freq = torch.empty(stems, bands, dtype=torch.float64)
        q = torch.full((stems, bands), _SHELF_Q, dtype=torch.float64)
        for k, (kind, bounds) in enumerate(zip(self.eq_kinds, self.eq_ranges)):
            freq[:, k] = _log_uniform(band_u[:, k, 0], bounds)
            if kind == "peak":
                q[:, k] = _log_uniform(band_u[:, k, 2], self.eq_q)
        keep = u[:, 11] >= self.stem_dropout
        if not bool(keep.any()):
            keep[int(torch.argmax(u[:, 11]))] = True  # an empty mix teaches nothing
        f32 = torch.float32
        return {
            "gain_db": _uniform(u[:, 0], self.gain_db).to(f32),
            "pan": _uniform(u[:, 1], self.pan).to(f32),
            "eq_freq_hz": freq.to(f32),
            "eq_gain_db": _uniform(band_u[..., 1], self.eq_gain_db).to(f32),
            "eq_q": q.to(f32),
            "compress": u[:, 2] < self.compressor_prob,
            "threshold_db": _uniform(u[:, 3], self.threshold_db).to(f32),
            "ratio": _uniform(u[:, 4], self.ratio).to(f32),
            "attack_ms": _log_uniform(u[:, 5], self.attack_ms).to(f32),
            "release_ms": _log_uniform(u[:, 6], self.release_ms).to(f32),
            "reverb": u[:, 7] < self.reverb_prob,
            "rt60": _uniform(u[:, 8], self.rt60).to(f32),
            "wet": _uniform(u[:, 9], self.wet).to(f32),
            "swap": u[:, 10] < self.channel_swap,
            "keep": keep,
        }

    # ---------------------------------------------------------------------------------------- rendering
    def _batch_params(self, params: Mapping[str, Tensor], batch: int, device: torch.device) -> Dict[str, Tensor]:
        missing = [key for key in self.param_keys if key not in params]
        if missing:
            raise ValueError(f"console parameters lack {missing}; RandomConsole.draw makes {list(self.param_keys)}")
        out = {key: params[key].to(device) for key in self.param_keys}
        for key, value in out.items():
            expected = (batch, self.num_stems, self.eq_bands) if key.startswith("eq_") else (batch, self.num_stems)
            if tuple(value.shape) != expected:
                raise ValueError(f"params[{key!r}] must have shape {expected}, got {tuple(value.shape)}")
        return out

    def stem_seeds(self, seeds: Tensor) -> Tensor:
        """Per-stem seeds of the reverb responses: ``(B,)`` int64 -> ``(B, S)`` int64."""
        return torch.stack([derive_seeds(seeds, _SALT_REVERB + s) for s in range(self.num_stems)], dim=1)

    def _compress(self, x: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """Compress the kept stems flagged ``compress``: ``(B, S, C, T)`` -> same, only those rows computed."""
        flat = x.reshape(-1, *x.shape[2:])
        rows = (p["compress"].bool() & p["keep"].bool()).reshape(-1).nonzero()[:, 0]
        if rows.numel() == 0:
            return x
        pick = lambda key: p[key].reshape(-1)[rows].float()  # noqa: E731
        squeezed = fx.compressor(
            flat[rows], self.sample_rate, pick("threshold_db"), pick("ratio"), pick("attack_ms"),
            pick("release_ms"), self.knee_db,
        )
        return flat.index_copy(0, rows, squeezed).reshape(x.shape)

    def _reverb(self, x: Tensor, p: Mapping[str, Tensor], seeds: Tensor) -> Tensor:
        """Reverb on the kept stems flagged ``reverb``: ``(B, S, 2, T)`` -> same, only those rows computed."""
        flat = x.reshape(-1, *x.shape[2:])
        rows = (p["reverb"].bool() & p["keep"].bool()).reshape(-1).nonzero()[:, 0]
        if rows.numel() == 0:
            return x
        stem_seeds = self.stem_seeds(seeds).reshape(-1)[rows]
        ir = synthetic_rir(
            stem_seeds, p["rt60"].reshape(-1)[rows].float(), self.sample_rate, self.ir_length,
            channels=x.shape[2], direct=False,
        )
        wet = fx.fft_reverb(flat[rows], ir, p["wet"].reshape(-1)[rows].float())
        return flat.index_copy(0, rows, wet).reshape(x.shape)

    @torch.no_grad()
    def forward(self, stems: Tensor, params: Mapping[str, Tensor], seeds: Tensor) -> Tensor:
        """Run a batch of stems through their random channel strips.

        Args:
            stems: ``(B, S, C, T)`` with C = 1 or 2.
            params: :meth:`draw`'s parameters collated to ``(B, S)`` / ``(B, S, K)``, on any device.
            seeds: ``(B,)`` int64 example seeds (they seed the reverb responses).

        Returns:
            ``(B, S, 2, T)`` processed stereo stems in ``stems``' dtype; dropped stems are zeros.
        """
        if stems.dim() != 4 or stems.shape[1] != self.num_stems or stems.shape[2] not in (1, 2):
            raise ValueError(
                f"stems must be (batch, {self.num_stems}, 1 or 2 channels, time), got {tuple(stems.shape)}"
            )
        batch = stems.shape[0]
        if seeds.shape != (batch,) or seeds.dtype != torch.int64:
            raise ValueError(f"seeds must be ({batch},) int64, got {tuple(seeds.shape)} {seeds.dtype}")
        p = self._batch_params(params, batch, stems.device)
        seeds = seeds.to(stems.device)
        with torch.autocast(device_type=stems.device.type, enabled=False):
            keep = p["keep"].bool()
            # Dropped stems are silenced first (a zero gain), so nothing downstream spends time on them.
            x = fx.gain(stems.float(), p["gain_db"].float()) * keep.float()[..., None, None]
            if self.eq_kinds:
                x = fx.parametric_eq(
                    x, self.sample_rate, p["eq_freq_hz"].float(), p["eq_gain_db"].float(), p["eq_q"].float(),
                    self.eq_kinds, pad=self._eq_pad,
                )
            x = self._compress(x, p)
            x = fx.pan(x, p["pan"].float())
            x = self._reverb(x, p, seeds)
            x = torch.where(p["swap"].bool()[..., None, None], x.flip(-2), x)
        return x.to(stems.dtype)

    def apply_dropout(self, stems: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        """Silence the dropped stems of ``stems`` (e.g. the originals the target mix is built from).

        Args:
            stems: ``(B, S, C, T)``.
            params: the batch's parameters (``keep``, ``(B, S)`` bool, is used).

        Returns:
            ``stems`` with the stems whose ``keep`` is false set to zero.
        """
        keep = params["keep"].to(device=stems.device)
        if keep.shape != stems.shape[:2]:
            raise ValueError(f"params['keep'] {tuple(keep.shape)} does not match stems {tuple(stems.shape[:2])}")
        return stems * keep.to(stems.dtype)[..., None, None]

    def extra_repr(self) -> str:
        return (
            f"num_stems={self.num_stems}, sample_rate={self.sample_rate}, eq={self.eq_kinds}, "
            f"compressor_prob={self.compressor_prob}, reverb_prob={self.reverb_prob}, "
            f"stem_dropout={self.stem_dropout}"
        )
