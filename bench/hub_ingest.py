"""Hub ingest through its HTTP API, on SQLite and on PostgreSQL, against the raw insert rate of the
same rating rows into the same database in the same run (hub issue 5).

Rig, per backend (`--backends`): a fresh database (a SQLite file in a temp dir; a new schema on
PostgreSQL: `--pg-dsn`, else HCP_PG_DSN, else a throwaway cluster), the real hub process on it
(`python -m hub`, uvicorn, as simulator.services.HubProcess runs it; `--db-url` for PostgreSQL), one
gateway and `--devices` devices registered through the admin API. The ratings are signed with each
device's key (hcp.protocol.sign_rating), spread over the devices at random with contiguous counters,
scores mostly 5; a fraction `--bound` is bound to a service and preceded by that service's item (as
the gateway forwards both), the rest unbound with a reason. Items go in batches of `--batch` (500)
items, serialized before the clock starts, posted by `--clients` keep-alive httpx clients in threads.

Rounds (`--rounds`, each `--ratings`/rounds ratings), each:
1. api: every batch posted; rate = ratings / (first post -> last answer). Every item must come back
   `accepted` (the run fails otherwise) and the hub's table must then hold every rating;
2. the round's rows are read back from the hub's own tables (every column the hub wrote, in its
   ingest order; not timed) and inserted with the bare driver into fresh clones of the tables
   (same DDL: constraints, indexes, foreign keys), in the same database:
   - raw: rating rows, `--raw-txn` (500) rows per transaction, executemany;
   - raw COPY (PostgreSQL): the same rows with COPY, one COPY per transaction of 500;
   - raw items: each API batch's own rows (its ratings and services), one transaction per batch;
   - raw records: the same with the ledger entries of those ratings and services, which every
     ingest must write (the issue's ledger): a floor under any design of the hub.
`ratio` = api ratings/s / raw ratings rows/s, per round, median over the rounds (PostgreSQL: against
COPY, the driver's fastest way in; `ratio_executemany` against executemany). `ratio_items` = api
items/s / raw items/s (the services' rows included on both sides). `ratio_ceiling` = raw records
ratings/s / the ratio's baseline: the ratio a hub that spent nothing but those inserts would reach. Goal: ratio >= 0.3 and >= 20,000
ratings/s. CPU seconds per phase: the hub process, PostgreSQL, this process (the clients), the
machine's busy cores (2 on this machine: the hub, the database and the clients share them) and the
cores busy with anything else (`others_busy_cores`: a shared machine's load). `cpu_ratio` compares
CPU per row instead (raw: driver + server; api: hub + server), which that load disturbs less.

`--profile DIR` samples the hub with py-spy (`pip install py-spy`; not a dependency of the project)
through the api phases and reports where its time goes; sampling slows the hub a little, so take
the rates from a run without it.

Usage: .venv/bin/python bench/hub_ingest.py [--quick] [--backends sqlite,postgres] [--ratings N]
Prints progress on stderr and ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from _harness import emit, log, pct
from _hub_harness import CpuMeter, Database, chunks, open_database
from _pyspy import Profiler

import httpx  # noqa: E402

from hcp.protocol import sign_rating  # noqa: E402

GOAL_RATIO = 0.3
GOAL_RATINGS_PER_S = 20_000
HALL = "H1"
GATEWAY_KEY = hashlib.sha256(b"bench-gateway-key").digest()
INGEST_PATH = "/api/v1/ingest"
HTTP_TIMEOUT_S = 120.0  # a batch waits behind the others' on a loaded machine; never a false failure
TZ = timezone(timedelta(hours=8))
START_WALL = datetime(2026, 11, 23, 9, 0, tzinfo=TZ).timestamp()
PRESS_EVERY_S = 41.0  # one device's ratings are this far apart (wall and mono)
SCORE_WEIGHTS = (1, 2, 4, 8, 85)  # scores 1..5: most citizens press 非常满意
UNBOUND = ("no_service_in_progress", "unknown_session", "session_already_rated")
UNBOUND_WEIGHTS = (7, 2, 1)
MATTERS = (("11220100MB1234567X4000117001", "企业设立登记"), ("11220100MB1234567X4000117002", "不动产登记"),
           ("11220100MB1234567X4000117003", "社会保障卡申领"), ("11220100MB1234567X4000117004", "户籍迁移"))
STAFF_NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆")
UNIT = "长春市政务服务中心"
RATING_KEY = "seq"  # the ratings table's ingest order (hub/migrations.py)
RAW_RATINGS, RAW_COPY = "bench_raw_ratings", "bench_raw_ratings_copy"
RAW_ITEM_RATINGS, RAW_ITEM_SERVICES = "bench_raw_item_ratings", "bench_raw_item_services"
RAW_REC_RATINGS, RAW_REC_SERVICES, RAW_REC_LEDGER = ("bench_raw_rec_ratings", "bench_raw_rec_services",
                                                     "bench_raw_rec_ledger")


# ---------------------------------------------------------------------------- the workload


def device_ids(count: int) -> list[str]:
    return [f"D{i:03d}" for i in range(1, count + 1)]


def device_key(dev: str) -> bytes:
    return hashlib.sha256(b"bench-key:" + dev.encode()).digest()


def window_of(dev: str) -> str:
    return str(int(dev[1:]))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, TZ).isoformat(timespec="milliseconds")


class Workload:
    """Ingest items as a hall's gateway forwards them: signed ratings, contiguous per device,
    each bound one (probability `bound`) preceded by the item of the service it rates."""

    def __init__(self, devices: list[str], bound: float, seed: int):
        self.devices = devices
        self.bound = bound
        self.rng = random.Random(seed)
        self.keys = {dev: device_key(dev) for dev in devices}
        self.next_n = dict.fromkeys(devices, 1)
        self.services = 0

    def make(self, ratings: int) -> list[dict]:
        rng, items = self.rng, []
        for _ in range(ratings):
            dev = rng.choice(self.devices)
            n = self.next_n[dev]
            self.next_n[dev] = n + 1
            mono = 5_000 + round(PRESS_EVERY_S * 1000) * n  # ms since boot 1
            wall = START_WALL + PRESS_EVERY_S * n + rng.random()
            binding, reason, sess = None, None, None
            if rng.random() < self.bound:
                service = self._service(window_of(dev), wall)
                items.append(service)
                sess = service["id"]
                binding = {"service": sess, **{k: service[k] for k in (
                    "ticket", "window", "staff_id", "matter_code", "case_no", "unit")}}
            else:
                reason = rng.choices(UNBOUND, UNBOUND_WEIGHTS)[0]
                if reason != "no_service_in_progress":  # the device answered a session
                    sess = f"{rng.getrandbits(64):016x}"
            score = rng.choices(range(1, 6), SCORE_WEIGHTS)[0]
            rating = sign_rating(self.keys[dev], HALL, dev, n, 1, mono, sess, score)
            items.append({"kind": "rating", "rating": rating.payload(), "received_at": iso(wall),
                          "offset_ms": round(wall * 1000) - mono, "binding": binding,
                          "unbound_reason": reason})
        return items

    def _service(self, window: str, wall: float) -> dict:
        self.services += 1
        code, name = self.rng.choice(MATTERS)
        return {"kind": "service", "id": f"{self.rng.getrandbits(64):016x}",
                "ticket": f"A{self.services % 1000:03d}", "window": window,
                "staff_id": f"S{int(window):03d}", "matter_code": code,
                "case_no": f"2026112322{self.services:08d}", "unit": UNIT,
                "staff_name": self.rng.choice(STAFF_NAMES), "matter_name": name,
                "accepted_at": iso(wall - 420), "finished_at": iso(wall - 15), "outcome": "finished"}


@dataclass
class Batch:
    body: bytes
    ratings: list[tuple[str, int]]  # (device, n) in item order
    services: list[str]  # service ids

    @property
    def items(self) -> int:
        return len(self.ratings) + len(self.services)


def make_batches(items: list[dict], size: int) -> list[Batch]:
    out = []
    for chunk in chunks(items, size):
        body = json.dumps({"v": 1, "hall": HALL, "items": list(chunk)}, separators=(",", ":"),
                          ensure_ascii=False).encode()
        ratings = [(i["rating"]["dev"], i["rating"]["n"]) for i in chunk if i["kind"] == "rating"]
        out.append(Batch(body, ratings, [i["id"] for i in chunk if i["kind"] == "service"]))
    return out


# ---------------------------------------------------------------------------- the clients


@dataclass
class Posted:
    wall_s: float
    latencies_s: list[float]
    statuses: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


class ClientPool:
    """`size` keep-alive httpx clients of one gateway token; `post(batches)` posts every batch,
    each client taking the next one when its answer is in."""

    def __init__(self, url: str, token: str, size: int):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.clients = [httpx.Client(base_url=url, headers=headers, timeout=HTTP_TIMEOUT_S)
                        for _ in range(size)]

    def post(self, batches: list[Batch]) -> Posted:
        taken = itertools.count()
        latencies = [0.0] * len(batches)
        per_thread = [Posted(0.0, []) for _ in self.clients]
        start = threading.Barrier(len(self.clients) + 1)

        def work(client: httpx.Client, out: Posted) -> None:
            start.wait()
            while (i := next(taken)) < len(batches):
                t = time.perf_counter()
                try:
                    response = client.post(INGEST_PATH, content=batches[i].body)
                except httpx.HTTPError as exc:
                    out.problems.append(f"batch {i}: {exc!r}")
                    continue
                latencies[i] = time.perf_counter() - t
                if response.status_code != 200:
                    out.problems.append(f"batch {i}: HTTP {response.status_code} {response.text[:200]}")
                    continue
                for result in response.json()["results"]:
                    out.statuses[result["status"]] += 1
                    if result["status"] != "accepted" and len(out.problems) < 5:
                        out.problems.append(f"batch {i}: {result}")

        threads = [threading.Thread(target=work, args=(c, o), daemon=True)
                   for c, o in zip(self.clients, per_thread, strict=True)]
        for thread in threads:
            thread.start()
        start.wait()
        t0 = time.perf_counter()
        for thread in threads:
            thread.join()
        posted = Posted(time.perf_counter() - t0, latencies)
        for out in per_thread:
            posted.statuses.update(out.statuses)
            posted.problems += out.problems
        return posted

    def close(self) -> None:
        for client in self.clients:
            client.close()


# ---------------------------------------------------------------------------- one backend


def run_backend(db: Database, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    devices = device_ids(args.devices)
    hub = db.hub(workdir / "hub")
    hub.start()
    assert hub.proc is not None
    hub_pid = hub.proc.pid
    pool = profiler = None
    try:
        token = hub.register_gateway(HALL, GATEWAY_KEY)
        for dev in devices:
            hub.register_device(dev, HALL, window_of(dev), device_key(dev))
        pool = ClientPool(hub.url, token, args.clients)
        workload = Workload(devices, args.bound, args.seed)
        warm_batches = make_batches(workload.make(args.clients * 100), args.batch)
        warm = pool.post(warm_batches)
        if warm.problems or warm.statuses["accepted"] != sum(b.items for b in warm_batches):
            raise RuntimeError(f"warm-up: {dict(warm.statuses)}; {warm.problems[:5]}")
        clones = [(RAW_RATINGS, "ratings"), (RAW_ITEM_RATINGS, "ratings"), (RAW_ITEM_SERVICES, "services"),
                  (RAW_REC_RATINGS, "ratings"), (RAW_REC_SERVICES, "services"), (RAW_REC_LEDGER, "ledger")]
        if db.backend == "postgres":
            clones.append((RAW_COPY, "ratings"))
        for clone, table in clones:
            db.clone(table, clone)
        rating_cols = db.columns("ratings")
        at_dev, at_n = rating_cols.index("device"), rating_cols.index("n")
        at_sid = db.columns("services").index("id")
        ledger_cols = db.columns("ledger")
        at_kind, at_ref = ledger_cols.index("kind"), ledger_cols.index("ref")
        api_meter = CpuMeter({"hub": lambda: [hub_pid], "bench": lambda: [os.getpid()],
                              **db.cpu_groups()})
        raw_meter = CpuMeter({"bench": lambda: [os.getpid()], **db.cpu_groups()})
        if args.profile:
            profiler = Profiler(hub_pid, Path(args.profile) / f"hub-{db.backend}.txt")
        per_round = -(-args.ratings // args.rounds)
        rounds, latencies = [], []
        for r in range(1, args.rounds + 1):
            items = workload.make(per_round)
            batches = make_batches(items, args.batch)
            n_items = sum(b.items for b in batches)
            before = db.scalar(f"SELECT COALESCE(MAX({RATING_KEY}), 0) FROM ratings")
            ledger_before = db.scalar("SELECT COALESCE(MAX(seq), 0) FROM ledger")
            api_meter.start()
            posted = pool.post(batches)
            api = {"s": round(posted.wall_s, 3), **api_meter.used(posted.wall_s)}
            if posted.problems or posted.statuses["accepted"] != n_items:
                raise AssertionError(f"round {r}: {dict(posted.statuses)} of {n_items} items; "
                                     f"first problems: {posted.problems[:5]}")
            latencies += posted.latencies_s
            rows = db.rows_after("ratings", RATING_KEY, before)
            by_key = {(row[at_dev], row[at_n]): row for row in rows}
            posted_keys = {key for b in batches for key in b.ratings}
            if len(rows) != per_round or set(by_key) != posted_keys:
                raise AssertionError(f"round {r}: the hub stored {len(rows)} ratings, "
                                     f"{len(posted_keys - set(by_key))} of {per_round} posted missing")
            service_rows = {row[at_sid]: row for row in db.rows_where_in(
                "services", "id", [sid for b in batches for sid in b.services])}
            ledger_rows = {(row[at_kind], row[at_ref]): row
                           for row in db.rows_after("ledger", "seq", ledger_before)}
            rnd = {"ratings": per_round, "items": n_items, "batches": len(batches), "api": api,
                   "api_ratings_per_s": round(per_round / posted.wall_s),
                   "api_items_per_s": round(n_items / posted.wall_s),
                   **raw_phases(db, args.raw_txn, raw_meter, rows, batches, by_key, service_rows,
                                ledger_rows)}
            rounds.append(rnd)
            log(f"{db.backend} round {r}: api {rnd['api_ratings_per_s']:,} ratings/s "
                f"({rnd['api_items_per_s']:,} items/s, hub CPU {api['hub_cpu_s']} s, busy cores "
                f"{api['machine_busy_cores']}, others' {api['others_busy_cores']}); "
                f"raw executemany {rnd['raw_rows_per_s']:,} rows/s"
                + (f", COPY {rnd['raw_copy_rows_per_s']:,} rows/s" if "raw_copy" in rnd else "")
                + f"; raw items {rnd['raw_items_per_s']:,}/s; raw records "
                f"{rnd['raw_records_ratings_per_s']:,} ratings/s")
        profile = profiler.stop() if profiler else None
        profiler = None
        stored = db.scalar("SELECT COUNT(*) FROM ratings")
        made = sum(n - 1 for n in workload.next_n.values())
        rejected = db.scalar("SELECT COUNT(*) FROM rejections")
        if stored != made or rejected:
            raise AssertionError(f"the hub holds {stored} ratings of {made} posted, {rejected} rejections")
        return figures(db, args, rounds, latencies, stored, profile)
    finally:
        if profiler is not None:
            profiler.stop()
        if pool is not None:
            pool.close()
        hub.close()


def raw_phases(db: Database, txn_rows: int, meter: CpuMeter, rows: list[tuple], batches: list[Batch],
               by_key: dict[tuple[str, int], tuple], service_rows: dict[str, tuple],
               ledger_rows: dict[tuple[str, str], tuple]) -> dict[str, Any]:
    """The round's raw inserts, timed: the rating rows `txn_rows` per transaction by executemany,
    by COPY (PostgreSQL), each API batch's rows (ratings and services) per transaction, and each
    batch's records: its ratings and services with their ledger entries, the rows the issue asks of
    every ingest (the hub's other rows, rollups, counters and gaps, are left out: this is a floor)."""
    ratings = len(rows)
    items = sum(b.items for b in batches)
    raw = timed(meter, lambda: [db.transaction([(RAW_RATINGS, list(chunk))])
                                for chunk in chunks(rows, txn_rows)])
    out = {"raw": raw, "raw_rows_per_s": round(ratings / raw["s"])}
    if db.backend == "postgres":
        copy = timed(meter, lambda: [db.copy(RAW_COPY, list(chunk)) for chunk in chunks(rows, txn_rows)])
        out |= {"raw_copy": copy, "raw_copy_rows_per_s": round(ratings / copy["s"])}
    raw_items = timed(meter, lambda: [db.transaction([
        (RAW_ITEM_RATINGS, [by_key[k] for k in b.ratings]),
        (RAW_ITEM_SERVICES, [service_rows[s] for s in b.services])]) for b in batches])
    out |= {"raw_items": raw_items, "raw_items_per_s": round(items / raw_items["s"])}
    records = timed(meter, lambda: [db.transaction([
        (RAW_REC_RATINGS, [by_key[k] for k in b.ratings]),
        (RAW_REC_SERVICES, [service_rows[s] for s in b.services]),
        (RAW_REC_LEDGER, [ledger_rows[("rating", f"{dev}:{n}")] for dev, n in b.ratings]
         + [ledger_rows[("service", s)] for s in b.services])]) for b in batches])
    return out | {"raw_records": records, "raw_records_ratings_per_s": round(ratings / records["s"])}


def timed(meter: CpuMeter, work: Any) -> dict[str, Any]:
    meter.start()
    t0 = time.perf_counter()
    work()
    wall = time.perf_counter() - t0
    return {"s": round(wall, 3), **meter.used(wall)}


def figures(db: Database, args: argparse.Namespace, rounds: list[dict], latencies: list[float],
            stored: int, profile: dict | None) -> dict[str, Any]:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def med_ratio(num: str, den: str) -> float:
        return round(statistics.median(r[num] / r[den] for r in rounds), 3)

    def cpu_per_row(phase: str, groups: tuple[str, ...]) -> float:
        """µs of CPU per rating row of `phase` in the processes of `groups` (summed over rounds)."""
        return 1e6 * sum(r[phase].get(f"{g}_cpu_s", 0.0) for r in rounds for g in groups) / ratings

    baseline = "raw_copy_rows_per_s" if db.backend == "postgres" else "raw_rows_per_s"
    ratings = sum(r["ratings"] for r in rounds)
    hub_cpu = sum(r["api"]["hub_cpu_s"] for r in rounds)
    api_s = sum(r["api"]["s"] for r in rounds)
    # CPU per row: the API's is the hub's and the database server's (not the clients': they play the
    # gateway); the raw one is this process's (the driver, and SQLite's engine itself) and the server's
    api_cpu = cpu_per_row("api", ("hub", "postgres"))
    raw_cpu = cpu_per_row("raw_copy" if db.backend == "postgres" else "raw", ("bench", "postgres"))
    out: dict[str, Any] = {
        "ratings": ratings, "items": sum(r["items"] for r in rounds),
        "batches": sum(r["batches"] for r in rounds),
        "api_ratings_per_s": round(med("api_ratings_per_s")),
        "api_items_per_s": round(med("api_items_per_s")),
        "raw_rows_per_s": round(med("raw_rows_per_s")),
        "raw_method": db.method + f"; {args.raw_txn} rating rows per transaction",
    }
    if db.backend == "postgres":
        out |= {"raw_copy_rows_per_s": round(med("raw_copy_rows_per_s")),
                "raw_copy_method": f"psycopg 3 (sync) COPY ... FROM STDIN, write_row per row, one COPY "
                                   f"per transaction of {args.raw_txn} rows"}
    out |= {
        "ratio": med_ratio("api_ratings_per_s", baseline),
        "ratio_is": "api ratings/s / raw " + ("COPY" if db.backend == "postgres" else "executemany")
                    + " rating rows/s, same rows, same database, same round (median over rounds)",
        **({"ratio_executemany": med_ratio("api_ratings_per_s", "raw_rows_per_s")}
           if db.backend == "postgres" else {}),
        "raw_items_per_s": round(med("raw_items_per_s")),
        "ratio_items": med_ratio("api_items_per_s", "raw_items_per_s"),
        "raw_records_ratings_per_s": round(med("raw_records_ratings_per_s")),
        "ratio_ceiling": med_ratio("raw_records_ratings_per_s", baseline),
        "ratio_ceiling_is": "raw records ratings/s / the ratio's baseline: each batch's ratings, "
                            "services and their ledger entries inserted with the bare driver, one "
                            "transaction per batch: the ratio a hub that did nothing but write the "
                            "rows every ingest must write would reach",
        "batch_latency_ms": {"p50": round(pct(latencies, 50) * 1000, 1),
                             "p99": round(pct(latencies, 99) * 1000, 1),
                             "max": round(max(latencies) * 1000, 1)},
        "api_cpu_us_per_rating": round(api_cpu, 1),
        "raw_cpu_us_per_row": round(raw_cpu, 1),
        "cpu_ratio": round(raw_cpu / api_cpu, 3),
        "cpu_ratio_is": "raw CPU per row / api CPU per rating (hub + database server), the ratio's "
                        "baseline: what the ratio would be with a core free for each side (waits for "
                        "fsync and for a busy machine's cores are not in it)",
        "hub_cpu_s": round(hub_cpu, 2),
        "hub_cpu_us_per_rating": round(hub_cpu * 1e6 / ratings),
        "hub_cpu_cores": round(hub_cpu / api_s, 2),
        "goal_met": med("api_ratings_per_s") >= GOAL_RATINGS_PER_S
                    and med_ratio("api_ratings_per_s", baseline) >= GOAL_RATIO,
        "rounds": rounds,
        "ratings_stored": stored,
        "database": db.info(),
    }
    if profile is not None:
        out["hub_profile"] = profile
    return out


# ---------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    mem = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_mb": int(mem) // 1024,
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3]}


