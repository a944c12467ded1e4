"""The phone page's records in the real databases (both backends), through the store: unmasked
reads only for a principal who may, in scope, and always in the audit log, key rotation, the default job, and a
phone rating and a counter rating of one service stored at the same moment."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone

import pytest

from hub.phone import rules
from hub.accounts.model import Principal, Scope
from hub.accounts.store import Accounts, AuditQuery
from hub.phone.contacts import NotAllowed, masked, read_contact, rekey
from hub.phone.crypto import Keyring, SealError, aad
from hub.phone.form import FOLLOWUP, SUPPLEMENTARY, Submission
from hub.stats import StatsQuery
from hub.store.phone_sql import PhoneSubmission
from hub.workdays import WorkCalendar
from tests.fixtures.hub import binding, rating_item, service_item

from .test_defaults_store import set_regions
from .test_store import H1, rated, setup_devices

pytestmark = pytest.mark.anyio

CST = timezone(timedelta(hours=8))
K1, K2 = bytes([1]) * 32, bytes([2]) * 32


def supplementary(score: int = 2, **fields) -> Submission:
    values = {"kind": SUPPLEMENTARY, "score": score, "business": None, "service": None, "tags": (),
              "comment": None, "name": None, "phone": None, **fields}
    return Submission(**values)


async def submit(store, svc: str, form: Submission, nonce: str = "n1", ring: Keyring | None = None):
    contact = None
    if ring is not None and form.has_contact:
        contact = (ring.seal(form.name, aad(H1, svc, form.kind, "name")) if form.name else None,
                   ring.seal(form.phone, aad(H1, svc, form.kind, "phone")) if form.phone else None, ring.current)
    return await store.phone_submit(PhoneSubmission(H1, svc, "1", 2**31, form, "zh-Hans", nonce, contact))


def person(store, role: str, login: str = "p1", **scope) -> Principal:
    return Principal(7, login, login, role, Scope(**scope), "session", client="10.0.0.9", store=store)


async def audit_entries(store):
    return await Accounts(store).audit_entries(AuditQuery(event="personal_data_read"))


async def test_unmasked_reads_need_an_allowed_role_in_scope_and_a_reason_and_are_audited(store, hub_db):
    set_regions(hub_db)  # H1 in jilin
    ring = Keyring.of(("k1", K1))
    await store.ingest(H1, [service_item("svc1")])  # unit 市市场监督管理局
    stored = await submit(store, "svc1", supplementary(1, name="张三", phone="13812345678"), ring=ring)
    assert stored.outcome == rules.STORE
    (rating,) = await store.phone_ratings()
    assert masked(ring, rating) == masked(ring, rating) and masked(ring, rating).phone == "138****5678"
    refused = [person(store, "handler", unit="市市场监督管理局"), person(store, "auditor"),
               person(store, "operator", region="dehong"), person(store, "supervisor", hall="H2"),
               person(store, "supervisor", unit="市税务局")]
    for who in refused:
        with pytest.raises(NotAllowed):
            await read_contact(store, ring, hall=H1, service="svc1", kind=SUPPLEMENTARY, principal=who,
                               reason="callback")
    with pytest.raises(NotAllowed, match="reason"):
        await read_contact(store, ring, hall=H1, service="svc1", kind=SUPPLEMENTARY,
                           principal=person(store, "operator"), reason="  ")
    assert await audit_entries(store) == []  # refused before anything was read
    contact = await read_contact(store, ring, hall=H1, service="svc1", kind=SUPPLEMENTARY,
                                 principal=person(store, "operator", login="op1", region="jilin"), reason="差评回访")
    assert (contact.name, contact.phone) == ("张三", "13812345678")
    contact = await read_contact(store, ring, hall=H1, service="svc1", kind=SUPPLEMENTARY,
                                 principal=person(store, "supervisor", login="sv1", unit="市市场监督管理局"),
                                 reason="申诉核实")
    assert contact.phone == "13812345678"
    assert await read_contact(store, ring, hall=H1, service="nothing", kind=SUPPLEMENTARY,
                              principal=person(store, "operator"), reason="x") is None
    entries = await audit_entries(store)
    assert [(e.login, e.role, e.what, e.record, e.detail, e.client) for e in entries] == [
        ("sv1", "supervisor", "rater_contact", "phone_rating:H1/svc1/supplementary", {"reason": "申诉核实"}, "10.0.0.9"),
        ("op1", "operator", "rater_contact", "phone_rating:H1/svc1/supplementary", {"reason": "差评回访"}, "10.0.0.9")]


async def test_rotation_seal_again_with_the_new_key_then_drop_the_old(store):
    old = Keyring.of(("k1", K1))
    for i in range(7):
        await submit(store, f"svc{i}", supplementary(name="李四", phone=f"1390000000{i}"), ring=old)
    await submit(store, "svc-anon", supplementary())  # no contact: nothing to seal
    assert await store.phone_contact_keys() == {"k1": 7}
    rotated = Keyring.of(("k2", K2), ("k1", K1))
    assert await rekey(store, rotated, page=3) == 7
    assert await store.phone_contact_keys() == {"k2": 7}
    assert await rekey(store, rotated) == 0  # idempotent
    new_only = Keyring.of(("k2", K2))
    contact = await read_contact(store, new_only, hall=H1, service="svc3", kind=SUPPLEMENTARY,
                                 principal=person(store, "operator"), reason="check")
    assert contact.phone == "13900000003"
    assert (await store.verify_ledger()).ok  # sealed contacts are outside the ledger: rotation changes no record
    with pytest.raises(SealError):
        await read_contact(store, old, hall=H1, service="svc3", kind=SUPPLEMENTARY,
                           principal=person(store, "operator"), reason="check")


async def test_the_default_job_never_defaults_a_phone_rated_service(store, hub_db):
    set_regions(hub_db)  # H1: 7 calendar days
    finished = "2026-11-20T10:00:00+08:00"
    await store.ingest(H1, [service_item("PHONE", finished_at=finished), service_item("NONE", finished_at=finished),
                            service_item("FOLLOW", finished_at=finished)])
    assert (await submit(store, "PHONE", supplementary(4))).outcome == rules.STORE
    later = datetime(2026, 11, 28, tzinfo=CST)
    result = await store.run_defaults(WorkCalendar.load(), now=later)
    assert result.applied == 2
    assert sorted(d.service for d in await store.list_defaults()) == ["FOLLOW", "NONE"]
    # a follow-up form for a defaulted service with no overall rating is not stored
    follow = Submission(FOLLOWUP, None, 5, None, (), None, None, None)
    assert (await submit(store, "FOLLOW", follow)).outcome == rules.NO_OVERALL
    assert (await submit(store, "NONE", supplementary(5))).outcome == rules.TOO_LATE
    (row,) = await store.stats(StatsQuery(date(2026, 11, 20), date(2026, 11, 20)))
    assert (row.figures.services, row.figures.rated, row.figures.defaulted, row.figures.rated_or_default) == (3, 1, 2, 3)


async def test_phone_and_counter_ratings_of_one_service_at_the_same_moment(store):
    """Many services, each rated on the phone and at the counter at once: each ends with the
    counter's rating counted and the phone one not, and the rollups equal a rebuild (PostgreSQL
    without the writers' lock in phone_submit counts some services twice)."""
    await setup_devices(store, "D1")
    now = datetime.now(CST)
    services = [f"svc{i:03}" for i in range(24)]
    await store.ingest(H1, [service_item(s, finished_at=now.isoformat(timespec="seconds")) for s in services])

    async def counter(i: int, svc: str):
        return await store.ingest(H1, [rating_item(rated("D1", i + 1, 4, sess=svc), binding(service=svc),
                                                   received_at=now.isoformat(timespec="seconds"))])

    results = await asyncio.gather(*(coro for i, svc in enumerate(services)
                                     for coro in (submit(store, svc, supplementary(1), nonce=f"n{i}"),
                                                  counter(i, svc))))
    assert all(r.outcome in (rules.STORE, rules.OVERALL_EXISTS) for r in results[0::2])
    phone = await store.phone_ratings(limit=1000)
    assert all(not r.counted and r.overall == 4 for r in phone)
    day = now.date()
    query = StatsQuery(day, day)
    (before,) = await store.stats(query)
    assert (before.figures.ratings, before.figures.scores[3], before.figures.scores[0],
            before.figures.rated, before.figures.services) == (24, 24, 0, 24, 24)
    await store.rebuild_stats()
    (after,) = await store.stats(query)
    assert after.figures == before.figures
    assert (await store.verify_ledger()).ok


