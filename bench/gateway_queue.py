"""The queue-system webhook under load: the real gateway process with N lightweight devices
connected, queue events posted over 16 HTTP connections as fast as they are answered, against a
bare server on the same HTTP stack that commits one SQLite row per request, in the same run.

Rig (per gateway variant, each on a fresh hall): a private Mosquitto, the real gateway
(`python -m gateway`, every device registered at its window, the hub unreachable so services and
ratings stay in the outbox), `--devices` lightweight devices (simulator/lite_device.py, one
LiteFleet loop in this process) that press a score as soon as a prompt opens a session, each
sending health every `--health-s` seconds. The queue driver is a separate process: `--connections`
keep-alive HTTP/1.1 connections (raw asyncio sockets: the client costs little of the 2 cores), each
playing one service after another, round robin over the windows: `called`, `accepted`, `finished`
(the gateway's `prompt_on`), each posted when the previous one was answered, as the simulator's
queue system does (simulator/sim.py `_post`).

Phases per variant: devices connected, `--idle` seconds with no events (the gateway's CPU for
health, presence and the registry sweep over every device: `idle_cpu_pct`), a short warm-up, then
`--seconds` of events. Reported: queue events/s, services/s, answer latency p50/p99 per kind,
gateway CPU ms per service (all of it, and net of the idle rate), the ratings the devices pressed
and whether every one was acked by the end.

Floor (`bare`): the same stack (FastAPI + uvicorn as the gateway runs it, bearer check, JSON body)
answering every event after one INSERT and COMMIT (WAL, synchronous=FULL, BEGIN and COMMIT through
aiosqlite's thread as the gateway's store does), driven by the same driver with the same bodies.
`ratio` = gateway events/s / bare events/s.

`--rev REV` adds a variant running the gateway (and hcp) of a git revision, exported with
`git archive` (the "before" of a change), measured in the same run as the working tree.
`--profile DIR` samples each gateway variant with py-spy (not a dependency: `pip install py-spy`).

Usage: .venv/bin/python bench/gateway_queue.py [--quick] [--devices N] [--seconds S] [--rev REV]
Heavy (full run ~3 min of 2 cores): `flock /tmp/hcp-heavy.lock .venv/bin/python bench/gateway_queue.py`.
Progress on stderr, one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from _gateway_harness import HALL, ROOT, Hall, cpu_s, device_key, emit, log, window_of
from _harness import summary_ms
from _pyspy import Profiler

from simulator.broker import free_port
from simulator.lite_device import LiteDevice, LiteFleet
from simulator.services import GatewayProcess, ServiceProcess

KINDS = ("called", "accepted", "finished")
TOKEN = "bench-queue-token"
CHINA = timezone(timedelta(hours=8))


# ---------------------------------------------------------------------------- the queue driver


def _body(window: str, ticket: str, kind: str, at: datetime, run: str) -> bytes:
    import json
    return json.dumps({"v": 1, "event_id": f"{run}-{window}-{ticket}-{kind}", "type": kind,
                       "ticket": ticket, "window": window, "at": at.isoformat(timespec="seconds"),
                       "staff_id": f"S{int(window) % 50:02d}", "staff_name": "王芳",
                       "matter_code": "M-0101", "matter_name": "居民身份证换领",
                       "unit": "公安局"}, ensure_ascii=False).encode()


async def _drive(port: int, windows: list[str], connections: int, warmup: float, seconds: float,
                 run: str) -> dict[str, Any]:
    """`connections` workers, each playing whole services on its own keep-alive connection."""
    next_window = iter(range(10**9))
    t_start = time.monotonic()
    t_measure = t_start + warmup
    t_end = t_measure + seconds
    lat: dict[str, list[float]] = {k: [] for k in KINDS}
    counts = {"events": 0, "services": 0, "errors": 0}
    at0 = datetime(2026, 11, 23, 9, 0, tzinfo=CHINA)

    async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> int:
        writer.write(b"POST /api/v1/queue/events HTTP/1.1\r\nHost: gateway\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        return status

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < t_end:
                i = next(next_window)
                window = windows[i % len(windows)]
                ticket = f"A{i // len(windows) + 1:03d}"
                at = at0 + timedelta(seconds=i)
                for kind in KINDS:
                    t0 = time.monotonic()
                    status = await post(reader, writer, _body(window, ticket, kind, at, run))
                    t1 = time.monotonic()
                    if status != 200:
                        counts["errors"] += 1
                    if t0 >= t_measure and t1 <= t_end:
                        lat[kind].append(t1 - t0)
                        counts["events"] += 1
                if t1 <= t_end and t0 >= t_measure:
                    counts["services"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return {"counts": counts, "lat": lat, "seconds": seconds}


def _driver_main(conn: Any, *args: Any) -> None:
    conn.send(asyncio.run(_drive(*args)))
    conn.close()


def drive(port: int, windows: list[str], connections: int, warmup: float, seconds: float,
          run: str) -> dict[str, Any]:
    """Run the driver in its own process; -> its counts and latencies."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_driver_main, args=(child, port, windows, connections, warmup,
                                                  seconds, run), daemon=True)
    proc.start()
    out = parent.recv()
    proc.join(10)
    return out


