"""A user's mistake through `python -m aqa_core` ends in one line and a non-zero exit, never a
traceback; a bug keeps its traceback; AQA_DEBUG shows every traceback (aqa_core.__main__)."""
from __future__ import annotations

import errno
import subprocess
import sys
import types

import pytest

from aqa_core import __main__ as entry

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _fake_command(monkeypatch, exc: BaseException) -> None:
    module = types.ModuleType("aqa_fake_command")

    def cli(argv):
        raise exc

    module.cli = cli
    monkeypatch.setitem(sys.modules, "aqa_fake_command", module)
    monkeypatch.setitem(entry.COMMANDS, "fake", ("aqa_fake_command", "raises"))


@pytest.mark.parametrize("exc, code, words", [
    (KeyboardInterrupt(), 130, "interrupted"),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), 2, "pipe was closed"),
    (OSError(errno.ENOSPC, "No space left on device", "/full/disk/out.json"), 2, "/full/disk/out.json"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), 2, "Permission denied: /root/x"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "recipes/nope.yaml"), 2, "recipes/nope.yaml"),
])
def test_user_mistakes_are_one_line(monkeypatch, capsys, exc, code, words):
    _fake_command(monkeypatch, exc)
    monkeypatch.delenv("AQA_DEBUG", raising=False)
    assert entry.main(["fake"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err and "Traceback" not in err


def test_the_packages_own_errors_are_user_mistakes_and_bugs_are_not(monkeypatch, capsys):
    from aqa_core.config import RecipeError
    from aqa_core.data import DataError

    for exc in (RecipeError("learning_rate must be > 0, got -1"), DataError("data.jsonl:3: question_text is null")):
        _fake_command(monkeypatch, exc)
        assert entry.main(["fake"]) == 2
        assert capsys.readouterr().err == f"error: {exc}\n"
    _fake_command(monkeypatch, ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        entry.main(["fake"])
    _fake_command(monkeypatch, RecipeError("x"))
    monkeypatch.setenv("AQA_DEBUG", "1")
    with pytest.raises(RecipeError):  # AQA_DEBUG: every traceback
        entry.main(["fake"])
    monkeypatch.delenv("AQA_DEBUG")
    with pytest.raises(RecipeError):
        entry.main(["--debug", "fake"])


def test_a_closed_pipe_is_one_line_in_a_real_process(tmp_path):
    """`study --list | head -1`: the reader closes the pipe early (it printed a traceback before)."""
    cmd = f"{sys.executable} -m aqa_core study --list --out {tmp_path / 'mini'} | head -1"
    proc = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_a_missing_recipe_is_one_line(capsys, tmp_path):
    assert entry.main(["sft", "--recipe", str(tmp_path / "nope.yaml")]) != 0
    err = capsys.readouterr().err
    assert "nope.yaml" in err and "Traceback" not in err and err.count("\n") == 1


def test_a_closed_pipe_mid_output_is_one_line(tmp_path):
    """Half a megabyte into a pipe that `head -1` closes: a write fails with EPIPE for certain."""
    script = ("import sys, types; from aqa_core import __main__ as m; mod = types.ModuleType('bulk'); "
              "mod.cli = lambda argv: [print('x' * 99) for _ in range(5000)] and 0; sys.modules['bulk'] = mod; "
              "m.COMMANDS['bulk'] = ('bulk', ''); sys.argv = ['aqa', 'bulk']; sys.exit(m.run())")
    proc = subprocess.run(["bash", "-c", f"{sys.executable} -c \"{script}\" | head -1; echo rc=${{PIPESTATUS[0]}}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.splitlines()[0] == "x" * 99 and proc.stdout.splitlines()[-1] == "rc=2", proc.stdout[-200:]
    assert proc.stderr == "error: the output pipe was closed before the command finished writing\n", proc.stderr


@pytest.mark.parametrize("key, value, words", [
    ("max_steps", 0, "max_steps must be > 0 (or -1"), ("beta", -0.1, "beta must be >= 0"),
    ("save_steps", 0, "save_steps must be >= 1"), ("num_generations", 1, "num_generations must be >= 2"),
    ("learning_rate", 0, "learning_rate must be > 0"), ("max_completion_length", 0, "max_completion_length must"),
])
def test_grpo_values_trl_would_accept_silently_are_refused_before_any_work(tmp_path, capsys, key, value, words):
    out = tmp_path / "run"
    rc = entry.main(["grpo", "--recipe", str(ROOT / "recipes/grpo/mini.yaml"), "--set", f"{key}={value}",
                     "--set", f"output_dir={out}"])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # refused before the run folder is made


def test_evaluate_refuses_a_negative_limit_in_one_line(tmp_path, capsys):
    rc = entry.main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path / "q.json"),
                     "--out", str(tmp_path / "p.json"), "--limit", "-3"])
    err = capsys.readouterr().err
    assert rc != 0 and "--limit must be >= 1" in err and err.count("\n") == 1
