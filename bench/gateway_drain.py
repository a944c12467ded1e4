"""Backlog drain after a hub outage: how fast the real gateway empties its outbox into the real hub.

Rig: the real hub (`python -m hub`, SQLite) and the real gateway (`python -m gateway`) on this
machine; `--devices` devices registered at both, with their keys at the hub, which verifies every
signature. The backlog (`--items` rating items, as the gateway makes them: signed payload, gateway
receive time, offset, binding) is written straight into the gateway's outbox through its own
`Store`, interleaved across devices in counter order, so the outage costs no MQTT time. Then:

1. the gateway starts with the hub down (the outage): the forwarder fails and backs off;
2. the hub starts; t0 = its ready line;
3. t1 = the gateway's status shows the outbox with nothing pending, and the hub's file holds every
   rating. Rate = items / (t1 - t0), which includes the forwarder's wait for its next retry
   (`retry_max_s` 1 s here; reported as `first_progress_s`).

Checked: the hub holds exactly `--items` ratings, nothing was rejected (`dead` = 0), and per device
the hub's insertion order (`seq`) follows the counter (in order per device).

Usage: .venv/bin/python bench/gateway_drain.py [--quick] [--items N] [--batch N]
Prints progress on stderr and ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import sqlite3
import time

from _gateway_harness import Hall, cpu_s, emit, fill_outbox, log, rss_kb, wait_outbox


def hub_order_ok(db_path) -> tuple[int, int]:
    """(ratings at the hub, devices whose ratings were stored out of counter order)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        total = con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
        bad = con.execute(
            "SELECT COUNT(*) FROM (SELECT device, n, LAG(n) OVER (PARTITION BY device ORDER BY seq) AS prev "
            "FROM ratings) WHERE prev IS NOT NULL AND n <= prev").fetchone()[0]
        return total, bad
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50,000 items instead of 1,000,000")
    ap.add_argument("--items", type=int, help="backlog size (default 1,000,000; quick 50,000)")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--batch", type=int, default=None, help="gateway forward_batch (default: its own)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    items = args.items or (50_000 if args.quick else 1_000_000)
    per_device = -(-items // args.devices)
    items = per_device * args.devices
    started = time.monotonic()
    settings = {"forward_batch": args.batch} if args.batch else {}
    with Hall("drain", args.devices, keep=args.keep) as hall:
        gw = hall.make_gateway(hub_url=hall.hub_url, hub_token="pending", **settings)
        # the hub registers this gateway on its first start; the token is only known then
        hall.start_hub()
        gw.settings["hub_token"] = hall.hub_token
        hall.hub.stop()
        log(f"filling the outbox with {items:,} rating items ({args.devices} devices)")
        fill_s = fill_outbox(gw.db_path, hall.devices, per_device)
        log(f"filled in {fill_s:.1f}s ({items / fill_s:,.0f}/s); db {gw.db_path.stat().st_size:,} bytes")
        gw.start()
        st = gw.status()
        assert st["outbox"]["pending"] == items, st["outbox"]
        time.sleep(1.5)  # the outage: the forwarder has failed at least once
        down = gw.status()["hub"]
        log(f"hub down: link {down['state']}, failures {down['failures']}")
        gw_cpu0 = cpu_s(gw.proc.pid)
        hall.start_hub()
        t0 = time.monotonic()
        hub_cpu0 = cpu_s(hall.hub.proc.pid)
        log("hub up: draining")
        outbox, samples = wait_outbox(gw, lambda o: o["pending"] == 0, timeout=3600)
        t1 = time.monotonic()
        gw_cpu, hub_cpu = cpu_s(gw.proc.pid) - gw_cpu0, cpu_s(hall.hub.proc.pid) - hub_cpu0
        first = next((t for t, o in samples if o["pending"] < items), t1)
        at_hub, out_of_order = hub_order_ok(hall.hub.db_path)
        st = gw.status()
        rate = items / (t1 - t0)
        log(f"drained {items:,} in {t1 - t0:.1f}s: {rate:,.0f}/s; hub holds {at_hub:,}")
        emit({
            "bench": "gateway_drain",
            "quick": args.quick,
            "items": items,
            "devices": args.devices,
            "forward_batch": st.get("hub", {}).get("batch_limit"),
            "drain_s": round(t1 - t0, 2),
            "drain_per_s": round(rate),
            "goal_per_s": 10_000,
            "first_progress_s": round(first - t0, 2),
            "drain_per_s_after_first_progress": round(items / max(t1 - first, 1e-9)),
            "hub_ratings": at_hub,
            "hub_out_of_order_devices": out_of_order,
            "outbox": outbox,
            "forward": {k: v for k, v in st["counters"].items() if k.startswith("forward.")},
            "gateway_cpu_s": round(gw_cpu, 1),
            "hub_cpu_s": round(hub_cpu, 1),
            "gateway_rss_kb": rss_kb(gw.proc.pid),
            "hub_rss_kb": rss_kb(hall.hub.proc.pid),
            "fill_s": round(fill_s, 1),
            "wall_s": round(time.monotonic() - started, 1),
        })


if __name__ == "__main__":
    main()
