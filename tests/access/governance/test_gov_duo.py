"""The DUO matcher: purposes against datasets' data use conditions, following DUO's hierarchy,
and the shipped term table against the DUO release in ../shared."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from importlib import resources

import pytest

from genofed.access.duo import DuoMatcher, Outcome, Purpose, duo_table
from genofed.errors import PurposeError
from genofed.store.metadata import DataUseConditions
from tests.support import SHARED

DUO_DIR = SHARED / "standards" / "duo"
NS = {"owl": "http://www.w3.org/2002/07/owl#",
      "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
      "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
      "oio": "http://www.geneontology.org/formats/oboInOwl#"}
RESOURCE = f"{{{NS['rdf']}}}resource"


def conditions(*uses: dict[str, object]) -> DataUseConditions:
    return DataUseConditions.model_validate({"duoDataUse": list(uses)})


def use(term: str, *modifiers: str) -> dict[str, object]:
    return {"id": term, "modifiers": [{"id": m} for m in modifiers]}


def assess(purpose: Purpose, *uses: dict[str, object]) -> tuple[Outcome, str]:
    result = DuoMatcher().assess(purpose, conditions(*uses))
    assert result.reasons, "every assessment gives reasons"
    return result.outcome, " | ".join(result.reasons)


HMB_PURPOSE = Purpose.parse(["HMB"])
GENETIC_T2D = Purpose.parse(["DUO:0000038", "DUO:0000040"], diseases=["MONDO:0005148"])


# -- the cases the issue names ---------------------------------------------------------------------

def test_gru_dataset_accepts_hmb_purpose() -> None:
    outcome, reasons = assess(HMB_PURPOSE, use("DUO:0000042"))
    assert outcome is Outcome.APPROVE and "GRU" in reasons


def test_disease_specific_dataset_denies_another_disease() -> None:
    asthma = Purpose.parse(["DS"], diseases=["MONDO:0004979"])
    outcome, reasons = assess(asthma, use("DUO:0000007", "MONDO:0005148"))
    assert outcome is Outcome.DENY
    assert "MONDO:0004979" in reasons and "MONDO:0005148" in reasons


def test_disease_specific_dataset_accepts_its_disease() -> None:
    outcome, _ = assess(GENETIC_T2D, use("DUO:0000007", "MONDO:0005148"))
    assert outcome is Outcome.APPROVE


def test_npu_denies_commercial_purpose() -> None:
    commercial = Purpose.parse(["HMB"], commercial=True)
    outcome, reasons = assess(commercial, use("DUO:0000042", "DUO:0000045"))
    assert outcome is Outcome.DENY and "NPU" in reasons and "commercial" in reasons
    assert assess(HMB_PURPOSE, use("DUO:0000042", "DUO:0000045"))[0] is Outcome.APPROVE


@pytest.mark.parametrize("modifier", ["NCU", "NPUNCU"])
def test_non_commercial_modifiers_deny_commercial_purpose(modifier: str) -> None:
    term = duo_table().get(modifier)
    assert term is not None
    outcome, _ = assess(Purpose.parse(["HMB"], commercial=True), use("DUO:0000006", term.id))
    assert outcome is Outcome.DENY


@pytest.mark.parametrize("modifier", ["IRB", "COL", "PUB", "RTN", "MOR", "TS", "US", "PS", "IS",
                                      "GS", "RS"])
def test_conditions_for_the_committee_need_review(modifier: str) -> None:
    term = duo_table().get(modifier)
    assert term is not None
    outcome, reasons = assess(HMB_PURPOSE, use("DUO:0000006", term.id))
    assert outcome is Outcome.NEEDS_REVIEW
    assert modifier in reasons


# -- the hierarchy and the other modifiers ---------------------------------------------------------

def test_hierarchy_gru_contains_hmb_contains_ds() -> None:
    table = duo_table()
    assert table.is_a("DUO:0000007", "DUO:0000006") and table.is_a("DUO:0000006", "DUO:0000042")
    assert not table.is_a("DUO:0000042", "DUO:0000006")
    # A disease-specific purpose fits every permission above DS...
    for permission in ("DUO:0000042", "DUO:0000006", "DUO:0000004"):
        assert assess(GENETIC_T2D, use(permission))[0] is Outcome.APPROVE
    # ...and a broader purpose does not fit a narrower permission.
    assert assess(HMB_PURPOSE, use("DUO:0000007", "MONDO:0005148"))[0] is Outcome.DENY
    assert assess(Purpose.parse(["GRU"]), use("DUO:0000006"))[0] is Outcome.DENY


def test_ancestry_research_fits_gru_and_poa_but_not_hmb() -> None:
    ancestry = Purpose.parse(["DUO:0000033"])
    assert assess(ancestry, use("DUO:0000042"))[0] is Outcome.APPROVE
    assert assess(ancestry, use("DUO:0000011"))[0] is Outcome.APPROVE
    outcome, reasons = assess(ancestry, use("DUO:0000006"))
    assert outcome is Outcome.DENY and "ancestry" in reasons
    assert assess(ancestry, use("DUO:0000042", "DUO:0000044"))[0] is Outcome.DENY  # NPOA
    assert assess(HMB_PURPOSE, use("DUO:0000011"))[0] is Outcome.DENY  # POA only


def test_methods_development_and_nmds() -> None:
    methods = Purpose.parse(["DUO:0000031"])
    assert assess(methods, use("DUO:0000006"))[0] is Outcome.APPROVE
    outcome, reasons = assess(methods, use("DUO:0000006", "DUO:0000015"))
    assert outcome is Outcome.DENY and "NMDS" in reasons


def test_genetic_studies_only() -> None:
    assert assess(Purpose.parse(["DUO:0000038"]), use("DUO:0000006", "DUO:0000016"))[0] \
        is Outcome.APPROVE
    assert assess(HMB_PURPOSE, use("DUO:0000006", "DUO:0000016"))[0] is Outcome.NEEDS_REVIEW


def test_deny_outweighs_review_and_gives_only_deny_reasons() -> None:
    asthma = Purpose.parse(["DS"], diseases=["MONDO:0004979"])
    outcome, reasons = assess(asthma, use("DUO:0000007", "MONDO:0005148", "DUO:0000021"))
    assert outcome is Outcome.DENY and "IRB" not in reasons


def test_several_permissions_are_alternatives() -> None:
    ancestry = Purpose.parse(["POA"])
    assert assess(ancestry, use("DUO:0000006"), use("DUO:0000011"))[0] is Outcome.APPROVE


def test_missing_or_unknown_conditions_go_to_the_committee() -> None:
    assert assess(HMB_PURPOSE)[0] is Outcome.NEEDS_REVIEW
    assert assess(HMB_PURPOSE, use("DUO:0000006", "DUO:0099999"))[0] is Outcome.NEEDS_REVIEW
    no_disease = Purpose.parse(["DS"])
    assert assess(no_disease, use("DUO:0000007", "MONDO:0005148"))[0] is Outcome.NEEDS_REVIEW


def test_disease_ontology_can_be_plugged_in() -> None:
    """With a disease hierarchy (e.g. MONDO), a subtype of the consented disease fits."""
    subtype_of = {("MONDO:0100000", "MONDO:0005148")}
    matcher = DuoMatcher(disease_within=lambda a, b: a == b or (a, b) in subtype_of)
    purpose = Purpose.parse(["DS"], diseases=["MONDO:0100000"])
    result = matcher.assess(purpose, conditions(use("DUO:0000007", "MONDO:0005148")))
    assert result.outcome is Outcome.APPROVE


@pytest.mark.parametrize("terms", [[], ["XYZ"], ["NPU"], ["DUO:0000021"], ["NRES"]])
def test_unusable_purposes_are_refused(terms: list[str]) -> None:
    with pytest.raises(PurposeError):
        Purpose.parse(terms)


def test_shorthands_become_curies() -> None:
    assert Purpose.parse(["hmb", "DUO:0000038"]).terms == ("DUO:0000006", "DUO:0000038")
    with pytest.raises(PurposeError, match="CURIE"):
        Purpose.parse(["DS"], diseases=["type 2 diabetes"])


# -- the shipped table against the ontology --------------------------------------------------------

def _curie(iri: str) -> str:
    return iri.rsplit("/", 1)[-1].replace("_", ":", 1)


def _restricted_to(cls: ET.Element) -> list[str]:
    """Fillers of `is restricted to` (DUO:0000010) restrictions, e.g. DS -> MONDO:0000001."""
    fillers = []
    for restriction in cls.findall("rdfs:subClassOf/owl:Restriction", NS):
        prop = restriction.find("owl:onProperty", NS)
        filler = restriction.find("owl:someValuesFrom", NS)
        if prop is not None and filler is not None \
                and prop.get(RESOURCE, "").endswith("DUO_0000010"):
            fillers.append(_curie(filler.get(RESOURCE, "")))
    return fillers


@pytest.mark.skipif(not (DUO_DIR / "duo.owl").is_file(), reason="DUO release not in ../shared")
def test_term_table_matches_the_duo_ontology() -> None:
    shipped = json.loads(resources.files("genofed.access").joinpath("duo_terms.json").read_text())
    root = ET.parse(DUO_DIR / "duo.owl").getroot()
    ontology: dict[str, dict[str, object]] = {}
    for cls in root.findall("owl:Class", NS):
        term_id = cls.findtext("oio:id", namespaces=NS)
        if not term_id or not term_id.startswith("DUO:"):
            continue
        parents = [_curie(s.get(RESOURCE, "")) for s in cls.findall("rdfs:subClassOf", NS)
                   if s.get(RESOURCE)]
        ontology[term_id] = {"label": cls.findtext("rdfs:label", namespaces=NS),
                             "shorthand": cls.findtext("oio:shorthand", namespaces=NS) or "",
                             "parents": parents, "restricted_to": _restricted_to(cls),
                             "obsolete": cls.findtext("owl:deprecated", namespaces=NS) == "true"
                             or any("ObsoleteClass" in p for p in parents)}
    current = {t for t, v in ontology.items() if not v["obsolete"]}
    assert set(shipped["terms"]) == current, "the table holds every current DUO term, no other"
    for term_id, term in shipped["terms"].items():
        source = ontology[term_id]
        for key in ("label", "shorthand", "parents", "restricted_to"):
            assert term[key] == source[key], f"{term_id} {key}"
    with (DUO_DIR / "duo.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            assert shipped["terms"][row["id"]]["label"] == row["label"], row["id"]
            assert shipped["terms"][row["id"]]["shorthand"] == row["shorthand"], row["id"]
    version = root.find("owl:Ontology/owl:versionIRI", NS)
    assert version is not None and shipped["version"] in version.get(RESOURCE, "")


def test_term_kinds_follow_the_hierarchy() -> None:
    table = duo_table()
    for term in table.terms.values():
        root = {"permission": "DUO:0000001", "modifier": "DUO:0000017"}.get(term.kind)
        if root is not None:
            assert table.is_a(term.id, root), term.id
        else:
            assert term.kind == "purpose" and "DUO:0000031" <= term.id <= "DUO:0000040"
