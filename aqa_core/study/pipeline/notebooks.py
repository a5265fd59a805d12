"""What each single-run notebook of the book builds (only what is missing) before it shows it: the
mini data and base model (`ensure_mini_scale`), one evaluation (`ensure_evaluation`), the
validity checks (`ensure_validity`), or one GRPO/SFT run with its sweep (`ensure_run`). The
notebooks call these and display the returned `aqa_core.study.records.Record`.

When a notebook's parameters name one of the study's own stages (a row of the design in a results
folder, with the study's recipe and settings), the missing stages and everything they need are run
by the study's cached runner, one line per stage, so that `papermill notebooks/grpo.ipynb out.ipynb`
on a fresh clone builds the data, the base model and the run it records. Any other parameters (a
full-scale run with a launcher, a recipe of one's own) run their command directly. A stage or
command that fails stops the notebook with one line (`design.StudyError`), its log named.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ...files import FolderBusy, hold_output
from ...runs import SWEEP_FILE, last_checkpoint, run_finished
from ..design import ROWS, Row, StudyError
from ..records import Record, evaluation_record, mini_scale_record, run_record
from ..validity import validity_report
from .runner import Stage, run_stages
from .server import NOTEBOOK_ENV
from .stages import VALIDITY_STAGES, aqa_argv, recipe_of, recipe_path, run_sets, sweep_argv


def _run_or_fail(argv: list[str]) -> None:
    print("$", shlex.join(argv), flush=True)
    rc = subprocess.run(argv, env={**os.environ, **NOTEBOOK_ENV}).returncode
    if rc != 0:
        raise StudyError(f"{shlex.join(argv[2:4])} failed (exit code {rc}); its error is printed above")


def needed(stages: Sequence[Stage], targets: Sequence[str]) -> list[Stage]:
    """The stages `targets` need: themselves and every stage they depend on, in the given order."""
    by_name = {s.name: s for s in stages}
    keep, todo = set(), list(targets)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo += by_name[name].deps
    return [s for s in stages if s.name in keep]


def study_options(out: str | Path, study_args: str = ""):
    """The study's options (`python -m aqa_core study`'s) for the results folder `out`, from a
    notebook's `study_args` (e.g. "--data-args '--train 40' --grpo-recipe tiny.yaml")."""
    from .study import parser

    try:
        return parser().parse_args(["--out", str(out), "--jobs", str(min(2, os.cpu_count() or 1)),
                                    *shlex.split(study_args)])
    except SystemExit:  # argparse printed the one line that says what is wrong
        raise StudyError(f"study_args {study_args!r}: not options of python -m aqa_core study") from None


def build(out: str | Path, targets: Sequence[str], opt_in: Sequence[str] = (), study_args: str = "") -> None:
    """Run the study's stages `targets` on the results folder `out` with the cached runner, and the
    stages they need (seed 0), one line per stage; a failure stops with one line naming its log.
    `study_args`: options of `python -m aqa_core study` (sizes, recipes) that the stages take."""
    from .study import stages_of

    out = Path(out)
    a = study_options(out, study_args)
    stages = needed(stages_of(a, seeds=1, opt_in=opt_in), targets)
    print(f"building {', '.join(targets)} in {out} with the study's cached runner ({len(stages)} stages)", flush=True)
    try:
        with hold_output(out):  # one study per results folder: a running `make book` refuses this, naming itself
            timings = run_stages(stages, out, jobs=a.jobs, echo=False)
    except FolderBusy as e:
        raise StudyError(str(e)) from None
    bad = next((t for t in timings if t.status in ("failed", "skipped")), None)
    if bad is not None:
        where = f"; its log: {bad.log}" if bad.log else ""
        raise StudyError(f"stage {bad.stage} {bad.status}{where}")


def ensure_mini_scale(data_dir: str | Path, base_dir: str | Path, seed: int = 0, study_args: str = "") -> Record:
    """The mini benchmark and base model, built first when missing (the study's data and base
    stages when both folders are a results folder's, else `mini-data` and `mini-base`)."""
    data_dir, base_dir = Path(data_dir), Path(base_dir)
    ran = not (data_dir / "manifest.json").is_file() or not (base_dir / "build_info.json").is_file()
    if ran and data_dir.parent == base_dir.parent and (data_dir.name, base_dir.name, seed) == ("data", "base", 0):
        build(data_dir.parent, ["base"], study_args=study_args)
    elif ran:
        if not (data_dir / "manifest.json").is_file():
            _run_or_fail(aqa_argv("mini-data", "--out", data_dir, "--seed", seed, "--quiet"))
        if not (base_dir / "build_info.json").is_file():
            _run_or_fail(aqa_argv("mini-base", "--data", data_dir, "--out", base_dir, "--seed", seed, "--quiet"))
    return mini_scale_record(data_dir, base_dir, ran=ran)


