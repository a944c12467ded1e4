"""Ingest items (docs/protocol.md, "Hub ingest"): form checks and the per-item decision.

Both are pure and shared by every store backend: a backend looks up what the batch touches inside
its write transaction, calls `decide`, and writes the returned plan in the same transaction.

Kinds: `service`, `rating`, and the gateway's device reports `health` (a snapshot of a device's
health message) and `alert` (a device alert of the gateway raised or cleared).

Rules, in order, for each item:
- form (`parse_item`): reasons from the contract's vocabulary (`bad_json`, `missing_field:x`,
  `bad_field:x`, `too_large`), plus `unknown_kind` and `wrong_hall` (rating's hall is not the batch's).
  Text no store can keep, anywhere in the item, is `bad_field:x` too: U+0000 (PostgreSQL text
  cannot hold it) or a lone surrogate (an unpaired `\\udXXX` JSON escape; not UTF-8);
- an item whose key is already stored: the same signed payload (rating) or the same content
  (service, health, alert) is `duplicate` and changes nothing; for a rating the first binding wins,
  a resend with another binding is still `duplicate`. A different payload is rejected `conflict` and
  raises an alert (`tampering` for ratings, `service_conflict`, `health_conflict`,
  `alert_conflict`), whether or not it is signed. An alert state whose alert id is stored for
  another device, alert kind or raise time is a `conflict` too (the gateway reused its alert ids);
- a new rating: `unknown_device` (not registered, or registered to another hall),
  `retired_device` (the gateway received it after the device was retired: a replacement took its
  window), `unknown_key` (kid is none of the device's keys), `bad_signature`; else `accepted`;
- a new health or alert state: `unknown_device`, `retired_device` (as for ratings, by its receive
  or raise/clear time); else `accepted`. The raise and
  the clear of one gateway alert make one alert row, whichever arrives first.
Items are decided in order, so an item repeated inside one batch is `duplicate` the second time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from datetime import UTC, datetime, timedelta
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
PRESENCES = ("online", "offline")  # a health item's `presence`, or null (never seen)
ALERT_STATES = ("raised", "cleared")
MAX_ALERT_KIND = 32  # the contract's limit; unknown kinds are kept as they are
MAX_ALERT_DETAIL = 300  # a sentence, never a payload (the gateway cuts its details there too)
MAX_ALERT_ID = 2**53  # the gateway's alert number: a SQLite rowid, kept to the JSON-safe range
MAX_UP_MS = 2**53  # a health's `up`, ms since boot (does not wrap)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # U+0000, and surrogates (paired ones are joined by json)
# In an item's compact JSON (_compact): U+0000 is written `\u0000`, a surrogate as it is. A match may
# be a false alarm (an escaped backslash before `u0000`): `_holds_unstorable_text` then decides.
_MAYBE_UNSTORABLE = re.compile(r"\\u0000|[\ud800-\udfff]")
# One encoder each, made once: json.dumps makes a new one per call (each item is encoded a few times)
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # as json.dumps with these
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")  # names a reason may carry

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
    text: str | None = field(default=None, compare=False)  # `raw` as compact JSON (_compact), if made

    @property
    def key(self) -> str:
        return f"rating:{self.rating.dev}:{self.rating.n}"

    @property
    def raw_text(self) -> str:
        """The posted item as compact JSON, as the ratings table keeps it (made once per item)."""
        return self.text if self.text is not None else _compact(self.raw)


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
        return self._canonical

    @cached_property
    def _canonical(self) -> str:  # decide compares it, the services table stores it: made once
        return _canonical({"hall": self.hall, "id": self.id, "ticket": self.ticket, "window": self.window,
                           "staff_id": self.staff_id, "staff_name": self.staff_name,
                           "matter_code": self.matter_code, "matter_name": self.matter_name,
                           "case_no": self.case_no, "unit": self.unit, "accepted_at": self.accepted_at,
                           "finished_at": self.finished_at, "outcome": self.outcome})


@dataclass(frozen=True)
class HealthItem:
    """A device health snapshot forwarded by the gateway; `health` is the device's payload."""

    hall: str
    device: str
    window: str | None
    received_at: str
    presence: str | None
    offset_ms: int | None
    health: dict
    boot: int  # from the payload: with `up`, the key
    up: int
    raw: dict = field(compare=False)

    @property
    def key(self) -> str:
        return f"health:{self.hall}:{self.device}:{self.boot}:{self.up}"

    @property
    def received_ms(self) -> int:
        """`received_at` as Unix milliseconds: what "newest" means across UTC offsets."""
        return unix_ms(self.received_at)

    def canonical(self) -> str:
        """The known fields (the payload whole) as sorted compact JSON: equal strings, same item."""
        return self._canonical

    @cached_property
    def _canonical(self) -> str:
        return _canonical({"hall": self.hall, "device": self.device, "window": self.window,
                           "received_at": self.received_at, "presence": self.presence,
                           "offset_ms": self.offset_ms, "health": self.health})


