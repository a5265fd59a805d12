"""The whole mini study, stage by stage, cached; then the notebooks the book renders.

    python -m aqa_core study --out runs/mini [--seeds N] [--jobs J] [--prompt3] [--force STAGE ...]

Stages (each its own process, so memory stays bounded and a crash names its stage; those that
load torch are forked from the stage server of `aqa_core.study.stages`):
data (mini-data) -> base (mini-base, which keeps its frozen tower's outputs for the base clips) ->
tower (tower-cache: the frozen tower's output for every train, validation and test clip, which
every later stage replays) -> eval-base-p2, eval-base-p1 (direct inference),
eval-base-p2-silence, eval-base-p2-mismatched and probe (the validity checks of book/plan.md,
the probe replaying both stores) ->
sft-full, sft-lora (prompt <1>), grpo-p2 (and grpo-p3 with `--prompt3`: opt-in since the analysis
plan's Amendment 5, `aqa_core.study.secondary`) -> sweep-* (every checkpoint on test and
validation) -> nb-* (papermill executes notebooks/*.ipynb into book/results/*.ipynb, which the
book's _toc.yml reads; the notebooks only record runs that exist, they never retrain).

Caching: a stage is skipped when its stamp (OUT/.stamps/STAGE.json) holds the same key and its
outputs exist. The key hashes the stage's command, the resolved recipe (with `_base`), the
source files of the code it runs and the output ids of the stages it reads; a stage that really
runs gets a new output id, so everything downstream of it runs again. `--force STAGE` (a name or
glob, e.g. `grpo-*`, or `all`) reruns a stage regardless. Timings (ran or cached, and the
seconds of the stage's last real run) are printed and written to OUT/timings.json.

The stage runner is `aqa_core.study.stages`; the functions the notebooks call
(`ensure_mini_scale`, `ensure_evaluation`, `ensure_run`) are in `aqa_core.study.notebook`; the
source files each stage's key covers are the import closure of its entry modules
(`aqa_core.study.code`).
"""
from __future__ import annotations

import argparse
import functools
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from ..files import hold_output
from ..runs import SWEEP_FILE
from .code import code_files
from .secondary import PROMPT3_ARCHIVE
from .stages import NOTEBOOK_ENV, ROOT, Stage, retry_unstarted_kernel, run_stages, write_timings

RECIPES = {
    "grpo": "recipes/grpo/mini.yaml",
    "sft-full": "recipes/sft/mini-full.yaml",
    "sft-lora": "recipes/sft/mini-lora.yaml",
}
#: The full-scale recipes Table 1 shows beside the mini ones.
PAPER_RECIPES = {
    "grpo": ["recipes/grpo/paper.yaml", "recipes/grpo/official-code.yaml"],
    "sft": ["recipes/sft/paper-full.yaml", "recipes/sft/paper-lora.yaml"],
}
#: The run folders of the study: stage name -> (runner, folder, prompt, recipe key).
RUNS = {
    "sft-full": ("sft", "sft-full", 1, "sft-full"),
    "sft-lora": ("sft", "sft-lora", 1, "sft-lora"),
    "grpo-p2": ("grpo", "grpo-prompt2", 2, "grpo"),
    "grpo-p3": ("grpo", "grpo-prompt3", 3, "grpo"),
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
        "notebook": code_files(["aqa_core.study.notebook", "aqa_core.study.report", "aqa_core.study.validity",
                                "aqa_core.study.execute"],
                               ["aqa_core/study/paper_results.yaml", "aqa_core/eval/mmau_versions.json"]),
    }


