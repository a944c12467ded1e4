"""One rating per service across channels (hub/phone/rules.py) and the form's checks
(hub/phone/form.py), as pure functions: what the page offers, what a post does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.phone import rules
from hub.phone.form import FOLLOWUP, SUPPLEMENTARY, TAGS, parse
from hub.phone.rules import CounterRating, PhoneRecord, PhoneState, ServiceInfo, decide, page_mode

NOW = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
DUE = NOW + timedelta(days=3)
COUNTER = CounterRating("D07:1", 4, "2026-11-21T09:30:07+08:00")
SUPP = PhoneRecord(SUPPLEMENTARY, 2, "n-supp", "2026-11-21T01:40:00.000+00:00")
FOLLOW = PhoneRecord(FOLLOWUP, None, "n-follow", "2026-11-21T01:50:00.000+00:00")


def state(*records, counter=None, defaulted=False, outcome="finished"):
    info = ServiceInfo("A023", "7", "S1", None, "M1", None, "U1", "2026-11-21T09:30:00+08:00", outcome)
    return PhoneState("H1", "svc", {r.kind: r for r in records}, counter, defaulted, info)


@pytest.mark.parametrize(("st", "due", "mode"), [
    (state(), DUE, rules.OFFER_SUPPLEMENTARY),
    (state(), None, rules.OFFER_SUPPLEMENTARY),  # no deadline known: open while the token lasts
    (state(), NOW, rules.CLOSED),  # `due` is the first instant of the default
    (state(), NOW + timedelta(microseconds=1), rules.OFFER_SUPPLEMENTARY),
    (state(defaulted=True), DUE, rules.CLOSED),
    (state(outcome="no_show"), DUE, rules.CLOSED),
    (state(counter=COUNTER), NOW, rules.OFFER_FOLLOWUP),  # the deadline closes only the supplementary rating
    (state(SUPP), DUE, rules.OFFER_FOLLOWUP),
    (state(SUPP, FOLLOW), DUE, rules.DONE),
    (state(FOLLOW, counter=COUNTER), DUE, rules.DONE),
    (state(SUPP, counter=COUNTER), DUE, rules.DONE),  # the replaced supplementary rating is the follow-up
    (state(counter=COUNTER, defaulted=True), DUE, rules.OFFER_FOLLOWUP),  # a late counter rating after a default
])
def test_what_the_page_offers(st, due, mode):
    assert page_mode(st, NOW, due) == mode


@pytest.mark.parametrize(("st", "kind", "nonce", "outcome"), [
    (state(), SUPPLEMENTARY, "n1", rules.STORE),
    (state(), FOLLOWUP, "n1", rules.NO_OVERALL),
    (state(defaulted=True), SUPPLEMENTARY, "n1", rules.TOO_LATE),
    (state(counter=COUNTER), SUPPLEMENTARY, "n1", rules.OVERALL_EXISTS),
    (state(SUPP), SUPPLEMENTARY, "n1", rules.OVERALL_EXISTS),
    (state(SUPP), SUPPLEMENTARY, "n-supp", rules.REPEAT),  # the same form again: a double tap
    (state(SUPP, FOLLOW), FOLLOWUP, "n-supp", rules.REPEAT),
    (state(counter=COUNTER), FOLLOWUP, "n1", rules.STORE),
    (state(SUPP), FOLLOWUP, "n1", rules.STORE),
    (state(FOLLOW, counter=COUNTER), FOLLOWUP, "n2", rules.ALREADY),
    (state(FOLLOW, counter=COUNTER), FOLLOWUP, "n-follow", rules.REPEAT),
    (state(SUPP, counter=COUNTER), FOLLOWUP, "n2", rules.ALREADY),
])
def test_what_a_post_does(st, kind, nonce, outcome):
    assert decide(st, kind, nonce) == outcome


def form(**fields):
    return {name: value if isinstance(value, list) else [value] for name, value in fields.items()}


def test_a_supplementary_form_needs_an_overall_rating_and_checks_every_field():
    sub, errors = parse(SUPPLEMENTARY, form(score="2", business="1", service="", tag=["long_wait", "friendly"],
                                            comment="  等了\r\n很久 ", name=" 张三 ", phone="138 0013 8000"), True)
    assert errors == {}
    assert (sub.score, sub.business, sub.service, sub.tags, sub.comment, sub.name, sub.phone) == (
        2, 1, None, ("friendly", "long_wait"), "等了\n很久", "张三", "13800138000")
    assert parse(SUPPLEMENTARY, form(), True) == (None, {"score": "error.score_required"})
    _, errors = parse(SUPPLEMENTARY, form(score="6", business="x", tag="nope", comment="a\x00b",
                                          name="12", phone="110"), True)
    assert errors == {"score": "error.level", "business": "error.level", "tag": "error.tag",
                      "comment": "error.comment_chars", "name": "error.name", "phone": "error.phone"}
    assert parse(SUPPLEMENTARY, form(score=["5", "1"]), True)[1] == {"score": "error.repeated"}
    assert parse(SUPPLEMENTARY, form(score="5", comment="字" * 501), True)[1] == {"comment": "error.comment_long"}
    assert parse(SUPPLEMENTARY, form(score="5", comment="字" * 500), True)[1] == {}
    assert parse(SUPPLEMENTARY, form(score="5", comment="x" * 5000), True)[1] == {"comment": "error.too_long"}
    assert parse(SUPPLEMENTARY, form(score="5", phone="13800138000"), False)[1] == {"phone": "error.contact_off"}
    assert parse(SUPPLEMENTARY, form(score="5", tag=list(TAGS)), True)[0].tags == TAGS


def test_a_followup_never_carries_an_overall_rating_and_is_not_empty():
    sub, errors = parse(FOLLOWUP, form(score="1", comment="补充一句"), True)
    assert errors == {} and sub.score is None and sub.kind == FOLLOWUP
    assert parse(FOLLOWUP, form(score="1"), True)[1] == {"form": "error.followup_empty"}
    assert parse(FOLLOWUP, form(business="", service="", comment="  "), True)[1] == {"form": "error.followup_empty"}
    assert parse(FOLLOWUP, form(service="5"), True)[0].service == 5


def test_post_limits_per_service_and_per_address_over_a_sliding_window():
    from hub.phone.limits import POSTS_PER_ADDRESS, POSTS_PER_TOKEN, WINDOW_S, PhoneLimits, SlidingWindow
    now = [0.0]
    limits = PhoneLimits(clock=lambda: now[0])
    assert all(limits.post(("H1", "svc"), "1.2.3.4") for _ in range(POSTS_PER_TOKEN))
    assert not limits.post(("H1", "svc"), "5.6.7.8")  # the service's limit, from any address
    assert limits.post(("H1", "other"), "5.6.7.8")
    for i in range(POSTS_PER_ADDRESS - POSTS_PER_TOKEN):  # one address posting for many services
        assert limits.post(("H1", f"s{i}"), "1.2.3.4")
    assert not limits.post(("H1", "fresh"), "1.2.3.4")
    now[0] = WINDOW_S + 1  # the window slides: both may post again
    assert limits.post(("H1", "svc"), "1.2.3.4")
    window = SlidingWindow(1, 10.0, clock=lambda: now[0], max_keys=3)
    for key in "abcd":
        assert window.hit(key)
    assert window.hit("a")  # forgotten (only 3 keys are kept): memory stays bounded
    assert not window.hit("d")
