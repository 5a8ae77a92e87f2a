"""ControlledAccessGrants visas signed by the node (GA4GH Passport v1.2), and the node's JWKS.

A visa is a JWT signed with the node's ES256 key; its header names the key (`kid`) and where to
fetch it (`jku` = `{public_url}/access/jwks.json`), which is what a verifying node checks against
its (iss, jku) allow-list before fetching anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from genofed.config.node import NodeConfig

JWKS_PATH = "/access/jwks.json"
VISA_TYPE = "ControlledAccessGrants"


def public_url(config: NodeConfig) -> str:
    """The node's public base URL: `access.public_url`, else http://host:port; no trailing /."""
    url = config.access.public_url or f"http://{config.server.host}:{config.server.port}"
    return url.rstrip("/")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: not an ES256 (P-256) private key")
    return key


@dataclass(frozen=True)
class VisaClaims:
    """What a ControlledAccessGrants visa says."""

    subject: str
    dataset_id: str
    asserted: int
    issued_at: int
    expires: int
    jti: str
    by: str = "dac"


class VisaSigner:
    """Signs visas as the node (`iss` = `source` = public URL)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str) -> None:
        self._key = key
        self.issuer = issuer.rstrip("/")
        self.jku = f"{self.issuer}{JWKS_PATH}"
        self.public_jwk = self._public_jwk()
        self.kid = self.public_jwk["kid"]

    @classmethod
    def for_node(cls, key_path: Path, config: NodeConfig) -> VisaSigner:
        return cls(load_signing_key(key_path), public_url(config))

    def _public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        # RFC 7638 thumbprint: the key's own name, stable across restarts.
        members = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")},
                             separators=(",", ":"), sort_keys=True)
        jwk["kid"] = _b64url(hashlib.sha256(members.encode()).digest())
        jwk["alg"] = "ES256"
        jwk["use"] = "sig"
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self.public_jwk)]}

    def sign(self, claims: VisaClaims) -> str:
        payload = {
            "iss": self.issuer,
            "sub": claims.subject,
            "iat": claims.issued_at,
            "exp": claims.expires,
            "jti": claims.jti,
            "ga4gh_visa_v1": {
                "type": VISA_TYPE,
                "asserted": claims.asserted,
                "value": claims.dataset_id,
                "source": self.issuer,
                "by": claims.by,
            },
        }
        headers = {"kid": self.kid, "jku": self.jku, "typ": "JWT"}
        return jwt.encode(payload, self._key, algorithm="ES256", headers=headers)
