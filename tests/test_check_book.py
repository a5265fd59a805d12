"""scripts/check_book.py, the headless-chromium check of the built book (issue 24): its pure parts
(words, the landing page's first 100 words, which boxes are too wide, the page list) on literal
inputs, and the whole script on a two-page hand-written book when chromium is installed."""
from __future__ import annotations

import doctest
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts/check_book.py"


def _load():
    spec = importlib.util.spec_from_file_location("check_book", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cb = _load()
VERDICT = "Verdict: not decided. GRPO minus the base model is +2.0 points [-1.1, +4.9]."


def test_the_scripts_docstring_examples_hold():
    result = doctest.testmod(cb)
    assert result.attempted >= 6 and result.failed == 0


# -- words ----------------------------------------------------------------------------------------------------

def test_a_word_is_a_token_with_a_letter_or_digit():
    assert cb.count_words("Table 2 | — accuracy: 97.5% (n=400) • +2.0 [-1.1, +4.9]") == 8
    assert cb.count_words(" \n\t— | ¶ # ") == 0
    assert cb.count_words("GRPO\u00a0<2>\nminus base") == 4  # a no-break space separates words too


def test_first_words_keeps_the_tokens_up_to_the_nth_word():
    assert cb.first_words("one — two three four", 2) == "one — two"
    assert cb.first_words("one two", 100) == "one two"


# -- the landing page's first 100 words -----------------------------------------------------------------------

def test_verdict_with_difference_and_interval_passes():
    found = cb.verdict_check(VERDICT)
    assert found == {"difference": "+2.0", "interval": "[-1.1, +4.9]", "verdict_word": "Verdict", "problems": []}


@pytest.mark.parametrize("text", [
    "The claim holds: GRPO minus SFT is \u22120.9 [\u22123.1, +1.2].",  # Unicode minus
    "GRPO minus base: -0.9 [-3.1, +1.2]; the paper's ordering is reversed.",
    "Amendment 3 moved it to +2.0 [ -1.1 , +4.9 ] and the result is not\u00a0decided.",
])
def test_verdict_variants_pass(text):
    assert cb.verdict_check(text)["problems"] == []


def test_verdict_after_the_first_100_words_fails():
    assert len(cb.verdict_check(" ".join(["word"] * 100) + " " + VERDICT)["problems"]) == 3
    assert cb.verdict_check(" ".join(["word"] * 87) + " " + VERDICT)["problems"] == []  # its 13th word is the 100th
    assert cb.verdict_check(" ".join(["word"] * 88) + " " + VERDICT)["problems"] == [
        "no interval (like [-1.1, +4.9]) in the first 100 words"]  # "+4.9]." is the 101st


def test_a_number_inside_the_interval_is_not_the_difference():
    problems = cb.verdict_check("Verdict: not decided, [-1.1, +4.9].")["problems"]
    assert problems == ["no signed difference (like +2.0) in the first 100 words"]


@pytest.mark.parametrize("text, missing", [
    ("Verdict: GRPO scores 97.5-98% on validation [-1.1, +4.9].", "difference"),  # a range, not a sign
    ("Verdict: seed-1 [-1.1, +4.9].", "difference"),
    ("Verdict: +2.0 [1.1, 4.9].", "interval"),  # unsigned bounds
    ("Verdict: +2.0 (-1.1, +4.9).", "interval"),  # parentheses
    ("Verdict: +2.0 [-1.1].", "interval"),
    ("GRPO beats SFT by +2.0 [-1.1, +4.9] for the households.", "verdict word"),
])
def test_verdict_without_one_part_fails_naming_it(text, missing):
    problems = cb.verdict_check(text)["problems"]
    assert len(problems) == 1 and f"no {missing}" in problems[0].replace("signed difference", "difference")


def test_first_screen_needs_a_table_and_a_figure_above_900_px():
    assert cb.first_screen_problems(420.0, 610.5) == []
    assert cb.first_screen_problems(None, 899.0) == ["no table in the article"]
    assert cb.first_screen_problems(900.0, None) == ["the first table starts at 900 px, below the first 900 px",
                                                      "no figure (<img>/<figure>) in the article"]


# -- boxes wider than the column ------------------------------------------------------------------------------

def _box(i, right=800.0, scroll_width=500, client_width=500, overflow_x="visible", display="block", ancestors=()):
    return {"i": i, "ancestors": list(ancestors), "right": right, "scroll_width": scroll_width,
            "client_width": client_width, "overflow_x": overflow_x, "display": display, "selector": f"div#b{i}",
            "snippet": "", "section": "s", "part": ""}


def test_a_box_past_the_column_is_reported_by_how_far():
    found = cb.offenders([_box(0, right=1030.4)], column_right=1000.0)
    assert [(o["i"], o["past_column"], o["clipped"], o["px"]) for o in found] == [(0, 30, 0, 30)]


def test_a_box_within_one_px_of_the_column_passes():
    assert cb.offenders([_box(0, right=1001.0), _box(1, scroll_width=501, overflow_x="auto")], 1000.0) == []


@pytest.mark.parametrize("overflow_x", ["auto", "scroll", "hidden", "clip"])
def test_content_scrolled_or_clipped_inside_its_box_counts_as_too_wide(overflow_x):
    found = cb.offenders([_box(0, scroll_width=740, client_width=600, overflow_x=overflow_x)], 1000.0)
    assert [(o["past_column"], o["clipped"], o["px"]) for o in found] == [(0, 140, 140)]
    assert "140 px wider than its box" in cb.describe(found[0])


def test_overflow_that_shows_or_an_inline_box_is_not_clipping():
    boxes = [_box(0, scroll_width=900, client_width=600, overflow_x="visible"),
             _box(1, scroll_width=900, client_width=0, overflow_x="hidden", display="inline")]
    assert cb.offenders(boxes, 1000.0) == []


def test_only_the_outermost_offender_is_reported():
    boxes = [_box(5, right=1200.0, ancestors=[1]),  # a cell of the table below
             _box(1, right=900.0, scroll_width=900, client_width=600, overflow_x="auto"),  # the scroll container
             _box(2, right=1200.0, ancestors=[1]),  # the table inside it
             _box(7, right=1100.0, ancestors=[6])]  # an unrelated wide image in a parent that fits
    found = cb.offenders(boxes, 1000.0)
    assert [(o["i"], o["px"]) for o in found] == [(1, 300), (7, 100)]


# -- which pages ----------------------------------------------------------------------------------------------

NAV = """<nav class="bd-links bd-docs-nav"><ul><li><a href="findings.html">Findings</a></li>
<li><a href="results/report.html#top">Report</a></li><li><a href="findings.html">again</a></li>
<li><a href="https://example.org/x.html">out</a></li><li><a href="missing.html">gone</a></li></ul></nav>"""


def _write(root: Path, pages: dict[str, str]) -> Path:
    for name, text in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_pages_are_the_landing_page_and_its_navigation_in_order(tmp_path):
    root = _write(tmp_path, {"index.html": '<meta http-equiv="Refresh" content="0; url=intro.html" />',
                             "intro.html": f"<html><body>{NAV}</body></html>", "findings.html": "",
                             "results/report.html": "", "orphan.html": "", "genindex.html": "",
                             "_static/x.html": ""})
    landing = cb.landing_page(root)
    pages = cb.book_pages(root, landing)
    assert (landing, pages) == ("intro.html", ["intro.html", "findings.html", "results/report.html"])
    assert cb.pages_left_out(root, pages) == ["orphan.html"]


def test_without_a_navigation_every_page_but_the_index_pages(tmp_path):
    root = _write(tmp_path, {"intro.html": "<p>no nav</p>", "b.html": "", "search.html": "", "_sources/c.html": ""})
    assert cb.book_pages(root, cb.landing_page(root)) == ["intro.html", "b.html"]


def test_without_chromium_it_says_so_in_one_line(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "CHROMIUM": str(tmp_path / "no-chromium")}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "check_book: chromium not found (install Debian's `chromium`, or set $CHROMIUM to its path)"]


