"""Sources, the decode-once cache, chunk sampling and seeding."""
from __future__ import annotations

import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, DistributedSampler

import musicfx.data.cache as cache_module
from musicfx.data import (
    AudioFolder,
    ChunkDataset,
    DecodedCache,
    ExampleSampler,
    GeneratedMusic,
    MNDataset,
    NoiseFolder,
    Source,
    example_generator,
    hash_split,
    rms_db,
)
from musicfx.errors import AudioError, DataError

SR = 8000  # small files keep the tests fast


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # Never touch the user's ~/.cache, even from a test that forgets cache_dir.
    monkeypatch.setenv("MUSICFX_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture
def decode_count(monkeypatch) -> Dict[str, int]:
    """Counts calls to the decoder the cache uses."""
    calls = {"n": 0}
    original = cache_module.read_audio

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(cache_module, "read_audio", counting)
    return calls


def _write(path: Path, audio: np.ndarray, sample_rate: int = SR, subtype: str = "FLOAT") -> Path:
    """Write ``audio`` shaped (channels, time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(audio, dtype=np.float32).T, sample_rate, subtype=subtype)
    return path


def _tone(seconds: float, freq: float = 440.0, sample_rate: int = SR, channels: int = 1,
          level: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return np.tile(level * np.sin(2 * np.pi * freq * t), (channels, 1))


def _constant(seconds: float, value: float) -> np.ndarray:
    return np.full((1, int(round(seconds * SR))), value)


# --------------------------------------------------------------------------------------- AudioFolder


def test_audio_folder_reads_real_recordings(shared_data, tmp_path):
    root = shared_data / "phenicx-anechoic"
    folder = AudioFolder(root, sample_rate=44100, channels=1, cache_dir=tmp_path)
    assert isinstance(folder, Source)
    assert len(folder) == 20
    names = [folder.name(i) for i in range(len(folder))]
    assert names == sorted(names) and "beethoven_cello.wav" in names
    index = names.index("beethoven_cello.wav")
    reference, rate = sf.read(str(root / "beethoven_cello.wav"), dtype="float32")
    assert rate == 44100 and folder.num_frames(index) == len(reference)
    chunk = folder.read(index, 1000, 4000)[0]  # the file's one stem
    assert chunk.dtype == torch.float32 and chunk.shape == (1, 4000)
    np.testing.assert_allclose(chunk[0].numpy(), reference[1000:5000], atol=1e-6)

    half = AudioFolder(root, sample_rate=22050, channels=2, cache_dir=tmp_path)
    assert half.num_frames(index) == len(reference) // 2
    stereo = half.read(index, 0, half.num_frames(index))[0]
    assert torch.equal(stereo[0], stereo[1])
    # Resampled content keeps the level: RMS within 0.5 dB (the cello has little energy above 11 kHz).
    assert abs(float(rms_db(stereo[:1])) - float(rms_db(torch.from_numpy(reference)))) < 0.5


def test_audio_folder_nested_mixed_formats(tmp_path):
    root = tmp_path / "music"
    _write(root / "a" / "x.wav", _tone(0.5, 440, 16000, channels=2), 16000)  # stereo, other rate
    _write(root / "b" / "c" / "y.flac", _tone(0.25, 220), subtype="PCM_16")
    _write(root / "z.wav", _tone(0.125, 880, channels=3))
    _write(root / "a" / "._x.wav", _tone(0.1))  # a macOS resource fork: hidden, skipped
    (root / "notes.txt").write_text("not audio")
    folder = AudioFolder(root, sample_rate=SR, channels=2, cache_dir=tmp_path / "cache",
                         categories_from_subfolders=True)
    assert [folder.name(i) for i in range(3)] == ["a/x.wav", "b/c/y.flac", "z.wav"]
    assert [folder.category(i) for i in range(3)] == ["a", "b", ""]
    assert [folder.num_frames(i) for i in range(3)] == [4000, 2000, 1000]
    resampled = folder.read(0, 0, 4000)[0]
    expected = torch.from_numpy(_tone(0.5, 440, SR, channels=2)).float()
    assert torch.corrcoef(torch.stack([resampled[0, 100:-100], expected[0, 100:-100]]))[0, 1] > 0.999
    assert float(rms_db(resampled[:, 100:-100] - expected[:, 100:-100])) < -40
    padded = folder.read(2, 900, 300)[0]  # 100 frames of audio, then zeros
    assert float(padded[:, :100].abs().max()) > 0.1 and float(padded[:, 100:].abs().max()) == 0.0
    before = folder.read(2, -50, 100)[0]
    assert float(before[:, :50].abs().max()) == 0.0 and float(before[:, 50:].abs().max()) > 0.0
    mono = AudioFolder(root, sample_rate=SR, channels=1, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(mono.read(2, 0, 1000)[0, 0].numpy(), _tone(0.125, 880)[0], atol=1e-6)  # 3 ch averaged


def test_audio_folder_explicit_file_list(tmp_path):
    _write(tmp_path / "d" / "one.wav", _tone(0.1))
    _write(tmp_path / "d" / "two.wav", _tone(0.2))
    folder = AudioFolder(tmp_path / "d", sample_rate=SR, files=["two.wav"], cache_dir=tmp_path / "c")
    assert len(folder) == 1 and folder.num_frames(0) == 1600
    with pytest.raises(DataError, match="three.wav"):
        AudioFolder(tmp_path / "d", sample_rate=SR, files=["three.wav"], cache_dir=tmp_path / "c")


def test_audio_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        AudioFolder(tmp_path / "absent", cache_dir=tmp_path / "c")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no audio files found.*\.wav.*\.flac"):
        AudioFolder(tmp_path / "empty", cache_dir=tmp_path / "c")

    bad = tmp_path / "corrupt"
    _write(bad / "good.wav", _tone(0.1))
    (bad / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + os.urandom(200))
    with pytest.raises(AudioError, match="broken.wav"):
        AudioFolder(bad, sample_rate=SR, cache_dir=tmp_path / "c")

    nan = tmp_path / "nan"
    audio = _tone(0.1)
    audio[0, 10] = np.nan
    _write(nan / "holes.wav", audio)
    with pytest.raises(AudioError, match=r"holes.wav.*NaN"):
        AudioFolder(nan, sample_rate=SR, cache_dir=tmp_path / "c")


def test_short_files_are_dropped_with_a_warning(tmp_path):
    _write(tmp_path / "s" / "long.wav", _tone(2.0))
    _write(tmp_path / "s" / "short.wav", _tone(0.5))
    with pytest.warns(UserWarning, match="dropped 1 of 2"):
        folder = AudioFolder(tmp_path / "s", sample_rate=SR, min_duration=1.0, cache_dir=tmp_path / "c")
    assert [folder.name(i) for i in range(len(folder))] == ["long.wav"]
    with pytest.raises(DataError, match="shorter than 3 s"):
        AudioFolder(tmp_path / "s", sample_rate=SR, min_duration=3.0, cache_dir=tmp_path / "c")


# --------------------------------------------------------------------------------------------- cache


def test_cache_decodes_once_and_notices_changes(tmp_path, decode_count):
    root = tmp_path / "m"
    for i in range(3):
        _write(root / f"{i}.wav", _tone(0.2, 200 + 100 * i))
    first = AudioFolder(root, sample_rate=SR, cache_dir=tmp_path / "c")
    assert decode_count["n"] == 3
    second = AudioFolder(root, sample_rate=SR, cache_dir=tmp_path / "c")
    assert decode_count["n"] == 0 + 3  # nothing decoded again
    assert torch.equal(first.read(1, 0, 1600), second.read(1, 0, 1600))
    AudioFolder(root, sample_rate=SR // 2, cache_dir=tmp_path / "c")  # another format: its own entries
    assert decode_count["n"] == 6

    _write(root / "1.wav", _tone(0.3, 1000))  # edited file: new size and mtime
    os.utime(root / "1.wav", ns=(1, 10**18))
    third = AudioFolder(root, sample_rate=SR, cache_dir=tmp_path / "c")
    assert decode_count["n"] == 7
    assert third.num_frames(1) == 2400


def test_cache_redecodes_a_damaged_entry(tmp_path, decode_count):
    _write(tmp_path / "m" / "a.wav", _tone(1.0))
    cache = DecodedCache(tmp_path / "c")
    array = cache.load(tmp_path / "m" / "a.wav", SR, 1)
    assert array.shape == (1, SR) and array.dtype == np.float32 and isinstance(array, np.memmap)
    entry = cache.entry_path(tmp_path / "m" / "a.wav", SR, 1)
    del array
    for damage in (lambda data: data[: len(data) // 2], lambda data: b"garbage" * 10):
        entry.write_bytes(damage(entry.read_bytes()))
        before = decode_count["n"]
        folder = AudioFolder(tmp_path / "m", sample_rate=SR, cache_dir=tmp_path / "c")
        assert decode_count["n"] == before + 1
        np.testing.assert_allclose(folder.read(0, 0, SR)[0, 0].numpy(), _tone(1.0)[0], atol=1e-6)
    assert [p.suffix for p in (tmp_path / "c").iterdir()] == [".npy"]  # no temporary files left


def test_unwritable_cache_is_a_clear_error(tmp_path):
    _write(tmp_path / "m" / "a.wav", _tone(0.1))
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(DataError, match=r"cannot write the decoded-audio cache for .*a\.wav.*MUSICFX_CACHE"):
        AudioFolder(tmp_path / "m", sample_rate=SR, cache_dir=tmp_path / "not-a-folder")


def test_cache_shows_progress_for_many_files(tmp_path, capsys):
    for i in range(21):
        _write(tmp_path / "many" / f"{i:02d}.wav", _tone(0.01))
    AudioFolder(tmp_path / "many", sample_rate=SR, cache_dir=tmp_path / "c")
    assert "decoding" in capsys.readouterr().err
    AudioFolder(tmp_path / "many", sample_rate=SR, cache_dir=tmp_path / "c")  # cached: quiet
    assert "decoding" not in capsys.readouterr().err


def test_sources_pickle_without_audio(tmp_path):
    _write(tmp_path / "m" / "a.wav", _tone(4.0))
    folder = AudioFolder(tmp_path / "m", sample_rate=SR, cache_dir=tmp_path / "c")
    chunk = folder.read(0, 100, 1000)  # opens the memory map
    data = pickle.dumps(folder)
    assert len(data) < 5000  # 128 kB of audio stays in the cache file
    assert torch.equal(pickle.loads(data).read(0, 100, 1000), chunk)


# --------------------------------------------------------------------------------------- NoiseFolder


def _noise_tree(root: Path) -> Dict[str, List[float]]:
    """Files of constant value, so a chunk's mean tells which file it came from."""
    values = {"crowd": [0.1], "weather": [0.2, 0.3, 0.4, 0.5], "noise": [0.6]}
    _write(root / "crowd" / "pub.wav", _constant(0.2, 0.1))
    for i, value in enumerate(values["weather"]):
        _write(root / "weather" / f"rain{i}.wav", _constant(0.2, value))
    _write(root / "hum.wav", _constant(0.2, 0.6))
    return values


def test_noise_folder_categories_and_weights(tmp_path):
    values = _noise_tree(tmp_path / "n")
    folder = NoiseFolder(tmp_path / "n", sample_rate=SR, cache_dir=tmp_path / "c")
    assert folder.categories() == ["crowd", "noise", "weather"]
    weights = folder.item_weights()
    assert weights.dtype == torch.float64 and math.isclose(float(weights.sum()), 1.0)
    by_category = {c: sum(float(w) for i, w in enumerate(weights) if folder.category(i) == c) for c in values}
    assert all(math.isclose(share, 1 / 3) for share in by_category.values())  # uniform over categories

    weighted = NoiseFolder(tmp_path / "n", sample_rate=SR, cache_dir=tmp_path / "c",
                           category_weights={"crowd": 3.0, "weather": 1.0, "noise": 0.0})
    dataset = ChunkDataset({"noise": weighted}, segment_frames=64, num_examples=1600, silence_threshold_db=-math.inf)
    means = [round(float(dataset[i]["noise"].mean()), 2) for i in range(1600)]
    share = {c: sum(m in values[c] for m in means) / len(means) for c in values}
    assert abs(share["crowd"] - 0.75) < 0.04 and abs(share["weather"] - 0.25) < 0.04 and share["noise"] == 0
    weather_counts = [means.count(v) for v in values["weather"]]  # uniform within the category
    assert max(weather_counts) - min(weather_counts) < 0.4 * np.mean(weather_counts)

    with pytest.raises(DataError, match="traffic"):
        NoiseFolder(tmp_path / "n", sample_rate=SR, cache_dir=tmp_path / "c", category_weights={"traffic": 1.0})
    with pytest.warns(UserWarning, match="never drawn"):
        NoiseFolder(tmp_path / "n", sample_rate=SR, cache_dir=tmp_path / "c", category_weights={"crowd": 1.0})


def test_flat_noise_folder_is_one_category(tmp_path):
    _write(tmp_path / "flat" / "a.wav", _tone(0.1))
    _write(tmp_path / "flat" / "b.wav", _tone(0.1))
    folder = NoiseFolder(tmp_path / "flat", sample_rate=SR, cache_dir=tmp_path / "c")
    assert folder.categories() == ["noise"]
    assert torch.allclose(folder.item_weights(), torch.full((2,), 0.5, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ MNDataset


def _mn_tree(root: Path, music: int = 40, noise: int = 12) -> None:
    for i in range(music):
        category = ("piano", "cello", "song")[i % 3]
        _write(root / "music" / category / f"take{i:03d}.wav", _tone(0.05, 200 + i))
    for i in range(noise):
        category = ("crowd", "traffic")[i % 2]
        _write(root / "noise" / category / "sub" / f"n{i:03d}.wav", _tone(0.05, 3000 + i))


def test_mn_dataset_hash_split(tmp_path):
    _mn_tree(tmp_path / "mn")
    all_music = sorted(p.relative_to(tmp_path / "mn").as_posix() for p in (tmp_path / "mn" / "music").rglob("*.wav"))
    seen = []
    for split in ("train", "valid", "test"):
        expected = [p for p in all_music if hash_split(p) == split]
        if not expected:
            with pytest.raises(DataError, match="no music in split"):
                MNDataset(tmp_path / "mn", split=split, sample_rate=SR, cache_dir=tmp_path / "c")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a split may have no noise: it then uses all noise
            data = MNDataset(tmp_path / "mn", split=split, sample_rate=SR, cache_dir=tmp_path / "c")
        names = [f"music/{data.music.name(i)}" for i in range(len(data.music))]
        assert names == expected
        assert all(data.music.category(i) == data.music.name(i).split("/")[0] for i in range(len(data.music)))
        assert set(data.noise.categories()) <= {"crowd", "traffic"}
        seen += names
    assert sorted(seen) == all_music  # the splits partition the files
    train = [p for p in all_music if hash_split(p) == "train"]
    assert 0.75 <= len(train) / len(all_music) <= 1.0
    with pytest.raises(DataError, match="noise"):
        (tmp_path / "other" / "music" / "piano").mkdir(parents=True)
        MNDataset(tmp_path / "other", cache_dir=tmp_path / "c")


def test_mn_dataset_with_metadata_csv(tmp_path):
    root = tmp_path / "mn"
    _mn_tree(root, music=6, noise=4)
    (root / "metadata").mkdir()
    (root / "metadata" / "music.csv").write_text(
        "File_Name,category,split\n"
        "take000.wav,,train\n"  # bare name, folder category
        "music/cello/take001.wav,harp,train\n"  # path from root, category overridden
        "song/take002.wav,,val\n"  # path from music/, split alias
        "take003.wav,piano,test\n"
        "take004.wav,,train\n"
        "missing.wav,,train\n"  # absent: skipped with a warning
    )
    with pytest.warns(UserWarning) as record:
        train = MNDataset(root, split="train", sample_rate=SR, cache_dir=tmp_path / "c")
    messages = " ".join(str(w.message) for w in record)
    assert "1 files listed in the metadata were not found" in messages
    assert "1 files are not in the metadata" in messages  # take005.wav
    assert [train.music.name(i) for i in range(len(train.music))] == [
        "cello/take001.wav", "cello/take004.wav", "piano/take000.wav"]
    categories = {train.music.name(i): train.music.category(i) for i in range(len(train.music))}
    assert categories == {"piano/take000.wav": "piano", "cello/take001.wav": "harp", "cello/take004.wav": "cello"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        valid = MNDataset(root, split="validation", sample_rate=SR, cache_dir=tmp_path / "c")
        test = MNDataset(root, split="test", sample_rate=SR, cache_dir=tmp_path / "c")
    assert [valid.music.name(i) for i in range(len(valid.music))] == ["song/take002.wav"]
    assert [(test.music.name(0), test.music.category(0))] == [("piano/take003.wav", "piano")]
    assert len(train.noise) + len(valid.noise) + len(test.noise) >= 4  # noise: no CSV, hash split (or all)

    (root / "metadata" / "broken.csv").write_text("title,split\nx,train\n")
    with pytest.raises(DataError, match=r"broken.csv.*no file column"):
        MNDataset(root, sample_rate=SR, cache_dir=tmp_path / "c")


# ------------------------------------------------------------------------------------------ sampling


def test_example_generator_streams_are_unrelated():
    first = [int(torch.randint(0, 2**31, (1,), generator=example_generator(0, i))) for i in range(200)]
    assert len(set(first)) == 200
    a = torch.rand(1000, generator=example_generator(0, 1))
    b = torch.rand(1000, generator=example_generator(1, 0))  # seed + id collide; the hash must not
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.15
    assert torch.equal(a, torch.rand(1000, generator=example_generator(0, 1)))


def test_example_sampler_ranks_and_epochs_are_disjoint():
    ids = {}
    for rank in range(2):
        sampler = ExampleSampler(11, num_replicas=2, rank=rank)
        assert isinstance(sampler, DistributedSampler) and len(sampler) == 5
        for epoch in range(2):
            sampler.set_epoch(epoch)
            ids[rank, epoch] = list(sampler)
            assert len(ids[rank, epoch]) == 5
            assert all(epoch * 11 <= i < (epoch + 1) * 11 for i in ids[rank, epoch])
    union = set().union(*map(set, ids.values()))
    assert len(union) == 20  # 4 disjoint sets of 5
    single = ExampleSampler(4)
    assert (single.num_replicas, single.rank) == (1, 0) and list(single) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        ExampleSampler(4, num_replicas=2, rank=2)


def test_rms_db():
    t = torch.arange(SR) / SR
    sine = torch.sin(2 * math.pi * 100 * t)[None]
    assert abs(float(rms_db(sine)) - 10 * math.log10(0.5)) < 1e-3
    assert float(rms_db(torch.zeros(2, 100))) == pytest.approx(-100.0)
    assert rms_db(torch.stack([sine, 0.1 * sine])).shape == (2,)


@pytest.fixture
def mixed_folder(tmp_path) -> AudioFolder:
    """A silent file and a loud one, both long enough for many chunks."""
    _write(tmp_path / "mixed" / "loud.wav", 0.3 * np.random.default_rng(0).standard_normal((1, SR)))
    _write(tmp_path / "mixed" / "silent.wav", np.zeros((1, SR)))
    _write(tmp_path / "mixed" / "short.wav", _tone(0.01))  # 80 frames: padded
    return AudioFolder(tmp_path / "mixed", sample_rate=SR, cache_dir=tmp_path / "c")


def test_chunk_dataset_is_deterministic_by_id(mixed_folder):
    def draw(generator: torch.Generator) -> Dict[str, torch.Tensor]:
        return {"snr_db": torch.empty(()).uniform_(0, 20, generator=generator)}

    sources = {"clean": mixed_folder, "music": GeneratedMusic(4, 1.0, SR, 1, seed=2)}
    dataset = ChunkDataset(sources, segment_frames=500, num_examples=10, seed=5, draw=draw)
    again = ChunkDataset(sources, segment_frames=500, num_examples=10, seed=5, draw=draw)
    other_seed = ChunkDataset(sources, segment_frames=500, num_examples=10, seed=6, draw=draw)
    assert len(dataset) == 10
    example = dataset[3]
    assert set(example) == {"clean", "music", "seed", "snr_db"}
    assert example["clean"].shape == (1, 1, 500) and example["music"].shape == (1, 1, 500)  # (stems, C, T)
    assert example["seed"].dtype == torch.int64 and example["seed"].dim() == 0
    assert example["snr_db"].dim() == 0 and 0 <= float(example["snr_db"]) <= 20
    for key, value in again[3].items():
        assert torch.equal(value, example[key]), key
    assert not torch.equal(dataset[4]["music"], example["music"])
    assert int(dataset[4]["seed"]) != int(example["seed"])
    assert not torch.equal(other_seed[3]["music"], example["music"])
    alone = ChunkDataset({"clean": mixed_folder}, segment_frames=500, num_examples=10, seed=5, draw=draw)[3]
    for key in ("clean", "seed", "snr_db"):  # adding a source changes neither the scene nor other chunks
        assert torch.equal(alone[key], example[key]), key
    # Ids past num_examples are valid (the sampler's later epochs use them).
    assert dataset[1000]["clean"].shape == (1, 1, 500)


def test_silence_rejection_applies_to_the_first_source_only(mixed_folder, tmp_path):
    picky = ChunkDataset({"clean": mixed_folder}, segment_frames=400, num_examples=60, seed=1)
    assert min(float(rms_db(picky[i]["clean"])) for i in range(60)) > -60
    lax = ChunkDataset({"clean": mixed_folder}, segment_frames=400, num_examples=60, seed=1,
                       silence_threshold_db=-math.inf)
    assert sum(float(rms_db(lax[i]["clean"])) < -60 for i in range(60)) > 10  # the test can fail
    _write(tmp_path / "loud" / "a.wav", 0.3 * np.random.default_rng(1).standard_normal((1, SR)))
    loud = AudioFolder(tmp_path / "loud", sample_rate=SR, cache_dir=tmp_path / "c")
    noisy = ChunkDataset({"clean": loud, "noise": mixed_folder}, segment_frames=400, num_examples=60, seed=1)
    assert sum(float(rms_db(noisy[i]["noise"])) < -60 for i in range(60)) > 10  # noise may be silent
    short = [lax[i]["clean"] for i in range(60) if float(lax[i]["clean"][..., 80:].abs().max()) == 0.0
             and float(lax[i]["clean"][..., :80].abs().max()) > 0]
    assert short  # the 80-frame file comes zero-padded


def test_dataloader_workers_give_the_same_batches(mixed_folder):
    sources = {"clean": mixed_folder, "music": GeneratedMusic(3, 0.5, SR, 1, seed=4)}
    dataset = ChunkDataset(sources, segment_frames=256, num_examples=16, seed=3)

    def batches(workers: int) -> List[Dict[str, torch.Tensor]]:
        sampler = ExampleSampler(16, num_replicas=2, rank=1)
        sampler.set_epoch(1)
        loader = DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=workers)
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    restored = pickle.loads(pickle.dumps(dataset))  # what a spawned worker gets
    assert torch.equal(restored[17]["clean"], dataset[17]["clean"])


def test_chunk_dataset_validates(mixed_folder):
    with pytest.raises(ValueError, match="sample rate"):
        ChunkDataset({"a": mixed_folder, "b": GeneratedMusic(1, 1.0, 16000)}, 100, 1)
    with pytest.raises(ValueError, match="segment_frames"):
        ChunkDataset({"a": mixed_folder}, 0, 1)