EVAL_BATCH = 32  # questions per generate call in the study's evaluations and sweeps (the CLI default is 8)
# New tokens per answer in the study's evaluations: the mini recipes train completions of at most
# 32 tokens, so longer outputs are runaway text; the paper's evaluation allows 256 (fidelity row 21).
EVAL_MAX_NEW_TOKENS = 64
#: Validation items the study's sweeps score at each checkpoint: the first 200 of the 400 (the
#: analysis plan's validation subset, Amendment 3; the learning-rate search used all 400).
VALIDATION_ITEMS = 200
#: The tower stage's store (every train, validation and test clip) and the base stage's (the base
#: clips, for the probe), under the study's output folder (`aqa_core.tower_cache`).
TOWER_STORE = Path("tower") / "outputs.safetensors"
BASE_TOWER_STORE = Path("tower") / "base-clips.safetensors"
#: Training seeds per run of the study (book/plan.md); extra seeds go to RUN-seedN
SEEDS = 3
#: The base model's evaluations with the audio replaced (the validity checks of book/plan.md):
#: (prompt, --audio value).
VALIDITY_ABLATIONS = ((2, "silence"), (2, "mismatched"))
#: The audio ablations of each seed-0 run at its chosen checkpoint (its sweep's --ablate-selected):
#: Table 2's companion, how much of each model's accuracy comes from listening.
LISTENING_ABLATIONS = ("silence", "mismatched")
VALIDITY_STAGES = ("eval-base-p1", "eval-base-p2", *(f"eval-base-p{p}-{a}" for p, a in VALIDITY_ABLATIONS), "probe")
#: Executed notebooks: output name (book/results/NAME.ipynb) -> (template, the stage or stages it
#: records; "*": all before it).
NOTEBOOKS = {
    "mini_data": ("mini_data.ipynb", "base"),
    "validity": ("validity.ipynb", VALIDITY_STAGES),
    "base_prompt2": ("evaluate.ipynb", "eval-base-p2"),
    "base_prompt1": ("evaluate.ipynb", "eval-base-p1"),
    "sft_full": ("sft.ipynb", "sweep-sft-full"),
    "sft_lora": ("sft.ipynb", "sweep-sft-lora"),
    "grpo_prompt2": ("grpo.ipynb", "sweep-grpo-p2"),
    "grpo_prompt3": ("grpo.ipynb", "sweep-grpo-p3"),
    "report": ("report.ipynb", "*"),
}
#: The plan's secondary run, opt-in since Amendment 5 (`study --prompt3`; `aqa_core.study.secondary`):
#: a build without it trains none of its stages, and its page shows the archived run
#: (`ARCHIVED_TEMPLATE`) unless the results folder already holds one.
OPT_IN_RUNS = ("grpo-p3",)
ARCHIVED_TEMPLATE = "archived_run.ipynb"
# ----------------------------------------------------------------------------- stages


#: Expected seconds of each kind of stage on the 2-core machine (a cold build of 2026-12-01), used
#: only to start the ready stage with the longest chain to the end first (`stages.critical_path`);
#: a stage's last real run replaces its weight. The first matching pattern wins.
STAGE_WEIGHTS = (("data", 10), ("base", 80), ("tower", 50), ("eval-base-*", 11), ("probe", 20), ("sft-full*", 95),
                 ("sft-lora*", 105), ("grpo-p2*", 95), ("grpo-p3*", 115), ("sweep-grpo-p3*", 45), ("sweep-*", 35),
                 ("nb-report", 10), ("nb-*", 3),
                 ("abl-sft-*", 100), ("abl-grpo-*", 95), ("sweep-abl-*", 30))


def _weigh(stages: list[Stage]) -> list[Stage]:
    import fnmatch

    for s in stages:
        s.weight = next((float(w) for pat, w in STAGE_WEIGHTS if fnmatch.fnmatch(s.name, pat)), 1.0)
    return stages


def sweep_argv(run_dir: Path, test: str | Path, audio_dir: str | Path | None = None,
               validation: str | Path | None = None, validation_audio_dir: str | Path | None = None,
               extra: Sequence[str] = (), curves: bool = True, base_test: str | Path | None = None,
               test_at: str = "selected") -> list[str]:
    """The checkpoint sweep of one run, as the study and the notebooks run it: the first
    `VALIDATION_ITEMS` validation items (if a validation file is given) at every checkpoint and
    at the base; the test file at the base (step 0 of the curves), every second checkpoint back
    from the last, and the one chosen on validation (book/plan.md, Amendment 3; every checkpoint
    without a validation file), and that chosen checkpoint again with the audio replaced by silence
    and by another item's clip (Table 2's "how much comes from listening"). `curves` False (the
    study's extra seeds and the ablations, whose test curves no figure draws): the test file only
    at `test_at`: "selected", the checkpoint chosen on validation and the last (the extra seeds:
    the plan's secondary comparison at the last checkpoint), or "chosen", the checkpoint chosen on
    validation alone (the ablations); no base, no ablation. `base_test`: the base model's own
    evaluation with the run's prompt, reused as step 0 of the test curve (the same settings: no
    work repeated)."""
    argv = aqa_argv("sweep", "--run", run_dir, "--data", test, *(["--include-base"] if curves else []))
    argv += ["--audio-dir", str(audio_dir)] if audio_dir else []
    if validation:
        argv += ["--validation", str(validation), "--validation-limit", str(VALIDATION_ITEMS),
                 "--test-at", "alternate" if curves else test_at]
        argv += ["--validation-audio-dir", str(validation_audio_dir)] if validation_audio_dir else []
        argv += ["--ablate-selected", *LISTENING_ABLATIONS] if curves else []
    argv += ["--base-test-from", str(base_test)] if base_test and curves else []
    return argv + list(extra)


