"""Ingest items (docs/protocol.md, "Hub ingest"): form checks and the per-item decision.

Both are pure and shared by every store backend: a backend looks up what the batch touches inside
its write transaction, calls `decide`, and writes the returned plan in the same transaction.

Rules, in order, for each item:
- form (`parse_item`): reasons from the contract's vocabulary (`bad_json`, `missing_field:x`,
  `bad_field:x`, `too_large`), plus `unknown_kind` and `wrong_hall` (rating's hall is not the batch's);
- an item whose key is already stored: the same signed payload (rating) or the same content
  (service) is `duplicate` and changes nothing; for a rating the first binding wins, a resend with
  another binding is still `duplicate`. A different payload is rejected `conflict` and raises an
  alert (`tampering` for ratings, `service_conflict` for services), whether or not it is signed;
- a new rating: `unknown_device` (not registered, or registered to another hall), `unknown_key`
  (kid is none of the device's keys), `bad_signature`; else `accepted`.
Items are decided in order, so an item repeated inside one batch is `duplicate` the second time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Literal

from hcp.protocol import (
    DEVICE_RE,
    MAX_COUNTER,
    MAX_MQTT_PAYLOAD,
    SESSION_RE,
    UNBOUND_REASONS,
    WINDOW_RE,
    ProtocolError,
    Rating,
    field_int,
    field_str,
    field_time,
    rating_from_object,
)

MAX_STORED_ITEM_CHARS = 2000  # a rejected item is kept for diagnosis, not archived whole
MAX_OFFSET_MS = 2**53  # the JSON-safe integer range; a device's mono may be as large
SERVICE_OUTCOMES = ("finished", "no_show")

Status = Literal["accepted", "duplicate", "rejected"]


# ---------------------------------------------------------------------------- parsed items


@dataclass(frozen=True)
class Binding:
    """The gateway's binding of a rating to a service (all strings as sent)."""

    service: str
    ticket: str
    window: str
    staff_id: str | None
    matter_code: str | None
    case_no: str | None
    unit: str | None


@dataclass(frozen=True)
class RatingItem:
    rating: Rating
    received_at: str
    offset_ms: int
    binding: Binding | None
    unbound_reason: str | None
    raw: dict

    @property
    def key(self) -> str:
        return f"rating:{self.rating.dev}:{self.rating.n}"


@dataclass(frozen=True)
class ServiceItem:
    hall: str
    id: str
    ticket: str
    window: str
    staff_id: str | None
    staff_name: str | None
    matter_code: str | None
    matter_name: str | None
    case_no: str | None
    unit: str | None
    accepted_at: str | None
    finished_at: str | None
    outcome: str
    raw: dict = field(compare=False)

    @property
    def key(self) -> str:
        return f"service:{self.hall}:{self.id}"

    def canonical(self) -> str:
        """The known fields as sorted compact JSON: equal strings mean the same service."""
        fields = {name: getattr(self, name) for name in (
            "hall", "id", "ticket", "window", "staff_id", "staff_name", "matter_code", "matter_name",
            "case_no", "unit", "accepted_at", "finished_at", "outcome")}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class BadItem:
    """An item that failed its form checks; `key` is a best guess, None when there is none."""

    key: str | None
    reason: str
    raw: object


ParsedItem = RatingItem | ServiceItem | BadItem


# ---------------------------------------------------------------------------- field checks


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------- parse


def parse_item(obj: object, hall: str) -> ParsedItem:
    """Check one item's form against the batch's `hall`. Never raises."""
    try:
        if not isinstance(obj, dict):
            raise ProtocolError("bad_json", "item is not an object")
        kind = field_str(obj, "kind", max_len=32)
        if kind == "rating":
            return _rating_item(obj, hall)
        if kind == "service":
            return _service_item(obj, hall)
        raise ProtocolError("unknown_kind", repr(kind)[:40])
    except ProtocolError as exc:
        return BadItem(guess_key(obj, hall), exc.reason, obj)


