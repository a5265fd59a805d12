"""The evaluation stage: official prediction format, resume, missing audio, caching, sweeps and
selection (fast, with scripted generations), and the real tiny model's batched generation (slow)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aqa_core.answers import extract_answer
from aqa_core.eval import evaluate as ev
from aqa_core.eval import mmau
from aqa_core.eval import sweep as sw

TASKS = ("sound", "music", "speech")
DIFFICULTIES = ("easy", "medium", "hard")


# ----------------------------------------------------------------------------- fixtures


def write_mmau(root: Path, n: int = 10) -> Path:
    """A small MMAU-schema question file with wavs of 1-3 s (so audio token counts differ) and
    questions of different lengths (so batches need padding)."""
    (root / "test-mini-audios").mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        sec = 1.0 + (i % 5) * 0.5
        t = np.arange(int(16000 * sec)) / 16000
        wave = (0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t)).astype(np.float32)
        sf.write(root / "test-mini-audios" / f"q{i}.wav", wave, 16000)
        choices = ["a rising tone", "a falling tone", "a dog barking", "silence"][: 2 + i % 3]
        recs.append({
            "id": f"q{i}", "audio_id": f"./test-mini-audios/q{i}.wav",
            "question": "What is heard?" + " Listen closely." * (i % 4), "choices": choices,
            "answer": choices[i % len(choices)], "dataset": "fixture", "task": TASKS[i % 3], "split": "test-mini",
            "category": ["x", "y"] if i == 0 else "x",  # MMAU has list categories: must survive untouched
            "sub-category": f"sub{i % 2}", "difficulty": DIFFICULTIES[i % 3],
        })
    path = root / "questions.json"
    path.write_text(json.dumps(recs, indent=1), encoding="utf-8")
    return path


def write_avqa(root: Path, n: int = 6) -> Path:
    (root / "val-audios").mkdir(parents=True, exist_ok=True)
    with (root / "val.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n):
            wave = (0.2 * np.sin(np.arange(16000) * (0.05 + 0.01 * i))).astype(np.float32)
            sf.write(root / "val-audios" / f"v{i}.wav", wave, 16000)
            fh.write(json.dumps({"id": i, "question_text": "What is in the video?", "multi_choice": ["a cat", "a dog"],
                                 "answer": i % 2, "audio_path": f"v{i}.wav"}) + "\n")
    return root / "val.jsonl"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from aqa_core.mini.model import build_untrained

    return build_untrained(tmp_path_factory.mktemp("tiny") / "model", tiny=True)


class ScriptedGeneration:
    """Replaces `_generate`: answers right when `rule(model_name, record)` says so, counts items."""

    def __init__(self, rule=None):
        self.rule = rule or (lambda model_name, rec: int(rec["id"].lstrip("qv") or 0) % 2 == 0)
        self.items: list[str] = []

    def __call__(self, model, processor, texts, records, gen_cfg, tower_cache=None, input_cache=None):
        assert len(texts) == len(records) and all("<|AUDIO|>" in t for t in texts)
        out = []
        for r in records:
            self.items.append(str(r["id"]))
            wrong = next(c for c in r["choices"] if c != r["answer"])
            right = self.rule(str(model.name_or_path), r)
            out.append(f"<think>hm</think><answer>{r['answer'] if right else wrong}</answer>")
        return out


@pytest.fixture
def scripted(monkeypatch):
    gen = ScriptedGeneration()
    monkeypatch.setattr(ev, "_generate", gen)
    return gen


def run(model, data, out, **kw):
    kw.setdefault("batch_size", 3)
    kw.setdefault("max_new_tokens", 8)
    kw.setdefault("progress", False)
    kw.setdefault("verbose", False)
    return ev.evaluate_file(model, data, out, **kw)


# ----------------------------------------------------------------------------- fast


def test_predictions_round_trip_through_the_scorer(tmp_path, tiny_model, scripted):
    data = write_mmau(tmp_path / "d", n=10)
    out = tmp_path / "preds.json"
    summary = run(tiny_model, data, out)
    rows = json.loads(out.read_text(encoding="utf-8"))
    originals = json.loads(data.read_text(encoding="utf-8"))
    assert len(rows) == len(originals)
    for row, orig in zip(rows, originals, strict=True):  # question order and every original field kept as is
        assert {k: v for k, v in row.items() if k not in ("model_prediction", "model_output", "raw_output")} == orig
        assert row["model_prediction"] == row["model_output"] == extract_answer(row["raw_output"])
    # the official scorer reads model_output; the README key is model_prediction: same result
    by_output = mmau.score_file(out, key="model_output")
    by_prediction = mmau.score_file(out, key="model_prediction")
    assert by_output.official_lines() == by_prediction.official_lines()
    assert by_output.total.correct == 5 and by_output.total.total == 10  # even ids answered right
    assert summary["report"]["total"]["correct"] == 5
    assert summary["report"]["task"]["sound"]["total"] == 4
    score = json.loads((tmp_path / "preds.json.score.json").read_text())
    assert score["report"]["total"]["ci95"] is not None and "version" in score["report"]
    txt = (tmp_path / "preds.json.score.txt").read_text()
    assert "Total Accuracy: 50.00% over 10 samples" in txt and "MMAU version" in txt
    assert not (tmp_path / "preds.json.progress.jsonl").exists()


def test_resume_loses_nothing_and_duplicates_nothing(tmp_path, tiny_model, scripted):
    data = write_mmau(tmp_path / "d", n=10)
    full = tmp_path / "full.json"
    run(tiny_model, data, full)
    scripted.items.clear()

    out = tmp_path / "resumed.json"

    def stop_after_two(n_batches):
        if n_batches == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_model, data, out, after_batch=stop_after_two)
    sidecar = tmp_path / "resumed.json.progress.jsonl"
    assert not out.exists() and len(sidecar.read_text().splitlines()) == 1 + 6  # header + 2 batches of 3
    first = list(scripted.items)
    scripted.items.clear()
    with sidecar.open("a") as fh:  # a torn line from a kill mid-write is dropped, not fatal
        fh.write('{"index": 9, "id": "q')
    with pytest.warns(UserWarning, match="torn last line"):
        run(tiny_model, data, out, batch_size=4)  # batch size may change on resume
    assert len(scripted.items) == 4 and not set(scripted.items) & set(first)  # nothing redone
    rows = json.loads(out.read_text())
    ids = [r["id"] for r in rows]
    assert ids == [f"q{i}" for i in range(10)]  # nothing lost, nothing twice, file order
    assert rows == json.loads(full.read_text())  # same as the uninterrupted run


def test_progress_from_other_settings_is_refused(tmp_path, tiny_model, scripted):
    data = write_mmau(tmp_path / "d", n=6)
    out = tmp_path / "p.json"

    def stop(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_model, data, out, after_batch=stop)
    with pytest.raises(ev.EvalError, match="other settings"):
        run(tiny_model, data, out, prompt=3)
    run(tiny_model, data, out, prompt=3, overwrite=True)
    assert len(json.loads(out.read_text())) == 6


def test_missing_audio_is_reported_before_model_work(tmp_path, tiny_model, scripted):
    data = write_mmau(tmp_path / "d", n=10)
    for i in (2, 5, 7):
        (tmp_path / "d" / "test-mini-audios" / f"q{i}.wav").unlink()
    (tmp_path / "d" / "test-mini-audios" / "q8.wav").write_bytes(b"not a wav file at all")
    sf.write(tmp_path / "d" / "test-mini-audios" / "q4.wav", np.zeros(8000, np.float32), 16000)  # silent

    def no_model():
        raise AssertionError("the model must not be loaded when audio is missing")

    with pytest.raises(ev.EvalError) as err:
        run(tiny_model, data, tmp_path / "p.json", loader=no_model)
    msg = str(err.value)
    assert "5 of 10" in msg and "--skip-missing" in msg
    assert "q2: audio file not found" in msg and "q4: silent audio" in msg and "q8: unreadable audio" in msg
    assert scripted.items == []

    with pytest.warns(UserWarning, match="5 of 10"):
        summary = run(tiny_model, data, tmp_path / "p.json", skip_missing=True)
    rows = json.loads((tmp_path / "p.json").read_text())
    assert [r["id"] for r in rows] == ["q0", "q1", "q3", "q6", "q9"]
    assert summary["skipped_missing_audio"] == 5 and summary["report"]["total"]["total"] == 5


def test_same_settings_are_cached_other_settings_need_overwrite(tmp_path, tiny_model, scripted):
    data = write_mmau(tmp_path / "d", n=4)
    out = tmp_path / "p.json"
    run(tiny_model, data, out)
    n = len(scripted.items)
    again = run(tiny_model, data, out, loader=lambda: pytest.fail("cached: no model needed"))
    assert len(scripted.items) == n and again["report"]["total"]["total"] == 4
    with pytest.raises(ev.EvalError, match="--overwrite"):
        run(tiny_model, data, out, max_new_tokens=9)
    run(tiny_model, data, out, max_new_tokens=9, overwrite=True)
    assert json.loads((tmp_path / "p.json.score.json").read_text())["settings"]["max_new_tokens"] == 9


def test_limit_and_avqa_validation_scoring(tmp_path, tiny_model, scripted):
    data = write_mmau(tmp_path / "d", n=8)
    summary = run(tiny_model, data, tmp_path / "p.json", limit=5)
    assert summary["report"]["total"]["total"] == 5
    val = write_avqa(tmp_path / "v", n=6)
    s = run(tiny_model, val, tmp_path / "v.json", audio_dir=tmp_path / "v" / "val-audios")
    rows = json.loads((tmp_path / "v.json").read_text())
    assert rows[0]["question"] == "What is in the audio?"  # the official video -> audio rewrite
    assert s["report"]["total"] == {"correct": 3, "total": 6, "accuracy": 50.0,
                                    "ci95": list(mmau.wilson_interval(3, 6))}


def by_checkpoint(right: dict):
    """A ScriptedGeneration rule: `right[model folder name]` = (test item numbers answered right,
    validation ids answered right); read at each call, so a test may add folders later."""
    def rule(model_name, rec):
        test_ok, val_ok = right[Path(model_name).name]
        rid = str(rec["id"])
        return int(rid[1:]) in test_ok if rid.startswith("q") else int(rid) in val_ok

    return rule


def _make_run(tmp_path: Path, tiny_model: Path) -> Path:
    run_dir = tmp_path / "run"
    for name in ("checkpoint-10", "checkpoint-20", "checkpoint-30", "final"):
        shutil.copytree(tiny_model, run_dir / name)
        if name != "final":  # what the Trainer writes last in a checkpoint: it is complete
            (run_dir / name / "trainer_state.json").write_text(json.dumps({"global_step": int(name[11:])}))
    (run_dir / "config.yaml").write_text(f"prompt: 2\nlearning_rate: 1.0e-06\nmodel_name_or_path: {tiny_model}\n")
    (run_dir / "trainer_state.json").write_text(json.dumps({"global_step": 30}))
    return run_dir


def test_sweep_tabulates_steps_and_selects_two_ways(tmp_path, tiny_model, monkeypatch, capsys):
    run_dir = _make_run(tmp_path, tiny_model)
    # test: checkpoint-20 best (6/9), validation: checkpoint-10 best (6/6, test 3/9)
    right = {"checkpoint-10": ({0, 1, 2}, set(range(6))), "checkpoint-20": ({0, 1, 2, 3, 4, 5}, {0}),
             "checkpoint-30": ({0}, {0, 1}), "final": ({0}, {0, 1})}

    gen = ScriptedGeneration(by_checkpoint(right))
    monkeypatch.setattr(ev, "_generate", gen)
    data = write_mmau(tmp_path / "d", n=9)
    val = write_avqa(tmp_path / "v", n=6)
    kw = dict(batch_size=4, max_new_tokens=8, progress=False, verbose=False)
    res = sw.sweep(run_dir, data, validation=val, validation_audio_dir=tmp_path / "v" / "val-audios", **kw)
    # final/ holds checkpoint-30's weights (as a run's last save does): it is not evaluated again
    assert [r["checkpoint"] for r in res["rows"]] == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    assert [r["step"] for r in res["rows"]] == [10, 20, 30]
    assert res["rows"][1]["test"] == pytest.approx(100 * 6 / 9)
    assert res["rows"][0]["validation"] == 100.0
    assert res["selection"]["best_on_test"]["checkpoint"] == "checkpoint-20"
    assert res["selection"]["best_on_validation"]["checkpoint"] == "checkpoint-10"
    assert res["selection"]["best_on_validation"]["test"] == pytest.approx(100 * 3 / 9)
    assert (run_dir / "eval" / "checkpoint-20.test.json").is_file()
    csv_lines = (run_dir / "eval" / "sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("checkpoint,step,test,test_sound,test_music,test_speech") and len(csv_lines) == 4
    assert json.loads((run_dir / "eval" / "sweep.json").read_text())["selection"] == res["selection"]
    printed = capsys.readouterr().out
    assert "best on test" in printed and "best on validation" in printed
    assert "final: the same weights as checkpoint-30" in printed

    n = len(gen.items)
    (run_dir / "checkpoint-40").mkdir()  # a new checkpoint: only it is evaluated on the rerun
    for f in tiny_model.iterdir():
        shutil.copy(f, run_dir / "checkpoint-40" / f.name)
    (run_dir / "checkpoint-40" / "trainer_state.json").write_text(json.dumps({"global_step": 40}))
    shutil.copytree(tiny_model, run_dir / "checkpoint-50")  # its save was interrupted: no trainer_state.json
    right["checkpoint-40"] = ({0}, {0})
    right[tiny_model.name] = (set(range(9)), set(range(6)))  # the base: best everywhere, yet never selected
    with pytest.warns(UserWarning, match="checkpoint-50: not a complete checkpoint"):
        res2 = sw.sweep(run_dir, data, validation=val, validation_audio_dir=tmp_path / "v" / "val-audios",
                        include_base=True, **kw)
    assert len(gen.items) - n == 2 * (9 + 6)  # only the new checkpoint and the base
    assert [(r["checkpoint"], r["step"]) for r in res2["rows"]][:2] == [("base", 0), ("checkpoint-10", 10)]
    assert len(res2["rows"]) == 5 and "(cached)" in capsys.readouterr().out
    assert res2["rows"][0]["test"] == 100.0 and res2["selection"] == res["selection"]


def test_sweep_tests_only_where_a_selection_lands_and_validation_alone(tmp_path, tiny_model, monkeypatch):
    run_dir = _make_run(tmp_path, tiny_model)
    right = {"checkpoint-10": ({0}, set(range(6))), "checkpoint-20": (set(range(9)), {0}),
             "checkpoint-30": ({0}, {0, 1})}

    gen = ScriptedGeneration(by_checkpoint(right))
    monkeypatch.setattr(ev, "_generate", gen)
    data, val = write_mmau(tmp_path / "d", n=9), write_avqa(tmp_path / "v", n=6)
    kw = dict(batch_size=4, max_new_tokens=8, progress=False, verbose=False)
    res = sw.sweep(run_dir, data, validation=val, validation_audio_dir=tmp_path / "v" / "val-audios",
                   test_at="selected", **kw)
    tested = [r["checkpoint"] for r in res["rows"] if r["test"] is not None]
    assert tested == ["checkpoint-10", "checkpoint-30"]  # best on validation, and the last; not the test's best
    assert all(r["validation"] is not None for r in res["rows"]) and res["test_at"] == "selected"
    assert res["selection"]["best_on_test"] is None and res["selection"]["best_on_validation"]["test"] == 100 / 9
    assert len(gen.items) == 3 * 6 + 2 * 9
    chosen = sw.sweep(run_dir, data, validation=val, validation_audio_dir=tmp_path / "v" / "val-audios",
                      test_at="chosen", out_dir=tmp_path / "chosen", **kw)
    assert [r["checkpoint"] for r in chosen["rows"] if r["test"] is not None] == ["checkpoint-10"]  # not the last
    assert chosen["selection"]["best_on_test"] is None and chosen["selection"]["best_on_validation"]["test"] == 100 / 9
    only_val = sw.sweep(run_dir, None, validation=val, validation_audio_dir=tmp_path / "v" / "val-audios",
                        out_dir=tmp_path / "valonly", **kw)
    assert all(r["test"] is None for r in only_val["rows"]) and only_val["data"] is None
    assert not list((tmp_path / "valonly").glob("*.test.json"))  # the test file is never read
    with pytest.raises(ev.EvalError, match="needs both"):
        sw.sweep(run_dir, data, test_at="selected", **kw)


def test_sweep_ablates_the_audio_of_the_checkpoint_chosen_on_validation(tmp_path, tiny_model, monkeypatch):
    run_dir = _make_run(tmp_path, tiny_model)
    right = {"checkpoint-10": ({0}, set(range(6))), "checkpoint-20": (set(range(9)), {0}),
             "checkpoint-30": ({0}, {0, 1})}
    gen = ScriptedGeneration(by_checkpoint(right))
    monkeypatch.setattr(ev, "_generate", gen)
    fed = []
    real_generate = ev._generate
    monkeypatch.setattr(ev, "_generate",
                        lambda m, p, t, recs, *a, **k: fed.extend(recs) or real_generate(m, p, t, recs, *a, **k))
    data, val = write_mmau(tmp_path / "d", n=9), write_avqa(tmp_path / "v", n=6)
    res = sw.sweep(run_dir, data, validation=val, validation_audio_dir=tmp_path / "v" / "val-audios",
                   test_at="selected", ablate_selected=["silence", "mismatched"], batch_size=4, max_new_tokens=8,
                   progress=False, verbose=False)
    chosen = res["selection"]["best_on_validation"]
    assert chosen["checkpoint"] == "checkpoint-10" and set(chosen["audio_ablations"]) == {"silence", "mismatched"}
    for a in ("silence", "mismatched"):
        assert (run_dir / "eval" / f"checkpoint-10.test.audio-{a}.json").is_file()
    assert sum(1 for r in fed if r.get(ev.ABLATION) == "silence") == 9  # the ablated records reached the model
    with pytest.raises(ev.EvalError, match="ablate-selected"):
        sw.sweep(run_dir, data, validation=val, ablate_selected=["real"], batch_size=4, progress=False, verbose=False)


def test_sweep_reuses_the_base_models_own_evaluation_when_its_settings_match(tmp_path, tiny_model, monkeypatch):
    run_dir = _make_run(tmp_path, tiny_model)  # its config: prompt 2, started from tiny_model
    gen = ScriptedGeneration()
    monkeypatch.setattr(ev, "_generate", gen)
    data = write_mmau(tmp_path / "d", n=6)
    kw = dict(batch_size=4, max_new_tokens=8, progress=False, verbose=False)
    run(tiny_model, data, tmp_path / "base-p2.json", prompt=2, **kw)
    run(tiny_model, data, tmp_path / "base-p1.json", prompt=1, **kw)
    gen.items.clear()
    sw.sweep(run_dir, data, include_base=True, base_test_from=tmp_path / "base-p2.json", **kw)
    assert len(gen.items) == 3 * 6  # the three checkpoints; the base's 6 items were not generated again
    assert (run_dir / "eval" / "base.test.json").read_text() == (tmp_path / "base-p2.json").read_text()
    other = _make_run(tmp_path / "o", tiny_model)
    gen.items.clear()
    sw.sweep(other, data, include_base=True, base_test_from=tmp_path / "base-p1.json", **kw)  # another prompt
    assert len(gen.items) == 4 * 6  # not the same settings: the base is evaluated as usual


def test_sweep_alternate_tests_half_the_curve_and_scores_a_validation_subset(tmp_path, tiny_model, monkeypatch):
    run_dir = _make_run(tmp_path, tiny_model)
    # checkpoint-20 is the best on test but neither chosen on validation nor on the alternate points
    right = {"checkpoint-10": ({0}, set(range(6))), "checkpoint-20": (set(range(9)), {0}),
             "checkpoint-30": ({0, 1}, {0, 1}), tiny_model.name: (set(), set())}

    gen = ScriptedGeneration(by_checkpoint(right))
    monkeypatch.setattr(ev, "_generate", gen)
    data, val = write_mmau(tmp_path / "d", n=9), write_avqa(tmp_path / "v", n=6)
    kw = dict(batch_size=4, max_new_tokens=8, progress=False, verbose=False)
    res = sw.sweep(run_dir, data, validation=val, validation_audio_dir=tmp_path / "v" / "val-audios",
                   include_base=True, test_at="alternate", validation_limit=4, **kw)
    tested = [r["checkpoint"] for r in res["rows"] if r["test"] is not None]
    assert tested == ["base", "checkpoint-10", "checkpoint-30"]  # step 0, every second back from the last
    assert all(r["validation_n"] == 4 for r in res["rows"]) and res["validation_limit"] == 4
    assert len(gen.items) == 4 * 4 + 3 * 9  # base + 3 checkpoints on 4 validation items; 3 test runs
    assert res["selection"]["best_on_test"]["checkpoint"] == "checkpoint-30"  # the best of those tested
    assert "best of those tested" in sw.format_sweep(res)
    with pytest.raises(ev.EvalError, match="validation-limit"):
        sw.sweep(run_dir, data, validation=val, test_at="alternate", validation_limit=0, **kw)


def test_sweep_evaluates_a_final_model_that_differs(tmp_path, tiny_model, monkeypatch):
    from safetensors.torch import load_file, save_file

    run_dir = _make_run(tmp_path, tiny_model)
    weights = run_dir / "final" / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    gen = ScriptedGeneration()
    monkeypatch.setattr(ev, "_generate", gen)
    data = write_mmau(tmp_path / "d", n=4)
    res = sw.sweep(run_dir, data, batch_size=4, max_new_tokens=8, progress=False, verbose=False)
    assert [r["checkpoint"] for r in res["rows"]] == ["checkpoint-10", "checkpoint-20", "checkpoint-30", "final"]
    assert len(gen.items) == 4 * 4


def test_run_prompt_from_config(tmp_path):
    (tmp_path / "config.yaml").write_text("prompt: 3\n")
    assert sw.run_prompt(tmp_path) == 3
    (tmp_path / "config.yaml").write_text("sft_tagged: false\nuse_peft: true\n")
    assert sw.run_prompt(tmp_path) == 1
    (tmp_path / "config.yaml").write_text("learning_rate: 1.0\n")
    with pytest.raises(ev.EvalError, match="--prompt"):
        sw.run_prompt(tmp_path)


def test_lora_checkpoint_reads_merged_model(tmp_path, tiny_model):
    from aqa_core.runs import RunDirError, model_dir

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "adapter_config.json").write_text("{}")
    with pytest.raises(RunDirError, match="merged"):
        model_dir(tmp_path / "ckpt")
    shutil.copytree(tiny_model, tmp_path / "ckpt" / "merged")
    assert model_dir(tmp_path / "ckpt") == tmp_path / "ckpt" / "merged"


def test_greedy_generation_config_ignores_checkpoint_sampling(tiny_model):
    model, processor = ev.load_model(tiny_model)
    model.generation_config.do_sample = True
    model.generation_config.temperature = 0.7
    greedy = ev.generation_config_for(model, processor, "greedy", 256)
    assert greedy.do_sample is False and greedy.max_new_tokens == 256 and greedy.pad_token_id is not None
    assert greedy.eos_token_id == model.generation_config.eos_token_id
    official = ev.generation_config_for(model, processor, "checkpoint", 256)
    assert official.do_sample is True and official.temperature == 0.7 and official.max_new_tokens == 256
    assert processor.tokenizer.padding_side == "left"


# ----------------------------------------------------------------------------- slow: the real tiny model


@pytest.mark.slow
def test_left_padding_matches_batch_size_one(tmp_path, tiny_model):
    import torch

    torch.set_num_threads(1)
    from aqa_core.data import load_mmau

    records = load_mmau(write_mmau(tmp_path / "d", n=24), check_audio=True)
    model, processor = ev.load_model(tiny_model)
    lengths = {len(processor(text=t, audio=[np.zeros(16000, np.float32) + 0.1], return_tensors="pt")["input_ids"][0])
               for t in ev.prompt_texts(processor, records[:5], 2)}
    assert len(lengths) > 1  # the batches really are padded
    one = ev.evaluate_records(model, processor, records, 2, batch_size=1, max_new_tokens=24, sort_by_length=False,
                              progress=False)
    batched = ev.evaluate_records(model, processor, records, 2, batch_size=8, max_new_tokens=24, progress=False)
    same = sum(a["model_prediction"] == b["model_prediction"] for a, b in zip(one, batched, strict=True))
    assert same / len(records) >= 0.99
    assert [r["id"] for r in batched] == [r["id"] for r in records]  # input order kept despite sorting
    assert all(len(r["raw_output"]) > 0 for r in batched)


@pytest.mark.slow
def test_tower_cache_replays_an_identical_tower_only(tmp_path, tiny_model):
    """A second model with the same tower weights encodes nothing and predicts the same; a model
    whose tower differs empties the cache and encodes every clip again."""
    import torch

    from aqa_core.audio_tower import audio_tower
    from aqa_core.data import load_mmau
    from aqa_core.tower_cache import TowerCache

    torch.set_num_threads(1)
    records = load_mmau(write_mmau(tmp_path / "d", n=8), check_audio=True)
    model, processor = ev.load_model(tiny_model)
    kw = dict(batch_size=3, max_new_tokens=12, progress=False)
    plain = ev.evaluate_records(model, processor, records, 2, **kw)
    cache = TowerCache(device="cpu")
    first = ev.evaluate_records(model, processor, records, 2, tower_cache=cache, **kw)
    assert (cache.misses, cache.hits) == (8, 0)
    again, _ = ev.load_model(tiny_model)  # another checkpoint, same tower
    second = ev.evaluate_records(again, processor, records, 2, tower_cache=cache, **kw)
    assert (cache.misses, cache.hits) == (8, 8)
    assert [r["raw_output"] for r in first] == [r["raw_output"] for r in second] == [r["raw_output"] for r in plain]
    with torch.no_grad():
        next(audio_tower(again).parameters()).add_(0.01)  # a tower that was trained
    ev.evaluate_records(again, processor, records, 2, tower_cache=cache, **kw)
    assert (cache.misses, cache.hits) == (16, 8)
    assert "forward" not in vars(audio_tower(again))
    beams = ev.generation_config_for(again, processor, "greedy", 4)
    beams.num_beams = 2  # beam search repeats each clip's rows: the cache stays out of it
    ev._generate(again, processor, ev.prompt_texts(processor, records[:2], 2), records[:2], beams, cache)
    assert (cache.misses, cache.hits) == (16, 8)


@pytest.mark.slow
def test_input_cache_feeds_the_same_tensors_and_encodes_each_batch_once(tmp_path, tiny_model, monkeypatch):
    """A sweep's second checkpoint reads no wav and runs no processor, and predicts exactly what it
    predicts without the cache; another prompt, an ablated clip or another processor is a miss."""
    import torch

    from aqa_core.data import load_mmau

    torch.set_num_threads(1)
    records = load_mmau(write_mmau(tmp_path / "d", n=8), check_audio=True)
    model, processor = ev.load_model(tiny_model)
    kw = dict(batch_size=3, max_new_tokens=12, progress=False)
    plain = ev.evaluate_records(model, processor, records, 2, **kw)
    cache = ev.InputCache()
    first = ev.evaluate_records(model, processor, records, 2, input_cache=cache, **kw)
    assert (cache.misses, cache.hits) == (3, 0)  # 8 records in batches of 3
    again, processor2 = ev.load_model(tiny_model)  # another checkpoint of the run: its own processor object
    reads = []
    monkeypatch.setattr(ev, "_load_batch_audio", lambda recs: reads.append(recs) or [])
    second = ev.evaluate_records(again, processor2, records, 2, input_cache=cache, **kw)
    assert (cache.misses, cache.hits) == (3, 3) and reads == []
    assert [r["raw_output"] for r in first] == [r["raw_output"] for r in second] == [r["raw_output"] for r in plain]
    monkeypatch.undo()
    ev.evaluate_records(again, processor2, records, 3, input_cache=cache, **kw)  # other prompt texts
    ev.evaluate_records(again, processor2, ev.ablate_audio(records, "silence"), 2, input_cache=cache, **kw)
    assert (cache.misses, cache.hits) == (9, 3)
    processor2.feature_extractor.padding_value = 0.5  # a processor that computes other features
    assert ev.InputCache.fingerprint(processor2) != ev.InputCache.fingerprint(processor)
    small = ev.InputCache(max_bytes=cache.bytes // len(cache.batches))  # room for about one batch
    ev.evaluate_records(model, processor, records, 2, input_cache=small, **kw)
    ev.evaluate_records(model, processor, records, 2, input_cache=small, **kw)
    assert len(small.batches) <= 1 and small.bytes <= small.max_bytes and small.misses >= 5


@pytest.mark.slow
def test_left_padded_logits_equal_unpadded(tmp_path, tiny_model):
    """Why the predictions agree: the attention mask hides the left pad tokens and generate() passes
    position ids from the mask (RoPE is relative, so even a constant shift would not matter), so a
    padded item's next-token logits equal its unpadded ones to rounding; attending to the pads
    (an all-ones mask) would not."""
    import torch

    from aqa_core.audio import load_audio
    from aqa_core.data import load_mmau

    records = load_mmau(write_mmau(tmp_path / "d", n=4), check_audio=True)
    short, long_ = records[0], records[3]  # 1 s vs 2.5 s audio, 0 vs 3 extra sentences
    model, processor = ev.load_model(tiny_model)

    def last_logits(recs, ignore_mask=False):
        inputs = processor(text=ev.prompt_texts(processor, recs, 2), audio=[load_audio(r["audio_path"]) for r in recs],
                           sampling_rate=16000, return_tensors="pt", padding=True)
        mask = inputs["attention_mask"].clone()
        if ignore_mask:
            inputs["attention_mask"][:] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # what generate() passes
        with torch.inference_mode():
            return model(**inputs, position_ids=pos).logits[:, -1], mask

    alone, _ = last_logits([short])
    both, mask = last_logits([short, long_])
    assert mask[0, 0] == 0 and mask[1, 0] == 1  # the short item really is left-padded
    assert torch.allclose(both[0], alone[0], atol=1e-4)
    assert torch.equal(both[0].argmax(), alone[0].argmax())
    unmasked, _ = last_logits([short, long_], ignore_mask=True)
    assert not torch.allclose(unmasked[0], alone[0], atol=1e-3)  # the check can fail


@pytest.mark.slow
def test_real_model_resume_equals_uninterrupted(tmp_path, tiny_model):
    import torch

    torch.set_num_threads(1)
    data = write_mmau(tmp_path / "d", n=9)
    full = run(tiny_model, data, tmp_path / "full.json", max_new_tokens=12)

    def stop(n):
        if n == 1:
            raise RuntimeError("injected failure after the first batch")

    with pytest.raises(RuntimeError, match="injected"):
        run(tiny_model, data, tmp_path / "r.json", max_new_tokens=12, after_batch=stop)
    resumed = run(tiny_model, data, tmp_path / "r.json", max_new_tokens=12)
    assert resumed["generated"] == 6 and full["generated"] == 9
    a, b = json.loads((tmp_path / "full.json").read_text()), json.loads((tmp_path / "r.json").read_text())
    assert [r["raw_output"] for r in a] == [r["raw_output"] for r in b]


@pytest.mark.slow
def test_cli_evaluate_end_to_end(tmp_path, tiny_model, capsys):
    from aqa_core.__main__ import main

    data = write_mmau(tmp_path / "d", n=5)
    out = tmp_path / "o" / "preds.json"
    code = main(["evaluate", "--model", str(tiny_model), "--data", str(data), "--audio-dir", str(tmp_path / "d"),
                 "--out", str(out), "--max-new-tokens", "6", "--batch-size", "4", "--limit", "4",
                 "--decoding", "checkpoint"])
    assert code == 0
    assert len(json.loads(out.read_text())) == 4
    assert json.loads((out.parent / "preds.json.score.json").read_text())["settings"]["decoding"] == "checkpoint"
    assert "Total Accuracy:" in capsys.readouterr().out
    (tmp_path / "d" / "test-mini-audios" / "q1.wav").unlink()
    code = main(["evaluate", "--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "x.json")])
    assert code == 1 and "missing or unreadable audio" in capsys.readouterr().err
