"""Music rendered through a SoundFont: scores (procedural or MIDI files), the synthesizer binding, stems.

The sources that feed training live in :mod:`musicfx.data.rendered`; this package holds what they use:
:mod:`~musicfx.data.render.scores` (notes, parts, songs, stem groups), :mod:`~musicfx.data.render.composer`
(procedural General MIDI songs), :mod:`~musicfx.data.render.midi` (Standard MIDI files) and
:mod:`~musicfx.data.render.fonts` (finding and loading the SoundFont, rendering one part). Importing it
needs no optional package; rendering needs ``pip install 'musicfx[render]'``.
"""
from musicfx.data.render.composer import compose_song
from musicfx.data.render.fonts import DEFAULT_SOUNDFONT, SOUNDFONT_ENV, load_synth, resolve_soundfont
from musicfx.data.render.midi import list_midi_files, read_midi, write_midi
from musicfx.data.render.scores import GM_FAMILIES, Note, Part, Song, gm_family, stem_of

__all__ = [
    "DEFAULT_SOUNDFONT",
    "GM_FAMILIES",
    "Note",
    "Part",
    "SOUNDFONT_ENV",
    "Song",
    "compose_song",
    "gm_family",
    "list_midi_files",
    "load_synth",
    "read_midi",
    "resolve_soundfont",
    "stem_of",
    "write_midi",
]