@dataclass(frozen=True)
class AlertItem:
    """One state (`raised` or `cleared`) of a device alert of the gateway; `id` is unique per hall."""

    hall: str
    id: int
    device: str
    window: str | None
    alert: str
    state: str
    detail: str | None
    raised_at: str
    cleared_at: str | None
    raw: dict = field(compare=False)

    @property
    def key(self) -> str:
        return f"alert:{self.hall}:{self.id}:{self.state}"

    @property
    def identity(self) -> tuple[str, str, str]:
        """What the raise and the clear of one alert share."""
        return (self.device, self.alert, self.raised_at)

    def canonical(self) -> str:
        return _canonical({"hall": self.hall, "id": self.id, "device": self.device,
                           "window": self.window, "alert": self.alert, "state": self.state,
                           "detail": self.detail, "raised_at": self.raised_at,
                           "cleared_at": self.cleared_at})


@dataclass(frozen=True)
class BadItem:
    """An item that failed its form checks; `key` is a best guess, None when there is none."""

    key: str | None
    reason: str
    raw: object


ParsedItem = RatingItem | ServiceItem | HealthItem | AlertItem | BadItem


# ---------------------------------------------------------------------------- field checks


def _item_text(obj: object) -> str | None:
    """`obj` as compact JSON, or None where it cannot be (not JSON, or nested too deep to encode)."""
    try:
        return _compact(obj)
    except (TypeError, ValueError, RecursionError):
        return None


def _fits_device_limit(text: str | None) -> bool:
    """Whether an item's compact JSON is within a device payload's limit: then so is the payload
    inside it (encoded the same way, it is a part of that text)."""
    return text is not None and len(text.encode("utf-8")) <= MAX_MQTT_PAYLOAD


def _holds_unstorable_text(obj: object) -> bool:
    """Whether any string in `obj` (keys too, at any depth) has a character no store can keep.
    A loop, not recursion: an item may nest as deep as the JSON parser allowed."""
    stack, search = [obj], _UNSTORABLE.search
    while stack:
        value = stack.pop()
        if type(value) is str:
            if search(value):
                return True
        elif type(value) is dict:
            for key, item in value.items():
                if type(key) is str and search(key):
                    return True
                stack.append(item)
        elif type(value) is list:
            stack.extend(value)
    return False


def _unstorable_reason(obj: dict) -> str:
    """`bad_field:x` (`x.y` inside an object) naming where `obj` holds unstorable text; `bad_json`
    when that is not under a plain field name (a bad key, say)."""
    for key, value in obj.items():
        if not _holds_unstorable_text({key: value}):
            continue
        if type(key) is not str or not _FIELD_NAME.fullmatch(key):
            return "bad_json"
        if type(value) is dict:
            for inner, item in value.items():
                named = type(inner) is str and _FIELD_NAME.fullmatch(inner)
                if named and _holds_unstorable_text({inner: item}):
                    return f"bad_field:{key}.{inner}"
        return f"bad_field:{key}"
    return "bad_json"


def unix_ms(text: str) -> int:
    """An ISO 8601 time with a UTC offset (as checked by `field_time`) as Unix milliseconds."""
    return (datetime.fromisoformat(text) - _EPOCH) // timedelta(milliseconds=1)


def _device_payload_size(payload: dict, name: str) -> None:
    """`too_large` for a device payload over the device's own limit, measured on compact JSON."""
    try:
        size = len(_compact(payload).encode("utf-8"))
    except (TypeError, ValueError):
        raise ProtocolError("bad_json", f"{name} is not JSON") from None
    if size > MAX_MQTT_PAYLOAD:  # the device never sends more (docs/protocol.md)
        raise ProtocolError("too_large", f"{name}: {size} bytes")


def _nullable_int(obj: dict, name: str, lo: int, hi: int) -> int | None:
    """obj[name] as an int in lo..hi, or None when absent or null."""
    return None if obj.get(name) is None else field_int(obj, name, lo, hi)


