"""The platform exports through the API (both backends): a region's ratings of the asked China
dates and its default ratings, streamed as the export module writes them."""

from __future__ import annotations

import csv
import io

from hcp.protocol import sign_rating
from tests.fixtures.hub import binding, rating_item, service_item

from .conftest import H1, device_key, run_sql
from .test_defaults_store import set_regions


def rating(n: int, score: int, received_at: str, bound: dict | None = None) -> dict:
    return rating_item(sign_rating(device_key("D07"), H1, "D07", n, 1, 1000 + n, None, score),
                       bound=bound, received_at=received_at)


def test_a_day_of_a_region_as_gbt39046_csv_and_provincial_json(hub_app, hall, hub_db):
    set_regions(hub_db)
    run_sql(hub_db, "UPDATE regions SET area_code = '220200' WHERE region = 'jilin'")
    items = [service_item("S1", finished_at="2026-11-10T10:00:00+08:00"),  # unrated: defaulted 11-18
             service_item("S2"),
             rating(1, 5, "2026-11-18T09:00:00+08:00", bound=binding("S2")),
             rating(2, 1, "2026-11-18T23:59:59+08:00"),
             rating(3, 4, "2026-11-17T23:59:59+08:00"),  # the day before: not exported
             rating(4, 2, "2026-11-18T16:00:00Z")]  # 11-19 00:00 in China: not exported
    assert {r["status"] for r in hub_app.ingest(hall, H1, items).json()["results"]} == {"accepted"}
    assert hub_app.http.post("/api/v1/defaults/run", headers=hub_app.admin_headers).json()["applied"] == 1

    params = {"region": "jilin", "from": "2026-11-18", "to": "2026-11-18"}
    response = hub_app.http.get("/api/v1/export", headers=hub_app.admin_headers, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["评价编号"], r["满意度代码"], r["评价渠道"], r["行政区划"]) for r in rows] == [
        ("D07:1", "1", "政务大厅其他终端", "220200"),
        ("D07:2", "5", "政务大厅其他终端", "220200"),
        ("default:H1:S1", "3", "系统默认评价", "220200")]
    assert rows[0]["办件编号"] == binding("S2")["case_no"] and rows[2]["关联评价编号"] == "S1"

    provincial = hub_app.http.get("/api/v1/export", headers=hub_app.admin_headers,
                                  params={**params, "format": "provincial", "type": "json"}).json()
    assert [(r["hcpRatingId"], r["satisfaction"], r["pf"]) for r in provincial] == [
        ("D07:1", "5", "5"), ("D07:2", "1", "5"), ("default:H1:S1", "3", "7")]


def test_export_refuses_what_it_cannot_answer(hub_app, hub_db):
    headers = hub_app.admin_headers
    day = {"from": "2026-11-18", "to": "2026-11-18"}
    assert hub_app.http.get("/api/v1/export", headers=headers, params={"region": "nowhere", **day}).status_code == 404
    set_regions(hub_db)  # jilin has no area code yet
    no_code = hub_app.http.get("/api/v1/export", headers=headers, params={"region": "jilin", **day})
    assert no_code.status_code == 409 and "area_code" in no_code.json()["detail"]
    run_sql(hub_db, "UPDATE regions SET area_code = '220200' WHERE region = 'jilin'")
    backwards = hub_app.http.get("/api/v1/export", headers=headers,
                                 params={"region": "jilin", "from": "2026-11-18", "to": "2026-11-01"})
    assert backwards.status_code == 422
    assert hub_app.http.get("/api/v1/export", params={"region": "jilin", **day}).status_code == 401
