"""A lean HTTP/1.1 client for the fan-out: h11 (the protocol engine under httpx) over asyncio
streams, with keep-alive connections pooled per member origin.

Why not httpx.AsyncClient: its layers (models, cookies, anyio, httpcore) cost ~1.5-2.5 ms of CPU
per request on a small machine, and a hub makes one request per member per query; this costs
~0.2 ms. It does only what a hub needs: one request per connection at a time, Content-Length or
chunked answers, TLS for https members, a cap on answer size. Cancelling a request (the member's
timeout) closes its connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

#: Idle connections older than this are not reused (uvicorn closes idle ones after 5 s).
IDLE_EXPIRY = 4.0
MAX_ANSWER = 64 << 20


class TransportError(Exception):
    """The exchange failed: `kind` is "unreachable", "dropped" (the connection ended before
    the answer did), "protocol" (not valid HTTP/1.1) or "too_large"."""

    def __init__(self, kind: str, detail: str, *, received: bool = True) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        #: Whether any byte of an answer arrived (a reused connection that the server had
        #: already closed receives none: the request is retried once on a fresh one).
        self.received = received


@dataclass(frozen=True)
class Origin:
    """Where a member is: parsed once from its base URL."""

    scheme: str
    host: str
    port: int
    #: Host header and RFC 9421 @authority: lower-case, default port left out.
    authority: str
    #: Path prefix of the base URL ("" for most members).
    base_path: str

    @classmethod
    def of(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        host = parts.hostname or ""
        shown = f"[{host}]" if ":" in host else host
        authority = shown if port == default else f"{shown}:{port}"
        return cls(parts.scheme, host, port, authority.lower(), parts.path.rstrip("/"))


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    body: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = h11.Connection(h11.CLIENT)
        self.last_used = time.monotonic()

    @property
    def reusable(self) -> bool:
        return (self.protocol.our_state is h11.DONE and self.protocol.their_state is h11.DONE
                and not self.reader.at_eof())

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, method: str, target: str, headers: list[tuple[str, str]],
                       body: bytes | None) -> Reply:
        if self.protocol.our_state is h11.DONE:
            self.protocol.start_next_cycle()
        try:
            data = self.protocol.send(h11.Request(method=method, target=target, headers=headers))
            if body:
                data = (data or b"") + (self.protocol.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (self.protocol.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError as exc:
            raise TransportError("protocol", f"cannot send this request: {exc}") from None
        received = eof = False
        try:
            self.writer.write(data)
            await self.writer.drain()
            status, reason, chunks, size = 0, "", [], 0
            while True:
                event = self.protocol.next_event()
                if event is h11.NEED_DATA:
                    incoming = await self.reader.read(1 << 16)
                    received = received or bool(incoming)
                    eof = not incoming
                    self.protocol.receive_data(incoming)  # b"": the server closed
                elif isinstance(event, h11.Response):
                    status, reason = event.status_code, event.reason.decode("latin-1")
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_ANSWER:
                        raise TransportError("too_large", f"answer above {MAX_ANSWER} bytes")
                    chunks.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self.last_used = time.monotonic()
                    return Reply(status, reason, b"".join(chunks))
                elif isinstance(event, h11.ConnectionClosed):
                    raise TransportError("dropped", "connection closed before an answer",
                                         received=received)
        except h11.RemoteProtocolError as exc:
            raise TransportError("dropped" if eof else "protocol", str(exc),
                                 received=received) from None
        except (ConnectionError, OSError) as exc:
            raise TransportError("dropped", f"{type(exc).__name__}: {exc}",
                                 received=received) from None


class ConnectionPool:
    """Keep-alive connections per origin; each request has a connection to itself."""

    def __init__(self, *, max_idle_per_origin: int = 64) -> None:
        self.max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._tls = ssl.create_default_context()

    async def _connect(self, origin: Origin) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                origin.host, origin.port,
                ssl=self._tls if origin.scheme == "https" else None,
                server_hostname=origin.host if origin.scheme == "https" else None)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError("unreachable", f"{type(exc).__name__}: {exc}",
                                 received=False) from None
        return _Connection(reader, writer)

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get((origin.scheme, origin.host, origin.port), [])
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable and now - connection.last_used < IDLE_EXPIRY:
                return connection
            connection.close()
        return None

    async def request(self, origin: Origin, method: str, target: str,
                      headers: list[tuple[str, str]], body: bytes | None = None) -> Reply:
        """One exchange; a reused connection the server had closed is replaced once."""
        connection = self._take_idle(origin)
        reused = connection is not None
        if connection is None:
            connection = await self._connect(origin)
        while True:
            try:
                reply = await connection.exchange(method, target, headers, body)
            except TransportError as exc:
                connection.close()
                if reused and not exc.received and exc.kind == "dropped":
                    reused = False
                    connection = await self._connect(origin)
                    continue
                raise
            except BaseException:  # cancelled mid-exchange (timeout): the connection is unusable
                connection.close()
                raise
            break
        idle = self._idle.setdefault((origin.scheme, origin.host, origin.port), [])
        if connection.reusable and len(idle) < self.max_idle:
            idle.append(connection)
        else:
            connection.close()
        return reply

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
