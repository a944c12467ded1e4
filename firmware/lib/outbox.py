"""Flash outbox: an append-only journal of ratings and acks, one checksummed line per record.

    R <n> <crc> <payload>   rating n stored; the payload is its signed JSON (no newline in it)
    A <n> <crc>             rating n acknowledged by the gateway: it may be forgotten
    C <n> <crc>             compaction header: the counter had reached n

`crc` is the CRC-32 (8 hex digits) of the record's other fields joined by spaces. A rating costs
two flash writes: its R record (which also persists the counter, so an id is never reused) and its
A record. A power cut in the middle of an append leaves a torn last line; `load` drops it (that
rating never reached "thank you", so its number was never used) and rewrites the journal. An append
that fails without a power cut (flash full, out of heap) leaves its part as one bad line: the next
append ends it with a newline first, and `load` skips it, keeping every record after it.
When acked records take more than half of a large journal, an ack is not appended: the journal is
rewritten (temp file + rename) with a C header and the pending records only, so compaction never
costs a write of its own. It happens on an ack, not in a press, where the heap is fullest. The
rewrite streams record by record: a full outbox is never held in RAM. Reading the whole journal at
boot is in journal.py, cold code run per call (docs/firmware.md, "Memory").
"""

import binascii
import os

from flashfs import join, run_cold
from micropython import const

COMPACT_BYTES = const(8192)  # rewrite the journal once it is this large and mostly acked
LEN_BITS = const(12)  # a record is shorter than 4096 bytes (payloads are at most 1024)
LEN_MASK = const(4095)


def _crc(kind, n, payload=None):
    """CRC-32 of the record's fields joined by spaces, without building that text (a rating's
    record is a few hundred bytes: at press time every large allocation counts)."""
    crc = binascii.crc32("%s %d" % (kind, n))
    if payload is not None:
        crc = binascii.crc32(payload, binascii.crc32(b" ", crc))
    return crc & 0xFFFFFFFF


def record_head(kind, n, payload=None):
    """A record's text up to its payload: "<kind> <n> <crc>", then " " if a payload follows,
    else the newline that ends it."""
    return "%s %d %08x%s" % (kind, n, _crc(kind, n, payload), "\n" if payload is None else " ")


def parse_record(line):
    """-> (kind, n, payload or None) or None if the line is torn or corrupt. The payload is a
    memoryview into `line` (no copy)."""
    end = len(line) - 1
    if end < 12 or line[end] != 10 or line[1] != 32:  # "K n crc\n", 10: newline, 32: space
        return None
    kind = chr(line[0])
    if kind not in "RAC":
        return None
    sp = line.find(b" ", 2)
    if sp < 3:
        return None
    view = memoryview(line)
    if len(line) > sp + 9 and line[sp + 9] == 32:
        payload = view[sp + 10:end]
    elif sp + 9 == end:
        payload = None
    else:
        return None
    if (kind == "R") != (payload is not None):
        return None
    try:
        n = int(line[2:sp])
        crc = int(line[sp + 1:sp + 9], 16)
    except ValueError:
        return None
    if crc != _crc(kind, n, payload) or n < 0:
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
        self._pending = {}  # n -> (offset << LEN_BITS) | length of its R record: no object per rating
        self._size = 0
        self._dead = 0  # bytes of records that no longer matter
        self._torn = False  # an append failed part-way: the next one starts with a newline

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
        """The stored payload of pending rating n (a memoryview of the record read back), or None
        if it is not pending (or unreadable)."""
        entry = self._pending.get(n)
        if entry is None:
            return None
        with open(self.path, "rb") as f:
            f.seek(entry >> LEN_BITS)
            rec = parse_record(f.read(entry & LEN_MASK))  # one read: readline() reads byte by byte
        if rec is None or rec[0] != "R" or rec[1] != n:
            return None
        return rec[2]

    # -- changes
    def _append(self, *parts):
        """One append of `parts` (str or bytes), written one after the other: no copy joins
        them. -> (offset, size) of the record. A power cut between two leaves a torn record,
        which `load` drops; a failed write is marked so the next append first ends it."""
        offset = self._size
        try:
            with open(self.path, "ab") as f:
                if self._torn:
                    offset += f.write("\n")
                    self._torn = False
                size = 0
                for part in parts:
                    size += f.write(part)  # bytes written: a str's UTF-8 length, without encoding it
        except Exception:
            self._torn = True
            try:
                end = os.stat(self.path)[6]
            except OSError:
                end = self._size
            self._dead += end - self._size
            self._size = end
            raise
        self.writes += 1
        self.bytes_written += offset - self._size + size
        self._dead += offset - self._size
        self._size = offset + size
        return offset, size

    def add(self, n, payload):
        """Store rating n durably (one append). n must be last_n + 1. payload: str or bytes,
        one line of signed JSON."""
        if n != self.last_n + 1:
            raise ValueError("counter must be contiguous")
        offset, size = self._append(record_head("R", n, payload), payload, "\n")
        self._pending[n] = (offset << LEN_BITS) | size  # where it is, as one small int
        self.last_n = n

    def ack(self, n):
        """Forget rating n: one append of its A record, or, once acked records fill more than
        half of a large journal, a rewrite without it instead. False if it was not pending. If
        the write fails, the ack is forgotten (the rating is resent after a reboot: a `dup`)."""
        entry = self._pending.pop(n, None)
        if entry is None:
            return False
        self._dead += entry & LEN_MASK
        if self._size > COMPACT_BYTES and self._dead * 2 > self._size:
            self.compact()
        else:
            self._dead += self._append(record_head("A", n))[1]
        return True

    def compact(self):
        """Rewrite the journal atomically with a C header and the pending ratings, streaming one
        record at a time."""
        tmp = self.path + ".tmp"
        pending = {}
        with open(tmp, "wb") as out:
            size = head = out.write(record_head("C", self.last_n))
            try:
                src = open(self.path, "rb")
            except OSError:
                src = None
            if src is not None:
                with src:
                    for n in sorted(self._pending, key=lambda k: self._pending[k]):  # in file order
                        entry = self._pending[n]
                        src.seek(entry >> LEN_BITS)
                        line = src.read(entry & LEN_MASK)
                        rec = parse_record(line)
                        if rec is None or rec[0] != "R" or rec[1] != n:
                            self.unreadable += 1
                            continue
                        out.write(line)
                        pending[n] = (size << LEN_BITS) | len(line)
                        size += len(line)
        os.rename(tmp, self.path)  # the commit: a power cut before it leaves the old journal
        self.writes += 1
        self.bytes_written += size
        self._pending = pending
        self._size = size
        self._dead = head
