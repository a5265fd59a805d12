"""Batched MMAU-style inference, written in the official prediction format and scored by the
official rule (checkpoint sweeps and model selection: `aqa_core.eval.sweep`).

    python -m aqa_core evaluate --model PATH --data QUESTIONS.json --audio-dir DIR --out FILE

What it does, and where it departs from the official R1-AQA `src/test.py` (batches of 16,
`max_new_tokens=256`, bf16, the raw generation kept as `model_output_ori`):
- Prompt: `build_messages(record, prompt)` through the processor's chat template; audio via
  `load_audio` (channel 0, 16 kHz); answer = `extract_answer(raw)` (the rewards' rule).
- Padding: left, set explicitly. The official script never set the tokenizer's padding side;
  batched generation needs left padding (right padding would put pad tokens between the prompt
  and the generated text). The processor expands `<|AUDIO|>` to one token per audio frame
  before padding (so the model's non-legacy path scatters exactly the unpadded audio features);
  the attention mask hides the pads, and transformers 5.23's `generate` passes `position_ids`
  from the mask (`cumsum - 1`; Qwen2's RoPE is relative anyway, so a constant shift would not
  matter). A padded item's logits thus equal its unpadded ones up to floating-point rounding
  (different matmul shapes), which can flip a near-tie argmax (tests/test_evaluate.py).
- Decoding: greedy (`do_sample=False`, no repetition penalty) by default, so a score is a
  function of the weights. `decoding="checkpoint"` decodes with the checkpoint's own
  `generation_config` as the official script did (it passed only `max_new_tokens`); when that
  samples, scores vary run to run (seeded with `seed`, but not across batch sizes or resumes).
- Items are processed longest-first (less padding per batch); output keeps the file's order.
- Resumable: each finished batch is appended to `FILE.progress.jsonl` and fsync'ed; rerunning
  the same command skips what is there. Batch size may change on resume, nothing else may.
- Every GPU of a node: `torchrun --nproc_per_node 8 -m aqa_core evaluate ...` (or `accelerate
  launch --num_processes 8 -m aqa_core evaluate ...`). The batches are those of one process and
  rank r generates every 8th from the r-th (`eval_world`), appending to its own
  `FILE.progress.rankR.jsonl`; rank 0 merges, writes and scores. The same predictions as one
  process (tests/test_evaluate_distributed.py); a resume reads every rank's file, whatever the
  world size that wrote it.
- Every wav is decoded once up front: missing, unreadable or silent ones are reported (count,
  first ids) before the model is loaded; `--skip-missing` drops them with a counted warning.
- `--audio` ablates the audio (after that check, which looks at the real files) to measure how
  much of a score comes from listening (many MMAU items are answerable without it: Omni-R1,
  AudioMCQ): `real` (default), `silence` (each clip replaced by zeros of its own length, so the
  audio-token count is unchanged) or `mismatched` (each question gets another question's clip:
  `mismatched_partners`). The choice is a setting like the others; the tower cache is keyed by
  the audio actually fed.

The output FILE is the question list with `model_prediction` and `model_output` (both the
extracted answer) and `raw_output` (the generation) added, so MMAU's `evaluation.py` runs on it
unchanged; `FILE.score.json` and `FILE.score.txt` hold the report (`aqa_core.eval.mmau`). A `.jsonl`
question file is read as R1-AQA/AVQA JSONL (a validation split) and scored by the same string
match, total only (it has no task or difficulty fields).
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..answers import extract_answer
from ..audio import SAMPLE_RATE, AudioError, check_audio_files, load_audio, model_window_seconds
from ..data import load_questions
from ..files import FolderBusy, hold_output, input_it_would_overwrite, sha256_file, write_atomic
from ..prompts import as_prompt, build_messages
from ..runs import RunDirError, check_model_folder, model_dir
from ..tower_cache import TowerCache, load_store

PROGRESS_SUFFIX = ".progress.jsonl"
SCORE_JSON_SUFFIX = ".score.json"
SCORE_TXT_SUFFIX = ".score.txt"
DECODINGS = ("greedy", "checkpoint")
#: --audio choices: what each question is fed
AUDIO_ABLATIONS = {
    "real": "each question's own clip",
    "silence": "each clip replaced by zeros of its length",
    "mismatched": "each question given another question's clip",
}
ABLATION = "audio_ablation"  # the record field that marks an ablated record (see `ablate_audio`)


class EvalError(RuntimeError):
    """An evaluation that cannot run as asked; the message names the file/record and the fix."""


# ----------------------------------------------------------------------------- model


def _processor_dir(folder: Path) -> Path:
    """The first of the model folder and its two parents that holds a saved processor (HF Trainer
    checkpoints normally do; a `merged/` subfolder may rely on its checkpoint's)."""
    for d in (folder, folder.parent, folder.parent.parent):
        if (d / "preprocessor_config.json").is_file() or (d / "processor_config.json").is_file():
            return d
    return folder


def load_model(path: str | Path, device: str | None = None):
    """(model, processor) from a checkpoint folder, offline, ready for batched generation:
    eval mode, left padding; bf16 on CUDA, fp32 on CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    folder = model_dir(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    model = Qwen2AudioForConditionalGeneration.from_pretrained(folder, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(_processor_dir(folder))
    processor.tokenizer.padding_side = "left"
    return model, processor


def generation_config_for(model, processor, decoding: str = "greedy", max_new_tokens: int = 256):
    """Greedy decoding, or (`"checkpoint"`) the checkpoint's own generation config as the official
    script used it; `max_new_tokens` in both."""
    import copy

    from transformers import GenerationConfig

    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
    base = model.generation_config
    pad = base.pad_token_id if base.pad_token_id is not None else processor.tokenizer.pad_token_id
    if decoding == "checkpoint":
        cfg = copy.deepcopy(base)
        cfg.max_new_tokens = max_new_tokens  # takes precedence over the config's max_length
    else:
        cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                               eos_token_id=base.eos_token_id, bos_token_id=base.bos_token_id)
    if cfg.pad_token_id is None:
        eos = cfg.eos_token_id
        cfg.pad_token_id = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos)
    return cfg


def prompt_texts(processor, records: Sequence[dict], prompt) -> list[str]:
    """The chat-template text of each record (audio placeholder first, then the user text)."""
    return [processor.apply_chat_template(build_messages(r, prompt), add_generation_prompt=True, tokenize=False)
            for r in records]


def _audio_seconds(path: str) -> float:
    import soundfile as sf

    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError):
        return 0.0
    return info.frames / max(info.samplerate, 1)


def _load_batch_audio(records: Sequence[dict]) -> list:
    """The audio each record is fed: its `audio_path` at 16 kHz, or zeros of that length when
    `ablate_audio` silenced it."""
    audios = []
    for r in records:
        try:
            wav = load_audio(r["audio_path"], SAMPLE_RATE)
        except AudioError as exc:
            raise EvalError(f"record id {r.get('id')!r}: {exc}") from exc
        audios.append(np.zeros_like(wav) if r.get(ABLATION) == "silence" else wav)
    return audios


class InputCache:
    """The processor's output (token ids, mel features, masks) for each batch an evaluation
    feeds, kept for the next model of a sweep: every checkpoint of a run hears the same clips with
    the same prompts in the same batches, so the wavs are read and the features computed once per
    sweep instead of once per checkpoint. A batch is keyed by what the processor computes with
    (its `fingerprint`), the prompt texts and each record's clip and ablation; the tensors are the
    processor's own, so the model sees the same numbers with or without the cache. Batches are
    kept while they fit in `max_bytes` (the mini test split takes about 100 MB; real MMAU
    test-mini, 128 mels over 30 s, about 1.5 GB), later ones are encoded each time. `bind` ties
    the cache to the processor an evaluation uses (as `TowerCache.bind` to a model's tower).
    `hits` and `misses` count batches."""

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.batches: dict[tuple, dict] = {}
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.processor_key = ""  # the bound processor's fingerprint

    def bind(self, processor) -> None:
        """Key the next batches by this processor's fingerprint (computed once per evaluation)."""
        self.processor_key = self.fingerprint(processor)

    @staticmethod
    def fingerprint(processor) -> str:
        """A hash of what the processor computes with: its feature extractor's settings, its
        tokenizer's model, vocabulary and special tokens, and the padding side. (The fast
        tokenizer's own padding and truncation state is left out: each call sets it anew.)"""
        tok = processor.tokenizer
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is not None:
            spec = json.loads(backend.to_str())
            spec.pop("padding", None)
            spec.pop("truncation", None)
            vocab = json.dumps(spec, sort_keys=True)
        else:
            vocab = repr(sorted(tok.get_vocab().items()))
        h = hashlib.sha256()
        for part in (processor.feature_extractor.to_json_string(), vocab, repr(sorted(tok.special_tokens_map.items())),
                     tok.padding_side, getattr(processor, "audio_token", "")):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:16]

    def encode(self, processor, texts: list[str], records: Sequence[dict]) -> dict:
        """The batch's tensors, from the cache when the bound processor made them before."""
        key = (self.processor_key, tuple(texts), tuple((str(r["audio_path"]), r.get(ABLATION)) for r in records))
        hit = self.batches.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        encoded = _encode_batch(processor, texts, records)
        size = sum(v.numel() * v.element_size() for v in encoded.values() if hasattr(v, "element_size"))
        if self.bytes + size <= self.max_bytes:
            self.batches[key] = encoded
            self.bytes += size
        return encoded


def _encode_batch(processor, texts: list[str], records: Sequence[dict]) -> dict:
    """The processor's tensors for one batch (read, never written, by `_generate`)."""
    return dict(processor(text=texts, audio=_load_batch_audio(records), sampling_rate=SAMPLE_RATE,
                          return_tensors="pt", padding=True))


def _generate(model, processor, texts: list[str], records: Sequence[dict], gen_cfg,
              tower_cache: TowerCache | None = None, input_cache: InputCache | None = None) -> list[str]:
    """One left-padded batch through `generate`; the decoded new tokens (special tokens dropped,
    as the official script's `batch_decode(..., skip_special_tokens=True)`). With `tower_cache`
    (bound to this model's tower), clips it has already encoded are not encoded again; with
    `input_cache` (bound to this processor), a batch it has already encoded is not encoded again."""
    import torch

    encoded = (input_cache.encode(processor, texts, records) if input_cache is not None
               else _encode_batch(processor, texts, records))
    inputs = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in encoded.items()}
    inputs["input_features"] = inputs["input_features"].to(model.dtype)
    # beam search and several samples per prompt repeat each clip's rows: no replay then
    one_row_per_clip = (gen_cfg.num_beams or 1) == 1 and (gen_cfg.num_return_sequences or 1) == 1
    replay = (tower_cache.replaying(model)  # keyed by the features fed: silence and swapped clips included
              if tower_cache is not None and one_row_per_clip
              else contextlib.nullcontext())
    with torch.inference_mode(), replay:
        out = model.generate(**inputs, generation_config=gen_cfg)
    return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True,
                                  clean_up_tokenization_spaces=False)


