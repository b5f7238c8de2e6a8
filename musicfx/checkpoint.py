"""Reading checkpoints as data, never as code.

A ``.ckpt`` is a pickle, and unpickling can run any code the file names. Every checkpoint musicfx reads
(:func:`musicfx.load`, each command's ``--ckpt``, ``fit --ckpt_path``, an automix ``pretrained`` front
end) goes through :func:`load_checkpoint`, which unpickles with ``torch.load(weights_only=True)`` and
allows, beyond tensors and Python's plain containers, only the few plain types a checkpoint written by
``musicfx fit`` holds (paths, numpy scalars and arrays). The model is
rebuilt from the recipe stored in the file (``class_path`` / ``init_args``), and only from classes of
musicfx and torch. Anything else is refused with one line saying what the file needs, unless the
caller trusts the file (``trust=True``, ``--trust-checkpoint``).
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from musicfx.errors import CheckpointError

if TYPE_CHECKING:  # torch is imported when a checkpoint is read, so `musicfx --help` stays light
    import torch

PathLike = Union[str, os.PathLike]

__all__ = [
    "load_checkpoint", "check_checkpoint", "safe_globals", "rebuild_allowed", "add_trust_argument", "TRUST_HINT",
]

#: The opt-in a refusal names (the CLI flag and its API twin).
TRUST_HINT = "--trust-checkpoint (trust=True in Python)"
#: Modules a stored recipe may name classes from when the file is not trusted.
ALLOWED_CLASS_PREFIXES: Tuple[str, ...] = ("musicfx.", "torch.")
#: Lightning's own instantiator, the only one a recipe stored by LightningCLI names.
ALLOWED_INSTANTIATORS: Tuple[str, ...] = ("lightning.pytorch.cli.instantiate_module",)


def safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The plain types, beyond torch's defaults, a musicfx checkpoint may hold.

    Each one only rebuilds a value from its arguments (a path from strings, a numpy scalar from its
    bytes); none imports or calls anything the file chooses.
    """
    import pathlib

    import numpy as np

    allowed: List[Union[Callable, Tuple[Callable, str]]] = [
        pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath,
        np.dtype, np.ndarray,
    ]
    # numpy 2 pickles name numpy._core, numpy 1 numpy.core: allow both spellings of the same functions.
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    for function in (multiarray.scalar, multiarray._reconstruct):
        allowed += [function, (function, f"numpy.core.multiarray.{function.__name__}")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:  # numpy >= 1.25 pickles a dtype through its class
        allowed += [getattr(dtypes, name) for name in (
            "BoolDType", "Int8DType", "Int16DType", "Int32DType", "Int64DType", "UInt8DType", "UInt16DType",
            "UInt32DType", "UInt64DType", "Float16DType", "Float32DType", "Float64DType", "LongDType",
            "ULongDType", "LongLongDType", "ULongLongDType", "ByteDType", "UByteDType", "ShortDType",
            "UShortDType", "IntDType", "UIntDType", "Complex64DType", "Complex128DType", "StrDType",
        ) if hasattr(dtypes, name)]
    return allowed


def _short(error: BaseException) -> str:
    """The first sentence of an error, without torch's advice to load with ``weights_only=False``."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    if not first or "weights_only" in first:
        return type(error).__name__
    return first.split(". ")[0].rstrip(".")


def _unpickler_reason(error: BaseException) -> str:
    """The line of torch's restricted-unpickler error that says what it met, without its advice."""
    for line in str(error).splitlines():
        line = line.strip()
        if line and not any(word in line for word in ("weights_only", "Weights only", "documentation", "PyTorch 2.6")):
            return line.rstrip(".")
    return type(error).__name__


def _unsafe_globals(path: Path) -> List[str]:
    """What the file's pickle imports beyond the allowed types, read without unpickling anything."""
    import torch

    if not zipfile.is_zipfile(path):
        return []  # the legacy (pre-1.6) format: the restricted unpickler itself names the first one
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))))
    except Exception:  # not a torch archive: torch.load below says so
        return []


def _opt_in(hint: Optional[str]) -> str:
    return f"if you wrote this file or trust its source, pass {hint}" if hint else "only plain data is read here"


def _refuse(path: Path, names: List[str], hint: Optional[str]) -> CheckpointError:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    # Modules of musicfx or torch in the pickle: most likely a task built in Python, not a payload.
    why = (" (a task built in Python from module objects pickles them; build it with Task.from_config, as "
           "`musicfx fit` does, to store the recipe instead)"
           if any(name.startswith(("musicfx.", "torch.nn.")) for name in names) else "")
    return CheckpointError(
        f"{path}: refused: unpickling it would import {shown}, which can run code{why}; musicfx loads "
        f"checkpoints as data (tensors and the recipe); {_opt_in(hint)}"
    )


