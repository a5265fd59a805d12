"""The study's stage cache: a stage reruns exactly when its command, config, code or an upstream
output changed (or it is forced), and every run is timed into timings.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from aqa_core.study.pipeline.runner import Stage, run_stages, write_timings
from aqa_core.study.pipeline.stages import NOTEBOOKS, study_stages


def _stage(name: str, out: Path, deps: list[str], text: str = "x") -> Stage:
    target = out / f"{name}.txt"
    code = f"import pathlib,time; p=pathlib.Path({str(target)!r}); p.write_text({text!r} + str(time.time_ns()))"
    return Stage(name, [sys.executable, "-c", code], deps, [target], code=[], clear=[target])


def _statuses(timings) -> dict[str, str]:
    return {t.stage: t.status for t in timings}


def test_second_run_is_cached_and_changes_propagate_downstream(tmp_path):
    a, b, c = _stage("a", tmp_path, []), _stage("b", tmp_path, ["a"]), _stage("c", tmp_path, [])
    assert _statuses(run_stages([a, b, c], tmp_path, echo=False)) == {"a": "ran", "b": "ran", "c": "ran"}
    first_b = (tmp_path / "b.txt").read_text()
    assert _statuses(run_stages([a, b, c], tmp_path, echo=False)) == {"a": "cached", "b": "cached", "c": "cached"}
    assert (tmp_path / "b.txt").read_text() == first_b

    a2 = _stage("a", tmp_path, [], text="changed")  # a's command changed: a and b rerun, c does not
    assert _statuses(run_stages([a2, b, c], tmp_path, echo=False)) == {"a": "ran", "b": "ran", "c": "cached"}
    assert (tmp_path / "b.txt").read_text() != first_b


def test_force_glob_and_missing_output_rerun(tmp_path):
    stages = [_stage("grpo-p2", tmp_path, []), _stage("grpo-p3", tmp_path, []), _stage("sft-full", tmp_path, [])]
    run_stages(stages, tmp_path, echo=False)
    assert _statuses(run_stages(stages, tmp_path, force=["grpo-*"], echo=False)) == {
        "grpo-p2": "ran", "grpo-p3": "ran", "sft-full": "cached"}
    (tmp_path / "sft-full.txt").unlink()
    assert _statuses(run_stages(stages, tmp_path, echo=False))["sft-full"] == "ran"
    with pytest.raises(SystemExit, match="matches no stage"):
        run_stages(stages, tmp_path, force=["nope"], echo=False)


def test_failure_skips_dependents_and_timings_are_written(tmp_path):
    bad = Stage("bad", [sys.executable, "-c", "raise SystemExit(3)"], [], [tmp_path / "never"], code=[])
    after = _stage("after", tmp_path, ["bad"])
    other = _stage("other", tmp_path, [])
    timings = run_stages([bad, after, other], tmp_path, jobs=2, echo=False)
    assert _statuses(timings) == {"bad": "failed", "after": "skipped", "other": "ran"}
    path = write_timings(timings, tmp_path, wall=1.0, jobs=2)
    data = json.loads(path.read_text())
    assert [s["stage"] for s in data["stages"]] == ["bad", "after", "other"]
    assert (tmp_path / "logs" / "bad.log").read_text().startswith("$ ")


def test_a_kernel_that_never_started_is_started_again(tmp_path):
    """The first attempt prints papermill's kernel-start error; the stage is retried, not failed.
    Any other failure is not retried."""
    target, count = tmp_path / "nb.txt", tmp_path / "attempts"
    code = (f"import pathlib,sys; c=pathlib.Path({str(count)!r}); n=int(c.read_text()) if c.exists() else 0; "
            f"c.write_text(str(n+1)); "
            f"sys.exit(print(\"RuntimeError: Kernel didn't respond in 60 seconds\") or 1) if n == 0 else "
            f"pathlib.Path({str(target)!r}).write_text('ok')")
    flaky = Stage("nb", [sys.executable, "-c", code], [], [target], code=[])
    assert _statuses(run_stages([flaky], tmp_path, echo=False)) == {"nb": "ran"}
    assert count.read_text() == "2"

    other = Stage("bad", [sys.executable, "-c", f"open({str(count)!r}, 'a').write('x'); raise SystemExit(2)"],
                  [], [tmp_path / "never"], code=[])
    assert _statuses(run_stages([other], tmp_path, echo=False)) == {"bad": "failed"}
    assert count.read_text() == "2x"  # one attempt


@pytest.mark.slow
def test_an_aqa_stage_forked_from_the_stage_server_writes_what_a_fresh_interpreter_writes(
        tmp_path, tiny_run_inputs, monkeypatch):
    """`python -m aqa_core` stages fork from the stage server (its libraries imported once): no
    new interpreter, the same predictions byte for byte as a fresh one, and a failing command's
    exit code and its one error line in the stage's log."""
    import subprocess

    from aqa_core.study.pipeline import runner, server
    from aqa_core.study.pipeline.stages import aqa_argv

    t = tiny_run_inputs(tmp_path / "in")

    def evaluate(name: str) -> Stage:
        pred = tmp_path / name / "predictions.json"
        return Stage(name, aqa_argv("evaluate", "--model", t["model"], "--data", t["data"] / "test-mini.json",
                                    "--audio-dir", t["data"], "--out", pred, "--max-new-tokens", "4"),
                     [], [pred], code=[])

    fresh = evaluate("fresh")
    assert _statuses(run_stages([fresh], tmp_path, jobs=1, echo=True)) == {"fresh": "ran"}  # echoed: a subprocess

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a forked stage started a subprocess: {args[0]}")

    monkeypatch.setattr(runner.subprocess, "Popen", no_subprocess)
    forked = evaluate("forked")
    bad = Stage("bad", aqa_argv("sweep", "--run", tmp_path / "nope", "--data", tmp_path / "x.json"), [], [], code=[])
    assert server.forks(forked.argv) and not server.forks(aqa_argv("mini-data", "--out", tmp_path))
    assert not server.forks([sys.executable, "-c", "pass"])
    assert _statuses(run_stages([forked, bad], tmp_path, jobs=2, echo=False)) == {"forked": "ran", "bad": "failed"}
    monkeypatch.setattr(runner.subprocess, "Popen", subprocess.Popen)
    assert ((tmp_path / "forked" / "predictions.json").read_bytes()
            == (tmp_path / "fresh" / "predictions.json").read_bytes())
    log = (tmp_path / "logs" / "bad.log").read_text()
    assert log.startswith("$ ") and f"error: {tmp_path / 'nope'}: cannot tell the run's prompt" in log


