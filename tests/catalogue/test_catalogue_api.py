"""The /catalogue API: DCAT-AP / HealthDCAT-AP records of every dataset, the same graph in
JSON-LD and Turtle, ids shared with the Beacon, DUO terms, access rights per tier, the properties
HealthDCAT-AP makes mandatory, content negotiation and errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import CSVW, DCTERMS, FOAF, ODRL2, RDF

from genofed.config.node import init_node, load_config, save_config
from genofed.ingest import ingest_dataset
from genofed.server.app import create_app
from genofed.store.metadata import (
    AccessTier,
    DataUseConditions,
    DuoDataUse,
    OntologyTerm,
    load_metadata,
)
from tests.support import Cohort

# Plain namespaces where rdflib's strict ones would warn when pytest inspects this module.
DCAT = Namespace("http://www.w3.org/ns/dcat#")
XSD = Namespace("http://www.w3.org/2001/XMLSchema#")
DCATAP = Namespace("http://data.europa.eu/r5r/")
HEALTH = Namespace("http://healthdataportal.eu/ns/health#")
CV = Namespace("http://data.europa.eu/m8g/")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
EU = "http://publications.europa.eu/resource/authority/"
OBO = "http://purl.obolibrary.org/obo/"

#: id -> (tier, DUO permission, DUO modifiers)
TIERED: dict[str, tuple[AccessTier, str, list[str]]] = {
    "cat-public": (AccessTier.PUBLIC, "DUO:0000042", []),
    "cat-registered": (AccessTier.REGISTERED, "DUO:0000006", ["DUO:0000046"]),
    "cat-controlled": (AccessTier.CONTROLLED, "DUO:0000007", ["DUO:0000019", "DUO:0000021"]),
}
#: Ingested with no dataset.json and no Phenopackets: genofed's defaults (controlled, no DUO).
BARE = "cat-bare"
ALL_IDS = sorted([*TIERED, BARE])


@pytest.fixture(scope="module")
def catalogue_node(tmp_path_factory: pytest.TempPathFactory, cohort: Cohort) -> Path:
    """A node holding the session cohort once per tier, with different DUO conditions, and once
    bare (no metadata, no Phenopackets)."""
    root = tmp_path_factory.mktemp("catalogue")
    node = root / "node"
    init_node(node, node_id="cat-node", country="FI")
    template = load_metadata(cohort.metadata)
    for dataset_id, (tier, permission, modifiers) in TIERED.items():
        use = DuoDataUse(id=permission, modifiers=[OntologyTerm(id=m) for m in modifiers])
        metadata = template.model_copy(update={
            "id": dataset_id, "access_tier": tier,
            "data_use_conditions": DataUseConditions(duo_data_use=[use])})
        path = root / f"{dataset_id}.json"
        path.write_text(metadata.to_json(), encoding="utf-8")
        ingest_dataset(node, dataset_id, cohort.vcf, phenopackets=cohort.phenopackets,
                       metadata=path, populations=cohort.populations)
    ingest_dataset(node, BARE, cohort.vcf)
    return node


@pytest.fixture(scope="module")
def client(catalogue_node: Path) -> Iterator[TestClient]:
    with TestClient(create_app(catalogue_node), raise_server_exceptions=False) as test_client:
        yield test_client


def fetch(client: TestClient, path: str, accept: str) -> Graph:
    response = client.get(path, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    rdf_format = "json-ld" if "json" in accept else "turtle"
    return Graph().parse(data=response.text, format=rdf_format)


def datasets_by_id(graph: Graph) -> dict[str, URIRef]:
    found = {}
    for node in graph.subjects(RDF.type, DCAT.Dataset):
        identifiers = [str(i) for i in graph.objects(node, DCTERMS.identifier)]
        assert len(identifiers) == 1, f"{node}: identifiers {identifiers}"
        assert isinstance(node, URIRef)
        found[identifiers[0]] = node
    return found


@pytest.fixture(scope="module")
def catalogue(client: TestClient) -> Graph:
    return fetch(client, "/catalogue", "text/turtle")


# -- one graph, two syntaxes --------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/catalogue", "/catalogue/datasets/cat-controlled",
                                  f"/catalogue/datasets/{BARE}"])
def test_turtle_and_jsonld_are_the_same_graph(client: TestClient, path: str) -> None:
    turtle = fetch(client, path, "text/turtle")
    jsonld = fetch(client, path, "application/ld+json")
    assert len(turtle) > 50
    assert isomorphic(turtle, jsonld)


def test_a_dataset_record_is_the_catalogue_entry(client: TestClient, catalogue: Graph) -> None:
    record = fetch(client, "/catalogue/datasets/cat-registered", "text/turtle")
    (node,) = datasets_by_id(record).values()
    assert node == datasets_by_id(catalogue)["cat-registered"]
    # Every triple about the dataset itself appears in the catalogue too (blank nodes aside).
    for _, predicate, value in record.triples((node, None, None)):
        if not isinstance(value, (URIRef, Literal)):
            continue
        assert (node, predicate, value) in catalogue, (predicate, value)


# -- the ids are the Beacon's -------------------------------------------------------------------
def test_every_beacon_dataset_is_catalogued_under_its_id(client: TestClient,
                                                         catalogue: Graph) -> None:
    beacon = client.get("/beacon/datasets").json()
    beacon_ids = sorted(c["id"] for c in beacon["response"]["collections"])
    assert beacon_ids == ALL_IDS
    catalogued = datasets_by_id(catalogue)
    assert sorted(catalogued) == beacon_ids
    (catalog,) = catalogue.subjects(RDF.type, DCAT.Catalog)
    assert set(catalogue.objects(catalog, DCAT.dataset)) == set(catalogued.values())


def test_beacon_distribution_resolves_to_the_same_dataset(client: TestClient,
                                                          catalogue: Graph) -> None:
    for dataset_id, node in datasets_by_id(catalogue).items():
        urls = {str(catalogue.value(d, DCAT.accessURL))
                for d in catalogue.objects(node, DCAT.distribution)}
        assert urls == {f"http://testserver/beacon/datasets/{dataset_id}",
                        f"http://testserver/htsget/variants/{dataset_id}"}
        answer = client.get(f"/beacon/datasets/{dataset_id}").json()
        assert [c["id"] for c in answer["response"]["collections"]] == [dataset_id]


# -- governance -----------------------------------------------------------------------------------
def test_access_rights_follow_the_tier(catalogue: Graph) -> None:
    expected = {"public": "PUBLIC", "registered": "RESTRICTED", "controlled": "NON_PUBLIC"}
    tiers = {dataset_id: tier.value for dataset_id, (tier, _, _) in TIERED.items()}
    tiers[BARE] = "controlled"  # the default for a dataset ingested without metadata
    for dataset_id, node in datasets_by_id(catalogue).items():
        assert list(catalogue.objects(node, DCTERMS.accessRights)) == [
            URIRef(f"{EU}access-right/{expected[tiers[dataset_id]]}")], dataset_id


def test_duo_conditions_link_to_duo_term_iris(catalogue: Graph) -> None:
    nodes = datasets_by_id(catalogue)
    for dataset_id, (_, permission, modifiers) in TIERED.items():
        node = nodes[dataset_id]
        (policy,) = catalogue.objects(node, ODRL2.hasPolicy)
        assert (policy, RDF.type, ODRL2.Offer) in catalogue
        assert catalogue.value(policy, ODRL2.target) == node
        for distribution in catalogue.objects(node, DCAT.distribution):
            assert catalogue.value(distribution, ODRL2.hasPolicy) == policy
        (rule,) = catalogue.objects(policy, ODRL2.permission)
        assert catalogue.value(rule, ODRL2.action) == ODRL2.use
        (constraint,) = catalogue.objects(rule, ODRL2.constraint)
        assert catalogue.value(constraint, ODRL2.leftOperand) == ODRL2.purpose
        assert catalogue.value(constraint, ODRL2.operator) == ODRL2.isA
        duo_iri = URIRef(OBO + permission.replace(":", "_"))
        assert catalogue.value(constraint, ODRL2.rightOperand) == duo_iri
        duties = {catalogue.value(d, ODRL2.action) for d in catalogue.objects(rule, ODRL2.duty)}
        assert duties == {URIRef(OBO + m.replace(":", "_")) for m in modifiers}
    # No stated data use: no offer, rather than an empty one.
    assert list(catalogue.objects(nodes[BARE], ODRL2.hasPolicy)) == []


def test_catalogue_is_published_by_the_node_for_its_country(catalogue: Graph) -> None:
    (catalog,) = catalogue.subjects(RDF.type, DCAT.Catalog)
    publisher = catalogue.value(catalog, DCTERMS.publisher)
    assert "cat-node" in str(catalogue.value(publisher, FOAF.name))
    finland = URIRef(f"{EU}country/FIN")
    assert catalogue.value(catalog, DCTERMS.spatial) == finland
    for node in datasets_by_id(catalogue).values():
        assert catalogue.value(node, DCTERMS.publisher) == publisher
        assert catalogue.value(node, DCTERMS.spatial) == finland


# -- HealthDCAT-AP mandatory properties ----------------------------------------------------------
#: HealthDCAT-AP Release 8 (cardinality rules and SHACL shapes): Dataset properties mandatory at
#: every access level, and those added for NON_PUBLIC datasets.
MANDATORY = [DCTERMS.accessRights, DCATAP.applicableLegislation, DCTERMS.description,
             DCAT.distribution, HEALTH.healthCategory, HEALTH.hasStructuredData,
             DCTERMS.identifier, DCAT.theme, DCTERMS.title, HEALTH.hdab]
MANDATORY_NON_PUBLIC = [DCAT.contactPoint, DCAT.keyword, DCTERMS.type, DCTERMS.provenance]
#: Properties with at most one value, and the datatype their value must have.
AT_MOST_ONE = {HEALTH.numberOfRecords: XSD.nonNegativeInteger,
               HEALTH.numberOfUniqueIndividuals: XSD.nonNegativeInteger,
               HEALTH.minTypicalAge: XSD.nonNegativeInteger,
               HEALTH.maxTypicalAge: XSD.nonNegativeInteger,
               HEALTH.hasStructuredData: XSD.boolean}


def test_healthdcat_mandatory_properties_are_present(catalogue: Graph) -> None:
    g = catalogue
    for dataset_id, node in datasets_by_id(g).items():
        non_public = g.value(node, DCTERMS.accessRights) == URIRef(f"{EU}access-right/NON_PUBLIC")
        required = MANDATORY + (MANDATORY_NON_PUBLIC if non_public else [])
        missing = [p for p in required if g.value(node, p) is None]
        assert not missing, f"{dataset_id} lacks {missing}"
        assert g.value(node, DCAT.theme) == URIRef(f"{EU}data-theme/HEAL")
        for prop, datatype in AT_MOST_ONE.items():
            values = list(g.objects(node, prop))
            assert len(values) <= 1, (dataset_id, prop)
            assert all(isinstance(v, Literal) and v.datatype == datatype for v in values)
        if _python(g.value(node, HEALTH.hasStructuredData)) is True:
            group = g.value(node, HEALTH.hasVariables)
            assert (group, RDF.type, CSVW.TableGroup) in g
            for table in g.objects(group, CSVW.table):
                for column in g.objects(table, CSVW.column):
                    for prop in (CSVW.name, CSVW.title, DCTERMS.description, CSVW.datatype):
                        assert g.value(column, prop) is not None, (column, prop)
        # Exactly one access body, an agent with a name and exactly one contact point.
        (hdab,) = g.objects(node, HEALTH.hdab)
        assert g.value(hdab, FOAF.name) is not None
        assert len(list(g.objects(hdab, CV.contactPoint))) == 1
        for distribution in g.objects(node, DCAT.distribution):
            assert g.value(distribution, DCAT.accessURL) is not None
            assert g.value(distribution, DCATAP.applicableLegislation) is not None
            service = g.value(distribution, DCAT.accessService)
            assert g.value(service, DCAT.endpointURL) is not None
            assert g.value(service, DCTERMS.title) is not None
        for contact in g.objects(node, DCAT.contactPoint):
            assert (contact, RDF.type, VCARD.Kind) in g
            assert g.value(contact, VCARD.hasURL) or g.value(contact, VCARD.hasEmail)
    (catalog,) = g.subjects(RDF.type, DCAT.Catalog)
    for prop in (DCTERMS.title, DCTERMS.description, DCTERMS.publisher,
                 DCATAP.applicableLegislation):
        assert g.value(catalog, prop) is not None, prop


def test_counts_come_from_the_store(catalogue: Graph, cohort_size: int) -> None:
    nodes = datasets_by_id(catalogue)
    for node in nodes.values():
        assert _python(catalogue.value(node, HEALTH.numberOfUniqueIndividuals)) == cohort_size
    # Ages are published only to the decade, and not at all without Phenopackets.
    low = _python(catalogue.value(nodes["cat-public"], HEALTH.minTypicalAge))
    high = _python(catalogue.value(nodes["cat-public"], HEALTH.maxTypicalAge))
    assert low % 10 == 0 and high % 10 == 0 and low < high
    assert catalogue.value(nodes[BARE], HEALTH.minTypicalAge) is None


@pytest.fixture(scope="module")
def cohort_size(client: TestClient) -> int:
    answer = client.get("/beacon/datasets/cat-public").json()
    return int(answer["response"]["collections"][0]["info"]["nIndividuals"])


# -- content negotiation and errors -----------------------------------------------------------
@pytest.mark.parametrize(("accept", "expected"), [
    (None, "application/ld+json"),
    ("application/ld+json", "application/ld+json"),
    ("application/json", "application/ld+json"),
    ("text/turtle", "text/turtle"),
    ("text/*", "text/turtle"),
    ("*/*", "application/ld+json"),
    ("text/turtle;q=0.5, application/ld+json;q=0.9", "application/ld+json"),
    ("application/ld+json;q=0.2, text/turtle", "text/turtle"),
    ("application/ld+json;q=0, application/json;q=0, */*", "text/turtle"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/ld+json"),
])
def test_content_negotiation(client: TestClient, accept: str | None, expected: str) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    response = client.get("/catalogue/datasets/cat-public", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == expected
    assert "accept" in response.headers["vary"].lower()


@pytest.mark.parametrize(("query", "accept", "expected"), [
    ("ttl", "application/ld+json", "text/turtle"),
    ("jsonld", "text/turtle", "application/ld+json"),
    ("turtle", "text/html", "text/turtle"),
])
def test_format_parameter_overrides_accept(client: TestClient, query: str, accept: str,
                                           expected: str) -> None:
    response = client.get(f"/catalogue?format={query}", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == expected


@pytest.mark.parametrize(("path", "accept", "status", "says"), [
    ("/catalogue/datasets/no-such-dataset", "application/ld+json", 404, "cat-public"),
    ("/catalogue/datasets/no-such-dataset", "text/turtle", 404, "no-such-dataset"),
    ("/catalogue", "text/html", 406, "text/turtle"),
    ("/catalogue", "application/ld+json;q=0, text/turtle;q=0", 406, "format=ttl"),
    ("/catalogue/datasets/cat-public", "application/rdf+xml", 406, "application/ld+json"),
    ("/catalogue?format=rdfxml", "text/turtle", 400, "ttl"),
])
def test_errors_are_json(client: TestClient, path: str, accept: str, status: int,
                         says: str) -> None:
    response = client.get(path, headers={"Accept": accept})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["errorCode"] == status
    assert says in error["errorMessage"]


# -- IRIs ----------------------------------------------------------------------------------------
def test_configured_public_url_names_the_records(node: Path) -> None:
    config = load_config(node)
    config.access.public_url = "https://genomes.example.fi/node/"
    save_config(node, config)
    with TestClient(create_app(node)) as client:
        graph = fetch(client, "/catalogue", "application/ld+json")
    (catalog,) = graph.subjects(RDF.type, DCAT.Catalog)
    assert catalog == URIRef("https://genomes.example.fi/node/catalogue")
    assert list(graph.objects(catalog, DCAT.dataset)) == []  # a new node catalogues nothing yet


def _python(value: Any) -> Any:
    """An RDF literal's Python value (the graph gave one, or the test fails here)."""
    assert isinstance(value, Literal), value
    return value.toPython()