def _answers(res: dict[str, Any], services_s: float) -> dict[str, Any]:
    lat = res["lat"]
    return {k: summary_ms(v) for k, v in lat.items() if v}


# ---------------------------------------------------------------------------- the floor

_BARE_APP = '''
import asyncio, hmac, json, sys, sqlite3
import aiosqlite, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

db_path, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]

async def main():
    db = await aiosqlite.connect(db_path, isolation_level=None, check_same_thread=False)
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, body TEXT)")
    lock = asyncio.Lock()
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.post("/api/v1/queue/events")
    async def event(request: Request):
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"v": 1, "error": "unauthorized"}, status_code=401)
        body = json.loads(await request.body())
        async with lock:
            await db.execute("BEGIN IMMEDIATE")
            db._conn.execute("INSERT OR IGNORE INTO events VALUES (?, ?)",
                             (body["event_id"], json.dumps(body, ensure_ascii=False)))
            await db.execute("COMMIT")
        return JSONResponse({"v": 1, "status": "accepted", "service": body["event_id"], "session": None})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", log_config=None))
    asyncio.get_running_loop().call_later(0.5, lambda: print("bare ready:", flush=True))
    await server.serve()

asyncio.run(main())
'''


class BareServer(ServiceProcess):
    ready_marker = "bare ready:"

    def __init__(self, workdir: Path):
        super().__init__(workdir, "bare")
        self.port = free_port()

    def command(self) -> list[str]:
        return [sys.executable, "-c", _BARE_APP, str(self.workdir / "bare.sqlite3"), str(self.port),
                TOKEN]


# ---------------------------------------------------------------------------- the hall


class PressingDevice(LiteDevice):
    """A lightweight device whose citizen presses a score as soon as a prompt opens a session."""

    def _open_session(self, sess: str, ttl: float) -> None:
        super()._open_session(sess, ttl)
        if sess:
            self.fleet.loop.call_soon(self._button, str(1 + self.last_n % 5))


class SourceGateway(GatewayProcess):
    """The gateway from `src` (gateway/ and hcp/ of a tree), not from this checkout."""

    def __init__(self, workdir: Path, settings: dict, src: Path):
        super().__init__(workdir, settings)
        self.src = src

    def command(self) -> list[str]:
        cmd = super().command()
        return [cmd[0], "-P", *cmd[1:]]  # -P: the cwd is not on sys.path; PYTHONPATH says where

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join([str(self.src), str(ROOT)])
        return env


