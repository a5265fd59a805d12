"""The ablations plan's results (`python -m aqa_core study --plan ablations`, opt-in; the runs are
listed by `aqa_core.study.design.ablation_runs`): per ablation, the test accuracy at the checkpoint
chosen on validation, as the mean over seeds with the analysis plan's interval (seeds, then
items), beside the main study's run it varies:

- training-set size: full SFT, LoRA SFT and GRPO <2> on 1/8, 1/4 and 1/2 of `train` (the main
  runs are the whole), each at the main runs' budget: the paper's "with only 38k samples" as a curve;
- the prompt confound: SFT trained and evaluated with prompt <2> beside prompt <1>;
- training without listening: GRPO <2> and full SFT trained on silent clips (Omni-R1's test),
  evaluated with the real audio: the share of each method's gain that needs the audio.

A build that has not run the plan shows the reference archive's (`aqa_core.study.report`
quotes its glued table, figure and values: `design.OPT_IN`); with neither, the table holds one row
that says how to run it and how long it takes (`expected_minutes`, from the main study's measured
stage times).
"""
from __future__ import annotations

from pathlib import Path

from ..runs import SWEEP_FILE, chosen_on_validation, predictions_name, read_sweep
from .design import (
    ABLATION_DIR,
    SEEDS,
    TRAIN_FRACTIONS,
    ablation_runs,
    expected_seconds,
    find_row,
    plan_train_size,
)
from .display import Figure, Table
from .results import (
    convergence,
    run_seeds,
    score_predictions_file,
    stage_seconds,
)

COMMAND = "python -m aqa_core study --plan ablations --jobs 2"
#: Ablation values quoted outside the ablations page (the trust page), present in every build.
QUOTED = ("sft-full_prompt2_change", "sft-lora_prompt2_change", "grpo-p2_vs_sft-full_prompt2",
          "grpo-p2_vs_sft-full_prompt2_lo", "grpo-p2_vs_sft-full_prompt2_hi")
LABELS = {"sft-full": "Full + Prompt <1>", "sft-lora": "LoRA + Prompt <1>", "grpo-p2": "GRPO + Prompt <2>"}


def _correct(run_dir: Path) -> dict[str, bool] | None:
    """Per-item correctness of a run at its checkpoint chosen on validation, or None."""
    chosen = chosen_on_validation(run_dir)
    preds = run_dir / SWEEP_FILE.parent / predictions_name(chosen["checkpoint"]) if chosen else None
    return score_predictions_file(preds)[0] if preds and preds.is_file() else None


def _converged(first: Path) -> tuple[int, int]:
    """(runs passing the plan's convergence rule, runs with a sweep) over a folder and its seeds."""
    folders = [f for _, f in run_seeds(first) if (f / SWEEP_FILE).is_file()]
    return sum(convergence(read_sweep(f))["converged"] is True for f in folders), len(folders)


def _seeds(first: Path) -> list[dict[str, bool]]:
    """Correctness of a run folder and its -seedN siblings that have a sweep."""
    return [c for c in (_correct(f) for _, f in run_seeds(first)) if c is not None]


def _mean_interval(runs: list[dict[str, bool]], n_resamples: int) -> tuple[float, float, float]:
    from ..eval.stats import seeds_items_interval

    ids = sorted(set.intersection(*(set(r) for r in runs)))
    return tuple(100 * x for x in seeds_items_interval([[r[i] for i in ids] for r in runs], n_resamples))


def expected_minutes(result_dir: str | Path, jobs: int = 2) -> float:
    """The plan's expected wall time on this machine: its runs and sweeps at the mean seconds the
    main study's measured (its timings.json; the design's expected seconds without one), over `jobs`."""
    seconds = stage_seconds(result_dir)
    def mean(prefixes: tuple[str, ...], default: float) -> float:
        vals = [v for k, v in seconds.items() if k.startswith(prefixes) and v]
        return sum(vals) / len(vals) if vals else default

    train = mean(("sft-full", "sft-lora", "grpo-p2"), expected_seconds("sft-full"))
    sweep = mean(("sweep-sft-full-seed", "sweep-sft-lora-seed", "sweep-grpo-p2-seed"), expected_seconds("sweep-"))
    runs = len(ablation_runs(plan_train_size())) * SEEDS
    return runs * (train + sweep) / jobs / 60


