"""Portal pages of the network portal (beside the hub) for applying for access: the basket, the
application form, and My applications.

=================================================  =============================================
GET  /portal/basket                                the basket and the application form
POST /portal/basket                                add "NODE/DATASET" (then back to `next`)
POST /portal/basket/remove                         take a dataset out
POST /portal/applications                          apply: one application per node
GET  /portal/applications                          My applications, from every member node
GET  /portal/applications/{node}/{id}              one application with its history
POST /portal/applications/{node}/{id}/resubmit     answer a returned application
=================================================  =============================================

The basket is kept in the session as "NODE/DATASET" references. Applying sends one application
per node that holds basket datasets, to that node's own `/access/applications` with the user's
token: each node's committee decides for its own datasets, and the node answers with its DUO
pre-assessment or its refusal. My applications asks every member node for the user's
applications; a node that does not answer is listed as unavailable. Nothing here reads
governance state directly.

What an application's status means in words is in :mod:`genofed.portal.apply_status` (shared
with the committee's pages).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from genofed.access.dac import MAX_DURATION_DAYS, MAX_TEXT
from genofed.access.duo import DS, Purpose
from genofed.errors import BeaconRequestError, PurposeError
from genofed.federation.network import Member, Network
from genofed.portal.apply_status import (
    EVENT_WORDS,
    OUTCOME_WORDS,
    ApplicationSummary,
    describe,
    purpose_options,
)
from genofed.portal.sessions import Session
from genofed.portal.web import (
    PREFIX,
    PageRefused,
    api_error,
    checked_form,
    require_session,
    safe_next,
    site_of,
)
from genofed.store.metadata import DATASET_ID_PATTERN

router = APIRouter()

#: Most datasets a basket holds (an application names a handful; this only bounds the session).
BASKET_LIMIT = 50
#: Application ids as the nodes make them (uuid4 hex); anything else in a URL is not one.
_APPLICATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DATASET_ID = re.compile(DATASET_ID_PATTERN)
_DISEASE_SPLIT = re.compile(r"[\s,;]+")

#: Messages after an action, by the `done` parameter of the page it returns to.
DONE = {"resubmitted": "Your application is back before the committee."}


# -- helpers -----------------------------------------------------------------------------------

def _network(request: Request) -> Network:
    try:
        network: Network = request.app.state.hub.current()
    except BeaconRequestError:
        raise PageRefused(503, "Network unavailable",
                          "This portal cannot read its network's member list right now; try "
                          "again later (the operator's log says why).") from None
    return network


def _member(network: Network, node: str) -> Member:
    member = network.member(node)
    if member is None:
        raise PageRefused(404, "No such node",
                          f"{node!r} is not a member of this network. Go back to My "
                          "applications and choose an application from the list.")
    return member


@dataclass(frozen=True)
class BasketItem:
    reference: str
    node: str
    dataset: str
    #: None when the node has left the network since the dataset was added.
    country: str | None


def parse_reference(reference: str, network: Network) -> tuple[str, str] | None:
    """("NODE", "DATASET") if `reference` is "NODE/DATASET" with NODE a member; else None."""
    node, sep, dataset = reference.strip().partition("/")
    if not sep or network.member(node) is None or not _DATASET_ID.match(dataset):
        return None
    return node, dataset


def _basket_items(session: Session, network: Network) -> list[BasketItem]:
    items = []
    for reference in session.basket:
        node, _, dataset = reference.partition("/")
        member = network.member(node)
        items.append(BasketItem(reference, node, dataset, member.country if member else None))
    return items


def _session_token(request: Request) -> str:
    return request.cookies.get(site_of(request).session_cookie, "")


def _back(form: FormData, default: str) -> str:
    """Where a basket form returns to: its `next` field if it is a page of this portal."""
    target = form.get("next")
    return target if isinstance(target, str) and safe_next(target) == target else default


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _texts(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


# -- the basket --------------------------------------------------------------------------------

@dataclass
class ApplicationForm:
    """What the application form holds (as sent, to show it again with its problems)."""

    datasets: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    diseases: str = ""
    commercial: bool = False
    text: str = ""
    duration_days: str = "365"
    errors: dict[str, str] = field(default_factory=dict)


def _render_basket(request: Request, session: Session, network: Network, *,
                   form: ApplicationForm | None = None, problem: str = "", notice: str = "",
                   status: int = 200) -> Response:
    items = _basket_items(session, network)
    if form is None:
        form = ApplicationForm(datasets=[i.reference for i in items if i.country])
    return site_of(request).render(
        request, "apply/basket.html", status, title="Basket", items=items, form=form,
        purposes=purpose_options(), problem=problem, notice=notice,
        max_days=MAX_DURATION_DAYS, max_text=MAX_TEXT)


@router.get("/basket")
async def basket(request: Request) -> Response:
    session = require_session(request)
    added = request.query_params.get("added", "")
    notice = f"{added} is in your basket." if added in session.basket else ""
    return _render_basket(request, session, _network(request), notice=notice)


@router.post("/basket")
async def add_to_basket(request: Request) -> Response:
    session, form = await checked_form(request)
    network = _network(request)
    reference = _text(form, "dataset")
    parsed = parse_reference(reference, network)
    if parsed is None:
        return _render_basket(
            request, session, network, status=400,
            problem=f"{reference or 'No dataset'} is not a dataset of this network's nodes "
                    "(expected NODE/DATASET, e.g. fi/fi-biobank). Nothing was added; choose a "
                    "dataset from the Catalogue.")
    reference = "/".join(parsed)
    if reference not in session.basket and len(session.basket) >= BASKET_LIMIT:
        return _render_basket(
            request, session, network, status=400,
            problem=f"Your basket holds {BASKET_LIMIT} datasets, its most. Apply for those or "
                    "remove some first.")

    def add(basket: list[str]) -> list[str]:
        return basket if reference in basket else [*basket, reference]

    site_of(request).sessions.update_basket(_session_token(request), add)
    default = f"{PREFIX}/basket?added={quote(reference, safe='')}"
    return RedirectResponse(_back(form, default), 303)


@router.post("/basket/remove")
async def remove_from_basket(request: Request) -> Response:
    _, form = await checked_form(request)
    reference = _text(form, "dataset")
    site_of(request).sessions.update_basket(
        _session_token(request), lambda basket: [r for r in basket if r != reference])
    return RedirectResponse(_back(form, f"{PREFIX}/basket"), 303)


# -- applying ----------------------------------------------------------------------------------

def _read_application(form: FormData, session: Session) -> tuple[ApplicationForm, Purpose | None]:
    """The form as sent, with a message per field that is not right; the purpose if it is."""
    sent = ApplicationForm(datasets=_texts(form, "datasets"), terms=_texts(form, "terms"),
                           diseases=_text(form, "diseases"),
                           commercial=_text(form, "commercial") == "yes", text=_text(form, "text"),
                           duration_days=_text(form, "duration_days"))
    errors = sent.errors
    if not sent.datasets:
        errors["datasets"] = "Choose at least one dataset of your basket to apply for."
    elif missing := [d for d in sent.datasets if d not in session.basket]:
        errors["datasets"] = (f"{', '.join(missing)} is no longer in your basket; reload the "
                              "page and choose again.")
    diseases = [d for d in _DISEASE_SPLIT.split(sent.diseases) if d]
    purpose = None
    if not sent.terms:
        errors["terms"] = "Choose at least one research purpose."
    else:
        try:
            purpose = Purpose.parse(sent.terms, diseases, sent.commercial)
        except PurposeError as exc:
            target = "diseases" if "disease" in str(exc) else "terms"
            errors[target] = f"{exc}."
        if purpose is not None and DS in purpose.terms and not purpose.diseases:
            errors["diseases"] = ("Disease-specific research (DS) needs the disease: give its "
                                  "MONDO identifier, e.g. MONDO:0005148 for type 2 diabetes.")
    if not sent.text:
        errors["text"] = "Describe your project: the committee decides on what you write here."
    elif len(sent.text) > MAX_TEXT:
        errors["text"] = f"The description is {len(sent.text)} characters; at most {MAX_TEXT}."
    try:
        days = int(sent.duration_days)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DURATION_DAYS:
        errors["duration_days"] = (f"Give the duration as a whole number of days from 1 to "
                                   f"{MAX_DURATION_DAYS}.")
    return sent, (purpose if not errors else None)


@dataclass(frozen=True)
class Sent:
    """What one node answered to the application for its datasets."""

    node: str
    country: str
    datasets: tuple[str, ...]
    application: ApplicationSummary | None
    problem: str = ""


async def _send(client: httpx.AsyncClient, member: Member, datasets: Sequence[str],
                body: Mapping[str, Any]) -> Sent:
    try:
        response = await client.post(f"{member.base_url}/access/applications",
                                     json={**body, "datasets": list(datasets)})
    except httpx.HTTPError:
        return Sent(member.id, member.country, tuple(datasets), None,
                    f"the {member.country} node did not answer; try again later")
    if response.status_code == 201:
        return Sent(member.id, member.country, tuple(datasets),
                    describe(response.json(), member.id, member.country))
    return Sent(member.id, member.country, tuple(datasets), None,
                f"the {member.country} node refused it: {api_error(response)}")


@router.post("/applications")
async def send_applications(request: Request) -> Response:
    session, form = await checked_form(request)
    network = _network(request)
    sent, purpose = _read_application(form, session)
    if purpose is None:
        return _render_basket(request, session, network, form=sent, status=400,
                              problem="The application was not sent: correct what is marked "
                                      "below and send it again.")
    by_node: dict[str, list[str]] = {}
    for reference in sent.datasets:
        parsed = parse_reference(reference, network)
        if parsed is None:
            sent.errors["datasets"] = (f"{reference} is no longer offered by a member of this "
                                       "network; remove it from your basket.")
            return _render_basket(request, session, network, form=sent, status=400,
                                  problem="The application was not sent: correct what is "
                                          "marked below and send it again.")
        by_node.setdefault(parsed[0], []).append(parsed[1])
    body = {"purpose": {"terms": list(purpose.terms), "diseases": list(purpose.diseases),
                        "commercial": purpose.commercial, "text": sent.text},
            "durationDays": int(sent.duration_days)}
    async with site_of(request).remote(session) as client:
        results = await asyncio.gather(*(
            _send(client, _member(network, node), datasets, body)
            for node, datasets in by_node.items()))
    done = {f"{r.node}/{d}" for r in results if r.application is not None for d in r.datasets}
    site_of(request).sessions.update_basket(
        _session_token(request), lambda basket: [r for r in basket if r not in done])
    return site_of(request).render(request, "apply/sent.html", title="Applications sent",
                                   results=results, outcomes=OUTCOME_WORDS)


# -- My applications ---------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeAnswer:
    node: str
    country: str
    applications: tuple[ApplicationSummary, ...] = ()
    problem: str = ""


async def _applications_of(client: httpx.AsyncClient, member: Member,
                           session: Session) -> NodeAnswer:
    try:
        response = await client.get(f"{member.base_url}/access/applications")
    except httpx.HTTPError:
        return NodeAnswer(member.id, member.country, problem="did not answer")
    if response.status_code != 200:
        return NodeAnswer(member.id, member.country,
                          problem=f"answered with an error: {api_error(response)}")
    try:
        documents = response.json()["applications"]
    except (ValueError, KeyError, TypeError):
        return NodeAnswer(member.id, member.country, problem="answered with something else")
    # A committee member's own node lists every application: show only theirs.
    mine = [describe(d, member.id, member.country) for d in documents
            if d.get("applicant") == session.identity]
    return NodeAnswer(member.id, member.country, tuple(mine))


@router.get("/applications")
async def my_applications(request: Request) -> Response:
    session = require_session(request)
    network = _network(request)
    async with site_of(request).remote(session) as client:
        answers = await asyncio.gather(*(_applications_of(client, m, session)
                                         for m in network.members))
    rows = sorted((a for answer in answers for a in answer.applications),
                  key=lambda a: a.created, reverse=True)
    return site_of(request).render(request, "apply/applications.html", title="My applications",
                                   rows=rows, unavailable=[a for a in answers if a.problem],
                                   granted_since_login=_granted_since(rows, session.created_at))


def _granted_since(rows: list[ApplicationSummary], login: float) -> bool:
    """Whether a committee approved one of these after the user logged in: the issuer gathers
    visas at login (as LS-AAI does), so that access applies from the next one."""
    for row in rows:
        for event in row.events if row.state == "approved" else ():
            if event.get("kind") == "approved":
                try:
                    at = datetime.fromisoformat(str(event.get("at")).replace("Z", "+00:00"))
                except ValueError:
                    continue
                if at.timestamp() > login:
                    return True
    return False


def _application_url(node: str, application_id: str) -> str:
    return f"{PREFIX}/applications/{quote(node, safe='')}/{quote(application_id, safe='')}"


async def _fetch(request: Request, session: Session, member: Member,
                 application_id: str) -> ApplicationSummary:
    if not _APPLICATION_ID.match(application_id):
        raise PageRefused(404, "No such application",
                          "This address names no application. Go back to My applications.")
    async with site_of(request).remote(session) as client:
        try:
            response = await client.get(
                f"{member.base_url}/access/applications/{quote(application_id, safe='')}")
        except httpx.HTTPError:
            raise PageRefused(502, "Node unavailable",
                              f"The {member.country} node did not answer; try again later.") \
                from None
    if response.status_code == 404:
        raise PageRefused(404, "No such application",
                          f"The {member.country} node has no application {application_id} of "
                          "yours. Go back to My applications.")
    if response.status_code != 200:
        raise PageRefused(502, "Node unavailable",
                          f"The {member.country} node answered: {api_error(response)}")
    return describe(response.json(), member.id, member.country)


async def _render_application(request: Request, session: Session, node: str,
                              application_id: str, *, problem: str = "", note: str = "",
                              status: int = 200) -> Response:
    member = _member(_network(request), node)
    application = await _fetch(request, session, member, application_id)
    done = DONE.get(request.query_params.get("done", ""), "")
    return site_of(request).render(
        request, "apply/application.html", status,
        title=f"Application to the {member.country} node", application=application,
        outcomes=OUTCOME_WORDS, events=EVENT_WORDS, problem=problem, notice=done, note=note,
        url=_application_url(member.id, application.id), me=session.identity)


@router.get("/applications/{node}/{application_id}")
async def application_page(request: Request, node: str, application_id: str) -> Response:
    session = require_session(request)
    return await _render_application(request, session, node, application_id)


@router.post("/applications/{node}/{application_id}/resubmit")
async def resubmit(request: Request, node: str, application_id: str) -> Response:
    session, form = await checked_form(request)
    member = _member(_network(request), node)
    if not _APPLICATION_ID.match(application_id):
        raise PageRefused(404, "No such application",
                          "This address names no application. Go back to My applications.")
    note = _text(form, "note")
    async with site_of(request).remote(session) as client:
        try:
            response = await client.post(
                f"{member.base_url}/access/applications/{quote(application_id, safe='')}"
                "/resubmit", json={"note": note})
        except httpx.HTTPError:
            response = None
    if response is not None and response.status_code == 200:
        return RedirectResponse(f"{_application_url(member.id, application_id)}"
                                "?done=resubmitted", 303)
    message = (f"The {member.country} node did not answer" if response is None
               else f"The {member.country} node refused it: {api_error(response)}")
    return await _render_application(
        request, session, member.id, application_id, note=note,
        status=502 if response is None else response.status_code,
        problem=f"{message}. Nothing was changed; you can try again.")

