"""HMAC-SHA256 (RFC 2104) on hashlib.sha256: MicroPython has no `hmac` module."""

import hashlib

_BLOCK = 64  # SHA-256 block size in bytes


def _pads(key):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


class HMAC:
    """Keyed hasher; the pads are computed once per key, not once per message."""

    def __init__(self, key):
        self._ipad, self._opad = _pads(key)

    def digest(self, msg):
        inner = hashlib.sha256(self._ipad)
        inner.update(msg)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, msg):
        return _hex(self.digest(msg))


def hmac_sha256(key, msg):
    return HMAC(key).digest(msg)


def _hex(data):
    import binascii
    return binascii.hexlify(data).decode()
