"""The htsget v1.3 HTTP API (FastAPI router, mounted under /htsget). Thin: parse the request
(:mod:`genofed.files.htsget_request`), authenticate the caller, and ask the service
(:mod:`genofed.files.service`), which asks the access policy and the store.

Ids. The dataset id is the one the catalogue, Beacon and visas use:

* ``/htsget/variants/{dataset}``: the VCF/BCF ingested for the dataset;
* ``/htsget/variants/{dataset}/{name}`` and ``/htsget/reads/{dataset}/{name}``: a file archived in
  the dataset under `name` (`genofed files list` shows them; `genofed files add --name`).

Endpoints: ``GET|POST /htsget/{variants|reads}/{id}`` (tickets; `format`, `class=header`,
`referenceName`, `start`, `end`, POST `regions`; `fields`/`tags`/`notags` are accepted and
ignored), ``/htsget/service-info`` and ``/htsget/{variants|reads}/service-info``, and
``GET /htsget/data/{token}``, which serves a ticket's data blocks.

Encryption. ``encryptionScheme=C4GH`` with the client's Crypt4GH public key in the
``Htsget-Context-Public-Key`` header (the key file's text, base64-encoded) delivers the slice
encrypted for that key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from genofed import __version__
from genofed.access.http import AccessContext
from genofed.access.principal import Principal
from genofed.errors import (
    AuthenticationError,
    Crypt4ghError,
    HtsgetError,
    HtsgetInvalidAuthentication,
    HtsgetInvalidInput,
    HtsgetPayloadTooLarge,
    HtsgetPermissionDenied,
    InvalidDataToken,
)
from genofed.files.htsget_request import (
    FORMATS,
    MAX_POST_BYTES,
    MAX_REGIONS,
    TicketRequest,
    parse_get,
    parse_post,
)
from genofed.files.service import HtsgetService
from genofed.formats.crypt4gh import parse_public_key

PREFIX = "/htsget"
SPEC_VERSION = "1.3.0"
CONTENT_TYPE = f"application/vnd.ga4gh.htsget.v{SPEC_VERSION}+json; charset=utf-8"
PUBLIC_KEY_HEADER = "Htsget-Context-Public-Key"
_T = "htsget"


class HtsgetErrorDetail(BaseModel):
    error: str = Field(description="InvalidAuthentication, PermissionDenied, NotFound, "
                                   "PayloadTooLarge, UnsupportedFormat, InvalidInput, "
                                   "InvalidRange or InternalError")
    message: str


class HtsgetErrorResponse(BaseModel):
    """htsget v1.3 "Errors"."""

    htsget: HtsgetErrorDetail


_ERROR_TYPES = {400: "InvalidInput, InvalidRange or UnsupportedFormat",
                401: "InvalidAuthentication", 403: "PermissionDenied", 404: "NotFound",
                413: "PayloadTooLarge", 500: "InternalError"}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The htsget errors (htsget v1.3 "Errors") an operation answers, and 500."""
    return {status: {"model": HtsgetErrorResponse, "description": _ERROR_TYPES[status]}
            for status in sorted({*statuses, 500})}


