"""Answer extraction, exactly the official R1-AQA rule, shared by the rewards and the evaluator.

>>> extract_answer("<think>hmm</think><answer> a dog </answer><answer>cat</answer>")
'a dog'
>>> extract_answer("  a dog  ")
'a dog'
>>> extract_answer("<answer>a\\ndog</answer>")  # no DOTALL: a multi-line answer is not matched
'<answer>a\\ndog</answer>'
"""
from __future__ import annotations

import re

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>")


def extract_answer(text: str) -> str:
    """First `<answer>(.*?)</answer>` (no DOTALL), else the whole text; stripped either way."""
    if text is None:
        raise TypeError("extract_answer() got None; expected the model's output text")
    match = ANSWER_RE.search(text)
    return (match.group(1) if match else text).strip()


def has_answer_tags(text: str) -> bool:
    """Whether the official rule finds an `<answer>...</answer>` span (on one line)."""
    return ANSWER_RE.search(text) is not None
