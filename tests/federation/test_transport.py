"""The hub's HTTP/1.1 client against raw servers on loopback: every way an answer can be framed,
and every way it can go wrong, ends in a Reply or a TransportError of the right kind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from genofed.errors import TransportError
from genofed.federation import transport
from genofed.federation.transport import ConnectionPool, Origin, Reply

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def exchange(answer: bytes, *, close: bool = True,
             headers: list[tuple[str, str]] | None = None) -> Reply:
    """One request to a server that sends `answer` verbatim (then closes, if `close`)."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()
            if not close:
                await asyncio.sleep(5)  # cancelled when the scenario ends
        finally:
            writer.close()

    async def scenario() -> Reply:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        origin = Origin.of(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        pool = ConnectionPool()
        try:
            return await asyncio.wait_for(pool.request(
                origin, "GET", "/beacon/info", headers or [("host", origin.authority)]), 3)
        finally:
            await pool.close()
            server.close()

    return asyncio.run(scenario())


def test_content_length_answer() -> None:
    reply = exchange(b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope", close=False)
    assert (reply.status, reply.reason, reply.body) == (404, "Not Found", b"nope")


def test_bytes_after_a_whole_answer_do_not_spoil_it() -> None:
    reply = exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokGARBAGE", close=False)
    assert (reply.status, reply.body) == (200, b"ok")


def test_answer_delimited_by_closing_the_connection() -> None:
    reply = exchange(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"a\": 1}")
    assert (reply.status, reply.body) == (200, b'{"a": 1}')


def test_interim_answers_are_skipped() -> None:
    reply = exchange(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
                     b"ok", close=False)
    assert (reply.status, reply.reason, reply.body) == (200, "OK", b"ok")


@pytest.mark.parametrize(("answer", "kind"), [
    (b"", "dropped"),  # closed before answering
    (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", "dropped"),  # closed mid-answer
    (b"HTTP/1.1 200 OK\r\ncontent-len", "dropped"),  # closed mid-headers
    (b"SMTP ready\r\n\r\n", "protocol"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", "protocol"),
])
def test_broken_answers(answer: bytes, kind: str) -> None:
    with pytest.raises(TransportError) as raised:
        exchange(answer)
    assert raised.value.kind == kind


def test_answers_above_the_cap_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "MAX_ANSWER", 10)
    with pytest.raises(TransportError) as raised:
        exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n01234567890", close=False)
    assert raised.value.kind == "too_large"


@pytest.mark.parametrize("headers", [
    [("host", "a"), ("authorization", "Bearer x\r\nx-injected: 1")],
    [("host", "a"), ("bad name", "x")],
    [("host", "a"), ("authorization", "Bearer \u20ac")],
])
def test_fields_that_would_inject_others_are_not_sent(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(TransportError) as raised:
        exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", headers=headers)
    assert raised.value.kind == "protocol" and "cannot send" in raised.value.detail


def test_keep_alive_connections_are_reused() -> None:
    """One connection carries every request while the member keeps it open (a new connection
    per request would cost the hub a handshake per member per query)."""
    accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        finally:
            writer.close()

    async def scenario() -> list[bytes]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        origin = Origin.of(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        pool = ConnectionPool()
        bodies = [(await pool.request(origin, "GET", "/", [("host", origin.authority)])).body
                  for _ in range(5)]
        await pool.close()
        server.close()
        return bodies

    assert asyncio.run(scenario()) == [b"ok"] * 5
    assert accepted == 1