def evaluate_records(
    model,
    processor,
    records: Sequence[dict],
    prompt=2,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    decoding: str = "greedy",
    seed: int = 0,
    sort_by_length: bool = True,
    progress: bool = True,
    on_batch: Callable[[list[tuple[int, dict]]], None] | None = None,
    desc: str = "evaluate",
    tower_cache: TowerCache | None = None,
    shard: tuple[int, int] = (0, 1),
    input_cache: InputCache | None = None,
) -> list[dict]:
    """Generate an answer for every record with a live model (also usable during training).

    Returns, in input order, `{**record, "model_prediction", "model_output", "raw_output"}`.
    `on_batch` is called after each batch with `[(input index, row), ...]` (the resumable file
    writer uses it). The model's train/eval mode is restored afterwards. `tower_cache` reuses
    audio-tower outputs from earlier calls when this model's tower is byte-identical to theirs
    (a sweep over the checkpoints of a run whose tower was frozen). Records from `ablate_audio`
    are fed their ablated audio. `shard` (rank, world size) generates every world-th batch from
    the rank-th (the batches themselves are those of one process: the same predictions); the
    other rows are None. `input_cache` (an `InputCache`) reuses the processor's output for
    batches an earlier call fed (a sweep's checkpoints).
    """
    import torch
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prompt = as_prompt(prompt)
    gen_cfg = generation_config_for(model, processor, decoding, max_new_tokens)
    processor.tokenizer.padding_side = "left"
    texts = prompt_texts(processor, records, prompt)
    order = list(range(len(records)))
    if sort_by_length:  # longest first: batches of similar length waste less on padding
        window = getattr(processor.feature_extractor, "chunk_length", 30)
        key = {i: (min(_audio_seconds(str(records[i]["audio_path"])), window), len(texts[i])) for i in order}
        order.sort(key=lambda i: key[i], reverse=True)
    results: list[dict | None] = [None] * len(records)
    if tower_cache is not None:
        tower_cache.bind(model)
    if input_cache is not None:
        input_cache.bind(processor)
    was_training = model.training
    model.eval()
    rank, world = shard
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)][rank::world]
    bar = tqdm(total=sum(map(len, batches)), unit="item", desc=desc, disable=not progress, dynamic_ncols=True)
    devices = [model.device] if model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):  # seeding must not move a training run's RNG
            torch.manual_seed(seed)
            for idx in batches:
                raw = _generate(model, processor, [texts[i] for i in idx], [records[i] for i in idx], gen_cfg,
                                tower_cache, input_cache)
                done = []
                for i, text in zip(idx, raw, strict=False):
                    answer = extract_answer(text)
                    results[i] = {**records[i], "model_prediction": answer, "model_output": answer,
                                  "raw_output": text}
                    done.append((i, results[i]))
                if on_batch is not None:
                    on_batch(done)
                bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return results  # type: ignore[return-value]