def aqa_argv(*args: str) -> list[str]:
    """`python -m aqa_core ARGS...` with this interpreter (arguments turned to strings)."""
    return [sys.executable, "-m", "aqa_core", *map(str, args)]


def recipe_path(path: str | Path) -> Path:
    """A recipe as given when it exists from here, else relative to the repository."""
    path = Path(path)
    return path if path.exists() or path.is_absolute() else ROOT / path


def _recipe_config(path: str | Path) -> dict:
    from ..config import read_recipe

    return read_recipe(recipe_path(path))


PLANS = ("main", "lr-search", "ablations")
#: The ablations plan (issue #11; opt-in: `study --plan ablations`, after or with the main study,
#: whose runs are the full-size, real-audio, prompt-<1> points): folder under OUT/ablations ->
#: (the main run it varies, recipe overrides). Three seeds each, the main study's budget rule
#: (SFT's steps fixed at the main runs', so a smaller training set is cycled through).
ABLATION_DIR = "ablations"
TRAIN_FRACTIONS = (8, 4, 2)  # 1/8, 1/4 and 1/2 of `train`; the main runs are the whole


def plan_train_size() -> int:
    """The size of `train` the analysis plan fixed (book/plan.md's machine-checked constants)."""
    block = (ROOT / "book" / "plan.md").read_text(encoding="utf-8").split("```yaml")[1].split("```")[0]
    return int(yaml.safe_load(block)["sizes"]["train"])


def ablation_runs(train_size: int) -> dict[str, tuple[str, list[str]]]:
    """{ablation folder: (main run name, --set overrides)}: the training-set sizes for full SFT,
    LoRA SFT and GRPO <2>; the prompt confound (SFT trained and evaluated with prompt <2>); and
    training without listening (GRPO <2> and full SFT with silent training clips, Omni-R1's test)."""
    runs: dict[str, tuple[str, list[str]]] = {}
    for k in TRAIN_FRACTIONS:
        for name in ("sft-full", "sft-lora", "grpo-p2"):
            runs[f"{RUNS[name][1]}-train{train_size // k}"] = (name, [f"max_train_samples={train_size // k}"])
    for name in ("sft-full", "sft-lora"):
        runs[f"{RUNS[name][1]}-prompt2"] = (name, ["prompt=2", "sft_tagged=true"])
    for name in ("grpo-p2", "sft-full"):
        runs[f"{RUNS[name][1]}-silent"] = (name, ["train_audio=silence"])
    return runs


def _training_stage(name: str, runner: str, recipe: str, rcfg: dict, out: Path, run_dir: Path,
                    sets: Sequence[str], threads: int, code: dict[str, list[str]]) -> Stage:
    """One training run of the study on its base model, training split and tower store (the
    `--set`s every run shares, then `sets`); GRPO gets its share of the torch threads."""
    data = out / "data"
    shared = [f"model_name_or_path={out / 'base'}", f"train_data={data / 'train.jsonl'}",
              f"train_audio_dir={data / 'train-audios'}", f"tower_cache_file={out / TOWER_STORE}"]
    argv = aqa_argv(runner, "--recipe", recipe_path(recipe), "--output-dir", run_dir,
                    *[a for s in [*shared, *sets] for a in ("--set", s)])
    return Stage(name, argv, ["base", "tower"], [run_dir / "metrics.jsonl"], code[runner], config={"recipe": rcfg},
                 clear=[run_dir], runtime_args=["--set", f"torch_threads={threads}"] if runner == "grpo" else [])


