import pytest

from decoding.errors import ContextLengthExceeded, InvalidRequest
from decoding.prompts import PLAIN_STOP, chat_prompt, render_plain, resolve_max_tokens
from decoding.stand_in import BOS, StandInEngine
from decoding.types import Message, cacheable


def test_plain_transcript_for_base_models():
    messages = [Message("system", "Be brief."), Message("user", "Hi?"),
                Message("assistant", "Hello."), Message("user", "Why?")]
    assert render_plain(messages) == (
        "Be brief.\n\nQuestion: Hi?\nAnswer: Hello.\nQuestion: Why?\nAnswer:"
    )


def test_plain_transcript_continues_an_open_answer():
    text = render_plain([Message("user", "Hi?"), Message("assistant", "Well,")])
    assert text == "Question: Hi?\nAnswer: Well,"


def test_base_model_prompt_gets_bos_and_turn_stop():
    prompt = chat_prompt(StandInEngine("b", role="base"), [Message("user", "Hi?")])
    assert prompt.token_ids[0] == BOS
    assert prompt.stop == PLAIN_STOP


def test_chat_model_prompt_uses_template_without_extra_bos():
    prompt = chat_prompt(StandInEngine("c"), [Message("user", "Hi?")])
    assert prompt.text == "<user>Hi?</user><assistant>"
    assert prompt.token_ids[0] != BOS
    assert prompt.stop == ()


def test_final_assistant_message_is_continued():
    prompt = chat_prompt(StandInEngine("c"), [Message("user", "Hi"), Message("assistant", "So")])
    assert prompt.text.endswith("<assistant>So")


def test_empty_messages_rejected():
    with pytest.raises(InvalidRequest):
        chat_prompt(StandInEngine("c"), [])


@pytest.mark.parametrize(("prompt", "asked", "expected"), [(10, None, 502), (10, 100, 100)])
def test_max_tokens_resolution(prompt, asked, expected):
    assert resolve_max_tokens(StandInEngine().info, prompt, asked) == expected


@pytest.mark.parametrize(("prompt", "asked", "param"), [(512, None, "messages"),
                                                       (600, 1, "messages"),
                                                       (500, 13, "max_tokens")])
def test_context_overflow(prompt, asked, param):
    with pytest.raises(ContextLengthExceeded) as info:
        resolve_max_tokens(StandInEngine().info, prompt, asked)
    assert info.value.param == param
    assert "maximum context length is 512" in info.value.message


@pytest.mark.parametrize(("prompt", "block", "expected"), [
    (1, 32, 0), (32, 32, 0), (33, 32, 32), (65, 32, 64), (64, 32, 32), (10, 1, 9),
])
def test_cacheable_prompt_tokens_are_whole_blocks_before_the_last_token(prompt, block,
                                                                        expected):
    assert cacheable(prompt, block) == expected
