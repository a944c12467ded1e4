"""Bad-review cases (差评件): every 不满意 / 非常不满意 rating opens one, routed to the unit that
handled the service (谁办理、谁负责), handled within its region's deadlines, with the rater called
back; staff may appeal, and a supervisor who is not the appellant decides. docs/cases.md says it
all in prose; this module is the pure part (no I/O): the deadlines, the state machine, the checks
of who may do what, the overdue flags and the per-unit rates. The store writes what it decides
(hub/store/cases_sql.py).

Deadlines (DOMAIN.md, "Bad reviews"; the regions' own texts in shared/seeds/): a region's
`CaseRules` give each step a `Limit` counted from the moment the hub opened the case (收到差评后),
except `feedback`, counted from the moment the fix or explanation was recorded (对已办结的差评):

| step | what ends it | Jilin (000 §19) | "2、5、15" (003) | 9th Division "1、5、15" (002) |
|---|---|---|---|---|
| route | the case reaches a unit | - | - | 24 hours (待办 pushed to the unit) |
| contact | the rater contacted (回访核实) | 10 working days | 2 working days | - |
| fix | rectified or explained | 15 working days | 5 working days | 5 working days |
| ledger | a complex case (台账) rectified | at most 6 months | 15 working days | 15 working days |
| feedback | satisfaction callback after the fix | - | 5 working days | - |

A working-day limit ends like a default rating's period (hub/default_rules.py): the day the case
was opened never counts, the n-th working day of China's calendar (holidays and make-up working
days included) is the last day, and the step is in time until 00:00 China time after it. A
calendar-day or month limit ends the same way, counted in days or calendar months (a month-end
that does not exist is the month's last day). An hour limit ends exactly n hours after the start.
"""

from __future__ import annotations

import json
from calendar import monthrange
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from hcp.protocol import BAD_SCORES

from .default_rules import CHINA_TZ
from .workdays import WorkCalendar

# ---------------------------------------------------------------------------- deadlines

LimitKind = Literal["hours", "working_days", "calendar_days", "months"]
LIMIT_KINDS: tuple[LimitKind, ...] = ("hours", "working_days", "calendar_days", "months")
LIMIT_MAX = {"hours": 24 * 30, "working_days": 250, "calendar_days": 366, "months": 12}
DEADLINES = ("route", "contact", "fix", "ledger", "feedback")
REQUIRED_LIMITS = ("fix", "ledger")  # every region must set these; the others may be absent
REMIND_HOURS_BEFORE = 6  # an hour limit's reminder; a day limit's comes when its last day begins


class CaseError(ValueError):
    """An action that cannot be done, with the reason; `status` is the HTTP status it answers:
    403 (role or scope), 404 (no such case, or not in scope), 409 (not from this state), 422
    (a bad argument)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limit:
    """`n` hours, working days, calendar days or calendar months."""

    kind: LimitKind
    n: int

    def __post_init__(self) -> None:
        if self.kind not in LIMIT_KINDS:
            raise CaseError(422, f"a limit's kind is one of {list(LIMIT_KINDS)}, not {self.kind!r}")
        top = LIMIT_MAX[self.kind]
        if type(self.n) is not int or not 1 <= self.n <= top:
            raise CaseError(422, f"a limit in {self.kind} takes n = 1..{top}, not {self.n!r}")

    @classmethod
    def from_dict(cls, doc: Any, name: str) -> Limit:
        if not isinstance(doc, Mapping) or set(doc) != {"kind", "n"}:
            raise CaseError(422, f"{name}: a limit is an object {{\"kind\", \"n\"}} with nothing else")
        n = doc["n"]
        if isinstance(n, float) and n.is_integer():
            n = int(n)  # JSON has one number type
        return cls(doc["kind"], n)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n}

    def label(self) -> str:
        return {"hours": f"{self.n} 小时", "working_days": f"{self.n} 个工作日",
                "calendar_days": f"{self.n} 日", "months": f"{self.n} 个月"}[self.kind]

    def due(self, start: datetime, calendar: WorkCalendar) -> tuple[datetime, bool]:
        """(the instant the limit ends, UTC; whether a working day was guessed Monday–Friday)."""
        if self.kind == "hours":
            return (start + timedelta(hours=self.n)).astimezone(UTC), False
        last, estimated = _last_day(self, china_day(start), calendar)
        return end_of_day(last), estimated

    def remind_at(self, start: datetime, due: datetime) -> datetime:
        """When the due-soon reminder is due: the last day's 00:00 (China), or REMIND_HOURS_BEFORE
        an hour limit's end (never before the start)."""
        if self.kind == "hours":
            return max(start, due - timedelta(hours=REMIND_HOURS_BEFORE))
        return max(start, due - timedelta(days=1))


