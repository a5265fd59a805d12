"""Supervised fine-tuning with prompt <1> (or, for the prompt-confound ablation, <2>), full or LoRA, on
TRL's `SFTTrainer`.

    python -m aqa_core sft --recipe recipes/sft/mini-full.yaml [--set key=value ...] [--output-dir D] [--resume]
    accelerate launch --config_file recipes/accelerate/zero3.yaml -m aqa_core sft --recipe recipes/sft/paper-full.yaml

The open-r1 skeleton: seed, data, model, trainer, train, save. TRL 1.16 has no audio path, so
`SFTCollator` runs the audio processor and labels only the answer tokens (the dataset reaches
it untouched: `remove_unused_columns=False`, `skip_prepare_dataset`). The run folder holds
`config.yaml`, `metrics.jsonl`, `checkpoint-N/` and `final/`. A LoRA run's `checkpoint-N/`
holds the adapter (what `--resume` reads) and `checkpoint-N/merged/`, a plain model folder;
`final/` is always a plain model folder (`final/adapter/` keeps a LoRA run's adapter);
`aqa_core.runs.model_dir(path)` maps any of these to the folder `from_pretrained` should read.
`--resume` continues the step count, data order, optimizer and RNG state of the last checkpoint
(with a fix for transformers 5.23, whose Trainer would resume a full run from the initial weights).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import TRAIN_AUDIO, RecipeError, add_set_argument, load_recipe, set_overrides
from .lora import LM_PROJECTIONS


@dataclass
class SFTRecipe:
    """An SFT run. Names are TRL's/transformers' where the meaning is the same; the defaults
    are the paper's (Section 4: batch 4 per device, accumulation 1, AdamW lr 5e-6, 4 epochs,
    a checkpoint every 200 steps) where it states them."""

    # model and data
    model_name_or_path: str = "Qwen/Qwen2-Audio-7B-Instruct"
    train_data: str = ""  # R1-AQA JSONL (.jsonl, AVQA form) or MMAU-schema JSON (.json)
    train_audio_dir: str | None = None  # folder the records' audio paths are relative to
    max_train_samples: int | None = None  # keep the first N questions (tests, quick looks)
    output_dir: str = "runs/sft"
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU (common.choose_precision)
    torch_threads: int | None = None  # CPU threads for torch (None: torch's default)
    sft_tagged: bool = False  # target `<answer>X</answer>` instead of `X` (prompts.sft_target)
    # 1: the paper's SFT prompt; 2: GRPO's prompt <2>, which asks for <answer> tags (so sft_tagged
    # true), for the prompt-confound ablation (the sweep then evaluates with <2> too)
    prompt: int = 1
    train_audio: str = "real"  # "silence": every training clip replaced by zeros (training without listening)
    freeze_audio_tower: bool = False  # full SFT trains everything, as the paper's "full fine-tuning"
    cache_audio_tower: bool = True  # a frozen tower encodes each clip once per run (aqa_core.tower_cache; same numbers)
    tower_cache_file: str | None = None  # a `tower-cache` store of this tower: clips it holds are never encoded
    max_length: int | None = None  # cut longer sequences (never inside the audio tokens)
    # MiB of encoded examples (mel features, token ids) kept per process and replayed in later
    # epochs: the same tensors, without rerunning the processor (SFTCollator; 0: encode every time)
    collate_cache_mb: int = 1024
    # optimisation (TRL / transformers TrainingArguments names)
    learning_rate: float = 5e-6
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 4.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    optim: str = "adamw_torch"
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0  # fraction of the steps; transformers 5 takes it as warmup_steps < 1
    gradient_checkpointing: bool = False
    seed: int = 42
    # bookkeeping
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int | None = None
    # "all", or "newest": the optimizer state only in the newest complete checkpoint, weights in
    # every one (aqa_core.train.common.PruneOptimizerState; the paper recipes, to fit a disk)
    keep_optimizer_state: str = "all"
    dataloader_num_workers: int = 0
    save_final: bool = True  # write `final/` (a plain model folder) after training
    # LoRA (PEFT)
    use_peft: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # projection names inside the language model, or a regex (aqa_core.train.lora.lora_targets)
    lora_target_modules: str | list[str] = field(default_factory=lambda: list(LM_PROJECTIONS))
    save_merged: bool = True  # LoRA: also write checkpoint-N/merged (a plain model) at each save
    # any further SFTConfig field, checked against the class (the runner's own keys excluded)
    trl_args: dict[str, Any] = field(default_factory=dict)


def check_recipe(cfg: SFTRecipe) -> None:
    """Errors a recipe can have that types alone do not catch, named by key."""
    if not cfg.train_data:
        raise RecipeError("train_data is empty: set it in the recipe or with --set train_data=PATH")
    if cfg.prompt not in (1, 2):
        raise RecipeError("prompt must be 1 (the paper's SFT prompt) or 2 (GRPO's, with sft_tagged: true), "
                          f"got {cfg.prompt!r}")
    if cfg.prompt == 2 and not cfg.sft_tagged:
        raise RecipeError("prompt 2 asks for the answer in <answer> </answer>: "
                          "set sft_tagged: true to train that target")
    if cfg.train_audio not in TRAIN_AUDIO:
        raise RecipeError(f"train_audio must be {' or '.join(TRAIN_AUDIO)}, got {cfg.train_audio!r}")
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        raise RecipeError(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    if cfg.max_steps <= 0 and cfg.num_train_epochs <= 0:
        raise RecipeError("set max_steps > 0 or num_train_epochs > 0")
    if cfg.learning_rate <= 0:
        raise RecipeError(f"learning_rate must be > 0, got {cfg.learning_rate!r}")
    if cfg.collate_cache_mb < 0:
        raise RecipeError(f"collate_cache_mb must be >= 0 (0: no cache), got {cfg.collate_cache_mb!r}")
    if cfg.max_train_samples is not None and cfg.max_train_samples < 1:
        raise RecipeError(f"max_train_samples must be >= 1 (or unset: all), got {cfg.max_train_samples!r}")
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps"):
        if getattr(cfg, key) < 1:
            raise RecipeError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.use_peft and (cfg.lora_r < 1 or not cfg.lora_target_modules):
        raise RecipeError("LoRA needs lora_r >= 1 and a non-empty lora_target_modules")
    from .common import check_keep_optimizer_state

    check_keep_optimizer_state(cfg.keep_optimizer_state)


# ----------------------------------------------------------------------------- data


def to_dataset(records: list[dict]):
    """A `datasets.Dataset` (what SFTTrainer requires) of the fields the collator reads; the
    other source fields are dropped because their types vary between records (MMAU's category)."""
    from datasets import Dataset

    keep = ("id", "question", "choices", "answer", "audio_path")
    return Dataset.from_list([{k: r[k] for k in keep} for r in records])


# ----------------------------------------------------------------------------- run


def _trainer_class():
    """TRL's SFTTrainer with one fix, shared with GRPO: resuming a full (non-PEFT) run really
    loads the checkpoint's weights (see `aqa_core.train.common.PretrainedResumeMixin`)."""
    from trl import SFTTrainer

    from .common import PretrainedResumeMixin

    class AudioSFTTrainer(PretrainedResumeMixin, SFTTrainer):
        pass

    return AudioSFTTrainer


def sft_config(cfg: SFTRecipe, precision) -> Any:
    """TRL's SFTConfig for a recipe (data untouched for the audio collator, no hub, no reports),
    plus the recipe's `trl_args`."""
    from trl import SFTConfig

    from .common import trainer_config

    return trainer_config(SFTConfig, dict(
        output_dir=cfg.output_dir,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        optim=cfg.optim,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # < 1 means a ratio in transformers 5
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5's name for it
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        dataloader_num_workers=cfg.dataloader_num_workers,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,  # the collator cuts (TRL's truncation would not know the audio tokens)
        report_to="none",
        **precision.training_args(),
    ), cfg.trl_args)


def run_sft(cfg: SFTRecipe, resume: bool = False, callbacks: list | None = None) -> dict:
    """Train one SFT run into `cfg.output_dir`, the one process in that folder
    (`aqa_core.runs.run_folder_lock`; a second one refuses); returns the trainer's train metrics
    plus `seconds_per_step` (or `nothing_to_do` / `final_from_checkpoint` when `resume` finds
    training over). `callbacks` are extra `TrainerCallback`s (tests use one to interrupt)."""
    from ..runs import run_folder_lock

    check_recipe(cfg)  # a bad recipe fails before the run folder exists
    with run_folder_lock(cfg.output_dir):
        return _run_sft(cfg, resume, callbacks)


def _run_sft(cfg: SFTRecipe, resume: bool, callbacks: list | None) -> dict:
    from transformers import set_seed

    from ..audio import model_window_seconds
    from ..data import load_questions
    from ..runs import checkpoint_step, is_main_process, prepare_run_dir
    from ..tower_cache import cache_frozen_tower
    from .collate import SFTCollator
    from .common import (
        MetricsCallback,
        PruneOptimizerState,
        choose_precision,
        finish_from_checkpoint,
        load_for_training,
        parameter_count,
        record_run,
        release_distributed,
        resume_point,
        save_final,
    )
    from .lora import SaveMergedCallback, lora_config

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    precision = choose_precision(cfg.device, trains_all_weights=not cfg.use_peft)
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    args = sft_config(cfg, precision)  # checks trl_args; before the model: under ZeRO-3 it makes from_pretrained shard
    run_dir = prepare_run_dir(cfg.output_dir, cfg, resume=resume)
    checkpoint, action = resume_point(run_dir, resume, cfg.max_steps)
    if action == "nothing":
        if is_main_process():
            print(f"sft: {run_dir} finished at step {checkpoint_step(checkpoint)} and holds final/: nothing to do")
        return {"global_step": checkpoint_step(checkpoint), "nothing_to_do": True}
    set_seed(cfg.seed)

    dataset = to_dataset(load_questions(cfg.train_data, cfg.train_audio_dir, limit=cfg.max_train_samples,
                                        check_audio=True, window_seconds=model_window_seconds(cfg.model_name_or_path)))
    model, processor = load_for_training(cfg.model_name_or_path, precision, cfg.freeze_audio_tower)

    merged_cb = SaveMergedCallback() if cfg.use_peft and cfg.save_merged else None
    extra = [MetricsCallback(run_dir), *(callbacks or []), *([merged_cb] if merged_cb else [])]
    if cfg.keep_optimizer_state == "newest":
        extra.append(PruneOptimizerState())  # last: after merged/ is written
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        data_collator=SFTCollator(processor, prompt=cfg.prompt, tagged=cfg.sft_tagged, max_length=cfg.max_length,
                                  silence=cfg.train_audio == "silence", cache_bytes=cfg.collate_cache_mb << 20),
        peft_config=lora_config(cfg) if cfg.use_peft else None,
        callbacks=extra,
    )
    if merged_cb:
        merged_cb.trainer = trainer
    if cfg.cache_audio_tower:  # inert unless the tower is frozen (freeze_audio_tower, or LoRA) and dropout-free
        cache_frozen_tower(trainer.model, store=cfg.tower_cache_file)
    if trainer.accelerator.is_main_process:
        n_train = sum(parameter_count(p) for p in trainer.model.parameters() if p.requires_grad)
        n_all = sum(parameter_count(p) for p in trainer.model.parameters())
        print(f"sft: {len(dataset)} questions, {n_train:,} of {n_all:,} parameters trainable "
              f"({'LoRA' if cfg.use_peft else 'full'}), {precision.device} {'bf16' if precision.bf16 else 'fp32'}")

    record_run(trainer, run_dir)
    if action == "final":  # interrupted after its last checkpoint: final/ from it, no training
        if trainer.accelerator.is_main_process:
            print(f"sft: {checkpoint.name} ends the run's training; writing final/ from it (no training)")
        if not cfg.save_final:
            return {"global_step": checkpoint_step(checkpoint), "nothing_to_do": True}
        finish_from_checkpoint(trainer, checkpoint, run_dir)
        return {"global_step": checkpoint_step(checkpoint), "final_from_checkpoint": checkpoint.name}
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    metrics = dict(result.metrics)
    steps_run = trainer.state.global_step - (checkpoint_step(checkpoint) if checkpoint else 0)
    metrics["seconds_per_step"] = metrics["train_runtime"] / max(steps_run, 1)
    metrics["global_step"] = trainer.state.global_step
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    if cfg.save_final:
        save_final(trainer, run_dir)
    if trainer.accelerator.is_main_process:
        print(f"sft: {trainer.state.global_step} steps, {metrics['seconds_per_step']:.3f} s/step, "
              f"train loss {metrics.get('train_loss', float('nan')):.4f}; run folder {run_dir}")
    release_distributed(trainer, destroy_group=False)  # the DeepSpeed engine first; the CLI ends the group
    return metrics


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aqa_core sft", description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", required=True, help="recipes/sft/<name>.yaml")
    add_set_argument(ap, "override recipe keys (repeatable), e.g. --set max_steps=10 save_steps=5")
    ap.add_argument("--output-dir", help="run folder (same as --set output_dir=D)")
    ap.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint-N")
    args = ap.parse_args(argv)
    overrides = set_overrides(args)
    overrides += [f"output_dir={args.output_dir}"] if args.output_dir else []
    from ..data import DataError
    from ..runs import RunDirError

    try:
        cfg = load_recipe(SFTRecipe, args.recipe, overrides)
        run_sft(cfg, resume=args.resume)
    except (RecipeError, RunDirError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .common import release_distributed

    release_distributed()  # run_sft's trainer is gone; the engine goes with the garbage collection
    return 0
