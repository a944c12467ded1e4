"""The PostgreSQL backend: a pool of psycopg 3 async connections, one transaction per ingest batch.

For a region where one machine's SQLite file is not enough: several hubs (or one hub's concurrent
requests) write to one database at once, and each rating, service and report is still stored once.
- An ingest batch first locks the rows of the registered devices it names (`FOR NO KEY UPDATE`, in
  device order, so two batches never wait on each other in a circle), then looks up what it needs.
  Ratings, health snapshots and device alerts are only accepted for a registered device, so two
  batches naming one device run one after the other and the second sees the first's rows: one
  `accepted`, then `duplicate`. Batches of other devices (other halls) run side by side.
- The stored device alerts a batch names are read `FOR UPDATE`: a raise and its clear arriving at
  once merge into one row instead of one overwriting the other.
- What no lock covers (one service posted by two requests at once, a gateway alert id used again for
  another device) the unique keys catch: every insert is `ON CONFLICT DO NOTHING` and counts its
  rows. A row that another transaction stored first rolls the batch back and runs it again from the
  look-ups, so it is decided against what is stored now (`retries` counts these). Deadlocks and
  serialization failures are retried the same way.
Bulk writes: `executemany` for the keyed tables (psycopg pipelines it: one round trip for the whole
batch, rows in item order, so the identity columns keep the ingest order; its rowcount is the sum),
COPY for the append-only ones. Measured here for 500 ratings: executemany 12 ms; one INSERT from
`unnest` of per-column arrays 37 ms (psycopg's list adaptation); COPY into a temporary table and
INSERT … SELECT 10 ms, but with a CREATE TABLE per batch. Reads run on their own pooled connections
(autocommit): MVCC never shows them half a batch.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cache
from typing import Any, TypeVar

from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool

from hcp.protocol import Rating, key_id

from .. import ledger
from ..defaults import DEFAULT_COLUMNS, DefaultRating
from ..default_rules import DefaultRule
from ..ingest import DeviceAlertRow, DeviceKeys, IngestPlan, ItemResult, Lookups, ParsedItem, decide, lookups
from ..gaps import GapBook
from ..migrations import BACKFILLS, POSTGRES_MIGRATIONS, SCHEMA_VERSION_TABLE
from ..stats import Rebuilt, StatsQuery, StatsRow
from . import cases_sql, postgres_rollups, rollups, tables
from . import dashboard_sql
from .postgres_phone import PostgresPhone
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

POOL_MIN = 1  # one idle connection; more open as requests need them
POOL_MAX = 8  # per hub: a few hubs stay well under PostgreSQL's default max_connections (100)
CONNECT_TIMEOUT_S = 10  # an unreachable server fails the start with libpq's reason, not a hang
MAX_ATTEMPTS = 5  # an ingest batch that loses this many races in a row fails (the gateway retries)
RETRY_PAUSE_S = 0.005  # times the attempt number: lets the winner of a race commit
MIGRATION_LOCK = 0x6863_7068_7562  # "hcphub": advisory lock id, so two hubs starting at once migrate once
T = TypeVar("T")
RETRYABLE = (errors.UniqueViolation, errors.DeadlockDetected, errors.SerializationFailure)

# Ingest look-ups, in the order a batch runs them. Each is driven by the batch's keys:
# one index probe per key, never a scan of a table's history.
LOCK_DEVICES = "SELECT device FROM devices WHERE device = ANY(%s::text[]) ORDER BY device FOR NO KEY UPDATE"
LOAD_DEVICES = f"{tables.LOAD_DEVICES} WHERE d.device = ANY(%s::text[])"
LOAD_RATINGS = ("SELECT r.hall, r.device, r.n, r.boot, r.mono, r.session, r.score, r.kid, r.sig "
                "FROM unnest(%s::text[], %s::bigint[]) AS k(device, n) "
                "JOIN ratings r ON r.device = k.device AND r.n = k.n")
LOAD_SERVICES = "SELECT id, payload FROM services WHERE hall = %s AND id = ANY(%s::text[])"
LOAD_HEALTH = ("SELECT h.device, h.boot, h.up, h.payload "
               "FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS k(device, boot, up) "
               "JOIN device_health h ON h.hall = %s AND h.device = k.device AND h.boot = k.boot "
               "AND h.up = k.up")
LOAD_DEVICE_ALERTS = ("SELECT alert_id, device, window_id, alert, detail, raised_at, cleared_at, "
                      "raised_item, cleared_item FROM device_alerts "
                      "WHERE hall = %s AND alert_id = ANY(%s::bigint[]) ORDER BY alert_id FOR UPDATE")

# Counter gaps (hub/gaps.py): the batch's devices are locked (LOCK_DEVICES), so these rows are its own.
LOAD_COUNTERS = "SELECT device, high FROM rating_counters WHERE device = ANY(%s::text[])"
LOAD_HOLES = (f"SELECT {tables.HOLE_AND_GAP_COLUMNS} FROM unnest(%s::text[], %s::bigint[]) AS k(device, n) "
              "CROSS JOIN LATERAL (SELECT * FROM rating_gap_holes WHERE device = k.device AND first_n <= k.n "
              "                    ORDER BY first_n DESC LIMIT 1) AS h "
              "JOIN rating_gaps g ON g.device = h.device AND g.first_n = h.gap_first WHERE h.last_n >= k.n")
LOAD_GAP_HOLES = ("SELECT g.device, g.first_n, h.first_n, h.last_n "
                  "FROM unnest(%s::text[], %s::bigint[]) AS g(device, first_n) "
                  "CROSS JOIN LATERAL (SELECT first_n, last_n FROM rating_gap_holes "
                  "                    WHERE device = g.device AND gap_first = g.first_n "
                  "                    ORDER BY first_n LIMIT %s) AS h ORDER BY 1, 2, 3")

_UPDATE_DEVICE_ALERT_COLUMNS = ("window_id", "state", "detail", "cleared_at", "raised_item",
                                "cleared_item", "updated_at")


class _Raced(Exception):
    """Another transaction stored a row this batch decided was new: run the batch again."""


@cache
def _insert_sql(table: str, columns: str, conflict: str) -> str:
    """INSERT of one row; a row whose `conflict` key is stored is skipped (the caller counts)."""
    marks = ", ".join(["%s"] * len(tables.names(columns)))
    return f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT ({conflict}) DO NOTHING"


def _arrays(rows: Sequence[tuple]) -> list[list[Any]]:
    """Rows as one list per column (look-ups send their keys as arrays)."""
    return [list(column) for column in zip(*rows, strict=True)]


def _newest_per_device(rows: list[tuple]) -> list[tuple]:
    """HEALTH_LATEST rows reduced to the newest per (hall, device): by received_ms, boot, up."""
    newest: dict[tuple[str, str], tuple] = {}
    for row in rows:
        hall, device, boot, up, received_ms = row
        kept = newest.get((hall, device))
        if kept is None or (received_ms, boot, up) > (kept[4], kept[2], kept[3]):
            newest[(hall, device)] = row
    return [newest[key] for key in sorted(newest)]


def _matches_nothing(params: Sequence[Any]) -> bool:
    """A text with U+0000 equals nothing stored: PostgreSQL text cannot hold it (nor can ingest
    store it: hub.ingest rejects such items)."""
    return any(isinstance(value, str) and "\x00" in value for value in params)


class PostgresStore(PostgresPhone, HubStore):
    """`HubStore` on a PostgreSQL database (`dsn`: a libpq URL, `postgresql://user@host:port/db`).

    Tables go into the connection's current schema: `?options=-csearch_path%3Dname` picks another."""

    param = "%s"

    def __init__(self, dsn: str, *, max_connections: int = POOL_MAX):
        self.dsn = dsn
        self.max_connections = max_connections
        self.retries = 0  # ingest batches run again after losing a race (see the module docstring)
        self._pool: AsyncConnectionPool | None = None

    # ------------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        async with await AsyncConnection.connect(self.dsn, autocommit=True,
                                                 connect_timeout=CONNECT_TIMEOUT_S) as conn:
            await self._migrate(conn)
        pool = AsyncConnectionPool(self.dsn, min_size=POOL_MIN, max_size=self.max_connections,
                                   kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
                                   connection_class=AsyncConnection,
                                   check=AsyncConnectionPool.check_connection, open=False,
                                   name="hub")
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        async with self._transaction() as conn:  # a migration added or changed the rollups
            await postgres_rollups.rebuild_if_requested(conn)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()  # waits for connections in use: a running batch commits first

    async def _migrate(self, conn: AsyncConnection) -> None:
        schema = await self._value(conn, "SELECT current_schema()")
        if schema is None:
            raise RuntimeError("PostgreSQL: no schema to create the hub's tables in "
                               "(the search_path names none that exists)")
        newest = len(POSTGRES_MIGRATIONS)
        for version, script in enumerate(POSTGRES_MIGRATIONS, start=1):
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                await conn.execute(SCHEMA_VERSION_TABLE)
                current = await self._value(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
                if current > newest:
                    raise RuntimeError(f"PostgreSQL schema {schema}: schema version {current} is "
                                       f"newer than this hub knows ({newest}): upgrade the hub")
                if current < version:
                    await conn.execute(script)  # no parameters: several statements in one go
                    if BACKFILLS.get(version) == "ledger":
                        await self._backfill_ledger(conn)
                    await conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                                       (version, tables.now()))

    @staticmethod
    async def _value(conn: AsyncConnection, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await (await conn.execute(sql, params)).fetchone()
        return None if row is None else row[0]

    def _open_pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in a transaction: committed at the end, rolled back on any error."""
        async with self._open_pool().connection() as conn, conn.transaction():
            yield conn

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        if _matches_nothing(params):
            return []
        async with self._open_pool().connection() as conn:
            return await (await conn.execute(sql, params)).fetchall()

    async def schema_version(self) -> int:
        return (await self._rows("SELECT COALESCE(MAX(version), 0) FROM schema_version"))[0][0]

    async def _write_statements(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        results = []
        async with self._transaction() as conn:
            for sql, params in statements:
                cursor = await conn.execute(sql, params)
                results.append(await cursor.fetchall() if cursor.description else [])
        return results

    # ------------------------------------------------------------------------ registration

    async def register_gateway(self, hall: str, token_sha256: str, key: bytes) -> None:
        now = tables.now()
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO gateways (hall, token_sha256, key_hex, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (hall) DO UPDATE SET "
                "token_sha256 = excluded.token_sha256, key_hex = excluded.key_hex, "
                "updated_at = excluded.updated_at",
                (hall, token_sha256, key.hex(), now, now))

    async def gateway_by_token_hash(self, token_sha256: str) -> GatewayRecord | None:
        rows = await self._rows(
            "SELECT hall, token_sha256, key_hex, created_at, updated_at FROM gateways "
            "WHERE token_sha256 = %s", (token_sha256,))
        if not rows:
            return None
        hall, token_hash, key_hex, created_at, updated_at = rows[0]
        return GatewayRecord(hall, token_hash, bytes.fromhex(key_hex), created_at, updated_at)

    async def register_device(self, device: str, hall: str, window: str, key: bytes) -> str:
        kid, now = key_id(key), tables.now()
        async with self._transaction() as conn:
            # The upsert locks the device's row first: registrations of one device run one at a time.
            await conn.execute(
                tables.REGISTER_DEVICE_SQL.format(p="%s"), (device, hall, window, now, now))
            stored = await self._value(conn, "SELECT key_hex FROM device_keys WHERE device = %s AND kid = %s",
                                       (device, kid))
            if stored is not None and stored != key.hex():
                raise KeyIdCollision(f"device {device} already has another key with kid {kid}")
            if stored is not None:
                await conn.execute("UPDATE device_keys SET retired_at = NULL WHERE device = %s AND kid = %s",
                                   (device, kid))
            else:
                await conn.execute(
                    "INSERT INTO device_keys (device, kid, key_hex, registered_at) VALUES (%s, %s, %s, %s)",
                    (device, kid, key.hex(), now))
            await conn.execute("UPDATE device_keys SET retired_at = %s "
                               "WHERE device = %s AND kid != %s AND retired_at IS NULL", (now, device, kid))
        return kid

    async def retire_device(self, device: str) -> RetiredDevice | None:
        async with self._transaction() as conn:
            await conn.execute(tables.RETIRE_DEVICE_SQL.format(p="%s"), (now := tables.now(), now, device))
            rows = await (await conn.execute(tables.RETIRED_DEVICE_SQL.format(p="%s"), (device,))).fetchall()
        return RetiredDevice(*rows[0]) if rows else None

    # ------------------------------------------------------------------------ regions and halls

    async def put_region(self, region: str, *, name: str, area_code: str | None,
                         default_rule: DefaultRule) -> RegionRecord:
        now = tables.now()
        async with self._transaction() as conn:
            row = await (await conn.execute(
                f"INSERT INTO regions ({tables.REGION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (region) DO UPDATE SET name = excluded.name, area_code = excluded.area_code, "
                "default_rule = excluded.default_rule, updated_at = excluded.updated_at "
                f"RETURNING {tables.REGION_COLUMNS}",
                (region, name, area_code, tables.rule_json(default_rule), now, now))).fetchone()
        return tables.region_record(row)

    async def get_region(self, region: str) -> RegionRecord | None:
        rows = await self._rows(f"SELECT {tables.REGION_COLUMNS} FROM regions WHERE region = %s", (region,))
        return tables.region_record(rows[0]) if rows else None

    async def list_regions(self) -> list[RegionRecord]:
        rows = await self._rows(f'SELECT {tables.REGION_COLUMNS} FROM regions ORDER BY region COLLATE "C"')
        return [tables.region_record(row) for row in rows]

    async def put_hall(self, hall: str, *, region: str, name: str | None = None) -> HallRecord:
        async with self._transaction() as conn:
            # FOR KEY SHARE: the region cannot go away before the hall row refers to it
            if await self._value(conn, "SELECT 1 FROM regions WHERE region = %s FOR KEY SHARE",
                                 (region,)) is None:
                raise UnknownRegion(f"no region {region}")
            row = await (await conn.execute(
                f"INSERT INTO halls ({tables.HALL_COLUMNS}) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (hall) DO UPDATE SET region = excluded.region, name = excluded.name, "
                f"updated_at = excluded.updated_at RETURNING {tables.HALL_COLUMNS}",
                (hall, region, name, tables.now()))).fetchone()
        return tables.hall_record(row)

    async def hall_region(self, hall: str) -> RegionRecord | None:
        columns = ", ".join(f"r.{c}" for c in tables.names(tables.REGION_COLUMNS))
        rows = await self._rows(f"SELECT {columns} FROM halls hl JOIN regions r ON r.region = hl.region "
                                "WHERE hl.hall = %s", (hall,))
        return tables.region_record(rows[0]) if rows else None

    async def halls(self, *, region: str | None = None) -> list[HallRecord]:
        where, params = ("WHERE region = %s", [region]) if region is not None else ("", [])
        rows = await self._rows(f'SELECT {tables.HALL_COLUMNS} FROM halls {where} ORDER BY hall COLLATE "C"',
                                params)
        return [tables.hall_record(row) for row in rows]

    # ------------------------------------------------------------------------ ingest

    async def _ingest_parsed(self, hall: str, items: Sequence[ParsedItem]) -> list[ItemResult]:
        needed = lookups(items)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._transaction() as conn:
                    return await self._ingest_once(conn, hall, items, needed)
            except (_Raced, *RETRYABLE) as exc:
                self.retries += 1
                if attempt == MAX_ATTEMPTS:
                    raise RuntimeError(f"a batch of hall {hall} lost {attempt} races in a row: "
                                       f"{exc}") from exc
                await asyncio.sleep(RETRY_PAUSE_S * attempt)
        raise AssertionError("unreachable")

    async def _ingest_once(self, conn: AsyncConnection, hall: str, items: Sequence[ParsedItem],
                           needed: Lookups) -> list[ItemResult]:
        if needed.devices:
            await conn.execute(LOCK_DEVICES, (sorted(needed.devices),))
        devices = await self._load_devices(conn, needed.devices)
        stored_ratings = await self._load_ratings(conn, needed.ratings)
        stored_services = await self._load_services(conn, hall, needed.services)
        stored_health = await self._load_health(conn, hall, needed.health)
        stored_alerts = await self._load_device_alerts(conn, hall, needed.alerts)
        existing_alerts = set(stored_alerts)  # decide adds the new ones to the map
        plan = decide(items, devices, stored_ratings, stored_services, stored_health, stored_alerts)
        # Before the plan: it reads what was stored before the batch, and takes the ledger head
        # lock (postgres_rollups.py) before any insert, so that lock and the inserts' row locks are
        # taken in the same order by every batch.
        await postgres_rollups.count_ingest(conn, hall, plan)
        now = tables.now()
        await self._write_plan(conn, hall, plan, now, existing_alerts)
        await self._write_gaps(conn, plan, now)
        await cases_sql.run_pg(conn, cases_sql.open_cases(  # a case for each bad rating (hub/cases.py)
            sources_from_plan(plan), self.calendar_for_cases(), datetime.fromisoformat(now)))
        return plan.results

    async def _load_devices(self, conn: AsyncConnection, ids: set[str]) -> dict[str, DeviceKeys]:
        if not ids:
            return {}
        rows = await (await conn.execute(LOAD_DEVICES, (sorted(ids),))).fetchall()
        return tables.device_keys(rows)

    async def _load_ratings(self, conn: AsyncConnection,
                            keys: set[tuple[str, int]]) -> dict[tuple[str, int], Rating]:
        if not keys:
            return {}
        devices, numbers = _arrays(sorted(keys))
        rows = await (await conn.execute(LOAD_RATINGS, (devices, numbers))).fetchall()
        return {(device, n): Rating(hall, device, n, boot, mono, session, score, kid, sig)
                for hall, device, n, boot, mono, session, score, kid, sig in rows}

    async def _load_services(self, conn: AsyncConnection, hall: str, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = await (await conn.execute(LOAD_SERVICES, (hall, sorted(ids)))).fetchall()
        return dict(rows)

    async def _load_health(self, conn: AsyncConnection, hall: str,
                           keys: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], str]:
        if not keys:
            return {}
        devices, boots, ups = _arrays(sorted(keys))
        rows = await (await conn.execute(LOAD_HEALTH, (devices, boots, ups, hall))).fetchall()
        return {(device, boot, up): payload for device, boot, up, payload in rows}

    async def _load_device_alerts(self, conn: AsyncConnection, hall: str,
                                  ids: set[int]) -> dict[int, DeviceAlertRow]:
        if not ids:
            return {}
        rows = await (await conn.execute(LOAD_DEVICE_ALERTS, (hall, sorted(ids)))).fetchall()
        return {row[0]: DeviceAlertRow(*row) for row in rows}

    async def _write_plan(self, conn: AsyncConnection, hall: str, plan: IngestPlan, now: str,
                          existing_alerts: set[int]) -> None:
        """Write the plan; `existing_alerts`: the alert ids that were stored (and are locked)."""
        rating_rows = tables.rating_rows(plan, now)
        service_rows = sorted(tables.service_rows(plan, now), key=lambda row: row[1])
        await self._insert(conn, "ratings", tables.RATING_INSERT_COLUMNS, rating_rows, conflict="device, n")
        await self._insert(conn, "services", tables.SERVICE_COLUMNS, service_rows, conflict="hall, id")
        await self._append_ledger(conn, tables.ledger_pending(rating_rows, service_rows), now)
        await self._insert(conn, "device_health", tables.HEALTH_INSERT_COLUMNS,
                           tables.health_rows(plan, now), conflict="hall, device, boot, up")
        latest = _newest_per_device(tables.health_latest_rows(plan))
        if latest:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    f"INSERT INTO device_health_latest ({tables.HEALTH_LATEST_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (hall, device) DO UPDATE SET "
                    "boot = excluded.boot, up = excluded.up, received_ms = excluded.received_ms "
                    "WHERE (excluded.received_ms, excluded.boot, excluded.up) > "
                    "(device_health_latest.received_ms, device_health_latest.boot, device_health_latest.up)",
                    latest)
        alert_rows = sorted(tables.device_alert_rows(hall, plan, now), key=lambda row: row[1])
        await self._insert(conn, "device_alerts", tables.DEVICE_ALERT_INSERT_COLUMNS,
                           [row for row in alert_rows if row[1] not in existing_alerts],
                           conflict="hall, alert_id")
        await self._update_device_alerts(conn, hall, [row for row in alert_rows if row[1] in existing_alerts])
        await self._copy(conn, "rejections", tables.REJECTION_COLUMNS, tables.rejection_rows(hall, plan, now))
        await self._copy(conn, "alerts", tables.ALERT_COLUMNS, tables.alert_rows(hall, plan, now))

    async def _backfill_ledger(self, conn: AsyncConnection, chunk: int = 10_000) -> None:
        """The migration that adds the ledger chains the records stored before it: ratings in
        ingest order, then services in the order they were stored."""
        now = tables.now()
        rating_columns = ", ".join(f"r.{c}" for c in tables.RATING_RECORD_NAMES)
        after = 0
        while rows := await (await conn.execute(
                f"SELECT r.seq, {rating_columns} FROM ratings r WHERE r.seq > %s ORDER BY r.seq LIMIT %s",
                (after, chunk))).fetchall():
            after = rows[-1][0]
            await self._append_ledger(conn, tables.ledger_pending([tuple(row[1:]) for row in rows], []), now)
        services = await (await conn.execute(
            f"SELECT {tables.SERVICE_COLUMNS} FROM services ORDER BY ingested_at, hall, id")).fetchall()
        for start in range(0, len(services), chunk):
            await self._append_ledger(conn, tables.ledger_pending([], services[start:start + chunk]), now)

    async def _append_ledger(self, conn: AsyncConnection, pending: list[ledger.Pending], now: str) -> None:
        """Chain `pending` after the ledger's head. The head row is locked until the batch commits:
        batches of different halls, which otherwise run side by side, take their ledger seqs one
        after the other, so the chain has no gaps and no forks. Already locked by the time this runs
        (postgres_rollups.lock_writers, after the device locks and before any insert), so no two
        batches wait on each other in a circle; locking it again is a no-op."""
        if not pending:
            return
        seq, head_hash = (await (await conn.execute(
            "SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE")).fetchall())[0]
        entries = ledger.append(ledger.Head(seq, head_hash), pending, now)
        await self._copy(conn, "ledger", tables.LEDGER_COLUMNS, tables.ledger_rows(entries))
        await conn.execute("UPDATE ledger_head SET seq = %s, hash = %s WHERE id = 1",
                           (entries[-1].seq, entries[-1].hash))

    async def _insert(self, conn: AsyncConnection, table: str, columns: str, rows: list[tuple], *,
                      conflict: str) -> None:
        """Insert `rows` (tuples in `columns` order), in order. A row whose `conflict` key another
        transaction stored since the look-ups raises _Raced: the batch runs again."""
        if not rows:
            return
        async with conn.cursor() as cursor:
            await cursor.executemany(_insert_sql(table, columns, conflict), rows)
            if cursor.rowcount != len(rows):
                raise _Raced(f"{len(rows) - cursor.rowcount} of {len(rows)} new {table} rows were "
                             "stored meanwhile")

    async def _update_device_alerts(self, conn: AsyncConnection, hall: str, rows: list[tuple]) -> None:
        """The new state of stored alert rows (locked by the look-up, so every one is there)."""
        if not rows:
            return
        index = {name: i for i, name in enumerate(tables.names(tables.DEVICE_ALERT_INSERT_COLUMNS))}
        assignments = ", ".join(f"{name} = %s" for name in _UPDATE_DEVICE_ALERT_COLUMNS)
        changes = [(*(row[index[name]] for name in _UPDATE_DEVICE_ALERT_COLUMNS), hall,
                    row[index["alert_id"]]) for row in rows]
        async with conn.cursor() as cursor:
            await cursor.executemany(
                f"UPDATE device_alerts SET {assignments} WHERE hall = %s AND alert_id = %s", changes)
            if cursor.rowcount != len(rows):
                raise _Raced(f"device_alerts: {len(rows) - cursor.rowcount} locked rows went missing")

    async def _copy(self, conn: AsyncConnection, table: str, columns: str, rows: list[tuple]) -> None:
        """Append `rows` with COPY (append-only tables: nothing to conflict with), in order."""
        if not rows:
            return
        async with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)

    # ------------------------------------------------------------------------ default ratings

    async def _store_defaults(self, records: Sequence[DefaultRating],
                              alerts: Sequence[tuple[str, str | None, str, str]]) -> int:
        async with self._transaction() as conn:
            now = tables.now()
            # The ledger head first: every writer of ratings and defaults holds it until it
            # commits, so the re-check below sees every binding and default stored before.
            await conn.execute("SELECT seq FROM ledger_head WHERE id = 1 FOR UPDATE")
            for alert in alerts:
                await conn.execute(tables.HUB_ALERT_ONCE_SQL.format(p="%s"), tables.hub_alert_params(now, alert))
            fresh = []
            for r in records:
                (defaulted, rated), = await (await conn.execute(tables.DEFAULT_RECHECK_SQL.format(p="%s"),
                                                                (r.hall, r.service) * 3)).fetchall()
                if not defaulted and not rated:
                    fresh.append(r)
            await postgres_rollups.count_defaults(conn, [(r.hall, r.service) for r in fresh])
            await self._insert(conn, "default_ratings", DEFAULT_COLUMNS, [r.row() for r in fresh],
                               conflict="hall, service")
            await self._append_ledger(conn, [ledger.Pending("default", r.hall, r.service, r.record())
                                             for r in fresh], now)
            return len(fresh)

    # ------------------------------------------------------------------------ the ledger

    async def _ledger_records(self, entries: Sequence[ledger.Entry]) -> dict[tuple[str, str, str], dict]:
        found: dict[tuple[str, str, str], dict] = {}
        rating_keys = sorted({key for e in entries if e.kind == "rating"
                              if (key := tables.parse_rating_ref(e.ref)) is not None})
        if rating_keys:
            columns = ", ".join(f"r.{c}" for c in tables.RATING_RECORD_NAMES)
            devices, numbers = _arrays(rating_keys)
            for row in await self._rows(
                    f"SELECT {columns} FROM unnest(%s::text[], %s::bigint[]) AS k(device, n) "
                    "JOIN ratings r ON r.device = k.device AND r.n = k.n", (devices, numbers)):
                record = tables.rating_record(row)
                found[("rating", record["hall"], tables.rating_ref(record["device"], record["n"]))] = record
        for kind, table, id_column, names, to_record in (
                ("service", "services", "id", tables.SERVICE_RECORD_NAMES, tables.service_record),
                ("default", "default_ratings", "service", tables.DEFAULT_RECORD_NAMES, tables.default_record)):
            keys = sorted({(e.hall, e.ref) for e in entries if e.kind == kind})
            if not keys:
                continue
            columns = ", ".join(f"t.{c}" for c in names)
            halls, ids = _arrays(keys)
            for row in await self._rows(
                    f"SELECT {columns} FROM unnest(%s::text[], %s::text[]) AS k(hall, id) "
                    f"JOIN {table} t ON t.hall = k.hall AND t.{id_column} = k.id", (halls, ids)):
                record = to_record(row)
                found[(kind, record["hall"], record[id_column])] = record
        found.update(await self._phone_ledger_records(entries))
        return found

    # ------------------------------------------------------------------------ counter gaps

    async def _write_gaps(self, conn: AsyncConnection, plan: IngestPlan, now: str) -> None:
        """Move the counters of the batch's accepted ratings (hub/gaps.py), in its transaction:
        one look-up and one upsert per batch for in-order ratings, plus one seek per late one."""
        arrivals = tables.gap_arrivals(plan)
        if not arrivals:
            return
        devices = sorted({device for device, _, _ in arrivals})
        highs = dict(await (await conn.execute(LOAD_COUNTERS, (devices,))).fetchall())
        late = sorted({(device, n) for device, n, _ in arrivals if n <= highs.get(device, 0)})
        rows = await (await conn.execute(LOAD_HOLES, _arrays(late))).fetchall() if late else []
        holes, gaps = tables.holes_and_gaps(rows)
        book = GapBook(highs, holes, gaps)
        for device, n, hall in arrivals:
            book.arrive(device, n, hall, now)
        changes = book.changes()
        async with conn.cursor() as cursor:
            if changes.highs:
                await cursor.executemany(
                    f"INSERT INTO rating_counters ({tables.COUNTER_COLUMNS}) VALUES (%s, %s, %s) "
                    "ON CONFLICT (device) DO UPDATE SET high = excluded.high, updated_at = excluded.updated_at",
                    tables.counter_rows(changes, now))
            if changes.holes_removed:
                await cursor.executemany("DELETE FROM rating_gap_holes WHERE device = %s AND first_n = %s",
                                         changes.holes_removed)
            if changes.opened:
                await cursor.executemany(
                    f"INSERT INTO rating_gaps ({tables.GAP_COLUMNS}) VALUES ({', '.join(['%s'] * 7)})",
                    tables.gap_rows(changes.opened))
            if changes.updated:
                await cursor.executemany("UPDATE rating_gaps SET missing = %s, closed_at = %s "
                                         "WHERE device = %s AND first_n = %s",
                                         tables.gap_update_rows(changes.updated))
            if changes.holes_added:
                await cursor.executemany(
                    f"INSERT INTO rating_gap_holes ({tables.HOLE_COLUMNS}) VALUES (%s, %s, %s, %s)",
                    tables.hole_rows(changes))

    async def list_gaps(self, *, hall: str | None = None, device: str | None = None,
                        state: str = "open", limit: int = 100) -> list[StoredGap]:
        where, params = [], []
        for column, value in (("hall", hall), ("device", device)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if tables.GAP_STATES[state] is not None:
            where.append(tables.GAP_STATES[state])
        rows = await self._rows(
            f"SELECT {tables.GAP_COLUMNS} FROM rating_gaps {'WHERE ' + ' AND '.join(where) if where else ''} "
            'ORDER BY opened_at DESC, device COLLATE "C", first_n DESC LIMIT %s', [*params, limit])
        holes: dict[tuple[str, int], list[tuple[int, int]]] = {}
        open_keys = [(row[0], row[1]) for row in rows if row[6] is None]
        if open_keys:
            for gap_device, gap_first, first, last in await self._rows(
                    LOAD_GAP_HOLES, [*_arrays(open_keys), tables.HOLES_SHOWN]):
                holes.setdefault((gap_device, gap_first), []).append((first, last))
        return [tables.stored_gap(row, holes.get((row[0], row[1]), ())) for row in rows]

    async def open_gaps(self, *, hall: str | None = None,
                        device: str | None = None) -> dict[str, DeviceGaps]:
        where, params = ["closed_at IS NULL"], []
        for column, value in (("hall", hall), ("device", device)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        rows = await self._rows(
            "SELECT device, COUNT(*), SUM(missing), MIN(opened_at) FROM rating_gaps "
            f'WHERE {" AND ".join(where)} GROUP BY device ORDER BY device COLLATE "C"', params)
        return {row[0]: tables.device_gaps(row) for row in rows}

    # ------------------------------------------------------------------------ reads

    async def get_rating(self, device: str, n: int) -> StoredRating | None:
        rows = await self._rows(f"SELECT {tables.RATING_COLUMNS} FROM ratings WHERE device = %s AND n = %s",
                                (device, n))
        return tables.stored_rating(rows[0]) if rows else None

    async def list_ratings(self, *, hall: str | None = None, device: str | None = None,
                           window: str | None = None, ticket: str | None = None,
                           limit: int = 100) -> list[StoredRating]:
        where, params = [], []
        for column, value in (("hall", hall), ("device", device), ("window_id", window),
                              ("ticket", ticket)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        sql = f"SELECT {tables.RATING_COLUMNS} FROM ratings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._rows(sql + " ORDER BY seq DESC LIMIT %s", [*params, limit])
        return [tables.stored_rating(row) for row in rows]

    async def list_devices(self, *, hall: str | None = None, region: str | None = None,
                           presence: str | None = None, after: tuple[str, str] | None = None,
                           limit: int | None = None) -> list[DeviceRecord]:
        where, params = [], []
        for condition, value in (("d.hall = %s", hall), ("hl.region = %s", region),
                                 (f"{tables.PRESENCE_SQL} = %s", presence)):
            if value is not None:
                where.append(condition)
                params.append(value)
        if after is not None:
            where.append('(d.hall COLLATE "C", d.device COLLATE "C") > (%s, %s)')
            params += after
        rows = await self._rows(  # COLLATE "C": byte order, as SQLite sorts text
            f"SELECT {tables.DEVICE_COLUMNS}, {tables.DEVICE_HEALTH_COLUMNS}, "
            "ARRAY(SELECT a.alert COLLATE \"C\" FROM device_alerts a WHERE a.hall = d.hall "
            "      AND a.device = d.device AND a.cleared_at IS NULL ORDER BY 1) "
            f"FROM devices d {tables.DEVICE_JOINS} "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            'ORDER BY d.hall COLLATE "C", d.device COLLATE "C" LIMIT %s', [*params, limit])
        return [tables.device_record(row[:-1], row[-1]) for row in rows]

    async def health_history(self, *, hall: str, device: str, limit: int = 100) -> list[StoredHealth]:
        rows = await self._rows(
            f"SELECT {tables.HEALTH_COLUMNS} FROM device_health WHERE hall = %s AND device = %s "
            "ORDER BY received_ms DESC, boot DESC, up DESC LIMIT %s", (hall, device, limit))
        return [tables.stored_health(row) for row in rows]

    async def device_alerts(self, *, hall: str, device: str | None = None, state: str | None = None,
                            limit: int = 100) -> list[StoredDeviceAlert]:
        where, params = ["hall = %s"], [hall]
        for column, value in (("device", device), ("state", state)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        rows = await self._rows(
            f"SELECT {tables.DEVICE_ALERT_COLUMNS} FROM device_alerts WHERE {' AND '.join(where)} "
            "ORDER BY alert_id DESC LIMIT %s", [*params, limit])
        return [tables.stored_device_alert(row) for row in rows]

    async def rejection_summary(self, *, hall: str | None = None, limit: int = 50) -> RejectionSummary:
        where, params = ("WHERE hall = %s", [hall]) if hall is not None else ("", [])
        by_reason = {reason: count for reason, count in await self._rows(
            f"SELECT reason, COUNT(*) FROM rejections {where} GROUP BY reason ORDER BY reason COLLATE \"C\"",
            params)}
        recent = [RejectionRecord(*row) for row in await self._rows(
            f"SELECT {tables.REJECTION_COLUMNS} FROM rejections {where} ORDER BY id DESC LIMIT %s",
            [*params, limit])]
        return RejectionSummary(sum(by_reason.values()), by_reason, recent)

    async def alerts(self, *, kind: str | None = None, limit: int = 100) -> list[AlertRecord]:
        where, params = ("WHERE kind = %s", [kind]) if kind is not None else ("", [])
        rows = await self._rows(
            f"SELECT {tables.ALERT_COLUMNS} FROM alerts {where} ORDER BY id DESC LIMIT %s", [*params, limit])
        return [AlertRecord(at, k, hall, key, json.loads(detail)) for at, k, hall, key, detail in rows]

    # ------------------------------------------------------------------------ statistics

    async def stats(self, query: StatsQuery) -> list[StatsRow]:
        sql, params = rollups.query_sql(query, "%s")
        return rollups.result_rows(query, await self._rows(sql, params))

    async def rebuild_stats(self) -> Rebuilt:
        async with self._transaction() as conn:
            return await postgres_rollups.rebuild(conn)

    async def counts(self) -> dict[str, int]:
        sql = " UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM {t}" for t in tables.COUNTED_TABLES)
        return {table: count for table, count in await self._rows(sql)}

    # ------------------------------------------------------------------------ the dashboard

    async def record_ledger_check(self, check: dashboard_sql.LedgerCheck) -> dashboard_sql.LedgerCheck:
        async with self._transaction() as conn:
            row = await (await conn.execute(dashboard_sql.insert_ledger_check_sql("%s"),
                                            check.insert_row())).fetchone()
        return dashboard_sql.ledger_check(row)

    # ------------------------------------------------------------------------ bad-review cases

    async def _case_tx(self, make: Callable[[], cases_sql.Tx[T]]) -> T:
        """`make()`'s transaction; run again from the start after a lost race (as ingest)."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._transaction() as conn:
                    return await cases_sql.run_pg(conn, make())
            except RETRYABLE:
                self.retries += 1
                if attempt == MAX_ATTEMPTS:
                    raise
                await asyncio.sleep(RETRY_PAUSE_S * attempt)
        raise AssertionError("unreachable")
