"""GRPO on Qwen2-Audio with the audio in every pass: the R1-AQA objective on TRL 1.16.

    python -m aqa_core grpo --recipe recipes/grpo/mini.yaml [--set key=value ...] [--output-dir D] [--resume]
    accelerate launch --config_file recipes/accelerate/zero3.yaml -m aqa_core grpo --recipe recipes/grpo/paper.yaml

The open-r1 skeleton: seed, data, model, trainer, train, save. The trainer is
`aqa_core.train.grpo_trainer.AudioGRPOTrainer` (TRL's GRPOTrainer with the audio in every pass).

The R1-AQA objective and where each part lives in TRL (`grpo_args`; tests/test_grpo.py checks it):
KL to a frozen reference, beta 0.04, k3 estimator (`beta`; TRL's KL is k3; `sync_ref_model`
False), no importance-weighted KL (`use_bias_correction_kl` False; TRL's default is True),
advantages (r - mean)/(std + 1e-4) per group of G=8 (`scale_rewards="group"`,
`num_generations`; TRL hard-codes the 1e-4; see `group_advantages`), loss averaged over each
sequence's tokens then over sequences (`loss_type="grpo"`; TRL's default "dapo" is token-level),
one update per batch (`num_iterations` 1, so the ratio is 1 and clipping never acts),
temperature 1.0 with top_k 50 (the transformers default the official code ran with; TRL's
default top_k is 0 = off).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TRAIN_AUDIO
from ..prompts import build_messages, solution_text

log = logging.getLogger(__name__)


@dataclass
class GRPORecipe:
    """Every setting of a GRPO run. Defaults are the paper's Table 1 (recipes/grpo/paper.yaml);
    TRL's field names wherever the meaning is the same."""

    # what to train on
    model_name_or_path: str = "Qwen/Qwen2-Audio-7B-Instruct"  # any Qwen2AudioForConditionalGeneration folder
    train_data: str = "data/avqa/train_r1aqa.jsonl"  # R1-AQA JSONL or MMAU JSON (aqa_core.data.load_questions)
    train_audio_dir: str | None = None  # folder the questions' audio paths are relative to
    max_train_samples: int | None = None  # first N questions only (quick runs)
    output_dir: str = "runs/grpo/paper"  # the run folder: config.yaml, metrics.jsonl, checkpoint-N/
    prompt: int = 2  # Figure 2's prompt <2> (answer only) or <3> (think, then answer)
    rewards: list[str] | None = None  # None: PROMPT_REWARDS[prompt] (accuracy + format / think_format)
    math_verify: bool = False  # the official accuracy reward's math-verify first pass (official code: on)
    # the objective (see the module docstring)
    beta: float = 0.04
    loss_type: str = "grpo"
    use_bias_correction_kl: bool = False
    scale_rewards: str = "group"
    num_iterations: int = 1
    epsilon: float = 0.2  # PPO clip; inert with num_iterations 1 (the ratio is exactly 1)
    num_generations: int = 8
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    max_completion_length: int = 512
    # optimisation
    seed: int = 42
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    max_steps: int = 500
    per_device_train_batch_size: int = 8  # completions, TRL 1.16's unit: 1 prompt x 8 generations
    gradient_accumulation_steps: int = 2
    gradient_checkpointing: bool = False  # the official launch ran without it
    freeze_audio_tower: bool = False  # the paper trains every parameter; the mini recipe keeps Whisper frozen
    share_audio_encoding: bool = True  # encode each clip once per pass, not once per generation (same numbers)
    # "silence": every training clip replaced by zeros of its length (training without listening,
    # as Omni-R1 measured; the ablation of issue #11); evaluation hears the real audio
    train_audio: str = "real"
    cache_audio_tower: bool = True  # a frozen tower encodes each clip once per run (aqa_core.tower_cache; same numbers)
    tower_cache_file: str | None = None  # a `tower-cache` store of this tower: clips it holds are never encoded
    num_processes: int | None = 8  # the world size the recipe's batch assumes (a warning if it differs)
    # LoRA (peft) instead of full fine-tuning
    use_peft: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    # a regex, or projection names inside the language model (aqa_core.train.lora.lora_targets)
    lora_target_modules: str | list[str] = (r".*language_model.*\."
                                            r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")
    # bookkeeping
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int | None = None
    # "all", or "newest": the optimizer state only in the newest complete checkpoint, weights in
    # every one (aqa_core.train.common.PruneOptimizerState; the paper recipes, to fit a disk)
    keep_optimizer_state: str = "all"
    device: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU (aqa_core.train.common.choose_precision)
    torch_threads: int | None = None  # CPU threads for torch (None: torch's default)
    # any further GRPOConfig field, checked against the class (the runner's own keys excluded)
    trl_args: dict[str, Any] = field(default_factory=dict)

    def reward_names(self) -> list[str]:
        """The reward functions summed into the GRPO reward; checked, an unknown name fails."""
        from ..config import RecipeError
        from ..rewards import PROMPT_REWARDS, get_reward_funcs

        if self.prompt not in PROMPT_REWARDS:
            raise RecipeError(f"prompt must be one of {sorted(PROMPT_REWARDS)} for GRPO, got {self.prompt!r}")
        names = list(PROMPT_REWARDS[self.prompt] if self.rewards is None else self.rewards)
        try:
            get_reward_funcs(names)
        except ValueError as exc:
            raise RecipeError(f"rewards: {exc}") from None
        return names


def check_recipe(cfg: GRPORecipe) -> None:
    """Values TRL would accept silently or reject only after the model is loaded, each named with
    its valid range (a `RecipeError`, one line at the command line). TRL's own checks (e.g. a
    batch that does not hold whole groups of `num_generations`) follow in `grpo_args`."""
    from ..config import RecipeError

    rules = [
        ("max_steps", cfg.max_steps > 0 or cfg.max_steps == -1, "> 0 (or -1: train by epochs)"),
        ("save_steps", cfg.save_steps >= 1, ">= 1"),
        ("logging_steps", cfg.logging_steps >= 1, ">= 1"),
        ("learning_rate", cfg.learning_rate > 0, "> 0"),
        ("beta", cfg.beta >= 0, ">= 0 (0: no KL term)"),
        ("temperature", cfg.temperature > 0, "> 0"),
        ("top_p", 0 < cfg.top_p <= 1, "in (0, 1]"),
        ("top_k", cfg.top_k >= 0, ">= 0"),
        ("num_generations", cfg.num_generations >= 2, ">= 2 (the advantage compares completions of one prompt)"),
        ("num_iterations", cfg.num_iterations >= 1, ">= 1"),
        ("max_completion_length", cfg.max_completion_length >= 1, ">= 1"),
        ("per_device_train_batch_size", cfg.per_device_train_batch_size >= 1, ">= 1"),
        ("gradient_accumulation_steps", cfg.gradient_accumulation_steps >= 1, ">= 1"),
        ("warmup_steps", cfg.warmup_steps >= 0, ">= 0"),
        ("max_train_samples", cfg.max_train_samples is None or cfg.max_train_samples >= 1, ">= 1 (or unset: all)"),
        ("train_audio", cfg.train_audio in TRAIN_AUDIO, f"one of {', '.join(TRAIN_AUDIO)}"),
    ]
    for key, ok, valid in rules:
        if not ok:
            raise RecipeError(f"{key} must be {valid}, got {getattr(cfg, key)!r}")
    from .common import check_keep_optimizer_state

    check_keep_optimizer_state(cfg.keep_optimizer_state)


def group_advantages(rewards, num_generations: int, eps: float = 1e-4):
    """R1-AQA's advantages: (r - mean) / (std + eps) within each group of `num_generations`
    consecutive completions of one prompt (std with Bessel's correction, as torch's `.std()`).

    >>> [round(a, 4) for a in group_advantages([1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0], 4).tolist()]
    [0.8659, -0.8659, 0.8659, -0.8659, 0.0, 0.0, 0.0, 0.0]
    """
    import torch

    r = torch.as_tensor(rewards, dtype=torch.float32).view(-1, num_generations)
    adv = (r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, keepdim=True) + eps)
    return adv.view(-1)


