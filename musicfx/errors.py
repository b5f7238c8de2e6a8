"""Exceptions that carry a message meant for the user.

The CLI prints a :class:`MusicfxError` as one line, without a traceback; anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations


class MusicfxError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class AudioError(MusicfxError):
    """A file that cannot be read or written, or audio that cannot be used (NaN, silent, too short)."""


class DataError(MusicfxError):
    """A dataset folder or source that is missing, empty or laid out wrongly."""


class MissingDependencyError(MusicfxError):
    """An optional program or package (ffmpeg, musdb, wandb) needed for what was asked is absent."""


class ConfigError(MusicfxError):
    """A recipe whose parts disagree (e.g. the model's and the data's sample rates)."""


class CheckpointError(MusicfxError):
    """A checkpoint that is missing, unreadable, of the wrong kind, or that would run code when loaded."""
