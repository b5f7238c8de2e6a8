"""Audio building blocks: file I/O, STFT helpers and loudness.

Plotting lives in :mod:`musicfx.audio.plot` and is not re-exported here, so importing this package
does not import matplotlib.
"""
from musicfx.audio.io import (
    AUDIO_EXTENSIONS,
    STEM_EXTENSIONS,
    AudioInfo,
    audio_info,
    convert_channels,
    ensure_finite,
    ffmpeg_available,
    is_stem_file,
    read_audio,
    read_stem_blocks,
    read_stems,
    resample,
    write_audio,
)
from musicfx.audio.loudness import (
    default_channel_weights,
    fft_iir_filter,
    integrated_loudness,
    k_weighting,
    k_weighting_coefficients,
    loudness_gain_db,
    normalize_loudness,
)
from musicfx.audio.spectral import (
    ISTFT,
    STFT,
    amplitude_to_db,
    db_to_amplitude,
    db_to_power,
    fft_convolve,
    fft_frequencies,
    frame_times,
    hann_window,
    istft,
    magnitude,
    next_fast_len,
    power_to_db,
    spectrogram,
    stft,
)

__all__ = [
    # io
    "AUDIO_EXTENSIONS",
    "STEM_EXTENSIONS",
    "AudioInfo",
    "audio_info",
    "convert_channels",
    "ensure_finite",
    "ffmpeg_available",
    "is_stem_file",
    "read_audio",
    "read_stem_blocks",
    "read_stems",
    "resample",
    "write_audio",
    # spectral
    "ISTFT",
    "STFT",
    "amplitude_to_db",
    "db_to_amplitude",
    "db_to_power",
    "fft_convolve",
    "fft_frequencies",
    "frame_times",
    "hann_window",
    "istft",
    "magnitude",
    "next_fast_len",
    "power_to_db",
    "spectrogram",
    "stft",
    # loudness
    "default_channel_weights",
    "fft_iir_filter",
    "integrated_loudness",
    "k_weighting",
    "k_weighting_coefficients",
    "loudness_gain_db",
    "normalize_loudness",
]
