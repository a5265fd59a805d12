"""Before a GPU hour is spent: what a recipe will need per GPU, on disk and in time, and whether
its inputs are sound. The one estimator of the project: the book's full-scale page and
`scripts/bench_train.py --estimate` print what `estimate` returns.

    python -m aqa_core preflight --recipe recipes/grpo/paper.yaml
    python -m aqa_core preflight --recipe recipes/sft/paper-full.yaml --world-size 8 --gpu h200 --json pf.json

The model is the real architecture built on PyTorch's meta device (shapes only, no weights read)
from the recipe's model folder's `config.json`, or, with none at hand, from
Qwen2-Audio-7B-Instruct's published configuration (`qwen2_audio_7b_config.json`, with its
source). Parameter counts are exact; LoRA's come from the Linear layers its targets match.

The data: when the recipe's `train_data` exists, every wav is decoded once by the project's one
audio check (`aqa_core.audio.check_audio_files`: unreadable, empty, silent and too-short files
are counted, clips longer than the 30 s window too, as the Whisper feature extractor truncates
them), giving the clip durations (-> audio tokens: 25 per second, at most 750) and the prompts'
lengths (tokenized when the model folder has a tokenizer, else 4 characters per token). Without
data it assumes AVQA: 38,000 questions of 10 s clips (AVQA's clips are 10 s, Yang et al. 2022)
with 100 template and question tokens; it says so.

Memory per GPU, GB = 1e9 bytes, under DeepSpeed ZeRO-3 over `world` GPUs, with and without
CPU offload (`recipes/accelerate/zero3.yaml`, `zero3-offload.yaml`), bf16 weights and fp32 Adam:
- model states: bf16 weights (2 B per parameter), bf16 gradients and fp32 master weights and two
  Adam moments (2 + 12 B per trained parameter), all sharded over the world; LoRA trains only the
  adapter; GRPO with beta > 0 keeps a frozen bf16 reference (sharded; LoRA: the base itself);
- the parameters ZeRO-3 gathers at once (`stage3_max_live_parameters`, 1e9, in bf16);
- activations kept for backward, per micro-batch: per token and text layer about 2 x (9 h + 4 i)
  bytes (attention inputs, q, k, v, output, norms; SwiGLU's gate, up, act, product), SDPA so no
  quadratic term; with gradient checkpointing the layer inputs (2 h) plus one layer recomputed;
  the audio encoder's 1500 positions per clip likewise when it is trained; SFT's full logits
  (fp32, tokens x vocab), which GRPO's fused LM head avoids;
- generation (GRPO): the whole bf16 policy gathered (TRL's `ds3_gather_for_generation`) and the
  KV cache of one optimizer step's completions, generated at once.
With offload the model states and the reference live in host RAM (per node, given).

Disk per checkpoint: the gathered bf16 `model.safetensors` (or LoRA's adapter, plus `merged/`
when `save_merged`), the ZeRO shards' frozen parameters (bf16; none for LoRA, whose frozen base
the Trainer leaves out of the shards) and, while a checkpoint keeps it,
the optimizer state (fp32 master weights and moments, 12 B per trained parameter). The run's
total follows `keep_optimizer_state` (newest: one optimizer state at a time) plus `final/`.

Time per optimizer step: rollout decoding bounded by memory bandwidth (every new token reads the
gathered bf16 model once; a lower bound: `generate`'s own overhead comes on top), training by
FLOPs (forward 2, backward 4 per parameter and token; 2 for a frozen part's activation
gradients; the reference's forward 2; the encoder's 1500 positions per clip) at a stated
utilisation of the GPU's dense bf16 peak. Nothing is fitted to a reported time: the official
maintainers' answer (about 4-5 hours per 1000 steps on 8 x H800, issue #34 of the official
repository) is printed beside it.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..audio import WINDOW_SECONDS  # the Whisper feature extractor's 30 s

GB = 1e9
PUBLISHED_CONFIG = Path(__file__).with_name("qwen2_audio_7b_config.json")
AUDIO_TOKENS_PER_SECOND = 25  # 100 mel frames/s, conv stride 2, pooling 2 (Qwen2-Audio)
CHARS_PER_TOKEN = 4.0
ASSUMED = {"questions": 38_000, "clip_seconds": 10.0, "text_tokens": 100}  # AVQA train, the paper's ~38k
TEMPLATE_TOKENS = 30  # chat template, system prompt and audio markers around a question
LIVE_PARAMETERS = 1e9  # stage3_max_live_parameters in recipes/accelerate/ds_zero3*.json
#: dense bf16 peak (TFLOP/s, without sparsity) and HBM bandwidth (TB/s), from the vendors' sheets
GPUS = {"h800": (989.0, 3.35), "h100": (989.0, 3.35), "h200": (989.0, 4.8), "a100": (312.0, 2.0)}
UTILISATION = 0.35  # share of the dense peak a training pass reaches (a stated assumption)
OFFICIAL_HOURS_PER_1000_STEPS = (4.0, 5.0)  # 8 x H800, the official repository's issue #34


@dataclass
class Shape:
    """What the estimate needs of the model: exact parameter counts and the text model's shape."""
    params: int
    tower: int
    projector: int
    language_model: int
    hidden: int
    layers: int
    intermediate: int
    kv_heads: int
    head_dim: int
    vocab: int
    enc_hidden: int
    enc_layers: int
    enc_ffn: int
    enc_positions: int
    lora: int = 0  # adapter parameters the recipe's LoRA targets would add
    source: str = ""


