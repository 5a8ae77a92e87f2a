"""Portal pages of a node's own data access committee (the node portal).

=====================================================  ==========================================
GET  /portal/committee                                 the queue: submitted first, then the rest
GET  /portal/committee/{id}                            an application: purpose, pre-assessment,
                                                       history, the actions
POST /portal/committee/{id}/decision                   approve (with an end date) / reject /
                                                       return
POST /portal/committee/{id}/visas/{jti}/revoke         revoke an issued visa
=====================================================  ==========================================

Only the node's committee members (`access.dac_members`, matched by the session's
"ISSUER|SUBJECT") see these pages; anyone else logged in gets a page saying they are not on the
committee. Every read and action goes through this node's own `/access` API in-process with the
member's token, so the API's checks (membership, a member deciding their own application, one
decision per application) and its audit records apply; its refusals are shown as it words them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from genofed.access.dac import Committee
from genofed.portal.apply_status import EVENT_WORDS, OUTCOME_WORDS, ApplicationSummary, describe
from genofed.portal.sessions import Session
from genofed.portal.web import (
    PREFIX,
    PageRefused,
    api_error,
    checked_form,
    require_session,
    site_of,
)

router = APIRouter()

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: The queue's sections, in order; submitted applications are oldest first (a queue), the rest
#: newest first.
SECTIONS = (("submitted", "Waiting for a decision"),
            ("returned", "Returned to the applicant"),
            ("approved", "Approved"),
            ("revoked", "Approved, access revoked"),
            ("expired", "Approved, access expired"),
            ("rejected", "Rejected"))
DONE = {"approve": "Approved: the visas are issued.",
        "reject": "Rejected: the applicant sees your reason.",
        "return": "Returned to the applicant with your comment.",
        "revoke": "Revoked: the visa is refused from the next request on."}
_PAST = {"approve": "approved", "reject": "rejected", "return": "returned"}
_VERDICTS = tuple(_PAST)


def _committee(request: Request) -> Committee:
    committee: Committee = request.app.state.governance.committee
    return committee


def _member_session(request: Request, session: Session | None = None) -> Session:
    """The logged-in member of this node's committee; anyone else is refused with a page."""
    session = session or require_session(request)
    if not _committee(request).is_member(session.identity):
        site = site_of(request)
        raise PageRefused(
            403, "Not on this node's committee",
            f"You are logged in as {session.name}, who is not a member of the data access "
            f"committee of {site.title}, so its applications are not shown to you. If you "
            "should be, ask the node's operator to add your identity to access.dac_members: "
            f"{session.identity}")
    return session


def _checked_id(value: str, what: str = "application") -> str:
    if not _ID.match(value):
        raise PageRefused(404, f"No such {what}",
                          f"This address names no {what}. Go back to the committee's queue.")
    return value


def _url(application_id: str) -> str:
    return f"{PREFIX}/committee/{quote(application_id, safe='')}"


async def _api_get(request: Request, session: Session, path: str) -> httpx.Response:
    async with site_of(request).api(request, session) as client:
        return await client.get(path)


async def _api_post(request: Request, session: Session, path: str,
                    body: Mapping[str, Any]) -> httpx.Response:
    async with site_of(request).api(request, session) as client:
        return await client.post(path, json=dict(body))


# -- the queue ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    state: str
    title: str
    applications: tuple[ApplicationSummary, ...]


@router.get("/committee")
async def queue(request: Request) -> Response:
    session = _member_session(request)
    response = await _api_get(request, session, "/access/applications")
    if response.status_code != 200:
        raise PageRefused(502, "Applications unavailable",
                          f"The access API answered: {api_error(response)}. Try again later.")
    node = site_of(request).name
    applications = [describe(d, node, "")
                    for d in response.json().get("applications", [])]
    sections = []
    for state, title in SECTIONS:
        chosen = sorted((a for a in applications if a.state == state), key=lambda a: a.created,
                        reverse=state != "submitted")
        sections.append(Section(state, title, tuple(chosen)))
    return site_of(request).render(request, "committee/queue.html",
                                   title="Data access committee", sections=sections,
                                   outcomes=OUTCOME_WORDS)


