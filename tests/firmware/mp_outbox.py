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
