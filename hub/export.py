"""Ratings as the regional 好差评 platforms take them: GB/T 39046 table-9 rows and provincial
interface rows, each written as CSV or JSON to a text stream, one record at a time.

Why: every hall's ratings must reach the regional 好差评 system "实时、全量" (DOMAIN.md), and those
systems speak their own field names and code tables, not ours (5 = 非常满意). This module is the one
place that maps a stored rating to them; it does no I/O of its own besides writing to the stream it
is given, so an HTTP endpoint, a CLI or a test can drive it.

Sources (docs/hub.md, "Exports", has the field tables and what could not be confirmed):

- **GB/T 39046—2020《政务服务平台基础数据规范》** (Basic data specification of government service
  platform; SAMR/SAC, published 2020-07-21, in force 2020-10-01), §6.6 表 9 "政务服务绩效评价基础数据集"
  (nine data items, names in Chinese only) and 附录 A 表 A.8 "满意度代码" (1 = 非常满意 … 5 = 非常不满意).
  Read from a full-text transcription of the standard found in public code, not the official PDF.
  (The 好差评 rules themselves are GB/T 39734—2020 and GB/T 39735—2020; neither defines data fields.)
- **Provincial interface**: the parameters of the Zhejiang 好差评 "办件评价服务" call
  (`offlinereport`), as a Ningbo 办件库 adapter in public code documents them: `projectNo`,
  `taskCode`, `areaCode`, `proDepart`, `pf` (评价渠道: pc端=1, 移动端=2, 二维码=3, 政务大厅平板电脑=4,
  政务大厅其他终端=5, 短信=6, 系统默认评价=7), `satisfaction` (1 非常不满意 … 5 非常满意),
  `writingEvaluation`, `assessTime` (`yyyy-MM-dd HH:mm:ss`), `assessNumber` (首次评价=1). Other
  provinces' tables agree on 1–5 and differ above 5 (e.g. 电话=6, 短信=7, no default code).

Mapping: a rating from the counter device is "政务大厅其他终端" (5; a button device, not a tablet), a
phone rating reached through the device's QR code is "二维码" (3), a system default rating is
"系统默认评价" (7; GB/T 39046 lists no default channel, so its name is used there too). Times are Beijing
time (UTC+8; China has had no DST since 1991, so a fixed offset needs no tz database). Columns
beyond the sources' (the rating id, what a record corrects) come last and are marked as ours.

Bad input raises `ExportError` (a ValueError) naming the record and the field. The writers take any
iterable and keep nothing but the current row, so memory stays flat however many rows go out;
a bad record stops the export there, after the rows before it were written.
"""

from __future__ import annotations

import csv
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Protocol

from hcp.protocol import LEVELS

if TYPE_CHECKING:
    from .store.base import StoredRating
    from .store.phone_sql import StoredPhoneRating

BEIJING = timezone(timedelta(hours=8), "CST")  # 北京时间, the platforms' wall clock
DEFAULT_SCORE = 3  # an unrated service defaults to 基本满意 (DOMAIN.md, every seed)
MAX_EVALUATIONS = 99  # 表 9 评价次数: n..2
AREA_CODE_LEN = (6, 12)  # 行政区划代码: 6 digits (county, GB/T 2260) up to 12 (village, statistics)

Value = str | int | None


class TextSink(Protocol):
    """Where rows go: a text file opened with `newline=""`, a StringIO, a response stream."""

    def write(self, s: str, /) -> object: ...


class ExportError(ValueError):
    """A record that cannot be exported: `record` is its id, `field` the offending field."""

    def __init__(self, record: str, field: str, problem: str):
        super().__init__(f"export: record {record!r}: field {field}: {problem}")
        self.record = record
        self.field = field


