"""Every error genofed raises on purpose, in one hierarchy (as httpx keeps its own in one module).

Each error's message names what is wrong (the file, line and field; the request parameter; the
dataset) and its :attr:`~GenofedError.hint` says what to do next. The command line prints both and
exits with status 1 (:mod:`genofed.cli.main`), in one place; the HTTP layers map the errors that
carry a `status` to their API's error envelope (:mod:`genofed.server.errors`).

    GenofedError
    ├── ConfigError                  a node, issuer or network configuration is missing or invalid
    │   ├── NodeConfigError
    │   ├── IssuerConfigError
    │   └── NetworkFileError
    ├── IngestError                  ingest or archiving did not complete; the store is unchanged
    │   ├── InputError               an input file is malformed (file, line, field)
    │   ├── ArchiveError             a file cannot be kept encrypted at rest
    │   └── IngestClusterError       ingest's Dask cluster is unreachable or lost a worker (also
    │                                a SchedulerError)
    ├── MetadataError                a dataset.json is missing or does not fit the model
    ├── SchedulerError               a Dask cluster the node names cannot be used
    ├── StoreError                   the node's stored data
    │   ├── UnknownDatasetError
    │   ├── DatasetBusyError         another process is writing a version of the dataset
    │   ├── StorageError             stored data or keys are damaged (the node's fault)
    │   └── ObjectStoreError         the S3 store of node.toml's [store] cannot be used
    ├── FormatError                  malformed container or crypto data
    │   ├── Crypt4ghError
    │   ├── BgzfError
    │   └── MalformedIndexError
    ├── AccessError                  identity and governance
    │   ├── AuthenticationError      a presented token is not acceptable (401 / 403)
    │   ├── TokenRejected            a JWT failed a check
    │   ├── IssuerUnavailable        an OIDC issuer could not be reached
    │   ├── InvalidDataToken         an htsget data URL's token is not valid
    │   ├── PurposeError             a research purpose is not valid DUO
    │   ├── AuditWriteError          the audit record was not written: nothing may be released
    │   ├── GovernanceDatabaseError
    │   ├── AuditQueryError          an audit filter that cannot be read
    │   └── GovernanceError          the committee workflow refuses (404 / 403 / 409)
    │       ├── ApplicationNotFoundError
    │       ├── AmbiguousIdError     an id prefix that several ids start with
    │       ├── GovernanceForbiddenError
    │       └── GovernanceConflictError
    ├── SimulationError              the simulator cannot build a cohort (e.g. ontology terms)
    ├── NotAcceptableError           no media type the client accepts is served (406)
    ├── BeaconRequestError           a Beacon request that cannot be answered (4xx)
    │   ├── UnsupportedQueryError, BeaconNotFoundError, BudgetExceededError,
    │   └── UnauthorizedError, BeaconForbiddenError
    ├── HtsgetError                  htsget v1.3 "Errors", each with its error type and status
    │   └── HtsgetInvalidAuthentication, HtsgetPermissionDenied, HtsgetNotFound,
    │       HtsgetPayloadTooLarge, HtsgetUnsupportedFormat, HtsgetInvalidInput,
    │       HtsgetInvalidRange, HtsgetServerError
    └── FederationError
        ├── TransportError           an exchange with a member failed
        ├── PeerRefused              a peer request's signature is refused
        └── AggregationError         secure aggregation or variant matching refuses
            ├── EncodingError        a statistic that fixed point cannot carry (names the field)
            └── ContributionRefused  a node's masked contribution fails verification

Errors that older code caught by their builtin base (ValueError, KeyError, RuntimeError) keep it.
"""

from __future__ import annotations


class GenofedError(Exception):
    """The base of every error genofed raises on purpose."""

    #: What to do next, for the person reading the message (None: the message says it all).
    hint: str | None = None

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


# -- configuration --------------------------------------------------------------------------------
class ConfigError(GenofedError, ValueError):
    """A configuration file or directory is missing or invalid."""


class NodeConfigError(ConfigError):
    """The node directory is missing, not a node, or its configuration is invalid."""


class IssuerConfigError(ConfigError):
    """The local issuer's directory or settings are missing or invalid."""


class NetworkFileError(ConfigError):
    """The network file is missing, not TOML, or does not describe a valid network."""


