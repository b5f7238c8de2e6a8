"""Built-in music-like signals, so that every recipe runs with no download.

A call draws a short *score* from a ``torch.Generator`` — a tempo, a key, a chord progression, and the
notes of four instruments — then *renders* it with vectorised torch:

* ``vocals``: a sung melody; notes glide into each other (portamento), carry a delayed vibrato, and their
  harmonics are shaped by vowel formants.
* ``bass``: a bass line on the chord roots (whole notes, quarters, eighths with octave jumps, root-fifth).
* ``drums``: kick (a pitched sine sweeping down, with a click), snare (a decaying tone plus high-passed
  noise) and hi-hats (strongly high-passed noise bursts), with slight timing and velocity variation.
* ``other``: chords or arpeggios on a keys, pad or plucked timbre.

Tones have ADSR envelopes, harmonic partials whose amplitudes fall with the partial number (and, for struck
and plucked timbres, decay faster in time), slight inharmonicity (stretched partials, as in piano strings)
and vibrato. In stereo each instrument (and each chord voice) is placed by a constant-power pan.

The score is drawn in seconds and rendered for any window ``[start, start + length)``: a window is the
matching slice of the full rendering (up to float rounding), which lets :class:`GeneratedMusic
<musicfx.data.sources.GeneratedMusic>` read random chunks of long items without synthesising them whole.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

#: Stem names in the order MUSDB18 and Demucs use for targets.
STEMS: Tuple[str, ...] = ("vocals", "bass", "drums", "other")
#: What :func:`generate_music` can render: the mix or one stem.
KINDS: Tuple[str, ...] = ("mix",) + STEMS

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Scale degrees (0-based) of common four-chord loops.
_MAJOR_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (5, 3, 0, 4), (0, 3, 0, 4), (0, 1, 4, 0))
_MINOR_PROGRESSIONS = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4))
# First three formants (Hz) of sung vowels a, e, i, o, u.
_VOWELS = ((800.0, 1150.0, 2900.0), (450.0, 1900.0, 2600.0), (300.0, 2250.0, 3000.0),
           (500.0, 850.0, 2500.0), (330.0, 700.0, 2500.0))
# Partials are kept below this fraction of the sample rate so that vibrato and glides never alias.
_NYQUIST_MARGIN = 0.45


@dataclass(frozen=True)
class Tone:
    """A pitched note; times in seconds from the note's onset unless named otherwise."""

    onset: float  # seconds from the start of the piece
    hold: float  # key held this long, then the release starts
    release: float
    freq: float  # fundamental reached after the glide
    glide_from: float  # fundamental at the onset (== freq: no glide)
    glide_time: float
    attack: float
    decay: float
    sustain: float  # level reached after attack + decay, 0..1
    damping: float  # exponential decay rate (1/s) of the whole note; 0 for sustained timbres
    partial_damping: float  # extra decay rate (1/s) per partial number above the first
    partials: Tuple[float, ...]  # amplitude of partial k = 1..K, summing to 1
    phases: Tuple[float, ...]  # initial phase of each partial, in cycles
    inharmonicity: float  # B in f_k = k f0 sqrt(1 + B k^2)
    vibrato_rate: float
    vibrato_depth: float  # peak frequency deviation as a fraction of freq
    vibrato_delay: float
    amplitude: float
    pan: float  # -1 (left) .. 1 (right)

    @property
    def duration(self) -> float:
        """Seconds until silence; a damped note is cut once it has decayed by 60 dB."""
        ringing = self.hold + self.release
        return min(ringing, math.log(1000.0) / self.damping) if self.damping > 0 else ringing


@dataclass(frozen=True)
class Hit:
    """A drum hit: ``kind`` is ``"kick"``, ``"snare"`` or ``"hat"``."""

    onset: float
    kind: str
    duration: float
    amplitude: float
    pan: float
    freq: float  # kick: end of the pitch sweep; snare: shell tone
    sweep_from: float  # kick: start of the pitch sweep
    sweep_time: float
    tone_decay: float  # seconds (time constant)
    noise_decay: float  # seconds (time constant)
    noise_level: float
    noise_seed: int


Event = Union[Tone, Hit]


