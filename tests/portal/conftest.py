"""Fixtures for the portal's browser tests: one headless Chromium for the package (`browser`) and
a factory of isolated browser contexts (`new_context`), every page of which is watched for
JavaScript errors from its creation. See `tests/portal/browser.py` for `check_page`.

    def test_committee_sees_the_application(new_context: NewContext, portal: str) -> None:
        researcher = new_context(base_url=portal).new_page()
        researcher.goto("/portal/apply")
        check_page(researcher, "apply")
        member = new_context(base_url=portal).new_page()  # a separate login, cookies and storage
        ...

Playwright's sync API and asyncio: while Playwright runs, it leaves its event loop marked as the
running one in the main thread between its calls (`asyncio.run`, anyio's and pytest-asyncio's
runners would then refuse to start: "cannot be called from a running event loop"). So:

- the browser lives as long as the tests of this package (package scope), not the session;
- `_playwright_loop_outside_browser_tests` marks the loop running only during the tests that
  use the browser, so async tests (anyio) and `asyncio.run` work in this package too, as long
  as a test does not use both; servers for the pages run in threads (`tests.support.served`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from tests.portal.browser import CONTEXT_OPTIONS, NewContext, launch_chromium, watch_context

#: Fixtures that drive the browser, directly or not.
BROWSER_FIXTURES = frozenset({"_playwright", "browser", "new_context"})


class _Playwright:
    """Playwright and its event loop (the loop the sync API runs in its own greenlet)."""

    def __init__(self) -> None:
        self._manager = sync_playwright()
        self.playwright = self._manager.start()
        # Playwright's sync API leaves its loop marked as running after each call.
        self.loop = asyncio.get_running_loop()

    def attach(self) -> None:
        """Mark Playwright's loop running again, as its calls need it."""
        asyncio.events._set_running_loop(self.loop)

    @staticmethod
    def detach() -> None:
        """Mark no loop running, as everything else in the thread expects between tests."""
        asyncio.events._set_running_loop(None)


@pytest.fixture(scope="package")
def _playwright() -> Iterator[_Playwright]:
    running = _Playwright()
    try:
        yield running
    finally:
        running.attach()
        running.playwright.stop()  # ends Playwright's loop and closes it
        running.detach()


@pytest.fixture(autouse=True)
def _playwright_loop_outside_browser_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Playwright's loop marked as running during the tests that use the browser, not others."""
    if not BROWSER_FIXTURES & set(request.fixturenames):
        yield
        return
    if request.node.get_closest_marker("anyio") is not None:
        pytest.fail("a browser test cannot be an async test: Playwright's sync API runs its own "
                    "event loop; write the test as a plain function", pytrace=False)
    running: _Playwright = request.getfixturevalue("_playwright")
    running.attach()
    try:
        yield
    finally:
        running.detach()


@pytest.fixture(scope="package")
def browser(_playwright: _Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium, one for the tests of this package."""
    browser = launch_chromium(_playwright.playwright)
    try:
        yield browser
    finally:
        _playwright.attach()
        browser.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[NewContext]:
    """Makes isolated browser contexts (a user each: cookies, storage, cache of their own),
    closed when the test ends. Options are Playwright's `Browser.new_context` ones (`base_url`,
    ...), over a fixed viewport of 1280x800, locale and time zone (`CONTEXT_OPTIONS`). Every
    page of these contexts is watched (`watch_context`) from its creation."""
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        context = browser.new_context(**{**CONTEXT_OPTIONS, **options})
        watch_context(context)
        contexts.append(context)
        return context

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
