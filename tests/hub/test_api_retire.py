"""Retiring a replaced device at the hub (POST /api/v1/devices/{device}/retire, docs/hub.md,
"Replacing a device"), on every backend: what its gateway received from it before the retirement
still counts, what it received after is refused `retired_device`, and registering it again brings
it back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hcp.protocol import sign_rating
from tests.fixtures.hub import rating_item

from .conftest import GATEWAY_KEY, H1, alert_item, device_key, health_item, health_payload

CST = timezone(timedelta(hours=8))


def at(iso_utc: str, seconds: float) -> str:
    """The gateway's time (+08:00) `seconds` after the hub's UTC time `iso_utc`."""
    return (datetime.fromisoformat(iso_utc) + timedelta(seconds=seconds)).astimezone(CST).isoformat(
        timespec="milliseconds")


def retire(hub, device: str):
    return hub.http.post(f"/api/v1/devices/{device}/retire", headers=hub.admin_headers)


def statuses(response) -> list[tuple[str, str | None]]:
    assert response.status_code == 200, response.text
    return [(r["status"], r.get("reason")) for r in response.json()["results"]]


def rating(device: str, n: int, received_at: str) -> dict:
    return rating_item(sign_rating(device_key(device), H1, device, n, 1, 5000 + n, None, 5),
                       received_at=received_at)


def overview(hub, **params) -> dict[str, dict]:
    response = hub.http.get("/api/v1/devices", params=params, headers=hub.admin_headers)
    assert response.status_code == 200, response.text
    return {d["device"]: d for d in response.json()}


def test_a_retired_device_keeps_what_came_before_and_is_refused_after(hub_app, hall):
    assert statuses(hub_app.ingest(hall, H1, [rating("D07", 1, at(datetime.now(timezone.utc).isoformat(), -60))])) \
        == [("accepted", None)]
    response = retire(hub_app, "D07")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["device"], body["hall"], body["window"]) == ("D07", H1, "7")
    retired_at = body["retired_at"]
    results = statuses(hub_app.ingest(hall, H1, [
        rating("D07", 2, at(retired_at, -1)),  # in the gateway's outbox during the replacement
        rating("D07", 3, at(retired_at, +1)),
        rating("D07", 1, at(datetime.now(timezone.utc).isoformat(), -60)),  # a resend: still a duplicate
        health_item("D07", up=5000, received_at=at(retired_at, +2), health=health_payload(3, 5000)),
        alert_item(9, device="D07", raised_at=at(retired_at, +3)),
        rating("D08", 1, at(retired_at, +1)),  # the hall's other devices go on
    ]))
    assert results == [("accepted", None), ("rejected", "retired_device"), ("duplicate", None),
                       ("rejected", "retired_device"), ("rejected", "retired_device"), ("accepted", None)]
    stored = hub_app.query("SELECT device, n FROM ratings ORDER BY device, n")
    assert [tuple(row) for row in stored] == [("D07", 1), ("D07", 2), ("D08", 1)]
    rejected = hub_app.http.get("/api/v1/ingest/rejections", headers=hub_app.admin_headers).json()
    assert rejected["by_reason"] == {"retired_device": 3}

    devices = overview(hub_app)
    assert (devices["D07"]["presence"], devices["D07"]["retired_at"]) == ("retired", retired_at)
    assert devices["D08"]["retired_at"] is None and devices["D08"]["presence"] != "retired"
    assert list(overview(hub_app, presence="retired")) == ["D07"]


def test_retiring_again_keeps_the_first_time_and_registering_again_ends_it(hub_app, hall):
    first = retire(hub_app, "D07").json()["retired_at"]
    again = retire(hub_app, "D07")
    assert again.status_code == 200 and again.json()["retired_at"] == first
    later = at(first, +5)
    assert statuses(hub_app.ingest(hall, H1, [rating("D07", 1, later)])) == [("rejected", "retired_device")]
    hub_app.register_device("D07", H1, "9", device_key("D07"))  # back in service, at window 9
    assert statuses(hub_app.ingest(hall, H1, [rating("D07", 1, later)])) == [("accepted", None)]
    d07 = overview(hub_app)["D07"]
    assert (d07["window"], d07["retired_at"]) == ("9", None) and d07["presence"] != "retired"


def test_retiring_an_unknown_device_is_404_and_a_bad_id_422(hub_app, hall):
    assert retire(hub_app, "D99").status_code == 404
    assert retire(hub_app, "D%2F7").status_code in (404, 422)
    assert retire(hub_app, "x" * 80).status_code == 422


def test_retiring_needs_the_admin_token(hub_app, hall):
    assert hub_app.http.post("/api/v1/devices/D07/retire").status_code == 401
    assert hub_app.http.post("/api/v1/devices/D07/retire",
                             headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert overview(hub_app)["D07"]["retired_at"] is None
