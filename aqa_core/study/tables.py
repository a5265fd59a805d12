"""The book's tables, one function each, made only from files: recipes, results folders and
`paper_results.yaml`.

- `table_hyperparameters(recipe_paths)`: Table 1, the paper's printed values next to every
  recipe's, each read from the recipe file (or its dataclass default, marked as such).
- `table_results(result_dirs)`: Table 2, the paper's rows next to each results folder's rows
  (direct inference, full SFT, LoRA SFT, GRPO prompts 2 and 3) with 95% Wilson intervals, and
  the paired comparisons (McNemar, paired bootstrap) of GRPO against SFT on the same items.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data import TASKS
from .design import COMPARISONS, ROWS, find_row
from .display import Table, glue_safe
from .findings import better_sft, findings, seed_runs
from .paper import paper_results, paper_values
from .results import ModelResult, load_result_dir

#: Recipe-derived settings that are not recipe fields: name -> (function of the resolved recipe).
DERIVED = {
    # TRL 1.16 counts completions per device; the paper's "batch size per device" counts prompts.
    "per_device_prompts": lambda r: (r["per_device_train_batch_size"] / r["num_generations"]
                                     if r.get("num_generations") else None),
}
#: Fields never worth a row: where a run writes, and machine settings each launch sets (the study
#: sets torch_threads to its share of the cores, whatever the recipe says).
SKIP_FIELDS = {"output_dir", "torch_threads", "device"}


def _recipe_class(path: Path):
    """The dataclass a recipe file is read into, from its folder (recipes/grpo, recipes/sft)."""
    kind = path.parent.name
    if kind == "grpo":
        from ..train.grpo import GRPORecipe

        return GRPORecipe
    if kind == "sft":
        from ..train.sft import SFTRecipe

        return SFTRecipe
    return None


def recipe_values(path: str | Path) -> tuple[dict[str, Any], set[str]]:
    """(resolved values, keys set in the file or its `_base`): the file's values over its
    dataclass's defaults, with derived settings (prompts per device) added."""
    from ..config import load_recipe, read_recipe, to_dict

    path = Path(path)
    in_file = read_recipe(path)
    cls = _recipe_class(path)
    resolved = to_dict(load_recipe(cls, path)) if cls is not None else dict(in_file)
    for name, fn in DERIVED.items():
        try:
            resolved[name] = fn(resolved)
        except (KeyError, TypeError, ZeroDivisionError):
            pass
    # a derived value counts as "from the file" when both of its inputs are set there
    derived_from_file = {n for n in DERIVED
                         if n in resolved and {"per_device_train_batch_size", "num_generations"} <= set(in_file)}
    return resolved, set(in_file) | derived_from_file


