"""GRPO on Qwen2-Audio with the audio in every pass: the R1-AQA objective on TRL 1.16.

    python -m aqa_core grpo --recipe recipes/grpo/mini.yaml [--set key=value ...] [--output-dir D] [--resume]
    accelerate launch --config_file recipes/accelerate/zero3.yaml -m aqa_core grpo --recipe recipes/grpo/paper.yaml

TRL 1.16's `GRPOTrainer` has no audio path: the Qwen2-Audio features reach generation at best,
never the old-policy, reference and loss log-prob passes, which then score the completions of
a model that hears nothing. `AudioGRPOTrainer` runs the processor on each prompt's wav and
carries `input_features`/`feature_attention_mask` through generation, the old/reference
passes and the loss, row-aligned through TRL's shuffling and gradient-accumulation split.
It overrides private TRL methods, hence the exact trl pin in pyproject.toml. A batch holds
each clip num_generations times; the encoder runs once per distinct clip (`share_audio_encoding`).

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
import contextlib
import functools
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .prompts import build_messages, solution_text

log = logging.getLogger(__name__)


@dataclass
class GRPORecipe:
    """Every setting of a GRPO run. Defaults are the paper's Table 1 (recipes/grpo/paper.yaml);
    TRL's field names wherever the meaning is the same."""

    # what to train on
    model_name_or_path: str = "Qwen/Qwen2-Audio-7B-Instruct"  # any Qwen2AudioForConditionalGeneration folder
    train_data: str = "data/avqa/train_r1aqa.jsonl"  # R1-AQA JSONL (aqa_core.data.load_avqa_jsonl)
    train_audio_dir: str | None = None  # folder the JSONL's audio_path names are relative to
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
    num_processes: int | None = 8  # the world size the recipe's batch assumes (a warning if it differs)
    # LoRA (peft) instead of full fine-tuning
    use_peft: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    # bookkeeping
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int | None = None
    device: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU (aqa_core.runs.choose_precision)
    torch_threads: int | None = None  # CPU threads for torch (None: torch's default)

    def reward_names(self) -> list[str]:
        """The reward functions summed into the GRPO reward; checked, an unknown name fails."""
        from .config import RecipeError
        from .rewards import PROMPT_REWARDS, get_reward_funcs

        if self.prompt not in PROMPT_REWARDS:
            raise RecipeError(f"prompt must be one of {sorted(PROMPT_REWARDS)} for GRPO, got {self.prompt!r}")
        names = list(PROMPT_REWARDS[self.prompt] if self.rewards is None else self.rewards)
        try:
            get_reward_funcs(names)
        except ValueError as exc:
            raise RecipeError(f"rewards: {exc}") from None
        return names


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
    """The recipe as TRL's `GRPOConfig` (the one place the objective is mapped onto TRL)."""
    from trl import GRPOConfig

    from .runs import choose_precision

    precision = precision or choose_precision(cfg.device)
    return GRPOConfig(
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
    )


def load_questions(cfg: GRPORecipe) -> list[dict]:
    """The training questions (canonical records), every wav checked before any model work."""
    from .audio import check_audio_files
    from .data import DataError, load_avqa_jsonl

    records = load_avqa_jsonl(cfg.train_data, audio_dir=cfg.train_audio_dir)
    if cfg.max_train_samples is not None:
        records = records[: cfg.max_train_samples]
    problems = check_audio_files([r["audio_path"] for r in records])
    if problems:
        raise DataError(f"{cfg.train_data}: {len(problems)} unusable wav(s), e.g. {problems[:3]}")
    if not records:
        raise DataError(f"{cfg.train_data}: no usable questions")
    return records


def build_dataset(records: list[dict], prompt: int):
    """Rows TRL consumes: `prompt` (chat messages with the audio part), `solution`
    (`<answer>X</answer>`), `audio_path`, `id`. HF datasets will add `None` keys to the
    message parts; `AudioGRPOTrainer` strips them again (see `strip_none`)."""
    from datasets import Dataset

    return Dataset.from_list([
        {"id": str(r["id"]), "prompt": build_messages(r, prompt), "solution": solution_text(r["answer"]),
         "audio_path": str(r["audio_path"])}
        for r in records
    ])


