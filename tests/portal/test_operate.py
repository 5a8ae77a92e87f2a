"""A node's operator pages, against the served demo network: the FI node's operator (its
committee member `dac-fi`, listed in `access.operators`) sees its datasets with their versions,
its health and metrics, and its audit trail, filtered and paged, with the chain's verdict; other
users are refused, anonymous ones sent to log in."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.portal.browser import NewContext, check_page
from tests.portal.network import PortalNetwork, login
from tests.portal.test_analyse import browser_login

NODE = "fi"
OPERATOR = "dac-fi"


@pytest.fixture(scope="module")
def operator(portal_network: PortalNetwork) -> Iterator[httpx.Client]:
    client = login(portal_network, portal_network.node(NODE), OPERATOR)
    try:
        yield client
    finally:
        client.close()


def _rows(html: str, caption: str) -> list[list[str]]:
    found = re.search(rf"<caption>{re.escape(caption)}[^<]*</caption>(.*?)</table>", html, re.S)
    assert found, f"no table {caption!r}"
    body = found.group(1).split("<tbody>", 1)[1]
    return [[" ".join(re.sub(r"<[^>]+>", " ", cell).split())
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def _beacon_queries(network: PortalNetwork, count: int) -> None:
    """Anonymous record-level Beacon queries to the node: each writes six decisions to the
    audit trail (per dataset: records and counts denied, the boolean answer allowed)."""
    with httpx.Client(timeout=30) as http:
        for _ in range(count):
            answer = http.post(f"{network.node(NODE)}/beacon/individuals", json={"query": {
                "requestedGranularity": "record", "filters": [{"id": "HP:0001250"}]}})
            assert answer.status_code == 200, answer.text


# -- operate ---------------------------------------------------------------------------------
def test_the_operator_sees_datasets_versions_and_health(portal_network: PortalNetwork,
                                                        operator: httpx.Client) -> None:
    page = operator.get(f"{portal_network.node(NODE)}/portal/operate")
    assert page.status_code == 200, page.text
    html = page.text
    versions = _rows(html, "Published datasets")
    by_dataset = {row[0].split()[0]: row for row in versions}
    assert set(by_dataset) == {"fi-biobank", "fi-reference"}
    assert by_dataset["fi-biobank"][1] == "controlled" and by_dataset["fi-reference"][1] == "public"
    assert all(row[2] == "v1 (current)" for row in versions)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", row[3]) for row in versions)
    assert by_dataset["fi-biobank"][4] == "120"  # samples (scale 0.5 of 240)
    assert int(by_dataset["fi-biobank"][6].replace(",", "")) > 1000  # VCF records
    assert re.fullmatch(r"[\d.,]+ (kB|MB)", by_dataset["fi-biobank"][9])
    # health, as /health says it
    assert '<span class="status status-ready">ready</span>' in html
    checks = {row[0]: row[1] for row in _rows(html, "Health checks")}
    assert checks == {"liveness": "ok", "store": "ok", "database": "ok"}
    assert "datasets: 2" in html and "dialect: sqlite" in html
    # metrics, as /metrics counts them
    requests = re.search(r"<dt>Requests answered</dt><dd>([\d,]+)", html)
    assert requests and int(requests.group(1).replace(",", "")) > 0
    assert re.search(r"<dt>Ingests running</dt><dd>0</dd>", html)
    routes = _rows(html, "Busiest routes")
    assert routes and all(row[0] in ("GET", "POST", "PUT", "DELETE") for row in routes)


def test_someone_not_an_operator_is_refused(portal_network: PortalNetwork) -> None:
    for user in ("dana", "dac-se"):  # a researcher; another node's operator
        client = login(portal_network, portal_network.node(NODE), user)
        try:
            for path in ("/portal/operate", "/portal/audit"):
                page = client.get(f"{portal_network.node(NODE)}{path}")
                assert page.status_code == 403, (user, path)
                assert "access.operators" in page.text and "node.toml" in page.text
                assert "fi-biobank" not in page.text
        finally:
            client.close()


def test_anonymous_users_are_sent_to_log_in(portal_network: PortalNetwork) -> None:
    with httpx.Client(timeout=30) as anonymous:
        for path in ("/portal/operate", "/portal/audit?decision=deny"):
            answer = anonymous.get(portal_network.node(NODE) + path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/portal/login?next=%2Fportal%2F")


# -- audit -----------------------------------------------------------------------------------
def _decisions(html: str) -> list[str]:
    return re.findall(r'<td><span class="status status-(allow|deny)">', html)


def _seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr><td class="num">(\d+)</td>', html)]


def _total(html: str) -> int:
    found = re.search(r"<p>([\d,]+) records? match", html)
    assert found, html
    return int(found.group(1).replace(",", ""))


def test_the_audit_trail_lists_filters_and_verifies(portal_network: PortalNetwork,
                                                    operator: httpx.Client) -> None:
    base = f"{portal_network.node(NODE)}/portal/audit"
    before = _total(operator.get(base, params={"subject": "anonymous"}).text)
    _beacon_queries(portal_network, 3)
    page = operator.get(base)
    assert page.status_code == 200, page.text
    assert re.search(r'Verification: <span class="status status-intact">intact</span> — all '
                     r"[\d,]+ records chain up", page.text)
    assert {"allow", "deny"} <= set(_decisions(page.text))
    seqs = _seqs(page.text)
    assert seqs == sorted(seqs, reverse=True)  # newest first
    # The filters narrow it, as `genofed audit list` does.
    anonymous = operator.get(base, params={"subject": "anonymous"})
    assert _total(anonymous.text) >= before + 3 * 6
    assert all(cell == "anonymous" for cell in re.findall(
        r'<td class="subject"><a [^>]*>([^<]+)</a>', anonymous.text))
    denied = operator.get(base, params={"decision": "deny", "subject": "anonymous"})
    assert denied.status_code == 200 and set(_decisions(denied.text)) == {"deny"}
    assert 'value="deny" selected' in denied.text  # the form shows the filters in force
    allowed = operator.get(base, params={"decision": "allow", "dataset": "fi-reference",
                                         "action": "beacon"})
    rows = _rows(allowed.text, "Audit records")
    assert rows and all(row[4] == "allow" and row[5] == "fi-reference"
                        and row[3].startswith("beacon.") for row in rows)
    assert _total(allowed.text) + _total(denied.text) <= _total(page.text)
    future = operator.get(base, params={"from": "2999-01-01"})
    assert future.status_code == 200 and _total(future.text) == 0
    recent = operator.get(base, params={"from": "2000-01-01", "to": "2999-01-01T00:00"})
    assert _total(recent.text) == _total(page.text)


def test_a_bad_filter_says_what_to_write(portal_network: PortalNetwork,
                                         operator: httpx.Client) -> None:
    base = f"{portal_network.node(NODE)}/portal/audit"
    bad_time = operator.get(base, params={"from": "yesterday"})
    assert bad_time.status_code == 400
    assert "From &#39;yesterday&#39; is not an ISO 8601 date or time" in bad_time.text
    bad_action = operator.get(base, params={"action": "peek"})
    assert bad_action.status_code == 400 and "neither an action nor a family" in bad_action.text
    assert "Verification:" in bad_time.text  # the verdict stays on top


def test_the_audit_trail_is_paged(portal_network: PortalNetwork,
                                  operator: httpx.Client) -> None:
    base = f"{portal_network.node(NODE)}/portal/audit"
    _beacon_queries(portal_network, 10)  # 60 more records: more than a page of 50
    first = operator.get(base, params={"subject": "anonymous"})
    total = _total(first.text)
    assert total > 50
    seqs = _seqs(first.text)
    assert len(seqs) == 50
    older = re.search(r'<a href="/portal/audit(\?[^"]+)" rel="next">', first.text)
    assert older and "subject=anonymous" in older.group(1) and 'rel="prev"' not in first.text
    second = operator.get(base + older.group(1).replace("&amp;", "&"))
    second_seqs = _seqs(second.text)
    assert second_seqs and max(second_seqs) < min(seqs)
    newer = re.search(r'<a href="/portal/audit(\?[^"]+)" rel="prev">', second.text)
    assert newer
    back = operator.get(base + newer.group(1).replace("&amp;", "&"))
    assert _seqs(back.text) == seqs


# -- in a browser --------------------------------------------------------------------------------
def test_the_pages_in_a_browser(new_context: NewContext, portal_network: PortalNetwork) -> None:
    base = portal_network.node(NODE)
    tab = new_context(base_url=base).new_page()
    browser_login(tab, portal_network, base, OPERATOR, "/portal/operate")
    check_page(tab, "operate")
    tab.goto("/portal/audit")
    tab.get_by_label("Decision").select_option("deny")
    tab.get_by_role("button", name="Filter").click()
    tab.wait_for_url(re.compile(r"decision=deny"))
    assert tab.locator("#audit-verdict").inner_text().startswith("Verification: intact")
    check_page(tab, "audit")
