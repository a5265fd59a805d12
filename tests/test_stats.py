"""Wilson intervals and the paired tests on literal inputs with hand-computed answers."""
from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from aqa_core.eval import mmau
from aqa_core.eval.stats import (
    compare_paired,
    mcnemar_exact,
    mcnemar_test,
    paired_bootstrap,
    paired_correctness,
    wilson_interval,
)

Z = 1.959963984540054


def test_wilson_zero_successes_by_hand():
    # k = 0: lower bound 0, upper bound z^2 / (n + z^2) = 3.8415 / 13.8415
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(Z**2 / (10 + Z**2), abs=1e-12)
    assert hi == pytest.approx(0.27753, abs=1e-5)


def test_wilson_r1aqa_score_by_hand():
    # 645/1000 (R1-AQA's 64.5). The Wilson bounds are the roots in q of (p - q)^2 = z^2 q (1 - q) / n,
    # i.e. (1 + z^2/n) q^2 - (2p + z^2/n) q + p^2 = 0: solved here independently of the module.
    p, n = 0.645, 1000
    a, b, c = 1 + Z**2 / n, -(2 * p + Z**2 / n), p * p
    disc = math.sqrt(b * b - 4 * a * c)
    roots = ((-b - disc) / (2 * a), (-b + disc) / (2 * a))
    lo, hi = wilson_interval(645, 1000)
    assert (lo, hi) == pytest.approx(roots, abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (0.6148, 0.6741)
    # the scorer's own interval (percent) agrees
    mlo, mhi = mmau.wilson_interval(645, 1000)
    assert (mlo / 100, mhi / 100) == pytest.approx((lo, hi), abs=1e-12)


def test_wilson_edges_and_errors():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(10 / (10 + Z**2), abs=1e-12)
    wide, narrow = wilson_interval(50, 100, 0.99), wilson_interval(50, 100, 0.90)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]
    with pytest.raises(ValueError, match="correct <= total"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, 1.5)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (1, 9, 22 / 1024),  # 2 * (1 + 10) / 2^10
        (0, 6, 2 / 64),  # 2 * 1 / 2^6
        (9, 1, 22 / 1024),  # symmetric
        (2, 8, 2 * (1 + 10 + 45) / 1024),  # 112/1024 = 0.109375
        (5, 5, 1.0),  # capped at 1
        (0, 0, 1.0),  # no discordant pairs
    ],
)
def test_mcnemar_exact_hand_computed(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, abs=1e-15)


def test_mcnemar_exact_agrees_with_scipy_binomial():
    for b, c in [(3, 12), (20, 31), (7, 7), (0, 25)]:
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_mcnemar_test_on_a_literal_2x2_table():
    # A right on items 0-6, B right on items 0-2 and 7: both 3, only A 4, only B 1, neither 2
    a = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    b = [1, 1, 1, 0, 0, 0, 0, 1, 0, 0]
    r = mcnemar_test(a, b)
    assert (r.both_correct, r.only_a, r.only_b, r.both_wrong) == (3, 4, 1, 2)
    assert r.p_value == pytest.approx(2 * (1 + 5) / 32)  # 0.375
    assert r.difference == pytest.approx(0.3)
    with pytest.raises(ValueError, match="same items"):
        mcnemar_test([1, 0], [1, 0, 1])


def test_paired_bootstrap_identical_models():
    v = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
    r = paired_bootstrap(v, v, n_resamples=500)
    assert (r.difference, r.ci_low, r.ci_high, r.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_clear_difference_and_determinism():
    a = [1] * 60 + [0] * 40
    b = [1] * 40 + [0] * 60  # A right on 20 more items, never worse
    r = paired_bootstrap(a, b, n_resamples=4000, seed=1)
    assert r.difference == pytest.approx(0.2)
    assert 0 < r.ci_low < 0.2 < r.ci_high < 0.4
    assert r.p_value < 0.001
    assert r == paired_bootstrap(a, b, n_resamples=4000, seed=1)  # same seed, same answer


def test_paired_bootstrap_interval_matches_binomial_spread():
    # 100 items: A wins 30 discordant, B wins 20. d has mean 0.1 and sd sqrt(0.5 - 0.01);
    # the percentile interval should be close to 0.1 +- 1.96 * 0.7 / 10.
    a = [1] * 30 + [0] * 20 + [1] * 25 + [0] * 25
    b = [0] * 30 + [1] * 20 + [1] * 25 + [0] * 25
    r = paired_bootstrap(a, b, n_resamples=20000, seed=0)
    half = Z * math.sqrt(0.5 - 0.01) / 10
    assert r.ci_low == pytest.approx(0.1 - half, abs=0.02)
    assert r.ci_high == pytest.approx(0.1 + half, abs=0.02)


def test_compare_paired_bundle():
    out = compare_paired([1, 1, 0, 1], [0, 1, 0, 0], n_resamples=200)
    assert out["accuracy_a"] == 0.75 and out["accuracy_b"] == 0.25
    assert out["mcnemar"]["only_a"] == 2 and out["mcnemar"]["p_value"] == 0.5
    assert out["bootstrap"]["difference"] == 0.5


def _pred(i, answer, prediction):
    return {"id": f"q{i}", "question": "?", "choices": ["a dog", "a cat"], "answer": answer,
            "task": "sound", "difficulty": "easy", "sub-category": "x", "model_prediction": prediction}


def test_paired_correctness_aligns_by_id_and_uses_the_official_rule():
    a = [_pred(0, "a dog", "a dog"), _pred(1, "a cat", "dog"), _pred(2, "a cat", "A CAT!")]
    # other order; "the dog" would be wrong (the answer token "a" is missing)
    b = [_pred(2, "a cat", "a dog"), _pred(0, "a dog", "A dog."), _pred(1, "a cat", "<answer>a cat")]
    ca, cb, ids = paired_correctness(a, b)
    assert ids == ["q0", "q1", "q2"]
    assert ca == [True, False, True]
    assert cb == [True, True, False]
    with pytest.raises(ValueError, match="different items"):
        paired_correctness(a, b[:2])


def test_seeds_items_bootstrap_widens_with_seed_spread():
    import numpy as np

    from aqa_core.eval.stats import paired_bootstrap, seeds_items_bootstrap

    rng = np.random.default_rng(1)
    n = 400
    b = [list(rng.random(n) < 0.6) for _ in range(3)]
    same = [list(rng.random(n) < 0.7)] * 3
    spread = [list(rng.random(n) < p) for p in (0.55, 0.7, 0.85)]
    one = seeds_items_bootstrap(same[:1], b[:1], n_resamples=3000)
    ref = paired_bootstrap(same[0], b[0], n_resamples=3000)
    assert one.difference == pytest.approx(ref.difference) and one.n_items == n
    assert (one.ci_low, one.ci_high) == pytest.approx((ref.ci_low, ref.ci_high), abs=0.02)
    tight = seeds_items_bootstrap(same, b, n_resamples=3000)
    wide = seeds_items_bootstrap(spread, b, n_resamples=3000)
    assert wide.ci_high - wide.ci_low > 1.5 * (tight.ci_high - tight.ci_low)  # the seeds' spread counts
    assert seeds_items_bootstrap(spread, b, n_resamples=500) == seeds_items_bootstrap(spread, b, n_resamples=500)
    with pytest.raises(ValueError, match="same items"):
        seeds_items_bootstrap([[True] * 3], [[True] * 4])
