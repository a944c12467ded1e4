"""Row shapes shared by the store, the binding rules and the handlers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SERVICE_OPEN = "open"
SERVICE_ENDED = "ended"


@dataclass
class ServiceRow:
    """One ticket at one window (docs/protocol.md, "A service"). Times from the queue system are
    kept as the ISO text it sent; `*_rx` are the gateway's wall clock (Unix seconds)."""

    id: str
    ticket: str
    window: str
    opened_rx: float
    state: str = SERVICE_OPEN
    staff_id: str | None = None
    staff_name: str | None = None
    matter_code: str | None = None
    matter_name: str | None = None
    case_no: str | None = None
    unit: str | None = None
    called_at: str | None = None
    started_at: str | None = None
    accepted_at: str | None = None
    finished_at: str | None = None
    outcome: str | None = None
    ended_rx: float | None = None
    session_opened_at: float | None = None
    session_device: str | None = None
    rated_by: str | None = None
    serving_rx: float | None = None  # receive time of the latest live `started`/`accepted`

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_row(cls, row: Any) -> "ServiceRow":
        return cls(**{name: row[name] for name in cls.columns()})

    def values(self) -> list[Any]:
        return list(asdict(self).values())

    @property
    def in_progress(self) -> bool:
        """Open and past `called` (a live `started` or `accepted` came): the citizen is at the
        window. A replayed event (an export of the past) says nothing about now, so it never counts."""
        return self.state == SERVICE_OPEN and self.serving_rx is not None

    def ingest_item(self) -> dict[str, Any]:
        """The hub ingest item for an ended service (docs/protocol.md, Hub ingest)."""
        return {"kind": "service", "id": self.id, "ticket": self.ticket, "window": self.window,
                "staff_id": self.staff_id, "matter_code": self.matter_code, "case_no": self.case_no,
                "unit": self.unit, "staff_name": self.staff_name, "matter_name": self.matter_name,
                "accepted_at": self.accepted_at, "finished_at": self.finished_at,
                "outcome": self.outcome}


@dataclass(frozen=True)
class DeviceRow:
    device: str
    window: str | None  # None: seen on MQTT but never registered
    registered_at: float | None
    presence: str | None
    presence_boot: int | None
    presence_conn: int | None
    presence_at: float | None
    last_seen: float | None
    fw: str | None
    health: str | None
    health_at: float | None
    last_rating_n: int | None
    last_rating_at: float | None
    cmd_reply: str | None
    cmd_reply_at: float | None
    retired_at: float | None  # set: retired (window None); its messages are refused

    @classmethod
    def from_row(cls, row: Any) -> "DeviceRow":
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def registered(self) -> bool:
        return self.window is not None


@dataclass(frozen=True)
class Binding:
    """What a rating was bound to: a service, or nothing with a reason (protocol.md UNBOUND_REASONS)."""

    service: ServiceRow | None
    unbound_reason: str | None

    def ingest_binding(self) -> dict[str, Any] | None:
        s = self.service
        if s is None:
            return None
        return {"service": s.id, "ticket": s.ticket, "window": s.window, "staff_id": s.staff_id,
                "matter_code": s.matter_code, "case_no": s.case_no, "unit": s.unit}
