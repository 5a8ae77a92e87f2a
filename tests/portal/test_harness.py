"""The browser harness itself, on small static pages served over loopback HTTP: a clean page
passes `check_page`, JavaScript errors and serious accessibility violations fail it, and the
vendored htmx and Chart.js load and work from the package's static files."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import struct
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from inspect import signature
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.portal import browser as harness
from tests.portal.browser import STATIC, NewContext, check_page, watch
from tests.support import REPO

CLEAN = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,">
{head}</head>
<body><main><h1>{title}</h1>
{body}
</main></body>
</html>
"""


#: A 1x1 GIF.
PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def page(title: str, body: str = "<p>Nothing to see.</p>", head: str = "") -> str:
    return CLEAN.format(title=title, body=body, head=head)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over loopback HTTP (its /static/ is the package's static files):
    (the directory, its base URL)."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "static").symlink_to(STATIC, target_is_directory=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_clean_page_passes_and_is_screenshot(new_context: NewContext, site: tuple[Path, str],
                                               tmp_path: Path) -> None:
    root, url = site
    (root / "clean.html").write_text(page("A clean page", head=(
        # as strict as a portal page: scripts from the site only
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; "
        "img-src 'self' data:\">")), encoding="utf-8")
    tab = new_context(base_url=url).new_page()
    tab.goto("/clean.html")
    check_page(tab, "clean", screenshots=tmp_path / "shots")
    assert _png_size(tmp_path / "shots" / "clean.png") == (1280, 800)


def test_screenshots_go_to_the_documentation_by_default() -> None:
    assert harness.SCREENSHOTS == REPO / "docs" / "screenshots"
    assert signature(check_page).parameters["screenshots"].default == harness.SCREENSHOTS


@pytest.mark.parametrize(("script", "expected"), [
    ("console.error('the tally is off')", "console error: the tally is off"),
    ("throw new Error('boom')", "uncaught exception: Error: boom"),
    ("window.addEventListener('load', () => { null.x; })", "uncaught exception: TypeError"),
])
def test_javascript_errors_fail_the_page(new_context: NewContext, site: tuple[Path, str],
                                         tmp_path: Path, script: str, expected: str) -> None:
    root, url = site
    (root / "errors.js").write_text(script, encoding="utf-8")
    (root / "errors.html").write_text(page("Errors", head='<script src="errors.js"></script>'),
                                      encoding="utf-8")
    tab = new_context(base_url=url).new_page()
    tab.goto("/errors.html")
    with pytest.raises(AssertionError, match=re.escape(expected)):
        check_page(tab, "errors", screenshots=tmp_path)
    assert not (tmp_path / "errors.png").exists()  # no screenshot of a failing page


def test_a_missing_script_fails_the_page(new_context: NewContext, site: tuple[Path, str],
                                         tmp_path: Path) -> None:
    root, url = site
    (root / "missing.html").write_text(page("Missing", head='<script src="gone.js"></script>'),
                                       encoding="utf-8")
    tab = new_context(base_url=url).new_page()
    tab.goto("/missing.html")
    with pytest.raises(AssertionError, match="404"):
        check_page(tab, "missing", screenshots=tmp_path)


def test_the_browsers_own_favicon_request_is_not_the_pages_error(
        new_context: NewContext, site: tuple[Path, str], tmp_path: Path) -> None:
    root, url = site
    (root / "iconless.html").write_text(page("No icon").replace('<link rel="icon" href="data:,">',
                                                                 ""), encoding="utf-8")
    tab = new_context(base_url=url).new_page()
    with tab.expect_console_message() as message:  # the 404 of /favicon.ico
        tab.goto("/iconless.html")
    assert message.value.location["url"].endswith("/favicon.ico")
    check_page(tab, "iconless", screenshots=tmp_path)


@pytest.mark.parametrize(("body", "rule", "target"), [
    (f'<img id="logo" src="{PIXEL}">', "image-alt", "#logo"),
    ('<form><input id="who" type="text"></form>', "label", "#who"),
])
def test_serious_accessibility_violations_fail_the_page(
        new_context: NewContext, site: tuple[Path, str], tmp_path: Path,
        body: str, rule: str, target: str) -> None:
    root, url = site
    (root / "inaccessible.html").write_text(page("Inaccessible", body), encoding="utf-8")
    tab = new_context(base_url=url).new_page()
    tab.goto("/inaccessible.html")
    with pytest.raises(AssertionError, match=r"accessibility violation") as failure:
        check_page(tab, "inaccessible", screenshots=tmp_path)
    message = str(failure.value)
    assert re.search(rf"{rule} \((serious|critical)\): ", message), message
    assert target in message and "dequeuniversity.com" in message