def grpo_args(cfg: GRPORecipe, output_dir: str | Path | None = None, precision=None):
    """The recipe as TRL's `GRPOConfig` (the one place the objective is mapped onto TRL), plus the
    recipe's `trl_args`."""
    from trl import GRPOConfig

    from .common import choose_precision, trainer_config

    precision = precision or choose_precision(cfg.device, trains_all_weights=not cfg.use_peft)
    return trainer_config(GRPOConfig, dict(
        output_dir=str(output_dir or cfg.output_dir),
        beta=cfg.beta, loss_type=cfg.loss_type, use_bias_correction_kl=cfg.use_bias_correction_kl,
        scale_rewards=cfg.scale_rewards, num_iterations=cfg.num_iterations, epsilon=cfg.epsilon,
        sync_ref_model=False, multi_objective_aggregation="sum_then_normalize", reward_weights=None,
        importance_sampling_level="token", mask_truncated_completions=False, top_entropy_quantile=1.0,
        num_generations=cfg.num_generations, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
        max_completion_length=cfg.max_completion_length,
        seed=cfg.seed, learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5's name for it
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to=[], remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=False,
        **precision.training_args(),
    ), cfg.trl_args)


def build_dataset(records: list[dict], prompt: int):
    """Rows TRL consumes: `prompt` (chat messages with the audio part), `solution`
    (`<answer>X</answer>`), `audio_path`, `id`. HF datasets will add `None` keys to the
    message parts; `AudioGRPOTrainer` strips them again (see `grpo_trainer.strip_none`)."""
    from datasets import Dataset

    return Dataset.from_list([
        {"id": str(r["id"]), "prompt": build_messages(r, prompt), "solution": solution_text(r["answer"]),
         "audio_path": str(r["audio_path"])}
        for r in records
    ])


