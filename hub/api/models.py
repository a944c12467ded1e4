"""One pydantic model per request and response shape of docs/protocol.md ("Hub ingest",
"Hub registration and reads")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, WithJsonSchema, field_validator, model_validator

from hcp.protocol import DEVICE_RE, HALL_RE, VERSION, WINDOW_RE

from ..default_rules import KINDS, MAX_DAYS, PRESETS, DefaultRule
from ..ingest import ItemResult
from ..stats import Figures, Rebuilt, StatsQuery, StatsRow
from ..store import (
    DeviceRecord,
    HallRecord,
    RegionRecord,
    RejectionRecord,
    RejectionSummary,
    StoredDeviceAlert,
    StoredGap,
    StoredHealth,
    StoredRating,
)


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


HALL_PATTERN = _anchored(HALL_RE.pattern)
DEVICE_PATTERN = _anchored(DEVICE_RE.pattern)
WINDOW_PATTERN = _anchored(WINDOW_RE.pattern)

HallId = Annotated[StrictStr, Field(pattern=HALL_PATTERN, examples=["H1"])]
DeviceId = Annotated[StrictStr, Field(pattern=DEVICE_PATTERN, examples=["D07"])]
WindowId = Annotated[StrictStr, Field(pattern=WINDOW_PATTERN, examples=["7"])]
KeyHex = Annotated[StrictStr, Field(pattern=r"^[0-9a-fA-F]{64}$",
                                    description="32-byte key as 64 hex characters (write-only)")]


class Problem(BaseModel):
    """Every error answer (4xx, 503): what was wrong, in words. 422 answers from request
    validation carry FastAPI's list of field errors instead."""

    detail: str


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # receivers ignore unknown fields within v1


# ---------------------------------------------------------------------------- registration


class GatewayRegistration(_Request):
    hall: HallId
    key: KeyHex

    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)


class GatewayToken(BaseModel):
    hall: str
    token: str = Field(description="the gateway's ingest token; shown once, the hub keeps its SHA-256")


class DeviceRegistration(_Request):
    device: DeviceId
    hall: HallId
    window: WindowId
    key: KeyHex

    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)


class DeviceRegistered(BaseModel):
    device: str
    kid: str = Field(examples=["4773d12e"])


class DeviceRetiredOut(BaseModel):
    device: str
    hall: str
    window: str = Field(description="the window it served (the replacement's now)")
    retired_at: str = Field(description="hub time, UTC; items its gateway received from it since "
                                        "are refused `retired_device`")


# ---------------------------------------------------------------------------- ingest


class IngestEnvelope(_Request):
    v: StrictInt = Field(description="protocol version: this hub speaks 1",
                         json_schema_extra={"enum": [VERSION]})
    hall: HallId
    items: list[Any] = Field(description="services, ratings, health snapshots and device alerts; "
                                         "each is checked on its own")

    @field_validator("v")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != VERSION:
            raise ValueError(f"unsupported version {v}: this hub speaks v{VERSION}")
        return v


class IngestResult(BaseModel):
    key: str | None = Field(description="`rating:{dev}:{n}`, `service:{hall}:{id}`, "
                                        "`health:{hall}:{device}:{boot}:{up}` or "
                                        "`alert:{hall}:{id}:{state}`; null if unreadable")
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = Field(default=None, exclude_if=lambda reason: reason is None)

    @classmethod
    def of(cls, result: ItemResult) -> IngestResult:
        return cls(key=result.key, status=result.status, reason=result.reason)


class IngestResponse(BaseModel):
    v: int = VERSION
    results: list[IngestResult]


class RejectionOut(BaseModel):
    at: str
    hall: str
    key: str | None
    reason: str
    item: str = Field(description="the item as JSON, truncated")

    @classmethod
    def of(cls, record: RejectionRecord) -> RejectionOut:
        return cls(at=record.at, hall=record.hall, key=record.key, reason=record.reason, item=record.item)


class RejectionsOut(BaseModel):
    total: int
    by_reason: dict[str, int]
    recent: list[RejectionOut] = Field(description="newest first")

    @classmethod
    def of(cls, summary: RejectionSummary) -> RejectionsOut:
        return cls(total=summary.total, by_reason=summary.by_reason,
                   recent=[RejectionOut.of(r) for r in summary.recent])


# ---------------------------------------------------------------------------- reads


