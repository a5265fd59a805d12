"""The mini Qwen2-Audio: builds offline, round-trips through save/load, holds the Whisper tiny.en
encoder exactly, tokenizes answers consistently, and the base build is cached."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from aqa_core.mini import model as mini_model
from aqa_core.mini.model import SPECIAL_TOKENS
from aqa_core.tower_cache import TowerCache


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return mini_model.build_untrained(tmp_path_factory.mktemp("tiny"), tiny=True)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return mini_model.load(tiny_dir)


def _inputs(processor, seconds=(3.0, 1.0)):
    rng = np.random.default_rng(0)
    msgs = [{"role": "user", "content": [{"type": "audio", "audio_url": "x.wav"},
                                         {"type": "text", "text": "What is it?"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    audio = [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in seconds]
    return processor(text=[text] * len(audio), audio=audio, sampling_rate=16000, return_tensors="pt", padding=True)


@pytest.mark.slow
def test_load_offline_in_fresh_process(tiny_dir):
    """Exactly how later stages load it: two from_pretrained calls, HF_HUB_OFFLINE=1, nothing else."""
    code = (
        "import sys; from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration as M;"
        "m = M.from_pretrained(sys.argv[1]); p = AutoProcessor.from_pretrained(sys.argv[1]);"
        "print(type(p).__name__, p.tokenizer.padding_side, m.config.audio_token_id)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tiny_dir)], capture_output=True, text=True,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, check=True)
    name, side, audio_id = out.stdout.split()
    assert name == "Qwen2AudioProcessor" and side == "left"
    assert int(audio_id) == SPECIAL_TOKENS.index("<|AUDIO|>")


def test_tokenizer_specials_and_template(tiny):
    _, processor = tiny
    tok = processor.tokenizer
    for t in SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(t) == SPECIAL_TOKENS.index(t)
        assert tok(t, add_special_tokens=False)["input_ids"] == [SPECIAL_TOKENS.index(t)]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    msgs = [{"role": "user", "content": [{"type": "audio", "audio_url": "a.wav"}, {"type": "text", "text": "Hi"}]}]
    assert processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nHi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("text", ["Hello, world! 123", "héllo 🎵 ünïcode", "<answer>7</answer>", "\n\t x  y"])
def test_tokenizer_is_lossless_byte_level(tiny, text):
    tok = tiny[1].tokenizer
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.parametrize("answer", ["seven", "7", "a dog barking", "12"])
def test_answer_tokens_same_in_choices_and_tags(tiny, answer):
    """The answer's tokens inside `<answer>...</answer>` are the ones it has in the choice list."""
    tok = tiny[1].tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    alone = enc(answer)
    tagged = enc(f"<answer>{answer}</answer>")
    listed = enc(f"options: ['{answer}', 'other']")
    sub = lambda xs: any(xs[i:i + len(alone)] == alone for i in range(len(xs)))  # noqa: E731
    assert sub(tagged) and sub(listed)


def test_tokenizer_is_deterministic():
    a = mini_model.build_tokenizer()
    mini_model._train_bpe.cache_clear()
    b = mini_model.build_tokenizer()
    assert a.get_vocab() == b.get_vocab()


def test_forward_and_generate_with_audio(tiny):
    model, processor = tiny
    inputs = _inputs(processor)
    assert inputs["input_features"].shape[-1] == 2 * model.config.audio_config.max_source_positions
    with torch.no_grad():
        logits = model(**inputs).logits
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert torch.isfinite(logits).all()
    assert out.shape[0] == 2 and out.shape[1] > inputs["input_ids"].shape[1]
    # audio reaches the model: other audio, other logits
    inputs2 = _inputs(processor, seconds=(3.0, 1.0))
    inputs2["input_features"] = inputs2["input_features"].flip(-1)
    with torch.no_grad():
        assert not torch.allclose(model(**inputs2).logits, logits)


def test_save_load_round_trip_same_outputs(tiny, tiny_dir, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model2, processor2 = mini_model.load(tmp_path)
    inputs = _inputs(processor2)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model2(**inputs).logits)


