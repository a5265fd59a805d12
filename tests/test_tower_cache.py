"""The frozen-tower cache in training (aqa_core.tower_cache): each clip encoded once per run, the
same losses, log-probs and weights as without it, and no replay once the tower can change."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from aqa_core.audio_tower import wrappers
from aqa_core.runs import read_metrics
from aqa_core.tower_cache import TRAINING_CACHE, TowerCache, cache_frozen_tower, content_keys, load_store, save_store


class Config:
    dropout = 0.0
    attention_dropout = 0.0
    activation_dropout = 0.0
    encoder_layerdrop = 0.0


class Tower(nn.Module):
    main_input_name = "input_features"

    def __init__(self):
        super().__init__()
        self.config = Config()
        self.layers = nn.ModuleList([nn.Linear(3, 3, bias=False)])
        self.calls: list[int] = []

    def forward(self, input_features, attention_mask=None):
        self.calls.append(input_features.shape[0])
        return BaseModelOutput(last_hidden_state=self.layers[0](input_features))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.audio_tower = Tower()


def test_content_keys_follow_the_bytes_not_the_row():
    a, b = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 2.0, 3.5]])
    keys = content_keys(torch.cat([a, b, a]))
    assert keys[0] == keys[2] != keys[1]
    assert content_keys(a.to(torch.bfloat16)) != content_keys(a)  # the dtype is part of the key
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1]])
    assert len(set(content_keys(torch.cat([a, b, a]), mask))) == 3  # same features, other mask


def test_a_frozen_tower_encodes_each_clip_once_per_run():
    model = Model()
    tower = model.audio_tower
    tower.requires_grad_(False)
    cache = cache_frozen_tower(model)
    assert cache is not None and wrappers(tower) == [TRAINING_CACHE]
    assert cache_frozen_tower(model) is cache  # idempotent
    a, b, c = (torch.tensor([[float(i), 1.0, 2.0]]) for i in range(3))
    with torch.no_grad():
        plain = tower.layers[0](torch.cat([a, b, c]))
    first = tower(torch.cat([a, b, a])).last_hidden_state
    second = tower(torch.cat([c, b, a])).last_hidden_state
    assert tower.calls == [2, 1]  # a and b, then only c
    assert torch.equal(first, plain[[0, 1, 0]]) and torch.equal(second, plain[[2, 1, 0]])
    assert (cache.misses, cache.hits) == (3, 3)


def test_no_replay_once_the_tower_trains_or_drops_out():
    model = Model()
    tower = model.audio_tower
    assert cache_frozen_tower(model) is None and wrappers(tower) == []  # trainable: nothing installed
    tower.requires_grad_(False)
    cache = cache_frozen_tower(model)
    x = torch.ones(2, 3)
    tower(x)
    tower.layers[0].weight.requires_grad_(True)  # unfrozen later: its own forward again
    tower(x)
    tower(x)
    assert tower.calls == [1, 2, 2] and cache.outputs == {}
    tower.layers[0].weight.requires_grad_(False)
    tower.config.dropout = 0.1
    tower.train()
    tower(x)
    assert tower.calls == [1, 2, 2, 2] and cache.outputs == {}  # stochastic in training mode: no replay
    tower.eval()  # deterministic again: replayed from the next call on
    tower(x)
    tower(x)
    assert tower.calls == [1, 2, 2, 2, 1]

def test_a_store_replays_only_for_the_tower_that_made_it(tmp_path):
    model = Model()
    model.audio_tower.requires_grad_(False)
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    maker = TowerCache()
    with pytest.raises(ValueError, match="bound to no tower"):
        save_store(maker, tmp_path / "unbound.safetensors")
    maker.bind(model)
    with maker.replaying(model):
        expected = model.audio_tower(x).last_hidden_state
    store = save_store(maker, tmp_path / "tower.safetensors")
    again = Model()
    again.audio_tower.load_state_dict(model.audio_tower.state_dict())
    again.audio_tower.requires_grad_(False)
    cache = cache_frozen_tower(again, store=store)
    assert len(cache.outputs) == 2 and load_store(cache, store, again) == 0  # loaded once
    assert torch.equal(again.audio_tower(x).last_hidden_state, expected) and again.audio_tower.calls == []
    other = Model()  # other weights: the store must not be replayed
    other.audio_tower.requires_grad_(False)
    with pytest.warns(UserWarning, match="made by another audio tower"):
        cache = cache_frozen_tower(other, store=store)
    assert cache.outputs == {}
    other.audio_tower(x)
    assert other.audio_tower.calls == [2]


# ----------------------------------------------------------------------------- real runs (slow)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_run_inputs):
    """A tiny random Qwen2-Audio and 8 synthetic training questions with wavs (conftest)."""
    return tiny_run_inputs(tmp_path_factory.mktemp("tower_cache"))


def _weights(path) -> dict[str, torch.Tensor]:
    from transformers import Qwen2AudioForConditionalGeneration

    return Qwen2AudioForConditionalGeneration.from_pretrained(path).state_dict()


def _rows(run_dir, keys) -> list[dict]:
    return [{k: r.get(k) for k in keys} for r in read_metrics(run_dir) if not r.get("summary")]


@pytest.mark.slow
@pytest.mark.parametrize("use_peft", [False, True], ids=["full", "lora"])
def test_sft_with_the_cache_is_the_same_training(tiny, use_peft):
    """Both caches on (the tower's outputs, the collator's encodings: the default) or both off."""
    from aqa_core.train.sft import SFTRecipe, run_sft

    cfg = SFTRecipe(model_name_or_path=tiny["model"], train_data=str(tiny["data"] / "train.jsonl"),
                    train_audio_dir=str(tiny["data"] / "train-audios"), learning_rate=1e-3,
                    per_device_train_batch_size=4, max_steps=6, save_steps=100, logging_steps=1,
                    lr_scheduler_type="constant", seed=7, freeze_audio_tower=True, use_peft=use_peft,
                    save_merged=False, device="cpu")
    from aqa_core.data import load_questions
    from aqa_core.tower_cache import encode_store

    store = tiny["root"] / "tower.safetensors"
    if not store.is_file():
        paths = [r["audio_path"] for r in load_questions(tiny["data"] / "train.jsonl", tiny["data"] / "train-audios")]
        assert encode_store(tiny["model"], paths, store, progress=False)["outputs"] == 8
    runs = {}
    for name, kw in {"cache": {}, "none": {"cache_audio_tower": False, "collate_cache_mb": 0},
                     "store": {"tower_cache_file": str(store)}}.items():
        out = tiny["root"] / f"sft-{'lora' if use_peft else 'full'}-{name}"
        run_sft(replace(cfg, output_dir=str(out), **kw))
        runs[name] = out
    rows = {name: _rows(out, ("step", "loss", "grad_norm")) for name, out in runs.items()}
    assert len(rows["cache"]) == 6 and rows["cache"] == rows["none"] == rows["store"]  # clips repeat from step 3
    a, b, c = (_weights(runs[n] / "final") for n in ("cache", "none", "store"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow
def test_grpo_with_the_cache_is_the_same_training(tiny):
    from aqa_core.rewards import completion_text
    from aqa_core.train.grpo import GRPORecipe, run_grpo

    def length_reward(completions, **kwargs):
        return [float(len(completion_text(c)) % 3) for c in completions]

    cfg = GRPORecipe(model_name_or_path=tiny["model"], train_data=str(tiny["data"] / "train.jsonl"),
                     train_audio_dir=str(tiny["data"] / "train-audios"), num_processes=None, num_generations=4,
                     per_device_train_batch_size=8, gradient_accumulation_steps=1, max_completion_length=8,
                     max_steps=6, save_steps=100, learning_rate=1e-3, device="cpu", seed=0,
                     freeze_audio_tower=True)
    from aqa_core.data import load_questions
    from aqa_core.tower_cache import encode_store

    store = tiny["root"] / "grpo-tower.safetensors"
    paths = [r["audio_path"] for r in load_questions(tiny["data"] / "train.jsonl", tiny["data"] / "train-audios")]
    encode_store(tiny["model"], paths, store, progress=False)
    trainers = {}
    for cached, kw in ((True, {}), (False, {"cache_audio_tower": False}), ("store", {"tower_cache_file": str(store)})):
        out = tiny["root"] / f"grpo-{cached}"
        trainers[cached] = run_grpo(replace(cfg, output_dir=str(out), **kw), reward_funcs=[length_reward])
    keys = ("step", "loss", "kl", "reward", "reward_std", "completions/mean_length", "entropy", "grad_norm")
    with_cache, without, stored = (_rows(tiny["root"] / f"grpo-{c}", keys) for c in (True, False, "store"))
    assert len(with_cache) == 6 and with_cache == without == stored
    from aqa_core.audio_tower import audio_tower

    assert audio_tower(trainers["store"].model)._aqa_training_cache.misses == 0  # every clip came from the store
    cache = audio_tower(trainers[True].model)._aqa_training_cache
    assert cache.hits > 0 and cache.misses <= 8  # 8 questions in 6 steps of 2: some clips came back
    a, b = _weights(tiny["root"] / "grpo-True" / "final"), _weights(tiny["root"] / "grpo-False" / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)
