"""Fixtures (a pytest plugin: tests/conftest.py loads it) of the portal tests: the demo network
(FI, SE and NL nodes with datasets in all three tiers, the local issuer with its demo users, and
the hub beside FI), built small once per session and served on loopback; and logging in as a
user through the real OIDC code flow (the issuer's login form, PKCE, the portal's callback).

Users: `alice` (researcher), `bob` (accepted terms only), `dana` (researcher, DAC member
nowhere), and each node's committee member `dac-fi`, `dac-se`, `dac-nl`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from genofed.demo.network import Running, build, serving

SEED, LENGTH_MB, SCALE = 7, 0.3, 0.5


@dataclass(frozen=True)
class PortalNetwork:
    directory: Path
    running: Running

    @property
    def hub(self) -> str:
        """The network portal's base URL (the hub's)."""
        return self.running.hub_url

    def node(self, node_id: str) -> str:
        """A node's base URL (its own portal is under /portal)."""
        return self.running.node_urls[node_id]

    def password(self, user: str) -> str:
        return self.running.issuer.demo_passwords()[user]


@pytest.fixture(scope="session")
def portal_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalNetwork]:
    directory = tmp_path_factory.mktemp("portal-network")
    build(directory, seed=SEED, length_mb=LENGTH_MB, scale=SCALE)
    with serving(directory) as running:
        yield PortalNetwork(directory, running)


class _Forms(HTMLParser):
    """The forms of a page: action, and every named input's value."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag in ("input", "button") and self.forms and values.get("name") and \
                values.get("type") != "submit":
            self.forms[-1][1][values["name"]] = values.get("value", "")


def forms(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


class LoggedIn(httpx.Client):
    """A client already used (to log in): `with` it closes it at the end, nothing more."""

    def __enter__(self) -> LoggedIn:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def login(network: PortalNetwork, portal: str, user: str) -> LoggedIn:
    """An HTTP client logged in to the portal at `portal` (a base URL) as `user`, through the
    issuer's login form; close it after use (or use it in a `with`)."""
    client = LoggedIn(timeout=30.0)
    start = client.get(f"{portal}/portal/login", params={"next": "/portal/"})
    assert start.status_code == 303, start.text
    form_page = client.get(start.headers["location"])
    assert form_page.status_code == 200, form_page.text
    action, fields = next(f for f in forms(form_page.text) if "password" in f[1])
    fields.update(username=user, password=network.password(user))
    answer = client.post(urljoin(str(form_page.url), action), data=fields)
    assert answer.status_code in (302, 303), answer.text
    back = client.get(answer.headers["location"])
    assert back.status_code == 303, back.text
    assert any(name.startswith("genofed_") and not name.endswith("_login")
               for name in client.cookies), "no session cookie after login"
    return client


def a_variant(network: PortalNetwork, node: str, dataset: str, *, carried: bool = True) -> str:
    """"CHR-POS-REF-ALT" of a site of `dataset`, from the node's own store: a common one (ALT
    frequency 5-50 %, so that no disclosure rule hides it), or one nobody carries."""
    from genofed.store import NodeStore

    store = NodeStore.open(network.directory / "nodes" / node).dataset(dataset)
    table = store.site_table(slice(0, min(store.n_site_rows, 500)))
    for row in table.to_pylist():
        common = 0.05 <= row["ac"] / max(row["an"], 1) <= 0.5
        if (common if carried else row["ac"] == 0) and row["alt"] not in (".", "") and \
                len(row["ref"]) == 1:
            return f"{row['contig']}-{row['pos']}-{row['ref']}-{row['alt']}"
    raise AssertionError(f"no such site in the first rows of {dataset}")


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)
