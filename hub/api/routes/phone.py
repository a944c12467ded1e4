"""The phone page's records for the people who handle them (docs/phone.md): phone ratings with
their contact details masked, one rating's contact details unmasked (audited), the page's
counters, and the re-sealing of contact details after a key rotation. Roles and scopes as in
docs/accounts.md; the admin token passes every check."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field, StrictStr

from hcp.protocol import SESSION_RE

from ...accounts.deps import require_role
from ...accounts.model import Principal, Role
from ...accounts.scope import visible_halls
from ...phone.contacts import NotAllowed, masked, read_contact, rekey
from ...phone.crypto import SealError
from ...phone.form import KINDS
from ..deps import ADMIN_ERRORS, BODY_ERRORS, StoreDep, require_admin
from ..models import HALL_PATTERN, Problem

SERVICE_PATTERN = f"^(?:{SESSION_RE.pattern})$"
KIND_PATTERN = f"^(?:{'|'.join(KINDS)})$"
ROLE_ERRORS: dict[int | str, dict] = {
    401: {"model": Problem, "description": "neither the admin token nor a session"},
    403: {"model": Problem, "description": "signed in, but not in a role (or a scope) that may"}}

router = APIRouter(prefix="/phone", tags=["phone page"], responses=ROLE_ERRORS)


class PhoneContactOut(BaseModel):
    name: str | None
    phone: str | None


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
    contact: PhoneContactOut | None  # masked: 张*, 138****5678
    staff_id: str | None
    matter_code: str | None
    unit: str | None
    case_no: str | None
    lang: str
    submitted_at: str


class PhoneCountOut(BaseModel):
    day: str
    hall: str
    what: str
    n: int


class ContactReadIn(BaseModel):
    reason: Annotated[StrictStr, Field(min_length=1, max_length=200, description="why: goes into the audit log")]


class RekeyOut(BaseModel):
    resealed: int
    current: str
    keys: dict[str, int]  # key id -> contacts sealed with it


@router.get("/ratings", response_model=list[PhoneRatingOut])
async def ratings(store: StoreDep, request: Request,
                  principal: Annotated[Principal, Depends(require_role(Role.OPERATOR, Role.SUPERVISOR,
                                                                       Role.HANDLER))],
                  hall: Annotated[str | None, Query(pattern=HALL_PATTERN)] = None,
                  service: Annotated[str | None, Query(pattern=SERVICE_PATTERN)] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[PhoneRatingOut]:
    """Phone ratings in the principal's scope (a handler: its unit's), newest first, contact
    details masked. Unmasked: `POST /api/v1/phone/ratings/{hall}/{service}/{kind}/contact`."""
    keyring = request.app.state.phone.keyring
    rows = await store.phone_ratings(hall=hall, service=service, halls=await visible_halls(principal),
                                     unit=principal.scope_filter().get("unit"), limit=limit)
    out = []
    for r in rows:
        contact = masked(keyring, r)
        out.append(PhoneRatingOut(
            id=r.id, hall=r.hall, service=r.service, kind=r.kind, window=r.window, score=r.score,
            counted=r.counted, overall=r.overall, overall_id=r.overall_id, business_score=r.business_score,
            service_score=r.service_score, tags=list(r.tags), comment=r.comment,
            contact=PhoneContactOut(name=contact.name, phone=contact.phone) if contact else None,
            staff_id=r.service_staff_id, matter_code=r.service_matter_code, unit=r.service_unit,
            case_no=r.case_no, lang=r.lang, submitted_at=r.submitted_at))
    return out


@router.post("/ratings/{hall}/{service}/{kind}/contact", response_model=PhoneContactOut,
             responses={**BODY_ERRORS,
                        404: {"model": Problem, "description": "no such phone rating, or it has no contact details"},
                        409: {"model": Problem, "description": "a value no key of the key file opens"}})
async def contact(store: StoreDep, request: Request, body: ContactReadIn,
                  principal: Annotated[Principal, Depends(require_role(Role.OPERATOR, Role.SUPERVISOR))],
                  hall: Annotated[str, Path(pattern=HALL_PATTERN)],
                  service: Annotated[str, Path(pattern=SERVICE_PATTERN)],
                  kind: Annotated[str, Path(pattern=KIND_PATTERN)]) -> PhoneContactOut:
    """A rater's name and number, unmasked, for a callback or a check: written to the audit log
    (`personal_data_read`, what `rater_contact`, record `phone_rating:{hall}/{service}/{kind}`,
    the reason in its detail) before it is answered. Operators and supervisors in whose scope the
    rating is; never a unit handler."""
    keyring = request.app.state.phone.keyring
    if keyring is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this hub keeps no contact details (no phone_key_file)")
    try:
        found = await read_contact(store, keyring, hall=hall, service=service, kind=kind, principal=principal,
                                   reason=body.reason)
    except NotAllowed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except SealError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the contact cannot be opened: {exc}") from None
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such phone rating, or it has no contact details")
    return PhoneContactOut(name=found.name, phone=found.phone)


@router.get("/counts", response_model=list[PhoneCountOut])
async def counts(store: StoreDep,
                 principal: Annotated[Principal, Depends(require_role(Role.OPERATOR, Role.SUPERVISOR,
                                                                      Role.AUDITOR))],
                 date_from: Annotated[date, Query(alias="from", description="first China date")],
                 date_to: Annotated[date, Query(alias="to", description="last China date (included)")],
                 ) -> list[PhoneCountOut]:
    """What the page did per China day and hall (of the principal's scope; hall '' for tokens
    whose hall could not be read, to the unlimited only): tokens refused (`refused_malformed`,
    `refused_unknown_hall`, `refused_forged`, `refused_expired`), `closed` pages, posts
    (`posted_supplementary`, `posted_followup`, `repeat`, `overall_exists`, `already`,
    `no_overall`, `too_late`, `invalid_form`, `stale_form`, `cross_site`, `rate_limited`).
    A few rows per day and hall: no limit on the range (`to` before `from` is no day)."""
    halls = await visible_halls(principal)
    return [PhoneCountOut(day=d, hall=h, what=w, n=n)
            for d, h, w, n in await store.phone_counts(date_from.isoformat(), date_to.isoformat())
            if halls is None or h in halls]


@router.post("/rekey", response_model=RekeyOut, dependencies=[Depends(require_admin)],
             responses={**ADMIN_ERRORS,
                        409: {"model": Problem, "description": "no key file, or a contact whose key is not in it"}})
async def rekey_contacts(store: StoreDep, request: Request) -> RekeyOut:
    """Seal every stored name and number again with the current key (the first of the key file),
    after a rotation (docs/phone.md, "Keys"). Idempotent: a second run reseals nothing. The admin
    token only."""
    keyring = request.app.state.phone.keyring
    if keyring is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "this hub has no phone key file (phone_key_file)")
    try:
        done = await rekey(store, keyring)
    except SealError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a stored contact cannot be opened: {exc}") from None
    return RekeyOut(resealed=done, current=keyring.current, keys=await store.phone_contact_keys())
