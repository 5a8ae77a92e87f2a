"""A node's settings (`node.toml`) and its key material, created by `genofed node init`.

Everything secret is generated at init, never defaulted: a Crypt4GH key pair for files at rest, an
ES256 signing key (visas, node-to-node requests) and an X25519 key-agreement key (secure
aggregation). Keys live in their own directory (by default `NODE_DIR/keys`, mode 0700) so an
operator can move them off the data volume.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genofed.errors import NodeConfigError

CONFIG_FILE = "node.toml"
NODE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Loopback unless the operator says otherwise.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)


class DisclosureSettings(BaseModel):
    """Statistical disclosure control applied to every aggregate that leaves the node."""

    model_config = ConfigDict(extra="forbid")
    #: Counts below this are never revealed as such.
    count_floor: int = Field(default=5, ge=1)
    #: Queries per caller (token or IP) per window before 429.
    query_budget: int = Field(default=10_000, ge=1)
    budget_window_seconds: int = Field(default=3600, ge=1)
    #: Membership evidence (in nats) that answers below record level may reveal about any one
    #: individual, over all callers and all time; 0 turns exposure accounting off (the floor
    #: alone). The default held benchmarks/privacy.py's attackers near chance (a budget B
    #: lets an attacker at 5 % false positives reach about 0.05 e^B at most; 1.0 let a
    #: registered attacker reach 0.13). See :mod:`genofed.access.exposure`.
    exposure_budget: float = Field(default=0.2, ge=0)
    #: Of that, what answers open to anyone (booleans) may have spent: an individual stops
    #: contributing to them once this much evidence about them is out. Counts, for
    #: accountable researchers only, may spend the rest. 0 (the default, the one that held
    #: benchmarks/privacy.py's anonymous attackers closest to chance): an open answer never
    #: includes anyone it depends on, so it says yes only for alleles far above the floor.
    public_exposure_budget: float = Field(default=0.0, ge=0)


class AnalysisSettings(BaseModel):
    """Federated analyses at this node (owned by `genofed.analysis`): what it contributes to,
    and where its statistics are computed."""

    model_config = ConfigDict(extra="forbid")
    #: The fewest individuals this node contributes statistics about, in any job.
    min_individuals: int = Field(default=50, ge=2)
    #: Results only for variants whose pooled minor allele count reaches this (a job may ask
    #: for more, never for less).
    min_mac: int = Field(default=10, ge=1)
    #: A dask.distributed scheduler (e.g. tcp://10.0.0.5:8786) for a node that outgrows one
    #: machine; empty = Dask's local threads.
    scheduler: str = ""


class IngestSettings(BaseModel):
    """How `genofed ingest` runs (owned by `genofed.ingest`)."""

    model_config = ConfigDict(extra="forbid")
    #: A dask.distributed scheduler (e.g. tcp://10.0.0.5:8786) whose workers parse and write
    #: the input's pieces; its workers must see the input file and the node directory at the
    #: same paths (a shared filesystem). Empty = worker processes on this machine.
    scheduler: str = ""


class StoreSettings(BaseModel):
    """Where the node's datasets live (owned by `genofed.store`). Credentials never go here:
    they come from the standard AWS environment variables, shared config files or instance
    role; the node's keys stay in `keys_dir` on this machine."""

    model_config = ConfigDict(extra="forbid")
    #: `s3://BUCKET/PREFIX` keeps dataset versions in S3 (or an S3-compatible server); empty =
    #: the local directory NODE_DIR/datasets.
    url: str = Field(default="", pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?)?$")
    #: An S3-compatible server's address (e.g. http://minio:9000); empty = AWS.
    endpoint_url: str = ""
    #: The bucket's region; empty = what the AWS configuration says.
    region: str = ""


class VisaTrust(BaseModel):
    """One entry of the visa trust allow-list: visas from `iss` are accepted only when their `jku`
    is exactly this URL, checked before any key is fetched (GA4GH Passport v1.2)."""

    model_config = ConfigDict(extra="forbid")
    iss: str
    jku: str


