"""Shared pieces of the firmware benchmarks: a private Mosquitto, the real firmware under the
MicroPython unix port (host board), and a CPython peer playing the hall gateway.

Nothing here re-implements the firmware: the device is `simulator.device_process.DeviceProcess`
running `firmware/main.py`. The peer acks every rating as the gateway does (`{"v":1,"n":N,"st":"ok"}`,
or `"dup"` for a number it already acked) and opens sessions with `prompt` messages, all encoded by
`hcp.protocol`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

import simulator.device_process as device_process  # noqa: E402
from hcp import protocol as P  # noqa: E402
from simulator.broker import Broker  # noqa: E402
from simulator.device_process import FIRMWARE, DeviceProcess, find_micropython  # noqa: E402
from hcp.firmware_build import build_mpy_firmware, find_mpy_cross  # noqa: E402,F401

# The runner keeps every device event: a soak produces more than DeviceProcess's default record, and
# a bench waits on events by index (`since`), which a trimmed list would shift.
device_process.MAX_EVENTS = 10**8
# A firmware that dies at start (MemoryError in a small heap) never connects; do not wait 10 s for it.
device_process.CONNECT_TIMEOUT_S = 5.0

HALL = "H1"
DEV = "D07"
KEY = hashlib.sha256(b"bench-key:" + DEV.encode()).digest()
_T0 = time.monotonic()


class _QuickAckSocket:
    """The runner's end of the control socket, ACKing every segment at once (Linux TCP_QUICKACK,
    which the kernel clears again after use, so it is set before every recv). The firmware writes
    its control lines with Nagle on: without this, a line written while the previous one is still
    unACKed waits for the runner's delayed ACK (~40 ms), a cost of the harness, not of the device."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def recv(self, size: int) -> bytes:
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass  # closed, or not Linux: the figures then include the delayed-ACK cost
        return self._sock.recv(size)


class BenchDevice(DeviceProcess):
    """DeviceProcess whose reader ACKs control lines at once (see _QuickAckSocket)."""

    quickack = hasattr(socket, "TCP_QUICKACK")

    def _read(self, sock) -> None:
        super()._read(cast(socket.socket, _QuickAckSocket(sock)) if self.quickack else sock)


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def emit(figures: dict) -> None:
    """The one JSON line a bench ends with."""
    sys.stdout.write(json.dumps(figures, separators=(",", ":"), sort_keys=False) + "\n")
    sys.stdout.flush()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(s)))
    return s[rank - 1]


def summary_ms(values_s: list[float]) -> dict:
    """p50/p99/max/mean in milliseconds of a list of durations in seconds."""
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50": round(pct(ms, 50), 2), "p99": round(pct(ms, 99), 2),
            "max": round(max(ms), 2), "min": round(min(ms), 2), "mean": round(sum(ms) / len(ms), 2)}


def heap_bytes(heapsize: str) -> int:
    """'64K' -> 65536 (what `-X heapsize=` means)."""
    text = heapsize.strip().upper()
    mult = {"K": 1024, "M": 1024 * 1024}.get(text[-1:], 1)
    return int(text.rstrip("KM")) * mult