# ---------------------------------------------------------------------------- parse


def parse_item(obj: object, hall: str) -> ParsedItem:
    """Check one item's form against the batch's `hall`. Never raises."""
    try:
        if not isinstance(obj, dict):
            raise ProtocolError("bad_json", "item is not an object")
        text = _item_text(obj)  # one encoding: the text check's fast path, the size check, the stored item
        if (text is None or _MAYBE_UNSTORABLE.search(text)) and _holds_unstorable_text(obj):
            raise ProtocolError(_unstorable_reason(obj), "text with U+0000 or a lone surrogate")
        kind = field_str(obj, "kind", max_len=32)
        if kind == "rating":
            return _rating_item(obj, hall, text)
        if kind == "service":
            return _service_item(obj, hall)
        if kind == "health":
            return _health_item(obj, hall, text)
        if kind == "alert":
            return _alert_item(obj, hall)
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
    if obj.get("kind") == "health" and isinstance(obj.get("health"), dict):
        dev, boot, up = obj.get("device"), obj["health"].get("boot"), obj["health"].get("up")
        if (isinstance(dev, str) and DEVICE_RE.fullmatch(dev) and type(boot) is int
                and 0 <= boot <= MAX_COUNTER and type(up) is int and 0 <= up <= MAX_UP_MS):
            return f"health:{hall}:{dev}:{boot}:{up}"
    if obj.get("kind") == "alert":
        aid, state = obj.get("id"), obj.get("state")
        if type(aid) is int and 1 <= aid <= MAX_ALERT_ID and isinstance(state, str) \
                and state in ALERT_STATES:
            return f"alert:{hall}:{aid}:{state}"
    return None


def _rating_item(obj: dict, hall: str, text: str | None = None) -> RatingItem:
    if "rating" not in obj:
        raise ProtocolError("missing_field:rating")
    payload = obj["rating"]
    if isinstance(payload, dict) and not _fits_device_limit(text):
        _device_payload_size(payload, "rating")
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
    return RatingItem(rating, received_at, offset_ms, binding, unbound, obj, text)  # type: ignore[arg-type]


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


def _health_item(obj: dict, hall: str, text: str | None = None) -> HealthItem:
    device = field_str(obj, "device", DEVICE_RE, max_len=32)
    if "health" not in obj:
        raise ProtocolError("missing_field:health")
    payload = obj["health"]
    if not isinstance(payload, dict):
        raise ProtocolError("bad_field:health", "not an object")
    if not _fits_device_limit(text):
        _device_payload_size(payload, "health")
    try:  # the key's parts; the rest of the payload is kept as the device sent it
        boot = field_int(payload, "boot", 0, MAX_COUNTER)
        up = field_int(payload, "up", 0, MAX_UP_MS)
    except ProtocolError as exc:  # name the field inside the payload
        raise ProtocolError(exc.reason.replace(":", ":health.", 1), str(exc)) from None
    presence = obj.get("presence")
    if presence is not None and (not isinstance(presence, str) or presence not in PRESENCES):
        raise ProtocolError("bad_field:presence", repr(presence)[:80])
    return HealthItem(
        hall=hall,
        device=device,  # type: ignore[arg-type]
        window=field_str(obj, "window", WINDOW_RE, max_len=16, required=False, nullable=True),
        received_at=field_time(obj, "received_at"),  # type: ignore[arg-type]
        presence=presence,
        offset_ms=_nullable_int(obj, "offset_ms", -MAX_OFFSET_MS, MAX_OFFSET_MS),
        health=payload,
        boot=boot,  # type: ignore[arg-type]
        up=up,  # type: ignore[arg-type]
        raw=obj,
    )


