"""A rater's real name and phone number: checked, sealed with AES-256-GCM before they are stored,
shown masked, opened only by `hub.phone.contacts.read_contact` (which audits).

Keys come from the key file named by the hub setting `phone_key_file` (HCP_HUB_PHONE_KEY_FILE),
UTF-8 text, one key per line: `kid hex`, `kid` 1-16 of [a-z0-9_-], `hex` 64 hex digits (32
bytes); blank lines and `#` comments are skipped. The FIRST key seals; every key listed opens what
it sealed. A sealed value is `kid:` + base64url(nonce 12 bytes + ciphertext + tag 16 bytes), and
its associated data binds it to its row and field (`aad`): a sealed phone number copied into
another rating's row, or into the name column, does not open.

Rotation (docs/phone.md, "Keys"): generate a key (`python -m hub.phone keygen`), put it FIRST in
the file on every hub and restart them; new contacts are sealed with it, older ones still open
with their own key; then `POST /api/v1/phone/rekey` (or `python -m hub.phone rekey`) seals every
stored contact again with the new key; when it reports none left under the old key, remove the
old line and restart. The database never holds a key, so a copy of it (a backup, a dump) without
the key file reveals no name and no number.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per value (a key seals far fewer than 2^32 values)
MAX_NAME = 30  # GB/T 39046 表 9 评价人: a..30
MAX_KEY_FILE = 64 * 1024

_KID = re.compile(r"[a-z0-9_-]{1,16}")
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")  # mainland China mobile numbers (11 digits)
_PHONE_NOISE = re.compile(r"[\s\-()\u3000（）]")
NAME_PUNCTUATION = "·•.'’- "  # 买买提·艾力, O'Brien, Jean-Luc, two given names


class KeyFileError(ValueError):
    """The key file cannot be used; the message says why (never the key)."""


class SealError(ValueError):
    """A sealed value that cannot be opened: its key is not in the key file, or it was altered or
    moved to another row or field."""


@dataclass(frozen=True)
class Keyring:
    """The keys of the key file: `current` seals; all of them open."""

    keys: dict[str, bytes]
    current: str

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read the phone key file ({exc.strerror})") from None
        if len(raw) > MAX_KEY_FILE:
            raise KeyFileError(f"{path}: larger than {MAX_KEY_FILE} bytes: not a key file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFileError(f"{path}: not UTF-8 text") from None
        keys: dict[str, bytes] = {}
        current = None
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 2 or not _KID.fullmatch(fields[0]) or not _HEX.fullmatch(fields[1]):
                raise KeyFileError(f"{path}:{number}: expected `kid hex` (kid: 1-16 of a-z 0-9 _ -; "
                                   "hex: 64 hex digits)")
            kid = fields[0]
            if kid in keys:
                raise KeyFileError(f"{path}:{number}: key id {kid!r} listed twice")
            keys[kid] = bytes.fromhex(fields[1])
            current = current or kid
        if current is None:
            raise KeyFileError(f"{path}: no key in the file")
        return cls(keys, current)

    @classmethod
    def of(cls, *pairs: tuple[str, bytes]) -> Keyring:
        """A keyring from (kid, key) pairs, the first one current (tests, tools)."""
        for kid, key in pairs:
            if not _KID.fullmatch(kid) or len(key) != KEY_BYTES:
                raise KeyFileError(f"bad key {kid!r}")
        return cls(dict(pairs), pairs[0][0])

    def seal(self, plaintext: str, aad: str) -> str:
        """`plaintext` sealed with the current key, bound to `aad`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode("utf-8"), aad.encode("utf-8"))
        return f"{self.current}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def open(self, sealed: str, aad: str) -> str:
        """The plaintext of a value `seal` made with any key of the ring, for the same `aad`."""
        kid, _, body = sealed.partition(":")
        key = self.keys.get(kid)
        if key is None:
            raise SealError(f"sealed with key {kid!r}, which is not in the key file")
        try:
            data = base64.urlsafe_b64decode(body.encode("ascii"))
            plain = AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad.encode("utf-8"))
        except (binascii.Error, ValueError, UnicodeEncodeError, InvalidTag):
            raise SealError("altered, or not sealed for this row and field") from None
        return plain.decode("utf-8")


def key_of(sealed: str) -> str:
    """The key id a sealed value names."""
    return sealed.partition(":")[0]


def aad(hall: str, service: str, kind: str, field: str) -> str:
    """What a sealed contact is bound to: its rating and its field."""
    return f"hcp-phone-contact\n{hall}\n{service}\n{kind}\n{field}"


def new_key_line() -> str:
    """A line for the key file with a fresh random key: `kid hex` (kid: the date and 4 random hex)."""
    from datetime import UTC, datetime
    kid = f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"
    return f"{kid} {secrets.token_hex(KEY_BYTES)}"


# ---------------------------------------------------------------------------- checking and masking


def normalize_phone(text: str) -> str | None:
    """A mainland mobile number as its 11 digits, or None if `text` is not one. Spaces, hyphens,
    brackets and a leading +86 / 0086 / 86 are accepted (as people type them); full-width digits
    count as digits."""
    digits = unicodedata.normalize("NFKC", text)
    digits = _PHONE_NOISE.sub("", digits)
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix):]
            break
    return digits if _MOBILE.fullmatch(digits) else None


def normalize_name(text: str) -> str | None:
    """A real name as stored (NFC, inner runs of spaces made one), or None if it is not a
    plausible name: 1..MAX_NAME characters of letters (any script: Han, Uyghur, Latin, …), marks,
    and the punctuation of names (NAME_PUNCTUATION); at least one letter."""
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not name or len(name) > MAX_NAME:
        return None
    letters = 0
    for ch in name:
        category = unicodedata.category(ch)
        if category.startswith("L"):
            letters += 1
        elif not (category.startswith("M") or ch in NAME_PUNCTUATION):
            return None
    return name if letters else None


def mask_phone(phone: str) -> str:
    """138****5678: the first three and last four digits of a stored number."""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else "*" * len(phone)


def mask_name(name: str) -> str:
    """张*, 欧*** (欧阳娜娜), 买***** (买买提·艾力): the first character, then a star per character hidden."""
    return name[0] + "*" * (len(name) - 1) if len(name) > 1 else "*"
