"""The counter rating device: sessions, presses, the flash outbox, MQTT, presence and health.

Hardware comes from the board (see boards/*/board.py): pins, LEDs, display, sound, network,
watchdog, flash root. Nothing here imports `machine` or `network`.

The order that makes a press safe: take the next counter value, sign, append the rating to the flash
journal (which persists the counter in the same write), and only then show "thank you". The rating
stays in the journal until the gateway's `ack` for its number arrives; it is (re)sent after every
(re)connect and after every reboot.

This module is what stays in RAM while the device counts presses. What happens rarely (start-up,
provisioning, commands, config changes, the console's commands, reading the whole journal) is in
admin.py, config.py, console.py and journal.py, run with `flashfs.run_cold` for each use: see
docs/firmware.md, "Memory".
"""

import asyncio
import gc
import random
import time

import aio
import ui as _ui
import wire
from buttons import Buttons
from flashfs import run_cold, run_cold_async
from micropython import const
from mqtt import MQTTClient
from outbox import Outbox

FIRMWARE = "0.1.0"
_BACKOFF_MIN_MS = const(500)  # first reconnect delay; doubles up to _BACKOFF_MAX_MS
_BACKOFF_MAX_MS = const(30000)  # a hall broker restart takes seconds; do not wait minutes
_RESEND_MS = const(15000)  # a rating published but not acked this long is published again
_NETWORK_TIMEOUT_MS = const(20000)
_WDT_MS = const(8000)  # watchdog timeout: the main loop feeds it every 100 ms
RATING_BUTTONS = ("1", "2", "3", "4", "5")
COUNTERS = ("press", "rate", "resend", "reconn", "err", "stuck", "badmsg", "badcon")


