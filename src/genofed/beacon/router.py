"""The Beacon v2 HTTP API (FastAPI router, mounted under /beacon). Thin: parse the request,
identify the caller (and charge their query budget), call :class:`BeaconService`, return JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse

from genofed.beacon import framework
from genofed.beacon.access import Caller, CallerResolver, QueryBudget, caller_from
from genofed.beacon.request import (
    BeaconQuery,
    BeaconRequestBody,
    from_body,
    from_query_params,
)
from genofed.beacon.service import BeaconService, Scope

_T = "Beacon framework"


@dataclass
class BeaconState:
    service: BeaconService
    budget: QueryBudget
    resolve_caller: CallerResolver = caller_from


def _state(request: Request) -> BeaconState:
    state: BeaconState = request.app.state.beacon
    return state


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/beacon"


def charged_caller(request: Request) -> Caller:
    """The caller, after charging one query to their budget (429 when spent)."""
    state = _state(request)
    caller = state.resolve_caller(request.headers.get("authorization"),
                                  request.client.host if request.client else None)
    state.budget.charge(caller.key)
    return caller


def get_query(
    request: Request,
    requestedGranularity: Annotated[str | None, Query(
        description="boolean | count | record (default boolean)")] = None,
    includeResultsetResponses: Annotated[str | None, Query(
        description="ALL | HIT | MISS | NONE (default HIT)")] = None,
    skip: Annotated[str | None, Query(description="pages to skip (offset = skip * limit)")] = None,
    limit: Annotated[str | None, Query(description="records per page, at most 1000")] = None,
    filters: Annotated[str | None, Query(
        description="comma-separated filtering terms: ontology ids (HP:0001250, "
                    "NCIT:C16576) or alphanumeric `id<op>value` (age>=P40Y)")] = None,
    includeDescendantTerms: Annotated[str | None, Query()] = None,
    testMode: Annotated[str | None, Query()] = None,
    referenceName: Annotated[str | None, Query(description="e.g. 20 or chr20")] = None,
    start: Annotated[str | None, Query(
        description="0-based start; two comma-separated values for a bracket query")] = None,
    end: Annotated[str | None, Query(
        description="0-based exclusive end; two values for a bracket query")] = None,
    referenceBases: Annotated[str | None, Query()] = None,
    alternateBases: Annotated[str | None, Query()] = None,
    variantType: Annotated[str | None, Query(description="SNP, MNP, INDEL, DEL, INS, DUP, ...")
                           ] = None,
    assemblyId: Annotated[str | None, Query()] = None,
    geneId: Annotated[str | None, Query(description="unsupported without a gene table")] = None,
    variantMinLength: Annotated[str | None, Query()] = None,
    variantMaxLength: Annotated[str | None, Query()] = None,
    datasets: Annotated[str | None, Query(description="comma-separated dataset ids")] = None,
) -> BeaconQuery:
    return from_query_params(dict(request.query_params))


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
Handler = Callable[..., JSONResponse]


def _entry_handlers(entry: str, scope_of: Callable[[str | None], Scope], name: str,
                    with_id: bool) -> tuple[Handler, Handler]:
    def answer(request: Request, query: BeaconQuery, caller: Caller,
               item_id: str | None) -> JSONResponse:
        service = _state(request).service
        document = service.entry_query(entry, query, caller, scope_of(item_id),
                                       _base_url(request))
        return JSONResponse(document)

    if with_id:
        def get_by_id(request: Request, id: str,
                      query: Annotated[BeaconQuery, Depends(get_query)],
                      caller: Annotated[Caller, Depends(charged_caller)]) -> JSONResponse:
            return answer(request, query, caller, id)

        def post_by_id(request: Request, id: str,
                       caller: Annotated[Caller, Depends(charged_caller)],
                       body: Annotated[BeaconRequestBody | None, Body()] = None) -> JSONResponse:
            return answer(request, from_body(body), caller, id)

        return get_by_id, post_by_id

    def get_all(request: Request, query: Annotated[BeaconQuery, Depends(get_query)],
                caller: Annotated[Caller, Depends(charged_caller)]) -> JSONResponse:
        return answer(request, query, caller, None)

    def post_all(request: Request, caller: Annotated[Caller, Depends(charged_caller)],
                 body: Annotated[BeaconRequestBody | None, Body()] = None) -> JSONResponse:
        return answer(request, from_body(body), caller, None)

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
                         operation_id=f"get_{_name}", response_class=JSONResponse)
    router.add_api_route(_path, _post, methods=["POST"], tags=[_tag], name=f"post_{_name}",
                         operation_id=f"post_{_name}", response_class=JSONResponse)


# -- collections ---------------------------------------------------------------------------------
def _collection_handlers(entry: str, with_id: bool) -> tuple[Handler, Handler]:
    def answer(request: Request, query: BeaconQuery, item_id: str | None) -> JSONResponse:
        return JSONResponse(_state(request).service.collections(entry, query, item_id))

    if with_id:
        def get_by_id(request: Request, id: str,
                      query: Annotated[BeaconQuery, Depends(get_query)],
                      caller: Annotated[Caller, Depends(charged_caller)]) -> JSONResponse:
            return answer(request, query, id)

        def post_by_id(request: Request, id: str,
                       caller: Annotated[Caller, Depends(charged_caller)],
                       body: Annotated[BeaconRequestBody | None, Body()] = None) -> JSONResponse:
            return answer(request, from_body(body), id)

        return get_by_id, post_by_id

    def get_all(request: Request, query: Annotated[BeaconQuery, Depends(get_query)],
                caller: Annotated[Caller, Depends(charged_caller)]) -> JSONResponse:
        return answer(request, query, None)

    def post_all(request: Request, caller: Annotated[Caller, Depends(charged_caller)],
                 body: Annotated[BeaconRequestBody | None, Body()] = None) -> JSONResponse:
        return answer(request, from_body(body), None)

    return get_all, post_all


for _entry in ("datasets", "cohorts"):
    for _with_id in (False, True):
        _path = f"/{_entry}/{{id}}" if _with_id else f"/{_entry}"
        _name = f"{_entry}_by_id" if _with_id else _entry
        _get, _post = _collection_handlers(_entry, _with_id)
        router.add_api_route(_path, _get, methods=["GET"], tags=[_entry], name=f"get_{_name}",
                             operation_id=f"get_{_name}", response_class=JSONResponse)
        router.add_api_route(_path, _post, methods=["POST"], tags=[_entry], name=f"post_{_name}",
                             operation_id=f"post_{_name}", response_class=JSONResponse)