@lru_cache(maxsize=4096)
def _last_day(limit: Limit, day: date, calendar: WorkCalendar) -> tuple[date, bool]:
    """The last day of a day-counted `limit` from `day`, and whether a day was guessed. Cached:
    the cases of a batch share their day, and chinese-calendar takes ~70 µs a date here (under
    cProfile, opening the 50 cases of a 500-rating batch took 118 ms before this cache, 13 ms
    after; most of it was counting working days)."""
    if limit.kind == "working_days":
        last = calendar.add_workdays(day, limit.n)
        return last, bool(calendar.missing_years(day + timedelta(days=1), last))
    if limit.kind == "calendar_days":
        return day + timedelta(days=limit.n), False
    return add_months(day, limit.n), False


def china_day(moment: datetime) -> date:
    if moment.tzinfo is None:
        raise ValueError(f"an instant needs its offset: {moment.isoformat()}")
    return moment.astimezone(CHINA_TZ).date()


def end_of_day(day: date) -> datetime:
    """00:00 China time of the day after `day`, as UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=CHINA_TZ).astimezone(UTC)


def add_months(day: date, months: int) -> date:
    """`day` plus calendar months; the 31st of a shorter month is its last day."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, monthrange(year, month)[1]))


@dataclass(frozen=True)
class CaseRules:
    """A region's limits for bad-review handling. `preset`: the preset they came from (None once
    edited); `fix` and `ledger` are required, the other steps may have no limit."""

    fix: Limit
    ledger: Limit
    route: Limit | None = None
    contact: Limit | None = None
    feedback: Limit | None = None
    preset: str | None = None

    def limit(self, name: str) -> Limit | None:
        if name not in DEADLINES:
            raise KeyError(name)
        return getattr(self, name)

    @classmethod
    def from_dict(cls, doc: Any) -> CaseRules:
        """From `{"preset": key}` or `{"limits": {step: {"kind","n"} | null}}` (steps: DEADLINES;
        `fix` and `ledger` required). A preset with `limits` is that preset edited."""
        if not isinstance(doc, Mapping):
            raise CaseError(422, "case rules are an object: {\"preset\"} or {\"limits\"} or both")
        unknown = sorted(set(doc) - {"preset", "limits"})
        if unknown:
            raise CaseError(422, f"unknown keys {unknown} (allowed: ['limits', 'preset'])")
        preset = doc.get("preset")
        if preset is not None and preset not in PRESETS:
            raise CaseError(422, f"no preset {preset!r}; presets: {sorted(PRESETS)}")
        base = PRESETS[preset].rules if preset is not None else None
        limits = doc.get("limits")
        if limits is None:
            if base is None:
                raise CaseError(422, "give a preset or limits")
            return base
        if not isinstance(limits, Mapping):
            raise CaseError(422, "limits: an object {step: {\"kind\", \"n\"} or null}")
        unknown = sorted(set(limits) - set(DEADLINES))
        if unknown:
            raise CaseError(422, f"limits: unknown steps {unknown} (steps: {list(DEADLINES)})")
        values: dict[str, Limit | None] = {n: (base.limit(n) if base is not None else None) for n in DEADLINES}
        for name, value in limits.items():
            values[name] = None if value is None else Limit.from_dict(value, f"limits.{name}")
        missing = [n for n in REQUIRED_LIMITS if values[n] is None]
        if missing:
            raise CaseError(422, f"limits: {missing} must be set")
        rules = cls(preset=None, **values)  # type: ignore[arg-type]
        return replace(rules, preset=preset) if base is not None and rules == replace(base, preset=None) else rules

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset,
                "limits": {n: (lim.to_dict() if (lim := self.limit(n)) is not None else None) for n in DEADLINES}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> CaseRules:
        doc = json.loads(text)
        rules = cls.from_dict({"limits": doc["limits"]})
        return replace(rules, preset=doc.get("preset"))


@dataclass(frozen=True)
class CasePreset:
    key: str
    name: str
    rules: CaseRules
    source: str


def _wd(n: int) -> Limit:
    return Limit("working_days", n)


