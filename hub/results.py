"""The public results (公开评价结果, docs/dashboard.md "Public results"): per region, each hall's and
each unit's (institution's) month — evaluation rate, satisfaction, and how the bad reviews were
rectified — for anyone, without signing in.

What is published, and why only that (DOMAIN.md, "Reports" and "Privacy"):
- Per hall and per unit: services, ratings, evaluation rate, satisfaction, bad reviews, and the
  rectification status of bad-review cases opened that month (rectified / open / not adopted).
  000 §21, §25: results and rectifications are released publicly.
- Per staff member (a hall's page): the staff id (工号, worn at the counter) with the two figures
  seed 001 posts each month, 办件评价率 and 满意度, and nothing else; never a name. A region that
  does not post staff results turns this off (setting `public_staff_results`).
- Never: a rater's name or phone number, a ticket or case number, a matter's or staff member's
  name, a single rating, a device, a comment. Every figure is a count or a ratio of the rollups.

Halls in no region are not published (they are not set up yet).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .dashboard import Month
from .stats import Figures, StatsQuery
from .store import HubStore
from .store.base import HallRecord, RegionRecord
from .store.cases_sql import CaseQuery


@dataclass(frozen=True)
class Rectification:
    """Bad-review cases opened in the month: how many, rectified or explained, still open (not
    closed), not adopted after an appeal, overdue."""

    cases: int = 0
    rectified: int = 0
    open: int = 0
    not_adopted: int = 0
    overdue: int = 0

    def __add__(self, other: Rectification) -> Rectification:
        return Rectification(self.cases + other.cases, self.rectified + other.rectified, self.open + other.open,
                             self.not_adopted + other.not_adopted, self.overdue + other.overdue)

    @property
    def in_progress(self) -> int:
        """Cases neither rectified (or explained) nor decided not adopted: what the public page
        shows as 整改中, so that each case is in exactly one of its three columns (`open` also
        counts a rectified case still waiting for its satisfaction callback)."""
        return self.cases - self.rectified - self.not_adopted

    @property
    def rate(self) -> float | None:
        counted = self.cases - self.not_adopted
        return self.rectified / counted if counted else None


@dataclass(frozen=True)
class Line:
    """One published row: a hall or a unit (or a staff id), its figures, its rectification
    status (None for a staff id: cases are a unit's)."""

    key: str
    label: str
    figures: Figures
    rectification: Rectification | None = None


@dataclass
class RegionResults:
    region: RegionRecord
    halls: list[Line] = field(default_factory=list)
    units: list[Line] = field(default_factory=list)


async def _rectification(store: HubStore, month: Month, halls: Iterable[str]) -> dict[str | None, Rectification]:
    """Per unit, the cases opened in `month` in `halls`: the cases store's `case_rates`
    (hub/cases.py UnitRates). A region's are its halls' now, not the cases' region when they
    opened, as its statistics are (hub/stats.py): a hall moved takes its history along."""
    query = CaseQuery(opened_from=month.first, opened_to=month.last, scope_halls=frozenset(halls))
    rates = await store.case_rates(query)
    return {r.unit: Rectification(r.cases, r.rectified, r.open, r.not_adopted, r.overdue) for r in rates}


async def month_results(store: HubStore, month: Month) -> list[RegionResults]:
    """Every region's halls and units for `month` (regions and halls by id, units by name)."""
    found = []
    for region in await store.list_regions():
        halls = {h.hall: h for h in await store.halls(region=region.region)}
        if not halls:
            continue
        out = RegionResults(region)
        by_hall = {r.key["hall"]: r.figures for r in await store.stats(
            StatsQuery(month.first, month.last, "month", "hall", region.region))}
        for hall_id, hall in halls.items():
            rect = sum((await _rectification(store, month, [hall_id])).values(), Rectification())
            out.halls.append(Line(hall_id, hall_label(hall), by_hall.get(hall_id, Figures()), rect))
        out.units = _unit_lines(await store.stats(StatsQuery(month.first, month.last, "month", "unit", region.region)),
                                await _rectification(store, month, halls))
        found.append(out)
    return found


def _unit_lines(rows: list, rect: dict[str | None, Rectification]) -> list[Line]:
    """Per unit, by name: its figures (the stats `rows`) and its cases' status. A unit with cases
    opened in the month but no figures in it (its ratings reached the hub late, and a case opens
    when its rating arrives) is listed with no figures, so that the units' cases add up to the
    halls'. Unbound ratings, services and cases without a unit are in the halls' rows only."""
    by_unit = {r.key["unit"]: r.figures for r in rows if r.key["unit"] is not None}
    units = sorted(set(by_unit) | {u for u in rect if u is not None})
    return [Line(u, u, by_unit.get(u, Figures()), rect.get(u, Rectification())) for u in units]


def hall_label(hall: HallRecord) -> str:
    return f"{hall.name} ({hall.hall})" if hall.name else hall.hall


@dataclass
class HallResults:
    hall: HallRecord
    region: RegionRecord
    total: Line
    units: list[Line]
    staff: list[Line] | None  # None: the region does not publish staff results


async def hall_results(store: HubStore, hall_id: str, month: Month, *, staff: bool) -> HallResults | None:
    """One published hall's month: total, per unit, and per staff id when `staff`. None for a hall
    in no region."""
    region = await store.hall_region(hall_id)
    if region is None:
        return None
    hall = next(h for h in await store.halls(region=region.region) if h.hall == hall_id)
    units = await store.stats(StatsQuery(month.first, month.last, "month", "unit", hall=hall_id))
    rect = await _rectification(store, month, [hall_id])
    total = Figures.total(r.figures for r in units)
    unit_lines = _unit_lines(units, rect)
    staff_lines = None
    if staff:
        rows = await store.stats(StatsQuery(month.first, month.last, "month", "staff", hall=hall_id))
        staff_lines = [Line(r.key["staff_id"], r.key["staff_id"], r.figures) for r in rows
                       if r.key["staff_id"] is not None and r.figures.services]
    return HallResults(hall, region, Line(hall_id, hall_label(hall), total, sum(rect.values(), Rectification())),
                       unit_lines, staff_lines)
