"""Counter gaps in the store (hub/gaps.py, `list_gaps`, `open_gaps`), run against every backend in
BACKENDS: opened by a jump, split, shrunk and closed by late ratings in the ingest transaction,
never moved by rejected or repeated ratings, kept across key rotation and hall moves, ranges only
for a huge jump, filled from the ratings already stored when the migration runs, and looked up by
index seeks."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from typing import Any

import psycopg
import pytest

from hcp.protocol import key_id, sign_rating
from hub.gaps import missing_below
from hub.migrations import MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_TABLE
from hub.store import DeviceGaps, HubStore, SQLiteStore
from hub.store.sqlite import _statements
from tests.fixtures.hub import rating_item

from .conftest import device_key
from .test_store_plans import seq_scans

pytestmark = pytest.mark.anyio

H1, H2 = "H1", "H2"


async def setup_devices(store: HubStore, *devices: str, hall: str = H1) -> None:
    for device in devices:
        await store.register_device(device, hall, "7", device_key(device))


def rated(device: str, n: int, hall: str = H1, key: bytes | None = None, score: int = 4):
    return sign_rating(key or device_key(device), hall, device, n, 1, 1000 + n, None, score)


async def post(store: HubStore, device: str, *numbers: int, hall: str = H1) -> list[str]:
    results = await store.ingest(hall, [rating_item(rated(device, n, hall)) for n in numbers])
    return [r.status for r in results]


def ranges(gaps) -> list[tuple[str, int, int, int, str, tuple]]:
    return [(g.device, g.first, g.last, g.missing, g.state, g.holes) for g in gaps]


# ---------------------------------------------------------------------------- opening and closing


async def test_in_order_ratings_open_nothing_and_a_jump_opens_one_gap(store):
    await setup_devices(store, "D1", "D2")
    assert await post(store, "D1", 1, 2, 3) == ["accepted"] * 3
    assert await store.list_gaps(state="all") == []
    assert await store.open_gaps() == {}
    assert await post(store, "D1", 7) == ["accepted"]
    (gap,) = await store.list_gaps()
    assert ranges([gap]) == [("D1", 4, 6, 3, "open", ((4, 6),))]
    assert (gap.hall, gap.size, gap.closed_at) == (H1, 3, None)
    assert await store.open_gaps() == {"D1": DeviceGaps("D1", 1, 3, gap.opened_at)}
    assert await store.open_gaps(hall=H2) == {} and await store.open_gaps(device="D2") == {}
    # a device's first rating above 1: the numbers below it are missing too
    assert await post(store, "D2", 3) == ["accepted"]
    assert ranges(await store.list_gaps(device="D2")) == [("D2", 1, 2, 2, "open", ((1, 2),))]
    assert set(await store.open_gaps()) == {"D1", "D2"}


async def test_late_ratings_split_shrink_and_close_the_gap_which_keeps_its_extent(store):
    await setup_devices(store, "D1")
    await post(store, "D1", 1, 7)
    (opened,) = await store.list_gaps()
    await post(store, "D1", 5)
    assert ranges(await store.list_gaps()) == [("D1", 2, 6, 4, "open", ((2, 4), (6, 6)))]
    await post(store, "D1", 2, 6)
    assert ranges(await store.list_gaps()) == [("D1", 2, 6, 2, "open", ((3, 4),))]
    assert (await store.open_gaps())["D1"].missing == 2
    await post(store, "D1", 4, 3)
    assert await store.list_gaps() == [] and await store.open_gaps() == {}
    (closed,) = await store.list_gaps(state="closed")
    assert ranges([closed]) == [("D1", 2, 6, 0, "closed", ())]
    assert (closed.opened_at, closed.hall) == (opened.opened_at, H1)
    assert closed.closed_at is not None and closed.closed_at >= closed.opened_at
    assert await store.list_gaps(state="all") == [closed]
    counts = await store.counts()
    assert (counts["rating_gaps"], counts["rating_gap_holes"]) == (1, 0)


async def test_numbers_out_of_order_inside_one_batch(store):
    await setup_devices(store, "D1")
    assert await post(store, "D1", 1, 5, 3, 2, 9) == ["accepted"] * 5
    gaps = await store.list_gaps()
    assert ranges(gaps) == [("D1", 6, 8, 3, "open", ((6, 8),)),  # same opened_at: higher first
                            ("D1", 2, 4, 1, "open", ((4, 4),))]
    assert gaps[0].opened_at == gaps[1].opened_at
    assert (await store.open_gaps())["D1"] == DeviceGaps("D1", 2, 4, gaps[0].opened_at)
    assert await post(store, "D1", 4, 8, 6, 7) == ["accepted"] * 4
    assert await store.open_gaps() == {}
    assert ranges(await store.list_gaps(state="closed")) == [("D1", 6, 8, 0, "closed", ()),
                                                             ("D1", 2, 4, 0, "closed", ())]


async def test_only_accepted_ratings_open_or_fill_a_gap(store):
    await setup_devices(store, "D1")
    await store.register_device("X9", H2, "1", device_key("X9"))
    await post(store, "D1", 1, 3)  # 2 missing
    before = (await store.list_gaps(state="all"), await store.counts())
    forged = rated("D1", 2)
    forged = type(forged)(**{**forged.__dict__, "score": 1})  # signature of another score
    results = await store.ingest(H1, [
        rating_item(forged),  # would close the gap
        rating_item(rated("D1", 9, key=device_key("other"))),  # unknown_key: would open 4..8
        rating_item(type(forged)(**{**rated("D1", 8).__dict__, "score": 2})),  # bad_signature
        rating_item(rated("D1", 3)),  # duplicate
        rating_item(rated("D1", 3, score=1)),  # conflict: a tampered resend
        rating_item(rated("X9", 5)),  # registered to another hall: unknown_device
        rating_item(rated("D9", 5)),  # never registered
    ])
    assert [(r.status, r.reason) for r in results] == [
        ("rejected", "bad_signature"), ("rejected", "unknown_key"), ("rejected", "bad_signature"),
        ("duplicate", None), ("rejected", "conflict"), ("rejected", "unknown_device"),
        ("rejected", "unknown_device")]
    after = await store.counts()
    assert await store.list_gaps(state="all") == before[0]
    assert (after["rating_gaps"], after["rating_gap_holes"]) == (1, 1)
    assert await post(store, "D1", 4) == ["accepted"]  # high is still 3: nothing opens
    assert ranges(await store.list_gaps()) == [("D1", 2, 2, 1, "open", ((2, 2),))]


async def test_a_rotated_key_and_a_moved_device_keep_the_numbering(store):
    old, new = device_key("old"), device_key("new")
    await store.register_device("D1", H1, "7", old)
    await store.ingest(H1, [rating_item(rated("D1", n, key=old)) for n in (1, 2)])
    await store.register_device("D1", H1, "7", new)  # rotation
    assert [r.status for r in await store.ingest(H1, [rating_item(rated("D1", 3, key=new))])] == ["accepted"]
    assert await store.list_gaps(state="all") == []
    await store.register_device("D1", H2, "1", new)  # moved to another hall
    moved = await store.ingest(H2, [rating_item(rated("D1", 4, H2, key=new))])
    assert [r.status for r in moved] == ["accepted"]
    assert await store.list_gaps(state="all") == []
    await store.ingest(H2, [rating_item(rated("D1", 6, H2, key=new))])
    (gap,) = await store.list_gaps(hall=H2)
    assert (gap.device, gap.first, gap.last, gap.hall) == ("D1", 5, 5, H2)
    assert await store.list_gaps(hall=H1) == []
    assert set(await store.open_gaps(hall=H2)) == {"D1"} and await store.open_gaps(hall=H1) == {}


async def test_a_counter_jump_of_a_billion_is_one_range(store):
    await setup_devices(store, "D1")
    await post(store, "D1", 1, 10**9 + 2)
    assert ranges(await store.list_gaps()) == [("D1", 2, 10**9 + 1, 10**9, "open", ((2, 10**9 + 1),))]
    await post(store, "D1", 500_000_000)
    assert ranges(await store.list_gaps()) == [
        ("D1", 2, 10**9 + 1, 10**9 - 1, "open", ((2, 499_999_999), (500_000_001, 10**9 + 1)))]
    assert (await store.open_gaps())["D1"].missing == 10**9 - 1
    counts = await store.counts()
    assert (counts["rating_gaps"], counts["rating_gap_holes"]) == (1, 2)


async def test_filters_limit_and_the_holes_shown(store):
    await setup_devices(store, "D1", "D2")
    await post(store, "D1", 3)  # 1..2
    await post(store, "D2", 1, 300)  # 2..299
    await post(store, "D2", *range(3, 299, 2))  # every other one: 148 holes left in 2..299
    await post(store, "D1", 1, 2, 6)  # closes 1..2, opens 4..5
    d2 = (await store.list_gaps(device="D2"))[0]
    assert (d2.first, d2.last, d2.missing) == (2, 299, 150)
    assert len(d2.holes) == 100 and d2.holes[:2] == ((2, 2), (4, 4)) and d2.holes[-1] == (200, 200)
    assert [(g.device, g.first) for g in await store.list_gaps(state="all")] == [
        ("D1", 4), ("D2", 2), ("D1", 1)]  # newest opened first
    assert [(g.device, g.first) for g in await store.list_gaps(state="all", limit=2)] == [
        ("D1", 4), ("D2", 2)]
    assert [(g.device, g.first) for g in await store.list_gaps(state="closed")] == [("D1", 1)]
    assert [(g.device, g.first) for g in await store.list_gaps(device="D1", state="all")] == [
        ("D1", 4), ("D1", 1)]
    assert await store.list_gaps(hall=H2, state="all") == []
    assert {d: (g.gaps, g.missing) for d, g in (await store.open_gaps()).items()} == {
        "D1": (1, 2), "D2": (1, 150)}
    assert set(await store.open_gaps(device="D2")) == {"D2"}


async def test_random_arrival_orders_leave_exactly_the_missing_numbers(store):
    """Several devices, numbers 1..40 each in a random order with repeats, in random batches."""
    rng = random.Random(20261121)
    devices = [f"R{i}" for i in range(4)]
    await setup_devices(store, *devices)
    arrivals = [(d, n) for d in devices for n in range(1, 41)]
    arrivals += rng.sample(arrivals, 30)
    rng.shuffle(arrivals)
    received: dict[str, set[int]] = {d: set() for d in devices}
    while arrivals:
        size = rng.randint(1, 25)
        batch, arrivals = arrivals[:size], arrivals[size:]
        await store.ingest(H1, [rating_item(rated(d, n)) for d, n in batch])
        for d, n in batch:
            received[d].add(n)
        gaps = await store.list_gaps(limit=1000)
        for d in devices:
            holes = sorted(h for g in gaps if g.device == d for h in g.holes)
            assert holes == missing_below(max(received[d], default=0), received[d])
    assert await store.open_gaps() == {}
    assert all(g.missing == 0 for g in await store.list_gaps(state="all", limit=1000))


# ---------------------------------------------------------------------------- migration


def gaps_version() -> int:
    """The schema version that adds the gap tables (its place in MIGRATIONS, not a constant)."""
    return next(i for i, m in enumerate(MIGRATIONS, 1) if "CREATE TABLE rating_gap_holes" in m.sqlite)


STORED = [  # device, n, hall, ingested_at: ratings a hub held before it kept counters
    ("D1", 1, H1, "2026-01-01T00:00:00.000+00:00"),
    ("D1", 2, H1, "2026-01-01T00:00:00.000+00:00"),
    ("D1", 5, H1, "2026-01-01T00:00:03.000+00:00"),
    ("D1", 6, H1, "2026-01-01T00:00:01.000+00:00"),  # arrived before 5: 3..4 was known missing then
    ("D1", 9, H2, "2026-01-01T00:00:02.000+00:00"),
    ("D2", 3, H1, "2026-01-01T00:00:05.000+00:00"),
]


def _older_database(hub_db: dict[str, Any]) -> None:
    """Bring the database to the version before the gap tables and store STORED in it."""
    before = gaps_version() - 1
    at = "2026-01-01T00:00:00.000+00:00"
    devices = [(d, H1, "7", at, at) for d in ("D1", "D2")]
    keys = [(d, key_id(device_key(d)), device_key(d).hex(), at) for d in ("D1", "D2")]
    ratings = [(d, n, hall, 1, n, None, 4, key_id(device_key(d)), "0" * 64, stored_at, 0, "7",
                "no_service_in_progress", True, stored_at, "{}") for d, n, hall, stored_at in STORED]
    inserts = [
        ("INSERT INTO devices (device, hall, window_id, registered_at, updated_at) "
         "VALUES (?, ?, ?, ?, ?)", devices),
        ("INSERT INTO device_keys (device, kid, key_hex, registered_at) VALUES (?, ?, ?, ?)", keys),
        ("INSERT INTO ratings (device, n, hall, boot, mono, session, score, kid, sig, received_at, offset_ms, "
         "window_id, unbound_reason, verified, ingested_at, item) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ratings)]
    if hub_db.get("db_url"):
        with psycopg.connect(hub_db["db_url"], autocommit=True) as db:
            db.execute(SCHEMA_VERSION_TABLE)
            for version, migration in enumerate(MIGRATIONS[:before], 1):
                db.execute(migration.postgres)
                db.execute("INSERT INTO schema_version VALUES (%s, 'test')", (version,))
            for sql, rows in inserts:
                db.cursor().executemany(sql.replace("?", "%s"), rows)
        return
    hub_db["db_path"].parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(hub_db["db_path"], isolation_level=None)) as db:
        db.execute(SCHEMA_VERSION_TABLE)
        for version, migration in enumerate(MIGRATIONS[:before], 1):
            for statement in _statements(migration.sqlite):
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?, 'test')", (version,))
        for sql, rows in inserts:
            db.executemany(sql, [tuple(int(v) if isinstance(v, bool) else v for v in row) for row in rows])


async def test_the_migration_finds_the_gaps_in_ratings_already_stored(hub_db, store_factory):
    _older_database(hub_db)
    async with store_factory() as store:
        assert await store.schema_version() == SCHEMA_VERSION
        gaps = await store.list_gaps(state="all")
        assert [(g.device, g.first, g.last, g.missing, g.hall, g.opened_at, g.holes) for g in gaps] == [
            ("D2", 1, 2, 2, H1, "2026-01-01T00:00:05.000+00:00", ((1, 2),)),
            ("D1", 7, 8, 2, H2, "2026-01-01T00:00:02.000+00:00", ((7, 8),)),
            ("D1", 3, 4, 2, H1, "2026-01-01T00:00:01.000+00:00", ((3, 4),))]
        # the counters continue from the stored high marks: 10 opens nothing, 4 fills a hole
        assert await post(store, "D1", 10, 4) == ["accepted", "accepted"]
        assert await post(store, "D2", 4) == ["accepted"]
        assert ranges(await store.list_gaps(device="D1")) == [("D1", 7, 8, 2, "open", ((7, 8),)),
                                                              ("D1", 3, 4, 1, "open", ((3, 3),))]
        assert {d: g.missing for d, g in (await store.open_gaps()).items()} == {"D1": 3, "D2": 2}


# ---------------------------------------------------------------------------- query plans


def gap_table(sql: str) -> bool:
    return "rating_counters" in sql or "rating_gap" in sql


async def test_sqlite_gap_lookups_seek(tmp_path):
    async with SQLiteStore(tmp_path / "hub.sqlite3") as store:
        await setup_devices(store, "D1", "D2")
        await post(store, "D1", 1, 50)
        await post(store, "D2", 1, 50)
        statements: list[str] = []
        conn = store._w._conn  # the writer's sqlite3 connection under aiosqlite
        await store._w._execute(conn.set_trace_callback, statements.append)
        try:
            await store.ingest(H1, [rating_item(rated(d, n)) for d in ("D1", "D2") for n in (7, 20, 51)])
        finally:
            await store._w._execute(conn.set_trace_callback, None)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT") and gap_table(s)]
        assert len(selects) == 2, statements  # the counters, then the holes of the late ones
        for sql in selects:
            plan = [row[3] for row in await store._w.execute_fetchall("EXPLAIN QUERY PLAN " + sql)]
            scans = [p for p in plan if p.startswith("SCAN") and "rating_" in p or p in ("SCAN h", "SCAN g")]
            assert not scans, f"{sql}\n{plan}"


async def test_postgres_gap_lookups_and_reads_can_seek(pg_server, monkeypatch):
    from psycopg import AsyncConnection

    from hub.store import PostgresStore

    traced: list[tuple[str, object]] = []
    original = AsyncConnection.execute

    async def execute(self, query, params=None, **kwargs):
        traced.append((query, params))
        return await original(self, query, params, **kwargs)

    with pg_server.schema() as url:
        async with PostgresStore(url) as store:
            await setup_devices(store, "D1", "D2")
            await post(store, "D1", 1, 50)
            await post(store, "D2", 1, 50)
            monkeypatch.setattr(AsyncConnection, "execute", execute)
            await store.ingest(H1, [rating_item(rated(d, n)) for d in ("D1", "D2") for n in (7, 20, 51)])
            await store.list_gaps(hall=H1)
            await store.list_gaps(device="D1", state="all")
            await store.open_gaps(hall=H1)
            monkeypatch.undo()
        selects = [(q, p) for q, p in traced if q.lstrip().upper().startswith("SELECT") and gap_table(q)]
        assert len(selects) >= 6, traced
        with psycopg.connect(url) as db:
            db.execute("SET enable_seqscan = off")
            for query, params in selects:
                [(plan,)] = db.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchall()
                scanned = [t for t in seq_scans(plan) if t.startswith("rating_")]
                assert not scanned, f"{query}\n{plan}"