def study_stages(out: str | Path, seeds: int = SEEDS, recipes: dict[str, str] | None = None, jobs: int = 1,
                 book: str | Path | None = None, data_args: Sequence[str] = (), base_args: Sequence[str] = (),
                 eval_args: Sequence[str] = (), plan: str = "main", prompt3: bool = False) -> list[Stage]:
    """The study's stages in dependency order, writing under `out` (notebooks under `book`/results).
    `prompt3` adds GRPO <3>'s runs and sweeps (`OPT_IN_RUNS`, the plan's Amendment 5). `plan`
    "lr-search" adds the analysis plan's learning-rate search (`aqa_core.study.lr_search`:
    the recipe's rate x1/3 and x3 for GRPO <2>, full and LoRA SFT, seed 0, swept on validation
    only, then its summary) to the seed-0 runs, in place of the notebooks."""
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
    out = Path(out)
    recipes = {**RECIPES, **(recipes or {})}
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
    for p in (2, 1):
        pred = out / "eval" / f"base-prompt{p}" / "predictions.json"
        stages.append(Stage(f"eval-base-p{p}",
                            aqa_argv("evaluate", "--model", base, "--data", test, "--audio-dir", data, "--out", pred,
                                     "--prompt", p, "--overwrite", *eval_args),
                            ["base", "tower"], [pred], code["eval"], clear=[pred.parent]))
    for p, audio in VALIDITY_ABLATIONS:
        pred = out / "eval" / f"base-prompt{p}-{audio}" / "predictions.json"
        stages.append(Stage(f"eval-base-p{p}-{audio}",
                            aqa_argv("evaluate", "--model", base, "--data", test, "--audio-dir", data, "--out", pred,
                                     "--prompt", p, "--audio", audio, "--overwrite", *eval_args),
                            ["base", "tower"], [pred], code["eval"], clear=[pred.parent]))
    probe = out / "validity" / "probe.json"
    stages.append(Stage("probe", aqa_argv("mini-probe", "--data", data, "--model", base, "--out", probe, "--quiet",
                                          "--tower-store", base_store, "--tower-store", store),
                        ["base", "tower"], [probe], code["probe"], clear=[probe],
                        runtime_args=["--threads", str(threads)]))
    for seed in range(seeds):
        suffix = f"-seed{seed}" if seed else ""
        for name, (runner, folder, prompt, rkey) in RUNS.items():
            if plan == "lr-search" and name not in ("grpo-p2", "sft-full", "sft-lora"):
                continue  # the search's methods only (GRPO <3> takes GRPO <2>'s rate)
            if name in OPT_IN_RUNS and not prompt3:
                continue
            recipe = recipes[rkey]
            rcfg = _recipe_config(recipe)
            run_dir = out / (folder + suffix)
            sets = [f"prompt={prompt}"] if runner == "grpo" else []
            sets += [f"seed={int(rcfg.get('seed', 42)) + seed}"] if seed else []
            stages.append(_training_stage(name + suffix, runner, recipe, rcfg, out, run_dir, sets, threads, code))
            reuse = f"eval-base-p{prompt}" if not seed and prompt in (1, 2) else None  # its step 0 on test
            stages.append(Stage(f"sweep-{name}{suffix}",
                                sweep_argv(run_dir, test, data, val, data / "validation-audios", eval_args,
                                           curves=not seed,
                                           base_test=out / "eval" / f"base-prompt{prompt}" / "predictions.json"
                                           if reuse else None),
                                [name + suffix, *([reuse] if reuse else [])], [run_dir / "eval" / "sweep.json"],
                                code["eval"], clear=[run_dir / "eval"]))
    if plan == "lr-search":
        return _weigh(stages + _lr_search_stages(out, recipes, threads, eval_args, code))
    if plan == "ablations":
        return _weigh(stages + _ablation_stages(out, recipes, threads, eval_args, code, seeds))
    done_before = [s.name for s in stages]
    for name, (template, records) in NOTEBOOKS.items():
        params = notebook_parameters(name, out, recipes=recipes)
        target = book / "results" / f"{name}.ipynb"
        deps = done_before if records == "*" else [records] if isinstance(records, str) else list(records)
        deps = [d for d in deps if d in done_before]  # an opt-in run this build does not train: none
        extra_files = []
        if shows_archive(name, out) and records not in done_before:
            # the archived run, beside this build's benchmark version
            template, params, deps = ARCHIVED_TEMPLATE, archived_parameters(out), ["data"]
            extra_files = [str(PROMPT3_ARCHIVE.relative_to(ROOT))] if PROMPT3_ARCHIVE.is_file() else []
        stages.append(Stage(f"nb-{name}", papermill_argv(ROOT / "notebooks" / template, target, params, Path.cwd()),
                            deps, [target], code["notebook"] + [f"notebooks/{template}", *extra_files]))
    return _weigh(stages)


