"""Keep a results folder's Table 2, paired comparisons and verdict when the benchmark changes: the
book's "benchmark versions" page shows each archived version from the files this writes.

    python scripts/archive_results.py runs/mini --out book/versions/v2

writes OUT.json (the numbers, the benchmark's manifest version and sizes, the commit of the code
that trained the runs, the date) and OUT.md (the same as Markdown tables, which the page
includes). Both are written from the results folder by `aqa_core.study.tables.table_results`,
the function that makes Table 2; run it with the interpreter of the checkout that made the
results, so that the sentences are the ones that book printed:

    (cd OLD_CHECKOUT && .venv/bin/python NEW_CHECKOUT/scripts/archive_results.py runs/mini --out ...)

With `--ablations` it keeps the opt-in ablations plan's results instead (`study --plan
ablations` under RESULTS/ablations): OUT.json only, `aqa_core.study.ablations.archive_ablations`,
which the ablations page shows when a build has not run the plan:

    python scripts/archive_results.py runs/mini --ablations --out book/archive/ablations

With `--prompt3` it keeps GRPO <3>'s runs (`study --prompt3`; opt-in since the analysis plan's
Amendment 5): OUT.json only, `aqa_core.study.secondary.archive_prompt3`, which the pages quote
when a build has not run them:

    python scripts/archive_results.py runs/mini --prompt3 --out book/archive/grpo-prompt3
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from aqa_core.files import write_atomic
from aqa_core.study.results import code_commit
from aqa_core.study.tables import table_results

KEPT_VALUES = ("verdict", "base_sentence", "think_sentence", "lora_sentence", "grpo_vs_base_sentence", "chance",
               "selection_gap", "selection_runs")


def base_subcategories(result_dir: Path) -> list[dict]:
    """The base model's accuracy per test sub-category (prompt <2>), beside chance."""
    from aqa_core.eval.mmau import score_file

    path = result_dir / "eval" / "base-prompt2" / "predictions.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    tally: dict[str, list] = {}
    for o in score_file(path).outcomes:
        rec = records[o.index]
        t = tally.setdefault(rec["sub-category"], [0, 0, 0.0, 0])
        choices = [str(c).strip().lower() for c in rec["choices"]]
        t[0] += int(bool(o.correct))
        t[1] += 1
        t[2] += 1 / len(choices)
        t[3] += int(str(rec.get("model_prediction", "")).strip().lower() not in choices)
    return [{"sub-category": k, "items": n, "chance": round(100 * c / n, 1), "base, prompt <2>": round(100 * r / n, 1),
             "answers none of the choices (%)": round(100 * o / n)} for k, (r, n, c, o) in sorted(tally.items())]


def archive(result_dir: Path, n_resamples: int = 10_000) -> dict:
    man = json.loads((result_dir / "data" / "manifest.json").read_text(encoding="utf-8"))
    table = table_results([result_dir], include_paper=False, n_resamples=n_resamples)
    scale = result_dir.name
    values = {k: table.values[f"{scale}_{k}"] for k in KEPT_VALUES if f"{scale}_{k}" in table.values}
    return {"archived": time.strftime("%Y-%m-%d"), "results_folder": str(result_dir),
            "data_version": man["version"], "data_sizes": man["sizes"], "data_counts_test": man["counts"]["test"],
            "chance_test_mini": man.get("chance_test_mini"), "code_commit": code_commit(result_dir),
            "table2": table.frame.to_dict(orient="records"),
            "comparisons": table.extra["comparisons"].to_dict(orient="records"),
            "base_by_subcategory": base_subcategories(result_dir),
            "values": values, "n_resamples": n_resamples}


def archive_prompt3(result_dir: Path, n_resamples: int = 10_000, note: str = "") -> dict:
    """GRPO <3>'s runs as the pages quote them (`aqa_core.study.secondary.archive_prompt3`), from
    the report of this results folder alone."""
    from aqa_core.study.pipeline.stages import notebook_parameters
    from aqa_core.study.report import build_report
    from aqa_core.study.secondary import archive_prompt3 as keep
    from aqa_core.study.secondary import prompt3_runs

    prompt3_runs(result_dir)  # none: the one-line error before the report's work
    params = notebook_parameters("report", result_dir)
    with tempfile.TemporaryDirectory() as figures:
        report = build_report([result_dir], params["grpo_recipes"], params["sft_recipes"], figures_dir=figures,
                              n_resamples=n_resamples)
    return keep(result_dir, report.values, note=note)


def markdown(a: dict) -> str:
    import pandas as pd

    sizes = "; ".join(f"{k} {v:,}" for k, v in a["data_sizes"].items())
    lines = [f"Benchmark v{a['data_version']} (clips: {sizes}), archived {a['archived']} from a run of "
             f"commit `{a['code_commit'][:10]}` (file: `{a.get('file', '')}`); the sentences are the ones that "
             "code's book printed.", ""]
    for name in ("table2", "comparisons", "base_by_subcategory"):
        lines += [pd.DataFrame(a[name]).to_markdown(index=False), ""]
    for _k, v in a["values"].items():
        if isinstance(v, str):
            lines += [f"- {v}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="a results folder (runs/mini)")
    ap.add_argument("--out", required=True, help="OUT.json and OUT.md are written")
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--ablations", action="store_true", help="archive RESULTS/ablations (the ablations page's archive)")
    ap.add_argument("--prompt3", action="store_true",
                    help="archive the GRPO <3> runs (what a build without `study --prompt3` shows): OUT.json only")
    ap.add_argument("--note", default="",
                    help="--ablations, --prompt3: how the run was made, where its files do not say (shown on the page)")
    a = ap.parse_args(argv)
    result_dir = Path(a.results)
    if not (result_dir / "data" / "manifest.json").is_file():
        print(f"error: {result_dir}: no data/manifest.json; not a mini results folder", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.ablations or a.prompt3:
        from aqa_core.study.ablations import archive_ablations

        keep, what = ((archive_ablations, result_dir / "ablations") if a.ablations else
                      (archive_prompt3, f"GRPO <3> of {result_dir}"))
        try:
            record = keep(result_dir, n_resamples=a.resamples, note=a.note)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        write_atomic(out.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
        print(f"archived {what} -> {out.with_suffix('.json')}")
        return 0
    record = archive(result_dir, a.resamples)
    record["file"] = out.with_suffix(".json").name
    write_atomic(out.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    write_atomic(out.with_suffix(".md"), markdown(record))
    print(f"archived {result_dir} -> {out.with_suffix('.json')}, {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
