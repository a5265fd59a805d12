"""scripts/gpu_check.py, the full-scale check for the day a GPU is lent: on a machine without one
it says so and exits 0; at a small shape on the CPU it runs its whole path (random model with the
real processor classes, GRPO with LoRA through the project's runner, one evaluation batch) and
writes every figure beside the preflight's prediction."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts/gpu_check.py"), *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)


def test_without_a_gpu_it_says_so_and_succeeds():
    proc = _check()
    assert proc.returncode == 0 and proc.stdout.startswith("no GPU")


@pytest.mark.slow
def test_small_shape_on_cpu_runs_the_whole_path(tmp_path):
    pytest.importorskip("trl")
    proc = _check("--small", "--device", "cpu", "--steps", "2", "--generations", "4", "--max-tokens", "16",
                  "--clip-seconds", "2", "--eval-batch", "4", "--eval-tokens", "8", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for line in ("preflight predicts (1 GPU, LoRA)", "step 1:", "step 2:", "evaluation batch of 4:", "gpu_check: done"):
        assert line in proc.stdout
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["step"] for s in result["steps"]] == [1, 2]
    # 2 prompts x 4 generations of 16 tokens per step (a random model never stops early)
    assert all(s["generated_tokens"] == 8 * 16 for s in result["steps"])
    assert result["preflight"]["world"] == 1 and result["preflight"]["trained_parameters"] > 0
    assert (tmp_path / "run" / "final" / "adapter").is_dir()  # the project's runner wrote its run
