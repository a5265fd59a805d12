"""A results folder, read: which Table 2 rows it holds, and each row's model scored item by item.

A results folder has one layout at every scale (the study writes it; the full-scale page says
how to write it by hand), so rows from `runs/full` appear as soon as the folder exists:

    RESULTS/eval/base-prompt2/predictions.json   direct inference, prompt <2> (+ .score.json)
    RESULTS/eval/base-prompt1/predictions.json   direct inference, prompt <1>
    RESULTS/sft-full/ sft-lora/ grpo-prompt2/ grpo-prompt3/   run folders, each with eval/sweep.json
    RESULTS/<run>-seed<N>/                                     extra seeds, same layout
    RESULTS/timings.json                                       the study's stage seconds

The rows, their folders and the seeds' folder names are the study's design
(`aqa_core.study.design`); a run's seed is the one its `config.yaml` records.

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

from ..runs import CONFIG_FILE, SWEEP_FILE, predictions_name, read_config, read_sweep
from .design import ROWS, Row, StudyError, seed_index, seed_value

SELECTIONS = ("best_on_validation", "best_on_test", "last")  # "last": the plan's secondary comparison
PREDICTIONS_FILE = "predictions.json"
TIMINGS_FILE = "timings.json"  # the study's stage seconds, at the top of its results folder


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
    seed: int = 0  # the seed's index (`aqa_core.study.design.seed_value`): its run's config.yaml says

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


def run_seeds(first: str | Path) -> list[tuple[int, Path]]:
    """(seed index, folder) of a run and its extra seeds (its RUN-seedN sibling folders), in seed
    order: each index is `design.seed_index` of the seed its `config.yaml` records and the first
    folder's. [] when `first` is no run folder; an extra seed with no config, or with another
    folder's seed, is a StudyError that names it."""
    first = Path(first)
    if not (first / CONFIG_FILE).is_file():
        return []
    base = int(read_config(first)["seed"])
    found = {0: first}
    for extra in sorted(first.parent.glob(first.name + "-seed*")):
        if not extra.is_dir():
            continue
        if not (extra / CONFIG_FILE).is_file():
            raise StudyError(f"{extra}: no {CONFIG_FILE}, so its seed is unknown (a run cut short before it "
                             "started? remove the folder or rerun it)")
        index = seed_index(int(read_config(extra)["seed"]), base)
        if index in found:
            raise StudyError(f"{extra} and {found[index]} both trained with seed {seed_value(base, index)}")
        found[index] = extra
    return sorted(found.items())


def run_seed_index(run_dir: str | Path) -> int | None:
    """Which of its run's seeds a run folder trained (0 for RUN, k for RUN-seedk, read from the
    configs as `run_seeds` does); None when the folder holds no run."""
    run_dir = Path(run_dir)
    m = re.fullmatch(r"(.+)-seed\d+", run_dir.name)
    first = run_dir.with_name(m.group(1)) if m else run_dir
    try:
        return next((i for i, folder in run_seeds(first) if folder == run_dir), None)
    except StudyError:
        return None


def row_folders(result_dir: str | Path, row: Row) -> list[tuple[int, Path]]:
    """(seed index, folder) of one Table 2 row in a results folder: a direct-inference row's one
    folder, a trained row's `run_seeds`; [] when the row is not there."""
    main = Path(result_dir) / row.folder
    if not row.trained:
        return [(0, main)] if main.is_dir() else []
    return run_seeds(main)


def last_tested(sweep: dict) -> dict | None:
    """The sweep's last trained checkpoint, when it was scored on the test file (the plan's
    secondary comparison: the last checkpoint in place of the one chosen on validation)."""
    trained = [r for r in sweep["rows"] if r.get("step") and r["checkpoint"] not in ("base", "final")]
    last = max(trained, key=lambda r: r["step"], default=None)
    return last if last is not None and last.get("test") is not None else None


def load_result_dir(result_dir: str | Path, selection: str = "best_on_validation",
                    scale: str | None = None) -> list[ModelResult]:
    """Every Table 2 row present in one results folder, in the design's order (missing rows are
    skipped), a row's extra seeds after it under the keys KEY_seedN.
    A run is scored at the sweep's `selection` checkpoint (falling back to best-on-test, flagged
    in `checkpoint`, when the sweep had no validation split); "last" is its last checkpoint
    (`last_tested`; a run whose last checkpoint has no test score is skipped)."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    result_dir = Path(result_dir)
    scale = scale or result_dir.name
    out = []
    for spec in ROWS:
        for index, folder in row_folders(result_dir, spec):
            key = f"{spec.key}_seed{index}" if index else spec.key
            label = f"{spec.label} (seed {index})" if index else spec.label
            if not spec.trained:
                preds = folder / PREDICTIONS_FILE
                if not preds.is_file():
                    continue
                res = ModelResult(scale, key, label, preds, seed=index)
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
                res = ModelResult(scale, key, label, preds, chosen["checkpoint"] + note,
                                  chosen.get("step"), test_selected_average=best_test.get("test"),
                                  test_selected_step=best_test.get("step"), validation_average=chosen.get("validation"),
                                  run_dir=folder, seed=index)
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


def stage_seconds(folder: str | Path, prefixes: tuple[str, ...] = ("",)) -> dict[str, float]:
    """Each stage's measured seconds (its last real run) from FOLDER/timings.json (the study writes
    it), for the stages whose names start with one of `prefixes` (default: all); {} when the
    folder has no timings."""
    path = Path(folder) / TIMINGS_FILE
    stages = json.loads(path.read_text(encoding="utf-8"))["stages"] if path.is_file() else []
    return {t["stage"]: t.get("last_run_seconds") or t["seconds"] for t in stages if t["stage"].startswith(prefixes)}
