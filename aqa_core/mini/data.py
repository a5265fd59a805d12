"""The mini benchmark: synthetic 3 s audio-QA clips whose answers the generator knows, in the
paper's setting of a training set (AVQA's analogue) and an out-of-distribution test set
(MMAU test-mini's analogue), plus a corpus for the mini base model.

    python -m aqa_core mini-data --out data/mini [--seed 0] [--train 1200 ...] [--force]

The shift from `train` to `test-mini` mirrors AVQA -> MMAU (`aqa_core.mini.tasks.shift_table()`):
`train` asks only what makes the sound (sound source, sound-effect type, instrument), as AVQA
does; `test-mini` spans sound, music and speech in thirds, and eight of its eleven kinds
(counting, loudness, pitch sweeps, melody, chords, tempo, spoken digits, speaker gender) occur
only in the base corpus. The seen kinds are harder in the test, never reversed: a wording never
seen in train or base, parameters from wider ranges, other voices, more noise. Each test item
has a difficulty (easy/medium/hard) from a points rule (`hard`).
`base` teaches captions, open answers and multiple choice (`<answer>` tags when asked) on the
train and base wordings only, so the base model can be above chance but not at the ceiling.

Layout of OUT: train.jsonl + train-audios/, validation.jsonl + validation-audios/ (R1-AQA
JSONL), test-mini.json + test-mini-audios/ (MMAU schema), base.jsonl + base-audios/,
params.jsonl (every clip's generating parameters), manifest.json (version, seed, sizes, counts,
sha256 of every file). The same seed and sizes give byte-identical folders: the generation's wall
seconds are printed (and recorded by the study in its timings.json), never written into OUT.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..data import TASKS
from ..files import sha256_file
from ..prompts import Prompt, avqa_question, user_text
from . import synth as S
from .tasks import SUBCATS, TRAIN_SUBCATS, difficulty, draw_params, pick, render_clip, speech_spec

VERSION = "3"  # bump when the generated data changes (v3: the analysis plan's AVQA -> MMAU design)
SPLITS = ("train", "validation", "test", "base")
SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}


@dataclass(frozen=True)
class MiniSizes:
    """Number of clips per split (the analysis plan's sizes, book/plan.md)."""

    train: int = 1200
    validation: int = 400
    test: int = 1000
    base: int = 1650


CAPTION_PROMPTS = ("Describe the audio.", "What do you hear?", "Write a short caption for this sound.",
                   "Give a one-sentence description of the clip.")
TAG_TAILS = (" Output the final answer in <answer> </answer>.", " Put your answer in <answer> </answer>.",
             " Answer inside <answer> </answer>.")
# The base corpus also shows reasoning before the answer (an instruct model has seen such
# formats; without them prompt <3>'s format reward is never earned and GRPO has no signal for it):
# the "thinking" is the clip's caption, a description of what is heard.
THINK_TAILS = (" Output the thinking process in <think> </think> and final answer in <answer> </answer>.",
               " Describe what you hear in <think> </think>, then answer in <answer> </answer>.")


# ---------------------------------------------------------------- planning the splits


def _order(split: str, n: int) -> list[str]:
    """Sub-categories of a split, in turn: `train` and `validation` the kinds AVQA asks
    (TRAIN_SUBCATS), `base` every kind equally, `test` a third per task as MMAU (then in turn
    within the task)."""
    if split in ("train", "validation"):
        return [TRAIN_SUBCATS[i % len(TRAIN_SUBCATS)] for i in range(n)]
    if split == "base":
        return [tuple(SUBCATS)[i % len(SUBCATS)] for i in range(n)]
    by_task = {t: [k for k in SUBCATS if SUBCATS[k].task == t] for t in TASKS}
    return [by_task[TASKS[i % 3]][(i // 3) % len(by_task[TASKS[i % 3]])] for i in range(n)]


def _choices(key: str, answer: str, rng: np.random.Generator) -> list[str]:
    pool = list(SUBCATS[key].choices)
    if len(pool) > 4:  # digits: the answer and three others
        pool = [answer] + [c for c in rng.permutation(pool).tolist() if c != answer][:3]
    return [str(c) for c in rng.permutation(pool)]


def _base_text(key: str, kind: str, choices: list[str], answer: str, caption: str, rng) -> tuple[str, str]:
    """Prompt and response of one base-corpus item (train/base wordings only, never test's)."""
    if kind == "caption":
        return pick(rng, CAPTION_PROMPTS), caption
    q = avqa_question(pick(rng, SUBCATS[key].base_q + SUBCATS[key].train_q))  # base speaks of audio
    if kind == "open":
        return q, answer
    fmt = int(rng.integers(3))
    body = (user_text(q, choices, Prompt.SFT) if fmt == 0 else f"{q} Options: {', '.join(choices)}." if fmt == 1
            else f"{q} Choose one of: {' / '.join(choices)}.")
    if kind == "mc_tagged":
        return body + pick(rng, TAG_TAILS), f"<answer>{answer}</answer>"
    if kind == "mc_think":
        return body + pick(rng, THINK_TAILS), f"<think>{caption}</think><answer>{answer}</answer>"
    return body, answer


def _plan(split: str, n: int, seed: int) -> list[dict]:
    """Every clip of a split as data: sub-category, parameters, question, choices, answer."""
    regime = {"train": "train", "validation": "train", "test": "test", "base": "base"}[split]
    items = []
    for i, key in enumerate(_order(split, n)):
        rng = np.random.default_rng([seed, SPLIT_CODE[split], i, 0])
        params, answer, caption = draw_params(key, rng, regime)
        sub = SUBCATS[key]
        item = {"i": i, "key": key, "params": params, "answer": answer, "caption": caption,
                "choices": _choices(key, answer, rng)}
        if split == "test":
            item["question"] = sub.test_q
            item["id"] = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            item["difficulty"] = difficulty(key, params)
        elif split == "base":
            item["kind"] = str(rng.choice(["caption", "open", "mc_tagged", "mc_think", "mc_plain"],
                                          p=[.2, .15, .3, .15, .2]))
            item["prompt"], item["response"] = _base_text(key, item["kind"], item["choices"], answer, caption, rng)
        else:
            item["question"] = pick(rng, sub.train_q)
        items.append(item)
    perm = np.random.default_rng([seed, SPLIT_CODE[split], 10**9]).permutation(n)
    return [items[j] for j in perm]


def _record(split: str, item: dict, n: int, offset: int) -> tuple[dict, str]:
    """The JSON record of a planned item in its split's schema, and its wav's relative path."""
    sub = SUBCATS[item["key"]]
    if split == "test":
        wav = f"test-mini-audios/{item['id']}.wav"
        return ({"id": item["id"], "audio_id": f"./{wav}", "question": item["question"],
                 "choices": item["choices"], "answer": item["answer"], "dataset": "mini-mmau",
                 "task": sub.task, "split": "test-mini", "category": sub.category,
                 "sub-category": sub.name, "difficulty": item["difficulty"]}, wav)
    if split == "base":
        rid = f"base-{n:06d}"
        return ({"id": rid, "audio_path": f"{rid}.wav", "kind": item["kind"], "prompt": item["prompt"],
                 "response": item["response"], "task": sub.task, "sub-category": sub.name}, f"base-audios/{rid}.wav")
    name = f"mini_{split}_{n:06d}"
    return ({"id": offset + n, "video_name_derived": name, "question_text": item["question"],
             "multi_choice": item["choices"], "answer": item["choices"].index(item["answer"]),
             "dataset_name": "mini-avqa", "audio_path": f"{name}.wav", "task": sub.task,
             "sub-category": sub.name}, f"{split}-audios/{name}.wav")


# ---------------------------------------------------------------- files, cache, entry points

OUTPUTS = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test-mini.json", "base": "base.jsonl"}
AUDIO_DIRS = ("train-audios", "validation-audios", "test-mini-audios", "base-audios")
#: The wall-seconds file that versions before 2026-12-07 wrote into OUT (two identical generations then
#: gave folders that differed); a regeneration removes it.
OLD_TIMING_FILE = "timing.json"


def _write(path: Path, data: bytes) -> str:
    """Write bytes, return their sha256."""
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _cached(out: Path, seed: int, sizes: MiniSizes) -> dict | None:
    """The manifest when OUT already holds this exact benchmark with every file intact."""
    path = out / "manifest.json"
    if not path.is_file():
        return None
    man = json.loads(path.read_text())
    if (man.get("version"), man.get("seed"), man.get("sizes")) != (VERSION, seed, asdict(sizes)):
        return None
    files = man.get("files", {})
    ok = all((out / f).is_file() and sha256_file(out / f) == h for f, h in files.items())
    return man if ok and files else None


def _clean(out: Path) -> None:
    """Remove what a previous generation wrote (only our own file names)."""
    for d in AUDIO_DIRS:
        for wav in (out / d).glob("*.wav"):
            wav.unlink()
    for name in (*OUTPUTS.values(), "params.jsonl", "manifest.json", OLD_TIMING_FILE):
        (out / name).unlink(missing_ok=True)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def generate(out_dir: str | Path, seed: int = 0, sizes: MiniSizes = MiniSizes(), progress: bool = True,
             force: bool = False) -> dict:
    """Write the mini benchmark to `out_dir` and return its manifest (plus `cached`: whether this
    call skipped the work because `out_dir` already held the same version, seed and sizes with
    every file intact; it says so on stdout) and `seconds` (this call's wall seconds)."""
    out = Path(out_dir)
    if not force and (man := _cached(out, seed, sizes)) is not None:
        print(f"mini-data: {out} is up to date (version {VERSION}, seed {seed}, sizes {asdict(sizes)}); skipped")
        return {**man, "cached": True, "seconds": 0.0}
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    plans = {s: _plan(s, getattr(sizes, s), seed) for s in SPLITS}
    specs = list(dict.fromkeys(speech_spec(it["params"]) for s in SPLITS for it in plans[s]
                               if it["key"] in ("digit", "speaker")))
    speech = dict(zip(specs, S.speak(specs), strict=True))
    files: dict[str, str] = {}
    params_rows = []
    bar = tqdm(total=sum(len(p) for p in plans.values()), desc="mini-data", unit="clip", disable=not progress)
    offset = 0
    for split in SPLITS:
        records = []
        for n, item in enumerate(plans[split]):
            rec, wav = _record(split, item, n, offset)
            rng = np.random.default_rng([seed, SPLIT_CODE[split], item["i"], 1])
            (out / wav).parent.mkdir(exist_ok=True)
            buf = io.BytesIO()  # via memory: 3x faster than libsndfile seeking in a file
            sf.write(buf, render_clip(item["key"], item["params"], rng, speech), S.SR, subtype="PCM_16", format="WAV")
            files[wav] = _write(out / wav, buf.getvalue())
            records.append(rec)
            params_rows.append({"split": split, "id": rec["id"], "sub-category": SUBCATS[item["key"]].name,
                                "answer": item["answer"], "params": item["params"]})
            bar.update()
        offset += len(records)
        text = (json.dumps(records, ensure_ascii=False, indent=4) + "\n" if split == "test"
                else "".join(_dumps(r) + "\n" for r in records))
        files[OUTPUTS[split]] = _write(out / OUTPUTS[split], text.encode("utf-8"))
    bar.close()
    files["params.jsonl"] = _write(out / "params.jsonl", "".join(_dumps(r) + "\n" for r in params_rows).encode())
    files = dict(sorted(files.items()))
    man = {"generator": "aqa_core.mini.data", "version": VERSION, "seed": seed, "sizes": asdict(sizes),
           "sample_rate": S.SR, "clip_seconds": S.CLIP_SECONDS,
           "counts": {s: _counts(plans[s]) for s in SPLITS},
           "chance_test_mini": chance(plans["test"]),
           "content_sha256": hashlib.sha256("".join(f"{k} {v}\n" for k, v in files.items()).encode()).hexdigest(),
           "files": files}
    (out / "manifest.json").write_text(json.dumps(man, indent=1) + "\n", encoding="utf-8")
    return {**man, "cached": False, "seconds": round(time.perf_counter() - t0, 2)}


def _counts(items: list[dict]) -> dict[str, int]:
    c: dict[str, int] = {}
    for it in items:
        c[SUBCATS[it["key"]].name] = c.get(SUBCATS[it["key"]].name, 0) + 1
    return dict(sorted(c.items()))


def chance(items: list[dict]) -> float:
    """Expected accuracy of uniform guessing: the mean of 1/len(choices)."""
    return round(float(np.mean([1 / len(it["choices"]) for it in items])), 4) if items else 0.0


def cli(argv: list[str]) -> int:
    d = MiniSizes()
    ap = argparse.ArgumentParser(prog="python -m aqa_core mini-data", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    for split in SPLITS:
        ap.add_argument(f"--{split}", type=int, default=getattr(d, split),
                        help=f"clips in {split} (default {getattr(d, split)})")
    ap.add_argument("--force", action="store_true", help="regenerate even when the folder is up to date")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    sizes = MiniSizes(a.train, a.validation, a.test, a.base)
    if min(asdict(sizes).values()) < 0:
        ap.error("sizes must be >= 0")
    man = generate(a.out, a.seed, sizes, progress=not a.quiet, force=a.force)
    how = "cached" if man["cached"] else f"generated in {man['seconds']:.1f} s"
    print(f"mini-data: {a.out}: {sum(man['sizes'].values())} clips, test-mini chance {man['chance_test_mini']:.3f} "
          f"({how})")
    return 0
