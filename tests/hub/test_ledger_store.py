"""The ledger in the real databases (both backends): every stored rating and service has a chained
entry written in its ingest transaction, and a row edited, deleted or inserted directly in the
database (not through the hub) is found by `verify_ledger`, at its entry. The chain on its own:
test_ledger_chain.py."""

from __future__ import annotations

import asyncio

import pytest

from hub import ledger
from hub.store import tables
from tests.fixtures.hub import binding, rating_item, service_item

from .conftest import run_sql
from .test_store import H1, rated, setup_devices

pytestmark = pytest.mark.anyio


async def fill(store) -> list[ledger.Entry]:
    """Two batches: ratings of two devices, services, a bound rating; -> the ledger."""
    await setup_devices(store, "D1", "D2")
    await store.ingest(H1, [rating_item(rated("D1", n, score=n % 5 + 1)) for n in range(1, 6)]
                       + [service_item("S1"), service_item("S2")])
    await store.ingest(H1, [rating_item(rated("D2", 1, score=1), bound=binding("S1")),
                            rating_item(rated("D1", 3)),  # a duplicate: no new entry
                            rating_item(rated("D2", 2, score=2)), service_item("S3")])
    return await store.ledger_entries(0, 100)


async def test_every_stored_record_has_one_chained_entry(store):
    assert await store.ledger_head() == ledger.GENESIS_HEAD
    entries = await fill(store)
    assert [e.seq for e in entries] == list(range(1, 11))
    assert [(e.kind, e.ref) for e in entries] == (
        [("rating", f"D1:{n}") for n in range(1, 6)] + [("service", "S1"), ("service", "S2")]
        + [("rating", "D2:1"), ("rating", "D2:2"), ("service", "S3")])
    assert await store.ledger_head() == ledger.Head(10, entries[-1].hash)
    result = await store.verify_ledger(expect=ledger.Head(7, entries[6].hash))
    assert result.ok and result.entries == 10 and result.first_broken is None, result.as_dict()
    # the digest covers the row as stored, the binding and the posted item included
    stored = await store.get_rating("D2", 1)
    assert stored is not None and stored.service == "S1"
    assert await store.ledger_entries(7, 1) == [entries[7]]
    assert entries[7].digest == ledger.digest((await store._ledger_records([entries[7]]))[("rating", H1, "D2:1")])


async def test_a_rating_edited_in_the_database_is_found(store, hub_db):
    entries = await fill(store)
    # 删差评: turn D2's bad rating (score 1) into 非常满意, directly in the table
    run_sql(hub_db, "UPDATE ratings SET score = 5 WHERE device = ? AND n = ?", ("D2", 1))
    result = await store.verify_ledger()
    assert not result.ok
    assert result.first_broken == ledger.Break(8, "rating", H1, "D2:1", "record_altered"), result.as_dict()
    assert result.problems == 1 and result.entries == len(entries)


async def test_a_deleted_rating_a_forged_rating_and_an_edited_entry_are_found(store, hub_db):
    await fill(store)
    run_sql(hub_db, "DELETE FROM ratings WHERE device = ? AND n = ?", ("D1", 2))
    missing = await store.verify_ledger()
    assert missing.first_broken == ledger.Break(2, "rating", H1, "D1:2", "record_missing")
    # a rating inserted behind the hub's back: copy D1:3 as D1:99 (a 刷好评 row with no entry)
    columns = tables.RATING_INSERT_COLUMNS
    run_sql(hub_db, f"INSERT INTO ratings ({columns}) SELECT "
                    + columns.replace(" n,", " 99,", 1) + " FROM ratings WHERE device = 'D1' AND n = 3")
    forged = await store.verify_ledger()  # one row gone and one added: both found, by name
    assert forged.unledgered == {"rating": 1}
    assert ledger.Break(0, "rating", H1, "D1:99", "unledgered") in forged.breaks
    run_sql(hub_db, "DELETE FROM ratings WHERE device = ? AND n = ?", ("D1", 1))
    # the ledger entry of a service rewritten (its digest replaced by the edited row's)
    run_sql(hub_db, "UPDATE services SET staff_id = 'X9' WHERE hall = ? AND id = ?", (H1, "S2"))
    run_sql(hub_db, "UPDATE ledger SET digest = ? WHERE seq = 7", ("0" * 64,))
    result = await store.verify_ledger()
    problems = {(b.seq, b.problem) for b in result.breaks}
    assert {(1, "record_missing"), (2, "record_missing"), (7, "entry_altered"),
            (7, "record_altered")} <= problems, result.as_dict()
    assert not result.ok


async def test_a_row_added_without_an_entry_is_counted(store, hub_db):
    await fill(store)
    columns = tables.RATING_INSERT_COLUMNS
    run_sql(hub_db, f"INSERT INTO ratings ({columns}) SELECT "
                    + columns.replace(" n,", " 99,", 1) + " FROM ratings WHERE device = 'D1' AND n = 3")
    result = await store.verify_ledger()
    assert not result.ok and result.unledgered == {"rating": 1} and result.problems == 0
    assert result.first_broken == ledger.Break(0, "rating", H1, "D1:99", "unledgered")


async def test_a_rewritten_chain_is_found_by_a_recorded_head(store, hub_db):
    entries = await fill(store)
    anchored = ledger.Head(entries[-1].seq, entries[-1].hash)
    # someone rewrites the last entry consistently after editing its record: the chain alone
    # verifies, the head recorded outside (the monthly bulletin) does not
    run_sql(hub_db, "UPDATE services SET staff_id = 'X9' WHERE hall = ? AND id = ?", (H1, "S3"))
    (record,) = (await store._ledger_records([entries[-1]])).values()
    last = entries[-1]
    digest = ledger.digest(record)
    forged_hash = ledger.link(entries[-2].hash, last.seq, last.kind, last.hall, last.ref, digest, last.at)
    run_sql(hub_db, "UPDATE ledger SET digest = ?, hash = ? WHERE seq = ?", (digest, forged_hash, last.seq))
    assert (await store.verify_ledger()).ok
    result = await store.verify_ledger(expect=anchored)
    assert not result.ok and result.first_broken is not None
    assert (result.first_broken.seq, result.first_broken.problem) == (last.seq, "head_mismatch")


async def test_concurrent_batches_of_two_halls_make_one_gapless_chain(store_factory):
    async with store_factory() as a, store_factory() as b:
        await setup_devices(a, "D1")
        await setup_devices(a, "E1", hall="H2")
        await asyncio.gather(*(
            [a.ingest(H1, [rating_item(rated("D1", n))]) for n in range(1, 21)]
            + [b.ingest("H2", [rating_item(rated("E1", n, hall="H2"))]) for n in range(1, 21)]))
        entries = await a.ledger_entries(0, 100)
        assert [e.seq for e in entries] == list(range(1, 41))
        assert (await b.verify_ledger()).ok
