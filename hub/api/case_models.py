"""Request and answer shapes of /api/v1/cases (hub/api/routes/cases.py; docs/cases.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from hcp.protocol import LEVELS

from .. import cases
from ..cases import Case, CaseRules, DeadlineStatus
from ..store.cases_sql import CaseEvent, StoredCallback, StoredReminder, StoredRules

ActionName = Literal["route", "contact", "rectify", "explain", "ledger", "rectified", "feedback", "reopen",
                     "close", "appeal", "verify", "decide"]


class CallbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: StrictStr = Field(description="when the call was made: ISO 8601 with offset",
                          examples=["2026-11-23T10:15:00+08:00"])
    channel: Literal["phone", "sms", "visit", "wechat", "letter", "other"]
    outcome: Literal["reached", "unreachable", "refused", "anonymous"] = Field(
        description="anonymous: the rater left no way to reach them")
    satisfaction: Literal["satisfied", "basically_satisfied", "dissatisfied"] | None = Field(
        default=None, description="the rater's satisfaction with the fix (a rater reached for feedback must say)")
    note: StrictStr | None = Field(default=None, max_length=cases.MAX_NOTE)


class TransitionIn(BaseModel):
    """One action on a case, with its arguments (docs/cases.md, "Actions"): route {unit};
    contact, feedback {callback}; ledger {until}; verify {method}; decide {outcome, reason};
    `note` for all (required for rectify, explain, ledger, rectified, reopen, appeal, verify)."""

    model_config = ConfigDict(extra="forbid")

    action: ActionName
    note: StrictStr | None = Field(default=None, max_length=cases.MAX_NOTE)
    unit: StrictStr | None = Field(default=None, max_length=200)
    callback: CallbackIn | None = None
    until: StrictStr | None = Field(default=None, description="the ledger's deadline, YYYY-MM-DD (China)")
    method: Literal["spot_check", "records", "site_visit", "phone_callback"] | None = None
    outcome: Literal["upheld", "not_adopted"] | None = Field(
        default=None, description="upheld: the rating stands; not_adopted: 误评 or 恶意差评, out of satisfaction")
    reason: Literal["mistaken", "malicious"] | None = None

    def args(self) -> dict[str, Any]:
        return self.model_dump(exclude={"action"}, exclude_none=True)


class RulesPut(BaseModel):
    """`{"preset": key}`, `{"limits": {step: {"kind","n"} | null}}`, or a preset edited by limits."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["jilin", "2-5-15", "1-5-15"] | None = None
    limits: dict[str, Any] | None = None

    def rules(self) -> CaseRules:
        doc: dict[str, Any] = {}
        if self.preset is not None:
            doc["preset"] = self.preset
        if self.limits is not None:
            doc["limits"] = self.limits
        return CaseRules.from_dict(doc)


class DeadlineOut(BaseModel):
    name: Literal["route", "contact", "fix", "feedback"]
    due: str = Field(description="the instant the step is late from (UTC)")
    done_at: str | None
    status: Literal["met", "late", "pending", "overdue", "void"]

    @classmethod
    def of(cls, d: DeadlineStatus) -> DeadlineOut:
        return cls(name=d.name, due=d.due, done_at=d.done_at, status=d.status)  # type: ignore[arg-type]


class RatingRef(BaseModel):
    kind: str = Field(description="the rating's ledger kind: `rating` for a device's")
    ref: str = Field(examples=["D07:12"])
    score: int
    level: str
    rated_at: str


class CaseOut(BaseModel):
    id: int
    hall: str
    region: str | None
    unit: str | None = Field(description="the unit it is routed to; null: unrouted (the hall's operators route it)")
    routed: bool
    source_unit: str | None = Field(description="the unit the rating's binding named")
    window: str | None
    staff_id: str | None
    matter_code: str | None
    service: str | None
    case_no: str | None
    rating: RatingRef
    real_name: bool
    state: str
    state_label: str
    appeal_from: str | None
    appellant: str | None
    rules: dict[str, Any] = Field(description="{preset, limits, source}: the limits applied when it opened")
    opened_at: str
    deadlines: list[DeadlineOut]
    overdue: list[str] = Field(description="steps past their deadline and not done")
    ledger_until: str | None
    estimated: bool = Field(description="a deadline counted a working day guessed Monday-Friday (no holiday data)")
    contacted_at: str | None
    fixed_at: str | None
    fix_kind: str | None
    feedback_at: str | None
    closed_at: str | None
    decided_at: str | None
    last_satisfaction: str | None
    updated_at: str

    @classmethod
    def of(cls, c: Case, now: datetime) -> CaseOut:
        rules = c.case_rules.to_dict()
        return cls(id=c.id, hall=c.hall, region=c.region, unit=c.unit, routed=c.routed, source_unit=c.source_unit,
                   window=c.window, staff_id=c.staff_id, matter_code=c.matter_code, service=c.service,
                   case_no=c.case_no,
                   rating=RatingRef(kind=c.rating_kind, ref=c.rating_ref, score=c.score, level=LEVELS[c.score],
                                    rated_at=c.rated_at),
                   real_name=c.real_name, state=c.state, state_label=cases.STATE_LABELS[c.state],
                   appeal_from=c.appeal_from, appellant=c.appellant,
                   rules={**rules, "source": c.rules_source}, opened_at=c.opened_at,
                   deadlines=[DeadlineOut.of(d) for d in c.deadlines(now)], overdue=c.overdue(now),
                   ledger_until=c.ledger_until, estimated=c.estimated, contacted_at=c.contacted_at,
                   fixed_at=c.fixed_at, fix_kind=c.fix_kind, feedback_at=c.feedback_at, closed_at=c.closed_at,
                   decided_at=c.decided_at, last_satisfaction=c.last_satisfaction, updated_at=c.updated_at)


