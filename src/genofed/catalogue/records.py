"""DCAT-AP 3 / HealthDCAT-AP records of a node's datasets, as an rdflib graph.

One `dcat:Catalog` per node (published by the node, covering its country) holds one
`dcat:Dataset` per published dataset. A dataset's `dct:identifier` is its genofed dataset id, the
same id the Beacon returns in resultSets and visas grant. Each dataset carries what HealthDCAT-AP
(Release 8 shapes) makes mandatory at every access level -- access rights, applicable legislation,
identifier, title, description, theme, health category, health data access body, structured-data
flag, at least one distribution -- plus what it requires of non-public datasets (contact point,
keyword, type, provenance), so every tier validates. Its DUO data-use conditions are an ODRL offer
whose constraints and duties name the DUO term IRIs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime

import pyarrow.compute as pc
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import CSVW, DCAT, DCTERMS, FOAF, ODRL2, RDF, RDFS, SKOS, XSD

from genofed import __version__
from genofed.config.node import NodeConfig
from genofed.store.dataset import Dataset
from genofed.store.metadata import AccessTier, AlleleFrequencyRelease, DuoDataUse
from genofed.store.node import NodeStore

DCATAP = Namespace("http://data.europa.eu/r5r/")
#: The namespace HealthDCAT-AP releases use (its own says it is provisional).
HEALTHDCATAP = Namespace("http://healthdataportal.eu/ns/health#")
CV = Namespace("http://data.europa.eu/m8g/")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
OBO = Namespace("http://purl.obolibrary.org/obo/")
DCAT_VERSION = URIRef("http://www.w3.org/ns/dcat#version")  # DCAT 3; rdflib's DCAT is DCAT 2

_EU = "http://publications.europa.eu/resource/authority/"
ACCESS_RIGHTS: dict[AccessTier, URIRef] = {
    AccessTier.PUBLIC: URIRef(_EU + "access-right/PUBLIC"),
    # Counts need a registration anyone may obtain; records are not open.
    AccessTier.REGISTERED: URIRef(_EU + "access-right/RESTRICTED"),
    AccessTier.CONTROLLED: URIRef(_EU + "access-right/NON_PUBLIC"),
}
THEME_HEALTH = URIRef(_EU + "data-theme/HEAL")
FORMAT_JSON = URIRef(_EU + "file-type/JSON")
TYPE_SYNTHETIC = URIRef(_EU + "dataset-type/SYNTHETIC_DATA")
#: EDAM "Sequence variations": the EU dataset-type list has no term for genomic data.
TYPE_SEQUENCE_VARIATIONS = URIRef("http://edamontology.org/data_3498")
#: EHDS Art. 51 category "Human genetic, epigenomic and genomic data".
HEALTH_CATEGORY_GENOMIC = URIRef(
    "https://hdeu-dcat.data.health.europa.eu/resource/authority/healthcategories/HGPD")
#: Regulation (EU) 2025/327, the European Health Data Space.
EHDS_REGULATION = URIRef("http://data.europa.eu/eli/reg/2025/327/oj")
BEACON_SPEC = URIRef("https://github.com/ga4gh-beacon/beacon-v2")
HTSGET_SPEC = URIRef("http://samtools.github.io/hts-specs/htsget.html")

#: ISO 3166-1 alpha-2 -> code of the EU country authority table (alpha-3); the countries of
#: Europe, plus the EU's own 'EL' and 'UK'.
_COUNTRY_CODES = {
    "AD": "AND", "AL": "ALB", "AT": "AUT", "BA": "BIH", "BE": "BEL", "BG": "BGR", "BY": "BLR",
    "CH": "CHE", "CY": "CYP", "CZ": "CZE", "DE": "DEU", "DK": "DNK", "EE": "EST", "EL": "GRC",
    "ES": "ESP", "FI": "FIN", "FR": "FRA", "GB": "GBR", "GR": "GRC", "HR": "HRV", "HU": "HUN",
    "IE": "IRL", "IS": "ISL", "IT": "ITA", "LI": "LIE", "LT": "LTU", "LU": "LUX", "LV": "LVA",
    "MC": "MCO", "MD": "MDA", "ME": "MNE", "MK": "MKD", "MT": "MLT", "NL": "NLD", "NO": "NOR",
    "PL": "POL", "PT": "PRT", "RO": "ROU", "RS": "SRB", "SE": "SWE", "SI": "SVN", "SK": "SVK",
    "SM": "SMR", "TR": "TUR", "UA": "UKR", "UK": "GBR", "VA": "VAT",
}

#: Prefixes for Turtle and the JSON-LD @context (so both read like the specifications).
PREFIXES: dict[str, str] = {
    "dcat": str(DCAT), "dct": str(DCTERMS), "dcatap": str(DCATAP),
    "healthdcatap": str(HEALTHDCATAP), "foaf": str(FOAF), "vcard": str(VCARD), "cv": str(CV),
    "odrl": str(ODRL2), "skos": str(SKOS), "csvw": str(CSVW), "rdfs": str(RDFS),
    "xsd": str(XSD), "obo": str(OBO),
}

#: Variables a harvester can expect (healthdcatap:hasVariables): (table, description,
#: [(column, title, description, CSVW datatype)]).
_VARIABLES: tuple[tuple[str, str, list[tuple[str, str, str, str]]], ...] = (
    ("variant sites", "One row per biallelic variant site, with allele counts.", [
        ("contig", "Chromosome", "Reference sequence name (e.g. 20, X, MT)", "string"),
        ("pos", "Position", "1-based start position on the assembly", "integer"),
        ("ref", "Reference allele", "Reference bases", "string"),
        ("alt", "Alternate allele", "Alternate bases or symbolic allele", "string"),
        ("ac", "Allele count", "Copies of the alternate allele among called genotypes",
         "integer"),
        ("an", "Allele number", "Called alleles at the site", "integer"),
    ]),
    ("individuals", "One row per sequenced individual, from GA4GH Phenopackets.", [
        ("sex", "Sex", "female, male, other or unknown", "string"),
        ("age_years", "Age", "Age in years at the time of the Phenopacket", "double"),
        ("phenotypes", "Phenotypic features", "HPO term identifiers observed", "string"),
        ("diseases", "Diseases", "Disease term identifiers diagnosed", "string"),
    ]),
)


def country_iri(country: str) -> URIRef | None:
    """The EU country authority IRI for an ISO 3166-1 alpha-2 code, None if not in Europe."""
    code = _COUNTRY_CODES.get(country.upper())
    return URIRef(f"{_EU}country/{code}") if code else None


def temporal_literal(value: str) -> Literal | None:
    """An ISO 8601 date or date-time as the typed literal DCAT-AP asks for; None if it is
    neither (metadata dates are free text in dataset.json)."""
    for parse, datatype in ((datetime.fromisoformat, XSD.dateTime),
                            (date.fromisoformat, XSD.date)):
        try:
            parse(value)
        except ValueError:
            continue
        if datatype == XSD.dateTime and "T" not in value:
            continue  # fromisoformat reads a bare date as midnight
        return Literal(value, datatype=datatype)
    return None


def ontology_iri(curie: str) -> URIRef:
    """'DUO:0000042' -> http://purl.obolibrary.org/obo/DUO_0000042 (the OBO PURL form)."""
    prefix, _, local = curie.partition(":")
    return OBO[f"{prefix}_{local}"]


