"""The tables as every backend writes and reads them: the column lists, the rows an ingest plan
writes, and the records a read returns. The backends differ in SQL dialect and driver, not in what
a row holds, so a new table or column is described once here and used by each backend's SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .. import ledger
from ..defaults import DEFAULT_COLUMNS
from ..ingest import DeviceKeys, IngestPlan
from ..default_rules import DefaultRule
from ..gaps import Gap, GapChanges, Hole
from .base import (
    DeviceGaps,
    DeviceRecord,
    HallRecord,
    RegionRecord,
    StoredDeviceAlert,
    StoredGap,
    StoredHealth,
    StoredRating,
)

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
LEDGER_COLUMNS = "seq, kind, hall, ref, digest, hash, at"
COUNTED_TABLES = ("gateways", "devices", "device_keys", "services", "ratings", "device_health",
                  "device_alerts", "rejections", "alerts", "rating_gaps", "rating_gap_holes")


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
                     item.raw_text))
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


# ---------------------------------------------------------------------------- the ledger
# A record's ledger digest covers every column it is stored with (hub/ledger.py): for a rating
# RATING_INSERT_COLUMNS (the posted item included), for a service SERVICE_COLUMNS. Verification
# reads the same columns back and must build the same dict, so values are normalised here.
RATING_RECORD_NAMES = tuple(names(RATING_INSERT_COLUMNS))
SERVICE_RECORD_NAMES = tuple(names(SERVICE_COLUMNS))
DEFAULT_RECORD_NAMES = tuple(names(DEFAULT_COLUMNS))


def rating_record(row: Sequence[Any]) -> dict[str, Any]:
    """A row of RATING_INSERT_COLUMNS as the ledger digests it (`verified` a bool on both backends)."""
    record = dict(zip(RATING_RECORD_NAMES, row, strict=True))
    record["verified"] = bool(record["verified"])
    return record


def service_record(row: Sequence[Any]) -> dict[str, Any]:
    """A row of SERVICE_COLUMNS as the ledger digests it."""
    return dict(zip(SERVICE_RECORD_NAMES, row, strict=True))


def rating_ref(device: str, n: int) -> str:
    return f"{device}:{n}"


def parse_rating_ref(ref: str) -> tuple[str, int] | None:
    """(device, n) of a rating's ledger ref, or None if it is not one (a damaged entry)."""
    device, _, n = ref.rpartition(":")
    return (device, int(n)) if device and n.isdigit() else None


def ledger_pending(ratings: Sequence[tuple], services: Sequence[tuple]) -> list[ledger.Pending]:
    """The ledger entries to append for a batch's stored rows (RATING_INSERT_COLUMNS and
    SERVICE_COLUMNS tuples), ratings first, each in its insert order."""
    pending = []
    for row in ratings:
        record = rating_record(row)
        pending.append(ledger.Pending("rating", record["hall"], rating_ref(record["device"], record["n"]), record))
    for row in services:
        record = service_record(row)
        pending.append(ledger.Pending("service", record["hall"], record["id"], record))
    return pending


# Stored records with no ledger entry (inserted behind the hub's back): one index seek in the
# ledger's UNIQUE (kind, hall, ref) per record. The same SQL on both backends; {what} is COUNT(*)
# or the (hall, ref) columns, {limit} empty or a LIMIT.
UNLEDGERED_SQL = {
    "rating": "SELECT {what} FROM ratings r WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE "
              "l.kind = 'rating' AND l.hall = r.hall AND l.ref = r.device || ':' || r.n){limit}",
    "service": "SELECT {what} FROM services s WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE "
               "l.kind = 'service' AND l.hall = s.hall AND l.ref = s.id){limit}",
}
UNLEDGERED_SQL["default"] = ("SELECT {what} FROM default_ratings d WHERE NOT EXISTS (SELECT 1 FROM ledger l "
                             "WHERE l.kind = 'default' AND l.hall = d.hall AND l.ref = d.service){limit}")
UNLEDGERED_SQL["appeal"] = ("SELECT {what} FROM appeal_decisions a WHERE NOT EXISTS (SELECT 1 FROM ledger l "
                            "WHERE l.kind = 'appeal' AND l.hall = a.hall AND l.ref = a.ref){limit}")
