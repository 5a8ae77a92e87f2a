"""Record-level Beacon answers on a controlled dataset are released only on a valid visa, and
every refusal is audited — tested end to end over real HTTP: a node served on loopback, a local
OIDC issuer pulling the node's visas (as LS-AAI pulls them from REMS), a DAC member deciding."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from genofed.access.audit import entries
from genofed.access.governance import Governance
from genofed.access.identity.issuer import LocalIssuer
from genofed.config.node import VisaTrust, init_node, load_config, save_config
from genofed.ingest import ingest_dataset
from genofed.server.app import create_app
from genofed.server.issuer import running_issuer
from genofed.server.loopback import LoopbackServer
from tests.support import genofed

DATASET = "ds-controlled"
RECORDS = {"meta": {"apiVersion": "v2.0"}, "query": {
    "requestParameters": {"datasets": [DATASET]}, "requestedGranularity": "record",
    "pagination": {"skip": 0, "limit": 5}}}


@dataclass
class Deployment:
    node_dir: Path
    url: str
    issuer: LocalIssuer
    stranger: LocalIssuer  # an issuer the node does not trust

    def records(self, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{self.url}/beacon/individuals", json=RECORDS, headers=headers,
                          timeout=30)

    def audit(self) -> list[Any]:
        governance = Governance.open(self.node_dir)
        try:
            return list(entries(governance.db))
        finally:
            governance.close()


@pytest.fixture(scope="module")
def deployment(beacon_node: Any, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("governed")
    node_dir = root / "node"
    with LoopbackServer() as server, \
            running_issuer(root / "issuer",
                                visa_sources=[f"{server.url}/access/visas"]) as issuer, \
            running_issuer(root / "stranger") as stranger:
        init_node(node_dir, node_id="gov-node", country="SE")
        config = load_config(node_dir)
        config.access.public_url = server.url
        config.access.oidc_issuers = [issuer.url]
        iss, jku = issuer.visa_trust
        config.access.trusted_visas = [VisaTrust(iss=iss, jku=jku)]
        config.access.dac_members = [f"{issuer.url}|{issuer.user('dana').sub}"]
        save_config(node_dir, config)
        summary = beacon_node.cohorts[DATASET]
        ingest_dataset(node_dir, DATASET, summary.vcf, phenopackets=summary.phenopackets_dir,
                       metadata=summary.dataset_metadata, populations=summary.populations)
        server.start(create_app(node_dir))
        yield Deployment(node_dir, server.url, issuer, stranger)


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, signature = token.split(".")

    def load(part: str) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part)
                                                                                   % 4)))
        return decoded

    return load(head), load(body), signature


def _encode(header: dict[str, Any], claims: dict[str, Any], signature: str) -> str:
    def dump(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    return f"{dump(header)}.{dump(claims)}.{signature}"


def _bad_tokens(d: Deployment) -> dict[str, tuple[str, int]]:
    """Every token the issue lists, each of which must be refused: name -> (token, status)."""
    issuer = d.issuer
    grant = issuer.visa("alice", "ControlledAccessGrants", DATASET, by="dac")
    good = issuer.passport("alice", extra_visas=[grant])
    header, claims, signature = _segments(good)
    jwk = httpx.get(issuer.jwks_url, timeout=10).json()["keys"][0]
    public_key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_pem = public_key.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    tokens = {
        "alg none": (_encode({**header, "alg": "none"}, claims, ""), 401),
        "tampered payload": (_encode(header, {**claims, "sub": "mallory"}, signature), 401),
        "expired": (issuer.passport("alice", extra_visas=[grant], issued=now - 7200,
                                    lifetime=60), 401),
        "not yet valid": (issuer.passport("alice", extra_visas=[grant], issued=now + 3600),
                          401),
        "wrong issuer": (d.stranger.passport("alice", extra_visas=[
            d.stranger.visa("alice", "ControlledAccessGrants", DATASET, by="dac")]), 401),
        "untrusted jku": (issuer.passport("alice", extra_visas=[issuer.visa(
            "alice", "ControlledAccessGrants", DATASET, by="dac",
            jku="http://127.0.0.1:9/evil/jwks")]), 403),
        "visa for another dataset": (issuer.passport("alice", extra_visas=[issuer.visa(
            "alice", "ControlledAccessGrants", "ds-other", by="dac")]), 403),
        "visa of another identity": (issuer.passport("alice", extra_visas=[issuer.visa(
            "alice", "ControlledAccessGrants", DATASET, by="dac", sub="someone-else")]), 403),
        "unknown condition prefix": (issuer.passport("alice", extra_visas=[issuer.visa(
            "alice", "ControlledAccessGrants", DATASET, by="dac",
            conditions=[[{"type": "AffiliationAndRole", "value": "regex:.*"}]])]), 403),
    }
    # the classic confusion attack: HS256 keyed with the issuer's published RS256 key
    hs_header = {**header, "alg": "HS256"}
    signing_input = _encode(hs_header, claims, "").rstrip(".")
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    tokens["HS256 with the RS256 public key"] = (
        f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}", 401)
    return tokens


def test_bad_tokens_and_visas_are_refused_audited_and_release_nothing(d: Deployment) -> None:
    for name, (token, status) in _bad_tokens(d).items():
        before = len(d.audit())
        response = d.records(token)
        assert response.status_code == status, (name, response.text)
        document = response.json()
        assert "error" in document and "response" not in document, name
        assert "Traceback" not in response.text
        new = d.audit()[before:]
        assert new and all(e.decision == "deny" for e in new), (name, new)
        assert not any(e.decision == "allow" and e.action == "beacon.record" for e in new)
    # the well-formed token with the same visa is the control: it does get records
    grant = d.issuer.visa("alice", "ControlledAccessGrants", DATASET, by="dac")
    response = d.records(d.issuer.passport("alice", extra_visas=[grant]))
    assert response.status_code == 200, response.text
    (result_set,) = response.json()["response"]["resultSets"]
    assert result_set["returnedGranularity"] == "record" and result_set["results"]


@pytest.fixture
def d(deployment: Deployment) -> Deployment:
    return deployment


def test_journey_apply_approve_query_revoke(d: Deployment) -> None:
    alice = d.issuer.access_token("alice")
    dana = {"Authorization": f"Bearer {d.issuer.access_token('dana')}"}
    # 1. no visa yet: the record-level query is refused
    assert d.records(alice).status_code == 403
    # 2. alice applies: health/medical research, publication planned
    application = httpx.post(f"{d.url}/access/applications", headers={
        "Authorization": f"Bearer {alice}"}, json={
        "datasets": [DATASET], "duration_days": 30,
        "purpose": {"terms": ["DUO:0000006"], "text": "LDL cholesterol GWAS"}}, timeout=30)
    assert application.status_code == 201, application.text
    app_doc = application.json()
    (assessment,) = app_doc["datasets"]
    assert assessment["assessment"] == "needs-review", assessment  # PUB modifier
    # 3. the DAC member approves; the node signs a visa
    decision = httpx.post(f"{d.url}/access/applications/{app_doc['id']}/decision",
                          headers=dana, json={"decision": "approve", "note": "ok"}, timeout=30)
    assert decision.status_code == 200, decision.text
    (visa,) = decision.json()["visas"]
    header = jwt.get_unverified_header(visa["visa"])
    assert header["jku"] == f"{d.url}/access/jwks.json"
    claims = jwt.decode(visa["visa"], options={"verify_signature": False})
    assert claims["ga4gh_visa_v1"]["value"] == DATASET and claims["ga4gh_visa_v1"]["by"] == "dac"
    # 4. alice logs in again: her passport (userinfo) now carries the node's visa
    alice = d.issuer.access_token("alice")
    response = d.records(alice)
    assert response.status_code == 200, response.text
    (result_set,) = response.json()["response"]["resultSets"]
    assert result_set["returnedGranularity"] == "record" and result_set["results"]
    # 5. revoked: the very next request with the same token is refused
    revoked = httpx.post(f"{d.url}/access/visas/{visa['jti']}/revoke", headers=dana,
                         json={"note": "end of project"}, timeout=30)
    assert revoked.status_code == 200, revoked.text
    refused = d.records(alice)
    assert refused.status_code == 403 and "revoked" in refused.text
    # 6. the audit trail shows it all, pseudonymously, and verifies
    trail = d.audit()
    records = [e for e in trail if e.action == "beacon.record" and e.dataset_id == DATASET]
    assert [e.decision for e in records][-3:] == ["allow", "deny", "deny"] or \
        [e.decision for e in records][-2:] == ["allow", "deny"]
    assert "revoked" in records[-1].reason
    assert not any("alice" in e.to_json().lower() for e in trail)
    verified = genofed("audit", "verify", d.node_dir)
    assert verified.returncode == 0, verified.stderr


def test_editing_one_audit_row_fails_verification(d: Deployment, tmp_path: Path) -> None:
    """Last, as it tampers with the deployment's trail (on a copy of the database)."""
    import shutil

    copy = tmp_path / "node"
    shutil.copytree(d.node_dir, copy, symlinks=True)
    with sqlite3.connect(copy / "governance.sqlite") as db:
        (table,) = [r[0] for r in db.execute(
            "select name from sqlite_master where type='table' and name like '%audit%' "
            "and name not like '%head%'")]
        db.execute(f"update {table} set decision = 'allow' where seq = 2")
    result = genofed("audit", "verify", copy)
    assert result.returncode != 0
    assert "2" in result.stdout + result.stderr
