"""The Beacon v2 HTTP API (FastAPI router, mounted under /beacon). Thin: parse the request,
identify the caller (and charge their query budget), call :class:`BeaconService`, return JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from genofed.access.http import access_context
from genofed.beacon import framework
from genofed.beacon.access import QueryBudget, Requester, requested_action
from genofed.beacon.request import (
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
    budget: QueryBudget


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
    state.budget.charge(key)
    return Requester(principal, key, context.policy)


#: Query parameters of GET entry queries: documented in the OpenAPI document, parsed by
#: :func:`from_query_params` (declaring them as FastAPI parameters would validate each twice and
#: cost more than the query itself).
_QUERY_PARAMETERS: list[tuple[str, str]] = [
    ("requestedGranularity", "boolean | count | record (default boolean)"),
    ("includeResultsetResponses", "ALL | HIT | MISS | NONE (default HIT)"),
    ("skip", "pages to skip (offset = skip * limit)"),
    ("limit", "records per page, at most 1000"),
    ("filters", "comma-separated filtering terms: ontology ids (HP:0001250, NCIT:C16576) or "
                "alphanumeric `id<op>value` (age>=P40Y)"),
    ("includeDescendantTerms", "true | false (default true)"),
    ("testMode", "true | false"),
    ("referenceName", "e.g. 20 or chr20"),
    ("start", "0-based start; two comma-separated values for a bracket query"),
    ("end", "0-based exclusive end; two values for a bracket query"),
    ("referenceBases", "reference bases (N matches any base)"),
    ("alternateBases", "alternate bases (N matches any base)"),
    ("variantType", "SNP, MNP, INDEL, DEL, INS, DUP, ..."),
    ("assemblyId", "GRCh37 or GRCh38"),
    ("geneId", "unsupported without a gene table"),
    ("variantMinLength", "minimum variant length"),
    ("variantMaxLength", "maximum variant length"),
    ("datasets", "comma-separated dataset ids"),
]
_GET_OPENAPI: dict[str, Any] = {"parameters": [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"},
     "description": description} for name, description in _QUERY_PARAMETERS]}


async def get_query(request: Request) -> BeaconQuery:
    return from_query_params(single_valued(request.query_params.multi_items()))


router = APIRouter()


@router.get("", tags=[_T], include_in_schema=False)
@router.get("/", tags=[_T], summary="Beacon information")
@router.get("/info", tags=[_T], summary="Beacon information")
def info(request: Request) -> dict[str, Any]:
    return framework.info(_state(request).service.store)


@router.get("/service-info", tags=[_T], summary="GA4GH service-info")
def service_info(request: Request) -> dict[str, Any]:
    return framework.service_info(_state(request).service.store, _base_url(request))


@router.get("/map", tags=[_T], summary="Beacon map")
def beacon_map(request: Request) -> dict[str, Any]:
    return framework.beacon_map(_state(request).service.store, _base_url(request))


@router.get("/configuration", tags=[_T], summary="Beacon configuration")
def configuration(request: Request) -> dict[str, Any]:
    return framework.configuration(_state(request).service.store)


@router.get("/entry_types", tags=[_T], summary="Entry types")
def entry_types(request: Request) -> dict[str, Any]:
    return framework.entry_types(_state(request).service.store)


@router.get("/filtering_terms", tags=[_T], summary="Filtering terms present in this node's data")
def filtering_terms(request: Request) -> dict[str, Any]:
    return framework.filtering_terms(_state(request).service.store)


# -- entry types --------------------------------------------------------------------------------
Handler = Callable[..., Any]


def _entry_handlers(entry: str, scope_of: Callable[[str | None], Scope], name: str,
                    with_id: bool) -> tuple[Handler, Handler]:
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
    _get, _post = _entry_handlers(_entry, _scope, _name, "{id}" in _path)
    _tag = _path.strip("/").split("/")[0]
    router.add_api_route(_path, _get, methods=["GET"], tags=[_tag], name=f"get_{_name}",
                         operation_id=f"get_{_name}", response_class=JSONResponse,
                         openapi_extra=_GET_OPENAPI)
    router.add_api_route(_path, _post, methods=["POST"], tags=[_tag], name=f"post_{_name}",
                         operation_id=f"post_{_name}", response_class=JSONResponse)


# -- collections ---------------------------------------------------------------------------------
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
                       body: Annotated[BeaconRequestBody | None, Body()] = None) -> JSONResponse:
            return answer(request, from_body(body), id)

        return get_by_id, post_by_id

    def get_all(request: Request, query: Annotated[BeaconQuery, Depends(get_query)],
                caller: Annotated[Requester, Depends(charged_caller)]) -> JSONResponse:
        return answer(request, query, None)

    def post_all(request: Request, caller: Annotated[Requester, Depends(charged_caller)],
                 body: Annotated[BeaconRequestBody | None, Body()] = None) -> JSONResponse:
        return answer(request, from_body(body), None)

    return get_all, post_all


for _entry in ("datasets", "cohorts"):
    for _with_id in (False, True):
        _path = f"/{_entry}/{{id}}" if _with_id else f"/{_entry}"
        _name = f"{_entry}_by_id" if _with_id else _entry
        _get, _post = _collection_handlers(_entry, _with_id)
        router.add_api_route(_path, _get, methods=["GET"], tags=[_entry], name=f"get_{_name}",
                             operation_id=f"get_{_name}", response_class=JSONResponse,
                             openapi_extra=_GET_OPENAPI)
        router.add_api_route(_path, _post, methods=["POST"], tags=[_entry], name=f"post_{_name}",
                             operation_id=f"post_{_name}", response_class=JSONResponse)