class RatingOut(BaseModel):
    id: str = Field(examples=["D07:42"])
    hall: str
    device: str
    n: int
    score: int = Field(description="5 = 非常满意 … 1 = 非常不满意")
    level: str = Field(examples=["满意"])
    bad: bool = Field(description="score 1 or 2 (差评)")
    session: str | None
    received_at: str
    bound: bool
    unbound_reason: str | None
    service: str | None
    ticket: str | None
    window: str | None = Field(description="the binding's window; the device's window when unbound")
    staff_id: str | None
    matter_code: str | None
    case_no: str | None
    unit: str | None
    verified: bool

    @classmethod
    def of(cls, r: StoredRating) -> RatingOut:
        return cls(id=r.id, hall=r.hall, device=r.device, n=r.n, score=r.score, level=r.level,
                   bad=r.bad, session=r.session, received_at=r.received_at, bound=r.bound,
                   unbound_reason=r.unbound_reason, service=r.service, ticket=r.ticket,
                   window=r.window, staff_id=r.staff_id, matter_code=r.matter_code,
                   case_no=r.case_no, unit=r.unit, verified=r.verified)


class HealthOut(BaseModel):
    """A device health snapshot as the hall's gateway forwarded it."""

    hall: str
    device: str
    window: str | None = Field(description="the device's window at the gateway, as sent")
    boot: int
    up: int = Field(description="device ms since boot")
    received_at: str = Field(description="gateway wall clock when the health came")
    presence: Literal["online", "offline"] | None = Field(description="as the gateway saw it; null: never seen")
    offset_ms: int | None = Field(description="gateway wall ms at receipt minus `up`")
    health: dict[str, Any] = Field(description="the device's health payload, unchanged")

    @classmethod
    def of(cls, h: StoredHealth) -> HealthOut:
        return cls(hall=h.hall, device=h.device, window=h.window, boot=h.boot, up=h.up,
                   received_at=h.received_at, presence=h.presence,  # type: ignore[arg-type]
                   offset_ms=h.offset_ms, health=h.health)


class DeviceAlertOut(BaseModel):
    """A device alert of a hall's gateway (kinds: docs/gateway.md, "Alerts")."""

    hall: str
    id: int = Field(description="the gateway's alert number, unique in the hall")
    device: str
    window: str | None = Field(description="null: the device is not registered at the gateway")
    alert: str = Field(examples=["stuck_button"])
    state: Literal["raised", "cleared"]
    detail: str | None
    raised_at: str
    cleared_at: str | None
    raise_seen: bool = Field(description="false: known only from its clear so far")
    updated_at: str = Field(description="when the hub last stored a state of it")

    @classmethod
    def of(cls, a: StoredDeviceAlert) -> DeviceAlertOut:
        return cls(hall=a.hall, id=a.id, device=a.device, window=a.window, alert=a.alert,
                   state=a.state, detail=a.detail, raised_at=a.raised_at,  # type: ignore[arg-type]
                   cleared_at=a.cleared_at, raise_seen=a.raise_seen, updated_at=a.updated_at)


class DeviceOut(BaseModel):
    device: str
    hall: str
    window: str = Field(description="the window the device is registered for at the hub")
    kid: str | None = Field(description="the current key's id")
    registered_at: str
    updated_at: str
    health: HealthOut | None = Field(description="the newest health snapshot from this hall")
    alerts_open: list[str] = Field(description="kinds of the device's open alerts in this hall")

    @classmethod
    def of(cls, d: DeviceRecord) -> DeviceOut:
        return cls(device=d.device, hall=d.hall, window=d.window, kid=d.kid,
                   registered_at=d.registered_at, updated_at=d.updated_at,
                   health=HealthOut.of(d.health) if d.health is not None else None,
                   alerts_open=list(d.alerts_open))


class Health(BaseModel):
    ok: bool


# ---------------------------------------------------------------------------- the ledger

HASH_PATTERN = r"^[0-9a-f]{64}$"


class LedgerHead(BaseModel):
    seq: int = Field(description="the newest entry's number (0: empty ledger)")
    hash: str = Field(description="its hash, hex SHA-256: record it outside the hub", pattern=HASH_PATTERN)


class LedgerBreak(BaseModel):
    seq: int = Field(description="the entry where it is (0 for a record with no entry)")
    kind: str
    hall: str
    ref: str
    problem: Literal["entry_altered", "record_altered", "record_missing", "seq_gap", "head_mismatch",
                     "unledgered"]


class LedgerVerification(BaseModel):
    ok: bool
    entries: int = Field(description="entries checked")
    head: LedgerHead
    first_broken: LedgerBreak | None = Field(description="the first problem in seq order")
    problems: int = Field(description="problems found in the chain (entries and their records)")
    breaks: list[LedgerBreak] = Field(description="the first problems found (at most 20)")
    unledgered: dict[str, int] = Field(description="per kind, stored records that have no entry")


