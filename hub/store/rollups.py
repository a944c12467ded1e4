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
ROLLUP_BATCH = 5000  # raw rows per fetch in a rebuild

# What counting needs of a stored service (stats.ServiceFacts, in its field order).
SERVICE_FACTS_COLUMNS = "id, window_id, staff_id, matter_code, unit, finished_at, outcome"

# The rebuild's reads: every rating and every service, as stats.Tally takes them. A phone
# supplementary rating is a bound rating while its service has no counter rating (stats.py).
_PHONE_COUNTS = ("p.kind = 'supplementary' AND NOT EXISTS "
                 "(SELECT 1 FROM ratings r WHERE r.hall = p.hall AND r.service = p.service)")
REBUILD_RATINGS_SQL = ("SELECT hall, received_at, score, window_id, staff_id, matter_code, unit, "
                       "service IS NOT NULL FROM ratings UNION ALL "
                       "SELECT p.hall, p.submitted_at, p.score, p.window_id, p.staff_id, p.matter_code, p.unit, "
                       f"1 = 1 FROM phone_ratings p WHERE {_PHONE_COUNTS}")
# ... and every rating an appeal decided not to adopt, by the key it is counted under
REBUILD_NOT_ADOPTED_SQL = ("SELECT hall, stats_day, stats_window, stats_staff, stats_matter, stats_unit "
                           "FROM appeal_decisions WHERE outcome = 'not_adopted'")
REBUILD_SERVICES_SQL = (
    "SELECT s.hall, s.id, s.window_id, s.staff_id, s.matter_code, s.unit, s.finished_at, s.outcome, "
    "EXISTS (SELECT 1 FROM ratings r WHERE r.hall = s.hall AND r.service = s.id) "
    "OR EXISTS (SELECT 1 FROM phone_ratings p WHERE p.hall = s.hall AND p.service = s.id "
    "AND p.kind = 'supplementary'), "
    "EXISTS (SELECT 1 FROM default_ratings d WHERE d.hall = s.hall AND d.service = s.id) "
    "FROM services s")
# Ingest's look-ups by a list of service ids ({service_in}: the backend's test of p.service): the services
# rated before the batch (bound ratings and phone supplementary ratings), and the phone
# supplementary ratings that still count, which a counter rating in the batch replaces.
RATED_BY_PHONE_SQL = ("SELECT p.service FROM phone_ratings p WHERE p.hall = {p} AND {service_in} "
                      "AND p.kind = 'supplementary'")
PHONE_COUNTED_SQL = ("SELECT p.service, p.submitted_at, p.window_id, p.staff_id, p.matter_code, p.unit, p.score "
                     "FROM phone_ratings p WHERE p.hall = {p} AND {service_in} AND " + _PHONE_COUNTS)


def phone_counted(hall: str, rows: Iterable[Sequence[Any]]) -> dict[str, tuple[stats.FineKey, int]]:
    """Rows of PHONE_COUNTED_SQL as stats.Stored.phone."""
    return {sid: ((hall, stats.china_day(at), window, stats._dim(staff), stats._dim(matter), stats._dim(unit)), score)
            for sid, at, window, staff, matter, unit, score in rows}


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


def coarse_sql(rollup: Rollup) -> list[str]:
    """The rebuild's statements filling a coarse rollup from stats_fine (already rebuilt in the
    same transaction): its day rows, then its month rows, the same sums as Deltas.rows makes."""
    sums = ", ".join(f"SUM({c})" for c in stats.COUNTERS)
    statements = []
    for period in ("period", "substr(period, 1, 7)") if rollup.months else ("period",):
        keys = ", ".join(["hall", period, *rollup.dims])
        statements.append(f"INSERT INTO {rollup.table} ({insert_columns(rollup)}) "
                          f"SELECT {keys}, {sums} FROM {stats.FINE.table} GROUP BY {keys}")
    return statements


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
    order, at most MAX_ROWS + 1 of them. Reads the coarsest rollup that holds the group: its month
    rows for the months the range covers whole, its day rows for the rest. A region is a list of
    halls, so each branch is one range seek per hall in the table's (hall, period, ...) key."""
    rollup, key = stats.GROUP_SOURCES[query.group]
    months, days = query.spans()
    period = "s.period" if query.period == "day" else "substr(s.period, 1, 7)"
    columns = ", ".join([f"{period} AS p", *(f"{column} AS k{i}" for i, (_, column) in enumerate(key)),
                         *(f"s.{c}" for c in stats.COUNTERS)])
    join = "LEFT JOIN halls h ON h.hall = s.hall " if query.group == "region" else ""
    where, where_params = [], []
    if query.hall is not None:
        where.append(f"s.hall = {mark}")
        where_params.append(query.hall)
    if query.region is not None:
        where.append(f"s.hall IN (SELECT hall FROM halls WHERE region = {mark})")
        where_params.append(query.region)
    branches, params = [], []
    if months:
        condition = f"s.period IN ({', '.join([mark] * len(months))})"
        branches.append(f"SELECT {columns} FROM {rollup.table} s {join}WHERE {' AND '.join([condition, *where])}")
        params += [*months, *where_params]
    for first, last in days:
        condition = f"s.period >= {mark} AND s.period <= {mark} AND length(s.period) = 10"
        branches.append(f"SELECT {columns} FROM {rollup.table} s {join}WHERE {' AND '.join([condition, *where])}")
        params += [first, last, *where_params]
    group = ", ".join(["p", *(f"k{i}" for i in range(len(key)))])
    sums = ", ".join(f"CAST(SUM({c}) AS BIGINT)" for c in stats.COUNTERS)
    sql = (f"SELECT {group}, {sums} FROM ({' UNION ALL '.join(branches)}) AS x "
           f"GROUP BY {group} LIMIT {stats.MAX_ROWS + 1}")
    return sql, params


def result_rows(query: StatsQuery, rows: Iterable[Sequence[Any]]) -> list[StatsRow]:
    """The query's rows as StatsRows, sorted; the rollups' "" (no staff, matter or unit) as None.
    Raises TooManyRows past MAX_ROWS."""
    rows = list(rows)
    if len(rows) > stats.MAX_ROWS:
        raise stats.TooManyRows(f"more than {stats.MAX_ROWS:,} rows: ask for fewer days, per month, "
                                "a coarser group, or one region or hall")
    names = [name for name, _ in stats.GROUP_SOURCES[query.group][1]]
    width, none, of = 1 + len(names), stats.NONE, stats.Figures.of
    keyed = [(row[0], [None if value == none else value for value in row[1:width]], row) for row in rows]
    keyed.sort(key=lambda k: stats.row_order(k[0], k[1]))  # the raw tuples, before any object is made
    return [StatsRow(period, dict(zip(names, values)), of(row[width:])) for period, values, row in keyed]
