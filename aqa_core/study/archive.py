"""One archive format for a build of the book: its executed pages (every glued value, table and
figure, and what each page shows) and its provenance, written and read by this module alone.

    python -m aqa_core archive RESULTS [--pages book/results] [--out book/archive/reference] [--note TEXT]
    python -m aqa_core archive --show ARCHIVE

An archive is a folder:

    archive.json       provenance: the format, the date, the commit of the code that trained the runs,
                       the benchmark version and sizes, the design that ran (rows, seeds, opt-in
                       parts), the stage seconds of the study (and of its ablations), a note
    pages/NAME.ipynb   the executed notebooks of book/results/, as the book renders them

`book/archive/reference/` is the committed archive of the last full build (GRPO <3> and the
ablations included, 5 MB at most): `jupyter-book build book` on a fresh clone renders the book
from it (`aqa_core.study.sphinx_ext`; every page says so), and a build that has not run an opt-in
part (`design.OPT_IN`) quotes that part's glued values from it (`aqa_core.study.report`). `make
book` never rewrites it; only this command does, and it replaces an existing archive only when
told to (`--replace`), whole or not at all.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..runs import SWEEP_FILE, git_commit
from .design import (
    ABLATION_DIR,
    EVAL_BATCH,
    EVAL_MAX_NEW_TOKENS,
    OPT_IN,
    ROOT,
    ROWS,
    RUNS,
    SWEEP_TEST_AT,
    VALIDATION_ITEMS,
    OptIn,
)
from .results import code_commit, row_folders, run_seeds, stage_seconds

FORMAT = 1
REFERENCE = ROOT / "book" / "archive" / "reference"
ARCHIVE_FILE = "archive.json"
PAGES = "pages"
MAX_BYTES = 5 * 1024 * 1024
#: The notebook metadata key a page copied from an archive carries (the book's banner reads it).
MARK = "aqa_archive"
#: How a reader regenerates what an archive shows.
REGENERATE = "make book"


class ArchiveError(Exception):
    """An archive that is missing, malformed or of another format; a results folder that cannot be archived."""


@dataclass(frozen=True)
class Archive:
    path: Path
    provenance: dict

    @property
    def label(self) -> str:
        """"the reference archive of DATE (code ABCDEF0, benchmark vN)", as pages say it."""
        p = self.provenance
        name = "the reference archive" if self.path.resolve() == REFERENCE.resolve() else f"the archive {self.path}"
        return f"{name} of {p['date']} (code {str(p['commit'])[:7]}, benchmark v{p['benchmark_version']})"

    def page(self, name: str) -> Path:
        return self.path / PAGES / f"{name}.ipynb"

    def pages(self) -> list[str]:
        return sorted(p.stem for p in (self.path / PAGES).glob("*.ipynb"))

    def has_part(self, part: OptIn) -> bool:
        return part.name in self.provenance.get("design", {}).get("opt_in", [])


def read_archive(path: str | Path = REFERENCE) -> Archive:
    """The archive at `path`; an ArchiveError naming the file when it is missing or not this format."""
    path = Path(path)
    record = path / ARCHIVE_FILE
    try:
        provenance = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArchiveError(f"{record}: no archive here (python -m aqa_core archive RESULTS --out {path} writes one)"
                           ) from None
    except json.JSONDecodeError as e:
        raise ArchiveError(f"{record}: not JSON ({e.msg}, line {e.lineno})") from None
    if provenance.get("format") != FORMAT:
        raise ArchiveError(f"{record}: archive format {provenance.get('format')!r}, this code reads format {FORMAT}")
    return Archive(path, provenance)


# ----------------------------------------------------------------------------- glue


def glue_outputs(notebook: str | Path) -> dict[str, dict]:
    """{key: output} of every value a notebook glued (myst-nb's scrapbook outputs, as written)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    return {o["metadata"]["scrapbook"]["name"]: o for c in nb["cells"] if c["cell_type"] == "code"
            for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}