def shows_archive(notebook: str, out: Path) -> bool:
    """Whether a notebook's page shows the archived run (`ARCHIVED_TEMPLATE`): it records an
    opt-in run (`OPT_IN_RUNS`) that the results folder does not hold (swept)."""
    if NOTEBOOKS[notebook][1] not in {f"sweep-{r}" for r in OPT_IN_RUNS}:
        return False
    return not (Path(notebook_parameters(notebook, out)["run_dir"]) / SWEEP_FILE).is_file()


def archived_parameters(out: Path) -> dict:
    """The parameters of `ARCHIVED_TEMPLATE`: the results folder and the archive it shows (relative
    to the folder the study runs from when it lies inside it, as the other pages' paths are)."""
    try:
        archive = PROMPT3_ARCHIVE.relative_to(Path.cwd())
    except ValueError:
        archive = PROMPT3_ARCHIVE
    return {"result_dir": str(out), "archive": str(archive)}


def _lr_search_stages(out: Path, recipes: dict[str, str], threads: int, eval_args: Sequence[str],
                      code: dict[str, list[str]]) -> list[Stage]:
    """The learning-rate search's extra runs (factors other than 1; factor 1 is the main seed-0
    run), their validation-only sweeps, and the summary stage."""
    from .lr_search import FACTORS, SEARCH_DIR, factor_label, search_run_dir

    data = out / "data"
    stages, deps = [], []
    for name, (runner, _folder, prompt, rkey) in RUNS.items():
        if name not in ("grpo-p2", "sft-full", "sft-lora"):
            continue
        rcfg = _recipe_config(recipes[rkey])
        deps.append(f"sweep-{name}")
        for factor in FACTORS:
            if factor == 1.0:
                continue
            run_dir = search_run_dir(out, name, factor)
            lr = float(rcfg["learning_rate"]) * factor
            sets = [f"learning_rate={lr!r}", *([f"prompt={prompt}"] if runner == "grpo" else [])]
            stage = f"lr-{name}-{factor_label(factor)}"
            stages.append(_training_stage(stage, runner, recipes[rkey], rcfg, out, run_dir, sets, threads, code))
            argv = aqa_argv("sweep", "--run", run_dir, "--include-base", "--validation", data / "validation.jsonl",
                            "--validation-audio-dir", data / "validation-audios", *eval_args)
            stages.append(Stage(f"sweep-{stage}", argv, [stage], [run_dir / "eval" / "sweep.json"], code["eval"],
                                clear=[run_dir / "eval"]))
            deps.append(f"sweep-{stage}")
    summary = out / SEARCH_DIR / "lr_search.json"
    stages.append(Stage("lr-search", aqa_argv("lr-search", "--results", out, "--out", summary), deps, [summary],
                        code["lr-search"], clear=[summary]))
    return stages


def _ablation_stages(out: Path, recipes: dict[str, str], threads: int, eval_args: Sequence[str],
                     code: dict[str, list[str]], seeds: int) -> list[Stage]:
    """The ablations plan's runs (`ablation_runs`) for each seed, each with a sweep that scores
    the validation subset at every checkpoint and the test split where a selection lands."""
    data = out / "data"
    train_size = plan_train_size()
    stages = []
    for folder, (name, overrides) in ablation_runs(train_size).items():
        runner, _, prompt, rkey = RUNS[name]
        rcfg = _recipe_config(recipes[rkey])
        sets = [*overrides, *([f"prompt={prompt}"] if runner == "grpo" else [])]
        if runner == "sft" and int(rcfg.get("max_steps", -1)) <= 0:  # the main runs' steps, whatever the set's size
            max_steps = int(float(rcfg['num_train_epochs']) * train_size) // int(rcfg['per_device_train_batch_size'])
            sets.append(f"max_steps={max_steps}")
        for seed in range(seeds):
            suffix = f"-seed{seed}" if seed else ""
            run_dir = out / ABLATION_DIR / (folder + suffix)
            seed_set = [f"seed={int(rcfg.get('seed', 42)) + seed}"] if seed else []
            stage = f"abl-{folder}{suffix}"
            stages.append(_training_stage(stage, runner, recipes[rkey], rcfg, out, run_dir, sets + seed_set, threads,
                                          code))
            stages.append(Stage(f"sweep-{stage}", sweep_argv(run_dir, data / "test-mini.json", data,
                                                             data / "validation.jsonl", data / "validation-audios",
                                                             eval_args, curves=False, test_at="chosen"),
                                [stage], [run_dir / "eval" / "sweep.json"], code["eval"], clear=[run_dir / "eval"]))
    return stages


