"""Serving an ASGI app with uvicorn in a background thread on a loopback port: the demo's
services, and every test that needs a real HTTP server.

The socket is bound when the :class:`LoopbackServer` is made (port 0: the kernel picks a free
one), so the URL is known before the app exists (a network file can name it) and no other
process can take the port meanwhile, unlike picking a port by binding and releasing it.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp


@dataclass
class _Running:
    server: uvicorn.Server
    thread: threading.Thread


class LoopbackServer:
    """Serve an ASGI app with uvicorn in a background thread on a loopback port. The socket is
    bound at construction (port 0 = a free one), so :attr:`url` is known before the app exists
    and no other process can take the port meanwhile."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self._running: _Running | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, app: ASGIApp, *, log_level: str = "warning", timeout: float = 10.0) -> None:
        config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [self._socket]},
                                  name=f"uvicorn-{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        self._running = _Running(server, thread)

    def stop(self) -> None:
        if self._running is not None:
            self._running.server.should_exit = True
            self._running.thread.join(timeout=10)
            self._running = None
        self._socket.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
