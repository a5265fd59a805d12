"""Items per second of the batched evaluator against a plain one-item-at-a-time loop, on the same
model, items and greedy settings, in one run; and how often the two give the same prediction.

    python scripts/bench_evaluate.py                       # untrained mini model, mini test items
    python scripts/bench_evaluate.py --model runs/mini/base --data data/mini/test-mini.json

Left padding changes the shapes of every matmul, so logits differ in the last bits and a
near-tie argmax can flip; the goal is >= 99% identical predictions and >= 3x the plain loop.
Without --model/--data it builds the untrained mini model (Whisper tiny encoder, 4-layer Qwen2)
and a small mini benchmark in a temporary folder.

It also times what a checkpoint sweep does after its first checkpoint: the same items with the
frozen audio tower's outputs replayed (aqa_core.tower_cache), and from the two passes the tower's
own cost per item, the floor that no batching of a single evaluation goes below; then that pass
with and without the processor's output of each batch replayed too (aqa_core.eval.evaluate.
InputCache: no wav read, no mel features computed), alternated `--repeats` times, with the ratio
of the two and whether their outputs are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def plain_loop(model, processor, records, prompt, gen_cfg) -> list[str]:
    """The baseline: one item at a time, no padding, the same prompt, audio and decoding."""
    import torch

    from aqa_core.audio import SAMPLE_RATE, load_audio
    from aqa_core.prompts import build_messages

    outs = []
    for r in records:
        text = processor.apply_chat_template(build_messages(r, prompt), add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], audio=[load_audio(r["audio_path"])], sampling_rate=SAMPLE_RATE,
                           return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=gen_cfg)
        outs.append(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True,
                                           clean_up_tokenization_spaces=False)[0])
    return outs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder (default: build the untrained mini model)")
    ap.add_argument("--data", help="MMAU-schema question JSON (default: generate a small mini test set)")
    ap.add_argument("--audio-dir", default=None)
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="alternated passes with and without the input cache")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        return bench(args, Path(tmp))


def bench(args: argparse.Namespace, tmp: Path) -> int:
    """Build what is missing under `tmp`, then time both loops and print the figures."""
    import torch

    from aqa_core.answers import extract_answer
    from aqa_core.data import load_mmau
    from aqa_core.eval.evaluate import InputCache, evaluate_records, generation_config_for, load_model
    from aqa_core.tower_cache import TowerCache

    torch.set_num_threads(args.threads)
    model_path, data_path = args.model, args.data
    if model_path is None:
        from aqa_core.mini.model import build_untrained

        model_path = build_untrained(tmp / "model")
    if data_path is None:
        from aqa_core.mini.data import MiniSizes, generate

        generate(tmp / "data", sizes=MiniSizes(train=8, validation=8, test=args.items, base=8), progress=False)
        data_path = tmp / "data" / "test-mini.json"
    records = load_mmau(data_path, args.audio_dir, check_audio=True)[: args.items]
    model, processor = load_model(model_path)
    gen_cfg = generation_config_for(model, processor, "greedy", args.max_new_tokens)

    plain_loop(model, processor, records[:1], args.prompt, gen_cfg)  # warm-up, not timed
    # Interleaved, one batch's worth of items at a time, so that load from other processes on a
    # shared machine falls on both sides alike; wall and CPU time are both kept.
    plain, batched = [], []
    t_plain = t_batched = c_plain = c_batched = 0.0
    for start in range(0, len(records), args.batch_size):
        chunk = records[start:start + args.batch_size]
        t0, c0 = time.perf_counter(), time.process_time()
        plain += plain_loop(model, processor, chunk, args.prompt, gen_cfg)
        t1, c1 = time.perf_counter(), time.process_time()
        batched += evaluate_records(model, processor, chunk, args.prompt, args.batch_size, args.max_new_tokens,
                                    progress=False)
        t_plain, c_plain = t_plain + t1 - t0, c_plain + c1 - c0
        t_batched, c_batched = t_batched + time.perf_counter() - t1, c_batched + time.process_time() - c1

    # A sweep's later checkpoints: with the audio tower frozen, each clip was encoded once (first
    # pass, filling the cache) and is replayed (second pass). Their difference is the tower's cost,
    # a floor that batching cannot lower for a single evaluation.
    cache = TowerCache(device="cpu")
    t0 = time.perf_counter()
    evaluate_records(model, processor, records, args.prompt, args.batch_size, args.max_new_tokens, progress=False,
                     tower_cache=cache)
    t1 = time.perf_counter()
    replayed = evaluate_records(model, processor, records, args.prompt, args.batch_size, args.max_new_tokens,
                                progress=False, tower_cache=cache)
    t_fill, t_replay = t1 - t0, time.perf_counter() - t1

    # ... and with each batch's processor output replayed as well (the sweep's InputCache), the two
    # passes alternated so that the machine's drift falls on both alike.
    inputs = InputCache()
    evaluate_records(model, processor, records, args.prompt, args.batch_size, args.max_new_tokens, progress=False,
                     tower_cache=cache, input_cache=inputs)  # fills it
    t_tower_only = t_both = 0.0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        evaluate_records(model, processor, records, args.prompt, args.batch_size, args.max_new_tokens,
                         progress=False, tower_cache=cache)
        t1 = time.perf_counter()
        both = evaluate_records(model, processor, records, args.prompt, args.batch_size, args.max_new_tokens,
                                progress=False, tower_cache=cache, input_cache=inputs)
        t_tower_only, t_both = t_tower_only + t1 - t0, t_both + time.perf_counter() - t1

    n = len(records)
    same_inputs = sum(a["raw_output"] == b["raw_output"] for a, b in zip(both, replayed, strict=True))
    same_replay = sum(a["raw_output"] == b["raw_output"] for a, b in zip(replayed, batched, strict=True))
    same_raw = sum(b["raw_output"] == p for b, p in zip(batched, plain, strict=True))
    same_pred = sum(b["model_prediction"] == extract_answer(p) for b, p in zip(batched, plain, strict=True))
    gen_tokens = sum(len(processor.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in plain)
    figures = {
        "model": str(model_path), "data": str(data_path), "items": n, "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens, "threads": args.threads,
        "mean_generated_tokens": round(gen_tokens / n, 1),
        "plain_items_per_s": round(n / t_plain, 3), "batched_items_per_s": round(n / t_batched, 3),
        "speedup": round(t_plain / t_batched, 2), "speedup_cpu_time": round(c_plain / c_batched, 2),
        "identical_predictions": round(same_pred / n, 4), "identical_raw_outputs": round(same_raw / n, 4),
        "tower_seconds_per_item": round(max(t_fill - t_replay, 0.0) / n, 5),
        "tower_share_of_batched": round(max(t_fill - t_replay, 0.0) / t_fill, 3),
        "speedup_ceiling_single_eval": round((t_plain / n) / max((t_fill - t_replay) / n, 1e-9), 2),
        "sweep_replay_items_per_s": round(n / t_replay, 3), "sweep_replay_speedup": round(t_plain / t_replay, 2),
        "sweep_replay_identical_raw_outputs": round(same_replay / n, 4),
        "repeats": args.repeats,
        "sweep_replay_seconds": round(t_tower_only / args.repeats, 3),
        "sweep_replay_input_cache_seconds": round(t_both / args.repeats, 3),
        "input_cache_speedup": round(t_tower_only / t_both, 3),
        "input_cache_identical_raw_outputs": round(same_inputs / n, 4),
    }
    print(f"plain loop : {figures['plain_items_per_s']:8.2f} items/s ({t_plain:.1f} s for {n} items)")
    print(f"batched    : {figures['batched_items_per_s']:8.2f} items/s ({t_batched:.1f} s, batch {args.batch_size})")
    print(f"speedup    : {figures['speedup']:.2f}x wall, {figures['speedup_cpu_time']:.2f}x CPU time (goal >= 3x)")
    print(f"identical greedy predictions: {same_pred}/{n} = {100 * same_pred / n:.1f}% (goal >= 99%); "
          f"identical raw outputs {same_raw}/{n}; mean generated tokens {figures['mean_generated_tokens']}")
    print(f"audio tower: {1000 * figures['tower_seconds_per_item']:.1f} ms/item, "
          f"{100 * figures['tower_share_of_batched']:.0f}% of the batched evaluator's time; a single evaluation "
          f"cannot beat the plain loop by more than {figures['speedup_ceiling_single_eval']:.2f}x on this model")
    print(f"sweep, next checkpoint (frozen tower replayed): {figures['sweep_replay_items_per_s']:8.2f} items/s, "
          f"{figures['sweep_replay_speedup']:.2f}x the plain loop; identical raw outputs "
          f"{same_replay}/{n}")
    print(f"  ... and each batch's processor output replayed too: {t_both / args.repeats:.2f} s against "
          f"{t_tower_only / args.repeats:.2f} s per pass (mean of {args.repeats}, alternated), "
          f"{figures['input_cache_speedup']:.2f}x; identical raw outputs {same_inputs}/{n}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