@dataclass(frozen=True)
class Score:
    """Everything random about one piece; rendering it is deterministic."""

    duration: float  # seconds
    tempo: float  # beats per minute
    key: int  # pitch class of the tonic, 0 = C
    minor: bool
    events: Dict[str, Tuple[Event, ...]]  # per stem, sorted by onset
    target_peak: float  # peak of the normalised mix


class _Uniforms:
    """Uniform numbers drawn in blocks from a ``torch.Generator``.

    A score needs thousands of scalars; one ``torch.rand`` call per scalar would cost more than rendering.
    Drawing blocks and consuming them in a fixed order keeps the result a pure function of the generator.
    """

    def __init__(self, generator: torch.Generator, block: int = 2048) -> None:
        self._generator = generator
        self._block = block
        self._values: List[float] = []
        self._next = 0

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        if self._next == len(self._values):
            self._values = torch.rand(self._block, generator=self._generator, dtype=torch.float64).tolist()
            self._next = 0
        value = self._values[self._next]
        self._next += 1
        return low + (high - low) * value

    def integer(self, low: int, high: int) -> int:
        """Uniform integer in ``[low, high)``."""
        return min(high - 1, low + int(self.uniform() * (high - low)))

    def chance(self, probability: float) -> bool:
        return self.uniform() < probability

    def choice(self, options: Sequence):
        return options[self.integer(0, len(options))]

    def seed(self) -> int:
        return self.integer(0, 2**31 - 1) * (2**31) + self.integer(0, 2**31 - 1)


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


# ---------------------------------------------------------------------------------------------- score


def draw_score(duration: float, generator: torch.Generator) -> Score:
    """Draw a random piece of ``duration`` seconds (tempo, key, chords and the notes of all four stems).

    Args:
        duration: length in seconds; events that ring past it are cut when rendering.
        generator: CPU ``torch.Generator``; the score is a pure function of its state.

    Returns:
        A :class:`Score` whose every stem has an event at time 0, so no stem is silent at the start.
    """
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    rng = _Uniforms(generator)
    tempo = rng.uniform(80.0, 160.0)
    key = rng.integer(0, 12)
    minor = rng.chance(0.4)
    target_peak = rng.uniform(0.5, 0.9)
    beat = 60.0 / tempo
    bars = int(math.ceil(duration / (4 * beat))) + 1
    scale = _MINOR if minor else _MAJOR
    progression = rng.choice(_MINOR_PROGRESSIONS if minor else _MAJOR_PROGRESSIONS)
    chords = _chord_track(rng, progression, bars)
    stem_gain = {stem: 10 ** (rng.uniform(-4.0, 0.0) / 20) for stem in STEMS}
    events = {
        "vocals": _vocals(rng, key, scale, beat, duration, stem_gain["vocals"]),
        "bass": _bass(rng, key, scale, chords, beat, duration, stem_gain["bass"]),
        "drums": _drums(rng, beat, bars, duration, stem_gain["drums"]),
        "other": _other(rng, key, scale, chords, beat, duration, stem_gain["other"]),
    }
    events = {stem: tuple(sorted(notes, key=lambda event: event.onset)) for stem, notes in events.items()}
    return Score(duration, tempo, key, minor, events, target_peak)


