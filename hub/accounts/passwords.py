"""Password hashes: argon2id, stored as the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).

Parameters: OWASP's first recommended set for argon2id (m=19 MiB, t=2, p=1). argon2-cffi's
default (RFC 9106's second set, m=64 MiB, t=3, p=4) took 0.52-0.62 s a hash on this 2-core machine
under load, this set 0.035 s (measured side by side): a hub on a small machine stays responsive
when a hall's staff sign in at opening time. The parameters are in every hash; a hash made with
others is re-hashed at its next sign-in (`needs_rehash`).

Hashing is CPU and memory work, so the async callers run it in a thread (`hash_password_async`,
`verify_async`); a sign-in for an unknown login name verifies against a dummy hash, so it takes
as long as one for a known name.
"""

from __future__ import annotations

import asyncio
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MEMORY_KIB = 19456  # OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1
TIME_COST = 2
PARALLELISM = 1
_hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM)
GENERATED_BYTES = 15  # a generated password: 20 URL-safe characters, 120 bits


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored_hash: str, password: str) -> bool:
    """True if `password` matches `stored_hash`; False for a mismatch or an unreadable hash."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeEncodeError):
        return False  # UnicodeEncodeError: a lone surrogate, which no stored password has


def needs_rehash(stored_hash: str) -> bool:
    """True if the hash was made with other parameters than today's (re-hash at the next sign-in)."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def burn_time(password: str) -> None:
    """Verify against a dummy hash: a sign-in for an unknown or refused account costs the same."""
    verify(_dummy_hash(), password)


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_BYTES)


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_async(stored_hash: str | None, password: str) -> bool:
    """`verify` in a thread; with no hash (no such user) it burns the same time and is False."""
    if stored_hash is None:
        await asyncio.to_thread(burn_time, password)
        return False
    return await asyncio.to_thread(verify, stored_hash, password)
