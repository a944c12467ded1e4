"""Device alerts: the rules (pure functions) and the `alerts` table, one open row per device and kind.

An alert is raised when its condition starts and cleared when it ends; both are rows with times, so
the status page shows what is wrong now and what was wrong lately. With `hub_health` on, every
raise and clear also enters the outbox as an `alert` item (docs/protocol.md, "Hub ingest"), in the
same transaction as the change, so the hub hears of it exactly as it hears of ratings.

Kinds (thresholds in GatewaySettings, docs/gateway.md "Alerts"):
`offline`, `stuck_button`, `outbox_growing`, `clock_offset`, `reboots`, `counter_gap`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.ingest import wall_iso
from gateway.store import Tx

log = logging.getLogger(__name__)

OFFLINE = "offline"
STUCK_BUTTON = "stuck_button"
OUTBOX_GROWING = "outbox_growing"
CLOCK_OFFSET = "clock_offset"
REBOOTS = "reboots"
COUNTER_GAP = "counter_gap"
KINDS = (OFFLINE, STUCK_BUTTON, OUTBOX_GROWING, CLOCK_OFFSET, REBOOTS, COUNTER_GAP)

CLOCK_STEADY_HEALTHS = 3  # healths in a row without a jump clear a clock alert
MAX_DETAIL = 300  # an alert's detail is a sentence, never a payload
RECENT_CLEARED = 20  # cleared alerts shown on the status page

RAISE, CLEAR = "raise", "clear"


@dataclass(frozen=True)
class Verdict:
    """What a rule says about one alert: raise (with a detail), clear, or None (no change)."""

    action: str | None
    detail: str = ""


KEEP = Verdict(None)


# ---------------------------------------------------------------------------- rules (pure)


def outbox_rule(ob: int, ob_last: int | None, rising: int, max_ob: int,
                rising_n: int) -> tuple[int, Verdict]:
    """Device flash outbox from health `ob`: (new rising streak, verdict).

    Raised when `ob` is above `max_ob`, or larger than the health before it `rising_n` times in a
    row (ratings pile up faster than they leave: the device is not being acked). Cleared once `ob`
    is at most `max_ob` and empty or shrinking; while it merely stays put, the alert stays.
    """
    rising = rising + 1 if ob_last is not None and ob > ob_last else 0
    if ob > max_ob:
        return rising, Verdict(RAISE, f"{ob} ratings waiting in the device's flash outbox "
                                      f"(more than {max_ob})")
    if rising >= rising_n:
        return rising, Verdict(RAISE, f"device flash outbox grew {rising} healths in a row, "
                                      f"now {ob} ratings")
    if ob == 0 or (ob_last is not None and ob < ob_last):
        return rising, Verdict(CLEAR)
    return rising, KEEP


@dataclass(frozen=True)
class ClockSample:
    boot: int
    up: int  # device ms since boot at the health
    offset_ms: int  # gateway wall ms at receipt - up


def clock_rule(prev: ClockSample | None, new: ClockSample, steady: int,
               jump_ms: int) -> tuple[int, Verdict]:
    """Clock offset between two healths: (new steady count, verdict).

    Within one boot the device's monotonic time and the gateway's wall clock advance together, so
    the offset stays put (a few ms of latency and crystal drift). A jump means the device restarted
    its clock without counting a boot, or its clock runs wrong. A new boot restarts the reference.
    """
    if prev is None or prev.boot != new.boot:
        return 0, KEEP
    moved = new.offset_ms - prev.offset_ms
    if new.up < prev.up:
        return 0, Verdict(RAISE, f"device clock went back from {prev.up} to {new.up} ms within "
                                 f"boot {new.boot} (a restart without a boot count?)")
    if abs(moved) > jump_ms:
        return 0, Verdict(RAISE, f"device clock offset moved by {moved:+d} ms between two healths "
                                 f"of boot {new.boot} (limit {jump_ms} ms)")
    steady += 1
    return steady, (Verdict(CLEAR) if steady >= CLOCK_STEADY_HEALTHS else KEEP)


def stuck_rule(stuck: Any) -> Verdict:
    """Health `stuck`: the buttons held down too long, ignored by the device until released."""
    if isinstance(stuck, list) and stuck:
        names = ", ".join(str(s)[:8] for s in stuck[:8])
        return Verdict(RAISE, f"button(s) stuck: {names}")
    return Verdict(CLEAR)


def split_gap(n_from: int, n_to: int, n: int) -> list[tuple[int, int]]:
    """The gap [n_from, n_to] after rating `n` (inside it) arrived: zero, one or two gaps."""
    return [(a, b) for a, b in ((n_from, n - 1), (n + 1, n_to)) if a <= b]


def describe_gaps(gaps: list[tuple[int, int]], limit: int = 5) -> str:
    """`missing n 5-7, 12 (4 ratings)`: the first few ranges and the total."""
    total = sum(b - a + 1 for a, b in gaps)
    ranges = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in gaps[:limit])
    more = f", … {len(gaps) - limit} more ranges" if len(gaps) > limit else ""
    return f"missing n {ranges}{more} ({total} rating{'s' if total != 1 else ''})"


# ---------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Alert:
    id: int
    device: str
    kind: str
    detail: str
    raised_at: float
    updated_at: float
    cleared_at: float | None
    cleared_by: str | None

    @classmethod
    def from_row(cls, row: Any) -> "Alert":
        return cls(row["id"], row["device"], row["kind"], row["detail"], row["raised_at"],
                   row["updated_at"], row["cleared_at"], row["cleared_by"])

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "device": self.device, "kind": self.kind, "detail": self.detail,
                "raised_at": self.raised_at, "updated_at": self.updated_at,
                "cleared_at": self.cleared_at, "cleared_by": self.cleared_by}


class AlertBook:
    """Raises and clears alerts inside the caller's transaction, and queues them for the hub."""

    def __init__(self, hall: str, forward: bool):
        self.hall = hall
        self.forward = forward
        self.forwarded = 0  # items put in the outbox (committed or not): tells callers to wake the forwarder

    async def apply(self, tx: Tx, device: str, kind: str, verdict: Verdict, now: float) -> None:
        if verdict.action == RAISE:
            await self.raise_(tx, device, kind, verdict.detail, now)
        elif verdict.action == CLEAR:
            await self.clear(tx, device, kind, now)

    async def raise_(self, tx: Tx, device: str, kind: str, detail: str, now: float) -> bool:
        """Open the alert, or refresh the detail of the open one. True if it is new."""
        detail = detail[:MAX_DETAIL]
        row = await tx.one("SELECT * FROM alerts WHERE device = ? AND kind = ? AND cleared_at IS NULL",
                           (device, kind))
        if row is not None:
            if row["detail"] != detail:
                await tx.run("UPDATE alerts SET detail = ?, updated_at = ? WHERE id = ?",
                             (detail, now, row["id"]))
            return False
        alert_id = await tx.run("INSERT INTO alerts (device, kind, detail, raised_at, updated_at) "
                                "VALUES (?, ?, ?, ?, ?)", (device, kind, detail, now, now))
        await tx.count(f"alerts.raised.{kind}")
        log.warning("alert %s raised for %s: %s", kind, device, detail,
                    extra={"device": device, "alert": kind, "alert_id": alert_id})
        await self._forward(tx, Alert(alert_id, device, kind, detail, now, now, None, None))
        return True

    async def refresh(self, tx: Tx, device: str, kind: str, detail: str, now: float) -> None:
        """New detail for the open alert, if there is one (never opens one)."""
        await tx.run("UPDATE alerts SET detail = ?, updated_at = ? WHERE device = ? AND kind = ? "
                     "AND cleared_at IS NULL AND detail != ?",
                     (detail[:MAX_DETAIL], now, device, kind, detail[:MAX_DETAIL]))

    async def clear(self, tx: Tx, device: str, kind: str, now: float,
                    by: str = "condition") -> bool:
        """Clear the open alert, if there is one. True if one was cleared."""
        row = await tx.one("SELECT * FROM alerts WHERE device = ? AND kind = ? AND cleared_at IS NULL",
                           (device, kind))
        if row is None:
            return False
        await tx.run("UPDATE alerts SET cleared_at = ?, cleared_by = ? WHERE id = ?",
                     (now, by, row["id"]))
        await tx.count(f"alerts.cleared.{kind}")
        log.info("alert %s cleared for %s (%s)", kind, device, by,
                 extra={"device": device, "alert": kind, "alert_id": row["id"]})
        alert = Alert.from_row(row)
        await self._forward(tx, Alert(alert.id, device, kind, alert.detail, alert.raised_at,
                                      alert.updated_at, now, by))
        return True

    async def clear_by_id(self, tx: Tx, alert_id: int, now: float, by: str) -> Alert | None:
        """An operator clears an alert (it is raised again if its condition is still there)."""
        row = await tx.one("SELECT device, kind FROM alerts WHERE id = ? AND cleared_at IS NULL",
                           (alert_id,))
        if row is None:
            return None
        await self.clear(tx, row["device"], row["kind"], now, by)
        return Alert.from_row(await tx.one("SELECT * FROM alerts WHERE id = ?", (alert_id,)))

    async def _forward(self, tx: Tx, alert: Alert) -> None:
        if not self.forward:
            return
        window = await tx.one("SELECT window FROM devices WHERE device = ?", (alert.device,))
        state = "cleared" if alert.cleared_at is not None else "raised"
        item = {"kind": "alert", "id": alert.id, "device": alert.device,
                "window": window["window"] if window else None, "alert": alert.kind,
                "state": state, "detail": alert.detail, "raised_at": wall_iso(alert.raised_at),
                "cleared_at": wall_iso(alert.cleared_at) if alert.cleared_at is not None else None}
        await tx.outbox_put("alert", f"alert:{self.hall}:{alert.id}:{state}", item,
                            alert.cleared_at or alert.raised_at)
        self.forwarded += 1


async def open_alerts(tx: Tx) -> list[Alert]:
    rows = await tx.all("SELECT * FROM alerts WHERE cleared_at IS NULL ORDER BY raised_at, id")
    return [Alert.from_row(r) for r in rows]


async def recent_cleared(tx: Tx, limit: int = RECENT_CLEARED) -> list[Alert]:
    rows = await tx.all("SELECT * FROM alerts WHERE cleared_at IS NOT NULL "
                        "ORDER BY cleared_at DESC LIMIT ?", (limit,))
    return [Alert.from_row(r) for r in rows]