def _chord_track(rng: _Uniforms, progression: Sequence[int], bars: int) -> List[Tuple[float, int]]:
    """``(start_in_beats, scale_degree)`` per chord: one chord a bar, or two when the loop is doubled."""
    beats_per_chord = rng.choice((4, 4, 2))
    chords = []
    for index in range(bars * 4 // beats_per_chord + 1):
        chords.append((float(index * beats_per_chord), progression[index % len(progression)]))
    return chords


def _degree_pitch(key: int, scale: Sequence[int], degree: int, octave_base: int) -> int:
    """MIDI pitch of a scale degree (may exceed the octave) above ``octave_base`` + key."""
    octave, step = divmod(degree, len(scale))
    return octave_base + key + 12 * octave + scale[step]


def _triad(key: int, scale: Sequence[int], degree: int, octave_base: int) -> List[int]:
    return [_degree_pitch(key, scale, degree + offset, octave_base) for offset in (0, 2, 4)]


def _harmonic_amplitudes(count: int, rolloff: float, rng: _Uniforms, jitter: float = 0.3) -> List[float]:
    amplitudes = [k ** -rolloff * (1.0 + jitter * rng.uniform(-1.0, 1.0)) for k in range(1, count + 1)]
    total = sum(amplitudes)
    return [a / total for a in amplitudes]


def _tone(rng: _Uniforms, onset: float, hold: float, freq: float, partials: Sequence[float], amplitude: float,
          pan: float, **shape: float) -> Tone:
    """A :class:`Tone` with random partial phases; ``shape`` overrides the envelope defaults."""
    values = dict(glide_from=freq, glide_time=0.0, attack=0.01, decay=0.1, sustain=0.8, release=0.1,
                  damping=0.0, partial_damping=0.0, inharmonicity=0.0, vibrato_rate=5.0, vibrato_depth=0.0,
                  vibrato_delay=0.0)
    values.update(shape)
    phases = tuple(rng.uniform() for _ in partials)
    return Tone(onset=max(0.0, onset), hold=hold, freq=freq, partials=tuple(partials), phases=phases,
                amplitude=amplitude, pan=pan, **values)


def _vocals(rng: _Uniforms, key: int, scale: Sequence[int], beat: float, duration: float,
            gain: float) -> List[Tone]:
    notes: List[Tone] = []
    vibrato_rate = rng.uniform(4.5, 6.5)
    vibrato_depth = rng.uniform(0.004, 0.015)
    pan = rng.uniform(-0.1, 0.1)
    degree = rng.integer(7, 12)  # start around the upper octave of the key
    time = 0.0
    previous: Optional[float] = None
    while time < duration:
        length = beat * rng.choice((0.5, 1.0, 1.0, 1.5, 2.0, 3.0))
        if notes and rng.chance(0.15):  # a breath; the first note always sounds at time 0
            time += beat * rng.choice((1.0, 2.0))
            previous = None
            continue
        degree = max(3, min(16, degree + rng.choice((-2, -1, -1, 0, 1, 1, 2, 3, -3))))
        freq = midi_to_hz(_degree_pitch(key, scale, degree, 48))
        count = max(4, min(20, int(5000.0 / freq)))
        formants = rng.choice(_VOWELS)
        widths = [rng.uniform(70.0, 140.0) * (1 + i) for i in range(3)]
        partials = []
        for k in range(1, count + 1):
            f = k * freq
            envelope = sum(g * math.exp(-0.5 * ((f - center) / width) ** 2)
                           for g, center, width in zip((1.0, 0.7, 0.35), formants, widths))
            partials.append(k ** -0.9 * (0.05 + envelope))
        total = sum(partials)
        legato = previous is not None and rng.chance(0.6)
        notes.append(_tone(
            rng, time, length * rng.uniform(0.85, 1.0), freq, [p / total for p in partials],
            amplitude=gain * rng.uniform(0.6, 0.9), pan=pan,
            glide_from=previous if legato else freq, glide_time=rng.uniform(0.04, 0.12),
            attack=rng.uniform(0.02, 0.06), decay=0.1, sustain=rng.uniform(0.75, 0.95),
            release=rng.uniform(0.05, 0.12), vibrato_rate=vibrato_rate * rng.uniform(0.95, 1.05),
            vibrato_depth=vibrato_depth, vibrato_delay=rng.uniform(0.1, 0.25)))
        previous = freq
        time += length
    return notes


def _bass(rng: _Uniforms, key: int, scale: Sequence[int], chords: Sequence[Tuple[float, int]], beat: float,
          duration: float, gain: float) -> List[Tone]:
    notes: List[Tone] = []
    rolloff = rng.uniform(1.2, 2.0)
    damping = rng.uniform(0.8, 2.5)
    pattern = rng.choice(("whole", "quarters", "eighths", "root-fifth"))
    pan = rng.uniform(-0.1, 0.1)
    for index, (start, degree) in enumerate(chords):
        end = chords[index + 1][0] if index + 1 < len(chords) else start + 4
        root = _degree_pitch(key, scale, degree, 36)
        if pattern == "whole":
            steps = [(start, end - start, root)]
        elif pattern == "quarters":
            steps = [(b, 1.0, root) for b in _frange(start, end, 1.0)]
        elif pattern == "eighths":
            steps = [(b, 0.5, root + (12 if i % 4 == 3 else 0)) for i, b in enumerate(_frange(start, end, 0.5))]
        else:
            steps = [(b, 1.0, root + (7 if i % 2 else 0)) for i, b in enumerate(_frange(start, end, 1.0))]
        for onset, length, pitch in steps:
            if onset * beat >= duration:
                return notes
            notes.append(_tone(
                rng, onset * beat, length * beat * rng.uniform(0.7, 0.95), midi_to_hz(pitch),
                _harmonic_amplitudes(6, rolloff, rng), amplitude=gain * rng.uniform(0.75, 0.95), pan=pan,
                attack=0.005, decay=0.08, sustain=0.8, release=0.05, damping=damping, partial_damping=3.0,
                inharmonicity=rng.uniform(0.0, 2e-4)))
    return notes


def _other(rng: _Uniforms, key: int, scale: Sequence[int], chords: Sequence[Tuple[float, int]], beat: float,
           duration: float, gain: float) -> List[Tone]:
    timbre = rng.choice(("keys", "pad", "pluck"))
    style = rng.choice(("block", "arpeggio")) if timbre != "pad" else "block"
    if timbre == "keys":
        shape = dict(attack=0.004, decay=0.2, sustain=0.6, release=0.15, damping=rng.uniform(1.0, 2.5),
                     partial_damping=rng.uniform(0.5, 2.0), inharmonicity=rng.uniform(1e-4, 4e-4))
        count, rolloff = 8, rng.uniform(1.0, 1.6)
    elif timbre == "pad":
        shape = dict(attack=rng.uniform(0.08, 0.3), decay=0.3, sustain=0.85, release=rng.uniform(0.2, 0.4),
                     vibrato_rate=rng.uniform(3.0, 5.0), vibrato_depth=0.003)
        count, rolloff = 8, rng.uniform(1.5, 2.5)
    else:
        shape = dict(attack=0.003, decay=0.05, sustain=0.7, release=0.08, damping=rng.uniform(2.0, 5.0),
                     partial_damping=rng.uniform(2.0, 6.0))
        count, rolloff = 12, rng.uniform(0.8, 1.3)
    step = rng.choice((0.5, 0.25))
    voice_pans = [rng.uniform(-0.7, 0.7) for _ in range(4)]
    notes: List[Tone] = []
    for index, (start, degree) in enumerate(chords):
        end = chords[index + 1][0] if index + 1 < len(chords) else start + 4
        if start * beat >= duration:
            break
        triad = _triad(key, scale, degree, 60 if rng.chance(0.5) else 48)
        voicing = triad + [triad[0] + 12] if rng.chance(0.5) else triad
        if style == "block":
            for voice, pitch in enumerate(voicing):
                notes.append(_tone(
                    rng, start * beat, (end - start) * beat * 0.95, midi_to_hz(pitch),
                    _harmonic_amplitudes(count, rolloff, rng), amplitude=gain * rng.uniform(0.2, 0.3),
                    pan=voice_pans[voice], **shape))
        else:
            order = voicing + voicing[1:-1][::-1] if rng.chance(0.5) else voicing
            for i, onset in enumerate(_frange(start, end, step)):
                if onset * beat >= duration:
                    break
                pitch = order[i % len(order)]
                notes.append(_tone(
                    rng, onset * beat, step * beat * 1.5, midi_to_hz(pitch),
                    _harmonic_amplitudes(count, rolloff, rng), amplitude=gain * rng.uniform(0.35, 0.5),
                    pan=voice_pans[i % len(voice_pans)], **shape))
    return notes


def _drums(rng: _Uniforms, beat: float, bars: int, duration: float, gain: float) -> List[Hit]:
    kick_freq, kick_from = rng.uniform(45.0, 60.0), rng.uniform(110.0, 180.0)
    kick_decay, kick_sweep = rng.uniform(0.15, 0.3), rng.uniform(0.03, 0.06)
    snare_freq = rng.uniform(170.0, 240.0)
    snare_decay = rng.uniform(0.04, 0.09)
    hat_decay = rng.uniform(0.02, 0.05)
    hat_pan, snare_pan = rng.uniform(-0.5, 0.5), rng.uniform(-0.2, 0.2)
    extra_kicks = rng.uniform(0.0, 0.4)
    hits: List[Hit] = []

    def add(onset_beats: float, kind: str, amplitude: float) -> None:
        onset = max(0.0, onset_beats * beat + (rng.uniform(-0.004, 0.004) if onset_beats > 0 else 0.0))
        if onset >= duration:
            return
        level = gain * amplitude * rng.uniform(0.85, 1.0)
        if kind == "kick":
            hits.append(Hit(onset, kind, duration=5 * kick_decay, amplitude=level, pan=0.0, freq=kick_freq,
                            sweep_from=kick_from, sweep_time=kick_sweep, tone_decay=kick_decay,
                            noise_decay=0.004, noise_level=0.25, noise_seed=rng.seed()))
        elif kind == "snare":
            hits.append(Hit(onset, kind, duration=max(0.4, 6 * snare_decay), amplitude=level, pan=snare_pan,
                            freq=snare_freq, sweep_from=snare_freq, sweep_time=0.0, tone_decay=0.08,
                            noise_decay=snare_decay, noise_level=0.8, noise_seed=rng.seed()))
        else:
            decay = hat_decay * (6.0 if amplitude > 0.35 else 1.0)  # open hat when accented
            hits.append(Hit(onset, kind, duration=6 * decay, amplitude=level, pan=hat_pan, freq=0.0, sweep_from=0.0,
                            sweep_time=0.0, tone_decay=0.0, noise_decay=decay, noise_level=1.0,
                            noise_seed=rng.seed()))

    for bar in range(bars):
        first = bar * 4.0
        add(first, "kick", 1.0)
        add(first + 2, "kick", 0.9)
        for offbeat in (1.5, 2.5, 3.5):
            if rng.chance(extra_kicks):
                add(first + offbeat, "kick", 0.7)
        add(first + 1, "snare", 0.8)
        add(first + 3, "snare", 0.85)
        for eighth in range(8):
            if rng.chance(0.9):
                accent = 0.4 if eighth == 7 and rng.chance(0.3) else (0.3 if eighth % 2 == 0 else 0.2)
                add(first + eighth / 2, "hat", accent)
    return hits


def _frange(start: float, stop: float, step: float) -> List[float]:
    count = int(math.ceil((stop - start) / step - 1e-9))
    return [start + i * step for i in range(max(0, count))]


# --------------------------------------------------------------------------------------------- render


def render(
    score: Score,
    sample_rate: int,
    channels: int,
    start: int = 0,
    length: Optional[int] = None,
    stems: Sequence[str] = STEMS,
) -> Dict[str, torch.Tensor]:
    """Render ``stems`` of ``score`` over frames ``[start, start + length)``, without normalisation.

    Frames outside ``[0, round(score.duration * sample_rate))`` are zero.

    Args:
        score: from :func:`draw_score`.
        sample_rate: in Hz.
        channels: 1 (mono), 2 (constant-power panning) or more (the mono signal repeated).
        start: first frame of the window (may be negative).
        length: window length in frames; default: the whole piece from ``start``.
        stems: which stems to render.

    Returns:
        ``{stem: Tensor(channels, length)}``, float32.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    with _one_thread():
        return _render(score, sample_rate, channels, start, length, stems)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread, restoring the setting afterwards.

    Rendering is hundreds of medium-sized ops; splitting each across threads costs more in fork/join than it
    saves, and on a loaded machine a descheduled thread stalls every op (measured: 15x-90x slower with two
    threads on a busy 2-core machine). DataLoader workers already run single-threaded.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _render(score: Score, sample_rate: int, channels: int, start: int, length: Optional[int],
            stems: Sequence[str]) -> Dict[str, torch.Tensor]:
    total = int(round(score.duration * sample_rate))
    if length is None:
        length = max(0, total - start)
    begin, end = max(start, 0), min(start + length, total)
    out = {}
    for stem in stems:
        buffer = torch.zeros(channels, length)
        for event in score.events[stem] if begin < end else ():
            onset = int(round(event.onset * sample_rate))
            first, last = max(onset, begin), min(onset + int(math.ceil(event.duration * sample_rate)), end)
            if first >= last:
                continue
            signal = _render_event(event, first - onset, last - onset, sample_rate)
            buffer[:, first - start:last - start] += _pan_gains(event.pan, channels)[:, None] * signal
        out[stem] = buffer
    return out


def _pan_gains(pan: float, channels: int) -> torch.Tensor:
    if channels != 2:
        return torch.ones(channels)
    angle = (pan + 1.0) * math.pi / 4
    return torch.tensor([math.cos(angle), math.sin(angle)])


def _render_event(event: Event, first: int, last: int, sample_rate: int) -> torch.Tensor:
    """Samples ``[first, last)`` (counted from the event's onset) of one event, mono, shape ``(last - first,)``."""
    if isinstance(event, Tone):
        return _render_tone(event, first, last, sample_rate)
    return _render_hit(event, first, last, sample_rate)


def _render_tone(tone: Tone, first: int, last: int, sample_rate: int) -> torch.Tensor:
    # Times relative to the onset are exact in float32 (integer frames < 2**24), so a window renders the
    # same samples as the whole note.
    t = torch.arange(first, last, dtype=torch.float32) / sample_rate
    k = torch.arange(1, len(tone.partials) + 1, dtype=torch.float64)
    stretch = k * torch.sqrt(1.0 + tone.inharmonicity * k * k)
    highest = max(tone.freq, tone.glide_from) * (1.0 + tone.vibrato_depth)
    count = int((stretch * highest < _NYQUIST_MARGIN * sample_rate).sum())
    if count == 0:
        return torch.zeros(last - first)
    # Partials detuned by less than 1e-3 (under 2 cents) are taken as harmonic: they come from the cheap
    # recurrence, and only the audibly stretched upper partials pay for a sine each.
    harmonic = max(1, min(count, int((stretch / k - 1.0 < 1e-3).sum())))
    amplitudes = torch.tensor(tone.partials[:count])
    phases = torch.tensor(tone.phases[:count]) * (2 * math.pi)
    cycles = _fundamental_cycles(tone, t.double())
    decay = _decay(tone.partial_damping * t, floor=0.1) if tone.partial_damping > 0 else None
    # sin(k theta + phi) = sin(k theta) cos(phi) + cos(k theta) sin(phi)
    waves = _harmonic_partials(cycles, harmonic, decay)
    low = amplitudes[:harmonic]
    signal = (low * torch.cos(phases[:harmonic])) @ waves[0] + (low * torch.sin(phases[:harmonic])) @ waves[1]
    if harmonic < count:
        stretched = _stretched_partials(cycles, stretch[harmonic:count], phases[harmonic:count], decay, harmonic)
        signal += amplitudes[harmonic:] @ stretched
    return signal * _envelope(tone, t) * tone.amplitude


def _harmonic_partials(cycles: torch.Tensor, count: int, decay: Optional[torch.Tensor]) -> torch.Tensor:
    """``d**(k-1) sin(k theta)`` and ``d**(k-1) cos(k theta)`` for ``k = 1..count``: ``(2, count, time)``.

    Args:
        cycles: ``(time,)`` float64, cycles of the fundamental since the onset (``theta = 2 pi cycles``).
        count: number of partials.
        decay: ``(time,)`` per-sample factor ``d`` by which each partial is weaker than the one below, or None.

    Built by the Chebyshev recurrence ``x[k+1] = 2 cos(theta) d x[k] - d**2 x[k-1]``: two multiply-adds
    per partial and sample instead of a sine, which makes rendering several times faster.
    """
    theta = ((2 * math.pi) * torch.frac(cycles)).float()
    waves = torch.empty(2, count, theta.numel())
    waves[0, 0] = torch.sin(theta)
    waves[1, 0] = torch.cos(theta)
    if count == 1:
        return waves
    step = 2 * waves[1, 0] if decay is None else 2 * waves[1, 0] * decay
    torch.mul(step, waves[:, 0], out=waves[:, 1])
    waves[1, 1] -= 1.0 if decay is None else decay  # d cos(2 theta) = 2 d cos(theta)^2 - d
    squared = None if decay is None else decay * decay
    for index in range(1, count - 1):
        torch.mul(step, waves[:, index], out=waves[:, index + 1])
        if squared is None:
            waves[:, index + 1] -= waves[:, index - 1]
        else:
            waves[:, index + 1].addcmul_(squared, waves[:, index - 1], value=-1.0)
    return waves


def _stretched_partials(cycles: torch.Tensor, stretch: torch.Tensor, phases: torch.Tensor,
                        decay: Optional[torch.Tensor], below: int) -> torch.Tensor:
    """``d**(k-1) sin(2 pi s_k cycles + phase_k)`` for inharmonic partials ``k = below+1, ...``: ``(K, time)``.

    Stretched partials are not multiples of the fundamental, so each needs its own sine. float32 phases
    are precise to about 1e-3 cycles over a few seconds of a high partial, far below audibility.
    """
    waves = torch.outer(stretch.float(), cycles.float())
    waves.frac_().mul_(2 * math.pi).add_(phases.float()[:, None]).sin_()  # in place: the largest tensors
    if decay is not None:
        power = decay ** below
        for row in waves:
            row *= power
            power = power * decay
    return waves


def _fundamental_cycles(tone: Tone, t: torch.Tensor) -> torch.Tensor:
    """Cycles of the fundamental elapsed since the onset (float64): an exponential glide, then vibrato."""
    ratio = tone.glide_from / tone.freq
    cycles = tone.freq * t
    if tone.glide_time > 0 and abs(math.log(ratio)) > 1e-6:
        span, log_ratio = tone.glide_time, math.log(ratio)
        # f(t) = freq * ratio ** (1 - t / span) while gliding, freq after; integrated in closed form.
        gliding = int(torch.searchsorted(t, torch.tensor([span], dtype=t.dtype)))
        if gliding > 0:
            early = t[:gliding]
            cycles[:gliding] = tone.freq * ratio * span / log_ratio * (1.0 - torch.exp(-log_ratio * early / span))
        cycles[gliding:] += tone.freq * span * ((ratio - 1.0) / log_ratio - 1.0)
    if tone.vibrato_depth > 0:
        start = int(torch.searchsorted(t, torch.tensor([tone.vibrato_delay], dtype=t.dtype)))
        late = t[start:]
        fade = ((late - tone.vibrato_delay) / 0.2).clamp(max=1.0)
        rate = tone.vibrato_rate
        index = tone.freq * tone.vibrato_depth / (2 * math.pi * rate)  # peak phase deviation, in cycles
        cycles[start:] += index * torch.sin(2 * math.pi * rate * late) * fade
    return cycles


def _envelope(tone: Tone, t: torch.Tensor) -> torch.Tensor:
    """ADSR: linear attack and decay to ``sustain``, optional exponential damping, linear release."""
    rise = t / tone.attack
    fall = 1.0 - (1.0 - tone.sustain) * ((t - tone.attack) / tone.decay).clamp(0.0, 1.0)
    envelope = torch.minimum(rise, fall)
    if tone.damping > 0:
        envelope = envelope * _decay(tone.damping * t)
    return envelope * (1.0 - (t - tone.hold) / tone.release).clamp(0.0, 1.0)


def _decay(rate_times_t: torch.Tensor, floor: float = 1e-9) -> torch.Tensor:
    """``max(exp(-x), floor)``: stopping at ``floor`` keeps products of decays out of the float32 subnormal
    range, where arithmetic is many times slower."""
    return torch.exp(-rate_times_t.clamp(max=-math.log(floor)))


def _render_hit(hit: Hit, first: int, last: int, sample_rate: int) -> torch.Tensor:
    frames = int(math.ceil(hit.duration * sample_rate))
    if hit.kind in ("kick", "snare"):
        # Every kick (snare) of a piece has the same shell tone: compute it once per piece and format.
        tone = _drum_tone(hit.kind, hit.freq, hit.sweep_from, hit.sweep_time, hit.tone_decay, frames, sample_rate)
        signal = tone[first:last].clone()
    else:
        signal = torch.zeros(last - first)
    # Noise past 15 time constants is below -130 dB: skip it. The noise of a hit comes from its own seed,
    # generated whole and sliced, so a window agrees with the whole hit.
    noise_frames = min(frames, int(math.ceil(15 * hit.noise_decay * sample_rate)))
    if first < noise_frames:
        noise = torch.randn(noise_frames, generator=torch.Generator().manual_seed(hit.noise_seed))
        if hit.kind == "hat":
            noise = torch.diff(noise, n=2, prepend=torch.zeros(2)) / 4  # second difference: a steep high-pass
        elif hit.kind == "snare":
            noise = torch.diff(noise, prepend=torch.zeros(1)) / 2
        stop = min(last, noise_frames)
        t = torch.arange(first, stop, dtype=torch.float32) / (sample_rate * hit.noise_decay)
        signal[:stop - first] += hit.noise_level * noise[first:stop] * _decay(t)
    fade_start = int(0.9 * frames)  # a linear fade over the last 10 %: no click where the hit is cut
    if last > fade_start:
        begin = max(first, fade_start)
        ramp = 1.0 - torch.arange(begin - fade_start, last - fade_start, dtype=torch.float32) / (frames - fade_start)
        signal[begin - first:] *= ramp.clamp(min=0.0)
    return hit.amplitude * signal


@lru_cache(maxsize=16)
def _drum_tone(kind: str, freq: float, sweep_from: float, sweep_time: float, decay: float, frames: int,
               sample_rate: int) -> torch.Tensor:
    """The decaying shell tone of a kick (pitch sweeping down to ``freq``) or snare: ``(frames,)``.

    Cached: callers must not modify the result.
    """
    t = torch.arange(frames, dtype=torch.float32) / sample_rate
    if sweep_time > 0:
        # f(t) = freq + (sweep_from - freq) exp(-t / sweep_time), integrated.
        cycles = freq * t + (sweep_from - freq) * sweep_time * (1 - _decay(t / sweep_time))
    else:
        cycles = freq * t
    tone = torch.sin((2 * math.pi) * cycles)
    if kind == "snare":
        tone += 0.3 * torch.sin((2 * math.pi * 1.6) * cycles)  # the drum head's second mode
    return tone * _decay(t / decay)


# --------------------------------------------------------------------------------------------- public


def _check_request(num_frames: int, sample_rate: int, channels: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if sample_rate < 1000:
        raise ValueError(f"sample_rate must be >= 1000 Hz, got {sample_rate}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")


def peak_gain(audio: torch.Tensor, target_peak: float) -> float:
    """Gain that brings the peak of ``audio`` to ``target_peak`` (1 for digital silence)."""
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    return target_peak / peak if peak > 0 else 1.0


def generate_stems(num_frames: int, sample_rate: int, channels: int,
                   generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """Render a random piece as four stems whose sum (the mix) peaks between 0.5 and 0.9.

    Args:
        num_frames: length in frames.
        sample_rate: in Hz.
        channels: 1, 2 (panned stereo), or more (mono repeated).
        generator: CPU ``torch.Generator``; equal states give equal stems.

    Returns:
        ``{"vocals", "bass", "drums", "other"}`` -> float32 ``(channels, num_frames)``; all stems share one
        gain, so ``sum(stems.values())`` is the mix that :func:`generate_music` returns for the same state.
    """
    _check_request(num_frames, sample_rate, channels)
    with _one_thread():
        score = draw_score(num_frames / sample_rate, generator)
        stems = render(score, sample_rate, channels, 0, num_frames)
        gain = peak_gain(sum(stems.values()), score.target_peak)
        return {stem: audio * gain for stem, audio in stems.items()}


def generate_music(num_frames: int, sample_rate: int, channels: int, generator: torch.Generator,
                   kind: str = "mix") -> torch.Tensor:
    """Render a random piece of music, peak-normalised to between 0.5 and 0.9.

    Args:
        num_frames: length in frames.
        sample_rate: in Hz.
        channels: 1, 2 (panned stereo), or more (mono repeated).
        generator: CPU ``torch.Generator``; equal states give equal audio.
        kind: ``"mix"`` (all four stems) or one of ``"vocals"``, ``"bass"``, ``"drums"``, ``"other"``
            (that instrument alone, normalised on its own).

    Returns:
        float32 ``(channels, num_frames)``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    _check_request(num_frames, sample_rate, channels)
    with _one_thread():
        score = draw_score(num_frames / sample_rate, generator)
        audio = render_kind(score, sample_rate, channels, kind, 0, num_frames)
        return audio * peak_gain(audio, score.target_peak)


def render_kind(score: Score, sample_rate: int, channels: int, kind: str, start: int = 0,
                length: Optional[int] = None) -> torch.Tensor:
    """The mix or one stem of ``score`` over ``[start, start + length)``, unnormalised: ``(channels, length)``."""
    stems = render(score, sample_rate, channels, start, length, STEMS if kind == "mix" else (kind,))
    return sum(stems.values()) if kind == "mix" else stems[kind]
