"""Training cost: seconds per step on the mini model (GRPO: and the share spent generating),
peak memory; and, for the paper recipe, the estimated GPU memory per device and rollout cost.

    python scripts/bench_train.py                       # every section, mini model, 10 steps each
    python scripts/bench_train.py --sections grpo --steps 20 --threads 2 --out runs/bench/train.json
    python scripts/bench_train.py --estimate            # only the paper-scale estimate (no model needed)

Each section (`@section("name")`: a function of the parsed args returning a dict of numbers)
runs in its own subprocess, so its peak memory is its own: peak RSS on CPU, peak allocated
CUDA memory on GPU. Steps after `--warmup` are timed wall-clock, optimizer included.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {}


def section(name: str):
    """Register a benchmark section; it returns {metric: number}."""
    def register(fn):
        SECTIONS[name] = fn
        return fn
    return register


# ----------------------------------------------------------------------------- shared helpers


def step_timer():
    """A TrainerCallback recording each optimizer step's wall time (`.times`)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._t0 = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._t0)

    return StepTimer()


def peak_memory_mb() -> dict:
    """Peak memory of this process so far: CPU resident set, and CUDA allocations if any."""
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


# ----------------------------------------------------------------------------- GRPO


@section("grpo")
def bench_grpo(args: argparse.Namespace) -> dict:
    """GRPO with recipes/grpo/mini.yaml: s/step, the share of a step spent in `generate`."""
    from aqa_core.config import load_recipe
    from aqa_core.grpo import GRPORecipe, build_trainer

    base_rss = peak_memory_mb()["peak_rss_mb"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_recipe(GRPORecipe, REPO / "recipes/grpo/mini.yaml", [
            f"model_name_or_path={args.model}", f"train_data={Path(args.data) / 'train.jsonl'}",
            f"train_audio_dir={Path(args.data) / 'train-audios'}", f"output_dir={tmp}",
            f"max_steps={args.warmup + args.steps}", "save_steps=1000000", f"prompt={args.prompt}",
            f"torch_threads={args.threads}", *args.set,
        ])
        timer = step_timer()
        trainer = build_trainer(cfg, tmp, callbacks=[timer])
        trainer.train()
    rows = [r for r in trainer.state.log_history if "timing/generation_s" in r][args.warmup:]
    step_s = timer.times[args.warmup:]
    gen_s = [r["timing/generation_s"] for r in rows]
    return {
        "seconds_per_step": _mean(step_s),
        "generation_seconds_per_step": _mean(gen_s),
        "generation_share": _mean(gen_s) / _mean(step_s),
        "completions_per_step": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps,
        "mean_completion_tokens": _mean([r["completions/mean_length"] for r in rows]),
        "max_completion_length": cfg.max_completion_length,
        "steps_timed": len(step_s),
        "threads": args.threads,
        "baseline_rss_mb": base_rss,
        **peak_memory_mb(),
    }


# ----------------------------------------------------------------------------- SFT


def _bench_sft(args: argparse.Namespace, recipe: str) -> dict:
    """SFT with a mini recipe (prompt <1>, collator with audio): s/step over `--steps` steps."""
    from aqa_core.config import load_recipe
    from aqa_core.sft import SFTRecipe, run_sft

    base_rss = peak_memory_mb()["peak_rss_mb"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_recipe(SFTRecipe, REPO / recipe, [
            f"model_name_or_path={args.model}", f"train_data={Path(args.data) / 'train.jsonl'}",
            f"train_audio_dir={Path(args.data) / 'train-audios'}", f"output_dir={tmp}/run",
            f"max_steps={args.warmup + args.steps}", "save_steps=1000000", "save_final=false", *args.sft_set,
        ])
        timer = step_timer()
        run_sft(cfg, callbacks=[timer])
    step_s = timer.times[args.warmup:]
    return {
        "seconds_per_step": _mean(step_s),
        "questions_per_step": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps,
        "steps_timed": len(step_s),
        "threads": args.threads,
        "baseline_rss_mb": base_rss,
        **peak_memory_mb(),
    }


@section("sft-full")
def bench_sft_full(args: argparse.Namespace) -> dict:
    return _bench_sft(args, "recipes/sft/mini-full.yaml")


@section("sft-lora")
def bench_sft_lora(args: argparse.Namespace) -> dict:
    return _bench_sft(args, "recipes/sft/mini-lora.yaml")


# ----------------------------------------------------------------------------- the paper scale


#: Qwen2-Audio-7B-Instruct's shape, from its published config (not re-checked offline here):
#: Qwen-7B text model, Whisper-large-v3-shaped audio encoder with a 30 s window.
QWEN2_AUDIO_7B = dict(
    params=8.2e9,  # the paper's figure; these shapes count ~8.4e9 with untied embeddings
    hidden=4096, layers=32, kv_heads=32, head_dim=128, intermediate=11008, vocab=156032,
    enc_hidden=1280, enc_layers=32, enc_ffn=5120, enc_positions=1500,
)


def paper_estimate(world: int = 8, completions_per_device: int = 8, grad_accum: int = 2, num_generations: int = 8,
                   prompt_tokens: int = 350, completion_tokens: int = 512, m: dict = QWEN2_AUDIO_7B) -> dict:
    """GPU memory per device for recipes/grpo/paper.yaml under ZeRO-3 (GB = 1e9 bytes), and
    the rollout volume. `prompt_tokens` ~350 is a 10 s AVQA clip (250 audio tokens) plus
    ~100 template/question tokens; a 30 s clip gives ~850. Order-of-magnitude arithmetic:
    bf16 activations kept for backward (no checkpointing, SDPA attention, so no seq^2 term)."""
    gb = 1e9
    n = m["params"]
    seq = prompt_tokens + completion_tokens
    tokens = completions_per_device * seq  # one micro-batch
    h, i = m["hidden"], m["intermediate"]
    # per token and layer: attention (norm in, normed, q, k, v, attention out) ~6h, residual h;
    # SwiGLU MLP: norm in, normed (2h), gate, up, act(gate), gate*up (4i); 2 bytes each
    lm_act = tokens * m["layers"] * 2 * (7 * h + 2 * h + 4 * i)
    eh = m["enc_hidden"]  # the encoder sees the whole 30 s window (1500 positions) for every row
    enc_act_per_row = m["enc_positions"] * m["enc_layers"] * 2 * (7 * eh + 2 * eh + 2 * m["enc_ffn"])
    enc_act = completions_per_device * enc_act_per_row
    # with share_audio_encoding (the default) a micro-batch encodes each distinct clip once: TRL
    # shuffles one generation batch (grad_accum prompts x G) into grad_accum micro-batches
    distinct_clips = min(completions_per_device, grad_accum * completions_per_device // num_generations)
    kv_per_token = 2 * m["layers"] * m["kv_heads"] * m["head_dim"] * 2
    gen_rows = completions_per_device * grad_accum  # TRL generates one optimizer step's completions at once
    est = {
        "policy_states_gb": 16 * n / world / gb,  # bf16 weights + bf16 grads + fp32 master/m/v, sharded
        "reference_gb": 2 * n / world / gb,  # frozen bf16 copy, sharded
        "zero3_live_params_gb": 2 * 1e9 / gb,  # stage3_max_live_parameters 1e9 in bf16
        "lm_activations_gb": lm_act / gb,
        "encoder_activations_gb": enc_act / gb,
        "encoder_activations_shared_gb": distinct_clips * enc_act_per_row / gb,
        "generation_gathered_weights_gb": 2 * n / gb,  # ds3_gather_for_generation: the whole bf16 model
        "kv_cache_gb": gen_rows * seq * kv_per_token / gb,
        "logits_if_materialised_gb": tokens * m["vocab"] * 4 / gb,  # avoided by TRL 1.16's fused LM head
    }
    est["train_peak_gb"] = (est["policy_states_gb"] + est["reference_gb"] + est["zero3_live_params_gb"]
                            + est["lm_activations_gb"] + est["encoder_activations_shared_gb"])
    est["train_peak_unshared_encoder_gb"] = (est["train_peak_gb"] - est["encoder_activations_shared_gb"]
                                             + est["encoder_activations_gb"])
    est["generation_peak_gb"] = (est["policy_states_gb"] + est["reference_gb"] + est["generation_gathered_weights_gb"]
                                 + est["kv_cache_gb"])
    est["offload_train_peak_gb"] = est["train_peak_gb"] - est["policy_states_gb"] - est["reference_gb"]
    est["offload_host_ram_gb_per_node"] = (16 + 2) * n / gb  # policy states + reference, all ranks, on the host
    lm_params = n - 0.64e9
    per_step_completions = world * completions_per_device * grad_accum
    est.update({
        "completions_per_step": per_step_completions,
        "prompts_per_step": per_step_completions // 8,
        "generated_tokens_per_step_max": per_step_completions * completion_tokens,
        # decode: 2 FLOPs per LM parameter per token; training: 6 per parameter per token (policy)
        # plus 2 for the reference pass; encoder: every row re-encodes its 30 s window
        "rollout_decode_tflop_per_gpu_step_max": 2 * lm_params * per_step_completions * completion_tokens / world / 1e12,
        "train_tflop_per_gpu_step": (6 + 2) * n * per_step_completions * seq / world / 1e12,
        # decoding is memory-bound: each new token reads the whole gathered bf16 model from HBM
        "min_decode_seconds_per_step_at_2tbs": completion_tokens * 2 * n / 2e12,
        "train_seconds_per_step_at_125tflops": (6 + 2) * n * per_step_completions * seq / world / 125e12,
    })
    return est


def print_estimate(est: dict) -> None:
    print("paper recipe (recipes/grpo/paper.yaml), ZeRO-3 over 8 GPUs, per device:")
    for k, v in est.items():
        print(f"  {k:<36} {v:>12,.2f}" if isinstance(v, float) else f"  {k:<36} {v:>12,}")


# ----------------------------------------------------------------------------- driver


def _run_section_subprocess(name: str, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--only", name, *argv]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        raise RuntimeError(f"section {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/mini/base", help="mini base model folder")
    ap.add_argument("--data", default="runs/mini/data", help="mini data folder (train.jsonl, train-audios/)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per section")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--prompt", type=int, default=2, help="GRPO prompt (2 or 3)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra GRPO recipe overrides")
    ap.add_argument("--sft-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra SFT recipe overrides")
    ap.add_argument("--sections", nargs="*", default=None, help=f"subset of {list(SECTIONS)}")
    ap.add_argument("--estimate", action="store_true", help="print only the paper-scale estimate")
    ap.add_argument("--out", help="also write every number to this JSON file")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one section, print its JSON
    args = ap.parse_args(argv)

    if args.only:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(SECTIONS[args.only](args)))
        return 0
    results: dict = {"paper_estimate": paper_estimate()}
    if not args.estimate:
        passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
        for name in args.sections or list(SECTIONS):
            if name not in SECTIONS:
                ap.error(f"unknown section {name!r}; valid: {', '.join(SECTIONS)}")
            results[name] = _run_section_subprocess(name, passthrough)
            r = results[name]
            extra = f", generating {r['generation_share']:.0%}" if "generation_share" in r else ""
            print(f"{name}: {r['seconds_per_step']:.3f} s/step{extra}, peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(after imports {r.get('baseline_rss_mb', float('nan')):.0f} MB), {args.threads} threads")
    print_estimate(results["paper_estimate"])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
