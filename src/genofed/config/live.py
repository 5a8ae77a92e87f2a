"""node.toml as a running node sees it: re-read whenever the file changes, so that what the
`genofed` configuration commands write (trusted issuers, committee members, network membership,
disclosure control) takes effect on the next request, in every server process, without a restart.

The commands write node.toml atomically (a new file renamed into place), so a change is a new
inode; a stat per lookup (about a microsecond) notices it. A file broken by a hand edit is not
papered over with the last good copy (it might still trust an issuer the operator meant to
drop): while it cannot be read, `current()` raises, and the node refuses requests saying why
(:mod:`genofed.server.app`) until it is fixed. Settings a running node cannot change (its id,
keys, address, database) are logged as waiting for a restart instead of half-applied.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from genofed.config.node import CONFIG_FILE, NodeConfig, load_config
from genofed.errors import NodeConfigError

log = logging.getLogger(__name__)

#: Settings read once when a server process starts (changing them needs a restart).
RESTART_ONLY = ("node_id", "country", "keys_dir", "server", "access.database_url")

_Stamp = tuple[int, int, int]


class LiveConfig:
    """`current()` is the node's configuration as the file says now (thread-safe)."""

    def __init__(self, root: Path, initial: NodeConfig | None = None) -> None:
        self.root = root
        self._file = str(root / CONFIG_FILE)
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._config = initial if initial is not None else load_config(root)
        self._error: NodeConfigError | None = None
        self.started = self._config

    def _stat(self) -> _Stamp:
        try:
            found = os.stat(self._file)
        except OSError:
            return (0, 0, 0)
        return (found.st_ino, found.st_mtime_ns, found.st_size)

    def current(self) -> NodeConfig:
        """The configuration now; :class:`NodeConfigError` while node.toml cannot be read."""
        stamp = self._stat()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._reload(stamp)
        if self._error is not None:
            raise self._error
        return self._config

    def _reload(self, stamp: _Stamp) -> None:
        self._stamp = stamp
        try:
            config = load_config(self.root)
        except NodeConfigError as exc:
            log.error("node.toml changed and cannot be read; requests are refused until it is "
                      "fixed: %s", exc)
            self._error = exc
            return
        self._error = None
        self._note_restart_only(config)
        self._config = config

    def _note_restart_only(self, config: NodeConfig) -> None:
        for dotted in RESTART_ONLY:
            before, after = self.started, config
            for part in dotted.split("."):
                before, after = getattr(before, part), getattr(after, part)
            if before != after:
                log.warning("node.toml changed %s; a running node applies that only when it "
                            "is restarted", dotted)
