"""The book's first screen, made from the numbers: the verdict in one sentence with its difference
and interval, a small table (each method's mean over seeds with the plan's interval and its change
from the base model), one figure (every seed, the mean emphasised, the base model as a reference
line) and the caveats that change how the headline reads, each a sentence worded by its numbers.

A part of the design this build has not run (GRPO <3>, the ablations) is read from the glue values
the report quotes from the reference archive (`aqa_core.study.report.opt_in_sources`), labelled so.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .design import BOOTSTRAP_SEED, OPT_IN, ROOT, ROWS, SEEDS
from .display import Figure, Table, glue_safe
from .findings import seed_runs, signed, span, within
from .results import ModelResult

#: The build of benchmark v3 before the plan's Amendment 3 cut the budgets for time, as archived then.
BEFORE_AMENDMENT3 = ROOT / "book" / "versions" / "v3-before-amendment3.json"

#: The same-prompt rows: the exploratory prompt ablation's SFT runs, trained and scored with prompt <2>.
SAME_PROMPT = (("sft-full", "full SFT, prompt <2>"), ("sft-lora", "LoRA SFT, prompt <2>"))


@dataclass
class Headline:
    table: Table
    figure: Figure
    values: dict[str, Any]


def verdict_numbers(sentence: str) -> tuple[float, float, float] | None:
    """(difference, low, high) of a verdict sentence as `findings.plan_verdict` words it.

    >>> verdict_numbers("pooled over 3 and 3 training seeds: +3.6 points, 95% interval [+1.2, +6.0] (a bootstrap")
    (3.6, 1.2, 6.0)
    """
    m = re.search(r"([+-]\d+\.\d) points, 95% interval \[([+-]\d+\.\d), ([+-]\d+\.\d)\]", sentence)
    return (float(m.group(1)), float(m.group(2)), float(m.group(3))) if m else None


def _method_name(key: str) -> str:
    return {"direct_p2": "base model, prompt <2>", "direct_p1": "base model, prompt <1>",
            "sft_full": "full SFT, prompt <1>", "sft_lora": "LoRA SFT, prompt <1>",
            "grpo_p2": "GRPO, prompt <2>", "grpo_p3": "GRPO, prompt <3>"}.get(key, key)


def headline(scale: str, by_key: Mapping[str, ModelResult], get: Callable[[str], Any],
             n_resamples: int = 10_000, before_amendment: Path | None = BEFORE_AMENDMENT3) -> Headline:
    """The first screen of one results folder's study. `by_key` is the folder's results
    (`load_result_dir`, keyed); `get(key)` reads a glue value of the report, this build's or the
    archive's it quotes (None when neither has it)."""
    from ..eval.stats import seeds_items_bootstrap

    values: dict[str, Any] = {}
    base = by_key.get("direct_p2")
    rows, points = [], []
    for spec in ROWS:
        runs = seed_runs(by_key, spec.key)
        origin = get(f"{scale}_{OPT_IN[spec.opt_in].origin_key}_origin") if spec.opt_in else None
        name = _method_name(spec.key)
        label = name + (f" ({origin})" if origin and origin != "this build" else "")
        mean, lo, hi = (get(f"{scale}_{spec.key}_seed_{s}") for s in ("mean", "lo", "hi"))
        if mean is None:
            continue
        seeds = [get(f"{scale}_{spec.key}{f'_seed{i}' if i else ''}_avg") for i in range(SEEDS)]
        seeds = [s for s in seeds if isinstance(s, (int, float))]
        change = ""
        if runs and base is not None and spec.trained:
            ids = sorted(set(base.correct).intersection(*(set(r.correct) for r in runs)))
            boot = seeds_items_bootstrap([[r.correct[i] for i in ids] for r in runs], [[base.correct[i] for i in ids]],
                                         n_resamples, seed=BOOTSTRAP_SEED)
            d, dlo, dhi = 100 * boot.difference, 100 * boot.ci_low, 100 * boot.ci_high
            values.update({f"{scale}_{spec.key}_vs_base_diff": d, f"{scale}_{spec.key}_vs_base_lo": dlo,
                           f"{scale}_{spec.key}_vs_base_hi": dhi})
            change = f"{signed(d)} {span(dlo, dhi)}"
        elif spec.trained:
            change = "not in this build's files"
        paper = get(f"paper_{spec.key.replace('direct_p2', 'direct')}_average")
        rows.append({"method": label, "mini test, % [95% interval]": f"{mean:.1f} [{lo:.1f}, {hi:.1f}]",
                     "change from base, prompt <2>": change or "—",
                     "paper, MMAU test-mini, %": (f"{paper:.1f}" + ("*" if spec.key == "direct_p2" else "")
                                                  if isinstance(paper, (int, float)) else "—")})
        points.append((name, mean, lo, hi, seeds, spec.key, False))
    for folder, label in SAME_PROMPT:
        mean, lo, hi = (get(f"{scale}_abl_{folder}_prompt2_{s}") for s in ("mean", "lo", "hi"))
        if mean is None:
            continue
        origin = get(f"{scale}_{OPT_IN['ablations'].origin_key}_origin")
        name = f"{label} (ablation)"
        label = f"{label}: exploratory ablation" + (f" ({origin})" if origin and origin != "this build" else "")
        rows.append({"method": label, "mini test, % [95% interval]":
                     f"{mean:.1f} [{lo:.1f}, {hi:.1f}]", "change from base, prompt <2>": "—",
                     "paper, MMAU test-mini, %": "not run"})
        points.append((name, mean, lo, hi, [], folder.replace("-", "_"), True))
    values.update(_caveats(scale, by_key, lambda k: values[k] if k in values else get(k), before_amendment))
    import pandas as pd

    table = Table(pd.DataFrame(rows), css_class="aqa-table aqa-headline", caption=(
        f"Each method on the mini test set: the mean over its {SEEDS} training seeds at the checkpoint chosen on "
        "validation, with the analysis plan's 95% interval (seeds, then items), and the change from the base model "
        "with the same interval. The paper's column is another test set (MMAU test-mini): compare orderings, not "
        "levels; * MMAU's leaderboard figure, not the paper's own run."))
    chance = get(f"{scale}_chance")
    base_acc = base.accuracy()[0] if base is not None else get(f"{scale}_direct_p2_avg")
    return Headline(table, figure_headline(points, base_acc, chance), {k: glue_safe(v) for k, v in values.items()})


