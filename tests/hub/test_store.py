"""The storage contract (hub/store/base.py), run against every backend in BACKENDS; then what only
SQLite has (a file, WAL). PostgreSQL's own: test_store_postgres.py."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading

import pytest

from hcp.protocol import key_id, sign_rating
from hub.migrations import SCHEMA_VERSION, SQLITE_MIGRATIONS
from hub.store import KeyIdCollision, PostgresStore, SQLiteStore
from tests.fixtures.hub import binding, rating_item, service_item

from .conftest import CLEARED_AT, alert_item, device_key, health_item, health_payload, make_version_1_database

pytestmark = pytest.mark.anyio

H1 = "H1"


async def setup_devices(store, *devices: str, hall: str = H1) -> None:
    for index, device in enumerate(devices):
        await store.register_device(device, hall, str(index + 1), device_key(device))


def rated(device: str, n: int, score: int = 4, hall: str = H1, sess: str | None = None, key=None):
    return sign_rating(key or device_key(device), hall, device, n, 1, 1000 + n, sess, score)


def statuses(results) -> list[tuple]:
    return [(r.key, r.status, r.reason) for r in results]


# ---------------------------------------------------------------------------- lifecycle


async def test_open_migrates_to_newest_schema_and_reopen_keeps_data(store, store_factory):
    assert await store.schema_version() == SCHEMA_VERSION
    await setup_devices(store, "D1")
    assert statuses(await store.ingest(H1, [rating_item(rated("D1", 1))])) == [
        ("rating:D1:1", "accepted", None)]
    await store.close()
    await store.close()  # twice is harmless
    async with store_factory() as again:
        assert await again.schema_version() == SCHEMA_VERSION
        assert [r.id for r in await again.list_ratings()] == ["D1:1"]
        assert statuses(await again.ingest(H1, [rating_item(rated("D1", 1))])) == [
            ("rating:D1:1", "duplicate", None)]


# ---------------------------------------------------------------------------- registration


async def test_gateway_registration_rotates_the_token(store):
    await store.register_gateway(H1, "a" * 64, b"\x01" * 32)
    first = await store.gateway_by_token_hash("a" * 64)
    assert first is not None and first.hall == H1 and first.key == b"\x01" * 32
    await store.register_gateway(H1, "b" * 64, b"\x02" * 32)
    assert await store.gateway_by_token_hash("a" * 64) is None
    second = await store.gateway_by_token_hash("b" * 64)
    assert second is not None and second.key == b"\x02" * 32 and second.created_at == first.created_at
    assert (await store.counts())["gateways"] == 1


async def test_device_key_rotation_keeps_old_ratings_verifiable(store):
    old, new = device_key("old"), device_key("new")
    assert await store.register_device("D1", H1, "7", old) == key_id(old)
    assert await store.register_device("D1", H1, "7", old) == key_id(old)  # same key: no-op
    assert (await store.counts())["device_keys"] == 1
    assert await store.register_device("D1", H1, "7", new) == key_id(new)
    assert (await store.counts())["device_keys"] == 2
    results = await store.ingest(H1, [rating_item(rated("D1", 1, key=old)),
                                      rating_item(rated("D1", 2, key=new))])
    assert [r.status for r in results] == ["accepted", "accepted"]
    assert {r.kid for r in await store.list_ratings(device="D1")} == {key_id(old), key_id(new)}


async def test_a_different_key_with_a_known_kid_is_refused(store, monkeypatch):
    monkeypatch.setattr(f"{type(store).__module__}.key_id", lambda key: "00000000")
    await store.register_device("D1", H1, "7", device_key("a"))
    with pytest.raises(KeyIdCollision):
        await store.register_device("D1", H1, "7", device_key("b"))
    assert (await store.counts())["device_keys"] == 1


# ---------------------------------------------------------------------------- ingest


async def test_ingest_decides_each_item(store):
    await setup_devices(store, "D1", "D2")
    await store.register_device("X9", "H2", "1", device_key("X9"))
    forged = rated("D1", 3)
    forged = type(forged)(**{**forged.__dict__, "score": 1})  # same signature, other score
    results = await store.ingest(H1, [
        rating_item(rated("D1", 1), binding(service="s1")),
        rating_item(rated("D1", 1), binding(service="s1")),  # the same item in the same batch
        rating_item(rated("D2", 1, key=device_key("other"))),  # kid is not D2's
        rating_item(forged),
        rating_item(rated("D9", 1)),  # never registered
        rating_item(rated("X9", 1)),  # registered to H2, but posted (and signed) for H1
        rating_item(rated("D2", 2, hall="H2")),  # rating of another hall
        service_item("s1"),
        service_item("s1"),
        {"kind": "tally"},
        "not an object",
    ])
    assert statuses(results) == [
        ("rating:D1:1", "accepted", None),
        ("rating:D1:1", "duplicate", None),
        ("rating:D2:1", "rejected", "unknown_key"),
        ("rating:D1:3", "rejected", "bad_signature"),
        ("rating:D9:1", "rejected", "unknown_device"),
        ("rating:X9:1", "rejected", "unknown_device"),
        ("rating:D2:2", "rejected", "wrong_hall"),
        ("service:H1:s1", "accepted", None),
        ("service:H1:s1", "duplicate", None),
        (None, "rejected", "unknown_kind"),
        (None, "rejected", "bad_json"),
    ]
    counts = await store.counts()
    assert (counts["ratings"], counts["services"], counts["rejections"]) == (1, 1, 7)
    summary = await store.rejection_summary()
    assert summary.total == 7
    assert summary.by_reason == {"bad_json": 1, "bad_signature": 1, "unknown_device": 2,
                                 "unknown_key": 1, "unknown_kind": 1, "wrong_hall": 1}
    assert [r.reason for r in summary.recent[:2]] == ["bad_json", "unknown_kind"]  # newest first
    assert summary.recent[0].item == '"not an object"' and summary.recent[0].hall == H1
    assert (await store.rejection_summary(hall="H2")).total == 0
    assert await store.alerts() == []


async def test_text_no_store_can_keep_is_rejected_and_the_rest_of_the_batch_stored(store):
    await setup_devices(store, "D1")
    results = await store.ingest(H1, [
        service_item("s1", staff_name="张\x00三"),
        rating_item(rated("D1", 1), binding(unit="\ud800")),
        health_item("D1", health=health_payload(err="\x00")),
        alert_item(1, device="D1", detail="\udfff"),
        "junk \ud800",
        rating_item(rated("D1", 2)),
    ])
    assert statuses(results) == [
        ("service:H1:s1", "rejected", "bad_field:staff_name"),
        ("rating:D1:1", "rejected", "bad_field:binding.unit"),
        ("health:H1:D1:3:81234", "rejected", "bad_field:health.err"),
        ("alert:H1:1:raised", "rejected", "bad_field:detail"),
        (None, "rejected", "bad_json"),
        ("rating:D1:2", "accepted", None)]
    summary = await store.rejection_summary()
    assert summary.total == 5 and summary.recent[0].item == '"junk ?"'
    assert '"staff_name":"张\\u0000三"' in summary.recent[4].item
    # such text matches nothing stored, on every backend
    assert await store.list_ratings(ticket="A\x00") == []
    assert (await store.rejection_summary(hall="H\x00")).total == 0


async def test_same_key_other_payload_is_a_conflict_and_a_tampering_alert(store):
    await setup_devices(store, "D1")
    first = rated("D1", 1, score=5)
    assert [r.status for r in await store.ingest(H1, [rating_item(first)])] == ["accepted"]
    reused = rated("D1", 1, score=1)  # validly signed: the counter was used twice
    results = await store.ingest(H1, [rating_item(reused), rating_item(first)])
    assert statuses(results) == [("rating:D1:1", "rejected", "conflict"),
                                 ("rating:D1:1", "duplicate", None)]
    assert (await store.get_rating("D1", 1)).score == 5
    [alert] = await store.alerts(kind="tampering")
    assert (alert.kind, alert.hall, alert.key) == ("tampering", H1, "rating:D1:1")
    assert alert.detail["stored"]["score"] == 5 and alert.detail["posted"]["score"] == 1
    assert alert.detail["signature_valid"] is True
    assert (await store.rejection_summary()).by_reason == {"conflict": 1}


async def test_a_resend_with_another_binding_is_a_duplicate_and_the_first_binding_stays(store):
    await setup_devices(store, "D1")
    rating = rated("D1", 1, sess="s1")
    await store.ingest(H1, [rating_item(rating, binding(service="s1", ticket="A001"))])
    results = await store.ingest(H1, [rating_item(rating, binding(service="s2", ticket="B002")),
                                      rating_item(rating)])
    assert [r.status for r in results] == ["duplicate", "duplicate"]
    stored = await store.get_rating("D1", 1)
    assert (stored.service, stored.ticket, stored.bound) == ("s1", "A001", True)


async def test_service_conflict_is_rejected_and_alerted(store):
    await store.ingest(H1, [service_item("s1", ticket="A001")])
    results = await store.ingest(H1, [service_item("s1", ticket="A002"),
                                      service_item("s1", ticket="A001", extra_field="ignored")])
    assert statuses(results) == [("service:H1:s1", "rejected", "conflict"),
                                 ("service:H1:s1", "duplicate", None)]
    [alert] = await store.alerts()
    assert alert.kind == "service_conflict" and alert.detail["stored"]["ticket"] == "A001"
    # the same service id in another hall is another service
    assert [r.status for r in await store.ingest("H2", [service_item("s1")])] == ["accepted"]


async def test_unbound_rating_takes_the_devices_window(store):
    await store.register_device("D1", H1, "12", device_key("D1"))
    await store.ingest(H1, [rating_item(rated("D1", 1), unbound_reason="no_service_in_progress"),
                            rating_item(rated("D1", 2), binding(window="3"))])
    one, two = await store.get_rating("D1", 1), await store.get_rating("D1", 2)
    assert (one.bound, one.window, one.unbound_reason) == (False, "12", "no_service_in_progress")
    assert (two.bound, two.window, two.unbound_reason) == (True, "3", None)
    assert [r.id for r in await store.list_ratings(window="12")] == ["D1:1"]


async def test_list_ratings_filters_and_orders_newest_first(store):
    await setup_devices(store, "D1", "D2")
    await store.register_device("E1", "H2", "1", device_key("E1"))
    await store.ingest(H1, [rating_item(rated("D1", 1), binding(ticket="A1", window="1")),
                            rating_item(rated("D2", 1), binding(ticket="A2", window="2")),
                            rating_item(rated("D1", 2), binding(ticket="A3", window="1"))])
    await store.ingest("H2", [rating_item(rated("E1", 1, hall="H2"), binding(ticket="A1"))])
    ids = lambda rows: [r.id for r in rows]  # noqa: E731
    assert ids(await store.list_ratings()) == ["E1:1", "D1:2", "D2:1", "D1:1"]
    assert ids(await store.list_ratings(hall=H1)) == ["D1:2", "D2:1", "D1:1"]
    assert ids(await store.list_ratings(device="D1")) == ["D1:2", "D1:1"]
    assert ids(await store.list_ratings(hall=H1, window="1")) == ["D1:2", "D1:1"]
    assert ids(await store.list_ratings(ticket="A1")) == ["E1:1", "D1:1"]
    assert ids(await store.list_ratings(hall=H1, ticket="A1")) == ["D1:1"]
    assert ids(await store.list_ratings(limit=1)) == ["E1:1"]
    assert await store.get_rating("D1", 3) is None


async def test_a_batch_larger_than_one_lookup_chunk(store):
    devices = [f"D{i}" for i in range(30)]
    await setup_devices(store, *devices)
    items = [rating_item(rated(d, n)) for d in devices for n in range(1, 31)]  # 900 ratings
    items += [service_item(f"s{i}") for i in range(450)]
    assert {r.status for r in await store.ingest(H1, items)} == {"accepted"}
    assert {r.status for r in await store.ingest(H1, items)} == {"duplicate"}
    counts = await store.counts()
    assert (counts["ratings"], counts["services"]) == (900, 450)


async def test_concurrent_batches_accept_each_rating_once(store):
    await setup_devices(store, "D1")
    items = [rating_item(rated("D1", n)) for n in range(1, 41)]
    batches = [items[i:] + items[:i] for i in range(0, 40, 5)]  # overlapping, different orders
    all_results = await asyncio.gather(*(store.ingest(H1, b) for b in batches))
    accepted = [r.key for results in all_results for r in results if r.status == "accepted"]
    assert sorted(accepted) == sorted(f"rating:D1:{n}" for n in range(1, 41))
    assert {r.status for results in all_results for r in results} <= {"accepted", "duplicate"}
    assert (await store.counts())["ratings"] == 40


async def test_a_batch_is_one_transaction(store, monkeypatch):
    """A failure while writing a batch leaves nothing of it behind."""
    await setup_devices(store, "D1")
    original = type(store)._write_plan

    async def write_then_fail(self, *args):
        await original(self, *args)
        raise OSError("disk gone")

    def write_then_fail_sync(self, *args):  # SQLite: the batch is a plain function on its writer's thread
        original(self, *args)
        raise OSError("disk gone")

    monkeypatch.setattr(type(store), "_write_plan",
                        write_then_fail if inspect.iscoroutinefunction(original) else write_then_fail_sync)
    batch = [rating_item(rated("D1", 1)), service_item("s1"), {"kind": "junk"},
             health_item("D1"), alert_item(1, device="D1")]
    with pytest.raises(OSError):
        await store.ingest(H1, batch)
    counts = await store.counts()
    assert (counts["ratings"], counts["services"], counts["rejections"]) == (0, 0, 0)
    assert (counts["device_health"], counts["device_alerts"]) == (0, 0)
    assert (await store.list_devices(hall=H1))[0].health is None
    monkeypatch.undo()
    assert [r.status for r in await store.ingest(H1, batch)] == [
        "accepted", "accepted", "rejected", "accepted", "accepted"]


# Two hubs on one database, the first paused inside its write transaction (rows written, not yet
# committed) while the second posts: (first's batch, second's batch, first's answers, second's,
# whether PostgreSQL runs the second batch again: its device lock does not cover these keys).
RACES = {
    "ratings and reports": (
        [rating_item(rated("D1", 1)), rating_item(rated("D1", 2)), health_item("D1"), alert_item(1, device="D1")],
        [health_item("D1"), rating_item(rated("D1", 2)), alert_item(1, device="D1"), rating_item(rated("D1", 1))],
        ["accepted"] * 4, ["duplicate"] * 4, False),
    "services": ([service_item("s1"), service_item("s2")], [service_item("s2"), service_item("s1")],
                 ["accepted"] * 2, ["duplicate"] * 2, True),
    "a raise and its clear": ([alert_item(7, device="D1")], [alert_item(7, "cleared", device="D1")],
                              ["accepted"], ["accepted"], False),
    "an alert id of another device": ([alert_item(5, device="D1")], [alert_item(5, device="D2")],
                                      ["accepted"], ["rejected"], True),
}


@pytest.mark.parametrize("race", RACES, ids=str)
async def test_two_hubs_posting_the_same_keys_at_once_store_each_once(store, store_factory, monkeypatch,
                                                                      race):
    first_batch, second_batch, first_answers, second_answers, run_again = RACES[race]
    await setup_devices(store, "D1", "D2")
    async with store_factory() as second:
        original = type(store)._write_plan
        written, go_on = asyncio.Event(), asyncio.Event()

        async def write_then_wait(self, *args):
            await original(self, *args)
            if self is store:
                written.set()
                await go_on.wait()

        loop, go_on_thread = asyncio.get_running_loop(), threading.Event()

        def write_then_wait_sync(self, *args):  # SQLite: on the writer's thread, in its transaction
            original(self, *args)
            if self is store:
                loop.call_soon_threadsafe(written.set)
                assert go_on_thread.wait(10)

        monkeypatch.setattr(type(store), "_write_plan",
                            write_then_wait if inspect.iscoroutinefunction(original) else write_then_wait_sync)
        first = asyncio.create_task(store.ingest(H1, first_batch))
        await asyncio.wait_for(written.wait(), 10)
        later = asyncio.create_task(second.ingest(H1, second_batch))
        await asyncio.sleep(0.3)
        assert not later.done(), "the second batch was decided before the first committed"
        go_on.set()
        go_on_thread.set()
        assert [r.status for r in await first] == first_answers
        assert [r.status for r in await later] == second_answers
        if isinstance(second, PostgresStore):
            assert second.retries == int(run_again)
        counts = await second.counts()
    assert counts["ratings"] == sum(1 for item in first_batch if item["kind"] == "rating")
    assert counts["services"] == sum(1 for item in first_batch if item["kind"] == "service")
    assert counts["device_alerts"] == len({item["id"] for item in first_batch if item["kind"] == "alert"})
    if race == "a raise and its clear":
        [row] = await store.device_alerts(hall=H1)
        assert (row.state, row.raise_seen, row.cleared_at) == ("cleared", True, CLEARED_AT)
    if race == "an alert id of another device":
        assert [a.kind for a in await store.alerts()] == ["alert_conflict"]


# ---------------------------------------------------------------------------- device reports


async def test_health_keeps_every_snapshot_and_the_newest_per_device(store):
    await setup_devices(store, "D1", "D2")
    t1, t2 = "2026-11-21T09:30:00.000+08:00", "2026-11-21T09:35:00.000+08:00"
    t0 = "2026-11-21T09:25:00.000+08:00"
    t3 = "2026-11-21T01:40:00.000Z"  # 09:40 at +08:00: the newest, though it sorts first as text
    results = await store.ingest(H1, [health_item("D1", up=2000, received_at=t2),
                                      health_item("D1", up=1000, received_at=t1)])
    assert statuses(results) == [("health:H1:D1:3:2000", "accepted", None),
                                 ("health:H1:D1:3:1000", "accepted", None)]
    [d1, d2] = await store.list_devices(hall=H1)
    assert (d1.device, d1.health.up, d1.health.received_at) == ("D1", 2000, t2)
    assert (d2.device, d2.health, d2.alerts_open) == ("D2", None, ())
    await store.ingest(H1, [health_item("D1", up=500, received_at=t0)])  # a late arrival
    assert (await store.list_devices(hall=H1))[0].health.up == 2000
    await store.ingest(H1, [health_item("D1", boot=4, up=10, received_at=t3, presence="offline")])
    newest = (await store.list_devices(hall=H1))[0].health
    assert (newest.boot, newest.up, newest.presence, newest.window) == (4, 10, "offline", "7")
    assert newest.health == health_item("D1", boot=4, up=10)["health"]
    assert newest.offset_ms == 1795239326000 - 10
    history = await store.health_history(hall=H1, device="D1")
    assert [(h.boot, h.up) for h in history] == [(4, 10), (3, 2000), (3, 1000), (3, 500)]
    assert [h.up for h in await store.health_history(hall=H1, device="D1", limit=2)] == [10, 2000]
    assert await store.health_history(hall="H2", device="D1") == []
    assert (await store.counts())["device_health"] == 4


async def test_a_moved_device_shows_only_its_new_halls_health(store):
    await setup_devices(store, "D1")
    await store.ingest(H1, [health_item("D1", up=1)])
    await store.register_device("D1", "H2", "4", device_key("D1"))
    assert await store.list_devices(hall=H1) == []
    [moved] = await store.list_devices(hall="H2")
    assert (moved.hall, moved.window, moved.health, moved.kid) == ("H2", "4", None, key_id(device_key("D1")))
    assert statuses(await store.ingest(H1, [health_item("D1", up=2)])) == [
        ("health:H1:D1:3:2", "rejected", "unknown_device")]
    await store.ingest("H2", [health_item("D1", up=3, window="4")])
    assert (await store.list_devices(hall="H2"))[0].health.up == 3
    assert [d.device for d in await store.list_devices()] == ["D1"]
    assert [h.up for h in await store.health_history(hall=H1, device="D1")] == [1]


async def test_device_alerts_are_one_row_each_whichever_state_comes_first(store):
    await setup_devices(store, "D1", "D2")
    batch1 = [alert_item(1, device="D1"), alert_item(2, "cleared", device="D1", alert="counter_gap",
                                                     detail="missing n 3-4 (2 ratings)"),
              alert_item(3, device="D2", alert="offline", detail="never connected")]
    assert [r.status for r in await store.ingest(H1, batch1)] == ["accepted"] * 3
    rows = await store.device_alerts(hall=H1)
    assert [(a.id, a.state, a.raise_seen) for a in rows] == [
        (3, "raised", True), (2, "cleared", False), (1, "raised", True)]
    assert {d.device: d.alerts_open for d in await store.list_devices(hall=H1)} == {
        "D1": ("stuck_button",), "D2": ("offline",)}
    batch2 = [alert_item(1, "cleared", device="D1", detail="released"),
              alert_item(2, device="D1", alert="counter_gap", detail="missing n 3")]
    assert [r.status for r in await store.ingest(H1, batch2)] == ["accepted"] * 2
    one, two = await store.device_alerts(hall=H1, device="D1")
    assert (one.id, one.state, one.detail, one.cleared_at, one.raise_seen) == (
        2, "cleared", "missing n 3-4 (2 ratings)", CLEARED_AT, True)  # the clear's detail stays
    assert (two.id, two.state, two.detail, two.cleared_at) == (1, "cleared", "released", CLEARED_AT)
    assert {d.device: d.alerts_open for d in await store.list_devices(hall=H1)} == {
        "D1": (), "D2": ("offline",)}
    assert [a.id for a in await store.device_alerts(hall=H1, state="raised")] == [3]
    assert [a.id for a in await store.device_alerts(hall=H1, state="cleared")] == [2, 1]
    assert [a.id for a in await store.device_alerts(hall=H1, limit=1)] == [3]
    assert await store.device_alerts(hall="H2") == []
    before = await store.counts()
    assert {r.status for r in await store.ingest(H1, batch1 + batch2)} == {"duplicate"}
    assert await store.counts() == before and before["device_alerts"] == 3
    assert await store.alerts() == []


async def test_report_conflicts_are_rejected_counted_and_alerted(store):
    await setup_devices(store, "D1")
    await store.ingest(H1, [health_item("D1"), alert_item(5, device="D1")])
    results = await store.ingest(H1, [health_item("D1", presence="offline"),
                                      alert_item(5, device="D1", detail="another"),
                                      alert_item(5, "cleared", device="D2")])
    assert [(r.status, r.reason) for r in results] == [("rejected", "conflict")] * 3
    assert [a.kind for a in await store.alerts()] == ["alert_conflict", "alert_conflict", "health_conflict"]
    assert (await store.rejection_summary()).by_reason == {"conflict": 3}
    [alert] = await store.device_alerts(hall=H1)
    assert (alert.state, alert.detail) == ("raised", "button(s) stuck: 3")
    assert (await store.list_devices(hall=H1))[0].health.presence == "online"


# ---------------------------------------------------------------------------- SQLite specifics


async def test_sqlite_report_lookups_and_reads_seek_and_never_scan(tmp_path):
    """Ingest looks health up by its whole key and alerts by (hall, id), and the hall reads use
    their indexes: neither grows with the health history (about 290 rows per device a day)."""

    async def plans(store, work) -> list[tuple[str, list[str]]]:
        """(SQL, query plan) of every SELECT on the report tables that `work()` runs."""
        traced: list[str] = []
        for db in (store._w, store._r):
            await db._execute(db._conn.set_trace_callback, traced.append)
        try:
            await work()
        finally:
            for db in (store._w, store._r):
                await db._execute(db._conn.set_trace_callback, None)
        return [(sql, [row[3] for row in await store._w.execute_fetchall("EXPLAIN QUERY PLAN " + sql)])
                for sql in traced if sql.lstrip().upper().startswith("SELECT")
                and ("device_health" in sql or "device_alerts" in sql)]

    def scans(plan: list[str]) -> list[str]:
        tables = {"device_health", "device_alerts", "devices", "h", "a", "d", "l"}
        return [line for line in plan
                if line.startswith("SCAN ") and line[5:].split(" USING ")[0] in tables]

    async with SQLiteStore(tmp_path / "hub.sqlite3") as store:
        await setup_devices(store, "D1", "D2")
        batch = [health_item(d, up=up) for d in ("D1", "D2") for up in (1, 2, 3)]
        batch += [alert_item(i, device="D1") for i in (1, 2)]
        await store.ingest(H1, batch)
        more = batch + [health_item("D1", up=4), alert_item(2, "cleared", device="D1")]
        ingest = await plans(store, lambda: store.ingest(H1, more))
        assert len(ingest) == 2, ingest
        for sql, plan in ingest:
            searches = [line for line in plan if line.startswith("SEARCH")]
            assert searches and not scans(plan), f"{sql}\n{plan}"
            key = "(hall=? AND device=? AND boot=? AND up=?)" if "device_health" in sql else \
                "(hall=? AND alert_id=?)"
            assert all(key in line for line in searches), f"{sql}\n{plan}"

        async def reads() -> None:
            await store.list_devices(hall=H1)
            await store.health_history(hall=H1, device="D1")
            await store.device_alerts(hall=H1, state="raised")
        read_plans = await plans(store, reads)
        assert len(read_plans) == 3
        for sql, plan in read_plans:
            assert not scans(plan), f"{sql}\n{plan}"


async def test_sqlite_upgrades_a_version_1_database_keeping_its_data(tmp_path):
    path = tmp_path / "hub.sqlite3"
    with sqlite3.connect(path) as db:
        make_version_1_database(db.executescript, db.execute, SQLITE_MIGRATIONS[0], "D1", H1, device_key("D1"),
                                [rating_item(rated("D1", 1)), service_item("s1")])
    async with SQLiteStore(path) as new:
        assert await new.schema_version() == len(SQLITE_MIGRATIONS) >= 2
        assert [r.id for r in await new.list_ratings()] == ["D1:1"]
        # the ledger's migration chained what was there: it verifies, and new records follow it
        assert [(e.kind, e.ref) for e in await new.ledger_entries()] == [("rating", "D1:1"), ("service", "s1")]
        results = await new.ingest(H1, [health_item("D1"), alert_item(1, device="D1"),
                                        service_item("s1"), rating_item(rated("D1", 2))])
        assert [r.status for r in results] == ["accepted", "accepted", "duplicate", "accepted"]
        assert (await new.verify_ledger()).ok


async def test_sqlite_file_is_in_wal_mode_with_one_version_row(tmp_path):
    path = tmp_path / "hub.sqlite3"
    async with SQLiteStore(path):
        pass
    async with SQLiteStore(path):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [
            (v,) for v in range(1, len(SQLITE_MIGRATIONS) + 1)]


async def test_sqlite_refuses_a_schema_newer_than_the_code(tmp_path):
    path = tmp_path / "hub.sqlite3"
    async with SQLiteStore(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version VALUES (?, 'later')", (len(SQLITE_MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError, match="newer than this hub"):
        await SQLiteStore(path).open()
