"""The operator dashboard's data (hub/dashboard.py) and pages (hub/web/dashboard.py), on both
backends: what each panel shows is what the stores' reads and GET /api/v1/stats say, within the
viewer's scope; the ledger panel shows the last verification, run as a background job.

A month of a small region is posted through the real hub's API (tests/fixtures/dashboard.py);
the data functions then run on a second store opened on the same database."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from html.parser import HTMLParser

import pytest

from hub import charts
from hub.dashboard import (ADMIN, TARGET, LedgerChecker, Month, Viewer, breakdown, daily, device_overview,
                           figures, ledger_status, visible_halls)
from hub.stats import Figures, StatsQuery
from hub.config import HubSettings
from hub.store import HubStore, store_for
from tests.fixtures.dashboard import UNIT, HALL_NAME, MONTH, make_people, populate, posted_hub, signed_in

from .conftest import BACKENDS, run_sql

OCTOBER = Month.parse(MONTH)
GROUPS = ("hall", "window", "staff", "matter", "unit")


@pytest.fixture(scope="module", params=BACKENDS)
def posted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """The hub app with the month posted, once per backend for this module's read-only tests."""
    pg = request.getfixturevalue("pg_server") if request.param == "postgres" else None
    with posted_hub(request.param, tmp_path_factory.mktemp("dashboard"), pg) as found:
        yield found


@pytest.fixture
def region(posted):
    return posted[0]


@pytest.fixture
async def data(posted) -> AsyncIterator[HubStore]:
    """A store on the app's database, after the month was posted."""
    async with store_for(HubSettings(**posted[1])) as store:
        yield store


@pytest.fixture
async def fresh(hub_app, store_factory) -> AsyncIterator[tuple]:
    """The month posted on a database of this test's own (it changes it): (app, store)."""
    populate(hub_app)
    async with store_factory() as store:
        yield hub_app, store


# ---------------------------------------------------------------------------- pure


def test_months():
    m = Month.parse("2024-02")
    assert (m.first, m.last, str(m.previous()), str(m.next())) == (date(2024, 2, 1), date(2024, 2, 29),
                                                                  "2024-01", "2024-03")
    assert str(Month.parse("2026-12").next()) == "2027-01" and str(Month.parse("2027-01").previous()) == "2026-12"
    for bad in ("2026-13", "2026-1", "26-01", "2026-00", "2026-01-01", ""):
        with pytest.raises(ValueError):
            Month.parse(bad)


def test_charts_escape_labels_and_show_every_figure():
    svg = charts.rates([charts.Rate("<S1>&", 0.5, 10), charts.Rate("S2", 0.9, 20), charts.Rate("S3", None, 0)],
                       title="t <x>", target=TARGET)
    assert "<S1>" not in svg and "&lt;S1&gt;&amp;" in svg and "t &lt;x&gt;" in svg
    assert "50.0% of 10 – below target" in svg and "90.0% of 20</title>" in svg
    day = charts.ratings_by_day([charts.Day("2026-10-01", (1, 0, 0, 2, 3)), charts.Day("2026-10-02", (0,) * 5)],
                                title="days")
    assert day.count("<rect") == 3 + 1 + 5  # three levels, the empty day's mark, the legend
    assert "2026-10-01 非常满意: 3" in day and "2026-10-02: 0" in day
    assert charts.axis(0) == (4, 1) and charts.axis(2) == (4, 1) and charts.axis(9) == (20, 5)
    assert charts.axis(101) == (200, 50)


# ---------------------------------------------------------------------------- devices


@pytest.mark.anyio
async def test_devices_panel_shows_presence_and_every_kind_of_problem(data):
    halls = {h.hall.hall: h for h in await device_overview(data, ADMIN, details=True)}
    assert list(halls) == ["H1", "H2", "H3", "H9"]  # H9: devices, no region (seen by the whole hub)
    h1 = halls["H1"]
    assert h1.hall.name == HALL_NAME and [w.window for w in h1.windows] == ["1", "2"]
    d11, d12 = h1.devices
    assert (d11.device, d11.presence, d11.firmware, d11.last_seen) == ("D11", "online", "0.2.0",
                                                                       "2026-10-14T10:00:00+08:00")
    assert [p.kind for p in d11.problems] == ["stuck_button", "tampering"]
    assert d11.problems[0].detail == "button(s) stuck: 3" and "D11:1" in (d11.problems[1].detail or "")
    assert (d12.presence, [(p.kind, p.detail) for p in d12.problems]) == (
        "offline", [("offline", "offline since 10:00 (last will)")])
    (d21,) = halls["H2"].devices
    assert [(p.kind, p.detail) for p in d21.problems] == [("hub_gap", "2 rating(s) missing in 1 gap(s)")]
    assert (h1.count("online"), h1.count("offline"), len(h1.with_problems)) == (1, 1, 2)
    assert halls["H3"].with_problems == [] and halls["H3"].devices[0].presence == "unknown"


