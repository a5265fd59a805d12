"""MMAU test-mini scoring exactly as the official `evaluation.py`, and which test-mini version a file is.

The official scorer (github.com/Sakshi113/MMAU, `evaluation.py`) prints task-wise, difficulty-wise,
sub-category-wise and total accuracy. `score_predictions` reproduces those lines byte for byte and adds
what the official script leaves out: a 95% Wilson interval per accuracy, the MMAU version the
questions come from (scores across versions are not comparable), and clear errors or counted warnings
where the official script crashes or silently skips. A warning never changes an official line.

>>> mmau_string_match("A dog barking", "<answer>a dog barking</answer>", ["A dog barking", "A cat"])
True
>>> mmau_string_match("A dog barking", "dog or cat", ["A dog barking", "A cat"])
False

Command line: `python -m aqa_core score PRED.json [--json] [--key model_prediction|model_output]`.
Which version a file is, and reading MMAU files: `aqa_core.eval.mmau_versions`.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import TASKS
from .mmau_versions import MMAUInputError, VersionInfo, identify_version, read_json

DIFFICULTIES = ("easy", "hard", "medium")  # the official print order
PREDICTION_KEYS = ("model_prediction", "model_output")  # first wins when both are present
REQUIRED_FIELDS = ("answer", "task", "difficulty", "choices")
STARS = "*" * 30
Z95 = 1.959963984540054  # two-sided 95% normal quantile


# --------------------------------------------------------------------------------------------------
# The official rule
# --------------------------------------------------------------------------------------------------
_WORD_RE = re.compile(r"\b\w+\b")


def _tokenize(text: str) -> set[str]:
    # Official: set(re.findall(r'\b\w+\b', text.lower()))
    return set(_WORD_RE.findall(text.lower()))


def mmau_string_match(answer: str, prediction: str, choices: Sequence[str]) -> bool:
    """The official MMAU `string_match`: every answer token is predicted and no wrong-choice token is.

    Mirrors `string_match` of MMAU's `evaluation.py` line by line. That file is not in the code index
    used to write this module; the rule was taken from the MMAU README plus verbatim copies of
    `string_match`/the scoring loop in public ports (a SALMONN `official_mmau_evaluation`, the MMAR
    `evaluation.py` by the same authors), which agree character for character.
    Tokens are lower-cased `\\b\\w+\\b` words (Unicode-aware); tokens shared with the answer never
    count against a prediction, and a choice whose token set equals the answer's is not a wrong
    choice (given the subtraction below that test changes nothing; it is kept to mirror the official
    code). A prediction without any token is wrong.
    """
    prediction_tokens = _tokenize(prediction)
    answer_tokens = _tokenize(answer)
    if not prediction_tokens:
        return False
    incorrect_tokens: set[str] = set()
    for choice in choices:
        choice_tokens = _tokenize(choice)
        if choice_tokens != answer_tokens:
            incorrect_tokens.update(choice_tokens - answer_tokens)
    cond1 = answer_tokens.issubset(prediction_tokens)
    cond2 = prediction_tokens.isdisjoint(incorrect_tokens)
    return cond1 and cond2


string_match = mmau_string_match  # the official name


# --------------------------------------------------------------------------------------------------
# Report types
# --------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Correct and total counts of one group; accuracy in percent as the official computes it."""

    correct: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float:
        # Official: (n_correct / n_total) * 100 if n_total > 0 else 0 -- same expression, same rounding.
        return (self.correct / self.total) * 100 if self.total > 0 else 0

    def ci95(self) -> tuple[float, float] | None:
        """Wilson score interval in percent, or None for an empty group."""
        return wilson_interval(self.correct, self.total)

    def to_dict(self) -> dict[str, Any]:
        ci = self.ci95()
        return {"correct": self.correct, "total": self.total, "accuracy": float(self.accuracy),
                "ci95": list(ci) if ci else None}


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval for a proportion, in percent.

    >>> [round(x, 2) for x in wilson_interval(645, 1000)]
    [61.48, 67.41]
    """
    if total <= 0:
        return None
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (100 * max(0.0, centre - half), 100 * min(1.0, centre + half))


@dataclass
class ScoreWarning:
    """A counted problem that did not stop scoring (and changed no official line)."""

    code: str
    count: int
    message: str
    examples: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        shown = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"{self.count} record(s) {self.message}{shown}"


@dataclass
class ItemOutcome:
    index: int  # position in the input list
    id: str | None
    correct: bool


@dataclass
class ScoreReport:
    """Everything `format_report` prints; `official_lines()` are the official script's lines."""

    tasks: dict[str, Tally]
    difficulties: dict[str, Tally]
    sub_categories: dict[str, Tally]
    total: Tally
    version: VersionInfo
    keys_used: dict[str, int]
    n_records: int
    n_skipped: int
    warnings: list[ScoreWarning]
    outcomes: list[ItemOutcome]
    source: str | None = None

    def official_lines(self) -> list[str]:
        """The lines the official evaluation.py prints to stdout, in its order and format."""
        lines = [STARS, "Task-wise Accuracy:"]
        lines += [_official_line(name, t) for name, t in self.tasks.items()]
        lines += [STARS, "Difficulty-wise Accuracy:"]
        lines += [_official_line(name, t) for name, t in self.difficulties.items()]
        lines += [STARS, "Sub-category-wise Accuracy:"]
        lines += [_official_line(name, t) for name, t in self.sub_categories.items()]
        corr, total = self.total.correct, self.total.total  # official: no `if total > 0` guard here
        lines += [STARS, f"Total Accuracy: {(corr / total) * 100:.2f}% over {total} samples"]
        # The official counter is only incremented in a branch that cannot run (it skips first), so it
        # always prints 0; records without a prediction are reported in the extra block instead.
        lines += [STARS, "No prediction count: 0"]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "version": asdict(self.version),
            "records": self.n_records,
            "scored": self.total.total,
            "skipped_no_prediction": self.n_skipped,
            "prediction_keys": dict(self.keys_used),
            "total": self.total.to_dict(),
            "task": {k: t.to_dict() for k, t in self.tasks.items()},
            "difficulty": {k: t.to_dict() for k, t in self.difficulties.items()},
            "sub_category": {str(k): t.to_dict() for k, t in self.sub_categories.items()},
            "warnings": [asdict(w) for w in self.warnings],
            "official_lines": self.official_lines(),
        }


