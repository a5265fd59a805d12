"""The ablations plan's results (`python -m aqa_core study --plan ablations`, opt-in; the runs are
listed by `aqa_core.study.plan.ablation_runs`): per ablation, the test accuracy at the checkpoint
chosen on validation, as the mean over seeds with the analysis plan's interval (seeds, then
items), beside the main study's run it varies:

- training-set size: full SFT, LoRA SFT and GRPO <2> on 1/8, 1/4 and 1/2 of `train` (the main
  runs are the whole), each at the main runs' budget: the paper's "with only 38k samples" as a curve;
- the prompt confound: SFT trained and evaluated with prompt <2> beside prompt <1>;
- training without listening: GRPO <2> and full SFT trained on silent clips (Omni-R1's test),
  evaluated with the real audio: the share of each method's gain that needs the audio.

Until the plan has run, the table holds one row that says how to run it and how long it takes
(`expected_minutes`, from the main study's measured stage times).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..runs import SWEEP_FILE, read_sweep
from .display import Table
from .plan import ABLATION_DIR, RUNS, TRAIN_FRACTIONS, ablation_runs, plan_train_size
from .results import score_predictions_file

COMMAND = "python -m aqa_core study --plan ablations --jobs 2"
LABELS = {"sft-full": "Full + Prompt <1>", "sft-lora": "LoRA + Prompt <1>", "grpo-p2": "GRPO + Prompt <2>"}


def _correct(run_dir: Path) -> dict[str, bool] | None:
    """Per-item correctness of a run at its checkpoint chosen on validation, or None."""
    if not (run_dir / SWEEP_FILE).is_file():
        return None
    chosen = read_sweep(run_dir)["selection"].get("best_on_validation")
    preds = run_dir / "eval" / f"{chosen['checkpoint']}.test.json" if chosen else None
    return score_predictions_file(preds)[0] if preds and preds.is_file() else None


def _seeds(first: Path) -> list[dict[str, bool]]:
    """Correctness of a run folder and its -seedN siblings that have a sweep."""
    folders = [first, *sorted(first.parent.glob(first.name + "-seed*"))]
    return [c for c in (_correct(f) for f in folders if f.is_dir()) if c is not None]


def _mean_interval(runs: list[dict[str, bool]], n_resamples: int) -> tuple[float, float, float]:
    from ..eval.stats import seeds_items_interval

    ids = sorted(set.intersection(*(set(r) for r in runs)))
    return tuple(100 * x for x in seeds_items_interval([[r[i] for i in ids] for r in runs], n_resamples))


def expected_minutes(result_dir: str | Path, jobs: int = 2) -> float:
    """The plan's expected wall time on this machine: its runs and sweeps at the mean seconds the
    main study's measured (its timings.json; the scheduler's weights without one), over `jobs`."""
    from .plan import STAGE_WEIGHTS

    timings = Path(result_dir) / "timings.json"
    seconds = {}
    if timings.is_file():
        seconds = {t["stage"]: t.get("last_run_seconds") or t["seconds"]
                   for t in json.loads(timings.read_text(encoding="utf-8"))["stages"]}
    def mean(prefixes: tuple[str, ...], default: float) -> float:  # noqa: E306
        vals = [v for k, v in seconds.items() if k.startswith(prefixes) and v]
        return sum(vals) / len(vals) if vals else default

    weights = dict(STAGE_WEIGHTS)
    train = mean(("sft-full", "sft-lora", "grpo-p2"), float(weights["sft-full*"]))
    sweep = mean(("sweep-sft-full-seed", "sweep-sft-lora-seed", "sweep-grpo-p2-seed"), float(weights["sweep-*"]))
    runs = len(ablation_runs(plan_train_size())) * 3  # three seeds each
    return runs * (train + sweep) / jobs / 60


def table_ablations(result_dir: str | Path, train_size: int | None = None, n_resamples: int = 10_000) -> Table:
    """The ablations' results beside the main runs they vary; one row saying how to run the plan
    when it has not run. `train_size`: the plan's (book/plan.md) unless given."""
    import pandas as pd

    train_size = train_size or plan_train_size()
    result_dir = Path(result_dir)
    scale = result_dir.name
    rows, values = [], {}

    def add(group: str, label: str, folder: Path, key: str) -> None:
        runs = _seeds(folder)
        if not runs:
            return
        mean, lo, hi = _mean_interval(runs, n_resamples)
        rows.append({"ablation": group, "run": label, "seeds": len(runs),
                     "test accuracy [95% interval]": f"{mean:.1f} [{lo:.1f}, {hi:.1f}]"})
        values.update({f"{scale}_abl_{key}_mean": mean, f"{scale}_abl_{key}_lo": lo, f"{scale}_abl_{key}_hi": hi})

    abl = result_dir / ABLATION_DIR
    if abl.is_dir():
        for name, label in LABELS.items():
            for k in TRAIN_FRACTIONS:
                n = train_size // k
                add("training-set size", f"{label}, {n:,} questions", abl / f"{RUNS[name][1]}-train{n}", f"{name}_train{n}")
            add("training-set size", f"{label}, {train_size:,} questions (the main run)", result_dir / RUNS[name][1],
                f"{name}_train{train_size}")
        for name in ("sft-full", "sft-lora"):
            add("prompt", f"{LABELS[name]} (the main run)", result_dir / RUNS[name][1], f"{name}_prompt1")
            add("prompt", LABELS[name].replace("<1>", "<2>") + ", trained and evaluated with it",
                abl / f"{RUNS[name][1]}-prompt2", f"{name}_prompt2")
        for name in ("grpo-p2", "sft-full"):
            add("listening", f"{LABELS[name]}, real training audio (the main run)", result_dir / RUNS[name][1],
                f"{name}_real")
            add("listening", f"{LABELS[name]}, silent training audio", abl / f"{RUNS[name][1]}-silent", f"{name}_silent")
    minutes = expected_minutes(result_dir)
    values[f"{scale}_ablation_expected_minutes"] = minutes
    ablated = [r for r in rows if "main run" not in r["run"]]
    values[f"{scale}_ablation_runs_done"] = len(ablated)  # ablations with results (each over its seeds)
    values[f"{scale}_ablation_total"] = len(ablation_runs(train_size))
    if not ablated:
        rows = [{"ablation": "not run yet", "run": f"{COMMAND} (about {minutes:.0f} minutes on this machine, after the "
                                                   "main study)", "seeds": 0, "test accuracy [95% interval]": "—"}]
    return Table(pd.DataFrame(rows), values=values, caption=(
        "The ablations (opt-in: " + COMMAND + "): test accuracy at the checkpoint chosen on validation, the mean over "
        "seeds with the analysis plan's 95% interval (seeds, then items), beside the main study's run each one varies."))
