"""Fixtures for the federation tests: three real genofed nodes (FI, SE, DE) holding disjoint
sample subsets of one simulated cohort (so the pooled VCF is their `bcftools merge`), plus a
small public dataset on the FI node; each served by uvicorn on a loopback port, all members of
one network file and trusting one local OIDC issuer, with a hub beside the FI node. Researchers
hold real passports from that issuer. Deliberately broken servers stand for foreign members that
misbehave (slow, 500, invalid JSON, schema-invalid body, dropped connection)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from genofed.access.identity.issuer import LocalIssuer
from genofed.config.node import NodePaths, init_node, load_config
from genofed.federation.network import (
    Member,
    add_member,
    create_network,
    join_network,
    member_for_node,
    member_from,
)
from genofed.ingest import ingest_dataset
from genofed.server.app import create_app
from genofed.server.hub import create_hub_app
from genofed.server.loopback import LoopbackServer
from genofed.sim import simulate_cohort
from tests.beacon.conftest import SchemaValidator
from tests.support import (
    bearer,
    refused_port,
    require_tool,
    served,
    set_exposure_budget,
    trust_issuer,
)

FLOOR = 5
#: node id -> (country, samples taken from the pooled cohort, dataset id, access tier)
NODES = {
    "fi-a": ("FI", 80, "fi-cohort", "registered"),
    "se-b": ("SE", 70, "se-cohort", "registered"),
    "de-c": ("DE", 90, "de-cohort", "controlled"),
}
PUBLIC_DATASET = "fi-public"  # a second, public-tier dataset on fi-a


@pytest.fixture(scope="session")
def schemas() -> Any:
    return SchemaValidator()



@dataclass
class NodeUnderTest:
    id: str
    country: str
    dir: Path
    url: str
    dataset: str
    vcf: Path
    samples: list[str]


@dataclass
class Federation:
    root: Path
    network_file: Path
    nodes: dict[str, NodeUnderTest]
    hub: str
    pooled_vcf: Path
    phenopackets: Path
    #: alice's passport: ResearcherStatus, so registered and controlled datasets give counts
    researcher: dict[str, str]
    #: alice's passport with a ControlledAccessGrants visa for de-cohort (records at de-c only)
    de_visa: dict[str, str]

    def signing_key(self, node_id: str) -> Path:
        node_dir = self.nodes[node_id].dir
        return NodePaths(node_dir, load_config(node_dir)).signing_key

    def member(self, node_id: str) -> Member:
        node = self.nodes[node_id]
        return member_for_node(node.dir, node.url)


def _split(pooled: Any, root: Path, names: list[str], node_id: str, dataset: str,
           tier: str) -> tuple[Path, Path, Path]:
    """The node's share of the pooled cohort: VCF subset, its Phenopackets, its metadata."""
    out = root / f"share-{node_id}"
    packets = out / "phenopackets"
    packets.mkdir(parents=True)
    vcf = out / "cohort.vcf.gz"
    subprocess.run(["bcftools", "view", "-s", ",".join(names), "-Oz", "-o", str(vcf),
                    str(pooled.vcf)], check=True, capture_output=True)
    subprocess.run(["bcftools", "index", "-t", str(vcf)], check=True, capture_output=True)
    for name in names:
        shutil.copy(pooled.phenopackets_dir / f"{name}.json", packets / f"{name}.json")
    metadata = json.loads(pooled.dataset_metadata.read_text())
    metadata.update(id=dataset, accessTier=tier, name=f"{dataset} ({len(names)} individuals)")
    (out / "dataset.json").write_text(json.dumps(metadata))
    return vcf, packets, out / "dataset.json"


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory,
               issuer: LocalIssuer) -> Iterator[Federation]:
    require_tool("bcftools")
    root = tmp_path_factory.mktemp("federation")
    total = sum(n for _c, n, _d, _t in NODES.values())
    pooled = simulate_cohort(root / "pooled", samples=total, seed=31, length_mb=0.3,
                             dataset_id="pooled", access_tier="registered")
    public = simulate_cohort(root / "public", samples=60, seed=32, length_mb=0.3,
                             dataset_id=PUBLIC_DATASET, access_tier="public")
    sample_names = subprocess.run(["bcftools", "query", "-l", str(pooled.vcf)], check=True,
                                  capture_output=True, text=True).stdout.split()
    network_file = root / "network.toml"
    create_network(network_file, "test-net")
    nodes: dict[str, NodeUnderTest] = {}
    servers: dict[str, LoopbackServer] = {}
    start = 0
    for node_id, (country, count, dataset, tier) in NODES.items():
        names = sample_names[start:start + count]
        start += count
        node_dir = root / node_id
        init_node(node_dir, node_id=node_id, country=country)
        # Merged answers are held to each node's truth here, on nodes every test queries:
        # exposure accounting would make answers depend on test order. It is switched on
        # (node.toml is read live) where the network's spending is tested.
        set_exposure_budget(node_dir, 0)
        trust_issuer(node_dir, issuer)
        vcf, packets, metadata = _split(pooled, root, names, node_id, dataset, tier)
        ingest_dataset(node_dir, dataset, vcf, phenopackets=packets, metadata=metadata)
        if node_id == "fi-a":
            ingest_dataset(node_dir, PUBLIC_DATASET, public.vcf,
                           phenopackets=public.phenopackets_dir,
                           metadata=public.dataset_metadata)
        servers[node_id] = LoopbackServer()  # bound now: its URL goes in the network file
        url = servers[node_id].url
        add_member(network_file, member_for_node(node_dir, url))
        nodes[node_id] = NodeUnderTest(node_id, country, node_dir, url, dataset, vcf, names)
    for node in nodes.values():
        join_network(node.dir, network_file)
    lifetime = 6 * 3600
    researcher = bearer(issuer.passport("alice", lifetime=lifetime))
    grant = issuer.visa("alice", "ControlledAccessGrants", "de-cohort", by="dac",
                        lifetime=lifetime)
    de_visa = bearer(issuer.passport("alice", extra_visas=[grant], lifetime=lifetime))
    with ExitStack() as stack:
        for node in nodes.values():
            stack.enter_context(servers[node.id]).start(create_app(node.dir))
        for node in nodes.values():  # warm caches: fault tests time members against 1-2 s
            httpx.get(f"{node.url}/beacon/individuals", headers=researcher, params={
                "requestedGranularity": "count", "referenceName": "20", "start": "1000",
                "end": "200000", "filters": "NCIT:C16576"}, timeout=30).raise_for_status()
            httpx.get(f"{node.url}/beacon/filtering_terms", timeout=30).raise_for_status()
        hub_app = create_hub_app(network_file, nodes["fi-a"].dir, timeout=3.0)
        hub = stack.enter_context(served(hub_app))
        yield Federation(root, network_file, nodes, hub, pooled.vcf, pooled.phenopackets_dir,
                         researcher, de_visa)


