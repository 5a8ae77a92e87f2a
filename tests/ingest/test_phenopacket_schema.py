"""The fast Phenopacket check agrees with protobuf's ParseDict, and loading gives the same rows.

`certainly_valid` may only accept documents ParseDict accepts; for anything else loading falls
back to ParseDict. So for every document here: if the fast check says yes, ParseDict parses it,
and `load_phenopacket` gives the same `Individual` (or the same error) with and without the fast
path.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from phenopackets import Phenopacket

from genofed.errors import InputError
from genofed.ingest.phenopacket_schema import _timestamp, certainly_valid
from genofed.ingest.phenopackets import Individual, load_phenopacket, load_phenopackets
from tests.support import Cohort


def parse_dict_accepts(document: object) -> bool:
    try:
        json_format.ParseDict(copy.deepcopy(document), Phenopacket())
    except json_format.ParseError:
        return False
    return True


def outcome(path: Path, *, fast: bool) -> Individual | tuple[str, str]:
    """The Individual, or the error (also the crashes ParseDict's path has, e.g. a number too
    large for a double: the fast path must leave them as they are)."""
    try:
        return load_phenopacket(path, fast=fast)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def agree(document: object, path: Path) -> bool:
    """Check the fast path against ParseDict on one document; the fast check's verdict."""
    path.write_text(json.dumps(document), encoding="utf-8")
    verdict = certainly_valid(document)
    if verdict:
        assert parse_dict_accepts(document), document
    assert outcome(path, fast=True) == outcome(path, fast=False), document
    return verdict


def proto_names(value: Any) -> Any:
    """Every key under its proto (snake_case) name, as MessageToJson(preserving_proto_field_name)
    writes them."""
    if isinstance(value, dict):
        return {"".join("_" + c.lower() if c.isupper() else c for c in key): proto_names(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [proto_names(item) for item in value]
    return value


@pytest.fixture(scope="module")
def packets(cohort: Cohort) -> list[Path]:
    return sorted(cohort.phenopackets.glob("*.json"))


@pytest.fixture(scope="module")
def base(packets: list[Path]) -> dict[str, Any]:
    """A simulated packet with a disease, measurements and several features."""
    for path in packets:
        document: dict[str, Any] = json.loads(path.read_text())
        if document.get("diseases") and len(document["phenotypicFeatures"]) >= 2:
            return document
    raise AssertionError("no packet with a disease in the cohort")


def test_simulated_packets_take_the_fast_path(packets: list[Path]) -> None:
    assert packets
    for path in packets:
        document = json.loads(path.read_text())
        assert certainly_valid(document), path
        assert parse_dict_accepts(document)
        assert load_phenopacket(path) == load_phenopacket(path, fast=False)
    assert load_phenopackets(packets[0].parent) == [load_phenopacket(p, fast=False)
                                                     for p in packets]


def test_packets_written_by_protobuf_in_other_forms(packets: list[Path], tmp_path: Path) -> None:
    """Proto field names and enums as numbers, as MessageToJson/MessageToDict can write them."""
    for path in packets[:20]:
        message = json_format.Parse(path.read_text(), Phenopacket())
        snake = json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True))
        numbers = json_format.MessageToDict(message, use_integers_for_enums=True)
        for document in (snake, numbers):
            assert agree(document, tmp_path / "packet.json")
            person = load_phenopacket(tmp_path / "packet.json")
            original = load_phenopacket(path)
            assert (person.sample_id, person.sex, person.age_years, person.phenotypes,
                    person.diseases, person.measurements) == (
                original.sample_id, original.sex, original.age_years, original.phenotypes,
                original.diseases, original.measurements)


