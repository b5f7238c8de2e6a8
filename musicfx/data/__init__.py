"""Training material: sources of audio, the decode-once cache, random chunks and their seeding, and the
built-in music generator."""
from musicfx.data.cache import DecodedCache, default_cache_dir
from musicfx.data.generator import STEMS, generate_music, generate_stems
from musicfx.data.multitrack import (
    MUSDB18,
    MUSDB18HQ,
    GeneratedStems,
    MultitrackSource,
    StemChunkDataset,
    StemFolder,
    multitrack_source,
    musdb_validation_tracks,
)
from musicfx.data.sampling import ChunkDataset, ExampleSampler, example_generator, example_seed, rms_db
from musicfx.data.sources import (
    AudioFolder,
    GeneratedMusic,
    MNDataset,
    NoiseFolder,
    Source,
    hash_split,
    list_audio_files,
)

__all__ = [
    "GeneratedStems",
    "MUSDB18",
    "MUSDB18HQ",
    "MultitrackSource",
    "StemChunkDataset",
    "StemFolder",
    "multitrack_source",
    "musdb_validation_tracks",
    "AudioFolder",
    "ChunkDataset",
    "DecodedCache",
    "ExampleSampler",
    "GeneratedMusic",
    "MNDataset",
    "NoiseFolder",
    "STEMS",
    "Source",
    "default_cache_dir",
    "example_generator",
    "example_seed",
    "generate_music",
    "generate_stems",
    "hash_split",
    "list_audio_files",
    "rms_db",
]
