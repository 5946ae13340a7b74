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
    """A switch: when on, every round waits for its whole chunk, as the reference does
    (patched once, so other patches of the test stay)."""
    off = False
    early = NudgingStrategy._start_next_early

    def start_next_early(self, *args) -> bool:
        return False if off else early(self, *args)

    def switch(value: bool) -> None:
        nonlocal off
        off = value

    monkeypatch.setattr(NudgingStrategy, "_start_next_early", start_next_early)
    return switch