# ---------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class ExportRecord:
    """One rating as the exports need it. Checked on construction (`ExportError`).

    `rating_id` is ours ("device:n" for a device rating); `rated_at` an aware datetime (the
    gateway's receive time for a device rating); `area_code` the 行政区划代码 of the hall (6–12
    digits); the binding's `case_no` (办件编号), `matter_code` (事项编码), `unit` (受理部门 name)
    and `staff_id` are None for an unbound rating. `comment` is the rater's text (phone ratings).
    `by_phone`: rated on the phone page; `is_default`: the system's default rating of an unrated
    service (score 3); `corrects`: the id of what this record corrects or fills in, if anything
    (for a further evaluation of a service: the overall rating it follows). `evaluation_number`:
    评价次数, 1 for a service's overall rating, 2 for a phone follow-up (追加评价) or a phone
    supplementary rating a counter rating replaced (docs/phone.md); a further evaluation carries
    the service's overall rating as its `score` (the platforms want a level on every row).
    """

    rating_id: str
    score: int
    rated_at: datetime
    area_code: str
    case_no: str | None = None
    matter_code: str | None = None
    unit: str | None = None
    staff_id: str | None = None
    comment: str | None = None
    by_phone: bool = False
    is_default: bool = False
    corrects: str | None = None
    evaluation_number: int = 1

    def __post_init__(self) -> None:
        rid = self.rating_id if isinstance(self.rating_id, str) else repr(self.rating_id)
        if not isinstance(self.rating_id, str) or not self.rating_id.strip():
            raise ExportError(rid, "rating_id", "missing")
        _check_text(rid, "rating_id", self.rating_id)
        if type(self.score) is not int or self.score not in LEVELS:
            raise ExportError(rid, "score", f"{self.score!r} is not an integer 1..5")
        if not isinstance(self.rated_at, datetime) or self.rated_at.utcoffset() is None:
            raise ExportError(rid, "rated_at", f"{self.rated_at!r} is not a time with a UTC offset")
        if not isinstance(self.area_code, str) or not self.area_code:
            raise ExportError(rid, "area_code", "missing")
        lo, hi = AREA_CODE_LEN
        code = self.area_code
        if not (code.isascii() and code.isdigit() and lo <= len(code) <= hi):
            raise ExportError(rid, "area_code", f"{self.area_code!r} is not {lo}-{hi} digits")
        for name in ("case_no", "matter_code", "unit", "staff_id", "comment", "corrects"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str):
                    raise ExportError(rid, name, f"{value!r} is not text")
                _check_text(rid, name, value)
        for name in ("by_phone", "is_default"):
            if type(getattr(self, name)) is not bool:
                raise ExportError(rid, name, f"{getattr(self, name)!r} is not a boolean")
        if self.by_phone and self.is_default:
            raise ExportError(rid, "is_default", "a default rating is not a phone rating")
        if type(self.evaluation_number) is not int or not 1 <= self.evaluation_number <= MAX_EVALUATIONS:
            raise ExportError(rid, "evaluation_number", f"{self.evaluation_number!r} is not an integer "
                              f"1..{MAX_EVALUATIONS}")
        if self.evaluation_number > 1 and not self.by_phone:
            raise ExportError(rid, "evaluation_number", "only a phone rating follows a service's overall rating")
        if self.is_default and self.score != DEFAULT_SCORE:
            raise ExportError(rid, "score",
                              f"a default rating is {DEFAULT_SCORE} (基本满意), not {self.score}")

    @classmethod
    def from_stored(cls, rating: StoredRating, *, area_code: str, is_default: bool = False,
                    corrects: str | None = None) -> ExportRecord:
        """A stored device rating: its gateway receive time, its binding (if any), its score.
        A rating whose signature did not verify is never exported."""
        if not rating.verified:
            raise ExportError(rating.id, "verified", "an unverified rating is not exported")
        try:
            rated_at = datetime.fromisoformat(rating.received_at)
        except (TypeError, ValueError):
            raise ExportError(rating.id, "received_at",
                              f"{rating.received_at!r} is not ISO 8601") from None
        return cls(rating_id=rating.id, score=rating.score, rated_at=rated_at, area_code=area_code,
                   case_no=rating.case_no, matter_code=rating.matter_code, unit=rating.unit,
                   staff_id=rating.staff_id, is_default=is_default, corrects=corrects)


    @classmethod
    def from_phone(cls, rating: StoredPhoneRating, *, area_code: str) -> ExportRecord:
        """A phone rating (docs/phone.md): channel 二维码, its text, the time it was given. A
        supplementary rating that counts is the service's overall rating (评价次数 1); a follow-up,
        or a supplementary rating a counter rating replaced, follows the service's overall rating:
        its level is that one's, `corrects` names it, 评价次数 2 or 3."""
        try:
            rated_at = datetime.fromisoformat(rating.submitted_at)
        except (TypeError, ValueError):
            raise ExportError(rating.id, "submitted_at", f"{rating.submitted_at!r} is not ISO 8601") from None
        score = rating.score if rating.counted else rating.overall
        if score is None:
            raise ExportError(rating.id, "score", "follows no overall rating")
        return cls(rating_id=rating.id, score=score, rated_at=rated_at, area_code=area_code,
                   case_no=rating.case_no, matter_code=rating.service_matter_code, unit=rating.service_unit,
                   staff_id=rating.service_staff_id, comment=rating.comment, by_phone=True,
                   corrects=None if rating.counted else rating.overall_id,
                   evaluation_number=rating.evaluation_number)


