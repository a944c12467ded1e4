"""What keeping counter gaps (hub/gaps.py) costs the hub's ingest: the store's `ingest` in-process,
with the gap bookkeeping and without it (its `_write_gaps` replaced by a no-op), same batches, same
run, alternating, each round on a fresh database.

Rig: a `SQLiteStore` in a temp dir (`--backends sqlite,postgres` adds a `PostgresStore` on a new
schema of `--pg-dsn` / HCP_PG_DSN), `--devices` devices registered, `--batches` batches of
`--batch` signed ratings, spread evenly over the devices, counters contiguous. Signing and item
building happen before the clock starts; the clock covers `store.ingest` of every batch.
Scenarios:
- in_order: every device's numbers in order (no gap ever opens: the common case);
- late: a fraction `--late` of each batch's ratings is held back to the next batch, so every batch
  opens gaps and fills the ones the batch before opened (look-ups of stored holes, splits, closes).
Every item must come back `accepted`, and the stored gaps are checked at the end (none open).
Reported per scenario: medians of the whole runs with and without (`cost_pct`; on a busy machine
the difference is within the noise), and the time spent inside `_write_gaps` per batch, measured
in the runs with it (`inside_ms_per_batch_*`, `inside_pct_of_with`): the direct figure.

Usage: .venv/bin/python bench/hub_gaps.py [--quick] [--rounds N]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _harness import emit, log  # noqa: E402

from hcp.protocol import sign_rating  # noqa: E402
from hub.store import HubStore, PostgresStore, SQLiteStore  # noqa: E402
from tests.fixtures.device import device_key  # noqa: E402
from tests.fixtures.hub import rating_item  # noqa: E402

HALL = "H1"


def batches(devices: int, count: int, size: int, late: float, seed: int) -> list[list[dict]]:
    """`count` batches of `size` rating items, counters contiguous per device; a fraction `late` of
    each batch moved to the next one (the last batch keeps its own)."""
    rng = random.Random(seed)
    ids = [f"B{i:03d}" for i in range(devices)]
    keys = {d: device_key(d) for d in ids}
    counters = dict.fromkeys(ids, 0)
    plain: list[list[tuple[str, int]]] = []
    for _ in range(count):
        batch = []
        for i in range(size):
            device = ids[i % devices]
            counters[device] += 1
            batch.append((device, counters[device]))
        plain.append(batch)
    held: list[tuple[str, int]] = []
    out = []
    for index, batch in enumerate(plain):
        batch = held + batch
        held = []
        if late and index < count - 1:
            held = rng.sample(batch, int(len(batch) * late))
            batch = [r for r in batch if r not in set(held)]
        out.append([rating_item(sign_rating(keys[d], HALL, d, n, 1, n, None, 5)) for d, n in batch])
    return out


async def open_store(backend: str, workdir: Path, round_no: int, pg_dsn: str | None) -> HubStore:
    if backend == "sqlite":
        store: HubStore = SQLiteStore(workdir / f"hub-{round_no}.sqlite3")
    else:
        import psycopg

        schema = f"bench_gaps_{os.getpid()}_{round_no}"
        with psycopg.connect(pg_dsn, autocommit=True) as db:  # type: ignore[arg-type]
            db.execute(f"CREATE SCHEMA {schema}")
        store = PostgresStore(f"{pg_dsn}?options=-csearch_path%3D{schema}")
    await store.open()
    return store


async def drop(backend: str, round_no: int, pg_dsn: str | None) -> None:
    if backend == "postgres":
        import psycopg

        with psycopg.connect(pg_dsn, autocommit=True) as db:  # type: ignore[arg-type]
            db.execute(f"DROP SCHEMA bench_gaps_{os.getpid()}_{round_no} CASCADE")


async def run_once(store: HubStore, items: list[list[dict]], devices: int, gaps: bool,
                   inside: list[float]) -> float:
    """Seconds to ingest `items`; with `gaps`, each batch's time inside `_write_gaps` is appended
    to `inside`."""
    for i in range(devices):
        await store.register_device(f"B{i:03d}", HALL, "1", device_key(f"B{i:03d}"))
    write_gaps = store._write_gaps  # type: ignore[attr-defined]

    async def timed(*args: object) -> None:
        t = time.perf_counter()
        await write_gaps(*args)
        inside.append(time.perf_counter() - t)

    async def no_gaps(*_args: object) -> None:
        return None

    store._write_gaps = timed if gaps else no_gaps  # type: ignore[attr-defined,method-assign]
    t0 = time.perf_counter()
    for batch in items:
        results = await store.ingest(HALL, batch)
        if any(r.status != "accepted" for r in results):
            raise SystemExit(f"not accepted: {[r for r in results if r.status != 'accepted'][:3]}")
    elapsed = time.perf_counter() - t0
    if gaps and await store.open_gaps():
        raise SystemExit(f"gaps left open: {await store.open_gaps()}")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 10 batches")
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--pg-dsn", default=os.environ.get("HCP_PG_DSN"))
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--late", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.batches = 2, 10
    figures: dict = {"devices": args.devices, "batches": args.batches, "batch": args.batch,
                     "late": args.late, "rounds": args.rounds}
    scenarios = {"in_order": batches(args.devices, args.batches, args.batch, 0, args.seed),
                 "late": batches(args.devices, args.batches, args.batch, args.late, args.seed)}
    round_no = 0
    with tempfile.TemporaryDirectory(prefix="bench-gaps-") as tmp:
        for backend in args.backends.split(","):
            for scenario, items in scenarios.items():
                times: dict[str, list[float]] = {"with": [], "without": []}
                inside: list[float] = []
                for r in range(args.rounds):
                    for variant in (("with", "without") if r % 2 == 0 else ("without", "with")):
                        round_no += 1
                        store = await open_store(backend, Path(tmp), round_no, args.pg_dsn)
                        try:
                            times[variant].append(await run_once(store, items, args.devices,
                                                                 variant == "with", inside))
                        finally:
                            await store.close()
                            await drop(backend, round_no, args.pg_dsn)
                        log(f"{backend} {scenario} {variant}: {times[variant][-1]:.3f} s")
                ratings = sum(len(b) for b in items)
                with_s, without_s = statistics.median(times["with"]), statistics.median(times["without"])
                figures[f"{backend}_{scenario}"] = {
                    "ratings": ratings, "with_s": round(with_s, 3), "without_s": round(without_s, 3),
                    "with_per_s": round(ratings / with_s), "without_per_s": round(ratings / without_s),
                    "ms_per_batch_added": round((with_s - without_s) / len(items) * 1000, 2),
                    "cost_pct": round((with_s / without_s - 1) * 100, 1),
                    "inside_ms_per_batch_p50": round(statistics.median(inside) * 1000, 3),
                    "inside_ms_per_batch_mean": round(statistics.fmean(inside) * 1000, 3),
                    "inside_pct_of_with": round(sum(inside) / sum(times["with"]) * 100, 2),
                    "all_with_s": [round(t, 3) for t in times["with"]],
                    "all_without_s": [round(t, 3) for t in times["without"]]}
    emit(figures)


if __name__ == "__main__":
    asyncio.run(main())
