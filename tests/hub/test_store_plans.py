"""Ingest's look-ups stay index seeks as the hub's tables grow: every SELECT an ingest batch runs
is traced and its query plan checked, on SQLite and on PostgreSQL. A scan of `ratings` per batch
made a 1M-item backlog drain slow down five times over (bench/gateway_drain.py)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import AsyncConnection

from hcp.protocol import sign_rating
from hub.default_rules import DefaultRule
from hub.store import HubStore, PostgresStore, SQLiteStore
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


# ---------------------------------------------------------------------------- the devices overview
# GET /api/v1/devices reads every device of a region: one statement per call whatever the number of
# devices (no query per device), each device's health and open alerts found by index seeks (the
# health history grows by about 290 rows a device a day), and a page an ordered walk of the devices.

OVERVIEW_CALLS = ({}, {"hall": "H1"}, {"region": "R1"}, {"presence": "offline"},
                  {"after": ("H1", "D1"), "limit": 5}, {"region": "R1", "presence": "online", "limit": 1})


async def overview_fleet(store: HubStore) -> None:
    await store.put_region("R1", name="一区", area_code=None, default_rule=DefaultRule("calendar_days", 7))
    await store.put_hall("H1", region="R1")
    for dev in ("D1", "D2", "D3"):
        await store.register_device(dev, "H1", "7", device_key(dev))
    await store.ingest("H1", [health_item(dev, up=up) for dev in ("D1", "D2") for up in (1, 2, 3)]
                       + [alert_item(1, device="D1", alert="offline"), alert_item(2, device="D2")])


async def overview_reads(store: HubStore) -> int:
    """Every read of the overview and of regions and halls; -> how many calls."""
    for filters in OVERVIEW_CALLS:
        await store.list_devices(**filters)
    await store.list_regions()
    await store.get_region("R1")
    await store.halls()
    await store.halls(region="R1")
    await store.hall_region("H1")
    return len(OVERVIEW_CALLS) + 5


async def test_the_devices_overview_is_one_statement_of_seeks_on_sqlite(tmp_path):
    async with SQLiteStore(tmp_path / "hub.sqlite3") as store:
        await overview_fleet(store)
        traced: list[str] = []
        reader = store._r
        await reader._execute(reader._conn.set_trace_callback, traced.append)
        try:
            calls = await overview_reads(store)
        finally:
            await reader._execute(reader._conn.set_trace_callback, None)
        assert len(traced) == calls, traced
        for sql in traced:
            plan = [row[3] for row in await store._w.execute_fetchall("EXPLAIN QUERY PLAN " + sql)]
            # A whole listing walks devices (or regions, halls) in index order: that is the read itself.
            # Anything else, the health history and the alerts above all, is a SEARCH.
            scans = [line for line in plan if line.startswith("SCAN ") and not line.startswith(
                ("SCAN d USING INDEX devices_hall", "SCAN (subquery", "SCAN regions USING INDEX",
                 "SCAN halls USING INDEX"))]
            assert not scans, f"{sql}\n{plan}"
            if "FROM devices d" in sql and "hl.region =" not in sql:  # a region's devices come hall by hall
                assert "USE TEMP B-TREE FOR ORDER BY" not in plan, f"{sql}\n{plan}"


async def test_the_devices_overview_can_seek_on_every_table_on_postgres(pg_server, monkeypatch):
    traced: list[tuple[str, object]] = []
    original = AsyncConnection.execute

    async def execute(self, query, params=None, **kwargs):
        traced.append((query, params))
        return await original(self, query, params, **kwargs)

    with pg_server.schema() as url:
        async with PostgresStore(url) as store:
            await overview_fleet(store)
            monkeypatch.setattr(AsyncConnection, "execute", execute)
            calls = await overview_reads(store)
            monkeypatch.undo()
        traced = [(query, params) for query, params in traced if query]  # the pool's checks: ""
        assert len(traced) == calls, traced
        with psycopg.connect(url) as db:
            db.execute("SET enable_seqscan = off")
            for query, params in traced:
                [(plan,)] = db.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchall()
                # listing every region or hall reads the (small) table whole: that is the read itself
                checked = (*PG_TABLES, "halls", "regions") if " WHERE " in query else PG_TABLES
                scanned = [table for table in seq_scans(plan) if table in checked]
                assert not scanned, f"{query}\n{plan}"
            # a page of every device is an ordered walk of the byte-order index, not a sort of them all
            [page] = [(q, p) for q, p in traced if "FROM devices d" in q and "d.device COLLATE \"C\") >" in q]
            [(plan,)] = db.execute("EXPLAIN (FORMAT JSON) " + page[0], page[1]).fetchall()
            assert "devices_bytes" in str(plan), plan

