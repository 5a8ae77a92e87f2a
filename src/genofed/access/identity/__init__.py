"""Identity: who the caller is, from an OIDC access token or a GA4GH Passport and its visas.

- :mod:`.oidc`          signed-JWT checks (RS256/ES256 only), discovery, JWKS cache with rotation
- :mod:`.passport`      visa validation, conditions, LinkedIdentities → Principal and Grants
- :mod:`.authenticator` :class:`PassportAuthenticator`, the node's Authenticator
- :mod:`.issuer`        a local OIDC issuer (`genofed issuer ...`) and test helpers
"""

from genofed.access.identity.authenticator import (
    PassportAuthenticator,
    node_public_url,
    node_visa_trust,
)
from genofed.access.identity.passport import Identity, VisaType, sign_visa
from genofed.errors import IssuerUnavailable, TokenRejected

__all__ = [
    "Identity",
    "IssuerUnavailable",
    "PassportAuthenticator",
    "TokenRejected",
    "VisaType",
    "node_public_url",
    "node_visa_trust",
    "sign_visa",
]
