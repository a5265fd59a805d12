"""The mini benchmark: signal checks, answers recoverable from the audio, determinism, schemas,
the train/test shift, the base corpus and the cache."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aqa_core.answers import extract_answer
from aqa_core.data import load_avqa_jsonl, load_mmau
from aqa_core.mini import synth as S
from aqa_core.mini.data import MiniSizes, cli, generate
from aqa_core.mini.tasks import NUMS, SUBCATS, TRAIN_SUBCATS, sample_clip, shift_table

TINY = MiniSizes(train=24, validation=8, test=40, base=40)
MMAU_KEYS = ["id", "audio_id", "question", "choices", "answer", "dataset", "task", "split", "category",
             "sub-category", "difficulty"]
AVQA_KEYS = ["id", "video_name_derived", "question_text", "multi_choice", "answer", "dataset_name", "audio_path",
             "task", "sub-category"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mini")
    return out, generate(out, seed=0, sizes=TINY, progress=False)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- signal checks on primitives


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_count_onsets_counts_beeps(n):
    x = S.beeps([0.2 + 0.5 * i for i in range(n)], dur=0.12, freq=900.0)
    assert S.count_onsets(S.mix_noise(x, 25, np.random.default_rng(n))) == n


def test_rms_halves_and_sweep_direction():
    x = S.silence()
    S.place(x, S.tone(600, 0.8), 0.2)
    S.place(x, 0.3 * S.tone(600, 0.8), 1.7)
    first, second = S.rms_halves(x)
    assert first > 3 * second
    assert S.sweep_direction(S.sweep(300, 2000, 1.5)) == "rising"
    assert S.sweep_direction(S.sweep(2000, 300, 1.5)) == "falling"


def test_espeak_voices_differ_in_pitch_and_are_deterministic():
    specs = [("The number is seven.", "en+m3", 160, 50), ("The number is seven.", "en+f3", 160, 50)]
    male, female = S.speak(specs)
    again = S.speak(specs)  # a fresh process each time: espeak-ng state cannot leak between calls
    assert np.array_equal(male, again[0]) and np.array_equal(female, again[1])
    assert 0.8 < len(male) / S.SR < 2.0
    assert S.median_f0(male) < 135 < S.median_f0(female)


# ---------------------------------------------------------------- answers are in the audio


def _check(key: str, x: np.ndarray) -> str:
    """The answer a simple signal check reads from a clip."""
    if key == "beep_count":
        return NUMS[S.count_onsets(x)]
    if key == "louder":
        first, second = S.rms_halves(x)
        return "the first tone" if first > second else "the second tone"
    if key == "sweep":
        return S.sweep_direction(x)
    if key == "melody":
        return {"rising": "up", "falling": "down"}[S.sweep_direction(x)]
    if key == "tempo":
        return "fast" if S.count_onsets(x) / S.CLIP_SECONDS * 60 > 112 else "slow"
    raise KeyError(key)


@pytest.mark.parametrize("key", ["beep_count", "louder", "sweep", "melody", "tempo"])
@pytest.mark.parametrize("regime", ["train", "test"])
def test_answer_recoverable_from_audio(key, regime):
    wrong = []
    for seed in range(16):
        x, params, answer = sample_clip(key, regime, seed)
        assert x.shape == (S.CLIP,) and x.dtype == np.float32 and np.abs(x).max() <= 0.95 + 1e-6
        if _check(key, x) != answer:
            wrong.append((seed, answer, params))
    assert not wrong, f"{key}/{regime}: signal check disagrees with the answer for {wrong}"


def test_speaker_gender_recoverable_from_pitch_in_files(tiny):
    out, _ = tiny
    rows = [r for r in _jsonl(out / "params.jsonl") if r["split"] == "base" and r["sub-category"] == "Speaker Gender"]
    assert rows
    for r in rows:
        x, sr = sf.read(out / "base-audios" / f"{r['id']}.wav", dtype="float32")
        f0 = S.median_f0(x)
        assert (f0 > 135) == (r["answer"] == "female"), (r, f0)


@pytest.mark.parametrize("source", S.SOURCES)
def test_every_sound_source_is_drawn_and_rendered(source):
    """Each source occurs in both regimes, and its clip holds a signal well above the noise."""
    found = {}
    for seed in range(60):
        for regime in ("train", "test"):
            x, params, answer = sample_clip("source", regime, seed)
            if answer == source and regime not in found:
                found[regime] = (x, params)
    assert set(found) == {"train", "test"}, f"{source} never drawn in some regime: {set(found)}"
    for x, p in found.values():
        db = S.frame_db(x)
        assert x.shape == (S.CLIP,) and np.percentile(db, 95) - np.percentile(db, 5) > 6, (source, p)


# ---------------------------------------------------------------- determinism and cache


def test_same_seed_gives_identical_files_other_seed_differs(tiny, tmp_path):
    out, man = tiny
    again = generate(tmp_path / "a", seed=0, sizes=TINY, progress=False)
    assert again["files"] == man["files"] and again["content_sha256"] == man["content_sha256"]
    # byte-identical folders: every file, the manifest included, and nothing else (no timing file)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert "manifest.json" in map(str, files) and len(files) == len(man["files"]) + 1
    assert files == sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (out / rel).read_bytes(), rel
    other = generate(tmp_path / "b", seed=1, sizes=TINY, progress=False)
    assert other["content_sha256"] != man["content_sha256"]


def test_cache_skips_then_regenerates_when_damaged(tmp_path, capsys):
    sizes = MiniSizes(8, 8, 8, 8)
    first = generate(tmp_path, seed=3, sizes=sizes, progress=False)
    wav = tmp_path / "train-audios" / _jsonl(tmp_path / "train.jsonl")[0]["audio_path"]
    mtime = wav.stat().st_mtime_ns
    capsys.readouterr()
    second = generate(tmp_path, seed=3, sizes=sizes, progress=False)
    assert second["cached"] and not first["cached"] and "skipped" in capsys.readouterr().out
    assert wav.stat().st_mtime_ns == mtime
    wav.write_bytes(b"damaged")
    third = generate(tmp_path, seed=3, sizes=sizes, progress=False)
    assert not third["cached"] and third["content_sha256"] == first["content_sha256"]
    assert not generate(tmp_path, seed=4, sizes=sizes, progress=False)["cached"]  # other seed: rebuilt


def test_cli_writes_tiny_benchmark_and_force_rebuilds(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--train", "8", "--validation", "8", "--test", "8", "--base", "8", "--quiet"]
    assert cli(args) == 0
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["sizes"] == {"train": 8, "validation": 8, "test": 8, "base": 8}
    assert len(list((tmp_path / "test-mini-audios").glob("*.wav"))) == 8
    assert cli(args) == 0 and "skipped" in capsys.readouterr().out
    assert cli(args + ["--force"]) == 0 and "skipped" not in capsys.readouterr().out


# ---------------------------------------------------------------- schemas


def test_test_mini_has_mmau_schema_and_loads(tiny):
    out, man = tiny
    items = json.loads((out / "test-mini.json").read_text())
    assert isinstance(items, list) and len(items) == TINY.test
    for it in items:
        assert list(it) == MMAU_KEYS
        assert it["answer"] in it["choices"] and 2 <= len(it["choices"]) <= 4
        assert it["audio_id"] == f"./test-mini-audios/{it['id']}.wav"
        assert it["task"] in {"sound", "music", "speech"} and it["difficulty"] in {"easy", "medium", "hard"}
        assert it["split"] == "test-mini" and it["dataset"] == "mini-mmau"
    loaded = load_mmau(out / "test-mini.json", check_audio=True)
    info = sf.info(loaded[0]["audio_path"])
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, S.CLIP, "PCM_16")
    assert man["chance_test_mini"] == pytest.approx(np.mean([1 / len(it["choices"]) for it in items]), abs=1e-4)
    assert {it["task"] for it in items} == {"sound", "music", "speech"}


def test_train_has_r1aqa_fields_and_video_wording(tiny):
    out, _ = tiny
    for split, n in (("train", TINY.train), ("validation", TINY.validation)):
        rows = _jsonl(out / f"{split}.jsonl")
        assert len(rows) == n
        for r in rows:
            assert list(r) == AVQA_KEYS and isinstance(r["id"], int)
            assert 0 <= r["answer"] < len(r["multi_choice"]) and 2 <= len(r["multi_choice"]) <= 4
        loaded = load_avqa_jsonl(out / f"{split}.jsonl", audio_dir=out / f"{split}-audios", on_missing="error")
        assert len(loaded) == n
    rows = _jsonl(out / "train.jsonl")
    video = [r for r in rows if "video" in r["question_text"]]
    assert video, "some train questions must speak of the video"
    loaded = {r["id"]: r for r in load_avqa_jsonl(out / "train.jsonl", audio_dir=out / "train-audios")}
    assert all("audio" in loaded[str(r["id"])]["question"] for r in video)
    ids = [r["id"] for r in rows] + [r["id"] for r in _jsonl(out / "validation.jsonl")]
    assert len(set(ids)) == len(ids)


# ---------------------------------------------------------------- the shift and the base corpus


def test_test_wordings_and_test_only_subcategories(tiny):
    out, _ = tiny
    test = json.loads((out / "test-mini.json").read_text())
    train = _jsonl(out / "train.jsonl") + _jsonl(out / "validation.jsonl")
    base = _jsonl(out / "base.jsonl")
    test_q = {it["question"] for it in test}
    assert not test_q & {r["question_text"] for r in train}
    assert not any(q in b["prompt"] for q in test_q for b in base)
    test_only = {s.name for s in SUBCATS.values() if not s.train_q}
    assert len(test_only) >= 2
    assert test_only <= {it["sub-category"] for it in test} and test_only <= {b["sub-category"] for b in base}
    assert not test_only & {r["sub-category"] for r in train}
    rows = shift_table()
    assert len(rows) == len(SUBCATS) + 1 and sum(r["in train"] for r in rows[1:]) == len(TRAIN_SUBCATS)
    assert {r["sub-category"] for r in rows if not r["in train"]} == test_only


def test_base_corpus_kinds_and_tags(tiny):
    out, _ = tiny
    base = _jsonl(out / "base.jsonl")
    kinds = {"caption", "open", "mc_tagged", "mc_think", "mc_plain"}
    assert len(base) == TINY.base and {b["kind"] for b in base} == kinds
    for b in base:
        assert (out / "base-audios" / b["audio_path"]).is_file()
        tagged, think = b["response"].startswith("<answer>"), b["response"].startswith("<think>")
        assert tagged == (b["kind"] == "mc_tagged")
        assert think == (b["kind"] == "mc_think") == ("<think> </think>" in b["prompt"])
        assert (tagged or think) == ("<answer> </answer>" in b["prompt"])
        if think:  # the reasoning is the clip's caption, then the answer: prompt <3>'s format
            assert re.fullmatch(r"<think>[^<]+</think><answer>[^<]+</answer>", b["response"])
        if b["kind"].startswith("mc"):
            assert extract_answer(b["response"]) in b["prompt"]
        assert "video" not in b["prompt"]
