"""Reward tables: the official R1-AQA semantics in both completion shapes."""
import pytest

from aqa_core.rewards import (
    REWARDS,
    accuracy_reward,
    format_reward,
    get_reward_funcs,
    think_format_reward,
)

SOL = "<answer>Man</answer>"

ACCURACY = [
    ("<answer>Man</answer>", 1.0),
    ("<answer> Man </answer>", 1.0),
    ("Man", 1.0),  # no tags: the whole text, stripped
    ("  Man\n", 1.0),
    ("<answer>man</answer>", 0.0),  # case-sensitive
    ("<answer>Woman</answer>", 0.0),
    ("<answer>Man</answer><answer>Woman</answer>", 1.0),  # first tag pair wins
    ("<answer>Woman</answer><answer>Man</answer>", 0.0),
    ("<think>it is Man</think><answer>Man</answer>", 1.0),
    ("<answer>Ma\nn</answer>", 0.0),  # multi-line: no DOTALL, whole text compared
    ("<answer><answer>Man</answer></answer>", 0.0),  # nested: extracts "<answer>Man"
    ("", 0.0),
    ("The answer is Man", 0.0),
    ("<answer>Man</answer>" + "x" * 100_000, 1.0),  # huge completion
]


@pytest.mark.parametrize("completion,expected", ACCURACY)
def test_accuracy_reward_plain_strings(completion, expected):
    assert accuracy_reward([completion], [SOL]) == [expected]


@pytest.mark.parametrize("completion,expected", ACCURACY)
def test_accuracy_reward_conversational(completion, expected):
    assert accuracy_reward([[{"role": "assistant", "content": completion}]], [SOL]) == [expected]


def test_accuracy_reward_accepts_bare_solution():
    assert accuracy_reward(["<answer>Man</answer>", "Woman"], ["Man", " Man "]) == [1.0, 0.0]


FORMAT = [
    ("<answer>Man</answer>", 1.0, 0.0),
    ("<answer>\nMan\nis it\n</answer>", 1.0, 0.0),  # DOTALL in the format rule
    (" <answer>Man</answer>", 0.0, 0.0),  # fullmatch: leading space fails
    ("<answer>Man</answer>\n", 0.0, 0.0),
    ("Man", 0.0, 0.0),
    ("<answer>Man</answer><answer>Woman</answer>", 1.0, 0.0),  # .*? still fullmatches across tags
    ("<think>hmm</think><answer>Man</answer>", 0.0, 1.0),
    ("<think>hmm\nhmm</think>\n\n <answer>Man</answer>", 0.0, 1.0),
    ("<think></think><answer></answer>", 0.0, 1.0),
    ("<answer>Man</answer><think>x</think>", 0.0, 0.0),
    ("<think>x</think>Man", 0.0, 0.0),
    ("", 0.0, 0.0),
]


@pytest.mark.parametrize("completion,fmt,think", FORMAT)
def test_format_rewards_table(completion, fmt, think):
    assert format_reward([completion], [SOL]) == [fmt]
    assert think_format_reward([completion], [SOL]) == [think]
    conv = [[{"role": "assistant", "content": completion}]]
    assert format_reward(conv) == [fmt]
    assert think_format_reward(conv) == [think]


def test_math_verify_pass_is_off_by_default_and_on_by_switch():
    # The official pass parses the WHOLE completion and solution; a bare numeric solution
    # makes "3.0" count as "3".
    assert accuracy_reward(["The answer is 3.0"], ["3"]) == [0.0]
    assert accuracy_reward(["The answer is 3.0"], ["3"], math_verify=True) == [1.0]


def test_math_verify_cannot_fire_on_tagged_solutions():
    # math-verify parses nothing out of "<answer>3</answer>", so with R1-AQA's tagged gold
    # solutions the pass never changes a reward: the string rule decides.
    assert accuracy_reward(["The answer is 3.0"], ["<answer>3</answer>"], math_verify=True) == [0.0]


def test_registry_resolves_names_and_rejects_unknown():
    funcs = get_reward_funcs(["accuracy", "format_reward", "think_format"])
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "format_reward", "think_format_reward"]
    with pytest.raises(ValueError, match="valid: accuracy, format, think_format"):
        get_reward_funcs(["length"])
    assert set(REWARDS) == {"accuracy", "format", "think_format"}


def test_registry_math_verify_switch_keeps_trl_name():
    (fn,) = get_reward_funcs(["accuracy"], math_verify=True)
    assert fn.__name__ == "accuracy_reward"
    assert fn(["The answer is 3.0"], ["3"]) == [1.0]


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="2 completions but 1 solutions"):
        accuracy_reward(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="a completion must be a string"):
        format_reward([42])
    with pytest.raises(TypeError, match="solution must be a string"):
        accuracy_reward(["a"], [None])
