"""Uncertainty for accuracies: Wilson intervals for one model, paired tests for two.

Two models scored on the SAME items are compared item by item, not by their two intervals
(overlapping intervals do not mean "no difference", and the paired view is far more sensitive).
Two tests, both on the per-item correctness vectors:

- `mcnemar_exact`: the exact (binomial) McNemar test on the discordant items: of the items exactly
  one model got right, is the split b:c compatible with 50:50?
- `paired_bootstrap`: resample items with replacement, recompute the accuracy difference, and
  report its percentile interval and a two-sided bootstrap p-value.

>>> round(wilson_interval(645, 1000)[0], 4), round(wilson_interval(645, 1000)[1], 4)
(0.6148, 0.6741)
>>> mcnemar_exact(1, 9)  # 2 * (C(10,0) + C(10,1)) / 2**10 = 22/1024
0.021484375
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


def _z(confidence: float) -> float:
    """Two-sided normal quantile, e.g. 1.959964 for 0.95."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0))


def percent_interval(correct: int, total: int) -> tuple[float, float, float]:
    """(accuracy, Wilson 95% low, high), all in percent; NaNs when `total` is 0.

    >>> [round(x, 1) for x in percent_interval(7, 10)]
    [70.0, 39.7, 89.2]
    """
    if total == 0:
        return math.nan, math.nan, math.nan
    lo, hi = wilson_interval(correct, total)
    return 100 * correct / total, 100 * lo, 100 * hi


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion `correct / total` (well-behaved at 0% and 100%,
    unlike the normal approximation). `total == 0` gives (0.0, 1.0): nothing is known.

    >>> lo, hi = wilson_interval(0, 10)
    >>> lo, round(hi, 4)
    (0.0, 0.2775)
    """
    if total < 0 or correct < 0 or correct > total:
        raise ValueError(f"need 0 <= correct <= total, got correct={correct}, total={total}")
    if total == 0:
        return 0.0, 1.0
    # One formula in the package: the scorer's (percent; aqa_core.eval.mmau imports no scipy, so
    # `score` starts fast). It equals scipy's `binomtest(k, n).proportion_ci(method="wilson")`.
    from .mmau import wilson_interval as wilson_percent

    lo, hi = wilson_percent(correct, total, z=_z(confidence))
    return lo / 100.0, hi / 100.0


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: `b` items only model A got
    right, `c` items only model B got right. Under H0 (equal accuracy) b ~ Binomial(b + c, 1/2);
    p = min(1, 2 * P(X <= min(b, c))). No discordant items gives p = 1.

    >>> mcnemar_exact(5, 5)
    1.0
    >>> mcnemar_exact(0, 6)  # 2 / 64
    0.03125
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    # For p = 1/2 the distribution is symmetric, so scipy's two-sided p (the outcomes no more
    # likely than the observed one) is exactly 2 * P(X <= min(b, c)), capped at 1.
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def _as_bool_vectors(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(
            f"paired tests need two 1-D correctness vectors over the same items; got shapes {a.shape} and {b.shape}"
        )
    return a, b


@dataclass(frozen=True)
class McNemarResult:
    """The 2x2 table of two models on the same items and the exact McNemar p-value."""

    both_correct: int
    only_a: int  # b: A right, B wrong
    only_b: int  # c: A wrong, B right
    both_wrong: int
    p_value: float

    @property
    def n(self) -> int:
        return self.both_correct + self.only_a + self.only_b + self.both_wrong

    @property
    def difference(self) -> float:
        """accuracy(A) - accuracy(B) = (b - c) / n."""
        return (self.only_a - self.only_b) / self.n if self.n else 0.0


def mcnemar_test(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemarResult:
    """Exact McNemar test on per-item correctness of models A and B (same items, same order).

    >>> r = mcnemar_test([1, 1, 0, 0, 1], [1, 0, 0, 0, 0])
    >>> (r.both_correct, r.only_a, r.only_b, r.both_wrong, r.p_value)
    (1, 2, 0, 2, 0.5)
    """
    a, b = _as_bool_vectors(correct_a, correct_b)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    return McNemarResult(
        both_correct=int(np.sum(a & b)),
        only_a=only_a,
        only_b=only_b,
        both_wrong=int(np.sum(~a & ~b)),
        p_value=mcnemar_exact(only_a, only_b),
    )


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of accuracy(A) - accuracy(B) over items."""

    difference: float  # observed accuracy(A) - accuracy(B)
    ci_low: float
    ci_high: float
    p_value: float  # two-sided: 2 * min(P*(d <= 0), P*(d >= 0)), capped at 1
    n_items: int
    n_resamples: int
    confidence: float


def _bootstrap_result(difference: float, diffs: np.ndarray, n_items: int, confidence: float) -> BootstrapResult:
    """The observed difference with the percentile interval of its resampled `diffs` and a
    two-sided p-value (how often a resample lands on either side of 0, doubled, capped at 1)."""
    alpha = 1.0 - confidence
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2.0 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    return BootstrapResult(difference=difference, ci_low=float(lo), ci_high=float(hi), p_value=p,
                           n_items=int(n_items), n_resamples=int(diffs.shape[0]), confidence=float(confidence))


