# Runs under MicroPython: the firmware's encoder against tests/vectors/ratings.json.
# argv: vectors path. Prints one JSON line per valid vector: name, canonical hex, payload.
import sys, json, binascii
import wire
from hmac_sha256 import HMAC

with open(sys.argv[1]) as f:
    vectors = json.load(f)["valid"]
for v in vectors:
    key = binascii.unhexlify(v["key"])
    kid = wire.key_id(key)
    f_ = v["fields"]
    canon = wire.canonical(f_["hall"], f_["dev"], f_["n"], f_["boot"], f_["mono"], f_["sess"], f_["score"], kid)
    payload = wire.rating_payload(HMAC(key), kid, f_["hall"], f_["dev"], f_["n"], f_["boot"], f_["mono"], f_["sess"], f_["score"])
    print(json.dumps({"name": v["name"], "kid": kid, "canonical_hex": binascii.hexlify(canon).decode(), "payload": payload}))