def _fmt_value(value: Any) -> str:
    """A recipe value as the table prints it: small floats as 1e-6, lists joined."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value == int(value) and abs(value) >= 1:
            return str(int(value))
        if 0 < abs(value) < 1e-3:
            mantissa, exponent = f"{value:.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


#: The SFT settings Section 4.1 states in its text: (setting, recipe key, key in paper text_settings).
SFT_TEXT_ROWS = (
    ("Batch size per device", "per_device_train_batch_size", "sft_per_device_batch_size"),
    ("Gradient accumulation steps", "gradient_accumulation_steps", "sft_gradient_accumulation_steps"),
    ("Learning rate (AdamW)", "learning_rate", "sft_learning_rate"),
    ("Epochs", "num_train_epochs", "sft_epochs"),
    ("Checkpoint every (steps)", "save_steps", "sft_save_steps"),
)


def table_hyperparameters(recipe_paths: Sequence[str | Path] | Mapping[str, str | Path],
                          paper: dict | None = None, differing: bool = True) -> Table:
    """Table 1 from recipe files: the paper's value (GRPO: Table 1 as printed; SFT: the settings
    Section 4.1 states) and one column per recipe, then (with `differing`) every other field whose
    value differs between the recipes. A value not set in the file (nor its `_base`) is the
    runner's dataclass default and carries a dagger (†)."""
    import pandas as pd

    if not isinstance(recipe_paths, Mapping):
        recipe_paths = {Path(p).name: p for p in recipe_paths}
    paper = paper or paper_results()
    recipes = {name: recipe_values(p) for name, p in recipe_paths.items()}
    kinds = {Path(p).parent.name for p in recipe_paths.values()}
    if kinds == {"grpo"}:
        paper_col = "paper (Table 1)"
        spec = [(r["setting"], r["key"], r["printed"]) for r in paper["table1"]["rows"]]
    elif kinds == {"sft"}:
        paper_col = "paper (Section 4.1)"
        text = paper.get("text_settings", {})
        spec = [(setting, key, _fmt_value(text.get(tkey))) for setting, key, tkey in SFT_TEXT_ROWS]
    else:
        paper_col, spec = "paper", []

    def cells(key: str) -> dict[str, str]:
        out = {}
        for name, (resolved, in_file) in recipes.items():
            if resolved.get(key, "n/a") == "n/a":
                out[name] = "n/a"
                continue
            out[name] = _fmt_value(resolved[key]) + ("" if key in in_file else " †")
        return out

    rows = [{"group": "paper", "setting": setting, "recipe key": key, paper_col: printed, **cells(key)}
            for setting, key, printed in spec]
    if differing:
        shown = {key for _, key, _ in spec}
        keys: list[str] = []
        for resolved, _ in recipes.values():
            keys += [k for k in resolved if k not in keys]
        for key in keys:
            vals = [res.get(key) for res, _ in recipes.values()]
            if key in shown or key in SKIP_FIELDS or all(v is None for v in vals):
                continue
            if len({_fmt_value(v) for v in vals}) > 1:  # the group is named on its first row only
                first = not any(r["group"].startswith("differs") for r in rows)
                rows.append({"group": "differs between recipes" if first else "", "setting": "", "recipe key": key,
                             paper_col: "", **cells(key)})
    frame = pd.DataFrame(rows)
    values: dict[str, Any] = {}
    for name, (resolved, _) in recipes.items():
        stem = re.sub(r"\W+", "_", Path(name).stem)
        for key in ("max_steps", "max_completion_length", "num_generations", "learning_rate", "per_device_prompts",
                    "per_device_train_batch_size", "gradient_accumulation_steps", "beta", "num_train_epochs",
                    "save_steps", "temperature", "top_k"):
            value = resolved.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[f"recipe_{stem}_{key}"] = value
    return Table(frame, values=values, caption="The paper's settings and the recipe files', every value read from "
                 "the files; † = not set in the file (the runner's default).")


def _checkpoint_cell(r: ModelResult) -> str:
    if r.checkpoint is None:
        return "—"
    cell = f"step {r.step}" if r.step is not None else r.checkpoint.split(" ")[0]
    return cell + (" (chosen on test: no validation split)" if "on test" in r.checkpoint else "")


def cell(acc: tuple[float, float, float]) -> str:
    """A table cell "61.3 [55.9, 66.4]" (accuracy and its interval, percent); empty for NaN."""
    a, lo, hi = acc
    return "" if math.isnan(a) else f"{a:.1f} [{lo:.1f}, {hi:.1f}]"


