"""Resident memory of the real gateway process with a backlog of 1,000,000 outbox items: idle,
while it serves its status (JSON, page, Prometheus) and while it drains the backlog into the real hub.

Rig: the real gateway (`python -m gateway`) and, for the drain, the real hub (`python -m hub`,
SQLite); `--devices` devices registered at both. RSS is read from /proc/<pid>/status (VmRSS now,
VmHWM the peak since start). Two gateway runs side by side, on two files:

1. `empty`: the gateway on a file with nothing buffered (the same devices registered): RSS after
   start and after `--status-calls` of each status route.
2. `backlog`: the backlog (`--items`, as the gateway makes rating items) is written straight into
   the outbox through the gateway's own `Store`; the gateway starts with the hub down: RSS after
   start and after the same status calls; then the hub starts and the gateway drains while RSS is
   sampled every 0.25 s (with a status call each time) until the outbox is empty (`--drain-s`
   caps it). `peak_kb` is the gateway's VmHWM at the end: the most it ever held resident.

`ratio` = backlog peak / empty peak (VmHWM; the larger of VmHWM and the sampled VmRSS for the backlog
run, as the kernel updates VmHWM lazily). Goal: peak <= 150 MB with 1M items buffered.

Usage: .venv/bin/python bench/gateway_memory.py [--quick] [--items N] [--drain-s S]
Prints progress on stderr and ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import time

from _gateway_harness import Hall, emit, fill_outbox, log, rss_kb

ROUTES = ("/api/v1/status", "/status", "/metrics")


def serve_status(gw, calls: int) -> dict:
    """`calls` requests to each status route; -> their latency (ms, p50 and max) per route."""
    out = {}
    for route in ROUTES:
        times = []
        for _ in range(calls):
            t = time.monotonic()
            gw.http.get(route).raise_for_status()
            times.append((time.monotonic() - t) * 1000)
        times.sort()
        out[route] = {"p50_ms": round(times[len(times) // 2], 2), "max_ms": round(times[-1], 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100,000 items, drain capped at 20 s")
    ap.add_argument("--items", type=int, help="backlog (default 1,000,000; quick 100,000)")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--status-calls", type=int, default=50)
    ap.add_argument("--drain-s", type=float, help="stop sampling the drain after this (default: "
                                                   "until empty; quick 20)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    items = args.items or (100_000 if args.quick else 1_000_000)
    per_device = -(-items // args.devices)
    items = per_device * args.devices
    drain_cap = args.drain_s or (20.0 if args.quick else 3600.0)
    started = time.monotonic()
    figures: dict = {"bench": "gateway_memory", "quick": args.quick, "items": items,
                     "devices": args.devices, "goal_peak_kb": 150 * 1024}
    with Hall("memory", args.devices, keep=args.keep) as hall:
        # 1. the same gateway with nothing buffered
        empty = hall.make_gateway(hub_url=hall.hub_url, name="gateway-empty")
        empty.start()
        base_start = rss_kb(empty.proc.pid)
        base_status = serve_status(empty, args.status_calls)
        base = rss_kb(empty.proc.pid)
        empty.close()
        log(f"empty outbox: RSS {base['VmRSS']:,} kB, peak {base['VmHWM']:,} kB")
        figures["empty"] = {"after_start_kb": base_start["VmRSS"], "after_status_kb": base["VmRSS"],
                            "peak_kb": base["VmHWM"], "status": base_status}

        # 2. a backlog
        gw = hall.make_gateway(hub_url=hall.hub_url, hub_token="pending")
        hall.start_hub()
        gw.settings["hub_token"] = hall.hub_token
        hall.hub.stop()
        log(f"filling the outbox with {items:,} rating items")
        fill_s = fill_outbox(gw.db_path, hall.devices, per_device)
        db_bytes = gw.db_path.stat().st_size
        log(f"filled in {fill_s:.1f}s; db {db_bytes:,} bytes")
        gw.start()
        after_start = rss_kb(gw.proc.pid)
        status = serve_status(gw, args.status_calls)
        after_status = rss_kb(gw.proc.pid)
        pending0 = gw.status()["outbox"]["pending"]
        log(f"backlog {pending0:,}: RSS after start {after_start['VmRSS']:,} kB, after status calls "
            f"{after_status['VmRSS']:,} kB")
        hall.start_hub()
        t0 = time.monotonic()
        samples = []
        outbox = gw.status()["outbox"]
        while outbox["pending"] and time.monotonic() - t0 < drain_cap:
            time.sleep(0.25)
            outbox = gw.status()["outbox"]
            samples.append(rss_kb(gw.proc.pid)["VmRSS"])
            if len(samples) % 40 == 0:
                log(f"  draining: pending {outbox['pending']:,}, RSS {samples[-1]:,} kB")
        drained = pending0 - outbox["pending"]
        end = rss_kb(gw.proc.pid)
        log(f"drained {drained:,} in {time.monotonic() - t0:.1f}s; peak RSS {end['VmHWM']:,} kB")
        figures["backlog"] = {
            "db_bytes": db_bytes, "pending_at_start": pending0,
            "after_start_kb": after_start["VmRSS"], "after_status_kb": after_status["VmRSS"],
            "status": status,
            "drain": {"seconds": round(time.monotonic() - t0, 1), "items": drained,
                      "per_s": round(drained / max(time.monotonic() - t0, 1e-9)),
                      "rss_kb_max": max(samples, default=None), "rss_kb_last": end["VmRSS"],
                      "samples": len(samples), "complete": outbox["pending"] == 0},
            "peak_kb": end["VmHWM"], "rss_anon_kb": end["RssAnon"], "rss_file_kb": end["RssFile"],
        }
        # VmHWM is updated lazily by the kernel: a sampled VmRSS can exceed it by a page or so
        peak = max(end["VmHWM"], max(samples, default=0))
        figures["peak_kb"] = peak
        figures["ratio"] = round(peak / base["VmHWM"], 3)
        figures["ratio_is"] = ("gateway peak RSS (VmHWM) with the backlog, through status calls and "
                               "the drain / the same gateway with an empty outbox, same run")
        figures["fill_s"] = round(fill_s, 1)
    figures["wall_s"] = round(time.monotonic() - started, 1)
    emit(figures)


if __name__ == "__main__":
    main()
