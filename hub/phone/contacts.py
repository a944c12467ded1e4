"""A rater's contact details as the rest of the hub may see them: masked for everyone who may see
phone ratings (`masked`), unmasked only through `read_contact`, which needs an acting principal
(hub.accounts) who may read personal data (`Principal.may_unmask`: operators and supervisors, the
admin token; never a unit handler or an auditor) and whose scope holds the rating, and which
writes `personal_data_read` to the audit log (docs/accounts.md) in the same transaction that reads
the sealed values: no read goes unrecorded, and a failed audit entry means no read.

    contact = await read_contact(store, keyring, hall="H1", service="3f2a…", kind="supplementary",
                                 principal=principal, reason="差评回访")
"""

from __future__ import annotations

from dataclasses import dataclass

from ..accounts.model import Principal
from ..accounts.scope import can_see_hall
from ..accounts.store import Accounts
from ..store import HubStore
from ..store.phone_sql import CONTACT_SQL, StoredPhoneRating
from .crypto import Keyring, aad, mask_name, mask_phone, SealError

AUDIT_WHAT = "rater_contact"  # the audit log's `what` for a phone rater's name and number
MAX_REASON = 200


class NotAllowed(PermissionError):
    """The principal may not read this rating's contact details unmasked (role, scope, no reason)."""


@dataclass(frozen=True)
class Contact:
    name: str | None
    phone: str | None


def audit_record(hall: str, service: str, kind: str) -> str:
    """The audit log's `record` of a phone rating: `phone_rating:{hall}/{service}/{kind}`."""
    return f"phone_rating:{hall}/{service}/{kind}"


def masked(keyring: Keyring | None, rating: StoredPhoneRating) -> Contact | None:
    """The rating's contact details masked (张*, 138****5678), None if it has none. The values are
    opened in memory to be masked; nothing unmasked leaves this function. A value that cannot be
    opened (its key is gone) shows as "?"."""
    if not rating.has_contact:
        return None
    return Contact(_mask(keyring, rating.name_sealed, rating, "name", mask_name),
                   _mask(keyring, rating.phone_sealed, rating, "phone", mask_phone))


def _mask(keyring: Keyring | None, sealed: str | None, rating: StoredPhoneRating, field: str, masker) -> str | None:
    if sealed is None:
        return None
    if keyring is None:
        return "?"
    try:
        return masker(keyring.open(sealed, aad(rating.hall, rating.service, rating.kind, field)))
    except SealError:
        return "?"


async def read_contact(store: HubStore, keyring: Keyring, *, hall: str, service: str, kind: str,
                       principal: Principal, reason: str) -> Contact | None:
    """The rating's name and number, unmasked, for `principal`, who states `reason` (a callback
    about a bad review, an appeal check; it goes into the audit entry's detail). None when there is
    no such rating or it has no contact details (nothing read, nothing audited). Raises NotAllowed;
    SealError if a value cannot be opened (its key is no longer in the key file: the read is
    audited all the same, it happened)."""
    if not principal.may_unmask:
        raise NotAllowed(f"role {principal.role!r} may not read a rater's contact details")
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise NotAllowed(f"a read of a rater's contact details needs a reason (1-{MAX_REASON} characters)")
    found = await store.phone_ratings(hall=hall, service=service, kind=kind, limit=1)
    if not found or not found[0].has_contact:
        return None
    if not await can_see_hall(principal, hall, unit=found[0].service_unit):
        raise NotAllowed(f"phone rating {audit_record(hall, service, kind)} is outside the principal's scope")
    entry = Accounts(store).audit_statement(
        "personal_data_read", user_id=principal.user_id, login=principal.login, role=principal.role,
        client=principal.client, what=AUDIT_WHAT, record=audit_record(hall, service, kind),
        detail={"reason": reason})
    _, rows = await store._write_statements([entry, (CONTACT_SQL.format(p=store.param), (hall, service, kind))])
    if not rows:
        return None
    name_sealed, phone_sealed = rows[0]
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