def _alert_item(obj: dict, hall: str) -> AlertItem:
    alert_id = field_int(obj, "id", 1, MAX_ALERT_ID)
    device = field_str(obj, "device", DEVICE_RE, max_len=32)
    kind = field_str(obj, "alert", max_len=MAX_ALERT_KIND)
    state = field_str(obj, "state", max_len=16)
    if state not in ALERT_STATES:
        raise ProtocolError("bad_field:state", repr(state)[:80])
    raised_at = field_time(obj, "raised_at")
    detail = obj.get("detail")  # free text: may be empty
    if detail is not None and (not isinstance(detail, str) or len(detail) > MAX_ALERT_DETAIL):
        raise ProtocolError("bad_field:detail", repr(detail)[:80])
    cleared = state == "cleared"
    cleared_at = field_time(obj, "cleared_at", required=cleared, nullable=not cleared)
    if not cleared and cleared_at is not None:
        raise ProtocolError("bad_field:cleared_at", "set on a raised alert")
    return AlertItem(
        hall=hall,
        id=alert_id,  # type: ignore[arg-type]
        device=device,  # type: ignore[arg-type]
        window=field_str(obj, "window", WINDOW_RE, max_len=16, required=False, nullable=True),
        alert=kind,  # type: ignore[arg-type]
        state=state,
        detail=detail,
        raised_at=raised_at,  # type: ignore[arg-type]
        cleared_at=cleared_at,
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
    retired_at: str | None = None  # replaced (hub time, UTC ISO): later items are refused

    def retired_by(self, at: str) -> bool:
        """Was the device retired when the gateway received an item at `at` (ISO 8601)? A time
        that cannot be read counts as after: a retired device's item is refused, not guessed."""
        if self.retired_at is None:
            return False
        try:
            return unix_ms(at) >= unix_ms(self.retired_at)
        except (ValueError, TypeError):
            return True


@dataclass(frozen=True)
class DeviceAlertRow:
    """A gateway alert as the hub keeps it: one row per hall and alert id, from its raise and its
    clear (`raised`, `cleared`: the canonical JSON of each state's item, None until it arrived).
    `window` and `detail` are the newest state's: the clear's once it arrived."""

    id: int
    device: str
    window: str | None
    alert: str
    detail: str | None
    raised_at: str
    cleared_at: str | None
    raised: str | None
    cleared: str | None

    @property
    def state(self) -> str:
        return "cleared" if self.cleared is not None else "raised"

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.device, self.alert, self.raised_at)

    def stored(self, state: str) -> str | None:
        """The canonical JSON of the item of `state` that was stored, or None."""
        return self.raised if state == "raised" else self.cleared

    @classmethod
    def merge(cls, row: DeviceAlertRow | None, item: AlertItem) -> DeviceAlertRow:
        """`row` (None: nothing stored yet) with `item`'s state added; the clear is the newer."""
        posted = item.canonical()
        if row is None:
            return cls(item.id, item.device, item.window, item.alert, item.detail, item.raised_at,
                       item.cleared_at, posted if item.state == "raised" else None,
                       posted if item.state == "cleared" else None)
        if item.state == "cleared":
            return replace(row, window=item.window, detail=item.detail, cleared_at=item.cleared_at,
                           cleared=posted)
        return replace(row, raised=posted)  # a raise after its clear: the clear's fields stay


@dataclass
class IngestPlan:
    """What a batch writes, all in one transaction."""

    results: list[ItemResult] = field(default_factory=list)
    ratings: list[tuple[RatingItem, str]] = field(default_factory=list)  # item, device's window
    services: list[ServiceItem] = field(default_factory=list)
    health: list[HealthItem] = field(default_factory=list)
    device_alerts: dict[int, DeviceAlertRow] = field(default_factory=dict)  # id -> row as it ends up
    rejections: list[tuple[str | None, str, str]] = field(default_factory=list)  # key, reason, item
    alerts: list[tuple[str, str, str]] = field(default_factory=list)  # kind, key, detail JSON


@dataclass
class Lookups:
    """What a backend must load before `decide` (all of the batch's hall where a hall applies)."""

    devices: set[str] = field(default_factory=set)
    ratings: set[tuple[str, int]] = field(default_factory=set)  # (dev, n)
    services: set[str] = field(default_factory=set)  # service ids
    health: set[tuple[str, int, int]] = field(default_factory=set)  # (device, boot, up)
    alerts: set[int] = field(default_factory=set)  # gateway alert ids


def lookups(items: Iterable[ParsedItem]) -> Lookups:
    """The device ids and stored keys that the batch's items name."""
    found = Lookups()
    for item in items:
        if isinstance(item, RatingItem):
            found.devices.add(item.rating.dev)
            found.ratings.add((item.rating.dev, item.rating.n))
        elif isinstance(item, ServiceItem):
            found.services.add(item.id)
        elif isinstance(item, HealthItem):
            found.devices.add(item.device)
            found.health.add((item.device, item.boot, item.up))
        elif isinstance(item, AlertItem):
            found.devices.add(item.device)
            found.alerts.add(item.id)
    return found


