"""Accounts, roles and scopes, sessions, CSRF and the audit log (docs/accounts.md).

What the other modules use:
- `Principal`, `Role`, `Scope`, `can_see` (model.py): who acts, and is a record in their scope.
- FastAPI dependencies (deps.py): `PagePrincipal`, `require_page_role(...)`, `form_principal(...)`
  for pages and form posts; `ApiPrincipal`, `require_role(...)` for JSON APIs.
- `audit.personal_data_read(principal, what, which_record)` before showing personal data.
"""

from .model import ADMIN, PERSONAL_DATA_ROLES, Principal, Role, Scope, User, can_see

__all__ = ["ADMIN", "PERSONAL_DATA_ROLES", "Principal", "Role", "Scope", "User", "can_see"]
