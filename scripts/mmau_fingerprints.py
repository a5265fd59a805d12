"""Regenerate aqa_core/eval/mmau_versions.json, the MMAU test-mini version table, from the published files.

    python scripts/mmau_fingerprints.py [HISTORY_DIR] [--out aqa_core/eval/mmau_versions.json]

HISTORY_DIR (default ../shared/data/mmau/history) holds every published test-mini file, named
`mmau-test-mini.<YYYYMMDD>_<HHMMSS>.<commit>.json`. The repository cannot ship those files, so it keeps
only per-item and per-version fingerprints; files with identical content become one version, labelled
by the earliest commit. Version names come from `aqa_core.eval.mmau_versions.VERSION_NAMES`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aqa_core.eval.mmau_versions import VERSIONS_FILE, MMAUInputError, build_fingerprints, version_label

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("history", nargs="?", default=str(REPO.parent / "shared" / "data" / "mmau" / "history"))
    parser.add_argument("--out", default=str(VERSIONS_FILE))
    args = parser.parse_args(argv)
    files = sorted(Path(args.history).glob("*.json"))
    if not files:
        print(f"error: no *.json files in {args.history}", file=sys.stderr)
        return 1
    try:
        table = build_fingerprints(files)
    except MMAUInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    # One version per line keeps diffs of the table readable; the item maps stay compact.
    compact = {"ensure_ascii": False, "separators": (",", ":")}
    head = {k: v for k, v in table.items() if k not in ("versions", "items_full", "items_core")}
    parts = [json.dumps(head, **compact)[:-1] + ',\n"versions":[']
    parts.append(",\n".join(json.dumps(v, **compact) for v in table["versions"]) + "],")
    parts.append('"items_full":' + json.dumps(table["items_full"], **compact) + ",")
    parts.append('"items_core":' + json.dumps(table["items_core"], **compact) + "}")
    text = "\n".join(parts)
    if json.loads(text) != table:
        raise AssertionError("layout changed the table")  # a bug in this script, not in the input
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(f"{len(files)} files -> {len(table['versions'])} versions, {len(table['items_full'])} item "
          f"fingerprints, {len(text) // 1024} KB -> {args.out}")
    for v in table["versions"]:
        also = ", ".join(p["commit"] for p in v["published"][1:])
        print(f"  {version_label(v)}" + (f" (republished as {also})" if also else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
