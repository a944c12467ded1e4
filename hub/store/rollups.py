"""The statistics rollup tables (hub/stats.py) as both backends write and read them: the upserts,
the rebuild's reads, the stats query, with the dialect's parameter mark (`?` or `%s`). The
backends' own parts (look-ups by lists of ids, streaming, locks) are in sqlite_rollups.py and
postgres_rollups.py.

For the default job: `stats_rows_for_defaults` gives the rows its defaults add (pure), and each
backend's `count_defaults(conn, [(hall, service), ...])` looks the services up and writes them,
in the job's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from .. import stats
from ..stats import Deltas, Rollup, ServiceFacts, StatsQuery, StatsRow

COUNTER_COLUMNS = ", ".join(stats.COUNTERS)
ROLLUP_TABLES = tuple(r.table for r in stats.ROLLUPS)
REBUILD_FLAG = "stats_rebuild"  # a row here: the rollups must be rebuilt at the next start
ROLLUP_BATCH = 5000  # rows per executemany / fetch in a rebuild

# What counting needs of a stored service (stats.ServiceFacts, in its field order).
SERVICE_FACTS_COLUMNS = "id, window_id, staff_id, matter_code, unit, finished_at, outcome"

# The rebuild's reads: every rating and every service, as stats.Tally takes them.
REBUILD_RATINGS_SQL = ("SELECT hall, received_at, score, window_id, staff_id, matter_code, unit, "
                       "service IS NOT NULL FROM ratings")
REBUILD_SERVICES_SQL = (
    "SELECT s.hall, s.id, s.window_id, s.staff_id, s.matter_code, s.unit, s.finished_at, s.outcome, "
    "EXISTS (SELECT 1 FROM ratings r WHERE r.hall = s.hall AND r.service = s.id), "
    "EXISTS (SELECT 1 FROM default_ratings d WHERE d.hall = s.hall AND d.service = s.id) "
    "FROM services s")


@cache
def upsert_sql(table: str, mark: str) -> str:
    """Add a row's counters to the stored row of its key (or store it)."""
    rollup = next(r for r in stats.ROLLUPS if r.table == table)
    keys = ", ".join(rollup.key_columns)
    marks = ", ".join([mark] * (len(rollup.key_columns) + len(stats.COUNTERS)))
    adds = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in stats.COUNTERS)
    return (f"INSERT INTO {table} ({keys}, {COUNTER_COLUMNS}) VALUES ({marks}) "
            f"ON CONFLICT ({keys}) DO UPDATE SET {adds}")


def insert_sql(rollup: Rollup, mark: str) -> str:
    """A plain insert of a rollup's rows (the rebuild, into emptied tables)."""
    marks = ", ".join([mark] * (len(rollup.key_columns) + len(stats.COUNTERS)))
    return f"INSERT INTO {rollup.table} ({insert_columns(rollup)}) VALUES ({marks})"


def insert_columns(rollup: Rollup) -> str:
    return f"{', '.join(rollup.key_columns)}, {COUNTER_COLUMNS}"


def delta_rows(deltas: Deltas) -> list[tuple[Rollup, list[tuple]]]:
    """Each rollup with the rows `deltas` adds to it (key columns, then COUNTERS), sorted."""
    return [(rollup, rows) for rollup in stats.ROLLUPS if (rows := deltas.rows(rollup))]


def stats_rows_for_defaults(defaults: Iterable[tuple[str, ServiceFacts, bool]]) -> list[tuple[Rollup, list[tuple]]]:
    """The rollup rows that new system defaults add: (hall, the service, whether it has a bound
    rating) each; write them with `upsert_sql` in the transaction that stores the defaults."""
    return delta_rows(stats.default_deltas(defaults))


def facts(row: Sequence[Any]) -> ServiceFacts:
    """A row of SERVICE_FACTS_COLUMNS."""
    return ServiceFacts(*row)


# ---------------------------------------------------------------------------- the query


def query_sql(query: StatsQuery, mark: str) -> tuple[str, list[Any]]:
    """The SQL of `query`: one row per (period, group key) with the counters summed in COUNTERS
    order. Reads the coarsest rollup that holds the group; a region filter is a list of halls, so
    each hall's rows are one range seek in the table's (hall, day, ...) key."""
    rollup, key = stats.GROUP_SOURCES[query.group]
    period = "s.day" if query.period == "day" else "substr(s.day, 1, 7)"
    selected = [period, *(column for _, column in key)]
    where, params = [f"s.day >= {mark}", f"s.day <= {mark}"], [query.start.isoformat(), query.end.isoformat()]
    if query.hall is not None:
        where.append(f"s.hall = {mark}")
        params.append(query.hall)
    if query.region is not None:
        where.append(f"s.hall IN (SELECT hall FROM halls WHERE region = {mark})")
        params.append(query.region)
    join = "LEFT JOIN halls h ON h.hall = s.hall " if query.group == "region" else ""
    sums = ", ".join(f"CAST(SUM(s.{c}) AS BIGINT)" for c in stats.COUNTERS)
    sql = (f"SELECT {', '.join(selected)}, {sums} FROM {rollup.table} s {join}"
           f"WHERE {' AND '.join(where)} GROUP BY {', '.join(selected)}")
    return sql, params


def result_rows(query: StatsQuery, rows: Iterable[Sequence[Any]]) -> list[StatsRow]:
    """The query's rows as StatsRows, sorted; the rollups' "" (no staff, matter or unit) as None."""
    names = [name for name, _ in stats.GROUP_SOURCES[query.group][1]]
    found = []
    for row in rows:
        values = row[1:1 + len(names)]
        key = {name: (None if value == stats.NONE else value) for name, value in zip(names, values, strict=True)}
        found.append(StatsRow(row[0], key, stats.Figures.of(row[1 + len(names):])))
    return stats.sort_rows(found)
