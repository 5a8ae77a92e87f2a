"""An S3 server for the tests: moto's, in this process on loopback, with a switch to make it
fail chosen requests the way a network or a bucket policy would (refuse them, or hold them
until released, e.g. while the test kills the writer).

Nothing of genofed is replaced: nodes talk to this server over real HTTP through s3fs, with
dummy credentials in the environment, exactly as they would to AWS."""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

BUCKET = "genofed-test"
#: What the tests put in the environment: the AWS SDK's standard variables, dummy values.
ENVIRONMENT = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
_ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                  b"<Message>Access Denied</Message></Error>")


@dataclass
class Fault:
    """Requests (method, and a pattern their path matches) the server fails."""

    method: str
    pattern: re.Pattern[str]
    hold: bool  # True: wait until released, then answer; False: refuse (403 AccessDenied)
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class _Faulty:
    """WSGI middleware in front of moto's application."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.faults: list[Fault] = []

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        for fault in list(self.faults):
            if fault.method == method and fault.pattern.search(path):
                fault.reached.set()
                if not fault.hold:
                    start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                                      ("Content-Length",
                                                       str(len(_ACCESS_DENIED)))])
                    return [_ACCESS_DENIED]
                fault.release.wait(60)
        return self.app(environ, start_response)


class _Server(ThreadedMotoServer):
    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.middleware: _Faulty | None = None

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.middleware = _Faulty(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, self.middleware, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class S3Server:
    """moto's S3 on a loopback port, with one bucket."""

    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = _Server()
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client().create_bucket(Bucket=BUCKET)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                        Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    @contextmanager
    def fault(self, method: str, pattern: str, *, hold: bool = False) -> Iterator[Fault]:
        """Fail matching requests while the block runs (a held request is released at its
        end)."""
        assert self._server.middleware is not None
        fault = Fault(method, re.compile(pattern), hold)
        self._server.middleware.faults.append(fault)
        try:
            yield fault
        finally:
            self._server.middleware.faults.remove(fault)
            fault.release.set()

    def stop(self) -> None:
        self._server.stop()


def new_prefix() -> str:
    return f"node-{secrets.token_hex(4)}"


def keep_datasets_in_s3(node_dir: Path, server: S3Server, prefix: str | None = None) -> str:
    """Point a node's `[store]` at a fresh prefix of the test bucket; returns the store URL."""
    from genofed.config.node import load_config, save_config

    config = load_config(node_dir)
    config.store.url = f"s3://{BUCKET}/{prefix or new_prefix()}"
    config.store.endpoint_url = server.endpoint
    save_config(node_dir, config)
    return config.store.url
