"""The phone rating token as the hub checks it (hub/phone/token.py), against the vectors written
from docs/protocol.md (tests/vectors/phone_tokens.json), against the gateway's own maker, and
against anything at all; and the page's form nonces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.queue_events import PHONE_TOKEN_TTL_S
from hcp.protocol import ProtocolError, make_phone_token, verify_phone_token
from hub.phone.token import (MAX_TOKEN_LEN, TOKEN_TTL_S, Claims, TokenRefused, check_nonce, make_nonce,
                             read_claims, verify)

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "phone_tokens.json").read_text())
NOW = VECTORS["now"]


def _claims(case: dict) -> Claims:
    c = case["claims"]
    return Claims(c["hall"], c["svc"], c["win"], c["exp"])


@pytest.mark.parametrize("case", VECTORS["valid"], ids=lambda c: c["name"])
def test_valid_vectors_verify_and_the_gateway_makes_the_same_token(case):
    key = bytes.fromhex(case["key"])
    assert verify(key, case["token"], NOW) == _claims(case)
    c = case["claims"]
    assert make_phone_token(key, c["hall"], c["svc"], c["win"], c["exp"]) == case["token"]
    assert verify_phone_token(key, case["token"], NOW) == c


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_invalid_vectors_are_refused_with_their_reason(case):
    key = bytes.fromhex(case["key"])
    with pytest.raises(TokenRefused) as refused:
        verify(key, case["token"], NOW)
    assert refused.value.reason == case["hub"]
    if case["protocol"] is not None:  # the contract's own verifier agrees
        with pytest.raises(ProtocolError) as error:
            verify_phone_token(key, case["token"], NOW)
        assert error.value.reason == case["protocol"]


def test_spellings_the_contract_reads_leniently_are_refused_here():
    """Base64 decoders skip a pad and ignore spare bits: the contract's verifier accepts these
    spellings of a valid token, the hub does not (one token, one spelling)."""
    lenient = {c["name"] for c in VECTORS["invalid"] if c["protocol"] is None}
    assert {"padded-mac", "non-canonical-last-char"} <= lenient
    for case in VECTORS["invalid"]:
        if case["name"] in ("padded-mac", "non-canonical-last-char"):
            verify_phone_token(bytes.fromhex(case["key"]), case["token"], NOW)  # accepted there


def test_a_token_is_valid_until_the_instant_exp_and_not_after():
    key = bytes(32)
    token = make_phone_token(key, "H1", "s1", "7", NOW)
    assert verify(key, token, NOW - 0.5).exp == NOW
    assert verify(key, token, NOW).exp == NOW
    with pytest.raises(TokenRefused, match="expired"):
        verify(key, token, NOW + 0.001)


def test_no_gateway_for_the_hall_is_unknown_hall_and_names_the_hall():
    token = make_phone_token(bytes(32), "H9", "s1", "7", NOW + 60)
    with pytest.raises(TokenRefused) as refused:
        verify(None, token, NOW)
    assert (refused.value.reason, refused.value.hall) == ("unknown_hall", "H9")


def test_the_ttl_is_the_gateways():
    assert TOKEN_TTL_S == PHONE_TOKEN_TTL_S == 259200
    assert _claims(VECTORS["valid"][0]).issued_at == VECTORS["valid"][0]["claims"]["exp"] - 259200


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=MAX_TOKEN_LEN + 20),
                 st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=",
                         max_size=MAX_TOKEN_LEN + 20),
                 st.binary(max_size=300).map(lambda b: __import__("base64").urlsafe_b64encode(b).decode()
                                             .rstrip("=") + "." + VECTORS["valid"][0]["mac"])))
def test_anything_is_a_claims_or_a_refusal_never_another_error(text):
    key = bytes.fromhex(VECTORS["valid"][0]["key"])
    try:
        claims = verify(key, text, NOW)
    except TokenRefused as refused:
        assert refused.reason in ("malformed", "forged", "expired")
    else:
        assert read_claims(text) == claims


def test_a_nonce_is_bound_to_its_token_and_key_and_not_from_the_future():
    key, other_key = bytes(32), bytes([1]) * 32
    token = VECTORS["valid"][0]["token"]
    other = VECTORS["valid"][2]["token"]
    nonce = make_nonce(key, token, NOW)
    assert len(nonce) <= 52
    random_part = check_nonce(key, token, nonce, NOW)
    assert random_part is not None and random_part in nonce
    assert check_nonce(key, token, nonce, NOW + 3 * 24 * 3600) == random_part  # lives as long as its token
    assert check_nonce(key, other, nonce, NOW) is None
    assert check_nonce(other_key, token, nonce, NOW) is None
    assert check_nonce(key, token, make_nonce(key, token, NOW + 3600), NOW) is None
    issued, rnd, mac = nonce.split(".")
    assert check_nonce(key, token, f"{int(issued) + 1}.{rnd}.{mac}", NOW) is None
    for bad in (None, 5, "", "x", nonce + "A", nonce.upper(), ["a"]):
        assert check_nonce(key, token, bad, NOW) is None
    assert make_nonce(key, token, NOW) != nonce  # fresh every time
