"""The findings' sentences, made from the numbers (never typed by hand): the verdict on the
paper's question (GRPO against the better SFT run, worded by where the paired interval lies),
think vs no think, LoRA vs full, GRPO vs the base model, the base model against chance, and the
optimism of choosing checkpoints on the test set.
"""
from __future__ import annotations

from typing import Any, Mapping

from .results import ModelResult

PLAN_SEEDS = 3  # book/plan.md: training seeds per method that a verdict needs


def paired_sentence(a: str, b: str, diff: float, lo: float, hi: float) -> str:
    """One sentence on a paired comparison, worded by where its 95% interval lies."""
    span = f"paired 95% interval [{lo:+.1f}, {hi:+.1f}] points"
    if lo > 0:
        return f"{a} scored {diff:.1f} points above {b} ({span}, excluding zero)."
    if hi < 0:
        return f"{a} scored {-diff:.1f} points below {b} ({span}, excluding zero)."
    return f"{a} and {b} differ by {diff:+.1f} points, within noise ({span}, including zero)."


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
        return paired_sentence(by_key[a].method, by_key[b].method, values[f"{p}_diff"], values[f"{p}_lo"], values[f"{p}_hi"])

    sft = [k for k in ("sft_full", "sft_lora") if k in by_key]
    if "grpo_p2" not in by_key or not sft:
        out[f"{scale}_verdict"] = "Not all of GRPO prompt <2>, full SFT and LoRA SFT have results yet."
    else:
        # the better SFT variant is chosen on validation (the analysis plan), never on the test set
        best_sft = max(sft, key=lambda k: (by_key[k].validation_average is not None,
                                           by_key[k].validation_average or 0.0, by_key[k].accuracy()[0]))
        seeds = min(sum(1 for k in by_key if k == key or k.startswith(f"{key}_seed")) for key in ("grpo_p2", best_sft))
        out[f"{scale}_verdict"] = (
            f"{pair('grpo_p2', best_sft)} By the analysis plan's rule the verdict is not decided: it needs "
            f"{PLAN_SEEDS} training seeds per method, pooled (this build has {seeds}), and runs that pass the plan's "
            "convergence rule (not yet computed by this build).")
        out[f"{scale}_best_sft"] = by_key[best_sft].method
    for name, (a, b) in {"think": ("grpo_p3", "grpo_p2"), "lora": ("sft_lora", "sft_full"),
                         "grpo_vs_base": ("grpo_p2", "direct_p2")}.items():
        sentence = pair(a, b)
        out[f"{scale}_{name}_sentence"] = sentence or f"({a} or {b} has no results yet.)"
    chance = values.get(f"{scale}_chance")
    if chance is not None and "direct_p2" in by_key:
        acc, lo, hi = by_key["direct_p2"].accuracy()
        where = ("above chance" if lo > chance else "below chance" if hi < chance else "not distinguishable from chance")
        room = ("so fine-tuning has room to help or to hurt, as with the real base model"
                if lo > chance and hi < 95 else
                "unlike the real base model, which starts well above chance")
        out[f"{scale}_base_sentence"] = (f"With prompt <2> the base model answers {acc:.1f}% [{lo:.1f}, {hi:.1f}] of the "
                                         f"test questions correctly, {where} ({chance:.1f}%): {room}.")
    else:
        out[f"{scale}_base_sentence"] = "(The base model's direct inference has no results yet.)"
    gaps = [r.test_selected_average - r.accuracy()[0] for r in by_key.values() if r.test_selected_average is not None]
    out[f"{scale}_selection_gap"] = float(sum(gaps) / len(gaps)) if gaps else 0.0
    out[f"{scale}_selection_runs"] = len(gaps)
    return out
