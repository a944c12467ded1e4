"""The audit log: who signed in and out (and who failed to), who changed accounts, and every read
of a rater's personal data. Append-only (the database refuses UPDATE and DELETE of its rows).

Other modules call one function, after checking that the principal may read the data at all
(`Principal.may_unmask`) and before answering with it:

    from hub.accounts import audit
    await audit.personal_data_read(principal, "rater_phone", f"case:{case.id}")

`what` names the kind of data (`rater_phone`, `rater_name`, `rater_contact`, …), `which_record`
the record it belongs to (`case:17`, `phone_rating:H1/3f2a…`). Both are cut to 500 characters.
"""

from __future__ import annotations

from typing import Any

from .model import Principal
from .store import Accounts

EVENTS = ("sign_in", "sign_in_failed", "sign_out", "personal_data_read", "user_created", "user_disabled",
          "user_enabled", "password_reset")


async def personal_data_read(principal: Principal, what: str, which_record: str,
                             detail: dict[str, Any] | None = None) -> None:
    """Write that `principal` read `what` of `which_record`, unmasked. Raises if it cannot be
    written (the caller must then not show the data): a read that is not logged must not happen."""
    if principal.store is None:
        raise RuntimeError("this principal has no store to write the audit log to")
    await Accounts(principal.store).audit(
        "personal_data_read", user_id=principal.user_id, login=principal.login, role=principal.role,
        client=principal.client, what=what, record=which_record, detail=detail)
