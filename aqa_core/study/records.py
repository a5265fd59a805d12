"""What a single-run page of the book shows, from files only: the mini benchmark and base model
(`mini_scale_record`), one evaluation (`evaluation_record`), or one GRPO/SFT run with its sweep
(`run_record`). `aqa_core.study.pipeline.notebooks` builds what is missing, then returns these.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs import (
    CONFIG_FILE,
    METRICS_FILE,
    SWEEP_FILE,
    predictions_name,
    read_config,
    read_metrics,
    read_sweep,
    tenth_means,
)
from .display import Table


@dataclass
class Record:
    """What a notebook shows about one stage: tables, text, a figure and glue values."""

    title: str
    tables: dict[str, Any] = field(default_factory=dict)  # name -> aqa_core.study.display.Table
    text: str = ""
    figure: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    ran: bool = False  # True when this call ran the stage (False: recorded existing results)

    def _repr_html_(self) -> str:
        import html

        state = "trained and scored by this notebook" if self.ran else "recorded from the files it wrote"
        return f"<p>{html.escape(self.title)}: {state}.</p>"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def mini_scale_record(data_dir: str | Path, base_dir: str | Path, ran: bool = False) -> Record:
    """The mini benchmark and base model: counts per split and sub-category, the train -> test
    shift, the base model's build."""
    import pandas as pd

    from ..mini.tasks import SUBCATS, shift_table
    from .budget import parameter_counts

    data_dir, base_dir = Path(data_dir), Path(base_dir)
    man = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    info = _read_json(base_dir / "build_info.json")
    task_of = {s.name: s.task for s in SUBCATS.values()}
    counts = pd.DataFrame(man["counts"]).fillna(0).astype(int)
    counts.insert(0, "task", [task_of.get(i, "") for i in counts.index])
    counts = counts.rename_axis("sub-category").reset_index().sort_values(["task", "sub-category"])
    shift = pd.DataFrame(shift_table())
    test_only = int(sum(1 for s in SUBCATS.values() if not s.train_q))
    params = info.get("parameters") or {}
    spec = info.get("spec") or {}
    values = {"n_train": int(man["sizes"]["train"]), "n_validation": int(man["sizes"]["validation"]),
              "n_test": int(man["sizes"]["test"]), "n_base": int(man["sizes"]["base"]),
              "chance_test": 100 * float(man.get("chance_test_mini", 0.0)),
              "n_subcategories": len(SUBCATS), "n_test_only_subcategories": test_only,
              "base_parameters": int(params.get("total") or sum(parameter_counts(base_dir).values())),
              "base_audio_parameters": int(params.get("audio_tower", 0)),
              "base_train_seconds": float(info.get("train_seconds", 0.0)),
              "base_steps": int((info.get("hyperparameters") or {}).get("steps", 0)),
              "tokenizer_size": int(info.get("tokenizer_size", 0)),
              "audio_tokens_per_clip": int(info.get("audio_tokens_per_clip", 0)),
              "text_layers": int(spec.get("num_hidden_layers", 0)), "text_hidden": int(spec.get("hidden_size", 0)),
              "audio_seconds": int(spec.get("audio_seconds", 0))}
    def shown(v: Any) -> str:  # a number as a reader reads it: 8,550,656; 0.0003; 86.2
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{v:.4g}" if isinstance(v, float) \
            else str(v)

    settings = []
    for k, v in info.items():
        if k not in ("parameters", "trainable_parameters", "tokenizer_size", "audio_tower", "audio_tokens_per_clip",
                     "hyperparameters", "train_seconds", "final_loss_mean_last10", "code_version"):
            continue
        name = k.replace("_", " ")
        # a mapping (parameter counts, hyper-parameters) one row per entry, not a dict's repr
        settings += ([{"setting": f"{name}: {kk.replace('_', ' ')}", "value": shown(vv)} for kk, vv in v.items()]
                     if isinstance(v, dict) else [{"setting": name, "value": shown(v)}])
    base_table = pd.DataFrame(settings)
    return Record("mini benchmark and base model", {"clips per split and sub-category": Table(counts),
                                                    "train -> test-mini shift": Table(shift),
                                                    "base model": Table(base_table)},
                  values=values, ran=ran)


def evaluation_record(model: str | Path, out: str | Path, prompt: int, ran: bool = False) -> Record:
    """One model scored on one question file (its score report beside the predictions): the
    official lines plus per-task accuracy with CIs."""
    import pandas as pd

    out = Path(out)
    summary = json.loads(out.with_name(out.name + ".score.json").read_text(encoding="utf-8"))
    rep = summary["report"]
    rows = [{"group": name, "correct": t["correct"], "total": t["total"], "accuracy, %": round(t["accuracy"], 1),
             "95% CI": f"[{t['ci95'][0]:.1f}, {t['ci95'][1]:.1f}]" if t.get("ci95") else ""}
            for name, t in [*rep.get("task", {}).items(), ("total", rep["total"])]]
    total = rep["total"]
    values = {"accuracy": float(total["accuracy"]), "n": int(total["total"]), "prompt": int(prompt),
              "ci_low": float(total["ci95"][0]) if total.get("ci95") else float("nan"),
              "ci_high": float(total["ci95"][1]) if total.get("ci95") else float("nan")}
    for task, t in rep.get("task", {}).items():
        values[f"accuracy_{task}"] = float(t["accuracy"])
    if summary.get("items_per_second"):
        values["items_per_second"] = float(summary["items_per_second"])
    return Record(f"evaluation of {model} with prompt <{prompt}>", {"accuracy": Table(pd.DataFrame(rows))},
                  text="\n".join(rep.get("official_lines", [])), values=values, ran=ran)


