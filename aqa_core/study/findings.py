"""The findings' sentences, made from the numbers (never typed by hand): the verdict on the
paper's question (GRPO against the better SFT run, worded by where the paired interval lies),
think vs no think, LoRA vs full, GRPO vs the base model, the base model against chance, and the
optimism of choosing checkpoints on the test set.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .design import BOOTSTRAP_SEED, SEEDS
from .results import ModelResult


def seed_runs(by_key: Mapping[str, ModelResult], key: str) -> list[ModelResult]:
    """The results of one method over its seeds: `key`, then `key_seed1`, `key_seed2`, ..."""
    runs = [r for k, r in by_key.items() if k == key or k.startswith(f"{key}_seed")]
    return sorted(runs, key=lambda r: r.seed)


def better_sft(by_key: Mapping[str, ModelResult]) -> str:
    """The key of the SFT variant (full or LoRA) with the higher mean validation accuracy over its
    seeds: the one the plan's primary comparison sets against GRPO <2>."""
    def mean_validation(k: str) -> float:
        vals = [r.validation_average for r in seed_runs(by_key, k) if r.validation_average is not None]
        return sum(vals) / len(vals) if vals else float("-inf")

    return max((k for k in ("sft_full", "sft_lora") if seed_runs(by_key, k)), key=mean_validation)


def plan_verdict(by_key: Mapping[str, ModelResult], n_resamples: int = 10_000) -> dict[str, Any]:
    """The analysis plan's primary comparison and verdict (book/plan.md): GRPO <2> against the SFT
    variant with the higher mean validation accuracy over seeds, each run at its validation-chosen
    checkpoint, pooled over seeds with the seeds-then-items bootstrap; "holds" or "reversed" only
    when the interval excludes zero, every compared run passes the convergence rule and each
    method has the plan's number of seeds; otherwise "not decided", naming what is missing.
    McNemar's test per seed is reported beside the interval, and a disagreement is said."""
    from ..eval.stats import mcnemar_test, seeds_items_bootstrap
    from ..runs import read_sweep
    from .results import convergence

    a_runs, b_runs = seed_runs(by_key, "grpo_p2"), seed_runs(by_key, better_sft(by_key))
    ids = sorted(set.intersection(*(set(r.correct) for r in a_runs + b_runs)))
    boot = seeds_items_bootstrap([[r.correct[i] for i in ids] for r in a_runs],
                                 [[r.correct[i] for i in ids] for r in b_runs], n_resamples, seed=BOOTSTRAP_SEED)
    diff, lo, hi = 100 * boot.difference, 100 * boot.ci_low, 100 * boot.ci_high
    not_converged, unknown = [], []
    for r in a_runs + b_runs:
        c = convergence(read_sweep(r.run_dir)) if r.run_dir is not None else {"converged": None}
        (not_converged if c["converged"] is False else unknown if c["converged"] is None else []).append(r.method)
    mcnemar = [mcnemar_test([ra.correct[i] for i in ids], [rb.correct[i] for i in ids]).p_value
               for ra, rb in zip(a_runs, b_runs, strict=False)]
    seeds = min(len(a_runs), len(b_runs))
    a_name, b_name = a_runs[0].method, b_runs[0].method
    sentence = (f"{a_name} against {b_name} (the better SFT on validation), pooled over {len(a_runs)} and "
                f"{len(b_runs)} training seeds on {len(ids)} test items: {diff:+.1f} points, 95% interval "
                f"[{lo:+.1f}, {hi:+.1f}] (a bootstrap over seeds, then items).")
    missing = []
    if lo <= 0 <= hi:
        missing.append("the interval contains zero")
    if seeds < SEEDS:
        missing.append(f"the plan needs {SEEDS} seeds per method and this build has {seeds}")
    if not_converged:
        missing.append(f"{len(not_converged)} of the {len(a_runs) + len(b_runs)} compared runs did not pass the "
                       "convergence rule")
    if unknown:
        missing.append(f"{len(unknown)} compared runs have too few checkpoints for the convergence rule")
    if missing:
        word = "not decided"
        sentence += " By the analysis plan's rule the verdict is not decided: " + "; ".join(missing) + "."
    else:
        word = "holds" if lo > 0 else "reversed"
        sentence += (" By the analysis plan's rule the paper's ordering (RL above SFT) holds at this scale."
                     if lo > 0 else " By the analysis plan's rule the ordering is the reverse of the paper's at this "
                                    "scale.")
    vals = [r.validation_average for r in a_runs + b_runs if r.validation_average is not None]
    if vals and min(vals) >= 99.0:
        level = "100%" if min(vals) >= 99.95 else f"at least {min(vals):.1f}%"
        sentence += (f" Every compared run scored {level} on the validation split (the training distribution) at its "
                     "chosen checkpoint: the checkpoint choice and the convergence rule rest on a saturated signal, "
                     "and say little about out-of-distribution accuracy (plan amendment 2).")
    sig = [p < 0.05 for p in mcnemar]
    sentence += " McNemar's test per seed: " + ", ".join(f"p = {p:.3g}" for p in mcnemar) + "."
    excludes = not (lo <= 0 <= hi)
    if mcnemar and (all(sig) != excludes or any(sig) != excludes):
        sentence += (" The per-seed tests and the pooled interval disagree: "
                     + (f"the interval excludes zero but only {sum(sig)} of the {len(sig)} seeds' tests "
                        f"{'is' if sum(sig) == 1 else 'are'} significant."
                        if excludes else f"{sum(sig)} of the {len(sig)} seeds' tests "
                        f"{'is' if sum(sig) == 1 else 'are'} significant but the pooled interval contains zero."))
    best = {"sft_full": "full SFT", "sft_lora": "LoRA SFT"}[better_sft(by_key)]
    return {"verdict": sentence, "verdict_word": word, "best_sft": b_name, "primary_diff": diff, "primary_lo": lo,
            "primary_hi": hi, "primary_seeds": seeds, "primary_items": len(ids),
            "headline": headline_sentence(word, missing, best, diff, lo, hi, seeds, len(ids))}


