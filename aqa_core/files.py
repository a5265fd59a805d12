"""File helpers every stage shares: content hashes, and writes a reader never sees half done.

>>> import tempfile
>>> p = Path(tempfile.mkdtemp()) / "x.txt"
>>> write_atomic(p, "hello\\n")
>>> sha256_file(p)[:12]
'5891b5b522d5'
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def update_hash(h: Any, path: str | Path) -> Any:
    """Feed a file's bytes into the hash object `h` (1 MiB at a time); returns `h`."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return update_hash(hashlib.sha256(), path).hexdigest()


def write_atomic(path: str | Path, text: str) -> None:
    """Write text through a temporary file beside `path` and rename it over `path`, so that a
    reader (or a crash) never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