def export_rev(rev: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "gateway", "hcp"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def cpu_total_s() -> float:
    """Busy CPU seconds of the machine (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:3]) / os.sysconf("SC_CLK_TCK") + sum(fields[5:8]) / os.sysconf("SC_CLK_TCK")


def run_gateway(name: str, src: Path | None, args: argparse.Namespace, profile: Path | None) -> dict:
    with Hall(f"queue-{name}", args.devices, keep=args.keep) as hall:
        gw = hall.make_gateway(name=f"gw-{name}", queue_token=TOKEN,
                               registry_sweep_s=args.sweep_s)
        if src is not None:
            gw = SourceGateway(gw.workdir, gw.settings, src)
            hall._gateways.append(gw)
        gw.start()
        pid = gw.proc.pid
        fleet = LiteFleet()
        devices: list[PressingDevice] = []
        profiler = None
        try:
            t0 = time.monotonic()
            for dev in hall.devices:
                d = PressingDevice(fleet, hall.tmp / "flash" / dev,
                                   {"dev": dev, "hall": HALL, "window": window_of(dev),
                                    "broker_port": hall.broker.port, "health_s": args.health_s},
                                   device_key(dev))
                devices.append(d)
                fleet.run(d._start())
            deadline = time.monotonic() + 120
            while sum(d.connected for d in devices) < len(devices):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {sum(d.connected for d in devices)} of "
                                       f"{len(devices)} devices connected")
                time.sleep(0.2)
            log(f"{name}: {len(devices)} devices connected in {time.monotonic() - t0:.1f}s; "
                f"idle {args.idle:g}s")
            time.sleep(3)  # the births and first sweeps settle
            if profile is not None:
                profiler = Profiler(pid, profile / f"gateway-{name}.txt")
            c0, w0 = cpu_s(pid), time.monotonic()
            time.sleep(args.idle)
            idle_cpu_s = (cpu_s(pid) - c0) / (time.monotonic() - w0)
            log(f"{name}: idle gateway CPU {100 * idle_cpu_s:.1f}%; driving {args.seconds:g}s")
            rated0 = sum(d.counts["rate"] for d in devices)
            windows = [window_of(d) for d in hall.devices]
            box: dict[str, Any] = {}

            def marks() -> None:  # CPU at the start and the end of the measured part
                time.sleep(args.warmup)
                box["c0"], box["m0"], box["r0"] = cpu_s(pid), cpu_total_s(), \
                    sum(d.counts["rate"] for d in devices)
                time.sleep(args.seconds)
                box["c1"], box["m1"], box["r1"] = cpu_s(pid), cpu_total_s(), \
                    sum(d.counts["rate"] for d in devices)

            import threading
            th = threading.Thread(target=marks, daemon=True)
            th.start()
            res = drive(int(gw.settings["http_port"]), windows, args.connections, args.warmup,
                        args.seconds, f"{name}")
            th.join()
            prof = profiler.stop() if profiler is not None else None
            profiler = None
            deadline = time.monotonic() + 60  # every press acked by the gateway
            while any(d.outbox for d in devices) and time.monotonic() < deadline:
                time.sleep(0.2)
            unacked = sum(len(d.outbox) for d in devices)
            rated = sum(d.counts["rate"] for d in devices) - rated0
        finally:
            if profiler is not None:
                profiler.stop()
            for d in devices:
                try:
                    fleet.run(d._stop(True), timeout=5)
                except Exception:  # noqa: BLE001  # teardown goes on
                    pass
            fleet.close()
    c = res["counts"]
    secs = res["seconds"]
    gw_cpu = box["c1"] - box["c0"]
    services = c["services"] or 1
    out = {"events_per_s": round(c["events"] / secs, 1), "services_per_s": round(c["services"] / secs, 2),
           "ratings_per_s": round((box["r1"] - box["r0"]) / secs, 2),
           "errors": c["errors"], "answer_ms": _answers(res, c["services"] / secs),
           "gateway_cpu_pct": round(100 * gw_cpu / secs, 1),
           "gateway_cpu_ms_per_service": round(1000 * gw_cpu / services, 2),
           "gateway_cpu_ms_per_service_net_of_idle": round(1000 * (gw_cpu - idle_cpu_s * secs) / services, 2),
           "idle_cpu_pct": round(100 * idle_cpu_s, 1),
           "machine_busy_pct": round(100 * (box["m1"] - box["m0"]) / secs / (os.cpu_count() or 1), 1),
           "pressed": rated, "unacked_at_end": unacked}
    if prof is not None:
        out["profile"] = prof
    log(f"{name}: {out['events_per_s']} events/s, {out['services_per_s']} services/s, "
        f"{out['gateway_cpu_ms_per_service']} ms CPU/service "
        f"(finished p50 {out['answer_ms'].get('finished', {}).get('p50')} ms), unacked {unacked}")
    return out


def run_bare(args: argparse.Namespace, tmp: Path) -> dict:
    bare = BareServer(tmp / "bare")
    bare.start()
    try:
        pid = bare.proc.pid
        windows = [window_of(f"D{i:03d}") for i in range(1, args.devices + 1)]
        c0 = cpu_s(pid)
        res = drive(bare.port, windows, args.connections, args.warmup, args.seconds, "bare")
        cpu = cpu_s(pid) - c0  # warm-up included: close enough for the floor's CPU per event
    finally:
        bare.stop()
    c = res["counts"]
    total_events = c["events"] * (args.warmup + args.seconds) / args.seconds
    out = {"events_per_s": round(c["events"] / res["seconds"], 1), "errors": c["errors"],
           "answer_ms": _answers(res, 0),
           "cpu_ms_per_event": round(1000 * cpu / max(1.0, total_events), 3)}
    log(f"bare: {out['events_per_s']} events/s, {out['cpu_ms_per_event']} ms CPU/event")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 devices, health every 10 s, 15 s of events")
    ap.add_argument("--devices", type=int, help="lightweight devices (default 2200, quick 200)")
    ap.add_argument("--health-s", type=float, help="devices' health period (default 60, quick 10)")
    ap.add_argument("--seconds", type=float, help="measured seconds of events (default 60, quick 15)")
    ap.add_argument("--idle", type=float, help="seconds with no events (default 20, quick 6)")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--sweep-s", type=float, default=5.0, help="the gateway's registry_sweep_s")
    ap.add_argument("--rev", help="also run the gateway of this git revision (e.g. main)")
    ap.add_argument("--profile", type=Path, metavar="DIR", help="py-spy every gateway variant")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    random.seed(args.seed)
    args.devices = args.devices or (200 if args.quick else 2200)
    args.health_s = args.health_s or (10.0 if args.quick else 60.0)
    args.seconds = args.seconds or (15.0 if args.quick else 60.0)
    args.idle = args.idle if args.idle is not None else (6.0 if args.quick else 20.0)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="hcp-bench-queue-"))
    try:
        bare = run_bare(args, tmp)
        variants: dict[str, dict] = {}
        if args.rev:
            src = export_rev(args.rev, tmp / "rev")
            variants[f"rev:{args.rev}"] = run_gateway("rev", src, args, args.profile)
        variants["tree"] = run_gateway("tree", None, args, args.profile)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    tree = variants["tree"]
    out: dict[str, Any] = {
        "bench": "gateway_queue", "quick": args.quick, "devices": args.devices,
        "health_s": args.health_s, "connections": args.connections, "seconds": args.seconds,
        "bare": bare, **{k: v for k, v in variants.items()},
        "ratio": round(tree["events_per_s"] / bare["events_per_s"], 3),
        "ratio_is": "gateway (working tree) queue events/s / bare FastAPI+SQLite-commit events/s",
    }
    if args.rev:
        before = variants[f"rev:{args.rev}"]
        out["speedup_vs_rev"] = round(tree["events_per_s"] / before["events_per_s"], 2)
    out["wall_s"] = round(time.monotonic() - started, 1)
    emit(out)


if __name__ == "__main__":
    main()
