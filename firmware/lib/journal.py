"""Reading the whole outbox journal at boot (`load`).

Cold code (docs/firmware.md, "Memory"): `Outbox.load` runs it with `flashfs.run_cold`; the record
format, the per-rating operations and compaction are in outbox.py.
"""

from outbox import LEN_BITS, LEN_MASK, parse_record


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
            offset += len(line)
            if rec is None:  # a torn end (power cut) or what a failed append left: skipped
                torn = True
                box._dead += len(line)
                continue
            kind, n, _payload = rec
            if kind == "R":
                box._pending[n] = ((offset - len(line)) << LEN_BITS) | len(line)
                if n > box.last_n:
                    box.last_n = n
            elif kind == "A":
                entry = box._pending.pop(n, None)
                box._dead += len(line) + (entry & LEN_MASK if entry is not None else 0)
            else:
                box.last_n = max(box.last_n, n)
                box._dead += len(line)
    box._size = offset
    if torn:
        box.repaired += 1
        box.compact()
