"""Shared fixtures. Real recordings live in ``../shared/data`` beside the checkout; tests that need them
skip with a reason when that folder is absent."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MUSICFX_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (set MUSICFX_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def import_benchmark() -> Callable[[str], ModuleType]:
    """``import_benchmark("bench_debleed")``: a script of ``benchmarks/``, imported the way it imports its
    ``common`` helpers when run as a script (its folder on ``sys.path``)."""
    folder = str(REPO / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module


@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; more intra-op threads than that only adds contention.
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_thread(_few_threads):
    """One intra-op thread for the test, restored after it. For tests of many small tensor operations: on a
    shared 2-core machine a second thread only adds synchronisation, which made them up to 10x slower
    (measured). Use it per file with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def requires_cuda():
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """A quickstart checkpoint after a few CPU steps, made once per test session through the CLI."""
    from musicfx.cli import main

    folder = tmp_path_factory.mktemp("quickstart")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code = main([
            "fit", "-c", str(REPO / "recipes/quickstart.yaml"), "--trainer.accelerator=cpu",
            "--trainer.max_steps=3", "--trainer.limit_val_batches=0", "--trainer.max_time=null",
            "--data.init_args.num_workers=0", "--data.init_args.batch_size=2", "--data.init_args.segment=0.5",
        ])
    finally:
        os.chdir(cwd)
    assert code == 0
    path = folder / "runs/quickstart/checkpoints/last.ckpt"
    assert path.is_file()
    return path
