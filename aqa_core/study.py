"""The whole mini study, stage by stage, cached; then the notebooks the book renders.

    python -m aqa_core study --out runs/mini [--seeds N] [--jobs J] [--force STAGE ...]

Stages (each a subprocess, so memory stays bounded and a crash names its stage):
data (mini-data) -> base (mini-base) -> eval-base-p2, eval-base-p1 (direct inference) ->
sft-full, sft-lora (prompt <1>), grpo-p2, grpo-p3 -> sweep-* (every checkpoint on test and
validation) -> nb-* (papermill executes notebooks/*.ipynb into book/results/*.ipynb, which the
book's _toc.yml reads; the notebooks only record runs that exist, they never retrain).

Caching: a stage is skipped when its stamp (OUT/.stamps/STAGE.json) holds the same key and its
outputs exist. The key hashes the stage's command, the resolved recipe (with `_base`), the
source files of the code it runs and the output ids of the stages it reads; a stage that really
runs gets a new output id, so everything downstream of it runs again. `--force STAGE` (a name or
glob, e.g. `grpo-*`, or `all`) reruns a stage regardless. Timings (ran or cached, and the
seconds of the stage's last real run) are printed and written to OUT/timings.json.

The notebook-facing functions (`ensure_mini_scale`, `ensure_evaluation`, `ensure_run`) return a
record of a stage's results and run the stage first only when its results are missing.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

ROOT = Path(__file__).resolve().parents[1]  # the repository (recipes/, notebooks/, book/)
STAMPS = ".stamps"
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
#: Source files each kind of stage runs (their content is part of the stage's cache key).
_COMMON = ["aqa_core/prompts.py", "aqa_core/answers.py", "aqa_core/audio.py", "aqa_core/data.py", "aqa_core/config.py"]
CODE = {
    "data": ["aqa_core/mini_data.py", "aqa_core/synth.py", "aqa_core/prompts.py"],
    "base": ["aqa_core/mini_model.py", "aqa_core/tokenizer_corpus.txt", "aqa_core/collate.py",
             "aqa_core/tower_cache.py", *_COMMON],
    "eval": ["aqa_core/evaluate.py", "aqa_core/sweep.py", "aqa_core/tower_cache.py", "aqa_core/mmau.py", *_COMMON],
    "sft": ["aqa_core/sft.py", "aqa_core/collate.py", "aqa_core/runs.py", "aqa_core/metrics.py", *_COMMON],
    "grpo": ["aqa_core/grpo.py", "aqa_core/rewards.py", "aqa_core/collate.py", "aqa_core/runs.py",
             "aqa_core/metrics.py", *_COMMON],
    "notebook": ["aqa_core/study.py", "aqa_core/report.py", "aqa_core/results.py", "aqa_core/figures.py",
                 "aqa_core/paper_results.yaml", "aqa_core/stats.py", "aqa_core/mmau.py", "aqa_core/metrics.py"],
}
#: Executed notebooks: output name (book/results/NAME.ipynb) -> (template, stage it records).
NOTEBOOKS = {
    "mini_data": ("mini_data.ipynb", "base"),
    "base_prompt2": ("evaluate.ipynb", "eval-base-p2"),
    "base_prompt1": ("evaluate.ipynb", "eval-base-p1"),
    "sft_full": ("sft.ipynb", "sweep-sft-full"),
    "sft_lora": ("sft.ipynb", "sweep-sft-lora"),
    "grpo_prompt2": ("grpo.ipynb", "sweep-grpo-p2"),
    "grpo_prompt3": ("grpo.ipynb", "sweep-grpo-p3"),
    "report": ("report.ipynb", "*"),
}
# A kernel that never answered its first request: nothing in the notebook ran, so it is safe to
# start it again. Seen once in CI (two kernels starting together; one waited 60 s for a reply).
KERNEL_START_FAILURES = ("Kernel didn't respond in", "Kernel died before replying to kernel_info")
KERNEL_START_ATTEMPTS = 3
NOTEBOOK_ENV = {"MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1", "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}


# ----------------------------------------------------------------------------- stages


@dataclass
class Stage:
    """One cached step: a command (`python -m aqa_core ...`) or a notebook to execute."""

    name: str
    argv: list[str]  # full command line
    deps: list[str]
    outputs: list[Path]  # all must exist for a cached stage to count as done
    code: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    clear: list[Path] = field(default_factory=list)  # removed before the stage reruns
    runtime_args: list[str] = field(default_factory=list)  # appended when run, not part of the key (threads)
    exclusive: bool = False  # runs alone with every core (the stages everything else waits for)

    def key(self, dep_ids: dict[str, str], hash_code: bool = True) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"argv": self.argv, "config": self.config, "deps": dep_ids}, sort_keys=True,
                            default=str).encode())
        for rel in sorted(set(self.code)) if hash_code else []:
            path = ROOT / rel
            h.update(rel.encode())
            h.update(path.read_bytes() if path.is_file() else b"<missing>")
        return h.hexdigest()[:20]


def sweep_argv(run_dir: Path, test: str | Path, audio_dir: str | Path | None = None,
               validation: str | Path | None = None, validation_audio_dir: str | Path | None = None,
               extra: Sequence[str] = ()) -> list[str]:
    """The checkpoint sweep of one run, as the study and the notebooks run it: every checkpoint
    and the base (step 0 of the curves) on the test file, and on the validation file if given."""
    argv = _py("sweep", "--run", run_dir, "--data", test, "--include-base")
    argv += ["--audio-dir", str(audio_dir)] if audio_dir else []
    if validation:
        argv += ["--validation", str(validation)]
        argv += ["--validation-audio-dir", str(validation_audio_dir)] if validation_audio_dir else []
    return argv + list(extra)


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", "aqa_core", *map(str, args)]


def recipe_path(path: str | Path) -> Path:
    """A recipe as given when it exists from here, else relative to the repository."""
    path = Path(path)
    return path if path.exists() or path.is_absolute() else ROOT / path


def _recipe_config(path: str | Path) -> dict:
    from .config import read_recipe

    return read_recipe(recipe_path(path))


def study_stages(out: str | Path, seeds: int = 1, recipes: dict[str, str] | None = None, jobs: int = 1,
                 book: str | Path | None = None, data_args: Sequence[str] = (), base_args: Sequence[str] = (),
                 eval_args: Sequence[str] = ()) -> list[Stage]:
    """The study's stages in dependency order, writing under `out` (notebooks under `book`/results)."""
    out = Path(out)
    recipes = {**RECIPES, **(recipes or {})}
    book = Path(book) if book else ROOT / "book"
    data, base = out / "data", out / "base"
    test, val = data / "test-mini.json", data / "validation.jsonl"
    threads = max(1, (os.cpu_count() or 2) // max(1, jobs))
    stages = [
        Stage("data", _py("mini-data", "--out", data, *data_args), [], [data / "manifest.json", test],
              CODE["data"]),
        Stage("base", _py("mini-base", "--data", data, "--out", base, *base_args),
              ["data"], [base / "build_info.json"], CODE["base"], clear=[base],
              runtime_args=["--threads", str(os.cpu_count() or 2)], exclusive=True),
    ]
    for p in (2, 1):
        pred = out / "eval" / f"base-prompt{p}" / "predictions.json"
        stages.append(Stage(f"eval-base-p{p}", _py("evaluate", "--model", base, "--data", test, "--audio-dir", data,
                                                   "--out", pred, "--prompt", p, "--overwrite", *eval_args),
                            ["base"], [pred], CODE["eval"], clear=[pred.parent]))
    for seed in range(seeds):
        suffix = f"-seed{seed}" if seed else ""
        for name, (runner, folder, prompt, rkey) in RUNS.items():
            recipe = recipes[rkey]
            rcfg = _recipe_config(recipe)
            run_dir = out / (folder + suffix)
            sets = [f"model_name_or_path={base}", f"train_data={data / 'train.jsonl'}",
                    f"train_audio_dir={data / 'train-audios'}"]
            if runner == "grpo":
                sets.append(f"prompt={prompt}")
            if seed:
                sets.append(f"seed={int(rcfg.get('seed', 42)) + seed}")
            argv = _py(runner, "--recipe", recipe_path(recipe),
                       "--output-dir", run_dir, *[a for s in sets for a in ("--set", s)])
            stages.append(Stage(name + suffix, argv, ["base"], [run_dir / "metrics.jsonl"], CODE[runner],
                                config={"recipe": rcfg}, clear=[run_dir],
                                runtime_args=["--set", f"torch_threads={threads}"] if runner == "grpo" else []))
            stages.append(Stage(f"sweep-{name}{suffix}",
                                sweep_argv(run_dir, test, data, val, data / "validation-audios", eval_args),
                                [name + suffix], [run_dir / "eval" / "sweep.json"], CODE["eval"],
                                clear=[run_dir / "eval"]))
    done_before = [s.name for s in stages]
    for name, (template, records) in NOTEBOOKS.items():
        params = notebook_parameters(name, out, recipes=recipes)
        target = book / "results" / f"{name}.ipynb"
        deps = done_before if records == "*" else [records]
        stages.append(Stage(f"nb-{name}", papermill_argv(ROOT / "notebooks" / template, target, params, Path.cwd()), deps,
                            [target], CODE["notebook"] + [f"notebooks/{template}"]))
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
    if name.startswith("base_prompt"):
        p = int(name[-1])
        return {"model": str(base), "data": str(data / "test-mini.json"), "audio_dir": str(data), "prompt": p,
                "out": str(out / "eval" / f"base-prompt{p}" / "predictions.json")}
    if name in ("sft_full", "sft_lora", "grpo_prompt2", "grpo_prompt3"):
        key = {"sft_full": "sft-full", "sft_lora": "sft-lora", "grpo_prompt2": "grpo-p2", "grpo_prompt3": "grpo-p3"}[name]
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
    """`python -m papermill TEMPLATE TARGET -y PARAMS --cwd CWD` (a subprocess: its own kernel;
    the parameters' relative paths are relative to CWD, the folder the study runs from)."""
    return [sys.executable, "-m", "papermill", str(template), str(target), "-y", yaml.safe_dump(params),
            "--cwd", str(cwd), "--no-progress-bar", "--log-level", "WARNING", "--start-timeout", "180"]


def kernel_failed_to_start(output: str) -> bool:
    """True when papermill's output says the kernel never started (see KERNEL_START_FAILURES)."""
    return any(msg in output for msg in KERNEL_START_FAILURES)


# ----------------------------------------------------------------------------- running


@dataclass
class Timing:
    stage: str
    status: str  # ran | cached | failed | skipped
    seconds: float
    last_run_seconds: float | None = None
    log: str | None = None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _run_logged(argv: list[str], log_path: Path, echo: bool, env: dict | None = None) -> int:
    """Run a command with its output in `log_path` (and on the console when `echo`)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **NOTEBOOK_ENV, **(env or {})}
    with log_path.open("wb") as log:
        log.write(("$ " + shlex.join(argv) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env)
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            log.write(chunk)
            if echo:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        return proc.wait()


def _clear(paths: Sequence[Path], out: Path) -> None:
    """Remove a stage's old outputs before it reruns (only inside the study folder)."""
    for p in paths:
        p = Path(p)
        if not p.exists() or not p.resolve().is_relative_to(out.resolve()):
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def run_stages(stages: list[Stage], out: str | Path, jobs: int = 1, force: Sequence[str] = (),
               hash_code: bool = True, echo: bool = True) -> list[Timing]:
    """Run (or skip) every stage in dependency order, `jobs` at a time; returns the timings."""
    out = Path(out)
    stamps, logs = out / STAMPS, out / "logs"
    stamps.mkdir(parents=True, exist_ok=True)
    by_name = {s.name: s for s in stages}
    forced = {s.name for s in stages for pat in force if pat == "all" or fnmatch.fnmatch(s.name, pat)}
    unknown = [p for p in force if p != "all" and not any(fnmatch.fnmatch(s.name, p) for s in stages)]
    if unknown:
        raise SystemExit(f"--force {unknown[0]!r} matches no stage; stages: {', '.join(by_name)}")
    output_ids: dict[str, str] = {}
    timings: dict[str, Timing] = {}
    lock = threading.Lock()

    def work(stage: Stage) -> Timing:
        dep_ids = {d: output_ids[d] for d in stage.deps}
        key = stage.key(dep_ids, hash_code)
        stamp_path = stamps / f"{stage.name}.json"
        stamp = _read_json(stamp_path) or {}
        if (stage.name not in forced and stamp.get("key") == key and all(Path(p).exists() for p in stage.outputs)):
            with lock:
                output_ids[stage.name] = stamp["output_id"]
            return Timing(stage.name, "cached", 0.0, stamp.get("seconds"))
        _clear(stage.clear, out)
        for p in stage.outputs:  # e.g. book/results/ for papermill, which will not create it
            Path(p).parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        log_path = logs / f"{stage.name}.log"
        if echo:
            print(f"\n=== study: {stage.name} ===", flush=True)
        env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // jobs))} if jobs > 1 and not stage.exclusive else {}
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            rc = _run_logged(stage.argv + stage.runtime_args, log_path, echo=echo and jobs == 1, env=env)
            if rc == 0 or attempt == KERNEL_START_ATTEMPTS or not kernel_failed_to_start(
                    log_path.read_text(encoding="utf-8", errors="replace")[-4000:]):
                break
            print(f"study: {stage.name}: the kernel did not start; trying again ({attempt + 1}/{KERNEL_START_ATTEMPTS})",
                  file=sys.stderr, flush=True)
        seconds = round(time.perf_counter() - t0, 1)
        missing = [str(p) for p in stage.outputs if not Path(p).exists()]
        if rc != 0 or missing:
            why = f"exit code {rc}" if rc else f"missing output {missing[0]}"
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            print(f"study: {stage.name} FAILED ({why}); log {log_path}:\n{tail}", file=sys.stderr, flush=True)
            return Timing(stage.name, "failed", seconds, log=str(log_path))
        output_id = hashlib.sha256(f"{key} {time.time_ns()}".encode()).hexdigest()[:20]
        stamp_path.write_text(json.dumps({"key": key, "output_id": output_id, "seconds": seconds,
                                          "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                          "command": shlex.join(stage.argv)}, indent=1) + "\n", encoding="utf-8")
        with lock:
            output_ids[stage.name] = output_id
        return Timing(stage.name, "ran", seconds, seconds, str(log_path))

    pending = list(stages)
    running: dict[Any, Stage] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending or running:
            for stage in list(pending):
                states = [timings.get(d) for d in stage.deps]
                if any(t is not None and t.status in ("failed", "skipped") for t in states):
                    timings[stage.name] = Timing(stage.name, "skipped", 0.0)
                    pending.remove(stage)
                elif (all(t is not None for t in states) and len(running) < max(1, jobs)
                      and not (stage.exclusive and running) and not any(r.exclusive for r in running.values())):
                    running[pool.submit(work, stage)] = stage
                    pending.remove(stage)
            if not running:
                if pending:  # a dependency that is not a stage
                    raise SystemExit(f"study: stage {pending[0].name} depends on unknown {pending[0].deps}")
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                stage = running.pop(fut)
                timings[stage.name] = fut.result()
                t = timings[stage.name]
                last = f" (last run {t.last_run_seconds:.1f} s)" if t.status == "cached" and t.last_run_seconds else ""
                print(f"study: {stage.name:<20} {t.status:<7} {t.seconds:7.1f} s{last}", flush=True)
    return [timings[s.name] for s in stages]


def write_timings(timings: list[Timing], out: Path, wall: float, jobs: int) -> Path:
    """Print the per-stage table and write OUT/timings.json."""
    print(f"\n{'stage':<22}{'status':<9}{'seconds':>9}{'last run':>10}")
    for t in timings:
        last = f"{t.last_run_seconds:.1f}" if t.last_run_seconds is not None else "-"
        print(f"{t.stage:<22}{t.status:<9}{t.seconds:>9.1f}{last:>10}")
    cold = sum(t.last_run_seconds or 0.0 for t in timings)
    print(f"{'total (this run)':<31}{wall:>9.1f}\n{'sum of last real runs':<31}{cold:>9.1f}")
    path = out / "timings.json"
    path.write_text(json.dumps({"wall_seconds": round(wall, 1), "sum_last_run_seconds": round(cold, 1), "jobs": jobs,
                                "cpu_count": os.cpu_count(), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                "stages": [t.__dict__ for t in timings]}, indent=1) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- records (for notebooks)


@dataclass
class Record:
    """What a notebook shows about one stage: tables, text, a figure and glue values."""

    title: str
    tables: dict[str, Any] = field(default_factory=dict)  # name -> aqa_core.report.Table
    text: str = ""
    figure: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    ran: bool = False  # True when this call ran the stage (False: recorded existing results)

    def _repr_html_(self) -> str:
        import html

        state = "ran now" if self.ran else "recorded from existing results"
        tables = ", ".join(html.escape(name) for name in self.tables)
        return f"<p><b>{html.escape(self.title)}</b> ({state}); tables: {tables}.</p>"


def _run_or_fail(argv: list[str]) -> None:
    print("$", shlex.join(argv), flush=True)
    rc = subprocess.run(argv, env={**os.environ, **NOTEBOOK_ENV}).returncode
    if rc != 0:
        raise RuntimeError(f"command failed with exit code {rc}: {shlex.join(argv)}")


def _safetensors_parameters(model_dir: Path) -> int | None:
    """Parameter count from the safetensors header (no torch needed)."""
    path = model_dir / "model.safetensors"
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    total = 0
    for name, meta in header.items():
        if name != "__metadata__":
            count = 1
            for d in meta["shape"]:
                count *= d
            total += count
    return total


def ensure_mini_scale(data_dir: str | Path, base_dir: str | Path, seed: int = 0,
                      data_args: Sequence[str] = (), base_args: Sequence[str] = ()) -> Record:
    """The mini benchmark and base model: generated/built first when missing, then recorded
    (counts per split and sub-category, the train -> test shift, the base model's build)."""
    import pandas as pd

    data_dir, base_dir = Path(data_dir), Path(base_dir)
    ran = False
    if not (data_dir / "manifest.json").is_file():
        _run_or_fail(_py("mini-data", "--out", data_dir, "--seed", seed, "--quiet", *data_args))
        ran = True
    if not (base_dir / "build_info.json").is_file():
        _run_or_fail(_py("mini-base", "--data", data_dir, "--out", base_dir, "--seed", seed, "--quiet", *base_args))
        ran = True
    man = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    info = _read_json(base_dir / "build_info.json") or {}
    from .mini_data import SUBCATS, shift_table

    task_of = {s.name: s.task for s in SUBCATS.values()}
    counts = pd.DataFrame(man["counts"]).fillna(0).astype(int)
    counts.insert(0, "task", [task_of.get(i, "") for i in counts.index])
    counts = counts.rename_axis("sub-category").reset_index().sort_values(["task", "sub-category"])
    shift = pd.DataFrame(shift_table())
    test_only = int(sum(1 for s in SUBCATS.values() if not s.train_q))
    params = info.get("parameters") or {}
    values = {"n_train": int(man["sizes"]["train"]), "n_validation": int(man["sizes"]["validation"]),
              "n_test": int(man["sizes"]["test"]), "n_base": int(man["sizes"]["base"]),
              "chance_test": 100 * float(man.get("chance_test_mini", 0.0)), "data_seconds": float(man["timing"]["seconds"]),
              "n_subcategories": len(SUBCATS), "n_test_only_subcategories": test_only,
              "base_parameters": int(params.get("total") or _safetensors_parameters(base_dir) or 0),
              "base_audio_parameters": int(params.get("audio_tower", 0)),
              "base_train_seconds": float(info.get("train_seconds", 0.0)),
              "base_steps": int((info.get("hyperparameters") or {}).get("steps", 0)),
              "tokenizer_size": int(info.get("tokenizer_size", 0)),
              "audio_tokens_per_clip": int(info.get("audio_tokens_per_clip", 0)),
              "text_layers": int((info.get("spec") or {}).get("num_hidden_layers", 0)),
              "text_hidden": int((info.get("spec") or {}).get("hidden_size", 0)),
              "audio_seconds": int((info.get("spec") or {}).get("audio_seconds", 0))}
    base_table = pd.DataFrame([{"setting": k, "value": str(v)} for k, v in info.items()
                               if k in ("parameters", "trainable_parameters", "tokenizer_size", "audio_tower",
                                        "audio_tokens_per_clip", "hyperparameters", "train_seconds",
                                        "final_loss_mean_last10", "code_version")])
    from .report import Table

    return Record("mini benchmark and base model", {"clips per split and sub-category": Table(counts),
                                                    "train -> test-mini shift": Table(shift),
                                                    "base model": Table(base_table)},
                  values=values, ran=ran)


def ensure_evaluation(model: str | Path, data: str | Path, out: str | Path, audio_dir: str | Path | None = None,
                      prompt: int = 2, extra_args: Sequence[str] = ()) -> Record:
    """One model scored on one question file (`python -m aqa_core evaluate`), run first when its
    score report is missing; recorded as the official lines plus per-task accuracy with CIs."""
    import pandas as pd

    out = Path(out)
    score = out.with_name(out.name + ".score.json")
    ran = False
    if not score.is_file():
        argv = _py("evaluate", "--model", model, "--data", data, "--out", out, "--prompt", prompt, *extra_args)
        if audio_dir:
            argv += ["--audio-dir", str(audio_dir)]
        _run_or_fail(argv)
        ran = True
    summary = json.loads(score.read_text(encoding="utf-8"))
    rep = summary["report"]
    rows = [{"group": name, "correct": t["correct"], "total": t["total"], "accuracy (%)": round(t["accuracy"], 2),
             "95% CI": f"[{t['ci95'][0]:.1f}, {t['ci95'][1]:.1f}]" if t.get("ci95") else ""}
            for name, t in [*rep.get("task", {}).items(), ("total", rep["total"])]]
    total = rep["total"]
    values = {"accuracy": float(total["accuracy"]), "n": int(total["total"]), "prompt": int(prompt),
              "ci_low": float(total["ci95"][0]) if total.get("ci95") else float("nan"),
              "ci_high": float(total["ci95"][1]) if total.get("ci95") else float("nan")}
    for task, t in rep.get("task", {}).items():
        values[f"accuracy_{task}"] = float(t["accuracy"])
    if summary.get("items_per_second"):
        values["items_per_second"] = float(summary["items_per_second"])
    from .report import Table

    return Record(f"evaluation of {model} with prompt <{prompt}>", {"accuracy": Table(pd.DataFrame(rows))},
                  text="\n".join(rep.get("official_lines", [])), values=values, ran=ran)


def run_finished(run_dir: str | Path) -> bool:
    """A run is finished when its metrics end with the trainer's summary row."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return False
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return bool(lines) and bool(json.loads(lines[-1]).get("summary"))


def ensure_run(runner: str, recipe: str | Path, run_dir: str | Path, overrides: Sequence[str] = (),
               launcher: str = "", test_data: str | Path | None = None, audio_dir: str | Path | None = None,
               validation_data: str | Path | None = None, validation_audio_dir: str | Path | None = None) -> Record:
    """A GRPO or SFT run: trained first only when `run_dir` holds no finished run (an interrupted
    one resumes), swept over its checkpoints when `test_data` is given and no sweep exists, then
    recorded (resolved config, logged curves, accuracy per checkpoint, both selections).
    `launcher` (e.g. "accelerate launch --config_file recipes/accelerate/zero3.yaml") replaces
    `python -m` on a multi-GPU node."""
    import pandas as pd

    from .figures import figure_training_curves
    from .metrics import read_metrics, tenth_means
    from .results import read_sweep

    if runner not in ("grpo", "sft"):
        raise ValueError(f"runner must be 'grpo' or 'sft', got {runner!r}")
    run_dir = Path(run_dir)
    ran = False
    if not run_finished(run_dir):
        head = shlex.split(launcher) + ["-m", "aqa_core"] if launcher else [sys.executable, "-m", "aqa_core"]
        argv = head + [runner, "--recipe", str(recipe), "--output-dir", str(run_dir)]
        argv += [a for o in overrides for a in ("--set", o)]
        from .runs import last_checkpoint  # imports transformers: only when training

        if last_checkpoint(run_dir) is not None:
            argv.append("--resume")
        _run_or_fail(argv)
        ran = True
    sweep_path = run_dir / "eval" / "sweep.json"
    if test_data and not sweep_path.is_file():
        _run_or_fail(sweep_argv(run_dir, test_data, audio_dir, validation_data, validation_audio_dir))
        ran = True
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    rows = read_metrics(run_dir)
    summary = [r for r in read_metrics(run_dir, summary=True) if r.get("summary")]
    metrics = pd.DataFrame(rows)
    curve = "reward" if runner == "grpo" else "loss"
    series = [float(r[curve]) for r in rows if isinstance(r.get(curve), (int, float))]
    values: dict[str, Any] = {"steps": int(rows[-1]["step"]) if rows else 0, "runner": runner,
                              "prompt": int(config.get("prompt", 1) or 1),
                              "learning_rate": float(config.get("learning_rate", float("nan")))}
    per_step = int(config.get("per_device_train_batch_size", 0) or 0) * int(config.get("gradient_accumulation_steps", 1) or 1)
    if runner == "grpo":  # TRL counts completions: questions = completions / generations, over the processes
        per_step = per_step * int(config.get("num_processes") or 1) // max(1, int(config.get("num_generations", 1) or 1))
    values["questions_per_step"] = per_step
    values["questions_seen"] = per_step * values["steps"]
    if series:
        values[f"{curve}_first_tenth"], values[f"{curve}_last_tenth"] = tenth_means(series)
    if summary and "train_runtime" in summary[-1]:
        values["train_seconds"] = float(summary[-1]["train_runtime"])
    from .report import Table

    tables = {"resolved config (config.yaml)": Table(pd.DataFrame(
        [{"key": k, "value": json.dumps(v) if isinstance(v, (list, dict)) else str(v)} for k, v in config.items()]))}
    if len(metrics):
        tables["last logged steps (metrics.jsonl)"] = Table(metrics.tail(5))
    if sweep_path.is_file():
        sweep = read_sweep(run_dir)
        tables["accuracy per checkpoint (eval/sweep.json)"] = Table(pd.DataFrame(sweep["rows"]).drop(
            columns=["test_ci95"], errors="ignore"))
        for sel in ("best_on_test", "best_on_validation"):
            chosen = sweep["selection"].get(sel)
            if chosen:
                values[f"{sel}_step"] = int(chosen["step"] or 0)
                values[f"{sel}_test"] = float(chosen["test"])
    keys = ("reward", "kl", "completions/mean_length") if runner == "grpo" else ("loss", "learning_rate")
    fig = figure_training_curves(run_dir, keys)
    return Record(f"{runner} run {run_dir}", tables, figure=fig, values=values, ran=ran)


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
        if name == "report" and recipes:
            params["grpo_recipes"] = [str(p) for p in recipes["grpo"]]
            params["sft_recipes"] = [str(p) for p in recipes["sft"]]
        argv = papermill_argv(ROOT / "notebooks" / template, results_dir / f"{name}.ipynb", params, Path(cwd))
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **NOTEBOOK_ENV}, capture_output=True, text=True)
            if proc.returncode == 0 or not kernel_failed_to_start(proc.stdout[-4000:] + proc.stderr[-4000:]):
                break
            print(f"papermill {template}: the kernel did not start; trying again", file=sys.stderr, flush=True)
        if proc.returncode != 0:
            raise RuntimeError(f"papermill {template} -> {name}.ipynb failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

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
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per run (default 1; extra seeds go to RUN-seedN)")
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
    stages = study_stages(out, a.seeds, recipes, a.jobs, a.book, shlex.split(a.data_args), shlex.split(a.base_args),
                          shlex.split(a.eval_args))
    if a.list:
        for s in stages:
            print(f"{s.name:<20} <- {', '.join(s.deps[:4]) + (' ...' if len(s.deps) > 4 else '') or '-'}\n    "
                  f"{shlex.join(s.argv)[:300]}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings = run_stages(stages, out, a.jobs, a.force, hash_code=not a.no_code_hash)
    path = write_timings(timings, out, time.perf_counter() - t0, a.jobs)
    failed = [t.stage for t in timings if t.status in ("failed", "skipped")]
    print(f"timings: {path}")
    if failed:
        print(f"study: failed or skipped: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
