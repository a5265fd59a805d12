"""The book's tables and figures, one function each, made only from files: recipes, run folders
(`metrics.jsonl`, `eval/sweep.json`), prediction files and `paper_results.yaml`.

- `table_hyperparameters(recipe_paths)`: Table 1, the paper's printed values next to every
  recipe's, each read from the recipe file (or its dataclass default, marked as such).
- `table_results(result_dirs)`: Table 2, the paper's rows next to each results folder's rows
  (direct inference, full SFT, LoRA SFT, GRPO prompts 2 and 3) with 95% Wilson intervals, and
  the paired comparisons (McNemar, paired bootstrap) of GRPO against SFT on the same items.
- `figure_grpo_convergence(runs)`, `figure_sft_convergence(runs)`: Figures 3 and 4 (drawn in
  `aqa_core.figures`; results folders are read by `aqa_core.results`, which gives their layout).
- `build_report(...)`: all of them at once, with the findings' sentences, for the report notebook.

Numbers reach the book as glue: every function returns plain `float`/`int`/`str` values in a
flat dict (`.values`) whose keys the book's pages quote. `setup(app)` makes this module a tiny
Sphinx extension so pages quoting a results notebook are rebuilt whenever that notebook changes.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .figures import (STYLE, Figure, figure_grpo_convergence, figure_sft_convergence,  # noqa: F401 - the report's API
                      figure_training_curves, set_style, trend_sentence)
from .results import (COMPARISONS, PREDICTIONS_FILE, ROWS, SELECTIONS, SWEEP_FILE, TASKS,  # noqa: F401
                      ModelResult, RowSpec, glue_safe, load_result_dir, read_sweep, score_predictions_file)

PAPER_RESULTS_FILE = Path(__file__).with_name("paper_results.yaml")


# --------------------------------------------------------------------------------------- paper


def paper_results(path: str | Path | None = None) -> dict:
    """The paper's Table 1 and Table 2 (and Section 4.1 settings) with their source."""
    path = Path(path or PAPER_RESULTS_FILE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for need in ("source", "table1", "table2"):
        if need not in data:
            raise ValueError(f"{path}: missing section {need!r}")
    return data


def paper_values(paper: dict | None = None) -> dict[str, Any]:
    """Glue values for the paper's numbers (`paper_<row_key>_<task|average>`), the source, and the
    Table 2 cells that are not a whole count over their task's items (e.g. music 49.19 of 334)."""
    paper = paper or paper_results()
    src = paper["source"]
    out: dict[str, Any] = {"paper_source": f"arXiv {src['arxiv']} {src['version']}"}
    items = paper["table2"]["items"]
    odd = []
    for row in paper["table2"]["rows"]:
        key = row.get("row_key")
        for col in (*TASKS, "average"):
            if key:
                out[f"paper_{key}_{col}"] = float(row[col])
            if row["group"] == "ours" or key == "direct":
                n = items[col]
                count = row[col] * n / 100
                if abs(count - round(count)) > 0.05 and abs(round(count) / n * 100 - row[col]) > 0.005:
                    odd.append(f"{row['method']} {col} {row[col]:.2f} (= {count:.2f} of {n})")
    ours = {r.get("row_key"): r for r in paper["table2"]["rows"] if r.get("row_key")}
    if {"grpo_p2", "sft_lora", "sft_full", "grpo_p3"} <= set(ours):
        out["paper_grpo_p2_minus_sft_lora"] = round(ours["grpo_p2"]["average"] - ours["sft_lora"]["average"], 2)
        out["paper_grpo_p2_minus_sft_full"] = round(ours["grpo_p2"]["average"] - ours["sft_full"]["average"], 2)
        out["paper_grpo_p2_minus_grpo_p3"] = round(ours["grpo_p2"]["average"] - ours["grpo_p3"]["average"], 2)
        human = next(r for r in paper["table2"]["rows"] if r["method"].startswith("Human"))
        out["paper_human_average"] = float(human["average"])
    for col, n in items.items():
        out[f"paper_items_{col}"] = int(n)
    out["paper_odd_cells"] = "; ".join(odd)
    out["paper_odd_cells_n"] = len(odd)
    for key, value in paper.get("text_settings", {}).items():
        if isinstance(value, (int, float)) and key != "source":
            out[f"paper_{key}"] = value
    for row in paper["table1"]["rows"]:
        out[f"paper_t1_{row['key']}"] = row["value"]
    return out


# --------------------------------------------------------------------------------------- Table 1

#: Recipe-derived settings that are not recipe fields: name -> (function of the resolved recipe).
DERIVED = {
    # TRL 1.16 counts completions per device; the paper's "batch size per device" counts prompts.
    "per_device_prompts": lambda r: (r["per_device_train_batch_size"] / r["num_generations"]
                                     if r.get("num_generations") else None),
}
#: Fields never worth a row (they name where a run writes, not how it trains).
SKIP_FIELDS = {"output_dir"}


def _recipe_class(path: Path):
    """The dataclass a recipe file is read into, from its folder (recipes/grpo, recipes/sft)."""
    kind = path.parent.name
    if kind == "grpo":
        from .grpo import GRPORecipe

        return GRPORecipe
    if kind == "sft":
        from .sft import SFTRecipe

        return SFTRecipe
    return None


def recipe_values(path: str | Path) -> tuple[dict[str, Any], set[str]]:
    """(resolved values, keys set in the file or its `_base`): the file's values over its
    dataclass's defaults, with derived settings (prompts per device) added."""
    from .config import load_recipe, read_recipe, to_dict

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
    derived_from_file = {n for n in DERIVED if n in resolved and {"per_device_train_batch_size", "num_generations"} <= set(in_file)}
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
                          paper: dict | None = None, differing: bool = True) -> "Table":
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
            if len({_fmt_value(v) for v in vals}) > 1:
                rows.append({"group": "differs between recipes", "setting": "", "recipe key": key,
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


@dataclass
class Table:
    """A table for the book: the display frame, its caption and the glue values it yields."""

    frame: Any  # pandas.DataFrame
    values: dict[str, Any] = field(default_factory=dict)
    caption: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # further frames (e.g. comparisons)
    css_class: str = "aqa-table"  # book/_static/aqa.css styles it

    def html(self, frame: Any = None) -> str:
        """Plain HTML (no index), what the book glues. Text is escaped; a cell "61.3 [55.9, 66.4]"
        shows its interval on a second, smaller line so that the table fits a page."""
        import html as _html

        frame = (self.frame if frame is None else frame).copy()

        def cell(value: Any) -> str:
            if isinstance(value, bool) or type(value).__name__ == "bool_":
                return "yes" if value else "no"
            text = _html.escape("" if value is None else str(value))
            m = re.fullmatch(r"(\S+) (\[[^\]]+\])", text)
            return f"{m.group(1)}<br><small>{m.group(2)}</small>" if m else text

        for col in frame.columns:
            frame[col] = frame[col].map(cell)
        frame.columns = [_html.escape(str(c)) for c in frame.columns]
        return frame.to_html(index=False, escape=False, na_rep="", border=0,
                             classes=["table", *self.css_class.split()], justify="left")

    def _repr_html_(self) -> str:
        return self.html()


def _checkpoint_cell(r: ModelResult) -> str:
    if r.checkpoint is None:
        return "—"
    cell = f"step {r.step}" if r.step is not None else r.checkpoint.split(" ")[0]
    return cell + (" (chosen on test: no validation split)" if "on test" in r.checkpoint else "")


def _cell(acc: tuple[float, float, float]) -> str:
    a, lo, hi = acc
    return "" if math.isnan(a) else f"{a:.1f} [{lo:.1f}, {hi:.1f}]"


def compare(a: ModelResult, b: ModelResult, n_resamples: int = 10_000, seed: int = 0) -> dict:
    """Paired comparison of two models on the items both scored (aqa_core.stats.compare_paired),
    in percentage points."""
    from .stats import compare_paired

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
                         **{t: _cell(r.accuracy(t)) for t in TASKS}, "average": _cell(avg),
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
                                  "McNemar p": f"{c['p_mcnemar']:.3g}", "bootstrap p": f"{c['p_bootstrap']:.3g}"})
                p = f"{scale}_{a}_vs_{b}"
                for k in ("diff", "lo", "hi", "p_mcnemar", "p_bootstrap"):
                    values[f"{p}_{k}"] = float(c[k])
                values[f"{p}_n"] = int(c["n"])
        manifest = result_dir / "data" / "manifest.json"
        if manifest.is_file():
            chance = json.loads(manifest.read_text(encoding="utf-8")).get("chance_test_mini")
            if isinstance(chance, (int, float)):
                values[f"{scale}_chance"] = 100 * float(chance)
        values.update(findings(scale, by_key, values))
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


