"""The ledger through the API (both backends): head and verify, before and after someone edits a
rating directly in the database."""

from __future__ import annotations

from hcp.protocol import sign_rating
from tests.fixtures.hub import rating_item, service_item

from .conftest import H1, device_key, run_sql


def test_verify_names_the_rating_edited_in_the_database(hub_app, hall, hub_db):
    empty = hub_app.http.get("/api/v1/ledger/head", headers=hub_app.admin_headers)
    assert empty.status_code == 200 and empty.json() == {"seq": 0, "hash": "0" * 64}
    items = [rating_item(sign_rating(device_key("D07"), H1, "D07", n, 1, 1000 + n, None, 1 + n % 5))
             for n in range(1, 4)] + [service_item("S1")]
    assert [r["status"] for r in hub_app.ingest(hall, H1, items).json()["results"]] == ["accepted"] * 4
    head = hub_app.http.get("/api/v1/ledger/head", headers=hub_app.admin_headers).json()
    assert head["seq"] == 4 and len(head["hash"]) == 64
    ok = hub_app.http.get("/api/v1/ledger/verify", headers=hub_app.admin_headers,
                          params={"expect": f"{head['seq']}:{head['hash']}"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["ok"] is True and ok.json()["entries"] == 4 and ok.json()["first_broken"] is None

    run_sql(hub_db, "UPDATE ratings SET score = 5 WHERE device = 'D07' AND n = 2")
    broken = hub_app.http.get("/api/v1/ledger/verify", headers=hub_app.admin_headers).json()
    assert broken["ok"] is False
    assert broken["first_broken"] == {"seq": 2, "kind": "rating", "hall": H1, "ref": "D07:2",
                                      "problem": "record_altered"}


def test_verify_wants_a_whole_recorded_head(hub_app):
    response = hub_app.http.get("/api/v1/ledger/verify", headers=hub_app.admin_headers,
                                params={"expect": "3"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "expect"]
    beyond = hub_app.http.get("/api/v1/ledger/verify", headers=hub_app.admin_headers,
                              params={"expect": "3:" + "a" * 64}).json()
    assert beyond["ok"] is False and beyond["first_broken"]["problem"] == "head_mismatch"
    assert hub_app.http.get("/api/v1/ledger/head").status_code == 401
