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
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
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

#: The error answers every htsget operation may give (htsget v1.3 "Errors").
_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["htsget"],
    "properties": {"htsget": {"type": "object", "required": ["error", "message"],
                              "properties": {"error": {"type": "string"},
                                             "message": {"type": "string"}}}}}}}}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "InvalidInput, InvalidRange or UnsupportedFormat", **_ERROR},
    401: {"description": "InvalidAuthentication", **_ERROR},
    403: {"description": "PermissionDenied", **_ERROR},
    404: {"description": "NotFound", **_ERROR},
    413: {"description": "PayloadTooLarge", **_ERROR},
    500: {"description": "InternalError", **_ERROR},
}

router = APIRouter(responses=ERROR_RESPONSES)


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


@router.get("/service-info", tags=[_T], summary="GA4GH service-info (htsget)")
def service_info(request: Request) -> JSONResponse:
    return JSONResponse(_service_info(request, None), headers=cors(request))


@router.get("/variants/service-info", tags=[_T], summary="GA4GH service-info (variants)")
def variants_service_info(request: Request) -> JSONResponse:
    return JSONResponse(_service_info(request, "variants"), headers=cors(request))


@router.get("/reads/service-info", tags=[_T], summary="GA4GH service-info (reads)")
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


_Id = Annotated[str, Path(description="`{dataset}` or `{dataset}/{file name}`")]
_Format = Annotated[str | None, Query(description="VCF or BCF (variants), BAM or CRAM (reads)")]
_Class = Annotated[str | None, Query(alias="class", description="`header` for the header only")]
_Reference = Annotated[str | None, Query(alias="referenceName",
                                         description="a reference name, or `*` for unplaced")]
_Coordinate = Annotated[int | None, Query(ge=0, le=2**32 - 1,
                                          description="0-based, end exclusive")]
_Strings = Annotated[str | None, Query(description="accepted and ignored")]
_Encryption = Annotated[str | None, Query(alias="encryptionScheme",
                                          description="C4GH: the slice encrypted for the key "
                                                      "in the Htsget-Context-Public-Key header")]
_TICKET = {"content": {CONTENT_TYPE: {}}, "description": "An htsget ticket"}


@router.get("/variants/{id:path}", tags=[_T], summary="htsget ticket for variants (VCF, BCF)",
            responses={200: _TICKET})
async def variants_get(request: Request, id: _Id, format: _Format = None, klass: _Class = None,
                       reference_name: _Reference = None, start: _Coordinate = None,
                       end: _Coordinate = None, fields: _Strings = None, tags: _Strings = None,
                       notags: _Strings = None, encryption: _Encryption = None) -> Response:
    return await _ticket_endpoint(request, "variants", id)


@router.post("/variants/{id:path}", tags=[_T], summary="htsget ticket for variants, regions in "
             "a JSON body", responses={200: _TICKET})
async def variants_post(request: Request, id: _Id) -> Response:
    return await _ticket_endpoint(request, "variants", id)


@router.get("/reads/{id:path}", tags=[_T], summary="htsget ticket for reads (BAM, CRAM)",
            responses={200: _TICKET})
async def reads_get(request: Request, id: _Id, format: _Format = None, klass: _Class = None,
                    reference_name: _Reference = None, start: _Coordinate = None,
                    end: _Coordinate = None, fields: _Strings = None, tags: _Strings = None,
                    notags: _Strings = None, encryption: _Encryption = None) -> Response:
    return await _ticket_endpoint(request, "reads", id)


@router.post("/reads/{id:path}", tags=[_T], summary="htsget ticket for reads, regions in a "
             "JSON body", responses={200: _TICKET})
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
                             "description": "The block's bytes"}})
def data(request: Request, token: str) -> Response:
    try:
        block = _service(request).data_block(token)
    except InvalidDataToken as exc:
        return error_json(request, HtsgetInvalidAuthentication(str(exc)))
    except HtsgetError as error:
        return error_json(request, error)
    return StreamingResponse(block.chunks, media_type="application/octet-stream",
                             headers={"Content-Length": str(block.length), **cors(request)})
