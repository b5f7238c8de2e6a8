"""Standard MIDI files (e.g. the Lakh MIDI dataset, Slakh's MIDI) as songs for the SoundFont renderer.

Every ``(track, channel, program)`` with notes becomes its own :class:`~musicfx.data.render.scores.Part`:
channel 10 is a drum kit, other channels take their last program change before the notes (program 0 if
none), the sustain pedal (controller 64) holds released notes until it comes up, and a track whose name
says it is sung (``vocal``, ``voice``, ``melody``...) or that plays a GM voice program gets the role
``vocals``. Tempo changes anywhere in the file apply to every track.

Pitfalls handled: a note-on without its note-off would ring to the end of the song (notes are capped at
``max_note`` seconds, and notes shorter than 1 ms are dropped); files larger than ``max_bytes`` or with more
than ``max_notes`` notes are refused, so one bad file cannot stall a worker.
"""
from __future__ import annotations

import os
from bisect import bisect_right
from collections import defaultdict, deque
from pathlib import Path
from typing import Callable, Deque, Dict, List, Sequence, Tuple, Union

from musicfx.data.render.fonts import INSTALL_HINT
from musicfx.data.render.scores import Note, Part, Song, clean_notes, role_of
from musicfx.errors import DataError, MissingDependencyError

MIDI_EXTENSIONS: Tuple[str, ...] = (".mid", ".midi", ".kar")
PathLike = Union[str, os.PathLike]