def test_code_change_changes_the_key(tmp_path):
    s = Stage("s", ["true"], [], [], code=["aqa_core/study/design.py"])
    assert s.key({}) == s.key({})
    assert s.key({}) != s.key({"up": "other-output"})
    assert s.key({}, hash_code=True) != s.key({}, hash_code=False)
    with pytest.raises(FileNotFoundError, match="aqa_core/study.py"):
        Stage("moved", ["true"], [], [], code=["aqa_core/study.py"]).key({})


def test_study_stages_cover_the_study(tmp_path):
    stages = study_stages(tmp_path / "mini", seeds=2, book=tmp_path / "book", opt_in=["prompt3"])
    names = [s.name for s in stages]
    for name in ["data", "base", "eval-base-p2", "eval-base-p1", "sft-full", "sft-lora", "grpo-p2", "grpo-p3",
                 "sweep-grpo-p3", "sft-full-seed1", "sweep-grpo-p2-seed1", *[f"nb-{n}" for n in NOTEBOOKS]]:
        assert name in names, name
    by = {s.name: s for s in stages}
    assert set(by["nb-report"].deps) >= {"sweep-grpo-p2", "eval-base-p1"}
    grpo3 = " ".join(by["grpo-p3"].argv)
    assert "--set prompt=3" in grpo3 and str(tmp_path / "mini" / "base") in grpo3
    assert "seed=" in " ".join(by["grpo-p2-seed1"].argv)
    assert all(names.index(d) < names.index(s.name) for s in stages for d in s.deps)  # dependency order
    # seed 0's sweeps: the chosen checkpoint again without listening; step 0 on test reused from the
    # base's own evaluation with the run's prompt (<1>, <2>; no base evaluation has prompt <3>)
    sft = " ".join(by["sweep-sft-full"].argv)
    assert "--ablate-selected silence mismatched" in sft and "eval-base-p1" in by["sweep-sft-full"].deps
    assert f"--base-test-from {tmp_path / 'mini' / 'eval' / 'base-prompt1' / 'predictions.json'}" in sft
    assert "--base-test-from" not in " ".join(by["sweep-grpo-p3"].argv)
    assert "--ablate-selected" not in " ".join(by["sweep-grpo-p2-seed1"].argv)
    assert "notebooks/grpo.ipynb" in " ".join(by["nb-grpo_prompt3"].argv)