# ----------------------------------------------------------------------------- questions


def questions_and_rows(path: str | Path, audio_dir: str | Path | None = None) -> tuple[list[dict], list[dict]]:
    """(records, output rows' base fields), records from `aqa_core.data.load_questions`. MMAU
    JSON: the output keeps each question's original fields untouched. `.jsonl`: R1-AQA/AVQA
    questions, output = the loaded record (answer as text)."""
    path = Path(path)
    records = load_questions(path, audio_dir, on_missing="keep")
    if path.suffix == ".jsonl":
        return records, [dict(r) for r in records]
    return records, json.loads(path.read_text(encoding="utf-8"))


def check_audio(records: Sequence[dict], progress: bool = False,
                window_seconds: float | None = None) -> list[tuple[str, str]]:
    """(id, problem) for each record whose wav the one audio check rejects (missing, unreadable,
    empty, too short, silent: `aqa_core.audio.check_audio_files`): every file is decoded once, so
    nothing can fail later, mid-run; clips longer than `window_seconds` are counted in a warning."""
    ids_by_path: dict[str, list[str]] = {}
    for r in records:
        ids_by_path.setdefault(str(r["audio_path"]), []).append(str(r.get("id")))
    problems = check_audio_files(list(ids_by_path), progress=progress, window_seconds=window_seconds)
    return [(i, problem) for path, problem in problems for i in ids_by_path[path]]


