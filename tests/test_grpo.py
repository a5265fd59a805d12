"""The GRPO runner: the R1-AQA objective mapped onto TRL, audio in every log-prob pass, run
folders, resume, recipes and launch configs. Slow tests train a tiny random Qwen2-Audio model
(aqa_core.mini.model, tiny=True) for a few steps on a few synthetic clips, on CPU."""
from __future__ import annotations

import functools
import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from aqa_core.config import RecipeError, load_recipe
from aqa_core.runs import RunDirError, read_metrics
from aqa_core.train.common import Precision
from aqa_core.train.grpo import GRPORecipe, group_advantages, grpo_args
from aqa_core.train.grpo_trainer import strip_none

REPO = Path(__file__).resolve().parents[1]
CPU = Precision("cpu", False, "float32")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_run_inputs):
    """A tiny random Qwen2-Audio and 8 synthetic training questions with wavs (conftest)."""
    return tiny_run_inputs(tmp_path_factory.mktemp("grpo"))


def tiny_recipe(tiny, out: Path, **kw) -> GRPORecipe:
    """Few steps, 2 prompts x 4 generations per step in 2 micro-batches (gradient accumulation)."""
    base = dict(
        model_name_or_path=tiny["model"], train_data=str(tiny["data"] / "train.jsonl"),
        train_audio_dir=str(tiny["data"] / "train-audios"), output_dir=str(out), num_processes=None,
        num_generations=4, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        max_completion_length=8, max_steps=2, save_steps=2, learning_rate=1e-3, device="cpu", seed=0,
    )
    base.update(kw)
    return GRPORecipe(**base)


def length_reward(completions, **kwargs):
    """A reward that varies between completions of a random model (so advantages are non-zero)."""
    from aqa_core.rewards import completion_text

    return [float(len(completion_text(c)) % 3) for c in completions]


def _generation_batch(trainer, n_prompts: int = 2):
    """One generation batch as TRL's dataloader yields it: each prompt num_generations times."""
    rows = [trainer.train_dataset[i] for i in range(n_prompts)]
    return [dict(r) for r in rows for _ in range(trainer.num_generations)]


# ----------------------------------------------------------------------------- the objective


# TRL 1.16's own GRPOConfig default (gradient_checkpointing=True) trips transformers 5's rename warning
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_paper_recipe_maps_onto_trl_as_r1aqa():
    cfg = load_recipe(GRPORecipe, REPO / "recipes/grpo/paper.yaml")
    args = grpo_args(cfg, "/tmp/unused", CPU)
    assert args.beta == 0.04  # KL to the reference (TRL's KL term is the k3 estimator)
    assert args.loss_type == "grpo"  # per-sequence token mean, then mean over sequences
    assert args.use_bias_correction_kl is False
    assert args.scale_rewards == "group"  # (r - mean) / (std + 1e-4) within each prompt's group
    assert args.multi_objective_aggregation == "sum_then_normalize"  # reward = accuracy + format
    assert args.num_iterations == 1 and args.sync_ref_model is False  # one update, frozen reference
    # generation happens once per optimizer step, so TRL skips the old-policy pass: ratio == 1
    assert args.steps_per_generation == args.gradient_accumulation_steps == 2
    assert (args.num_generations, args.temperature, args.top_k, args.max_completion_length) == (8, 1.0, 50, 512)
    assert (args.per_device_train_batch_size, args.learning_rate, args.max_steps) == (8, 1e-6, 500)
    assert cfg.num_processes == 8 and cfg.reward_names() == ["accuracy", "format"] and not cfg.math_verify
    # and the mapping is needed: TRL 1.16's own defaults are not R1-AQA's
    from trl import GRPOConfig

    stock = GRPOConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False)
    assert (stock.beta, stock.loss_type, stock.use_bias_correction_kl, stock.top_k) == (0.0, "dapo", True, 0)


