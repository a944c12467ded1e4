"""The statistics rollups on PostgreSQL (hub/store/rollups.py has what both backends share).

Counting a batch needs what was stored before it (was this service rated already? has it come?),
and two transactions could each miss the other's rows: a rating bound to service S and S itself,
committed side by side, would leave S counted as unrated. So every writer of ratings, services,
defaults and rollups first locks the ledger head row (`lock_writers`), which the ledger needs
locked by each of them anyway (hub/store/postgres.py `_append_ledger`): they run one after the
other, and each one's look-ups see every row committed before it. Taken after the device locks and
before any insert, in ingest and in the default job alike, so no two wait on each other in a circle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from psycopg import AsyncConnection

from .. import stats
from ..ingest import IngestPlan
from ..stats import Deltas, Rollup, ServiceFacts, Tally
from . import rollups

LOCK_WRITERS = "SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE"
STORED_SERVICES = (f"SELECT {rollups.SERVICE_FACTS_COLUMNS} FROM services "
                   "WHERE hall = %s AND id = ANY(%s::text[])")
RATED_SERVICES = "SELECT DISTINCT service FROM ratings WHERE hall = %s AND service = ANY(%s::text[])"
DEFAULTED_SERVICES = "SELECT service FROM default_ratings WHERE hall = %s AND service = ANY(%s::text[])"
RATED_BY_PHONE = rollups.RATED_BY_PHONE_SQL.format(p="%s", service_in="p.service = ANY(%s::text[])")
PHONE_COUNTED = rollups.PHONE_COUNTED_SQL.format(p="%s", service_in="p.service = ANY(%s::text[])")


async def lock_writers(conn: AsyncConnection) -> None:
    """Wait for, and hold until commit, the lock of the writers of counted records (module docstring)."""
    await conn.execute(LOCK_WRITERS)


async def _column(conn: AsyncConnection, sql: str, hall: str, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    return {row[0] for row in await (await conn.execute(sql, (hall, sorted(ids)))).fetchall()}


async def _services(conn: AsyncConnection, hall: str, ids: set[str]) -> dict[str, ServiceFacts]:
    if not ids:
        return {}
    rows = await (await conn.execute(STORED_SERVICES, (hall, sorted(ids)))).fetchall()
    return {row[0]: rollups.facts(row) for row in rows}


async def _upsert(conn: AsyncConnection, tables: list[tuple[Rollup, list[tuple]]]) -> None:
    """Add rollup rows (distinct keys, in key order): an executemany per table, all in one
    pipeline. Measured for 756 rows of 6 tables: 14 ms; one multi-row INSERT per table 40 ms (each
    size planned anew); INSERT ... SELECT FROM unnest(arrays) 16 ms."""
    async with conn.pipeline(), conn.cursor() as cursor:
        for rollup, rows in tables:
            await cursor.executemany(rollups.upsert_sql(rollup.table, "%s"), rows)


async def write_deltas(conn: AsyncConnection, deltas: Deltas) -> None:
    """Add `deltas` to every rollup."""
    await _upsert(conn, rollups.delta_rows(deltas))


async def count_ingest(conn: AsyncConnection, hall: str, plan: IngestPlan) -> None:
    """Count an ingest plan into the rollups. Call it in the batch's transaction after `decide`
    and before the plan is written: it takes the writers' lock and reads which services were
    rated before the batch."""
    if not plan.ratings and not plan.services:
        return
    await lock_writers(conn)
    load, touched = stats.needed(plan)
    phone = (await (await conn.execute(PHONE_COUNTED, (hall, sorted(touched)))).fetchall()) if touched else []
    stored = stats.Stored(await _services(conn, hall, load),
                          await _column(conn, RATED_SERVICES, hall, touched)
                          | await _column(conn, RATED_BY_PHONE, hall, touched),
                          await _column(conn, DEFAULTED_SERVICES, hall, touched),
                          rollups.phone_counted(hall, phone))
    await write_deltas(conn, stats.ingest_deltas(hall, plan, stored))


async def count_defaults(conn: AsyncConnection, defaults: Sequence[tuple[str, str]]) -> None:
    """Count new system defaults, (hall, service id) each, into the rollups, in the transaction
    that stores them, before any insert of it (it takes the writers' lock if not held yet)."""
    if not defaults:
        return
    await lock_writers(conn)
    by_hall: dict[str, set[str]] = {}
    for hall, service in defaults:
        by_hall.setdefault(hall, set()).add(service)
    found: list[tuple[str, ServiceFacts, bool]] = []
    for hall, ids in sorted(by_hall.items()):
        rated = await _column(conn, RATED_SERVICES, hall, ids)
        found += [(hall, f, f.id in rated) for f in (await _services(conn, hall, ids)).values()]
    await _upsert(conn, rollups.stats_rows_for_defaults(found))


async def rebuild_if_requested(conn: AsyncConnection) -> stats.Rebuilt | None:
    """`rebuild` if a migration asked for it (checked under the writers' lock: of two hubs that
    start at once, one rebuilds)."""
    await lock_writers(conn)
    if not await (await conn.execute(f"SELECT 1 FROM {rollups.REBUILD_FLAG}")).fetchall():
        return None
    return await rebuild(conn)


async def rebuild(conn: AsyncConnection) -> stats.Rebuilt:
    """Recount every rollup from the raw ratings, services and defaults, in the caller's
    transaction, holding the writers' lock (ingest of ratings and services waits; reads go on and
    see the old rollups until the commit); clears the rebuild request."""
    started = time.monotonic()
    await lock_writers(conn)
    tally = Tally()
    read = []
    for name, sql, feed in (("stats_ratings", rollups.REBUILD_RATINGS_SQL, tally.add_ratings),
                            ("stats_services", rollups.REBUILD_SERVICES_SQL, tally.add_services),
                            ("stats_not_adopted", rollups.REBUILD_NOT_ADOPTED_SQL, tally.add_not_adopted)):
        count = 0
        async with conn.cursor(name=name) as cursor:  # server-side: streamed, not loaded whole
            await cursor.execute(sql)
            while rows := await cursor.fetchmany(rollups.ROLLUP_BATCH):
                feed(rows)
                count += len(rows)
        read.append(count)
    for rollup in stats.ROLLUPS:
        await conn.execute(f"DELETE FROM {rollup.table}")
    async with conn.cursor() as cursor, cursor.copy(
            f"COPY {stats.FINE.table} ({rollups.insert_columns(stats.FINE)}) FROM STDIN") as copy:
        for row in tally.rows(stats.FINE):
            await copy.write_row(row)
    written = {}
    for rollup in stats.ROLLUPS:
        for statement in rollups.coarse_sql(rollup) if rollup is not stats.FINE else ():
            await conn.execute(statement)
        (written[rollup.table],), = await (await conn.execute(f"SELECT COUNT(*) FROM {rollup.table}")).fetchall()
    await conn.execute(f"DELETE FROM {rollups.REBUILD_FLAG}")
    return stats.Rebuilt(read[0], read[1], written, time.monotonic() - started)
