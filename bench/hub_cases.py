"""What opening bad-review cases (hub/cases.py, in the ingest transaction) costs the hub's ingest:
the store's `ingest` in-process, with case opening and without it (`cases_sql.open_cases` replaced
by one that opens nothing), same batches, alternating rounds, each round on a fresh database.

Rig: a `SQLiteStore` in a temp dir (`--backends sqlite,postgres` adds a `PostgresStore` on a new
schema of HCP_PG_DSN), `--devices` devices, `--batches` batches of `--batch` signed ratings, a
fraction `--bad` of them 不满意 / 非常不满意 and bound to a service of one of 20 units (the seeds'
halls report well under 1% 差评; 10% is a bad month). Signing and item building happen before the
clock starts; the clock covers `store.ingest` of every batch. Every item must come back
`accepted`, and the cases opened are counted at the end.

Then the home page's to-do over those cases (`to_do`): a third made overdue, a tenth due in 3 hours;
ms for a supervisor of the whole hub and for one unit's handler.

Usage: .venv/bin/python bench/hub_cases.py [--quick] [--rounds N] [--backends sqlite,postgres]
Prints progress on stderr and ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _harness import emit, log  # noqa: E402

from hcp.protocol import sign_rating  # noqa: E402
from hub.store import HubStore, PostgresStore, SQLiteStore, cases_sql  # noqa: E402  (the module)
from hub.store.cases_sql import CaseQuery  # noqa: E402
from tests.fixtures.device import device_key  # noqa: E402
from tests.fixtures.hub import binding, rating_item  # noqa: E402

HALL = "H1"


def batches(devices: int, count: int, size: int, bad: float, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    ids = [f"B{i:03d}" for i in range(devices)]
    keys = {d: device_key(d) for d in ids}
    counters = dict.fromkeys(ids, 0)
    made = []
    for b in range(count):
        items = []
        for i in range(size):
            device = ids[i % devices]
            counters[device] += 1
            n = counters[device]
            score = rng.choice((1, 2)) if rng.random() < bad else rng.choice((3, 4, 5))
            rating = sign_rating(keys[device], HALL, device, n, 1, 1000 + n, None, score)
            items.append(rating_item(rating, bound=binding(f"S{b}-{i}", unit=f"单位{rng.randrange(20):02d}")))
        made.append(items)
    return made


def without_cases(*args, **kwargs):
    return []
    yield  # a generator that opens nothing


async def run(store: HubStore, work: list[list[dict]], devices: int, with_cases: bool) -> float:
    async with store:
        for d in range(devices):
            await store.register_device(f"B{d:03d}", HALL, str(d + 1), device_key(f"B{d:03d}"))
        original = cases_sql.open_cases
        if not with_cases:
            cases_sql.open_cases = without_cases  # type: ignore[assignment]
        try:
            started = time.perf_counter()
            for items in work:
                results = await store.ingest(HALL, items)
                assert all(r.status == "accepted" for r in results)
            elapsed = time.perf_counter() - started
        finally:
            cases_sql.open_cases = original  # type: ignore[assignment]
        opened = (await store.list_cases(CaseQuery(limit=1)))[1]
        expected = sum(r["rating"]["score"] <= 2 for items in work for r in items)
        assert opened == (expected if with_cases else 0), (opened, expected)
    return elapsed


TO_DO_REPEATS = 7


async def to_do_cost(store: HubStore, work: list[list[dict]], devices: int, set_due) -> dict:
    """The home page's to-do (hub.web.cases.to_do_of) over the cases `work` opens: a third of
    them made overdue and a tenth due in 3 hours by `set_due(sql, value)`; ms p50 for a supervisor
    of the whole hub and for one unit's handler."""
    from hub.accounts.model import Principal, Role, Scope
    from hub.web.cases import to_do_of
    async with store:
        for d in range(devices):
            await store.register_device(f"B{d:03d}", HALL, str(d + 1), device_key(f"B{d:03d}"))
        for items in work:
            await store.ingest(HALL, items)
        cases = (await store.list_cases(CaseQuery(limit=1)))[1]
        now = datetime.now(UTC)
        set_due("UPDATE cases SET contact_due = {p} WHERE MOD(id, 3) = 0",
                (now - timedelta(days=1)).isoformat(timespec="milliseconds"))
        set_due("UPDATE cases SET contact_due = {p} WHERE MOD(id, 10) = 1",
                (now + timedelta(hours=3)).isoformat(timespec="milliseconds"))
        out: dict = {"cases": cases}
        for who, role, unit in (("supervisor", Role.SUPERVISOR, None), ("handler", Role.HANDLER, "单位03")):
            person = Principal(1, who, who, role, Scope(None, None, unit), "session", store=store)
            times = []
            for _ in range(TO_DO_REPEATS):
                started = time.perf_counter()
                found = await to_do_of(store, person, datetime.now(UTC))
                times.append((time.perf_counter() - started) * 1000)
            assert found is not None and found.overdue_count and found.due_soon_count
            out[who] = {"ms_p50": round(statistics.median(times), 1), "ms_max": round(max(times), 1),
                        "overdue": found.overdue_count, "due_soon": found.due_soon_count}
    return out


