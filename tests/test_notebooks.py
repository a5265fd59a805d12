"""The mission's own notebook commands: `papermill notebooks/grpo.ipynb out.ipynb` builds what it
records through the study's cached runner (here at tiny sizes, from nothing), and a notebook whose
input is missing stops with one line, never a nested traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_STUDY = ("--data-args '--train 8 --validation 4 --test 6 --base 8' --base-args '--tiny --steps 2' "
              "--eval-args '--max-new-tokens 4'")


def papermill(notebook: str, out: Path, **params: str | list) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / notebook), str(out), "-k", "python3"]
    for k, v in params.items():
        argv += ["-p", k, v] if isinstance(v, str) else ["-y", yaml.safe_dump({k: v})]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)


def outputs(notebook: Path) -> tuple[str, list[dict]]:
    """(every stream the cells printed, every error output) of an executed notebook."""
    cells = json.loads(notebook.read_text())["cells"]
    outs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    text = "".join("".join(o["text"]) if isinstance(o["text"], list) else o["text"]
                   for o in outs if o["output_type"] == "stream")
    return text, [o for o in outs if o["output_type"] == "error"]


@pytest.mark.slow
def test_the_grpo_notebook_builds_its_run_from_nothing(tmp_path):
    recipe = tmp_path / "grpo-tiny.yaml"  # the mini recipe, 2 steps of 2 prompts
    recipe.write_text(yaml.safe_dump({"_base": str(ROOT / "recipes/grpo/mini.yaml"), "max_steps": 2, "save_steps": 1,
                                      "warmup_steps": 0, "per_device_train_batch_size": 4, "num_generations": 2,
                                      "max_completion_length": 8}))
    study, data = tmp_path / "mini", tmp_path / "mini" / "data"
    params = {"recipe": str(recipe), "run_dir": str(study / "grpo-prompt2"), "test_data": str(data / "test-mini.json"),
              "audio_dir": str(data), "validation_data": str(data / "validation.jsonl"),
              "validation_audio_dir": str(data / "validation-audios"),
              "study_args": f"--grpo-recipe {recipe} {TINY_STUDY}"}
    proc = papermill("grpo.ipynb", tmp_path / "first.ipynb", **params)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text, errors = outputs(tmp_path / "first.ipynb")
    assert errors == []
    for stage in ("data", "base", "tower", "eval-base-p2", "grpo-p2", "sweep-grpo-p2"):  # one line per stage
        assert f"study: {stage:<20} ran" in text, text
    assert (study / "grpo-prompt2" / "eval" / "sweep.json").is_file()
    # (a finished, swept run is only recorded: the book's notebooks, tests/test_book.py)


@pytest.mark.slow
def test_a_notebook_without_its_inputs_stops_in_one_line(tmp_path):
    proc = papermill("report.ipynb", tmp_path / "report.ipynb", result_dirs=[str(tmp_path / "none")])
    assert proc.returncode != 0
    _, errors = outputs(tmp_path / "report.ipynb")
    assert len(errors) == 1 and errors[0]["ename"] == "StudyError"
    assert errors[0]["traceback"] == [f"StudyError: {errors[0]['evalue']}"]  # one line, no nested traceback
    assert "no results yet; `make book` runs the study" in errors[0]["evalue"]


def test_a_failing_command_of_a_notebook_is_one_line(capfd):
    """A run of one's own (not the study's) whose command fails: the command's own error, then one
    line that names it (design.StudyError renders no traceback in a notebook)."""
    from aqa_core.study.design import StudyError
    from aqa_core.study.pipeline.notebooks import _run_or_fail

    with pytest.raises(StudyError) as caught:
        _run_or_fail([sys.executable, "-c", "import sys; sys.exit('error: none.jsonl: not found')"])
    assert "failed (exit code 1); its error is printed above" in str(caught.value)
    assert caught.value._render_traceback_() == [f"StudyError: {caught.value}"]
    assert "none.jsonl: not found" in capfd.readouterr().err
