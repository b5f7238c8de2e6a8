"""Scores to render through a SoundFont: notes, parts (one instrument each), songs, and how parts map to stems.

A :class:`Song` is a list of :class:`Part` objects; a part is one General MIDI instrument (a program, or a
drum kit) with its notes in seconds. Both the procedural composer (:mod:`musicfx.data.render.composer`) and
the MIDI reader (:mod:`musicfx.data.render.midi`) produce songs; :func:`stem_of` decides which stem a part
is rendered into.

Stems are named freely. A part goes to the first rule that matches among the requested stems:

1. its General MIDI family name (``piano``, ``guitar``, ``strings``, ... see :data:`GM_FAMILIES`);
2. its role: ``vocals`` (a GM voice program -- choir aahs, voice oohs, synth voice -- or the song's melodic
   lead), ``bass`` (GM basses), ``drums`` (a drum kit);
3. ``other`` (or ``mix``, a source of whole mixes), which takes every part no other stem claimed.

So ``[vocals, drums, bass, other]`` is MUSDB's grouping, ``[piano, guitar, bass, drums]`` one stem per
family (parts of other families are left out), and ``[vocals, drums, bass, other]`` with one instrument per
stem (``one_per_stem`` in :class:`~musicfx.data.rendered.RenderedStems`) the debleed layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from musicfx.data.sources import MIX  # the stem of a source of whole mixes: every part goes into it

#: The 16 General MIDI families of eight programs each, and the name of drum kits.
GM_FAMILIES: Tuple[str, ...] = (
    "piano", "chromatic", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth_lead", "synth_pad", "synth_fx", "ethnic", "percussive", "sound_fx",
)
DRUMS = "drums"
#: GM voice programs (0-based): choir aahs, voice oohs, synth voice.
VOICE_PROGRAMS: Tuple[int, ...] = (52, 53, 54)
#: GM drum kits (bank 128): standard, room, power, electronic, TR-808, jazz, brush.
DRUM_KITS: Tuple[int, ...] = (0, 8, 16, 24, 25, 32, 40)
#: Roles a part can play; ``other`` takes the rest.
ROLES: Tuple[str, ...] = ("vocals", "bass", "drums", "other")
# Track names that mark a sung (or lead) melody in MIDI files.
VOCAL_NAMES: Tuple[str, ...] = ("vocal", "voice", "vox", "sing", "melody", "lead vox", "chorus", "choir")


def gm_family(program: int, is_drum: bool = False) -> str:
    """The General MIDI family of a 0-based program (``drums`` for a drum kit)."""
    if is_drum:
        return DRUMS
    if not 0 <= program <= 127:
        raise ValueError(f"a General MIDI program is 0..127, got {program}")
    return GM_FAMILIES[program // 8]


@dataclass(frozen=True)
class Note:
    """One note: onset and release in seconds, MIDI pitch and velocity (1..127)."""

    start: float
    end: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Part:
    """One instrument of a song.

    Attributes:
        name: a label (the MIDI track name, or the composer's role and program).
        program: 0-based General MIDI program; for a drum kit, the kit (bank 128 preset).
        is_drum: a drum kit (rendered on MIDI channel 10, where pitch selects the drum).
        notes: sorted by onset.
        role: ``vocals``, ``bass``, ``drums`` or ``other`` (see the module docstring).
        pan: -1 (left) .. 1 (right), sent as MIDI controller 10.
        gain_db: level of the part in the mix, applied after rendering.
    """

    name: str
    program: int
    is_drum: bool
    notes: Tuple[Note, ...]
    role: str = "other"
    pan: float = 0.0
    gain_db: float = 0.0

    @property
    def family(self) -> str:
        return gm_family(self.program, self.is_drum)

    @property
    def end(self) -> float:
        return max((note.end for note in self.notes), default=0.0)


@dataclass(frozen=True)
class Song:
    """Parts that play together for ``duration`` seconds."""

    name: str
    duration: float
    parts: Tuple[Part, ...]
    target_peak: float = 0.8  # peak of the normalised mix
    info: Dict[str, object] = field(default_factory=dict, compare=False)


def role_of(program: int, is_drum: bool, name: str = "") -> str:
    """The role of a MIDI track from its program and name (``vocals`` for voice programs and vocal names)."""
    if is_drum:
        return "drums"
    lowered = name.lower()
    if program in VOICE_PROGRAMS or any(word in lowered for word in VOCAL_NAMES):
        return "vocals"
    if gm_family(program) == "bass":
        return "bass"
    return "other"


def stem_of(part: Part, stems: Sequence[str]) -> Optional[str]:
    """The stem among ``stems`` that ``part`` is rendered into, or ``None`` when no stem takes it."""
    if part.family in stems:
        return part.family
    if part.role in stems and part.role != "other":
        return part.role
    for catch_all in ("other", MIX):
        if catch_all in stems:
            return catch_all
    return None


def check_stems(stems: Sequence[str]) -> Tuple[str, ...]:
    """Stem names a rendered source can fill: family names, roles, or ``other``."""
    if isinstance(stems, str):
        stems = (stems,)
    stems = tuple(str(stem) for stem in stems)
    if not stems:
        raise ValueError("stems must name at least one stem")
    if len(set(stems)) != len(stems):
        raise ValueError(f"stem names must be distinct, got {stems}")
    known = set(GM_FAMILIES) | set(ROLES) | {MIX}
    unknown = [stem for stem in stems if stem not in known]
    if unknown:
        raise ValueError(
            f"a rendered source cannot fill stems {unknown}: name roles ({', '.join(ROLES)}), General MIDI "
            f"families ({', '.join(GM_FAMILIES)}) or {MIX!r} (everything)"
        )
    if MIX in stems and len(stems) > 1:
        raise ValueError(f"{MIX!r} takes every part: it cannot be combined with other stems, got {stems}")
    return stems


def clean_notes(notes: Sequence[Note], max_note: float, duration: Optional[float] = None,
                min_note: float = 1e-3) -> Tuple[Note, ...]:
    """Notes fit to render: shorter than ``min_note`` dropped, longer than ``max_note`` cut, sorted.

    A note-on without its note-off would otherwise ring to the end of the song; velocity 0 is dropped and
    pitches and velocities are clamped to MIDI's range.
    """
    kept = []
    for note in notes:
        if duration is not None and note.start >= duration:
            continue
        length = min(note.end - note.start, max_note)
        if length < min_note or note.velocity <= 0 or not 0 <= note.pitch <= 127:
            continue
        kept.append(Note(max(0.0, note.start), max(0.0, note.start) + length, int(note.pitch),
                         int(min(127, note.velocity))))
    return tuple(sorted(kept, key=lambda note: (note.start, note.pitch)))
