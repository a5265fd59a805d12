"""Figures 3 and 4, and a run's training curves, drawn only from run folders (`metrics.jsonl`,
`eval/sweep.json`) in one style. Each function returns a `display.Figure`: the matplotlib
figure, its caption, and the values read off its data (flat plain numbers and sentences for the
book's glue).

- `figure_grpo_convergence(runs)`: Figure 3 (GRPO reward, test accuracy per checkpoint).
- `figure_sft_convergence(runs)`: Figure 4 (SFT loss, test accuracy per checkpoint).
- `figure_training_curves(run_dir)`: one run's logged curves (the training notebooks).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.lines import Line2D

from ..runs import METRICS_FILE, SWEEP_FILE, read_config, read_metrics, read_sweep, tenth_means
from .design import ROWS, RUNS, find_row
from .display import Figure, glue_safe
from .results import PREDICTIONS_FILE, row_folders, score_predictions_file

#: One colour and marker per method, in every figure.
STYLE = {
    "grpo_p2": ("#1f77b4", "o"), "grpo_p3": ("#2ca02c", "s"),
    "sft_full": ("#d62728", "^"), "sft_lora": ("#ff7f0e", "v"),
    "direct_p2": ("#7f7f7f", None), "direct_p1": ("#7f7f7f", None),
}


def set_style() -> None:
    """The book's one plotting style: seaborn's whitegrid/paper look, from the style sheets that
    ship with matplotlib (importing seaborn itself costs seconds per notebook kernel)."""
    import matplotlib
    import matplotlib.style

    matplotlib.style.use(["seaborn-v0_8-whitegrid", "seaborn-v0_8-paper"])
    matplotlib.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "axes.titleweight": "bold",
                                "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9,
                                "xtick.labelsize": 10, "ytick.labelsize": 10,
                                "legend.frameon": True, "legend.framealpha": 0.9})


def _smooth(values: Sequence[float], window: int) -> list[float]:
    import numpy as np

    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v.tolist()
    kernel = np.ones(window) / window
    head = [float(v[: i + 1].mean()) for i in range(window - 1)]
    return head + np.convolve(v, kernel, mode="valid").tolist()


def metric_series(run_dir: str | Path | list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged metric of a run (rows without it are skipped); `run_dir` may
    also be the run's rows, already read."""
    rows = read_metrics(run_dir) if isinstance(run_dir, (str, Path)) else run_dir
    rows = [r for r in rows if isinstance(r.get(key), (int, float))]
    return [int(r["step"]) for r in rows], [float(r[key]) for r in rows]


def sweep_series(run_dir: str | Path) -> dict[str, list]:
    """Test accuracy per checkpoint step (and its CI) from a run's sweep; `final/` is dropped when
    a checkpoint of the same step exists."""
    sweep = read_sweep(run_dir)
    rows = [r for r in sweep["rows"] if r.get("step") is not None and r.get("test") is not None]
    steps_ckpt = {r["step"] for r in rows if r["checkpoint"] != "final"}
    rows = sorted((r for r in rows if not (r["checkpoint"] == "final" and r["step"] in steps_ckpt)),
                  key=lambda r: r["step"])
    ci = [r.get("test_ci95") or [math.nan, math.nan] for r in rows]
    sel = (sweep.get("selection") or {}).get("best_on_validation") or {}
    return {"step": [r["step"] for r in rows], "test": [r["test"] for r in rows],
            "lo": [c[0] for c in ci], "hi": [c[1] for c in ci], "selected_step": sel.get("step")}


def _baseline(result_dir: Path | None, key: str) -> float | None:
    if result_dir is None:
        return None
    preds = result_dir / find_row(key).folder / PREDICTIONS_FILE
    if not preds.is_file():
        return None
    correct, _ = score_predictions_file(preds)
    return 100 * sum(correct.values()) / len(correct) if correct else None


