"""The one archive format (aqa_core.study.archive): a build's executed pages and its provenance,
written whole and read back; pages copied from an archive say so; a build that has not run an
opt-in part quotes the archive for it; the committed reference holds every glue key the book's
pages quote, and a fresh clone's `jupyter-book build book` renders the whole book from it."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_book import _html_text, write_fixture_recipes, write_fixture_results

from aqa_core.study.archive import (
    REFERENCE,
    ArchiveError,
    copied_from,
    copy_page,
    page_values,
    plain_value,
    read_archive,
    write_archive,
)
from aqa_core.study.design import OPT_IN

ROOT = Path(__file__).resolve().parents[1]
RECORD = "application/papermill.record/"


def executed_page(path: Path, values: dict, tables: dict[str, str] | None = None) -> Path:
    """A page as papermill and myst-nb's glue leave it: a title, then one output per glued value
    (plain values under the record prefix, tables displayed as HTML)."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("glue(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={f"{RECORD}text/plain": repr(v)},
                                           metadata={"scrapbook": {"name": k, "mime_prefix": RECORD}})
                    for k, v in values.items()]
    cell.outputs += [nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": "Table"},
                                            metadata={"scrapbook": {"name": k, "mime_prefix": ""}})
                     for k, html in (tables or {}).items()]
    nb.cells = [nbformat.v4.new_markdown_cell("# A page"), cell]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _archive(tmp_path: Path, values: dict, tables: dict | None = None, note: str = "") -> tuple[Path, Path]:
    """A fixture results folder (with GRPO <3> and one swept ablation run) and its archive."""
    res = write_fixture_results(tmp_path / "runs")
    (res / "ablations" / "x" / "eval").mkdir(parents=True)
    (res / "ablations" / "x" / "eval" / "sweep.json").write_text("{}")
    pages = tmp_path / "pages"
    executed_page(pages / "report.ipynb", values, tables)
    executed_page(pages / "grpo_prompt3.ipynb", {"steps": 60})
    write_archive(res, pages, tmp_path / "archive", note=note)
    return res, tmp_path / "archive"


def test_an_archive_is_written_whole_and_read_back(tmp_path):
    values = {"mini_grpo_p2_avg": 54.1, "n": 1000, "mini_verdict": "not decided", "missing": math.nan}
    res, path = _archive(tmp_path, values, {"table2": "<table></table>"}, note="first")
    archive = read_archive(path)
    p = archive.provenance
    assert p["format"] == 1 and p["benchmark_version"] == "1" and p["commit"] == "unknown"  # fixtures: no provenance
    assert p["design"]["seeds"] == {"sft_full": 1, "sft_lora": 1, "grpo_p2": 1, "grpo_p3": 1}
    assert p["design"]["opt_in"] == ["prompt3", "ablations"] and len(p["design"]["rows"]) == 6
    assert p["reproduce"] == "make book STUDY_ARGS=--prompt3 && " + OPT_IN["ablations"].how  # no commit to check out
    assert archive.pages() == ["grpo_prompt3", "report"] and p["note"] == "first"
    got = page_values(archive.page("report"))  # the plain values back, a table as its text
    assert (got["mini_grpo_p2_avg"], got["n"], got["mini_verdict"]) == (54.1, 1000, "not decided")
    assert got["table2"] == "Table"
    assert math.isnan(got["missing"])
    with pytest.raises(ArchiveError, match="no executed page"):
        write_archive(res, tmp_path / "empty", tmp_path / "other")
    with pytest.raises(ArchiveError, match="already holds an archive"):
        write_archive(res, tmp_path / "pages", path, note="second")
    assert read_archive(path).provenance["note"] == "first"  # the refused write changed nothing
    write_archive(res, tmp_path / "pages", path, note="second", replace=True)
    assert read_archive(path).provenance["note"] == "second" and not list(tmp_path.glob(".archive*"))


def test_a_copied_page_says_where_it_comes_from_and_is_never_archived_again(tmp_path):
    _, path = _archive(tmp_path, {"x": 1})
    archive = read_archive(path)
    target = copy_page(archive, "grpo_prompt3", tmp_path / "book" / "results" / "grpo_prompt3.ipynb", "for a reason")
    first = "".join(json.loads(target.read_text())["cells"][0]["source"])
    assert first.startswith("# A page\n\n```{note}\nThis page shows the archive")  # under the title
    assert "not results made here: for a reason." in first
    assert copied_from(target)["label"] == archive.label and copied_from(archive.page("report")) is None
    with pytest.raises(ArchiveError, match="grpo_prompt3.ipynb came from an archive"):
        write_archive(tmp_path / "runs" / "mini", target.parent, tmp_path / "again")
    with pytest.raises(ArchiveError, match="has no page 'nope'; its pages: grpo_prompt3, report"):
        copy_page(archive, "nope", tmp_path / "x.ipynb")


