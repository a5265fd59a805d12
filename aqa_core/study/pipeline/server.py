"""The stage server: `python -m aqa_core` stages forked from a process that imported torch,
transformers, peft and TRL once (`multiprocessing`'s forkserver, started when the first stage
runs), so that each starts without those imports: about 5 s sooner than a fresh interpreter on
the 2-core machine, with the same outputs byte for byte (scripts/bench_stage_server.py; about a
minute of wall time over a cold `make book`). The light FRESH_COMMANDS and any other command run
as subprocesses. As with any `multiprocessing` start, a script that runs stages keeps its own
top-level code under `if __name__ == "__main__":` (`python -m aqa_core study` does).
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import threading
from collections.abc import Sequence

#: The environment every stage and notebook kernel runs with (the stage server's too: some
#: libraries read their settings when imported, tqdm and huggingface_hub among them).
NOTEBOOK_ENV = {"MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1", "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}

#: What the stage server (`multiprocessing`'s forkserver) imports once, so that each
#: `python -m aqa_core` stage forked from it starts with them loaded: about 5 s sooner than a fresh
#: interpreter on the 2-core machine, for every stage (scripts/bench_stage_server.py). Third-party libraries only:
#: the package's own modules are imported by each stage from the files on disk, which its cache key hashed.
PRELOAD = ("torch", "transformers", "transformers.trainer", "peft", "trl", "trl.trainer.grpo_trainer",
           "trl.trainer.sft_trainer", "datasets", "accelerate")
#: Commands that import neither torch nor transformers: a fresh interpreter starts them in a
#: fraction of a second, without waiting for the server's imports (the study's first stage,
#: mini-data, runs while the server starts beside it).
FRESH_COMMANDS = frozenset({"score", "mmau-version", "avqa-convert", "mini-data", "lr-search", "archive"})
_SERVER_LOCK = threading.Lock()


def aqa_command(argv: Sequence[str]) -> list[str] | None:
    """The arguments of `python -m aqa_core ARGS...` run by this interpreter, else None."""
    argv = list(argv)
    return argv[3:] if argv[:3] == [sys.executable, "-m", "aqa_core"] else None


def forks(argv: Sequence[str]) -> bool:
    """Whether a stage with this command line is forked from the stage server (when its output
    is not echoed): an `aqa_core` command other than the FRESH_COMMANDS."""
    args = aqa_command(argv)
    command = next((x for x in args if not x.startswith("-")), None) if args is not None else None
    return command is not None and command not in FRESH_COMMANDS


def stage_server() -> multiprocessing.context.BaseContext:
    """The forkserver context, its server started once with PRELOAD imported and NOTEBOOK_ENV in
    its environment (some libraries read their settings when imported: tqdm, huggingface_hub)."""
    ctx = multiprocessing.get_context("forkserver")
    with _SERVER_LOCK:
        ctx.set_forkserver_preload(list(PRELOAD))
        # every stage's environment holds NOTEBOOK_ENV anyway, so other threads lose nothing here
        saved = {k: os.environ.get(k) for k in NOTEBOOK_ENV}
        os.environ.update(NOTEBOOK_ENV)
        try:
            from multiprocessing import forkserver

            forkserver.ensure_running()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return ctx


def forked_stage(args: list[str], log_path: str, env: dict[str, str]) -> None:
    """The body of a forked stage: output to the log, the stage's environment and torch threads
    (what OMP_NUM_THREADS gives a fresh interpreter), then `python -m aqa_core ARGS` as
    `aqa_core.__main__` runs it; its exit code is the process's."""
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    threads = env.get("OMP_NUM_THREADS")
    if threads != os.environ.get("OMP_NUM_THREADS"):  # the server started with another value (or none)
        import torch

        n = threads.split(",")[0].strip() if threads else ""
        torch.set_num_threads(int(n) if n.isdigit() and int(n) > 0 else (os.cpu_count() or 1))
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [importlib.util.find_spec("aqa_core.__main__").origin, *args]
    from aqa_core.__main__ import run

    sys.exit(run())