def ablation_results(result_dir: str | Path, train_size: int | None = None,
                     n_resamples: int = 10_000) -> list[dict]:
    """Every ablation with results, and the main run it varies, as records: `group` (training-set
    size, prompt, listening), `method` (a key of `LABELS`), `run` (its label), `key` (of its glue
    values), `questions` (the training set's size), `main` (the main study's run), `seeds`, the
    runs passing the plan's convergence rule (`converged`, "K of N"), the
    seed-mean test `accuracy` with `lo`/`hi` (the plan's interval, seeds then items) and, for an
    ablation, its `change` from the main run with `change_lo`/`change_hi`/`change_p` (the plan's
    paired bootstrap over seeds, then the same items); and, group "same prompt", GRPO <2> against
    each SFT trained with prompt <2> (`diff`, `diff_lo`, `diff_hi`, `diff_p`): the comparison
    without the prompt confound. Percentages. Empty before the plan has run."""
    from ..eval.stats import seeds_items_bootstrap

    train_size = train_size or plan_train_size()
    result_dir = Path(result_dir)
    abl = result_dir / ABLATION_DIR
    if not abl.is_dir():
        return []
    records: list[dict] = []
    main_runs: dict[str, list[dict[str, bool]]] = {}

    def add(group: str, method: str, label: str, folder: Path, key: str, questions: int,
            main: bool) -> list[dict[str, bool]]:
        runs = _seeds(folder)
        if not runs:
            return runs
        mean, lo, hi = _mean_interval(runs, n_resamples)
        passed, swept = _converged(folder)
        rec = {"group": group, "method": method, "run": label, "key": key, "questions": questions, "main": main,
               "seeds": len(runs), "converged": f"{passed} of {swept}", "accuracy": mean, "lo": lo, "hi": hi}
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
        return runs

    for name, label in LABELS.items():
        main = result_dir / find_row(name).folder
        add("training-set size", name, f"{label}, {train_size:,} questions (the main run)", main,
            f"{name}_train{train_size}", train_size, True)
        for k in TRAIN_FRACTIONS:
            n = train_size // k
            add("training-set size", name, f"{label}, {n:,} questions", abl / f"{find_row(name).folder}-train{n}",
                f"{name}_train{n}", n, False)
    for name in ("sft-full", "sft-lora"):
        sft2 = add("prompt", name, LABELS[name].replace("<1>", "<2>") + ", trained and evaluated with it",
                   abl / f"{find_row(name).folder}-prompt2", f"{name}_prompt2", train_size, False)
        # the comparison without the confound: GRPO <2> against this SFT trained with prompt <2> too
        grpo = main_runs.get("grpo-p2")
        if sft2 and grpo:
            ids = sorted(set.intersection(*(set(r) for r in sft2 + grpo)))
            res = seeds_items_bootstrap([[r[i] for i in ids] for r in grpo], [[r[i] for i in ids] for r in sft2],
                                       n_resamples)
            records.append({"group": "same prompt", "method": name, "key": f"grpo-p2_vs_{name}_prompt2",
                            "run": f"GRPO + Prompt <2> against {LABELS[name].replace('<1>', '<2>')}",
                            "diff": 100 * res.difference, "diff_lo": 100 * res.ci_low, "diff_hi": 100 * res.ci_high,
                            "diff_p": res.p_value, "seeds": min(len(sft2), len(grpo))})
    for name in ("grpo-p2", "sft-full"):
        add("listening", name, f"{LABELS[name]}, silent training audio", abl / f"{find_row(name).folder}-silent",
            f"{name}_silent", train_size, False)
    return records


def _interval(r: dict, key: str) -> str:
    return f"{r[key]:+.1f} [{r[key + '_lo']:+.1f}, {r[key + '_hi']:+.1f}]"


def _excludes_zero(r: dict, key: str) -> bool:
    return not r[key + "_lo"] <= 0 <= r[key + "_hi"]


