"""Fixtures for the governance tests: a real PostgreSQL server started for the session (as the
`postgres` user when we run as root, in a temporary directory, reached through its Unix socket
there: no TCP port to pick or race for), a
`database_url` that runs each test on SQLite and on PostgreSQL, and the governance parts built on
it: committee, visa signer, audit log and policy, over a few datasets with DUO conditions."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from genofed.access.audit import GENESIS, AuditLog
from genofed.access.dac import Committee, Identity
from genofed.access.db import GovernanceDB
from genofed.access.enforcement import GovernancePolicy
from genofed.access.models import Base
from genofed.access.visas import VisaSigner
from genofed.store.metadata import DatasetMetadata

NODE_URL = "https://node.example.org"
SEAL_KEY = b"governance-tests-seal-key-32byte"


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    #: The database the tests share, migrated once; emptied before each test (far faster than
    #: a database per test).
    shared: str = ""

    def url(self, database: str) -> str:
        """`host` is the directory of the server's socket, which libpq takes as a host."""
        return (f"postgresql+psycopg://{self.user}:{self.password}@/{database}"
                f"?host={self.host}&port={self.port}")

    def _connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, dbname=database, autocommit=True)

    def create_database(self) -> str:
        """A new, empty database (no schema)."""
        name = f"gov_{secrets.token_hex(6)}"
        with self._connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def fresh_shared_database(self) -> str:
        """The shared database, migrated and with every governance table emptied."""
        if not self.shared:
            self.shared = self.create_database()
            GovernanceDB(self.url(self.shared)).close()  # runs the migrations
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with self._connect(self.shared) as conn:
            conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
            conn.execute("INSERT INTO audit_head (id, seq, hash, seal) VALUES (1, 0, %s, '')",
                         (GENESIS,))
        return self.url(self.shared)


def _postgres_bin() -> Path | None:
    override = os.environ.get("GENOFED_PG_BIN")
    candidates = [Path(override)] if override else []
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0), reverse=True)
    candidates += versions
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    return next((c for c in candidates
                 if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)



@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL cluster on a Unix socket, torn down after the session."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
                    "(Debian: apt-get install postgresql) or set GENOFED_PG_BIN to their "
                    "directory to run the governance tests on PostgreSQL")
    root = Path(tempfile.mkdtemp(prefix="genofed-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use the postgres account
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_urlsafe(24)
    pwfile = root / "password"
    pwfile.write_text(password)
    if prefix:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
    data = root / "data"
    port = 5432  # names the socket file only: the server listens on no TCP address
    server = PostgresServer(str(root), port, "genofed", password)

    def run(*args: str) -> None:
        result = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n"
                               f"{tail}")

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", server.user, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
        options = (f"-p {port} -k {root} -c listen_addresses='' -c fsync=off "
                   "-c max_connections=50")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
            "-t", "60", "-o", options, "start")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            # Immediate: the cluster is thrown away, so no shutdown checkpoint is needed.
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                            "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty governance database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'governance.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.fresh_shared_database()


@pytest.fixture
def db(database_url: str) -> Iterator[GovernanceDB]:
    database = GovernanceDB(database_url)
    yield database
    database.close()


@dataclass(frozen=True)
class People:
    researcher: Identity
    other_researcher: Identity
    member: Identity
    second_member: Identity
    outsider: Identity


@pytest.fixture
def people() -> People:
    login = "https://login.example.org"
    return People(researcher=Identity(login, "researcher-1"),
                  other_researcher=Identity(login, "researcher-2"),
                  member=Identity(login, "dac-alice"),
                  second_member=Identity("https://other-login.example.net", "dac|bob"),
                  outsider=Identity(login, "not-on-the-dac"))


def _dataset(dataset_id: str, tier: str, *uses: dict[str, object]) -> DatasetMetadata:
    return DatasetMetadata.model_validate({"id": dataset_id, "name": dataset_id,
                                           "accessTier": tier,
                                           "dataUseConditions": {"duoDataUse": list(uses)}})


@pytest.fixture
def datasets() -> dict[str, DatasetMetadata]:
    """Controlled datasets with typical consent, and one of each other tier."""
    return {d.id: d for d in (
        _dataset("gru-cohort", "controlled", {"id": "DUO:0000042"}),
        _dataset("hmb-irb-cohort", "controlled",
                 {"id": "DUO:0000006", "modifiers": [{"id": "DUO:0000021"}]}),
        _dataset("t2d-cohort", "controlled",
                 {"id": "DUO:0000007", "modifiers": [{"id": "MONDO:0005148"}]}),
        _dataset("npu-cohort", "controlled",
                 {"id": "DUO:0000042", "modifiers": [{"id": "DUO:0000045"}]}),
        _dataset("public-summary", "public", {"id": "DUO:0000004"}),
        _dataset("registered-cohort", "registered", {"id": "DUO:0000042"}),
    )}


@pytest.fixture
def signer() -> VisaSigner:
    return VisaSigner(ec.generate_private_key(ec.SECP256R1()), NODE_URL)


@pytest.fixture
def committee(db: GovernanceDB, signer: VisaSigner, datasets: dict[str, DatasetMetadata],
              people: People) -> Committee:
    members = [str(people.member), str(people.second_member)]
    return Committee(db, signer, members=lambda: members, datasets=datasets.__getitem__)


@pytest.fixture
def audit(db: GovernanceDB) -> AuditLog:
    return AuditLog(db, SEAL_KEY)


@pytest.fixture
def policy(audit: AuditLog, committee: Committee) -> GovernancePolicy:
    return GovernancePolicy(audit, committee.is_revoked)