def strip_none(messages: list[dict]) -> list[dict]:
    """Undo HF datasets' schema unification (`{"type": "text", "audio_url": None, ...}`): the
    Qwen2-Audio chat template tests `'audio' in content`, so a None key would add an audio turn.

    >>> strip_none([{"role": "user", "content": [{"type": "text", "text": "hi", "audio_url": None}]}])
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}]}]
    """
    out = []
    for msg in messages:
        msg = {k: v for k, v in msg.items() if v is not None}
        if isinstance(msg.get("content"), list):
            msg["content"] = [{k: v for k, v in part.items() if v is not None} for part in msg["content"]]
        out.append(msg)
    return out


def audio_encoders(model) -> list:
    """The audio encoder modules of a model (any wrapping: PEFT, DDP): those whose main input
    is `input_features` (Qwen2AudioEncoder)."""
    return [m for m in model.modules() if getattr(m, "main_input_name", None) == "input_features"
            and hasattr(m, "layers")]


def share_audio_encoding(model) -> None:
    """Make the audio encoder encode each distinct clip once per call and copy the result to its
    repeats. A GRPO batch holds every clip `num_generations` times, so generation and each
    log-prob pass would otherwise run the encoder G times on identical inputs (at full scale
    that is 7/8 of the encoder's compute and ~15 GB of activations per GPU). Gradients flow
    through the copies, so training is unchanged."""
    import torch

    for tower in audio_encoders(model):
        if getattr(tower, "_aqa_shared_encoding", False):
            continue
        inner = tower.forward

        @functools.wraps(inner)
        def forward(input_features, attention_mask=None, _inner=inner, **kwargs):
            n = input_features.size(0)
            if n > 1:
                _, inverse = torch.unique(input_features.reshape(n, -1), dim=0, return_inverse=True)
                n_unique = int(inverse.max()) + 1
                if n_unique < n:
                    rows = torch.arange(n, device=inverse.device)
                    first = torch.full((n_unique,), n, dtype=torch.long, device=inverse.device)
                    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
                    mask = attention_mask[first] if attention_mask is not None else None
                    out = _inner(input_features[first], attention_mask=mask, **kwargs)
                    out.last_hidden_state = out.last_hidden_state[inverse]
                    return out
            return _inner(input_features, attention_mask=attention_mask, **kwargs)

        tower.forward = forward
        tower._aqa_shared_encoding = True


def audio_paths(messages: list[dict]) -> list[str]:
    """The `audio_url` of every audio part of a prompt, in order."""
    return [part["audio_url"] for msg in messages if isinstance(msg.get("content"), list)
            for part in msg["content"] if part.get("type") == "audio"]


