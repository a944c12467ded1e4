"""The queue-system webhook and the admin/status endpoints of a real gateway process."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.mqtt import MqttPeer


@pytest.fixture
def gw(broker, gateway_factory):
    return gateway_factory(broker, devices=[{"device": "D07", "window": "7"}])


def test_event_without_the_queue_token_is_refused_and_counted(gw):
    event = gw.event()
    assert gw.post("/api/v1/queue/events", event).status_code == 401
    assert gw.post("/api/v1/queue/events", event, token="wrong").status_code == 401
    assert gw.post("/api/v1/queue/events", event, token=gw.admin_token).status_code == 401
    assert gw.status()["counters"]["webhook.unauthorized"] == 3
    assert gw.query("SELECT * FROM queue_events") == []
    # the refused event was not recorded: posting it with the token now is new, not a duplicate
    assert gw.post("/api/v1/queue/events", event, gw.queue_token).json()["status"] == "accepted"


@pytest.mark.parametrize("body, reason", [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_json"),
    ({"v": 2}, "bad_version"),
    ({"v": True}, "bad_version"),
    ({"ticket": ...}, "missing_field:ticket"),
    ({"staff_id": ...}, "missing_field:staff_id"),  # required for `finished`
    ({"type": "lunch"}, "bad_field:type"),
    ({"at": "yesterday"}, "bad_field:at"),
    ({"at": "2026-11-21T09:30:00"}, "bad_field:at"),  # no UTC offset
    ({"window": "7/8"}, "bad_field:window"),
    ({"event_id": "x" * 65}, "bad_field:event_id"),
    ({"replay": "yes"}, "bad_field:replay"),
    ("x" * 20000, "too_large"),
])
def test_bad_event_is_answered_400_with_its_reason_and_counted(gw, body, reason):
    if isinstance(body, dict):
        body = gw.event(**body)
    resp = gw.post("/api/v1/queue/events", body, gw.queue_token)
    assert resp.status_code == 400
    assert resp.json() == {"v": 1, "error": reason}
    assert gw.status()["counters"][f"http.bad.{reason}"] == 1
    assert gw.query("SELECT * FROM services") == []


def test_same_event_id_is_answered_duplicate_with_the_first_answer(gw):
    event = gw.event(event_id="q-100234", ticket="A023")
    first = gw.post("/api/v1/queue/events", event, gw.queue_token).json()
    again = gw.post("/api/v1/queue/events", event, gw.queue_token).json()
    assert first["status"] == "accepted" and first["session"] == first["service"]
    assert again == {**first, "status": "duplicate"}
    assert len(gw.query("SELECT * FROM services")) == 1
    assert len(gw.query("SELECT * FROM outbox WHERE kind = 'service'")) == 1


def test_a_service_runs_from_the_first_event_to_finished_and_then_goes_to_the_outbox(gw):
    called = gw.post_event(type="called", ticket="A023", staff_id=..., matter_code=...)
    accepted = gw.post_event(type="accepted", ticket="A023", staff_id="S0107")
    assert called["service"] == accepted["service"] and called["session"] is None
    assert gw.query("SELECT * FROM outbox") == []  # not ended: nothing to send yet
    finished = gw.post_event(type="finished", ticket="A023", at="2026-11-21T09:30:00+08:00")
    assert finished["service"] == called["service"]
    [svc] = gw.query("SELECT * FROM services")
    assert (svc["state"], svc["outcome"], svc["staff_id"]) == ("ended", "finished", "S0107")
    [row] = gw.query("SELECT * FROM outbox")
    item = json.loads(row["item"])
    assert row["key"] == f"service:H1:{svc['id']}" and row["state"] == "pending"
    assert item["kind"] == "service" and item["id"] == svc["id"] and item["outcome"] == "finished"
    assert item["finished_at"] == "2026-11-21T09:30:00+08:00"
    assert item["case_no"] == "2026112100015" and item["unit"] == "市市场监督管理局"
    # the same ticket at the same window later is a new service
    assert gw.post_event(type="called", ticket="A023")["service"] != called["service"]


def test_no_show_ends_the_service_without_a_session(gw):
    ans = gw.post_event(type="no_show", ticket="A024", staff_id=..., matter_code=...)
    assert ans["session"] is None
    [svc] = gw.query("SELECT state, outcome FROM services")
    assert tuple(svc) == ("ended", "no_show")


def test_no_show_after_accepted_cancels_the_open_prompt(broker, gateway_factory):
    gw = gateway_factory(broker, prompt_on="accepted", devices=[{"device": "D07", "window": "7"}])
    peer = MqttPeer(broker.port, subscribe="hcp/v1/H1/D07/prompt", client_id="peer")
    try:
        opened = gw.post_event(type="accepted", ticket="A025")
        assert opened["session"] == opened["service"]
        [first] = peer.wait("prompt")
        assert json.loads(first.payload)["op"] == "open"
        gw.post_event(type="no_show", ticket="A025")
        cancel = json.loads(peer.wait("prompt", count=2)[1].payload)
        assert cancel == {"v": 1, "op": "cancel", "sess": opened["session"]}
        [svc] = gw.query("SELECT state, outcome FROM services")
        assert tuple(svc) == ("ended", "no_show")
    finally:
        peer.close()


def test_window_without_a_device_records_the_event_with_session_null_and_a_reason(gw):
    ans = gw.post_event(window="99")
    assert ans["status"] == "accepted" and ans["session"] is None
    assert ans["reason"] == "no_device_for_window"
    assert len(gw.query("SELECT * FROM queue_events")) == 1


def test_device_registered_at_run_time_gets_the_window_sessions(gw):
    body = {"device": "D99", "window": "12"}
    assert gw.post("/api/v1/devices", body).status_code == 401
    assert gw.post("/api/v1/devices", body, gw.queue_token).status_code == 401
    bad = gw.post("/api/v1/devices", {"device": "D 99", "window": "12"}, gw.admin_token)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_field:device"
    assert gw.register_device("D99", "12") == body
    assert gw.post_event(window="12")["session"] is not None
    devices = {d["device"]: d for d in gw.status()["devices"]}
    assert devices["D99"]["window"] == "12" and devices["D99"]["registered"]


def test_status_and_healthz(gw):
    assert gw.http.get(gw.url + "/healthz").json() == {"v": 1, "ok": True}
    st = gw.status()
    assert st["hall"] == "H1" and st["mqtt"]["connected"] is True
    assert st["outbox"] == {"pending": 0, "sent": 0, "dead": 0}
    assert [d["device"] for d in st["devices"]] == ["D07"]


def test_a_retired_device_is_refused_and_comes_back_only_when_registered_again(
        broker, gateway_factory, device_peers):
    """Replacing a device (docs/gateway.md, "Replacing a device"): the old one's later messages are
    quarantined `retired_device` and not acked; the seed file does not bring it back, only an
    operator's registration does."""
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}])
    old = device_peers(broker, "D07")
    old.rate(1)
    assert old.wait_ack(1)["st"] == "ok"
    assert gw.post("/api/v1/devices/D07/retire", {}).status_code == 401
    assert gw.post("/api/v1/devices/D99/retire", {}, gw.admin_token).status_code == 404
    gw.register_device("D08", "7")
    answer = gw.post("/api/v1/devices/D07/retire", {}, gw.admin_token)
    assert answer.status_code == 200
    assert answer.json() == {"v": 1, "device": "D07", "window": "7", "retired": True}
    old.rate(2)
    old.health()
    gw.wait_status(lambda st: st["quarantine"].get("retired_device") == 2)
    assert old.acks_for(2) == []
    assert [r["n"] for r in gw.query("SELECT n FROM ratings WHERE device = 'D07'")] == [1]
    st = gw.status()
    devices = {d["device"]: d for d in st["devices"]}
    assert devices["D07"]["registered"] is False and devices["D07"]["retired_at"] is not None
    assert st["summary"]["retired"] == 1 and st["summary"]["unregistered"] == 0
    assert gw.post_event(window="7")["session"] is not None  # the window prompts the new device
    assert [r[0] for r in gw.query("SELECT session_device FROM services")] == ["D08"]
    # a restart re-applies the seed file, which still names D07: it stays retired
    gw.stop()
    gw.start()
    assert {d["device"]: d for d in gw.status()["devices"]}["D07"]["registered"] is False
    gw.register_device("D07", "9")  # an operator brings it back, at another window
    old.rate(2)
    assert old.wait_ack(2)["st"] == "ok"
