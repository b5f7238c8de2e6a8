"""SoundFont synthesis: find the font, load it once per process, render one part at a time.

Two bindings are supported, chosen by ``backend``:

* ``tinysoundfont`` (the default; ``pip install 'musicfx[render]'``): a self-contained binary wheel of
  TinySoundFont, about twice as fast as FluidSynth here (``benchmarks/bench_render.py``). It has no reverb
  or chorus, so its stems are always dry. Its wheel lists ``pyaudio`` as a dependency (used only for live
  playback, never here), which pip builds from source where no wheel exists: that needs PortAudio's
  headers (Debian: ``portaudio19-dev``), or install it with ``pip install --no-deps tinysoundfont``.
* ``fluidsynth`` (``pip install pyfluidsynth`` plus the system library, Debian ``libfluidsynth3``): the
  reference synthesizer; with ``effects=True`` the font's reverb and chorus are on.

``auto`` takes tinysoundfont when it imports, else FluidSynth.

The font comes from the ``soundfont`` argument, else ``$MUSICFX_SOUNDFONT``, else Debian's
``/usr/share/sounds/sf2/FluidR3_GM.sf2`` (package ``fluid-soundfont-gm``, MIT licensed).
"""
from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple, Union

import numpy as np

from musicfx.data.render.scores import Part
from musicfx.errors import DataError, MissingDependencyError

SOUNDFONT_ENV = "MUSICFX_SOUNDFONT"
DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
BACKENDS: Tuple[str, ...] = ("auto", "tinysoundfont", "fluidsynth")
INSTALL_HINT = "pip install 'musicfx[render]'"
_FONT_HINT = (f"pass --data.init_args.soundfont PATH, set ${SOUNDFONT_ENV}, or install Debian's fluid-soundfont-gm "
              f"(FluidR3 GM at {DEFAULT_SOUNDFONT})")
_DRUM_CHANNEL = 9
_MELODIC_CHANNEL = 0
# Loaded synthesizers per process, keyed by (font, sample rate, backend, effects): loading FluidR3 GM takes
# ~1.5 s, and DataLoader workers forked after the first load inherit it for free.
_SYNTHS: Dict[Tuple[str, int, str, bool], "SoundFontSynth"] = {}

PathLike = Union[str, os.PathLike]


def resolve_soundfont(soundfont: Optional[PathLike] = None) -> Path:
    """The SoundFont file to use: ``soundfont``, else ``$MUSICFX_SOUNDFONT``, else Debian's FluidR3 GM.

    Raises:
        DataError: the file is missing, is not a ``.sf2``/``.sf3``, or is not a RIFF SoundFont.
    """
    if soundfont is not None and str(soundfont) != "":
        path, origin = Path(soundfont).expanduser(), "soundfont"
    elif os.environ.get(SOUNDFONT_ENV):
        path, origin = Path(os.environ[SOUNDFONT_ENV]).expanduser(), f"${SOUNDFONT_ENV}"
    else:
        path, origin = Path(DEFAULT_SOUNDFONT), "the default"
    if not path.is_file():
        raise DataError(f"{path}: SoundFont not found (from {origin}); {_FONT_HINT}")
    if path.suffix.lower() not in (".sf2", ".sf3"):
        raise DataError(f"{path}: expected a SoundFont (.sf2 or .sf3)")
    try:
        with open(path, "rb") as file:
            header = file.read(12)
    except OSError as error:
        raise DataError(f"{path}: cannot read the SoundFont ({error.strerror or error})") from None
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise DataError(f"{path}: not a SoundFont (no RIFF sfbk header); the file is corrupt or of another kind")
    return path


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
    except OSError:  # pyfluidsynth without the system library raises while loading it
        return None


