"""Is each sub-category answerable from what the model hears? A linear probe on the frozen audio
tower's features, one per sub-category: trained on the `base` corpus's clips of that kind (the
base regime), tested on its `test-mini` clips (the shifted regime). One of the benchmark's
validity checks (book/plan.md); it uses the base model's tower, never a trained model.

    python -m aqa_core mini-probe --data runs/mini/data --model runs/mini/base --out runs/mini/validity/probe.json

Features: the tower's last hidden states (one row per 40 ms) averaged over `SEGMENTS` equal
stretches of the clip and concatenated, so that the order of events survives (which tone came
first, where the pitch went). The probe is a multinomial logistic regression (L2, full-batch
L-BFGS, standardised features) over all of the sub-category's answers; its chance is the share of
the most frequent answer among the test clips. The output (written whole, atomically) gives per
sub-category: clips, answers, accuracy, chance and a Wilson 95% interval.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, load_audio
from ..data import iter_jsonl
from ..eval.stats import wilson_interval
from ..files import write_atomic
from .tasks import SUBCATS

SEGMENTS = 6
L2 = 1e-2
BATCH = 32


def clip_rows(data_dir: str | Path) -> list[dict]:
    """Every `base` and `test` clip of the benchmark: split, sub-category key, answer, wav path."""
    data = Path(data_dir)
    key_of = {s.name: k for k, s in SUBCATS.items()}
    rows = []
    for _, row in iter_jsonl(data / "params.jsonl"):
        if row["split"] == "base":
            wav = data / "base-audios" / f"{row['id']}.wav"
        elif row["split"] == "test":
            wav = data / "test-mini-audios" / f"{row['id']}.wav"
        else:
            continue
        rows.append({"split": row["split"], "key": key_of[row["sub-category"]], "answer": row["answer"],
                     "audio_path": str(wav)})
    return rows


def tower_features(model_dir: str | Path, paths: list[str], threads: int | None = None,
                   progress: bool = True, stores: Sequence[str | Path] = ()) -> np.ndarray:
    """(clips, SEGMENTS x hidden) segment means of the frozen tower's output for each wav, as the
    model hears it: the processor's features through the model's own forward (the tower's
    attention mask included), with the outputs `stores` (`tower-cache` files of this tower: the
    study's, and the base stage's for the base clips) hold replayed and only the others encoded."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from ..audio_tower import audio_tower, wrapped_forward
    from ..tower_cache import TowerCache, load_store

    if threads:
        torch.set_num_threads(threads)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    cache = TowerCache(device="cpu")
    for store in stores:
        load_store(cache, store, model)
    hidden: list = []

    def capture(original, *args, **kwargs):  # the tower's forward, replayed
        result = original(*args, **kwargs)
        hidden.append(result.last_hidden_state)  # (batch, positions, width)
        return result

    out = []
    tower = audio_tower(model)
    for i in tqdm(range(0, len(paths), BATCH), desc="probe features", unit="batch", disable=not progress):
        audio = [load_audio(p, SAMPLE_RATE) for p in paths[i:i + BATCH]]
        enc = processor(text=[processor.audio_token] * len(audio), audio=audio, sampling_rate=SAMPLE_RATE,
                        return_tensors="pt", padding=True)
        hidden.clear()
        with torch.inference_mode(), cache.replaying(model), wrapped_forward(tower, capture, "probe"):
            model(**enc)
        segs = [seg.mean(dim=1) for seg in torch.tensor_split(hidden[0], SEGMENTS, dim=1)]
        out.append(torch.cat(segs, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def fit_probe(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = L2):  # a predict function
    """A multinomial logistic regression on standardised features; returns `predict(x) -> labels`."""
    import torch

    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor((x - mean) / std, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.long)
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_, b_ = w.detach().numpy(), b.detach().numpy()
    return lambda z: np.argmax(((z - mean) / std) @ w_ + b_, axis=1)


def run_probe(data_dir: str | Path, model_dir: str | Path, threads: int | None = None, progress: bool = True,
              stores: Sequence[str | Path] = ()) -> dict:
    """The probe of every sub-category: {"sub-categories": {name: {...}}, "segments", "seconds"}.
    `stores`: tower-cache files to replay (see `tower_features`)."""
    t0 = time.perf_counter()
    rows = clip_rows(data_dir)
    if not rows:
        raise ValueError(f"{data_dir}: no base or test clips in params.jsonl")
    feats = tower_features(model_dir, [r["audio_path"] for r in rows], threads, progress, stores)
    result = {}
    for key, sub in SUBCATS.items():
        idx = {s: [i for i, r in enumerate(rows) if r["key"] == key and r["split"] == s] for s in ("base", "test")}
        if not idx["base"] or not idx["test"]:
            continue
        labels = list(sub.choices)
        y = {s: np.array([labels.index(rows[i]["answer"]) for i in idx[s]]) for s in idx}
        predict = fit_probe(feats[idx["base"]], y["base"], len(labels))
        hits = int((predict(feats[idx["test"]]) == y["test"]).sum())
        n = len(idx["test"])
        majority = int(np.bincount(y["test"], minlength=len(labels)).max())
        lo, hi = wilson_interval(hits, n)
        result[sub.name] = {"key": key, "task": sub.task, "n_train": len(idx["base"]), "n_test": n,
                            "answers": len(labels), "accuracy": round(100 * hits / n, 2),
                            "chance": round(100 * majority / n, 2), "ci95": [round(100 * lo, 2), round(100 * hi, 2)],
                            "above_chance": bool(100 * lo > 100 * majority / n)}
    return {"probe": f"linear (multinomial logistic, L2 {L2:g}) on {SEGMENTS:d} segment means of the frozen tower",
            "train_split": "base", "test_split": "test-mini", "segments": SEGMENTS,
            "sub-categories": result, "seconds": round(time.perf_counter() - t0, 1)}


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aqa_core mini-probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True,
                    help="mini benchmark folder (params.jsonl, base-audios/, test-mini-audios/)")
    ap.add_argument("--model", required=True, help="the base model folder (its frozen tower is probed)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tower-store", action="append", default=[], metavar="FILE",
                    help="a tower-cache store of the model's tower to replay (repeatable; clips it lacks are encoded)")
    a = ap.parse_args(argv)
    for path, what in ((Path(a.data) / "params.jsonl", "benchmark"), (Path(a.model) / "config.json", "model")):
        if not path.is_file():
            ap.exit(2, f"error: {path} not found: not a mini {what} folder\n")
    for store in a.tower_store:
        if not Path(store).is_file():
            ap.exit(2, f"error: {store}: no such tower-cache store (--tower-store)\n")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    result = run_probe(a.data, a.model, a.threads, progress=not a.quiet, stores=a.tower_store)
    write_atomic(Path(a.out), json.dumps(result, indent=1) + "\n")
    for name, r in result["sub-categories"].items():
        flag = "" if r["above_chance"] else "   <- not above chance"
        print(f"{name:<28} probe {r['accuracy']:5.1f}% [{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}]  "
              f"chance {r['chance']:5.1f}%{flag}")
    print(f"mini-probe: {a.out} ({result['seconds']} s)")
    return 0
