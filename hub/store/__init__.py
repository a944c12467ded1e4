"""Hub storage: the `HubStore` interface, its backends (SQLite, PostgreSQL) and `open_store`, which
opens the one the settings name."""

from __future__ import annotations

from ..config import HubSettings
from .base import (
    AlertRecord,
    DeviceGaps,
    DeviceRecord,
    GatewayRecord,
    HallRecord,
    HubStore,
    KeyIdCollision,
    RegionRecord,
    RejectionRecord,
    RejectionSummary,
    RetiredDevice,
    StoredDeviceAlert,
    StoredGap,
    StoredHealth,
    StoredRating,
    UnknownRegion,
)
from .postgres import PostgresStore
from .sqlite import SQLiteStore

__all__ = ["AlertRecord", "DeviceGaps", "DeviceRecord", "GatewayRecord", "HallRecord", "HubStore", "KeyIdCollision",
           "PostgresStore", "RegionRecord", "RejectionRecord", "RejectionSummary", "RetiredDevice", "SQLiteStore",
           "StoredDeviceAlert", "StoredGap", "StoredHealth", "StoredRating", "UnknownRegion", "open_store", "store_for"]


def store_for(settings: HubSettings) -> HubStore:
    """The backend the settings name, unopened: PostgreSQL when `db_url` is set, else SQLite at
    `db_path`."""
    if settings.postgres_url is not None:
        return PostgresStore(settings.postgres_url)
    return SQLiteStore(settings.db_path)


async def open_store(settings: HubSettings) -> HubStore:
    """The backend the settings name, opened (connected and migrated); `close()` it when done."""
    store = store_for(settings)
    await store.open()
    return store