# -- deliberately broken members ----------------------------------------------------------------
BROKEN_BODIES = {
    "invalid_json": b'{"meta": {"beaconId": "org.broken", "apiVersion": "v2.0.0", '
                    b'"returnedGranularity": "count", "responseSumm',
    "schema_invalid": json.dumps({
        "meta": {"beaconId": "org.broken", "apiVersion": "v2.0.0",
                 "returnedSchemas": [], "returnedGranularity": "count"},
        "responseSummary": {"exists": "yes", "numTotalResults": -40},
        "response": {"resultSets": [{"id": "x", "resultsCount": "many"}]}}).encode(),
}


class BrokenNode:
    """A raw HTTP/1.1 server that misbehaves in one way (`mode`), standing for a foreign member:
    `slow` never answers, `http_500` fails, `invalid_json` answers garbage, `schema_invalid`
    answers JSON that is not a Beacon answer, `dropped` closes the connection mid-body."""

    #: Requests held unanswered by "slow" members right now, and the most at once (across all
    #: BrokenNodes: the hub asks members concurrently, so its slow members hold one each).
    _held: ClassVar[int] = 0
    peak_held: ClassVar[int] = 0
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, mode: str) -> None:
        self.mode = mode
        # Bound now, so the URL is known at once; "down" never listens on it (refused).
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._writers: list[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BrokenNode:
        if self.mode != "down":  # "down": nothing listens on the port
            self._thread.start()
            assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
            self._thread.join(timeout=5)
        if not self._loop.is_closed():  # "down": the loop never ran
            self._loop.close()
        self._socket.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, sock=self._socket))
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _stop(self) -> None:
        self._server.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        # the handlers closed their writers: let the transports release their sockets before
        # the loop (and with it their pending callbacks) goes
        await asyncio.gather(*(w.wait_closed() for w in self._writers), return_exceptions=True)
        asyncio.get_running_loop().stop()

    @classmethod
    async def _hold(cls, reader: asyncio.StreamReader) -> None:
        """Never answer: hold the request until the client gives up and closes."""
        with cls._lock:
            cls._held += 1
            cls.peak_held = max(cls.peak_held, cls._held)
        try:
            await reader.read()
        finally:
            with cls._lock:
                cls._held -= 1

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            if self.mode == "slow":
                await self._hold(reader)
            elif self.mode == "http_500":
                body = b"Internal Server Error"
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (len(body), body))
            elif self.mode == "dropped":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: 4096\r\n\r\n" + b'{"meta": {"beaconId": "o')
                await writer.drain()
            else:
                body = BROKEN_BODIES[self.mode]
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (len(body), body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def member_with_fresh_keys(node_id: str, country: str, url: str) -> Member:
    def pem(key: Any) -> str:
        return key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    return member_from({"id": node_id, "country": country, "base_url": url,
                        "signing_public_key": pem(ec.generate_private_key(ec.SECP256R1())),
                        "agreement_public_key": pem(x25519.X25519PrivateKey.generate())})


@pytest.fixture(scope="session")
def hub_for(federation: Federation, tmp_path_factory: pytest.TempPathFactory
            ) -> Callable[..., Any]:
    """`with hub_for(extra_members, timeout=...) as url`: a hub (beside fi-a) over the three
    real nodes plus `extra_members`, in a network file of its own. With `real_nodes=False`
    the only other member is fi-a itself, listed at a port where nothing listens."""

    @contextmanager
    def make(extra: list[Member], timeout: float, real_nodes: bool = True) -> Iterator[str]:
        path = tmp_path_factory.mktemp("network") / "network.toml"
        create_network(path, "fault-net")
        with refused_port() as port:
            if real_nodes:
                for node_id in federation.nodes:
                    add_member(path, federation.member(node_id))
            else:
                add_member(path, federation.member("fi-a").model_copy(
                    update={"base_url": f"http://127.0.0.1:{port}"}))
            for member in extra:
                add_member(path, member)
            app = create_hub_app(path, federation.nodes["fi-a"].dir, timeout=timeout)
            with served(app) as url:
                yield url

    return make
