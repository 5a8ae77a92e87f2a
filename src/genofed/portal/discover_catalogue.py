"""The network catalogue (`/portal/catalogue`) and dataset pages
(`/portal/datasets/{node}/{dataset}`).

Each member node publishes its datasets' HealthDCAT-AP records at its public `/catalogue`
(:mod:`genofed.catalogue.router`); the portal asks every member at once (Turtle), each within
the hub's per-member timeout, reads the records with rdflib and lists them with facets (country,
access tier, consent in plain words from DUO, population, data type). A member that does not
answer is listed as unavailable, never fatal.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, ODRL2, RDF, RDFS, SKOS
from rdflib.term import Node
from starlette.concurrency import run_in_threadpool

from genofed.catalogue.records import (
    ACCESS_RIGHTS,
    CV,
    DCAT_VERSION,
    HEALTHDCATAP,
    TYPE_SEQUENCE_VARIATIONS,
    TYPE_SYNTHETIC,
    VCARD,
)
from genofed.federation.network import Member
from genofed.portal.discover_terms import TIER_WORDS, country_name, duo_plain, status_words
from genofed.portal.web import PageRefused, current_session, site_of

router = APIRouter()

_TIER_OF = {str(iri): tier.value for tier, iri in ACCESS_RIGHTS.items()}
_TYPE_WORDS = {str(TYPE_SEQUENCE_VARIATIONS): "Genomic variants",
               str(TYPE_SYNTHETIC): "Synthetic data"}
_POPULATION = re.compile(r"of the (?P<population>.+?) population")
#: The facets, in page order: (GET parameter, heading).
FACETS = (("country", "Country"), ("tier", "Access tier"), ("consent", "Consent"),
          ("population", "Population"), ("type", "Data type"))
_DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Consent:
    id: str
    label: str
    modifiers: tuple[tuple[str, str], ...] = ()


@dataclass
class DatasetRecord:
    """One dataset's HealthDCAT-AP record, as the pages show it."""

    node: str
    country: str
    id: str
    title: str
    description: str = ""
    tier: str = ""
    individuals: int | None = None
    variants: int | None = None
    population: str | None = None
    coverage: str | None = None
    min_age: int | None = None
    max_age: int | None = None
    keywords: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    consent: list[Consent] = field(default_factory=list)
    publisher: str | None = None
    committee: str | None = None
    contact_name: str | None = None
    contact_url: str | None = None
    frequencies_published: bool = False
    provenance: str | None = None
    version: str | None = None
    issued: str | None = None
    modified: str | None = None
    beacon_url: str | None = None

    @property
    def key(self) -> str:
        """How the basket names it: NODE/DATASET."""
        return f"{self.node}/{self.id}"

    @property
    def country_name(self) -> str:
        return country_name(self.country)

    @property
    def tier_words(self) -> str:
        return TIER_WORDS.get(self.tier, self.tier or "not stated")

    def facet_values(self, facet: str) -> list[str]:
        if facet == "country":
            return [self.country]
        if facet == "tier":
            return [self.tier] if self.tier else []
        if facet == "consent":
            return [c.id for c in self.consent]
        if facet == "population":
            return [self.population] if self.population else []
        return list(self.types)


@dataclass
class NodeCatalogue:
    member: Member
    status: str
    state: str
    message: str = ""
    datasets: list[DatasetRecord] = field(default_factory=list)

    @property
    def country_name(self) -> str:
        return country_name(self.member.country)


# -- reading records ------------------------------------------------------------------------------
def _text(graph: Graph, subject: Node, predicate: URIRef) -> str | None:
    value = graph.value(subject, predicate)
    return str(value) if value is not None else None


def _number(graph: Graph, subject: Node, predicate: URIRef) -> int | None:
    value = graph.value(subject, predicate)
    if isinstance(value, Literal):
        try:
            return int(value.toPython())
        except (TypeError, ValueError):
            return None
    return None


def _name(graph: Graph, agent: Node | None) -> str | None:
    if agent is None:
        return None
    return _text(graph, agent, FOAF.name)


def _curie(graph: Graph, term: Node) -> tuple[str, str]:
    notation = _text(graph, term, SKOS.notation) or str(term).rsplit("/", 1)[-1].replace("_", ":")
    return notation, duo_plain(notation, _text(graph, term, RDFS.label))


def _consent(graph: Graph, dataset: Node) -> list[Consent]:
    """The ODRL offer's DUO permissions (constraint right operands) and their modifiers
    (duties), as :mod:`genofed.catalogue.records` writes them."""
    out: list[Consent] = []
    policy = graph.value(dataset, ODRL2.hasPolicy)
    if policy is None:
        return out
    for permission in graph.objects(policy, ODRL2.permission):
        for constraint in graph.objects(permission, ODRL2.constraint):
            operand = graph.value(constraint, ODRL2.rightOperand)
            if operand is None:
                continue
            curie, label = _curie(graph, operand)
            modifiers = sorted(_curie(graph, action)
                               for duty in graph.objects(permission, ODRL2.duty)
                               if (action := graph.value(duty, ODRL2.action)) is not None)
            out.append(Consent(curie, label, tuple(modifiers)))
    return sorted(out, key=lambda c: c.id)


