"""The device registry of a real gateway process on a real broker: presence by (boot, conn) with the
heartbeat timeout, the last will, key ids from ratings and from the `info` reply, and the schema step
that brought the registry's tables; plus the presence ordering rule as a pure function under
hypothesis."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

from hypothesis import given
from hypothesis import strategies as st

from gateway.presence import APPLIED, REPEAT, STALE, StatusKey, decide, effective
from gateway.schema import MIGRATIONS
from gateway.store import Store
from hcp.protocol import key_id
from tests.fixtures.device import device_key

FAST = {"registry_sweep_s": 0.1, "alert_offline_after_s": 0.5}


def device(gw, name="D07"):
    return {d["device"]: d for d in gw.status()["devices"]}[name]


def open_alerts(st, kind=None):
    return [a for a in st["alerts"]["open"] if kind is None or a["kind"] == kind]


# ---------------------------------------------------------------------------- presence ordering (pure)

statuses = st.tuples(st.sampled_from(["online", "offline"]), st.integers(0, 4), st.integers(0, 4))


@given(st.lists(statuses, min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_presence_ends_at_the_newest_status_whatever_the_delivery_order(sent, rnd):
    """Mosquitto may deliver statuses late, twice (retained) or out of order: folding `decide`
    over any delivery order ends at the highest (boot, conn, offline-after-online)."""
    delivered = sent + rnd.sample(sent, k=len(sent) // 2)  # some delivered again (retained)
    rnd.shuffle(delivered)
    applied = None
    for state, boot, conn in delivered:
        key = StatusKey.of(state, boot, conn)
        outcome = decide(applied, key)
        if outcome == APPLIED:
            assert applied is None or key > applied
            applied = key
        elif outcome == REPEAT:
            assert key == applied
        else:
            assert outcome == STALE and key < applied
    assert applied == max(StatusKey.of(*s) for s in sent)


@given(st.integers(0, 100), st.integers(1, 100), st.integers(0, 100), st.integers(0, 100))
def test_a_death_older_than_the_applied_birth_is_stale(boot, conn, old_boot, old_conn):
    birth = StatusKey.of("online", boot, conn)
    death = StatusKey.of("offline", old_boot, old_conn)
    if (old_boot, old_conn) < (boot, conn):
        assert decide(birth, death) == STALE
    elif (old_boot, old_conn) == (boot, conn):
        assert decide(birth, death) == APPLIED  # the will of this very connection
    else:
        assert decide(birth, death) == APPLIED


def test_effective_presence_puts_the_heartbeat_timeout_over_an_online_status():
    assert effective("online", 10.0, None, 1.0) == ("online", None, 10.0)
    assert effective("online", 10.0, 50.0, 1.0) == ("offline", "timeout", 50.0)
    assert effective("offline", 20.0, 50.0, 1.0) == ("offline", "status", 20.0)
    assert effective(None, None, None, 1.0) == (None, "never_seen", 1.0)


# ---------------------------------------------------------------------------- presence (real gateway)


def test_a_stale_death_is_ignored_and_the_current_will_raises_offline_until_the_next_birth(
        broker, gateway_factory, device_peers):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], **FAST)
    dev = device_peers(broker, "D07")
    dev.publish("status", dev.status_payload("online", "1.0", boot=2, conn=1), retain=True)
    gw.wait_status(lambda st: st["devices"][0]["boot"] == 2)
    gw.wait_status(lambda st: st["counters"].get("cmd.info"))  # asked once settled: judging now
    # the will of a connection of the previous boot, delivered late: ignored
    dev.publish("status", dev.status_payload("offline", boot=1, conn=5), retain=True)
    gw.wait_status(lambda st: st["counters"].get("status.stale") == 1)
    time.sleep(1.0)  # twice the alert delay: a stale death must not have raised anything
    st = gw.status()
    assert st["devices"][0]["presence"] == "online" and st["devices"][0]["boot"] == 2
    assert open_alerts(st) == [] and st["summary"]["online"] == 1
    # the will of the current connection: offline, and an alert after `alert_offline_after_s`
    dev.publish("status", dev.status_payload("offline", boot=2, conn=1), retain=True)
    st = gw.wait_status(lambda st: open_alerts(st, "offline"))
    d = st["devices"][0]
    assert (d["presence"], d["offline_reason"]) == ("offline", "status")
    assert "last will" in open_alerts(st)[0]["detail"]
    assert st["summary"] == {**st["summary"], "online": 0, "offline": 1}
    # the next birth clears it; the alert is kept as cleared, with its times
    dev.publish("status", dev.status_payload("online", boot=2, conn=2), retain=True)
    st = gw.wait_status(lambda st: not open_alerts(st))
    cleared = st["alerts"]["recent"][0]
    assert cleared["kind"] == "offline" and cleared["cleared_by"] == "condition"
    assert cleared["raised_at"] < cleared["cleared_at"]
    assert st["devices"][0]["presence"] == "online"


def test_a_dropped_connection_goes_offline_by_its_last_will(broker, gateway_factory, device_peers):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], **FAST)
    dev = device_peers(broker, "D07")
    gw.wait_status(lambda st: st["devices"][0]["presence"] == "online")
    dev.drop()  # no DISCONNECT: the broker publishes the will registered at CONNECT
    st = gw.wait_status(lambda st: open_alerts(st, "offline"), timeout=15)
    assert st["devices"][0]["offline_reason"] == "status"
    assert st["counters"]["status.offline"] == 1


def test_a_silent_device_goes_offline_after_n_health_periods_and_comes_back_with_its_next_health(
        broker, gateway_factory, device_peers):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}],
                         offline_after_periods=3, **FAST)
    dev = device_peers(broker, "D07")
    dev.health(up=10_000)
    time.sleep(1.0)
    dev.health(up=11_000)  # its own period: 1 s (the setting says 60)
    t0 = time.monotonic()
    d = gw.wait_status(lambda st: st["devices"][0]["health_period_s"] == 1.0)["devices"][0]
    assert d["presence"] == "online"
    st = gw.wait_status(lambda st: st["devices"][0]["presence"] == "offline", timeout=10)
    silent = time.monotonic() - t0
    assert 2.9 <= silent <= 8.0, silent  # 3 periods after the last health, not 3 x 60 s
    d = st["devices"][0]
    assert d["offline_reason"] == "timeout" and d["timed_out_at"] is not None
    assert st["counters"]["presence.timeout"] == 1
    st = gw.wait_status(lambda st: open_alerts(st, "offline"))
    assert "heartbeat timeout" in open_alerts(st)[0]["detail"]
    dev.health(up=11_000 + int((time.monotonic() - t0) * 1000))  # its clock ran on meanwhile
    st = gw.wait_status(lambda st: st["devices"][0]["presence"] == "online" and not open_alerts(st))
    assert st["counters"]["presence.back"] == 1 and "alerts.raised.clock_offset" not in st["counters"]


def test_a_device_that_never_sent_health_times_out_on_the_configured_period(
        broker, gateway_factory, device_peers):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}],
                         health_period_s=0.5, offline_after_periods=2, **FAST)
    device_peers(broker, "D07")
    st = gw.wait_status(lambda st: st["devices"][0]["offline_reason"] == "timeout", timeout=10)
    assert st["devices"][0]["health_period_s"] is None


def test_a_registered_device_that_never_connects_raises_offline(broker, gateway_factory):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], **FAST)
    st = gw.wait_status(lambda st: open_alerts(st, "offline"), timeout=10)
    assert "never connected" in open_alerts(st)[0]["detail"]
    assert st["devices"][0]["presence"] is None and st["summary"]["never_seen"] == 1


def test_no_device_is_judged_while_the_gateway_cannot_hear_the_broker(
        broker, gateway_factory, device_peers):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}],
                         health_period_s=1.0, offline_after_periods=2, **FAST)
    dev = device_peers(broker, "D07")
    gw.wait_status(lambda st: st["devices"][0]["presence"] == "online")
    dev.disconnect()
    broker.stop()
    time.sleep(4.0)  # twice the timeout, with the broker away
    st = gw.status()
    assert st["mqtt"]["connected"] is False
    assert st["devices"][0]["presence"] == "online" and "presence.timeout" not in st["counters"]
    assert open_alerts(st) == []


# ---------------------------------------------------------------------------- key ids


def test_key_ids_come_from_the_info_reply_of_each_new_connection_and_from_ratings(
        broker, gateway_factory, device_peers):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], **FAST)
    dev = device_peers(broker, "D07")
    deadline = time.monotonic() + 10
    while not dev.cmds and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dev.cmds == [{"v": 1, "id": "info-1-1", "op": "info", "args": {}}]
    reply = {"v": 1, "id": "info-1-1", "ok": True,
             "res": {"dev": "D07", "hall": "H1", "window": "7", "fw": "0.1.0", "boot": 1,
                     "kid": "0badc0de", "lang": "zh-Hans"}}
    dev.publish("cmd/reply", json.dumps(reply))
    d = gw.wait_status(lambda st: st["devices"][0]["kid"] == "0badc0de")["devices"][0]
    assert [(k["kid"], k["source"]) for k in d["keys"]] == [("0badc0de", "info")]
    # a rating signed with another key (the device was re-provisioned): both keys are known,
    # the newest first
    dev.rate(1)
    dev.wait_ack(1)
    kid = key_id(dev.key)
    d = gw.wait_status(lambda st: st["devices"][0]["kid"] == kid)["devices"][0]
    assert [(k["kid"], k["source"]) for k in d["keys"]] == [(kid, "rating"), ("0badc0de", "info")]
    # a new connection is asked again; a reply that fails or carries no usable kid changes nothing
    dev.disconnect()
    dev.connect()
    deadline = time.monotonic() + 10
    while len(dev.cmds) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c["id"] for c in dev.cmds] == ["info-1-1", "info-1-2"]
    dev.publish("cmd/reply", json.dumps({"v": 1, "id": "info-1-2", "ok": True, "res": {"kid": "XYZ"}}))
    dev.publish("cmd/reply", json.dumps({"v": 1, "id": "info-1-2", "ok": False, "err": "busy"}))
    gw.wait_status(lambda st: st["counters"].get("cmd_reply") == 3)
    assert len(device(gw)["keys"]) == 2


# ---------------------------------------------------------------------------- schema step


def test_the_registry_schema_step_keeps_the_outbox_rows_their_seq_and_the_sequence(tmp_path):
    path = tmp_path / "gw.sqlite3"
    with sqlite3.connect(path) as db:  # a gateway file of schema version 1, in use for a while
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        for seq, state in ((1, "sent"), (2, "dead"), (3, "pending")):
            db.execute("INSERT INTO outbox (seq, kind, key, item, state, created_at) "
                       "VALUES (?, 'rating', ?, '{}', ?, 1.0)", (seq, f"rating:D07:{seq}", state))
        db.execute("UPDATE sqlite_sequence SET seq = 7 WHERE name = 'outbox'")  # rows 4-7: never kept

    async def reopen():
        store = await Store.open(path)
        async with store.transaction() as tx:
            new = await tx.outbox_put("alert", "alert:H1:1:raised", {"kind": "alert"}, 2.0)
            depth = await tx.outbox_depth()
            rows = [tuple(r) for r in await tx.all("SELECT seq, kind, state FROM outbox ORDER BY seq")]
        await store.close()
        return new, depth, rows

    new, depth, rows = asyncio.run(reopen())
    assert rows == [(1, "rating", "sent"), (2, "rating", "dead"), (3, "rating", "pending"),
                    (8, "alert", "pending")]
    assert new == 8  # AUTOINCREMENT never reuses a seq, across the rebuild too
    assert depth == {"pending": 2, "sent": 1, "dead": 1}


def test_the_real_firmware_tells_its_key_id_and_health_before_any_rating(
        broker, gateway_factory, device_factory):
    """The `info` command and the health as the firmware really sends them (MicroPython, host
    board): the gateway knows the device's kid, its health period and clock offset, no rating yet."""
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], **FAST)
    dev = device_factory("D07", broker=broker, health_s=5)  # the firmware's shortest period
    dev.wait_event("online")
    st = gw.wait_status(lambda st: st["devices"][0]["kid"] is not None
                        and st["devices"][0]["clock"] is not None, timeout=20)
    d = st["devices"][0]
    assert d["kid"] == key_id(device_key("D07")) and d["keys"][0]["source"] == "info"
    assert d["last_rating"] is None and d["presence"] == "online"
    assert d["clock"]["boot"] == d["boot"] and d["health"]["up"] >= 5000
    assert st["counters"]["cmd.info"] == 1 and open_alerts(st) == []


