"""MMAU scoring (official lines, byte for byte), its extras, its errors, and version identification.

Oracles are literal: a rule table, a hand-made file whose official text was worked out by hand, and
for the real published files prediction shapes whose outcome is known by construction, with the few
items where it is not listed (and explained) in tests/data/mmau_shape_exceptions.json.
"""
from __future__ import annotations

import json
import random
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from aqa_core.eval import mmau
from aqa_core.eval.mmau import cli_score, format_report, mmau_string_match, score_file, score_predictions
from aqa_core.eval.mmau_versions import (
    VERSIONS_FILE,
    MMAUInputError,
    build_fingerprints,
    cli_mmau_version,
    identify_version,
    load_version_table,
)

DATA = Path(__file__).parent / "data"
HANDMADE = DATA / "mmau_handmade_predictions.json"
EXCEPTIONS = json.loads((DATA / "mmau_shape_exceptions.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------
# The rule
# ----------------------------------------------------------------------------------------------
CHOICES = ["A dog barking", "A cat meowing", "Rain"]
RULE_TABLE = [
    # (answer, prediction, choices, expected, why)
    ("A dog barking", "A dog barking", CHOICES, True, "exact"),
    ("A dog barking", "a DOG barking!!", CHOICES, True, "case and punctuation do not matter"),
    ("A dog barking", "<answer>A dog barking</answer>", CHOICES, True, "tags are just the token 'answer'"),
    ("A dog barking", "dog barking", CHOICES, False, "answer token 'a' missing"),
    ("A dog barking", "The answer is: a dog barking", CHOICES, True, "extra words not in any choice are fine"),
    ("A dog barking", "A dog barking, not a cat", CHOICES, False, "'cat' belongs to a wrong choice"),
    ("A dog barking", "A dog barking or rain", CHOICES, False, "both choices"),
    ("A dog barking", "", CHOICES, False, "empty"),
    ("A dog barking", "  ?! ", CHOICES, False, "no word token"),
    ("A dog barking", "A", CHOICES, False, "letter only"),
    ("Rain", "rain", CHOICES, True, "single token"),
    ("Rain", "rai", CHOICES, False, "partial word"),
    ("Rain", "a rain", CHOICES, False, "'a' is a wrong-choice token not in the answer"),
    ("happy, then sad", "sad then happy", ["happy, then sad", "sad, then happy"], True,
     "a choice with the answer's token set is not a wrong choice"),
    ("Jazz", "jazz", ["Jazz", "Jazz fusion"], True, "shared token 'jazz' excluded from wrong tokens"),
    ("Jazz fusion", "jazz", ["Jazz", "Jazz fusion"], False, "'fusion' missing"),
    ("Café", "café", ["Café", "Bar"], True, "Unicode word characters, lower-cased"),
    ("Café", "cafe", ["Café", "Bar"], False, "no accent folding"),
    ("Three", "Ｔｈｒｅｅ", ["Two", "Three"], False, "full-width letters are other tokens"),
    ("don't", "don’t", ["don't", "do"], True, "both split into 'don' + 't'"),
    ("(A) Dog", "Dog", ["Dog", "Cat"], False, "answer not among choices: token 'a' missing"),
    ("B", "(B)", ["A", "B", "C"], True, "letter answers"),
    ("snake_case", "snake_case", ["snake_case", "snake"], True, "underscore is a word character"),
]


@pytest.mark.parametrize("answer,prediction,choices,expected,why", RULE_TABLE)
def test_string_match_rule_table(answer, prediction, choices, expected, why):
    assert mmau_string_match(answer, prediction, choices) is expected, why


def test_string_match_keeps_the_official_name():
    assert mmau.string_match is mmau_string_match


# ----------------------------------------------------------------------------------------------
# The official lines on a hand-made file (expected text derived by hand)
# ----------------------------------------------------------------------------------------------
# hm-00 sound/easy  'Dog barking' <- '<answer>Dog barking</answer>'  right
# hm-01 sound/med.  'Car horn'    <- 'car HORN'                      right
# hm-02 sound/hard  'Rain'        <- 'Rain and thunder'              wrong (thunder)
# hm-03 music/easy  'Jazz'        <- 'Jazz'                          right ('jazz' shared with 'Jazz fusion')
# hm-04 music/med.  'Jazz fusion' <- 'Jazz'                          wrong ('fusion' missing)
# hm-05 music/hard  'B'           <- '(B)'                           right
# hm-06 speech/med. 'happy, then sad' <- 'sad then happy'            right (same token set)
# hm-07 speech/easy 'Neutral'     <- ''                              wrong (empty)
# hm-08 speech/hard 'Three'       <- full-width 'Three'              wrong
# hm-09 no prediction key: skipped everywhere (its sub-category 'Skipped Only' never appears)
# hm-10 sound/med.  'Café ambience' <- 'cafe ambience'               wrong (no accent folding)
# hm-11 music/med.  'Piano' <- 'piano', no sub-category field         right, in no sub-category line
HANDMADE_OFFICIAL = """\
******************************
Task-wise Accuracy:
sound : 50.00% over 4 samples
music : 75.00% over 4 samples
speech : 33.33% over 3 samples
******************************
Difficulty-wise Accuracy:
easy : 66.67% over 3 samples
hard : 33.33% over 3 samples
medium : 60.00% over 5 samples
******************************
Sub-category-wise Accuracy:
Sound Events : 100.00% over 2 samples
Acoustic Scene : 0.00% over 2 samples
Genre : 50.00% over 2 samples
Instrument : 100.00% over 1 samples
Emotion : 50.00% over 2 samples
Counting : 0.00% over 1 samples
******************************
Total Accuracy: 54.55% over 11 samples
******************************
No prediction count: 0
"""


def load_handmade() -> list[dict]:
    return json.loads(HANDMADE.read_text(encoding="utf-8"))


def rekey(records: list[dict], new_key: str) -> list[dict]:
    return [{(new_key if k == "model_output" else k): v for k, v in r.items()} for r in records]


def test_handmade_official_lines_exact():
    report = score_file(HANDMADE)
    assert format_report(report, extra=False) == HANDMADE_OFFICIAL
    assert format_report(report).startswith(HANDMADE_OFFICIAL + "\n")  # extras only after the official lines
    assert [o.correct for o in report.outcomes] == [True, True, False, True, False, True, True, False, False,
                                                    False, True]


def test_handmade_same_lines_under_model_prediction_key():
    report = score_predictions(rekey(load_handmade(), "model_prediction"))
    assert format_report(report, extra=False) == HANDMADE_OFFICIAL
    assert report.keys_used == {"model_prediction": 11}


def test_handmade_extra_block_counts_skips_and_ci():
    text = format_report(score_file(HANDMADE))
    extra = text[len(HANDMADE_OFFICIAL):]
    assert "Scored 11 of 12 records; prediction key: model_output (11)" in extra
    assert "  total : 54.55% [28.01, 78.73] (6/11)" in extra  # Wilson, z = 1.96
    assert "1 record(s) have no prediction key" in extra and "'hm-09'" in extra
    assert "1 record(s) have no sub-category" in extra
    assert "not an MMAU test-mini file" in extra


def test_empty_group_prints_zero_like_official():
    rec = {"id": "x", "question": "q", "choices": ["Yes", "No"], "answer": "Yes", "task": "sound",
           "difficulty": "easy", "sub-category": "S", "model_output": "yes"}
    lines = score_predictions([rec]).official_lines()
    assert "music : 0.00% over 0 samples" in lines
    assert "medium : 0.00% over 0 samples" in lines
    assert "Total Accuracy: 100.00% over 1 samples" in lines


def test_wilson_interval_values():
    assert mmau.wilson_interval(0, 0) is None
    lo, hi = mmau.wilson_interval(645, 1000)
    assert (round(lo, 2), round(hi, 2)) == (61.48, 67.41)
    lo, hi = mmau.wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 2) == 27.75


# ----------------------------------------------------------------------------------------------
# Keys, warnings and errors
# ----------------------------------------------------------------------------------------------
def test_model_prediction_wins_over_differing_model_output_and_report_says_so():
    records = load_handmade()
    for r in records:
        if "model_output" in r:
            r["model_prediction"] = r["model_output"]
    records[7]["model_prediction"] = "Neutral"  # model_output stays '' (wrong): model_prediction is right
    report = score_predictions(records)
    assert report.keys_used == {"model_prediction": 11}
    assert report.total.correct == 7
    codes = {w.code: w.count for w in report.warnings}
    assert codes["both_keys_differ"] == 1
    assert "have both model_prediction and model_output" in format_report(report)
    explicit = score_predictions(records, key="model_output")
    assert format_report(explicit, extra=False) == HANDMADE_OFFICIAL
    assert "both_keys_differ" not in {w.code for w in explicit.warnings}


def test_null_prediction_scored_wrong_and_counted():
    records = load_handmade()
    records[7]["model_output"] = None  # was '' (wrong): official lines must not move
    report = score_predictions(records)
    assert format_report(report, extra=False) == HANDMADE_OFFICIAL
    assert {w.code: w.count for w in report.warnings}["null_prediction"] == 1


def test_capitalised_difficulty_and_task_normalised_with_warning():
    records = load_handmade()
    records[1]["difficulty"] = "Medium"
    records[2]["difficulty"] = "Hard"
    records[3]["task"] = "Music"
    report = score_predictions(records)
    assert format_report(report, extra=False) == HANDMADE_OFFICIAL
    counts = {w.code: w.count for w in report.warnings}
    assert counts["difficulty_spelling"] == 2 and counts["task_spelling"] == 1
    assert "'Medium'" in str(next(w for w in report.warnings if w.code == "difficulty_spelling"))


def test_answer_not_among_choices_is_warned_but_scored_by_the_rule():
    records = load_handmade()
    records[0]["answer"] = "(A) Dog barking"  # prediction '<answer>Dog barking</answer>' lacks token 'a'
    report = score_predictions(records)
    assert {w.code: w.count for w in report.warnings}["answer_not_in_choices"] == 1
    assert report.outcomes[0].correct is False
    assert "sound : 25.00% over 4 samples" in report.official_lines()


def test_duplicate_ids_counted_not_dropped():
    records = load_handmade()
    records.append(dict(records[0]))
    report = score_predictions(records)
    assert report.total.total == 12 and {w.code: w.count for w in report.warnings}["duplicate_id"] == 1


def test_warnings_never_change_official_lines():
    records = load_handmade()
    records[1]["difficulty"] = "Medium"
    records[7]["model_output"] = None
    records[4]["model_prediction"] = "Rock"  # model_output was 'Jazz': wrong either way
    records.append({k: v for k, v in records[0].items() if k != "model_output"})
    report = score_predictions(records)
    assert len(report.warnings) >= 4
    assert format_report(report, extra=False) == HANDMADE_OFFICIAL


@pytest.mark.parametrize("field", ["answer", "task", "difficulty", "choices"])
def test_missing_field_names_record_and_field(field):
    records = load_handmade()
    del records[3][field]
    with pytest.raises(MMAUInputError, match=rf"record 3 \(id 'hm-03'\): missing field '{field}'"):
        score_predictions(records, source="preds.json")


@pytest.mark.parametrize("index,field,value,message", [
    (2, "task", "ambient", r"record 2 \(id 'hm-02'\): unknown task 'ambient'; expected one of sound, music, speech"),
    (2, "difficulty", "expert", r"unknown difficulty 'expert'; expected one of easy, hard, medium"),
    (2, "difficulty", 3, r"field 'difficulty' must be a string, got int"),
    (0, "answer", 7, r"field 'answer' must be a string"),
    (0, "choices", "Dog barking", r"field 'choices' must be a list of strings"),
    (0, "choices", ["Dog", 2], r"field 'choices' must be a list of strings"),
    (0, "model_output", 3, r"prediction 'model_output' must be a string or null, got int"),
    (0, "model_output", ["Dog"], r"must be a string or null, got list"),
    (0, "sub-category", ["a", "b"], r"field 'sub-category' must be a string, got list"),
])
def test_bad_field_values_raise_clear_errors(index, field, value, message):
    records = load_handmade()
    records[index][field] = value
    with pytest.raises(MMAUInputError, match=message):
        score_predictions(records, source="preds.json")


def test_bad_shapes_of_input():
    with pytest.raises(MMAUInputError, match="expected a JSON list of MMAU records, got dict"):
        score_predictions({"a": 1}, source="p.json")
    with pytest.raises(MMAUInputError, match="record 1: expected a JSON object, got str"):
        score_predictions([load_handmade()[0], "oops"], source="p.json")
    no_pred = [{k: v for k, v in r.items() if k != "model_output"} for r in load_handmade()]
    with pytest.raises(MMAUInputError, match="no record has a prediction under model_prediction or model_output"):
        score_predictions(no_pred)
    with pytest.raises(MMAUInputError, match="unknown prediction key 'prediction'"):
        score_predictions(load_handmade(), key="prediction")
    with pytest.raises(MMAUInputError, match="no record has a prediction under model_prediction"):
        score_predictions(load_handmade(), key="model_prediction")


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ('[{"a": 1},\n  {"b": }]', r"invalid JSON at line 2, column 9"),
    ("", r"invalid JSON at line 1, column 1"),
    (b"\xff\xfe[]", "not UTF-8"),
    ("{}", "expected a JSON list"),
])
def test_cli_score_bad_files_one_line_error(tmp_path, capsys, content, message):
    path = tmp_path / "preds.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    assert cli_score([str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err.replace("\\", "")
    assert str(path) in err
    assert cli_mmau_version([str(path)]) == 1


