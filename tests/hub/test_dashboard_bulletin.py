"""The monthly bulletin (hub/bulletin.py) of a hall and of a unit, as a page, CSV and XLSX, on both
backends: the CSV parsed back with the csv module and the XLSX opened with openpyxl's reader hold
exactly what GET /api/v1/stats answers, and no cell is a spreadsheet formula."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterator

import pytest
from openpyxl import load_workbook

from hub.bulletin import COLUMNS, CSV_HEADER, NO_KEY, hall_bulletin, unit_bulletin
from hub.config import HubSettings
from hub.dashboard import ADMIN, Month, Viewer
from hub.store import HubStore, store_for
from tests.fixtures.dashboard import FORMULA_UNIT, MONTH, UNIT, posted_hub, signed_in

from .conftest import BACKENDS

OCTOBER = Month.parse(MONTH)
API_FIGURES = {  # the bulletin's columns, as GET /api/v1/stats names them
    "服务量 services": "services", "未到 no-shows": "no_shows", "评价数 ratings": "ratings",
    "差评 bad": "bad", "已评价服务 rated services": "rated_services", "默认评价 defaulted": "defaulted",
    "评价率 evaluation rate": "evaluation_rate",
    "评价率(含默认) evaluation rate with defaults": "evaluation_rate_with_defaults",
    "满意度 satisfaction": "satisfaction", "满意度(含默认) satisfaction with defaults": "satisfaction_with_defaults",
    **{f"{level} score {s}": ("scores", str(s)) for s, level in
       ((5, "非常满意"), (4, "满意"), (3, "基本满意"), (2, "不满意"), (1, "非常不满意"))},
}


@pytest.fixture(scope="module", params=BACKENDS)
def posted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    pg = request.getfixturevalue("pg_server") if request.param == "postgres" else None
    with posted_hub(request.param, tmp_path_factory.mktemp("bulletin"), pg) as found:
        yield found


@pytest.fixture
async def data(posted) -> AsyncIterator[HubStore]:
    async with store_for(HubSettings(**posted[1])) as store:
        yield store


def api_value(row: dict, header: str):
    name = API_FIGURES[header]
    return row[name[0]][name[1]] if isinstance(name, tuple) else row[name]


def stats(hub, **params) -> dict:
    answer = hub.http.get("/api/v1/stats", headers=hub.admin_headers, params={
        "from": "2026-10-01", "to": "2026-10-31", "period": "month", **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def csv_text(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def key_of(row: dict) -> str:
    (value,) = [v for k, v in row["key"].items() if k != "hall"] or [None]
    return NO_KEY if value is None else value


def expected_rows(hub, hall: str) -> list[tuple[str, str, dict]]:
    """(group, key, API row) of the hall bulletin, in its order: total, window, staff, unit, matter."""
    rows = [("total", "", stats(hub, hall=hall)["total"])]
    for group in ("window", "staff", "unit", "matter"):
        body = stats(hub, hall=hall, group=group)
        found = [(group, key_of(r), r) for r in body["rows"]]
        if group == "window":
            found.sort(key=lambda g: int(g[1]))
        rows += found
    return rows


def test_the_hall_bulletin_csv_parses_back_to_the_stats(posted):
    hub, _ = posted
    answer = hub.http.get("/dashboard/bulletin.csv", params={"month": MONTH, "hall": "H1"}, headers=hub.admin_headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == (
        "attachment; filename=\"bulletin-hall-H1-2026-10.csv\"; filename*=UTF-8''bulletin-hall-H1-2026-10.csv")
    assert answer.content.startswith("\ufeff".encode()) and b"\r\n" in answer.content
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"), newline="")))
    assert tuple(rows[0]) == CSV_HEADER
    body = rows[1:]
    expected = expected_rows(hub, "H1")
    assert len(body) == len(expected) == 12
    for got, (group, key, api) in zip(body, expected, strict=True):
        assert got[:4] == [MONTH, "hall", "H1", group]
        assert got[4] == ("'" + key if key.startswith("=") else key)  # never a formula to Excel
        assert got[5:] == [csv_text(api_value(api, c.header)) for c in COLUMNS], (group, key)
    assert any(row[4] == "'" + FORMULA_UNIT for row in body)


def test_the_hall_bulletin_xlsx_opens_in_a_reader_with_the_stats(posted):
    hub, _ = posted
    answer = hub.http.get("/dashboard/bulletin.xlsx", params={"month": MONTH, "hall": "H1"}, headers=hub.admin_headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = load_workbook(io.BytesIO(answer.content))  # the real reader, not write_only's writer
    assert book.sheetnames == ["总计 total", "按窗口 by window", "按工作人员 by staff member", "按单位 by unit",
                               "按事项 by matter"]
    summary = {row[0].value: row[1] for row in book["总计 total"].iter_rows() if row and row[0].value}
    head = hub.http.get("/api/v1/ledger/head", headers=hub.admin_headers).json()
    assert summary["账本头 ledger head (seq:hash)"].value == f"{head['seq']}:{head['hash']}"
    assert summary["月份 month"].value == MONTH
    expected = expected_rows(hub, "H1")
    for c in COLUMNS:
        cell = summary[c.header]
        assert cell.value == api_value(expected[0][2], c.header), c.header
        assert cell.data_type == "n" and (cell.number_format == "0.0%") == (c.kind == "rate")
    by_sheet = {"window": "按窗口 by window", "staff": "按工作人员 by staff member", "unit": "按单位 by unit",
                "matter": "按事项 by matter"}
    for group, sheet in by_sheet.items():
        rows = list(book[sheet].iter_rows())
        assert [c.value for c in rows[0]][1:] == [c.header for c in COLUMNS]
        want = [(key, api) for g, key, api in expected if g == group]
        assert [r[0].value for r in rows[1:]] == [key for key, _ in want]
        for r, (key, api) in zip(rows[1:], want, strict=True):
            assert r[0].data_type == "s"  # text, even "=HYPERLINK(…)"
            assert [c.value for c in r[1:]] == [api_value(api, c.header) for c in COLUMNS], (group, key)
    units = [r[0] for r in book["按单位 by unit"].iter_rows(min_row=2)]
    formula = [c for c in units if c.value == FORMULA_UNIT]
    assert len(formula) == 1 and formula[0].data_type == "s"
    assert b"<f>" not in answer.content  # no formula element anywhere (the sheets are stored inline)


@pytest.mark.anyio
async def test_a_unit_bulletin_spans_its_halls_and_its_staff(posted, data):
    hub, _ = posted
    b = await unit_bulletin(data, ADMIN, UNIT, OCTOBER)
    assert (b.filename, b.ascii_filename) == (f"bulletin-unit-{UNIT}-2026-10", "bulletin-unit-________-2026-10")
    every = {r["key"]["unit"]: r for r in stats(hub, group="unit")["rows"]}
    for c in COLUMNS:
        assert c.get(b.total) == api_value(every[UNIT], c.header), c.header
    halls, staff = b.sections
    assert [k for k, _ in halls.rows] == ["H1", "H2"]
    for hall, f in halls.rows:
        row = next(r for r in stats(hub, group="unit", hall=hall)["rows"] if r["key"]["unit"] == UNIT)
        assert [c.get(f) for c in COLUMNS] == [api_value(row, c.header) for c in COLUMNS]
    assert [k for k, _ in staff.rows] == ["S1", "S2", "S7"]
    s1 = dict(staff.rows)["S1"]
    assert (s1.services, s1.ratings) == (5, 5)  # H1's three and H2's two
    # a viewer of another region sees nothing of the unit, nor the hall
    dehong = Viewer("u", "operator", regions=frozenset({"dehong"}))
    assert (await unit_bulletin(data, dehong, UNIT, OCTOBER)).total.ratings == 0
    assert await hall_bulletin(data, dehong, "H1", OCTOBER) is None
    jilin_h2 = Viewer("u", "operator", regions=frozenset({"jilin"}), halls=frozenset({"H2"}))
    b2 = await unit_bulletin(data, jilin_h2, UNIT, OCTOBER)
    assert [k for k, _ in b2.sections[0].rows] == ["H2"]


def test_the_bulletin_pages(posted):
    hub, _ = posted
    with signed_in(hub, "op") as b:
        _bulletin_pages(hub, b)


def _bulletin_pages(hub, b) -> None:
    chooser = b.get("/dashboard/bulletin", params={"month": MONTH})
    assert chooser.status_code == 200
    for href in ("/dashboard/bulletin.csv?month=2026-10&amp;hall=H1",
                 "/dashboard/bulletin.xlsx?month=2026-10&amp;unit=%E5%B8%82%E5%B8%82%E5%9C%BA%E7%9B%91%E7%9D%A3%E7%AE%A1%E7%90%86%E5%B1%80"):
        assert href in chooser.text, href
    page = b.get("/dashboard/bulletin", params={"month": MONTH, "unit": UNIT})
    for kind in ("csv", "xlsx"):  # a Chinese unit name in the file's name (RFC 6266 filename*)
        file = hub.http.get(f"/dashboard/bulletin.{kind}", params={"month": MONTH, "unit": UNIT},
                            headers=hub.admin_headers)
        assert file.status_code == 200
        assert file.headers["content-disposition"].endswith(
            "filename*=UTF-8''bulletin-unit-%E5%B8%82%E5%B8%82%E5%9C%BA%E7%9B%91%E7%9D%A3%E7%AE%A1%E7%90%86%E5%B1%80"
            f"-2026-10.{kind}")
    assert page.status_code == 200 and "H2" in page.text
    head = hub.http.get("/api/v1/ledger/head", headers=hub.admin_headers).json()
    assert f"{head['seq']}:{head['hash']}" in page.text  # the head to record outside the hub
    hall = b.get("/dashboard/bulletin", params={"month": MONTH, "hall": "H1"})
    assert "&#34;http://example.invalid&#34;" in hall.text or "&quot;http://example.invalid&quot;" in hall.text
    assert FORMULA_UNIT not in hall.text  # escaped, as every text
    for params in ({"month": MONTH}, {"month": MONTH, "hall": "H1", "unit": UNIT}):
        assert b.get("/dashboard/bulletin.csv", params=params).status_code == 400
    assert b.get("/dashboard/bulletin.xlsx", params={"hall": "H404"}).status_code == 404
    by_session = b.get("/dashboard/bulletin.csv", params={"month": MONTH, "hall": "H1"})
    by_token = hub.http.get("/dashboard/bulletin.csv", params={"month": MONTH, "hall": "H1"}, headers=hub.admin_headers)
    assert by_session.status_code == 200 and by_session.content == by_token.content