def mismatched_partners(records: Sequence[dict], seed: int = 0) -> list[int]:
    """`partners[i]`: the record whose clip record i is fed under `--audio mismatched`; a
    derangement (no record gets its own wav), the same for the same records and seed.

    Rule: records are shuffled (`random.Random(seed)`), grouped (stably, groups in sorted order)
    by `sub-category` (by wav path when no record has that field), and each takes the clip of the
    record m places further on, cyclically, where m is the largest group's size (n - 1 if one group
    holds all). So every partner is from another group whenever no group holds more than half the
    records, and as many are as possible otherwise. If that would give some record its own wav
    (two questions on one clip), the grouping is by wav path instead; a `ValueError` when more
    than half the records share one wav (or n < 2), since then some record must keep its own.

    >>> recs = [{"audio_path": f"{i}.wav", "sub-category": c} for i, c in enumerate("aabb")]
    >>> p = mismatched_partners(recs)
    >>> all(recs[p[i]]["sub-category"] != recs[i]["sub-category"] for i in range(4))
    True
    """
    import random
    from collections import Counter

    n = len(records)
    if n < 2:
        raise ValueError(f"--audio mismatched needs at least 2 questions with audio, got {n}")
    paths = [str(r["audio_path"]) for r in records]
    shuffled = list(range(n))
    random.Random(seed).shuffle(shuffled)

    def shift(groups: list[str]) -> list[int]:
        rank = {g: k for k, g in enumerate(sorted(set(groups)))}
        order = sorted(shuffled, key=lambda i: rank[groups[i]])  # stable: shuffled within a group
        m = min(max(Counter(groups).values()), n - 1)
        partners = [0] * n
        for k, i in enumerate(order):
            partners[i] = order[(k + m) % n]
        return partners

    if any("sub-category" in r for r in records):
        partners = shift([json.dumps(r.get("sub-category"), sort_keys=True) for r in records])
        if all(paths[partners[i]] != paths[i] for i in range(n)):
            return partners
    partners = shift(paths)
    if any(paths[partners[i]] == paths[i] for i in range(n)):
        top, count = Counter(paths).most_common(1)[0]
        raise ValueError(f"--audio mismatched: {count} of {n} questions share one wav ({top}), "
                         "so some would keep their own clip")
    return partners