def _official_line(name: Any, tally: Tally) -> str:
    return f"{name} : {tally.accuracy:.2f}% over {tally.total} samples"


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------
class _Warnings:
    """Counts warnings by code, keeping a few examples of each."""

    def __init__(self) -> None:
        self._items: dict[str, ScoreWarning] = {}

    def add(self, code: str, message: str, example: str) -> None:
        w = self._items.setdefault(code, ScoreWarning(code, 0, message))
        w.count += 1
        if len(w.examples) < 3:
            w.examples.append(example)

    def as_list(self) -> list[ScoreWarning]:
        return list(self._items.values())


def _record_name(index: int, record: dict) -> str:
    rid = record.get("id")
    return f"record {index} (id {rid!r})" if rid is not None else f"record {index}"


def _normalised_label(value: Any, valid: Sequence[str], what: str, where: str, name: str,
                      warnings: _Warnings) -> str:
    if not isinstance(value, str):
        raise MMAUInputError(f"{where}: field '{what}' must be a string, got {type(value).__name__} {value!r}")
    if value in valid:
        return value
    fixed = value.strip().lower()
    if fixed in valid:
        warnings.add(f"{what}_spelling", f"spell '{what}' other than in lower case (such as 'Medium'); "
                     "normalised to lower case (the official evaluation.py raises KeyError on them)",
                     f"{name}: {value!r}")
        return fixed
    raise MMAUInputError(f"{where}: unknown {what} {value!r}; expected one of {', '.join(valid)} "
                         "(the official evaluation.py raises KeyError here)")