@pytest.mark.parametrize("content,message", [
    (None, "no archive here"),
    ("{", "not JSON"),
    ('{"format": 2}', "archive format 2, this code reads format 1"),
])
def test_a_bad_archive_is_one_error_line(tmp_path, content, message):
    if content is not None:
        (tmp_path / "archive.json").write_text(content)
    proc = subprocess.run([sys.executable, "-m", "aqa_core", "archive", "--show", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_archiving_a_folder_that_is_no_build_is_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aqa_core", "archive", str(tmp_path), "--pages", str(tmp_path),
                           "--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a mini results folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_build_without_an_opt_in_part_quotes_the_archive_for_it(tmp_path):
    from aqa_core.study.report import build_report, opt_in_sources

    kept = {"mini_grpo_p3_avg": 12.3, "mini_think_sentence": "The archived sentence.", "fig3_grpo_p3_steps": 7,
            "mini_grpo_p3_source": "this build's runs (runs/mini)",  # the archived build's own: never quoted
            "mini_abl_sft-full_prompt2_change": 1.5, "mini_grpo_p2_avg": 99.0, "paper_grpo_p3_average": 0.0}
    res, path = _archive(tmp_path, kept, {"table_ablations": "<table>archived</table>"})
    rec = write_fixture_recipes(tmp_path)
    full = build_report([res], rec["grpo"], rec["sft"], figures_dir=tmp_path / "f", n_resamples=200, archive=path)
    assert full.archived == {} and full.values["mini_grpo_p3_origin"] == "this build"
    assert full.values["mini_ablation_origin"] == "this build"
    shutil.rmtree(res / "grpo-prompt3")
    shutil.rmtree(res / "ablations")
    rep = build_report([res], rec["grpo"], rec["sft"], figures_dir=tmp_path / "f", n_resamples=200, archive=path)
    # the part's glued outputs, as they were; this build's own values (GRPO <2>, the paper's) never replaced
    assert set(rep.archived) == {"mini_grpo_p3_avg", "mini_think_sentence", "fig3_grpo_p3_steps",
                                 "mini_abl_sft-full_prompt2_change", "table_ablations"}
    assert plain_value(rep.archived["mini_grpo_p3_avg"]) == 12.3 and rep.ablations is None
    assert not set(rep.archived) & set(rep.values)  # this build's placeholders give way
    assert rep.values["mini_grpo_p2_avg"] != 99.0 and rep.values["paper_grpo_p3_average"] != 0.0
    assert rep.values["mini_grpo_p3_origin"].startswith("archived, ")
    assert "not this build (the benchmark version this build uses)" in rep.values["mini_grpo_p3_source"]
    assert "STUDY_ARGS=--prompt3" in rep.values["mini_grpo_p3_source"]
    origin, none = opt_in_sources(res, None)  # neither this build nor an archive: said so
    assert none == {} and origin["mini_grpo_p3_origin"] == "not run" and origin["mini_ablation_origin"] == "not run"


def quoted_glue() -> dict[str, set[str]]:
    """{results page: the glue keys the book's pages quote from it}."""
    quoted: dict[str, set[str]] = {}
    for page in (ROOT / "book").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        for name, key in re.findall(r"results/(\w+)\.ipynb::([\w-]+)", text):
            quoted.setdefault(name, set()).add(key)
        for key, name in re.findall(r"```\{glue:\w+\} ([\w-]+)\n:doc: results/(\w+)\.ipynb", text):
            quoted.setdefault(name, set()).add(key)
    return quoted


def test_the_reference_holds_every_glue_key_the_pages_quote():
    archive = read_archive(REFERENCE)
    assert set(archive.provenance["design"]["opt_in"]) == {"prompt3", "ablations"}  # a full build
    quoted = quoted_glue()
    assert sum(map(len, quoted.values())) > 200  # the scan finds the pages' glue
    missing = {name: sorted(keys - set(page_values(archive.page(name)))) for name, keys in quoted.items()}
    assert {name: keys for name, keys in missing.items() if keys} == {}
    assert sum(p.stat().st_size for p in REFERENCE.rglob("*") if p.is_file()) <= 5 * 2**20


@pytest.mark.book
def test_a_fresh_clone_renders_the_whole_book_from_the_reference(tmp_path):
    """`jupyter-book build book` with no results of its own: every results page comes from the
    reference archive, no warning, no empty glue, and every page says what it shows."""
    from aqa_core.study.pipeline.study import build_book

    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "results"), symlinks=False)
    (tmp_path / "aqa_core").symlink_to(ROOT / "aqa_core")  # pages include code from ../aqa_core
    (book / "_config.yml").unlink(missing_ok=True)
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    log = build_book(book)
    assert "WARNING" not in log and "ERROR" not in log, log[-3000:]
    html = book / "_build" / "html"
    label = read_archive(REFERENCE).label
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts)
    assert len(pages) > 20
    for page in pages:
        if page.name in ("genindex.html", "search.html", "index.html"):  # index.html: a redirect
            continue
        text = page.read_text(encoding="utf-8")
        assert f"This book shows {label}" in text, page.name
        assert "{glue" not in text and "glue:" not in _html_text(page), f"unresolved glue in {page.name}"
    assert "This page shows the reference archive" in _html_text(html / "results" / "report.html")
    assert re.search(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", _html_text(html / "table2.html"))  # numbers, not blanks
