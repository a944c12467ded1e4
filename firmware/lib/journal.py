"""Reading and rewriting the whole outbox journal: at boot (`load`) and when compacting (`compact`).

Cold code (docs/firmware.md, "Memory"): `Outbox.load` and `Outbox.compact` run these with
`flashfs.run_cold`; the record format and the per-rating operations are in outbox.py.
"""

import os

from outbox import LEN_BITS, LEN_MASK, make_record, pack_entry, parse_record


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


def load(box):
    box._pending = {}
    box._size = box._dead = 0
    box.last_n = 0
    offset = 0
    torn = False
    try:
        f = open(box.path, "rb")
    except OSError:
        return
    with f:
        for line in _lines(f):
            rec = parse_record(line)
            if rec is None:
                torn = True
                break
            kind, n, _payload = rec
            if kind == "R":
                box._pending[n] = pack_entry(offset, len(line))
                if n > box.last_n:
                    box.last_n = n
            elif kind == "A":
                entry = box._pending.pop(n, None)
                box._dead += len(line) + (entry & LEN_MASK if entry is not None else 0)
            else:
                box.last_n = max(box.last_n, n)
                box._dead += len(line)
            offset += len(line)
    box._size = offset
    if torn:
        box.repaired += 1
        box.compact()


def compact(box, extra=None):
    """Rewrite the journal atomically with a C header, the pending ratings and `extra`
    ((n, record bytes) of a new rating), streaming one record at a time."""
    tmp = box.path + ".tmp"
    pending = {}
    with open(tmp, "wb") as out:
        head = make_record("C", box.last_n)
        out.write(head)
        size = len(head)
        try:
            src = open(box.path, "rb")
        except OSError:
            src = None
        if src is not None:
            with src:
                for n in sorted(box._pending, key=lambda k: box._pending[k]):  # in file order
                    src.seek(box._pending[n] >> LEN_BITS)
                    line = src.read(box._pending[n] & LEN_MASK)
                    rec = parse_record(line)
                    if rec is None or rec[0] != "R" or rec[1] != n:
                        box.unreadable += 1
                        continue
                    out.write(line)
                    pending[n] = pack_entry(size, len(line))
                    size += len(line)
        if extra is not None:
            out.write(extra[1])
            pending[extra[0]] = pack_entry(size, len(extra[1]))
            size += len(extra[1])
    os.rename(tmp, box.path)  # the commit: a power cut before it leaves the old journal
    box.writes += 1
    box.bytes_written += size
    box._pending = pending
    box._size = size
    box._dead = len(head)
