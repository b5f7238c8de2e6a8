"""Microphone bleed scenes for the debleed task, synthesized on the device for a whole batch.

In a live multitrack recording each microphone picks up its own instrument and, weaker, every other one.
:class:`BleedSynth` turns M clean tracks into M "microphone" tracks with such bleed, in one of three
kinds (after Rajesh & Rajan, WASPAA 2023):

* ``linear``: ``mics = A @ sources`` with a random M x M matrix per example, diagonal ``U(diagonal)`` and
  off-diagonal ``U(off_diagonal)`` (the seed's ``U(0.6, 1)`` and ``U(0.05, 0.31)``).
* ``convolutive``: source ``j`` reaches microphone ``i`` through ``A_ij`` times a delay ``U(0, max_delay_ms)``
  (0 for the own microphone) and a room impulse response: recorded IRs given as ``impulse_responses``
  (aligned so the peak, taken as the direct sound, is 1 at sample 0, as
  :func:`musicfx.data.impulse_responses.load_impulse_responses` reads them) or
  :func:`musicfx.synth.rooms.synthetic_rir` (one RT60 per example for all pairs, as in one room;
  direct-to-reverberant ratio ``U(6, 18)`` dB for the own microphone, ``U(-3, 9)`` dB for the others).
* ``room``: sources and close microphones in a simulated shoebox room, responses from a
  :class:`musicfx.synth.rooms.RoomIRBank` (source ``j`` to microphone ``i``); microphone ``i`` is scaled by
  ``A_ii / g_ii`` (``g_ii`` the gain of its own source's direct path), so that its own direct sound has
  amplitude ``A_ii``; the geometry sets the bleed.

``kind`` may be a list of kinds, one drawn uniformly per example, or a mapping ``{kind: weight}``.

**Targets.** With ``target="source"`` (the default) the target of microphone ``i`` is its own clean source
as its direct path delivers it, at unit gain: ``s_i`` for ``linear`` and ``convolutive`` (whose own path has
no delay), ``s_i`` delayed by the direct-path delay (fractional, by the same windowed sinc as the image
sources) for ``room``. This follows the seed: its data script (its-rajesh/IRMR ``ArtificalMix.py``) pairs
``X = A @ S`` with ``Y = S``, and its t-UNet recovers ``A^-1 x``, which is ``s`` itself; so its reported SDRs
are against unscaled sources. ``target="direct"`` keeps the microphone's own gain instead (``A_ii s_i``, the
direct-path component exactly as it sits in the microphone signal): the choice for methods that cannot see
absolute gains, like KAMIR, whose leakage matrix has a unit diagonal.

As in :mod:`musicfx.synth.noise`, :meth:`BleedSynth.draw` makes one example's scalar parameters on the CPU
and :meth:`BleedSynth.forward` renders a batch on the device; synthetic impulse responses come from
counter-based hashes of the per-example seed, so an example never depends on the rest of its batch.
Levels are not normalised: mics can exceed 1 (rows of ``A`` sum to up to ~1.9); the task scales them.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from musicfx.audio.spectral import fft_convolve
from musicfx.errors import ConfigError
from musicfx.rng import derive_seeds
from musicfx.synth.rooms import RoomIRBank, direct_path_ir, synthetic_rir

__all__ = ["BLEED_KINDS", "TARGETS", "BleedSynth"]

BLEED_KINDS: Tuple[str, ...] = ("linear", "convolutive", "room")
TARGETS: Tuple[str, ...] = ("source", "direct")

# Direct-to-reverberant energy ratios (dB) of synthetic responses: the own microphone is close to its
# source, the others are not.
_OWN_DRR_DB, _CROSS_DRR_DB = (6.0, 18.0), (-3.0, 9.0)
_SALT_IRS = 31


def _fit_length(irs: Tensor, length: int) -> Tensor:
    """(N, samples) responses cut or zero-padded to (N, length) float32."""
    if irs.dim() != 2 or irs.shape[0] < 1:
        raise ValueError(f"impulse_responses must be (N, samples) with N >= 1, got shape {tuple(irs.shape)}")
    out = torch.zeros(irs.shape[0], length)
    keep = min(length, irs.shape[1])
    out[:, :keep] = irs[:, :keep].float()
    return out


def _check_range(name: str, bounds: Sequence[float]) -> Tuple[float, float]:
    low, high = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high):
        raise ValueError(f"{name} must be a (low, high) pair with 0 <= low <= high, got {tuple(bounds)}")
    return low, high


def _kind_weights(kind: Union[str, Sequence[str], Mapping[str, float]]) -> Tuple[Tuple[str, ...], Tensor]:
    """The kinds in use and their draw probabilities (float64, CPU)."""
    if isinstance(kind, str):
        weights = {kind: 1.0}
    elif isinstance(kind, Mapping):
        weights = {str(k): float(v) for k, v in kind.items()}
    else:
        weights = {}
        for name in kind:
            weights[str(name)] = weights.get(str(name), 0.0) + 1.0
    unknown = sorted(set(weights) - set(BLEED_KINDS))
    if unknown or not weights:
        raise ValueError(f"unknown bleed kinds {unknown or kind!r}; valid: {', '.join(BLEED_KINDS)}")
    values = torch.tensor(list(weights.values()), dtype=torch.float64)
    if not torch.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"bleed kind weights must be finite, non-negative and not all zero, got {weights}")
    return tuple(weights), values / values.sum()


class BleedSynth(torch.nn.Module):
    """Bleeding microphone tracks and their clean targets from M clean tracks.

    See the module docstring for the three kinds and the targets. No learned parameters; impulse responses
    (files or a room bank) are non-persistent buffers, so ``.to(device)`` moves them and checkpoints do not
    store them.

    Args:
        kind: ``"linear"``, ``"convolutive"``, ``"room"``, a sequence of them (one drawn uniformly per example)
            or a mapping of kinds to weights.
        num_tracks: M, tracks (sources = microphones) per example.
        sample_rate: Hz.
        diagonal: range of the uniform own-microphone gains ``A_ii``.
        off_diagonal: range of the uniform bleed gains ``A_ij`` (``linear``, ``convolutive``).
        max_delay_ms: bleed paths are delayed by ``U(0, max_delay_ms)`` (``convolutive``).
        rt60: range of the uniform reverberation time of synthetic responses, seconds (``convolutive``).
        ir_length: seconds of each impulse response (``convolutive``).
        impulse_responses: (N, samples) recorded impulse responses, aligned on their direct sound, to use
            instead of synthetic ones (``convolutive``); cut or zero-padded to ``ir_length``. Read a folder
            of them with :func:`musicfx.data.impulse_responses.load_impulse_responses`.
        room_bank: a :class:`RoomIRBank` with ``num_tracks`` sources and microphones, or keyword arguments
            for one (``num_rooms`` at least); required by ``room``.
        target: ``"source"`` or ``"direct"`` (see the module docstring).
    """

    #: The names of :meth:`draw`'s parameters, which :meth:`forward` reads from a batch.
    param_keys: Tuple[str, ...] = ("kind", "gains", "delays", "drr_db", "rt60", "ir_index", "room", "bleed_seed")

    def __init__(
        self,
        kind: Union[str, Sequence[str], Mapping[str, float]] = "linear",
        num_tracks: int = 4,
        sample_rate: int = 44100,
        diagonal: Tuple[float, float] = (0.6, 1.0),
        off_diagonal: Tuple[float, float] = (0.05, 0.31),
        max_delay_ms: float = 20.0,
        rt60: Tuple[float, float] = (0.2, 0.8),
        ir_length: float = 0.5,
        impulse_responses: Optional[Tensor] = None,
        room_bank: Optional[Union[RoomIRBank, Mapping[str, Any]]] = None,
        target: str = "source",
    ) -> None:
        super().__init__()
        if num_tracks < 1 or sample_rate < 1:
            raise ValueError(f"num_tracks and sample_rate must be positive, got {num_tracks} and {sample_rate}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if max_delay_ms < 0 or ir_length <= 0:
            raise ValueError(f"need max_delay_ms >= 0 and ir_length > 0, got {max_delay_ms} and {ir_length}")
        self.kinds, self.kind_weights = _kind_weights(kind)
        self.num_tracks, self.sample_rate, self.target = int(num_tracks), int(sample_rate), target
        self.diagonal = _check_range("diagonal", diagonal)
        self.off_diagonal = _check_range("off_diagonal", off_diagonal)
        self.rt60 = _check_range("rt60", rt60)
        if self.rt60[0] <= 0:
            raise ValueError(f"rt60 must be positive, got {rt60}")
        self.max_delay = int(round(max_delay_ms * 1e-3 * sample_rate))
        self.ir_length = max(1, int(round(ir_length * sample_rate)))
        self.register_buffer("file_irs", torch.zeros(0, self.ir_length), persistent=False)
        if impulse_responses is not None:
            self.file_irs = _fit_length(impulse_responses, self.ir_length)
        self.bank = self._bank(room_bank) if "room" in self.kinds else None
        self.register_buffer("room_irs", torch.zeros(0, num_tracks, num_tracks, 1), persistent=False)
        self.register_buffer("room_direct", torch.zeros(0, num_tracks, num_tracks, 2), persistent=False)
        if self.bank is not None:
            self.room_irs, self.room_direct = self.bank.irs, self.bank.direct

    def _bank(self, room_bank: Optional[Union[RoomIRBank, Mapping[str, Any]]]) -> RoomIRBank:
        if room_bank is None:
            raise ConfigError("bleed kind 'room' needs room_bank: a RoomIRBank or its arguments, e.g. {num_rooms: 100}")
        if not isinstance(room_bank, RoomIRBank):
            kwargs = dict(room_bank)
            kwargs.setdefault("num_sources", self.num_tracks)
            kwargs.setdefault("num_microphones", self.num_tracks)
            kwargs.setdefault("sample_rate", self.sample_rate)
            room_bank = RoomIRBank(**kwargs)
        if (room_bank.num_sources, room_bank.num_microphones) != (self.num_tracks, self.num_tracks):
            raise ConfigError(
                f"room_bank has {room_bank.num_sources} sources and {room_bank.num_microphones} microphones; "
                f"BleedSynth needs num_tracks={self.num_tracks} of each"
            )
        if room_bank.sample_rate != self.sample_rate:
            raise ConfigError(f"room_bank is at {room_bank.sample_rate} Hz, BleedSynth at {self.sample_rate} Hz")
        return room_bank

    # ------------------------------------------------------------------------------------------- draw
    def draw(self, generator: torch.Generator) -> Dict[str, Tensor]:
        """Scene parameters for one example (every key for every kind, so that mixed batches collate).

        Args:
            generator: a CPU generator seeded for this example.

        Returns:
            ``kind`` (int64 index into :data:`BLEED_KINDS`), ``gains`` (M, M) float32 mixing matrix ``A``
            (``[i, j]``: source ``j`` into microphone ``i``), ``delays`` (M, M) int64 samples (0 on the
            diagonal), ``drr_db`` (M, M) float32, ``rt60`` float32 seconds, ``ir_index`` (M, M) int64 into the
            file IRs (0 when there are none), ``room`` int64 into the room bank (0 without one) and
            ``bleed_seed`` int64 for the synthetic responses.
        """
        m = self.num_tracks
        eye = torch.eye(m, dtype=torch.bool)
        choice = int(torch.multinomial(self.kind_weights, 1, generator=generator))
        u = torch.rand(4, m, m, generator=generator, dtype=torch.float64)
        gains = torch.where(eye, _between(u[0], self.diagonal), _between(u[0], self.off_diagonal))
        delays = (u[1] * (self.max_delay + 1)).floor().clamp(max=self.max_delay).long().masked_fill(eye, 0)
        drr = torch.where(eye, _between(u[2], _OWN_DRR_DB), _between(u[2], _CROSS_DRR_DB))
        rt60 = _between(torch.rand((), generator=generator, dtype=torch.float64), self.rt60)
        num_files = self.file_irs.shape[0]
        ir_index = (u[3] * num_files).floor().clamp(max=max(num_files - 1, 0)).long()
        room = torch.randint(0, len(self.bank) if self.bank is not None else 1, (), generator=generator)
        seed = torch.randint(0, 2**63 - 1, (), generator=generator, dtype=torch.int64)
        return {
            "kind": torch.tensor(BLEED_KINDS.index(self.kinds[choice]), dtype=torch.int64),
            "gains": gains.float(),
            "delays": delays,
            "drr_db": drr.float(),
            "rt60": rt60.float(),
            "ir_index": ir_index,
            "room": room.long(),
            "bleed_seed": seed,
        }

    # ---------------------------------------------------------------------------------------- render
    @torch.no_grad()
    def forward(
        self, sources: Tensor, params: Mapping[str, Tensor], seeds: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """Render a batch of bleed scenes.

        Args:
            sources: (B, M, C, T) clean tracks.
            params: :meth:`draw`'s keys, stacked to (B, ...) (as the default collate does), on any device
                (``bleed_seed`` may be left out when ``seeds`` is given).
            seeds: (B,) int64 seeds of the synthetic responses; default ``params["bleed_seed"]``.

        Returns:
            ``mics`` and ``targets``, both (B, M, C, T) in ``sources``' dtype.
        """
        if sources.dim() != 4 or sources.shape[1] != self.num_tracks:
            raise ValueError(
                f"sources must be (batch, {self.num_tracks} tracks, channels, time), got {tuple(sources.shape)}"
            )
        batch = sources.shape[0]
        p = _batch_params(params, batch, self.num_tracks, sources.device, need_seed=seeds is None)
        seeds = p["bleed_seed"] if seeds is None else seeds.to(sources.device)
        with torch.autocast(device_type=sources.device.type, enabled=False):
            clean = sources.float()
            mics, targets = torch.empty_like(clean), torch.empty_like(clean)
            for index in torch.unique(p["kind"]).tolist():
                if not 0 <= index < len(BLEED_KINDS) or BLEED_KINDS[index] not in self.kinds:
                    raise ValueError(f"bleed kind index {index} is not one of this synth's kinds {self.kinds}")
                rows = (p["kind"] == index).nonzero()[:, 0]
                sub = {key: value[rows] for key, value in p.items()}
                render = getattr(self, f"_{BLEED_KINDS[index]}")
                mics[rows], targets[rows] = render(clean[rows], sub, seeds[rows])
        return mics.to(sources.dtype), targets.to(sources.dtype)

    def mixing_matrix(self, params: Mapping[str, Tensor]) -> Tensor:
        """The amplitude of every source's direct sound in every microphone: the instantaneous part of the mix.

        ``A`` itself for ``linear`` and ``convolutive`` scenes (whose responses have a unit direct impulse);
        for ``room`` scenes ``A_ii g_ij / g_ii``, the direct-path gains ``g`` of the room after microphone
        ``i``'s scaling. What a matrix-regressing model (t-UNet) can aim at; exact only for ``linear``.

        Args:
            params: :meth:`draw`'s keys stacked to (B, ...) (``kind``, ``gains`` and ``room`` are read).

        Returns:
            (B, M, M) float32 on the device of ``params["gains"]``; ``[:, i, j]`` source ``j`` into mic ``i``.
        """
        gains = params["gains"].float()
        kinds = params["kind"].to(gains.device)
        if self.bank is None or not bool((kinds == BLEED_KINDS.index("room")).any()):
            return gains
        direct = self.room_direct[params["room"].to(self.room_direct.device)][..., 1].to(gains.device)
        own = torch.diagonal(direct, dim1=1, dim2=2)
        room = direct * (torch.diagonal(gains, dim1=1, dim2=2) / own)[..., None]
        return torch.where((kinds == BLEED_KINDS.index("room"))[:, None, None], room, gains)

    def _own_gain(self, gains: Tensor) -> Tensor:
        """Per-microphone factor of the target: (B, M, M) -> (B, M, 1, 1), ``A_ii`` or 1."""
        own = torch.diagonal(gains, dim1=1, dim2=2)
        return (own if self.target == "direct" else torch.ones_like(own))[..., None, None]

    def _linear(self, sources: Tensor, p: Mapping[str, Tensor], seeds: Tensor) -> Tuple[Tensor, Tensor]:
        mics = torch.einsum("bij,bjct->bict", p["gains"], sources)
        return mics, sources * self._own_gain(p["gains"])

    def convolutive_irs(self, p: Mapping[str, Tensor], seeds: Tensor) -> Tensor:
        """Per-pair impulse responses of ``convolutive`` scenes, with unit direct sound at sample 0.

        Args:
            p: the batch's parameters (``drr_db``, ``rt60``, ``ir_index``).
            seeds: (B,) int64.

        Returns:
            (B, M, M, ir_length) float32: the response from source ``j`` to microphone ``i`` at ``[:, i, j]``,
            before gain and delay.
        """
        batch, m = seeds.shape[0], self.num_tracks
        if self.file_irs.shape[0] > 0:
            return self.file_irs[p["ir_index"]]
        wet = synthetic_rir(
            derive_seeds(seeds, _SALT_IRS), p["rt60"], self.sample_rate, self.ir_length, channels=m * m, direct=False
        ).reshape(batch, m, m, self.ir_length)
        irs = wet * (10.0 ** (-p["drr_db"] / 20.0))[..., None]
        irs[..., 0] += 1.0
        return irs

    def _convolutive(self, sources: Tensor, p: Mapping[str, Tensor], seeds: Tensor) -> Tuple[Tensor, Tensor]:
        irs = self.convolutive_irs(p, seeds) * p["gains"][..., None]
        # Delays shift each response: kernel[n] = ir[n - delay], zero before the delay.
        taps = self.ir_length + self.max_delay
        n = torch.arange(taps, device=irs.device)
        shifted = n - p["delays"][..., None]  # (B, M, M, taps)
        kernels = torch.gather(irs, -1, shifted.clamp(0, self.ir_length - 1))
        kernels = kernels * ((shifted >= 0) & (shifted < self.ir_length))
        mics = torch.zeros_like(sources)
        for j in range(self.num_tracks):
            # (B, 1, C, T) * (B, M, 1, taps): source j into every microphone.
            mics += fft_convolve(sources[:, j : j + 1], kernels[:, :, j : j + 1], mode="same")
        return mics, sources * self._own_gain(p["gains"])

    def _room(self, sources: Tensor, p: Mapping[str, Tensor], seeds: Tensor) -> Tuple[Tensor, Tensor]:
        irs = self.room_irs[p["room"]].to(sources.device)  # (B, M, M, L)
        direct = self.room_direct[p["room"]].to(sources.device)
        own_delay = torch.diagonal(direct[..., 0], dim1=1, dim2=2)  # (B, M)
        own_gain = torch.diagonal(direct[..., 1], dim1=1, dim2=2)
        scale = torch.diagonal(p["gains"], dim1=1, dim2=2) / own_gain  # own direct sound at amplitude A_ii
        irs = irs * scale[..., None, None]
        mics = torch.zeros_like(sources)
        for j in range(self.num_tracks):
            mics += fft_convolve(sources[:, j : j + 1], irs[:, :, j : j + 1], mode="same")
        length = int(math.ceil(float(own_delay.max()))) + 64
        paths = direct_path_ir(own_delay, torch.ones_like(own_delay), length)  # (B, M, length)
        targets = fft_convolve(sources, paths[:, :, None, :], mode="same")
        return mics, targets * self._own_gain(p["gains"])


def _between(u: Tensor, bounds: Tuple[float, float]) -> Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _batch_params(
    params: Mapping[str, Tensor], batch: int, tracks: int, device: torch.device, need_seed: bool = True
) -> Dict[str, Tensor]:
    """The scene parameters of a batch, checked and moved to ``device``."""
    keys = [key for key in BleedSynth.param_keys if need_seed or key != "bleed_seed"]
    missing = [key for key in keys if key not in params]
    if missing:
        raise ValueError(f"scene parameters lack {missing}; BleedSynth.draw makes {list(BleedSynth.param_keys)}")
    out = {key: params[key].to(device) for key in keys}
    matrix = ("gains", "delays", "drr_db", "ir_index")
    for key, value in out.items():
        expected = (batch, tracks, tracks) if key in matrix else (batch,)
        if value.shape != expected:
            raise ValueError(f"params[{key!r}] must have shape {expected}, got {tuple(value.shape)}")
    return out
