"""The htsget HTTP API in process: ticket shape, the spec's errors and status codes, access
(no token, bad token, no visa, encrypted-only datasets), audit of every ticket and data block,
and encrypted delivery (a slice decrypts with the client's key to exactly the plain slice)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genofed.access.policy import Action
from genofed.formats.crypt4gh import KeyPair, decrypt_stream, encode_public_key
from tests.files.conftest import HtsgetNode, bearer
from tests.support import HTSGET_DATA

CRYPT4GH_CLI = Path(sys.executable).with_name("crypt4gh")
BAM = HTSGET_DATA / "bam" / "htsnexus_test_NA12878.bam"
#: Tickets and data served from a node whose files are on disk, and from one keeping them in S3.
BOTH_STORES = pytest.mark.parametrize("htsget_node", ["local", "s3"], indirect=True)


def fetch(client: TestClient, ticket: dict[str, Any]) -> bytes:
    """What an htsget client does with a ticket: concatenate its URLs' data."""
    blob = bytearray()
    for url in ticket["htsget"]["urls"]:
        if url["url"].startswith("data:"):
            blob += base64.b64decode(url["url"].split(",", 1)[1])
        else:
            response = client.get(url["url"], headers=url.get("headers", {}))
            assert response.status_code == 200, response.text
            assert int(response.headers["content-length"]) == len(response.content)
            blob += response.content
    return bytes(blob)


def _error(response: Any, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"htsget"} and body["htsget"]["error"] == error, body
    return str(body["htsget"]["message"])


def test_service_info(client: TestClient) -> None:
    for path, datatype in (("/htsget/service-info", None), ("/htsget/variants/service-info",
                                                            "variants"),
                           ("/htsget/reads/service-info", "reads")):
        info = client.get(path).json()
        assert info["type"] == {"group": "org.ga4gh", "artifact": "htsget", "version": "1.3.0"}
        assert {"id", "name", "organization", "version"} <= set(info)
        assert info["htsget"].get("datatype") == datatype
    assert client.get("/htsget/reads/service-info").json()["htsget"]["formats"] == ["BAM",
                                                                                   "CRAM"]


