"""The whole mini study, stage by stage, cached; then the notebooks the book renders.

    python -m aqa_core study --out runs/mini [--seeds N] [--jobs J] [--prompt3] [--force STAGE ...]

The stages are the study's design made into commands (`aqa_core.study.pipeline.stages`), each its
own process (those that load torch forked from the stage server, `aqa_core.study.pipeline.server`)
run by the cached runner (`aqa_core.study.pipeline.runner`): a stage is skipped when its stamp
(OUT/.stamps/STAGE.json) holds the same key and its outputs exist; a stage that really runs gets a
new output id, so everything downstream of it runs again. `--force STAGE` (a name or glob, e.g.
`grpo-*`, or `all`) reruns a stage regardless. Timings (ran or cached, and the seconds of the
stage's last real run) are printed and written to OUT/timings.json.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...files import hold_output
from ..design import ABLATION_DIR, PLANS, ROOT, SEEDS, find_row
from .runner import Stage, Timing, retry_unstarted_kernel, run_stages, write_timings
from .server import NOTEBOOK_ENV
from .stages import NOTEBOOKS, archived_page, archived_part, notebook_parameters, papermill_argv, study_stages


def run_study(stages: list[Stage], out: Path, jobs: int, force: Sequence[str] = (), hash_code: bool = True,
              timings_dir: Path | None = None, echo: bool = True) -> list[Timing]:
    """Run the stages on the results folder `out`, one study at a time (a second one on the same
    folder refuses, naming the first), and write the timings (to `timings_dir`, default `out`)."""
    with hold_output(out):
        t0 = time.perf_counter()
        timings = run_stages(stages, out, jobs, force, hash_code=hash_code, echo=echo)
        folder = timings_dir or out
        folder.mkdir(parents=True, exist_ok=True)
        path = write_timings(timings, folder, time.perf_counter() - t0, jobs)
    print(f"timings: {path}")
    return timings


def execute_notebooks(result_dir: str | Path, results_dir: str | Path, recipes: dict[str, Sequence[Path]] | None = None,
                      figures_dir: str | Path = "figures", result_dirs: Sequence[str | Path] | None = None,
                      cwd: str | Path = ROOT, jobs: int = 2) -> None:
    """Execute every notebook of the book on one results folder (record mode: nothing trains
    when the folder is complete) into `results_dir`, `jobs` kernels at a time (tests, and result
    folders made by hand); the page of an opt-in row the folder has not run is the reference
    archive's."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> None:
        if archived_part(name, [], Path(cwd) / result_dir) is not None:  # the folder as the notebooks see it
            archived_page(name, results_dir / f"{name}.ipynb")
            return
        template = NOTEBOOKS[name][0]
        params = notebook_parameters(name, Path(result_dir), figures_dir=figures_dir, result_dirs=result_dirs)
        if name == "report" and recipes:
            params["grpo_recipes"] = [str(p) for p in recipes["grpo"]]
            params["sft_recipes"] = [str(p) for p in recipes["sft"]]
        argv = papermill_argv(ROOT / "notebooks" / template, results_dir / f"{name}.ipynb", params, Path(cwd))
        procs: list[subprocess.CompletedProcess] = []

        def attempt() -> tuple[int, str]:
            procs.append(subprocess.run(argv, cwd=cwd, env={**os.environ, **NOTEBOOK_ENV}, capture_output=True,
                                        text=True))
            return procs[-1].returncode, procs[-1].stdout[-4000:] + procs[-1].stderr[-4000:]

        retry_unstarted_kernel(attempt, f"papermill {template}")
        proc = procs[-1]
        if proc.returncode != 0:
            raise RuntimeError(f"papermill {template} -> {name}.ipynb failed:\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for fut in [pool.submit(one, name) for name in NOTEBOOKS]:
            fut.result()


def build_book(book: str | Path = ROOT / "book", strict: bool = True) -> str:
    """`jupyter-book build BOOK [--warningiserror --keep-going]`; returns the build log, raising
    when the build fails."""
    exe = Path(sys.executable).with_name("jupyter-book")
    argv = [str(exe) if exe.exists() else "jupyter-book", "build", str(book)]
    argv += ["--warningiserror", "--keep-going"] if strict else []
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **NOTEBOOK_ENV})
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{log[-4000:]}")
    return log