def stored_item_text(raw: object) -> str:
    """An item as kept in the rejections table: JSON, cut to MAX_STORED_ITEM_CHARS, storable
    (JSON escapes U+0000; a lone surrogate becomes `?`)."""
    try:
        text = _compact(raw)
    except (TypeError, ValueError):
        text = repr(raw)
    return text[:MAX_STORED_ITEM_CHARS].encode("utf-8", "replace").decode("utf-8")


def decide(items: Iterable[ParsedItem], devices: Mapping[str, DeviceKeys],
           stored_ratings: MutableMapping[tuple[str, int], Rating],
           stored_services: MutableMapping[str, str],
           stored_health: MutableMapping[tuple[str, int, int], str],
           stored_alerts: MutableMapping[int, DeviceAlertRow]) -> IngestPlan:
    """Decide every item in order (module docstring); the stored maps are updated as it goes.

    `devices` holds the batch's registered devices, `stored_ratings` the stored ratings the batch
    names; the other maps hold what the batch names of its hall: `stored_services` (id -> canonical
    JSON), `stored_health` ((device, boot, up) -> canonical JSON), `stored_alerts` (alert id -> row).
    """
    plan = IngestPlan()

    def reject(key: str | None, reason: str, raw: object) -> None:
        plan.results.append(ItemResult(key, "rejected", reason))
        plan.rejections.append((key, reason, stored_item_text(raw)))

    def conflict(kind: str, key: str, raw: object, stored: str, posted: str) -> None:
        reject(key, "conflict", raw)
        detail = {"stored": json.loads(stored), "posted": json.loads(posted)}
        plan.alerts.append((kind, key, _compact(detail)))

    def registered_here(device: str, hall: str) -> bool:
        known = devices.get(device)
        return known is not None and known.hall == hall

    def retired(device: str, at: str) -> bool:
        known = devices.get(device)
        return known is not None and known.retired_by(at)

    for item in items:
        if isinstance(item, BadItem):
            reject(item.key, item.reason, item.raw)
        elif isinstance(item, HealthItem):
            ident = (item.device, item.boot, item.up)
            stored, posted = stored_health.get(ident), item.canonical()
            if stored == posted:
                plan.results.append(ItemResult(item.key, "duplicate"))
            elif stored is not None:
                conflict("health_conflict", item.key, item.raw, stored, posted)
            elif not registered_here(item.device, item.hall):
                reject(item.key, "unknown_device", item.raw)
            elif retired(item.device, item.received_at):
                reject(item.key, "retired_device", item.raw)
            else:
                stored_health[ident] = posted
                plan.health.append(item)
                plan.results.append(ItemResult(item.key, "accepted"))
        elif isinstance(item, AlertItem):
            row, posted = stored_alerts.get(item.id), item.canonical()
            stored = row.stored(item.state) if row is not None else None
            if stored == posted:
                plan.results.append(ItemResult(item.key, "duplicate"))
            elif stored is not None:
                conflict("alert_conflict", item.key, item.raw, stored, posted)
            elif row is not None and row.identity != item.identity:  # the id was used again
                other = row.raised or row.cleared
                conflict("alert_conflict", item.key, item.raw, other, posted)  # type: ignore[arg-type]
            elif not registered_here(item.device, item.hall):
                reject(item.key, "unknown_device", item.raw)
            elif retired(item.device, item.cleared_at or item.raised_at):
                reject(item.key, "retired_device", item.raw)
            else:
                merged = DeviceAlertRow.merge(row, item)
                stored_alerts[item.id] = plan.device_alerts[item.id] = merged
                plan.results.append(ItemResult(item.key, "accepted"))
        elif isinstance(item, ServiceItem):
            stored = stored_services.get(item.id)
            if stored is None:
                stored_services[item.id] = item.canonical()
                plan.services.append(item)
                plan.results.append(ItemResult(item.key, "accepted"))
            elif stored == item.canonical():
                plan.results.append(ItemResult(item.key, "duplicate"))
            else:
                conflict("service_conflict", item.key, item.raw, stored, item.canonical())
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
            elif device.retired_by(item.received_at):  # type: ignore[union-attr]
                reject(item.key, "retired_device", item.raw)
            elif key is None:
                reject(item.key, "unknown_key", item.raw)
            elif not rating.verify(key):
                reject(item.key, "bad_signature", item.raw)
            else:
                stored_ratings[(rating.dev, rating.n)] = rating
                plan.ratings.append((item, device.window))  # type: ignore[union-attr]
                plan.results.append(ItemResult(item.key, "accepted"))
    return plan
