"""The search page (`/portal/search`, HPO suggestions at `/portal/search/suggest`) and the
allele-frequency browser (`/portal/frequencies`).

Both run their query through the hub's network Beacon in-process (`/network/beacon/g_variants`
for a variant or a gene, `/network/beacon/individuals` for a phenotype alone) with the user's
token, asking for records and every dataset's resultSet: each node then answers at the finest
level it allows this caller (a yes/no, a count, records), and the page shows exactly that.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from genofed.portal.discover_results import Outcome, chart, frequencies, pooled, read_answer
from genofed.portal.discover_terms import (
    VARIANT_FORMS,
    BadQuery,
    Search,
    Term,
    Variant,
    parse_variant,
    read_search,
    suggest_hpo,
)
from genofed.portal.sessions import Session
from genofed.portal.web import current_session, site_of

router = APIRouter()

#: Network filtering terms are asked for again after this many seconds.
_TERMS_TTL = 60.0
_TERMS_STATE = "portal_discover_terms"
#: Variant records shown per dataset.
_RECORDS = 10


async def network_terms(request: Request) -> list[Term]:
    """The HPO terms any member holds (the network's `/filtering_terms`, public), cached."""
    cached: tuple[float, list[Term]] | None = getattr(request.app.state, _TERMS_STATE, None)
    if cached is not None and time.monotonic() - cached[0] < _TERMS_TTL:
        return cached[1]
    terms: list[Term] = []
    async with site_of(request).api(request, None) as client:
        response = await client.get("/network/beacon/filtering_terms")
    if response.status_code == 200:
        try:
            items = response.json()["response"]["filteringTerms"]
        except (ValueError, KeyError, TypeError):
            items = []
        terms = sorted((Term(str(t["id"]), str(t.get("label") or t["id"])) for t in items
                        if isinstance(t, dict) and str(t.get("id", "")).startswith("HP:")),
                       key=lambda t: t.label.lower())
        setattr(request.app.state, _TERMS_STATE, (time.monotonic(), terms))
    return terms


def _params(request: Request) -> dict[str, str]:
    """The page's parameters, the first of each (a bookmark may repeat none)."""
    return {key: request.query_params[key] for key in request.query_params}


def beacon_query(search: Search) -> tuple[str, dict[str, str]]:
    """The network Beacon path and GET parameters that run `search`."""
    params = {"requestedGranularity": "record", "includeResultsetResponses": "ALL",
              "limit": str(_RECORDS)}
    if search.variant is not None:
        params.update(search.variant.beacon_parameters())
    elif search.gene is not None:
        params["geneId"] = search.gene
    filters = search.filters()
    if filters:
        params["filters"] = ",".join(filters)
    return f"/network/beacon/{search.entry}", params


async def ask_network(request: Request, session: Session | None, path: str,
                      params: dict[str, str], noun: str) -> tuple[int, dict[str, Any], Outcome]:
    """The network Beacon's answer as the user (status, document, the answer read)."""
    async with site_of(request).api(request, session) as client:
        response = await client.get(path, params=params)
    try:
        document = response.json()
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    outcome = read_answer(document, noun, session is not None)
    if response.status_code != 200 and outcome.error is None:
        outcome.error = f"the network answered HTTP {response.status_code}"
    if response.status_code == 401 and session is not None:
        outcome.error = (f"{outcome.error}. Your login may have expired: log out, log in "
                         "again and repeat the search.")
    return response.status_code, document, outcome


def _search_text(params: dict[str, str], search: Search | None) -> str:
    """What the search box shows: what was typed, or the bookmarked search."""
    if params.get("q"):
        return params["q"]
    if search is None:
        return params.get("variant") or params.get("gene") or params.get("hpo") or ""
    if search.variant is not None:
        return search.variant.label
    if search.gene is not None:
        return search.gene
    return search.hpo.id if search.hpo is not None else ""


def _links(search: Search) -> dict[str, str]:
    """Addressable forms of this search (for bookmarking)."""
    base = {k: v for k, v in (("sex", search.sex or ""),
                              ("min_age", "" if search.min_age is None else str(search.min_age)),
                              ("max_age", "" if search.max_age is None else str(search.max_age)))
            if v}
    params = dict(base)
    if search.variant is not None:
        params["variant"] = search.variant.label
    if search.gene is not None:
        params["gene"] = search.gene
    if search.hpo is not None:
        params["hpo"] = search.hpo.id
    return {"bookmark": "/portal/search?" + urlencode(params),
            "filters": urlencode(base)}


@router.get("/search")
async def search_page(request: Request) -> HTMLResponse:
    site, session = site_of(request), current_session(request)
    params = _params(request)
    terms = await network_terms(request)
    context: dict[str, Any] = {
        "title": "Search", "network_terms": terms, "search": None, "problem": None,
        "outcome": None, "links": None, "api_url": None, "forms": VARIANT_FORMS,
        "basket": set(session.basket) if session else set(), "noun": "",
        "sex": params.get("sex", ""), "min_age": params.get("min_age", ""),
        "max_age": params.get("max_age", ""), "text": _search_text(params, None)}
    try:
        search = read_search(params, terms)
    except BadQuery as exc:
        context["problem"] = str(exc)
        return site.render(request, "discover/search.html", 400, **context)
    context.update(search=search, text=_search_text(params, search))
    if not search.runnable:
        return site.render(request, "discover/search.html", **context)
    path, query = beacon_query(search)
    noun = "variant" if search.entry == "g_variants" else "individual"
    status, _document, outcome = await ask_network(request, session, path, query, noun)
    context.update(outcome=outcome, links=_links(search), noun=noun,
                   api_url=f"{path}?{urlencode(query)}")
    page_status = 200 if status == 200 else 400 if status == 400 else 502
    return site.render(request, "discover/search.html", page_status, **context)


@router.get("/search/suggest")
async def suggest(request: Request) -> HTMLResponse:
    """HPO terms for what has been typed so far: an HTML fragment for htmx (the search page
    works without it, as a plain text box with a list of the network's terms)."""
    site = site_of(request)
    params = _params(request)
    text = params.get("q", "").strip()
    terms = await network_terms(request)
    suggestions = suggest_hpo(text, terms) if len(text) >= 2 else []
    held = {t.id for t in terms}
    filters = urlencode({k: params[k] for k in ("sex", "min_age", "max_age") if params.get(k)})
    return site.render(request, "discover/suggest.html", suggestions=suggestions, held=held,
                       text=text, filters=filters)


@router.get("/frequencies")
async def frequencies_page(request: Request) -> HTMLResponse:
    site, session = site_of(request), current_session(request)
    text = request.query_params.get("variant", "").strip()
    context: dict[str, Any] = {"title": "Allele frequencies", "text": text, "forms": VARIANT_FORMS,
                               "problem": None, "variant": None, "outcome": None, "rows": [],
                               "withheld": [], "pooled": [], "chart": None, "api_url": None}
    if not text:
        return site.render(request, "discover/frequencies.html", **context)
    try:
        variant: Variant = parse_variant(text)
    except BadQuery as exc:
        context["problem"] = str(exc)
        return site.render(request, "discover/frequencies.html", 400, **context)
    path, query = beacon_query(Search(variant=variant))
    status, document, outcome = await ask_network(request, session, path, query, "variant")
    rows, withheld = frequencies(document)
    totals = pooled(rows)
    context.update(variant=variant, outcome=outcome, rows=rows, withheld=withheld,
                   pooled=totals, chart=chart(variant.label, totals) if totals else None,
                   api_url=f"{path}?{urlencode(query)}")
    page_status = 200 if status == 200 else 400 if status == 400 else 502
    return site.render(request, "discover/frequencies.html", page_status, **context)
