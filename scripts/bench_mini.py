"""Benchmark the mini scale's first two stages on this machine: data generation + base-model build
(wall time, peak memory), then a quick greedy check of the base model on test-mini.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_mini.py --out runs/bench-mini [--steps 100] [--seed 0]

Prints the figures and writes OUT/bench.json. Both stages are forced (a cached build would time
nothing); `--reuse` keeps what OUT already holds. The accuracy check here is a plain greedy loop
scored with the official MMAU rule (`mmau_string_match` on `extract_answer`), for the base
model's report only; the study's evaluator is `python -m aqa_core evaluate`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections import Counter, defaultdict
from pathlib import Path


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory of this process and of its finished children (Linux: KiB -> MiB)."""
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def greedy_check(model_dir: Path, test_json: Path, prompt: int, batch_size: int = 16,
                 max_new_tokens: int = 16, limit: int | None = None) -> dict:
    """Greedy answers to test-mini with `prompt`; accuracy per task (official string match on the
    extracted answer), 95% Wilson CI, chance level (mean 1/len(choices)) and % with <answer> tags."""
    import torch
    from tqdm.auto import tqdm

    from aqa_core.answers import extract_answer, has_answer_tags
    from aqa_core.audio import load_audio
    from aqa_core.data import load_mmau
    from aqa_core.eval.mmau import mmau_string_match, wilson_interval
    from aqa_core.mini import model as mini_model
    from aqa_core.prompts import build_messages

    model, processor = mini_model.load(model_dir)
    model.eval()
    records = load_mmau(test_json)[:limit]
    by_task: dict[str, list] = defaultdict(list)
    tagged, examples = 0, []
    answers: dict[str, Counter] = defaultdict(Counter)
    sub_ok: dict[str, list] = defaultdict(list)
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(records), batch_size), desc=f"greedy prompt {prompt}", unit="batch"):
        batch = records[i:i + batch_size]
        texts = [processor.apply_chat_template(build_messages(r, prompt), add_generation_prompt=True, tokenize=False)
                 for r in batch]
        inputs = processor(text=texts, audio=[load_audio(r["audio_path"]) for r in batch], sampling_rate=16000,
                           return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        outs = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for r, o in zip(batch, outs, strict=False):
            ok = mmau_string_match(r["answer"], extract_answer(o), r["choices"])
            by_task[r["task"]].append((ok, 1 / len(r["choices"])))
            by_task["total"].append((ok, 1 / len(r["choices"])))
            answers[r["sub-category"]][extract_answer(o)] += 1
            sub_ok[r["sub-category"]].append(ok)
            tagged += has_answer_tags(o)
            if len(examples) < 6:
                examples.append({"question": r["question"], "answer": r["answer"], "output": o})
    res = {"prompt": prompt, "items": len(records), "seconds": round(time.perf_counter() - t0, 1),
           "tagged_percent": round(100 * tagged / max(1, len(records)), 1), "examples": examples, "tasks": {}}
    for task, xs in sorted(by_task.items()):
        correct = sum(ok for ok, _ in xs)
        lo, hi = wilson_interval(correct, len(xs))
        res["tasks"][task] = {"n": len(xs), "accuracy": round(100 * correct / len(xs), 1),
                              "ci95": [round(lo, 1), round(hi, 1)],
                              "chance": round(100 * sum(c for _, c in xs) / len(xs), 1)}
    res["sub_categories"] = {sub: {"accuracy": round(100 * sum(v) / len(v), 1), "n": len(v),
                                   "top_answers": dict(answers[sub].most_common(5))}
                             for sub, v in sorted(sub_ok.items())}
    return res


def time_sft_steps(model_dir: Path, train_jsonl: Path, steps: int = 4, batch_size: int = 16) -> dict:
    """Seconds per plain SFT step (collate + forward + backward + AdamW, audio tower frozen and run
    every step, as a trainer does) on train items with prompt 1; the first step is warm-up."""
    import torch

    from aqa_core.audio_tower import audio_tower
    from aqa_core.data import load_avqa_jsonl
    from aqa_core.mini import model as mini_model
    from aqa_core.train.collate import SFTCollator

    model, processor = mini_model.load(model_dir)
    audio_tower(model).requires_grad_(False)
    model.train()
    records = load_avqa_jsonl(train_jsonl, audio_dir=train_jsonl.parent / "train-audios", on_missing="error")
    collate = SFTCollator(processor)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for i in range(steps):
        t = time.perf_counter()
        loss = model(**collate(records[i * batch_size:(i + 1) * batch_size])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    return {"batch_size": batch_size, "seconds_per_step": round(sum(times[1:]) / max(1, len(times) - 1), 2),
            "steps_timed": len(times) - 1}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench-mini", help="work folder (data/ and base/ go inside)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="base training steps (default: BaseTraining.steps)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="keep cached data/base instead of forcing a rebuild")
    ap.add_argument("--no-eval", action="store_true", help="skip the greedy accuracy check")
    ap.add_argument("--eval-limit", type=int, default=None, help="only the first N test-mini items")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from aqa_core.mini import data as mini_data
    from aqa_core.mini import model as mini_model

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    t0 = time.perf_counter()
    man = mini_data.generate(out / "data", seed=a.seed, force=not a.reuse)
    t_data = time.perf_counter() - t0
    t1 = time.perf_counter()
    mini_model.build_base(out / "data", out / "base", seed=a.seed, steps=a.steps, threads=a.threads,
                          force=not a.reuse)
    t_base = time.perf_counter() - t1
    info = json.loads((out / "base" / "build_info.json").read_text())
    figures = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": a.threads, "loadavg_1min": os.getloadavg()[0]},
        "data_seconds": round(t_data, 1), "data_clips": sum(man["sizes"].values()),
        "base_seconds": round(t_base, 1), "base_train_seconds": info["train_seconds"],
        "seconds_per_step": info["seconds_per_step"], "steps": info["hyperparameters"]["steps"],
        "batch_size": info["hyperparameters"]["batch_size"],
        "total_seconds": round(t_data + t_base, 1), "peak_rss_mib": peak_rss_mib(),
        "parameters": info["parameters"], "tokenizer_size": info["tokenizer_size"],
        "final_loss": info["final_loss_mean_last10"],
    }
    print(f"data generation: {figures['data_seconds']} s ({figures['data_clips']} clips)")
    print(f"base build:      {figures['base_seconds']} s (training {figures['base_train_seconds']} s, "
          f"{figures['steps']} steps x batch {figures['batch_size']}, {figures['seconds_per_step']} s/step)")
    print(f"total:           {figures['total_seconds']} s (budget 300 s); "
          f"peak RSS {figures['peak_rss_mib']['self']:.0f} MiB"
          f" (children {figures['peak_rss_mib']['children']:.0f} MiB); "
          f"load average {figures['machine']['loadavg_1min']:.1f}")
    print(f"model:           {figures['parameters']} parameters, tokenizer {figures['tokenizer_size']} tokens")
    figures["sft_step"] = time_sft_steps(out / "base", out / "data" / "train.jsonl")
    print(f"SFT step:        {figures['sft_step']['seconds_per_step']} s (batch {figures['sft_step']['batch_size']}, "
          "tower run every step)")
    if not a.no_eval:
        figures["greedy"] = {}
        for prompt in (1, 2):
            r = greedy_check(out / "base", out / "data" / "test-mini.json", prompt, limit=a.eval_limit)
            figures["greedy"][f"prompt{prompt}"] = r
            print(f"test-mini, prompt {prompt}: {r['items']} items in {r['seconds']} s, "
                  f"<answer> tags in {r['tagged_percent']}% of outputs")
            for task, t in r["tasks"].items():
                print(f"  {task:<7} acc {t['accuracy']:5.1f}%  95% CI [{t['ci95'][0]}, {t['ci95'][1]}]  "
                      f"chance {t['chance']}%  (n={t['n']})")
            for sub, t in r["sub_categories"].items():
                print(f"    {sub:<26} {t['accuracy']:5.1f}%  {t['top_answers']}")
    (out / "bench.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
