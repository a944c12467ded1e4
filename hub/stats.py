"""Statistics (docs/hub.md, "Statistics"): what each figure counts, on which day, and the additive
counters that keep `GET /api/v1/stats` fast.

Pure: no I/O. The stores keep rollup tables of the counters in COUNTERS per (hall, day, window,
staff, matter, unit), and coarser ones per (hall, period, one dimension) whose period is a day
(YYYY-MM-DD) or a month (YYYY-MM: the sum of its days, so a month of a region is a few thousand
rows), all updated in the transaction that stores what they count (ROLLUPS). `ingest_deltas`,
`default_deltas` and `Tally` (the rebuild from the raw records) count the same way, so the rollups
always equal a recount of the raw tables.

- A day is a date in China (UTC+8, Asia/Shanghai: no daylight saving since 1991).
- services / no_shows: services with outcome `finished` / `no_show`, on the day and with the
  window, staff, matter and unit of the service. A no-show is not a service delivered (nobody was
  served, nobody could rate), so it is not in the evaluation rate's denominator.
- score1..score5, unbound: ratings by score, on the day the gateway received them (`received_at`),
  with the window, staff, matter and unit of their binding (unbound: the device's window and no
  staff, matter or unit). Known when the rating arrives, whether or not its service has come.
- rated: finished services with at least one bound rating, on the service's day and dimensions
  (counted once, when the later of the service and its first rating arrives).
- defaulted: finished services with a system default rating (`default_ratings`), likewise.
- rated_or_default: finished services rated or defaulted (each once: a rating that arrives after
  the service's default does not count it again).
- A phone supplementary rating (补充评价, docs/phone.md) counts as a rating (its score, on the day it
  was given, under the service's window, staff, matter and unit as far as the hub knew them then)
  and rates its service, as long as the service has no counter rating: a counter rating that
  arrives later takes its place (its score is taken out of the day it was counted on; the service
  stays rated once). Phone follow-ups (追加评价) carry no overall rating and count nothing.
- not_adopted: bad ratings an appeal decided not to adopt (误评, 恶意差评; hub/cases.py), on the
  rating's day and dimensions, counted when the decision is stored. The rating stays in every
  other counter (it was given, and its service is rated); satisfaction leaves it out.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from operator import add, itemgetter

from hcp.protocol import BAD_SCORES

from .ingest import IngestPlan, ServiceItem

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_RANGE_DAYS = 366  # one request covers at most a (leap) year of days
MAX_ROWS = 50_000  # rows in one answer (~17 MB of JSON): more is refused, not built in memory
NONE = ""  # a missing staff, matter or unit in a rollup key (keys cannot hold NULL; ingest never stores "")
PERIODS = ("day", "month")
GROUPS = ("region", "hall", "window", "staff", "matter", "unit")

COUNTERS = ("services", "no_shows", "rated", "rated_or_default", "defaulted",
            "score1", "score2", "score3", "score4", "score5", "unbound", "not_adopted")
_AT = {name: i for i, name in enumerate(COUNTERS)}
_SCORE = {score: _AT[f"score{score}"] for score in range(1, 6)}
_BAD_AT = tuple(sorted(s - 1 for s in BAD_SCORES))  # their places in Figures.scores

FineKey = tuple[str, str, str, str, str, str]  # hall, day, window, staff, matter, unit


class TooManyRows(ValueError):
    """An answer would have more than MAX_ROWS rows."""


@dataclass(frozen=True)
class Rollup:
    """A rollup table: the counters per (hall, period, *dims); period a day, and with `months`
    also a month."""

    table: str
    dims: tuple[str, ...]  # key columns after hall and period, in FINE_DIMS' names
    months: bool = True
    _project: Callable[[FineKey], tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # the projection, made once: it runs for every key of every batch
        object.__setattr__(self, "_project", itemgetter(0, 1, *(2 + FINE_DIMS.index(d) for d in self.dims)))

    def project(self, key: FineKey) -> tuple[str, ...]:
        return self._project(key)

    @property
    def key_columns(self) -> tuple[str, ...]:
        return ("hall", "period", *self.dims)


FINE_DIMS = ("window_id", "staff_id", "matter_code", "unit")
FINE = Rollup("stats_fine", FINE_DIMS, months=False)
ROLLUPS = (FINE, Rollup("stats_hall", ()), Rollup("stats_window", ("window_id",)),
           Rollup("stats_staff", ("staff_id",)), Rollup("stats_matter", ("matter_code",)),
           Rollup("stats_unit", ("unit",)))
_BY_TABLE = {r.table: r for r in ROLLUPS}

# What each `group` reads: the rollup table and the key it groups by, as (output name, column).
# Region is the hall's region now (halls.region), so moving a hall moves its history with it.
GROUP_SOURCES: dict[str | None, tuple[Rollup, tuple[tuple[str, str], ...]]] = {
    None: (_BY_TABLE["stats_hall"], ()),
    "region": (_BY_TABLE["stats_hall"], (("region", "h.region"),)),
    "hall": (_BY_TABLE["stats_hall"], (("hall", "s.hall"),)),
    "window": (_BY_TABLE["stats_window"], (("hall", "s.hall"), ("window", "s.window_id"))),
    "staff": (_BY_TABLE["stats_staff"], (("staff_id", "s.staff_id"),)),
    "matter": (_BY_TABLE["stats_matter"], (("matter_code", "s.matter_code"),)),
    "unit": (_BY_TABLE["stats_unit"], (("unit", "s.unit"),)),
}

_FAST_DAY = re.compile(r"\d{4}-\d{2}-\d{2}[T ][0-2]\d:\d{2}[^+-]*\+08:00")  # date as written is China's


def china_day(text: str) -> str:
    """The date in China (YYYY-MM-DD) of an ISO 8601 time with a UTC offset (as ingest checked it).
    A time whose date in China falls outside year 1..9999 keeps its own date."""
    if _FAST_DAY.fullmatch(text):
        return text[:10]
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # not from ingest (field_time requires an offset): read as China's
        return moment.date().isoformat()
    try:
        return moment.astimezone(CHINA).date().isoformat()
    except OverflowError:
        return moment.date().isoformat()


def _dim(value: str | None) -> str:
    return NONE if value is None else value


# ---------------------------------------------------------------------------- counting


class Deltas:
    """Counter increments per fine key; `rows(rollup)` sums them into a rollup's rows."""

    def __init__(self) -> None:
        self.counts: dict[FineKey, list[int]] = {}

    def add(self, key: FineKey, counter: str, n: int = 1) -> None:
        row = self.counts.get(key)
        if row is None:
            row = self.counts[key] = [0] * len(COUNTERS)
        row[_AT[counter]] += n

    def add_score(self, key: FineKey, score: int, bound: bool) -> None:
        row = self.counts.get(key)
        if row is None:
            row = self.counts[key] = [0] * len(COUNTERS)
        row[_SCORE[score]] += 1
        if not bound:
            row[_AT["unbound"]] += 1

    def remove_score(self, key: FineKey, score: int) -> None:
        """Take back a counted bound rating (a phone supplementary rating its counter rating replaced)."""
        row = self.counts.get(key)
        if row is None:
            row = self.counts[key] = [0] * len(COUNTERS)
        row[_SCORE[score]] -= 1

    def __bool__(self) -> bool:
        return bool(self.counts)

    def rows(self, rollup: Rollup) -> list[tuple]:
        """(*key, *counters) per key of `rollup` (its month rows too), sorted by key (PostgreSQL
        takes row locks in this order, so two transactions never wait on each other in a circle)."""
        if rollup is FINE:
            summed = self.counts
        else:
            summed = {}
            get, project, months = summed.get, rollup._project, rollup.months
            for key, counts in self.counts.items():
                projected = project(key)
                total = get(projected)
                summed[projected] = counts if total is None else list(map(add, total, counts))
                if months:
                    month = (projected[0], projected[1][:7], *projected[2:])
                    total = get(month)
                    summed[month] = counts if total is None else list(map(add, total, counts))
        return [(*key, *counts) for key, counts in sorted(summed.items()) if any(counts)]


