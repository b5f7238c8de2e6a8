"""Decode every audio file once, then read it as a memory-mapped float32 array.

Decoding (and resampling) a compressed or off-rate file for every random chunk would dominate training
time. :class:`DecodedCache` stores each file as a ``.npy`` array ``(channels, frames)`` at the requested
sample rate and channel count, keyed by a hash of the file's absolute path, size and modification time
and the requested format, so an edited file is decoded again and different formats coexist.

Entries are written to a temporary file and renamed into place, so a crash or two processes decoding
the same file never leave a half-written entry; an entry that is unreadable anyway (truncated by a full
disk, say) is decoded again. The cache holds no open file in its pickled state, so it can be handed to
DataLoader workers.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from musicfx.audio.io import atomic_path, read_audio
from musicfx.errors import DataError

PathLike = Union[str, os.PathLike]

#: Bump when the stored format changes, so old entries are ignored.
_FORMAT_VERSION = 1
#: Decoding more files than this at once shows a progress bar.
PROGRESS_MIN_FILES = 20


def default_cache_dir() -> Path:
    """``$MUSICFX_CACHE`` when set, else ``~/.cache/musicfx/decoded``."""
    configured = os.environ.get("MUSICFX_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "musicfx" / "decoded"


class DecodedCache:
    """Decoded audio files as memory-mapped float32 arrays ``(channels, frames)``.

    Args:
        cache_dir: where entries live; default: :func:`default_cache_dir`.
        max_open: memory maps kept open per process (each holds a file descriptor); older ones are
            closed first.
    """

    def __init__(self, cache_dir: Optional[PathLike] = None, max_open: int = 64) -> None:
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.max_open = int(max_open)
        self._open: "OrderedDict[Path, np.ndarray]" = OrderedDict()

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # a pickled memmap would be copied whole; workers reopen lazily
        return state

    def entry_path(self, path: PathLike, sample_rate: int, channels: int) -> Path:
        """Where the decoded form of ``path`` at ``sample_rate`` Hz and ``channels`` channels is stored."""
        path = Path(path).resolve()
        try:
            stat = path.stat()
        except OSError as error:
            raise DataError(f"{path}: cannot read file ({error.strerror})") from None
        fields = (_FORMAT_VERSION, str(path), stat.st_size, stat.st_mtime_ns, int(sample_rate), int(channels))
        key = hashlib.sha1("\0".join(map(str, fields)).encode()).hexdigest()[:24]
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem)[:40]
        return self.cache_dir / f"{stem}-{key}.npy"

    def load(self, path: PathLike, sample_rate: int, channels: int) -> np.ndarray:
        """The decoded file, memory-mapped read-only: float32 ``(channels, frames)``.

        Decodes (resampling with soxr, converting channels) only when no valid entry exists.

        Raises:
            AudioError: the file cannot be decoded or holds NaN/inf.
            DataError: the cache folder cannot be written.
        """
        entry = self.entry_path(path, sample_rate, channels)
        array = self._try_open(entry, channels)
        if array is None:
            self._decode(Path(path), sample_rate, channels, entry)
            array = self._try_open(entry, channels)
            if array is None:
                raise DataError(f"{entry}: cache entry unreadable right after writing it; is {self.cache_dir} full?")
        return array

    def prepare(
        self, paths: Sequence[PathLike], sample_rate: int, channels: int, progress: Optional[bool] = None
    ) -> List[Tuple[Path, int]]:
        """Decode whichever of ``paths`` are not cached yet; return ``(entry, frames)`` for each path.

        Args:
            paths: audio files.
            sample_rate: target rate.
            channels: target channel count.
            progress: show a progress bar; default: when more than ``PROGRESS_MIN_FILES`` files need decoding.
        """
        entries = [self.entry_path(path, sample_rate, channels) for path in paths]
        frames: List[Optional[int]] = []
        for entry in entries:
            array = self._try_open(entry, channels, keep=False)
            frames.append(None if array is None else array.shape[1])
        missing = [i for i, count in enumerate(frames) if count is None]
        show = len(missing) > PROGRESS_MIN_FILES if progress is None else progress
        for i in tqdm(missing, desc=f"decoding audio into {self.cache_dir}", unit="file", disable=not show):
            frames[i] = self.load(paths[i], sample_rate, channels).shape[1]
        return [(entry, int(count)) for entry, count in zip(entries, frames)]

    def open(self, entry: Path, channels: Optional[int] = None) -> np.ndarray:
        """Memory-map an entry returned by :meth:`prepare` (kept open, least recently used closed first)."""
        array = self._try_open(entry, channels)
        if array is None:
            raise DataError(f"{entry}: cache entry missing or damaged; it was removed after the dataset was built")
        return array

    def _try_open(self, entry: Path, channels: Optional[int], keep: bool = True) -> Optional[np.ndarray]:
        """The memory-mapped entry, or None when it is absent or not a valid ``(channels, frames)`` float32."""
        array = self._open.get(entry)
        if array is not None:
            self._open.move_to_end(entry)
            return array
        try:
            array = np.load(entry, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):  # absent, truncated, or not an .npy file
            return None
        valid = array.dtype == np.float32 and array.ndim == 2 and array.shape[1] > 0
        if not valid or (channels is not None and array.shape[0] != channels):
            return None
        if keep:
            self._open[entry] = array
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
        return array

    def _decode(self, path: Path, sample_rate: int, channels: int, entry: Path) -> None:
        audio, _ = read_audio(path, sample_rate=sample_rate, channels=channels)
        data = np.ascontiguousarray(audio.numpy(), dtype=np.float32)
        if not data.any():  # said once, when the file is decoded; its chunks will all be rejected or silent
            warnings.warn(f"{path}: the recording is silent (all samples are zero); it adds no sound to training",
                          UserWarning, stacklevel=2)
        try:
            with atomic_path(entry) as temporary, open(temporary, "wb") as file:
                np.save(file, data, allow_pickle=False)  # a file object: np.save would append .npy to a name
        except OSError as error:
            raise DataError(
                f"{entry}: cannot write the decoded-audio cache for {path} ({error.strerror or error}); "
                "set MUSICFX_CACHE or pass cache_dir to a writable folder with free space"
            ) from None
