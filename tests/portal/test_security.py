"""The portal's security properties over real servers: session cookies a script cannot read and
other sites cannot send, forms refused without their CSRF token, logout that really ends the
session, committee pages for members only, and nothing of a controlled dataset without a visa."""

from __future__ import annotations

import httpx

from tests.portal.network import PortalNetwork, a_variant, csrf_token, login


def _set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def test_the_session_cookie_is_httponly_and_samesite(portal_network: PortalNetwork) -> None:
    client = httpx.Client(timeout=30.0)
    with client:
        start = client.get(f"{portal_network.hub}/portal/login", params={"next": "/portal/"})
        binding = _set_cookies(start)
        assert binding and all("httponly" in c.lower() and "samesite=lax" in c.lower()
                               for c in binding)
    # The session cookie, as the callback sets it (the login helper follows the same path).
    client = login(portal_network, portal_network.hub, "alice")
    with client:
        cookie = next(c for c in client.cookies.jar if c.name.startswith("genofed_hub_")
                      and not c.name.endswith("_login"))
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert (cookie.get_nonstandard_attr("SameSite") or "").lower() == "lax"
        assert cookie.path == "/portal"


def test_a_form_without_its_csrf_token_is_refused(portal_network: PortalNetwork) -> None:
    with login(portal_network, portal_network.hub, "alice") as client:
        home = client.get(f"{portal_network.hub}/portal/")
        assert "Log out" in home.text
        for data in ({}, {"csrf_token": "forged"}):
            refused = client.post(f"{portal_network.hub}/portal/logout", data=data)
            assert refused.status_code == 403
            assert "security token" in refused.text
        # Nothing changed: still logged in.
        assert "Log out" in client.get(f"{portal_network.hub}/portal/").text
        # The right token from another origin is refused too (a cross-site form post).
        token = csrf_token(home.text)
        crossed = client.post(f"{portal_network.hub}/portal/logout",
                              data={"csrf_token": token},
                              headers={"origin": "https://evil.example"})
        assert crossed.status_code == 403


def test_logout_ends_the_session_server_side(portal_network: PortalNetwork) -> None:
    with login(portal_network, portal_network.hub, "alice") as client:
        stolen = dict(client.cookies.items())
        home = client.get(f"{portal_network.hub}/portal/")
        out = client.post(f"{portal_network.hub}/portal/logout",
                          data={"csrf_token": csrf_token(home.text)})
        assert out.status_code == 303
        assert "Log in" in client.get(f"{portal_network.hub}/portal/").text
    # A copy of the old cookie is worth nothing now.
    with httpx.Client(cookies=stolen, timeout=30.0) as replay:
        page = replay.get(f"{portal_network.hub}/portal/")
        assert "Log out" not in page.text and "Log in" in page.text


def test_a_login_callback_without_its_browser_binding_is_refused(
        portal_network: PortalNetwork) -> None:
    with httpx.Client(timeout=30.0) as victim, httpx.Client(timeout=30.0) as attacker:
        start = attacker.get(f"{portal_network.hub}/portal/login")
        state = httpx.URL(start.headers["location"]).params["state"]
        # The attacker's login state, replayed in the victim's browser (login CSRF).
        refused = victim.get(f"{portal_network.hub}/portal/callback",
                             params={"code": "whatever", "state": state})
        assert refused.status_code == 400
        assert "not started in this browser" in refused.text
        assert not any(c.startswith("genofed_hub_fi=") for c in _set_cookies(refused))


def test_committee_pages_refuse_non_members(portal_network: PortalNetwork) -> None:
    fi = portal_network.node("fi")
    with httpx.Client(timeout=30.0) as anonymous:
        page = anonymous.get(f"{fi}/portal/committee")
        assert page.status_code == 303 and "/portal/login" in page.headers["location"]
    for outsider in ("alice", "dac-se"):
        with login(portal_network, fi, outsider) as client:
            assert client.get(f"{fi}/portal/committee").status_code == 403
    with login(portal_network, fi, "dac-fi") as member:
        assert member.get(f"{fi}/portal/committee").status_code == 200


def test_nothing_of_a_controlled_dataset_is_shown_without_a_visa(
        portal_network: PortalNetwork) -> None:
    """bob has no visa for any controlled dataset: a search for a variant fi-biobank holds shows
    him no count and no record of it (the portal shows what the Beacon gives him, nothing more)."""
    variant = a_variant(portal_network, "fi", "fi-biobank")
    with login(portal_network, portal_network.hub, "bob") as client:
        page = client.get(f"{portal_network.hub}/portal/search", params={"variant": variant})
        assert page.status_code == 200, page.text
    row = _row_of(page.text, "fi-biobank")
    assert "record" not in row.lower().replace("no records", "")
    assert not any(ch.isdigit() for ch in _cells(row)[-1])


def _row_of(html: str, dataset: str) -> str:
    start = html.index(dataset)
    return html[html.rindex("<tr", 0, start): html.index("</tr>", start)]


def _cells(row: str) -> list[str]:
    import re

    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>",
                                                                          row, re.S)]
