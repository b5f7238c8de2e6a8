"""Multitrack sources (stem folders, MUSDB18-HQ, MUSDB18, the generator), layout detection, and random stem
chunks with silence rejection."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from musicfx.audio.io import ffmpeg_available, read_stems
from musicfx.data.multitrack import (
    MUSDB18,
    MUSDB18HQ,
    DEFAULT_STEMS,
    StemFolder,
    multitrack_source,
    musdb_validation_tracks,
)
from musicfx.data.sampling import ChunkDataset, ExampleSampler, rms_db
from musicfx.data.sources import GeneratedMusic, Source, hash_split
from musicfx.errors import DataError, MissingDependencyError

SR = 8000
STEMS = ("vocals", "drums", "bass", "other")


def _write(path: Path, audio: np.ndarray, sample_rate: int = SR) -> None:
    """Write ``audio`` (channels, time) as a float wav (exact) or flac."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "FLOAT" if path.suffix.lower() == ".wav" else None
    sf.write(str(path), audio.T, sample_rate, subtype=subtype)


def _song(folder: Path, stems: Dict[str, np.ndarray], ext: str = ".wav") -> None:
    for name, audio in stems.items():
        _write(folder / f"{name}{ext}", audio)


def _noise(seed: int, frames: int, channels: int = 2) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((channels, frames))).astype(np.float32)


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# -------------------------------------------------------------------------------------------- StemFolder
def test_stem_folder_reads_aligned_stems_exactly(tmp_path, cache):
    root = tmp_path / "songs"
    data = {song: {stem: _noise(10 * i + j, 12000) for j, stem in enumerate(STEMS)}
            for i, song in enumerate(("b-song", "a-song"))}
    for song, stems in data.items():
        _song(root / song, stems)
    _write(root / "a-song" / "mixture.wav", sum(data["a-song"].values()))  # not a requested stem
    source = StemFolder(root, sample_rate=SR, channels=2, cache_dir=cache)
    assert isinstance(source, Source)
    assert len(source) == 2 and [source.name(0), source.name(1)] == ["a-song", "b-song"]
    assert source.stems == STEMS and source.num_frames(0) == 12000
    full = source.read(1, 0, 12000)
    assert full.dtype == torch.float32 and full.shape == (4, 2, 12000)
    assert np.array_equal(full.numpy(), np.stack([data["b-song"][stem] for stem in STEMS]))
    # Windows past both ends are zero-padded; stems can be picked and reordered.
    window = source.read(0, -100, 300, stems=("bass", "vocals"))
    assert window.shape == (2, 2, 300)
    assert not window[:, :, :100].any()
    assert np.array_equal(window[0, :, 100:].numpy(), data["a-song"]["bass"][:, :200])
    assert np.array_equal(window[1, :, 100:].numpy(), data["a-song"]["vocals"][:, :200])
    tail = source.read(0, 11900, 300)
    assert np.array_equal(tail[:, :, :100].numpy(), np.stack([data["a-song"][s][:, 11900:] for s in STEMS]))
    assert not tail[:, :, 100:].any()
    with pytest.raises(ValueError, match="guitar"):
        source.read(0, 0, 10, stems=("guitar",))


def test_missing_stems_are_silent_with_one_warning_and_stems_are_padded(tmp_path, cache):
    root = tmp_path / "songs"
    full = {stem: _noise(j, 9000) for j, stem in enumerate(STEMS)}
    full["bass"] = _noise(7, 6000)  # a shorter stem
    _song(root / "complete", full)
    _song(root / "partial", {"vocals": _noise(8, 9000), "drums": _noise(9, 9000)})
    with pytest.warns(UserWarning) as record:
        source = StemFolder(root, sample_rate=SR, cache_dir=cache)
    missing = [str(w.message) for w in record if "lack" in str(w.message)]
    assert len(missing) == 1 and "partial (bass, other)" in missing[0] and "complete" not in missing[0]
    index = source.names().index("partial")
    chunk = source.read(index, 0, 9000)
    assert not chunk[2:].any() and chunk[:2].abs().sum() > 0
    complete = source.names().index("complete")
    assert source.num_frames(complete) == 9000  # the longest stem
    bass = source.read(complete, 0, 9000, stems=("bass",))[0]
    assert np.array_equal(bass[:, :6000].numpy(), full["bass"]) and not bass[:, 6000:].any()