def table_seed_means(result_dir: str | Path, selection: str = "best_on_validation",
                     n_resamples: int = 10_000) -> Table | None:
    """Table 2 across seeds, for one results folder: per method, the mean over its seeds of each
    task's and the average accuracy, the spread of the average over seeds (lowest to highest),
    and the analysis plan's 95% interval of the mean (seeds, then items). None when the folder
    has no results."""
    import pandas as pd

    from ..eval.stats import seeds_items_interval

    results = load_result_dir(result_dir, selection)
    by_key = {r.key: r for r in results}
    rows, values = [], {}
    scale = Path(result_dir).name
    for spec in ROWS:
        runs = seed_runs(by_key, spec.key)
        if not runs:
            continue
        ids = sorted(set.intersection(*(set(r.correct) for r in runs)))
        mean, lo, hi = (100 * x for x in seeds_items_interval([[r.correct[i] for i in ids] for r in runs],
                                                                n_resamples))
        averages = [r.accuracy()[0] for r in runs]
        row = {"model, method": spec.label, "seeds": len(runs)}
        for t in TASKS:
            row[t] = f"{sum(r.accuracy(t)[0] for r in runs) / len(runs):.1f}"
        row["average [95% interval]"] = f"{mean:.1f} [{lo:.1f}, {hi:.1f}]"
        row["spread over seeds"] = f"{min(averages):.1f} to {max(averages):.1f}" if len(runs) > 1 else "one run"
        rows.append(row)
        values.update({f"{scale}_{spec.key}_seed_mean": mean, f"{scale}_{spec.key}_seed_lo": lo,
                       f"{scale}_{spec.key}_seed_hi": hi, f"{scale}_{spec.key}_seeds": len(runs)})
    if not rows:
        return None
    return Table(pd.DataFrame(rows), values=values, caption=(
        "Table 2 across seeds: each method's mean accuracy over its training seeds (each at the checkpoint chosen on "
        "validation), the spread of the average over seeds, and the analysis plan's 95% interval (seeds, then items)."))


def table_last_checkpoint(result_dir: str | Path, n_resamples: int = 10_000) -> Table | None:
    """The analysis plan's secondary comparison, the last checkpoint in place of the one chosen on
    validation (reported, not deciding): per trained method, the mean over seeds at each, the
    change (last minus chosen) with the plan's interval (seeds, then items), and the primary
    comparison (GRPO <2> against the SFT variant the primary chose) at the last checkpoints.
    Values `{scale}_last_*`. None when no run's last checkpoint was scored on test."""
    import pandas as pd

    from ..eval.stats import seeds_items_bootstrap, seeds_items_interval

    scale = Path(result_dir).name
    last = {r.key: r for r in load_result_dir(result_dir, "last")}
    chosen = {r.key: r for r in load_result_dir(result_dir, "best_on_validation")}
    if not last:
        return None

    def vectors(runs: list[ModelResult], ids: list[str]) -> list[list[bool]]:
        return [[r.correct[i] for i in ids] for r in runs]

    rows, values = [], {}
    for spec in ROWS:
        at_last, at_chosen = seed_runs(last, spec.key), seed_runs(chosen, spec.key)
        if not spec.trained or not at_last or not at_chosen:
            continue
        ids = sorted(set.intersection(*(set(r.correct) for r in at_last + at_chosen)))
        mean, lo, hi = (100 * x for x in seeds_items_interval(vectors(at_last, ids), n_resamples))
        ch = seeds_items_bootstrap(vectors(at_last, ids), vectors(at_chosen, ids), n_resamples)
        chosen_accuracy = 100 * sum(map(sum, vectors(at_chosen, ids))) / (len(at_chosen) * len(ids))
        rows.append({"model, method": spec.label, "seeds": len(at_last),
                     "chosen on validation": f"{chosen_accuracy:.1f}",
                     "last checkpoint [95% interval]": f"{mean:.1f} [{lo:.1f}, {hi:.1f}]",
                     "last minus chosen [95%]": f"{100 * ch.difference:+.1f} [{100 * ch.ci_low:+.1f}, "
                                                f"{100 * ch.ci_high:+.1f}]"})
        values.update({f"{scale}_last_{spec.key}_mean": mean, f"{scale}_last_{spec.key}_change": 100 * ch.difference,
                       f"{scale}_last_{spec.key}_change_lo": 100 * ch.ci_low,
                       f"{scale}_last_{spec.key}_change_hi": 100 * ch.ci_high})
    if not rows:
        return None
    sentence = "The primary comparison cannot be made at the last checkpoints: a compared method has no such run."
    if seed_runs(last, "grpo_p2") and seed_runs(chosen, "grpo_p2"):
        key = better_sft(chosen)  # the SFT variant the primary compares
        best_sft = find_row(key).label
        a, b = seed_runs(last, "grpo_p2"), seed_runs(last, key)
        if b:
            ids = sorted(set.intersection(*(set(r.correct) for r in a + b)))
            res = seeds_items_bootstrap(vectors(a, ids), vectors(b, ids), n_resamples)
            diff, lo, hi = 100 * res.difference, 100 * res.ci_low, 100 * res.ci_high
            values.update({f"{scale}_last_primary_diff": diff, f"{scale}_last_primary_lo": lo,
                           f"{scale}_last_primary_hi": hi})
            where = ("contains zero" if lo <= 0 <= hi else "lies above zero" if lo > 0 else "lies below zero")
            sentence = (f"At the last checkpoints, {a[0].method} against {best_sft}: {diff:+.1f} points, 95% interval "
                        f"[{lo:+.1f}, {hi:+.1f}] (pooled over {len(a)} and {len(b)} seeds; the interval {where}). "
                        "A secondary comparison: it does not change the verdict.")
    values[f"{scale}_last_sentence"] = sentence
    return Table(pd.DataFrame(rows), values=values, caption=(
        "The plan's secondary comparison: each trained method at its last checkpoint in place of the one chosen on "
        "validation, the mean over seeds, and the change with the plan's 95% interval (seeds, then items)."))


