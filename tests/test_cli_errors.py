"""A user's mistake through `python -m aqa_core` ends in one line and a non-zero exit, never a
traceback; a bug keeps its traceback; AQA_DEBUG shows every traceback (aqa_core.__main__)."""
from __future__ import annotations

import errno
import shutil
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


# ----------------------------------------------------------------------------- inputs are never overwritten


def _avqa_input(tmp_path, records):
    import json

    import numpy as np
    import soundfile as sf

    (tmp_path / "wavs").mkdir(exist_ok=True)
    sf.write(tmp_path / "wavs" / "abc_10.wav", np.full(8000, 0.1, dtype=np.float32), 16000)
    questions = tmp_path / "avqa.json"
    questions.write_text(json.dumps(records))
    return questions


GOOD = {"id": 1, "video_name": "abc_10", "question_text": "What is making the sound?",
        "multi_choice": ["a bird", "a car"], "answer": 0}


def test_avqa_convert_refuses_to_write_over_its_input(tmp_path, capsys):
    questions = _avqa_input(tmp_path, [GOOD])
    before = questions.read_bytes()
    code = entry.main(["avqa-convert", str(questions), "--audio-dir", str(tmp_path / "wavs"), "--out", str(questions),
                       "--strict"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "input question file" in err and "Traceback" not in err
    assert questions.read_bytes() == before


def test_avqa_convert_error_leaves_no_partial_output_and_an_old_output_intact(tmp_path, capsys):
    questions = _avqa_input(tmp_path, [GOOD, {**GOOD, "id": 2, "answer": 5}])  # the second record is bad
    out = tmp_path / "out.jsonl"
    assert entry.main(["avqa-convert", str(questions), "--audio-dir", str(tmp_path / "wavs"), "--out", str(out)]) == 2
    assert "record 1 (id 2)" in capsys.readouterr().err and not out.exists()
    assert not list(tmp_path.glob(".out.jsonl*"))  # no temporary file left either
    out.write_text("an earlier output\n")
    assert entry.main(["avqa-convert", str(questions), "--audio-dir", str(tmp_path / "wavs"), "--out", str(out)]) == 2
    assert out.read_text() == "an earlier output\n"


def test_evaluate_refuses_an_out_that_is_its_question_file_even_with_overwrite(tmp_path, capsys):
    data = tmp_path / "q.json"
    data.write_text("[]")
    for out in (data, tmp_path / "q"):  # the file itself; a name whose .score.json... is not it: no clash
        code = entry.main(["evaluate", "--model", str(tmp_path / "no-model"), "--data", str(data),
                           "--out", str(out), "--overwrite"])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err  # evaluate's bad-input code
        assert ("would overwrite the question file" in err) == (out == data)
    assert data.read_text() == "[]"


def test_avqa_convert_runs_the_one_audio_check(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    questions = _avqa_input(tmp_path, [GOOD, {**GOOD, "id": 2, "video_name": "quiet_0"},
                                       {**GOOD, "id": 3, "video_name": "junk_0"}])
    sf.write(tmp_path / "wavs" / "quiet_0.wav", np.zeros(8000, dtype=np.float32), 16000)
    (tmp_path / "wavs" / "junk_0.wav").write_bytes(b"not a wav")
    out, argv = tmp_path / "out.jsonl", ["avqa-convert", str(questions), "--audio-dir", str(tmp_path / "wavs")]
    with pytest.warns(UserWarning, match="skipped 2 of 3 question.*unusable"):
        assert entry.main([*argv, "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 1 and "2 skipped: unusable wav" in capsys.readouterr().out
    assert entry.main([*argv, "--out", str(tmp_path / "strict.jsonl"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "quiet_0.wav: silent audio" in err and "2 unusable" in err and err.count("\n") == 1
    assert not (tmp_path / "strict.jsonl").exists()


# ----------------------------------------------------------------------------- one process per results folder


def test_a_second_holder_refuses_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path):
    import json
    import os

    from aqa_core.files import FolderBusy, hold_output

    with hold_output(tmp_path / "f") as lock:
        assert lock == tmp_path / ".f.lock" and not (tmp_path / "f").exists()  # beside: nothing is created
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(FolderBusy, match=rf"in use by pid {os.getpid()} on .*since"):
            with hold_output(tmp_path / "f"):
                pass
    assert lock.read_text() == ""  # released
    lock.write_text(json.dumps({"host": "h", "pid": 99999999, "command": "study", "since": "x"}))
    with pytest.warns(UserWarning, match="took over the lock of pid 99999999 on h"):  # its process died holding it
        with hold_output(tmp_path / "f"):
            pass


@pytest.mark.parametrize("argv", [
    ["study", "--out", "{out}", "--seeds", "1"],
    ["sft", "--recipe", "recipes/sft/mini-full.yaml", "--output-dir", "{out}"],
    ["grpo", "--recipe", "recipes/grpo/mini.yaml", "--output-dir", "{out}"],
], ids=["study", "sft", "grpo"])
def test_a_second_process_on_a_results_folder_refuses_at_once_and_changes_nothing(tmp_path, capsys, monkeypatch, argv):
    from aqa_core.files import hold_output

    monkeypatch.chdir(ROOT)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    with hold_output(out):
        code = entry.main([a.replace("{out}", str(out)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "in use by pid" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]
    assert (out / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_a_second_evaluation_into_one_out_refuses(tmp_path, capsys):
    from aqa_core.files import hold_output

    data = tmp_path / "q.json"
    data.write_text("[]")
    with hold_output(tmp_path / "p.json"):
        code = entry.main(["evaluate", "--model", str(tmp_path), "--data", str(data),
                           "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 1 and "in use by pid" in err and err.count("\n") == 1


def test_extending_a_run_under_a_decaying_schedule_is_refused(tmp_path):
    """--resume with a larger max_steps keeps the old scheduler length (the first extra step ran
    at learning rate 0 under ZeRO-3's check): refused for decaying schedules, allowed for constant ones."""
    from dataclasses import dataclass

    from aqa_core.runs import RunDirError, prepare_run_dir

    @dataclass
    class Cfg:
        max_steps: int = 4
        lr_scheduler_type: str = "linear"

    run = tmp_path / "run"
    prepare_run_dir(run, Cfg())
    (run / "checkpoint-4").mkdir()
    for name in ("model.safetensors", "optimizer.pt"):
        (run / "checkpoint-4" / name).write_bytes(b"x")
    (run / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "max_steps": 4}')
    with pytest.raises(RunDirError, match="cannot extend a run from max_steps 4 to 8 with the 'linear'"):
        prepare_run_dir(run, Cfg(max_steps=8), resume=True)
    prepare_run_dir(run, Cfg(max_steps=4), resume=True)  # the same length: fine
    const = tmp_path / "const"
    prepare_run_dir(const, Cfg(lr_scheduler_type="constant_with_warmup"))
    shutil.copytree(run / "checkpoint-4", const / "checkpoint-4")
    prepare_run_dir(const, Cfg(max_steps=8, lr_scheduler_type="constant_with_warmup"), resume=True)


def test_parameter_count_reads_zero3_shard_sizes():
    import torch

    from aqa_core.train.common import parameter_count

    p = torch.nn.Parameter(torch.zeros(0))
    p.ds_numel = 1234  # what DeepSpeed sets on a sharded parameter
    assert parameter_count(p) == 1234 and parameter_count(torch.nn.Parameter(torch.zeros(3, 4))) == 12
