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
never held in RAM.
"""

import binascii
import os

from flashfs import join
from micropython import const

COMPACT_BYTES = const(8192)  # rewrite the journal once it is this large and mostly acked
_LEN_BITS = const(12)  # a record is shorter than 4096 bytes (payloads are at most 1024)
_LEN_MASK = const(4095)


def _entry(offset, length):
    """Where a pending record is, as one small int: no heap allocation per rating."""
    return (offset << _LEN_BITS) | length


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


def _lines(f, block=512):
    """The file's lines, read in blocks (a file's readline() reads one byte per call); the last one
    may lack its newline (a torn append)."""
    rest = b""
    while True:
        chunk = f.read(block)
        if not chunk:
            break
        rest += chunk
        start = 0
        while True:
            end = rest.find(b"\n", start)
            if end < 0:
                break
            yield rest[start:end + 1]
            start = end + 1
        rest = rest[start:]
    if rest:
        yield rest


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
        self._pending = {}  # n -> _entry(offset, length) of its R record
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
            for line in _lines(f):
                rec = _parse(line)
                if rec is None:
                    torn = True
                    break
                kind, n, _payload = rec
                if kind == "R":
                    self._pending[n] = _entry(offset, len(line))
                    if n > self.last_n:
                        self.last_n = n
                elif kind == "A":
                    entry = self._pending.pop(n, None)
                    self._dead += len(line) + (entry & _LEN_MASK if entry is not None else 0)
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
            f.seek(entry >> _LEN_BITS)
            rec = _parse(f.read(entry & _LEN_MASK))  # one read: readline() reads byte by byte
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
        if self._size > COMPACT_BYTES and self._dead * 2 > self._size:
            self.compact((n, data))  # the rewrite carries the new rating: still one write
        else:
            offset = self._append(data)
            self._pending[n] = _entry(offset, len(data))
        self.last_n = n

    def ack(self, n):
        """Forget rating n (one append); False if it was not pending."""
        entry = self._pending.get(n)
        if entry is None:
            return False
        data = _record("A", n)
        self._append(data)
        del self._pending[n]
        self._dead += (entry & _LEN_MASK) + len(data)
        return True

    def compact(self, extra=None):
        """Rewrite the journal atomically with a C header, the pending ratings and `extra`
        ((n, record bytes) of a new rating), streaming one record at a time."""
        tmp = self.path + ".tmp"
        pending = {}
        with open(tmp, "wb") as out:
            head = _record("C", self.last_n)
            out.write(head)
            size = len(head)
            try:
                src = open(self.path, "rb")
            except OSError:
                src = None
            if src is not None:
                with src:
                    for n in sorted(self._pending, key=lambda k: self._pending[k]):  # in file order
                        src.seek(self._pending[n] >> _LEN_BITS)
                        line = src.read(self._pending[n] & _LEN_MASK)
                        rec = _parse(line)
                        if rec is None or rec[0] != "R" or rec[1] != n:
                            self.unreadable += 1
                            continue
                        out.write(line)
                        pending[n] = _entry(size, len(line))
                        size += len(line)
            if extra is not None:
                out.write(extra[1])
                pending[extra[0]] = _entry(size, len(extra[1]))
                size += len(extra[1])
        os.rename(tmp, self.path)  # the commit: a power cut before it leaves the old journal
        self.writes += 1
        self.bytes_written += size
        self._pending = pending
        self._size = size
        self._dead = len(head)