def guess_key(obj: object, hall: str) -> str | None:
    """The item's key when the fields it is made of are well formed, whatever else is wrong."""
    if not isinstance(obj, dict):
        return None
    if obj.get("kind") == "rating" and isinstance(obj.get("rating"), dict):
        dev, n = obj["rating"].get("dev"), obj["rating"].get("n")
        if isinstance(dev, str) and DEVICE_RE.fullmatch(dev) and type(n) is int and 1 <= n <= MAX_COUNTER:
            return f"rating:{dev}:{n}"
    if obj.get("kind") == "service":
        sid = obj.get("id")
        if isinstance(sid, str) and SESSION_RE.fullmatch(sid):
            return f"service:{hall}:{sid}"
    return None


def _rating_item(obj: dict, hall: str) -> RatingItem:
    if "rating" not in obj:
        raise ProtocolError("missing_field:rating")
    payload = obj["rating"]
    if isinstance(payload, dict):
        try:
            size = len(_compact(payload).encode("utf-8"))
        except (TypeError, ValueError):
            raise ProtocolError("bad_json", "rating is not JSON") from None
        if size > MAX_MQTT_PAYLOAD:  # the device never sends more (docs/protocol.md)
            raise ProtocolError("too_large", f"{size} bytes")
    rating = rating_from_object(payload)
    if rating.hall != hall:
        raise ProtocolError("wrong_hall", f"rating of hall {rating.hall} in a batch of {hall}")
    received_at = field_time(obj, "received_at")
    offset_ms = field_int(obj, "offset_ms", -MAX_OFFSET_MS, MAX_OFFSET_MS)
    if "binding" not in obj:
        raise ProtocolError("missing_field:binding")
    binding = _binding(obj["binding"])
    unbound = obj.get("unbound_reason")
    if binding is None and unbound not in UNBOUND_REASONS:
        raise ProtocolError("bad_field:unbound_reason", repr(unbound)[:80])
    if binding is not None and unbound is not None:
        raise ProtocolError("bad_field:unbound_reason", "set on a bound rating")
    return RatingItem(rating, received_at, offset_ms, binding, unbound, obj)  # type: ignore[arg-type]


def _binding(obj: object) -> Binding | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_field:binding", "not an object or null")
    try:
        return Binding(
            service=field_str(obj, "service", SESSION_RE, max_len=40),  # type: ignore[arg-type]
            ticket=field_str(obj, "ticket", max_len=16),  # type: ignore[arg-type]
            window=field_str(obj, "window", WINDOW_RE, max_len=16),  # type: ignore[arg-type]
            staff_id=field_str(obj, "staff_id", max_len=64, required=False, nullable=True),
            matter_code=field_str(obj, "matter_code", max_len=64, required=False, nullable=True),
            case_no=field_str(obj, "case_no", max_len=64, required=False, nullable=True),
            unit=field_str(obj, "unit", max_len=200, required=False, nullable=True),
        )
    except ProtocolError as exc:  # name the field inside the binding
        raise ProtocolError(exc.reason.replace(":", ":binding.", 1), str(exc)) from None


def _service_item(obj: dict, hall: str) -> ServiceItem:
    outcome = field_str(obj, "outcome", max_len=16)
    if outcome not in SERVICE_OUTCOMES:
        raise ProtocolError("bad_field:outcome", repr(outcome))
    return ServiceItem(
        hall=hall,
        id=field_str(obj, "id", SESSION_RE, max_len=40),  # type: ignore[arg-type]
        ticket=field_str(obj, "ticket", max_len=16),  # type: ignore[arg-type]
        window=field_str(obj, "window", WINDOW_RE, max_len=16),  # type: ignore[arg-type]
        staff_id=field_str(obj, "staff_id", max_len=64, required=False, nullable=True),
        staff_name=field_str(obj, "staff_name", max_len=64, required=False, nullable=True),
        matter_code=field_str(obj, "matter_code", max_len=64, required=False, nullable=True),
        matter_name=field_str(obj, "matter_name", max_len=200, required=False, nullable=True),
        case_no=field_str(obj, "case_no", max_len=64, required=False, nullable=True),
        unit=field_str(obj, "unit", max_len=200, required=False, nullable=True),
        accepted_at=field_time(obj, "accepted_at", required=False, nullable=True),
        finished_at=field_time(obj, "finished_at"),  # when the service ended, a no-show too
        outcome=outcome,  # type: ignore[arg-type]
        raw=obj,
    )


# ---------------------------------------------------------------------------- decide


