"""The gateway's device reports, item kinds `health` and `alert` (docs/protocol.md, "Hub ingest"):
form checks (`parse_item`) and the per-item decision (`decide`), pure, without a store."""

from __future__ import annotations

import json

import pytest

from hub.ingest import (
    AlertItem,
    BadItem,
    DeviceAlertRow,
    DeviceKeys,
    HealthItem,
    decide,
    lookups,
    parse_item,
    unix_ms,
)

from .conftest import CLEARED_AT, RAISED_AT, alert_item, health_item, health_payload

H1 = "H1"
HEALTH_KEY = "health:H1:D07:3:81234"
DEVICES = {"D07": DeviceKeys(H1, "7", {}), "X1": DeviceKeys("H2", "1", {})}


def without(item: dict, *names: str) -> dict:
    return {k: v for k, v in item.items() if k not in names}


def health_with(**payload_fields) -> dict:
    return health_item(health=health_payload(**payload_fields))


def run(items: list, health: dict | None = None, alerts: dict | None = None, devices=DEVICES):
    """decide over parsed `items` with the given stored maps (updated in place): the plan."""
    parsed = [parse_item(item, H1) for item in items]
    return decide(parsed, devices, {}, {}, {} if health is None else health,
                  {} if alerts is None else alerts)


def answers(plan) -> list[tuple]:
    return [(r.key, r.status, r.reason) for r in plan.results]


# ---------------------------------------------------------------------------- parse: health


def test_a_health_item_parses_with_its_key_from_the_payload():
    item = parse_item(health_item(boot=4, up=120000), H1)
    assert isinstance(item, HealthItem)
    assert (item.key, item.device, item.window, item.presence) == ("health:H1:D07:4:120000", "D07", "7", "online")
    assert item.offset_ms == 1795239326000 - 120000
    assert item.health == health_payload(4, 120000)


def test_a_health_item_needs_only_its_required_fields():
    item = parse_item(without(health_item(), "window", "presence", "offset_ms"), H1)
    assert isinstance(item, HealthItem) and (item.window, item.presence, item.offset_ms) == (None, None, None)
    nulls = parse_item(health_item(window=None, presence=None, offset_ms=None), H1)
    assert isinstance(nulls, HealthItem) and nulls.canonical() == item.canonical()


def test_received_ms_orders_times_with_different_offsets():
    assert unix_ms("2026-11-21T09:30:00.000+08:00") == unix_ms("2026-11-21T01:30:00.000+00:00")
    assert unix_ms("2026-11-21T01:30:00.001Z") - unix_ms("2026-11-21T09:30:00+08:00") == 1
    assert parse_item(health_item(received_at="1970-01-01T08:00:01+08:00"), H1).received_ms == 1000


