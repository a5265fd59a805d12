"""Compare two results folders of the study (e.g. `runs/mini` made by two versions of the code, or
on two machines): the accuracy of every evaluated model, overall, per task and on the validation
split, and every prediction item by item.

    python scripts/compare_results.py OLD_RESULTS NEW_RESULTS [--json OUT.json]

Every predictions file (`*.test.json`, `*.validation.json`, `eval/*/predictions.json`) found
under either folder is matched by its relative path and scored by the official rule. Prints one
line per file (accuracy in each folder, items whose prediction differs) and exits 1 when any
accuracy or prediction differs, or a file exists on one side only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def predictions_files(root: Path) -> dict[str, Path]:
    """Relative path -> file, for every predictions file the study writes under `root`."""
    found = [*root.glob("*/eval/*.test.json"), *root.glob("*/eval/*.validation.json"),
             *root.glob("eval/*/predictions.json")]
    return {str(p.relative_to(root)): p for p in sorted(found)}


def accuracy(rows: list[dict], avqa: bool) -> dict[str, float]:
    """Total accuracy and, for MMAU-schema rows, accuracy per task (percent, official rule)."""
    from aqa_core.data import TASKS
    from aqa_core.eval.mmau import mmau_string_match, score_predictions

    if avqa:  # validation rows (R1-AQA JSONL): the same string match, total only
        right = [mmau_string_match(r["answer"], r["model_prediction"], r["choices"]) for r in rows]
        return {"total": 100 * sum(right) / len(right)}
    report = score_predictions(rows)
    return {"total": report.total.accuracy, **{t: report.tasks[t].accuracy for t in TASKS}}


def compare(old: Path, new: Path) -> list[dict]:
    a, b = predictions_files(old), predictions_files(new)
    out = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a or rel not in b:
            out.append({"file": rel, "only_in": str(old if rel in a else new)})
            continue
        ra, rb = (json.loads(p.read_text(encoding="utf-8")) for p in (a[rel], b[rel]))
        avqa = rel.endswith(".validation.json")
        pa = {str(r.get("id")): r.get("model_prediction") for r in ra}
        pb = {str(r.get("id")): r.get("model_prediction") for r in rb}
        differ = sorted(i for i in set(pa) | set(pb) if pa.get(i) != pb.get(i))
        out.append({"file": rel, "items": len(pa), "old": accuracy(ra, avqa), "new": accuracy(rb, avqa),
                    "predictions_differ": len(differ), "first_differing_ids": differ[:5]})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--json", type=Path, help="also write the comparison here")
    args = ap.parse_args(argv)
    rows = compare(args.old, args.new)
    same = True
    for r in rows:
        if "only_in" in r:
            same = False
            print(f"{r['file']:<48} only in {r['only_in']}")
            continue
        ok = r["old"] == r["new"] and r["predictions_differ"] == 0
        same &= ok
        cells = "  ".join(f"{k} {r['old'][k]:6.2f}" + ("" if r["old"][k] == r["new"][k] else f" -> {r['new'][k]:6.2f}")
                          for k in r["old"])
        print(f"{r['file']:<48} {r['items']:>4} items  {cells}  "
              f"{'identical' if ok else str(r['predictions_differ']) + ' predictions differ'}")
    print(f"{len(rows)} predictions files: {'all identical' if same else 'DIFFERENCES'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