def build_trainer(cfg: GRPORecipe, run_dir: str | Path | None = None, callbacks: list | None = None,
                  reward_funcs: list | None = None, args=None):
    """Data, model and trainer of a run, ready to `train()` (`reward_funcs` replaces the recipe's
    rewards, for tests; `args`, the run's GRPOConfig when already made). Used by `run_grpo`, the
    tests and scripts/bench_train.py."""
    from ..audio import model_window_seconds
    from ..data import load_questions
    from ..rewards import get_reward_funcs
    from .common import choose_precision, load_for_training
    from .grpo_trainer import _trainer_class
    from .lora import lora_config

    precision = choose_precision(cfg.device, trains_all_weights=not cfg.use_peft)
    args = args or grpo_args(cfg, run_dir, precision)  # before the model: under ZeRO-3 it makes from_pretrained shard
    questions = load_questions(cfg.train_data, cfg.train_audio_dir, limit=cfg.max_train_samples, check_audio=True,
                               window_seconds=model_window_seconds(cfg.model_name_or_path))
    dataset = build_dataset(questions, cfg.prompt)
    model, processor = load_for_training(cfg.model_name_or_path, precision, cfg.freeze_audio_tower, padding_side="left")
    if reward_funcs is None:
        reward_funcs = get_reward_funcs(cfg.reward_names(), math_verify=cfg.math_verify)
    return _trainer_class()(
        model=model, processing_class=processor, args=args, train_dataset=dataset,
        reward_funcs=reward_funcs, peft_config=lora_config(cfg) if cfg.use_peft else None,
        callbacks=list(callbacks or []),
        share_audio_encoding=cfg.share_audio_encoding, cache_audio_tower=cfg.cache_audio_tower,
        tower_store=cfg.tower_cache_file, silent_audio=cfg.train_audio == "silence",
    )


