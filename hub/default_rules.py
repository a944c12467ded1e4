"""When an unrated service gets its default 基本满意 rating: each region's rule and the deadline.

Why: the regions' rules differ in kind, not only in length (DOMAIN.md, "Ratings"): Jilin counts
7 calendar days, Dehong and the 9th Division 5 working days of China's official calendar. The job
that writes the default records (idempotent, periodic) asks `default_due` for each unrated
service and writes the record once `now >= due`.

What "within N days" means here, precisely. The service finished at instant F; D is F's date in
China (UTC+8):
- D itself never counts, whatever the hour (民法典 第二百零一条: a period counted in days starts
  the day after the event). The last day of the period is
  - calendar days: D + N;
  - working days: the N-th working day after D (`WorkCalendar.add_workdays`). A service finished
    on a rest day (weekend, holiday) therefore counts from the next working day, which is day 1;
    a make-up working day (调休上班) counts like any working day.
- A rating is in time until the end of that last day. The default applies from `due`, the first
  instant of the following day, 00:00 in China: `rated_at < due` is in time, `rated_at >= due`
  is late and the default stands.
- Calendar days are not extended when the last day is a holiday: the regions' rules say 日, not
  工作日, and the ones that mean working days say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal

from hub.workdays import WorkCalendar

# China has kept one offset, UTC+8 with no daylight saving, since 1991: a fixed zone is exact for
# every date the hub sees and needs no tz database on the machine.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_DAYS = 366  # the longest rule that is not a typo; real ones are 5 to 15

Kind = Literal["calendar_days", "working_days"]
KINDS: tuple[Kind, ...] = ("calendar_days", "working_days")


class RuleError(ValueError):
    """A region rule that cannot be used, with the reason."""


@dataclass(frozen=True)
class DefaultRule:
    """Unrated services default to 基本满意 after `days` calendar or working days."""

    kind: Kind
    days: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RuleError(f"kind must be one of {list(KINDS)}, not {self.kind!r}")
        if type(self.days) is not int or not 1 <= self.days <= MAX_DAYS:
            raise RuleError(f"days must be an integer 1..{MAX_DAYS}, not {self.days!r}")

    @classmethod
    def from_dict(cls, doc: Any) -> DefaultRule:
        """From `{"kind": "calendar_days" | "working_days", "days": N}` (no other keys)."""
        if not isinstance(doc, Mapping):
            raise RuleError(f"a rule is an object {{kind, days}}, not {type(doc).__name__}")
        unknown = sorted(set(doc) - {"kind", "days"})
        if unknown:
            raise RuleError(f"unknown keys {unknown} (allowed: ['days', 'kind'])")
        missing = [k for k in ("kind", "days") if k not in doc]
        if missing:
            raise RuleError(f"missing keys {missing}")
        return cls(kind=doc["kind"], days=doc["days"])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "days": self.days}


@dataclass(frozen=True)
class RegionPreset:
    """A region's rule as its own document states it."""

    key: str
    name: str
    rule: DefaultRule
    source: str  # the document and the sentence (seeds in shared/seeds/)


PRESETS: dict[str, RegionPreset] = {p.key: p for p in (
    RegionPreset(
        key="jilin",
        name="吉林市",
        rule=DefaultRule("calendar_days", 7),
        source="《吉林市政务服务“好差评”工作细则(试行)》第十条：服务对象接受服务后7日内未进行评价的，"
               "默认为“基本满意”。(seeds/000，原文繁体)",
    ),
    RegionPreset(
        key="dehong",
        name="德宏傣族景颇族自治州",
        rule=DefaultRule("working_days", 5),
        source="德宏州政务服务“好差评”制度文件(seeds/004，抄件无标题)，三、(三)评价流程 1.评价："
               "企业和群众在接受服务后5个工作日内未进行评价的，默认为“基本满意”。",
    ),
    RegionPreset(
        key="xpcc-9th-division",
        name="新疆生产建设兵团第九师",
        rule=DefaultRule("working_days", 5),
        source="师办发〔2020〕8号《第九师推行政务服务“好差评”制度工作方案》五、“一是自动回访”："
               "当事人在5个工作日内未回复，系统平台或现场默认为基本满意。(seeds/002)",
    ),
)}


@dataclass(frozen=True)
class Deadline:
    """The end of a service's rating period.

    `last_day`: the last day (China) a rating is in time; `due`: the instant the default applies
    (00:00 China time the day after `last_day`); `estimated`: some day counted was guessed
    Monday–Friday for want of holiday data (the calendar has recorded the year: alert).
    """

    last_day: date
    due: datetime
    estimated: bool


def service_day(finished_at: datetime) -> date:
    """The date in China of an instant; a naive datetime is refused (which zone would it be?)."""
    if not isinstance(finished_at, datetime):
        raise TypeError(f"finished_at must be a datetime, not {type(finished_at).__name__}")
    if finished_at.tzinfo is None or finished_at.utcoffset() is None:
        raise ValueError(f"finished_at must carry its offset (e.g. +08:00): {finished_at.isoformat()}")
    return finished_at.astimezone(CHINA_TZ).date()


def default_deadline(finished_at: datetime, rule: DefaultRule,
                     calendar: WorkCalendar | None = None) -> Deadline:
    """The rating period of a service finished at `finished_at` under `rule` (module docstring).

    `calendar` is needed for working days only.
    """
    day = service_day(finished_at)
    if rule.kind == "calendar_days":
        last = day + timedelta(days=rule.days)
        estimated = False
    else:
        if calendar is None:
            raise ValueError("a working-days rule needs a WorkCalendar")
        last = calendar.add_workdays(day, rule.days)
        estimated = bool(calendar.missing_years(day + timedelta(days=1), last))
    due = datetime.combine(last + timedelta(days=1), time(0), tzinfo=CHINA_TZ)
    return Deadline(last_day=last, due=due, estimated=estimated)


def default_due(finished_at: datetime, rule: DefaultRule,
                calendar: WorkCalendar | None = None) -> datetime:
    """The instant from which an unrated service gets its default 基本满意 (UTC+8, aware)."""
    return default_deadline(finished_at, rule, calendar).due