def notebook_parameters(name: str, out: Path, recipes: dict[str, str] | None = None,
                        figures_dir: str | Path = "figures", result_dirs: Sequence[str | Path] | None = None) -> dict:
    """The papermill parameters of one executed notebook of the book. Paths are as given (the
    notebooks run in the folder the study runs from); recipes that do not exist from there are
    taken from the repository."""
    recipes = {**RECIPES, **(recipes or {})}
    out = Path(out)
    data, base = out / "data", out / "base"
    if name == "mini_data":
        return {"data_dir": str(data), "base_dir": str(base)}
    if name == "validity":
        return {"result_dir": str(out)}
    if name.startswith("base_prompt"):
        p = int(name[-1])
        return {"model": str(base), "data": str(data / "test-mini.json"), "audio_dir": str(data), "prompt": p,
                "out": str(out / "eval" / f"base-prompt{p}" / "predictions.json")}
    if name in ("sft_full", "sft_lora", "grpo_prompt2", "grpo_prompt3"):
        key = {"sft_full": "sft-full", "sft_lora": "sft-lora", "grpo_prompt2": "grpo-p2",
               "grpo_prompt3": "grpo-p3"}[name]
        runner, folder, prompt, rkey = RUNS[key]
        overrides = [f"model_name_or_path={base}", f"train_data={data / 'train.jsonl'}",
                     f"train_audio_dir={data / 'train-audios'}"] + ([f"prompt={prompt}"] if runner == "grpo" else [])
        return {"recipe": str(recipe_path(recipes[rkey])), "run_dir": str(out / folder), "overrides": overrides,
                "test_data": str(data / "test-mini.json"), "audio_dir": str(data),
                "validation_data": str(data / "validation.jsonl"),
                "validation_audio_dir": str(data / "validation-audios")}
    if name == "report":
        dirs = [str(d) for d in result_dirs] if result_dirs else [str(out), str(out.parent / "full")]
        grpo = [*PAPER_RECIPES["grpo"], recipes["grpo"]]
        sft = [*PAPER_RECIPES["sft"], recipes["sft-full"], recipes["sft-lora"]]
        return {"result_dirs": dirs, "grpo_recipes": [str(recipe_path(p)) for p in grpo],
                "sft_recipes": [str(recipe_path(p)) for p in sft],
                "figures_dir": str(figures_dir)}
    raise KeyError(f"unknown notebook {name!r}; valid: {', '.join(NOTEBOOKS)}")


def papermill_argv(template: Path, target: Path, params: dict, cwd: Path) -> list[str]:
    """Execute TEMPLATE into TARGET with papermill (`aqa_core.study.execute`, a subprocess: its own
    kernel; the parameters' relative paths are relative to CWD, the folder the study runs from),
    then give the page its title from book/_toc.yml when the book lists it there."""
    title = page_titles().get(f"results/{Path(target).stem}")
    return [sys.executable, "-m", "aqa_core.study.execute", str(template), str(target), "--params",
            yaml.safe_dump(params), "--cwd", str(cwd), *(["--title", title] if title else [])]


@functools.lru_cache(maxsize=1)
def page_titles() -> dict[str, str]:
    """file -> title of every page book/_toc.yml titles itself (the executed notebooks)."""
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text(encoding="utf-8"))
    return {ch["file"]: ch["title"] for part in toc.get("parts", []) for ch in part.get("chapters", [])
            if "title" in ch}


# ----------------------------------------------------------------------------- book