def test_cli_score_directory_and_bad_key(tmp_path, capsys):
    assert cli_score([str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli_score([str(HANDMADE), "--key", "prediction"])
    assert exc.value.code == 2


def test_cli_score_text_json_and_official_only(capsys):
    assert cli_score([str(HANDMADE), "--official-only"]) == 0
    assert capsys.readouterr().out == HANDMADE_OFFICIAL
    assert cli_score([str(HANDMADE)]) == 0
    assert capsys.readouterr().out.startswith(HANDMADE_OFFICIAL + "\nExtra (not printed")
    assert cli_score([str(HANDMADE), "--json", "--key", "model_output"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["official_lines"] == HANDMADE_OFFICIAL.splitlines()
    assert result["total"]["correct"] == 6 and result["total"]["total"] == 11
    assert [round(x, 2) for x in result["total"]["ci95"]] == [28.01, 78.73]
    assert result["task"]["music"]["accuracy"] == 75.0
    assert list(result["sub_category"]) == ["Sound Events", "Acoustic Scene", "Genre", "Instrument", "Emotion",
                                            "Counting"]
    assert result["version"]["kind"] == "not_mmau"
    assert result["skipped_no_prediction"] == 1
    assert {w["code"] for w in result["warnings"]} == {"no_prediction", "no_sub_category"}


def test_python_m_entry_point_and_no_torch_import():
    out = subprocess.run([sys.executable, "-m", "aqa_core", "score", str(HANDMADE), "--official-only"],
                         capture_output=True, text=True, check=True)
    assert out.stdout == HANDMADE_OFFICIAL
    code = "import sys, aqa_core.eval.mmau; assert 'torch' not in sys.modules, 'mmau imports torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------
# Version identification without the shared data
# ----------------------------------------------------------------------------------------------
def test_non_mmau_file_says_so(capsys):
    info = identify_version(load_handmade())
    assert info.kind == "not_mmau" and "not an MMAU test-mini file" in info.message
    assert identify_version([]).kind == "empty"
    assert cli_mmau_version([str(HANDMADE)]) == 0
    assert "not an MMAU test-mini file: 0 of 12" in capsys.readouterr().out


def test_packaged_table_is_compact_and_consistent():
    size = VERSIONS_FILE.stat().st_size
    assert size < 200_000
    table = load_version_table()
    assert len(table["versions"]) >= 16
    assert [v["commit"] for v in table["versions"] if v["name"] == "v05.15.25"] == ["8415fc1"]
    sizes = Counter()
    for mask in table["items_full"].values():
        for bit in range(len(table["versions"])):
            sizes[bit] += mask >> bit & 1
    assert [sizes[b] for b in range(len(table["versions"]))] == [v["n_items"] for v in table["versions"]]


def _tiny_version_file(folder: Path, name: str, records: list[dict], indent) -> Path:
    path = folder / name
    path.write_text(json.dumps(records, indent=indent), encoding="utf-8")
    return path


def test_build_fingerprints_groups_identical_content_under_earliest_commit(tmp_path):
    base = [{"id": f"q{i}", "question": f"Q{i}?", "choices": ["x", "y"], "answer": "x", "task": "sound",
             "difficulty": "easy", "sub-category": "S"} for i in range(5)]
    reordered = [dict(reversed(list(r.items()))) for r in reversed(base)]
    changed = [dict(r) for r in base]
    changed[2]["answer"] = "y"
    files = [_tiny_version_file(tmp_path, "m.20250102_000000.bbbbbbb.json", reordered, None),
             _tiny_version_file(tmp_path, "m.20250101_000000.aaaaaaa.json", base, 4),
             _tiny_version_file(tmp_path, "m.20250103_000000.ccccccc.json", changed, 2)]
    table = build_fingerprints(files)
    assert [v["commit"] for v in table["versions"]] == ["aaaaaaa", "ccccccc"]
    assert table["versions"][0]["published"] == [{"commit": "aaaaaaa", "date": "2025-01-01"},
                                                 {"commit": "bbbbbbb", "date": "2025-01-02"}]
    info = identify_version(reordered, table=table)
    assert info.kind == "exact" and info.commit == "aaaaaaa" and "published again as bbbbbbb" in info.message
    sub = identify_version(changed[2:3], table=table)
    assert sub.kind == "subset" and sub.commit == "ccccccc" and "(1/5 items)" in sub.message
    with pytest.raises(MMAUInputError, match="name should end in"):
        build_fingerprints([_tiny_version_file(tmp_path, "bad.json", base, None)])


# ----------------------------------------------------------------------------------------------
# The real published test-mini files (../shared/data)
# ----------------------------------------------------------------------------------------------
FULLWIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in string.ascii_letters + string.digits})


def _wrong_choice(r: dict) -> str:
    return next((c for c in r["choices"] if c != r["answer"]), "")


def _partial(r: dict) -> str:
    words = r["answer"].split()
    return words[0] if len(words) > 1 else r["answer"][: len(r["answer"]) // 2]


def _letter(r: dict) -> str:
    return string.ascii_uppercase[r["choices"].index(r["answer"])] if r["answer"] in r["choices"] else "A"


SHAPES = {  # name -> (prediction builder, outcome by construction)
    "exact": (lambda i, r: r["answer"], lambda i: True),
    "tagged": (lambda i, r: f"<answer>{r['answer']}</answer>", lambda i: True),
    "lower": (lambda i, r: r["answer"].lower(), lambda i: True),
    "wrong": (lambda i, r: _wrong_choice(r), lambda i: False),
    "letter": (lambda i, r: _letter(r), lambda i: False),
    "both": (lambda i, r: f"{r['answer']} or {_wrong_choice(r)}", lambda i: False),
    "empty": (lambda i, r: "", lambda i: False),
    "punct": (lambda i, r: " ?! ... ", lambda i: False),
    "partial": (lambda i, r: _partial(r), lambda i: False),
    "unicode": (lambda i, r: f"«{r['answer']}» — réponse ✓", lambda i: True),
    "fullwidth": (lambda i, r: r["answer"].translate(FULLWIDTH), lambda i: False),
    "mixed": (lambda i, r: (r["answer"], _wrong_choice(r), "")[i % 3], lambda i: i % 3 == 0),
}
OFFICIAL_CRASHES = {"1c6af99", "78fe032"}  # 'Medium'/'Hard' spellings: KeyError in evaluation.py
VERSION_OF = {"2dcf44d": "f2017e3"}  # same questions, audio_id folder changed: one version


def _history(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "mmau" / "history").glob("*.json"))
    assert len(files) == 17, "expected the 17 published test-mini files"
    return files


def _commit(path: Path) -> str:
    return path.name.split(".")[-2]


def _short_id(i: int, r: dict) -> str:
    return r["id"][:8] if "id" in r else f"#{i}"


def _expected_official(records: list[dict], outcome: list[bool]) -> str:
    """Tallies by hand-known outcomes, in the official order and format (see ../shared/data/README.md)."""
    groups: list[dict] = [{t: [0, 0] for t in ("sound", "music", "speech")},
                          {d: [0, 0] for d in ("easy", "hard", "medium")}, {}]
    for r, ok in zip(records, outcome, strict=True):
        for g, name in zip(groups, (r["task"], r["difficulty"].lower(), r["sub-category"]), strict=True):
            g.setdefault(name, [0, 0])
            g[name][0] += ok
            g[name][1] += 1
    lines = []
    for title, g in zip(("Task", "Difficulty", "Sub-category"), groups, strict=True):
        lines += ["*" * 30, f"{title}-wise Accuracy:"]
        lines += [f"{k} : {(c / n) * 100 if n else 0:.2f}% over {n} samples" for k, (c, n) in g.items()]
    correct = sum(outcome)
    lines += ["*" * 30, f"Total Accuracy: {(correct / len(records)) * 100:.2f}% over {len(records)} samples",
              "*" * 30, "No prediction count: 0"]
    return "\n".join(lines) + "\n"


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("shape", list(SHAPES))
def test_official_lines_on_every_published_version(shared_data, shape):
    build, default = SHAPES[shape]
    for path in _history(shared_data):
        commit = _commit(path)
        records = json.loads(path.read_text(encoding="utf-8"))
        flipped = set(EXCEPTIONS.get(shape, {}).get(commit, []))
        outcome = [default(i) != (_short_id(i, r) in flipped) for i, r in enumerate(records)]
        preds = [dict(r, model_output=build(i, r)) for i, r in enumerate(records)]
        report = score_predictions(preds)
        assert [o.correct for o in report.outcomes] == outcome, (commit, shape)
        assert format_report(report, extra=False) == _expected_official(records, outcome), (commit, shape)
        spelled = {w.code: w.count for w in report.warnings}.get("difficulty_spelling", 0)
        assert spelled == (6 if commit in OFFICIAL_CRASHES else 0)


# Golden text for one version: the 'mixed' shape on a5cd89a (the version in force when R1-AQA was
# published). Tallies: one item in three right, by construction; no exception for this version.
A5CD89A_MIXED_HEAD = """\
******************************
Task-wise Accuracy:
sound : 33.33% over 333 samples
music : 33.53% over 334 samples
speech : 33.33% over 333 samples
******************************
Difficulty-wise Accuracy:
"""


@pytest.mark.shared
def test_official_lines_golden_head_a5cd89a(shared_data):
    path = next(p for p in _history(shared_data) if _commit(p) == "a5cd89a")
    records = json.loads(path.read_text(encoding="utf-8"))
    build, _ = SHAPES["mixed"]
    report = score_predictions([dict(r, model_output=build(i, r)) for i, r in enumerate(records)])
    text = format_report(report, extra=False)
    assert text.startswith(A5CD89A_MIXED_HEAD)
    assert "Total Accuracy: 33.40% over 1000 samples\n" in text
    assert "a5cd89a" in format_report(report)


@pytest.mark.shared
def test_every_published_file_identified(shared_data):
    files = _history(shared_data) + [shared_data / "mmau" / "mmau-test-mini.json"]
    for path in files:
        records = json.loads(path.read_text(encoding="utf-8"))
        commit = "f0a4a97" if path.name == "mmau-test-mini.json" else _commit(path)
        info = identify_version(records)
        assert (info.kind, info.commit) == ("exact", VERSION_OF.get(commit, commit)), path.name
        assert "(1000/1000 items)" in info.message
    names = {identify_version(json.loads(p.read_text(encoding="utf-8"))).name for p in files}
    assert {"first upload", "pre-v05.15.25", "pre-v05.15.25 fix", "v05.15.25 (first)", "v05.15.25",
            "current"} <= names


@pytest.mark.shared
def test_identification_ignores_order_formatting_and_prediction_keys(shared_data, tmp_path, capsys):
    rng = random.Random(0)
    for path in _history(shared_data):
        records = json.loads(path.read_text(encoding="utf-8"))
        rng.shuffle(records)
        copy = []
        for r in records:
            r = dict(reversed(list(r.items())), model_prediction="x", model_output="y", match=1)
            if "audio_id" in r:
                r["audio_id"] = "/home/me/mmau/audios/" + Path(r["audio_id"]).name
            copy.append(r)
        out = tmp_path / f"{_commit(path)}.json"
        out.write_text(json.dumps(copy, ensure_ascii=True), encoding="utf-8")
        assert cli_mmau_version([str(out), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert (info["kind"], info["commit"]) == ("exact", VERSION_OF.get(_commit(path), _commit(path)))


@pytest.mark.shared
def test_subset_modified_and_metadata_variants(shared_data):
    current = json.loads((shared_data / "mmau" / "mmau-test-mini.json").read_text(encoding="utf-8"))
    sub = identify_version(current[:100])
    assert sub.kind == "subset" and sub.commit == "f0a4a97" and "subset of MMAU test-mini current" in sub.message
    assert "(100/1000 items)" in sub.message and len(sub.candidates) > 1
    first = json.loads(next(p for p in _history(shared_data) if _commit(p) == "6674fa1").read_text(encoding="utf-8"))
    only_first = [r for r in first if r["answer"] not in r["choices"]]  # unique to 6674fa1 and its fixes
    info = identify_version(only_first)
    assert info.kind == "subset" and "(147/1000 items)" in info.message and info.commit in {"6674fa1"}
    no_split = [{k: v for k, v in r.items() if k != "split"} for r in current]
    meta = identify_version(no_split)
    assert meta.kind == "metadata_differs" and meta.commit == "f0a4a97" and "differ in 1000 items" in meta.message
    edited = [dict(r, question=r["question"] + " (edited)") if i < 300 else r for i, r in enumerate(current)]
    mod = identify_version(edited)
    assert mod.kind == "modified" and mod.commit == "f0a4a97" and "700 of 1000" in mod.message
    mixed_in = edited[:100] + load_handmade()
    assert identify_version(mixed_in).kind == "not_mmau"


@pytest.mark.shared
def test_score_prints_version(shared_data):
    current = json.loads((shared_data / "mmau" / "mmau-test-mini.json").read_text(encoding="utf-8"))
    report = score_predictions([dict(r, model_prediction=r["answer"]) for r in current[:10]])
    assert "MMAU version: subset of MMAU test-mini current [f0a4a97, 2025-08-09] (10/1000 items)" \
        in format_report(report)
    assert report.to_dict()["version"]["commit"] == "f0a4a97"


@pytest.mark.shared
def test_packaged_table_matches_history(shared_data):
    rebuilt = build_fingerprints(_history(shared_data))
    assert rebuilt == load_version_table(), "run scripts/mmau_fingerprints.py to regenerate the table"
