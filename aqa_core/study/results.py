"""A results folder, read: which Table 2 rows it holds, and each row's model scored item by item.

A results folder has one layout at every scale (the study writes it; the full-scale page says
how to write it by hand), so rows from `runs/full` appear as soon as the folder exists:

    RESULTS/eval/base-prompt2/predictions.json   direct inference, prompt <2> (+ .score.json)
    RESULTS/eval/base-prompt1/predictions.json   direct inference, prompt <1>
    RESULTS/sft-full/ sft-lora/ grpo-prompt2/ grpo-prompt3/   run folders, each with eval/sweep.json
    RESULTS/<run>-seed<N>/                                     extra seeds, same layout

A trained row is scored at the checkpoint chosen on the validation split (`best_on_validation`
of the sweep; honest) and, beside it, at the checkpoint chosen on the test set itself
(`best_on_test`; what the paper did, optimistic). Accuracies are percentages, as MMAU prints them.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..runs import SWEEP_FILE, predictions_name, read_sweep

SELECTIONS = ("best_on_validation", "best_on_test", "last")  # "last": the plan's secondary comparison


@dataclass(frozen=True)
class RowSpec:
    """One Table 2 row of ours: its key, label, prompt and folder inside a results folder."""

    key: str
    method: str
    folder: str
    kind: str  # "eval": a predictions file; "run": a run folder with a sweep


ROWS = (
    RowSpec("direct_p2", "Direct inference + Prompt <2>", "eval/base-prompt2", "eval"),
    RowSpec("direct_p1", "Direct inference + Prompt <1>", "eval/base-prompt1", "eval"),
    RowSpec("sft_full", "Full + Prompt <1>", "sft-full", "run"),
    RowSpec("sft_lora", "LoRA + Prompt <1>", "sft-lora", "run"),
    RowSpec("grpo_p2", "GRPO + Prompt <2>", "grpo-prompt2", "run"),
    RowSpec("grpo_p3", "GRPO + Prompt <3>", "grpo-prompt3", "run"),
)
#: The paired comparisons Table 2 reports: (A, B) tests accuracy(A) - accuracy(B).
COMPARISONS = (("grpo_p2", "sft_full"), ("grpo_p2", "sft_lora"), ("grpo_p3", "sft_full"),
               ("grpo_p3", "sft_lora"), ("grpo_p3", "grpo_p2"), ("sft_lora", "sft_full"), ("grpo_p2", "direct_p2"))
PREDICTIONS_FILE = "predictions.json"


@dataclass
class ModelResult:
    """One model scored on one test file: per-item correctness (by id) and per-task tallies."""

    scale: str
    key: str
    method: str
    predictions: Path
    checkpoint: str | None = None
    step: int | None = None
    correct: dict[str, bool] = field(default_factory=dict)
    task_of: dict[str, str] = field(default_factory=dict)
    test_selected_average: float | None = None  # the run's best-on-test accuracy (paper's selection)
    test_selected_step: int | None = None
    validation_average: float | None = None  # validation accuracy of the chosen checkpoint (runs only)
    run_dir: Path | None = None  # the run folder (runs only)

    def tally(self, task: str | None = None) -> tuple[int, int]:
        ids = [i for i in self.correct if task is None or self.task_of[i] == task]
        return sum(self.correct[i] for i in ids), len(ids)

    def accuracy(self, task: str | None = None) -> tuple[float, float, float]:
        """(accuracy, CI low, CI high) in percent; NaN for an empty group."""
        from ..eval.stats import percent_interval

        return percent_interval(*self.tally(task))


def code_commit(folder: str | Path) -> str:
    """The commit of the code that trained the runs under `folder` (their provenance.json; the
    first that records one, "(dirty)" when the tree had changes), else "unknown"."""
    for prov in sorted(Path(folder).glob("*/provenance.json")):
        for launch in json.loads(prov.read_text(encoding="utf-8")).get("launches", []):
            commit = (launch.get("git") or {}).get("commit")
            if commit:
                return commit + (" (dirty)" if launch["git"].get("dirty") else "")
    return "unknown"


def benchmark_version_clause(result_dir: str | Path, version: object) -> str:
    """How an archive's benchmark version compares with that of the results folder (its
    data/manifest.json), as the archived pages say it."""
    manifest = Path(result_dir) / "data" / "manifest.json"
    current = json.loads(manifest.read_text(encoding="utf-8")).get("version") if manifest.is_file() else None
    return ("the benchmark version this build uses" if current == version
            else f"benchmark version {version}; this build's is {current}")


def score_predictions_file(path: str | Path) -> tuple[dict[str, bool], dict[str, str]]:
    """Per-item correctness and task, by the official MMAU rule (aqa_core.eval.mmau), for one file."""
    from ..eval.mmau import score_file

    path = Path(path)
    report = score_file(path)
    records = json.loads(path.read_text(encoding="utf-8"))
    correct, task_of = {}, {}
    for outcome in report.outcomes:
        rec = records[outcome.index]
        rid = str(rec.get("id", outcome.index))
        correct[rid] = bool(outcome.correct)
        task_of[rid] = str(rec["task"]).strip().lower()
    return correct, task_of


def _row_folders(result_dir: Path, spec: RowSpec) -> list[tuple[str, Path]]:
    """(suffix, folder) for the main folder and any `-seed<N>` siblings that exist."""
    found = []
    main = result_dir / spec.folder
    if main.exists():
        found.append(("", main))
    for extra in sorted(main.parent.glob(main.name + "-seed*")):
        m = re.fullmatch(re.escape(main.name) + r"-seed(\d+)", extra.name)
        if m and extra.is_dir():
            found.append((f"_seed{m.group(1)}", extra))
    return found


def last_tested(sweep: dict) -> dict | None:
    """The sweep's last trained checkpoint, when it was scored on the test file (the plan's
    secondary comparison: the last checkpoint in place of the one chosen on validation)."""
    trained = [r for r in sweep["rows"] if r.get("step") and r["checkpoint"] not in ("base", "final")]
    last = max(trained, key=lambda r: r["step"], default=None)
    return last if last is not None and last.get("test") is not None else None


def load_result_dir(result_dir: str | Path, selection: str = "best_on_validation",
                    scale: str | None = None) -> list[ModelResult]:
    """Every Table 2 row present in one results folder, in ROWS order (missing rows are skipped).
    A run is scored at the sweep's `selection` checkpoint (falling back to best-on-test, flagged
    in `checkpoint`, when the sweep had no validation split); "last" is its last checkpoint
    (`last_tested`; a run whose last checkpoint has no test score is skipped)."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    result_dir = Path(result_dir)
    scale = scale or result_dir.name
    out = []
    for spec in ROWS:
        for suffix, folder in _row_folders(result_dir, spec):
            label = spec.method + (f" (seed {suffix.split('seed')[1]})" if suffix else "")
            if spec.kind == "eval":
                preds = folder / PREDICTIONS_FILE
                if not preds.is_file():
                    continue
                res = ModelResult(scale, spec.key + suffix, label, preds)
            else:
                if not (folder / SWEEP_FILE).is_file():
                    continue
                sweep = read_sweep(folder)
                chosen = last_tested(sweep) if selection == "last" else sweep["selection"].get(selection)
                note = ""
                if chosen is None and selection != "last":
                    chosen, note = sweep["selection"].get("best_on_test"), " (on test: no validation)"
                if chosen is None:
                    continue
                preds = folder / SWEEP_FILE.parent / predictions_name(chosen["checkpoint"])
                best_test = sweep["selection"].get("best_on_test") or {}
                res = ModelResult(scale, spec.key + suffix, label, preds, chosen["checkpoint"] + note,
                                  chosen.get("step"), test_selected_average=best_test.get("test"),
                                  test_selected_step=best_test.get("step"), validation_average=chosen.get("validation"),
                                  run_dir=folder)
            res.correct, res.task_of = score_predictions_file(res.predictions)
            out.append(res)
    return out


