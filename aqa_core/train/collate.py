"""The SFT collator: chat text with audio -> model inputs, with loss on the answer only.

One user turn (audio first, then the text; the chat template adds its default system prompt),
then the assistant target and `<|im_end|>`. Labels are -100 everywhere except the target tokens
and the closing `<|im_end|>`, so the model learns to answer and to stop, never to predict the
prompt. Batches are right-padded (training; generation pads left, as the saved tokenizer does).

Examples can be loaded question records (`question`, `choices`, `answer`, `audio_path`: the
target is `sft_target(answer, tagged)` after the prompt's user text) or rows of the mini base
corpus (`prompt`: the user text, `response`: the target, `audio_path`). An `audio` key holding a
16 kHz float32 array skips reading the wav.

`cache_bytes` > 0 keeps each example's encoding (the processor's mel features and token ids:
about a sixth of a mini SFT step's time with the tower cache, `scripts/bench_train.py
--collate-cache both`) and replays it when a later epoch brings the same example back: the
same tensors, computed once. Examples are keyed by their
fields; encodings beyond the byte budget are computed every time, as without it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, load_audio
from ..prompts import Prompt, as_prompt, build_messages, sft_target

IGNORE_INDEX = -100
IM_END = "<|im_end|>"


def user_messages(audio_path: str, text: str) -> list[dict]:
    """One user turn with the audio first, then `text` (the shape `build_messages` gives)."""
    return [{"role": "user", "content": [{"type": "audio", "audio_url": str(audio_path)},
                                         {"type": "text", "text": text}]}]


class SFTCollator:
    """Turn a list of examples into a padded batch for `Qwen2AudioForConditionalGeneration`.

    Returns `input_ids`, `attention_mask`, `input_features`, `feature_attention_mask`, `labels`.
    `max_length` cuts the end of a too-long sequence (never inside the audio tokens); `silence`
    feeds zeros of each clip's length (the same audio tokens, nothing to hear).
    """

    def __init__(self, processor, prompt: int | Prompt = Prompt.SFT, tagged: bool = False,
                 max_length: int | None = None, silence: bool = False, cache_bytes: int = 0):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.prompt = as_prompt(prompt)
        self.tagged = tagged
        self.max_length = max_length
        self.silence = silence  # every clip replaced by zeros of its length (training without listening)
        self.pad_id = self.tokenizer.pad_token_id
        self.audio_token_id = self.tokenizer.convert_tokens_to_ids(processor.audio_token)
        self.sampling_rate = processor.feature_extractor.sampling_rate
        self.cache_bytes = cache_bytes  # encodings kept for later epochs (0: none)
        self._cache: dict[str, dict] = {}
        self._cached_bytes = 0
        self.encoded = 0  # examples run through the processor (the cache's misses; for tests and benchmarks)

    def messages_and_target(self, example: Mapping[str, Any]) -> tuple[list[dict], str]:
        """The chat messages (user turn) and the assistant target for one example."""
        if "response" in example and "prompt" in example:
            return user_messages(example["audio_path"], example["prompt"]), str(example["response"])
        missing = [k for k in ("question", "choices", "answer", "audio_path") if k not in example]
        if missing:
            raise KeyError(
                f"example {example.get('id', '?')}: missing {missing}; expected a question record "
                "(question, choices, answer, audio_path) or a base-corpus row (prompt, response, audio_path)")
        return build_messages(example, self.prompt), sft_target(example["answer"], self.tagged)

    def _audio(self, example: Mapping[str, Any]) -> np.ndarray:
        if example.get("audio") is not None:
            wav = np.asarray(example["audio"], dtype=np.float32)
        else:
            wav = load_audio(example["audio_path"], sr=SAMPLE_RATE)
        return np.zeros_like(wav) if self.silence else wav

    def encode(self, example: Mapping[str, Any]) -> dict:
        """One example -> unpadded tensors plus labels (exposed for tests and inspection); from the
        cache when it holds the example. The tensors are read, never written, by `pad`."""
        key = None
        if self.cache_bytes > 0 and example.get("audio") is None:
            key = json.dumps(dict(example), sort_keys=True, default=str)
            hit = self._cache.get(key)
            if hit is not None:
                return hit
        item = self._encode(example)
        if key is not None:
            size = sum(t.nbytes for t in item.values())
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[key] = item
                self._cached_bytes += size
        return item

    def _encode(self, example: Mapping[str, Any]) -> dict:
        import torch

        self.encoded += 1

        messages, target = self.messages_and_target(example)
        prompt_text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = self.processor(text=[prompt_text + target + IM_END], audio=[self._audio(example)],
                             sampling_rate=self.sampling_rate, return_tensors="pt")
        ids = enc["input_ids"][0]
        target_ids = self.tokenizer(target + IM_END, add_special_tokens=False)["input_ids"]
        n = len(target_ids)
        if ids[-n:].tolist() != target_ids:
            raise ValueError(
                f"example {example.get('id', '?')}: the target {target!r} tokenizes differently inside the "
                "chat text than alone; the label mask would be wrong")
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[-n:] = ids[-n:]
        if self.max_length is not None and len(ids) > self.max_length:
            audio_end = int((ids == self.audio_token_id).nonzero().max()) + 1
            if audio_end > self.max_length:
                raise ValueError(f"example {example.get('id', '?')}: max_length {self.max_length} would cut the "
                                 f"{audio_end} prompt tokens that hold the audio")
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        return {"input_ids": ids, "labels": labels, "input_features": enc["input_features"][0],
                "feature_attention_mask": enc["feature_attention_mask"][0]}

    def __call__(self, examples: list[Mapping[str, Any]]) -> dict:
        if not examples:
            raise ValueError("SFTCollator got an empty batch")
        return self.pad([self.encode(ex) for ex in examples])

    def pad(self, items: list[dict]) -> dict:
        """Right-pad `encode` outputs into a batch (labels padded with -100, attention mask 0)."""
        import torch

        width = max(len(it["input_ids"]) for it in items)
        input_ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, it in enumerate(items):
            n = len(it["input_ids"])
            input_ids[i, :n], labels[i, :n], attention_mask[i, :n] = it["input_ids"], it["labels"], 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "input_features": torch.stack([it["input_features"] for it in items]),
            "feature_attention_mask": torch.stack([it["feature_attention_mask"] for it in items]),
            "labels": labels,
        }
