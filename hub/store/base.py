"""The hub's storage interface. Every backend passes the same suite (tests/hub/test_store.py).

All methods are coroutines; a store is used between `open()` and `close()` (or `async with`).
Ingest decisions are made by `hub.ingest.decide` inside the backend's write transaction, so the
backends differ only in how they look things up and write them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from hcp.protocol import BAD_SCORES, LEVELS

from ..ingest import ItemResult, ParsedItem, parse_item


class KeyIdCollision(Exception):
    """A device already has a different key with the same kid (4-byte prefix): use another key."""


@dataclass(frozen=True)
class GatewayRecord:
    hall: str
    token_sha256: str
    key: bytes  # the gateway's phone-token signing key
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class StoredRating:
    """A stored rating. `window` is the binding's window, or the device's when unbound."""

    device: str
    n: int
    hall: str
    boot: int
    mono: int
    session: str | None
    score: int
    kid: str
    sig: str
    received_at: str
    offset_ms: int
    service: str | None
    ticket: str | None
    window: str | None
    staff_id: str | None
    matter_code: str | None
    case_no: str | None
    unit: str | None
    unbound_reason: str | None
    verified: bool
    ingested_at: str

    @property
    def id(self) -> str:
        return f"{self.device}:{self.n}"

    @property
    def bound(self) -> bool:
        return self.service is not None

    @property
    def level(self) -> str:
        return LEVELS[self.score]

    @property
    def bad(self) -> bool:
        return self.score in BAD_SCORES


@dataclass(frozen=True)
class StoredHealth:
    """A device health snapshot as the gateway forwarded it; `health` is the device's payload."""

    hall: str
    device: str
    window: str | None
    boot: int
    up: int
    received_at: str
    presence: str | None
    offset_ms: int | None
    health: dict
    ingested_at: str


@dataclass(frozen=True)
class StoredDeviceAlert:
    """A gateway's device alert: `state` `raised` until its clear arrived (`cleared_at` set).

    `window` and `detail` are the newest state's. `raise_seen` is False for an alert the hub knows
    only from its clear (the raise may still be on its way, or was a dead letter)."""

    hall: str
    id: int
    device: str
    window: str | None
    alert: str
    state: str
    detail: str | None
    raised_at: str
    cleared_at: str | None
    raise_seen: bool
    ingested_at: str
    updated_at: str


@dataclass(frozen=True)
class DeviceRecord:
    """A registered device, where the hub sees it: its current kid, the newest health snapshot of
    its current hall (None before the first), and the kinds of its open alerts there (sorted)."""

    device: str
    hall: str
    window: str
    kid: str | None
    registered_at: str
    updated_at: str
    health: StoredHealth | None
    alerts_open: tuple[str, ...]


@dataclass(frozen=True)
class RejectionRecord:
    at: str
    hall: str
    key: str | None
    reason: str
    item: str  # JSON, truncated


@dataclass(frozen=True)
class RejectionSummary:
    total: int
    by_reason: dict[str, int]
    recent: list[RejectionRecord]  # newest first


@dataclass(frozen=True)
class AlertRecord:
    at: str
    kind: str
    hall: str
    key: str
    detail: dict


class HubStore(ABC):
    """Storage for gateways, devices and their keys, services, ratings, the gateways' device health
    snapshots and device alerts, rejections and the hub's own alerts."""

    async def __aenter__(self) -> HubStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema to the newest version; safe to run on every start."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending work and disconnect. Calling it twice is harmless."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The schema version the database is at."""

    @abstractmethod
    async def register_gateway(self, hall: str, token_sha256: str, key: bytes) -> None:
        """Create the hall's gateway, or replace its token hash and key (rotation)."""

    @abstractmethod
    async def gateway_by_token_hash(self, token_sha256: str) -> GatewayRecord | None:
        """The gateway whose ingest token has this SHA-256 (hex), or None."""

    @abstractmethod
    async def register_device(self, device: str, hall: str, window: str, key: bytes) -> str:
        """Create or move the device and add `key` to its keys; return the key's kid.

        A new key retires the device's other keys (they keep verifying the ratings they signed).
        The same key again is a no-op. Raises KeyIdCollision for a different key with a known kid.
        """

    async def ingest(self, hall: str, items: Sequence[object]) -> list[ItemResult]:
        """Ingest a batch posted by `hall`'s gateway: one result per item, in order.

        The whole batch is decided and written in one transaction (hub.ingest has the rules);
        every rejected item is recorded. Posting the same batch again changes nothing.
        """
        return await self._ingest_parsed(hall, [parse_item(obj, hall) for obj in items])

    @abstractmethod
    async def _ingest_parsed(self, hall: str, items: Sequence[ParsedItem]) -> list[ItemResult]:
        """Look up what `items` touch, `hub.ingest.decide`, write the plan: one transaction."""

    @abstractmethod
    async def get_rating(self, device: str, n: int) -> StoredRating | None:
        """The rating `device:n`, or None."""

    @abstractmethod
    async def list_ratings(self, *, hall: str | None = None, device: str | None = None,
                           window: str | None = None, ticket: str | None = None,
                           limit: int = 100) -> list[StoredRating]:
        """Ratings matching every given filter, newest ingested first, at most `limit`."""

    @abstractmethod
    async def list_devices(self, *, hall: str | None = None) -> list[DeviceRecord]:
        """Registered devices (of `hall` if given), by device id, each with its newest health of
        its current hall and its open alerts there. An unknown hall is an empty list."""

    @abstractmethod
    async def health_history(self, *, hall: str, device: str, limit: int = 100) -> list[StoredHealth]:
        """`device`'s health snapshots ingested for `hall`, newest `received_at` first (ties: the
        later boot and `up` first), at most `limit`."""

    @abstractmethod
    async def device_alerts(self, *, hall: str, device: str | None = None, state: str | None = None,
                            limit: int = 100) -> list[StoredDeviceAlert]:
        """`hall`'s device alerts matching the filters (`state` `raised` = still open), newest
        alert id first, at most `limit`."""

    @abstractmethod
    async def rejection_summary(self, *, hall: str | None = None, limit: int = 50) -> RejectionSummary:
        """Count of rejected items (total and by reason) and the `limit` most recent ones."""

    @abstractmethod
    async def alerts(self, *, kind: str | None = None, limit: int = 100) -> list[AlertRecord]:
        """The hub's own alerts (tampering, service_conflict, health_conflict, alert_conflict),
        newest first. Not the gateways' device alerts: `device_alerts`."""

    @abstractmethod
    async def counts(self) -> dict[str, int]:
        """Row counts: gateways, devices, device_keys, services, ratings, device_health,
        device_alerts, rejections, alerts."""
