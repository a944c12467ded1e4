"""GET /api/v1/stats for one month of a region with 10M ratings (issue 5; goal p50/p99 <= 200 ms).

One region R1 of 100 halls x 20 windows (2 staff per window, 10 of the region's 500 matters per
window, 40 units), October 2026, N ratings (10,000,000; --quick 1,000,000) and 1.15 N services
(2 % no-shows; 95 % of ratings bound to their service, the rest unbound; a third of the unrated
finished services with a system default). The raw rows are written straight into the hub's tables
by SQL (a recursive CTE on SQLite, generate_series on PostgreSQL): through the API, 10M ratings
would take hours at the hub's ~10,000 items/s. The rollups are then summed from those raw rows by
SQL, and `rebuild_stats()` (the hub's own recount, in Python) must give the very same rows
(--no-verify skips it). Then the real hub process (`python -m hub`) serves the database and each
request is timed end to end over HTTP: the month of R1 per group, and per day for the coarse
groups; and the store's query alone, in-process, for comparison.

    .venv/bin/python bench/hub_stats.py [--quick] [--backends sqlite,postgres] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._hub_harness import CpuMeter, Database, PostgresDatabase, SqliteDatabase, open_database  # noqa: E402
from hub import stats  # noqa: E402
from hub.stats import StatsQuery  # noqa: E402
from hub.store import HubStore, PostgresStore, SQLiteStore  # noqa: E402
from simulator.services import HubProcess  # noqa: E402

SEED = 20261121
HALLS, WINDOWS, STAFF_PER_WINDOW, MATTERS, MATTERS_PER_WINDOW, UNITS = 100, 20, 2, 500, 10, 40
DEVICES = HALLS * WINDOWS  # device i % 2000: hall i % 100, window (i / 100) % 20
MONTH, DAYS = "2026-10", 31
WARMUP = 3  # requests before the timed ones (page cache, prepared plans)
GOAL_MS = 200.0
HTTP_TIMEOUT_S = 120.0
MONTH_GROUPS = [None, "region", "hall", "window", "staff", "matter", "unit"]
DAY_GROUPS = [None, "region", "hall"]  # per day, the finer groups answer tens of thousands of rows

# ---------------------------------------------------------------------------- the data, in SQL


@dataclass(frozen=True)
class Dialect:
    """What differs between the two: zero-padding, booleans, a series of numbers j = 0..count-1."""

    pad: Callable[[str, int], str]
    true: str
    false: str
    series: Callable[[int], str]


SQLITE = Dialect(lambda x, w: f"printf('%0{w}d', {x})", "1", "0",
                 lambda count: f"(WITH RECURSIVE g(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM g "
                               f"WHERE j < {count} - 1) SELECT j FROM g) AS g")
POSTGRES = Dialect(lambda x, w: f"lpad(({x})::text, {w}, '0')", "true", "false",
                   lambda count: f"generate_series(0::bigint, {count} - 1) AS g(j)")


def _sql(d: Dialect, n: int) -> dict[str, str]:
    """Service j for j < 1.15 n, rating j (bound to service j) for j < n, defaults: all in terms of
    j. Device j % 2000 is window (j / 100) % 20 + 1 of hall j % 100."""
    services = n * 23 // 20
    hall = f"'H' || {d.pad('j % 100', 3)}"
    win = "'' || ((j / 100) % 20 + 1)"
    # k = j / 2000 counts a device's items: its day is k % 31, its staff k % 2, its matter (k / 2) % 10
    staff = "'S' || (j % 100) || '-' || ((j / 100) % 20) || '-' || ((j / 2000) % 2)"
    matter_no = "((j % 2000) * 7 + (j / 4000) % 10) % 500"  # 10 of the region's 500 per window
    matter, unit = f"'M' || ({matter_no})", f"'U' || (({matter_no}) % 40)"
    day = "((j / 2000) % 31 + 1)"

    def at(delay_s: int) -> str:
        sec = f"(30600 + (j * 7) % 28800 + {delay_s})"  # 08:30 to 16:30
        return (f"'{MONTH}-' || {d.pad(day, 2)} || 'T' || {d.pad(f'{sec} / 3600', 2)} || ':' || "
                f"{d.pad(f'({sec} / 60) % 60', 2)} || ':' || {d.pad(f'{sec} % 60', 2)} || '+08:00'")

    bound = "(j % 20 <> 19 AND j % 50 <> 49)"  # 5 % unbound; none bound to a no-show
    score = ("CASE WHEN (j * 7919) % 100 < 1 THEN 1 WHEN (j * 7919) % 100 < 3 THEN 2 "
             "WHEN (j * 7919) % 100 < 8 THEN 3 WHEN (j * 7919) % 100 < 25 THEN 4 ELSE 5 END")

    def when(value: str) -> str:
        return f"CASE WHEN {bound} THEN {value} END"

    hub_time = "'2026-11-01T00:00:00.000+00:00'"
    return {
        "services": (
            "INSERT INTO services (hall, id, ticket, window_id, staff_id, matter_code, unit, finished_at, "
            "outcome, payload, ingested_at) "
            f"SELECT {hall}, 's' || j, 'A' || (j % 1000), {win}, {staff}, {matter}, {unit}, {at(0)}, "
            f"CASE WHEN j % 50 = 49 THEN 'no_show' ELSE 'finished' END, '{{}}', {hub_time} "
            f"FROM {d.series(services)}"),
        "ratings": (
            "INSERT INTO ratings (device, n, hall, boot, mono, score, kid, sig, received_at, offset_ms, "
            "service, ticket, window_id, staff_id, matter_code, unit, unbound_reason, verified, "
            "ingested_at, item) "
            f"SELECT 'D' || (j % 2000), j / 2000 + 1, {hall}, 1, j, {score}, 'k0000000', 'bench', {at(60)}, "
            f"0, {when(chr(39) + 's' + chr(39) + ' || j')}, {when(chr(39) + 'A' + chr(39) + ' || (j % 1000)')}, "
            f"{win}, {when(staff)}, {when(matter)}, {when(unit)}, "
            f"CASE WHEN {bound} THEN NULL ELSE 'no_service_in_progress' END, {d.true}, {hub_time}, "
            f"'{{\"bench\":true}}' FROM {d.series(n)}"),
        "defaults": (  # a third of the finished services nobody rated
            "INSERT INTO default_ratings (hall, service, score, region, rule, finished_at, due_at, "
            "estimated, applied_at) "
            f"SELECT {hall}, 's' || j, 3, 'R1', '{{\"days\":7,\"kind\":\"calendar_days\"}}', {at(0)}, "
            f"'2026-11-08T00:00:00+08:00', {d.false}, {hub_time} FROM {d.series(services)} "
            f"WHERE j % 3 = 0 AND j % 50 <> 49 AND (j >= {n} OR j % 20 = 19)"),
    }


# The rollups summed by SQL from the raw rows (every time here is written +08:00, so its first 10
# characters are its day in China); rebuild_stats() must agree.
_RATED = "EXISTS (SELECT 1 FROM ratings q WHERE q.hall = s.hall AND q.service = s.id)"
_DEFAULTED = "EXISTS (SELECT 1 FROM default_ratings q WHERE q.hall = s.hall AND q.service = s.id)"
_FINE_SQL = f"""
INSERT INTO stats_fine (hall, period, window_id, staff_id, matter_code, unit, {", ".join(stats.COUNTERS)})
SELECT hall, period, window_id, staff_id, matter_code, unit, {", ".join(f"SUM({c})" for c in stats.COUNTERS)}
FROM (
    SELECT s.hall, substr(s.finished_at, 1, 10) AS period, s.window_id, COALESCE(s.staff_id, '') AS staff_id,
           COALESCE(s.matter_code, '') AS matter_code, COALESCE(s.unit, '') AS unit,
           CASE WHEN s.outcome = 'finished' THEN 1 ELSE 0 END AS services,
           CASE WHEN s.outcome = 'no_show' THEN 1 ELSE 0 END AS no_shows,
           CASE WHEN s.outcome = 'finished' AND {_RATED} THEN 1 ELSE 0 END AS rated,
           CASE WHEN s.outcome = 'finished' AND ({_RATED} OR {_DEFAULTED}) THEN 1 ELSE 0 END AS rated_or_default,
           CASE WHEN s.outcome = 'finished' AND {_DEFAULTED} THEN 1 ELSE 0 END AS defaulted,
           0 AS score1, 0 AS score2, 0 AS score3, 0 AS score4, 0 AS score5, 0 AS unbound,
           0 AS not_adopted
    FROM services s
    UNION ALL
    SELECT hall, substr(received_at, 1, 10), window_id, COALESCE(staff_id, ''), COALESCE(matter_code, ''),
           COALESCE(unit, ''), 0, 0, 0, 0, 0,
           CASE WHEN score = 1 THEN 1 ELSE 0 END, CASE WHEN score = 2 THEN 1 ELSE 0 END,
           CASE WHEN score = 3 THEN 1 ELSE 0 END, CASE WHEN score = 4 THEN 1 ELSE 0 END,
           CASE WHEN score = 5 THEN 1 ELSE 0 END, CASE WHEN service IS NULL THEN 1 ELSE 0 END, 0
    FROM ratings
) AS x GROUP BY hall, period, window_id, staff_id, matter_code, unit
"""


def _coarse_sql(rollup: stats.Rollup, month: bool) -> str:
    """A coarse rollup's day rows, or its month rows, summed from stats_fine."""
    period = "substr(period, 1, 7)" if month else "period"
    keys = ", ".join(["hall", period, *rollup.dims])
    sums = ", ".join(f"SUM({c})" for c in stats.COUNTERS)
    return (f"INSERT INTO {rollup.table} ({', '.join(rollup.key_columns)}, {', '.join(stats.COUNTERS)}) "
            f"SELECT {keys}, {sums} FROM stats_fine GROUP BY {keys}")