def score_predictions(records: Any, key: str | None = None, source: str | None = None) -> ScoreReport:
    """Score MMAU predictions as the official evaluation.py does.

    `records`: the MMAU question list with a prediction per record under `key`, or, when `key` is None,
    under `model_prediction` (the MMAU/R1-AQA README's key) else `model_output` (the key the official
    script reads). Records without a prediction are skipped as the official script does, and counted.
    `source` names the file in error messages. Raises `MMAUInputError` where the official script
    would crash (missing fields, unknown task, non-string text) or when nothing can be scored.
    A null prediction is scored wrong (an empty prediction is wrong by the rule) and counted.
    """
    where_file = source or "predictions"
    if key is not None and key not in PREDICTION_KEYS:
        raise MMAUInputError(f"unknown prediction key {key!r}; expected one of {', '.join(PREDICTION_KEYS)}")
    if not isinstance(records, list):
        raise MMAUInputError(f"{where_file}: expected a JSON list of MMAU records, got {type(records).__name__}")
    keys = (key,) if key else PREDICTION_KEYS
    warnings = _Warnings()
    tasks = {t: Tally() for t in TASKS}
    diffs = {d: Tally() for d in DIFFICULTIES}
    subcats: dict[Any, Tally] = {}
    total = Tally()
    keys_used: dict[str, int] = {}
    outcomes: list[ItemOutcome] = []
    seen_ids: set[Any] = set()
    skipped = 0
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise MMAUInputError(f"{where_file}: record {index}: expected a JSON object, got {type(record).__name__}")
        name = _record_name(index, record)
        where = f"{where_file}: {name}"
        used = next((k for k in keys if k in record), None)
        if used is None:  # official: `if output_key not in sample: continue`
            skipped += 1
            warnings.add("no_prediction", f"have no prediction key ({' or '.join(keys)}); skipped and "
                         "left out of every line, as the official evaluation.py does", name)
            continue
        if key is None and used == PREDICTION_KEYS[0] and PREDICTION_KEYS[1] in record \
                and record[PREDICTION_KEYS[1]] != record[used]:
            warnings.add("both_keys_differ", "have both model_prediction and model_output, with different "
                         "values; model_prediction was scored", name)
        keys_used[used] = keys_used.get(used, 0) + 1
        missing = [f for f in REQUIRED_FIELDS if f not in record]
        if missing:
            raise MMAUInputError(f"{where}: missing field {missing[0]!r} (MMAU records need "
                                 f"{', '.join(REQUIRED_FIELDS)}; the official evaluation.py raises KeyError)")
        answer, choices, prediction = record["answer"], record["choices"], record[used]
        if not isinstance(answer, str):
            raise MMAUInputError(f"{where}: field 'answer' must be a string, got {type(answer).__name__}")
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise MMAUInputError(f"{where}: field 'choices' must be a list of strings, got {choices!r:.80}")
        if prediction is not None and not isinstance(prediction, str):
            raise MMAUInputError(f"{where}: prediction {used!r} must be a string or null, got "
                                 f"{type(prediction).__name__} (the official evaluation.py crashes on it)")
        task = _normalised_label(record["task"], TASKS, "task", where, name, warnings)
        difficulty = _normalised_label(record["difficulty"], DIFFICULTIES, "difficulty", where, name, warnings)
        subcat = record.get("sub-category", None)
        if subcat is None:
            warnings.add("no_sub_category", "have no sub-category; they count in the task, difficulty and "
                         "total lines only, as in the official evaluation.py", name)
        elif isinstance(subcat, (list, dict)):
            raise MMAUInputError(f"{where}: field 'sub-category' must be a string, got {type(subcat).__name__}")
        elif subcat not in subcats:
            subcats[subcat] = Tally()
        if answer not in choices:
            warnings.add("answer_not_in_choices", "have an answer that is not among their choices; "
                         "scored by the rule all the same", name)
        if "id" in record:
            rid = record["id"]
            if isinstance(rid, (str, int)) and rid in seen_ids:
                warnings.add("duplicate_id", "repeat an earlier id; each copy is scored, as the official "
                             "evaluation.py does", name)
            elif isinstance(rid, (str, int)):
                seen_ids.add(rid)
        if prediction is None:
            warnings.add("null_prediction", "have a null prediction; scored wrong like an empty prediction "
                         "(the official evaluation.py raises AttributeError)", name)
            correct = False
        else:
            correct = mmau_string_match(answer, prediction, choices)
        for tally in (tasks[task], diffs[difficulty], total, subcats.get(subcat) if subcat is not None else None):
            if tally is not None:
                tally.total += 1
                tally.correct += int(correct)
        rid = record.get("id")
        outcomes.append(ItemOutcome(index, rid if isinstance(rid, str) else None, correct))
    if total.total == 0:
        raise MMAUInputError(f"{where_file}: no record has a prediction under {' or '.join(keys)} "
                             f"({len(records)} records); nothing to score")
    return ScoreReport(tasks=tasks, difficulties=diffs, sub_categories=subcats, total=total,
                       version=identify_version(records), keys_used=keys_used, n_records=len(records),
                       n_skipped=skipped, warnings=warnings.as_list(), outcomes=outcomes, source=source)


