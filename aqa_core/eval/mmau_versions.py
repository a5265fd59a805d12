"""Which published MMAU test-mini version a file's questions come from (scores across versions
are not comparable: later versions revised about a quarter of the questions and answers).

Every published version's items are fingerprinted in `mmau_versions.json` (made by
`scripts/mmau_fingerprints.py` from the files in ../shared/data); `identify_version(records)`
names the version whose items a file's records match, or says how they differ. `read_json` and
`MMAUInputError` read an MMAU file with errors that name it (the scorer, `aqa_core.eval.mmau`,
uses them too).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

VERSIONS_FILE = Path(__file__).with_name("mmau_versions.json")


class MMAUInputError(ValueError):
    """A predictions or question file the scorer cannot read; the message names file, record, field."""


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; errors name the file and, for bad JSON, the line and column."""
    path = Path(path)
    if not path.exists():
        raise MMAUInputError(f"{path}: no such file")
    if path.is_dir():
        raise MMAUInputError(f"{path}: is a directory, expected a JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise MMAUInputError(f"{path}: not UTF-8 text (byte {err.start})") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MMAUInputError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err


@dataclass
class VersionInfo:
    """Which published MMAU test-mini version a file's questions are (see `identify_version`)."""

    kind: str  # exact | subset | metadata_differs | modified | not_mmau | empty
    message: str
    label: str | None = None  # e.g. "v05.15.25 [8415fc1, 2025-05-24]"
    commit: str | None = None
    date: str | None = None
    name: str | None = None
    matched: int = 0  # distinct input items found in that version
    n_records: int = 0  # records in the input
    version_items: int | None = None  # items in that version (1000)
    candidates: list[str] = field(default_factory=list)  # every version the items are consistent with

    def __str__(self) -> str:
        return self.message


# Fields of an MMAU test-mini record. A record's fingerprint uses those it has (other keys, such as
# predictions, are ignored); `audio_id` counts by file name only, since tools rewrite the folder.
FULL_FIELDS = ("id", "audio_id", "question", "choices", "answer", "dataset", "task", "split",
               "category", "sub-category", "difficulty")
CORE_FIELDS = ("question", "choices", "answer")
HASH_CHARS = 12  # 48 bits: no collision among the ~6k published items, none by chance for a foreign item

# Names of published versions, from ../shared/data/README.md (commit -> (name, note)).
VERSION_NAMES: dict[str, tuple[str, str]] = {
    "1c6af99": ("first upload", "no 'id' field; 'Medium'/'Hard' spellings crash the official scorer"),
    "a8d61f7": ("pre-v05.15.25", ""),
    "a5cd89a": ("pre-v05.15.25", "in force when R1-AQA was published (2025-03-14)"),
    "1f675a9": ("pre-v05.15.25 fix", "one answer changed vs a5cd89a"),
    "6674fa1": ("v05.15.25 (first)", "~25% of Q&A revised; 147 answers not among choices"),
    "8415fc1": ("v05.15.25", "fixed"),
    "f0a4a97": ("current", "= mmau-test-mini.json of 2025-08-09"),
}
_FILE_RE = re.compile(r"(\d{8})_(\d{6})\.([0-9a-f]{7,40})\.json$")


def item_fingerprint(record: dict, fields: Sequence[str] = FULL_FIELDS) -> str:
    """Hash of a record's MMAU content, independent of key order, formatting and extra keys."""
    obj = {k: record[k] for k in fields if k in record}
    if isinstance(obj.get("audio_id"), str):
        obj["audio_id"] = re.split(r"[\\/]", obj["audio_id"])[-1]
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def content_fingerprint(item_hashes: Iterable[str]) -> str:
    """Hash of a whole version: its set of item fingerprints (record order does not matter)."""
    return hashlib.sha256("\n".join(sorted(set(item_hashes))).encode()).hexdigest()[:16]


def build_fingerprints(files: Sequence[str | Path]) -> dict[str, Any]:
    """The version table stored in aqa_core/eval/mmau_versions.json, from published test-mini files.

    Files are named `...<YYYYMMDD>_<HHMMSS>.<commit>.json`. Files with the same content (same set of
    item fingerprints) form one version, labelled by the earliest commit and its date.
    """
    published = []
    for f in files:
        m = _FILE_RE.search(Path(f).name)
        if not m:
            raise MMAUInputError(f"{f}: name should end in <YYYYMMDD>_<HHMMSS>.<commit>.json")
        day, time, commit = m.groups()
        records = read_json(f)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise MMAUInputError(f"{f}: expected a JSON list of MMAU records")
        full = [item_fingerprint(r) for r in records]
        published.append((day + time, commit[:7], f"{day[:4]}-{day[4:6]}-{day[6:]}", records, full))
    published.sort(key=lambda p: p[0])
    versions: list[dict[str, Any]] = []
    by_content: dict[str, dict[str, Any]] = {}
    for _, commit, date, records, full in published:
        chash = content_fingerprint(full)
        if chash in by_content:
            by_content[chash]["published"].append({"commit": commit, "date": date})
            continue
        name, note = VERSION_NAMES.get(commit, (None, ""))
        difficulty: dict[str, int] = {}
        for r in records:
            difficulty[str(r.get("difficulty"))] = difficulty.get(str(r.get("difficulty")), 0) + 1
        v = {"commit": commit, "date": date, "name": name, "note": note, "n_items": len(set(full)),
             "content_hash": chash, "difficulty": difficulty, "published": [{"commit": commit, "date": date}],
             "_full": set(full), "_core": {item_fingerprint(r, CORE_FIELDS) for r in records}}
        by_content[chash] = v
        versions.append(v)
    table: dict[str, Any] = {"format": 1, "hash": f"sha256 of canonical JSON, first {HASH_CHARS} hex",
                             "full_fields": list(FULL_FIELDS), "core_fields": list(CORE_FIELDS),
                             "versions": [], "items_full": {}, "items_core": {}}
    for bit, v in enumerate(versions):
        for kind in ("full", "core"):
            for h in v[f"_{kind}"]:
                table[f"items_{kind}"][h] = table[f"items_{kind}"].get(h, 0) | (1 << bit)
        table["versions"].append({k: val for k, val in v.items() if not k.startswith("_")})
    for kind in ("items_full", "items_core"):
        table[kind] = dict(sorted(table[kind].items()))
    return table


@lru_cache(maxsize=1)
def load_version_table(path: str | None = None) -> dict[str, Any]:
    """The packaged fingerprint table (regenerate with scripts/mmau_fingerprints.py)."""
    return json.loads(Path(path or VERSIONS_FILE).read_text(encoding="utf-8"))


def version_label(v: dict[str, Any]) -> str:
    """'v05.15.25 [8415fc1, 2025-05-24]', or 'unnamed revision [77fbb89, 2025-05-18]'."""
    return f"{v.get('name') or 'unnamed revision'} [{v['commit']}, {v['date']}]"


def identify_version(records: Any, table: dict[str, Any] | None = None) -> VersionInfo:
    """Name the MMAU test-mini version a question or predictions list comes from, by content.

    Every record is fingerprinted on its MMAU fields (key order, formatting, record order and added
    keys such as predictions do not matter) and looked up among the published versions. A file can be
    a whole version, a subset of one, one whose questions/choices/answers match but other fields
    (difficulty, split, id...) differ, a modified copy, or not MMAU at all.
    """
    table = table or load_version_table()
    items = [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
    if not items:
        return VersionInfo("empty", "not an MMAU test-mini file (no records)")
    versions = table["versions"]
    labels = [version_label(v) for v in versions]
    uniq_full = {item_fingerprint(r) for r in items}
    n = len(items)

    def counts(hashes: set[str], lookup: dict[str, int]) -> list[int]:
        out = [0] * len(versions)
        for h in hashes:
            mask = lookup.get(h, 0)
            for bit in range(len(versions)):
                if mask >> bit & 1:
                    out[bit] += 1
        return out

    full_counts = counts(uniq_full, table["items_full"])
    dup = f"; {n - len(uniq_full)} duplicate records" if n > len(uniq_full) else ""

    def info(kind: str, j: int, matched: int, message: str, candidates: list[int]) -> VersionInfo:
        v = versions[j]
        return VersionInfo(kind, message, labels[j], v["commit"], v["date"], v.get("name"), matched, n,
                           v["n_items"], [labels[c] for c in candidates])

    whole = [j for j, c in enumerate(full_counts) if c == len(uniq_full)]
    if whole:
        exact = [j for j in whole if versions[j]["content_hash"] == content_fingerprint(uniq_full)]
        if exact:
            j = exact[0]
            again = ", ".join(f"{p['commit']} ({p['date']})" for p in versions[j]["published"][1:])
            again = f"; the same content was published again as {again}" if again else ""
            return info("exact", j, len(uniq_full), f"MMAU test-mini {labels[j]} "
                        f"({len(uniq_full)}/{versions[j]['n_items']} items{dup}){again}", exact)
        j = whole[-1]
        also = f"; the same items are in {len(whole) - 1} other version(s), e.g. {labels[whole[0]]}" \
            if len(whole) > 1 else ""
        return info("subset", j, len(uniq_full), f"subset of MMAU test-mini {labels[j]} "
                    f"({len(uniq_full)}/{versions[j]['n_items']} items{dup}){also}", whole)
    uniq_core = {item_fingerprint(r, CORE_FIELDS) for r in items}  # only needed from here on
    core_counts = counts(uniq_core, table["items_core"])
    by_core = [j for j, c in enumerate(core_counts) if c == len(uniq_core)]
    if by_core:
        j = max(by_core, key=lambda b: (full_counts[b], b))
        part = "" if len(uniq_core) == versions[j]["n_items"] else "a subset of "
        return info("metadata_differs", j, full_counts[j],
                    f"{part}MMAU test-mini {labels[j]} by question, choices and answer "
                    f"({len(uniq_core)}/{versions[j]['n_items']} items), but other fields (id, difficulty, "
                    f"split, ...) differ in {len(uniq_full) - full_counts[j]} items{dup}", by_core)
    j = max(range(len(versions)), key=lambda b: (full_counts[b], core_counts[b], b))
    best = max(full_counts[j], core_counts[j])
    if best * 2 >= len(uniq_full):
        return info("modified", j, full_counts[j], f"modified copy of MMAU test-mini {labels[j]}: "
                    f"{full_counts[j]} of {len(uniq_full)} distinct records match it exactly, "
                    f"{core_counts[j]} by question/choices/answer", [j])
    return VersionInfo("not_mmau", f"not an MMAU test-mini file: {best} of {len(uniq_full)} distinct records "
                       "match a published test-mini question", matched=best, n_records=n)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def cli_mmau_version(argv: list[str]) -> int:
    """`python -m aqa_core mmau-version FILE [--json]`."""
    parser = argparse.ArgumentParser(prog="python -m aqa_core mmau-version",
                                     description="Name the MMAU test-mini version of a question or predictions file.")
    parser.add_argument("file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        records = read_json(args.file)
        if not isinstance(records, list):
            raise MMAUInputError(f"{args.file}: expected a JSON list of MMAU records, got {type(records).__name__}")
    except MMAUInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    info = identify_version(records)
    print(json.dumps(asdict(info), indent=2, ensure_ascii=False) if args.json else info.message)
    return 0


cli = cli_mmau_version
