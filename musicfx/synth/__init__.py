"""On-the-fly scene builders: batched, on the device, deterministic per example.

Each builder pairs a CPU-side ``draw(generator)`` of one example's scalar scene parameters with a batched
``forward`` that renders the scenes on the device (in the datamodule's ``on_after_batch_transfer``).
Randomness inside ``forward`` comes from the counter-based hashes of :mod:`musicfx.rng`, keyed by
per-example seeds, so that an example's scene does not depend on the batch it lands in.

:mod:`~musicfx.synth.rooms` simulates the rooms (impulse responses) the bleed and console scenes use.
Nothing here reads files: recorded impulse responses and the room bank's cache come through
:mod:`musicfx.data.impulse_responses`.
"""
from .bleed import BleedSynth
from .console import RandomConsole
from .noise import NOISE_CATEGORIES, NoiseSynth, mix_at_snr, synthesize
from .remix import ChannelSwap, RandomGain, Remix, RemixAugment, Shift, SignFlip

__all__ = [
    "BleedSynth",
    "ChannelSwap",
    "RandomConsole",
    "RandomGain",
    "Remix",
    "RemixAugment",
    "Shift",
    "SignFlip",
    "NOISE_CATEGORIES",
    "NoiseSynth",
    "mix_at_snr",
    "synthesize",
]
