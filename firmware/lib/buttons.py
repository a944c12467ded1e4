"""Debounced, polled buttons with a stuck-button detector.

Each pin is a callable returning 1 while the button is pressed (boards turn active-low pins
around). A press fires once, on the debounced down edge. A button held longer than `stuck_ms` is
reported stuck and ignored until it has been released.
"""

import asyncio
import time


class Buttons:
    debounce_ms = 50  # contact bounce of cheap tact switches settles well within this
    poll_ms = 10

    def __init__(self, pins, on_press, on_stuck, stuck_ms=10000, ticks_ms=time.ticks_ms):
        self.pins = pins
        self.on_press = on_press
        self.on_stuck = on_stuck
        self.stuck_ms = stuck_ms
        self.ticks_ms = ticks_ms
        now = ticks_ms()
        self._raw = {}
        self._state = {}
        self._since = {}
        self._down_at = {}
        self.stuck = {}
        for name, pin in pins.items():
            v = 1 if pin() else 0
            self._raw[name] = self._state[name] = v
            self._since[name] = self._down_at[name] = now
            self.stuck[name] = False

    def poll(self):
        now = self.ticks_ms()
        for name, pin in self.pins.items():
            raw = 1 if pin() else 0
            if raw != self._raw[name]:
                self._raw[name] = raw
                self._since[name] = now
            elif raw != self._state[name] and time.ticks_diff(now, self._since[name]) >= self.debounce_ms:
                self._state[name] = raw
                if raw:
                    self._down_at[name] = now
                    if not self.stuck[name]:
                        self.on_press(name)
                else:
                    self.stuck[name] = False
            if (self._state[name] and not self.stuck[name]
                    and time.ticks_diff(now, self._down_at[name]) > self.stuck_ms):
                self.stuck[name] = True
                self.on_stuck(name)

    def stuck_names(self):
        return [n for n, s in self.stuck.items() if s]

    async def run(self):
        while True:
            self.poll()
            await asyncio.sleep_ms(self.poll_ms)
