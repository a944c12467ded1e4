"""The accounts' tables on both backends: hashes not passwords, taken names, the append-only audit
log, the failure counter's window, sessions ended by disabling and by a password reset."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.accounts import audit, passwords, sessions, users
from hub.accounts.model import Principal, Role, Scope
from hub.accounts.store import Accounts, AuditQuery
from hub.config import HubSettings
from tests.hub.conftest import run_sql

pytestmark = pytest.mark.anyio
SECRET = "a long enough secret"


async def test_a_user_is_stored_with_an_argon2_hash_never_the_password(store, hub_db):
    user, generated = await users.create_user(store, login="Wang", name="王芳", role="operator", region="jilin",
                                              password=SECRET, by="test")
    assert generated is None and user.login == "wang" and user.scope == Scope(region="jilin")
    rows = run_sql(hub_db, "SELECT * FROM users")
    assert len(rows) == 1
    assert not any(SECRET in str(value) for value in rows[0])
    (stored,), = run_sql(hub_db, "SELECT password_hash FROM users WHERE login = ?", ("wang",))
    assert stored.startswith("$argon2id$") and passwords.verify(stored, SECRET)


async def test_a_generated_password_is_answered_once_and_works(store, settings_for):
    user, generated = await users.create_user(store, login="li", name="李", role="auditor", by="test")
    assert generated is not None and len(generated) >= 20
    result = await sessions.sign_in(store, settings_for(), "li", generated, "10.0.0.1")
    assert result.ok and result.user == user


async def test_a_taken_login_name_is_refused_and_not_audited(store, hub_db):
    await users.create_user(store, login="wang", name="王芳", role="operator", password=SECRET, by="test")
    with pytest.raises(users.UserExists):
        await users.create_user(store, login="WANG", name="王二", role="auditor", password=SECRET, by="test")
    assert run_sql(hub_db, "SELECT COUNT(*) FROM audit_log WHERE event = 'user_created'") == [(1,)]
    assert [u.name for u in await Accounts(store).users()] == ["王芳"]


async def test_bad_fields_are_refused_with_the_reason(store):
    with pytest.raises(ValueError, match="unit"):
        await users.create_user(store, login="h1", name="H", role="handler", password=SECRET, by="test")
    with pytest.raises(ValueError, match="10 characters"):
        await users.create_user(store, login="h1", name="H", role="operator", password="short", by="test")
    with pytest.raises(ValueError):
        await users.create_user(store, login="h1", name="H", role="root", password=SECRET, by="test")
    assert await Accounts(store).users() == []


async def test_the_audit_log_refuses_updates_and_deletes(store, hub_db):
    await Accounts(store).audit("sign_in", login="wang", client="10.0.0.1")
    for sql in ("UPDATE audit_log SET login = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            run_sql(hub_db, sql)
    assert run_sql(hub_db, "SELECT login FROM audit_log") == [("wang",)]


async def test_personal_data_reads_are_audited_with_who_what_and_which(store):
    user, _ = await users.create_user(store, login="sup", name="督办", role="supervisor", password=SECRET, by="test")
    principal = Principal(user.id, user.login, user.name, str(user.role), user.scope, "session",
                          client="10.1.1.1", store=store)
    await audit.personal_data_read(principal, "rater_phone", "case:17")
    await audit.personal_data_read(principal, "rater_name", "case:18", detail={"page": "/cases/18"})
    entries = await Accounts(store).audit_entries(AuditQuery(event="personal_data_read"))
    assert [(e.login, e.role, e.client, e.what, e.record) for e in entries] == [
        ("sup", "supervisor", "10.1.1.1", "rater_name", "case:18"),
        ("sup", "supervisor", "10.1.1.1", "rater_phone", "case:17")]
    assert entries[0].detail == {"page": "/cases/18"} and entries[0].user_id == user.id
    only = await Accounts(store).audit_entries(AuditQuery(record="case:17"))
    assert [e.what for e in only] == ["rater_phone"]
    with pytest.raises(RuntimeError):  # a principal with nowhere to write may not read
        await audit.personal_data_read(Principal(None, "x", "x", "operator", Scope(), "session"), "rater_phone", "c")


async def test_the_audit_log_pages_newest_first(store):
    accounts = Accounts(store)
    for i in range(7):
        await accounts.audit("sign_in", login=f"u{i}")
    first = await accounts.audit_entries(AuditQuery(limit=3))
    second = await accounts.audit_entries(AuditQuery(limit=3, before=first[-1].id))
    last = await accounts.audit_entries(AuditQuery(limit=3, before=second[-1].id))
    assert [e.login for e in first + second + last] == [f"u{i}" for i in range(6, -1, -1)]


async def test_failures_count_within_the_window_and_start_again_after_it(store, hub_db):
    accounts = Accounts(store)
    subjects = ["login:wang", "addr:10.0.0.1"]
    for t in (1000, 2000, 3000):
        await accounts.record_failure(subjects, t, window_start_ms=0, audit={"login": "wang"})
    assert await accounts.failures(subjects, 0) == {"login:wang": (3, 1000), "addr:10.0.0.1": (3, 1000)}
    assert await accounts.failures(subjects, 1001) == {}  # the window began before: ended
    await accounts.record_failure(subjects[:1], 50_000, window_start_ms=40_000, audit={"login": "wang"})
    assert await accounts.failures(subjects, 40_000) == {"login:wang": (1, 50_000)}
    assert run_sql(hub_db, "SELECT subject FROM login_failures") == [("login:wang",)]  # ended windows go


async def test_disabling_and_a_password_reset_end_the_sessions(store, settings_for):
    settings = settings_for()
    await users.create_user(store, login="wang", name="王芳", role="operator", password=SECRET, by="test")
    accounts = Accounts(store)
    first = await sessions.sign_in(store, settings, "wang", SECRET, "10.0.0.1")
    assert await sessions.principal_for(store, settings, first.token, "10.0.0.1") is not None
    await users.set_disabled(store, "wang", True, by="test")
    assert await sessions.principal_for(store, settings, first.token, "10.0.0.1") is None
    refused = await sessions.sign_in(store, settings, "wang", SECRET, "10.0.0.1")
    assert not refused.ok and refused.message == sessions.WRONG
    await users.set_disabled(store, "wang", False, by="test")
    second = await sessions.sign_in(store, settings, "wang", SECRET, "10.0.0.1")
    assert second.ok and await accounts.session_count(second.user.id) == 1
    done = await users.reset_password(store, "wang", "another long secret", by="test")
    assert done is not None and done[1] is None
    assert await sessions.principal_for(store, settings, second.token, "10.0.0.1") is None
    assert not (await sessions.sign_in(store, settings, "wang", SECRET, "10.0.0.1")).ok
    assert (await sessions.sign_in(store, settings, "wang", "another long secret", "10.0.0.1")).ok
    events = [e.event for e in await accounts.audit_entries(AuditQuery())]
    assert events == ["sign_in", "sign_in_failed", "password_reset", "sign_in", "user_enabled", "sign_in_failed",
                      "user_disabled", "sign_in", "user_created"]


async def test_a_sign_in_replaces_the_session_the_browser_brought(store, settings_for):
    settings = settings_for()
    await users.create_user(store, login="wang", name="王芳", role="operator", password=SECRET, by="test")
    first = await sessions.sign_in(store, settings, "wang", SECRET, "10.0.0.1")
    second = await sessions.sign_in(store, settings, "wang", SECRET, "10.0.0.1", old_token=first.token)
    assert second.token != first.token
    assert await sessions.principal_for(store, settings, first.token, "10.0.0.1") is None
    principal = await sessions.principal_for(store, settings, second.token, "10.0.0.1")
    assert principal is not None and principal.role == Role.OPERATOR and principal.csrf_token


@pytest.fixture
def settings_for(hub_db):
    return lambda **values: HubSettings(**hub_db, **values)


async def test_halls_in_scope_follow_the_halls_region(store):
    from hub.accounts.scope import can_see_hall, visible_halls
    from hub.default_rules import DefaultRule
    rule = DefaultRule("calendar_days", 7)
    await store.put_region("jilin", name="吉林市", area_code=None, default_rule=rule)
    await store.put_region("xpcc", name="兵团", area_code=None, default_rule=rule)
    for hall, region in (("H1", "jilin"), ("H2", "jilin"), ("H9", "xpcc")):
        await store.put_hall(hall, region=region)

    def who(role: str = "operator", **scope: str) -> Principal:
        return Principal(1, "p", "P", role, Scope(**scope), "session", store=store)

    assert await visible_halls(who()) is None
    assert await visible_halls(who(region="jilin")) == ["H1", "H2"]
    assert await visible_halls(who(region="jilin", hall="H9")) == []
    assert await visible_halls(who(hall="H9")) == ["H9"]
    assert await can_see_hall(who(region="jilin"), "H2")
    assert not await can_see_hall(who(region="jilin"), "H9")
    assert not await can_see_hall(who(region="jilin"), "H-nowhere")  # a hall in no region
    handler = who("handler", region="jilin", unit="A")
    assert await can_see_hall(handler, "H1", unit="A") and not await can_see_hall(handler, "H1", unit="B")
    await store.put_hall("H2", region="xpcc")  # moved: out of jilin's scope from now on
    assert await visible_halls(who(region="jilin")) == ["H1"]
    assert not await can_see_hall(who(region="jilin"), "H2")


WINDOW_MS = 1000
failure_steps = st.lists(st.tuples(st.integers(0, 2 * WINDOW_MS),
                                   st.sets(st.sampled_from(["login:a", "login:b", "addr:x"]), min_size=1)),
                         min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=failure_steps)
async def test_the_failure_counts_match_a_model_of_the_window(store, steps):
    """Failures at random moments: the stored counts are always those of a window that starts at
    a subject's first failure and lasts WINDOW_MS, as a plain model computes them."""
    accounts = Accounts(store)
    tag = uuid.uuid4().hex[:8]  # one store for every example: subjects of their own
    model: dict[str, tuple[int, int]] = {}
    now = 10**12
    for advance, subjects in steps:
        now += advance
        start = now - WINDOW_MS
        for subject in sorted(subjects):
            count, first = model.get(subject, (0, now))
            model[subject] = (count + 1, first) if count and first >= start else (1, now)
        model = {k: v for k, v in model.items() if v[1] >= start}
        await accounts.record_failure([f"{s}:{tag}" for s in sorted(subjects)], now, start, {"login": tag})
        stored = await accounts.failures([f"{s}:{tag}" for s in ("login:a", "login:b", "addr:x")], start)
        assert {k.rsplit(":", 1)[0]: v for k, v in stored.items()} == model


async def test_a_hash_with_older_parameters_is_replaced_at_the_next_sign_in(store, hub_db, settings_for):
    from argon2 import PasswordHasher
    await users.create_user(store, login="wang", name="王芳", role="operator", password=SECRET, by="test")
    older = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash(SECRET)
    run_sql(hub_db, "UPDATE users SET password_hash = ? WHERE login = 'wang'", (older,))
    assert (await sessions.sign_in(store, settings_for(), "wang", SECRET, "10.0.0.1")).ok
    (stored,), = run_sql(hub_db, "SELECT password_hash FROM users WHERE login = 'wang'")
    assert stored != older and stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await sessions.sign_in(store, settings_for(), "wang", SECRET, "10.0.0.1")).ok
    assert [e.event for e in await Accounts(store).audit_entries(AuditQuery())][:2] == ["sign_in", "sign_in"]
