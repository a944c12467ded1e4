"""Writes tests/vectors/phone_tokens.json. Run once when the contract changes (a new version).

The tokens are spelled out here from docs/protocol.md ("Phone rating token") on purpose,
independent of hcp/protocol.py (the gateway's maker) and hub/phone/token.py (the hub's check),
which are both tested against the output: `token = b64url(claims) + "." +
b64url(HMAC-SHA256(gateway_key, b64url(claims)))`, b64url URL-safe base64 without padding,
claims the compact JSON {"v":1,"hall":…,"svc":…,"win":…,"exp":…}.

Invalid tokens carry the reason the hub gives (`malformed`, `forged`, `expired`) and the one
hcp.protocol.verify_phone_token raises (`bad_token`, `bad_version`, `bad_field:x`,
`bad_token_signature`, `token_expired`), each at `now`.
"""

import base64
import hashlib
import hmac
import json
from pathlib import Path

NOW = 1795000000  # the vectors' "now" (2026-11-18T09:46:40Z)
KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"  # tests/hub: GATEWAY_KEY
VALID = [
    # name, key hex, hall, svc, win, exp
    ("protocol-example", KEY, "H1", "3f2a9c1e0b7d4a55", "7", 1795243029),
    ("longest-fields", "a5" * 32, "h" * 32, "S" * 40, "W" * 16, 2**40),
    ("underscores-and-dashes", "ff" * 32, "changchun-zhengwu_01", "a-b_c", "A12", NOW + 1),
    ("expires-this-second", KEY, "H1", "svc1", "1", NOW),
]


NOT_UTF8 = b'{"v":1,"hall":"\xff"}'


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sign(key_hex: str, body: str) -> str:
    return b64url(hmac.new(bytes.fromhex(key_hex), body.encode("ascii"), hashlib.sha256).digest())


def token_of(key_hex: str, claims_json: str) -> str:
    body = b64url(claims_json.encode("utf-8"))
    return f"{body}.{sign(key_hex, body)}"


def main() -> None:
    valid = []
    for name, key_hex, hall, svc, win, exp in VALID:
        claims = {"v": 1, "hall": hall, "svc": svc, "win": win, "exp": exp}
        body = b64url(compact(claims).encode("utf-8"))
        valid.append({"name": name, "key": key_hex, "claims": claims, "body": body,
                      "mac": sign(key_hex, body), "token": f"{body}.{sign(key_hex, body)}"})
    good = valid[0]
    good_claims = dict(good["claims"])

    def claims(**changes):
        obj = dict(good_claims)
        for k, v in changes.items():
            if v is ...:
                obj.pop(k)
            else:
                obj[k] = v
        return compact(obj)

    body, mac = good["body"], good["mac"]
    raw_mac = base64.urlsafe_b64decode(mac + "=")
    invalid = [
        # the hub's form checks (the contract's verifier would also refuse these, or read them
        # leniently: base64 decoders skip stray characters)
        {"name": "empty", "token": "", "hub": "malformed", "protocol": "bad_token"},
        {"name": "no-dot", "token": body + mac, "hub": "malformed", "protocol": "bad_token"},
        {"name": "three-parts", "token": f"{body}.{mac}.{mac}", "hub": "malformed", "protocol": "bad_token"},
        {"name": "padded-mac", "token": f"{body}.{mac}=", "hub": "malformed", "protocol": None},
        {"name": "standard-alphabet", "token": f"{body}.{mac}".replace("-", "+").replace("_", "/") + "+/",
         "hub": "malformed", "protocol": None},
        {"name": "short-mac", "token": f"{body}.{b64url(raw_mac[:16])}", "hub": "malformed",
         "protocol": "bad_token_signature"},
        {"name": "non-canonical-last-char", "token": f"{body}.{mac[:-1]}{'B' if mac[-1] == 'A' else 'A'}",
         "hub": "malformed", "protocol": None},
        {"name": "too-long", "token": token_of(KEY, claims(pad="x" * 300)), "hub": "malformed",
         "protocol": None},
        {"name": "not-json", "token": token_of(KEY, "{\"v\":1,"), "hub": "malformed", "protocol": "bad_token"},
        {"name": "array", "token": token_of(KEY, "[1,2]"), "hub": "malformed", "protocol": "bad_token"},
        {"name": "not-utf8", "token": b64url(NOT_UTF8) + "." + mac, "hub": "malformed",
         "protocol": "bad_token"},
        {"name": "version-2", "token": token_of(KEY, claims(v=2)), "hub": "malformed", "protocol": "bad_version"},
        {"name": "no-version", "token": token_of(KEY, claims(v=...)), "hub": "malformed", "protocol": "bad_version"},
        {"name": "hall-with-slash", "token": token_of(KEY, claims(hall="H/1")), "hub": "malformed",
         "protocol": "bad_field:hall"},
        {"name": "svc-too-long", "token": token_of(KEY, claims(svc="s" * 41)), "hub": "malformed",
         "protocol": "bad_field:svc"},
        {"name": "win-missing", "token": token_of(KEY, claims(win=...)), "hub": "malformed",
         "protocol": "missing_field:win"},
        {"name": "exp-float", "token": token_of(KEY, claims(exp=1795243029.0)), "hub": "malformed",
         "protocol": "bad_field:exp"},
        {"name": "exp-bool", "token": token_of(KEY, claims(exp=True)), "hub": "malformed",
         "protocol": "bad_field:exp"},
        {"name": "exp-string", "token": token_of(KEY, claims(exp="1795243029")), "hub": "malformed",
         "protocol": "bad_field:exp"},
        # signature and time
        {"name": "signed-with-another-key", "token": token_of("ff" * 32, compact(good_claims)), "hub": "forged",
         "protocol": "bad_token_signature"},
        {"name": "claims-changed-after-signing", "token": f"{b64url(claims(win='8').encode())}.{mac}",
         "hub": "forged", "protocol": "bad_token_signature"},
        {"name": "mac-of-another-body", "token": f"{body}.{valid[2]['mac']}", "hub": "forged",
         "protocol": "bad_token_signature"},
        {"name": "expired-a-second-ago", "token": token_of(KEY, claims(exp=NOW - 1)), "hub": "expired",
         "protocol": "token_expired"},
    ]
    out = {"version": 1, "doc": "docs/protocol.md#phone-rating-token-in-the-prompts-qr-url", "now": NOW,
           "valid": valid, "invalid": [{**case, "key": KEY} for case in invalid]}
    path = Path(__file__).with_name("phone_tokens.json")
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