def _accuracy_panel(ax, runs: Mapping[str, tuple[str, Path]], baseline: tuple[str, float | None]) -> dict:
    values = {}
    for label, (key, run_dir) in runs.items():
        color, marker = STYLE.get(key, ("black", "o"))
        s = sweep_series(run_dir)
        seed = read_config(run_dir).get("seed")
        ax.plot(s["step"], s["test"], color=color, marker=marker,
                label=f"{label}, seed 0" + (f" (training seed {seed})" if seed is not None else ""))
        ax.fill_between(s["step"], s["lo"], s["hi"], color=color, alpha=0.12, linewidth=0)
        if s["selected_step"] in s["step"]:
            i = s["step"].index(s["selected_step"])
            ax.plot([s["step"][i]], [s["test"][i]], marker="*", markersize=15, color=color, markeredgecolor="black",
                    linestyle="none")
        if s["test"]:
            values[f"{key}_first_test"], values[f"{key}_last_test"] = float(s["test"][0]), float(s["test"][-1])
            values[f"{key}_first_step"], values[f"{key}_last_step"] = int(s["step"][0]), int(s["step"][-1])
            trained = [t for st, t in zip(s["step"], s["test"], strict=True) if st > 0] or s["test"]
            values[f"{key}_max_test"] = float(max(trained))  # over the run's checkpoints (not the base)
    name, base = baseline
    if base is not None:
        ax.axhline(base, color="#7f7f7f", linestyle="--", linewidth=1.2, label=name)
    ax.plot([], [], marker="*", markersize=12, color="#999999", markeredgecolor="black", linestyle="none",
            label="checkpoint chosen on validation")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="best", fontsize=10)
    return values


def trend_sentence(subject: str, series: Sequence[float]) -> str:
    """Whether a logged metric moved between the first and the last tenth of training, judged
    against its step-to-step noise: a change beyond two standard errors of the difference of the
    two means is "rose"/"fell", anything smaller "did not change beyond step-to-step noise".

    >>> trend_sentence("The reward", [0.0, 1.0] * 10 + [5.0, 6.0] * 10)
    'The reward rose from 0.50 to 5.50 between the first and the last tenth of training (± 0.82, two standard errors).'
    """
    n = max(1, len(series) // 10)
    head, tail = [float(v) for v in series[:n]], [float(v) for v in series[-n:]]
    first, last = sum(head) / n, sum(tail) / n

    def var(xs: list[float], m: float) -> float:
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0

    two_se = 2 * math.sqrt(var(head, first) / n + var(tail, last) / n)
    verb = ("rose" if last - first > two_se else "fell" if first - last > two_se
            else "did not change beyond step-to-step noise")
    return (f"{subject} {verb}{' (' if verb.startswith('did') else ' '}from {first:.2f} to {last:.2f}"
            f"{')' if verb.startswith('did') else ''} between the first and the last tenth of training "
            f"(± {two_se:.2f}, two standard errors).")


def _new_figure(width: float, height: float):
    """A matplotlib Figure outside pyplot: nothing is shown twice in a notebook, nothing leaks."""
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), layout="tight")


def _runs_arg(runs: Mapping[str, str | Path] | Sequence[str | Path],
              keys: Sequence[str]) -> dict[str, tuple[str, Path]]:
    """Normalise `runs` to {label: (row key, folder)}: a mapping row key -> folder, or a results
    folder (then the standard folders for `keys` inside it), skipping folders without data."""
    if isinstance(runs, (str, Path)):
        base = Path(runs)
        runs = {k: base / find_row(k).folder for k in keys}
    out = {}
    for key, folder in dict(runs).items():
        folder = Path(folder)
        if (folder / SWEEP_FILE).is_file() or (folder / METRICS_FILE).is_file():
            label = next((s.label for s in ROWS if s.key == key), key)
            out[label] = (key, folder)
    return out


