"""Shared fixtures. Tests that need the real benchmark files read them from ../shared/data
(next to the clone) and skip with a reason when it is absent, as in a user's clone."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AQA_SHARED_DATA", REPO.parent / "shared" / "data"))

# Keep CPU tests deterministic and polite on a 2-core machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip naming what is missing."""
    if not (SHARED_DATA / "mmau").is_dir():
        pytest.skip(f"real benchmark files not found at {SHARED_DATA} (only the project's own machines have ../shared)")
    return SHARED_DATA
