"""Evaluation on every process of a launch (`torchrun --nproc_per_node N`, or `accelerate
launch`): each rank generates every N-th batch, rank 0 writes the results. On CPU with 2
processes (gloo) against 1: the same predictions, nothing lost or generated twice, and a resume
from another world size's progress."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_evaluate import _make_run, run, write_mmau

import aqa_core.eval.evaluate as ev
from aqa_core.eval.sweep import sweep

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from aqa_core.mini.model import build_untrained

    return build_untrained(tmp_path_factory.mktemp("tiny") / "model", tiny=True)


def torchrun(*args: str) -> subprocess.CompletedProcess:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "aqa_core", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _raw(path: Path) -> list[tuple[str, str]]:
    return [(r["id"], r["raw_output"]) for r in json.loads(path.read_text())]


def test_two_processes_predict_what_one_does_and_resume_across_world_sizes(tmp_path, tiny_model):
    import torch

    torch.set_num_threads(1)
    data = write_mmau(tmp_path / "d", n=12)
    one = run(tiny_model, data, tmp_path / "one.json", batch_size=2, max_new_tokens=6)
    assert one["generated"] == 12
    args = ["evaluate", "--model", str(tiny_model), "--data", str(data), "--batch-size", "2",
            "--max-new-tokens", "6", "--prompt", "2"]
    proc = torchrun(*args, "--out", str(tmp_path / "two.json"))
    assert _raw(tmp_path / "two.json") == _raw(tmp_path / "one.json")  # 6 batches, 3 on each rank
    assert proc.stdout.count("total") == 1  # one report, from rank 0
    assert not list(tmp_path.glob("two.json.progress*"))

    # one process stops after 2 of its 6 batches; two processes finish the other 4
    def stop(n):
        if n == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_model, data, tmp_path / "resumed.json", batch_size=2, max_new_tokens=6, after_batch=stop)
    proc = torchrun(*args, "--out", str(tmp_path / "resumed.json"))
    assert "resuming, 4 of 12 item(s) already done" in proc.stdout
    assert _raw(tmp_path / "resumed.json") == _raw(tmp_path / "one.json")
    summary = json.loads((tmp_path / "resumed.json.score.json").read_text())
    assert summary["generated"] == 8  # the 8 items no process had finished, split over the two
    assert not list(tmp_path.glob("resumed.json.progress*"))


def test_a_rank_file_left_by_a_larger_launch_is_resumed_by_one_process(tmp_path, tiny_model, monkeypatch):
    """Progress from rank 1 of an interrupted 2-process launch: one process reads it and
    generates only what no rank finished."""
    import torch

    torch.set_num_threads(1)
    data = write_mmau(tmp_path / "d", n=6)
    full = run(tiny_model, data, tmp_path / "full.json", batch_size=2, max_new_tokens=6)
    assert full["generated"] == 6
    out = tmp_path / "part.json"

    def stop(n):
        if n == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # rank 1 of 2: its first batch (the 2nd of 3)
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setattr(ev, "eval_world", lambda: (1, 2))
        monkeypatch.setattr(ev, "_barrier", lambda world: None)
        run(tiny_model, data, out, batch_size=2, max_new_tokens=6, after_batch=stop)
    monkeypatch.undo()
    assert (tmp_path / "part.json.progress.rank1.jsonl").is_file()
    resumed = run(tiny_model, data, out, batch_size=2, max_new_tokens=6)
    assert resumed["generated"] == 4
    assert _raw(out) == _raw(tmp_path / "full.json")
    assert not list(tmp_path.glob("part.json.progress*"))


def test_sweep_on_two_processes_equals_one(tmp_path, tiny_model):
    data = write_mmau(tmp_path / "d", n=6)
    one = _make_run(tmp_path / "a", tiny_model)
    two = _make_run(tmp_path / "b", tiny_model)
    res = sweep(one, data, batch_size=2, max_new_tokens=6, progress=False)
    torchrun("sweep", "--run-dir", str(two), "--data", str(data), "--batch-size", "2", "--max-new-tokens", "6")
    res2 = json.loads((two / "eval" / "sweep.json").read_text())
    assert [r["test"] for r in res2["rows"]] == [r["test"] for r in res["rows"]]
    for name in ("checkpoint-10", "checkpoint-20", "checkpoint-30"):
        assert _raw(two / "eval" / f"{name}.test.json") == _raw(one / "eval" / f"{name}.test.json")