@dataclass(frozen=True)
class ServiceFacts:
    """What statistics need of a service."""

    id: str
    window: str
    staff_id: str | None
    matter_code: str | None
    unit: str | None
    finished_at: str | None
    outcome: str

    @classmethod
    def of(cls, item: ServiceItem) -> ServiceFacts:
        return cls(item.id, item.window, item.staff_id, item.matter_code, item.unit,
                   item.finished_at, item.outcome)

    @property
    def finished(self) -> bool:
        return self.outcome == "finished" and self.finished_at is not None

    @property
    def counter(self) -> str | None:
        """The counter the service itself adds to: `services`, `no_shows`, or None (no time)."""
        if self.finished_at is None:
            return None
        return "services" if self.outcome == "finished" else "no_shows" if self.outcome == "no_show" else None

    def key(self, hall: str) -> FineKey:
        day = china_day(self.finished_at) if self.finished_at is not None else NONE
        return (hall, day, self.window, _dim(self.staff_id), _dim(self.matter_code), _dim(self.unit))


@dataclass
class Stored:
    """What a batch's counting needs from the database, read in its write transaction before the
    batch is written (`needed` says which service ids)."""

    services: Mapping[str, ServiceFacts] = field(default_factory=dict)  # stored ones only
    rated: set[str] = field(default_factory=set)  # ids with a bound rating stored before the batch
    # (or a phone supplementary rating)
    defaulted: set[str] = field(default_factory=set)  # ids with a system default
    # ids with a phone supplementary rating that still counts (no counter rating yet): where it
    # was counted and its score
    phone: Mapping[str, tuple[FineKey, int]] = field(default_factory=dict)


