"""Counter gaps: the range arithmetic behind `rating_counters`, `rating_gaps` and
`rating_gap_holes` (docs/hub.md, "Counter gaps"). Pure, shared by every store backend.

Every device numbers its ratings 1, 2, 3, … (docs/protocol.md, "The per-device counter"), so a
number below the highest one stored (`high`) that is not stored is a rating the hub has not
received: lost, or still on its way. The model, per device:
- `high`: the highest accepted `n` (0 before the first).
- A **gap** is opened when a rating `n` arrives above `high + 1`: the numbers `high+1 .. n-1`, all
  missing at that moment. Its extent never changes afterwards, so it is the record of what was
  missing and when it was seen; `missing` counts the numbers of it still not received, and the gap
  is closed (`closed_at`) when that reaches 0. Gaps of one device never overlap (each starts above
  the `high` of its time), so `(device, first)` names one.
- A **hole** is a run of numbers still missing, inside one gap. A rating that arrives inside a hole
  shrinks it (at an end), splits it in two (inside), or removes it (its only number).
Invariant: the holes of a device are exactly the numbers `1..high` not received, and each gap's
`missing` is the size of its holes. Only ranges are kept, never one row per number: a counter that
jumps by 10^9 is one gap and one hole.

Only accepted ratings are counted: a duplicate is already stored, a rejected rating is not one.
A number at or below `high` that is in no hole (already received) changes nothing; ingest never
passes one (decide answers `duplicate`), so it is logged as a sign the tables disagree.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hole:
    """Numbers `first..last` of a device, all missing; part of the gap that starts at `gap`."""

    first: int
    last: int
    gap: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Gap:
    """A gap as opened (`first..last`, never changed), with what is still missing of it.

    `hall` is the hall of the rating that revealed it; `opened_at` the hub's time then. `closed_at`
    is set when its last missing number arrived."""

    device: str
    first: int
    last: int
    hall: str
    missing: int
    opened_at: str
    closed_at: str | None = None

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    @property
    def open(self) -> bool:
        return self.closed_at is None


def split(hole: Hole, n: int) -> tuple[Hole, ...]:
    """What is left of `hole` once `n`, one of its numbers, arrived: no hole, one, or two."""
    if not hole.first <= n <= hole.last:
        raise ValueError(f"{n} is not in {hole.first}..{hole.last}")
    pieces = []
    if n > hole.first:
        pieces.append(Hole(hole.first, n - 1, hole.gap))
    if n < hole.last:
        pieces.append(Hole(n + 1, hole.last, hole.gap))
    return tuple(pieces)


def missing_below(high: int, received: Iterable[int]) -> list[tuple[int, int]]:
    """The numbers 1..high not in `received`, as ascending (first, last) ranges (for checks)."""
    ranges, expected = [], 1
    for n in sorted({n for n in received if 1 <= n <= high}):
        if n > expected:
            ranges.append((expected, n - 1))
        expected = n + 1
    if expected <= high:
        ranges.append((expected, high))
    return ranges


@dataclass(frozen=True)
class GapChanges:
    """What one batch changes, for a backend to write in the batch's transaction."""

    highs: dict[str, int]  # device -> its new high (devices whose high rose)
    opened: list[Gap]  # new gaps, as they end the batch (a number of one may have arrived already)
    updated: list[Gap]  # stored gaps whose `missing` (and maybe `closed_at`) changed
    holes_removed: list[tuple[str, int]]  # (device, first) of stored holes that are gone or changed
    holes_added: list[tuple[str, Hole]]  # holes to store (new, or the pieces of a changed one)

    def __bool__(self) -> bool:
        return bool(self.highs or self.opened or self.updated or self.holes_removed or self.holes_added)


