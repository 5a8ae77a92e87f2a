"""The htsget v1.3 HTTP API (FastAPI router, mounted under /htsget). Thin: parse the request,
ask the access policy, plan the slice (:mod:`genofed.files.search`), shape the ticket
(:mod:`genofed.files.delivery`).

Ids. The dataset id is the one the catalogue, Beacon and visas use:

* ``/htsget/variants/{dataset}``: the VCF/BCF ingested for the dataset;
* ``/htsget/variants/{dataset}/{name}`` and ``/htsget/reads/{dataset}/{name}``: a file archived in
  the dataset under `name` (`genofed files list` shows them; `genofed files add --name`).

Endpoints: ``GET|POST /htsget/{variants|reads}/{id}`` (tickets; `format`, `class=header`,
`referenceName`, `start`, `end`, POST `regions`; `fields`/`tags`/`notags` are accepted and
ignored), ``/htsget/service-info`` and ``/htsget/{variants|reads}/service-info``, and
``GET /htsget/data/{token}``, which serves a ticket's data blocks.

Access. Every ticket asks the policy for ``HTSGET_TICKET`` on the dataset and every data block
for ``HTSGET_DATA``, both audited. Data URLs are self-authorising: their sealed token names the
bytes, the caller and an expiry (at most the caller's own), so htslib can follow them.

Encryption. ``encryptionScheme=C4GH`` with the client's Crypt4GH public key in the
``Htsget-Context-Public-Key`` header (the key file's text, base64-encoded) delivers the slice
encrypted for that key. Plain slices leave the node only from datasets whose file policy allows
it (`genofed files delivery --plain`; the default is encrypted only).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from genofed import __version__
from genofed.access.http import AccessContext, AuthenticationError
from genofed.access.policy import Action
from genofed.access.principal import Grant, Principal
from genofed.files import delivery
from genofed.files.archive import node_keys
from genofed.files.crypt4gh_io import Crypt4ghError, KeyPair, parse_public_key
from genofed.files.errors import (
    ERROR_FOR_STATUS,
    HtsgetError,
    InvalidAuthentication,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ServerError,
    UnsupportedFormat,
)
from genofed.files.htsget_request import (
    FORMATS,
    MAX_POST_BYTES,
    TicketRequest,
    parse_get,
    parse_post,
)
from genofed.files.search import plan_slice
from genofed.files.storage import (
    ROLE_VARIANTS,
    ArchivedFile,
    ArchivedFileCache,
    Catalogue,
    CatalogueEntry,
    StorageError,
    read_catalogue,
)
from genofed.files.tokens import InvalidToken, TokenSealer
from genofed.store import layout
from genofed.store.metadata import load_metadata
from genofed.store.node import NodeStore, UnknownDatasetError

log = logging.getLogger(__name__)
PREFIX = "/htsget"
SPEC_VERSION = "1.3.0"
CONTENT_TYPE = f"application/vnd.ga4gh.htsget.v{SPEC_VERSION}+json; charset=utf-8"
PUBLIC_KEY_HEADER = "Htsget-Context-Public-Key"
#: How long data URLs stay valid (never beyond the caller's token and grant).
TICKET_LIFETIME = 3600
_T = "htsget"


@dataclass
class HtsgetState:
    store: NodeStore
    keys: KeyPair
    sealer: TokenSealer
    files: ArchivedFileCache
    ticket_lifetime: int = TICKET_LIFETIME

    _catalogues: dict[str, Catalogue] = field(default_factory=dict)

    @classmethod
    def for_store(cls, store: NodeStore) -> HtsgetState:
        keys = node_keys(store.paths)
        return cls(store, keys, TokenSealer.for_keys_dir(store.paths.keys),
                   ArchivedFileCache(keys))

    def catalogue(self, version_dir: Path) -> Catalogue:
        """A version's file catalogue (versions are immutable, so it is decrypted once)."""
        key = str(version_dir)
        found = self._catalogues.get(key)
        if found is None:
            found = read_catalogue(version_dir, self.keys)
            if len(self._catalogues) > 256:
                self._catalogues.clear()
            self._catalogues[key] = found
        return found


router = APIRouter()


# -- errors ---------------------------------------------------------------------------------------
def is_htsget_path(request: Request) -> bool:
    return request.url.path.startswith(PREFIX + "/") or request.url.path == PREFIX