@dataclass
class DataProfile:
    questions: int
    clip_seconds: float  # mean
    text_tokens: float  # mean template + question tokens
    assumed: bool
    problems: list[tuple[str, str]] = field(default_factory=list)
    long_clips: int = 0
    source: str = ""

    @property
    def audio_tokens(self) -> float:
        return min(self.clip_seconds, WINDOW_SECONDS) * AUDIO_TOKENS_PER_SECOND

    @property
    def prompt_tokens(self) -> float:
        return self.audio_tokens + self.text_tokens + TEMPLATE_TOKENS


def model_config(model_dir: str | Path | None):  # a Qwen2AudioConfig
    """(config, source): the model folder's config.json when there is one, else the published 7B one."""
    from transformers import Qwen2AudioConfig

    if model_dir is not None and (Path(model_dir) / "config.json").is_file():
        return Qwen2AudioConfig.from_pretrained(model_dir), str(Path(model_dir) / "config.json")
    raw = {k: v for k, v in json.loads(PUBLISHED_CONFIG.read_text()).items()
           if not k.startswith("_") and k not in ("architectures", "model_type")}
    return Qwen2AudioConfig(**raw), f"Qwen2-Audio-7B-Instruct's published configuration ({PUBLISHED_CONFIG.name})"


def model_shape(model_dir: str | Path | None = None, lora_targets: str | None = None, lora_r: int = 0) -> Shape:
    """The real architecture on the meta device: exact counts, no weights read."""
    import torch
    from transformers import Qwen2AudioForConditionalGeneration

    config, source = model_config(model_dir)
    with torch.device("meta"):
        model = Qwen2AudioForConditionalGeneration(config)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    inner = model.model
    lora = 0
    if lora_targets:
        pattern = re.compile(lora_targets)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and pattern.fullmatch(name):
                lora += lora_r * (module.in_features + module.out_features)
    text, audio = config.text_config, config.audio_config
    return Shape(params=count(model), tower=count(inner.audio_tower), projector=count(inner.multi_modal_projector),
                 language_model=count(model) - count(inner.audio_tower) - count(inner.multi_modal_projector),
                 hidden=text.hidden_size, layers=text.num_hidden_layers, intermediate=text.intermediate_size,
                 kv_heads=text.num_key_value_heads, head_dim=text.hidden_size // text.num_attention_heads,
                 vocab=text.vocab_size, enc_hidden=audio.d_model, enc_layers=audio.encoder_layers,
                 enc_ffn=audio.encoder_ffn_dim, enc_positions=audio.max_source_positions, lora=lora, source=source)


