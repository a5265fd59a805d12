"""Cached, timed stages, generic: each its own process, whose stamp (OUT/.stamps/STAGE.json)
records a key of its command, config, source files and upstream outputs; a stage reruns only when
that key changes, an output is missing, or it is forced. `aqa_core.study.pipeline.stages` makes
the study's stages from its design; a `python -m aqa_core` stage whose output is not echoed is
forked from the stage server (`aqa_core.study.pipeline.server`).
"""
from __future__ import annotations

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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..design import ROOT
from ..results import TIMINGS_FILE
from .server import NOTEBOOK_ENV, aqa_command, forked_stage, forks, stage_server

STAMPS = ".stamps"
# A kernel that never answered its first request: nothing in the notebook ran, so it is safe to
# start it again. Seen once in CI (two kernels starting together; one waited 60 s for a reply).
KERNEL_START_FAILURES = ("Kernel didn't respond in", "Kernel died before replying to kernel_info")
KERNEL_START_ATTEMPTS = 3


@dataclass
class Stage:
    """One cached step: a command (`python -m aqa_core ...`) or a notebook to execute."""

    name: str
    argv: list[str]  # full command line
    deps: list[str]
    outputs: list[Path]  # all must exist for a cached stage to count as done
    code: list[str]  # the source files it runs, relative to the repository (ROOT): part of its key
    config: dict[str, Any] = field(default_factory=dict)
    clear: list[Path] = field(default_factory=list)  # removed before the stage reruns
    runtime_args: list[str] = field(default_factory=list)  # appended when run, not part of the key (threads)
    exclusive: bool = False  # runs alone with every core (the stages everything else waits for)
    weight: float = 1.0  # expected seconds, for the order of ready stages only (the key ignores it)

    def key(self, dep_ids: dict[str, str], hash_code: bool = True) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"argv": self.argv, "config": self.config, "deps": dep_ids}, sort_keys=True,
                            default=str).encode())
        for rel in sorted(set(self.code)) if hash_code else []:
            path = ROOT / rel
            if not path.is_file():  # a moved file must not silently drop out of the key
                raise FileNotFoundError(f"stage {self.name}: code file {rel} not found under {ROOT}")
            h.update(rel.encode())
            h.update(path.read_bytes())
        return h.hexdigest()[:20]


def kernel_failed_to_start(output: str) -> bool:
    """True when papermill's output says the kernel never started (see KERNEL_START_FAILURES)."""
    return any(msg in output for msg in KERNEL_START_FAILURES)


@dataclass
class Timing:
    stage: str
    status: str  # ran | cached | failed | skipped
    seconds: float
    last_run_seconds: float | None = None
    log: str | None = None


def retry_unstarted_kernel(run: Callable[[], tuple[int, str]], label: str) -> int:
    """`run()` -> (exit code, the end of its output), run again while it failed only because
    papermill's kernel never started (KERNEL_START_FAILURES), KERNEL_START_ATTEMPTS runs at most.
    Returns the last exit code."""
    rc, output = run()
    attempt = 1
    while rc != 0 and attempt < KERNEL_START_ATTEMPTS and kernel_failed_to_start(output):
        attempt += 1
        print(f"{label}: the kernel did not start; trying again ({attempt}/{KERNEL_START_ATTEMPTS})",
              file=sys.stderr, flush=True)
        rc, output = run()
    return rc


