"""A hypothesis state machine driving one real firmware process (MicroPython, host board) over a
real Mosquitto, with the test as the gateway (acks only when a rule says so).

Rules: open a session (new or repeated id), cancel (the open one or another), press 1-5, the staff
invite key, a session left to time out (ttl 1 s), ack a pending rating, a stray ack, a broker crash
and restart, a power cut and reboot on the same flash. The outbox holds 3 ratings, so withheld acks
fill it. A model predicts what the device shows and stores; after every step the flash journal must
match it, and at the end every rating is published and, once acked, gone.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from hcp import protocol as P
from simulator.broker import Broker
from simulator.device_process import DeviceProcess
from tests.fixtures.device import device_key
from tests.fixtures.flash_journal import read_journal
from tests.fixtures.gateway_peer import GatewayPeer

SESSIONS = ("s0", "s1", "s2", "s3", "s4")  # few ids, so repeats ("already rated") come up
OUTBOX_MAX = 3
REMEMBERED = 8  # device.py keeps the last 8 rated session ids to answer a repeated open
TAP_MS = 100  # a hold shorter than ~65 ms can be missed (50 ms debounce counted from a 10 ms poll)
PRESS_RESULTS = ("thanks", "full", "already", "nosession")


def step(fn):
    """Marks a step as running, so `teardown` knows whether the example failed inside one."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        self.in_step = fn.__name__
        fn(self, *args, **kwargs)
        self.in_step = None

    return wrapper


