"""Execute one of the book's notebooks: papermill, then the page's own title.

    python -m aqa_core.study.pipeline.execute TEMPLATE TARGET --params YAML --cwd DIR [--title TITLE]

One template makes several pages (the two direct-inference pages, the two SFT and the two GRPO
pages); each would carry the template's heading, and the book would have pages of one title with
ambiguous previous/next links. `--title` (the page's title in book/_toc.yml) replaces the first
heading of the executed notebook's first markdown cell; the file is written whole or not at all.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ...files import write_atomic


def retitle(path: str | Path, title: str) -> None:
    """Replace the first Markdown heading (`# ...`) of the notebook's first markdown cell."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        new, n = re.subn(r"^# .*$", lambda _: f"# {title}", source, count=1, flags=re.M)
        if n:
            cell["source"] = new.splitlines(keepends=True)
            write_atomic(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        return


def cli(argv: list[str] | None = None) -> int:
    import papermill as pm
    import yaml

    ap = argparse.ArgumentParser(prog="python -m aqa_core.study.pipeline.execute", description=__doc__.split("\n\n")[0])
    ap.add_argument("template")
    ap.add_argument("target")
    ap.add_argument("--params", default="{}", help="the parameters, as YAML")
    ap.add_argument("--cwd", default=".")
    ap.add_argument("--title", default=None)
    a = ap.parse_args(argv)
    pm.execute_notebook(a.template, a.target, parameters=yaml.safe_load(a.params) or {}, cwd=a.cwd,
                        progress_bar=False, start_timeout=180)
    if a.title:
        retitle(a.target, a.title)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
