"""The bad-review case workflow as a state machine (hub/cases.py `apply`), driven by hypothesis
with random actions by random people at random times: no transition outside the documented graph,
nobody acts outside their role and scope, an appeal is decided only by a supervisor who is not
the appellant, a case is appealed at most once, and from every state a case can still be brought
to its end, closed or decided."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hub import cases
from hub.cases import Actor, Case, CaseError
from hub.workdays import WorkCalendar

CAL = WorkCalendar.load()
A, B = "市市场监督管理局", "市税务局"
START = datetime(2026, 2, 10, 2, 0, tzinfo=UTC)  # before the 2026 Spring Festival

# The documented graph (docs/cases.md), written out here rather than read from hub.cases.ACTIONS.
APPEALABLE = ("new", "contacted", "rectifying", "ledger")
EDGES = {("unrouted", "new"), ("new", "new"), ("contacted", "contacted"),  # route, re-route
         ("new", "contacted"), ("contacted", "rectifying"), ("contacted", "explained"),
         ("rectifying", "explained"), ("rectifying", "ledger"), ("rectifying", "rectified"),
         ("ledger", "rectified"), ("rectified", "feedback"), ("explained", "feedback"),
         ("feedback", "rectifying"), ("feedback", "closed"),
         *((s, "appealed") for s in APPEALABLE), ("appealed", "verified"), ("verified", "not_adopted"),
         *(("verified", s) for s in APPEALABLE)}
ENDS = {"closed", "not_adopted"}

PEOPLE = [Actor("h-a", "handler", unit=A), Actor("h-b", "handler", unit=B), Actor("op", "operator"),
          Actor("sup-1", "supervisor"), Actor("sup-2", "supervisor"), Actor("aud", "auditor"),
          Actor("root", "admin"), Actor("op-h2", "operator", hall="H2")]


def new_case(unit: str | None, now: datetime = START, preset: str = "2-5-15") -> Case:
    """A case as the store opens it (hub/store/cases_sql.py), without a database."""
    rules = cases.PRESETS[preset].rules
    dues, estimated = cases.due_dates(rules, now, CAL)
    opened = cases.iso(now)
    text = {k: (cases.iso(v) if v is not None else None) for k, v in dues.items()}
    return Case(id=1, hall="H1", region="jilin", unit=unit, source_unit=unit, window="7", staff_id="S0107",
                matter_code="M1", service="svc", case_no="2026021000001", rating_kind="rating",
                rating_ref="D07:1", score=2, rated_at=(now - timedelta(hours=2)).isoformat(), real_name=False,
                state="new" if unit else "unrouted", appeal_from=None, appellant=None, rules=rules.to_json(),
                rules_source="region", opened_at=opened, route_due=text["route"], contact_due=text["contact"],
                fix_due=text["fix"], ledger_due=text["ledger"], ledger_until=None, feedback_due=None,
                estimated=estimated, routed_at=opened if unit else None, contacted_at=None, fixed_at=None,
                fix_kind=None, feedback_at=None, closed_at=None, decided_at=None, last_satisfaction=None,
                updated_at=opened)


def after(case: Case, change: cases.Change) -> Case:
    return replace(case, **change.updates)


def callback(now: datetime, outcome: str = "reached", satisfaction: str | None = None) -> dict:
    doc = {"at": (now - timedelta(minutes=30)).astimezone(cases.CHINA_TZ).isoformat(), "channel": "phone",
           "outcome": outcome}
    if satisfaction is not None:
        doc["satisfaction"] = satisfaction
    return doc


def finish(case: Case, now: datetime) -> list[tuple[str, str]]:
    """Bring `case` to its end by the documented happy path; the (state, action) steps taken."""
    steps = []
    for _ in range(20):
        if case.state in ENDS:
            return steps
        supervisor = next(p for p in PEOPLE if p.role == "supervisor" and p.id != case.appellant)
        action, args, who = {
            "unrouted": ("route", {"unit": A}, PEOPLE[2]),
            "new": ("contact", {"callback": callback(now)}, PEOPLE[2]),
            "contacted": ("rectify", {"note": "窗口指引不清"}, PEOPLE[2]),
            "rectifying": ("rectified", {"note": "已更新办事指南"}, PEOPLE[2]),
            "ledger": ("rectified", {"note": "系统已改造"}, PEOPLE[2]),
            "rectified": ("feedback", {"callback": callback(now, satisfaction="satisfied")}, PEOPLE[2]),
            "explained": ("feedback", {"callback": callback(now, satisfaction="satisfied")}, PEOPLE[2]),
            "feedback": ("close", {}, supervisor),
            "appealed": ("verify", {"method": "records", "note": "调阅档案"}, supervisor),
            "verified": ("decide", {"outcome": "upheld"}, supervisor),
        }[case.state]
        steps.append((case.state, action))
        case = after(case, cases.apply(case, action, who, args, now, CAL))
    raise AssertionError(f"no end after {steps}")


ACTION_NAMES = list(cases.ACTIONS) + ["dance"]
WAYS_ON = {"unrouted": ["route"], "new": ["contact", "appeal", "route"], "contacted": ["rectify", "explain", "appeal"],
           "rectifying": ["rectified", "ledger", "explain", "appeal"], "ledger": ["rectified", "appeal"],
           "rectified": ["feedback"], "explained": ["feedback"], "feedback": ["close", "reopen"],
           "appealed": ["verify"], "verified": ["decide"]}


@st.composite
def arguments(draw, action: str, now: datetime) -> dict:
    """Mostly valid arguments for `action`, now and then a broken one."""
    args: dict = {}
    if draw(st.integers(0, 9)) > 0:
        args["note"] = draw(st.sampled_from(["已核实", "窗口人员态度问题", "材料要求已简化"]))
    if action == "route":
        args["unit"] = draw(st.sampled_from([A, B, ""]))
    elif action in ("contact", "feedback"):
        outcome = draw(st.sampled_from(cases.OUTCOMES))
        satisfaction = draw(st.sampled_from(cases.SATISFACTIONS)) if outcome == "reached" else None
        args["callback"] = callback(now, outcome, satisfaction)
        if draw(st.integers(0, 9)) == 0:
            args["callback"]["at"] = (now + timedelta(days=1)).isoformat()  # the future: refused
    elif action == "ledger":
        day = cases.china_day(now) + timedelta(days=draw(st.integers(-1, 40)))
        args["until"] = day.isoformat()
    elif action == "verify":
        args["method"] = draw(st.sampled_from([*cases.VERIFY_METHODS, "rumour"]))
    elif action == "decide":
        outcome = draw(st.sampled_from(cases.DECISIONS))
        args["outcome"] = outcome
        if outcome == "not_adopted":
            args["reason"] = draw(st.sampled_from([*cases.NOT_ADOPTED_REASONS, None]))
    return {k: v for k, v in args.items() if v is not None}


class CaseWorkflow(RuleBasedStateMachine):
    case: Case
    now: datetime

    @initialize(routed=st.booleans())
    def open_case(self, routed: bool) -> None:
        self.now = START
        self.case = new_case(A if routed else None)
        self.appeals = 0
        self.seen = {self.case.state}

    @rule(data=st.data(), action=st.sampled_from(ACTION_NAMES), who=st.sampled_from(PEOPLE),
          hours=st.integers(0, 60))
    def act(self, data, action: str, who: Actor, hours: int) -> None:
        """Anyone tries anything."""
        self.now += timedelta(hours=hours)
        self.attempt(action, who, data.draw(arguments(action, self.now)))

    @rule(data=st.data(), hours=st.integers(0, 30))
    def progress(self, data, hours: int) -> None:
        """Someone entitled takes one of the documented ways on (so deep states are reached)."""
        self.now += timedelta(hours=hours)
        state = self.case.state
        if state in ENDS:
            return
        action = data.draw(st.sampled_from(WAYS_ON[state]))
        # by role and scope only: the appellant is among them, so the guard against deciding one's
        # own appeal is tried too
        entitled = [p for p in PEOPLE if p.can_see(self.case) and p.has_role(*cases.ACTIONS[action].roles)]
        if not entitled:
            return
        who = data.draw(st.sampled_from(entitled))
        self.attempt(action, who, data.draw(arguments(action, self.now)))

    def attempt(self, action: str, who: Actor, args: dict) -> None:
        before = self.case
        try:
            change = cases.apply(before, action, who, args, self.now, CAL)
        except CaseError as exc:
            self.refused(before, action, who, exc)
            return
        assert (before.state, change.state) in EDGES, (before.state, action, change.state)
        assert who.can_see(before), "acted outside the scope"
        assert who.role != "auditor"
        if who.role == "handler":
            assert before.unit == who.unit
        if action in ("verify", "decide"):
            assert who.has_role("supervisor") and who.id != before.appellant
        if action == "appeal":
            self.appeals += 1
            assert self.appeals == 1, "appealed twice"
        if action == "close" and before.last_satisfaction == "dissatisfied":
            assert who.has_role("supervisor")
        self.case = after(before, change)
        assert self.case.state == change.state
        self.seen.add(self.case.state)

    def refused(self, before: Case, action: str, who: Actor, exc: CaseError) -> None:
        """A refusal says the right thing: out of scope is 404 (the case is not shown to them),
        a wrong role 403, a wrong state 409, a bad argument 422."""
        spec = cases.ACTIONS.get(action)
        if spec is None:
            assert exc.status == 422
        elif not who.can_see(before):
            assert exc.status == 404
        elif not who.has_role(*spec.roles):
            assert exc.status == 403
        elif before.state not in spec.sources:
            assert exc.status == 409
        else:
            assert exc.status in (403, 409, 422), exc

    @invariant()
    def known_state(self) -> None:
        assert self.case.state in cases.STATES

    @invariant()
    def an_end_is_final(self) -> None:
        if self.case.state in ENDS:
            assert all(cases.allowed_actions(self.case, p) == [] for p in PEOPLE)
            assert cases.reminders_due(self.case, self.now + timedelta(days=400)) == []
            assert self.case.overdue(self.now + timedelta(days=400)) == []

    @invariant()
    def every_path_can_end(self) -> None:
        steps = finish(self.case, self.now)
        assert len(steps) <= 12, steps

    @invariant()
    def allowed_actions_are_accepted_by_their_state_and_role(self) -> None:
        for person in PEOPLE:
            for name in cases.allowed_actions(self.case, person):
                spec = cases.ACTIONS[name]
                assert self.case.state in spec.sources and person.has_role(*spec.roles)
                assert person.can_see(self.case)


# No shrinking: a failing run of this machine took five minutes to shrink; its steps (at most 30)
# are printed as found, which reads well enough.
CaseWorkflow.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                          phases=[Phase.explicit, Phase.reuse, Phase.generate],
                                          suppress_health_check=[HealthCheck.too_slow])
test_case_workflow = CaseWorkflow.TestCase


def test_the_happy_path_and_an_appeal_not_adopted():
    case = new_case(None)
    assert [s for s, _ in finish(case, START)] == ["unrouted", "new", "contacted", "rectifying", "rectified",
                                                   "feedback"]
    appealed = after(case, cases.apply(new_case(A), "appeal", PEOPLE[0], {"note": "误按"}, START, CAL))
    assert (appealed.state, appealed.appellant, appealed.appeal_from) == ("appealed", "h-a", "new")
    verified = after(appealed, cases.apply(appealed, "verify", PEOPLE[3], {"method": "site_visit", "note": "现场查看"},
                                           START, CAL))
    with pytest_raises(403, "appellant"):
        cases.apply(replace(verified, appellant="sup-1"), "decide", PEOPLE[3], {"outcome": "upheld"}, START, CAL)
    decided = cases.apply(verified, "decide", PEOPLE[4], {"outcome": "not_adopted", "reason": "malicious"}, START, CAL)
    assert decided.state == "not_adopted" and decided.not_adopted
    assert after(verified, decided).overdue(START + timedelta(days=100)) == []


def test_a_dissatisfied_rater_keeps_the_case_for_a_supervisor():
    case = new_case(A)
    for action, args in (("contact", {"callback": callback(START)}), ("rectify", {"note": "n"}),
                         ("rectified", {"note": "n"}),
                         ("feedback", {"callback": callback(START, satisfaction="dissatisfied")})):
        case = after(case, cases.apply(case, action, PEOPLE[0], args, START, CAL))
    assert "close" not in cases.allowed_actions(case, PEOPLE[0])
    with pytest_raises(403, "dissatisfied"):
        cases.apply(case, "close", PEOPLE[0], {}, START, CAL)
    assert cases.apply(case, "close", PEOPLE[3], {}, START, CAL).state == "closed"
    assert cases.apply(case, "reopen", PEOPLE[0], {"note": "再整改"}, START, CAL).updates["fixed_at"] is None


def test_the_feedback_deadline_starts_at_the_fix():
    case = after(new_case(A), cases.apply(new_case(A), "contact", PEOPLE[0], {"callback": callback(START)}, START, CAL))
    fixed_at = datetime(2026, 2, 13, 9, 0, tzinfo=cases.CHINA_TZ)
    case = after(case, cases.apply(case, "explain", PEOPLE[0], {"note": "无法定依据"}, fixed_at, CAL))
    # 5 working days after 02-13: 02-14 (make-up Saturday), 24, 25, 26, 27
    assert case.feedback_due == cases.iso(datetime(2026, 2, 28, tzinfo=cases.CHINA_TZ))
    assert case.fix_kind == "explained"
    assert [d.status for d in case.deadlines(fixed_at)] == ["met", "met", "pending"]


class pytest_raises:  # noqa: N801 - a CaseError with this status whose message says `words`
    def __init__(self, status: int, words: str):
        self.status, self.words = status, words

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        assert isinstance(exc, CaseError), f"expected CaseError {self.status}, got {exc!r}"
        assert exc.status == self.status and self.words in str(exc), (exc.status, str(exc))
        return True
