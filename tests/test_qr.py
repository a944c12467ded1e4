"""The gateway's QR encoding for the device display (hcp/qr.py)."""

from __future__ import annotations

import json

import segno

from hcp import protocol as P
from hcp.qr import matrix_bits, prompt_payload, unpack


def test_packed_bits_are_segnos_matrix():
    url = "https://hcp.zwfw.example.gov.cn/r/" + "x" * 150
    size, bits = matrix_bits(url)
    want = [[1 if dark else 0 for dark in row] for row in segno.make(url, error="M", boost_error=False).matrix]
    assert size == len(want) and (size - 17) % 4 == 0
    assert len(bits) == (size * size + 7) // 8
    assert unpack(size, bits) == want


def test_prompt_keeps_within_the_payload_limit_by_lowering_the_error_level():
    token = P.make_phone_token(bytes(32), "changchun-zhengwu-01", "a" * 16, "A12", 1795243029)
    short = prompt_payload("s1", 60, "A023", "https://hub.example/r/" + token)
    long_url = "https://" + "h" * 120 + ".example/r/" + token
    lowered = prompt_payload("s1", 60, "A023", long_url)
    huge = prompt_payload("s1", 60, "A023", "https://h.example/r/" + "x" * 700)
    for payload in (short, lowered, huge):
        assert len(payload) <= P.MAX_MQTT_PAYLOAD
    assert json.loads(short)["qrs"] == matrix_bits(json.loads(short)["qr"], "M")[0]
    assert json.loads(lowered)["qrs"] == matrix_bits(long_url, "L")[0]  # M would not fit
    assert "qrm" not in json.loads(huge) and json.loads(huge)["qr"].endswith("x" * 10)