def list_midi_files(root: PathLike) -> List[Path]:
    """MIDI files below ``root`` (recursively, sorted by relative path; hidden files skipped).

    Raises:
        DataError: ``root`` is missing, a file, or holds no MIDI file.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such folder of MIDI files")
    if not root.is_dir():
        raise DataError(f"{root}: is a file, expected a folder of MIDI files")
    found = []
    for directory, folders, files in os.walk(root, followlinks=True):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        found += [Path(directory) / f for f in files if not f.startswith(".") and f.lower().endswith(MIDI_EXTENSIONS)]
    if not found:
        raise DataError(f"{root}: no MIDI files found (looked for {' '.join(MIDI_EXTENSIONS)} in all sub-folders)")
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def _mido():
    try:
        import mido
    except ImportError:
        raise MissingDependencyError(f"reading MIDI files needs the mido package: {INSTALL_HINT}") from None
    return mido


def read_midi(path: PathLike, max_note: float = 8.0, max_duration: float = 900.0, max_bytes: int = 8 << 20,
              max_notes: int = 200_000, name: str = "") -> Song:
    """Parse a Standard MIDI file into a song (see the module docstring).

    Args:
        path: the file.
        max_note: notes are cut to this many seconds.
        max_duration: the song is cut here (seconds).
        max_bytes: larger files are refused.
        max_notes: files with more notes are refused.
        name: the song's label (default: the file name).

    Returns:
        A :class:`Song` (possibly without parts, when the file holds no notes).

    Raises:
        DataError: the file cannot be parsed, or is over the limits.
    """
    mido = _mido()
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if size > max_bytes:
        raise DataError(f"{path}: {size} bytes, over the {max_bytes}-byte limit for a MIDI file")
    try:
        midi = mido.MidiFile(str(path), clip=True)
    except Exception as error:  # mido raises OSError, EOFError, ValueError, KeyError... on bad files
        raise DataError(f"{path}: not a readable MIDI file ({type(error).__name__}: {error})") from None
    if midi.type == 2 or midi.ticks_per_beat <= 0:
        raise DataError(f"{path}: MIDI type {midi.type} with {midi.ticks_per_beat} ticks per beat is not supported")
    seconds = _tick_clock(midi)
    parts: List[Part] = []
    total = 0
    for number, track in enumerate(midi.tracks):
        track_name = ""
        programs = [0] * 16
        open_notes: Dict[Tuple[int, int], Deque[Tuple[int, int]]] = defaultdict(deque)
        notes: Dict[Tuple[int, int], List[Note]] = defaultdict(list)  # (channel, program) -> notes
        pedal = [False] * 16  # sustain pedal (controller 64) down, per channel
        held: Dict[int, List[Tuple[int, int, int, int]]] = defaultdict(list)  # released under the pedal
        tick = 0

        def finish(channel: int, start: int, velocity: int, pitch: int, program: int, end: int) -> None:
            nonlocal total
            notes[(channel, program)].append(Note(seconds(start), seconds(end), pitch, velocity))
            total += 1
            if total > max_notes:
                raise DataError(f"{path}: more than {max_notes} notes; too large to render")

        for message in track:
            tick += message.time
            kind = message.type
            if kind == "track_name" and not track_name:
                track_name = message.name.strip()
            elif kind == "program_change":
                programs[message.channel] = message.program
            elif kind == "control_change" and message.control == 64:
                down = message.value >= 64
                if pedal[message.channel] and not down:  # pedal up: the held notes end now
                    for entry in held.pop(message.channel, []):
                        finish(message.channel, *entry, end=tick)
                pedal[message.channel] = down
            elif kind == "note_on" and message.velocity > 0:
                channel = message.channel
                for entry in [e for e in held.get(channel, []) if e[2] == message.note]:  # struck again
                    held[channel].remove(entry)
                    finish(channel, *entry, end=tick)
                open_notes[(channel, message.note)].append((tick, message.velocity))
            elif kind in ("note_off", "note_on"):
                queue = open_notes.get((message.channel, message.note))
                if queue:
                    start, velocity = queue.popleft()
                    entry = (start, velocity, message.note, programs[message.channel])
                    if pedal[message.channel]:
                        held[message.channel].append(entry)
                    else:
                        finish(message.channel, *entry, end=tick)
        for channel, entries in held.items():  # the pedal never came up: the notes end with the track
            for entry in entries:
                finish(channel, *entry, end=max(tick, entry[0]))
        for (channel, note), queue in open_notes.items():  # note-ons never released: capped below
            for start, velocity in queue:
                begin = seconds(start)
                notes[(channel, programs[channel])].append(Note(begin, begin + max_note, note, velocity))
        for (channel, program), found in sorted(notes.items()):
            cleaned = clean_notes(found, max_note, max_duration)
            if not cleaned:
                continue
            drum = channel == 9
            label = track_name or f"track {number}"
            parts.append(Part(f"{label} (channel {channel + 1}, program {program})", program, drum, cleaned,
                              role=role_of(program, drum, track_name)))
    duration = min(max_duration, max((part.end for part in parts), default=0.0))
    return Song(name or path.name, duration, tuple(parts))


def _tick_clock(midi) -> Callable[[int], float]:
    """A function from absolute tick to seconds, following every tempo change of the file."""
    changes: List[Tuple[int, int]] = []
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "set_tempo":
                changes.append((tick, message.tempo))
    changes.sort()
    # (tick, seconds at that tick, seconds per tick from there)
    table: List[Tuple[int, float, float]] = [(0, 0.0, 500000 / 1e6 / midi.ticks_per_beat)]
    for tick, tempo in changes:
        last_tick, last_seconds, per_tick = table[-1]
        table.append((tick, last_seconds + (tick - last_tick) * per_tick, tempo / 1e6 / midi.ticks_per_beat))
    starts = [row[0] for row in table]

    def seconds(tick: int) -> float:
        row = table[bisect_right(starts, tick) - 1]
        return row[1] + (tick - row[0]) * row[2]

    return seconds


def write_midi(path: PathLike, tracks: Sequence[Tuple[int, bool, Sequence[Tuple[float, float, int, int]]]],
               tempo_bpm: float = 120.0, names: Sequence[str] = ()) -> Path:
    """Write a small type-1 MIDI file: ``tracks`` of ``(program, is_drum, [(start s, end s, pitch, velocity)])``.

    For tests and examples; each track gets its own channel (drums on channel 10).
    """
    mido = _mido()
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    tempo = mido.bpm2tempo(tempo_bpm)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    midi.tracks.append(meta)
    melodic = iter(c for c in range(16) if c != 9)
    for index, (program, drum, notes) in enumerate(tracks):
        channel = 9 if drum else next(melodic)
        events = []
        for start, end, pitch, velocity in notes:
            events.append((mido.second2tick(start, 480, tempo), 1, pitch, velocity))
            events.append((mido.second2tick(end, 480, tempo), 0, pitch, 0))
        events.sort(key=lambda event: (event[0], event[1]))
        track = mido.MidiTrack()
        if index < len(names):
            track.append(mido.MetaMessage("track_name", name=names[index], time=0))
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        now = 0
        for tick, on, pitch, velocity in events:
            kind = "note_on" if on else "note_off"
            track.append(mido.Message(kind, channel=channel, note=pitch, velocity=velocity, time=tick - now))
            now = tick
        midi.tracks.append(track)
    path = Path(path)
    midi.save(str(path))
    return path
