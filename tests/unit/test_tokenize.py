"""/tokenize and /detokenize in vLLM's shapes, agreeing with what generation sends."""

from __future__ import annotations

import pytest

from tests.unit.test_server_stand_in import assert_error

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("model", ["chat", "base", "chat@rain"])
def test_chat_count_is_the_completions_prompt_tokens(client, model):
    tokens = client.post("/tokenize", json={"model": model, "messages": MESSAGES}).json()
    reply = client.post("/v1/chat/completions", json={"model": model.split("@")[0],
                                                      "messages": MESSAGES, "max_tokens": 1})
    assert tokens["count"] == len(tokens["tokens"]) == reply.json()["usage"]["prompt_tokens"]
    assert tokens["max_model_len"] == 512 and tokens["token_strs"] is None


def test_prompt_round_trip_and_flags(client, engines):
    text = "tokenize me"
    plain = client.post("/tokenize", json={"model": "base", "prompt": text,
                                           "add_special_tokens": False,
                                           "return_token_strs": True}).json()
    assert plain["tokens"] == engines["base"].tokenize(text, add_special_tokens=False)
    assert "".join(plain["token_strs"]) == text
    special = client.post("/tokenize", json={"model": "base", "prompt": text}).json()
    assert special["tokens"] == engines["base"].tokenize(text, add_special_tokens=True)
    back = client.post("/detokenize", json={"model": "base", "tokens": plain["tokens"]})
    assert back.json() == {"prompt": text}


def test_chat_template_flags(client, engines):
    def ids(**flags):
        return client.post("/tokenize", json={"model": "chat", "messages": MESSAGES} | flags
                           ).json()["tokens"]

    decode = engines["chat"].detokenize
    assert decode(ids()).endswith("<assistant>")
    assert not decode(ids(add_generation_prompt=False)).endswith("<assistant>")
    continued = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}]
    open_turn = client.post("/tokenize", json={"model": "chat", "messages": continued,
                                               "add_generation_prompt": False,
                                               "continue_final_message": True}).json()
    assert decode(open_turn["tokens"]).endswith("Hel")
    # continue_final_message alone turns the default generation prompt off (it was a 500)
    alone = client.post("/tokenize", json={"model": "chat", "messages": continued,
                                           "continue_final_message": True})
    assert alone.status_code == 200 and alone.json()["tokens"] == open_turn["tokens"]


def test_default_model_is_the_first_served(client, engines):
    reply = client.post("/tokenize", json={"prompt": "a"}).json()
    assert reply["tokens"] == engines["chat"].tokenize("a", add_special_tokens=True)


@pytest.mark.parametrize(("path", "body", "status", "param"), [
    ("/tokenize", {"model": "nope", "prompt": "a"}, 404, "model"),
    ("/tokenize", {"prompt": 5}, 400, "prompt"),
    ("/tokenize", {"messages": []}, 400, "messages"),
    ("/tokenize", {"messages": [{"role": "wizard", "content": "a"}]}, 400, "messages[0].role"),
    ("/tokenize", {"messages": MESSAGES, "add_generation_prompt": True,
                   "continue_final_message": True}, 400, None),
    ("/tokenize", {"messages": MESSAGES, "add_generation_prompt": 1,
                   "continue_final_message": "true"}, 400, None),
    ("/tokenize", {"prompt": "a", "tools": []}, 400, "tools"),
    ("/detokenize", {"tokens": [104, 999]}, 400, "tokens"),
    ("/detokenize", {"tokens": [-1]}, 400, "tokens[0]"),
    ("/detokenize", {"tokens": [2**63]}, 400, "tokens[0]"),
])
def test_errors(client, path, body, status, param):
    assert_error(client.post(path, json=body), status, param)
