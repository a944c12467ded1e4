"""Debounced, polled buttons with a stuck-button detector.

The board gives the button names and one `pressed(name)` reader returning 1 while that button is
pressed (boards turn active-low pins around): one bound method, not a closure per button. A press
fires once, on the debounced down edge. A button held longer than `stuck_ms` is
reported stuck and ignored until it has been released.
"""

import asyncio
import time


class Buttons:
    debounce_ms = 50  # contact bounce of cheap tact switches settles well within this
    poll_ms = 10

    def __init__(self, names, pressed, on_press, on_stuck, stuck_ms=10000, ticks_ms=time.ticks_ms):
        self.pressed = pressed
        self.on_press = on_press
        self.on_stuck = on_stuck
        self.stuck_ms = stuck_ms
        self.ticks_ms = ticks_ms
        now = ticks_ms()
        # one list per button: [name, raw, state, raw changed at, went down at, stuck]
        self._buttons = []
        for name in names:
            v = 1 if pressed(name) else 0
            self._buttons.append([name, v, v, now, now, False])

    def poll(self):
        now = self.ticks_ms()
        pressed = self.pressed
        for b in self._buttons:
            name, raw_was, state, since, down_at, stuck = b
            raw = 1 if pressed(name) else 0
            if raw != raw_was:
                b[1] = raw
                b[3] = now
            elif raw != state and time.ticks_diff(now, since) >= self.debounce_ms:
                b[2] = state = raw
                if raw:
                    b[4] = down_at = now
                    if not stuck:
                        self.on_press(name)
                else:
                    b[5] = stuck = False
            if state and not stuck and time.ticks_diff(now, down_at) > self.stuck_ms:
                b[5] = True
                self.on_stuck(name)

    def stuck_names(self):
        return [b[0] for b in self._buttons if b[5]]

    async def run(self):
        while True:
            self.poll()
            await asyncio.sleep_ms(self.poll_ms)
