"""The lightweight device: a counter device in CPython, for load beyond what real firmware processes
can give (a MicroPython process each). Many share one asyncio loop (`LiteFleet`).

Same wire behaviour as the firmware (docs/protocol.md; firmware/lib/device.py): client id
`dev-{device}`, clean session, last will and retained birth ordered by (boot, conn), subscriptions to
ack/prompt/cmd on every connect; a press takes the next counter, signs with the device key, and is
written to its "flash" (a file) before it counts; pending ratings are published in counter order
after every (re)connect and republished when not acked in 15 s; an ack `ok`/`dup`/`bad` removes
one. `kill()` is a power cut (nothing but the flash file survives), `network(False)` a Wi-Fi loss.
It exposes the same view as `DeviceProcess` (`events`, `wait_event`, `tap`, `display`), so the
simulator drives both alike: `display["qr"]` is the prompt's phone page URL while its session is
open, None otherwise (firmware/lib/ui.py shows the QR code in the prompt state only). Its payload bytes are checked against tests/vectors/ratings.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Callable

from hcp.protocol import key_id, sign_rating
from simulator.device_process import MAX_EVENTS, Event, EventWaits
from simulator.lite_mqtt import LiteMQTT

FIRMWARE = "lite-0.1.0"
RESEND_S = 15.0  # firmware _RESEND_MS
BACKOFF_MIN_S = 0.5  # firmware _BACKOFF_MIN_MS
BACKOFF_MAX_S = 30.0
RATED_KEPT = 8  # sessions remembered as rated (firmware `rated`)


def rating_json(key: bytes, hall: str, dev: str, n: int, boot: int, mono: int, sess: str | None,
                score: int) -> bytes:
    """The exact bytes a device publishes for a rating: compact JSON, fields in the firmware's order."""
    r = sign_rating(key, hall, dev, n, boot, mono, sess, score)
    return json.dumps(r.payload(), separators=(",", ":")).encode()


