"""HTTP API of the committee workflow, mounted at `/access`; thin over :mod:`genofed.access.dac`.

=========================================  ======================================================
GET  /access/jwks.json                     the node's visa-signing keys (the visas' `jku`)
POST /access/applications                  apply (researcher); answers with the DUO pre-assessment
GET  /access/applications[/{id}]           own applications, or all for DAC members
POST /access/applications/{id}/decision    approve (with an optional end date) / reject / return
POST /access/applications/{id}/resubmit    put a returned application back (its applicant)
POST /access/visas/{jti}/revoke            revoke a visa (DAC member)
GET  /access/visas                         the caller's valid visas: {"ga4gh_passport_v1": [...]}
=========================================  ======================================================

The caller comes from :func:`genofed.access.http.current_principal`; their identity is
"ISSUER|SUBJECT", matched against `access.dac_members`. Expects `app.state.governance` to hold a
:class:`genofed.access.governance.Governance`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from genofed.access.dac import Committee, Identity, Verdict
from genofed.access.duo import Purpose
from genofed.access.governance import Governance
from genofed.access.http import current_principal
from genofed.errors import (
    ApplicationNotFoundError,
    AuthenticationError,
    GovernanceError,
    PurposeError,
)

router = APIRouter(tags=["access"])


class AccessErrorDetail(BaseModel):
    errorCode: int
    errorMessage: str


class AccessErrorResponse(BaseModel):
    """How the access API refuses a request (and the node's error handlers answer under
    /access): the HTTP status and a message."""

    error: AccessErrorDetail


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The refusals an operation may answer with (every one may fail internally: 500); each
    needing a caller also answers 401 without a token, 401 or 403 for a refused one."""
    return {status: {"model": AccessErrorResponse, "description": HTTPStatus(status).phrase}
            for status in sorted({*statuses, 500})}


_CALLER = (401, 403)


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class PurposeIn(_Body):
    #: DUO research-purpose or permission terms (CURIEs or shorthands such as "HMB").
    terms: list[str] = Field(min_length=1)
    #: Disease CURIEs (MONDO) for disease-specific research.
    diseases: list[str] = Field(default_factory=list)
    commercial: bool = False
    text: str


class ApplicationIn(_Body):
    datasets: list[str] = Field(min_length=1)
    purpose: PurposeIn
    duration_days: int


class DecisionIn(_Body):
    decision: Verdict
    note: str = ""
    #: On approval, when access ends: an ISO date (through that day, UTC) or date and time; no
    #: later than the requested duration allows. Without it, the requested duration from now.
    expires: str | None = Field(default=None, max_length=64)


class NoteIn(_Body):
    note: str = ""


def _governance(request: Request) -> Governance:
    governance: Governance = request.app.state.governance
    return governance


def _committee(request: Request) -> Committee:
    return _governance(request).committee


def _caller(request: Request) -> Identity:
    if getattr(request.app.state, "access", None) is None:  # no login accepted at all
        raise HTTPException(401, "this node has no identity layer configured, so no caller can "
                            "log in", headers={"WWW-Authenticate": "Bearer"})
    try:
        principal = current_principal(request)
    except AuthenticationError as exc:
        raise HTTPException(exc.status, exc.reason,
                            headers={"WWW-Authenticate": "Bearer"}) from None
    if principal is None:
        raise HTTPException(401, "log in first: send your access token as 'Authorization: "
                            "Bearer ...'", headers={"WWW-Authenticate": "Bearer"})
    return Identity(principal.issuer, principal.subject)


Caller = Annotated[Identity, Depends(_caller)]
DAC = Annotated[Committee, Depends(_committee)]


def _refused(exc: GovernanceError | PurposeError) -> JSONResponse:
    """The workflow's refusal as a response (not an HTTPException, which the app would turn into
    a generic "no such endpoint" for 404s)."""
    status = exc.status if isinstance(exc, GovernanceError) else 400
    return JSONResponse({"error": {"errorCode": status, "errorMessage": str(exc)}}, status)


@router.get("/jwks.json", summary="The node's visa-signing public keys (JWKS)",
            responses=_errors())
def jwks(request: Request) -> dict[str, Any]:
    return _governance(request).signer.jwks()


@router.post("/applications", status_code=201, response_model=None,
             summary="Apply for access to datasets", responses=_errors(400, *_CALLER, 404))
def apply(body: ApplicationIn, caller: Caller,
          committee: DAC) -> dict[str, Any] | JSONResponse:
    try:
        purpose = Purpose.parse(body.purpose.terms, body.purpose.diseases,
                                body.purpose.commercial)
        view = committee.apply(caller, body.datasets, purpose, body.purpose.text,
                               body.duration_days)
    except (GovernanceError, PurposeError) as exc:
        return _refused(exc)
    return view.to_dict()


@router.get("/applications", summary="Your applications (all of them for DAC members)",
            responses=_errors(*_CALLER))
def list_applications(caller: Caller, committee: DAC) -> dict[str, Any]:
    return {"applications": [a.to_dict() for a in committee.visible_to(caller)]}


@router.get("/applications/{application_id}", response_model=None,
            summary="One application with its history", responses=_errors(*_CALLER, 404))
def show_application(application_id: str, caller: Caller,
                     committee: DAC) -> dict[str, Any] | JSONResponse:
    try:
        view = committee.application(application_id)
    except GovernanceError as exc:
        return _refused(exc)
    if not committee.may_view(caller, view):  # 404, not 403: do not confirm it exists
        return _refused(ApplicationNotFoundError(f"no application {application_id!r}"))
    return view.to_dict()


@router.post("/applications/{application_id}/decision", response_model=None,
             summary="Approve, reject or return an application (DAC members)",
             responses=_errors(400, *_CALLER, 404, 409))
def decide(application_id: str, body: DecisionIn, caller: Caller,
           committee: DAC) -> dict[str, Any] | JSONResponse:
    try:
        return committee.decide(application_id, caller, body.decision, body.note,
                                body.expires).to_dict()
    except GovernanceError as exc:
        return _refused(exc)


@router.post("/applications/{application_id}/resubmit", response_model=None,
             summary="Put a returned application back before the committee (its applicant)",
             responses=_errors(400, *_CALLER, 404, 409))
def resubmit(application_id: str, body: NoteIn, caller: Caller,
             committee: DAC) -> dict[str, Any] | JSONResponse:
    try:
        return committee.resubmit(application_id, caller, body.note).to_dict()
    except GovernanceError as exc:
        return _refused(exc)


@router.post("/visas/{jti}/revoke", response_model=None, summary="Revoke a visa (DAC members)",
             responses=_errors(400, *_CALLER, 404, 409))
def revoke(jti: str, body: NoteIn, caller: Caller,
           committee: DAC) -> dict[str, Any] | JSONResponse:
    try:
        return committee.revoke(jti, caller, body.note).to_dict()
    except GovernanceError as exc:
        return _refused(exc)


@router.get("/visas", summary="The caller's valid visas from this node, as passport visas",
            responses=_errors(*_CALLER))
def passport_visas(caller: Caller, committee: DAC) -> dict[str, list[str]]:
    return {"ga4gh_passport_v1": committee.passport_visas(caller)}
