"""The network portal's basket, application form and My applications, against the served demo
network: alice applies to two nodes at once (one application per node), sees each node's DUO
pre-assessment, follows her applications as the committees decide (decisions here go through
the /access API with a committee member's token; the committee's own pages are tested in
test_committee.py), and answers a returned one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from genofed.federation.network import Member
from genofed.portal.apply import _applications_of, parse_reference
from genofed.portal.apply_status import describe, purpose_options
from genofed.portal.sessions import Session
from tests.portal.browser import NewContext, check_page
from tests.portal.network import PortalNetwork, csrf_token, login

PROJECT = "Genetic risk of epilepsy in women across three national cohorts."
_LINK = re.compile(r'href="/portal/applications/([a-z0-9-]+)/([0-9a-f]{32})"')


@pytest.fixture
def alice(portal_network: PortalNetwork) -> Iterator[httpx.Client]:
    with login(portal_network, portal_network.hub, "alice") as client:
        yield client


def basket_page(client: httpx.Client, hub: str) -> httpx.Response:
    page = client.get(f"{hub}/portal/basket")
    assert page.status_code == 200, page.text
    return page


def add(client: httpx.Client, hub: str, *references: str) -> None:
    for reference in references:
        token = csrf_token(basket_page(client, hub).text)
        added = client.post(f"{hub}/portal/basket", data={"csrf_token": token,
                                                         "dataset": reference})
        assert added.status_code == 303, added.text
        assert added.headers["location"].startswith("/portal/basket")


def basket_of(client: httpx.Client, hub: str) -> list[str]:
    """The references the basket page offers for applying (one checkbox each)."""
    return re.findall(r'name="datasets" value="([^"]+)"', basket_page(client, hub).text)


def empty_basket(client: httpx.Client, hub: str) -> None:
    for reference in basket_of(client, hub):
        token = csrf_token(basket_page(client, hub).text)
        client.post(f"{hub}/portal/basket/remove", data={"csrf_token": token,
                                                        "dataset": reference})
    assert basket_of(client, hub) == []


def application_form(client: httpx.Client, hub: str, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {"csrf_token": csrf_token(basket_page(client, hub).text),
                            "datasets": basket_of(client, hub), "terms": ["HMB"],
                            "diseases": "", "text": PROJECT, "duration_days": "90"}
    form.update(changes)
    return form


def apply(client: httpx.Client, hub: str, *references: str, **changes: Any) -> dict[str, str]:
    """Apply for `references` (a fresh basket) through the portal: {node: application id}."""
    empty_basket(client, hub)
    add(client, hub, *references)
    sent = client.post(f"{hub}/portal/applications",
                       data=application_form(client, hub, **changes))
    assert sent.status_code == 200, sent.text
    return dict(_LINK.findall(sent.text))


def my_applications(client: httpx.Client, hub: str) -> str:
    page = client.get(f"{hub}/portal/applications")
    assert page.status_code == 200, page.text
    return page.text


def row_of(page: str, node: str, application_id: str) -> str:
    """The table row of one application on My applications."""
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        if f"/portal/applications/{node}/{application_id}" in row:
            return str(row)
    raise AssertionError(f"application {node}/{application_id} not listed")


def decide(network: PortalNetwork, node: str, application_id: str,
           **body: str) -> dict[str, Any]:
    """A committee decision through the node's /access API, as the node's DAC member."""
    token = network.running.issuer.access_token(f"dac-{node}")
    answer = httpx.post(f"{network.node(node)}/access/applications/{application_id}/decision",
                        json=body, headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    decided: dict[str, Any] = answer.json()
    return decided


def applications_at(network: PortalNetwork, node: str) -> set[str]:
    """Ids of alice's applications at `node`, from its API."""
    token = network.running.issuer.access_token("alice")
    answer = httpx.get(f"{network.node(node)}/access/applications",
                       headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return {a["id"] for a in answer.json()["applications"]}


# -- the basket --------------------------------------------------------------------------------

def test_the_pages_need_a_login(portal_network: PortalNetwork) -> None:
    with httpx.Client(timeout=30) as anonymous:
        for path in ("/portal/basket", "/portal/applications"):
            answer = anonymous.get(f"{portal_network.hub}{path}")
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/portal/login?next=")


def test_datasets_go_into_the_basket_and_out(portal_network: PortalNetwork,
                                             alice: httpx.Client) -> None:
    hub = portal_network.hub
    empty_basket(alice, hub)
    token = csrf_token(basket_page(alice, hub).text)
    added = alice.post(f"{hub}/portal/basket", data={
        "csrf_token": token, "dataset": "se/se-cohort", "next": "/portal/catalogue?country=SE"})
    assert added.status_code == 303 and added.headers["location"] == "/portal/catalogue?country=SE"
    elsewhere = alice.post(f"{hub}/portal/basket", data={
        "csrf_token": token, "dataset": "nl/nl-diverse", "next": "https://evil.example/"})
    assert elsewhere.headers["location"] == "/portal/basket?added=nl%2Fnl-diverse"
    again = alice.post(f"{hub}/portal/basket", data={"csrf_token": token,
                                                     "dataset": "se/se-cohort"})
    assert again.status_code == 303
    page = alice.get(f"{hub}{again.headers['location']}").text
    assert "se/se-cohort is in your basket" in page
    assert basket_of(alice, hub) == ["se/se-cohort", "nl/nl-diverse"]  # once each
    assert "<td>SE</td>" in page and "<td>NL</td>" in page

    for bad in ("xx/se-cohort", "se", "se/", "se/../../etc", ""):
        refused = alice.post(f"{hub}/portal/basket", data={"csrf_token": token, "dataset": bad})
        assert refused.status_code == 400, bad
        assert "is not a dataset of this network" in refused.text
    assert basket_of(alice, hub) == ["se/se-cohort", "nl/nl-diverse"]

    removed = alice.post(f"{hub}/portal/basket/remove", data={"csrf_token": token,
                                                             "dataset": "se/se-cohort"})
    assert removed.status_code == 303 and removed.headers["location"] == "/portal/basket"
    assert basket_of(alice, hub) == ["nl/nl-diverse"]


def test_forms_without_their_csrf_token_change_nothing(portal_network: PortalNetwork,
                                                       alice: httpx.Client) -> None:
    hub = portal_network.hub
    empty_basket(alice, hub)
    add(alice, hub, "se/se-cohort")
    before = applications_at(portal_network, "se")
    for path, data in (("/portal/basket", {"dataset": "nl/nl-diverse"}),
                       ("/portal/basket/remove", {"dataset": "se/se-cohort"}),
                       ("/portal/applications", {**application_form(alice, hub),
                                                 "csrf_token": "forged"})):
        refused = alice.post(f"{hub}{path}", data=data)
        assert refused.status_code == 403 and "nothing was changed" in refused.text, path
    assert basket_of(alice, hub) == ["se/se-cohort"]
    assert applications_at(portal_network, "se") == before


# -- applying ----------------------------------------------------------------------------------

def test_the_form_offers_duo_purposes_with_labels(alice: httpx.Client,
                                                  portal_network: PortalNetwork) -> None:
    hub = portal_network.hub
    empty_basket(alice, hub)
    add(alice, hub, "fi/fi-biobank")
    page = basket_page(alice, hub).text
    assert "health or medical or biomedical research" in page and "HMB, DUO:0000006" in page
    assert "disease specific research" in page and "DS, DUO:0000007" in page
    assert "genetic research" in page and "DUO:0000038" in page
    assert 'name="diseases"' in page and "MONDO" in page and "NCU" in page
    options = purpose_options()
    assert [o.code for o in options[:4]] == ["GRU", "HMB", "DS", "POA"]
    assert all(o.label for o in options)


def test_one_application_per_node_with_the_preassessment(portal_network: PortalNetwork,
                                                         alice: httpx.Client) -> None:
    hub = portal_network.hub
    empty_basket(alice, hub)
    add(alice, hub, "se/se-cohort", "nl/nl-diverse")
    sent = alice.post(f"{hub}/portal/applications", data=application_form(alice, hub))
    assert sent.status_code == 200, sent.text
    ids = dict(_LINK.findall(sent.text))
    assert set(ids) == {"se", "nl"}
    assert sent.text.count("Submitted</span>") == 2
    assert "DUO pre-assessment" in sent.text
    assert any(words in sent.text for words in ("fits the consent", "needs the committee",
                                                "outside the consent"))
    assert basket_of(alice, hub) == []  # what was sent left the basket
    for node, application_id in ids.items():
        assert application_id in applications_at(portal_network, node)

    page = my_applications(alice, hub)
    for node, application_id in ids.items():
        row = row_of(page, node, application_id)
        assert "submitted, waiting for the committee" in row
        assert f"{node.upper()} ({node})" in row
    detail = alice.get(f"{hub}/portal/applications/se/{ids['se']}")
    assert detail.status_code == 200
    assert PROJECT in detail.text and "se-cohort" in detail.text and "90 days" in detail.text
    assert "health or medical or biomedical research (HMB, DUO:0000006)" in detail.text
    assert "<td>submitted</td>" in detail.text and "<td>you</td>" in detail.text


@pytest.mark.parametrize(("changes", "messages"), [
    ({"text": "  "}, ["Describe your project"]),
    ({"terms": []}, ["Choose at least one research purpose"]),
    ({"terms": ["IRB"]}, ["describes datasets, not research"]),
    ({"terms": ["DS"]}, ["needs the disease"]),
    ({"terms": ["DS"], "diseases": "epilepsy"}, ["not a CURIE"]),
    ({"duration_days": "0"}, ["from 1 to 3650"]),
    ({"duration_days": "lots", "text": ""}, ["from 1 to 3650", "Describe your project"]),
    ({"datasets": []}, ["Choose at least one dataset"]),
    ({"datasets": ["fi/fi-biobank"]}, ["no longer in your basket"]),
])
def test_an_incomplete_form_is_shown_again_and_nothing_sent(
        portal_network: PortalNetwork, alice: httpx.Client, changes: dict[str, Any],
        messages: list[str]) -> None:
    hub = portal_network.hub
    empty_basket(alice, hub)
    add(alice, hub, "se/se-cohort")
    before = applications_at(portal_network, "se")
    answer = alice.post(f"{hub}/portal/applications",
                        data=application_form(alice, hub, **changes))
    assert answer.status_code == 400
    assert "The application was not sent" in answer.text
    for message in messages:
        assert message in answer.text
    assert 'class="problem" id="' in answer.text  # next to the field
    if changes.get("text", PROJECT).strip():
        assert PROJECT in answer.text  # what was typed is kept
    assert applications_at(portal_network, "se") == before
    assert basket_of(alice, hub) == ["se/se-cohort"]


def test_a_nodes_refusal_is_shown_and_its_datasets_stay(portal_network: PortalNetwork,
                                                        alice: httpx.Client) -> None:
    hub = portal_network.hub
    # fi-reference is public: the FI node needs no application for it and says so.
    sent = apply(alice, hub, "fi/fi-reference", "nl/nl-diverse")
    assert set(sent) == {"nl"}
    page = alice.get(f"{hub}/portal/basket").text
    assert basket_of(alice, hub) == ["fi/fi-reference"]
    assert "needs no application" not in page  # the refusal was on the result page


def test_the_result_page_shows_the_refusal(portal_network: PortalNetwork,
                                           alice: httpx.Client) -> None:
    hub = portal_network.hub
    empty_basket(alice, hub)
    add(alice, hub, "fi/fi-reference")
    sent = alice.post(f"{hub}/portal/applications", data=application_form(alice, hub))
    assert sent.status_code == 200
    assert "Not sent: the FI node refused it" in sent.text and "public-tier" in sent.text
    assert "stays in your" in sent.text


# -- following applications --------------------------------------------------------------------

def test_decisions_show_in_my_applications(portal_network: PortalNetwork,
                                           alice: httpx.Client) -> None:
    hub = portal_network.hub
    approved = apply(alice, hub, "fi/fi-biobank")["fi"]
    rejected = apply(alice, hub, "se/se-cohort")["se"]
    revoked = apply(alice, hub, "nl/nl-diverse")["nl"]
    end = (datetime.now(UTC) + timedelta(days=30)).date()
    decide(portal_network, "fi", approved, decision="approve", note="ok",
           expires=end.isoformat())
    decide(portal_network, "se", rejected, decision="reject",
           note="The SE cohort's consent excludes this study.")
    visas = decide(portal_network, "nl", revoked, decision="approve", note="ok")["visas"]
    token = portal_network.running.issuer.access_token("dac-nl")
    revoke = httpx.post(f"{portal_network.node('nl')}/access/visas/{visas[0]['jti']}/revoke",
                        json={"note": "misuse"}, headers={"authorization": f"Bearer {token}"})
    assert revoke.status_code == 200, revoke.text

    page = my_applications(alice, hub)
    assert f"approved, access until {end.isoformat()} 23:59 UTC" in row_of(page, "fi", approved)
    assert "rejected: The SE cohort&#39;s consent excludes this study." in \
        row_of(page, "se", rejected)
    assert 'status-revoked">revoked' in row_of(page, "nl", revoked)
    detail = alice.get(f"{hub}/portal/applications/fi/{approved}").text
    assert "<td>end date set</td>" in detail and "<td>the committee</td>" in detail
    assert 'name="note"' not in detail  # nothing to answer
    # Approved after she logged in: the page says her new access comes with the next login.
    assert "applies from your next login" in page
    with login(portal_network, hub, "alice") as again:
        assert "applies from your next login" not in my_applications(again, hub)


def test_a_returned_application_is_answered_and_resubmitted(portal_network: PortalNetwork,
                                                            alice: httpx.Client) -> None:
    hub = portal_network.hub
    application = apply(alice, hub, "fi/fi-biobank")["fi"]
    decide(portal_network, "fi", application, decision="return",
           note="Attach your ethics approval.")
    assert "returned by the committee: Attach your ethics approval." in row_of(
        my_applications(alice, hub), "fi", application)
    url = f"{hub}/portal/applications/fi/{application}"
    page = alice.get(url).text
    assert "Attach your ethics approval." in page and "Resubmit the application" in page
    refused = alice.post(f"{url}/resubmit", data={"note": "attached"})
    assert refused.status_code == 403
    done = alice.post(f"{url}/resubmit", data={"csrf_token": csrf_token(page),
                                               "note": "Ethics approval 2025/17 attached."})
    assert done.status_code == 303
    assert done.headers["location"] == f"/portal/applications/fi/{application}?done=resubmitted"
    after = alice.get(f"{hub}{done.headers['location']}").text
    assert "back before the committee" in after and "Ethics approval 2025/17" in after
    assert "submitted, waiting for the committee" in after
    again = alice.post(f"{url}/resubmit", data={"csrf_token": csrf_token(page), "note": "x"})
    assert again.status_code == 409 and "refused it" in again.text and "not returned" in again.text


def test_unknown_applications_and_nodes(portal_network: PortalNetwork,
                                        alice: httpx.Client) -> None:
    hub = portal_network.hub
    for path, status in (("xx/0123456789abcdef0123456789abcdef", 404),
                         ("fi/0123456789abcdef0123456789abcdef", 404),
                         ("fi/not..an-id", 404)):
        answer = alice.get(f"{hub}/portal/applications/{path}")
        assert answer.status_code == status, path
        assert "My applications" in answer.text


# -- without the network -----------------------------------------------------------------------

def _member(node: str, url: str) -> Member:
    return Member.model_construct(id=node, country=node.upper(), base_url=url,
                                  signing_public_key="", agreement_public_key="")


@pytest.mark.anyio
async def test_a_node_that_does_not_answer_is_listed_as_unavailable() -> None:
    me = "https://login.example.org|alice"

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down.example":
            raise httpx.ConnectError("connection refused")
        if request.url.host == "broken.example":
            return httpx.Response(500, json={"error": {"errorCode": 500,
                                                       "errorMessage": "disk full"}})
        return httpx.Response(200, json={"applications": [
            {"id": "a1", "applicant": me, "state": "submitted", "datasets": [],
             "events": [], "visas": [], "createdAt": "2025-01-01T00:00:00+00:00"},
            {"id": "a2", "applicant": "https://login.example.org|bob", "state": "submitted"}]})

    session = Session("k", me, "Alice", "token", "csrf", (), 2**40)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        up = await _applications_of(client, _member("fi", "http://up.example"), session)
        down = await _applications_of(client, _member("se", "http://down.example"), session)
        broken = await _applications_of(client, _member("nl", "http://broken.example"),
                                        session)
    assert [a.id for a in up.applications] == ["a1"] and not up.problem  # only her own
    assert down.problem == "did not answer" and not down.applications
    assert "disk full" in broken.problem


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_statuses_in_words() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
    later, earlier = int(now) + 86_400, int(now) - 86_400

    def doc(state: str, *visas: dict[str, Any], note: str = "") -> dict[str, Any]:
        return {"id": "x", "state": state, "durationDays": 30,
                "datasets": [{"datasetId": v["datasetId"], "assessment": "approve",
                              "reasons": []} for v in visas] or [
                    {"datasetId": "d", "assessment": "approve", "reasons": []}],
                "events": [{"kind": state, "note": note}], "visas": list(visas)}

    def visa(dataset: str, expires: int, revoked: str | None = None) -> dict[str, Any]:
        return {"datasetId": dataset, "expiresAt": expires, "revokedAt": revoked}

    assert describe(doc("returned", note="more"), "fi", "FI", now).words == \
        "returned by the committee: more"
    assert describe(doc("rejected"), "fi", "FI", now).words == \
        "rejected (the committee gave no reason)"
    both = describe(doc("approved", visa("a", later), visa("b", later, "2025-05-31T00:00:00")),
                    "fi", "FI", now)
    assert both.state == "approved" and [d.state for d in both.datasets] == ["approved",
                                                                            "revoked"]
    assert describe(doc("approved", visa("a", later, "2025-05-31")), "fi", "FI",
                    now).state == "revoked"
    assert describe(doc("approved", visa("a", earlier)), "fi", "FI", now).state == "expired"
    network_refs = ["fi/fi-biobank", "fi/", "/x", "fi/a b"]
    assert [r for r in network_refs if parse_reference(r, _NETWORK)] == ["fi/fi-biobank"]


class _Network:
    @staticmethod
    def member(node: str) -> Member | None:
        return _member("fi", "http://fi.example") if node == "fi" else None


_NETWORK: Any = _Network()


# -- in a browser ------------------------------------------------------------------------------

def logged_in_page(new_context: NewContext, network: PortalNetwork, base: str,
                   user: str) -> Page:
    """A browser page logged in to the portal at `base` as `user` (the session of an HTTP login,
    its cookie handed to a new browser context)."""
    with login(network, base, user) as client:
        cookies = [c for c in client.cookies.jar if c.name.startswith("genofed_")]
    context = new_context(base_url=base)
    context.add_cookies([{"name": c.name, "value": c.value or "", "domain": "127.0.0.1",
                          "path": c.path or "/portal", "httpOnly": True, "sameSite": "Lax"}
                         for c in cookies])
    return context.new_page()


def test_the_researchers_pages_in_a_browser(new_context: NewContext,
                                            portal_network: PortalNetwork) -> None:
    hub = portal_network.hub
    with login(portal_network, hub, "alice") as client:
        empty_basket(client, hub)
    tab = logged_in_page(new_context, portal_network, hub, "alice")
    tab.goto("/portal/datasets/fi/fi-biobank")
    tab.get_by_role("button", name="Add to basket").first.click()
    tab.goto("/portal/datasets/nl/nl-diverse")
    tab.get_by_role("button", name="Add to basket").first.click()
    tab.goto("/portal/basket")
    assert tab.get_by_role("checkbox", name="fi-biobank (FI node)").is_checked()
    check_page(tab, "apply-basket")

    tab.get_by_label("health or medical or biomedical research").check()
    tab.get_by_label("Project description").fill(PROJECT)
    tab.get_by_label("Duration of access, in days").fill("120")
    tab.get_by_role("button", name="Send the application").click()
    tab.get_by_role("heading", name="Applications sent").wait_for()
    assert tab.locator(".status-submitted").count() == 2
    check_page(tab, "apply-sent")

    tab.get_by_role("link", name="See the application to the FI node").click()
    tab.get_by_role("heading", name="History").wait_for()
    check_page(tab, "apply-application")
    tab.goto("/portal/applications")
    assert tab.get_by_role("table", name="Your applications, newest first").is_visible()
    check_page(tab, "apply-applications")
