"""The ablations plan's results (`python -m aqa_core study --plan ablations`, opt-in; the runs are
listed by `aqa_core.study.plan.ablation_runs`): per ablation, the test accuracy at the checkpoint
chosen on validation, as the mean over seeds with the analysis plan's interval (seeds, then
items), beside the main study's run it varies:

- training-set size: full SFT, LoRA SFT and GRPO <2> on 1/8, 1/4 and 1/2 of `train` (the main
  runs are the whole), each at the main runs' budget: the paper's "with only 38k samples" as a curve;
- the prompt confound: SFT trained and evaluated with prompt <2> beside prompt <1>;
- training without listening: GRPO <2> and full SFT trained on silent clips (Omni-R1's test),
  evaluated with the real audio: the share of each method's gain that needs the audio.

A build that has not run the plan shows the archived run (`ARCHIVE`: its records, date, commit and
benchmark version, written by `scripts/archive_results.py --ablations`); with neither, the table
holds one row that says how to run it and how long it takes (`expected_minutes`, from the main
study's measured stage times).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..runs import SWEEP_FILE, read_sweep
from .display import Figure, Table
from .plan import ABLATION_DIR, RUNS, TRAIN_FRACTIONS, ablation_runs, plan_train_size
from .results import code_commit, score_predictions_file
from .stages import ROOT

COMMAND = "python -m aqa_core study --plan ablations --jobs 2"
#: The archived ablations run (`scripts/archive_results.py --ablations`), shown when a build has
#: not run the plan, with its date, commit and benchmark version.
ARCHIVE = ROOT / "book" / "archive" / "ablations.json"
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


def ablation_results(result_dir: str | Path, train_size: int | None = None,
                     n_resamples: int = 10_000) -> list[dict]:
    """Every ablation with results, and the main run it varies, as records: `group` (training-set
    size, prompt, listening), `method` (a key of `LABELS`), `run` (its label), `key` (of its glue
    values), `questions` (the training set's size), `main` (the main study's run), `seeds`, the
    seed-mean test `accuracy` with `lo`/`hi` (the plan's interval, seeds then items) and, for an
    ablation, its `change` from the main run with `change_lo`/`change_hi`/`change_p` (the plan's
    paired bootstrap over seeds, then the same items). Percentages. Empty before the plan has run."""
    from ..eval.stats import seeds_items_bootstrap

    train_size = train_size or plan_train_size()
    result_dir = Path(result_dir)
    abl = result_dir / ABLATION_DIR
    if not abl.is_dir():
        return []
    records: list[dict] = []
    main_runs: dict[str, list[dict[str, bool]]] = {}

    def add(group: str, method: str, label: str, folder: Path, key: str, questions: int, main: bool) -> None:
        runs = _seeds(folder)
        if not runs:
            return
        mean, lo, hi = _mean_interval(runs, n_resamples)
        rec = {"group": group, "method": method, "run": label, "key": key, "questions": questions, "main": main,
               "seeds": len(runs), "accuracy": mean, "lo": lo, "hi": hi}
        if main:
            main_runs[method] = runs
        elif main_runs.get(method):
            base = main_runs[method]
            ids = sorted(set.intersection(*(set(r) for r in runs + base)))
            res = seeds_items_bootstrap([[r[i] for i in ids] for r in runs], [[r[i] for i in ids] for r in base],
                                       n_resamples)
            rec.update(change=100 * res.difference, change_lo=100 * res.ci_low, change_hi=100 * res.ci_high,
                       change_p=res.p_value)
        records.append(rec)

    for name, label in LABELS.items():
        main = result_dir / RUNS[name][1]
        add("training-set size", name, f"{label}, {train_size:,} questions (the main run)", main,
            f"{name}_train{train_size}", train_size, True)
        for k in TRAIN_FRACTIONS:
            n = train_size // k
            add("training-set size", name, f"{label}, {n:,} questions", abl / f"{RUNS[name][1]}-train{n}",
                f"{name}_train{n}", n, False)
    for name in ("sft-full", "sft-lora"):
        add("prompt", name, LABELS[name].replace("<1>", "<2>") + ", trained and evaluated with it",
            abl / f"{RUNS[name][1]}-prompt2", f"{name}_prompt2", train_size, False)
    for name in ("grpo-p2", "sft-full"):
        add("listening", name, f"{LABELS[name]}, silent training audio", abl / f"{RUNS[name][1]}-silent",
            f"{name}_silent", train_size, False)
    return records


def stage_seconds(result_dir: Path) -> dict[str, float]:
    """Each ablation stage's measured seconds (its last real run; RESULTS/ablations/timings.json)."""
    timings_file = result_dir / ABLATION_DIR / "timings.json"
    stages = json.loads(timings_file.read_text(encoding="utf-8"))["stages"] if timings_file.is_file() else []
    return {t["stage"]: t.get("last_run_seconds") or t["seconds"] for t in stages
            if t["stage"].startswith(("abl-", "sweep-abl-"))}


def archive_ablations(result_dir: str | Path, n_resamples: int = 10_000) -> dict:
    """What the book keeps of an ablations run (`scripts/archive_results.py --ablations`): the
    records of `ablation_results`, the benchmark's manifest version and sizes, the commit of the
    code that trained the runs, the ablation stages' measured seconds (their timings.json) and the date."""
    import time

    result_dir = Path(result_dir)
    records = ablation_results(result_dir, n_resamples=n_resamples)
    if not any(not r["main"] for r in records):
        raise ValueError(f"{result_dir / ABLATION_DIR} holds no ablation with a sweep: run `{COMMAND}` first")
    manifest = json.loads((result_dir / "data" / "manifest.json").read_text(encoding="utf-8"))
    seconds = stage_seconds(result_dir)
    return {"date": time.strftime("%Y-%m-%d"), "commit": code_commit(result_dir / ABLATION_DIR),
            "benchmark_version": manifest.get("version"), "sizes": manifest.get("sizes"),
            "n_resamples": n_resamples, "records": records,
            "stage_seconds": seconds,
            "training_seconds": sum(v for k, v in seconds.items() if k.startswith("abl-")),
            "sweep_seconds": sum(v for k, v in seconds.items() if k.startswith("sweep-abl-"))}


def _source(result_dir: Path, n_resamples: int) -> tuple[list[dict], dict | None]:
    """This build's records, else the archive's (with the archive itself), else none."""
    records = ablation_results(result_dir, n_resamples=n_resamples)
    if any(not r["main"] for r in records):
        return records, None
    if ARCHIVE.is_file():
        archive = json.loads(ARCHIVE.read_text(encoding="utf-8"))
        return archive["records"], archive
    return [], None


def _provenance(result_dir: Path, archive: dict | None) -> str:
    if archive is None:
        return "this build's runs (" + str(result_dir / ABLATION_DIR) + ")"
    version = archive.get("benchmark_version")
    manifest = result_dir / "data" / "manifest.json"
    current = json.loads(manifest.read_text(encoding="utf-8")).get("version") if manifest.is_file() else None
    same = ("the benchmark version this build uses" if current == version
            else f"benchmark version {version}; this build's is {current}")
    return (f"the archived run of {archive['date']} (code {str(archive['commit'])[:7]}, {same}; "
            f"{'/'.join(ARCHIVE.parts[-3:])}): this build has not run the plan")


def table_ablations(result_dir: str | Path, train_size: int | None = None, n_resamples: int = 10_000) -> Table:
    """The ablations' results beside the main runs they vary, from this build's runs or, when it
    has none, from the archived run (`ARCHIVE`, said in the caption and in `{scale}_ablation_source`);
    one row saying how to run the plan when neither exists. `train_size`: the plan's unless given."""
    import pandas as pd

    train_size = train_size or plan_train_size()
    result_dir = Path(result_dir)
    scale = result_dir.name
    records, archive = _source(result_dir, n_resamples)
    rows, values = [], {}
    for r in records:
        change = (f"{r['change']:+.1f} [{r['change_lo']:+.1f}, {r['change_hi']:+.1f}]" if "change" in r else "")
        rows.append({"ablation": r["group"], "run": r["run"], "seeds": r["seeds"],
                     "test accuracy [95% interval]": f"{r['accuracy']:.1f} [{r['lo']:.1f}, {r['hi']:.1f}]",
                     "change from the main run [95%]": change})
        key = f"{scale}_abl_{r['key']}"
        values.update({f"{key}_mean": r["accuracy"], f"{key}_lo": r["lo"], f"{key}_hi": r["hi"]})
        if "change" in r:
            values.update({f"{key}_change": r["change"], f"{key}_change_lo": r["change_lo"],
                           f"{key}_change_hi": r["change_hi"]})
    minutes = expected_minutes(result_dir)
    values[f"{scale}_ablation_expected_minutes"] = minutes
    values[f"{scale}_ablation_runs_done"] = sum(not r["main"] for r in records)  # ablations with results
    values[f"{scale}_ablation_total"] = len(ablation_runs(train_size))
    values[f"{scale}_ablation_source"] = (_provenance(result_dir, archive) if records else
                                          "no run: neither this build nor an archive holds results")
    seconds = archive["stage_seconds"] if archive is not None else stage_seconds(result_dir)
    values[f"{scale}_ablation_training_minutes"] = sum(v for k, v in seconds.items() if k.startswith("abl-")) / 60
    values[f"{scale}_ablation_sweep_minutes"] = sum(v for k, v in seconds.items() if k.startswith("sweep-abl-")) / 60
    values[f"{scale}_ablation_stages_timed"] = len(seconds)
    if not records:
        rows = [{"ablation": "not run yet", "run": f"{COMMAND} (about {minutes:.0f} minutes on this machine, after the "
                                                   "main study)", "seeds": 0, "test accuracy [95% interval]": "—",
                 "change from the main run [95%]": ""}]
    source = f" From {values[f'{scale}_ablation_source']}." if records else ""
    return Table(pd.DataFrame(rows), values=values, caption=(
        "The ablations (opt-in: " + COMMAND + "): test accuracy at the checkpoint chosen on validation, the mean over "
        "seeds with the analysis plan's 95% interval (seeds, then items), beside the main study's run each one "
        "varies, and the change from it (the plan's paired bootstrap)." + source))


def figure_ablations(result_dir: str | Path, n_resamples: int = 10_000) -> Figure:
    """The ablations as a figure, from the same records as the table (this build's, else the
    archive's): left, test accuracy against the size of the training set per method (the main
    run is the whole of `train`), with the plan's intervals; right, each prompt and listening
    ablation's change from the main run it varies, with its interval. A placeholder before any run."""
    from .figures import STYLE, _new_figure, set_style

    set_style()
    result_dir = Path(result_dir)
    records, archive = _source(result_dir, n_resamples)
    fig = _new_figure(11, 4.6)
    if not records:
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, f"No ablation results yet: {COMMAND}", ha="center", va="center", fontsize=13)
        return Figure(fig, {}, caption="The ablations have not run.")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.15]})
    style_key = {"sft-full": "sft_full", "sft-lora": "sft_lora", "grpo-p2": "grpo_p2"}
    for name, label in LABELS.items():
        pts = sorted((r["questions"], r["accuracy"], r["lo"], r["hi"]) for r in records
                     if r["group"] == "training-set size" and r["method"] == name)
        if not pts:
            continue
        x, y, lo, hi = zip(*pts)
        color, marker = STYLE.get(style_key[name], ("black", "o"))
        left.errorbar(x, y, yerr=[[a - b for a, b in zip(y, lo)], [b - a for a, b in zip(y, hi)]], color=color,
                      marker=marker or "o", markersize=7, linewidth=2, capsize=4, label=label)
    left.set_xscale("log", base=2)
    sizes = sorted({r["questions"] for r in records if r["group"] == "training-set size"})
    left.set_xticks(sizes, [f"{n:,}" for n in sizes])
    left.minorticks_off()
    left.set_xlabel("questions in the training set (log scale; the main runs use all)", fontsize=12)
    left.set_ylabel("test accuracy (%), mean over seeds", fontsize=12)
    left.set_title("training-set size", fontsize=13)
    left.legend(fontsize=11, loc="best")
    changes = [r for r in records if r["group"] in ("prompt", "listening") and "change" in r]
    for i, r in enumerate(changes):
        color, _ = STYLE.get(style_key[r["method"]], ("black", "o"))
        right.errorbar([r["change"]], [i], xerr=[[r["change"] - r["change_lo"]], [r["change_hi"] - r["change"]]],
                       color=color, marker="o", markersize=8, capsize=4, linewidth=2)
    right.axvline(0, color="black", linewidth=1)
    right.set_yticks(range(len(changes)), [r["run"].replace(", trained and evaluated with it", "")
                                           for r in changes], fontsize=11)
    right.invert_yaxis()
    right.set_xlabel("test accuracy change from the main run (points, 95% interval)", fontsize=12)
    right.set_title("prompt and listening", fontsize=13)
    fig.tight_layout()
    src = _provenance(result_dir, archive)
    return Figure(fig, {}, caption=f"The ablations, from {src}.")