# -- the whole script in chromium -----------------------------------------------------------------------------

STYLE = "<style>body{margin:0;font:16px sans-serif} main{display:flex} nav{width:200px} article{width:600px}</style>"


def _page(body: str) -> str:
    nav = '<nav class="bd-docs-nav"><a href="intro.html">Intro</a> <a href="wide.html">A wide page</a></nav>'
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{STYLE}</head><body><header>Header words here"
            f"</header><main id='main-content'>{nav}<article class='bd-article'>{body}</article>"
            "<div class='bd-sidebar-secondary'>On this page: contents</div></main><footer>Footer</footer>"
            "</body></html>")


INTRO = _page(
    "<h1>Tiny book<a class='headerlink' href='#'>#</a></h1>"
    f"<p>{VERDICT}</p>"
    "<table><tr><th>method</th><th>accuracy</th></tr><tr><td>GRPO</td><td>61.0</td></tr></table>"
    "<img src='_images/fig.svg' alt='a figure' width='200' height='100'>"
    "<div class='toctree-wrapper'><a href='wide.html'>navigation words not counted</a></div>"
    "<div class='cell_input'><pre>x = 1</pre></div>"
    "<p style='display:none'>hidden words not counted</p>")
# 2 (the heading) + 13 (the verdict) + 4 (the table) = 19 words of visible article text
WIDE = _page(
    "<h1>Wide</h1><p>A page with a table wider than the column.</p>"
    "<table style='width:1500px'><tr><td>Table 2 last column clipped</td></tr></table>")
