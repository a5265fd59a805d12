"""Reuse the audio tower's output for a clip while the tower's weights do not change.

The audio tower (the Whisper-style encoder of Qwen2-Audio) is a pure function of a clip's mel
features and its own weights. When it is frozen and runs without dropout, as at the mini scale,
its output for a clip is the same at every step of training and in every checkpoint of a run,
so encoding a clip once is enough:

- training (SFT, GRPO and the mini base model) encodes each clip the first time a batch holds
  it and replays it afterwards: `cache_frozen_tower(model)` keys clips by the bytes of their
  features, so no trainer or collator has to carry keys;
- a checkpoint sweep encodes the test and validation clips with the first checkpoint and replays
  them for the others, whose towers are checked to be byte-identical first;
- a store (`python -m aqa_core tower-cache`, a safetensors file of outputs by key, made once per
  base model) lets every later process of a study replay clips it never encoded itself: the
  study's training runs, evaluations and sweeps load it (`load_store`) and encode nothing.

Replay wraps the tower's forward (`aqa_core.audio_tower.wrap_forward`) in a lookup that encodes
only the clips it has not seen (with the forward underneath) and returns the batch's outputs.
The projector, the audio-token merge, the loss and `generate` stay the model's own code. A
replayed output is a constant: exact for a frozen tower, whose output needs no gradient.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .audio_tower import audio_tower, tower_fingerprint, wrap_forward, wrapped_forward

TRAINING_CACHE = "frozen_tower_cache"  # the training wrapper's name on the tower's forward
DROPOUT_KEYS = ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop")


def content_keys(input_features, attention_mask=None) -> list[str]:  # tensors
    """One key per row: a hash of the row's features and attention mask (a mask shared by the
    whole batch counts for every row), dtype and shape. Identical inputs get the same key
    whatever file or prompt they came from."""
    import torch

    def raw(t) -> bytes:  # any dtype, bf16 included (numpy has none)
        return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()

    n = input_features.shape[0]
    per_row = torch.is_tensor(attention_mask) and attention_mask.dim() > 0 and attention_mask.shape[0] == n
    shared = raw(attention_mask) if torch.is_tensor(attention_mask) and not per_row else b""
    keys = []
    for i in range(n):
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{input_features.dtype}:{tuple(input_features.shape[1:])}".encode())
        h.update(raw(input_features[i]))
        h.update(raw(attention_mask[i]) if per_row else shared)
        keys.append(h.hexdigest())
    return keys


def tower_is_frozen(model) -> bool:
    """True when no parameter of the tower is trained."""
    return not any(p.requires_grad for p in audio_tower(model).parameters())


def tower_is_deterministic(model) -> bool:
    """True when the tower's forward has no randomness: in eval mode, or every dropout and
    layer-drop probability of its config is zero (the Qwen2-Audio default)."""
    tower = audio_tower(model)
    if not tower.training:
        return True
    cfg = getattr(tower, "config", None)
    return cfg is not None and all(float(getattr(cfg, k, 0.0) or 0.0) == 0.0 for k in DROPOUT_KEYS)


class TowerCache:
    """Audio-tower outputs by clip key (e.g. the audio path, or `content_keys`), for one set of
    tower weights.

    `bind(model)` ties the cache to the model's tower weights and empties it when they differ
    from the ones it holds outputs for (a run that trains the tower gets no stale replay).
    `replaying(model, keys)` is a context in which the tower's forward encodes only the unseen
    clips of a batch whose rows are `keys` (None: keyed by content). `hits` and `misses` count
    clips.
    """

    def __init__(self, device: str | None = None):
        self.outputs: dict[Hashable, Any] = {}
        self.tower_id: str | None = None
        self.device = device  # where outputs are kept (default: where the tower made them)
        self.hits = 0
        self.misses = 0
        self.stores: set[str] = set()  # stores loaded into `outputs` (load_store)

    def bind(self, model) -> bool:
        """Tie the cache to this model's tower; True when its outputs carry over."""
        tid = tower_fingerprint(model)
        kept = tid == self.tower_id
        if not kept:
            self.outputs.clear()
            self.stores.clear()
            self.tower_id = tid
        return kept

    def replay(self, original: Callable, keys: Sequence[Hashable] | None, input_features,
               attention_mask=None, **kwargs):
        """The tower's output for a batch: cached rows replayed, the others encoded by
        `original` (the forward underneath) and stored."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        keys = content_keys(input_features, attention_mask) if keys is None else list(keys)
        if input_features.shape[0] != len(keys):
            raise ValueError(f"TowerCache: a batch of {input_features.shape[0]} clips for {len(keys)} keys")
        todo, seen = [], set()  # rows to encode: each unseen clip once, however often it repeats
        for j, k in enumerate(keys):
            if k not in self.outputs and k not in seen:
                todo.append(j)
                seen.add(k)
        if todo:
            rows = torch.tensor(todo, device=input_features.device)
            mask = attention_mask
            if torch.is_tensor(mask) and mask.shape[0] == len(keys):
                mask = mask.index_select(0, rows.to(mask.device))
            with torch.no_grad():
                out = original(input_features.index_select(0, rows), attention_mask=mask, **kwargs)
            for j, hidden in zip(todo, out.last_hidden_state, strict=True):
                self.outputs[keys[j]] = hidden.detach().to(self.device or hidden.device)
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        hidden = torch.stack([self.outputs[k].to(input_features.device) for k in keys])
        return BaseModelOutput(last_hidden_state=hidden)

    @contextmanager
    def replaying(self, model, keys: Sequence[Hashable] | None = None) -> Iterator[None]:
        keys = None if keys is None else list(keys)

        def replay(original, input_features, attention_mask=None, **kwargs):
            return self.replay(original, keys, input_features, attention_mask, **kwargs)

        with wrapped_forward(audio_tower(model), replay, "tower_cache"):
            yield

    def forward(self, model, batch: dict, keys: Sequence[Hashable] | None = None):
        """`model(**batch)` with the tower's outputs taken from (and added to) the cache."""
        with self.replaying(model, keys):
            return model(**batch)