def format_report(report: ScoreReport, extra: bool = True) -> str:
    """The official lines, byte-identical; then (unless `extra=False`) a block with what they omit."""
    lines = report.official_lines()
    if extra:
        lines += ["", "Extra (not printed by the official evaluation.py):",
                  f"MMAU version: {report.version}" + (" -- scores on different test-mini versions are not "
                                                       "comparable" if report.version.label else "")]
        keys = ", ".join(f"{k} ({n})" for k, n in report.keys_used.items())
        lines.append(f"Scored {report.total.total} of {report.n_records} records; prediction key: {keys}")
        lines.append("95% Wilson confidence intervals:")
        groups = [("task", report.tasks), ("difficulty", report.difficulties), ("sub-category", report.sub_categories)]
        for kind, tallies in groups:
            lines += [_ci_line(f"{kind} {name}", t) for name, t in tallies.items()]
        lines.append(_ci_line("total", report.total))
        if report.warnings:
            lines.append("Warnings (none changes an official line):")
            lines += [f"  - {w}" for w in report.warnings]
        else:
            lines.append("Warnings: none")
    return "\n".join(lines) + "\n"


def _ci_line(name: str, tally: Tally) -> str:
    ci = tally.ci95()
    span = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "[n/a]"
    return f"  {name} : {tally.accuracy:.2f}% {span} ({tally.correct}/{tally.total})"


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------
def score_file(path: str | Path, key: str | None = None) -> ScoreReport:
    """`score_predictions` on a JSON file (the MMAU question list with predictions added)."""
    return score_predictions(read_json(path), key=key, source=str(path))


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def cli_score(argv: list[str]) -> int:
    """`python -m aqa_core score PRED.json [--json] [--key K]`."""
    parser = argparse.ArgumentParser(prog="python -m aqa_core score",
                                     description="Score MMAU predictions exactly as the official evaluation.py.")
    parser.add_argument("predictions", help="MMAU test-mini JSON list with a prediction per record")
    parser.add_argument("--key", choices=PREDICTION_KEYS, default=None,
                        help="prediction key (default: model_prediction, else model_output, per record)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON result instead")
    parser.add_argument("--official-only", action="store_true",
                        help="print only the official lines (for diffing against evaluation.py)")
    args = parser.parse_args(argv)
    try:
        report = score_file(args.predictions, key=args.key)
    except MMAUInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(format_report(report, extra=not args.official_only))
    return 0


def cli(argv: list[str]) -> int:
    """Default entry: scoring."""
    return cli_score(argv)
