"""One pydantic model per request and response shape of docs/protocol.md ("Hub ingest",
"Hub registration and reads")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from hcp.protocol import DEVICE_RE, HALL_RE, VERSION, WINDOW_RE

from ..ingest import ItemResult
from ..store import (
    DeviceRecord,
    RejectionRecord,
    RejectionSummary,
    StoredDeviceAlert,
    StoredHealth,
    StoredRating,
)


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


HALL_PATTERN = _anchored(HALL_RE.pattern)
DEVICE_PATTERN = _anchored(DEVICE_RE.pattern)
WINDOW_PATTERN = _anchored(WINDOW_RE.pattern)

HallId = Annotated[StrictStr, Field(pattern=HALL_PATTERN, examples=["H1"])]
DeviceId = Annotated[StrictStr, Field(pattern=DEVICE_PATTERN, examples=["D07"])]
WindowId = Annotated[StrictStr, Field(pattern=WINDOW_PATTERN, examples=["7"])]
KeyHex = Annotated[StrictStr, Field(pattern=r"^[0-9a-fA-F]{64}$",
                                    description="32-byte key as 64 hex characters (write-only)")]


class Problem(BaseModel):
    """Every error answer (4xx, 503): what was wrong, in words. 422 answers from request
    validation carry FastAPI's list of field errors instead."""

    detail: str


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # receivers ignore unknown fields within v1


# ---------------------------------------------------------------------------- registration


class GatewayRegistration(_Request):
    hall: HallId
    key: KeyHex

    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)


class GatewayToken(BaseModel):
    hall: str
    token: str = Field(description="the gateway's ingest token; shown once, the hub keeps its SHA-256")


class DeviceRegistration(_Request):
    device: DeviceId
    hall: HallId
    window: WindowId
    key: KeyHex

    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)


class DeviceRegistered(BaseModel):
    device: str
    kid: str = Field(examples=["4773d12e"])


# ---------------------------------------------------------------------------- ingest


class IngestEnvelope(_Request):
    v: StrictInt = Field(description="protocol version: this hub speaks 1",
                         json_schema_extra={"enum": [VERSION]})
    hall: HallId
    items: list[Any] = Field(description="services, ratings, health snapshots and device alerts; "
                                         "each is checked on its own")

    @field_validator("v")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != VERSION:
            raise ValueError(f"unsupported version {v}: this hub speaks v{VERSION}")
        return v


class IngestResult(BaseModel):
    key: str | None = Field(description="`rating:{dev}:{n}`, `service:{hall}:{id}`, "
                                        "`health:{hall}:{device}:{boot}:{up}` or "
                                        "`alert:{hall}:{id}:{state}`; null if unreadable")
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = Field(default=None, exclude_if=lambda reason: reason is None)

    @classmethod
    def of(cls, result: ItemResult) -> IngestResult:
        return cls(key=result.key, status=result.status, reason=result.reason)


class IngestResponse(BaseModel):
    v: int = VERSION
    results: list[IngestResult]


class RejectionOut(BaseModel):
    at: str
    hall: str
    key: str | None
    reason: str
    item: str = Field(description="the item as JSON, truncated")

    @classmethod
    def of(cls, record: RejectionRecord) -> RejectionOut:
        return cls(at=record.at, hall=record.hall, key=record.key, reason=record.reason, item=record.item)


class RejectionsOut(BaseModel):
    total: int
    by_reason: dict[str, int]
    recent: list[RejectionOut] = Field(description="newest first")

    @classmethod
    def of(cls, summary: RejectionSummary) -> RejectionsOut:
        return cls(total=summary.total, by_reason=summary.by_reason,
                   recent=[RejectionOut.of(r) for r in summary.recent])


# ---------------------------------------------------------------------------- reads


class RatingOut(BaseModel):
    id: str = Field(examples=["D07:42"])
    hall: str
    device: str
    n: int
    score: int = Field(description="5 = 非常满意 … 1 = 非常不满意")
    level: str = Field(examples=["满意"])
    bad: bool = Field(description="score 1 or 2 (差评)")
    session: str | None
    received_at: str
    bound: bool
    unbound_reason: str | None
    service: str | None
    ticket: str | None
    window: str | None = Field(description="the binding's window; the device's window when unbound")
    staff_id: str | None
    matter_code: str | None
    case_no: str | None
    unit: str | None
    verified: bool

    @classmethod
    def of(cls, r: StoredRating) -> RatingOut:
        return cls(id=r.id, hall=r.hall, device=r.device, n=r.n, score=r.score, level=r.level,
                   bad=r.bad, session=r.session, received_at=r.received_at, bound=r.bound,
                   unbound_reason=r.unbound_reason, service=r.service, ticket=r.ticket,
                   window=r.window, staff_id=r.staff_id, matter_code=r.matter_code,
                   case_no=r.case_no, unit=r.unit, verified=r.verified)


class HealthOut(BaseModel):
    """A device health snapshot as the hall's gateway forwarded it."""

    hall: str
    device: str
    window: str | None = Field(description="the device's window at the gateway, as sent")
    boot: int
    up: int = Field(description="device ms since boot")
    received_at: str = Field(description="gateway wall clock when the health came")
    presence: Literal["online", "offline"] | None = Field(description="as the gateway saw it; null: never seen")
    offset_ms: int | None = Field(description="gateway wall ms at receipt minus `up`")
    health: dict[str, Any] = Field(description="the device's health payload, unchanged")

    @classmethod
    def of(cls, h: StoredHealth) -> HealthOut:
        return cls(hall=h.hall, device=h.device, window=h.window, boot=h.boot, up=h.up,
                   received_at=h.received_at, presence=h.presence,  # type: ignore[arg-type]
                   offset_ms=h.offset_ms, health=h.health)


class DeviceAlertOut(BaseModel):
    """A device alert of a hall's gateway (kinds: docs/gateway.md, "Alerts")."""

    hall: str
    id: int = Field(description="the gateway's alert number, unique in the hall")
    device: str
    window: str | None = Field(description="null: the device is not registered at the gateway")
    alert: str = Field(examples=["stuck_button"])
    state: Literal["raised", "cleared"]
    detail: str | None
    raised_at: str
    cleared_at: str | None
    raise_seen: bool = Field(description="false: known only from its clear so far")
    updated_at: str = Field(description="when the hub last stored a state of it")

    @classmethod
    def of(cls, a: StoredDeviceAlert) -> DeviceAlertOut:
        return cls(hall=a.hall, id=a.id, device=a.device, window=a.window, alert=a.alert,
                   state=a.state, detail=a.detail, raised_at=a.raised_at,  # type: ignore[arg-type]
                   cleared_at=a.cleared_at, raise_seen=a.raise_seen, updated_at=a.updated_at)


class DeviceOut(BaseModel):
    device: str
    hall: str
    window: str = Field(description="the window the device is registered for at the hub")
    kid: str | None = Field(description="the current key's id")
    registered_at: str
    updated_at: str
    health: HealthOut | None = Field(description="the newest health snapshot from this hall")
    alerts_open: list[str] = Field(description="kinds of the device's open alerts in this hall")

    @classmethod
    def of(cls, d: DeviceRecord) -> DeviceOut:
        return cls(device=d.device, hall=d.hall, window=d.window, kid=d.kid,
                   registered_at=d.registered_at, updated_at=d.updated_at,
                   health=HealthOut.of(d.health) if d.health is not None else None,
                   alerts_open=list(d.alerts_open))


class Health(BaseModel):
    ok: bool
