"""The whole story, as an auditor reads it back: a governance journey through the /access HTTP
API and the `genofed access dac` commands, on SQLite and PostgreSQL, then `genofed audit list`,
its filters and `genofed audit verify` run as an auditor runs them (subprocesses)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from genofed.access.dac import Identity
from genofed.access.db import GovernanceDB
from genofed.access.governance import Governance
from genofed.access.http import AccessContext
from genofed.access.policy import Action
from genofed.access.principal import Grant, Principal
from genofed.access.router import router
from genofed.config.node import init_node, load_config, save_config
from genofed.errors import AuthenticationError
from genofed.store.metadata import DatasetMetadata
from tests.support import genofed

LOGIN = "https://login.example.org"
RESEARCHER = Identity(LOGIN, "researcher-1")
MEMBER = Identity(LOGIN, "dac-alice")
SECOND = Identity("https://other-login.example.net", "dac|bob")
OUTSIDER = Identity(LOGIN, "mallory")
PEOPLE = {"researcher": RESEARCHER, "member": MEMBER, "second": SECOND, "outsider": OUTSIDER}


def _controlled(dataset_id: str, duo: str) -> DatasetMetadata:
    return DatasetMetadata.model_validate({
        "id": dataset_id, "name": dataset_id, "accessTier": "controlled",
        "dataUseConditions": {"duoDataUse": [{"id": duo}]}})


DATASETS = {d.id: d for d in (_controlled("gru-cohort", "DUO:0000042"),
                              _controlled("hmb-cohort", "DUO:0000006"),
                              _controlled("t2d-cohort", "DUO:0000042"))}


class BearerTable:
    """Authenticator: 'Bearer <name>' -> that person; any other token is refused (401)."""

    def __init__(self, people: dict[str, Identity]) -> None:
        self.people = people

    def authenticate(self, authorization: str | None) -> Principal | None:
        if authorization is None:
            return None
        who = self.people.get(authorization.removeprefix("Bearer ").strip())
        if who is None:
            raise AuthenticationError("token signature does not verify")
        return Principal(issuer=who.issuer, subject=who.subject, expires=2**40,
                         researcher=True)


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


@pytest.fixture
def governed_node(tmp_path: Path, database_url: str) -> Path:
    """A fresh node whose governance database is the backend under test."""
    node = tmp_path / "node"
    init_node(node, node_id="trail-node", country="FI")
    config = load_config(node)
    config.access.database_url = database_url
    save_config(node, config)
    return node


@contextmanager
def access_api(node: Path) -> Iterator[tuple[TestClient, Governance]]:
    """The node's /access API over its real governance state (datasets from DATASETS)."""
    governance = Governance.open(node, datasets=DATASETS.__getitem__)
    app = FastAPI()
    app.state.governance = governance
    app.state.access = AccessContext(BearerTable(PEOPLE), governance.policy)
    app.include_router(router, prefix="/access")
    try:
        yield TestClient(app), governance
    finally:
        governance.close()


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    document: dict[str, Any] = response.json()
    return document


def audit_list(node: Path, *filters: str) -> list[dict[str, Any]]:
    listed = genofed("audit", "list", node, *filters, "--json", check=True)
    return [json.loads(line) for line in listed.stdout.splitlines()]


