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


@pytest.fixture(scope="session")
def tiny_run_inputs():
    """`build(root)`: the inputs of the GRPO and tower-cache training tests (`_tiny_run_inputs`)."""
    return _tiny_run_inputs


def _tiny_run_inputs(root: Path) -> dict:
    """A tiny random Qwen2-Audio checkpoint and a benchmark of 8 training questions with wavs, under
    `root` (the inputs of the GRPO and tower-cache training tests)."""
    import torch

    from aqa_core.mini.data import MiniSizes, generate
    from aqa_core.mini.model import build_untrained

    torch.set_num_threads(2)
    model = build_untrained(root / "model", tiny=True)
    generate(root / "data", sizes=MiniSizes(train=8, validation=4, test=4, base=8), progress=False)
    return {"model": str(model), "data": root / "data", "root": root}