def p_value_text(p: float, n_resamples: int) -> str:
    """A bootstrap p-value as text: 0 resamples beyond the observed difference is "< 1/n", not 0.

    >>> p_value_text(0.0, 10_000), p_value_text(0.0123, 10_000)
    ('< 0.0001', '0.0123')
    """
    return f"< {1 / n_resamples:.2g}" if p <= 0 else f"{p:.3g}"


def compare(a: ModelResult, b: ModelResult, n_resamples: int = 10_000, seed: int = 0) -> dict:
    """Paired comparison of two models on the items both scored (aqa_core.eval.stats.compare_paired),
    in percentage points."""
    from ..eval.stats import compare_paired

    ids = [i for i in a.correct if i in b.correct]
    if not ids:
        raise ValueError(f"{a.predictions} and {b.predictions} share no item ids; cannot pair them")
    res = compare_paired([a.correct[i] for i in ids], [b.correct[i] for i in ids], n_resamples=n_resamples, seed=seed)
    boot, mc = res["bootstrap"], res["mcnemar"]
    return {"n": len(ids), "diff": 100 * boot["difference"], "lo": 100 * boot["ci_low"], "hi": 100 * boot["ci_high"],
            "p_bootstrap": boot["p_value"], "p_mcnemar": mc["p_value"], "only_a": mc["only_a"], "only_b": mc["only_b"]}