def ablation_sentences(records: list[dict]) -> dict[str, str]:
    """One sentence per ablation group, made from the records (never typed by hand): `size`,
    `prompt`, `listening`. Each names the changes from the main run with their intervals, and
    says which intervals exclude zero."""
    out = {}
    size = [r for r in records if r["group"] == "training-set size" and "change" in r]
    if size:
        parts = []
        for name, label in LABELS.items():
            rs = sorted((r for r in size if r["method"] == name), key=lambda r: r["questions"])
            if rs:
                parts.append(f"{label}: " + ", ".join(f"{r['questions']:,} questions {_interval(r, 'change')}"
                                                       for r in rs))
        clear = [r for r in size if _excludes_zero(r, "change")]
        out["size"] = ("Change in test accuracy from the main run (all of train) when trained on fewer questions, "
                       "points with the plan's 95% interval: " + "; ".join(parts) + ". "
                       + (f"{len(clear)} of the {len(size)} intervals exclude zero: "
                          + ", ".join(f"{r['run']} ({r['change']:+.1f})" for r in clear) + "."
                          if clear else f"None of the {len(size)} intervals excludes zero."))
    prompt = [r for r in records if r["group"] == "prompt" and "change" in r]
    same = [r for r in records if r["group"] == "same prompt"]
    if prompt:
        out["prompt"] = ("Trained and evaluated with GRPO's prompt <2> instead of prompt <1>: "
                         + "; ".join(f"{r['run'].split(',')[0]} {_interval(r, 'change')} points" for r in prompt) + ". "
                         + ("With the prompt the same on both sides, " + "; ".join(
                             f"{r['run'].replace('against', 'minus')}: {_interval(r, 'diff')} points" for r in same)
                            + " (the plan's interval; "
                            + ("each excludes zero" if all(_excludes_zero(r, "diff") for r in same)
                               else "not every interval excludes zero") + ")." if same else ""))
    listening = [r for r in records if r["group"] == "listening" and "change" in r]
    if listening:
        out["listening"] = ("Trained with every clip replaced by silence and evaluated with the real audio, "
                            "change from the same method trained with the audio: "
                            + "; ".join(f"{r['run'].split(',')[0]} {_interval(r, 'change')} points"
                                        + ("" if _excludes_zero(r, "change") else " (the interval contains zero)")
                                        for r in listening) + ".")
    return out


def ablation_seconds(result_dir: Path) -> dict[str, float]:
    """Each ablation stage's measured seconds (its last real run; RESULTS/ablations/timings.json)."""
    return stage_seconds(result_dir / ABLATION_DIR, ("abl-", "sweep-abl-"))


def _kind_seconds(seconds: dict[str, float], prefix: str) -> float:
    """The stage seconds of one kind (`abl-`: training, `sweep-abl-`: sweeps), summed."""
    return sum(v for k, v in seconds.items() if k.startswith(prefix))


def table_ablations(result_dir: str | Path, train_size: int | None = None, n_resamples: int = 10_000,
                    records: list[dict] | None = None) -> Table:
    """The ablations' results beside the main runs they vary, from this build's runs; one row saying
    how to run the plan when it has none. `train_size`: the plan's unless given; `records`:
    `ablation_results(result_dir)`, when the caller has it."""
    import pandas as pd

    train_size = train_size or plan_train_size()
    result_dir = Path(result_dir)
    scale = result_dir.name
    records = ablation_results(result_dir, train_size, n_resamples) if records is None else records
    rows, values = [], {}
    for key in QUOTED:  # the values other pages quote exist, NaN until the plan has results
        values[f"{scale}_abl_{key}"] = float("nan")
    sentences = ablation_sentences(records)
    for group in ("size", "prompt", "listening"):
        values[f"{scale}_ablation_{group}_sentence"] = sentences.get(group,
                                                                     "No results yet (the command above runs them).")
    for r in records:
        if r["group"] == "same prompt":
            key = f"{scale}_abl_{r['key']}"
            values.update({key: r["diff"], f"{key}_lo": r["diff_lo"], f"{key}_hi": r["diff_hi"]})
            continue
        change = _interval(r, "change") if "change" in r else ""
        rows.append({"ablation": r["group"], "run": r["run"], "seeds": r["seeds"], "converged": r.get("converged", ""),
                     "test accuracy [95% interval]": f"{r['accuracy']:.1f} [{r['lo']:.1f}, {r['hi']:.1f}]",
                     "change from the main run [95%]": change})
        key = f"{scale}_abl_{r['key']}"
        values.update({f"{key}_mean": r["accuracy"], f"{key}_lo": r["lo"], f"{key}_hi": r["hi"]})
        if "change" in r:
            values.update({f"{key}_change": r["change"], f"{key}_change_lo": r["change_lo"],
                           f"{key}_change_hi": r["change_hi"]})
    minutes = expected_minutes(result_dir)
    values[f"{scale}_ablation_expected_minutes"] = minutes
    values[f"{scale}_ablation_runs_done"] = sum(not r.get("main", True) for r in records)  # ablations with results
    values[f"{scale}_ablation_total"] = len(ablation_runs(train_size))
    seconds = ablation_seconds(result_dir)
    values[f"{scale}_ablation_training_minutes"] = _kind_seconds(seconds, "abl-") / 60
    values[f"{scale}_ablation_sweep_minutes"] = _kind_seconds(seconds, "sweep-abl-") / 60
    values[f"{scale}_ablation_stages_timed"] = len(seconds)
    if not records:
        rows = [{"ablation": "not run yet", "run": f"{COMMAND} (about {minutes:.0f} minutes on this machine, after the "
                                                   "main study)", "seeds": 0, "converged": "",
                 "test accuracy [95% interval]": "—", "change from the main run [95%]": ""}]
    return Table(pd.DataFrame(rows), values=values, caption=(
        "The ablations (opt-in: " + COMMAND + "): test accuracy at the checkpoint chosen on validation, the mean over "
        "seeds with the analysis plan's 95% interval (seeds, then items), beside the main study's run each one "
        "varies, and the change from it (the plan's paired bootstrap)."))


