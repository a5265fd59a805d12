"""The precision of a run under each launcher's environment, on a (pretended) bf16 GPU: bf16
weights wherever nothing needs fp32 ones, and a message where full fine-tuning keeps fp32."""
from __future__ import annotations

import pytest

from aqa_core.train.common import Precision, choose_precision, launcher

PLAIN = {}
TORCHRUN = {"RANK": "0", "WORLD_SIZE": "8", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
ACCELERATE = {**TORCHRUN, "ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_DYNAMO_BACKEND": "NO"}
ACCELERATE_DS = {**ACCELERATE, "ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}


@pytest.fixture
def bf16_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


@pytest.mark.parametrize("env,name", [(PLAIN, "python"), (TORCHRUN, "torchrun"), (ACCELERATE, "accelerate"),
                                      (ACCELERATE_DS, "accelerate-deepspeed")])
def test_launcher_is_read_from_the_environment(env, name):
    assert launcher(env) == name


@pytest.mark.parametrize("env", [PLAIN, TORCHRUN, ACCELERATE, ACCELERATE_DS])
def test_lora_loads_bf16_weights_under_every_launcher(bf16_gpu, env):
    assert choose_precision("auto", trains_all_weights=False, environ=env) == Precision("cuda", True, "bfloat16")


def test_full_training_under_deepspeed_loads_bf16_weights(bf16_gpu):
    assert choose_precision("auto", environ=ACCELERATE_DS) == Precision("cuda", True, "bfloat16")


@pytest.mark.parametrize("env,name", [(PLAIN, "python"), (TORCHRUN, "torchrun"), (ACCELERATE, "accelerate")])
def test_full_training_without_deepspeed_keeps_fp32_weights_and_says_why(bf16_gpu, env, name):
    with pytest.warns(UserWarning, match=f"full fine-tuning under {name} without DeepSpeed.*preflight"):
        assert choose_precision("auto", environ=env) == Precision("cuda", True, "float32")


def test_cpu_is_fp32_whatever_the_launcher():
    for env in (PLAIN, TORCHRUN, ACCELERATE_DS):
        assert choose_precision("cpu", environ=env) == Precision("cpu", False, "float32")
