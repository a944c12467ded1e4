"""The v1 wire contract (docs/protocol.md) for the CPython side: gateway, hub and simulator.

The device's own encoder is `firmware/lib/wire.py`; both are tested against `tests/vectors/`.
Decoders raise `ProtocolError` whose `reason` is the short, documented reason string that the
gateway's quarantine and the hub's per-item answers carry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime

VERSION = 1
TOPIC_PREFIX = "hcp/v1"
MAX_MQTT_PAYLOAD = 1024  # bytes; a device never sends more, so more is an attack or a bug
MAX_COUNTER = 2**31 - 1

HALL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
DEVICE_RE = HALL_RE
WINDOW_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}")
SESSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
KID_RE = re.compile(r"[0-9a-f]{8}")
SIG_RE = re.compile(r"[0-9a-f]{64}")

LEVELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
BAD_SCORES = frozenset({1, 2})

DEVICE_TOPICS = ("rating", "status", "health", "cmd/reply")  # device -> gateway
GATEWAY_TOPICS = ("ack", "prompt", "cmd")  # gateway -> device

QUEUE_EVENT_TYPES = ("called", "started", "accepted", "finished", "no_show")
UNBOUND_REASONS = ("unknown_session", "session_already_rated", "no_service_in_progress")


class ProtocolError(ValueError):
    """Bad input at a boundary; `reason` is the documented machine-readable reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ---------------------------------------------------------------------------- topics


def topic(hall: str, device: str, suffix: str) -> str:
    return f"{TOPIC_PREFIX}/{hall}/{device}/{suffix}"


def parse_topic(name: str) -> tuple[str, str, str]:
    """`hcp/v1/{hall}/{device}/{suffix}` -> (hall, device, suffix); ProtocolError otherwise."""
    parts = name.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != TOPIC_PREFIX:
        raise ProtocolError("bad_topic", name)
    hall, device, suffix = parts[2], parts[3], "/".join(parts[4:])
    if not HALL_RE.fullmatch(hall) or not DEVICE_RE.fullmatch(device):
        raise ProtocolError("bad_topic", name)
    if suffix not in DEVICE_TOPICS and suffix not in GATEWAY_TOPICS:
        raise ProtocolError("bad_topic", name)
    return hall, device, suffix


# ---------------------------------------------------------------------------- field checks


