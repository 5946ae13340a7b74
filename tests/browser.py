"""The playground page driven in headless Chromium (Debian's `chromium` + `chromium-driver`),
shared by the stand-in tests (tests/unit) and the real-model tests (tests/integration).

`make test` installs both packages; Selenium uses the system driver (never downloads one).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).parents[1] / "docs" / "playground"


@contextmanager
def headless_chromium(width: int = 1500, height: int = 1100) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def chat_request(
    model: str,
    question: str,
    alignment: dict[str, Any],
    *,
    max_tokens: int,
    temperature: float | None = 0.0,
    seed: int | None = None,
) -> dict[str, Any]:
    """The non-streamed request a column sends (to compare the page with the API)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "alignment": alignment,
    }
    if temperature is not None:
        body["temperature"] = temperature
    if seed is not None:
        body["seed"] = seed
    return body


class Playground:
    """One open playground page: fill it in as a person would, read what it shows."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self) -> None:
        self.driver.get(f"{self.base_url}/playground")
        self.wait(lambda d: d.execute_script("return document.body.dataset.state") == "idle")

    def wait(self, condition, timeout: float = 30) -> Any:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(condition)

    def find(self, selector: str, root: WebElement | None = None) -> WebElement:
        return (root or self.driver).find_element("css selector", selector)

    def find_all(self, selector: str, root: WebElement | None = None) -> list[WebElement]:
        return (root or self.driver).find_elements("css selector", selector)

    def set_value(self, selector: str, value: object, root: WebElement | None = None) -> None:
        """Set a field (or pick an option) and fire `change`, as a person leaving it does."""
        text = "" if value is None else str(value)
        taken = self.driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));"
            "return arguments[0].value;",
            self.find(selector, root),
            text,
        )
        assert taken == text, f"{selector} has no option {text!r}"

    def enter_key(self, key: str) -> None:
        self.set_value("#api-key", key)

    def notice(self) -> str:
        return self.wait(
            lambda d: (
                self.find("#notice").get_property("textContent")
                if self.find("#notice").is_displayed()
                else None
            )
        )

    def choose_model(self, model: str) -> None:
        """Once /v1/models has answered (the list is refilled whenever the key changes)."""
        self.wait(
            lambda d: (
                model
                in d.execute_script(
                    "return [...document.querySelectorAll('#model option')].map(o => o.value)"
                )
            )
        )
        self.set_value("#model", model)

    def set_question(self, question: str) -> None:
        self.set_value("#messages .message .content", question)

    def set_options(
        self, *, max_tokens: int, temperature: float | None, seed: int | None = None
    ) -> None:
        self.set_value("#max-tokens", max_tokens)
        self.set_value("#temperature", temperature)
        self.set_value("#seed", seed)

    def columns(self) -> list[WebElement]:
        return self.find_all("#columns .column")

    def set_columns(self, *strategies: str) -> list[WebElement]:
        """Exactly these strategy columns, in order."""
        while len(self.columns()) > len(strategies):
            self.find(".remove", self.columns()[-1]).click()
        while len(self.columns()) < len(strategies):
            self.find("#add-column").click()
        for column, strategy in zip(self.columns(), strategies, strict=True):
            self.set_value(".strategy", strategy, column)
        return self.columns()

    def configure(self, column: WebElement, **fields: object) -> None:
        """Column fields by their class, e.g. `gamma=0.4`, `max_visits=2`, `extra_json=...`."""
        for name, value in fields.items():
            self.set_value("." + name.replace("_", "-"), value, column)

    def run(self, timeout: float = 60) -> float:
        """Press Run and wait for every column to finish; the seconds it took."""
        started = time.monotonic()
        self.find("#run").click()
        self.wait(
            lambda d: (
                d.execute_script("return document.body.dataset.state") == "idle"
                and not self.find_all("#columns .column[data-state=running]")
            ),
            timeout,
        )
        return time.monotonic() - started

    # --- what a column shows

    def state(self, column: WebElement) -> str:
        return column.get_attribute("data-state")

    def answer(self, column: WebElement) -> str:
        return self.find(".answer", column).get_property("textContent")

    def pieces(self, column: WebElement, selector: str) -> list[tuple[str, str]]:
        """(class, text) of each highlighted piece of the answer, in order."""
        return self.driver.execute_script(
            "return [...arguments[0].querySelectorAll(arguments[1])]"
            ".map(e => [e.className, e.textContent]);",
            self.find(".answer", column),
            selector,
        )

    def spans(self, column: WebElement) -> list[dict[str, str]]:
        return [
            {"source": cls.split("src-")[1], "text": text}
            for cls, text in self.pieces(column, ".span")
        ]

    def metric(self, column: WebElement, name: str) -> str:
        return self.find(f"dd[data-metric={name}]", column).get_property("textContent")

    def error(self, column: WebElement) -> str:
        return self.find(".error-message", column).get_property("textContent")

    def tree_decisions(self, column: WebElement) -> list[WebElement]:
        return self.find_all(".tree details.decision", column)

    def open_first_decision(self, column: WebElement) -> None:
        decisions = self.tree_decisions(column)
        if decisions:
            self.find("summary", decisions[0]).click()

    def screenshot(self, name: str) -> Path:
        """A full-page screenshot into docs/playground/ (the README shows one)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        width = self.driver.get_window_size()["width"]
        self.driver.set_window_size(width, max(height + 100, 600))
        path = SCREENSHOTS / name
        self.driver.save_screenshot(str(path))
        return path