def htsget_error_response(request: Request, exc: Exception) -> JSONResponse | None:
    """The htsget error JSON for an error raised on an /htsget path (None elsewhere), for the
    app's exception handlers: /htsget speaks htsget errors, /beacon keeps its envelope."""
    if not is_htsget_path(request):
        return None
    if isinstance(exc, HtsgetError):
        error = exc
    elif isinstance(exc, StarletteHTTPException):
        error = HtsgetError(str(exc.detail) if exc.detail else "error")
        error.status = exc.status_code
        error.error = ERROR_FOR_STATUS.get(exc.status_code, "InvalidInput")
        if exc.status_code == 404:
            error.message = (f"no such endpoint: {request.url.path} (htsget serves "
                             f"{PREFIX}/variants/{{id}} and {PREFIX}/reads/{{id}})")
    elif isinstance(exc, RequestValidationError):
        error = InvalidInput(f"invalid request: {exc}")
    else:
        error = ServerError("internal error; the node operator's log has the details")
    return _error_json(request, error)


def _error_json(request: Request, error: HtsgetError) -> JSONResponse:
    return JSONResponse(error.to_json(), error.status, headers=_cors(request),
                        media_type="application/json")


def _cors(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}


# -- service-info ----------------------------------------------------------------------------------
def _service_info(request: Request, datatype: str | None) -> dict[str, Any]:
    config = _state(request).store.config
    base = str(request.base_url).rstrip("/") + PREFIX
    formats = FORMATS.get(datatype or "", (*FORMATS["variants"], *FORMATS["reads"]))
    info: dict[str, Any] = {
        "id": f"org.genofed.{config.node_id}.htsget" + (f".{datatype}" if datatype else ""),
        "name": f"genofed htsget of node {config.node_id}",
        "type": {"group": "org.ga4gh", "artifact": "htsget", "version": SPEC_VERSION},
        "description": "GA4GH htsget over the node's Crypt4GH-encrypted files; "
                       "encryptionScheme=C4GH with Htsget-Context-Public-Key for encrypted "
                       "slices",
        "organization": {"name": f"genofed node {config.node_id} ({config.country})",
                         "url": base},
        "version": __version__,
        "createdAt": config.created,
        "htsget": {"formats": [f.value for f in formats], "fieldsParametersEffective": False,
                   "tagsParametersEffective": False},
    }
    if datatype:
        info["htsget"]["datatype"] = datatype
    return info


@router.get("/service-info", tags=[_T], summary="GA4GH service-info (htsget)")
def service_info(request: Request) -> JSONResponse:
    return JSONResponse(_service_info(request, None), headers=_cors(request))


@router.get("/variants/service-info", tags=[_T], summary="GA4GH service-info (variants)")
def variants_service_info(request: Request) -> JSONResponse:
    return JSONResponse(_service_info(request, "variants"), headers=_cors(request))


@router.get("/reads/service-info", tags=[_T], summary="GA4GH service-info (reads)")
def reads_service_info(request: Request) -> JSONResponse:
    return JSONResponse(_service_info(request, "reads"), headers=_cors(request))


# -- tickets ------------------------------------------------------------------------------------
def _state(request: Request) -> HtsgetState:
    state: HtsgetState = request.app.state.htsget
    return state


def _access(request: Request) -> AccessContext:
    context: AccessContext | None = getattr(request.app.state, "access", None)
    if context is None:
        raise PermissionDenied("this node has no access policy configured; it releases no "
                               "files without one")
    return context


async def _ticket_endpoint(request: Request, datatype: str, id: str) -> Response:
    try:
        if request.method == "POST":
            if request.query_params:
                raise InvalidInput("a POST request takes its parameters in the JSON body, not "
                                   "in the URL")
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_POST_BYTES:
                raise PayloadTooLarge(f"the request body has {declared} bytes; at most "
                                      f"{MAX_POST_BYTES} are accepted")
            ticket = parse_post(datatype, id, await request.body())
        else:
            ticket = parse_get(datatype, id, dict(request.query_params.multi_items()))
        document = await run_in_threadpool(_issue_ticket, request, ticket)
    except HtsgetError as error:
        return _error_json(request, error)
    return Response(json.dumps(document, separators=(",", ":")), 200, media_type=CONTENT_TYPE,
                    headers=_cors(request))


@router.get("/variants/{id:path}", tags=[_T], summary="htsget ticket for variants (VCF, BCF)")
async def variants_get(request: Request, id: str) -> Response:
    return await _ticket_endpoint(request, "variants", id)


@router.post("/variants/{id:path}", tags=[_T], summary="htsget ticket for variants, regions in "
             "a JSON body")
async def variants_post(request: Request, id: str) -> Response:
    return await _ticket_endpoint(request, "variants", id)


@router.get("/reads/{id:path}", tags=[_T], summary="htsget ticket for reads (BAM, CRAM)")
async def reads_get(request: Request, id: str) -> Response:
    return await _ticket_endpoint(request, "reads", id)