def test_stem_names_ignore_case_any_extension_and_files_are_converted(tmp_path, cache):
    root = tmp_path / "live"
    song = root / "gig"
    _write(song / "Guitar.WAV", _noise(1, 8000))
    _write(song / "SYNTH.flac", _noise(2, 8000))
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)[None]
    _write(song / "keys.wav", tone, sample_rate=16000)  # mono at 16 kHz
    (song / "notes.txt").write_text("not audio")
    source = StemFolder(root, stems=("guitar", "synth", "keys"), sample_rate=SR, channels=2, cache_dir=cache)
    assert len(source) == 1 and source.name(0) == "gig"
    chunk = source.read(0, 0, 8000)
    assert np.array_equal(chunk[0].numpy(), _noise(1, 8000))
    assert np.allclose(chunk[1].numpy(), _noise(2, 8000), atol=1e-4)  # 16-bit flac
    keys = chunk[2]
    assert torch.equal(keys[0], keys[1])  # mono repeated
    assert abs(float(rms_db(keys[:, 500:-500])) - 20 * math.log10(0.5 / math.sqrt(2))) < 0.1  # resampled sine
    assert source.num_frames(0) == 8000


def test_tracks_and_min_duration(tmp_path, cache):
    root = tmp_path / "collection"
    _song(root / "album" / "long", {"vocals": _noise(1, 16000)})
    _song(root / "album" / "short", {"vocals": _noise(2, 4000)})
    _song(root / "other", {"vocals": _noise(3, 16000)})
    with pytest.warns(UserWarning, match="shorter than 1 s: album/short"):
        source = StemFolder(root, stems=("vocals",), sample_rate=SR, cache_dir=cache)
    assert source.names() == ["album/long", "other"]
    picked = StemFolder(root, stems=("vocals",), sample_rate=SR, tracks=["long", "other"], cache_dir=cache)
    assert picked.names() == ["album/long", "other"]
    with pytest.warns(UserWarning, match="not found: nope"):
        assert StemFolder(root, stems=("vocals",), sample_rate=SR, tracks=["other", "nope"],
                          cache_dir=cache).names() == ["other"]
    with pytest.raises(DataError, match="shorter than 5 s"):
        StemFolder(root, stems=("vocals",), sample_rate=SR, min_duration=5.0, cache_dir=cache)


def test_wrong_layouts_raise_data_errors(tmp_path, cache):
    root = tmp_path / "mixes"
    _write(root / "song" / "mix.wav", _noise(1, 8000))
    with pytest.raises(DataError, match=r"mixes: no song folders found.*vocals, drums, bass, other"):
        StemFolder(root, sample_rate=SR, cache_dir=cache)
    with pytest.raises(DataError, match="no song folders"):
        multitrack_source(root, sample_rate=SR, cache_dir=cache)
    with pytest.raises(DataError, match="no such folder"):
        StemFolder(tmp_path / "absent", cache_dir=cache)
    with pytest.raises(DataError, match="no such folder"):
        multitrack_source(tmp_path / "absent")
    with pytest.raises(DataError, match="is a file"):
        multitrack_source(root / "song" / "mix.wav")
    with pytest.raises(DataError, match="test"):  # MUSDB18-HQ without its test folder
        MUSDB18HQ(root, split="test", cache_dir=cache)


# ------------------------------------------------------------------------------------------ MUSDB18-HQ
def test_official_validation_list_comes_from_musdb():
    tracks = musdb_validation_tracks()
    assert len(tracks) == 14 and len(set(tracks)) == 14
    assert "Actions - One Minute Smile" in tracks and "Traffic Experiment - Sirens" in tracks


