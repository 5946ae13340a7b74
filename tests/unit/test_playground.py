"""The playground page: served without a key, relative URLs only, and driven in headless
Chromium against the app over stand-in engines (real uvicorn), compared with the API.

The same page on the real default models: tests/integration/test_playground.py.
"""

from __future__ import annotations

import json
import re
from importlib import resources

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import build_app
from tests.browser import Playground, chat_request
from tests.unit.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
FILES = resources.files("server") / "static" / "playground"
QUESTION = "Tell me something."


def test_pages_need_no_key_but_the_api_still_does(engines, settings):
    with TestClient(build_app(settings, engines)) as client:
        home = client.get("/")
        assert home.status_code == 200 and 'href="playground"' in home.text
        page = client.get("/playground")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for name, media_type in (
            ("playground.js", "text/javascript"),
            ("playground.css", "text/css"),
        ):
            asset = client.get(f"/playground/{name}")
            assert asset.status_code == 200, name
            assert asset.headers["content-type"].startswith(media_type)
            assert f'"playground/{name}"' in page.text
        missing = client.get("/playground/index.html")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert client.get("/v1/models").status_code == 401


def test_the_page_uses_relative_urls_only():
    """Absolute paths or hosts would break behind a gateway that mounts the server
    elsewhere, and nothing may come from the network (no CDN)."""
    texts = {
        name: (FILES / name).read_text()
        for name in ("index.html", "playground.js", "playground.css")
    }
    for name, text in texts.items():
        assert "://" not in text, name
        assert "url(" not in text, name
    links = re.findall(r'(?:href|src)="([^"]*)"', texts["index.html"])
    assert links and all(not link.startswith("/") for link in links), links
    fetched = re.findall(r'fetch\("([^"]*)"', texts["playground.js"])
    assert sorted(fetched) == ["v1/chat/completions", "v1/models"]


@pytest.fixture
def page(browser, live_url) -> Playground:
    """A fresh page with an empty session storage (no key yet)."""
    page = Playground(browser, live_url)
    page.open()
    browser.execute_script("sessionStorage.clear()")
    page.open()
    return page


