"""Flash outbox: an append-only journal of ratings and acks, one checksummed line per record.

    R <n> <crc> <payload>   rating n stored; the payload is its signed JSON (no newline in it)
    A <n> <crc>             rating n acknowledged by the gateway: it may be forgotten
    C <n> <crc>             compaction header: the counter had reached n

`crc` is the CRC-32 (8 hex digits) of the record's other fields joined by spaces. A rating costs
two flash writes: the R append (which also persists the counter, so an id is never reused) and the
A append. A power cut in the middle of an append leaves a torn last line; `load` drops it (that
rating never reached "thank you", so its number was never used) and rewrites the journal.
When acked records take more than half of a large journal, it is rewritten (temp file + rename)
with a C header and the pending records only.
"""

import binascii

from flashfs import join, write_atomic
from micropython import const

COMPACT_BYTES = const(8192)  # rewrite the journal once it is this large and mostly acked


def _crc(text):
    return "%08x" % (binascii.crc32(text.encode()) & 0xFFFFFFFF)


def _record(kind, n, payload=None):
    body = kind + " " + str(n) + (" " + payload if payload is not None else "")
    head = kind + " " + str(n) + " " + _crc(body)
    return (head + (" " + payload if payload is not None else "") + "\n").encode()


def _parse(line):
    """-> (kind, n, payload or None) or None if the line is torn or corrupt."""
    try:
        text = line.decode()
    except UnicodeError:
        return None
    if not text.endswith("\n"):
        return None
    parts = text[:-1].split(" ", 3)
    if len(parts) < 3 or parts[0] not in ("R", "A", "C"):
        return None
    kind, n_text, crc = parts[0], parts[1], parts[2]
    payload = parts[3] if len(parts) == 4 else None
    if (kind == "R") != (payload is not None):
        return None
    body = kind + " " + n_text + (" " + payload if payload is not None else "")
    if crc != _crc(body):
        return None
    try:
        n = int(n_text)
    except ValueError:
        return None
    return kind, n, payload


class Outbox:
    """Ratings kept on flash until the gateway acks them. Bounded: `full()` refuses new ones."""

    def __init__(self, root, capacity):
        self.path = join(root, "outbox.log")
        self.capacity = capacity
        self.last_n = 0  # highest counter ever stored: the next rating takes last_n + 1
        self.writes = 0  # flash writes (appends and rewrites) since boot
        self.bytes_written = 0
        self.repaired = 0  # torn or corrupt records dropped at load
        self._pending = {}  # n -> (offset, length) of its R record
        self._size = 0
        self._dead = 0  # bytes of records that no longer matter

    # -- loading
    def load(self):
        self._pending = {}
        self._size = self._dead = 0
        self.last_n = 0
        offset = 0
        torn = False
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        with f:
            while True:
                line = f.readline()
                if not line:
                    break
                rec = _parse(line)
                if rec is None:
                    torn = True
                    break
                kind, n, _payload = rec
                if kind == "R":
                    self._pending[n] = (offset, len(line))
                    if n > self.last_n:
                        self.last_n = n
                elif kind == "A":
                    entry = self._pending.pop(n, None)
                    self._dead += len(line) + (entry[1] if entry else 0)
                else:
                    self.last_n = max(self.last_n, n)
                    self._dead += len(line)
                offset += len(line)
        self._size = offset
        if torn:
            self.repaired += 1
            self.compact()

    # -- queries
    def depth(self):
        return len(self._pending)

    def full(self):
        return len(self._pending) >= self.capacity

    def pending(self):
        return sorted(self._pending)

    def payload(self, n):
        """The stored bytes of pending rating n, or None if it is not pending (or unreadable)."""
        entry = self._pending.get(n)
        if entry is None:
            return None
        with open(self.path, "rb") as f:
            f.seek(entry[0])
            rec = _parse(f.readline())
        if rec is None or rec[0] != "R" or rec[1] != n or rec[2] is None:
            return None
        return rec[2].encode()

    # -- changes
    def _append(self, data):
        with open(self.path, "ab") as f:
            f.write(data)
        self.writes += 1
        self.bytes_written += len(data)
        offset = self._size
        self._size += len(data)
        return offset

    def add(self, n, payload):
        """Store rating n durably (one append). n must be last_n + 1."""
        if n != self.last_n + 1:
            raise ValueError("counter must be contiguous")
        text = payload.decode() if isinstance(payload, (bytes, bytearray)) else payload
        data = _record("R", n, text)
        offset = self._append(data)
        self._pending[n] = (offset, len(data))
        self.last_n = n

    def ack(self, n):
        """Forget rating n (one append); False if it was not pending."""
        entry = self._pending.get(n)
        if entry is None:
            return False
        data = _record("A", n)
        self._append(data)
        del self._pending[n]
        self._dead += entry[1] + len(data)
        if self._size > COMPACT_BYTES and self._dead * 2 > self._size:
            self.compact()
        return True

    def compact(self):
        """Rewrite the journal with only a C header and the pending ratings (atomically)."""
        out = [_record("C", self.last_n)]
        payloads = []
        for n in sorted(self._pending):
            body = self.payload(n)
            if body is not None:
                payloads.append((n, _record("R", n, body.decode())))
        pending = {}
        offset = len(out[0])
        for n, data in payloads:
            pending[n] = (offset, len(data))
            offset += len(data)
            out.append(data)
        blob = b"".join(out)
        write_atomic(self.path, blob)
        self.writes += 1
        self.bytes_written += len(blob)
        self._pending = pending
        self._size = len(blob)
        self._dead = len(out[0])
