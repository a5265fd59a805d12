"""The audio tower of a Qwen2-Audio model (its Whisper-style encoder): the one way to find it in
any wrapping, and the one way to wrap its `forward`.

Two features change how the tower runs without touching the model's code, and both go through
`wrap_forward`: GRPO's shared encoding (`aqa_core.train.grpo_trainer.share_audio_encoding`,
each distinct clip encoded once per batch) and the sweep's replay cache
(`aqa_core.tower_cache.TowerCache`, a frozen tower's output reused across checkpoints).
Wrappers stack: each one calls the forward that was there before it, and undoing one puts
exactly that forward back, so a replay never removes a shared-encoding wrapper underneath it.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def audio_tower(model) -> Any:  # a Qwen2AudioForConditionalGeneration, maybe wrapped
    """The audio encoder module of a model in any wrapping (PEFT, DDP, DeepSpeed): the one module
    whose main input is `input_features` and which has encoder layers (Qwen2AudioEncoder)."""
    found = [m for m in model.modules() if getattr(m, "main_input_name", None) == "input_features"
             and hasattr(m, "layers")]
    if len(found) != 1:
        raise TypeError(f"{type(model).__name__}: expected one audio tower (a module taking input_features), "
                        f"found {len(found)}")
    return found[0]


def tower_fingerprint(model) -> str:
    """SHA-256 (first 16 hex digits) of the tower's parameters and buffers, names and bytes."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(audio_tower(model).state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def wrap_forward(tower, wrapper: Callable[..., Any], name: str) -> Callable[[], None]:
    """Make `tower.forward(*args, **kwargs)` call `wrapper(inner, *args, **kwargs)`, where `inner`
    is the forward in place before (the class's own, or an earlier wrapper). Returns the undo,
    which restores that previous forward; undoing out of order is an error (it would drop the
    wrappers installed since). `name` labels the wrapper in `wrappers(tower)`."""
    had_own = "forward" in vars(tower)
    previous = vars(tower).get("forward")
    inner = tower.forward

    @functools.wraps(inner)
    def forward(*args: Any, **kwargs: Any) -> Any:
        return wrapper(inner, *args, **kwargs)

    forward._aqa_wrapper = name  # type: ignore[attr-defined]
    forward._aqa_previous = previous  # type: ignore[attr-defined]
    tower.forward = forward

    def undo() -> None:
        if vars(tower).get("forward") is not forward:
            raise RuntimeError(f"audio tower: {name!r} undone while another wrapper sits on top of it "
                               f"({wrappers(tower)})")
        if had_own:
            tower.forward = previous
        else:
            del tower.forward  # back to the class's own forward

    return undo


@contextmanager
def wrapped_forward(tower, wrapper: Callable[..., Any], name: str) -> Iterator[None]:
    """`wrap_forward` for the duration of a block."""
    undo = wrap_forward(tower, wrapper, name)
    try:
        yield
    finally:
        undo()


def wrappers(tower) -> list[str]:
    """Names of the wrappers around the tower's forward, outermost first."""
    names, fn = [], vars(tower).get("forward")
    while fn is not None and hasattr(fn, "_aqa_wrapper"):
        names.append(fn._aqa_wrapper)
        fn = fn._aqa_previous
    return names
