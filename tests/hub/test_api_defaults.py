"""The default-rating job through the API (both backends): run it, read what it stored."""

from __future__ import annotations

import time

from tests.fixtures.hub import running_app, service_item

from .conftest import GATEWAY_KEY, H1
from .test_defaults_store import set_regions


def test_run_applies_due_defaults_once_and_lists_them(hub_app, hall, hub_db):
    set_regions(hub_db)  # H1: Jilin, 7 calendar days
    items = [service_item("OLD", finished_at="2026-10-01T10:00:00+08:00"),
             service_item("NEW", finished_at="2099-01-01T10:00:00+08:00")]
    assert [r["status"] for r in hub_app.ingest(hall, H1, items).json()["results"]] == ["accepted"] * 2
    first = hub_app.http.post("/api/v1/defaults/run", headers=hub_app.admin_headers)
    assert first.status_code == 200, first.text
    assert (first.json()["applied"], first.json()["not_due"]) == (1, 1)
    assert hub_app.http.post("/api/v1/defaults/run", headers=hub_app.admin_headers).json()["applied"] == 0
    (d,) = hub_app.http.get("/api/v1/defaults", headers=hub_app.admin_headers, params={"hall": H1}).json()
    assert (d["service"], d["score"], d["rule"], d["due_at"]) == (
        "OLD", 3, {"kind": "calendar_days", "days": 7}, "2026-10-09T00:00:00+08:00")
    verify = hub_app.http.get("/api/v1/ledger/verify", headers=hub_app.admin_headers).json()
    assert verify["ok"] and verify["entries"] == 3  # two services and one default
    assert hub_app.http.post("/api/v1/defaults/run").status_code == 401


def test_the_hub_runs_the_job_on_its_own(tmp_path, hub_db):
    with running_app(tmp_path / "timed", defaults_interval_s=0.2, **hub_db) as hub:
        set_regions(hub_db)
        token = hub.register_gateway(H1, GATEWAY_KEY)
        hub.ingest(token, H1, [service_item("OLD", finished_at="2026-10-01T10:00:00+08:00")])
        deadline = time.monotonic() + 10
        while not hub.http.get("/api/v1/defaults", headers=hub.admin_headers).json():
            assert time.monotonic() < deadline, "the job did not run"
            time.sleep(0.05)
        (d,) = hub.http.get("/api/v1/defaults", headers=hub.admin_headers).json()
        assert d["service"] == "OLD"