def sql_runner(backend: str, folder: Path, index: int, schema: object):
    """`set_due(sql, value)` on the database of `make_store(backend, folder, index)`."""
    def run_sql(sql: str, value: str) -> None:
        if backend == "sqlite":
            import sqlite3
            with sqlite3.connect(folder / f"r{index}.sqlite3") as db:
                db.execute(sql.format(p="?"), (value,))
            return
        import psycopg
        with psycopg.connect(os.environ["HCP_PG_DSN"], autocommit=True) as conn:
            conn.execute(f"SET search_path TO {schema}")
            conn.execute(sql.format(p="%s"), (value,))
    return run_sql


def make_store(backend: str, folder: Path, index: int) -> tuple[HubStore, object]:
    if backend == "sqlite":
        return SQLiteStore(folder / f"r{index}.sqlite3"), None
    import psycopg
    dsn = os.environ["HCP_PG_DSN"]
    schema = f"bench_cases_{os.getpid()}_{index}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in dsn else "?"
    return PostgresStore(f"{dsn}{sep}options=-csearch_path%3D{schema}"), schema


def drop(schema: object) -> None:
    if schema is None:
        return
    import psycopg
    with psycopg.connect(os.environ["HCP_PG_DSN"], autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--bad", type=float, default=0.10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.rounds = 10, 2
    work = batches(args.devices, args.batches, args.batch, args.bad, seed=7)
    results = {}
    index = 0
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            times: dict[bool, list[float]] = {True: [], False: []}
            for r in range(args.rounds):
                for with_cases in (True, False) if r % 2 == 0 else (False, True):
                    index += 1
                    store, schema = make_store(backend, Path(tmp), index)
                    try:
                        times[with_cases].append(asyncio.run(run(store, work, args.devices, with_cases)))
                    finally:
                        drop(schema)
                    log(f"{backend} round {r + 1} {'with' if with_cases else 'without'} cases: "
                        f"{times[with_cases][-1] * 1000 / args.batches:.1f} ms/batch")
            with_ms = statistics.median(times[True]) * 1000 / args.batches
            without_ms = statistics.median(times[False]) * 1000 / args.batches
            results[backend] = {"ms_per_batch_with": round(with_ms, 2), "ms_per_batch_without": round(without_ms, 2),
                                "cost_ms_per_batch": round(with_ms - without_ms, 2),
                                "cost_pct": round(100 * (with_ms - without_ms) / without_ms, 1)}
            index += 1
            store, schema = make_store(backend, Path(tmp), index)
            try:
                to_do = asyncio.run(to_do_cost(store, work, args.devices, sql_runner(backend, Path(tmp), index, schema)))
            finally:
                drop(schema)
            log(f"{backend} home to-do over {to_do['cases']} cases: supervisor {to_do['supervisor']['ms_p50']} ms, "
                f"handler {to_do['handler']['ms_p50']} ms")
            results[backend]["to_do"] = to_do
    emit({"bench": "hub_cases", "batch": args.batch, "batches": args.batches, "bad": args.bad,
          "rounds": args.rounds, **results})


if __name__ == "__main__":
    main()
