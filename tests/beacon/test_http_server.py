"""The Beacon over real HTTP on loopback: `genofed serve` in a subprocess, and uvicorn in a
thread, answered by an ordinary HTTP client."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from genofed.server.app import create_app
from tests.support import served


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


def _announced_url(process: subprocess.Popen[str],
                   deadline: float = 30.0) -> tuple[str, threading.Thread]:
    """The URL a server started with `--port 0` announces on stderr (uvicorn names the port the
    kernel chose), and the thread that goes on reading stderr so that later log lines never fill
    the pipe."""
    assert process.stderr is not None
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
        if found:
            drain = threading.Thread(target=process.stderr.read, daemon=True)
            drain.start()
            return found.group(1), drain
    raise AssertionError("`genofed serve --port 0` announced no URL")


@pytest.fixture(scope="module")
def cli_served(beacon_node: Any) -> Iterator[str]:
    """`genofed serve NODE --port N` as a separate process."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from genofed.cli.main import main; main()", "serve",
         str(beacon_node.node_dir), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    drain: threading.Thread | None = None
    try:
        base, drain = _announced_url(process)
        _wait(f"{base}/beacon/info")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if drain is not None:
            drain.join(timeout=10)  # EOF: the server has exited
        assert process.stderr is not None
        process.stderr.close()


def test_cli_serve_answers_over_http(cli_served: str, schemas: Any) -> None:
    served = cli_served
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
    with served(create_app(beacon_node.node_dir)) as base:
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
