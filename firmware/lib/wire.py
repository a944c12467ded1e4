"""The device side of the v1 wire contract (docs/protocol.md): rating encoding and signing,
decoding of what the gateway sends. Tested against tests/vectors/ under MicroPython."""

import binascii
import hashlib
import json

from micropython import const

VERSION = const(1)
MAX_PAYLOAD = const(1024)
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


class WireError(ValueError):
    """A payload from the gateway that breaks the contract; args[0] is the reason."""


def key_id(key):
    return binascii.hexlify(hashlib.sha256(key).digest()[:4]).decode()


def canonical(hall, dev, n, boot, mono, sess, score, kid):
    """The signed text (str; hashed as its UTF-8 bytes)."""
    return "\n".join(("hcp1", "rating", hall, dev, str(n), str(boot), str(mono), sess or "",
                      str(score), kid))


def rating_payload(signer, kid, hall, dev, n, boot, mono, sess, score):
    """The rating as compact JSON text (str: written to flash and sent as its UTF-8 bytes with no
    encoded copy). `signer` is an hmac_sha256.HMAC over the device key.

    Made by one join, which allocates the text once at its exact size: it runs inside a press,
    when the heap may be fragmented, and json.dumps grows its buffer step by step. No field needs
    escaping: hall, dev and sess are ids of [A-Za-z0-9_-] (config.py and valid_id check them),
    kid and sig are hex."""
    sig = signer.hexdigest(canonical(hall, dev, n, boot, mono, sess, score, kid))
    return "".join(('{"v":1,"hall":"', hall, '","dev":"', dev, '","n":', str(n), ',"boot":', str(boot),
                    ',"mono":', str(mono), ',"sess":', '"' + sess + '"' if sess else "null",
                    ',"score":', str(score), ',"kid":"', kid, '","sig":"', sig, '"}'))


def valid_id(text, max_len):
    if not isinstance(text, str) or not 0 < len(text) <= max_len or text[0] in "_-":
        return False
    for ch in text:
        if ch not in _ID_CHARS:
            return False
    return True


def decode_object(raw):
    """Any payload from the gateway: size, a JSON object, our version. -> the dict."""
    if len(raw) > MAX_PAYLOAD:
        raise WireError("too_large")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeError):
        raise WireError("bad_json")
    if not isinstance(obj, dict):
        raise WireError("bad_json")
    if obj.get("v") != VERSION or isinstance(obj.get("v"), bool):
        raise WireError("bad_version")
    return obj


def _int(obj, name, lo, hi):
    if name not in obj:
        raise WireError("missing_field:" + name)
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise WireError("bad_field:" + name)
    return value


def decode_prompt(raw):
    """-> ("open", sess, ttl or None, ticket or None, qr or None, (size, bits) or None)
    or ("cancel", sess, None, None, None, None)."""
    obj = decode_object(raw)
    op = obj.get("op")
    if op not in ("open", "cancel"):
        raise WireError("bad_field:op")
    sess = obj.get("sess")
    if sess is None:
        raise WireError("missing_field:sess")
    if not valid_id(sess, 40):
        raise WireError("bad_field:sess")
    if op == "cancel":
        return ("cancel", sess, None, None, None, None)
    ttl = _int(obj, "ttl", 1, 3600) if "ttl" in obj else None
    tk = obj.get("tk")
    if tk is not None and (not isinstance(tk, str) or len(tk) > 16):
        raise WireError("bad_field:tk")
    qr = obj.get("qr")
    if qr is not None and (not isinstance(qr, str) or len(qr) > 512):
        raise WireError("bad_field:qr")
    matrix = None  # (size, packed bits) from `qrs`/`qrm` (see hcp/qr.py)
    if "qrm" in obj:
        size = _int(obj, "qrs", 21, 177)
        if (size - 17) % 4:
            raise WireError("bad_field:qrs")
        try:
            bits = binascii.a2b_base64(obj["qrm"])
        except (TypeError, ValueError):
            raise WireError("bad_field:qrm")
        if len(bits) != (size * size + 7) // 8:
            raise WireError("bad_field:qrm")
        matrix = size, bits
    return ("open", sess, ttl, tk, qr, matrix)


def decode_ack(raw):
    """-> (n, status)."""
    obj = decode_object(raw)
    n = _int(obj, "n", 1, 2147483647)
    st = obj.get("st", "ok")
    if st not in ("ok", "dup", "bad"):
        raise WireError("bad_field:st")
    return n, st


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()
