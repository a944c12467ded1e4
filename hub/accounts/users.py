"""Managing accounts: what the admin API (hub/api/routes/users.py) and the command line
(`hcp hub users`, hub/accounts/cli.py) both do, with the checks and the audit entries."""

from __future__ import annotations

from hcp.protocol import HALL_RE

from ..store import HubStore
from . import passwords
from .model import InvalidField, Role, Scope, User, check_password, check_scope, clean_text, normalize_login
from .store import Accounts, UserExists

__all__ = ["InvalidField", "UserExists", "create_user", "reset_password", "set_disabled"]


def _place(value: str | None, what: str) -> str | None:
    """A region or hall id (the form hall ids have: hcp.protocol.HALL_RE), None when empty."""
    value = (value or "").strip()
    if not value:
        return None
    if not HALL_RE.fullmatch(value):
        raise InvalidField(what, "an id of 1-32 letters, digits, '_' or '-', starting with a letter or digit")
    return value


def _new_password(password: str | None) -> tuple[str, str | None]:
    """(the password to set, the same if it was generated here else None)."""
    if password is None:
        generated = passwords.generate_password()
        return generated, generated
    return check_password(password), None


async def create_user(store: HubStore, *, login: str, name: str, role: str, region: str | None = None,
                      hall: str | None = None, unit: str | None = None, password: str | None = None,
                      by: str, client: str | None = None) -> tuple[User, str | None]:
    """A new account -> (the user, the generated password if none was given: show it once).
    ValueError with the reason for a bad field; UserExists if the login name is taken."""
    login = normalize_login(login)
    display = clean_text(name, "name")
    if display is None:
        raise InvalidField("name", "a display name is required")
    try:
        the_role = Role(role)
    except ValueError:
        raise InvalidField("role", f"one of {', '.join(Role)}") from None
    scope = check_scope(the_role, Scope(_place(region, "region"), _place(hall, "hall"), clean_text(unit, "unit")))
    secret, generated = _new_password(password)
    digest = await passwords.hash_password_async(secret)
    user = await Accounts(store).create_user(login, display, the_role, scope, digest, by=by, client=client)
    return user, generated


async def reset_password(store: HubStore, login: str, password: str | None = None, *, by: str,
                         client: str | None = None) -> tuple[User, str | None] | None:
    """Set a new password (generated if none given) and end the user's sessions -> (user,
    generated password or None); None if there is no such user."""
    secret, generated = _new_password(password)
    user = await Accounts(store).set_password(normalize_login(login), await passwords.hash_password_async(secret),
                                              by=by, client=client)
    return None if user is None else (user, generated)


async def set_disabled(store: HubStore, login: str, disabled: bool, *, by: str,
                       client: str | None = None) -> User | None:
    """Disable (ends every session; sign-ins refused) or enable again; None if no such user."""
    return await Accounts(store).set_disabled(normalize_login(login), disabled, by=by, client=client)