def pick_backend(backend: str = "auto") -> str:
    """The binding ``backend`` resolves to on this machine.

    Raises:
        MissingDependencyError: the binding does not import (the message names the extra).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend in ("auto", "tinysoundfont") and _import("tinysoundfont") is not None:
        return "tinysoundfont"
    if backend in ("auto", "fluidsynth") and _import("fluidsynth") is not None:
        return "fluidsynth"
    if backend == "fluidsynth":
        raise MissingDependencyError(
            "rendering with FluidSynth needs pyfluidsynth and the FluidSynth library: pip install pyfluidsynth, "
            "apt-get install libfluidsynth3 (or use backend: tinysoundfont)"
        )
    raise MissingDependencyError(
        f"rendering music through a SoundFont needs the tinysoundfont package: {INSTALL_HINT} "
        "(or pip install --no-deps tinysoundfont); a SoundFont is needed too: " + _FONT_HINT
    )


class SoundFontSynth:
    """One SoundFont loaded into one synthesizer at one sample rate; renders parts one at a time.

    Use :func:`load_synth`, which loads each font once per process.

    Args:
        path: a checked SoundFont file (:func:`resolve_soundfont`).
        sample_rate: in Hz.
        backend: ``tinysoundfont`` or ``fluidsynth`` (resolved, not ``auto``).
        effects: the font's reverb and chorus (FluidSynth only; TinySoundFont is always dry).

    Raises:
        DataError: the font cannot be loaded (corrupt, or not a SoundFont the binding reads).
        ValueError: ``effects`` asked of TinySoundFont, or a sample rate under 1 kHz.
    """

    def __init__(self, path: Path, sample_rate: int, backend: str, effects: bool = False) -> None:
        if sample_rate < 1000:
            raise ValueError(f"sample_rate must be >= 1000 Hz, got {sample_rate}")
        if backend == "tinysoundfont" and effects:
            raise ValueError("TinySoundFont has no reverb or chorus: use backend 'fluidsynth' for effects=True")
        self.path = path
        self.sample_rate = int(sample_rate)
        self.backend = backend
        self.effects = effects
        self._warned: Set[Tuple[int, int]] = set()
        if backend == "tinysoundfont":
            import tinysoundfont  # an optional dependency (musicfx[render]): imported only to render

            self._synth = tinysoundfont.Synth(samplerate=self.sample_rate)
            try:
                self._font = self._synth.sfload(str(path))
            except (RuntimeError, OSError) as error:
                raise DataError(f"{path}: TinySoundFont cannot load this SoundFont ({error}); the file is corrupt "
                                f"or not a SoundFont 2") from None
        else:
            import fluidsynth  # optional, and it loads the system library: imported only to render

            self._synth = fluidsynth.Synth(samplerate=float(self.sample_rate))
            self._synth.setting("synth.reverb.active", int(effects))
            self._synth.setting("synth.chorus.active", int(effects))
            self._font = self._synth.sfload(str(path))
            if self._font < 0:
                raise DataError(f"{path}: FluidSynth cannot load this SoundFont; the file is corrupt or not a "
                                "SoundFont")

    # ----------------------------------------------------------------------------------------- presets
    def has_preset(self, bank: int, program: int) -> bool:
        """Whether the font holds ``(bank, program)`` (bank 128: drum kits)."""
        if self.backend == "tinysoundfont":
            return self._synth.sfpreset_name(self._font, bank, program) is not None
        return self._synth.program_select(_MELODIC_CHANNEL, self._font, bank, program) == 0

    def preset_for(self, part: Part) -> Tuple[int, int]:
        """``(bank, program)`` to play ``part`` with: its own, else the family's first, else piano / kit 0.

        A substitution is warned about once per process and program.
        """
        bank = 128 if part.is_drum else 0
        candidates = [part.program, 0] if part.is_drum else [part.program, part.program // 8 * 8, 0]
        for program in candidates:
            if self.has_preset(bank, program):
                if program != part.program and (bank, part.program) not in self._warned:
                    self._warned.add((bank, part.program))
                    warnings.warn(f"{self.path.name} has no preset bank {bank} program {part.program} "
                                  f"({part.name}); playing program {program} instead", stacklevel=3)
                return bank, program
        raise DataError(f"{self.path}: has neither bank {bank} program {part.program} nor a fallback "
                        f"({candidates}); use a General MIDI SoundFont")

    # ----------------------------------------------------------------------------------------- render
    def render(self, part: Part, frames: int) -> np.ndarray:
        """Frames ``[0, frames)`` of ``part`` alone: float32 ``(2, frames)``; tails past ``frames`` are cut.

        Args:
            part: notes in seconds (already cleaned: see :func:`~musicfx.data.render.scores.clean_notes`).
            frames: output length; bounds the work whatever the notes say.
        """
        channel = _DRUM_CHANNEL if part.is_drum else _MELODIC_CHANNEL
        bank, program = self.preset_for(part)
        events: List[Tuple[int, int, int, int]] = []  # (frame, on, pitch, velocity); offs sort first
        for note in part.notes:
            first = int(round(note.start * self.sample_rate))
            if first >= frames:
                continue
            events.append((first, 1, note.pitch, note.velocity))
            events.append((int(round(note.end * self.sample_rate)), 0, note.pitch, 0))
        events.sort()
        pan = int(round(64 + 63 * max(-1.0, min(1.0, part.pan))))
        if self.backend == "tinysoundfont":
            return self._render_tsf(channel, bank, program, part.is_drum, pan, events, frames)
        return self._render_fluid(channel, bank, program, pan, events, frames)

    def _render_tsf(self, channel: int, bank: int, program: int, is_drum: bool, pan: int,
                    events: List[Tuple[int, int, int, int]], frames: int) -> np.ndarray:
        synth = self._synth
        # Every part starts from the same state, whatever the previous part (or none) left behind.
        self._silence_tsf()
        synth.control_change(channel, 121, 0)  # reset controllers
        synth.control_change(channel, 7, 100)  # the GM default channel volume
        synth.program_select(channel, self._font, bank, program, is_drums=is_drum)
        synth.control_change(channel, 10, pan)
        out = np.zeros(2 * frames, dtype=np.float32)  # interleaved stereo, as the synth writes it
        try:
            _play(events, frames, channel, synth, lambda first, last: synth.generate_simple(
                last - first, memoryview(out[2 * first:2 * last]).cast("B")))
        finally:
            self._silence_tsf()
        return out.reshape(frames, 2).T

    def _silence_tsf(self) -> None:
        """Stop every voice and render its quick release (~10 ms) into a scratch buffer, so that no tail of
        one part leaks into the first frames of the next."""
        self._synth.sounds_off()
        scratch = np.zeros(2 * (self.sample_rate // 10), dtype=np.float32)
        self._synth.generate_simple(self.sample_rate // 10, memoryview(scratch).cast("B"))

    def _render_fluid(self, channel: int, bank: int, program: int, pan: int,
                      events: List[Tuple[int, int, int, int]], frames: int) -> np.ndarray:
        synth = self._synth
        synth.program_select(channel, self._font, bank, program)
        synth.cc(channel, 10, pan)
        chunks: List[np.ndarray] = []
        try:
            _play(events, frames, channel, synth, lambda first, last: chunks.append(synth.get_samples(last - first)))
        finally:
            synth.all_sounds_off(channel)
            synth.get_samples(self.sample_rate // 10)  # render the release away: nothing leaks into the next part
            synth.cc(channel, 121, 0)
        audio = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(2 * frames, np.float32)
        return audio.reshape(frames, 2).T

    def __getstate__(self):
        raise TypeError("a loaded SoundFontSynth is not picklable; call load_synth() in each process")


def _play(events: List[Tuple[int, int, int, int]], frames: int, channel: int, synth,
          generate: Callable[[int, int], object]) -> None:
    """Drive ``synth`` (either binding: both take ``noteon(channel, pitch, velocity)`` and ``noteoff(channel,
    pitch)``) through ``events`` (``(frame, on, pitch, velocity)``, sorted), calling ``generate(first, last)``
    for every stretch of frames between events; frames past ``frames`` are never generated."""
    position = 0
    for frame, on, pitch, velocity in events:
        frame = min(frame, frames)
        if frame > position:
            generate(position, frame)
            position = frame
        if frame >= frames:
            break
        if on:
            synth.noteon(channel, pitch, velocity)
        else:
            synth.noteoff(channel, pitch)
    if position < frames:
        generate(position, frames)


def load_synth(soundfont: Optional[PathLike], sample_rate: int, backend: str = "auto",
               effects: bool = False) -> SoundFontSynth:
    """The process's synthesizer for this font and sample rate, loaded on first use.

    Raises:
        DataError: the font is missing or corrupt.
        MissingDependencyError: no binding imports.
    """
    if soundfont is not None and backend != "auto":  # the per-item call of a worker: no file checks
        synth = _SYNTHS.get((str(soundfont), int(sample_rate), backend, bool(effects)))
        if synth is not None:
            return synth
    path = resolve_soundfont(soundfont)
    chosen = pick_backend(backend)
    key = (str(path), int(sample_rate), chosen, bool(effects))
    synth = _SYNTHS.get(key)
    if synth is None:
        synth = _SYNTHS[key] = SoundFontSynth(path, sample_rate, chosen, effects)
    return synth