class CaseListOut(BaseModel):
    total: int = Field(description="cases matching the filters, on every page")
    cases: list[CaseOut] = Field(description="newest first")
    next_before: int | None = Field(description="give as `before` for the next page; null on the last")


class EventOut(BaseModel):
    id: int
    at: str
    actor: str
    role: str
    action: str
    from_state: str | None
    to_state: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, e: CaseEvent) -> EventOut:
        return cls(**e.as_dict())


class CallbackOut(BaseModel):
    id: int
    at: str
    recorded_at: str
    actor: str
    purpose: str
    channel: str
    outcome: str
    satisfaction: str | None
    note: str | None

    @classmethod
    def of(cls, c: StoredCallback) -> CallbackOut:
        return cls(id=c.id, at=c.at, recorded_at=c.recorded_at, actor=c.actor, purpose=c.purpose,
                   channel=c.channel, outcome=c.outcome, satisfaction=c.satisfaction, note=c.note)


class ReminderOut(BaseModel):
    case_id: int
    deadline: str
    kind: Literal["due_soon", "overdue"]
    due_at: str
    hall: str
    unit: str | None
    at: str

    @classmethod
    def of(cls, r: StoredReminder) -> ReminderOut:
        return cls(case_id=r.case_id, deadline=r.deadline, kind=r.kind, due_at=r.due_at,  # type: ignore[arg-type]
                   hall=r.hall, unit=r.unit, at=r.at)


class DecisionOut(BaseModel):
    """An appeal's decision as stored, with its ledger entry's ref (`appeal`, hall, ref)."""

    hall: str
    ref: str
    case_id: int
    rating_kind: str
    rating_ref: str
    rating_seq: int | None = Field(description="the rating's own ledger entry")
    outcome: str
    reason: str | None
    appellant: str
    appeal_note: str | None
    verified_by: str
    method: str
    verify_note: str | None
    decided_by: str
    decided_at: str
    note: str | None


class RaterContactOut(BaseModel):
    kind: str = Field(description="the phone rating it came with: supplementary (补充评价) or followup (追加评价)")
    name: str | None = Field(description="masked, e.g. 张*")
    phone: str | None = Field(description="masked, e.g. 138****5678")


class CaseDetailOut(CaseOut):
    contacts: list[RaterContactOut] = Field(description="the rater's name and number, masked")
    events: list[EventOut]
    callbacks: list[CallbackOut]
    reminders: list[ReminderOut]
    decision: DecisionOut | None
    actions: list[str] = Field(description="the actions the person asking may take now")


class RatesOut(BaseModel):
    unit: str | None
    cases: int
    open: int
    overdue: int
    not_adopted: int
    rectified: int = Field(description="rectified or explained (not counting cases not adopted)")
    explained: int
    real_name: int
    real_name_reached: int
    reached: int
    callback_rate: float | None = Field(description="实名差评回访率: real-name cases reached / real-name cases")
    rectification_rate: float | None = Field(description="整改率: rectified or explained / cases not adopted out")


class RatesListOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str | None = Field(alias="from")
    to: str | None
    units: list[RatesOut]
    total: RatesOut


class RulesOut(BaseModel):
    region: str
    preset: str | None
    limits: dict[str, Any]
    updated_at: str
    updated_by: str

    @classmethod
    def of(cls, r: StoredRules) -> RulesOut:
        doc = r.rules.to_dict()
        return cls(region=r.region, preset=doc["preset"], limits=doc["limits"], updated_at=r.updated_at,
                   updated_by=r.updated_by)


class PresetOut(BaseModel):
    key: str
    name: str
    limits: dict[str, Any]
    source: str


class RemindersRunOut(BaseModel):
    written: int = Field(description="reminders new in this run")