PRESETS: dict[str, CasePreset] = {p.key: p for p in (
    CasePreset("jilin", "吉林市", CaseRules(contact=_wd(10), fix=_wd(15), ledger=Limit("months", 6), preset="jilin"),
               "《吉林市政务服务“好差评”工作细则(试行)》第十九条：安排专人回访核实,并在10个工作日内回复。对情况清楚、"
               "诉求合理的问题,在15个工作日内完成整改;对情况复杂、一时难以解决的,建立台账,限期整改,最长不超过6个月;"
               "对缺乏法定依据的,要做好解释说明。(seeds/000，原文繁体)"),
    CasePreset("2-5-15", "“2、5、15”", CaseRules(contact=_wd(2), fix=_wd(5), ledger=_wd(15), feedback=_wd(5),
                                               preset="2-5-15"),
               "在2个工作日内,先行联系反映问题的企业群众;简单事项5个工作日内完成整改反馈;较为复杂的事项,建立台账,"
               "在15个工作日内完成整改反馈;对缺乏法定依据的,耐心做好解释说明。对已办结的“差评”,应在5个工作日内"
               "进行满意度回访测评,确保回访率100%。(seeds/003)"),
    CasePreset("1-5-15", "兵团第九师“1、5、15”", CaseRules(route=Limit("hours", 24), fix=_wd(5), ledger=_wd(15),
                                                     preset="1-5-15"),
               "师办发〔2020〕8号 第九师工作方案 五、二是整改回访：不满意评价的业务生成待办事项,推送到业务事项办理"
               "部门（24小时内）进行电话回访,存在问题的5个工作日内整改反馈;较为复杂的,15个工作日内整改落实。(seeds/002)"),
)}
# A hall in no region, or a region whose rules were never set: the strictest preset, so nobody is
# late because the hub guessed a longer limit; the case says so (rules_source "default") and the
# hub raises `case_rules_missing` for the region (or hall) once.
DEFAULT_PRESET = "2-5-15"


def due_dates(rules: CaseRules, opened: datetime,
              calendar: WorkCalendar) -> tuple[dict[str, datetime | None], bool]:
    """The route, contact, fix and ledger deadlines of a case opened at `opened` (feedback has
    none until the fix: `feedback_due`), and whether any was estimated (no holiday data)."""
    dues: dict[str, datetime | None] = {}
    estimated = False
    for name in ("route", "contact", "fix", "ledger"):
        limit = rules.limit(name)
        if limit is None:
            dues[name] = None
            continue
        dues[name], guessed = limit.due(opened, calendar)
        estimated |= guessed
    return dues, estimated


# ---------------------------------------------------------------------------- who acts

OPERATOR, HANDLER, SUPERVISOR, AUDITOR, ADMIN = "operator", "handler", "supervisor", "auditor", "admin"
ROLES = (OPERATOR, HANDLER, SUPERVISOR, AUDITOR, ADMIN)
ROLE_NAMES = {OPERATOR: "an operator", HANDLER: "a unit handler", SUPERVISOR: "a supervisor",
              AUDITOR: "an auditor", ADMIN: "the admin"}
SYSTEM = "system"  # the actor of what the hub does by itself (opening a case, reminders)


@dataclass(frozen=True)
class Actor:
    """Who acts: `id` (a login, shown in the history), `role`, and the scope (None: all). The
    admin role has every right in the whole hub. `halls`: the halls in scope now (a region's halls
    are its halls now, docs/accounts.md), None when no region or hall limits the actor; given, it
    decides instead of the case's region as it was when opened. hub/api/routes/cases.py makes one
    from the accounts' Principal (`actor_of`)."""

    id: str
    role: str
    region: str | None = None
    hall: str | None = None
    unit: str | None = None
    halls: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise CaseError(422, f"role must be one of {list(ROLES)}, not {self.role!r}")
        if not isinstance(self.id, str) or not self.id.strip() or len(self.id) > 64:
            raise CaseError(422, "an actor's id is 1-64 characters")
        if self.role == HANDLER and not self.unit:
            raise CaseError(422, "a unit handler acts for a unit: give `unit`")

    def has_role(self, *roles: str) -> bool:
        return self.role == ADMIN or self.role in roles

    def scope_filter(self) -> dict[str, str]:
        """The scope parts that limit what this actor sees, as case columns: {"region"|"hall"|"unit":
        value} (with `halls` known, the region is checked through them: `visible_halls`)."""
        if self.role == ADMIN:
            return {}
        parts = (("hall", self.hall), ("unit", self.unit)) if self.halls is not None else \
            (("region", self.region), ("hall", self.hall), ("unit", self.unit))
        return {k: v for k, v in parts if v is not None}

    def visible_halls(self) -> frozenset[str] | None:
        return None if self.role == ADMIN else self.halls

    def can_see(self, case: Case) -> bool:
        """A case is in scope when every scope part set equals the case's (an unrouted case has no
        unit: no handler sees it) and its hall is one of `halls` when they are known."""
        halls = self.visible_halls()
        if halls is not None and case.hall not in halls:
            return False
        return all(getattr(case, part) == value for part, value in self.scope_filter().items())

    @property
    def may_unmask(self) -> bool:
        """May this actor read a rater's name and phone number unmasked (each read audited)?"""
        return self.role in (OPERATOR, SUPERVISOR, ADMIN)


# ---------------------------------------------------------------------------- states

State = Literal["unrouted", "new", "contacted", "rectifying", "ledger", "rectified", "explained",
                "feedback", "closed", "appealed", "verified", "not_adopted"]
STATES: tuple[str, ...] = ("unrouted", "new", "contacted", "rectifying", "ledger", "rectified",
                           "explained", "feedback", "closed", "appealed", "verified", "not_adopted")
