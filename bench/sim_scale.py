"""Issue 6's scale benchmark: one hall (one Mosquitto, one gateway, one hub) with 200 real firmware
processes and 2,000 lightweight devices at ten times a busy hall's rate for 10 minutes, a broker
restart and a 2-minute hub outage in the middle. Lost and duplicated (asked of the hub, as `hcp sim`
does), press -> hub latency outside the faults, how far the hall fell behind, CPU and resident memory
of every process.

It is `hcp sim` (simulator/sim.py) on a scenario this script writes: `[[window]]` tables with `count`
(real windows 1..R, lightweight R+1..R+L), the busiest windows of simulator/scenarios/jilin-city-hall.toml
(12 citizens an hour, services of 3 to 6 minutes, its citizens: 12 % walk away, 5 % use the QR code,
presses 2 to 20 s after the prompt) for every window, at `speed` 10 (`--times`): the queue system and the citizens
run ten times faster than the hall's clock, so each window sees ten times a busy window's citizens.
The devices, the gateway, the hub and Mosquitto run in real time. The faults are on that clock too,
placed so that they fall at the same real seconds whatever the speed.

Latency, press -> hub: from the wall clock read just before the simulator sends the tap (a real
device acts on its debounced edge 50-60 ms later, docs/firmware.md) to the hub's `ingested_at` of the
rating, read at the end from the hub's SQLite file (the hub's wall clock, milliseconds, taken in the
write transaction just before its inserts and COMMIT: the rating is durable a few ms after it). Same
machine, same clock. Split at the gateway's `received_at` (its wall clock when paho handed it the
message). "Steady": pressed while no fault was on, at the hub before the next fault began, and not
while the hall was still recovering from one (after a fault ended, until the last rating it held
reached the hub: the gateway's retry backoff after a hub outage is in that time). The other classes
are reported apart, and `timeline` gives p50/p99 of every press per minute of the run.

Falling behind: each window plays its citizens in order and waits for its device (the prompt, the
press), so a device, the gateway or the simulator that does not keep up makes that window late. Per
service: slip (when `finished` was posted against the plan), the gateway's answer to it, finished ->
prompt on the device, tap -> stored on the device. A device "kept up" when its window never slipped
more than KEPT_UP_SLIP_S, every prompt outside the faults came, and every press was confirmed within
sim.RATING_WAIT_S. The citizens stop TAIL_S after the arrivals end: services planned to finish by
then and never finished are counted as the hall's backlog (`behind_not_played`), the ones planned
later are cut (`cut_at_the_end`).

CPU and resident memory from /proc every SAMPLE_S: the hub, the gateway, Mosquitto (each restart is
a new pid; CPU summed over them), this process (the simulator: the lightweight devices, one thread per
window, the queue system's HTTP posts, the firmware processes' control sockets), and the firmware
processes as a group (sum, mean, max per process; PSS at the end, since their RSS shares the
interpreter's pages). A process's CPU between its last sample and its exit is not counted (< SAMPLE_S).

Usage: .venv/bin/python bench/sim_scale.py [--quick] [--real N] [--lite M] [--minutes X] [--keep]
Full runs are heavy: `flock /tmp/hcp-heavy.lock .venv/bin/python bench/sim_scale.py`.
Progress on stderr, one JSON line on stdout; exit 1 if anything was lost or doubled (or the hall
could not be started).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from _harness import emit, log, pct
from _gateway_harness import cpu_s, rss_kb
from _hub_harness import machine_jiffies

import httpx  # noqa: E402

from hub.default_rules import CHINA_TZ  # noqa: E402
from simulator import sim as sim_module  # noqa: E402
from simulator.hall import Pressed  # noqa: E402
from simulator.plan import make_plan  # noqa: E402
from simulator.scenario import Scenario, parse  # noqa: E402
from simulator.sim import Sim  # noqa: E402

TIMES = 10  # "ten times a busy hall's rate": the scenario's speed
BUSY_PER_HOUR = 12  # citizens per window-hour: the busiest windows of jilin-city-hall.toml
SERVICE = ("3m", "6m")  # their service time (simulated)
SAMPLE_S = 2.0
KEPT_UP_SLIP_S = 5.0  # a window this late (real seconds) behind its plan: its device did not keep up
TAIL_S = 10.0  # the citizens stop this long after the arrivals end; services planned to end later are cut
# The firmware processes yield the CPU to the hall's own (each board is a chip of its own; 200
# interpreters polling every 10 ms would otherwise starve the broker, gateway, hub and simulator).
DEVICE_NICE = 19
FD_PER_REAL = 4  # control socket, stdin and stdout pipes, console log while starting
FD_PER_LITE = 2  # MQTT socket, flash file while writing


@dataclass
class Setup:
    real: int
    lite: int
    minutes: float
    broker_at_s: float  # real seconds after the start
    broker_for_s: float
    outage_at_s: float
    outage_for_s: float
    seed: int
    times: float = TIMES

    @property
    def run_s(self) -> float:
        return self.minutes * 60


def scenario_text(s: Setup) -> str:
    """The hall as a scenario file (docs/simulator.md); times on the hall's clock (x `times`)."""
    def sim(real_s: float) -> str:
        return f"{real_s * s.times:g}s"
    staff = "\n".join(f'[[staff]]\nid = "S{i:02d}"\nname = "窗口{i:02d}"' for i in range(1, 21))
    staff_ids = ", ".join(f'"S{i:02d}"' for i in range(1, 21))
    windows = []
    for first, count, kind in ((1, s.real, "real"), (s.real + 1, s.lite, "lite")):
        if count:
            windows.append(f'[[window]]\nid = {first}\ncount = {count}\ndevice = "{kind}"\n'
                           f'staff = [{staff_ids}]\narrivals_per_hour = {BUSY_PER_HOUR}\n'
                           f'service = ["{SERVICE[0]}", "{SERVICE[1]}"]\n')
    return f"""
[scenario]
name = "scale bench: {s.real} real + {s.lite} lightweight devices, {s.times:g}x a busy hall"
seed = {s.seed}
date = "{(datetime.now(CHINA_TZ) - timedelta(days=1)).date()}"  # within the region's 7 days: no defaults
speed = {s.times:g}
duration = "{sim(s.run_s)}"

[region]
id = "jilin"
name = "吉林市"
area_code = "220200"
preset = "jilin"

[hall]
id = "scale"
name = "规模测试大厅"
opening = ["08:00", "20:00"]
session_ttl = "60s"

{staff}

[[matter]]
code = "000113001000"
name = "居民身份证换领"
unit = "市公安局"
[[matter]]
code = "000128001000"
name = "公积金提取"
unit = "市住房公积金管理中心"

[citizens]
ratings = {{ 5 = 62, 4 = 24, 3 = 8, 2 = 4, 1 = 2 }}
no_rating = 0.12
qr_share = 0.05
press = ["2s", "20s"]

{chr(10).join(windows)}
[[fault]]
kind = "broker_restart"
at = "+{sim(s.broker_at_s)}"
for = "{sim(s.broker_for_s)}"

[[fault]]
kind = "hub_outage"
at = "+{sim(s.outage_at_s)}"
for = "{sim(s.outage_for_s)}"
"""


