"""`genofed issuer ...`: a local OIDC issuer with GA4GH Passport visas, for a laptop node, the
demo and tests (LS-AAI plays this part in production)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from genofed.cli.output import Column, console, json_option, print_json, print_table

if TYPE_CHECKING:
    from genofed.access.identity.issuer import LocalIssuer

app = typer.Typer(
    help="A local OIDC login server that issues GA4GH Passports: discovery, JWKS, a sign-in "
    "page for web apps (authorization code flow with PKCE), token and userinfo endpoints, demo "
    "users, and visa sources (e.g. a node's DAC) whose ControlledAccessGrants it passes on. "
    "Stands in for LS-AAI on a laptop or in tests.",
    no_args_is_help=True)


def _open(issuer_dir: Path) -> LocalIssuer:
    from genofed.access.identity.issuer import LocalIssuer

    return LocalIssuer(issuer_dir)


@app.command("init")
def init(
    issuer_dir: Path = typer.Argument(..., help="Directory for the new issuer (created)."),
    url: str = typer.Option(..., "--url", help="The issuer URL, which is also its `iss` and "
                            "where `serve` listens, e.g. http://127.0.0.1:9000."),
    demo_users: bool = typer.Option(False, "--demo-users", help="Add demo users alice "
                                    "(registered researcher), bob (accepted terms only) and "
                                    "dana (DAC member), each with a generated password."),
    visa_source: list[str] = typer.Option([], "--visa-source", help="URL called at userinfo "
                                          "time with the user's token, answering "
                                          '{"ga4gh_passport_v1": [...]}; repeatable.'),
    token_lifetime: int = typer.Option(3600, "--token-lifetime", min=60,
                                       help="Access token lifetime in seconds."),
) -> None:
    """Create an issuer: settings, a fresh RS256 key and a users file.

    Keys and users are owner-only. Nothing is defaulted: demo users get generated passwords,
    written to ISSUER_DIR/demo-passwords.toml (owner-only)."""
    from genofed.access.identity.issuer import DEMO_PASSWORDS_FILE, LocalIssuer

    issuer = LocalIssuer.create(issuer_dir, url=url, demo_users=demo_users,
                                visa_sources=visa_source, token_lifetime=token_lifetime)
    console.print(f"Created issuer [bold]{issuer.url}[/] in {issuer_dir}")
    console.print(f"  trust its visas with  iss={issuer.url}  jku={issuer.jwks_url}")
    for user in issuer.users():
        statuses = [name for name, held in (("ResearcherStatus", user.researcher_status),
                                            ("AcceptedTermsAndPolicies", user.accepted_terms))
                    if held]
        console.print(f"  user {user.id:<6} sub={user.sub}  {', '.join(statuses) or '-'}")
    if demo_users:
        console.print(f"  passwords in {issuer_dir / DEMO_PASSWORDS_FILE}")
    console.print(f"Next: genofed issuer serve {issuer_dir}")


@app.command("serve")
def serve(
    issuer_dir: Path = typer.Argument(..., help="The issuer directory (`genofed issuer init`)."),
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default: the "
                                    "host of the issuer URL)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: the port of the "
                                    "issuer URL)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve the issuer over HTTP until Ctrl-C.

    Endpoints: /.well-known/openid-configuration, /jwks, /authorize (the sign-in page of the
    authorization code flow with PKCE, for clients registered with `add-client`), /token
    (authorization code and password grants; token exchange for a Passport JWT) and /userinfo
    (with ga4gh_passport_v1 visas)."""
    from urllib.parse import urlsplit

    import uvicorn

    from genofed.server.issuer import create_issuer_app

    issuer = _open(issuer_dir)
    parts = urlsplit(issuer.url)
    default_port = parts.port or (443 if parts.scheme == "https" else 80)
    uvicorn.run(create_issuer_app(issuer_dir), host=host or parts.hostname or "127.0.0.1",
                port=port or default_port, log_level=log_level)


