"""`genofed network ...`: create a network file, add and remove members, show it, and export a
node's member entry for the network operator."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from genofed.cli.output import (
    Column,
    console,
    fail,
    json_option,
    note,
    print_json,
    print_table,
)
from genofed.errors import NetworkFileError
from genofed.federation.network import (
    Member,
    add_member,
    create_network,
    join_network,
    load_network,
    member_for_node,
    member_from,
    remove_member,
)

app = typer.Typer(
    help="Build the network file that lists member nodes (id, country, base URL, signing and "
    "key-agreement public keys). Members verify each other's signed requests against it.",
    no_args_is_help=True)

FILE = typer.Argument(..., help="The network file (TOML).")


@app.command("init")
def init(file: Path = FILE,
         name: str = typer.Option(..., "--name", help="Short lower-case name, e.g. 'gdi-demo'.")
         ) -> None:
    """Create an empty network file. An existing file is never overwritten."""
    network = create_network(file, name)
    console.print(f"Created network [bold]{network.name}[/] in {file}")
    console.print(f"Next: genofed network add {file} --node NODE_DIR --url URL")


def _read_key(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot read the {what} ({exc.strerror})")


def _member(node: Path | None, url: str | None, entry: Path | None, node_id: str | None,
            country: str | None, signing_key: Path | None,
            agreement_key: Path | None) -> Member:
    if node is not None:
        if url is None:
            fail("--url is needed with --node: the base URL the node serves at",
                 hint="e.g. --url https://genofed.fi.example")
        return member_for_node(node, url)
    if entry is not None:
        text = sys.stdin.read() if str(entry) == "-" else _read_key(entry, "member entry")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"{entry}: not JSON ({exc.msg} at line {exc.lineno})",
                 hint="it is the output of `genofed network member-info NODE_DIR --url URL`")
        if not isinstance(data, dict):
            fail(f"{entry}: a member entry is a JSON object")
        if url is not None:
            data["base_url"] = url
        return member_from(data)
    missing = [flag for flag, value in (("--id", node_id), ("--country", country),
                                        ("--url", url), ("--signing-key", signing_key),
                                        ("--agreement-key", agreement_key)) if value is None]
    if missing:
        fail(f"missing {', '.join(missing)}",
             hint="give --node NODE_DIR --url URL for a local node, --from ENTRY.json for an "
                  "exported entry, or all of --id --country --url --signing-key "
                  "--agreement-key for a remote node's public keys")
    assert signing_key is not None and agreement_key is not None
    return member_from({"id": node_id, "country": (country or "").upper(), "base_url": url,
                        "signing_public_key": _read_key(signing_key, "signing key"),
                        "agreement_public_key": _read_key(agreement_key, "agreement key")})


@app.command("add")
def add(
    file: Path = FILE,
    node: Path | None = typer.Option(None, "--node", help="A local node directory: its id, "
                                     "country and public keys are read from it."),
    url: str | None = typer.Option(None, "--url", help="The member's base URL (its Beacon is "
                                   "URL/beacon)."),
    entry: Path | None = typer.Option(None, "--from", help="A member entry exported with "
                                      "`genofed network member-info` ('-' = stdin)."),
    node_id: str | None = typer.Option(None, "--id", help="Remote node: its id."),
    country: str | None = typer.Option(None, "--country", help="Remote node: ISO 3166-1 "
                                       "alpha-2 code."),
    signing_key: Path | None = typer.Option(None, "--signing-key", help="Remote node: its ES256 "
                                            "public key, PEM or JWK file."),
    agreement_key: Path | None = typer.Option(None, "--agreement-key", help="Remote node: its "
                                              "X25519 public key, PEM or JWK file."),
    replace: bool = typer.Option(False, "--replace", help="Update the entry of an existing "
                                 "member (new URL or rotated keys)."),
) -> None:
    """Add a member: a local node (--node), an exported entry (--from), or a remote node's
    public keys (--id --country --url --signing-key --agreement-key)."""
    member = _member(node, url, entry, node_id, country, signing_key, agreement_key)
    network = add_member(file, member, replace=replace)
    console.print(f"Added [bold]{member.id}[/] ({member.country}, {member.base_url}) to network "
                  f"{network.name} (version {network.version}, {len(network.members)} members)")


@app.command("remove")
def remove(file: Path = FILE,
           node_id: str = typer.Argument(..., help="The id of the member to remove.")) -> None:
    """Remove a member. Members reading this file refuse its signed requests from then on
    (they reload the file when it changes; no restart)."""
    network = remove_member(file, node_id)
    console.print(f"Removed [bold]{node_id}[/] from network {network.name} (version "
                  f"{network.version}, {len(network.members)} members left)")


@app.command("show")
def show(
    file: Path = FILE,
    as_json: bool = json_option("the network", "Keys: name, version, updated, members (each: "
                                "id, country, baseUrl, signingKeyFingerprint, signingPublicKey, "
                                "agreementPublicKey), removed (each: id, removed)."),
) -> None:
    """Show the network: its members and former members.

    A member's signing key is shown by its fingerprint, the SHA-256 of the key's DER
    SubjectPublicKeyInfo in hex (whole: compare it with the one the member's operator reads
    out). On a terminal a table; otherwise tab-separated values under a header line (the lines
    about the network and its former members then go to standard error)."""
    network = load_network(file)
    if as_json:
        print_json({"name": network.name, "version": network.version,
                    "updated": network.updated,
                    "members": [{"id": m.id, "country": m.country, "baseUrl": m.base_url,
                                 "signingKeyFingerprint": _fingerprint(m.signing_public_key),
                                 "signingPublicKey": m.signing_public_key,
                                 "agreementPublicKey": m.agreement_public_key}
                                for m in network.members],
                    "removed": [{"id": r.id, "removed": r.removed} for r in network.removed]})
        return
    note(f"Network [bold]{network.name}[/], version {network.version}, updated "
         f"{network.updated}")
    print_table(
        (Column("member", identifier=True), Column("country"),
         Column("base URL", identifier=True),
         Column("signing key (SHA-256 of SPKI)", identifier=True)),
        ((m.id, m.country, m.base_url, _fingerprint(m.signing_public_key))
         for m in network.members),
        empty=f"No members yet: genofed network add {file} --node NODE_DIR --url URL")
    for removed in network.removed:
        note(f"  removed: {removed.id} on {removed.removed}")


def _fingerprint(pem: str) -> str:
    import base64
    import hashlib

    der = base64.b64decode("".join(line for line in pem.splitlines() if "-----" not in line))
    return hashlib.sha256(der).hexdigest()


@app.command("member-info")
def member_info(
    node_dir: Path = typer.Argument(..., help="The node directory."),
    url: str = typer.Option(..., "--url", help="The base URL this node serves at."),
) -> None:
    """Print this node's member entry (JSON: id, country, base URL, public keys) to hand to
    the network operator. Private keys never leave the key directory."""
    try:
        member = member_for_node(node_dir, url)
    except OSError as exc:
        fail(f"cannot read the node's public keys: {exc}")
    typer.echo(json.dumps(member.model_dump(), indent=2))


@app.command("join")
def join(
    node_dir: Path = typer.Argument(..., help="The node directory."),
    file: Path = FILE,
) -> None:
    """Make a node a network member on its side: from its next request on, a running node
    verifies signed peer requests against this file (`federation.network_file` in node.toml;
    no restart). Recorded in the audit trail (network.join)."""
    from genofed.access.changes import audited_change
    from genofed.access.events import GovernanceEvent

    network = load_network(file)
    with audited_change(node_dir, GovernanceEvent.NETWORK_JOIN, network=network.name,
                        version=network.version):
        join_network(node_dir, file)
    console.print(f"Node {node_dir} now follows network [bold]{network.name}[/] ({file}); "
                  "it verifies its peers' signed requests from now on.")


@app.command("leave")
def leave(node_dir: Path = typer.Argument(..., help="The node directory.")) -> None:
    """Stop a node following its network: from its next request on, a running node gives no
    peer standing to signed requests (they are answered as anyone's). Recorded in the audit
    trail (network.leave). The network's operator removes the member from the file with
    `genofed network remove`."""
    from genofed.access.changes import audited_change
    from genofed.access.events import GovernanceEvent
    from genofed.config.node import load_config
    from genofed.federation.network import leave_network, network_path_of

    config = load_config(node_dir)
    followed = config.federation.network_file
    if not followed:
        fail(f"node {config.node_id!r} is in no network; nothing to leave")
    name = "-"
    if followed:
        try:
            name = load_network(network_path_of(node_dir, followed)).name
        except NetworkFileError:
            name = "unreadable"
    with audited_change(node_dir, GovernanceEvent.NETWORK_LEAVE, network=name):
        path = leave_network(node_dir)
    console.print(f"Node {node_dir} no longer follows {path}.")
