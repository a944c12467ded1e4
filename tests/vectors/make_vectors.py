"""Writes tests/vectors/ratings.json. Run once when the contract changes (a new version).

The canonical bytes are spelled out here from docs/protocol.md on purpose, independent of
hcp/protocol.py and firmware/lib/wire.py, which are both tested against the output.
"""

import hashlib
import hmac
import json
from pathlib import Path

CASES = [
    # name, key hex, hall, dev, n, boot, mono, sess, score
    ("prompted-4", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
     "H1", "D07", 42, 3, 81234, "3f2a9c1e0b7d4a55", 4),
    ("local-session-5", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
     "H1", "D07", 43, 3, 95000, None, 5),
    ("first-press-very-dissatisfied", "ff" * 32, "changchun-01", "hcp-e8db84c61a2f", 1, 0, 0,
     "a", 1),
    ("dissatisfied-after-many-boots", "a5" * 32, "HALL_9", "dev_2-x", 2147483646, 65535,
     9007199254740991, "Z9_-session-id-40-characters-long-xxxxxx", 2),
    ("basically-satisfied", "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
     "H1", "D08", 7, 1, 1234567, "s0001", 3),
]


def kid(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def main() -> None:
    valid = []
    for name, key_hex, hall, dev, n, boot, mono, sess, score in CASES:
        key = bytes.fromhex(key_hex)
        k = kid(key)
        canonical = f"hcp1\nrating\n{hall}\n{dev}\n{n}\n{boot}\n{mono}\n{sess or ''}\n{score}\n{k}"
        sig = hmac.new(key, canonical.encode("ascii"), hashlib.sha256).hexdigest()
        valid.append({
            "name": name, "key": key_hex,
            "fields": {"hall": hall, "dev": dev, "n": n, "boot": boot, "mono": mono, "sess": sess,
                       "score": score},
            "kid": k, "canonical_hex": canonical.encode("ascii").hex(), "sig": sig,
            "payload": {"v": 1, "hall": hall, "dev": dev, "n": n, "boot": boot, "mono": mono,
                        "sess": sess, "score": score, "kid": k, "sig": sig},
        })
    good = json.dumps(valid[0]["payload"], separators=(",", ":"))
    p = valid[0]["payload"]

    def variant(**changes):
        obj = dict(p)
        for k, v in changes.items():
            if v is ...:
                obj.pop(k)
            else:
                obj[k] = v
        return json.dumps(obj, separators=(",", ":"))

    invalid = [
        {"name": "not-json", "raw": good[:-1], "reason": "bad_json"},
        {"name": "array", "raw": "[1,2]", "reason": "bad_json"},
        {"name": "no-version", "raw": variant(v=...), "reason": "bad_version"},
        {"name": "version-2", "raw": variant(v=2), "reason": "bad_version"},
        {"name": "score-0", "raw": variant(score=0), "reason": "bad_field:score"},
        {"name": "score-6", "raw": variant(score=6), "reason": "bad_field:score"},
        {"name": "score-bool", "raw": variant(score=True), "reason": "bad_field:score"},
        {"name": "score-string", "raw": variant(score="4"), "reason": "bad_field:score"},
        {"name": "score-float", "raw": variant(score=4.0), "reason": "bad_field:score"},
        {"name": "n-zero", "raw": variant(n=0), "reason": "bad_field:n"},
        {"name": "n-too-big", "raw": variant(n=2**31), "reason": "bad_field:n"},
        {"name": "missing-sig", "raw": variant(sig=...), "reason": "missing_field:sig"},
        {"name": "missing-sess", "raw": variant(sess=...), "reason": "missing_field:sess"},
        {"name": "sig-uppercase", "raw": variant(sig=p["sig"].upper()), "reason": "bad_field:sig"},
        {"name": "dev-with-slash", "raw": variant(dev="D/07"), "reason": "bad_field:dev"},
        {"name": "sess-empty", "raw": variant(sess=""), "reason": "bad_field:sess"},
        {"name": "sess-newline", "raw": variant(sess="a\nb"), "reason": "bad_field:sess"},
        {"name": "kid-short", "raw": variant(kid="abc"), "reason": "bad_field:kid"},
        {"name": "too-large", "raw": variant(pad="x" * 1100), "reason": "too_large"},
    ]
    out = {"version": 1, "doc": "docs/protocol.md#rating-device--gateway", "valid": valid,
           "invalid": invalid}
    path = Path(__file__).with_name("ratings.json")
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