def signed(x: float) -> str:
    """A signed one-decimal number with a true minus sign, as the first screen prints it.

    >>> signed(2.04), signed(-0.9), signed(-5e-16)
    ('+2.0', '−0.9', '+0.0')
    """
    x = round(x, 1) + 0.0  # -0.0 (a bound that touches zero from below, rounded) prints as +0.0
    return f"{x:+.1f}".replace("-", "−")


def span(lo: float, hi: float) -> str:
    return f"[{signed(lo)}, {signed(hi)}]"


def within(subject: str, other: str, diff: float, lo: float, hi: float) -> str:
    """`subject` against `other`, worded by where the 95% interval lies."""
    numbers = f"{signed(diff)} points, 95% interval {span(lo, hi)}"
    if lo > 0:
        return f"{subject} scores above {other}: {numbers}."
    if hi < 0:
        return f"{subject} scores below {other}: {numbers}."
    return f"{subject} is within noise of {other}: {numbers}."


def headline_sentence(word: str, reasons: list[str], best_sft: str, diff: float, lo: float, hi: float,
                      seeds: int, items: int) -> str:
    """The verdict for the first screen: the word, the difference and its interval, and why.

    >>> s = headline_sentence("not decided", ["the interval contains zero"], "full SFT", 2.0, -1.1, 4.9, 3, 1000)
    >>> s[:42]
    'Not decided. GRPO with prompt <2> scored +'
    >>> s[-65:]
    '(three seeds each, 1,000 test items): the interval contains zero.'
    """
    number = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}.get(seeds, str(seeds))
    why = "; ".join(reasons) if reasons else (
        "the interval excludes zero and every compared run converged")
    return (f"{word[0].upper()}{word[1:]}. GRPO with prompt <2> scored {signed(diff)} points against {best_sft}, "
            f"the better SFT on validation, 95% interval {span(lo, hi)} ({number} seeds each, {items:,} test items): "
            f"{why}.")


def paired_sentence(a: str, b: str, diff: float, lo: float, hi: float) -> str:
    """One sentence on a paired comparison, worded by where its 95% interval lies."""
    interval = f"paired 95% interval [{lo:+.1f}, {hi:+.1f}] points"  # not `span`: that is this module's function
    if lo > 0:
        return f"{a} scored {diff:.1f} points above {b} ({interval}, excluding zero)."
    if hi < 0:
        return f"{a} scored {-diff:.1f} points below {b} ({interval}, excluding zero)."
    return f"{a} and {b} differ by {diff:+.1f} points, within noise ({interval}, including zero)."


def findings(scale: str, by_key: Mapping[str, ModelResult], values: Mapping[str, Any]) -> dict[str, Any]:
    """Sentences for "what the study found", made from the numbers (never typed by hand): GRPO
    (prompt <2>) against the better SFT run with the paired interval deciding the wording, and
    the same for think vs no think, LoRA vs full, GRPO vs the base model, and the optimism of
    choosing checkpoints on the test set."""
    out: dict[str, Any] = {}

    def pair(a: str, b: str) -> str | None:
        p = f"{scale}_{a}_vs_{b}"
        if f"{p}_diff" not in values:
            return None
        return paired_sentence(by_key[a].method, by_key[b].method, values[f"{p}_diff"], values[f"{p}_lo"],
                               values[f"{p}_hi"])

    sft = [k for k in ("sft_full", "sft_lora") if k in by_key]
    if "grpo_p2" not in by_key or not sft:
        out[f"{scale}_verdict"] = "Not all of GRPO prompt <2>, full SFT and LoRA SFT have results yet."
        out[f"{scale}_verdict_word"] = "not decided"
        out[f"{scale}_headline"] = "Not decided. Not all of GRPO prompt <2>, full SFT and LoRA SFT have results yet."
    else:
        v = plan_verdict(by_key, n_resamples=int(values.get("n_resamples", 10_000)))
        out.update({f"{scale}_{k}": val for k, val in v.items()})
    for name, (a, b) in {"think": ("grpo_p3", "grpo_p2"), "lora": ("sft_lora", "sft_full"),
                         "grpo_vs_base": ("grpo_p2", "direct_p2")}.items():
        sentence = pair(a, b)
        out[f"{scale}_{name}_sentence"] = sentence or f"({a} or {b} has no results yet.)"
    chance = values.get(f"{scale}_chance")
    if chance is not None and "direct_p2" in by_key:
        acc, lo, hi = by_key["direct_p2"].accuracy()
        where = ("above chance" if lo > chance else "below chance" if hi < chance
                 else "not distinguishable from chance")
        room = ("so fine-tuning has room to help or to hurt, as with the real base model"
                if lo > chance and hi < 95 else
                "unlike the real base model, which starts well above chance")
        out[f"{scale}_base_sentence"] = (f"With prompt <2> the base model answers {acc:.1f}% [{lo:.1f}, {hi:.1f}] "
                                         f"of the test questions correctly, {where} ({chance:.1f}%): {room}.")
    else:
        out[f"{scale}_base_sentence"] = "(The base model's direct inference has no results yet.)"
    gaps = [r.test_selected_average - r.accuracy()[0] for r in by_key.values() if r.test_selected_average is not None]
    out[f"{scale}_selection_gap"] = float(sum(gaps) / len(gaps)) if gaps else 0.0
    out[f"{scale}_selection_runs"] = len(gaps)
    return out
