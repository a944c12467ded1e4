"""GET /api/v1/devices, the devices overview across halls and regions (docs/hub.md, "Devices"),
over HTTP on every backend, from health snapshots and alerts ingested as the gateways post them."""

from __future__ import annotations

from hcp.protocol import key_id

from .conftest import GATEWAY_KEY, H1, alert_item, device_key, health_item, health_payload

T1, T2 = "2026-11-21T09:30:00.000+08:00", "2026-11-21T09:35:00.000+08:00"


def devices(hub, **params) -> list[dict]:
    response = hub.http.get("/api/v1/devices", params=params, headers=hub.admin_headers)
    assert response.status_code == 200, response.text
    return response.json()


def ingested(response) -> None:
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}, response.text


def setup_fleet(hub) -> None:
    """Region jilin with hall H1 (D07 online, D08 offline by its open alert, D06 never reported);
    hall H2 in no region (D09, reported offline by its health)."""
    ok = hub.admin_headers
    assert hub.http.put("/api/v1/regions/jilin", headers=ok, json={"name": "吉林市", "preset": "jilin"}).status_code == 200
    assert hub.http.put(f"/api/v1/halls/{H1}", headers=ok, json={"region": "jilin"}).status_code == 200
    tokens = {hall: hub.register_gateway(hall, GATEWAY_KEY) for hall in (H1, "H2")}
    for device, hall, window in (("D07", H1, "7"), ("D08", H1, "8"), ("D06", H1, "6"), ("D09", "H2", "1")):
        hub.register_device(device, hall, window, device_key(device))
    ingested(hub.ingest(tokens[H1], H1, [
        health_item("D07", up=1000, received_at=T1, health=health_payload(3, 1000, fw="0.1.0")),
        health_item("D07", up=2000, received_at=T2,
                    health=health_payload(3, 2000, fw="0.2.0", ob=2, rssi=-61, stuck=["3"],
                                          err="ENOSPC", clock="set")),
        health_item("D08", window="8", received_at=T1),
        alert_item(1, device="D07"), alert_item(2, device="D07", alert="outbox_growing", detail="ob 2"),
        alert_item(3, device="D07", alert="counter_gap"),
        alert_item(3, "cleared", device="D07", alert="counter_gap"),
        alert_item(4, device="D08", window="8", alert="offline", detail="offline for 2 min")]))
    ingested(hub.ingest(tokens["H2"], "H2", [health_item("D09", window="1", received_at=T2, presence="offline")]))


def test_the_overview_shows_presence_last_seen_firmware_figures_and_open_alerts(hub_app):
    setup_fleet(hub_app)
    d06, d07, d08, d09 = devices(hub_app)
    assert d07 == {
        "device": "D07", "hall": H1, "region": "jilin", "window": "7", "kid": key_id(device_key("D07")),
        "presence": "online", "retired_at": None, "last_seen": T2, "firmware": "0.2.0",
        "health": {"boot": 3, "up": 2000, "heap": 40912, "alloc_peak": 23104, "ob": 2, "rssi": -61,
                   "clock": "set", "stuck": ["3"], "err": "ENOSPC",
                   "cnt": {"press": 5, "rate": 4, "resend": 0, "reconn": 1, "err": 0, "stuck": 0,
                           "badmsg": 0, "badcon": 0}},
        "alerts_open": {"count": 2, "kinds": ["outbox_growing", "stuck_button"]}}
    assert (d08["presence"], d08["last_seen"], d08["alerts_open"]) == (
        "offline", T1, {"count": 1, "kinds": ["offline"]})  # its health said online; the alert wins
    assert (d06["presence"], d06["last_seen"], d06["firmware"], d06["health"], d06["alerts_open"]) == (
        "unknown", None, None, None, {"count": 0, "kinds": []})
    assert (d09["hall"], d09["region"], d09["presence"], d09["firmware"]) == ("H2", None, "offline", "0.1.0")


