"""Names of a song's stems and of the files that hold them, defined once for the whole package."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

#: The four MUSDB18 targets, in the order Open-Unmix and Demucs list them (every default stem list).
MUSDB_STEMS: Tuple[str, ...] = ("vocals", "drums", "bass", "other")
#: Streams of a MUSDB18 ``.stem.mp4``, in file order: the mixture, then the stems.
MUSDB_STREAMS: Tuple[str, ...] = ("mixture", "drums", "bass", "other", "vocals")
#: The suffix of a multitrack stem file (Native Instruments stems, as MUSDB18 ships).
STEM_FILE_SUFFIX = ".stem.mp4"


def track_name(path: Union[str, "os.PathLike[str]"]) -> str:
    """A track's name from its file: ``song.stem.mp4`` -> ``song``, ``song.wav`` -> ``song`` (the two-part
    stem suffix is stripped whole, in any case)."""
    name = Path(path).name
    if name.lower().endswith(STEM_FILE_SUFFIX):
        return name[: -len(STEM_FILE_SUFFIX)]
    return Path(name).stem


__all__ = ["MUSDB_STEMS", "MUSDB_STREAMS", "STEM_FILE_SUFFIX", "track_name"]
