"""The /access HTTP API over real governance state (SQLite and PostgreSQL). The caller comes
from a tiny authenticator defined here, mapping fixed bearer strings to Principals: the real
passport authenticator replaces it in the node app."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from genofed.access.audit import AuditLog
from genofed.access.dac import Committee, Identity
from genofed.access.db import GovernanceDB
from genofed.access.enforcement import GovernancePolicy
from genofed.access.governance import Governance
from genofed.access.http import AccessContext
from genofed.access.policy import Action
from genofed.access.principal import Grant, Principal
from genofed.access.router import router
from genofed.access.visas import VisaSigner
from genofed.errors import AuthenticationError
from genofed.store.metadata import DatasetMetadata

if TYPE_CHECKING:
    from conftest import People


class BearerTable:
    """Authenticator: 'Bearer <name>' -> the Principal registered under that name."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self.principals = principals

    def authenticate(self, authorization: str | None) -> Principal | None:
        if authorization is None:
            return None
        name = authorization.removeprefix("Bearer ").strip()
        if name not in self.principals:
            raise AuthenticationError("token not recognised")
        return self.principals[name]


class Client:
    """A synchronous face on httpx's ASGI transport: requests go through the whole app."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as c:
                return await c.request(method, url, **options)

        return asyncio.run(send())

    def get(self, url: str, **options: Any) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> httpx.Response:
        return self.request("POST", url, **options)


def principal(identity: Identity, *grants: Grant) -> Principal:
    return Principal(issuer=identity.issuer, subject=identity.subject, expires=2**40,
                     grants=grants, researcher=True)


@pytest.fixture
def client(db: GovernanceDB, audit: AuditLog, signer: VisaSigner, committee: Committee,
           policy: GovernancePolicy, people: People) -> Client:
    app = FastAPI()
    app.state.governance = Governance(db, audit, signer, committee, policy)
    app.state.access = AccessContext(BearerTable({
        "researcher": principal(people.researcher),
        "other": principal(people.other_researcher),
        "member": principal(people.member),
        "second-member": principal(people.second_member),
        "outsider": principal(people.outsider),
    }), policy)
    app.include_router(router, prefix="/access")
    return Client(app)


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


APPLICATION = {"datasets": ["gru-cohort", "hmb-irb-cohort"],
               "purpose": {"terms": ["HMB", "DUO:0000038"], "text": "Genetics of T2D."},
               "durationDays": 60}


def submit(client: Client, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/access/applications", json=body or APPLICATION,
                           headers=as_("researcher"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_jwks_verifies_issued_visas(client: Client, signer: VisaSigner) -> None:
    keys = client.get("/access/jwks.json").json()["keys"]
    assert [k["kid"] for k in keys] == [signer.kid] and keys[0]["alg"] == "ES256"
    assert "d" not in keys[0], "never the private part"
    application = submit(client)
    decided = client.post(f"/access/applications/{application['id']}/decision",
                          json={"decision": "approve", "note": "IRB seen"}, headers=as_("member"))
    assert decided.status_code == 200, decided.text
    passport = client.get("/access/visas", headers=as_("researcher")).json()
    assert len(passport["ga4gh_passport_v1"]) == 2
    for token in passport["ga4gh_passport_v1"]:
        claims = jwt.decode(token, jwt.PyJWK(keys[0]).key, algorithms=["ES256"])
        assert claims["ga4gh_visa_v1"]["type"] == "ControlledAccessGrants"


def test_apply_returns_the_preassessment(client: Client) -> None:
    application = submit(client)
    assert application["state"] == "submitted"
    assert {d["datasetId"]: d["assessment"] for d in application["datasets"]} == {
        "gru-cohort": "approve", "hmb-irb-cohort": "needs-review"}
    assert application["purpose"]["terms"] == ["DUO:0000006", "DUO:0000038"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({**APPLICATION, "datasets": ["nope"]}, 404, "nope"),
    ({**APPLICATION, "purpose": {"terms": ["IRB"], "text": "x"}}, 400, "modifier"),
    ({**APPLICATION, "durationDays": 0}, 400, "days"),
    ({**APPLICATION, "datasets": []}, 422, ""),
])
def test_bad_applications_are_refused_with_reasons(client: Client, body: dict[str, Any],
                                                   status: int, message: str) -> None:
    response = client.post("/access/applications", json=body, headers=as_("researcher"))
    assert response.status_code == status, response.text
    assert message in response.text


def test_login_is_required(client: Client) -> None:
    for method, path in (("get", "/access/applications"), ("get", "/access/visas"),
                         ("post", "/access/applications")):
        response = client.request(method, path, json=APPLICATION)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.get("/access/visas", headers=as_("forged")).status_code == 401


def test_committee_decides_once_and_others_are_refused(client: Client) -> None:
    application = submit(client)
    url = f"/access/applications/{application['id']}/decision"
    approve = {"decision": "approve"}
    assert client.post(url, json=approve, headers=as_("outsider")).status_code == 403
    assert client.post(url, json=approve, headers=as_("researcher")).status_code == 403
    assert client.post(url, json={"decision": "maybe"}, headers=as_("member")).status_code == 422
    first = client.post(url, json={"decision": "reject", "note": "no"}, headers=as_("member"))
    assert first.status_code == 200 and first.json()["state"] == "rejected"
    again = client.post(url, json=approve, headers=as_("second-member"))
    assert again.status_code == 409 and "rejected" in again.text
    missing = client.post("/access/applications/nope/decision", json=approve,
                          headers=as_("member"))
    assert missing.status_code == 404 and "nope" in missing.text


def test_applications_are_visible_to_their_applicant_and_the_committee(
        client: Client) -> None:
    application = submit(client)
    url = f"/access/applications/{application['id']}"
    assert client.get(url, headers=as_("researcher")).json()["id"] == application["id"]
    assert client.get(url, headers=as_("member")).status_code == 200
    assert client.get(url, headers=as_("other")).status_code == 404
    assert len(client.get("/access/applications", headers=as_("researcher"))
               .json()["applications"]) == 1
    assert client.get("/access/applications", headers=as_("other")).json()["applications"] == []
    assert len(client.get("/access/applications", headers=as_("member"))
               .json()["applications"]) == 1


def test_return_resubmit_approve_revoke(client: Client, policy: GovernancePolicy,
                                        datasets: dict[str, DatasetMetadata],
                                        people: People) -> None:
    application = submit(client)
    base = f"/access/applications/{application['id']}"
    client.post(f"{base}/decision", json={"decision": "return", "note": "attach IRB"},
                headers=as_("member"))
    assert client.post(f"{base}/resubmit", json={"note": "attached"},
                       headers=as_("other")).status_code == 404
    assert client.post(f"{base}/resubmit", json={"note": "attached"},
                       headers=as_("researcher")).json()["state"] == "submitted"
    approved = client.post(f"{base}/decision", json={"decision": "approve"},
                           headers=as_("second-member")).json()
    visa = next(v for v in approved["visas"] if v["datasetId"] == "gru-cohort")

    holder = principal(people.researcher, Grant("gru-cohort", "https://node.example.org", "dac",
                                                visa["expiresAt"], visa["jti"]))
    assert policy.decide(holder, datasets["gru-cohort"], Action.ANALYSIS).allowed

    revoke = f"/access/visas/{visa['jti']}/revoke"
    assert client.post(revoke, json={}, headers=as_("researcher")).status_code == 403
    revoked = client.post(revoke, json={"note": "misuse"}, headers=as_("member"))
    assert revoked.status_code == 200 and revoked.json()["revokedAt"]
    assert client.post(revoke, json={}, headers=as_("member")).status_code == 409
    assert not policy.decide(holder, datasets["gru-cohort"], Action.ANALYSIS).allowed
    remaining = client.get("/access/visas", headers=as_("researcher")).json()
    assert len(remaining["ga4gh_passport_v1"]) == 1


def test_node_app_serves_the_node_jwks(node: Path) -> None:
    """`create_app` mounts /access with the node's own signing key; no anonymous access."""
    from genofed.config.node import NodePaths, load_config
    from genofed.server.app import create_app

    config = load_config(node)
    expected = VisaSigner.for_node(NodePaths(node, config).signing_key, config)
    app = create_app(node)
    client = Client(app)
    keys = client.get("/access/jwks.json").json()["keys"]
    anonymous = client.get("/access/visas")
    app.state.governance.close()
    assert anonymous.status_code == 401 and anonymous.json()["error"]["errorCode"] == 401
    assert [k["kid"] for k in keys] == [expected.kid]
    assert expected.jku == f"http://127.0.0.1:{config.server.port}/access/jwks.json"
    assert (node / "governance.sqlite").is_file()