class CatalogueRecords:
    """Writes records for one node into a graph; IRIs hang off `base_url` (the node's public
    URL), so the catalogue, its datasets and the service endpoints resolve on this node."""

    def __init__(self, config: NodeConfig, base_url: str) -> None:
        self.config = config
        self.base = base_url.rstrip("/")
        self.graph = Graph(bind_namespaces="core")
        for prefix, namespace in PREFIXES.items():
            self.graph.bind(prefix, namespace)
        self.catalogue = URIRef(f"{self.base}/catalogue")
        self.publisher = URIRef(f"{self.catalogue}#publisher")
        self.hdab = URIRef(f"{self.catalogue}#data-access-committee")
        self.beacon_service = URIRef(f"{self.catalogue}#beacon")
        self.htsget_service = URIRef(f"{self.catalogue}#htsget")
        self._agents_added = False

    def dataset_iri(self, dataset_id: str) -> URIRef:
        return URIRef(f"{self.base}/catalogue/datasets/{dataset_id}")

    # -- the catalogue -----------------------------------------------------------------------
    def add_catalogue(self, datasets: Iterable[Dataset]) -> URIRef:
        g, node = self.graph, self.catalogue
        config = self.config
        g.add((node, RDF.type, DCAT.Catalog))
        g.add((node, DCTERMS.title, Literal(f"genofed node {config.node_id} catalogue", lang="en")))
        g.add((node, DCTERMS.description, Literal(
            f"Genomic datasets held by genofed node {config.node_id} ({config.country}); data "
            "stays on the node and is reached through its Beacon and htsget services.",
            lang="en")))
        g.add((node, DCTERMS.publisher, self.publisher))
        g.add((node, FOAF.homepage, URIRef(self.base)))
        g.add((node, DCATAP.applicableLegislation, EHDS_REGULATION))
        created = temporal_literal(config.created)
        if created is not None:
            g.add((node, DCTERMS.issued, created))
        self._add_spatial(node)
        self._add_agents()
        for service in (self.beacon_service, self.htsget_service):
            g.add((node, DCAT.service, service))
        for dataset in datasets:
            g.add((node, DCAT.dataset, self.add_dataset(dataset)))
        return node

    # -- one dataset -------------------------------------------------------------------------
    def add_dataset(self, dataset: Dataset) -> URIRef:
        g, meta, manifest = self.graph, dataset.metadata, dataset.manifest
        node = self.dataset_iri(dataset.id)
        self._add_agents()
        g.add((node, RDF.type, DCAT.Dataset))
        g.add((node, DCTERMS.identifier, Literal(dataset.id)))
        g.add((node, DCTERMS.title, Literal(meta.name)))
        g.add((node, DCTERMS.description, Literal(meta.description or meta.name)))
        g.add((node, DCAT_VERSION, Literal(meta.version)))
        # The dataset's own dates where the metadata states them; otherwise the published
        # version's (the store keeps no earlier versions to date the first release by).
        for prop, value in ((DCTERMS.issued, meta.create_date_time or manifest.created),
                            (DCTERMS.modified, manifest.created)):
            stamp = temporal_literal(value)
            if stamp is not None:
                g.add((node, prop, stamp))
        g.add((node, DCTERMS.accessRights, ACCESS_RIGHTS[meta.access_tier]))
        g.add((node, DCATAP.applicableLegislation, EHDS_REGULATION))
        g.add((node, DCAT.theme, THEME_HEALTH))
        g.add((node, HEALTHDCATAP.healthCategory, HEALTH_CATEGORY_GENOMIC))
        g.add((node, DCTERMS.publisher, self.publisher))
        g.add((node, HEALTHDCATAP.hdab, self.hdab))
        g.add((node, DCAT.contactPoint, self._contact_kind()))
        self._add_spatial(node)
        keywords = dict.fromkeys(["genomic variation", *meta.keywords])
        for keyword in keywords:
            g.add((node, DCAT.keyword, Literal(keyword)))
        g.add((node, DCTERMS.type, TYPE_SEQUENCE_VARIATIONS))
        if any(k.lower() == "synthetic" for k in keywords):
            g.add((node, DCTERMS.type, TYPE_SYNTHETIC))
        self._add_provenance(node, dataset)
        self._add_population(node, dataset)
        self._add_variables(node)
        policy = self._add_policy(node, meta.data_use_conditions.duo_data_use)
        for service, path, spec, suffix in (
            (self.beacon_service, f"/beacon/datasets/{dataset.id}", BEACON_SPEC, "beacon"),
            (self.htsget_service, f"/htsget/variants/{dataset.id}", HTSGET_SPEC, "htsget"),
        ):
            distribution = URIRef(f"{node}#{suffix}")
            self._add_distribution(distribution, service, path, spec, policy)
            g.add((node, DCAT.distribution, distribution))
            g.add((service, DCAT.servesDataset, node))
        if meta.allele_frequencies is AlleleFrequencyRelease.PUBLIC:
            self._add_frequency_release(node, dataset)
        return node

    def _add_frequency_release(self, node: URIRef, dataset: Dataset) -> None:
        """The operator publishes the dataset's allele frequencies to anyone: a distribution
        of its own, open whatever the dataset's access rights."""
        g = self.graph
        distribution = URIRef(f"{node}#allele-frequencies")
        self._add_distribution(distribution, self.beacon_service,
                               f"/beacon/datasets/{dataset.id}/g_variants", BEACON_SPEC, None)
        g.set((distribution, DCTERMS.title, Literal("Allele frequencies, open to anyone",
                                                    lang="en")))
        g.add((distribution, DCTERMS.description, Literal(
            "AC, AN, AF and homozygous, heterozygous and hemizygous counts by population and "
            "sex, for every variant, through the Beacon to any caller", lang="en")))
        g.add((distribution, DCTERMS.rights, ACCESS_RIGHTS[AccessTier.PUBLIC]))
        g.add((node, DCAT.distribution, distribution))
        g.add((node, DCAT.keyword, Literal("allele frequencies")))

    # -- parts -------------------------------------------------------------------------------
    def _add_spatial(self, node: URIRef) -> None:
        country = country_iri(self.config.country)
        if country is not None:
            self.graph.add((node, DCTERMS.spatial, country))

    def _contact_kind(self) -> URIRef:
        """The dataset contact point (vcard:Kind, as DCAT-AP asks): the node itself."""
        contact = URIRef(f"{self.catalogue}#contact")
        self.graph.add((contact, RDF.type, VCARD.Kind))
        self.graph.add((contact, VCARD.fn, Literal(f"genofed node {self.config.node_id}")))
        self.graph.add((contact, VCARD.hasURL, URIRef(self.base)))
        return contact

    def _add_agents(self) -> None:
        """The publisher (the node) and the access body (the node's data access committee);
        HealthDCAT-AP wants each to carry one cv:ContactPoint."""
        if self._agents_added:
            return
        self._agents_added = True
        g, node_id = self.graph, self.config.node_id
        for agent, name in (
            (self.publisher, f"genofed node {node_id} ({self.config.country})"),
            (self.hdab, f"Data access committee of genofed node {node_id}"),
        ):
            contact = URIRef(f"{agent}-contact")
            g.add((agent, RDF.type, FOAF.Agent))
            g.add((agent, FOAF.name, Literal(name, lang="en")))
            g.add((agent, CV.contactPoint, contact))
            g.add((contact, RDF.type, CV.ContactPoint))
            g.add((contact, CV.contactPage, URIRef(self.base)))

    def _add_distribution(self, distribution: URIRef, service: URIRef, path: str,
                          spec: URIRef, policy: URIRef | None) -> None:
        g = self.graph
        name = "Beacon v2" if service == self.beacon_service else "htsget"
        g.add((distribution, RDF.type, DCAT.Distribution))
        g.add((distribution, DCTERMS.title, Literal(f"{name} access", lang="en")))
        g.add((distribution, DCAT.accessURL, URIRef(self.base + path)))
        g.add((distribution, DCAT.accessService, service))
        g.add((distribution, DCTERMS.conformsTo, spec))
        g.add((distribution, DCTERMS.format, FORMAT_JSON))
        g.add((distribution, DCATAP.applicableLegislation, EHDS_REGULATION))
        if policy is not None:
            g.add((distribution, ODRL2.hasPolicy, policy))
        if (service, RDF.type, DCAT.DataService) in g:
            return
        prefix = "/beacon" if service == self.beacon_service else "/htsget"
        g.add((service, RDF.type, DCAT.DataService))
        g.add((service, DCTERMS.title, Literal(f"{name} service of genofed node "
                                               f"{self.config.node_id}", lang="en")))
        g.add((service, DCAT.endpointURL, URIRef(self.base + prefix)))
        g.add((service, DCAT.endpointDescription, URIRef(f"{self.base}/openapi.json")))
        g.add((service, DCTERMS.conformsTo, spec))
        g.add((service, DCTERMS.publisher, self.publisher))

    def _add_provenance(self, node: URIRef, dataset: Dataset) -> None:
        manifest = dataset.manifest
        statement = BNode()
        phenopackets = (f" and {manifest.n_individuals_with_phenopackets} GA4GH Phenopackets"
                        if manifest.n_individuals_with_phenopackets else "")
        source = str(manifest.source.get("kind", "VCF")).upper()
        text = (f"Genotype calls of {manifest.n_samples} individuals from a {source} file"
                f"{phenopackets} on {dataset.metadata.assembly_id}, ingested by genofed "
                f"{manifest.source.get('genofed', __version__)} and published as store version "
                f"{manifest.version} on {manifest.created}.")
        self.graph.add((node, DCTERMS.provenance, statement))
        self.graph.add((statement, RDF.type, DCTERMS.ProvenanceStatement))
        self.graph.add((statement, RDFS.label, Literal(text, lang="en")))

    def _add_population(self, node: URIRef, dataset: Dataset) -> None:
        g, manifest, meta = self.graph, dataset.manifest, dataset.metadata
        nonneg = XSD.nonNegativeInteger
        g.add((node, HEALTHDCATAP.numberOfUniqueIndividuals, Literal(manifest.n_samples,
                                                                     datatype=nonneg)))
        g.add((node, HEALTHDCATAP.numberOfRecords, Literal(manifest.n_records, datatype=nonneg)))
        if meta.population:
            g.add((node, HEALTHDCATAP.populationCoverage, Literal(
                f"{manifest.n_samples} individuals of the {meta.population} population"
                f" ({self.config.country})", lang="en")))
        ages = dataset.individuals.column("age_years").drop_null()
        # Typical ages are given to the decade, and only when enough people have one, so the
        # range cannot single anyone out (the node's disclosure floor).
        if len(ages) >= self.config.disclosure.count_floor:
            extremes = pc.min_max(ages)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
            g.add((node, HEALTHDCATAP.minTypicalAge,
                   Literal(int(low // 10 * 10), datatype=nonneg)))
            g.add((node, HEALTHDCATAP.maxTypicalAge,
                   Literal(int(math.ceil(high / 10) * 10), datatype=nonneg)))

    def _add_variables(self, node: URIRef) -> None:
        g = self.graph
        group = URIRef(f"{self.catalogue}#variables")
        g.add((node, HEALTHDCATAP.hasStructuredData, Literal(True)))
        g.add((node, HEALTHDCATAP.hasVariables, group))
        if (group, RDF.type, CSVW.TableGroup) in g:
            return
        g.add((group, RDF.type, CSVW.TableGroup))
        g.add((group, DCTERMS.title, Literal("genofed dataset variables", lang="en")))
        for table_name, description, columns in _VARIABLES:
            table = URIRef(f"{group}-{table_name.replace(' ', '-')}")
            g.add((group, CSVW.table, table))
            g.add((table, RDF.type, CSVW.Table))
            g.add((table, DCTERMS.title, Literal(table_name, lang="en")))
            g.add((table, DCTERMS.description, Literal(description, lang="en")))
            for name, title, text, datatype in columns:
                column = URIRef(f"{table}-{name}")
                g.add((table, CSVW.column, column))
                g.add((column, RDF.type, CSVW.Column))
                g.add((column, CSVW.name, Literal(name)))
                g.add((column, CSVW.title, Literal(title, lang="en")))
                g.add((column, DCTERMS.description, Literal(text, lang="en")))
                g.add((column, CSVW.datatype, Literal(datatype)))

    def _add_policy(self, node: URIRef, uses: list[DuoDataUse]) -> URIRef | None:
        """The DUO conditions as an ODRL offer: per DUO permission, use is permitted for that
        purpose (odrl:purpose isA the DUO term); each DUO modifier is a duty named by its term
        (ODRL has no actions of its own for them). The DUO IRIs are the exchangeable part.
        None when the dataset states no conditions: no offer is made then."""
        if not uses:
            return None
        g = self.graph
        policy = URIRef(f"{node}#policy")
        g.add((policy, RDF.type, ODRL2.Offer))
        g.add((policy, ODRL2.uid, policy))
        g.add((policy, ODRL2.target, node))
        g.add((policy, ODRL2.assigner, self.publisher))
        g.add((node, ODRL2.hasPolicy, policy))
        for use in uses:
            permission, constraint = BNode(), BNode()
            g.add((policy, ODRL2.permission, permission))
            g.add((permission, RDF.type, ODRL2.Permission))
            g.add((permission, ODRL2.action, ODRL2.use))
            g.add((permission, ODRL2.constraint, constraint))
            g.add((constraint, RDF.type, ODRL2.Constraint))
            g.add((constraint, ODRL2.leftOperand, ODRL2.purpose))
            g.add((constraint, ODRL2.operator, ODRL2.isA))
            g.add((constraint, ODRL2.rightOperand, self._duo_term(use.id, use.label)))
            for modifier in use.modifiers:
                duty = BNode()
                g.add((permission, ODRL2.duty, duty))
                g.add((duty, RDF.type, ODRL2.Duty))
                g.add((duty, ODRL2.action, self._duo_term(modifier.id, modifier.label)))
        return policy

    def _duo_term(self, curie: str, label: str | None) -> URIRef:
        term = ontology_iri(curie)
        self.graph.add((term, SKOS.notation, Literal(curie)))
        if label:
            self.graph.add((term, RDFS.label, Literal(label, lang="en")))
        return term


def catalogue_graph(store: NodeStore, base_url: str) -> Graph:
    """The node's whole catalogue: the dcat:Catalog and every published dataset."""
    records = CatalogueRecords(store.config, base_url)
    records.add_catalogue(store.datasets())
    return records.graph


def dataset_graph(store: NodeStore, dataset_id: str, base_url: str) -> Graph:
    """One dataset's record (raises UnknownDatasetError for an id the node does not hold)."""
    records = CatalogueRecords(store.config, base_url)
    records.add_dataset(store.dataset(dataset_id))
    return records.graph