def test_official_code_and_mini_recipes():
    off = load_recipe(GRPORecipe, REPO / "recipes/grpo/official-code.yaml")
    assert (off.max_steps, off.max_completion_length, off.save_steps, off.math_verify) == (1000, 256, 100, True)
    assert (off.beta, off.loss_type, off.learning_rate) == (0.04, "grpo", 1e-6)  # inherited from paper.yaml
    mini = load_recipe(GRPORecipe, REPO / "recipes/grpo/mini.yaml", ["prompt=3"])
    assert mini.reward_names() == ["accuracy", "think_format"]
    assert mini.per_device_train_batch_size % mini.num_generations == 0 and mini.loss_type == "grpo"


def test_trl_args_pass_through_checked_against_grpo_config():
    cfg = load_recipe(GRPORecipe, REPO / "recipes/grpo/paper.yaml",
                      ["trl_args={log_completions: true, num_completions_to_print: 2}"])
    args = grpo_args(cfg, "/tmp/unused", CPU)
    assert args.log_completions is True and args.num_completions_to_print == 2
    assert args.beta == 0.04  # the recipe's own mapping is untouched
    bad = load_recipe(GRPORecipe, REPO / "recipes/grpo/paper.yaml", ["trl_args={log_completion: true}"])
    with pytest.raises(RecipeError, match=r"'log_completion' is not a GRPOConfig field "
                                          r"\(did you mean log_completions.*valid fields: .*beta"):
        grpo_args(bad, "/tmp/unused", CPU)
    mapped = load_recipe(GRPORecipe, REPO / "recipes/grpo/paper.yaml", ["trl_args={beta: 0.1}"])
    with pytest.raises(RecipeError, match="'beta' is set by the runner from the recipe"):
        grpo_args(mapped, "/tmp/unused", CPU)
    bad_value = load_recipe(GRPORecipe, REPO / "recipes/grpo/paper.yaml", ["trl_args={logging_strategy: hourly}"])
    with pytest.raises(RecipeError, match="GRPOConfig rejected the recipe: .*hourly"):
        grpo_args(bad_value, "/tmp/unused", CPU)


def test_bad_trl_args_fail_before_the_run_folder_is_written(tmp_path):
    from aqa_core.train.grpo import run_grpo

    cfg = GRPORecipe(output_dir=str(tmp_path / "run"), device="cpu", num_processes=None, trl_args={"nope": 1})
    with pytest.raises(RecipeError, match="'nope' is not a GRPOConfig field"):
        run_grpo(cfg)
    assert not (tmp_path / "run").exists()


def test_group_advantages_on_a_reward_table():
    rewards = [1, 0, 0, 0,   2, 2, 2, 2,   2, 1, 1, 0]  # three groups of G=4
    adv = group_advantages(rewards, 4).tolist()
    # group 1: mean 0.25, sample std 0.5; group 2: std 0 -> 0 (the 1e-4 keeps it finite);
    # group 3: mean 1, sample std sqrt(2/3)
    expected = [0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, 0, 0, 0, 0,
                1 / (math.sqrt(2 / 3) + 1e-4), 0, 0, -1 / (math.sqrt(2 / 3) + 1e-4)]
    assert adv == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_trl_advantages_are_r1aqa_group_advantages(tiny, tmp_path):
    from aqa_core.train.grpo import build_trainer

    trainer = build_trainer(tiny_recipe(tiny, tmp_path), reward_funcs=[length_reward])
    trainer._generate_and_score_completions(_generation_batch(trainer))
    rewards = list(trainer._logs["rewards"]["length_reward"])
    assert len(set(rewards)) > 1, "the test needs rewards that differ within a group"
    assert list(trainer._logs["advantages"]) == pytest.approx(group_advantages(rewards, 4).tolist(), abs=1e-5)


@pytest.mark.slow
def test_silent_training_audio_feeds_zeros_to_every_pass(tiny, tmp_path):
    """train_audio: silence (the no-listening ablation): every prompt's features are those of zeros."""
    import torch

    from aqa_core.train.grpo import build_trainer

    out = {}
    for mode in ("real", "silence"):
        trainer = build_trainer(tiny_recipe(tiny, tmp_path / mode, train_audio=mode), reward_funcs=[length_reward])
        out[mode] = trainer._generate_and_score_completions(_generation_batch(trainer))["input_features"]
    silent, real = out["silence"], out["real"]
    assert all(torch.equal(row, silent[0]) for row in silent)  # equal-length clips: all the same zeros
    assert not torch.equal(silent, real) and real.shape == silent.shape


