"""How HTTP routers reach the access layer: `create_app` puts an :class:`AccessContext` on
`app.state.access`; routers depend on :func:`current_principal` and call `context.policy.decide`.

Routers never judge access themselves: they ask the one policy (see :mod:`genofed.access.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from genofed.access.policy import AccessPolicy
from genofed.access.principal import Principal


class Authenticator(Protocol):
    def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller behind an `Authorization` header value: None when there is none (anonymous);
        :class:`AuthenticationError` when a token is there but invalid."""
        ...


@dataclass
class AccessContext:
    authenticator: Authenticator
    policy: AccessPolicy


def access_context(request: Request) -> AccessContext:
    context: AccessContext = request.app.state.access
    return context


def current_principal(request: Request) -> Principal | None:
    """FastAPI dependency: the authenticated caller or None; raises AuthenticationError."""
    return access_context(request).authenticator.authenticate(
        request.headers.get("authorization"))
