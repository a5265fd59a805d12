"""`python -m aqa_core preflight`: the real 7B architecture on the meta device, the estimate's
arithmetic, the data read through the one audio check, and the checks' exit code."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aqa_core.train.preflight import DataProfile, book_values, estimate, load_any_recipe, model_shape, recipe_estimate

REPO = Path(__file__).resolve().parents[1]


def test_published_7b_config_builds_on_the_meta_device_with_exact_counts():
    shape = model_shape(None)
    assert shape.params == 8_397_094_912 and shape.tower == 636_968_960  # 8.40B, the paper says 8.2B
    assert (shape.hidden, shape.layers, shape.vocab, shape.enc_positions) == (4096, 32, 156_032, 1500)
    lora = model_shape(None, r".*\blanguage_model\..*\.(?:q_proj|v_proj)", 16)
    # 32 layers x (q: 16 x (4096 + 4096) + v: 16 x (4096 + 4096)); the encoder's q/v are not targets
    assert lora.lora == 32 * 2 * 16 * (4096 + 4096)


def test_paper_grpo_estimate_terms_add_up_and_offload_moves_the_states():
    est = recipe_estimate(REPO / "recipes/grpo/paper.yaml")
    m, d = est["memory_gb"], est["disk_gb"]
    assert est["world"] == 8 and est["steps"] == 500 and est["questions_seen"] == 8000  # the paper's 8k prompts
    assert m["model_states"] == pytest.approx(16 * est["parameters"] / 8 / 1e9)  # 2 + 2 + 12 B, sharded
    assert m["peak"] == max(m["training_peak"], m["generation_peak"]) and 50 < m["peak"] < 80
    assert m["offload_peak"] == pytest.approx(m["peak"] - m["model_states"] - m["reference"])
    # disk: 5 checkpoints of weights, one optimizer state (keep_optimizer_state: newest), final
    assert d["checkpoints"] == 5
    assert d["run_total"] == pytest.approx(5 * d["checkpoint_weights_only"]
                                           + (d["checkpoint_with_optimizer"] - d["checkpoint_weights_only"])
                                           + d["final"])
    lo, hi = est["time"]["official_step_seconds"]
    assert (lo, hi) == (14.4, 18.0)


def test_keeping_every_optimizer_state_costs_more_disk_and_lora_trains_little():
    recipe = load_any_recipe(REPO / "recipes/sft/paper-full.yaml", ["keep_optimizer_state=all"])
    shape = model_shape(None)
    data = DataProfile(38_000, 10.0, 100, assumed=True)
    every = estimate(recipe, shape, data)["disk_gb"]["run_total"]
    newest = recipe_estimate(REPO / "recipes/sft/paper-full.yaml")["disk_gb"]["run_total"]
    assert every > 3 * newest
    lora = recipe_estimate(REPO / "recipes/sft/paper-lora.yaml")
    assert lora["trained_parameters"] < 0.01 * lora["parameters"] and lora["memory_gb"]["reference"] == 0


def test_one_process_without_deepspeed_gathers_nothing():
    recipe = load_any_recipe(REPO / "recipes/grpo/paper.yaml", ["use_peft=true", "num_processes=1"])
    shape = model_shape(None, r".*\blanguage_model\..*\.(?:q_proj|v_proj)", 8)
    data = DataProfile(100, 30.0, 70, assumed=False)
    zero3, plain = (estimate(recipe, shape, data, world=1, zero3=z)["memory_gb"] for z in (True, False))
    assert plain["live_gathered"] == 0 and plain["generation_gathered"] == 0 and plain["reference"] == 0
    assert plain["weights"] == pytest.approx(2 * shape.params / 1e9)  # whole bf16 weights on the one GPU
    assert zero3["generation_peak"] - plain["generation_peak"] == pytest.approx(zero3["generation_gathered"])


def test_an_sft_recipe_with_a_prompt_is_read_as_sft(tmp_path):
    recipe = tmp_path / "sft-p2.yaml"
    recipe.write_text(f"_base: {REPO / 'recipes/sft/mini-full.yaml'}\nprompt: 2\nsft_tagged: true\n")
    assert type(load_any_recipe(recipe)).__name__ == "SFTRecipe"
    assert type(load_any_recipe(REPO / "recipes/grpo/mini.yaml")).__name__ == "GRPORecipe"


def test_book_values_are_the_preflight_figures():
    values = book_values(REPO)
    est = recipe_estimate(REPO / "recipes/grpo/paper.yaml")
    assert values["zero3_train_peak_gb"] == pytest.approx(est["memory_gb"]["training_peak"])
    # 18.9 is not the need (docs/full_scale_estimate.md)
    assert values["zero3_static_gb"] < values["zero3_train_peak_gb"]
    assert {"sft_full_disk_run_gb", "sft_lora_disk_run_gb", "official_disk_run_gb"} <= set(values)


def _preflight(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aqa_core", "preflight", "--quiet", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_reads_the_data_and_fails_a_check_on_a_broken_wav(tmp_path, tiny_run_inputs):
    tiny = tiny_run_inputs(tmp_path / "tiny")
    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    sets = ["--set", f"model_name_or_path={tiny['model']}", f"train_data={data / 'train.jsonl'}",
            f"train_audio_dir={data / 'train-audios'}", f"output_dir={tmp_path / 'run'}"]
    ok = _preflight("--recipe", "recipes/grpo/paper.yaml", *sets, "--json", str(tmp_path / "pf.json"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "8 questions, 8 clips decoded" in ok.stdout and "[ok] every wav decodes" in ok.stdout
    result = json.loads((tmp_path / "pf.json").read_text())
    assert result["shape"]["source"].endswith("config.json") and result["data"]["assumed"] is False
    # the tiny model's clips are 3 s: 75 audio tokens
    assert result["estimate"]["prompt_tokens"] > 75

    wavs = sorted((data / "train-audios").glob("*.wav"))
    wavs[0].write_bytes(b"not a wav")
    sf.write(wavs[1], np.full(16000 * 31, 0.1, dtype=np.float32), 16000)  # longer than the 30 s window
    bad = _preflight("--recipe", "recipes/grpo/paper.yaml", *sets, "--world-size", "4")
    assert bad.returncode == 1
    assert "[!!] every wav decodes: 1 unusable" in bad.stdout
    assert "[!!] clips within the 30 s window: 1 longer" in bad.stdout
    assert "[!!] world size matches the recipe: recipe num_processes 8, preflight for 4" in bad.stdout


def test_cli_missing_recipe_is_one_line():
    proc = _preflight("--recipe", "recipes/grpo/nope.yaml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
