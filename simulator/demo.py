"""`hcp demo`: a whole hall on this machine, end to end, that a newcomer can watch.

It runs the hall of `simulator/scenarios/demo-hall.toml` on the `hcp sim` engine (simulator/sim.py):
a private Mosquitto, the hub (SQLite), the hall's gateway, and one counter device per window running
the real firmware under MicroPython. The hall opens today and plays one day after another until
Ctrl-C (or --duration). The citizens, the queue system, the drain and the reconciliation asked of
the hub are the simulator's; this module picks the scenario, says where to look, and prints each
rating when the hub has it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx

from hcp.protocol import BAD_SCORES, LEVELS
from hub.default_rules import CHINA_TZ
from simulator.scenario import Scenario, ScenarioError, load
from simulator.sim import PROGRESS_S, Sim, play

SCENARIO = Path(__file__).with_name("scenarios") / "demo-hall.toml"
MAX_DEVICES = 50  # each a MicroPython process; more is a load test (`hcp sim` with lightweight devices)
DEMO_LOGIN = "demo"  # the operator account the demo makes, to sign in to the dashboard
HUB_POLL_S = 1.0  # how often the hub is asked for new ratings to print


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=None,
                        help=f"counter windows, one real firmware device each (default: the demo hall's 12; "
                             f"at most {MAX_DEVICES}, windows past 12 repeat the hall's windows)")
    parser.add_argument("--duration", type=float, default=0,
                        help="stop after this many real seconds as Ctrl-C does: those at a counter are served "
                             "and rate, the hall drains, the reconciliation (default: run until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for the citizens (default 2026)")
    parser.add_argument("--pace", type=float, default=1.0,
                        help="2 = twice as many citizens per minute (the hall's clock runs 30x real time "
                             "at pace 1)")
    parser.add_argument("--qr-share", type=float, default=None,
                        help="share of citizens who scan the device's QR code and rate on the hub's phone "
                             "page instead of pressing, 0..1 (default: the demo hall's 0.04)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep all files here (default: a temporary directory, removed at the end)")


def demo_scenario(devices: int | None = None, seed: int | None = None, pace: float = 1.0,
                  day: date | None = None, qr_share: float | None = None) -> Scenario:
    """The demo hall with the command's options: `devices` windows (the file's, repeated past its
    count), open from `day` (default today in China) one day after another until stopped.
    `qr_share` replaces the file's share of QR citizens (ScenarioError if it does not fit)."""
    sc = load(SCENARIO)
    if qr_share is not None:
        if not 0 <= qr_share <= 1 - sc.citizens.no_rating:
            raise ScenarioError(f"--qr-share must be 0..{1 - sc.citizens.no_rating:g} (the demo hall's "
                                f"citizens who do not rate are {sc.citizens.no_rating:g})")
        sc = replace(sc, citizens=replace(sc.citizens, qr_share=qr_share))
    n = devices or len(sc.windows)
    windows = tuple(replace(sc.windows[i % len(sc.windows)], id=str(i + 1), device_id=f"D{i + 1}")
                    for i in range(n))
    speed = sc.speed * pace
    return replace(sc, windows=windows, speed=speed, seed=sc.seed if seed is None else seed,
                   day=day or datetime.now(CHINA_TZ).date(), days=None, duration_s=None)