# -- one application ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ActionForm:
    """What the action forms hold when shown again after a refusal."""

    verdict: str = ""
    note: str = ""
    expires: str = ""


async def _render(request: Request, session: Session, application_id: str, *,
                  problem: str = "", form: ActionForm | None = None,
                  status: int = 200) -> Response:
    response = await _api_get(request, session,
                              f"/access/applications/{quote(application_id, safe='')}")
    if response.status_code == 404:
        raise PageRefused(404, "No such application",
                          f"This node has no application {application_id}. Go back to the "
                          "committee's queue.")
    if response.status_code != 200:
        raise PageRefused(502, "Application unavailable",
                          f"The access API answered: {api_error(response)}. Try again later.")
    application = describe(response.json(), site_of(request).name, "")
    today = datetime.now(UTC).date()
    # The latest end date the API accepts (and the form's default): the requested duration
    # counted from today, through its last day.
    longest = today + timedelta(days=application.duration_days)
    form = form or ActionForm(expires=longest.isoformat())
    return site_of(request).render(
        request, "committee/application.html", status,
        title=f"Application {application.id[:8]}", application=application,
        outcomes=OUTCOME_WORDS, events=EVENT_WORDS, problem=problem, form=form,
        today=today.isoformat(), longest=longest.isoformat(), url=_url(application.id),
        notice=DONE.get(request.query_params.get("done", ""), ""))


@router.get("/committee/{application_id}")
async def application_page(request: Request, application_id: str) -> Response:
    session = _member_session(request)
    return await _render(request, session, _checked_id(application_id))


@router.post("/committee/{application_id}/decision")
async def decide(request: Request, application_id: str) -> Response:
    session, form = await checked_form(request)
    session = _member_session(request, session)
    application_id = _checked_id(application_id)
    verdict, note, expires = (str(form.get(name) or "").strip()
                              for name in ("decision", "note", "expires"))
    sent = ActionForm(verdict, note, expires)
    if verdict not in _VERDICTS:
        return await _render(request, session, application_id, form=sent, status=400,
                             problem="Choose approve, reject or return with one of the forms "
                                     "below. Nothing was changed.")
    if verdict == "reject" and not note:
        return await _render(request, session, application_id, form=sent, status=400,
                             problem="A rejection needs its reason: the applicant sees it. "
                                     "Write it in the reason field and reject again. Nothing "
                                     "was changed.")
    if verdict == "return" and not note:
        return await _render(request, session, application_id, form=sent, status=400,
                             problem="Say what the applicant should change or add: write it "
                                     "in the comment field and return the application again. "
                                     "Nothing was changed.")
    body: dict[str, Any] = {"decision": verdict, "note": note}
    if verdict == "approve" and expires:
        body["expires"] = expires
    response = await _api_post(
        request, session, f"/access/applications/{quote(application_id, safe='')}/decision",
        body)
    if response.status_code == 200:
        return RedirectResponse(f"{_url(application_id)}?done={verdict}", 303)
    return await _render(request, session, application_id, form=sent,
                         status=response.status_code,
                         problem=f"Not {_PAST[verdict]}: {api_error(response)}. Nothing was "
                                 "changed.")


@router.post("/committee/{application_id}/visas/{jti}/revoke")
async def revoke(request: Request, application_id: str, jti: str) -> Response:
    session, form = await checked_form(request)
    session = _member_session(request, session)
    application_id, jti = _checked_id(application_id), _checked_id(jti, "visa")
    note = str(form.get("note") or "").strip()
    response = await _api_post(request, session, f"/access/visas/{quote(jti, safe='')}/revoke",
                               {"note": note})
    if response.status_code == 200:
        return RedirectResponse(f"{_url(application_id)}?done=revoke", 303)
    return await _render(request, session, application_id, status=response.status_code,
                         problem=f"Not revoked: {api_error(response)}. Nothing was changed.")
