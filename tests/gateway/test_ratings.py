"""Ratings from a device on the real broker into a real gateway: prompts, acks after commit,
duplicates, quarantine, binding, presence, and the persistent MQTT session across restarts."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from gateway.store import BUSY_TIMEOUT_MS
from hcp.protocol import verify_phone_token


@pytest.fixture
def gw(broker, gateway_factory):
    return gateway_factory(broker, devices=[{"device": "D07", "window": "7"}],
                           phone_url="https://hub.example/")


@pytest.fixture
def dev(broker, device_peers):
    return device_peers(broker, "D07")


def rating_rows(gw, device="D07"):
    return gw.query("SELECT * FROM ratings WHERE device = ? ORDER BY n", (device,))


def test_finished_event_prompts_the_window_device_with_session_ttl_ticket_and_qr(gw, dev):
    ans = gw.post_event(type="finished", ticket="A023", window="7")
    prompt = dev.wait_prompt()
    assert prompt["op"] == "open" and prompt["sess"] == ans["session"] == ans["service"]
    assert prompt["ttl"] == 60 and prompt["tk"] == "A023"
    base, token = prompt["qr"].rsplit("/r/", 1)
    assert base == "https://hub.example"
    claims = verify_phone_token(gw.gateway_key, token, now=time.time())
    assert claims["hall"] == "H1" and claims["svc"] == ans["service"] and claims["win"] == "7"
    assert claims["exp"] > time.time() + 2 * 24 * 3600
    # other events for the ticket do not prompt again
    gw.post_event(type="called", ticket="A024")
    time.sleep(0.3)
    assert len(dev.prompts) == 1


def test_prompt_on_accepted_opens_the_session_at_accepted(broker, gateway_factory, device_peers):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], prompt_on="accepted")
    dev = device_peers(broker, "D07")
    ans = gw.post_event(type="accepted", ticket="B1")
    assert dev.wait_prompt()["sess"] == ans["session"] == ans["service"]
    assert gw.post_event(type="finished", ticket="B1")["session"] == ans["service"]
    time.sleep(0.3)
    assert len(dev.prompts) == 1


def test_prompted_rating_is_acked_ok_only_once_committed_and_is_bound(gw, dev):
    ans = gw.post_event(type="finished", ticket="A023", staff_id="S0107")
    sess = dev.wait_prompt()["sess"]
    rating = dev.rate(1, score=5, sess=sess)
    assert dev.wait_ack(1) == {"v": 1, "n": 1, "st": "ok"}
    # the ack was published after COMMIT: another process sees the row the moment the ack is here
    [row] = rating_rows(gw)
    assert json.loads(row["payload"]) == rating.payload()
    assert (row["service"], row["ticket"], row["staff_id"], row["unbound_reason"]) == \
        (ans["service"], "A023", "S0107", None)
    [out] = gw.query("SELECT * FROM outbox WHERE kind = 'rating'")
    item = json.loads(out["item"])
    assert out["key"] == "rating:D07:1" and item["rating"] == rating.payload()
    assert item["binding"]["service"] == ans["service"] and item["unbound_reason"] is None
    assert item["offset_ms"] == round(row["received_at"] * 1000) - rating.mono
    assert abs(row["received_at"] - time.time()) < 5


def test_no_ack_while_the_commit_cannot_happen(gw, dev):
    """Another process holds the SQLite write lock: the rating waits, unacked, then commits."""
    blocker = sqlite3.connect(gw.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        dev.rate(1)
        time.sleep(1.0)
        assert dev.acks == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert dev.wait_ack(1)["st"] == "ok"
    assert len(rating_rows(gw)) == 1


def test_a_commit_that_fails_is_retried_without_acking_or_losing_the_rating(gw, dev):
    """The write lock is held past the gateway's busy timeout: BEGIN fails, the batch is retried."""
    blocker = sqlite3.connect(gw.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        dev.rate(1)
        time.sleep(BUSY_TIMEOUT_MS / 1000 + 1.0)
        assert dev.acks == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert dev.wait_ack(1)["st"] == "ok"
    assert gw.status()["ingest"]["commit_failures"] >= 1
    assert len(rating_rows(gw)) == 1


def test_resent_rating_is_acked_dup_and_stored_once(gw, dev):
    rating = dev.sign(7, score=2)
    dev.send(rating)
    assert dev.wait_ack(7)["st"] == "ok"
    dev.send(rating)
    dev.send(rating)
    assert dev.wait_ack(7, index=2)["st"] == "dup"
    assert [a["st"] for a in dev.acks_for(7)] == ["ok", "dup", "dup"]
    assert len(rating_rows(gw)) == 1
    assert len(gw.query("SELECT * FROM outbox")) == 1
    assert gw.status()["counters"]["ratings.dup"] == 2


def test_second_rating_for_a_session_is_kept_unbound(gw, dev):
    sess = gw.post_event()["session"]
    dev.rate(1, sess=sess)
    dev.rate(2, sess=sess)
    dev.rate(3, sess="feedfacefeedface")
    dev.wait_ack(3)
    reasons = [r["unbound_reason"] for r in rating_rows(gw)]
    assert reasons == [None, "session_already_rated", "unknown_session"]


def test_local_session_rating_binds_to_the_service_in_progress_at_the_window(gw, dev):
    dev.rate(1, sess=None)  # nothing is being served at window 7 yet
    dev.wait_ack(1)
    started = gw.post_event(type="started", ticket="C9", staff_id=..., matter_code=...)
    gw.post_event(type="started", ticket="Z1", window="8", staff_id=..., matter_code=...)
    dev.rate(2, sess=None)
    dev.wait_ack(2)
    rows = rating_rows(gw)
    assert rows[0]["unbound_reason"] == "no_service_in_progress" and rows[0]["service"] is None
    assert rows[1]["service"] == started["service"] and rows[1]["ticket"] == "C9"


def _raw(device, n=5, **changes):
    obj = {**device.sign(n).payload(), **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


@pytest.mark.parametrize("make, reason, acked", [
    (lambda d: b"\xff\xfenot json", "bad_json", False),
    (lambda d: b"[5]", "bad_json", False),
    (lambda d: _raw(d).decode().encode("utf-16"), "bad_json", True),
    (lambda d: _raw(d, v=2), "bad_version", True),
    (lambda d: _raw(d, score=6), "bad_field:score", True),
    (lambda d: _raw(d, score=True), "bad_field:score", True),
    (lambda d: _raw(d, sig=...), "missing_field:sig", True),
    (lambda d: _raw(d, dev="D08"), "topic_mismatch", True),
    (lambda d: _raw(d, n=0), "bad_field:n", False),
    (lambda d: _raw(d, pad="x" * 1100), "too_large", True),
])
def test_bad_rating_is_quarantined_with_its_reason_and_the_gateway_goes_on(gw, dev, make, reason,
                                                                         acked):
    dev.publish("rating", make(dev))
    dev.rate(9)  # a good one after it: still committed and acked
    assert dev.wait_ack(9)["st"] == "ok"
    [q] = gw.wait_rows("SELECT * FROM quarantine")
    assert q["reason"] == reason and q["topic"] == "hcp/v1/H1/D07/rating"
    assert bytes(q["payload"]) == make(dev)[:4096] and q["size"] == len(make(dev))
    assert [a["st"] for a in dev.acks if a["n"] == 5] == (["bad"] if acked else [])
    st = gw.status()
    assert st["counters"][f"quarantine.{reason}"] == 1 and st["quarantine"] == {reason: 1}
    assert len(rating_rows(gw)) == 1


def test_rating_from_an_unregistered_device_is_quarantined_unacked_until_registered(
        gw, broker, device_peers):
    stranger = device_peers(broker, "D55")
    stranger.rate(1)
    [q] = gw.wait_rows("SELECT * FROM quarantine")
    assert q["reason"] == "unknown_device" and q["device"] == "D55" and q["n"] == 1
    stranger.rate(1)  # the device keeps it and resends: one quarantine row, counted twice
    gw.wait_status(lambda st: st["counters"].get("quarantine.unknown_device") == 2)
    assert stranger.acks == [] and len(gw.query("SELECT * FROM quarantine")) == 1
    seen = {d["device"]: d for d in gw.status()["devices"]}["D55"]
    assert seen["registered"] is False and seen["presence"] == "online"
    gw.register_device("D55", "9")
    stranger.rate(1)
    assert stranger.wait_ack(1)["st"] == "ok"
    assert len(rating_rows(gw, "D55")) == 1


def test_same_counter_with_another_payload_is_a_conflict_kept_and_forwarded(gw, dev):
    first = dev.rate(4, score=5)
    assert dev.wait_ack(4)["st"] == "ok"
    other = dev.rate(4, score=1)
    assert dev.wait_ack(4, index=1)["st"] == "bad"
    dev.send(other)  # resent before the device saw `bad`: same answer, no second copy
    assert dev.wait_ack(4, index=2)["st"] == "bad"
    [row] = rating_rows(gw)
    assert json.loads(row["payload"]) == first.payload()  # the first stays the gateway's rating
    [q] = gw.query("SELECT * FROM quarantine")
    assert q["reason"] == "conflict" and q["repeats"] == 1
    items = [json.loads(r["item"]) for r in gw.query("SELECT item FROM outbox ORDER BY seq")]
    assert [i["rating"]["score"] for i in items] == [5, 1]  # the hub, holding the keys, decides


def test_presence_follows_boot_and_conn_and_ignores_a_stale_offline(gw, dev):
    def presence():
        return {d["device"]: d for d in gw.status()["devices"]}["D07"]

    gw.wait_status(lambda st: st["devices"][0]["presence"] == "online")
    dev.publish("status", dev.status_payload("online", "1.0", boot=3, conn=2), retain=True)
    gw.wait_status(lambda st: st["devices"][0]["boot"] == 3)
    # the last will of an older connection arrives late: ignored
    dev.publish("status", dev.status_payload("offline", boot=3, conn=1), retain=True)
    dev.publish("status", dev.status_payload("offline", boot=2, conn=9), retain=True)
    gw.wait_status(lambda st: st["counters"].get("status.stale") == 2)
    assert (presence()["presence"], presence()["conn"]) == ("online", 2)
    # the will of the current connection applies; its birth re-delivered afterwards does not
    dev.publish("status", dev.status_payload("offline", boot=3, conn=2), retain=True)
    gw.wait_status(lambda st: st["devices"][0]["presence"] == "offline")
    dev.publish("status", dev.status_payload("online", boot=3, conn=2), retain=True)
    gw.wait_status(lambda st: st["counters"].get("status.stale") == 3)
    assert presence()["presence"] == "offline" and presence()["fw"] == "1.0"


def test_health_is_stored_and_bad_health_quarantined(gw, dev):
    health = {"v": 1, "boot": 1, "up": 5000, "heap": 40912, "ob": 2, "fw": "0.1.0", "rssi": None,
              "clock": "mono", "cnt": {"press": 5}, "err": None}
    dev.publish("health", json.dumps(health), qos=0)
    dev.publish("health", json.dumps({**health, "heap": -1}), qos=0)
    st = gw.wait_status(lambda st: st["devices"][0]["health"] is not None and st["quarantine"])
    assert st["devices"][0]["health"] == health
    assert st["quarantine"] == {"bad_field:heap": 1}


def test_ratings_sent_while_the_gateway_is_stopped_arrive_when_it_returns(gw, dev):
    dev.rate(1)
    dev.wait_ack(1)
    assert gw.stop() == 0
    for n in (2, 3, 4):
        dev.rate(n)  # Mosquitto queues them for the persistent session gw-H1
    time.sleep(0.2)
    assert len(rating_rows(gw)) == 1
    gw.start()
    for n in (2, 3, 4):
        assert dev.wait_ack(n)["st"] == "ok"
    assert [r["n"] for r in rating_rows(gw)] == [1, 2, 3, 4]


def test_gateway_reconnects_after_a_broker_restart_and_keeps_receiving(gw, broker, device_peers):
    first = device_peers(broker, "D07")
    first.rate(1)
    first.wait_ack(1)
    first.disconnect()
    broker.restart()
    gw.wait_status(lambda st: st["mqtt"]["connects"] >= 2, timeout=20)
    again = device_peers(broker, "D07")
    again.rate(2)
    assert again.wait_ack(2)["st"] == "ok"
