"""Training cost: seconds per step on the mini model (GRPO: and the share spent generating),
peak memory; and, for the paper recipe, the estimated GPU memory per device and rollout cost.

    python scripts/bench_train.py                       # every section, mini model, 10 steps each
    python scripts/bench_train.py --sections grpo --steps 20 --threads 2 --out runs/bench/train.json
    python scripts/bench_train.py --estimate            # only the paper-scale estimate (no model needed)
    python scripts/bench_train.py --tower-cache both    # each section with and without the frozen-tower
                                                        # cache (aqa_core.tower_cache), one after the other
    python scripts/bench_train.py --sections sft-full --collate-cache both --sft-set max_train_samples=32
                                                        # SFT with and without the collator's cache of
                                                        # encodings; a small set so the timed steps are
                                                        # in epoch 2 and later, where it replays

Each section (`@section("name")`: a function of the parsed args returning a dict of numbers)
runs in its own subprocess, so its peak memory is its own: peak RSS on CPU, peak allocated
CUDA memory on GPU. Steps after `--warmup` are timed wall-clock from one step's end to the
next's: the batch's loading and collating, the step and the optimizer (the README's tower-cache
figures of 2026-12-01 timed the step alone, from its start).
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
from collections.abc import Callable
from pathlib import Path

from aqa_core.train.preflight import run_preflight

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
    """A TrainerCallback recording the wall time from one optimizer step's end to the next's
    (`.times`): the step and the loading and collating of its batch, which the trainer does
    before `on_step_begin` (a step's own span would leave the collator out). The first step is
    timed from `on_train_begin`."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._t0 = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            self.times.append(now - self._t0)
            self._t0 = now

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
    from aqa_core.train.grpo import GRPORecipe, build_trainer

    base_rss = peak_memory_mb()["peak_rss_mb"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_recipe(GRPORecipe, REPO / "recipes/grpo/mini.yaml", [
            f"model_name_or_path={args.model}", f"train_data={Path(args.data) / 'train.jsonl'}",
            f"train_audio_dir={Path(args.data) / 'train-audios'}", f"output_dir={tmp}",
            f"max_steps={args.warmup + args.steps}", "save_steps=1000000", f"prompt={args.prompt}",
            f"torch_threads={args.threads}", f"cache_audio_tower={args.tower_cache != 'off'}", *args.set,
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
    from aqa_core.train.sft import SFTRecipe, run_sft

    base_rss = peak_memory_mb()["peak_rss_mb"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_recipe(SFTRecipe, REPO / recipe, [
            f"model_name_or_path={args.model}", f"train_data={Path(args.data) / 'train.jsonl'}",
            f"train_audio_dir={Path(args.data) / 'train-audios'}", f"output_dir={tmp}/run",
            f"max_steps={args.warmup + args.steps}", "save_steps=1000000", "save_final=false",
            f"cache_audio_tower={args.tower_cache != 'off'}",
            *(["collate_cache_mb=0"] if args.collate_cache == "off" else []), *args.sft_set,
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


# ----------------------------------------------------------------------------- driver


def _run_section_subprocess(name: str, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--only", name, *argv]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        raise RuntimeError(f"section {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_section(label: str, r: dict, threads: int) -> None:
    extra = f", generating {r['generation_share']:.0%}" if "generation_share" in r else ""
    print(f"{label}: {r['seconds_per_step']:.3f} s/step{extra}, peak RSS {r['peak_rss_mb']:.0f} MB "
          f"(after imports {r.get('baseline_rss_mb', float('nan')):.0f} MB), {threads} threads", flush=True)


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
    ap.add_argument("--tower-cache", choices=("on", "off", "both"), default="on",
                    help="replay the frozen tower's outputs (the recipes' default: on); both: run each section twice")
    ap.add_argument("--collate-cache", choices=("on", "off", "both"), default="on",
                    help="SFT: replay encoded examples in later epochs (the recipes' default: on); both: twice")
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
    paper = run_preflight(str(REPO / "recipes/grpo/paper.yaml"), progress=False)  # the one estimator
    results: dict = {"paper_estimate": paper["estimate"]}
    if not args.estimate:
        passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
        for name in args.sections or list(SECTIONS):
            if name not in SECTIONS:
                ap.error(f"unknown section {name!r}; valid: {', '.join(SECTIONS)}")
            # the cache compared (when one of them is "both"), each variant in its own subprocess
            for cache in ("tower", "collate"):
                mode = getattr(args, f"{cache}_cache")
                if mode != "both" or (cache == "collate" and not name.startswith("sft")):
                    continue
                for m in ("on", "off"):
                    label = f"{name} ({cache} cache {m})"
                    r = results[label] = _run_section_subprocess(name, [*passthrough, f"--{cache}-cache", m])
                    _print_section(label, r, args.threads)
                on, off = results[f"{name} ({cache} cache on)"], results[f"{name} ({cache} cache off)"]
                print(f"{name}: the {cache} cache makes a step {off['seconds_per_step'] / on['seconds_per_step']:.2f}x "
                      f"as fast ({off['seconds_per_step']:.3f} -> {on['seconds_per_step']:.3f} s/step)", flush=True)
                break
            else:
                r = results[name] = _run_section_subprocess(name, passthrough)
                _print_section(name, r, args.threads)
    print(paper["text"])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
