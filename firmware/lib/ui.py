"""What the citizen sees and hears: display text, LEDs and a sound/voice hook per state.

The board gives three drivers: `display.show(lines, qr)` (qr: None, or (url, matrix) with matrix
(size, packed bits) as the gateway encoded it, or None: see qr_draw.py for drawing it),
`leds.set(name, on)` for LEDs "b1".."b5" (one per rating button), "ok" and "err", and
`sound(state)`. The UI only decides what to show; the drivers decide how.
"""

from strings import text

IDLE = "idle"
PROMPT = "prompt"
THANKS = "thanks"
ALREADY = "already"
NOSESSION = "nosession"
ERROR = "error"
OFFLINE = "offline"
FULL = "full"
IDENTIFY = "identify"

# state -> (button LEDs on, ok LED, err LED)
_LEDS = {
    IDLE: (False, True, False),
    PROMPT: (True, True, False),
    THANKS: (False, True, False),
    ALREADY: (False, True, True),
    NOSESSION: (False, True, False),
    ERROR: (False, False, True),
    OFFLINE: (False, False, True),
    FULL: (False, False, True),
    IDENTIFY: (True, True, True),
}


class UI:
    def __init__(self, display, leds, sound, lang):
        self.display = display
        self.leds = leds
        self.sound = sound
        self.lang = lang
        self.state = None
        self._lit = {}

    def _led(self, name, on):
        if self._lit.get(name) != on:
            self._lit[name] = on
            self.leds.set(name, on)

    def show(self, state, ticket=None, qr=None, detail=None):
        self.state = state
        lines = [text(self.lang, state)]
        if ticket:
            lines.append(text(self.lang, "ticket") + " " + ticket)
        if detail:
            lines.append(detail)
        buttons, ok, err = _LEDS[state]
        for i in range(1, 6):
            self._led("b%d" % i, buttons)
        self._led("ok", ok)
        self._led("err", err)
        self.display.show(lines, qr if state == PROMPT else None)
        self.sound(state)

    def forget_leds(self):
        """Something else drove the LEDs (self-test): set every one again on the next show."""
        self._lit = {}

    def blink(self, on):
        """Identify: all LEDs together."""
        for i in range(1, 6):
            self._led("b%d" % i, on)
        self._led("ok", on)
        self._led("err", on)