def figure_ablations(result_dir: str | Path, n_resamples: int = 10_000, records: list[dict] | None = None) -> Figure:
    """The ablations as a figure, from the same records as the table (`records`, this build's):
    above, test accuracy against the size of the training set per method (the main
    run is the whole of `train`), with the plan's intervals, the methods' points set slightly
    apart so that the bars do not hide each other; below, each prompt and listening
    ablation's change from the main run it varies, with its interval. A placeholder before any run."""
    from .figures import STYLE, _baseline, _new_figure, set_style

    set_style()
    result_dir = Path(result_dir)
    records = ablation_results(result_dir, n_resamples=n_resamples) if records is None else records
    if not records:
        fig = _new_figure(9, 2)
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, f"No ablation results yet: {COMMAND}", ha="center", va="center", fontsize=13)
        return Figure(fig, {}, caption="The ablations have not run.")
    fig = _new_figure(9, 10)
    fig.set_layout_engine("constrained")  # each panel keeps its own left margin (the lower one's labels are long)
    upper, lower = fig.subfigures(2, 1, height_ratios=[1.3, 1], hspace=0.05)
    top, bottom = upper.subplots(), lower.subplots()
    style_key = {"sft-full": "sft_full", "sft-lora": "sft_lora", "grpo-p2": "grpo_p2"}
    for i, (name, label) in enumerate(LABELS.items()):
        pts = sorted((r["questions"], r["accuracy"], r["lo"], r["hi"]) for r in records
                     if r["group"] == "training-set size" and r["method"] == name)
        if not pts:
            continue
        x, y, lo, hi = zip(*pts, strict=True)
        x = [q * 2 ** (0.05 * (i - 1)) for q in x]  # side by side at each size
        color, marker = STYLE.get(style_key[name], ("black", "o"))
        top.errorbar(x, y, yerr=[[a - b for a, b in zip(y, lo, strict=True)],
                                 [b - a for a, b in zip(y, hi, strict=True)]], color=color,
                     marker=marker or "o", markersize=8, linewidth=2, capsize=5, label=label)
    base = _baseline(result_dir, "direct_p2")
    if base is not None:  # the base model, every test panel's reference
        top.axhline(base, color="#7f7f7f", linestyle="--", linewidth=1.2, label="base model, prompt <2>")
    top.set_xscale("log", base=2)
    sizes = sorted({r["questions"] for r in records if r["group"] == "training-set size"})
    top.set_xticks(sizes, [f"{n:,}" for n in sizes])
    top.minorticks_off()
    top.tick_params(labelsize=12)
    top.set_xlabel("questions in the training set (log scale; the main runs use all of them)", fontsize=13)
    top.set_ylabel("test accuracy (%), mean over seeds", fontsize=13)
    top.set_title("Training-set size (95% intervals: seeds, then items)", fontsize=14)
    his = [r["hi"] for r in records if r["group"] == "training-set size"]
    top.set_ylim(top=max(his) + 1)
    top.legend(fontsize=11, loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=2, frameon=False)
    changes = [r for r in records if r["group"] in ("prompt", "listening") and "change" in r]
    for i, r in enumerate(changes):
        color, _ = STYLE.get(style_key[r["method"]], ("black", "o"))
        bottom.errorbar([r["change"]], [i], xerr=[[r["change"] - r["change_lo"]], [r["change_hi"] - r["change"]]],
                        color=color, marker="o", markersize=9, capsize=5, linewidth=2.5)
    bottom.axvline(0, color="black", linewidth=1)
    short = {"sft-full": "full SFT", "sft-lora": "LoRA SFT", "grpo-p2": "GRPO <2>"}
    bottom.set_yticks(range(len(changes)), [f"{short[r['method']]}, "
                                            + ("trained with prompt <2>" if r["group"] == "prompt"
                                               else "silent training audio")
                                            for r in changes], fontsize=12)
    bottom.invert_yaxis()
    bottom.tick_params(axis="x", labelsize=12)
    bottom.set_xlabel("change in test accuracy from the main run (points, 95% interval)", fontsize=13)
    bottom.set_title("Prompt and listening", fontsize=14)
    return Figure(fig, {}, caption=f"The ablations, from this build's runs ({result_dir / ABLATION_DIR}).")
