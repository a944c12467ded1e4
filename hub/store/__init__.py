"""Hub storage: the `HubStore` interface and its backends (SQLite for now)."""

from __future__ import annotations

from ..config import HubSettings
from .base import (
    AlertRecord,
    DeviceRecord,
    GatewayRecord,
    HubStore,
    KeyIdCollision,
    RejectionRecord,
    RejectionSummary,
    StoredDeviceAlert,
    StoredHealth,
    StoredRating,
)
from .sqlite import SQLiteStore

__all__ = ["AlertRecord", "DeviceRecord", "GatewayRecord", "HubStore", "KeyIdCollision",
           "RejectionRecord", "RejectionSummary", "SQLiteStore", "StoredDeviceAlert", "StoredHealth",
           "StoredRating", "store_for"]


def store_for(settings: HubSettings) -> HubStore:
    """The backend the settings name (an unopened store)."""
    return SQLiteStore(settings.db_path)