def test_musdb18hq_splits(tmp_path, cache):
    root = tmp_path / "musdb18hq"
    train = ["Actions - One Minute Smile", "Leaf - Summerghost", "Artist A - Song", "Artist B - Song"]
    for i, song in enumerate(train):
        _song(root / "train" / song, {stem: _noise(10 * i + j, 4000) for j, stem in enumerate(STEMS + ("mixture",))})
    _song(root / "test" / "Artist C - Song", {stem: _noise(90 + j, 4000) for j, stem in enumerate(STEMS)})
    splits = {split: MUSDB18HQ(root, split, sample_rate=SR, cache_dir=cache) for split in ("train", "valid", "test")}
    assert splits["valid"].names() == ["Actions - One Minute Smile", "Leaf - Summerghost"]
    assert splits["train"].names() == ["Artist A - Song", "Artist B - Song"]
    assert splits["test"].names() == ["Artist C - Song"]
    leaf = splits["valid"].read(1, 0, 4000)
    assert np.array_equal(leaf.numpy(), np.stack([_noise(10 + j, 4000) for j in range(4)]))
    detected = multitrack_source(root, "valid", sample_rate=SR, cache_dir=cache)
    assert isinstance(detected, MUSDB18HQ) and detected.names() == splits["valid"].names()
    # The mixture can be read as a stem too.
    with pytest.warns(UserWarning, match=r"Artist C - Song \(mixture\)"):  # the test song has no mixture.wav
        with_mix = MUSDB18HQ(root, "test", stems=("mixture", "vocals"), sample_rate=SR, cache_dir=cache)
    assert not with_mix.read(0, 0, 100)[0].any()
    # A valid/ folder of one's own replaces the official list.
    _song(root / "valid" / "Mine", {stem: _noise(50 + j, 4000) for j, stem in enumerate(STEMS)})
    assert MUSDB18HQ(root, "valid", sample_rate=SR, cache_dir=cache).names() == ["Mine"]
    assert len(MUSDB18HQ(root, "train", sample_rate=SR, cache_dir=cache)) == 4


def test_stem_folder_split_by_song_name(tmp_path, cache):
    root = tmp_path / "band"
    names = [f"take{i:02d}" for i in range(12)]
    for i, name in enumerate(names):
        _song(root / name, {"vocals": _noise(i, SR)})
    expected = {split: [name for name in names if hash_split(name) == split] for split in ("train", "valid", "test")}
    assert expected["train"]  # the 90 % split is not empty for 12 names
    for split, members in expected.items():
        if members:
            source = multitrack_source(root, split, stems=("vocals",), sample_rate=SR, cache_dir=cache)
            assert isinstance(source, StemFolder) and source.names() == members
        else:
            with pytest.raises(DataError, match=f"no songs in split '{split}'"):
                multitrack_source(root, split, stems=("vocals",), sample_rate=SR, cache_dir=cache)


# ---------------------------------------------------------------------------------------------- MUSDB18
def test_musdb18_stem_mp4(shared_data, tmp_path, cache, monkeypatch):
    sample = shared_data / "musdb18-sample" / "Music Delta - 80s Rock.stem.mp4"
    if not sample.is_file():
        pytest.skip(f"{sample} not found")
    if not ffmpeg_available():
        pytest.skip("ffmpeg is not installed")
    root = tmp_path / "musdb18"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "test" / sample.name).symlink_to(sample)  # the layout without copying the file
    source = MUSDB18(root, "test", cache_dir=cache)
    assert source.names() == ["Music Delta - 80s Rock"] and source.stems == STEMS
    reference, rate, names = read_stems(sample)
    assert rate == 44100 and names == ("mixture", "drums", "bass", "other", "vocals")
    frames = reference.shape[-1]
    assert source.num_frames(0) == frames and abs(frames / rate - 6.8) < 0.2
    chunk = source.read(0, 1000, 44100)
    order = [names.index(stem) for stem in STEMS]  # vocals is stream 4, drums 1, ...
    assert torch.equal(chunk, reference[order, :, 1000:45100])
    assert all(float(rms_db(stem)) > -50 for stem in chunk)  # every stem audible
    # Decoded once: a second source reads the cache and never calls ffmpeg.
    monkeypatch.setattr("musicfx.data.multitrack.read_stems", lambda *a, **k: pytest.fail("decoded again"))
    again = multitrack_source(root, "test", stems=("mixture", "bass"), cache_dir=cache)
    assert isinstance(again, MUSDB18)
    assert torch.equal(again.read(0, 0, 500), reference[[0, 2], :, :500])
    with pytest.raises(DataError, match="guitar"):
        MUSDB18(root, "test", stems=("guitar",), cache_dir=cache)
    with pytest.raises(DataError, match="no .*stem.mp4"):
        MUSDB18(root, "train", cache_dir=cache)


def test_musdb18_without_ffmpeg_names_the_missing_program(tmp_path, cache, monkeypatch):
    root = tmp_path / "musdb18"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "test" / "Some Song.stem.mp4").write_bytes(b"not decoded: ffmpeg is missing")
    monkeypatch.setattr("musicfx.audio.io.ffmpeg_available", lambda: False)
    with pytest.raises(MissingDependencyError, match="ffmpeg"):
        multitrack_source(root, "test", cache_dir=cache)  # detected as MUSDB18, which needs ffmpeg