@pytest.mark.slow
def test_pretrained_encoder_equals_ctranslate2_tensors(tmp_path):
    path = mini_model.build_untrained(tmp_path, seed=0, pretrained_encoder=True)
    model, processor = mini_model.load(path)
    ct = mini_model.read_ctranslate2(mini_model.whisper_tiny_path(), prefix="encoder/")
    tower = model.model.audio_tower
    t = lambda k: torch.from_numpy(ct[k].astype(np.float32))  # noqa: E731
    assert torch.equal(tower.conv1.weight, t("encoder/conv1/weight"))
    q, k, v = t("encoder/layer_2/self_attention/linear_0/weight").chunk(3)
    layer = tower.layers[2].self_attn
    assert torch.equal(layer.q_proj.weight, q) and torch.equal(layer.k_proj.weight, k)
    assert torch.equal(layer.v_proj.weight, v)
    assert torch.equal(tower.layers[3].fc2.bias, t("encoder/layer_3/ffn/linear_1/bias"))
    assert torch.equal(tower.layer_norm.weight, t("encoder/layer_norm/gamma"))
    assert torch.equal(tower.embed_positions.weight, t("encoder/position_encodings/encodings")[:150])
    assert model.config.audio_config.num_mel_bins == 80 == processor.feature_extractor.feature_size
    assert mini_model.count_parameters(model)["audio_tower"] > 7_000_000


def test_spec_window_matches_feature_extractor(tiny):
    model, processor = tiny
    fe = processor.feature_extractor
    assert fe.nb_max_frames == 2 * model.config.audio_config.max_source_positions


# ----------------------------------------------------------------------------- base build


