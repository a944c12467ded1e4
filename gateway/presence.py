"""Device presence as pure functions: the (boot, conn) ordering of status messages, and what the
status page calls online once the heartbeat timeout is taken into account.

Ordering (docs/protocol.md, "status"): a status is identified by the device's boot count and its
connection count within that boot. Mosquitto may deliver the last will of an old connection after
the birth of a newer one (the broker notices a dead TCP connection late, a retained message is
re-sent on every subscribe), so a receiver applies a status only when it is newer than the one it
applied. For the same (boot, conn) the will follows the birth: `offline` outranks `online`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

APPLIED, REPEAT, STALE = "applied", "repeat", "stale"
Decision = Literal["applied", "repeat", "stale"]
RANK = {"online": 0, "offline": 1}  # same (boot, conn): the will of a connection follows its birth

# why a device shows offline
BY_STATUS = "status"  # its last will (or an explicit offline status)
BY_TIMEOUT = "timeout"  # nothing heard for N health periods, no will seen (a hung device, a cut cable)
NEVER_SEEN = "never_seen"  # registered, but no status ever arrived


class StatusKey(NamedTuple):
    """The order of a status: higher applies over lower."""

    boot: int
    conn: int
    rank: int

    @classmethod
    def of(cls, state: str, boot: int, conn: int) -> "StatusKey":
        return cls(boot, conn, RANK[state])


def decide(applied: StatusKey | None, incoming: StatusKey) -> Decision:
    """Whether `incoming` replaces the status applied so far (None: no status yet)."""
    if applied is None or incoming > applied:
        return APPLIED
    return REPEAT if incoming == applied else STALE


class Presence(NamedTuple):
    state: str | None  # "online" | "offline" | None (never seen)
    reason: str | None  # why offline: BY_STATUS | BY_TIMEOUT | NEVER_SEEN; None when online
    since: float | None  # when the device entered this state, gateway wall clock


def effective(status: str | None, status_at: float | None, timed_out_at: float | None,
              registered_at: float | None) -> Presence:
    """Presence as people should see it: the applied status, overridden by a heartbeat timeout."""
    if status is None:
        return Presence(None, NEVER_SEEN, registered_at)
    if status == "offline":
        return Presence("offline", BY_STATUS, status_at)
    if timed_out_at is not None:
        return Presence("offline", BY_TIMEOUT, timed_out_at)
    return Presence("online", None, status_at)
