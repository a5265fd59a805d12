"""R1-AQA's rewards with TRL's reward signature `(completions, solution, **kwargs) -> list[float]`.

Completions may be plain strings or conversational message lists (`[{"role": "assistant",
"content": ...}]`); `solution` may be `<answer>X</answer>` or a bare `X`. Semantics are the
official code's: the answer is extracted by `aqa_core.answers.extract_answer` (the same rule the
evaluator uses) and compared exactly, case-sensitively; the format rewards are full matches.

The official accuracy reward first tries math-verify on the WHOLE completion and solution (left
over from a maths codebase; numeric equivalence then counts as correct) and ignores any error.
That pass is off in the paper recipe and on in the official-code recipe (`math_verify=True`).

>>> accuracy_reward(["<answer>a dog</answer>", "a cat"], ["<answer>a dog</answer>", "a dog"])
[1.0, 0.0]
>>> format_reward([[{"role": "assistant", "content": "<answer>x</answer>"}]], ["x"])
[1.0]
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from .answers import extract_answer

log = logging.getLogger(__name__)

FORMAT_RE = re.compile(r"<answer>.*?</answer>", re.DOTALL)
THINK_FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)

#: How often math-verify raised and the string rule decided instead (the official code hides this).
MATH_VERIFY_ERRORS = {"count": 0}


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the last message's content in a message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):  # multimodal message parts
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise TypeError(
        "a completion must be a string or a list of chat messages with 'content', "
        f"got {type(completion).__name__}: {completion!r:.80}"
    )


def _math_verify_equal(content: str, sol: str) -> bool:
    """The official first pass: `float(verify(parse(completion), parse(solution))) > 0`."""
    from math_verify import parse, verify

    try:
        return float(verify(parse(content), parse(sol))) > 0
    except Exception as exc:  # the official code ignores every math-verify error
        MATH_VERIFY_ERRORS["count"] += 1
        log.debug("math-verify failed (%s); falling back to the string rule", exc)
        return False


def accuracy_reward(
    completions: Sequence[Any], solution: Sequence[str], math_verify: bool = False, **kwargs: Any
) -> list[float]:
    """1.0 when the extracted answer equals the extracted solution exactly, else 0.0."""
    if len(completions) != len(solution):
        raise ValueError(f"accuracy_reward: {len(completions)} completions but {len(solution)} solutions")
    rewards = []
    for completion, sol in zip(completions, solution, strict=True):
        content = completion_text(completion)
        if not isinstance(sol, str):
            raise TypeError(f"accuracy_reward: solution must be a string, got {sol!r}")
        if math_verify and _math_verify_equal(content, sol):
            rewards.append(1.0)
            continue
        rewards.append(1.0 if extract_answer(content) == extract_answer(sol) else 0.0)
    return rewards


def format_reward(completions: Sequence[Any], solution: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """1.0 when the whole completion is `<answer>...</answer>` (prompt <2>), else 0.0."""
    return [1.0 if FORMAT_RE.fullmatch(completion_text(c)) else 0.0 for c in completions]


def think_format_reward(
    completions: Sequence[Any], solution: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """1.0 when the whole completion is `<think>...</think> <answer>...</answer>` (prompt <3>)."""
    return [1.0 if THINK_FORMAT_RE.fullmatch(completion_text(c)) else 0.0 for c in completions]


REWARDS: dict[str, Callable[..., list[float]]] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "think_format": think_format_reward,
}

#: The reward sums R1-AQA uses for each GRPO prompt (total reward = accuracy + format, max 2).
PROMPT_REWARDS = {2: ("accuracy", "format"), 3: ("accuracy", "think_format")}


def get_reward_funcs(names: Sequence[str], math_verify: bool = False) -> list[Callable[..., list[float]]]:
    """Resolve reward names (`accuracy`, `format`, `think_format`, or the function names) to
    TRL reward functions; an unknown name is an error listing the valid ones."""
    funcs = []
    for name in names:
        key = name[: -len("_reward")] if name.endswith("_reward") else name
        if key not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; valid: {', '.join(sorted(REWARDS))}")
        fn = REWARDS[key]
        if key == "accuracy" and math_verify:
            def accuracy_reward_math_verify(completions, solution, **kwargs):
                return accuracy_reward(completions, solution, math_verify=True, **kwargs)

            accuracy_reward_math_verify.__name__ = "accuracy_reward"
            fn = accuracy_reward_math_verify
        funcs.append(fn)
    return funcs