def ablate_audio(records: Sequence[dict], audio: str = "real", seed: int = 0) -> list[dict]:
    """The records as they are fed under `--audio` (copies; `real`: the records themselves).
    `silence` marks each record (`ABLATION`) so it is fed zeros of its clip's length;
    `mismatched` points each record's `audio_path` at its partner's (`mismatched_partners`),
    naming the partner in `audio_of`. Prompt texts are unchanged (the chat template does not
    render the audio path)."""
    if audio not in AUDIO_ABLATIONS:
        raise ValueError(f"audio must be one of {tuple(AUDIO_ABLATIONS)}, got {audio!r}")
    if audio == "real":
        return list(records)
    if audio == "silence":
        return [{**r, ABLATION: "silence"} for r in records]
    partners = mismatched_partners(records, seed)
    return [{**r, "audio_path": records[j]["audio_path"], "audio_of": records[j].get("id"), ABLATION: "mismatched"}
            for r, j in zip(records, partners, strict=True)]


# ----------------------------------------------------------------------------- resumable file


def _model_fingerprint(folder: Path) -> str:
    """Names, sizes and mtimes of the weight files: changes when the checkpoint is rewritten."""
    parts = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}"
             for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EvalSettings:
    """Everything a prediction depends on (batch size aside: it only moves near-ties)."""

    model: str
    model_fingerprint: str
    data: str
    data_sha256: str
    audio_dir: str | None
    prompt: int
    max_new_tokens: int
    decoding: str
    seed: int
    limit: int | None
    audio: str = "real"


def _same_settings(recorded: Any, settings: EvalSettings) -> bool:
    """True when recorded settings are these; files written before `audio` was a setting read as
    `real` (they are)."""
    return isinstance(recorded, dict) and {"audio": "real", **recorded} == asdict(settings)


def _read_progress(path: Path, settings: EvalSettings, ids: list[str], repair: bool = True) -> dict[int, dict] | None:
    """Finished rows `{index: row}` from a progress sidecar, or None when it belongs to other settings.
    A torn last line (killed mid-write) is removed from the file (`repair` False: only skipped, for
    a file another process appends to); a bad line elsewhere is an error."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if not lines:
        return {}
    if repair and not text.endswith("\n"):  # killed between a row and its newline: end the line before appending
        with path.open("a", encoding="utf-8") as fh:
            fh.write("\n")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path}: unreadable header ({exc.msg}); delete it to start over") from exc
    if not _same_settings(header.get("settings"), settings):
        return None
    done: dict[int, dict] = {}
    for n, line in enumerate(lines[1:], 2):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):  # cut it off, or the next append would continue the torn line
                if repair:
                    write_atomic(path, "\n".join(lines[:-1]) + "\n")
                    warnings.warn(f"{path}: dropped a torn last line (interrupted mid-write)", stacklevel=2)
                break
            raise EvalError(f"{path}:{n}: invalid JSON ({exc.msg}); delete the file to start over") from exc
        i = row.get("index")
        if not isinstance(i, int) or not 0 <= i < len(ids) or row.get("id") != ids[i]:
            raise EvalError(f"{path}:{n}: row (index {i!r}, id {row.get('id')!r}) does not match the question file")
        done.setdefault(i, row)  # first copy wins: a batch is never counted twice
    return done


def eval_world() -> tuple[int, int]:
    """(rank, world size) of an evaluation started on several processes (`torchrun
    --nproc_per_node N` or `accelerate launch --num_processes N`: WORLD_SIZE > 1), else (0, 1).
    Starts torch.distributed when needed (nccl on GPUs, each rank on its LOCAL_RANK GPU; gloo on
    CPUs). Each rank generates every N-th batch; rank 0 writes the results."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def rank_progress_file(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.progress.rank{rank}.jsonl")


def _file_rank(path: Path) -> int:
    m = re.search(r"\.progress\.rank(\d+)\.jsonl$", path.name)
    return int(m.group(1)) if m else 0


def progress_files(out: Path) -> list[Path]:
    """The resumable progress of `out`: FILE.progress.jsonl and the other ranks' files, in rank order."""
    main = out.with_name(out.name + PROGRESS_SUFFIX)
    ranks = sorted(out.parent.glob(f"{glob.escape(out.name)}.progress.rank*.jsonl"), key=_file_rank)
    return ([main] if main.exists() else []) + ranks


