"""The Beacon over real HTTP on loopback: `genofed serve` in a subprocess, and uvicorn in a
thread, answered by an ordinary HTTP client."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from genofed.server.app import create_app

from support import free_port


def _wait(url: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server did not come up at {url}")


@pytest.fixture(scope="module")
def served(beacon_node: Any) -> Iterator[str]:
    """`genofed serve NODE --port N` as a separate process."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from genofed.cli.main import main; main()", "serve",
         str(beacon_node.node_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{base}/beacon/info")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_cli_serve_answers_over_http(served: str, schemas: Any) -> None:
    info = httpx.get(f"{served}/beacon/info")
    assert info.status_code == 200
    schemas.check("framework/json/responses/beaconInfoResponse.json", info.json())
    assert httpx.get(f"{served}/openapi.json").json()["paths"]["/beacon/g_variants"]
    response = httpx.post(f"{served}/beacon/individuals", json={
        "meta": {"apiVersion": "2.0"},
        "query": {"filters": [{"id": "NCIT:C20197"}], "requestedGranularity": "count"}})
    assert response.status_code == 200
    schemas.check_response(response.json())
    ids = {s["id"] for s in response.json()["response"]["resultSets"]}
    assert ids == {"ds-public", "ds-registered", "ds-controlled"}
    bad = httpx.post(f"{served}/beacon/individuals", content=b"{oops",
                     headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["errorCode"] == 400


def test_uvicorn_in_thread_concurrent_clients(beacon_node: Any) -> None:
    port = free_port()
    config = uvicorn.Config(create_app(beacon_node.node_dir), host="127.0.0.1", port=port,
                            log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{base}/beacon/service-info")
        statuses: list[int] = []

        def worker() -> None:
            with httpx.Client(base_url=base) as http:
                for start in range(0, 200_000, 20_000):
                    statuses.append(http.get("/beacon/g_variants", params={
                        "referenceName": "chr20", "start": start, "end": start + 5_000,
                        "requestedGranularity": "count"}).status_code)

        workers = [threading.Thread(target=worker) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert statuses == [200] * 40
    finally:
        server.should_exit = True
        thread.join(timeout=10)
