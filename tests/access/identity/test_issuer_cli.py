"""`genofed issuer ...` as an operator and a test author meet it: helpful --help, init with demo
users, tokens on stdout for scripts, and `serve` answering real OIDC requests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from typer.testing import CliRunner

from genofed.access.identity.authenticator import PassportAuthenticator
from genofed.access.identity.issuer import LocalIssuer
from genofed.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["init"], ["serve"], ["token"], ["users"],
                                     ["add-client"], ["rotate-key"]],
                         ids=lambda c: " ".join(c) or "issuer")
def test_every_issuer_command_explains_itself(command: list[str]) -> None:
    result = runner.invoke(app, ["issuer", *command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Usage:" in result.output
    assert len(result.output.split()) > 25


def test_init_token_users_and_rotate(tmp_path: Path) -> None:
    directory = tmp_path / "issuer"
    created = runner.invoke(app, ["issuer", "init", str(directory), "--url",
                                  "http://127.0.0.1:9123", "--demo-users"])
    assert created.exit_code == 0, created.output
    printed = "".join(created.output.split())  # rich wraps long lines at the runner's width
    for word in ("alice", "bob", "dana", "jku=http://127.0.0.1:9123/jwks",
                 "demo-passwords.toml"):
        assert word in printed
    again = runner.invoke(app, ["issuer", "init", str(directory), "--url", "http://x:1"])
    assert again.exit_code == 1 and "refusing to overwrite" in " ".join(again.output.split())

    issuer = LocalIssuer(directory)
    token = runner.invoke(app, ["issuer", "token", str(directory), "--user", "alice"])
    assert token.exit_code == 0
    claims = issuer.verify_access_token(token.stdout.strip())  # the whole stdout is the token
    assert claims["sub"] == issuer.user("alice").sub and claims["iss"] == issuer.url
    passport = runner.invoke(app, ["issuer", "token", str(directory), "--user", "bob",
                                   "--passport"]).stdout.strip()
    assert len(jwt.decode(passport, options={"verify_signature": False})[
        "ga4gh_passport_v1"]) == 1
    unknown = runner.invoke(app, ["issuer", "token", str(directory), "--user", "zoe"])
    assert unknown.exit_code == 1
    assert "users: alice, bob, dana" in " ".join(unknown.output.split())

    listing = runner.invoke(app, ["issuer", "users", str(directory)])
    assert listing.output.count("researcher=True") == 2

    old_kid = issuer.jwks()["keys"][0]["kid"]
    rotated = runner.invoke(app, ["issuer", "rotate-key", str(directory)])
    assert rotated.exit_code == 0
    assert jwt.get_unverified_header(issuer.access_token("alice"))["kid"] != old_kid
    assert len(issuer.jwks()["keys"]) == 2


def test_add_client_registers_and_merges_redirect_uris(tmp_path: Path) -> None:
    directory = tmp_path / "issuer"
    LocalIssuer.create(directory, url="http://127.0.0.1:9123")
    added = runner.invoke(app, ["issuer", "add-client", str(directory), "portal",
                                "--redirect-uri", "http://127.0.0.1:8080/callback"])
    assert added.exit_code == 0, added.output
    assert "http://127.0.0.1:8080/callback" in added.output and "portal" in added.output
    again = runner.invoke(app, ["issuer", "add-client", str(directory), "portal",
                                "--redirect-uri", "http://127.0.0.1:8080/callback",
                                "--redirect-uri", "https://portal.example.org/callback"])
    assert again.exit_code == 0, again.output
    client = LocalIssuer(directory).client("portal")
    assert client is not None and client.redirect_uris == [
        "http://127.0.0.1:8080/callback", "https://portal.example.org/callback"]

    relative = runner.invoke(app, ["issuer", "add-client", str(directory), "portal",
                                   "--redirect-uri", "/callback"])
    assert relative.exit_code == 1
    assert "must be an absolute http(s) URL" in " ".join(relative.output.split())
    missing = runner.invoke(app, ["issuer", "add-client", str(directory), "portal"])
    assert missing.exit_code == 2 and "--redirect-uri" in missing.output


def test_missing_issuer_directory_says_how_to_create_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["issuer", "token", str(tmp_path / "none"), "--user", "a"])
    assert result.exit_code == 1 and "genofed issuer init" in " ".join(result.output.split())


def test_serve_answers_oidc_over_http(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    directory = tmp_path / "issuer"
    LocalIssuer.create(directory, url=url, demo_users=True)
    # The `issuer` sub-app in its own process (the tests above reach it through `genofed`;
    # importing every other command here would only slow the start).
    server = subprocess.Popen(
        [sys.executable, "-c", "from genofed.cli.issuer import app; app()", "serve",
         str(directory), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        token = runner.invoke(app, ["issuer", "token", str(directory), "--user", "alice"])
        auth = PassportAuthenticator(oidc_issuers=[url],
                                     trusted_visas=[(url, f"{url}/jwks")])
        principal = auth.authenticate(f"Bearer {token.stdout.strip()}")
        assert principal is not None and principal.researcher and principal.accepted_terms
        auth.http.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        assert server.stderr is not None
        server.stderr.close()
