"""A small Sphinx extension (book/_config.yml `extra_extensions`) for the book's results pages.

- A page of `results/` that the book's table of contents lists and the build lacks (a fresh
  clone, before any study) is copied from the reference archive (`aqa_core.study.archive`), with
  a banner that names it; when the report itself comes from an archive, every page of the book
  says so at its top (the theme's announcement). So `jupyter-book build book` renders the whole
  book from a fresh clone, and a build from fresh results replaces it page by page.
- Pages that quote glued numbers from a results notebook are rebuilt whenever that notebook
  changes (Sphinx does not track cross-document glue).
"""
from __future__ import annotations

from pathlib import Path

import yaml

RESULTS = "results"


def results_pages(srcdir: Path) -> list[str]:
    """The `results/NAME` pages the book's _toc.yml lists, by NAME."""
    toc = yaml.safe_load((srcdir / "_toc.yml").read_text(encoding="utf-8"))
    files = [ch["file"] for part in toc.get("parts", []) for ch in part.get("chapters", [])]
    return [f.split("/", 1)[1] for f in files if f.startswith(f"{RESULTS}/")]


def fill_from_reference(srcdir: Path) -> str | None:
    """Copy every listed results page the book lacks from the reference archive; returns the
    announcement the book shows when its report comes from an archive, else None."""
    from .archive import REFERENCE, copied_from, copy_page, read_archive

    missing = [name for name in results_pages(srcdir) if not (srcdir / RESULTS / f"{name}.ipynb").is_file()]
    if missing:
        archive = read_archive(REFERENCE)
        for name in missing:
            copy_page(archive, name, srcdir / RESULTS / f"{name}.ipynb")
    mark = copied_from(srcdir / RESULTS / "report.ipynb")
    if mark is None:
        return None
    return f"This book shows {mark['label']}, not results made here: make book runs the study and rebuilds it."


def _config_inited(app, config) -> None:
    announcement = fill_from_reference(Path(app.srcdir))
    if announcement:
        config.html_theme_options = {**(config.html_theme_options or {}), "announcement": announcement}


def _outdated_quoting_pages(app, env, added, changed, removed):  # Sphinx event signature
    """Pages quote glued numbers from `results/*.ipynb` (cross-document glue), which Sphinx does
    not track: when a results notebook changed, rebuild every other page too."""
    if any(doc.startswith(f"{RESULTS}/") for doc in set(added) | set(changed)):
        return [doc for doc in env.found_docs if not doc.startswith(f"{RESULTS}/")]
    return []


def setup(app):  # Sphinx extension entry point
    app.connect("config-inited", _config_inited)
    app.connect("env-get-outdated", _outdated_quoting_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
