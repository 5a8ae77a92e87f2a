"""A member that is down, slow, answers 500, invalid JSON or a schema-invalid body, or drops the
connection mid-answer: the network answers within the timeout (plus a small margin) with a
partial answer that says which node failed and how, and a total over the nodes that answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from genofed.federation.transport import ConnectionPool, Origin
from tests.federation.conftest import NODES, BrokenNode, Federation, member_with_fresh_keys

TIMEOUT = 1.5
COHORTS = [dataset for _c, _n, dataset, _t in NODES.values()]
QUERY: dict[str, Any] = {"meta": {"apiVersion": "v2.0"}, "query": {
    "requestParameters": {"datasets": COHORTS}, "filters": [{"id": "NCIT:C16576"}],
    "requestedGranularity": "count"}}
#: mode -> (status the network reports, words its message must contain)
FAULTS = {
    "down": ("error", "unreachable"),
    "slow": ("timeout", f"within {TIMEOUT:g} s"),
    "http_500": ("error", "HTTP 500"),
    "invalid_json": ("invalid_answer", "not JSON"),
    "schema_invalid": ("invalid_answer", "responseSummary/exists"),
    "dropped": ("error", "dropped mid-answer"),
}


def _ask(hub: str, federation: Federation) -> httpx.Response:
    """The hub's answer (a hub that did not honour its own timeout would make this time out)."""
    return httpx.post(f"{hub}/network/beacon/individuals", json=QUERY,
                      headers=federation.researcher, timeout=TIMEOUT + 30)


@pytest.mark.parametrize("mode", sorted(FAULTS))
def test_a_faulty_member_yields_a_labelled_partial_answer(
        mode: str, federation: Federation, hub_for: Callable[..., Any], schemas: Any) -> None:
    direct = []
    for node in federation.nodes.values():
        body = {**QUERY, "query": {**QUERY["query"],
                                   "requestParameters": {"datasets": [node.dataset]}}}
        direct.append(httpx.post(f"{node.url}/beacon/individuals", json=body,
                                 headers=federation.researcher).json())
    expected = sum(d["responseSummary"]["numTotalResults"] for d in direct)

    with BrokenNode(mode) as broken, \
            hub_for([member_with_fresh_keys("xx-broken", "XX", broken.url)], TIMEOUT) as hub:
        response = _ask(hub, federation)
    assert response.status_code == 200, response.text
    document = response.json()
    schemas.check_response(document)
    report = document["info"]["network"]
    assert report["complete"] is False
    lines = {line["node"]: line for line in report["nodes"]}
    status, words = FAULTS[mode]
    assert lines["xx-broken"]["status"] == status, lines["xx-broken"]
    assert words in lines["xx-broken"]["message"], lines["xx-broken"]
    assert lines["xx-broken"]["country"] == "XX"
    assert all(lines[node_id]["status"] == "ok" for node_id in NODES)
    # the total covers exactly the nodes that answered: theirs, not a guess for the failed one
    assert document["responseSummary"]["numTotalResults"] == expected
    assert {s["info"]["node"]["id"] for s in document["response"]["resultSets"]} == set(NODES)


def test_no_usable_member_is_an_error_not_an_empty_answer(
        federation: Federation, hub_for: Callable[..., Any], schemas: Any) -> None:
    """Members failing at once are waited for at once (not one timeout after another); with
    nothing usable the network answers with an error naming every failure, never `exists:
    false`."""
    BrokenNode.peak_held = 0
    with BrokenNode("slow") as slow_1, BrokenNode("slow") as slow_2, \
            BrokenNode("http_500") as failing, \
            hub_for([member_with_fresh_keys("xx-slow-1", "XX", slow_1.url),
                     member_with_fresh_keys("xx-slow-2", "XX", slow_2.url),
                     member_with_fresh_keys("xx-failing", "XX", failing.url)], TIMEOUT,
                    real_nodes=False) as hub:
        response = _ask(hub, federation)
    assert BrokenNode.peak_held == 2, "the slow members were not asked at the same time"
    assert response.status_code == 502, response.text
    document = response.json()
    schemas.check("framework/json/responses/beaconErrorResponse.json", document)
    message = document["error"]["errorMessage"]
    for words in ("xx-slow-1: timeout", "xx-slow-2: timeout", "xx-failing: error",
                  "HTTP 500", "fi-a: error (unreachable"):
        assert words in message
    assert [n["status"] for n in document["info"]["network"]["nodes"]] == [
        "error", "timeout", "timeout", "error"]


def test_connections_a_member_closes_are_replaced_and_chunked_answers_read_whole() -> None:
    """Members may close keep-alive connections whenever they like (servers do, after a few idle
    seconds, or right after answering): the hub's next request goes out on a fresh connection
    instead of failing. Chunked answers are read whole."""
    accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"transfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n: 1\r\n1\r\n}\r\n"
                     b"0\r\n\r\n")
        await writer.drain()
        writer.close()  # keep-alive was not refused, yet the connection ends here

    async def scenario() -> list[bytes]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        origin = Origin.of(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        pool = ConnectionPool()
        bodies = []
        for pause in (0.0, 0.0, 0.05, 0.0):
            await asyncio.sleep(pause)
            reply = await pool.request(origin, "GET", "/beacon/info",
                                       [("host", origin.authority)])
            bodies.append(reply.body)
        await pool.close()
        server.close()
        return bodies

    assert asyncio.run(scenario()) == [b'{"a": 1}'] * 4
    assert accepted == 4
