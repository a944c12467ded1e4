"""The gateway's SQLite file (aiosqlite): one connection, explicit transactions, typed queries.

Durability: WAL with `synchronous=FULL`. In WAL mode `NORMAL` syncs the log only at checkpoints, so a
transaction that returned from COMMIT can vanish in a power cut. The gateway acks a rating to the
device (which then deletes it from flash) right after COMMIT, so COMMIT must mean "on the disk":
FULL fsyncs the WAL at every commit. Group commit (see `ingest.py`) pays that fsync once per batch.

All access goes through one asyncio lock: transactions of the MQTT writer, the webhook and the
forwarder never interleave on the shared connection, and a reader never sees another task's
uncommitted rows (so nothing is forwarded before it is durable).

Where statements run: a point query or a row insert takes a few microseconds; aiosqlite's hand-off
to its thread and back costs about 100 µs (measured, bench/gateway_ingest.py), and a rating takes
about 25 of them, which capped ingest near 400 ratings/s. So `Tx` runs its statements inline on
the connection underneath aiosqlite (opened with `check_same_thread=False`; the lock means one
thread at a time), and only what can block or take long goes through aiosqlite's thread:
BEGIN IMMEDIATE (may wait up to `busy_timeout` for another process's lock), COMMIT (the fsync),
ROLLBACK, and `Tx.scan_run` for statements over many rows (pruning).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.models import SERVICE_ENDED, SERVICE_OPEN, DeviceRow, ServiceRow
from gateway.presence import APPLIED, StatusKey, decide
from gateway.schema import MIGRATIONS, SCHEMA_VERSION
from gateway.storage import StorageHealth
from hcp.protocol import Status

log = logging.getLogger(__name__)

QUARANTINE_MAX_BYTES = 4096  # keeps every rejected MQTT payload (≤1024 B valid) whole, caps abuse
BUSY_TIMEOUT_MS = 5000  # only an outside reader (sqlite3 CLI, a test) can hold a lock on the file
OUTBOX_STATES = ("pending", "sent", "dead")
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL is cut back to this after a checkpoint (drains grow it)


class Tx:
    """Queries inside one open transaction. Obtained from `Store.transaction()` or `Store.read()`."""

    def __init__(self, db: aiosqlite.Connection):
        self.db = db
        # aiosqlite's own sqlite3 connection, for the inline statements (see the module docstring)
        self._conn: sqlite3.Connection = db._conn
        self._counts: dict[str, int] = {}  # counter increments not yet written (see `count`)
        self._marks: list[tuple[str, dict[str, int]]] = []  # savepoints and the counts at each
        # False while the writer runs a group on its fast path (ingest.py, `Ingest.commit`): hooks
        # then skip their own savepoints, since any exception sends the whole group round again
        self.isolate = True
        # on the fast path, each device's latest rating and last_seen are written once per group,
        # just before COMMIT (`flush`), instead of two UPDATEs per rating
        self._rated: dict[str, tuple[int, float]] = {}
        self._seen: dict[str, float] = {}

    async def one(self, sql: str, params: tuple | list = ()) -> sqlite3.Row | None:
        return self._conn.execute(sql, params).fetchone()

    async def all(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    async def run(self, sql: str, params: tuple | list = ()) -> int:
        """Execute a statement; the id of the inserted row (or 0)."""
        return self._conn.execute(sql, params).lastrowid or 0

    async def many(self, sql: str, rows: list[tuple] | list[list]) -> int:
        """Execute a statement once per row of parameters; the number of rows changed."""
        return self._conn.executemany(sql, rows).rowcount

    async def scan_run(self, sql: str, params: tuple | list = ()) -> int:
        """A statement over many rows, in aiosqlite's thread; the number of rows changed."""
        async with self.db.execute(sql, params) as cur:
            return cur.rowcount

    # ------------------------------------------------------------------ counters

    async def count(self, name: str, by: int = 1) -> None:
        """Add to a counter. Increments are summed in memory and written once per transaction,
        just before COMMIT (`flush_counts`): a group of 500 ratings makes a few counter writes,
        not 1000. A rolled-back transaction or savepoint drops its increments with its rows."""
        self._counts[name] = self._counts.get(name, 0) + by

    async def flush_counts(self) -> None:
        if self._counts:
            await self.many("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) "
                            "DO UPDATE SET value = value + excluded.value", list(self._counts.items()))
            self._counts.clear()

    async def flush(self) -> None:
        """Write what was kept for the end of the transaction: deferred device updates, counters."""
        if self._rated:
            await self.many("UPDATE devices SET last_rating_n = ?, last_rating_at = ? "
                            "WHERE device = ?", [(n, at, d) for d, (n, at) in self._rated.items()])
            self._rated.clear()
        if self._seen:
            await self.many("UPDATE devices SET last_seen = ? WHERE device = ?",
                            [(at, d) for d, at in self._seen.items()])
            self._seen.clear()
        await self.flush_counts()

    async def counters(self) -> dict[str, int]:
        await self.flush_counts()
        return {r["name"]: r["value"] for r in await self.all("SELECT name, value FROM counters")}

    # ------------------------------------------------------------------ savepoints

    async def savepoint(self, name: str) -> None:
        await self.run(f"SAVEPOINT {name}")
        self._marks.append((name, dict(self._counts)))

    async def rollback_to(self, name: str) -> None:
        """Undo the rows and the counts since `savepoint(name)`; the savepoint stays open."""
        await self.run(f"ROLLBACK TO {name}")
        for mark, counts in reversed(self._marks):
            if mark == name:
                self._counts = dict(counts)
                break

    async def release(self, name: str) -> None:
        await self.run(f"RELEASE {name}")
        while self._marks:
            if self._marks.pop()[0] == name:
                break

    # ------------------------------------------------------------------ devices

    async def device(self, device: str) -> DeviceRow | None:
        row = await self.one("SELECT * FROM devices WHERE device = ?", (device,))
        return DeviceRow.from_row(row) if row else None

    async def device_window(self, device: str) -> str | None:
        """The window `device` is registered at; None if unregistered or never seen. (The writer's
        per-rating look-up: one column, not a DeviceRow of fifteen.)"""
        row = await self.one("SELECT window FROM devices WHERE device = ?", (device,))
        return row[0] if row else None

    async def devices(self) -> list[DeviceRow]:
        return [DeviceRow.from_row(r) for r in await self.all("SELECT * FROM devices ORDER BY device")]

    async def device_at_window(self, window: str) -> str | None:
        """The device serving `window` (the latest registered, if a window has several)."""
        row = await self.one("SELECT device FROM devices WHERE window = ? "
                             "ORDER BY registered_at DESC LIMIT 1", (window,))
        return row["device"] if row else None

    async def register_device(self, device: str, window: str, now: float,
                              unretire: bool = True) -> None:
        """Register `device` at `window`; registering it again at the same window changes nothing
        (so seeding the registry at every start keeps the original registration time). A retired
        device comes back only with `unretire` (an operator's registration, not the seed file)."""
        if not unretire:
            row = await self.one("SELECT retired_at FROM devices WHERE device = ?", (device,))
            if row is not None and row["retired_at"] is not None:
                return
        await self.run(
            "INSERT INTO devices (device, window, registered_at) VALUES (?, ?, ?) "
            "ON CONFLICT (device) DO UPDATE SET window = excluded.window, retired_at = NULL, "
            "registered_at = CASE "
            "WHEN devices.window IS excluded.window AND devices.registered_at IS NOT NULL "
            "THEN devices.registered_at ELSE excluded.registered_at END", (device, window, now))

    async def retire_device(self, device: str, now: float) -> str | None:
        """Take `device` off its window for good (it was replaced): its later messages are refused.
        -> the window it served, or None if it was not registered (then nothing changes)."""
        row = await self.one("SELECT window FROM devices WHERE device = ?", (device,))
        if row is None or row["window"] is None:
            return None
        await self.run("UPDATE devices SET window = NULL, retired_at = ? WHERE device = ?",
                       (now, device))
        return row["window"]

    async def device_retired(self, device: str) -> bool:
        row = await self.one("SELECT retired_at FROM devices WHERE device = ?", (device,))
        return row is not None and row["retired_at"] is not None

    async def seen(self, device: str, now: float) -> None:
        """Note that `device` spoke; creates an unregistered row for a device never seen. Deferred
        to `flush` on the fast path once the device's row is known to exist (a rating stored)."""
        if device in self._rated:
            self._seen[device] = now
            return
        await self.run("INSERT INTO devices (device, last_seen) VALUES (?, ?) "
                       "ON CONFLICT (device) DO UPDATE SET last_seen = excluded.last_seen",
                       (device, now))

    async def apply_presence(self, device: str, status: Status, now: float) -> str:
        """Apply a status unless an equal or newer one was applied: "applied", "repeat" (the same
        status again, e.g. the retained birth re-sent on subscribe) or "stale" (older: ignored).

        Ordered by (boot, conn), then offline after online for the same pair: the last will of a
        connection follows its birth, and a birth re-delivered after that will is stale.
        """
        await self.seen(device, now)
        row = await self.one("SELECT presence, presence_boot, presence_conn FROM devices "
                             "WHERE device = ?", (device,))
        old = (StatusKey.of(row["presence"], row["presence_boot"], row["presence_conn"])
               if row is not None and row["presence"] is not None else None)
        decision = decide(old, StatusKey.of(status.state, status.boot, status.conn))
        if decision != APPLIED:
            return decision
        await self.run("UPDATE devices SET presence = ?, presence_boot = ?, presence_conn = ?, "
                       "presence_at = ?, fw = COALESCE(?, fw) WHERE device = ?",
                       (status.state, status.boot, status.conn, now, status.fw, device))
        return "applied"

    async def store_health(self, device: str, health: dict, now: float) -> None:
        await self.seen(device, now)
        fw = health.get("fw") if isinstance(health.get("fw"), str) else None
        await self.run("UPDATE devices SET health = ?, health_at = ?, fw = COALESCE(?, fw) "
                       "WHERE device = ?", (_json(health), now, fw, device))

    async def store_cmd_reply(self, device: str, reply: dict, now: float) -> None:
        await self.seen(device, now)
        await self.run("UPDATE devices SET cmd_reply = ?, cmd_reply_at = ? WHERE device = ?",
                       (_json(reply), now, device))

    # ------------------------------------------------------------------ ratings

    async def rating_payload(self, device: str, n: int) -> str | None:
        row = await self.one("SELECT payload FROM ratings WHERE device = ? AND n = ?", (device, n))
        return row["payload"] if row else None

    async def insert_rating(self, device: str, n: int, payload: str, sess: str | None, score: int,
                            received_at: float, offset_ms: int, binding: dict | None,
                            unbound_reason: str | None) -> None:
        b = binding or {}
        await self.run(
            "INSERT INTO ratings (device, n, payload, sess, score, received_at, offset_ms, service, "
            "ticket, window, staff_id, matter_code, case_no, unit, unbound_reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device, n, payload, sess, score, received_at, offset_ms, b.get("service"),
             b.get("ticket"), b.get("window"), b.get("staff_id"), b.get("matter_code"),
             b.get("case_no"), b.get("unit"), unbound_reason))
        if not self.isolate:  # the group's last rating per device, written by `flush`
            self._rated[device] = (n, received_at)
            return
        await self.run("UPDATE devices SET last_rating_n = ?, last_rating_at = ? WHERE device = ?",
                       (n, received_at, device))

    # ------------------------------------------------------------------ quarantine

    async def quarantine(self, topic: str, reason: str, payload: bytes, now: float,
                         device: str | None = None, n: int | None = None, detail: str = "") -> bool:
        """Keep a rejected payload with its reason. The same bytes on the same topic for the same
        reason (a device resending) add to `repeats` instead of a row. True if it is new."""
        digest = hashlib.sha256(payload).hexdigest()
        await self.count(f"quarantine.{reason}")
        existing = await self.one("SELECT id FROM quarantine WHERE topic = ? AND reason = ? "
                                  "AND digest = ?", (topic, reason, digest))
        if existing is not None:
            await self.run("UPDATE quarantine SET repeats = repeats + 1, last_at = ? WHERE id = ?",
                           (now, existing["id"]))
            return False
        await self.run(
            "INSERT INTO quarantine (at, last_at, topic, device, n, reason, detail, size, digest, "
            "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now, now, topic, device, n, reason, detail[:500], len(payload), digest,
             payload[:QUARANTINE_MAX_BYTES]))
        return True

    async def quarantine_by_reason(self) -> dict[str, int]:
        rows = await self.all("SELECT reason, COUNT(*) AS c FROM quarantine GROUP BY reason")
        return {r["reason"]: r["c"] for r in rows}

    # ------------------------------------------------------------------ services

    async def service(self, service_id: str) -> ServiceRow | None:
        row = await self.one("SELECT * FROM services WHERE id = ?", (service_id,))
        return ServiceRow.from_row(row) if row else None

    async def open_service(self, ticket: str, window: str) -> ServiceRow | None:
        row = await self.one(f"SELECT * FROM services WHERE state = '{SERVICE_OPEN}' AND window = ? "
                             "AND ticket = ? ORDER BY opened_rx DESC LIMIT 1", (window, ticket))
        return ServiceRow.from_row(row) if row else None

    async def services_near(self, window: str, ended_since: float) -> list[ServiceRow]:
        """Candidates for a local session at `window`: open services, and services ended at or
        after `ended_since`."""
        # states as literals: a bound `state = ?` against the partial indexes makes SQLite
        # re-prepare the statement at every run (measured 49 µs instead of 5 µs)
        rows = await self.all(
            f"SELECT * FROM services WHERE window = ? AND state = '{SERVICE_OPEN}' UNION ALL "
            f"SELECT * FROM services WHERE window = ? AND state = '{SERVICE_ENDED}' AND ended_rx >= ?",
            (window, window, ended_since))
        return [ServiceRow.from_row(r) for r in rows]

    async def save_service(self, svc: ServiceRow) -> None:
        cols = ServiceRow.columns()
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
        await self.run(f"INSERT INTO services ({', '.join(cols)}) VALUES "
                       f"({', '.join('?' * len(cols))}) ON CONFLICT (id) DO UPDATE SET {updates}",
                       svc.values())

    async def mark_rated(self, service_id: str, rating_id: str) -> None:
        await self.run("UPDATE services SET rated_by = ? WHERE id = ? AND rated_by IS NULL",
                       (rating_id, service_id))

    # ------------------------------------------------------------------ queue events

    async def queue_event(self, event_id: str) -> sqlite3.Row | None:
        return await self.one("SELECT * FROM queue_events WHERE event_id = ?", (event_id,))

    async def queue_events_like(self, window: str, ticket: str, kind: str) -> list[sqlite3.Row]:
        """The recorded events of one kind for a ticket at a window, oldest first (a replayed
        event is matched against them: queue_events.py)."""
        return await self.all("SELECT * FROM queue_events WHERE window = ? AND ticket = ? AND type = ? "
                              "ORDER BY received_at", (window, ticket, kind))

    async def insert_queue_event(self, event_id: str, now: float, kind: str, ticket: str,
                                 window: str, body: str, service: str, session: str | None,
                                 reason: str | None) -> None:
        await self.run("INSERT INTO queue_events (event_id, received_at, type, ticket, window, body, "
                       "service, session, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (event_id, now, kind, ticket, window, body, service, session, reason))

    # ------------------------------------------------------------------ outbox

    async def outbox_put(self, kind: str, key: str, item: dict, now: float) -> int:
        return await self.run("INSERT INTO outbox (kind, key, item, created_at) VALUES (?, ?, ?, ?)",
                              (kind, key, _json(item), now))

    async def outbox_put_many(self, rows: list[tuple[str, str, dict, float]]) -> None:
        """`outbox_put` for many `(kind, key, item, now)` in one statement (imports, replays)."""
        await self.many("INSERT INTO outbox (kind, key, item, created_at) VALUES (?, ?, ?, ?)",
                        [(kind, key, _json(item), now) for kind, key, item, now in rows])

    async def outbox_pending(self, limit: int, after: int = 0) -> list[sqlite3.Row]:
        """The oldest `limit` pending rows with `seq` > `after`, in `seq` order."""
        return await self.all("SELECT seq, kind, key, item FROM outbox WHERE state = 'pending' "
                              "AND seq > ? ORDER BY seq LIMIT ?", (after, limit))

    async def outbox_sent(self, seqs: list[int], now: float) -> None:
        await self.many("UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1 "
                        "WHERE seq = ? AND state = 'pending'", [(now, s) for s in seqs])

    async def outbox_dead(self, seq: int, reason: str, now: float | None = None) -> None:
        await self.run("UPDATE outbox SET state = 'dead', last_error = ?, attempts = attempts + 1, "
                       "dead_at = ? WHERE seq = ? AND state = 'pending'", (reason, now, seq))

    async def outbox_failed(self, seqs: list[int], error: str) -> None:
        await self.many("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                        [(error[:500], s) for s in seqs])

    async def outbox_depth(self) -> dict[str, int]:
        """Rows per state, from the counts that triggers keep in `outbox_depth` (schema v3): the
        status page reads three rows instead of counting a backlog of a million (~60 ms)."""
        depth = dict.fromkeys(OUTBOX_STATES, 0)
        try:
            rows = await self.all("SELECT state, n FROM outbox_depth")
        except sqlite3.OperationalError as exc:  # a file read before a v3 gateway migrated it
            if "no such table" not in str(exc):
                raise
            rows = await self.all("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
        for r in rows:
            depth[r["state"]] = r["n"]
        return depth

    # dead letters (docs/gateway.md, "Dead letters"): listed and re-queued by an operator

    async def outbox_dead_list(self, limit: int, before: int | None = None, reason: str | None = None,
                               kind: str | None = None) -> list[sqlite3.Row]:
        """Dead rows newest first (`seq` descending), `seq` < `before`, of one reason and/or kind.
        Through the partial indexes `outbox_dead` / `outbox_dead_reason`: no scan of the outbox."""
        where, params = ["state = 'dead'"], []
        for cond, value in (("seq < ?", before), ("last_error = ?", reason), ("kind = ?", kind)):
            if value is not None:
                where.append(cond)
                params.append(value)
        return await self.all(
            "SELECT seq, kind, key, last_error AS reason, dead_at, created_at, attempts, requeues, "
            f"requeued_at, requeued_by FROM outbox WHERE {' AND '.join(where)} "
            "ORDER BY seq DESC LIMIT ?", (*params, limit))

    async def outbox_dead_by_reason(self) -> dict[str, int]:
        """Dead letters per reason, from the counts triggers keep (schema v5)."""
        try:
            rows = await self.all("SELECT reason, n FROM outbox_dead_reasons WHERE n > 0")
        except sqlite3.OperationalError as exc:  # a file read before a v5 gateway migrated it
            if "no such table" not in str(exc):
                raise
            rows = await self.all("SELECT COALESCE(last_error, '') AS reason, COUNT(*) AS n "
                                  "FROM outbox WHERE state = 'dead' GROUP BY 1")
        return {r["reason"]: r["n"] for r in rows}

    async def outbox_requeue(self, seqs: list[int], now: float, by: str) -> list[int]:
        """Dead rows among `seqs` back to `pending`, keeping their seq (so they go before newer
        rows); the seqs re-queued, ascending. Rows not dead are left alone."""
        dead = [r["seq"] for r in await self.all(
            f"SELECT seq FROM outbox WHERE state = 'dead' AND seq IN ({', '.join('?' * len(seqs))}) "
            "ORDER BY seq", seqs)] if seqs else []
        await self.many("UPDATE outbox SET state = 'pending', requeues = requeues + 1, "
                        "requeued_at = ?, requeued_by = ? WHERE seq = ? AND state = 'dead'",
                        [(now, by, s) for s in dead])
        return dead

    async def outbox_requeue_matching(self, reason: str | None, kind: str | None, now: float,
                                      by: str, limit: int) -> int:
        """Up to `limit` dead rows of a reason and/or kind (every dead row when both are None),
        oldest first, back to `pending`; how many. The caller repeats it, one transaction per
        chunk, so a re-queue of a million rows never holds the store's lock for long."""
        where, params = ["state = 'dead'"], []
        for cond, value in (("last_error = ?", reason), ("kind = ?", kind)):
            if value is not None:
                where.append(cond)
                params.append(value)
        return await self.scan_run(
            "UPDATE outbox SET state = 'pending', requeues = requeues + 1, requeued_at = ?, "
            "requeued_by = ? WHERE seq IN (SELECT seq FROM outbox WHERE "
            f"{' AND '.join(where)} ORDER BY seq LIMIT ?)", (now, by, *params, limit))

    async def outbox_prune(self, sent_before: float, limit: int) -> int:
        """Delete up to `limit` rows that the hub took (`sent`) before `sent_before`; how many.
        Dead letters and pending rows are never pruned; ratings stay in `ratings` (dedup)."""
        return await self.scan_run(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE state = 'sent' "
            "AND sent_at < ? ORDER BY sent_at LIMIT ?)", (sent_before, limit))


class Store:
    """Owner of the connection. `open()` creates or migrates the file; `close()` checkpoints.
    `health` says whether writes commit (disk full, I/O errors; gateway/storage.py)."""

    def __init__(self, db: aiosqlite.Connection, path: Path):
        self._db = db
        self._lock = asyncio.Lock()
        self.path = path
        self.health = StorageHealth(path)

    @classmethod
    async def open(cls, path: Path, max_bytes: int | None = None) -> "Store":
        """Open (create, migrate) the file. `max_bytes` caps the database (`PRAGMA max_page_count`):
        past it every write fails with SQLITE_FULL, exactly as on a full disk."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False: Tx runs
        # statements from the event loop's thread on this connection (the lock serializes them)
        db = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = await _pragma(db, "journal_mode = WAL")
            if mode != "wal":
                raise RuntimeError(f"{path}: cannot use WAL (journal_mode={mode})")
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            await _migrate(db, path)
            if max_bytes is not None:
                page = await _pragma(db, "page_size")
                pages = await _pragma(db, f"max_page_count = {max(1, max_bytes // page)}")
                log.info("%s capped at %d pages of %d bytes", path, pages, page)
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction (BEGIN IMMEDIATE): committed on exit, rolled back on any exception.
        A failure of the database itself (disk full, I/O, lock) is recorded in `health`."""
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self.health.failed(exc)
                raise
            try:
                tx = Tx(self._db)
                yield tx
                unsaved = self.health.unsaved()  # counts of failed writes, kept while none commit
                for name, by in unsaved.items():
                    await tx.count(name, by)
                await tx.flush()
                await self._db.execute("COMMIT")
            except BaseException as exc:  # a failed COMMIT too (disk full): leave no transaction
                self.health.failed(exc)
                # SQLITE_FULL and I/O errors may already have rolled the transaction back
                if self._db.in_transaction:
                    try:
                        await self._db.execute("ROLLBACK")
                    except Exception:  # the connection is gone; the file rolls back on its own
                        log.exception("rollback failed")
                raise
            self.health.committed(unsaved)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """A read-only snapshot (deferred transaction)."""
        async with self._lock:
            tx = Tx(self._db)
            await tx.run("BEGIN")
            try:
                yield tx
            finally:
                await tx.run("ROLLBACK")


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    version = await _pragma(db, "user_version")
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} has schema version {version}; this gateway knows "
                           f"{SCHEMA_VERSION}: upgrade the gateway")
    for step in range(version, SCHEMA_VERSION):
        log.info("migrating %s to schema version %d", path, step + 1)
        await db.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[step]}\n"
                               f"PRAGMA user_version = {step + 1};\nCOMMIT;")


async def _pragma(db: aiosqlite.Connection, pragma: str) -> Any:
    async with db.execute(f"PRAGMA {pragma}") as cur:
        row = await cur.fetchone()
    if row is None:
        raise RuntimeError(f"PRAGMA {pragma} returned nothing")
    return row[0]


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