# ---------------------------------------------------------------------------- default ratings


class DefaultRatingOut(BaseModel):
    hall: str
    service: str
    score: int = Field(description="3 = 基本满意")
    region: str
    rule: dict[str, Any] = Field(description="the region's rule when it was applied")
    finished_at: str
    due_at: str = Field(description="when the rating period ended (+08:00)")
    estimated: bool = Field(description="a working day of the period was guessed Monday-Friday "
                                        "(no holiday data for its year)")
    applied_at: str


class DefaultAlertOut(BaseModel):
    kind: str
    hall: str | None
    key: str
    detail: str


class DefaultRunOut(BaseModel):
    applied: int = Field(description="defaults stored by this run")
    not_due: int = Field(description="unrated services still within their period")
    waiting_for_region: int = Field(description="unrated services of halls with no region")
    bad_time: int = Field(description="services whose finished_at has no usable time")
    estimated: int = Field(description="defaults whose period used guessed working days")
    alerts: list[DefaultAlertOut] = Field(description="raised by this run (stored once per kind and key)")


# ---------------------------------------------------------------------------- regions and halls

REGION_PATTERN = HALL_PATTERN  # region ids take the hall id form: `jilin`, `xpcc-9th-division`
AREA_CODE_PATTERN = r"^[0-9]{6,12}$"
# A display name: no control characters, no blank at either end, 1 to 64 characters (a lone
# surrogate, which no UTF-8 column can store, pydantic refuses as `string_unicode`)
NAME_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$"
RULE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["kind", "days"],
               "properties": {"kind": {"enum": list(KINDS)},
                              "days": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS}},
               "description": "unrated services default to 基本满意 after `days` calendar or working days"}

RegionId = Annotated[StrictStr, Field(pattern=REGION_PATTERN, examples=["jilin"])]
Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN, examples=["吉林市"])]
PresetKey = Literal[tuple(PRESETS)]  # type: ignore[valid-type]


class RegionPut(_Request):
    """A region's settings: `default_rule`, or a `preset` of hub/default_rules.py (one of the two).
    The whole region is replaced: an absent `area_code` clears it."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"oneOf": [
        {"required": ["default_rule"], "properties": {"default_rule": {"type": "object"}}},
        {"required": ["preset"], "properties": {"preset": {"type": "string"}}}]})

    name: Name
    area_code: Annotated[StrictStr | None, Field(pattern=AREA_CODE_PATTERN, examples=["220200"],
                                                 description="行政区划代码, 6 to 12 digits")] = None
    default_rule: Annotated[dict[str, Any], WithJsonSchema(RULE_SCHEMA)] | None = None
    preset: PresetKey | None = Field(default=None, description="a region's rule as its own document "
                                     "states it: " + ", ".join(f"`{k}` ({p.name})" for k, p in PRESETS.items()))

    @field_validator("default_rule")
    @classmethod
    def _valid_rule(cls, rule: dict[str, Any] | None) -> dict[str, Any] | None:
        if rule is None:
            return None
        days = rule.get("days")
        if type(days) is float and days.is_integer():  # JSON has one number type: 7.0 is 7
            rule = {**rule, "days": int(days)}
        DefaultRule.from_dict(rule)  # RuleError (a ValueError) says what is wrong: 422
        return rule

    @model_validator(mode="after")
    def _one_rule(self) -> RegionPut:
        if (self.default_rule is None) == (self.preset is None):
            raise ValueError("give default_rule {kind, days} or preset "
                             f"(one of {', '.join(PRESETS)}), exactly one of the two")
        return self

    def rule(self) -> DefaultRule:
        if self.preset is not None:
            return PRESETS[self.preset].rule
        return DefaultRule.from_dict(self.default_rule)


class HallPut(_Request):
    """A hall's region and name; the whole hall is replaced (an absent `name` clears it)."""

    region: RegionId
    name: Name | None = None


class RuleOut(BaseModel):
    kind: Literal["calendar_days", "working_days"]
    days: int


class HallOut(BaseModel):
    hall: str
    region: str
    name: str | None
    updated_at: str

    @classmethod
    def of(cls, h: HallRecord) -> HallOut:
        return cls(hall=h.hall, region=h.region, name=h.name, updated_at=h.updated_at)


class RegionOut(BaseModel):
    region: str
    name: str
    area_code: str | None = Field(description="行政区划代码 for the platform exports")
    default_rule: RuleOut
    created_at: str
    updated_at: str
    halls: list[HallOut] = Field(description="the region's halls, by id")

    @classmethod
    def of(cls, r: RegionRecord, halls: list[HallRecord]) -> RegionOut:
        return cls(region=r.region, name=r.name, area_code=r.area_code,
                   default_rule=RuleOut(kind=r.default_rule.kind, days=r.default_rule.days),
                   created_at=r.created_at, updated_at=r.updated_at,
                   halls=[HallOut.of(h) for h in halls])