UNLEDGERED_REF = {"rating": "r.hall, r.device || ':' || r.n", "service": "s.hall, s.id",
                  "default": "d.hall, d.service", "appeal": "a.hall, a.ref"}
UNLEDGERED_SQL["phone"] = ("SELECT {what} FROM phone_ratings p WHERE NOT EXISTS (SELECT 1 FROM ledger l "
                           "WHERE l.kind = 'phone' AND l.hall = p.hall AND l.ref = p.service || ':' || p.kind){limit}")
UNLEDGERED_REF["phone"] = "p.hall, p.service || ':' || p.kind"

# The default job's look-up (hub/defaults.py): finished services stored since {since}, with no
# default and no bound rating, with their hall's region and rule. {p} is the backend's placeholder.
DEFAULT_CANDIDATES_SQL = (
    "SELECT s.hall, s.id, s.finished_at, h.region, g.default_rule FROM services s "
    "LEFT JOIN halls h ON h.hall = s.hall LEFT JOIN regions g ON g.region = h.region "
    "WHERE s.ingested_at >= {p} AND s.outcome = 'finished' "
    "AND NOT EXISTS (SELECT 1 FROM default_ratings d WHERE d.hall = s.hall AND d.service = s.id) "
    "AND NOT EXISTS (SELECT 1 FROM ratings r WHERE r.hall = s.hall AND r.service = s.id) "
    "AND NOT EXISTS (SELECT 1 FROM phone_ratings p WHERE p.hall = s.hall AND p.service = s.id "
    "AND p.kind = 'supplementary') "
    "ORDER BY s.hall, s.id")
# Re-checked in the write transaction, per service: (has a default, has a bound rating or a phone
# supplementary rating); parameters (hall, service) three times
DEFAULT_RECHECK_SQL = (
    "SELECT EXISTS (SELECT 1 FROM default_ratings d WHERE d.hall = {p} AND d.service = {p}), "
    "EXISTS (SELECT 1 FROM ratings r WHERE r.hall = {p} AND r.service = {p}) "
    "OR EXISTS (SELECT 1 FROM phone_ratings p WHERE p.hall = {p} AND p.service = {p} "
    "AND p.kind = 'supplementary')")
# A hub alert raised once per (kind, item_key): a job that runs every hour does not repeat it
HUB_ALERT_ONCE_SQL = (
    "INSERT INTO alerts (at, kind, hall, item_key, detail) SELECT {p}, {p}, {p}, {p}, {p} "
    "WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE kind = {p} AND item_key = {p})")
HUB_WIDE = "*"  # alerts.hall of an alert about no one hall


# Exports (hub/api/routes/export.py): a hall's ratings stored since {p} after seq {p}, by seq;
# a hall's default ratings whose period ended in [{p}, {p}), with their service's binding fields.
EXPORT_RATINGS_SQL = ("SELECT seq, " + RATING_COLUMNS + " FROM ratings WHERE hall = {p} "
                      "AND ingested_at >= {p} AND seq > {p} ORDER BY seq LIMIT {p}")
EXPORT_DEFAULTS_SQL = ("SELECT d.hall, d.service, d.due_at, s.case_no, s.matter_code, s.unit, s.staff_id "
                       "FROM default_ratings d JOIN services s ON s.hall = d.hall AND s.id = d.service "
                       "WHERE d.hall = {p} AND d.due_at >= {p} AND d.due_at < {p} ORDER BY d.due_at, d.service")


def default_record(row: Sequence[Any]) -> dict[str, Any]:
    """A row of defaults.DEFAULT_COLUMNS as its ledger entry digests it."""
    record = dict(zip(DEFAULT_RECORD_NAMES, row, strict=True))
    record["estimated"] = bool(record["estimated"])
    return record


def hub_alert_params(at: str, alert: tuple[str, str | None, str, str]) -> tuple:
    kind, hall, key, detail = alert
    return (at, kind, hall or HUB_WIDE, key, json.dumps({"detail": detail}, ensure_ascii=False), kind, key)


def ledger_rows(entries: Sequence[ledger.Entry]) -> list[tuple]:
    """Entries in LEDGER_COLUMNS order."""
    return [(e.seq, e.kind, e.hall, e.ref, e.digest, e.hash, e.at) for e in entries]