def execute_notebooks(result_dir: str | Path, results_dir: str | Path, recipes: dict[str, Sequence[Path]] | None = None,
                      figures_dir: str | Path = "figures", result_dirs: Sequence[str | Path] | None = None,
                      cwd: str | Path = ROOT, jobs: int = 2) -> None:
    """Execute every notebook of the book on one results folder (record mode: nothing trains
    when the folder is complete) into `results_dir`, `jobs` kernels at a time (tests, and result
    folders made by hand)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> None:
        template = NOTEBOOKS[name][0]
        params = notebook_parameters(name, Path(result_dir), figures_dir=figures_dir, result_dirs=result_dirs)
        if shows_archive(name, Path(result_dir)):
            template, params = ARCHIVED_TEMPLATE, archived_parameters(Path(result_dir))
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


# ----------------------------------------------------------------------------- command line


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aqa_core study", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/mini", help="results folder (default runs/mini)")
    ap.add_argument("--plan", choices=PLANS, default="main",
                    help="main: the study and the book's notebooks; lr-search: the analysis plan's learning-rate "
                         "search (seed-0 runs plus x1/3 and x3 rates, validation only); ablations: the main study's "
                         "runs plus training-set sizes, SFT with prompt <2> and training without listening (three "
                         "seeds each, under OUT/ablations; then make book shows them)")
    ap.add_argument("--prompt3", action="store_true",
                    help="also train GRPO with prompt <3> (three seeds), the plan's secondary run, opt-in since its "
                         "Amendment 5 (about 6 minutes more on 2 cores); without it the book shows the archived run")
    ap.add_argument("--seeds", type=int, default=SEEDS,
                    help=f"training seeds per run (default {SEEDS}, the analysis plan's; extra seeds go to RUN-seedN)")
    ap.add_argument("--jobs", type=int, default=1, help="stages run at once (torch threads are split among them)")
    ap.add_argument("--force", action="append", default=[], metavar="STAGE",
                    help="rerun a stage (name or glob, e.g. 'grpo-*'; 'all'); repeatable")
    ap.add_argument("--book", default=str(ROOT / "book"), help="book folder: notebooks go to BOOK/results/")
    ap.add_argument("--grpo-recipe", default=RECIPES["grpo"])
    ap.add_argument("--sft-full-recipe", default=RECIPES["sft-full"])
    ap.add_argument("--sft-lora-recipe", default=RECIPES["sft-lora"])
    ap.add_argument("--data-args", default="", help="extra mini-data options, e.g. '--train 600 --test 150'")
    ap.add_argument("--base-args", default="", help="extra mini-base options, e.g. '--steps 60'")
    ap.add_argument("--eval-args", default="", help="extra evaluate/sweep options, e.g. '--batch-size 16'")
    ap.add_argument("--no-code-hash", action="store_true",
                    help="cache on commands, recipes and inputs only, not on source files (edit loop)")
    ap.add_argument("--list", action="store_true", help="print the stages and their commands, run nothing")
    a = ap.parse_args(argv)
    if a.seeds < 1 or a.jobs < 1:
        ap.error("--seeds and --jobs must be >= 1")
    out = Path(a.out)
    recipes = {"grpo": a.grpo_recipe, "sft-full": a.sft_full_recipe, "sft-lora": a.sft_lora_recipe}
    stages = study_stages(out, 1 if a.plan == "lr-search" else a.seeds, recipes, a.jobs, a.book,
                          shlex.split(a.data_args), shlex.split(a.base_args), shlex.split(a.eval_args), plan=a.plan,
                          prompt3=a.prompt3)
    if a.list:
        for s in stages:
            print(f"{s.name:<20} <- {', '.join(s.deps[:4]) + (' ...' if len(s.deps) > 4 else '') or '-'}\n    "
                  f"{shlex.join(s.argv)[:300]}")
        return 0
    with hold_output(out):  # one study per results folder: a second one refuses, naming this one
        t0 = time.perf_counter()
        timings = run_stages(stages, out, a.jobs, a.force, hash_code=not a.no_code_hash)
        folder = out / ABLATION_DIR if a.plan == "ablations" else out  # the main study's timings stay its own
        folder.mkdir(parents=True, exist_ok=True)
        path = write_timings(timings, folder, time.perf_counter() - t0, a.jobs)
    failed = [t.stage for t in timings if t.status in ("failed", "skipped")]
    print(f"timings: {path}")
    if failed:
        print(f"study: failed or skipped: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
