"""The tables as every backend writes and reads them: the column lists, the rows an ingest plan
writes, and the records a read returns. The backends differ in SQL dialect and driver, not in what
a row holds, so a new table or column is described once here and used by each backend's SQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..ingest import IngestPlan
from .base import StoredDeviceAlert, StoredHealth, StoredRating

# ---------------------------------------------------------------------------- columns

RATING_COLUMNS = (
    "device, n, hall, boot, mono, session, score, kid, sig, received_at, offset_ms, service, ticket, "
    "window_id, staff_id, matter_code, case_no, unit, unbound_reason, verified, ingested_at")
RATING_INSERT_COLUMNS = RATING_COLUMNS + ", item"
SERVICE_COLUMNS = ("hall, id, ticket, window_id, staff_id, staff_name, matter_code, matter_name, "
                   "case_no, unit, accepted_at, finished_at, outcome, payload, ingested_at")
HEALTH_COLUMNS = "hall, device, window_id, boot, up, received_at, presence, offset_ms, payload, ingested_at"
HEALTH_INSERT_COLUMNS = ("hall, device, boot, up, window_id, received_at, received_ms, presence, "
                         "offset_ms, payload, ingested_at")
HEALTH_LATEST_COLUMNS = "hall, device, boot, up, received_ms"
DEVICE_ALERT_COLUMNS = ("hall, alert_id, device, window_id, alert, state, detail, raised_at, cleared_at, "
                        "raised_item IS NOT NULL, ingested_at, updated_at")
DEVICE_ALERT_INSERT_COLUMNS = ("hall, alert_id, device, window_id, alert, state, detail, raised_at, "
                               "cleared_at, raised_item, cleared_item, ingested_at, updated_at")
REJECTION_COLUMNS = "at, hall, item_key, reason, item"
ALERT_COLUMNS = "at, kind, hall, item_key, detail"
COUNTED_TABLES = ("gateways", "devices", "device_keys", "services", "ratings", "device_health",
                  "device_alerts", "rejections", "alerts")


def names(columns: str) -> list[str]:
    """A column list as names."""
    return [column.strip() for column in columns.split(",")]


def now() -> str:
    """The hub's own timestamps (ingested_at, registered_at, …): UTC, ISO 8601, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------- writes


def rating_rows(plan: IngestPlan, at: str) -> list[tuple]:
    """plan.ratings in RATING_INSERT_COLUMNS order, in item order (the ingest order)."""
    rows = []
    for item, device_window in plan.ratings:
        r, b = item.rating, item.binding
        bound = ((b.service, b.ticket, b.window, b.staff_id, b.matter_code, b.case_no, b.unit)
                 if b is not None else (None, None, device_window, None, None, None, None))
        rows.append((r.dev, r.n, r.hall, r.boot, r.mono, r.sess, r.score, r.kid, r.sig,
                     item.received_at, item.offset_ms, *bound, item.unbound_reason, True, at,
                     json.dumps(item.raw, separators=(",", ":"), ensure_ascii=False)))
    return rows


def service_rows(plan: IngestPlan, at: str) -> list[tuple]:
    """plan.services in SERVICE_COLUMNS order."""
    return [(s.hall, s.id, s.ticket, s.window, s.staff_id, s.staff_name, s.matter_code,
             s.matter_name, s.case_no, s.unit, s.accepted_at, s.finished_at, s.outcome,
             s.canonical(), at) for s in plan.services]


def health_rows(plan: IngestPlan, at: str) -> list[tuple]:
    """plan.health in HEALTH_INSERT_COLUMNS order."""
    return [(h.hall, h.device, h.boot, h.up, h.window, h.received_at, h.received_ms, h.presence,
             h.offset_ms, h.canonical(), at) for h in plan.health]


def health_latest_rows(plan: IngestPlan) -> list[tuple]:
    """plan.health in HEALTH_LATEST_COLUMNS order, in item order (a store keeps the newest)."""
    return [(h.hall, h.device, h.boot, h.up, h.received_ms) for h in plan.health]


def device_alert_rows(hall: str, plan: IngestPlan, at: str) -> list[tuple]:
    """plan.device_alerts in DEVICE_ALERT_INSERT_COLUMNS order (`at` is both ingested_at and
    updated_at: an update keeps the stored ingested_at)."""
    return [(hall, a.id, a.device, a.window, a.alert, a.state, a.detail, a.raised_at, a.cleared_at,
             a.raised, a.cleared, at, at) for a in plan.device_alerts.values()]


def rejection_rows(hall: str, plan: IngestPlan, at: str) -> list[tuple]:
    """plan.rejections in REJECTION_COLUMNS order."""
    return [(at, hall, key, reason, item) for key, reason, item in plan.rejections]


def alert_rows(hall: str, plan: IngestPlan, at: str) -> list[tuple]:
    """plan.alerts in ALERT_COLUMNS order."""
    return [(at, kind, hall, key, detail) for kind, key, detail in plan.alerts]


# ---------------------------------------------------------------------------- reads


def stored_rating(row: Sequence[Any]) -> StoredRating:
    """A row of RATING_COLUMNS."""
    (device, n, hall, boot, mono, session, score, kid, sig, received_at, offset_ms, service, ticket,
     window, staff_id, matter_code, case_no, unit, unbound_reason, verified, ingested_at) = row
    return StoredRating(device, n, hall, boot, mono, session, score, kid, sig, received_at, offset_ms,
                        service, ticket, window, staff_id, matter_code, case_no, unit, unbound_reason,
                        bool(verified), ingested_at)


def stored_health(row: Sequence[Any]) -> StoredHealth:
    """A row of HEALTH_COLUMNS."""
    hall, device, window, boot, up, received_at, presence, offset_ms, payload, ingested_at = row
    return StoredHealth(hall, device, window, boot, up, received_at, presence, offset_ms,
                        json.loads(payload)["health"], ingested_at)


def stored_device_alert(row: Sequence[Any]) -> StoredDeviceAlert:
    """A row of DEVICE_ALERT_COLUMNS."""
    (hall, alert_id, device, window, alert, state, detail, raised_at, cleared_at, raise_seen,
     ingested_at, updated_at) = row
    return StoredDeviceAlert(hall, alert_id, device, window, alert, state, detail, raised_at,
                             cleared_at, bool(raise_seen), ingested_at, updated_at)
