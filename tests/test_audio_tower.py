"""The audio tower: found in any wrapping, and its forward wrapped one way, so that GRPO's shared
encoding and the sweep's replay cache stack instead of removing each other."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from aqa_core.audio_tower import audio_tower, wrap_forward, wrapped_forward, wrappers
from aqa_core.tower_cache import TowerCache
from aqa_core.train.grpo_trainer import SHARED_ENCODING, share_audio_encoding


class Tower(nn.Module):
    """Stands in for Qwen2AudioEncoder: `input_features` in, one hidden row per clip out."""

    main_input_name = "input_features"

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(3, 3, bias=False)])
        self.calls: list[int] = []  # rows encoded per call

    def forward(self, input_features, attention_mask=None):
        self.calls.append(input_features.shape[0])
        return BaseModelOutput(last_hidden_state=self.layers[0](input_features))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Module()
        self.model.audio_tower = Tower()


class Wrapped(nn.Module):  # like a PEFT or DDP wrapper
    def __init__(self, inner):
        super().__init__()
        self.module = inner


def test_the_tower_is_found_in_any_wrapping():
    model = Model()
    assert audio_tower(model) is model.model.audio_tower
    assert audio_tower(Wrapped(Wrapped(model))) is model.model.audio_tower
    with pytest.raises(TypeError, match="expected one audio tower"):
        audio_tower(nn.Linear(2, 2))


def test_wrappers_stack_and_undo_exactly():
    tower = Tower()
    x = torch.ones(2, 3)
    log = []
    undo_a = wrap_forward(tower, lambda inner, *a, **k: log.append("a") or inner(*a, **k), "a")
    with wrapped_forward(tower, lambda inner, *a, **k: log.append("b") or inner(*a, **k), "b"):
        assert wrappers(tower) == ["b", "a"]
        tower(x)
        assert log == ["b", "a"] and tower.calls == [2]
        with pytest.raises(RuntimeError, match="another wrapper sits on top"):
            undo_a()
    assert wrappers(tower) == ["a"]  # leaving the block restored exactly what was there
    undo_a()
    assert "forward" not in vars(tower) and wrappers(tower) == []


def test_replay_inside_shared_encoding_keeps_the_shared_wrapper():
    """The sweep's replay used to delete `tower.forward` on exit, removing GRPO's wrapper."""
    model = Model()
    tower = model.model.audio_tower
    share_audio_encoding(model)
    share_audio_encoding(model)  # idempotent
    assert wrappers(tower) == [SHARED_ENCODING]
    clip = torch.tensor([[1.0, 2.0, 3.0]])
    batch = torch.cat([clip, clip, clip * 2])  # two distinct clips, one repeated
    cache = TowerCache()
    with cache.replaying(model, ["c1", "c1", "c2"]):
        assert wrappers(tower) == ["tower_cache", SHARED_ENCODING]
        out = tower(batch).last_hidden_state
    assert tower.calls == [2]  # the cache asked for its 2 distinct keys; shared encoding passed them on
    assert torch.equal(out[0], out[1]) and (cache.misses, cache.hits) == (2, 1)
    assert wrappers(tower) == [SHARED_ENCODING]
    tower.calls.clear()
    plain = tower(batch).last_hidden_state
    assert tower.calls == [2] and torch.equal(plain, out)
