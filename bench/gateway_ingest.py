"""Sustained durable ingest: signed ratings from many devices through Mosquitto into the real
gateway's committed SQLite outbox, with the device acks sent back, against a bare paho subscriber
receiving the same stream from the same broker in the same run.

Rig: a private Mosquitto (`max_inflight_messages 1000`, see below), the real gateway process
(`python -m gateway`, every device registered, the hub unreachable so everything stays in the
outbox), and `--devices` device clients (paho, QoS 1, clean session as the firmware) spread over
`--procs` worker processes. Ratings are signed before the clock starts.

Rounds alternate (bare, gateway, bare, gateway, ...), each publishing `--per-device` ratings from
every device at once, interleaved across devices:
- bare: a plain paho subscriber on `hcp/v1/B1/+/rating` (auto PUBACK, nothing else); the stream is
  published under hall B1, where the gateway has no subscription, so its persistent session never
  queues it. Rate = ratings / (first publish -> last receipt).
- gateway: the same stream under hall H1. Rate = ratings / (first publish -> last device ack
  delivered): every rating decoded, bound, written with its outbox item, COMMITted (WAL,
  synchronous=FULL), acked to the device, PUBACKed to Mosquitto. The acks are counted by one
  subscriber on `hcp/v1/H1/+/ack` (the gateway's work per ack is the same; 100 subscribing device
  threads would only load the machine the gateway runs on).
Also reported: CPU seconds of every process per round, the machine's idle time, the file's size.
`ratio` = gateway rate / bare rate (medians over the rounds). Goal >= 0.5.

Mosquitto's default `max_inflight_messages` of 20 caps how many un-PUBACKed messages it sends one
client; the gateway PUBACKs only after COMMIT, so 20 would cap each commit group at 20 messages.
`--inflight` sets it (default 1000); `--inflight 20` shows the default's cost (none measurable on
Mosquitto 2.0.11, whose cap holds only until the client's first PUBACKs).

Usage: .venv/bin/python bench/gateway_ingest.py [--quick] [--devices N] [--per-device N] [--rounds N]
Prints progress on stderr and ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _gateway_harness import BARE_HALL, HALL, Devices, Hall, Subscriber, cpu_s, emit, log, rss_kb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 devices x 100 ratings, 1 round each")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--per-device", type=int, help="ratings per device per round (default 300, quick 100)")
    ap.add_argument("--rounds", type=int, help="rounds of each kind (default 3, quick 1)")
    ap.add_argument("--procs", type=int, default=2, help="device worker processes")
    ap.add_argument("--inflight", type=int, default=1000, help="Mosquitto max_inflight_messages")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    per_device = args.per_device or (100 if args.quick else 300)
    rounds = args.rounds or (1 if args.quick else 3)
    started = time.monotonic()
    with Hall("ingest", args.devices, keep=args.keep,
              broker_config=f"max_inflight_messages {args.inflight}") as hall:
        gw = hall.make_gateway()
        gw.start()
        devices = Devices(hall.broker.port, hall.devices, args.procs)
        bare = Subscriber(hall.broker.port, f"hcp/v1/{BARE_HALL}/+/rating", "bench-bare")
        acks = Subscriber(hall.broker.port, f"hcp/v1/{HALL}/+/ack", "bench-acks")
        try:
            # warm-up: first connections, first pages of the file, imports on first use
            devices.round(HALL, 1, 2)
            acks.wait(2 * len(hall.devices))
            devices.round(BARE_HALL, 1, 2)
            bare.wait(2 * len(hall.devices))
            n = 3
            bare_rates, gw_rates, gw_rounds, bare_cpu = [], [], [], []
            for i in range(rounds):
                total = per_device * len(hall.devices)
                bare.reset()
                cpu = CpuMeter(hall, gw, devices)
                res = devices.round(BARE_HALL, n, per_device)
                last = bare.wait(total)
                bare_cpu.append(cpu.used())
                bare_rates.append(total / (last - res["t0"]))
                log(f"round {i + 1}: bare subscriber {bare_rates[-1]:,.0f}/s "
                    f"(publishers done in {res['t_puback'] - res['t0']:.2f}s)")
                cpu = CpuMeter(hall, gw, devices)
                acks.reset()
                res = devices.round(HALL, n, per_device)
                wall = acks.wait(total) - res["t0"]
                round_cpu = cpu.used()
                gw_rates.append(total / wall)
                ok = acks.by_status.get("ok", 0)
                gw_rounds.append({"ratings": total, "s": round(wall, 3), "acks": dict(acks.by_status),
                                  "cpu_s": round_cpu})
                log(f"round {i + 1}: gateway {gw_rates[-1]:,.0f}/s durable+acked ({ok} ok of {total})")
                n += per_device
            st = gw.status()
            committed = gw_status_ratings(gw)
            expected = len(hall.devices) * (2 + rounds * per_device)
            figures = {
                "bench": "gateway_ingest",
                "quick": args.quick,
                "devices": len(hall.devices),
                "per_device_per_round": per_device,
                "rounds": rounds,
                "ratings_per_round": per_device * len(hall.devices),
                "broker_max_inflight": args.inflight,
                "bare_per_s": [round(r) for r in bare_rates],
                "gateway_per_s": [round(r) for r in gw_rates],
                "bare_median_per_s": round(statistics.median(bare_rates)),
                "gateway_median_per_s": round(statistics.median(gw_rates)),
                "ratio": round(statistics.median(gw_rates) / statistics.median(bare_rates), 3),
                "ratio_is": "gateway durable ingest (publish -> committed -> device ack) / bare paho "
                            "subscriber receipt, same publishers, same broker, same run (medians)",
                "gateway_rounds": gw_rounds,
                "bare_rounds_cpu_s": bare_cpu,
                "gateway_cpu_us_per_rating": round(
                    sum(r["cpu_s"]["gateway"] for r in gw_rounds) * 1e6
                    / sum(r["ratings"] for r in gw_rounds)),
                "ratings_committed": committed,
                "ratings_expected": expected,
                "outbox": st["outbox"],
                "db_bytes": gw.db_path.stat().st_size + Path(f"{gw.db_path}-wal").stat().st_size,
                "ingest": st["ingest"],
                "gateway_rss_kb": rss_kb(gw.proc.pid),
                "wall_s": round(time.monotonic() - started, 1),
            }
        finally:
            bare.close()
            acks.close()
            devices.close()
    emit(figures)


class CpuMeter:
    """CPU seconds used from now on by Mosquitto, the gateway, the device workers and this
    process (the bare subscriber), and the machine's idle time (/proc/stat)."""

    def __init__(self, hall, gw, devices):
        self.pids = {"mosquitto": hall.broker.proc.pid, "gateway": gw.proc.pid,
                     "devices": [p.pid for p in devices.procs], "bench": os.getpid()}
        self.start = self._now()

    def _now(self) -> dict:
        out = {k: (sum(cpu_s(p) for p in v) if isinstance(v, list) else cpu_s(v))
               for k, v in self.pids.items()}
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        out["machine_idle"] = (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")
        return out

    def used(self) -> dict:
        now = self._now()
        return {k: round(now[k] - self.start[k], 2) for k in now}


def gw_status_ratings(gw) -> int:
    import sqlite3
    con = sqlite3.connect(f"file:{gw.db_path}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
    finally:
        con.close()


if __name__ == "__main__":
    main()