# ----------------------------------------------------------------------------- convergence

MIN_CHECKPOINTS = 6  # book/plan.md: a run's convergence is judged on at least this many checkpoints


def validation_curve(sweep: dict) -> list[dict]:
    """A sweep's checkpoint rows that have a validation score, in step order: step 0 (the model
    before training) left out, and a `final/` left out when a checkpoint has its step. The curve
    the convergence rule and the learning-rate search read."""
    rows = [r for r in sweep.get("rows", []) if r.get("step") and r.get("validation") is not None]
    steps = {r["step"] for r in rows if r["checkpoint"] != "final"}
    return sorted((r for r in rows if not (r["checkpoint"] == "final" and r["step"] in steps)), key=lambda r: r["step"])


def convergence(sweep: dict, min_checkpoints: int = MIN_CHECKPOINTS) -> dict:
    """The analysis plan's convergence rule on a run's sweep (book/plan.md): with validation
    accuracies v_1..v_K at the run's K checkpoints (step 0 and a `final/` that repeats a
    checkpoint's step excluded), L the last third and M the third before it, the run has converged
    when mean(L) - mean(M) < SE, SE = sqrt(p (1 - p) / n (1/|L| + 1/|M|)) with p = mean(L) and n
    the validation size. Returns the numbers and `converged` (None, with `reason`, when the rule
    cannot be applied).

    >>> rows = [{"checkpoint": f"checkpoint-{s}", "step": s, "validation": v, "validation_n": 400}
    ...         for s, v in zip(range(10, 70, 10), (60, 70, 75, 76, 77, 77))]
    >>> c = convergence({"rows": rows})
    >>> c["converged"], round(c["gain"], 2), round(c["se"], 2)
    (True, 1.5, 2.1)
    """
    rows = validation_curve(sweep)
    k = len(rows)
    out = {"checkpoints": k, "converged": None, "gain": None, "se": None, "last_third": None, "middle_third": None}
    if k < min_checkpoints:
        return {**out, "reason": f"{k} checkpoints with a validation score; the rule needs at least {min_checkpoints}"}
    third = math.ceil(k / 3)
    last, middle = rows[-third:], rows[-2 * third:-third]
    n = min(int(r.get("validation_n") or 0) for r in last + middle)
    mean_l = sum(r["validation"] for r in last) / len(last)
    mean_m = sum(r["validation"] for r in middle) / len(middle)
    # p is kept half an item away from 0 and 1 (plan amendment 2): at 100% the formula's SE is 0,
    # and a run that cannot gain any more would be judged still gaining
    p = min(max(mean_l / 100, 0.5 / max(n, 1)), 1 - 0.5 / max(n, 1))
    se = 100 * math.sqrt(p * (1 - p) / max(n, 1) * (1 / len(last) + 1 / len(middle)))
    gain = mean_l - mean_m
    converged = gain < se
    reason = (f"validation gained {gain:+.1f} points from the middle to the last third of the checkpoints, "
              f"{'less' if converged else 'not less'} than its standard error ({se:.1f})")
    return {**out, "converged": converged, "gain": gain, "se": se, "last_third": mean_l, "middle_third": mean_m,
            "reason": reason}