@BOTH_STORES
def test_ticket_shape_and_audit(client: TestClient, htsget_node: HtsgetNode,
                                tmp_path: Path) -> None:
    before = len(htsget_node.decisions())
    response = client.get("/htsget/reads/ds-plain/htsnexus_test_NA12878",
                          params={"referenceName": "11", "start": 5_000_000, "end": 5_020_000},
                          headers=bearer("token-plain"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.ga4gh.htsget.v1.3.0")
    assert response.text.startswith('{"htsget":')
    ticket = response.json()
    assert ticket["htsget"]["format"] == "BAM"
    urls = ticket["htsget"]["urls"]
    assert {u["class"] for u in urls} == {"header", "body"} and urls[0]["class"] == "header"
    served = [u for u in urls if not u["url"].startswith("data:")]
    sub = htsget_node.issuer.user("bob").sub
    assert served and all("ds-plain" not in u["url"] and sub not in u["url"] for u in served)
    sliced = tmp_path / "slice.bam"
    sliced.write_bytes(fetch(client, ticket))
    got = subprocess.run(["samtools", "view", str(sliced)], capture_output=True).stdout
    assert got == subprocess.run(["samtools", "view", str(BAM), "11:5000001-5020000"],
                                 capture_output=True).stdout
    # one audited decision for the ticket, one per data block fetched
    new = htsget_node.decisions()[before:]
    assert [d.action for d in new] == [Action.HTSGET_TICKET] + [Action.HTSGET_DATA] * len(served)
    assert all(d.allowed and d.subject == "bob" and d.dataset_id == "ds-plain" for d in new)
    ticket_id = new[0].detail.split()[0]
    assert all(d.detail.startswith(ticket_id) for d in new)


@BOTH_STORES
def test_post_regions_and_header_class(client: TestClient, htsget_node: HtsgetNode,
                                       tmp_path: Path) -> None:
    body = {"format": "BCF", "regions": [{"referenceName": "1", "start": 999, "end": 60_000},
                                         {"referenceName": "X", "end": 20_000},
                                         {"referenceName": "1", "start": 40_000,
                                          "end": 80_000}]}
    response = client.post("/htsget/variants/ds-plain/synthetic", json=body,
                           headers=bearer("token-plain"))
    assert response.status_code == 200, response.text
    sliced = tmp_path / "slice.bcf"
    sliced.write_bytes(fetch(client, response.json()))
    view = ["bcftools", "view", "-H"]
    assert (subprocess.run([*view, str(sliced)], capture_output=True).stdout
            == subprocess.run([*view, "-r", "1:1000-80000,X:1-20000",
                               str(htsget_node.synthetic_bcf)], capture_output=True).stdout)
    header = client.get("/htsget/variants/ds-plain", params={"class": "header"},
                        headers=bearer("token-plain")).json()
    assert {u["class"] for u in header["htsget"]["urls"]} == {"header", "body"}
    sliced = tmp_path / "header.vcf.gz"
    sliced.write_bytes(fetch(client, header))
    view = ["bcftools", "view", "--no-version"]
    assert (subprocess.run([*view, str(sliced)], capture_output=True).stdout
            == subprocess.run([*view, "-h", str(htsget_node.cohort_vcf)],
                              capture_output=True).stdout)




@pytest.mark.parametrize(("method", "path", "params", "status", "error"), [
    ("GET", "/htsget/variants/ds-plain", {"referenceName": "20", "start": "500", "end": "10"},
     400, "InvalidRange"),
    ("GET", "/htsget/variants/ds-plain", {"referenceName": "chr99"}, 404, "NotFound"),
    ("GET", "/htsget/variants/ds-plain", {"start": "5"}, 400, "InvalidInput"),
    ("GET", "/htsget/variants/ds-plain", {"referenceName": "20", "start": "-1"}, 400,
     "InvalidInput"),
    ("GET", "/htsget/variants/ds-plain", {"referenceName": "20", "end": str(2**32)}, 400,
     "InvalidInput"),
    ("GET", "/htsget/variants/ds-plain", {"referenceName": "20", "start": "ten"}, 400,
     "InvalidInput"),
    ("GET", "/htsget/variants/ds-plain", {"format": "BAM"}, 400, "UnsupportedFormat"),
    ("GET", "/htsget/variants/ds-plain", {"format": "BCF"}, 400, "UnsupportedFormat"),
    ("GET", "/htsget/reads/ds-plain/htsnexus_test_NA12878", {"format": "SAM"}, 400,
     "UnsupportedFormat"),
    ("GET", "/htsget/variants/ds-plain", {"class": "body"}, 400, "InvalidInput"),
    ("GET", "/htsget/variants/ds-plain", {"class": "header", "referenceName": "20"}, 400,
     "InvalidInput"),
    ("GET", "/htsget/variants/ds-plain", {"colour": "blue"}, 400, "InvalidInput"),
    ("GET", "/htsget/variants/ds-plain", {"tags": "AB,CD", "notags": "CD"}, 400,
     "InvalidInput"),
    ("GET", "/htsget/variants/ds-plain", {"encryptionScheme": "PGP"}, 400, "InvalidInput"),
    ("GET", "/htsget/variants/ds-plain", {"encryptionScheme": "C4GH"}, 400, "InvalidInput"),
    ("GET", "/htsget/reads/ds-plain/htsnexus_test_NA12878", {"referenceName": "*",
                                                              "start": "5"}, 400,
     "InvalidInput"),
    ("GET", "/htsget/variants/no-such-dataset", {}, 404, "NotFound"),
    ("GET", "/htsget/variants/ds-plain/no-such-file", {}, 404, "NotFound"),
    ("GET", "/htsget/reads/ds-plain", {}, 404, "NotFound"),
    ("GET", "/htsget/variants/ds-plain/htsnexus_test_NA12878", {}, 404, "NotFound"),
    ("GET", "/htsget/nowhere", {}, 404, "NotFound"),
    ("POST", "/htsget/variants/ds-plain?format=VCF", {}, 400, "InvalidInput"),
    ("POST", "/htsget/variants/ds-plain", {"regions": []}, 400, "InvalidInput"),
    ("POST", "/htsget/variants/ds-plain", {"regions": [{"start": 5}]}, 400, "InvalidInput"),
    ("POST", "/htsget/variants/ds-plain",
     {"regions": [{"referenceName": "20", "start": 10, "end": 10}]}, 400, "InvalidRange"),
    ("POST", "/htsget/variants/ds-plain", {"class": "header", "regions": [
        {"referenceName": "20"}]}, 400, "InvalidInput"),
    ("POST", "/htsget/variants/ds-plain", {"regions": [{"referenceName": "chr99"}]}, 404,
     "NotFound"),
    ("POST", "/htsget/variants/ds-plain", {"regions": [{"referenceName": "20"}] * 10_001}, 413,
     "PayloadTooLarge"),
])
def test_spec_errors(client: TestClient, method: str, path: str, params: dict[str, Any],
                     status: int, error: str) -> None:
    if method == "GET":
        response = client.get(path, params=params, headers=bearer("token-plain"))
    else:
        response = client.post(path, json=params, headers=bearer("token-plain"))
    _error(response, status, error)


def test_malformed_post_bodies(client: TestClient) -> None:
    good = bearer("token-plain")
    _error(client.post("/htsget/variants/ds-plain", content=b"{oops", headers=good), 400,
           "InvalidInput")
    _error(client.post("/htsget/variants/ds-plain", content=b"x" * (1 << 21), headers=good),
           413, "PayloadTooLarge")
    # /beacon keeps its own envelope
    assert "error" in client.get("/beacon/nowhere").json()


def test_access_is_checked_and_audited(client: TestClient, htsget_node: HtsgetNode) -> None:
    path = "/htsget/variants/ds-plain"
    before = len(htsget_node.decisions())
    assert "authorization is required" in _error(client.get(path), 403, "PermissionDenied")
    _error(client.get(path, headers=bearer("forged")), 401, "InvalidAuthentication")
    _error(client.get(path, headers=bearer("token-none")), 403, "PermissionDenied")
    _error(client.get("/htsget/variants/ds-enc", headers=bearer("token-plain")), 403,
           "PermissionDenied")
    assert [(d.action, d.allowed, d.subject) for d in htsget_node.decisions()[before:]] == [
        (Action.HTSGET_TICKET, False, None), (Action.HTSGET_TICKET, False, None),
        (Action.HTSGET_TICKET, False, "dana"), (Action.HTSGET_TICKET, False, "bob")]
    # a dataset whose files leave the node only encrypted
    message = _error(client.get("/htsget/variants/ds-enc", headers=bearer("token-both")), 403,
                     "PermissionDenied")
    assert "encryptionScheme=C4GH" in message


def test_data_urls_are_sealed_and_expire(client: TestClient, htsget_node: HtsgetNode) -> None:
    ticket = client.get("/htsget/reads/ds-plain/htsnexus_test_NA12878",
                        params={"referenceName": "20"}, headers=bearer("token-plain")).json()
    url = next(u["url"] for u in ticket["htsget"]["urls"] if not u["url"].startswith("data:"))
    token = url.rsplit("/", 1)[1]
    tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    _error(client.get(tampered), 401, "InvalidAuthentication")
    sealer = client.app.state.htsget.sealer  # type: ignore[attr-defined]
    claims = sealer.open(token)
    claims.pop("exp")
    expired = url.replace(token, sealer.seal(claims, expires=int(time.time()) - 1))
    assert "expired" in _error(client.get(expired), 401, "InvalidAuthentication")
    assert client.get(url).status_code == 200


def _public_key_header(keys: KeyPair) -> dict[str, str]:
    text = encode_public_key(keys.public).encode()
    return {"Htsget-Context-Public-Key": base64.b64encode(text).decode()}


@BOTH_STORES
def test_encrypted_slice_decrypts_to_the_plain_slice(client: TestClient, tmp_path: Path) -> None:
    client_keys = KeyPair.generate()
    path = "/htsget/reads/ds-plain/htsnexus_test_NA12878"
    for params in ({"referenceName": "11", "start": "5000000", "end": "5050000"},
                   {"referenceName": "20", "start": "6000000", "end": "6000100"},
                   {"class": "header"}, {}):
        plain = fetch(client, client.get(path, params=params, headers=bearer("token-plain")).json())
        response = client.get(path, params={**params, "encryptionScheme": "C4GH"},
                              headers={**bearer("token-plain"), **_public_key_header(client_keys)})
        assert response.status_code == 200, response.text
        urls = response.json()["htsget"]["urls"]
        assert "class" not in urls[0]
        encrypted = fetch(client, response.json())
        assert encrypted.startswith(b"crypt4gh")
        assert decrypt_stream(encrypted, client_keys.secret) == plain, params
    # ... and with the crypt4gh package's own command line
    secret = tmp_path / "client.sec"
    from crypt4gh.keys import c4gh

    c4gh.generate(str(secret), str(tmp_path / "client.pub"), None, b"client")
    public = (tmp_path / "client.pub").read_bytes()
    header = {"Htsget-Context-Public-Key": base64.b64encode(public).decode()}
    params = {"referenceName": "11", "start": "5000000", "end": "5050000"}
    encrypted = fetch(client, client.get(path, params={**params, "encryptionScheme": "c4gh"},
                                         headers={**bearer("token-plain"), **header}).json())
    decrypted = subprocess.run([str(CRYPT4GH_CLI), "decrypt", "--sk", str(secret)],
                               input=encrypted, capture_output=True, check=True).stdout
    plain_ticket = client.get(path, params=params, headers=bearer("token-plain")).json()
    assert decrypted == fetch(client, plain_ticket)


@BOTH_STORES
def test_encrypted_delivery_of_uploads_from_another_implementation(client: TestClient,
                                                                   tmp_path: Path) -> None:
    """ds-enc holds the htsget-rs files as uploaded (encrypted for bob = the node)."""
    client_keys = KeyPair.generate()
    headers = {**bearer("token-both"), **_public_key_header(client_keys)}
    for path, params, source, tool, suffix in [
        ("/htsget/reads/ds-enc/htsnexus_test_NA12878", {"referenceName": "11", "start": "4999975",
                                                         "end": "5000100"},
         BAM, ["samtools", "view"], ".bam"),
        ("/htsget/variants/ds-enc/sample1-bcbio-cancer", {"referenceName": "chrM", "start": "150",
                                                           "end": "3000"},
         HTSGET_DATA / "vcf" / "sample1-bcbio-cancer.vcf.gz", ["bcftools", "view", "-H"],
         ".vcf.gz"),
    ]:
        ticket = client.get(path, params={**params, "encryptionScheme": "C4GH"},
                            headers=headers)
        assert ticket.status_code == 200, ticket.text
        sliced = tmp_path / f"slice{suffix}"
        sliced.write_bytes(decrypt_stream(fetch(client, ticket.json()), client_keys.secret))
        region = f"{params['referenceName']}:{int(params['start']) + 1}-{params['end']}"
        expected = [*tool, str(source), region] if tool[0] == "samtools" else \
            [*tool, "-r", region, str(source)]
        assert (subprocess.run([*tool, str(sliced)], capture_output=True).stdout
                == subprocess.run(expected, capture_output=True).stdout)


def test_bad_public_keys_and_cors(client: TestClient) -> None:
    path = "/htsget/variants/ds-plain"
    bad = {**bearer("token-plain"), "Htsget-Context-Public-Key": "bm90IGEga2V5"}
    _error(client.get(path, params={"encryptionScheme": "C4GH"}, headers=bad), 400,
           "InvalidInput")
    response = client.get(path, headers={**bearer("token-plain"), "Origin": "https://portal.example"})
    assert response.headers["access-control-allow-origin"] == "https://portal.example"
    preflight = client.options(path, headers={"Origin": "https://portal.example",
                                              "Access-Control-Request-Method": "GET",
                                              "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-headers"] == "authorization"


def test_no_access_policy_means_no_files(htsget_node: HtsgetNode) -> None:
    app = htsget_node.app()
    del app.state.access
    with TestClient(app) as bare:
        response = bare.get("/htsget/variants/ds-plain", headers=bearer("token-plain"))
    assert "no access policy" in _error(response, 403, "PermissionDenied")


def test_ticket_json_is_compact_and_has_one_root(client: TestClient) -> None:
    text = client.get("/htsget/variants/ds-plain", params={"referenceName": "20"},
                      headers=bearer("token-plain")).text
    assert list(json.loads(text)) == ["htsget"]
