"""Question loaders: AVQA in the R1-AQA JSONL form (training) and MMAU-schema JSON (testing).

Both return the canonical question record the prompts, trainers and evaluator consume: the
source fields, plus `id` (str), `question`, `choices`, `answer` (the choice text) and
`audio_path` (a resolved wav path). Problems are reported at this edge, naming the file, the
line or record and what was expected.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .files import atomic_writer, input_it_would_overwrite
from .prompts import avqa_question

log = logging.getLogger(__name__)

AVQA_FIELDS = ("question_text", "multi_choice", "answer", "audio_path")
MMAU_FIELDS = ("id", "audio_id", "question", "choices", "answer", "task", "difficulty")
TASKS = ("sound", "music", "speech")  # MMAU's three tasks, in the order the official scorer prints them


class DataError(ValueError):
    """Bad input data: the message names the file, the record and what was expected."""


class MissingAudioWarning(UserWarning):
    """Some questions were skipped because their wav is missing."""


def _resolve(audio_path: str, audio_dir: Path | None, base: Path) -> Path:
    p = Path(audio_path)
    if audio_dir is not None:
        cand = audio_dir / p.name if not (audio_dir / p).exists() else audio_dir / p
        return cand
    return p if p.is_absolute() else base / p


def _check_choice_record(where: str, choices: Any, answer_index: Any) -> None:
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise DataError(f"{where}: 'multi_choice' must be a non-empty list of strings, got {choices!r}")
    if isinstance(answer_index, bool) or not isinstance(answer_index, int):
        raise DataError(f"{where}: 'answer' must be a 0-based int index into multi_choice, got {answer_index!r}")
    if not 0 <= answer_index < len(choices):
        raise DataError(f"{where}: 'answer' index {answer_index} out of range for {len(choices)} choices")


def _check_text(where: str, key: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {key!r} must be a non-empty string, got {value!r}")


def load_avqa_jsonl(
    path: str | Path, audio_dir: str | Path | None = None, on_missing: str = "warn"
) -> list[dict]:
    """Load R1-AQA JSONL (`question_text`, `multi_choice`, 0-based `answer`, `audio_path`).

    `audio_path` may be a basename resolved against `audio_dir`, or a path (relative ones are
    resolved against the JSONL's folder). Questions whose wav is missing are skipped and
    counted in one `MissingAudioWarning` (the official run lost ~2k of ~40k items this way);
    `on_missing="error"` raises instead, `"keep"` keeps them unchecked.
    """
    path = Path(path)
    if on_missing not in {"warn", "error", "keep"}:
        raise ValueError(f"on_missing must be 'warn', 'error' or 'keep', got {on_missing!r}")
    if not path.is_file():
        raise DataError(f"{path}: AVQA JSONL file not found")
    adir = Path(audio_dir) if audio_dir is not None else None
    records, missing = [], []
    for lineno, raw in iter_jsonl(path):
        where = f"{path}:{lineno}"
        absent = [f for f in AVQA_FIELDS if f not in raw]
        if absent:
            raise DataError(f"{where}: missing field(s) {absent}; expected {list(AVQA_FIELDS)}")
        _check_choice_record(where, raw["multi_choice"], raw["answer"])
        _check_text(where, "question_text", raw["question_text"])
        _check_text(where, "audio_path", raw["audio_path"])
        wav = _resolve(str(raw["audio_path"]), adir, path.parent)
        if on_missing != "keep" and not wav.is_file():
            if on_missing == "error":
                raise DataError(f"{where}: audio file not found: {wav}")
            missing.append(str(raw.get("id", lineno)))
            continue
        rec = dict(raw)
        rec.update(
            id=str(raw.get("id", lineno)),
            question=avqa_question(raw["question_text"]),
            choices=list(raw["multi_choice"]),
            answer=raw["multi_choice"][raw["answer"]],
            audio_path=str(wav),
        )
        records.append(rec)
    if missing:
        warnings.warn(
            f"{path}: skipped {len(missing)} question(s) whose wav is missing "
            f"(first ids: {', '.join(missing[:5])})",
            MissingAudioWarning,
            stacklevel=2,
        )
    return records


def iter_jsonl(path: str | Path):
    """`(line number, object)` for each non-blank line of a JSONL file; a line that is not a JSON
    object is a `DataError` naming the file and line."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def load_mmau(path: str | Path, audio_dir: str | Path | None = None, check_audio: bool = False) -> list[dict]:
    """Load an MMAU-schema question (or predictions) JSON list.

    `audio_dir` is the folder that `audio_id` (e.g. `./test-mini-audios/<id>.wav`) is relative to,
    as in the official evaluation; it defaults to the JSON's folder. With `check_audio`, a missing
    wav is an error listing how many and the first few ids.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: MMAU JSON file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a JSON list of question records, got {type(raw).__name__}")
    adir = Path(audio_dir) if audio_dir is not None else path.parent
    records, missing = [], []
    for i, item in enumerate(raw):
        where = f"{path}: record {i}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object, got {type(item).__name__}")
        absent = [f for f in MMAU_FIELDS if f not in item]
        if absent:
            raise DataError(f"{where} (id {item.get('id', '?')}): missing field(s) {absent}; "
                            f"expected {list(MMAU_FIELDS)}")
        if not isinstance(item["choices"], list) or not item["choices"]:
            raise DataError(f"{where} (id {item['id']}): 'choices' must be a non-empty list")
        _check_text(f"{where} (id {item['id']})", "question", item["question"])
        _check_text(f"{where} (id {item['id']})", "audio_id", item["audio_id"])
        wav = adir / item["audio_id"]
        if check_audio and not wav.is_file():
            missing.append(str(item["id"]))
        rec = dict(item)
        rec.update(id=str(item["id"]), choices=[str(c) for c in item["choices"]], audio_path=str(wav))
        records.append(rec)
    if missing:
        raise DataError(
            f"{path}: {len(missing)} of {len(raw)} wav file(s) missing under {adir} "
            f"(first ids: {', '.join(missing[:5])})"
        )
    return records


def load_questions(path: str | Path, audio_dir: str | Path | None = None, *, limit: int | None = None,
                   on_missing: str = "warn", check_audio: bool = False,
                   window_seconds: float | None = None) -> list[dict]:
    """Training or evaluation questions as canonical records, by file type: `.jsonl` in the
    R1-AQA AVQA form (`load_avqa_jsonl`), `.json` in the MMAU schema (`load_mmau`). The one
    loader the GRPO and SFT runners and the evaluator share.

    `on_missing` applies to the AVQA form (see `load_avqa_jsonl`); in an MMAU file a missing wav
    is an error unless `on_missing="keep"`. `limit` keeps the first N questions. `check_audio`
    runs the one audio check on every wav before any model work (`aqa_core.audio.check_audio_files`,
    clips longer than `window_seconds` counted in a warning): an unusable wav is a `DataError`
    naming how many and the first few. No usable question is an error.
    """
    from .audio import check_audio_files

    path = Path(path)
    if path.suffix == ".jsonl":
        records = load_avqa_jsonl(path, audio_dir=audio_dir, on_missing=on_missing)
    elif path.suffix == ".json":
        records = load_mmau(path, audio_dir=audio_dir, check_audio=on_missing != "keep")
    else:
        raise DataError(f"{path}: expected a .jsonl (R1-AQA AVQA form) or .json (MMAU schema) question file")
    if limit is not None:
        records = records[:limit]
    if check_audio:
        problems = check_audio_files([r["audio_path"] for r in records], window_seconds=window_seconds)
        if problems:
            first = "; ".join(f"{p}: {why}" for p, why in problems[:3])
            raise DataError(f"{path}: {len(problems)} unusable wav(s) (first: {first})")
    if not records:
        raise DataError(f"{path}: no usable questions")
    return records


def avqa_wav_name(video_name: str) -> str:
    """`<youtube id>_<start zero-padded to 6>` -> `<youtube id>_<start, no padding>.wav`.

    >>> avqa_wav_name("-HG3Omg_89c_000030")
    '-HG3Omg_89c_30.wav'
    """
    stem, _, start = video_name.rpartition("_")
    if not stem or not start.isdigit():
        raise DataError(f"AVQA video_name {video_name!r} is not '<youtube id>_<start seconds>'")
    return f"{stem}_{int(start)}.wav"


def convert_avqa(
    questions: str | Path, audio_dir: str | Path, out: str | Path, on_missing: str = "warn"
) -> dict[str, int]:
    """Official AVQA question JSON (a list of records) + a wav folder -> R1-AQA JSONL.

    Keeps the official fields, adds `dataset_name: "AVQA"` and `audio_path` (the wav basename,
    resolved against `audio_dir` when loading). Questions without a wav are counted and skipped
    with a warning, or fail with `on_missing="error"`; so are those whose wav fails the one audio
    check (`aqa_core.audio.check_audio_files`: unreadable, empty, too short, silent). The output is
    written whole or not at all, never over the input. Returns the counts.
    """
    questions, audio_dir, out = Path(questions), Path(audio_dir), Path(out)
    if not questions.is_file():
        raise DataError(f"{questions}: AVQA question JSON not found")
    try:
        items = json.loads(questions.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{questions}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(items, list):
        raise DataError(f"{questions}: expected a JSON list of AVQA question records")
    clash = input_it_would_overwrite(out, questions)
    if clash is not None:
        raise DataError(f"{out}: --out is the input question file; choose another path "
                        "(the input is never overwritten)")
    from .audio import check_audio_files

    kept, missing = [], []
    for i, item in enumerate(items):
        where = f"{questions}: record {i} (id {item.get('id', '?') if isinstance(item, dict) else '?'})"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object")
        absent = [f for f in ("video_name", "question_text", "multi_choice", "answer") if f not in item]
        if absent:
            raise DataError(f"{where}: missing field(s) {absent}")
        _check_choice_record(where, item["multi_choice"], item["answer"])
        wav_name = avqa_wav_name(str(item["video_name"]))
        if not (audio_dir / wav_name).is_file():
            if on_missing == "error":
                raise DataError(f"{where}: audio file not found: {audio_dir / wav_name}")
            missing.append(str(item.get("id", i)))
            continue
        kept.append((where, item, wav_name))
    # the one audio check (aqa_core.audio), on every wav before anything is written
    bad = dict(check_audio_files([audio_dir / w for _, _, w in kept]))
    unusable = [(where, str(audio_dir / w)) for where, _, w in kept if str(audio_dir / w) in bad]
    if unusable and on_missing == "error":
        where, wav = unusable[0]
        raise DataError(f"{where}: {wav}: {bad[wav]} ({len(unusable)} unusable wav(s) in all)")
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(out) as fh:  # on an error no partial JSONL is left, and an existing --out is untouched
        for _where, item, wav_name in kept:
            if str(audio_dir / wav_name) in bad:
                continue
            rec = dict(item)
            rec.setdefault("dataset_name", "AVQA")
            rec["audio_path"] = wav_name
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            written += 1
    if missing:
        warnings.warn(
            f"{questions}: skipped {len(missing)} of {len(items)} question(s) with no wav in {audio_dir} "
            f"(first ids: {', '.join(missing[:5])})",
            MissingAudioWarning,
            stacklevel=2,
        )
    if unusable:
        first = "; ".join(f"{wav}: {bad[wav]}" for _, wav in unusable[:3])
        warnings.warn(f"{questions}: skipped {len(unusable)} of {len(items)} question(s) whose wav is unusable "
                      f"(first: {first})", MissingAudioWarning, stacklevel=2)
    return {"questions": len(items), "written": written, "missing_audio": len(missing), "unusable_audio": len(unusable)}


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """One JSON object a line, keys in insertion order, UTF-8; written whole or not at all."""
    with atomic_writer(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aqa_core avqa-convert", description=convert_avqa.__doc__)
    ap.add_argument("questions", help="official AVQA question JSON (a list of records)")
    ap.add_argument("--audio-dir", required=True, help="folder of <youtube id>_<start>.wav files")
    ap.add_argument("--out", required=True, help="R1-AQA JSONL to write")
    ap.add_argument("--strict", action="store_true",
                    help="fail on a missing or unusable wav instead of skipping it (counted, with a warning)")
    args = ap.parse_args(argv)
    try:
        counts = convert_avqa(args.questions, args.audio_dir, args.out, on_missing="error" if args.strict else "warn")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {counts['written']} of {counts['questions']} questions to {args.out} "
          f"({counts['missing_audio']} skipped: no wav; {counts['unusable_audio']} skipped: unusable wav)")
    return 0