TERMINAL = frozenset({"closed", "not_adopted"})  # closed, or decided not adopted
STATE_LABELS = {"unrouted": "待分派 unrouted", "new": "待联系 new", "contacted": "已联系 contacted",
                "rectifying": "整改中 rectifying", "ledger": "台账 ledger", "rectified": "已整改 rectified",
                "explained": "已解释 explained", "feedback": "已反馈 feedback", "closed": "已办结 closed",
                "appealed": "申诉中 appealed", "verified": "已核实 verified", "not_adopted": "不予采纳 not adopted"}
APPEALABLE = frozenset({"new", "contacted", "rectifying", "ledger"})

CHANNELS = ("phone", "sms", "visit", "wechat", "letter", "other")
OUTCOMES = ("reached", "unreachable", "refused", "anonymous")  # anonymous: no way to reach the rater
SATISFACTIONS = ("satisfied", "basically_satisfied", "dissatisfied")
PURPOSES = ("contact", "feedback", "other")
VERIFY_METHODS = ("spot_check", "records", "site_visit", "phone_callback")  # 抽查、调阅档案、实地察看、电话回访
DECISIONS = ("upheld", "not_adopted")  # upheld: the rating stands; not_adopted: it does not count
NOT_ADOPTED_REASONS = ("mistaken", "malicious")  # 误评, 恶意差评
MAX_NOTE = 2000
CLOCK_SKEW = timedelta(minutes=5)  # a callback time this far in the future is a clock, not a lie

_HANDLING = (HANDLER, OPERATOR, SUPERVISOR)


@dataclass(frozen=True)
class Action:
    name: str
    sources: frozenset[str]
    target: str | None  # None: decided by the action (route, decide)
    roles: tuple[str, ...]
    label: str


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("route", frozenset({"unrouted", "new", "contacted"}), None, (OPERATOR, SUPERVISOR), "分派 route to a unit"),
    Action("contact", frozenset({"new"}), "contacted", _HANDLING, "联系评价人 contact the rater"),
    Action("rectify", frozenset({"contacted"}), "rectifying", _HANDLING, "开始整改 start rectifying"),
    Action("explain", frozenset({"contacted", "rectifying"}), "explained", _HANDLING,
           "解释说明 explain (no legal basis)"),
    Action("ledger", frozenset({"rectifying"}), "ledger", _HANDLING, "建立台账 into the ledger (long-term)"),
    Action("rectified", frozenset({"rectifying", "ledger"}), "rectified", _HANDLING, "整改完成 rectified"),
    Action("feedback", frozenset({"rectified", "explained"}), "feedback", _HANDLING, "反馈评价人 feedback to the rater"),
    Action("reopen", frozenset({"feedback"}), "rectifying", _HANDLING, "重新整改 reopen"),
    Action("close", frozenset({"feedback"}), "closed", _HANDLING, "办结 close"),
    Action("appeal", APPEALABLE, "appealed", (HANDLER, OPERATOR, SUPERVISOR), "申诉 appeal"),
    Action("verify", frozenset({"appealed"}), "verified", (SUPERVISOR,), "核实 verify the appeal"),
    Action("decide", frozenset({"verified"}), None, (SUPERVISOR,), "裁定 decide the appeal"),
)}


@dataclass(frozen=True)
class Case:
    """A stored case (hub/store/cases_sql.py CASE_COLUMNS). Times are UTC ISO text as stored."""

    id: int
    hall: str
    region: str | None
    unit: str | None  # routed to; None: unrouted
    source_unit: str | None  # the binding's unit, as rated
    window: str | None
    staff_id: str | None
    matter_code: str | None
    service: str | None
    case_no: str | None
    rating_kind: str
    rating_ref: str
    score: int
    rated_at: str
    real_name: bool
    state: str
    appeal_from: str | None
    appellant: str | None
    rules: str  # CaseRules JSON
    rules_source: str  # region | default
    opened_at: str
    route_due: str | None
    contact_due: str | None
    fix_due: str | None
    ledger_due: str | None
    ledger_until: str | None
    feedback_due: str | None
    estimated: bool
    routed_at: str | None
    contacted_at: str | None
    fixed_at: str | None
    fix_kind: str | None  # rectified | explained, with fixed_at
    feedback_at: str | None
    closed_at: str | None
    decided_at: str | None
    last_satisfaction: str | None
    updated_at: str

    @property
    def open(self) -> bool:
        return self.state not in TERMINAL

    @property
    def routed(self) -> bool:
        return self.unit is not None

    @property
    def case_rules(self) -> CaseRules:
        return CaseRules.from_json(self.rules)

    def fix_deadline(self) -> str | None:
        """The fix deadline in force: the ledger date once the case is in the ledger."""
        return self.ledger_until if self.ledger_until is not None else self.fix_due

    def deadlines(self, now: datetime) -> list[DeadlineStatus]:
        """Each step's deadline and where it stands at `now`."""
        found = []
        for name, due, done in (("route", self.route_due, self.routed_at),
                                ("contact", self.contact_due, self.contacted_at),
                                ("fix", self.fix_deadline(), self.fixed_at),
                                ("feedback", self.feedback_due, self.feedback_at)):
            if due is None:
                continue
            found.append(DeadlineStatus.of(name, due, done, now, decided=self.state == "not_adopted"))
        return found

    def overdue(self, now: datetime) -> list[str]:
        """The steps past their deadline and not done at `now` (empty for a decided case)."""
        return [d.name for d in self.deadlines(now) if d.status == "overdue"]


