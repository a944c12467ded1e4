"""Storage health: whether the gateway's SQLite file takes writes, and how much room is left.

A write transaction that fails on the database itself (disk full, an I/O error, another process
holding the write lock past `busy_timeout`) committed nothing, so nothing of it is acknowledged:
devices keep those ratings in their flash and Mosquitto keeps the un-PUBACKed messages, and the
writers retry. `StorageHealth` classifies such failures, logs the start of an episode once at ERROR
(then a reminder every `REMIND_S`, not one line per retry), logs the recovery, and keeps counts that
`Store` writes to the `counters` table in the first transaction that commits again (they cannot be
written while the file takes no writes). The status page shows `as_dict()`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OK = "ok"
FULL = "full"  # SQLITE_FULL: the disk, or the `db_max_mb` cap
BUSY = "busy"  # SQLITE_BUSY/LOCKED: another process held the file's write lock past busy_timeout
ERROR = "error"  # I/O error, corruption, read-only file, anything else from the database
REMIND_S = 60.0  # while writes keep failing, one log line a minute says so
# An episode ends when writes commit and none failed for this long. On a full disk a small write can
# still fit in a page's free space (or in WAL space being reused) between failing larger ones: the
# state must not flap to "ok" on each of those.
SETTLE_S = 5.0

# Errors of the statement, not of the storage: a constraint or a bug in the SQL.
_NOT_STORAGE = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
                sqlite3.DataError)


def classify(exc: BaseException) -> str | None:
    """FULL, BUSY or ERROR for a failure of the database itself; None for anything else."""
    if not isinstance(exc, sqlite3.Error) or isinstance(exc, _NOT_STORAGE):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_FULL:
        return FULL
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return BUSY
    return ERROR


class StorageHealth:
    """State of the file's writes (`ok`, `full`, `busy`, `error`) and its episodes."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time,
                 settle_s: float = SETTLE_S):
        self.path = path
        self._clock = clock
        self.settle_s = settle_s
        self.last_commit_at: float | None = None
        self.state = OK
        self.since: float | None = None  # when the current state began (None: since start)
        self.failures = 0  # failed write transactions in the current episode
        self.total_failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._reminded_at = 0.0
        self._unsaved: dict[str, int] = {}

    def failed(self, exc: BaseException) -> None:
        """A write transaction failed with `exc` (and was rolled back)."""
        kind = classify(exc)
        if kind is None:
            return
        now = self._clock()
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        self.failures += 1
        self.total_failures += 1
        self.last_error, self.last_error_at = f"{name}: {exc}", now
        self._add("store.write_failures")
        if kind != self.state:
            self.state, self.since, self._reminded_at = kind, now, now
            self._add(f"store.{kind}")
            usage = self.usage()
            log.error("database %s: writes fail (%s): nothing is committed, so no device is acked "
                      "(devices keep their ratings and resend); retrying. db %s bytes, wal %s bytes, "
                      "disk free %s bytes", self.path, self.last_error, usage["db_bytes"],
                      usage["wal_bytes"], usage["disk_free_bytes"])
        elif now - self._reminded_at >= REMIND_S:
            self._reminded_at = now
            log.error("database %s: still %s after %.0f s and %d failed writes (%s)", self.path,
                      self.state, now - (self.since or now), self.failures, self.last_error)

    def committed(self, saved: dict[str, int]) -> None:
        """A write transaction committed, and with it the counts in `saved`."""
        for name, by in saved.items():
            left = self._unsaved.get(name, 0) - by
            if left > 0:
                self._unsaved[name] = left
            else:
                self._unsaved.pop(name, None)
        self.last_commit_at = self._clock()
        self._settle()

    def _settle(self) -> None:
        """Back to OK once a write committed after the last failure and `settle_s` passed."""
        if self.state == OK or self.last_commit_at is None or self.last_error_at is None:
            return
        now = self._clock()
        if self.last_commit_at > self.last_error_at and now - self.last_error_at >= self.settle_s:
            log.warning("database %s: writes commit again after %.0f s %s and %d failed writes",
                        self.path, now - (self.since or now), self.state, self.failures)
            self.state, self.since, self.failures = OK, now, 0

    def unsaved(self) -> dict[str, int]:
        """Counts to add to `counters` in the next transaction (a copy)."""
        return dict(self._unsaved)

    def _add(self, name: str) -> None:
        self._unsaved[name] = self._unsaved.get(name, 0) + 1

    def usage(self) -> dict[str, int | None]:
        """Sizes of the database and its WAL, and the free space of their filesystem, in bytes."""
        def size(p: Path) -> int | None:
            try:
                return p.stat().st_size
            except OSError:
                return None
        try:
            st = os.statvfs(self.path.parent)
            free: int | None = st.f_bavail * st.f_frsize
        except OSError:
            free = None
        return {"db_bytes": size(self.path), "wal_bytes": size(Path(f"{self.path}-wal")),
                "disk_free_bytes": free}

    def as_dict(self) -> dict[str, Any]:
        self._settle()
        return {"state": self.state, "since": self.since, "failures": self.failures,
                "total_failures": self.total_failures, "last_error": self.last_error,
                "last_error_at": self.last_error_at, **self.usage()}
