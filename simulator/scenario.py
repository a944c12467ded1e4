"""Scenario files for `hcp sim` (TOML): the hall, its windows, staff and matters, opening hours,
arrivals, citizen behaviour, fraud patterns and faults on a timeline.

Every time in a scenario is simulated time (the hall's clock); `speed` says how many simulated
seconds pass per real second. A bad file raises ScenarioError naming the place (`window[2].staff`)
and what is wrong, so the person who wrote it can fix it without reading this code.
docs/simulator.md describes the format.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from hcp.protocol import HALL_RE, WINDOW_RE

LANGS = ("zh-Hans", "zh-Hant", "en", "ug")  # firmware/lib/config.py LANGS
FAULT_KINDS = ("broker_restart", "hub_outage", "gateway_kill", "device_power_cut", "wifi_flap",
               "clock_jump")
FRAUD_KINDS = ("staff_presses", "burst")
DEVICE_KINDS = ("real", "lite")
PRESETS = ("jilin", "dehong", "xpcc-9th-division")  # hub/default_rules.py PRESETS
RULE_KINDS = ("calendar_days", "working_days")
SCORES = (5, 4, 3, 2, 1)
MAX_WINDOWS = 10000  # a hall's windows, `count` included (the scale bench runs 2,200)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the file, the place and the problem."""


@dataclass(frozen=True)
class Staff:
    id: str
    name: str
    ratings: dict[int, float] | None = None  # score -> weight; None: the hall's citizens


@dataclass(frozen=True)
class Matter:
    code: str
    name: str
    unit: str


@dataclass(frozen=True)
class Window:
    id: str
    device: str  # "real" (firmware under MicroPython) or "lite" (CPython)
    staff: tuple[str, ...]
    matters: tuple[str, ...]
    arrivals_per_hour: float
    service_s: tuple[float, float]  # uniform, simulated seconds
    ratings: dict[int, float] | None = None
    device_id: str = ""


@dataclass(frozen=True)
class Citizens:
    ratings: dict[int, float]
    no_rating: float  # walks away without pressing
    press_s: tuple[float, float]  # time from the prompt to the press, simulated seconds
    qr_share: float  # scans the QR code and rates on the phone instead of pressing
    waiting_at_opening: int = 0  # citizens already queued at each window when the hall first opens


@dataclass(frozen=True)
class Fraud:
    kind: str  # "staff_presses": the staff member presses for the citizen; "burst": 非常满意 in a row
    staff: str | None = None
    share: float = 0.0
    window: str | None = None
    at_s: float = 0.0  # seconds of opening time
    count: int = 0


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float  # seconds of opening time (simulated)
    for_s: float = 0.0  # how long it lasts (simulated); 0: a restart at once
    device: str | None = None  # window id for device faults
    jump_s: float = 0.0  # clock_jump: the queue system's clock moves by this much


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    day: date
    speed: float
    opening: tuple[tuple[float, float], ...]  # (open, close) in seconds since midnight
    hall: str
    hall_name: str
    lang: str
    region: str
    region_name: str
    area_code: str | None
    preset: str | None
    rule: dict[str, Any] | None
    session_ttl_s: int
    windows: tuple[Window, ...]
    staff: dict[str, Staff]
    matters: dict[str, Matter]
    citizens: Citizens
    frauds: tuple[Fraud, ...] = ()
    faults: tuple[Fault, ...] = ()
    duration_s: float | None = None  # simulate only the first part of the opening hours
    invite: bool = False
    source: str = "<scenario>"
    days: int | None = 1  # opening days played one after the other; None: until stopped (hcp demo)

    @property
    def day_s(self) -> float:
        """Simulated seconds the hall is open in one day."""
        return sum(b - a for a, b in self.opening)

    @property
    def open_s(self) -> float:
        """Simulated seconds the hall is open over its days (or `duration_s`, when shorter);
        infinite for a hall open until stopped."""
        total = self.day_s * self.days if self.days else math.inf
        return min(total, self.duration_s) if self.duration_s else total

    def day_of(self, t: float) -> int:
        """Which opening day (0: `day`) `t` seconds of opening time fall on: a day's closing
        moment is still that day, and a time past the last day is on the last day."""
        k = max(0, math.ceil(t / self.day_s) - 1)
        return min(k, self.days - 1) if self.days else k

    def clock_of(self, t: float) -> float:
        """Seconds since midnight of `day` of `t` seconds of opening time (lunch breaks skipped;
        each later opening day is a calendar day later, 86400 s more; a time past the last day's
        closing is its closing)."""
        k = self.day_of(t)
        t -= k * self.day_s
        for a, b in self.opening:
            if t <= b - a:
                return 86400 * k + a + t
            t -= b - a
        return 86400 * k + self.opening[-1][1]


