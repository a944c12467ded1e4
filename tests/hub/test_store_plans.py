"""Ingest's look-ups stay index seeks as the hub's tables grow: every SELECT an ingest batch runs
is traced and its query plan checked, on SQLite and on PostgreSQL. A scan of `ratings` per batch
made a 1M-item backlog drain slow down five times over (bench/gateway_drain.py)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import AsyncConnection

from hcp.protocol import sign_rating
from hub.store import PostgresStore, SQLiteStore
from tests.fixtures.hub import rating_item, service_item

from .conftest import alert_item, device_key, health_item

pytestmark = pytest.mark.anyio

BIG_TABLES = ("ratings", "services", "rejections")


def batch(first: int) -> list:
    items = [rating_item(sign_rating(device_key(dev), "H1", dev, n, 1, n, None, 4))
             for n in range(first, first + 5) for dev in ("D1", "D2")]
    return items + [service_item(f"{first:016x}")]


async def test_an_ingest_batch_seeks_and_never_scans_the_big_tables(tmp_path):
    async with SQLiteStore(tmp_path / "hub.sqlite3") as store:
        await _sqlite_batch_seeks(store)


async def _sqlite_batch_seeks(store: SQLiteStore) -> None:
    for dev in ("D1", "D2"):
        await store.register_device(dev, "H1", "7", device_key(dev))
    await store.ingest("H1", batch(1))
    statements: list[str] = []
    conn = store._w._conn  # the writer's sqlite3 connection under aiosqlite
    await store._w._execute(conn.set_trace_callback, statements.append)
    try:
        await store.ingest("H1", batch(1) + batch(6))  # duplicates and new ones
    finally:
        await store._w._execute(conn.set_trace_callback, None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")
               and any(t in s for t in BIG_TABLES)]
    assert selects, statements
    for sql in selects:
        plan = [row[3] for row in await store._w.execute_fetchall("EXPLAIN QUERY PLAN " + sql)]
        scans = [p for p in plan if p.split(" USING ")[0] in {f"SCAN {t}" for t in BIG_TABLES}
                 or any(p == f"SCAN {a}" for a in ("r", "s"))]
        assert not scans, f"{sql}\n{plan}"


# PostgreSQL: the planner takes a sequential scan of a table this small whatever the query, so each
# statement is explained with sequential scans priced out: one still chosen means no index serves it.
PG_TABLES = ("ratings", "services", "device_health", "device_health_latest", "device_alerts",
             "devices", "device_keys")


def seq_scans(plan: dict | list) -> Iterator[str]:
    """The relations an EXPLAIN (FORMAT JSON) plan reads by sequential scan."""
    if isinstance(plan, list):
        for node in plan:
            yield from seq_scans(node)
    elif isinstance(plan, dict):
        if plan.get("Node Type") == "Seq Scan":
            yield plan["Relation Name"]
        for value in plan.values():
            if isinstance(value, dict | list):
                yield from seq_scans(value)


async def test_postgres_ingest_and_reads_can_seek_on_every_table(pg_server, monkeypatch):
    traced: list[tuple[str, object]] = []
    original = AsyncConnection.execute

    async def execute(self, query, params=None, **kwargs):
        traced.append((query, params))
        return await original(self, query, params, **kwargs)

    with pg_server.schema() as url:
        async with PostgresStore(url) as store:
            for dev in ("D1", "D2"):
                await store.register_device(dev, "H1", "7", device_key(dev))
            reports = [health_item(dev, up=up) for dev in ("D1", "D2") for up in (1, 2)]
            reports += [alert_item(i, device="D1") for i in (1, 2)]
            await store.ingest("H1", batch(1) + reports)
            monkeypatch.setattr(AsyncConnection, "execute", execute)
            await store.ingest("H1", batch(1) + batch(6) + reports + [alert_item(2, "cleared", device="D1")])
            await store.list_devices(hall="H1")
            await store.health_history(hall="H1", device="D1")
            await store.device_alerts(hall="H1", state="raised")
            await store.list_ratings(hall="H1", window="7")
            await store.list_ratings(device="D1")
            await store.list_ratings(ticket="A1")
            await store.get_rating("D1", 1)
            monkeypatch.undo()
        selects = [(query, params) for query, params in traced if query.lstrip().upper().startswith("SELECT")
                   and any(table in query for table in PG_TABLES)]
        assert len(selects) >= 12, traced
        with psycopg.connect(url) as db:
            db.execute("SET enable_seqscan = off")
            for query, params in selects:
                [(plan,)] = db.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchall()
                scanned = [table for table in seq_scans(plan) if table in PG_TABLES]
                assert not scanned, f"{query}\n{plan}"
