"""Run folders shared by the GRPO and SFT runners: one folder per run holding the resolved
config, `metrics.jsonl` and the `checkpoint-N/` folders the HF Trainer writes.

The whole API (each piece is used by both runners):

- `prepare_run_dir(run_dir, cfg, resume=False)`: create the folder and write `config.yaml`
  (refuses to clobber an earlier run unless resuming; on resume, the config must match).
- `last_checkpoint(run_dir)`: the newest `checkpoint-N` folder, or None.
- `MetricsCallback(run_dir)`: a `TrainerCallback` appending one JSON object per logging step
  (`{"step": N, <every logged value>}`) to `metrics.jsonl`; on resume it drops rows past
  the checkpoint so the file never holds two histories.
- `read_metrics(run_dir)`: those rows back as a list of dicts; `first_last_tenth(rows, key)`:
  the mean of a metric over the first and the last tenth of the steps (GRPO reward rising, SFT
  loss falling).
- `choose_precision()`: bf16 on CUDA, fp32 on CPU, as `Precision(device, bf16, model_dtype)`;
  `precision.training_args()` gives the matching `TrainingArguments` keywords.
- `PretrainedResumeMixin`: put it first in a Trainer subclass's bases so that `--resume`
  really restores the weights (transformers 5.23 silently does not for Qwen2-Audio, see there).

>>> import tempfile
>>> from dataclasses import dataclass
>>> @dataclass
... class Cfg:
...     learning_rate: float = 1e-6
>>> d = tempfile.mkdtemp()
>>> _ = prepare_run_dir(d, Cfg())
>>> (Path(d) / "config.yaml").read_text()
'learning_rate: 1.0e-06\\n'
>>> last_checkpoint(d) is None
True
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import save_config, to_dict
from .metrics import METRICS_FILE, first_last_tenth, read_metrics  # noqa: F401 - part of this API

FINAL_DIR = "final"  # the model at the end of a run, always a plain model folder
MERGED_DIR = "merged"  # checkpoint-N/merged/: a LoRA checkpoint as a plain model folder

CONFIG_FILE = "config.yaml"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

#: Keys that may change between an interrupted run and its resumption (extending a run, or
#: checkpointing/logging more often, does not change what was trained so far).
RESUMABLE_CHANGES = frozenset({"max_steps", "save_steps", "logging_steps", "output_dir", "save_total_limit"})


class RunDirError(RuntimeError):
    """A run folder that cannot be used as asked: the message names the folder and the fix."""


def _is_main_process() -> bool:
    """True on the process that owns the files (rank 0 under `accelerate launch`/torchrun)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


def checkpoints(run_dir: str | Path) -> list[Path]:
    """The `checkpoint-N` folders of a run, in step order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint folder of a run (the one `--resume` continues from), or None."""
    found = checkpoints(run_dir)
    return found[-1] if found else None


def prepare_run_dir(run_dir: str | Path, cfg: Any, resume: bool = False) -> Path:
    """Create `run_dir` and write the resolved config (every field) as `config.yaml`.

    A folder that already holds a run (metrics or checkpoints) is an error unless `resume` is
    set; when resuming, the saved config must agree with `cfg` except for RESUMABLE_CHANGES
    (so the step count and data order really continue). Only the main process writes.
    """
    run_dir = Path(run_dir)
    has_run = (run_dir / METRICS_FILE).exists() or bool(checkpoints(run_dir))
    if resume:
        if last_checkpoint(run_dir) is None:
            raise RunDirError(f"{run_dir}: --resume given but the folder has no checkpoint-N to resume from")
        saved_path = run_dir / CONFIG_FILE
        if saved_path.is_file():
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
            now = to_dict(cfg)
            differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
            if differ:
                detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ)
                raise RunDirError(
                    f"{run_dir}: cannot resume with a different config ({detail}); "
                    f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change"
                )
    elif has_run:
        raise RunDirError(
            f"{run_dir}: already holds a run (metrics.jsonl or checkpoint-N); pass --resume to continue it "
            "or choose another --output-dir"
        )
    if _is_main_process():
        tmp = save_config(cfg, run_dir, f".{CONFIG_FILE}.{os.getpid()}.tmp")
        os.replace(tmp, run_dir / CONFIG_FILE)  # atomic: other ranks may be reading it
    return run_dir