# ---------------------------------------------------------------------------- the devices overview


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class HealthFigures(BaseModel):
    """The newest health snapshot's figures (docs/protocol.md, "health"). A figure missing or of
    another type than the protocol's is null; the snapshot as sent is in the health history."""

    boot: int
    up: int = Field(description="device ms since boot")
    heap: int | None = Field(description="free heap bytes after a collection")
    alloc_peak: int | None = Field(description="highest allocated heap bytes since boot")
    ob: int | None = Field(description="ratings waiting in the device's flash outbox")
    rssi: int | None = Field(description="dBm")
    clock: str | None = Field(description="`mono` (no wall clock) or `set`")
    stuck: list[str] | None = Field(description="buttons held down too long, ignored now")
    err: str | None = Field(description="the last error text")
    cnt: dict[str, int] | None = Field(description="counters since boot (press, rate, resend, …)")

    @classmethod
    def of(cls, h: StoredHealth) -> HealthFigures:
        p = h.health
        stuck, cnt = p.get("stuck"), p.get("cnt")
        return cls(boot=h.boot, up=h.up, heap=_int(p.get("heap")), alloc_peak=_int(p.get("alloc_peak")),
                   ob=_int(p.get("ob")), rssi=_int(p.get("rssi")), clock=_str(p.get("clock")),
                   stuck=stuck if isinstance(stuck, list) and all(isinstance(b, str) for b in stuck) else None,
                   err=_str(p.get("err")),
                   cnt={k: v for k, v in cnt.items() if type(v) is int} if isinstance(cnt, dict) else None)


class OpenAlertsOut(BaseModel):
    count: int = Field(description="the device's open alerts in its hall")
    kinds: list[str] = Field(description="their kinds, sorted, each once")


class DeviceOverviewOut(BaseModel):
    """A registered device at a glance (docs/hub.md, "Devices")."""

    device: str
    hall: str
    region: str | None = Field(description="the hall's region; null while the hall is in none")
    window: str = Field(description="the window the device is registered for at the hub")
    kid: str | None = Field(description="the current key's id")
    presence: Literal["online", "offline", "unknown", "retired"] = Field(
        description="`retired` once a replacement took its window; else `offline` while the "
                    "gateway's `offline` alert is open, else the newest health's presence; "
                    "`unknown`: neither says (no health yet, or the gateway never saw it)")
    retired_at: str | None = Field(default=None, description="when it was retired (hub time, UTC); "
                                   "items its gateway received from it since are refused")
    last_seen: str | None = Field(description="`received_at` of the newest health snapshot")
    firmware: str | None = Field(description="`fw` of the newest health snapshot")
    health: HealthFigures | None = Field(description="null before the first health snapshot")
    alerts_open: OpenAlertsOut

    @classmethod
    def of(cls, d: DeviceRecord) -> DeviceOverviewOut:
        h = d.health
        return cls(device=d.device, hall=d.hall, region=d.region, window=d.window, kid=d.kid,
                   presence=d.presence, retired_at=d.retired_at,  # type: ignore[arg-type]
                   last_seen=h.received_at if h is not None else None,
                   firmware=_str(h.health.get("fw")) if h is not None else None,
                   health=HealthFigures.of(h) if h is not None else None,
                   alerts_open=OpenAlertsOut(count=d.alerts_open_count, kinds=list(d.alerts_open)))


# ---------------------------------------------------------------------------- counter gaps


class GapOut(BaseModel):
    """A gap in a device's rating counter (docs/hub.md, "Counter gaps")."""

    device: str
    hall: str = Field(description="the hall of the rating that revealed the gap")
    first: int = Field(description="the numbers missing when it was opened: first..last (never changed)")
    last: int
    size: int = Field(description="last - first + 1")
    missing: int = Field(description="numbers of it not received yet")
    arrived: int = Field(description="numbers of it received late, since it was opened")
    state: Literal["open", "closed"] = Field(description="closed: every number of it arrived")
    opened_at: str = Field(description="hub time when a rating above it was accepted")
    closed_at: str | None = Field(description="hub time when its last missing number arrived")
    holes: list[tuple[int, int]] = Field(
        description="the runs still missing, [first, last], lowest first, at most 100 (`missing` "
                    "counts them all); empty once closed")

    @classmethod
    def of(cls, g: StoredGap) -> GapOut:
        return cls(device=g.device, hall=g.hall, first=g.first, last=g.last, size=g.size,
                   missing=g.missing, arrived=g.size - g.missing, state=g.state,  # type: ignore[arg-type]
                   opened_at=g.opened_at, closed_at=g.closed_at, holes=list(g.holes))


