"""What the citizen sees and hears: display text, LEDs and a sound/voice hook per state.

The board gives three drivers: `display.show(lines, qr)` (qr: None, or (url, matrix) with matrix
(size, packed bits) as the gateway encoded it, or None: see qr_draw.py for drawing it),
`leds.set(name, on)` for LEDs "b1".."b5" (one per rating button), "ok" and "err", and
`sound(state)`. The UI only decides what to show; the drivers decide how.
"""

from flashfs import run_cold

IDLE = "idle"
PROMPT = "prompt"
THANKS = "thanks"
ALREADY = "already"
NOSESSION = "nosession"
ERROR = "error"
OFFLINE = "offline"
FULL = "full"
IDENTIFY = "identify"

# state -> the LEDs lit, as bits: 4 = the five rating buttons, 2 = ok (green), 1 = err (red)
_LED_NAMES = ("b1", "b2", "b3", "b4", "b5", "ok", "err")
_LEDS = {IDLE: 2, PROMPT: 6, THANKS: 2, ALREADY: 3, NOSESSION: 2, ERROR: 1, OFFLINE: 1, FULL: 1, IDENTIFY: 7}


class UI:
    def __init__(self, display, leds, sound, lang):
        self.display = display
        self.leds = leds
        self.sound = sound
        self.lang = None
        self._text = {}
        self.state = None
        self._lit = {}
        self.set_lang(lang)

    def set_lang(self, lang):
        """Keep the strings of `lang` only (strings.py holds every language)."""
        if lang != self.lang:
            self._text = run_cold("strings", "table", lang)
            self.lang = lang

    def show(self, state, ticket=None, qr=None, detail=None):
        self.state = state
        lines = [self._text[state]]
        if ticket:
            lines.append(self._text["ticket"] + " " + ticket)
        if detail:
            lines.append(detail)
        self._leds(_LEDS[state])
        self.display.show(lines, qr if state == PROMPT else None)
        self.sound(state)

    def forget_leds(self):
        """Something else drove the LEDs (self-test): set every one again on the next show."""
        self._lit = {}

    def blink(self, on):
        """Identify: all LEDs together."""
        self._leds(7 if on else 0)

    def _leds(self, lit):
        """Set the LEDs to `lit` (bits as in _LEDS); only those that change are driven."""
        for name in _LED_NAMES:
            on = lit & (4 if name[0] == "b" else 2 if name == "ok" else 1) != 0
            if self._lit.get(name) != on:
                self._lit[name] = on
                self.leds.set(name, on)