def test_approval_with_an_end_date(client: Client) -> None:
    application = submit(client)  # 60 days asked for
    url = f"/access/applications/{application['id']}/decision"
    end = (datetime.now(UTC) + timedelta(days=20)).replace(microsecond=0)
    past = client.post(url, json={"decision": "approve", "expires": "2001-01-01"},
                       headers=as_("member"))
    assert past.status_code == 400 and "has passed" in past.json()["error"]["errorMessage"]
    too_late = (datetime.now(UTC) + timedelta(days=61)).date().isoformat()
    beyond = client.post(url, json={"decision": "approve", "expires": too_late},
                         headers=as_("member"))
    assert beyond.status_code == 400 and "60 days" in beyond.json()["error"]["errorMessage"]
    assert client.get(f"/access/applications/{application['id']}",
                      headers=as_("member")).json()["state"] == "submitted"
    approved = client.post(url, json={"decision": "approve", "note": "IRB seen",
                                      "expires": end.isoformat().replace("+00:00", "Z")},
                           headers=as_("member"))
    assert approved.status_code == 200, approved.text
    document = approved.json()
    for visa in document["visas"]:
        assert visa["expiresAt"] == int(end.timestamp())
        assert jwt.decode(visa["visa"], options={"verify_signature": False})["exp"] == \
            int(end.timestamp())
    assert document["events"][-1]["kind"] == "end-date"
