"""What each run cost and whether it converged: questions seen (prompts, not completions),
optimizer steps, wall seconds, an estimate of its training FLOPs, and the analysis plan's
convergence verdict (`aqa_core.study.results.convergence`), for every run and seed of a results
folder (`runs_table`), beside the paper's ratio of questions seen (GRPO : SFT, about 1 : 19).

The FLOPs are an estimate from the logged token counts (TRL's `num_tokens`: every token a step
processed, prompt included) and the parameter counts of the run's starting model:

- the language model (everything but the audio tower): about 6 N per trained token (forward and
  backward) for SFT; for GRPO about 10 N per token (the rollout's forward, 2 N; the reference
  model's forward, 2 N; the training forward and backward, 6 N), the old-policy pass being skipped
  with one update per batch;
- with LoRA (`use_peft`), 2 N less per token: the backward still carries the activations'
  gradients through the frozen weights (2 N) but computes no gradient for them (the 2 N a full
  backward spends on weight gradients; the adapters' own few are left out): 4 N for SFT, 8 N for GRPO;
- the frozen audio tower: 2 N_tower per audio position, once per distinct training clip (its
  outputs are cached for the run: `aqa_core.tower_cache`), at `AUDIO_POSITIONS` positions a clip.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..runs import SWEEP_FILE, read_config, read_metrics, read_sweep
from .design import RUNS
from .results import convergence, run_seeds

AUDIO_POSITIONS = 150  # the mini tower's encoder positions for a 3 s clip (30 s at full scale: 1,500)
LM_FLOPS_PER_TOKEN = {"sft": 6, "grpo": 10}
LORA_SAVES_PER_TOKEN = 2  # no weight gradients for the frozen weights (per parameter and token)


def parameter_counts(model_dir: str | Path) -> dict[str, int]:
    """{"audio_tower": n, "rest": n} from a model folder's safetensors headers (no weights read)."""
    counts = {"audio_tower": 0, "rest": 0}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            size = 1
            for d in meta["shape"]:
                size *= d
            counts["audio_tower" if "audio_tower." in name else "rest"] += size
    return counts


def run_budget(run_dir: str | Path) -> dict:
    """Questions seen, steps, seconds, tokens and the FLOPs estimate of one run folder."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    rows = [r for r in read_metrics(run_dir) if not r.get("summary")]
    summary = [r for r in read_metrics(run_dir, summary=True) if r.get("summary")]
    runner = "grpo" if "num_generations" in config else "sft"
    steps = int(rows[-1]["step"]) if rows else 0
    per_step = int(config.get("per_device_train_batch_size") or 0) * int(config.get("gradient_accumulation_steps") or 1)
    if runner == "grpo":  # TRL counts completions
        per_step = per_step * int(config.get("num_processes") or 1) // max(1, int(config.get("num_generations") or 1))
    tokens = max((float(r["num_tokens"]) for r in rows if isinstance(r.get("num_tokens"), (int, float))), default=0.0)
    out = {"runner": runner, "steps": steps, "questions_per_step": per_step, "questions_seen": per_step * steps,
           "seconds": float(summary[-1]["train_runtime"]) if summary and "train_runtime" in summary[-1] else None,
           "tokens": tokens, "flops": None}
    base = Path(str(config.get("model_name_or_path", "")))
    if tokens and base.is_dir():
        params = parameter_counts(base)
        clips = min(out["questions_seen"], _train_size(config))
        per_token = LM_FLOPS_PER_TOKEN[runner] - (LORA_SAVES_PER_TOKEN if config.get("use_peft") else 0)
        out["flops"] = (per_token * params["rest"] * tokens
                        + 2 * params["audio_tower"] * AUDIO_POSITIONS * clips)
    return out


def _train_size(config: dict) -> int:
    """Questions in the run's training file (the distinct clips its tower encodes), or a large number."""
    path = Path(str(config.get("train_data", "")))
    if not path.is_file():
        return 10**12
    if path.suffix == ".jsonl":
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return len(json.loads(path.read_text(encoding="utf-8")))


def runs_table(result_dir: str | Path):  # a display.Table
    """Every run and seed of a results folder: budget and convergence (a `display.Table`, with
    glue values `budget_<row>_*` for the main seed and `runs_converged`/`runs_total`)."""
    import pandas as pd

    from .display import Table

    result_dir = Path(result_dir)
    rows, values = [], {}
    converged = total = 0
    for spec in RUNS:
        for seed, folder in run_seeds(result_dir / spec.folder):
            if not (folder / "metrics.jsonl").is_file():
                continue
            b = run_budget(folder)
            c = convergence(read_sweep(folder)) if (folder / SWEEP_FILE).is_file() else {"converged": None,
                                                                                          "reason": "no sweep"}
            total += 1
            converged += bool(c["converged"])
            rows.append({"method": spec.label, "seed": seed, "questions seen": b["questions_seen"],
                         "optimizer steps": b["steps"],
                         "seconds": f"{b['seconds']:.0f}" if b["seconds"] is not None else "",
                         "training FLOPs (est.)": f"{b['flops']:.2e}" if b["flops"] else "",
                         "converged": {True: "yes", False: "no", None: "—"}[c["converged"]],
                         "validation gain, last third (points)": (f"{c['gain']:+.1f} (SE {c['se']:.1f})"
                                                                  if c.get("gain") is not None else c["reason"])})
            if not seed:
                for k in ("questions_seen", "steps"):
                    values[f"budget_{spec.key}_{k}"] = int(b[k])
                if b["flops"]:
                    values[f"budget_{spec.key}_flops"] = float(b["flops"])
    values["runs_total"], values["runs_converged"] = total, converged
    q = {k: values.get(f"budget_{k}_questions_seen") for k in ("grpo_p2", "sft_full")}
    if q["grpo_p2"] and q["sft_full"]:
        values["budget_ratio_sft_per_grpo"] = q["sft_full"] / q["grpo_p2"]
    return Table(pd.DataFrame(rows), values=values, caption=(
        "Every run: questions seen (prompts, not completions), optimizer steps, wall seconds of training, an "
        "estimate of its training FLOPs (aqa_core.study.budget) and the analysis plan's convergence rule on its "
        "validation curve (aqa_core.study.results.convergence). aqa_core.study.budget.runs_table."))