def test_a_bug_in_the_registry_bookkeeping_never_costs_a_rating_its_commit(tmp_path, monkeypatch):
    """The writer's transaction in-process (no MQTT): the hook fails, the rating is stored, acked
    `ok` and queued for the hub all the same; the failure is counted."""
    from gateway.mqtt import Inbound
    from hcp.protocol import sign_rating

    async def boom(*args, **kwargs):
        raise RuntimeError("a bug in the gap bookkeeping")

    async def run():
        store, registry, ingest = await _writer_with_registry(tmp_path)
        monkeypatch.setattr(registry, "_counter", boom)
        rating = sign_rating(device_key("D07"), "H1", "D07", 1, 1, 500, None, 5)
        payload = json.dumps(rating.payload(), separators=(",", ":")).encode()
        acks, _ = await ingest.commit([Inbound("hcp/v1/H1/D07/rating", payload, 1, 1, False, 2.0)])
        async with store.read() as tx:
            stored = await tx.one("SELECT score FROM ratings WHERE device = 'D07' AND n = 1")
            queued = await tx.one("SELECT key FROM outbox WHERE kind = 'rating'")
            keys = await tx.all("SELECT kid FROM device_keys")
            counters = await tx.counters()
        await store.close()
        return acks, stored, queued, keys, counters

    acks, stored, queued, keys, counters = asyncio.run(run())
    assert [(a.n, a.status) for a in acks] == [(1, "ok")]
    assert stored["score"] == 5 and queued["key"] == "rating:D07:1"
    assert keys == []  # the hook's own writes were undone with it
    assert counters["registry.errors"] == 1 and counters["ratings.ok"] == 1


