"""The paper's three instruction prompts (Figure 2) and the one function that turns a
question record into chat messages. Rewards, trainers and the evaluator all use it.

Prompts <2> and <3> are the official R1-AQA user texts, character for character; prompt <1>
(SFT and direct inference) was never published: the paper calls it "the simplest prompt",
so we keep the question and the choices and drop the output-format instruction.

>>> rec = {"question": "What is heard?", "choices": ["a dog", "a cat"], "audio_path": "x.wav"}
>>> user_text(rec["question"], rec["choices"], Prompt.ANSWER_ONLY) == (
...     "What is heard? Please choose the answer from the following options: ['a dog', 'a cat']."
...     " Output the final answer in <answer> </answer>.")
True
>>> build_messages(rec, 1)[0]["content"][1]["text"]
"What is heard? Please choose the answer from the following options: ['a dog', 'a cat']."
"""
from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any


class Prompt(IntEnum):
    """Figure 2's prompts: <1> for SFT, <2> and <3> for GRPO (the caption's "<1> and <3>" is a typo)."""

    SFT = 1
    ANSWER_ONLY = 2
    THINK = 3


_CHOICES = " Please choose the answer from the following options: {choices}."
_TAIL = {
    Prompt.SFT: "",  # reconstructed: unpublished in the paper and the official code
    Prompt.ANSWER_ONLY: " Output the final answer in <answer> </answer>.",
    Prompt.THINK: " Output the thinking process in <think> </think> and final answer in <answer> </answer>.",
}


def as_prompt(prompt: int | str | Prompt) -> Prompt:
    """Accept 1/2/3, "1", "answer_only", or a Prompt; anything else is an error naming the options."""
    if isinstance(prompt, Prompt):
        return prompt
    try:
        return Prompt(int(prompt))
    except (TypeError, ValueError):
        pass
    try:
        return Prompt[str(prompt).upper()]
    except KeyError:
        raise ValueError(
            f"unknown prompt {prompt!r}; valid: 1, 2, 3 or {', '.join(p.name.lower() for p in Prompt)}"
        ) from None


def avqa_question(question_text: str) -> str:
    """AVQA questions speak of "the video"; R1-AQA rewrites that case-sensitively to "audio".

    >>> avqa_question("What is in the video? Video first.")
    'What is in the audio? Video first.'
    """
    return question_text.replace("video", "audio")


def user_text(question: str, choices: list[str], prompt: int | Prompt) -> str:
    """The user text: question, the choices as a Python list repr, then the prompt's instruction."""
    p = as_prompt(prompt)
    return question + _CHOICES.format(choices=list(choices)) + _TAIL[p]


def build_messages(record: Mapping[str, Any], prompt: int | Prompt) -> list[dict]:
    """Chat messages for one question: one user turn, audio first, then the text; no system
    message (the chat template adds its default "You are a helpful assistant.", as in R1-AQA).

    `record` is a loaded question: `question`, `choices`, `audio_path` (see aqa_core.data).
    """
    return [
        {
            "role": "user",
            "content": [
                {"type": "audio", "audio_url": str(record["audio_path"])},
                {"type": "text", "text": user_text(record["question"], record["choices"], prompt)},
            ],
        }
    ]


def solution_text(answer: str) -> str:
    """The gold solution the rewards compare against, as in R1-AQA: `<answer>X</answer>`."""
    return f"<answer>{answer}</answer>"


def sft_target(answer: str, tagged: bool = False) -> str:
    """What SFT teaches the model to say after prompt <1>: the choice text (the paper calls the
    `<answer>` tags "merely a formatting choice" for SFT; `tagged=True` adds them)."""
    return solution_text(answer) if tagged else answer