def test_without_prompt3_its_page_shows_the_archive_unless_the_folder_holds_the_run(tmp_path):
    """GRPO <3> is opt-in (design.OPT_IN): the default study trains none of its stages and copies
    the reference archive's page in place of its run notebook, with no dependency on them (a new
    reference copies anew); a results folder that already holds a swept GRPO <3> run gets its run
    notebook (record only)."""
    out = tmp_path / "mini"
    by = {s.name: s for s in study_stages(out, book=tmp_path / "book")}
    assert not any("grpo-p3" in name for name in by)
    page = by["nb-grpo_prompt3"]
    assert "archive" in page.argv and "--copy-page" in page.argv and page.deps == []
    assert {"book/archive/reference/archive.json", "book/archive/reference/pages/grpo_prompt3.ipynb"} <= set(page.code)
    assert not any("p3" in d for d in by["nb-report"].deps)
    (out / "grpo-prompt3" / "eval").mkdir(parents=True)
    (out / "grpo-prompt3" / "eval" / "sweep.json").write_text("{}")
    page = {s.name: s for s in study_stages(out, book=tmp_path / "book")}["nb-grpo_prompt3"]
    assert "notebooks/grpo.ipynb" in " ".join(page.argv) and page.deps == []


def test_the_ablations_plan_adds_its_runs_to_the_main_studys(tmp_path):
    stages = study_stages(tmp_path / "mini", seeds=3, book=tmp_path / "book", plan="ablations")
    by = {s.name: s for s in stages}
    runs = [n for n in by if n.startswith("abl-")]
    assert len(runs) == 13 * 3 and all(f"sweep-{n}" in by for n in runs)
    assert {"sft-full", "grpo-p2-seed2", "sweep-sft-lora"} <= set(by)  # the main runs are the full-size points
    argv = lambda name: " ".join(map(str, by[name].argv))  # noqa: E731
    small = argv("abl-sft-full-train150-seed2")
    assert "max_train_samples=150" in small and "max_steps=300" in small and "seed=44" in small
    assert ("max_train_samples=600" in argv("abl-grpo-prompt2-train600")
            and "prompt=2" in argv("abl-grpo-prompt2-train600"))
    assert "prompt=2" in argv("abl-sft-lora-prompt2") and "sft_tagged=true" in argv("abl-sft-lora-prompt2")
    assert ("train_audio=silence" in argv("abl-grpo-prompt2-silent")
            and "train_audio=silence" in argv("abl-sft-full-silent"))
    sweep = argv("sweep-abl-sft-full-silent")
    assert "--test-at chosen" in sweep and "--validation-limit 200" in sweep and "--include-base" not in sweep
    assert str(tmp_path / "mini" / "ablations" / "sft-full-silent") in sweep
    assert "--batch-size 32" in sweep and "--tower-cache-file" in sweep  # the study's evaluation settings
    assert not any(n.startswith("nb-") for n in by)  # the book is made by `make book` afterwards


