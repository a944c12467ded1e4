"""System default ratings: a service nobody rated within its region's period gets one 基本满意
record, marked as the system's (DOMAIN.md: 7 calendar days in Jilin, 5 working days in Dehong and
the 9th Division; hub/default_rules.py says exactly when a period ends).

The job (`HubStore.run_defaults`, run by the hub every `defaults_interval_s` and by
`POST /api/v1/defaults/run`) is idempotent: it looks at finished services ingested in the last
`lookback_days` that have no bound rating and no default yet, decides here which are due, and
stores a default for each, with its ledger entry, in one transaction; a service defaulted once is
never looked at again (primary key (hall, service)). Nothing is ever updated or deleted: a rating
that arrives after its service's default (a late 补充评价 through another channel, or a gateway
that was offline for weeks) is stored as usual and the default stays; statistics count the service
as rated once.

What the job cannot decide is reported, never guessed silently and never a crash:
- a hall with no region (no rule): its services wait; alert `hall_without_region`;
- a `finished_at` that does not parse: the service is skipped; alert `bad_service_time`;
- working days in a year no holiday data covers (no file loaded, chinese-calendar too old): the
  calendar falls back to Monday to Friday, the default is stored with `estimated` true, and alert
  `calendar_uncovered` names the year. The job also looks `LOOKAHEAD_DAYS` ahead, so the alert
  comes while there is still time to load the State Council's notice for next year.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from .default_rules import CHINA_TZ, DefaultRule, RuleError, default_deadline
from .workdays import WorkCalendar

DEFAULT_SCORE = 3  # 基本满意
LOOKBACK_DAYS = 90  # services ingested longer ago than this are not looked at again
LOOKAHEAD_DAYS = 45  # warn this long before working days fall into a year with no holiday data
DEFAULT_COLUMNS = "hall, service, score, region, rule, finished_at, due_at, estimated, applied_at"


@dataclass(frozen=True)
class Candidate:
    """A finished service with no bound rating and no default, with its hall's region and rule
    (None when the hall has no region)."""

    hall: str
    service: str
    finished_at: str
    region: str | None
    rule: str | None  # the region's default_rule JSON


@dataclass(frozen=True)
class DefaultRating:
    hall: str
    service: str
    score: int
    region: str
    rule: str  # the rule applied, canonical JSON
    finished_at: str  # the service's, as stored
    due_at: str  # when the period ended (ISO, +08:00)
    estimated: bool  # some working day of the period came from the Monday-Friday fallback
    applied_at: str

    def row(self) -> tuple:
        """In DEFAULT_COLUMNS order."""
        return (self.hall, self.service, self.score, self.region, self.rule, self.finished_at,
                self.due_at, self.estimated, self.applied_at)

    def record(self) -> dict:
        """What its ledger entry's digest covers (the row, `estimated` a bool on both backends)."""
        return dict(zip([c.strip() for c in DEFAULT_COLUMNS.split(",")], self.row(), strict=True))


@dataclass
class RunResult:
    applied: int = 0
    not_due: int = 0
    waiting_for_region: int = 0
    bad_time: int = 0
    estimated: int = 0
    alerts: list[tuple[str, str | None, str, str]] = field(default_factory=list)  # kind, hall, key, detail

    def as_dict(self) -> dict:
        return {"applied": self.applied, "not_due": self.not_due,
                "waiting_for_region": self.waiting_for_region, "bad_time": self.bad_time,
                "estimated": self.estimated,
                "alerts": [{"kind": k, "hall": h, "key": key, "detail": d} for k, h, key, d in self.alerts]}


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time with its UTC offset, or None (no offset is no time: a day depends on it)."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo is not None else None


def decide(candidates: Iterable[Candidate], calendar: WorkCalendar, now: datetime,
           applied_at: str) -> tuple[list[DefaultRating], RunResult]:
    """The defaults due at `now` (aware) among `candidates`, and what could not be decided."""
    result = RunResult()
    due: list[DefaultRating] = []
    rules: dict[str, DefaultRule | None] = {}
    halls_without_region: set[str] = set()
    for c in candidates:
        if c.rule is None or c.region is None:
            result.waiting_for_region += 1
            halls_without_region.add(c.hall)
            continue
        if c.rule not in rules:
            try:
                rules[c.rule] = DefaultRule.from_dict(json.loads(c.rule))
            except (ValueError, RuleError):  # stored by the API after validation: only by hand
                rules[c.rule] = None
                result.alerts.append(("bad_region_rule", None, c.region, f"region {c.region}: rule {c.rule!r}"))
        rule = rules[c.rule]
        finished = parse_time(c.finished_at)
        if rule is None or finished is None:
            if finished is None:
                result.bad_time += 1
                result.alerts.append(("bad_service_time", c.hall, c.service,
                                      f"service {c.service}: finished_at {c.finished_at!r} has no usable time"))
            continue
        deadline = default_deadline(finished, rule, calendar)
        if deadline.due > now:
            result.not_due += 1
            continue
        result.applied += 1
        result.estimated += deadline.estimated
        due.append(DefaultRating(c.hall, c.service, DEFAULT_SCORE, c.region,
                                 json.dumps(rule.to_dict(), sort_keys=True, separators=(",", ":")),
                                 c.finished_at, deadline.due.isoformat(), deadline.estimated, applied_at))
    for hall in sorted(halls_without_region):
        result.alerts.append(("hall_without_region", hall, hall,
                              f"hall {hall} has services but no region: no default rule applies to them"))
    today = now.astimezone(CHINA_TZ).date()
    for year in calendar_gaps(calendar, today):
        result.alerts.append(("calendar_uncovered", None, str(year),
                              f"no holiday data for {year}: working days there are guessed Monday to Friday "
                              f"until a holiday file for {year} is loaded (docs/hub.md)"))
    return due, result


def calendar_gaps(calendar: WorkCalendar, today: date) -> list[int]:
    """Years the calendar had to guess, and years with no data that start within LOOKAHEAD_DAYS."""
    years = set(calendar.uncovered_years())
    years.update(calendar.missing_years(today, today + timedelta(days=LOOKAHEAD_DAYS)))
    return sorted(years)