def _curve_panel(ax, runs: Mapping[str, tuple[str, Path]], metric: str, noun: str, smooth: int | None,
                 alpha: float) -> dict[str, Any]:
    """One logged metric per run against steps (raw faint, smoothed solid), and its glue values:
    `KEY_METRIC_first_tenth`/`_last_tenth`/`_rise`, `KEY_METRIC_sentence`, `KEY_steps`."""
    values: dict[str, Any] = {}
    for label, (key, run_dir) in runs.items():
        color, _ = STYLE.get(key, ("black", "o"))
        steps, series = metric_series(run_dir, metric)
        if not steps:
            continue
        ax.plot(steps, series, color=color, alpha=alpha, linewidth=0.8)
        window = smooth or max(1, len(steps) // 15)
        ax.plot(steps, _smooth(series, window), color=color, linewidth=1, alpha=0.7)  # bold: the seeds' mean
        first, last = tenth_means(series)
        values[f"{key}_{metric}_first_tenth"], values[f"{key}_{metric}_last_tenth"] = first, last
        values[f"{key}_{metric}_rise"] = last - first
        values[f"{key}_{metric}_sentence"] = trend_sentence(f"The {noun} of {label}", series)
        values[f"{key}_steps"] = int(steps[-1])
    return values


def _seed_folders(result_dir: Path | None, key: str) -> list[Path]:
    """The folders of a run's extra seeds (seed 1, 2, ...) in a results folder, those with a sweep or metrics."""
    if result_dir is None:
        return []
    return [f for i, f in row_folders(result_dir, find_row(key))
            if i and ((f / SWEEP_FILE).is_file() or (f / METRICS_FILE).is_file())]


def _seed_mean(series: Sequence[tuple[list[int], list[float]]]) -> tuple[list[int], list[float]]:
    """The mean over seeds of a logged metric, at the steps every seed logged."""
    common = sorted(set.intersection(*(set(s) for s, _ in series))) if series else []
    by_seed = [dict(zip(s, v, strict=True)) for s, v in series]
    return common, [sum(d[k] for d in by_seed) / len(by_seed) for k in common]


def _draw_seeds(axes, found: Mapping[str, tuple[str, Path]], result_dir: Path | None, metric: str,
                smooth: int | None) -> None:
    """Every seed of each run on the three panels of Figures 3 and 4: the logged curve of each seed
    faint and their mean bold (over the seed-0 curve `_curve_panel` drew), each seed's validation
    curve faint, and each extra seed's tested checkpoints as open markers on the test panel."""
    ax_c, ax_v, ax_a = axes
    for label, (key, first) in found.items():
        extra = _seed_folders(result_dir, key)
        color, marker = STYLE.get(key, ("black", "o"))
        series = [metric_series(first, metric)] + [metric_series(f, metric) for f in extra]
        series = [s for s in series if s[0]]
        for steps, vals in series[1:]:
            window = smooth or max(1, len(steps) // 15)
            ax_c.plot(steps, _smooth(vals, window), color=color, alpha=0.45, linewidth=1)
        steps, mean = _seed_mean(series)
        if steps:
            ax_c.plot(steps, _smooth(mean, smooth or max(1, len(steps) // 15)), color=color, linewidth=2.5,
                      label=f"{label}, mean of {len(series)} seed{'s' if len(series) > 1 else ''} (thin: each seed)")
        for f in extra:
            rows = sorted((r for r in read_sweep(f)["rows"] if r.get("step") is not None
                           and r["checkpoint"] != "final"), key=lambda r: r["step"])
            val = [(r["step"], r["validation"]) for r in rows if r.get("validation") is not None]
            if val:
                ax_v.plot(*zip(*val, strict=True), color=color, alpha=0.45, linewidth=1)
            test = [(r["step"], r["test"]) for r in rows if r.get("test") is not None and r["step"] > 0]
            if test:
                ax_a.plot(*zip(*test, strict=True), color=color, marker=marker, markerfacecolor="white",
                          markeredgewidth=1.5, markersize=7, linestyle="none")


def _convergence_figure(name: str, runs: Mapping[str, str | Path] | str | Path, result_dir: str | Path | None,
                        keys: tuple[str, str], curve: tuple[str, str, str, str, float],
                        baseline: tuple[str, str], smooth: int | None) -> tuple[Any, dict[str, Any]]:
    """The shape of Figures 3 and 4, one column of three panels: a logged curve per run (top),
    validation accuracy per checkpoint on a 0-100 axis (middle) and test accuracy per checkpoint
    (bottom) against a direct-inference baseline, every seed drawn (`_draw_seeds`), one legend
    above the panels. `curve` is (metric, noun, y label, title, raw-line alpha); `baseline` is
    (row key, label). The glue values are seed 0's."""
    set_style()
    if isinstance(runs, (str, Path)):
        result_dir = result_dir or runs
    found = _runs_arg(runs, keys)
    if not found:
        raise FileNotFoundError(f"{name}: no run folder of {', '.join(keys)} with metrics.jsonl or eval/sweep.json")
    metric, noun, ylabel, title, alpha = curve
    fig = _new_figure(8, 11.5)  # one column of panels: legible at the book's width
    ax_c, ax_v, ax_a = fig.subplots(3, 1)
    values = _curve_panel(ax_c, found, metric, noun, smooth, alpha=alpha)
    ax_c.set_xlabel("training step")
    ax_c.set_ylabel(ylabel)
    ax_c.set_title(title)
    base = _baseline(Path(result_dir) if result_dir else None, baseline[0])
    swept = {k: v for k, v in found.items() if (v[1] / SWEEP_FILE).is_file()}
    values.update(_validation_panel(ax_v, swept))
    ax_v.set_title("validation accuracy (the training distribution)")
    ax_v.set_ylim(0, 100)
    values.update(_accuracy_panel(ax_a, swept, (baseline[1], base)))
    ax_a.set_title("test accuracy (out of distribution)")
    _draw_seeds((ax_c, ax_v, ax_a), found, Path(result_dir) if result_dir else None, metric, smooth)
    for ax in (ax_c, ax_v, ax_a):
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
    handles, labels = [], []
    for ax in (ax_c, ax_a):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    handles.append(Line2D([], [], color="#555555", marker="o", markerfacecolor="white", markeredgewidth=1.5,
                          linestyle="none"))
    labels.append("seeds 1 and 2 (open markers: their tested checkpoints)")
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=9, frameon=False)
    return fig, values


def _validation_panel(ax, runs: Mapping[str, tuple[str, Path]]) -> dict:  # a matplotlib Axes
    """Validation accuracy at every checkpoint (and the base, step 0) of each run: the paper's
    Figure 4 argument (SFT fits the training set while test accuracy falls) needs both sides."""
    values = {}
    for label, (key, run_dir) in runs.items():
        color, marker = STYLE.get(key, ("black", "o"))
        rows = sorted((r for r in read_sweep(run_dir)["rows"] if r.get("step") is not None
                       and r.get("validation") is not None and r["checkpoint"] != "final"), key=lambda r: r["step"])
        if not rows:
            continue
        ax.plot([r["step"] for r in rows], [r["validation"] for r in rows], color=color, marker=marker, label=label)
        values[f"{key}_first_validation"] = rows[0]["validation"]
        values[f"{key}_last_validation"] = rows[-1]["validation"]
    ax.set_xlabel("training step")
    ax.set_ylabel("validation accuracy (%)")
    return values


def figure_grpo_convergence(runs: Mapping[str, str | Path] | str | Path, result_dir: str | Path | None = None,
                            smooth: int | None = None) -> Figure:
    """Figure 3: GRPO's mean reward per step (left; raw faint, smoothed solid) and test accuracy
    per checkpoint with its 95% interval (right; the star marks the validation-selected one), for
    prompts <2> and <3>, with direct inference (prompt <2>) as the dashed line. `runs` is a results
    folder or {"grpo_p2": run_dir, "grpo_p3": run_dir}."""
    fig, values = _convergence_figure(
        "figure_grpo_convergence", runs, result_dir, ("grpo_p2", "grpo_p3"),
        ("reward", "mean reward", "mean reward (accuracy + format, max 2)", "GRPO reward", 0.25),
        ("direct_p2", "direct inference, prompt <2>"), smooth)
    return Figure(fig, {f"fig3_{k}": glue_safe(v) for k, v in values.items()},
                  caption="Convergence of GRPO (Figure 3): reward per step and test accuracy per checkpoint.")


def figure_sft_convergence(runs: Mapping[str, str | Path] | str | Path, result_dir: str | Path | None = None,
                           smooth: int | None = None) -> Figure:
    """Figure 4: SFT training loss per logging step (left) and test accuracy per checkpoint
    (right), full fine-tuning against LoRA, with direct inference (prompt <1>) as the dashed line.
    `runs` is a results folder or {"sft_full": run_dir, "sft_lora": run_dir}."""
    fig, values = _convergence_figure(
        "figure_sft_convergence", runs, result_dir, ("sft_full", "sft_lora"),
        ("loss", "training loss", "training loss (answer tokens)", "SFT loss", 0.3),
        ("direct_p1", "direct inference, prompt <1>"), smooth)
    return Figure(fig, {f"fig4_{k}": glue_safe(v) for k, v in values.items()},
                  caption="Convergence of full and LoRA fine-tuning (Figure 4): loss and test accuracy.")


#: What a logged metric is called on a page (TRL's names are the files' keys).
METRIC_NAMES = {
    "reward": "mean reward", "loss": "training loss", "kl": "KL to the reference model",
    "rewards/accuracy_reward/mean": "accuracy reward (mean)", "rewards/format_reward/mean": "format reward (mean)",
    "rewards/think_format_reward/mean": "think-format reward (mean)",
    "frac_reward_zero_std": "share of groups with equal rewards", "completions/mean_length": "completion tokens (mean)",
    "entropy": "entropy of the completions", "learning_rate": "learning rate",
    "mean_token_accuracy": "token accuracy (answer tokens)",
}


def figure_training_curves(run_dir: str | Path, keys: Sequence[str] = ("reward", "loss", "kl")) -> Figure:
    """One run's logged curves side by side (what a training notebook shows)."""
    set_style()
    rows = read_metrics(run_dir)  # once for every curve
    series = {k: metric_series(rows, k) for k in keys}
    series = {k: v for k, v in series.items() if v[0]}
    cols = min(3, max(1, len(series)))
    nrows = max(1, -(-len(series) // cols))
    fig = _new_figure(4 * cols, 3.2 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax in axes[len(series):]:
        ax.set_visible(False)
    for ax, (key, (steps, vals)) in zip(axes, series.items(), strict=False):
        ax.plot(steps, vals, alpha=0.35, color="#1f77b4")
        ax.plot(steps, _smooth(vals, max(1, len(steps) // 15)), color="#1f77b4", linewidth=2)
        ax.set_xlabel("training step")
        ax.set_title(METRIC_NAMES.get(key, key))
    return Figure(fig, {}, caption=f"Logged curves of {run_dir}")


#: The budget axes of Figure 5: (key of the run's budget, axis label).
BUDGET_AXES = (("questions_seen", "training questions seen (GRPO: prompts; SFT: samples)"),
               ("flops", "estimated training FLOPs"))


def figure_budget_curves(result_dir: str | Path) -> Figure:
    """Figure 5 (beyond the paper): test accuracy at every tested checkpoint of every method
    against what it had cost by then, questions seen (left) and estimated training FLOPs (right;
    `aqa_core.study.budget.run_budget`, a checkpoint at step s of S credited s/S of its run's
    FLOPs), all methods on one axis so that they can be compared at any matched budget: seed 0's
    curve, the other seeds' tested checkpoints as open markers, and the base model (the cost 0 of
    every run) as a dashed line. Logarithmic axes."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .budget import run_budget

    set_style()
    result_dir = Path(result_dir)
    fig = _new_figure(11, 4.6)
    axes = fig.subplots(1, len(BUDGET_AXES), sharey=True, squeeze=False)[0]
    values: dict[str, Any] = {}
    for spec in RUNS:
        for index, run in row_folders(result_dir, spec):
            if not (run / SWEEP_FILE).is_file():
                continue
            budget = run_budget(run)
            rows = [r for r in read_sweep(run)["rows"] if r.get("step") is not None and r["checkpoint"] != "final"]
            if not budget["steps"] or not rows:
                continue
            color, marker = STYLE.get(spec.key, ("black", "o"))
            for ax, (key, _) in zip(axes, BUDGET_AXES, strict=True):
                total = budget[key]
                pts = sorted((total * r["step"] / budget["steps"], r["test"]) for r in rows
                             if r.get("test") is not None and r["step"] > 0) if total else []
                if not pts:
                    continue
                if index == 0:
                    ax.plot(*zip(*pts, strict=True), color=color, marker=marker, markersize=7, linewidth=2,
                            label=f"{spec.label}, seed 0")
                else:
                    ax.plot(*zip(*pts, strict=True), color=color, marker=marker, markersize=7, linestyle="none",
                            markerfacecolor="white", markeredgewidth=1.5)
            if index == 0:
                values[f"{spec.key}_questions_seen"] = budget["questions_seen"]
    base = _baseline(result_dir, "direct_p2")
    for ax, (_, label) in zip(axes, BUDGET_AXES, strict=True):
        if base is not None:
            ax.axhline(base, color="#7f7f7f", linestyle="--", linewidth=1.2, label="base model, prompt <2> (cost 0)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}" if x < 1e5 else f"{x:.0e}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label + ", log scale")
    axes[0].set_ylabel("test accuracy (%), out of distribution")
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="#555555", marker="o", markerfacecolor="white", markeredgewidth=1.5,
                          linestyle="none"))
    labels.append("seeds 1 and 2, their tested checkpoints")
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=9, frameon=False)
    return Figure(fig, {f"fig5_{k}": glue_safe(v) for k, v in values.items()}, caption=(
        "Figure 5: test accuracy of every method at its tested checkpoints against the training questions seen and "
        "the estimated training FLOPs by then."))
