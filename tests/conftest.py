"""Shared fixtures. Real recordings live in ``../shared/data`` beside the checkout; tests that need them
skip with a reason when that folder is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MUSICFX_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (set MUSICFX_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; more intra-op threads than that only adds contention.
    torch.set_num_threads(2)
    yield


def requires_cuda():
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
