"""Mosquitto restarted, or killed with SIGKILL, under load: nothing lost, nothing doubled.

Four resending devices rate and the queue system runs services while the hall's broker goes down
three times at seeded random moments and comes back on the same port and persistence directory.
A clean stop saves Mosquitto's state; a SIGKILL loses what it took in since its last autosave: ratings
it PUBACKed to a device but never delivered, acks on their way back. The gateway's persistent session
`gw-{hall}` keeps what was queued for it, its manual PUBACK after COMMIT keeps what it had not yet
committed, and a device resends every rating it has no ack for (after `resend_s`, and after every
reconnect). At the end every device has its acks, the gateway stored each rating once with one outbox
item, and the real hub holds every rating and service exactly once.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.fixtures.hall_load import (HallLoad, check_exactly_once, gateway_with_hub, resending_devices,
                                     wait_drained)

WINDOWS = ["1", "2", "3", "4"]
OUTAGES = 3
SEED = 20261121


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_broker_down_under_load_loses_and_doubles_nothing(broker, hub_server, gateway_factory, how):
    rng = random.Random(f"{SEED}-{how}")
    hub = hub_server
    gw = gateway_with_hub(broker, hub, gateway_factory, WINDOWS)
    with resending_devices(broker, WINDOWS) as devices:
        load = HallLoad(gw, devices, seed=SEED).start()
        try:
            for _ in range(OUTAGES):
                time.sleep(rng.uniform(0.5, 1.5))
                broker.kill() if how == "kill9" else broker.stop()
                time.sleep(rng.uniform(0.1, 1.0))
                broker.start()
            time.sleep(1.0)
        finally:
            load.stop()
        load.wait_acked(timeout=30)
        st = wait_drained(gw)
        check_exactly_once(hub, gw, load)
        connects = {d.device: d.connects for d in devices.values()}
    # Everyone came back (two outages may fall within one of the gateway's reconnect pauses).
    assert st["mqtt"]["connected"] and st["mqtt"]["connects"] >= 2, st["mqtt"]
    assert all(c >= 2 for c in connects.values()), connects
    resends = sum(d.resends for d in devices.values())
    print(f"broker {how} x{OUTAGES}: {len(load.pressed)} ratings, {len(load.services)} services, "
          f"{resends} device resends, {st['counters'].get('ratings.dup', 0)} acked dup, "
          f"gateway connects {st['mqtt']['connects']}, device connects {connects}")
