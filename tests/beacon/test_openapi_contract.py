"""The OpenAPI document of the node says what the parsers do: the patterns of
:mod:`genofed.server.beacon_parameters` held against the parsers they transcribe, and the
server bugs the contract fuzzing found, each pinned by the request that showed it."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from genofed.beacon.access import QueryBudget
from genofed.beacon.filters import plan_filters
from genofed.beacon.request import VARIANT_ID, at_most, from_query_params
from genofed.beacon.variants import MAX_POSITION, parse_variant_id, reference_name
from genofed.errors import BeaconRequestError
from genofed.files.htsget import _raw_key
from genofed.files.htsget_request import parse_post
from genofed.server.app import create_app
from genofed.server.beacon_parameters import CONTIG, NUMBER, REFUSED_TERM, text_pattern
from genofed.store.individuals import iso8601_years

_SETTINGS = settings(max_examples=300, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def node_client(beacon_node: Any) -> Iterator[TestClient]:
    app = create_app(beacon_node.node_dir, budget=QueryBudget(10**9, 3600))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# -- the patterns say what the parsers read ------------------------------------------------------
@given(st.integers(0, 10**12), st.sampled_from([0, 1]), st.sampled_from(
    [9, 22, 1000, 1_000_000, MAX_POSITION]))
@_SETTINGS
def test_at_most_reads_numbers_as_int_does(number: int, least: int, limit: int) -> None:
    pattern = re.compile(at_most(limit, least=least))
    for text in (str(number), f"00{number}"):
        assert bool(pattern.fullmatch(text)) == (least <= number <= limit)


@given(st.text(st.sampled_from("0123456789.+-_eEinfatyINFATY"), max_size=8))
@example("1_000")
@example("-InFiNiTy")
@example("5.e3")
@_SETTINGS
def test_number_is_what_float_reads(text: str) -> None:
    """NUMBER (around which whitespace is spelled apart) matches what float() reads."""
    try:
        float(text)
        reads = True
    except ValueError:
        reads = False
    assert bool(re.fullmatch(NUMBER, text)) == reads, text


_IDS = st.sampled_from(["age", " age ", "NCIT:C25150", "ageAtLastEncounter", "LOINC:2089-1",
                        "HP:0001250", "x:y", ":x", "foo", "age2", "\u2003age"])
_OPERATORS = st.sampled_from(["=", "<", ">", "<=", ">=", "!", "=<", "<>", ""])
_VALUES = st.one_of(st.sampled_from(["P40Y", "P3M2D", "PT", "P", "P5YT", "40", "4.5e1", "inf",
                                     " 5 ", "x", "5 years", "1_0", "\x1c5", "="]),
                    st.text(st.characters(codec="ascii"), max_size=6))


@given(_IDS, _OPERATORS, _VALUES)
@example("LOINC:2089-1", "<=", "1_000")
@example("age", ">=", "\x1cP5Y")
@_SETTINGS
def test_refused_filter_terms_are_the_ones_the_parser_refuses(identifier: str, operator: str,
                                                              value: str) -> None:
    """A GET filter term the document refuses is one the server refuses (400), and only
    those."""
    term = f"{identifier}{operator}{value}"
    if "," in term or not term.strip():
        return
    try:
        plan_filters(from_query_params({"filters": term}).filters)
        refused = False
    except BeaconRequestError:
        refused = True
    assert bool(re.search(REFUSED_TERM, term)) == refused, term


@given(st.one_of(st.sampled_from(["20", "chr20", "CHRx", "chrM", "MT", "mt", "NC_000020.11",
                                  "refseq:nc_000023.10", "NC_000000.1", "NC_000025.1", "23",
                                  "0", "020", "chr", " 20 ", "\x1c20", "GL000192.1"]),
                 st.text(st.sampled_from("chrCHR0123456789XYMTNC_.:refseq "), max_size=12)))
@_SETTINGS
def test_contig_pattern_is_what_every_node_accepts(text: str) -> None:
    try:
        stripped = text.strip()
        if stripped:
            reference_name(stripped, known=set())
        accepted = True
    except BeaconRequestError:
        accepted = False
    assert bool(re.fullmatch(text_pattern(CONTIG), text)) == accepted, text


@given(st.one_of(st.sampled_from(["GRCh38:20:12345:A:G", ":1:1:0:0", "GRCh38:NC_000020.11:5:A:G",
                                  "GRCh38:refseq:NC_000020.11:5:A:G", "x:20:0:A:G",
                                  "x:20:2147483646:A:G", "x:20:2147483647:A:G", "x:20:²:A:G",
                                  "x:20:5::G", "x:20:5:A:", "x:20:5:A:G:T", "x:chrX:007:A:<DEL>"]),
                 st.text(st.sampled_from("GRCh38:20X0123456789ACGT²"), max_size=16)))
@_SETTINGS
def test_variant_id_pattern_is_what_the_parser_reads(text: str) -> None:
    try:
        parse_variant_id(text, known_contigs=set())
        accepted = True
    except (BeaconRequestError, ValueError):  # ValueError: the 500 the pattern now prevents
        accepted = False
    assert bool(re.search(VARIANT_ID, text)) == accepted, text


@pytest.mark.parametrize("duration", ["P40Y", "P1.5Y", "P3M2D", "PT5H", "P2W", "P1YT1S"])
def test_durations_documented_are_read(duration: str) -> None:
    from genofed.server.beacon_parameters import DURATION

    assert re.fullmatch(DURATION, duration)
    iso8601_years(duration)


# -- server bugs the contract found ----------------------------------------------------------------
def test_an_unhashable_value_in_a_refused_body_is_echoed_not_a_500(
        node_client: TestClient) -> None:
    """The error's receivedRequestSummary looked the sent granularity up in a set: a list
    there made the error handler fail (500)."""
    for query in ({"requestedGranularity": [1], "pagination": "x"},
                  {"includeResultsetResponses": {"a": 1}, "pagination": "x"}):
        response = node_client.post("/beacon/g_variants", json={"query": query})
        assert response.status_code == 400
        assert response.json()["error"]["errorCode"] == 400


def test_a_refused_request_echoes_what_was_sent_not_the_defaults(
        node_client: TestClient) -> None:
    """A newcomer's `limit=5000&requestedGranularity=record` came back as 10 and boolean in
    the error's receivedRequestSummary."""
    response = node_client.get("/beacon/g_variants", params={
        "limit": "5000", "requestedGranularity": "record", "start": "x"})
    assert response.status_code == 400
    summary = response.json()["meta"]["receivedRequestSummary"]
    assert summary["requestedGranularity"] == "record"
    assert summary["pagination"]["limit"] == 5000
    body = node_client.post("/beacon/g_variants", json={"query": {
        "pagination": {"limit": 5000}, "requestedGranularity": "record",
        "requestParameters": {"start": "x"}}})
    assert body.status_code == 400
    summary = body.json()["meta"]["receivedRequestSummary"]
    assert (summary["requestedGranularity"], summary["pagination"]["limit"]) == ("record", 5000)