def ensure_evaluation(model: str | Path, data: str | Path, out: str | Path, audio_dir: str | Path | None = None,
                      prompt: int = 2, extra_args: Sequence[str] = (), study_args: str = "") -> Record:
    """One model scored on one question file (`python -m aqa_core evaluate`), run first when its
    score report is missing: the study's stage when it is one of the study's direct evaluations."""
    out = Path(out)
    ran = not out.with_name(out.name + ".score.json").is_file()
    study = Path(model).parent
    row = next((r for r in ROWS if not r.trained and r.prompt == prompt), None)
    if ran and row and not extra_args and (Path(model), Path(data), out) == (
            study / "base", study / "data" / "test-mini.json", study / row.folder / "predictions.json"):
        build(study, [row.stage], study_args=study_args)
    elif ran:
        _run_or_fail(aqa_argv("evaluate", "--model", model, "--data", data, "--out", out, "--prompt", prompt,
                              *extra_args, *(["--audio-dir", str(audio_dir)] if audio_dir else [])))
    return evaluation_record(model, out, prompt, ran=ran)


def ensure_validity(result_dir: str | Path, study_args: str = "") -> dict:
    """The validity checks of a results folder (`aqa_core.study.validity.validity_report`), their
    stages built first when an output is missing."""
    from .study import stages_of

    result_dir = Path(result_dir)
    stages = {s.name: s for s in stages_of(study_options(result_dir, study_args), seeds=1)}
    if not all(p.exists() for name in VALIDITY_STAGES for p in stages[name].outputs):
        build(result_dir, VALIDITY_STAGES, study_args=study_args)
    return validity_report(result_dir)


def ensure_run(runner: str, recipe: str | Path, run_dir: str | Path, overrides: Sequence[str] = (),
               launcher: str = "", test_data: str | Path | None = None, audio_dir: str | Path | None = None,
               validation_data: str | Path | None = None, validation_audio_dir: str | Path | None = None,
               study_args: str = "") -> Record:
    """A GRPO or SFT run: trained first only when `run_dir` holds no finished run (an interrupted
    one resumes), swept over its checkpoints when `test_data` is given and no sweep exists, then
    recorded. A run of the study (`run_dir` a row's folder in a results folder, its recipe, the
    study's own `--set`s, no launcher) is built by the cached runner with what it needs (the data,
    the base model, the tower store, the base model's evaluation); `launcher` (e.g. "accelerate
    launch --config_file recipes/accelerate/zero3.yaml") replaces `python -m` on a multi-GPU node.
    `study_args`: the study's options for the stages it builds (its recipe is the run's)."""
    if runner not in ("grpo", "sft"):
        raise ValueError(f"runner must be 'grpo' or 'sft', got {runner!r}")
    run_dir = Path(run_dir)
    missing = not run_finished(run_dir) or (test_data is not None and not (run_dir / SWEEP_FILE).is_file())
    row = _study_row(runner, recipe, run_dir, overrides, launcher, study_args)
    if missing and row is not None:
        build(run_dir.parent, [f"sweep-{row.stage}"], [row.opt_in] if row.opt_in else [], study_args)
    elif missing:
        if not run_finished(run_dir):
            head = shlex.split(launcher) + ["-m", "aqa_core"] if launcher else [sys.executable, "-m", "aqa_core"]
            argv = head + [runner, "--recipe", str(recipe), "--output-dir", str(run_dir)]
            argv += [a for o in overrides for a in ("--set", o)]
            _run_or_fail(argv + (["--resume"] if last_checkpoint(run_dir) is not None else []))
        if test_data and not (run_dir / SWEEP_FILE).is_file():
            _run_or_fail(sweep_argv(run_dir, test_data, audio_dir, validation_data, validation_audio_dir))
    return run_record(runner, run_dir, ran=missing)


def _study_row(runner: str, recipe: str | Path, run_dir: Path, overrides: Sequence[str], launcher: str,
               study_args: str) -> Row | None:
    """The design's row a run is, when it is the study's own (see `ensure_run`: the study's recipe
    for it, `study_args`' or the design's), else None."""
    row = next((r for r in ROWS if r.trained and r.folder == run_dir.name and r.runner == runner), None)
    if row is None or launcher:
        return None
    from .study import recipes_of

    study_recipe = recipe_of(row, recipes_of(study_options(run_dir.parent, study_args)))
    same_recipe = recipe_path(recipe).resolve() == recipe_path(study_recipe).resolve()
    return row if same_recipe and set(overrides) <= set(run_sets(run_dir.parent, row)) else None
