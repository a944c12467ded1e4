"""Accelerated one-hour soak of the real firmware in a capped MicroPython heap.

The device (firmware/main.py, host board, MicroPython unix port) runs under `micropython -X
heapsize=64K` and `-X heapsize=48K` (the goal), plus 96K and 128K (`--also`: where it fits today),
side by side, each against its own private Mosquitto with a CPython peer playing the gateway
(prompts, and an ack for every rating). The firmware is compiled by mpy-cross first, as it is
deployed to a board's filesystem (`--source`: the .py files, as the tests run them). A heap the
firmware cannot even import in is reported as such. One hour of a busy counter is compressed and run
as fast as it goes:

  * a prompt + press cycle stands for 3 s of simulated time: full run = 1200 cycles (1 h),
    --quick = 100 cycles (5 min);
  * a broker flap every 60 cycles (3 simulated minutes): full = 20, --quick = 2 (scaled alike).
    A flap is Mosquitto stopped (SIGTERM; it saves its persistence), 1..3 staff-invite presses made
    while it is down (ratings that must wait in the flash outbox), a seeded random down time of
    0.3..1.5 s, then Mosquitto started again on the same port; the cycle goes on once the device is
    back online.

At the end every rating must have been acked (ack events for 1..N; a rating whose ack was lost in a
flap is resent after reconnect or after the firmware's 15 s resend period).

Memory, from the firmware's `health` message (every `health_s` = 5 s here, the minimum):
  * `peak_alloc`: the firmware's `alloc_peak` (max gc.mem_alloc() sampled; garbage included, so on a
    GC heap that collects only when full it approaches the heap size); without it in health,
    `peak_alloc` falls back to `peak_live` (see `peak_alloc_source`);
  * `peak_live`: usable GC heap (gc.mem_alloc() + gc.mem_free() of a fresh interpreter with the same
    -X heapsize) - min(health.heap), `heap` being gc.mem_free() right after a gc.collect(): the
    peak live heap at the health samples;
  * `import`: the heap the imported code holds before Device() runs, and the smallest heap that
    imports; a full run also bisects the smallest heap that soaks (`min_heap_kb_that_soaks`).

MemoryErrors: counted on the device console (tracebacks, `MemoryError`, watchdog resets), as a dead
interpreter, and as disconnects nobody caused (the MQTT reader swallows any exception as a lost
connection, so a MemoryError there shows only as an unexpected offline).

Usage: .venv/bin/python bench/firmware_soak.py [--quick] [--heaps 64K,48K] [--also 96K,128K]
           [--cycles N] [--flaps F] [--source] [--serial] [--no-find-min] [--seed S] [--keep]
Prints progress on stderr and ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import threading
import time
import traceback
from pathlib import Path

from _harness import (FIRMWARE, Rig, Tapper, build_mpy_firmware, console_problems, cpu_seconds, emit,
                      env_info, gc_total, heap_bytes, import_probe, log, min_import_heap,
                      press_until, wait_online)

STOP = threading.Event()  # Ctrl-C in the main thread: soaks end their loop and clean up
SIM_S_PER_CYCLE = 3  # one prompt + press every 3 s of a busy hour
CYCLES_PER_FLAP = 60  # a broker flap every 3 simulated minutes
IDLE_S = 3.0  # idle time measured for the device's CPU use at rest
HOLD_MS = 100  # the host board's default tap; > 50 ms debounce + 10 ms poll phase


class Soak:
    def __init__(self, heapsize: str, cycles: int, flaps: int, seed: int, keep: bool, firmware: Path,
                 final_health: bool = True):
        self.heapsize = heapsize
        self.final_health = final_health
        self.firmware = firmware
        self.cycles = cycles
        self.flaps = flaps
        self.rng = random.Random(f"{seed}:{heapsize}")
        self.keep = keep
        self.tag = f"[{heapsize}]"
        self.rating_presses = 0
        self.invite_presses = 0
        self.retaps = 0  # taps the device never saw (event loop stalled past the hold), repeated
        self.flaps_done = 0
        self.timeouts: list[str] = []
        self.flap_windows: list[tuple[int, int]] = []  # event index ranges while the broker was down
        self.result: dict = {}

    def _flap_points(self) -> set[int]:
        if not self.flaps:
            return set()
        step = self.cycles / self.flaps
        return {int(step * (k + 0.5)) for k in range(self.flaps)}

    def run(self) -> dict:
        started = time.monotonic()
        probe = import_probe(self.firmware, self.heapsize)
        if not probe["ok"]:
            log(f"{self.tag} the firmware does not even import: {probe['error']}")
            self.result = {"heapsize": self.heapsize, "heap_bytes": heap_bytes(self.heapsize),
                           "boots": False, "survived": False,
                           "error": "at import (before Device() exists): " + probe["error"]}
            return self.result
        rig = Rig(f"soak-{self.heapsize}", heapsize=self.heapsize, keep=self.keep,
                  firmware=self.firmware, invite=True, health_s=5)
        try:
            rig.__enter__()  # closes what it started if it fails
        except RuntimeError as exc:  # the interpreter died before connecting its control port
            return self._died_at_start(str(exc), "at start (imports done, before the control connection)")
        try:
            try:
                wait_online(rig.dev)
                rig.dev.wait_state("idle")
            except TimeoutError as exc:
                if rig.dev.connected:  # alive but not online: a real failure, not a crash at start
                    raise
                return self._died_at_start(rig.dev.console_text() or str(exc),
                                           "at start (control connection up, never online)")
            self.result = self._soak(rig, started)
        finally:
            rig.close()
        return self.result

    def _died_at_start(self, text: str, when: str) -> dict:
        err = next((ln for ln in reversed(text.splitlines()) if "Error" in ln), text[-200:])
        log(f"{self.tag} the firmware dies {when}: {err}")
        self.result = {"heapsize": self.heapsize, "heap_bytes": heap_bytes(self.heapsize),
                       "boots": False, "survived": False, "memory_errors": text.count("MemoryError"),
                       "error": f"{when}: {err}"}
        return self.result

    def _soak(self, rig: Rig, started: float) -> dict:
        dev, peer, broker = rig.dev, rig.peer, rig.broker
        tapper = Tapper(dev, HOLD_MS)
        assert dev.proc is not None
        pid = dev.proc.pid
        cpu0, t_cpu0 = cpu_seconds(pid), time.monotonic()
        flap_at = self._flap_points()
        died = False
        for i in range(self.cycles):
            if STOP.is_set():
                self.timeouts.append(f"interrupted at cycle {i}")
                break
            if not dev.running:
                died = True
                break
            try:
                if i in flap_at:
                    self._flap(rig, tapper)
                self._cycle(rig, tapper, i)
            except TimeoutError as exc:
                self.timeouts.append(f"cycle {i}: {str(exc).splitlines()[0][:300]}")
                log(f"{self.tag} timeout in cycle {i}: {str(exc).splitlines()[0][:200]}")
                if not dev.running:
                    died = True
                    break
                if not broker.running:
                    broker.start()
            if (i + 1) % 100 == 0:
                heaps = [h["heap"] for _, h in peer.health]
                log(f"{self.tag} {i + 1}/{self.cycles} cycles, {self.flaps_done} flaps, "
                    f"min free heap {min(heaps) if heaps else '?'}")
        drain = self._drain(rig) if not died else {"all_acked": False}
        cpu1, t_cpu1 = cpu_seconds(pid), time.monotonic()
        self.cpu = {}
        if cpu0 is not None and cpu1 is not None:
            self.cpu["busy_cpu_pct"] = round(100 * (cpu1 - cpu0) / (t_cpu1 - t_cpu0), 1)
        # the device idle (online, nothing to do) for IDLE_S, then one more health message after
        # the drain, for the final counters
        if dev.running and self.final_health:
            time.sleep(IDLE_S)
            cpu2, t_cpu2 = cpu_seconds(pid), time.monotonic()
            if cpu1 is not None and cpu2 is not None:
                self.cpu["idle_cpu_pct"] = round(100 * (cpu2 - cpu1) / (t_cpu2 - t_cpu1), 1)
            count = len(peer.health)
            try:
                peer.wait_for(lambda: len(peer.health) > count, 12, "final health")
            except TimeoutError:
                pass
        return self._figures(rig, drain, died or not dev.running, time.monotonic() - started)

    def _cycle(self, rig: Rig, tapper: Tapper, i: int) -> None:
        dev, peer = rig.dev, rig.peer
        sess = f"soak{i:05d}"
        since = len(dev.events)
        peer.prompt(sess)
        dev.wait_event("session", lambda d: d.get("op") == "open" and d.get("sess") == sess,
                       since=since, timeout=15)
        score = self.rng.randint(1, 5)
        since = len(dev.events)
        _, extra = press_until(dev, tapper, score, "rating", lambda d: d.get("sess") == sess, since)
        self.rating_presses += 1
        self.retaps += extra

    def _flap(self, rig: Rig, tapper: Tapper) -> None:
        dev, peer, broker = rig.dev, rig.peer, rig.broker
        since = len(dev.events)
        connects = peer.connects
        down_for = self.rng.uniform(0.3, 1.5)
        t_down = time.monotonic()
        broker.stop()
        dev.wait_event("offline", since=since, timeout=15)
        for _ in range(self.rng.randint(1, 3)):
            mark = len(dev.events)
            _, extra = press_until(dev, tapper, "invite", "session",
                                   lambda d: d.get("op") == "open" and d.get("sess") is None, mark)
            self.invite_presses += 1
            mark = len(dev.events)
            _, extra2 = press_until(dev, tapper, self.rng.randint(1, 5), "rating",
                                    lambda d: d.get("sess") is None, mark)
            self.rating_presses += 1
            self.retaps += extra + extra2
        left = down_for - (time.monotonic() - t_down)
        if left > 0:
            time.sleep(left)
        broker.start()
        wait_online(dev, since=since, timeout=60)
        peer.wait_connected(connects + 1, timeout=30)
        self.flap_windows.append((since, len(dev.events)))
        self.flaps_done += 1

    def _drain(self, rig: Rig) -> dict:
        """Wait until the device has seen an ack for every rating it made."""
        dev = rig.dev
        t0 = time.monotonic()
        ns = {e.data["n"] for e in dev.events_named("rating")}
        last = max(ns) if ns else 0
        try:
            dev.wait_for(lambda: {e.data["n"] for e in dev.events if e.name == "ack"} >= set(range(1, last + 1)),
                         timeout=60, what="acks for every rating")
            ok = True
        except TimeoutError:
            ok = False
        return {"all_acked": ok, "drain_s": round(time.monotonic() - t0, 2)}

    def _figures(self, rig: Rig, drain: dict, died: bool, wall: float) -> dict:
        dev, peer = rig.dev, rig.peer
        console = dev.console_text()
        problems = console_problems(console)
        ratings = dev.events_named("rating")
        acks = {e.data["n"] for e in dev.events_named("ack")}
        ack_st: dict[str, int] = {}
        for e in dev.events_named("ack"):
            ack_st[e.data["st"]] = ack_st.get(e.data["st"], 0) + 1
        ns = sorted(e.data["n"] for e in ratings)
        contiguous = ns == list(range(1, len(ns) + 1))
        # disconnects the soak did not cause: offline events outside the broker-down windows
        in_flap = set()
        for a, b in self.flap_windows:
            in_flap.update(range(a, b))
        offline_idx = [k for k, e in enumerate(dev.events) if e.name == "offline"]
        unexpected = [k for k in offline_idx if k not in in_flap]
        healths = [h for _, h in peer.health]
        frees = [h["heap"] for h in healths if isinstance(h.get("heap"), int)]
        total = gc_total(self.heapsize)
        peaks = [h["alloc_peak"] for h in healths if isinstance(h.get("alloc_peak"), int)]
        live = total - min(frees) if frees else None
        if peaks:
            peak, source = max(peaks), "health.alloc_peak (firmware: max gc.mem_alloc() sampled, garbage included)"
        elif frees:
            peak, source = live, "heapsize - min(mem_free)"
        else:
            peak, source = None, "no health received"
        last = healths[-1] if healths else {}
        errs = sorted({str(h["err"]) for h in healths if h.get("err")})
        return {
            "heapsize": self.heapsize,
            "boots": True,
            "heap_bytes": heap_bytes(self.heapsize),
            "gc_heap_total": total,
            "cycles": self.cycles,
            "simulated_s": self.cycles * SIM_S_PER_CYCLE,
            "presses": self.rating_presses,
            "invite_presses": self.invite_presses,
            "ratings": len(ratings),
            "ratings_contiguous": contiguous,
            "ratings_acked": len(acks),
            "ack_status": ack_st,
            "all_acked": drain.get("all_acked", False),
            "drain_s": drain.get("drain_s"),
            "gateway_received": len(peer.ratings),
            "gateway_dups": peer.dups,
            "gateway_bad": len(peer.bad_ratings),
            "flaps": self.flaps_done,
            "unexpected_disconnects": len(unexpected),
            "memory_errors": problems["memory_errors"] + sum("Memory" in str(e) for e in errs),
            "tracebacks": problems["tracebacks"],
            "watchdog_resets": problems["watchdog_resets"],
            "died": died,
            "exit_code": dev.proc.returncode if dev.proc is not None and died else None,
            "survived": (not died and problems["memory_errors"] == 0 and problems["tracebacks"] == 0
                         and drain.get("all_acked", False) and contiguous),
            "peak_alloc": peak,
            "peak_alloc_source": source,
            "peak_live": live,
            "peak_live_source": "gc heap total (mem_alloc+mem_free of a fresh interpreter) - min(health.heap after gc.collect)",
            "mem_free_min": min(frees) if frees else None,
            "mem_free_first": frees[0] if frees else None,
            "mem_free_last": frees[-1] if frees else None,
            "health_samples": len(healths),
            "device_counters": last.get("cnt"),
            "device_errors": errs,
            "outbox_depth_end": last.get("ob"),
            "lost_taps_repeated": self.retaps,
            "device_cpu": getattr(self, "cpu", {}),
            "timeouts": self.timeouts[:5],
            "timeouts_total": len(self.timeouts),
            "console_tail": console[-600:] if (died or problems["tracebacks"]) else "",
            "wall_s": round(wall, 1),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 simulated minutes: 100 cycles, 2 flaps")
    ap.add_argument("--heaps", default="64K,48K", help="comma-separated -X heapsize values")
    ap.add_argument("--cycles", type=int, help="prompt+press cycles (default 1200, quick 100)")
    ap.add_argument("--flaps", type=int, help="broker flaps (default cycles / 60)")
    ap.add_argument("--also", default="96K,128K",
                    help="heaps soaked besides --heaps, where the firmware fits today (default 96K,128K)")
    ap.add_argument("--source", action="store_true",
                    help="run firmware/*.py as source instead of mpy-cross output")
    ap.add_argument("--serial", action="store_true", help="run the heaps one after another")
    ap.add_argument("--no-find-min", dest="find_min", action="store_false",
                    help="skip the search for the smallest heap that soaks (full runs only)")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (flash, logs)")
    args = ap.parse_args()
    cycles = args.cycles or (100 if args.quick else 1200)
    flaps = args.flaps if args.flaps is not None else max(1, round(cycles / CYCLES_PER_FLAP))
    heaps = [h.strip() for h in args.heaps.split(",") if h.strip()]
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="hcp-bench-soak-fw-"))
    try:
        if args.source:
            firmware, form = FIRMWARE, ".py source (compiled at import, as the tests run it)"
        else:
            firmware, form = build_mpy_firmware(work / "fw"), ".mpy from mpy-cross (as deployed to a board's filesystem)"
        log(f"firmware: {form}")
        imports = import_probe(firmware, "512K")
        min_heap_kb = min_import_heap(firmware)
        log(f"resident after import: {imports.get('alloc_after_import')} B; smallest heap that imports: {min_heap_kb}K")
        heaps += [h for h in (x.strip() for x in args.also.split(",")) if h and h not in heaps]
        figures = run_soaks(args, heaps, cycles, flaps, firmware)
        min_kb, search = None, "skipped (--quick or --no-find-min)"
        if args.find_min and not args.quick:
            min_kb, search = find_min_heap(args, heaps, figures["heaps"], firmware, min_heap_kb)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["firmware_form"] = form
    figures["min_heap_kb_that_soaks"] = min_kb
    figures["min_heap_search"] = search
    figures["import"] = {"alloc_after_import": imports.get("alloc_after_import"),
                         "modules": imports.get("modules"),
                         "min_heap_kb_to_import": min_heap_kb,
                         "note": ("heap the firmware's code and module state hold once imported, before "
                                  "Device() runs; bytecode loaded from .mpy or compiled from .py lives "
                                  "in the GC heap, frozen modules would not")}
    code = imports.get("alloc_after_import")
    for r in figures["heaps"].values():
        if r.get("peak_live") and code:
            # what the running device holds beyond its imported code: the part a frozen build keeps in RAM
            r["peak_live_minus_import"] = r["peak_live"] - code
    figures["wall_s"] = round(time.monotonic() - started, 1)
    figures.update(env_info())
    emit(figures)


def find_min_heap(args, heaps: list[str], results: dict, firmware: Path, lo_kb: int | None):
    """Bisect (4 KB steps) the smallest heap with which a short soak (30 cycles, 1 flap) survives,
    between the smallest heap that imports and the smallest soaked heap that survived."""
    ok_kb = [heap_bytes(h) // 1024 for h in heaps if results[h].get("survived")]
    if not ok_kb or lo_kb is None:
        return None, "no surviving heap to search below"
    lo, hi = lo_kb // 4, min(ok_kb) // 4  # invariant: hi survives
    tried = {}
    while lo < hi and not STOP.is_set():
        mid = (lo + hi) // 2
        heap = f"{mid * 4}K"
        s = Soak(heap, 30, 1, args.seed, False, firmware, final_health=False)
        s.run()
        r = s.result
        tried[heap] = {k: r.get(k) for k in ("survived", "boots", "memory_errors", "died", "all_acked",
                                             "timeouts_total", "error") if r.get(k) is not None}
        log(f"min-heap search: {heap} {tried[heap]}")
        if r.get("survived"):
            hi = mid
        else:
            lo = mid + 1
    return hi * 4, {"probe": "30 cycles + 1 flap", "tried": tried}


def run_soaks(args, heaps: list[str], cycles: int, flaps: int, firmware: Path) -> dict:
    soaks = [Soak(h, cycles, flaps, args.seed, args.keep, firmware) for h in heaps]
    errors: dict[str, str] = {}

    def run(s: Soak) -> None:
        try:
            log(f"{s.tag} soak: {cycles} cycles, {flaps} flaps")
            s.run()
            r = s.result
            if r.get("boots"):
                log(f"{s.tag} done: {r['presses']} presses, {r['ratings_acked']} acked, {r['flaps']} flaps, "
                    f"survived={r['survived']}, peak live {r['peak_live']}, alloc_peak {r['peak_alloc']}")
        except Exception as exc:  # noqa: BLE001  # reported in the JSON, the other heap goes on
            errors[s.heapsize] = f"{type(exc).__name__}: {exc}"[:1000]
            log(f"{s.tag} failed: {traceback.format_exc()}")

    runnable = [s for s in soaks if import_probe(firmware, s.heapsize)["ok"]]
    for s in soaks:
        if s not in runnable:
            s.run()  # records "does not import" at once
    if args.serial or len(runnable) <= 1:
        for s in runnable:
            run(s)
    else:
        threads = [threading.Thread(target=run, args=(s,)) for s in runnable]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            STOP.set()
            for t in threads:
                t.join()
            raise

    results = {s.heapsize: s.result or {"error": errors.get(s.heapsize, "no result")} for s in soaks}
    figures: dict = {
        "bench": "firmware_soak",
        "quick": args.quick,
        "seed": args.seed,
        "cycles": cycles,
        "flaps_planned": flaps,
        "simulated_s": cycles * SIM_S_PER_CYCLE,
        "parallel": not args.serial and len(runnable) > 1,
        "heaps": results,
    }
    for h in heaps:
        r = results[h]
        figures[f"survived_{h}"] = bool(r.get("survived"))
    if "48K" in results:
        figures["goal_48K_survived"] = bool(results["48K"].get("survived"))
    ran = [h for h in heaps if results[h].get("peak_live")]
    if len(ran) >= 2:
        a, b = results[ran[0]], results[ran[1]]
        figures["ratio"] = round(b["peak_live"] / a["peak_live"], 3)
        figures["ratio_is"] = f"peak_live {ran[1]} / {ran[0]} (same workload, side by side)"
    return figures


if __name__ == "__main__":
    main()
