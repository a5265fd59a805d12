"""`python -m aqa_core <command> ...`: one entry point for every stage of the study.

Each command lives in the module that owns it, as a `cli(argv) -> int` function, and is
imported only when called, so `score` starts in a fraction of a second without torch.

A user's mistake never ends in a traceback: an error of this package's own kinds (a bad recipe,
data file, run folder, audio file or evaluation input), a missing or unwritable path, a full
disk, Ctrl-C or a closed output pipe prints one line on stderr and exits non-zero (2; 130 for
Ctrl-C). Any other exception is a bug and keeps its traceback. `AQA_DEBUG=1` (or `--debug`
before the command) shows the full traceback of every error.
"""
from __future__ import annotations

import errno
import importlib
import os
import sys

COMMANDS = {
    "score": ("aqa_core.eval.mmau", "Score an MMAU predictions file as the official evaluation.py does."),
    "mmau-version": ("aqa_core.eval.mmau_versions",
                     "Name the MMAU test-mini version of a question or predictions file."),
    "avqa-convert": ("aqa_core.data", "Convert official AVQA question JSON + wavs into the R1-AQA JSONL form."),
    "mini-data": ("aqa_core.mini.data", "Generate the synthetic mini audio-QA benchmark."),
    "mini-base": ("aqa_core.mini.model", "Build and briefly train the mini Qwen2-Audio base model."),
    "mini-probe": ("aqa_core.mini.probe",
                   "Linear probes on the frozen audio tower, per sub-category (a validity check)."),
    "tower-cache": ("aqa_core.tower_cache", "Encode clips once with a frozen audio tower, for every later stage."),
    "grpo": ("aqa_core.train.grpo", "Train with GRPO (audio in every pass)."),
    "sft": ("aqa_core.train.sft", "Supervised fine-tuning, full or LoRA."),
    "preflight": ("aqa_core.train.preflight",
                  "Memory, disk and time a recipe needs, and its inputs checked, before any GPU hour."),
    "evaluate": ("aqa_core.eval.evaluate", "Batched MMAU-style inference, scored as the official scorer."),
    "sweep": ("aqa_core.eval.sweep", "Evaluate every checkpoint of a run."),
    "study": ("aqa_core.study.pipeline.study", "Run the whole mini study, stage by stage, cached."),
    "lr-search": ("aqa_core.study.lr_search", "Summarize the learning-rate search (after study --plan lr-search)."),
    "archive": ("aqa_core.study.archive", "Archive a build's book (its executed pages and provenance), or show one."),
}


#: Exception classes of this package that mean "the user's input is wrong", not "a bug".
USER_ERRORS = {"AudioError", "RecipeError", "RunDirError", "DataError", "EvalError", "MMAUInputError", "FolderBusy",
               "ArchiveError", "StudyError"}
#: OS errors that name something the user gave or controls (a path, the disk).
USER_OS_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ENOSPC,
                  errno.EDQUOT, errno.EROFS, errno.EEXIST}


def user_error_message(exc: BaseException) -> str | None:
    """The one line to print for a user's mistake, or None when `exc` is a bug."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C); resumable work keeps its progress (rerun the same command)"
    if isinstance(exc, BrokenPipeError):
        return "the output pipe was closed before the command finished writing"
    if isinstance(exc, OSError) and exc.errno in USER_OS_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    if any(k.__name__ in USER_ERRORS and k.__module__.startswith("aqa_core") for k in type(exc).__mro__):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _quiet_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so that Python's exit flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("AQA_DEBUG", "") not in ("", "0")
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    try:
        return _dispatch(argv)
    except (Exception, KeyboardInterrupt) as exc:  # sorted into user mistakes and bugs below
        message = user_error_message(exc)
        if debug or message is None:
            raise
        if isinstance(exc, BrokenPipeError):
            _quiet_stdout()
        print(f"error: {message}", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 2


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m aqa_core <command> [options]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<13} {help_text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    cli = getattr(module, "cli_" + name.replace("-", "_"), None) or module.cli
    return int(cli(rest) or 0)


def run() -> int:
    """`main()`, then stdout flushed: a pipe closed by the reader (`... | head`) is reported in one
    line, not as Python's "Exception ignored" message at exit."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        print(f"error: {user_error_message(BrokenPipeError())}", file=sys.stderr)
        code = code or 2
    return code


if __name__ == "__main__":
    sys.exit(run())