class Device:
    firmware = FIRMWARE

    def __init__(self, board):
        self.board = board
        self.config, self.config_errors = run_cold("config", "load", board.flash_root)
        if not self.config["dev"] and getattr(board, "default_id", None):
            self.config["dev"] = board.default_id  # until provisioning names it
        self.outbox = Outbox(board.flash_root, self.config["outbox_max"])
        self._ticks = board.ticks_ms()
        self._ms = 0  # see ms()
        self.counts = {k: 0 for k in COUNTERS}
        self.last_error = None
        self.kid = None
        self.signer = None  # HMAC over the device key, once there is one
        self.boot = 0
        self.conn = 0
        self.session = None  # open session id; "" for a local (invite) session; None: none
        self.session_ticket = None
        self.session_deadline = 0
        self.rated = []  # the last few session ids rated, so a repeated open says "already"
        self.mqtt = None
        self.wall_offset = None  # set by the `time` command: wall ms = mono ms + offset
        self._inflight = {}  # rating n -> mono ms when last published on this connection
        self._wake = aio.Signal()
        self.ui_until = 0  # a transient state (thanks, already, ...) shows until this time; 0: none
        self._rated_until = 0  # a press before this time, with no new session, is "already rated"
        self._qr = None
        self.identify_until = 0  # all LEDs blink until this time (the `identify` command)
        self.reboot_at = 0  # the main loop reboots at this time (the `reboot` command); 0: no
        self.ui = _ui.UI(board.display, board.leds, board.sound, self.config["lang"])
        self.buttons = None
        self.selftest = None  # the console's self-test while it runs: it gets every press
        self.alloc_peak = 0  # highest gc.mem_alloc() seen (sampled by the main loop)

    def start(self):
        run_cold("admin", "start", self)
        self.buttons = Buttons(self.board.buttons, self.board.pressed, self._on_button, self._on_stuck,
                               self.config["stuck_ms"], self.board.ticks_ms)
        self.show_idle()
        self.board.event("boot", {"boot": self.boot, "n": self.outbox.last_n,
                                  "pending": self.outbox.depth(), "kid": self.kid})

    def ms(self):
        """Milliseconds since boot that do not wrap (ticks_ms wraps after ~12 days on some ports).
        Must be called at least every few days; the main loop calls it every 100 ms."""
        now = self.board.ticks_ms()
        self._ms += time.ticks_diff(now, self._ticks)
        self._ticks = now
        return self._ms

    def ready(self):
        """Can this device create ratings at all?"""
        cfg = self.config
        return self.signer is not None and bool(cfg["dev"] and cfg["hall"])

    # -- helpers
    def error(self, text):
        self.counts["err"] += 1
        self.last_error = text
        self.board.event("error", {"text": text})

    def _topic(self, suffix):
        return "hcp/v1/%s/%s/%s" % (self.config["hall"], self.config["dev"], suffix)

    def show_idle(self):
        if not self.ready():
            self.ui.show(_ui.ERROR, detail="not provisioned")
        elif self.session is not None:
            self.ui.show(_ui.PROMPT, ticket=self.session_ticket, qr=self._qr)
        elif self.outbox.full():
            self.ui.show(_ui.FULL)
        elif self.mqtt is None or not self.mqtt.connected:
            self.ui.show(_ui.OFFLINE)
        else:
            self.ui.show(_ui.IDLE)
        self.ui_until = 0

    def _flash(self, state, ms):
        """Show a transient state for `ms`, then whatever the device's state calls for."""
        self.ui.show(state)
        self.ui_until = self.ms() + ms

    # -- sessions
    def open_session(self, sess, ttl_s, ticket, qr, qr_matrix=None):
        """qr: the phone page URL; qr_matrix: (size, bits) of its QR code, encoded by the gateway."""
        if sess in self.rated:
            self._flash(_ui.ALREADY, self.config["thanks_ms"])
            return
        self.session = sess
        self.session_ticket = ticket
        self._qr = (qr, qr_matrix) if qr or qr_matrix else None
        self.session_deadline = self.ms() + 1000 * (ttl_s or self.config["session_ttl_s"])
        self._rated_until = 0
        self.board.event("session", {"op": "open", "sess": sess})
        self.show_idle()

    def close_session(self, why):
        if self.session is None:
            return
        self.board.event("session", {"op": why, "sess": self.session})
        self.session = None
        self.session_ticket = None
        self._qr = None
        if not self.ui_until:
            self.show_idle()

    # -- buttons
    def _on_stuck(self, name):
        self.counts["stuck"] += 1
        self.error("button %s stuck" % name)

    def _on_button(self, name):
        if self.selftest is not None:
            self.selftest.on_button(name)
            return
        self.counts["press"] += 1
        if name == "invite":
            if self.config["invite"] and self.session is None and self.ready():
                self.session = ""  # local session: the gateway binds it by window and time
                self.session_ticket = None
                self.session_deadline = self.ms() + 1000 * self.config["session_ttl_s"]
                self._rated_until = 0
                self.board.event("session", {"op": "open", "sess": None})
                self.show_idle()
            return
        if name in RATING_BUTTONS:
            self.press(int(name))

    def press(self, score):
        """A citizen pressed rating button `score` (1..5)."""
        if not self.ready():
            self._flash(_ui.ERROR, self.config["thanks_ms"])
            return
        if self.session is None:
            recent = self.ms() < self._rated_until
            self._flash(_ui.ALREADY if recent else _ui.NOSESSION, self.config["thanks_ms"])
            return
        if self.outbox.full():
            self.ui.show(_ui.FULL)
            self.ui_until = 0
            return
        sess = self.session or None
        n = self.outbox.last_n + 1
        mono = self.ms()
        cfg = self.config
        try:
            payload = wire.rating_payload(self.signer, self.kid, cfg["hall"], cfg["dev"], n, self.boot,
                                          mono, sess, score)
            self.outbox.add(n, payload)  # durable before "thank you"
        except (OSError, MemoryError) as exc:  # not stored: the session stays open for a new press
            self.error("rating not stored: %r" % (exc,))
            self._flash(_ui.ERROR, cfg["thanks_ms"])
            return
        self.counts["rate"] += 1
        if sess:
            self.rated.append(sess)
            del self.rated[:-8]
        self.session = None
        self.session_ticket = None
        self._qr = None
        self._rated_until = mono + 1000 * cfg["session_ttl_s"]
        self.board.event("rating", {"n": n, "score": score, "sess": sess})
        self._flash(_ui.THANKS, cfg["thanks_ms"])
        self._wake.set()

    # -- messages from the gateway (called by the MQTT reader: no awaiting here)
    def on_message(self, topic, payload):
        suffix = topic.rsplit("/", 1)[-1]
        if topic.endswith("/cmd"):
            suffix = "cmd"
        try:
            if suffix == "ack":
                n, st = wire.decode_ack(payload)
                if self.outbox.ack(n):
                    self._inflight.pop(n, None)
                    self.board.event("ack", {"n": n, "st": st})
                    if self.ui.state == _ui.FULL and not self.outbox.full():
                        self.show_idle()
            elif suffix == "prompt":
                op, sess, ttl, tk, qr, qrm = wire.decode_prompt(payload)
                if op == "open":
                    self.open_session(sess, ttl, tk, qr, qrm)
                elif self.session == sess:
                    self.close_session("cancel")
            elif suffix == "cmd":
                reply = run_cold("admin", "command", self, payload)
                if reply is not None:
                    asyncio.create_task(self._reply(*reply))
        except wire.WireError as exc:  # breaks the contract: ignored, counted, reported
            self.counts["badmsg"] += 1
            self.last_error = "bad %s: %s" % (suffix, exc.args[0])
            self.board.event("badmsg", {"topic": suffix, "reason": exc.args[0]})

    async def publish(self, suffix, payload, qos, retain=False):
        m = self.mqtt
        if m is None or not m.connected:
            return False
        try:
            await m.publish(self._topic(suffix), payload, qos, retain)
            return True
        except OSError:
            return False

    async def _reply(self, payload, changed):
        """A command's reply; a config change that needs a new connection is made after it."""
        await self.publish("cmd/reply", payload, 1)
        if changed:
            run_cold("admin", "reconnect_if_needed", self, changed)

    # -- loops
    def _status(self, state):
        obj = {"v": 1, "state": state, "boot": self.boot, "conn": self.conn}
        if state == "online":
            obj["fw"] = FIRMWARE
        return wire.compact(obj)

    async def connection_loop(self):
        """Keep one MQTT connection up: connect, subscribe, birth, wait for loss, back off. One
        client serves every connection of a config: a reconnect allocates no new client (it
        happens when the heap is at its fullest, right after a broker restart)."""
        delay = _BACKOFF_MIN_MS
        m = m_cfg = None
        while True:
            if not self.ready():
                await asyncio.sleep_ms(1000)
                continue
            ok = await self.board.network_up(_NETWORK_TIMEOUT_MS)
            if ok:
                cfg = self.config  # a config change replaces the dict: a new client for new values
                self.conn += 1
                try:
                    if m is None or m_cfg is not cfg:
                        m = m_cfg = None
                        m = MQTTClient("dev-" + cfg["dev"], cfg["broker_host"], cfg["broker_port"],
                                       cfg["mqtt_user"] or cfg["dev"], cfg["mqtt_pass"] or None,
                                       cfg["keepalive_s"], None, True, self.on_message)
                        m_cfg = cfg
                    m.will = (self._topic("status"), self._status("offline"), 1, True)
                    await m.connect()
                    for suffix in ("ack", "prompt", "cmd"):
                        await m.subscribe(self._topic(suffix), 1)
                    await m.publish(self._topic("status"), self._status("online"), 1, True)
                    self.mqtt = m
                    self._inflight = {}
                    if self.conn > 1:
                        self.counts["reconn"] += 1
                    self.board.event("online", {"conn": self.conn})
                    delay = _BACKOFF_MIN_MS
                    if not self.ui_until:
                        self.show_idle()
                    self._wake.set()
                    while not await m.lost.wait_ms(60000):
                        pass
                except (OSError, MemoryError) as exc:  # out of heap: this connection, not the device
                    self.last_error = "mqtt: %r" % (exc,)
                finally:
                    self.mqtt = None
                    if m is not None:
                        await m.close()
                self.board.event("offline", {"conn": self.conn})
                if not self.ui_until:
                    self.show_idle()
            await asyncio.sleep_ms(delay + random.randint(0, delay // 2))
            delay = min(delay * 2, _BACKOFF_MAX_MS)

    async def send_loop(self):
        """Publish pending ratings in counter order; republish those not acked in _RESEND_MS."""
        topic_suffix = "rating"
        while True:
            await self._wake.wait_ms(1000)
            for n in self.outbox.pending():
                m = self.mqtt
                if m is None or not m.connected:
                    break
                now = self.ms()
                sent = self._inflight.get(n)
                if sent is not None and now - sent < _RESEND_MS:
                    continue
                payload = self.outbox.payload(n)
                if payload is None:
                    self.error("rating %d unreadable in the outbox" % n)
                    continue
                if not await self.publish(topic_suffix, payload, 1):
                    break
                if sent is not None:
                    self.counts["resend"] += 1
                self._inflight[n] = now
                self.board.event("published", {"n": n})

    async def main_loop(self):
        """Session timeouts, the end of transient screens, identify blinking, a commanded reboot,
        `health` every health_s, and the watchdog."""
        health_at = self.ms() + 1000 * self.config["health_s"]
        while True:
            self.board.feed_watchdog()
            alloc = gc.mem_alloc()
            if alloc > self.alloc_peak:
                self.alloc_peak = alloc
            now = self.ms()
            if now >= health_at:
                health_at = now + 1000 * self.config["health_s"]
                gc.collect()
                obj = {"v": 1, "boot": self.boot, "up": now, "heap": gc.mem_free(),
                       "alloc_peak": self.alloc_peak,
                       "ob": self.outbox.depth(), "fw": FIRMWARE, "rssi": self.board.rssi(),
                       "clock": "mono" if self.wall_offset is None else "set",
                       "cnt": self.counts, "err": self.last_error,
                       "stuck": self.buttons.stuck_names() if self.buttons is not None else []}
                # a task, so a stalled connection never holds up this loop (and the watchdog)
                asyncio.create_task(self.publish("health", wire.compact(obj), 0))
            if self.session is not None and now >= self.session_deadline:
                self.close_session("timeout")
            if self.identify_until:
                if now < self.identify_until:
                    self.ui.blink(now // 250 % 2 == 0)
                else:
                    self.identify_until = 0
                    self.show_idle()
            elif self.ui_until and now >= self.ui_until:
                self.ui_until = 0
                self.show_idle()
            if self.reboot_at and now >= self.reboot_at:
                if self.mqtt is not None:
                    await self.mqtt.disconnect()
                self.board.reboot()
                self.reboot_at = 0
            await asyncio.sleep_ms(100)

    async def console_loop(self, stream, write):
        """The serial console (docs/serial-console.md): console.py runs each line."""
        while True:
            try:
                line = await aio.readline(stream)
            except OSError:
                return  # no console attached
            if not line:
                return  # end of input: the UART was closed (host board) -- stop reading
            await run_cold_async("console", "handle", self, write, line)


async def _amain(board):
    await board.start()
    dev = Device(board)
    dev.start()
    assert dev.buttons is not None  # start() made them
    board.start_watchdog(_WDT_MS)
    loops = [asyncio.create_task(c) for c in (dev.buttons.run(), dev.connection_loop(), dev.send_loop(),
                                              dev.main_loop())]

    def failed(loop, context):
        """A loop that dies ends the firmware (the watchdog resets a board); any other task's
        error is counted and reported."""
        if context["future"] in loops:
            raise context["exception"]
        dev.error("task: %r" % (context["exception"],))

    asyncio.get_event_loop().set_exception_handler(failed)
    asyncio.create_task(dev.console_loop(board.console_in, board.console_write))
    await board.run()  # until a reboot (SystemExit on the host board)


def run(board):
    asyncio.run(_amain(board))
