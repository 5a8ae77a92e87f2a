"""The node's authenticator, following node.toml: trusting an issuer or its visas (`genofed access
trust add/remove`) takes effect on the next request, in every server process, with no restart.

The trust settings are `access.oidc_issuers` (whose access tokens and passports are accepted) and
`access.trusted_visas` (whose visas are); when they change, a fresh
:class:`~genofed.access.identity.authenticator.PassportAuthenticator` is built for them, so
tokens verified under the old trust are verified again (its cache goes with it).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from genofed.access.identity.authenticator import (
    PassportAuthenticator,
    load_node_public_key,
    node_visa_trust,
)
from genofed.access.identity.oidc import default_http_client
from genofed.access.principal import Principal
from genofed.config.live import LiveConfig
from genofed.config.node import NodeConfig, NodePaths

_Trust = tuple[tuple[str, ...], tuple[tuple[str, str], ...], tuple[str, str]]


def _trust_of(config: NodeConfig) -> _Trust:
    return (tuple(config.access.oidc_issuers),
            tuple((t.iss, t.jku) for t in config.access.trusted_visas),
            node_visa_trust(config))


class NodeAuthenticator:
    """An Authenticator (see :mod:`genofed.access.http`) whose trust is node.toml's, as it is
    now. `options` go to every PassportAuthenticator it builds."""

    def __init__(self, root: Path, live: LiveConfig, **options: Any) -> None:
        self.live = live
        self._options = options
        self._http = options.pop("http", None) or default_http_client()
        self._node_key = load_node_public_key(NodePaths(root, live.started))
        self._lock = threading.Lock()
        self._trust: _Trust | None = None
        self._current: PassportAuthenticator | None = None

    def current(self) -> PassportAuthenticator:
        """The authenticator for the trust node.toml states now."""
        trust = _trust_of(self.live.current())
        current = self._current
        if current is not None and trust == self._trust:
            return current
        with self._lock:
            if self._current is None or trust != self._trust:
                issuers, visas, own = trust
                self._current = PassportAuthenticator(
                    oidc_issuers=issuers, trusted_visas=visas, node_visa_issuer=own,
                    node_public_key=self._node_key, http=self._http, **self._options)
                self._trust = trust
            return self._current

    def authenticate(self, authorization: str | None) -> Principal | None:
        return self.current().authenticate(authorization)

    def known(self, authorization: str) -> Principal | None:
        return self.current().known(authorization)

    def close(self) -> None:
        self._http.close()