def table_results(result_dirs: Sequence[str | Path], selection: str = "best_on_validation",
                  paper: dict | None = None, include_paper: bool = True, n_resamples: int = 10_000) -> Table:
    """Table 2: the paper's rows (baselines and ours) then each existing results folder's rows,
    per task and average, with 95% Wilson intervals; `.extra["comparisons"]` holds the paired
    tests (GRPO vs SFT, ...). Folders that do not exist are skipped, so `runs/full` may be listed
    before it exists. `.values` holds the glue values (keys `<scale>_<row>_<task|avg|lo|hi|...>`)."""
    import pandas as pd

    paper = paper or paper_results()
    rows, comp_rows = [], []
    values: dict[str, Any] = dict(paper_values(paper))
    if include_paper:
        src = paper["source"]
        for r in paper["table2"]["rows"]:
            model = "" if r["model"] in ("—", "") else r["model"] + ", "
            rows.append({"source": "paper, baseline" if r["group"] == "baseline" else "paper, R1-AQA",
                         "model, method": model + r["method"],
                         **{t: f"{r[t]:.2f}" for t in TASKS}, "average": f"{r['average']:.2f}",
                         "checkpoint": "", "average, best on test": ""})
        values["paper_arxiv"] = f"{src['arxiv']}{src['version']}"
    scales = []
    for result_dir in result_dirs:
        result_dir = Path(result_dir)
        if not result_dir.is_dir():
            continue
        results = load_result_dir(result_dir, selection)
        if not results:
            continue
        scale = result_dir.name
        scales.append(scale)
        by_key = {r.key: r for r in results}
        for r in results:
            avg = r.accuracy()
            rows.append({"source": f"this project, {scale}", "model, method": r.method,
                         **{t: cell(r.accuracy(t)) for t in TASKS}, "average": cell(avg),
                         "checkpoint": _checkpoint_cell(r),
                         "average, best on test": "" if r.test_selected_average is None
                         else f"{r.test_selected_average:.1f} (step {r.test_selected_step})"})
            p = f"{scale}_{r.key}"
            values[f"{p}_avg"], values[f"{p}_lo"], values[f"{p}_hi"] = (float(x) for x in avg)
            values[f"{p}_n"] = r.tally()[1]
            values[f"{p}_halfwidth"] = float((avg[2] - avg[1]) / 2)
            task_widths = []
            for t in TASKS:
                acc_t = r.accuracy(t)
                values[f"{p}_{t}"] = float(acc_t[0])
                if not math.isnan(acc_t[0]):
                    task_widths.append((acc_t[2] - acc_t[1]) / 2)
            if task_widths:
                values[f"{p}_task_halfwidth"] = float(sum(task_widths) / len(task_widths))
            if r.step is not None:
                values[f"{p}_step"] = int(r.step)
            if r.test_selected_average is not None:
                values[f"{p}_avg_best_on_test"] = float(r.test_selected_average)
        for a, b in COMPARISONS:
            if a in by_key and b in by_key:
                c = compare(by_key[a], by_key[b], n_resamples=n_resamples)
                comp_rows.append({"scale": scale, "A": by_key[a].method, "B": by_key[b].method, "items": c["n"],
                                  "A − B (points)": f"{c['diff']:+.1f}",
                                  "95% CI (paired bootstrap)": f"[{c['lo']:+.1f}, {c['hi']:+.1f}]",
                                  "only A right / only B right": f"{c['only_a']} / {c['only_b']}",
                                  "McNemar p": f"{c['p_mcnemar']:.3g}",
                                  "bootstrap p": p_value_text(c["p_bootstrap"], n_resamples)})
                p = f"{scale}_{a}_vs_{b}"
                for k in ("diff", "lo", "hi", "p_mcnemar", "p_bootstrap"):
                    values[f"{p}_{k}"] = float(c[k])
                values[f"{p}_n"] = int(c["n"])
        manifest = result_dir / "data" / "manifest.json"
        if manifest.is_file():
            chance = json.loads(manifest.read_text(encoding="utf-8")).get("chance_test_mini")
            if isinstance(chance, (int, float)):
                values[f"{scale}_chance"] = 100 * float(chance)
        values.update(findings(scale, by_key, {**values, "n_resamples": n_resamples}))
    values["scales"] = ", ".join(scales) if scales else "none"
    values["n_scales"] = len(scales)
    frame = pd.DataFrame(rows)
    if not (frame.get("average, best on test", pd.Series(dtype=str)) != "").any():
        frame = frame.drop(columns=["average, best on test"], errors="ignore")
    comparisons = pd.DataFrame(comp_rows)
    sel = "chosen on the validation split" if selection == "best_on_validation" else "chosen on the test set"
    caption = (f"Accuracy (%) on MMAU test-mini (paper) and on each scale's test-mini analogue (this project), "
               f"with 95% Wilson intervals; trained rows at the checkpoint {sel}.")
    return Table(frame.fillna(""), values={k: glue_safe(v) for k, v in values.items()}, caption=caption,
                 extra={"comparisons": comparisons})
