"""A rater's contact details as the rest of the hub may see them: masked for everyone who may see
phone ratings (`masked`), unmasked only through `read_contact`, which needs an acting principal
whose role may read them and writes an audit record first (DOMAIN.md: the rater's personal
information is protected, query rights restricted; issue 7: every unmasked read audited; a unit
handler never sees an unmasked name or number).

The audit is the table `phone_contact_reads` (at, principal, role, hall, service, kind, reason),
written in the same transaction that reads the sealed values, so no read goes unrecorded; a
caller may also pass `audit`, an async callable given the same facts first (the accounts' audit
log, once there is one). `GET /api/v1/phone/audit` lists the table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ..store import HubStore
from ..store.phone_sql import StoredPhoneRating
from ..store.tables import now
from .crypto import Keyring, SealError, aad, mask_name, mask_phone

READ_ROLES = frozenset({"operator", "supervisor"})  # who may read a rater's details unmasked
MAX_REASON = 200


class Principal(Protocol):
    """Who acts: a user id and a role (operator, unit handler, supervisor, auditor)."""

    @property
    def user(self) -> str: ...

    @property
    def role(self) -> str: ...


@dataclass(frozen=True)
class Acting:
    """A principal (until the accounts' own type is there)."""

    user: str
    role: str


class NotAllowed(PermissionError):
    """The principal may not read unmasked contact details (or gave no reason)."""


@dataclass(frozen=True)
class Contact:
    name: str | None
    phone: str | None


@dataclass(frozen=True)
class AuditEvent:
    at: str
    principal: str
    role: str
    hall: str
    service: str
    kind: str
    reason: str


def masked(keyring: Keyring | None, rating: StoredPhoneRating) -> Contact | None:
    """The rating's contact details masked (张*, 138****5678), None if it has none. The values are
    opened in memory to be masked; nothing unmasked leaves this function. A value that cannot be
    opened (its key is gone) shows as "?"."""
    if not rating.has_contact:
        return None
    return Contact(*(_mask(keyring, sealed, rating, field, masker) for sealed, field, masker in (
        (rating.name_sealed, "name", mask_name), (rating.phone_sealed, "phone", mask_phone))))


def _mask(keyring: Keyring | None, sealed: str | None, rating: StoredPhoneRating, field: str,
          masker: Callable[[str], str]) -> str | None:
    if sealed is None:
        return None
    if keyring is None:
        return "?"
    try:
        return masker(keyring.open(sealed, aad(rating.hall, rating.service, rating.kind, field)))
    except SealError:
        return "?"


async def read_contact(store: HubStore, keyring: Keyring, *, hall: str, service: str, kind: str,
                       principal: Principal, reason: str,
                       audit: Callable[[AuditEvent], Awaitable[None]] | None = None) -> Contact | None:
    """The rating's name and number, unmasked, for `principal` (its role must be in READ_ROLES)
    who states `reason` (a callback about a bad review, an appeal check). The read is audited
    before anything is opened, even when the rating has no contact details. Raises NotAllowed;
    SealError if a value cannot be opened (its key is no longer in the key file)."""
    user = getattr(principal, "user", None)
    role = getattr(principal, "role", None)
    if not isinstance(user, str) or not user.strip() or role not in READ_ROLES:
        raise NotAllowed(f"role {role!r} may not read a rater's contact details")
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise NotAllowed(f"a read of a rater's contact details needs a reason (1-{MAX_REASON} characters)")
    event = AuditEvent(now(), user, role, hall, service, kind, reason)
    if audit is not None:
        await audit(event)
    sealed = await store.phone_contact_read(hall, service, kind, (event.at, user, role, reason))
    if sealed is None:
        return None
    name_sealed, phone_sealed = sealed
    return Contact(keyring.open(name_sealed, aad(hall, service, kind, "name")) if name_sealed else None,
                   keyring.open(phone_sealed, aad(hall, service, kind, "phone")) if phone_sealed else None)


async def rekey(store: HubStore, keyring: Keyring, page: int = 500) -> int:
    """Seal every stored contact again with the keyring's current key (after a new key was put
    first in the key file): -> how many were sealed again. Idempotent; safe while the hub runs.
    Raises SealError for a value whose key is not in the file (nothing of that page changes)."""
    def reseal(row: tuple) -> tuple[str | None, str | None]:
        hall, service, kind, name_sealed, phone_sealed, _key, _at = row
        return tuple(  # type: ignore[return-value]
            keyring.seal(keyring.open(sealed, aad(hall, service, kind, field)), aad(hall, service, kind, field))
            if sealed is not None else None
            for sealed, field in ((name_sealed, "name"), (phone_sealed, "phone")))
    total = 0
    while done := await store.phone_reseal(reseal, keyring.current, page):
        total += done
    return total
