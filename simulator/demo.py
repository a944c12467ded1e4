"""`hcp demo`: a whole hall on this machine, end to end, that a newcomer can watch.

A private Mosquitto, the hub (SQLite), the hall's gateway, and counter devices running the real
firmware under MicroPython. Simulated citizens take tickets; the queue system (this module) tells
the gateway when each service finishes; the gateway prompts the window's device; the citizen
presses a button (or walks away). Every rating is printed when the hub has it. Ctrl-C (or
--duration) stops everything and prints a reconciliation made by asking the hub.
"""

from __future__ import annotations

import argparse
import itertools
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hcp.protocol import LEVELS
from simulator.broker import Broker
from simulator.device_process import DeviceProcess
from simulator.hall import Hall, Seat, hub_ratings
from simulator.services import GatewayProcess, HubProcess

HALL = "demo-hall"
STAFF = [("S0101", "张伟"), ("S0102", "王芳"), ("S0103", "李娜"), ("S0104", "刘洋"),
         ("S0105", "陈静"), ("S0106", "杨磊"), ("S0107", "赵敏"), ("S0108", "黄勇"),
         ("S0109", "周杰"), ("S0110", "吴婷"), ("S0111", "徐强"), ("S0112", "孙丽")]
MATTERS = [("000105001000", "个体工商户设立登记", "市市场监督管理局"),
           ("000113001000", "居民身份证换领", "市公安局"),
           ("000118003000", "社会保险参保登记", "市人力资源和社会保障局"),
           ("000121002000", "不动产登记资料查询", "市自然资源局"),
           ("000102004000", "机动车驾驶证补领", "市公安局交通管理支队"),
           ("000128001000", "公积金提取", "市住房公积金管理中心")]
SCORES = (5, 4, 3, 2, 1)
SCORE_WEIGHTS = (62, 24, 8, 4, 2)  # most citizens are satisfied; a few are not
NO_RATING_CHANCE = 0.12  # citizens who walk away without pressing
PROMPT_WAIT_S = 10.0
HUB_POLL_S = 1.0
PROGRESS_EVERY_S = 10.0


@dataclass
class Tally:
    services: int = 0
    presses: int = 0
    walked_away: int = 0
    pressed: dict[str, int] = field(default_factory=dict)  # rating id -> score, from the devices
    lock: threading.Lock = field(default_factory=threading.Lock)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=4, help="counter windows, one device each (default 4)")
    parser.add_argument("--duration", type=float, default=0,
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=2026, help="random seed for the citizens (default 2026)")
    parser.add_argument("--pace", type=float, default=1.0,
                        help="speed of the citizens: 2 = twice as many services per minute")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep all files here (default: a temporary directory, removed at the end)")


def run_from_args(args: argparse.Namespace) -> int:
    if not 1 <= args.devices <= 50:
        print("hcp demo: --devices must be 1..50", file=sys.stderr)
        return 2
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hcp-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(workdir, args.devices, args.seed, args.pace)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        demo.start()
        demo.run(stop, args.duration)
    except RuntimeError as exc:
        print(f"hcp demo: {exc}", file=sys.stderr)
        demo.stop_all()
        return 1
    ok = demo.finish()
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"files kept in {workdir}")
    return 0 if ok else 1


