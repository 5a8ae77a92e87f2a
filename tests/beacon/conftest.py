"""Fixtures for the Beacon tests: one small node with three simulated datasets (public,
registered, controlled), built once per session and trusting a local OIDC issuer (real HTTP on
loopback); clients for an anonymous caller, a registered researcher (ResearcherStatus visa) and a
researcher who also holds a ControlledAccessGrants visa for the controlled dataset; a validator
for the official Beacon v2 schemas."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from genofed.access.identity.issuer import LocalIssuer
from genofed.config.node import init_node, load_config, save_config
from genofed.ingest import ingest_dataset
from genofed.server.app import create_app
from genofed.sim import simulate_cohort
from genofed.sim.cohort import CohortSummary
from tests.s3 import keep_datasets_in_s3
from tests.support import SHARED, bearer, trust_issuer

STANDARDS = SHARED / "standards" / "beacon-v2"  # ../shared beside the repository
UPSTREAM = "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/"
VRS = "https://w3id.org/ga4gh/schema/vrs/1.3/vrs.json"

#: The VRS 1.3 schema is not vendored: this stub checks the shape genofed emits for a
#: Location (a SequenceLocation with a SequenceInterval of Numbers) and keeps the
#: `variation` oneOf discriminating (VRS variations carry a `type`; LegacyVariation has none).
VRS_STUB: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "definitions": {
        "Number": {"type": "object", "required": ["type", "value"],
                   "properties": {"type": {"const": "Number"}, "value": {"type": "integer"}}},
        "Location": {
            "type": "object", "required": ["type", "sequence_id", "interval"],
            "properties": {
                "type": {"const": "SequenceLocation"},
                "sequence_id": {"type": "string", "pattern": "^[^:]+:.+$"},
                "interval": {"type": "object", "required": ["type", "start", "end"],
                             "properties": {"type": {"const": "SequenceInterval"},
                                            "start": {"$ref": "#/definitions/Number"},
                                            "end": {"$ref": "#/definitions/Number"}}},
            },
        },
        "MolecularVariation": {"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["Allele", "Haplotype"]}}},
        "SystemicVariation": {"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["CopyNumberCount", "CopyNumberChange", "Genotype"]}}},
    },
}

ENTITY_SCHEMAS = {
    "genomicVariation": "models/json/beacon-v2-default-model/genomicVariations/defaultSchema.json",
    "individual": "models/json/beacon-v2-default-model/individuals/defaultSchema.json",
    "biosample": "models/json/beacon-v2-default-model/biosamples/defaultSchema.json",
    "dataset": "models/json/beacon-v2-default-model/datasets/defaultSchema.json",
    "cohort": "models/json/beacon-v2-default-model/cohorts/defaultSchema.json",
}
R = "framework/json/responses/"


def _registry() -> Registry:
    resources = []
    for path in STANDARDS.rglob("*.json"):
        if "examples" in path.parts:
            continue
        contents = json.loads(path.read_text(encoding="utf-8"))
        uri = UPSTREAM + path.relative_to(STANDARDS).as_posix()
        resources.append((uri, DRAFT202012.create_resource(contents)))
    resources.append((VRS, DRAFT202012.create_resource(VRS_STUB)))
    return Registry().with_resources(resources)


class SchemaValidator:
    """Validates documents against the vendored Beacon v2.1.1 schemas by relative path."""

    def __init__(self) -> None:
        self.registry = _registry()
        self._cache: dict[str, Draft202012Validator] = {}

    def errors(self, relative: str, document: Any) -> list[str]:
        validator = self._cache.get(relative)
        if validator is None:
            validator = Draft202012Validator({"$ref": UPSTREAM + relative},
                                             registry=self.registry)
            self._cache[relative] = validator
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:400]
                for e in validator.iter_errors(document)]

    def check(self, relative: str, document: Any) -> None:
        problems = self.errors(relative, document)
        assert not problems, f"{relative}:\n" + "\n".join(problems[:10])

    def check_response(self, document: dict[str, Any]) -> None:
        """A Beacon query response: the envelope for its returnedGranularity, and every record
        against its entity's default schema."""
        if "error" in document:
            self.check(R + "beaconErrorResponse.json", document)
            return
        meta = document["meta"]
        granularity = meta["returnedGranularity"]
        if "collections" in document.get("response", {}):
            self.check(R + "beaconCollectionsResponse.json", document)
            records = document["response"]["collections"]
        else:
            envelope = {"boolean": "beaconBooleanResponse.json",
                        "count": "beaconCountResponse.json",
                        "record": "beaconResultsetsResponse.json"}[granularity]
            self.check(R + envelope, document)
            if "response" in document:
                self.check(R + "beaconResultsetsResponse.json", document)
            records = [r for s in document.get("response", {}).get("resultSets", [])
                       for r in s["results"]]
        entity = meta["returnedSchemas"][0]["entityType"]
        for record in records:
            self.check(ENTITY_SCHEMAS[entity], record)