@functools.lru_cache(maxsize=1)
def _trainer_class():
    """Defined lazily so `import aqa_core.grpo` (recipes, CLI help) does not import TRL."""
    import torch
    from trl import GRPOTrainer

    from .audio import SAMPLE_RATE, load_audio
    from .runs import PretrainedResumeMixin

    _share_audio_encoding = share_audio_encoding  # the trainer's keyword shadows the function

    class AudioGRPOTrainer(PretrainedResumeMixin, GRPOTrainer):
        """`GRPOTrainer` whose generation, old-policy, reference and loss passes all see the audio.

        `_tokenize_prompts` runs the Qwen2-Audio processor (one wav per prompt) and keeps the
        features in `self._audio`; the old/reference passes inside `_generate_and_score_completions`
        read them there, the features then travel in the batch dict (TRL shuffles and splits it
        row-wise for gradient accumulation) and `_compute_loss` puts each micro-batch's back.
        A log-prob pass without audio is an error, never a silent text-only pass.
        """

        def __init__(self, *args, share_audio_encoding: bool = True, **kwargs):
            model = kwargs.get("model") if "model" in kwargs else args[0]
            config = model.config
            # TRL suppresses `config.image_token_id` in sampling (a sampled placeholder would not
            # match the features); for audio that is the <|AUDIO|> token. Set only for the init.
            added = not hasattr(config, "image_token_id") or config.image_token_id is None
            if added:
                config.image_token_id = config.audio_token_id
            try:
                super().__init__(*args, **kwargs)
            finally:
                if added:
                    config.image_token_id = None
                    with contextlib.suppress(AttributeError):
                        delattr(config, "image_token_id")
            if share_audio_encoding:
                for m in (self.model, self.ref_model):
                    if m is not None:
                        _share_audio_encoding(m)
            self._audio: dict | None = None
            self.seen_prompt_ids: list[tuple[int, list[str]]] = []  # (global_step, ids) per generation batch

        # -- generation: processor with audio -------------------------------------------------
        def _tokenize_prompts(self, prompts: list):
            proc = self.processing_class
            paths = [audio_paths(p) for p in prompts]
            bad = [i for i, p in enumerate(paths) if len(p) != 1]
            if bad:
                raise ValueError(f"AudioGRPOTrainer needs exactly one audio part per prompt; prompt {bad[0]} has "
                                 f"{len(paths[bad[0]])}")
            cache: dict[str, Any] = {}  # each prompt comes num_generations times: read its wav once
            for p in paths:
                if p[0] not in cache:
                    cache[p[0]] = load_audio(p[0], sr=SAMPLE_RATE)
            audios = [cache[p[0]] for p in paths]
            texts = proc.apply_chat_template(prompts, add_generation_prompt=True, tokenize=False,
                                             **self.chat_template_kwargs)
            enc = proc(text=texts, audio=audios, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True)
            prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]
            device = self.accelerator.device
            self._audio = {"input_features": enc["input_features"].to(device),
                           "feature_attention_mask": enc["feature_attention_mask"].to(device)}
            # `_generate_single_turn` passes tensor fields to `generate`
            return prompt_ids, None, dict(self._audio)

        def _generate_single_turn(self, *args, **kwargs):
            start = time.perf_counter()
            out = super()._generate_single_turn(*args, **kwargs)
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["timing/generation_s"].append(time.perf_counter() - start)
            return out

        def _generate_and_score_completions(self, inputs):
            inputs = [{**x, "prompt": strip_none(x["prompt"])} for x in inputs]
            self.seen_prompt_ids.append((self.state.global_step, [str(x.get("id", "?")) for x in inputs]))
            self._audio = None
            try:
                output = super()._generate_and_score_completions(inputs)
                audio = self._audio
            finally:
                self._audio = None
            if audio is None or audio["input_features"].size(0) != output["prompt_ids"].size(0):
                raise RuntimeError("audio features were not produced for this generation batch")
            output.update(audio)
            return output

        # -- the loss pass: this micro-batch's features ---------------------------------------
        def _compute_loss(self, model, inputs):
            self._audio = {k: inputs[k] for k in ("input_features", "feature_attention_mask")}
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._audio = None

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **multimodal):
            """TRL's chunked log-prob pass, with the audio features sliced like the rows."""
            extra = sorted(k for k, v in multimodal.items() if v is not None and k not in ("num_images", "num_tiles"))
            if extra:
                raise ValueError(f"AudioGRPOTrainer got image inputs {extra}; it handles audio prompts only")
            if self._audio is None:
                raise RuntimeError("log-prob pass without audio features: the model would not hear the audio")
            feats, fmask = self._audio["input_features"], self._audio["feature_attention_mask"]
            if feats.size(0) != input_ids.size(0):
                raise RuntimeError(f"{feats.size(0)} audio feature rows for {input_ids.size(0)} sequences")
            batch_size = batch_size or input_ids.size(0)
            logps, entropies, aux = [], [], []
            for start in range(0, input_ids.size(0), batch_size):
                end = min(start + batch_size, input_ids.size(0))
                ids, mask = input_ids[start:end], attention_mask[start:end]
                labels = ids.masked_fill(mask == 0, -100)
                labels[:, :-logits_to_keep] = -100  # only the completion tokens are scored
                model_inputs = {"input_ids": ids, "attention_mask": mask, "input_features": feats[start:end],
                                "feature_attention_mask": fmask[start:end]}
                if compute_aux_loss:
                    model_inputs["output_router_logits"] = True
                with self.accelerator.autocast():
                    out = model(**model_inputs, labels=labels, fused_lm_head=True)
                logps.append(out.log_probs[:, -logits_to_keep:])
                if compute_entropy:
                    entropies.append(out.entropy[:, -logits_to_keep:])
                if compute_aux_loss:
                    aux.append(out.aux_loss)
            return (torch.cat(logps, dim=0), torch.cat(entropies, dim=0) if compute_entropy else None,
                    torch.stack(aux).mean() if compute_aux_loss else None)

    return AudioGRPOTrainer


def __getattr__(name: str):  # `from aqa_core.grpo import AudioGRPOTrainer` imports TRL only then
    if name == "AudioGRPOTrainer":
        return _trainer_class()
    raise AttributeError(name)


def lora_config(cfg: GRPORecipe):
    """The peft LoRA config of a `use_peft` recipe (text model only: the audio tower stays frozen)."""
    if not cfg.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")