def _compact(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class LiteFleet:
    """One event loop in one thread for any number of lightweight devices."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lite-fleet", daemon=True)
        self.thread.start()

    def call(self, fn: Callable, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def run(self, coro, timeout: float = 30.0):
        """Run a coroutine on the fleet's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Cancel whatever still runs (devices not stopped: cut off), then end the thread."""
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_running():
            try:
                self.run(cancel_all(), timeout=10)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.loop.is_running():
            self.loop.close()


class LiteDevice(EventWaits):
    """`config` as the firmware's (dev, hall, window, broker_host, broker_port, session_ttl_s,
    health_s, keepalive_s, invite); `key` the device key (32 bytes)."""

    def __init__(self, fleet: LiteFleet, flash_dir: Path, config: dict, key: bytes):
        self.fleet = fleet
        self.flash_dir = Path(flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.flash = self.flash_dir / "state.json"
        self.config = {"broker_host": "127.0.0.1", "session_ttl_s": 60, "health_s": 60,
                       "keepalive_s": 30, "invite": False, **config}
        self.key = key
        self.kid = key_id(key)
        self.dev = self.config["dev"]
        self.hall = self.config["hall"]
        self._cond = threading.Condition()
        self.events: list[Event] = []
        self.state: str | None = None
        self.connected = False
        self._task: asyncio.Task | None = None
        self._net_up = True
        self._net: asyncio.Event | None = None
        self._session_timer = None
        self.mqtt: LiteMQTT | None = None
        self.display: dict = {"lines": [], "qr": None}  # no text kept: the QR code's URL only

    # -- the view the simulator reads (as DeviceProcess)
    def _event(self, name: str, data: dict) -> None:
        with self._cond:
            self.events.append(Event(name, data))
            if len(self.events) > MAX_EVENTS:
                del self.events[: MAX_EVENTS // 10]
            self._cond.notify_all()

    def _show(self, qr: str | None) -> None:
        with self._cond:
            self.display = {"lines": [], "qr": qr}
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"lite device {self.dev}: timed out waiting for {what or predicate}; "
                                   f"last events={[(e.name, e.data) for e in self.events[-8:]]}")


    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the person at the counter, and the faults (called from any thread)
    def tap(self, button: str | int, hold_ms: int = 100) -> None:
        self.fleet.call(self._button, str(button))

    def network(self, up: bool) -> None:
        self.fleet.call(self._set_net, up)

    def start(self) -> "LiteDevice":
        self.fleet.run(self._start())
        return self

    def kill(self) -> None:
        """Power cut: the task ends where it is; the connection drops without DISCONNECT."""
        self.fleet.run(self._stop(clean=False))

    def stop(self) -> None:
        self.fleet.run(self._stop(clean=True))

    # -- flash
    def _load(self) -> dict:
        try:
            return json.loads(self.flash.read_text())
        except FileNotFoundError:
            return {"boot": 0, "last_n": 0, "outbox": {}}

    def _save(self) -> None:
        """Atomic, as the firmware's journal: a power cut leaves the old or the new state."""
        tmp = self.flash.with_suffix(".tmp")
        tmp.write_text(json.dumps({"boot": self.boot, "last_n": self.last_n, "outbox": self.outbox}))
        os.replace(tmp, self.flash)

    # -- the device (in the fleet's loop)
    async def _start(self) -> None:
        if self.running:
            return
        state = self._load()
        self.boot = state["boot"] + 1
        self.last_n = state["last_n"]
        self.outbox: dict[str, str] = state["outbox"]  # str(n) -> payload text
        self._save()
        self._t0 = time.monotonic()
        self.conn = 0
        self.session: str | None = None  # "" local session, None none
        self._session_timer: asyncio.TimerHandle | None = None
        self.rated: list[str] = []
        self._inflight: dict[int, float] = {}
        self.counts = {k: 0 for k in ("press", "rate", "resend", "reconn", "err", "stuck", "badmsg", "badcon")}
        self._wake = asyncio.Event()
        self._net = asyncio.Event()
        if self._net_up:
            self._net.set()
        self._task = asyncio.ensure_future(self._main())
        self._event("boot", {"boot": self.boot, "n": self.last_n, "pending": len(self.outbox), "kid": self.kid})

    async def _stop(self, clean: bool) -> None:
        if self._session_timer is not None:
            self._session_timer.cancel()  # no power, no timeout: a restarted device has no session
        if clean and self.mqtt is not None:
            await self.mqtt.close()  # DISCONNECT first: the broker drops the will
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001  # it is being cut off
                pass
            self._task = None
        if self.mqtt is not None:
            self.mqtt.abort()
        self.mqtt = None
        self._show(None)  # no power, nothing shown; a restarted device has no session
        with self._cond:
            self.connected = False
            self._cond.notify_all()

    def _set_net(self, up: bool) -> None:
        self._net_up = up
        if self._net is None:
            return
        if up:
            self._net.set()
        else:
            self._net.clear()
            if self.mqtt is not None:
                self.mqtt.abort()  # the link is gone; the broker notices the socket close

    def ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000)

    def _topic(self, suffix: str) -> str:
        return f"hcp/v1/{self.hall}/{self.dev}/{suffix}"

    def _status(self, state: str) -> bytes:
        obj = {"v": 1, "state": state, "boot": self.boot, "conn": self.conn}
        if state == "online":
            obj["fw"] = FIRMWARE
        return _compact(obj)

    async def _main(self) -> None:
        tasks = [asyncio.ensure_future(c) for c in (self._connection_loop(), self._send_loop(), self._health_loop())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def _connection_loop(self) -> None:
        delay = BACKOFF_MIN_S
        cfg = self.config
        assert self._net is not None
        while True:
            await self._net.wait()
            self.conn += 1
            m = LiteMQTT(f"dev-{self.dev}", cfg["broker_host"], cfg["broker_port"], self.dev,
                         cfg["keepalive_s"], self._on_message)
            m.will = (self._topic("status"), self._status("offline"), 1, True)
            online = False
            try:
                await m.connect()
                for suffix in ("ack", "prompt", "cmd"):
                    await m.subscribe(self._topic(suffix), 1)
                await m.publish(self._topic("status"), self._status("online"), 1, True)
                self.mqtt = m
                self._inflight = {}
                if self.conn > 1:
                    self.counts["reconn"] += 1
                with self._cond:
                    self.connected = True
                self._event("online", {"conn": self.conn})
                online = True
                delay = BACKOFF_MIN_S
                self._wake.set()
                await m.lost.wait()
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                pass
            finally:
                self.mqtt = None
                m.abort()
                with self._cond:
                    self.connected = False
            if online:
                self._event("offline", {"conn": self.conn})
            await asyncio.sleep(delay + random.uniform(0, delay / 2))
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _send_loop(self) -> None:
        """Wakes on a press, an ack or a connect, and when the oldest unacked rating is due again:
        thousands of idle devices share the loop, so none of them polls."""
        while True:
            m = self.mqtt
            due = [sent + RESEND_S for sent in self._inflight.values()] if m is not None and m.connected else []
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(due) - time.monotonic()) if due else None)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            for n in sorted(int(k) for k in self.outbox):
                m = self.mqtt
                if m is None or not m.connected:
                    break
                now = time.monotonic()
                sent = self._inflight.get(n)
                if sent is not None and now - sent < RESEND_S:
                    continue
                payload = self.outbox.get(str(n))
                if payload is None:
                    continue  # acked meanwhile
                try:
                    await m.publish(self._topic("rating"), payload.encode(), 1)
                except OSError:
                    break
                if sent is not None:
                    self.counts["resend"] += 1
                self._inflight[n] = now
                self._event("published", {"n": n})

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config["health_s"])
            await self._publish("health", _compact({
                "v": 1, "boot": self.boot, "up": self.ms(), "heap": 0, "alloc_peak": 0,
                "ob": len(self.outbox), "fw": FIRMWARE, "rssi": None, "clock": "mono", "cnt": self.counts,
                "err": None, "stuck": []}), 0)

    async def _publish(self, suffix: str, payload: bytes, qos: int) -> bool:
        m = self.mqtt
        if m is None or not m.connected:
            return False
        try:
            await m.publish(self._topic(suffix), payload, qos)
            return True
        except OSError:
            return False

    # -- sessions and presses
    def _open_session(self, sess: str, ttl: float, qr: str | None = None) -> None:
        """`sess` "" is a local one (invite key). It times out after `ttl` s with no press. `qr`:
        the phone page's URL from the prompt, shown while the session is open."""
        self._end_session()
        self.session = sess
        self._session_timer = asyncio.get_running_loop().call_later(ttl, self._close_session, "timeout")
        self._event("session", {"op": "open", "sess": sess or None})
        self._show(qr)  # after the event, as the firmware (open_session, then show_idle)

    def _end_session(self) -> None:
        if self._session_timer is not None:
            self._session_timer.cancel()
            self._session_timer = None
        self.session = None
        if self.display["qr"] is not None:
            self._show(None)  # the firmware drops its QR code when the session ends (any way)

    def _close_session(self, why: str) -> None:
        if self.session is None:
            return
        self._event("session", {"op": why, "sess": self.session or None})
        self._end_session()

    def _button(self, name: str) -> None:
        if not self.running:
            return  # no power: a press does nothing
        self.counts["press"] += 1
        if name == "invite":
            if self.config["invite"] and self.session is None:
                self._open_session("", self.config["session_ttl_s"])
            return
        if name not in ("1", "2", "3", "4", "5"):
            return
        if self.session is None:
            self._event("nosession", {"score": int(name)})
            return
        sess = self.session or None
        n = self.last_n + 1
        payload = rating_json(self.key, self.hall, self.dev, n, self.boot, self.ms(), sess, int(name))
        self.last_n = n
        self.outbox[str(n)] = payload.decode()
        self._save()  # durable before it counts
        self.counts["rate"] += 1
        if sess:
            self.rated.append(sess)
            del self.rated[:-RATED_KEPT]
        self._end_session()
        self._event("rating", {"n": n, "score": int(name), "sess": sess})
        self._wake.set()

    def _on_message(self, topic: str, payload: bytes) -> None:
        suffix = "cmd" if topic.endswith("/cmd") else topic.rsplit("/", 1)[-1]
        try:
            obj = json.loads(payload)
            if not isinstance(obj, dict) or obj.get("v") != 1:
                raise ValueError("bad_version")
            if suffix == "ack":
                n, st = obj["n"], obj["st"]
                if st not in ("ok", "dup", "bad") or type(n) is not int:
                    raise ValueError("bad_field:st")
                if self.outbox.pop(str(n), None) is not None:
                    self._save()
                    self._inflight.pop(n, None)
                    self._event("ack", {"n": n, "st": st})
            elif suffix == "prompt":
                sess = obj["sess"]
                if obj["op"] == "open":
                    if sess in self.rated:
                        self._event("already", {"sess": sess})
                        return
                    qr = obj.get("qr")
                    self._open_session(sess, obj.get("ttl") or self.config["session_ttl_s"],
                                       qr if isinstance(qr, str) else None)
                elif obj["op"] == "cancel" and self.session == sess:
                    self._close_session("cancel")
            elif suffix == "cmd":
                asyncio.ensure_future(self._command(obj))
        except (ValueError, KeyError, TypeError) as exc:
            self.counts["badmsg"] += 1
            self._event("badmsg", {"topic": suffix, "reason": str(exc)})

    async def _command(self, obj: dict) -> None:
        op, cid = obj.get("op"), obj.get("id")
        if op == "info":
            reply = {"v": 1, "id": cid, "ok": True, "res": {
                "dev": self.dev, "hall": self.hall, "window": self.config.get("window", ""), "fw": FIRMWARE,
                "boot": self.boot, "kid": self.kid, "lang": self.config.get("lang", "zh-Hans")}}
        elif op in ("identify", "time"):
            reply = {"v": 1, "id": cid, "ok": True, "res": {}}
        else:
            self.counts["badmsg"] += 1
            reply = {"v": 1, "id": cid, "ok": False, "err": f"unknown op {op} (lightweight device)"}
        await self._publish("cmd/reply", _compact(reply), 1)
