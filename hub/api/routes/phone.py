"""The phone page's records for the operators (docs/phone.md): phone ratings with their contact
details masked, the page's counters, the audit of unmasked reads, and the re-sealing of contact
details after a key rotation. Admin token for now; the accounts' roles later (a unit handler
sees phone ratings, never an unmasked name or number: hub/phone/contacts.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel

from hcp.protocol import SESSION_RE

from ...phone.contacts import masked, rekey
from ...phone.crypto import SealError
from ..deps import ADMIN_ERRORS, StoreDep, require_admin
from ..models import HALL_PATTERN, Problem

SERVICE_PATTERN = f"^(?:{SESSION_RE.pattern})$"

router = APIRouter(prefix="/phone", tags=["phone page"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS)


class PhoneContactOut(BaseModel):
    name: str | None  # masked: 张*
    phone: str | None  # masked: 138****5678


class PhoneRatingOut(BaseModel):
    id: str
    hall: str
    service: str
    kind: str  # supplementary | followup
    window: str
    score: int | None  # the supplementary rating's overall rating; null for a follow-up
    counted: bool  # its overall rating counts (no counter rating replaced it)
    overall: int | None  # the service's overall rating now
    overall_id: str | None  # device:n (counter) or this page's supplementary rating
    business_score: int | None
    service_score: int | None
    tags: list[str]
    comment: str | None
    contact: PhoneContactOut | None
    staff_id: str | None
    matter_code: str | None
    unit: str | None
    lang: str
    submitted_at: str


class PhoneCountOut(BaseModel):
    day: str
    hall: str
    what: str
    n: int


class PhoneAuditOut(BaseModel):
    at: str
    principal: str
    role: str
    hall: str
    service: str
    kind: str
    reason: str


class RekeyOut(BaseModel):
    resealed: int
    current: str
    keys: dict[str, int]  # key id -> contacts sealed with it


@router.get("/ratings", response_model=list[PhoneRatingOut])
async def ratings(store: StoreDep, request: Request,
                  hall: Annotated[str | None, Query(pattern=HALL_PATTERN)] = None,
                  service: Annotated[str | None, Query(pattern=SERVICE_PATTERN)] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[PhoneRatingOut]:
    """Phone ratings, newest first, contact details masked (every unmasked read goes through
    hub.phone.contacts.read_contact, which audits it)."""
    keyring = request.app.state.phone.keyring
    out = []
    for r in await store.phone_ratings(hall=hall, service=service, limit=limit):
        contact = masked(keyring, r)
        out.append(PhoneRatingOut(
            id=r.id, hall=r.hall, service=r.service, kind=r.kind, window=r.window, score=r.score,
            counted=r.counted, overall=r.overall, overall_id=r.overall_id, business_score=r.business_score,
            service_score=r.service_score, tags=list(r.tags), comment=r.comment,
            contact=PhoneContactOut(name=contact.name, phone=contact.phone) if contact else None,
            staff_id=r.staff_id, matter_code=r.matter_code, unit=r.unit, lang=r.lang,
            submitted_at=r.submitted_at))
    return out


@router.get("/counts", response_model=list[PhoneCountOut])
async def counts(store: StoreDep,
                 date_from: Annotated[date, Query(alias="from", description="first China date")],
                 date_to: Annotated[date, Query(alias="to", description="last China date (included)")],
                 ) -> list[PhoneCountOut]:
    """What the page did per China day and hall: tokens refused (`refused_malformed`,
    `refused_unknown_hall`, `refused_forged`, `refused_expired`), `closed` pages, posts
    (`posted_supplementary`, `posted_followup`, `repeat`, `overall_exists`, `already`,
    `no_overall`, `too_late`, `invalid_form`, `stale_form`, `cross_site`, `rate_limited`).
    A few rows per day and hall: no limit on the range (`to` before `from` is no day)."""
    return [PhoneCountOut(day=d, hall=h, what=w, n=n)
            for d, h, w, n in await store.phone_counts(date_from.isoformat(), date_to.isoformat())]


@router.get("/audit", response_model=list[PhoneAuditOut])
async def audit(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[PhoneAuditOut]:
    """Every unmasked read of a rater's name or number, newest first."""
    return [PhoneAuditOut(at=a, principal=p, role=r, hall=h, service=s, kind=k, reason=why)
            for a, p, r, h, s, k, why in await store.phone_audit(limit)]


@router.post("/rekey", response_model=RekeyOut,
             responses={409: {"model": Problem, "description": "no key file, or a contact whose key is not in it"}})
async def rekey_contacts(store: StoreDep, request: Request) -> RekeyOut:
    """Seal every stored name and number again with the current key (the first of the key file),
    after a rotation (docs/phone.md, "Keys"). Idempotent: a second run reseals nothing."""
    keyring = request.app.state.phone.keyring
    if keyring is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "this hub has no phone key file (phone_key_file)")
    try:
        done = await rekey(store, keyring)
    except SealError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a stored contact cannot be opened: {exc}") from None
    return RekeyOut(resealed=done, current=keyring.current, keys=await store.phone_contact_keys())
