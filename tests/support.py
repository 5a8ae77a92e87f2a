"""Helpers shared by the test modules: paths to the shared data, running genofed and bcftools."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from genofed.server.loopback import LoopbackServer

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENOFED_SHARED", REPO.parent / "shared"))
HTSGET_DATA = SHARED / "testdata" / "htsget"


def genofed(*args: str | Path, check: bool = False, timeout: float = 300,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess (exit codes, stderr and signals are real)."""
    result = subprocess.run([sys.executable, "-m", "genofed", *map(str, args)],
                            capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
                            **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise AssertionError(f"genofed {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def bcftools(*args: str | Path) -> str:
    return subprocess.run(["bcftools", *map(str, args)], capture_output=True, text=True,
                          check=True).stdout


@dataclass(frozen=True)
class Cohort:
    dir: Path
    dataset_id: str

    @property
    def vcf(self) -> Path:
        return self.dir / "cohort.vcf.gz"

    @property
    def phenopackets(self) -> Path:
        return self.dir / "phenopackets"

    @property
    def metadata(self) -> Path:
        return self.dir / "dataset.json"

    @property
    def populations(self) -> Path:
        return self.dir / "populations.tsv"

    @property
    def genes(self) -> Path:
        return self.dir / "genes.bed"


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port held bound but not listening while the block runs: connecting to it is
    refused, and no other process can take it meanwhile (a node that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` served by uvicorn in a thread on a loopback port; yields its base URL."""
    with LoopbackServer() as server:
        server.start(app)
        yield server.url


def trust_issuer(node_dir: Path, issuer: Any) -> None:
    """Configure a node to accept a LocalIssuer's tokens and the visas it signs."""
    from genofed.config.node import VisaTrust, load_config, save_config

    config = load_config(node_dir)
    config.access.oidc_issuers = [issuer.url]
    iss, jku = issuer.visa_trust
    config.access.trusted_visas = [VisaTrust(iss=iss, jku=jku)]
    save_config(node_dir, config)


def set_exposure_budget(node_dir: Path, nats: float, public: float | None = None) -> None:
    """`disclosure.exposure_budget` (and, given, `public_exposure_budget`) in a node's
    node.toml (served nodes read it live)."""
    from genofed.config.node import load_config, save_config

    config = load_config(node_dir)
    config.disclosure.exposure_budget = nats
    if public is not None:
        config.disclosure.public_exposure_budget = public
    save_config(node_dir, config)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def require_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed: run scripts/bootstrap.sh (it installs the Debian "
                    "tools the tests compare against)")
