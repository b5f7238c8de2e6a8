"""Noise scenes for the denoise task, synthesized on the device for a whole batch.

Modules: :mod:`~musicfx.synth.noise.dsp` (shared signal helpers), one per category (``electrical``,
``crowd``, ``weather``, ``traffic``, ``stationary``), :mod:`~musicfx.synth.noise.categories` (the one
registry of categories) and :mod:`~musicfx.synth.noise.scene` (mixing at an SNR, :class:`NoiseSynth`).

The dataset draws each example's scene *parameters* on the CPU (:meth:`NoiseSynth.draw`, with that
example's own ``torch.Generator``); the datamodule moves them to the device with the clean chunks and calls
:class:`NoiseSynth` in ``on_after_batch_transfer``. Waveforms come from counter-based hashes of a per-example
``noise_seed`` (:mod:`musicfx.rng`), so an example's noise depends on nothing but its parameters:
not on the batch it lands in, its position there, the rank or the worker (bit for bit on one device; across
devices up to float rounding).

Five procedural categories follow the MusicECAN noise classes: electrical (hiss, clicks, crackle, mains
hum), crowd (babble), weather (rain, wind, thunder), traffic (rumble and passing vehicles) and stationary
(white to brown). Every generator has the signature ``(seeds (B,), channels, num_frames, sample_rate) ->
(B, channels, num_frames)`` and returns unit-RMS noise. Filtering is done by multiplying spectra; most
noises are born in the frequency domain as complex Gaussian spectra, which is white noise's rFFT and saves
a forward transform (the noise is circular over the clip, which training does not notice).
"""
from musicfx.synth.noise.categories import GENERATORS, NOISE_CATEGORIES, synthesize
from musicfx.synth.noise.crowd import crowd_noise
from musicfx.synth.noise.electrical import clicks, crackle, electrical_noise, hiss, hum
from musicfx.synth.noise.scene import NoiseSynth, mix_at_snr, snr_db
from musicfx.synth.noise.stationary import coloured_noise, stationary_noise
from musicfx.synth.noise.traffic import traffic_noise
from musicfx.synth.noise.weather import rain, thunder, weather_noise, wind

__all__ = [
    "NOISE_CATEGORIES",
    "GENERATORS",
    "NoiseSynth",
    "mix_at_snr",
    "snr_db",
    "synthesize",
    "electrical_noise",
    "crowd_noise",
    "weather_noise",
    "traffic_noise",
    "stationary_noise",
    "coloured_noise",
    "hum",
    "hiss",
    "clicks",
    "crackle",
    "rain",
    "wind",
    "thunder",
]
