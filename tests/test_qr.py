"""The gateway's QR encoding for the device display (hcp/qr.py)."""

from __future__ import annotations

import json
import random
import string

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


def test_mask_choice_is_segnos_own_bit_for_bit(monkeypatch):
    """hcp.qr puts a faster mask selection in segno's place: the codes must not change. Compared
    with segno's own selection on codes of every size the prompts use (and beyond), all levels."""
    from segno import encoder

    from hcp import qr

    rng = random.Random(20261121)
    alphabet = string.ascii_letters + string.digits + "-_."
    for i in range(120):
        text = "https://h.example/r/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 600)))
        level = "LMQH"[i % 4]
        ours = segno.make(text, error=level, micro=False, boost_error=False)
        with monkeypatch.context() as m:
            m.setattr(encoder, "find_and_apply_best_mask", qr._segno_best_mask)
            theirs = segno.make(text, error=level, micro=False, boost_error=False)
        assert (ours.mask, ours.matrix) == (theirs.mask, theirs.matrix), (level, len(text))
    assert encoder.find_and_apply_best_mask is qr._best_mask  # the check above ran ours
