"""MixingConsole: a network that sets a differentiable mixing console, and the console it sets.

Instead of generating the mix sample by sample (FxNorm-automix's mask network, Wave-U-Net), this model
predicts what an engineer would set on each channel strip, and :mod:`musicfx.audio.fx` applies it: per
stem a gain, a pan position, a K-band EQ (gains of bands at fixed log-spaced frequencies: low shelf,
peaks, high shelf) and a compressor's threshold and ratio. The output is always a sum of processed stems,
so it cannot hallucinate audio, and the settings are readable (``musicfx mix --params`` writes them as JSON
via :meth:`MixingConsole.parameters_to_json`). This goes beyond the seed (which regresses the mix
waveform) in the spirit of differentiable-mixing-console work (Steinmetz et al., ICASSP 2021).

Encoder, per stem: log-mel spectrogram of the mid (and side) signal -> three 1-D convolutions over time
with the mel bands as channels -> mean and max pooling over time -> a stem embedding, plus a learned
embedding of the stem's slot (vocals, bass, ... are different instruments). Cross-stem context: a
transformer encoder over the S stem embeddings, so each stem's settings depend on the others (a mix is
relative). Heads: one linear layer to the raw settings, plus a learned offset per stem slot, bounded into
sane ranges: ``gain_db = max_gain_db * tanh``, ``pan = tanh``, ``eq_gain_db = max_eq_gain_db * tanh``,
``threshold_db`` sigmoid into ``threshold_range``, ``ratio = 1 + (max_ratio - 1) * sigmoid``.

**Neutral initialisation.** The head's weights and the slot offsets start at zero and the head's biases
at the neutral settings: 0 dB gain, centre pan, flat EQ, and a ratio of ``1 + (max_ratio - 1) *
sigmoid(-8)`` (1.003 for the default 10:1 range: under 0.1 dB of gain reduction for any level up to
0 dBFS, no compression to speak of). So the untrained model outputs ``pan(sum of stems, 0)``, the stems summed and centred
(stereo stems 3 dB down, see :func:`musicfx.audio.fx.pan`), whatever its input; training starts from the
plain sum instead of from noise. Zero weights still get gradients (their gradient is the features times
the output's), and the layers below start receiving gradient after the first step.

Precision: the features' STFT and every effect run in float32 (autocast disabled inside); only the
convolutions, the transformer and the heads follow autocast.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from musicfx.audio import fx
from musicfx.audio.spectral import STFT, magnitude, power_to_db
from musicfx.models.blocks import declare_names

__all__ = ["MixingConsole", "mel_filterbank"]

# Fixed EQ band centres span this range (Hz), log-spaced, capped at 40 % of the sample rate.
_EQ_RANGE_HZ = (100.0, 10000.0)
_SHELF_Q = 1.0 / math.sqrt(2.0)
_PEAK_Q = 1.0
# The ratio's raw output at initialisation: sigmoid(-8) = 3.4e-4.
_RATIO_BIAS = -8.0


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: Optional[float] = None
) -> Tensor:
    """Triangular mel filters (HTK mel scale, peak 1) over the bins of a one-sided ``n_fft`` spectrum.

    Args:
        sample_rate: Hz.
        n_fft: FFT size.
        n_mels: number of filters.
        f_min, f_max: lowest and highest edge in Hz (``f_max`` defaults to ``sample_rate / 2``).

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float32; a power spectrogram ``(..., freq, frames)`` maps to mel bands
        by ``filterbank @ spectrogram``.
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}")

    def to_mel(f: Tensor) -> Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def to_hz(m: Tensor) -> Tensor:
        return 700.0 * (torch.pow(10.0, m / 2595.0) - 1.0)

    mel_min, mel_max = float(to_mel(torch.tensor(f_min))), float(to_mel(torch.tensor(f_max)))
    edges = to_hz(torch.linspace(mel_min, mel_max, n_mels + 2, dtype=torch.float64))
    freqs = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - low) / (centre - low)
    falling = (high - freqs) / (high - centre)
    return torch.minimum(rising, falling).clamp_min(0.0).float()


