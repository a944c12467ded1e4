"""QR codes for the device's display, encoded by the gateway: the device only draws modules.

Why not on the device: measured under the MicroPython unix port, the only MicroPython QR encoder
available (PyPI `micropython-qr`, compiled with mpy-cross) takes 40 KB of heap to import and holds
66 KB after encoding a 168-character phone URL; it fails with a 64 KB or 80 KB heap and needs at
least 96 KB. A 57x57 matrix is 407 bytes. See docs/firmware.md and bench/qr_memory.py.

Matrix wire form (prompt fields `qrs`, `qrm`): `qrs` modules per side, no quiet zone; `qrm` the
modules row by row, left to right, one bit each (1 = dark), most significant bit first, rows not
padded, the last byte padded with zero bits, in standard base64 with padding.

Cost: the gateway encodes one code per rating session, in its event loop. segno spends ~3/4 of an
encoding choosing the data mask (ISO/IEC 18004 7.8.3: each of the 8 masks applied and scored module
by module in Python): 18 ms of a 57x57 code on the reference machine (bench/gateway_queue.py).
`_best_mask` makes the same choice, from the same matrix, on whole lines at once (big integers as
bit vectors, bytes.find) and is put in segno's place: 5.5 ms a code. It gives segno's matrix bit
for bit (tests/test_qr.py compares it with segno's own selection on many codes); segno's internals
it relies on (`find_and_apply_best_mask` and its helpers) are those of segno 1.6.
"""

from __future__ import annotations

from functools import lru_cache
from operator import lt

import segno
from segno import encoder as _segno_encoder

ERROR_LEVELS = ("M", "L")  # M survives a scuffed screen; L if M makes the prompt too large
_N3 = bytes((1, 0, 1, 1, 1, 0, 1))  # dark light dark dark dark light dark (1:1:3:1:1)
_SEP = b"\xff"  # between lines: no module has this value, so no run or pattern crosses it
_DARK = bytes.maketrans(bytes(range(256)), b"0" + b"1" * 255)
_BITS = bytes.maketrans(b"\x00\x01", b"01")  # a line of modules (0/1) as a binary numeral


def matrix_bits(text: str, error: str = "M") -> tuple[int, bytes]:
    """-> (modules per side, packed bits) of the QR code for `text` (the packing above)."""
    matrix = segno.make(text, error=error, micro=False, boost_error=False).matrix
    size = len(matrix)
    bits = b"".join(matrix).translate(_DARK)  # b"0"/b"1" per module, row by row
    pad = -len(bits) % 8
    return size, int(bits + b"0" * pad, 2).to_bytes((len(bits) + pad) // 8, "big")


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


# ---------------------------------------------------------------------------- mask selection


@lru_cache(maxsize=16)
def _mask_rows(width: int, height: int) -> tuple[tuple[int, ...], ...]:
    """Per mask pattern, per row: a big integer with byte j = 1 where the pattern flips module j
    (data region only, as segno's `is_encoding_region`), to XOR onto the row read as an integer."""
    function = _segno_encoder.make_matrix(width, height)
    _segno_encoder.add_finder_patterns(function, width, height)
    _segno_encoder.add_alignment_patterns(function, width, height)
    function[-8][8] = 0x1
    out = []
    for pattern in _segno_encoder.get_data_mask_functions(False):
        out.append(tuple(int.from_bytes(bytes(1 if function[i][j] > 0x1 and pattern(i, j) else 0
                                              for j in range(width)), "big")
                         for i in range(height)))
    return tuple(out)


def _n3(text: bytes, size: int) -> int:
    """segno's `n3_pattern_occurrences` (edge cases included) over every line of `text`: lines of
    `size` modules, each followed by one separator byte that no pattern crosses."""
    count = 0
    step = size + 1
    idx = text.find(_N3)
    while idx != -1:
        start = idx - idx % step  # the line's first module
        pos = idx - start
        line = text[start:start + size]
        offset = pos + 7
        if pos in (0, size - 7) or not any(line[max(pos - 4, 0):pos]) \
                or not any(line[offset:offset + 4]):
            count += 40
        else:
            offset = pos + 4
        idx = text.find(_N3, start + offset)
    return count


@lru_cache(maxsize=16)
def _line_starts(lines: int, size: int) -> int:
    """The bits of each line's first module in `_n1`'s numeral (the most significant first)."""
    return sum(1 << ((lines - 1 - k) * size + size - 1) for k in range(lines))


def _n1(text: bytes, lines: int, size: int) -> int:
    """N1 of `lines` lines of `size` modules (`text`: b"0"/b"1" per module, one separator byte
    after each line): a run of k >= 5 equal modules in a line scores k - 2. Bit-parallel over all
    lines at once: e marks a module equal to the one before it in its line, so a run of k modules
    is k - 1 set bits; g keeps the stretches of 4 or more; each adjacent pair in g scores 1."""
    x = int(text.replace(_SEP, b""), 2)
    total = lines * size
    e = ~(x ^ (x >> 1)) & ((1 << total) - 1) & ~_line_starts(lines, size)
    f = e & (e << 1) & (e << 2) & (e << 3)
    g = f | (f >> 1) | (f >> 2) | (f >> 3)
    return (g & (g >> 1)).bit_count()


def _penalty(rows: list[bytes], size: int) -> int:
    """segno's `evaluate_mask` (N1 + N2 + N3 + N4 of ISO/IEC 18004 7.8.3.1) of a square matrix."""
    text = _SEP.join((*rows, *(bytes(c) for c in zip(*rows)))) + _SEP  # rows, then columns
    n1 = _n1(text.translate(_BITS), 2 * size, size)
    n2 = 0
    prev = None
    for row in rows:
        r = int.from_bytes(row, "big")
        if prev is not None:  # byte j of z is 0 where row[j] == row[j-1] == prev[j] == prev[j-1]
            z = (r ^ (r >> 8)) | (r ^ prev) | (r ^ (prev >> 8))
            n2 += 3 * z.to_bytes(size, "big")[1:].count(0)
        prev = r
    n3 = _n3(text, size)
    dark = sum(text[:len(text) // 2]) - size * 0xff  # the rows, less their separators
    n4 = 10 * int(abs(float(dark) / (size ** 2) * 100 - 50) / 5)
    return n1 + n2 + n3 + n4


_segno_best_mask = _segno_encoder.find_and_apply_best_mask


def _best_mask(matrix, width, height, proposed_mask=None):
    """segno's `find_and_apply_best_mask` for QR codes (Micro QR and a given mask: segno's own)."""
    if proposed_mask is not None or width != height or width < 21 \
            or b"".join(matrix).translate(None, b"\x00\x01"):  # modules other than 0/1
        return _segno_best_mask(matrix, width, height, proposed_mask)
    ints = [int.from_bytes(row, "big") for row in matrix]
    best_score, best_pattern, best_rows = None, None, None
    for number, flips in enumerate(_mask_rows(width, height)):
        rows = [(r ^ f).to_bytes(width, "big") for r, f in zip(ints, flips)]
        score = _penalty(rows, width)
        if best_score is None or lt(score, best_score):
            best_score, best_pattern, best_rows = score, number, rows
    return best_pattern, tuple(bytearray(r) for r in best_rows)


_segno_encoder.find_and_apply_best_mask = _best_mask