def paired_sentence(a: str, b: str, diff: float, lo: float, hi: float) -> str:
    """One sentence on a paired comparison, worded by where its 95% interval lies."""
    span = f"paired 95% interval [{lo:+.1f}, {hi:+.1f}] points"
    if lo > 0:
        return f"{a} scored {diff:.1f} points above {b} ({span}, excluding zero)."
    if hi < 0:
        return f"{a} scored {-diff:.1f} points below {b} ({span}, excluding zero)."
    return f"{a} and {b} differ by {diff:+.1f} points, within noise ({span}, including zero)."


def findings(scale: str, by_key: Mapping[str, ModelResult], values: Mapping[str, Any]) -> dict[str, Any]:
    """Sentences for "what the study found", made from the numbers (never typed by hand): GRPO
    (prompt <2>) against the better SFT run with the paired interval deciding the wording, and
    the same for think vs no think, LoRA vs full, GRPO vs the base model, and the optimism of
    choosing checkpoints on the test set."""
    out: dict[str, Any] = {}

    def pair(a: str, b: str) -> str | None:
        p = f"{scale}_{a}_vs_{b}"
        if f"{p}_diff" not in values:
            return None
        return paired_sentence(by_key[a].method, by_key[b].method, values[f"{p}_diff"], values[f"{p}_lo"], values[f"{p}_hi"])

    sft = [k for k in ("sft_full", "sft_lora") if k in by_key]
    if "grpo_p2" not in by_key or not sft:
        out[f"{scale}_verdict"] = "Not all of GRPO prompt <2>, full SFT and LoRA SFT have results yet."
    else:
        best_sft = max(sft, key=lambda k: by_key[k].accuracy()[0])
        p = f"{scale}_grpo_p2_vs_{best_sft}"
        lo, hi = values[f"{p}_lo"], values[f"{p}_hi"]
        ordering = ("the paper's ordering (RL above SFT) holds at this scale" if lo > 0 else
                    "at this scale the ordering is the reverse of the paper's" if hi < 0 else
                    "at this scale the data cannot tell RL and SFT apart")
        out[f"{scale}_verdict"] = f"{pair('grpo_p2', best_sft)} So {ordering}."
        out[f"{scale}_best_sft"] = by_key[best_sft].method
    for name, (a, b) in {"think": ("grpo_p3", "grpo_p2"), "lora": ("sft_lora", "sft_full"),
                         "grpo_vs_base": ("grpo_p2", "direct_p2")}.items():
        sentence = pair(a, b)
        out[f"{scale}_{name}_sentence"] = sentence or f"({a} or {b} has no results yet.)"
    chance = values.get(f"{scale}_chance")
    if chance is not None and "direct_p2" in by_key:
        acc, lo, hi = by_key["direct_p2"].accuracy()
        where = ("above chance" if lo > chance else "below chance" if hi < chance else "not distinguishable from chance")
        room = ("so fine-tuning has room to help or to hurt, as with the real base model"
                if lo > chance and hi < 95 else
                "unlike the real base model, which starts well above chance")
        out[f"{scale}_base_sentence"] = (f"With prompt <2> the base model answers {acc:.1f}% [{lo:.1f}, {hi:.1f}] of the "
                                         f"test questions correctly, {where} ({chance:.1f}%): {room}.")
    else:
        out[f"{scale}_base_sentence"] = "(The base model's direct inference has no results yet.)"
    gaps = [r.test_selected_average - r.accuracy()[0] for r in by_key.values() if r.test_selected_average is not None]
    out[f"{scale}_selection_gap"] = float(sum(gaps) / len(gaps)) if gaps else 0.0
    out[f"{scale}_selection_runs"] = len(gaps)
    return out