# ----------------------------------------------------------------------------- audio in every pass


def _logps(trainer, model, batch, features):
    """Per-token log-probs of the batch's completions, as the loss and reference passes compute them."""
    import torch

    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    trainer._audio = {"input_features": features, "feature_attention_mask": batch["feature_attention_mask"]}
    try:
        with torch.no_grad():
            logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, batch["completion_ids"].size(1))
    finally:
        trainer._audio = None
    return logps * batch["completion_mask"]


@pytest.mark.slow
@pytest.mark.parametrize("use_peft", [False, True], ids=["full", "lora"])
def test_audio_reaches_generation_reference_and_loss(tiny, tmp_path, use_peft):
    import torch

    from aqa_core.train.grpo import build_trainer

    trainer = build_trainer(tiny_recipe(tiny, tmp_path, use_peft=use_peft), reward_funcs=[length_reward])
    policy = trainer.model
    calls = []  # (pass, rows of input_ids, rows of input_features or None)

    def spy(module, name):
        inner = module.forward

        @functools.wraps(inner)  # generate() checks its kwargs against forward's signature
        def forward(*args, **kwargs):
            feats = kwargs.get("input_features")
            ids = kwargs.get("input_ids", args[0] if args else None)
            calls.append((name, kwargs.get("fused_lm_head", False), None if ids is None else ids.shape[0],
                          None if feats is None else feats.shape[0]))
            return inner(*args, **kwargs)

        module.forward = forward

    base = policy.get_base_model() if use_peft else policy
    spy(base, "policy")
    if trainer.ref_model is not None:
        spy(trainer.ref_model, "ref")
    trainer.train()  # 2 optimizer steps x 2 micro-batches, reference pass each generation batch

    logp_calls = [c for c in calls if c[1]]
    gen_calls = [c for c in calls if not c[1]]
    assert all(rows == feats for _, _, rows, feats in logp_calls), logp_calls  # every log-prob pass had audio
    # loss: 2 steps x 2 micro-batches of 4; reference: 2 generation batches of 8 in chunks of 4
    # (with LoRA the reference is the policy with its adapter disabled)
    n_policy = sum(1 for c in logp_calls if c[0] == "policy")
    n_ref = sum(1 for c in logp_calls if c[0] == "ref")
    assert (n_policy, n_ref) == ((8, 0) if use_peft else (4, 4))
    assert gen_calls and gen_calls[0][3] is not None  # generation's prefill saw the audio too

    # The log-probs the loss and reference use change when the audio changes, all else fixed.
    batch = trainer._generate_and_score_completions(_generation_batch(trainer))
    real, zero = batch["input_features"], torch.zeros_like(batch["input_features"])
    assert (_logps(trainer, policy, batch, real) - _logps(trainer, policy, batch, zero)).abs().max() > 1e-4
    if trainer.ref_model is not None:
        ref = trainer.ref_model
        assert (_logps(trainer, ref, batch, real) - _logps(trainer, ref, batch, zero)).abs().max() > 1e-4
    # ... and so does the loss itself (through the KL term; the ratio is 1 at one update per batch)
    loss_real = trainer._compute_loss(policy, batch).item()
    loss_zero = trainer._compute_loss(policy, {**batch, "input_features": zero}).item()
    assert loss_real != pytest.approx(loss_zero, abs=1e-7)


