"""The data behind the operator dashboard (docs/dashboard.md): plain functions of the store and of
who is looking (`Viewer`), so the pages stay thin and each panel is tested on both backends.

- Devices: halls → windows → devices, presence and problems (the gateway's open alerts: offline,
  stuck button, …; the hub's counter gaps and tampering alerts), from the store's overview reads
  (`list_devices`, `open_gaps`, `hall_alerts`): one query each, whatever the number of devices.
- Figures: evaluation rate and satisfaction by hall, window, staff and matter, and ratings per
  day and level, from the statistics rollups (`HubStore.stats`, hub/stats.py): the same numbers
  as GET /api/v1/stats, never a recount of raw rows.
- The ledger: the last verification the dashboard ran (stored, with its time) and a job that runs
  one in the background (`LedgerChecker`); a full verify is never run per page view.

Scope: a `Viewer` sees the halls of its regions (None: every region) and, if given, only its
halls. The pages make one from the signed-in person (hub/web/dashboard.py `viewer_of`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from .stats import CHINA, Figures, StatsQuery, StatsRow, sort_rows
from .store import HubStore
from .store.base import AlertRecord, DeviceGaps, DeviceRecord, StoredDeviceAlert
from .store.dashboard_sql import LedgerCheck

log = logging.getLogger("hub.dashboard")

TARGET = 0.8  # evaluation rate target: "力争实现评价率要达到80%以上" (DOMAIN.md, "Reports"; seed 001)
TAMPERING_SHOWN = 500  # the newest tampering alerts looked at for the devices panel
ALERT_KINDS = {  # the gateway's device alerts (gateway/alerts.py) and the hub's own, as people read them
    "offline": "offline 离线", "stuck_button": "stuck button 按键卡住", "counter_gap": "counter gap 计数缺口",
    "outbox_growing": "outbox growing 积压", "clock_offset": "clock offset 时钟偏差",
    "reboots": "reboots 频繁重启", "hub_gap": "ratings missing at the hub 评价缺失",
    "tampering": "tampering 篡改"}
_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


# ---------------------------------------------------------------------------- who is looking


@dataclass(frozen=True)
class Viewer:
    """Who is looking: `user` (a login; `admin-token` for the admin token), `role`, and the
    scope: `regions` (None: every region, and the halls in none) and `halls` (None: every hall of
    those regions). `can_act`: may start jobs (an auditor reads only). `unit`: a scope limited to
    one unit, whose bulletin is all such a person reads here."""

    user: str
    role: str
    regions: frozenset[str] | None = None
    halls: frozenset[str] | None = None
    can_act: bool = True
    unit: str | None = None  # a scope of one unit: its bulletin only (the pages check)

    @property
    def everything(self) -> bool:
        return self.regions is None and self.halls is None

    def sees(self, hall: str, region: str | None) -> bool:
        if self.regions is not None and region not in self.regions:
            return False
        return self.halls is None or hall in self.halls


ADMIN = Viewer("admin-token", "admin")


@dataclass(frozen=True)
class HallInfo:
    hall: str
    name: str | None
    region: str | None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.hall})" if self.name else self.hall


async def visible_halls(store: HubStore, viewer: Viewer) -> list[HallInfo]:
    """The halls `viewer` sees: those put into a region, and (for a viewer of every region) those
    with registered devices but no region yet; by id."""
    found = {h.hall: HallInfo(h.hall, h.name, h.region) for h in await store.halls()}
    if viewer.regions is None:
        for d in await store.list_devices():
            found.setdefault(d.hall, HallInfo(d.hall, None, d.region))
    return sorted((h for h in found.values() if viewer.sees(h.hall, h.region)), key=lambda h: h.hall)


# ---------------------------------------------------------------------------- months


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """`YYYY-MM`; ValueError otherwise."""
        m = _MONTH.fullmatch(text)
        if m is None:
            raise ValueError("a month is written YYYY-MM")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @classmethod
    def current(cls, now: datetime | None = None) -> Month:
        """This month in China."""
        return cls.of((now or datetime.now(UTC)).astimezone(CHINA).date())

    @property
    def first(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last(self) -> date:
        return self.next().first - timedelta(days=1)

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


# ---------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class Problem:
    kind: str  # an ALERT_KINDS key
    detail: str | None = None
    since: str | None = None

    @property
    def label(self) -> str:
        return ALERT_KINDS.get(self.kind, self.kind)


@dataclass(frozen=True)
class DeviceView:
    device: str
    window: str
    presence: str  # online | offline | unknown | retired
    last_seen: str | None
    firmware: str | None
    problems: tuple[Problem, ...]


@dataclass
class WindowView:
    window: str
    devices: list[DeviceView] = field(default_factory=list)


@dataclass
class HallDevices:
    hall: HallInfo
    windows: list[WindowView] = field(default_factory=list)

    @property
    def devices(self) -> list[DeviceView]:
        return [d for w in self.windows for d in w.devices]

    def count(self, presence: str) -> int:
        return sum(d.presence == presence for d in self.devices)

    @property
    def with_problems(self) -> list[DeviceView]:
        return [d for d in self.devices if d.problems or d.presence == "offline"]


def window_order(window: str) -> tuple:
    """Windows as people number them: 2 before 10, then text."""
    return (0, int(window), "") if window.isdigit() else (1, 0, window)


def _tampered(alerts: Iterable[AlertRecord]) -> dict[str, list[AlertRecord]]:
    """Tampering alerts by device (their key is the rating's `rating:{device}:{n}`)."""
    by_device: dict[str, list[AlertRecord]] = {}
    for a in alerts:
        parts = a.key.split(":")
        if len(parts) == 3 and parts[0] == "rating":
            by_device.setdefault(parts[1], []).append(a)
    return by_device


def device_problems(d: DeviceRecord, gaps: DeviceGaps | None, tampering: Sequence[AlertRecord],
                    open_alerts: Sequence[StoredDeviceAlert] = ()) -> tuple[Problem, ...]:
    """What is wrong with a device: each kind of its open gateway alerts (with the newest one's
    detail and time when `open_alerts` has them), the hub's counter gaps, tampering alerts."""
    newest: dict[str, StoredDeviceAlert] = {}
    for a in open_alerts:
        if a.device == d.device and a.alert not in newest:
            newest[a.alert] = a  # newest alert id first
    found = []
    if d.presence != "retired":
        for kind in d.alerts_open:
            a = newest.get(kind)
            found.append(Problem(kind, a.detail if a else None, a.raised_at if a else None))
    if gaps is not None:
        found.append(Problem("hub_gap", f"{gaps.missing} rating(s) missing in {gaps.gaps} gap(s)", gaps.since))
    if tampering:
        found.append(Problem("tampering", f"{len(tampering)} conflicting rating(s), newest "
                                          f"{tampering[0].key.split(':', 1)[1]}", tampering[0].at))
    return tuple(found)


async def device_overview(store: HubStore, viewer: Viewer, *, hall: str | None = None,
                          details: bool = False) -> list[HallDevices]:
    """Every device `viewer` sees (of `hall` only, if given), by hall and window, with presence
    and problems. `details`: each open alert's detail and time (one more read per hall)."""
    halls = {h.hall: h for h in await visible_halls(store, viewer)}
    if hall is not None:
        halls = {hall: halls[hall]} if hall in halls else {}
    if not halls:
        return []
    devices = await store.list_devices(hall=hall)
    gaps = await store.open_gaps(hall=hall)
    tampering = _tampered(await store.hall_alerts(halls=None if viewer.everything and hall is None else list(halls),
                                                  kind="tampering", limit=TAMPERING_SHOWN))
    open_alerts: dict[str, list[StoredDeviceAlert]] = {}
    if details:
        for h in halls:
            open_alerts[h] = await store.device_alerts(hall=h, state="raised", limit=1000)
    views: dict[str, HallDevices] = {h: HallDevices(info) for h, info in halls.items()}
    windows: dict[tuple[str, str], WindowView] = {}
    for d in devices:
        view = views.get(d.hall)
        if view is None:
            continue
        h = d.health
        dv = DeviceView(d.device, d.window, d.presence, h.received_at if h else None,
                        str(h.health.get("fw")) if h and h.health.get("fw") is not None else None,
                        device_problems(d, gaps.get(d.device), tampering.get(d.device, ()),
                                        open_alerts.get(d.hall, ())))
        w = windows.get((d.hall, d.window))
        if w is None:
            w = windows[(d.hall, d.window)] = WindowView(d.window)
            view.windows.append(w)
        w.devices.append(dv)
    for view in views.values():
        view.windows.sort(key=lambda w: window_order(w.window))
    return [views[h] for h in sorted(views)]


# ---------------------------------------------------------------------------- figures


def _selectors(viewer: Viewer, hall: str | None, halls: Sequence[HallInfo]) -> list[tuple[str | None, str | None]]:
    """(region, hall) filters of StatsQuery covering what `viewer` sees (of `hall` only, if given)."""
    if hall is not None:
        return [(None, hall)]
    if viewer.everything:
        return [(None, None)]
    if viewer.halls is None and viewer.regions is not None:
        return [(region, None) for region in sorted(viewer.regions)]
    return [(None, h.hall) for h in halls]


async def figures(store: HubStore, viewer: Viewer, first: date, last: date, *, period: str = "month",
                  group: str | None = None, hall: str | None = None) -> list[StatsRow]:
    """The rollups' figures (GET /api/v1/stats's rows) for what `viewer` sees, or one hall of it:
    days first..last, per `period`, grouped by `group`. A scope of several regions or halls is one
    query each; rows with the same key (a staff member in two of them) are summed."""
    halls = [] if viewer.everything else await visible_halls(store, viewer)
    if hall is not None and not viewer.everything and hall not in {h.hall for h in halls}:
        return []
    selectors = _selectors(viewer, hall, halls)
    merged: dict[tuple, StatsRow] = {}
    for region, one_hall in selectors:
        for row in await store.stats(StatsQuery(first, last, period, group, region, one_hall)):
            key = (row.period, tuple(row.key.items()))
            seen = merged.get(key)
            merged[key] = row if seen is None else StatsRow(row.period, row.key, seen.figures + row.figures)
    return sort_rows(merged.values())


def total(rows: Iterable[StatsRow]) -> Figures:
    return Figures.total(r.figures for r in rows)


def key_label(row: StatsRow) -> str:
    """A row's key as people read it: `H1 / 7` for a window, `–` for none."""
    values = [v for v in row.key.values()]
    return " / ".join("–" if v is None else v for v in values) if values else row.period


@dataclass(frozen=True)
class Breakdown:
    """One table of the dashboard: the rows of a group and their total, for a month."""

    group: str
    rows: list[StatsRow]
    total: Figures

    def below_target(self) -> list[StatsRow]:
        return [r for r in self.rows if r.figures.evaluation_rate is not None
                and r.figures.evaluation_rate < TARGET]


async def breakdown(store: HubStore, viewer: Viewer, month: Month, group: str,
                    hall: str | None = None) -> Breakdown:
    rows = await figures(store, viewer, month.first, month.last, period="month", group=group, hall=hall)
    return Breakdown(group, rows, total(rows))


async def daily(store: HubStore, viewer: Viewer, month: Month, hall: str | None = None) -> list[tuple[date, Figures]]:
    """Every day of the month (none left out) with its figures."""
    rows = {r.period: r.figures for r in await figures(store, viewer, month.first, month.last,
                                                      period="day", hall=hall)}
    days, day = [], month.first
    while day <= month.last:
        days.append((day, rows.get(day.isoformat(), Figures())))
        day += timedelta(days=1)
    return days


# ---------------------------------------------------------------------------- the ledger


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class LedgerChecker:
    """Runs ledger verifications in the background, one at a time per hub process, and stores each
    result (`HubStore.record_ledger_check`). A page shows `running` and the store's last result."""

    def __init__(self) -> None:
        self.task: asyncio.Task | None = None
        self.started_at: str | None = None
        self.requested_by: str | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self, store: HubStore, requested_by: str) -> bool:
        """Start a verification unless one runs already: -> whether this call started one."""
        if self.running:
            return False
        self.started_at, self.requested_by = _now(), requested_by
        self.task = asyncio.create_task(self._run(store, self.started_at, requested_by),
                                        name="ledger-verify")
        return True

    async def wait(self) -> None:
        if self.task is not None:
            await asyncio.shield(self.task)

    async def stop(self) -> None:
        """Cancel a running verification (the hub is stopping): nothing is stored for it."""
        if self.running:
            assert self.task is not None
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    @staticmethod
    async def _run(store: HubStore, started_at: str, requested_by: str) -> LedgerCheck:
        try:
            v = await store.verify_ledger()
            check = LedgerCheck(started_at, _now(), requested_by, v.ok, v.entries, v.head.seq, v.head.hash,
                                v.problems, v.as_dict())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the run failed, not the chain: say so, keep serving
            log.exception("ledger verification failed")
            check = LedgerCheck(started_at, _now(), requested_by, False, 0, 0, "", 0, {},
                                f"{type(exc).__name__}: {exc}")
        return await store.record_ledger_check(check)


@dataclass(frozen=True)
class LedgerStatus:
    last: LedgerCheck | None
    running_since: str | None
    head_seq: int
    head_hash: str

    @property
    def stale(self) -> bool:
        """Entries were appended since the last verification (it says nothing about them)."""
        return self.last is None or self.last.head_seq != self.head_seq


async def ledger_status(store: HubStore, checker: LedgerChecker) -> LedgerStatus:
    head = await store.ledger_head()
    return LedgerStatus(await store.last_ledger_check(), checker.started_at if checker.running else None,
                        head.seq, head.hash)