class Demo:
    def __init__(self, workdir: Path, n_devices: int, seed: int, pace: float):
        self.workdir = workdir
        self.n = n_devices
        self.rng = random.Random(seed)
        self.pace = max(0.1, pace)
        self.tally = Tally()
        self.hall = Hall(workdir, HALL)
        self.broker: Broker | None = None
        self.hub: HubProcess | None = None
        self.gateway: GatewayProcess | None = None
        self.devices: list[DeviceProcess] = []
        self.windows = [str(i + 1) for i in range(n_devices)]
        self._tickets = itertools.count(1)
        self._events = itertools.count(1)
        self._seen_at_hub: set[str] = set()

    def say(self, text: str) -> None:
        print(text, flush=True)

    def start(self) -> None:
        self.say(f"haochaping demo: hall {HALL}, {self.n} counter devices running the real firmware "
                 f"under MicroPython")
        seats = [Seat(f"D{int(w):02d}", w, secrets.token_bytes(32), "real") for w in self.windows]
        self.hall.start(seats, gateway_settings={"session_ttl_s": 20})
        self.broker, self.hub, self.gateway = self.hall.broker, self.hall.hub, self.hall.gateway
        assert self.broker is not None and self.hub is not None and self.gateway is not None
        self.say(f"  broker   Mosquitto on 127.0.0.1:{self.broker.port}")
        self.say(f"  hub      {self.hub.url}  (SQLite {self.hub.db_path})")
        self.say(f"  gateway  {self.gateway.url}/api/v1/status  (SQLite {self.gateway.db_path})")
        for seat in seats:
            self.devices.append(self.hall.add_device(seat, {"lang": "zh-Hans", "health_s": 30}))
        for device in self.devices:
            device.wait_event("online", timeout=20)
        self.say(f"  ratings  curl -H 'Authorization: Bearer {self.hub.admin_token}' "
                 f"{self.hub.url}/api/v1/ratings")
        self.say("Citizens are arriving. Each line is a rating the hub has verified and stored. "
                 "Press Ctrl-C to stop.\n")

    # -- citizens and the queue system
    def _event(self, kind: str, ticket: str, window: str, staff: tuple, matter: tuple) -> dict:
        assert self.gateway is not None
        return self.gateway.post_event(
            event_id=f"demo-{next(self._events)}", type=kind, ticket=ticket, window=window,
            at=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
            staff_id=staff[0], staff_name=staff[1], matter_code=matter[0], matter_name=matter[1],
            unit=matter[2])

    def _window_loop(self, index: int, stop: threading.Event, rng: random.Random) -> None:
        window = self.windows[index]
        device = self.devices[index]
        staff = STAFF[index % len(STAFF)]
        while not stop.is_set():
            if stop.wait(rng.uniform(1.0, 4.0) / self.pace):
                return
            ticket = f"A{next(self._tickets):03d}"
            matter = rng.choice(MATTERS)
            try:
                self._event("called", ticket, window, staff, matter)
                self._event("accepted", ticket, window, staff, matter)
                if stop.wait(rng.uniform(1.0, 3.0) / self.pace):
                    return
                since = len(device.events)
                self._event("finished", ticket, window, staff, matter)
            except (RuntimeError, OSError) as exc:
                self.say(f"  ! window {window}: {exc}")
                continue
            with self.tally.lock:
                self.tally.services += 1
            try:
                device.wait_event("session", lambda d: d.get("op") == "open", PROMPT_WAIT_S, since)
            except TimeoutError:
                self.say(f"  ! window {window}: the device did not show the prompt for {ticket}")
                continue
            if rng.random() < NO_RATING_CHANCE:
                with self.tally.lock:
                    self.tally.walked_away += 1
                continue
            if stop.wait(rng.uniform(0.5, 2.0) / self.pace):
                return
            score = rng.choices(SCORES, SCORE_WEIGHTS)[0]
            since = len(device.events)
            device.tap(score)
            try:
                e = device.wait_event("rating", lambda d: True, 5, since)
            except TimeoutError:
                self.say(f"  ! window {window}: the press was not taken ({device.state})")
                continue
            with self.tally.lock:
                self.tally.presses += 1
                self.tally.pressed[f"D{int(window):02d}:{e.data['n']}"] = score

    def _report_hub(self) -> None:
        assert self.hub is not None
        for r in sorted(self.hub.ratings(hall=HALL), key=lambda r: r["received_at"]):
            if r["id"] in self._seen_at_hub:
                continue
            self._seen_at_hub.add(r["id"])
            when = datetime.fromisoformat(r["received_at"]).astimezone().strftime("%H:%M:%S")
            bound = f"ticket {r['ticket']}  staff {r['staff_id']}" if r["bound"] else f"unbound ({r['unbound_reason']})"
            flag = "  差评" if r["bad"] else ""
            checked = "signature verified" if r["verified"] else "SIGNATURE NOT VERIFIED"
            self.say(f"{when}  window {r['window'] or '?':>2}  {bound}  {r['score']} {LEVELS[r['score']]}"
                     f"  [{r['id']}, {checked}]{flag}")

    def run(self, stop: threading.Event, duration: float) -> None:
        threads = [threading.Thread(target=self._window_loop,
                                    args=(i, stop, random.Random(self.rng.random())), daemon=True)
                   for i in range(self.n)]
        for t in threads:
            t.start()
        started = time.monotonic()
        last_progress = started
        while not stop.wait(HUB_POLL_S):
            try:
                self._report_hub()
            except OSError as exc:
                self.say(f"  ! hub not answering: {exc}")
            now = time.monotonic()
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                t = self.tally
                self.say(f"-- {int(now - started)} s: services {t.services}, pressed {t.presses}, "
                         f"walked away {t.walked_away}, at the hub {len(self._seen_at_hub)}")
            if duration and now - started >= duration:
                stop.set()
        for t in threads:
            t.join(timeout=10)

    # -- the end
    def finish(self) -> bool:
        """Wait for the last ratings to reach the hub, reconcile against it, stop everything."""
        self.say("\nstopping: waiting for the last ratings to reach the hub ...")
        deadline = time.monotonic() + 15
        at_hub: dict[str, dict] = {}
        while time.monotonic() < deadline:
            at_hub = hub_ratings(self.hub, [d.flash_dir.name for d in self.devices]) if self.hub else {}
            if set(self.tally.pressed) <= set(at_hub):
                break
            time.sleep(0.5)
        self._report_hub()
        lost = sorted(set(self.tally.pressed) - set(at_hub))
        wrong = sorted(i for i, s in self.tally.pressed.items() if i in at_hub and at_hub[i]["score"] != s)
        unbound = sum(1 for r in at_hub.values() if not r["bound"])
        self.stop_all()
        self.say("\nreconciliation (asked of the hub):")
        self.say(f"  services finished      {self.tally.services}")
        self.say(f"  citizens who pressed   {self.tally.presses}")
        self.say(f"  walked away unrated    {self.tally.walked_away}")
        self.say(f"  ratings at the hub     {len(at_hub)} (unbound {unbound})")
        self.say(f"  lost                   {len(lost)}{' ' + ', '.join(lost) if lost else ''}")
        self.say(f"  score differs          {len(wrong)}")
        return not lost and not wrong

    def stop_all(self) -> None:
        self.hall.stop_all()