def _class_paths(value: Any, where: str = "") -> Iterator[Tuple[str, str]]:
    """``(where, dotted name)`` of every class a stored recipe names (``class_path``, ``_class_path``,
    ``_instantiator``), at any depth of nested ``init_args``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("class_path", "_class_path", "_instantiator") and isinstance(item, str):
                yield f"{where}{key}", item
            else:
                yield from _class_paths(item, f"{where}{key}.")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _class_paths(item, f"{where}{i}.")


def rebuild_allowed(path: PathLike, checkpoint: Dict[str, Any], hint: Optional[str] = TRUST_HINT) -> None:
    """Refuse a recipe that would build classes from outside musicfx and torch.

    Rebuilding the model imports and instantiates the classes the stored recipe names: a data-only
    file could otherwise name any installed class and its arguments.

    Raises:
        CheckpointError: naming the first class outside musicfx / torch.
    """
    entries = list(_class_paths(checkpoint.get("hyper_parameters") or {}, "hyper_parameters."))
    task = (checkpoint.get("musicfx") or {}).get("task") if isinstance(checkpoint.get("musicfx"), dict) else None
    if task is not None:
        entries.append(("musicfx.task", task))
    for where, name in entries:
        ok = name in ALLOWED_INSTANTIATORS if where.endswith("_instantiator") else (
            isinstance(name, str) and name.startswith(ALLOWED_CLASS_PREFIXES)
        )
        if not ok:
            raise CheckpointError(
                f"{path}: refused: its recipe ({where}) names {name!r}, outside musicfx and torch, and building "
                f"it would run that code; {_opt_in(hint)}"
            )


def load_checkpoint(
    path: PathLike,
    trust: bool = False,
    map_location: Union[str, "torch.device", None] = "cpu",
    mmap: bool = False,
    hint: Optional[str] = TRUST_HINT,
) -> Dict[str, Any]:
    """Load a Lightning checkpoint as plain data.

    Args:
        path: a ``.ckpt`` written by ``musicfx fit`` (or any Trainer running a musicfx task).
        trust: unpickle with ``weights_only=False``: the file may run any code. Only for files you
            wrote yourself or got from a source you trust (e.g. a task built in Python, whose
            hyper-parameters pickle the model object itself).
        map_location: where tensors go (``torch.load``'s argument).
        mmap: memory-map the tensors instead of reading them (cheap when only the metadata is needed).
        hint: the opt-in a refusal names (``None`` where there is none, e.g. ``fit --ckpt_path``).

    Returns:
        The checkpoint dict (``state_dict``, ``hyper_parameters``, ...).

    Raises:
        CheckpointError: no such file, not a readable checkpoint, not a Lightning checkpoint, or (unless
            ``trust``) a file that needs more than plain data or names classes outside musicfx and torch.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    mmap = mmap and zipfile.is_zipfile(path)  # torch maps only its zip format, not legacy pickles
    if not trust:
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise _refuse(path, unsafe, hint)
    try:
        if trust:
            checkpoint = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
        else:
            with torch.serialization.safe_globals(safe_globals()):
                checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found and not trust:
            raise _refuse(path, [found.group(1)], hint) from None
        if zipfile.is_zipfile(path) and not trust:
            # A torch archive whose pickle does more than build plain containers (torch says what).
            raise CheckpointError(
                f"{path}: refused: its pickle holds more than plain data ({_unpickler_reason(error)}); "
                f"{_opt_in(hint)}"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint (not a PyTorch file)") from None
    except EOFError:
        raise CheckpointError(f"{path}: not a readable checkpoint (empty or cut short)") from None
    except Exception as error:  # torch raises RuntimeError / ValueError / OSError for corrupt archives
        raise CheckpointError(f"{path}: not a readable checkpoint ({_short(error)})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    if not trust:
        rebuild_allowed(path, checkpoint, hint)
    return checkpoint


def check_checkpoint(path: PathLike, hint: Optional[str] = None) -> None:
    """Check, before Lightning reads it, that ``path`` loads as data (``fit/validate/test --ckpt_path``).

    The tensors are memory-mapped, not read, so this costs little next to the load that follows.

    Raises:
        CheckpointError: as :func:`load_checkpoint` with ``trust=False``.
    """
    load_checkpoint(path, trust=False, mmap=True, hint=hint)


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--trust-checkpoint`` to a command that takes ``--ckpt``."""
    parser.add_argument(
        "--trust-checkpoint", action="store_true",
        help="also load a checkpoint that holds more than plain data (pickled Python objects), which can "
        "run code: only for files you trust",
    )


#: ``ckpt_path`` values Lightning resolves itself to a checkpoint of the current run.
_LIGHTNING_KEYWORDS = ("last", "best", "hpc", "registry")


def secure_lightning_config(config: Any) -> None:
    """Make a parsed LightningCLI config read its ``ckpt_path`` as data.

    The file is checked with :func:`check_checkpoint` (one line on a garbage or code-running file, before
    Lightning reads it) and the subcommand's ``weights_only`` is set to ``True``, whatever Lightning's
    version defaults to.

    Args:
        config: ``LightningCLI.config`` after parsing (a jsonargparse ``Namespace``).

    Raises:
        CheckpointError: the checkpoint is missing, unreadable or not plain data.
    """
    subcommand = config.get("subcommand")
    if not subcommand:
        return
    arguments = config[subcommand]
    ckpt_path = arguments.get("ckpt_path")
    if ckpt_path and str(ckpt_path) not in _LIGHTNING_KEYWORDS and "://" not in str(ckpt_path):
        check_checkpoint(ckpt_path, hint=None)
    if "weights_only" in arguments:
        arguments["weights_only"] = True