def score_rows(rows: list[dict], source: str, avqa: bool) -> tuple[dict, str]:
    """(report dict, printable text): the official MMAU report for MMAU rows; for AVQA rows the
    total under the same string match (with a Wilson interval)."""
    from . import mmau

    if not avqa:
        report = mmau.score_predictions(rows, source=source)
        return report.to_dict(), mmau.format_report(report)
    tally = mmau.Tally()
    for r in rows:
        tally.total += 1
        tally.correct += int(mmau.mmau_string_match(r["answer"], r["model_prediction"], r["choices"]))
    text = f"Total Accuracy: {tally.accuracy:.2f}% over {tally.total} samples (string match; no task fields)\n"
    return {"source": source, "total": tally.to_dict(), "scored": tally.total, "records": len(rows)}, text


def evaluate_file(model_path: str | Path, data: str | Path, out: str | Path, *args: Any, **kwargs: Any) -> dict:
    """`_evaluate_file` as the one process writing `out` (a lock file `.OUT.lock` beside it,
    `aqa_core.files.hold_output`): a second evaluation into the same `out` refuses at once,
    naming the first; so does a second sweep of the same run. See `_evaluate_file`."""
    out = Path(out)
    for written in (out, *(out.with_name(out.name + x)
                           for x in (SCORE_JSON_SUFFIX, SCORE_TXT_SUFFIX, PROGRESS_SUFFIX))):
        if input_it_would_overwrite(written, data) is not None:  # refused before the lock is even taken
            raise EvalError(f"{written}: would overwrite the question file --data {data}; choose another --out "
                            "(an input is never overwritten, not even with --overwrite)")
    rank, _ = eval_world()  # several processes of one evaluation: rank 0 holds the lock for them all
    with hold_output(out) if rank == 0 else contextlib.nullcontext():
        return _evaluate_file(model_path, data, out, *args, **kwargs)


