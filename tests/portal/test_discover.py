"""The network portal's discovery pages: search (by variant, gene or HPO term, with sex and age
filters; addressable by URL), HPO suggestions, the catalogue with facets and dataset pages, and
the allele-frequency browser, against the served demo network; a small network of our own has a
dataset whose node publishes its allele frequencies and a member that never answers."""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from genofed.config.node import init_node, load_config, save_config
from genofed.federation.network import add_member, create_network, member_for_node
from genofed.ingest import ingest_dataset
from genofed.portal.discover_results import chart, frequencies, pooled, read_answer
from genofed.portal.discover_terms import BadQuery, count_words, parse_variant, read_search
from genofed.server.app import create_app
from genofed.server.hub import create_hub_app
from genofed.server.loopback import LoopbackServer
from genofed.store.node import NodeStore
from tests.portal.browser import NewContext, check_page
from tests.portal.network import PortalNetwork, forms, login

DATASETS = {"fi-biobank": ("fi", "FI", "controlled"), "fi-reference": ("fi", "FI", "public"),
            "se-cohort": ("se", "SE", "controlled"), "se-register": ("se", "SE", "registered"),
            "nl-diverse": ("nl", "NL", "controlled")}
COUNTRIES = {"FI": "Finland (FI)", "SE": "Sweden (SE)", "NL": "Netherlands (NL)"}
SEIZURE = "HP:0002069"  # bilateral tonic-clonic seizure: planted in the demo's phenopackets
#: The demo dataset that publishes its allele frequencies to anyone (a reference resource).
PUBLIC_FREQUENCIES = "fi-reference"


