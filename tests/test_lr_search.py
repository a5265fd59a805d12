"""The analysis plan's learning-rate search: its stages never read the test split, and its summary
chooses by the last third of the validation curve (aqa_core.study.lr_search)."""
from __future__ import annotations

import json

import yaml

from aqa_core.study.lr_search import FACTORS, cli, factor_label, search_run_dir, summarize
from aqa_core.study.pipeline.stages import study_stages


def _run(run, lr, curve):
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"learning_rate": lr}))
    (run / "eval").mkdir()
    rows = [{"checkpoint": "base", "step": 0, "validation": 30.0}]
    rows += [{"checkpoint": f"checkpoint-{10 * (i + 1)}", "step": 10 * (i + 1), "validation": v}
             for i, v in enumerate(curve)]
    (run / "eval" / "sweep.json").write_text(json.dumps({"rows": rows, "selection": {}}))


def test_factor_labels_and_folders(tmp_path):
    assert [factor_label(f) for f in FACTORS] == ["x0.33", "x1", "x3"]
    assert search_run_dir(tmp_path, "grpo-p2", 1.0) == tmp_path / "grpo-prompt2"  # the main seed-0 run
    assert search_run_dir(tmp_path, "sft-lora", 3.0) == tmp_path / "lr-search" / "sft-lora-x3"


def test_summary_chooses_on_the_last_third_and_prefers_the_recipe_on_ties(tmp_path, capsys):
    for method, base_lr in (("grpo-p2", 2e-4), ("sft-full", 1e-4), ("sft-lora", 1e-4)):
        curves = {1 / 3: (40, 50, 55, 60, 62, 64), 1.0: (60, 70, 72, 70, 71, 72), 3.0: (70, 75, 60, 62, 61, 63)}
        if method == "sft-lora":  # a tie between x3 and the recipe's rate: the recipe's wins
            curves[3.0] = curves[1.0]
        for factor, curve in curves.items():
            _run(search_run_dir(tmp_path, method, factor), base_lr * factor, curve)
    summary = summarize(tmp_path)
    grpo = summary["methods"]["grpo-p2"]
    assert grpo["complete"] and grpo["chosen_factor"] == 1.0 and grpo["chosen_learning_rate"] == 2e-4
    assert [r["validation_last_third"] for r in grpo["rates"]] == [63.0, 71.5, 62.0]  # not the early peak of x3
    assert summary["methods"]["sft-lora"]["chosen_factor"] == 1.0
    out = tmp_path / "lr.json"
    assert cli(["--results", str(tmp_path), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == summary


def test_missing_rates_are_named_not_chosen(tmp_path):
    _run(search_run_dir(tmp_path, "grpo-p2", 1.0), 2e-4, (50,) * 6)
    m = summarize(tmp_path)["methods"]["grpo-p2"]
    assert not m["complete"] and sum(bool(r.get("missing")) for r in m["rates"]) == 2 and m["chosen_factor"] == 1.0


def test_the_search_stages_never_read_the_test_split(tmp_path):
    stages = study_stages(tmp_path / "mini", plan="lr-search", book=tmp_path / "book")
    names = [s.name for s in stages]
    assert not any(n.startswith("nb-") for n in names) and names[-1] == "lr-search"
    search = [s for s in stages if s.name.startswith(("lr-", "sweep-lr-")) and s.name != "lr-search"]
    assert len(search) == 2 * 2 * 3  # 3 methods x 2 other rates, each a run and a sweep
    for s in search:
        assert "test-mini.json" not in " ".join(map(str, s.argv)), s.name
    grpo = next(s for s in stages if s.name == "lr-grpo-p2-x3")
    lr = float(grpo.config["recipe"]["learning_rate"])
    assert f"learning_rate={3 * lr!r}" in " ".join(map(str, grpo.argv))
    assert set(stages[-1].deps) >= {"sweep-grpo-p2", "sweep-lr-sft-lora-x0.33"}
