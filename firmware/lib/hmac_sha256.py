"""HMAC-SHA256 (RFC 2104) on hashlib.sha256: MicroPython has no `hmac` module."""

import binascii
import hashlib

_BLOCK = 64  # SHA-256 block size in bytes


class HMAC:
    """Keyed hasher; the pads are computed once per key, not once per message."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key + bytes(_BLOCK - len(key))
        self._ipad = bytes(b ^ 0x36 for b in key)
        self._opad = bytes(b ^ 0x5C for b in key)

    def digest(self, msg):
        inner = hashlib.sha256(self._ipad)
        inner.update(msg)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, msg):
        return binascii.hexlify(self.digest(msg)).decode()