def test_a_huge_integer_in_a_refused_body_is_echoed_not_a_crash(node_client: TestClient) -> None:
    """orjson writes no integer beyond 64 bits; the error echoing one failed."""
    response = node_client.post("/beacon/g_variants",
                                json={"query": {"pagination": {"skip": 10**30}}})
    assert response.status_code == 400
    assert str(10**30) in response.text


def test_a_variant_id_with_other_digits_is_a_400(node_client: TestClient) -> None:
    """'²' is a digit to str.isdigit() and not to int(): the parser failed (500)."""
    response = node_client.get("/beacon/g_variants/GRCh38:20:²:A:G")
    assert response.status_code == 400
    assert response.json()["error"]["errorCode"] == 400


def test_a_blank_reference_name_is_none(node_client: TestClient) -> None:
    """`start` needs a referenceName; a blank one passed for one (and answered 200)."""
    response = node_client.get("/beacon/g_variants", params={"referenceName": " ",
                                                             "start": "5"})
    assert response.status_code == 400
    assert "need a referenceName" in response.json()["error"]["errorMessage"]


@pytest.mark.parametrize(("parameters", "says"), [
    ({"start": 5, "g_variant": {"start": 6}}, "given twice"),
    ({"datasets": ["a"], "datasetIds": ["b"]}, "not both"),
    ({"assemblyId": True}, "true is not a value"),
])
def test_ambiguous_request_parameters_are_refused(node_client: TestClient,
                                                  parameters: dict[str, Any], says: str) -> None:
    """Which of two values was meant is anyone's guess; a boolean assembly read as 1 or 0."""
    response = node_client.post("/beacon/g_variants",
                                json={"query": {"requestParameters": parameters}})
    assert response.status_code == 400
    assert says in response.json()["error"]["errorMessage"]