class DeviceMachine(RuleBasedStateMachine):
    def __init__(self, broker: Broker, gateway: GatewayPeer, flash: Path, seen: Counter):
        super().__init__()
        self.seen = seen  # what the examples reached, over all of them
        self.broker = broker
        self.gateway = gateway
        self.name = flash.name
        cfg = {"dev": self.name, "hall": "H1", "window": "7", "broker_port": broker.port,
               "outbox_max": OUTBOX_MAX, "invite": True, "session_ttl_s": 3600,
               "thanks_ms": 500, "health_s": 3600}
        self.dev = DeviceProcess(flash, config=cfg, key=device_key(self.name))
        self.kid = P.key_id(device_key(self.name))
        self.in_step: str | None = None
        self.fresh = itertools.count()
        self.tapped: dict[str, float] = {}
        # the model
        self.boot = 0
        self.session: str | None = None  # None: none open; "": a local (invite) session
        self.rated: list[str] = []  # the device's memory of rated session ids, this boot
        self.recent = False  # a rating since the last open: a press with no session says "already"
        self.ratings: dict[int, tuple[int, str | None]] = {}  # n -> (score, sess)
        self.pending: set[int] = set()
        self.acked: set[int] = set()
        self.was_full = False
        self.crashes = 0  # broker restarts and power cuts take a second each: a few per example

    @property
    def last_n(self) -> int:
        return max(self.ratings, default=0)

    # -- helpers
    def _mark(self) -> int:
        return len(self.dev.events)

    def _since(self, since: int, name: str) -> list[dict]:
        return [e.data for e in self.dev.events[since:] if e.name == name]

    def _tap(self, button: str) -> float:
        """Tap; the firmware debounces 50 ms, so a button is tapped again only after its last
        release has settled (as any hand would)."""
        wait = self.tapped.get(button, 0.0) + (TAP_MS + 80) / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.dev.tap(button, TAP_MS)
        self.tapped[button] = time.monotonic()
        return self.tapped[button]

    def _state_after(self, since: int, states: tuple[str, ...]) -> str:
        found: list[str] = []

        def look() -> bool:
            found[:] = [e.data["state"] for e in self.dev.events[since:]
                        if e.name == "state" and e.data["state"] in states]
            return bool(found)

        self.dev.wait_for(look, 5, f"one of the states {states}")
        return found[0]

    def _settle(self, tapped_at: float | None = None) -> None:
        """Everything the gateway sent so far is handled (a command round trip behind it), and a
        tap has had time to register."""
        if tapped_at is not None:
            time.sleep(max(0.0, tapped_at + 0.15 - time.monotonic()))
        cid = f"b{next(self.fresh)}"
        self.gateway.publish(P.topic("H1", self.name, "cmd"), P.encode_cmd(cid, "info"))
        self.gateway.wait_for(lambda: any(d == self.name and r.get("id") == cid
                                          for d, r in self.gateway.replies), 10, f"reply {cid}")

    def _resends_only_pending(self, receipts_before: int) -> None:
        """After a reconnect the device sends its pending ratings again, and only those."""
        for n in sorted(self.pending):
            self.gateway.wait_rating(self.name, n, timeout=20, after=receipts_before)
        time.sleep(0.1)
        again = {r.n for r in self.gateway.receipts_from(receipts_before) if r.dev == self.name}
        assert again <= self.pending, f"acked ratings {sorted(again - self.pending)} sent again"

    def _powered_up(self) -> None:
        self.boot += 1
        boot = self.dev.wait_event("boot").data
        assert boot == {"boot": self.boot, "n": self.last_n, "pending": len(self.pending),
                        "kid": self.kid}
        self.dev.wait_event("online")
        self.session, self.rated, self.recent = None, [], False  # sessions live in RAM only

    # -- rules
    @initialize()
    @step
    def power_on(self):
        self.dev.start()
        self._powered_up()

    @rule(sess=st.sampled_from(SESSIONS))
    @step
    def open_session(self, sess):
        self._open(sess)

    def _open(self, sess: str) -> None:
        since = self._mark()
        self.gateway.prompt(self.name, P.encode_prompt_open(sess, 600))
        if sess in self.rated:
            self.seen["open: already rated"] += 1
            assert self._state_after(since, ("already",)) == "already"
            self._settle()
            assert self._since(since, "session") == [], "a rated session was opened again"
        else:
            self.dev.wait_event("session", lambda d: d == {"op": "open", "sess": sess}, since=since)
            self.session, self.recent = sess, False

    @rule(match=st.booleans(), other=st.sampled_from(SESSIONS))
    @step
    def cancel(self, match, other):
        sess = self.session if match and self.session else other
        since = self._mark()
        self.gateway.prompt(self.name, P.encode_prompt_cancel(sess))
        if sess == self.session:
            self.dev.wait_event("session", lambda d: d == {"op": "cancel", "sess": sess}, since=since)
            self.session = None
            self.seen["cancel"] += 1
        else:
            self._settle()
            assert self._since(since, "session") == [], "a cancel for another session closed one"

    @rule(score=st.integers(1, 5))
    @step
    def press(self, score):
        self._press(score)

    @rule(sess=st.sampled_from(SESSIONS), score=st.integers(1, 5))
    @step
    def serve_citizen(self, sess, score):
        """The usual flow: the gateway opens a session for a finished service, the citizen presses."""
        self._open(sess)
        self._press(score)

    @precondition(lambda self: len(self.pending) < OUTBOX_MAX)
    @rule(citizens=st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=2, max_size=4))
    @step
    def queue_of_citizens(self, citizens):
        """Several services in a row, each rated in a gateway session or, where staff use the
        invite key, a local one: with acks withheld this fills the outbox, and the first press
        that finds it full ends the queue."""
        for score, local in citizens:
            if local and self.session is None:
                self._invite()
            else:
                self._open(f"q{next(self.fresh)}")
            if self._press(score) == "full":
                break

    def _press(self, score: int) -> str:
        """Tap a score; -> what the device showed. The model says what that must be."""
        since = self._mark()
        tapped = self._tap(str(score))
        if self.session is None:
            shown = self._state_after(since, ("thanks", "already", "nosession"))
            assert shown == ("already" if self.recent else "nosession")
            self.seen["press: " + shown] += 1
        elif len(self.pending) >= OUTBOX_MAX:
            shown = self._state_after(since, PRESS_RESULTS)
            assert shown == "full"
            self.seen["press: full"] += 1
            self.was_full = True
        else:
            n = self.last_n + 1
            sess = self.session or None
            ev = self.dev.wait_event("rating", since=since)
            assert ev.data == {"n": n, "score": score, "sess": sess}
            assert self._state_after(since, PRESS_RESULTS) == "thanks"
            self.ratings[n] = (score, sess)
            self.pending.add(n)
            if sess:
                self.rated = (self.rated + [sess])[-REMEMBERED:]
            self.session, self.recent = None, True
            self.seen["press: rating" + (" (local)" if sess is None else "")] += 1
            if self.was_full:
                self.seen["rating again after full"] += 1
                self.was_full = False
            return "thanks"
        self._settle(tapped)
        assert self._since(since, "rating") == [], "a press created a rating it should not have"
        return shown

    @rule()
    @step
    def invite(self):
        self._invite()

    def _invite(self) -> None:
        since = self._mark()
        tapped = self._tap("invite")
        if self.session is None:
            self.dev.wait_event("session", lambda d: d == {"op": "open", "sess": None}, since=since)
            self.session, self.recent = "", False
        else:
            self._settle(tapped)
            assert self._since(since, "session") == [], "the invite key replaced an open session"

    @rule(score=st.integers(1, 5))
    @step
    def session_times_out(self, score):
        """A session nobody rated times out; a press after that creates nothing."""
        sess = f"t{next(self.fresh)}"
        since = self._mark()
        sent = time.monotonic()  # the device opens the session after this, and times it out 1 s later
        self.gateway.prompt(self.name, P.encode_prompt_open(sess, 1))
        self.dev.wait_event("session", lambda d: d == {"op": "open", "sess": sess}, since=since)
        self.dev.wait_event("session", lambda d: d == {"op": "timeout", "sess": sess}, since=since,
                            timeout=5)
        # Not from when the host read the "open" line: under load that read can lag the device by
        # more than the slack, and the timeout line then comes sooner after it than the TTL.
        assert time.monotonic() - sent > 0.95
        self.session, self.recent = None, False
        self._press(score)

    @precondition(lambda self: self.pending)
    @rule(pick=st.integers(0, OUTBOX_MAX - 1), st_=st.sampled_from(("ok", "dup", "bad")))
    @step
    def ack(self, pick, st_):
        n = sorted(self.pending)[pick % len(self.pending)]
        self.gateway.wait_rating(self.name, n, timeout=20)  # it was published (maybe resent)
        since = self._mark()
        self.gateway.ack(self.name, n, st_)
        self.dev.wait_event("ack", lambda d: d == {"n": n, "st": st_}, since=since)
        self.seen["ack" + (" (was full)" if len(self.pending) == OUTBOX_MAX else "")] += 1
        self.pending.remove(n)
        self.acked.add(n)

    @rule(future=st.booleans())
    @step
    def stray_ack(self, future):
        n = self.last_n + 1 if future or not self.acked else min(self.acked)
        since = self._mark()
        self.gateway.ack(self.name, n)
        self._settle()
        assert self._since(since, "ack") == [], f"an ack for {n}, not pending, was applied"

    @precondition(lambda self: self.crashes < 3)
    @rule()
    @step
    def broker_restart(self):
        self.crashes += 1
        since = self._mark()
        connects = self.gateway.connects
        receipts = len(self.gateway.receipts)
        self.broker.kill()
        self.broker.start()
        self.dev.wait_event("online", since=since, timeout=20)
        self.seen["broker restart" + (" with ratings pending" if self.pending else "")] += 1
        self.gateway.wait_for(lambda: self.gateway.connects > connects and self.gateway.subscribed,
                              10, "the gateway back")
        self._resends_only_pending(receipts)

    @precondition(lambda self: self.crashes < 3)
    @rule()
    @step
    def power_cut(self):
        self.crashes += 1
        self.seen["power cut" + (" with ratings pending" if self.pending else "")] += 1
        receipts = len(self.gateway.receipts)
        self.dev.kill()
        self.dev.start()
        self._powered_up()
        self._resends_only_pending(receipts)

    # -- invariants
    @invariant()
    @step
    def flash_matches_the_model(self):
        j = read_journal(self.dev.flash_dir / "outbox.log")
        assert not j.problems and j.torn is None, j.problems
        assert (set(j.pending), j.last_n) == (self.pending, self.last_n)
        assert len(j.pending) <= OUTBOX_MAX
        for n, payload in j.pending.items():
            r = P.decode_rating(payload, "H1", self.name)
            assert r.verify(device_key(self.name)) and r.n == n
            assert (r.score, r.sess) == self.ratings[n]
            sent = self.gateway.payload(self.name, n)
            assert sent is None or sent == payload
        assert not self.gateway.conflicts, self.gateway.conflicts[:1]
        assert not self.gateway.rejected, self.gateway.rejected[:1]

    def teardown(self):
        try:
            if self.in_step is None and self.dev.running:  # not after a failed step
                self._drain()
        finally:
            self.dev.kill()

    def _drain(self):
        """Ack everything: every rating was published, and once acked is gone from flash."""
        for n in sorted(self.pending):
            self.gateway.wait_rating(self.name, n, timeout=20)
            since = self._mark()
            self.gateway.ack(self.name, n)
            self.dev.wait_event("ack", lambda d, n=n: d["n"] == n, since=since)
        j = read_journal(self.dev.flash_dir / "outbox.log")
        assert (j.pending, j.last_n) == ({}, self.last_n)
        assert self.gateway.received(self.name) == set(range(1, self.last_n + 1))
        for n, (score, sess) in self.ratings.items():
            r = self.gateway.rating(self.name, n)
            assert (r.score, r.sess) == (score, sess)


@pytest.mark.slow
def test_device_state_machine(broker, tmp_path):
    gateway = GatewayPeer(broker.port, key_of=device_key, auto_ack=False)
    names = itertools.count()
    seen: Counter[str] = Counter()
    started = time.monotonic()
    try:
        run_state_machine_as_test(
            lambda: DeviceMachine(broker, gateway, tmp_path / f"M{next(names)}", seen),
            settings=settings(max_examples=12, stateful_step_count=30, deadline=None,
                              derandomize=True, database=None,
                              suppress_health_check=[HealthCheck.too_slow]))
    finally:
        gateway.close()
    print(f"{next(names)} devices driven in {time.monotonic() - started:.1f} s: {dict(seen)}")
    # The examples must reach what the machine is about, or passing proves little.
    for outcome in ("press: rating", "press: rating (local)", "press: full", "press: nosession",
                    "press: already", "open: already rated", "ack (was full)", "rating again after full",
                    "broker restart with ratings pending", "power cut with ratings pending"):
        assert seen[outcome], f"no example reached {outcome!r}: {dict(seen)}"
