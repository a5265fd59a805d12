"""Loaders and the AVQA conversion: the canonical record, and clear errors at the edge."""
import json

import numpy as np
import pytest
import soundfile as sf

from aqa_core.data import DataError, MissingAudioWarning, avqa_wav_name, convert_avqa, load_avqa_jsonl, load_mmau


def _wav(path, seconds=0.1, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), 0.1 * np.sin(np.arange(int(seconds * sr)) / 5.0), sr)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


ROW = {"id": 1, "question_text": "What is in the video?", "multi_choice": ["a", "b"], "answer": 1,
       "audio_path": "x_1.wav"}


def test_avqa_record_is_canonical(tmp_path):
    _wav(tmp_path / "wavs" / "x_1.wav")
    _jsonl(tmp_path / "q.jsonl", [ROW])
    (rec,) = load_avqa_jsonl(tmp_path / "q.jsonl", audio_dir=tmp_path / "wavs")
    assert rec["id"] == "1" and rec["question"] == "What is in the audio?"
    assert rec["choices"] == ["a", "b"] and rec["answer"] == "b"
    assert rec["audio_path"] == str(tmp_path / "wavs" / "x_1.wav")
    assert rec["question_text"] == "What is in the video?"  # source fields kept


def test_avqa_audio_path_relative_to_jsonl_without_audio_dir(tmp_path):
    _wav(tmp_path / "wavs" / "x_1.wav")
    _jsonl(tmp_path / "q.jsonl", [dict(ROW, audio_path="wavs/x_1.wav")])
    (rec,) = load_avqa_jsonl(tmp_path / "q.jsonl")
    assert rec["audio_path"] == str(tmp_path / "wavs" / "x_1.wav")


def test_avqa_missing_wavs_are_counted_and_skipped_or_fail(tmp_path):
    _wav(tmp_path / "x_1.wav")
    _jsonl(tmp_path / "q.jsonl", [ROW, dict(ROW, id=2, audio_path="gone.wav"), dict(ROW, id=3, audio_path="gone2.wav")])
    with pytest.warns(MissingAudioWarning, match=r"skipped 2 question\(s\).*first ids: 2, 3"):
        recs = load_avqa_jsonl(tmp_path / "q.jsonl", audio_dir=tmp_path)
    assert [r["id"] for r in recs] == ["1"]
    with pytest.raises(DataError, match="q.jsonl:2: audio file not found"):
        load_avqa_jsonl(tmp_path / "q.jsonl", audio_dir=tmp_path, on_missing="error")


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"id": 1, "question_text": "q"', r"q.jsonl:1: invalid JSON"),
        ('[1, 2]', r"q.jsonl:1: expected a JSON object"),
        ('{"id": 1, "question_text": "q", "answer": 0, "audio_path": "x"}', r"missing field\(s\) \['multi_choice'\]"),
        ('{"question_text": "q", "multi_choice": ["a"], "answer": 3, "audio_path": "x"}',
         r"index 3 out of range for 1 choices"),
        ('{"question_text": "q", "multi_choice": ["a"], "answer": "a", "audio_path": "x"}', r"0-based int index"),
        ('{"question_text": "q", "multi_choice": [], "answer": 0, "audio_path": "x"}', r"non-empty list of strings"),
    ],
)
def test_avqa_bad_lines_name_file_line_and_expectation(tmp_path, line, message):
    (tmp_path / "q.jsonl").write_text(line + "\n")
    with pytest.raises(DataError, match=message):
        load_avqa_jsonl(tmp_path / "q.jsonl", on_missing="keep")


def test_avqa_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_avqa_jsonl(tmp_path / "nope.jsonl")


def test_real_avqa_sample_loads(shared_data):
    recs = load_avqa_jsonl(shared_data / "avqa" / "avqa-r1aqa-sample.jsonl", on_missing="keep")
    assert len(recs) == 4797
    assert all(r["answer"] in r["choices"] and "video" not in r["question"] for r in recs)
    assert sum("video" in r["question_text"] for r in recs) > 100  # the rewrite was exercised


def test_avqa_wav_name():
    assert avqa_wav_name("-HG3Omg_89c_000030") == "-HG3Omg_89c_30.wav"
    assert avqa_wav_name("abc_000000") == "abc_0.wav"
    with pytest.raises(DataError, match="not '<youtube id>_<start seconds>'"):
        avqa_wav_name("noseconds")


def test_convert_avqa_round_trips_through_the_loader(tmp_path, shared_data):
    example = json.loads((shared_data / "avqa" / "r1aqa_readme_example_record.json").read_text())
    official = {k: example[k] for k in ("id", "video_name", "video_id", "question_text", "multi_choice", "answer",
                                        "question_relation", "question_type")}
    other = dict(official, id=184, video_name="zzz_000001")
    (tmp_path / "avqa.json").write_text(json.dumps([official, other]))
    _wav(tmp_path / "wavs" / "-HG3Omg_89c_30.wav")
    with pytest.warns(MissingAudioWarning, match="skipped 1 of 2"):
        counts = convert_avqa(tmp_path / "avqa.json", tmp_path / "wavs", tmp_path / "out.jsonl")
    assert counts == {"questions": 2, "written": 1, "missing_audio": 1, "unusable_audio": 0}
    (rec,) = load_avqa_jsonl(tmp_path / "out.jsonl", audio_dir=tmp_path / "wavs")
    assert rec["question"] == "What happened in the audio?" and rec["answer"] == "Yacht consignment"
    assert rec["audio_path"].endswith("-HG3Omg_89c_30.wav")
    with pytest.raises(DataError, match="audio file not found"):
        convert_avqa(tmp_path / "avqa.json", tmp_path / "wavs", tmp_path / "out2.jsonl", on_missing="error")


MMAU_ITEM = {"id": "q1", "audio_id": "./test-mini-audios/q1.wav", "question": "Who?", "choices": ["Man", "Woman"],
             "answer": "Man", "task": "speech", "difficulty": "easy", "sub-category": "Speaker"}


def test_mmau_loader_resolves_audio_against_the_json_folder(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([MMAU_ITEM]))
    _wav(tmp_path / "test-mini-audios" / "q1.wav")
    (rec,) = load_mmau(tmp_path / "m.json", check_audio=True)
    assert rec["audio_path"] == str(tmp_path / "test-mini-audios" / "q1.wav")
    assert rec["task"] == "speech" and rec["answer"] == "Man"


def test_mmau_loader_reports_missing_audio_with_count_and_ids(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([MMAU_ITEM,
                                                 dict(MMAU_ITEM, id="q2", audio_id="./test-mini-audios/q2.wav")]))
    with pytest.raises(DataError, match=r"2 of 2 wav file\(s\) missing .*first ids: q1, q2"):
        load_mmau(tmp_path / "m.json", check_audio=True)


@pytest.mark.parametrize(
    "content,message",
    [
        ("[{", "invalid JSON"),
        ('{"a": 1}', "expected a JSON list"),
        ('[{"id": "x"}]', r"record 0 \(id x\): missing field"),
        ('[3]', "record 0: expected an object"),
    ],
)
def test_mmau_loader_errors(tmp_path, content, message):
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(DataError, match=message):
        load_mmau(tmp_path / "m.json")


def test_real_mmau_loads(shared_data):
    recs = load_mmau(shared_data / "mmau" / "mmau-test-mini.json")
    assert len(recs) == 1000 and {r["task"] for r in recs} == {"sound", "music", "speech"}
