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
    """Storage for gateways, devices and their keys, services, ratings, rejections and alerts."""

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
    async def rejection_summary(self, *, hall: str | None = None, limit: int = 50) -> RejectionSummary:
        """Count of rejected items (total and by reason) and the `limit` most recent ones."""

    @abstractmethod
    async def alerts(self, *, kind: str | None = None, limit: int = 100) -> list[AlertRecord]:
        """Alerts (tampering, service_conflict), newest first."""

    @abstractmethod
    async def counts(self) -> dict[str, int]:
        """Row counts: gateways, devices, device_keys, services, ratings, rejections, alerts."""
