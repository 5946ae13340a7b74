"""Fixtures both suites share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from decoding.strategies.nudging import NudgingStrategy


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium for a module's playground tests (Selenium imported only here)."""
    from tests.browser import headless_chromium

    with headless_chromium() as driver:
        yield driver


@pytest.fixture
def never_provisional(monkeypatch):
    """A switch: every round waits for its whole chunk, as the reference does."""
    def switch(off: bool) -> None:
        if off:
            monkeypatch.setattr(NudgingStrategy, "_start_next_early", lambda *args: False)
        else:
            monkeypatch.undo()
    return switch