@pytest.mark.anyio
async def test_a_viewer_sees_only_its_regions_and_halls(data):
    jilin = Viewer("u1", "operator", regions=frozenset({"jilin"}))
    assert [h.hall.hall for h in await device_overview(data, jilin)] == ["H1", "H2"]
    assert [h.hall for h in await visible_halls(data, jilin)] == ["H1", "H2"]
    one = Viewer("u2", "operator", regions=frozenset({"jilin"}), halls=frozenset({"H2"}))
    assert [h.hall.hall for h in await device_overview(data, one)] == ["H2"]
    assert await device_overview(data, one, hall="H1") == []  # another hall of its region
    assert await figures(data, one, OCTOBER.first, OCTOBER.last, hall="H1") == []
    dehong = Viewer("u3", "operator", regions=frozenset({"dehong"}))
    overview = await device_overview(data, dehong)
    assert [h.hall.hall for h in overview] == ["H3"]
    assert not any(p.kind == "tampering" for h in overview for d in h.devices for p in d.problems)


# ---------------------------------------------------------------------------- figures


async def _stats(store: HubStore, group: str | None, region: str | None = None, hall: str | None = None,
                 period: str = "month"):
    return await store.stats(StatsQuery(OCTOBER.first, OCTOBER.last, period, group, region, hall))


@pytest.mark.anyio
async def test_every_breakdown_is_the_stats_rollups(data):
    for group in GROUPS:
        assert (await breakdown(data, ADMIN, OCTOBER, group)).rows == await _stats(data, group), group
        assert (await breakdown(data, ADMIN, OCTOBER, group, hall="H1")).rows == await _stats(data, group, hall="H1")
    jilin = Viewer("u", "operator", regions=frozenset({"jilin"}))
    for group in GROUPS:
        assert (await breakdown(data, jilin, OCTOBER, group)).rows == await _stats(data, group, region="jilin")
    whole = (await breakdown(data, ADMIN, OCTOBER, "hall")).total
    assert (whole.services, whole.ratings, whole.bad, whole.defaulted, whole.no_shows) == (14, 11, 2, 4, 1)
    by_day = await daily(data, ADMIN, OCTOBER)
    assert len(by_day) == 31 and Figures.total(f for _, f in by_day) == whole


@pytest.mark.anyio
async def test_a_scope_of_several_halls_sums_the_same_keys(data):
    """Halls H1 and H3 (two regions): one query per hall, staff S1 of both summed."""
    two = Viewer("u", "supervisor", halls=frozenset({"H1", "H3"}))
    rows = {r.key["staff_id"]: r.figures for r in (await breakdown(data, two, OCTOBER, "staff")).rows}
    h1 = {r.key["staff_id"]: r.figures for r in await _stats(data, "staff", hall="H1")}
    h3 = {r.key["staff_id"]: r.figures for r in await _stats(data, "staff", hall="H3")}
    assert rows == {k: h1.get(k, Figures()) + h3.get(k, Figures()) for k in h1.keys() | h3.keys()}
    below = (await breakdown(data, two, OCTOBER, "hall")).below_target()
    assert [r.key["hall"] for r in below] == ["H1", "H3"]  # 6/8 and 2/3 rated, below 80%


# ---------------------------------------------------------------------------- the ledger


