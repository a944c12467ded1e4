"""Ingest's look-ups stay index seeks as the hub's tables grow: every SELECT an ingest batch runs
on the SQLite store is traced and its query plan checked. A scan of `ratings` per batch made a
1M-item backlog drain slow down five times over (bench/gateway_drain.py)."""

from __future__ import annotations

import pytest

from hcp.protocol import sign_rating
from tests.fixtures.hub import rating_item, service_item

from .conftest import device_key

pytestmark = pytest.mark.anyio

BIG_TABLES = ("ratings", "services", "rejections")


async def test_an_ingest_batch_seeks_and_never_scans_the_big_tables(store):
    if not hasattr(store, "_w"):
        pytest.skip("SQLite-specific: query plans")
    for dev in ("D1", "D2"):
        await store.register_device(dev, "H1", "7", device_key(dev))

    def batch(first: int) -> list:
        items = [rating_item(sign_rating(device_key(dev), "H1", dev, n, 1, n, None, 4))
                 for n in range(first, first + 5) for dev in ("D1", "D2")]
        return items + [service_item(f"{first:016x}")]

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
