"""File helpers every stage shares: content hashes, writes a reader never sees half done, and the
check that an output is not one of a command's inputs.

>>> import tempfile
>>> p = Path(tempfile.mkdtemp()) / "x.txt"
>>> write_atomic(p, "hello\\n")
>>> sha256_file(p)[:12]
'5891b5b522d5'
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO


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
    with atomic_writer(path) as fh:  # after an error (a full disk) no temporary file is left
        fh.write(text)


def is_same_file(a: str | Path, b: str | Path) -> bool:
    """True when two paths name one file (the same resolved path, or the same inode through a link)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def input_it_would_overwrite(out: str | Path, *inputs: str | Path | None) -> Path | None:
    """The first of `inputs` that `out` names (a command must refuse to write over its input), or None."""
    return next((Path(i) for i in inputs if i is not None and is_same_file(out, i)), None)


@contextlib.contextmanager
def atomic_writer(path: str | Path, encoding: str = "utf-8") -> Iterator[TextIO]:
    """A text file handle whose content appears at `path` only when the block ends without an
    error (written to a temporary file beside it, then renamed); on an error the temporary file
    is removed and `path`, if it existed, is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding=encoding) as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_folder(src: str | Path, dst: str | Path) -> None:
    """Put the folder `src`, written whole, in the place of `dst` (removed first if it exists):
    how `final/` and a LoRA checkpoint's `merged/` appear whole or not at all."""
    import shutil

    if Path(dst).exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


class FolderBusy(RuntimeError):
    """Another live process holds the folder or file (the message names it: host, pid, command)."""


def lock_path(path: str | Path) -> Path:
    """The lock file of a results folder or output file: `.NAME.lock` beside it (so taking the
    lock creates neither the folder nor the file)."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def hold_output(path: str | Path) -> Iterator[Path]:
    """One process per results folder or output file: an exclusive lock on `lock_path(path)` for
    the block. A second process refuses at once with `FolderBusy` naming the holder (host, pid,
    command, since when). The lock is the kernel's (`flock`): it ends with its process, however
    that ends, so a lock file left by a process that is gone is simply taken over, with a note
    that names that process. The file holds the holder's record (JSON), for the message and for
    people; it is emptied on release."""
    import fcntl
    import json
    import platform
    import sys
    import time
    import warnings

    path = Path(path)
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(f"{path}: in use by {_holder(lock)}; wait for it to end or stop it") from None
        previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
        if previous:
            warnings.warn(f"{path}: took over the lock of {_holder(lock, previous)}, which is gone", stacklevel=3)
        record = {"host": platform.node(), "pid": os.getpid(), "command": " ".join(sys.argv)[:300],
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        try:
            yield lock
        finally:
            os.ftruncate(fd, 0)  # released: an empty file is no one's lock
    finally:
        os.close(fd)  # closing releases the flock


def _holder(path: Path, text: str | None = None) -> str:
    import json

    try:
        rec = json.loads(text if text is not None else path.read_text(encoding="utf-8"))
        cmd = rec["command"] if len(rec["command"]) <= 100 else rec["command"][:97] + "..."
        return f"pid {rec['pid']} on {rec['host']} ({cmd}, since {rec['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return f"another process (lock file {path})"
