"""htsget as a service over the node store, independent of any web framework (as htsget-rs keeps
`htsget-search` and `htsget-http` apart): a ticket for a caller, and the bytes behind a ticket's
data URL. :mod:`genofed.files.htsget` is the HTTP layer over it.

Access. Every ticket asks the policy for ``HTSGET_TICKET`` on the dataset and every data block
for ``HTSGET_DATA``; both are audited, allow and deny, with what was asked. Data URLs are
self-authorising: their sealed token names the bytes, the caller and an expiry (at most the
caller's own), so htslib can follow them.

Delivery. Slices leave the node Crypt4GH-encrypted for the caller's key, or plain only from
datasets whose file policy allows it (`genofed files delivery --plain`).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from genofed.access.policy import AccessPolicy, Action
from genofed.access.principal import Grant, Principal
from genofed.errors import (
    HtsgetNotFound,
    HtsgetPermissionDenied,
    HtsgetServerError,
    HtsgetUnsupportedFormat,
    InvalidDataToken,
    StorageError,
    UnknownDatasetError,
)
from genofed.files import delivery
from genofed.files.htsget_request import FORMATS, TicketRequest
from genofed.files.search import plan_slice
from genofed.files.tokens import TokenSealer
from genofed.store.dataset import Dataset
from genofed.store.node import NodeStore
from genofed.store.originals import ROLE_VARIANTS, ArchivedFile, CatalogueEntry

log = logging.getLogger(__name__)

#: How long data URLs stay valid (never beyond the caller's token and grant).
TICKET_LIFETIME = 3600


@dataclass(frozen=True)
class DataBlock:
    """What a data URL serves: its length and the bytes, streamed."""

    length: int
    chunks: Iterator[bytes]


class HtsgetService:
    """Tickets and data blocks of one node; thread-safe (the store and policy are)."""

    def __init__(self, store: NodeStore, policy: AccessPolicy, sealer: TokenSealer, *,
                 ticket_lifetime: int = TICKET_LIFETIME) -> None:
        self.store = store
        self.policy = policy
        self.sealer = sealer
        self.ticket_lifetime = ticket_lifetime

    @classmethod
    def for_store(cls, store: NodeStore, policy: AccessPolicy) -> HtsgetService:
        return cls(store, policy, TokenSealer.for_keys_dir(store.paths.keys))

    # -- tickets ---------------------------------------------------------------------------------
    def refuse_unauthenticated(self, ticket_id: str, reason: str) -> None:
        """Audit a ticket refused before a principal existed (a bad token)."""
        dataset_id, _name = split_id(ticket_id)
        self.policy.deny_unauthenticated(dataset_id, Action.HTSGET_TICKET, reason)

    def ticket(self, principal: Principal | None, request: TicketRequest,
               data_url: str) -> dict[str, Any]:
        """The htsget ticket document for `request`; `data_url` is the URL prefix data tokens
        are appended to. Raises :class:`~genofed.errors.HtsgetError`s."""
        dataset_id, name = split_id(request.id)
        try:
            dataset = self.store.dataset(dataset_id)
        except UnknownDatasetError:
            raise HtsgetNotFound(f"no dataset {dataset_id!r} on this node") from None
        entry = _find_entry(dataset.files.files, dataset_id, name, request)
        ticket_id = secrets.token_hex(8)
        detail = f"ticket={ticket_id} {request.describe()}"
        if not request.encrypted and not dataset.files.plain_delivery:
            # Checked before the caller's visas: the refusal is recorded as what it is.
            reason = (f"dataset {dataset_id!r} releases files only Crypt4GH-encrypted: request "
                      "encryptionScheme=C4GH with your public key")
            self.policy.refuse(principal, dataset.metadata, Action.HTSGET_TICKET, reason,
                               detail=detail)
            raise HtsgetPermissionDenied(reason)
        decision = self.policy.decide(principal, dataset.metadata, Action.HTSGET_TICKET,
                                      detail=detail)
        if not decision.allowed:
            raise HtsgetPermissionDenied(decision.reason if principal is not None else
                                         f"authorization is required: {decision.reason}")
        if principal is None:  # a policy that releases files to anonymous callers: no URL owner
            raise HtsgetPermissionDenied("files are released to authenticated callers only")
        file = self._open(dataset, entry)
        plan = plan_slice(file, request.regions, header_only=request.header_only)
        make_url = self._url_maker(data_url, dataset, file, principal, ticket_id)
        urls = (delivery.encrypted_urls(plan, make_url, request.recipient_key, self.store.keys)
                if request.recipient_key is not None else delivery.plain_urls(plan, make_url))
        return {"htsget": {"format": file.file_format.value, "urls": urls}}

    def _open(self, dataset: Dataset, entry: CatalogueEntry) -> ArchivedFile:
        try:
            return self.store.open_file(dataset, entry)
        except StorageError:
            log.exception("htsget: a stored file cannot be read")
            raise HtsgetServerError("this file cannot be read right now; the node operator's "
                                    "log has the details") from None

    def _url_maker(self, prefix: str, dataset: Dataset, file: ArchivedFile,
                   principal: Principal, ticket_id: str) -> delivery.UrlMaker:
        grant = principal.grant_for(dataset.id)
        expires = min(int(time.time()) + self.ticket_lifetime, principal.expires,
                      grant.expires if grant else principal.expires)
        claims = {"d": dataset.id, "v": dataset.version, "n": file.entry.name,
                  "f": file.entry.format, "t": ticket_id,
                  "p": _principal_claims(principal, dataset.id)}

        def make_url(mode: str, start: int, stop: int) -> str:
            return prefix + self.sealer.seal({**claims, "m": mode, "a": start, "b": stop},
                                             expires=expires)

        return make_url

    # -- data blocks -----------------------------------------------------------------------------
    def data_block(self, token: str) -> DataBlock:
        """The bytes behind a data URL (its token sealed by :meth:`ticket`)."""
        try:
            claims = self.sealer.open(token)
        except InvalidDataToken:
            self.policy.deny_unauthenticated(None, Action.HTSGET_DATA, "invalid data URL token")
            raise
        dataset_id, mode = claims["d"], claims["m"]
        dataset = self.store.dataset_version(dataset_id, claims["v"])
        entry = None if dataset is None else next(
            (e for e in dataset.files.files if (e.name, e.format) == (claims["n"], claims["f"])),
            None)
        if dataset is None or entry is None:
            raise HtsgetNotFound("the ticket refers to a dataset version this node no longer "
                                 "holds; request a new ticket")
        try:  # the policy judges the dataset as it is described now
            metadata = self.store.dataset(dataset_id).metadata
        except UnknownDatasetError:
            metadata = dataset.metadata
        principal = _principal_from_claims(claims["p"])
        what = "bytes" if mode == "plain" else "segments"
        detail = (f"ticket={claims['t']} {entry.format} {dataset_id}/{entry.name} "
                  f"{what}={claims['a']}-{claims['b']}")
        if mode == "plain" and not self._plain_allowed_now(dataset_id):
            reason = (f"dataset {dataset_id!r} now releases files only encrypted; request a new "
                      "ticket with encryptionScheme=C4GH")
            self.policy.refuse(principal, metadata, Action.HTSGET_DATA, reason, detail=detail)
            raise HtsgetPermissionDenied(reason)
        decision = self.policy.decide(principal, metadata, Action.HTSGET_DATA, detail=detail)
        if not decision.allowed:
            raise HtsgetPermissionDenied(decision.reason)
        length, chunks = delivery.data_block(self._open(dataset, entry), mode, int(claims["a"]),
                                             int(claims["b"]))
        return DataBlock(length, chunks)

    def _plain_allowed_now(self, dataset_id: str) -> bool:
        """The file policy as it is now (a ticket may outlive a change of it)."""
        try:
            return self.store.dataset(dataset_id).files.plain_delivery
        except UnknownDatasetError:
            return True  # nothing newer: the version the ticket was issued for decides


def split_id(id: str) -> tuple[str, str | None]:
    """`{dataset}` or `{dataset}/{file name}`."""
    dataset_id, _, name = id.strip("/").partition("/")
    if not dataset_id:
        raise HtsgetNotFound("no id given: use {dataset} or {dataset}/{file name}")
    return dataset_id, name or None


def _find_entry(files: list[CatalogueEntry], dataset_id: str, name: str | None,
                ticket: TicketRequest) -> CatalogueEntry:
    entries = [e for e in files if e.file_format in FORMATS[ticket.datatype]]
    if name is None:
        entries = [e for e in entries if e.role == ROLE_VARIANTS]
        missing = (f"dataset {dataset_id!r} has no {ticket.datatype} file of its own"
                   + ("; reads are addressed as {dataset}/{file}" if ticket.datatype == "reads"
                      else ""))
    else:
        entries = [e for e in entries if e.name == name]
        missing = f"dataset {dataset_id!r} has no {ticket.datatype} file named {name!r}"
    if not entries:
        raise HtsgetNotFound(missing)
    if ticket.format is None:
        default = FORMATS[ticket.datatype][0]
        return next((e for e in entries if e.file_format is default), entries[0])
    found = [e for e in entries if e.file_format is ticket.format]
    if not found:
        held = ", ".join(sorted(e.format for e in entries))
        raise HtsgetUnsupportedFormat(f"{ticket.id} is held as {held}, not {ticket.format}; "
                                      f"request format={held.split(', ')[0]}")
    return found[0]


def _principal_claims(principal: Principal, dataset_id: str) -> dict[str, Any]:
    grant = principal.grant_for(dataset_id)
    return {"iss": principal.issuer, "sub": principal.subject, "exp": principal.expires,
            "r": principal.researcher, "a": principal.accepted_terms,
            "g": None if grant is None else [grant.dataset_id, grant.issuer, grant.by,
                                             grant.expires, grant.visa_id]}


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    grant = claims.get("g")
    return Principal(issuer=claims["iss"], subject=claims["sub"], expires=claims["exp"],
                     grants=(Grant(*grant),) if grant else (), researcher=claims["r"],
                     accepted_terms=claims["a"])