def edit(document: dict[str, Any], change: str) -> dict[str, Any]:
    """`document` with one change (documented by the edge cases below)."""
    doc = copy.deepcopy(document)
    subject = doc["subject"]
    feature = doc["phenotypicFeatures"][0]
    measurement = doc["measurements"][0]
    match change:
        case "as is":
            pass
        case "proto names":
            doc = proto_names(doc)
        case "proto name for one field":
            subject["time_at_last_encounter"] = subject.pop("timeAtLastEncounter")
        case "both names for one field":
            subject["time_at_last_encounter"] = subject["timeAtLastEncounter"]
        case "sex as a number":
            subject["sex"] = 2  # MALE
        case "sex as a numeric string":
            subject["sex"] = "2"
        case "sex unknown number":
            subject["sex"] = 7  # proto3 enums are open: ParseDict accepts it
        case "sex as a bool":
            subject["sex"] = True
        case "no sex":
            del subject["sex"]
        case "wrong sex":
            subject["sex"] = "WOMAN"
        case "no age":
            del subject["timeAtLastEncounter"]
        case "age as a range":
            subject["timeAtLastEncounter"] = {"ageRange": {"start": {"iso8601duration": "P1Y"},
                                                           "end": {"iso8601duration": "P2Y"}}}
        case "empty age":
            subject["timeAtLastEncounter"] = {"age": {}}
        case "bad age":
            subject["timeAtLastEncounter"]["age"]["iso8601duration"] = "44 years"
        case "two fields of a oneof":
            subject["timeAtLastEncounter"]["ontologyClass"] = {"id": "HP:0003581"}
        case "a oneof and null":
            subject["timeAtLastEncounter"]["ontologyClass"] = None
        case "excluded feature":
            feature["excluded"] = True
        case "excluded as a string":
            feature["excluded"] = "true"
        case "excluded disease":
            doc["diseases"][0]["excluded"] = True
        case "feature without type":
            del feature["type"]
        case "unknown HPO term":
            feature["type"]["id"] = "HP:9999999"
        case "not an HPO term":
            feature["type"]["id"] = "OMIM:616685"
        case "measurement without quantity":
            measurement["value"] = {"ontologyClass": {"id": "NCIT:C25220", "label": "x"}}
        case "measurement with an empty value":
            measurement["value"] = {}
        case "measurement with an empty quantity":
            measurement["value"] = {"quantity": {}}
        case "quantity as an integer":
            measurement["value"]["quantity"]["value"] = 134
        case "quantity as a string":
            measurement["value"]["quantity"]["value"] = "133.9"
        case "quantity as a bool":
            measurement["value"]["quantity"]["value"] = True
        case "quantity huge":
            measurement["value"]["quantity"]["value"] = 10**400
        case "quantity infinite":
            measurement["value"]["quantity"]["value"] = float("inf")  # JSON's 1e999 too
        case "quantity NaN":
            measurement["value"]["quantity"]["value"] = float("nan")
        case "complex value":
            measurement["complexValue"] = {}
        case "no measurements":
            del doc["measurements"]
        case "no features":
            del doc["phenotypicFeatures"]
        case "empty lists":
            doc["phenotypicFeatures"] = []
            doc["diseases"] = []
        case "extra unknown field":
            doc["comment"] = "hello"
        case "extra unknown nested field":
            subject["nickname"] = "x"
        case "wrong type: id as a number":
            doc["id"] = 17
        case "wrong type: subject as a list":
            doc["subject"] = []
        case "wrong type: features as an object":
            doc["phenotypicFeatures"] = feature
        case "null value":
            subject["sex"] = None
        case "null id":
            doc["id"] = None
        case "null in a list":
            doc["phenotypicFeatures"].append(None)
        case "null metaData":
            doc["metaData"] = None
        case "no id":
            del doc["id"]
        case "empty subject":
            doc["subject"] = {}
        case "no subject":
            del doc["subject"]
        case "no metaData":
            del doc["metaData"]
        case "empty metaData":
            doc["metaData"] = {}
        case "bad timestamp":
            doc["metaData"]["created"] = "2024-02-30T00:00:00Z"
        case "timestamp without zone":
            doc["metaData"]["created"] = "2024-01-02T00:00:00"
        case "timestamp with offset and nanos":
            doc["metaData"]["created"] = "2024-01-02T10:00:20.021-05:00"
        case "timestamp as a number":
            doc["metaData"]["created"] = 1704153600
        case "integer in range":
            subject["vitalStatus"] = {"status": "DECEASED", "survivalTimeInDays": 12}
        case "integer negative for uint32":
            subject["vitalStatus"] = {"survivalTimeInDays": -1}
        case "integer as a string":
            subject["vitalStatus"] = {"survivalTimeInDays": "12"}
        case "integer as a float":
            subject["vitalStatus"] = {"survivalTimeInDays": 12.0}
        case "map of strings":
            doc["files"] = [{"uri": "file:///x.vcf",
                             "individualToFileIdentifiers": {subject["id"]: "S1"}}]
        case "non-ascii strings":
            feature["type"]["label"] = "Crohn\u2019s disease \u2013 \u00df \U0001f9ec"
        case "lone surrogate":
            feature["type"]["label"] = "bad \ud800 label"
        case "oneof name as a key":
            measurement["measurementValue"] = {}
        case "extension-like key":
            doc["[foo.bar]"] = 1
        case _:
            raise AssertionError(change)
    return doc