def needed(plan: IngestPlan) -> tuple[set[str], set[str]]:
    """(ids of stored services to load: named by the plan's bound ratings and not in the plan;
    every service id the plan touches: look up their stored bound ratings and defaults)."""
    new = {s.id for s in plan.services}
    bound = {item.binding.service for item, _ in plan.ratings if item.binding is not None}
    return bound - new, bound | new


def ingest_deltas(hall: str, plan: IngestPlan, stored: Stored) -> Deltas:
    """The counters an ingest plan of `hall` adds (module docstring)."""
    deltas = Deltas()
    bound_now: set[str] = set()
    for item, device_window in plan.ratings:
        b = item.binding
        day = china_day(item.received_at)
        if b is None:
            key = (hall, day, device_window, NONE, NONE, NONE)
        else:
            key = (hall, day, b.window, _dim(b.staff_id), _dim(b.matter_code), _dim(b.unit))
            bound_now.add(b.service)
        deltas.add_score(key, item.rating.score, b is not None)
    for sid in sorted(bound_now & stored.phone.keys()):  # the counter rating replaces it
        phone_key, phone_score = stored.phone[sid]
        deltas.remove_score(phone_key, phone_score)
    new = {s.id: ServiceFacts.of(s) for s in plan.services}
    for facts in new.values():
        if facts.counter is not None:
            deltas.add(facts.key(hall), facts.counter)
    for sid in sorted(bound_now | new.keys()):
        facts = new.get(sid) or stored.services.get(sid)
        if facts is None or not facts.finished:
            continue
        counted_before = sid not in new and sid in stored.rated  # both were there already
        if counted_before or not (sid in stored.rated or sid in bound_now):
            continue
        deltas.add(facts.key(hall), "rated")
        if sid not in stored.defaulted:
            deltas.add(facts.key(hall), "rated_or_default")
    return deltas


