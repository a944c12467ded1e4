# Runs under MicroPython: decodes each stdin line (a JSON string holding a raw payload) with
# wire.decode_prompt and prints the result or the error reason as JSON.
import sys, json
import wire

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    raw = json.loads(line)
    try:
        print(json.dumps({"ok": list(wire.decode_prompt(raw.encode()))}))
    except wire.WireError as e:
        print(json.dumps({"error": e.args[0]}))
