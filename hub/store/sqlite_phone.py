"""The phone page's writes on SQLite (hub/store/phone_sql.py has the SQL both backends share).
A mixin of SQLiteStore: each write is one transaction on the writer's thread (`_write`); SQLite
has one writer, so what a submission reads cannot change before it commits."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from collections.abc import Callable
from typing import Any

from . import cases_sql, phone_sql, sqlite_rollups, tables

_Q = {name: getattr(phone_sql, name).replace("{p}", "?") for name in (
    "STATE_RECORDS_SQL", "STATE_COUNTER_SQL", "STATE_DEFAULTED_SQL", "STATE_SERVICE_SQL", "INSERT_PHONE_SQL",
    "INSERT_CONTACT_SQL", "COUNT_SQL", "STALE_CONTACTS_SQL", "RESEAL_SQL")}


def _state(db: sqlite3.Connection, hall: str, service: str) -> phone_sql.PhoneState:
    key = (hall, service)
    return phone_sql.state(hall, service, *(db.execute(_Q[name], key).fetchall() for name in (
        "STATE_RECORDS_SQL", "STATE_COUNTER_SQL", "STATE_DEFAULTED_SQL", "STATE_SERVICE_SQL")))


class SQLitePhone:
    """Phone page writes for SQLiteStore (which provides `_write` and `_append_ledger`)."""

    _write: Callable[..., Any]
    _append_ledger: Callable[..., None]
    calendar_for_cases: Callable[[], Any]

    async def phone_submit(self, submission: phone_sql.PhoneSubmission) -> phone_sql.PhoneOutcome:
        calendar = self.calendar_for_cases()

        def work(db: sqlite3.Connection) -> phone_sql.PhoneOutcome:
            now = tables.now()
            before = _state(db, submission.hall, submission.service)
            outcome, write = phone_sql.plan(submission, before, now)
            if write is not None:
                db.execute(_Q["INSERT_PHONE_SQL"], write.row)
                if write.contact is not None:
                    db.execute(_Q["INSERT_CONTACT_SQL"], write.contact)
                if write.deltas is not None:
                    sqlite_rollups.write_deltas(db, write.deltas)
                self._append_ledger(db, [phone_sql.pending(write.row)], now)
                cases_sql.run_sqlite(db, cases_sql.open_cases(  # a bad one opens a case (docs/cases.md)
                    cases_sql.phone_sources(write.row, before), calendar, datetime.fromisoformat(now)))
            return phone_sql.PhoneOutcome(outcome, _state(db, submission.hall, submission.service))
        return await self._write(work)

    async def phone_count(self, day: str, hall: str, what: str) -> None:
        await self._write(lambda db: db.execute(_Q["COUNT_SQL"], (day, hall, what)))


    async def phone_reseal(self, reseal: Any, current: str, limit: int = 500) -> int:
        def work(db: sqlite3.Connection) -> int:
            rows = db.execute(_Q["STALE_CONTACTS_SQL"], (current, limit)).fetchall()
            now = tables.now()
            for row in rows:
                name_sealed, phone_sealed = reseal(tuple(row))
                hall, service, kind, _, _, old_key, _ = row
                db.execute(_Q["RESEAL_SQL"], (name_sealed, phone_sealed, current, now, hall, service, kind, old_key))
            return len(rows)
        return await self._write(work)