def default_deltas(defaults: Iterable[tuple[str, ServiceFacts, bool]]) -> Deltas:
    """The counters that new system defaults add: (hall, the service, whether it has a bound
    rating already) each. Only finished services count."""
    deltas = Deltas()
    for hall, facts, rated in defaults:
        if facts.finished:
            deltas.add(facts.key(hall), "defaulted")
            if not rated:
                deltas.add(facts.key(hall), "rated_or_default")
    return deltas


def phone_deltas(key: FineKey, score: int, hall: str, service: ServiceFacts | None) -> Deltas:
    """The counters a new phone supplementary rating adds: its score at `key`, and its service
    (if it has reached the hub and was finished) rated. The page stores one only for a service
    with no rating and no default, so the service is counted rated here for the first time."""
    deltas = Deltas()
    deltas.add_score(key, score, True)
    if service is not None and service.finished:
        deltas.add(service.key(hall), "rated")
        deltas.add(service.key(hall), "rated_or_default")
    return deltas


class Tally(Deltas):
    """Every counter recounted from the raw records, fed in chunks (the rebuild)."""

    def add_ratings(self, rows: Iterable[tuple]) -> None:
        """Rows of (hall, received_at, score, window_id, staff_id, matter_code, unit, bound)."""
        for hall, received_at, score, window, staff, matter, unit, bound in rows:
            key = (hall, china_day(received_at), window, _dim(staff), _dim(matter), _dim(unit))
            self.add_score(key, score, bool(bound))

    def add_services(self, rows: Iterable[tuple]) -> None:
        """Rows of (hall, id, window_id, staff_id, matter_code, unit, finished_at, outcome,
        rated, defaulted): rated = it has a bound rating; defaulted = it has a system default."""
        for hall, sid, window, staff, matter, unit, finished_at, outcome, rated, defaulted in rows:
            facts = ServiceFacts(sid, window, staff, matter, unit, finished_at, outcome)
            if facts.counter is not None:
                self.add(facts.key(hall), facts.counter)
            if facts.finished:
                key = facts.key(hall)
                if rated:
                    self.add(key, "rated")
                if defaulted:
                    self.add(key, "defaulted")
                if rated or defaulted:
                    self.add(key, "rated_or_default")

    def add_not_adopted(self, rows: Iterable[tuple]) -> None:
        """Rows of (hall, day, window, staff, matter, unit): the statistics key of each rating an
        appeal decided not to adopt (appeal_decisions.stats_*)."""
        for key in rows:
            self.add(tuple(key), "not_adopted")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- figures


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Figures:
    """The counters of a group, and the figures made of them."""

    services: int = 0
    no_shows: int = 0
    rated: int = 0
    rated_or_default: int = 0
    defaulted: int = 0
    scores: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # score 1 .. score 5
    unbound: int = 0
    not_adopted: int = 0  # bad ratings an appeal decided not to adopt: out of satisfaction
    ratings: int = field(init=False, repr=False, compare=False)
    bad: int = field(init=False, repr=False, compare=False)  # 差评: scores 1 and 2

    def __post_init__(self) -> None:  # read many times per row of an answer: computed once
        object.__setattr__(self, "ratings", sum(self.scores))
        object.__setattr__(self, "bad", sum(self.scores[i] for i in _BAD_AT))

    @classmethod
    def of(cls, counters: Iterable[int]) -> Figures:
        """From counters in COUNTERS order."""
        c = counters if isinstance(counters, Sequence) else list(counters)
        return cls(c[0], c[1], c[2], c[3], c[4], (c[5], c[6], c[7], c[8], c[9]), c[10], c[11])  # type: ignore[arg-type]

    def __add__(self, other: Figures) -> Figures:
        return Figures(self.services + other.services, self.no_shows + other.no_shows,
                       self.rated + other.rated, self.rated_or_default + other.rated_or_default,
                       self.defaulted + other.defaulted,
                       tuple(a + b for a, b in zip(self.scores, other.scores, strict=True)),  # type: ignore[arg-type]
                       self.unbound + other.unbound, self.not_adopted + other.not_adopted)

    @classmethod
    def total(cls, figures: Iterable[Figures]) -> Figures:
        """The sum of `figures`."""
        sums = [0] * len(COUNTERS)
        for f in figures:
            for i, n in enumerate((f.services, f.no_shows, f.rated, f.rated_or_default, f.defaulted,
                                   *f.scores, f.unbound, f.not_adopted)):
                sums[i] += n
        return cls.of(sums)

    @property
    def good(self) -> int:
        """好评: every rating that is not 差评 (基本满意 and up)."""
        return self.ratings - self.bad

    @property
    def evaluation_rate(self) -> float | None:
        """评价率: rated services / services delivered."""
        return _ratio(self.rated, self.services)

    @property
    def evaluation_rate_with_defaults(self) -> float | None:
        return _ratio(self.rated_or_default, self.services)

    @property
    def satisfaction(self) -> float | None:
        """好评 / ratings, leaving out the bad ratings not adopted on appeal (误评, 恶意差评)."""
        return _ratio(self.good, self.ratings - self.not_adopted)

    @property
    def satisfaction_with_defaults(self) -> float | None:
        """Each system default counts as one more 基本满意 rating."""
        return _ratio(self.good + self.defaulted, self.ratings - self.not_adopted + self.defaulted)


