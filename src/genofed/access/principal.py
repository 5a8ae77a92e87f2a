"""The caller as every data-releasing API sees it, once their token and passport are checked.

Built by the identity layer (:mod:`genofed.access.identity`) from a verified OIDC token and the
GA4GH Passport visas that survived validation; consumed by the policy
(:mod:`genofed.access.policy`).
Nothing here is personal beyond the (issuer, subject) pair, and the audit log sees only
:attr:`Principal.pseudonym`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genofed.access.pseudonyms import pseudonym


@dataclass(frozen=True)
class Grant:
    """One valid ControlledAccessGrants visa: access to `dataset_id` until `expires`."""

    dataset_id: str
    #: `iss` of the visa (the node or DAC that granted it).
    issuer: str
    #: `ga4gh_visa_v1.by` (e.g. "dac").
    by: str
    #: Epoch seconds; the earliest of the visa's and the passport's expiry.
    expires: int
    #: `jti` of the visa JWT, which revocation refers to (None if the visa had none).
    visa_id: str | None = None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    issuer: str
    subject: str
    #: Earliest expiry of the token and of every visa relied on (epoch seconds).
    expires: int
    grants: tuple[Grant, ...] = ()
    #: Holds a valid ResearcherStatus visa (what the registered tier asks for).
    researcher: bool = False
    #: Holds a valid AcceptedTermsAndPolicies visa.
    accepted_terms: bool = False
    #: Why visas were ignored (expired, untrusted, unknown condition, ...), for the audit reason.
    ignored_visas: tuple[str, ...] = field(default=())

    @property
    def pseudonym(self) -> str:
        """A stable pseudonym for the audit log: no name, no e-mail, not the raw `sub` (see
        :mod:`genofed.access.pseudonyms`)."""
        return pseudonym(self.issuer, self.subject)

    def grant_for(self, dataset_id: str) -> Grant | None:
        return next((g for g in self.grants if g.dataset_id == dataset_id), None)
