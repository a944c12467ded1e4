"""What only the PostgreSQL backend has: migrations on a shared server (an upgrade, a newer schema
refused, two hubs starting at once), the schema its URL names, and clear errors when it cannot
start. The storage contract itself runs on it from test_store.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from hcp.protocol import sign_rating
from hub.migrations import POSTGRES_MIGRATIONS, SCHEMA_VERSION
from hub.store import PostgresStore
from tests.fixtures.hub import rating_item, service_item
from tests.fixtures.postgres import with_search_path

from .conftest import alert_item, device_key, health_item, make_version_1_database

pytestmark = pytest.mark.anyio

H1 = "H1"


@pytest.fixture
def pg_url(pg_server) -> Iterator[str]:
    """The URL of a new, empty schema."""
    with pg_server.schema() as url:
        yield url


def rated(n: int):
    return sign_rating(device_key("D1"), H1, "D1", n, 1, n, None, 4)


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as db:
        return [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]


async def test_upgrades_a_version_1_schema_keeping_its_data(pg_url):
    with psycopg.connect(pg_url) as db:
        make_version_1_database(db.execute, lambda sql, params: db.execute(sql.replace("?", "%s"), params),
                                POSTGRES_MIGRATIONS[0], "D1", H1, device_key("D1"),
                                [rating_item(rated(1)), service_item("s1")])
    async with PostgresStore(pg_url) as new:
        assert await new.schema_version() == SCHEMA_VERSION >= 2
        assert [r.id for r in await new.list_ratings()] == ["D1:1"]
        assert [(e.kind, e.ref) for e in await new.ledger_entries()] == [("rating", "D1:1"), ("service", "s1")]
        results = await new.ingest(H1, [health_item("D1"), alert_item(1, device="D1"), service_item("s1"),
                                        rating_item(rated(2))])
        assert [r.status for r in results] == ["accepted", "accepted", "duplicate", "accepted"]
        assert (await new.verify_ledger()).ok
    assert versions(pg_url) == list(range(1, SCHEMA_VERSION + 1))


async def test_refuses_a_schema_newer_than_the_code(pg_url):
    async with PostgresStore(pg_url):
        pass
    with psycopg.connect(pg_url) as db:
        db.execute("INSERT INTO schema_version VALUES (%s, 'later')", (SCHEMA_VERSION + 1,))
    store = PostgresStore(pg_url)
    with pytest.raises(RuntimeError, match="newer than this hub"):
        await store.open()
    await store.close()  # harmless after a failed open


async def test_two_hubs_starting_at_once_migrate_once(pg_url):
    hubs = [PostgresStore(pg_url) for _ in range(3)]
    await asyncio.gather(*(hub.open() for hub in hubs))
    try:
        assert [await hub.schema_version() for hub in hubs] == [SCHEMA_VERSION] * 3
    finally:
        for hub in hubs:
            await hub.close()
    assert versions(pg_url) == list(range(1, SCHEMA_VERSION + 1))


async def test_tables_go_into_the_schema_the_url_names(pg_server, pg_url):
    async with PostgresStore(pg_url) as store:
        await store.register_device("D1", H1, "1", device_key("D1"))
    with psycopg.connect(pg_url) as db:
        schema = db.execute("SELECT current_schema()").fetchone()[0]
        tables = {t for (t,) in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}
    assert schema.startswith("hcp_test_")
    assert {"schema_version", "ratings", "device_alerts", "devices"} <= tables
    with pg_server.schema() as other:  # another schema on the same server is another hub
        async with PostgresStore(other) as store:
            assert (await store.counts())["devices"] == 0


async def test_a_search_path_with_no_existing_schema_is_a_clear_error(pg_server):
    store = PostgresStore(with_search_path(pg_server.dsn, "hcp_no_such_schema"))
    with pytest.raises(RuntimeError, match="no schema to create the hub's tables in"):
        await store.open()


async def test_an_unreachable_server_fails_open_with_the_reason():
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/hub")
    with pytest.raises(psycopg.OperationalError, match="127.0.0.1"):
        await asyncio.wait_for(store.open(), 15)


async def test_many_concurrent_batches_of_two_hubs_store_each_item_once(pg_url):
    """Overlapping batches in different orders from two hubs at once: every rating and service is
    accepted exactly once, whatever the interleaving (row locks, unique keys, batches run again)."""
    async with PostgresStore(pg_url) as one, PostgresStore(pg_url) as two:
        await one.register_device("D1", H1, "1", device_key("D1"))
        items = [rating_item(rated(n)) for n in range(1, 31)] + [service_item(f"s{n}") for n in range(30)]
        batches = [items[i:] + items[:i] for i in range(0, 60, 6)]
        services_only = [[service_item(f"s{n}") for n in range(30)][::step] for step in (1, -1, 1, -1)]
        work = [(one if i % 2 else two).ingest(H1, b) for i, b in enumerate(batches + services_only)]
        results = [r for answers in await asyncio.gather(*work) for r in answers]
        accepted = sorted(r.key for r in results if r.status == "accepted")
        assert accepted == sorted([f"rating:D1:{n}" for n in range(1, 31)] +
                                  [f"service:H1:s{n}" for n in range(30)])
        assert {r.status for r in results} == {"accepted", "duplicate"}
        counts = await one.counts()
        assert (counts["ratings"], counts["services"], counts["rejections"]) == (30, 30, 0)
