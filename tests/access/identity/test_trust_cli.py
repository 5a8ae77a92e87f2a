"""`genofed access trust`: trusting a login issuer and its visas through the command line, applied
by a running node on its next request, audited, with clear refusals; node.toml errors name file,
line and field; a node whose node.toml breaks refuses requests until it is fixed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from genofed.config.node import init_node, load_config
from genofed.server.app import create_app
from tests.support import bearer, genofed, served

QUERY = {"meta": {"apiVersion": "v2.0"}, "query": {"requestedGranularity": "count"}}


@pytest.fixture
def node(tmp_path: Path) -> Path:
    path = tmp_path / "node"
    init_node(path, node_id="trusting", country="FI")
    return path


def _count(url: str, token: str) -> httpx.Response:
    return httpx.post(f"{url}/beacon/individuals", json=QUERY, headers=bearer(token), timeout=30)


def test_a_running_node_applies_trust_changes_at_once(node: Path, issuer: Any) -> None:
    token = issuer.access_token("alice")
    with served(create_app(node)) as url:
        refused = _count(url, token)
        assert refused.status_code == 401 and issuer.url in refused.text, refused.text

        genofed("access", "trust", "add", node, issuer.url, check=True)
        assert _count(url, token).status_code == 200  # same process: no restart

        listed = json.loads(genofed("access", "trust", "list", node, "--json",
                                    check=True).stdout)
        assert listed == [{"issuer": issuer.url, "tokens": True,
                           "visasJku": issuer.visa_trust[1]}]

        genofed("access", "trust", "remove", node, issuer.url, check=True)
        assert _count(url, issuer.access_token("alice")).status_code == 401
    trail = genofed("audit", "list", node, "--event", "trust.change", "--json", check=True)
    details = [json.loads(line)["detail"] for line in trail.stdout.splitlines()]
    assert details == [f"trusted={issuer.url} tokens=yes jku={issuer.visa_trust[1]}",
                       f"untrusted={issuer.url}"]


def test_trust_for_visas_only_and_a_given_jku(node: Path) -> None:
    genofed("access", "trust", "add", node, "https://dac.example.org/", "--visas-only",
            "--jku", "https://dac.example.org/jwks.json", check=True)
    config = load_config(node)
    assert config.access.oidc_issuers == []
    assert [(t.iss, t.jku) for t in config.access.trusted_visas] == [
        ("https://dac.example.org", "https://dac.example.org/jwks.json")]


@pytest.mark.parametrize(("args", "words"), [
    (["http://login.example.org"], "plain http on a network address"),
    (["ftp://login.example.org"], "not an http(s) URL"),
    (["http://127.0.0.1:9"], "--jku URL"),  # nothing answers: discovery fails, says what to do
    (["https://login.example.org", "--tokens-only", "--visas-only"], "neither tokens nor visas"),
])
def test_bad_trust_is_refused_and_nothing_changes(node: Path, args: list[str],
                                                  words: str) -> None:
    before = (node / "node.toml").read_text()
    result = genofed("access", "trust", "add", node, *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert words in " ".join(result.stderr.split())
    assert (node / "node.toml").read_text() == before


def test_removing_an_issuer_the_node_does_not_trust_is_refused(node: Path) -> None:
    result = genofed("access", "trust", "remove", node, "https://nobody.example.org")
    assert result.returncode == 1 and "does not trust" in result.stderr


def test_configuration_errors_name_file_line_and_field(node: Path) -> None:
    path = node / "node.toml"
    path.write_text(path.read_text().replace("trusted_visas = []",
                                             'trusted_visas = ["http://127.0.0.1:9000"]'))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), start=1)
                if text.startswith("trusted_visas"))
    result = genofed("node", "info", node)
    message = " ".join(result.stderr.split())
    assert result.returncode == 1
    assert f"{path}, line {line}, field access.trusted_visas[0]:" in message
    assert "genofed access trust add" in message  # the hint says how to write it instead


def test_a_broken_node_toml_is_refused_until_fixed(node: Path) -> None:
    path = node / "node.toml"
    good = path.read_text()
    with served(create_app(node)) as url:
        assert httpx.get(f"{url}/beacon/info").status_code == 200
        path.write_text(good.replace("count_floor = 5", "count_floor = -1"))
        broken = httpx.get(f"{url}/beacon/info")
        assert broken.status_code == 503
        assert "configuration cannot be read" in broken.json()["error"]["errorMessage"]
        assert httpx.get(f"{url}/htsget/service-info").json()["htsget"]["error"]
        path.write_text(good)
        assert httpx.get(f"{url}/beacon/info").status_code == 200