@pytest.mark.slow
def test_stock_trl_grpo_loss_ignores_the_audio(tiny, tmp_path):
    """Documents the bug the subclass fixes: given the very same batch, features included,
    TRL 1.16's GRPOTrainer computes the same loss whatever the audio is."""
    import torch
    from trl import GRPOTrainer

    from aqa_core.train.grpo import build_trainer

    ours = build_trainer(tiny_recipe(tiny, tmp_path / "ours"), reward_funcs=[length_reward])
    batch = ours._generate_and_score_completions(_generation_batch(ours))
    zero = {**batch, "input_features": torch.zeros_like(batch["input_features"])}
    model = ours.model
    model.config.image_token_id = model.config.audio_token_id  # stock TRL needs it to start at all
    try:
        stock = GRPOTrainer(model=model, processing_class=ours.processing_class, reward_funcs=[length_reward],
                            args=grpo_args(tiny_recipe(tiny, tmp_path / "stock"), tmp_path / "stock", CPU),
                            train_dataset=ours.train_dataset)
    finally:
        del model.config.image_token_id
    stock.ref_model = ours.ref_model  # same reference log-probs in both
    assert stock._compute_loss(model, batch).item() == pytest.approx(stock._compute_loss(model, zero).item(), abs=0)
    assert ours._compute_loss(model, batch).item() != pytest.approx(ours._compute_loss(model, zero).item(), abs=1e-7)


@pytest.mark.slow
def test_shared_audio_encoding_is_exact_and_encodes_each_clip_once(tiny):
    import torch
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from aqa_core.audio import load_audio
    from aqa_core.audio_tower import audio_tower
    from aqa_core.data import load_avqa_jsonl
    from aqa_core.prompts import build_messages
    from aqa_core.train.grpo_trainer import share_audio_encoding

    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny["model"]).eval()
    processor = AutoProcessor.from_pretrained(tiny["model"], padding_side="left")
    records = load_avqa_jsonl(tiny["data"] / "train.jsonl", tiny["data"] / "train-audios")[:2] * 3  # 2 clips x 3
    texts = [processor.apply_chat_template(build_messages(r, 2), add_generation_prompt=True, tokenize=False)
             for r in records]
    enc = processor(text=texts, audio=[load_audio(r["audio_path"]) for r in records], sampling_rate=16000,
                    return_tensors="pt", padding=True)
    with torch.no_grad():
        plain = model(**enc).logits
    rows = []
    audio_tower(model).conv1.register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape[0]))
    share_audio_encoding(model)
    with torch.no_grad():
        shared = model(**enc).logits
    assert rows == [2]  # each distinct clip encoded once
    assert torch.allclose(plain, shared, atol=1e-5)


def test_strip_none_restores_the_chat_template_input():
    from datasets import Dataset

    from aqa_core.prompts import build_messages

    msgs = build_messages({"question": "Q?", "choices": ["a", "b"], "audio_path": "x.wav"}, 2)
    unified = Dataset.from_list([{"prompt": msgs}])[0]["prompt"]
    assert any(None in part.values() for part in unified[0]["content"])  # what HF datasets does
    assert strip_none(unified) == msgs


# ----------------------------------------------------------------------------- runs


@pytest.mark.slow
def test_run_writes_config_metrics_checkpoints_and_final(tiny, tmp_path):
    from transformers import Qwen2AudioForConditionalGeneration

    from aqa_core.train.grpo import run_grpo

    cfg = tiny_recipe(tiny, tmp_path / "run", max_steps=2, save_steps=1)
    trainer = run_grpo(cfg)
    run = Path(cfg.output_dir)
    assert trainer.state.global_step == 2
    saved = load_recipe(GRPORecipe, run / "config.yaml")
    assert saved == cfg
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("loss", "reward", "reward_std", "rewards/accuracy_reward/mean", "rewards/format_reward/mean",
                "kl", "completions/mean_length", "learning_rate", "timing/generation_s", "step_time"):
        assert all(isinstance(r[key], float) and math.isfinite(r[key]) for r in rows), key
    assert all(0.0 <= r["reward"] <= 2.0 for r in rows)
    assert (run / "checkpoint-1").is_dir() and (run / "checkpoint-2").is_dir()
    Qwen2AudioForConditionalGeneration.from_pretrained(run / "final")
    # the effective trainer arguments and the provenance sit beside config.yaml
    args = json.loads((run / "trainer_args.json").read_text())
    assert (args["beta"], args["loss_type"], args["num_generations"], args["max_steps"]) == (0.04, "grpo", 4, 2)
    [launch] = json.loads((run / "provenance.json").read_text())["launches"]
    assert launch["packages"]["trl"] == "1.16.0" and launch["world_size"] == 1 and launch["command"]
    assert launch["git"] is None or len(launch["git"]["commit"]) == 40
    with pytest.raises(RunDirError, match="--resume"):
        run_grpo(cfg)  # an existing run is never overwritten silently


