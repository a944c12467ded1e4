"""Outbox -> hub: batches in order, per-item answers, retries while the hub is away, resumption after
a restart. Most tests use `mini_hub` (conftest.py), a real HTTP endpoint whose answers a test can
steer; the last one runs against the real hub process."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.fixtures.device import device_key


def outbox(gw):
    return gw.query("SELECT seq, kind, key, state, attempts, last_error FROM outbox ORDER BY seq")


def states(gw):
    return [r["state"] for r in outbox(gw)]


def wait_states(gw, want, timeout=10.0):
    gw.wait_status(lambda st: st["outbox"] == want, timeout)


@pytest.fixture
def gw(broker, gateway_factory, mini_hub):
    return gateway_factory(broker, hub_url=mini_hub.url, hub_token=mini_hub.token,
                           devices=[{"device": "D07", "window": "7"}])


@pytest.fixture
def dev(broker, device_peers):
    return device_peers(broker, "D07")


def test_items_reach_the_hub_in_order_in_one_envelope_and_are_marked_sent(gw, dev, mini_hub):
    svc = gw.post_event(ticket="A023")["service"]
    rating = dev.rate(1, sess=svc)
    dev.wait_ack(1)
    st = gw.wait_status(lambda st: st["outbox"] == {"pending": 0, "sent": 2, "dead": 0})
    assert st["hub"]["state"] == "up" and st["hub"]["last_ok_at"] is not None
    items = [i for env in mini_hub.posts for i in env["items"]]
    assert all(env["v"] == 1 and env["hall"] == "H1" for env in mini_hub.posts)
    assert [i["kind"] for i in items] == ["service", "rating"]
    assert items[0]["id"] == svc and items[0]["outcome"] == "finished"
    assert items[1]["rating"] == rating.payload() and items[1]["binding"]["service"] == svc
    assert items[1]["received_at"].count(":") == 3  # ISO 8601 with ms and a UTC offset
    assert st["counters"]["forward.accepted"] == 2


def test_a_rejected_item_is_a_dead_letter_with_its_reason_and_the_rest_go_on(gw, dev, mini_hub):
    mini_hub.reject["rating:D07:2"] = "bad_signature"
    for n in (1, 2, 3):
        dev.rate(n)
    wait_states(gw, {"pending": 0, "sent": 2, "dead": 1})
    dead = [r for r in outbox(gw) if r["state"] == "dead"]
    assert [(r["key"], r["last_error"]) for r in dead] == [("rating:D07:2", "bad_signature")]
    assert gw.status()["counters"]["forward.rejected"] == 1


def test_a_rejection_without_a_key_is_matched_by_position(gw, dev, mini_hub):
    """The hub answers `key: null` for an item too broken to name; the batch must not loop."""
    mini_hub.reject["rating:D07:2"] = "bad_json"
    mini_hub.keyless.add("rating:D07:2")
    for n in (1, 2, 3):
        dev.rate(n)
    wait_states(gw, {"pending": 0, "sent": 2, "dead": 1})
    dead = [r for r in outbox(gw) if r["state"] == "dead"]
    assert [(r["key"], r["last_error"]) for r in dead] == [("rating:D07:2", "bad_json")]


def test_items_wait_while_the_hub_is_down_and_go_when_it_is_back(gw, dev, mini_hub):
    mini_hub.down = True
    dev.rate(1)
    dev.wait_ack(1)  # the device is done with it: the gateway owns it now
    st = gw.wait_status(lambda st: st["hub"]["failures"] >= 2)
    assert st["hub"]["state"] == "down" and "503" in st["hub"]["last_error"]
    assert st["outbox"]["pending"] == 1
    [row] = outbox(gw)
    assert row["attempts"] >= 2 and row["state"] == "pending"
    mini_hub.down = False
    wait_states(gw, {"pending": 0, "sent": 1, "dead": 0})
    assert gw.status()["hub"]["state"] == "up"


def test_a_wrong_hub_token_keeps_items_pending_and_shows_unauthorized(broker, gateway_factory,
                                                                      mini_hub):
    gw = gateway_factory(broker, hub_url=mini_hub.url, hub_token="not-the-token")
    gw.post_event(window="99")
    st = gw.wait_status(lambda st: st["hub"]["state"] == "unauthorized")
    assert st["outbox"] == {"pending": 1, "sent": 0, "dead": 0}


def test_a_killed_gateway_resumes_forwarding_its_pending_rows_after_restart(gw, dev, mini_hub):
    mini_hub.down = True
    for n in range(1, 6):
        dev.rate(n)
    dev.wait_ack(5)
    gw.kill()
    assert [r["state"] for r in outbox(gw)] == ["pending"] * 5
    mini_hub.down = False
    gw.start()
    wait_states(gw, {"pending": 0, "sent": 5, "dead": 0})
    keys = [i["rating"]["n"] for env in mini_hub.posts for i in env["items"]]
    assert keys == [1, 2, 3, 4, 5]


def test_an_item_the_hub_already_has_is_answered_duplicate_and_marked_sent(gw, dev, mini_hub):
    dev.rate(1)
    wait_states(gw, {"pending": 0, "sent": 1, "dead": 0})
    assert gw.stop() == 0
    # as if the gateway had died after the hub committed but before it marked the row sent
    with sqlite3.connect(gw.db_path) as db:
        db.execute("UPDATE outbox SET state = 'pending', sent_at = NULL")
    gw.start()
    wait_states(gw, {"pending": 0, "sent": 1, "dead": 0})
    assert gw.status()["counters"]["forward.duplicate"] == 1
    assert len(mini_hub.items) == 1


def test_the_real_hub_accepts_signed_items_and_rejects_a_forged_rating(
        broker, gateway_factory, device_peers, hub_server):
    hub = hub_server
    key = device_key("gateway:H1")
    token = hub.register_gateway("H1", key)
    hub.register_device("D07", "H1", "7", device_key("D07"))
    gw = gateway_factory(broker, hub_url=hub.url, hub_token=token,
                         devices=[{"device": "D07", "window": "7"}])
    assert gw.gateway_key == key
    dev = device_peers(broker, "D07")
    sess = gw.post_event(ticket="A023")["session"]
    dev.rate(1, score=4, sess=sess)
    forged = dev.sign(2, score=1)
    forged = type(forged)(**{**forged.__dict__, "sig": "0" * 64})
    dev.send(forged)
    dev.wait_ack(2)
    st = gw.wait_status(lambda st: st["outbox"]["pending"] == 0, timeout=15)
    assert st["outbox"] == {"pending": 0, "sent": 2, "dead": 1}, gw.log_text()[-2000:]
    dead = [(r["key"], r["last_error"]) for r in outbox(gw) if r["state"] == "dead"]
    assert dead == [("rating:D07:2", "bad_signature")]
    assert json.loads(gw.query("SELECT payload FROM ratings WHERE n = 2")[0]["payload"]) == \
        forged.payload()  # the gateway keeps what it was sent; the hub judges signatures
