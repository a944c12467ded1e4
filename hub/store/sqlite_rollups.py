"""The statistics rollups on SQLite (hub/store/rollups.py has what both backends share). Every
function takes the writer's sqlite3 connection inside its write transaction, on the writer's thread
(SQLite has one writer, so what a batch looks up cannot change before it commits).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from .. import stats
from ..ingest import IngestPlan
from ..stats import Deltas, ServiceFacts, Tally
from . import rollups

LOOKUP_CHUNK = 400  # ids per IN (...) list, plus the hall: under SQLite's old limit of 999
_PHONE_RATED = rollups.RATED_BY_PHONE_SQL.replace("{p}", "?").replace("{service_in}", "p.service IN ({ids})")
_PHONE_COUNTED = rollups.PHONE_COUNTED_SQL.replace("{p}", "?").replace("{service_in}", "p.service IN ({ids})")


def _by_ids(db: sqlite3.Connection, sql: str, hall: str, ids: set[str]) -> list[Any]:
    """Rows of `sql` (its `{ids}` an IN list) for `hall` and every id in `ids`, in chunks."""
    found: list[Any] = []
    ordered = sorted(ids)
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[start:start + LOOKUP_CHUNK]
        found += db.execute(sql.format(ids=",".join("?" * len(chunk))), [hall, *chunk]).fetchall()
    return found


def _stored(db: sqlite3.Connection, hall: str, load: set[str], touched: set[str]) -> stats.Stored:
    services = _by_ids(db, f"SELECT {rollups.SERVICE_FACTS_COLUMNS} FROM services "
                                 "WHERE hall = ? AND id IN ({ids})", hall, load)
    rated = _by_ids(db, "SELECT DISTINCT service FROM ratings WHERE hall = ? AND service IN ({ids})",
                          hall, touched)
    defaulted = _by_ids(db, "SELECT service FROM default_ratings WHERE hall = ? AND service IN ({ids})",
                              hall, touched)
    rated += _by_ids(db, _PHONE_RATED, hall, touched)
    phone = rollups.phone_counted(hall, _by_ids(db, _PHONE_COUNTED, hall, touched))
    return stats.Stored({row[0]: rollups.facts(row) for row in services},
                        {row[0] for row in rated}, {row[0] for row in defaulted}, phone)


def write_deltas(db: sqlite3.Connection, deltas: Deltas) -> None:
    """Add `deltas` to every rollup: one executemany per table."""
    for rollup, rows in rollups.delta_rows(deltas):
        db.executemany(rollups.upsert_sql(rollup.table, "?"), rows)


def count_ingest(db: sqlite3.Connection, hall: str, plan: IngestPlan) -> None:
    """Count an ingest plan into the rollups. Call it in the batch's write transaction after
    `decide` and before the plan is written: it reads which services were rated before the batch."""
    if not plan.ratings and not plan.services:
        return
    load, touched = stats.needed(plan)
    write_deltas(db, stats.ingest_deltas(hall, plan, _stored(db, hall, load, touched)))


def count_defaults(db: sqlite3.Connection, defaults: Sequence[tuple[str, str]]) -> None:
    """Count new system defaults, (hall, service id) each, into the rollups, in the transaction
    that stores them (before or after their rows: it reads services and ratings only)."""
    by_hall: dict[str, set[str]] = {}
    for hall, service in defaults:
        by_hall.setdefault(hall, set()).add(service)
    found: list[tuple[str, ServiceFacts, bool]] = []
    for hall, ids in sorted(by_hall.items()):
        services = _by_ids(db, f"SELECT {rollups.SERVICE_FACTS_COLUMNS} FROM services "
                                     "WHERE hall = ? AND id IN ({ids})", hall, ids)
        rated = {row[0] for row in _by_ids(
            db, "SELECT DISTINCT service FROM ratings WHERE hall = ? AND service IN ({ids})", hall, ids)}
        found += [(hall, rollups.facts(row), row[0] in rated) for row in services]
    for rollup, rows in rollups.stats_rows_for_defaults(found):
        db.executemany(rollups.upsert_sql(rollup.table, "?"), rows)


def rebuild_requested(db: sqlite3.Connection) -> bool:
    return bool(db.execute(f"SELECT 1 FROM {rollups.REBUILD_FLAG}").fetchall())


def rebuild(db: sqlite3.Connection) -> stats.Rebuilt:
    """Recount every rollup from the raw ratings, services and defaults, in the caller's write
    transaction (ingest waits meanwhile); clears the rebuild request."""
    started = time.monotonic()
    tally = Tally()
    read = []
    for sql, feed in ((rollups.REBUILD_RATINGS_SQL, tally.add_ratings),
                      (rollups.REBUILD_SERVICES_SQL, tally.add_services),
                      (rollups.REBUILD_NOT_ADOPTED_SQL, tally.add_not_adopted)):
        count = 0
        cursor = db.execute(sql)
        while rows := cursor.fetchmany(rollups.ROLLUP_BATCH):
            feed(rows)
            count += len(rows)
        read.append(count)
    for rollup in stats.ROLLUPS:
        db.execute(f"DELETE FROM {rollup.table}")
    db.executemany(rollups.insert_sql(stats.FINE, "?"), tally.rows(stats.FINE))
    written = {}
    for rollup in stats.ROLLUPS:
        for statement in rollups.coarse_sql(rollup) if rollup is not stats.FINE else ():
            db.execute(statement)
        (written[rollup.table],), = db.execute(f"SELECT COUNT(*) FROM {rollup.table}").fetchall()
    db.execute(f"DELETE FROM {rollups.REBUILD_FLAG}")
    return stats.Rebuilt(read[0], read[1], written, time.monotonic() - started)
