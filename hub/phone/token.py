"""The phone rating token (docs/protocol.md, "Phone rating token") as the hub checks it, and the
per-form nonce of the phone page.

The gateway signs `b64url(claims) + "." + b64url(HMAC-SHA256(gateway_key, b64url(claims)))`; the
hub holds each hall's gateway key (`gateways.key_hex`), so it can verify a token for a service
that has not reached it yet. `hcp.protocol.verify_phone_token` is the contract's own check; this
module adds what a public URL needs on top of it:

- a strict form before anything is decoded: at most MAX_TOKEN_LEN characters, two parts of the
  URL-safe base64 alphabet, each the canonical encoding of its bytes (base64 decoders skip stray
  characters and ignore spare bits, so one token would otherwise have many spellings), a MAC of
  32 bytes;
- one reason per refusal, for the page and the counters: `malformed` (not a token at all),
  `unknown_hall` (no gateway registered for its hall), `forged` (the signature does not verify),
  `expired`.

The form nonce: the page puts `make_nonce(...)` in a hidden field; a POST must bring back a nonce
made for the same token with the same gateway key (`check_nonce`). It proves the form came from
this hub's page for this token (a cross-site form cannot make one), and it names the submission:
the first POST with a nonce stores the rating, a repeat of that POST (a double tap, the back
button) finds it and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from hcp.protocol import ProtocolError, read_phone_token, verify_phone_token

MAX_TOKEN_LEN = 400  # the longest legal token (32-char hall, 40-char service, 16-char window) is ~260
TOKEN_TTL_S = 3 * 24 * 3600  # protocol.md: the gateway issues tokens valid for 3 days (exp = issue + TTL)
NONCE_BYTES = 12  # the random part of a form nonce
NONCE_MAC_BYTES = 16  # HMAC-SHA256 truncated: 128 bits cannot be guessed
NONCE_FUTURE_S = 300  # a nonce issued up to this far "in the future" (another hub's clock) is accepted

_PART = re.compile(r"[A-Za-z0-9_-]+")
_NONCE = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22})")
REASONS = ("malformed", "unknown_hall", "forged", "expired")


class TokenRefused(Exception):
    """A token the page cannot honour; `reason` is one of REASONS. `hall` is the hall its claims
    name when they could be read (for the counters), else None."""

    def __init__(self, reason: str, hall: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.hall = hall


@dataclass(frozen=True)
class Claims:
    """A verified token: the hall, the gateway's service id, the window, and its expiry (Unix s)."""

    hall: str
    service: str
    window: str
    exp: int

    @property
    def issued_at(self) -> int:
        """When the gateway issued it (Unix s): exp minus the contract's 3 days."""
        return self.exp - TOKEN_TTL_S


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64_canonical(text: str) -> bytes:
    """The bytes of `text`, which must be their canonical unpadded URL-safe base64."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenRefused("malformed") from None
    if _b64(data) != text:
        raise TokenRefused("malformed")
    return data


def read_claims(token: str) -> Claims:
    """The token's claims if it is well formed, unverified (its hall names the key to verify it
    with). Raises TokenRefused("malformed")."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LEN:
        raise TokenRefused("malformed")
    parts = token.split(".")
    if len(parts) != 2 or not all(_PART.fullmatch(p) for p in parts):
        raise TokenRefused("malformed")
    _unb64_canonical(parts[0])
    if len(_unb64_canonical(parts[1])) != hashlib.sha256().digest_size:
        raise TokenRefused("malformed")
    try:
        claims = read_phone_token(token)
    except (ProtocolError, RecursionError):
        raise TokenRefused("malformed") from None
    return Claims(claims["hall"], claims["svc"], claims["win"], claims["exp"])


def verify(key: bytes | None, token: str, now: float) -> Claims:
    """The verified claims of `token` under its hall's gateway `key` (None: no gateway is
    registered for that hall). Raises TokenRefused with the reason."""
    claims = read_claims(token)
    if key is None:
        raise TokenRefused("unknown_hall", claims.hall)
    try:
        verify_phone_token(key, token, now)
    except ProtocolError as exc:
        reason = {"token_expired": "expired", "bad_token_signature": "forged"}.get(exc.reason, "malformed")
        raise TokenRefused(reason, claims.hall) from None
    return claims


# ---------------------------------------------------------------------------- form nonces


def _nonce_mac(key: bytes, token: str, issued: int, random_part: str) -> str:
    message = f"hcp-phone-form\n{token}\n{issued}\n{random_part}".encode("ascii")
    return _b64(hmac.new(key, message, hashlib.sha256).digest()[:NONCE_MAC_BYTES])


def make_nonce(key: bytes, token: str, now: float) -> str:
    """A fresh nonce for a form of `token`: `issued.random.mac` (ASCII, 52 characters at most)."""
    issued = int(now)
    random_part = _b64(secrets.token_bytes(NONCE_BYTES))
    return f"{issued}.{random_part}.{_nonce_mac(key, token, issued, random_part)}"


def check_nonce(key: bytes, token: str, nonce: object, now: float) -> str | None:
    """The nonce's random part (what a stored rating keeps) if `nonce` was made by `make_nonce`
    for this token and key and not in the future; else None. A nonce lives as long as its token."""
    if not isinstance(nonce, str):
        return None
    match = _NONCE.fullmatch(nonce)
    if match is None:
        return None
    issued, random_part, mac = int(match[1]), match[2], match[3]
    if issued > now + NONCE_FUTURE_S:
        return None
    if not hmac.compare_digest(mac, _nonce_mac(key, token, issued, random_part)):
        return None
    return random_part
