"""PUT /api/v1/regions/{region}, GET /api/v1/regions and PUT /api/v1/halls/{hall} (docs/hub.md,
"Regions and halls"), over HTTP on every backend."""

from __future__ import annotations

import time

from hub.default_rules import PRESETS

JILIN = {"name": "吉林市", "area_code": "220200", "default_rule": {"kind": "calendar_days", "days": 7}}


def put_region(hub, region: str, body: dict, headers: dict | None = None):
    return hub.http.put(f"/api/v1/regions/{region}", json=body,
                        headers=hub.admin_headers if headers is None else headers)


def put_hall(hub, hall: str, body: dict):
    return hub.http.put(f"/api/v1/halls/{hall}", json=body, headers=hub.admin_headers)


def regions(hub) -> list[dict]:
    response = hub.http.get("/api/v1/regions", headers=hub.admin_headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_region_is_created_then_replaced_keeping_created_at(hub_app):
    assert regions(hub_app) == []
    created = put_region(hub_app, "jilin", JILIN)
    assert created.status_code == 200, created.text
    body = created.json()
    assert {k: body[k] for k in ("region", "name", "area_code", "default_rule", "halls")} == {
        "region": "jilin", "name": "吉林市", "area_code": "220200",
        "default_rule": {"kind": "calendar_days", "days": 7}, "halls": []}
    assert body["created_at"] == body["updated_at"]
    time.sleep(0.01)
    replaced = put_region(hub_app, "jilin", {"name": "吉林", "preset": "dehong"}).json()
    assert replaced["default_rule"] == PRESETS["dehong"].rule.to_dict() == {"kind": "working_days", "days": 5}
    assert replaced["area_code"] is None  # PUT replaces the whole region
    assert replaced["created_at"] == body["created_at"] and replaced["updated_at"] > body["updated_at"]
    assert regions(hub_app) == [replaced]
    [(stored_rule,)] = hub_app.query("SELECT default_rule FROM regions WHERE region = ?", "jilin")
    assert stored_rule == '{"days":5,"kind":"working_days"}'


def test_days_written_as_a_json_number_with_a_fraction_of_zero_is_that_integer(hub_app):
    body = put_region(hub_app, "jilin", {**JILIN, "default_rule": {"kind": "working_days", "days": 5.0}}).json()
    assert body["default_rule"] == {"kind": "working_days", "days": 5}
    assert hub_app.query("SELECT default_rule FROM regions") == [('{"days":5,"kind":"working_days"}',)]


def test_every_preset_sets_its_documents_rule(hub_app):
    for key, preset in PRESETS.items():
        body = put_region(hub_app, key, {"name": preset.name, "preset": key}).json()
        assert body["default_rule"] == preset.rule.to_dict(), key
    assert [r["region"] for r in regions(hub_app)] == sorted(PRESETS)


def test_halls_are_put_into_regions_listed_with_them_and_moved(hub_app):
    put_region(hub_app, "jilin", JILIN)
    put_region(hub_app, "dehong", {"name": "德宏州", "preset": "dehong"})
    first = put_hall(hub_app, "H1", {"region": "jilin", "name": "吉林市政务服务中心"})
    assert first.status_code == 200, first.text
    assert {k: first.json()[k] for k in ("hall", "region", "name")} == {
        "hall": "H1", "region": "jilin", "name": "吉林市政务服务中心"}
    put_hall(hub_app, "H2", {"region": "jilin"})
    listed = {r["region"]: [(h["hall"], h["name"]) for h in r["halls"]] for r in regions(hub_app)}
    assert listed == {"dehong": [], "jilin": [("H1", "吉林市政务服务中心"), ("H2", None)]}
    time.sleep(0.01)
    moved = put_hall(hub_app, "H1", {"region": "dehong", "name": "芒市"}).json()
    assert moved["region"] == "dehong" and moved["updated_at"] > first.json()["updated_at"]
    listed = {r["region"]: [h["hall"] for h in r["halls"]] for r in regions(hub_app)}
    assert listed == {"dehong": ["H1"], "jilin": ["H2"]}
    # the region's own answer lists its halls too
    assert [h["hall"] for h in put_region(hub_app, "dehong", {"name": "德宏", "preset": "dehong"}).json()["halls"]] == ["H1"]


def test_a_hall_in_an_unknown_region_is_404_and_changes_nothing(hub_app):
    response = put_hall(hub_app, "H1", {"region": "nowhere"})
    assert response.status_code == 404, response.text
    assert "no region nowhere" in response.json()["detail"]
    assert hub_app.query("SELECT COUNT(*) FROM halls") == [(0,)]
    put_region(hub_app, "jilin", JILIN)
    put_hall(hub_app, "H1", {"region": "jilin"})
    assert put_hall(hub_app, "H1", {"region": "nowhere"}).status_code == 404
    assert hub_app.query("SELECT region FROM halls WHERE hall = ?", "H1") == [("jilin",)]


# (body, what the 422 says): one app for all of them, as validation runs before the store
BAD_REGIONS = [
    ({"name": "x", "default_rule": {"kind": "calendar_days", "days": 0}}, "days must be an integer 1..366"),
    ({"name": "x", "default_rule": {"kind": "calendar_days", "days": 367}}, "days must be an integer 1..366"),
    ({"name": "x", "default_rule": {"kind": "calendar_days", "days": "7"}}, "days must be an integer"),
    ({"name": "x", "default_rule": {"kind": "calendar_days", "days": 7.5}}, "days must be an integer"),
    ({"name": "x", "default_rule": {"kind": "calendar_days", "days": True}}, "days must be an integer"),
    ({"name": "x", "default_rule": {"kind": "weeks", "days": 7}}, "kind must be one of"),
    ({"name": "x", "default_rule": {"kind": "calendar_days"}}, "missing keys ['days']"),
    ({"name": "x", "default_rule": {"kind": "calendar_days", "days": 7, "hours": 1}}, "unknown keys ['hours']"),
    ({"name": "x", "default_rule": [7]}, "valid dictionary"),
    ({"name": "x", "default_rule": {"kind": "calendar_days", "days": 7}, "preset": "jilin"}, "exactly one"),
    ({"name": "x"}, "exactly one"),
    ({"name": "x", "default_rule": None, "preset": None}, "exactly one"),
    ({"name": "x", "preset": "beijing"}, "jilin"),
    ({"name": "x", "preset": "jilin", "area_code": "22020"}, "pattern"),
    ({"name": "x", "preset": "jilin", "area_code": "2202001234567"}, "pattern"),
    ({"name": "x", "preset": "jilin", "area_code": "22020a"}, "pattern"),
    ({"name": "x", "preset": "jilin", "area_code": 220200}, "valid string"),
    ({"name": "", "preset": "jilin"}, "pattern"),
    ({"name": " 吉林", "preset": "jilin"}, "pattern"),
    ({"name": "吉\n林", "preset": "jilin"}, "pattern"),
    ({"name": "吉\x00林", "preset": "jilin"}, "pattern"),
    ({"name": "x" * 65, "preset": "jilin"}, "pattern"),
    ({"preset": "jilin"}, "Field required"),
]


def test_a_bad_region_is_422_with_the_reason_and_stores_nothing(hub_app):
    for body, says in BAD_REGIONS:
        response = put_region(hub_app, "jilin", body)
        assert response.status_code == 422, (body, response.text)
        assert says in str(response.json()["detail"]), (body, response.text)
    assert hub_app.query("SELECT COUNT(*) FROM regions") == [(0,)]


def test_bodies_only_python_reads_as_json_are_422_not_a_server_error(hub_app):
    for raw in (b'{"name": "\\ud800", "preset": "jilin"}',  # a lone surrogate: no UTF-8 column stores it
                b'{"name": "x", "default_rule": {"kind": "calendar_days", "days": NaN}}',
                b'{"name": "x", "default_rule": {"kind": "calendar_days", "days": Infinity}}'):
        response = hub_app.http.put("/api/v1/regions/jilin", content=raw,
                                    headers={**hub_app.admin_headers, "Content-Type": "application/json"})
        assert response.status_code == 422, (raw, response.text)
    assert hub_app.query("SELECT COUNT(*) FROM regions") == [(0,)]


def test_a_bad_hall_body_is_422(hub_app):
    put_region(hub_app, "jilin", JILIN)
    for body in ({}, {"region": "a b"}, {"region": "jilin", "name": "\t"}, {"region": 7}, {"region": None},
                 {"region": "jilin", "name": "x" * 65}):
        response = put_hall(hub_app, "H1", body)
        assert response.status_code == 422, (body, response.text)
    assert hub_app.query("SELECT COUNT(*) FROM halls") == [(0,)]


def test_bad_ids_in_the_path_are_422(hub_app):
    assert put_region(hub_app, "a b", JILIN).status_code == 422
    assert put_region(hub_app, "x" * 33, JILIN).status_code == 422
    assert put_hall(hub_app, "-H1", {"region": "jilin"}).status_code == 422


def test_regions_and_halls_need_the_admin_token(hub_app):
    assert put_region(hub_app, "jilin", JILIN, headers={}).status_code == 401
    assert put_region(hub_app, "jilin", JILIN, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert hub_app.http.get("/api/v1/regions").status_code == 401
    assert hub_app.http.put("/api/v1/halls/H1", json={"region": "jilin"}).status_code == 401
    assert hub_app.query("SELECT COUNT(*) FROM regions") == [(0,)]
