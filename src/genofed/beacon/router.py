"""The Beacon v2 HTTP API (FastAPI router, mounted under /beacon). Thin: parse the request,
identify the caller (and charge their query budget), call :class:`BeaconService`, return JSON."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from genofed.access.http import access_context
from genofed.access.query_budget import SharedQueryBudget
from genofed.beacon import framework
from genofed.beacon.access import QueryBudget, Requester, requested_action
from genofed.beacon.request import (
    VARIANT_ID,
    BeaconQuery,
    BeaconRequestBody,
    from_body,
    from_query_params,
    single_valued,
)
from genofed.beacon.service import BeaconService, Scope
from genofed.errors import AuthenticationError, UnauthorizedError

_T = "Beacon framework"


@dataclass
class BeaconState:
    service: BeaconService
    budget: QueryBudget | SharedQueryBudget


def _state(request: Request) -> BeaconState:
    state: BeaconState = request.app.state.beacon
    return state


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/beacon"


async def charged_caller(request: Request) -> Requester:
    """The caller (their token checked by the node's authenticator), after charging one query to
    their budget (429 when spent). A token that fails the checks is refused (401) and audited."""
    state = _state(request)
    context = access_context(request)
    authorization = request.headers.get("authorization")
    principal = None
    known = getattr(context.authenticator, "known", None)
    if authorization and known is not None:
        principal = known(authorization)  # a token seen before: no I/O, no thread hop
    if authorization and principal is None:
        try:  # may fetch keys or userinfo on first sight of a token: keep it off the loop
            principal = await run_in_threadpool(context.authenticator.authenticate, authorization)
        except AuthenticationError as exc:
            context.policy.deny_unauthenticated(None, await requested_action(request),
                                                exc.reason)
            raise UnauthorizedError(f"bearer token refused: {exc.reason}", exc.status) from None
    host = request.client.host if request.client else "unknown"
    key = f"sub:{principal.pseudonym}" if principal else f"ip:{host}"
    if not state.budget.charge_locally(key):  # the shared budget needs a lease: a DB write
        await run_in_threadpool(state.budget.charge, key)
    return Requester(principal, key, context.policy)


# -- what the OpenAPI document says -------------------------------------------------------------
# GET query parameters are parsed once, by :func:`from_query_params` (declaring them as FastAPI
# parameters would validate each twice and cost more than the query itself); the serving layer
# documents them (genofed.server.beacon_parameters).
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # a client must tolerate members added later


class ErrorDetail(_Open):
    """What went wrong: the HTTP status and a message."""

    errorCode: int
    errorMessage: str


class BeaconErrorMeta(_Open):
    beaconId: str
    apiVersion: str
    returnedSchemas: list[dict[str, Any]]
    returnedGranularity: str | None = None
    receivedRequestSummary: dict[str, Any] | None = None
    testMode: bool | None = None


class BeaconErrorResponse(_Open):
    """The Beacon v2 error response (`beaconErrorResponse.json`); the network's adds
    `info.network`, every member's status."""

    meta: BeaconErrorMeta
    error: ErrorDetail
    info: dict[str, Any] | None = None


_RETRY_AFTER = {"Retry-After": {"description": "Seconds until the query budget refills",
                                "schema": {"type": "integer", "minimum": 0}, "required": True}}
_MEANING = {400: "The request is invalid (a parameter or the body)",
            401: "The bearer token was refused", 403: "The caller may not have what was asked",
            404: "No such dataset, cohort or other resource",
            429: "The caller's query budget is spent; `Retry-After` says when it refills",
            500: "An internal error; the operator's log has the details",
            502: "No member of the network gave a usable answer",
            503: "The network file of the hub is unreadable",
            504: "No member of the network answered in time"}


def error_responses(*statuses: int, retry_after: bool = True) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a Beacon route (the node's or the network's) answering `statuses`; a 429
    says when to retry if `retry_after`."""
    return {status: {"model": BeaconErrorResponse, "description": _MEANING[status],
                     **({"headers": _RETRY_AFTER} if status == 429 and retry_after else {})}
            for status in statuses}


#: What the framework endpoints answer besides 200.
_FRAMEWORK_ERRORS = error_responses(500)
#: What the entry-type and collection queries answer besides 200.
_QUERY_ERRORS = error_responses(400, 401, 403, 404, 429, 500)


class VariantIdRequestBody(BeaconRequestBody):
    """The request body of a query scoped by a variant id (`/g_variants/{id}/...`): read as any
    Beacon request; documented apart because no variant parameter but `datasets` applies."""


class CollectionRequestBody(BeaconRequestBody):
    """The request body of a collection query (datasets, cohorts): read as any Beacon request;
    documented apart because neither request parameters nor filters apply."""


async def get_query(request: Request) -> BeaconQuery:
    return from_query_params(single_valued(request.query_params.multi_items()))


router = APIRouter()
#: A variant id in a path (`/g_variants/{id}`): documented and checked by its pattern, which is
#: what :func:`genofed.beacon.variants.parse_variant_id` reads.
VariantId = Annotated[str, Path(pattern=VARIANT_ID, description=(
    "`assembly:contig:position:ref:alt` (1-based VCF position), e.g. GRCh38:20:12345:A:G"))]


@router.get("", include_in_schema=False, tags=[_T], responses=_FRAMEWORK_ERRORS)
@router.get("/", summary="Beacon information", tags=[_T], responses=_FRAMEWORK_ERRORS)
@router.get("/info", summary="Beacon information", tags=[_T], responses=_FRAMEWORK_ERRORS)
def info(request: Request) -> dict[str, Any]:
    return framework.info(_state(request).service.store)


@router.get("/service-info", summary="GA4GH service-info", tags=[_T], responses=_FRAMEWORK_ERRORS)
def service_info(request: Request) -> dict[str, Any]:
    return framework.service_info(_state(request).service.store, _base_url(request))


@router.get("/map", summary="Beacon map", tags=[_T], responses=_FRAMEWORK_ERRORS)
def beacon_map(request: Request) -> dict[str, Any]:
    return framework.beacon_map(_state(request).service.store, _base_url(request))


@router.get("/configuration", summary="Beacon configuration", tags=[_T],
            responses=_FRAMEWORK_ERRORS)
def configuration(request: Request) -> dict[str, Any]:
    return framework.configuration(_state(request).service.store)


@router.get("/entry_types", summary="Entry types", tags=[_T], responses=_FRAMEWORK_ERRORS)
def entry_types(request: Request) -> dict[str, Any]:
    return framework.entry_types(_state(request).service.store)


@router.get("/filtering_terms", summary="Filtering terms present in this node's data",
            tags=[_T], responses=_FRAMEWORK_ERRORS)
def filtering_terms(request: Request) -> dict[str, Any]:
    return framework.filtering_terms(_state(request).service.store)


# -- entry types --------------------------------------------------------------------------------
Handler = Callable[..., Any]


def _variant_id_path(handler: Handler) -> Handler:
    """`handler` with its `id` path parameter typed as a variant id (:data:`VariantId`) and its
    body, if any, documented as :class:`VariantIdRequestBody`."""
    types = {"id": VariantId, "body": Annotated[VariantIdRequestBody | None, Body()]}
    signature = inspect.signature(handler)
    handler.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        p.replace(annotation=types.get(p.name, p.annotation))
        for p in signature.parameters.values()])
    return handler


def _entry_handlers(entry: str, scope_of: Callable[[str | None], Scope], name: str,
                    with_id: bool, variant_id: bool = False) -> tuple[Handler, Handler]:
    async def answer(request: Request, query: BeaconQuery, caller: Requester,
                     item_id: str | None) -> JSONResponse:
        service = _state(request).service
        scope, base_url = scope_of(item_id), _base_url(request)

        def run() -> dict[str, Any]:
            return service.entry_query(entry, query, caller, scope, base_url)

        quick = service.answers_quickly(entry, query, scope)
        document = run() if quick else await run_in_threadpool(run)
        return JSONResponse(document)

    if with_id:
        async def get_by_id(request: Request, id: str,
                            query: Annotated[BeaconQuery, Depends(get_query)],
                            caller: Annotated[Requester, Depends(charged_caller)]) -> JSONResponse:
            return await answer(request, query, caller, id)

        async def post_by_id(request: Request, id: str,
                             caller: Annotated[Requester, Depends(charged_caller)],
                             body: Annotated[BeaconRequestBody | None, Body()] = None
                             ) -> JSONResponse:
            return await answer(request, from_body(body), caller, id)

        if variant_id:
            return _variant_id_path(get_by_id), _variant_id_path(post_by_id)
        return get_by_id, post_by_id

    async def get_all(request: Request, query: Annotated[BeaconQuery, Depends(get_query)],
                      caller: Annotated[Requester, Depends(charged_caller)]) -> JSONResponse:
        return await answer(request, query, caller, None)

    async def post_all(request: Request, caller: Annotated[Requester, Depends(charged_caller)],
                       body: Annotated[BeaconRequestBody | None, Body()] = None) -> JSONResponse:
        return await answer(request, from_body(body), caller, None)

    return get_all, post_all


#: (path, entry queried, how the {id} scopes it, tag)
_ROUTES: list[tuple[str, str, Callable[[str | None], Scope]]] = [
    ("/g_variants", "g_variants", lambda _i: Scope()),
    ("/g_variants/{id}", "g_variants", lambda i: Scope(variant_id=i)),
    ("/g_variants/{id}/individuals", "individuals", lambda i: Scope(variant_id=i)),
    ("/g_variants/{id}/biosamples", "biosamples", lambda i: Scope(variant_id=i)),
    ("/individuals", "individuals", lambda _i: Scope()),
    ("/individuals/{id}", "individuals", lambda i: Scope(individual_id=i)),
    ("/individuals/{id}/g_variants", "g_variants", lambda i: Scope(individual_id=i)),
    ("/individuals/{id}/biosamples", "biosamples", lambda i: Scope(individual_id=i)),
    ("/biosamples", "biosamples", lambda _i: Scope()),
    ("/biosamples/{id}", "biosamples", lambda i: Scope(individual_id=i)),
    ("/biosamples/{id}/g_variants", "g_variants", lambda i: Scope(individual_id=i)),
    ("/datasets/{id}/individuals", "individuals", lambda i: Scope(dataset_id=i)),
    ("/datasets/{id}/g_variants", "g_variants", lambda i: Scope(dataset_id=i)),
    ("/datasets/{id}/biosamples", "biosamples", lambda i: Scope(dataset_id=i)),
    ("/cohorts/{id}/individuals", "individuals", lambda i: Scope(dataset_id=i)),
]

for _path, _entry, _scope in _ROUTES:
    _name = _path.strip("/").replace("/", "_").replace("{id}", "by_id")
    _get, _post = _entry_handlers(_entry, _scope, _name, "{id}" in _path,
                                  variant_id=_path.startswith("/g_variants/{id}"))
    _tag = _path.strip("/").split("/")[0]
    router.add_api_route(_path, _get, methods=["GET"], tags=[_tag], name=f"get_{_name}",
                         operation_id=f"get_{_name}", response_class=JSONResponse,
                         responses=_QUERY_ERRORS)
    router.add_api_route(_path, _post, methods=["POST"], tags=[_tag], name=f"post_{_name}",
                         operation_id=f"post_{_name}", response_class=JSONResponse,
                         responses=_QUERY_ERRORS)


# -- collections ---------------------------------------------------------------------------------
CollectionBody = Annotated[CollectionRequestBody | None, Body()]


def _collection_handlers(entry: str, with_id: bool) -> tuple[Handler, Handler]:
    def answer(request: Request, query: BeaconQuery, item_id: str | None) -> JSONResponse:
        return JSONResponse(_state(request).service.collections(entry, query, item_id))

    if with_id:
        def get_by_id(request: Request, id: str,
                      query: Annotated[BeaconQuery, Depends(get_query)],
                      caller: Annotated[Requester, Depends(charged_caller)]) -> JSONResponse:
            return answer(request, query, id)

        def post_by_id(request: Request, id: str,
                       caller: Annotated[Requester, Depends(charged_caller)],
                       body: CollectionBody = None) -> JSONResponse:
            return answer(request, from_body(body), id)

        return get_by_id, post_by_id

    def get_all(request: Request, query: Annotated[BeaconQuery, Depends(get_query)],
                caller: Annotated[Requester, Depends(charged_caller)]) -> JSONResponse:
        return answer(request, query, None)

    def post_all(request: Request, caller: Annotated[Requester, Depends(charged_caller)],
                 body: CollectionBody = None) -> JSONResponse:
        return answer(request, from_body(body), None)

    return get_all, post_all


for _entry in ("datasets", "cohorts"):
    for _with_id in (False, True):
        _path = f"/{_entry}/{{id}}" if _with_id else f"/{_entry}"
        _name = f"{_entry}_by_id" if _with_id else _entry
        _get, _post = _collection_handlers(_entry, _with_id)
        router.add_api_route(_path, _get, methods=["GET"], tags=[_entry], name=f"get_{_name}",
                             operation_id=f"get_{_name}", response_class=JSONResponse,
                             responses=_QUERY_ERRORS)
        router.add_api_route(_path, _post, methods=["POST"], tags=[_entry], name=f"post_{_name}",
                             operation_id=f"post_{_name}", response_class=JSONResponse,
                             responses=_QUERY_ERRORS)
