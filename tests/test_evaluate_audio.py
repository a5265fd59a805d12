"""`evaluate --audio {real,silence,mismatched}`: the mismatched pairing (a seeded derangement),
the audio that reaches the tiny model under each choice, the setting in the result files, the
tower cache's keys, the audio check before any ablation, and the command lines."""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aqa_core.audio import load_audio
from aqa_core.data import load_questions
from aqa_core.eval import evaluate as ev
from aqa_core.eval import sweep as sw
from aqa_core.tower_cache import TowerCache

SUBS = ("Temporal Reasoning", "Acoustic Source Inference", "Phonemic Stress Pattern Analysis")


def write_mmau(root: Path, n: int = 6) -> Path:
    """An MMAU-schema file (the real test-mini's fields) with 16 kHz wavs of different lengths and
    a question that names its item (`Question i:`), so a prompt text tells which item it is."""
    (root / "test-mini-audios").mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        t = np.arange(int(16000 * (0.5 + 0.25 * i))) / 16000
        sf.write(root / "test-mini-audios" / f"q{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)), 16000,
                 subtype="FLOAT")
        recs.append({"id": f"q{i}", "audio_id": f"./test-mini-audios/q{i}.wav",
                     "question": f"Question {i}: what is heard?", "choices": ["a tone", "a dog"],
                     "answer": "a tone", "dataset": "fixture", "task": ("sound", "music", "speech")[i % 3],
                     "split": "test-mini", "category": ["x", "y"] if i == 0 else "x",
                     "sub-category": SUBS[i % 3], "difficulty": "easy"})
    path = root / "questions.json"
    path.write_text(json.dumps(recs, indent=1), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from aqa_core.mini.model import build_untrained

    return build_untrained(tmp_path_factory.mktemp("tiny") / "model", tiny=True)


@pytest.fixture(scope="module")
def model_and_processor(tiny_model):
    return ev.load_model(tiny_model)


class RecordingProcessor:
    """The real processor, recording what `_generate` hands it: per item (named by its prompt's
    `Question i:`), the prompt text, the audio array and its number of audio feature frames."""

    def __init__(self, inner):
        self.inner = inner
        self.fed: dict[str, tuple[str, np.ndarray, int]] = {}

    def __call__(self, *args, text, audio, **kwargs):
        out = self.inner(*args, text=text, audio=audio, **kwargs)
        for t, wav, frames in zip(text, audio, out["feature_attention_mask"].sum(-1).tolist(), strict=True):
            self.fed["q" + re.search(r"Question (\d+):", t).group(1)] = (t, np.asarray(wav), frames)
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def evaluate(model_and_processor, tiny_model, data, out, **kw):
    """`evaluate_file` on the tiny model; returns (summary, what each item was fed)."""
    model, processor = model_and_processor
    rec = RecordingProcessor(processor)
    kw = {"batch_size": 4, "max_new_tokens": 2, "progress": False, "verbose": False, **kw}
    return ev.evaluate_file(tiny_model, data, out, loader=lambda: (model, rec), **kw), rec.fed


def records(subs: str, paths: str | None = None) -> list[dict]:
    """Literal records: one sub-category letter (and one wav name) per item."""
    paths = paths or "".join(chr(ord("A") + i) for i in range(len(subs)))
    return [{"id": f"r{i}", "audio_path": f"{p}.wav", "sub-category": s}
            for i, (s, p) in enumerate(zip(subs, paths, strict=True))]


# ----------------------------------------------------------------------------- the pairing


def test_partners_are_a_derangement_across_subcategories():
    recs = records("aaabbbcccddd")
    p = ev.mismatched_partners(recs)
    assert sorted(p) == list(range(12))  # a permutation: every clip is heard exactly once
    assert all(p[i] != i for i in range(12))
    assert all(recs[p[i]]["sub-category"] != recs[i]["sub-category"] for i in range(12))
    assert ev.mismatched_partners(recs) == p  # the same every call
    assert any(ev.mismatched_partners(recs, seed=s) != p for s in (1, 2, 3))  # the seed draws another


def test_partners_for_two_items_and_for_one_dominant_subcategory():
    assert ev.mismatched_partners(records("ab")) == [1, 0]
    assert ev.mismatched_partners(records("aa")) == [1, 0]  # no other sub-category: any other item
    recs = records("aaaabc")  # 4 of 6 in one sub-category: at most 2 * (6 - 4) cross pairs exist
    for seed in range(10):
        p = ev.mismatched_partners(recs, seed)
        assert sorted(p) == list(range(6)) and all(p[i] != i for i in range(6))
        assert sum(recs[p[i]]["sub-category"] != recs[i]["sub-category"] for i in range(6)) == 4


def test_no_item_is_given_its_own_wav_when_questions_share_one():
    recs = records("abab", paths="PPQR")  # r0 and r1 share P.wav
    for seed in range(20):
        p = ev.mismatched_partners(recs, seed)
        assert all(recs[p[i]]["audio_path"] != recs[i]["audio_path"] for i in range(4)), seed
    jsonl_like = [{k: v for k, v in r.items() if k != "sub-category"} for r in records("xxxx", paths="PPQR")]
    p = ev.mismatched_partners(jsonl_like)  # no sub-category: grouped by wav
    assert all(jsonl_like[p[i]]["audio_path"] != jsonl_like[i]["audio_path"] for i in range(4))
    with pytest.raises(ValueError, match="3 of 4 questions share one wav"):
        ev.mismatched_partners(records("abcd", paths="PPPQ"))
    with pytest.raises(ValueError, match="at least 2"):
        ev.mismatched_partners(records("a"))


def test_partners_do_not_depend_on_the_process():
    """Same records and seed, another interpreter with another hash seed: the same pairing."""
    recs = records("abcabcabcdd")
    code = ("import json, sys; from aqa_core.eval.evaluate import mismatched_partners; "
            "print(json.dumps(mismatched_partners(json.loads(sys.stdin.read()), 5)))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(recs), capture_output=True, text=True,
                         env=env, check=True).stdout
    assert json.loads(out) == ev.mismatched_partners(recs, 5)


def test_partners_on_the_real_mmau_test_mini(shared_data):
    recs = load_questions(shared_data / "mmau" / "mmau-test-mini.json", on_missing="keep")
    p = ev.mismatched_partners(recs)
    assert sorted(p) == list(range(len(recs))) and all(p[i] != i for i in range(len(recs)))
    assert all(recs[p[i]]["sub-category"] != recs[i]["sub-category"] for i in range(len(recs)))


# ----------------------------------------------------------------------------- what the model hears


def test_each_choice_feeds_the_audio_it_names(tmp_path, tiny_model, model_and_processor):
    data = write_mmau(tmp_path / "d", n=6)
    recs = load_questions(data, on_missing="keep")
    own = {r["id"]: load_audio(r["audio_path"]) for r in recs}
    _, real = evaluate(model_and_processor, tiny_model, data, tmp_path / "real.json")
    _, silence = evaluate(model_and_processor, tiny_model, data, tmp_path / "silence.json", audio="silence")
    _, mismatched = evaluate(model_and_processor, tiny_model, data, tmp_path / "mis.json", audio="mismatched")
    assert set(real) == set(silence) == set(mismatched) == set(own)
    partner = {r["id"]: recs[j]["id"] for r, j in zip(recs, ev.mismatched_partners(recs, seed=0), strict=True)}
    for i, wav in own.items():
        assert np.array_equal(real[i][1], wav)
        assert silence[i][1].shape == wav.shape and not np.any(silence[i][1])  # zeros, same length
        assert silence[i][2] == real[i][2]  # so the same number of audio frames (audio tokens)
        assert partner[i] != i and np.array_equal(mismatched[i][1], own[partner[i]])
        assert real[i][0] == silence[i][0] == mismatched[i][0]  # the prompt text is unchanged
    subs = {r["id"]: r["sub-category"] for r in recs}
    assert all(subs[partner[i]] != subs[i] for i in own)
    real_rows = json.loads((tmp_path / "real.json").read_text())
    assert [r["audio_id"] for r in json.loads((tmp_path / "mis.json").read_text())] == \
        [r["audio_id"] for r in real_rows]  # the output keeps each question's own fields


def test_the_tower_cache_never_replays_a_real_clip_for_an_ablated_one(tmp_path, tiny_model, model_and_processor):
    data = write_mmau(tmp_path / "d", n=5)
    cache = TowerCache(device="cpu")
    evaluate(model_and_processor, tiny_model, data, tmp_path / "real.json", tower_cache=cache)
    assert (cache.misses, cache.hits) == (5, 0)
    evaluate(model_and_processor, tiny_model, data, tmp_path / "silence.json", audio="silence", tower_cache=cache)
    # silence is encoded, not replayed from the real clip (keys are the features fed; the five clips
    # have different lengths, so their silences differ too)
    assert (cache.misses, cache.hits) == (10, 0)
    evaluate(model_and_processor, tiny_model, data, tmp_path / "mis.json", audio="mismatched", tower_cache=cache)
    assert (cache.misses, cache.hits) == (10, 5)  # each partner's clip, encoded by the real run


# ----------------------------------------------------------------------------- settings and checks


def test_the_choice_is_a_setting(tmp_path, tiny_model, model_and_processor, capsys):
    data = write_mmau(tmp_path / "d", n=5)
    out = tmp_path / "p.json"
    summary, _ = evaluate(model_and_processor, tiny_model, data, out, audio="silence", verbose=True)
    assert summary["settings"]["audio"] == "silence"
    assert json.loads((tmp_path / "p.json.score.json").read_text())["settings"]["audio"] == "silence"
    assert "(audio: silence, each clip replaced by zeros of its length)" in capsys.readouterr().out
    again, fed = evaluate(model_and_processor, tiny_model, data, out, audio="silence")
    assert again["cached"] and fed == {}
    with pytest.raises(ev.EvalError, match="--overwrite"):
        evaluate(model_and_processor, tiny_model, data, out)  # real audio: another setting
    real, _ = evaluate(model_and_processor, tiny_model, data, out, overwrite=True)
    assert real["settings"]["audio"] == "real" and not real["cached"]

    # results from before `audio` was a setting were made with the real audio: still a cache hit
    score = tmp_path / "p.json.score.json"
    legacy = json.loads(score.read_text())
    del legacy["settings"]["audio"]
    score.write_text(json.dumps(legacy))
    assert evaluate(model_and_processor, tiny_model, data, out)[0]["cached"]
    with pytest.raises(ev.EvalError, match="--overwrite"):
        evaluate(model_and_processor, tiny_model, data, out, audio="mismatched")


def test_a_partial_run_is_not_resumed_with_other_audio(tmp_path, tiny_model, model_and_processor):
    data = write_mmau(tmp_path / "d", n=6)
    out = tmp_path / "p.json"

    def stop(n_batches):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(model_and_processor, tiny_model, data, out, audio="mismatched", batch_size=2, after_batch=stop)
    header = json.loads((tmp_path / "p.json.progress.jsonl").read_text().splitlines()[0])
    assert header["settings"]["audio"] == "mismatched"
    for other in ("real", "silence"):
        with pytest.raises(ev.EvalError, match="other settings"):
            evaluate(model_and_processor, tiny_model, data, out, audio=other)
    summary, fed = evaluate(model_and_processor, tiny_model, data, out, audio="mismatched")
    assert summary["generated"] == 4 and len(fed) == 4  # resumed: the first batch of 2 is kept


def test_missing_audio_is_still_reported_under_an_ablation(tmp_path, tiny_model, model_and_processor):
    data = write_mmau(tmp_path / "d", n=5)
    (tmp_path / "d" / "test-mini-audios" / "q2.wav").unlink()

    def no_model():
        raise AssertionError("the model must not be loaded when audio is missing")

    for audio in ("silence", "mismatched"):
        with pytest.raises(ev.EvalError, match=r"1 of 5 .*q2: audio file not found.*--skip-missing"):
            ev.evaluate_file(tiny_model, data, tmp_path / f"{audio}.json", audio=audio, loader=no_model,
                             progress=False, verbose=False)
    with pytest.warns(UserWarning, match="1 of 5"):
        summary, fed = evaluate(model_and_processor, tiny_model, data, tmp_path / "m.json", audio="mismatched",
                                skip_missing=True)
    assert summary["skipped_missing_audio"] == 1 and set(fed) == {"q0", "q1", "q3", "q4"}
    kept = [load_audio(tmp_path / "d" / "test-mini-audios" / f"q{i}.wav") for i in (0, 1, 3, 4)]
    for i, (_, wav, _) in fed.items():  # each is fed another kept item's clip, never the missing one
        assert not np.array_equal(wav, load_audio(tmp_path / "d" / "test-mini-audios" / f"{i}.wav"))
        assert any(np.array_equal(wav, k) for k in kept)


def test_mismatched_needs_two_items_and_says_so_in_one_line(tmp_path, tiny_model, capsys):
    from aqa_core.__main__ import main

    data = write_mmau(tmp_path / "d", n=1)
    code = main(["evaluate", "--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "p.json"),
                 "--audio", "mismatched"])
    err = capsys.readouterr().err.splitlines()  # (the audio check's progress bar first)
    assert code == 1 and not any("Traceback" in line for line in err)
    assert err[-1] == f"error: {data}: --audio mismatched needs at least 2 questions with audio, got 1"


# ----------------------------------------------------------------------------- command lines


def test_cli_accepts_the_three_choices_and_rejects_others(tmp_path, tiny_model, monkeypatch, capsys):
    with pytest.raises(ev.EvalError, match="--audio must be one of real, silence, mismatched"):
        ev.evaluate_file(tiny_model, write_mmau(tmp_path, 2), tmp_path / "o.json", audio="noise")
    calls = []
    monkeypatch.setattr(ev, "evaluate_file", lambda *a, **k: calls.append(a))
    base = ["--model", "m", "--data", "d.json", "--out", "o.json"]
    for audio in ("real", "silence", "mismatched"):
        assert ev.cli_evaluate([*base, "--audio", audio]) == 0
    assert ev.cli_evaluate(base) == 0
    assert [a[-1] for a in calls] == ["real", "silence", "mismatched", "real"]
    with pytest.raises(SystemExit) as exc:
        ev.cli_evaluate([*base, "--audio", "noise"])
    assert exc.value.code == 2 and "invalid choice: 'noise'" in capsys.readouterr().err


def test_sweep_passes_the_choice_and_keeps_the_real_sweep(tmp_path, tiny_model, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(sw, "sweep", functools.wraps(sw.sweep)(lambda *a, **k: seen.update(k)))
    assert sw.cli_sweep(["--run", "r", "--data", "d.json", "--audio", "silence"]) == 0
    assert seen["audio"] == "silence"
    monkeypatch.undo()

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model, run_dir / "checkpoint-10")
    (run_dir / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 10}')
    (run_dir / "config.yaml").write_text("prompt: 2\n")
    data = write_mmau(tmp_path / "d", n=3)
    res = sw.sweep(run_dir, data, audio="silence", batch_size=4, max_new_tokens=2, progress=False)
    folder = run_dir / "eval" / "audio-silence"
    assert res["audio"] == "silence" and json.loads((folder / "sweep.json").read_text())["audio"] == "silence"
    assert json.loads((folder / "checkpoint-10.test.json.score.json").read_text())["settings"]["audio"] == "silence"
    assert not (run_dir / "eval" / "sweep.json").exists()  # the real sweep's files are untouched
    assert "(audio: silence)" in capsys.readouterr().out
