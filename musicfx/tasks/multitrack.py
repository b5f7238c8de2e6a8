"""The data side shared by every multitrack task (separate, debleed, automix).

:class:`MultitrackData` reads songs (MUSDB18, MUSDB18-HQ, any folder of stem folders, or the built-in
generator, by :func:`~musicfx.data.multitrack.multitrack_source`) as raw stem chunks ``(stems, channels,
time)``; each task's datamodule extends it once and turns the raw stems into its training scene on the device
in :meth:`~musicfx.tasks.data.ChunkData.scene` (remix, bleed, mixing console).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

from musicfx.data.multitrack import DEFAULT_STEMS, multitrack_source
from musicfx.data.sources import Source
from musicfx.errors import ConfigError
from musicfx.tasks.base import record_hparam
from musicfx.tasks.data import ChunkData


class MultitrackData(ChunkData):
    """Random chunks of multitrack songs, one ``(stems, channels, time)`` tensor per example (key ``"stems"``).

    Args:
        root: MUSDB18 (``.stem.mp4``), MUSDB18-HQ (``train/``, ``test/`` wav folders) or a folder of song
            folders holding ``<stem>.wav`` files; ``None``: the built-in generator (no download).
        stems: stem names read from each song, in order (a missing stem is silence, with a warning); default:
            the names the model declares when the data follows them (:attr:`model_names`), else the four
            MUSDB18 stems; set, they must equal the model's.
        random_mix: draw each stem of a training example from its own song and offset (Open-Unmix's
            ``random_track_mix``); validation and test examples always keep songs intact.
        segment, train_examples, generated_duration: as for :class:`~musicfx.tasks.data.ChunkData`, with
            multitrack defaults.
        **kwargs: the other arguments of :class:`~musicfx.tasks.data.ChunkData` (``sample_rate``,
            ``channels``, ``batch_size``, ``num_workers``, ``val_examples``, ``seed``, ``cache_dir``...).
    """

    default_channels = 2
    #: The task's attribute that names the stems this data reads (debleed ``tracks``, automix ``stems``), which
    #: the model declares; ``None``: the stems do not follow the model (separation sums stems into targets).
    model_names: Optional[str] = None

    def __init__(
        self,
        *,
        root: Optional[str] = None,
        stems: Optional[Sequence[str]] = None,
        random_mix: bool = False,
        segment: float = 6.0,
        train_examples: int = 4096,
        generated_duration: Optional[float] = 20.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(segment=segment, train_examples=train_examples, generated_duration=generated_duration,
                         **kwargs)
        if stems is not None and len(stems) == 0:
            raise ValueError("stems must name at least one stem")
        self.root = root
        if root is not None and self.scores is not None:
            raise ConfigError(f"give either root ({root}) or scores ({self.scores}) to train on, not both")
        self._stems_given = stems is not None
        self.stems: Tuple[str, ...] = DEFAULT_STEMS if stems is None else tuple(stems)
        self.random_mix = random_mix

    def _follow_names(self, task: Any) -> bool:
        """Read the stems from the model's names (:attr:`model_names`) when left unset; check them when set."""
        names = getattr(task, self.model_names, None) if self.model_names is not None else None
        if names is None:
            return False
        names = tuple(names)
        if self._stems_given:
            if names != self.stems:
                raise ConfigError(
                    f"the model's {self.model_names} are {list(names)} but data.init_args.stems is "
                    f"{list(self.stems)}; set both to the same names in the same order, or leave data.init_args.stems out"
                )
            return False
        record_hparam(self, "stems", list(names))  # what the run read, beside the task's (the logger compares)
        changed, self.stems = names != self.stems, names
        return changed

    def source(self, split: str) -> Source:
        """The songs of ``split``."""
        return self.sources(split)["stems"]

    def build_sources(self, split: str) -> Dict[str, Source]:
        if self.root is None:
            return {"stems": self.generated(split, self.stems)}
        return {"stems": multitrack_source(self.root, split=split, stems=self.stems, sample_rate=self.sample_rate,
                                           channels=self.channels, cache_dir=self.cache_dir)}
