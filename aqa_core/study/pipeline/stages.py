"""The study's stages, made from its design (`aqa_core.study.design`), and the commands each runs.

data (mini-data) -> base (mini-base, which keeps its frozen tower's outputs for the base clips) ->
tower (tower-cache: the frozen tower's output for every train, validation and test clip, which
every later stage replays) -> eval-base-p2, eval-base-p1 (direct inference), eval-base-p2-silence,
eval-base-p2-mismatched and probe (the validity checks of book/plan.md) -> each trained row of the
design with each seed (SEED: RUN-seedN; an opt-in row only when its part is asked for) ->
sweep-* (every checkpoint on test and validation) -> nb-* (papermill executes notebooks/*.ipynb
into book/results/*.ipynb, which the book's _toc.yml reads; the notebooks only record runs that
exist, they never retrain).

A stage's cache key hashes its command, its resolved recipe, the source files of the code it runs
(`stage_code`, the import closure of its entry modules: `aqa_core.study.pipeline.code`) and the
output ids of the stages it reads (`aqa_core.study.pipeline.runner`).
"""
from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from ...runs import SWEEP_FILE
from ..archive import ARCHIVE_FILE, REFERENCE, ArchiveError, copy_page, read_archive
from ..design import (
    ABLATION_DIR,
    EVAL_BATCH,
    EVAL_MAX_NEW_TOKENS,
    LISTENING_ABLATIONS,
    OPT_IN,
    PAPER_RECIPES,
    PLANS,
    ROOT,
    ROWS,
    RUNS,
    SEEDS,
    SWEEP_TEST_AT,
    VALIDATION_ITEMS,
    VALIDITY_ABLATIONS,
    Row,
    ablation_runs,
    expected_seconds,
    find_row,
    plan_train_size,
    seed_suffix,
    seed_value,
)
from .code import code_files
from .runner import Stage

#: The tower stage's store (every train, validation and test clip) and the base stage's (the base
#: clips, for the probe), under the study's output folder (`aqa_core.tower_cache`).
TOWER_STORE = Path("tower") / "outputs.safetensors"
BASE_TOWER_STORE = Path("tower") / "base-clips.safetensors"
VALIDITY_STAGES = ("eval-base-p1", "eval-base-p2", *(f"eval-base-p{p}-{a}" for p, a in VALIDITY_ABLATIONS), "probe")
#: Executed notebooks: output name (book/results/NAME.ipynb) -> (template, the stage or stages it
#: records; "*": all before it). A row's page records its seed-0 sweep (its direct evaluation).
NOTEBOOKS = {
    "mini_data": ("mini_data.ipynb", "base"),
    "validity": ("validity.ipynb", VALIDITY_STAGES),
    **{r.page: ("evaluate.ipynb", r.stage) for r in ROWS if not r.trained},
    **{r.page: (f"{r.runner}.ipynb", f"sweep-{r.stage}") for r in RUNS},
    "report": ("report.ipynb", "*"),
}


@functools.lru_cache(maxsize=1)
def stage_code() -> dict[str, list[str]]:
    """Source files each kind of stage runs (their content is part of the stage's cache key): the
    import closure of the command's module, plus the data files it reads. (`python -m aqa_core`
    only dispatches to that module; package `__init__.py` files hold docstrings only.) Read from
    the source when the stages are made, not when this module is imported: notebook kernels
    import it too."""
    return {
        "data": code_files(["aqa_core.mini.data"]),
        "base": code_files(["aqa_core.mini.model"], ["aqa_core/mini/tokenizer_corpus.txt"]),
        "eval": code_files(["aqa_core.eval.evaluate", "aqa_core.eval.sweep"], ["aqa_core/eval/mmau_versions.json"]),
        "sft": code_files(["aqa_core.train.sft"]),
        "grpo": code_files(["aqa_core.train.grpo"]),
        "probe": code_files(["aqa_core.mini.probe"]),
        "tower": code_files(["aqa_core.tower_cache"]),
        "lr-search": code_files(["aqa_core.study.lr_search"]),
        "archive": code_files(["aqa_core.study.archive"]),
        "notebook": code_files(["aqa_core.study.pipeline.notebooks", "aqa_core.study.report",
                                "aqa_core.study.validity", "aqa_core.study.pipeline.execute"],
                               ["aqa_core/study/paper_results.yaml", "aqa_core/eval/mmau_versions.json"]),
    }


def _weigh(stages: list[Stage]) -> list[Stage]:
    for s in stages:
        s.weight = expected_seconds(s.name)
    return stages


