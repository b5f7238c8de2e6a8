"""Training material: sources of audio (files, noise, M&N, stem folders, MUSDB18 / -HQ, the built-in
generator), the decode-once cache, random chunks, seeds and splits, and the loaders built on them."""
from musicfx.data.cache import DecodedCache, default_cache_dir
from musicfx.data.generator import STEMS, generate_music, generate_stems
from musicfx.data.multitrack import MUSDB18, MUSDB18HQ, StemFolder, multitrack_source, musdb_validation_tracks
from musicfx.data.sampling import ChunkDataset, ExampleSampler, ResumableLoader, make_loader, rms_db, usable_cores
from musicfx.data.seeding import (SPLIT_SEEDS, example_generator, example_seed, hash_split, normalize_split,
                                  song_seed, split_seed)
from musicfx.data.sources import MIX, AudioFolder, GeneratedMusic, MNDataset, NoiseFolder, Source, list_audio_files

__all__ = [
    "AudioFolder",
    "ChunkDataset",
    "DecodedCache",
    "ExampleSampler",
    "GeneratedMusic",
    "MIX",
    "MNDataset",
    "MUSDB18",
    "MUSDB18HQ",
    "NoiseFolder",
    "ResumableLoader",
    "SPLIT_SEEDS",
    "STEMS",
    "Source",
    "StemFolder",
    "default_cache_dir",
    "example_generator",
    "example_seed",
    "generate_music",
    "generate_stems",
    "hash_split",
    "list_audio_files",
    "make_loader",
    "multitrack_source",
    "musdb_validation_tracks",
    "normalize_split",
    "rms_db",
    "song_seed",
    "split_seed",
    "usable_cores",
]
