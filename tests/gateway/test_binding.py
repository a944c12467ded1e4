"""The binding rules as pure functions (docs/gateway.md, "Binding")."""

from __future__ import annotations

from gateway.binding import bind_local, bind_prompted, service_in_progress
from gateway.models import ServiceRow

T0 = 1_800_000_000.0
TOL = 120.0


def svc(id: str, *, opened: float = T0, state: str = "open", started: bool = True,
        outcome: str | None = None, ended: float | None = None, serving: float | None = None,
        rated_by: str | None = None, session_device: str | None = "D07") -> ServiceRow:
    return ServiceRow(id=id, ticket="A" + id, window="7", opened_rx=opened, state=state,
                      started_at="2026-11-21T09:00:00+08:00" if started else None,
                      serving_rx=(serving if serving is not None else opened) if started else None,
                      outcome=outcome, ended_rx=ended, rated_by=rated_by,
                      session_device=session_device)


def test_prompted_rating_binds_to_its_session_once():
    s = svc("s1")
    assert bind_prompted(s, "D07").service is s
    assert bind_prompted(svc("s1", rated_by="D07:1"), "D07").unbound_reason == "session_already_rated"
    assert bind_prompted(None, "D07").unbound_reason == "unknown_session"


def test_a_session_counts_only_on_the_device_it_was_opened_on():
    assert bind_prompted(svc("s1"), "D08").unbound_reason == "unknown_session"
    never_prompted = svc("s2", session_device=None)  # no device at the window when it ended
    assert bind_prompted(never_prompted, "D07").unbound_reason == "unknown_session"


def test_local_rating_binds_to_the_open_service_past_called():
    assert bind_local([svc("a", opened=T0), svc("b", opened=T0 + 5)], T0 + 10, TOL).service.id == "b"
    called_only = svc("c", started=False)
    assert bind_local([called_only], T0 + 10, TOL).unbound_reason == "no_service_in_progress"


def test_local_rating_binds_to_a_service_finished_within_the_tolerance():
    done = svc("f", state="ended", outcome="finished", ended=T0)
    assert bind_local([done], T0 + TOL, TOL).service is done
    assert bind_local([done], T0 + TOL + 1, TOL).unbound_reason == "no_service_in_progress"
    # finished just after the gateway received the rating: it was in progress then
    assert bind_local([done], T0 - 1, TOL).service is done


def test_the_service_put_in_service_last_wins_and_no_show_never_binds():
    done = svc("f", state="ended", outcome="finished", ended=T0)
    now = svc("o", opened=T0 + 1)
    assert service_in_progress([done, now], T0 + 2, TOL) is now
    no_show = svc("n", state="ended", outcome="no_show", ended=T0)
    assert service_in_progress([no_show], T0 + 1, TOL) is None


def test_a_ticket_started_again_wins_over_one_started_in_between():
    first = svc("a", opened=T0, serving=T0 + 20)  # called first, started last
    second = svc("b", opened=T0 + 5, serving=T0 + 10)
    assert service_in_progress([first, second], T0 + 30, TOL) is first


def test_an_open_service_never_finished_loses_to_the_next_one_served_and_finished():
    stale = svc("z", opened=T0 - 86400)  # its `finished` never came
    done = svc("f", opened=T0, state="ended", outcome="finished", ended=T0 + 60)
    assert service_in_progress([stale, done], T0 + 90, TOL) is done
    assert service_in_progress([stale, done], T0 + 60 + TOL + 1, TOL) is stale


def test_called_only_or_ended_by_a_replayed_event_is_no_candidate():
    called = svc("c", started=False)
    replayed = svc("r", state="ended", outcome="finished", ended=None)
    assert service_in_progress([called, replayed], T0 + 1, TOL) is None


def test_local_rating_for_an_already_rated_service_is_unbound():
    done = svc("f", state="ended", outcome="finished", ended=T0, rated_by="D07:3")
    assert bind_local([done], T0 + 1, TOL).unbound_reason == "session_already_rated"


def test_ingest_binding_carries_the_service_fields():
    s = svc("s1")
    s.staff_id, s.matter_code, s.case_no, s.unit = "S1", "M1", "C1", "U1"
    assert bind_prompted(s, "D07").ingest_binding() == {
        "service": "s1", "ticket": "As1", "window": "7", "staff_id": "S1", "matter_code": "M1",
        "case_no": "C1", "unit": "U1"}