# --------------------------------------------------------------------------------------- full scale


def zero3_memory_estimate(params_billions: float, gpus: int) -> dict[str, float]:
    """Static GPU memory per device (GB, 1e9 bytes) for GRPO with DeepSpeed ZeRO-3 and bf16 mixed
    precision: policy weights (2 bytes/param), gradients (2), fp32 master weights and Adam's two
    moments (12), and the frozen reference model for the KL term (2), all sharded over `gpus`.
    Activations, the generation KV cache and the layer ZeRO-3 gathers come on top. With the
    official launch's CPU offload, the optimizer states and the parameters live in host RAM.

    >>> zero3_memory_estimate(8.2, 8)["total_gb"]
    18.45
    """
    n = params_billions  # 1e9 params x bytes/param = GB
    per = {"policy_gb": 2 * n / gpus, "grads_gb": 2 * n / gpus, "optimizer_gb": 12 * n / gpus,
           "reference_gb": 2 * n / gpus}
    per["total_gb"] = sum(per.values())
    per["offload_host_gb"] = (12 + 2) * n  # optimizer states + fp16 parameter copy, on the host, whole node
    return {k: round(v, 2) for k, v in per.items()}


# --------------------------------------------------------------------------------------- the report


@dataclass
class Report:
    """Everything the book's results pages show, from files only."""

    table1: Table
    table1_sft: Table
    table2: Table
    comparisons: Table
    figure3: Figure | None
    figure4: Figure | None
    values: dict[str, Any]
    figure_paths: dict[str, str]