def build_trainer(cfg: GRPORecipe, run_dir: str | Path | None = None, callbacks: list | None = None,
                  reward_funcs: list | None = None):
    """Data, model and trainer of a run, ready to `train()` (`reward_funcs` replaces the recipe's
    rewards, for tests). Used by `run_grpo`, the tests and scripts/bench_train.py."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from .rewards import get_reward_funcs
    from .runs import choose_precision

    local = Path(cfg.model_name_or_path)
    if local.exists() and not (local / "config.json").is_file():
        from .config import RecipeError

        raise RecipeError(f"model_name_or_path {local}: not a model folder (no config.json); expected a "
                          "Qwen2AudioForConditionalGeneration checkpoint saved with save_pretrained")
    precision = choose_precision(cfg.device)
    args = grpo_args(cfg, run_dir, precision)  # before the model: under ZeRO-3 this makes from_pretrained shard
    dataset = build_dataset(load_questions(cfg), cfg.prompt)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(cfg.model_name_or_path, dtype=precision.torch_dtype())
    processor = AutoProcessor.from_pretrained(cfg.model_name_or_path, padding_side="left")
    if cfg.freeze_audio_tower:
        for tower in audio_encoders(model):
            tower.requires_grad_(False)
    if reward_funcs is None:
        reward_funcs = get_reward_funcs(cfg.reward_names(), math_verify=cfg.math_verify)
    return _trainer_class()(
        model=model, processing_class=processor, args=args, train_dataset=dataset,
        reward_funcs=reward_funcs, peft_config=lora_config(cfg), callbacks=list(callbacks or []),
        share_audio_encoding=cfg.share_audio_encoding,
    )


def run_grpo(cfg: GRPORecipe, resume: bool = False, callbacks: list | None = None, reward_funcs: list | None = None):
    """Train one GRPO run into `cfg.output_dir` (seed, data, model, trainer, train, save).
    `resume` continues from the folder's last checkpoint; `callbacks` are extra TrainerCallbacks
    (tests interrupt with one); `reward_funcs` replaces the recipe's rewards. Returns the trainer."""
    import torch
    from transformers import set_seed

    from .runs import MetricsCallback, SaveMergedCallback, last_checkpoint, prepare_run_dir, save_final

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    set_seed(cfg.seed)
    cfg.reward_names()  # fail on a bad recipe before any model work
    run_dir = prepare_run_dir(cfg.output_dir, cfg, resume=resume)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.num_processes is not None and cfg.num_processes != world:
        log.warning("recipe assumes %d processes, running on %d: the effective batch differs from the recipe's",
                    cfg.num_processes, world)
    merged_cb = SaveMergedCallback() if cfg.use_peft else None
    extra = [MetricsCallback(run_dir), *(callbacks or []), *([merged_cb] if merged_cb else [])]
    trainer = build_trainer(cfg, run_dir, callbacks=extra, reward_funcs=reward_funcs)
    if merged_cb:
        merged_cb.trainer = trainer
    if trainer.accelerator.is_main_process:
        print(f"grpo: {len(trainer.train_dataset)} questions, prompt <{cfg.prompt}>, rewards "
              f"{'+'.join(f.__name__ for f in trainer.reward_funcs)}, world size {trainer.accelerator.num_processes}, "
              f"{trainer.args.device.type} {'bf16' if trainer.args.bf16 else 'fp32'}, {'LoRA' if cfg.use_peft else 'full'}")
    checkpoint = last_checkpoint(run_dir) if resume else None
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    save_final(trainer, run_dir)
    return trainer


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aqa_core grpo", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True, help="YAML recipe, e.g. recipes/grpo/mini.yaml")
    ap.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                    help="override recipe keys (repeatable)")
    ap.add_argument("--output-dir", help="run folder (overrides the recipe's output_dir)")
    ap.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    args = ap.parse_args(argv)
    from .audio import AudioError
    from .config import RecipeError, load_recipe
    from .data import DataError
    from .runs import RunDirError

    overrides = [kv for group in args.overrides for kv in group]
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        cfg = load_recipe(GRPORecipe, args.recipe, overrides)
        trainer = run_grpo(cfg, resume=args.resume)
    except (RecipeError, RunDirError, DataError, AudioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if trainer.accelerator.is_main_process:
        print(f"GRPO done: {trainer.state.global_step} steps, run folder {cfg.output_dir}")
    return 0