@pytest.mark.slow
def test_lora_run_writes_merged_checkpoints(tiny, tmp_path):
    import torch
    from transformers import Qwen2AudioForConditionalGeneration

    from aqa_core.train.grpo import run_grpo

    cfg = tiny_recipe(tiny, tmp_path / "lora", use_peft=True, max_steps=1, save_steps=1,
                      gradient_accumulation_steps=1, per_device_train_batch_size=8)
    run_grpo(cfg, reward_funcs=[length_reward])
    run = Path(cfg.output_dir)
    assert (run / "checkpoint-1" / "adapter_config.json").is_file()  # what --resume reads
    assert (run / "final" / "adapter" / "adapter_config.json").is_file()
    base = Qwen2AudioForConditionalGeneration.from_pretrained(tiny["model"]).state_dict()
    for folder in (run / "checkpoint-1" / "merged", run / "final"):
        merged = Qwen2AudioForConditionalGeneration.from_pretrained(folder).state_dict()
        assert merged.keys() == base.keys()
        changed = [k for k in base if not torch.equal(base[k], merged[k])]
        assert changed and all("language_model" in k and "proj" in k for k in changed), changed[:3]


@pytest.mark.slow
def test_resume_continues_step_count_and_data_order(tiny, tmp_path):
    from transformers import TrainerCallback

    from aqa_core.train.grpo import run_grpo

    class StopAfter(TrainerCallback):
        def __init__(self, step):
            self.step = step

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= self.step:
                control.should_training_stop = True

    kw = dict(max_steps=4, save_steps=2)
    full = run_grpo(tiny_recipe(tiny, tmp_path / "full", **kw), reward_funcs=[length_reward])
    first = run_grpo(tiny_recipe(tiny, tmp_path / "cut", **kw), reward_funcs=[length_reward],
                     callbacks=[StopAfter(2)])
    assert first.state.global_step == 2
    second = run_grpo(tiny_recipe(tiny, tmp_path / "cut", **kw), reward_funcs=[length_reward], resume=True)
    assert second.state.global_step == 4
    order = lambda trainer: [ids for _, ids in trainer.seen_prompt_ids]  # noqa: E731
    assert order(first) + order(second) == order(full)
    assert [s for s, _ in second.seen_prompt_ids] == [2, 3]
    cut, ref = read_metrics(tmp_path / "cut"), read_metrics(tmp_path / "full")
    assert [r["step"] for r in cut] == [1, 2, 3, 4]
    # the weights, optimizer and sampling RNG came back too: steps 3-4 repeat the uninterrupted run
    # (a resume that restarted from the base weights shows kl 0 at step 3)
    assert ref[2]["kl"] > 0
    for key in ("kl", "loss", "reward", "grad_norm", "completions/mean_length"):
        assert [r[key] for r in cut[2:]] == pytest.approx([r[key] for r in ref[2:]], rel=1e-4, abs=1e-7), key
    with pytest.raises(RunDirError, match="learning_rate"):
        run_grpo(tiny_recipe(tiny, tmp_path / "cut", learning_rate=1.0, **kw), resume=True)
    # --resume on the finished run trains nothing (it once trained past max_steps and replaced final/)
    stamp = (tmp_path / "cut" / "final" / "model.safetensors").stat().st_mtime_ns
    assert run_grpo(tiny_recipe(tiny, tmp_path / "cut", **kw), reward_funcs=[length_reward], resume=True) is None
    assert (tmp_path / "cut" / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    assert [r["step"] for r in read_metrics(tmp_path / "cut")] == [1, 2, 3, 4]
    assert not (tmp_path / "cut" / "checkpoint-6").exists()


# ----------------------------------------------------------------------------- recipes, CLI, launch


def test_recipe_errors_name_the_valid_keys(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown key 'lr'.*valid keys: .*learning_rate"):
        load_recipe(GRPORecipe, REPO / "recipes/grpo/paper.yaml", ["lr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("_base: " + str(REPO / "recipes/grpo/paper.yaml") + "\nnum_generation: 4\n")
    with pytest.raises(RecipeError, match="num_generation'.*num_generations"):
        load_recipe(GRPORecipe, bad)
    with pytest.raises(RecipeError, match="prompt must be one of"):
        replace(GRPORecipe(), prompt=1).reward_names()
    with pytest.raises(RecipeError, match="unknown reward 'acc'"):
        replace(GRPORecipe(), rewards=["acc"]).reward_names()
    with pytest.raises(RecipeError, match="must be a number"):
        load_recipe(GRPORecipe, None, ["beta=high"])
    from aqa_core.train.grpo import check_recipe

    with pytest.raises(RecipeError, match="train_audio must be one of real, silence"):
        check_recipe(replace(GRPORecipe(), train_audio="noise"))


def test_cli_reports_recipe_errors(capsys):
    from aqa_core.train.grpo import cli

    assert cli(["--recipe", str(REPO / "recipes/grpo/mini.yaml"), "--set", "temperatur=1"]) == 2
    assert "valid keys" in capsys.readouterr().err


#: "auto" values that transformers' HfTrainerDeepSpeedConfig fills from the TrainingArguments
#: and the model (transformers/integrations/deepspeed.py, trainer_config_process/finalize).
HF_FILLED_AUTO = {
    "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "gradient_clipping",
    "bf16.enabled", "fp16.enabled", "zero_optimization.reduce_bucket_size",
    "zero_optimization.stage3_prefetch_bucket_size", "zero_optimization.stage3_param_persistence_threshold",
}


def _auto_keys(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _auto_keys(v, f"{prefix}{k}.")
        elif v == "auto":
            yield prefix + k


@pytest.mark.parametrize("name,offload", [("zero3", False), ("zero3-offload", True)])
def test_zero3_configs_load(name, offload):
    """DeepSpeed cannot run here; accelerate parses the launch config and the DeepSpeed JSON."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    launch = load_config_from_file(str(REPO / f"recipes/accelerate/{name}.yaml"))
    assert launch.distributed_type == DistributedType.DEEPSPEED and launch.num_processes == 8
    ds_file = REPO / launch.deepspeed_config["deepspeed_config_file"]  # relative to the repository root
    plugin = DeepSpeedPlugin(hf_ds_config=str(ds_file), zero3_init_flag=launch.deepspeed_config["zero3_init_flag"])
    assert plugin.zero_stage == 3 and plugin.hf_ds_config.is_zero3()
    assert plugin.hf_ds_config.is_offload() is offload
    ds = json.loads(ds_file.read_text())
    assert set(_auto_keys(ds)) <= HF_FILLED_AUTO
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True  # loadable checkpoints


@pytest.mark.slow
def test_cli_under_accelerate_on_two_cpu_processes(tiny, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    sets = [f"model_name_or_path={tiny['model']}", f"train_data={tiny['data'] / 'train.jsonl'}",
            f"train_audio_dir={tiny['data'] / 'train-audios'}", "num_processes=2", "max_steps=2", "save_steps=2",
            "per_device_train_batch_size=4", "num_generations=4", "max_completion_length=8", "torch_threads=1"]
    with socket.socket() as sock:  # a free rendezvous port: other launches may run at the same time
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "recipes/accelerate/cpu-2proc.yaml"), "--main_process_port", str(port), "-m", "aqa_core", "grpo",
           "--recipe", str(REPO / "recipes/grpo/mini.yaml"), "--output-dir", str(out), "--set", *sets]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stdout and "GRPO done: 2 steps" in proc.stdout
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    # per step: 2 processes x 4 completions = 8 completions = 2 prompts x 4, rewards gathered across ranks
    assert all(math.isfinite(r["reward"]) for r in rows)
    assert (out / "checkpoint-2").is_dir() and (out / "final" / "config.json").is_file()
    assert load_recipe(GRPORecipe, out / "config.yaml").num_processes == 2
