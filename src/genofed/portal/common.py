"""The pages every portal has: home, log in (OIDC code flow with PKCE), the login callback, and
log out."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from genofed.portal.login import LoginFailed
from genofed.portal.web import (
    PREFIX,
    PageRefused,
    checked_form,
    safe_next,
    site_of,
)

router = APIRouter()


@router.get("/", name="portal_home")
async def home(request: Request) -> Response:
    return site_of(request).render(request, "home.html", title="Home")


@router.get("/login", name="portal_login")
async def login(request: Request, next: Annotated[str | None, Query()] = None) -> Response:
    site = site_of(request)
    if site.login is None:
        raise PageRefused(503, "Login not configured",
                          f"This server names no login service, so nobody can log in here; "
                          f"{site.login_hint}.")
    redirect_uri = str(request.url_for("portal_callback"))
    pending, binding = site.sessions.begin_login(safe_next(next), redirect_uri)
    try:
        target = await site.login.authorize_url(pending)
    except LoginFailed as exc:
        raise PageRefused(502, "Login unavailable", str(exc)) from None
    response = RedirectResponse(target, 303)
    _set_cookie(request, response, site.login_cookie, binding, max_age=600)
    return response


@router.get("/callback", name="portal_callback")
async def callback(request: Request, code: str | None = None, state: str | None = None,
                   error: str | None = None) -> Response:
    site = site_of(request)
    if site.login is None:
        raise PageRefused(503, "Login not configured", "This server names no login service.")
    pending = site.sessions.finish_login(state, request.cookies.get(site.login_cookie)) \
        if state else None
    if error is not None:
        message = "You cancelled the login." if error == "access_denied" else \
            f"The login service answered: {error}."
        raise PageRefused(400, "Not logged in", f"{message} Nothing was changed; you can "
                                                "log in again from the menu.")
    if pending is None or not code:
        raise PageRefused(400, "Login expired",
                          "This login was not started in this browser, was already used, or "
                          "took too long. Log in again from the menu.")
    try:
        logged_in = await site.login.finish(code, pending)
    except LoginFailed as exc:
        raise PageRefused(502, "Login failed", f"{exc}. Log in again from the menu.") from None
    expires_at = min(logged_in.expires_at, _now() + site.session_seconds)
    token = site.sessions.create(logged_in.identity, logged_in.name, logged_in.access_token,
                                 expires_at)
    response = RedirectResponse(pending.next_path, 303)
    response.delete_cookie(site.login_cookie, path=PREFIX)
    _set_cookie(request, response, site.session_cookie, token,
                max_age=max(60, expires_at - _now()))
    return response


@router.post("/logout", name="portal_logout")
async def logout(request: Request) -> Response:
    await checked_form(request)
    site = site_of(request)
    site.sessions.end(request.cookies.get(site.session_cookie))
    response = RedirectResponse(PREFIX + "/", 303)
    response.delete_cookie(site.session_cookie, path=PREFIX)
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, *,
                max_age: int) -> None:
    # Lax (not Strict): the issuer's redirect back is a top-level navigation that must carry
    # the login binding. HttpOnly: no script ever reads it.
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")


def _now() -> int:
    return int(time.time())
