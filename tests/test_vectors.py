"""The contract's test vectors against both codecs: the firmware's encoder under the MicroPython
interpreter and the CPython decoder used by the gateway and the hub. One byte of difference in the
canonical bytes fails here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random

import pytest

from hcp import protocol as P
from hcp.qr import matrix_bits, unpack
from tests.conftest import VECTORS
from tests.fixtures.device import run_micropython

HERE = VECTORS.parent / "firmware"


@pytest.fixture(scope="module")
def firmware_encodings() -> dict[str, dict]:
    out = run_micropython(HERE / "mp_vectors.py", str(VECTORS / "ratings.json"))
    return {row["name"]: row for row in map(json.loads, out.splitlines())}


def test_firmware_encoder_matches_every_vector(rating_vectors, firmware_encodings):
    assert set(firmware_encodings) == {v["name"] for v in rating_vectors}
    for v in rating_vectors:
        got = firmware_encodings[v["name"]]
        assert got["kid"] == v["kid"], v["name"]
        assert got["canonical_hex"] == v["canonical_hex"], v["name"]
        assert json.loads(got["payload"]) == v["payload"], v["name"]
        # the firmware writes this JSON by hand (one join, no json.dumps): the exact compact text
        assert got["payload"] == json.dumps(v["payload"], separators=(",", ":")), v["name"]


def test_firmware_payload_is_compact_json_within_limit(firmware_encodings):
    for row in firmware_encodings.values():
        assert " " not in row["payload"]
        assert len(row["payload"].encode()) <= P.MAX_MQTT_PAYLOAD


def test_cpython_canonical_bytes_and_signature_match_every_vector(rating_vectors):
    for v in rating_vectors:
        key = bytes.fromhex(v["key"])
        f = v["fields"]
        assert P.key_id(key) == v["kid"]
        made = P.sign_rating(key, f["hall"], f["dev"], f["n"], f["boot"], f["mono"], f["sess"], f["score"])
        assert made.canonical().hex() == v["canonical_hex"], v["name"]
        assert made.sig == v["sig"], v["name"]
        assert made.payload() == v["payload"]


def test_cpython_decoder_accepts_and_verifies_every_valid_vector(rating_vectors):
    for v in rating_vectors:
        raw = json.dumps(v["payload"], separators=(",", ":")).encode()
        rating = P.decode_rating(raw, v["fields"]["hall"], v["fields"]["dev"])
        assert rating.verify(bytes.fromhex(v["key"]))
        assert not rating.verify(bytes(32))


def test_a_changed_byte_breaks_the_signature(rating_vectors):
    v = rating_vectors[0]
    key = bytes.fromhex(v["key"])
    for field, value in [("score", 5), ("n", v["fields"]["n"] + 1), ("mono", 1), ("sess", None),
                         ("hall", "H2"), ("boot", 4)]:
        obj = dict(v["payload"], **{field: value})
        assert not P.rating_from_object(obj).verify(key), field


def test_cpython_decoder_rejects_every_invalid_vector_with_its_reason(invalid_rating_vectors):
    for v in invalid_rating_vectors:
        with pytest.raises(P.ProtocolError) as err:
            P.decode_rating(v["raw"].encode())
        assert err.value.reason == v["reason"], v["name"]


def test_decoder_refuses_a_payload_for_another_topic(rating_vectors):
    raw = json.dumps(rating_vectors[0]["payload"]).encode()
    with pytest.raises(P.ProtocolError, match="topic_mismatch"):
        P.decode_rating(raw, "H1", "D08")


def test_firmware_hmac_equals_cpython_hmac():
    """Keys shorter than, equal to and longer than the 64-byte block; empty and long messages."""
    rng = random.Random(20261121)
    pairs = [(rng.randbytes(rng.choice([0, 1, 31, 32, 63, 64, 65, 100, 200])),
              rng.randbytes(rng.randrange(0, 400))) for _ in range(300)]
    stdin = "".join(f"x{k.hex()} x{m.hex()}\n" for k, m in pairs)
    out = run_micropython(HERE / "mp_hmac.py", stdin=stdin).split()
    assert out == [hmac.new(k, m, hashlib.sha256).hexdigest() for k, m in pairs]


URL = "https://hub.example/r/eyJ2IjoxfQ.sig"
SIZE, BITS = matrix_bits(URL)
QRM = base64.b64encode(BITS).decode()

PROMPTS = [
    (P.encode_prompt_open("3f2a9c1e0b7d4a55", 60, "A023", "https://h/r/x"),
     {"ok": ["open", "3f2a9c1e0b7d4a55", 60, "A023", "https://h/r/x", None]}),
    (P.encode_prompt_open("s1"), {"ok": ["open", "s1", None, None, None, None]}),
    (P.encode_prompt_cancel("s1"), {"ok": ["cancel", "s1", None, None, None, None]}),
    (P.encode_prompt_open("s2", qr=URL, qr_matrix=(SIZE, BITS)),
     {"ok": ["open", "s2", None, None, URL, [SIZE, BITS.hex()]]}),
    (b'{"v":1,"op":"open"}', {"error": "missing_field:sess"}),
    (b'{"v":1,"op":"open","sess":"-bad"}', {"error": "bad_field:sess"}),
    (b'{"v":1,"op":"open","sess":"s","ttl":0}', {"error": "bad_field:ttl"}),
    (b'{"v":1,"op":"open","sess":"s","ttl":true}', {"error": "bad_field:ttl"}),
    (b'{"v":2,"op":"open","sess":"s"}', {"error": "bad_version"}),
    (b'{"v":1,"op":"close","sess":"s"}', {"error": "bad_field:op"}),
    (b'not json', {"error": "bad_json"}),
    (b'[]', {"error": "bad_json"}),
    (b'{"v":1,"op":"open","sess":"s","tk":"' + b"9" * 17 + b'"}', {"error": "bad_field:tk"}),
    (f'{{"v":1,"op":"open","sess":"s","qrm":"{QRM}"}}'.encode(), {"error": "missing_field:qrs"}),
    (f'{{"v":1,"op":"open","sess":"s","qrs":{SIZE + 1},"qrm":"{QRM}"}}'.encode(), {"error": "bad_field:qrs"}),
    (f'{{"v":1,"op":"open","sess":"s","qrs":{SIZE + 4},"qrm":"{QRM}"}}'.encode(), {"error": "bad_field:qrm"}),
    (b'{"v":1,"op":"open","sess":"s","qrs":21,"qrm":"!!not base64!!"}', {"error": "bad_field:qrm"}),
    (b'{"v":1,"op":"open","sess":"s","qrs":21,"qrm":7}', {"error": "bad_field:qrm"}),
]


def test_firmware_decodes_the_gateways_prompts_and_refuses_bad_ones():
    """Prompts encoded by the CPython side decode on the device; malformed ones give reasons."""
    stdin = "".join(json.dumps(raw.decode()) + "\n" for raw, _ in PROMPTS)
    got = [json.loads(line) for line in run_micropython(HERE / "mp_prompts.py", stdin=stdin).splitlines()]
    assert got == [want for _, want in PROMPTS]


def test_firmware_draws_the_gateways_qr_matrix_module_for_module():
    """qr_draw.draw under MicroPython into a real framebuf: every module lands where segno put it."""
    out = run_micropython(HERE / "mp_qr_draw.py", stdin=f"{SIZE} {BITS.hex()}\n").split()
    side = int(out[0])
    rows = out[1:]
    assert side == (SIZE + 8) * 2 and len(rows) == side
    want = unpack(SIZE, BITS)
    for y in range(side):
        for x in range(side):
            my, mx = y // 2 - 4, x // 2 - 4
            dark = 0 <= mx < SIZE and 0 <= my < SIZE and want[my][mx] == 1
            assert rows[y][x] == ("1" if dark else "0"), (x, y)
