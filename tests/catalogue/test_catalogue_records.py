"""The small translations behind the catalogue records: dates, countries and ontology terms."""

from __future__ import annotations

import pytest
from rdflib import URIRef

from genofed.catalogue.records import country_iri, ontology_iri, temporal_literal

XSD = "http://www.w3.org/2001/XMLSchema#"


@pytest.mark.parametrize(("value", "datatype"), [
    ("2024-01-12T00:00:00Z", "dateTime"),
    ("2024-01-12T08:30:00+02:00", "dateTime"),
    ("2024-01-12", "date"),
])
def test_metadata_dates_become_typed_literals(value: str, datatype: str) -> None:
    literal = temporal_literal(value)
    assert literal is not None
    assert literal.value is not None  # rdflib read it as a well-typed value
    assert literal.datatype == URIRef(XSD + datatype)


@pytest.mark.parametrize("value", ["last spring", "", "2024-13-01"])
def test_free_text_dates_are_left_out(value: str) -> None:
    assert temporal_literal(value) is None


def test_countries_use_the_eu_authority_table() -> None:
    base = "http://publications.europa.eu/resource/authority/country/"
    assert country_iri("FI") == URIRef(base + "FIN")
    assert country_iri("gr") == country_iri("EL") == URIRef(base + "GRC")
    assert country_iri("US") is None  # outside Europe: no dct:spatial rather than a wrong one


def test_duo_curies_become_obo_purls() -> None:
    assert ontology_iri("DUO:0000042") == URIRef("http://purl.obolibrary.org/obo/DUO_0000042")
