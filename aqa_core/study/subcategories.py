"""Per sub-category, seen and unseen: what each method gains on the kinds of question `train`
asks and what it loses (forgets) on the kinds it never asks, against the base model it started from.

`subcategory_tables(result_dir)` reads a mini results folder (its `data/test-mini.json` and the
runs Table 2 reads, `aqa_core.study.results.load_result_dir`) and gives two tables:

- every test sub-category: seen or unseen, items, chance (the mean of 1/choices), the base model
  with prompt <2> and each method's accuracy, the mean over its seeds at the checkpoint chosen on
  validation (Table 2's rule);
- per method, the change from the base model on the seen items and on the unseen items, pooled
  over seeds, with the analysis plan's interval (`stats.seeds_items_bootstrap`: seeds, then
  items; the base is one deterministic run). Reported, not deciding (book/plan.md, secondary).

Seen = a sub-category `train` asks (`aqa_core.mini.tasks.TRAIN_SUBCATS`); at full scale AVQA's
kinds are not MMAU's sub-categories, so these tables are the mini scale's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .display import Table
from .findings import seed_runs
from .results import load_result_dir

#: (key of the runs in Table 2, column label): the methods the tables compare with the base.
COMPARED = (("sft_full", "full SFT <1>"), ("sft_lora", "LoRA SFT <1>"), ("grpo_p2", "GRPO <2>"),
           ("grpo_p3", "GRPO <3>"))
BASE = ("direct_p2", "base <2>")


def subcategory_tables(result_dir: str | Path, n_resamples: int = 10_000) -> tuple[Table, Table] | None:
    """(the per-sub-category table, the seen/unseen change table), or None when the folder has no
    mini test file or no base model result."""
    import pandas as pd

    from ..eval.stats import seeds_items_bootstrap
    from ..mini.tasks import SUBCATS, TRAIN_SUBCATS

    result_dir = Path(result_dir)
    test = result_dir / "data" / "test-mini.json"
    by_key = {r.key: r for r in load_result_dir(result_dir)}
    if not test.is_file() or BASE[0] not in by_key:
        return None
    items = json.loads(test.read_text(encoding="utf-8"))
    sub_of = {str(r["id"]): r["sub-category"] for r in items}
    chance_of = {str(r["id"]): 1 / len(r["choices"]) for r in items}
    seen_names = {SUBCATS[k].name for k in TRAIN_SUBCATS}
    methods = [(k, label, seed_runs(by_key, k)) for k, label in COMPARED]
    methods = [(k, label, runs) for k, label, runs in methods if runs]
    base = by_key[BASE[0]]
    ids = sorted(set(base.correct).intersection(*(set(r.correct) for _, _, runs in methods for r in runs)))

    def acc(runs: list, subset: list[str]) -> float:
        return 100 * sum(sum(r.correct[i] for i in subset) / len(subset) for r in runs) / len(runs)

    rows = []
    order = sorted(set(sub_of[i] for i in ids), key=lambda s: (s not in seen_names, s))
    for sub in order:
        subset = [i for i in ids if sub_of[i] == sub]
        row = {"sub-category": sub, "in train": "seen" if sub in seen_names else "unseen", "items": len(subset),
               "chance": f"{100 * sum(chance_of[i] for i in subset) / len(subset):.1f}",
               BASE[1]: f"{acc([base], subset):.1f}"}
        row.update({label: f"{acc(runs, subset):.1f}" for _, label, runs in methods})
        rows.append(row)
    values: dict[str, Any] = {}
    change_rows = []
    for kind in ("seen", "unseen"):
        subset = [i for i in ids if (sub_of[i] in seen_names) == (kind == "seen")]
        kinds = len({sub_of[i] for i in subset})
        row = {"items": f"{kind} ({kinds} kind{'s' if kinds != 1 else ''}, {len(subset)} items)",
               BASE[1]: f"{acc([base], subset):.1f}"}
        for key, label, runs in methods:
            boot = seeds_items_bootstrap([[r.correct[i] for i in subset] for r in runs],
                                         [[base.correct[i] for i in subset]], n_resamples, seed=0)
            d, lo, hi = 100 * boot.difference, 100 * boot.ci_low, 100 * boot.ci_high
            row[label] = f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
            values.update({f"{kind}_{key}_change": d, f"{kind}_{key}_lo": lo, f"{kind}_{key}_hi": hi,
                           f"{kind}_{key}_seeds": len(runs)})
        values[f"{kind}_items"] = len(subset)
        values[f"{kind}_base"] = acc([base], subset)
        change_rows.append(row)
    per_sub = Table(pd.DataFrame(rows), caption=(
        "Accuracy (%) per test sub-category: the base model with prompt <2>, and each method's mean over its "
        "seeds at the checkpoint chosen on validation; seen = a kind of question train asks."), values=values)
    change = Table(pd.DataFrame(change_rows).rename(columns={"items": "test items"}), css_class="aqa-table aqa-compare",
                   caption=("Change from the base model (points), pooled over seeds, with the analysis plan's 95% "
                            "interval (seeds, then items): the gain on seen kinds, the change (forgetting when "
                            "negative) on unseen kinds."),
                   values=values)
    return per_sub, change