def plain_value(output: dict) -> Any:
    """A glued value back as the plain int, float or str it was (its text form read back), or the
    text itself for a table or figure.

    >>> plain_value({"data": {"application/papermill.record/text/plain": "54.1"}})
    54.1
    >>> plain_value({"data": {"application/papermill.record/text/plain": "nan"}})
    nan
    """
    data = output["data"]
    text = next(v for k, v in data.items() if k.endswith("text/plain"))
    text = text if isinstance(text, str) else "".join(text)
    if text == "nan":
        return math.nan
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def page_values(notebook: str | Path) -> dict[str, Any]:
    """{key: plain value} of every value a notebook glued (`plain_value`)."""
    return {k: plain_value(o) for k, o in glue_outputs(notebook).items()}


# ----------------------------------------------------------------------------- pages


#: Why a book shows an archive's page, when no reason is given: it has no results of its own.
NO_RESULTS = f"this book has no results of its own yet; `{REGENERATE}` runs the study on this machine and makes them"


def banner(archive: Archive, why: str = NO_RESULTS) -> str:
    """The Markdown note under the title of a page copied from an archive: what it shows and why."""
    return f"```{{note}}\nThis page shows {archive.label}, not results made here: {why}.\n```"


def copy_page(archive: Archive, name: str, target: str | Path, why: str = NO_RESULTS) -> Path:
    """Copy an archived page into a book (written whole or not at all), with `banner` under its
    title and the archive's provenance in its metadata (`MARK`)."""
    from ..files import write_atomic

    source = archive.page(name)
    if not source.is_file():
        raise ArchiveError(f"{archive.path} has no page {name!r}; its pages: {', '.join(archive.pages()) or 'none'}")
    nb = json.loads(source.read_text(encoding="utf-8"))
    note = banner(archive, why)
    first = next((c for c in nb["cells"] if c["cell_type"] == "markdown"), None)
    text = "".join(first["source"]) if first else ""
    if text.startswith("# "):  # under the title
        title, _, rest = text.partition("\n")
        first["source"] = f"{title}\n\n{note}\n{rest}"
    else:
        nb["cells"].insert(0, {"cell_type": "markdown", "id": "aqa-archive-banner", "metadata": {}, "source": note})
    nb["metadata"][MARK] = {k: archive.provenance.get(k) for k in ("date", "commit", "benchmark_version")}
    nb["metadata"][MARK]["label"] = archive.label
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return target


def copied_from(notebook: str | Path) -> dict | None:
    """The archive provenance a page copied by `copy_page` carries, else None."""
    try:
        return json.loads(Path(notebook).read_text(encoding="utf-8"))["metadata"].get(MARK)
    except (OSError, json.JSONDecodeError, KeyError):
        return None


# ----------------------------------------------------------------------------- writing