# ---------------------------------------------------------------------------- statistics


class StatsFigures(BaseModel):
    """The figures of one group (docs/hub.md, "Statistics": what each counts, on which day)."""

    services: int = Field(description="services delivered (outcome `finished`), by the day they finished")
    no_shows: int = Field(description="services with outcome `no_show` (not delivered, not in the rates)")
    ratings: int = Field(description="ratings, by the day the gateway received them")
    scores: dict[Literal["1", "2", "3", "4", "5"], int] = Field(
        description="ratings per score: 5 非常满意, 4 满意, 3 基本满意, 2 不满意, 1 非常不满意")
    bad: int = Field(description="差评: ratings of score 1 or 2")
    unbound: int = Field(description="ratings bound to no service")
    rated_services: int = Field(description="services delivered that have a bound rating")
    rated_services_with_defaults: int = Field(description="... or a system default rating")
    defaulted: int = Field(description="services delivered that got a system default (基本满意)")
    evaluation_rate: float | None = Field(description="评价率: rated_services / services; null without services")
    evaluation_rate_with_defaults: float | None = Field(description="rated_services_with_defaults / services")
    not_adopted: int = Field(description="bad ratings an appeal decided not to adopt (误评, 恶意差评): still "
                                         "in ratings, scores and bad, left out of satisfaction")
    satisfaction: float | None = Field(description="(ratings - bad) / (ratings - not_adopted); null without ratings")
    satisfaction_with_defaults: float | None = Field(
        description="each default counted as one more 基本满意 rating")


class StatsRowOut(StatsFigures):
    period: str = Field(description="the day (YYYY-MM-DD) or month (YYYY-MM), in China (UTC+8)",
                        examples=["2026-11"])
    key: dict[str, str | None] = Field(
        description="the group: {region}, {hall}, {hall, window}, {staff_id}, {matter_code} or "
                    "{unit} (null: none, e.g. a hall in no region, an unbound rating's staff); {} "
                    "without `group`")


class StatsOut(BaseModel):
    """The answer of GET /api/v1/stats. Built as plain data by `stats_body` (a month of a region
    grouped by staff is thousands of rows: validating each into a model would cost more than the
    query); the API tests and the fuzz test check it against this model."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="first day, included")
    to: str = Field(description="last day, included")
    period: Literal["day", "month"]
    group: Literal["region", "hall", "window", "staff", "matter", "unit"] | None
    region: str | None
    hall: str | None
    rows: list[StatsRowOut] = Field(description="one per period and group key that has counts, "
                                                "by period, then key")
    total: StatsFigures = Field(description="the whole selection")


def stats_figures(f: Figures) -> dict[str, Any]:
    """StatsFigures' fields of `f`."""
    s1, s2, s3, s4, s5 = f.scores
    return {"services": f.services, "no_shows": f.no_shows, "ratings": f.ratings,
            "scores": {"5": s5, "4": s4, "3": s3, "2": s2, "1": s1}, "bad": f.bad, "unbound": f.unbound,
            "not_adopted": f.not_adopted,
            "rated_services": f.rated, "rated_services_with_defaults": f.rated_or_default,
            "defaulted": f.defaulted, "evaluation_rate": f.evaluation_rate,
            "evaluation_rate_with_defaults": f.evaluation_rate_with_defaults,
            "satisfaction": f.satisfaction, "satisfaction_with_defaults": f.satisfaction_with_defaults}


def stats_body(q: StatsQuery, rows: list[StatsRow]) -> dict[str, Any]:
    """StatsOut as plain data (by alias)."""
    total = Figures.total(r.figures for r in rows)
    return {"from": q.start.isoformat(), "to": q.end.isoformat(), "period": q.period, "group": q.group,
            "region": q.region, "hall": q.hall,
            "rows": [{"period": r.period, "key": r.key, **stats_figures(r.figures)} for r in rows],
            "total": stats_figures(total)}


class StatsRebuiltOut(BaseModel):
    ratings: int = Field(description="ratings read")
    services: int = Field(description="services read")
    rows: dict[str, int] = Field(description="rows written per rollup table")
    seconds: float

    @classmethod
    def of(cls, r: Rebuilt) -> StatsRebuiltOut:
        return cls(ratings=r.ratings, services=r.services, rows=r.rows, seconds=round(r.seconds, 3))
