"""What the GRPO and SFT runners share on top of transformers: the precision of a run, the
trainer arguments a recipe adds through `trl_args`, the run record, `metrics.jsonl`, resuming a
full run, and `final/` (the run folder's layout: `aqa_core.runs`).

- `choose_precision()`: bf16 on CUDA, fp32 on CPU, as `Precision(device, bf16, model_dtype)`,
  bf16 weights under every launcher (`launcher()`) where nothing needs fp32 ones;
  `precision.training_args()` gives the matching `TrainingArguments` keywords.
- `load_for_training(path, precision, ...)`: the model and processor a run starts from.
- `trainer_config(config_cls, mapped, trl_args)`: the GRPOConfig / SFTConfig of a run, the
  recipe's mapped fields plus its `trl_args` (checked against the class's fields).
- `record_run(trainer, run_dir)`: `trainer_args.json` and `provenance.json` beside `config.yaml`.
- `MetricsCallback(run_dir)`: one JSON object per logging step into `metrics.jsonl`.
- `PretrainedResumeMixin`: put it first in a Trainer subclass's bases so that `--resume` really
  restores the weights (transformers 5.23 silently does not for Qwen2-Audio, see there).
- `save_final(trainer, run_dir)`: `final/`, a plain model folder (merged weights for LoRA),
  written under a temporary name and renamed: whole or absent.
- `KEEP_OPTIMIZER_STATE`, `PruneOptimizerState`: a recipe's `keep_optimizer_state` ("all", or
  "newest": the optimizer state only in the newest complete checkpoint; the paper recipes').
- `resume_point(run_dir, resume, max_steps)` and `finish_from_checkpoint(trainer, ckpt, run_dir)`:
  what `--resume` does with the newest complete checkpoint: continue from it, write `final/` from
  it when the run had finished training, or nothing when `final/` exists too.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # transformers is a hard dependency of the runners; keep this module importable without it
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover
    TrainerCallback = object  # type: ignore[misc,assignment]

from ..config import RecipeError
from ..files import replace_folder
from ..runs import (
    FINAL_DIR,
    FINAL_PARTIAL_DIR,
    METRICS_FILE,
    TRAINER_STATE_FILE,
    RunDirError,
    check_model_folder,
    checkpoint_problem,
    checkpoint_step,
    checkpoints,
    final_complete,
    last_checkpoint,
    prune_optimizer_state,
    read_metrics,
    training_done,
    write_run_record,
)
from .lora import save_merged


@dataclass(frozen=True)
class Precision:
    """Where and in what precision a run trains: bf16 mixed precision on CUDA, fp32 on CPU.

    `model_dtype` is what to load the weights in: bf16 only under DeepSpeed (whose optimizer
    keeps fp32 master weights, as the official ZeRO-3 launch does); otherwise fp32 weights
    with bf16 autocast, because AdamW steps of lr 1e-6 vanish when applied to bf16 weights.
    """

    device: str
    bf16: bool
    model_dtype: str  # "bfloat16" | "float32" (a `from_pretrained(dtype=...)` value)

    def training_args(self) -> dict[str, Any]:
        """Keywords for `TrainingArguments`/`GRPOConfig`/`SFTConfig`."""
        return {"bf16": self.bf16, "fp16": False, "use_cpu": self.device == "cpu"}

    def torch_dtype(self):  # torch imported lazily
        import torch

        return getattr(torch, self.model_dtype)


def launcher(environ: Mapping[str, str] | None = None) -> str:
    """How this process was started, from the environment launchers set: "accelerate-deepspeed"
    (accelerate with a DeepSpeed config), "accelerate", "torchrun" (or any launcher that sets
    torch.distributed's RANK and WORLD_SIZE), or "python" (a single process)."""
    env = os.environ if environ is None else environ
    if env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "accelerate-deepspeed"
    if any(k.startswith("ACCELERATE_") for k in env) and "RANK" in env:
        return "accelerate"
    if "RANK" in env and "WORLD_SIZE" in env:
        return "torchrun"
    return "python"


def choose_precision(device: str = "auto", trains_all_weights: bool = True,
                     environ: Mapping[str, str] | None = None) -> Precision:
    """bf16 on CUDA (if the GPU supports it), fp32 on CPU; `device="cpu"` forces the CPU.

    On a bf16 GPU the weights are loaded in bf16 under every launcher when nothing needs fp32
    weights: under DeepSpeed (its optimizer keeps fp32 master weights) and for LoRA
    (`trains_all_weights` False: the base is frozen, PEFT keeps the adapter in fp32). A full
    fine-tuning run without DeepSpeed (plain python, torchrun, accelerate without a DeepSpeed
    config) keeps fp32 weights under bf16 autocast, the standard mixed precision (pure bf16
    weights would lose small Adam updates), and says so once: at 16 bytes per parameter on every
    GPU it does not fit a 7B model (`python -m aqa_core preflight`; use the ZeRO-3 config)."""
    import torch

    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise RuntimeError("device='cuda' requested but torch sees no CUDA device")
    if not use_cuda:
        return Precision("cpu", False, "float32")
    if not torch.cuda.is_bf16_supported():
        return Precision("cuda", False, "float32")
    how = launcher(environ)
    if how == "accelerate-deepspeed" or not trains_all_weights:
        return Precision("cuda", True, "bfloat16")
    import warnings

    warnings.warn(f"full fine-tuning under {how} without DeepSpeed: fp32 weights with bf16 autocast (16 bytes per "
                  "parameter on every GPU; a 7B model needs the ZeRO-3 config, see python -m aqa_core preflight)",
                  stacklevel=2)
    return Precision("cuda", True, "float32")


def load_for_training(model_name_or_path: str, precision: Precision, freeze_audio_tower: bool = False,
                      padding_side: str | None = None):  # transformers imported lazily
    """(model, processor) a run starts from: any Qwen2AudioForConditionalGeneration folder (the
    real 7B or the mini model: the code does not know which), weights in `precision`'s dtype,
    the audio tower frozen when asked. A local path that is not a model folder is a RecipeError."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from ..audio_tower import audio_tower

    local = Path(model_name_or_path)
    if local.exists() and not (local / "config.json").is_file():
        raise RecipeError(f"model_name_or_path {local}: not a model folder (no config.json); expected a "
                          "Qwen2AudioForConditionalGeneration checkpoint saved with save_pretrained")
    if local.exists():
        check_model_folder(local)  # a damaged config.json or truncated weights: one line, before any work
    model = Qwen2AudioForConditionalGeneration.from_pretrained(model_name_or_path, dtype=precision.torch_dtype())
    kwargs = {"padding_side": padding_side} if padding_side else {}
    processor = AutoProcessor.from_pretrained(model_name_or_path, **kwargs)
    if freeze_audio_tower:
        audio_tower(model).requires_grad_(False)
    return model, processor


# ----------------------------------------------------------------------------- trainer arguments


def check_trl_args(trl_args: Mapping[str, Any], config_cls: type, mapped: set[str]) -> None:
    """A recipe's `trl_args` must name fields of `config_cls` (GRPOConfig, SFTConfig) that the
    runner does not already set from the recipe's own keys; otherwise a `RecipeError` naming the
    field, with the close matches and every valid field."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for key in trl_args:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise RecipeError(f"trl_args: {key!r} is not a {config_cls.__name__} field{hint}; valid fields: "
                              f"{', '.join(sorted(fields))}")
        if key in mapped:
            raise RecipeError(f"trl_args: {key!r} is set by the runner from the recipe; set the recipe key "
                              f"instead, or leave {key!r} out of trl_args")


