"""The network file and `genofed network ...`: create, add (local node, exported entry, remote
keys as PEM or JWK), remove, show, member-info, join; errors name the file and the field."""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from typer.testing import CliRunner

from genofed.cli.main import app
from genofed.config.node import init_node, load_config
from genofed.federation.network import (
    LiveNetwork,
    NetworkFileError,
    add_member,
    create_network,
    load_network,
    member_for_node,
    member_from,
    remove_member,
)

runner = CliRunner()


def genofed(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200",
                                                               "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def _b64(number: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


@pytest.mark.parametrize("command", [["network"], ["network", "init"], ["network", "add"],
                                     ["network", "remove"], ["network", "show"],
                                     ["network", "member-info"], ["network", "join"],
                                     ["hub"], ["hub", "serve"]])
def test_every_command_has_help(command: list[str]) -> None:
    output = genofed(*command, "--help")
    assert "Usage:" in output and len(output.split()) > 25


def test_an_operator_builds_a_network(tmp_path: Path) -> None:
    fi, se = tmp_path / "fi", tmp_path / "se"
    init_node(fi, node_id="fi-hel", country="FI")
    init_node(se, node_id="se-sto", country="SE")
    network = tmp_path / "net.toml"
    genofed("network", "init", network, "--name", "nordic")

    assert "Added fi-hel (FI" in genofed("network", "add", network, "--node", fi, "--url",
                                         "https://fi.example/")
    # the SE operator exports its entry; the network operator adds it without the node dir
    exported = tmp_path / "se.json"
    exported.write_text(genofed("network", "member-info", se, "--url", "https://se.example"))
    assert "PRIVATE" not in exported.read_text()
    genofed("network", "add", network, "--from", exported)
    # a remote node's public keys as files, the agreement key as a JWK
    agreement = x25519.X25519PrivateKey.generate().public_key()
    (tmp_path / "dk.jwk").write_text(json.dumps({
        "kty": "OKP", "crv": "X25519",
        "x": base64.urlsafe_b64encode(agreement.public_bytes_raw()).rstrip(b"=").decode()}))
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    (tmp_path / "dk.sig.jwk").write_text(json.dumps({
        "kty": "EC", "crv": "P-256", "x": _b64(numbers.x), "y": _b64(numbers.y)}))
    genofed("network", "add", network, "--id", "dk-cph", "--country", "dk", "--url",
            "https://dk.example", "--signing-key", tmp_path / "dk.sig.jwk",
            "--agreement-key", tmp_path / "dk.jwk")

    data = tomllib.loads(network.read_text())
    assert data["format"] == "genofed-network/1" and data["name"] == "nordic"
    assert data["version"] == 4  # init + three additions
    assert [(m["id"], m["country"], m["base_url"]) for m in data["members"]] == [
        ("fi-hel", "FI", "https://fi.example"), ("se-sto", "SE", "https://se.example"),
        ("dk-cph", "DK", "https://dk.example")]
    assert all(m["signing_public_key"].startswith("-----BEGIN PUBLIC KEY") and
               m["agreement_public_key"].startswith("-----BEGIN PUBLIC KEY")
               for m in data["members"])  # JWKs are written back as PEM
    assert member_for_node(se, "https://se.example") == load_network(network).member("se-sto")

    again = runner.invoke(app, ["network", "add", str(network), "--node", str(fi), "--url",
                                "https://fi.example"])
    assert again.exit_code == 1 and "already a member" in again.output

    genofed("network", "remove", network, "se-sto")
    shown = genofed("network", "show", network)
    assert "fi-hel" in shown and "dk-cph" in shown and "removed: se-sto on" in shown
    assert "version 5" in shown

    genofed("network", "join", fi, network)
    assert load_config(fi).federation.network_file == str(network.resolve())
    refused = runner.invoke(app, ["network", "join", str(se), str(network)])
    assert refused.exit_code == 1 and "not a member" in refused.output


def test_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "net.toml"
    create_network(path, "errors")
    with pytest.raises(NetworkFileError, match="already exists"):
        create_network(path, "errors")
    with pytest.raises(NetworkFileError, match="network name"):
        create_network(tmp_path / "other.toml", "Not A Name")
    node = tmp_path / "n"
    init_node(node, node_id="nl-ams", country="NL")
    entry = member_for_node(node, "https://nl.example").model_dump()
    with pytest.raises(NetworkFileError, match="'base_url': 'ftp://x' is not an http"):
        member_from({**entry, "base_url": "ftp://x"})
    with pytest.raises(NetworkFileError, match="'signing_public_key': invalid signing key"):
        member_from({**entry, "signing_public_key": entry["agreement_public_key"]})
    with pytest.raises(NetworkFileError, match="'country'"):
        member_from({**entry, "country": "Netherlands"})
    with pytest.raises(NetworkFileError, match="not a member"):
        remove_member(path, "nl-ams")

    path.write_text('format = "genofed-network/1"\nname = "x"\n')
    with pytest.raises(NetworkFileError, match=rf"{path}: 'name': .*'version': Field required"):
        load_network(path)
    path.write_text("name = [")
    with pytest.raises(NetworkFileError, match=f"{path}: invalid TOML"):
        load_network(path)
    with pytest.raises(NetworkFileError, match="no such network file"):
        load_network(tmp_path / "missing.toml")


def test_a_live_network_follows_edits_and_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "net.toml"
    create_network(path, "live")
    live = LiveNetwork(path)
    assert live.current().members == ()
    node = tmp_path / "n"
    init_node(node, node_id="be-bru", country="BE")
    add_member(path, member_for_node(node, "https://be.example"))
    assert [m.id for m in live.current().members] == ["be-bru"]
    remove_member(path, "be-bru")
    current = live.current()
    assert current.members == () and current.removal("be-bru") is not None
    path.write_text("garbage = [")
    with pytest.raises(NetworkFileError, match="invalid TOML"):
        live.current()  # not the last good copy: a revoked member must stay revoked