@pytest.mark.anyio
async def test_the_ledger_panel_shows_the_last_verification_and_what_changed_since(fresh, hub_db):
    _, data = fresh
    checker = LedgerChecker()
    status = await ledger_status(data, checker)
    assert status.last is None and status.stale and status.head_seq > 0
    assert checker.start(data, "u1") and not checker.start(data, "u2")  # one at a time
    await checker.wait()
    status = await ledger_status(data, checker)
    assert status.running_since is None and status.last is not None
    assert (status.last.ok, status.last.requested_by, status.last.entries, status.last.head_seq) == (
        True, "u1", status.head_seq, status.head_seq)
    assert not status.stale
    # a rating edited behind the hub's back (删差评 by turning it good): the next run says where
    run_sql(hub_db, "UPDATE ratings SET score = 5 WHERE score = 1")
    assert checker.start(data, "u2")
    await checker.wait()
    last = (await ledger_status(data, checker)).last
    assert last is not None and not last.ok and last.problems == 1
    assert last.result["first_broken"]["problem"] == "record_altered"
    assert last.result["first_broken"]["kind"] == "rating"


# ---------------------------------------------------------------------------- the pages


class _Tables(HTMLParser):
    """Every <table data-testid=…> of a page: its rows as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("data-testid"):
            self._table = self.tables.setdefault(a["data-testid"], [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


BELOW = " ▼ 低于目标 below target"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def test_the_pages_show_what_get_stats_answers(region):
    """For each group: every row of the page's table (services, ratings, evaluation rate with and
    without defaults, satisfaction, bad, defaulted) is the API's row, and below-target rates are
    marked."""
    hub = region
    with signed_in(hub, "op") as b:
        _pages_match_the_api(hub, b)


def _pages_match_the_api(hub, b) -> None:
    for page, groups, params in (("/dashboard", ("hall", "window", "staff", "matter"), {}),
                                 ("/dashboard/halls/H1", ("window", "staff", "matter", "unit"), {"hall": "H1"})):
        for group in groups:
            html = b.get(page, params={"month": MONTH, "by": group})
            assert html.status_code == 200, html.text
            assert html.headers["cache-control"] == "no-store" or "principal" not in html.text
            api = hub.http.get("/api/v1/stats", headers=hub.admin_headers, params={
                "from": "2026-10-01", "to": "2026-10-31", "period": "month", "group": group, **params}).json()
            shown = tables(html.text)["rates-table"][1:]
            expected = [[" / ".join("–" if v is None else v for v in r["key"].values()), str(r["services"]),
                         str(r["ratings"]), _pct(r["evaluation_rate"]), _pct(r["evaluation_rate_with_defaults"]),
                         _pct(r["satisfaction"]), str(r["bad"]), str(r["defaulted"])] for r in api["rows"]]
            marked = [row[3].endswith(BELOW) for row in shown]
            assert [[c.removesuffix(BELOW) for c in row] for row in shown] == expected, (page, group)
            assert marked == [r["evaluation_rate"] is not None and r["evaluation_rate"] < TARGET
                              for r in api["rows"]]
            assert html.headers["cache-control"] == "no-store"
            assert f'<span class="figure">{api["total"]["services"]}</span>' in html.text


def test_the_devices_panels_on_the_pages(region):
    with signed_in(region, "op") as b:
        page = b.get("/dashboard", params={"month": MONTH}).text
        hall = b.get("/dashboard/halls/H1", params={"month": MONTH}).text
    halls = {row[0]: row for row in tables(page)["halls"][1:]}
    assert halls[f"{HALL_NAME} (H1)"][1:] == ["jilin", "1", "1", "0", "0", "2"]
    attention = {row[2]: row for row in tables(page)["attention"][1:]}
    assert set(attention) == {"D11", "D12", "D21"}
    assert attention["D12"][3] == "offline" and "offline 离线" in attention["D12"][4]
    rows = tables(hall)["devices"][1:]
    assert rows[0][:3] == ["1", "D11", "online"] and "button(s) stuck: 3" in rows[0][3]
    assert rows[1][:3] == ["2", "D12", "offline"]
    assert 'http-equiv="refresh"' in hall  # it reloads itself, no script
    assert "<script" not in page + hall


def test_who_sees_the_pages(region):
    """Signed-in operators, supervisors and auditors, each its scope; the admin token is for the
    files (scripts), not the pages; handlers and unit-scoped people read their unit's bulletin."""
    hub = region
    for path in ("/dashboard", "/dashboard/halls/H1", "/dashboard/bulletin"):
        answer = hub.http.get(path, headers=hub.admin_headers, follow_redirects=False)  # no session
        assert (answer.status_code, answer.headers["location"].split("?")[0]) == (303, "/login"), path
    assert hub.http.get("/dashboard/bulletin.csv?month=2026-10&hall=H1").status_code == 401
    assert hub.http.get("/dashboard/bulletin.csv?month=2026-10&hall=H1", headers=hub.admin_headers).status_code == 200
    with signed_in(hub, "op-jilin") as b:
        page = b.get("/dashboard", params={"month": MONTH}).text
        assert [r[0] for r in tables(page)["halls"][1:]] == [f"{HALL_NAME} (H1)", "H2"]
        assert b.get("/dashboard/halls/H3").status_code == 404
        assert b.get("/dashboard/bulletin", params={"hall": "H3"}).status_code == 404
        assert b.get("/dashboard/bulletin.csv", params={"hall": "H1", "month": MONTH}).status_code == 200
        assert b.get("/dashboard?month=2026-13").status_code == 400
    with signed_in(hub, "sup-h2") as b:
        page = b.get("/dashboard", params={"month": MONTH}).text
        assert [r[0] for r in tables(page)["halls"][1:]] == ["H2"] and "立即校验 Verify now" in page
    with signed_in(hub, "aud") as b:
        page = b.get("/dashboard", params={"month": MONTH})
        assert page.status_code == 200 and "立即校验 Verify now" not in page.text  # reads only
        assert b.post_form("/dashboard/ledger/verify", {}).status_code == 403
    with signed_in(hub, "hd") as b:
        assert b.get("/dashboard").status_code == 403
        assert b.get("/dashboard/bulletin.csv", params={"unit": "x"}).status_code == 403
    with signed_in(hub, "op-unit") as b:
        assert b.get("/dashboard").status_code == 403
        assert b.get("/dashboard/bulletin", params={"hall": "H1"}).status_code == 403
        assert b.get("/dashboard/bulletin", params={"unit": "德宏州公安局"}).status_code == 404
        mine = b.get("/dashboard/bulletin", params={"month": MONTH})
        assert tables(mine.text) == {} and "bulletin.csv?month=2026-10&amp;unit=" in mine.text
        assert b.get("/dashboard/bulletin.xlsx", params={"month": MONTH, "unit": UNIT}).status_code == 200