# ---------------------------------------------------------------------------- /proc


def pss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


@dataclass
class ProcRole:
    """One role's processes over the run: CPU per pid (from its first sample, or whole when it
    started during the run) and RSS per sample."""

    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    rss: dict[int, list[int]] = field(default_factory=dict)  # pid -> VmRSS kB per sample
    hwm: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM kB (last read)
    sums: list[int] = field(default_factory=list)  # the role's VmRSS kB summed, per sample


class ProcSampler:
    """Samples each role's current pids (a callable each: a restarted hub is a new pid)."""

    def __init__(self, roles: dict[str, Callable[[], list[int]]]):
        self.roles = roles
        self.data = {name: ProcRole() for name in roles}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._initial = True

    def sample(self) -> None:
        for name, pids in self.roles.items():
            role = self.data[name]
            total = 0
            for pid in pids():
                try:
                    cpu, mem = cpu_s(pid), rss_kb(pid)
                except (OSError, IndexError, ValueError):
                    continue  # it exited meanwhile
                role.first.setdefault(pid, cpu if self._initial else 0.0)
                role.last[pid] = cpu
                role.rss.setdefault(pid, []).append(mem.get("VmRSS", 0))
                role.hwm[pid] = mem.get("VmHWM", 0)
                total += mem.get("VmRSS", 0)
            role.sums.append(total)
        self._initial = False

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.machine0 = machine_jiffies()
        self.sample()

        def loop() -> None:
            while not self._stop.wait(SAMPLE_S):
                self.sample()

        self._thread = threading.Thread(target=loop, name="proc-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        self.wall = time.monotonic() - self.t0
        total, idle = machine_jiffies()
        self.machine_busy = ((total - self.machine0[0]) - (idle - self.machine0[1])) / self.wall

    def cpu(self, name: str) -> dict[int, float]:
        role = self.data[name]
        return {pid: role.last[pid] - role.first[pid] for pid in role.last}

    def one(self, name: str) -> dict:
        """A single process (new pids after restarts): cores used, RSS mean and peak."""
        role = self.data[name]
        samples = [v for vs in role.rss.values() for v in vs]
        return {"pids": len(role.last), "cpu_s": round(sum(self.cpu(name).values()), 1),
                "cpu_cores": round(sum(self.cpu(name).values()) / self.wall, 3),
                "rss_mb_mean": round(sum(samples) / len(samples) / 1024, 1) if samples else None,
                "rss_mb_max": round(max(samples) / 1024, 1) if samples else None,
                "hwm_mb": round(max(role.hwm.values()) / 1024, 1) if role.hwm else None}

    def group(self, name: str, pss: list[int]) -> dict:
        """Many processes: sum, mean and max per process."""
        role = self.data[name]
        cpu = self.cpu(name)
        if not cpu:
            return {"count": 0}
        per_cpu = [c / self.wall for c in cpu.values()]
        per_rss = [sum(v) / len(v) for v in role.rss.values()]
        return {"count": len(cpu), "cpu_cores_sum": round(sum(per_cpu), 3),
                "cpu_pct_mean": round(100 * sum(per_cpu) / len(per_cpu), 2),
                "cpu_pct_max": round(100 * max(per_cpu), 2),
                "rss_mb_sum_mean": round(sum(role.sums) / len(role.sums) / 1024, 1),
                "rss_mb_mean": round(sum(per_rss) / len(per_rss) / 1024, 2),
                "rss_mb_max": round(max(max(v) for v in role.rss.values()) / 1024, 2),
                "pss_mb_sum_end": round(sum(pss) / 1024, 1) if pss else None,
                "pss_mb_mean_end": round(sum(pss) / len(pss) / 1024, 2) if pss else None}


# ---------------------------------------------------------------------------- figures


def summary(values_s: list[float]) -> dict:
    if not values_s:
        return {"n": 0}
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50": round(pct(ms, 50), 1), "p99": round(pct(ms, 99), 1),
            "max": round(max(ms), 1)}


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def hub_times(db: Path, hall: str) -> dict[str, tuple[float, float]]:
    """id -> (gateway received_at, hub ingested_at) as wall seconds, from the hub's SQLite file
    (read-only, after the hub stopped)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT device, n, received_at, ingested_at FROM ratings WHERE hall = ?",
                           (hall,)).fetchall()
    finally:
        con.close()
    return {f"{d}:{n}": (epoch(r), epoch(i)) for d, n, r, i in rows}


def fault_intervals(sim: Sim, end: float) -> list[tuple[str, float, float]]:
    """(kind, begin, end) in wall seconds, as the faults actually happened."""
    out = []
    begun: dict[int, tuple[str, float]] = {}
    for f, phase, at in sim.faults_seen:
        if phase == "begin":
            begun[id(f)] = (f.kind, at)
        elif id(f) in begun:
            kind, b = begun.pop(id(f))
            out.append((kind, b, at))
    out += [(kind, b, end) for kind, b in begun.values()]
    return sorted(out, key=lambda x: x[1])


def fault_effects(pressed: list[Pressed], times: dict[str, tuple[float, float]],
                  faults: list[tuple[str, float, float]], wall0: float) -> list[dict]:
    """Per fault: the ratings it held (pressed before its end, at the hub after its begin) and
    when the last of them reached the hub: the hall has recovered then."""
    out = []
    for kind, b, e in faults:
        held = [times[p.id][1] for p in pressed
                if p.id in times and p.at is not None and p.at <= e and times[p.id][1] >= b]
        out.append({"kind": kind, "begin_s": round(b - wall0, 1), "end_s": round(e - wall0, 1),
                    "held_ratings": len(held), "recovered_s": round(max(held) - e, 1) if held else 0.0,
                    "_b": b, "_e": e, "_recovered": max([e, *held])})
    return out


def latency(pressed: list[Pressed], times: dict[str, tuple[float, float]], effects: list[dict],
            kinds: dict[str, str], wall0: float, bucket_s: float) -> dict:
    """Press -> hub by class: steady (no fault near), during a fault, caught in flight by one,
    recovering (pressed after a fault ended, before the last rating it held reached the hub)."""
    steady: dict[str, list[float]] = {"real": [], "lite": []}
    to_gw: list[float] = []
    gw_to_hub: list[float] = []
    during: list[float] = []
    caught: list[float] = []
    recovering: list[float] = []
    buckets: dict[int, list[float]] = {}
    for p in pressed:
        if p.id not in times or p.at is None:
            continue
        received, ingested = times[p.id]
        e2e = ingested - p.at
        buckets.setdefault(int((p.at - wall0) // bucket_s), []).append(e2e)
        if any(f["_b"] <= p.at <= f["_e"] for f in effects):
            during.append(e2e)
        elif any(p.at < f["_b"] <= ingested for f in effects):
            caught.append(e2e)
        elif any(f["_e"] < p.at <= f["_recovered"] for f in effects):
            recovering.append(e2e)
        else:
            steady[kinds[p.device]].append(e2e)
            to_gw.append(received - p.at)
            gw_to_hub.append(ingested - received)
    out = {"steady": summary(steady["real"] + steady["lite"]), "steady_real": summary(steady["real"]),
           "steady_lite": summary(steady["lite"]), "steady_press_to_gateway": summary(to_gw),
           "steady_gateway_to_hub": summary(gw_to_hub), "pressed_during_faults": summary(during),
           "caught_in_flight_by_a_fault": summary(caught), "recovering_after_a_fault": summary(recovering)}
    timeline = []
    for k in sorted(buckets):
        v = [x * 1000 for x in buckets[k]]
        timeline.append([round(k * bucket_s), len(v), round(pct(v, 50)), round(pct(v, 99))])
    return {"latency_ms": out, "timeline": timeline}


def keeping_up(sim: Sim, faults_mono: list[tuple[float, float]]) -> tuple[dict, dict]:
    """Per window: slip, missing prompts outside faults, late or unconfirmed presses."""
    t = sim.tally
    kind = {w: seat.kind for w, seat in sim.hall.seats.items()}
    slip_max: dict[str, float] = {}
    prompt_missing: dict[str, int] = {}
    series: dict[str, list[float]] = {"slip": [], "answer": [], "wait": [], "prompt_real": [], "prompt_lite": []}
    for v in t.timings:
        slip = v.posted - v.planned
        slip_max[v.window] = max(slip_max.get(v.window, 0.0), slip)
        series["slip"].append(max(0.0, slip))
        if v.answered_s is not None and v.sent_s is not None:
            series["answer"].append(v.answered_s - v.sent_s)
            series["wait"].append(v.sent_s)
        if v.prompt_s is not None:
            series[f"prompt_{kind[v.window]}"].append(v.prompt_s)
        elif v.answered_s is not None and not any(b - sim_module.PROMPT_WAIT_S <= v.posted <= e + 5
                                                  for b, e in faults_mono):
            prompt_missing[v.window] = prompt_missing.get(v.window, 0) + 1
    by_device = {seat.device_id: w for w, seat in sim.hall.seats.items()}
    late = {by_device[p.device] for p in t.pressed if p.late}
    late |= {w for w, *_ in t.unconfirmed}
    stored = {"real": [], "lite": []}
    for p in t.pressed:
        if p.stored_s is not None:
            stored[kind[by_device[p.device]]].append(p.stored_s)
    kept = {"real": 0, "lite": 0}
    behind = {"real": 0, "lite": 0}
    for w, seat in sim.hall.seats.items():
        ok = slip_max.get(w, 0.0) <= KEPT_UP_SLIP_S and not prompt_missing.get(w) and w not in late
        kept[seat.kind] += ok
        behind[seat.kind] += slip_max.get(w, 0.0) > KEPT_UP_SLIP_S
    figures = {"kept_up_real": kept["real"], "kept_up_lite": kept["lite"],
               "windows_behind_real": behind["real"], "windows_behind_lite": behind["lite"],
               "windows_missing_prompts_outside_faults": len(prompt_missing),
               "prompts_missing_outside_faults": sum(prompt_missing.values()),
               "windows_with_late_or_unconfirmed_presses": len(late)}
    queueing = {"slip": summary(series["slip"]), "queue_system_connection_wait": summary(series["wait"]),
                "gateway_answer_to_finished": summary(series["answer"]),
                "finished_to_prompt_real": summary(series["prompt_real"]),
                "finished_to_prompt_lite": summary(series["prompt_lite"]),
                "tap_to_stored_real": summary(stored["real"]), "tap_to_stored_lite": summary(stored["lite"])}
    return figures, queueing


# ---------------------------------------------------------------------------- the run


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need <= hard or (soft < need and hard == resource.RLIM_INFINITY):
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else hard, hard))
    elif soft < need:
        raise SystemExit(f"sim_scale: needs about {need} open files, the hard limit is {hard} (ulimit -Hn)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 real + 200 lightweight devices, 40 s, short faults")
    ap.add_argument("--real", type=int, default=None)
    ap.add_argument("--lite", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=None, help="real minutes of citizens arriving")
    ap.add_argument("--times", type=float, default=TIMES, help=f"times a busy hall's rate (default {TIMES})")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--device-nice", type=int, default=DEVICE_NICE,
                    help=f"niceness of the firmware processes (default {DEVICE_NICE}; 0: as the hall's own)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args()
    if args.quick:
        s = Setup(real=20, lite=200, minutes=40 / 60, broker_at_s=8, broker_for_s=3, outage_at_s=15,
                  outage_for_s=12, seed=args.seed)
    else:
        s = Setup(real=200, lite=2000, minutes=10, broker_at_s=180, broker_for_s=10, outage_at_s=240,
                  outage_for_s=120, seed=args.seed)
    s.times = args.times
    s.real = s.real if args.real is None else args.real
    s.lite = s.lite if args.lite is None else args.lite
    if args.minutes is not None:  # the faults keep their share of the run
        scale = args.minutes / s.minutes
        s.minutes = args.minutes
        s.broker_at_s, s.broker_for_s = s.broker_at_s * scale, s.broker_for_s * scale
        s.outage_at_s, s.outage_for_s = s.outage_at_s * scale, s.outage_for_s * scale
    raise_fd_limit(500 + FD_PER_REAL * s.real + FD_PER_LITE * s.lite)

    sc: Scenario = parse(scenario_text(s), "sim_scale")
    plan = make_plan(sc)
    planned_services = plan.count
    run_s = s.run_s
    until = run_s + TAIL_S
    log(f"{s.real} real + {s.lite} lightweight devices, {BUSY_PER_HOUR}/h per window x {s.times:g} for "
        f"{run_s:g} s: {planned_services} citizens planned ({planned_services / run_s:.1f}/s); broker "
        f"restart at {s.broker_at_s:g} s for {s.broker_for_s:g} s, hub outage at {s.outage_at_s:g} s for "
        f"{s.outage_for_s:g} s; citizens stopped at {until:g} s; load average {os.getloadavg()[0]:.2f}")

    workdir = Path(tempfile.mkdtemp(prefix="hcp-bench-sim-scale-"))
    # Production gateway timings (the simulator's own are fast retries for short test halls).
    sim = Sim(sc, plan, workdir, out=log, device_nice=args.device_nice, gateway_settings={
        "retry_min_s": 0.5, "retry_max_s": 60.0, "registry_sweep_s": 5.0})
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    figures: dict = {"bench": "sim_scale", "quick": args.quick, "seed": s.seed,
                     "devices": {"real": s.real, "lite": s.lite, "real_nice": args.device_nice},
                     "rate": {"busy_window_per_hour": BUSY_PER_HOUR, "times": s.times,
                              "per_window_per_hour": BUSY_PER_HOUR * s.times, "minutes": round(s.minutes, 2),
                              "citizens_planned": planned_services,
                              "citizens_per_s": round(planned_services / run_s, 1)}}
    start_t = time.monotonic()
    try:
        try:
            sim.start()
        except (RuntimeError, TimeoutError) as exc:
            log(f"the hall did not start: {exc}")
            figures.update(ok=False, error=f"start: {str(exc)[:500]}")
            sim.hall.stop_all()
            emit(figures)
            return 1
        figures["start_s"] = round(time.monotonic() - start_t, 1)
        h = sim.hall
        assert h.hub is not None and h.gateway is not None and h.broker is not None
        real_seats = [seat for seat in h.seats.values() if seat.kind == "real"]

        def pid_of(part) -> list[int]:
            proc = getattr(part, "proc", None)
            return [proc.pid] if proc is not None and proc.poll() is None else []

        sampler = ProcSampler({
            "hub": lambda: pid_of(h.hub), "gateway": lambda: pid_of(h.gateway),
            "mosquitto": lambda: pid_of(h.broker), "simulator": lambda: [os.getpid()],
            "firmware": lambda: [seat.device.proc.pid for seat in real_seats if seat.device.running]})
        load0 = os.getloadavg()
        sampler.start()
        wall0 = time.time()
        sim.run(stop, until=until)
        wall_end = time.time()
        pss = [v for seat in real_seats if seat.device.running and (v := pss_kb(seat.device.proc.pid))]
        sampler.stop()
        try:
            result = sim.finish()
            times = hub_times(h.hub.db_path, sc.hall)
        except (RuntimeError, TimeoutError, OSError, httpx.HTTPError, sqlite3.Error) as exc:
            log(f"the reconciliation failed: {exc!r}")
            figures.update(ok=False, error=f"finish: {str(exc)[:500]}")
            emit(figures)
            return 1
    finally:
        sim.hall.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    t = sim.tally
    faults = fault_intervals(sim, wall_end)
    offset = wall0 - sim.t0  # monotonic -> wall
    kinds = {seat.device_id: seat.kind for seat in sim.hall.seats.values()}
    effects = fault_effects(t.pressed, times, faults, wall0)
    lat = latency(t.pressed, times, effects, kinds, wall0, 60.0 if not args.quick else 10.0)
    kept, queueing = keeping_up(sim, [(b - offset, e - offset) for _, b, e in faults])
    due = sum(v.end_s / s.times <= until - 5 for vs in plan.visits.values() for v in vs)
    posted_due = sum(v.planned - sim.t0 <= until - 5 for v in t.timings)
    ours = sum(sum(sampler.cpu(name).values()) for name in sampler.roles) / sampler.wall
    figures.update({
        "ok": result.ok,
        "run_s": round(wall_end - wall0, 1),
        "faults": [{k: v for k, v in f.items() if not k.startswith("_")} for f in effects],
        "services_posted": result.services_posted, "services_at_hub": result.services_at_hub,
        "services_lost": result.services_lost, "presses_stored": result.pressed,
        "ratings_at_hub": result.at_hub, "lost": len(result.lost), "duplicated": len(result.duplicated),
        "score_differs": len(result.score_differs), "lost_ids": result.lost[:10],
        "duplicated_ids": result.duplicated[:10], "unbound": result.unbound_reasons,
        "citizens": {"planned": planned_services, "behind_not_played": due - posted_due,
                     "cut_at_the_end": planned_services - due - (len(t.timings) - posted_due),
                     "walked_away": t.walked_away,
                     "qr": t.qr, "rated_by_phone": result.phone_rated, "phone_at_hub": result.phone_at_hub,
                     "phone_not_rated": dict(t.phone_refused), "no_prompt": t.no_prompt,
                     "not_taken": t.not_taken - t.confirmed_late,
                     "confirmed_late": t.confirmed_late},
        "services_per_s": round(result.services_posted / (wall_end - wall0), 1),
        "ratings_per_s": round(result.pressed / (wall_end - wall0), 1),
        **lat,
        "keeping_up": {**kept, "rule": f"slip <= {KEPT_UP_SLIP_S:g} s, every prompt outside the faults, "
                                      f"every press confirmed within {sim_module.RATING_WAIT_S:g} s"},
        "queueing_ms": queueing,
        "processes": {"hub": sampler.one("hub"), "gateway": sampler.one("gateway"),
                      "mosquitto": sampler.one("mosquitto"), "simulator": sampler.one("simulator"),
                      "firmware": sampler.group("firmware", pss)},
        "machine": {"cpus": os.cpu_count(), "busy_cores": round(sampler.machine_busy, 2),
                    "others_busy_cores": round(max(0.0, sampler.machine_busy - ours), 2),
                    "loadavg_before": round(load0[0], 2), "loadavg_after": round(os.getloadavg()[0], 2)},
    })
    log(f"lost {len(result.lost)}, duplicated {len(result.duplicated)}; steady press -> hub "
        f"{lat['latency_ms']['steady']}; kept up {kept['kept_up_real']}/{s.real} real, "
        f"{kept['kept_up_lite']}/{s.lite} lightweight")
    emit(figures)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