# ------------------------------------------------------------------------------------------- generated
def test_generated_stems_are_deterministic_audible_and_sum_to_the_mix():
    source = GeneratedMusic(stems=DEFAULT_STEMS, num_items=3, duration=1.0, sample_rate=SR, channels=2, seed=5)
    twin = GeneratedMusic(stems=DEFAULT_STEMS, num_items=3, duration=1.0, sample_rate=SR, channels=2, seed=5)
    assert isinstance(source, Source) and len(source) == 3 and source.num_frames(2) == SR
    song = source.read(1, 0, SR)
    assert song.shape == (4, 2, SR) and torch.equal(song, twin.read(1, 0, SR))
    assert not torch.allclose(song, source.read(2, 0, SR), atol=1e-3)
    assert all(float(rms_db(stem)) > -45 for stem in song)  # every stem audible
    mix = GeneratedMusic(num_items=3, duration=1.0, sample_rate=SR, channels=2, seed=5).read(1, 0, SR)[0]  # stems=("mix",)
    assert torch.allclose(song.sum(dim=0), mix, atol=1e-5)  # same piece, same gain
    assert 0.5 - 1e-4 <= float(mix.abs().max()) <= 0.9 + 1e-4
    window = source.read(1, 3000, 2000, stems=("drums", "vocals"))  # rendered on demand, by window
    assert torch.allclose(window, song[[1, 0], :, 3000:5000], atol=1e-4)
    assert not source.read(1, SR, 100).any()  # past the end
    other = GeneratedMusic(stems=DEFAULT_STEMS, num_items=3, duration=1.0, sample_rate=SR, channels=2, seed=6)
    assert not torch.allclose(other.read(1, 0, SR), song, atol=1e-3)
    with pytest.raises(ValueError, match=r"guitar.*vocals"):
        GeneratedMusic(stems=("guitar",))
    made = multitrack_source(None, stems=("bass",), sample_rate=SR, channels=1, num_items=2, duration=1.0)
    assert isinstance(made, GeneratedMusic) and made.read(0, 0, 10).shape == (1, 1, 10)
    with pytest.raises(ValueError, match="num_items"):
        multitrack_source("somewhere", num_items=2)


# -------------------------------------------------------------------------------------- chunk dataset
def _coded_folder(root: Path, songs: Sequence[int], frames: Sequence[int]) -> None:
    """Stem s of song k: left channel (10 k + s + 1) / 128, right channel frame / 32768 (both exact)."""
    for k, count in zip(songs, frames):
        ramp = np.arange(count, dtype=np.float32) / 32768
        _song(root / f"song{k}", {stem: np.stack([np.full(count, (10 * k + s + 1) / 128, np.float32), ramp])
                                  for s, stem in enumerate(STEMS)})


def _decode(stems: torch.Tensor):
    """(song, offset) of each stem of a chunk of :func:`_coded_folder` songs."""
    codes = (stems[:, 0, 0] * 128).round().long() - 1
    songs = (codes - torch.arange(len(STEMS))) // 10
    assert torch.equal(codes % 10, torch.arange(len(STEMS)))  # stems stay in place
    offsets = (stems[:, 1, 0] * 32768).round().long()
    return songs.tolist(), offsets.tolist()


@pytest.fixture()
def coded(tmp_path, cache) -> StemFolder:
    _coded_folder(tmp_path / "coded", songs=range(4), frames=(8000, 12000, 10000, 16000))
    return StemFolder(tmp_path / "coded", sample_rate=SR, cache_dir=cache)


def test_chunks_are_aligned_and_deterministic_per_id(coded):
    draw = lambda generator: {"gain_db": torch.rand((), generator=generator) * 10}  # noqa: E731
    dataset = ChunkDataset({"stems": coded}, 2000, num_examples=8, seed=3, draw=draw)
    twin = ChunkDataset({"stems": coded}, 2000, num_examples=8, seed=3, draw=draw)
    seen = set()
    for example_id in range(12):  # ids past len() are valid
        example = dataset[example_id]
        assert set(example) == {"stems", "seed", "gain_db"}
        assert example["stems"].shape == (4, 2, 2000) and example["seed"].dtype == torch.int64
        songs, offsets = _decode(example["stems"])
        assert len(set(songs)) == 1 and len(set(offsets)) == 1  # one song, one offset
        assert 0 <= offsets[0] <= coded.num_frames(songs[0]) - 2000
        # The ramp continues through the chunk: a contiguous window.
        assert torch.equal(example["stems"][0, 1], (offsets[0] + torch.arange(2000)).float() / 32768)
        again = twin[example_id]
        assert all(torch.equal(example[key], again[key]) for key in example)
        seen.add((songs[0], offsets[0]))
    assert len(seen) == 12 and len({song for song, _ in seen}) >= 3
    other = ChunkDataset({"stems": coded}, 2000, num_examples=8, seed=4, draw=draw)[0]
    assert not torch.equal(other["stems"], dataset[0]["stems"])
    # The silence threshold changes chunks only, never the scene seed or parameters.
    loose = ChunkDataset({"stems": coded}, 2000, num_examples=8, seed=3, draw=draw, silence_threshold_db=-math.inf)[5]
    assert torch.equal(loose["seed"], dataset[5]["seed"]) and torch.equal(loose["gain_db"], dataset[5]["gain_db"])
    loader = DataLoader(dataset, batch_size=4, sampler=ExampleSampler(8))
    batch = next(iter(loader))
    assert batch["stems"].shape == (4, 4, 2, 2000) and batch["seed"].shape == (4,)
    assert torch.equal(batch["stems"][1], dataset[1]["stems"])