def test_the_verify_button_runs_in_the_background_and_the_page_shows_its_result(hub_app):
    hub = hub_app
    populate(hub)
    make_people(hub)
    with signed_in(hub, "op") as b:
        assert "立即校验 Verify now" in b.get("/dashboard").text  # the form's CSRF token
        assert b.post_form("/dashboard/ledger/verify", {}, csrf=False).status_code == 403
        answer = b.post_form("/dashboard/ledger/verify", {})
        assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard#ledger")
        for _ in range(200):
            page = b.get("/dashboard", params={"month": MONTH}).text
            if "Intact" in page:
                break
            time.sleep(0.05)
    head = hub.http.get("/api/v1/ledger/head", headers=hub.admin_headers).json()
    assert re.search(rf"Intact: {head['seq']} 条 entries verified up to seq {head['seq']}", page), page
    assert "requested by op." in page


def test_a_large_table_lists_the_lowest_rates_and_says_how_many_there_are(region, monkeypatch):
    """A region's staff can be thousands: the page lists the TABLE_ROWS lowest evaluation rates."""
    import hub.web.dashboard as pages
    monkeypatch.setattr(pages, "TABLE_ROWS", 2)
    api = region.http.get("/api/v1/stats", headers=region.admin_headers, params={
        "from": "2026-10-01", "to": "2026-10-31", "period": "month", "group": "staff"}).json()["rows"]
    rated = sorted((r for r in api if r["evaluation_rate"] is not None), key=lambda r: r["evaluation_rate"])
    with signed_in(region, "op") as b:
        page = b.get("/dashboard", params={"month": MONTH, "by": "staff"}).text
    shown = [row[0] for row in tables(page)["rates-table"][1:]]
    assert shown == [r["key"]["staff_id"] for r in rated[:2]] == ["S7", "S3"]
    assert f"Showing the 2 with the lowest evaluation rate of {len(api)};" in " ".join(page.split())