@dataclass(frozen=True)
class StatsRow:
    period: str  # YYYY-MM-DD or YYYY-MM
    key: dict[str, str | None]  # the group's key: {"hall": "H1", "window": "7"}, {} for no group
    figures: Figures


@dataclass(frozen=True)
class StatsQuery:
    """A validated request: days `start`..`end` (both included) of `hall` and/or `region` (None:
    every hall), per `period`, grouped by `group` (None: one row per period)."""

    start: date
    end: date
    period: str = "day"
    group: str | None = None
    region: str | None = None
    hall: str | None = None

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}")
        if self.group is not None and self.group not in GROUPS:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}")
        if self.end < self.start:
            raise ValueError(f"`to` ({self.end}) is before `from` ({self.start})")
        days = (self.end - self.start).days + 1
        if days > MAX_RANGE_DAYS:
            raise ValueError(f"{days} days asked; at most {MAX_RANGE_DAYS} per request")

    def spans(self) -> tuple[list[str], list[tuple[str, str]]]:
        """What to read: (whole months, as YYYY-MM; day ranges, as (first, last) YYYY-MM-DD).
        Per day: the whole range in days. Per month: each month the range covers whole is one
        month row per key; the days of a month it covers in part are read as days."""
        if self.period == "day":
            return [], [(self.start.isoformat(), self.end.isoformat())]
        months, days = [], []
        year, month = self.start.year, self.start.month
        while (year, month) <= (self.end.year, self.end.month):
            first, last = date(year, month, 1), date(year, month, monthrange(year, month)[1])
            if self.start <= first and last <= self.end:
                months.append(first.isoformat()[:7])
            else:
                days.append((max(first, self.start).isoformat(), min(last, self.end).isoformat()))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return months, days


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild of the rollups read and wrote."""

    ratings: int  # raw records read
    services: int
    rows: dict[str, int]  # rollup table -> rows written
    seconds: float


def row_order(period: str, key: Iterable[str | None]) -> list:
    """Rows go by period, then key (a missing value last); text in code point order on every backend."""
    order: list = [period]
    for value in key:
        order += (value is None, value or "")
    return order


def sort_rows(rows: Iterable[StatsRow]) -> list[StatsRow]:
    return sorted(rows, key=lambda r: row_order(r.period, r.key.values()))