@pytest.fixture(scope="module")
def base_data(tmp_path_factory):
    """A 6-row base corpus in the mini benchmark's layout (base.jsonl + base-audios/)."""
    import soundfile as sf

    d = tmp_path_factory.mktemp("data")
    (d / "base-audios").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        sf.write(d / "base-audios" / f"b{i}.wav", (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32), 16000)
        rows.append({"id": f"b{i}", "audio_path": f"b{i}.wav", "kind": "mc_tagged",
                     "prompt": "How many beeps? Output the final answer in <answer> </answer>.",
                     "response": f"<answer>{['one', 'two', '3'][i % 3]}</answer>"})
    (d / "base.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _tiny_base(data, out, **kw):
    hp = mini_model.BaseTraining(steps=2, batch_size=3, warmup_steps=1)
    return mini_model.build_base(data, out, hp=hp, spec=mini_model.TINY_SPEC, pretrained_encoder=False,
                                 progress=False, **kw)


def test_build_base_writes_checkpoint_log_and_info(base_data, tmp_path):
    out = _tiny_base(base_data, tmp_path / "base")
    log = [json.loads(x) for x in (out / "base_train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)
    info = json.loads((out / "build_info.json").read_text())
    assert info["base_rows"] == 6 and len(info["fingerprint"]) == 64
    model, processor = mini_model.load(out)
    # training moved the text model but not the frozen audio tower
    fresh, _ = mini_model.make_model(mini_model.TINY_SPEC, seed=0, pretrained_encoder=False)
    assert torch.equal(model.model.audio_tower.conv1.weight, fresh.model.audio_tower.conv1.weight)
    assert not torch.equal(model.lm_head.weight, fresh.lm_head.weight)


def test_build_base_cache_skips_and_invalidates(base_data, tmp_path, capsys):
    out = _tiny_base(base_data, tmp_path / "base")
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    _tiny_base(base_data, out)
    assert "up to date" in capsys.readouterr().out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    _tiny_base(base_data, out, seed=1)  # another seed: another fingerprint, rebuilt
    assert (out / "model.safetensors").stat().st_mtime_ns != stamp
    assert json.loads((out / "build_info.json").read_text())["seed"] == 1


def test_fingerprint_follows_the_audio(base_data, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(base_data, copy)
    rows = mini_model.load_base_rows(copy)
    hp, spec = mini_model.BaseTraining(), mini_model.MiniSpec()
    before = mini_model.fingerprint(rows, copy, 0, hp, spec)
    wav = copy / "base-audios" / "b0.wav"
    wav.write_bytes(wav.read_bytes()[:-2] + b"\x01\x00")
    assert mini_model.fingerprint(rows, copy, 0, hp, spec) != before


def test_load_base_rows_names_missing_audio(base_data, tmp_path):
    (tmp_path / "base.jsonl").write_text(json.dumps({"id": "x", "audio_path": "nope.wav", "prompt": "p",
                                                     "response": "r"}) + "\n")
    with pytest.raises(FileNotFoundError, match=r"base.jsonl:1 \(id x\).*nope.wav"):
        mini_model.load_base_rows(tmp_path)
    (tmp_path / "base.jsonl").write_text('\n{"id": "x", "audio_path"\n')
    with pytest.raises(ValueError, match=r"base.jsonl:2: invalid JSON"):
        mini_model.load_base_rows(tmp_path)


def test_tower_cache_gives_stock_logits(tiny, base_data):
    from aqa_core.train.collate import SFTCollator

    model, processor = tiny
    rows = mini_model.load_base_rows(base_data)
    collate = SFTCollator(processor)
    cache = TowerCache()
    batch = collate(rows[:4])
    keys = [r["audio_path"] for r in rows[:4]]
    with torch.no_grad():
        stock = model(**batch).logits
        assert torch.allclose(cache.forward(model, batch, keys).logits, stock, atol=1e-6)
        batch2 = collate([rows[2], rows[0]])  # replayed from the cache, other batch layout
        assert torch.allclose(cache.forward(model, batch2, [keys[2], keys[0]]).logits, model(**batch2).logits,
                              atol=1e-6)
    assert len(cache.outputs) == 4 and (cache.misses, cache.hits) == (4, 2)
    assert "forward" not in vars(model.model.audio_tower)  # the swap is undone


def test_cli_tiny_base(base_data, tmp_path):
    rc = mini_model.cli(["--data", str(base_data), "--out", str(tmp_path / "m"), "--steps", "1",
                         "--batch-size", "2", "--tiny", "--quiet"])
    assert rc == 0 and (tmp_path / "m" / "build_info.json").is_file()
    with pytest.raises(SystemExit):
        mini_model.cli(["--out", str(tmp_path / "m2")])  # --data missing


def _whisper_tiny_en():
    """The full Whisper tiny.en (HF classes) from the same CTranslate2 file: our encoder conversion
    plus a decoder conversion written here, to prove the encoder tensors are the working model's."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(vocab_size=51864, num_mel_bins=80, encoder_layers=4, decoder_layers=4, d_model=384,
                        encoder_attention_heads=6, decoder_attention_heads=6, encoder_ffn_dim=1536,
                        decoder_ffn_dim=1536, max_source_positions=1500, max_target_positions=448,
                        decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256)
    model = WhisperForConditionalGeneration(cfg).eval()
    missing, unexpected = model.model.encoder.load_state_dict(mini_model.whisper_encoder_state_dict(1500), strict=False)
    assert not missing and not unexpected
    ct = mini_model.read_ctranslate2(mini_model.whisper_tiny_path(), prefix="decoder/")
    t = lambda k: torch.from_numpy(ct[k].astype(np.float32))  # noqa: E731
    sd = {"embed_tokens.weight": t("decoder/embeddings/weight"),
          "embed_positions.weight": t("decoder/position_encodings/encodings"),
          "layer_norm.weight": t("decoder/layer_norm/gamma"), "layer_norm.bias": t("decoder/layer_norm/beta")}
    for i in range(4):
        c, h = f"decoder/layer_{i}/", f"layers.{i}."
        q, k, v = t(c + "self_attention/linear_0/weight").chunk(3)
        qb, _, vb = t(c + "self_attention/linear_0/bias").chunk(3)
        k2, v2 = t(c + "attention/linear_1/weight").chunk(2)
        vb2 = t(c + "attention/linear_1/bias").chunk(2)[1]
        pairs = {"self_attn.q_proj": (q, qb), "self_attn.v_proj": (v, vb), "encoder_attn.v_proj": (v2, vb2),
                 "self_attn.out_proj": (t(c + "self_attention/linear_1/weight"), t(c + "self_attention/linear_1/bias")),
                 "encoder_attn.q_proj": (t(c + "attention/linear_0/weight"), t(c + "attention/linear_0/bias")),
                 "encoder_attn.out_proj": (t(c + "attention/linear_2/weight"), t(c + "attention/linear_2/bias")),
                 "fc1": (t(c + "ffn/linear_0/weight"), t(c + "ffn/linear_0/bias")),
                 "fc2": (t(c + "ffn/linear_1/weight"), t(c + "ffn/linear_1/bias"))}
        norms = {"self_attn_layer_norm": "self_attention/layer_norm", "encoder_attn_layer_norm": "attention/layer_norm",
                 "final_layer_norm": "ffn/layer_norm"}
        for name, (w, b) in pairs.items():
            sd[h + name + ".weight"], sd[h + name + ".bias"] = w, b
        for name, src in norms.items():
            sd[h + name + ".weight"], sd[h + name + ".bias"] = t(c + src + "/gamma"), t(c + src + "/beta")
        sd[h + "self_attn.k_proj.weight"], sd[h + "encoder_attn.k_proj.weight"] = k, k2
    missing, unexpected = model.model.decoder.load_state_dict(sd, strict=False)
    assert not missing and not unexpected
    model.proj_out.weight = model.model.decoder.embed_tokens.weight
    return model


@pytest.mark.slow
def test_converted_whisper_transcribes_speech():
    """Whisper tiny.en rebuilt from the converted tensors transcribes espeak speech: the encoder
    conversion (q/k/v split, layer norms, positions) is the working model, not just same-shaped."""
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor

    from aqa_core.mini import synth

    wav = synth.speak([("See you tomorrow morning.", "en+m3", 150, 50)])[0]
    feats = WhisperFeatureExtractor(feature_size=80)(wav, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        out = _whisper_tiny_en().generate(feats, decoder_input_ids=torch.tensor([[50257, 50362]]), max_new_tokens=12)
    tok = Tokenizer.from_file(str(mini_model.whisper_tiny_path().with_name("tokenizer.json")))
    text = tok.decode(out[0].tolist(), skip_special_tokens=True).lower()
    assert "tomorrow" in text and "morning" in text, text


@pytest.mark.slow
def test_mini_base_end_to_end_on_generated_data(tmp_path):
    """mini-data at tiny sizes -> mini-base (Whisper encoder, 3 steps) -> load -> greedy answer."""
    from aqa_core.audio import load_audio
    from aqa_core.data import load_mmau
    from aqa_core.mini import data as mini_data
    from aqa_core.prompts import build_messages

    mini_data.generate(tmp_path / "data", sizes=mini_data.MiniSizes(train=4, validation=2, test=4, base=12),
                       progress=False)
    out = mini_model.build_base(tmp_path / "data", tmp_path / "base", steps=3,
                                hp=mini_model.BaseTraining(batch_size=4), progress=False)
    info = json.loads((out / "build_info.json").read_text())
    assert info["base_rows"] == 12 and info["hyperparameters"]["steps"] == 3
    assert info["audio_tower"].startswith("Whisper tiny.en") and info["audio_tower"].endswith("frozen")
    model, processor = mini_model.load(out)
    ct = mini_model.read_ctranslate2(mini_model.whisper_tiny_path(), prefix="encoder/conv2/weight")
    assert torch.equal(model.model.audio_tower.conv2.weight,
                       torch.from_numpy(ct["encoder/conv2/weight"].astype(np.float32)))
    rec = load_mmau(tmp_path / "data" / "test-mini.json")[0]
    text = processor.apply_chat_template(build_messages(rec, 2), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], audio=[load_audio(rec["audio_path"])], sampling_rate=16000, return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.audio_token_id).sum()) == 75  # 3 s clip
    with torch.no_grad():
        out_ids = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out_ids.shape[1] > inputs["input_ids"].shape[1]