def _plain(value: Any) -> Any:
    """JSON-safe scalar: tensors/numpy to float, NaN/inf to None (JSON has no NaN)."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


try:  # transformers is a hard dependency of the runners, but keep the helpers importable without it
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover
    TrainerCallback = object  # type: ignore[misc,assignment]


class MetricsCallback(TrainerCallback):
    """Append `{"step": N, **logs}` to `<run_dir>/metrics.jsonl` at every logging step.

    Keys are the trainer's own (TRL GRPO: loss, reward, reward_std, rewards/<name>/mean, kl,
    completions/mean_length, learning_rate, ...; SFT: loss, learning_rate, ...). The final
    train summary (train_runtime, ...) is written as a row with `"summary": true`.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if not state.is_world_process_zero or not self.path.exists():
            return
        # Resumed at global_step: rows logged after that checkpoint belong to the lost history.
        rows = [r for r in read_metrics(self.path.parent) if r.get("step", 0) <= state.global_step and not r.get("summary")]
        self._write(rows, mode="w")

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
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


# ----------------------------------------------------------------------------- LoRA runs


def merge_lora_state_dict(state_dict: dict, scaling: float, adapter: str = "default") -> dict:
    """A PEFT model's state dict -> the plain model's, with W + scaling * B @ A in every
    adapted Linear. Works from a (possibly ZeRO-3-gathered) state dict, so the training model
    is never modified (merging in place and back would drift bf16 weights)."""
    out = {}
    for key, value in state_dict.items():
        if ".lora_" in key:
            continue
        name = key.removeprefix("base_model.model.")
        if ".base_layer." in key and key.endswith(".weight"):
            stem = key[: -len(".base_layer.weight")]
            a, b = state_dict[f"{stem}.lora_A.{adapter}.weight"], state_dict[f"{stem}.lora_B.{adapter}.weight"]
            value = (value.float() + scaling * (b.float() @ a.float())).to(value.dtype)
        out[name.replace(".base_layer.", ".")] = value
    return out


def save_merged(trainer, out_dir: str | Path) -> None:
    """Write the merged LoRA model + processor to `out_dir` (called on every process: the
    state dict gather is collective under ZeRO-3; only the main process writes)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    # The wrapped model: under ZeRO-3 only the DeepSpeed engine can gather the sharded weights.
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not trainer.accelerator.is_main_process:
        return
    peft_cfg = model.peft_config["default"]
    scaling = peft_cfg.lora_alpha / (peft_cfg.r ** 0.5 if peft_cfg.use_rslora else peft_cfg.r)
    merged = merge_lora_state_dict(state_dict, scaling)
    model.get_base_model().save_pretrained(out_dir, state_dict=merged)
    trainer.processing_class.save_pretrained(out_dir)


class SaveMergedCallback(TrainerCallback):
    """After each checkpoint of a LoRA run, write `checkpoint-N/merged/` (a plain model).
    `trainer` is set once the trainer exists (the callback must be passed to its constructor)."""

    trainer = None

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        save_merged(self.trainer, Path(args.output_dir) / f"checkpoint-{state.global_step}" / MERGED_DIR)


def save_final(trainer, run_dir: str | Path) -> Path:
    """`<run_dir>/final`: model + processor, loadable with `from_pretrained` like the base model.
    A LoRA run writes the merged weights there and its adapter in `final/adapter` (the layout
    aqa_core.sft uses and aqa_core.evaluate reads)."""
    from accelerate.utils import is_peft_model

    final = Path(run_dir) / FINAL_DIR
    if is_peft_model(trainer.accelerator.unwrap_model(trainer.model)):
        save_merged(trainer, final)  # collective under ZeRO-3: every process calls it
        trainer.save_model(str(final / "adapter"))
    else:
        trainer.save_model(str(final))
        if trainer.accelerator.is_main_process:
            trainer.processing_class.save_pretrained(final)
    trainer.accelerator.wait_for_everyone()
    return final


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

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):  # noqa: ANN001 - Trainer signature
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

    def torch_dtype(self):  # noqa: ANN201 - torch imported lazily
        import torch

        return getattr(torch, self.model_dtype)


def choose_precision(device: str = "auto") -> Precision:
    """bf16 on CUDA (if the GPU supports it), fp32 on CPU; `device="cpu"` forces the CPU."""
    import torch

    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise RuntimeError("device='cuda' requested but torch sees no CUDA device")
    if not use_cuda:
        return Precision("cpu", False, "float32")
    bf16 = torch.cuda.is_bf16_supported()
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return Precision("cuda", bf16, "bfloat16" if (bf16 and deepspeed) else "float32")