def aqa_argv(*args: str) -> list[str]:
    """`python -m aqa_core ARGS...` with this interpreter (arguments turned to strings)."""
    return [sys.executable, "-m", "aqa_core", *map(str, args)]


def recipe_path(path: str | Path) -> Path:
    """A recipe as given when it exists from here, else relative to the repository."""
    path = Path(path)
    return path if path.exists() or path.is_absolute() else ROOT / path


def _recipe_config(path: str | Path) -> dict:
    from ...config import read_recipe

    return read_recipe(recipe_path(path))


def recipe_of(row: Row, recipes: Mapping[str, str] | None = None) -> str:
    """A trained row's recipe: `recipes[row.stage]`, else `recipes[row.runner]` (the study's
    --sft-full-recipe, --grpo-recipe, ...), else the design's."""
    recipes = recipes or {}
    return recipes.get(row.stage) or recipes.get(row.runner) or row.recipe


def run_sets(out: Path, row: Row, tower_store: Path | None = None) -> list[str]:
    """The `--set`s of a row's training run in the study on `out`: its base model and training
    split (and the tower store it replays), then the row's prompt for GRPO (SFT keeps its recipe's)."""
    data = out / "data"
    return [f"model_name_or_path={out / 'base'}", f"train_data={data / 'train.jsonl'}",
            f"train_audio_dir={data / 'train-audios'}", *([f"tower_cache_file={tower_store}"] if tower_store else []),
            *([f"prompt={row.prompt}"] if row.runner == "grpo" else [])]


def sweep_argv(run_dir: Path, test: str | Path, audio_dir: str | Path | None = None,
               validation: str | Path | None = None, validation_audio_dir: str | Path | None = None,
               extra: Sequence[str] = (), curves: bool = True, base_test: str | Path | None = None,
               test_at: str = SWEEP_TEST_AT["seeds"]) -> list[str]:
    """The checkpoint sweep of one run, as the study and the notebooks run it: the first
    `VALIDATION_ITEMS` validation items (if a validation file is given) at every checkpoint and
    at the base; `curves` (seed 0): the test file at the base (step 0 of the curves), where
    `SWEEP_TEST_AT["curves"]` says, and the chosen checkpoint again with the audio replaced
    (`LISTENING_ABLATIONS`), every checkpoint without a validation file; else the test file at
    `test_at` only (no base, no ablation). `base_test`: the base model's own evaluation with the
    run's prompt, reused as step 0 of the test curve (the same settings: no work repeated)."""
    argv = aqa_argv("sweep", "--run", run_dir, "--data", test, *(["--include-base"] if curves else []))
    argv += ["--audio-dir", str(audio_dir)] if audio_dir else []
    if validation:
        argv += ["--validation", str(validation), "--validation-limit", str(VALIDATION_ITEMS),
                 "--test-at", SWEEP_TEST_AT["curves"] if curves else test_at]
        argv += ["--validation-audio-dir", str(validation_audio_dir)] if validation_audio_dir else []
        argv += ["--ablate-selected", *LISTENING_ABLATIONS] if curves else []
    argv += ["--base-test-from", str(base_test)] if base_test and curves else []
    return argv + list(extra)


def _training_stage(name: str, row: Row, recipe: str, out: Path, run_dir: Path, sets: Sequence[str],
                    threads: int, code: dict[str, list[str]]) -> Stage:
    """One training run of the study on its base model, training split and tower store (`run_sets`,
    then `sets`); GRPO gets its share of the torch threads."""
    argv = aqa_argv(row.runner, "--recipe", recipe_path(recipe), "--output-dir", run_dir,
                    *[a for s in [*run_sets(out, row, out / TOWER_STORE), *sets] for a in ("--set", s)])
    return Stage(name, argv, ["base", "tower"], [run_dir / "metrics.jsonl"], code[row.runner],
                 config={"recipe": _recipe_config(recipe)}, clear=[run_dir],
                 runtime_args=["--set", f"torch_threads={threads}"] if row.runner == "grpo" else [])


def _sweep_stage(name: str, run_dir: Path, out: Path, deps: list[str], eval_args: Sequence[str],
                 code: dict[str, list[str]], **how) -> Stage:
    data = out / "data"
    argv = sweep_argv(run_dir, data / "test-mini.json", data, data / "validation.jsonl", data / "validation-audios",
                      eval_args, **how)
    return Stage(name, argv, deps, [run_dir / SWEEP_FILE], code["eval"], clear=[run_dir / SWEEP_FILE.parent])