def trainer_config(config_cls: type, mapped: dict[str, Any], trl_args: Mapping[str, Any] | None = None):
    """`config_cls(**mapped, **trl_args)` after `check_trl_args`: the one place a recipe becomes
    the trainer's arguments. A value the class rejects is a `RecipeError` naming the class."""
    trl_args = dict(trl_args or {})
    check_trl_args(trl_args, config_cls, set(mapped))
    try:
        return config_cls(**mapped, **trl_args)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{config_cls.__name__} rejected the recipe: {exc}") from exc


def record_run(trainer, run_dir: str | Path) -> None:  # a transformers Trainer
    """The effective trainer arguments (`trainer.args.to_dict()`) and the run's provenance,
    written into the run folder before training (main process only)."""
    if trainer.accelerator.is_main_process:
        write_run_record(run_dir, trainer.args.to_dict())


# ----------------------------------------------------------------------------- during and after training


def _plain(value: Any) -> Any:
    """JSON-safe scalar: tensors/numpy to float, NaN/inf to None (JSON has no NaN)."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsCallback(TrainerCallback):
    """Append `{"step": N, **logs}` to `<run_dir>/metrics.jsonl` at every logging step.

    Keys are the trainer's own (TRL GRPO: loss, reward, reward_std, rewards/<name>/mean, kl,
    completions/mean_length, learning_rate, ...; SFT: loss, learning_rate, ...). The final
    train summary (train_runtime, ...) is written as a row with `"summary": true`. On resume,
    rows logged after the checkpoint are dropped, so the file never holds two histories.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE

    def on_train_begin(self, args, state, control, **kwargs):  # TrainerCallback signature
        if not state.is_world_process_zero or not self.path.exists():
            return
        # Resumed at global_step: rows logged after that checkpoint belong to the lost history.
        rows = [r for r in read_metrics(self.path.parent)
                if r.get("step", 0) <= state.global_step and not r.get("summary")]
        self._write(rows, mode="w")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, **{k: _plain(v) for k, v in logs.items()}}
        if "train_runtime" in logs:
            row["summary"] = True
        self._write([row], mode="a")

    def _write(self, rows: list[dict], mode: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open(mode, encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")


class PretrainedResumeMixin:
    """Trainer mixin: on resume, load the checkpoint's weights the way `from_pretrained` does.

    transformers 5.23's `Trainer._load_from_checkpoint` reads `model.safetensors` with a plain
    `load_state_dict(strict=False)`, but `save_pretrained` writes Qwen2-Audio's original key
    names (`audio_tower.*`, `language_model.*`, not `model.audio_tower.*`): every key is then
    missing, only a log line says so, and the resumed run silently restarts from the base
    weights. `from_pretrained` applies the key conversion. DeepSpeed, FSDP and PEFT adapters
    resume through their own loaders and are left to the Trainer. (Costs one extra copy of
    the weights on CPU while loading.)
    """

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):  # Trainer signature
        from accelerate.utils import is_peft_model

        model = self.model if model is None else model
        unwrapped = self.accelerator.unwrap_model(model)
        full_weights = (Path(resume_from_checkpoint) / "config.json").is_file() and not is_peft_model(unwrapped)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled or not full_weights:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        dtype = next(unwrapped.parameters()).dtype
        loaded = type(unwrapped).from_pretrained(resume_from_checkpoint, dtype=dtype, device_map=None)
        unwrapped.load_state_dict(loaded.state_dict(), strict=True)  # an incomplete checkpoint fails here
        del loaded
        return None


def save_final(trainer, run_dir: str | Path) -> Path:  # a transformers Trainer
    """`<run_dir>/final`: model + processor, loadable with `from_pretrained` like the base model.
    A LoRA run writes the merged weights there and its adapter in `final/adapter`."""
    from accelerate.utils import is_peft_model

    final, partial = Path(run_dir) / FINAL_DIR, Path(run_dir) / FINAL_PARTIAL_DIR
    if trainer.accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by an interrupted save
    trainer.accelerator.wait_for_everyone()
    if is_peft_model(trainer.accelerator.unwrap_model(trainer.model)):
        save_merged(trainer, partial)  # collective under ZeRO-3: every process calls it
        trainer.save_model(str(partial / "adapter"))
    else:
        trainer.save_model(str(partial))
        if trainer.accelerator.is_main_process:
            trainer.processing_class.save_pretrained(partial)
    if trainer.accelerator.is_main_process:
        # under ZeRO-3 without stage3_gather_16bit_weights_on_model_save no weights file is written:
        # a final/ without weights would look finished and load nothing
        check_model_folder(partial)
        replace_folder(partial, final)
    trainer.accelerator.wait_for_everyone()
    return final


def resume_point(run_dir: str | Path, resume: bool, max_steps: int | None) -> tuple[Path | None, str]:
    """What a launch does in `run_dir`: ("train", None) for a new run; with `resume`, the newest
    complete checkpoint and "train" (continue from it), "final" (it ends the run's training:
    write `final/` from it, no training) or "nothing" (`final/` exists too: the run is finished)."""
    checkpoint = last_checkpoint(run_dir) if resume else None
    if checkpoint is None or not training_done(checkpoint, max_steps):
        return checkpoint, "train"
    return checkpoint, "nothing" if final_complete(run_dir) else "final"


def finish_from_checkpoint(trainer, checkpoint: str | Path, run_dir: str | Path) -> None:
    """A run interrupted after its last checkpoint: that checkpoint's weights and state into the
    trainer, `final/` written from them, and the summary row `metrics.jsonl` lacks; no training."""
    from transformers import TrainerState

    checkpoint = Path(checkpoint)
    if trainer.is_deepspeed_enabled:
        raise RunDirError(f"{checkpoint}: writing final/ from a DeepSpeed checkpoint without training is not "
                          "supported; convert it with the checkpoint's zero_to_fp32.py instead")
    trainer._load_from_checkpoint(str(checkpoint))
    trainer.state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_FILE))
    save_final(trainer, run_dir)
    if trainer.accelerator.is_main_process:
        with (Path(run_dir) / METRICS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": checkpoint_step(checkpoint), "summary": True,
                                 "final_from_checkpoint": checkpoint.name}) + "\n")