def test_the_overdue_cases_panel_lists_the_viewer_s_overdue_cases(hub_app, hub_db):
    """Every bad rating opened a case at ingest (h1-3 and h1-5 in H1); one is made overdue by
    moving its contact deadline into the past (behind the hub's back)."""
    hub = hub_app
    populate(hub)
    make_people(hub)
    (total,) = run_sql(hub_db, "SELECT COUNT(*) FROM cases")[0]
    assert total == 2
    with signed_in(hub, "op") as b:
        assert "没有超期的差评件" in b.get("/dashboard").text  # none overdue yet
    (case_id,) = run_sql(hub_db, "SELECT MIN(id) FROM cases")[0]
    run_sql(hub_db, "UPDATE cases SET contact_due = ? WHERE id = ?", ("2026-10-20T00:00:00.000+00:00", case_id))
    for login, sees in (("op", True), ("op-jilin", True), ("sup-h2", False)):
        with signed_in(hub, login) as b:
            page = b.get("/dashboard").text
        assert (f'href="/cases/{case_id}"' in page) == sees, login
        assert ("1 件超期 overdue" in page) == sees and ("没有超期的差评件" in page) != sees


def test_the_public_page_shows_how_the_bad_reviews_are_rectified(hub_app, monkeypatch):
    """Cases opened this month (at ingest): H1's two, of UNIT; open at first; then a handler
    rectifies one and a supervisor decides the other's appeal not adopted. The hall's row and the
    unit's (institution's) row, on the index and the hall's page, follow."""
    from hub.web import results
    from .test_api_cases import act, now_text, people
    monkeypatch.setattr(results, "CACHE_S", 0.0)  # the in-process app: each read renders again
    populate(hub_app)
    now = str(Month.current())

    def published() -> list[list[str]]:
        page = hub_app.http.get("/results", params={"month": now}).text
        hall_page = hub_app.http.get("/results/halls/H1", params={"month": now}).text
        halls = {row[0]: row[6:] for row in tables(page)["results-halls"] if row and row[0].endswith(")")}
        units = {row[0]: row[6:] for row in tables(page)["results-units"] if row and row[0] == UNIT}
        hall_units = {row[0]: row[6:] for row in tables(hall_page)["results-hall-units"] if row and row[0] == UNIT}
        return [halls[f"{HALL_NAME} (H1)"], tables(hall_page)["results-hall-total"][1][6:], units[UNIT],
                hall_units[UNIT]]  # each: rectified, being rectified, not adopted

    assert published() == [["0", "2", "0"]] * 4
    first, second = sorted(c["id"] for c in hub_app.http.get("/api/v1/cases", headers=hub_app.admin_headers)
                           .json()["cases"])
    with people(hub_app, "wang", "chen") as p:  # UNIT's handler, a supervisor
        wang, chen = p["wang"], p["chen"]
        for action, args in (("contact", {"callback": {"at": now_text(), "channel": "phone", "outcome": "reached"}}),
                             ("rectify", {"note": "窗口增开"}), ("rectified", {"note": "已增开两个窗口"})):
            assert act(wang, first, action, **args).status_code == 200
        assert act(wang, second, "appeal", note="评价人误按").status_code == 200
        assert act(chen, second, "verify", method="records", note="调阅录像").status_code == 200
        assert act(chen, second, "decide", outcome="not_adopted", reason="mistaken", note="误评").status_code == 200
    assert published() == [["1", "0", "1"]] * 4
    # H1 moves to Dehong: its cases' units go with it, as its statistics do (a region's halls now)
    hub_app._admin("PUT", "/api/v1/halls/H1", json={"region": "dehong", "name": HALL_NAME})
    page = hub_app.http.get("/results", params={"month": now}).text
    regions = {re.search(r"<h2[^>]*>([^<]+)</h2>", part).group(1): tables(part)
               for part in page.split('<section class="dash-panel"')[1:]}
    assert set(regions) == {"吉林市", "德宏州"}
    assert {row[0]: row[6:] for row in regions["德宏州"]["results-units"] if row}.get(UNIT) == ["1", "0", "1"]
    assert UNIT not in {row[0] for row in regions["吉林市"].get("results-units", []) if row}
    assert f"{HALL_NAME} (H1)" in {row[0] for row in regions["德宏州"]["results-halls"] if row}