@router.post("/reads/{id:path}", tags=[_T], summary="htsget ticket for reads, regions in a "
             "JSON body")
async def reads_post(request: Request, id: str) -> Response:
    return await _ticket_endpoint(request, "reads", id)


@router.options("/variants/{path:path}", include_in_schema=False)
@router.options("/reads/{path:path}", include_in_schema=False)
@router.options("/data/{path}", include_in_schema=False)
@router.options("/service-info", include_in_schema=False)
def preflight(request: Request, path: str = "") -> Response:
    """CORS preflight (htsget: GET and POST, the request's headers, 30 days)."""
    headers = {**_cors(request), "Access-Control-Allow-Methods": "GET, POST",
               "Access-Control-Max-Age": str(30 * 24 * 3600)}
    if "access-control-request-headers" in request.headers:
        headers["Access-Control-Allow-Headers"] = request.headers[
            "access-control-request-headers"]
    return Response(status_code=204, headers=headers)


def _issue_ticket(request: Request, ticket: TicketRequest) -> dict[str, Any]:
    state = _state(request)
    access = _access(request)
    dataset_id, name = _split_id(ticket.id)
    try:
        principal = access.authenticator.authenticate(request.headers.get("authorization"))
    except AuthenticationError as exc:
        access.policy.deny_unauthenticated(dataset_id, Action.HTSGET_TICKET, exc.reason)
        if exc.status == 403:
            raise PermissionDenied(exc.reason) from None
        raise InvalidAuthentication(exc.reason) from None
    try:
        dataset = state.store.dataset(dataset_id)
    except UnknownDatasetError:
        raise NotFound(f"no dataset {dataset_id!r} on this node") from None
    catalogue = state.catalogue(dataset.path)
    entry = _find_entry(catalogue.files, dataset_id, name, ticket)
    ticket_id = secrets.token_hex(8)
    decision = access.policy.decide(principal, dataset.metadata, Action.HTSGET_TICKET,
                                    detail=f"ticket={ticket_id} {ticket.describe()}")
    if not decision.allowed:
        raise PermissionDenied(decision.reason if principal is not None else
                               f"authorization is required: {decision.reason}")
    if principal is None:  # a policy that releases files to anonymous callers: no URL owner
        raise PermissionDenied("files are released to authenticated callers only")
    recipient = None
    if ticket.encrypted:
        value = request.headers.get(PUBLIC_KEY_HEADER)
        if not value:
            raise InvalidInput(f"encryptionScheme=C4GH needs the client's Crypt4GH public key "
                               f"in the {PUBLIC_KEY_HEADER} header (the key file, base64)")
        try:
            recipient = parse_public_key(value, what=PUBLIC_KEY_HEADER)
        except Crypt4ghError as exc:
            raise InvalidInput(str(exc)) from None
    elif not catalogue.plain_delivery:
        raise PermissionDenied(f"dataset {dataset_id!r} releases files only Crypt4GH-encrypted: "
                               f"request encryptionScheme=C4GH with your public key in the "
                               f"{PUBLIC_KEY_HEADER} header")
    try:
        file = state.files.get(dataset.path, entry)
    except StorageError:
        log.exception("htsget: a stored file cannot be read")
        raise ServerError("this file cannot be read right now; the node operator's log has "
                          "the details") from None
    plan = plan_slice(file, ticket.regions, header_only=ticket.header_only)
    make_url = _url_maker(request, state, file, principal, ticket_id)
    urls = (delivery.encrypted_urls(plan, make_url, recipient, state.keys)
            if recipient is not None else delivery.plain_urls(plan, make_url))
    return {"htsget": {"format": file.file_format.value, "urls": urls}}


def _split_id(id: str) -> tuple[str, str | None]:
    dataset_id, _, name = id.strip("/").partition("/")
    if not dataset_id:
        raise NotFound("no id given: use {dataset} or {dataset}/{file name}")
    return dataset_id, name or None


def _find_entry(files: list[CatalogueEntry], dataset_id: str, name: str | None,
                ticket: TicketRequest) -> CatalogueEntry:
    entries = [e for e in files if e.file_format in FORMATS[ticket.datatype]]
    if name is None:
        entries = [e for e in entries if e.role == ROLE_VARIANTS]
        missing = (f"dataset {dataset_id!r} has no {ticket.datatype} file of its own"
                   + ("; reads are addressed as {dataset}/{file}" if ticket.datatype == "reads"
                      else ""))
    else:
        entries = [e for e in entries if e.name == name]
        missing = f"dataset {dataset_id!r} has no {ticket.datatype} file named {name!r}"
    if not entries:
        raise NotFound(missing)
    if ticket.format is None:
        default = FORMATS[ticket.datatype][0]
        return next((e for e in entries if e.file_format is default), entries[0])
    found = [e for e in entries if e.file_format is ticket.format]
    if not found:
        held = ", ".join(sorted(e.format for e in entries))
        raise UnsupportedFormat(f"{ticket.id} is held as {held}, not {ticket.format}; "
                                f"request format={held.split(', ')[0]}")
    return found[0]


