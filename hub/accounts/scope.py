"""Scope checks that need the store: a hall's region. `can_see` (model.py) decides once the
record's region, hall and unit are known; these look the region up for a hall."""

from __future__ import annotations

from .model import Principal, can_see


def _store(principal: Principal):
    if principal.store is None:
        raise RuntimeError("this principal has no store to look halls up in")
    return principal.store


async def can_see_hall(principal: Principal, hall: str, *, unit: str | None = None) -> bool:
    """Is `hall` (and, if given, `unit` there) in the principal's scope? The hall's region is
    looked up only when the principal is limited to a region; a hall in no region is then out."""
    if principal.is_admin:
        return True
    region = None
    if principal.scope.region is not None:
        record = await _store(principal).hall_region(hall)
        region = record.region if record is not None else None
    return can_see(principal, region=region, hall=hall, unit=unit)


async def visible_halls(principal: Principal) -> list[str] | None:
    """The ids of the halls in the principal's scope, sorted; None when no region or hall limits
    it (every hall, also those not in any region). A unit limit is not applied here: it narrows
    the records within each hall (`can_see(..., unit=)`, `scope_filter()["unit"]`)."""
    scope = principal.scope
    if principal.is_admin or (scope.region is None and scope.hall is None):
        return None
    if scope.region is None:
        return [scope.hall]  # type: ignore[list-item]
    halls = [h.hall for h in await _store(principal).halls(region=scope.region)]
    return [h for h in halls if scope.hall is None or h == scope.hall]


async def visible_regions(principal: Principal) -> frozenset[str] | None:
    """The region ids in the principal's scope: its region, or its hall's region now (none for a
    hall in no region); None when neither limits it (every region)."""
    scope = principal.scope
    if principal.is_admin or (scope.region is None and scope.hall is None):
        return None
    if scope.region is not None:
        return frozenset({scope.region})
    record = await _store(principal).hall_region(scope.hall)  # type: ignore[arg-type]
    return frozenset({record.region}) if record is not None else frozenset()