class _Device:
    """One device's counter, its holes (those the batch loaded or made) and their gaps."""

    def __init__(self, high: int, holes: Iterable[Hole]):
        self.high = high
        self.holes: dict[int, Hole] = {h.first: h for h in holes}
        self.firsts = sorted(self.holes)

    def hole_at(self, n: int) -> Hole | None:
        i = bisect.bisect_right(self.firsts, n) - 1
        if i < 0:
            return None
        hole = self.holes[self.firsts[i]]
        return hole if n <= hole.last else None

    def remove(self, hole: Hole) -> None:
        del self.holes[hole.first]
        self.firsts.pop(bisect.bisect_left(self.firsts, hole.first))

    def add(self, hole: Hole) -> None:
        self.holes[hole.first] = hole
        bisect.insort(self.firsts, hole.first)


class GapBook:
    """One batch's view of the counters and holes its ratings touch.

    Give it each device's stored `high` (absent: no rating yet) and, for every accepted rating at or
    below it, the stored hole holding that number with the hole's gap; then `arrive` each accepted
    rating in order, and write `changes()`. Holes and gaps the batch does not touch need not be
    loaded: a number above the stored high can only fall into a hole this batch opened.
    """

    def __init__(self, highs: Mapping[str, int], holes: Mapping[str, Iterable[Hole]] | None = None,
                 gaps: Iterable[Gap] = ()):
        holes = holes or {}
        self._stored_highs = dict(highs)
        self._devices = {device: _Device(high, holes.get(device, ())) for device, high in highs.items()}
        for device in holes:
            if device not in self._devices:
                raise ValueError(f"holes of {device}, which has no high")
        self._stored_holes = {(device, h.first): h for device, hs in holes.items() for h in hs}
        self._stored_gaps = {(g.device, g.first): g for g in gaps}
        self._gaps = dict(self._stored_gaps)
        for (device, _), hole in self._stored_holes.items():
            if (device, hole.gap) not in self._gaps:
                raise ValueError(f"hole {device}:{hole.first}..{hole.last} without its gap {hole.gap}")

    def high(self, device: str) -> int:
        known = self._devices.get(device)
        return known.high if known is not None else 0

    def arrive(self, device: str, n: int, hall: str, at: str) -> None:
        """Rating `n` of `device` was accepted (in `hall`, at hub time `at`)."""
        if n < 1:
            raise ValueError(f"counter {n} < 1")
        state = self._devices.setdefault(device, _Device(0, ()))
        if n > state.high:
            if n > state.high + 1:
                gap = Gap(device, state.high + 1, n - 1, hall, n - 1 - state.high, at)
                self._gaps[(device, gap.first)] = gap
                state.add(Hole(gap.first, gap.last, gap.first))
            state.high = n
            return
        hole = state.hole_at(n)
        if hole is None:  # received already: decide answers a repeat `duplicate`, so never here
            log.warning("rating %s:%d is at or below the counter's high %d but in no hole: "
                        "already received; the counter is left as it is", device, n, state.high)
            return
        state.remove(hole)
        for piece in split(hole, n):
            state.add(piece)
        gap = self._gaps[(device, hole.gap)]
        missing = gap.missing - 1
        self._gaps[(device, hole.gap)] = replace(gap, missing=missing,
                                                 closed_at=at if missing == 0 else None)

    def changes(self) -> GapChanges:
        highs = {device: state.high for device, state in self._devices.items()
                 if state.high > self._stored_highs.get(device, 0)}
        opened = [g for key, g in self._gaps.items() if key not in self._stored_gaps]
        updated = [g for key, g in self._gaps.items()
                   if key in self._stored_gaps and g != self._stored_gaps[key]]
        now = {(device, first): hole for device, state in self._devices.items()
               for first, hole in state.holes.items()}
        removed = [key for key, hole in self._stored_holes.items() if now.get(key) != hole]
        added = [(key[0], hole) for key, hole in now.items() if self._stored_holes.get(key) != hole]
        return GapChanges(highs, sorted(opened, key=_gap_key), sorted(updated, key=_gap_key),
                          sorted(removed), sorted(added, key=lambda item: (item[0], item[1].first)))


def _gap_key(gap: Gap) -> tuple[str, int]:
    return (gap.device, gap.first)
