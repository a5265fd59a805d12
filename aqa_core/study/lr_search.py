"""The analysis plan's learning-rate search (book/plan.md): for each method, the recipe's rate and
the rates FACTORS times it, seed 0, the full budget; the rate with the highest mean validation
accuracy over the last third of the checkpoints is chosen. Equal effort for every method: three
rates each. The test split is never read: the search's own runs are swept on validation only, and
the recipe's own rate is the main study's seed-0 run (whose validation curve is read, not its
test scores).

    python -m aqa_core study --plan lr-search --out runs/mini        # the runs (cached stages)
    python -m aqa_core lr-search --results runs/mini --out recipes/lr_search.json

The second command writes the summary (`summarize`); the repository keeps it as
`recipes/lr_search.json`, the book shows it, and `tests/test_plan.py` checks that the mini
recipes use the chosen rates.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..files import write_atomic
from ..runs import SWEEP_FILE, read_config, read_sweep
from .results import validation_curve

FACTORS = (1 / 3, 1.0, 3.0)
#: method -> (the main study's run folder, the search's folder prefix)
METHODS = {"grpo-p2": "grpo-prompt2", "sft-full": "sft-full", "sft-lora": "sft-lora"}
SEARCH_DIR = "lr-search"


def factor_label(factor: float) -> str:
    """x0.33, x1, x3: how a factor names a run folder."""
    return f"x{factor:.2f}".rstrip("0").rstrip(".") if factor != round(factor) else f"x{int(factor)}"


def search_run_dir(out: str | Path, method: str, factor: float) -> Path:
    """Where a rate of the search trains: the main study's seed-0 run for factor 1."""
    out = Path(out)
    if factor == 1.0:
        return out / METHODS[method]
    return out / SEARCH_DIR / f"{METHODS[method]}-{factor_label(factor)}"


def last_third_validation(sweep: dict) -> tuple[float | None, int]:
    """Mean validation accuracy over the last third of a sweep's checkpoints (`validation_curve`,
    as the convergence rule counts them), and K."""
    rows = validation_curve(sweep)
    if not rows:
        return None, 0
    last = rows[-math.ceil(len(rows) / 3):]
    return sum(r["validation"] for r in last) / len(last), len(rows)


def _commit(run: Path) -> str | None:
    """The commit of the code that trained a run (its provenance.json), if recorded."""
    prov = run / "provenance.json"
    if not prov.is_file():
        return None
    launches = json.loads(prov.read_text(encoding="utf-8")).get("launches") or [{}]
    return (launches[0].get("git") or {}).get("commit")


def summarize(results: str | Path) -> dict:
    """Every method's rates, their last-third validation means and the chosen rate (ties: the
    recipe's own). Rates whose run or sweep is missing are listed with `missing`."""
    out = {"rule": "highest mean validation accuracy over the last third of the checkpoints, seed 0",
           "factors": list(FACTORS), "methods": {}}
    for method in METHODS:
        entries = []
        for factor in FACTORS:
            run = search_run_dir(results, method, factor)
            entry = {"factor": factor, "run": str(run)}
            if (run / SWEEP_FILE).is_file():
                entry["learning_rate"] = float(read_config(run)["learning_rate"])
                entry["code_commit"] = _commit(run)
                entry["validation_last_third"], entry["checkpoints"] = last_third_validation(read_sweep(run))
            else:
                entry["missing"] = True
            entries.append(entry)
        done = [e for e in entries if e.get("validation_last_third") is not None]
        best = max(done, key=lambda e: (e["validation_last_third"], e["factor"] == 1.0)) if done else None
        out["methods"][method] = {"rates": entries, "complete": len(done) == len(FACTORS),
                                  "chosen_learning_rate": best["learning_rate"] if best else None,
                                  "chosen_factor": best["factor"] if best else None}
    return out


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aqa_core lr-search", description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="runs/mini", help="the study's results folder (after --plan lr-search)")
    ap.add_argument("--out", required=True,
                    help="the summary JSON to write (the repository keeps recipes/lr_search.json)")
    a = ap.parse_args(argv)
    summary = summarize(a.results)
    write_atomic(Path(a.out), json.dumps(summary, indent=1) + "\n")
    for method, m in summary["methods"].items():
        rates = ", ".join(f"{e.get('learning_rate', float('nan')):.2e}: "
                          + (f"{e['validation_last_third']:.1f}%" if e.get("validation_last_third") is not None
                             else "missing") for e in m["rates"])
        print(f"{method:<9} {rates}  -> {m['chosen_learning_rate']}" + ("" if m["complete"] else " (incomplete)"))
    print(f"lr-search: {a.out}")
    return 0


def lr_search_table(path: str | Path):  # a display.Table
    """The kept summary (recipes/lr_search.json) as a table for the book: every method's rates,
    their last-third validation means, the chosen one."""
    import pandas as pd

    from .display import Table

    summary = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = []
    for method, m in summary["methods"].items():
        for e in m["rates"]:
            rows.append({"method": method, "factor": factor_label(e["factor"]),
                         "learning rate": f"{e['learning_rate']:.2e}" if "learning_rate" in e else "",
                         "validation, last third (%)": (f"{e['validation_last_third']:.2f}"
                                                        if e.get("validation_last_third") is not None else "missing"),
                         "chosen": "yes" if e["factor"] == m["chosen_factor"] else ""})
    gaps = []
    for m in summary["methods"].values():
        scores = sorted((e["validation_last_third"] for e in m["rates"] if e.get("validation_last_third") is not None),
                        reverse=True)
        if len(scores) > 1:
            gaps.append(scores[0] - scores[1])
    values = {"lr_search_max_margin": max(gaps) if gaps else float("nan"),
              "lr_search_min_margin": min(gaps) if gaps else float("nan")}
    return Table(pd.DataFrame(rows), values=values, caption=(
        "The analysis plan's learning-rate search (recipes/lr_search.json): each method's rate x1/3, x1 and x3, "
        "seed 0, the full budget, scored by the mean validation accuracy of the last third of its checkpoints. "
        "aqa_core.study.lr_search.lr_search_table."))
