"""Fan-out: one signed request to every member at once, each bounded by its own timeout.

Every member yields a :class:`NodeAnswer` whatever happens to it: `ok` (a decoded answer that
passed its structural check), `timeout`, `error` (unreachable, HTTP error, connection dropped
mid-answer), `unauthorised` (401/403: the node refused the researcher or this hub),
`invalid_answer` (not JSON, or not the structure merging relies on), or `skipped` (the request
names datasets the member does not hold). Nothing a member does can raise out of :meth:`ask_all`
or keep it waiting past the timeout.

Which datasets a member holds is learnt from its `/beacon/info` (`response.info.datasets`, as
genofed nodes publish it) and cached for `directory_ttl` seconds; the lookup runs inside the
member's timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from genofed.errors import TransportError
from genofed.federation.answers import AnswerCheck
from genofed.federation.network import Member
from genofed.federation.signatures import PeerSigner
from genofed.federation.transport import ConnectionPool, Origin, Reply

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0


class Status(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    ERROR = "error"
    UNAUTHORISED = "unauthorised"
    INVALID = "invalid_answer"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Outgoing:
    """The request one member is sent: `path` from the member's base URL, `query` raw."""

    method: str
    path: str
    query: str = ""
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


#: Builds a member's request from the datasets it holds (None: not known or not needed);
#: a str instead says why the member is not asked at all.
Plan = Callable[[Member, frozenset[str] | None], Outgoing | str]


@dataclass
class NodeAnswer:
    member: Member
    status: Status
    elapsed: float
    document: Any = None
    http_status: int | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def report(self) -> dict[str, Any]:
        """The member's line in the network's status report."""
        out: dict[str, Any] = {"node": self.member.id, "country": self.member.country,
                               "status": self.status.value,
                               "elapsedMs": round(self.elapsed * 1000, 1)}
        if self.http_status is not None:
            out["httpStatus"] = self.http_status
        if self.message:
            out["message"] = self.message
        return out