def study_stages(out: str | Path, seeds: int = SEEDS, recipes: dict[str, str] | None = None, jobs: int = 1,
                 book: str | Path | None = None, data_args: Sequence[str] = (), base_args: Sequence[str] = (),
                 eval_args: Sequence[str] = (), plan: str = "main", opt_in: Sequence[str] = ()) -> list[Stage]:
    """The study's stages in dependency order, writing under `out` (notebooks under `book`/results).
    `opt_in` names the design's opt-in parts to run (e.g. "prompt3": GRPO <3>'s runs and sweeps).
    `plan` "lr-search" adds the analysis plan's learning-rate search (`aqa_core.study.lr_search`:
    the recipe's rate x1/3 and x3 for GRPO <2>, full and LoRA SFT, seed 0, swept on validation
    only, then its summary) to the seed-0 runs, in place of the notebooks; "ablations" adds the
    ablations plan's runs (`design.ablation_runs`)."""
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
    out = Path(out)
    book = Path(book) if book else ROOT / "book"
    data, base, store, base_store = out / "data", out / "base", out / TOWER_STORE, out / BASE_TOWER_STORE
    test, val = data / "test-mini.json", data / "validation.jsonl"
    threads = max(1, (os.cpu_count() or 2) // max(1, jobs))
    code = stage_code()
    stages = [
        Stage("data", aqa_argv("mini-data", "--out", data, *data_args), [], [data / "manifest.json", test],
              code["data"]),
        # the frozen tower's outputs for the base clips, encoded while training, are kept for the probe
        Stage("base", aqa_argv("mini-base", "--data", data, "--out", base, "--tower-store", base_store, *base_args),
              ["data"], [base / "build_info.json", base_store], code["base"], clear=[base, base_store],
              runtime_args=["--threads", str(os.cpu_count() or 2)], exclusive=True),
        # the frozen tower's outputs for every train, validation and test clip, encoded once for the
        # whole study: every later stage replays them (aqa_core.tower_cache; the same numbers)
        Stage("tower", aqa_argv("tower-cache", "--model", base, "--data", data / "train.jsonl", "--audio-dir",
                                data / "train-audios", "--data", val, "--audio-dir", data / "validation-audios",
                                "--data", test, "--audio-dir", data, "--out", store, "--quiet"),
              ["base"], [store], code["tower"], clear=[store],
              runtime_args=["--threads", str(os.cpu_count() or 2)], exclusive=True),
    ]
    eval_args = ["--batch-size", str(EVAL_BATCH), "--max-new-tokens", str(EVAL_MAX_NEW_TOKENS),
                 "--tower-cache-file", str(store), *eval_args]
    for direct in (r for r in ROWS if not r.trained):
        stages.append(_evaluate_stage(direct.stage, out, direct.prompt, None, eval_args, code))
    for p, audio in VALIDITY_ABLATIONS:
        stages.append(_evaluate_stage(f"eval-base-p{p}-{audio}", out, p, audio, eval_args, code))
    probe = out / "validity" / "probe.json"
    stages.append(Stage("probe", aqa_argv("mini-probe", "--data", data, "--model", base, "--out", probe, "--quiet",
                                          "--tower-store", base_store, "--tower-store", store),
                        ["base", "tower"], [probe], code["probe"], clear=[probe],
                        runtime_args=["--threads", str(threads)]))
    for seed in range(seeds):
        suffix = seed_suffix(seed)
        for row in RUNS:
            if plan == "lr-search" and row.opt_in:
                continue  # the search's methods only (GRPO <3> takes GRPO <2>'s rate)
            if row.opt_in and row.opt_in not in opt_in:
                continue
            recipe = recipe_of(row, recipes)
            run_dir = out / (row.folder + suffix)
            sets = [f"seed={seed_value(int(_recipe_config(recipe).get('seed', 42)), seed)}"] if seed else []
            stages.append(_training_stage(row.stage + suffix, row, recipe, out, run_dir, sets, threads, code))
            direct = next((r for r in ROWS if not r.trained and r.prompt == row.prompt), None)
            reuse = direct.stage if direct and not seed else None  # its step 0 on test
            stages.append(_sweep_stage(f"sweep-{row.stage}{suffix}", run_dir, out,
                                       [row.stage + suffix, *([reuse] if reuse else [])], eval_args, code,
                                       curves=not seed, base_test=out / direct.folder / "predictions.json"
                                       if reuse else None))
    if plan == "lr-search":
        return _weigh(stages + _lr_search_stages(out, recipes, threads, eval_args, code))
    if plan == "ablations":
        return _weigh(stages + _ablation_stages(out, recipes, threads, eval_args, code, seeds))
    return _weigh(stages + _notebook_stages(out, book, recipes, [s.name for s in stages]))


def _evaluate_stage(name: str, out: Path, prompt: int, audio: str | None, eval_args: Sequence[str],
                    code: dict[str, list[str]]) -> Stage:
    """The base model's evaluation on test-mini with one prompt (and its audio replaced by `audio`)."""
    data = out / "data"
    pred = out / "eval" / (f"base-prompt{prompt}" + (f"-{audio}" if audio else "")) / "predictions.json"
    argv = aqa_argv("evaluate", "--model", out / "base", "--data", data / "test-mini.json", "--audio-dir", data,
                    "--out", pred, "--prompt", prompt, *(["--audio", audio] if audio else []), "--overwrite",
                    *eval_args)
    return Stage(name, argv, ["base", "tower"], [pred], code["eval"], clear=[pred.parent])


def _notebook_stages(out: Path, book: Path, recipes: dict[str, str] | None, done_before: list[str]) -> list[Stage]:
    """One papermill stage per page of NOTEBOOKS, after the stages it records; the page of an
    opt-in row this build does not train is the reference archive's page (`archived_page`)."""
    code = stage_code()
    stages = []
    for name, (template, records) in NOTEBOOKS.items():
        target = book / "results" / f"{name}.ipynb"
        deps = done_before if records == "*" else [records] if isinstance(records, str) else list(records)
        part = archived_part(name, done_before, out)
        if part is not None:
            argv = aqa_argv("archive", "--out", REFERENCE, "--copy-page", name, target, "--why", archived_why(part))
            try:  # a new reference copies anew; without one, the copy fails in its own stage, in one line
                kept = [REFERENCE / ARCHIVE_FILE, read_archive(REFERENCE).page(name)]
            except ArchiveError:
                kept = []
            stages.append(Stage(f"nb-{name}", argv, [], [target],
                                code["archive"] + [str(p.relative_to(ROOT)) for p in kept]))
            continue
        params = notebook_parameters(name, out, recipes=recipes)
        stages.append(Stage(f"nb-{name}", papermill_argv(ROOT / "notebooks" / template, target, params, Path.cwd()),
                            [d for d in deps if d in done_before], [target],
                            code["notebook"] + [f"notebooks/{template}"]))
    return stages


def archived_part(page: str, stages: Sequence[str], out: Path) -> str | None:
    """The opt-in part whose row a page records when neither this build (`stages`) nor the results
    folder `out` holds it (its page then comes from the reference archive), else None. A folder
    that holds the row's swept run from an earlier build gets its page recorded, as the report
    uses the run too."""
    row = next((r for r in RUNS if r.page == page and r.opt_in), None)
    if row is None or f"sweep-{row.stage}" in stages or (out / row.folder / SWEEP_FILE).is_file():
        return None
    return row.opt_in


def archived_why(part: str) -> str:
    """Why an opt-in part's page comes from the archive, as its banner says it."""
    return f"this build has not run it; `{OPT_IN[part].how}` does"


def archived_page(name: str, target: Path) -> Path:
    """A page this build does not make, copied from the reference archive with its banner."""
    row = next(r for r in RUNS if r.page == name)
    return copy_page(read_archive(REFERENCE), name, target, archived_why(row.opt_in))


def _lr_search_stages(out: Path, recipes: dict[str, str] | None, threads: int, eval_args: Sequence[str],
                      code: dict[str, list[str]]) -> list[Stage]:
    """The learning-rate search's extra runs (factors other than 1; factor 1 is the main seed-0
    run), their validation-only sweeps, and the summary stage."""
    from ..lr_search import FACTORS, SEARCH_DIR, factor_label, search_run_dir

    data = out / "data"
    stages, deps = [], []
    for row in RUNS:
        if row.opt_in:
            continue
        recipe = recipe_of(row, recipes)
        rcfg = _recipe_config(recipe)
        deps.append(f"sweep-{row.stage}")
        for factor in FACTORS:
            if factor == 1.0:
                continue
            run_dir = search_run_dir(out, row.stage, factor)
            lr = float(rcfg["learning_rate"]) * factor
            stage = f"lr-{row.stage}-{factor_label(factor)}"
            stages.append(_training_stage(stage, row, recipe, out, run_dir, [f"learning_rate={lr!r}"], threads, code))
            argv = aqa_argv("sweep", "--run", run_dir, "--include-base", "--validation", data / "validation.jsonl",
                            "--validation-audio-dir", data / "validation-audios", *eval_args)
            stages.append(Stage(f"sweep-{stage}", argv, [stage], [run_dir / SWEEP_FILE], code["eval"],
                                clear=[run_dir / SWEEP_FILE.parent]))
            deps.append(f"sweep-{stage}")
    summary = out / SEARCH_DIR / "lr_search.json"
    stages.append(Stage("lr-search", aqa_argv("lr-search", "--results", out, "--out", summary), deps, [summary],
                        code["lr-search"], clear=[summary]))
    return stages


def _ablation_stages(out: Path, recipes: dict[str, str] | None, threads: int, eval_args: Sequence[str],
                     code: dict[str, list[str]], seeds: int) -> list[Stage]:
    """The ablations plan's runs (`design.ablation_runs`) for each seed, each with a sweep that
    scores the validation subset at every checkpoint and the test split where `SWEEP_TEST_AT` says."""
    train_size = plan_train_size()
    stages = []
    for folder, (main, overrides) in ablation_runs(train_size).items():
        row = find_row(main)
        recipe = recipe_of(row, recipes)
        rcfg = _recipe_config(recipe)
        sets = list(overrides)
        if row.runner == "sft" and int(rcfg.get("max_steps", -1)) <= 0:  # the main runs' steps, whatever the size
            max_steps = int(float(rcfg["num_train_epochs"]) * train_size) // int(rcfg["per_device_train_batch_size"])
            sets.append(f"max_steps={max_steps}")
        for seed in range(seeds):
            run_dir = out / ABLATION_DIR / (folder + seed_suffix(seed))
            seed_set = [f"seed={seed_value(int(rcfg.get('seed', 42)), seed)}"] if seed else []
            stage = f"abl-{folder}{seed_suffix(seed)}"
            stages.append(_training_stage(stage, row, recipe, out, run_dir, sets + seed_set, threads, code))
            stages.append(_sweep_stage(f"sweep-{stage}", run_dir, out, [stage], eval_args, code, curves=False,
                                       test_at=SWEEP_TEST_AT["ablations"]))
    return stages


def notebook_parameters(name: str, out: Path, recipes: dict[str, str] | None = None,
                        figures_dir: str | Path = "figures", result_dirs: Sequence[str | Path] | None = None) -> dict:
    """The papermill parameters of one executed notebook of the book. Paths are as given (the
    notebooks run in the folder the study runs from); recipes that do not exist from there are
    taken from the repository."""
    out = Path(out)
    data, base = out / "data", out / "base"
    page = {r.page: r for r in ROWS}
    if name == "mini_data":
        return {"data_dir": str(data), "base_dir": str(base)}
    if name == "validity":
        return {"result_dir": str(out)}
    if name in page and not page[name].trained:
        p = page[name].prompt
        return {"model": str(base), "data": str(data / "test-mini.json"), "audio_dir": str(data), "prompt": p,
                "out": str(out / page[name].folder / "predictions.json")}
    if name in page:
        row = page[name]
        return {"recipe": str(recipe_path(recipe_of(row, recipes))), "run_dir": str(out / row.folder),
                "overrides": run_sets(out, row), "test_data": str(data / "test-mini.json"), "audio_dir": str(data),
                "validation_data": str(data / "validation.jsonl"),
                "validation_audio_dir": str(data / "validation-audios")}
    if name == "report":
        dirs = [str(d) for d in result_dirs] if result_dirs else [str(out), str(out.parent / "full")]
        grpo = [*PAPER_RECIPES["grpo"], recipe_of(find_row("grpo_p2"), recipes)]
        sft = [*PAPER_RECIPES["sft"], *(recipe_of(r, recipes) for r in RUNS if r.runner == "sft")]
        return {"result_dirs": dirs, "grpo_recipes": [str(recipe_path(p)) for p in grpo],
                "sft_recipes": [str(recipe_path(p)) for p in sft],
                "figures_dir": str(figures_dir)}
    raise KeyError(f"unknown notebook {name!r}; valid: {', '.join(NOTEBOOKS)}")


def papermill_argv(template: Path, target: Path, params: dict, cwd: Path) -> list[str]:
    """Execute TEMPLATE into TARGET with papermill (`aqa_core.study.pipeline.execute`, a
    subprocess: its own kernel; the parameters' relative paths are relative to CWD, the folder the
    study runs from), then give the page its title from book/_toc.yml when the book lists it there."""
    title = page_titles().get(f"results/{Path(target).stem}")
    return [sys.executable, "-m", "aqa_core.study.pipeline.execute", str(template), str(target), "--params",
            yaml.safe_dump(params), "--cwd", str(cwd), *(["--title", title] if title else [])]


@functools.lru_cache(maxsize=1)
def page_titles() -> dict[str, str]:
    """file -> title of every page book/_toc.yml titles itself (the executed notebooks)."""
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text(encoding="utf-8"))
    return {ch["file"]: ch["title"] for part in toc.get("parts", []) for ch in part.get("chapters", [])
            if "title" in ch}