def read_json_or_none(path: Path) -> dict | None:
    """A stamp or info file's JSON, or None when it is missing or half-written."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _run_logged(argv: list[str], log_path: Path, echo: bool, env: dict | None = None) -> int:
    """Run a command with its output in `log_path` (and on the console when `echo`). A command
    that `forks` and is not echoed is forked from the stage server (PRELOAD): the same code,
    arguments, environment and threads as a fresh interpreter, without its imports."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **NOTEBOOK_ENV, **(env or {})}
    with log_path.open("wb") as log:
        log.write(("$ " + shlex.join(argv) + "\n").encode())
        log.flush()
        if forks(argv) and not echo:
            proc = stage_server().Process(target=forked_stage, args=(aqa_command(argv), str(log_path), full_env))
            proc.start()
            proc.join()
            return proc.exitcode
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
    # the stage server starts (its imports in its own process) as soon as any stage really runs
    serve = not (echo and jobs == 1) and any(forks(s.argv) for s in stages)

    def work(stage: Stage) -> Timing:
        dep_ids = {d: output_ids[d] for d in stage.deps}
        key = stage.key(dep_ids, hash_code)
        stamp_path = stamps / f"{stage.name}.json"
        stamp = read_json_or_none(stamp_path) or {}
        if (stage.name not in forced and stamp.get("key") == key and all(Path(p).exists() for p in stage.outputs)):
            with lock:
                output_ids[stage.name] = stamp["output_id"]
            return Timing(stage.name, "cached", 0.0, stamp.get("seconds"))
        if serve:
            stage_server()
        _clear(stage.clear, out)
        for p in stage.outputs:  # e.g. book/results/ for papermill, which will not create it
            Path(p).parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        log_path = logs / f"{stage.name}.log"
        if echo:
            print(f"\n=== study: {stage.name} ===", flush=True)
        env = ({"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // jobs))} if jobs > 1 and not stage.exclusive
               else {})

        def attempt() -> tuple[int, str]:
            rc = _run_logged(stage.argv + stage.runtime_args, log_path, echo=echo and jobs == 1, env=env)
            return rc, log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

        rc = retry_unstarted_kernel(attempt, f"study: {stage.name}")
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

    rank = critical_path(stages, {s.name: (read_json_or_none(stamps / f"{s.name}.json") or {}).get("seconds")
                                  for s in stages})
    pending = sorted(stages, key=lambda s: -rank[s.name])  # the longest chain to the end first (stable)
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


def critical_path(stages: Sequence[Stage], seconds: Mapping[str, float | None]) -> dict[str, float]:
    """Each stage's expected time to the end of the study along its longest chain of dependents:
    its own seconds (the last real run's, else its `weight`) plus the longest of its dependents'.
    Starting the ready stage with the longest chain first keeps both cores busy to the end (on the
    2-core machine about a minute less than list order, the same stages and numbers)."""
    children: dict[str, list[str]] = {s.name: [] for s in stages}
    for s in stages:
        for d in s.deps:
            children.setdefault(d, []).append(s.name)
    own = {s.name: float(seconds.get(s.name) or s.weight) for s in stages}
    memo: dict[str, float] = {}

    def chain(name: str) -> float:
        if name not in memo:
            memo[name] = own.get(name, 0.0) + max((chain(c) for c in children.get(name, [])), default=0.0)
        return memo[name]

    return {s.name: chain(s.name) for s in stages}


def write_timings(timings: list[Timing], out: Path, wall: float, jobs: int) -> Path:
    """Print the per-stage table and write OUT/timings.json (`aqa_core.study.results.stage_seconds`
    reads it)."""
    print(f"\n{'stage':<22}{'status':<9}{'seconds':>9}{'last run':>10}")
    for t in timings:
        last = f"{t.last_run_seconds:.1f}" if t.last_run_seconds is not None else "-"
        print(f"{t.stage:<22}{t.status:<9}{t.seconds:>9.1f}{last:>10}")
    cold = sum(t.last_run_seconds or 0.0 for t in timings)
    print(f"{'total (this run)':<31}{wall:>9.1f}\n{'sum of last real runs':<31}{cold:>9.1f}")
    path = out / TIMINGS_FILE
    path.write_text(json.dumps({"wall_seconds": round(wall, 1), "sum_last_run_seconds": round(cold, 1), "jobs": jobs,
                                "cpu_count": os.cpu_count(), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                "stages": [t.__dict__ for t in timings]}, indent=1) + "\n", encoding="utf-8")
    return path
