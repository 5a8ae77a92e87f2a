"""Real nodes with their analysis rounds tampered with or watched: a node that misbehaves on
purpose (from a given statistics round on it fails with HTTP 500, stalls, or has its masked
contribution altered in transit), and a node whose answers are recorded as the coordinator
receives them. Everything else (setup, variants, Beacon) is the node's own answer."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genofed.analysis.protocol import (
    ENDPOINT,
    SIGNATURE_BYTES,
    RoundKind,
    RoundReply,
    RoundRequest,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Fault:
    """What goes wrong: "fail" (500), "stall" (answer after `delay` seconds) or "tamper" (one
    bit of the masked contribution flipped after the node signed it), from statistics round
    `from_round` on."""

    kind: str
    from_round: int = 1
    delay: float = 30.0
    #: Statistics rounds seen so far, and the ones misbehaved on.
    seen: int = 0
    hits: list[str] = field(default_factory=list)


class FaultyNode:
    def __init__(self, app: App, fault: Fault) -> None:
        self.app = app
        self.fault = fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != ENDPOINT:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        request = RoundRequest.from_bytes(body)
        misbehave = False
        if request.kind is RoundKind.STATISTICS:
            self.fault.seen += 1
            misbehave = self.fault.seen >= self.fault.from_round
        replay = _replaying(body)

        if not misbehave:
            await self.app(scope, replay, send)
            return
        self.fault.hits.append(f"{request.step}#{request.number}")
        if self.fault.kind == "fail":
            await _respond(send, 500, b"deliberate failure")
            return
        if self.fault.kind == "stall":
            await asyncio.sleep(self.fault.delay)
            await self.app(scope, replay, send)
            return
        # tamper: let the node answer, then flip one bit of its masked vector
        status, headers, answer = await _capture(self.app, scope, replay)
        signature, body = answer[:SIGNATURE_BYTES], answer[SIGNATURE_BYTES:]
        reply = RoundReply.from_bytes(body)
        if "masked" in reply.arrays:
            masked = reply.arrays["masked"].copy()
            masked[len(masked) // 2] ^= np.uint64(1 << 40)
            reply.arrays["masked"] = masked
        await _respond(send, status, signature + reply.to_bytes(), [
            (k, v) for k, v in headers if k.lower() != b"content-length"])


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (the round's message is read before the node sees it)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replaying(body: bytes) -> Receive:
    """A `receive` that hands the node the body already read, once."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _capture(app: App, scope: Scope, receive: Receive) -> tuple[int, list[Any], bytes]:
    status = 500
    headers: list[Any] = []
    body: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, b"".join(body)


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[Any] | None = None) -> None:
    headers = list(headers or [(b"content-type", b"application/octet-stream")])
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Exchange:
    request: RoundRequest
    #: The node's signed answer as the coordinator received it.
    answer: bytes


class RecordingNode:
    """A real node whose analysis rounds are recorded as the coordinator receives them; on
    FINISH the job's state at the node (its variant order) is copied to `keep` first."""

    def __init__(self, app: App, state_dir: Path, keep: Path) -> None:
        self.app = app
        self.state_dir = state_dir
        self.keep = keep
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != ENDPOINT:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        request = RoundRequest.from_bytes(body)
        if request.kind is RoundKind.FINISH:
            shutil.copytree(self.state_dir / "jobs" / request.job, self.keep / request.job,
                            dirs_exist_ok=True)
        replay = _replaying(body)

        status, headers, answer = await _capture(self.app, scope, replay)
        self.exchanges.append(Exchange(request, answer))
        await _respond(send, status, answer, [
            (k, v) for k, v in headers if k.lower() != b"content-length"])
