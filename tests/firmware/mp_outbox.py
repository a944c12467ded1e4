# Runs under MicroPython: exercises outbox.Outbox on a flash directory (argv[1]) and prints one JSON
# line with what the CPython test checks. Scenario names in argv[2].
import sys, json, os
from outbox import Outbox, COMPACT_BYTES

root, scenario = sys.argv[1], sys.argv[2]
PAYLOAD = '{"v":1,"pad":"%s"}' % ("x" * 200)


def fresh(cap):
    ob = Outbox(root, cap)
    ob.load()
    return ob


if scenario == "cycle":
    # add+ack 300 ratings: journal must compact, and each rating cost exactly two writes
    ob = fresh(10)
    for n in range(1, 301):
        ob.add(n, PAYLOAD)
        ob.ack(n)
    size = os.stat(ob.path)[6]
    again = fresh(10)
    print(json.dumps({"writes": ob.writes, "bytes": ob.bytes_written, "size": size,
                      "compact_bytes": COMPACT_BYTES, "last_n": again.last_n, "depth": again.depth()}))
elif scenario == "full":
    # capacity 200, all pending, then acks of every other one and more adds: compaction streams
    ob = fresh(200)
    n = 0
    while not ob.full():
        n += 1
        ob.add(n, PAYLOAD)
    for k in range(1, n + 1, 2):
        ob.ack(k)
    while not ob.full():
        n += 1
        ob.add(n, PAYLOAD)
    again = fresh(200)
    ok = all(bytes(again.payload(k)) == PAYLOAD.encode() for k in again.pending())
    print(json.dumps({"last_n": again.last_n, "depth": again.depth(), "payloads_ok": ok,
                      "pending_first": again.pending()[:3], "unreadable": again.unreadable}))
elif scenario == "torn":
    ob = fresh(10)
    for n in range(1, 4):
        ob.add(n, PAYLOAD)
    ob.ack(1)
    with open(ob.path, "ab") as f:
        f.write(b"R 4 0000")  # a power cut in the middle of the next append
    again = fresh(10)
    print(json.dumps({"last_n": again.last_n, "pending": again.pending(), "repaired": again.repaired}))
elif scenario == "failed_append":
    # the flash fills up in the middle of an append (no power cut): the part written stays, the
    # next append ends it with a newline, and load skips that one bad line, keeping what follows
    import outbox

    class FullFlash:
        def __init__(self, f):
            self.f, self.calls = f, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.calls += 1
            if self.calls > 1:
                raise OSError(28)  # ENOSPC after the record's head
            return self.f.write(data)

    ob = fresh(10)
    ob.add(1, PAYLOAD)
    outbox.open = lambda path, mode: FullFlash(open(path, mode))
    try:
        ob.add(2, PAYLOAD)
        failed = False
    except OSError:
        failed = True
    del outbox.open
    kept_n = ob.last_n
    ob.add(2, PAYLOAD)
    ob.add(3, PAYLOAD)
    ob.ack(1)
    live_ok = all(bytes(ob.payload(k)) == PAYLOAD.encode() for k in ob.pending())
    again = fresh(10)
    ok = all(bytes(again.payload(k)) == PAYLOAD.encode() for k in again.pending())
    print(json.dumps({"failed": failed, "kept_n": kept_n, "live_ok": live_ok, "last_n": again.last_n,
                      "pending": again.pending(), "payloads_ok": ok, "repaired": again.repaired}))
