"""SoundFont-rendered multitracks: composer, MIDI reader, renderer, sources, datamodules, recipes, bad input."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from musicfx.data.render import fonts
from musicfx.data.render.composer import compose_song
from musicfx.data.render.scores import Note, Part, check_stems, clean_notes, gm_family, role_of, stem_of
from musicfx.errors import ConfigError, DataError, MissingDependencyError

REPO = Path(__file__).resolve().parents[1]
FONT = Path(fonts.DEFAULT_SOUNDFONT)
try:
    import tinysoundfont  # noqa: F401

    HAVE_BINDING = True
except ImportError:
    HAVE_BINDING = False
needs_font = pytest.mark.skipif(not (FONT.is_file() and HAVE_BINDING),
                                reason=f"needs tinysoundfont (musicfx[render]) and {FONT} (fluid-soundfont-gm)")
RATE = 22050


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True)
def _no_env_font(monkeypatch):
    monkeypatch.delenv(fonts.SOUNDFONT_ENV, raising=False)


def _write(path: Path, tracks, names=(), tempo: float = 120.0) -> Path:
    from musicfx.data.render.midi import write_midi

    pytest.importorskip("mido")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_midi(path, tracks, tempo, names)


def _band(seconds: float = 3.0):
    """Drums, bass, a sung melody and piano chords: fills all four MUSDB stems."""
    beats = [i * 0.5 for i in range(int(seconds * 2))]
    return [
        (0, True, [(b, b + 0.1, 36 if i % 2 == 0 else 38, 100) for i, b in enumerate(beats)]),
        (33, False, [(b, b + 0.4, 40, 90) for b in beats]),
        (53, False, [(b, b + 0.45, 64 + (i % 3), 90) for i, b in enumerate(beats)]),
        (0, False, [(b, b + 0.9, p, 70) for b in beats[::2] for p in (60, 64, 67)]),
    ]


# ---------------------------------------------------------------------------------------------- scores
def test_parts_map_to_musdb_stems_families_and_other() -> None:
    musdb = ("vocals", "drums", "bass", "other")
    piano = Part("p", 0, False, ())
    assert stem_of(Part("v", 53, False, (), role="vocals"), musdb) == "vocals"
    assert stem_of(Part("d", 0, True, (), role="drums"), musdb) == "drums"
    assert stem_of(Part("b", 33, False, (), role="bass"), musdb) == "bass"
    assert stem_of(piano, musdb) == "other"
    assert stem_of(piano, ("piano", "drums")) == "piano"
    assert stem_of(Part("g", 25, False, ()), ("piano", "drums")) is None  # no stem takes a guitar
    assert gm_family(25) == "guitar" and gm_family(0, is_drum=True) == "drums"
    assert role_of(0, False, "Lead Vocal") == "vocals" and role_of(54, False) == "vocals"
    with pytest.raises(ValueError, match="cannot fill stems"):
        check_stems(("vocals", "kazoo"))


def test_clean_notes_drops_blips_and_caps_hung_notes() -> None:
    notes = [Note(0.0, 0.0005, 60, 90), Note(1.0, 100.0, 62, 90), Note(0.5, 0.7, 64, 0), Note(0.2, 0.4, 130, 80)]
    assert clean_notes(notes, max_note=8.0) == (Note(1.0, 9.0, 62, 90),)


def test_composer_is_deterministic_and_has_sections_fills_and_families() -> None:
    song = compose_song(30.0, _generator(3))
    assert song == compose_song(30.0, _generator(3))
    assert song != compose_song(30.0, _generator(4))
    roles = [part.role for part in song.parts]
    assert roles[:3] == ["drums", "bass", "vocals"] and "other" in roles
    assert len(song.info["sections"]) >= 2
    drums = song.parts[0]
    assert drums.is_drum and any(note.pitch in (41, 43, 45, 47, 48, 50) or note.pitch == 49 for note in drums.notes)
    lead = song.parts[2]
    assert lead.program in (52, 53, 54) or gm_family(lead.program) in ("synth_lead", "reed", "pipe")
    many = [compose_song(8.0, _generator(seed)) for seed in range(12)]
    families = {part.family for song in many for part in song.parts if part.role == "other"}
    assert len(families) >= 4  # accompaniment drawn across GM families
    assert all(sum(p.role == "other" for p in compose_song(8.0, _generator(s), one_per_stem=True).parts) == 1
               for s in range(4))


# ------------------------------------------------------------------------------------------------ MIDI
def test_midi_tracks_become_parts_with_roles_and_tempo(tmp_path) -> None:
    from musicfx.data.render.midi import read_midi

    path = _write(tmp_path / "band.mid", _band(), names=("Drums", "Bass", "Lead Vocal", "Piano"), tempo=90.0)
    song = read_midi(path)
    assert [part.role for part in song.parts] == ["drums", "bass", "vocals", "other"]
    assert song.parts[0].is_drum and song.parts[1].program == 33
    assert song.parts[1].notes[1].start == pytest.approx(0.5, abs=2e-3)  # seconds survive the tempo map
    assert song.duration == pytest.approx(2.95, abs=0.01)  # the last vocal note ends at 2.95 s


def test_tempo_changes_apply_to_every_track(tmp_path) -> None:
    import mido

    from musicfx.data.render.midi import read_midi

    midi = mido.MidiFile(ticks_per_beat=480)
    # Track 0: 120 bpm for the first beat (0.5 s), then 60 bpm (1 s per beat).
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0),
                                       mido.MetaMessage("set_tempo", tempo=1000000, time=480)]))
    # Track 1: a note on beat 3 (0.5 s + 1 s), one beat long (1 s).
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=960),
                                       mido.Message("note_off", note=60, velocity=0, time=480)]))
    midi.save(tmp_path / "tempo.mid")
    note = read_midi(tmp_path / "tempo.mid").parts[0].notes[0]
    assert (note.start, note.end) == (pytest.approx(1.5), pytest.approx(2.5))


def test_the_sustain_pedal_holds_notes_until_it_comes_up(tmp_path) -> None:
    import mido

    from musicfx.data.render.midi import read_midi

    midi = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: a beat is 0.5 s
    midi.tracks.append(mido.MidiTrack([
        mido.Message("control_change", control=64, value=127, time=0),
        mido.Message("note_on", note=60, velocity=90, time=0),
        mido.Message("note_off", note=60, velocity=0, time=240),  # released at 0.25 s, pedal down
        mido.Message("note_on", note=64, velocity=90, time=0),
        mido.Message("note_off", note=64, velocity=0, time=240),
        mido.Message("control_change", control=64, value=0, time=480),  # pedal up at 1.0 s
        mido.Message("note_on", note=67, velocity=90, time=0),
        mido.Message("note_off", note=67, velocity=0, time=240),  # no pedal: ends at 1.25 s
    ]))
    midi.save(tmp_path / "pedal.mid")
    ends = {note.pitch: note.end for note in read_midi(tmp_path / "pedal.mid").parts[0].notes}
    assert ends == {60: pytest.approx(1.0), 64: pytest.approx(1.0), 67: pytest.approx(1.25)}


def test_a_note_on_without_note_off_is_capped(tmp_path) -> None:
    import mido

    from musicfx.data.render.midi import read_midi

    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                            mido.Message("note_on", note=62, velocity=90, time=480),
                            mido.Message("note_off", note=62, velocity=0, time=480)])
    midi.tracks.append(track)
    midi.save(tmp_path / "hung.mid")
    song = read_midi(tmp_path / "hung.mid", max_note=3.0)
    assert max(note.end - note.start for note in song.parts[0].notes) == pytest.approx(3.0)


def test_unreadable_midi_is_a_data_error(tmp_path) -> None:
    from musicfx.data.render.midi import read_midi

    (tmp_path / "bad.mid").write_bytes(b"MThd garbage")
    with pytest.raises(DataError, match="not a readable MIDI file"):
        read_midi(tmp_path / "bad.mid")


# ---------------------------------------------------------------------------------------------- render
@needs_font
def test_procedural_stems_sum_to_a_normalised_mix_and_windows_are_slices() -> None:
    from musicfx.data.rendered import RenderedStems

    source = RenderedStems(num_items=2, duration=3.0, sample_rate=RATE, channels=2, seed=5)
    whole = source.read(0, 0, source.num_frames(0))
    assert whole.shape == (4, 2, 3 * RATE)
    assert torch.all(whole.abs().amax(dim=(1, 2)) > 1e-3)  # every stem sounds
    song = source.song(0)
    assert whole.sum(0).abs().max() == pytest.approx(song.target_peak, rel=1e-4)
    assert torch.equal(source.read(0, 1000, 500, ("bass", "drums")), whole[[2, 1], :, 1000:1500])
    tail = source.read(0, 3 * RATE - 10, 20)
    assert torch.all(tail[..., 10:] == 0)
    again = RenderedStems(num_items=2, duration=3.0, sample_rate=RATE, channels=2, seed=5, cache_mb=0)
    again.read(1, 0, 10)  # another song in between: no tail of it may leak into the next rendering
    assert torch.equal(again.read(0, 0, 3 * RATE), whole)  # deterministic, cache or not
    stereo = whole.sum(0)
    assert not torch.allclose(stereo[0], stereo[1])  # parts are panned


@needs_font
def test_rendered_music_is_a_mono_mix_source() -> None:
    from musicfx.data.rendered import RenderedMusic, RenderedStems
    from musicfx.data.sources import MIX, Source

    source = RenderedMusic(num_items=1, duration=2.0, sample_rate=RATE, channels=1)
    assert isinstance(source, Source) and source.stems == (MIX,)
    audio = source.read(0, -100, 1000)
    assert audio.shape == (1, 1, 1000) and torch.all(audio[..., :100] == 0) and audio.abs().max() > 0
    stems = RenderedStems(num_items=1, duration=2.0, sample_rate=RATE, channels=1)
    assert torch.allclose(stems.read(0, 0, 1000).sum(0), source.read(0, 0, 1000)[0], atol=1e-6)  # mix = sum


@needs_font
def test_midi_folder_renders_excerpts_and_skips_unusable_files_with_one_warning(tmp_path) -> None:
    from musicfx.data.rendered import RenderedStems

    folder = tmp_path / "midi"
    for i in range(3):
        _write(folder / f"song{i}.mid", _band(5.0), names=("Drums", "Bass", "Vocal", "Piano"))
    _write(folder / "drums_only.mid", [_band()[0]])
    _write(folder / "silent.mid", [(0, False, [])])
    (folder / "broken.mid").write_bytes(b"not midi")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = RenderedStems(duration=2.0, sample_rate=RATE, channels=1, midi=folder, split=None)
    messages = [str(w.message) for w in caught if "skipped MIDI" in str(w.message)]
    assert len(messages) == 1
    assert "drums_only.mid" in messages[0] and "silent.mid" in messages[0] and "broken.mid" in messages[0]
    assert len(source) >= 2  # excerpts of the good songs
    audio = source.read(0, 0, source.num_frames(0))
    assert audio.shape == (4, 1, 2 * RATE) and torch.all(audio.abs().amax(dim=(1, 2)) > 0)


@needs_font
def test_midi_files_beyond_max_files_are_left_out_with_a_warning(tmp_path) -> None:
    from musicfx.data.rendered import RenderedStems

    for i in range(3):
        _write(tmp_path / "midi" / f"song{i}.mid", _band(2.0))
    with pytest.warns(UserWarning, match="reading the first 2 of 3 MIDI files"):
        source = RenderedStems(duration=2.0, sample_rate=RATE, midi=tmp_path / "midi", split=None, max_files=2)
    assert len(source) == 2


@needs_font
def test_one_per_stem_keeps_the_busiest_part_of_each_stem(tmp_path) -> None:
    from musicfx.data.rendered import RenderedStems

    tracks = _band() + [(48, False, [(0.0, 2.0, 55, 60)])]  # a second "other" part, with fewer notes
    _write(tmp_path / "midi" / "a.mid", tracks, names=("Drums", "Bass", "Vocal", "Piano", "Strings"))
    source = RenderedStems(duration=2.0, sample_rate=RATE, channels=1, midi=tmp_path / "midi", split=None,
                           one_per_stem=True)
    parts = source._assign(source.song(0).parts)
    assert sorted(part.role for part in parts) == ["bass", "drums", "other", "vocals"]
    assert next(part for part in parts if part.role == "other").program == 0


@needs_font
def test_a_program_the_font_lacks_falls_back_with_one_warning() -> None:
    synth = fonts.load_synth(None, RATE)
    assert not synth.has_preset(128, 20)  # FluidR3 GM has no drum kit 20
    part = Part("odd kit", 20, True, (Note(0.0, 0.2, 38, 100),), role="drums")
    with pytest.warns(UserWarning, match="no preset bank 128 program 20"):
        audio = synth.render(part, RATE // 2)
    assert np.abs(audio).max() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process
        synth.render(part, RATE // 2)


@pytest.mark.skipif(not FONT.is_file() or fonts._import("fluidsynth") is None, reason="needs pyfluidsynth")
def test_fluidsynth_backend_renders_the_same_parts() -> None:
    synth = fonts.load_synth(None, RATE, backend="fluidsynth")
    audio = synth.render(Part("piano", 0, False, (Note(0.0, 0.3, 60, 100),)), RATE // 2)
    assert audio.shape == (2, RATE // 2) and np.abs(audio).max() > 1e-3


# ------------------------------------------------------------------------------------------- bad input
def test_missing_soundfont_names_the_ways_to_give_one(tmp_path, monkeypatch) -> None:
    with pytest.raises(DataError, match="SoundFont not found.*--data.init_args.soundfont.*MUSICFX_SOUNDFONT"):
        fonts.resolve_soundfont(tmp_path / "none.sf2")
    monkeypatch.setenv(fonts.SOUNDFONT_ENV, str(tmp_path / "env.sf2"))
    with pytest.raises(DataError, match=r"env\.sf2.*from \$MUSICFX_SOUNDFONT"):
        fonts.resolve_soundfont(None)


def test_corrupt_soundfont_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"this is not a soundfont at all")
    with pytest.raises(DataError, match="not a SoundFont"):
        fonts.resolve_soundfont(bad)


@needs_font
def test_truncated_soundfont_fails_when_the_source_is_built(tmp_path) -> None:
    from musicfx.data.rendered import RenderedStems

    cut = tmp_path / "cut.sf2"
    with open(FONT, "rb") as file:
        cut.write_bytes(file.read(50_000))  # a valid header, then nothing
    with pytest.raises(DataError, match="cannot load this SoundFont"):
        RenderedStems(num_items=1, duration=1.0, sample_rate=RATE, soundfont=cut)


def test_missing_binding_names_the_extra(monkeypatch) -> None:
    monkeypatch.setattr(fonts, "_import", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"musicfx\[render\].*SoundFont"):
        fonts.pick_backend("auto")


@needs_font
def test_midi_folder_without_usable_files_fails_before_training(tmp_path) -> None:
    from musicfx.data.rendered import RenderedStems

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no midi here")
    with pytest.raises(DataError, match="no MIDI files found"):
        RenderedStems(midi=tmp_path / "empty", sample_rate=RATE)
    _write(tmp_path / "drums" / "beat.mid", [_band()[0]])
    _write(tmp_path / "drums" / "silent.mid", [(0, False, [])])
    with pytest.raises(DataError, match="none of 2 MIDI files.*1 no notes.*1 too few stems"):
        RenderedStems(midi=tmp_path / "drums", sample_rate=RATE)


# --------------------------------------------------------------------------------------- datamodules
@needs_font
def test_datamodules_pick_rendered_sources() -> None:
    from musicfx.data.rendered import RenderedMusic, RenderedStems
    from musicfx.tasks.debleed import BleedData
    from musicfx.tasks.denoise import DenoiseData
    from musicfx.tasks.separate import SeparationData

    small = dict(sample_rate=RATE, generated_items=2, generated_duration=2.0)
    separation = SeparationData(scores="procedural", channels=2, render_options={"cache_mb": 1.0}, **small)
    separation = separation.source("train")
    assert isinstance(separation, RenderedStems) and not separation.one_per_stem and separation.cache_mb == 1.0
    bleed = BleedData(soundfont=str(FONT), **small).source("valid")  # a font alone selects procedural songs
    assert isinstance(bleed, RenderedStems) and bleed.one_per_stem and bleed.channels == 1
    denoise = DenoiseData(scores="procedural", sample_rate=RATE, generated_items=2)
    denoise.setup("fit")
    assert isinstance(denoise.sources("train")["clean"], RenderedMusic)
    with pytest.raises(ConfigError, match="not both"):
        SeparationData(root="/data/musdb", scores="procedural")


@needs_font
def test_rendering_runs_in_dataloader_workers() -> None:
    from musicfx.tasks.separate import SeparationData

    data = SeparationData(scores="procedural", sample_rate=RATE, channels=1, segment=0.5, batch_size=2, shift=0.0,
                          num_workers=1, train_examples=4, generated_items=2, generated_duration=2.0)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["stems"].shape == (2, 4, 1, RATE // 2) and batch["stems"].abs().max() > 0


# ---------------------------------------------------------------------------------------------- recipes
FAST = ["--trainer.fast_dev_run=1", "--trainer.accelerator=cpu", "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2", "--data.init_args.segment=0.5"]
SMALL_SONGS = ["--data.init_args.generated_items=2", "--data.init_args.generated_duration=2.0"]


@needs_font
@pytest.mark.parametrize("recipe", ["quickstart.yaml", "separate/open_unmix.yaml", "debleed/t_unet.yaml",
                                    "automix/console.yaml"])
def test_rendered_overlay_composes_with_each_task(recipe: str, tmp_path, monkeypatch) -> None:
    from musicfx.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(fonts.SOUNDFONT_ENV, str(FONT))
    args = ["fit", "-c", str(REPO / "recipes" / recipe), "-c", str(REPO / "recipes/data/rendered.yaml"),
            "-c", str(REPO / "recipes/trainer/cpu.yaml"), *FAST]
    if recipe != "quickstart.yaml":
        args += SMALL_SONGS
    if recipe == "separate/open_unmix.yaml":
        args += ["--model.init_args.model.init_args.hidden_size=16", "--model.init_args.model.init_args.nb_layers=1"]
    assert main(args) == 0


@needs_font
def test_overlay_with_a_missing_soundfont_fails_before_training(tmp_path, monkeypatch, capsys) -> None:
    from musicfx.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["fit", "-c", str(REPO / "recipes/quickstart.yaml"), "-c", str(REPO / "recipes/data/rendered.yaml"),
            *FAST, f"--data.init_args.soundfont={tmp_path / 'missing.sf2'}"]
    code = main(args)
    assert code != 0
    assert "SoundFont not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- benchmarks
@needs_font
def test_bench_render_reports_every_binding_beside_the_generator(tmp_path, capsys, monkeypatch) -> None:
    import json
    import sys

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_render

    assert bench_render.main(["--songs", "1", "--seconds", "2", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "built-in generator" in printed and "tinysoundfont" in printed
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert all(row["x_realtime"] > 0 for row in rows.values())
    sys.modules.pop("bench_render", None)


@needs_font
@pytest.mark.slow
def test_bench_rendered_quick_run(shared_data, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_rendered

    code = bench_rendered.main(["--quick", "--tasks", "debleed", "--shared", str(shared_data),
                                "--workdir", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "trained on generator" in printed and "trained on rendered" in printed