def _eq_layout(bands: int, sample_rate: int) -> Tuple[List[str], List[float], List[float]]:
    """Kinds, centre frequencies and Qs of the fixed EQ bands."""
    if bands < 0:
        raise ValueError(f"eq_bands must be >= 0, got {bands}")
    if bands == 0:
        return [], [], []
    high = min(_EQ_RANGE_HZ[1], 0.4 * sample_rate)
    low = min(_EQ_RANGE_HZ[0], high / 2.0)
    if bands == 1:
        return ["peak"], [math.sqrt(low * high)], [_PEAK_Q]
    freqs = torch.logspace(math.log10(low), math.log10(high), bands, dtype=torch.float64).tolist()
    kinds = ["lowshelf"] + ["peak"] * (bands - 2) + ["highshelf"]
    qs = [_SHELF_Q] + [_PEAK_Q] * (bands - 2) + [_SHELF_Q]
    return kinds, freqs, qs


class MixingConsole(nn.Module):
    """Predict per-stem console settings from the stems and mix them with a differentiable console.

    Args:
        num_stems: S, stems per input (their order is fixed, e.g. vocals, drums, bass, other).
        sample_rate: Hz.
        eq_bands: K fixed EQ bands (low shelf, peaks, high shelf at log-spaced frequencies in 100 Hz-10 kHz).
        hidden: width of the encoder and the stem embeddings.
        n_fft, hop_length, n_mels: the log-mel features.
        context_layers: transformer layers over the stems (0: each stem is set on its own).
        heads: attention heads of the transformer (must divide ``hidden``).
        max_gain_db: bound of the stem gains, dB.
        max_eq_gain_db: bound of the band gains, dB.
        threshold_range: range of the compressor threshold (RMS detector), dBFS.
        max_ratio: largest compression ratio.
        attack_ms, release_ms, knee_db: fixed compressor ballistics and knee.
        stems: what the model declares to the task and the data with ``sample_rate`` (``None``: nothing).

    Shapes:
        ``forward``: stems ``(B, S, C, T)``, C = 1 or 2 -> mix ``(B, 2, T)``.

    Size: 0.41 M parameters by default; mixing one 10 s, 4-stem stereo example at 44.1 kHz took about
    0.35 CPU-seconds on one core of the development machine (1.1 s with the backward pass).
    """

    #: Keys of :meth:`predict_parameters` (the settings the network predicts).
    param_keys: Tuple[str, ...] = ("gain_db", "pan", "eq_freq_hz", "eq_gain_db", "eq_q", "threshold_db", "ratio")

    eq_freq_hz: Tensor
    eq_q: Tensor
    mel: Tensor

    def __init__(
        self,
        num_stems: Optional[int] = None,
        sample_rate: int = 44100,
        eq_bands: int = 4,
        hidden: int = 128,
        n_fft: int = 2048,
        hop_length: int = 512,
        n_mels: int = 64,
        context_layers: int = 1,
        heads: int = 4,
        max_gain_db: float = 24.0,
        max_eq_gain_db: float = 12.0,
        threshold_range: Tuple[float, float] = (-40.0, 0.0),
        max_ratio: float = 10.0,
        attack_ms: float = 10.0,
        release_ms: float = 100.0,
        knee_db: float = 6.0,
        stems: Optional[Sequence[str]] = None,
    ) -> None:
        super().__init__()
        declare_names(self, "stems", stems, num_stems, int(sample_rate))
        if hidden < 1 or n_mels < 1:
            raise ValueError(f"hidden and n_mels must be >= 1, got {hidden}, {n_mels}")
        if max_ratio < 1.0 or threshold_range[0] >= threshold_range[1]:
            raise ValueError(f"need max_ratio >= 1 and threshold_range low < high, got {max_ratio}, {threshold_range}")
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.max_gain_db, self.max_eq_gain_db = float(max_gain_db), float(max_eq_gain_db)
        self.threshold_range = (float(threshold_range[0]), float(threshold_range[1]))
        self.max_ratio = float(max_ratio)
        self.attack_ms, self.release_ms, self.knee_db = float(attack_ms), float(release_ms), float(knee_db)
        kinds, freqs, qs = _eq_layout(int(eq_bands), self.sample_rate)
        self.eq_kinds = kinds
        self.register_buffer("eq_freq_hz", torch.tensor(freqs, dtype=torch.float32), persistent=False)
        self.register_buffer("eq_q", torch.tensor(qs, dtype=torch.float32), persistent=False)
        self.register_buffer("mel", mel_filterbank(self.sample_rate, self.n_fft, n_mels, f_min=20.0), persistent=False)
        self.stft = STFT(self.n_fft, self.hop_length)

        self.encoder = nn.Sequential(
            nn.Conv1d(2 * n_mels, hidden, 5, padding=2),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, 5, stride=2, padding=2),
            nn.GELU(),
        )
        self.pool = nn.Linear(2 * hidden, hidden)
        self.stem_embedding = nn.Parameter(torch.randn(self.num_stems, hidden) * 0.02)
        self.context = nn.ModuleList(
            nn.TransformerEncoderLayer(
                hidden, heads, dim_feedforward=2 * hidden, dropout=0.0, activation="gelu", batch_first=True,
                norm_first=True,
            )
            for _ in range(context_layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, 4 + len(kinds))
        # Each stem slot holds one kind of instrument, with its own typical settings (vocals up front, bass
        # centred, ...): a per-slot offset of the raw settings learns those directly.
        self.slot_bias = nn.Parameter(torch.zeros(self.num_stems, 4 + len(kinds)))
        self._init_neutral()

    def _init_neutral(self) -> None:
        """Zero head weights and slot offsets, neutral biases: see the module docstring."""
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.slot_bias)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[3].fill_(_RATIO_BIAS)

    @property
    def eq_bands(self) -> int:
        return len(self.eq_kinds)

    # ------------------------------------------------------------------------------------------ encoder
    def features(self, stems: Tensor) -> Tensor:
        """Log-mel features of the mid and side signals.

        Args:
            stems: ``(B, S, C, T)``.

        Returns:
            ``(B * S, 2 * n_mels, frames)`` float32, roughly in ``[-3, 2]`` (dB / 25 plus 2).
        """
        with torch.autocast(device_type=stems.device.type, enabled=False):
            x = stems.float()
            mid = x.mean(dim=2)
            side = 0.5 * (x[:, :, 0] - x[:, :, -1])  # zero for mono stems
            power = magnitude(self.stft(torch.stack([mid, side], dim=2)), power=2.0)
            mel = torch.einsum("mf,bscft->bscmt", self.mel, power)
            db = power_to_db(mel, eps=1e-10)  # floor -100 dB
            feats = db / 25.0 + 2.0
        return feats.reshape(stems.shape[0] * stems.shape[1], -1, feats.shape[-1])

    def embed(self, stems: Tensor) -> Tensor:
        """Per-stem embeddings with cross-stem context: ``(B, S, C, T)`` -> ``(B, S, hidden)``."""
        batch, num = stems.shape[:2]
        h = self.encoder(self.features(stems).to(self.pool.weight.dtype))
        h = self.pool(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1))
        h = h.reshape(batch, num, -1) + self.stem_embedding
        for layer in self.context:
            h = layer(h)
        return self.norm(h)

    # --------------------------------------------------------------------------------------- parameters
    def _check(self, stems: Tensor) -> None:
        if stems.dim() != 4 or stems.shape[1] != self.num_stems or stems.shape[2] not in (1, 2):
            raise ValueError(
                f"stems must be (batch, {self.num_stems}, 1 or 2 channels, time), got {tuple(stems.shape)}"
            )

    def predict_parameters(self, stems: Tensor) -> Dict[str, Tensor]:
        """Console settings for each stem, in physical units.

        Args:
            stems: ``(B, S, C, T)``.

        Returns:
            float32 tensors: ``gain_db``, ``pan`` (-1..1), ``threshold_db``, ``ratio`` ``(B, S)``;
            ``eq_freq_hz``, ``eq_gain_db``, ``eq_q`` ``(B, S, K)`` (frequencies and Qs are the fixed band
            layout, repeated).
        """
        self._check(stems)
        raw = (self.head(self.embed(stems)) + self.slot_bias).float()
        batch, num = stems.shape[:2]
        low, high = self.threshold_range
        bands = self.eq_bands
        return {
            "gain_db": self.max_gain_db * torch.tanh(raw[..., 0]),
            "pan": torch.tanh(raw[..., 1]),
            "eq_freq_hz": self.eq_freq_hz.expand(batch, num, bands),
            "eq_gain_db": self.max_eq_gain_db * torch.tanh(raw[..., 4 : 4 + bands]),
            "eq_q": self.eq_q.expand(batch, num, bands),
            "threshold_db": low + (high - low) * torch.sigmoid(raw[..., 2]),
            "ratio": 1.0 + (self.max_ratio - 1.0) * torch.sigmoid(raw[..., 3]),
        }

    def process_stems(self, stems: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        """Apply the settings to each stem (gain, EQ, compressor, pan), without summing.

        Args:
            stems: ``(B, S, C, T)``.
            params: :meth:`predict_parameters`' settings ``(B, S)`` / ``(B, S, K)``.

        Returns:
            ``(B, S, 2, T)`` float32 processed stereo stems.
        """
        self._check(stems)
        x = fx.gain(stems.float(), params["gain_db"])
        if self.eq_kinds:
            x = fx.parametric_eq(
                x, self.sample_rate, params["eq_freq_hz"], params["eq_gain_db"], params["eq_q"], self.eq_kinds
            )
        x = fx.compressor(
            x, self.sample_rate, params["threshold_db"], params["ratio"], self.attack_ms, self.release_ms,
            self.knee_db,
        )
        return fx.pan(x, params["pan"])

    def mix(self, stems: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        """The stereo mix with given settings: ``(B, S, C, T)`` -> ``(B, 2, T)`` float32."""
        return self.process_stems(stems, params).sum(dim=1)

    def forward(self, stems: Tensor) -> Tensor:
        """Mix ``(B, S, C, T)`` stems into ``(B, 2, T)`` (float32) with predicted settings."""
        return self.mix(stems, self.predict_parameters(stems))

    def parameters_to_json(
        self, params: Mapping[str, Tensor], stem_names: Sequence[str], index: int = 0
    ) -> Dict[str, Any]:
        """One example's settings as a JSON-ready dict (``musicfx mix --params``).

        Args:
            params: :meth:`predict_parameters`' output ``(B, S, ...)``.
            stem_names: S names, in the stems' order.
            index: which example of the batch.

        Returns:
            ``{"sample_rate": int, "stems": {name: {"gain_db", "pan", "eq": [{"kind", "freq_hz", "gain_db",
            "q"}, ...], "compressor": {"threshold_db", "ratio", "attack_ms", "release_ms", "knee_db"}}}}``
            with floats rounded (2 decimals; 3 for pan and Q; whole Hz).
        """
        names = list(stem_names)
        if len(names) != self.num_stems:
            raise ValueError(f"need {self.num_stems} stem names, got {len(names)}: {names}")
        values = {key: params[key][index].detach().float().cpu() for key in self.param_keys}
        stems: Dict[str, Any] = {}
        for s, name in enumerate(names):
            eq = [
                {
                    "kind": kind,
                    "freq_hz": round(float(values["eq_freq_hz"][s, k])),
                    "gain_db": round(float(values["eq_gain_db"][s, k]), 2),
                    "q": round(float(values["eq_q"][s, k]), 3),
                }
                for k, kind in enumerate(self.eq_kinds)
            ]
            stems[name] = {
                "gain_db": round(float(values["gain_db"][s]), 2),
                "pan": round(float(values["pan"][s]), 3),
                "eq": eq,
                "compressor": {
                    "threshold_db": round(float(values["threshold_db"][s]), 2),
                    "ratio": round(float(values["ratio"][s]), 2),
                    "attack_ms": self.attack_ms,
                    "release_ms": self.release_ms,
                    "knee_db": self.knee_db,
                },
            }
        return {"sample_rate": self.sample_rate, "stems": stems}