def _caveats(scale: str, by_key: Mapping[str, ModelResult], get: Callable[[str], Any],
             before_amendment: Path | None) -> dict[str, Any]:
    """The sentences that change how the headline reads, each made from its numbers (a sentence
    whose numbers are missing says so in a few words, never a guess)."""
    from ..runs import read_sweep

    out: dict[str, Any] = {}
    d, lo, hi = (get(f"{scale}_grpo_p2_vs_base_{s}") for s in ("diff", "lo", "hi"))
    n = len(seed_runs(by_key, "grpo_p2"))
    seeds = {1: "its one seed", 2: "its two seeds", 3: "its three seeds"}.get(n, f"its {n} seeds")
    out[f"{scale}_caveat_base"] = (within(f"GRPO with prompt <2>, over {seeds},", "the untrained base model "
                                          "with the same prompt", d, lo, hi) if d is not None
                                   else "(GRPO <2> or the base model has no results yet.)")
    step0, chosen = [], []
    for key in ("sft_full", "sft_lora", "grpo_p2"):
        for r in seed_runs(by_key, key):
            if r.run_dir is None:
                continue
            rows = read_sweep(r.run_dir)["rows"]
            step0 += [row["validation"] for row in rows if row.get("step") == 0 and row.get("validation") is not None]
            if r.validation_average is not None:
                chosen.append(r.validation_average)
    if step0 and chosen:
        out.update({f"{scale}_step0_validation_min": min(step0), f"{scale}_step0_validation_max": max(step0),
                    f"{scale}_chosen_validation_min": min(chosen), f"{scale}_chosen_validation_max": max(chosen)})
        level = (f"{min(step0):.1f}%" if math.isclose(min(step0), max(step0))
                 else f"{min(step0):.1f} to {max(step0):.1f}%")
        reached = (f"{min(chosen):.1f}%" if math.isclose(min(chosen), max(chosen))
                   else f"{min(chosen):.1f} to {max(chosen):.1f}%")
        if min(step0) >= 90:
            out[f"{scale}_caveat_solved"] = (
                f"The training task was solved before training: the base model answers {level} of the validation "
                f"questions (the training distribution) at step 0, and the runs' chosen checkpoints {reached}. "
                "Fine-tuning had almost nothing to learn, so the test scores measure how training on a solved task "
                "moves a model, not what it learned; the checkpoint choice and the convergence rule rest on this "
                "saturated signal.")
        else:
            out[f"{scale}_caveat_solved"] = (
                f"Before training the base model answers {level} of the validation questions (the training "
                f"distribution); the runs' chosen checkpoints {reached}.")
    else:
        out[f"{scale}_caveat_solved"] = "(No run's sweep has scored the base model, step 0, on validation yet.)"
    same = [get(f"{scale}_abl_grpo-p2_vs_sft-full_prompt2{s}") for s in ("", "_lo", "_hi")]
    origin = get(f"{scale}_{OPT_IN['ablations'].origin_key}_origin")
    if None not in same:
        where = f"; {origin}" if origin and origin != "this build" else ""
        out[f"{scale}_caveat_same_prompt"] = (
            "The paper's SFT and GRPO use different prompts. With prompt <2> on both sides (an exploratory ablation, "
            f"specified after the results were known{where}): " + within("GRPO <2>", "full SFT", *same))
    else:
        out[f"{scale}_caveat_same_prompt"] = "(The same-prompt ablation has not been run.)"
    silent = [get(f"{scale}_abl_grpo-p2_silent_change{s}") for s in ("", "_lo", "_hi")]
    if None not in silent:
        out[f"{scale}_caveat_silent"] = (
            "GRPO trained on silent clips, then tested with the real audio, against GRPO trained on the real "
            f"audio: {signed(silent[0])} points, 95% interval {span(*silent[1:])}"
            + (" — its result does not need the training audio." if silent[1] <= 0 <= silent[2] or silent[1] > 0
               else "."))
    else:
        out[f"{scale}_caveat_silent"] = "(The silent-training ablation has not been run.)"
    out.update(amendment_values(scale, get(f"{scale}_primary_diff"), before_amendment))
    return out


