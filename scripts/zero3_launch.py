"""The full-scale launch path on CPU: the project's DeepSpeed ZeRO-3 config
(`recipes/accelerate/zero3.yaml`) with 2 processes, gloo, no GPU (facts in
../shared/notes/zero3-cpu.md). Two uses:

    # one launch of a CLI command under ZeRO-3 (what tests/test_zero3.py runs)
    python scripts/zero3_launch.py run [--varying-reward] -- grpo --recipe recipes/grpo/mini.yaml --set ...

    # N short launches (GRPO or SFT, 1 step) on a tiny model, counting those that abort at exit;
    # --no-release skips aqa_core.train.common.release_distributed (the fix) to count the aborts without it
    python scripts/zero3_launch.py loop --launches 30 [--runner sft] [--no-release] [--out runs/bench/zero3_loop.json]

`run` starts `accelerate launch --config_file recipes/accelerate/zero3.yaml --num_processes 2`
on this script's `worker` mode, which calls `python -m aqa_core`'s `main` in each rank:
`--varying-reward` replaces the accuracy reward with one that differs between the completions
of a group (an untrained model earns zero accuracy, so zero advantages and no update; a test
of training needs gradients). The environment: HF_HUB_OFFLINE=1, OMP_NUM_THREADS=1,
DS_ACCELERATOR=cpu, CUDA_VISIBLE_DEVICES="" and a free rendezvous port. The first launch on a
machine compiles DeepSpeed's small shared-memory op (about 40 s, cached under
~/.cache/torch_extensions).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ABORT_MARK = "terminate called without an active exception"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}


def launch_argv(command: list[str], processes: int = 2, varying_reward: bool = False,
                no_release: bool = False) -> list[str]:
    """`accelerate launch` of COMMAND (an aqa_core CLI command and its arguments) under ZeRO-3."""
    flags = (["--varying-reward"] if varying_reward else []) + (["--no-release"] if no_release else [])
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(REPO / "recipes/accelerate/zero3.yaml"), "--num_processes", str(processes),
            "--main_process_port", str(free_port()), str(Path(__file__).resolve()), "worker", *flags, "--", *command]


def launch(command: list[str], timeout: float | None = 600, capture: bool = True,
           **kwargs) -> subprocess.CompletedProcess:
    """Run COMMAND under ZeRO-3 on 2 CPU processes from the repository root; its output captured,
    or (`capture=False`) passed through to this terminal."""
    return subprocess.run(launch_argv(command, **kwargs), cwd=REPO, env=launch_env(), capture_output=capture,
                          text=True, timeout=timeout)


def varying_reward(completions, **kwargs) -> list[float]:  # TRL's reward signature
    """A reward that differs between completions (their length in characters, mod 5, over 4):
    the advantages are not all zero, so a GRPO step changes the weights."""
    from aqa_core.rewards import completion_text

    return [(len(completion_text(c)) % 5) / 4 for c in completions]


def worker(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="zero3_launch.py worker")
    ap.add_argument("--varying-reward", action="store_true")
    ap.add_argument("--no-release", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if a.varying_reward:
        from aqa_core import rewards

        rewards.REWARDS["accuracy"] = varying_reward
    if a.no_release:
        from aqa_core.train import common

        common.release_distributed = lambda *args, **kwargs: None
    from aqa_core.__main__ import main

    return main(command)


def loop(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="zero3_launch.py loop")
    ap.add_argument("--launches", type=int, default=30)
    ap.add_argument("--no-release", action="store_true", help="without the fix (release_distributed skipped)")
    ap.add_argument("--runner", choices=("grpo", "sft"), default="grpo", help="which runner each launch trains")
    ap.add_argument("--out", help="JSON file for the counts")
    a = ap.parse_args(argv)
    from aqa_core.mini.data import MiniSizes, generate
    from aqa_core.mini.model import build_untrained

    root = Path(tempfile.mkdtemp(prefix="zero3_loop_"))
    model = build_untrained(root / "model", tiny=True)
    generate(root / "data", sizes=MiniSizes(train=8, validation=4, test=4, base=8), progress=False)
    rows = []
    for i in range(a.launches):
        out = root / f"run{i}"
        sets = [f"model_name_or_path={model}", f"train_data={root / 'data' / 'train.jsonl'}",
                f"train_audio_dir={root / 'data' / 'train-audios'}", "max_steps=1", "save_steps=1",
                "per_device_train_batch_size=4", "torch_threads=1", "device=cpu"]
        if a.runner == "grpo":
            command = ["grpo", "--recipe", str(REPO / "recipes/grpo/mini.yaml"), "--output-dir", str(out), "--set",
                       *sets, "num_processes=2", "num_generations=4", "max_completion_length=4"]
        else:
            command = ["sft", "--recipe", str(REPO / "recipes/sft/mini-full.yaml"), "--output-dir", str(out),
                       "--set", *sets]
        t0 = time.perf_counter()
        proc = launch(command, varying_reward=True, no_release=a.no_release)
        seconds = time.perf_counter() - t0
        done = ("GRPO done: 1 steps" if a.runner == "grpo" else "sft: 1 steps") in proc.stdout
        aborted = ABORT_MARK in proc.stderr
        rows.append({"launch": i, "rc": proc.returncode, "work_done": done, "aborted": aborted,
                     "seconds": round(seconds, 1)})
        print(f"launch {i + 1}/{a.launches}: rc {proc.returncode}, work done {done}, abort message {aborted}, "
              f"{seconds:.1f} s", flush=True)
    failed = sum(r["rc"] != 0 for r in rows)
    summary = {"launches": a.launches, "runner": a.runner, "release_distributed": not a.no_release, "failed": failed,
               "aborted_after_work": sum(r["rc"] != 0 and r["work_done"] for r in rows),
               "seconds_per_launch": round(sum(r["seconds"] for r in rows) / max(1, len(rows)), 1), "rows": rows}
    print(f"{failed} of {a.launches} launches failed ({summary['aborted_after_work']} after all their work), "
          f"{a.runner}, release_distributed {'on' if summary['release_distributed'] else 'off'}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="zero3_launch.py run")
    ap.add_argument("--varying-reward", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    return launch(command, timeout=None, capture=False, varying_reward=a.varying_reward).returncode


if __name__ == "__main__":
    modes = {"worker": worker, "loop": loop, "run": run}
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(modes)}}} ...")
    sys.exit(modes[sys.argv[1]](sys.argv[2:]))
