"""A lean HTTP/1.1 client for the fan-out: answers parsed by httptools (llhttp, the C parser
uvicorn serves with) over asyncio streams, with keep-alive connections pooled per member origin.

Why not httpx.AsyncClient: its layers (models, cookies, anyio, httpcore) cost ~1.5-2.5 ms of CPU
per request on a small machine, and a hub makes one request per member per query; h11 alone
costs ~60 µs an exchange, llhttp ~2 µs. It does only what a hub needs: one request per
connection at a time, Content-Length, chunked or close-delimited answers, TLS for https members,
a cap on answer size. Cancelling a request (the member's timeout) closes its connection.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from genofed.errors import TransportError

#: Idle connections older than this are not reused (uvicorn closes idle ones after 5 s).
IDLE_EXPIRY = 4.0
MAX_ANSWER = 64 << 20


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


#: RFC 9110 field names and request methods are tokens; values and targets must not break lines.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LINE_BREAKING = re.compile(r"[\r\n\0]")
_TARGET = re.compile(r"[^\x00-\x20\x7f]+")


def _request_bytes(method: str, target: str, headers: list[tuple[str, str]],
                   body: bytes | None) -> bytes:
    """The request as sent, after the checks that keep one field from injecting another."""
    if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
        raise TransportError("protocol", f"cannot send this request: bad method or target "
                             f"{method!r} {target!r}", received=False)
    lines = [f"{method} {target} HTTP/1.1"]
    has_length = False
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _LINE_BREAKING.search(value):
            raise TransportError("protocol", f"cannot send this request: header {name!r} is "
                                 "not a valid field", received=False)
        has_length = has_length or name.lower() == "content-length"
        lines.append(f"{name}: {value}")
    if body and not has_length:
        lines.append(f"content-length: {len(body)}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise TransportError("protocol", f"cannot send this request: {exc}",
                             received=False) from None
    return head + body if body else head


class _Answer:
    """One response, collected from the parser's callbacks (interim 1xx answers are skipped)."""

    __slots__ = ("chunks", "complete", "delimited", "headers_done", "keep_alive", "limit",
                 "parser", "reason", "size", "too_large")

    def __init__(self, limit: int = MAX_ANSWER) -> None:
        self.limit = limit
        self.parser = httptools.HttpResponseParser(self)
        self.chunks: list[bytes] = []
        self.size = 0
        self.reason = ""
        self.delimited = False  # Content-Length or chunked: the answer's end is in the stream
        self.headers_done = False
        self.keep_alive = False  # read at the headers: llhttp forgets it once the answer ends
        self.complete = False
        self.too_large = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, _value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.limit:
            self.too_large = True
        elif not self.too_large:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:  # interim: the real answer follows
            self.chunks, self.size, self.reason = [], 0, ""
            self.delimited = self.headers_done = False
        else:
            self.complete = True

    @property
    def status(self) -> int:
        return self.parser.get_status_code()


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = time.monotonic()
        self.keep_alive = True  # the last answer was complete and did not end the connection

    @property
    def reusable(self) -> bool:
        return self.keep_alive and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, method: str, target: str, headers: list[tuple[str, str]],
                       body: bytes | None, max_answer: int = MAX_ANSWER) -> Reply:
        request = _request_bytes(method, target, headers, body)
        self.keep_alive = False
        answer = _Answer(max_answer)
        received = False
        try:
            self.writer.write(request)
            await self.writer.drain()
            while not answer.complete:
                incoming = await self.reader.read(1 << 16)
                if not incoming:
                    if answer.headers_done and not answer.delimited:
                        break  # an answer delimited by the end of the connection
                    raise TransportError("dropped", "connection closed mid-answer" if received
                                         else "connection closed before an answer",
                                         received=received)
                received = True
                answer.parser.feed_data(incoming)
                if answer.too_large:
                    raise TransportError("too_large", f"answer above {max_answer} bytes")
            self.keep_alive = answer.complete and answer.keep_alive
        except httptools.HttpParserError as exc:
            if not answer.complete:
                raise TransportError("protocol", f"{type(exc).__name__}: {exc}",
                                     received=received) from None
            self.keep_alive = False  # bytes after a whole answer: this connection is done
        except (ConnectionError, OSError) as exc:
            raise TransportError("dropped", f"{type(exc).__name__}: {exc}",
                                 received=received) from None
        self.last_used = time.monotonic()
        return Reply(answer.status, answer.reason, b"".join(answer.chunks))


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
                      headers: list[tuple[str, str]], body: bytes | None = None, *,
                      max_answer: int | None = None) -> Reply:
        """One exchange; a reused connection the server had closed is replaced once. Answers
        above `max_answer` bytes (default: the module's MAX_ANSWER, read per call) are refused."""
        if max_answer is None:
            max_answer = MAX_ANSWER
        connection = self._take_idle(origin)
        reused = connection is not None
        if connection is None:
            connection = await self._connect(origin)
        while True:
            try:
                reply = await connection.exchange(method, target, headers, body, max_answer)
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

    async def close(self) -> None:
        """Close the idle connections and wait until their sockets are closed (a loop that stops
        right after would otherwise leave them to the garbage collector)."""
        connections = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for connection in connections:
            connection.close()
        await asyncio.gather(*(c.writer.wait_closed() for c in connections),
                             return_exceptions=True)
