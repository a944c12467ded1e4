"""The gateway's device reports over HTTP: `health` and `alert` items posted to /api/v1/ingest, and
the hall reads (/api/v1/halls/{hall}/devices, …/devices/{device}/health, …/alerts)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.hub import running_app

from .conftest import CLEARED_AT, GATEWAY_KEY, H1, HEALTH_AT, RAISED_AT, alert_item, device_key, health_item, health_payload

MAX_EXAMPLES = 40  # a few HTTP round trips each on one running app




def results_of(response) -> list[tuple]:
    assert response.status_code == 200, response.text
    return [(r["key"], r["status"], r.get("reason")) for r in response.json()["results"]]


def read(hub, path: str, **params) -> list[dict]:
    response = hub.http.get(f"/api/v1/halls/{path}", params=params, headers=hub.admin_headers)
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------------------- the happy path


def test_reports_are_accepted_under_the_gateways_keys_and_readable(hub_app, hall):
    items = [health_item("D07", boot=3, up=81234),
             alert_item(17, "raised", device="D07"),
             alert_item(18, "cleared", device="D08", alert="offline", detail="offline since 09:00",
                        window="8")]
    assert results_of(hub_app.ingest(hall, H1, items)) == [
        ("health:H1:D07:3:81234", "accepted", None),  # health:{hall}:{device}:{boot}:{up}
        ("alert:H1:17:raised", "accepted", None),  # alert:{hall}:{id}:{state}
        ("alert:H1:18:cleared", "accepted", None)]
    health = {"hall": H1, "device": "D07", "window": "7", "boot": 3, "up": 81234,
              "received_at": HEALTH_AT, "presence": "online", "offset_ms": 1795239326000 - 81234,
              "health": health_payload(3, 81234)}
    d07, d08 = read(hub_app, "H1/devices")
    assert {k: v for k, v in d07.items() if k not in ("registered_at", "updated_at")} == {
        "device": "D07", "hall": H1, "window": "7", "kid": d07["kid"], "health": health,
        "alerts_open": ["stuck_button"]}
    assert (d08["device"], d08["health"], d08["alerts_open"]) == ("D08", None, [])
    assert read(hub_app, "H1/devices/D07/health") == [health]
    alerts = read(hub_app, "H1/alerts")
    assert [{k: v for k, v in a.items() if k != "updated_at"} for a in alerts] == [
        {"hall": H1, "id": 18, "device": "D08", "window": "8", "alert": "offline", "state": "cleared",
         "detail": "offline since 09:00", "raised_at": RAISED_AT, "cleared_at": CLEARED_AT,
         "raise_seen": False},
        {"hall": H1, "id": 17, "device": "D07", "window": "7", "alert": "stuck_button",
         "state": "raised", "detail": "button(s) stuck: 3", "raised_at": RAISED_AT,
         "cleared_at": None, "raise_seen": True}]
    assert [a["id"] for a in read(hub_app, "H1/alerts", state="raised")] == [17]
    assert [a["id"] for a in read(hub_app, "H1/alerts", device="D08")] == [18]
    # the late raise of 18 and the clear of 17
    assert results_of(hub_app.ingest(hall, H1, [
        alert_item(18, device="D08", alert="offline", detail="offline since 09:00", window="8"),
        alert_item(17, "cleared", device="D07")])) == [
        ("alert:H1:18:raised", "accepted", None), ("alert:H1:17:cleared", "accepted", None)]
    assert [(a["id"], a["state"], a["raise_seen"]) for a in read(hub_app, "H1/alerts")] == [
        (18, "cleared", True), (17, "cleared", True)]
    assert read(hub_app, "H1/alerts", state="raised") == []
    assert [d["alerts_open"] for d in read(hub_app, "H1/devices")] == [[], []]


def test_the_same_reports_twice_change_nothing_and_conflicts_are_counted(hub_app, hall):
    batch = [health_item("D07", up=1), health_item("D08", up=1), alert_item(1),
             alert_item(1, "cleared")]
    assert [s for _, s, _ in results_of(hub_app.ingest(hall, H1, batch))] == ["accepted"] * 4
    devices, alerts = read(hub_app, "H1/devices"), read(hub_app, "H1/alerts")
    assert [s for _, s, _ in results_of(hub_app.ingest(hall, H1, batch))] == ["duplicate"] * 4
    assert read(hub_app, "H1/devices") == devices and read(hub_app, "H1/alerts") == alerts
    changed = [health_item("D07", up=1, presence="offline"), alert_item(1, detail="other"),
               alert_item(1, "cleared", device="D08")]
    assert results_of(hub_app.ingest(hall, H1, changed)) == [
        ("health:H1:D07:3:1", "rejected", "conflict"), ("alert:H1:1:raised", "rejected", "conflict"),
        ("alert:H1:1:cleared", "rejected", "conflict")]
    assert read(hub_app, "H1/devices") == devices and read(hub_app, "H1/alerts") == alerts
    assert hub_app.rejections(hall=H1)["by_reason"] == {"conflict": 3}
    kinds = [k for (k,) in hub_app.query("SELECT kind FROM alerts ORDER BY id")]
    assert kinds == ["health_conflict", "alert_conflict", "alert_conflict"]


def test_reports_of_an_unregistered_device_are_unknown_device(hub_app, hall):
    other = hub_app.register_gateway("H2", GATEWAY_KEY)
    hub_app.register_device("E1", "H2", "1", device_key("E1"))
    items = [health_item("D99"), alert_item(3, device="D99", window=None),
             health_item("E1"), alert_item(4, device="E1")]  # E1 is registered to H2
    assert results_of(hub_app.ingest(hall, H1, items)) == [
        ("health:H1:D99:3:81234", "rejected", "unknown_device"),
        ("alert:H1:3:raised", "rejected", "unknown_device"),
        ("health:H1:E1:3:81234", "rejected", "unknown_device"),
        ("alert:H1:4:raised", "rejected", "unknown_device")]
    assert hub_app.rejections(hall=H1)["by_reason"] == {"unknown_device": 4}
    assert read(hub_app, "H1/alerts") == [] and read(hub_app, "H1/devices/D99/health") == []
    assert results_of(hub_app.ingest(other, "H2", [health_item("E1", window="1")])) == [
        ("health:H2:E1:3:81234", "accepted", None)]


def test_malformed_reports_are_rejected_one_by_one_and_spare_the_batch(hub_app, hall):
    items = [
        {"kind": "health", "device": "D07"},
        health_item(health=health_payload(up=-5)),
        health_item(presence="maybe"),
        health_item(health=health_payload(err="e" * 1100)),
        {"kind": "alert", "id": 1, "device": "D07"},
        {**alert_item(state="cleared"), "cleared_at": None},
        alert_item(2, detail="d" * 301),
        health_item(up=9),
        alert_item(2),
    ]
    assert results_of(hub_app.ingest(hall, H1, items)) == [
        (None, "rejected", "missing_field:health"),
        (None, "rejected", "bad_field:health.up"),
        ("health:H1:D07:3:81234", "rejected", "bad_field:presence"),
        ("health:H1:D07:3:81234", "rejected", "too_large"),
        (None, "rejected", "missing_field:alert"),  # no state: no key
        ("alert:H1:17:cleared", "rejected", "bad_field:cleared_at"),
        ("alert:H1:2:raised", "rejected", "bad_field:detail"),
        ("health:H1:D07:3:9", "accepted", None),
        ("alert:H1:2:raised", "accepted", None)]
    assert hub_app.rejections(hall=H1)["total"] == 7


# ---------------------------------------------------------------------------- the reads


def test_hall_reads_need_the_admin_token(hub_app, hall):
    for path in ("H1/devices", "H1/devices/D07/health", "H1/alerts"):
        for headers in ({}, {"Authorization": f"Bearer {hall}"}):  # a gateway token is not enough
            response = hub_app.http.get(f"/api/v1/halls/{path}", headers=headers)
            assert response.status_code == 401, (path, headers)


@pytest.mark.parametrize("path, params", [
    ("H%201/devices", {}), ("H1/devices/D%2F7/health", {}), ("H1/devices/D07/health", {"limit": 0}),
    ("H1/alerts", {"state": "open"}), ("H1/alerts", {"device": "D 7"}), ("H1/alerts", {"limit": 1001}),
])
def test_hall_reads_check_their_parameters(hub_app, hall, path, params):
    response = hub_app.http.get(f"/api/v1/halls/{path}", params=params, headers=hub_app.admin_headers)
    assert response.status_code in (404, 422), response.text
    assert response.status_code == 422 or "%2F" in path  # an encoded slash never reaches the route


def test_an_unknown_hall_reads_as_empty(hub_app, hall):
    results_of(hub_app.ingest(hall, H1, [health_item(), alert_item()]))
    assert read(hub_app, "H9/devices") == [] and read(hub_app, "H9/alerts") == []
    assert read(hub_app, "H9/devices/D07/health") == []


# ---------------------------------------------------------------------------- any order


@dataclass(frozen=True)
class AlertSpec:
    id: int
    state: str
    detail: str  # "a" or "b": the same key with other content is a conflict
    device: str  # "D0" registered, "Dx" not


@dataclass(frozen=True)
class HealthSpec:
    up: int  # also orders received_at: the newest health is the one with the largest up
    presence: str


alert_specs = st.builds(AlertSpec, id=st.integers(1, 3), state=st.sampled_from(["raised", "cleared"]),
                        detail=st.sampled_from(["a", "a", "b"]), device=st.sampled_from(["D0", "D0", "Dx"]))
health_specs = st.builds(HealthSpec, up=st.integers(1, 4), presence=st.sampled_from(["online", "online", "offline"]))
report_batches = st.lists(st.lists(st.one_of(alert_specs, health_specs), max_size=6), min_size=1, max_size=4)


class ReportModel:
    """What the hub must answer and end up holding for one hall (hub/ingest.py's rules)."""

    def __init__(self, hall: str):
        self.hall = hall
        self.alerts: dict[int, dict] = {}  # id -> {"device", "raised": item, "cleared": item}
        self.health: dict[int, dict] = {}  # up -> item
        self.rejected = self.conflicts = 0

    def item(self, spec: AlertSpec | HealthSpec) -> dict:
        if isinstance(spec, HealthSpec):
            return health_item("D0", up=spec.up, presence=spec.presence,
                               received_at=f"2026-11-21T09:3{spec.up}:00+08:00")
        return alert_item(spec.id, spec.state, device=spec.device, detail=spec.detail)

    def expect(self, spec: AlertSpec | HealthSpec, item: dict) -> tuple[str, str, str | None]:
        if isinstance(spec, HealthSpec):
            key = f"health:{self.hall}:D0:3:{spec.up}"
            stored = self.health.get(spec.up)
            if stored is not None:
                return (key, "duplicate", None) if stored == item else self._conflict(key)
            self.health[spec.up] = item
            return key, "accepted", None
        key = f"alert:{self.hall}:{spec.id}:{spec.state}"
        row = self.alerts.get(spec.id)
        stored = row.get(spec.state) if row else None
        if stored is not None:
            return (key, "duplicate", None) if stored == item else self._conflict(key)
        if row is not None and row["device"] != spec.device:
            return self._conflict(key)
        if spec.device != "D0":
            self.rejected += 1
            return key, "rejected", "unknown_device"
        self.alerts.setdefault(spec.id, {"device": spec.device})[spec.state] = item
        return key, "accepted", None

    def _conflict(self, key: str) -> tuple[str, str, str]:
        self.rejected += 1
        self.conflicts += 1
        return key, "rejected", "conflict"


@pytest.mark.slow
def test_reports_in_any_order_and_posted_twice_end_in_the_same_rows(tmp_path, hub_db):
    halls = (f"R{i}" for i in itertools.count())
    with running_app(tmp_path, **hub_db) as hub:

        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(batches=report_batches, data=st.data())
        def check(batches, data):
            model = ReportModel(next(halls))
            token = hub.register_gateway(model.hall, GATEWAY_KEY)
            hub.register_device("D0", model.hall, "7", device_key("D0"))
            order = list(range(len(batches))) + data.draw(st.permutations(range(len(batches))))
            for number in order:
                items = [model.item(spec) for spec in batches[number]]
                got = results_of(hub.ingest(token, model.hall, items))
                assert got == [model.expect(spec, item) for spec, item in zip(batches[number], items, strict=True)]

            rows = {a["id"]: a for a in read(hub, f"{model.hall}/alerts")}
            assert set(rows) == set(model.alerts)
            for alert_id, expected in model.alerts.items():
                newest = expected.get("cleared") or expected["raised"]
                row = rows[alert_id]
                assert (row["state"], row["detail"], row["cleared_at"], row["raise_seen"]) == (
                    newest["state"], newest["detail"], newest["cleared_at"], "raised" in expected)
            history = read(hub, f"{model.hall}/devices/D0/health")
            assert [(h["up"], h["presence"]) for h in history] == [
                (up, model.health[up]["presence"]) for up in sorted(model.health, reverse=True)]
            [device] = read(hub, f"{model.hall}/devices")
            assert device["health"] == (history[0] if history else None)
            assert device["alerts_open"] == (["stuck_button"] if any(
                "cleared" not in a for a in model.alerts.values()) else [])
            assert hub.rejections(hall=model.hall)["total"] == model.rejected
            [(conflicts,)] = hub.query("SELECT COUNT(*) FROM alerts WHERE hall = ?", model.hall)
            assert conflicts == model.conflicts

        check()
