"""Reuse the audio tower's output for a clip while the tower's weights do not change.

The audio tower (the Whisper-style encoder of Qwen2-Audio) is a pure function of a clip's mel
features and its own weights. When it is frozen and runs without dropout, as at the mini scale,
its output for a clip is the same at every step of training and in every checkpoint of a run,
so encoding a clip once is enough:

- training (SFT, GRPO and the mini base model) encodes each clip the first time a batch holds
  it and replays it afterwards: `cache_frozen_tower(model)` keys clips by the bytes of their
  features, so no trainer or collator has to carry keys;
- a checkpoint sweep encodes the test and validation clips with the first checkpoint and replays
  them for the others (keyed by audio path), whose towers are checked to be byte-identical first.

Replay wraps the tower's forward (`aqa_core.audio_tower.wrap_forward`) in a lookup that encodes
only the clips it has not seen (with the forward underneath) and returns the batch's outputs.
The projector, the audio-token merge, the loss and `generate` stay the model's own code. A
replayed output is a constant: exact for a frozen tower, whose output needs no gradient.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator, Sequence

from .audio_tower import audio_tower, tower_fingerprint, wrap_forward, wrapped_forward

TRAINING_CACHE = "frozen_tower_cache"  # the training wrapper's name on the tower's forward
DROPOUT_KEYS = ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop")


def content_keys(input_features, attention_mask=None) -> list[str]:  # noqa: ANN001 - tensors
    """One key per row: a hash of the row's features and attention mask (a mask shared by the
    whole batch counts for every row), dtype and shape. Identical inputs get the same key
    whatever file or prompt they came from."""
    import torch

    def raw(t) -> bytes:  # noqa: ANN001 - any dtype, bf16 included (numpy has none)
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


def tower_is_frozen(model) -> bool:  # noqa: ANN001
    """True when no parameter of the tower is trained."""
    return not any(p.requires_grad for p in audio_tower(model).parameters())


def tower_is_deterministic(model) -> bool:  # noqa: ANN001
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

    def bind(self, model) -> bool:  # noqa: ANN001
        """Tie the cache to this model's tower; True when its outputs carry over."""
        tid = tower_fingerprint(model)
        kept = tid == self.tower_id
        if not kept:
            self.outputs.clear()
            self.tower_id = tid
        return kept

    def replay(self, original: Callable, keys: Sequence[Hashable] | None, input_features,  # noqa: ANN001
               attention_mask=None, **kwargs):  # noqa: ANN001, ANN201
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
            for j, hidden in zip(todo, out.last_hidden_state):
                self.outputs[keys[j]] = hidden.detach().to(self.device or hidden.device)
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        hidden = torch.stack([self.outputs[k].to(input_features.device) for k in keys])
        return BaseModelOutput(last_hidden_state=hidden)

    @contextmanager
    def replaying(self, model, keys: Sequence[Hashable] | None = None) -> Iterator[None]:  # noqa: ANN001
        keys = None if keys is None else list(keys)

        def replay(original, input_features, attention_mask=None, **kwargs):  # noqa: ANN001, ANN202
            return self.replay(original, keys, input_features, attention_mask, **kwargs)

        with wrapped_forward(audio_tower(model), replay, "tower_cache"):
            yield

    def forward(self, model, batch: dict, keys: Sequence[Hashable] | None = None):  # noqa: ANN001, ANN201
        """`model(**batch)` with the tower's outputs taken from (and added to) the cache."""
        with self.replaying(model, keys):
            return model(**batch)


def cache_frozen_tower(model, cache: TowerCache | None = None) -> TowerCache | None:  # noqa: ANN001
    """For training: replay the tower's output for every clip it has encoded before, for as long
    as the tower is frozen and deterministic (checked at every call: a tower that is unfrozen or
    given dropout later runs its own forward again). Returns the cache, or None (nothing
    installed) when the tower is trained or stochastic now. Idempotent."""
    from .audio_tower import wrappers

    tower = audio_tower(model)
    if TRAINING_CACHE in wrappers(tower):
        return getattr(tower, "_aqa_training_cache", None)
    if not (tower_is_frozen(model) and tower_is_deterministic(model)):
        return None
    cache = cache if cache is not None else TowerCache()
    cache.bind(model)

    def replay(original, input_features, attention_mask=None, **kwargs):  # noqa: ANN001, ANN202
        if not (tower_is_frozen(model) and tower_is_deterministic(model)):
            cache.outputs.clear()  # whatever the tower does next, the stored outputs may be stale
            return original(input_features, attention_mask=attention_mask, **kwargs)
        return cache.replay(original, None, input_features, attention_mask, **kwargs)

    wrap_forward(tower, replay, TRAINING_CACHE)
    tower._aqa_training_cache = cache
    return cache