def story(records: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    return [(r["action"], r["decision"], r["subject"], r["dataset_id"]) for r in records]


def test_governance_journey_is_read_back_from_the_trail(governed_node: Path,
                                                        database_url: str) -> None:
    node = governed_node
    for identity in (MEMBER, SECOND):
        genofed("access", "dac", "add", node, str(identity), check=True)

    with access_api(node) as (client, governance):
        body = {"datasets": ["gru-cohort", "hmb-cohort"], "durationDays": 30,
                "purpose": {"terms": ["HMB"], "text": "Statin response, ask jane@example.org"}}
        first = ok(client.post("/access/applications", json=body, headers=as_("researcher")), 201)
        decision = f"/access/applications/{first['id']}/decision"
        refused = client.post(decision, json={"decision": "approve"}, headers=as_("outsider"))
        assert refused.status_code == 403
        ok(client.post(decision, json={"decision": "return", "note": "which statin?"},
                       headers=as_("member")))
        ok(client.post(f"/access/applications/{first['id']}/resubmit",
                       json={"note": "simvastatin"}, headers=as_("researcher")))
        approved = ok(client.post(decision, json={"decision": "approve"}, headers=as_("second")))
        visa = next(v for v in approved["visas"] if v["datasetId"] == "gru-cohort")

        # the holder uses the visa, which the data policy records in the same chain
        holder = Principal(issuer=LOGIN, subject=RESEARCHER.subject, expires=2**40, grants=(
            Grant("gru-cohort", "node", "dac", visa["expiresAt"], visa["jti"]),))
        assert governance.policy.decide(holder, DATASETS["gru-cohort"], Action.ANALYSIS).allowed

        other = ok(client.post("/access/applications", headers=as_("researcher"), json={
            **body, "datasets": ["t2d-cohort"]}), 201)
        ok(client.post(f"/access/applications/{other['id']}/decision",
                       json={"decision": "reject"}, headers=as_("member")))
        ok(client.post(f"/access/visas/{visa['jti']}/revoke", json={"note": "ended"},
                       headers=as_("member")))
        assert not governance.policy.decide(holder, DATASETS["gru-cohort"],
                                            Action.ANALYSIS).allowed
    genofed("access", "dac", "remove", node, str(SECOND), check=True)

    records = audit_list(node)
    researcher, member, second, outsider = (p.pseudonym for p in (RESEARCHER, MEMBER, SECOND,
                                                                  OUTSIDER))
    both = ("gru-cohort", "hmb-cohort")
    assert story(records) == [
        ("dac.add", "allow", member, None),
        ("dac.add", "allow", second, None),
        *(("application.submit", "allow", researcher, d) for d in both),
        *(("application.approve", "deny", outsider, d) for d in both),
        *(("application.return", "allow", member, d) for d in both),
        *(("application.resubmit", "allow", researcher, d) for d in both),
        *(("application.approve", "allow", second, d) for d in both),
        *(("visa.sign", "allow", second, d) for d in both),
        ("analysis", "allow", researcher, "gru-cohort"),
        ("application.submit", "allow", researcher, "t2d-cohort"),
        ("application.reject", "allow", member, "t2d-cohort"),
        ("visa.revoke", "allow", member, "gru-cohort"),
        ("analysis", "deny", researcher, "gru-cohort"),
        ("dac.remove", "allow", second, None),
    ]
    by_action = {(r["action"], r["dataset_id"], r["decision"]): r for r in records}
    assert f"application={first['id']}" in by_action["application.submit", "gru-cohort",
                                                      "allow"]["detail"]
    assert f"application={other['id']}" in by_action["application.reject", "t2d-cohort",
                                                      "allow"]["detail"]
    signed = by_action["visa.sign", "gru-cohort", "allow"]["detail"]
    assert f"jti={visa['jti']}" in signed and f"holder={researcher}" in signed
    assert "expires=" in signed
    assert visa["jti"] in by_action["analysis", "gru-cohort", "allow"]["reason"]
    assert f"jti={visa['jti']}" in by_action["visa.revoke", "gru-cohort", "allow"]["detail"]
    assert "revoked" in by_action["analysis", "gru-cohort", "deny"]["reason"]
    assert "by=operator" in by_action["dac.remove", None, "allow"]["detail"]
    everything = json.dumps(records)
    for secret in ("researcher-1", "dac-alice", "mallory", "jane@example.org", "Statin",
                   "simvastatin", "which statin"):
        assert secret not in everything

    # the auditor's filters
    assert story(audit_list(node, "--subject", researcher[:8])) == [
        r for r in story(records) if r[2] == researcher]
    assert story(audit_list(node, "--subject", str(MEMBER))) == [
        r for r in story(records) if r[2] == member]
    assert [r["action"] for r in audit_list(node, "--dataset", "gru-cohort",
                                            "--action", "visa")] == ["visa.sign", "visa.revoke"]
    assert story(audit_list(node, "--event", "application", "--decision", "deny")) == [
        ("application.approve", "deny", outsider, d) for d in both]
    assert [r["action"] for r in audit_list(node, "--action", "dac", "--since",
                                            records[2]["at"])] == ["dac.remove"]
    table = genofed("audit", "list", node, "--action", "visa.sign", check=True).stdout
    header, *rows = [line.split("\t") for line in table.splitlines()]
    assert header == ["seq", "at", "subject", "action", "decision", "dataset", "reason",
                      "detail"]
    assert [row[2] for row in rows] == [second, second]  # pseudonyms in full
    assert {f"jti={v['jti']}" for v in approved["visas"]} <= {
        part for row in rows for part in row[7].split(" ")}  # ids in full
    bad = genofed("audit", "list", node, "--subject", "jane@example.org")
    assert bad.returncode == 1 and "--subject" in bad.stderr

    # the real trail verifies, and still shows tampering
    verified = genofed("audit", "verify", node, check=True)
    assert f"intact: {len(records)} records" in verified.stdout
    revocation = by_action["visa.revoke", "gru-cohort", "allow"]["seq"]
    db = GovernanceDB(database_url)
    try:
        with db.write() as session:
            session.execute(text("UPDATE audit_records SET subject = :s WHERE seq = :n"),
                            {"s": outsider, "n": revocation})
    finally:
        db.close()
    broken = genofed("audit", "verify", node)
    assert broken.returncode == 1
    assert (f"record {revocation} was edited: its content no longer matches its hash"
            in broken.stderr)
    assert broken.stderr.count("edited") == 1  # said once