def sample_outputs(run_dir: str | Path, sweep: dict, n_items: int = 3):  # a DataFrame or None
    """The raw outputs of a few test items (the file's first `n_items`) at every swept checkpoint:
    what the model says as training goes on."""
    import pandas as pd

    rows = []
    for r in sweep.get("rows", []):
        path = Path(run_dir) / SWEEP_FILE.parent / predictions_name(r["checkpoint"])
        if not path.is_file():
            continue
        preds = json.loads(path.read_text(encoding="utf-8"))[:n_items]
        rows += [{"step": r["step"], "item": p.get("id", i)[:8] if isinstance(p.get("id"), str) else i,
                  "sub-category": p.get("sub-category", ""), "answer": p.get("answer", ""),
                  "output": p.get("raw_output", p.get("model_output", ""))} for i, p in enumerate(preds)]
    return pd.DataFrame(rows) if rows else None


def run_record(runner: str, run_dir: str | Path, ran: bool = False) -> Record:
    """A GRPO or SFT run: its resolved config, logged curves, accuracy per checkpoint, both
    selections and the convergence verdict (when swept), and sample outputs."""
    import pandas as pd

    from .budget import run_budget
    from .figures import figure_training_curves
    from .results import convergence, run_seed_index

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    rows = read_metrics(run_dir)
    metrics = pd.DataFrame(rows)
    curve = "reward" if runner == "grpo" else "loss"
    series = [float(r[curve]) for r in rows if isinstance(r.get(curve), (int, float))]
    budget = run_budget(run_dir)  # questions seen (prompts, not completions), steps, seconds, FLOPs
    values: dict[str, Any] = {"steps": budget["steps"], "runner": runner, "prompt": int(config.get("prompt", 1) or 1),
                              "learning_rate": float(config.get("learning_rate", float("nan"))),
                              "questions_per_step": budget["questions_per_step"],
                              "questions_seen": budget["questions_seen"]}
    if series:
        values[f"{curve}_first_tenth"], values[f"{curve}_last_tenth"] = tenth_means(series)
    if budget["seconds"] is not None:
        values["train_seconds"] = budget["seconds"]
    if budget["flops"]:
        values["flops_estimate"] = float(budget["flops"])

    def shown(v: Any) -> str:  # floats to 6 significant digits (config.yaml keeps every digit)
        return json.dumps(v) if isinstance(v, (list, dict)) else f"{v:.6g}" if isinstance(v, float) else str(v)

    tables = {f"resolved config ({CONFIG_FILE})": Table(pd.DataFrame(
        [{"key": k, "value": shown(v)} for k, v in config.items()]))}
    if len(metrics):
        tables[f"last logged steps ({METRICS_FILE})"] = Table(metrics.tail(5))
    if (run_dir / SWEEP_FILE).is_file():
        sweep = read_sweep(run_dir)
        names = {"test": "test, %", "test_n": "test items", "validation": "validation, %",
                 "validation_n": "validation items",
                 **{f"test_{t}": f"test {t}, %" for t in ("sound", "music", "speech")}}
        tables["accuracy per checkpoint (eval/sweep.json)"] = Table(pd.DataFrame(sweep["rows"]).drop(
            columns=["test_ci95"], errors="ignore").round(1).rename(columns=names))
        for sel in ("best_on_test", "best_on_validation"):
            chosen = sweep["selection"].get(sel)
            if chosen:
                values[f"{sel}_step"] = int(chosen["step"] or 0)
                values[f"{sel}_test"] = float(chosen["test"])
        conv = convergence(sweep)
        values["converged"] = {True: "yes", False: "no", None: "cannot tell"}[conv["converged"]]
        values["convergence_reason"] = conv["reason"]
        samples = sample_outputs(run_dir, sweep)
        if samples is not None:
            tables["sample outputs per checkpoint (greedy, test items)"] = Table(samples)
    reward = [f"rewards/{name}/mean" for name in ("accuracy_reward", "format_reward", "think_format_reward")]
    keys = ((*reward, "frac_reward_zero_std", "kl", "completions/mean_length", "entropy") if runner == "grpo"
            else ("loss", "learning_rate", "mean_token_accuracy"))
    fig = figure_training_curves(run_dir, keys)
    seed, index = config.get("seed"), run_seed_index(run_dir)
    who = f"The run in {run_dir}" + (f", the study's seed {index} (training seed {seed})" if index is not None else "")
    return Record(who, tables, figure=fig, values=values, ran=ran)
