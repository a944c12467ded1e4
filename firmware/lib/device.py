"""The counter rating device: sessions, presses, the flash outbox, MQTT, presence and health.

Hardware comes from the board (see boards/*/board.py): pins, LEDs, display, sound, network,
watchdog, flash root. Nothing here imports `machine` or `network`.

The order that makes a press safe: take the next counter value, sign, append the rating to the flash
journal (which persists the counter in the same write), and only then show "thank you". The rating
stays in the journal until the gateway's `ack` for its number arrives; it is (re)sent after every
(re)connect and after every reboot.
"""

import asyncio
import gc
import random
import time

import ui as _ui
import wire
from buttons import Buttons
from config import Config
from console import Console
from flashfs import join, read_json, write_atomic
from hmac_sha256 import HMAC
from micropython import const
from mqtt import MQTTClient
from outbox import Outbox

FIRMWARE = "0.1.0"
BACKOFF_MIN_MS = const(500)  # first reconnect delay; doubles up to BACKOFF_MAX_MS
BACKOFF_MAX_MS = const(30000)  # a hall broker restart takes seconds; do not wait minutes
RESEND_MS = const(15000)  # a rating published but not acked this long is published again
NETWORK_TIMEOUT_MS = const(20000)
WDT_MS = const(8000)  # watchdog timeout: the main loop feeds it every second
RATING_BUTTONS = ("1", "2", "3", "4", "5")
COUNTERS = ("press", "rate", "resend", "reconn", "err", "stuck", "badmsg", "badcon")
# Config keys whose change needs a new MQTT connection (identity, broker, credentials).
RECONNECT_KEYS = ("dev", "hall", "broker_host", "broker_port", "mqtt_user", "mqtt_pass", "keepalive_s",
                  "wifi_ssid", "wifi_pass")


class Clock:
    """Milliseconds since boot that do not wrap (ticks_ms wraps after ~12 days on some ports).
    `ms()` must be called at least every few days; the health loop does."""

    def __init__(self, ticks_ms=time.ticks_ms):
        self._ticks = ticks_ms
        self._last = ticks_ms()
        self._acc = 0

    def ms(self):
        now = self._ticks()
        self._acc += time.ticks_diff(now, self._last)
        self._last = now
        return self._acc