def cache_frozen_tower(model, cache: TowerCache | None = None,
                       store: str | Path | None = None) -> TowerCache | None:
    """For training: replay the tower's output for every clip it has encoded before (or that
    `store`, a `tower-cache` file of this tower, holds), for as long as the tower is frozen and
    deterministic (checked at every call: a tower that is unfrozen or given dropout later runs its
    own forward again). Returns the cache, or None (nothing installed) when the tower is trained
    or stochastic now. Idempotent."""
    from .audio_tower import wrappers

    tower = audio_tower(model)
    if TRAINING_CACHE in wrappers(tower):
        return getattr(tower, "_aqa_training_cache", None)
    if not (tower_is_frozen(model) and tower_is_deterministic(model)):
        return None
    cache = cache if cache is not None else TowerCache()
    cache.bind(model)
    if store:
        load_store(cache, store, model)

    def replay(original, input_features, attention_mask=None, **kwargs):
        if not (tower_is_frozen(model) and tower_is_deterministic(model)):
            cache.outputs.clear()  # whatever the tower does next, the stored outputs may be stale
            return original(input_features, attention_mask=attention_mask, **kwargs)
        return cache.replay(original, None, input_features, attention_mask, **kwargs)

    wrap_forward(tower, replay, TRAINING_CACHE)
    tower._aqa_training_cache = cache
    return cache


# ----------------------------------------------------------------------------- a store on disk

STORE_FORMAT = "aqa_core tower cache 1"


