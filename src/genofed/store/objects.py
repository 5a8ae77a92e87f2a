"""Datasets kept in S3 or an S3-compatible server (`[store] url = "s3://BUCKET/PREFIX"` in
node.toml), through s3fs:

    s3://BUCKET/PREFIX/datasets/<id>/
        current                      "v3": the published version (one object, written last)
        versions/v2/ versions/v3/    a version directory's files as objects (manifest.json last)

A version is written in a local staging directory exactly as on disk, then uploaded: its files,
its manifest, and last the `current` pointer (:class:`genofed.store.backends.ObjectBackend`).
Readers resolve the pointer, so a publish interrupted anywhere before that write leaves the
previous version served.

Credentials come from the standard AWS sources (environment variables, shared config and
credentials files, instance roles), never from node.toml. Every failure to reach the store
becomes an :class:`~genofed.errors.ObjectStoreError` naming the setting to check.
"""

from __future__ import annotations

import atexit
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from genofed.config.node import StoreSettings
from genofed.errors import ObjectStoreError

#: Zarr reads through asynchronous s3fs clients, which s3fs does not close when they are
#: collected (it does for synchronous ones): one per process and endpoint, kept for the
#: process's life and closed at exit.
_ZARR_CLIENTS: dict[tuple[int, str, str], Any] = {}
_CONNECTING = threading.Lock()
_CREDENTIALS = ("the AWS credentials come from the environment (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials, or an instance "
                "role), never from node.toml")


