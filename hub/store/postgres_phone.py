"""The phone page's writes on PostgreSQL (hub/store/phone_sql.py has the SQL both backends share).
A mixin of PostgresStore. A submission first takes the writers' lock (the ledger head row,
postgres_rollups.lock_writers), as ingest and the default job do before they write ratings and
defaults: a counter rating committed before it is seen by it, one committed after it sees it
(its statistics take the phone rating's score out), and two submissions for one service run one
after the other."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from . import cases_sql, phone_sql, postgres_rollups, tables

_Q = {name: getattr(phone_sql, name).replace("{p}", "%s") for name in (
    "STATE_RECORDS_SQL", "STATE_COUNTER_SQL", "STATE_DEFAULTED_SQL", "STATE_SERVICE_SQL", "INSERT_PHONE_SQL",
    "INSERT_CONTACT_SQL", "COUNT_SQL", "STALE_CONTACTS_SQL", "RESEAL_SQL")}


async def _state(conn: AsyncConnection, hall: str, service: str) -> phone_sql.PhoneState:
    key = (hall, service)
    rows = [await (await conn.execute(_Q[name], key)).fetchall() for name in (
        "STATE_RECORDS_SQL", "STATE_COUNTER_SQL", "STATE_DEFAULTED_SQL", "STATE_SERVICE_SQL")]
    return phone_sql.state(hall, service, *rows)


class PostgresPhone:
    """Phone page writes for PostgresStore (which provides `_transaction` and `_append_ledger`)."""

    _transaction: Callable[..., Any]
    _append_ledger: Callable[..., Any]
    calendar_for_cases: Callable[[], Any]

    async def phone_submit(self, submission: phone_sql.PhoneSubmission) -> phone_sql.PhoneOutcome:
        async with self._transaction() as conn:
            await postgres_rollups.lock_writers(conn)
            now = tables.now()
            before = await _state(conn, submission.hall, submission.service)
            outcome, write = phone_sql.plan(submission, before, now)
            if write is not None:
                await conn.execute(_Q["INSERT_PHONE_SQL"], write.row)
                if write.contact is not None:
                    await conn.execute(_Q["INSERT_CONTACT_SQL"], write.contact)
                if write.deltas is not None:
                    await postgres_rollups.write_deltas(conn, write.deltas)
                await self._append_ledger(conn, [phone_sql.pending(write.row)], now)
                await cases_sql.run_pg(conn, cases_sql.open_cases(  # a bad one opens a case (docs/cases.md)
                    cases_sql.phone_sources(write.row, before), self.calendar_for_cases(),
                    datetime.fromisoformat(now)))
            return phone_sql.PhoneOutcome(outcome, await _state(conn, submission.hall, submission.service))

    async def phone_count(self, day: str, hall: str, what: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(_Q["COUNT_SQL"], (day, hall, what))


    async def phone_reseal(self, reseal: Any, current: str, limit: int = 500) -> int:
        async with self._transaction() as conn:
            rows = await (await conn.execute(_Q["STALE_CONTACTS_SQL"] + " FOR UPDATE", (current, limit))).fetchall()
            now = tables.now()
            for row in rows:
                name_sealed, phone_sealed = reseal(tuple(row))
                hall, service, kind, _, _, old_key, _ = row
                await conn.execute(_Q["RESEAL_SQL"], (name_sealed, phone_sealed, current, now, hall, service,
                                                      kind, old_key))
        return len(rows)