def ledger_entry(row: Sequence[Any]) -> ledger.Entry:
    """A row of LEDGER_COLUMNS."""
    seq, kind, hall, ref, digest, hash_, at = row
    return ledger.Entry(seq, kind, hall, ref, digest, hash_, at)


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


# ---------------------------------------------------------------------------- regions, halls, devices

REGION_COLUMNS = "region, name, area_code, default_rule, created_at, updated_at"
HALL_COLUMNS = "hall, region, name, updated_at"


def rule_json(rule: DefaultRule) -> str:
    """A region's rule as stored: canonical JSON `{"days":N,"kind":…}`."""
    return json.dumps(rule.to_dict(), sort_keys=True, separators=(",", ":"))


def region_record(row: Sequence[Any]) -> RegionRecord:
    """A row of REGION_COLUMNS (the rule is checked again: a hand-edited row fails loudly)."""
    region, name, area_code, rule, created_at, updated_at = row
    return RegionRecord(region, name, area_code, DefaultRule.from_dict(json.loads(rule)),
                        created_at, updated_at)


def hall_record(row: Sequence[Any]) -> HallRecord:
    """A row of HALL_COLUMNS."""
    hall, region, name, updated_at = row
    return HallRecord(hall, region, name, updated_at)


# The devices read, over the aliases d (devices), hl (halls), k (the current key), h (the newest
# device_health row): the same SQL on both backends. Presence: `retired` for a replaced device
# (whatever its gateway last said); an open `offline` alert of the
# gateway wins (it stays open until the device is back), else the newest health's presence (null
# there: the gateway never saw the device), else unknown. The EXISTS is one seek in the partial
# index of open alerts.
PRESENCE_SQL = ("CASE WHEN d.retired_at IS NOT NULL THEN 'retired' WHEN EXISTS (SELECT 1 FROM device_alerts o WHERE o.hall = d.hall AND o.device = d.device "
                "AND o.cleared_at IS NULL AND o.alert = 'offline') THEN 'offline' "
                "ELSE COALESCE(h.presence, 'unknown') END")
DEVICE_COLUMNS = ("d.device, d.hall, hl.region, d.window_id, k.kid, d.registered_at, d.updated_at, "
                  f"d.retired_at, {PRESENCE_SQL}")
DEVICE_JOINS = ("LEFT JOIN halls hl ON hl.hall = d.hall "
                "LEFT JOIN device_keys k ON k.device = d.device AND k.retired_at IS NULL "
                "LEFT JOIN device_health_latest l ON l.hall = d.hall AND l.device = d.device "
                "LEFT JOIN device_health h ON h.hall = l.hall AND h.device = l.device "
                "AND h.boot = l.boot AND h.up = l.up")
DEVICE_HEALTH_COLUMNS = ", ".join(f"h.{column}" for column in names(HEALTH_COLUMNS))


def device_record(row: Sequence[Any], open_alerts: Sequence[str]) -> DeviceRecord:
    """A row of DEVICE_COLUMNS, then DEVICE_HEALTH_COLUMNS; `open_alerts` the kind of each of its
    open alerts, sorted."""
    device, hall, region, window, kid, registered_at, updated_at, retired_at, presence, *latest = row
    return DeviceRecord(device, hall, window, kid, registered_at, updated_at,
                        stored_health(latest) if latest[0] is not None else None,
                        tuple(dict.fromkeys(open_alerts)), region, presence, len(open_alerts), retired_at)


# Registration and retirement ({p}: the backend's parameter mark). Registering a device again
# (its replacement back in service, a key rotation) ends a retirement.
REGISTER_DEVICE_SQL = ("INSERT INTO devices (device, hall, window_id, registered_at, updated_at) "
                       "VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (device) DO UPDATE SET "
                       "hall = excluded.hall, window_id = excluded.window_id, "
                       "updated_at = excluded.updated_at, retired_at = NULL")
# a second retirement keeps the first time: the items refused are the ones received after it
RETIRE_DEVICE_SQL = ("UPDATE devices SET retired_at = {p}, updated_at = {p} "
                     "WHERE device = {p} AND retired_at IS NULL")
RETIRED_DEVICE_SQL = "SELECT device, hall, window_id, retired_at FROM devices WHERE device = {p}"

