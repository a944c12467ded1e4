"""Alerts of a real gateway process from device messages on a real broker: stuck button, device
outbox growing, clock offset, repeated reboots, counter gaps (and an operator clearing one), and
their way to the hub as outbox items; plus the rules and the gap bookkeeping on their own."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import CLEAR, RAISE, ClockSample, clock_rule, describe_gaps, outbox_rule, split_gap
from gateway.config import GatewaySettings
from gateway.registry import Registry
from gateway.store import Store
from hcp.protocol import sign_rating
from tests.fixtures.device import device_key

FAST = {"registry_sweep_s": 0.1, "alert_offline_after_s": 60}


@pytest.fixture
def gw(broker, gateway_factory):
    return gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], **FAST)


@pytest.fixture
def dev(broker, device_peers):
    return device_peers(broker, "D07")


def open_kinds(st):
    return sorted(a["kind"] for a in st["alerts"]["open"])


def the_alert(st, kind):
    found = [a for a in st["alerts"]["open"] if a["kind"] == kind]
    assert len(found) == 1, st["alerts"]
    return found[0]


# ---------------------------------------------------------------------------- rules (pure)


def test_outbox_rule_raises_over_the_limit_or_on_a_rising_streak_and_clears_when_it_drains():
    assert outbox_rule(25, 0, 0, 20, 3)[1].action == RAISE
    streak, v = 0, None
    for ob, last in ((1, 0), (2, 1), (3, 2)):
        streak, v = outbox_rule(ob, last, streak, 20, 3)
    assert streak == 3 and v.action == RAISE and "3 healths in a row" in v.detail
    assert outbox_rule(3, 3, 3, 20, 3) == (0, outbox_rule(3, 3, 3, 20, 3)[1])
    assert outbox_rule(3, 3, 3, 20, 3)[1].action is None  # stuck at 3: the alert stays
    assert outbox_rule(2, 3, 0, 20, 3)[1].action == CLEAR
    assert outbox_rule(0, None, 0, 20, 3)[1].action == CLEAR
    assert outbox_rule(21, 30, 0, 20, 3)[1].action == RAISE  # shrinking but still over the limit


def test_clock_rule_compares_healths_of_one_boot_only():
    a = ClockSample(boot=3, up=10_000, offset_ms=1_000_000)
    assert clock_rule(a, ClockSample(3, 70_000, 1_000_040), 0, 5000) == (1, clock_rule(a, ClockSample(3, 70_000, 1_000_040), 0, 5000)[1])
    assert clock_rule(a, ClockSample(3, 70_000, 1_000_040), 2, 5000)[1].action == CLEAR
    assert clock_rule(a, ClockSample(3, 70_000, 1_006_000), 2, 5000)[1].action == RAISE
    assert clock_rule(a, ClockSample(3, 5_000, 1_005_000), 2, 5000)[1].action == RAISE  # went back
    assert clock_rule(a, ClockSample(4, 1_000, 9_999_999), 2, 5000) == (0, clock_rule(None, a, 0, 1)[1])


def test_gap_helpers():
    assert split_gap(3, 7, 3) == [(4, 7)]
    assert split_gap(3, 7, 5) == [(3, 4), (6, 7)]
    assert split_gap(3, 3, 3) == []
    assert describe_gaps([(3, 4), (9, 9)]) == "missing n 3-4, 9 (3 ratings)"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30, unique=True))
def test_rating_gaps_are_exactly_the_counters_missing_above_the_first_one_seen(tmp_path_factory, ns):
    """Ratings arrive in any order (resends after reconnects, a device moved from another hall):
    the gap rows always hold exactly the counters above the first one seen that never arrived."""
    path = tmp_path_factory.mktemp("gaps") / "gw.sqlite3"
    key = device_key("D07")
    cfg = GatewaySettings(hall="H1", data_dir=path.parent, hub_url="http://hub", hub_token="t",
                          gateway_key="00" * 32, queue_token="q", admin_token="a")

    async def run():
        store = await Store.open(path)
        registry = Registry(store, cfg, publish=lambda *a: None, on_outbox=lambda: None,
                            link=lambda: (True, 1))
        for i, n in enumerate(ns):
            rating = sign_rating(key, "H1", "D07", n, 1, n, None, 4)
            async with store.transaction() as tx:  # as the writer does: store, then tell
                await tx.insert_rating("D07", n, json.dumps(rating.payload()), None, 4, float(i),
                                       0, None, "no_service_in_progress")
                await registry.on_rating(tx, rating, float(i))
        async with store.read() as tx:
            rows = await tx.all("SELECT n_from, n_to FROM rating_gaps WHERE device = 'D07'")
        await store.close()
        return {n for r in rows for n in range(r["n_from"], r["n_to"] + 1)}

    assert asyncio.run(run()) == set(range(ns[0], max(ns) + 1)) - set(ns)


# ---------------------------------------------------------------------------- real gateway


def test_a_stuck_button_raises_an_alert_until_a_health_without_it(gw, dev):
    dev.health(stuck=["3"], cnt={"press": 4, "stuck": 1})
    st = gw.wait_status(lambda st: open_kinds(st) == ["stuck_button"])
    assert the_alert(st, "stuck_button")["detail"] == "button(s) stuck: 3"
    assert st["devices"][0]["alerts"] == ["stuck_button"]
    dev.health(stuck=["3", "5"])
    gw.wait_status(lambda st: the_alert(st, "stuck_button")["detail"] == "button(s) stuck: 3, 5")
    dev.health(stuck=[])
    st = gw.wait_status(lambda st: open_kinds(st) == [])
    assert [a["kind"] for a in st["alerts"]["recent"]] == ["stuck_button"]
    assert st["counters"]["alerts.raised.stuck_button"] == 1


def test_a_device_outbox_over_the_limit_or_growing_raises_an_alert(broker, gateway_factory, dev):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], alert_outbox_max=20,
                         alert_outbox_rising=3, **FAST)
    dev.health(ob=25)
    st = gw.wait_status(lambda st: open_kinds(st) == ["outbox_growing"])
    assert "25 ratings waiting" in the_alert(st, "outbox_growing")["detail"]
    dev.health(ob=10)
    gw.wait_status(lambda st: open_kinds(st) == [])
    for ob in (11, 12, 13):
        dev.health(ob=ob)
    st = gw.wait_status(lambda st: open_kinds(st) == ["outbox_growing"])
    assert "grew 3 healths in a row, now 13" in the_alert(st, "outbox_growing")["detail"]
    dev.health(ob=13)  # stays put: still not delivering
    gw.wait_status(lambda st: st["counters"]["health"] == 6)
    assert open_kinds(gw.status()) == ["outbox_growing"]
    dev.health(ob=0)
    gw.wait_status(lambda st: open_kinds(st) == [])


def test_a_clock_jump_within_one_boot_raises_clock_offset_until_the_clock_is_steady(gw, dev):
    dev.health(up=5_000)
    d = gw.wait_status(lambda st: st["devices"][0]["clock"] is not None)["devices"][0]
    assert d["clock"]["boot"] == 1 and abs(d["clock"]["offset_ms"] - (d["health_at"] * 1000 - 5_000)) < 1
    dev.health(up=1_000)  # the clock went back but the boot count did not rise
    st = gw.wait_status(lambda st: open_kinds(st) == ["clock_offset"])
    assert "went back" in the_alert(st, "clock_offset")["detail"]
    base, t0 = 1_000, time.monotonic()
    for _ in range(3):  # three healths whose clock runs with the gateway's
        time.sleep(0.2)
        dev.health(up=base + int((time.monotonic() - t0) * 1000))
    gw.wait_status(lambda st: open_kinds(st) == [])
    # a clock that runs 10 s ahead between two healths
    dev.health(up=base + int((time.monotonic() - t0) * 1000) + 10_000)
    st = gw.wait_status(lambda st: open_kinds(st) == ["clock_offset"])
    moved = int(re.search(r"moved by ([-+]\d+) ms", the_alert(st, "clock_offset")["detail"])[1])
    assert -11_000 < moved < -9_000


def test_a_new_boot_restarts_the_clock_reference_without_an_alert(gw, dev):
    dev.health(up=500_000)
    gw.wait_status(lambda st: st["devices"][0]["clock"] is not None)
    dev.health(boot=2, up=1_000)
    d = gw.wait_status(lambda st: st["devices"][0]["clock"]["boot"] == 2)["devices"][0]
    assert open_kinds(gw.status()) == [] and d["clock"]["offset_ms"] > 0


def test_repeated_reboots_raise_an_alert_that_expires_with_its_window(
        broker, gateway_factory, device_peers):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], alert_reboots=3,
                         alert_reboots_window_s=3, **FAST)
    dev = device_peers(broker, "D07")
    for boot in (2, 3):
        dev.publish("status", dev.status_payload("online", boot=boot, conn=1), retain=True)
    gw.wait_status(lambda st: st["devices"][0]["boot"] == 3)
    assert open_kinds(gw.status()) == []  # risen twice: under the limit
    dev.publish("status", dev.status_payload("online", boot=4, conn=1), retain=True)
    st = gw.wait_status(lambda st: open_kinds(st) == ["reboots"])
    assert the_alert(st, "reboots")["detail"] == "boot count rose by 3 within 0.05 min (now boot 4)"
    st = gw.wait_status(lambda st: open_kinds(st) == [], timeout=10)  # the window moved on
    assert st["alerts"]["recent"][0]["kind"] == "reboots"


def test_a_counter_gap_raises_after_its_delay_and_clears_when_the_ratings_arrive(
        broker, gateway_factory, dev):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], alert_gap_after_s=1.0,
                         **FAST)
    for n in (1, 2, 5, 6, 9):
        dev.rate(n)
        dev.wait_ack(n)
    d = gw.wait_status(lambda st: st["devices"][0]["gaps"] is not None)["devices"][0]
    assert d["gaps"] == {"missing": 4, "ranges": [[3, 4], [7, 8]]}
    assert open_kinds(gw.status()) == []  # not yet: a resend may still fill it
    st = gw.wait_status(lambda st: open_kinds(st) == ["counter_gap"])
    assert the_alert(st, "counter_gap")["detail"] == "missing n 3-4, 7-8 (4 ratings)"
    for n in (4, 3, 7):
        dev.rate(n)  # resent from the device's flash after a reconnect, in any order
        dev.wait_ack(n)
    st = gw.wait_status(lambda st: st["devices"][0]["gaps"]["missing"] == 1)
    assert the_alert(st, "counter_gap")["detail"] == "missing n 8 (1 rating)"
    dev.rate(8)
    dev.wait_ack(8)
    st = gw.wait_status(lambda st: open_kinds(st) == [])
    assert st["devices"][0]["gaps"] is None


def test_an_operator_clears_a_counter_gap_that_will_never_fill(broker, gateway_factory, dev):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], alert_gap_after_s=0,
                         **FAST)
    for n in (1, 4):
        dev.rate(n)
        dev.wait_ack(n)
    alert = the_alert(gw.wait_status(lambda st: open_kinds(st) == ["counter_gap"]), "counter_gap")
    path = f"/api/v1/alerts/{alert['id']}/clear"
    assert gw.post(path, {}).status_code == 401
    assert gw.post(path, {}, token=gw.queue_token).status_code == 401
    assert gw.post("/api/v1/alerts/999/clear", {}, token=gw.admin_token).status_code == 404
    answer = gw.post(path, {}, token=gw.admin_token)
    assert answer.status_code == 200
    assert answer.json()["alert"]["cleared_by"] == "operator"
    time.sleep(0.5)  # several sweeps: the gap was forgotten, so it is not raised again
    st = gw.status()
    assert open_kinds(st) == [] and st["devices"][0]["gaps"] is None
    assert gw.post(path, {}, token=gw.admin_token).status_code == 404  # cleared already
    assert st["counters"]["admin.unauthorized"] == 2


def test_alerts_and_health_snapshots_reach_the_hub_as_outbox_items(
        broker, gateway_factory, dev, mini_hub):
    gw = gateway_factory(broker, hub_url=mini_hub.url, hub_token=mini_hub.token,
                         devices=[{"device": "D07", "window": "7"}], hub_health_interval_s=0.5,
                         **FAST)
    first = dev.health(stuck=["2"])
    gw.wait_status(lambda st: open_kinds(st) == ["stuck_button"])
    dev.health(stuck=[])
    st = gw.wait_status(lambda st: open_kinds(st) == [] and st["outbox"]["pending"] == 0
                        and st["outbox"]["sent"] == 3)
    items = [i for env in mini_hub.posts for i in env["items"]]
    alerts = [i for i in items if i["kind"] == "alert"]
    assert [(a["alert"], a["state"], a["device"], a["window"]) for a in alerts] == [
        ("stuck_button", "raised", "D07", "7"), ("stuck_button", "cleared", "D07", "7")]
    assert alerts[0]["id"] == alerts[1]["id"] and alerts[1]["cleared_at"] is not None
    health = [i for i in items if i["kind"] == "health"]
    assert len(health) == 1  # one snapshot per interval, of the newest health
    assert health[0]["device"] == "D07" and health[0]["presence"] == "online"
    assert health[0]["health"]["up"] > first["up"] and health[0]["offset_ms"] is not None
    keys = {r["key"] for r in gw.query("SELECT key FROM outbox")}
    assert f"alert:H1:{alerts[0]['id']}:raised" in keys
    time.sleep(1.0)  # no newer health: no new snapshot
    assert gw.status()["outbox"]["sent"] == 3


def test_with_hub_health_off_alerts_stay_in_the_gateway(broker, gateway_factory, dev):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], hub_health=False,
                         hub_health_interval_s=0.1, **FAST)
    dev.health(stuck=["1"])
    gw.wait_status(lambda st: open_kinds(st) == ["stuck_button"])
    time.sleep(0.5)
    assert gw.query("SELECT kind FROM outbox") == []


def test_bad_health_is_quarantined_and_raises_nothing(gw, dev):
    dev.publish("health", json.dumps({"v": 1, "boot": 1, "up": 5, "heap": 1, "ob": "many"}), qos=0)
    st = gw.wait_status(lambda st: st["quarantine"])
    assert st["quarantine"] == {"bad_field:ob": 1} and open_kinds(st) == []