#: A recipe's `keep_optimizer_state`: "all" (every checkpoint can be resumed from) or "newest"
#: (every checkpoint keeps its weights, for the sweep; only the newest complete one keeps the
#: optimizer state, so a run of the 8.2B model fits a disk: that state is most of a checkpoint).
KEEP_OPTIMIZER_STATE = ("all", "newest")


def check_keep_optimizer_state(value: str) -> None:
    if value not in KEEP_OPTIMIZER_STATE:
        raise RecipeError(f"keep_optimizer_state must be one of {', '.join(KEEP_OPTIMIZER_STATE)}, got {value!r}")


class PruneOptimizerState(TrainerCallback):
    """keep_optimizer_state "newest": once a new checkpoint is complete (`aqa_core.runs.
    checkpoint_problem`: its trainer_state.json is written last), the optimizer state of every
    older checkpoint is deleted; never before, so a kill or a full disk during a save leaves the
    previous checkpoint resumable. One process per node deletes (each node's own files)."""

    def on_save(self, args, state, control, **kwargs):  # TrainerCallback signature
        if not state.is_local_process_zero:
            return
        run_dir = Path(args.output_dir)
        newest = run_dir / f"checkpoint-{state.global_step}"
        if checkpoint_problem(newest) is not None:
            return  # the new checkpoint cannot be resumed from: the old state stays
        freed = sum(prune_optimizer_state(c) for c in checkpoints(run_dir) if c != newest)
        if freed:
            print(f"keep_optimizer_state=newest: freed {freed / 2**30:.2f} GiB of optimizer state in checkpoints "
                  f"before {newest.name}")


def parameter_count(p) -> int:  # a torch Parameter
    """A parameter's true size: under ZeRO-3 a sharded parameter reports `numel() == 0` and
    DeepSpeed keeps the size in `ds_numel` (an SFT run under ZeRO-3 printed "0 of 0 parameters")."""
    return int(getattr(p, "ds_numel", 0) or p.numel())


def release_distributed(trainer=None, destroy_group: bool = True) -> None:  # a Trainer
    """End a multi-process run cleanly: the DeepSpeed engine released first (`free_memory`, which
    destroys it), then garbage collection, a barrier and the process group destroyed. Without
    it about 1 launch in 10 of ZeRO-3 on CPU ended in "terminate called without an active
    exception" after all its work was done (../shared/notes/zero3-cpu.md: 0 in 26 launches with
    this order). `destroy_group` False releases the engine only (the end of a run whose caller
    ends the group). Does nothing in a single process."""
    import gc

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if trainer is not None:
        trainer.accelerator.free_memory()
    gc.collect()
    if destroy_group:
        dist.barrier()
        dist.destroy_process_group()