def test_random_mix_draws_each_stem_from_its_own_song(coded):
    dataset = ChunkDataset({"stems": coded}, 2000, num_examples=40, seed=0, random_mix=True)
    mixed = 0
    for example_id in range(40):
        songs, offsets = _decode(dataset[example_id]["stems"])
        mixed += len(set(songs)) > 1
        assert all(0 <= o <= coded.num_frames(s) - 2000 for s, o in zip(songs, offsets))
    assert mixed >= 30  # 1 - 4**-3 of examples mix songs
    assert torch.equal(dataset[7]["stems"], dataset[7]["stems"])


def test_short_songs_are_padded(tmp_path, cache):
    _coded_folder(tmp_path / "short", songs=[0], frames=[8000])
    source = StemFolder(tmp_path / "short", sample_rate=SR, cache_dir=cache)
    stems = ChunkDataset({"stems": source}, 10000, num_examples=1)[0]["stems"]
    assert stems[:, 0, :8000].min() > 0 and not stems[:, :, 8000:].any()  # offset 0, then zeros


def test_silent_chunks_are_rejected(tmp_path, cache):
    root = tmp_path / "quiet"
    frames = 16000
    _song(root / "loud", {stem: _noise(j, frames) for j, stem in enumerate(STEMS)})
    half = np.concatenate([np.zeros((2, frames // 2), np.float32), _noise(9, frames // 2)], axis=1)
    _song(root / "silent", {stem: np.zeros((2, frames), np.float32) for stem in STEMS[:3]} | {"other": half})
    source = StemFolder(root, sample_rate=SR, cache_dir=cache)

    def levels(threshold: float, random_mix: bool = False):
        dataset = ChunkDataset({"stems": source}, 2000, 40, seed=1, random_mix=random_mix, silence_threshold_db=threshold)
        return [float(rms_db(dataset[i]["stems"].sum(dim=0))) for i in range(40)]

    assert sum(level < -60 for level in levels(-math.inf)) >= 5  # about 1/4 land in the silent half
    assert all(level >= -60 for level in levels(-60.0))
    assert all(level >= -60 for level in levels(-60.0, random_mix=True))
    # Only silence to draw from: the loudest of max_tries draws, no endless loop.
    _song(tmp_path / "void" / "nothing", {stem: np.zeros((2, frames), np.float32) for stem in STEMS})
    void = StemFolder(tmp_path / "void", sample_rate=SR, cache_dir=cache)
    chunk = ChunkDataset({"stems": void}, 2000, 4, seed=2, max_tries=5)[0]["stems"]
    assert chunk.shape == (4, 2, 2000) and not chunk.any()


def test_chunks_of_generated_stems():
    source = GeneratedMusic(stems=DEFAULT_STEMS, num_items=4, duration=1.0, sample_rate=SR, channels=2, seed=0)
    dataset = ChunkDataset({"stems": source}, 1000, num_examples=4, random_mix=True)
    example = dataset[2]
    assert example["stems"].shape == (4, 2, 1000)
    assert all(float(rms_db(stem)) > -80 for stem in example["stems"])
    assert torch.equal(example["stems"], ChunkDataset({"stems": source}, 1000, 4, random_mix=True)[2]["stems"])
    with pytest.raises(ValueError, match="segment_frames"):
        ChunkDataset({"stems": source}, 0, 4)


def test_silence_warning_free_for_complete_folders(coded):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious warnings for a clean collection
        StemFolder(coded.root, sample_rate=SR, cache_dir=coded._cache.cache_dir)
