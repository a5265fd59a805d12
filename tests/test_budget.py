"""What a run cost and whether it converged (aqa_core.study.budget, aqa_core.study.results.convergence),
from run folders written in the pipeline's formats."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import save_file

from aqa_core.study.budget import AUDIO_POSITIONS, parameter_counts, run_budget, runs_table
from aqa_core.study.results import convergence


def _model(folder):
    folder.mkdir(parents=True)
    save_file({"audio_tower.layers.0.weight": torch.zeros(10, 10), "language_model.embed.weight": torch.zeros(5, 4)},
              str(folder / "model.safetensors"))
    return folder


def _run(root, name, runner, steps, validation, seed=42):
    run = root / name
    run.mkdir(parents=True)
    cfg = {"model_name_or_path": str(root / "base"), "train_data": str(root / "train.jsonl"), "seed": seed,
           "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1}
    if runner == "grpo":
        cfg.update(num_generations=4, num_processes=1, prompt=2)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [{"step": s, "loss": 1.0, "num_tokens": 100.0 * s} for s in range(1, steps + 1)]
    rows.append({"step": steps, "train_runtime": 12.5, "summary": True})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "eval").mkdir()
    sweep_rows = [{"checkpoint": "base", "step": 0, "validation": 40.0, "validation_n": 400}]
    sweep_rows += [{"checkpoint": f"checkpoint-{10 * (i + 1)}", "step": 10 * (i + 1), "validation": v,
                    "validation_n": 400}
                   for i, v in enumerate(validation)]
    (run / "eval" / "sweep.json").write_text(json.dumps({"rows": sweep_rows, "selection": {}}))
    return run


def test_parameter_counts_split_the_tower_from_the_rest(tmp_path):
    assert parameter_counts(_model(tmp_path / "m")) == {"audio_tower": 100, "rest": 20}


def test_budget_counts_questions_steps_seconds_and_flops(tmp_path):
    _model(tmp_path / "base")
    (tmp_path / "train.jsonl").write_text("{}\n" * 30)
    grpo = run_budget(_run(tmp_path, "grpo-prompt2", "grpo", 12, [50] * 6))
    assert (grpo["questions_per_step"], grpo["questions_seen"], grpo["steps"], grpo["seconds"]) == (4, 48, 12, 12.5)
    # 10 N per token over the LM (N = 20) for 1,200 tokens, the tower once for each of the 30 clips
    assert grpo["flops"] == 10 * 20 * 1200 + 2 * 100 * AUDIO_POSITIONS * 30
    sft = run_budget(_run(tmp_path, "sft-full", "sft", 3, [50] * 6))
    assert sft["questions_seen"] == 48 and sft["flops"] == 6 * 20 * 300 + 2 * 100 * AUDIO_POSITIONS * 30
    lora_dir = _run(tmp_path, "sft-lora", "sft", 3, [50] * 6)
    cfg = yaml.safe_load((lora_dir / "config.yaml").read_text())
    (lora_dir / "config.yaml").write_text(yaml.safe_dump({**cfg, "use_peft": True}))
    # LoRA: no weight gradients for the frozen weights, 4 N per token in place of 6 N
    assert run_budget(lora_dir)["flops"] == 4 * 20 * 300 + 2 * 100 * AUDIO_POSITIONS * 30


@pytest.mark.parametrize("curve, converged", [((50, 60, 70, 72, 73, 73), True), ((50, 55, 60, 65, 70, 75), False),
                                               ((99.5, 100, 100, 100, 100, 100), True)])  # saturated: nothing to gain
def test_convergence_rule(curve, converged, tmp_path):
    sweep = {"rows": [{"checkpoint": f"checkpoint-{s}", "step": s, "validation": v, "validation_n": 400}
                      for s, v in zip(range(10, 70, 10), curve, strict=True)]}
    c = convergence(sweep)
    assert c["converged"] is converged and c["checkpoints"] == 6
    assert c["last_third"] == pytest.approx(sum(curve[-2:]) / 2)
    few = convergence({"rows": sweep["rows"][:5]})
    assert few["converged"] is None and "at least 6" in few["reason"]


def test_runs_table_lists_every_seed_with_its_verdict(tmp_path):
    _model(tmp_path / "base")
    (tmp_path / "train.jsonl").write_text("{}\n" * 30)
    _run(tmp_path, "grpo-prompt2", "grpo", 12, (50, 55, 60, 65, 70, 75))
    _run(tmp_path, "grpo-prompt2-seed1", "grpo", 12, (50, 60, 70, 72, 73, 73), seed=43)
    _run(tmp_path, "sft-full", "sft", 3, (50, 60, 70, 72, 73, 73))
    table = runs_table(tmp_path)
    frame = table.frame
    assert list(frame["seed"]) == [0, 0, 1] and list(frame["converged"]) == ["yes", "no", "yes"]
    assert table.values["runs_total"] == 3 and table.values["runs_converged"] == 2
    assert table.values["budget_ratio_sft_per_grpo"] == 1.0