def data_profile(recipe: Any, progress: bool = True) -> DataProfile:
    """The recipe's training data when it exists (every wav decoded once), else the stated AVQA
    assumption."""
    path = Path(recipe.train_data) if recipe.train_data else None
    if path is None or not path.is_file():
        return DataProfile(ASSUMED["questions"], ASSUMED["clip_seconds"], ASSUMED["text_tokens"], assumed=True,
                           source=f"assumed (no file at {recipe.train_data!r}): AVQA, {ASSUMED['questions']:,} "
                                  f"questions, {ASSUMED['clip_seconds']:g} s clips, {ASSUMED['text_tokens']} "
                                  "question tokens")
    import warnings

    from ..audio import check_audio_files
    from ..data import load_questions
    from ..prompts import user_text

    rows = load_questions(path, recipe.train_audio_dir, limit=recipe.max_train_samples, on_missing="keep")
    durations: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long clips are counted below, not warned
        problems = check_audio_files([r["audio_path"] for r in rows], progress=progress, window_seconds=None,
                                     durations=durations)
    tokenizer = _tokenizer(recipe.model_name_or_path)
    prompt = getattr(recipe, "prompt", 1)
    lengths = []
    for r in rows:
        text = user_text(r["question"], r["choices"], prompt)
        lengths.append(len(tokenizer(text)["input_ids"]) if tokenizer else len(text) / CHARS_PER_TOKEN)
    seconds = list(durations.values())
    return DataProfile(len(rows), sum(seconds) / max(1, len(seconds)), sum(lengths) / max(1, len(lengths)),
                       assumed=False, problems=problems, long_clips=sum(s > WINDOW_SECONDS for s in seconds),
                       source=f"{path}: {len(rows):,} questions, {len(seconds):,} clips decoded"
                              + ("" if tokenizer else f", prompt lengths at {CHARS_PER_TOKEN:g} characters per token"))