class ObjectStore:
    """One bucket prefix. Keys are "BUCKET/PREFIX/..." (s3fs paths); thread-safe, and usable in
    a forked process (each process makes its own connections)."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        bucket, _, prefix = settings.url.removeprefix("s3://").partition("/")
        self.bucket = bucket
        self.root = "/".join(p for p in (bucket, prefix.strip("/")) if p)
        self._clients: dict[tuple[int, str, str], Any] = {}  # per process

    def key(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    @staticmethod
    def url(key: str) -> str:
        return f"s3://{key}"

    # -- connections ---------------------------------------------------------------------------
    def _filesystem(self, *, asynchronous: bool = False) -> Any:
        clients: dict[tuple[int, str, str], Any] = self._clients
        slot = (os.getpid(), self.settings.endpoint_url, self.settings.region)
        if asynchronous:  # shared: see _ZARR_CLIENTS
            clients = _ZARR_CLIENTS
        found = clients.get(slot)
        if found is None:
            with _CONNECTING:
                found = clients.get(slot)
                if found is None:
                    found = clients[slot] = self._connect(asynchronous)
        return found

    def _connect(self, asynchronous: bool) -> Any:
        import s3fs

        client: dict[str, Any] = {}
        if self.settings.region:
            client["region_name"] = self.settings.region
        return s3fs.S3FileSystem(
            endpoint_url=self.settings.endpoint_url or None, client_kwargs=client,
            asynchronous=asynchronous, skip_instance_cache=True,
            # listings are re-read every time: another machine may publish at any moment
            use_listings_cache=False,
            config_kwargs={"connect_timeout": 5, "read_timeout": 60,
                           "retries": {"mode": "standard", "max_attempts": 3}})

    @property
    def fs(self) -> Any:
        return self._filesystem()

    def zarr_store(self, key: str) -> Any:
        """A read-only Zarr store of the group under `key`: chunks are fetched as read."""
        from zarr.storage import FsspecStore

        return FsspecStore(self._filesystem(asynchronous=True), path=key, read_only=True)

    # -- failures ------------------------------------------------------------------------------
    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn the ways S3 refuses into errors naming the setting to fix; a missing key stays a
        FileNotFoundError (callers decide what absence means)."""
        import botocore.exceptions as boto

        where = f"[store] url = {self.settings.url!r} in node.toml"
        endpoint = self.settings.endpoint_url or "AWS S3"
        try:
            yield
        except FileNotFoundError as exc:
            if _code(exc) == "NoSuchBucket":
                raise ObjectStoreError(
                    f"{what}: the bucket {self.bucket!r} does not exist at {endpoint}",
                    hint=f"create it, or correct {where} (or [store] endpoint_url)") from None
            raise
        except PermissionError as exc:
            raise ObjectStoreError(
                f"{what}: {endpoint} refused the credentials or access to "
                f"s3://{self.root}: {exc}",
                hint=f"check the credentials and the bucket's policy; {_CREDENTIALS}") from None
        except (boto.NoCredentialsError, boto.PartialCredentialsError) as exc:
            raise ObjectStoreError(f"{what}: no AWS credentials were found ({exc})",
                                   hint=_CREDENTIALS) from None
        except (boto.EndpointConnectionError, boto.ConnectionError, boto.HTTPClientError,
                ConnectionError, TimeoutError) as exc:
            raise ObjectStoreError(
                f"{what}: cannot reach {endpoint}: {exc}",
                hint="check [store] endpoint_url (and region) in node.toml, and that the "
                     "server is up") from None
        except (boto.BotoCoreError, OSError) as exc:
            raise ObjectStoreError(f"{what}: {exc}",
                                   hint=f"check {where} and its endpoint_url") from None

    # -- reading -------------------------------------------------------------------------------
    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        with self.errors(f"reading {self.url(key)}"):
            data: bytes = self.fs.cat_file(key, start=start, end=end)
            return data

    def size(self, key: str) -> int:
        with self.errors(f"reading {self.url(key)}"):
            return int(self.fs.size(key))

    def find(self, prefix: str) -> dict[str, int]:
        """Every object under the "directory" `prefix`: key relative to it -> size."""
        with self.errors(f"listing {self.url(prefix)}"):
            found = self.fs.find(prefix.rstrip("/") + "/", detail=True)
        base = len(prefix.rstrip("/")) + 1
        return {name[base:]: int(info.get("size") or 0) for name, info in found.items()
                if info.get("type") != "directory" and len(name) > base}

    def directories(self, prefix: str) -> list[str]:
        """Names of the "subdirectories" directly under `prefix`."""
        try:
            with self.errors(f"listing {self.url(prefix)}"):
                entries = self.fs.ls(prefix.rstrip("/") + "/", detail=True)
        except FileNotFoundError:  # nothing under it (a missing bucket raised already)
            return []
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries
                      if e.get("type") == "directory")

    def download(self, key: str, target: Path) -> None:
        """The object `key` to the file `target`, or the objects under the prefix `key` into the
        directory `target`; FileNotFoundError if there is neither."""
        try:
            with self.errors(f"reading {self.url(key)}"):
                self.fs.get_file(key, str(target))
            return
        except FileNotFoundError:
            Path(target).unlink(missing_ok=True)
        objects = self.find(key)
        if not objects:
            raise FileNotFoundError(f"{self.url(key)}: no such object or prefix")
        target.mkdir()
        try:
            for relative in objects:
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
            with self.errors(f"reading {self.url(key)}"):
                self.fs.get([f"{key}/{r}" for r in objects],
                            [str(target / r) for r in objects])
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise

    # -- writing -------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        with self.errors(f"writing {self.url(key)}"):
            self.fs.pipe_file(key, data)

    def put_files(self, pairs: Sequence[tuple[Path, str]]) -> None:
        """Upload local files (concurrently) to their keys."""
        if pairs:
            with self.errors(f"writing under s3://{self.root}"):
                self.fs.put([str(p) for p, _k in pairs], [k for _p, k in pairs])

    def copy(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Server-side copies (no bytes pass through this machine)."""
        if pairs:
            with self.errors(f"copying under s3://{self.root}"):
                self.fs.copy([s for s, _t in pairs], [t for _s, t in pairs])

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            with self.errors(f"deleting under s3://{self.root}"):
                self.fs.rm(list(keys))


class ObjectFile:
    """A stored object read by byte ranges (a :class:`~genofed.formats.crypt4gh.ByteSource`):
    htsget slices of an encrypted original fetch only the segments they need."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self.store = store
        self.key = key
        self.name = store.url(key)
        self._size: int | None = None

    def size(self) -> int:
        if self._size is None:
            self._size = self.store.size(self.key)
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        stop = min(offset + length, self.size())
        if offset >= stop:
            return b""
        return self.store.get(self.key, offset, stop)


@atexit.register
def _close_zarr_clients() -> None:
    clients = [c for (pid, _e, _r), c in _ZARR_CLIENTS.items() if pid == os.getpid()]
    _ZARR_CLIENTS.clear()
    creators = [c._s3creator for c in clients if getattr(c, "_s3creator", None) is not None]
    if not creators:
        return
    from zarr.core.sync import sync

    for creator in creators:
        with suppress(Exception):  # the loop may be gone at exit already
            sync(creator.__aexit__(None, None, None))


def _code(exc: BaseException) -> str | None:
    """The S3 error code behind an s3fs error (s3fs keeps botocore's error as the cause)."""
    response = getattr(exc.__cause__, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None
