"""The day a scenario describes, drawn once from its seed: every citizen's arrival, service, staff,
matter and what they do at the device; the bursts. The runner only plays it back, so the same
scenario and seed give the same citizens whatever the machine's timing does.

Each window draws from its own stream (seed and window id), so adding a window leaves the others'
citizens as they were.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from simulator.scenario import SCORES, Scenario, Window

STAFF_PRESS_S = (0.3, 1.2)  # a staff member pressing for the citizen is quick
PHONE_S = (20.0, 90.0)  # prompt -> the phone's form sent: scan, load the page, choose, send


@dataclass(frozen=True)
class Visit:
    window: str
    ticket: str
    staff: str
    matter: str
    start_s: float  # service starts (called and accepted), seconds of opening time
    end_s: float  # finished: the device prompts
    action: str  # "press", "walk_away", "qr", "staff_press"
    score: int | None  # pressed, or sent from the phone ("qr"); None: walks away
    press_after_s: float  # from the prompt to the press, or to the phone's form sent ("qr": PHONE_S)


@dataclass(frozen=True)
class Burst:
    window: str
    at_s: float
    count: int  # 非常满意 pressed this many times in a row, each on a local session (invite key)


@dataclass(frozen=True)
class Plan:
    visits: dict[str, tuple[Visit, ...]]  # window id -> its visits in order
    bursts: dict[str, tuple[Burst, ...]]

    def as_dict(self) -> dict:
        return {"visits": {w: [asdict(v) for v in vs] for w, vs in self.visits.items()},
                "bursts": {w: [asdict(b) for b in bs] for w, bs in self.bursts.items()}}

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.visits.values())


def _weights(table: dict[int, float]) -> list[float]:
    return [table.get(s, 0.0) for s in SCORES]


def make_plan(sc: Scenario, seed: int | None = None) -> Plan:
    """The whole day (or days) drawn at once; a hall open until stopped has no whole plan (`draw`)."""
    if math.isinf(sc.open_s):
        raise ValueError("a hall open until stopped has no whole plan: draw its citizens with draw()")
    return Plan({w: tuple(visits) for w, visits in draw(sc, seed).items()}, bursts_of(sc))


def draw(sc: Scenario, seed: int | None = None) -> dict[str, Iterator[Visit]]:
    """Each window's citizens in order, drawn as they are asked for: the same ones `make_plan`
    holds, and endless for a hall open until stopped. Tickets run on across days."""
    seed = sc.seed if seed is None else seed
    staff_fraud = {f.staff: f.share for f in sc.frauds if f.kind == "staff_presses"}
    return {w.id: _window_visits(sc, w, index, seed, staff_fraud) for index, w in enumerate(sc.windows)}


def _window_visits(sc: Scenario, w: Window, index: int, seed: int,
                   staff_fraud: dict[str | None, float]) -> Iterator[Visit]:
    rng = random.Random(f"{seed}:{w.id}")
    # The phone's delay from a stream of its own: a day drawn before QR citizens rated on the
    # phone stays as it was, and the same seed gives the same phones.
    phone_rng = random.Random(f"{seed}:{w.id}:phone")
    prefix = chr(ord("A") + index % 26)
    n = 0
    arrive = free = 0.0
    rate = w.arrivals_per_hour / 3600.0
    while rate > 0:
        if n >= sc.citizens.waiting_at_opening:  # the first ones queued before the doors opened
            arrive += rng.expovariate(rate)
        start = max(arrive, free)
        if start >= sc.open_s:
            return
        end = start + rng.uniform(*w.service_s)
        free = end
        staff = rng.choice(w.staff)
        matter = rng.choice(w.matters)
        table = sc.staff[staff].ratings or w.ratings or sc.citizens.ratings
        score = rng.choices(SCORES, _weights(table))[0]
        draw = rng.random()
        press_after = rng.uniform(*sc.citizens.press_s)
        if rng.random() < staff_fraud.get(staff, 0.0):
            action, score, press_after = "staff_press", 5, rng.uniform(*STAFF_PRESS_S)
        elif draw < sc.citizens.no_rating:
            action = "walk_away"
        elif draw < sc.citizens.no_rating + sc.citizens.qr_share:
            action, press_after = "qr", phone_rng.uniform(*PHONE_S)
        else:
            action = "press"
        n += 1
        yield Visit(w.id, f"{prefix}{n:03d}", staff, matter, round(start, 3), round(end, 3), action,
                    score if action != "walk_away" else None, round(press_after, 3))


def bursts_of(sc: Scenario) -> dict[str, tuple[Burst, ...]]:
    bursts: dict[str, list[Burst]] = {w.id: [] for w in sc.windows}
    for f in sc.frauds:
        if f.kind == "burst" and f.at_s <= sc.open_s:  # past the end (--duration): not played
            assert f.window is not None
            bursts[f.window].append(Burst(f.window, f.at_s, f.count))
    return {w: tuple(sorted(b, key=lambda b: b.at_s)) for w, b in bursts.items()}
