r"""LoRA for both runners: the one `LoraConfig` builder, and the merged plain-model folders a LoRA
run writes beside its adapter (`checkpoint-N/merged/`, `final/`), which every later stage loads
like any model.

The paper adapts the language model only (the Whisper audio tower has `q_proj`/`k_proj`/`v_proj`
too). A recipe states its targets in `lora_target_modules`: projection names (a list, or one
string of comma-separated names), which become a regex limited to the language model, or a
regex (any other string), which PEFT matches against each module's full name.

>>> print(lora_targets(["v_proj", "q_proj"]))
.*\blanguage_model\..*\.(?:q_proj|v_proj)
>>> lora_targets("q_proj, v_proj") == lora_targets(["q_proj", "v_proj"])
True
>>> print(lora_targets(r".*language_model.*\.(q_proj|v_proj)"))
.*language_model.*\.(q_proj|v_proj)
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:  # transformers is a hard dependency of the runners; keep this module importable without it
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover
    TrainerCallback = object  # type: ignore[misc,assignment]

from ..config import RecipeError
from ..files import replace_folder
from ..runs import MERGED_DIR

#: The Qwen2 decoder's attention and MLP projections.
LM_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_NAMES = re.compile(r"\w+(\s*,\s*\w+)*")  # "q_proj, v_proj": names, not a regex


def lora_targets(target_modules: str | Sequence[str]) -> str:
    """The PEFT `target_modules` regex of a recipe's `lora_target_modules` (see the module doc);
    a bad regex, or a list item that is not a plain name, is a RecipeError."""
    if isinstance(target_modules, str):
        if not _NAMES.fullmatch(target_modules.strip()):
            try:
                re.compile(target_modules)
            except re.error as exc:
                raise RecipeError(f"lora_target_modules: {target_modules!r} is not a valid regex ({exc})") from None
            return target_modules
        target_modules = [n.strip() for n in target_modules.split(",")]
    bad = [n for n in target_modules if not re.fullmatch(r"\w+", str(n))]
    if bad or not target_modules:
        raise RecipeError("lora_target_modules: a list holds module names such as q_proj, "
                          f"got {list(target_modules)!r}; give a regex as a single string")
    names = "|".join(sorted(set(target_modules)))
    return rf".*\blanguage_model\..*\.(?:{names})"


def lora_config(cfg: Any):  # peft imported lazily
    """The `peft.LoraConfig` of a recipe with `lora_r`, `lora_alpha`, `lora_dropout` and
    `lora_target_modules` (GRPORecipe and SFTRecipe both have them)."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=lora_targets(cfg.lora_target_modules))


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


def save_merged(trainer, out_dir: str | Path) -> None:  # a transformers Trainer
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

    def on_save(self, args, state, control, **kwargs):  # TrainerCallback signature
        # written as merged.partial/ and renamed: an interrupted save leaves no half a model to evaluate
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        partial, merged = ckpt / f"{MERGED_DIR}.partial", ckpt / MERGED_DIR
        main = self.trainer.accelerator.is_main_process
        if main and partial.exists():
            shutil.rmtree(partial)
        save_merged(self.trainer, partial)
        if main:
            replace_folder(partial, merged)