def save_store(cache: TowerCache, path: str | Path) -> Path:
    """Write a cache's outputs to a safetensors file (its keys -> tensors; the tower fingerprint
    in the metadata), atomically: a reader never sees half a store."""
    import os

    from safetensors.torch import save_file

    if cache.tower_id is None:
        raise ValueError("save_store: the cache is bound to no tower (call cache.bind(model) before encoding)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tensors = {str(k): v.detach().to("cpu").contiguous() for k, v in cache.outputs.items()}
    save_file(tensors, str(tmp), metadata={"format": STORE_FORMAT, "tower_fingerprint": str(cache.tower_id)})
    os.replace(tmp, path)
    return path


def load_store(cache: TowerCache, path: str | Path, model) -> int:
    """Add a store's outputs to `cache` (bound to `model` first) when the store was made by a tower
    byte-identical to the model's; returns how many were added. A store of another tower adds
    nothing and says so (a warning): replaying it would feed the model another tower's outputs."""
    import warnings

    from safetensors import safe_open

    cache.bind(model)
    if str(Path(path).resolve()) in cache.stores:
        return 0
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        if meta.get("format") != STORE_FORMAT:
            raise ValueError(f"{path}: not a tower cache store (format {meta.get('format')!r})")
        if meta.get("tower_fingerprint") != cache.tower_id:
            warnings.warn(f"{path}: made by another audio tower ({meta.get('tower_fingerprint')}, this model's is "
                          f"{cache.tower_id}); not used", stacklevel=2)
            return 0
        keys = list(fh.keys())
        for key in keys:
            cache.outputs[key] = fh.get_tensor(key).to(cache.device) if cache.device else fh.get_tensor(key)
    cache.stores.add(str(Path(path).resolve()))
    return len(keys)


def encode_store(model_dir: str | Path, audio_paths: Sequence[str], out: str | Path, batch_size: int = 32,
                 progress: bool = True) -> dict:
    """Encode every clip with a model's (frozen) tower, through the model's own forward so that the
    keys are those training and evaluation will compute, and save the store. Returns a summary."""
    import time

    import torch
    from tqdm.auto import tqdm
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from .audio import SAMPLE_RATE, load_audio

    t0 = time.perf_counter()
    model = Qwen2AudioForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    cache = TowerCache(device="cpu")
    cache.bind(model)
    paths = list(dict.fromkeys(str(p) for p in audio_paths))
    for i in tqdm(range(0, len(paths), batch_size), desc="tower cache", unit="batch", disable=not progress):
        audios = [load_audio(p, SAMPLE_RATE) for p in paths[i:i + batch_size]]
        enc = processor(text=[processor.audio_token] * len(audios), audio=audios, sampling_rate=SAMPLE_RATE,
                        return_tensors="pt", padding=True)
        with torch.inference_mode(), cache.replaying(model):
            model(**enc)
    save_store(cache, out)
    return {"clips": len(paths), "outputs": len(cache.outputs), "tower_fingerprint": cache.tower_id,
            "seconds": round(time.perf_counter() - t0, 1), "path": str(out)}


def cli(argv: list[str]) -> int:
    """python -m aqa_core tower-cache --model M --data FILE [--audio-dir D] [--data ...] --out STORE"""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m aqa_core tower-cache",
                                 description="Encode every clip of some question files with a model's frozen audio "
                                             "tower into a store that training, evaluation and sweeps replay.")
    ap.add_argument("--model", required=True, help="model folder whose audio tower encodes (e.g. runs/mini/base)")
    ap.add_argument("--data", action="append", required=True, metavar="FILE",
                    help="question file (R1-AQA JSONL or MMAU JSON); repeatable")
    ap.add_argument("--audio-dir", action="append", default=[], metavar="DIR",
                    help="audio folder of the --data at the same position (default: the file's own folder rules)")
    ap.add_argument("--out", required=True, help="the store to write (.safetensors)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.audio_dir and len(a.audio_dir) != len(a.data):
        ap.error("give one --audio-dir per --data, or none")
    from .data import DataError, load_questions
    from .files import input_it_would_overwrite

    clash = input_it_would_overwrite(a.out, *a.data)
    if clash is not None:
        print(f"error: {a.out}: --out is the input question file {clash}; choose another path", file=sys.stderr)
        return 2
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    try:
        paths = [r["audio_path"] for i, f in enumerate(a.data)
                 for r in load_questions(f, a.audio_dir[i] if a.audio_dir else None, check_audio=True)]
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = encode_store(a.model, paths, a.out, a.batch_size, progress=not a.quiet)
    print(f"tower-cache: {summary['outputs']} outputs of {summary['clips']} clips "
          f"(tower {summary['tower_fingerprint']}) in {summary['seconds']} s -> {a.out}")
    return 0