def answer(live_url: str, model: str, alignment: dict, **options) -> dict:
    """The API's non-streamed answer to the request a column sends."""
    body = chat_request(model, QUESTION, alignment, **options)
    reply = httpx.post(f"{live_url}/v1/chat/completions", json=body, headers=AUTH, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_key_lives_in_session_storage_and_the_401_is_shown(page, live_url):
    refused = httpx.get(f"{live_url}/v1/models").json()["error"]["message"]
    assert page.notice() == f"{refused} Enter the server's API key above."
    page.enter_key(API_KEY)
    page.choose_model("base")  # the models load once the key is set
    assert not page.find("#notice").is_displayed()
    stored = page.driver.execute_script("return sessionStorage.getItem('align-serve.api-key')")
    assert stored == API_KEY
    assert page.driver.execute_script("return localStorage.length") == 0
    page.open()  # a reload keeps it for the tab
    assert page.find("#api-key").get_property("value") == API_KEY


NUDGING = {"strategy": "nudging", "nudging_model": "chat", "gamma": 0.15}
RAIN = {"strategy": "rain", "max_visits": 4, "min_searches": 2, "parallel_searches": 1}
RAIN_JUDGE = {"evaluation": "votes", "evaluator_model": "chat", "principle": "harmless"}


def test_three_columns_show_what_the_api_answers(page, live_url):
    page.enter_key(API_KEY)
    page.choose_model("base")
    page.set_question(QUESTION)
    page.set_options(max_tokens=40, temperature=0, seed=7)
    vanilla, nudging, rain = page.set_columns("vanilla", "nudging", "rain")
    page.configure(nudging, nudging_model="chat", gamma=0.15, extra_json='{"chunk_tokens": 4}')
    page.configure(rain, max_visits=4, min_searches=2, parallel_searches=1, **RAIN_JUDGE)
    page.run()
    assert [page.state(c) for c in (vanilla, nudging, rain)] == ["done"] * 3
    options = {"max_tokens": 40, "seed": 7}

    plain = answer(live_url, "base", {"strategy": "vanilla"}, **options)
    assert page.answer(vanilla) == plain["choices"][0]["message"]["content"]
    assert page.metric(vanilla, "tokens") == str(plain["usage"]["completion_tokens"])

    spans_asked = NUDGING | {"return_spans": True, "chunk_tokens": 4}
    nudged = answer(live_url, "base", spans_asked, **options)
    spans = page.spans(nudging)
    assert spans == nudged["alignment"]["spans"]
    assert [s["source"] for s in spans] == ["nudger", "base", "nudger", "base"]
    assert "".join(s["text"] for s in spans) == nudged["choices"][0]["message"]["content"]
    assert page.answer(nudging) == nudged["choices"][0]["message"]["content"]
    stats = nudged["alignment"]["stats"]
    assert page.metric(nudging, "nudge-ratio") == f"{stats['nudge_ratio']:.3f}"
    assert page.metric(nudging, "rounds") == str(stats["rounds"])
    assert page.metric(nudging, "handoffs") == "3"

    searched = answer(live_url, "base", RAIN | RAIN_JUDGE | {"return_tree": True}, **options)
    sets = [text for _, text in page.pieces(rain, ".set")]
    assert "".join(sets) == searched["choices"][0]["message"]["content"]
    tree = searched["alignment"]["tree"]
    decisions = page.tree_decisions(rain)
    assert len(decisions) == len(tree) == searched["alignment"]["stats"]["committed_sets"]
    committed = page.find_all(".tree details.decision > ul > li.committed", rain)
    assert len(committed) == len(tree)  # one marked candidate per decision
    assert len(page.find_all("li.node", decisions[0])) == count_nodes(tree[0]["children"])
    cost = searched["alignment"]["stats"]["engine_tokens_per_answer_token"]
    assert page.metric(rain, "engine-tokens").startswith(f"{cost['generated']} decoded")
    for column in (vanilla, nudging, rain):
        assert page.metric(column, "ttft").endswith(" s")
        assert float(page.metric(column, "tokens-per-second")) > 0


def test_errors_show_the_message_the_server_sent(page, live_url):
    page.enter_key(API_KEY)
    page.choose_model("chat")
    page.set_options(max_tokens=8, temperature=None)
    (rain,) = page.set_columns("rain")
    page.configure(rain, max_visits=100_000)
    page.run()
    body = chat_request(
        "chat",
        QUESTION,
        {"strategy": "rain", "max_visits": 100_000},
        max_tokens=8,
        temperature=None,
    )
    refused = httpx.post(f"{live_url}/v1/chat/completions", json=body, headers=AUTH)
    assert refused.status_code == 400
    assert page.state(rain) == "error"
    assert page.error(rain) == refused.json()["error"]["message"]
    detail = page.find(".error-detail", rain).text
    assert detail == "param: alignment.max_visits, code: invalid_value"

    # an error after the stream began arrives as an error event; the page shows its message
    page.choose_model("broken")
    (vanilla,) = page.set_columns("vanilla")
    page.run()
    body = chat_request("broken", QUESTION, {"strategy": "vanilla"}, max_tokens=8, temperature=None)
    url = f"{live_url}/v1/chat/completions"
    with httpx.stream("POST", url, headers=AUTH, json=body | {"stream": True}) as stream:
        lines = list(stream.iter_lines())
    errors = [json.loads(line[6:]) for line in lines if line.startswith('data: {"error"')]
    assert page.state(vanilla) == "error"
    assert page.error(vanilla) == errors[0]["error"]["message"]


def count_nodes(nodes: list[dict]) -> int:
    return sum(1 + count_nodes(node["children"]) for node in nodes)
