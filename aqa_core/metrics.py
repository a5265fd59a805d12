"""A run's `metrics.jsonl`, read without torch or transformers (notebook kernels and the report
import this; `aqa_core.runs.MetricsCallback` writes it).

One JSON object per logging step, `{"step": N, <every logged value>}`, then one row with
`"summary": true` (the Trainer's final train_runtime, train_loss, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .data import iter_jsonl

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path, summary: bool = False) -> list[dict]:
    """The rows of `<run_dir>/metrics.jsonl` (per-step rows; `summary=True` adds the final one)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (has the run started?)")
    return [row for _, row in iter_jsonl(path) if summary or not row.get("summary")]


def tenth_means(values: Sequence[float]) -> tuple[float, float]:
    """Mean over the first and over the last tenth of a series (at least one value each).

    >>> tenth_means([i / 10 for i in range(1, 21)])
    (0.15, 1.95)
    """
    if not values:
        raise ValueError("an empty series has no first or last tenth")
    n = max(1, len(values) // 10)
    return round(sum(values[:n]) / n, 10), round(sum(values[-n:]) / n, 10)


def first_last_tenth(rows: list[dict], key: str) -> tuple[float, float]:
    """`tenth_means` of one metric over the logged steps (GRPO reward rising, SFT loss falling).

    >>> first_last_tenth([{"step": i, "reward": i / 10} for i in range(1, 21)], "reward")
    (0.15, 1.95)
    """
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    if not values:
        raise ValueError(f"no {key!r} values in {len(rows)} metric rows")
    return tenth_means(values)
