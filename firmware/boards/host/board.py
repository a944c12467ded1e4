"""Host board: runs the real firmware under MicroPython's unix port (simulator and tests).

The "hardware" is a line-based control connection to whoever started the interpreter (the
simulator's device runner, `simulator/device_process.py`), given as HCP_HOST_CONTROL=host:port.
It carries what a person would do to and see on a real device:

  runner -> device   press <button> | release <button> | tap <button> [ms] | net <up|down>
                     | hang <ms> (fault injection: block the event loop)
  device -> runner   hello <json> | led <name> <0|1> | display <json> | sound <state>
                     | event <name> <json>

Buttons are "1".."5" and "invite"; LEDs "b1".."b5", "ok", "err". `display` carries
{"lines": [...], "qr": text or null}. Flash is the directory HCP_FLASH_DIR. Documented in
docs/host-board.md. Without HCP_HOST_CONTROL the board runs headless (buttons never pressed).
"""

import _thread
import asyncio
import binascii
import json
import os
import sys
import time

import aio
from stdio_console import StdioConsole

BUTTONS = ("1", "2", "3", "4", "5", "invite")
# A `tap` is timed by the firmware's reads of the button, not by the clock alone: each read adds the
# time since the one before, at most TAP_STEP_MS (twice the buttons' 10 ms poll). On a busy PC the
# interpreter can be left waiting for longer than the 50 ms debounce, and a hold timed by the clock
# would then end before the firmware had seen it (no chip stalls like that). After its hold a tapped
# button stays released for TAP_GAP_MS of reads before the next tap of it, queued meanwhile, begins.
TAP_STEP_MS = 20
TAP_GAP_MS = 80


class Board(StdioConsole):
    name = "host"

    def __init__(self):
        self.flash_root = os.getenv("HCP_FLASH_DIR") or "."
        self.ticks_ms = time.ticks_ms
        self._pressed = {b: 0 for b in BUTTONS}
        self._taps = {}  # button -> its queued taps' phases: [level, ms of reads left]
        self._tap_read = {}  # button -> ticks_ms of the last read that counted for its taps
        self.buttons = BUTTONS
        self.display = self.leds = self  # the display's show() and the LEDs' set() are below
        self._sock = None  # the control connection's socket (non-blocking)
        self._out = None  # bytes the socket has not taken yet; None: headless, lines go nowhere
        self._net = True
        self._exit = None  # set to an exit status to end the interpreter (reboot: 75)
        self._fed = time.ticks_ms()
        self._wdt_ms = 0

    # -- control connection
    async def start(self):
        addr = os.getenv("HCP_HOST_CONTROL")
        if not addr:
            return
        host, port = addr.rsplit(":", 1)
        self._sock = await aio.connect(host, int(port))
        self._sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: each line is one event, send it now
        self._out = b""
        self.send("hello " + json.dumps({"board": self.name, "flash": self.flash_root}))

    def send(self, line):
        """Write a line to the runner now; what the socket does not take waits for `run`.
        (Not the stream's write/drain: a write made while a drain waits is lost when it ends.)"""
        if self._out is None:
            return
        self._out += line.encode() + b"\n"
        self._flush()

    def _flush(self):
        sock, out = self._sock, self._out
        if sock is None or not out:
            return
        try:
            n = sock.write(out)
        except OSError:
            self._exit = 0  # the runner is gone: nobody is at the counter, power off quietly
            return
        if n:
            self._out = out[n:]

    async def run(self):
        """Apply control commands; exit the interpreter on reboot (75) or when the runner goes (0).
        Lines are written to the socket at once; what it did not take is flushed here."""
        if self._sock is not None:
            asyncio.create_task(self._control_loop())
        while self._exit is None:
            self._flush()
            await asyncio.sleep_ms(10)
        raise SystemExit(self._exit)

    async def _control_loop(self):
        while True:
            line = await aio.readline(self._sock)
            if not line:
                self._exit = 0  # the runner went away: power off
                return
            words = line.decode().split()
            op = words[0] if words else ""
            name = words[1] if len(words) > 1 else ""
            if op in ("press", "release", "tap") and name in self._pressed:
                if op == "tap":
                    hold = int(words[2]) if len(words) > 2 else 100
                    if name not in self._taps:
                        self._taps[name] = []
                        self._tap_read[name] = None  # its first read starts the hold
                    self._taps[name] += [[1, hold], [0, TAP_GAP_MS]]
                else:  # a press or release ends any taps of the button
                    self._pressed[name] = 0 if op == "release" else 1
                    self._taps.pop(name, None)
            elif op == "net" and name:
                self._net = name == "up"
            elif op == "hang" and name:
                time.sleep_ms(int(name))  # fault injection: the event loop stops, as in a firmware bug
            elif words:
                self.send("event badctl " + json.dumps({"line": " ".join(words)}))

    # -- what the firmware uses
    def pressed(self, name):
        """The button's level; a tapped one follows its taps' phases (TAP_STEP_MS above)."""
        phases = self._taps.get(name)
        if phases is not None:
            now = time.ticks_ms()
            last = self._tap_read[name]
            if last is not None:
                phases[0][1] -= min(time.ticks_diff(now, last), TAP_STEP_MS)
                if phases[0][1] <= 0:
                    phases.pop(0)
            self._tap_read[name] = now
            if phases:
                self._pressed[name] = phases[0][0]
            else:
                del self._taps[name]
                self._pressed[name] = 0
        return self._pressed[name]

    def show(self, lines, qr=None):
        """The display: reports the text lines, the QR code's URL and its modules (hex of the
        packed bits)."""
        url, matrix = qr if qr else (None, None)
        shown = {"lines": lines, "qr": url}
        if matrix:
            shown["qr_size"] = matrix[0]
            shown["qr_bits"] = binascii.hexlify(matrix[1]).decode()
        self.send("display " + json.dumps(shown))

    def set(self, name, on):
        """An LED."""
        self.send("led %s %d" % (name, 1 if on else 0))

    def sound(self, state):
        self.send("sound " + state)

    def event(self, name, data):
        self.send("event %s %s" % (name, json.dumps(data)))

    async def network_up(self, timeout_ms):
        return self._net

    def rssi(self):
        return None

    def reboot(self):
        self._exit = 75

    def start_watchdog(self, timeout_ms):
        """A hung event loop gets the process killed, as a hardware watchdog resets the chip."""
        self._wdt_ms = timeout_ms
        self._fed = time.ticks_ms()
        _thread.start_new_thread(self._watchdog, ())

    def feed_watchdog(self):
        self._fed = time.ticks_ms()

    def _watchdog(self):
        while True:
            time.sleep(0.5)  # sleep_ms(500) wakes every 0.5 ms on the unix port (measured: 3.6 % CPU)
            if time.ticks_diff(time.ticks_ms(), self._fed) > self._wdt_ms:
                sys.stderr.write("watchdog: main loop hung, resetting\n")
                with open("/proc/self/stat") as f:
                    pid = f.read().split()[0]
                os.system("kill -KILL " + pid)
