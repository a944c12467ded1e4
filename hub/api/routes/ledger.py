"""The tamper-evident ledger (hub/ledger.py): its head, to record outside the hub, and a full
verification of the chain against the records as stored now."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ...ledger import Head
from ..deps import ADMIN_ERRORS, StoreDep, require_admin
from ..models import LedgerHead, LedgerVerification

EXPECT_PATTERN = r"^[1-9][0-9]{0,17}:[0-9a-f]{64}$"

router = APIRouter(prefix="/ledger", tags=["ledger"], dependencies=[Depends(require_admin)],
                   responses=ADMIN_ERRORS)


@router.get("/head", response_model=LedgerHead)
async def head(store: StoreDep) -> LedgerHead:
    """The newest ledger entry's seq and hash. Whoever rewrites the database can recompute the
    chain after their edit; a head recorded elsewhere (a monthly bulletin, the provincial platform)
    is what such a rewrite cannot match: pass it to `verify`."""
    h = await store.ledger_head()
    return LedgerHead(seq=h.seq, hash=h.hash)


@router.get("/verify", response_model=LedgerVerification)
async def verify(store: StoreDep,
                 expect: Annotated[str | None, Query(pattern=EXPECT_PATTERN,
                                                     description="a recorded head, `seq:hash`")] = None,
                 ) -> LedgerVerification:
    """Recompute the whole chain (reads every entry and record: minutes on years of data) and
    check every stored rating, service and default against its entry. `ok` false names where: the
    first broken link and up to 20 problems. With `expect` (`seq:hash`, as `head` gave it), the
    chain must hold that head too."""
    head = None
    if expect is not None:
        seq, _, hash_ = expect.partition(":")
        head = Head(int(seq), hash_)
    return LedgerVerification.model_validate((await store.verify_ledger(head)).as_dict())