# -- ingest and archiving -------------------------------------------------------------------------
class IngestError(GenofedError):
    """Ingest could not complete; the store is unchanged."""

    hint = "nothing was changed on the node; fix the input and run the command again"


class InputError(IngestError):
    """An input file is malformed. The message names the file and, where known, line and field."""

    def __init__(self, name: str, problem: str, *, line: int | None = None,
                 field: str | None = None) -> None:
        self.name = name
        self.problem = problem
        self.line = line
        self.field = field
        where = name
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[object, ...]:  # raised in worker processes, so picklable
        return (_rebuild_input_error, (self.name, self.problem, self.line, self.field))


def _rebuild_input_error(name: str, problem: str, line: int | None,
                         field: str | None) -> InputError:
    return InputError(name, problem, line=line, field=field)


class ArchiveError(IngestError):
    """A file cannot be archived; nothing was stored."""

    hint = "nothing was stored"


class MetadataError(GenofedError, ValueError):
    """Dataset metadata is missing, not JSON, or does not fit the model."""

    hint = "see the dataset metadata fields in the README (id, name, accessTier, ...)"


# -- Dask clusters (analysis and ingest) ----------------------------------------------------------
class SchedulerError(GenofedError):
    """The dask.distributed cluster a node's settings name (`[analysis] scheduler`, `[ingest]
    scheduler`, or `genofed ingest --scheduler`) cannot be reached or used."""

    hint = ("start the scheduler or correct its address; an empty address computes on this "
            "machine")


class IngestClusterError(IngestError, SchedulerError):
    """Ingest's Dask cluster cannot be reached or used, or lost a worker midway; the store is
    unchanged."""

    hint = ("nothing was changed on the node; check the cluster (its scheduler's and workers' "
            "logs) and run the command again, or ingest on this machine with --scheduler ''")


# -- the store ------------------------------------------------------------------------------------
class StoreError(GenofedError):
    """Something about the node's stored data."""