def _check_text(record: str, field: str, value: str) -> None:
    """Text every consumer can take: UTF-8 encodable (no lone surrogates) and without NUL."""
    if "\x00" in value:
        raise ExportError(record, field, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ExportError(record, field, "is not valid Unicode text (lone surrogate)") from None


# ---------------------------------------------------------------------------- code tables

# GB/T 39046—2020 表 9 "评价渠道" takes these names (PC端、移动服务端、二维码、政务大厅平板电脑、
# 政务大厅其他终端、电话、短信); the default channel is not among them (docs/hub.md).
GBT_CHANNEL_HALL_DEVICE = "政务大厅其他终端"
GBT_CHANNEL_PHONE = "二维码"
GBT_CHANNEL_DEFAULT = "系统默认评价"

# Provincial `pf` codes (Zhejiang table): 3 二维码, 5 政务大厅其他终端, 7 系统默认评价.
PF_PHONE = "3"
PF_HALL_DEVICE = "5"
PF_DEFAULT = "7"

GBT_MAX_CASE_NO = 50  # 表 9 办件编号: 字符型 an..50
GBT_MAX_AREA_CODE = 9  # 表 9 行政区划: 字符型 n..9


def gbt_satisfaction_code(score: int) -> str:
    """GB/T 39046 表 A.8 满意度代码: 1 = 非常满意 … 5 = 非常不满意 (ours is the other way round)."""
    return str(6 - score)


# ---------------------------------------------------------------------------- rows

GBT39046_COLUMNS = (
    "办件编号", "评价渠道", "评价人", "评价时间", "评价次数", "满意度", "满意度代码", "文字评价", "行政区划",
    "评价编号", "关联评价编号",  # ours: the rating id, and what this record corrects
)


def gbt39046_row(rec: ExportRecord) -> dict[str, Value]:
    """GB/T 39046 表 9 row, in the table's order, then our two columns. 评价人 stays empty: device
    ratings are anonymous. 评价时间 is 表 9's `YYYYMMDDThhmmss`, Beijing time."""
    if rec.case_no is not None and len(rec.case_no) > GBT_MAX_CASE_NO:
        raise ExportError(rec.rating_id, "case_no", f"办件编号 is at most {GBT_MAX_CASE_NO} characters")
    if len(rec.area_code) > GBT_MAX_AREA_CODE:
        raise ExportError(rec.rating_id, "area_code", f"行政区划 is at most {GBT_MAX_AREA_CODE} digits")
    channel = (GBT_CHANNEL_DEFAULT if rec.is_default else
               GBT_CHANNEL_PHONE if rec.by_phone else GBT_CHANNEL_HALL_DEVICE)
    values: tuple[Value, ...] = (
        rec.case_no, channel, None, rec.rated_at.astimezone(BEIJING).strftime("%Y%m%dT%H%M%S"),
        rec.evaluation_number,
        LEVELS[rec.score], gbt_satisfaction_code(rec.score), rec.comment, rec.area_code,
        rec.rating_id, rec.corrects)
    return dict(zip(GBT39046_COLUMNS, values, strict=True))


PROVINCIAL_COLUMNS = (
    "projectNo", "taskCode", "areaCode", "proDepart", "pf", "satisfaction", "writingEvaluation",
    "assessTime", "assessNumber",
    "hcpRatingId", "hcpStaffId", "hcpCorrects",  # ours: rating id, staff id (not a name), corrects
)


def provincial_row(rec: ExportRecord) -> dict[str, Value]:
    """Provincial interface row: every value a string, as the interface's parameters are;
    `satisfaction` is our score (5 = 非常满意), `assessTime` `yyyy-MM-dd HH:mm:ss` Beijing time."""
    pf = PF_DEFAULT if rec.is_default else PF_PHONE if rec.by_phone else PF_HALL_DEVICE
    values: tuple[Value, ...] = (
        rec.case_no, rec.matter_code, rec.area_code, rec.unit, pf, str(rec.score), rec.comment,
        rec.rated_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"), str(rec.evaluation_number),
        rec.rating_id, rec.staff_id, rec.corrects)
    return dict(zip(PROVINCIAL_COLUMNS, values, strict=True))


@dataclass(frozen=True)
class ExportFormat:
    """A target: its fixed column order and how one record becomes a row (keys = columns)."""

    name: str
    columns: tuple[str, ...]
    row: Callable[[ExportRecord], dict[str, Value]]


GBT39046 = ExportFormat("gbt39046", GBT39046_COLUMNS, gbt39046_row)
PROVINCIAL = ExportFormat("provincial", PROVINCIAL_COLUMNS, provincial_row)
FORMATS = {fmt.name: fmt for fmt in (GBT39046, PROVINCIAL)}


# ---------------------------------------------------------------------------- writers


class Encoder(ABC):
    """An export as text pieces: `start()`, then `rows(records)` for each page of records (as they
    come: an HTTP response streams them), then `end()`. `count` is the rows encoded so far."""

    def __init__(self, fmt: ExportFormat):
        self.fmt = fmt
        self.count = 0

    @abstractmethod
    def start(self) -> str:
        ...

    @abstractmethod
    def rows(self, records: Iterable[ExportRecord]) -> str:
        ...

    @abstractmethod
    def end(self) -> str:
        ...


class CsvEncoder(Encoder):
    """Header, then one row per record, RFC 4180 (CRLF, fields quoted when they hold a comma, quote
    or line break; an absent value is empty). `bom` starts the text with U+FEFF for spreadsheet
    programs that guess the encoding; the default is plain UTF-8, which importers read without
    stripping anything."""

    def __init__(self, fmt: ExportFormat, *, bom: bool = False):
        super().__init__(fmt)
        self.bom = bom
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def _take(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text

    def start(self) -> str:
        self._writer.writerow(self.fmt.columns)
        return ("\ufeff" if self.bom else "") + self._take()

    def rows(self, records: Iterable[ExportRecord]) -> str:
        for rec in records:
            self._writer.writerow(["" if v is None else v for v in self.fmt.row(rec).values()])
            self.count += 1
        return self._take()

    def end(self) -> str:
        return ""


class JsonEncoder(Encoder):
    """A JSON array of row objects (keys in column order, absent values null, text unescaped:
    `ensure_ascii=False`), one object per line."""

    def start(self) -> str:
        return "["

    def rows(self, records: Iterable[ExportRecord]) -> str:
        parts = []
        for rec in records:
            parts.append(",\n" if self.count else "\n")
            parts.append(json.dumps(self.fmt.row(rec), ensure_ascii=False, separators=(",", ":")))
            self.count += 1
        return "".join(parts)

    def end(self) -> str:
        return "\n]\n" if self.count else "]\n"


def _write(encoder: Encoder, records: Iterable[ExportRecord], out: TextSink) -> int:
    """Stream `records` through `encoder` into `out`, a record at a time (constant memory)."""
    out.write(encoder.start())
    for rec in records:
        out.write(encoder.rows((rec,)))
    out.write(encoder.end())
    return encoder.count


def write_csv(records: Iterable[ExportRecord], out: TextSink, fmt: ExportFormat, *,
              bom: bool = False) -> int:
    """`CsvEncoder` into `out` (opened with `newline=""`). Returns rows written."""
    return _write(CsvEncoder(fmt, bom=bom), records, out)


def write_json(records: Iterable[ExportRecord], out: TextSink, fmt: ExportFormat) -> int:
    """`JsonEncoder` into `out`. Returns rows written."""
    return _write(JsonEncoder(fmt), records, out)