def documented_as(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra` for a parameter whose derived schema says less than the handler
    checks (`str | None` for an enum read in any case): the schema becomes `schema`, keeping
    the derived title and description. Documentation only: FastAPI validates the type."""

    def replace(derived: dict[str, Any]) -> None:
        kept = {k: v for k, v in derived.items() if k in ("title", "description")}
        derived.clear()
        derived.update({**schema, **kept})

    return replace


#: Every error an htsget operation may give.
ERROR_RESPONSES = _errors(400, 401, 403, 404, 413)

router = APIRouter()


def is_htsget_path(path: str) -> bool:
    return path.startswith(PREFIX + "/") or path == PREFIX


def error_json(request: Request, error: HtsgetError) -> JSONResponse:
    return JSONResponse(error.to_json(), error.status, headers=cors(request),
                        media_type="application/json")


def cors(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}


def _service(request: Request) -> HtsgetService:
    service: HtsgetService = request.app.state.htsget
    return service


# -- service-info ----------------------------------------------------------------------------------
def _service_info(request: Request, datatype: str | None) -> dict[str, Any]:
    config = _service(request).store.config
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


_INFO_ERRORS = _errors()


@router.get("/service-info", summary="GA4GH service-info (htsget)", tags=[_T],
            responses=_INFO_ERRORS)
def service_info(request: Request) -> JSONResponse:
    return JSONResponse(_service_info(request, None), headers=cors(request))


@router.get("/variants/service-info", summary="GA4GH service-info (variants)", tags=[_T],
            responses=_INFO_ERRORS)
def variants_service_info(request: Request) -> JSONResponse:
    return JSONResponse(_service_info(request, "variants"), headers=cors(request))


@router.get("/reads/service-info", summary="GA4GH service-info (reads)", tags=[_T],
            responses=_INFO_ERRORS)
def reads_service_info(request: Request) -> JSONResponse:
    return JSONResponse(_service_info(request, "reads"), headers=cors(request))


# -- tickets ------------------------------------------------------------------------------------
def _authenticate(request: Request, service: HtsgetService, ticket_id: str) -> Principal | None:
    context: AccessContext | None = getattr(request.app.state, "access", None)
    if context is None:
        raise HtsgetPermissionDenied("this node has no access policy configured; it releases "
                                     "no files without one")
    try:
        return context.authenticator.authenticate(request.headers.get("authorization"))
    except AuthenticationError as exc:
        service.refuse_unauthenticated(ticket_id, exc.reason)
        if exc.status == 403:
            raise HtsgetPermissionDenied(exc.reason) from None
        raise HtsgetInvalidAuthentication(exc.reason) from None


def _recipient(request: Request, ticket: TicketRequest) -> None:
    if not ticket.encrypted:
        return
    value = request.headers.get(PUBLIC_KEY_HEADER)
    if not value:
        raise HtsgetInvalidInput(f"encryptionScheme=C4GH needs the client's Crypt4GH public key "
                                 f"in the {PUBLIC_KEY_HEADER} header (the key file, base64)")
    try:
        ticket.recipient_key = _raw_key(value) or parse_public_key(value, what=PUBLIC_KEY_HEADER)
    except Crypt4ghError as exc:
        raise HtsgetInvalidInput(str(exc)) from None


def _raw_key(value: str) -> bytes | None:
    """The 32 bytes of a key sent raw in base64, taken as they are: parse_public_key strips
    the decoded bytes as if they were a key file's text, which shortens (and so refuses) the one
    key in twenty that starts or ends with a byte that reads as whitespace."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _single_valued(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The query's parameters, each given once: of two values, which was meant?"""
    params = dict(pairs)
    if len(params) != len(pairs):
        repeated = sorted({key for key, _ in pairs if [k for k, _ in pairs].count(key) > 1})
        raise HtsgetInvalidInput(f"{', '.join(repeated)}: given more than once")
    return params


async def _ticket_endpoint(request: Request, datatype: str, id: str) -> Response:
    service = _service(request)
    try:
        if request.method == "POST":
            if request.query_params:
                raise HtsgetInvalidInput("a POST request takes its parameters in the JSON body, "
                                         "not in the URL")
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_POST_BYTES:
                raise HtsgetPayloadTooLarge(f"the request body has {declared} bytes; at most "
                                            f"{MAX_POST_BYTES} are accepted")
            ticket = parse_post(datatype, id, await request.body())
        else:
            ticket = parse_get(datatype, id, _single_valued(request.query_params.multi_items()))
        principal = await run_in_threadpool(_authenticate, request, service, id)
        _recipient(request, ticket)
        data_url = str(request.base_url).rstrip("/") + PREFIX + "/data/"
        document = await run_in_threadpool(service.ticket, principal, ticket, data_url)
    except HtsgetError as error:
        return error_json(request, error)
    return Response(json.dumps(document, separators=(",", ":")), 200, media_type=CONTENT_TYPE,
                    headers=cors(request))


def _formats(datatype: str) -> dict[str, Any]:
    return {"type": "string", "enum": [f.value for f in FORMATS[datatype]]}


_Id = Annotated[str, Path(description="`{dataset}` or `{dataset}/{file name}`")]
_VariantsFormat = Annotated[str | None, Query(
    description="VCF (default) or BCF, any case",
    json_schema_extra=documented_as(_formats("variants")))]
_ReadsFormat = Annotated[str | None, Query(
    description="BAM (default) or CRAM, any case",
    json_schema_extra=documented_as(_formats("reads")))]
_Class = Annotated[str | None, Query(
    alias="class", description="`header` for the header only; then no parameter but `format` "
                               "and `encryptionScheme`",
    json_schema_extra=documented_as({"type": "string", "enum": ["header"]}))]
_Reference = Annotated[str | None, Query(
    alias="referenceName", description="a reference name, or `*` for unplaced reads; needed "
                                       "by `start` and `end`, which `*` takes neither of",
    json_schema_extra=documented_as({"type": "string", "minLength": 1}))]
_Coordinate = Annotated[int | None, Query(
    ge=0, le=2**32 - 1, description="0-based, end exclusive; start <= end",
    json_schema_extra=documented_as({"type": "integer", "minimum": 0, "maximum": 2**32 - 1}))]
_Strings = Annotated[str | None, Query(
    description="comma-separated; accepted and ignored (`tags` and `notags` share no name)",
    json_schema_extra=documented_as({"type": "string"}))]
_Encryption = Annotated[str | None, Query(
    alias="encryptionScheme",
    description="C4GH (any case): the slice encrypted for the key in the "
                f"{PUBLIC_KEY_HEADER} header, which it needs",
    json_schema_extra=documented_as({"type": "string", "enum": ["C4GH"]}))]
#: A raw X25519 public key in base64 (32 bytes); a Crypt4GH public key file, as text or
#: base64-encoded, is read too.
_KEY = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"
_KEY_HEADER = {"name": PUBLIC_KEY_HEADER, "in": "header", "required": False,
               "description": "The client's Crypt4GH public key, for encryptionScheme=C4GH: "
                              "32 bytes in base64, or the key file (as text or base64)",
               "schema": {"type": "string", "pattern": _KEY},
               "example": "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="}
_TICKET = {"content": {CONTENT_TYPE: {"schema": {
    "type": "object", "required": ["htsget"],
    "properties": {"htsget": {"type": "object", "required": ["format", "urls"]}}}}},
    "description": "An htsget ticket"}
_UINT32: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
_NAMES: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


def _post_body(datatype: str) -> dict[str, Any]:
    """The POST request body (htsget v1.3 "POST request"), documented only: the handler reads
    it itself (:func:`genofed.files.htsget_request.parse_post`)."""
    region = {
        "type": "object", "additionalProperties": False, "required": ["referenceName"],
        "properties": {"referenceName": {"type": "string", "minLength": 1},
                       "start": _UINT32, "end": _UINT32},
        "if": {"properties": {"referenceName": {"const": "*"}}},
        "then": {"properties": {"start": False, "end": False}},
        "description": "start < end; `*` (unplaced reads) takes neither"}
    body = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "format": _formats(datatype), "class": {"type": "string", "enum": ["header"]},
            "fields": _NAMES, "tags": _NAMES, "notags": _NAMES,
            "regions": {"type": "array", "items": region, "minItems": 1},
            "encryptionScheme": {"type": "string", "enum": ["C4GH"]}},
        "if": {"required": ["class"]},
        "then": {"properties": {"fields": False, "tags": False, "notags": False,
                                "regions": False}},
        "description": f"`tags` and `notags` share no name. At most {MAX_POST_BYTES} bytes and "
                       f"{MAX_REGIONS} regions (413 PayloadTooLarge beyond)"}
    return {"parameters": [_KEY_HEADER],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": body}}}}


_TICKET_ERRORS = _errors(400, 401, 403, 404)
_GET_RESPONSES: dict[int | str, dict[str, Any]] = {200: _TICKET, **_TICKET_ERRORS}
_GET_EXTRA = {"parameters": [_KEY_HEADER]}


@router.get("/variants/{id:path}", tags=[_T], summary="htsget ticket for variants (VCF, BCF)",
            responses=_GET_RESPONSES, openapi_extra=_GET_EXTRA)
async def variants_get(request: Request, id: _Id, format: _VariantsFormat = None,
                       klass: _Class = None, reference_name: _Reference = None,
                       start: _Coordinate = None, end: _Coordinate = None,
                       fields: _Strings = None, tags: _Strings = None, notags: _Strings = None,
                       encryption: _Encryption = None) -> Response:
    return await _ticket_endpoint(request, "variants", id)


@router.post("/variants/{id:path}", tags=[_T], summary="htsget ticket for variants, regions in "
             "a JSON body", responses={200: _TICKET, **_errors(400, 401, 403, 404, 413)},
             openapi_extra=_post_body("variants"))
async def variants_post(request: Request, id: _Id) -> Response:
    return await _ticket_endpoint(request, "variants", id)


@router.get("/reads/{id:path}", tags=[_T], summary="htsget ticket for reads (BAM, CRAM)",
            responses=_GET_RESPONSES, openapi_extra=_GET_EXTRA)
async def reads_get(request: Request, id: _Id, format: _ReadsFormat = None, klass: _Class = None,
                    reference_name: _Reference = None, start: _Coordinate = None,
                    end: _Coordinate = None, fields: _Strings = None, tags: _Strings = None,
                    notags: _Strings = None, encryption: _Encryption = None) -> Response:
    return await _ticket_endpoint(request, "reads", id)


@router.post("/reads/{id:path}", tags=[_T], summary="htsget ticket for reads, regions in a "
             "JSON body", responses={200: _TICKET, **_errors(400, 401, 403, 404, 413)},
             openapi_extra=_post_body("reads"))
async def reads_post(request: Request, id: _Id) -> Response:
    return await _ticket_endpoint(request, "reads", id)


@router.options("/variants/{path:path}", include_in_schema=False)
@router.options("/reads/{path:path}", include_in_schema=False)
@router.options("/data/{path}", include_in_schema=False)
@router.options("/service-info", include_in_schema=False)
def preflight(request: Request, path: str = "") -> Response:
    """CORS preflight (htsget: GET and POST, the request's headers, 30 days)."""
    headers = {**cors(request), "Access-Control-Allow-Methods": "GET, POST",
               "Access-Control-Max-Age": str(30 * 24 * 3600)}
    if "access-control-request-headers" in request.headers:
        headers["Access-Control-Allow-Headers"] = request.headers[
            "access-control-request-headers"]
    return Response(status_code=204, headers=headers)


# -- data blocks ----------------------------------------------------------------------------------
@router.get("/data/{token}", tags=[_T], summary="A data block of an htsget ticket (self-"
            "authorising URL from a ticket)",
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "The block's bytes"},
                       **_errors(401, 403, 404)})
def data(request: Request, token: str) -> Response:
    try:
        block = _service(request).data_block(token)
    except InvalidDataToken as exc:
        return error_json(request, HtsgetInvalidAuthentication(str(exc)))
    except HtsgetError as error:
        return error_json(request, error)
    return StreamingResponse(block.chunks, media_type="application/octet-stream",
                             headers={"Content-Length": str(block.length), **cors(request)})