def read_records(turtle: str, member: Member) -> list[DatasetRecord]:
    """The datasets of a node's catalogue (or of one dataset's record), in Turtle."""
    graph = Graph()
    graph.parse(data=turtle, format="turtle")
    records = []
    for subject in graph.subjects(RDF.type, DCAT.Dataset):
        identifier = _text(graph, subject, DCTERMS.identifier)
        if not identifier:
            continue
        coverage = _text(graph, subject, HEALTHDCATAP.populationCoverage)
        found = _POPULATION.search(coverage or "")
        contact = graph.value(subject, DCAT.contactPoint)
        provenance = graph.value(subject, DCTERMS.provenance)
        rights = graph.value(subject, DCTERMS.accessRights)
        distributions = [str(d) for d in graph.objects(subject, DCAT.distribution)]
        beacon = next((graph.value(URIRef(d), DCAT.accessURL) for d in distributions
                       if d.endswith("#beacon")), None)
        records.append(DatasetRecord(
            node=member.id, country=member.country, id=identifier,
            title=_text(graph, subject, DCTERMS.title) or identifier,
            description=_text(graph, subject, DCTERMS.description) or "",
            tier=_TIER_OF.get(str(rights), "") if rights is not None else "",
            individuals=_number(graph, subject, HEALTHDCATAP.numberOfUniqueIndividuals),
            variants=_number(graph, subject, HEALTHDCATAP.numberOfRecords),
            population=found["population"] if found else None, coverage=coverage,
            min_age=_number(graph, subject, HEALTHDCATAP.minTypicalAge),
            max_age=_number(graph, subject, HEALTHDCATAP.maxTypicalAge),
            keywords=sorted(str(k) for k in graph.objects(subject, DCAT.keyword)),
            types=sorted(_TYPE_WORDS.get(str(t), str(t).rsplit("/", 1)[-1])
                         for t in graph.objects(subject, DCTERMS.type)),
            consent=_consent(graph, subject),
            publisher=_name(graph, graph.value(subject, DCTERMS.publisher)),
            committee=_name(graph, graph.value(subject, HEALTHDCATAP.hdab)),
            contact_name=_text(graph, contact, VCARD.fn) if contact is not None else None,
            contact_url=_text(graph, contact, VCARD.hasURL) if contact is not None else None,
            frequencies_published=any(d.endswith("#allele-frequencies") for d in distributions),
            provenance=_text(graph, provenance, RDFS.label) if provenance is not None else None,
            version=_text(graph, subject, DCAT_VERSION),
            issued=_text(graph, subject, DCTERMS.issued),
            modified=_text(graph, subject, DCTERMS.modified),
            beacon_url=str(beacon) if beacon is not None else None))
        record = records[-1]
        if record.contact_url is None:
            page = graph.value(graph.value(subject, DCTERMS.publisher), CV.contactPoint)
            record.contact_url = _text(graph, page, CV.contactPage) if page else None
        # A link the page shows must be a web page (a node's record is not ours to trust).
        if record.contact_url and not record.contact_url.startswith(("https://", "http://")):
            record.contact_url = None
        if record.beacon_url and not record.beacon_url.startswith(("https://", "http://")):
            record.beacon_url = None
    return sorted(records, key=lambda r: r.id)


# -- asking the members ---------------------------------------------------------------------------
def _members(request: Request) -> tuple[list[Member], float]:
    """The network's members (from the hub's network file) and the per-member timeout."""
    hub = getattr(request.app.state, "hub", None)
    if hub is None:
        raise PageRefused(404, "No network here", "This portal serves no network catalogue.")
    return list(hub.current().members), float(getattr(hub.fan_out, "timeout",
                                                       _DEFAULT_TIMEOUT))


