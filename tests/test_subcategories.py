"""Per sub-category, seen and unseen (aqa_core.study.subcategories): the tables read the runs
Table 2 reads, split the test items by whether `train` asks their kind, and the change from the
base model is the seed-pooled difference on exactly those items."""
from __future__ import annotations

import json
from pathlib import Path

from test_book import copy_run, write_fixture_results


def test_seen_and_unseen_changes_are_the_pooled_differences_on_those_items(tmp_path):
    from aqa_core.study.findings import seed_runs
    from aqa_core.study.results import load_result_dir
    from aqa_core.study.subcategories import subcategory_tables

    res = write_fixture_results(tmp_path / "runs")
    per_sub, change = subcategory_tables(res, n_resamples=200)
    subs = per_sub.frame.set_index("sub-category")
    assert subs.loc["Sound Source", "in train"] == "seen" and subs.loc["Spoken Digit", "in train"] == "unseen"
    assert list(per_sub.frame["in train"]) == sorted(per_sub.frame["in train"])  # seen kinds first
    by_key = {r.key: r for r in load_result_dir(res)}
    items = json.loads((Path(res) / "data" / "test-mini.json").read_text())
    unseen = [str(q["id"]) for q in items if q["sub-category"] == "Spoken Digit"]
    runs, base = seed_runs(by_key, "grpo_p2"), by_key["direct_p2"]
    want = 100 * (sum(sum(r.correct[i] for i in unseen) / len(unseen) for r in runs) / len(runs)
                  - sum(base.correct[i] for i in unseen) / len(unseen))
    v = change.values
    assert abs(v["unseen_grpo_p2_change"] - want) < 1e-9
    assert v["unseen_grpo_p2_lo"] <= v["unseen_grpo_p2_change"] <= v["unseen_grpo_p2_hi"]
    assert v["unseen_items"] == len(unseen) and v["seen_items"] + v["unseen_items"] == len(items)
    assert change.frame.iloc[1]["test items"].startswith("unseen (1 kind,")


def test_no_table_without_a_mini_test_file(tmp_path):
    from aqa_core.study.subcategories import subcategory_tables

    res = write_fixture_results(tmp_path / "runs")
    (Path(res) / "data" / "test-mini.json").unlink()
    assert subcategory_tables(res) is None


def test_table2_across_seeds_is_the_mean_of_the_seed_rows(tmp_path):

    from aqa_core.study.findings import seed_runs
    from aqa_core.study.results import load_result_dir
    from aqa_core.study.tables import table_seed_means

    res = write_fixture_results(tmp_path / "runs")
    copy_run(Path(res) / "grpo-prompt2", Path(res) / "grpo-prompt2-seed1", seed=1)  # a second seed
    t = table_seed_means(res, n_resamples=200)
    runs = seed_runs({r.key: r for r in load_result_dir(res)}, "grpo_p2")
    assert len(runs) > 1
    row = t.frame.set_index("model, method").loc["GRPO + Prompt <2>"]
    mean = sum(r.accuracy()[0] for r in runs) / len(runs)
    assert row["seeds"] == len(runs) and row["average [95% interval]"].startswith(f"{mean:.1f} [")
    lo, hi = t.values[f"{Path(res).name}_grpo_p2_seed_lo"], t.values[f"{Path(res).name}_grpo_p2_seed_hi"]
    assert lo <= mean <= hi