def test_a_bug_on_one_message_of_a_group_quarantines_it_alone_and_commits_the_rest(tmp_path,
                                                                                  monkeypatch):
    """The writer runs a group without savepoints first (ingest.py, `Ingest.commit`); a message
    that trips a bug rolls that attempt back and the group runs again message by message: the
    culprit is quarantined as `internal_error` and not acked, its neighbours are stored, queued for
    the hub and acked, and the registry hooks ran once for each of them (no doubled bookkeeping)."""
    from gateway import ingest as ingest_mod
    from gateway.mqtt import Inbound
    from hcp.protocol import sign_rating

    real_bind = ingest_mod.bind_rating

    async def bind(tx, rating, *args):
        if rating.n == 3:
            raise RuntimeError("a bug in binding")
        return await real_bind(tx, rating, *args)

    async def run():
        monkeypatch.setattr(ingest_mod, "bind_rating", bind)
        store, registry, ingest = await _writer_with_registry(tmp_path)
        batch = []
        for n in range(1, 8):
            rating = sign_rating(device_key("D07"), "H1", "D07", n, 1, 500 + n, None, 5)
            payload = json.dumps(rating.payload(), separators=(",", ":")).encode()
            batch.append(Inbound("hcp/v1/H1/D07/rating", payload, 1, n, False, 2.0 + n))
        acks, new_outbox = await ingest.commit(batch[:5])
        async with store.read() as tx:
            after_isolated = await tx.device("D07")
        # the next group takes the fast path again: device updates deferred to one per group
        fast_acks, _ = await ingest.commit(batch[5:] + batch[:2])
        async with store.read() as tx:
            after_fast = await tx.device("D07")
            stored = [r["n"] for r in await tx.all("SELECT n FROM ratings ORDER BY n")]
            queued = [r["key"] for r in await tx.all("SELECT key FROM outbox ORDER BY seq")]
            bad = await tx.all("SELECT n, reason, detail FROM quarantine")
            boots = await tx.all("SELECT boot, rise FROM device_boots")
            gaps = await tx.all("SELECT * FROM rating_gaps")
            counters = await tx.counters()
        await store.close()
        return (ingest, acks, new_outbox, fast_acks, stored, queued, bad, boots, gaps, counters,
                after_isolated, after_fast)

    (ingest, acks, new_outbox, fast_acks, stored, queued, bad, boots, gaps, counters,
     after_isolated, after_fast) = asyncio.run(run())
    assert [(a.n, a.status) for a in acks] == [(1, "ok"), (2, "ok"), (4, "ok"), (5, "ok")]
    assert new_outbox and ingest.isolated_retries == 1
    assert [(a.n, a.status) for a in fast_acks] == [(6, "ok"), (7, "ok"), (1, "dup"), (2, "dup")]
    assert stored == [1, 2, 4, 5, 6, 7]
    assert queued == [f"rating:D07:{n}" for n in (1, 2, 4, 5, 6, 7)]
    assert (after_isolated.last_rating_n, after_isolated.last_rating_at,
            after_isolated.last_seen) == (5, 7.0, 7.0)
    assert (after_fast.last_rating_n, after_fast.last_rating_at,
            after_fast.last_seen) == (7, 9.0, 9.0)
    assert [(r["n"], r["reason"]) for r in bad] == [(None, "internal_error")]
    assert "a bug in binding" in bad[0]["detail"]
    assert [(r["boot"], r["rise"]) for r in boots] == [(1, 0)]
    assert [(g["n_from"], g["n_to"]) for g in gaps] == [(3, 3)]  # the lost one is a counter gap
    assert counters["ratings.ok"] == 6 and counters["ratings.dup"] == 2
    assert counters["quarantine.internal_error"] == 1 and "registry.errors" not in counters


async def _writer_with_registry(tmp_path):
    """The gateway's writer on a fresh store with D07 registered at window 7, registry hooks on.
    -> (store, registry, ingest)."""
    from gateway.config import GatewaySettings
    from gateway.ingest import Ingest
    from gateway.registry import Registry

    store = await Store.open(tmp_path / "gw.sqlite3")
    async with store.transaction() as tx:
        await tx.register_device("D07", "7", 1.0)
    cfg = GatewaySettings(hall="H1", data_dir=tmp_path, hub_url="http://hub", hub_token="t",
                          gateway_key="00" * 32, queue_token="q", admin_token="a")
    registry = Registry(store, cfg, publish=lambda *a: None, on_outbox=lambda: None,
                        link=lambda: (True, 1))
    ingest = Ingest(store, "H1", 120, publish=lambda *a: None, ack_broker=lambda m: None,
                    on_outbox=lambda: None, registry=registry)
    return store, registry, ingest