def gc_total(heapsize: str) -> int:
    """gc.mem_alloc() + gc.mem_free() of a fresh interpreter with this heap: the usable GC heap,
    slightly less than the nominal size (the allocation table takes the rest)."""
    out = subprocess.run([find_micropython(), "-X", f"heapsize={heapsize}", "-c",
                          "import gc; print(gc.mem_alloc() + gc.mem_free())"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return int(out.strip())


IMPORT_PROBE = """
import gc
gc.collect()
base = gc.mem_alloc()
sizes = []
for name in MODULES:
    gc.collect()
    a = gc.mem_alloc()
    try:
        __import__(name)
    except ImportError:
        continue
    gc.collect()
    sizes.append((name, gc.mem_alloc() - a))
gc.collect()
print("OK", gc.mem_alloc(), gc.mem_free(), base, sizes)
"""
# leaves first, so each module's figure is its own (a module missing from the tree is skipped)
# What main.py's imports load and keep (cold modules -- admin, config, console, journal, strings -- are
# loaded per call and are not resident; qr_draw is imported only by boards with a panel).
FIRMWARE_MODULES = ("asyncio", "flashfs", "hmac_sha256", "wire", "ui", "buttons", "outbox", "mqtt", "board",
                    "device")


def import_probe(firmware: Path, heapsize: str | None, board: str = "host") -> dict:
    """Import the firmware's modules (what main.py does before `Device(...)`) in an interpreter
    with this heap. -> {"ok", "alloc_after_import", "free_after_import", "modules": {name: bytes}}
    or {"ok": False, "error": "..."}."""
    env = dict(os.environ)
    env["MICROPYPATH"] = f".frozen:{firmware / 'boards' / board}:{firmware / 'lib'}"
    cmd = [find_micropython()] + (["-X", f"heapsize={heapsize}"] if heapsize else [])
    code = f"MODULES = {FIRMWARE_MODULES!r}\n" + IMPORT_PROBE
    proc = subprocess.run(cmd + ["-c", code], capture_output=True, text=True, env=env, timeout=60)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode == 0 and out.startswith("OK "):
        _, alloc, free, _base, sizes = out.split(" ", 4)
        mods = {name: size for name, size in eval(sizes)}  # noqa: S307  # our own probe's output
        return {"ok": True, "alloc_after_import": int(alloc), "free_after_import": int(free),
                "modules": mods}
    return {"ok": False, "error": out.splitlines()[-1] if out else f"exit {proc.returncode}"}


def min_import_heap(firmware: Path, lo_kb: int = 16, hi_kb: int = 512, step_kb: int = 4) -> int | None:
    """Smallest -X heapsize (KB, multiple of step_kb) with which the firmware imports at all."""
    if not import_probe(firmware, f"{hi_kb}K")["ok"]:
        return None
    lo, hi = lo_kb // step_kb, hi_kb // step_kb  # invariant: hi works
    while lo < hi:
        mid = (lo + hi) // 2
        if import_probe(firmware, f"{mid * step_kb}K")["ok"]:
            hi = mid
        else:
            lo = mid + 1
    return hi * step_kb


def topic(suffix: str, dev: str = DEV) -> str:
    return f"hcp/v1/{HALL}/{dev}/{suffix}"


class GatewayPeer:
    """The hall gateway, reduced to what a device sees of it: acks ratings, sends prompts, listens
    to status and health. Clean session off and subscriptions renewed on every connect, so it rides
    through broker restarts as the real gateway does (Mosquitto persists its session)."""

    def __init__(self, port: int, auto_ack: bool = True, verify: bool = True, nodelay: bool = False):
        self.port = port
        self.nodelay = nodelay  # TCP_NODELAY on the peer's socket (paho leaves Nagle on)
        self.auto_ack = auto_ack
        self.verify = verify
        self._cond = threading.Condition()
        self.ratings: dict[int, bytes] = {}  # n -> first payload received
        self.rating_times: dict[int, float] = {}  # n -> monotonic receipt time of the first copy
        self.rating_msgs = 0  # including resends
        self.bad_ratings: list[str] = []
        self.acks_sent = 0
        self.dups = 0
        self.health: list[tuple[float, dict]] = []
        self.status: list[dict] = []
        self.connects = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{HALL}",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]  # floats work
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.wait_connected(1)

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        if reason.is_failure:
            return
        if self.nodelay:
            client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe([(f"hcp/v1/{HALL}/+/rating", 1), (f"hcp/v1/{HALL}/+/status", 1),
                          (f"hcp/v1/{HALL}/+/health", 0)])
        with self._cond:
            self.connects += 1
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        suffix = msg.topic.rsplit("/", 1)[-1]
        now = time.monotonic()
        if suffix == "rating":
            try:
                r = P.decode_rating(msg.payload, HALL)
                if self.verify and not r.verify(KEY):
                    raise P.ProtocolError("bad_signature")
            except P.ProtocolError as exc:
                with self._cond:
                    self.bad_ratings.append(str(exc))
                return
            with self._cond:
                self.rating_msgs += 1
                first = r.n not in self.ratings
                if first:
                    self.ratings[r.n] = msg.payload
                    self.rating_times[r.n] = now
                else:
                    self.dups += 1
                self._cond.notify_all()
            if self.auto_ack:
                self.ack(r.dev, r.n, "ok" if first else "dup")
        elif suffix == "health":
            with self._cond:
                self.health.append((now, json.loads(msg.payload)))
                self._cond.notify_all()
        elif suffix == "status":
            with self._cond:
                self.status.append(json.loads(msg.payload))
                self._cond.notify_all()

    def ack(self, dev: str, n: int, st: str = "ok") -> None:
        self.client.publish(topic("ack", dev), P.encode_ack(n, st), qos=1)
        with self._cond:
            self.acks_sent += 1

    def prompt(self, sess: str, dev: str = DEV, **kw) -> float:
        """Open a session; -> monotonic time just before the publish."""
        t = time.monotonic()
        self.client.publish(topic("prompt", dev), P.encode_prompt_open(sess, **kw), qos=1)
        return t

    def wait_connected(self, count: int, timeout: float = 15.0) -> None:
        self.wait_for(lambda: self.connects >= count, timeout, f"gateway peer connect #{count}")

    def wait_for(self, pred, timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(pred, timeout):
                raise TimeoutError(f"gateway peer: timed out waiting for {what}")

    def close(self) -> None:
        try:
            self.client.loop_stop()
            self.client.disconnect()
        except Exception:  # noqa: BLE001  # best effort at teardown
            pass


def device_config(port: int, **extra) -> dict:
    cfg = {"dev": DEV, "hall": HALL, "window": "7", "broker_port": port, "health_s": 5}
    cfg.update(extra)
    return cfg


class Rig:
    """Temp dir + private broker + gateway peer + one device; everything torn down on exit."""

    def __init__(self, name: str, heapsize: str | None = None, keep: bool = False,
                 start_device: bool = True, broker_config: str = "", peer_nodelay: bool = False,
                 firmware: Path = FIRMWARE, **config):
        self.firmware = firmware
        self.broker_config = broker_config
        self.peer_nodelay = peer_nodelay
        self.tmp = Path(tempfile.mkdtemp(prefix=f"hcp-bench-{name}-"))
        self.keep = keep
        self.heapsize = heapsize
        self.config = config
        self.start_device = start_device
        self._broker: Broker | None = None
        self._peer: GatewayPeer | None = None
        self._dev: BenchDevice | None = None

    @property
    def broker(self) -> Broker:
        assert self._broker is not None, "Rig not entered"
        return self._broker

    @property
    def peer(self) -> GatewayPeer:
        assert self._peer is not None, "Rig not entered"
        return self._peer

    @property
    def dev(self) -> BenchDevice:
        assert self._dev is not None, "Rig not entered"
        return self._dev

    def __enter__(self) -> "Rig":
        try:
            self._broker = Broker(self.tmp / "mosquitto", extra_config=self.broker_config).start()
            self._peer = GatewayPeer(self._broker.port, nodelay=self.peer_nodelay)
            self._dev = BenchDevice(self.tmp / "flash" / DEV, config=device_config(self._broker.port, **self.config),
                                     key=KEY, heapsize=self.heapsize, firmware=self.firmware)
            if self.start_device:
                self._dev.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Idempotent; every part is stopped even if stopping another one fails."""
        try:
            if self._dev is not None:
                self._dev.kill()
        finally:
            try:
                if self._peer is not None:
                    self._peer.close()
            finally:
                if self._broker is not None:
                    self._broker.stop()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log(f"kept {self.tmp}")


class Tapper:
    """Taps buttons no faster than a finger can: the host board's `tap` holds a button for `hold`
    ms, and the firmware needs the release to be stable for the 50 ms debounce before that button's
    next down edge counts. A tap sent while the same button is still held is silently merged into
    the previous one, so each tap of a button waits until its previous hold + debounce + two poll
    periods have passed. Buttons are independent (as on the hardware)."""

    GAP_S = 0.050 + 0.020 + 0.010  # release debounce + 2 x 10 ms poll + margin

    def __init__(self, dev: DeviceProcess, hold_ms: int = 100):
        self.dev = dev
        self.hold_ms = hold_ms
        self._free_at: dict[str, float] = {}

    def tap(self, button) -> float:
        """-> monotonic time just before the tap was written."""
        b = str(button)
        wait = self._free_at.get(b, 0.0) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        t0 = time.monotonic()
        self.dev.tap(b, self.hold_ms)
        self._free_at[b] = t0 + self.hold_ms / 1000 + self.GAP_S
        return t0


def press_until(dev: DeviceProcess, tapper: Tapper, button, name: str, match, since: int,
                wait_s: float = 3.0, tries: int = 4) -> tuple:
    """Tap `button` and wait for event `name` matching `match`; tap again if none came within
    `wait_s` (a tap is lost when the device's event loop stalls for longer than the hold minus the
    debounce: buttons are polled, not latched). -> (event, extra taps needed)."""
    for attempt in range(tries):
        tapper.tap(button)
        try:
            return dev.wait_event(name, match, since=since, timeout=wait_s), attempt
        except TimeoutError:
            if attempt == tries - 1 or not dev.running:
                raise
    raise AssertionError("unreachable")


def wait_online(dev: DeviceProcess, since: int = 0, timeout: float = 30.0):
    """The device's next `online` event; gives up at once if the interpreter dies meanwhile."""
    def done() -> bool:
        return not dev.connected or any(e.name == "online" for e in dev.events[since:])
    dev.wait_for(done, timeout, "event online")
    for e in dev.events[since:]:
        if e.name == "online":
            return e
    raise TimeoutError(f"device died before going online: {dev.console_text()[-500:]}")


def console_problems(text: str) -> dict:
    """Counts of what a crashing or starving interpreter leaves on its console."""
    return {"memory_errors": text.count("MemoryError"), "tracebacks": text.count("Traceback"),
            "watchdog_resets": text.count("watchdog: main loop hung")}


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU time of a process (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def env_info() -> dict:
    return {"micropython": find_micropython(), "cpus": os.cpu_count()}