# ----------------------------------------------------------------------------- value readers


class _Reader:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {where}: {problem}")

    def table(self, doc: Any, where: str, allowed: set[str], required: set[str] = set()) -> dict:
        if not isinstance(doc, dict):
            raise self.fail(where, f"must be a table, not {_kind(doc)}")
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        missing = sorted(required - set(doc))
        if missing:
            raise self.fail(where, f"missing key(s) {', '.join(missing)}")
        return doc

    def text(self, doc: dict, key: str, where: str, default: str | None = None,
             pattern: re.Pattern | None = None, max_len: int = 200) -> str:
        if key not in doc:
            if default is None:
                raise self.fail(where, f"missing key {key}")
            return default
        value = doc[key]
        if not isinstance(value, str) or not value.strip() or len(value) > max_len:
            raise self.fail(f"{where}.{key}", f"must be a non-empty string of at most {max_len} "
                                              f"characters, not {value!r}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(f"{where}.{key}", f"{value!r} is not an identifier ({pattern.pattern})")
        return value

    def number(self, doc: dict, key: str, where: str, default: float | None, lo: float, hi: float,
               integer: bool = False) -> float:
        if key not in doc:
            if default is None:
                raise self.fail(where, f"missing key {key}")
            return default
        value = doc[key]
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or not lo <= value <= hi:
            what = "an integer" if integer else "a number"
            raise self.fail(f"{where}.{key}", f"must be {what} in {lo:g}..{hi:g}, not {value!r}")
        return value

    def duration(self, value: Any, where: str, lo: float = 0.0, hi: float = 7 * 86400.0) -> float:
        """`90`, `90s`, `1.5m`, `2h`, `500ms` -> seconds."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value)):
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
        else:
            raise self.fail(where, f"{value!r} is not a duration (e.g. 90, \"90s\", \"5m\", \"2h\")")
        if not lo <= seconds <= hi:
            raise self.fail(where, f"{value!r} must be between {lo:g} s and {hi:g} s")
        return seconds

    def span(self, value: Any, where: str) -> tuple[float, float]:
        """A duration or [min, max] of durations."""
        if isinstance(value, list):
            if len(value) != 2:
                raise self.fail(where, f"must be a duration or [min, max], not a list of {len(value)}")
            lo, hi = (self.duration(v, f"{where}[{i}]") for i, v in enumerate(value))
            if lo > hi:
                raise self.fail(where, f"min {value[0]!r} is more than max {value[1]!r}")
            return lo, hi
        d = self.duration(value, where)
        return d, d

    def clock(self, value: Any, where: str) -> float:
        if not isinstance(value, str) or not (m := _CLOCK.match(value)):
            raise self.fail(where, f"{value!r} is not a time of day HH:MM or HH:MM:SS")
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3) or 0)

    def at(self, value: Any, where: str, opening: tuple[tuple[float, float], ...]) -> float:
        """When, as seconds of opening time: a time of day ("10:30") or a duration after opening
        ("+45m", "90s", 90). A time in a break is the next opening."""
        if isinstance(value, str) and _CLOCK.match(value):
            clock = self.clock(value, where)
            if not opening[0][0] <= clock <= opening[-1][1]:
                raise self.fail(where, f"{value} is outside the opening hours")
            t = 0.0
            for a, b in opening:
                if clock <= b:
                    return t + max(0.0, clock - a)
                t += b - a
        if isinstance(value, str) and value.startswith("+"):
            value = value[1:]
        return self.duration(value, where)

    def share(self, doc: dict, key: str, where: str, default: float) -> float:
        return float(self.number(doc, key, where, default, 0.0, 1.0))

    def ratings(self, value: Any, where: str) -> dict[int, float]:
        """{5 = 62, 4 = 24, ...}: weights per score (keys 1..5 as TOML strings), not all zero."""
        if not isinstance(value, dict) or not value:
            raise self.fail(where, f"must be a table of weights per score, e.g. {{5 = 60, 4 = 30, 3 = 10}}, "
                                   f"not {value!r}")
        out: dict[int, float] = {}
        for k, w in value.items():
            if k not in {"1", "2", "3", "4", "5"}:
                raise self.fail(where, f"score {k!r} is not one of 1..5")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise self.fail(f"{where}.{k}", f"weight must be a number >= 0, not {w!r}")
            out[int(k)] = float(w)
        if sum(out.values()) <= 0:
            raise self.fail(where, "all weights are 0")
        return out


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _ids(r: _Reader, value: Any, where: str, known: dict, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise r.fail(where, f"must be a {what} id or a non-empty list of them, not {value!r}")
    for v in value:
        if v not in known:
            raise r.fail(where, f"unknown {what} {v!r} (the scenario's {what}s: {', '.join(known) or 'none'})")
    return tuple(value)


# ----------------------------------------------------------------------------- the file


TOP = {"scenario", "region", "hall", "staff", "matter", "window", "citizens", "fraud", "fault"}


def load(path: Path | str) -> Scenario:
    """Read and check a scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse(text, str(path))


def parse(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and check a scenario from TOML text; ScenarioError for anything wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    r = _Reader(source)
    r.table(doc, "the file", TOP, {"scenario", "hall", "window", "staff", "matter"})

    sc = r.table(doc["scenario"], "scenario", {"name", "seed", "date", "speed", "duration"}, {"name"})
    name = r.text(sc, "name", "scenario")
    seed = int(r.number(sc, "seed", "scenario", 1, 0, 2**63 - 1, integer=True))
    day_value = sc.get("date", "2026-11-02")
    if isinstance(day_value, str):
        try:
            day_value = date.fromisoformat(day_value)
        except ValueError:
            raise r.fail("scenario.date", f"{day_value!r} is not a date YYYY-MM-DD") from None
    if type(day_value) is not date:
        raise r.fail("scenario.date", f"must be a date YYYY-MM-DD, not {day_value!r}")
    speed = float(r.number(sc, "speed", "scenario", 1.0, 0.01, 10000.0))
    duration = r.duration(sc["duration"], "scenario.duration", lo=1) if "duration" in sc else None

    hall_doc = r.table(doc["hall"], "hall", {"id", "name", "lang", "opening", "session_ttl", "invite"},
                       {"id", "opening"})
    hall = r.text(hall_doc, "id", "hall", pattern=HALL_RE, max_len=32)
    lang = r.text(hall_doc, "lang", "hall", default="zh-Hans")
    if lang not in LANGS:
        raise r.fail("hall.lang", f"{lang!r} is not a display language of the firmware ({', '.join(LANGS)})")
    opening = _opening(r, hall_doc["opening"])
    ttl = int(r.duration(hall_doc.get("session_ttl", 60), "hall.session_ttl", lo=5, hi=3600))
    invite = hall_doc.get("invite", False)
    if not isinstance(invite, bool):
        raise r.fail("hall.invite", f"must be true or false, not {invite!r}")

    region_doc = r.table(doc.get("region", {"id": "default", "name": "default", "preset": "jilin"}),
                         "region", {"id", "name", "area_code", "preset", "default_rule"}, {"id", "name"})
    region = r.text(region_doc, "id", "region", pattern=re.compile(r"[a-z0-9][a-z0-9_-]{0,63}"), max_len=64)
    preset = region_doc.get("preset")
    rule = region_doc.get("default_rule")
    if (preset is None) == (rule is None):
        raise r.fail("region", "give exactly one of preset (" + ", ".join(PRESETS) +
                     ") or default_rule = {kind, days}")
    if preset is not None and preset not in PRESETS:
        raise r.fail("region.preset", f"{preset!r} is not one of {', '.join(PRESETS)}")
    if rule is not None:
        rd = r.table(rule, "region.default_rule", {"kind", "days"}, {"kind", "days"})
        if rd["kind"] not in RULE_KINDS:
            raise r.fail("region.default_rule.kind", f"{rd['kind']!r} is not one of {', '.join(RULE_KINDS)}")
        r.number(rd, "days", "region.default_rule", None, 1, 366, integer=True)
        rule = dict(rd)
    area_code = region_doc.get("area_code")
    if area_code is not None and not (isinstance(area_code, str) and re.fullmatch(r"\d{6}", area_code)):
        raise r.fail("region.area_code", f"must be 6 digits (行政区划代码), not {area_code!r}")

    staff = _staff(r, doc["staff"])
    matters = _matters(r, doc["matter"])
    citizens = _citizens(r, doc.get("citizens", {}))
    windows = _windows(r, doc["window"], staff, matters)
    window_ids = {w.id: w for w in windows}
    frauds = tuple(_fraud(r, f, f"fraud[{i}]", staff, window_ids, opening) for i, f in enumerate(_list(r, doc.get("fraud", []), "fraud")))
    faults = tuple(_fault(r, f, f"fault[{i}]", window_ids, opening) for i, f in enumerate(_list(r, doc.get("fault", []), "fault")))
    if any(f.kind == "burst" for f in frauds) and not invite:
        raise r.fail("fraud", "a burst is pressed with the staff invite key: set hall.invite = true")
    scenario = Scenario(
        name=name, seed=seed, day=day_value, speed=speed, opening=opening, hall=hall,
        hall_name=r.text(hall_doc, "name", "hall", default=hall), lang=lang, region=region,
        region_name=r.text(region_doc, "name", "region"), area_code=area_code, preset=preset, rule=rule,
        session_ttl_s=ttl, windows=windows, staff=staff, matters=matters, citizens=citizens,
        frauds=frauds, faults=faults, duration_s=duration, invite=invite, source=source)
    for where, at in [(f"fault[{i}].at", f.at_s) for i, f in enumerate(faults)] + \
                     [(f"fraud[{i}].at", f.at_s) for i, f in enumerate(frauds) if f.kind == "burst"]:
        if at > scenario.open_s:
            raise r.fail(where, f"{at:g} s after opening is after the simulated day ends "
                                f"({scenario.open_s:g} s of opening time)")
    return scenario


def _list(r: _Reader, value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise r.fail(where, f"must be an array of tables ([[{where}]]), not {_kind(value)}")
    return value


def _opening(r: _Reader, value: Any) -> tuple[tuple[float, float], ...]:
    """[["09:00", "12:00"], ["13:30", "17:00"]] (or one pair): ordered, not overlapping."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        value = [value]
    if not isinstance(value, list) or not value:
        raise r.fail("hall.opening", f"must be [\"09:00\", \"17:00\"] or a list of such pairs, not {value!r}")
    out: list[tuple[float, float]] = []
    for i, pair in enumerate(value):
        where = f"hall.opening[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise r.fail(where, f"must be a pair [open, close], not {pair!r}")
        a, b = r.clock(pair[0], where), r.clock(pair[1], where)
        if b <= a:
            raise r.fail(where, f"closes ({pair[1]}) before it opens ({pair[0]})")
        if out and a < out[-1][1]:
            raise r.fail(where, "overlaps the period before it (list the periods in order)")
        out.append((a, b))
    return tuple(out)


def _staff(r: _Reader, value: Any) -> dict[str, Staff]:
    out: dict[str, Staff] = {}
    for i, s in enumerate(_list(r, value, "staff")):
        where = f"staff[{i}]"
        r.table(s, where, {"id", "name", "ratings"}, {"id", "name"})
        sid = r.text(s, "id", where, pattern=re.compile(r"[A-Za-z0-9_-]{1,32}"), max_len=32)
        if sid in out:
            raise r.fail(f"{where}.id", f"{sid!r} is listed twice")
        ratings = r.ratings(s["ratings"], f"{where}.ratings") if "ratings" in s else None
        out[sid] = Staff(sid, r.text(s, "name", where, max_len=64), ratings)
    if not out:
        raise r.fail("staff", "the hall needs at least one staff member")
    return out


def _matters(r: _Reader, value: Any) -> dict[str, Matter]:
    out: dict[str, Matter] = {}
    for i, m in enumerate(_list(r, value, "matter")):
        where = f"matter[{i}]"
        r.table(m, where, {"code", "name", "unit"}, {"code", "name", "unit"})
        code = r.text(m, "code", where, pattern=re.compile(r"[A-Za-z0-9_-]{1,64}"), max_len=64)
        if code in out:
            raise r.fail(f"{where}.code", f"{code!r} is listed twice")
        out[code] = Matter(code, r.text(m, "name", where), r.text(m, "unit", where))
    if not out:
        raise r.fail("matter", "the hall needs at least one matter")
    return out


def _citizens(r: _Reader, value: Any) -> Citizens:
    c = r.table(value, "citizens", {"ratings", "no_rating", "press", "qr_share", "waiting_at_opening"})
    ratings = r.ratings(c["ratings"], "citizens.ratings") if "ratings" in c else \
        {5: 62.0, 4: 24.0, 3: 8.0, 2: 4.0, 1: 2.0}
    no_rating = r.share(c, "no_rating", "citizens", 0.12)
    qr = r.share(c, "qr_share", "citizens", 0.0)
    if no_rating + qr > 1:
        raise r.fail("citizens", f"no_rating ({no_rating:g}) + qr_share ({qr:g}) is more than 1")
    press = r.span(c.get("press", ["2s", "15s"]), "citizens.press")
    waiting = int(r.number(c, "waiting_at_opening", "citizens", 0, 0, 100, integer=True))
    return Citizens(ratings, no_rating, press, qr, waiting)


def _windows(r: _Reader, value: Any, staff: dict, matters: dict) -> tuple[Window, ...]:
    out: list[Window] = []
    seen: set[str] = set()
    for i, w in enumerate(_list(r, value, "window")):
        where = f"window[{i}]"
        r.table(w, where, {"id", "count", "device", "staff", "matters", "arrivals_per_hour", "service",
                           "ratings"}, {"id", "staff"})
        wid = w.get("id")
        if isinstance(wid, int) and not isinstance(wid, bool):
            wid = str(wid)
            w = {**w, "id": wid}
        wid = r.text(w, "id", where, pattern=WINDOW_RE, max_len=16)
        count = int(r.number(w, "count", where, 1, 1, MAX_WINDOWS, integer=True))
        if count > 1 and not wid.isdigit():
            raise r.fail(f"{where}.id", f"with count = {count} the id is the first window's number "
                                        f"(windows id, id+1, ...), not {wid!r}")
        device = w.get("device", "real")
        if device not in DEVICE_KINDS:
            raise r.fail(f"{where}.device", f"{device!r} is not one of {', '.join(DEVICE_KINDS)}")
        window_staff = _ids(r, w["staff"], f"{where}.staff", staff, "staff")
        window_matters = _ids(r, w["matters"], f"{where}.matters", matters, "matter") if "matters" in w \
            else tuple(matters)
        arrivals = float(r.number(w, "arrivals_per_hour", where, 10.0, 0.0, 3600.0))
        service = r.span(w.get("service", ["3m", "10m"]), f"{where}.service")
        ratings = r.ratings(w["ratings"], f"{where}.ratings") if "ratings" in w else None
        for k in range(count):
            one = str(int(wid) + k) if count > 1 else wid
            if not WINDOW_RE.fullmatch(one):
                raise r.fail(f"{where}.count", f"window {one!r} is not a window id ({WINDOW_RE.pattern})")
            if one in seen:
                raise r.fail(f"{where}.id", f"window {one!r} is listed twice")
            if len(out) >= MAX_WINDOWS:
                raise r.fail(where, f"more than {MAX_WINDOWS} windows in the hall")
            seen.add(one)
            out.append(Window(
                id=one, device=device, staff=window_staff, matters=window_matters,
                arrivals_per_hour=arrivals, service_s=service, ratings=ratings,
                device_id=f"D{one}" if len(one) < 16 else f"D{len(out) + 1:03d}"))
    if not out:
        raise r.fail("window", "the hall needs at least one window ([[window]])")
    return tuple(out)


def _fraud(r: _Reader, f: Any, where: str, staff: dict, windows: dict, opening: tuple) -> Fraud:
    r.table(f, where, {"kind", "staff", "share", "window", "at", "count"}, {"kind"})
    kind = f["kind"]
    if kind not in FRAUD_KINDS:
        raise r.fail(f"{where}.kind", f"{kind!r} is not one of {', '.join(FRAUD_KINDS)}")
    if kind == "staff_presses":
        r.table(f, where, {"kind", "staff", "share"}, {"staff", "share"})
        sid = _ids(r, f["staff"], f"{where}.staff", staff, "staff")[0]
        return Fraud(kind, staff=sid, share=r.share(f, "share", where, 0.0))
    r.table(f, where, {"kind", "window", "at", "count"}, {"window", "at", "count"})
    wid = str(f["window"]) if isinstance(f["window"], int) else f["window"]
    if wid not in windows:
        raise r.fail(f"{where}.window", f"unknown window {wid!r}")
    return Fraud(kind, window=wid, at_s=r.at(f["at"], f"{where}.at", opening),
                 count=int(r.number(f, "count", where, None, 1, 1000, integer=True)))


def _fault(r: _Reader, f: Any, where: str, windows: dict, opening: tuple) -> Fault:
    r.table(f, where, {"kind", "at", "for", "window", "jump"}, {"kind", "at"})
    kind = f["kind"]
    if kind not in FAULT_KINDS:
        raise r.fail(f"{where}.kind", f"{kind!r} is not one of {', '.join(FAULT_KINDS)}")
    at = r.at(f["at"], f"{where}.at", opening)
    lasts = r.duration(f.get("for", 0), f"{where}.for")
    device = None
    if kind in ("device_power_cut", "wifi_flap"):
        if "window" not in f:
            raise r.fail(where, f"a {kind} needs the window whose device it hits (window = \"1\")")
        device = str(f["window"]) if isinstance(f["window"], int) else f["window"]
        if device not in windows:
            raise r.fail(f"{where}.window", f"unknown window {device!r}")
    elif "window" in f:
        raise r.fail(f"{where}.window", f"a {kind} hits no single window")
    jump = 0.0
    if kind == "clock_jump":
        value = f.get("jump")
        if value is None:
            raise r.fail(where, "a clock_jump needs jump = \"+10m\" (or \"-10m\")")
        if not isinstance(value, str) or value[:1] not in "+-" or not value[1:]:
            raise r.fail(f"{where}.jump", f"must be a signed duration such as \"+10m\" or \"-30s\", not {value!r}")
        jump = r.duration(value[1:], f"{where}.jump") * (-1 if value[0] == "-" else 1)
    elif "jump" in f:
        raise r.fail(f"{where}.jump", "only a clock_jump has a jump")
    return Fault(kind, at_s=at, for_s=lasts, device=device, jump_s=jump)
