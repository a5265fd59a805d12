"""`AudioGRPOTrainer`: TRL 1.16's `GRPOTrainer` with the audio in every pass.

TRL 1.16's `GRPOTrainer` has no audio path: the Qwen2-Audio features reach generation at best,
never the old-policy, reference and loss log-prob passes, which then score the completions of
a model that hears nothing. `AudioGRPOTrainer` runs the processor on each prompt's wav and
carries `input_features`/`feature_attention_mask` through generation, the old/reference
passes and the loss, row-aligned through TRL's shuffling and gradient-accumulation split.
It overrides private TRL methods, hence the exact trl pin in pyproject.toml. A batch holds
each clip num_generations times; the encoder runs once per distinct clip (`share_audio_encoding`),
and a frozen encoder once per clip of the run (`aqa_core.tower_cache.cache_frozen_tower`).
The recipe, the objective's mapping onto TRL and the run itself are in `aqa_core.train.grpo`.
"""
from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, load_audio
from ..audio_tower import audio_tower, wrap_forward, wrappers
from ..tower_cache import cache_frozen_tower
from .common import PretrainedResumeMixin

SHARED_ENCODING = "share_audio_encoding"  # the wrapper's name on the tower's forward


def strip_none(messages: list[dict]) -> list[dict]:
    """Undo HF datasets' schema unification (`{"type": "text", "audio_url": None, ...}`): the
    Qwen2-Audio chat template tests `'audio' in content`, so a None key would add an audio turn.

    >>> strip_none([{"role": "user", "content": [{"type": "text", "text": "hi", "audio_url": None}]}])
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}]}]
    """
    out = []
    for msg in messages:
        msg = {k: v for k, v in msg.items() if v is not None}
        if isinstance(msg.get("content"), list):
            msg["content"] = [{k: v for k, v in part.items() if v is not None} for part in msg["content"]]
        out.append(msg)
    return out


def audio_paths(messages: list[dict]) -> list[str]:
    """The `audio_url` of every audio part of a prompt, in order."""
    return [part["audio_url"] for msg in messages if isinstance(msg.get("content"), list)
            for part in msg["content"] if part.get("type") == "audio"]


def share_audio_encoding(model) -> None:
    """Make the audio encoder encode each distinct clip once per call and copy the result to its
    repeats. A GRPO batch holds every clip `num_generations` times, so generation and each
    log-prob pass would otherwise run the encoder G times on identical inputs (at full scale
    that is 7/8 of the encoder's compute and ~15 GB of activations per GPU). Gradients flow
    through the copies, so training is unchanged. Idempotent."""
    import torch

    tower = audio_tower(model)
    if SHARED_ENCODING in wrappers(tower):
        return

    def encode_once(inner, input_features, attention_mask=None, **kwargs):
        n = input_features.size(0)
        if n > 1:
            _, inverse = torch.unique(input_features.reshape(n, -1), dim=0, return_inverse=True)
            n_unique = int(inverse.max()) + 1
            if n_unique < n:
                rows = torch.arange(n, device=inverse.device)
                first = torch.full((n_unique,), n, dtype=torch.long, device=inverse.device)
                first = first.scatter_reduce(0, inverse, rows, reduce="amin")
                mask = attention_mask[first] if attention_mask is not None else None
                out = inner(input_features[first], attention_mask=mask, **kwargs)
                out.last_hidden_state = out.last_hidden_state[inverse]
                return out
        return inner(input_features, attention_mask=attention_mask, **kwargs)

    wrap_forward(tower, encode_once, SHARED_ENCODING)


