"""The book's tables and figures, one function each, made only from files: recipes, run folders
(`metrics.jsonl`, `eval/sweep.json`), prediction files and `paper_results.yaml`.

- `table_hyperparameters(recipe_paths)`: Table 1, the paper's printed values next to every
  recipe's, each read from the recipe file (or its dataclass default, marked as such).
- `table_results(result_dirs)`: Table 2, the paper's rows next to each results folder's rows
  (direct inference, full SFT, LoRA SFT, GRPO prompts 2 and 3) with 95% Wilson intervals, and
  the paired comparisons (McNemar, paired bootstrap) of GRPO against SFT on the same items.
- `figure_grpo_convergence(runs)`, `figure_sft_convergence(runs)`: Figures 3 and 4.

A results folder has one layout at every scale (the study writes it; the full-scale page says
how to write it by hand), so rows from `runs/full` appear as soon as the folder exists:

    RESULTS/eval/base-prompt2/predictions.json   direct inference, prompt <2> (+ .score.json)
    RESULTS/eval/base-prompt1/predictions.json   direct inference, prompt <1>
    RESULTS/sft-full/ sft-lora/ grpo-prompt2/ grpo-prompt3/   run folders, each with eval/sweep.json
    RESULTS/<run>-seed<N>/                                     extra seeds, same layout

A trained row is scored at the checkpoint chosen on the validation split (`best_on_validation`
of the sweep; honest) and, beside it, at the checkpoint chosen on the test set itself
(`best_on_test`; what the paper did, optimistic). Accuracies are percentages, as MMAU prints them.

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

from .metrics import read_metrics, tenth_means

PAPER_RESULTS_FILE = Path(__file__).with_name("paper_results.yaml")
TASKS = ("sound", "music", "speech")
SWEEP_FILE = Path("eval") / "sweep.json"
SELECTIONS = ("best_on_validation", "best_on_test")


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


# --------------------------------------------------------------------------------------- results


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

    def tally(self, task: str | None = None) -> tuple[int, int]:
        ids = [i for i in self.correct if task is None or self.task_of[i] == task]
        return sum(self.correct[i] for i in ids), len(ids)

    def accuracy(self, task: str | None = None) -> tuple[float, float, float]:
        """(accuracy, CI low, CI high) in percent; NaN for an empty group."""
        from .stats import wilson_interval

        k, n = self.tally(task)
        if n == 0:
            return math.nan, math.nan, math.nan
        lo, hi = wilson_interval(k, n)
        return 100 * k / n, 100 * lo, 100 * hi


def score_predictions_file(path: str | Path) -> tuple[dict[str, bool], dict[str, str]]:
    """Per-item correctness and task, by the official MMAU rule (aqa_core.mmau), for one file."""
    from .mmau import score_file

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


def read_sweep(run_dir: str | Path) -> dict:
    """`RUN/eval/sweep.json` as aqa_core.sweep writes it."""
    path = Path(run_dir) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sweep (run `python -m aqa_core sweep --run {run_dir} ...`)")
    return json.loads(path.read_text(encoding="utf-8"))


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


def load_result_dir(result_dir: str | Path, selection: str = "best_on_validation",
                    scale: str | None = None) -> list[ModelResult]:
    """Every Table 2 row present in one results folder, in ROWS order (missing rows are skipped).
    A run is scored at the sweep's `selection` checkpoint (falling back to best-on-test, flagged
    in `checkpoint`, when the sweep had no validation split)."""
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
                chosen = sweep["selection"].get(selection)
                note = ""
                if chosen is None:
                    chosen, note = sweep["selection"].get("best_on_test"), " (on test: no validation)"
                if chosen is None:
                    continue
                preds = folder / "eval" / f"{chosen['checkpoint']}.test.json"
                best_test = sweep["selection"].get("best_on_test") or {}
                res = ModelResult(scale, spec.key + suffix, label, preds, chosen["checkpoint"] + note,
                                  chosen.get("step"), test_selected_average=best_test.get("test"),
                                  test_selected_step=best_test.get("step"))
            res.correct, res.task_of = score_predictions_file(res.predictions)
            out.append(res)
    return out


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


def _plain(x: Any) -> Any:
    """A glue-safe plain Python value (numpy>=2 scalars break myst-nb format specs)."""
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return float("nan")
    return x


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
    return Table(frame.fillna(""), values={k: _plain(v) for k, v in values.items()}, caption=caption,
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


# --------------------------------------------------------------------------------------- figures

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


def metric_series(run_dir: str | Path, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged metric of a run (rows without it are skipped)."""
    rows = [r for r in read_metrics(run_dir) if isinstance(r.get(key), (int, float))]
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
    spec = next(s for s in ROWS if s.key == key)
    preds = result_dir / spec.folder / PREDICTIONS_FILE
    if not preds.is_file():
        return None
    correct, _ = score_predictions_file(preds)
    return 100 * sum(correct.values()) / len(correct) if correct else None