def _setup_rows(conn: Any, mark: str) -> None:
    """The region, its halls, the devices and their keys (ratings reference device_keys)."""
    now = "2026-11-01T00:00:00.000+00:00"
    conn.execute(f"INSERT INTO regions (region, name, area_code, default_rule, created_at, updated_at) "
                 f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark})",
                 ("R1", "bench region", "220200", '{"days":7,"kind":"calendar_days"}', now, now))
    halls = [(f"H{h:03d}", "R1", f"hall {h}", now) for h in range(HALLS)]
    devices = [(f"D{d}", f"H{d % 100:03d}", str((d // 100) % 20 + 1), now, now) for d in range(DEVICES)]
    keys = [(f"D{d}", "k0000000", "00" * 32, now) for d in range(DEVICES)]
    cursor = conn.cursor()
    cursor.executemany(f"INSERT INTO halls (hall, region, name, updated_at) VALUES ({mark}, {mark}, {mark}, {mark})", halls)
    cursor.executemany(f"INSERT INTO devices (device, hall, window_id, registered_at, updated_at) "
                       f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})", devices)
    cursor.executemany(f"INSERT INTO device_keys (device, kid, key_hex, registered_at) "
                       f"VALUES ({mark}, {mark}, {mark}, {mark})", keys)


def fill(db: Database, n: int) -> dict[str, float]:
    """Raw rows and rollups for `n` ratings; seconds per step."""
    took: dict[str, float] = {}
    if isinstance(db, PostgresDatabase):
        dialect, mark = POSTGRES, "%s"
        conn: Any = psycopg.connect(db.dsn, autocommit=True)
    else:
        dialect, mark = SQLITE, "?"
        conn = sqlite3.connect(_file(db), isolation_level=None)
        conn.execute("PRAGMA synchronous = OFF")  # a bulk load: a crash here is a rerun
        conn.execute("PRAGMA cache_size = -1000000")  # 1 GB of page cache for the index builds

    def step(name: str, *statements: str) -> None:
        started = time.monotonic()
        conn.execute("BEGIN")
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
        took[name] = round(time.monotonic() - started, 1)
        log(f"  {name}: {took[name]} s")

    conn.execute("BEGIN")
    _setup_rows(conn, mark)
    conn.execute("COMMIT")
    sql = _sql(dialect, n)
    step("services_s", sql["services"])
    step("ratings_s", sql["ratings"])
    step("defaults_s", sql["defaults"])
    # the migration's rebuild request is served by the sums below (and checked by rebuild_stats)
    step("rollups_s", *(f"DELETE FROM {r.table}" for r in stats.ROLLUPS), _FINE_SQL,
         *(_coarse_sql(r, month) for r in stats.ROLLUPS[1:] for month in (False, True)),
         "DELETE FROM stats_rebuild")
    conn.execute("ANALYZE")
    conn.close()
    return took


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- measuring


def _file(db: Database) -> Path:
    """The SQLite file of a SQLite database."""
    assert isinstance(db, SqliteDatabase), db
    return db.path


def _store(db: Database) -> HubStore:
    return PostgresStore(db.dsn) if isinstance(db, PostgresDatabase) else SQLiteStore(_file(db))


def _snapshot(db: Database) -> dict[str, list[tuple]]:
    if isinstance(db, PostgresDatabase):
        with psycopg.connect(db.dsn) as conn:
            return {r.table: sorted(conn.execute(f"SELECT * FROM {r.table}").fetchall()) for r in stats.ROLLUPS}
    with sqlite3.connect(_file(db)) as conn:
        return {r.table: sorted(conn.execute(f"SELECT * FROM {r.table}").fetchall()) for r in stats.ROLLUPS}


async def _store_figures(db: Database, verify: bool, requests: int) -> dict[str, Any]:
    """The rebuild (checked against the SQL-summed rollups) and the store's query alone."""
    out: dict[str, Any] = {}
    async with _store(db) as store:
        if verify:
            before = _snapshot(db)
            rebuilt = await store.rebuild_stats()
            out["rebuild_s"] = round(rebuilt.seconds, 1)
            out["rebuild_read"] = {"ratings": rebuilt.ratings, "services": rebuilt.services}
            same = _snapshot(db) == before
            out["rebuild_equals_sql_rollups"] = same
            log(f"  rebuild_stats(): {out['rebuild_s']} s, same rows as the SQL rollups: {same}")
            if not same:
                raise SystemExit("rebuild_stats() disagrees with the rollups summed by SQL")
        query_ms = {}
        for group in MONTH_GROUPS:
            q = StatsQuery(date(2026, 10, 1), date(2026, 10, 31), "month", group, "R1")
            times = []
            for _ in range(min(requests, 20)):
                started = time.perf_counter()
                await store.stats(q)
                times.append((time.perf_counter() - started) * 1000)
            query_ms[group or "none"] = round(statistics.median(times), 1)
        out["store_query_p50_ms"] = query_ms
    return out


async def _ingest_cost(db: Database, rounds: int, batches: int) -> dict[str, Any]:
    """What counting costs at ingest: batches of 250 services and the 250 ratings bound to them
    (signed, verified), written by the store in-process, in rounds with the rollups counted and
    rounds with the counting switched off (the same store, so the same tables and indexes)."""
    from hcp.protocol import sign_rating
    from hub.store import postgres_rollups, sqlite_rollups
    module = postgres_rollups if isinstance(db, PostgresDatabase) else sqlite_rollups
    counting = module.count_ingest

    async def skip_async(*_: Any) -> None:
        return None

    def skip_sync(*_: Any) -> None:  # SQLite counts on its writer's thread, in a plain function
        return None

    skip = skip_async if module is postgres_rollups else skip_sync

    keys = {f"X{d}": bytes([d + 1]) * 32 for d in range(10)}
    times: dict[str, list[float]] = {"with": [], "without": []}
    async with _store(db) as store:
        await store.register_gateway("HX", "ab" * 32, b"\x01" * 32)
        for device, key in keys.items():
            await store.register_device(device, "HX", device[1:], key)
        number = 0
        for round_no in range(rounds * 2):
            mode = "with" if round_no % 2 == 0 else "without"
            module.count_ingest = counting if mode == "with" else skip  # type: ignore[assignment]
            for _ in range(batches):
                items = []
                for _ in range(250):
                    number += 1
                    device = f"X{number % 10}"
                    at = f"2026-10-{number % 28 + 1:02d}T10:00:00+08:00"
                    items.append({"kind": "service", "id": f"x{number}", "ticket": "A1", "window": device[1:],
                                  "staff_id": f"S{number % 7}", "matter_code": f"M{number % 13}",
                                  "finished_at": at, "outcome": "finished"})
                    rating = sign_rating(keys[device], "HX", device, number // 10 + 1, 1, number, None,
                                         number % 5 + 1).payload()
                    items.append({"kind": "rating", "rating": rating, "received_at": at, "offset_ms": 0,
                                  "binding": {"service": f"x{number}", "ticket": "A1", "window": device[1:],
                                              "staff_id": f"S{number % 7}", "matter_code": f"M{number % 13}"},
                                  "unbound_reason": None})
                started = time.perf_counter()
                results = await store.ingest("HX", items)
                times[mode].append((time.perf_counter() - started) * 1000)
                assert all(r.status == "accepted" for r in results), results[:3]
        module.count_ingest = counting  # type: ignore[assignment]
    with_ms, without_ms = statistics.median(times["with"]), statistics.median(times["without"])
    return {"batch": "250 services + 250 bound ratings", "batches_each": rounds * batches,
            "with_rollups_ms": round(with_ms, 1), "without_rollups_ms": round(without_ms, 1),
            "ratio": round(with_ms / without_ms, 2)}


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def _hub(db: Database, workdir: Path) -> HubProcess:
    """The hub process on `db`, without its default-rating job: at its start the job would write a
    default for each of the bench's ~600,000 unrated services while the requests are timed."""
    hub = db.hub(workdir)
    assert isinstance(hub, HubProcess)
    environment = hub.env
    hub.env = lambda: {**environment(), "HCP_HUB_DEFAULTS_INTERVAL_S": "0"}  # type: ignore[method-assign]
    return hub


def _http_figures(db: Database, workdir: Path, requests: int, rng: random.Random) -> dict[str, Any]:
    hub = _hub(db, workdir).start()
    try:
        client = httpx.Client(base_url=hub.url, timeout=HTTP_TIMEOUT_S, headers=hub.admin_headers)
        cases = [("month", g) for g in MONTH_GROUPS] + [("day", g) for g in DAY_GROUPS]
        series: dict[tuple[str, str | None], list[float]] = {case: [] for case in cases}
        sizes = {}
        for period, group in cases:
            for _ in range(WARMUP):
                client.get("/api/v1/stats", params=_params(period, group)).raise_for_status()
            response = client.get("/api/v1/stats", params=_params(period, group))
            sizes[(period, group)] = (len(response.json()["rows"]), len(response.content))
        order = [case for case in cases for _ in range(requests)]
        rng.shuffle(order)  # interleaved, so a burst of other load hits every case alike
        pid = hub.proc.pid if hub.proc is not None else 0
        meter = CpuMeter({"hub": lambda: [pid], **db.cpu_groups()})
        meter.start()
        timed = time.monotonic()
        for period, group in order:  # the answer is not parsed here: the client's garbage is not timed
            started = time.perf_counter()
            response = client.get("/api/v1/stats", params=_params(period, group))
            series[(period, group)].append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        load = meter.used(time.monotonic() - timed)
        figures: dict[str, Any] = {"load": load}
        for (period, group), times in series.items():
            rows, size = sizes[(period, group)]
            figures[f"{period}:{group or 'none'}"] = {
                "p50_ms": round(_percentile(times, 50), 1), "p99_ms": round(_percentile(times, 99), 1),
                "max_ms": round(max(times), 1), "rows": rows, "bytes": size}
        client.close()
        return figures
    finally:
        hub.close()


def _params(period: str, group: str | None) -> dict[str, str]:
    params = {"from": f"{MONTH}-01", "to": f"{MONTH}-{DAYS}", "period": period, "region": "R1"}
    if group is not None:
        params["group"] = group
    return params


def _execute(db: Database, statement: str) -> None:
    if isinstance(db, PostgresDatabase):
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(statement)
    else:
        with sqlite3.connect(_file(db), isolation_level=None) as conn:
            conn.execute(statement)


def _table_rows(db: Database) -> dict[str, int]:
    names = ["ratings", "services", "default_ratings", *(r.table for r in stats.ROLLUPS)]
    if isinstance(db, PostgresDatabase):
        with psycopg.connect(db.dsn) as conn:
            return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in names}
    with sqlite3.connect(_file(db)) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in names}


def run_backend(backend: str, args: argparse.Namespace, folder: Path, n: int) -> dict[str, Any]:
    rng = random.Random(args.seed)
    db = open_database(backend, folder, args.pg_dsn)
    try:
        workdir = folder / "hub"
        hub = _hub(db, workdir).start()  # creates and migrates the database
        hub.close()
        ingest = asyncio.run(_ingest_cost(db, rounds=3, batches=4 if args.quick else 10))
        log(f"  ingest of {ingest['batch']}: {ingest['with_rollups_ms']} ms with the rollups, "
            f"{ingest['without_rollups_ms']} ms without")
        for table in ("ratings", "services", "ledger", *(r.table for r in stats.ROLLUPS)):
            _execute(db, f"DELETE FROM {table}")  # the bench's region starts empty
        log(f"{backend}: filling {n:,} ratings")
        took = fill(db, n)
        rows = _table_rows(db)
        log(f"  rows: {rows}")
        result: dict[str, Any] = {"ingest": ingest, "fill": took, "rows": rows}
        result.update(asyncio.run(_store_figures(db, args.verify, args.requests)))
        log(f"  store query p50 (ms): {result['store_query_p50_ms']}")
        result["http"] = _http_figures(db, workdir, args.requests, rng)
        for case, figure in result["http"].items():
            if case != "load":
                log(f"  GET {case}: p50 {figure['p50_ms']} ms, p99 {figure['p99_ms']} ms, "
                    f"{figure['rows']} rows, {figure['bytes']:,} bytes")
        log(f"  load while timing: {result['http']['load']}")
        month = [f for case, f in result["http"].items() if case.startswith("month:")]
        result["month_worst_p50_ms"] = max(f["p50_ms"] for f in month)
        result["month_worst_p99_ms"] = max(f["p99_ms"] for f in month)
        result["goal_met"] = result["month_worst_p99_ms"] <= GOAL_MS
        result["database"] = db.info()
        return result
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000,000 ratings instead of 10,000,000")
    parser.add_argument("--ratings", type=int, help="ratings to fill (overrides --quick)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per case")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip rebuild_stats() and its comparison with the SQL rollups")
    parser.add_argument("--pg-dsn", default=None, help="PostgreSQL server (else HCP_PG_DSN, else a throwaway cluster)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    n = args.ratings or (1_000_000 if args.quick else 10_000_000)
    started = time.monotonic()
    out: dict[str, Any] = {"bench": "hub_stats", "ratings": n, "services": n * 23 // 20,
                           "region": {"halls": HALLS, "windows": DEVICES, "staff": DEVICES * STAFF_PER_WINDOW,
                                      "matters": MATTERS, "units": UNITS, "month": MONTH},
                           "filled_by": "SQL straight into the tables (not the API: ~10,000 items/s there)",
                           "query": f"GET /api/v1/stats?from={MONTH}-01&to={MONTH}-{DAYS}&region=R1&period=…&group=…",
                           "requests_per_case": args.requests, "goal_ms": GOAL_MS, "seed": args.seed}
    tmp = tempfile.mkdtemp(prefix="hub-stats-")
    for backend in args.backends.split(","):
        out[backend] = run_backend(backend, args, Path(tmp) / backend, n)
    out["ratio"] = (round(out["postgres"]["month_worst_p50_ms"] / out["sqlite"]["month_worst_p50_ms"], 2)
                    if "postgres" in out and "sqlite" in out else None)
    out["ratio_is"] = "worst month p50, PostgreSQL / SQLite"
    out["seconds"] = round(time.monotonic() - started, 1)
    if not args.keep:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        out["kept"] = tmp
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