def _evaluate_file(
    model_path: str | Path,
    data: str | Path,
    out: str | Path,
    audio_dir: str | Path | None = None,
    prompt=2,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    decoding: str = "greedy",
    seed: int = 0,
    limit: int | None = None,
    skip_missing: bool = False,
    overwrite: bool = False,
    audio: str = "real",
    loader: Callable[[], tuple[Any, Any]] | None = None,
    after_batch: Callable[[int], None] | None = None,
    progress: bool = True,
    verbose: bool = True,
    tower_cache: TowerCache | None = None,
    tower_store: str | Path | None = None,
    input_cache: InputCache | None = None,
) -> dict:
    """Evaluate one model on one question file into `out` (+ `.score.json`/`.score.txt`); returns
    the score summary. Skips the work when `out` already holds these settings' results; resumes
    from `out.progress.jsonl`. `loader` supplies (model, processor) (default `load_model`), called
    only if something is left to generate; `after_batch(n_batches_done)` is a hook (tests interrupt
    with it); `tower_cache` is passed to `evaluate_records`, with `tower_store` (a `tower-cache`
    file) loaded into it when it was made by this model's tower, and so is `input_cache` (the
    processor's output of batches fed before). `audio` ablates what the model hears
    (`ablate_audio`: real, silence or mismatched, paired with `seed`), after the audio check."""
    rank, world = eval_world()
    say = print if verbose and rank == 0 else (lambda *a, **k: None)
    progress = progress and rank == 0
    out, data = Path(out), Path(data)
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be >= 1 (or left out: every question), got {limit}")
    if batch_size < 1 or max_new_tokens < 1:
        raise EvalError(f"--batch-size and --max-new-tokens must be >= 1, got {batch_size} and {max_new_tokens}")
    folder = check_model_folder(model_path)  # a damaged folder fails here, before any work
    prompt = int(as_prompt(prompt))
    if decoding not in DECODINGS:
        raise EvalError(f"--decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
    if audio not in AUDIO_ABLATIONS:
        raise EvalError(f"--audio must be one of {', '.join(AUDIO_ABLATIONS)}, got {audio!r}")
    records, base_rows = questions_and_rows(data, audio_dir)
    if limit is not None:
        records, base_rows = records[:limit], base_rows[:limit]
    settings = EvalSettings(str(folder.resolve()), _model_fingerprint(folder), str(data.resolve()),
                            sha256_file(data)[:16], str(Path(audio_dir).resolve()) if audio_dir else None, prompt,
                            max_new_tokens, decoding, seed, limit, audio)
    score_json = out.with_name(out.name + SCORE_JSON_SUFFIX)
    sidecar = out.with_name(out.name + PROGRESS_SUFFIX)
    if out.exists() and not progress_files(out):
        previous = json.loads(score_json.read_text(encoding="utf-8")) if score_json.is_file() else {}
        if _same_settings(previous.get("settings"), settings):
            score_txt = out.with_name(out.name + SCORE_TXT_SUFFIX)
            say(score_txt.read_text(encoding="utf-8") if score_txt.is_file() else "", end="")
            say(f"{out}: already evaluated with these settings{_audio_note(audio)} (cached)")
            return {**previous, "cached": True}
        if not overwrite:
            raise EvalError(f"{out} exists, from other settings (model, data, prompt, decoding, audio...) or another "
                            "tool; pass --overwrite or choose another --out")

    problems = check_audio(records, progress, model_window_seconds(folder))  # before any model work
    skipped_ids: list[str] = []
    if problems:
        detail = "; ".join(f"{i}: {p}" for i, p in problems[:5])
        msg = (f"{data}: {len(problems)} of {len(records)} question(s) have missing or unreadable audio "
               f"(first: {detail})")
        if not skip_missing:
            raise EvalError(msg + "; fix --audio-dir or pass --skip-missing to drop them")
        warnings.warn(msg + "; dropped (--skip-missing), so the score covers fewer items", stacklevel=2)
        skipped_ids = [i for i, _ in problems]
    bad = set(skipped_ids)
    ids = [str(r["id"]) for r in records]
    usable = [i for i in range(len(records)) if ids[i] not in bad]
    try:  # after the check: it looked at the real files; the model hears these
        fed = dict(zip(usable, ablate_audio([records[i] for i in usable], audio, seed), strict=True))
    except ValueError as exc:
        raise EvalError(f"{data}: {exc}") from exc

    # Progress: rank 0 appends to FILE.progress.jsonl, rank r of a multi-process evaluation to
    # FILE.progress.rankR.jsonl; a resume reads them all, whatever the world size that wrote them.
    own = sidecar if rank == 0 else rank_progress_file(out, rank)
    done: dict[int, dict] = {}
    stale = []
    for f in progress_files(out):
        found = _read_progress(f, settings, ids, repair=f == own) if f.stat().st_size else {}
        if found is None:
            if not overwrite:
                raise EvalError(f"{f} is a partial run with other settings; pass --overwrite to restart")
            stale.append(f)
            continue
        for i, row in found.items():
            done.setdefault(i, row)  # first copy wins: a batch is never counted twice
    _barrier(world)  # every rank has read before a file is removed
    for f in stale:  # each rank removes its own; rank 0 also those of ranks this launch does not have
        if f == own or (rank == 0 and _file_rank(f) >= world):
            f.unlink(missing_ok=True)
    if done:
        say(f"{out}: resuming, {len(done)} of {len(records)} item(s) already done")
    if not own.exists() or own.stat().st_size == 0:  # none yet, or killed before its header was written
        out.parent.mkdir(parents=True, exist_ok=True)
        own.write_text(json.dumps({"settings": asdict(settings)}) + "\n", encoding="utf-8")

    pending = [i for i in range(len(records)) if i not in done and ids[i] not in bad]
    seconds = 0.0
    if pending:
        model, processor = (loader or (lambda: load_model(folder)))()
        n_batches = 0

        def write_batch(rows: list[tuple[int, dict]]) -> None:
            nonlocal n_batches
            with own.open("a", encoding="utf-8") as fh:
                for i, row in rows:
                    fh.write(json.dumps({"index": i, "id": ids[i], "raw_output": row["raw_output"]},
                                        ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            n_batches += 1
            if after_batch is not None:
                after_batch(n_batches)

        if tower_store:
            tower_cache = tower_cache if tower_cache is not None else TowerCache(device="cpu")
            load_store(tower_cache, tower_store, model)
        t0 = time.perf_counter()
        try:
            evaluate_records(model, processor, [fed[i] for i in pending], prompt, batch_size, max_new_tokens,
                             decoding, seed, progress=progress, desc=out.name, tower_cache=tower_cache,
                             input_cache=input_cache, shard=(rank, world),
                             on_batch=lambda rows: write_batch([(pending[j], r) for j, r in rows]))
        except KeyboardInterrupt:
            say(f"\ninterrupted: progress kept in {own}; rerun the same command to resume")
            raise
        seconds = time.perf_counter() - t0
    _barrier(world)  # every rank's batches are on disk
    if rank != 0:  # rank 0 writes the results; the others return them once they are there
        _barrier(world)
        return {**json.loads(score_json.read_text(encoding="utf-8")), "cached": False}
    done = {}
    for f in progress_files(out):
        for i, row in (_read_progress(f, settings, ids, repair=False) or {}).items():
            done.setdefault(i, row)
    missing = [ids[i] for i in range(len(records)) if ids[i] not in bad and i not in done]
    if missing:
        _barrier(world)
        raise EvalError(f"{out}: {len(missing)} item(s) have no prediction in the progress files (e.g. {missing[0]}); "
                        "rerun the same command to finish them")

    rows = []
    for i, base in enumerate(base_rows):
        if ids[i] in bad:
            continue
        raw = done[i]["raw_output"]
        answer = extract_answer(raw)
        rows.append({**base, "model_prediction": answer, "model_output": answer, "raw_output": raw})
    write_atomic(out, json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    report, text = score_rows(rows, str(out), avqa=data.suffix == ".jsonl")
    summary = {"settings": asdict(settings), "predictions": str(out), "report": report,
               "skipped_missing_audio": len(skipped_ids), "skipped_ids": skipped_ids[:20],
               "generated": len(pending), "seconds": round(seconds, 3),
               "items_per_second": round(len(pending) / seconds, 3) if seconds else None}
    write_atomic(score_json, json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    write_atomic(out.with_name(out.name + SCORE_TXT_SUFFIX), text)
    for f in progress_files(out):
        f.unlink()
    _barrier(world)
    summary["cached"] = False
    say(text, end="")
    if pending:
        say(f"{len(pending)} item(s) in {seconds:.1f} s ({len(pending) / seconds:.2f} items/s); wrote {out}"
            + _audio_note(audio))
    elif audio != "real":
        say(f"wrote {out}{_audio_note(audio)}")
    return summary


def _audio_note(audio: str) -> str:
    """What the summary line adds for an ablation ('' for real audio)."""
    return "" if audio == "real" else f" (audio: {audio}, {AUDIO_ABLATIONS[audio]})"


# ----------------------------------------------------------------------------- command line


def exit_code(call: Callable[[], Any]) -> int:
    """A command's exit code: 0 after `call()`, 1 (message on stderr) for bad input, 130 when
    interrupted (a resumable evaluation keeps its progress)."""
    try:
        call()
    except (EvalError, RunDirError, FolderBusy, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C): the finished batches are kept; rerun the same command to resume",
              file=sys.stderr)
        return 130
    return 0


def add_eval_arguments(ap: argparse.ArgumentParser) -> None:
    """The generation options `evaluate` and `sweep` share."""
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--decoding", choices=DECODINGS, default="greedy",
                    help="greedy (default) or the checkpoint's generation_config, as the official script")
    ap.add_argument("--seed", type=int, default=0,
                    help="torch seed (matters only when decoding samples) and the --audio mismatched pairing")
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N questions")
    ap.add_argument("--skip-missing", action="store_true", help="drop questions whose wav is missing (counted)")
    ap.add_argument("--tower-cache-file", default=None, metavar="STORE",
                    help="replay the audio tower's outputs from this store (python -m aqa_core tower-cache) when it "
                         "was made by the model's tower; same results, less work")
    ap.add_argument("--audio", choices=tuple(AUDIO_ABLATIONS), default="real",
                    help="ablation: real (default), silence (zeros of each clip's length) or mismatched (each "
                         "question gets another's clip, paired by --seed, other sub-categories preferred)")


def cli_evaluate(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aqa_core evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model folder (checkpoint, final/, or a base model)")
    ap.add_argument("--data", required=True, help="MMAU-schema question JSON (or R1-AQA JSONL)")
    ap.add_argument("--audio-dir", default=None,
                    help="folder that audio_id paths are relative to (default: the JSON's folder)")
    ap.add_argument("--out", required=True, help="predictions JSON to write (report beside it)")
    ap.add_argument("--prompt", default="2", help="1 (SFT), 2 (answer tags, the official eval prompt) or 3 (think)")
    ap.add_argument("--overwrite", action="store_true", help="replace results made with other settings")
    add_eval_arguments(ap)
    a = ap.parse_args(argv)
    return exit_code(lambda: evaluate_file(a.model, a.data, a.out, a.audio_dir, a.prompt, a.batch_size,
                                           a.max_new_tokens, a.decoding, a.seed, a.limit, a.skip_missing,
                                           a.overwrite, a.audio, tower_store=a.tower_cache_file))


cli = cli_evaluate
