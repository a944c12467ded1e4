"""The SQLite backend: one file in WAL mode, one writer connection and one reader connection.

Writes go through the writer under an asyncio lock, each in a `BEGIN IMMEDIATE` transaction (which
also keeps a second process on the same file out). Reads use their own connection, so they never
see a batch half-written and never wait for one. A write transaction is one plain function run
whole on the writer's thread (`_write`): an ingest batch's look-ups, decisions and writes cost one
hand-off to that thread, not one per statement (each hand-off costs ~0.2 ms of CPU here, as much
as a few dozen rows).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from datetime import datetime
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from hcp.protocol import Rating, key_id

from .. import ledger
from ..defaults import DEFAULT_COLUMNS, DefaultRating
from ..default_rules import DefaultRule
from ..ingest import (
    DeviceAlertRow,
    DeviceKeys,
    IngestPlan,
    ItemResult,
    ParsedItem,
    decide,
    lookups,
)
from ..gaps import GapBook
from ..migrations import BACKFILLS, SCHEMA_VERSION_TABLE, SQLITE_MIGRATIONS
from ..stats import Rebuilt, StatsQuery, StatsRow
from . import cases_sql, rollups, sqlite_rollups, tables
from . import dashboard_sql
from .sqlite_phone import SQLitePhone
from ..cases import sources_from_plan
from .base import (
    AlertRecord,
    DeviceRecord,
    GatewayRecord,
    HallRecord,
    HubStore,
    KeyIdCollision,
    RegionRecord,
    RejectionRecord,
    RejectionSummary,
    RetiredDevice,
    DeviceGaps,
    StoredDeviceAlert,
    StoredGap,
    StoredHealth,
    StoredRating,
    UnknownRegion,
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


def _fetch(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _transaction(work: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    """`work(conn)` in one `BEGIN IMMEDIATE` transaction, on the writer's thread; rolled back on
    any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _widen_ledger_kinds(conn: sqlite3.Connection) -> None:
    """Let the ledger's CHECK on `kind` admit every kind of hub.ledger.KINDS, in the caller's
    transaction, without copying the table: the CHECK in its stored definition is rewritten, as
    SQLite documents for dropping or loosening a constraint (lang_altertable.html, section 7: edit
    sqlite_schema with writable_schema on, then bump schema_version so every connection reloads
    the schema). Every stored row meets the wider CHECK; nothing on disk depends on it."""
    (sql,), = _fetch(conn, "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'ledger'")
    kinds = ", ".join(f"'{kind}'" for kind in ledger.KINDS)
    wider, replaced = re.subn(r"CHECK \(kind IN \([^)]*\)\)", f"CHECK (kind IN ({kinds}))", sql)
    if replaced != 1:
        raise RuntimeError(f"the ledger's definition has {replaced} kind CHECKs, not 1: {sql}")
    (version,), = _fetch(conn, "PRAGMA schema_version")
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute("UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = 'ledger'", (wider,))
        conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    conn.execute("SELECT 1 FROM ledger LIMIT 0")  # the schema reloads here: a definition that does not parse fails now


