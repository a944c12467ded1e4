"""The public results (公开评价结果, docs/dashboard.md "Public results"): per region, each hall's and
each unit's (institution's) month — evaluation rate, satisfaction, and how the bad reviews were
rectified — for anyone, without signing in.

What is published, and why only that (DOMAIN.md, "Reports" and "Privacy"):
- Per hall and per unit: services, ratings, evaluation rate, satisfaction, bad reviews, and the
  rectification status of bad-review cases opened that month (rectified / open / not adopted,
  once this hub has cases). 000 §21, §25: results and rectifications are released publicly.
- Per staff member (a hall's page): the staff id (工号, worn at the counter) with the two figures
  seed 001 posts each month, 办件评价率 and 满意度, and nothing else; never a name. A region that
  does not post staff results turns this off (setting `public_staff_results`).
- Never: a rater's name or phone number, a ticket or case number, a matter's or staff member's
  name, a single rating, a device, a comment. Every figure is a count or a ratio of the rollups.

Halls in no region are not published (they are not set up yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .dashboard import Month
from .stats import Figures, StatsQuery
from .store import HubStore
from .store.base import HallRecord, RegionRecord


@dataclass(frozen=True)
class Rectification:
    """Bad-review cases opened in the month: how many, rectified or explained, still open,
    not adopted after an appeal, overdue."""

    cases: int = 0
    rectified: int = 0
    open: int = 0
    not_adopted: int = 0
    overdue: int = 0

    def __add__(self, other: Rectification) -> Rectification:
        return Rectification(self.cases + other.cases, self.rectified + other.rectified, self.open + other.open,
                             self.not_adopted + other.not_adopted, self.overdue + other.overdue)

    @property
    def rate(self) -> float | None:
        counted = self.cases - self.not_adopted
        return self.rectified / counted if counted else None


@dataclass(frozen=True)
class Line:
    """One published row: a hall or a unit (or a staff id), its figures, its rectification
    status (None while the hub has no cases)."""

    key: str
    label: str
    figures: Figures
    rectification: Rectification | None = None


@dataclass
class RegionResults:
    region: RegionRecord
    halls: list[Line] = field(default_factory=list)
    units: list[Line] = field(default_factory=list)


def has_cases(store: HubStore) -> bool:
    return hasattr(store, "case_rates")


async def _rectification(store: HubStore, month: Month, **where: str) -> dict[str | None, Rectification]:
    """Per unit, the cases opened in `month` in `where` (hall= or region=): the cases branch's
    `case_rates` (hub/cases.py UnitRates)."""
    from .store.cases_sql import CaseQuery  # the cases branch (issue 7)
    rates = await store.case_rates(CaseQuery(opened_from=month.first, opened_to=month.last, **where))  # type: ignore[attr-defined]
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
            rect = None
            if has_cases(store):
                per_unit = await _rectification(store, month, hall=hall_id)
                rect = sum(per_unit.values(), Rectification())
            out.halls.append(Line(hall_id, hall_label(hall), by_hall.get(hall_id, Figures()), rect))
        unit_rect = await _rectification(store, month, region=region.region) if has_cases(store) else {}
        for row in await store.stats(StatsQuery(month.first, month.last, "month", "unit", region.region)):
            unit = row.key["unit"]
            if unit is None:  # unbound ratings and services without a unit: in the halls' figures only
                continue
            out.units.append(Line(unit, unit, row.figures, unit_rect.get(unit, Rectification())
                                  if has_cases(store) else None))
        found.append(out)
    return found


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
    rect = await _rectification(store, month, hall=hall_id) if has_cases(store) else None
    total = Figures.total(r.figures for r in units)
    unit_lines = [Line(r.key["unit"], r.key["unit"], r.figures,
                       rect.get(r.key["unit"], Rectification()) if rect is not None else None)
                  for r in units if r.key["unit"] is not None]
    staff_lines = None
    if staff:
        rows = await store.stats(StatsQuery(month.first, month.last, "month", "staff", hall=hall_id))
        staff_lines = [Line(r.key["staff_id"], r.key["staff_id"], r.figures) for r in rows
                       if r.key["staff_id"] is not None and r.figures.services]
    return HallResults(hall, region, Line(hall_id, hall_label(hall), total,
                                          sum(rect.values(), Rectification()) if rect is not None else None),
                       unit_lines, staff_lines)