@functools.lru_cache(maxsize=1)
def _trainer_class():
    """Defined lazily so that importing this module (recipes, CLI help) does not import TRL."""
    import torch
    from trl import GRPOTrainer

    _share_audio_encoding = share_audio_encoding  # the trainer's keyword shadows the function

    class AudioGRPOTrainer(PretrainedResumeMixin, GRPOTrainer):
        """`GRPOTrainer` whose generation, old-policy, reference and loss passes all see the audio.

        `_tokenize_prompts` runs the Qwen2-Audio processor (one wav per prompt) and keeps the
        features in `self._audio`; the old/reference passes inside `_generate_and_score_completions`
        read them there, the features then travel in the batch dict (TRL shuffles and splits it
        row-wise for gradient accumulation) and `_compute_loss` puts each micro-batch's back.
        A log-prob pass without audio is an error, never a silent text-only pass.
        """

        def __init__(self, *args, share_audio_encoding: bool = True, cache_audio_tower: bool = True,
                     tower_store: str | None = None, silent_audio: bool = False, **kwargs):
            model = kwargs.get("model") if "model" in kwargs else args[0]
            config = model.config
            # TRL suppresses `config.image_token_id` in sampling (a sampled placeholder would not
            # match the features); for audio that is the <|AUDIO|> token. Set only for the init.
            added = not hasattr(config, "image_token_id") or config.image_token_id is None
            if added:
                config.image_token_id = config.audio_token_id
            try:
                super().__init__(*args, **kwargs)
            finally:
                if added:
                    config.image_token_id = None
                    with contextlib.suppress(AttributeError):
                        delattr(config, "image_token_id")
            if self.ref_model is not None:  # never trained (TRL runs it under no_grad): say so, so that its
                self.ref_model.requires_grad_(False)  # frozen tower is cached below like the policy's
            for m in (self.model, self.ref_model):
                if m is not None and share_audio_encoding:
                    _share_audio_encoding(m)
                if m is not None and cache_audio_tower:  # inert unless the tower is frozen and dropout-free
                    cache_frozen_tower(m, store=tower_store)
            self._audio: dict | None = None
            self.silent_audio = silent_audio  # train_audio: silence (zeros of each clip's length)
            self.seen_prompt_ids: list[tuple[int, list[str]]] = []  # (global_step, ids) per generation batch

        # -- generation: processor with audio -------------------------------------------------
        def _tokenize_prompts(self, prompts: list):
            proc = self.processing_class
            paths = [audio_paths(p) for p in prompts]
            bad = [i for i, p in enumerate(paths) if len(p) != 1]
            if bad:
                raise ValueError(f"AudioGRPOTrainer needs exactly one audio part per prompt; prompt {bad[0]} has "
                                 f"{len(paths[bad[0]])}")
            cache: dict[str, Any] = {}  # each prompt comes num_generations times: read its wav once
            for p in paths:
                if p[0] not in cache:
                    cache[p[0]] = load_audio(p[0], sr=SAMPLE_RATE)
                    if self.silent_audio:  # the same length, so the same number of audio tokens
                        cache[p[0]] = np.zeros_like(cache[p[0]])
            audios = [cache[p[0]] for p in paths]
            texts = proc.apply_chat_template(prompts, add_generation_prompt=True, tokenize=False,
                                             **self.chat_template_kwargs)
            enc = proc(text=texts, audio=audios, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True)
            prompt_ids = [ids[m.bool()].tolist()
                          for ids, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
            device = self.accelerator.device
            self._audio = {"input_features": enc["input_features"].to(device),
                           "feature_attention_mask": enc["feature_attention_mask"].to(device)}
            # `_generate_single_turn` passes tensor fields to `generate`
            return prompt_ids, None, dict(self._audio)

        def _generate_single_turn(self, *args, **kwargs):
            start = time.perf_counter()
            out = super()._generate_single_turn(*args, **kwargs)
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["timing/generation_s"].append(time.perf_counter() - start)
            return out

        def _generate_and_score_completions(self, inputs):
            inputs = [{**x, "prompt": strip_none(x["prompt"])} for x in inputs]
            self.seen_prompt_ids.append((self.state.global_step, [str(x.get("id", "?")) for x in inputs]))
            self._audio = None
            try:
                output = super()._generate_and_score_completions(inputs)
                audio = self._audio
            finally:
                self._audio = None
            if audio is None or audio["input_features"].size(0) != output["prompt_ids"].size(0):
                raise RuntimeError("audio features were not produced for this generation batch")
            output.update(audio)
            return output

        # -- the loss pass: this micro-batch's features ---------------------------------------
        def _compute_loss(self, model, inputs):
            self._audio = {k: inputs[k] for k in ("input_features", "feature_attention_mask")}
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._audio = None

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **multimodal):
            """TRL's chunked log-prob pass, with the audio features sliced like the rows."""
            extra = sorted(k for k, v in multimodal.items() if v is not None and k not in ("num_images", "num_tiles"))
            if extra:
                raise ValueError(f"AudioGRPOTrainer got image inputs {extra}; it handles audio prompts only")
            if self._audio is None:
                raise RuntimeError("log-prob pass without audio features: the model would not hear the audio")
            feats, fmask = self._audio["input_features"], self._audio["feature_attention_mask"]
            if feats.size(0) != input_ids.size(0):
                raise RuntimeError(f"{feats.size(0)} audio feature rows for {input_ids.size(0)} sequences")
            batch_size = batch_size or input_ids.size(0)
            logps, entropies, aux = [], [], []
            for start in range(0, input_ids.size(0), batch_size):
                end = min(start + batch_size, input_ids.size(0))
                ids, mask = input_ids[start:end], attention_mask[start:end]
                labels = ids.masked_fill(mask == 0, -100)
                labels[:, :-logits_to_keep] = -100  # only the completion tokens are scored
                model_inputs = {"input_ids": ids, "attention_mask": mask, "input_features": feats[start:end],
                                "feature_attention_mask": fmask[start:end]}
                if compute_aux_loss:
                    model_inputs["output_router_logits"] = True
                with self.accelerator.autocast():
                    out = model(**model_inputs, labels=labels, fused_lm_head=True)
                logps.append(out.log_probs[:, -logits_to_keep:])
                if compute_entropy:
                    entropies.append(out.entropy[:, -logits_to_keep:])
                if compute_aux_loss:
                    aux.append(out.aux_loss)
            return (torch.cat(logps, dim=0), torch.cat(entropies, dim=0) if compute_entropy else None,
                    torch.stack(aux).mean() if compute_aux_loss else None)

    return AudioGRPOTrainer


def __getattr__(name: str):  # `from aqa_core.train.grpo_trainer import AudioGRPOTrainer` imports TRL only then
    if name == "AudioGRPOTrainer":
        return _trainer_class()
    raise AttributeError(name)
