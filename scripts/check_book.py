"""Read the built book the way a reader meets it, in headless chromium at 1300 px, and check it
(issue 24): print every page's word count, and fail when the landing page does not answer on its
first screen or when anything on any page is wider than the text column.

    python scripts/check_book.py book/_build/html [--json OUT.json] [--screenshots DIR]

Checks, each failure printed on one line (exit 1 when any fails, 0 when none does, 2 when it
cannot run: no chromium, no book):

- the landing page (the page `index.html` redirects to) has, within the first 100 words of its
  article text, a signed difference (+2.0, -0.9 or with U+2212), an interval of two signed
  numbers in brackets ([-1.1, +4.9]) and a verdict word (verdict, not decided, holds, reversed);
- a <table> and a figure (<img> or <figure>) of its article start within its first 900 px;
- on every page, no element of the article reaches more than 1 px past the article column's
  right edge, no block whose overflow is auto/scroll/hidden/clip holds content more than 1 px
  wider than its box (scrolled or clipped counts as too wide), and the page does not scroll
  sideways.

Pages: the landing page and every page in the book's navigation sidebar. Chromium is Debian's
package (`chromium`, or `chromium-browser`, or $CHROMIUM); no Python package is needed. Each page
is copied with a measuring script injected into a mirror of the html folder (links to the
original files), loaded with `--dump-dom`, and the measurements read back from the dumped DOM;
at most two chromium processes run at once.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import NoReturn

WIDTH = 1300
HEIGHT = 900  # the first screen
SCREENSHOT_HEIGHT = 2400
FIRST_WORDS = 100
TOLERANCE_PX = 1.0
PARALLEL = 2  # chromium processes at once (a 2-core machine)
TIMEOUT_S = 120  # per chromium process
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}

WORD_RULE = ("words = whitespace-separated tokens holding a letter or digit in the visible text of the article "
             "column (headings, prose, glued numbers, tables, captions, code blocks written in the pages, notebook "
             "outputs); not counted: navigation, "
             "sidebars, header, footer, the page's own table of contents, toctree link lists, heading anchors, "
             "and notebook code cells' source (shown apart as 'code')")

# -- pure parts: words, the landing page's first words, offenders ---------------------------------------------

_HAS_WORD = re.compile(r"[^\W_]")
_SIGN = "+\\-\u2212"
_SIGNED_NUMBER = rf"[{_SIGN}]\d+(?:\.\d+)?"
INTERVAL = re.compile(rf"\[\s*{_SIGNED_NUMBER}\s*,\s*{_SIGNED_NUMBER}\s*\]")
#: a signed number standing alone: not the second half of a range (97.5-98) or a name (seed-1)
SIGNED = re.compile(rf"(?<![\w.]){_SIGNED_NUMBER}(?![\d.]*\d)")
VERDICT_WORD = re.compile(r"\b(?:verdict|not\s+decided|holds|reversed)\b", re.IGNORECASE)
CLIPPING_OVERFLOW = {"auto", "scroll", "hidden", "clip", "overlay"}
#: what the report keeps of each offender
OFFENDER_FIELDS = ("selector", "tag", "section", "part", "snippet", "past_column", "clipped", "px", "overflow_x")


def words(text: str) -> list[str]:
    """The words of `text`: whitespace-separated tokens that hold a letter or digit.

    >>> words("GRPO <2> minus base: -0.9 [-1.1, +4.9] | —")
    ['GRPO', '<2>', 'minus', 'base:', '-0.9', '[-1.1,', '+4.9]']
    """
    return [t for t in text.split() if _HAS_WORD.search(t)]


def count_words(text: str) -> int:
    return len(words(text))


def first_words(text: str, n: int = FIRST_WORDS) -> str:
    """`text` up to and including its n-th word (tokens between words are kept), spaces normalised.

    >>> first_words("a | b c", 2)
    'a | b'
    """
    kept, seen = [], 0
    for token in text.split():
        if seen == n:
            break
        kept.append(token)
        seen += bool(_HAS_WORD.search(token))
    return " ".join(kept)


def verdict_check(text: str, n: int = FIRST_WORDS) -> dict:
    """What the first `n` words of `text` show of the verdict: the difference (a signed number outside
    any interval), the interval, the verdict word, and `problems` (empty when all three are there).

    >>> verdict_check("Verdict: not decided. GRPO minus SFT is +2.0 [-1.1, +4.9] points.")["problems"]
    []
    >>> verdict_check("GRPO minus SFT is 2.0 [1.1, 4.9] points.")["problems"]  # doctest: +NORMALIZE_WHITESPACE
    ['no signed difference (like +2.0) in the first 100 words', 'no interval (like [-1.1, +4.9]) in the first
     100 words', 'no verdict word (verdict, not decided, holds, reversed) in the first 100 words']
    """
    head = first_words(text, n)
    interval = INTERVAL.search(head)
    difference = SIGNED.search(INTERVAL.sub(" ", head))
    word = VERDICT_WORD.search(head)
    problems = []
    if not difference:
        problems.append(f"no signed difference (like +2.0) in the first {n} words")
    if not interval:
        problems.append(f"no interval (like [-1.1, +4.9]) in the first {n} words")
    if not word:
        problems.append(f"no verdict word (verdict, not decided, holds, reversed) in the first {n} words")
    return {"difference": difference and difference.group(0), "interval": interval and interval.group(0),
            "verdict_word": word and word.group(0), "problems": problems}


def first_screen_problems(table_top: float | None, figure_top: float | None, height: float = HEIGHT) -> list[str]:
    """A table and a figure must start within the first `height` px of the page (None: the page has none).

    >>> first_screen_problems(412.0, 1630.5)
    ['the first figure (<img>/<figure>) starts at 1630 px, below the first 900 px']
    """
    problems = []
    for what, top in (("table", table_top), ("figure (<img>/<figure>)", figure_top)):
        if top is None:
            problems.append(f"no {what} in the article")
        elif top >= height:
            problems.append(f"the first {what} starts at {top:.0f} px, below the first {height:.0f} px")
    return problems


def offenders(boxes: list[dict], column_right: float, tolerance: float = TOLERANCE_PX) -> list[dict]:
    """The elements wider than the text column, outermost only (a too-wide table's cells are not listed).

    Each box (measured in the page): `i` (its index in the article), `ancestors` (indices of its
    ancestors inside the article), `right` (its right edge, px), `scroll_width`, `client_width`,
    `overflow_x`, `display`, and for the report `selector`, `snippet`, `section`. An element offends
    when its right edge is more than `tolerance` px past `column_right`, or when it scrolls or clips
    (overflow auto/scroll/hidden/clip, not inline) content more than `tolerance` px wider than its box.
    Each offender gets `past_column` and `clipped` (px, rounded) and `px`, the larger of the two.

    >>> box = dict(ancestors=[], right=900.0, scroll_width=880, client_width=600, overflow_x="auto", display="block")
    >>> [(o["i"], o["px"]) for o in offenders([dict(box, i=3), dict(box, i=4, ancestors=[3], right=1210.0)], 901.0)]
    [(3, 280)]
    """
    found: dict[int, dict] = {}
    for box in sorted(boxes, key=lambda b: b["i"]):
        past = box["right"] - column_right
        clips = box["overflow_x"] in CLIPPING_OVERFLOW and box["display"] != "inline"
        clipped = box["scroll_width"] - box["client_width"] if clips else 0
        if past <= tolerance and clipped <= tolerance:
            continue
        if any(a in found for a in box["ancestors"]):
            continue  # inside an element already reported
        found[box["i"]] = {**box, "past_column": max(0, round(past)), "clipped": max(0, round(clipped)),
                           "px": max(round(past), round(clipped))}
    return list(found.values())


def describe(o: dict) -> str:
    """One line for an offender: what, where, by how much."""
    how = []
    if o["past_column"] > TOLERANCE_PX:
        how.append(f"reaches {o['past_column']} px past the text column")
    if o["clipped"] > TOLERANCE_PX:
        how.append(f"holds content {o['clipped']} px wider than its box (overflow {o['overflow_x']}: "
                   "scrolled or clipped)")
    where = f" in #{o['section']}" if o.get("section") else ""
    where += f" ({o['part']})" if o.get("part") else ""
    snippet = o.get("snippet") or ""
    snippet = f' "{snippet[:50]}…"' if len(snippet) > 50 else f' "{snippet}"' if snippet else ""
    return f"{o['selector']}{snippet}{where}: {' and '.join(how)}"


# -- the pages ------------------------------------------------------------------------------------------------

class _Links(HTMLParser):
    """The hrefs inside the primary navigation (`nav.bd-docs-nav`) and the meta-refresh target."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # >0 while inside the navigation
        self.hrefs: list[str] = []
        self.refresh: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            m = re.search(r"url=([^;\s]+)", a.get("content") or "", re.IGNORECASE)
            self.refresh = m and m.group(1).strip("'\"")
        if tag == "nav":
            if self.depth or "bd-docs-nav" in (a.get("class") or "").split():
                self.depth += 1
        elif tag == "a" and self.depth and a.get("href"):
            self.hrefs.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "nav" and self.depth:
            self.depth -= 1


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def landing_page(root: Path) -> str:
    """The page `index.html` redirects to (jupyter-book's root page), else intro.html or index.html."""
    index = root / "index.html"
    if index.is_file():
        target = _parse(index).refresh
        if target and (root / target.split("#")[0]).is_file():
            return target.split("#")[0]
        if not (root / "intro.html").is_file():
            return "index.html"
    if (root / "intro.html").is_file():
        return "intro.html"
    fail_to_run(f"no index.html or intro.html in {root}: is it a built book's html folder?")


def book_pages(root: Path, landing: str) -> list[str]:
    """The landing page, then every page in its navigation sidebar, in order, as paths relative to
    `root`; without a navigation, every .html page but genindex/search and the folders _static/_sources."""
    pages = [landing]
    for href in _parse(root / landing).hrefs:
        if re.match(r"^[a-z]+:", href):
            continue  # external link
        path = (root / Path(landing).parent / href.split("#")[0]).resolve()
        if path.suffix == ".html" and path.is_file() and path.is_relative_to(root.resolve()):
            rel = path.relative_to(root.resolve()).as_posix()
            if rel not in pages:
                pages.append(rel)
    if len(pages) == 1:
        pages += sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                        if p.parts[len(root.parts)] not in {"_static", "_sources"} and p.name not in SKIP_PAGES
                        and p.relative_to(root).as_posix() not in {landing, "index.html"})
    return pages


def pages_left_out(root: Path, pages: list[str]) -> list[str]:
    """.html pages under `root` that the navigation does not list (not checked)."""
    return sorted(rel for p in root.rglob("*.html")
                  if (rel := p.relative_to(root).as_posix()) not in pages and p.parts[len(root.parts)]
                  not in {"_static", "_sources"} and p.name not in SKIP_PAGES and rel != "index.html")


# -- chromium -------------------------------------------------------------------------------------------------

MEASURE_JS = r"""
(function () {
  var EXCLUDE = '.cell_input, .toctree-wrapper, a.headerlink, .prev-next-area, script, style, #aqa-check';
  function write(out) {
    var pre = document.createElement('pre');
    pre.id = 'aqa-check';
    pre.style.display = 'none';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  function selector(el) {
    var s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    var cls = (el.getAttribute('class') || '').trim().split(/\s+/).filter(Boolean).slice(0, 2);
    if (cls.length) s += '.' + cls.join('.');
    return s;
  }
  function snippet(el) {
    var t = (el.textContent || '').replace(/\s+/g, ' ').trim();
    if (t) return t.slice(0, 80);
    var img = el.tagName === 'IMG' ? el : el.querySelector('img');
    return img ? (img.getAttribute('alt') || (img.getAttribute('src') || '').split('/').pop()) : '';
  }
  function hide(els) {
    return els.map(function (e) {
      var was = e.style.getPropertyValue('display');
      e.style.setProperty('display', 'none', 'important');
      return was;
    });
  }
  function restore(els, saved) { els.forEach(function (e, k) { e.style.setProperty('display', saved[k]); }); }
  function visible(r) { return r.width > 0 || r.height > 0; }
  function measure() {
    var art = document.querySelector('#main-content article.bd-article') || document.querySelector('.bd-article')
      || document.querySelector('main article') || document.querySelector('[role=main]');
    var out = {viewport_width: window.innerWidth, page_scroll_width: document.documentElement.scrollWidth};
    if (!art) { out.error = 'no article column (.bd-article) in the page'; write(out); return; }
    var ar = art.getBoundingClientRect();
    out.column = {left: ar.left, right: ar.right, width: ar.width};
    var container = art.closest('.bd-article-container') || art.parentElement;
    out.container_right = container.getBoundingClientRect().right;
    // visually hidden elements (screen-reader text, MathJax's assistive MathML) are clipped to nothing by
    // design but still count in their parent's scrollWidth: take them out while measuring widths
    var srOnly = Array.prototype.filter.call(art.querySelectorAll('*'), function (el) {
      var cs = getComputedStyle(el);
      return (cs.clip && cs.clip !== 'auto') || (cs.clipPath && cs.clipPath !== 'none');
    });
    var srDisplay = hide(srOnly);
    var index = new Map(), boxes = [];
    art.querySelectorAll('*').forEach(function (el, i) {
      index.set(el, i);
      var cs = getComputedStyle(el);
      var r = el.getBoundingClientRect();
      if (!visible(r)) return;
      var clips = ['auto', 'scroll', 'hidden', 'clip', 'overlay'].indexOf(cs.overflowX) >= 0 && cs.display !== 'inline';
      if (r.right - ar.right <= 0.5 && !(clips && el.scrollWidth - el.clientWidth > 0.5)) return;
      var anc = [];
      for (var p = el.parentElement; p && p !== art; p = p.parentElement) anc.push(index.get(p));
      var sec = el.closest('section[id]');
      boxes.push({i: i, ancestors: anc, tag: el.tagName.toLowerCase(), selector: selector(el),
                  section: sec ? sec.id : '', snippet: snippet(el), right: r.right,
                  part: el.closest('.cell_input') ? 'notebook code cell'
                    : el.closest('.cell_output') ? 'notebook output' : '',
                  scroll_width: el.scrollWidth, client_width: el.clientWidth, overflow_x: cs.overflowX,
                  display: cs.display});
    });
    out.boxes = boxes;
    function firstTop(sel) {
      var best = null;
      art.querySelectorAll(sel).forEach(function (el) {
        var r = el.getBoundingClientRect();
        if (!visible(r)) return;
        var top = r.top + window.scrollY;
        if (best === null || top < best) best = top;
      });
      return best;
    }
    out.table_top = firstTop('table');
    out.figure_top = firstTop('img, figure');
    restore(srOnly, srDisplay);
    out.code = Array.prototype.map.call(art.querySelectorAll('.cell_input'), function (e) {
      return e.innerText;
    }).join('\n');
    var excluded = Array.prototype.slice.call(art.querySelectorAll(EXCLUDE));
    var saved = hide(excluded);
    out.text = art.innerText;
    var blocks = Array.prototype.slice.call(art.querySelectorAll('table, pre, .cell_output'));
    var savedBlocks = hide(blocks);
    out.prose = art.innerText;  // the reading text: no tables, code blocks or notebook outputs
    restore(blocks, savedBlocks);
    restore(excluded, saved);
    write(out);
  }
  function ready() {
    var waits = [];
    if (document.fonts && document.fonts.ready) waits.push(document.fonts.ready);
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) waits.push(mj.startup.promise);
    Promise.all(waits).catch(function () {}).then(function () {
      setTimeout(function () {
        try { measure(); } catch (e) { write({error: 'measuring failed: ' + e}); }
      }, 500);
    });
  }
  if (document.readyState === 'complete') ready(); else window.addEventListener('load', ready);
})();
"""

_RESULT = re.compile(r'<pre id="aqa-check"[^>]*>(.*?)</pre>', re.DOTALL)


def fail_to_run(message: str) -> NoReturn:
    """The check cannot run at all: one line on stderr, exit status 2 (1 means a check failed)."""
    print(f"check_book: {message}", file=sys.stderr)
    raise SystemExit(2)


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def _chromium(chromium: str, profile: Path, url: str, *flags: str) -> tuple[int, str, str]:
    """Run headless chromium once; its own process group is killed on timeout."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", *flags, url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return -1, out, f"timed out after {TIMEOUT_S} s\n{err}"
    return proc.returncode, out, err


def inject(page_html: str) -> str:
    """The page with the measuring script at the end of its <body>."""
    script = f"<script>{MEASURE_JS}</script>"
    at = page_html.lower().rfind("</body>")
    return page_html + script if at < 0 else page_html[:at] + script + page_html[at:]


def measure_page(chromium: str, mirror: Path, work: Path, page: str, screenshots: Path | None) -> dict:
    """Load `page` (a copy with the script injected, beside its original in `mirror`) and return the
    measurements, plus a screenshot of the original when asked."""
    original = mirror / page
    check = original.with_name(original.stem + ".check.html")
    check.write_text(inject(original.read_text(encoding="utf-8", errors="replace")), encoding="utf-8")
    profile = work / "profiles" / page.replace("/", "_")
    rc, out, err = _chromium(chromium, profile, check.as_uri(), f"--window-size={WIDTH},{HEIGHT}", "--dump-dom")
    found = _RESULT.search(out)
    if not found:
        tail = " | ".join(line for line in err.strip().splitlines()[-3:] if line.strip())
        result = {"error": f"chromium gave no measurements (exit {rc}): {tail or 'no stderr'}"}
    else:
        result = json.loads(html.unescape(found.group(1)))
    if screenshots is not None:
        png = screenshots / (page.removesuffix(".html").replace("/", "_") + ".png")
        rc, _, err = _chromium(chromium, profile, original.as_uri(), f"--window-size={WIDTH},{SCREENSHOT_HEIGHT}",
                               "--hide-scrollbars", f"--screenshot={png}")
        if not png.is_file():
            result.setdefault("warnings", []).append(f"no screenshot (chromium exit {rc})")
    return result


def mirror_of(root: Path, into: Path) -> Path:
    """A folder shaped like `root` whose files are links to root's, so a page written into it finds
    its _static/ and _images/ by the same relative paths."""
    mirror = into / "html"
    shutil.copytree(root.resolve(), mirror, copy_function=os.symlink)
    return mirror


# -- the report -----------------------------------------------------------------------------------------------

def check(root: Path, screenshots: Path | None = None) -> dict:
    """Measure every page of the book in `root` and return all figures and failures."""
    chromium = find_chromium()
    if chromium is None:
        fail_to_run("chromium not found (install Debian's `chromium`, or set $CHROMIUM to its path)")
    if not root.is_dir():
        fail_to_run(f"{root} is not a folder (build the book first: make book)")
    landing = landing_page(root)
    pages = book_pages(root, landing)
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="check_book-") as tmp:
        mirror = mirror_of(root, Path(tmp))
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            measured = list(pool.map(lambda p: measure_page(chromium, mirror, Path(tmp), p, screenshots), pages))
    report = {"book": str(root), "chromium": chromium, "window": [WIDTH, HEIGHT], "landing": landing,
              "word_rule": WORD_RULE, "not_in_navigation": pages_left_out(root, pages), "pages": [], "failures": []}
    failures = report["failures"]
    for page, m in zip(pages, measured, strict=True):
        entry = {"page": page, **{k: m.get(k) for k in ("viewport_width", "page_scroll_width", "column",
                                                       "container_right", "table_top", "figure_top", "warnings")}}
        report["pages"].append(entry)
        if "error" in m:
            failures.append(f"{page}: {m['error']}")
            entry.update(words=None, code_words=None, prose_words=None, offenders=[])
            continue
        entry.update(words=count_words(m["text"]), code_words=count_words(m["code"]),
                     prose_words=count_words(m.get("prose", "")))
        entry["offenders"] = [{k: o[k] for k in OFFENDER_FIELDS} for o in offenders(m["boxes"], m["column"]["right"])]
        if page == landing:
            entry["verdict"] = verdict_check(m["text"])
            entry["first_words"] = first_words(m["text"])
            failures += [f"{page} (landing): {p}" for p in entry["verdict"]["problems"]]
            failures += [f"{page} (landing): {p}" for p in first_screen_problems(m["table_top"], m["figure_top"])]
        failures += [f"{page}: {describe(o)}" for o in entry["offenders"]]
        if m["page_scroll_width"] > m["viewport_width"] + TOLERANCE_PX:
            failures.append(f"{page}: the page scrolls sideways by {m['page_scroll_width'] - m['viewport_width']} px")
        if m["column"]["right"] > m["container_right"] + TOLERANCE_PX:
            failures.append(f"{page}: the article column reaches {m['column']['right'] - m['container_right']:.0f} px "
                            "past its container (a wide child stretched it)")
    counted = [p["words"] for p in report["pages"] if p["words"] is not None]
    report["total_words"] = sum(counted)
    report["total_code_words"] = sum(p["code_words"] or 0 for p in report["pages"])
    report["total_prose_words"] = sum(p.get("prose_words") or 0 for p in report["pages"])
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def print_report(report: dict, log=print) -> None:
    log(f"{report['book']}: {len(report['pages'])} pages (the landing page {report['landing']} and its navigation), "
        f"headless {report['chromium']} at {report['window'][0]} px, in {report['seconds']} s")
    log(f"({report['word_rule']})")
    width = max(len(p["page"]) for p in report["pages"])
    log(f"{'page':<{width}}  {'words':>6}  {'prose':>6}  {'code':>5}  {'too wide':>8}")
    for p in report["pages"]:
        words_, prose, code = ("?", "?", "?") if p["words"] is None else (
            p["words"], p.get("prose_words", "?"), p["code_words"])
        log(f"{p['page']:<{width}}  {words_:>6}  {prose:>6}  {code:>5}  {len(p['offenders']):>8}")
    log(f"{'total':<{width}}  {report['total_words']:>6}  {report.get('total_prose_words', 0):>6}  "
        f"{report['total_code_words']:>5}  {sum(len(p['offenders']) for p in report['pages']):>8}  "
        f"(~{report['total_words'] / 220:.0f} min at 220 words/min; prose: words outside tables, code blocks "
        "and notebook outputs)")
    if report["not_in_navigation"]:
        log(f"not in the navigation (not checked): {', '.join(report['not_in_navigation'])}")
    landing = next(p for p in report["pages"] if p["page"] == report["landing"])
    if "verdict" in landing:
        v = landing["verdict"]
        tops = ", ".join(f"first {k} at " + ("none" if landing[f"{k}_top"] is None else f"{landing[f'{k}_top']:.0f} px")
                         for k in ("table", "figure"))
        log(f"landing page: difference {v['difference']}, interval {v['interval']}, verdict word "
            f"{v['verdict_word']} in its first {FIRST_WORDS} words; {tops}")
    for p in report["pages"]:
        for w in p.get("warnings") or []:
            log(f"warning: {p['page']}: {w}")
    for f in report["failures"]:
        log(f"FAIL {f}")
    log(f"{len(report['failures'])} failure(s)" if report["failures"] else "all checks pass")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("html", type=Path, help="the built book's html folder (book/_build/html)")
    ap.add_argument("--json", type=Path, help="write every figure (words, boxes, offenders, failures) here")
    ap.add_argument("--screenshots", type=Path, help=f"save a {WIDTH}x{SCREENSHOT_HEIGHT} screenshot of each page here")
    args = ap.parse_args(argv)
    report = check(args.html, args.screenshots)
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