def test_moderate_accessibility_findings_pass(new_context: NewContext,
                                              site: tuple[Path, str], tmp_path: Path) -> None:
    root, url = site
    # no <main> landmark and a skipped heading level: "moderate" in axe-core
    (root / "moderate.html").write_text(
        '<!doctype html><html lang="en"><head><title>Moderate</title>'
        '<link rel="icon" href="data:,"></head><body><h1>Moderate</h1><h3>Deep</h3></body></html>',
        encoding="utf-8")
    tab = new_context(base_url=url).new_page()
    tab.goto("/moderate.html")
    assert harness.axe_violations(tab, frozenset({"moderate"}))
    check_page(tab, "moderate", screenshots=tmp_path)


def test_check_page_wants_a_watched_page(browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context()
    try:
        tab = context.new_page()
        with pytest.raises(AssertionError, match="page not watched"):
            check_page(tab, "unwatched", screenshots=tmp_path)
        assert watch(tab) is watch(tab)
        with pytest.raises(ValueError, match="screenshot name"):
            check_page(tab, "../escape", screenshots=tmp_path)
    finally:
        context.close()


VENDORED = """<div id="chart-box"><canvas id="chart" role="img"
  aria-label="Carriers by country: 3 in FI, 5 in SE, 2 in NL"></canvas></div>
<button type="button" hx-get="/fragment.html" hx-target="#answer">Ask</button>
<div id="answer" aria-live="polite">No answer yet</div>
<script src="/static/vendor/chart.umd.js"></script>
<script src="/static/vendor/htmx.min.js"></script>
<script src="/chart.js"></script>
"""
CHART = """new Chart(document.getElementById('chart'), {
  type: 'bar',
  data: {labels: ['FI', 'SE', 'NL'], datasets: [{label: 'carriers', data: [3, 5, 2]}]},
  options: {animation: false, responsive: false},
});
"""


def test_vendored_htmx_and_chartjs_load_and_work(new_context: NewContext,
                                                 site: tuple[Path, str], tmp_path: Path) -> None:
    root, url = site
    (root / "vendored.html").write_text(page("Vendored scripts", VENDORED), encoding="utf-8")
    (root / "chart.js").write_text(CHART, encoding="utf-8")
    (root / "fragment.html").write_text("<p>The answer is <strong>42</strong></p>",
                                        encoding="utf-8")
    tab = new_context(base_url=url).new_page()
    tab.goto("/vendored.html")
    assert tab.evaluate("typeof window.htmx") == "object"
    assert tab.evaluate("typeof window.Chart") == "function"
    assert tab.evaluate("htmx.version").startswith("2.")
    assert tab.evaluate("Chart.version").startswith("4.")
    assert tab.evaluate("Chart.getChart('chart').data.datasets[0].data") == [3, 5, 2]
    tab.get_by_role("button", name="Ask").click()
    tab.locator("#answer strong").wait_for()
    assert tab.locator("#answer").inner_text() == "The answer is 42"
    check_page(tab, "vendored", screenshots=tmp_path)


def test_the_vendored_files_are_the_ones_recorded() -> None:
    vendor = STATIC / "vendor"
    recorded = (vendor / "VENDOR.md").read_text(encoding="utf-8")
    for name in ("htmx.min.js", "chart.umd.js"):
        digest = hashlib.sha256((vendor / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in recorded, f"{name}: SHA-256 not in VENDOR.md"
    for licence in ("htmx.LICENSE", "chart.js.LICENSE"):
        assert (vendor / licence).stat().st_size > 0


def test_contexts_are_separate_users(new_context: NewContext, site: tuple[Path, str]) -> None:
    root, url = site
    (root / "home.html").write_text(page("Home"), encoding="utf-8")
    researcher = new_context(base_url=url).new_page()
    member = new_context(base_url=url).new_page()
    researcher.goto("/home.html")
    member.goto("/home.html")
    researcher.evaluate("localStorage.setItem('who', 'researcher')")
    researcher.context.add_cookies([{"name": "session", "value": "r", "url": url}])
    assert member.evaluate("localStorage.getItem('who')") is None
    assert member.context.cookies() == []
    assert researcher.viewport_size == {"width": 1280, "height": 800}


# The two below run after browser tests, the browser still up: Playwright's event loop must not
# be left marked as running in between (conftest.py).

def test_asyncio_runs_between_browser_tests() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert asyncio.run(answer()) == 42


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_tests_run_between_browser_tests() -> None:
    await asyncio.sleep(0)
    assert asyncio.get_running_loop().is_running()


def test_the_browser_still_works_after_them(new_context: NewContext) -> None:
    tab = new_context().new_page()
    tab.set_content("<p>still here</p>")
    assert tab.inner_text("p") == "still here"


def test_a_missing_chromium_fails_and_says_what_to_run(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(harness, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception, match=r"scripts/bootstrap\.sh --test"):
        harness.chromium_executable()