def parser() -> argparse.ArgumentParser:
    """The study's options (`python -m aqa_core study --help`); the notebooks read theirs with it too."""
    ap = argparse.ArgumentParser(prog="python -m aqa_core study", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/mini", help="results folder (default runs/mini)")
    ap.add_argument("--plan", choices=PLANS, default="main",
                    help="main: the study and the book's notebooks; lr-search: the analysis plan's learning-rate "
                         "search (seed-0 runs plus x1/3 and x3 rates, validation only); ablations: the main study's "
                         "runs plus training-set sizes, SFT with prompt <2> and training without listening (three "
                         "seeds each, under OUT/ablations; then make book shows them)")
    ap.add_argument("--prompt3", action="store_true",
                    help="also train GRPO with prompt <3> (three seeds), an opt-in part of the design (design.OPT_IN; "
                         "about 6 minutes more on 2 cores); without it the book quotes the reference archive's run")
    ap.add_argument("--seeds", type=int, default=SEEDS,
                    help=f"training seeds per run (default {SEEDS}, the analysis plan's; extra seeds go to RUN-seedN)")
    ap.add_argument("--jobs", type=int, default=1, help="stages run at once (torch threads are split among them)")
    ap.add_argument("--force", action="append", default=[], metavar="STAGE",
                    help="rerun a stage (name or glob, e.g. 'grpo-*'; 'all'); repeatable")
    ap.add_argument("--book", default=str(ROOT / "book"), help="book folder: notebooks go to BOOK/results/")
    ap.add_argument("--grpo-recipe", default=find_row("grpo_p2").recipe)
    ap.add_argument("--sft-full-recipe", default=find_row("sft_full").recipe)
    ap.add_argument("--sft-lora-recipe", default=find_row("sft_lora").recipe)
    ap.add_argument("--data-args", default="", help="extra mini-data options, e.g. '--train 600 --test 150'")
    ap.add_argument("--base-args", default="", help="extra mini-base options, e.g. '--steps 60'")
    ap.add_argument("--eval-args", default="", help="extra evaluate/sweep options, e.g. '--batch-size 16'")
    ap.add_argument("--no-code-hash", action="store_true",
                    help="cache on commands, recipes and inputs only, not on source files (edit loop)")
    ap.add_argument("--list", action="store_true", help="print the stages and their commands, run nothing")
    return ap


def recipes_of(a: argparse.Namespace) -> dict[str, str]:
    """The recipes the study's options `a` (`parser()`) name, as `stages.recipe_of` reads them."""
    return {"grpo": a.grpo_recipe, "sft-full": a.sft_full_recipe, "sft-lora": a.sft_lora_recipe}


def stages_of(a: argparse.Namespace, seeds: int | None = None, opt_in: Sequence[str] = ()) -> list[Stage]:
    """The stages the study's options `a` (`parser()`) ask for (`seeds`: in place of theirs)."""
    seeds = seeds or (1 if a.plan == "lr-search" else a.seeds)
    return study_stages(Path(a.out), seeds, recipes_of(a), a.jobs, a.book, shlex.split(a.data_args),
                        shlex.split(a.base_args), shlex.split(a.eval_args), plan=a.plan,
                        opt_in=[*opt_in, *(["prompt3"] if a.prompt3 else [])])


def cli(argv: list[str]) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    if a.seeds < 1 or a.jobs < 1:
        ap.error("--seeds and --jobs must be >= 1")
    out = Path(a.out)
    stages = stages_of(a)
    if a.list:
        for s in stages:
            print(f"{s.name:<20} <- {', '.join(s.deps[:4]) + (' ...' if len(s.deps) > 4 else '') or '-'}\n    "
                  f"{shlex.join(s.argv)[:300]}")
        return 0
    # the main study's timings stay its own
    timings = run_study(stages, out, a.jobs, a.force, hash_code=not a.no_code_hash,
                        timings_dir=out / ABLATION_DIR if a.plan == "ablations" else out)
    failed = [t.stage for t in timings if t.status in ("failed", "skipped")]
    if failed:
        print(f"study: failed or skipped: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