# The batch's devices with every key they ever had (ingest: a rating verifies by its kid)
LOAD_DEVICES = ("SELECT d.device, d.hall, d.window_id, d.retired_at, k.kid, k.key_hex FROM devices d "
                "LEFT JOIN device_keys k ON k.device = d.device")


def device_keys(rows: Iterable[Sequence[Any]]) -> dict[str, DeviceKeys]:
    """Rows of LOAD_DEVICES -> DeviceKeys by device."""
    found: dict[str, tuple[str, str, str | None, dict[str, bytes]]] = {}
    for device, hall, window, retired_at, kid, key_hex in rows:
        entry = found.setdefault(device, (hall, window, retired_at, {}))
        if kid is not None:
            entry[3][kid] = bytes.fromhex(key_hex)
    return {device: DeviceKeys(hall, window, keys, retired_at)
            for device, (hall, window, retired_at, keys) in found.items()}


# ---------------------------------------------------------------------------- counter gaps

GAP_COLUMNS = "device, first_n, last_n, hall, missing, opened_at, closed_at"
HOLE_COLUMNS = "device, first_n, last_n, gap_first"
COUNTER_COLUMNS = "device, high, updated_at"
# A stored hole with its gap, as the ingest look-up returns them (h: rating_gap_holes, g: rating_gaps)
HOLE_AND_GAP_COLUMNS = ("h.device, h.first_n, h.last_n, h.gap_first, g.last_n, g.hall, g.missing, "
                        "g.opened_at, g.closed_at")
HOLES_SHOWN = 100  # runs listed per gap: enough to read; `missing` counts them all
GAP_STATES = {"open": "closed_at IS NULL", "closed": "closed_at IS NOT NULL", "all": None}


def gap_arrivals(plan: IngestPlan) -> list[tuple[str, int, str]]:
    """The accepted ratings as (device, n, hall), in item order: what moves the counters."""
    return [(item.rating.dev, item.rating.n, item.rating.hall) for item, _ in plan.ratings]


def holes_and_gaps(rows: Sequence[Sequence[Any]]) -> tuple[dict[str, list[Hole]], list[Gap]]:
    """Rows of HOLE_AND_GAP_COLUMNS (a hole may come more than once) as GapBook's holes and gaps."""
    holes: dict[str, dict[int, Hole]] = {}
    gaps: dict[tuple[str, int], Gap] = {}
    for device, first, last, gap_first, gap_last, hall, missing, opened_at, closed_at in rows:
        holes.setdefault(device, {})[first] = Hole(first, last, gap_first)
        gaps[(device, gap_first)] = Gap(device, gap_first, gap_last, hall, missing, opened_at, closed_at)
    return {device: list(by_first.values()) for device, by_first in holes.items()}, list(gaps.values())


def counter_rows(changes: GapChanges, at: str) -> list[tuple]:
    """The raised highs in COUNTER_COLUMNS order, by device."""
    return [(device, high, at) for device, high in sorted(changes.highs.items())]


def gap_rows(gaps: Sequence[Gap]) -> list[tuple]:
    """New gaps in GAP_COLUMNS order."""
    return [(g.device, g.first, g.last, g.hall, g.missing, g.opened_at, g.closed_at) for g in gaps]


def gap_update_rows(gaps: Sequence[Gap]) -> list[tuple]:
    """Changed gaps as (missing, closed_at, device, first_n): an UPDATE's parameters."""
    return [(g.missing, g.closed_at, g.device, g.first) for g in gaps]


def hole_rows(changes: GapChanges) -> list[tuple]:
    """Holes to store in HOLE_COLUMNS order."""
    return [(device, h.first, h.last, h.gap) for device, h in changes.holes_added]


def stored_gap(row: Sequence[Any], holes: Sequence[tuple[int, int]] = ()) -> StoredGap:
    """A row of GAP_COLUMNS and the gap's holes."""
    device, first, last, hall, missing, opened_at, closed_at = row
    return StoredGap(device, first, last, hall, missing, opened_at, closed_at, tuple(holes))


def device_gaps(row: Sequence[Any]) -> DeviceGaps:
    """A row of (device, COUNT(*), SUM(missing), MIN(opened_at)) over a device's open gaps."""
    device, gaps, missing, since = row
    return DeviceGaps(device, int(gaps), int(missing), since)
