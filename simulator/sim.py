"""`hcp sim SCENARIO.toml`: run a hall's day from a scenario file (simulator/scenario.py) with the
real broker, hub and gateway processes, real firmware devices and lightweight ones, faults on a
timeline, and a reconciliation made by asking the hub. Exits 1 if a rating or a service was lost,
or a rating doubled; 2 for a scenario that cannot be run. Ctrl-C closes the hall (no more citizens;
those at a counter are served and rate), drains it and reconciles; a second Ctrl-C stops at once
(exit 130). `hcp demo` (simulator/demo.py) is this engine on its own hall, open until stopped.

Time: the queue system and the citizens run on the scenario's clock, `speed` simulated seconds per
real second, and every queue event carries its simulated time. The devices, the gateway, the hub and
Mosquitto run in real time: session timeouts, keepalives, the device's 15 s resend, reconnect
backoff and the gateway's retries are real seconds whatever the speed (docs/simulator.md).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx

from hcp.protocol import ProtocolError, read_phone_token
from hub.default_rules import CHINA_TZ
from simulator.hall import Hall, PhoneRated, Pressed, Reconciliation, Seat, reconcile, report_lines
from simulator.phone import PHONE_DRAIN_S, PHONE_WORKERS, Phone, Phones
from simulator.plan import Burst, Plan, Visit, bursts_of, draw, make_plan
from simulator.scenario import Fault, Scenario, ScenarioError, load

PROMPT_WAIT_S = 10.0  # real seconds from `finished` to the device showing the prompt
RATING_WAIT_S = 5.0  # from a press to the device's `rating` event
QUEUE_RETRY_S = 120.0  # the queue system retries a webhook this long (a gateway may be down)
DRAIN_S = 60.0  # at the end: real seconds for the last ratings and services to reach the hub
PROGRESS_S = 0.5
CLOSE_S = 30.0  # after Ctrl-C: real seconds for the citizens at a counter to be served and rate
CLOSING_POLL_S = 0.1  # how soon a waiting citizen or service notices the hall closing
FAULT_MIN_S = 0.2  # shortest real outage (a simulated second at speed 1000 is no outage at all)
QUEUE_CONNECTIONS = 16  # the queue system's HTTP connections to the gateway; more events wait their turn
BIG_HALL = 250  # devices: start-up reports progress every this many


class Connections:
    """The queue system's connections to the gateway: `take()` waits, without polling (thousands
    of windows may wait at once), until one is free -> True, or until `close()` -> False."""

    def __init__(self, count: int):
        self._free = count
        self._closed = False
        self._cond = threading.Condition()

    def take(self) -> bool:
        with self._cond:
            while not self._free and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._free -= 1
            return True

    def give_back(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class VisitTiming:
    """How one citizen's service went in real time (time.monotonic()), for the load figures."""

    window: str
    planned: float  # when the plan has the service finish (`finished` posted)
    posted: float  # when the queue system posted `finished` (later than planned: the window is behind)
    answered_s: float | None  # the gateway's answer to `finished`, after `posted`; None: never taken
    sent_s: float | None = None  # the request went out (a connection was free), after `posted`
    prompt_s: float | None = None  # the device showed the prompt, after `posted`; None: no prompt


