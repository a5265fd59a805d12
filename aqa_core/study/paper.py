"""The paper's own numbers, in one file with their source (`paper_results.yaml`: Tables 1 and
2, the settings Section 4.1 states), and the glue values the book quotes them by. The book never
types a paper number by hand.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..data import TASKS

PAPER_RESULTS_FILE = Path(__file__).with_name("paper_results.yaml")


def paper_results(path: str | Path | None = None) -> dict:
    """The paper's Table 1 and Table 2 (and Section 4.1 settings) with their source."""
    path = Path(path or PAPER_RESULTS_FILE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for need in ("source", "table1", "table2"):
        if need not in data:
            raise ValueError(f"{path}: missing section {need!r}")
    return data


def paper_values(paper: dict | None = None) -> dict[str, Any]:
    """Glue values for the paper's numbers (`paper_<row_key>_<task|average>`), the source, and the
    Table 2 cells that are not a whole count over their task's items (e.g. music 49.19 of 334)."""
    paper = paper or paper_results()
    src = paper["source"]
    out: dict[str, Any] = {"paper_source": f"arXiv {src['arxiv']} {src['version']}"}
    items = paper["table2"]["items"]
    odd = []
    for row in paper["table2"]["rows"]:
        key = row.get("row_key")
        for col in (*TASKS, "average"):
            if key:
                out[f"paper_{key}_{col}"] = float(row[col])
            if row["group"] == "ours" or key == "direct":
                n = items[col]
                count = row[col] * n / 100
                if abs(count - round(count)) > 0.05 and abs(round(count) / n * 100 - row[col]) > 0.005:
                    odd.append(f"{row['method']} {col} {row[col]:.2f} (= {count:.2f} of {n})")
    ours = {r.get("row_key"): r for r in paper["table2"]["rows"] if r.get("row_key")}
    if {"grpo_p2", "sft_lora", "sft_full", "grpo_p3"} <= set(ours):
        out["paper_grpo_p2_minus_sft_lora"] = round(ours["grpo_p2"]["average"] - ours["sft_lora"]["average"], 2)
        out["paper_grpo_p2_minus_sft_full"] = round(ours["grpo_p2"]["average"] - ours["sft_full"]["average"], 2)
        out["paper_grpo_p2_minus_grpo_p3"] = round(ours["grpo_p2"]["average"] - ours["grpo_p3"]["average"], 2)
        human = next(r for r in paper["table2"]["rows"] if r["method"].startswith("Human"))
        out["paper_human_average"] = float(human["average"])
    for col, n in items.items():
        out[f"paper_items_{col}"] = int(n)
    out["paper_odd_cells"] = "; ".join(odd)
    out["paper_odd_cells_n"] = len(odd)
    for key, value in paper.get("text_settings", {}).items():
        if isinstance(value, (int, float)) and key != "source":
            out[f"paper_{key}"] = value
    for row in paper["table1"]["rows"]:
        out[f"paper_t1_{row['key']}"] = row["value"]
    text = paper.get("text_settings", {})
    t1 = {row["key"]: row["value"] for row in paper["table1"]["rows"]}
    if {"max_steps", "per_device_prompts", "gradient_accumulation_steps"} <= set(t1) and \
            {"grpo_gpus", "train_samples", "sft_epochs"} <= set(text):
        # questions seen: GRPO prompts (steps x prompts per device x accumulation x GPUs), SFT samples
        grpo = t1["max_steps"] * t1["per_device_prompts"] * t1["gradient_accumulation_steps"] * text["grpo_gpus"]
        out["paper_grpo_prompts_seen"] = int(grpo)
        out["paper_sft_samples_seen"] = int(text["train_samples"] * text["sft_epochs"])
        out["paper_sft_per_grpo_questions"] = out["paper_sft_samples_seen"] / grpo
    return out
