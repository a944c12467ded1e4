"""What the ESP32 and Pico W boards share. It imports no hardware module: each board file builds
its `machine.Pin`s, `network.WLAN` and `machine.WDT` and passes them in (see STYLE.md).

Display: these boards drive the five button LEDs plus "ok" and "err" LEDs; the display text goes
to `text_out` (the USB UART by default). A board with a panel passes its own display object with a
`show(lines, qr)` method instead.
"""

import asyncio
import binascii
import time

from stdio_console import StdioConsole


class _Leds:
    def __init__(self, pins):
        self._pins = pins

    def set(self, name, on):
        pin = self._pins.get(name)
        if pin is not None:
            pin.value(1 if on else 0)


class UartDisplay:
    """Writes what a panel would show to the console, one line per screen."""

    def __init__(self, write):
        self._write = write

    def show(self, lines, qr=None):
        url = qr[0] if qr else None
        self._write("[display] " + " | ".join(lines) + (" [qr] " + url if url else "") + "\n")


class McuBoard(StdioConsole):
    def __init__(self, name, button_pins, led_pins, wlan, make_wdt, unique_id, reset,
                 display=None, buzzer=None, text_out=None, flash_root="/"):
        """button_pins: name -> Pin (input, pull-up, pressed = 0); led_pins: name -> Pin (output);
        wlan: network.WLAN(STA_IF) or None; make_wdt(ms) -> machine.WDT; unique_id: bytes;
        reset: machine.reset (used only for a commanded reboot, never as error handling)."""
        self.name = name
        self.flash_root = flash_root
        self.ticks_ms = time.ticks_ms
        self._button_pins = button_pins
        self.buttons = tuple(button_pins)
        self.leds = _Leds(led_pins)
        self.display = display or UartDisplay(text_out or _print)
        self._buzzer = buzzer
        self._wlan = wlan
        self._make_wdt = make_wdt
        self._wdt = None
        self._reset = reset
        self.unique_id = unique_id
        self.default_id = "hcp-" + binascii.hexlify(unique_id).decode()  # until provisioned
        self._wifi = None  # (ssid, password), set by the device from its config

    async def start(self):
        pass

    def pressed(self, name):
        """1 while button `name` is pressed (pins pull up: pressed reads 0)."""
        return 0 if self._button_pins[name].value() else 1

    async def run(self):
        while True:
            await asyncio.sleep_ms(1000)

    def sound(self, state):
        if self._buzzer is not None:
            self._buzzer(state)

    def event(self, name, data):
        pass  # the host board reports events to its runner; real boards have no listener

    def set_wifi(self, ssid, password):
        self._wifi = (ssid, password)

    async def network_up(self, timeout_ms):
        """Join Wi-Fi if needed, waiting at most timeout_ms. -> connected?"""
        w = self._wlan
        if w is None:
            return True
        if w.isconnected():
            return True
        if not self._wifi or not self._wifi[0]:
            return False
        w.active(True)
        w.connect(self._wifi[0], self._wifi[1])
        start = time.ticks_ms()
        while not w.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                w.disconnect()
                return False
            await asyncio.sleep_ms(200)
        return True

    def rssi(self):
        try:
            return self._wlan.status("rssi") if self._wlan is not None else None
        except (OSError, ValueError):
            return None

    def start_watchdog(self, timeout_ms):
        self._wdt = self._make_wdt(timeout_ms)

    def feed_watchdog(self):
        if self._wdt is not None:
            self._wdt.feed()

    def reboot(self):
        self._reset()


def _print(text):
    print(text, end="")
