"""A node's committee pages, against the served demo network: the FI node's committee member
`dac-fi` sees alice's application in the queue with its DUO pre-assessment, approves it with an
end date, rejects (only with a reason), returns it with a comment, revokes a visa; alice sees
each outcome in the network portal's My applications. Non-members are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.portal.browser import NewContext, check_page
from tests.portal.network import PortalNetwork, csrf_token, login
from tests.portal.test_apply import logged_in_page

PROJECT = "Seizure disorders in women: a genome-wide association study."


@pytest.fixture
def member(portal_network: PortalNetwork) -> Iterator[httpx.Client]:
    """dac-fi, logged in to the FI node's portal."""
    with login(portal_network, portal_network.node("fi"), "dac-fi") as client:
        yield client


@pytest.fixture
def alice(portal_network: PortalNetwork) -> Iterator[httpx.Client]:
    """alice, logged in to the network portal."""
    with login(portal_network, portal_network.hub, "alice") as client:
        yield client


def submit(network: PortalNetwork, node: str = "fi", dataset: str = "fi-biobank",
           days: int = 60) -> str:
    """A fresh application of alice's (through the node's API): its id."""
    token = network.running.issuer.access_token("alice")
    answer = httpx.post(f"{network.node(node)}/access/applications", json={
        "datasets": [dataset], "durationDays": days,
        "purpose": {"terms": ["HMB"], "text": PROJECT}},
        headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 201, answer.text
    application_id: str = answer.json()["id"]
    return application_id


def state(network: PortalNetwork, application_id: str, node: str = "fi") -> dict[str, Any]:
    """The application as the node's API shows it to its committee member."""
    token = network.running.issuer.access_token(f"dac-{node}")
    answer = httpx.get(f"{network.node(node)}/access/applications/{application_id}",
                       headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def page(client: httpx.Client, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, answer.text
    return answer.text


def act(client: httpx.Client, network: PortalNetwork, application_id: str,
        **fields: str) -> httpx.Response:
    """Post a decision form of the application's page (with its CSRF token)."""
    url = f"{network.node('fi')}/portal/committee/{application_id}"
    token = csrf_token(page(client, url))
    return client.post(f"{url}/decision", data={"csrf_token": token, **fields})


def my_row(alice: httpx.Client, network: PortalNetwork, application_id: str) -> str:
    listing = page(alice, f"{network.hub}/portal/applications")
    for row in re.findall(r"<tr>(.*?)</tr>", listing, re.S):
        if f"/portal/applications/fi/{application_id}" in row:
            return str(row)
    raise AssertionError(f"application {application_id} not in My applications")


# -- who may see the committee's pages ---------------------------------------------------------

def test_anonymous_visitors_are_sent_to_log_in(portal_network: PortalNetwork) -> None:
    answer = httpx.get(f"{portal_network.node('fi')}/portal/committee", timeout=30)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/login?next=%2Fportal%2Fcommittee"


@pytest.mark.parametrize(("user", "node"), [("alice", "fi"), ("dac-se", "fi"),
                                            ("dac-fi", "nl")])
def test_non_members_are_refused(portal_network: PortalNetwork, user: str, node: str) -> None:
    application = submit(portal_network)
    base = portal_network.node(node)
    with login(portal_network, base, user) as client:
        for url in (f"{base}/portal/committee", f"{base}/portal/committee/{application}"):
            refused = client.get(url)
            assert refused.status_code == 403, url
            assert "not a member of the data access committee" in refused.text
            assert "access.dac_members" in refused.text
        token = csrf_token(page(client, f"{base}/portal/"))
        decided = client.post(f"{base}/portal/committee/{application}/decision",
                              data={"csrf_token": token, "decision": "approve"})
        assert decided.status_code == 403
    assert state(portal_network, application)["state"] == "submitted"


def test_a_member_of_another_node_sees_that_nodes_queue(portal_network: PortalNetwork) -> None:
    with login(portal_network, portal_network.node("se"), "dac-se") as client:
        assert "Waiting for a decision" in page(client,
                                                f"{portal_network.node('se')}/portal/committee")


# -- the queue and an application --------------------------------------------------------------

def test_the_queue_shows_submitted_applications_first_with_the_preassessment(
        portal_network: PortalNetwork, member: httpx.Client) -> None:
    application = submit(portal_network)
    decided = submit(portal_network)
    assert act(member, portal_network, decided, decision="reject",
               note="out of scope").status_code == 303
    queue = page(member, f"{portal_network.node('fi')}/portal/committee")
    waiting = queue[queue.index('id="submitted"'):queue.index('id="returned"')]
    assert f"/portal/committee/{application}" in waiting
    assert f"/portal/committee/{decided}" not in waiting
    rejected = queue[queue.index('id="rejected"'):]
    assert f"/portal/committee/{decided}" in rejected
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", waiting, re.S) if application in r)
    assert "fi-biobank" in row and "health or medical or biomedical research" in row
    assert re.search(r"fits the consent|needs the committee&#39;s review|outside the consent",
                     row)
    assert '<ul class="apply-reasons">' in row  # the pre-assessment's reasons


def test_the_application_page_shows_everything_to_decide_on(
        portal_network: PortalNetwork, member: httpx.Client) -> None:
    application = submit(portal_network, days=45)
    detail = page(member, f"{portal_network.node('fi')}/portal/committee/{application}")
    alice_sub = portal_network.running.issuer.user("alice").sub
    assert alice_sub in detail  # the applicant, as the API shows them
    assert PROJECT in detail and "45 days" in detail and "fi-biobank" in detail
    assert "(HMB, DUO:0000006)" in detail
    assert "DUO pre-assessment" in detail and "<td>submitted</td>" in detail
    last_day = (datetime.now(UTC).date() + timedelta(days=45)).isoformat()
    assert f'type="date" min="{datetime.now(UTC).date().isoformat()}" max="{last_day}" ' \
           f'value="{last_day}"' in detail
    assert "Reason (required: the applicant sees it)" in detail
    assert "Return with this comment" in detail


# -- decisions ---------------------------------------------------------------------------------

def test_approve_with_an_end_date(portal_network: PortalNetwork, member: httpx.Client,
                                  alice: httpx.Client) -> None:
    application = submit(portal_network)
    end = datetime.now(UTC).date() + timedelta(days=21)
    done = act(member, portal_network, application, decision="approve",
               expires=end.isoformat(), note="IRB approval seen")
    assert done.status_code == 303
    assert done.headers["location"] == f"/portal/committee/{application}?done=approve"
    detail = page(member, f"{portal_network.node('fi')}{done.headers['location']}")
    assert "Approved: the visas are issued." in detail
    assert "<td>end date set</td>" in detail and "Issued visas" in detail
    assert f"{end.isoformat()} 23:59 UTC" in detail and "Revoke" in detail
    (visa,) = state(portal_network, application)["visas"]
    assert visa["expiresAt"] == int(datetime.combine(end, datetime.max.time(), UTC)
                                    .replace(microsecond=0).timestamp())
    assert f"approved, access until {end.isoformat()} 23:59 UTC" in my_row(
        alice, portal_network, application)


def test_the_apis_refusals_are_shown(portal_network: PortalNetwork,
                                     member: httpx.Client) -> None:
    application = submit(portal_network, days=30)
    past = act(member, portal_network, application, decision="approve", expires="2020-01-01")
    assert past.status_code == 400 and "Not approved: the end date" in past.text
    assert "has passed" in past.text
    beyond = (datetime.now(UTC).date() + timedelta(days=31)).isoformat()
    late = act(member, portal_network, application, decision="approve", expires=beyond)
    assert late.status_code == 400 and "30 days the applicant asked for" in late.text
    assert f'value="{beyond}"' in late.text  # the form keeps what was sent
    assert state(portal_network, application)["state"] == "submitted"
    assert act(member, portal_network, application, decision="approve").status_code == 303
    again = act(member, portal_network, application, decision="reject", note="no")
    assert again.status_code == 409 and "is approved, not submitted" in again.text


def test_a_rejection_needs_its_reason(portal_network: PortalNetwork, member: httpx.Client,
                                      alice: httpx.Client) -> None:
    application = submit(portal_network)
    refused = act(member, portal_network, application, decision="reject", note="   ")
    assert refused.status_code == 400
    assert "A rejection needs its reason" in refused.text and "Nothing was changed" in refused.text
    assert state(portal_network, application)["state"] == "submitted"
    reason = "The biobank's consent does not cover studies outside Finland."
    assert act(member, portal_network, application, decision="reject",
               note=reason).status_code == 303
    assert state(portal_network, application)["state"] == "rejected"
    row = my_row(alice, portal_network, application)
    assert "rejected: The biobank&#39;s consent does not cover studies outside Finland." in row


def test_return_with_a_comment_and_the_applicant_resubmits(
        portal_network: PortalNetwork, member: httpx.Client, alice: httpx.Client) -> None:
    application = submit(portal_network)
    empty = act(member, portal_network, application, decision="return", note="")
    assert empty.status_code == 400 and "Say what the applicant should change" in empty.text
    comment = "Attach the ethics committee's approval."
    assert act(member, portal_network, application, decision="return",
               note=comment).status_code == 303
    assert "returned by the committee: Attach the ethics committee&#39;s approval." in my_row(
        alice, portal_network, application)

    mine = f"{portal_network.hub}/portal/applications/fi/{application}"
    resubmitted = alice.post(f"{mine}/resubmit", data={
        "csrf_token": csrf_token(page(alice, mine)), "note": "Approval ETK-2025-17 attached."})
    assert resubmitted.status_code == 303
    queue = page(member, f"{portal_network.node('fi')}/portal/committee")
    assert f"/portal/committee/{application}" in \
        queue[queue.index('id="submitted"'):queue.index('id="returned"')]
    detail = page(member, f"{portal_network.node('fi')}/portal/committee/{application}")
    assert [kind for kind in re.findall(r"<td>(submitted|returned|resubmitted)</td>", detail)] \
        == ["submitted", "returned", "resubmitted"]
    assert "Approval ETK-2025-17 attached." in detail


def test_revoke_a_visa(portal_network: PortalNetwork, member: httpx.Client,
                       alice: httpx.Client) -> None:
    application = submit(portal_network)
    assert act(member, portal_network, application, decision="approve").status_code == 303
    url = f"{portal_network.node('fi')}/portal/committee/{application}"
    detail = page(member, url)
    (action,) = re.findall(r'action="(/portal/committee/[^"]+/revoke)"', detail)
    done = member.post(f"{portal_network.node('fi')}{action}",
                       data={"csrf_token": csrf_token(detail), "note": "misuse reported"})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=revoke")
    after = page(member, url)
    assert "<td>visa revoked</td>" in after and "misuse reported" in after
    assert "/revoke" not in after  # nothing left to revoke
    assert state(portal_network, application)["visas"][0]["revokedAt"]
    assert 'status-revoked">revoked' in my_row(alice, portal_network, application)
    again = member.post(f"{portal_network.node('fi')}{action}",
                        data={"csrf_token": csrf_token(detail)})
    assert again.status_code == 409 and "already revoked" in again.text


def test_forms_without_the_csrf_token_change_nothing(portal_network: PortalNetwork,
                                                     member: httpx.Client) -> None:
    application = submit(portal_network)
    url = f"{portal_network.node('fi')}/portal/committee/{application}/decision"
    for data in ({"decision": "approve"}, {"decision": "reject", "note": "x",
                                           "csrf_token": "forged"}):
        refused = member.post(url, data=data)
        assert refused.status_code == 403 and "nothing was changed" in refused.text
    assert state(portal_network, application)["state"] == "submitted"


def test_unknown_applications(portal_network: PortalNetwork, member: httpx.Client) -> None:
    base = f"{portal_network.node('fi')}/portal/committee"
    assert member.get(f"{base}/0123456789abcdef0123456789abcdef").status_code == 404
    assert member.get(f"{base}/not..an-id").status_code == 404


# -- in a browser ------------------------------------------------------------------------------

def test_the_committees_pages_in_a_browser(new_context: NewContext,
                                           portal_network: PortalNetwork) -> None:
    application = submit(portal_network, days=90)
    tab = logged_in_page(new_context, portal_network, portal_network.node("fi"), "dac-fi")
    tab.goto("/portal/committee")
    assert tab.get_by_role("link", name=f"Open {application[:8]}").is_visible()
    check_page(tab, "committee-queue")

    tab.get_by_role("link", name=f"Open {application[:8]}").click()
    tab.get_by_role("heading", name="Decide").wait_for()
    last_day = (datetime.now(UTC).date() + timedelta(days=90)).isoformat()
    assert tab.get_by_label("Access ends on").input_value() == last_day
    check_page(tab, "committee-application")

    end = (datetime.now(UTC).date() + timedelta(days=60)).isoformat()
    tab.get_by_label("Access ends on").fill(end)
    tab.get_by_role("button", name="Approve and issue the visas").click()
    tab.get_by_role("heading", name="Issued visas").wait_for()
    assert tab.get_by_role("status").inner_text() == "Approved: the visas are issued."
    assert f"{end} 23:59 UTC" in tab.get_by_role("table", name="ControlledAccessGrants visas "
                                                 "issued on approval").inner_text()
    check_page(tab, "committee-approved")
