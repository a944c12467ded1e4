"""The gateway's SQLite file (aiosqlite): one connection, explicit transactions, typed queries.

Durability: WAL with `synchronous=FULL`. In WAL mode `NORMAL` syncs the log only at checkpoints, so a
transaction that returned from COMMIT can vanish in a power cut. The gateway acks a rating to the
device (which then deletes it from flash) right after COMMIT, so COMMIT must mean "on the disk":
FULL fsyncs the WAL at every commit. Group commit (see `ingest.py`) pays that fsync once per batch.

All access goes through one asyncio lock: transactions of the MQTT writer, the webhook and the
forwarder never interleave on the shared connection, and a reader never sees another task's
uncommitted rows (so nothing is forwarded before it is durable).
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
from gateway.schema import MIGRATIONS, SCHEMA_VERSION
from hcp.protocol import Status

log = logging.getLogger(__name__)

QUARANTINE_MAX_BYTES = 4096  # keeps every rejected MQTT payload (≤1024 B valid) whole, caps abuse
BUSY_TIMEOUT_MS = 5000  # only an outside reader (sqlite3 CLI, a test) can hold a lock on the file
OUTBOX_STATES = ("pending", "sent", "dead")
PRESENCE_RANK = {"online": 0, "offline": 1}  # same (boot, conn): the will follows the birth


class Tx:
    """Queries inside one open transaction. Obtained from `Store.transaction()` or `Store.read()`."""

    def __init__(self, db: aiosqlite.Connection):
        self.db = db

    async def one(self, sql: str, params: tuple | list = ()) -> sqlite3.Row | None:
        async with self.db.execute(sql, params) as cur:
            return await cur.fetchone()

    async def all(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        async with self.db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def run(self, sql: str, params: tuple | list = ()) -> int:
        """Execute a statement; the id of the inserted row (or 0)."""
        async with self.db.execute(sql, params) as cur:
            return cur.lastrowid or 0

    # ------------------------------------------------------------------ counters

    async def count(self, name: str, by: int = 1) -> None:
        await self.run("INSERT INTO counters (name, value) VALUES (?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (name, by))

    async def counters(self) -> dict[str, int]:
        return {r["name"]: r["value"] for r in await self.all("SELECT name, value FROM counters")}

    # ------------------------------------------------------------------ devices

    async def device(self, device: str) -> DeviceRow | None:
        row = await self.one("SELECT * FROM devices WHERE device = ?", (device,))
        return DeviceRow.from_row(row) if row else None

    async def devices(self) -> list[DeviceRow]:
        return [DeviceRow.from_row(r) for r in await self.all("SELECT * FROM devices ORDER BY device")]

    async def device_at_window(self, window: str) -> str | None:
        """The device serving `window` (the latest registered, if a window has several)."""
        row = await self.one("SELECT device FROM devices WHERE window = ? "
                             "ORDER BY registered_at DESC LIMIT 1", (window,))
        return row["device"] if row else None

    async def register_device(self, device: str, window: str, now: float) -> None:
        """Register `device` at `window`; registering it again at the same window changes nothing
        (so seeding the registry at every start keeps the original registration time)."""
        await self.run(
            "INSERT INTO devices (device, window, registered_at) VALUES (?, ?, ?) "
            "ON CONFLICT (device) DO UPDATE SET window = excluded.window, registered_at = CASE "
            "WHEN devices.window IS excluded.window AND devices.registered_at IS NOT NULL "
            "THEN devices.registered_at ELSE excluded.registered_at END", (device, window, now))

    async def seen(self, device: str, now: float) -> None:
        """Note that `device` spoke; creates an unregistered row for a device never seen."""
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
        new = (status.boot, status.conn, PRESENCE_RANK[status.state])
        if row is not None and row["presence"] is not None:
            old = (row["presence_boot"], row["presence_conn"], PRESENCE_RANK[row["presence"]])
            if new == old:
                return "repeat"
            if new < old:
                return "stale"
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
        row = await self.one("SELECT * FROM services WHERE state = ? AND window = ? AND ticket = ? "
                             "ORDER BY opened_rx DESC LIMIT 1", (SERVICE_OPEN, window, ticket))
        return ServiceRow.from_row(row) if row else None

    async def services_near(self, window: str, ended_since: float) -> list[ServiceRow]:
        """Candidates for a local session at `window`: open services, and services ended at or
        after `ended_since`."""
        rows = await self.all(
            "SELECT * FROM services WHERE window = ? AND state = ? UNION ALL "
            "SELECT * FROM services WHERE window = ? AND state = ? AND ended_rx >= ?",
            (window, SERVICE_OPEN, window, SERVICE_ENDED, ended_since))
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

    async def outbox_pending(self, limit: int) -> list[sqlite3.Row]:
        return await self.all("SELECT seq, kind, key, item FROM outbox WHERE state = 'pending' "
                              "ORDER BY seq LIMIT ?", (limit,))

    async def outbox_sent(self, seqs: list[int], now: float) -> None:
        await self.db.executemany("UPDATE outbox SET state = 'sent', sent_at = ?, "
                                  "attempts = attempts + 1 WHERE seq = ? AND state = 'pending'",
                                  [(now, s) for s in seqs])

    async def outbox_dead(self, seq: int, reason: str) -> None:
        await self.run("UPDATE outbox SET state = 'dead', last_error = ?, attempts = attempts + 1 "
                       "WHERE seq = ? AND state = 'pending'", (reason, seq))

    async def outbox_failed(self, seqs: list[int], error: str) -> None:
        await self.db.executemany("UPDATE outbox SET attempts = attempts + 1, last_error = ? "
                                  "WHERE seq = ?", [(error[:500], s) for s in seqs])

    async def outbox_depth(self) -> dict[str, int]:
        depth = dict.fromkeys(OUTBOX_STATES, 0)
        for r in await self.all("SELECT state, COUNT(*) AS c FROM outbox GROUP BY state"):
            depth[r["state"]] = r["c"]
        return depth


class Store:
    """Owner of the connection. `open()` creates or migrates the file; `close()` checkpoints."""

    def __init__(self, db: aiosqlite.Connection, path: Path):
        self._db = db
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> "Store":
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
        db.row_factory = sqlite3.Row
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = await _pragma(db, "journal_mode = WAL")
            if mode != "wal":
                raise RuntimeError(f"{path}: cannot use WAL (journal_mode={mode})")
            await db.execute("PRAGMA synchronous = FULL")
            await _migrate(db, path)
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction (BEGIN IMMEDIATE): committed on exit, rolled back on any exception."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._db)
                await self._db.execute("COMMIT")
            except BaseException:  # including a failed COMMIT (disk full): leave no open transaction
                try:
                    await self._db.execute("ROLLBACK")
                except Exception:  # the connection is gone; the file rolls back on its own
                    log.exception("rollback failed")
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """A read-only snapshot (deferred transaction)."""
        async with self._lock:
            await self._db.execute("BEGIN")
            try:
                yield Tx(self._db)
            finally:
                await self._db.execute("ROLLBACK")


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