async def _fetch(client: httpx.AsyncClient, member: Member, path: str,
                 timeout: float) -> NodeCatalogue:
    url = member.base_url.rstrip("/") + path
    try:
        response = await asyncio.wait_for(
            client.get(url, params={"format": "ttl"}, headers={"accept": "text/turtle"}),
            timeout)
    except TimeoutError:
        word, state = status_words("timeout")
        return NodeCatalogue(member, word, state, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        word, state = status_words("error")
        return NodeCatalogue(member, word, state,
                             f"unreachable ({type(exc).__name__})")
    if response.status_code == 404:
        return NodeCatalogue(member, "not found", "error", "no such dataset on this node")
    if response.status_code != 200:
        word, state = status_words("unauthorised" if response.status_code in (401, 403)
                                   else "error")
        return NodeCatalogue(member, word, state, f"HTTP {response.status_code}")
    try:
        # Parsing RDF is CPU work: off the event loop, which serves every other page meanwhile.
        records = await run_in_threadpool(read_records, response.text, member)
    except Exception as exc:  # a node's malformed catalogue costs its own listing only
        word, state = status_words("invalid_answer")
        return NodeCatalogue(member, word, state, f"unreadable catalogue ({type(exc).__name__})")
    word, state = status_words("ok")
    return NodeCatalogue(member, word, state, datasets=records)


async def fetch_catalogues(request: Request) -> list[NodeCatalogue]:
    """Every member's catalogue, asked at once (public: no token is sent)."""
    members, timeout = _members(request)
    async with site_of(request).remote(None) as client:
        return list(await asyncio.gather(*(_fetch(client, m, "/catalogue", timeout)
                                           for m in members)))


# -- facets ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FacetValue:
    value: str
    label: str
    count: int
    checked: bool


@dataclass(frozen=True)
class Facet:
    name: str
    heading: str
    values: tuple[FacetValue, ...]


def _label(facet: str, value: str, records: Iterable[DatasetRecord]) -> str:
    if facet == "country":
        return f"{country_name(value)} ({value})"
    if facet == "tier":
        return value.capitalize()
    if facet == "consent":
        return next((c.label for r in records for c in r.consent if c.id == value), value)
    return value


def _matches(record: DatasetRecord, chosen: Mapping[str, Sequence[str]], text: str,
             skip: str | None = None) -> bool:
    for facet, values in chosen.items():
        if facet != skip and values and not set(values) & set(record.facet_values(facet)):
            return False
    if text:
        haystack = " ".join([record.id, record.title, record.description, *record.keywords])
        if text.lower() not in haystack.lower():
            return False
    return True


def facets(records: list[DatasetRecord], chosen: Mapping[str, Sequence[str]],
           text: str) -> tuple[list[Facet], list[DatasetRecord]]:
    """Each facet's values with the number of datasets each would show given the other
    facets' choices (values within a facet are alternatives; facets narrow each other), and
    the datasets matching every choice."""
    out = []
    for name, heading in FACETS:
        counts: dict[str, int] = {}
        for record in records:
            for value in record.facet_values(name):
                counts.setdefault(value, 0)
            if _matches(record, chosen, text, skip=name):
                for value in set(record.facet_values(name)):
                    counts[value] += 1
        values = tuple(FacetValue(v, _label(name, v, records), counts[v],
                                  v in chosen.get(name, ()))
                       for v in sorted(counts, key=lambda v: _label(name, v, records).lower()))
        out.append(Facet(name, heading, values))
    return out, [r for r in records if _matches(r, chosen, text)]


@router.get("/catalogue")
async def catalogue_page(request: Request) -> HTMLResponse:
    site = site_of(request)
    session = current_session(request)
    chosen = {name: [v for v in request.query_params.getlist(name) if v]
              for name, _heading in FACETS}
    text = request.query_params.get("text", "").strip()
    nodes = await fetch_catalogues(request)
    records = [r for n in nodes for r in n.datasets]
    facet_list, shown = facets(records, chosen, text)
    return site.render(request, "discover/catalogue.html", title="Catalogue", nodes=nodes,
                       facets=facet_list, shown=shown, total=len(records), text=text,
                       filtered=any(chosen.values()) or bool(text),
                       basket=set(session.basket) if session else set())


@router.get("/datasets/{node_id}/{dataset_id}")
async def dataset_page(request: Request, node_id: str, dataset_id: str) -> HTMLResponse:
    site = site_of(request)
    session = current_session(request)
    members, timeout = _members(request)
    member = next((m for m in members if m.id == node_id), None)
    if member is None:
        raise PageRefused(404, "No such node",
                          f"The network has no node {node_id!r}. See the catalogue for the "
                          "datasets of every node.")
    async with site.remote(None) as client:
        found = await _fetch(client, member, f"/catalogue/datasets/{quote(dataset_id, safe='')}",
                             timeout)
    if found.status == "not found" or (found.status == "answered" and not found.datasets):
        raise PageRefused(404, "No such dataset",
                          f"Node {node_id} has no dataset {dataset_id!r}. See the catalogue for "
                          "its datasets.")
    if found.status != "answered":
        raise PageRefused(503, "Node unavailable",
                          f"Node {node_id} ({country_name(member.country)}) did not give this "
                          f"dataset's record: {found.status} ({found.message}). Try again "
                          "later.")
    record = found.datasets[0]
    return site.render(request, "discover/dataset.html", title=record.title, record=record,
                       in_basket=session is not None and record.key in session.basket)