@dataclass(frozen=True)
class DeadlineStatus:
    """`status`: `met` (done in time), `late` (done after the deadline), `pending` (not done, time
    left), `overdue` (not done, past the deadline), `void` (a decided case: no longer due)."""

    name: str
    due: str
    done_at: str | None
    status: str

    @classmethod
    def of(cls, name: str, due: str, done: str | None, now: datetime, *, decided: bool) -> DeadlineStatus:
        if done is not None:
            status = "met" if parse_utc(done) < parse_utc(due) else "late"
        elif decided:
            status = "void"
        else:
            status = "overdue" if now >= parse_utc(due) else "pending"
        return cls(name, due, done, status)


def parse_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"a stored time without offset: {text!r}")
    return value


def iso(moment: datetime) -> str:
    """A hub time as stored: UTC, ISO 8601, milliseconds (text order is time order)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------- opening

@dataclass(frozen=True)
class CaseSource:
    """A bad rating a case is opened for. `kind` and `ref` name it as the ledger does (a device
    rating: "rating", "D07:1"; a phone rating: its own kind and ref); `rated_at` is when the rater
    rated (ISO with offset). `unit` routes it (None: unrouted, to the hall's operators).
    `real_name`: the rater left a name or phone number (hub.phone stores them; the case does not)."""

    kind: str
    ref: str
    hall: str
    score: int
    rated_at: str
    unit: str | None = None
    window: str | None = None
    staff_id: str | None = None
    matter_code: str | None = None
    service: str | None = None
    case_no: str | None = None
    real_name: bool = False

    @property
    def bad(self) -> bool:
        return self.score in BAD_SCORES


def sources_from_plan(plan: Any) -> list[CaseSource]:
    """The accepted bad device ratings of an ingest plan (hub.ingest.IngestPlan), in item order:
    the cases ingest opens. A binding's unit routes; an unbound rating (or a binding without a
    unit) is unrouted."""
    found = []
    for item, device_window in plan.ratings:
        r, b = item.rating, item.binding
        if r.score not in BAD_SCORES:
            continue
        if b is None:
            found.append(CaseSource("rating", f"{r.dev}:{r.n}", r.hall, r.score, item.received_at,
                                    window=device_window))
        else:
            found.append(CaseSource("rating", f"{r.dev}:{r.n}", r.hall, r.score, item.received_at,
                                    unit=b.unit, window=b.window, staff_id=b.staff_id,
                                    matter_code=b.matter_code, service=b.service, case_no=b.case_no))
    return found


@dataclass(frozen=True)
class NewCase:
    """A case about to be stored, with its deadlines (UTC ISO)."""

    source: CaseSource
    region: str | None
    rules: CaseRules
    rules_source: str
    opened_at: str
    dues: dict[str, str | None]
    estimated: bool


def plan_case(source: CaseSource, region: str | None, rules_json: str | None, opened: datetime,
              calendar: WorkCalendar) -> NewCase:
    """The case to open for `source`: its hall's region's rules (or DEFAULT_PRESET's) applied."""
    if rules_json is not None:
        rules, origin = CaseRules.from_json(rules_json), "region"
    else:
        rules, origin = PRESETS[DEFAULT_PRESET].rules, "default"
    dues, estimated = due_dates(rules, opened, calendar)
    return NewCase(source, region, rules, origin, iso(opened),
                   {k: (iso(v) if v is not None else None) for k, v in dues.items()}, estimated)


# ---------------------------------------------------------------------------- transitions

@dataclass(frozen=True)
class Callback:
    """A call (or message, or visit) to the rater: when, how, what came of it, and the rater's
    satisfaction with the fix when asked."""

    at: str  # ISO with offset, as given
    channel: str
    outcome: str
    satisfaction: str | None = None
    note: str | None = None
    purpose: str = "other"

    @classmethod
    def from_dict(cls, doc: Any, *, purpose: str, now: datetime, not_before: str) -> Callback:
        if not isinstance(doc, Mapping):
            raise CaseError(422, "callback: an object {at, channel, outcome, satisfaction?, note?}")
        unknown = sorted(set(doc) - {"at", "channel", "outcome", "satisfaction", "note", "purpose"})
        if unknown:
            raise CaseError(422, f"callback: unknown keys {unknown}")
        at = doc.get("at")
        try:
            when = datetime.fromisoformat(at) if isinstance(at, str) else None
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise CaseError(422, "callback.at: an ISO 8601 time with its offset, e.g. 2026-11-23T10:00:00+08:00")
        if when > now + CLOCK_SKEW:
            raise CaseError(422, "callback.at is in the future")
        if when < parse_utc(not_before) - CLOCK_SKEW:
            raise CaseError(422, "callback.at is before the rating was given")
        channel, outcome, satisfaction = doc.get("channel"), doc.get("outcome"), doc.get("satisfaction")
        if channel not in CHANNELS:
            raise CaseError(422, f"callback.channel: one of {list(CHANNELS)}")
        if outcome not in OUTCOMES:
            raise CaseError(422, f"callback.outcome: one of {list(OUTCOMES)}")
        if satisfaction is not None and satisfaction not in SATISFACTIONS:
            raise CaseError(422, f"callback.satisfaction: one of {list(SATISFACTIONS)} or null")
        if satisfaction is not None and outcome != "reached":
            raise CaseError(422, "callback.satisfaction: only a rater who was reached can say it")
        if purpose == "feedback" and outcome == "reached" and satisfaction is None:
            raise CaseError(422, "callback.satisfaction: ask the rater reached for feedback how satisfied they are")
        given = doc.get("purpose", purpose)
        if given not in PURPOSES:
            raise CaseError(422, f"callback.purpose: one of {list(PURPOSES)}")
        return cls(when.isoformat(), channel, outcome, satisfaction, clean_note(doc.get("note"), "callback.note"),
                   given)


def clean_note(value: Any, name: str, *, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise CaseError(422, f"{name}: say what was done (required)")
        return None
    if not isinstance(value, str) or len(value) > MAX_NOTE:
        raise CaseError(422, f"{name}: text of at most {MAX_NOTE} characters")
    if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
        raise CaseError(422, f"{name}: text that can be stored (no U+0000, no lone surrogate)")
    return value.strip()


@dataclass(frozen=True)
class Decision:
    """An appeal's decision, a record of its own in the ledger pointing at the rating."""

    case_id: int
    hall: str
    rating_kind: str
    rating_ref: str
    outcome: str  # upheld | not_adopted
    reason: str | None  # mistaken | malicious when not adopted
    appellant: str
    appeal_note: str | None
    verified_by: str
    method: str
    verify_note: str | None
    decided_by: str
    decided_at: str
    note: str | None

    @property
    def ledger_ref(self) -> str:
        """The ledger's ref of the decision: the rating's own kind and ref (one appeal per case)."""
        return f"{self.rating_kind}:{self.rating_ref}"


@dataclass(frozen=True)
class Change:
    """What an action does to a case: the new state, the columns to set, the event to append,
    and a callback to store, if any. A `decide` also stores a Decision (`decision_record`)."""

    action: str
    state: str
    updates: dict[str, Any]
    detail: dict[str, Any]
    callback: Callback | None = None
    not_adopted: bool = False  # the decision takes the rating out of satisfaction (statistics)


def check_can_act(case: Case, actor: Actor, action: Action) -> None:
    if not actor.can_see(case):
        raise CaseError(404, f"no case {case.id} in your scope")
    if not actor.has_role(*action.roles):
        roles = " or ".join(ROLE_NAMES[r] for r in action.roles)
        raise CaseError(403, f"{action.name}: only {roles} may do this")


def allowed_actions(case: Case, actor: Actor) -> list[str]:
    """The actions `actor` may try on `case` now (the forms a page shows)."""
    found = []
    for action in ACTIONS.values():
        if case.state not in action.sources or not actor.can_see(case) or not actor.has_role(*action.roles):
            continue
        if action.name == "appeal" and case.appellant is not None:
            continue
        if action.name in ("verify", "decide") and case.appellant == actor.id:
            continue
        if action.name == "close" and case.last_satisfaction == "dissatisfied" and not actor.has_role(SUPERVISOR):
            continue
        found.append(action.name)
    return found


def apply(case: Case, action_name: str, actor: Actor, args: Mapping[str, Any], now: datetime,
          calendar: WorkCalendar) -> Change:
    """Check and decide `action_name` on `case` by `actor` at `now` (aware): the Change to store,
    or CaseError saying why not. `args` per action (docs/cases.md): route {unit}; contact and
    feedback {callback}; rectify, explain, rectified, reopen, close, appeal {note}; ledger {until
    (YYYY-MM-DD), note}; verify {method, note}; decide {outcome, reason, note}."""
    action = ACTIONS.get(action_name)
    if action is None:
        raise CaseError(422, f"no action {action_name!r}; actions: {list(ACTIONS)}")
    check_can_act(case, actor, action)
    if case.state not in action.sources:
        raise CaseError(409, f"{action.name}: not from state {case.state} (from: {sorted(action.sources)})")
    at = iso(now)
    allowed_args = _ARGS[action.name]
    unknown = sorted(set(args) - allowed_args)
    if unknown:
        raise CaseError(422, f"{action.name}: unknown arguments {unknown} (takes: {sorted(allowed_args)})")
    note = clean_note(args.get("note"), "note", required=action.name in _NOTE_REQUIRED)
    updates: dict[str, Any] = {}
    detail: dict[str, Any] = {"note": note} if note is not None else {}
    callback = None
    not_adopted = False
    target = action.target

    if action.name == "route":
        unit = clean_note(args.get("unit"), "unit", required=True)
        if unit is None or len(unit) > 200:
            raise CaseError(422, "unit: 1-200 characters")
        if unit == case.unit:
            raise CaseError(409, f"route: the case is with {unit} already")
        target = "new" if case.state == "unrouted" else case.state
        updates["unit"] = unit
        if case.routed_at is None:
            updates["routed_at"] = at
        detail.update({"unit": unit, "from_unit": case.unit})
    elif action.name in ("contact", "feedback"):
        callback = Callback.from_dict(args.get("callback"), purpose=action.name, now=now, not_before=case.rated_at)
        if action.name == "contact":
            updates["contacted_at"] = at
        else:
            updates["feedback_at"] = at
            updates["last_satisfaction"] = callback.satisfaction
        detail.update({"channel": callback.channel, "outcome": callback.outcome,
                       "satisfaction": callback.satisfaction})
    elif action.name == "ledger":
        until = _ledger_until(args.get("until"), case, now)
        updates["ledger_until"] = iso(end_of_day(until))
        detail["until"] = until.isoformat()
    elif action.name in ("explain", "rectified"):
        updates["fixed_at"] = at
        updates["fix_kind"] = "explained" if action.name == "explain" else "rectified"
        feedback = case.case_rules.feedback
        if feedback is not None:
            due, guessed = feedback.due(now, calendar)
            updates["feedback_due"] = iso(due)
            if guessed:
                updates["estimated"] = True
    elif action.name == "reopen":
        updates.update({"fixed_at": None, "fix_kind": None, "feedback_due": None, "feedback_at": None, "last_satisfaction": None})
    elif action.name == "close":
        if case.last_satisfaction == "dissatisfied" and not actor.has_role(SUPERVISOR):
            raise CaseError(403, "close: the rater is dissatisfied with the fix; a supervisor verifies "
                                 "and closes (or reopen it)")
        updates["closed_at"] = at
    elif action.name == "appeal":
        if case.appellant is not None:
            raise CaseError(409, "appeal: this case was appealed once already")
        updates.update({"appellant": actor.id, "appeal_from": case.state})
    elif action.name in ("verify", "decide"):
        if actor.id == case.appellant:
            raise CaseError(403, f"{action.name}: the appellant cannot {action.name} their own appeal")
        if action.name == "verify":
            method = args.get("method")
            if method not in VERIFY_METHODS:
                raise CaseError(422, f"method: one of {list(VERIFY_METHODS)}")
            detail["method"] = method
        else:
            outcome, reason = args.get("outcome"), args.get("reason")
            if outcome not in DECISIONS:
                raise CaseError(422, f"outcome: one of {list(DECISIONS)}")
            if outcome == "not_adopted" and reason not in NOT_ADOPTED_REASONS:
                raise CaseError(422, f"reason: one of {list(NOT_ADOPTED_REASONS)} for a rating not adopted")
            if outcome == "upheld" and reason is not None:
                raise CaseError(422, "reason: only for a rating not adopted")
            target = "not_adopted" if outcome == "not_adopted" else case.appeal_from
            if target is None:  # a hand-edited row: never guess where the case was
                raise CaseError(409, "decide: the case does not record the state it was appealed from")
            updates["decided_at"] = at
            not_adopted = outcome == "not_adopted"
            detail.update({"outcome": outcome, "reason": reason})
    assert target is not None
    updates["state"] = target
    updates["updated_at"] = at
    return Change(action.name, target, updates, detail, callback, not_adopted)


def decision_record(case: Case, change: Change, events: Iterable[Mapping[str, Any]], actor: Actor,
                    at: str) -> Decision:
    """The Decision a `decide` change stores, from the case's appeal and verify events."""
    appeal = verify = None
    for event in events:
        if event["action"] == "appeal":
            appeal = event
        elif event["action"] == "verify":
            verify = event
    if appeal is None or verify is None:
        raise CaseError(409, "decide: the appeal or its verification is missing from the history")
    return Decision(case.id, case.hall, case.rating_kind, case.rating_ref, change.detail["outcome"],
                    change.detail.get("reason"), appeal["actor"], appeal["detail"].get("note"),
                    verify["actor"], verify["detail"]["method"], verify["detail"].get("note"),
                    actor.id, at, change.detail.get("note"))


_ARGS: dict[str, frozenset[str]] = {
    "route": frozenset({"unit", "note"}), "contact": frozenset({"callback", "note"}),
    "feedback": frozenset({"callback", "note"}), "ledger": frozenset({"until", "note"}),
    "verify": frozenset({"method", "note"}), "decide": frozenset({"outcome", "reason", "note"}),
    **{name: frozenset({"note"}) for name in ("rectify", "explain", "rectified", "reopen", "close", "appeal")},
}
_NOTE_REQUIRED = frozenset({"rectify", "explain", "ledger", "rectified", "reopen", "appeal", "verify"})


def _ledger_until(value: Any, case: Case, now: datetime) -> date:
    """A ledger date: YYYY-MM-DD, not before today, not after the region's ledger limit."""
    try:
        until = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        until = None
    if until is None:
        raise CaseError(422, "until: the ledger's deadline, YYYY-MM-DD")
    if until < china_day(now):
        raise CaseError(422, "until: a day not yet past")
    if case.ledger_due is not None:
        cap = (parse_utc(case.ledger_due) - timedelta(days=1)).astimezone(CHINA_TZ).date()
        if until > cap:
            raise CaseError(422, f"until: at most {cap.isoformat()} (the region's ledger limit, "
                                 f"{case.case_rules.ledger.label()} from opening)")
    return until


# ---------------------------------------------------------------------------- rates


@dataclass
class UnitRates:
    """Per unit (None: unrouted), over the cases opened in a period: counts and the two rates the
    rules require to be 100% (DOMAIN.md): the real-name callback rate (real-name cases whose rater
    was reached at least once / real-name cases) and the rectification rate (cases rectified or
    explained / cases). Cases decided not adopted are left out of both."""

    unit: str | None
    cases: int = 0
    open: int = 0
    overdue: int = 0
    not_adopted: int = 0
    rectified: int = 0  # rectified or explained, excluding not adopted
    explained: int = 0
    real_name: int = 0
    real_name_reached: int = 0
    reached: int = 0

    @property
    def counted(self) -> int:
        return self.cases - self.not_adopted

    @property
    def callback_rate(self) -> float | None:
        return self.real_name_reached / self.real_name if self.real_name else None

    @property
    def rectification_rate(self) -> float | None:
        return self.rectified / self.counted if self.counted else None

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "cases": self.cases, "open": self.open, "overdue": self.overdue,
                "not_adopted": self.not_adopted, "rectified": self.rectified, "explained": self.explained,
                "real_name": self.real_name, "real_name_reached": self.real_name_reached,
                "reached": self.reached, "callback_rate": self.callback_rate,
                "rectification_rate": self.rectification_rate}


def unit_rates(rows: Iterable[tuple[Case, bool]], now: datetime) -> list[UnitRates]:
    """`rows`: (case, whether its rater was reached by some callback). Sorted by unit, unrouted last."""
    by_unit: dict[str | None, UnitRates] = {}
    for case, reached in rows:
        r = by_unit.setdefault(case.unit, UnitRates(case.unit))
        r.cases += 1
        r.open += case.open
        r.overdue += bool(case.overdue(now))
        if case.state == "not_adopted":
            r.not_adopted += 1
            continue
        r.reached += reached
        if case.fixed_at is not None:
            r.rectified += 1
            r.explained += case.fix_kind == "explained"
        if case.real_name:
            r.real_name += 1
            r.real_name_reached += reached
    return sorted(by_unit.values(), key=lambda r: (r.unit is None, r.unit or ""))


# ---------------------------------------------------------------------------- reminders


@dataclass(frozen=True)
class Reminder:
    case_id: int
    deadline: str
    kind: str  # due_soon | overdue
    due_at: str
    unit: str | None
    hall: str


def reminders_due(case: Case, now: datetime) -> list[Reminder]:
    """The reminders `case` should have by `now`: for each step not done, `due_soon` from its
    reminder time and `overdue` from its deadline. Stored once each (per deadline instant), so a
    job that runs every few minutes writes each one once."""
    if not case.open:
        return []
    rules = case.case_rules
    found = []
    for status in case.deadlines(now):
        if status.done_at is not None or status.status == "void":
            continue
        due = parse_utc(status.due)
        limit = rules.ledger if status.name == "fix" and case.ledger_until is not None else rules.limit(status.name)
        assert limit is not None  # a deadline is only set from its limit
        start = parse_utc(case.fixed_at or case.opened_at) if status.name == "feedback" else parse_utc(case.opened_at)
        if now >= limit.remind_at(start, due):
            found.append(Reminder(case.id, status.name, "due_soon", status.due, case.unit, case.hall))
        if now >= due:
            found.append(Reminder(case.id, status.name, "overdue", status.due, case.unit, case.hall))
    return found


def events_detail(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}