async def test_the_command_line_makes_keys_and_seals_again(store, hub_db, tmp_path, capsys):
    from hub.phone.__main__ import main
    assert main(["keygen"]) == 0
    line = capsys.readouterr().out.strip()
    kid, key_hex = line.split()
    assert len(bytes.fromhex(key_hex)) == 32
    await submit(store, "svc-cli", supplementary(name="王五"), ring=Keyring.of(("k1", K1)))
    keys = tmp_path / "keys"
    keys.write_text(f"{line}\nk1 {K1.hex()}\n")
    db = ["--db", str(hub_db["db_path"])] if not hub_db.get("db_url") else ["--db-url", hub_db["db_url"]]
    assert await asyncio.to_thread(main, ["rekey", "--key-file", str(keys), *db]) == 0
    assert f"sealed again with {kid}: 1" in capsys.readouterr().out
    assert await store.phone_contact_keys() == {kid: 1}
    keys.write_text(f"k9 {K2.hex()}\n")
    await submit(store, "svc-cli-2", supplementary(name="赵六"), ring=Keyring.of(("k1", K1)))
    assert await asyncio.to_thread(main, ["rekey", "--key-file", str(keys), *db]) == 1
    keys.write_text("nonsense\n")
    assert await asyncio.to_thread(main, ["rekey", "--key-file", str(keys), *db]) == 2