SVG = "<svg xmlns='http://www.w3.org/2000/svg' width='200' height='100'><rect width='200' height='100'/></svg>"


def _book(root: Path, wide: bool) -> Path:
    return _write(root, {"index.html": '<meta http-equiv="Refresh" content="0; url=intro.html" />',
                         "intro.html": INTRO, "wide.html": WIDE if wide else _page("<p>Narrow enough.</p>"),
                         "_images/fig.svg": SVG})


@pytest.mark.book
@pytest.mark.skipif(cb.find_chromium() is None, reason="needs headless chromium (Debian's `chromium` package)")
@pytest.mark.parametrize("wide", [True, False], ids=["a-too-wide-table", "all-pass"])
def test_the_script_measures_a_tiny_book_in_chromium(tmp_path, wide):
    html = _book(tmp_path / "html", wide)
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(html), "--json", str(out), "--screenshots",
                           str(tmp_path / "shots")], capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text())
    pages = {p["page"]: p for p in report["pages"]}
    assert list(pages) == ["intro.html", "wide.html"]
    assert pages["intro.html"]["words"] == 19 and pages["intro.html"]["code_words"] == 2
    assert pages["intro.html"]["verdict"]["problems"] == [] and pages["intro.html"]["offenders"] == []
    assert 0 < pages["intro.html"]["table_top"] < pages["intro.html"]["figure_top"] < 900
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == ["intro.png", "wide.png"]
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert "total" in proc.stdout
    if wide:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        (offender,) = pages["wide.html"]["offenders"]
        assert offender["tag"] == "table" and offender["past_column"] == 900  # 1500 px in a 600 px column
        assert all(line.startswith("FAIL wide.html: ") for line in fails)
        assert fails[0].startswith("FAIL wide.html: table") and "Table 2 last column clipped" in fails[0]
        assert "900 px past the text column" in fails[0]
        assert "FAIL wide.html: the page scrolls sideways by 400 px" in fails  # 200 px nav + 1500 px in 1300 px
    else:
        assert proc.returncode == 0 and fails == [], proc.stdout + proc.stderr
        assert proc.stdout.rstrip().endswith("all checks pass")
