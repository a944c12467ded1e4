"""Serial provisioning console: a line protocol on the USB REPL UART (stdin/stdout on the host board).

One request per line, `<command> [argument]`; one answer line `ok <json>` or `err <reason>`.
Self-test also writes progress lines `ev <json>` before its answer. Nothing else the device writes to
the UART starts with `ok `, `err ` or `ev `, so a tool can skip other lines. Documented with
examples in docs/serial-console.md; `hcp provision` (hcp/serial_console.py) speaks it.

The key is write-only: `key` stores it, no command ever prints it.

Cold code (docs/firmware.md, "Memory"): the device's console loop (`Device.console_loop`) reads
each line and runs `handle` with `flashfs.run_cold_async`.
"""

import asyncio
import binascii
import json

from flashfs import run_cold
from micropython import const

PROTO = const(1)
MAX_LINE = const(600)  # a `config` line with every key fits in well under this
SELFTEST_LED_MS = const(700)  # each LED stays lit this long for the technician to see
SELFTEST_BUTTONS = ("5", "4", "3", "2", "1", "invite")
COMMANDS = ("help", "info", "set", "config", "key", "selftest", "identify", "reboot")


async def handle(device, write, line):
    """Run one console line (bytes, as read)."""
    con = Console(device, write)
    if len(line) > MAX_LINE:
        con.fail("line too long")
        return
    try:
        text = line.decode().strip()
    except UnicodeError:
        con.fail("not UTF-8")
        return
    if text:
        await con.handle(text)


class Console:
    def __init__(self, device, write):
        self.device = device
        self._write = write
        self._pressed = None

    def say(self, kind, obj):
        self._write(kind + " " + json.dumps(obj) + "\n")

    def fail(self, reason):
        self.device.counts["badcon"] += 1
        self._write("err " + reason + "\n")

    async def handle(self, text):
        word, _, arg = text.partition(" ")
        arg = arg.strip()
        dev = self.device
        try:
            if word == "help":
                self.say("ok", {"proto": PROTO, "commands": COMMANDS})
            elif word == "info":
                self.say("ok", run_cold("admin", "info", dev, True))
            elif word == "set":
                key, _, value = arg.partition(" ")
                self.say("ok", {"changed": run_cold("admin", "apply_config", dev, {key: json.loads(value)})})
            elif word == "config":
                changes = json.loads(arg)
                if not isinstance(changes, dict):
                    raise ValueError("config takes a JSON object")
                self.say("ok", {"changed": run_cold("admin", "apply_config", dev, changes)})
            elif word == "key":
                if len(arg) != 64:
                    raise ValueError("key takes 64 hex characters")
                self.say("ok", {"kid": run_cold("admin", "store_key", dev, binascii.unhexlify(arg))})
            elif word == "selftest":
                await self.selftest(int(arg) if arg else 15)
            elif word == "identify":
                run_cold("admin", "identify", dev, int(arg) if arg else 10)
                self.say("ok", {})
            elif word == "reboot":
                self.say("ok", {})
                run_cold("admin", "request_reboot", dev)
            else:
                self.fail("unknown command " + word[:20])
        except (ValueError, TypeError, KeyError) as exc:  # bad JSON, bad hex, bad value
            self.fail(str(exc) or type(exc).__name__)
        except OSError as exc:  # flash write failed
            self.fail("flash: " + str(exc))

    # -- self-test: every LED in turn, then every button on request
    def on_button(self, name):
        """Called by the device for every press while a self-test runs."""
        self._pressed = name

    async def selftest(self, seconds):
        if not 1 <= seconds <= 120:
            raise ValueError("selftest takes 1..120 seconds per button")
        dev = self.device
        dev.selftest = self
        leds = ["b1", "b2", "b3", "b4", "b5", "ok", "err"]
        buttons = {}
        try:
            dev.ui.blink(False)
            for led in leds:
                self.say("ev", {"step": "led", "led": led})
                dev.board.leds.set(led, True)
                await asyncio.sleep_ms(SELFTEST_LED_MS)
                dev.board.leds.set(led, False)
            for name in SELFTEST_BUTTONS:
                self._pressed = None
                self.say("ev", {"step": "press", "button": name})
                waited = 0
                while self._pressed is None and waited < seconds * 1000:
                    await asyncio.sleep_ms(20)
                    waited += 20
                got = self._pressed
                buttons[name] = got == name
                self.say("ev", {"step": "pressed", "button": name, "got": got, "ok": got == name})
        finally:
            dev.selftest = None
            dev.ui.forget_leds()
            dev.show_idle()
        stuck = dev.buttons.stuck_names()
        self.say("ok", {"leds": leds, "buttons": buttons, "stuck": stuck,
                        "passed": all(buttons.values()) and not stuck})
