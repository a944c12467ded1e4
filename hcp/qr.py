"""QR codes for the device's display, encoded by the gateway: the device only draws modules.

Why not on the device: measured under the MicroPython unix port, the only MicroPython QR encoder
available (PyPI `micropython-qr`, compiled with mpy-cross) takes 40 KB of heap to import and holds
66 KB after encoding a 168-character phone URL; it fails with a 64 KB or 80 KB heap and needs at
least 96 KB. A 57x57 matrix is 407 bytes. See docs/firmware.md and bench/qr_memory.py.

Matrix wire form (prompt fields `qrs`, `qrm`): `qrs` modules per side, no quiet zone; `qrm` the
modules row by row, left to right, one bit each (1 = dark), most significant bit first, rows not
padded, the last byte padded with zero bits, in standard base64 with padding.
"""

from __future__ import annotations

import segno

ERROR_LEVELS = ("M", "L")  # M survives a scuffed screen; L if M makes the prompt too large


def matrix_bits(text: str, error: str = "M") -> tuple[int, bytes]:
    """-> (modules per side, packed bits) of the QR code for `text` (the packing above)."""
    code = segno.make(text, error=error, micro=False, boost_error=False)
    rows = [[1 if dark else 0 for dark in row] for row in code.matrix]
    size = len(rows)
    out = bytearray((size * size + 7) // 8)
    for y, row in enumerate(rows):
        for x, dark in enumerate(row):
            if dark:
                i = y * size + x
                out[i >> 3] |= 0x80 >> (i & 7)
    return size, bytes(out)


def unpack(size: int, bits: bytes) -> list[list[int]]:
    """The inverse of the packing above (tests and tools)."""
    return [[(bits[(y * size + x) >> 3] >> (7 - ((y * size + x) & 7))) & 1 for x in range(size)]
            for y in range(size)]


def prompt_payload(sess: str, ttl: int | None, ticket: str | None, url: str) -> bytes:
    """The `prompt` open payload with the phone URL and its QR matrix, at the strongest error
    level that keeps the payload within the contract's 1024 bytes; without the matrix (the device
    then shows no code) only if even level L does not fit."""
    from hcp.protocol import MAX_MQTT_PAYLOAD, encode_prompt_open

    for level in ERROR_LEVELS:
        payload = encode_prompt_open(sess, ttl, ticket, url, matrix_bits(url, level))
        if len(payload) <= MAX_MQTT_PAYLOAD:
            return payload
    return encode_prompt_open(sess, ttl, ticket, url)