def _url_maker(request: Request, state: HtsgetState, file: ArchivedFile, principal: Principal,
               ticket_id: str) -> delivery.UrlMaker:
    base = str(request.base_url).rstrip("/") + PREFIX + "/data/"
    dataset_id = file.version_dir.parent.parent.name  # datasets/<id>/versions/<version>
    grant = principal.grant_for(dataset_id)
    expires = min(int(time.time()) + state.ticket_lifetime, principal.expires,
                  grant.expires if grant else principal.expires)
    claims = {"d": dataset_id, "v": file.dataset_version, "n": file.entry.name,
              "f": file.entry.format, "t": ticket_id, "p": _principal_claims(principal,
                                                                               dataset_id)}

    def make_url(mode: str, start: int, stop: int) -> str:
        return base + state.sealer.seal({**claims, "m": mode, "a": start, "b": stop},
                                        expires=expires)

    return make_url


def _principal_claims(principal: Principal, dataset_id: str) -> dict[str, Any]:
    grant = principal.grant_for(dataset_id)
    return {"iss": principal.issuer, "sub": principal.subject, "exp": principal.expires,
            "r": principal.researcher, "a": principal.accepted_terms,
            "g": None if grant is None else [grant.dataset_id, grant.issuer, grant.by,
                                             grant.expires, grant.visa_id]}


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    grant = claims.get("g")
    return Principal(issuer=claims["iss"], subject=claims["sub"], expires=claims["exp"],
                     grants=(Grant(*grant),) if grant else (), researcher=claims["r"],
                     accepted_terms=claims["a"])


# -- data blocks ----------------------------------------------------------------------------------
@router.get("/data/{token}", tags=[_T], summary="A data block of an htsget ticket (self-"
            "authorising URL from a ticket)")
def data(request: Request, token: str) -> Response:
    try:
        length, chunks = _open_data_block(request, token)
    except HtsgetError as error:
        return _error_json(request, error)
    return StreamingResponse(chunks, media_type="application/octet-stream",
                             headers={"Content-Length": str(length), **_cors(request)})


def _open_data_block(request: Request, token: str) -> tuple[int, Iterator[bytes]]:
    state = _state(request)
    access = _access(request)
    try:
        claims = state.sealer.open(token)
    except InvalidToken as exc:
        access.policy.deny_unauthenticated(None, Action.HTSGET_DATA, str(exc))
        raise InvalidAuthentication(str(exc)) from None
    dataset_id, mode = claims["d"], claims["m"]
    version_dir = layout.dataset_root(state.store.paths.datasets, dataset_id) / "versions" / \
        claims["v"]
    catalogue = state.catalogue(version_dir)
    entry = next((e for e in catalogue.files
                  if (e.name, e.format) == (claims["n"], claims["f"])), None)
    if entry is None:
        raise NotFound("the ticket refers to a dataset version this node no longer holds; "
                       "request a new ticket")
    try:
        metadata = state.store.dataset(dataset_id).metadata
    except UnknownDatasetError:
        metadata = load_metadata(version_dir / "dataset.json")
    principal = _principal_from_claims(claims["p"])
    what = "bytes" if mode == "plain" else "segments"
    decision = access.policy.decide(
        principal, metadata, Action.HTSGET_DATA,
        detail=f"ticket={claims['t']} {entry.format} {dataset_id}/{entry.name} "
               f"{what}={claims['a']}-{claims['b']}")
    if not decision.allowed:
        raise PermissionDenied(decision.reason)
    current = _current_catalogue(state, dataset_id) if mode == "plain" else None
    if current is not None and not current.plain_delivery:
        raise PermissionDenied(f"dataset {dataset_id!r} now releases files only encrypted; "
                               "request a new ticket with encryptionScheme=C4GH")
    try:
        file = state.files.get(version_dir, entry)
    except StorageError:
        log.exception("htsget: a stored file cannot be read")
        raise ServerError("this file cannot be read right now; the node operator's log has "
                          "the details") from None
    return delivery.data_block(file, mode, int(claims["a"]), int(claims["b"]))


def _current_catalogue(state: HtsgetState, dataset_id: str) -> Catalogue | None:
    """The file policy as it is now (a ticket may outlive a change of it)."""
    current = layout.current_version(layout.dataset_root(state.store.paths.datasets, dataset_id))
    return None if current is None else state.catalogue(current)
