"""The playground in headless Chromium on the real default models (the session's server).

Greedy (temperature 0) with a fixed max_tokens, so a column's answer is the API's answer
to the same request. Screenshots go to docs/playground/ (the README shows one).
"""

from __future__ import annotations

import httpx
import pytest

from tests.browser import Playground, chat_request
from tests.integration.conftest import API_KEY, GEMMA, SMOL

pytestmark = pytest.mark.slow
QUESTION = "How do I bake bread at home?"
NUDGING = {"strategy": "nudging", "nudging_model": SMOL, "gamma": 0.4}
RAIN = {"max_visits": 2, "min_searches": 1, "parallel_searches": 1, "evaluation": "soft"}


@pytest.fixture
def page(browser, server_url) -> Playground:
    page = Playground(browser, server_url)
    page.open()
    page.enter_key(API_KEY)
    page.choose_model(GEMMA)
    page.set_question(QUESTION)
    return page


def api_answer(server_url: str, alignment: dict, max_tokens: int) -> dict:
    body = chat_request(GEMMA, QUESTION, alignment, max_tokens=max_tokens)
    reply = httpx.post(
        f"{server_url}/v1/chat/completions",
        json=body,
        timeout=300,
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_vanilla_and_nudging_side_by_side_match_the_api(page, server_url):
    page.set_options(max_tokens=48, temperature=0)
    vanilla, nudging = page.set_columns("vanilla", "nudging")
    page.configure(nudging, nudging_model=SMOL, gamma=0.4)
    page.run(timeout=300)
    assert [page.state(vanilla), page.state(nudging)] == ["done", "done"]
    page.screenshot("vanilla-and-nudging.png")

    plain = api_answer(server_url, {"strategy": "vanilla"}, 48)
    assert page.answer(vanilla) == plain["choices"][0]["message"]["content"]

    side_by_side = page.spans(nudging)
    assert "".join(span["text"] for span in side_by_side) == page.answer(nudging)
    for column in (vanilla, nudging):
        assert page.metric(column, "ttft").endswith(" s")

    # Beside vanilla, Gemma ran both columns' steps in one batch, whose bf16 numerics may
    # tip a near-tie (seen here once: the texts parted after 8 words). The exact
    # comparison with the API runs the nudging column alone, as the API request runs.
    (alone,) = page.set_columns("nudging")
    page.configure(alone, nudging_model=SMOL, gamma=0.4)
    page.run(timeout=300)
    nudged = api_answer(server_url, NUDGING | {"return_spans": True}, 48)
    content = nudged["choices"][0]["message"]["content"]
    spans = page.spans(alone)
    assert "".join(span["text"] for span in spans) == content == page.answer(alone)
    assert spans == nudged["alignment"]["spans"]
    assert {span["source"] for span in spans} == {"base", "nudger"}
    ratio = nudged["alignment"]["stats"]["nudge_ratio"]
    assert page.metric(alone, "nudge-ratio") == f"{ratio:.3f}"


def test_three_columns_and_a_rain_tree(page):
    """The README's screenshot: the three strategies on Gemma, RAIN judged by SmolLM2."""
    page.set_options(max_tokens=24, temperature=0)
    vanilla, nudging, rain = page.set_columns("vanilla", "nudging", "rain")
    page.configure(nudging, nudging_model=SMOL, gamma=0.4)
    page.configure(rain, evaluator_model=SMOL, **RAIN)
    page.run(timeout=600)
    assert [page.state(c) for c in (vanilla, nudging, rain)] == ["done"] * 3
    spans = page.spans(nudging)
    assert "".join(span["text"] for span in spans) == page.answer(nudging)
    sets = [text for _, text in page.pieces(rain, ".set")]
    assert sets and "".join(sets) == page.answer(rain)
    decisions = page.tree_decisions(rain)
    assert len(decisions) == int(page.metric(rain, "committed-sets")) >= 1
    for decision in decisions:  # each decision marks exactly one committed candidate
        assert len(page.find_all(":scope > ul > li.committed", decision)) == 1
    page.open_first_decision(rain)
    assert page.find(".tree details.decision li.node", rain).is_displayed()
    page.screenshot("three-strategies.png")


def test_a_bad_parameter_shows_the_servers_message(page, server_url):
    page.set_options(max_tokens=8, temperature=0)
    (nudging,) = page.set_columns("nudging")
    page.configure(nudging, nudging_model=SMOL, gamma=1.5)
    page.run(timeout=60)
    body = chat_request(
        GEMMA, QUESTION, NUDGING | {"gamma": 1.5, "return_spans": True}, max_tokens=8
    )
    refused = httpx.post(
        f"{server_url}/v1/chat/completions",
        json=body,
        timeout=60,
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert refused.status_code == 400
    assert page.state(nudging) == "error"
    assert page.error(nudging) == refused.json()["error"]["message"]
    page.screenshot("error.png")
