"""The hub away for the whole run, then back: the backlog drains completely, in order per device.

The real hub process is stopped (SIGTERM) while four resending devices rate and the queue system
runs services through the gateway; the forwarder fails, backs off (visible in the status document:
link `down`, consecutive failures, the next retry within the backoff bounds, the error) and keeps
every item pending. Then the hub starts again on the same port and SQLite file: the outbox drains,
and the hub holds every rating and service exactly once, each device's ratings received in the
order the device pressed them (the hub's ingest `seq`).
"""

from __future__ import annotations

import time

from tests.fixtures.hall_load import (
    HallLoad,
    check_exactly_once,
    gateway_with_hub,
    hub_rows,
    outbox_states,
    resending_devices,
    wait_drained,
)

WINDOWS = ["1", "2", "3", "4"]
OUTAGE_S = 4.0  # the load runs this long with the hub away
RETRY_MIN_S, RETRY_MAX_S = 0.1, 0.8


def test_backlog_drains_in_order_per_device_after_a_hub_outage(broker, hub_server, gateway_factory):
    hub = hub_server
    gw = gateway_with_hub(broker, hub, gateway_factory, WINDOWS, forward_batch=100,
                          retry_min_s=RETRY_MIN_S, retry_max_s=RETRY_MAX_S)
    with resending_devices(broker, WINDOWS) as devices:
        devices["3"].press(5)  # the link is up before the outage
        gw.wait_status(lambda st: st["hub"]["state"] == "up" and st["outbox"]["sent"] == 1)

        assert hub.stop() == 0
        load = HallLoad(gw, devices, seed=7, press_interval_s=0.005).start()
        samples = []
        try:
            deadline = time.monotonic() + OUTAGE_S
            while time.monotonic() < deadline:
                samples.append(gw.status())
                time.sleep(0.25)
        finally:
            load.stop()
        load.wait_acked()  # the devices are done: the gateway holds the backlog alone
        st = gw.wait_status(lambda st: st["ingest"]["backlog"] == 0)
        pending = outbox_states(gw)["pending"]
        assert pending == len(load.pressed) - 1 + len(load.services), outbox_states(gw)
        assert pending > 500, "the backlog is too small to prove anything"

        # The backoff, as the status document shows it while the hub is away.
        down = [s["hub"] for s in samples if s["hub"]["failures"] > 0]
        assert down and all(h["state"] == "down" for h in down)
        failures = [h["failures"] for h in down]
        assert failures == sorted(failures) and failures[-1] >= 3
        for h in down:
            assert h["last_error"] and "Connect" in h["last_error"], h
            wait = h["next_retry_at"] - h["last_error_at"]
            assert RETRY_MIN_S / 2 - 1e-3 <= wait <= RETRY_MAX_S + 1e-3, h  # Unix-time rounding
        # Not hammered: no faster than the backoff's floor, and slower than that once it grew.
        assert failures[-1] <= OUTAGE_S / (RETRY_MIN_S / 2) + 1
        assert st["counters"]["forward.errors"] == st["hub"]["failures"]
        attempts = gw.query("SELECT MIN(attempts) AS lo, MAX(attempts) AS hi FROM outbox "
                            "WHERE state = 'pending'")[0]
        assert attempts["hi"] >= 3, dict(attempts)  # the oldest rows were tried at every retry

        hub.start()  # same port, same file
        started = time.monotonic()
        st = wait_drained(gw, timeout=60)
        drain_s = time.monotonic() - started
        assert st["hub"]["failures"] == 0 and outbox_states(gw) == {"sent": pending + 1}
        check_exactly_once(hub, gw, load)

        # In order per device: the hub's ingest order of each device's ratings is counter order.
        rows = hub_rows(hub, "SELECT device, n FROM ratings WHERE hall = ? ORDER BY seq", (gw.hall,))
        by_device: dict[str, list[int]] = {}
        for r in rows:
            by_device.setdefault(r["device"], []).append(r["n"])
        for device, ns in by_device.items():
            assert ns == list(range(1, len(ns) + 1)), (device, ns[:20])
        # and the hub's API lists them newest first, the same order reversed
        api = [r["n"] for r in hub.ratings(device="D1", limit=1000)]
        assert api == sorted(by_device["D1"], reverse=True)[:1000]
    print(f"hub outage: {pending} items waited {OUTAGE_S:.0f} s through {failures[-1]} failed "
          f"attempts, drained in {drain_s:.1f} s")
