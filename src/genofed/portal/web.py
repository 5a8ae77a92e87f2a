"""What every portal page shares: the site (hub or node), templates, the session behind a
request, CSRF checks on forms, security headers, and the client pages use to call the APIs.

Pages never read data themselves: they call this server's own APIs in-process
(:meth:`Site.api`, an httpx client over the app's ASGI interface) or a member node's APIs over
HTTP (:meth:`Site.remote`), with the logged-in user's access token. Every release therefore goes
through the same access policy, disclosure control and audit log as an API call would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genofed import __version__
from genofed.portal.login import OidcLogin
from genofed.portal.sessions import Session, SessionStore

PREFIX = "/portal"
CSRF_FIELD = "csrf_token"
#: Scripts and styles come from /portal/static only: no inline script, no third party.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                           "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
_API_TIMEOUT = 60.0


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    #: Shown only to logged-in users.
    login: bool = False


@dataclass
class Site:
    """One portal: the network's (beside the hub) or a node's own (committee and operator)."""

    kind: Literal["hub", "node"]
    #: Names the cookies: browsers share cookies across the ports of one host, and a demo runs
    #: every portal on 127.0.0.1.
    name: str
    title: str
    sessions: SessionStore
    login: OidcLogin | None
    nav: list[NavItem] = field(default_factory=list)
    #: Longest a session lasts (it ends earlier when the user's access token does).
    session_seconds: int = 8 * 3600
    templates: jinja2.Environment = field(default_factory=lambda: _environment())
    #: Where the site's issuer is named, for the page shown when none is configured.
    login_hint: str = "the operator can name one with `genofed access trust add`"

    @property
    def session_cookie(self) -> str:
        return f"genofed_{self.kind}_{self.name}"

    @property
    def login_cookie(self) -> str:
        return f"genofed_{self.kind}_{self.name}_login"

    def render(self, request: Request, template: str, status: int = 200,
               **context: Any) -> HTMLResponse:
        session = current_session(request)
        html = self.templates.get_template(template).render(
            site=self, request=request, user=session, path=request.url.path,
            csrf_field=CSRF_FIELD, csrf_token=session.csrf_token if session else "",
            version=__version__, **context)
        return HTMLResponse(html, status)

    def api(self, request: Request, session: Session | None) -> httpx.AsyncClient:
        """A client of this server's own APIs, as the user (anonymous without a session)."""
        headers = {"authorization": f"Bearer {session.access_token}"} if session else {}
        client = (request.client.host, request.client.port) if request.client else \
            ("127.0.0.1", 0)
        transport = httpx.ASGITransport(app=request.app, client=client)
        return httpx.AsyncClient(transport=transport, base_url=str(request.base_url),
                                 headers=headers, timeout=_API_TIMEOUT)

    @staticmethod
    def remote(session: Session | None) -> httpx.AsyncClient:
        """A client of other servers' APIs (member nodes), as the user."""
        headers = {"authorization": f"Bearer {session.access_token}"} if session else {}
        return httpx.AsyncClient(headers=headers, timeout=_API_TIMEOUT, follow_redirects=False)


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("genofed.portal", "templates"),
        autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    environment.filters["when"] = _when
    environment.filters["urlpart"] = lambda value: quote(str(value), safe="")
    return environment


def _when(value: object) -> str:
    """A time for people: ISO strings and epoch seconds alike, in UTC, to the minute."""
    if value is None or value == "":
        return "—"
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def site_of(request: Request) -> Site:
    site: Site = request.app.state.portal
    return site


def current_session(request: Request) -> Session | None:
    cached = request.scope.get("genofed.portal.session", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    site = site_of(request)
    session = site.sessions.get(request.cookies.get(site.session_cookie))
    request.scope["genofed.portal.session"] = session
    return session


class LoginRequired(Exception):
    """The page is for logged-in users: the browser is sent to log in and come back."""


class PageRefused(Exception):
    """Shown as an error page with `status` and a message saying what to do."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def require_session(request: Request) -> Session:
    session = current_session(request)
    if session is None:
        raise LoginRequired
    return session


async def checked_form(request: Request) -> tuple[Session, FormData]:
    """The posted form of a logged-in user, after its CSRF token and origin are checked. A form
    with files must be closed by the caller (`await form.close()`)."""
    session = current_session(request)
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if session is None or not session.csrf_matches(sent if isinstance(sent, str) else None) \
            or (origin is not None and origin != own):
        await form.close()
        raise PageRefused(403, "Form refused",
                          "This form was not sent from a page of this portal in your current "
                          "session (its security token is missing or out of date), so nothing "
                          "was changed. Go back, reload the page, and send it again.")
    return session, form


def safe_next(path: str | None) -> str:
    """Where to return after login: only paths of this portal (never another site)."""
    if path and path.startswith(PREFIX + "/") and not path.startswith("//") and "\\" not in path:
        return path
    return PREFIX + "/"


def install(app: FastAPI, site: Site) -> None:
    """Mount the portal's common pages, static files and error pages on `app`."""
    from starlette.staticfiles import StaticFiles

    from genofed.portal.common import router

    app.state.portal = site
    app.include_router(router, prefix=PREFIX, include_in_schema=False)
    app.mount(PREFIX + "/static", StaticFiles(packages=[("genofed.portal", "static")]),
              name="portal-static")

    async def login_required(request: Request, _exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", 303)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageRefused)
        return site_of(request).render(request, "error.html", exc.status, title=exc.title,
                                       message=exc.message)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(PageRefused, refused)
    app.add_middleware(PortalHeaders)


class PortalHeaders:
    """Security headers on every portal response (pages and static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"same-origin")]
                if not str(scope["path"]).startswith(PREFIX + "/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def api_error(response: httpx.Response) -> str:
    """The message of an API refusal, whichever envelope it came in."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("errorMessage") or error.get("message") or error)
        if isinstance(error, str):
            return str(body.get("error_description") or error)
        detail = body.get("detail")
        if detail:
            return str(detail)
    return f"HTTP {response.status_code}"

