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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx

from hub.default_rules import CHINA_TZ
from simulator.hall import Hall, Pressed, Reconciliation, Seat, reconcile, report_lines
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


@dataclass
class Tally:
    came: int = 0  # citizens called to a counter
    services: int = 0  # finished events the gateway accepted
    walked_away: int = 0
    qr: int = 0
    staff_presses: int = 0
    burst_presses: int = 0
    no_prompt: int = 0  # the device did not show the prompt (off, or the gateway down too long)
    not_taken: int = 0  # a press the device did not confirm (power cut at that moment)
    pressed: list[Pressed] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what the citizens did, in order per window
    lock: threading.Lock = field(default_factory=threading.Lock)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", type=Path, help="scenario file (TOML); examples in simulator/scenarios/")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the scenario's)")
    parser.add_argument("--speed", type=float, default=None,
                        help="simulated seconds per real second (default: the scenario's)")
    parser.add_argument("--duration", type=float, default=None,
                        help="simulate only this many seconds of opening time")
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
        json.dump(plan.as_dict(), sys.stdout, ensure_ascii=False, indent=1)
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
    return replace(sc, **changes) if changes else sc


class Sim:
    """`plan`: the citizens drawn at once (`make_plan`); None draws them as they come (`draw`), as a
    hall open until stopped (`Scenario.days` None) must. Subclasses may say other things at the
    start (`announce_start`, `announce_ready`) and watch the hub while it runs (`watch`)."""

    def __init__(self, sc: Scenario, plan: Plan | None, workdir: Path, out: Callable[[str], None] | None = None):
        self.sc = sc
        self.plan = plan
        self.visits = plan.visits if plan is not None else draw(sc)
        self.bursts = plan.bursts if plan is not None else bursts_of(sc)
        self.closing = threading.Event()  # Ctrl-C: no more citizens; those at a counter finish
        self.hall = Hall(workdir, sc.hall)
        self.tally = Tally()
        self.t0 = 0.0
        self.jump_s = 0.0  # the queue system's clock error (clock_jump)
        self.events = itertools.count(1)
        self.tty = sys.stdout.isatty()
        self.status = ""  # the last fault line, shown in the progress line
        self._hub_count: str = "-"
        self._out = out or (lambda text: print(text, flush=True))
        self.finished = threading.Event()

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
            "registry_sweep_s": 1.0}, region=region, hall_name=sc.hall_name)
        for seat in seats:
            self.hall.add_device(seat, {"lang": sc.lang, "session_ttl_s": sc.session_ttl_s,
                                        "invite": sc.invite, "health_s": 60})
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
    def _post(self, kind: str, visit: Visit, t: float, stop: threading.Event) -> dict | None:
        gw = self.hall.gateway
        assert gw is not None
        matter = self.sc.matters[visit.matter]
        body = dict(event_id=f"sim-{visit.window}-{visit.ticket}-{kind}", type=kind, ticket=visit.ticket,
                    window=visit.window, at=self.at_text(t), staff_id=visit.staff,
                    staff_name=self.sc.staff[visit.staff].name, matter_code=matter.code,
                    matter_name=matter.name, unit=matter.unit)
        deadline = time.monotonic() + QUEUE_RETRY_S
        while True:
            try:
                return gw.post_event(**body)
            except (httpx.HTTPError, RuntimeError) as exc:
                if time.monotonic() > deadline or stop.is_set():
                    self.say(f"  ! window {visit.window}: the gateway did not take {kind} of {visit.ticket}: {exc}")
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

    def _record(self, line: str) -> None:
        with self.tally.lock:
            self.tally.log.append(line)

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
        answer = self._post("finished", v, min(v.end_s, max(v.start_s, self.sim_now())), stop)
        if answer is None:
            return
        with self.tally.lock:
            self.tally.services += 1
        session = answer.get("session")
        try:
            seat.device.wait_event("session", lambda d: d.get("op") == "open" and d.get("sess") == session,
                                   PROMPT_WAIT_S, after=t)
        except TimeoutError:
            with self.tally.lock:
                self.tally.no_prompt += 1
            self._record(f"{v.window} {v.ticket} {v.staff} no prompt ({v.action} planned)")
            return
        if v.action in ("walk_away", "qr"):
            with self.tally.lock:
                if v.action == "qr":
                    self.tally.qr += 1
                else:
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

    def _press(self, seat: Seat, score: int | str, session: str | None) -> Pressed | None:
        t = time.monotonic()
        try:
            seat.device.tap(score)
            e = seat.device.wait_event("rating", timeout=RATING_WAIT_S, after=t)
        except (TimeoutError, RuntimeError, OSError):
            with self.tally.lock:
                self.tally.not_taken += 1
            return None
        p = Pressed(seat.device_id, e.data["n"], e.data["score"], e.data.get("sess"))
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
        actions = []
        for f in self.sc.faults:
            actions.append((f.at_s, "begin", f))
            if f.kind != "clock_jump" or f.for_s:
                actions.append((f.at_s + f.for_s, "end", f))
        return sorted(actions, key=lambda a: (a[0], a[1] == "begin"))

    def _fault_loop(self, stop: threading.Event) -> None:
        h = self.hall
        assert h.broker is not None and h.hub is not None and h.gateway is not None
        for at, phase, f in self._fault_actions():
            if at > self.sc.open_s:
                break  # past the end of the simulated day (--duration): `finish` ends what is still on
            if not self._sleep_until(at, stop):
                return
            seat = h.seats.get(f.device) if f.device else None
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
        return (f"[{self._clock()}{share}] services {t.services}  pressed {len(t.pressed)}  "
                f"walked away {t.walked_away}  qr {t.qr}  no prompt {t.no_prompt}  at the hub {self._hub_count}"
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

    def run(self, stop: threading.Event) -> None:
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self._window_loop, args=(w.id, stop), daemon=True)
                   for w in self.sc.windows]
        threads.append(threading.Thread(target=self._fault_loop, args=(stop,), daemon=True))
        for th in threads:
            th.start()
        last_hub = 0.0
        closed_at = None
        while any(th.is_alive() for th in threads) and not stop.is_set():
            now = time.monotonic()
            if self.closing.is_set() and closed_at is None:
                closed_at = now
                self._say_closing()
            if closed_at is not None and now - closed_at > CLOSE_S:
                self.say(f"  ! the counters did not finish in {CLOSE_S:g} s: stopping them")
                break
            if now - last_hub >= 2.0:
                last_hub = now
                self._hub_ratings_now()
            self.watch()
            line = self._progress()
            if self.tty:
                sys.stdout.write("\r\x1b[K" + line[:200])
                sys.stdout.flush()
            elif int(now - self.t0) % 10 == 0 and now - self.t0 >= 1 and now - getattr(self, "_last_line", 0) >= 5:
                self._last_line = now
                self._out(line)
            stop.wait(PROGRESS_S)
        stop.set()
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
        return ratings >= len(self.tally.pressed) and services >= self.tally.services and pending == 0

    def finish(self) -> Reconciliation:
        h = self.hall
        assert h.hub is not None and h.broker is not None and h.gateway is not None
        self._ensure_up()
        played_s = min(self.sim_now(), self.sc.open_s)
        self.say(f"\nwaiting for the last ratings to reach the hub (up to {DRAIN_S:g} s) ...")
        began = time.monotonic()
        deadline = began + DRAIN_S
        drained = self._drained()
        while time.monotonic() < deadline and not drained:
            time.sleep(0.5)
            drained = self._drained()
        self.say(f"  drained in {time.monotonic() - began:.1f} s" if drained else
                 f"  not drained after {DRAIN_S:g} s: what has not reached the hub counts as lost")
        self.watch(final=True)
        result = reconcile(h.hub, self.sc.hall, [s.device_id for s in h.seats.values()], self.tally.pressed,
                           self.tally.services, self.service_days())
        h.stop_all()
        t = self.tally
        self.say("\nreconciliation (asked of the hub):")
        citizens = (f"planned       {self.plan.count}" if self.plan is not None
                    else f"called        {t.came}")
        self.say(f"  citizens {citizens} (walked away {t.walked_away}, used the QR code "
                 f"{t.qr}, no prompt {t.no_prompt}, press not taken {t.not_taken})")
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
