"""The full-scale launch path run for real: DeepSpeed ZeRO-3 under the project's own
recipes/accelerate/zero3.yaml, 2 CPU processes with gloo (scripts/zero3_launch.py; facts in
../shared/notes/zero3-cpu.md). GRPO, full SFT and LoRA SFT on the tiny model: a couple of steps,
checkpoints, `--resume`, and `final/` loaded back and compared with the ZeRO shards consolidated
by DeepSpeed's own `zero_to_fp32`. The first launch on a machine compiles DeepSpeed's small
shared-memory op (about 40 s, cached under ~/.cache/torch_extensions)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

pytestmark = pytest.mark.slow
pytest.importorskip("deepspeed", reason="DeepSpeed is a test dependency: pip install -e '.[dev]'")

from zero3_launch import ABORT_MARK, launch  # noqa: E402

from aqa_core.runs import read_metrics  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_run_inputs):
    return tiny_run_inputs(tmp_path_factory.mktemp("zero3"))


def _sets(tiny, **extra) -> list[str]:
    sets = {"model_name_or_path": tiny["model"], "train_data": tiny["data"] / "train.jsonl",
            "train_audio_dir": tiny["data"] / "train-audios", "torch_threads": 1, "device": "cpu", **extra}
    return ["--set", *[f"{k}={v}" for k, v in sets.items()]]


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert ABORT_MARK not in proc.stderr
    return proc.stdout


def _final_equals_shards(run: Path, step: int, init_model: str) -> int:
    """`final/` loads with from_pretrained and equals checkpoint-STEP's ZeRO shards consolidated to
    fp32; returns how many parameters differ from the untrained model."""
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import Qwen2AudioForConditionalGeneration

    shards = get_fp32_state_dict_from_zero_checkpoint(str(run / f"checkpoint-{step}"))
    final = dict(Qwen2AudioForConditionalGeneration.from_pretrained(run / "final").named_parameters())
    assert set(shards) == set(final)
    for name, tensor in shards.items():
        assert torch.equal(final[name].detach(), tensor), name
    init = dict(Qwen2AudioForConditionalGeneration.from_pretrained(init_model).named_parameters())
    return sum(not torch.equal(init[k], final[k]) for k in final)


def _zero_files(ckpt: Path) -> tuple[list[str], list[str]]:
    names = sorted(p.name for p in ckpt.glob("global_step*/*.pt"))
    return [n for n in names if n.endswith("model_states.pt")], [n for n in names if n.endswith("optim_states.pt")]


def test_grpo_zero3_two_processes_checkpoint_resume_final(tiny, tmp_path):
    run = tmp_path / "grpo"
    common = ["grpo", "--recipe", str(REPO / "recipes/grpo/mini.yaml"), "--output-dir", str(run)]
    shape = dict(num_processes=2, save_steps=1, per_device_train_batch_size=4, num_generations=4,
                 max_completion_length=8)
    out = _ok(launch(common + _sets(tiny, max_steps=2, **shape), varying_reward=True))
    assert "world size 2" in out and "GRPO done: 2 steps" in out
    out = _ok(launch(common + ["--resume"] + _sets(tiny, max_steps=3, **shape), varying_reward=True))
    assert "GRPO done: 3 steps" in out
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    # each rank wrote its shard; only the newest checkpoint keeps its optimizer state
    # (keep_optimizer_state: newest), the older ones their weights
    for step in (1, 2, 3):
        models, optims = _zero_files(run / f"checkpoint-{step}")
        assert len(models) == 2 and (run / f"checkpoint-{step}" / "model.safetensors").is_file()
        assert len(optims) == (2 if step == 3 else 0), (step, optims)
    # the reward varies within groups, so the update is real: every trained parameter moved
    changed = _final_equals_shards(run, 3, tiny["model"])
    assert changed > 0
    # the preflight's disk estimate for this very run (fp32 on a CPU: 4 bytes a weight) against the
    # bytes of the weight and ZeRO files written, with and without the optimizer state
    from aqa_core.train.preflight import DataProfile, estimate, load_any_recipe, model_shape

    recipe = load_any_recipe(REPO / "recipes/grpo/mini.yaml", [f"{k}={v}" for k, v in shape.items()] + ["max_steps=3"])
    disk = estimate(recipe, model_shape(tiny["model"]), DataProfile(8, 3.0, 40, assumed=True), world=2,
                    bytes_per_weight=4)["disk_gb"]
    for step, key in ((3, "checkpoint_with_optimizer"), (1, "checkpoint_weights_only")):
        ckpt = run / f"checkpoint-{step}"
        written = sum(f.stat().st_size for f in [ckpt / "model.safetensors", *ckpt.glob("global_step*/*.pt")])
        assert disk[key] * 1e9 == pytest.approx(written, rel=0.10), (step, key)


def test_sft_full_zero3_counts_parameters_and_resumes(tiny, tmp_path):
    run = tmp_path / "sft"
    common = ["sft", "--recipe", str(REPO / "recipes/sft/mini-full.yaml"), "--output-dir", str(run)]
    shape = dict(per_device_train_batch_size=2, save_steps=2, num_train_epochs=1)
    out = _ok(launch(common + _sets(tiny, max_steps=2, **shape)))
    # ZeRO-3 shards report numel() == 0; the count uses ds_numel ("0 of 0" before the fix)
    trained, total = (int(x.replace(",", "")) for x in
                      re.search(r"([\d,]+) of ([\d,]+) parameters trainable", out).groups())
    assert 0 < trained < total
    _ok(launch(common + ["--resume"] + _sets(tiny, max_steps=3, **shape)))
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert _final_equals_shards(run, 3, tiny["model"]) > 0


def test_sft_lora_zero3_writes_adapter_and_merged_model(tiny, tmp_path):
    run = tmp_path / "lora"
    out = _ok(launch(["sft", "--recipe", str(REPO / "recipes/sft/mini-lora.yaml"), "--output-dir", str(run)]
                     + _sets(tiny, max_steps=2, save_steps=2, per_device_train_batch_size=2)))
    assert "sft: 2 steps" in out
    from transformers import Qwen2AudioForConditionalGeneration

    for folder in (run / "final", run / "checkpoint-2" / "merged"):
        model = Qwen2AudioForConditionalGeneration.from_pretrained(folder)  # a whole model, adapter merged
        assert not any("lora_" in n for n, _ in model.named_parameters())
    assert (run / "final" / "adapter" / "adapter_config.json").is_file()