def test_the_ready_stage_with_the_longest_chain_to_the_end_starts_first(tmp_path):
    """Scheduling only: `short` is listed first, but `long` heads a chain of 10 + 5 expected
    seconds, so with one worker it runs first; a stage's last real run replaces its weight."""
    from aqa_core.study.pipeline.runner import critical_path

    short, long_, tail = _stage("short", tmp_path, []), _stage("long", tmp_path, []), _stage("tail", tmp_path, ["long"])
    short.weight, long_.weight, tail.weight = 3, 10, 5
    assert critical_path([short, long_, tail], {}) == {"short": 3, "long": 15, "tail": 5}
    assert critical_path([short, long_, tail], {"short": 40.0})["short"] == 40.0
    run_stages([short, long_, tail], tmp_path, jobs=1, echo=False)
    started = sorted(("short", "long", "tail"), key=lambda n: int((tmp_path / f"{n}.txt").read_text()[1:]))
    assert started == ["long", "tail", "short"]


def test_the_study_weighs_its_stages():
    stages = {s.name: s for s in study_stages(Path("runs/mini"), jobs=2, opt_in=["prompt3"])}
    assert stages["grpo-p3"].weight > stages["sweep-grpo-p3"].weight > stages["nb-report"].weight > 1


@pytest.mark.slow
def test_a_tiny_ablation_runs_end_to_end_and_reaches_the_page(tmp_path, tiny_run_inputs):
    """The ablations plan at tiny size: the study's own stages (the tower store, full SFT trained on
    silent clips, its validation/chosen-test sweep) run by the stage runner on a tiny model and
    benchmark, then read by the ablations table."""
    import dataclasses
    import shutil

    import yaml

    from aqa_core.runs import read_sweep
    from aqa_core.study import ablations
    from aqa_core.study.archive import REFERENCE
    from aqa_core.study.design import ROOT as REPO
    from aqa_core.study.report import opt_in_sources

    t = tiny_run_inputs(tmp_path / "in")
    out = tmp_path / "mini"
    shutil.copytree(t["data"], out / "data")
    shutil.copytree(t["model"], out / "base")
    recipe = tmp_path / "sft-tiny.yaml"  # the mini recipe, 4 steps of 4 (the main budget's shape, tiny)
    recipe.write_text(yaml.safe_dump({"_base": str(REPO / "recipes/sft/mini-full.yaml"), "max_steps": 4,
                                      "save_steps": 2, "per_device_train_batch_size": 4}))
    wanted = ("tower", "abl-sft-full-silent", "sweep-abl-sft-full-silent")
    stages = [dataclasses.replace(s, deps=[d for d in s.deps if d in wanted])
              for s in study_stages(out, seeds=1, recipes={"sft-full": str(recipe)}, book=tmp_path / "book",
                                    plan="ablations", eval_args=["--max-new-tokens", "4"])
              if s.name in wanted]
    timings = run_stages(stages, out, echo=False)
    assert {x.stage: x.status for x in timings} == dict.fromkeys(wanted, "ran")
    run = out / "ablations" / "sft-full-silent"
    assert yaml.safe_load((run / "config.yaml").read_text())["train_audio"] == "silence"
    sweep = read_sweep(run)
    assert sweep["test_at"] == "chosen" and sum(r["test"] is not None for r in sweep["rows"]) == 1
    table = ablations.table_ablations(out, n_resamples=100)
    row = table.frame[table.frame["run"] == "Full + Prompt <1>, silent training audio"].iloc[0]
    assert row["seeds"] == 1 and table.values["mini_ablation_runs_done"] == 1
    origin, archived = opt_in_sources(out, REFERENCE)  # this build's runs: none of the archive's
    assert origin["mini_ablation_origin"] == "this build" and not any(k.startswith("mini_abl") for k in archived)