@pytest.mark.parametrize("item, reason, key", [
    ({"kind": "health"}, "missing_field:device", None),
    (health_item(device="D/7"), "bad_field:device", None),
    (without(health_item(), "health"), "missing_field:health", None),
    (health_item(health="boot 3"), "bad_field:health", None),  # type: ignore[arg-type]
    (health_item(health=[]), "bad_field:health", None),  # type: ignore[arg-type]
    (health_item(health=without(health_payload(), "boot")), "missing_field:health.boot", None),
    (health_with(boot=True), "bad_field:health.boot", None),
    (health_with(boot=-1), "bad_field:health.boot", None),
    (health_with(up=1.5), "bad_field:health.up", None),
    (health_with(up=2**53 + 1), "bad_field:health.up", None),
    (health_with(err="x" * 1100), "too_large", HEALTH_KEY),
    (without(health_item(), "received_at"), "missing_field:received_at", HEALTH_KEY),
    (health_item(received_at="2026-11-21T09:30:07"), "bad_field:received_at", HEALTH_KEY),
    (health_item(window="7/8"), "bad_field:window", HEALTH_KEY),
    (health_item(window=""), "bad_field:window", HEALTH_KEY),
    (health_item(presence="away"), "bad_field:presence", HEALTH_KEY),
    (health_item(presence=1), "bad_field:presence", HEALTH_KEY),  # type: ignore[arg-type]
    (health_item(offset_ms=1.5), "bad_field:offset_ms", HEALTH_KEY),
    (health_item(offset_ms=True), "bad_field:offset_ms", HEALTH_KEY),
    (health_item(offset_ms="5"), "bad_field:offset_ms", HEALTH_KEY),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_bad_health_item_is_named_by_its_reason(item, reason, key):
    parsed = parse_item(item, H1)
    assert isinstance(parsed, BadItem)
    assert (parsed.reason, parsed.key) == (reason, key)


# ---------------------------------------------------------------------------- parse: alert


def test_an_alert_item_parses_in_both_states():
    raised = parse_item(alert_item(), H1)
    cleared = parse_item(alert_item(state="cleared"), H1)
    assert isinstance(raised, AlertItem) and isinstance(cleared, AlertItem)
    assert (raised.key, raised.cleared_at) == ("alert:H1:17:raised", None)
    assert (cleared.key, cleared.cleared_at) == ("alert:H1:17:cleared", CLEARED_AT)
    assert raised.identity == cleared.identity == ("D07", "stuck_button", RAISED_AT)


@pytest.mark.parametrize("item", [
    alert_item(alert="door_open"),  # a kind this hub does not know is kept as it is
    alert_item(detail=""),
    alert_item(detail=None),
    without(alert_item(), "detail", "window", "cleared_at"),
    alert_item(window=None),  # a device not registered at the gateway
    alert_item(alert_id=2**53),
])
def test_alert_items_the_contract_allows(item):
    assert isinstance(parse_item(item, H1), AlertItem)


@pytest.mark.parametrize("item, reason, key", [
    (without(alert_item(), "id"), "missing_field:id", None),
    (alert_item(alert_id=0), "bad_field:id", None),
    (alert_item(alert_id=True), "bad_field:id", None),
    (alert_item(alert_id="17"), "bad_field:id", None),  # type: ignore[arg-type]
    (alert_item(state="open"), "bad_field:state", None),
    (without(alert_item(), "state"), "missing_field:state", None),
    (without(alert_item(), "device"), "missing_field:device", "alert:H1:17:raised"),
    (alert_item(device="D 7"), "bad_field:device", "alert:H1:17:raised"),
    (without(alert_item(), "alert"), "missing_field:alert", "alert:H1:17:raised"),
    (alert_item(alert=""), "bad_field:alert", "alert:H1:17:raised"),
    (alert_item(alert="x" * 33), "bad_field:alert", "alert:H1:17:raised"),
    (without(alert_item(), "raised_at"), "missing_field:raised_at", "alert:H1:17:raised"),
    (alert_item(raised_at="yesterday"), "bad_field:raised_at", "alert:H1:17:raised"),
    (alert_item(detail="x" * 301), "bad_field:detail", "alert:H1:17:raised"),
    (alert_item(detail=5), "bad_field:detail", "alert:H1:17:raised"),  # type: ignore[arg-type]
    (alert_item(window="7 8"), "bad_field:window", "alert:H1:17:raised"),
    (without(alert_item(state="cleared"), "cleared_at"), "missing_field:cleared_at", "alert:H1:17:cleared"),
    ({**alert_item(state="cleared"), "cleared_at": None}, "bad_field:cleared_at", "alert:H1:17:cleared"),
    (alert_item(cleared_at=CLEARED_AT), "bad_field:cleared_at", "alert:H1:17:raised"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_bad_alert_item_is_named_by_its_reason(item, reason, key):
    parsed = parse_item(item, H1)
    assert isinstance(parsed, BadItem)
    assert (parsed.reason, parsed.key) == (reason, key)


def test_lookups_name_the_devices_and_keys_of_reports():
    found = lookups([parse_item(health_item(device="D1", boot=2, up=5), H1),
                     parse_item(alert_item(9, device="D2"), H1), parse_item(alert_item(9), H1),
                     parse_item({"kind": "health"}, H1)])
    assert (found.devices, found.health, found.alerts) == ({"D1", "D2", "D07"}, {("D1", 2, 5)}, {9})


# ---------------------------------------------------------------------------- decide: health


def test_health_is_accepted_once_then_duplicate_and_other_content_is_a_conflict():
    stored: dict = {}
    first = run([health_item(), health_item()], health=stored)
    assert answers(first) == [(HEALTH_KEY, "accepted", None), (HEALTH_KEY, "duplicate", None)]
    assert [h.key for h in first.health] == [HEALTH_KEY] and list(stored) == [("D07", 3, 81234)]
    again = run([health_item(), health_item(presence="offline"),
                 health_item(health=health_payload(ob=3)), health_item(extra="ignored")], health=stored)
    assert answers(again) == [(HEALTH_KEY, "duplicate", None), (HEALTH_KEY, "rejected", "conflict"),
                              (HEALTH_KEY, "rejected", "conflict"), (HEALTH_KEY, "duplicate", None)]
    assert again.health == [] and [k for k, _, _ in again.rejections] == [HEALTH_KEY] * 2
    assert [(kind, key) for kind, key, _ in again.alerts] == [("health_conflict", HEALTH_KEY)] * 2
    detail = json.loads(again.alerts[1][2])
    assert (detail["stored"]["health"]["ob"], detail["posted"]["health"]["ob"]) == (0, 3)


def test_health_of_a_device_not_registered_to_the_hall_is_unknown_device():
    plan = run([health_item(device="D99"), health_item(device="X1"), health_item(up=5)])
    assert answers(plan) == [("health:H1:D99:3:81234", "rejected", "unknown_device"),
                             ("health:H1:X1:3:81234", "rejected", "unknown_device"),
                             ("health:H1:D07:3:5", "accepted", None)]
    assert [r for _, r, _ in plan.rejections] == ["unknown_device"] * 2 and plan.alerts == []


# ---------------------------------------------------------------------------- decide: alerts


def test_a_raise_then_its_clear_make_one_row():
    stored: dict = {}
    plan = run([alert_item(), alert_item(), alert_item(state="cleared", detail="button(s) stuck: 3, 4")],
               alerts=stored)
    assert answers(plan) == [("alert:H1:17:raised", "accepted", None),
                             ("alert:H1:17:raised", "duplicate", None),
                             ("alert:H1:17:cleared", "accepted", None)]
    [row] = plan.device_alerts.values()
    assert (row.state, row.detail, row.cleared_at, row.raised_at) == (
        "cleared", "button(s) stuck: 3, 4", CLEARED_AT, RAISED_AT)
    assert row.raised is not None and row.cleared is not None and stored == {17: row}


def test_a_clear_before_its_raise_is_kept_and_the_late_raise_changes_only_that_it_was_seen():
    stored: dict = {}
    first = run([alert_item(state="cleared", detail="last detail")], alerts=stored)
    assert answers(first) == [("alert:H1:17:cleared", "accepted", None)]
    assert (stored[17].state, stored[17].raised) == ("cleared", None)
    late = run([alert_item(detail="first detail", window=None)], alerts=stored)
    assert answers(late) == [("alert:H1:17:raised", "accepted", None)]
    row = late.device_alerts[17]
    assert (row.state, row.detail, row.window, row.cleared_at) == ("cleared", "last detail", "7", CLEARED_AT)
    assert json.loads(row.raised)["detail"] == "first detail"  # type: ignore[arg-type]


def test_an_alert_state_posted_again_with_other_content_is_a_conflict():
    stored: dict = {}
    run([alert_item(), alert_item(state="cleared")], alerts=stored)
    plan = run([alert_item(detail="other"), alert_item(state="cleared", cleared_at=RAISED_AT),
                alert_item(), alert_item(state="cleared")], alerts=stored)
    assert answers(plan) == [("alert:H1:17:raised", "rejected", "conflict"),
                             ("alert:H1:17:cleared", "rejected", "conflict"),
                             ("alert:H1:17:raised", "duplicate", None),
                             ("alert:H1:17:cleared", "duplicate", None)]
    assert [kind for kind, _, _ in plan.alerts] == ["alert_conflict"] * 2 and plan.device_alerts == {}


@pytest.mark.parametrize("change", [{"device": "D08"}, {"alert": "offline"},
                                    {"raised_at": "2026-11-21T10:00:00+08:00"}])
def test_a_clear_of_a_stored_alert_id_for_another_alert_is_a_conflict(change):
    stored: dict = {}
    devices = {**DEVICES, "D08": DeviceKeys(H1, "8", {})}
    run([alert_item()], alerts=stored, devices=devices)
    plan = run([alert_item(state="cleared", **change)], alerts=stored, devices=devices)
    assert answers(plan) == [("alert:H1:17:cleared", "rejected", "conflict")]
    [(kind, key, detail)] = plan.alerts
    assert (kind, key) == ("alert_conflict", "alert:H1:17:cleared")
    assert json.loads(detail)["stored"]["state"] == "raised"
    assert stored[17].cleared is None


def test_an_alert_of_a_device_not_registered_to_the_hall_is_unknown_device():
    plan = run([alert_item(1, device="D99", window=None), alert_item(2, device="X1"),
                alert_item(3, window=None)])
    assert answers(plan) == [("alert:H1:1:raised", "rejected", "unknown_device"),
                             ("alert:H1:2:raised", "rejected", "unknown_device"),
                             ("alert:H1:3:raised", "accepted", None)]
    assert list(plan.device_alerts) == [3] and plan.device_alerts[3].window is None


def test_merge_is_the_same_whichever_state_comes_first():
    raised, cleared = parse_item(alert_item(), H1), parse_item(alert_item(state="cleared"), H1)
    assert isinstance(raised, AlertItem) and isinstance(cleared, AlertItem)
    one = DeviceAlertRow.merge(DeviceAlertRow.merge(None, raised), cleared)
    other = DeviceAlertRow.merge(DeviceAlertRow.merge(None, cleared), raised)
    assert one == other and one.state == "cleared"
