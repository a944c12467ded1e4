"""The statistics rollups on SQLite (hub/store/rollups.py has what both backends share). Every
function takes the writer connection inside its write transaction (SQLite has one writer, so
what a batch looks up cannot change before it commits).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import aiosqlite

from .. import stats
from ..ingest import IngestPlan
from ..stats import Deltas, ServiceFacts, Tally
from . import rollups

LOOKUP_CHUNK = 400  # ids per IN (...) list, plus the hall: under SQLite's old limit of 999


async def _by_ids(db: aiosqlite.Connection, sql: str, hall: str, ids: set[str]) -> list[Any]:
    """Rows of `sql` (its `{ids}` an IN list) for `hall` and every id in `ids`, in chunks."""
    found: list[Any] = []
    ordered = sorted(ids)
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[start:start + LOOKUP_CHUNK]
        found += await db.execute_fetchall(sql.format(ids=",".join("?" * len(chunk))), [hall, *chunk])
    return found


async def _stored(db: aiosqlite.Connection, hall: str, load: set[str], touched: set[str]) -> stats.Stored:
    services = await _by_ids(db, f"SELECT {rollups.SERVICE_FACTS_COLUMNS} FROM services "
                                 "WHERE hall = ? AND id IN ({ids})", hall, load)
    rated = await _by_ids(db, "SELECT DISTINCT service FROM ratings WHERE hall = ? AND service IN ({ids})",
                          hall, touched)
    defaulted = await _by_ids(db, "SELECT service FROM default_ratings WHERE hall = ? AND service IN ({ids})",
                              hall, touched)
    return stats.Stored({row[0]: rollups.facts(row) for row in services},
                        {row[0] for row in rated}, {row[0] for row in defaulted})


async def write_deltas(db: aiosqlite.Connection, deltas: Deltas) -> None:
    """Add `deltas` to every rollup: one executemany per table."""
    for rollup, rows in rollups.delta_rows(deltas):
        await db.executemany(rollups.upsert_sql(rollup.table, "?"), rows)


async def count_ingest(db: aiosqlite.Connection, hall: str, plan: IngestPlan) -> None:
    """Count an ingest plan into the rollups. Call it in the batch's write transaction after
    `decide` and before the plan is written: it reads which services were rated before the batch."""
    if not plan.ratings and not plan.services:
        return
    load, touched = stats.needed(plan)
    await write_deltas(db, stats.ingest_deltas(hall, plan, await _stored(db, hall, load, touched)))


async def count_defaults(db: aiosqlite.Connection, defaults: Sequence[tuple[str, str]]) -> None:
    """Count new system defaults, (hall, service id) each, into the rollups, in the transaction
    that stores them (before or after their rows: it reads services and ratings only)."""
    by_hall: dict[str, set[str]] = {}
    for hall, service in defaults:
        by_hall.setdefault(hall, set()).add(service)
    found: list[tuple[str, ServiceFacts, bool]] = []
    for hall, ids in sorted(by_hall.items()):
        services = await _by_ids(db, f"SELECT {rollups.SERVICE_FACTS_COLUMNS} FROM services "
                                     "WHERE hall = ? AND id IN ({ids})", hall, ids)
        rated = {row[0] for row in await _by_ids(
            db, "SELECT DISTINCT service FROM ratings WHERE hall = ? AND service IN ({ids})", hall, ids)}
        found += [(hall, rollups.facts(row), row[0] in rated) for row in services]
    for rollup, rows in rollups.stats_rows_for_defaults(found):
        await db.executemany(rollups.upsert_sql(rollup.table, "?"), rows)


async def rebuild_requested(db: aiosqlite.Connection) -> bool:
    return bool(await db.execute_fetchall(f"SELECT 1 FROM {rollups.REBUILD_FLAG}"))


async def rebuild(db: aiosqlite.Connection) -> stats.Rebuilt:
    """Recount every rollup from the raw ratings, services and defaults, in the caller's write
    transaction (ingest waits meanwhile); clears the rebuild request."""
    started = time.monotonic()
    tally = Tally()
    read = []
    for sql, feed in ((rollups.REBUILD_RATINGS_SQL, tally.add_ratings),
                      (rollups.REBUILD_SERVICES_SQL, tally.add_services)):
        count = 0
        async with db.execute(sql) as cursor:
            while rows := await cursor.fetchmany(rollups.ROLLUP_BATCH):
                feed(rows)
                count += len(rows)
        read.append(count)
    for rollup in stats.ROLLUPS:
        await db.execute(f"DELETE FROM {rollup.table}")
    await db.executemany(rollups.insert_sql(stats.FINE, "?"), tally.rows(stats.FINE))
    written = {}
    for rollup in stats.ROLLUPS:
        for statement in rollups.coarse_sql(rollup) if rollup is not stats.FINE else ():
            await db.execute(statement)
        (written[rollup.table],), = await db.execute_fetchall(f"SELECT COUNT(*) FROM {rollup.table}")
    await db.execute(f"DELETE FROM {rollups.REBUILD_FLAG}")
    return stats.Rebuilt(read[0], read[1], written, time.monotonic() - started)