def amendment_values(scale: str, now: float | None, path: Path | None) -> dict[str, Any]:
    """What the plan's Amendment 3 (budgets cut for time after the results were known) changed:
    the primary comparison of the build before it, read from its archive, beside this build's."""
    none = {f"{scale}_caveat_amendment": "(No archived build from before an amendment of the plan to compare "
                                          "with.)"}
    if path is None or not path.is_file():
        return none
    kept = json.loads(path.read_text(encoding="utf-8"))
    numbers = verdict_numbers(kept.get("values", {}).get("verdict", ""))
    if numbers is None or now is None:
        return none
    d, lo, hi = numbers
    return {f"{scale}_amendment3_diff": d, f"{scale}_amendment3_lo": lo, f"{scale}_amendment3_hi": hi,
            f"{scale}_amendment3_date": kept["archived"],
            f"{scale}_caveat_amendment": (
                f"The plan's budgets were cut for time after these results were known (Amendment 3, "
                f"{kept['archived']}: GRPO's budget halved). Before the cut the same comparison read {signed(d)} "
                f"points, 95% interval {span(lo, hi)}; after it, {signed(now)}.")}


def figure_headline(points: list[tuple], base: float | None, chance: float | None) -> Figure:
    """Each method's test accuracy: every seed a small dot, the mean over seeds a large marker with
    the plan's 95% interval; the base model (prompt <2>) and chance as reference lines."""
    from .figures import STYLE, _new_figure, set_style

    set_style()
    fig = _new_figure(7, 0.27 * len(points) + 0.95)
    ax = fig.subplots()
    for y, (_, mean, lo, hi, seeds, key, exploratory) in enumerate(points):
        color = "#555555" if exploratory else STYLE.get(key, ("#555555", "o"))[0]
        ax.plot([lo, hi], [y, y], color=color, linewidth=2.5, solid_capstyle="butt")
        ax.plot([mean], [y], marker="D" if exploratory else "o", markersize=9, color=color,
                markerfacecolor="white" if exploratory else color, markeredgewidth=2, linestyle="none")
        if len(seeds) > 1:
            ax.plot(seeds, [y] * len(seeds), marker="o", markersize=4.5, markerfacecolor="white", color=color,
                    linestyle="none", markeredgewidth=1.2, zorder=3)
    if base is not None:
        ax.axvline(base, color="#7f7f7f", linestyle="--", linewidth=1.2, label="base model, prompt <2>")
    if chance is not None:
        ax.axvline(chance, color="black", linestyle=":", linewidth=1.2, label="chance")
    ax.plot([], [], marker="o", color="#555555", linestyle="-", linewidth=2.5, markersize=8,
            label="mean over seeds, 95% interval")
    ax.plot([], [], marker="o", markersize=4.5, markerfacecolor="white", color="#555555", linestyle="none",
            markeredgewidth=1.2, label="one training seed")
    ax.plot([], [], marker="D", markersize=7, markerfacecolor="white", color="#555555", linestyle="none",
            markeredgewidth=2, label="exploratory ablation")
    ax.set_yticks(range(len(points)), [p[0] for p in points])
    ax.invert_yaxis()
    ax.set_xlabel("mini test accuracy (%), 1,000 items")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3, fontsize=9, frameon=False)
    ax.grid(axis="y", visible=False)
    return Figure(fig, caption="Test accuracy on the mini benchmark: each training seed (small dots), the mean over "
                               "seeds with its 95% interval; dashed: the base model; dotted: chance. "
                               "aqa_core.study.headline")