def code_state() -> dict[str, Any]:
    """The commit, and the hub files that differ from it (the ingest path is measured as it is)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent.parent), *args],
                              capture_output=True, text=True, timeout=30)
        return done.stdout.rstrip() if done.returncode == 0 else "?"
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "hub_changed": [line[3:] for line in git("status", "--porcelain", "--", "hub").splitlines()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20,000 ratings per backend in 2 rounds")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--ratings", type=int,
                    help="measured ratings per backend (default 200,000; quick 20,000)")
    ap.add_argument("--rounds", type=int, help="rounds per backend (default 4; quick 2)")
    ap.add_argument("--batch", type=int, default=500, help="items per API batch")
    ap.add_argument("--raw-txn", type=int, default=500, help="rating rows per raw transaction")
    ap.add_argument("--clients", type=int, default=3, help="concurrent keep-alive HTTP clients")
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--bound", type=float, default=0.8,
                    help="share of ratings bound to a service (each with its service item)")
    ap.add_argument("--pg-dsn", help="PostgreSQL server (default HCP_PG_DSN, else a throwaway cluster)")
    ap.add_argument("--profile", metavar="DIR", help="py-spy the hub through the api phases")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (SQLite file, hub logs)")
    args = ap.parse_args()
    args.ratings = args.ratings or (20_000 if args.quick else 200_000)
    args.rounds = args.rounds or (2 if args.quick else 4)
    if threading.current_thread() is threading.main_thread():  # SIGTERM unwinds like Ctrl-C
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="hcp-bench-hub-ingest-"))
    out: dict[str, Any] = {"bench": "hub_ingest", "quick": args.quick, "seed": args.seed,
                           "ratings_per_backend": args.ratings, "rounds": args.rounds,
                           "batch_items": args.batch, "raw_txn_rows": args.raw_txn,
                           "clients": args.clients, "devices": args.devices, "bound": args.bound,
                           "goal": {"ratio": GOAL_RATIO, "ratings_per_s": GOAL_RATINGS_PER_S},
                           "machine": machine(), "code": code_state()}
    try:
        for backend in args.backends.split(","):
            log(f"{backend}: opening the database")
            db = open_database(backend, tmp / backend, args.pg_dsn)
            try:
                out[backend] = run_backend(db, args, tmp / backend)
            finally:
                db.close()
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    backends = [b for b in args.backends.split(",") if b in out]
    out["ratio"] = {b: out[b]["ratio"] for b in backends}
    out["ratio_is"] = ("api ratings/s / raw insert rate of the same rating rows into the same database "
                       "in the same run (SQLite: executemany; PostgreSQL: COPY), per backend")
    out["api_ratings_per_s"] = {b: out[b]["api_ratings_per_s"] for b in backends}
    out["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    out["wall_s"] = round(time.monotonic() - started, 1)
    emit(out)


if __name__ == "__main__":
    main()