@dataclass
class Tally:
    came: int = 0  # citizens called to a counter
    services: int = 0  # finished events the gateway accepted
    walked_away: int = 0
    qr: int = 0  # citizens who scanned the QR code
    phone_rated: list[PhoneRated] = field(default_factory=list)  # the phone page stored it (303)
    phone_refused: dict[str, int] = field(default_factory=dict)  # why not: HTTP status or what the page showed
    staff_presses: int = 0
    burst_presses: int = 0
    no_prompt: int = 0  # the device did not show the prompt (off, or the gateway down too long)
    not_taken: int = 0  # a press the device did not confirm (power cut at that moment)
    confirmed_late: int = 0  # of those, confirmed after RATING_WAIT_S all the same (a slow device)
    not_played: int = 0  # citizens the run ended before (`until`: the windows had fallen behind)
    pressed: list[Pressed] = field(default_factory=list)
    unconfirmed: list[tuple[str, float, float, int | str]] = field(default_factory=list)  # window, tap (monotonic, wall), score
    timings: list[VisitTiming] = field(default_factory=list)
    behind: dict[str, float] = field(default_factory=dict)  # window -> how late its last service finished (s)
    log: list[str] = field(default_factory=list)  # what the citizens did, in order per window
    lock: threading.Lock = field(default_factory=threading.Lock)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", type=Path, help="scenario file (TOML); examples in simulator/scenarios/")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the scenario's)")
    parser.add_argument("--speed", type=float, default=None,
                        help="simulated seconds per real second (default: the scenario's)")
    parser.add_argument("--duration", type=float, default=None,
                        help="simulate only this many seconds of opening time")
    parser.add_argument("--date", default=None,
                        help="play this day instead of the scenario's: YYYY-MM-DD, today or yesterday "
                             "(China time). Today keeps the phone page open for the QR citizens; a day "
                             "past the region's rating period shows its default ratings")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep all files here (default: a temporary directory, removed at the end)")
    parser.add_argument("--plan", action="store_true",
                        help="print the day drawn from the seed (JSON) and exit, starting nothing")
    parser.add_argument("--log", type=Path, default=None,
                        help="write what each citizen did (one line each, per window in order) here")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        sc = load(args.scenario)
        sc = _override(sc, args)
    except ScenarioError as exc:
        print(f"hcp sim: {exc}", file=sys.stderr)
        return 2
    plan = make_plan(sc)
    if args.plan:
        json.dump({"date": str(sc.day), **plan.as_dict()}, sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hcp-sim-"))
    return play(Sim(sc, plan, workdir), keep=args.workdir is not None, log=args.log)


def play(sim: "Sim", keep: bool, log: Path | None = None, name: str = "hcp sim") -> int:
    """Start the hall, run it until its citizens are done or a stop, reconcile, stop everything.
    -> the exit status: 0 nothing lost or doubled, 1 something was (or a part failed to start),
    130 stopped at once by a second Ctrl-C. The workdir is removed unless `keep`.

    Ctrl-C (SIGINT) or SIGTERM is a clean stop (`Sim.closing`): no more citizens come, those at a
    counter are served and rate, the hall drains, the reconciliation is printed. Another one while
    stopping (or draining) stops at once: every process of the hall killed, no reconciliation."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() or sim.closing.is_set():
            raise KeyboardInterrupt
        sim.closing.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim.hall.workdir.mkdir(parents=True, exist_ok=True)
    try:
        try:
            sim.start()
            sim.run(stop)
            result = sim.finish()
        except (RuntimeError, TimeoutError, httpx.HTTPError, OSError) as exc:
            print(f"\n{name}: {exc}", file=sys.stderr)
            sim.hall.stop_all()
            return 1
        except Exception:
            sim.hall.stop_all()  # no process of the hall outlives a bug either
            raise
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sim.hall.kill_all()
        print(f"\n{name}: stopped at once: every process of the hall killed, no reconciliation",
              flush=True)
        if not keep:
            shutil.rmtree(sim.hall.workdir, ignore_errors=True)
        return 130
    if log is not None:
        log.write_text("\n".join(sim.tally.log) + "\n", encoding="utf-8")
    if keep:
        print(f"files kept in {sim.hall.workdir}")
    else:
        shutil.rmtree(sim.hall.workdir, ignore_errors=True)
    return 0 if result.ok else 1


def _override(sc: Scenario, args: argparse.Namespace) -> Scenario:
    from dataclasses import replace
    changes: dict[str, Any] = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.speed is not None:
        if not 0.01 <= args.speed <= 10000:
            raise ScenarioError("--speed must be 0.01..10000")
        changes["speed"] = args.speed
    if args.duration is not None:
        if args.duration <= 0:
            raise ScenarioError("--duration must be more than 0")
        changes["duration_s"] = args.duration
    if args.date is not None:
        changes["day"] = _day_of(args.date)
    return replace(sc, **changes) if changes else sc


def _day_of(text: str) -> date:
    """`--date`: an ISO date, or today / yesterday in China (the hub's deadlines are China's days)."""
    today = datetime.now(CHINA_TZ).date()
    named = {"today": today, "yesterday": today - timedelta(days=1)}
    if text in named:
        return named[text]
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ScenarioError(f"--date {text!r} is not YYYY-MM-DD, today or yesterday") from None


class Sim:
    """`plan`: the citizens drawn at once (`make_plan`); None draws them as they come (`draw`), as a
    hall open until stopped (`Scenario.days` None) must. Subclasses may say other things at the
    start (`announce_start`, `announce_ready`) and watch the hub while it runs (`watch`)."""

    def __init__(self, sc: Scenario, plan: Plan | None, workdir: Path, out: Callable[[str], None] | None = None,
                 gateway_settings: dict | None = None, device_nice: int = 0):
        """`gateway_settings`: GatewaySettings fields over the simulator's own (fast retries);
        `device_nice`: the real firmware processes' niceness (Hall)."""
        self.sc = sc
        self.gateway_settings = gateway_settings or {}
        self.plan = plan
        self.visits = plan.visits if plan is not None else draw(sc)
        self.bursts = plan.bursts if plan is not None else bursts_of(sc)
        self.closing = threading.Event()  # Ctrl-C: no more citizens; those at a counter finish
        self.hall = Hall(workdir, sc.hall, device_nice=device_nice)
        self.tally = Tally()
        self.t0 = 0.0
        self.jump_s = 0.0  # the queue system's clock error (clock_jump)
        self.events = itertools.count(1)
        self.tty = out is None and sys.stdout.isatty()  # a caller's `out` gets plain lines
        self.status = ""  # the last fault line, shown in the progress line
        self._hub_count: str = "-"
        self._out = out or (lambda text: print(text, flush=True))
        self.finished = threading.Event()
        self.faults_seen: list[tuple[Fault, str, float]] = []  # (fault, "begin"/"end", wall time)
        self.until: float | None = None
        # A hall's queue system is one server with a few connections, not one per window: with
        # thousands of windows, a slow gateway then shows as windows falling behind, not as
        # thousands of requests timing out and retried at once.
        self._connections = Connections(QUEUE_CONNECTIONS)
        self._phones = Phones(PHONE_WORKERS)
        self._phone_page = Phone(sc.lang)  # how a phone opens the page and sends its rating

    def say(self, text: str) -> None:
        if self.tty:
            sys.stdout.write("\r\x1b[K")
        self._out(text)

    # -- set-up
    def announce_start(self) -> None:
        sc = self.sc
        real = sum(w.device == "real" for w in sc.windows)
        citizens = f"{self.plan.count} citizens" if self.plan is not None else "citizens until stopped"
        self.say(f"hcp sim: {sc.name}: hall {sc.hall}, {len(sc.windows)} windows ({real} real firmware, "
                 f"{len(sc.windows) - real} lightweight), {citizens}, seed {sc.seed}, speed {sc.speed:g}x")

    def announce_ready(self) -> None:
        h, sc = self.hall, self.sc
        assert h.hub is not None and h.broker is not None and h.gateway is not None
        self.say(f"  broker {h.broker.port}, hub {h.hub.url}, gateway {h.gateway.url}, "
                 f"region {sc.region} ({sc.preset or sc.rule})")

    def start(self) -> None:
        sc = self.sc
        self.announce_start()
        seats = [Seat(w.device_id, w.id, os.urandom(32), w.device) for w in sc.windows]
        region = {"id": sc.region, "name": sc.region_name, "area_code": sc.area_code,
                  **({"preset": sc.preset} if sc.preset else {"default_rule": sc.rule})}
        self.hall.start(seats, gateway_settings={
            "session_ttl_s": sc.session_ttl_s, "retry_min_s": 0.2, "retry_max_s": 2.0,
            "registry_sweep_s": 1.0, **self.gateway_settings}, region=region, hall_name=sc.hall_name)
        for i, seat in enumerate(seats, 1):
            self.hall.add_device(seat, {"lang": sc.lang, "session_ttl_s": sc.session_ttl_s,
                                        "invite": sc.invite, "health_s": 60})
            if len(seats) >= BIG_HALL and i % BIG_HALL == 0:
                self.say(f"  devices started {i}/{len(seats)}")
        for seat in seats:
            seat.device.wait_for(lambda d=seat.device: any(e.name == "online" for e in d.events), 30,
                                 "online")
        self.announce_ready()

    # -- clocks
    def real_at(self, t: float) -> float:
        return self.t0 + t / self.sc.speed

    def sim_now(self) -> float:
        return (time.monotonic() - self.t0) * self.sc.speed

    def at_text(self, t: float) -> str:
        midnight = datetime(self.sc.day.year, self.sc.day.month, self.sc.day.day, tzinfo=CHINA_TZ)
        return (midnight + timedelta(seconds=self.sc.clock_of(t) + self.jump_s)).isoformat(timespec="seconds")

    def _sleep_until(self, t: float, stop: threading.Event, hurry: bool = False) -> bool:
        """Wait for simulated time `t`: True when it came, False if stopped. The hall closing ends
        the wait too: True if `hurry` (a service in progress ends now), else False."""
        while (left := self.real_at(t) - time.monotonic()) > 0:
            if self.closing.is_set():
                return hurry
            if stop.wait(min(left, CLOSING_POLL_S)):
                return False
        return not stop.is_set()

    # -- the queue system
    def _post(self, kind: str, visit: Visit, t: float, stop: threading.Event,
              timing: VisitTiming | None = None) -> dict | None:
        gw = self.hall.gateway
        assert gw is not None
        matter = self.sc.matters[visit.matter]
        body = dict(event_id=f"sim-{visit.window}-{visit.ticket}-{kind}", type=kind, ticket=visit.ticket,
                    window=visit.window, at=self.at_text(t), staff_id=visit.staff,
                    staff_name=self.sc.staff[visit.staff].name, matter_code=matter.code,
                    matter_name=matter.name, unit=matter.unit)
        deadline = time.monotonic() + QUEUE_RETRY_S
        while True:
            if not self._connections.take():
                return None  # the run stopped
            try:
                if timing is not None and timing.sent_s is None:
                    timing.sent_s = time.monotonic() - timing.posted
                return gw.post_event(**body)
            except (httpx.HTTPError, RuntimeError) as exc:
                error = exc
            finally:
                self._connections.give_back()
            if stop.is_set():
                return None
            if time.monotonic() > deadline:
                self.say(f"  ! window {visit.window}: the gateway did not take {kind} of {visit.ticket}: "
                         f"{type(error).__name__} {error}")
                return None
            stop.wait(0.5)

    # -- the citizens
    def _window_loop(self, window: str, stop: threading.Event) -> None:
        seat = self.hall.seats[window]
        timeline: Iterable[Visit | Burst] = heapq.merge(  # both in time order; a visit before a burst at its time
            self.visits[window], self.bursts[window], key=lambda x: x.start_s if isinstance(x, Visit) else x.at_s)
        for item in timeline:
            if stop.is_set() or self.closing.is_set():
                return
            if isinstance(item, Burst):
                self._burst(seat, item, stop)
            else:
                self._visit(seat, item, stop)

    def _record(self, line: str) -> int:
        """-> the line's index in the log (a phone adds its outcome to it later)."""
        with self.tally.lock:
            self.tally.log.append(line)
            return len(self.tally.log) - 1

    def _visit(self, seat: Seat, v: Visit, stop: threading.Event) -> None:
        if not self._sleep_until(v.start_s, stop):
            return
        if self._post("called", v, v.start_s, stop) is None:
            return
        with self.tally.lock:
            self.tally.came += 1
        if self._post("accepted", v, v.start_s, stop) is None:
            return
        if not self._sleep_until(v.end_s, stop, hurry=True):
            return
        t = time.monotonic()
        timing = VisitTiming(v.window, self.real_at(v.end_s), t, None)
        with self.tally.lock:
            self.tally.timings.append(timing)
            self.tally.behind[v.window] = t - timing.planned
        answer = self._post("finished", v, min(v.end_s, max(v.start_s, self.sim_now())), stop, timing)
        if answer is None:
            return
        timing.answered_s = time.monotonic() - t
        with self.tally.lock:
            self.tally.services += 1
        session = answer.get("session")
        try:
            e = seat.device.wait_event("session", lambda d: d.get("op") == "open" and d.get("sess") == session,
                                       PROMPT_WAIT_S, after=t)
            timing.prompt_s = e.at - t
        except TimeoutError:
            with self.tally.lock:
                self.tally.no_prompt += 1
            self._record(f"{v.window} {v.ticket} {v.staff} no prompt ({v.action} planned)")
            return
        if v.action == "qr":
            self._scan(seat, v, session, e.at)
            return
        if v.action == "walk_away":
            with self.tally.lock:
                self.tally.walked_away += 1
            self._record(f"{v.window} {v.ticket} {v.staff} {v.action}")
            return
        if stop.wait(v.press_after_s / self.sc.speed):
            return
        assert v.score is not None
        pressed = self._press(seat, v.score, session)
        if pressed is not None and v.action == "staff_press":
            with self.tally.lock:
                self.tally.staff_presses += 1
        self._record(f"{v.window} {v.ticket} {v.staff} {v.action} {v.score}"
                     f"{'' if pressed else ' (not taken)'}")

    # -- the QR citizens' phones
    def _scan(self, seat: Seat, v: Visit, session: str | None, prompt_at: float) -> None:
        """Read the QR code off the device (its `display`) and hand the phone its job, due
        `v.press_after_s` of hall time after the prompt; the window goes on to its next citizen.
        The device's session times out meanwhile (nobody presses): the hub's supplementary
        rating (补充评价) rates the service."""
        with self.tally.lock:
            self.tally.qr += 1
        shown: list[str] = []

        def qr_of_this_service() -> bool:  # the display follows the session event on the real device
            url = seat.device.display.get("qr")
            try:
                if url and "/r/" in url and read_phone_token(url.rsplit("/r/", 1)[1])["svc"] == session:
                    shown.append(url)
                    return True
            except (ProtocolError, KeyError, TypeError):
                pass
            return False

        try:
            seat.device.wait_for(qr_of_this_service, PROMPT_WAIT_S, "the QR code of the prompt")
        except TimeoutError:
            with self.tally.lock:
                self.tally.phone_refused["no QR code"] = self.tally.phone_refused.get("no QR code", 0) + 1
            self._record(f"{v.window} {v.ticket} {v.staff} qr {v.score} (no QR code shown)")
            return
        assert v.score is not None
        line = self._record(f"{v.window} {v.ticket} {v.staff} qr {v.score}")
        url, score = shown[0], v.score
        self._phones.add(prompt_at + v.press_after_s / self.sc.speed,
                         lambda: self._phone(v, url, score, line))

    def _phone(self, v: Visit, url: str, score: int, line: int) -> None:
        try:
            outcome = self._phone_page.rate(url, score)
        except Exception as exc:  # noqa: BLE001  # a bug here must not end the phone's thread
            outcome = f"error {type(exc).__name__}"
        with self.tally.lock:
            t = self.tally
            if outcome == "stored":
                claims = read_phone_token(url.rsplit("/r/", 1)[1])
                t.phone_rated.append(PhoneRated(claims["hall"], claims["svc"], v.window, v.ticket, score,
                                                time.time()))
            else:
                t.phone_refused[outcome] = t.phone_refused.get(outcome, 0) + 1
            t.log[line] += f" (phone: {outcome})"

    def _press(self, seat: Seat, score: int | str, session: str | None) -> Pressed | None:
        t, wall = time.monotonic(), time.time()
        try:
            seat.device.tap(score)
            e = seat.device.wait_event("rating", timeout=RATING_WAIT_S, after=t)
        except (TimeoutError, RuntimeError, OSError) as exc:
            with self.tally.lock:
                self.tally.not_taken += 1
                if isinstance(exc, TimeoutError):  # the device may still store it: `_late_presses`
                    self.tally.unconfirmed.append((seat.window, t, wall, score))
            return None
        p = Pressed(seat.device_id, e.data["n"], e.data["score"], e.data.get("sess"), at=wall,
                    stored_s=e.at - t)
        with self.tally.lock:
            self.tally.pressed.append(p)
        return p

    def _burst(self, seat: Seat, b: Burst, stop: threading.Event) -> None:
        if not self._sleep_until(b.at_s, stop):
            return
        taken = 0
        for _ in range(b.count):
            t = time.monotonic()
            try:
                seat.device.tap("invite")
                seat.device.wait_event("session", lambda d: d.get("op") == "open" and d.get("sess") is None,
                                       RATING_WAIT_S, after=t)
            except (TimeoutError, RuntimeError, OSError):
                continue
            if self._press(seat, 5, None) is not None:
                taken += 1
        with self.tally.lock:
            self.tally.burst_presses += taken
        self._record(f"{b.window} burst {taken}/{b.count} x 5 on the invite key")

    # -- faults
    def _fault_actions(self) -> list[tuple[float, str, Fault]]:
        """Begins and ends in time order. At one moment a fault that lasted ends before another
        begins; a fault with no duration (`for` 0: a restart at once) begins, then ends."""
        actions = []
        for f in self.sc.faults:
            actions.append((f.at_s, "begin", f))
            if f.kind != "clock_jump" or f.for_s:
                actions.append((f.at_s + f.for_s, "end", f))

        def order(a: tuple[float, str, Fault]) -> tuple[float, int]:
            return a[0], 1 if a[1] == "begin" else (2 if a[2].for_s == 0 else 0)

        return sorted(actions, key=order)

    def _fault_loop(self, stop: threading.Event) -> None:
        h = self.hall
        assert h.broker is not None and h.hub is not None and h.gateway is not None
        for at, phase, f in self._fault_actions():
            if at > self.sc.open_s:
                break  # past the end of the simulated day (--duration): `finish` ends what is still on
            if not self._sleep_until(at, stop):
                return
            seat = h.seats.get(f.device) if f.device else None
            began = time.time()
            try:
                if f.kind == "broker_restart":
                    if phase == "begin":
                        h.broker.stop()
                    else:
                        stop.wait(FAULT_MIN_S if not f.for_s else 0)
                        h.broker.start()
                elif f.kind == "hub_outage":
                    if phase == "begin":
                        h.hub.stop()
                    else:
                        stop.wait(FAULT_MIN_S if not f.for_s else 0)
                        h.hub.start()
                elif f.kind == "gateway_kill":
                    if phase == "begin":
                        h.gateway.kill()
                    else:
                        h.gateway.start()
                elif f.kind == "device_power_cut":
                    assert seat is not None
                    if phase == "begin":
                        seat.device.kill()
                    else:
                        seat.device.start()
                elif f.kind == "wifi_flap":
                    assert seat is not None
                    seat.device.network(phase == "end")
                elif f.kind == "clock_jump":
                    self.jump_s += f.jump_s if phase == "begin" else -f.jump_s
            except (RuntimeError, OSError) as exc:
                self.say(f"  ! fault {f.kind} {phase}: {exc}")
                continue
            self.faults_seen.append((f, phase, began if phase == "begin" else time.time()))
            what = f.kind.replace("_", " ") + (f" (window {f.device})" if f.device else "")
            if f.kind == "clock_jump":
                what += f" {f.jump_s:+g} s"
            self.status = f"{what}: {'begins' if phase == 'begin' else 'ends'}"
            self.say(f"  {self._clock()}  fault: {self.status}")

    # -- running
    def _clock(self) -> str:
        t = min(self.sim_now(), self.sc.open_s)
        c = self.sc.clock_of(t) % 86400
        day = f"day {self.sc.day_of(t) + 1} " if self.sc.days != 1 else ""
        return f"{day}{int(c // 3600):02d}:{int(c % 3600 // 60):02d}"

    def _progress(self) -> str:
        t = self.tally
        share = "" if math.isinf(self.sc.open_s) else f" {min(100, int(100 * self.sim_now() / self.sc.open_s)):3d}%"
        behind = max(t.behind.values(), default=0.0)
        return (f"[{self._clock()}{share}] services {t.services}  pressed {len(t.pressed)}  "
                f"walked away {t.walked_away}  qr {t.qr} (phone {len(t.phone_rated)})  no prompt {t.no_prompt}  at the hub {self._hub_count}"
                f"{f'  behind {behind:.0f} s' if behind >= 1 else ''}"
                f"{'  | ' + self.status if self.status else ''}")

    def _hub_ratings_now(self) -> None:
        hub = self.hall.hub
        assert hub is not None
        today = datetime.now(CHINA_TZ).date()
        try:
            stats = hub._admin("GET", "/api/v1/stats", params={
                "from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1)),
                "hall": self.sc.hall}, timeout=2.0).json()
            self._hub_count = str(stats["total"]["ratings"])
        except (httpx.HTTPError, OSError, KeyError):
            self._hub_count = "(hub not answering)"

    def watch(self, final: bool = False) -> None:
        """Called about twice a second while the hall runs, and once more (`final`) after it drained."""

    def run(self, stop: threading.Event, until: float | None = None) -> None:
        """Play the day. `until`: real seconds after which the citizens stop, played or not (a
        hall that fell behind its plan would otherwise run on); the rest count as not played."""
        self.t0 = time.monotonic()
        self.until = until
        threads = [threading.Thread(target=self._window_loop, args=(w.id, stop), daemon=True)
                   for w in self.sc.windows]
        threads.append(threading.Thread(target=self._fault_loop, args=(stop,), daemon=True))
        for th in threads:
            th.start()
        last_hub = 0.0
        closed_at = None
        last_line = self.t0
        while any(th.is_alive() for th in threads) and not stop.is_set():
            now = time.monotonic()
            if self.closing.is_set() and closed_at is None:
                closed_at = now
                self._say_closing()
            if closed_at is not None and now - closed_at > CLOSE_S:
                self.say(f"  ! the counters did not finish in {CLOSE_S:g} s: stopping them")
                break
            if until is not None and now - self.t0 >= until:
                self.say(f"  stopping the citizens at {until:g} s (the plan is not played to its end)")
                break
            if now - last_hub >= 2.0:
                last_hub = now
                self._hub_ratings_now()
            self.watch()
            line = self._progress()
            if self.tty:
                sys.stdout.write("\r\x1b[K" + line[:200])
                sys.stdout.flush()
            elif now - last_line >= 10:
                last_line = now
                self._out(line)
            stop.wait(PROGRESS_S)
        stop.set()
        self._connections.close()
        if self.tty:
            sys.stdout.write("\n")
        if self.closing.is_set() and closed_at is None:  # the counters were free: all ended at once
            self._say_closing()
        for th in threads:
            th.join(timeout=QUEUE_RETRY_S)

    def _say_closing(self) -> None:
        self.say(f"\nstopping at {self._clock()}: no more citizens come; those at a counter are served and "
                 f"rate (up to {CLOSE_S:g} s). Ctrl-C now stops at once, without the reconciliation.")

    # -- the end
    def service_days(self) -> tuple[str, str]:
        """The days (YYYY-MM-DD) the services played so far are on, with a day's margin each side."""
        last = self.sc.day_of(self.sim_now()) if self.t0 else 0
        return str(self.sc.day - timedelta(days=1)), str(self.sc.day + timedelta(days=last + 1))

    def _drained(self) -> bool:
        """The hub holds as many ratings as the devices stored and as many services as the queue
        system finished, and the gateway's outbox is empty (what is missing is then lost)."""
        hub, gw = self.hall.hub, self.hall.gateway
        assert hub is not None and gw is not None
        today = datetime.now(CHINA_TZ).date()
        try:
            ratings = hub._admin("GET", "/api/v1/stats", params={
                "from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1)),
                "hall": self.sc.hall}).json()["total"]["ratings"]
            first, last = self.service_days()
            services = hub._admin("GET", "/api/v1/stats", params={
                "from": first, "to": last, "hall": self.sc.hall}).json()["total"]["services"]
            pending = gw.status()["outbox"].get("pending", 0)
        except (httpx.HTTPError, OSError):
            return False
        # phone ratings count in the statistics too (docs/phone.md)
        return (ratings >= len(self.tally.pressed) + len(self.tally.phone_rated)
                and services >= self.tally.services and pending == 0)

    def _late_presses(self) -> None:
        """A press the device confirmed only after RATING_WAIT_S (a slow or starved device) is
        stored all the same and must reach the hub: its `rating` event, the first after the tap
        not claimed by another press, joins the presses."""
        t = self.tally
        claimed = {p.id for p in t.pressed}
        still = []
        for window, tap, wall, score in t.unconfirmed:
            seat = self.hall.seats[window]
            for e in list(seat.device.events):
                if e.name == "rating" and e.at >= tap and f"{seat.device_id}:{e.data['n']}" not in claimed:
                    p = Pressed(seat.device_id, e.data["n"], e.data["score"], e.data.get("sess"), at=wall,
                                stored_s=e.at - tap, late=True)
                    t.pressed.append(p)
                    claimed.add(p.id)
                    t.confirmed_late += 1
                    break
            else:
                still.append((window, tap, wall, score))
        t.unconfirmed = still

    def finish(self) -> Reconciliation:
        h = self.hall
        assert h.hub is not None and h.broker is not None and h.gateway is not None
        self._ensure_up()
        played_s = min(self.sim_now(), self.sc.open_s)
        if self.plan is not None:
            self.tally.not_played = self.plan.count - len(self.tally.timings)
        if not self._phones.finish(PHONE_DRAIN_S):
            self.say(f"  ! phones still sending after {PHONE_DRAIN_S:g} s: not counted")
        self._late_presses()
        self.say(f"\nwaiting for the last ratings to reach the hub (up to {DRAIN_S:g} s) ...")
        began = time.monotonic()
        deadline = began + DRAIN_S
        drained = self._drained()
        while time.monotonic() < deadline and not drained:
            time.sleep(0.5)
            drained = self._drained()
        self.say(f"  drained in {time.monotonic() - began:.1f} s" if drained else
                 f"  not drained after {DRAIN_S:g} s: what has not reached the hub counts as lost")
        self._late_presses()
        self.watch(final=True)
        with self.tally.lock:
            phone_rated = list(self.tally.phone_rated)
        result = reconcile(h.hub, self.sc.hall, [s.device_id for s in h.seats.values()], self.tally.pressed,
                           self.tally.services, self.service_days(), phone_rated=phone_rated)
        h.stop_all()
        t = self.tally
        self.say("\nreconciliation (asked of the hub):")
        citizens = (f"planned       {self.plan.count}" if self.plan is not None
                    else f"called        {t.came}")
        self.say(f"  citizens {citizens} (walked away {t.walked_away}, used the QR code "
                 f"{t.qr}, no prompt {t.no_prompt}, press not taken {t.not_taken - t.confirmed_late}"
                 f"{f', confirmed late {t.confirmed_late}' if t.confirmed_late else ''}"
                 f"{f', not played {t.not_played}' if t.not_played else ''})")
        if t.qr:
            refused = ", ".join(f"{k} {v}" for k, v in sorted(t.phone_refused.items()))
            self.say(f"  phone page             {len(phone_rated)} of {t.qr} QR citizens rated (stored: 303)"
                     f"{f'; not rated: {refused}' if refused else ''}")
        self.say(f"  fraud                  staff pressed for the citizen {t.staff_presses}, "
                 f"burst presses {t.burst_presses}")
        for line in report_lines(result):
            self.say(line)
        self.say(f"  real time              {time.monotonic() - self.t0:.0f} s for {played_s:.0f} s of opening "
                 f"time at {self.sc.speed:g}x, plus the drain")
        self.say("OK: nothing lost, nothing doubled" if result.ok else "FAILED: see lost / duplicated above")
        return result

    def _ensure_up(self) -> None:
        """A fault whose end lies past the simulated day ends now, so the hall can drain."""
        h = self.hall
        assert h.hub is not None and h.broker is not None and h.gateway is not None
        if not h.broker.running:
            h.broker.start()
        if not h.hub.running:
            h.hub.start()
        if not h.gateway.running:
            h.gateway.start()
        for seat in h.seats.values():
            if not seat.device.running:
                seat.device.start()
            seat.device.network(True)