def build_provenance(result_dir: str | Path, note: str = "") -> dict:
    """What archive.json records of a results folder: the benchmark (its data/manifest.json), the
    commit of the code that trained its runs (and of the code that executed the pages: this
    checkout's), the design that ran (each row's seeds, the opt-in parts present, every row's
    recipe, the sweeps' settings), the commands that rebuild it, the stage seconds of the study and
    of its ablations, the date and `note`."""
    result_dir = Path(result_dir)
    manifest_path = result_dir / "data" / "manifest.json"
    if not manifest_path.is_file():
        raise ArchiveError(f"{result_dir}: no data/manifest.json; not a mini results folder (make book writes one)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    parts = [name for name, part in OPT_IN.items() if part_ran(result_dir, part)]
    commit = code_commit(result_dir)
    folders = {"study": result_dir, "ablations": result_dir / ABLATION_DIR}
    timings = {k: stage_seconds(d) for k, d in folders.items()}  # each stage's last real run
    return {"format": FORMAT, "date": time.strftime("%Y-%m-%d"), "commit": commit,
            "benchmark_version": manifest.get("version"), "sizes": manifest.get("sizes"),
            "design": {"seeds": {r.key: len(row_folders(result_dir, r)) for r in RUNS}, "opt_in": parts,
                       "rows": [asdict(r) for r in ROWS], "test_at": SWEEP_TEST_AT,
                       "evaluation": {"batch": EVAL_BATCH, "max_new_tokens": EVAL_MAX_NEW_TOKENS,
                                      "validation_items": VALIDATION_ITEMS}},
            "reproduce": reproduce_command(commit, parts),
            "pages_executed_by": git_commit(ROOT),  # the code that executed the pages (None: not a checkout)
            "stage_seconds": timings, "note": note, "results": str(result_dir)}


def reproduce_command(commit: str, parts: list[str]) -> str:
    """The commands that rebuild an archived build: its code at its commit (the benchmark's
    generator included), then the study with the opt-in parts it ran.

    >>> reproduce_command("41220ad (dirty)", ["prompt3"])
    'git checkout 41220ad && make book STUDY_ARGS=--prompt3'
    """
    steps = [f"git checkout {commit.split()[0]}"] if commit != "unknown" else []
    steps.append(OPT_IN["prompt3"].how if "prompt3" in parts else "make book")
    steps += [OPT_IN["ablations"].how] if "ablations" in parts else []
    return " && ".join(steps)


def part_ran(result_dir: str | Path, part: OptIn) -> bool:
    """Whether a results folder holds an opt-in part's runs, swept (the ablations plan's, or the
    rows the part trains)."""
    result_dir = Path(result_dir)
    if part.name == "ablations":
        return any((d / SWEEP_FILE).is_file() for d in (result_dir / ABLATION_DIR).glob("*/"))
    return any(r.opt_in == part.name and any((f / SWEEP_FILE).is_file() for _, f in run_seeds(result_dir / r.folder))
               for r in RUNS)


def write_archive(result_dir: str | Path, pages_dir: str | Path, out: str | Path, note: str = "",
                  replace: bool = False) -> Archive:
    """Archive a build: the executed pages of `pages_dir` (none of them a copy from another
    archive) and the provenance of `result_dir`, into `out`, whole or not at all (an existing
    archive is replaced only with `replace`)."""
    result_dir, pages_dir, out = Path(result_dir), Path(pages_dir), Path(out)
    record = build_provenance(result_dir, note)
    pages = sorted(pages_dir.glob("*.ipynb"))
    if not pages:
        raise ArchiveError(f"{pages_dir}: no executed page (make book executes them)")
    copies = [p.name for p in pages if copied_from(p) is not None]
    if copies:
        raise ArchiveError(f"{pages_dir}: {', '.join(copies)} came from an archive, not from this build's results")
    if (out / ARCHIVE_FILE).exists() and not replace:
        raise ArchiveError(f"{out} already holds an archive; --replace writes over it")
    size = sum(p.stat().st_size for p in pages)
    if size > MAX_BYTES:
        raise ArchiveError(f"the pages weigh {size / 2**20:.1f} MB, over the archive's {MAX_BYTES / 2**20:.0f} MB")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / PAGES).mkdir()
        for p in pages:
            shutil.copyfile(p, tmp / PAGES / p.name)
        (tmp / ARCHIVE_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_archive(out)


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aqa_core archive", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", help="the results folder of the build (runs/mini)")
    ap.add_argument("--pages", default=str(ROOT / "book" / "results"),
                    help="the build's executed pages (default book/results)")
    ap.add_argument("--out", default=str(REFERENCE), help="the archive folder (default book/archive/reference)")
    ap.add_argument("--note", default="", help="how the build was made, where its files do not say (shown on pages)")
    ap.add_argument("--replace", action="store_true", help="write over an existing archive")
    ap.add_argument("--show", metavar="ARCHIVE", help="print an archive's provenance and pages, write nothing")
    ap.add_argument("--copy-page", nargs=2, metavar=("NAME", "TARGET"),
                    help="copy one page of --out into TARGET with its banner (a build that has not run it)")
    ap.add_argument("--why", default=NO_RESULTS, help="with --copy-page: why the page comes from the archive")
    a = ap.parse_args(argv)
    if a.show:
        archive = read_archive(a.show)
        print(json.dumps(archive.provenance, indent=1))
        print(f"pages: {', '.join(archive.pages())}")
        return 0
    if a.copy_page:
        target = copy_page(read_archive(a.out), a.copy_page[0], a.copy_page[1], a.why)
        print(f"archive: {a.copy_page[0]} from {a.out} -> {target}")
        return 0
    if not a.results:
        ap.error("give a results folder (or --show ARCHIVE)")
    archive = write_archive(a.results, a.pages, a.out, a.note, a.replace)
    print(f"archive: {archive.label}: {len(archive.pages())} pages -> {archive.path}")
    return 0
