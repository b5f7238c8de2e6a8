"""The ``musicfx`` command.

* ``musicfx fit|validate|test|predict -c recipe.yaml [-c overlay.yaml ...]``: one LightningCLI in subclass
  mode serving every task (the recipe names the task, model, data and trainer).
* ``musicfx denoise|separate|debleed|mix|evaluate|fxnorm|restore ...``: run on files; each lives in
  ``musicfx/commands/`` (their shared flags and helpers in :mod:`musicfx.commands.common`).

Errors the user can fix (a missing file, silent input, a missing ffmpeg, an unwritable folder) print one
line, ``musicfx: error: ...``, no traceback, and exit with status :data:`ERROR_STATUS`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from musicfx.errors import MusicfxError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# Each module defines ``add_parser(commands)``, which adds its subparser and sets ``func``. Imported only to
# build the parser, so ``musicfx --help`` stays light.
COMMAND_MODULES: Tuple[str, ...] = (
    "musicfx.commands.denoise",
    "musicfx.commands.separate",
    "musicfx.commands.evaluate",
    "musicfx.commands.debleed",
    "musicfx.commands.mix",
    "musicfx.commands.fxnorm",
    "musicfx.commands.restore",
)
#: Exit status of an error the user can fix.
ERROR_STATUS = 1


def lightning_cli(argv: Optional[List[str]], run: bool = True):
    """The CLI every recipe goes through (``musicfx fit ...``, and ``benchmarks/gpu_check.py``).

    Args:
        argv: ``["fit", "-c", "recipe.yaml", ...]``; with ``run=False`` no subcommand (``["-c", ...]``):
            the trainer, model and datamodule are built and left to the caller. ``None``: ``sys.argv``.
        run: run the subcommand.
    """
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.cli import LightningArgumentParser

    from musicfx.checkpoint import safe_globals, secure_lightning_config
    from musicfx.tasks.base import Task
    from musicfx.tasks.rundir import RecipeCLI

    class _SafeCLI(RecipeCLI):
        """The recipe CLI, reading ``--ckpt_path`` as data only (see musicfx.checkpoint)."""

        def parse_arguments(self, parser: LightningArgumentParser, args: object) -> None:
            super().parse_arguments(parser, args)
            secure_lightning_config(self.config)

    with torch.serialization.safe_globals(safe_globals()):
        return _SafeCLI(
            Task,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=argv,
            run=run,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": "Train or evaluate a musicfx task from a recipe."},
        )


def _run_lightning(argv: Optional[List[str]]) -> int:
    """Run LightningCLI on ``argv`` (``None``: on ``sys.argv``, which DDP launchers re-execute)."""
    lightning_cli(argv)
    return 0


def _check_ckpt_path(argv: Sequence[str]) -> None:
    """``--ckpt_path FILE`` must name a PyTorch checkpoint: one line instead of a traceback from deep inside
    Lightning (the file's contents are checked by the loader itself)."""
    if any(token.startswith("--print_config") for token in argv):
        return  # nothing is loaded
    value = None
    for index, token in enumerate(argv):
        if token == "--ckpt_path" and index + 1 < len(argv):
            value = argv[index + 1]
        elif token.startswith("--ckpt_path="):
            value = token.split("=", 1)[1]
    if value in (None, "", "null", "None", "last", "best", "hpc", "registry") or "://" in str(value):
        return
    path = Path(value)
    if not path.is_file():
        raise MusicfxError(f"{path}: no such checkpoint (--ckpt_path)")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    # torch.save writes a zip archive (PK\x03\x04); its legacy format starts a pickle stream (\x80).
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise MusicfxError(f"{path}: not a PyTorch checkpoint (--ckpt_path)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicfx",
        description="Denoise, debleed, separate and automix recorded music.",
        epilog="Training: musicfx fit -c recipes/quickstart.yaml  (also validate, test, predict; "
        "see `musicfx fit --help`).",
    )
    parser.add_argument("--version", action="version", version=f"musicfx {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        commands.add_parser(name, help=f"{name} a task from a recipe (LightningCLI; -c recipe.yaml)", add_help=False)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(commands)
    return parser


def _version() -> str:
    from musicfx import __version__

    return __version__


def _error(message: str) -> int:
    print(f"musicfx: error: {message}", file=sys.stderr)
    return ERROR_STATUS


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            _check_ckpt_path(argv)
            return _run_lightning(None if argv == sys.argv[1:] else argv)
        parser = _build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.func(args)
    except MusicfxError as error:
        return _error(str(error))
    except OSError as error:
        # A file the system refused (permissions, a full or read-only disk): the file and the reason suffice.
        if error.filename is None:
            raise
        return _error(f"{error.filename}: {error.strerror or error}")
    except KeyboardInterrupt:
        print("musicfx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