class Device:
    def __init__(self, board):
        self.board = board
        root = board.flash_root
        self.config = Config(root)
        self.config.load()
        if not self.config["dev"] and getattr(board, "default_id", None):
            self.config.values["dev"] = board.default_id  # until provisioning names it
        if hasattr(board, "set_wifi"):
            board.set_wifi(self.config["wifi_ssid"], self.config["wifi_pass"])
        self.outbox = Outbox(root, self.config["outbox_max"])
        self.clock = Clock(board.ticks_ms)
        self.counts = {k: 0 for k in COUNTERS}
        self.last_error = None
        self.key = None
        self.kid = None
        self._signer = None
        self.boot = 0
        self.conn = 0
        self.session = None  # open session id; "" for a local (invite) session; None: none
        self.session_ticket = None
        self.session_deadline = 0
        self.rated = []  # the last few session ids rated, so a repeated open says "already"
        self.mqtt = None
        self.wall_offset = None  # set by the `time` command: wall ms = mono ms + offset
        self._inflight = {}  # rating n -> mono ms when last published on this connection
        self._wake = asyncio.Event()
        self._ui_until = 0  # a transient state (thanks, already, ...) shows until this time; 0: none
        self._rated_until = 0  # a press before this time, with no new session, is "already rated"
        self._qr = None
        self._identify_until = 0
        self.ui = _ui.UI(board.display, board.leds, board.sound, self.config["lang"])
        self.buttons = None
        self.selftest = None  # the console's self-test while it runs: it gets every press
        self.alloc_peak = 0  # highest gc.mem_alloc() seen (sampled by the main loop)

    # -- start-up
    def store_key(self, key):
        """Provisioning: write the device key (write-only) and use it from now on. -> key id."""
        if len(key) != 32:
            raise ValueError("the key must be 32 bytes")
        write_atomic(join(self.board.flash_root, "key.bin"), key)
        self._load_key()
        self._idle()
        return self.kid

    def _load_key(self):
        try:
            with open(join(self.board.flash_root, "key.bin"), "rb") as f:
                key = f.read()
        except OSError:
            return False
        if len(key) != 32:
            self._error("key file is not 32 bytes")
            return False
        self.key = key
        self.kid = wire.key_id(key)
        self._signer = HMAC(key)
        return True

    def _count_boot(self):
        path = join(self.board.flash_root, "boot.json")
        obj, _problem = read_json(path)
        boot = obj.get("boot", 0) + 1 if isinstance(obj, dict) and isinstance(obj.get("boot"), int) else 1
        write_atomic(path, wire.compact({"boot": boot}))
        self.boot = boot

    def start(self):
        for problem in self.config.errors:
            self._error(problem)
        self._count_boot()
        self.outbox.load()
        if self.outbox.repaired:
            self._error("outbox journal repaired after a torn write")
        self._load_key()
        self.buttons = Buttons(self.board.buttons, self._on_button, self._on_stuck,
                               self.config["stuck_ms"], self.board.ticks_ms)
        self._idle()
        self.board.event("boot", {"boot": self.boot, "n": self.outbox.last_n,
                                  "pending": self.outbox.depth(), "kid": self.kid})

    def ready(self):
        """Can this device create ratings at all?"""
        return self.key is not None and self.config.provisioned()

    # -- helpers
    def _error(self, text):
        self.counts["err"] += 1
        self.last_error = text
        self.board.event("error", {"text": text})

    def _topic(self, suffix):
        return "hcp/v1/%s/%s/%s" % (self.config["hall"], self.config["dev"], suffix)

    def _idle(self):
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
        self._ui_until = 0

    def show_idle(self):
        self._idle()

    def _flash(self, state, ms):
        """Show a transient state for `ms`, then whatever the device's state calls for."""
        self.ui.show(state)
        self._ui_until = self.clock.ms() + ms

    # -- sessions
    def open_session(self, sess, ttl_s, ticket, qr, qr_matrix=None):
        """qr: the phone page URL; qr_matrix: (size, bits) of its QR code, encoded by the gateway."""
        if sess in self.rated:
            self._flash(_ui.ALREADY, self.config["thanks_ms"])
            return
        self.session = sess
        self.session_ticket = ticket
        self._qr = (qr, qr_matrix) if qr or qr_matrix else None
        self.session_deadline = self.clock.ms() + 1000 * (ttl_s or self.config["session_ttl_s"])
        self._rated_until = 0
        self.board.event("session", {"op": "open", "sess": sess})
        self._idle()

    def close_session(self, why):
        if self.session is None:
            return
        self.board.event("session", {"op": why, "sess": self.session})
        self.session = None
        self.session_ticket = None
        self._qr = None
        if not self._ui_until:
            self._idle()

    # -- buttons
    def _on_stuck(self, name):
        self.counts["stuck"] += 1
        self._error("button %s stuck" % name)

    def _on_button(self, name):
        if self.selftest is not None:
            self.selftest.on_button(name)
            return
        self.counts["press"] += 1
        if name == "invite":
            if self.config["invite"] and self.session is None and self.ready():
                self.session = ""  # local session: the gateway binds it by window and time
                self.session_ticket = None
                self.session_deadline = self.clock.ms() + 1000 * self.config["session_ttl_s"]
                self._rated_until = 0
                self.board.event("session", {"op": "open", "sess": None})
                self._idle()
            return
        if name in RATING_BUTTONS:
            self.press(int(name))

    def press(self, score):
        """A citizen pressed rating button `score` (1..5)."""
        if not self.ready():
            self._flash(_ui.ERROR, self.config["thanks_ms"])
            return
        if self.session is None:
            recent = self.clock.ms() < self._rated_until
            self._flash(_ui.ALREADY if recent else _ui.NOSESSION, self.config["thanks_ms"])
            return
        if self.outbox.full():
            self.ui.show(_ui.FULL)
            self._ui_until = 0
            return
        sess = self.session or None
        n = self.outbox.last_n + 1
        mono = self.clock.ms()
        cfg = self.config
        payload = wire.rating_payload(self._signer, self.kid, cfg["hall"], cfg["dev"], n, self.boot,
                                      mono, sess, score)
        try:
            self.outbox.add(n, payload)  # durable before "thank you"
        except OSError as exc:
            self._error("flash write failed: %s" % exc)
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
                        self._idle()
            elif suffix == "prompt":
                op, sess, ttl, tk, qr, qrm = wire.decode_prompt(payload)
                if op == "open":
                    self.open_session(sess, ttl, tk, qr, qrm)
                elif self.session == sess:
                    self.close_session("cancel")
            elif suffix == "cmd":
                asyncio.create_task(self._command(*wire.decode_cmd(payload)))
        except wire.WireError as exc:
            self.counts["badmsg"] += 1
            self.last_error = "bad %s: %s" % (suffix, exc.args[0])
            self.board.event("badmsg", {"topic": suffix, "reason": exc.args[0]})

    def info(self, full=False):
        """What provisioning and the `info` command may know (never the key or secrets)."""
        cfg = self.config
        res = {"dev": cfg["dev"], "hall": cfg["hall"], "window": cfg["window"], "fw": FIRMWARE,
               "boot": self.boot, "kid": self.kid, "lang": cfg["lang"]}
        if full:
            res.update({"proto": 1, "board": self.board.name, "provisioned": self.ready(),
                        "config": cfg.public(), "outbox": self.outbox.depth(),
                        "n": self.outbox.last_n, "errors": cfg.errors})
        return res

    def apply_config(self, changes, reconnect=True):
        """Validate and store config changes (all or none), then put them into effect.
        With reconnect=False the caller calls `reconnect_if_needed` itself (after replying)."""
        changed = self.config.update(changes)
        cfg = self.config
        self.ui.lang = cfg["lang"]
        self.outbox.capacity = cfg["outbox_max"]
        if self.buttons is not None:
            self.buttons.stuck_ms = cfg["stuck_ms"]
        if hasattr(self.board, "set_wifi"):
            self.board.set_wifi(cfg["wifi_ssid"], cfg["wifi_pass"])
        if reconnect:
            self.reconnect_if_needed(changed)
        if not self._ui_until:
            self._idle()
        return changed

    def reconnect_if_needed(self, changed):
        if any(k in RECONNECT_KEYS for k in changed) and self.mqtt is not None:
            self.mqtt.lost.set()  # the connection loop closes it and connects with the new values

    def identify(self, secs):
        if isinstance(secs, bool) or not isinstance(secs, int) or not 1 <= secs <= 300:
            raise ValueError("s: not an integer in 1..300")
        self._identify_until = self.clock.ms() + 1000 * secs
        asyncio.create_task(self._identify())

    def request_reboot(self):
        asyncio.create_task(self._reboot())

    async def _command(self, cid, op, args):
        ok, res = True, {}
        try:
            if op == "info":
                res = self.info()
            elif op == "identify":
                self.identify(args.get("s", 10))
            elif op == "time":
                epoch = args.get("epoch")
                if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or epoch < 1.6e9:
                    raise ValueError("epoch: not a plausible Unix time")
                self.wall_offset = int(epoch * 1000) - self.clock.ms()
            elif op == "config":
                changes = args.get("set")
                if not isinstance(changes, dict):
                    raise ValueError("set: not an object")
                res = {"changed": self.apply_config(changes, reconnect=False)}
            elif op == "reboot":
                self.request_reboot()
            else:
                raise ValueError("unknown op " + op)
        except (ValueError, OSError) as exc:
            ok, res = False, str(exc)
            self.counts["badmsg"] += 1
        reply = {"v": 1, "id": cid, "ok": ok}
        reply["res" if ok else "err"] = res
        await self._publish("cmd/reply", wire.compact(reply), 1)
        if ok and op == "config" and isinstance(res, dict):
            self.reconnect_if_needed(res["changed"])

    async def _identify(self):
        on = True
        while self.clock.ms() < self._identify_until:
            self.ui.blink(on)
            on = not on
            await asyncio.sleep_ms(250)
        self._idle()

    async def _reboot(self):
        await asyncio.sleep_ms(200)
        if self.mqtt is not None:
            await self.mqtt.disconnect()
        self.board.reboot()

    async def _publish(self, suffix, payload, qos, retain=False):
        m = self.mqtt
        if m is None or not m.connected:
            return False
        try:
            await m.publish(self._topic(suffix), payload, qos, retain)
            return True
        except OSError:
            return False

    # -- loops
    def _status(self, state):
        obj = {"v": 1, "state": state, "boot": self.boot, "conn": self.conn}
        if state == "online":
            obj["fw"] = FIRMWARE
        return wire.compact(obj)

    async def connection_loop(self):
        """Keep one MQTT connection up: connect, subscribe, birth, wait for loss, back off."""
        delay = BACKOFF_MIN_MS
        cfg = self.config
        while True:
            if not self.ready():
                await asyncio.sleep_ms(1000)
                continue
            ok = await self.board.network_up(NETWORK_TIMEOUT_MS)
            if ok:
                self.conn += 1
                m = MQTTClient("dev-" + cfg["dev"], cfg["broker_host"], cfg["broker_port"],
                               cfg["mqtt_user"] or cfg["dev"], cfg["mqtt_pass"] or None,
                               cfg["keepalive_s"], (self._topic("status"), self._status("offline"), 1, True),
                               True, self.on_message)
                try:
                    await m.connect()
                    for suffix in ("ack", "prompt", "cmd"):
                        await m.subscribe(self._topic(suffix), 1)
                    await m.publish(self._topic("status"), self._status("online"), 1, True)
                    self.mqtt = m
                    self._inflight = {}
                    if self.conn > 1:
                        self.counts["reconn"] += 1
                    self.board.event("online", {"conn": self.conn})
                    delay = BACKOFF_MIN_MS
                    if not self._ui_until:
                        self._idle()
                    self._wake.set()
                    await m.lost.wait()
                except (OSError, asyncio.TimeoutError) as exc:
                    self.last_error = "mqtt: %r" % (exc,)
                finally:
                    self.mqtt = None
                    await m.close()
                self.board.event("offline", {"conn": self.conn})
                if not self._ui_until:
                    self._idle()
            await asyncio.sleep_ms(delay + random.randint(0, delay // 2))
            delay = min(delay * 2, BACKOFF_MAX_MS)

    async def send_loop(self):
        """Publish pending ratings in counter order; republish those not acked in RESEND_MS."""
        topic_suffix = "rating"
        while True:
            try:
                await asyncio.wait_for_ms(self._wake.wait(), 1000)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            for n in self.outbox.pending():
                m = self.mqtt
                if m is None or not m.connected:
                    break
                now = self.clock.ms()
                sent = self._inflight.get(n)
                if sent is not None and now - sent < RESEND_MS:
                    continue
                payload = self.outbox.payload(n)
                if payload is None:
                    self._error("rating %d unreadable in the outbox" % n)
                    continue
                if not await self._publish(topic_suffix, payload, 1):
                    break
                if sent is not None:
                    self.counts["resend"] += 1
                self._inflight[n] = now
                self.board.event("published", {"n": n})

    async def health_loop(self):
        while True:
            await asyncio.sleep_ms(1000 * self.config["health_s"])
            self.alloc_peak = max(self.alloc_peak, gc.mem_alloc())
            gc.collect()
            obj = {"v": 1, "boot": self.boot, "up": self.clock.ms(), "heap": gc.mem_free(),
                   "alloc_peak": self.alloc_peak,
                   "ob": self.outbox.depth(), "fw": FIRMWARE, "rssi": self.board.rssi(),
                   "clock": "mono" if self.wall_offset is None else "set",
                   "cnt": self.counts, "err": self.last_error,
                   "stuck": self.buttons.stuck_names() if self.buttons is not None else []}
            await self._publish("health", wire.compact(obj), 0)

    async def main_loop(self):
        """Session timeouts, the end of transient screens, and the watchdog."""
        while True:
            self.board.feed_watchdog()
            alloc = gc.mem_alloc()
            if alloc > self.alloc_peak:
                self.alloc_peak = alloc
            now = self.clock.ms()
            if self.session is not None and now >= self.session_deadline:
                self.close_session("timeout")
            if self._ui_until and now >= self._ui_until and now >= self._identify_until:
                self._ui_until = 0
                self._idle()
            await asyncio.sleep_ms(100)


async def _amain(board):
    await board.start()
    dev = Device(board)
    dev.start()
    assert dev.buttons is not None  # start() made them
    board.start_watchdog(WDT_MS)
    console = Console(dev, board.console_write)
    await asyncio.gather(dev.buttons.run(), dev.connection_loop(), dev.send_loop(),
                         dev.health_loop(), dev.main_loop(), board.run(),
                         console.run(board.console_in))


def run(board):
    asyncio.run(_amain(board))
