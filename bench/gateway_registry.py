"""What the registry's bookkeeping costs the gateway's writer: ratings committed per second by the
real `Ingest.commit` on a real SQLite file (WAL, synchronous=FULL, groups of 500 as the writer takes
them), without and with `Registry` hooks (key ids, boots, counter gaps, heartbeat), side by side in
alternating rounds of the same run.

In-process on purpose: through Mosquitto the broker and paho dominate and hide a per-rating cost of
microseconds; here the writer is all that runs. Each round uses a fresh file with `--devices`
registered devices sending contiguous counters (the common case: no gap, same key, same boot).
`ratio` = with / without (medians). `hook_us` = the time inside the hooks per rating, measured in the
"with" rounds.

Usage: .venv/bin/python bench/gateway_registry.py [--quick] [--ratings N] [--devices N] [--rounds N]
Prints progress on stderr and ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config import GatewaySettings  # noqa: E402
from gateway.ingest import GROUP_MAX, Ingest  # noqa: E402
from gateway.mqtt import Inbound  # noqa: E402
from gateway.registry import Registry  # noqa: E402
from gateway.store import Store  # noqa: E402
from hcp.protocol import sign_rating  # noqa: E402

KEY = bytes(range(32))


def messages(count: int, devices: int) -> list[Inbound]:
    out = []
    for k in range(count):
        dev, n = f"D{k % devices:03d}", k // devices + 1
        rating = sign_rating(KEY, "H1", dev, n, 1, 1000 * n, None, 4)
        payload = json.dumps(rating.payload(), separators=(",", ":")).encode()
        out.append(Inbound(f"hcp/v1/H1/{dev}/rating", payload, 1, k, False, time.time()))
    return out


class _Timed:
    """Wraps the registry's `on_rating` to add up the time spent in it."""

    def __init__(self, registry: Registry):
        self.registry, self.seconds = registry, 0.0
        self._inner = registry.on_rating

        async def timed(tx, rating, now):  # noqa: ANN001
            t = time.perf_counter()
            await self._inner(tx, rating, now)
            self.seconds += time.perf_counter() - t

        registry.on_rating = timed  # type: ignore[method-assign]


async def one_round(msgs: list[Inbound], devices: int, with_registry: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "gw.sqlite3")
        async with store.transaction() as tx:
            for i in range(devices):
                await tx.register_device(f"D{i:03d}", str(i + 1), 0.0)
        cfg = GatewaySettings(hall="H1", data_dir=Path(tmp), hub_url="http://hub", hub_token="t",
                              gateway_key="00" * 32, queue_token="q", admin_token="a")
        registry = timer = None
        if with_registry:
            registry = Registry(store, cfg, publish=lambda *a: None, on_outbox=lambda: None,
                                link=lambda: (True, 1))
            timer = _Timed(registry)
        ingest = Ingest(store, "H1", 120, publish=lambda *a: None, ack_broker=lambda m: None,
                        on_outbox=lambda: None, registry=registry)
        start = time.perf_counter()
        for i in range(0, len(msgs), GROUP_MAX):
            await ingest.commit(msgs[i:i + GROUP_MAX])
        elapsed = time.perf_counter() - start
        await store.close()
    return len(msgs) / elapsed, (timer.seconds / len(msgs) * 1e6 if timer else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 000 ratings, 2 rounds each")
    ap.add_argument("--ratings", type=int, default=50_000)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    if args.quick:
        args.ratings, args.rounds = 10_000, 2
    msgs = messages(args.ratings, args.devices)
    without, with_, hook_us = [], [], []
    for r in range(args.rounds):
        a, _ = asyncio.run(one_round(msgs, args.devices, False))
        b, us = asyncio.run(one_round(msgs, args.devices, True))
        without.append(a)
        with_.append(b)
        hook_us.append(us)
        print(f"round {r + 1}: without {a:.0f}/s, with {b:.0f}/s, hooks {us:.1f} us/rating",
              file=sys.stderr)
    result = {"bench": "gateway_registry", "ratings": args.ratings, "devices": args.devices,
              "rounds": args.rounds,
              "without_registry_per_s": round(statistics.median(without)),
              "with_registry_per_s": round(statistics.median(with_)),
              "hook_us": round(statistics.median(hook_us), 1),
              "ratio": round(statistics.median(with_) / statistics.median(without), 3),
              "ratio_is": "ratings/s committed with the registry hooks / without"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
