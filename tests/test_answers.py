"""The official extraction rule: first <answer>(.*?)</answer>, no DOTALL, else the whole text; stripped."""
import pytest

from aqa_core.answers import extract_answer, has_answer_tags


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<answer>Man</answer>", "Man"),
        ("  <answer>  Man \t</answer> ", "Man"),
        ("<answer>Man</answer><answer>Woman</answer>", "Man"),  # first wins
        ("<think>x</think>\n<answer>Woman</answer>", "Woman"),
        ("<answer>a\nb</answer>", "<answer>a\nb</answer>"),  # no DOTALL: whole text
        ("<answer><answer>x</answer></answer>", "<answer>x"),  # non-greedy from the first opening tag
        ("<answer></answer>", ""),
        ("Man", "Man"),
        ("  Man\n", "Man"),
        ("", ""),
        ("<answer>Man", "<answer>Man"),
        ("<ANSWER>Man</ANSWER>", "<ANSWER>Man</ANSWER>"),  # tags are case-sensitive
        ("<answer>狗</answer>", "狗"),
    ],
)
def test_extract_answer_table(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_rejects_none_with_a_clear_error():
    with pytest.raises(TypeError, match="got None"):
        extract_answer(None)


def test_has_answer_tags():
    assert has_answer_tags("x <answer>y</answer>")
    assert not has_answer_tags("<answer>y\n</answer>")
