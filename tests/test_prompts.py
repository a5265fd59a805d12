"""The prompts are the official R1-AQA texts, character for character."""
import pytest

from aqa_core.prompts import Prompt, as_prompt, avqa_question, build_messages, sft_target, solution_text, user_text

REC = {"question": "What happened in the audio?", "choices": ["motorboat", "Yacht consignment"],
       "audio_path": "/a/x.wav"}


def test_prompt_2_is_the_official_text():
    assert user_text(REC["question"], REC["choices"], 2) == (
        "What happened in the audio? Please choose the answer from the following options: "
        "['motorboat', 'Yacht consignment']. Output the final answer in <answer> </answer>."
    )


def test_prompt_3_is_the_official_text():
    assert user_text(REC["question"], REC["choices"], Prompt.THINK) == (
        "What happened in the audio? Please choose the answer from the following options: "
        "['motorboat', 'Yacht consignment']. Output the thinking process in <think> </think> "
        "and final answer in <answer> </answer>."
    )


def test_prompt_1_drops_the_format_instruction():
    text = user_text(REC["question"], REC["choices"], 1)
    assert text == ("What happened in the audio? Please choose the answer from the following options: "
                    "['motorboat', 'Yacht consignment'].")
    assert "<answer>" not in text


def test_choices_use_python_list_repr_with_quotes_escaped():
    assert "[\"it's\", 'b']" in user_text("Q?", ["it's", "b"], 2)


def test_messages_put_audio_first_and_no_system_message():
    msgs = build_messages(REC, 2)
    assert [m["role"] for m in msgs] == ["user"]
    assert msgs[0]["content"][0] == {"type": "audio", "audio_url": "/a/x.wav"}
    assert msgs[0]["content"][1]["type"] == "text"


def test_video_rewrite_is_case_sensitive():
    assert avqa_question("What is in the video? Video of a dog") == "What is in the audio? Video of a dog"


def test_solution_and_sft_targets():
    assert solution_text("a dog") == "<answer>a dog</answer>"
    assert sft_target("a dog") == "a dog"
    assert sft_target("a dog", tagged=True) == "<answer>a dog</answer>"


@pytest.mark.parametrize("value,expected", [(1, Prompt.SFT), ("2", Prompt.ANSWER_ONLY), ("think", Prompt.THINK)])
def test_as_prompt_accepts_numbers_and_names(value, expected):
    assert as_prompt(value) is expected


def test_as_prompt_rejects_unknown_with_valid_names():
    with pytest.raises(ValueError, match="valid: 1, 2, 3"):
        as_prompt(4)