#: change -> whether the fast check is sure (None: whatever it says, as long as it agrees)
EDGE_CASES: dict[str, bool | None] = {
    "as is": True,
    "proto names": True,
    "proto name for one field": True,
    "both names for one field": False,
    "sex as a number": True,
    "sex as a numeric string": False,
    "sex unknown number": False,
    "sex as a bool": False,
    "no sex": True,
    "wrong sex": False,
    "no age": True,
    "age as a range": True,
    "empty age": True,
    "bad age": True,
    "two fields of a oneof": False,
    "a oneof and null": False,
    "excluded feature": True,
    "excluded as a string": False,
    "excluded disease": True,
    "feature without type": True,
    "unknown HPO term": True,
    "not an HPO term": True,
    "measurement without quantity": True,
    "measurement with an empty value": True,
    "measurement with an empty quantity": True,
    "quantity as an integer": True,
    "quantity as a string": False,
    "quantity as a bool": False,
    "quantity huge": False,
    "quantity infinite": False,
    "quantity NaN": False,
    "complex value": False,
    "no measurements": True,
    "no features": True,
    "empty lists": True,
    "extra unknown field": False,
    "extra unknown nested field": False,
    "wrong type: id as a number": False,
    "wrong type: subject as a list": False,
    "wrong type: features as an object": False,
    "null value": False,
    "null id": False,
    "null in a list": False,
    "null metaData": False,
    "no id": True,
    "empty subject": True,
    "no subject": True,
    "no metaData": True,
    "empty metaData": True,
    "bad timestamp": False,
    "timestamp without zone": False,
    "timestamp with offset and nanos": True,
    "timestamp as a number": False,
    "integer in range": True,
    "integer negative for uint32": False,
    "integer as a string": False,
    "integer as a float": False,
    "map of strings": True,
    "non-ascii strings": True,
    "lone surrogate": False,
    "oneof name as a key": False,
    "extension-like key": False,
}


@pytest.mark.parametrize("change", list(EDGE_CASES))
def test_edge_cases_agree_with_parse_dict(change: str, base: dict[str, Any],
                                          tmp_path: Path) -> None:
    document = edit(base, change)
    verdict = agree(document, tmp_path / "packet.json")
    expected = EDGE_CASES[change]
    if expected is not None:
        assert verdict == expected, change


def test_edge_cases_give_the_expected_results(base: dict[str, Any], tmp_path: Path) -> None:
    """Defaults and alternative spellings read as ParseDict would (checked directly)."""
    def load(change: str) -> Individual:
        path = tmp_path / f"{change}.json"
        path.write_text(json.dumps(edit(base, change)))
        return load_phenopacket(path)

    original = load("as is")
    assert original.phenotypes and original.diseases and original.measurements
    snake = load("proto names")
    assert vars(snake) | {"phenopacket": None} == vars(original) | {"phenopacket": None}
    assert load("sex as a number").sex == "male"
    assert load("no sex").sex == "unknown"
    no_age = load("no age")
    assert no_age.age_iso is None and no_age.age_years is None
    assert load("age as a range").age_iso is None
    assert load("excluded feature").excluded_phenotypes == original.phenotypes[:1]
    assert load("excluded disease").diseases == []
    assert load("measurement without quantity").measurements == []
    assert load("measurement with an empty quantity").measurements == [
        {"assay": original.measurements[0]["assay"], "value": 0.0, "unit": ""}]
    quantity = load("quantity as an integer").measurements[0]["value"]
    assert quantity == 134.0 and isinstance(quantity, float)
    assert load("no features").phenotypes == []


@pytest.mark.parametrize(("change", "message"), [
    ("no id", "the phenopacket has no id"),
    ("empty subject", "no subject.id"),
    ("no subject", "no subject.id"),
    ("no metaData", "no metaData"),
    ("unknown HPO term", "'HP:9999999' is not a term of the Human Phenotype Ontology"),
    ("feature without type", "'' is not a term of the Human Phenotype Ontology"),
    ("bad age", "'44 years' is not an ISO 8601 duration"),
    ("empty age", "'' is not an ISO 8601 duration"),
    ("wrong sex", "not a valid Phenopacket v2"),
    ("extra unknown field", 'has no field named "comment"'),
])
def test_errors_are_the_same(change: str, message: str, base: dict[str, Any],
                             tmp_path: Path) -> None:
    path = tmp_path / "packet.json"
    path.write_text(json.dumps(edit(base, change)))
    with pytest.raises(InputError) as fast:
        load_phenopacket(path)
    with pytest.raises(InputError) as slow:
        load_phenopacket(path, fast=False)
    assert str(fast.value) == str(slow.value)
    assert message in str(fast.value) and str(path) in str(fast.value)


CANDIDATES: list[object] = [None, "", "x", "HP:0000505", "FEMALE", "2024-01-02T00:00:00Z", 0, 1,
                            -1, 2**40, 2**70, 1.5, 12.0, True, False, [], [{}], {}, {"id": "x"},
                            "\ud800", "P3Y"]


