"""Exports for the regional 好差评 platforms (hub/export.py; docs/hub.md, "Exports"): golden
files, the code-table mappings, bad input, the CSV/JSON agreement (hypothesis), flat memory while
streaming, and records straight from a real store.

Golden files: tests/hub/golden/export_{gbt39046,provincial}.{csv,json}, from GOLDEN_RECORDS.
After an intended change of the output, regenerate them with

    HCP_UPDATE_GOLDEN=1 .venv/bin/pytest tests/hub/test_export.py -k golden

and review the diff before committing it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hcp.protocol import LEVELS, sign_rating
from hub.export import (
    FORMATS,
    GBT39046,
    PROVINCIAL,
    ExportError,
    ExportFormat,
    ExportRecord,
    gbt39046_row,
    provincial_row,
    write_csv,
    write_json,
)
from hub.store.base import StoredRating
from tests.fixtures.hub import binding, rating_item

from .conftest import device_key

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("HCP_UPDATE_GOLDEN") == "1"
AREA = "330102"  # 杭州市上城区
CST = timezone(timedelta(hours=8))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


GOLDEN_RECORDS = [
    # every level once, bound, from the counter device
    ExportRecord("D07:1", 5, at("2026-11-21T09:30:07.412+08:00"), AREA, case_no="2026112100015",
                 matter_code="000105001000", unit="市市场监督管理局", staff_id="S0107"),
    # a unit name with ASCII and full-width commas and double quotes
    ExportRecord("D07:2", 4, at("2026-11-21T10:02:00+08:00"), AREA, case_no="2026112100016",
                 matter_code="000105001000", unit='市"一网通办"服务中心，综合窗口, 二楼', staff_id="S0107"),
    # unbound: no service, so no case, matter, unit or staff
    ExportRecord("D08:1", 3, at("2026-11-21T10:15:30+08:00"), AREA),
    ExportRecord("D08:2", 2, at("2026-11-21T10:40:59.999+08:00"), AREA, case_no="2026112100020",
                 matter_code="000201003000", unit="市公安局出入境管理支队", staff_id="S0212"),
    # UTC on the wire, the next day in Beijing
    ExportRecord("D08:3", 1, at("2026-11-21T17:05:00+00:00"), AREA, case_no="2026112200001",
                 matter_code="000201003000", unit="市公安局出入境管理支队", staff_id="S0212"),
    # the system's default rating of an unrated service
    ExportRecord("default:H1:5c1d0e2f3a4b6c7d", 3, at("2026-11-28T23:59:59+08:00"), AREA,
                 case_no="2026112100031", matter_code="000105001000", unit="市市场监督管理局",
                 staff_id="S0107", is_default=True, corrects="service:H1:5c1d0e2f3a4b6c7d"),
    # a phone rating with text: comma, quotes, a line break
    ExportRecord("phone:H1:7e8f9a0b1c2d3e4f", 5, at("2026-11-21T11:20:00+08:00"), AREA,
                 case_no="2026112100040", matter_code="000105002000", unit="市市场监督管理局",
                 staff_id="S0110", comment='窗口人员很耐心，"一次办好"！\n建议增加座椅, thanks', by_phone=True),
    # a 9-digit (township) area code and a leading-zero staff id kept as text
    ExportRecord("E01:17", 4, at("2026-11-22T08:00:00.5+08:00"), "330102001", case_no="A-0017",
                 matter_code="000105001000", unit="湖滨街道便民服务中心", staff_id="00042"),
]


def render(fmt: ExportFormat, kind: str, records, **kw) -> bytes:
    out = io.StringIO(newline="")
    (write_csv if kind == "csv" else write_json)(records, out, fmt, **kw)
    return out.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("kind", ["csv", "json"])
@pytest.mark.parametrize("fmt", [GBT39046, PROVINCIAL], ids=lambda f: f.name)
def test_golden_files_match_byte_for_byte(fmt, kind):
    path = GOLDEN / f"export_{fmt.name}.{kind}"
    produced = render(fmt, kind, GOLDEN_RECORDS)
    if UPDATE_GOLDEN:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(produced)
    assert path.exists(), f"{path} missing: run with HCP_UPDATE_GOLDEN=1"
    assert produced == path.read_bytes(), f"{path.name} differs: review, then HCP_UPDATE_GOLDEN=1"


def test_golden_csv_reads_back_as_the_json_rows():
    for fmt in (GBT39046, PROVINCIAL):
        table = list(csv.reader(io.StringIO((GOLDEN / f"export_{fmt.name}.csv").read_text("utf-8"),
                                            newline="")))
        objects = json.loads((GOLDEN / f"export_{fmt.name}.json").read_text("utf-8"))
        assert table[0] == list(fmt.columns)
        assert len(table) - 1 == len(objects) == len(GOLDEN_RECORDS)
        for row, obj in zip(table[1:], objects):
            assert list(obj) == list(fmt.columns)
            assert row == ["" if v is None else str(v) for v in obj.values()]


# ---------------------------------------------------------------------------- mappings


@pytest.mark.parametrize("score", sorted(LEVELS))
def test_each_level_maps_to_both_code_tables(score):
    rec = ExportRecord("D1:1", score, at("2026-01-02T03:04:05+08:00"), AREA)
    gbt, prov = gbt39046_row(rec), provincial_row(rec)
    # GB/T 39046 表 A.8: 1 = 非常满意 … 5 = 非常不满意; provincial: 5 = 非常满意
    assert gbt["满意度代码"] == {5: "1", 4: "2", 3: "3", 2: "4", 1: "5"}[score]
    assert gbt["满意度"] == LEVELS[score]
    assert prov["satisfaction"] == str(score)


def test_channels_device_phone_and_default():
    t = at("2026-01-02T03:04:05+08:00")
    device = ExportRecord("D1:1", 4, t, AREA)
    phone = ExportRecord("P1", 4, t, AREA, by_phone=True)
    default = ExportRecord("X1", 3, t, AREA, is_default=True, corrects="service:H1:abc")
    assert [gbt39046_row(r)["评价渠道"] for r in (device, phone, default)] == [
        "政务大厅其他终端", "二维码", "系统默认评价"]
    assert [provincial_row(r)["pf"] for r in (device, phone, default)] == ["5", "3", "7"]
    assert gbt39046_row(default)["关联评价编号"] == "service:H1:abc"
    assert provincial_row(default)["hcpCorrects"] == "service:H1:abc"


def test_times_are_beijing_wall_clock_in_each_platforms_format():
    rec = ExportRecord("D1:1", 5, at("2026-12-31T16:00:00.999+00:00"), AREA)
    assert gbt39046_row(rec)["评价时间"] == "20270101T000000"
    assert provincial_row(rec)["assessTime"] == "2027-01-01 00:00:00"


def test_unbound_rating_leaves_the_binding_columns_empty():
    rec = ExportRecord("D1:1", 2, at("2026-01-02T03:04:05+08:00"), AREA)
    gbt, prov = gbt39046_row(rec), provincial_row(rec)
    assert (gbt["办件编号"], gbt["评价人"], gbt["文字评价"]) == (None, None, None)
    binding_columns = ("projectNo", "taskCode", "proDepart", "hcpStaffId")
    assert [prov[name] for name in binding_columns] == [None] * 4
    assert (gbt["评价编号"], prov["hcpRatingId"], prov["areaCode"]) == ("D1:1", "D1:1", AREA)


def test_bom_only_when_asked_and_empty_exports_are_well_formed():
    with_bom = render(GBT39046, "csv", GOLDEN_RECORDS[:1], bom=True)
    assert with_bom.startswith("\ufeff办件编号,".encode())
    assert not render(GBT39046, "csv", GOLDEN_RECORDS[:1]).startswith("\ufeff".encode())
    assert render(PROVINCIAL, "csv", []) == (",".join(PROVINCIAL.columns) + "\r\n").encode()
    assert json.loads(render(PROVINCIAL, "json", [])) == []
    assert set(FORMATS) == {"gbt39046", "provincial"}


# ---------------------------------------------------------------------------- bad input


def good(**changes) -> dict:
    fields = {"rating_id": "D9:4", "score": 4, "rated_at": at("2026-01-02T03:04:05+08:00"),
              "area_code": AREA}
    return {**fields, **changes}


@pytest.mark.parametrize(("changes", "field"), [
    ({"score": 0}, "score"),
    ({"score": 6}, "score"),
    ({"score": True}, "score"),
    ({"score": "5"}, "score"),
    ({"rated_at": datetime(2026, 1, 2, 3, 4, 5)}, "rated_at"),
    ({"rated_at": "2026-01-02T03:04:05+08:00"}, "rated_at"),
    ({"area_code": ""}, "area_code"),
    ({"area_code": "33010"}, "area_code"),
    ({"area_code": "3301O2"}, "area_code"),
    ({"area_code": "３３０１０２"}, "area_code"),  # full-width digits
    ({"comment": "a\x00b"}, "comment"),
    ({"unit": "bad \udc80 text"}, "unit"),
    ({"case_no": 2026112100015}, "case_no"),
    ({"is_default": True}, "score"),  # a default rating is 基本满意 (3)
    ({"is_default": True, "by_phone": True, "score": 3}, "is_default"),
    ({"by_phone": 1}, "by_phone"),
])
def test_bad_records_are_refused_naming_record_and_field(changes, field):
    with pytest.raises(ExportError) as caught:
        ExportRecord(**good(**changes))
    assert (caught.value.record, caught.value.field) == ("D9:4", field)
    assert "'D9:4'" in str(caught.value) and f"field {field}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("rating_id", ["", "  ", None])
def test_a_record_without_an_id_is_refused(rating_id):
    with pytest.raises(ExportError, match="field rating_id: missing"):
        ExportRecord(**good(rating_id=rating_id))


def test_gbt_length_limits_are_checked_where_the_standard_sets_them():
    long_case = ExportRecord(**good(case_no="C" * 51))
    with pytest.raises(ExportError, match="field case_no"):
        gbt39046_row(long_case)
    assert provincial_row(long_case)["projectNo"] == "C" * 51  # no limit known there
    village = ExportRecord(**good(area_code="330102001001"))  # 12 digits: GB/T takes n..9
    with pytest.raises(ExportError, match="field area_code"):
        gbt39046_row(village)
    assert provincial_row(village)["areaCode"] == "330102001001"


def test_a_bad_record_stops_the_stream_after_the_rows_before_it():
    def records() -> Iterator[ExportRecord]:
        yield from GOLDEN_RECORDS[:2]
        yield ExportRecord(**good(case_no="C" * 51))
        raise AssertionError("the writer read past the bad record")

    out = io.StringIO(newline="")
    with pytest.raises(ExportError, match="'D9:4'"):
        write_csv(records(), out, GBT39046)
    assert len(list(csv.reader(io.StringIO(out.getvalue(), newline="")))) == 3  # header + 2


# ---------------------------------------------------------------------------- from the store


def stored(**changes) -> StoredRating:
    fields = dict(device="D07", n=3, hall="H1", boot=1, mono=1003, session=None, score=2,
                  kid="00000000", sig="0" * 64, received_at="2026-11-21T09:30:07.412+08:00",
                  offset_ms=0, service=None, ticket=None, window="7", staff_id=None,
                  matter_code=None, case_no=None, unit=None,
                  unbound_reason="no_service_in_progress", verified=True,
                  ingested_at="2026-11-21T09:30:08+08:00")
    return StoredRating(**{**fields, **changes})


def test_from_stored_refuses_unverified_and_unreadable_ratings():
    with pytest.raises(ExportError, match="'D07:3': field verified"):
        ExportRecord.from_stored(stored(verified=False), area_code=AREA)
    with pytest.raises(ExportError, match="'D07:3': field received_at"):
        ExportRecord.from_stored(stored(received_at="yesterday"), area_code=AREA)
    with pytest.raises(ExportError, match="'D07:3': field area_code"):
        ExportRecord.from_stored(stored(), area_code="")
    default = ExportRecord.from_stored(stored(score=3), area_code=AREA, is_default=True,
                                       corrects="service:H1:x")
    assert (default.is_default, default.corrects, default.by_phone) == (True, "service:H1:x", False)


@pytest.mark.anyio
async def test_ratings_from_a_real_store_export_with_their_binding(store):
    await store.register_device("D07", "H1", "7", device_key("D07"))

    def rate(n: int, score: int, sess: str | None = None):
        return sign_rating(device_key("D07"), "H1", "D07", n, 1, 1000 + n, sess, score)

    await store.ingest("H1", [
        rating_item(rate(1, 5, "3f2a9c1e0b7d4a55"), binding(unit='市"一网通办"中心, 窗口')),
        rating_item(rate(2, 1), unbound_reason="no_service_in_progress",
                    received_at="2026-11-21T16:30:00+00:00"),
    ])
    ratings = sorted(await store.list_ratings(hall="H1"), key=lambda r: r.n)
    records = [ExportRecord.from_stored(r, area_code=AREA) for r in ratings]
    rows = json.loads(render(PROVINCIAL, "json", records))
    assert rows[0] == {
        "projectNo": "2026112100015", "taskCode": "000105001000", "areaCode": AREA,
        "proDepart": '市"一网通办"中心, 窗口', "pf": "5", "satisfaction": "5", "writingEvaluation": None,
        "assessTime": "2026-11-21 09:30:07", "assessNumber": "1", "hcpRatingId": "D07:1",
        "hcpStaffId": "S0107", "hcpCorrects": None}
    assert (rows[1]["projectNo"], rows[1]["satisfaction"], rows[1]["assessTime"]) == (
        None, "1", "2026-11-22 00:30:00")
    table = list(csv.reader(io.StringIO(render(GBT39046, "csv", records).decode(), newline="")))
    assert [row[:9] for row in table[1:]] == [
        ["2026112100015", "政务大厅其他终端", "", "20261121T093007", "1", "非常满意", "1", "", AREA],
        ["", "政务大厅其他终端", "", "20261122T003000", "1", "非常不满意", "5", "", AREA]]


# ---------------------------------------------------------------------------- properties

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=40)
maybe_text = st.none() | text.filter(bool)
records = st.builds(
    lambda rid, score, when, offset, area, case_no, matter, unit, staff, comment, origin, corrects:
        ExportRecord(rid, 3 if origin == "default" else score,
                     when.replace(tzinfo=timezone(timedelta(minutes=offset))), area,
                     case_no=case_no, matter_code=matter, unit=unit, staff_id=staff,
                     comment=comment, by_phone=origin == "phone",
                     is_default=origin == "default", corrects=corrects),
    text.filter(str.strip), st.sampled_from(sorted(LEVELS)),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.integers(-12 * 60, 14 * 60), st.from_regex(r"[0-9]{6,9}", fullmatch=True),
    st.none() | text.filter(bool).map(lambda s: s[:50]), maybe_text, maybe_text, maybe_text,
    maybe_text, st.sampled_from(["device", "phone", "default"]), maybe_text,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(records, max_size=5), st.sampled_from([GBT39046, PROVINCIAL]), st.booleans())
def test_csv_rows_read_back_as_the_json_objects(recs, fmt, bom):
    text_csv = render(fmt, "csv", recs, bom=bom).decode("utf-8")
    if bom:
        assert text_csv.startswith("\ufeff")
        text_csv = text_csv[1:]
    table = list(csv.reader(io.StringIO(text_csv, newline="")))
    objects = json.loads(render(fmt, "json", recs).decode("utf-8"))
    assert table[0] == list(fmt.columns)
    assert len(table) - 1 == len(objects) == len(recs)
    for row, obj, rec in zip(table[1:], objects, recs):
        assert list(obj) == list(fmt.columns)
        assert row == ["" if v is None else str(v) for v in obj.values()]
        assert obj == fmt.row(rec)


@settings(max_examples=200, deadline=None)
@given(records)
def test_row_codes_follow_the_score_and_origin(rec):
    gbt, prov = gbt39046_row(rec), provincial_row(rec)
    assert int(str(gbt["满意度代码"])) + rec.score == 6
    assert prov["satisfaction"] == str(rec.score)
    assert (prov["pf"] == "7") == rec.is_default == (gbt["评价渠道"] == "系统默认评价")
    beijing = rec.rated_at.astimezone(CST).replace(tzinfo=None, microsecond=0)
    assert datetime.strptime(str(gbt["评价时间"]), "%Y%m%dT%H%M%S") == beijing
    assert datetime.strptime(str(prov["assessTime"]), "%Y-%m-%d %H:%M:%S") == beijing


# ---------------------------------------------------------------------------- streaming


class CountingSink:
    """A text sink that keeps only a character count: what a socket or file looks like to us."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, s: str) -> int:
        self.chars += len(s)
        return len(s)


def many(count: int) -> Iterator[ExportRecord]:
    base = at("2026-11-21T09:00:00+08:00")
    for i in range(count):
        yield ExportRecord(f"D{i % 97}:{i}", i % 5 + 1, base + timedelta(seconds=i), AREA,
                           case_no=f"2026{i:09d}", matter_code="000105001000", unit="市市场监督管理局",
                           staff_id=f"S{i % 300:04d}")


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_memory_stays_flat_however_many_rows(kind):
    write = write_csv if kind == "csv" else write_json
    peaks = []
    for count in (1_000, 20_000):
        sink = CountingSink()
        tracemalloc.start()
        try:
            assert write(many(count), sink, GBT39046) == count
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert sink.chars > count * 60
    # 20 times the rows, about the same peak: nothing grows with the row count
    assert peaks[1] < peaks[0] * 1.5 + 16_384, peaks
