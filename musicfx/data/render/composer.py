"""Procedural songs for the SoundFont renderer: the built-in generator's composer, extended to General MIDI.

The harmony comes from the built-in generator (:mod:`musicfx.data.generator`): a tempo, a key (major or
minor), four-chord progressions and triads on scale degrees. On top of it this module draws:

* **sections**: an optional intro, then verses, choruses and sometimes a bridge of 4 or 8 bars, each with its
  own progression, energy (velocity) and arrangement (which parts play);
* **instruments** per General MIDI family: a drum kit (standard, room, power, electronic, TR-808, jazz,
  brush), a bass (GM basses), a lead melody (a GM voice program -- choir aahs, voice oohs, synth voice -- or
  a synth lead, reed or pipe: this is *not* real singing) and one to three accompaniment parts (piano,
  chromatic percussion, organ, guitars, strings, ensembles, brass, reeds, pipes, synth leads and pads)
  with a playing style fit to the family (block chords, arpeggios, strums, pads, stabs);
* **drum grooves** (rock, half time, four on the floor, shuffle) with a crash on each section's downbeat
  and a fill (toms or snare) in each section's last bar;
* **humanized** timing (a few ms of jitter, strums spread over 10-30 ms) and velocity.

Everything is a pure function of the ``torch.Generator`` given.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch

# The generator's harmony: private names, imported on purpose so that both composers share one theory.
from musicfx.data.generator import (_MAJOR, _MAJOR_PROGRESSIONS, _MINOR, _MINOR_PROGRESSIONS, _degree_pitch,
                                    _triad, _Uniforms)
from musicfx.data.render.scores import DRUM_KITS, VOICE_PROGRAMS, Note, Part, Song

# Accompaniment families -> (program range, playing styles).
_ACCOMPANIMENT = {
    "piano": (range(0, 8), ("block", "arpeggio", "comp")),
    "chromatic": (range(8, 16), ("arpeggio",)),
    "organ": (range(16, 24), ("pad", "comp")),
    "guitar": (range(24, 32), ("strum", "arpeggio", "comp")),
    "strings": ((40, 41, 42, 44, 45, 46), ("pad", "arpeggio")),
    "ensemble": (range(48, 52), ("pad",)),
    "brass": (range(56, 64), ("stab", "pad")),
    "reed": (range(64, 72), ("pad", "stab")),
    "pipe": (range(72, 80), ("pad", "arpeggio")),
    "synth_lead": (range(80, 88), ("arpeggio", "stab")),
    "synth_pad": (range(88, 96), ("pad",)),
}
_LEADS = tuple(range(80, 88)) + (64, 65, 66, 68, 71, 73, 74)
_SECTION_ENERGY = {"intro": 0.6, "verse": 0.75, "chorus": 1.0, "bridge": 0.85}
# GM drum-map pitches.
_KICK, _SNARE, _CLOSED_HAT, _PEDAL_HAT, _OPEN_HAT, _CRASH, _RIDE = 36, 38, 42, 44, 46, 49, 51
_TOMS = (50, 48, 47, 45, 43, 41)
_GROOVES = ("rock", "half", "four", "shuffle")

Section = Tuple[str, float, float, Tuple[int, ...]]  # (kind, start beat, end beat, progression)


def compose_song(duration: float, generator: torch.Generator, name: str = "", one_per_stem: bool = False) -> Song:
    """Draw a random song of ``duration`` seconds: drums, bass, a lead melody and accompaniment.

    Args:
        duration: seconds; notes past it are cut when rendering.
        generator: CPU ``torch.Generator``; the song is a pure function of its state.
        name: the song's label.
        one_per_stem: one accompaniment part only (every MUSDB stem is then a single instrument, as a
            debleed track is one microphone's instrument).

    Returns:
        A :class:`~musicfx.data.render.scores.Song`; the lead has role ``vocals``.
    """
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    rng = _Uniforms(generator)
    tempo = rng.uniform(72.0, 160.0)
    key = rng.integer(0, 12)
    minor = rng.chance(0.4)
    beat = 60.0 / tempo
    scale = _MINOR if minor else _MAJOR
    sections = _sections(rng, minor, int(math.ceil(duration / (4 * beat))) + 1)
    swing = rng.uniform(0.0, 0.12) if rng.chance(0.3) else 0.0
    timing = rng.uniform(0.003, 0.015)  # humanization, seconds
    parts = [
        _drums(rng, sections, beat, timing),
        _bass(rng, sections, key, scale, beat, timing),
        _lead(rng, sections, key, scale, beat, timing),
    ]
    families = list(_ACCOMPANIMENT)
    for _ in range(1 if one_per_stem else rng.integer(1, 4)):
        family = rng.choice(families)
        families.remove(family)
        parts.append(_accompaniment(rng, family, sections, key, scale, beat, timing, swing))
    parts = [part for part in parts if part.notes]
    info = dict(tempo=tempo, key=key, minor=minor, sections=[s[0] for s in sections])
    return Song(name, duration, tuple(parts), target_peak=rng.uniform(0.5, 0.9), info=info)


def _sections(rng: _Uniforms, minor: bool, bars: int) -> List[Section]:
    progressions = _MINOR_PROGRESSIONS if minor else _MAJOR_PROGRESSIONS
    by_kind = {kind: rng.choice(progressions) for kind in ("intro", "verse", "chorus", "bridge")}
    sections: List[Section] = []
    bar = 0
    kind = "intro" if rng.chance(0.5) else "verse"
    while bar < bars:
        length = 2 if kind == "intro" else rng.choice((4, 4, 8))
        sections.append((kind, 4.0 * bar, 4.0 * (bar + length), by_kind[kind]))
        bar += length
        kind = {"intro": "verse", "verse": "chorus", "bridge": "chorus"}.get(kind) or (
            "bridge" if rng.chance(0.3) else "verse")
    return sections


def _chords(section: Section) -> List[Tuple[float, float, int]]:
    """``(start beat, end beat, scale degree)``: one chord per bar of the section, looping its progression."""
    _, start, end, progression = section
    return [(b, min(b + 4.0, end), progression[i % len(progression)])
            for i, b in enumerate(_steps(start, end, 4.0))]


def _steps(start: float, end: float, step: float) -> List[float]:
    count = int(math.floor((end - start) / step + 1e-9))
    return [start + i * step for i in range(count)]


def _note(rng: _Uniforms, beat: float, onset: float, length: float, pitch: int, velocity: float,
          timing: float, swing: float = 0.0) -> Note:
    """A humanized note: onset jittered by ``timing`` s, off-beat eighths delayed by ``swing`` beats."""
    if swing and abs(onset * 2 - round(onset * 2)) < 1e-6 and round(onset * 2) % 2 == 1:
        onset += swing
    jitter = timing * (rng.uniform() + rng.uniform() - 1.0)
    start = max(0.0, onset * beat + jitter)
    vel = int(max(1, min(127, round(velocity + rng.uniform(-8.0, 8.0)))))
    return Note(start, start + max(0.02, length * beat), int(pitch), vel)


def _drums(rng: _Uniforms, sections: Sequence[Section], beat: float, timing: float) -> Part:
    groove = rng.choice(_GROOVES)
    base = rng.uniform(80.0, 110.0)
    notes: List[Note] = []
    for index, section in enumerate(sections):
        kind, start, end, _ = section
        energy = _SECTION_ENERGY[kind]
        ride = kind == "chorus" and rng.chance(0.4)
        last_bar = end - 4.0 if index + 1 < len(sections) else math.inf
        for bar in _steps(start, end, 4.0):
            if bar == start and index > 0:
                notes.append(_note(rng, beat, bar, 1.5, _CRASH, base * energy + 10, timing))
            if bar >= last_bar:
                notes.extend(_fill(rng, beat, bar, base * energy, timing))
                continue
            notes.extend(_groove(rng, groove, beat, bar, base * energy, timing, ride, kind == "intro"))
    kit = rng.choice(DRUM_KITS)
    return Part(f"drums kit {kit}", kit, True, tuple(sorted(notes, key=lambda n: n.start)),
                role="drums", pan=0.0, gain_db=rng.uniform(-4.0, 0.0))


def _groove(rng: _Uniforms, groove: str, beat: float, bar: float, velocity: float, timing: float, ride: bool,
            sparse: bool) -> List[Note]:
    hat = _RIDE if ride else (_PEDAL_HAT if sparse else _CLOSED_HAT)
    notes = []
    if groove == "four":
        kicks, snares = (0, 1, 2, 3), (1, 3)
    elif groove == "half":
        kicks, snares = (0, 2.5), (2,)
    else:
        kicks, snares = ((0, 2, 2.5) if rng.chance(0.5) else (0, 2)), (1, 3)
    for position in kicks:
        notes.append(_note(rng, beat, bar + position, 0.25, _KICK, velocity + 5, timing))
    if not sparse:
        for position in snares:
            notes.append(_note(rng, beat, bar + position, 0.25, _SNARE, velocity, timing))
    step = 1.0 / 3.0 if groove == "shuffle" else 0.5
    for i, position in enumerate(_steps(0.0, 4.0, step)):
        if groove == "shuffle" and i % 3 == 1:
            continue
        accent = 12 if i % 2 == 0 else 0
        pitch = _OPEN_HAT if groove == "four" and abs(position % 1 - 0.5) < 1e-6 else hat
        notes.append(_note(rng, beat, bar + position, 0.2, pitch, velocity - 20 + accent, timing))
    return notes


def _fill(rng: _Uniforms, beat: float, bar: float, velocity: float, timing: float) -> List[Note]:
    """A bar ending a section: two beats of groove, then a tom run or a snare roll."""
    notes = [_note(rng, beat, bar, 0.25, _KICK, velocity + 5, timing),
             _note(rng, beat, bar + 1, 0.25, _SNARE, velocity, timing)]
    toms = rng.chance(0.6)
    for i, position in enumerate(_steps(2.0, 4.0, 0.25)):
        pitch = _TOMS[min(len(_TOMS) - 1, i * len(_TOMS) // 8)] if toms else _SNARE
        notes.append(_note(rng, beat, bar + position, 0.25, pitch, velocity - 10 + 3 * i, timing))
    return notes


def _bass(rng: _Uniforms, sections: Sequence[Section], key: int, scale: Sequence[int], beat: float,
          timing: float) -> Part:
    program = rng.choice((32, 33, 33, 34, 35, 36, 37, 38, 39))
    base = rng.uniform(85.0, 110.0)
    notes: List[Note] = []
    for section in sections:
        pattern = rng.choice(("whole", "quarters", "eighths", "root-fifth", "syncopated"))
        energy = _SECTION_ENERGY[section[0]]
        for start, end, degree in _chords(section):
            root = _degree_pitch(key, scale, degree, 36 if key < 5 else 24)
            if pattern == "whole":
                steps = [(start, end - start, root)]
            elif pattern == "quarters":
                steps = [(b, 0.9, root) for b in _steps(start, end, 1.0)]
            elif pattern == "eighths":
                steps = [(b, 0.45, root + (12 if i % 4 == 3 else 0)) for i, b in enumerate(_steps(start, end, 0.5))]
            elif pattern == "root-fifth":
                steps = [(b, 0.9, root + (7 if i % 2 else 0)) for i, b in enumerate(_steps(start, end, 1.0))]
            else:
                steps = [(start + b, 0.4, root) for b in (0.0, 1.5, 2.5, 3.0) if start + b < end]
            for onset, length, pitch in steps:
                notes.append(_note(rng, beat, onset, length * rng.uniform(0.8, 1.0), pitch, base * energy, timing))
    return Part(f"bass program {program}", program, False, tuple(notes), role="bass",
                pan=rng.uniform(-0.1, 0.1), gain_db=rng.uniform(-4.0, 0.0))


def _lead(rng: _Uniforms, sections: Sequence[Section], key: int, scale: Sequence[int], beat: float,
          timing: float) -> Part:
    """The melody (role ``vocals``): phrases of one or two bars with rests, chord tones on strong beats."""
    program = rng.choice(VOICE_PROGRAMS) if rng.chance(0.6) else rng.choice(_LEADS)
    base = rng.uniform(80.0, 105.0)
    notes: List[Note] = []
    degree = rng.integer(7, 12)
    for section in sections:
        if section[0] == "intro":
            continue
        energy = _SECTION_ENERGY[section[0]]
        register = 60 if section[0] != "chorus" else 62
        for start, end, chord in _chords(section):
            if rng.chance(0.25):  # a breath: this bar rests
                continue
            position = start + rng.choice((0.0, 0.0, 0.5, 1.0))
            while position < end - 0.25:
                length = min(end - position, rng.choice((0.5, 0.5, 1.0, 1.0, 1.5, 2.0)))
                if abs(position % 2.0) < 1e-6:  # strong beat: move to a chord tone
                    degree = chord + rng.choice((0, 2, 4)) + 7 * (degree // 7)
                else:
                    degree += rng.choice((-2, -1, -1, 1, 1, 2))
                degree = max(3, min(16, degree))
                pitch = _degree_pitch(key, scale, degree, register - 12)
                notes.append(_note(rng, beat, position, length * rng.uniform(0.85, 1.0), pitch, base * energy,
                                   timing))
                position += length
    return Part(f"lead program {program}", program, False, tuple(notes), role="vocals",
                pan=rng.uniform(-0.1, 0.1), gain_db=rng.uniform(-3.0, 0.0))


def _accompaniment(rng: _Uniforms, family: str, sections: Sequence[Section], key: int, scale: Sequence[int],
                   beat: float, timing: float, swing: float) -> Part:
    programs, styles = _ACCOMPANIMENT[family]
    program = rng.choice(tuple(programs))
    style = rng.choice(styles)
    base = rng.uniform(65.0, 95.0)
    octave = rng.choice((48, 60))
    notes: List[Note] = []
    for section in sections:
        energy = _SECTION_ENERGY[section[0]]
        if section[0] == "verse" and rng.chance(0.2):  # thinner arrangement: this part sits the verse out
            continue
        for start, end, degree in _chords(section):
            triad = _triad(key, scale, degree, octave)
            voicing = triad + [triad[0] + 12] if rng.chance(0.5) else triad
            velocity = base * energy
            if style in ("block", "pad"):
                hold = (end - start) * (0.98 if style == "pad" else rng.uniform(0.5, 0.95))
                for pitch in voicing:
                    notes.append(_note(rng, beat, start, hold, pitch, velocity, timing))
            elif style == "arpeggio":
                step = rng.choice((0.5, 0.25)) if family != "strings" else 0.5
                for i, b in enumerate(_steps(start, end, step)):
                    pitch = voicing[i % len(voicing)] if i % 6 < 4 else voicing[-1 - i % 2]
                    notes.append(_note(rng, beat, b, step * 1.5, pitch, velocity - 5 * (i % 2), timing, swing))
            elif style == "strum":
                pattern = rng.choice(((0.0, 1.0, 2.0, 3.0), (0.0, 1.5, 2.0, 3.0, 3.5), (0.0, 2.0)))
                spread = rng.uniform(0.01, 0.03)
                for i, b in enumerate(pattern):
                    down = i % 2 == 0
                    for j, pitch in enumerate(voicing if down else voicing[::-1]):
                        note = _note(rng, beat, start + b, 0.9, pitch, velocity - (0 if down else 10), timing, swing)
                        notes.append(Note(note.start + j * spread, note.end, note.pitch, note.velocity))
            else:  # comp / stab: short chords on off-beats or a rhythm
                hits = (0.5, 1.5, 2.5, 3.5) if style == "comp" else rng.choice(((0.0, 1.5), (0.0, 2.5, 3.0)))
                for b in hits:
                    for pitch in voicing:
                        notes.append(_note(rng, beat, start + b, 0.35, pitch, velocity, timing, swing))
    return Part(f"{family} program {program} {style}", program, False, tuple(sorted(notes, key=lambda n: n.start)),
                role="other", pan=rng.uniform(-0.7, 0.7), gain_db=rng.uniform(-6.0, 0.0))