def run_from_args(args: argparse.Namespace) -> int:
    if args.devices is not None and not 1 <= args.devices <= MAX_DEVICES:
        print(f"hcp demo: --devices must be 1..{MAX_DEVICES}", file=sys.stderr)
        return 2
    if args.duration < 0 or not 0.05 <= args.pace <= 100:
        print("hcp demo: --duration must be 0 or more, --pace 0.05..100", file=sys.stderr)
        return 2
    try:
        sc = demo_scenario(args.devices, args.seed, args.pace, qr_share=args.qr_share)
    except ScenarioError as exc:  # a --qr-share out of range, or a broken checkout's demo file
        print(f"hcp demo: {exc}", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hcp-demo-"))
    sim = DemoSim(sc, None, workdir, stop_after_s=args.duration or None)
    return play(sim, keep=args.workdir is not None, name="hcp demo")


class DemoSim(Sim):
    """The simulator saying what a newcomer needs: where the hub is and how to read it, and each
    rating as the hub stores it."""

    def __init__(self, sc: Scenario, plan: None, workdir: Path, stop_after_s: float | None = None):
        super().__init__(sc, plan, workdir)
        self.stop_after_s = stop_after_s  # --duration: a Ctrl-C after this many real seconds
        self._shown: set[str] = set()
        self._last_poll = 0.0

    def announce_start(self) -> None:
        sc = self.sc
        self.say(f"haochaping demo: {sc.hall_name} (hall {sc.hall}), {len(sc.windows)} windows, each with a "
                 f"counter device running the real firmware under MicroPython")
        self.say("  starting Mosquitto, the hub, the hall's gateway and the devices ...")

    def announce_ready(self) -> None:
        h, sc = self.hall, self.sc
        assert h.broker is not None and h.hub is not None and h.gateway is not None
        hub, token = h.hub.url, h.hub.admin_token
        curl = f"curl -sH 'Authorization: Bearer {token}'"
        week = f"from={sc.day}&to={sc.day + timedelta(days=6)}"
        self.say(f"  broker     Mosquitto on 127.0.0.1:{h.broker.port}")
        self.say(f"  hub        {hub}  (SQLite {h.hub.db_path})")
        password = h.hub.create_user(DEMO_LOGIN, "演示运维 demo operator", "operator")
        self.say(f"  dashboard  {hub}/dashboard  (sign in as {DEMO_LOGIN}, password {password}: an operator "
                 "of the whole hub)")
        self.say(f"  API        {hub}/docs  (the hub's OpenAPI page: \"Authorize\" with the token to try the reads)")
        self.say(f"  token      {token}  (this run's admin token: every read of the hub needs it)")
        self.say(f"  devices    {curl} '{hub}/api/v1/devices?hall={sc.hall}'")
        self.say(f"  stats      {curl} '{hub}/api/v1/stats?{week}&hall={sc.hall}'")
        self.say(f"  ratings    {curl} '{hub}/api/v1/ratings?hall={sc.hall}&limit=20'")
        self.say(f"  phone      {curl} '{hub}/api/v1/phone/ratings?hall={sc.hall}&limit=20'")
        self.say(f"  gateway    {h.gateway.url}/status  (the hall status page: devices, outbox, hub link; "
                 "no token)")
        self.say(f"Citizens are arriving: the hall opens at {self._opening()} on {sc.day} and its clock runs "
                 f"{sc.speed:g}x real time. Each line is a rating the hub has verified and stored: "
                 "pressed on a device, or given on the phone page by a citizen who scanned its QR code.")
        self.say("Ctrl-C stops: no more citizens, the last ratings reach the hub, the reconciliation "
                 "(a second Ctrl-C stops at once).\n")

    def _opening(self) -> str:
        a = self.sc.opening[0][0]
        return f"{int(a // 3600):02d}:{int(a % 3600 // 60):02d}"

    def watch(self, final: bool = False) -> None:
        """Print the ratings the hub has stored since the last look (while running, at most once a
        second; `final`: all the rest, the hall drained)."""
        now = time.monotonic()
        if self.stop_after_s is not None and now - self.t0 >= self.stop_after_s:
            self.closing.set()
        if not final and now - self._last_poll < HUB_POLL_S - PROGRESS_S / 2:
            return
        self._last_poll = now
        hub = self.hall.hub
        if hub is None or not hub.running:
            return
        try:
            new = [(r["received_at"], r, self._rating_line) for r in hub.ratings(hall=self.sc.hall)
                   if r["id"] not in self._shown]
            new += [(r["submitted_at"], r, self._phone_line) for r in hub.phone_ratings(hall=self.sc.hall)
                    if r["id"] not in self._shown]
        except (httpx.HTTPError, OSError):
            return  # the progress line says "hub not answering"
        for _, r, line in sorted(new, key=lambda x: (datetime.fromisoformat(x[0]), x[1]["id"])):
            self._shown.add(r["id"])
            self.say(line(r))

    def _staff(self, staff_id: str | None) -> str:
        staff = self.sc.staff.get(staff_id) if staff_id else None
        return f"staff {staff_id or '?'}{' ' + staff.name if staff else ''}"

    def _rating_line(self, r: dict) -> str:
        when = datetime.fromisoformat(r["received_at"]).astimezone().strftime("%H:%M:%S")
        if r["bound"]:
            who = f"ticket {r['ticket']}  {self._staff(r['staff_id'])}"
        else:
            who = f"unbound ({r['unbound_reason']})"
        checked = "signature verified" if r["verified"] else "SIGNATURE NOT VERIFIED"
        return (f"{when}  window {r['window'] or '?':>2}  {who}  {r['score']} {LEVELS[r['score']]}"
                f"  [{r['id']}, {checked}]{'  差评' if r['bad'] else ''}")

    def _phone_line(self, r: dict) -> str:
        """A rating from the phone page (a citizen who scanned the device's QR code): a
        supplementary rating carries the overall score, a follow-up only indicators and text."""
        when = datetime.fromisoformat(r["submitted_at"]).astimezone().strftime("%H:%M:%S")
        what = (f"{r['score']} {LEVELS[r['score']]}" if r["kind"] == "supplementary" and r["score"]
                else "follow-up (追加评价)")
        bad = "  差评" if r["kind"] == "supplementary" and r["score"] in BAD_SCORES else ""
        return (f"{when}  window {r['window'] or '?':>2}  service {r['service']}  {self._staff(r['staff_id'])}  "
                f"{what}  [phone page, {r['id']}]{bad}")
