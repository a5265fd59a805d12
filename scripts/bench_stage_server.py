"""Seconds of one study stage forked from the stage server against the same stage as a fresh
interpreter, alternated, in one run; and whether the two wrote the same bytes.

    python scripts/bench_stage_server.py --results runs/mini --items 200 --repeats 3

The stage is the base model's evaluation on the first `--items` test-mini questions with the
study's settings (`python -m aqa_core evaluate ... --tower-cache-file`), as `make book`'s
eval-base stages run it, one torch thread each. "forked" goes through `aqa_core.study.pipeline.server`
exactly as the study does (the stage server started before the first timed run, so that its
one-off start is not counted: the study pays it once); "fresh" runs the same command line as a
subprocess with the same environment. Prints each run's seconds, the medians, their difference
(the imports a fork saves, per stage) and whether every output is identical.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="runs/mini", help="a study's results folder (data/, base/, tower/)")
    ap.add_argument("--items", type=int, default=200, help="test-mini questions per run (default 200)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each kind, alternated (default 3)")
    a = ap.parse_args()

    from aqa_core.study.design import EVAL_BATCH, EVAL_MAX_NEW_TOKENS
    from aqa_core.study.pipeline import runner, server
    from aqa_core.study.pipeline.stages import TOWER_STORE, aqa_argv

    res = Path(a.results)
    missing = [p for p in (res / "base", res / "data" / "test-mini.json", res / TOWER_STORE) if not p.exists()]
    if missing:
        print(f"error: {missing[0]} not found: run the study first (make book)", file=sys.stderr)
        return 2
    env = {"OMP_NUM_THREADS": "1"}
    full_env = {**os.environ, **server.NOTEBOOK_ENV, **env}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def argv(name: str) -> list[str]:
            return aqa_argv("evaluate", "--model", res / "base", "--data", res / "data" / "test-mini.json",
                            "--audio-dir", res / "data", "--out", tmp / name / "predictions.json", "--prompt", 2,
                            "--limit", a.items, "--batch-size", EVAL_BATCH, "--max-new-tokens", EVAL_MAX_NEW_TOKENS,
                            "--tower-cache-file", res / TOWER_STORE)

        warm = server.stage_server().Process(target=os.getpid)  # the server's imports done before any timed run
        warm.start()
        warm.join()
        seconds: dict[str, list[float]] = {"forked": [], "fresh": []}
        digests = set()
        for i in range(a.repeats):
            for kind in ("forked", "fresh"):
                name = f"{kind}{i}"
                log = tmp / f"{name}.log"
                t0 = time.perf_counter()
                if kind == "forked":
                    rc = runner._run_logged(argv(name), log, echo=False, env=env)
                else:
                    with log.open("wb") as f:
                        rc = subprocess.run(argv(name), stdout=f, stderr=subprocess.STDOUT, env=full_env).returncode
                seconds[kind].append(time.perf_counter() - t0)
                if rc != 0:
                    print(f"error: the {kind} run failed (exit {rc}):\n{log.read_text()[-2000:]}", file=sys.stderr)
                    return 1
                digests.add(hashlib.sha256((tmp / name / "predictions.json").read_bytes()).hexdigest())
                print(f"{name:<8} {seconds[kind][-1]:6.2f} s", flush=True)
    fork, fresh = statistics.median(seconds["forked"]), statistics.median(seconds["fresh"])
    print(f"\nmedian of {a.repeats}: forked {fork:.2f} s, fresh interpreter {fresh:.2f} s; "
          f"saved {fresh - fork:.2f} s per stage (ratio {fork / fresh:.2f})")
    print(f"outputs identical: {len(digests) == 1} ({2 * a.repeats} runs, {len(digests)} distinct)")
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
