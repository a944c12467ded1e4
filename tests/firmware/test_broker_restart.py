"""The hall's Mosquitto crashes (SIGKILL) and comes back on the same port while the real firmware is
busy rating, and while a citizen presses with no broker at all. The test plays the gateway
(`GatewayPeer`: persistent session `gw-H1`, subscriptions made again on every connect, every
rating acked on receipt). Nothing that reached "thank you" may be lost, doubled or renumbered.
"""

from __future__ import annotations

import time

import pytest

from hcp import protocol as P
from simulator.device_process import DeviceProcess
from tests.fixtures.device import device_key
from tests.fixtures.flash_journal import read_journal
from tests.fixtures.gateway_peer import GatewayPeer

DEV = "D07"
TAP_MS = 100  # a hold shorter than ~65 ms can be missed (50 ms debounce counted from a 10 ms poll)


@pytest.fixture
def gateway(broker):
    peer = GatewayPeer(broker.port, key_of=device_key)
    yield peer
    peer.close()


class Citizens:
    """Rates as fast as the device allows: a gateway session when the gateway can reach the
    device, otherwise the staff invite key (a local session), then a score."""

    def __init__(self, dev: DeviceProcess, gateway: GatewayPeer):
        self.dev = dev
        self.gateway = gateway
        self.thanked: dict[int, tuple[int, str | None]] = {}
        self.offline_presses = 0
        self._score = 0
        self._tapped: dict[str, float] = {}

    def tap(self, button: str) -> None:
        """The firmware debounces 50 ms: a second tap of one button before the first one's release
        has settled would be no press at all, so wait for that (a hand takes longer anyway)."""
        wait = self._tapped.get(button, 0.0) + (TAP_MS + 80) / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.dev.tap(button, TAP_MS)
        self._tapped[button] = time.monotonic()

    def online(self) -> bool:
        marks = [e.name for e in self.dev.events if e.name in ("online", "offline")]
        return bool(marks) and marks[-1] == "online"

    def rate(self, i: int, prompt: bool, at_thanks=None) -> int:
        """One rating; `at_thanks()` runs as soon as it reached "thank you" (while it is being
        published and acked)."""
        dev = self.dev
        since = len(dev.events)
        if dev.state != "prompt":  # no session open yet
            opened = False
            if prompt and self.online() and self.gateway.subscribed:
                sess = f"b{i:04d}"
                try:
                    self.gateway.prompt(DEV, P.encode_prompt_open(sess, 60), timeout=1)
                    dev.wait_event("session", lambda d: d["op"] == "open", timeout=1, since=since)
                    opened = True
                except (RuntimeError, TimeoutError):
                    pass  # the broker went away under the prompt: the staff key will do
            if not opened:
                self.tap("invite")
                dev.wait_event("session", lambda d: d["op"] == "open", timeout=3, since=since)
        self._score = self._score % 5 + 1
        offline = not self.online()
        self.tap(str(self._score))
        ev = dev.wait_event("rating", timeout=3, since=since)
        if at_thanks is not None:
            at_thanks()
        n = ev.data["n"]
        assert n not in self.thanked, f"id {n} used twice: {self.thanked[n]} and {ev.data}"
        assert ev.data["score"] == self._score
        self.thanked[n] = (ev.data["score"], ev.data["sess"])
        self.offline_presses += offline
        dev.wait_state("thanks")
        return n


def _all_delivered(dev: DeviceProcess, gateway: GatewayPeer, thanked: dict, timeout: float) -> None:
    """Every rating that reached "thank you" is at the gateway with the payload pressed, acked, and
    gone from the device's flash; the ids are 1..N; the device reports an empty outbox."""
    dev.wait_for(lambda: set(thanked) <= {e.data["n"] for e in dev.events_named("ack")}, timeout,
                 f"acks of all {len(thanked)} ratings")
    last = max(thanked)
    assert set(thanked) == set(range(1, last + 1)), "ids are not contiguous"
    assert gateway.received(DEV) == set(range(1, last + 1))
    assert not gateway.conflicts, f"one id, two payloads: {gateway.conflicts[:2]}"
    assert not gateway.rejected, gateway.rejected[:2]
    for n, (score, sess) in thanked.items():
        r = gateway.rating(DEV, n)
        assert (r.score, r.sess) == (score, sess), f"rating {n} is not what was pressed"
    j = read_journal(dev.flash_dir / "outbox.log")
    assert not j.problems and j.torn is None
    assert (j.pending, j.last_n) == ({}, last)
    gateway.wait_for(lambda: any(d == DEV and h["ob"] == 0 and h["cnt"]["rate"] == len(thanked)
                                 for d, h in gateway.health), 15, "a health report with ob 0")


@pytest.mark.slow
def test_broker_killed_twice_during_a_burst_loses_and_doubles_nothing(broker, gateway,
                                                                      device_factory):
    dev = device_factory(DEV, broker=broker, invite=True, thanks_ms=500, health_s=5)
    dev.wait_event("online")
    gateway.wait_for(lambda: any(s.state == "online" for s in gateway.statuses(DEV)), 10, "birth")
    time.sleep(1.2)  # Mosquitto's autosave (1 s) has the gateway's persistent session on disk
    people = Citizens(dev, gateway)
    started = time.monotonic()
    crash = {12: broker.kill, 22: broker.start, 40: lambda: (broker.kill(), broker.start())}
    for i in range(60):
        # The broker dies right at a "thank you": that rating's publish and ack are in flight.
        # The second time it is back at once, while the device is still reconnecting.
        people.rate(i, prompt=i % 2 == 0, at_thanks=crash.get(i))
    burst = time.monotonic() - started
    assert people.offline_presses >= 5, "the test meant to press while the broker was down"
    _all_delivered(dev, gateway, people.thanked, timeout=40)
    assert [e.data["conn"] for e in dev.events_named("online")][-1] >= 3  # it did reconnect
    print(f"60 ratings in a {burst:.1f} s burst, broker killed twice; all delivered "
          f"{time.monotonic() - started - burst:.1f} s later; {people.offline_presses} while offline; "
          f"gateway got {len(gateway.receipts_of(DEV))} copies of {len(people.thanked)} ratings")


@pytest.mark.slow
def test_a_press_while_the_broker_is_down_is_kept_and_delivered_when_it_returns(broker, gateway,
                                                                                device_factory):
    dev = device_factory(DEV, broker=broker, invite=True, thanks_ms=500, health_s=5)
    dev.wait_event("online")
    gateway.prompt(DEV, P.encode_prompt_open("s-before-crash", 60, "A023"))
    dev.wait_state("prompt")
    broker.kill()
    dev.wait_event("offline")
    people = Citizens(dev, gateway)
    assert people.rate(0, prompt=False) == 1  # the session opened before the crash
    assert people.rate(1, prompt=False) == 2  # a local session (staff key) with no broker at all
    assert people.thanked == {1: (1, "s-before-crash"), 2: (2, None)}
    j = read_journal(dev.flash_dir / "outbox.log")
    assert sorted(j.pending) == [1, 2]  # on flash before "thank you"
    time.sleep(1.0)
    assert gateway.received(DEV) == set()
    dev.wait_for(lambda: dev.state == "offline", 5, "the offline screen after thank-you")
    broker.start()
    _all_delivered(dev, gateway, people.thanked, timeout=30)