def _tokenizer(model_dir: str):
    if not (Path(model_dir) / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def recipe_kind(recipe: Any) -> str:
    return "grpo" if hasattr(recipe, "num_generations") else "sft"


def estimate(recipe: Any, shape: Shape, data: DataProfile, world: int = 8, gpu: str = "h800",
             utilisation: float = UTILISATION, bytes_per_weight: int = 2, zero3: bool = True) -> dict:
    """Memory per GPU (GB), disk (GB) and time (s) of a recipe; see the module docstring.
    `bytes_per_weight` 2 is bf16 on a GPU (4: fp32, as on a CPU). `zero3` False is one process
    without DeepSpeed (scripts/gpu_check.py): nothing is gathered, the weights are whole."""
    kind = recipe_kind(recipe)
    n, w = shape.params, bytes_per_weight
    lora = bool(recipe.use_peft)
    frozen_tower = bool(recipe.freeze_audio_tower) or lora
    trained = shape.lora if lora else n - (shape.tower if frozen_tower else 0)
    frozen = n if lora else n - trained
    micro = recipe.per_device_train_batch_size  # rows (GRPO: completions) per micro-batch
    accum = recipe.gradient_accumulation_steps
    completion = recipe.max_completion_length if kind == "grpo" else 8  # an SFT target: a few tokens
    seq = data.prompt_tokens + completion
    tokens = micro * seq
    h, i, L = shape.hidden, shape.intermediate, shape.layers
    per_token_layer = 2 * (9 * h + 4 * i)
    ckpt = bool(recipe.gradient_checkpointing)
    lm_act = tokens * L * 2 * h + tokens * per_token_layer if ckpt else tokens * L * per_token_layer
    enc_row = shape.enc_positions * shape.enc_layers * 2 * (9 * shape.enc_hidden + 2 * shape.enc_ffn)
    if kind == "grpo":  # share_audio_encoding: each distinct clip of a micro-batch once
        clips = min(micro, max(1, accum * micro // recipe.num_generations)) if recipe.share_audio_encoding else micro
    else:
        clips = micro
    enc_act = 0.0 if frozen_tower else clips * (enc_row if not ckpt else enc_row / shape.enc_layers * 2)
    logits = tokens * shape.vocab * 4 if kind == "sft" else 0.0
    reference = kind == "grpo" and recipe.beta > 0 and not lora
    mem = {
        "weights": w * n / world / GB,
        "gradients": w * trained / world / GB,
        "optimizer": 12 * trained / world / GB,
        "reference": (w * n / world / GB) if reference else 0.0,
        "live_gathered": w * min(LIVE_PARAMETERS, n) / GB if zero3 else 0.0,
        "activations": (lm_act + enc_act + logits) / GB,
    }
    mem["model_states"] = mem["weights"] + mem["gradients"] + mem["optimizer"]
    mem["training_peak"] = mem["model_states"] + mem["reference"] + mem["live_gathered"] + mem["activations"]
    if kind == "grpo":
        gen_rows = micro * accum  # TRL generates one optimizer step's completions at once
        kv = gen_rows * seq * 2 * L * shape.kv_heads * shape.head_dim * w
        mem["generation_gathered"] = w * n / GB if zero3 else 0.0  # ds3_gather_for_generation
        mem["kv_cache"] = kv / GB
        mem["generation_peak"] = mem["model_states"] + mem["reference"] + mem["generation_gathered"] + mem["kv_cache"]
    else:
        mem["generation_peak"] = 0.0
    mem["peak"] = max(mem["training_peak"], mem["generation_peak"])
    host = mem["model_states"] + mem["reference"]
    mem["offload_peak"] = mem["peak"] - host
    mem["offload_host_ram_per_node"] = host * min(world, 8)  # 8 GPUs a node

    # steps
    per_step_rows = micro * accum * world
    if kind == "grpo":
        steps = recipe.max_steps
        questions = steps * per_step_rows // recipe.num_generations
    else:
        epochs_steps = math.ceil(data.questions * recipe.num_train_epochs / per_step_rows)
        steps = recipe.max_steps if recipe.max_steps > 0 else epochs_steps
        questions = steps * per_step_rows
    saves = steps // recipe.save_steps

    # disk (GB)
    weights_file = (w * shape.lora if lora else w * n) / GB
    merged = w * n / GB if lora and getattr(recipe, "save_merged", False) else 0.0
    # ZeRO-3 saves frozen parameters in its model-state shards, except a PEFT model's (the Trainer
    # saves those with exclude_frozen_parameters: measured on the tiny model, tests/test_zero3.py)
    frozen_shards = 0.0 if lora else w * frozen / GB
    optim = 12 * trained / GB
    weights_only = weights_file + merged + frozen_shards
    keep = getattr(recipe, "keep_optimizer_state", "all")
    disk = {
        "checkpoint_with_optimizer": weights_only + optim,
        "checkpoint_weights_only": weights_only,
        "final": w * n / GB + weights_file * lora,
        "checkpoints": saves,
    }
    kept_optim = 1 if keep == "newest" else saves
    disk["run_total"] = saves * weights_only + min(saves, kept_optim) * optim + disk["final"]

    # time per optimizer step, per GPU
    peak_tflops, bandwidth = GPUS[gpu]
    flops_rate = peak_tflops * 1e12 * utilisation
    rows = micro * accum  # per GPU per step
    lm_n = shape.language_model + shape.projector
    backward = 4 if not lora else 2  # a frozen weight needs no weight gradient
    train_flops = rows * seq * (2 + backward) * lm_n
    enc_flops = (rows if kind == "sft" or not recipe.share_audio_encoding else max(1, rows // recipe.num_generations)) \
        * shape.enc_positions * 2 * shape.tower * (1 if frozen_tower else 3)
    if ckpt:
        train_flops += rows * seq * 2 * lm_n  # the recomputed forward
    t = {"gpu": gpu, "utilisation": utilisation, "train_seconds": 0.0, "decode_seconds_min": 0.0,
         "prefill_seconds": 0.0}
    if kind == "grpo":
        ref_flops = rows * seq * 2 * lm_n if recipe.beta > 0 else 0.0
        prefill = rows * data.prompt_tokens * 2 * lm_n
        t["prefill_seconds"] = prefill / flops_rate
        t["decode_seconds_min"] = completion * w * n / (bandwidth * 1e12)
        t["train_seconds"] = (train_flops + ref_flops + enc_flops) / flops_rate
    else:
        t["train_seconds"] = (train_flops + enc_flops) / flops_rate
    t["step_seconds"] = t["train_seconds"] + t["decode_seconds_min"] + t["prefill_seconds"]
    t["run_hours"] = steps * t["step_seconds"] / 3600
    if kind == "grpo":
        lo, hi = OFFICIAL_HOURS_PER_1000_STEPS
        t["official_step_seconds"] = [lo * 3.6, hi * 3.6]  # 4-5 h per 1000 steps
    return {"kind": kind, "world": world, "bytes_per_weight": w, "parameters": n, "trained_parameters": trained,
            "steps": steps, "questions_seen": questions, "rows_per_step": per_step_rows,
            "prompt_tokens": data.prompt_tokens, "sequence_tokens": seq,
            "memory_gb": mem, "disk_gb": disk, "time": t}


def checks(recipe: Any, data: DataProfile, est: dict, world: int) -> list[tuple[str, bool, str]]:
    """(check, passed, detail) for the recipe's inputs and the machine it would run on."""
    out = []
    if not data.assumed:
        out.append(("every wav decodes", not data.problems,
                    f"{len(data.problems)} unusable" + (f", e.g. {data.problems[0][0]}: {data.problems[0][1]}"
                                                         if data.problems else "")))
        out.append(("clips within the 30 s window", data.long_clips == 0,
                    f"{data.long_clips} longer: the feature extractor keeps only their first 30 s"))
    expected = getattr(recipe, "num_processes", None)
    if expected is not None:
        out.append(("world size matches the recipe", expected == world,
                    f"recipe num_processes {expected}, preflight for {world}: the batch per step changes with it"))
    folder = Path(recipe.output_dir).resolve()
    probe = next((p for p in [folder, *folder.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free / GB
    need = est["disk_gb"]["run_total"]
    out.append(("free disk for the run", free >= need,
                f"{free:,.0f} GB free at {probe}, the run needs ~{need:,.0f} GB"))
    return out


def report(recipe_path: str, recipe: Any, shape: Shape, data: DataProfile, est: dict,
           results: list[tuple[str, bool, str]]) -> str:
    m, d, t = est["memory_gb"], est["disk_gb"], est["time"]
    lines = [f"preflight {recipe_path}: {est['kind'].upper()}, ZeRO-3 over {est['world']} GPUs ({t['gpu']})",
             f"  model  {shape.params / 1e9:.2f}B parameters ({shape.tower / 1e9:.2f}B audio encoder); "
             f"{est['trained_parameters'] / 1e9:.3f}B trained; from {shape.source}",
             f"  data   {data.source}",
             f"         prompt ~{est['prompt_tokens']:.0f} tokens ({data.audio_tokens:.0f} audio), sequence "
             f"~{est['sequence_tokens']:.0f}; {est['steps']:,} steps, {est['rows_per_step']:,} rows per step, "
             f"{est['questions_seen']:,} questions seen",
             "  memory per GPU (GB)                 ZeRO-3   + CPU offload"]
    rows = [("bf16 weights, sharded", m["weights"], 0.0), ("gradients, sharded", m["gradients"], 0.0),
            ("fp32 master + Adam, sharded", m["optimizer"], 0.0), ("frozen reference, sharded", m["reference"], 0.0),
            ("ZeRO-3 live gathered params", m["live_gathered"], m["live_gathered"]),
            ("activations (one micro-batch)", m["activations"], m["activations"]),
            ("training pass peak", m["training_peak"], m["training_peak"] - m["model_states"] - m["reference"])]
    if est["kind"] == "grpo":
        rows += [("generation: gathered policy", m["generation_gathered"], m["generation_gathered"]),
                 ("generation: KV cache", m["kv_cache"], m["kv_cache"]),
                 ("generation peak", m["generation_peak"], m["generation_peak"] - m["model_states"] - m["reference"])]
    rows.append(("PEAK", m["peak"], m["offload_peak"]))
    lines += [f"    {name:<34}{a:>7.1f}   {b:>7.1f}" for name, a, b in rows]
    lines.append(f"    host RAM per node with offload: ~{m['offload_host_ram_per_node']:,.0f} GB")
    lines += ["  disk (GB)",
              f"    checkpoint with optimizer state {d['checkpoint_with_optimizer']:,.1f}, weights only "
              f"{d['checkpoint_weights_only']:,.1f}; {d['checkpoints']} checkpoints "
              f"(keep_optimizer_state: {getattr(recipe, 'keep_optimizer_state', 'all')}) + final "
              f"{d['final']:,.1f} = ~{d['run_total']:,.0f} for the run"]
    step = (f"  time   ~{t['step_seconds']:.1f} s per step (training {t['train_seconds']:.1f} s at "
            f"{t['utilisation']:.0%} of the bf16 peak")
    if est["kind"] == "grpo":
        step += (f"; rollout >= {t['decode_seconds_min']:.1f} s decoding {recipe.max_completion_length} tokens at "
                 f"memory bandwidth, prefill {t['prefill_seconds']:.1f} s")
    lines.append(step + f"), ~{t['run_hours']:.1f} h for the run")
    if est["kind"] == "grpo":
        lo, hi = t["official_step_seconds"]
        lines.append(f"         the official maintainers: about 4-5 h per 1000 steps on 8 x H800 = {lo:.0f}-{hi:.0f} s "
                     "per step (issue #34 of the official repository; 256 tokens, CPU offload, HF generate)")
    lines.append("  checks")
    lines += [f"    [{'ok' if ok else '!!'}] {name}: {detail}" for name, ok, detail in results]
    return "\n".join(lines)


def load_any_recipe(recipe_path: str | Path, overrides: list[str] | None = None):
    """A GRPO or SFT recipe, by its keys: a recipe that sets a key only GRPORecipe has (its
    objective: beta, num_generations, ...) is a GRPO recipe. (`prompt` is no sign: SFT has one too.)"""
    from dataclasses import fields

    from ..config import load_recipe, read_recipe
    from .grpo import GRPORecipe
    from .sft import SFTRecipe

    grpo_only = {f.name for f in fields(GRPORecipe)} - {f.name for f in fields(SFTRecipe)}
    cls = GRPORecipe if grpo_only & set(read_recipe(recipe_path)) else SFTRecipe
    return load_recipe(cls, recipe_path, overrides)


def recipe_estimate(recipe_path: str | Path, world: int | None = None, gpu: str = "h800", **kwargs) -> dict:
    """`estimate` of a recipe with the stated data assumption (no files read): what the book's
    full-scale page prints for the paper recipes."""
    from .lora import lora_targets

    recipe = load_any_recipe(recipe_path)
    model_dir = recipe.model_name_or_path if Path(recipe.model_name_or_path).is_dir() else None
    shape = model_shape(model_dir, lora_targets(recipe.lora_target_modules) if recipe.use_peft else None,
                        recipe.lora_r if recipe.use_peft else 0)
    data = DataProfile(ASSUMED["questions"], ASSUMED["clip_seconds"], ASSUMED["text_tokens"], assumed=True)
    world = world or getattr(recipe, "num_processes", None) or 8
    return estimate(recipe, shape, data, world=world, gpu=gpu, **kwargs)


def book_values(root: str | Path) -> dict[str, float]:
    """The full-scale page's figures (glued as `zero3_*`, `sft_full_*`, `sft_lora_*`): the paper
    GRPO recipe per GPU, the disk of every paper recipe, the time against the official answer."""
    root = Path(root)
    grpo = recipe_estimate(root / "recipes/grpo/paper.yaml")
    m, _, t = grpo["memory_gb"], grpo["disk_gb"], grpo["time"]
    values = {"zero3_parameters_billions": grpo["parameters"] / 1e9, "zero3_weights_gb": m["weights"],
              "zero3_grads_gb": m["gradients"], "zero3_optimizer_gb": m["optimizer"],
              "zero3_reference_gb": m["reference"], "zero3_static_gb": m["model_states"] + m["reference"],
              "zero3_activations_gb": m["activations"], "zero3_train_peak_gb": m["training_peak"],
              "zero3_generation_peak_gb": m["generation_peak"], "zero3_offload_train_peak_gb": m["offload_peak"],
              "zero3_offload_host_ram_gb_per_node": m["offload_host_ram_per_node"],
              "zero3_step_seconds": t["step_seconds"], "zero3_decode_seconds_min": t["decode_seconds_min"],
              "zero3_train_seconds": t["train_seconds"], "zero3_run_hours": t["run_hours"],
              "zero3_official_step_lo": t["official_step_seconds"][0],
              "zero3_official_step_hi": t["official_step_seconds"][1]}
    for key, path in (("zero3", "recipes/grpo/paper.yaml"), ("official", "recipes/grpo/official-code.yaml"),
                      ("sft_full", "recipes/sft/paper-full.yaml"), ("sft_lora", "recipes/sft/paper-lora.yaml")):
        disk = recipe_estimate(root / path)["disk_gb"]
        values.update({f"{key}_disk_checkpoint_gb": disk["checkpoint_with_optimizer"],
                       f"{key}_disk_weights_only_gb": disk["checkpoint_weights_only"],
                       f"{key}_disk_run_gb": disk["run_total"], f"{key}_disk_checkpoints": disk["checkpoints"]})
    return {k: float(v) for k, v in values.items()}


def run_preflight(recipe_path: str, overrides: list[str] | None = None, world: int | None = None,
                  gpu: str = "h800", utilisation: float = UTILISATION, progress: bool = True) -> dict:
    from .lora import lora_targets

    recipe = load_any_recipe(recipe_path, overrides)
    world = world or getattr(recipe, "num_processes", None) or 8
    model_dir = recipe.model_name_or_path if Path(recipe.model_name_or_path).is_dir() else None
    shape = model_shape(model_dir, lora_targets(recipe.lora_target_modules) if recipe.use_peft else None,
                        recipe.lora_r if recipe.use_peft else 0)
    data = data_profile(recipe, progress=progress)
    est = estimate(recipe, shape, data, world=world, gpu=gpu, utilisation=utilisation)
    results = checks(recipe, data, est, world)
    return {"recipe": str(recipe_path), "shape": asdict(shape),
            "data": {**asdict(data), "problems": len(data.problems)},
            "estimate": est, "checks": [{"check": c, "ok": ok, "detail": d} for c, ok, d in results],
            "text": report(str(recipe_path), recipe, shape, data, est, results)}


def cli(argv: list[str]) -> int:
    from ..config import add_set_argument, set_overrides

    ap = argparse.ArgumentParser(prog="python -m aqa_core preflight", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True, help="a GRPO or SFT recipe, e.g. recipes/grpo/paper.yaml")
    add_set_argument(ap, "override recipe keys, as in the runners")
    ap.add_argument("--world-size", type=int, default=None, help="GPUs (default: the recipe's num_processes, or 8)")
    ap.add_argument("--gpu", choices=sorted(GPUS), default="h800",
                    help="peak FLOP/s and memory bandwidth (default h800)")
    ap.add_argument("--utilisation", type=float, default=UTILISATION, help="share of the bf16 peak in training")
    ap.add_argument("--json", help="also write the whole result to this JSON file")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    from ..config import RecipeError

    try:
        result = run_preflight(a.recipe, set_overrides(a), a.world_size, a.gpu, a.utilisation,
                               progress=not a.quiet)
    except (RecipeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result["text"])
    if a.json:
        from ..files import write_atomic

        write_atomic(Path(a.json), json.dumps({k: v for k, v in result.items() if k != "text"}, indent=1) + "\n")
    return 1 if not all(c["ok"] for c in result["checks"]) else 0
