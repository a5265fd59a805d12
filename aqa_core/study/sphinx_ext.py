"""A tiny Sphinx extension (book/_config.yml `extra_extensions`): pages that quote glued numbers
from a results notebook are rebuilt whenever that notebook changes.
"""
from __future__ import annotations


def _outdated_quoting_pages(app, env, added, changed, removed):  # Sphinx event signature
    """Pages quote glued numbers from `results/*.ipynb` (cross-document glue), which Sphinx does
    not track: when a results notebook changed, rebuild every other page too."""
    if any(doc.startswith("results/") for doc in set(added) | set(changed)):
        return [doc for doc in env.found_docs if not doc.startswith("results/")]
    return []


def setup(app):  # Sphinx extension entry point
    """Sphinx extension (book/_config.yml `extra_extensions`): see `_outdated_quoting_pages`."""
    app.connect("env-get-outdated", _outdated_quoting_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