def build_report(result_dirs: Sequence[str | Path], grpo_recipes: Sequence[str | Path],
                 sft_recipes: Sequence[str | Path], figures_dir: str | Path = "figures",
                 figure_scale: str | Path | None = None, selection: str = "best_on_validation",
                 n_resamples: int = 10_000) -> Report:
    """Tables 1 and 2 and Figures 3 and 4 in one call (what notebooks/report.ipynb runs). Figures
    are drawn from `figure_scale` (default: the first existing results folder) and saved as PNG
    under `figures_dir`. `.values` merges every table's and figure's glue values."""
    existing = [Path(d) for d in result_dirs if Path(d).is_dir()]
    figure_dir = Path(figure_scale) if figure_scale else (existing[0] if existing else None)
    t1 = table_hyperparameters(list(grpo_recipes))
    t1_sft = table_hyperparameters(list(sft_recipes), differing=True)
    t2 = table_results(result_dirs, selection=selection, n_resamples=n_resamples)
    values = {**t1.values, **t1_sft.values, **t2.values}
    paths = {}
    fig3 = fig4 = None
    if figure_dir is not None:
        fig3 = figure_grpo_convergence(figure_dir)
        fig4 = figure_sft_convergence(figure_dir)
        for name, fig in (("figure3_grpo_convergence", fig3), ("figure4_sft_convergence", fig4)):
            paths[name] = str(fig.save(Path(figures_dir) / f"{name}.png"))
            values.update(fig.values)
    values["figure_scale"] = figure_dir.name if figure_dir else "none"
    values["n_resamples"] = int(n_resamples)
    text = paper_results()["text_settings"]
    est = zero3_memory_estimate(text["model_parameters_billions"], text["grpo_gpus"])
    values.update({f"zero3_{k}": v for k, v in est.items()})
    comparisons = Table(t2.extra["comparisons"], css_class="aqa-table aqa-compare", caption="Paired comparisons on the same test items: accuracy "
                        "difference A − B with its paired-bootstrap 95% interval, and the exact McNemar test.")
    return Report(t1, t1_sft, t2, comparisons, fig3, fig4, {k: glue_safe(v) for k, v in values.items()}, paths)


def glue_values(values: Mapping[str, Any]) -> int:
    """Glue every value (plain float/int/str only) without displaying it; returns how many."""
    from myst_nb import glue

    n = 0
    for key, value in values.items():
        value = glue_safe(value)
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise TypeError(f"glue value {key!r} must be a plain int, float or str, got {type(value).__name__}")
        glue(key, value, display=False)
        n += 1
    return n


# --------------------------------------------------------------------------------------- Sphinx hook


def _outdated_quoting_pages(app, env, added, changed, removed):  # noqa: ANN001 - Sphinx event signature
    """Pages quote glued numbers from `results/*.ipynb` (cross-document glue), which Sphinx does
    not track: when a results notebook changed, rebuild every other page too."""
    if any(doc.startswith("results/") for doc in set(added) | set(changed)):
        return [doc for doc in env.found_docs if not doc.startswith("results/")]
    return []


def setup(app):  # noqa: ANN001, ANN201 - Sphinx extension entry point
    """Sphinx extension (book/_config.yml `extra_extensions`): see `_outdated_quoting_pages`."""
    app.connect("env-get-outdated", _outdated_quoting_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
