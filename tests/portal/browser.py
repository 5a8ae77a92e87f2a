"""The portal's pages in a real browser: Debian's Chromium driven by Playwright's sync API, each
page watched for console errors and uncaught exceptions from the moment it is created, then checked
(`check_page`): no errors, no serious or critical accessibility violation (axe-core), and a
full-page screenshot in `docs/screenshots/` for the documentation.

The fixtures that use these (`browser`, `new_context`) are in `tests/portal/conftest.py`.
"""

from __future__ import annotations

import re
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page, Playwright

import genofed.portal
from tests.support import REPO

#: Where `check_page` saves its screenshots: the documentation's.
SCREENSHOTS = REPO / "docs" / "screenshots"
#: The portal's static files, as the installed package holds them (vendored scripts under vendor/).
STATIC = Path(genofed.portal.__file__).parent / "static"
#: Debian's Chromium, where `shutil.which` does not find it.
CHROMIUM = Path("/usr/bin/chromium")
#: Chromium as root in a container: no sandbox (it refuses root otherwise), /tmp rather than a
#: small /dev/shm, no GPU.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu")
#: What every context gets unless a test says otherwise: a fixed viewport and locale, so that
#: screenshots keep their size and pages their formats from one machine to the next.
CONTEXT_OPTIONS: dict[str, Any] = {
    "viewport": {"width": 1280, "height": 800},
    "device_scale_factor": 1,
    "locale": "en-GB",
    "timezone_id": "UTC",
    "color_scheme": "light",
    "reduced_motion": "reduce",
}
#: The axe-core impacts `check_page` fails on ("minor" and "moderate" ones are left to review).
FAILING_IMPACTS = frozenset({"serious", "critical"})

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_AXE = Axe()  # axe-core's script, read once from the axe-playwright-python wheel


class NewContext(Protocol):
    """The `new_context` fixture: `new_context(base_url=..., **options)` -> a new context."""

    def __call__(self, **options: Any) -> BrowserContext: ...


def chromium_executable() -> Path:
    """Debian's Chromium; fails the test (never skips) when it is not installed."""
    found = shutil.which("chromium")
    if found is not None:
        return Path(found)
    if CHROMIUM.is_file():
        return CHROMIUM
    pytest.fail("chromium is not installed: run scripts/bootstrap.sh --test (it installs "
                "Debian's chromium, which the portal's browser tests drive; never "
                "`playwright install`)", pytrace=False)


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Debian Chromium, with the flags it needs as root in a container."""
    return playwright.chromium.launch(executable_path=chromium_executable(), headless=True,
                                      args=list(CHROMIUM_ARGS))


def _implicit_favicon(text: str, url: str) -> bool:
    """The browser's own request for /favicon.ico (a page naming no icon) failed: not the page's
    error, and it comes at no fixed time (often after "load"), so it would make checks flaky."""
    return text.startswith("Failed to load resource") and urlsplit(url).path == "/favicon.ico"


@dataclass
class PageWatch:
    """What went wrong in a page's JavaScript since it was watched: console messages of type
    "error" (including the browser's own, e.g. a script or stylesheet that failed to load, but
    not its implicit request for /favicon.ico) and uncaught exceptions ("pageerror")."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def _console(self, message: ConsoleMessage) -> None:
        where = message.location
        if message.type == "error" and not _implicit_favicon(message.text, where.get("url", "")):
            at = f" ({where['url']}:{where['lineNumber']})" if where.get("url") else ""
            self.console_errors.append(f"{message.text}{at}")

    def _page_error(self, error: Error) -> None:
        self.page_errors.append(error.stack or f"{error.name}: {error.message}")

    @property
    def problems(self) -> list[str]:
        return ([f"console error: {text}" for text in self.console_errors]
                + [f"uncaught exception: {text}" for text in self.page_errors])


_WATCHES: weakref.WeakKeyDictionary[Page, PageWatch] = weakref.WeakKeyDictionary()


def watch(page: Page) -> PageWatch:
    """Start recording `page`'s console errors and uncaught exceptions (once per page: a second
    call returns the same record). Pages of `new_context` contexts are watched from their
    creation; call this right after creating any other page."""
    if (existing := _WATCHES.get(page)) is not None:
        return existing
    record = _WATCHES[page] = PageWatch(page)
    page.on("console", record._console)
    page.on("pageerror", record._page_error)
    return record


def watch_context(context: BrowserContext) -> None:
    """Watch every page of `context` from its creation (popups included)."""

    def watch_page(page: Page) -> None:
        watch(page)

    context.on("page", watch_page)


def axe_violations(page: Page, impacts: frozenset[str] = FAILING_IMPACTS) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, those of the given impacts."""
    results = _AXE.run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    return [v for v in violations if v.get("impact") in impacts]


def describe_violation(violation: dict[str, Any]) -> str:
    """One violation for a failure message: rule, impact, help, where, and each failing node."""
    lines = [f"{violation['id']} ({violation['impact']}): {violation['help']} "
             f"[{violation.get('helpUrl', '')}]"]
    for node in violation.get("nodes", []):
        # A target is a list of selectors (more than one across iframes and shadow roots).
        target = " >> ".join(map(str, node.get("target", [])))
        lines.append(f"    {target}: {node.get('html', '')[:200]}")
    return "\n".join(lines)


def check_page(page: Page, name: str, *, screenshots: Path | None = SCREENSHOTS) -> None:
    """Check the page as it is now, then screenshot it as `<screenshots>/<name>.png`:

    - no console error and no uncaught exception since it was watched (listed if any);
    - no axe-core violation of impact "serious" or "critical" (rule, impact, help and the
      failing nodes' selectors listed if any);
    - then (only when both hold) a full-page screenshot, unless `screenshots` is None.
    """
    if _NAME.fullmatch(name) is None:
        raise ValueError(f"screenshot name {name!r}: letters, digits, '.', '_' and '-' only")
    record = _WATCHES.get(page)
    assert record is not None, (f"{name}: page not watched: open it in a `new_context()` "
                                "context, or call watch(page) right after creating it")
    page.wait_for_load_state("load")
    problems = record.problems
    assert not problems, (f"{name} ({page.url}): {len(problems)} JavaScript error(s):\n"
                          + "\n".join(f"  {problem}" for problem in problems))
    violations = axe_violations(page)
    assert not violations, (f"{name} ({page.url}): {len(violations)} serious or critical "
                            "accessibility violation(s):\n"
                            + "\n".join(f"  {describe_violation(v)}" for v in violations))
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshots / f"{name}.png", full_page=True, animations="disabled")