def _accuracy_panel(ax, runs: Mapping[str, tuple[str, Path]], baseline: tuple[str, float | None]) -> dict:
    values = {}
    for label, (key, run_dir) in runs.items():
        color, marker = STYLE.get(key, ("black", "o"))
        s = sweep_series(run_dir)
        ax.plot(s["step"], s["test"], color=color, marker=marker, label=label)
        ax.fill_between(s["step"], s["lo"], s["hi"], color=color, alpha=0.12, linewidth=0)
        if s["selected_step"] in s["step"]:
            i = s["step"].index(s["selected_step"])
            ax.plot([s["step"][i]], [s["test"][i]], marker="*", markersize=15, color=color, markeredgecolor="black",
                    linestyle="none")
        if s["test"]:
            values[f"{key}_first_test"], values[f"{key}_last_test"] = float(s["test"][0]), float(s["test"][-1])
            values[f"{key}_first_step"], values[f"{key}_last_step"] = int(s["step"][0]), int(s["step"][-1])
            trained = [t for st, t in zip(s["step"], s["test"]) if st > 0] or s["test"]
            values[f"{key}_max_test"] = float(max(trained))  # over the run's checkpoints (not the base)
    name, base = baseline
    if base is not None:
        ax.axhline(base, color="#7f7f7f", linestyle="--", linewidth=1.2, label=name)
    ax.plot([], [], marker="*", markersize=12, color="#999999", markeredgecolor="black", linestyle="none",
            label="checkpoint chosen on validation")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="best", fontsize=8)
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


@dataclass
class Figure:
    """A matplotlib figure with its caption and the glue values read off its data. Displays (and
    glues) as PNG whatever the notebook's matplotlib backend."""

    fig: Any
    values: dict[str, Any] = field(default_factory=dict)
    caption: str = ""

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(path, bbox_inches="tight")
        return path

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def _runs_arg(runs: Mapping[str, str | Path] | Sequence[str | Path], keys: Sequence[str]) -> dict[str, tuple[str, Path]]:
    """Normalise `runs` to {label: (row key, folder)}: a mapping row key -> folder, or a results
    folder (then the standard folders for `keys` inside it), skipping folders without data."""
    if isinstance(runs, (str, Path)):
        base = Path(runs)
        runs = {k: base / next(s.folder for s in ROWS if s.key == k) for k in keys}
    out = {}
    for key, folder in dict(runs).items():
        folder = Path(folder)
        if (folder / SWEEP_FILE).is_file() or (folder / "metrics.jsonl").is_file():
            label = next((s.method for s in ROWS if s.key == key), key)
            out[label] = (key, folder)
    return out


