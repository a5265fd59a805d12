"""Reuse the audio tower's output for a clip while the tower's weights do not change.

The audio tower (the Whisper-style encoder of Qwen2-Audio) is a pure function of a clip's mel
features and its own weights. When it is frozen, as at the mini scale, its output for a clip is
the same at every step of training and in every checkpoint of a run, so encoding a clip once is
enough:

- training (the mini base model) encodes each clip on its first epoch and replays it later;
- a checkpoint sweep encodes the test and validation clips with the first checkpoint and replays
  them for the others, whose towers are checked to be byte-identical first.

Replay wraps the tower's forward (`aqa_core.audio_tower.wrapped_forward`), for the duration of
one call, in a lookup that encodes only the clips it has not seen (with the forward underneath)
and returns the batch's outputs. The projector, the audio-token merge, the loss and `generate`
stay the model's own code.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Hashable, Iterator, Sequence

from ..audio_tower import audio_tower, tower_fingerprint, wrapped_forward


class TowerCache:
    """Audio-tower outputs by clip key (e.g. the audio path), for one set of tower weights.

    `bind(model)` ties the cache to the model's tower weights and empties it when they differ
    from the ones it holds outputs for (a run that trains the tower gets no stale replay).
    `replaying(model, keys)` is a context in which the tower's forward encodes only the unseen
    clips of a batch whose rows are `keys`. `hits` and `misses` count clips.
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

    @contextmanager
    def replaying(self, model, keys: Sequence[Hashable]) -> Iterator[None]:  # noqa: ANN001
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        keys = list(keys)

        def replay(original, input_features, attention_mask=None, **kwargs):  # noqa: ANN001, ANN202
            if input_features.shape[0] != len(keys):
                raise ValueError(f"TowerCache: a batch of {input_features.shape[0]} clips for {len(keys)} keys")
            todo = [j for j, k in enumerate(keys) if k not in self.outputs]
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

        with wrapped_forward(audio_tower(model), replay, "tower_cache"):
            yield

    def forward(self, model, batch: dict, keys: Sequence[Hashable]):  # noqa: ANN001, ANN201
        """`model(**batch)` with the tower's outputs taken from (and added to) the cache."""
        with self.replaying(model, keys):
            return model(**batch)
