"""The SQLite file on its own: durability settings, schema versioning, and an outbox that survives
closing and reopening (the in-process twin of the kill/restart tests)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from gateway.schema import SCHEMA_VERSION
from gateway.store import Store


def run(coro):
    return asyncio.run(coro)


def test_store_opens_in_wal_with_full_sync_and_the_current_schema(tmp_path):
    async def check():
        store = await Store.open(tmp_path / "gw.sqlite3")
        async with store.read() as tx:
            sync = (await tx.one("PRAGMA synchronous"))[0]
            mode = (await tx.one("PRAGMA journal_mode"))[0]
            version = (await tx.one("PRAGMA user_version"))[0]
        await store.close()
        return sync, mode, version

    assert run(check()) == (2, "wal", SCHEMA_VERSION)  # 2 = FULL: fsync at every commit
    assert run(check()) == (2, "wal", SCHEMA_VERSION)  # reopening migrates nothing


def test_a_file_from_a_newer_gateway_is_refused(tmp_path):
    path = tmp_path / "gw.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="upgrade the gateway"):
        run(Store.open(path))


def test_pending_outbox_rows_survive_reopen_and_an_aborted_transaction_leaves_nothing(tmp_path):
    path = tmp_path / "gw.sqlite3"

    async def write():
        store = await Store.open(path)
        async with store.transaction() as tx:
            for i in range(3):
                await tx.outbox_put("rating", f"rating:D1:{i + 1}", {"i": i}, 1.0)
        with pytest.raises(ZeroDivisionError):
            async with store.transaction() as tx:
                await tx.outbox_put("rating", "rating:D1:99", {}, 1.0)
                raise ZeroDivisionError("abort")
        async with store.transaction() as tx:
            await tx.outbox_sent([1], 2.0)
        await store.close()

    async def read():
        store = await Store.open(path)
        async with store.read() as tx:
            pending = [r["key"] for r in await tx.outbox_pending(10)]
            depth = await tx.outbox_depth()
        await store.close()
        return pending, depth

    run(write())
    pending, depth = run(read())
    assert pending == ["rating:D1:2", "rating:D1:3"]
    assert depth == {"pending": 2, "sent": 1, "dead": 0}