def figure_grpo_convergence(runs: Mapping[str, str | Path] | str | Path, result_dir: str | Path | None = None,
                            smooth: int | None = None) -> Figure:
    """Figure 3: GRPO's mean reward per step (left; raw faint, smoothed solid) and test accuracy
    per checkpoint with its 95% interval (right; the star marks the validation-selected one), for
    prompts <2> and <3>, with direct inference (prompt <2>) as the dashed line. `runs` is a results
    folder or {"grpo_p2": run_dir, "grpo_p3": run_dir}."""
    set_style()
    if isinstance(runs, (str, Path)):
        result_dir = result_dir or runs
    runs = _runs_arg(runs, ("grpo_p2", "grpo_p3"))
    if not runs:
        raise FileNotFoundError("figure_grpo_convergence: no GRPO run folder with metrics.jsonl or eval/sweep.json")
    fig = _new_figure(11, 4)
    ax_r, ax_a = fig.subplots(1, 2)
    values: dict[str, Any] = {}
    for label, (key, run_dir) in runs.items():
        color, _ = STYLE.get(key, ("black", "o"))
        steps, reward = metric_series(run_dir, "reward")
        if not steps:
            continue
        w = smooth or max(1, len(steps) // 15)
        ax_r.plot(steps, reward, color=color, alpha=0.25, linewidth=0.8)
        ax_r.plot(steps, _smooth(reward, w), color=color, linewidth=2, label=label)
        first, last = tenth_means(reward)
        values[f"{key}_reward_first_tenth"], values[f"{key}_reward_last_tenth"] = first, last
        values[f"{key}_reward_rise"] = last - first
        values[f"{key}_steps"] = int(steps[-1])
        values[f"{key}_reward_sentence"] = trend_sentence(f"The mean reward of {label}", reward)
    ax_r.set_xlabel("training step")
    ax_r.set_ylabel("mean reward (accuracy + format, max 2)")
    ax_r.set_title("GRPO reward")
    ax_r.legend(loc="best", fontsize=8)
    base = _baseline(Path(result_dir) if result_dir else None, "direct_p2")
    values.update(_accuracy_panel(ax_a, {k: v for k, v in runs.items() if (v[1] / SWEEP_FILE).is_file()},
                                  ("direct inference, prompt <2>", base)))
    ax_a.set_title("test accuracy")
    return Figure(fig, {f"fig3_{k}": _plain(v) for k, v in values.items()},
                  caption="Convergence of GRPO (Figure 3): reward per step and test accuracy per checkpoint.")


def figure_sft_convergence(runs: Mapping[str, str | Path] | str | Path, result_dir: str | Path | None = None,
                           smooth: int | None = None) -> Figure:
    """Figure 4: SFT training loss per logging step (left) and test accuracy per checkpoint
    (right), full fine-tuning against LoRA, with direct inference (prompt <1>) as the dashed line.
    `runs` is a results folder or {"sft_full": run_dir, "sft_lora": run_dir}."""
    set_style()
    if isinstance(runs, (str, Path)):
        result_dir = result_dir or runs
    runs = _runs_arg(runs, ("sft_full", "sft_lora"))
    if not runs:
        raise FileNotFoundError("figure_sft_convergence: no SFT run folder with metrics.jsonl or eval/sweep.json")
    fig = _new_figure(11, 4)
    ax_l, ax_a = fig.subplots(1, 2)
    values: dict[str, Any] = {}
    for label, (key, run_dir) in runs.items():
        color, marker = STYLE.get(key, ("black", "o"))
        steps, loss = metric_series(run_dir, "loss")
        if not steps:
            continue
        ax_l.plot(steps, loss, color=color, alpha=0.3, linewidth=0.8)
        ax_l.plot(steps, _smooth(loss, smooth or max(1, len(steps) // 15)), color=color, linewidth=2, label=label)
        first, last = tenth_means(loss)
        values[f"{key}_loss_first_tenth"], values[f"{key}_loss_last_tenth"] = first, last
        values[f"{key}_steps"] = int(steps[-1])
    ax_l.set_xlabel("training step")
    ax_l.set_ylabel("training loss (answer tokens)")
    ax_l.set_title("SFT loss")
    ax_l.legend(loc="best", fontsize=8)
    base = _baseline(Path(result_dir) if result_dir else None, "direct_p1")
    values.update(_accuracy_panel(ax_a, {k: v for k, v in runs.items() if (v[1] / SWEEP_FILE).is_file()},
                                  ("direct inference, prompt <1>", base)))
    ax_a.set_title("test accuracy")
    return Figure(fig, {f"fig4_{k}": _plain(v) for k, v in values.items()},
                  caption="Convergence of full and LoRA fine-tuning (Figure 4): loss and test accuracy.")


def figure_training_curves(run_dir: str | Path, keys: Sequence[str] = ("reward", "loss", "kl")) -> Figure:
    """One run's logged curves side by side (what a training notebook shows)."""
    set_style()
    series = {k: metric_series(run_dir, k) for k in keys}
    series = {k: v for k, v in series.items() if v[0]}
    fig = _new_figure(4 * max(1, len(series)), 3.2)
    axes = fig.subplots(1, max(1, len(series)), squeeze=False)
    for ax, (key, (steps, vals)) in zip(axes[0], series.items()):
        ax.plot(steps, vals, alpha=0.35, color="#1f77b4")
        ax.plot(steps, _smooth(vals, max(1, len(steps) // 15)), color="#1f77b4", linewidth=2)
        ax.set_xlabel("training step")
        ax.set_title(key)
    return Figure(fig, {}, caption=f"Logged curves of {run_dir}")


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
    return Report(t1, t1_sft, t2, comparisons, fig3, fig4, {k: _plain(v) for k, v in values.items()}, paths)


def glue_values(values: Mapping[str, Any]) -> int:
    """Glue every value (plain float/int/str only) without displaying it; returns how many."""
    from myst_nb import glue

    n = 0
    for key, value in values.items():
        value = _plain(value)
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