def _load_object(raw: bytes | str, limit: int | None = MAX_MQTT_PAYLOAD) -> dict:
    if limit is not None and len(raw) > limit:
        raise ProtocolError("too_large", f"{len(raw)} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "not an object")
    _check_version(obj)
    return obj


def _check_version(obj: dict) -> None:
    if "v" not in obj or type(obj["v"]) is not int or obj["v"] != VERSION:
        raise ProtocolError("bad_version", repr(obj.get("v")))


def field_int(obj: dict, name: str, lo: int, hi: int, required: bool = True) -> int | None:
    """obj[name] as an int in lo..hi (never a bool); ProtocolError missing_field/bad_field."""
    if name not in obj:
        if required:
            raise ProtocolError(f"missing_field:{name}")
        return None
    value = obj[name]
    if type(value) is not int or not lo <= value <= hi:  # bool is not an int here
        raise ProtocolError(f"bad_field:{name}", repr(value))
    return value


def field_str(obj: dict, name: str, pattern: re.Pattern | None = None, max_len: int = 256,
              required: bool = True, nullable: bool = False) -> str | None:
    """obj[name] as a non-empty string of at most max_len matching pattern; None when absent
    (if not required) or null (if nullable). ProtocolError missing_field/bad_field otherwise."""
    if name not in obj:
        if required:
            raise ProtocolError(f"missing_field:{name}")
        return None
    value = obj[name]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ProtocolError(f"bad_field:{name}", repr(value)[:80])
    if pattern is not None and not pattern.fullmatch(value):
        raise ProtocolError(f"bad_field:{name}", repr(value)[:80])
    return value


def field_time(obj: dict, name: str, required: bool = True, nullable: bool = False) -> str | None:
    """obj[name] as an ISO 8601 time with a UTC offset, returned as sent."""
    text = field_str(obj, name, max_len=40, required=required, nullable=nullable)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolError(f"bad_field:{name}", repr(text)) from None
    if parsed.tzinfo is None:
        raise ProtocolError(f"bad_field:{name}", "no UTC offset")
    return text


# ---------------------------------------------------------------------------- ratings


def key_id(key: bytes) -> str:
    """The key id: first 4 bytes of SHA-256(key), lowercase hex."""
    return hashlib.sha256(key).hexdigest()[:8]


@dataclass(frozen=True)
class Rating:
    hall: str
    dev: str
    n: int
    boot: int
    mono: int
    sess: str | None
    score: int
    kid: str
    sig: str

    @property
    def rating_id(self) -> str:
        return f"{self.dev}:{self.n}"

    def canonical(self) -> bytes:
        return canonical_rating_bytes(self.hall, self.dev, self.n, self.boot, self.mono,
                                      self.sess, self.score, self.kid)

    def verify(self, key: bytes) -> bool:
        expected = hmac.new(key, self.canonical(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.sig)

    def payload(self) -> dict:
        """The JSON object the device sends (field order is not significant)."""
        return {"v": VERSION, "hall": self.hall, "dev": self.dev, "n": self.n, "boot": self.boot,
                "mono": self.mono, "sess": self.sess, "score": self.score, "kid": self.kid,
                "sig": self.sig}


def canonical_rating_bytes(hall: str, dev: str, n: int, boot: int, mono: int,
                           sess: str | None, score: int, kid: str) -> bytes:
    fields = ("hcp1", "rating", hall, dev, str(n), str(boot), str(mono), sess or "", str(score), kid)
    return "\n".join(fields).encode("ascii")


def sign_rating(key: bytes, hall: str, dev: str, n: int, boot: int, mono: int,
                sess: str | None, score: int) -> Rating:
    """Make a signed rating the way a device does (simulator's lightweight devices, tests)."""
    kid = key_id(key)
    sig = hmac.new(key, canonical_rating_bytes(hall, dev, n, boot, mono, sess, score, kid),
                   hashlib.sha256).hexdigest()
    return Rating(hall, dev, n, boot, mono, sess, score, kid, sig)


def rating_from_object(obj: dict) -> Rating:
    """Validate a rating object's form (not its signature)."""
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "not an object")
    _check_version(obj)
    hall = field_str(obj, "hall", HALL_RE)
    dev = field_str(obj, "dev", DEVICE_RE)
    n = field_int(obj, "n", 1, MAX_COUNTER)
    boot = field_int(obj, "boot", 0, MAX_COUNTER)
    mono = field_int(obj, "mono", 0, 2**53)
    if "sess" not in obj:
        raise ProtocolError("missing_field:sess")
    sess = field_str(obj, "sess", SESSION_RE, nullable=True)
    score = field_int(obj, "score", 1, 5)
    kid = field_str(obj, "kid", KID_RE)
    sig = field_str(obj, "sig", SIG_RE)
    return Rating(hall, dev, n, boot, mono, sess, score, kid, sig)  # type: ignore[arg-type]


def decode_rating(raw: bytes | str, hall: str | None = None, device: str | None = None) -> Rating:
    """Decode a `rating` MQTT payload; `hall`/`device` from the topic must match the payload."""
    rating = rating_from_object(_load_object(raw))
    if (hall is not None and rating.hall != hall) or (device is not None and rating.dev != device):
        raise ProtocolError("topic_mismatch", f"{rating.hall}/{rating.dev}")
    return rating


# ---------------------------------------------------------------------------- gateway -> device


def _compact(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_ack(n: int, status: str = "ok") -> bytes:
    if status not in ("ok", "dup", "bad"):
        raise ValueError(status)
    return _compact({"v": VERSION, "n": n, "st": status})


def encode_prompt_open(sess: str, ttl: int | None = None, ticket: str | None = None,
                       qr: str | None = None, qr_matrix: tuple[int, bytes] | None = None) -> bytes:
    """`qr_matrix` is (modules per side, packed bits) from `hcp.qr.matrix_bits(qr)`."""
    obj: dict = {"v": VERSION, "op": "open", "sess": sess}
    if ttl is not None:
        obj["ttl"] = ttl
    if ticket is not None:
        obj["tk"] = ticket
    if qr is not None:
        obj["qr"] = qr
    if qr_matrix is not None:
        obj["qrs"] = qr_matrix[0]
        obj["qrm"] = base64.b64encode(qr_matrix[1]).decode("ascii")
    return _compact(obj)


def encode_prompt_cancel(sess: str) -> bytes:
    return _compact({"v": VERSION, "op": "cancel", "sess": sess})


def encode_cmd(cmd_id: str, op: str, args: dict | None = None) -> bytes:
    return _compact({"v": VERSION, "id": cmd_id, "op": op, "args": args or {}})


# ---------------------------------------------------------------------------- status, health


@dataclass(frozen=True)
class Status:
    state: str
    boot: int
    conn: int
    fw: str | None

    @property
    def order(self) -> tuple[int, int]:
        """Presence updates apply in this order; a lower one is stale."""
        return (self.boot, self.conn)


def decode_status(raw: bytes | str) -> Status:
    obj = _load_object(raw)
    state = field_str(obj, "state")
    if state not in ("online", "offline"):
        raise ProtocolError("bad_field:state", repr(state))
    boot = field_int(obj, "boot", 0, MAX_COUNTER)
    conn = field_int(obj, "conn", 0, MAX_COUNTER)
    fw = field_str(obj, "fw", max_len=32, required=False)
    return Status(state, boot, conn, fw)  # type: ignore[arg-type]


def decode_health(raw: bytes | str) -> dict:
    """Health is stored as received after its required fields are checked."""
    obj = _load_object(raw)
    field_int(obj, "boot", 0, MAX_COUNTER)
    field_int(obj, "up", 0, 2**53)
    field_int(obj, "heap", 0, 2**31)
    field_int(obj, "ob", 0, 2**31)
    cnt = obj.get("cnt", {})
    if not isinstance(cnt, dict) or any(type(v) is not int for v in cnt.values()):
        raise ProtocolError("bad_field:cnt")
    return obj


def decode_cmd_reply(raw: bytes | str) -> dict:
    obj = _load_object(raw)
    field_str(obj, "id", max_len=64)
    if type(obj.get("ok")) is not bool:
        raise ProtocolError("bad_field:ok")
    return obj


# ---------------------------------------------------------------------------- phone token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_phone_token(key: bytes, hall: str, service: str, window: str, exp: int) -> str:
    body = _b64(_compact({"v": VERSION, "hall": hall, "svc": service, "win": window, "exp": exp}))
    mac = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def read_phone_token(token: str) -> dict:
    """The token's claims, unverified (to find which gateway key to verify it with)."""
    try:
        body, _mac = token.split(".")
        claims = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("bad_token") from None
    if not isinstance(claims, dict):
        raise ProtocolError("bad_token")
    _check_version(claims)
    field_str(claims, "hall", HALL_RE)
    field_str(claims, "svc", SESSION_RE)
    field_str(claims, "win", WINDOW_RE)
    field_int(claims, "exp", 0, 2**40)
    return claims


def verify_phone_token(key: bytes, token: str, now: float) -> dict:
    claims = read_phone_token(token)
    body, mac = token.split(".")
    expected = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    try:
        given = _unb64(mac)
    except ValueError:
        raise ProtocolError("bad_token") from None
    if not hmac.compare_digest(expected, given):
        raise ProtocolError("bad_token_signature")
    if claims["exp"] < now:
        raise ProtocolError("token_expired")
    return claims


# ---------------------------------------------------------------------------- queue webhook


@dataclass(frozen=True)
class QueueEvent:
    event_id: str
    type: str
    at: datetime
    ticket: str
    window: str
    staff_id: str | None
    matter_code: str | None
    case_no: str | None
    staff_name: str | None
    matter_name: str | None
    unit: str | None
    replay: bool = False  # a past event from an export: recorded, never opens a session


def decode_queue_event(obj: object) -> QueueEvent:
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "not an object")
    _check_version(obj)
    event_id = field_str(obj, "event_id", max_len=64)
    kind = field_str(obj, "type", max_len=16)
    if kind not in QUEUE_EVENT_TYPES:
        raise ProtocolError("bad_field:type", repr(kind))
    at = datetime.fromisoformat(field_time(obj, "at"))  # type: ignore[arg-type]
    ticket = field_str(obj, "ticket", max_len=16)
    window = field_str(obj, "window", WINDOW_RE)
    needs_who = kind in ("accepted", "finished")
    staff_id = field_str(obj, "staff_id", max_len=64, required=needs_who)
    matter_code = field_str(obj, "matter_code", max_len=64, required=needs_who)
    replay = obj.get("replay", False)
    if type(replay) is not bool:
        raise ProtocolError("bad_field:replay", repr(replay)[:80])
    return QueueEvent(
        event_id=event_id, type=kind, at=at, ticket=ticket, window=window,  # type: ignore[arg-type]
        staff_id=staff_id, matter_code=matter_code,
        case_no=field_str(obj, "case_no", max_len=64, required=False, nullable=True),
        staff_name=field_str(obj, "staff_name", max_len=64, required=False, nullable=True),
        matter_name=field_str(obj, "matter_name", max_len=200, required=False, nullable=True),
        unit=field_str(obj, "unit", max_len=200, required=False, nullable=True),
        replay=replay,
    )
