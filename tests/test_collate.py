"""SFTCollator: labels cover exactly the assistant target + <|im_end|>, audio tokens are expanded
to the encoder's output length, and batches are right-padded with masked labels."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from aqa_core.mini import model as mini_model
from aqa_core.prompts import Prompt, user_text
from aqa_core.train.collate import IGNORE_INDEX, SFTCollator


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = mini_model.build_untrained(tmp_path_factory.mktemp("tiny"), tiny=True)
    return mini_model.load(path)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("wav")
    t = np.arange(16000 * 3) / 16000
    long = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(d / "3s.wav", long, 16000)
    sf.write(d / "1s.wav", long[:16000], 16000)
    return d


def _question(wavs, answer="seven"):
    return {"id": "q1", "question": "Which digit is spoken?", "choices": ["seven", "7", "two"],
            "answer": answer, "audio_path": str(wavs / "3s.wav")}


def _target_text(processor, batch, i):
    lab = batch["labels"][i]
    return processor.tokenizer.decode(lab[lab != IGNORE_INDEX])


def test_labels_cover_exactly_the_target(tiny, wavs):
    _, processor = tiny
    batch = SFTCollator(processor)([_question(wavs)])
    assert _target_text(processor, batch, 0) == "seven<|im_end|>"
    n_labelled = int((batch["labels"][0] != IGNORE_INDEX).sum())
    assert n_labelled == len(processor.tokenizer("seven<|im_end|>", add_special_tokens=False)["input_ids"])
    # the labelled tokens are the last ones of the sequence
    assert (batch["labels"][0, -n_labelled:] == batch["input_ids"][0, -n_labelled:]).all()


def test_tagged_target_and_prompt_text(tiny, wavs):
    _, processor = tiny
    rec = _question(wavs, answer="7")
    batch = SFTCollator(processor, prompt=Prompt.ANSWER_ONLY, tagged=True)([rec])
    assert _target_text(processor, batch, 0) == "<answer>7</answer><|im_end|>"
    text = processor.tokenizer.decode(batch["input_ids"][0])
    assert user_text(rec["question"], rec["choices"], Prompt.ANSWER_ONLY) in text
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nAudio 1:")


def test_base_corpus_row(tiny, wavs):
    _, processor = tiny
    row = {"id": "b1", "prompt": "Describe the sound.", "response": "A steady tone.",
           "audio_path": str(wavs / "1s.wav")}
    batch = SFTCollator(processor)([row])
    assert _target_text(processor, batch, 0) == "A steady tone.<|im_end|>"


def test_audio_tokens_match_clip_length(tiny, wavs):
    model, processor = tiny
    recs = [_question(wavs), dict(_question(wavs), audio_path=str(wavs / "1s.wav"))]
    batch = SFTCollator(processor)(recs)
    n_audio = (batch["input_ids"] == model.config.audio_token_id).sum(1).tolist()
    assert n_audio == [75, 25]  # 3 s -> 300 mel frames -> 75 tokens; 1 s -> 25
    assert batch["input_features"].shape == (2, 80, 2 * model.config.audio_config.max_source_positions)
    assert batch["feature_attention_mask"].sum(1).tolist() == [300, 100]


def test_batch_padding_is_right_and_masked(tiny, wavs):
    model, processor = tiny
    short = {"id": "b", "prompt": "Hi.", "response": "ok", "audio_path": str(wavs / "1s.wav")}
    batch = SFTCollator(processor)([_question(wavs), short])
    lengths = batch["attention_mask"].sum(1)
    assert lengths[1] < lengths[0]
    pad = batch["attention_mask"][1] == 0
    assert (batch["input_ids"][1][pad] == processor.tokenizer.pad_token_id).all()
    assert (batch["labels"][1][pad] == IGNORE_INDEX).all()
    assert not pad[: int(lengths[1])].any()  # padding only at the end
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_preloaded_audio_equals_file(tiny, wavs):
    _, processor = tiny
    from aqa_core.audio import load_audio

    rec = _question(wavs)
    a = SFTCollator(processor)([rec])
    b = SFTCollator(processor)([dict(rec, audio=load_audio(rec["audio_path"]))])
    assert torch.equal(a["input_features"], b["input_features"])


def test_silence_feeds_zeros_of_the_clip_length(tiny, wavs):
    """train_audio: silence — the same audio tokens, the features of zeros (nothing to hear)."""
    from aqa_core.audio import load_audio

    _, processor = tiny
    rec = _question(wavs)
    real = SFTCollator(processor)([rec])
    silent = SFTCollator(processor, silence=True)([rec])
    zeros = SFTCollator(processor)([dict(rec, audio=np.zeros_like(load_audio(rec["audio_path"])))])
    assert torch.equal(silent["input_ids"], real["input_ids"])  # the same prompt and audio-token count
    assert torch.equal(silent["input_features"], zeros["input_features"])
    assert not torch.equal(silent["input_features"], real["input_features"])


def test_the_encoding_cache_replays_the_same_tensors_within_its_budget(tiny, wavs):
    """cache_bytes: a later epoch's batch is the same tensors without running the processor again;
    encodings past the budget are computed every time."""
    _, processor = tiny
    recs = [_question(wavs), dict(_question(wavs), question="Which instrument is playing here?")]
    plain = SFTCollator(processor)(recs)
    cached = SFTCollator(processor, cache_bytes=1 << 30)
    for _epoch in range(3):
        batch = cached(recs)
        assert batch.keys() == plain.keys() and all(torch.equal(batch[k], plain[k]) for k in plain)
    assert cached.encoded == 2  # the first epoch only
    one = sum(t.nbytes for t in SFTCollator(processor).encode(recs[0]).values())
    tight = SFTCollator(processor, cache_bytes=one)
    tight(recs), tight(recs)
    assert tight.encoded == 3  # the first example is kept, the second does not fit and is encoded twice
    off = SFTCollator(processor)
    off(recs), off(recs)
    assert off.encoded == 4


def test_max_length_truncates_tail_not_audio(tiny, wavs):
    _, processor = tiny
    rec = _question(wavs)
    full = SFTCollator(processor)([rec])["input_ids"].shape[1]
    cut = SFTCollator(processor, max_length=full - 2)([rec])
    assert cut["input_ids"].shape[1] == full - 2
    with pytest.raises(ValueError, match="audio"):
        SFTCollator(processor, max_length=20)([rec])


def test_bad_example_names_the_fields(tiny):
    _, processor = tiny
    with pytest.raises(KeyError, match="question record"):
        SFTCollator(processor)([{"id": "x", "audio_path": "a.wav"}])