def paired_bootstrap(
    correct_a: Sequence[bool],
    correct_b: Sequence[bool],
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Resample items (the same indices for both models) with replacement `n_resamples` times and
    return the observed accuracy difference A - B, its percentile interval and a two-sided p-value
    (how often the resampled difference lands on either side of 0, doubled). Deterministic given
    `seed`. Identical models give difference 0, interval (0, 0) and p = 1.

    >>> r = paired_bootstrap([1] * 30 + [0] * 10, [0] * 30 + [1] * 10, n_resamples=2000)
    >>> r.difference, r.p_value < 0.01
    (0.5, True)
    """
    # Our own rather than scipy.stats.bootstrap(paired=True): that gives the interval but no
    # p-value, and draws its resamples in another order (the book's intervals would move).
    a, b = _as_bool_vectors(correct_a, correct_b)
    n = a.shape[0]
    if n == 0:
        raise ValueError("paired_bootstrap needs at least one item")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    _z(confidence)  # validates the range
    d = a.astype(np.int8) - b.astype(np.int8)  # per-item difference in {-1, 0, 1}
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // n)  # bound memory: chunk x n indices at a time
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        diffs[start:stop] = d[idx].mean(axis=1)
    return _bootstrap_result(float(d.mean()), diffs, n, confidence)


def seeds_items_bootstrap(
    seeds_a: Sequence[Sequence[bool]],
    seeds_b: Sequence[Sequence[bool]],
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """The analysis plan's interval for method A - method B, each trained with several seeds and
    scored on the same items: each resample draws A's seeds and B's seeds with replacement
    (independently: seed i of one method has nothing to do with seed i of the other), then the
    items with replacement (the same items for every run: the pairing), and takes the mean
    accuracy of A's drawn runs minus B's on those items. Returns the observed difference of the
    seed-mean accuracies, the percentile interval and a two-sided p-value as `paired_bootstrap`
    (which this is, with one seed a side). `n_items` is the item count; rows are item-aligned.

    >>> r = seeds_items_bootstrap([[1] * 30 + [0] * 10] * 3, [[0] * 30 + [1] * 10] * 3, n_resamples=2000)
    >>> r.difference, r.p_value < 0.01
    (0.5, True)
    """
    a = np.asarray(seeds_a, dtype=np.float64)
    b = np.asarray(seeds_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[0] < 1 or b.shape[0] < 1:
        raise ValueError(f"need (seeds, items) arrays with the same items, got {a.shape} and {b.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    _z(confidence)
    n = a.shape[1]
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // max(1, n * max(a.shape[0], b.shape[0])))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        k = stop - start
        sa = rng.integers(0, a.shape[0], size=(k, a.shape[0]))
        sb = rng.integers(0, b.shape[0], size=(k, b.shape[0]))
        idx = rng.integers(0, n, size=(k, n))
        # per resample: mean over drawn seeds of the per-item correctness, then over drawn items
        ma = a[sa].mean(axis=1)  # (k, n): seed-mean correctness per item
        mb = b[sb].mean(axis=1)
        diffs[start:stop] = np.take_along_axis(ma - mb, idx, axis=1).mean(axis=1)
    return _bootstrap_result(float(a.mean() - b.mean()), diffs, n, confidence)


def seeds_items_interval(seeds: Sequence[Sequence[bool]], n_resamples: int = 10_000, confidence: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """The analysis plan's interval for one method's accuracy over its seeds: (seed-mean accuracy,
    low, high), resampling seeds, then items (`seeds_items_bootstrap` against a method that is
    never right).

    >>> seeds_items_interval([[1, 0] * 20, [1, 1] * 20], n_resamples=2000)[0]
    0.75
    """
    res = seeds_items_bootstrap(seeds, [[False] * len(seeds[0])], n_resamples, confidence, seed)
    return res.difference, res.ci_low, res.ci_high


def compare_paired(
    correct_a: Sequence[bool],
    correct_b: Sequence[bool],
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Both paired tests plus each model's accuracy and Wilson interval, as one JSON-ready dict
    (what the book quotes for "model A beats model B")."""
    a, b = _as_bool_vectors(correct_a, correct_b)
    n = int(a.shape[0])
    out = {"n_items": n}
    for name, v in (("a", a), ("b", b)):
        k = int(v.sum())
        lo, hi = wilson_interval(k, n, confidence)
        out[f"accuracy_{name}"] = k / n if n else 0.0
        out[f"ci_{name}"] = [lo, hi]
    m = mcnemar_test(a, b)
    out["mcnemar"] = asdict(m) | {"difference": m.difference}
    out["bootstrap"] = asdict(paired_bootstrap(a, b, n_resamples, confidence, seed))
    return out


def paired_correctness(
    predictions_a: list[dict], predictions_b: list[dict]
) -> tuple[list[bool], list[bool], list[str]]:
    """Per-item correctness of two MMAU prediction lists on the same questions, aligned by `id`
    and scored by the official rule (`aqa_core.eval.mmau`): (correct_a, correct_b, ids). Items must be
    the same set in both; an id present in one only is an error naming it.
    """
    from .mmau import score_predictions

    def by_id(preds: list[dict], name: str) -> dict[str, bool]:
        report = score_predictions(preds, source=name)
        out: dict[str, bool] = {}
        for o in report.outcomes:
            rid = str(preds[o.index].get("id", o.index))
            if rid in out:
                raise ValueError(f"{name}: id {rid!r} occurs twice; cannot pair items")
            out[rid] = o.correct
        return out

    a, b = by_id(predictions_a, "predictions A"), by_id(predictions_b, "predictions B")
    only = sorted(set(a) ^ set(b))
    if only:
        raise ValueError(f"the two prediction lists cover different items ({len(only)} unpaired, e.g. {only[:3]}); "
                         "a paired test needs the same questions")
    ids = sorted(a)
    return [a[i] for i in ids], [b[i] for i in ids], ids