@pytest.mark.parametrize(("query", "status"), [
    ({"testMode": 0}, 400), ({"testMode": "true"}, 400), ({"pagination": {"skip": "5"}}, 400),
    ({"pagination": {"limit": True}}, 400), ({"filters": [{"id": "age", "operator": ">",
                                                           "value": True}]}, 400),
    ({"pagination": {"skip": 5.0, "limit": 20.0}}, 200), ({"testMode": False}, 200),
    ({"requestParameters": {"referenceName": 20.0, "start": 5.0, "end": [6.0]}}, 200),
])
def test_body_members_have_their_json_types(node_client: TestClient, query: dict[str, Any],
                                            status: int) -> None:
    """JSON Schema's types, which the document states: 0 and "true" are no booleans, "5" and
    true no integers; 5.0 is the integer 5 (a referenceName of 20.0 was refused as a float)."""
    response = node_client.post("/beacon/g_variants", json={"query": query})
    assert response.status_code == status, response.text


@pytest.mark.parametrize("parameters", [{"skip": "1_0"}, {"limit": "٣"}, {"skip": " 5"},
                                        {"includeDescendantTerms": " true"}])
def test_get_numbers_and_booleans_are_written_plainly(node_client: TestClient,
                                                      parameters: dict[str, str]) -> None:
    assert node_client.get("/beacon/datasets", params=parameters).status_code == 400


def test_access_and_catalogue_errors_are_their_envelope(node_client: TestClient) -> None:
    """The error handlers answer under /access and /catalogue as their routers refuse:
    `{"error": {...}}`, no Beacon `meta`."""
    for path, status in (("/access/applications", 401), ("/catalogue/nowhere", 404)):
        response = node_client.get(path)
        assert response.status_code == status
        assert response.json() == {"error": {"errorCode": status,
                                             "errorMessage": response.json()["error"][
                                                 "errorMessage"]}}


def test_a_raw_key_is_taken_as_its_bytes() -> None:
    """parse_public_key strips the decoded key as if it were text: one key in twenty (a first
    or last byte that reads as whitespace) was refused."""
    key = bytes(range(100, 131)) + b"\t"
    assert _raw_key(base64.b64encode(key).decode()) == key
    assert _raw_key("not base64!") is None


def test_a_raw_key_ending_in_a_whitespace_byte_passes(node_client: TestClient) -> None:
    key = base64.b64encode(b"\n" + bytes(range(100, 131))).decode()
    response = node_client.get("/htsget/variants/ds-public",
                               params={"encryptionScheme": "C4GH"},
                               headers={"Htsget-Context-Public-Key": key})
    assert response.status_code == 403  # anonymous: refused for the file, not for the key


def test_htsget_json_coordinates_are_numbers_by_value() -> None:
    """JSON has one number type: 712.0 is the integer 712."""
    ticket = parse_post("variants", "x",
                        b'{"regions": [{"referenceName": "20", "start": 1.0, "end": 712.0}]}')
    assert ticket.regions is not None
    assert (ticket.regions[0].start, ticket.regions[0].end) == (1, 712)


@pytest.mark.parametrize("path", ["/beacon/individuals", "/htsget/variants/ds-public"])
def test_a_parameter_given_twice_is_refused(node_client: TestClient, path: str) -> None:
    """The last of repeated parameters won: `skip=x&skip=` read as no skip, and a client writing
    `filters=a&filters=b` lost a filter unawares."""
    response = node_client.get(f"{path}?start=x&start=5&referenceName=20")
    assert response.status_code == 400
    assert "given more than once" in response.text
