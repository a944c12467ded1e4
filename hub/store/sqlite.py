"""The SQLite backend: one file in WAL mode, one writer connection and one reader connection.

Writes go through the writer under an asyncio lock, each in a `BEGIN IMMEDIATE` transaction (which
also keeps a second process on the same file out). Reads use their own connection, so they never
see a batch half-written and never wait for one. An ingest batch costs a handful of round trips to
the aiosqlite thread (a few lookups, one executemany per table), not one per item.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from hcp.protocol import Rating, key_id

from ..ingest import (
    DeviceAlertRow,
    DeviceKeys,
    IngestPlan,
    ItemResult,
    ParsedItem,
    decide,
    lookups,
)
from ..migrations import SCHEMA_VERSION_TABLE, SQLITE_MIGRATIONS
from . import tables
from .base import (
    AlertRecord,
    DeviceRecord,
    GatewayRecord,
    HubStore,
    KeyIdCollision,
    RejectionRecord,
    RejectionSummary,
    StoredDeviceAlert,
    StoredHealth,
    StoredRating,
)

BUSY_TIMEOUT_MS = 5000  # a backup or an operator's sqlite3 shell may hold the lock for a moment
SYNCHRONOUS = "FULL"  # an accepted item must survive a power cut: the gateway deletes it on our answer
LOOKUP_CHUNK = 400  # bound variables per IN (...) list: under the old 999 limit with 2 per rating
HEALTH_LOOKUP_CHUNK = 300  # 3 variables per health key: still under 999

T = TypeVar("T")


def _chunks(values: Iterable[Any], size: int = LOOKUP_CHUNK) -> Iterable[list[Any]]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"unterminated statement in migration: {pending.strip()[:80]}")
    return statements


def _marks(columns: str) -> str:
    return ", ".join("?" * len(tables.names(columns)))


class SQLiteStore(HubStore):
    """`HubStore` on one SQLite file (created with its folder if missing)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = asyncio.Lock()
        writer = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await writer.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            async with writer.execute("PRAGMA journal_mode = WAL") as cur:
                mode = (await cur.fetchone())[0]  # type: ignore[index]
            if mode.lower() != "wal":
                raise RuntimeError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            await writer.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
            await writer.execute("PRAGMA foreign_keys = ON")
            await self._migrate(writer)
            reader = await aiosqlite.connect(self.path, isolation_level=None)
        except BaseException:
            await writer.close()
            raise
        await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await reader.execute("PRAGMA query_only = ON")
        self._writer, self._reader = writer, reader

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if reader is not None:
            await reader.close()
        if writer is not None:
            if self._write_lock is not None:
                async with self._write_lock:  # let a running batch finish
                    await writer.close()
            else:
                await writer.close()

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute(SCHEMA_VERSION_TABLE)
        for version, script in enumerate(SQLITE_MIGRATIONS, start=1):
            await db.execute("BEGIN IMMEDIATE")
            try:
                async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version") as cur:
                    current = (await cur.fetchone())[0]  # type: ignore[index]
                if current > len(SQLITE_MIGRATIONS):
                    raise RuntimeError(f"{self.path}: schema version {current} is newer than this "
                                       f"hub knows ({len(SQLITE_MIGRATIONS)}): upgrade the hub")
                if current < version:
                    for statement in _statements(script):
                        await db.execute(statement)
                    await db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                                     (version, tables.now()))
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise

    @property
    def _w(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    @property
    def _r(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    async def _write(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run `await work(db)` in one write transaction; roll back on any error."""
        assert self._write_lock is not None, "store is not open"
        async with self._write_lock:
            db = self._w
            await db.execute("BEGIN IMMEDIATE")
            try:
                result = await work(db)
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise
            return result

    async def _rows(self, sql: str, params: Sequence[Any] = (),
                    db: aiosqlite.Connection | None = None) -> list[sqlite3.Row]:
        """All rows of a query, on the reader unless `db` (the writer, inside a transaction)."""
        return list(await (db or self._r).execute_fetchall(sql, params))

    async def schema_version(self) -> int:
        rows = await self._rows("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return rows[0][0]

    # ------------------------------------------------------------------------ registration

    async def register_gateway(self, hall: str, token_sha256: str, key: bytes) -> None:
        async def work(db: aiosqlite.Connection) -> None:
            now = tables.now()
            await db.execute(
                "INSERT INTO gateways (hall, token_sha256, key_hex, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (hall) DO UPDATE SET "
                "token_sha256 = excluded.token_sha256, key_hex = excluded.key_hex, "
                "updated_at = excluded.updated_at",
                (hall, token_sha256, key.hex(), now, now))
        await self._write(work)

    async def gateway_by_token_hash(self, token_sha256: str) -> GatewayRecord | None:
        rows = await self._rows(
            "SELECT hall, token_sha256, key_hex, created_at, updated_at FROM gateways "
            "WHERE token_sha256 = ?", (token_sha256,))
        if not rows:
            return None
        hall, token_hash, key_hex, created_at, updated_at = rows[0]
        return GatewayRecord(hall, token_hash, bytes.fromhex(key_hex), created_at, updated_at)

    async def register_device(self, device: str, hall: str, window: str, key: bytes) -> str:
        kid = key_id(key)

        async def work(db: aiosqlite.Connection) -> None:
            now = tables.now()
            rows = await self._rows("SELECT key_hex FROM device_keys WHERE device = ? AND kid = ?",
                                    (device, kid), db)
            if rows and rows[0][0] != key.hex():
                raise KeyIdCollision(f"device {device} already has another key with kid {kid}")
            await db.execute(
                "INSERT INTO devices (device, hall, window_id, registered_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET hall = excluded.hall, "
                "window_id = excluded.window_id, updated_at = excluded.updated_at",
                (device, hall, window, now, now))
            if rows:
                await db.execute("UPDATE device_keys SET retired_at = NULL WHERE device = ? AND kid = ?",
                                 (device, kid))
            else:
                await db.execute(
                    "INSERT INTO device_keys (device, kid, key_hex, registered_at) VALUES (?, ?, ?, ?)",
                    (device, kid, key.hex(), now))
            await db.execute("UPDATE device_keys SET retired_at = ? "
                             "WHERE device = ? AND kid != ? AND retired_at IS NULL", (now, device, kid))

        await self._write(work)
        return kid

    # ------------------------------------------------------------------------ ingest

    async def _ingest_parsed(self, hall: str, items: Sequence[ParsedItem]) -> list[ItemResult]:
        needed = lookups(items)

        async def work(db: aiosqlite.Connection) -> list[ItemResult]:
            devices = await self._load_devices(db, needed.devices)
            stored_ratings = await self._load_ratings(db, needed.ratings)
            stored_services = await self._load_services(db, hall, needed.services)
            stored_health = await self._load_health(db, hall, needed.health)
            stored_alerts = await self._load_device_alerts(db, hall, needed.alerts)
            plan = decide(items, devices, stored_ratings, stored_services, stored_health, stored_alerts)
            await self._write_plan(db, hall, plan, tables.now())
            return plan.results

        return await self._write(work)

    async def _load_devices(self, db: aiosqlite.Connection, ids: set[str]) -> dict[str, DeviceKeys]:
        found: dict[str, tuple[str, str, dict[str, bytes]]] = {}
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            for device, hall, window, kid, key_hex in await self._rows(
                    "SELECT d.device, d.hall, d.window_id, k.kid, k.key_hex FROM devices d "
                    f"LEFT JOIN device_keys k ON k.device = d.device WHERE d.device IN ({marks})",
                    chunk, db):
                entry = found.setdefault(device, (hall, window, {}))
                if kid is not None:
                    entry[2][kid] = bytes.fromhex(key_hex)
        return {device: DeviceKeys(hall, window, keys) for device, (hall, window, keys) in found.items()}

    async def _load_ratings(self, db: aiosqlite.Connection,
                            keys: set[tuple[str, int]]) -> dict[tuple[str, int], Rating]:
        found: dict[tuple[str, int], Rating] = {}
        for chunk in _chunks(sorted(keys)):
            marks = ",".join("(?, ?)" for _ in chunk)
            params = [value for key in chunk for value in key]
            # The keys drive the loop, one seek in UNIQUE (device, n) each. `(device, n) IN
            # (VALUES ...)` was planned as a scan of the whole table: every batch cost O(ratings),
            # and a 1M-item backlog drain slowed from 8,000 to 1,600 items/s (bench/gateway_drain.py).
            for hall, device, n, boot, mono, session, score, kid, sig in await self._rows(
                    "SELECT r.hall, r.device, r.n, r.boot, r.mono, r.session, r.score, r.kid, r.sig "
                    f"FROM (VALUES {marks}) AS k CROSS JOIN ratings AS r "
                    "ON r.device = k.column1 AND r.n = k.column2", params, db):
                found[(device, n)] = Rating(hall, device, n, boot, mono, session, score, kid, sig)
        return found

    async def _load_services(self, db: aiosqlite.Connection, hall: str, ids: set[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            for sid, payload in await self._rows(
                    f"SELECT id, payload FROM services WHERE hall = ? AND id IN ({marks})",
                    [hall, *chunk], db):
                found[sid] = payload
        return found

    async def _load_health(self, db: aiosqlite.Connection, hall: str,
                           keys: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], str]:
        found: dict[tuple[str, int, int], str] = {}
        for chunk in _chunks(sorted(keys), HEALTH_LOOKUP_CHUNK):
            marks = ",".join("(?, ?, ?)" for _ in chunk)
            params = [*(value for key in chunk for value in key), hall]
            # The keys drive the loop, one seek in UNIQUE (hall, device, boot, up) each: the IN
            # (VALUES ...) form seeks only by hall, a scan of the hall's whole history per batch.
            for device, boot, up, payload in await self._rows(
                    "SELECT h.device, h.boot, h.up, h.payload "
                    f"FROM (VALUES {marks}) AS k CROSS JOIN device_health AS h ON h.hall = ? "
                    "AND h.device = k.column1 AND h.boot = k.column2 AND h.up = k.column3", params, db):
                found[(device, boot, up)] = payload
        return found

    async def _load_device_alerts(self, db: aiosqlite.Connection, hall: str,
                                  ids: set[int]) -> dict[int, DeviceAlertRow]:
        found: dict[int, DeviceAlertRow] = {}
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            for row in await self._rows(
                    "SELECT alert_id, device, window_id, alert, detail, raised_at, cleared_at, "
                    f"raised_item, cleared_item FROM device_alerts WHERE hall = ? AND alert_id IN ({marks})",
                    [hall, *chunk], db):
                found[row[0]] = DeviceAlertRow(*row)
        return found

    async def _write_plan(self, db: aiosqlite.Connection, hall: str, plan: IngestPlan, now: str) -> None:
        if plan.ratings:
            await db.executemany(f"INSERT INTO ratings ({tables.RATING_INSERT_COLUMNS}) "
                                 f"VALUES ({_marks(tables.RATING_INSERT_COLUMNS)})", tables.rating_rows(plan, now))
        if plan.services:
            await db.executemany(f"INSERT INTO services ({tables.SERVICE_COLUMNS}) "
                                 f"VALUES ({_marks(tables.SERVICE_COLUMNS)})", tables.service_rows(plan, now))
        if plan.health:
            await db.executemany(f"INSERT INTO device_health ({tables.HEALTH_INSERT_COLUMNS}) "
                                 f"VALUES ({_marks(tables.HEALTH_INSERT_COLUMNS)})", tables.health_rows(plan, now))
            await db.executemany(  # rows apply in order, so a batch's own snapshots compare too
                f"INSERT INTO device_health_latest ({tables.HEALTH_LATEST_COLUMNS}) "
                f"VALUES ({_marks(tables.HEALTH_LATEST_COLUMNS)}) ON CONFLICT (hall, device) DO UPDATE SET "
                "boot = excluded.boot, up = excluded.up, received_ms = excluded.received_ms "
                "WHERE (excluded.received_ms, excluded.boot, excluded.up) > "
                "(device_health_latest.received_ms, device_health_latest.boot, device_health_latest.up)",
                tables.health_latest_rows(plan))
        if plan.device_alerts:
            await db.executemany(
                f"INSERT INTO device_alerts ({tables.DEVICE_ALERT_INSERT_COLUMNS}) "
                f"VALUES ({_marks(tables.DEVICE_ALERT_INSERT_COLUMNS)}) ON CONFLICT (hall, alert_id) DO UPDATE SET "
                "window_id = excluded.window_id, state = excluded.state, detail = excluded.detail, "
                "cleared_at = excluded.cleared_at, raised_item = excluded.raised_item, "
                "cleared_item = excluded.cleared_item, updated_at = excluded.updated_at",
                tables.device_alert_rows(hall, plan, now))
        if plan.rejections:
            await db.executemany(f"INSERT INTO rejections ({tables.REJECTION_COLUMNS}) "
                                 f"VALUES ({_marks(tables.REJECTION_COLUMNS)})", tables.rejection_rows(hall, plan, now))
        if plan.alerts:
            await db.executemany(f"INSERT INTO alerts ({tables.ALERT_COLUMNS}) "
                                 f"VALUES ({_marks(tables.ALERT_COLUMNS)})", tables.alert_rows(hall, plan, now))

    # ------------------------------------------------------------------------ reads

    async def get_rating(self, device: str, n: int) -> StoredRating | None:
        rows = await self._rows(f"SELECT {tables.RATING_COLUMNS} FROM ratings WHERE device = ? AND n = ?",
                                (device, n))
        return tables.stored_rating(rows[0]) if rows else None

    async def list_ratings(self, *, hall: str | None = None, device: str | None = None,
                           window: str | None = None, ticket: str | None = None,
                           limit: int = 100) -> list[StoredRating]:
        where, params = [], []
        for column, value in (("hall", hall), ("device", device), ("window_id", window),
                              ("ticket", ticket)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {tables.RATING_COLUMNS} FROM ratings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._rows(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit])
        return [tables.stored_rating(row) for row in rows]

    async def list_devices(self, *, hall: str | None = None) -> list[DeviceRecord]:
        where, params = ("WHERE d.hall = ?", [hall]) if hall is not None else ("", [])
        health = ", ".join(f"h.{column.strip()}" for column in tables.HEALTH_COLUMNS.split(","))
        rows = await self._rows(
            "SELECT d.device, d.hall, d.window_id, k.kid, d.registered_at, d.updated_at, "
            "(SELECT json_group_array(alert) FROM (SELECT DISTINCT a.alert FROM device_alerts a "
            " WHERE a.hall = d.hall AND a.device = d.device AND a.cleared_at IS NULL ORDER BY a.alert)), "
            f"{health} FROM devices d "
            "LEFT JOIN device_keys k ON k.device = d.device AND k.retired_at IS NULL "
            "LEFT JOIN device_health_latest l ON l.hall = d.hall AND l.device = d.device "
            "LEFT JOIN device_health h ON h.hall = l.hall AND h.device = l.device "
            "AND h.boot = l.boot AND h.up = l.up "
            f"{where} ORDER BY d.device", params)
        return [DeviceRecord(device, hall_, window, kid, registered_at, updated_at,
                             tables.stored_health(latest) if latest[0] is not None else None,
                             tuple(json.loads(open_kinds)))
                for device, hall_, window, kid, registered_at, updated_at, open_kinds, *latest in rows]

    async def health_history(self, *, hall: str, device: str, limit: int = 100) -> list[StoredHealth]:
        rows = await self._rows(
            f"SELECT {tables.HEALTH_COLUMNS} FROM device_health WHERE hall = ? AND device = ? "
            "ORDER BY received_ms DESC, boot DESC, up DESC LIMIT ?", (hall, device, limit))
        return [tables.stored_health(row) for row in rows]

    async def device_alerts(self, *, hall: str, device: str | None = None, state: str | None = None,
                            limit: int = 100) -> list[StoredDeviceAlert]:
        where, params = ["hall = ?"], [hall]
        for column, value in (("device", device), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = await self._rows(
            f"SELECT {tables.DEVICE_ALERT_COLUMNS} FROM device_alerts WHERE {' AND '.join(where)} "
            "ORDER BY alert_id DESC LIMIT ?", [*params, limit])
        return [tables.stored_device_alert(row) for row in rows]

    async def rejection_summary(self, *, hall: str | None = None, limit: int = 50) -> RejectionSummary:
        where, params = ("WHERE hall = ?", [hall]) if hall is not None else ("", [])
        by_reason = {reason: count for reason, count in await self._rows(
            f"SELECT reason, COUNT(*) FROM rejections {where} GROUP BY reason ORDER BY reason", params)}
        recent = [RejectionRecord(*row) for row in await self._rows(
            f"SELECT at, hall, item_key, reason, item FROM rejections {where} ORDER BY id DESC LIMIT ?",
            [*params, limit])]
        return RejectionSummary(sum(by_reason.values()), by_reason, recent)

    async def alerts(self, *, kind: str | None = None, limit: int = 100) -> list[AlertRecord]:
        where, params = ("WHERE kind = ?", [kind]) if kind is not None else ("", [])
        rows = await self._rows(
            f"SELECT at, kind, hall, item_key, detail FROM alerts {where} ORDER BY id DESC LIMIT ?",
            [*params, limit])
        return [AlertRecord(at, k, hall, key, json.loads(detail)) for at, k, hall, key, detail in rows]

    async def counts(self) -> dict[str, int]:
        sql = " UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM {t}" for t in tables.COUNTED_TABLES)
        return {table: count for table, count in await self._rows(sql)}