class AccessSettings(BaseModel):
    """Identity, passports and governance state (owned by `genofed.access`)."""

    model_config = ConfigDict(extra="forbid")
    #: SQLAlchemy URL of the governance database; empty = SQLite at NODE_DIR/governance.sqlite.
    database_url: str = ""
    #: The node's public base URL (visa `iss`, its JWKS is `jku`); empty = http://host:port.
    public_url: str = ""
    #: OIDC issuers whose access tokens (and userinfo passports) the node accepts.
    oidc_issuers: list[str] = Field(default_factory=list)
    #: (iss, jku) pairs whose visas the node trusts, besides its own.
    trusted_visas: list[VisaTrust] = Field(default_factory=list)
    #: DAC members of this node's datasets, as "ISSUER|SUBJECT" identities.
    dac_members: list[str] = Field(default_factory=list)
    #: Who may see the node's operator and audit pages in the portal ("ISSUER|SUBJECT").
    operators: list[str] = Field(default_factory=list)


class FederationSettings(BaseModel):
    """Membership in a network of nodes (owned by `genofed.federation`)."""

    model_config = ConfigDict(extra="forbid")
    #: Path of the network file listing the member nodes; empty = not in a network.
    network_file: str = ""


class PortalSettings(BaseModel):
    """The web portal under /portal (owned by `genofed.portal`)."""

    model_config = ConfigDict(extra="forbid")
    #: The OIDC issuer users log in at; empty = the first of `access.oidc_issuers`.
    issuer: str = ""
    #: The portal's client id at that issuer (a public client: PKCE, no secret).
    client_id: str = "genofed-portal"
    #: Longest a portal session lasts (it ends earlier when the user's access token does).
    session_hours: int = Field(default=8, ge=1, le=72)


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(pattern=NODE_ID_PATTERN)
    country: str
    created: str
    #: Directory holding key material; relative paths are relative to the node directory.
    keys_dir: str = "keys"
    server: ServerSettings = Field(default_factory=ServerSettings)
    disclosure: DisclosureSettings = Field(default_factory=DisclosureSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    federation: FederationSettings = Field(default_factory=FederationSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    portal: PortalSettings = Field(default_factory=PortalSettings)

    def model_post_init(self, __context: object) -> None:
        if not _COUNTRY.match(self.country):
            raise ValueError(f"country {self.country!r} is not an ISO 3166-1 alpha-2 code "
                             "like 'FI'")


class NodePaths:
    """Where a node keeps what."""

    def __init__(self, root: Path, config: NodeConfig) -> None:
        self.root = root
        self.config_file = root / CONFIG_FILE
        self.datasets = root / "datasets"
        #: Files of dataset versions kept in S3, fetched once (`Dataset.local_copy`).
        self.cache = root / "cache"
        keys = Path(config.keys_dir)
        self.keys = keys if keys.is_absolute() else root / keys
        self.c4gh_secret_key = self.keys / "node.c4gh.sec"
        self.c4gh_public_key = self.keys / "node.c4gh.pub"
        self.signing_key = self.keys / "signing.es256.pem"
        self.agreement_key = self.keys / "agreement.x25519.pem"
        self.governance_db = root / "governance.sqlite"
        #: Federated analyses: per-job state between rounds, and what stays after a job.
        self.analysis = root / "analysis"
        #: The coordinator (`genofed hub serve`) run beside this node: its analysis jobs.
        self.hub = root / "hub"


def load_config(root: Path) -> NodeConfig:
    path = root / CONFIG_FILE
    if not path.is_file():
        raise NodeConfigError(f"{root}: not a genofed node (no {CONFIG_FILE}); create one with "
                              f"`genofed node init {root} --node-id ID --country CC`")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
        return NodeConfig.model_validate(data)
    except tomllib.TOMLDecodeError as exc:
        raise NodeConfigError(f"{path}: invalid TOML: {exc}") from None
    except ValidationError as exc:
        problems = [f"{path}{_where(text, e['loc'])}, field {_dotted(e['loc'])}: {e['msg']}"
                    for e in exc.errors()[:5]]
        first = exc.errors()[0]["loc"]
        hint = _FIELD_HINTS.get(".".join(str(p) for p in first if isinstance(p, str)))
        raise NodeConfigError("; ".join(problems), hint=hint) from None


#: What to do about a field that does not validate (by its path without list indexes).
_FIELD_HINTS = {
    "access.trusted_visas": "each entry is a table {iss = \"ISSUER URL\", jku = \"JWKS URL\"}; "
                            "`genofed access trust add NODE_DIR ISSUER_URL` writes it for you",
    "access.oidc_issuers": "a list of issuer URLs; `genofed access trust add` writes it for you",
    "access.dac_members": "a list of \"ISSUER|SUBJECT\" strings; use `genofed access dac add`",
    "access.operators": "a list of \"ISSUER|SUBJECT\" strings",
    "federation.network_file": "use `genofed network join NODE_DIR NETWORK_FILE`",
    "store.url": "s3://BUCKET or s3://BUCKET/PREFIX (a bucket name of 3-63 lower-case letters, "
                 "digits, '.' and '-'); empty keeps datasets in NODE_DIR/datasets",
}


def _dotted(loc: tuple[int | str, ...]) -> str:
    """('access', 'trusted_visas', 0, 'iss') -> 'access.trusted_visas[0].iss'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _where(text: str, loc: tuple[int | str, ...]) -> str:
    """", line N" of the line that sets the field at `loc` (or its table), if it can be found:
    TOML errors from the parser carry a line, validation errors do not."""
    keys = [str(p) for p in loc if isinstance(p, str)]
    table: list[str] = []
    best: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("["):
            table = [p.strip().strip('"') for p in line.strip("[]").split(".")]
            if table == keys:  # the field is a table of its own ([[access.trusted_visas]])
                best = best or number
            continue
        key = line.split("=", 1)[0].strip().strip('"') if "=" in line else None
        if key is not None and [*table, key] == keys[: len(table) + 1]:
            return f", line {number}"
    return f", line {best}" if best else ""


def save_config(root: Path, config: NodeConfig) -> None:
    """Write `node.toml` atomically (used by commands that change settings)."""
    path = root / CONFIG_FILE
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(config.model_dump()), encoding="utf-8")
    os.replace(tmp, path)


def init_node(root: Path, *, node_id: str, country: str, keys_dir: str | None = None) -> NodePaths:
    """Create a node directory with fresh keys. Refuses to touch an existing node."""
    if (root / CONFIG_FILE).exists():
        raise NodeConfigError(f"{root}: already a genofed node; refusing to overwrite its keys")
    try:
        config = NodeConfig(
            node_id=node_id,
            country=country.upper(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            keys_dir=keys_dir or "keys",
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                             for e in exc.errors())
        raise NodeConfigError(problems) from None
    root.mkdir(parents=True, exist_ok=True)
    paths = NodePaths(root, config)
    paths.datasets.mkdir(exist_ok=True)
    paths.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(paths.keys, 0o700)
    _generate_keys(paths)
    save_config(root, config)
    return paths


def _generate_keys(paths: NodePaths) -> None:
    from crypt4gh.keys import c4gh
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, x25519

    # Service keys are stored unencrypted but readable by the owner only; a passphrase would have
    # to sit next to them for unattended serving.
    with contextlib.redirect_stderr(io.StringIO()):  # it prints a warning about exactly that
        c4gh.generate(str(paths.c4gh_secret_key), str(paths.c4gh_public_key), None,
                      b"genofed node")
    pem = serialization.PrivateFormat.PKCS8
    for path, key in (
        (paths.signing_key, ec.generate_private_key(ec.SECP256R1())),
        (paths.agreement_key, x25519.X25519PrivateKey.generate()),
    ):
        data = key.private_bytes(serialization.Encoding.PEM, pem, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
