"""Sealing a rater's name and number (hub/phone/crypto.py): AES-256-GCM bound to its row and
field, the key file, rotation, and the checks and masks of names and numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.phone.crypto import (KeyFileError, Keyring, SealError, aad, key_of, mask_name, mask_phone,
                              new_key_line, normalize_name, normalize_phone)

K1, K2 = bytes([1]) * 32, bytes([2]) * 32
AAD = aad("H1", "svc1", "supplementary", "phone")


def test_a_sealed_value_opens_only_with_its_key_row_and_field():
    ring = Keyring.of(("k1", K1))
    sealed = ring.seal("13800138000", AAD)
    assert "13800138000" not in sealed and key_of(sealed) == "k1"
    assert ring.open(sealed, AAD) == "13800138000"
    assert ring.seal("13800138000", AAD) != sealed  # a fresh nonce each time
    for other in (aad("H1", "svc2", "supplementary", "phone"), aad("H1", "svc1", "followup", "phone"),
                  aad("H1", "svc1", "supplementary", "name"), aad("H2", "svc1", "supplementary", "phone")):
        with pytest.raises(SealError):
            ring.open(sealed, other)
    kid, body = sealed.split(":")
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    for damaged in (f"{kid}:{flipped}", f"{kid}:{body[:-4]}", f"{kid}:", "k1", "k9:" + body, "k1:%%%"):
        with pytest.raises(SealError):
            ring.open(damaged, AAD)


def test_rotation_the_new_key_seals_and_the_old_one_still_opens():
    old = Keyring.of(("k1", K1))
    sealed_old = old.seal("张三", AAD)
    rotated = Keyring.of(("k2", K2), ("k1", K1))
    assert rotated.open(sealed_old, AAD) == "张三"
    sealed_new = rotated.seal("张三", AAD)
    assert key_of(sealed_new) == "k2"
    with pytest.raises(SealError, match="k2"):
        old.open(sealed_new, AAD)  # a hub not yet given the new key cannot open it: says which key


def test_the_key_file(tmp_path):
    path = tmp_path / "phone-keys"
    line = new_key_line()
    path.write_text(f"# phone keys\n\n{line}\nk1 {K1.hex()}\n")
    ring = Keyring.load(path)
    assert ring.current == line.split()[0] and set(ring.keys) == {line.split()[0], "k1"}
    assert ring.keys["k1"] == K1
    for text, problem in (("", "no key"), ("k1\n", ":1: expected"), (f"K1 {K1.hex()}\n", "expected"),
                          (f"k1 {K1.hex()[:-2]}\n", "expected"), (f"k1 {K1.hex()}\nk1 {K2.hex()}\n", "twice"),
                          (f"k1 {K1.hex()} extra\n", "expected")):
        path.write_text(text)
        with pytest.raises(KeyFileError, match=problem) as error:
            Keyring.load(path)
        assert K1.hex() not in str(error.value)  # the message never shows a key
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(KeyFileError, match="UTF-8"):
        Keyring.load(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        Keyring.load(tmp_path / "missing")


@pytest.mark.parametrize(("typed", "stored"), [
    ("13800138000", "13800138000"), ("138 0013 8000", "13800138000"), ("138-0013-8000", "13800138000"),
    ("+86 138 0013 8000", "13800138000"), ("0086-13800138000", "13800138000"), ("8613800138000", "13800138000"),
    ("１３８００１３８０００", "13800138000"), ("(138)00138000", "13800138000"), ("19912345678", "19912345678"),
    ("12800138000", None), ("1380013800", None), ("138001380001", None), ("010-12345678", None),
    ("phone", None), ("", None), ("+1 415 555 0100", None)])
def test_mobile_numbers(typed, stored):
    assert normalize_phone(typed) == stored


@pytest.mark.parametrize(("typed", "stored"), [
    ("张三", "张三"), ("  欧阳  娜娜 ", "欧阳 娜娜"), ("买买提·艾力", "买买提·艾力"), ("ئابدۇرېھىم", "ئابدۇرېھىم"),
    ("O'Brien", "O'Brien"), ("Jean-Luc Picard", "Jean-Luc Picard"), ("张3", None), ("<b>", None), ("·", None),
    ("a" * 30, "a" * 30), ("a" * 31, None), ("", None), ("张\u0000三", None), ("张\n三", "张 三")])
def test_names(typed, stored):
    assert normalize_name(typed) == stored


def test_masks():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("买买提·艾力") == "买*****"
    assert mask_name("张") == "*"


@given(st.text(min_size=1, max_size=40))
def test_sealing_round_trips_any_text(text):
    ring = Keyring.of(("k1", K1))
    assert ring.open(ring.seal(text, AAD), AAD) == text