class UnknownDatasetError(StoreError, KeyError):
    """No published dataset by that id on this node."""

    def __init__(self, dataset_id: str, known: list[str]) -> None:
        self.dataset_id = dataset_id
        listing = ", ".join(known) if known else "none yet: ingest one with `genofed ingest`"
        super().__init__(f"unknown dataset {dataset_id!r}; this node has: {listing}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class DatasetBusyError(StoreError, RuntimeError):
    """Another process holds the dataset's write lock (an ingest or `files` command)."""

    hint = "wait for the other command to finish, then run this one again"


class StorageError(StoreError, RuntimeError):
    """A stored file is missing or does not decrypt: the node's data or keys are damaged."""


class ObjectStoreError(StoreError, RuntimeError):
    """The bucket named by `[store] url` in node.toml cannot be used: it does not exist, its
    endpoint cannot be reached, or the credentials are missing or refused. The message names
    the setting (or the environment) to fix."""


# -- container and crypto formats -----------------------------------------------------------------
class FormatError(GenofedError, ValueError):
    """Bytes that do not follow their format."""


class Crypt4ghError(FormatError):
    """Not Crypt4GH, not for this key, truncated or tampered."""


class BgzfError(FormatError):
    """Not BGZF, or a truncated or corrupt BGZF block."""


class MalformedIndexError(FormatError):
    """A .tbi/.csi/.bai/.crai index that does not parse."""


# -- access: identity and governance -------------------------------------------------------------
class AccessError(GenofedError):
    """Identity, passports, the committee workflow and the audit trail."""


class AuthenticationError(AccessError):
    """The bearer token was presented but is not acceptable (401 unless `status` says 403)."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TokenRejected(AccessError):
    """A JWT failed a check. `reason` says which, without echoing secrets; safe to show the
    caller and to write to the audit log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IssuerUnavailable(AccessError):
    """An issuer's discovery document, JWKS or userinfo could not be fetched or made no sense:
    not the caller's fault, and worth retrying later. `status` is the HTTP status if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InvalidDataToken(AccessError, ValueError):
    """An htsget data URL's token is malformed, forged or expired."""


class PurposeError(AccessError, ValueError):
    """A research purpose that is not valid DUO (unknown term, missing disease, ...)."""


class AuditWriteError(AccessError, RuntimeError):
    """The audit record could not be written; the decision it records must not take effect."""


class GovernanceDatabaseError(AccessError, RuntimeError):
    """The governance database cannot be opened or migrated."""


class AuditQueryError(AccessError, ValueError):
    """An audit trail filter that cannot be read (an unknown action, a bad time, ...)."""


class GovernanceError(AccessError):
    """A request the committee workflow refuses; `status` is the HTTP status it maps to."""

    status = 400


class ApplicationNotFoundError(GovernanceError):
    status = 404


class AmbiguousIdError(GovernanceError):
    """An id prefix that more than one application (or visa) id starts with."""


class GovernanceForbiddenError(GovernanceError):
    status = 403


class GovernanceConflictError(GovernanceError):
    status = 409


# -- simulation and catalogue --------------------------------------------------------------------
class SimulationError(GenofedError, RuntimeError):
    """The simulator cannot build a cohort (e.g. a term it needs is missing from the installed
    ontology files)."""


class NotAcceptableError(GenofedError, ValueError):
    """`Accept` admits none of the media types served (HTTP 406)."""

    status = 406


# -- Beacon -------------------------------------------------------------------------------------
class BeaconRequestError(GenofedError):
    """A request the Beacon cannot answer; `status` is the HTTP status (always 4xx, or 503 when
    the hub's network file is unreadable)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class UnsupportedQueryError(BeaconRequestError):
    """A valid Beacon query this node cannot answer (e.g. geneId without a gene table)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


class BeaconNotFoundError(BeaconRequestError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class BudgetExceededError(BeaconRequestError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class UnauthorizedError(BeaconRequestError):
    """A bearer token was presented but is not acceptable."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message, status)


class BeaconForbiddenError(BeaconRequestError):
    """The caller is known but may not have what they asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 403)


# -- htsget ---------------------------------------------------------------------------------------
class HtsgetError(GenofedError):
    """htsget v1.3 "Errors": each has its error type and HTTP status, and becomes
    `{"htsget": {"error": ..., "message": ...}}`."""

    error = "InvalidInput"
    status = 400

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"htsget": {"error": self.error, "message": self.message}}


class HtsgetInvalidAuthentication(HtsgetError):
    error, status = "InvalidAuthentication", 401


class HtsgetPermissionDenied(HtsgetError):
    error, status = "PermissionDenied", 403


class HtsgetNotFound(HtsgetError):
    error, status = "NotFound", 404


class HtsgetPayloadTooLarge(HtsgetError):
    error, status = "PayloadTooLarge", 413


class HtsgetUnsupportedFormat(HtsgetError):
    error, status = "UnsupportedFormat", 400


class HtsgetInvalidInput(HtsgetError):
    error, status = "InvalidInput", 400


class HtsgetInvalidRange(HtsgetError):
    error, status = "InvalidRange", 400


class HtsgetServerError(HtsgetError):
    """The node's fault (5xx; not one of the spec's client error types)."""

    error, status = "InternalError", 500


# -- federation -----------------------------------------------------------------------------------
class FederationError(GenofedError):
    """Talking to the other members of a network."""


class TransportError(FederationError):
    """The exchange failed: `kind` is "unreachable", "dropped" (the connection ended before
    the answer did), "protocol" (not valid HTTP/1.1) or "too_large"."""

    def __init__(self, kind: str, detail: str, *, received: bool = True) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        #: Whether any byte of an answer arrived (a reused connection that the server had
        #: already closed receives none: the request is retried once on a fresh one).
        self.received = received


class PeerRefused(FederationError):
    """A signed peer request that this node refuses (`status` 401 or 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AggregationError(FederationError):
    """Secure aggregation or variant matching refuses: a layout or participant list that does not
    fit, a sealed job key that does not open, nodes that disagree about a revealed variant."""


class EncodingError(AggregationError, ValueError):
    """A node's statistic that the fixed-point encoding cannot carry exactly enough (NaN,
    infinite, or beyond the field's range): refused rather than wrapped into a wrong sum.
    `field` names the statistic."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, hint="no statistics left the node; the job's layout needs "
                                       "fewer fraction bits for this field, or the statistic "
                                       "is wrong at this node")
        self.field = field


class ContributionRefused(AggregationError):
    """A node's masked contribution failed verification (altered in transit, signed by another
    key, or for another round or attempt): it is refused, and the round is redone without the
    node (`node_id`)."""

    def __init__(self, node_id: str, message: str) -> None:
        super().__init__(message)
        self.node_id = node_id