@app.command("token")
def token(
    issuer_dir: Path = typer.Argument(..., help="The issuer directory."),
    user: str = typer.Option(..., "--user", help="User id, e.g. alice."),
    passport: bool = typer.Option(False, "--passport", help="Print a GA4GH Passport JWT "
                                  "carrying the issuer's own visas instead of an access token "
                                  "(visa sources are asked only by the running server)."),
    lifetime: int | None = typer.Option(None, "--lifetime", min=60, help="Seconds (default: "
                                        "the issuer's token lifetime)."),
) -> None:
    """Print an access token (or Passport) for a user.

    Signed with the issuer's key: no server or password needed. For example
    `curl -H "Authorization: Bearer $(genofed issuer token DIR --user alice)" ...`."""

    issuer = _open(issuer_dir)
    minted = (issuer.passport(user, lifetime=lifetime) if passport
              else issuer.access_token(user, lifetime=lifetime))
    typer.echo(minted)


@app.command("identity")
def identity(
    issuer_dir: Path = typer.Argument(..., help="The issuer directory."),
    user: str = typer.Option(..., "--user", help="User id, e.g. dana."),
) -> None:
    """Print a user's identity as nodes name people: ISSUER|SUBJECT (what `genofed access dac
    add` and `--member` take)."""
    issuer = _open(issuer_dir)
    typer.echo(f"{issuer.url}|{issuer.user(user).sub}")


@app.command("users")
def users(
    issuer_dir: Path = typer.Argument(..., help="The issuer directory."),
    as_json: bool = json_option("the users", "An array of objects with id, sub, name, "
                                "researcherStatus, acceptedTerms, registered (epoch seconds); "
                                "never a password hash."),
) -> None:
    """List the users: id, sub, and the Registered Access visas the issuer asserts.

    On a terminal a table; otherwise tab-separated values under a header line."""
    people = _open(issuer_dir).users()
    if as_json:
        print_json([{"id": u.id, "sub": u.sub, "name": u.name,
                     "researcherStatus": u.researcher_status,
                     "acceptedTerms": u.accepted_terms, "registered": u.registered}
                    for u in people])
        return
    print_table((Column("id", identifier=True), Column("sub", identifier=True),
                 Column("Registered Access visas"), Column("name")),
                ((u.id, u.sub, f"researcher={u.researcher_status} "
                  f"accepted_terms={u.accepted_terms}", u.name) for u in people),
                empty=f"No users: add them to {issuer_dir / 'users.toml'}, or create the "
                      "issuer with --demo-users.")


@app.command("add-client")
def add_client(
    issuer_dir: Path = typer.Argument(..., help="The issuer directory."),
    client_id: str = typer.Argument(..., help="The client_id the web app sends, e.g. portal."),
    redirect_uri: list[str] = typer.Option(..., "--redirect-uri", help="An absolute http(s) "
                                           "URL the app receives sign-in results at, e.g. "
                                           "http://127.0.0.1:8080/callback; compared exactly. "
                                           "Repeatable."),
) -> None:
    """Register a web app that signs users in here (OAuth authorization code flow with PKCE).

    The app is a public client, with no secret: it sends users to the issuer's /authorize with
    an S256 code_challenge and redeems the code at /token with its code_verifier. Registering
    an app again adds the redirect URIs it lacks. A running server sees the change at once."""
    issuer = _open(issuer_dir)
    issuer.add_client(client_id, redirect_uri)
    client = issuer.client(client_id)
    assert client is not None
    console.print(f"Client [bold]{client.client_id}[/] may sign users in at "
                  f"{issuer.url}/authorize; redirect URIs:")
    for uri in client.redirect_uris:
        console.print(f"  {uri}", markup=False, highlight=False)


@app.command("rotate-key")
def rotate_key(issuer_dir: Path = typer.Argument(..., help="The issuer directory.")) -> None:
    """Generate a new signing key (key rotation).

    New tokens use it at once, also in a running server; the old key stays in the JWKS so
    tokens it signed verify until they expire."""
    kid = _open(issuer_dir).rotate_key()
    console.print(f"New signing key {kid}; retire old ones by deleting them from "
                  f"{issuer_dir / 'keys'}")