@dataclass(frozen=True)
class ItemResult:
    """One answer of the ingest response, in item order."""

    key: str | None
    status: Status
    reason: str | None = None


@dataclass(frozen=True)
class DeviceKeys:
    """A registered device as ingest needs it: its hall, window and every key it ever had."""

    hall: str
    window: str
    keys: Mapping[str, bytes]  # kid -> key


@dataclass
class IngestPlan:
    """What a batch writes, all in one transaction."""

    results: list[ItemResult] = field(default_factory=list)
    ratings: list[tuple[RatingItem, str]] = field(default_factory=list)  # item, device's window
    services: list[ServiceItem] = field(default_factory=list)
    rejections: list[tuple[str | None, str, str]] = field(default_factory=list)  # key, reason, item
    alerts: list[tuple[str, str, str]] = field(default_factory=list)  # kind, key, detail JSON


def lookups(items: Iterable[ParsedItem]) -> tuple[set[str], set[tuple[str, int]], set[str]]:
    """What a backend must load before `decide`: device ids, rating (dev, n), service ids."""
    devices: set[str] = set()
    ratings: set[tuple[str, int]] = set()
    services: set[str] = set()
    for item in items:
        if isinstance(item, RatingItem):
            devices.add(item.rating.dev)
            ratings.add((item.rating.dev, item.rating.n))
        elif isinstance(item, ServiceItem):
            services.add(item.id)
    return devices, ratings, services


def stored_item_text(raw: object) -> str:
    """An item as kept in the rejections table: JSON, cut to MAX_STORED_ITEM_CHARS."""
    try:
        text = _compact(raw)
    except (TypeError, ValueError):
        text = repr(raw)
    return text[:MAX_STORED_ITEM_CHARS]


def decide(items: Iterable[ParsedItem], devices: Mapping[str, DeviceKeys],
           stored_ratings: MutableMapping[tuple[str, int], Rating],
           stored_services: MutableMapping[str, str]) -> IngestPlan:
    """Decide every item in order (module docstring); the two stored maps are updated as it goes.

    `devices` holds the batch's registered devices, `stored_ratings` the stored ratings the batch
    names, `stored_services` the stored services of the batch's hall (id -> canonical JSON).
    """
    plan = IngestPlan()

    def reject(key: str | None, reason: str, raw: object) -> None:
        plan.results.append(ItemResult(key, "rejected", reason))
        plan.rejections.append((key, reason, stored_item_text(raw)))

    for item in items:
        if isinstance(item, BadItem):
            reject(item.key, item.reason, item.raw)
        elif isinstance(item, ServiceItem):
            stored = stored_services.get(item.id)
            if stored is None:
                stored_services[item.id] = item.canonical()
                plan.services.append(item)
                plan.results.append(ItemResult(item.key, "accepted"))
            elif stored == item.canonical():
                plan.results.append(ItemResult(item.key, "duplicate"))
            else:
                reject(item.key, "conflict", item.raw)
                detail = {"stored": json.loads(stored), "posted": json.loads(item.canonical())}
                plan.alerts.append(("service_conflict", item.key, _compact(detail)))
        else:
            rating = item.rating
            device = devices.get(rating.dev)
            known = device is not None and device.hall == rating.hall
            key = device.keys.get(rating.kid) if known else None  # type: ignore[union-attr]
            stored_rating = stored_ratings.get((rating.dev, rating.n))
            if stored_rating is not None:
                if stored_rating == rating:
                    plan.results.append(ItemResult(item.key, "duplicate"))
                else:
                    reject(item.key, "conflict", item.raw)
                    detail = {"stored": stored_rating.payload(), "posted": rating.payload(),
                              "signature_valid": None if key is None else rating.verify(key)}
                    plan.alerts.append(("tampering", item.key, _compact(detail)))
            elif not known:
                reject(item.key, "unknown_device", item.raw)
            elif key is None:
                reject(item.key, "unknown_key", item.raw)
            elif not rating.verify(key):
                reject(item.key, "bad_signature", item.raw)
            else:
                stored_ratings[(rating.dev, rating.n)] = rating
                plan.ratings.append((item, device.window))  # type: ignore[union-attr]
                plan.results.append(ItemResult(item.key, "accepted"))
    return plan