def run_grpo(cfg: GRPORecipe, resume: bool = False, callbacks: list | None = None, reward_funcs: list | None = None):
    """Train one GRPO run into `cfg.output_dir` (seed, data, model, trainer, train, save), the one
    process in that folder (`aqa_core.runs.run_folder_lock`; a second one refuses). `resume`
    continues from the folder's newest complete checkpoint; `callbacks` are extra TrainerCallbacks
    (tests interrupt with one); `reward_funcs` replaces the recipe's rewards. Returns the trainer,
    or None when `resume` finds the run finished (`final/` included): nothing is done then."""
    from ..runs import run_folder_lock

    check_recipe(cfg)  # fail on a bad recipe before any model work, and before the run folder
    with run_folder_lock(cfg.output_dir):
        return _run_grpo(cfg, resume, callbacks, reward_funcs)


def _run_grpo(cfg: GRPORecipe, resume: bool, callbacks: list | None, reward_funcs: list | None):
    import torch
    from transformers import set_seed

    from ..runs import checkpoint_step, is_main_process, prepare_run_dir
    from .common import (
        MetricsCallback,
        PruneOptimizerState,
        finish_from_checkpoint,
        record_run,
        resume_point,
        save_final,
    )
    from .lora import SaveMergedCallback

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    set_seed(cfg.seed)
    cfg.reward_names()
    args = grpo_args(cfg)  # checks trl_args; before the model: under ZeRO-3 it makes from_pretrained shard
    run_dir = prepare_run_dir(cfg.output_dir, cfg, resume=resume)
    checkpoint, action = resume_point(run_dir, resume, cfg.max_steps)
    if action == "nothing":
        if is_main_process():
            print(f"grpo: {run_dir} finished at step {checkpoint_step(checkpoint)} and holds final/: nothing to do")
        return None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.num_processes is not None and cfg.num_processes != world:
        log.warning("recipe assumes %d processes, running on %d: the effective batch differs from the recipe's",
                    cfg.num_processes, world)
    merged_cb = SaveMergedCallback() if cfg.use_peft else None
    extra = [MetricsCallback(run_dir), *(callbacks or []), *([merged_cb] if merged_cb else [])]
    if cfg.keep_optimizer_state == "newest":
        extra.append(PruneOptimizerState())  # last: after merged/ is written
    trainer = build_trainer(cfg, run_dir, callbacks=extra, reward_funcs=reward_funcs, args=args)
    if merged_cb:
        merged_cb.trainer = trainer
    if trainer.accelerator.is_main_process:
        print(f"grpo: {len(trainer.train_dataset)} questions, prompt <{cfg.prompt}>, rewards "
              f"{'+'.join(f.__name__ for f in trainer.reward_funcs)}, world size {trainer.accelerator.num_processes}, "
              f"{trainer.args.device.type} {'bf16' if trainer.args.bf16 else 'fp32'}, "
              f"{'LoRA' if cfg.use_peft else 'full'}")
    record_run(trainer, run_dir)
    if action == "final":  # interrupted after its last checkpoint: final/ from it, no training
        if trainer.accelerator.is_main_process:
            print(f"grpo: {checkpoint.name} ends the run's training; writing final/ from it (no training)")
        finish_from_checkpoint(trainer, checkpoint, run_dir)
        return trainer
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    save_final(trainer, run_dir)
    return trainer


def cli(argv: list[str]) -> int:
    from ..config import add_set_argument, set_overrides

    ap = argparse.ArgumentParser(prog="python -m aqa_core grpo", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True, help="YAML recipe, e.g. recipes/grpo/mini.yaml")
    add_set_argument(ap)
    ap.add_argument("--output-dir", help="run folder (overrides the recipe's output_dir)")
    ap.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    args = ap.parse_args(argv)
    from ..audio import AudioError
    from ..config import RecipeError, load_recipe
    from ..data import DataError
    from ..runs import RunDirError

    overrides = set_overrides(args)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        cfg = load_recipe(GRPORecipe, args.recipe, overrides)
        trainer = run_grpo(cfg, resume=args.resume)
    except (RecipeError, RunDirError, DataError, AudioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if trainer is not None and trainer.accelerator.is_main_process:
        print(f"GRPO done: {trainer.state.global_step} steps, run folder {cfg.output_dir}")
    from .common import release_distributed

    release_distributed(trainer)
    return 0
