# Runs under MicroPython: decodes each stdin line (a JSON string holding a raw payload) with
# wire.decode_prompt and prints the result (QR bits as hex) or the error reason as JSON.
import sys, json, binascii
import wire

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    raw = json.loads(line)
    try:
        got = list(wire.decode_prompt(raw.encode()))
        if got[5] is not None:
            got[5] = [got[5][0], binascii.hexlify(got[5][1]).decode()]
        print(json.dumps({"ok": got}))
    except wire.WireError as e:
        print(json.dumps({"error": e.args[0]}))