async def test_sqlite_the_migration_widens_the_ledgers_check_in_place(tmp_path):
    """The migration lets the ledger hold kind `phone` by rewriting the stored CHECK (no copy of
    the table); entries already there stay, the database checks whole, other kinds stay refused."""
    import sqlite3

    from hub.migrations import MIGRATIONS, SCHEMA_VERSION_TABLE, SQLITE_MIGRATIONS
    from hub.store import SQLiteStore
    path = tmp_path / "hub.sqlite3"
    phone = next(i for i, m in enumerate(MIGRATIONS) if "phone_ratings" in m.sqlite)
    with sqlite3.connect(path) as db:  # a hub of the version before the phone page's
        db.executescript(SCHEMA_VERSION_TABLE)
        for version, script in enumerate(SQLITE_MIGRATIONS[:phone], start=1):
            db.executescript(script)
            db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 'x')", (version,))
        db.executemany("INSERT INTO ledger (seq, kind, hall, ref, digest, hash, at) VALUES (?, 'service', 'H0', ?, "
                       "'d', 'h', 'x')", [(i, f"s{i}") for i in range(1, 1001)])
        db.execute("UPDATE ledger_head SET seq = 1000, hash = 'h' WHERE id = 1")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO ledger VALUES (5000, 'phone', 'H0', 'x', 'd', 'h', 'x')")
    async with SQLiteStore(path) as store:
        assert (await submit(store, "svc-migrated", supplementary(3))).outcome == rules.STORE
        assert [(e.seq, e.kind) for e in await store.ledger_entries(999, 10)] == [(1000, "service"), (1001, "phone")]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (sql,), = db.execute("SELECT sql FROM sqlite_schema WHERE name = 'ledger'").fetchall()
        assert "CHECK (kind IN ('rating', 'service', 'default', 'phone'" in sql
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO ledger VALUES (5000, 'bogus', 'H0', 'x', 'd', 'h', 'x')")
        assert db.execute("SELECT COUNT(*) FROM ledger").fetchall() == [(1001,)]
