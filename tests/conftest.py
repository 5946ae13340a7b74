"""Fixtures both suites share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium for a module's playground tests (Selenium imported only here)."""
    from tests.browser import headless_chromium

    with headless_chromium() as driver:
        yield driver