def mutate(document: Any, rng: random.Random) -> Any:
    """One random change somewhere in the document: a value replaced, a key removed, renamed
    (to its proto name or to nonsense) or added."""
    doc = copy.deepcopy(document)
    containers: list[Any] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict | list) and value:
            containers.append(value)
            for item in value.values() if isinstance(value, dict) else value:
                walk(item)
    walk(doc)
    target = rng.choice(containers)
    if isinstance(target, list):
        target[rng.randrange(len(target))] = rng.choice(CANDIDATES)
        return doc
    key = rng.choice(list(target))
    action = rng.randrange(5)
    if action == 0:
        del target[key]
    elif action == 1:
        target[proto_names({key: 0}).popitem()[0]] = target.pop(key)
    elif action == 2:
        target[proto_names({key: 0}).popitem()[0]] = copy.deepcopy(target[key])
    elif action == 3:
        target[rng.choice(["age", "ontologyClass", "value", "quantity", "id", "bogus",
                           "excluded", "sex", "created", "onset"])] = rng.choice(CANDIDATES)
    else:
        target[key] = rng.choice(CANDIDATES)
    return doc


def test_random_changes_agree_with_parse_dict(base: dict[str, Any], tmp_path: Path) -> None:
    rng = random.Random(20240615)
    verdicts = {True: 0, False: 0}
    for _ in range(400):
        document = base
        for _ in range(rng.randrange(1, 4)):
            document = mutate(document, rng)
        verdicts[agree(document, tmp_path / "packet.json")] += 1
    assert verdicts[True] > 20 and verdicts[False] > 20  # both paths were exercised


@pytest.mark.parametrize(("text", "sure"), [
    ("2024-01-02T00:00:00Z", True),
    ("2024-01-02T00:00:00.123456789Z", True),
    ("2024-01-02T00:00:00.5+01:00", True),
    ("2024-01-02T00:00:00-05:30", True),
    ("2024-02-29T23:59:59Z", True),
    ("0001-01-01T00:00:00Z", True),
    ("9999-12-31T23:59:59.999999999Z", True),
    ("0001-01-01T00:00:00+01:00", False),  # out of Timestamp's range
    ("9999-12-31T23:59:59-01:00", False),
    ("0000-01-01T00:00:00Z", False),
    ("2023-02-29T00:00:00Z", False),
    ("2024-01-02T24:00:00Z", False),
    ("2024-01-02T00:60:00Z", False),
    ("2024-01-02T00:00:60Z", False),
    ("2024-01-02T00:00:00.1234567890Z", False),
    ("2024-01-02t00:00:00Z", False),
    ("2024-01-02 00:00:00Z", False),
    ("2024-01-02T00:00:00", False),
    ("2024-01-02T00:00:00z", False),
    ("2024-1-2T00:00:00Z", False),
    ("\uff12024-01-02T00:00:00Z", False),
    ("2024-01-02T00:00:00Z ", False),
    ("2024-01-02", False),
])
def test_timestamps(text: str, sure: bool) -> None:
    assert _timestamp(text, 0) is sure
    if sure:
        Timestamp().FromJsonString(text)  # accepted by protobuf too


@pytest.mark.parametrize("data", [
    b'{"id": "a"}\n', b'{"id": "a",\r\n"x": 1,}\r\n', b'{\r"id":\r"a"\r}', b"\xef\xbb\xbf{}",
    b"\xff{}", b'{"id": "\xc3"}', b"", b'{"label": "' + b"x" * 200_000 + b'"}',
])
def test_reading_is_read_text(data: bytes, tmp_path: Path) -> None:
    """The packet is read as by Path.read_text(encoding="utf-8"): newlines, BOM, errors."""
    from genofed.ingest.phenopackets import _read_text

    def result(path: Path, read: Any) -> object:
        try:
            return read(path)
        except Exception as exc:
            return type(exc), str(exc)

    path = tmp_path / "packet.json"
    path.write_bytes(data)
    for target in (path, tmp_path / "missing.json", tmp_path):
        assert result(target, _read_text) == result(
            target, lambda p: p.read_text(encoding="utf-8"))
    assert outcome(path, fast=True) == outcome(path, fast=False)


def test_an_unknown_sex_number_is_an_input_error(base: dict[str, Any], tmp_path: Path) -> None:
    """Protobuf lets any number through an open proto3 enum; ingest names the field instead of
    failing with a KeyError."""
    path = tmp_path / "packet.json"
    path.write_text(json.dumps(edit(base, "sex unknown number")))
    for fast in (True, False):
        with pytest.raises(InputError, match=r"subject\.sex 7 is not a value") as refused:
            load_phenopacket(path, fast=fast)
        assert refused.value.field == "subject.sex"