class SQLiteStore(SQLitePhone, HubStore):
    """`HubStore` on one SQLite file (created with its folder if missing)."""

    param = "?"

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
            await self._on_writer(writer, self._migrate)
            reader = await aiosqlite.connect(self.path, isolation_level=None)
        except BaseException:
            await writer.close()
            raise
        await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await reader.execute("PRAGMA query_only = ON")
        self._writer, self._reader = writer, reader
        if await self._on_writer(writer, sqlite_rollups.rebuild_requested):  # a migration asked
            await self.rebuild_stats()

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

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Every migration not applied yet, each in its own transaction (on the writer's thread)."""
        conn.execute(SCHEMA_VERSION_TABLE)
        for version, script in enumerate(SQLITE_MIGRATIONS, start=1):
            _transaction(partial(self._migration, version, script), conn)

    def _migration(self, version: int, script: str, conn: sqlite3.Connection) -> None:
        (current,), = _fetch(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
        if current > len(SQLITE_MIGRATIONS):
            raise RuntimeError(f"{self.path}: schema version {current} is newer than this "
                               f"hub knows ({len(SQLITE_MIGRATIONS)}): upgrade the hub")
        if current < version:
            for statement in _statements(script):
                conn.execute(statement)
            if BACKFILLS.get(version) == "ledger":
                self._backfill_ledger(conn)
            elif BACKFILLS.get(version) == "ledger_kinds":
                _widen_ledger_kinds(conn)
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                         (version, tables.now()))

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

    @staticmethod
    async def _on_writer(db: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` on the thread of `db`, with its sqlite3 connection: one hand-off. aiosqlite has
        no public call for this; `_execute` is what each of its own methods queues its work with."""
        return await db._execute(fn, db._conn)

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(conn)` in one write transaction, whole on the writer's thread; roll back on any
        error. Once started it runs to its end, even if the caller is cancelled meanwhile (a batch
        is then committed, unanswered: the gateway posts it again and gets `duplicate`s)."""
        assert self._write_lock is not None, "store is not open"
        async with self._write_lock:
            return await self._on_writer(self._w, partial(_transaction, work))

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """All rows of a query, on the reader."""
        return list(await self._r.execute_fetchall(sql, params))

    async def schema_version(self) -> int:
        rows = await self._rows("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return rows[0][0]

    async def _write_statements(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        def work(conn: sqlite3.Connection) -> list[list[Any]]:
            results = []
            for sql, params in statements:
                cursor = conn.execute(sql, params)
                results.append(cursor.fetchall() if cursor.description else [])
            return results
        return await self._write(work)

    # ------------------------------------------------------------------------ registration

    async def register_gateway(self, hall: str, token_sha256: str, key: bytes) -> None:
        def work(conn: sqlite3.Connection) -> None:
            now = tables.now()
            conn.execute(
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

        def work(conn: sqlite3.Connection) -> None:
            now = tables.now()
            rows = _fetch(conn, "SELECT key_hex FROM device_keys WHERE device = ? AND kid = ?", (device, kid))
            if rows and rows[0][0] != key.hex():
                raise KeyIdCollision(f"device {device} already has another key with kid {kid}")
            conn.execute(
                tables.REGISTER_DEVICE_SQL.format(p="?"), (device, hall, window, now, now))
            if rows:
                conn.execute("UPDATE device_keys SET retired_at = NULL WHERE device = ? AND kid = ?",
                             (device, kid))
            else:
                conn.execute(
                    "INSERT INTO device_keys (device, kid, key_hex, registered_at) VALUES (?, ?, ?, ?)",
                    (device, kid, key.hex(), now))
            conn.execute("UPDATE device_keys SET retired_at = ? "
                         "WHERE device = ? AND kid != ? AND retired_at IS NULL", (now, device, kid))

        await self._write(work)
        return kid

    async def retire_device(self, device: str) -> RetiredDevice | None:
        def work(conn: sqlite3.Connection) -> RetiredDevice | None:
            conn.execute(tables.RETIRE_DEVICE_SQL.format(p="?"), (now := tables.now(), now, device))
            rows = _fetch(conn, tables.RETIRED_DEVICE_SQL.format(p="?"), (device,))
            return RetiredDevice(*rows[0]) if rows else None
        return await self._write(work)

    # ------------------------------------------------------------------------ regions and halls

    async def put_region(self, region: str, *, name: str, area_code: str | None,
                         default_rule: DefaultRule) -> RegionRecord:
        def work(conn: sqlite3.Connection) -> RegionRecord:
            now = tables.now()
            rows = _fetch(
                conn, f"INSERT INTO regions ({tables.REGION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (region) DO UPDATE SET name = excluded.name, area_code = excluded.area_code, "
                "default_rule = excluded.default_rule, updated_at = excluded.updated_at "
                f"RETURNING {tables.REGION_COLUMNS}",
                (region, name, area_code, tables.rule_json(default_rule), now, now))
            return tables.region_record(rows[0])
        return await self._write(work)

    async def get_region(self, region: str) -> RegionRecord | None:
        rows = await self._rows(f"SELECT {tables.REGION_COLUMNS} FROM regions WHERE region = ?", (region,))
        return tables.region_record(rows[0]) if rows else None

    async def list_regions(self) -> list[RegionRecord]:
        rows = await self._rows(f"SELECT {tables.REGION_COLUMNS} FROM regions ORDER BY region")
        return [tables.region_record(row) for row in rows]

    async def put_hall(self, hall: str, *, region: str, name: str | None = None) -> HallRecord:
        def work(conn: sqlite3.Connection) -> HallRecord:
            if not _fetch(conn, "SELECT 1 FROM regions WHERE region = ?", (region,)):
                raise UnknownRegion(f"no region {region}")
            rows = _fetch(
                conn, f"INSERT INTO halls ({tables.HALL_COLUMNS}) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (hall) DO UPDATE SET region = excluded.region, name = excluded.name, "
                f"updated_at = excluded.updated_at RETURNING {tables.HALL_COLUMNS}",
                (hall, region, name, tables.now()))
            return tables.hall_record(rows[0])
        return await self._write(work)

    async def hall_region(self, hall: str) -> RegionRecord | None:
        columns = ", ".join(f"r.{c}" for c in tables.names(tables.REGION_COLUMNS))
        rows = await self._rows(f"SELECT {columns} FROM halls hl JOIN regions r ON r.region = hl.region "
                                "WHERE hl.hall = ?", (hall,))
        return tables.region_record(rows[0]) if rows else None

    async def halls(self, *, region: str | None = None) -> list[HallRecord]:
        where, params = ("WHERE region = ?", [region]) if region is not None else ("", [])
        rows = await self._rows(f"SELECT {tables.HALL_COLUMNS} FROM halls {where} ORDER BY hall", params)
        return [tables.hall_record(row) for row in rows]

    # ------------------------------------------------------------------------ ingest

    async def _ingest_parsed(self, hall: str, items: Sequence[ParsedItem]) -> list[ItemResult]:
        needed = lookups(items)
        calendar = self.calendar_for_cases()

        def work(db: sqlite3.Connection) -> list[ItemResult]:
            devices = self._load_devices(db, needed.devices)
            stored_ratings = self._load_ratings(db, needed.ratings)
            stored_services = self._load_services(db, hall, needed.services)
            stored_health = self._load_health(db, hall, needed.health)
            stored_alerts = self._load_device_alerts(db, hall, needed.alerts)
            plan = decide(items, devices, stored_ratings, stored_services, stored_health, stored_alerts)
            sqlite_rollups.count_ingest(db, hall, plan)  # before the plan: it reads what was there
            now = tables.now()
            self._write_plan(db, hall, plan, now)
            self._write_gaps(db, plan, now)
            cases_sql.run_sqlite(db, cases_sql.open_cases(  # a case for each bad rating (hub/cases.py)
                sources_from_plan(plan), calendar, datetime.fromisoformat(now)))
            return plan.results

        return await self._write(work)

    def _load_devices(self, db: sqlite3.Connection, ids: set[str]) -> dict[str, DeviceKeys]:
        rows = []
        for chunk in _chunks(sorted(ids)):
            rows += _fetch(db, f"{tables.LOAD_DEVICES} WHERE d.device IN ({','.join('?' * len(chunk))})", chunk)
        return tables.device_keys(rows)

    def _load_ratings(self, db: sqlite3.Connection,
                      keys: set[tuple[str, int]]) -> dict[tuple[str, int], Rating]:
        found: dict[tuple[str, int], Rating] = {}
        for chunk in _chunks(sorted(keys)):
            marks = ",".join("(?, ?)" for _ in chunk)
            params = [value for key in chunk for value in key]
            # The keys drive the loop, one seek in UNIQUE (device, n) each. `(device, n) IN
            # (VALUES ...)` was planned as a scan of the whole table: every batch cost O(ratings),
            # and a 1M-item backlog drain slowed from 8,000 to 1,600 items/s (bench/gateway_drain.py).
            for hall, device, n, boot, mono, session, score, kid, sig in _fetch(db,
                    "SELECT r.hall, r.device, r.n, r.boot, r.mono, r.session, r.score, r.kid, r.sig "
                    f"FROM (VALUES {marks}) AS k CROSS JOIN ratings AS r "
                    "ON r.device = k.column1 AND r.n = k.column2", params):
                found[(device, n)] = Rating(hall, device, n, boot, mono, session, score, kid, sig)
        return found

    def _load_services(self, db: sqlite3.Connection, hall: str, ids: set[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            for sid, payload in _fetch(db,
                    f"SELECT id, payload FROM services WHERE hall = ? AND id IN ({marks})",
                    [hall, *chunk]):
                found[sid] = payload
        return found

    def _load_health(self, db: sqlite3.Connection, hall: str,
                     keys: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], str]:
        found: dict[tuple[str, int, int], str] = {}
        for chunk in _chunks(sorted(keys), HEALTH_LOOKUP_CHUNK):
            marks = ",".join("(?, ?, ?)" for _ in chunk)
            params = [*(value for key in chunk for value in key), hall]
            # The keys drive the loop, one seek in UNIQUE (hall, device, boot, up) each: the IN
            # (VALUES ...) form seeks only by hall, a scan of the hall's whole history per batch.
            for device, boot, up, payload in _fetch(db,
                    "SELECT h.device, h.boot, h.up, h.payload "
                    f"FROM (VALUES {marks}) AS k CROSS JOIN device_health AS h ON h.hall = ? "
                    "AND h.device = k.column1 AND h.boot = k.column2 AND h.up = k.column3", params):
                found[(device, boot, up)] = payload
        return found

    def _load_device_alerts(self, db: sqlite3.Connection, hall: str,
                            ids: set[int]) -> dict[int, DeviceAlertRow]:
        found: dict[int, DeviceAlertRow] = {}
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            for row in _fetch(db,
                    "SELECT alert_id, device, window_id, alert, detail, raised_at, cleared_at, "
                    f"raised_item, cleared_item FROM device_alerts WHERE hall = ? AND alert_id IN ({marks})",
                    [hall, *chunk]):
                found[row[0]] = DeviceAlertRow(*row)
        return found

    def _write_plan(self, db: sqlite3.Connection, hall: str, plan: IngestPlan, now: str) -> None:
        rating_rows = tables.rating_rows(plan, now)
        service_rows = tables.service_rows(plan, now)
        if rating_rows:
            db.executemany(f"INSERT INTO ratings ({tables.RATING_INSERT_COLUMNS}) "
                           f"VALUES ({_marks(tables.RATING_INSERT_COLUMNS)})", rating_rows)
        if service_rows:
            db.executemany(f"INSERT INTO services ({tables.SERVICE_COLUMNS}) "
                           f"VALUES ({_marks(tables.SERVICE_COLUMNS)})", service_rows)
        self._append_ledger(db, tables.ledger_pending(rating_rows, service_rows), now)
        if plan.health:
            db.executemany(f"INSERT INTO device_health ({tables.HEALTH_INSERT_COLUMNS}) "
                           f"VALUES ({_marks(tables.HEALTH_INSERT_COLUMNS)})", tables.health_rows(plan, now))
            db.executemany(  # rows apply in order, so a batch's own snapshots compare too
                f"INSERT INTO device_health_latest ({tables.HEALTH_LATEST_COLUMNS}) "
                f"VALUES ({_marks(tables.HEALTH_LATEST_COLUMNS)}) ON CONFLICT (hall, device) DO UPDATE SET "
                "boot = excluded.boot, up = excluded.up, received_ms = excluded.received_ms "
                "WHERE (excluded.received_ms, excluded.boot, excluded.up) > "
                "(device_health_latest.received_ms, device_health_latest.boot, device_health_latest.up)",
                tables.health_latest_rows(plan))
        if plan.device_alerts:
            db.executemany(
                f"INSERT INTO device_alerts ({tables.DEVICE_ALERT_INSERT_COLUMNS}) "
                f"VALUES ({_marks(tables.DEVICE_ALERT_INSERT_COLUMNS)}) ON CONFLICT (hall, alert_id) DO UPDATE SET "
                "window_id = excluded.window_id, state = excluded.state, detail = excluded.detail, "
                "cleared_at = excluded.cleared_at, raised_item = excluded.raised_item, "
                "cleared_item = excluded.cleared_item, updated_at = excluded.updated_at",
                tables.device_alert_rows(hall, plan, now))
        if plan.rejections:
            db.executemany(f"INSERT INTO rejections ({tables.REJECTION_COLUMNS}) "
                           f"VALUES ({_marks(tables.REJECTION_COLUMNS)})", tables.rejection_rows(hall, plan, now))
        if plan.alerts:
            db.executemany(f"INSERT INTO alerts ({tables.ALERT_COLUMNS}) "
                           f"VALUES ({_marks(tables.ALERT_COLUMNS)})", tables.alert_rows(hall, plan, now))

    def _backfill_ledger(self, db: sqlite3.Connection, chunk: int = 10_000) -> None:
        """The migration that adds the ledger chains the records stored before it: ratings in
        ingest order, then services in the order they were stored."""
        now = tables.now()
        for is_rating, sql in (
                (True, f"SELECT seq, {tables.RATING_INSERT_COLUMNS} FROM ratings WHERE seq > ? ORDER BY seq LIMIT ?"),
                (False, f"SELECT rowid, {tables.SERVICE_COLUMNS} FROM services WHERE rowid > ? ORDER BY rowid LIMIT ?")):
            after = 0
            while rows := _fetch(db, sql, (after, chunk)):
                after = rows[-1][0]
                data = [tuple(row[1:]) for row in rows]
                pending = tables.ledger_pending(data, []) if is_rating else tables.ledger_pending([], data)
                self._append_ledger(db, pending, now)

    def _append_ledger(self, db: sqlite3.Connection, pending: list[ledger.Pending], now: str) -> None:
        """Chain `pending` after the ledger's head, in the caller's write transaction (SQLite has
        one writer: the head cannot move under it)."""
        if not pending:
            return
        (seq, head_hash), = _fetch(db, "SELECT seq, hash FROM ledger_head WHERE id = 1", ())
        entries = ledger.append(ledger.Head(seq, head_hash), pending, now)
        db.executemany(f"INSERT INTO ledger ({tables.LEDGER_COLUMNS}) "
                       f"VALUES ({_marks(tables.LEDGER_COLUMNS)})", tables.ledger_rows(entries))
        db.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1",
                   (entries[-1].seq, entries[-1].hash))

    # ------------------------------------------------------------------------ the ledger

    async def _ledger_records(self, entries: Sequence[ledger.Entry]) -> dict[tuple[str, str, str], dict]:
        found: dict[tuple[str, str, str], dict] = {}
        rating_keys = {key for e in entries if e.kind == "rating"
                       if (key := tables.parse_rating_ref(e.ref)) is not None}
        for chunk in _chunks(sorted(rating_keys)):
            marks = ",".join("(?, ?)" for _ in chunk)
            columns = ", ".join(f"r.{c}" for c in tables.RATING_RECORD_NAMES)
            for row in await self._rows(  # key-driven, as in _load_ratings
                    f"SELECT {columns} FROM (VALUES {marks}) AS k CROSS JOIN ratings AS r "
                    "ON r.device = k.column1 AND r.n = k.column2", [v for key in chunk for v in key]):
                record = tables.rating_record(row)
                found[("rating", record["hall"], tables.rating_ref(record["device"], record["n"]))] = record
        for kind, sql, to_record in (
                ("service", f"SELECT {tables.SERVICE_COLUMNS} FROM services WHERE hall = ? AND id IN ",
                 tables.service_record),
                ("default", f"SELECT {DEFAULT_COLUMNS} FROM default_ratings WHERE hall = ? AND service IN ",
                 tables.default_record)):
            by_hall: dict[str, set[str]] = {}
            for e in entries:
                if e.kind == kind:
                    by_hall.setdefault(e.hall, set()).add(e.ref)
            for hall, ids in by_hall.items():
                for chunk in _chunks(sorted(ids)):
                    for row in await self._rows(sql + f"({','.join('?' * len(chunk))})", [hall, *chunk]):
                        record = to_record(row)
                        found[(kind, record["hall"], record.get("id", record.get("service")))] = record
        found.update(await self._phone_ledger_records(entries))
        return found

    # ------------------------------------------------------------------------ default ratings

    async def _store_defaults(self, records: Sequence[DefaultRating],
                              alerts: Sequence[tuple[str, str | None, str, str]]) -> int:
        def work(db: sqlite3.Connection) -> int:
            now = tables.now()
            for alert in alerts:
                db.execute(tables.HUB_ALERT_ONCE_SQL.format(p="?"), tables.hub_alert_params(now, alert))
            fresh = []
            for r in records:  # one writer: what this sees cannot change before COMMIT
                (defaulted, rated), = _fetch(db, tables.DEFAULT_RECHECK_SQL.format(p="?"),
                                             (r.hall, r.service) * 3)
                if not defaulted and not rated:
                    fresh.append(r)
            if fresh:
                sqlite_rollups.count_defaults(db, [(r.hall, r.service) for r in fresh])
                db.executemany(f"INSERT INTO default_ratings ({DEFAULT_COLUMNS}) "
                               f"VALUES ({_marks(DEFAULT_COLUMNS)})", [r.row() for r in fresh])
                self._append_ledger(db, [ledger.Pending("default", r.hall, r.service, r.record())
                                         for r in fresh], now)
            return len(fresh)
        return await self._write(work)

    # ------------------------------------------------------------------------ counter gaps

    def _write_gaps(self, db: sqlite3.Connection, plan: IngestPlan, now: str) -> None:
        """Move the counters of the batch's accepted ratings (hub/gaps.py), in its transaction.
        In-order ratings cost one look-up and one upsert per batch; a rating at or below its
        device's high mark also looks up the hole holding it (one seek each)."""
        arrivals = tables.gap_arrivals(plan)
        if not arrivals:
            return
        highs: dict[str, int] = {}
        for chunk in _chunks(sorted({device for device, _, _ in arrivals})):
            highs.update(_fetch(db, f"SELECT device, high FROM rating_counters "
                                    f"WHERE device IN ({','.join('?' * len(chunk))})", chunk))
        late = sorted({(device, n) for device, n, _ in arrivals if n <= highs.get(device, 0)})
        rows = []
        for chunk in _chunks(late):
            marks = ",".join("(?, ?)" for _ in chunk)
            rows += _fetch(db,  # the hole holding n: the last one starting at or below it
                f"SELECT {tables.HOLE_AND_GAP_COLUMNS} FROM (VALUES {marks}) AS k "
                "CROSS JOIN rating_gap_holes AS h ON h.device = k.column1 AND h.first_n = "
                "(SELECT MAX(first_n) FROM rating_gap_holes WHERE device = k.column1 AND first_n <= k.column2) "
                "JOIN rating_gaps AS g ON g.device = h.device AND g.first_n = h.gap_first "
                "WHERE h.last_n >= k.column2", [value for key in chunk for value in key])
        holes, gaps = tables.holes_and_gaps(rows)
        book = GapBook(highs, holes, gaps)
        for device, n, hall in arrivals:
            book.arrive(device, n, hall, now)
        changes = book.changes()
        db.executemany(
            f"INSERT INTO rating_counters ({tables.COUNTER_COLUMNS}) VALUES (?, ?, ?) "
            "ON CONFLICT (device) DO UPDATE SET high = excluded.high, updated_at = excluded.updated_at",
            tables.counter_rows(changes, now))
        if changes.holes_removed:
            db.executemany("DELETE FROM rating_gap_holes WHERE device = ? AND first_n = ?",
                           changes.holes_removed)
        if changes.opened:
            db.executemany(f"INSERT INTO rating_gaps ({tables.GAP_COLUMNS}) "
                           f"VALUES ({_marks(tables.GAP_COLUMNS)})", tables.gap_rows(changes.opened))
        if changes.updated:
            db.executemany("UPDATE rating_gaps SET missing = ?, closed_at = ? "
                           "WHERE device = ? AND first_n = ?", tables.gap_update_rows(changes.updated))
        if changes.holes_added:
            db.executemany(f"INSERT INTO rating_gap_holes ({tables.HOLE_COLUMNS}) "
                           f"VALUES ({_marks(tables.HOLE_COLUMNS)})", tables.hole_rows(changes))

    async def list_gaps(self, *, hall: str | None = None, device: str | None = None,
                        state: str = "open", limit: int = 100) -> list[StoredGap]:
        where, params = [], []
        for column, value in (("hall", hall), ("device", device)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if tables.GAP_STATES[state] is not None:
            where.append(tables.GAP_STATES[state])
        rows = await self._rows(
            f"SELECT {tables.GAP_COLUMNS} FROM rating_gaps {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY opened_at DESC, device, first_n DESC LIMIT ?", [*params, limit])
        holes: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for chunk in _chunks([(row[0], row[1]) for row in rows if row[6] is None]):
            marks = ",".join("(?, ?)" for _ in chunk)
            for gap_device, gap_first, first, last in await self._rows(
                    "SELECT device, gap_first, first_n, last_n FROM (SELECT h.device, h.gap_first, h.first_n, "
                    "h.last_n, ROW_NUMBER() OVER (PARTITION BY h.device, h.gap_first ORDER BY h.first_n) AS k "
                    f"FROM (VALUES {marks}) AS g CROSS JOIN rating_gap_holes AS h "
                    "ON h.device = g.column1 AND h.gap_first = g.column2) WHERE k <= ? "
                    "ORDER BY device, gap_first, first_n",
                    [*(value for key in chunk for value in key), tables.HOLES_SHOWN]):
                holes.setdefault((gap_device, gap_first), []).append((first, last))
        return [tables.stored_gap(row, holes.get((row[0], row[1]), ())) for row in rows]

    async def open_gaps(self, *, hall: str | None = None,
                        device: str | None = None) -> dict[str, DeviceGaps]:
        where, params = ["closed_at IS NULL"], []
        for column, value in (("hall", hall), ("device", device)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = await self._rows(
            "SELECT device, COUNT(*), SUM(missing), MIN(opened_at) FROM rating_gaps "
            f"WHERE {' AND '.join(where)} GROUP BY device ORDER BY device", params)
        return {row[0]: tables.device_gaps(row) for row in rows}

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

    async def list_devices(self, *, hall: str | None = None, region: str | None = None,
                           presence: str | None = None, after: tuple[str, str] | None = None,
                           limit: int | None = None) -> list[DeviceRecord]:
        where, params = [], []
        for condition, value in (("d.hall = ?", hall), ("hl.region = ?", region),
                                 (f"{tables.PRESENCE_SQL} = ?", presence)):
            if value is not None:
                where.append(condition)
                params.append(value)
        if after is not None:
            where.append("(d.hall, d.device) > (?, ?)")
            params += after
        rows = await self._rows(
            f"SELECT {tables.DEVICE_COLUMNS}, {tables.DEVICE_HEALTH_COLUMNS}, "
            "(SELECT json_group_array(alert) FROM (SELECT a.alert FROM device_alerts a "
            " WHERE a.hall = d.hall AND a.device = d.device AND a.cleared_at IS NULL ORDER BY a.alert)) "
            f"FROM devices d {tables.DEVICE_JOINS} "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY d.hall, d.device LIMIT ?", [*params, -1 if limit is None else limit])
        return [tables.device_record(row[:-1], json.loads(row[-1])) for row in rows]

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

    # ------------------------------------------------------------------------ statistics

    async def stats(self, query: StatsQuery) -> list[StatsRow]:
        sql, params = rollups.query_sql(query, "?")
        return rollups.result_rows(query, await self._rows(sql, params))

    async def rebuild_stats(self) -> Rebuilt:
        return await self._write(sqlite_rollups.rebuild)

    async def counts(self) -> dict[str, int]:
        sql = " UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM {t}" for t in tables.COUNTED_TABLES)
        return {table: count for table, count in await self._rows(sql)}

    # ------------------------------------------------------------------------ the dashboard

    async def record_ledger_check(self, check: dashboard_sql.LedgerCheck) -> dashboard_sql.LedgerCheck:
        def work(conn: sqlite3.Connection) -> dashboard_sql.LedgerCheck:
            rows = _fetch(conn, dashboard_sql.insert_ledger_check_sql("?"), check.insert_row())
            return dashboard_sql.ledger_check(rows[0])
        return await self._write(work)

    # ------------------------------------------------------------------------ bad-review cases

    async def _case_tx(self, make: Callable[[], cases_sql.Tx[T]]) -> T:
        return await self._write(lambda conn: cases_sql.run_sqlite(conn, make()))
