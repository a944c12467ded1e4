"""Retention: outbox rows the hub has taken are deleted after `outbox_keep_days`, so the gateway's
file stops growing with every rating it ever forwarded.

What goes and what stays (docs/gateway.md, "Capacity and retention"):
- `sent` outbox rows whose `sent_at` is older than the keep period: the hub answered `accepted` or
  `duplicate` for them, it holds them, and nothing in the gateway reads them again.
- `pending` rows never go (not yet at the hub), nor `dead` ones (an operator must see and decide).
- `ratings` stay: they are how a rating resent after its ack was lost is answered `dup` and how a
  second payload under the same id is caught as a conflict, for as long as a device may resend.

Deletes run in chunks, each its own short transaction in aiosqlite's thread, so ingest waits for
at most one chunk. Freed pages are reused by SQLite for new rows (the file keeps its size but stops
growing); after a prune the WAL is cut back by `journal_size_limit`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from gateway.store import Store

log = logging.getLogger(__name__)

DAY_S = 86400.0
PRUNE_CHUNK = 5000  # rows per transaction: ~20 ms of deleting, the longest ingest then waits
FIRST_PRUNE_S = 30.0  # after start: let the gateway settle (and a burst of resends commit) first


@dataclass
class RetentionState:
    """What the status page shows about pruning."""

    keep_days: float
    last_run_at: float | None = None
    last_pruned: int = 0
    pruned_total: int = 0  # since start; `outbox.pruned` in counters is the all-time count
    last_error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class Retention:
    def __init__(self, store: Store, keep_days: float, interval_s: float,
                 clock: Callable[[], float] = time.time, first_after_s: float = FIRST_PRUNE_S,
                 chunk: int = PRUNE_CHUNK):
        self.store = store
        self.keep_s = keep_days * DAY_S
        self.interval_s = interval_s
        self.first_after_s = min(first_after_s, interval_s)
        self.chunk = chunk
        self._clock = clock
        self.state = RetentionState(keep_days)

    async def run(self) -> None:
        await asyncio.sleep(self.first_after_s)
        while True:
            await self.prune_once()
            await asyncio.sleep(self.interval_s)

    async def prune_once(self) -> int:
        """Delete every `sent` row older than the keep period; how many. A database error (disk
        full, I/O) ends this run and is retried at the next one; it never stops the gateway."""
        now = self._clock()
        cutoff = now - self.keep_s
        total = 0
        try:
            while True:
                async with self.store.transaction() as tx:
                    n = await tx.outbox_prune(cutoff, self.chunk)
                    if n:
                        await tx.count("outbox.pruned", n)
                total += n
                if n < self.chunk:
                    break
                await asyncio.sleep(0)  # let waiting writers (ingest) take the lock in between
            self.state.last_error = None
        except sqlite3.Error as exc:  # the health of the file is on the status page
            self.state.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("pruning the outbox failed after %d rows: %s", total, exc)
        self.state.last_run_at, self.state.last_pruned = now, total
        self.state.pruned_total += total
        if total:
            log.info("pruned %d outbox rows sent before %.0f (%.1f days kept)", total, cutoff,
                     self.keep_s / DAY_S)
        return total