@pytest.fixture(scope="session")
def schemas() -> SchemaValidator:
    return SchemaValidator()


@dataclass
class BeaconNode:
    node_dir: Path
    cohorts: dict[str, CohortSummary]
    issuer: LocalIssuer


DATASETS = {
    # id: (tier, samples, seed, length in Mb)
    "ds-public": ("public", 60, 11, 0.3),
    "ds-registered": ("registered", 120, 12, 0.4),
    "ds-controlled": ("controlled", 90, 13, 0.3),
}


@pytest.fixture(scope="session")
def beacon_cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CohortSummary]:
    """The simulated cohorts of DATASETS (the same files for every node built of them)."""
    root = tmp_path_factory.mktemp("beacon-cohorts")
    return {dataset_id: simulate_cohort(root / dataset_id, samples=samples, seed=seed,
                                        length_mb=length, dataset_id=dataset_id,
                                        access_tier=tier)
            for dataset_id, (tier, samples, seed, length) in DATASETS.items()}


#: The node of each store backend, built once per session however many fixture instances ask.
_BEACON_NODES: dict[str, BeaconNode] = {}


@pytest.fixture(scope="session")
def beacon_node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                issuer: LocalIssuer, beacon_cohorts: dict[str, CohortSummary]) -> BeaconNode:
    """The node of DATASETS, its datasets on local disk; a module that parametrizes this
    fixture indirectly with "s3" gets the same node with its datasets kept in S3."""
    backend = getattr(request, "param", "local")
    if backend not in _BEACON_NODES:
        node_dir = tmp_path_factory.mktemp(f"beacon-{backend}") / "node"
        init_node(node_dir, node_id="test-node", country="FI")
        if backend == "s3":
            keep_datasets_in_s3(node_dir, request.getfixturevalue("s3"))
        # These tests hold the query engine to bcftools' truth, over one node that every
        # module queries: exposure accounting would make each answer depend on what other
        # tests asked first. It is on by default and tested on nodes of its own
        # (test_exposure.py).
        config = load_config(node_dir)
        config.disclosure.exposure_budget = 0
        save_config(node_dir, config)
        trust_issuer(node_dir, issuer)
        for dataset_id, (tier, _samples, _seed, _length) in DATASETS.items():
            summary = beacon_cohorts[dataset_id]
            # Only the registered dataset gets a gene table: geneId queries must cope with both.
            genes = summary.out_dir / "genes.bed" if tier == "registered" else None
            ingest_dataset(node_dir, dataset_id, summary.vcf,
                           phenopackets=summary.phenopackets_dir,
                           metadata=summary.dataset_metadata, populations=summary.populations,
                           genes=genes)
        if backend == "s3":  # served as by a machine that did not ingest
            shutil.rmtree(node_dir / "cache")
        _BEACON_NODES[backend] = BeaconNode(node_dir, beacon_cohorts, issuer)
    return _BEACON_NODES[backend]


@pytest.fixture(scope="session")
def researcher_token(issuer: LocalIssuer) -> str:
    """alice's passport: ResearcherStatus (the registered tier's counts), no dataset grants."""
    return issuer.passport("alice", lifetime=6 * 3600)


@pytest.fixture(scope="session")
def visa_token(issuer: LocalIssuer) -> str:
    """alice's passport with a ControlledAccessGrants visa for ds-controlled."""
    grant = issuer.visa("alice", "ControlledAccessGrants", "ds-controlled", by="dac",
                        lifetime=6 * 3600)
    return issuer.passport("alice", extra_visas=[grant], lifetime=6 * 3600)


@pytest.fixture(scope="session")
def app(beacon_node: BeaconNode) -> FastAPI:
    return create_app(beacon_node.node_dir)


@pytest.fixture(scope="session")
def anonymous_client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def client(app: FastAPI, researcher_token: str) -> Iterator[TestClient]:
    """A registered researcher: counts on registered and controlled datasets."""
    with TestClient(app, raise_server_exceptions=False,
                    headers=bearer(researcher_token)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def visa_client(app: FastAPI, visa_token: str) -> Iterator[TestClient]:
    """A researcher holding a ControlledAccessGrants visa for ds-controlled."""
    with TestClient(app, raise_server_exceptions=False,
                    headers=bearer(visa_token)) as test_client:
        yield test_client
