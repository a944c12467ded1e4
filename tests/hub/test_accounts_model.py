"""Roles, scopes and the pure rules of accounts: `can_see`, login names, passwords, session expiry,
the throttle's arithmetic. Property-based where the rule is a formula."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.accounts import passwords
from hub.accounts.model import (ADMIN, Principal, Role, Scope, admin_principal, can_see, check_password,
                                check_scope, normalize_login)
from hub.accounts.sessions import session_alive, throttle_wait
from hub.config import HubSettings
from hub.web.pages import safe_next

parts = st.one_of(st.none(), st.sampled_from(["jilin", "xpcc", "H1", "H2", "市市场监督管理局", "税务局"]))
scopes = st.builds(Scope, parts, parts, parts)
roles = st.sampled_from(list(Role))


def person(role: str, scope: Scope) -> Principal:
    return Principal(1, "p", "P", role, scope, "session")


@given(roles, scopes, parts, parts, parts)
def test_a_record_is_in_scope_exactly_when_every_set_part_matches(role, scope, region, hall, unit):
    expected = all(mine is None or mine == theirs
                   for mine, theirs in ((scope.region, region), (scope.hall, hall), (scope.unit, unit)))
    assert can_see(person(role, scope), region=region, hall=hall, unit=unit) is expected


@given(parts, parts, parts)
def test_the_admin_token_and_a_whole_hub_scope_see_everything(region, hall, unit):
    assert can_see(admin_principal(), region=region, hall=hall, unit=unit)
    assert can_see(person(Role.OPERATOR, Scope()), region=region, hall=hall, unit=unit)


def test_a_handler_of_unit_a_sees_unit_a_only_and_nothing_without_a_unit():
    handler = person(Role.HANDLER, Scope(unit="A"))
    assert can_see(handler, hall="H1", unit="A")
    assert not can_see(handler, hall="H1", unit="B")
    assert not can_see(handler, hall="H1")  # a device: no unit
    assert handler.scope_filter() == {"unit": "A"}
    assert not handler.may_unmask


def test_roles_and_the_admin_token():
    op = person(Role.OPERATOR, Scope(region="jilin"))
    assert op.has_role(Role.OPERATOR, Role.SUPERVISOR) and not op.has_role(Role.AUDITOR)
    assert admin_principal().has_role(Role.AUDITOR) and admin_principal().role == ADMIN
    assert admin_principal().scope_filter() == {}
    assert op.scope_filter() == {"region": "jilin"}


def test_a_handler_needs_a_unit():
    with pytest.raises(ValueError, match="unit"):
        check_scope(Role.HANDLER, Scope(hall="H1"))
    assert check_scope(Role.OPERATOR, Scope()) == Scope()


@pytest.mark.parametrize("given_name, stored", [("Wang.Fang", "wang.fang"), (" ops@jl ", "ops@jl"),
                                                ("ＡＢＣ", "abc"), ("S0107", "s0107")])
def test_login_names_are_normalized(given_name, stored):
    assert normalize_login(given_name) == stored


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "a/b", "a\x00b", "<script>", "王芳"])
def test_bad_login_names_are_refused(bad):
    with pytest.raises(ValueError):
        normalize_login(bad)


def test_password_rules():
    assert check_password("0123456789") == "0123456789"
    for bad in ("short", "x" * 1025, "0123456789\x00", "0123456789\ud800"):
        with pytest.raises(ValueError):
            check_password(bad)


def test_passwords_are_argon2id_salted_and_verified():
    first, second = passwords.hash_password("correct horse"), passwords.hash_password("correct horse")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and first != second  # a salt of its own each time
    assert "correct horse" not in first
    assert passwords.verify(first, "correct horse") and not passwords.verify(first, "correct horsE")
    assert not passwords.verify("not a hash", "correct horse")
    assert not passwords.needs_rehash(first)
    from argon2 import PasswordHasher
    older = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash("correct horse")
    assert passwords.verify(older, "correct horse") and passwords.needs_rehash(older)


ms = st.integers(min_value=0, max_value=10**13)


@given(ms, st.integers(0, 10**8), st.integers(0, 10**8), st.integers(0, 10**8), st.integers(1, 10**5),
       st.integers(1, 10**5))
def test_a_session_ends_at_its_idle_or_absolute_limit_and_stays_ended(created, used_after, now_after, later,
                                                                      idle_s, max_s):
    seen = created + used_after
    now = seen + now_after
    assert session_alive(created, created, created, idle_s, max_s)  # right after signing in
    alive = session_alive(created, seen, now, idle_s, max_s)
    if now >= created + max_s * 1000 or now >= seen + idle_s * 1000:
        assert not alive
    if not alive:  # an ended session never comes back by waiting
        assert not session_alive(created, seen, now + later, idle_s, max_s)
    else:  # using it moves only the idle limit, never the absolute one
        assert session_alive(created, now, now, idle_s, max_s)
        assert not session_alive(created, now, created + max_s * 1000, idle_s, max_s)


@given(st.integers(0, 20), st.integers(0, 50), st.integers(0, 900_000))
def test_the_throttle_waits_only_past_a_limit_until_the_window_ends(by_name, by_address, elapsed):
    settings = HubSettings(login_max_failures=5, login_max_failures_address=30, login_window_s=900)
    now = 10**12
    first = now - elapsed
    failures = {"login:wang": (by_name, first), "addr:10.0.0.1": (by_address, first)}
    wait = throttle_wait(failures, "wang", "10.0.0.1", now, settings)
    if by_name >= 5 or by_address >= 30:
        assert wait == pytest.approx((900_000 - elapsed) / 1000)
    else:
        assert wait == 0
    assert throttle_wait({}, "wang", "10.0.0.1", now, settings) == 0


def test_cookies_are_secure_behind_https():
    assert not HubSettings().secure_cookies
    assert HubSettings(public_url="https://hub.example.cn").secure_cookies
    assert HubSettings(cookie_secure=True).secure_cookies
    assert not HubSettings(public_url="https://hub.example.cn", cookie_secure=False).secure_cookies


@given(st.text(alphabet=st.sampled_from("/\\\t\n\r:.@%?#aZ09 \x00\x7f")) | st.text())
def test_after_sign_in_the_hub_never_sends_anyone_elsewhere(value):
    target = safe_next(value)
    assert target in (value, "/")
    as_browser_reads_it = re.sub(r"[\t\n\r]", "", target).replace("\\", "/")
    assert as_browser_reads_it.startswith("/") and not as_browser_reads_it.startswith("//")


@pytest.mark.parametrize("outside", ["https://evil.example", "//evil.example", "/\\evil.example",
                                     "/\t/evil.example", "\\evil.example", "evil", ""])
def test_next_paths_that_leave_the_hub_go_home(outside):
    assert safe_next(outside) == "/"
    assert safe_next("/audit?event=sign_in") == "/audit?event=sign_in"