# -- reading pages --------------------------------------------------------------------------------
class _Tables(HTMLParser):
    """Every table of a page by its aria-label: rows of cell texts (header row included)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("aria-label") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table is not None and self._cell is not None:
            self._table[-1].append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table(html: str, label: str) -> list[dict[str, str]]:
    """The rows of the table labelled `label`, as {column heading: cell text}."""
    parser = _Tables()
    parser.feed(html)
    assert label in parser.tables, f"no table {label!r}; tables: {list(parser.tables)}"
    header, *rows = parser.tables[label]
    return [dict(zip(header, row, strict=True)) for row in rows]


def by_dataset(html: str) -> dict[str, dict[str, str]]:
    return {row["Dataset"]: row for row in table(html, "Results by country and dataset")}


def statuses(html: str, label: str) -> dict[str, str]:
    return {row["Node"]: row["Status"] for row in table(html, label)}


@dataclass(frozen=True)
class Site:
    contig: str
    pos: int
    ref: str
    alt: str
    ac: int
    an: int

    @property
    def label(self) -> str:
        return f"{self.contig}-{self.pos}-{self.ref}-{self.alt}"


def common_site(node_dir: Path, dataset: str, frequency: float = 1.0) -> Site:
    """The dataset's biallelic SNV whose allele frequency is nearest `frequency` (by default
    the most carried one: every answer finds it, whatever the count floor)."""
    sites = NodeStore.open(node_dir).dataset(dataset).sites.to_pylist()
    best = min((s for s in sites if len(s["ref"]) == len(s["alt"]) == 1 and s["ac"] < s["an"]),
               key=lambda s: (abs(s["ac"] / s["an"] - frequency), s["pos"]))
    return Site(str(best["contig"]), best["pos"], best["ref"], best["alt"], best["ac"],
                best["an"])


@pytest.fixture(scope="module")
def variant(portal_network: PortalNetwork) -> Site:
    return common_site(portal_network.directory / "nodes" / "fi", "fi-reference")


@pytest.fixture(scope="module")
def gene(portal_network: PortalNetwork) -> str:
    """A gene of the demo's gene table (`NAME|ID` in the BED's name column)."""
    bed = portal_network.directory / "cohorts" / "fi-reference" / "genes.bed"
    line = next(li for li in bed.read_text().splitlines() if li and not li.startswith("#"))
    return line.split("\t")[3].split("|")[0]


@pytest.fixture
def hub(portal_network: PortalNetwork) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=portal_network.hub, timeout=60.0) as client:
        yield client


# -- search ---------------------------------------------------------------------------------------
def test_search_by_variant_shows_every_country_dataset_and_node(hub: httpx.Client,
                                                                variant: Site) -> None:
    page = hub.get("/portal/search", params={"q": variant.label})
    assert page.status_code == 200, page.text
    rows = by_dataset(page.text)
    assert set(rows) == set(DATASETS)
    for dataset, (node, country, tier) in DATASETS.items():
        row = rows[dataset]
        assert (row["Node"], row["Country"], row["Access tier"]) == (node, COUNTRIES[country],
                                                                     tier)
        assert row["Found"] in ("yes", "no")
    # the dataset rows link to their catalogue pages
    assert 'href="/portal/datasets/fi/fi-biobank"' in page.text
    assert statuses(page.text, "Status of each node for this search") == {
        "fi": "answered", "se": "answered", "nl": "answered"}
    assert "Every node answered." in page.text
    # bookmarkable, and the same query is offered through the API
    assert f"/portal/search?variant={variant.label}" in page.text
    assert "/network/beacon/g_variants?" in page.text


def test_search_by_variant_gene_and_hpo_parameters(hub: httpx.Client, variant: Site,
                                                   gene: str) -> None:
    typed = by_dataset(hub.get("/portal/search", params={"q": variant.label}).text)
    for form in (variant.label, f"chr{variant.label}",
                 f"{variant.contig}:{variant.pos}:{variant.ref}:{variant.alt}"):
        page = hub.get("/portal/search", params={"variant": form})
        assert page.status_code == 200, page.text
        assert f"Results for variant {variant.label}" in page.text
        assert {d: r["Found"] for d, r in by_dataset(page.text).items()} == \
            {d: r["Found"] for d, r in typed.items()}
    by_gene = hub.get("/portal/search", params={"gene": gene})
    assert by_gene.status_code == 200, by_gene.text
    assert f"Results for gene {gene}" in by_gene.text
    assert set(by_dataset(by_gene.text)) == set(DATASETS)
    for params in ({"hpo": SEIZURE}, {"q": "Bilateral tonic-clonic seizure"},
                   {"q": SEIZURE.lower()}):
        page = hub.get("/portal/search", params=params)
        assert page.status_code == 200, page.text
        assert f"Results for Bilateral tonic-clonic seizure ({SEIZURE})" in page.text
        assert set(by_dataset(page.text)) == set(DATASETS)
    filtered = hub.get("/portal/search", params={"hpo": SEIZURE, "sex": "female",
                                                 "min_age": "20", "max_age": "80"})
    assert filtered.status_code == 200, filtered.text
    assert "female, age 20 to 80 years" in filtered.text
    assert f"hpo={SEIZURE.replace(':', '%3A')}" in filtered.text  # the bookmark keeps it all
    assert "sex=female&amp;min_age=20&amp;max_age=80" in filtered.text


def test_free_text_offers_matching_hpo_terms(hub: httpx.Client) -> None:
    page = hub.get("/portal/search", params={"q": "tonic-clonic"})
    assert page.status_code == 200, page.text
    assert "Which phenotype did you mean?" in page.text
    assert f'href="/portal/search?hpo={SEIZURE.replace(":", "%3A")}"' in page.text
    assert "Results by country and dataset" not in page.text


def test_anonymous_search_shows_no_more_than_the_beacon_gives_anonymous_callers(
        hub: httpx.Client, variant: Site) -> None:
    for query, api in ((f"variant={variant.label}", "g_variants"),
                       (f"hpo={SEIZURE}", "individuals")):
        page = hub.get(f"/portal/search?{query}")
        assert page.status_code == 200, page.text
        params = {"requestedGranularity": "record", "includeResultsetResponses": "ALL"}
        if api == "g_variants":
            params.update(parse_variant(variant.label).beacon_parameters())
        else:
            params["filters"] = SEIZURE
        answer = hub.get(f"/network/beacon/{api}", params=params).json()
        rows = by_dataset(page.text)
        for result in answer["response"]["resultSets"]:
            row = rows[result["id"]]
            if result["id"] == PUBLIC_FREQUENCIES and api == "g_variants":
                # its frequencies go to anyone, by the operator's choice
                assert result["returnedGranularity"] == "record"
                assert row["Answered as"] == "records"
                assert ("AC " in row["Count"]) == result["exists"]
                continue
            assert result["returnedGranularity"] == "boolean"  # what anonymous callers get
            assert row["Answered as"] == "yes/no"
            assert row["Found"] == ("yes" if result["exists"] else "no")
            assert row["Count"] == "not given at this level"
        for dataset in ("fi-biobank", "se-cohort", "nl-diverse"):
            assert rows[dataset]["Access"].startswith("Log in for counts")
        # no records, except the published frequencies
        assert all("AC " not in row["Count"] for name, row in rows.items()
                   if name != PUBLIC_FREQUENCIES)
        # nobody logged in: no basket forms
        assert not [f for f in forms(page.text) if f[0] == "/portal/basket"]


def test_a_malformed_variant_is_refused_with_the_accepted_forms(hub: httpx.Client) -> None:
    for params in ({"variant": "20-12x-A-G"}, {"q": "20-123456-A"}, {"variant": "23-5-A-G"},
                   {"q": "chr20:123456:A:Z"}, {"gene": "not a gene!"}, {"hpo": "HP:9999999"},
                   {"q": "20-1-A-G", "sex": "other"}, {"variant": "20-1-A-G", "min_age": "x"}):
        page = hub.get("/portal/search", params=params)
        assert page.status_code == 400, (params, page.text)
        assert 'class="problem" role="alert"' in page.text
    page = hub.get("/portal/search", params={"variant": "20-12x-A-G"})
    assert "CHR-POS-REF-ALT" in page.text and "20-123456-A-G" in page.text
    bad = hub.get("/portal/frequencies", params={"variant": "rs12345"})
    assert bad.status_code == 400
    assert "CHR-POS-REF-ALT" in bad.text


def test_hpo_suggestions_have_labels(hub: httpx.Client) -> None:
    found = hub.get("/portal/search/suggest", params={"q": "seiz", "sex": "male"})
    assert found.status_code == 200
    assert "<html" not in found.text  # a fragment for htmx
    assert 'href="/portal/search?hpo=HP%3A0001250&amp;sex=male">Seizure (HP:0001250)</a>' \
        in found.text
    # terms the nodes hold come first, and say so
    first = re.search(r"<li>(.*?)</li>", found.text, re.S)
    assert first is not None and SEIZURE in first.group(1) and "held in the network" in \
        first.group(1)
    assert "<li>" not in hub.get("/portal/search/suggest", params={"q": "s"}).text
    page = hub.get("/portal/search")  # the no-JS path: a datalist of the network's terms
    assert f'<option value="{SEIZURE}">Bilateral tonic-clonic seizure</option>' in page.text
    assert 'hx-get="/portal/search/suggest"' in page.text


def test_logged_in_search_offers_the_basket_for_controlled_datasets(
        portal_network: PortalNetwork, variant: Site) -> None:
    with login(portal_network, portal_network.hub, "dana") as client:
        page = client.get(f"{portal_network.hub}/portal/search",
                          params={"variant": variant.label})
        assert page.status_code == 200, page.text
        offered = {fields["dataset"] for action, fields in forms(page.text)
                   if action == "/portal/basket"}
        held = set(re.findall(r'In your basket<span class="visually-hidden">: ([^<]+)<',
                              page.text))
        for dataset, (node, _country, tier) in DATASETS.items():
            wanted = tier == "controlled"
            assert (f"{node}/{dataset}" in offered or dataset in held) == wanted, dataset
        for action, fields in forms(page.text):
            if action == "/portal/basket":
                assert fields["csrf_token"] and fields["dataset"].count("/") == 1
        record = client.get(f"{portal_network.hub}/portal/datasets/se/se-cohort")
        assert any(action == "/portal/basket" and fields.get("dataset") == "se/se-cohort"
                   for action, fields in forms(record.text)) or "In your basket" in record.text


def test_a_logged_in_researcher_gets_counts_where_the_tier_allows(
        portal_network: PortalNetwork) -> None:
    """The portal logs in with the passport scope, so the nodes see the researcher's visas:
    the registered dataset counts, the public one still answers yes or no."""
    with login(portal_network, portal_network.hub, "dana") as client:
        page = client.get(f"{portal_network.hub}/portal/search", params={"hpo": SEIZURE})
    assert page.status_code == 200, page.text
    rows = by_dataset(page.text)
    assert rows["se-register"]["Answered as"] == "count"
    assert re.fullmatch(r"\d+ individuals?|fewer than \d+ individuals \(between 1 and \d+\)",
                        rows["se-register"]["Count"]), rows["se-register"]["Count"]
    assert rows["fi-reference"]["Answered as"] == "yes/no"
    assert "that gave counts:" in page.text


# -- catalogue ------------------------------------------------------------------------------------
def test_catalogue_lists_every_dataset_and_facets_narrow_it(hub: httpx.Client) -> None:
    page = hub.get("/portal/catalogue")
    assert page.status_code == 200, page.text
    rows = table(page.text, "Datasets of the network")
    listed = {row["Dataset"].rsplit(" ", 1)[-1] for row in rows}
    assert listed == {f"{node}/{dataset}" for dataset, (node, _c, _t) in DATASETS.items()}
    assert "Not every node's catalogue is listed" not in page.text
    assert re.search(r"Controlled <span class=\"muted\">\(3\)</span>", page.text)
    assert "General research use" in page.text  # consent in plain words
    assert "Health/medical/biomedical research" in page.text
    controlled = hub.get("/portal/catalogue", params={"tier": "controlled"})
    shown = {row["Dataset"].rsplit(" ", 1)[-1]
             for row in table(controlled.text, "Datasets of the network")}
    assert shown == {"fi/fi-biobank", "se/se-cohort", "nl/nl-diverse"}
    assert 'value="controlled" checked' in controlled.text
    both = hub.get("/portal/catalogue?tier=controlled&tier=registered&country=SE")
    assert {row["Dataset"].rsplit(" ", 1)[-1]
            for row in table(both.text, "Datasets of the network")} == \
        {"se/se-cohort", "se/se-register"}
    yri = hub.get("/portal/catalogue", params={"population": "YRI"})
    assert [row["Dataset"].rsplit(" ", 1)[-1]
            for row in table(yri.text, "Datasets of the network")] == ["nl/nl-diverse"]
    nothing = hub.get("/portal/catalogue", params={"text": "no such words anywhere"})
    assert "No dataset matches these filters" in nothing.text


def test_dataset_page_says_consent_in_plain_words_and_how_to_get_access(
        hub: httpx.Client) -> None:
    public = hub.get("/portal/datasets/fi/fi-reference")
    assert public.status_code == 200, public.text
    assert "General research use" in public.text and "DUO:0000042" in public.text
    assert "Anyone can query it" in public.text
    assert "Finland (FI)" in public.text and "individuals" in public.text
    controlled = hub.get("/portal/datasets/nl/nl-diverse")
    assert controlled.status_code == 200
    text = controlled.text
    assert "Health/medical/biomedical research" in text and "DUO:0000006" in text
    assert "Results must be published" in text  # a modifier, in plain words too
    assert "data access committee" in text and "Log in to apply<span" in text
    assert "YRI" in text
    registered = hub.get("/portal/datasets/se/se-register")
    assert "researcher visa" in registered.text
    assert hub.get("/portal/datasets/fi/no-such-dataset").status_code == 404
    assert hub.get("/portal/datasets/xx/fi-reference").status_code == 404


# -- allele frequencies (demo network: no dataset publishes them) ---------------------------------
def test_frequency_page_explains_datasets_that_give_no_frequencies(hub: httpx.Client,
                                                                   variant: Site) -> None:
    page = hub.get("/portal/frequencies", params={"variant": variant.label})
    assert page.status_code == 200, page.text
    withheld = {row["Dataset"]: row
                for row in table(page.text, "Datasets that gave no frequencies")}
    # fi-reference publishes its frequencies (the demo's reference resource); nobody else does.
    assert set(withheld) == set(DATASETS) - {PUBLIC_FREQUENCIES}
    assert "committee approves" in withheld["fi-biobank"]["Why no frequencies"]
    assert "never frequencies" in withheld["se-register"]["Why no frequencies"]
    assert 'data-chart="frequency-chart"' in page.text
    assert PUBLIC_FREQUENCIES in page.text.split("Datasets that gave no frequencies")[0]
    assert hub.get("/portal/frequencies").status_code == 200  # the form alone


# -- a network of our own: published frequencies, and a member that never answers ---------------
@dataclass(frozen=True)
class OwnNetwork:
    hub: str
    site: Site


@pytest.fixture(scope="module")
def own_network(portal_network: PortalNetwork,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnNetwork]:
    """Node `goe` (FI) holds `goe-reference`, the demo's fi-reference cohort published with its
    allele frequencies; member `slow` (SE) accepts connections and never answers; the hub
    beside `goe` waits one second per member."""
    root = tmp_path_factory.mktemp("discover-network")
    cohort = root / "cohort"
    shutil.copytree(portal_network.directory / "cohorts" / "fi-reference", cohort)
    metadata = json.loads((cohort / "dataset.json").read_text())
    metadata.update(id="goe-reference", alleleFrequencies="public")
    (cohort / "dataset.json").write_text(json.dumps(metadata))
    goe, slow = root / "goe", root / "slow"
    init_node(goe, node_id="goe", country="FI")
    init_node(slow, node_id="slow", country="SE")
    ingest_dataset(goe, "goe-reference", cohort / "cohort.vcf.gz",
                   phenopackets=cohort / "phenopackets", metadata=cohort / "dataset.json",
                   populations=cohort / "populations.tsv", workers=1)
    network_file = root / "network.toml"
    create_network(network_file, "discover-test")
    with LoopbackServer() as node_server, LoopbackServer() as hub_server, \
            socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts connections; nobody ever reads or answers
        add_member(network_file, member_for_node(goe, node_server.url))
        add_member(network_file, member_for_node(
            slow, f"http://127.0.0.1:{silent.getsockname()[1]}"))
        config = load_config(goe)
        config.access.public_url = node_server.url
        config.federation.network_file = str(network_file)
        save_config(goe, config)
        node_server.start(create_app(goe))
        hub_server.start(create_hub_app(network_file, goe, timeout=1.0))
        yield OwnNetwork(hub_server.url, common_site(goe, "goe-reference", 0.3))


def test_frequency_page_shows_populations_sexes_and_a_chart(own_network: OwnNetwork) -> None:
    site = own_network.site
    with httpx.Client(base_url=own_network.hub, timeout=60.0) as client:
        page = client.get("/portal/frequencies", params={"variant": f"chr{site.label}"})
    assert page.status_code == 200, page.text
    rows = table(page.text, "Allele frequency by dataset, population and sex")
    groups = {row["Group"]: row for row in rows if row["Dataset"] == "goe-reference"}
    assert set(groups) == {"everyone", "population: CEU", "sex: female", "sex: male"}
    everyone = groups["everyone"]
    assert (int(everyone["AC"]), int(everyone["AN"])) == (site.ac, site.an)
    assert float(everyone["AF"]) == pytest.approx(site.ac / site.an, abs=5e-5)
    assert int(everyone["Homozygous"]) * 2 + int(everyone["Heterozygous"]) == site.ac
    assert int(groups["sex: female"]["AC"]) + int(groups["sex: male"]["AC"]) == site.ac
    by_population = table(page.text, "Allele frequency by population and country")
    assert [(r["Country"], r["Population"], int(r["AC"]), int(r["AN"]))
            for r in by_population] == [("Finland (FI)", "CEU", site.ac, site.an)]
    # the chart: a canvas described in words, and its numbers as a JSON data island
    assert re.search(r'<canvas data-chart="frequency-chart" role="img"\s+aria-label="[^"]*CEU',
                     page.text)
    island = re.search(r'<script type="application/json" id="frequency-chart">(.*?)</script>',
                       page.text, re.S)
    assert island is not None
    config = json.loads(island.group(1))
    assert config["type"] == "bar" and config["data"]["labels"] == ["CEU"]
    (bars,) = config["data"]["datasets"]
    assert bars["label"] == "Finland"
    assert bars["data"] == [pytest.approx(site.ac / site.an, abs=1e-6)]
    assert "/portal/static/vendor/chart.umd.js" in page.text
    # the member that never answered is named, not fatal
    assert statuses(page.text, "Status of each node for this variant") == {
        "goe": "answered", "slow": "timed out"}
    assert "Partial answer" in page.text


def test_a_node_that_times_out_is_shown_as_timed_out(own_network: OwnNetwork) -> None:
    with httpx.Client(base_url=own_network.hub, timeout=60.0) as client:
        page = client.get("/portal/search", params={"variant": own_network.site.label})
        assert page.status_code == 200, page.text
        assert statuses(page.text, "Status of each node for this search") == {
            "goe": "answered", "slow": "timed out"}
        assert "Partial answer:" in page.text and "1 of 2 nodes answered" in page.text
        assert 'class="status status-timed-out">timed out<' in page.text
        # a published dataset answers anyone with its records
        row = by_dataset(page.text)["goe-reference"]
        assert row["Answered as"] == "records" and row["Found"] == "yes"
        catalogue = client.get("/portal/catalogue")
        assert catalogue.status_code == 200
        assert "Node slow (Sweden): " in catalogue.text
        assert "unavailable — timed out" in catalogue.text
        assert "Allele frequencies open to anyone" in catalogue.text
        unavailable = client.get("/portal/datasets/slow/anything")
        assert unavailable.status_code == 503
        assert "timed out" in unavailable.text
        record = client.get("/portal/datasets/goe/goe-reference")
        assert "publishes this dataset's allele frequencies" in record.text


# -- reading answers (no network) -----------------------------------------------------------------
def _result(dataset: str, node: str, country: str, granularity: str, **fields: Any
            ) -> dict[str, Any]:
    return {"id": dataset, "setType": "dataset", "returnedGranularity": granularity,
            "exists": fields.pop("exists", True), "results": fields.pop("results", []),
            "info": {"accessTier": fields.pop("tier", "registered"),
                     "node": {"id": node, "country": country}}, **fields}


def test_a_partial_network_answer_is_read_with_imprecise_counts_in_words() -> None:
    document = {
        "responseSummary": {"exists": True, "numTotalResults": 17,
                            "countPrecision": "imprecise"},
        "response": {"resultSets": [
            _result("se-register", "se", "SE", "count", resultsCount=12,
                    countPrecision="exact"),
            _result("fi-small", "fi", "FI", "count", resultsCount=5,
                    countPrecision="imprecise", countAdjustedTo=[5]),
            _result("fi-ref", "fi", "FI", "boolean", tier="public", resultsCount=0)]},
        "info": {"network": {"complete": False, "nodes": [
            {"node": "fi", "country": "FI", "status": "ok", "elapsedMs": 12.5},
            {"node": "se", "country": "SE", "status": "ok", "elapsedMs": 20.0},
            {"node": "nl", "country": "NL", "status": "timeout", "elapsedMs": 5000.2,
             "message": "no complete answer within 5 s"},
            {"node": "de", "country": "DE", "status": "unauthorised", "elapsedMs": 3.0}]}}}
    outcome = read_answer(document, "individual", logged_in=True)
    assert not outcome.complete and outcome.answered == 2
    assert [(n.node, n.status, n.state) for n in outcome.nodes] == [
        ("fi", "answered", "answered"), ("se", "answered", "answered"),
        ("nl", "timed out", "timed-out"), ("de", "refused", "refused")]
    assert outcome.nodes[2].message == "no complete answer within 5 s"
    rows = {r.dataset: r for r in outcome.datasets}
    assert [r.dataset for r in outcome.datasets] == ["fi-ref", "fi-small", "se-register"]
    assert rows["fi-small"].count == "fewer than 5 individuals (between 1 and 4)"
    assert rows["se-register"].count == "12 individuals"
    assert rows["fi-ref"].count == ""
    assert outcome.total == "between 13 and 16 individuals"
    failed = read_answer({"error": {"errorCode": 504, "errorMessage": "no member answered"},
                          "info": document["info"]}, "variant", logged_in=False)
    assert failed.error == "no member answered" and len(failed.nodes) == 4
    assert count_words(1, "exact", None, "variant") == "1 variant"


def test_frequencies_are_read_from_records_and_pooled_by_country_and_population() -> None:
    def record(*groups: tuple[str, int, int]) -> dict[str, Any]:
        return {"variantInternalId": "GRCh38:20:100:A:G", "frequencyInPopulations": [{
            "frequencies": [{"population": g, "alleleCount": ac, "alleleNumber": an,
                             "alleleFrequency": ac / an} for g, ac, an in groups]}]}

    document = {"response": {"resultSets": [
        _result("a", "fi", "FI", "record", results=[record(("all", 10, 100), ("CEU", 10, 100),
                                                           ("female", 4, 50))]),
        _result("b", "fi", "FI", "record", results=[record(("all", 5, 50))]),
        _result("c", "nl", "NL", "record", results=[record(("all", 9, 60), ("YRI", 6, 40),
                                                           ("CEU", 3, 20))]),
        _result("d", "se", "SE", "boolean", tier="controlled")]}}
    rows, withheld = frequencies(document)
    assert [(r.dataset, r.kind, r.group) for r in rows] == [
        ("a", "all", "all"), ("a", "population", "CEU"), ("a", "sex", "female"),
        ("b", "all", "all"), ("c", "all", "all"), ("c", "population", "CEU"),
        ("c", "population", "YRI")]
    assert [(w.dataset, w.granularity) for w in withheld] == [("d", "boolean")]
    totals = pooled(rows)
    assert [(p.country, p.population, p.ac, p.an) for p in totals] == [
        ("FI", "CEU", 10, 100), ("FI", "all", 5, 50), ("NL", "CEU", 3, 20),
        ("NL", "YRI", 6, 40)]
    config = chart("20-100-A-G", totals)
    assert config["data"]["labels"] == ["CEU", "YRI", "all"]
    assert [d["label"] for d in config["data"]["datasets"]] == ["Finland", "Netherlands"]
    assert config["data"]["datasets"][0]["data"] == [0.1, None, 0.1]
    json.dumps(config, allow_nan=False)  # plain JSON: what portal.js hands to Chart.js


@pytest.mark.parametrize(("params", "expected"), [
    ({"q": "20-123456-A-G"}, ("variant", "20-123456-A-G")),
    ({"q": "chr20:123456:a:g"}, ("variant", "20-123456-A-G")),
    ({"q": "X-5-C>T"}, ("variant", "X-5-C-T")),
    ({"q": "chrM-7-A-G"}, ("variant", "MT-7-A-G")),
    ({"q": "BRCA2"}, ("gene", "BRCA2")),
    ({"q": "CHRNA7"}, ("gene", "CHRNA7")),
    ({"gene": "brca2"}, ("gene", "brca2")),
    ({"q": "HP:0001250"}, ("hpo", "HP:0001250")),
    ({"q": "seizure"}, ("hpo", "HP:0001250")),
    ({"q": "2-3 toe syndactyly"}, ("hpo", "HP:0004691")),
])
def test_the_search_box_reads_variants_genes_and_terms(params: dict[str, str],
                                                       expected: tuple[str, str]) -> None:
    search = read_search(params)
    kind, value = expected
    if kind == "variant":
        assert search.variant is not None and search.variant.label == value
        assert search.entry == "g_variants"
    elif kind == "gene":
        assert search.gene == value and search.entry == "g_variants"
    else:
        assert search.hpo is not None and search.hpo.id == value
        assert search.entry == "individuals"


def test_the_search_box_refuses_what_it_cannot_run() -> None:
    for params in ({"q": "20-123456-A"}, {"variant": "25-1-A-G"}, {"variant": "20-0-A-G"},
                   {"q": "20-1-A-G", "gene": "BRCA2"}, {"variant": "20-1-A-G", "gene": "X1"},
                   {"q": "20-1-A-G", "min_age": "60", "max_age": "20"},
                   {"q": "20-1-A-G", "max_age": "151"}, {"q": "%%%"}):
        with pytest.raises(BadQuery):
            read_search(params)
    assert read_search({"q": "20-1-A-G", "sex": "female", "min_age": "40"}).filters() == \
        ["NCIT:C16576", "age>=40"]


# -- in a browser ---------------------------------------------------------------------------------
def test_search_page_in_a_browser(new_context: NewContext, portal_network: PortalNetwork,
                                  variant: Site) -> None:
    page = new_context(base_url=portal_network.hub).new_page()
    page.goto("/portal/search")
    page.get_by_label("Variant, gene or HPO term").press_sequentially("tonic-cl")
    suggestion = page.locator("#search-suggestions").get_by_role(
        "link", name=f"Bilateral tonic-clonic seizure ({SEIZURE})")
    expect(suggestion).to_be_visible()  # htmx fetched the suggestions
    page.goto(f"/portal/search?variant={variant.label}")
    expect(page.get_by_role("table", name="Results by country and dataset")).to_be_visible()
    check_page(page, "discover-search")


def test_catalogue_and_dataset_pages_in_a_browser(new_context: NewContext,
                                                  portal_network: PortalNetwork) -> None:
    page = new_context(base_url=portal_network.hub).new_page()
    page.goto("/portal/catalogue")
    page.get_by_label("Controlled").check()
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_role("table", name="Datasets of the network").locator("tbody tr")
           ).to_have_count(3)
    check_page(page, "discover-catalogue")
    page.get_by_role("link", name="Simulated YRI cohort").first.click()
    expect(page.get_by_role("heading", name="Consent: what the data may be used for")
           ).to_be_visible()
    check_page(page, "discover-dataset")


def test_frequency_page_in_a_browser(new_context: NewContext, own_network: OwnNetwork) -> None:
    page = new_context(base_url=own_network.hub).new_page()
    page.goto(f"/portal/frequencies?variant={own_network.site.label}")
    page.wait_for_selector("canvas[data-drawn]", state="attached")  # portal.js drew it
    check_page(page, "discover-frequencies")
