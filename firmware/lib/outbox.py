"""Flash outbox: an append-only journal of ratings and acks, one checksummed line per record.

    R <n> <crc> <payload>   rating n stored; the payload is its signed JSON (no newline in it)
    A <n> <crc>             rating n acknowledged by the gateway: it may be forgotten
    C <n> <crc>             compaction header: the counter had reached n

`crc` is the CRC-32 (8 hex digits) of the record's other fields joined by spaces. A rating costs
two flash writes: its R record (which also persists the counter, so an id is never reused) and its
A record. A power cut in the middle of an append leaves a torn last line; `load` drops it (that
rating never reached "thank you", so its number was never used) and rewrites the journal.
When acked records take more than half of a large journal, the next rating is not appended: the
journal is rewritten (temp file + rename) with a C header, the pending records and the new one, so
compaction never costs a write of its own. The rewrite streams record by record: a full outbox is
never held in RAM. Reading and rewriting the whole journal (boot, compaction) is in journal.py, cold
code run per call (docs/firmware.md, "Memory"); appends, acks and reads of one record are here.
"""

import binascii

from flashfs import join, run_cold
from micropython import const

COMPACT_BYTES = const(8192)  # rewrite the journal once it is this large and mostly acked
LEN_BITS = const(12)  # a record is shorter than 4096 bytes (payloads are at most 1024)
LEN_MASK = const(4095)


def pack_entry(offset, length):
    """Where a pending record is, as one small int: no heap allocation per rating."""
    return (offset << LEN_BITS) | length


def _crc(text):
    return "%08x" % (binascii.crc32(text.encode()) & 0xFFFFFFFF)


def make_record(kind, n, payload=None):
    body = kind + " " + str(n) + (" " + payload if payload is not None else "")
    head = kind + " " + str(n) + " " + _crc(body)
    return (head + (" " + payload if payload is not None else "") + "\n").encode()


def parse_record(line):
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
        self.unreadable = 0  # pending records that could not be read back when compacting
        self._pending = {}  # n -> pack_entry(offset, length) of its R record
        self._size = 0
        self._dead = 0  # bytes of records that no longer matter

    # -- loading
    def load(self):
        """Read the journal (at boot): pending ratings, the counter; a torn end is repaired."""
        run_cold("journal", "load", self)

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
            f.seek(entry >> LEN_BITS)
            rec = parse_record(f.read(entry & LEN_MASK))  # one read: readline() reads byte by byte
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
        data = make_record("R", n, text)
        if self._size > COMPACT_BYTES and self._dead * 2 > self._size:
            self.compact((n, data))  # the rewrite carries the new rating: still one write
        else:
            offset = self._append(data)
            self._pending[n] = pack_entry(offset, len(data))
        self.last_n = n

    def ack(self, n):
        """Forget rating n (one append); False if it was not pending."""
        entry = self._pending.get(n)
        if entry is None:
            return False
        data = make_record("A", n)
        self._append(data)
        del self._pending[n]
        self._dead += (entry & LEN_MASK) + len(data)
        return True

    def compact(self, extra=None):
        """Rewrite the journal atomically with a C header, the pending ratings and `extra`
        ((n, record bytes) of a new rating)."""
        run_cold("journal", "compact", self, extra)