def _error_message(content: bytes) -> str | None:
    """The Beacon `error.errorMessage` of an error body, if it has one."""
    try:
        document = orjson.loads(content)
        message = document["error"]["errorMessage"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return message[:300] if isinstance(message, str) else None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class FanOut:
    """Sends each query to many members concurrently over pooled keep-alive HTTP/1.1
    connections (:mod:`genofed.federation.transport`)."""

    def __init__(self, signer: PeerSigner, *, timeout: float = DEFAULT_TIMEOUT,
                 directory_ttl: float = 30.0) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.signer = signer
        self.timeout = timeout
        self.directory_ttl = directory_ttl
        self._pool: ConnectionPool | None = None
        self._origins: dict[str, Origin] = {}
        self._datasets: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}

    async def open(self) -> None:
        self._pool = ConnectionPool()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            raise RuntimeError("FanOut.open() was not called")
        return self._pool

    async def ask_all(self, members: Sequence[Member], plan: Plan, check: AnswerCheck, *,
                      needs_datasets: bool = False) -> list[NodeAnswer]:
        """Every member's answer, in `members` order."""
        return list(await asyncio.gather(*(self.ask(m, plan, check, needs_datasets)
                                           for m in members)))

    async def ask(self, member: Member, plan: Plan, check: AnswerCheck,
                  needs_datasets: bool = False) -> NodeAnswer:
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(
                self._exchange(member, plan, check, needs_datasets, started), self.timeout)
        except TimeoutError:
            return NodeAnswer(member, Status.TIMEOUT, time.perf_counter() - started,
                              message=f"no complete answer within {self.timeout:g} s")
        except Exception as exc:  # a bug here must cost one member's answer, not the query
            log.exception("asking %s failed", member.id)
            return NodeAnswer(member, Status.ERROR, time.perf_counter() - started,
                              message=f"hub error while asking this node ({_describe(exc)})")

    async def _exchange(self, member: Member, plan: Plan, check: AnswerCheck,
                        needs_datasets: bool, started: float) -> NodeAnswer:
        held = await self.datasets_of(member) if needs_datasets else None
        outgoing = plan(member, held)
        if isinstance(outgoing, str):
            return NodeAnswer(member, Status.SKIPPED, time.perf_counter() - started,
                              message=outgoing)
        try:
            reply = await self._send(member, outgoing)
        except TransportError as exc:
            message = {"unreachable": f"unreachable ({exc.detail})",
                       "dropped": f"connection dropped mid-answer ({exc.detail})",
                       "protocol": f"not a valid HTTP answer ({exc.detail})",
                       "too_large": exc.detail}[exc.kind]
            status = Status.INVALID if exc.kind == "too_large" else Status.ERROR
            return NodeAnswer(member, status, time.perf_counter() - started, message=message)
        return self._classify(member, reply, check, time.perf_counter() - started)

    async def send(self, member: Member, outgoing: Outgoing, timeout: float, *,
                   max_answer: int | None = None) -> Reply:
        """One signed exchange with a member, bounded by `timeout` seconds (TimeoutError), for
        callers that read the answer themselves (e.g. an analysis round, whose answers may be
        larger than a Beacon's: `max_answer`); TransportError when the exchange fails."""
        return await asyncio.wait_for(self._send(member, outgoing, max_answer), timeout)

    async def _send(self, member: Member, outgoing: Outgoing,
                    max_answer: int | None = None) -> Reply:
        origin = self._origins.get(member.base_url)
        if origin is None:
            origin = self._origins[member.base_url] = Origin.of(member.base_url)
        path = origin.base_path + outgoing.path
        headers = {"host": origin.authority, **outgoing.headers}
        if outgoing.body:
            headers["content-length"] = str(len(outgoing.body))
        headers.update(self.signer.signature_headers(outgoing.method, origin.authority, path,
                                                     outgoing.query, headers, outgoing.body))
        target = path + (f"?{outgoing.query}" if outgoing.query else "")
        return await self.pool.request(origin, outgoing.method, target, list(headers.items()),
                                       outgoing.body, max_answer=max_answer)

    @staticmethod
    def _classify(member: Member, reply: Reply, check: AnswerCheck,
                  elapsed: float) -> NodeAnswer:
        status = reply.status
        if status in (401, 403):
            return NodeAnswer(member, Status.UNAUTHORISED, elapsed, http_status=status,
                              message=_error_message(reply.body) or "refused")
        if status != 200:
            message = _error_message(reply.body) or reply.reason or "error"
            return NodeAnswer(member, Status.ERROR, elapsed, http_status=status,
                              message=f"HTTP {status}: {message}")
        try:
            document = orjson.loads(reply.body)
        except orjson.JSONDecodeError as exc:
            return NodeAnswer(member, Status.INVALID, elapsed, http_status=status,
                              message=f"not JSON ({exc})")
        problems = check(document)
        if problems:
            return NodeAnswer(member, Status.INVALID, elapsed, http_status=status,
                              message="not a Beacon answer the network can use: "
                                      + "; ".join(problems))
        return NodeAnswer(member, Status.OK, elapsed, document, status)

    async def datasets_of(self, member: Member) -> frozenset[str] | None:
        """The dataset ids `member` holds (cached), or None when it does not say."""
        key = (member.id, member.base_url)
        cached = self._datasets.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.directory_ttl:
            return cached[1]
        try:
            reply = await self._send(member, Outgoing("GET", "/beacon/info",
                                                      headers={"accept": "application/json"}))
            datasets = orjson.loads(reply.body)["response"]["info"]["datasets"]
        except (TransportError, orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if reply.status != 200 or not isinstance(datasets, list) or \
                not all(isinstance(d, str) for d in datasets):
            return None
        held = frozenset(datasets)
        self._datasets[key] = (now, held)
        return held