def test_a_cleared_offline_alert_gives_presence_back_to_the_newest_health(hub_app):
    setup_fleet(hub_app)
    token = hub_app.register_gateway(H1, GATEWAY_KEY)
    ingested(hub_app.ingest(token, H1, [alert_item(4, "cleared", device="D08", window="8", alert="offline",
                                                   detail="back")]))
    [d08] = [d for d in devices(hub_app) if d["device"] == "D08"]
    assert (d08["presence"], d08["alerts_open"]) == ("online", {"count": 0, "kinds": []})


def test_filters_and_pages_in_hall_then_device_order(hub_app):
    setup_fleet(hub_app)

    def ids(**params) -> list[str]:
        return [f"{d['hall']}/{d['device']}" for d in devices(hub_app, **params)]

    everything = ["H1/D06", "H1/D07", "H1/D08", "H2/D09"]
    assert ids() == everything
    assert ids(hall="H2") == ["H2/D09"] and ids(hall="H7") == []
    assert ids(region="jilin") == ["H1/D06", "H1/D07", "H1/D08"]
    assert ids(presence="offline") == ["H1/D08", "H2/D09"]
    assert ids(presence="unknown") == ["H1/D06"] and ids(presence="online", hall="H2") == []
    pages, after = [], None
    while page := ids(limit=3, **({"after": after} if after else {})):
        pages.append(page)
        after = page[-1]
    assert pages == [everything[:3], everything[3:]]
    assert ids(after="H1/D07", limit=1) == ["H1/D08"]


def test_an_unknown_region_is_404_and_a_region_without_devices_empty(hub_app):
    setup_fleet(hub_app)
    response = hub_app.http.get("/api/v1/devices", params={"region": "dehong"}, headers=hub_app.admin_headers)
    assert response.status_code == 404 and response.json()["detail"] == "no region dehong"
    hub_app.http.put("/api/v1/regions/dehong", headers=hub_app.admin_headers, json={"name": "德宏州", "preset": "dehong"})
    assert devices(hub_app, region="dehong") == []
    assert devices(hub_app, region="jilin", presence="online", after="H1/D07") == []


def test_bad_filters_are_422(hub_app):
    setup_fleet(hub_app)
    for query in ("limit=0", "limit=1001", "limit=x", "presence=gone", "presence=", "hall=a%20b",
                  "region=-x", "after=H1", "after=H1/D07/x", "after=/D07", "hal=H1", "hall=H1&hall=H2"):
        response = hub_app.http.get(f"/api/v1/devices?{query}", headers=hub_app.admin_headers)
        assert response.status_code == 422, (query, response.text)
        assert response.json()["detail"], query
    assert len(devices(hub_app, limit=1000)) == 4


def test_health_figures_of_unexpected_types_are_null_not_an_error(hub_app):
    token = hub_app.register_gateway(H1, GATEWAY_KEY)
    hub_app.register_device("D07", H1, "7", device_key("D07"))
    odd = health_payload(3, 5, heap="40k", ob=True, rssi=-70.5, fw=7, stuck=[3], err={"e": 1}, clock=None,
                         cnt={"press": "5", "rate": 4})
    del odd["alloc_peak"]
    ingested(hub_app.ingest(token, H1, [health_item("D07", up=5, health=odd, presence=None)]))
    [d07] = devices(hub_app)
    assert (d07["presence"], d07["firmware"]) == ("unknown", None)
    assert d07["health"] == {"boot": 3, "up": 5, "heap": None, "alloc_peak": None, "ob": None, "rssi": None,
                             "clock": None, "stuck": None, "err": None, "cnt": {"rate": 4}}


def test_the_overview_needs_the_admin_token(hub_app):
    assert hub_app.http.get("/api/v1/devices").status_code == 401
    assert hub_app.http.get("/api/v1/devices", headers={"Authorization": "Bearer nope"}).status_code == 401
